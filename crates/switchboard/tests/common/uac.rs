//! A raw-bytes SIP caller over UDP for the inbound call tests: it writes
//! the messages a carrier would, reads what comes back, and answers what
//! a UAC must (ACK, 200 to BYE). Small on purpose: each test states the
//! bytes it depends on.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{header, status_and_call_id};

/// One SIP message as text, with its first line split out.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The whole message.
    pub text: String,
}

impl Msg {
    /// The status of a response; 0 for a request.
    pub fn status(&self) -> u16 {
        if self.text.starts_with("SIP/2.0 ") {
            status_and_call_id(&self.text).0
        } else {
            0
        }
    }

    /// The method of a request ("" for a response).
    pub fn method(&self) -> &str {
        if self.text.starts_with("SIP/2.0 ") {
            ""
        } else {
            self.text.split(' ').next().unwrap_or("")
        }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.text, name)
    }

    /// Every value of a header, in order.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines()
            .skip(1)
            .filter_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .collect()
    }

    /// The body.
    pub fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// The To tag.
    pub fn to_tag(&self) -> Option<String> {
        let to = self.header("To")?;
        to.split(';')
            .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_string))
    }
}

/// A caller: one UDP socket for SIP, one for RTP.
pub struct Uac {
    sip: UdpSocket,
    /// Our RTP socket (its port is in our SDP offers).
    pub rtp: UdpSocket,
    target: SocketAddr,
    /// Our SIP address.
    pub local: SocketAddr,
    /// Call-ID of the current call.
    pub call_id: String,
    from_tag: String,
    cseq: u32,
    to_user: String,
    from_user: String,
    remote_tag: Option<String>,
    remote_target: Option<String>,
    /// The route set from the 2xx's Record-Route (RFC 3261 §12.1.2): a
    /// proxy in front that record-routed gets every later request.
    route_set: Vec<String>,
    backlog: VecDeque<Msg>,
}

/// An SDP offer for `port` with these `m=` payload types and rtpmap lines.
pub fn sdp_offer(port: u16, payloads: &str, rtpmaps: &[&str]) -> String {
    let mut sdp = format!(
        "v=0\r\no=uac 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {payloads}\r\n"
    );
    for map in rtpmaps {
        sdp.push_str(&format!("a=rtpmap:{map}\r\n"));
    }
    sdp.push_str("a=sendrecv\r\n");
    sdp
}

impl Uac {
    /// A caller to `target` from `from_user`, calling `to_user`.
    pub fn new(target: SocketAddr, from_user: &str, to_user: &str) -> Uac {
        Uac::new_from("127.0.0.1", target, from_user, to_user)
    }

    /// [`Uac::new`] from another loopback address (another source).
    pub fn new_from(local_ip: &str, target: SocketAddr, from_user: &str, to_user: &str) -> Uac {
        let sip = UdpSocket::bind((local_ip, 0)).unwrap();
        let rtp = UdpSocket::bind((local_ip, 0)).unwrap();
        let local = sip.local_addr().unwrap();
        let n: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Uac {
            sip,
            rtp,
            target,
            local,
            call_id: format!("uac-{n}@127.0.0.1"),
            from_tag: format!("ft{n}"),
            cseq: 0,
            to_user: to_user.into(),
            from_user: from_user.into(),
            remote_tag: None,
            remote_target: None,
            route_set: Vec::new(),
            backlog: VecDeque::new(),
        }
    }

    /// The port of our RTP socket.
    /// The far end's dialog tag: switchboard's To tag, which is its call ID
    /// (`SCL_…`), once a response carried it.
    pub fn remote_tag(&self) -> Option<&str> {
        self.remote_tag.as_deref()
    }

    pub fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().unwrap().port()
    }

    /// A PCMU + telephone-event offer for our RTP socket.
    pub fn pcmu_offer(&self) -> String {
        sdp_offer(
            self.rtp_port(),
            "0 101",
            &["0 PCMU/8000", "101 telephone-event/8000"],
        )
    }

    fn caller_field(&self) -> String {
        format!(
            "<sip:{}@{}>;tag={}",
            self.from_user, self.local, self.from_tag
        )
    }

    fn callee_field(&self) -> String {
        let mut to = format!("<sip:{}@{}>", self.to_user, self.target);
        if let Some(tag) = &self.remote_tag {
            to.push_str(&format!(";tag={tag}"));
        }
        to
    }

    fn send(&self, text: &str) {
        self.sip.send_to(text.as_bytes(), self.target).unwrap();
    }

    /// Sends an INVITE (a new CSeq) with `sdp` and extra header lines.
    pub fn invite(&mut self, sdp: &str, extra: &[String]) -> u32 {
        self.cseq += 1;
        let branch = format!("z9hG4bK-{}-{}", self.from_tag, self.cseq);
        let mut text = format!(
            "INVITE sip:{to}@{target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             From: {from}\r\nTo: {to_h}\r\nCall-ID: {call}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:{user}@{local}>\r\nMax-Forwards: 70\r\n",
            to = self.to_user,
            target = self.target,
            local = self.local,
            from = self.caller_field(),
            to_h = self.callee_field(),
            call = self.call_id,
            cseq = self.cseq,
            user = self.from_user,
        );
        for line in extra {
            text.push_str(line);
            text.push_str("\r\n");
        }
        if sdp.is_empty() {
            text.push_str("Content-Length: 0\r\n\r\n");
        } else {
            text.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ));
        }
        self.send(&text);
        self.cseq
    }

    /// Sends CANCEL for the INVITE with CSeq `seq` (same branch).
    pub fn cancel(&self, seq: u32) {
        let branch = format!("z9hG4bK-{}-{}", self.from_tag, seq);
        self.send(&format!(
            "CANCEL sip:{to}@{target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             From: {from}\r\nTo: <sip:{to}@{target}>\r\nCall-ID: {call}\r\nCSeq: {seq} CANCEL\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            to = self.to_user,
            target = self.target,
            local = self.local,
            from = self.caller_field(),
            call = self.call_id,
        ));
    }

    /// Receives the next message within `within`.
    pub fn recv(&mut self, within: Duration) -> Option<Msg> {
        if let Some(m) = self.backlog.pop_front() {
            return Some(m);
        }
        self.sip
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        match self.sip.recv_from(&mut buf) {
            Ok((n, _)) => Some(Msg {
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            }),
            Err(_) => None,
        }
    }

    /// Responses to the INVITE with CSeq `seq` until its final one:
    /// (provisional statuses, the final response). Requests that arrive
    /// meanwhile are kept for later.
    pub fn final_response(&mut self, seq: u32, within: Duration) -> (Vec<u16>, Msg) {
        let deadline = Instant::now() + within;
        let mut provisional = Vec::new();
        let mut kept = VecDeque::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.recv(left).unwrap_or_else(|| {
                panic!("no final response within {within:?}; got {provisional:?}")
            });
            let is_ours = msg
                .header("CSeq")
                .is_some_and(|c| c.trim() == format!("{seq} INVITE"));
            if msg.status() == 0 || !is_ours {
                kept.push_back(msg);
                continue;
            }
            if msg.status() < 200 {
                provisional.push(msg.status());
                continue;
            }
            self.backlog.extend(kept);
            if (200..300).contains(&msg.status()) {
                self.remote_tag = msg.to_tag();
                self.remote_target = msg.header("Contact").map(|c| {
                    c.trim_matches(|ch| ch == '<' || ch == '>' || ch == ' ')
                        .to_string()
                });
                // The UAC's route set is the Record-Route in reverse.
                self.route_set = msg
                    .headers("Record-Route")
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty())
                    .rev()
                    .collect();
            }
            return (provisional, msg);
        }
    }

    /// ACKs a final response to the INVITE with CSeq `seq`.
    pub fn ack(&self, seq: u32, response: &Msg) {
        self.ack_with(seq, response, "");
    }

    /// The route set learnt from the 2xx (empty without a proxy).
    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// `Route` header lines for a request in the dialog.
    fn route_lines(&self) -> String {
        self.route_set
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect()
    }

    /// ACKs a 2xx that carried an offer, with our SDP answer.
    pub fn ack_with(&self, seq: u32, response: &Msg, sdp: &str) {
        let to = response.header("To").unwrap_or_default();
        let routes = if (200..300).contains(&response.status()) {
            self.route_lines()
        } else {
            String::new()
        };
        let (uri, branch) = if (200..300).contains(&response.status()) {
            let uri = self
                .remote_target
                .clone()
                .unwrap_or_else(|| format!("sip:{}@{}", self.to_user, self.target));
            (uri, format!("z9hG4bK-ack-{}-{}", self.from_tag, seq))
        } else {
            (
                format!("sip:{}@{}", self.to_user, self.target),
                format!("z9hG4bK-{}-{}", self.from_tag, seq),
            )
        };
        let body = if sdp.is_empty() {
            "Content-Length: 0\r\n\r\n".to_string()
        } else {
            format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
        };
        self.send(&format!(
            "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             {routes}From: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {seq} ACK\r\n\
             Max-Forwards: 70\r\n{body}",
            local = self.local,
            from = self.caller_field(),
            call = self.call_id,
        ));
    }

    /// Sends a request in the dialog (BYE, INFO, re-INVITE…); returns its CSeq.
    pub fn in_dialog(&mut self, method: &str, content_type: &str, body: &str) -> u32 {
        self.in_dialog_with(method, &[], content_type, body)
    }

    /// [`Uac::in_dialog`] with extra header lines.
    pub fn in_dialog_with(
        &mut self,
        method: &str,
        extra: &[&str],
        content_type: &str,
        body: &str,
    ) -> u32 {
        let text = self.in_dialog_text(method, extra, content_type, body);
        self.send(&text);
        self.cseq
    }

    /// The text of the next in-dialog request (a new CSeq), not sent: what
    /// someone who knows the dialog's Call-ID and tags could forge.
    pub fn in_dialog_text(
        &mut self,
        method: &str,
        extra: &[&str],
        content_type: &str,
        body: &str,
    ) -> String {
        self.cseq += 1;
        let uri = self
            .remote_target
            .clone()
            .unwrap_or_else(|| format!("sip:{}@{}", self.to_user, self.target));
        let mut text = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{tag}-d{seq};rport\r\n\
             {routes}From: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {seq} {method}\r\n\
             Contact: <sip:{user}@{local}>\r\nMax-Forwards: 70\r\n",
            local = self.local,
            tag = self.from_tag,
            seq = self.cseq,
            from = self.caller_field(),
            to = self.callee_field(),
            call = self.call_id,
            user = self.from_user,
            routes = self.route_lines(),
        );
        for line in extra {
            text.push_str(line);
            text.push_str("\r\n");
        }
        if body.is_empty() {
            text.push_str("Content-Length: 0\r\n\r\n");
        } else {
            text.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        text
    }

    /// Waits for the final response to the in-dialog request with CSeq `seq`.
    pub fn response_to(&mut self, seq: u32, method: &str, within: Duration) -> Msg {
        let deadline = Instant::now() + within;
        let mut kept = VecDeque::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .recv(left)
                .unwrap_or_else(|| panic!("no response to {method} within {within:?}"));
            let ours = msg.status() >= 200
                && msg
                    .header("CSeq")
                    .is_some_and(|c| c.trim() == format!("{seq} {method}"));
            if ours {
                self.backlog.extend(kept);
                return msg;
            }
            if msg.status() == 0 {
                kept.push_back(msg);
            }
        }
    }

    /// Waits for a request from the gateway (a BYE, say) and answers it 200.
    pub fn expect_request(&mut self, method: &str, within: Duration) -> Msg {
        let msg = self.wait_request(method, within);
        self.answer(&msg, 200);
        msg
    }

    /// Waits for a request from the gateway without answering it.
    pub fn wait_request(&mut self, method: &str, within: Duration) -> Msg {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .recv(left)
                .unwrap_or_else(|| panic!("no {method} within {within:?}"));
            if msg.method() == method {
                return msg;
            }
        }
    }

    /// Answers a request from the gateway.
    pub fn answer(&self, request: &Msg, status: u16) {
        let mut text = format!("SIP/2.0 {status} OK\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for value in request.headers(name) {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        self.send(&text);
    }

    /// Sends one RTP packet (PCMU silence, payload type 0) to `to`.
    pub fn send_rtp(&self, to: SocketAddr, seq: u16, timestamp: u32) {
        let mut packet = vec![0x80, 0, (seq >> 8) as u8, seq as u8];
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        packet.extend(std::iter::repeat_n(0xffu8, 160));
        self.rtp.send_to(&packet, to).unwrap();
    }
}

/// The RTP address in an SDP body (`c=` and `m=audio`).
pub fn sdp_rtp_addr(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .to_string();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split(' ')
        .next()?
        .to_string();
    format!("{ip}:{port}").parse().ok()
}

/// One RFC 4733 event (three packets, the last with the end bit) to `to`.
pub fn send_telephone_event(uac: &Uac, to: SocketAddr, code: u8, seq: u16, timestamp: u32) {
    for (i, end) in [(0u16, false), (1, false), (2, true)] {
        let marker = if i == 0 { 0x80 } else { 0 };
        let mut packet = vec![0x80, marker | 101];
        packet.extend_from_slice(&(seq + i).to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        let duration = 160 * (i + 1);
        packet.extend_from_slice(&[code, if end { 0x80 | 10 } else { 10 }]);
        packet.extend_from_slice(&duration.to_be_bytes());
        uac.rtp.send_to(&packet, to).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The RFC 4733 event codes the caller's RTP socket receives within `within`.
pub fn received_telephone_events(uac: &Uac, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut codes = Vec::new();
    let mut buf = [0u8; 2048];
    uac.rtp
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while Instant::now() < deadline {
        if let Ok((n, _)) = uac.rtp.recv_from(&mut buf) {
            if n >= 16 && buf[1] & 0x7f == 101 && !codes.contains(&buf[12]) {
                codes.push(buf[12]);
            }
        }
    }
    codes
}

/// Answers the REFER 202 and reports the target's progress by NOTIFY.
pub fn notify_progress(uac: &mut Uac, refer: &Msg, statuses: &[&str]) {
    uac.answer(refer, 202);
    let cseq = refer
        .header("CSeq")
        .and_then(|c| c.split(' ').next())
        .unwrap()
        .to_string();
    for (i, status) in statuses.iter().enumerate() {
        let state = if i + 1 == statuses.len() {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let event = format!("Event: refer;id={cseq}");
        let sub = format!("Subscription-State: {state}");
        let seq = uac.in_dialog_with(
            "NOTIFY",
            &[&event, &sub],
            "message/sipfrag;version=2.0",
            &format!("SIP/2.0 {status}\r\n"),
        );
        assert_eq!(
            uac.response_to(seq, "NOTIFY", Duration::from_secs(3))
                .status(),
            200
        );
    }
}

/// G.711 µ-law to linear (ITU-T G.711), written here independently of the
/// gateway's codec.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let value = if sign != 0 { -magnitude } else { magnitude };
    value as i16
}

/// Linear PCM to G.711 µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = (s + BIAS).min(32635 + BIAS);
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

impl Uac {
    /// Plays a `freq` tone as PCMU to `to` for `duration`, 20 ms a packet,
    /// and returns what it heard meanwhile (PCMU packets, decoded).
    pub fn play_tone(&self, to: SocketAddr, freq: f64, duration: Duration) -> Vec<i16> {
        let mut heard = Vec::new();
        let mut buf = [0u8; 2048];
        self.rtp.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let mut phase = 0.0f64;
        let step = 2.0 * std::f64::consts::PI * freq / 8000.0;
        let mut n: u32 = 0;
        while start.elapsed() < duration {
            let mut packet = vec![0x80, 0];
            packet.extend_from_slice(&(n as u16).to_be_bytes());
            packet.extend_from_slice(&(n * 160).to_be_bytes());
            packet.extend_from_slice(&0x7777_0001u32.to_be_bytes());
            for _ in 0..160 {
                packet.push(linear_to_ulaw((8000.0 * phase.sin()) as i16));
                phase = (phase + step) % (2.0 * std::f64::consts::PI);
            }
            self.rtp.send_to(&packet, to).unwrap();
            n += 1;
            let next = start + Duration::from_millis(20 * u64::from(n));
            while Instant::now() < next {
                while let Ok((len, _)) = self.rtp.recv_from(&mut buf) {
                    if len > 12 && buf[1] & 0x7f == 0 {
                        heard.extend(buf[12..len].iter().map(|b| ulaw_to_linear(*b)));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.rtp.set_nonblocking(false).unwrap();
        heard
    }
}
