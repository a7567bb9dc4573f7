//! A raw-bytes SIP callee (UAS) for the outbound call tests: switchboard
//! dials it over UDP, TCP or TLS; it answers the INVITE with a PCMU +
//! telephone-event answer, records the RTP it gets with arrival times, and
//! sends and answers in-dialog requests (REFER, NOTIFY, BYE) as a phone or
//! PBX would. For TCP and TLS it counts the connections switchboard opens,
//! so a test can assert that the whole dialog rides on one.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::uac::Msg;

/// How the callee listens.
pub enum UasKind {
    /// One UDP socket.
    Udp,
    /// A TCP listener.
    Tcp,
    /// A TLS listener with this server configuration.
    Tls(Arc<rustls::ServerConfig>),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Listener {
    Udp(UdpSocket),
    Stream(TcpListener, Option<tokio_rustls::TlsAcceptor>),
}

/// One RTP packet as it arrived.
#[derive(Debug, Clone)]
pub struct RtpPacket {
    /// When it arrived.
    pub at: Instant,
    /// Payload type.
    pub payload_type: u8,
    /// RTP timestamp.
    pub timestamp: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A callee.
pub struct Uas {
    /// "UDP", "TCP" or "TLS", as in a Via.
    pub transport: &'static str,
    /// Where it listens (the trunk's address).
    pub addr: SocketAddr,
    listener: Listener,
    stream: Option<Box<dyn Io>>,
    buf: Vec<u8>,
    /// Where switchboard's datagrams come from (UDP).
    peer: Option<SocketAddr>,
    /// Connections switchboard opened to us (TCP, TLS).
    pub connections: usize,
    backlog: VecDeque<Msg>,
    /// Every message received, in order.
    pub received: Vec<Msg>,
    /// The RTP that reached our media port.
    pub rtp: Arc<Mutex<Vec<RtpPacket>>>,
    rtp_port: u16,
    rtp_task: tokio::task::JoinHandle<()>,
    tag: String,
    cseq: u32,
    /// The INVITE we answered.
    pub invite: Option<Msg>,
    /// The telephone-event payload type switchboard offered at 8 kHz.
    pub telephone_event: Option<u8>,
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.rtp_task.abort();
    }
}

impl Uas {
    /// Listens on an ephemeral loopback port.
    pub async fn bind(kind: UasKind) -> Uas {
        let (transport, listener) = match kind {
            UasKind::Udp => (
                "UDP",
                Listener::Udp(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
            ),
            UasKind::Tcp => (
                "TCP",
                Listener::Stream(TcpListener::bind("127.0.0.1:0").await.unwrap(), None),
            ),
            UasKind::Tls(config) => (
                "TLS",
                Listener::Stream(
                    TcpListener::bind("127.0.0.1:0").await.unwrap(),
                    Some(tokio_rustls::TlsAcceptor::from(config)),
                ),
            ),
        };
        let addr = match &listener {
            Listener::Udp(s) => s.local_addr().unwrap(),
            Listener::Stream(l, _) => l.local_addr().unwrap(),
        };
        let rtp_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtp_port = rtp_socket.local_addr().unwrap().port();
        let rtp = Arc::new(Mutex::new(Vec::new()));
        let log = rtp.clone();
        let rtp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok(n) = rtp_socket.recv(&mut buf).await {
                if n < 12 {
                    continue;
                }
                let packet = &buf[..n];
                log.lock().unwrap().push(RtpPacket {
                    at: Instant::now(),
                    payload_type: packet[1] & 0x7f,
                    timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
                    payload: packet[12..].to_vec(),
                });
            }
        });
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Uas {
            transport,
            addr,
            listener,
            stream: None,
            buf: Vec::new(),
            peer: None,
            connections: 0,
            backlog: VecDeque::new(),
            received: Vec::new(),
            rtp,
            rtp_port,
            rtp_task,
            tag: format!("uas{n}"),
            cseq: 0,
            invite: None,
            telephone_event: None,
        }
    }

    /// `sip` or `sips` and the transport parameter of our URIs.
    fn uri(&self, user: &str) -> String {
        match self.transport {
            "UDP" => format!("sip:{user}@{}", self.addr),
            "TCP" => format!("sip:{user}@{};transport=tcp", self.addr),
            _ => format!("sips:{user}@{}", self.addr),
        }
    }

    /// Reads one message from the connection (accepting it first).
    async fn read_stream(&mut self, deadline: tokio::time::Instant) -> Option<Msg> {
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let length: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| {
                        n.trim().eq_ignore_ascii_case("content-length")
                            || n.trim().eq_ignore_ascii_case("l")
                    })
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + length {
                    let raw: Vec<u8> = self.buf.drain(..end + 4 + length).collect();
                    return Some(Msg {
                        text: String::from_utf8_lossy(&raw).into_owned(),
                    });
                }
            }
            if self.stream.is_none() {
                let Listener::Stream(listener, tls) = &self.listener else {
                    unreachable!()
                };
                let (tcp, _) = tokio::time::timeout_at(deadline, listener.accept())
                    .await
                    .ok()?
                    .unwrap();
                self.connections += 1;
                let stream: Box<dyn Io> = match tls {
                    None => Box::new(tcp),
                    Some(acceptor) => Box::new(
                        tokio::time::timeout_at(deadline, acceptor.accept(tcp))
                            .await
                            .ok()?
                            .expect("TLS handshake with switchboard"),
                    ),
                };
                self.stream = Some(stream);
            }
            let mut chunk = vec![0u8; 65536];
            let stream = self.stream.as_mut().unwrap();
            let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
                .await
                .ok()?
                .unwrap();
            assert!(n > 0, "switchboard closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message within `within`.
    pub async fn recv(&mut self, within: Duration) -> Option<Msg> {
        if let Some(m) = self.backlog.pop_front() {
            return Some(m);
        }
        let deadline = tokio::time::Instant::now() + within;
        let msg = match &self.listener {
            Listener::Udp(socket) => {
                let mut buf = vec![0u8; 65536];
                let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
                    .await
                    .ok()?
                    .unwrap();
                self.peer = Some(from);
                Msg {
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                }
            }
            Listener::Stream(..) => self.read_stream(deadline).await?,
        };
        self.received.push(msg.clone());
        Some(msg)
    }

    /// Sends a message to switchboard: back to where its datagrams came
    /// from (UDP) or on the connection it opened.
    pub async fn send(&mut self, text: &str) {
        match &self.listener {
            Listener::Udp(socket) => {
                let peer = self.peer.expect("switchboard wrote to us first");
                socket.send_to(text.as_bytes(), peer).await.unwrap();
            }
            Listener::Stream(..) => {
                let stream = self.stream.as_mut().expect("a connection from switchboard");
                stream.write_all(text.as_bytes()).await.unwrap();
                stream.flush().await.unwrap();
            }
        }
    }

    /// Waits for a request; what else comes meanwhile is kept for later.
    pub async fn wait_request(&mut self, method: &str, within: Duration) -> Msg {
        self.wait_for(within, &format!("a {method}"), |m| m.method() == method)
            .await
    }

    /// Waits for a message `wanted` accepts; the others are kept, in order.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        what: &str,
        wanted: impl Fn(&Msg) -> bool,
    ) -> Msg {
        let deadline = Instant::now() + within;
        let mut kept = VecDeque::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(msg) = self.recv(left).await else {
                panic!(
                    "no {what} within {within:?}; kept {:?}",
                    kept.iter().map(|m: &Msg| first_line(m)).collect::<Vec<_>>()
                );
            };
            if wanted(&msg) {
                kept.extend(self.backlog.drain(..));
                self.backlog = kept;
                return msg;
            }
            kept.push_back(msg);
        }
    }

    /// Whether another request of `method` arrives within `within`.
    pub async fn no_request(&mut self, method: &str, within: Duration) -> Option<Msg> {
        let deadline = Instant::now() + within;
        let mut kept = VecDeque::new();
        let mut found = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv(left).await {
                Some(m) if m.method() == method => {
                    found = Some(m);
                    break;
                }
                Some(m) => kept.push_back(m),
                None => break,
            }
        }
        kept.extend(self.backlog.drain(..));
        self.backlog = kept;
        found
    }

    /// Answers a request of switchboard's with `status` (our tag on the To
    /// of an INVITE's answers) and optional extra headers and SDP.
    pub async fn answer(
        &mut self,
        request: &Msg,
        status: u16,
        reason: &str,
        extra: &[String],
        sdp: &str,
    ) {
        let mut text = format!("SIP/2.0 {status} {reason}\r\n");
        for value in request.headers("Via") {
            text.push_str(&format!("Via: {value}\r\n"));
        }
        text.push_str(&format!("From: {}\r\n", request.header("From").unwrap()));
        let to = request.header("To").unwrap();
        if request.to_tag().is_none() && status > 100 {
            text.push_str(&format!("To: {to};tag={}\r\n", self.tag));
        } else {
            text.push_str(&format!("To: {to}\r\n"));
        }
        text.push_str(&format!(
            "Call-ID: {}\r\nCSeq: {}\r\n",
            request.header("Call-ID").unwrap(),
            request.header("CSeq").unwrap()
        ));
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
        self.send(&text).await;
    }

    /// Our SDP answer to `offer` (see [`Uas::accept`]).
    pub fn accept_sdp(&mut self, offer: &str) -> String {
        self.sdp_answer(offer)
    }

    /// Our SDP answer to `offer`: PCMU and the offer's 8 kHz
    /// telephone-event, to our RTP port.
    fn sdp_answer(&mut self, offer: &str) -> String {
        self.telephone_event = offer.lines().find_map(|l| {
            let (pt, codec) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
            codec
                .trim()
                .eq_ignore_ascii_case("telephone-event/8000")
                .then(|| pt.parse().ok())?
        });
        let te = self
            .telephone_event
            .expect("the offer has telephone-event/8000");
        format!(
            "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 {te}\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
            port = self.rtp_port
        )
    }

    /// Takes switchboard's call: INVITE -> 100, 180, 200 with our answer
    /// -> ACK. Returns the INVITE.
    pub async fn answer_call(&mut self, within: Duration) -> Msg {
        let invite = self.ring(within).await;
        self.accept(&invite).await;
        invite
    }

    /// Waits for switchboard's INVITE and rings: 100, 180.
    pub async fn ring(&mut self, within: Duration) -> Msg {
        let invite = self.wait_request("INVITE", within).await;
        self.answer(&invite, 100, "Trying", &[], "").await;
        let contact = format!("Contact: <{}>", self.uri("callee"));
        self.answer(&invite, 180, "Ringing", std::slice::from_ref(&contact), "")
            .await;
        invite
    }

    /// Answers the ringing `invite`: 200 with our SDP answer (again every
    /// 500 ms over UDP) until the ACK.
    pub async fn accept(&mut self, invite: &Msg) {
        let sdp = self.sdp_answer(invite.body());
        self.accept_with(invite, &sdp).await;
    }

    /// [`Uas::accept`] with this SDP answer.
    pub async fn accept_with(&mut self, invite: &Msg, sdp: &str) {
        let contact = format!("Contact: <{}>", self.uri("callee"));
        self.invite = Some(invite.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.answer(invite, 200, "OK", std::slice::from_ref(&contact), sdp)
                .await;
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no ACK for our 200 OK");
            let wait = if self.transport == "UDP" {
                left.min(Duration::from_millis(500))
            } else {
                left
            };
            let mut kept = VecDeque::new();
            let mut acked = false;
            let until = Instant::now() + wait;
            while let Some(m) = self
                .recv(until.saturating_duration_since(Instant::now()))
                .await
            {
                if m.method() == "ACK" {
                    acked = true;
                    break;
                }
                // INVITE retransmissions are answered by the next 200.
                if m.method() != "INVITE" {
                    kept.push_back(m);
                }
            }
            kept.extend(self.backlog.drain(..));
            self.backlog = kept;
            if acked {
                return;
            }
        }
    }

    /// Sends a request in the dialog of the answered INVITE; its CSeq.
    pub async fn request(
        &mut self,
        method: &str,
        extra: &[String],
        content_type: &str,
        body: &str,
    ) -> u32 {
        let invite = self.invite.clone().expect("an answered call");
        self.cseq += 1;
        let target = invite
            .header("Contact")
            .unwrap()
            .trim()
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string();
        let mut text = format!(
            "{method} {target} SIP/2.0\r\n\
             Via: SIP/2.0/{transport} {addr};branch=z9hG4bK-{tag}-{seq};rport\r\n\
             From: {to};tag={tag}\r\nTo: {from}\r\nCall-ID: {call}\r\nCSeq: {seq} {method}\r\n\
             Contact: <{contact}>\r\nMax-Forwards: 70\r\n",
            transport = self.transport,
            addr = self.addr,
            tag = self.tag,
            seq = self.cseq,
            to = invite.header("To").unwrap(),
            from = invite.header("From").unwrap(),
            call = invite.header("Call-ID").unwrap(),
            contact = self.uri("callee"),
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
        self.send(&text).await;
        self.cseq
    }

    /// ACKs the 2xx to our re-INVITE with CSeq `seq`.
    pub async fn ack(&mut self, seq: u32) {
        let saved = self.cseq;
        self.cseq = seq - 1;
        self.request("ACK", &[], "", "").await;
        self.cseq = saved;
    }

    /// The final response to our request with CSeq `seq`.
    pub async fn response_to(&mut self, seq: u32, method: &str, within: Duration) -> Msg {
        let cseq = format!("{seq} {method}");
        self.wait_for(within, &format!("final response to {cseq}"), |m| {
            m.status() >= 200 && m.header("CSeq").is_some_and(|c| c.trim() == cseq)
        })
        .await
    }

    /// A NOTIFY about the REFER with CSeq `refer_seq` carrying `sipfrag`
    /// (`100 Trying`, `200 OK`…); returns switchboard's answer status.
    pub async fn notify(&mut self, refer_seq: &str, sipfrag: &str, last: bool) -> u16 {
        let state = if last {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let seq = self
            .request(
                "NOTIFY",
                &[
                    format!("Event: refer;id={refer_seq}"),
                    format!("Subscription-State: {state}"),
                ],
                "message/sipfrag;version=2.0",
                &format!("SIP/2.0 {sipfrag}\r\n"),
            )
            .await;
        self.response_to(seq, "NOTIFY", Duration::from_secs(3))
            .await
            .status()
    }

    /// For TCP and TLS: closes the connection switchboard opened (the next
    /// read waits for a new one).
    pub async fn close_connection(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.shutdown().await;
        }
        self.buf.clear();
    }

    /// For TCP and TLS: whether switchboard opens another connection
    /// within `within`.
    pub async fn another_connection(&self, within: Duration) -> bool {
        match &self.listener {
            Listener::Udp(_) => false,
            Listener::Stream(listener, _) => tokio::time::timeout(within, listener.accept())
                .await
                .is_ok(),
        }
    }

    /// The RTP port of our SDP answers.
    pub fn invite_answer_port(&self) -> u16 {
        self.rtp_port
    }

    /// Telephone events (RFC 4733) as (event code, arrival of its first
    /// packet), one per RTP timestamp, in order of arrival.
    pub fn dtmf_events(&self) -> Vec<(u8, Instant)> {
        let Some(te) = self.telephone_event else {
            return Vec::new();
        };
        let mut events: Vec<(u32, u8, Instant)> = Vec::new();
        for p in self.rtp.lock().unwrap().iter() {
            if p.payload_type != te || p.payload.len() < 4 {
                continue;
            }
            if !events.iter().any(|(ts, _, _)| *ts == p.timestamp) {
                events.push((p.timestamp, p.payload[0], p.at));
            }
        }
        events.into_iter().map(|(_, e, at)| (e, at)).collect()
    }
}

/// A message's first line, for failure texts.
pub fn first_line(m: &Msg) -> String {
    m.text.lines().next().unwrap_or_default().to_string()
}

/// A test CA and a certificate for 127.0.0.1 signed by it.
pub struct TestPki {
    /// The CA's PEM file (switchboard's `sip.tls.ca`).
    pub ca: PathBuf,
    /// The certificate's PEM file (switchboard's `sip.tls.cert`).
    pub cert: PathBuf,
    /// Its private key's PEM file (switchboard's `sip.tls.key`).
    pub key: PathBuf,
    /// A rustls server configuration with that certificate (the callee's).
    pub server: Arc<rustls::ServerConfig>,
}

/// Makes a [`TestPki`] in `dir`.
pub fn test_pki(dir: &Path) -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "switchboard callee test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pki = TestPki {
        ca: dir.join("test-ca.pem"),
        cert: dir.join("test-cert.pem"),
        key: dir.join("test-key.pem"),
        server: {
            let chain = vec![cert.der().clone()];
            let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .unwrap();
            Arc::new(config)
        },
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}
