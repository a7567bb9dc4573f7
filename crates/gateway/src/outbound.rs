//! An outbound call (CreateSIPParticipant): join the room as `dialing`,
//! INVITE with an SDP offer, answer digest challenges, `ringing` on 18x
//! (early media into the room), CANCEL at the ringing timeout, ACK the 200,
//! send the requested DTMF (`automation`), then `active`. What happens when
//! is the call's machine's decision (`crate::machine`); this module carries
//! out the actions only an outbound call has.

use crate::call::{count_ended, direction, sip_uri, Call, CallPolicy, Ending, MediaFault};
use crate::driver::{Leg, WorkDone};
use crate::machine::{Action, CallMachine, Input, Route, Sent, Settings};
use crate::media_config::{media_config, media_timeout};
use crate::status::CallStatus;
use crate::{CallGuard, Shared};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::ports::RtpPorts;
use switchboard_media::sdp::{Direction, LocalEndpoint, SdpNegotiator};
use switchboard_media::tones::{ToneGenerator, ToneKind, ToneSpec};
use switchboard_rooms::{AudioRate, JoinRequest, ParticipantKind, RoomError};
use switchboard_routing::attrs;
use switchboard_routing::livekit_protocol::{SipCallDirection, SipHeaderOptions, SipMediaConfig};
use switchboard_routing::{header_attributes, CallInput};
use switchboard_sip::auth::{ChallengeKind, DigestClient};
use switchboard_sip::dialog::Dialog;
use switchboard_sip::dialog::DialogError;
use switchboard_sip::message::{HeaderName, Headers, Method, Request, Response};
use switchboard_sip::{Destination, Flow, RequestFailure, Transport};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// Everything needed to place an outbound call, resolved from the request
/// and the trunk by the caller of [`crate::GatewayHandle::dial`].
#[derive(Debug, Clone, PartialEq)]
pub struct DialRequest {
    /// The room the callee joins.
    pub room: String,
    /// The callee's participant identity, name, metadata and attributes
    /// (the `sip.*` keys included; `sip.callID` and `sip.callStatus` are
    /// set here).
    pub identity: String,
    /// Display name of the participant.
    pub name: String,
    /// Participant metadata.
    pub metadata: String,
    /// Participant attributes.
    pub attributes: BTreeMap<String, String>,
    /// The trunk's address: `host[:port]`.
    pub address: String,
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// The number called (`sip_call_to`).
    pub call_to: String,
    /// A Request-URI given by the request (`sip_request_uri`), else built
    /// from `to_user` and `address`.
    pub request_uri: Option<String>,
    /// A To header given by the request (`sip_to_header`, a name-addr),
    /// else built from `to_user` and `address`.
    pub to_header: Option<String>,
    /// A From header given by the request (`sip_from_header`, a name-addr
    /// without tag), else built from the number, host and display name.
    pub from_header: Option<String>,
    /// The user part of the To URI (`to_user_override`, else `call_to`).
    pub to_user: String,
    /// The From number.
    pub from_number: String,
    /// The From host: the trunk's `from_host`, else our advertised host.
    pub from_host: Option<String>,
    /// The From display name: `None` shows the number, `Some("")` none.
    pub display_name: Option<String>,
    /// Digest credentials of the trunk.
    pub auth: Option<(String, String)>,
    /// The stored trunk's `ST_` ID ("" for a trunk given in the request).
    pub trunk_id: String,
    /// Extra INVITE headers (trunk's, then the request's over them).
    pub headers: Vec<(String, String)>,
    /// The trunk's and request's media settings, merged.
    pub media: SipMediaConfig,
    /// How long the callee may ring (at most 80 s).
    pub ringing_timeout: Duration,
    /// The longest the call may last.
    pub max_call_duration: Option<Duration>,
    /// Digits to send once answered (`w` = 0.5 s pause).
    pub dtmf: String,
    /// Play a ring tone into the room while dialling.
    pub play_dialtone: bool,
    /// Attributes copied into BYE and REFER headers.
    pub attributes_to_headers: std::collections::HashMap<String, String>,
    /// Headers of the 200 OK copied into attributes.
    pub headers_to_attributes: std::collections::HashMap<String, String>,
    /// Which 200 OK headers become `sip.h.*` attributes.
    pub include_headers: SipHeaderOptions,
}

/// A call that was placed (and answered, when the caller waited for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialStarted {
    /// The participant's `PA_…` ID.
    pub participant_id: String,
    /// Its identity.
    pub participant_identity: String,
    /// The room.
    pub room: String,
    /// The `SCL_…` call ID.
    pub call_id: String,
}

/// Why an outbound call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The trunk's address does not resolve or is malformed.
    #[error("cannot resolve the trunk address {0:?}")]
    Address(String),
    /// The trunk resolves to an address in `security.refused_destinations`.
    #[error(
        "the trunk address resolves to {0}, a refused destination (security.refused_destinations)"
    )]
    DestinationRefused(std::net::IpAddr),
    /// The call limit is reached.
    #[error("call limit reached")]
    AtCapacity,
    /// No RTP port pair is free.
    #[error("no media ports free")]
    NoPorts,
    /// The room refused the participant.
    #[error("room: {0}")]
    Room(RoomError),
    /// The callee's side answered with a failure.
    #[error("call failed: {status} {reason}")]
    Sip {
        /// The SIP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The trunk asked for credentials and it has none.
    #[error("sip server required auth, but no username or password was provided")]
    AuthMissing,
    /// No answer within the ringing timeout (the INVITE was cancelled).
    #[error("sip request timed out: no answer within {0:?}")]
    RingingTimeout(Duration),
    /// The INVITE got no final response, or the transport failed.
    #[error("transaction failed to complete: {}", match .0 {
        RequestFailure::Timeout => "no final response in time",
        RequestFailure::Transport => "the transport could not deliver it",
    })]
    Transport(RequestFailure),
    /// The callee's 200 OK cannot form a dialog (no Contact, no To tag).
    #[error("the 200 OK cannot form a dialog: {0}")]
    BadAnswer(DialogError),
    /// The offer or the answer could not be negotiated, or the media could
    /// not start.
    #[error("media: {0}")]
    Media(MediaFault),
    /// The participant left or was removed before the answer.
    #[error("participant left before the call was answered")]
    Abandoned,
    /// The trunk's transport has no listener here (TLS without
    /// `sip.tls.cert` and `sip.tls.key`): our Via and Contact could not name
    /// a port the callee can reach.
    #[error("the trunk uses {0:?} but switchboard does not listen on it (set sip.tls.cert and sip.tls.key for TLS)")]
    TransportNotListening(Transport),
}

/// Places the call. Returns once the participant is in the room (dialling
/// goes on in the background) or, with `wait_until_answered`, once the call
/// is answered or has failed.
pub(crate) async fn dial(
    shared: Arc<Shared>,
    request: DialRequest,
    wait_until_answered: bool,
) -> Result<DialStarted, DialError> {
    // Refused before a call task exists: counted here, as `finish` counts
    // every other ending.
    let refuse = |error: DialError| {
        let outcome = Ending::DialFailed(error.clone()).outcome(false);
        count_ended(&shared, direction(true), &outcome);
        Err(error)
    };
    if !shared.sip.advertises(request.transport) {
        // Our Via and Contact must name a port the callee can reach us on.
        return refuse(DialError::TransportNotListening(request.transport));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut guard = CallGuard::task(&shared.calls);
    if !guard.activate(shared.config.max_active_calls) {
        return refuse(DialError::AtCapacity);
    }
    // The peer's address is known once resolved, in the call's task.
    let flow = Flow {
        transport: request.transport,
        local: SocketAddr::from(([0, 0, 0, 0], 0)),
        remote: SocketAddr::from(([0, 0, 0, 0], 0)),
        connection: None,
    };
    // LiveKit derives the Call-ID from the call ID; any unique value works.
    let sip_call_id = format!("{}@switchboard", switchboard_sip::random_token(24));
    let machine = CallMachine::outbound(Settings::of(&shared.config), Instant::now());
    let mut call = Call::new(shared.clone(), flow, sip_call_id, tx, rx, guard, machine);
    call.note_info(|info| {
        info.call_direction = SipCallDirection::ScdOutbound as i32;
        info.trunk_id.clone_from(&request.trunk_id);
        info.room_name.clone_from(&request.room);
        info.participant_identity.clone_from(&request.identity);
    });
    call.policy = CallPolicy {
        attributes_to_headers: request.attributes_to_headers.clone(),
    };
    let participant = match join_as_dialing(&mut call, &request).await {
        Ok(p) => p,
        Err(e) => {
            call.finish(Ending::JoinFailed(e.clone())).await;
            return Err(DialError::Room(e));
        }
    };
    let started = DialStarted {
        participant_id: participant.info().sid,
        participant_identity: participant.info().identity,
        room: request.room.clone(),
        call_id: call.call_id.clone(),
    };
    call.joined(&request.room, participant);
    info!(
        call_id = %call.call_id,
        room = %request.room,
        identity = %request.identity,
        to = %request.call_to,
        trunk_address = %request.address,
        transport = request.transport.as_str(),
        "dialling"
    );
    let (answered_tx, answered_rx) = oneshot::channel();
    let session_expires = shared.config.session_expires;
    let outbound = OutboundCall {
        call,
        request,
        answered: Some(answered_tx),
        session_expires,
        offer: String::new(),
        ports: None,
        seq: 0,
        invite: None,
        digest: None,
        dial_tone: None,
    };
    tokio::spawn(crate::driver::drive(outbound));
    if !wait_until_answered {
        return Ok(started);
    }
    match answered_rx.await {
        Ok(Ok(())) => Ok(started),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(DialError::Abandoned),
    }
}

/// The callee's participant joins the call's room as `dialing`.
async fn join_as_dialing(
    call: &mut Call,
    request: &DialRequest,
) -> Result<switchboard_rooms::Participant, RoomError> {
    let mut attributes = request.attributes.clone();
    attributes.insert(attrs::CALL_ID.to_string(), call.call_id.clone());
    attributes.insert(
        attrs::CALL_STATUS.to_string(),
        CallStatus::Dialing.as_str().to_string(),
    );
    let join = JoinRequest {
        identity: request.identity.clone(),
        name: request.name.clone(),
        metadata: request.metadata.clone(),
        attributes,
        kind: ParticipantKind::Sip,
        publishes_audio: true,
        audio_rate: AudioRate::Configured,
    };
    let local = call.place(&request.room).await?;
    call.shared.rooms.join(&local, join)
}

/// `host[:port]` to an address; the default port is 5060 (5061 for TLS).
async fn resolve(address: &str, transport: Transport) -> Result<SocketAddr, DialError> {
    let default_port = if transport == Transport::Tls {
        5061
    } else {
        5060
    };
    let target = if address.starts_with('[') {
        if address.contains("]:") {
            address.to_string()
        } else {
            format!("{address}:{default_port}")
        }
    } else if address.matches(':').count() == 1 {
        address.to_string()
    } else if address.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{address}]:{default_port}")
    } else {
        format!("{address}:{default_port}")
    };
    tokio::net::lookup_host(target)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| DialError::Address(address.to_string()))
}

struct OutboundCall {
    call: Call,
    request: DialRequest,
    answered: Option<oneshot::Sender<Result<(), DialError>>>,
    /// The session interval we ask for (raised by a 422's Min-SE).
    session_expires: Duration,
    /// Our SDP offer.
    offer: String,
    /// The RTP ports, until the media starts.
    ports: Option<RtpPorts>,
    /// The CSeq of our latest INVITE.
    seq: u32,
    /// Our latest INVITE (its 200 forms the dialog).
    invite: Option<Request>,
    /// Answers the trunk's digest challenges, when it has credentials.
    digest: Option<DigestClient>,
    /// Ringback into the room while dialling, when asked for.
    dial_tone: Option<DialTone>,
}

/// A ring tone played into the room while the call is placed.
struct DialTone {
    task: tokio::task::JoinHandle<()>,
}

impl DialTone {
    fn start(
        port: switchboard_rooms::AudioPort,
        plan: switchboard_media::tones::TonePlan,
        level: f32,
    ) -> DialTone {
        let task = tokio::spawn(async move {
            let spec = ToneSpec::of(plan, ToneKind::Ringback);
            let mut generator = ToneGenerator::new(spec, port.rate(), level);
            let mut frame = vec![0i16; port.frame_len()];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                // The room's rate follows its members: make the tone anew
                // at the new rate.
                if port.frame_len() != frame.len() {
                    generator = ToneGenerator::new(spec, port.rate(), level);
                    frame = vec![0i16; port.frame_len()];
                }
                generator.fill(&mut frame);
                port.push(&frame);
            }
        });
        DialTone { task }
    }
}

impl Drop for DialTone {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OutboundCall {
    fn destination(&self) -> Destination {
        Destination::Address {
            transport: self.request.transport,
            addr: self.call.flow.remote,
        }
    }

    fn request_uri(&self) -> String {
        let r = &self.request;
        if let Some(uri) = &r.request_uri {
            return uri.clone();
        }
        match r.transport {
            Transport::Udp => format!("sip:{}@{}", r.to_user, r.address),
            Transport::Tcp => format!("sip:{}@{};transport=tcp", r.to_user, r.address),
            Transport::Tls => format!("sips:{}@{}", r.to_user, r.address),
        }
    }

    /// The INVITE with CSeq `seq` (and credentials, after a challenge).
    fn invite(&self, seq: u32, offer: &str, credentials: Option<(HeaderName, String)>) -> Request {
        let r = &self.request;
        let from_host = r
            .from_host
            .clone()
            .unwrap_or_else(|| self.call.shared.sip.advertised_host());
        let from_uri = format!("sip:{}@{}", r.from_number, from_host);
        let from = match (&r.from_header, &r.display_name) {
            (Some(header), _) => format!("{header};tag={}", self.call.call_id),
            (None, display) => self.default_from(display, &from_uri),
        };
        let to = r
            .to_header
            .clone()
            .unwrap_or_else(|| format!("<sip:{}@{}>", r.to_user, r.address));
        let mut headers = Headers::new();
        headers.push(HeaderName::From, from);
        headers.push(HeaderName::To, to);
        headers.push(HeaderName::CallId, self.call.sip_call_id.clone());
        headers.push(HeaderName::CSeq, format!("{seq} INVITE"));
        headers.push(HeaderName::Contact, self.call.contact());
        headers.push(
            HeaderName::Allow,
            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY",
        );
        if let Some((name, value)) = credentials {
            headers.push(name, value);
        }
        headers.push(HeaderName::Supported, "timer");
        headers.push(
            HeaderName::SessionExpires,
            self.session_expires.as_secs().to_string(),
        );
        for (name, value) in &r.headers {
            headers.push(HeaderName::parse(name), value.clone());
        }
        headers.push(HeaderName::ContentType, "application/sdp");
        Request {
            method: Method::Invite,
            uri: self.request_uri(),
            headers,
            body: bytes::Bytes::from(offer.to_string()),
        }
    }

    /// Our From: the display name unset shows the number, empty shows
    /// none, otherwise it is the name (quotes and backslashes dropped).
    fn default_from(&self, display: &Option<String>, from_uri: &str) -> String {
        let tag = &self.call.call_id;
        match display {
            None => format!("\"{}\" <{from_uri}>;tag={tag}", self.request.from_number),
            Some(name) if name.is_empty() => format!("<{from_uri}>;tag={tag}"),
            Some(name) => format!(
                "\"{}\" <{from_uri}>;tag={tag}",
                name.replace(['"', '\\'], "")
            ),
        }
    }

    /// Resolves the trunk, makes the offer, starts the dial tone.
    async fn establish(&mut self) -> Result<Route, DialError> {
        // Resolved here, after the participant joined the room (LiveKit's
        // order): the API answers a caller that does not wait at once.
        self.call.flow.remote = resolve(&self.request.address, self.request.transport).await?;
        self.call.peer = self.call.flow.remote;
        if self.call.shared.config.refuses(self.call.flow.remote.ip()) {
            return Err(DialError::DestinationRefused(self.call.flow.remote.ip()));
        }
        let (offer, ports) = self.prepare_offer()?;
        self.offer = offer;
        self.ports = Some(ports);
        self.dial_tone = self.dial_tone();
        self.digest = self
            .request
            .auth
            .clone()
            .map(|(user, pass)| DigestClient::new(user, pass));
        Ok(Route::Dial {
            ringing_timeout: self.request.ringing_timeout,
            max_duration: self.request.max_call_duration,
            session_expires: self.session_expires,
            digits: !self.request.dtmf.is_empty(),
        })
    }

    /// Sends the INVITE (again, after a challenge or a 422).
    fn send_invite(&mut self, session_expires: Duration, authenticate: bool) -> Input {
        self.session_expires = session_expires;
        let credentials = if authenticate {
            let Some((response, _)) = self.call.response.take() else {
                return Input::Failed(Ending::DialFailed(DialError::AuthMissing));
            };
            match self.credentials(&response) {
                Ok(credentials) => Some(credentials),
                Err(e) => return Input::Failed(Ending::DialFailed(e)),
            }
        } else {
            None
        };
        self.seq += 1;
        let invite = self.invite(self.seq, &self.offer, credentials);
        if self.seq == 1 {
            self.note_invite(&invite);
        } else {
            debug!(call_id = %self.call.call_id, authenticate, "INVITE sent again");
        }
        self.invite = Some(invite.clone());
        let txn = self.call.send_routed(invite, self.destination());
        self.call.note_sent(txn, Sent::Invite);
        Input::Sent(Sent::Invite, self.seq)
    }

    /// CANCELs our INVITE; when there is nothing to cancel any more, the
    /// INVITE is as good as over.
    fn cancel(&mut self) -> Option<Input> {
        info!(call_id = %self.call.call_id, timeout = ?self.request.ringing_timeout, "no answer: CANCEL");
        let invite = self
            .call
            .sent
            .iter()
            .find(|(_, sent)| *sent == Sent::Invite)
            .map(|(txn, _)| *txn);
        match invite {
            Some(txn) if self.call.shared.sip.cancel(txn) => None,
            // Over already (its final response is on the way) or never sent.
            _ => Some(Input::NoResponse(Sent::Invite, RequestFailure::Timeout)),
        }
    }

    /// Ringback into the room while dialling, when the request asked for it
    /// (it stops when dropped).
    fn dial_tone(&self) -> Option<DialTone> {
        let session = &self.call.shared.config.session;
        match (&self.call.participant, self.request.play_dialtone) {
            (Some(p), true) => Some(DialTone::start(
                p.audio(),
                session.tone_plan,
                session.tone_level_dbfs,
            )),
            _ => None,
        }
    }

    /// Allocates the call's RTP ports and makes the SDP offer.
    fn prepare_offer(&mut self) -> Result<(String, switchboard_media::ports::RtpPorts), DialError> {
        let shared = self.call.shared.clone();
        let config = &shared.config;
        let ports = shared
            .media
            .ports()
            .allocate(config.rtp_bind)
            .map_err(|_| DialError::NoPorts)?;
        let local = LocalEndpoint {
            address: config.media_address,
            rtp_port: ports.rtp_port(),
        };
        let media = media_config(
            &self.request.media,
            &config.refused_destinations,
            config.session.opus.pcm_rate,
        );
        let mut negotiator = SdpNegotiator::new(media, local);
        let offer = negotiator
            .create_offer(Direction::SendRecv)
            .map_err(|e| DialError::Media(MediaFault::Sdp(e)))?;
        self.call.negotiator = Some(negotiator);
        Ok((offer, ports))
    }

    /// The call's record learns its From, To and the callee's address.
    fn note_invite(&self, invite: &Request) {
        let transport = self.request.transport;
        let (from, to) = (
            invite.from().map(|f| sip_uri(&f.uri, transport)),
            invite.to().map(|t| sip_uri(&t.uri, transport)),
        );
        let remote = self.call.flow.remote.to_string();
        self.call.note(|record| {
            record.remote_address = remote;
            let info = record.info.get_or_insert_with(Default::default);
            info.from_uri = from;
            info.to_uri = to;
        });
    }

    /// The answer to a 401/407: the header and credentials for the next
    /// INVITE, or why there are none.
    fn credentials(&mut self, response: &Response) -> Result<(HeaderName, String), DialError> {
        let uri = self.request_uri();
        let client = self.digest.as_mut().ok_or(DialError::AuthMissing)?;
        let kind = if response.status == 401 {
            ChallengeKind::Www
        } else {
            ChallengeKind::Proxy
        };
        let challenge_header = kind.challenge_header();
        let challenges: Vec<&str> = response.headers.get_all(&challenge_header).collect();
        let credentials = client
            .authorize(&challenges, "INVITE", &uri, self.offer.as_bytes())
            .map_err(|_| DialError::Sip {
                status: response.status,
                reason: response.reason.clone(),
            })?;
        Ok((kind.credentials_header(), credentials))
    }

    /// Applies an SDP answer (from a 18x or the 200) and starts the media.
    fn apply_answer(&mut self, response: &Response) -> Result<(), DialError> {
        if self.call.media.is_some() || response.body.is_empty() {
            return Ok(());
        }
        let answer = String::from_utf8_lossy(&response.body).into_owned();
        let negotiated = self
            .call
            .negotiator
            .as_mut()
            .ok_or(DialError::Media(MediaFault::NoOffer))?
            .accept_answer(&answer)
            .map_err(|e| DialError::Media(MediaFault::Sdp(e)))?;
        let ports = self
            .ports
            .take()
            .ok_or(DialError::Media(MediaFault::PortsTaken))?;
        let timeout =
            media_timeout(&self.request.media).unwrap_or(self.call.shared.config.media_timeout);
        let room = self.request.room.clone();
        self.call
            .start_media(ports, negotiated, timeout, &room)
            .map_err(DialError::Media)?;
        // Joined before the codec was known: now the room may mix at the
        // callee's rate.
        if let Some(p) = &self.call.participant {
            p.set_audio_rate(self.call.room_audio_rate());
        }
        Ok(())
    }

    /// Early media: the callee's ringback or announcements go to the room.
    fn early_media(&mut self) -> Option<Input> {
        let (response, _) = self.call.response.take()?;
        if response.body.is_empty() || self.call.media.is_some() {
            return None;
        }
        if let Err(e) = self.apply_answer(&response) {
            return Some(Input::Failed(Ending::DialFailed(e)));
        }
        if let Some(p) = &self.call.participant {
            self.call.bridge.set_port(Some(p.audio()));
        }
        None
    }

    /// The 200: dialog, ACK, media.
    fn confirm(&mut self) -> Input {
        self.dial_tone = None;
        let (Some((response, flow)), Some(invite)) = (self.call.response.take(), &self.invite)
        else {
            // The machine asks only after our INVITE's 200 came.
            return Input::Failed(Ending::DialFailed(DialError::Abandoned));
        };
        // The dialog's requests go back along the 200's flow (the same
        // connection for TCP and TLS).
        let dialog = match Dialog::new_uac(invite, &response, flow) {
            Ok(dialog) => dialog,
            Err(e) => {
                return Input::Failed(Ending::DialFailed(DialError::BadAnswer(e)));
            }
        };
        let invite_seq = invite.cseq().map(|c| c.seq);
        let sip = self.call.shared.sip.clone();
        let id = self.call.adopt_dialog(dialog);
        if let Some(ack) = sip.with_dialog(&id, |d| d.request(Method::Ack, invite_seq)) {
            sip.send_ack(ack, Destination::Flow(flow));
        }
        self.call.flow = flow;
        self.call.peer = flow.remote;
        self.call.mark_answered();
        if let Err(e) = self.apply_answer(&response) {
            warn!(call_id = %self.call.call_id, error = %e, "the answer's SDP is unusable");
            return Input::AnswerUnusable(e);
        }
        if let Some(p) = &self.call.participant {
            self.call.bridge.set_port(Some(p.audio()));
        }
        let timeout =
            media_timeout(&self.request.media).unwrap_or(self.call.shared.config.media_timeout);
        self.call.media_answered(timeout);
        self.answer_attributes(&response);
        self.call.remote_headers = response.headers.clone();
        info!(call_id = %self.call.call_id, "outbound call answered");
        Input::Answered
    }

    /// The 200 OK's headers as attributes, as for an inbound INVITE:
    /// `include_headers`, the built-in provider map, the trunk's map, then
    /// `sip.callTag` (the callee's To tag) and `sip.callIDFull`.
    fn answer_attributes(&self, response: &Response) {
        let Some(p) = &self.call.participant else {
            return;
        };
        let input = CallInput {
            headers: response
                .headers
                .iter()
                .map(|f| (f.name.as_str().to_string(), f.value.clone()))
                .collect(),
            from_tag: response
                .to()
                .and_then(|t| t.tag().map(str::to_string))
                .unwrap_or_default(),
            sip_call_id: self.call.sip_call_id.clone(),
            ..CallInput::default()
        };
        let attributes = header_attributes(
            &input,
            self.request.include_headers,
            &self.request.headers_to_attributes,
        );
        p.set_attributes(&attributes.into_iter().collect());
    }

    /// After the answer: the requested DTMF (`automation`); the call turns
    /// `active` when the media engine reports them sent.
    async fn send_digits(&mut self) -> Option<Input> {
        let media = self.call.media.as_ref()?;
        match media.send_dtmf(&self.request.dtmf).await {
            Ok(()) => None,
            Err(e) => {
                warn!(call_id = %self.call.call_id, error = %e, "DTMF not sent");
                Some(Input::DigitsNotSent)
            }
        }
    }

    /// Tells whoever waits how dialling went; the dial tone stops.
    fn dial_result(&mut self, result: Result<(), DialError>) {
        self.dial_tone = None;
        if let Err(error) = &result {
            info!(call_id = %self.call.call_id, error = %error, "outbound call failed");
        }
        if let Some(answered) = self.answered.take() {
            // The API caller may have stopped waiting.
            let _ = answered.send(result);
        }
    }
}

impl Leg for OutboundCall {
    fn call(&mut self) -> &mut Call {
        &mut self.call
    }

    async fn route(&mut self) -> Result<Route, Ending> {
        self.establish().await.map_err(Ending::DialFailed)
    }

    async fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::SendInvite {
                session_expires,
                authenticate,
            } => Some(self.send_invite(session_expires, authenticate)),
            Action::EarlyMedia => self.early_media(),
            Action::Confirm => Some(self.confirm()),
            Action::DialResult(result) => {
                self.dial_result(result);
                None
            }
            Action::Cancel => self.cancel(),
            Action::SendDigits => self.send_digits().await,
            other => self.call.execute(other).await,
        }
    }

    fn work_done(&mut self, _: WorkDone) -> Option<Input> {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trunk_addresses_resolve_with_default_ports() {
        let addr = |s: &str| -> Result<SocketAddr, DialError> { Ok(s.parse().unwrap()) };
        assert_eq!(
            resolve("127.0.0.1", Transport::Udp).await,
            addr("127.0.0.1:5060")
        );
        assert_eq!(
            resolve("127.0.0.1", Transport::Tls).await,
            addr("127.0.0.1:5061")
        );
        assert_eq!(
            resolve("127.0.0.1:5080", Transport::Tcp).await,
            addr("127.0.0.1:5080")
        );
        assert_eq!(resolve("::1", Transport::Udp).await, addr("[::1]:5060"));
        assert!(resolve("no-such-host.invalid", Transport::Udp)
            .await
            .is_err());
    }
}
