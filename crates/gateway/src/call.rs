//! What every call has, inbound or outbound, once it is set up: the dialog,
//! the media session, the room participant, the in-call loop (BYE,
//! re-INVITE, INFO DTMF, room and media events, timers) and the teardown.

use crate::bridge::{BridgeControl, RoomBridge};
use crate::info_dtmf::parse_info_dtmf;
use crate::refusal::Refusal;
use crate::{answer, CallGuard, Shared, Signal};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use switchboard_media::driver::CallHandle;
use switchboard_media::dtmf::DtmfDigit;
use switchboard_media::ports::RtpPorts;
use switchboard_media::sdp::{Direction, NegotiatedMedia, SdpNegotiator};
use switchboard_media::session::{MediaEvent, MediaSession, SessionConfig};
use switchboard_rooms::{LeaveReason, Participant, RoomEvent};
use switchboard_routing::attrs;
use switchboard_sip::dialog::DialogId;
use switchboard_sip::message::{HeaderName, Method, ResponseSpec};
use switchboard_sip::{Destination, Flow, Incoming, ServerTxnId};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Refused with a final error response.
    Refused(Refusal),
    /// Challenged for credentials (the retry is a new INVITE).
    Challenged,
    /// The caller cancelled before the answer.
    Cancelled,
    /// The caller hung up.
    CallerHungUp,
    /// Taken out of the room (removed, room deleted, replaced).
    Removed(LeaveReason),
    /// The maximum call duration passed.
    MaxDuration,
    /// No RTP for the media timeout.
    MediaTimeout,
    /// The caller never acknowledged our 200 OK.
    AckTimeout,
    /// The PIN was wrong.
    WrongPin,
    /// No PIN within the PIN timeout.
    PinTimeout,
    /// The media session could not be started.
    MediaFailure(String),
}

impl Ending {
    /// The words of the log line and the BYE's Reason header.
    pub(crate) fn text(&self) -> String {
        match self {
            Ending::Refused(r) => r.text(),
            Ending::Challenged => "challenged for credentials".into(),
            Ending::Cancelled => "cancelled by the caller".into(),
            Ending::CallerHungUp => "caller hung up".into(),
            Ending::Removed(LeaveReason::RoomDeleted) => "room deleted".into(),
            Ending::Removed(LeaveReason::DuplicateIdentity) => {
                "replaced by a participant with the same identity".into()
            }
            Ending::Removed(_) => "participant removed from the room".into(),
            Ending::MaxDuration => "maximum call duration reached".into(),
            Ending::MediaTimeout => "media timeout".into(),
            Ending::AckTimeout => "no ACK for the 200 OK".into(),
            Ending::WrongPin => "wrong PIN".into(),
            Ending::PinTimeout => "no PIN entered".into(),
            Ending::MediaFailure(why) => format!("media failure: {why}"),
        }
    }

    /// The `sip;cause` of our BYE (RFC 3326).
    fn bye_cause(&self) -> u16 {
        match self {
            Ending::MediaTimeout | Ending::MediaFailure(_) => 408,
            Ending::AckTimeout => 408,
            Ending::WrongPin | Ending::PinTimeout => 403,
            _ => 200,
        }
    }
}

/// A random source for IDs and room suffixes: the OS generator.
pub(crate) fn os_random(dest: &mut [u8]) {
    if getrandom::fill(dest).is_err() {
        // IDs still differ by the clock; they name calls, they guard nothing.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in dest.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8;
        }
    }
}

pub(crate) async fn next_room_event(participant: &mut Option<Participant>) -> Option<RoomEvent> {
    match participant {
        Some(p) => p.next_event().await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn next_media_event(
    events: &mut Option<mpsc::UnboundedReceiver<MediaEvent>>,
) -> Option<MediaEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the trunk (and rule) decided for the call's lifetime.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallPolicy {
    /// The longest the call may last (the gateway's default when `None`).
    pub max_call_duration: Option<Duration>,
    /// Attributes copied into headers of our BYE (and REFER).
    pub attributes_to_headers: HashMap<String, String>,
}

/// A call's state, shared by the inbound and outbound set-ups and the
/// in-call loop.
pub(crate) struct Call {
    pub shared: Arc<Shared>,
    /// `SCL_…`: the LiveKit call ID, our dialog tag.
    pub call_id: String,
    /// The SIP Call-ID header.
    pub sip_call_id: String,
    /// The flow the dialog travels on (its transport picks our Contact).
    pub flow: Flow,
    /// The INVITE we answer (inbound calls).
    pub invite_txn: Option<ServerTxnId>,
    pub self_tx: mpsc::UnboundedSender<Signal>,
    pub signals: mpsc::UnboundedReceiver<Signal>,
    pub guard: CallGuard,
    pub started: Instant,
    pub answered_at: Option<Instant>,
    pub dialog: Option<DialogId>,
    pub negotiator: Option<SdpNegotiator>,
    pub media: Option<CallHandle>,
    pub media_events: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    pub bridge: BridgeControl,
    pub participant: Option<Participant>,
    pub policy: CallPolicy,
    pub acked: bool,
}

impl Call {
    /// A call not yet set up.
    pub(crate) fn new(
        shared: Arc<Shared>,
        flow: Flow,
        sip_call_id: String,
        self_tx: mpsc::UnboundedSender<Signal>,
        signals: mpsc::UnboundedReceiver<Signal>,
        guard: CallGuard,
    ) -> Call {
        let mut rng = os_random;
        Call {
            shared,
            call_id: switchboard_routing::new_id(switchboard_routing::IdPrefix::Call, &mut rng),
            sip_call_id,
            flow,
            invite_txn: None,
            self_tx,
            signals,
            guard,
            started: Instant::now(),
            answered_at: None,
            dialog: None,
            negotiator: None,
            media: None,
            media_events: None,
            bridge: BridgeControl::default(),
            participant: None,
            policy: CallPolicy::default(),
            acked: false,
        }
    }

    /// Our Contact for the dialog's transport.
    pub(crate) fn contact(&self) -> String {
        format!("<{}>", self.shared.sip.contact_uri(self.flow.transport))
    }

    /// Sets `sip.callStatus` on the participant (every member sees it).
    pub(crate) fn set_status(&self, status: &str) {
        if let Some(p) = &self.participant {
            let mut change = BTreeMap::new();
            change.insert(attrs::CALL_STATUS.to_string(), status.to_string());
            p.set_attributes(&change);
        }
    }

    /// Puts the call's media on a worker (the room's, by name). Media flows
    /// at once (early media and prompts need it); the media timeout only
    /// counts from [`Call::media_answered`].
    pub(crate) fn start_media(
        &mut self,
        ports: RtpPorts,
        negotiated: NegotiatedMedia,
        media_timeout: Duration,
        room: &str,
    ) -> Result<(), String> {
        let mut session_config: SessionConfig = self.shared.config.session.clone();
        session_config.media_timeout = media_timeout;
        // Before the answer the peer may send nothing; the real allowance
        // is set when the call is answered.
        session_config.initial_media_timeout = Duration::from_secs(24 * 3600);
        let codec = negotiated.codec;
        let session =
            MediaSession::new(session_config, negotiated, Instant::now()).map_err(|e| {
                warn!(call_id = %self.call_id, error = %e, "media session failed");
                e.to_string()
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let bridge = RoomBridge::new(self.bridge.clone(), tx);
        let handle = self
            .shared
            .media
            .worker_for(room)
            .add_call(ports, session, Box::new(bridge));
        debug!(call_id = %self.call_id, codec = ?codec, "media started");
        self.media = Some(handle);
        self.media_events = Some(rx);
        Ok(())
    }

    /// Starts the media timeout: the initial allowance counts from now.
    pub(crate) fn media_answered(&self, timeout: Duration) {
        if let Some(media) = &self.media {
            let initial = self.started.elapsed() + self.shared.config.initial_media_timeout;
            media.set_media_timeout(timeout, initial);
        }
    }

    /// Runs the answered call until something ends it.
    pub(crate) async fn in_call(&mut self) -> Ending {
        let config = self.shared.config.clone();
        let max_duration = self
            .policy
            .max_call_duration
            .unwrap_or(config.max_call_duration);
        let answered = self.answered_at.unwrap_or(self.started);
        let deadline = tokio::time::Instant::from_std(answered + max_duration);
        if self.acked {
            self.set_status("active");
        }
        loop {
            tokio::select! {
                signal = self.signals.recv() => match signal {
                    Some(Signal::Ack) => {
                        if !self.acked {
                            self.acked = true;
                            self.set_status("active");
                            info!(call_id = %self.call_id, "call active");
                        }
                    }
                    Some(Signal::AckTimeout) => return Ending::AckTimeout,
                    Some(Signal::Request(incoming)) => match self.in_dialog_request(incoming).await {
                        InDialog::Hangup => return Ending::CallerHungUp,
                        InDialog::Digit(digit) => self.dtmf_to_room(digit),
                        InDialog::Handled => {}
                    },
                    Some(Signal::Cancelled) => debug!(call_id = %self.call_id, "CANCEL after the answer ignored"),
                    Some(Signal::Response(..) | Signal::RequestFailed(..)) => {}
                    None => return Ending::CallerHungUp,
                },
                event = next_room_event(&mut self.participant) => match event {
                    Some(RoomEvent::Dtmf { digit, .. }) => self.dtmf_to_phone(&digit).await,
                    Some(RoomEvent::Disconnected { reason }) => return Ending::Removed(reason),
                    Some(_) => {}
                    None => {
                        let reason = self.participant.as_ref().and_then(Participant::disconnected).unwrap_or(LeaveReason::RoomDeleted);
                        return Ending::Removed(reason);
                    }
                },
                event = next_media_event(&mut self.media_events) => match event {
                    Some(MediaEvent::Dtmf(digit)) => self.dtmf_to_room(digit),
                    Some(MediaEvent::MediaTimeout { silent_for }) => {
                        info!(call_id = %self.call_id, silent_for = ?silent_for, "no RTP from the caller");
                        return Ending::MediaTimeout;
                    }
                    Some(other) => debug!(call_id = %self.call_id, event = ?other, "media event"),
                    None => return Ending::MediaFailure("media worker stopped".into()),
                },
                _ = tokio::time::sleep_until(deadline) => return Ending::MaxDuration,
            }
        }
    }

    fn dtmf_to_room(&self, digit: DtmfDigit) {
        if let Some(p) = &self.participant {
            debug!(call_id = %self.call_id, digit = %digit.as_char(), "DTMF from the caller");
            p.send_dtmf(u32::from(digit.code), &digit.as_char().to_string(), &[]);
        }
    }

    async fn dtmf_to_phone(&self, digit: &str) {
        let Some(media) = &self.media else { return };
        // Only real digits: a room participant's text is not trusted.
        let digits: String = digit
            .chars()
            .filter(|c| DtmfDigit::from_char(*c).is_some())
            .collect();
        if digits.is_empty() {
            return;
        }
        if let Err(e) = media.send_dtmf(&digits).await {
            debug!(call_id = %self.call_id, error = %e, "DTMF to the caller not sent");
        }
    }

    /// Answers a request within the dialog.
    pub(crate) async fn in_dialog_request(&mut self, incoming: Incoming) -> InDialog {
        let sip = &self.shared.sip.clone();
        let method = incoming.request.method.clone();
        match method {
            Method::Bye => {
                answer(sip, &incoming, ResponseSpec::new(200));
                if let Some(reason) = incoming.request.headers.get(&HeaderName::Reason) {
                    info!(call_id = %self.call_id, reason, "caller's BYE reason");
                }
                InDialog::Hangup
            }
            Method::Info => {
                let content_type = incoming
                    .request
                    .headers
                    .get(&HeaderName::ContentType)
                    .unwrap_or_default();
                let digit = parse_info_dtmf(content_type, &incoming.request.body);
                answer(sip, &incoming, ResponseSpec::new(200));
                match digit {
                    Some(d) => InDialog::Digit(d),
                    None => InDialog::Handled,
                }
            }
            Method::Invite | Method::Update => {
                let spec = self.renegotiate(&incoming).await;
                answer(sip, &incoming, spec);
                InDialog::Handled
            }
            Method::Options => {
                answer(sip, &incoming, ResponseSpec::new(200));
                InDialog::Handled
            }
            _ => {
                answer(sip, &incoming, ResponseSpec::new(501));
                InDialog::Handled
            }
        }
    }

    /// A re-INVITE or UPDATE: hold, resume, new address or codec.
    async fn renegotiate(&mut self, incoming: &Incoming) -> ResponseSpec {
        let body = &incoming.request.body;
        if body.is_empty() {
            if incoming.request.method == Method::Update {
                return ResponseSpec::new(200);
            }
            // An offerless re-INVITE wants our offer in the 200 and its
            // answer in the ACK; not supported yet.
            return ResponseSpec::new(488).reason("re-INVITE without SDP not supported");
        }
        let offer = String::from_utf8_lossy(body).into_owned();
        let Some(negotiator) = self.negotiator.as_mut() else {
            return ResponseSpec::new(500);
        };
        match negotiator.answer_offer(&offer, Direction::SendRecv) {
            Ok((answer_sdp, negotiated)) => {
                let direction = negotiated.direction;
                if let Some(media) = &self.media {
                    if let Err(e) = media.update(negotiated).await {
                        warn!(call_id = %self.call_id, error = %e, "media update failed");
                        return ResponseSpec::new(500).reason("Media Update Failed");
                    }
                }
                info!(call_id = %self.call_id, direction = ?direction, "media renegotiated");
                ResponseSpec::new(200)
                    .header(HeaderName::Contact, self.contact())
                    .body("application/sdp", answer_sdp)
            }
            Err(e) => {
                info!(call_id = %self.call_id, error = %e, "re-INVITE refused");
                ResponseSpec::new(e.sip_status())
            }
        }
    }

    // ----- teardown ------------------------------------------------------

    /// Hangs up (BYE when the call was answered and we end it) and
    /// releases everything the call held.
    pub(crate) async fn finish(mut self, ending: Ending) {
        let answered = self.answered_at.is_some();
        let needs_bye = answered && !matches!(ending, Ending::CallerHungUp | Ending::Cancelled);
        if needs_bye {
            self.send_bye(&ending).await;
        }
        if let Some(participant) = self.participant.take() {
            if participant.disconnected().is_none() {
                let mut change = BTreeMap::new();
                change.insert(attrs::CALL_STATUS.to_string(), "hangup".to_string());
                participant.set_attributes(&change);
            }
            drop(participant);
        }
        self.bridge.set_port(None);
        let stats = match &self.media {
            Some(media) => media.stats().await.ok(),
            None => None,
        };
        self.media = None;
        self.media_events = None;
        {
            let mut routes = self.shared.routes();
            if let Some(txn) = self.invite_txn {
                routes.invites.remove(&txn);
            }
            if let Some(id) = &self.dialog {
                routes.dialogs.remove(id);
                self.shared.sip.remove_dialog(id);
            }
            routes
                .requests
                .retain(|_, tx| !tx.same_channel(&self.self_tx));
        }
        match &ending {
            Ending::Challenged => {}
            Ending::Refused(_) => {}
            _ => {
                let stats = stats.unwrap_or_default();
                info!(
                    call_id = %self.call_id,
                    sip_call_id = %self.sip_call_id,
                    reason = %ending.text(),
                    answered,
                    duration_ms = self.answered_at.map(|t| t.elapsed().as_millis() as u64).unwrap_or(0),
                    rtp_received = stats.packets_received,
                    rtp_sent = stats.packets_sent,
                    rtp_lost = stats.packets_lost,
                    concealed = stats.concealed_frames,
                    jitter_ms = format!("{:.1}", stats.jitter_ms),
                    "call ended"
                )
            }
        }
    }

    /// Ends the dialog with BYE (with the trunk's attributes_to_headers and
    /// a Reason) and waits briefly for its answer.
    async fn send_bye(&mut self, ending: &Ending) {
        let Some(id) = self.dialog.clone() else {
            return;
        };
        let sip = self.shared.sip.clone();
        let Some((mut request, flow)) =
            sip.with_dialog(&id, |d| (d.request(Method::Bye, None), d.flow))
        else {
            return;
        };
        request.headers.push(
            HeaderName::Reason,
            format!(
                "SIP;cause={};text=\"{}\"",
                ending.bye_cause(),
                ending.text().replace(['"', '\\'], "'")
            ),
        );
        if let Some(p) = &self.participant {
            let attributes = p.info().attributes;
            let mut mapped: Vec<_> = self
                .policy
                .attributes_to_headers
                .iter()
                .filter_map(|(attr, header)| {
                    attributes.get(attr).map(|v| (header.clone(), v.clone()))
                })
                .collect();
            mapped.sort();
            for (header, value) in mapped {
                request.headers.push(HeaderName::parse(&header), value);
            }
        }
        let txn = {
            let mut routes = self.shared.routes();
            let txn = sip.send_request(request, Destination::Flow(flow));
            routes.requests.insert(txn, self.self_tx.clone());
            txn
        };
        info!(call_id = %self.call_id, reason = %ending.text(), "BYE sent");
        let wait = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                signal = self.signals.recv() => match signal {
                    Some(Signal::Response(t, response)) if t == txn && response.status >= 200 => break,
                    Some(Signal::RequestFailed(t, reason)) if t == txn => {
                        debug!(call_id = %self.call_id, ?reason, "BYE got no answer");
                        break;
                    }
                    Some(Signal::Request(incoming)) => {
                        // A BYE crossing ours: answer it, ours still ends the call.
                        answer(&sip, &incoming, ResponseSpec::new(200));
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = &mut wait => break,
            }
        }
    }
}

/// What an in-dialog request meant for the call.
pub(crate) enum InDialog {
    /// The caller hung up.
    Hangup,
    /// A DTMF digit by SIP INFO.
    Digit(DtmfDigit),
    /// Answered; nothing else to do.
    Handled,
}
