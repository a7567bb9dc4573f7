//! What every call has, inbound or outbound: its identity and record, the
//! dialog, the media session, the room participant, and the release when
//! it ends. What a call does next is its machine's decision
//! (`crate::machine`); the task that feeds the machine is `crate::driver`,
//! the actions every call carries out are in `crate::actions`.

use crate::bridge::{BridgeControl, RoomBridge};
use crate::driver::Work;
use crate::machine::{CallMachine, Sent};
use crate::records::{lock, now_ns, SharedRecord};
use crate::refusal::Refusal;
use crate::status::{CallResult, CallStatus, Outcome};
use crate::{CallGuard, Shared, Signal, TransferError, TransferOrder};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::codec::CodecKind;
use switchboard_media::driver::CallHandle;
use switchboard_media::dtmf::DtmfDigit;
use switchboard_media::ports::RtpPorts;
use switchboard_media::sdp::{NegotiatedMedia, SdpNegotiator};
use switchboard_media::session::{CallStats, MediaEvent, MediaSession, SessionConfig};
use switchboard_rooms::{AudioRate, LeaveReason, Participant, RoomError, RoomHome};
use switchboard_routing::attrs;
use switchboard_routing::livekit_protocol::{
    DisconnectReason, SipCallDirection, SipCallInfo, SipCallStatus, SipStatus,
};
use switchboard_sip::dialog::DialogId;
use switchboard_sip::message::{Headers, Host, Method, Request, Response, Uri};
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
    /// The media could not start, or stopped.
    MediaFailure(MediaFault),
    /// The room refused the participant (full, over the rooms limit).
    JoinFailed(RoomError),
    /// Transferred away (REFER accepted, target answered).
    Transferred,
    /// An outbound call that was never answered.
    DialFailed(crate::DialError),
    /// The session timer expired without a refresh (RFC 4028).
    SessionExpired,
    /// The voice bot the call is streamed to closed its socket (or it failed).
    StreamEnded(switchboard_streams::StreamEnd),
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
            Ending::StreamEnded(end) => {
                format!("the voice bot ended the stream: {}", stream_end_text(end))
            }
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
    pub(crate) fn bye_cause(&self) -> u16 {
        match self {
            Ending::MediaTimeout | Ending::MediaFailure(_) | Ending::SessionExpired => 408,
            Ending::AckTimeout => 408,
            Ending::WrongPin | Ending::PinTimeout => 403,
            Ending::JoinFailed(_) => 503,
            _ => 200,
        }
    }
}

/// Why a call's media could not start or go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaFault {
    /// The offer or the answer cannot be negotiated.
    #[error(transparent)]
    Sdp(#[from] switchboard_media::sdp::SdpError),
    /// The media engine refused the negotiated media (its words: codec,
    /// resampler or SRTP set-up).
    #[error("media session: {0}")]
    Session(String),
    /// The media worker the call ran on stopped.
    #[error("media worker stopped")]
    WorkerStopped,
    /// An SDP answer came without our offer.
    #[error("an answer without our offer")]
    NoOffer,
    /// A second SDP answer came for ports already in use.
    #[error("media already started on the call's ports")]
    PortsTaken,
}

/// A SIP status with its standard reason phrase, as LiveKit's records
/// carry it.
pub(crate) fn sip_status(code: u16) -> SipStatus {
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
        DialError::Transport(_)
        | DialError::BadAnswer(_)
        | DialError::Address(_)
        | DialError::DestinationRefused(_) => (CallResult::Failed, Reason::SipTrunkFailure, 503),
        DialError::Media(_) => (CallResult::Failed, Reason::MediaFailure, 488),
        DialError::AuthMissing => (CallResult::Failed, Reason::SipTrunkFailure, 407),
        DialError::Abandoned => (CallResult::Cancelled, Reason::ClientInitiated, 487),
        DialError::AtCapacity | DialError::NoPorts | DialError::Room(_) => {
            (CallResult::Failed, Reason::JoinFailure, 503)
        }
        DialError::TransportNotListening(_) => (CallResult::Failed, Reason::SipTrunkFailure, 503),
    }
}

/// A stream's end in the words of the BYE's Reason header and the log.
fn stream_end_text(end: &switchboard_streams::StreamEnd) -> String {
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

/// What the trunk (and rule) decided for the call's requests (its
/// lifetime is the machine's).
#[derive(Debug, Clone, Default)]
pub(crate) struct CallPolicy {
    /// Attributes copied into headers of our BYE (and REFER).
    pub attributes_to_headers: HashMap<String, String>,
}

/// A call's state: what the inbound and outbound set-ups, the task's loop
/// and the actions share.
pub(crate) struct Call {
    pub shared: Arc<Shared>,
    /// What the call does next.
    pub machine: CallMachine,
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
    pub self_tx: mpsc::UnboundedSender<Signal>,
    pub signals: mpsc::UnboundedReceiver<Signal>,
    pub guard: CallGuard,
    pub dialog: Option<DialogId>,
    pub negotiator: Option<SdpNegotiator>,
    pub media: Option<CallHandle>,
    /// The negotiated codec, once media started.
    pub media_codec: Option<CodecKind>,
    pub media_events: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    /// The media's last statistics, taken when it stopped (before our BYE).
    pub media_stats: Option<CallStats>,
    pub bridge: BridgeControl,
    pub participant: Option<Participant>,
    pub policy: CallPolicy,
    /// The requests the call sent that may still be answered, by kind.
    pub sent: Vec<(ClientTxnId, Sent)>,
    /// The CSeq of our session refresh in flight (its ACK needs it).
    pub refresh_cseq: Option<u32>,
    /// The transfer under way: its ID and who waits for the outcome.
    pub transfer: Option<(String, Vec<TransferReply>)>,
    /// The far end's request the machine is deciding on.
    pub request: Option<Incoming>,
    /// The response the machine is deciding on, and its flow.
    pub response: Option<(Response, Flow)>,
    /// The transfer order the machine is deciding on.
    pub order: Option<TransferOrder>,
    /// The piece of work the call waits for, if any.
    pub work: Option<Work>,
    /// We offered in a 2xx to an offerless re-INVITE: the ACK answers.
    pub offer_in_2xx: bool,
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

/// Where the outcome of a transfer goes.
pub(crate) type TransferReply =
    tokio::sync::oneshot::Sender<Result<crate::TransferDone, TransferError>>;

impl Call {
    /// A call not yet set up.
    pub(crate) fn new(
        shared: Arc<Shared>,
        flow: Flow,
        sip_call_id: String,
        self_tx: mpsc::UnboundedSender<Signal>,
        signals: mpsc::UnboundedReceiver<Signal>,
        guard: CallGuard,
        machine: CallMachine,
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
            machine,
            call_id,
            sip_call_id,
            peer: flow.remote,
            flow,
            invite_txn: None,
            self_tx,
            signals,
            guard,
            dialog: None,
            negotiator: None,
            media: None,
            media_codec: None,
            media_events: None,
            media_stats: None,
            bridge: BridgeControl::default(),
            participant: None,
            policy: CallPolicy::default(),
            sent: Vec::new(),
            refresh_cseq: None,
            transfer: None,
            request: None,
            response: None,
            order: None,
            work: None,
            offer_in_2xx: false,
            stream: None,
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
    fn note_joined(&self, room: &str, participant: &Participant) {
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

    /// The call's participant is in `room` (the call is for it).
    pub(crate) fn joined(&mut self, room: &str, participant: Participant) {
        self.note_joined(room, &participant);
        self.participant = Some(participant);
    }

    /// The call's dialog exists: the SIP core keeps it and its requests
    /// come to this call. The route is in place with the dialog (routes
    /// before the endpoint, the gateway's one lock order), so no request
    /// of the dialog finds it without a call.
    pub(crate) fn adopt_dialog(&mut self, dialog: switchboard_sip::dialog::Dialog) -> DialogId {
        let id = dialog.id.clone();
        {
            let mut routes = self.shared.routes();
            self.shared.sip.insert_dialog(dialog);
            routes.dialogs.insert(id.clone(), self.self_tx.clone());
        }
        self.dialog = Some(id.clone());
        id
    }

    /// The call is answered now.
    pub(crate) fn mark_answered(&self) {
        let now = Instant::now();
        self.shared
            .metrics
            .call_setup
            .with_label_values(&[direction(self.machine.is_outbound())])
            .observe(
                now.saturating_duration_since(self.machine.started())
                    .as_secs_f64(),
            );
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
    ) -> Result<(), MediaFault> {
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
                MediaFault::Session(e.to_string())
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
        let direction = direction(self.machine.is_outbound());
        self.shared
            .metrics
            .calls_active
            .with_label_values(&[direction])
            .inc();
        if let Some(media) = &self.media {
            let initial = self
                .machine
                .started()
                .elapsed()
                .saturating_add(self.shared.config.initial_media_timeout);
            media.set_media_timeout(timeout, initial);
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

    /// Answers an RPC from a room participant (`lk.sip.*`), at any phase,
    /// with the far end's headers so far (the INVITE's while an inbound
    /// call rings; none while an outbound call dials). `Some` (the headers
    /// asked for on the BYE) when it ends the call.
    pub(crate) fn answer_rpc(
        &self,
        from: &str,
        id: &str,
        method: &str,
        payload: &str,
    ) -> Option<Vec<(String, String)>> {
        let participant = self.participant.as_ref()?;
        let action = crate::room_rpc::handle(method, payload, &self.remote_headers);
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

    /// The trunk's attributes_to_headers applied to the participant's
    /// attributes, sorted by header name.
    pub(crate) fn mapped_attribute_headers(&self) -> Vec<(String, String)> {
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

    pub(crate) fn dtmf_to_room(&self, digit: DtmfDigit) {
        if let Some(p) = &self.participant {
            debug!(call_id = %self.call_id, digit = %digit.as_char(), "DTMF from the caller");
            p.send_dtmf(u32::from(digit.code), &digit.as_char().to_string(), &[]);
        }
    }

    pub(crate) async fn dtmf_to_phone(&self, digit: &str) {
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

    // ----- teardown ------------------------------------------------------

    /// Stops the call's media (and the bot's stream) and keeps its last
    /// statistics: before our BYE, so no RTP follows it.
    pub(crate) async fn stop_media(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.stop();
        }
        self.bridge.set_port(None);
        if let Some(media) = self.media.take() {
            self.media_stats = media.stats().await.ok();
        }
        self.media_events = None;
    }

    /// Releases everything the call held, and reports how it ended.
    pub(crate) async fn finish(&mut self, ending: Ending) {
        self.stop_media().await;
        let stats = self.media_stats.take();
        let answered_at = self.machine.answered_at();
        let answered = answered_at.is_some();
        let outcome = ending.outcome(answered);
        if let Some(participant) = self.participant.take() {
            if participant.disconnected().is_none() {
                // Others see why the call ended before the participant leaves.
                participant.set_attributes(&outcome.final_attributes());
            }
            let attributes = participant.info().attributes;
            self.note_info(|info| info.participant_attributes = attributes.into_iter().collect());
            drop(participant);
        }
        let direction = direction(self.machine.is_outbound());
        if !matches!(ending, Ending::Challenged) {
            count_ended(&self.shared, direction, &outcome);
        }
        let answered_for = answered_at.map(|at| at.elapsed());
        if let Some(answered_for) = answered_for {
            let metrics = &self.shared.metrics;
            metrics.calls_active.with_label_values(&[direction]).dec();
            metrics
                .call_duration
                .with_label_values(&[direction])
                .observe(answered_for.as_secs_f64());
            if let Some(stats) = &stats {
                metrics.observe_media(stats, answered_for);
            }
        }
        self.release_routes();
        self.close_record(&ending, &outcome, stats.as_ref());
        if matches!(ending, Ending::Challenged | Ending::Refused(_)) {
            return;
        }
        let stats = stats.unwrap_or_default();
        info!(
            call_id = %self.call_id,
            sip_call_id = %self.sip_call_id,
            direction,
            reason = %ending.text(),
            answered,
            disconnect_reason = outcome.reason.as_str_name(),
            sip_status = outcome.sip_status,
            duration_ms = answered_for.map_or(0, |d| d.as_millis() as u64),
            rtp_received = stats.packets_received,
            rtp_sent = stats.packets_sent,
            rtp_lost = stats.packets_lost,
            concealed = stats.concealed_frames,
            jitter_ms = format!("{:.1}", stats.jitter_ms),
            "call ended"
        )
    }

    /// Takes every route to the call out of the gateway's tables.
    fn release_routes(&self) {
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
    fn endings_before_the_answer_and_by_either_side_are_written_as_before() {
        let cases: [(Ending, bool, (&str, &str, u16)); 9] = [
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
        ];
        for (ending, answered, expected) in cases {
            assert_eq!(written(&ending, answered), expected, "{ending:?}");
        }
    }

    #[test]
    fn endings_by_faults_and_failed_dials_are_written_as_before() {
        let cases: [(Ending, bool, (&str, &str, u16)); 9] = [
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
                Ending::MediaFailure(MediaFault::WorkerStopped),
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
                Ending::DialFailed(DialError::Media(MediaFault::Sdp(
                    switchboard_media::sdp::SdpError::NoAudio,
                ))),
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
}
