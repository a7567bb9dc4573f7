//! What every call has, inbound or outbound, once it is set up: the dialog,
//! the media session, the room participant, the in-call loop (BYE,
//! re-INVITE, INFO DTMF, room and media events, timers) and the teardown.

use crate::bridge::{BridgeControl, RoomBridge};
use crate::deadlines::{Deadlines, Timer};
use crate::info_dtmf::parse_info_dtmf;
use crate::records::{lock, now_ns, SharedRecord};
use crate::refusal::Refusal;
use crate::session_timer::{
    answer_session_timer, min_se, refresher_for_request, supports_timer, timer_from_answer,
    Refresher, SessionExpires, SessionTimer,
};
use crate::status::{CallResult, CallStatus, Outcome};
use crate::{answer, CallGuard, Shared, Signal, TransferDone, TransferError, TransferOrder};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::codec::CodecKind;
use switchboard_media::driver::CallHandle;
use switchboard_media::dtmf::DtmfDigit;
use switchboard_media::ports::RtpPorts;
use switchboard_media::sdp::{Direction, NegotiatedMedia, SdpNegotiator};
use switchboard_media::session::{CallStats, MediaEvent, MediaSession, SessionConfig};
use switchboard_media::tones::ToneKind;
use switchboard_rooms::{AudioRate, LeaveReason, Participant, RoomError, RoomEvent, RoomHome};
use switchboard_routing::attrs;
use switchboard_routing::livekit_protocol::{
    DisconnectReason, SipCallDirection, SipCallInfo, SipCallStatus, SipStatus, SipTransferInfo,
    SipTransferStatus,
};
use switchboard_sip::dialog::DialogId;
use switchboard_sip::message::{HeaderName, Headers, Host, Method, Request, ResponseSpec, Uri};
use switchboard_sip::{ClientTxnId, Destination, Flow, Incoming, ServerTxnId};
use switchboard_store::{CallQuality, CallRecord};
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
    /// The room refused the participant (full, over the rooms limit).
    JoinFailed(RoomError),
    /// Transferred away (REFER accepted, target answered).
    Transferred,
    /// An outbound call that was never answered.
    DialFailed(crate::DialError),
    /// The session timer expired without a refresh (RFC 4028).
    SessionExpired,
    /// The voice bot the call is streamed to closed its socket (or it failed).
    StreamEnded(String),
    /// A room participant asked for it (`lk.sip.EndCall`).
    EndedByParticipant(String),
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
            Ending::JoinFailed(e) => format!("could not join the room: {e}"),
            Ending::Transferred => "call transferred".into(),
            Ending::DialFailed(e) => e.to_string(),
            Ending::SessionExpired => "session timer expired".into(),
            Ending::StreamEnded(why) => format!("the voice bot ended the stream: {why}"),
            Ending::EndedByParticipant(who) => format!("ended by participant {who}"),
        }
    }

    /// How the call ended, for the log, the participant's final attributes
    /// and the metrics.
    pub(crate) fn outcome(&self, answered: bool) -> Outcome {
        use CallResult::{Answered, Cancelled, Challenged, Failed, Refused};
        use DisconnectReason as Reason;
        let ended = if answered { Answered } else { Failed };
        let (result, reason, sip_status) = match self {
            Ending::Refused(r) => (Refused, Reason::SipTrunkFailure, r.status()),
            Ending::Challenged => (Challenged, Reason::UnknownReason, 407),
            Ending::Cancelled => (Cancelled, Reason::ClientInitiated, 487),
            Ending::CallerHungUp => (ended, Reason::ClientInitiated, 200),
            Ending::Removed(LeaveReason::RoomDeleted) => (ended, Reason::RoomDeleted, 200),
            Ending::Removed(LeaveReason::DuplicateIdentity) => {
                (ended, Reason::DuplicateIdentity, 200)
            }
            Ending::Removed(LeaveReason::Stuck) => (ended, Reason::StateMismatch, 200),
            Ending::Removed(_) => (ended, Reason::ParticipantRemoved, 200),
            Ending::MaxDuration => (ended, Reason::ConnectionTimeout, 200),
            Ending::MediaTimeout => (ended, Reason::MediaFailure, 408),
            Ending::AckTimeout | Ending::SessionExpired => (ended, Reason::ConnectionTimeout, 408),
            Ending::WrongPin | Ending::PinTimeout => (ended, Reason::JoinFailure, 403),
            Ending::MediaFailure(_) => (ended, Reason::MediaFailure, 500),
            // 503: a full room or the rooms limit is a passing condition,
            // so the caller (or its carrier) may try again.
            Ending::JoinFailed(_) => (ended, Reason::JoinFailure, 503),
            Ending::Transferred => (ended, Reason::ClientInitiated, 200),
            // The bot is the other party: its hanging up is the far end's.
            Ending::StreamEnded(_) => (ended, Reason::ClientInitiated, 200),
            // The room's side hung up, as a caller's BYE is the far end's.
            Ending::EndedByParticipant(_) => (ended, Reason::ClientInitiated, 200),
            Ending::DialFailed(e) => dial_outcome(e),
        };
        // Taken out of the room, or ended by a participant, before the
        // answer: the caller got a refusal, and the record says which.
        let sip_status = match self {
            Ending::Removed(_) if !answered => Refusal::RemovedWhileRinging.status(),
            Ending::EndedByParticipant(_) if !answered => Refusal::EndedWhileRinging.status(),
            _ => sip_status,
        };
        Outcome {
            result,
            reason,
            sip_status,
        }
    }

    /// An ending that is a fault of the call's path rather than someone
    /// hanging up: its words go into the record's `error`.
    fn is_fault(&self) -> bool {
        matches!(
            self,
            Ending::MediaTimeout
                | Ending::MediaFailure(_)
                | Ending::AckTimeout
                | Ending::SessionExpired
                | Ending::JoinFailed(_)
                | Ending::WrongPin
                | Ending::PinTimeout
        )
    }

    /// The `sip;cause` of our BYE (RFC 3326).
    fn bye_cause(&self) -> u16 {
        match self {
            Ending::MediaTimeout | Ending::MediaFailure(_) | Ending::SessionExpired => 408,
            Ending::AckTimeout => 408,
            Ending::WrongPin | Ending::PinTimeout => 403,
            Ending::JoinFailed(_) => 503,
            _ => 200,
        }
    }
}

/// A SIP status with its standard reason phrase, as LiveKit's records
/// carry it.
fn sip_status(code: u16) -> SipStatus {
    SipStatus {
        code: i32::from(code),
        status: switchboard_sip::message::standard_reason(code).to_string(),
    }
}

/// A From or To URI as the call record shows it (LiveKit's `SIPUri`).
pub(crate) fn sip_uri(
    uri: &Uri,
    transport: switchboard_sip::Transport,
) -> switchboard_routing::livekit_protocol::SipUri {
    use switchboard_routing::livekit_protocol::{SipTransport, SipUri};
    let sip = uri.as_sip();
    let host = sip.map(|s| s.host.to_string()).unwrap_or_default();
    let ip = match sip.map(|s| &s.host) {
        Some(Host::Ip(ip)) => ip.to_string(),
        _ => String::new(),
    };
    SipUri {
        user: uri.user().unwrap_or_default(),
        host,
        ip,
        port: sip.and_then(|s| s.port).map_or(0, u32::from),
        transport: match transport {
            switchboard_sip::Transport::Udp => SipTransport::Udp,
            switchboard_sip::Transport::Tcp => SipTransport::Tcp,
            switchboard_sip::Transport::Tls => SipTransport::Tls,
        } as i32,
    }
}

/// How an outbound call that was never answered ended.
/// `inbound` or `outbound`: the direction label of logs and metrics.
pub(crate) fn direction(outbound: bool) -> &'static str {
    if outbound {
        "outbound"
    } else {
        "inbound"
    }
}

/// Counts an ended call in `switchboard_calls_ended_total`, also one that
/// never got as far as a call task (an outbound call refused before it).
pub(crate) fn count_ended(shared: &Shared, direction: &str, outcome: &Outcome) {
    shared
        .metrics
        .calls_ended
        .with_label_values(&[
            direction,
            outcome.result.as_str(),
            outcome.reason.as_str_name(),
            &outcome.sip_status.to_string(),
        ])
        .inc();
}

fn dial_outcome(error: &crate::DialError) -> (CallResult, DisconnectReason, u16) {
    use crate::DialError;
    use DisconnectReason as Reason;
    match error {
        DialError::Sip { status, .. } => {
            let reason = match status {
                401 | 403 | 407 | 486 | 488 | 600..=699 => Reason::UserRejected,
                400..=499 => Reason::UserUnavailable,
                _ => Reason::SipTrunkFailure,
            };
            (CallResult::Failed, reason, *status)
        }
        DialError::RingingTimeout(_) => (CallResult::Failed, Reason::UserUnavailable, 408),
        DialError::Transport(_) | DialError::Address(_) | DialError::DestinationRefused(_) => {
            (CallResult::Failed, Reason::SipTrunkFailure, 503)
        }
        DialError::Media(_) => (CallResult::Failed, Reason::MediaFailure, 488),
        DialError::AuthMissing => (CallResult::Failed, Reason::SipTrunkFailure, 407),
        DialError::Abandoned => (CallResult::Cancelled, Reason::ClientInitiated, 487),
        DialError::AtCapacity | DialError::NoPorts | DialError::Room(_) => {
            (CallResult::Failed, Reason::JoinFailure, 503)
        }
        DialError::TransportNotListening(_) => (CallResult::Failed, Reason::SipTrunkFailure, 503),
    }
}

pub(crate) async fn next_room_event(participant: &mut Option<Participant>) -> Option<RoomEvent> {
    match participant {
        Some(p) => p.next_event().await,
        None => std::future::pending().await,
    }
}

/// How the call's media stream ended; pending forever without one.
pub(crate) async fn next_stream_end(
    stream: &mut Option<switchboard_streams::StreamHandle>,
) -> switchboard_streams::StreamEnd {
    match stream {
        Some(handle) => handle.ended().await,
        None => std::future::pending().await,
    }
}

/// A stream's end in the words of the BYE's Reason header and the log.
pub(crate) fn stream_end_text(end: &switchboard_streams::StreamEnd) -> String {
    use switchboard_streams::StreamEnd;
    match end {
        StreamEnd::BotClosed { code, .. } => match code {
            Some(code) => format!("bot closed the socket ({code})"),
            None => "bot closed the socket".into(),
        },
        StreamEnd::Failed(why) => format!("stream failed: {why}"),
        StreamEnd::Stopped => "stream stopped".into(),
        StreamEnd::RoomClosed => "bot left the room".into(),
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
    /// The far end's address: the flow's, or behind a trusted proxy the
    /// caller's (trunk matching, offences, media latching, the record).
    pub peer: std::net::SocketAddr,
    /// The INVITE we answer (inbound calls).
    pub invite_txn: Option<ServerTxnId>,
    /// Placed by us (CreateSIPParticipant).
    pub outbound: bool,
    pub self_tx: mpsc::UnboundedSender<Signal>,
    pub signals: mpsc::UnboundedReceiver<Signal>,
    pub guard: CallGuard,
    pub started: Instant,
    pub answered_at: Option<Instant>,
    pub dialog: Option<DialogId>,
    pub negotiator: Option<SdpNegotiator>,
    pub media: Option<CallHandle>,
    /// The negotiated codec, once media started.
    pub media_codec: Option<CodecKind>,
    pub media_events: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    pub bridge: BridgeControl,
    pub participant: Option<Participant>,
    pub policy: CallPolicy,
    pub acked: bool,
    /// A REFER under way.
    pub transfer: Option<PendingTransfer>,
    /// The RFC 4028 session timer, when negotiated.
    pub session_timer: Option<SessionTimer>,
    /// When the answered call's timers fire (maximum duration, session
    /// timer, transfer).
    pub(crate) deadlines: Deadlines,
    /// Our refresh re-INVITE in flight: its transaction and CSeq.
    pub refresh: Option<(ClientTxnId, u32)>,
    /// We offered in a 2xx to an offerless re-INVITE: the ACK answers.
    pub offer_in_2xx: bool,
    /// The DTMF an outbound call was asked to send after the answer is
    /// still playing (`sip.callStatus` is `automation` until it is sent).
    pub automating: bool,
    /// The media stream to a voice bot its dispatch rule asked for.
    pub stream: Option<switchboard_streams::StreamHandle>,
    /// What the call history and the live-calls listing show of it.
    pub record: SharedRecord,
    /// The far end's headers (its INVITE's, or its 200 OK's when we
    /// dialled), for `lk.sip.GetRemoteHeaders`.
    pub remote_headers: Headers,
    /// Headers a participant asked for on our BYE (`lk.sip.EndCall`).
    pub bye_headers: Vec<(String, String)>,
    /// The room the call is for and the local room it joins for it (itself,
    /// or a private one when the room lives elsewhere): decided once.
    pub placed: Option<(String, String)>,
}

/// A transfer in progress: the REFER we sent and who waits for the outcome.
pub(crate) struct PendingTransfer {
    id: String,
    refer_to: String,
    cseq: u32,
    txn: ClientTxnId,
    dialtone: bool,
    replies: Vec<tokio::sync::oneshot::Sender<Result<TransferDone, TransferError>>>,
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
        let mut rng = switchboard_sip::fill_random;
        let call_id = switchboard_routing::new_id(switchboard_routing::IdPrefix::Call, &mut rng);
        shared
            .routes()
            .calls
            .insert(call_id.clone(), self_tx.clone());
        let record = CallRecord {
            info: Some(SipCallInfo {
                call_id: call_id.clone(),
                sip_call_id: sip_call_id.clone(),
                call_direction: SipCallDirection::ScdInbound as i32,
                call_status: SipCallStatus::ScsCallIncoming as i32,
                created_at_ns: now_ns(),
                ..SipCallInfo::default()
            }),
            transport: flow.transport.as_str().to_ascii_lowercase(),
            remote_address: flow.remote.to_string(),
            ..CallRecord::default()
        };
        let record = shared.records.open(&call_id, &sip_call_id, record);
        Call {
            shared,
            call_id,
            sip_call_id,
            peer: flow.remote,
            flow,
            invite_txn: None,
            outbound: false,
            self_tx,
            signals,
            guard,
            started: Instant::now(),
            answered_at: None,
            dialog: None,
            negotiator: None,
            media: None,
            media_codec: None,
            media_events: None,
            bridge: BridgeControl::default(),
            participant: None,
            policy: CallPolicy::default(),
            acked: false,
            transfer: None,
            session_timer: None,
            deadlines: Deadlines::default(),
            automating: false,
            stream: None,
            refresh: None,
            offer_in_2xx: false,
            record,
            remote_headers: Headers::new(),
            bye_headers: Vec::new(),
            placed: None,
        }
    }

    /// Changes the call's record (what the live-calls listing shows now).
    pub(crate) fn note(&self, change: impl FnOnce(&mut CallRecord)) {
        change(&mut lock(&self.record));
    }

    /// The far end rings (or, inbound, we said 180): the first time only.
    pub(crate) fn note_ringing(&self) {
        self.note(|record| {
            if record.ringing_at_ns == 0 {
                record.ringing_at_ns = now_ns();
            }
        });
    }

    /// The call's participant is in its room.
    pub(crate) fn note_joined(&self, room: &str, participant: &Participant) {
        let info = participant.info();
        let room_sid = self
            .shared
            .rooms
            .room(room)
            .map(|r| r.sid)
            .unwrap_or_default();
        self.note_info(|record| {
            record.room_name = room.to_owned();
            record.room_id = room_sid;
            record.participant_identity = info.identity.clone();
            record.participant_attributes = info.attributes.into_iter().collect();
            if record.call_status == SipCallStatus::ScsCallIncoming as i32 {
                record.call_status = SipCallStatus::ScsParticipantJoined as i32;
            }
        });
    }

    /// The call is answered now.
    pub(crate) fn mark_answered(&mut self) {
        let now = Instant::now();
        self.answered_at = Some(now);
        self.shared
            .metrics
            .call_setup
            .with_label_values(&[direction(self.outbound)])
            .observe(now.saturating_duration_since(self.started).as_secs_f64());
        self.note_info(|info| {
            info.started_at_ns = now_ns();
            info.call_status = SipCallStatus::ScsActive as i32;
        });
    }

    /// Changes the LiveKit part of the call's record.
    pub(crate) fn note_info(&self, change: impl FnOnce(&mut SipCallInfo)) {
        self.note(|record| change(record.info.get_or_insert_with(SipCallInfo::default)));
    }

    /// Our Contact for the dialog's transport.
    pub(crate) fn contact(&self) -> String {
        format!("<{}>", self.shared.sip.contact_uri(self.flow.transport))
    }

    /// Sets `sip.callStatus` on the participant (every member sees it).
    pub(crate) fn set_status(&self, status: CallStatus) {
        match status {
            CallStatus::Ringing => self.note_ringing(),
            CallStatus::Active | CallStatus::Automation => {
                self.note_info(|info| info.call_status = SipCallStatus::ScsActive as i32);
            }
            CallStatus::Dialing | CallStatus::Hangup => {}
        }
        if let Some(p) = &self.participant {
            let mut change = BTreeMap::new();
            change.insert(attrs::CALL_STATUS.to_string(), status.as_str().to_string());
            p.set_attributes(&change);
        }
    }

    /// The rate the caller's participant declares to its room: its codec's
    /// PCM rate (Opus can run at any rate up to that), or the configured
    /// rate before media started.
    pub(crate) fn room_audio_rate(&self) -> AudioRate {
        let Some(codec) = self.media_codec else {
            return AudioRate::Configured;
        };
        let rate = codec.pcm_rate(&self.shared.config.session.opus);
        if codec == CodecKind::Opus {
            AudioRate::UpTo(rate)
        } else {
            AudioRate::Fixed(rate)
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
        session_config.signalling_source = Some(self.peer.ip());
        // Before the answer the peer may send nothing; the real allowance
        // is set when the call is answered.
        session_config.initial_media_timeout = Duration::from_secs(24 * 3600);
        let codec = negotiated.codec;
        self.media_codec = Some(codec);
        let suite = negotiated
            .srtp
            .as_ref()
            .map(|srtp| srtp.local.suite.name().to_string());
        self.note(|record| {
            let info = record.info.get_or_insert_with(SipCallInfo::default);
            info.audio_codec = codec.sdp_name().to_string();
            info.media_encryption = if suite.is_some() { "sdes" } else { "" }.to_string();
            record.srtp_suite = suite.unwrap_or_default();
        });
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

    /// Starts the media timeout (the initial allowance counts from now)
    /// and counts the call as up.
    pub(crate) fn media_answered(&self, timeout: Duration) {
        let direction = direction(self.outbound);
        self.shared
            .metrics
            .calls_active
            .with_label_values(&[direction])
            .inc();
        if let Some(media) = &self.media {
            let initial = self
                .started
                .elapsed()
                .saturating_add(self.shared.config.initial_media_timeout);
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
        self.deadlines
            .set(Timer::MaxDuration, answered, max_duration);
        if self.acked && !self.automating {
            self.set_status(CallStatus::Active);
        }
        self.arm_session_timer();
        loop {
            tokio::select! {
                signal = self.signals.recv() => match signal {
                    Some(Signal::Ack(body)) => {
                        if !self.acked {
                            self.acked = true;
                            self.set_status(CallStatus::Active);
                            info!(call_id = %self.call_id, "call active");
                        }
                        if self.offer_in_2xx {
                            self.offer_in_2xx = false;
                            self.answer_in_ack(&body).await;
                        }
                    }
                    Some(Signal::AckTimeout) => return Ending::AckTimeout,
                    Some(Signal::Request(incoming)) => match self.in_dialog_request(incoming).await {
                        InDialog::Hangup => return Ending::CallerHungUp,
                        InDialog::Digit(digit) => self.dtmf_to_room(digit),
                        InDialog::Handled => {}
                    },
                    Some(Signal::Cancelled) => debug!(call_id = %self.call_id, "CANCEL after the answer ignored"),
                    Some(Signal::Transfer(order)) => self.start_transfer(order),
                    Some(Signal::Response(txn, response, flow)) => {
                        if self.refresh.is_some_and(|(t, _)| t == txn) {
                            if let Some(ending) = self.refresh_answered(&response, flow).await {
                                return ending;
                            }
                        } else {
                            self.transfer_response(txn, response.status, &response_reason(&response));
                        }
                    }
                    Some(Signal::RequestFailed(txn, reason)) => {
                        if self.refresh.is_some_and(|(t, _)| t == txn) {
                            // RFC 4028 §10: a refresh that times out ends the session.
                            info!(call_id = %self.call_id, ?reason, "session refresh got no answer: the peer is gone");
                            return Ending::SessionExpired;
                        }
                        debug!(call_id = %self.call_id, ?reason, "request failed");
                        self.transfer_response(txn, 408, "Request Timeout");
                    }
                    None => return Ending::CallerHungUp,
                },
                event = next_room_event(&mut self.participant) => match event {
                    Some(RoomEvent::Dtmf { digit, .. }) => self.dtmf_to_phone(&digit).await,
                    Some(RoomEvent::Rpc { from, id, method, payload }) => {
                        if let Some(ending) = self.rpc(from, &id, &method, &payload) {
                            return ending;
                        }
                    }
                    Some(RoomEvent::Disconnected { reason }) => return Ending::Removed(reason),
                    Some(_) => {}
                    None => {
                        let reason = self.participant.as_ref().and_then(Participant::disconnected).unwrap_or(LeaveReason::RoomDeleted);
                        return Ending::Removed(reason);
                    }
                },
                event = next_media_event(&mut self.media_events) => match event {
                    Some(MediaEvent::Dtmf(digit)) => self.dtmf_to_room(digit),
                    Some(MediaEvent::DtmfSent) if self.automating => {
                        self.automating = false;
                        self.set_status(CallStatus::Active);
                    }
                    Some(MediaEvent::MediaTimeout { silent_for }) => {
                        info!(call_id = %self.call_id, silent_for = ?silent_for, "no RTP from the caller");
                        return Ending::MediaTimeout;
                    }
                    Some(other) => debug!(call_id = %self.call_id, event = ?other, "media event"),
                    None => return Ending::MediaFailure("media worker stopped".into()),
                },
                end = next_stream_end(&mut self.stream) => {
                    self.stream = None;
                    info!(call_id = %self.call_id, end = ?end, "media stream ended");
                    if config.streams.bot_close_hangs_up {
                        return Ending::StreamEnded(stream_end_text(&end));
                    }
                }
                _ = sleep_until_deadline(self.deadlines.next()) => {
                    while let Some(timer) = self.deadlines.expired(Instant::now()) {
                        if let Some(ending) = self.timer_fired(timer) {
                            return ending;
                        }
                    }
                }
            }
        }
    }

    /// Decides where the call joins for the rule's (or request's) `room`:
    /// that room here, or, when the room lives elsewhere (the directory
    /// says), a private room of its own standing for it.
    pub(crate) async fn place(&mut self, room: &str) -> Result<String, RoomError> {
        if let Some((placed, local)) = &self.placed {
            if placed == room {
                return Ok(local.clone());
            }
        }
        let home = match &self.shared.directory {
            None => RoomHome::Here,
            Some(directory) => directory.locate(room).await.map_err(|e| {
                warn!(call_id = %self.call_id, room, error = %e, "cannot tell where the room lives");
                RoomError::Unavailable(e)
            })?,
        };
        let local = match &home {
            RoomHome::Here => room.to_string(),
            RoomHome::Elsewhere(url) => {
                info!(call_id = %self.call_id, room, server = %url, "the room lives elsewhere: joining it through the uplink");
                switchboard_rooms::private_room_name(room, &self.call_id)
            }
        };
        self.placed = Some((room.to_string(), local.clone()));
        Ok(local)
    }

    /// The local room this call joins for `room`, as [`Call::place`]
    /// decided (the room itself if it was not asked).
    pub(crate) fn local_room(&self, room: &str) -> String {
        match &self.placed {
            Some((placed, local)) if placed == room => local.clone(),
            _ => room.to_string(),
        }
    }

    /// Answers an RPC from a room participant (`lk.sip.*`); `Some` when it
    /// ends the call.
    fn rpc(&mut self, from: String, id: &str, method: &str, payload: &str) -> Option<Ending> {
        let bye_headers = self.answer_rpc(&self.remote_headers, &from, id, method, payload)?;
        self.bye_headers = bye_headers;
        Some(Ending::EndedByParticipant(from))
    }

    /// Answers an RPC from a room participant (`lk.sip.*`), at any phase,
    /// with `remote_headers` as the far end's headers so far (the INVITE's
    /// while an inbound call rings; none while an outbound call dials).
    /// `Some` (the headers asked for on the BYE) when it ends the call.
    pub(crate) fn answer_rpc(
        &self,
        remote_headers: &Headers,
        from: &str,
        id: &str,
        method: &str,
        payload: &str,
    ) -> Option<Vec<(String, String)>> {
        let participant = self.participant.as_ref()?;
        let action = crate::room_rpc::handle(method, payload, remote_headers);
        let ok = !matches!(action, crate::room_rpc::RpcAction::Reply(Err(_)));
        info!(call_id = %self.call_id, from = %from, method, ok, "RPC from the room");
        match action {
            crate::room_rpc::RpcAction::Reply(result) => {
                participant.reply_rpc(from, id, result);
                None
            }
            crate::room_rpc::RpcAction::EndCall(headers) => {
                participant.reply_rpc(from, id, Ok("{}".into()));
                Some(headers)
            }
        }
    }

    /// What a timer of the answered call means.
    fn timer_fired(&mut self, timer: Timer) -> Option<Ending> {
        match timer {
            Timer::MaxDuration => Some(Ending::MaxDuration),
            Timer::SessionExpiry => Some(Ending::SessionExpired),
            Timer::ByeAfterTransfer => Some(Ending::Transferred),
            Timer::SessionRefresh => {
                self.send_refresh();
                None
            }
            Timer::Transfer => {
                info!(call_id = %self.call_id, "transfer timed out");
                self.end_transfer(Err(TransferError::Timeout));
                None
            }
            // Timers of the phases before the answer, which clear them.
            Timer::RingingTimeout | Timer::RingAgain | Timer::PinTimeout | Timer::CancelGiveUp => {
                None
            }
        }
    }

    /// Refuses a transfer that cannot start (the reply may find no one
    /// waiting any more).
    pub(crate) fn refuse_transfer(order: TransferOrder, error: TransferError) {
        let _ = order.reply.send(Err(error));
    }

    /// Sends the REFER (RFC 3515) in the dialog.
    fn start_transfer(&mut self, order: TransferOrder) {
        let target = order.refer_to.trim_start_matches('<').trim_end_matches('>');
        if let Ok(Uri::Sip(uri)) = Uri::parse(target) {
            if let Host::Ip(ip) = uri.host {
                if self.shared.config.refuses(ip) {
                    return Self::refuse_transfer(order, TransferError::DestinationRefused(ip));
                }
            }
        }
        if let Some(pending) = &mut self.transfer {
            if pending.refer_to == order.refer_to {
                // The same transfer asked twice: both wait for one outcome.
                pending.replies.push(order.reply);
            } else {
                Self::refuse_transfer(order, TransferError::AlreadyTransferring);
            }
            return;
        }
        let contact = self.contact();
        let Some((mut request, destination)) = self.dialog_request(Method::Refer) else {
            return Self::refuse_transfer(order, TransferError::NotEstablished);
        };
        let cseq = request.cseq().map(|c| c.seq).unwrap_or_default();
        request
            .headers
            .push(HeaderName::ReferTo, order.refer_to.clone());
        request.headers.push(HeaderName::Contact, contact.clone());
        request
            .headers
            .push(HeaderName::parse("Referred-By"), contact);
        for (name, value) in self.mapped_attribute_headers() {
            request.headers.push(HeaderName::parse(&name), value);
        }
        for (name, value) in &order.headers {
            request.headers.push(HeaderName::parse(name), value.clone());
        }
        let txn = self.send_routed(request, destination);
        let mut rng = switchboard_sip::fill_random;
        let transfer_id =
            switchboard_routing::new_id(switchboard_routing::IdPrefix::Transfer, &mut rng);
        info!(call_id = %self.call_id, transfer_id = %transfer_id, refer_to = %order.refer_to, "REFER sent");
        if order.play_dialtone {
            self.bridge.lock().room_muted = true;
            if let Some(media) = &self.media {
                media.play_tone(Some(ToneKind::Ringback));
            }
        }
        self.deadlines
            .set(Timer::Transfer, Instant::now(), order.timeout);
        let initiated = now_ns();
        let target = order.refer_to.clone();
        let (id_for_record, call_id) = (transfer_id.clone(), self.call_id.clone());
        self.note(|record| {
            record.transfer = Some(SipTransferInfo {
                transfer_id: id_for_record,
                call_id,
                transfer_to: target,
                transfer_initiated_at_ns: initiated,
                transfer_status: SipTransferStatus::StsTransferOngoing as i32,
                ..SipTransferInfo::default()
            });
        });
        self.transfer = Some(PendingTransfer {
            id: transfer_id,
            refer_to: order.refer_to,
            cseq,
            txn,
            dialtone: order.play_dialtone,
            replies: vec![order.reply],
        });
    }

    /// The REFER's own response: 2xx means the peer took the job.
    fn transfer_response(&mut self, txn: ClientTxnId, status: u16, reason: &str) {
        let ours = self.transfer.as_ref().is_some_and(|t| t.txn == txn);
        if !ours || status < 200 {
            return;
        }
        if (200..300).contains(&status) {
            debug!(call_id = %self.call_id, status, "REFER accepted");
            return;
        }
        info!(call_id = %self.call_id, status, reason, "REFER refused");
        self.end_transfer(Err(TransferError::Failed {
            status,
            reason: reason.to_string(),
        }));
    }

    /// A NOTIFY about our REFER: its sipfrag carries the target's status.
    fn transfer_notify(&mut self, incoming: &Incoming) -> u16 {
        let request = &incoming.request;
        let event = request
            .headers
            .get(&HeaderName::Event)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut parts = event.split(';').map(str::trim);
        if parts.next() != Some("refer") {
            return 489;
        }
        let Some(pending) = &self.transfer else {
            return 481;
        };
        let id = parts.find_map(|p| p.strip_prefix("id=")).map(str::trim);
        if id.is_some_and(|id| id != pending.cseq.to_string()) {
            return 481;
        }
        let body = String::from_utf8_lossy(&request.body);
        let Some((status, reason)) = parse_sipfrag(&body) else {
            return 400;
        };
        info!(call_id = %self.call_id, status, reason = %reason, "transfer progress");
        match status {
            100..=199 => {}
            200..=299 => {
                let transfer_id = pending.id.clone();
                self.end_transfer(Ok(TransferDone {
                    transfer_id,
                    status,
                }));
                // The peer normally hangs up now; if not, we do in 1 s.
                self.deadlines.set(
                    Timer::ByeAfterTransfer,
                    Instant::now(),
                    Duration::from_secs(1),
                );
            }
            _ => self.end_transfer(Err(TransferError::Failed { status, reason })),
        }
        200
    }

    /// Reports the outcome to whoever waits and, after a failure, gives the
    /// caller the room's audio back.
    fn end_transfer(&mut self, outcome: Result<TransferDone, TransferError>) {
        let Some(pending) = self.transfer.take() else {
            return;
        };
        self.deadlines.clear(Timer::Transfer);
        if pending.dialtone && outcome.is_err() {
            self.bridge.lock().room_muted = false;
            if let Some(media) = &self.media {
                media.play_tone(None);
            }
        }
        let label = if outcome.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        let completed = now_ns();
        self.note(|record| {
            if let Some(transfer) = &mut record.transfer {
                transfer.transfer_completed_at_ns = completed;
                match &outcome {
                    Ok(done) => {
                        transfer.transfer_status = SipTransferStatus::StsTransferSuccessful as i32;
                        if done.status != 0 {
                            transfer.transfer_status_code = Some(sip_status(done.status));
                        }
                    }
                    Err(e) => {
                        transfer.transfer_status = SipTransferStatus::StsTransferFailed as i32;
                        transfer.error = e.to_string();
                        if let TransferError::Failed { status, reason } = e {
                            transfer.transfer_status_code = Some(SipStatus {
                                code: i32::from(*status),
                                status: reason.clone(),
                            });
                        }
                    }
                }
            }
        });
        self.shared
            .metrics
            .transfers
            .with_label_values(&[label])
            .inc();
        for reply in pending.replies {
            let _ = reply.send(outcome.clone());
        }
    }

    /// The trunk's attributes_to_headers applied to the participant's
    /// attributes, sorted by header name.
    fn mapped_attribute_headers(&self) -> Vec<(String, String)> {
        let Some(p) = &self.participant else {
            return Vec::new();
        };
        let attributes = p.info().attributes;
        let mut mapped: Vec<_> = self
            .policy
            .attributes_to_headers
            .iter()
            .filter_map(|(attr, header)| attributes.get(attr).map(|v| (header.clone(), v.clone())))
            // Any room participant can set attributes: a value that would
            // break the header line is not sent at all.
            .filter(|(header, value)| {
                let safe = switchboard_routing::check_sip_text(header, value).is_ok();
                if !safe {
                    warn!(call_id = %self.call_id, header = %header, "attribute value with control characters not sent as a header");
                }
                safe
            })
            .collect();
        mapped.sort();
        mapped
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
            Method::Notify => {
                let status = self.transfer_notify(&incoming);
                answer(sip, &incoming, ResponseSpec::new(status));
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
                // A session refresh without media changes.
                return self.peer_refreshed(incoming, ResponseSpec::new(200));
            }
            // An offerless re-INVITE: our offer goes in the 200, the answer
            // comes in the ACK (RFC 3261 §14.2).
            let offer = match self
                .negotiator
                .as_mut()
                .map(|n| n.create_offer(Direction::SendRecv))
            {
                Some(Ok(offer)) => offer,
                _ => return ResponseSpec::new(500),
            };
            self.offer_in_2xx = true;
            let spec = ResponseSpec::new(200).header(HeaderName::Contact, self.contact());
            return self
                .peer_refreshed(incoming, spec)
                .body("application/sdp", offer);
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
                let spec = ResponseSpec::new(200).header(HeaderName::Contact, self.contact());
                self.peer_refreshed(incoming, spec)
                    .body("application/sdp", answer_sdp)
            }
            Err(e) => {
                info!(call_id = %self.call_id, error = %e, "re-INVITE refused");
                ResponseSpec::new(e.sip_status())
            }
        }
    }

    /// The answer in the ACK to the offer we put in a 2xx.
    async fn answer_in_ack(&mut self, body: &[u8]) {
        if body.is_empty() {
            warn!(call_id = %self.call_id, "the ACK carried no answer to our offer; media unchanged");
            return;
        }
        let answer = String::from_utf8_lossy(body).into_owned();
        let Some(negotiator) = self.negotiator.as_mut() else {
            return;
        };
        match negotiator.accept_answer(&answer) {
            Ok(negotiated) => {
                let direction = negotiated.direction;
                if let Some(media) = &self.media {
                    if let Err(e) = media.update(negotiated).await {
                        warn!(call_id = %self.call_id, error = %e, "media update failed; media unchanged");
                        return;
                    }
                }
                info!(call_id = %self.call_id, direction = ?direction, "media renegotiated");
            }
            Err(e) => {
                warn!(call_id = %self.call_id, error = %e, "the answer in the ACK is unusable")
            }
        }
    }

    // ----- session timers (RFC 4028) ---------------------------------------

    /// Starts (or restarts) the session timer's clock from now.
    /// The dialog's next request of `method` and where it goes; `None` when
    /// there is no dialog (yet, or any more).
    pub(crate) fn dialog_request(&self, method: Method) -> Option<(Request, Destination)> {
        let id = self.dialog.as_ref()?;
        self.shared
            .sip
            .with_dialog(id, |d| (d.request(method, None), d.destination()))
    }

    /// Sends a request whose responses come back to this call's task. The
    /// route is in place before the request leaves, so no response can
    /// arrive unrouted: the routes lock is held across the send, which
    /// takes the SIP endpoint's lock (the one lock order of the gateway,
    /// docs/architecture.md).
    pub(crate) fn send_routed(&self, request: Request, destination: Destination) -> ClientTxnId {
        let mut routes = self.shared.routes();
        let txn = self.shared.sip.send_request(request, destination);
        routes.requests.insert(txn, self.self_tx.clone());
        txn
    }

    pub(crate) fn arm_session_timer(&mut self) {
        self.deadlines
            .arm_session(self.session_timer, Instant::now());
    }

    /// A re-INVITE or UPDATE from the peer refreshes the session: take its
    /// Session-Expires, restart the clock and say the interval in the 2xx.
    fn peer_refreshed(&mut self, incoming: &Incoming, spec: ResponseSpec) -> ResponseSpec {
        let Some(mut timer) = self.session_timer else {
            return spec;
        };
        let headers = &incoming.request.headers;
        let asked = SessionExpires::of(headers);
        if let Some(se) = asked {
            if se.interval >= self.shared.config.min_session_expires {
                timer.interval = se.interval;
            }
        }
        let peer_supports = supports_timer(headers);
        // In this request the peer is the UAC: refresher=uac means them.
        let refresher = refresher_for_request(asked, peer_supports);
        timer.we_refresh = refresher == Refresher::Uas;
        self.session_timer = Some(timer);
        self.arm_session_timer();
        debug!(call_id = %self.call_id, interval = ?timer.interval, we_refresh = timer.we_refresh, "session refreshed by the peer");
        answer_session_timer(spec, timer.interval, refresher, peer_supports)
    }

    /// Refreshes the session with a re-INVITE carrying our current offer.
    fn send_refresh(&mut self) {
        let Some(timer) = self.session_timer else {
            return;
        };
        // Try again in half an interval if this one gets no final answer.
        self.deadlines
            .set(Timer::SessionRefresh, Instant::now(), timer.interval / 2);
        if self.refresh.is_some() {
            return;
        }
        let Some(negotiator) = self.negotiator.as_mut() else {
            return;
        };
        let offer = match negotiator.create_offer(Direction::SendRecv) {
            Ok(offer) => offer,
            Err(e) => {
                warn!(call_id = %self.call_id, error = %e, "no offer for the session refresh");
                return;
            }
        };
        let contact = self.contact();
        let Some((mut request, destination)) = self.dialog_request(Method::Invite) else {
            return;
        };
        let cseq = request.cseq().map(|c| c.seq).unwrap_or_default();
        request.headers.push(HeaderName::Contact, contact);
        request.headers.push(HeaderName::Supported, "timer");
        request.headers.push(
            HeaderName::SessionExpires,
            SessionExpires {
                interval: timer.interval,
                refresher: Some(Refresher::Uac),
            }
            .to_header(),
        );
        request
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        request.body = bytes::Bytes::from(offer);
        let txn = self.send_routed(request, destination);
        self.refresh = Some((txn, cseq));
        debug!(call_id = %self.call_id, "session refresh sent");
    }

    /// The answer to our refresh: ACK a 2xx and apply its SDP; a 408 or
    /// 481 means the session is gone (RFC 4028 §10).
    async fn refresh_answered(
        &mut self,
        response: &switchboard_sip::message::Response,
        flow: Flow,
    ) -> Option<Ending> {
        if response.status < 200 {
            return None;
        }
        let (_, cseq) = self.refresh.take()?;
        match response.status {
            200..=299 => {
                let sip = self.shared.sip.clone();
                if let Some(id) = &self.dialog {
                    if let Some(ack) = sip.with_dialog(id, |d| d.request(Method::Ack, Some(cseq))) {
                        sip.send_ack(ack, Destination::Flow(flow));
                    }
                }
                if !response.body.is_empty() {
                    let answer = String::from_utf8_lossy(&response.body).into_owned();
                    if let Some(negotiator) = self.negotiator.as_mut() {
                        match negotiator.accept_answer(&answer) {
                            Ok(negotiated) => {
                                if let Some(media) = &self.media {
                                    if let Err(e) = media.update(negotiated).await {
                                        warn!(call_id = %self.call_id, error = %e, "media update after a refresh failed");
                                    }
                                }
                            }
                            Err(e) => {
                                warn!(call_id = %self.call_id, error = %e, "refresh answer unusable")
                            }
                        }
                    }
                }
                if let (Some(timer), Some(agreed)) = (
                    self.session_timer.as_mut(),
                    timer_from_answer(&response.headers),
                ) {
                    *timer = agreed;
                }
                self.arm_session_timer();
                debug!(call_id = %self.call_id, status = response.status, "our session refresh succeeded");
                None
            }
            422 => {
                if let (Some(timer), Some(min_se)) =
                    (self.session_timer.as_mut(), min_se(&response.headers))
                {
                    timer.interval = min_se;
                }
                self.send_refresh();
                None
            }
            408 | 481 => {
                info!(call_id = %self.call_id, status = response.status, "session refresh failed: the peer is gone");
                Some(Ending::SessionExpired)
            }
            status => {
                debug!(call_id = %self.call_id, status, "session refresh refused; trying again later");
                None
            }
        }
    }

    // ----- teardown ------------------------------------------------------

    /// Hangs up (BYE when the call was answered and we end it) and
    /// releases everything the call held.
    pub(crate) async fn finish(mut self, ending: Ending) {
        // The call ended before the final NOTIFY: LiveKit reports that as
        // a successful transfer (the caller left for the target).
        if let Some(pending) = &self.transfer {
            let transfer_id = pending.id.clone();
            self.end_transfer(Ok(TransferDone {
                transfer_id,
                status: 0,
            }));
        }
        // The media stops first: no RTP follows our BYE while we wait for
        // its answer. A bot still streaming is told `stop` and let go.
        if let Some(stream) = self.stream.take() {
            stream.stop();
        }
        self.bridge.set_port(None);
        let stats = match &self.media {
            Some(media) => media.stats().await.ok(),
            None => None,
        };
        self.media = None;
        self.media_events = None;
        let answered = self.answered_at.is_some();
        let needs_bye = answered && !matches!(ending, Ending::CallerHungUp | Ending::Cancelled);
        if needs_bye {
            self.send_bye(&ending).await;
        }
        let outcome = ending.outcome(answered);
        let disconnect_reason = outcome.reason.as_str_name();
        let sip_status = outcome.sip_status;
        if let Some(participant) = self.participant.take() {
            if participant.disconnected().is_none() {
                // Others see why the call ended before the participant leaves.
                participant.set_attributes(&outcome.final_attributes());
            }
            let attributes = participant.info().attributes;
            self.note_info(|info| info.participant_attributes = attributes.into_iter().collect());
            drop(participant);
        }
        let direction = direction(self.outbound);
        if !matches!(ending, Ending::Challenged) {
            count_ended(&self.shared, direction, &outcome);
        }
        if let Some(at) = self.answered_at {
            self.shared
                .metrics
                .calls_active
                .with_label_values(&[direction])
                .dec();
            let answered_for = at.elapsed();
            self.shared
                .metrics
                .call_duration
                .with_label_values(&[direction])
                .observe(answered_for.as_secs_f64());
            if let Some(stats) = &stats {
                self.shared.metrics.observe_media(stats, answered_for);
            }
        }
        {
            let mut routes = self.shared.routes();
            if let Some(txn) = self.invite_txn {
                routes.invites.remove(&txn);
            }
            routes.calls.remove(&self.call_id);
            if let Some(id) = &self.dialog {
                routes.dialogs.remove(id);
                self.shared.sip.remove_dialog(id);
            }
            routes
                .requests
                .retain(|_, tx| !tx.same_channel(&self.self_tx));
        }
        self.close_record(&ending, &outcome, stats.as_ref());
        match &ending {
            Ending::Challenged => {}
            Ending::Refused(_) => {}
            _ => {
                let stats = stats.unwrap_or_default();
                info!(
                    call_id = %self.call_id,
                    sip_call_id = %self.sip_call_id,
                    direction,
                    reason = %ending.text(),
                    answered,
                    disconnect_reason,
                    sip_status,
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

    /// Completes the call's record with how it ended and hands it (with
    /// the SIP trace) to the history. A challenged INVITE is not a call of
    /// its own: its retry, with the same Call-ID, gets the whole ladder.
    fn close_record(&self, ending: &Ending, outcome: &Outcome, stats: Option<&CallStats>) {
        if matches!(ending, Ending::Challenged) {
            self.shared
                .records
                .close(&self.call_id, &self.sip_call_id, None);
            return;
        }
        let mut record = lock(&self.record).clone();
        let info = record.info.get_or_insert_with(SipCallInfo::default);
        info.ended_at_ns = now_ns();
        let failed = matches!(outcome.result, CallResult::Failed | CallResult::Refused);
        info.call_status = if failed {
            SipCallStatus::ScsError
        } else {
            SipCallStatus::ScsDisconnected
        } as i32;
        info.disconnect_reason = outcome.reason as i32;
        info.call_status_code = Some(sip_status(outcome.sip_status));
        if failed || ending.is_fault() {
            info.error = ending.text();
        }
        if !info.participant_identity.is_empty() {
            info.participant_attributes
                .extend(outcome.final_attributes());
        }
        record.result = outcome.result.as_str().to_string();
        if let Some(stats) = stats {
            record.quality = Some(CallQuality {
                packets_sent: stats.packets_sent,
                packets_received: stats.packets_received,
                packets_lost: stats.packets_lost,
                jitter_ms: stats.jitter_ms,
                concealed_frames: stats.concealed_frames,
                round_trip_ms: stats
                    .round_trip
                    .map_or(0.0, |rtt| rtt.as_secs_f64() * 1000.0),
                remote_packets_lost: stats.remote_packets_lost.unwrap_or(0),
                remote_jitter_ms: stats.remote_jitter_ms.unwrap_or(0.0),
                srtp_rejected: stats.srtp_rejected,
                rtcp_received: stats.rtcp_received,
            });
        }
        self.shared
            .records
            .close(&self.call_id, &self.sip_call_id, Some(record));
    }

    /// Ends the dialog with BYE (with the trunk's attributes_to_headers and
    /// a Reason) and waits briefly for its answer.
    async fn send_bye(&mut self, ending: &Ending) {
        let sip = self.shared.sip.clone();
        let Some((mut request, destination)) = self.dialog_request(Method::Bye) else {
            return;
        };
        request.headers.push(
            HeaderName::Reason,
            crate::refusal::reason_header(ending.bye_cause(), &ending.text()),
        );
        for (header, value) in self
            .mapped_attribute_headers()
            .into_iter()
            .chain(std::mem::take(&mut self.bye_headers))
        {
            request.headers.push(HeaderName::parse(&header), value);
        }
        let txn = self.send_routed(request, destination);
        info!(call_id = %self.call_id, reason = %ending.text(), "BYE sent");
        let wait = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                signal = self.signals.recv() => match signal {
                    Some(Signal::Response(t, response, _)) if t == txn && response.status >= 200 => break,
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

/// Sleeps until a call's next timer (`Deadlines::next`), or forever when
/// none is set.
pub(crate) async fn sleep_until_deadline(at: Option<Instant>) {
    sleep_until_some(at.map(tokio::time::Instant::from_std)).await
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A response's reason phrase.
fn response_reason(response: &switchboard_sip::message::Response) -> String {
    response.reason.clone()
}

/// The status line of a `message/sipfrag` body (RFC 3420): `SIP/2.0 200 OK`.
pub(crate) fn parse_sipfrag(body: &str) -> Option<(u16, String)> {
    let line = body.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code.trim().parse().ok()?;
    (100..700)
        .contains(&code)
        .then(|| (code, reason.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DialError;

    /// An outcome as it is written: result label, reason name, status.
    fn written(ending: &Ending, answered: bool) -> (&'static str, &'static str, u16) {
        let outcome = ending.outcome(answered);
        (
            outcome.result.as_str(),
            outcome.reason.as_str_name(),
            outcome.sip_status,
        )
    }

    fn room_full() -> RoomError {
        RoomError::RoomFull {
            room: "lobby".into(),
            limit: 2,
        }
    }

    #[test]
    fn a_failed_room_join_is_a_join_failure_the_caller_may_retry() {
        let ending = Ending::JoinFailed(room_full());
        assert_eq!(written(&ending, false), ("failed", "JOIN_FAILURE", 503));
        assert_eq!(written(&ending, true), ("answered", "JOIN_FAILURE", 503));
        assert_eq!(
            ending.outcome(false),
            Outcome {
                result: CallResult::Failed,
                reason: DisconnectReason::JoinFailure,
                sip_status: 503,
            }
        );
        assert_eq!(
            ending.text(),
            r#"could not join the room: room "lobby" is full (limit 2)"#
        );
        assert_eq!(ending.bye_cause(), 503);
        let dialled = Ending::DialFailed(DialError::Room(room_full()));
        assert_eq!(written(&dialled, false), ("failed", "JOIN_FAILURE", 503));
    }

    #[test]
    fn endings_are_written_as_before() {
        let cases: [(Ending, bool, (&str, &str, u16)); 18] = [
            (
                Ending::Refused(Refusal::NoMatchingTrunk),
                false,
                ("refused", "SIP_TRUNK_FAILURE", 404),
            ),
            (
                Ending::Challenged,
                false,
                ("challenged", "UNKNOWN_REASON", 407),
            ),
            (
                Ending::Cancelled,
                false,
                ("cancelled", "CLIENT_INITIATED", 487),
            ),
            (
                Ending::CallerHungUp,
                true,
                ("answered", "CLIENT_INITIATED", 200),
            ),
            (
                Ending::Removed(LeaveReason::RoomDeleted),
                true,
                ("answered", "ROOM_DELETED", 200),
            ),
            // Before the answer the caller got 503 (removed while
            // ringing) or 603 (ended by a participant): the record says so
            // (it said 200 until 2026-12-06).
            (
                Ending::Removed(LeaveReason::DuplicateIdentity),
                false,
                ("failed", "DUPLICATE_IDENTITY", 503),
            ),
            (
                Ending::EndedByParticipant("agent".into()),
                false,
                ("failed", "CLIENT_INITIATED", 603),
            ),
            (
                Ending::EndedByParticipant("agent".into()),
                true,
                ("answered", "CLIENT_INITIATED", 200),
            ),
            (
                Ending::Removed(LeaveReason::Stuck),
                true,
                ("answered", "STATE_MISMATCH", 200),
            ),
            (
                Ending::MediaTimeout,
                true,
                ("answered", "MEDIA_FAILURE", 408),
            ),
            (
                Ending::SessionExpired,
                true,
                ("answered", "CONNECTION_TIMEOUT", 408),
            ),
            (Ending::WrongPin, true, ("answered", "JOIN_FAILURE", 403)),
            (
                Ending::MediaFailure("no worker".into()),
                false,
                ("failed", "MEDIA_FAILURE", 500),
            ),
            (
                Ending::DialFailed(DialError::Sip {
                    status: 486,
                    reason: "Busy Here".into(),
                }),
                false,
                ("failed", "USER_REJECTED", 486),
            ),
            (
                Ending::DialFailed(DialError::Sip {
                    status: 404,
                    reason: "Not Found".into(),
                }),
                false,
                ("failed", "USER_UNAVAILABLE", 404),
            ),
            (
                Ending::DialFailed(DialError::RingingTimeout(Duration::from_secs(30))),
                false,
                ("failed", "USER_UNAVAILABLE", 408),
            ),
            (
                Ending::DialFailed(DialError::Media("no common codec".into())),
                false,
                ("failed", "MEDIA_FAILURE", 488),
            ),
            (
                Ending::DialFailed(DialError::Abandoned),
                false,
                ("cancelled", "CLIENT_INITIATED", 487),
            ),
        ];
        for (ending, answered, expected) in cases {
            assert_eq!(written(&ending, answered), expected, "{ending:?}");
        }
    }

    #[test]
    fn sipfrag_status_lines_parse_and_garbage_does_not() {
        assert_eq!(
            parse_sipfrag("SIP/2.0 200 OK\r\n"),
            Some((200, "OK".into()))
        );
        assert_eq!(
            parse_sipfrag("SIP/2.0 486 Busy Here\r\nVia: x\r\n"),
            Some((486, "Busy Here".into()))
        );
        assert_eq!(parse_sipfrag("SIP/2.0 100"), Some((100, String::new())));
        assert_eq!(parse_sipfrag("SIP/2.0 99 Low"), None);
        assert_eq!(parse_sipfrag("HTTP/1.1 200 OK"), None);
        assert_eq!(parse_sipfrag(""), None);
    }
}
