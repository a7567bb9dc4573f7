//! An inbound call, from the INVITE to the last packet.
//!
//! 1. Capacity, then routing: trunk (digest challenge when the trunk has
//!    credentials), dispatch rule. Every refusal is a final response with
//!    honest words, logged with the reasons `switchboard sip explain` gives.
//! 2. Media: the SDP offer is answered with the merged media settings.
//! 3. PIN rules: answer at once, prompt, collect digits until `#`, dispatch
//!    again. Open rules: join the room as `ringing`, 180 (and 183 with
//!    ringback when configured), answer once someone who can be heard is in
//!    the room (or at once).
//! 4. In call: BYE, re-INVITE, INFO DTMF, room events, media timeout,
//!    maximum duration.
//! 5. Teardown: BYE when we end an answered call, `sip.callStatus=hangup`,
//!    leave the room, release media and every route to the call.

use crate::bridge::{BridgeControl, RoomBridge};
use crate::info_dtmf::parse_info_dtmf;
use crate::media_config::{media_config, media_timeout, std_duration};
use crate::prompts::Prompt;
use crate::refusal::Refusal;
use crate::{answer, AnswerMode, CallGuard, Shared, Signal};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use switchboard_media::driver::CallHandle;
use switchboard_media::dtmf::DtmfDigit;
use switchboard_media::ports::RtpPorts;
use switchboard_media::sdp::{Direction, LocalEndpoint, NegotiatedMedia, SdpNegotiator};
use switchboard_media::session::{MediaEvent, MediaSession};
use switchboard_media::tones::ToneKind;
use switchboard_rooms::{JoinRequest, LeaveReason, Participant, ParticipantKind, RoomEvent};
use switchboard_routing::livekit_protocol::SipMediaConfig;
use switchboard_routing::{
    attrs, effective_media, new_id, CallInput, DispatchDecision, DispatchResult, IdPrefix,
    PassedOver, RoutingError, TrunkMatch,
};
use switchboard_sip::auth::AuthFailure;
use switchboard_sip::dialog::{Dialog, DialogId};
use switchboard_sip::message::{HeaderName, Method, ResponseSpec};
use switchboard_sip::{Destination, Incoming};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Starts the task of a new inbound call.
pub(crate) fn spawn(shared: Arc<Shared>, incoming: Incoming) {
    let (tx, rx) = mpsc::unbounded_channel();
    // Registered before the task runs, so a CANCEL right behind the INVITE
    // finds the call.
    shared.routes().invites.insert(incoming.txn, tx.clone());
    let guard = CallGuard::task(&shared.calls);
    let call = InboundCall::new(shared, incoming, tx, rx, guard);
    tokio::spawn(call.run());
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
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
    fn text(&self) -> String {
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

/// The INVITE's facts the call keeps referring to.
struct Invite {
    incoming: Incoming,
    call_id: String,
    sip_call_id: String,
    from_user: String,
    to_user: String,
}

struct InboundCall {
    shared: Arc<Shared>,
    invite: Invite,
    self_tx: mpsc::UnboundedSender<Signal>,
    signals: mpsc::UnboundedReceiver<Signal>,
    guard: CallGuard,
    started: Instant,
    answered_at: Option<Instant>,
    dialog: Option<DialogId>,
    negotiator: Option<SdpNegotiator>,
    media: Option<CallHandle>,
    media_events: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    bridge: BridgeControl,
    participant: Option<Participant>,
    dispatch: Option<DispatchResult>,
    acked: bool,
}

/// A random source for IDs and room suffixes: the OS generator.
fn os_random(dest: &mut [u8]) {
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

fn explain(passed_over: &[PassedOver]) -> String {
    passed_over
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

async fn next_room_event(participant: &mut Option<Participant>) -> Option<RoomEvent> {
    match participant {
        Some(p) => p.next_event().await,
        None => std::future::pending().await,
    }
}

async fn next_media_event(
    events: &mut Option<mpsc::UnboundedReceiver<MediaEvent>>,
) -> Option<MediaEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl InboundCall {
    fn new(
        shared: Arc<Shared>,
        incoming: Incoming,
        self_tx: mpsc::UnboundedSender<Signal>,
        signals: mpsc::UnboundedReceiver<Signal>,
        guard: CallGuard,
    ) -> InboundCall {
        let mut rng = os_random;
        let request = &incoming.request;
        let invite = Invite {
            call_id: new_id(IdPrefix::Call, &mut rng),
            sip_call_id: request.call_id().unwrap_or_default().to_string(),
            from_user: request
                .from()
                .and_then(|f| f.uri.user())
                .unwrap_or_default(),
            to_user: request.to().and_then(|t| t.uri.user()).unwrap_or_default(),
            incoming,
        };
        InboundCall {
            shared,
            invite,
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
            dispatch: None,
            acked: false,
        }
    }

    async fn run(mut self) {
        let ending = match self.establish().await {
            Ok(()) => self.in_call().await,
            Err(ending) => ending,
        };
        self.finish(ending).await;
    }

    // ----- routing -------------------------------------------------------

    fn call_input(&self) -> CallInput {
        let request = &self.invite.incoming.request;
        CallInput {
            call_id: self.invite.call_id.clone(),
            from_user: self.invite.from_user.clone(),
            from_host: request
                .from()
                .and_then(|f| f.uri.as_sip().map(|s| s.host.to_string()))
                .unwrap_or_default(),
            to_user: self.invite.to_user.clone(),
            request_uri_user: request
                .parsed_uri()
                .ok()
                .and_then(|u| u.user())
                .unwrap_or_default(),
            source_ip: Some(self.invite.incoming.flow.remote.ip()),
            pin: None,
            no_pin: false,
            headers: request
                .headers
                .iter()
                .map(|f| (f.name.as_str().to_string(), f.value.clone()))
                .collect(),
            sip_call_id: self.invite.sip_call_id.clone(),
            from_tag: request
                .from()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default(),
        }
    }

    fn refuse(&self, refusal: Refusal, explanation: &str) -> Ending {
        info!(
            call_id = %self.invite.call_id,
            sip_call_id = %self.invite.sip_call_id,
            from = %self.invite.from_user,
            to = %self.invite.to_user,
            source = %self.invite.incoming.flow.remote,
            transport = self.invite.incoming.flow.transport.as_str(),
            status = refusal.status(),
            reason = %refusal.text(),
            explain = %explanation,
            "inbound call refused"
        );
        self.respond(refusal.response(self.shared.config.retry_after_secs));
        Ending::Refused(refusal)
    }

    fn respond(&self, spec: ResponseSpec) -> bool {
        match self.shared.sip.respond(self.invite.incoming.txn, spec) {
            Ok(()) => true,
            Err(e) => {
                debug!(call_id = %self.invite.call_id, error = %e, "response not sent");
                false
            }
        }
    }

    fn match_trunk(&self, input: &CallInput) -> Result<TrunkMatch, Ending> {
        let index = self.shared.routing.current();
        let report = index.match_trunk(input);
        match report.result {
            Ok(found) => Ok(found),
            Err(RoutingError::MultipleTrunks(_) | RoutingError::MultipleDefaultTrunks(_)) => {
                Err(self.refuse(Refusal::AmbiguousTrunk, &explain(&report.passed_over)))
            }
            Err(e) => {
                // The fast path only looked at trunks for this number; the
                // log says why every trunk passed (what `explain` prints).
                let full = index.match_trunk_explained(input);
                let mut why = explain(&full.passed_over);
                if why.is_empty() {
                    why = e.to_string();
                }
                Err(self.refuse(Refusal::NoMatchingTrunk, &why))
            }
        }
    }

    /// Checks the digest credentials the trunk asks for: a challenge when
    /// there are none (or the nonce went stale), 403 when they are wrong.
    fn authenticate(&self, trunk: &TrunkMatch) -> Result<(), Ending> {
        let Some(auth) = trunk.digest_auth() else {
            return Ok(());
        };
        let config = &self.shared.config;
        let kind = config.challenge;
        let realm = if auth.realm.is_empty() {
            config.default_realm.clone()
        } else {
            auth.realm.clone()
        };
        let request = &self.invite.incoming.request;
        // Either header is read: some carriers answer a 407 with
        // Authorization.
        let credentials = request
            .headers
            .get(&kind.credentials_header())
            .or_else(|| request.headers.get(&HeaderName::Authorization))
            .or_else(|| request.headers.get(&HeaderName::ProxyAuthorization));
        let challenge = |stale: bool| {
            let now = SystemTime::now();
            let mut spec = ResponseSpec::new(kind.status());
            for value in self.shared.digest().challenges(now, &realm, stale) {
                spec = spec.header(kind.challenge_header(), value);
            }
            self.respond(spec);
            debug!(call_id = %self.invite.call_id, trunk = %trunk.trunk_id(), stale, "digest challenge sent");
            Ending::Challenged
        };
        let Some(credentials) = credentials else {
            return Err(challenge(false));
        };
        let password_of = |user: &str| (user == auth.username).then(|| auth.password.clone());
        let verdict = self.shared.digest().verify(
            SystemTime::now(),
            "INVITE",
            &realm,
            credentials,
            &password_of,
            &request.body,
        );
        match verdict {
            Ok(_) => Ok(()),
            Err(
                AuthFailure::Stale
                | AuthFailure::BadNonce
                | AuthFailure::WrongRealm
                | AuthFailure::UnsupportedAlgorithm
                | AuthFailure::QopRequired,
            ) => {
                let stale = verdict == Err(AuthFailure::Stale);
                Err(challenge(stale))
            }
            Err(failure) => Err(self.refuse(
                Refusal::AuthenticationFailed,
                &format!("trunk {}: {failure}", trunk.trunk_id()),
            )),
        }
    }

    fn dispatch(&self, input: &CallInput, trunk: &TrunkMatch) -> Result<DispatchDecision, Ending> {
        let index = self.shared.routing.current();
        let mut rng = os_random;
        let report = index.dispatch(input, trunk, &mut rng);
        match report.result {
            Ok(decision) => Ok(decision),
            Err(RoutingError::ConflictingDispatchRules { .. }) => Err(self.refuse(
                Refusal::AmbiguousDispatchRule,
                &explain(&report.passed_over),
            )),
            Err(e) => {
                let mut why = explain(&report.passed_over);
                if why.is_empty() {
                    why = e.to_string();
                }
                Err(self.refuse(Refusal::NoMatchingDispatchRule, &why))
            }
        }
    }

    // ----- set-up --------------------------------------------------------

    async fn establish(&mut self) -> Result<(), Ending> {
        let config = &self.shared.config;
        if !self.guard.activate(config.max_active_calls) {
            return Err(self.refuse(Refusal::AtCapacity, "call limit reached"));
        }
        let input = self.call_input();
        let trunk = self.match_trunk(&input)?;
        self.authenticate(&trunk)?;
        let decision = self.dispatch(&input, &trunk)?;
        // The To tag is the call ID (as LiveKit): carriers and logs can tie
        // the SIP dialog to `sip.callID`.
        self.shared
            .sip
            .set_local_tag(self.invite.incoming.txn, &self.invite.call_id);
        match decision {
            DispatchDecision::Accept(result) => {
                let media = result.media.clone();
                let room = result.room_name.clone();
                let answer_sdp = self.prepare_media(&media, &room)?;
                self.dispatch = Some(*result);
                self.ring_then_answer(answer_sdp).await
            }
            DispatchDecision::RequestPin { rule_id } => {
                let media = trunk
                    .trunk
                    .as_deref()
                    .map(|t| {
                        #[allow(deprecated)]
                        let deprecated = t.media_encryption;
                        effective_media(t.media.as_ref(), deprecated)
                    })
                    .unwrap_or_default();
                let answer_sdp = self.prepare_media(&media, &self.invite.call_id.clone())?;
                info!(call_id = %self.invite.call_id, rule = %rule_id, "PIN requested");
                self.collect_pin(input, trunk, answer_sdp).await
            }
        }
    }

    /// Answers the SDP offer; keeps the negotiator and the media session
    /// ready to start. Returns the SDP answer.
    fn prepare_media(&mut self, media: &SipMediaConfig, room: &str) -> Result<String, Ending> {
        let request = &self.invite.incoming.request;
        let content_type = request
            .headers
            .get(&HeaderName::ContentType)
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if request.body.is_empty() || content_type != "application/sdp" {
            return Err(self.refuse(Refusal::NoSdpOffer, &format!("body type {content_type:?}")));
        }
        let offer = String::from_utf8_lossy(&request.body).into_owned();
        let config = &self.shared.config;
        let ports = match self.shared.media.ports().allocate(config.rtp_bind) {
            Ok(ports) => ports,
            Err(e) => return Err(self.refuse(Refusal::NoMediaPorts, &e.to_string())),
        };
        let local = LocalEndpoint {
            address: config.media_address,
            rtp_port: ports.rtp_port(),
        };
        let mut negotiator = SdpNegotiator::new(media_config(media), local);
        let (answer_sdp, negotiated) = match negotiator.answer_offer(&offer, Direction::SendRecv) {
            Ok(answer) => answer,
            Err(e) => {
                let refusal = if e.sip_status() == 400 {
                    Refusal::BadSdp(e.to_string())
                } else {
                    Refusal::MediaNotAcceptable(e.to_string())
                };
                return Err(self.refuse(refusal, &e.to_string()));
            }
        };
        self.negotiator = Some(negotiator);
        self.start_media(ports, negotiated, media, room)?;
        Ok(answer_sdp)
    }

    /// Puts the call's media on a worker. Media flows at once (early media
    /// and prompts need it); the media timeout only counts once the call is
    /// answered.
    fn start_media(
        &mut self,
        ports: RtpPorts,
        negotiated: NegotiatedMedia,
        media: &SipMediaConfig,
        room: &str,
    ) -> Result<(), Ending> {
        let config = &self.shared.config;
        let mut session_config = config.session.clone();
        session_config.media_timeout = media_timeout(media).unwrap_or(config.media_timeout);
        // Before the answer the caller may send nothing; the real allowance
        // is set when the call is answered.
        session_config.initial_media_timeout = Duration::from_secs(24 * 3600);
        let codec = negotiated.codec;
        let session = match MediaSession::new(session_config, negotiated, Instant::now()) {
            Ok(session) => session,
            Err(e) => {
                warn!(call_id = %self.invite.call_id, error = %e, "media session failed");
                self.respond(ResponseSpec::new(500).reason("Media Failure"));
                return Err(Ending::MediaFailure(e.to_string()));
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let bridge = RoomBridge::new(self.bridge.clone(), tx);
        let handle = self
            .shared
            .media
            .worker_for(room)
            .add_call(ports, session, Box::new(bridge));
        debug!(call_id = %self.invite.call_id, codec = ?codec, "media started");
        self.media = Some(handle);
        self.media_events = Some(rx);
        Ok(())
    }

    fn contact(&self) -> String {
        format!(
            "<{}>",
            self.shared
                .sip
                .contact_uri(self.invite.incoming.flow.transport)
        )
    }

    /// A response that establishes the dialog: Contact and the INVITE's
    /// Record-Route (RFC 3261 §12.1.1).
    fn dialog_response(&self, status: u16) -> ResponseSpec {
        let mut spec = ResponseSpec::new(status).header(HeaderName::Contact, self.contact());
        for route in self
            .invite
            .incoming
            .request
            .headers
            .list(&HeaderName::RecordRoute)
        {
            spec = spec.header(HeaderName::RecordRoute, route);
        }
        spec
    }

    fn join_room(&mut self, status: &str) -> Result<(), Ending> {
        let Some(result) = &self.dispatch else {
            return Ok(());
        };
        let mut attributes: BTreeMap<String, String> = result
            .participant_attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        attributes.insert(attrs::CALL_STATUS.to_string(), status.to_string());
        let request = JoinRequest {
            identity: result.participant_identity.clone(),
            name: result.participant_name.clone(),
            metadata: result.participant_metadata.clone(),
            attributes,
            kind: ParticipantKind::Sip,
            publishes_audio: true,
        };
        let room = result.room_name.clone();
        match self.shared.rooms.join(&room, request) {
            Ok(participant) => {
                info!(
                    call_id = %self.invite.call_id,
                    room = %room,
                    identity = %participant.info().identity,
                    trunk = %result.trunk_id,
                    rule = %result.rule_id,
                    status,
                    "caller joined the room"
                );
                self.participant = Some(participant);
                Ok(())
            }
            Err(e) => Err(self.refuse(Refusal::RoomUnavailable(e.to_string()), &e.to_string())),
        }
    }

    fn set_status(&self, status: &str) {
        if let Some(p) = &self.participant {
            let mut change = BTreeMap::new();
            change.insert(attrs::CALL_STATUS.to_string(), status.to_string());
            p.set_attributes(&change);
        }
    }

    fn ready_to_answer(&self) -> bool {
        match self.shared.config.answer {
            AnswerMode::Immediate => true,
            AnswerMode::OnParticipant => self
                .participant
                .as_ref()
                .is_some_and(Participant::others_publish_audio),
        }
    }

    async fn ring_then_answer(&mut self, answer_sdp: String) -> Result<(), Ending> {
        self.join_room("ringing")?;
        let config = self.shared.config.clone();
        let ringing_timeout = self
            .dispatch
            .as_ref()
            .and_then(|d| std_duration(d.ringing_timeout.as_ref()))
            .unwrap_or(config.ringing_timeout);
        let ringing_response = self.dialog_response(180);
        self.respond(ringing_response.clone());
        if config.early_media {
            let spec = self
                .dialog_response(183)
                .body("application/sdp", answer_sdp.clone());
            self.respond(spec);
            if let Some(media) = &self.media {
                media.play_tone(Some(ToneKind::Ringback));
            }
        }
        let deadline = tokio::time::Instant::from_std(self.started + ringing_timeout);
        let mut ringing = tokio::time::interval(config.ringing_interval);
        ringing.tick().await;
        while !self.ready_to_answer() {
            tokio::select! {
                signal = self.signals.recv() => match signal {
                    Some(Signal::Cancelled) | None => return Err(Ending::Cancelled),
                    Some(other) => debug!(call_id = %self.invite.call_id, signal = ?other, "ignored while ringing"),
                },
                event = next_room_event(&mut self.participant) => match event {
                    Some(RoomEvent::Disconnected { reason }) | Some(RoomEvent::ParticipantLeft { reason, .. }) if self.participant.as_ref().and_then(Participant::disconnected).is_some() => {
                        self.respond(Refusal::RoomUnavailable("removed while ringing".into()).response(config.retry_after_secs));
                        return Err(Ending::Removed(reason));
                    }
                    None => {
                        let reason = self.participant.as_ref().and_then(Participant::disconnected).unwrap_or(LeaveReason::RoomDeleted);
                        self.respond(Refusal::RoomUnavailable("removed while ringing".into()).response(config.retry_after_secs));
                        return Err(Ending::Removed(reason));
                    }
                    Some(_) => {}
                },
                _ = ringing.tick() => { self.respond(ringing_response.clone()); }
                _ = tokio::time::sleep_until(deadline) => {
                    let status = self.dispatch.as_ref().map(|d| d.ringing_timeout_status).unwrap_or(0);
                    let refusal = Refusal::RingingTimeout;
                    let mut spec = refusal.response(config.retry_after_secs);
                    if let Ok(code) = u16::try_from(status) {
                        if (400..700).contains(&code) {
                            spec.status = code;
                            spec.reason = None;
                        }
                    }
                    info!(call_id = %self.invite.call_id, status = spec.status, timeout = ?ringing_timeout, "ringing timeout");
                    self.respond(spec);
                    return Err(Ending::Refused(refusal));
                }
            }
        }
        self.answer(answer_sdp)?;
        if let Some(media) = &self.media {
            media.play_tone(None);
        }
        if let Some(p) = &self.participant {
            self.bridge.set_port(Some(p.audio()));
        }
        Ok(())
    }

    /// Sends 200 OK with the SDP answer and registers the dialog.
    fn answer(&mut self, answer_sdp: String) -> Result<(), Ending> {
        let mut spec = self.dialog_response(200);
        if let Some(result) = &self.dispatch {
            let mut headers: Vec<_> = result.headers.iter().collect();
            headers.sort();
            for (name, value) in headers {
                spec = spec.header(HeaderName::parse(name), value.clone());
            }
        }
        let spec = spec.body("application/sdp", answer_sdp);
        let request = &self.invite.incoming.request;
        let dialog = match Dialog::new_uas(
            request,
            &self.invite.call_id,
            self.invite.incoming.flow,
            true,
        ) {
            Ok(dialog) => dialog,
            Err(e) => {
                // No Contact or From tag: we cannot reach the caller in a
                // dialog, so we cannot answer.
                let refusal = Refusal::BadSdp(format!("cannot form a dialog: {e}"));
                self.respond(ResponseSpec::new(400).reason(format!("Bad Request ({e})")));
                return Err(Ending::Refused(refusal));
            }
        };
        let id = dialog.id.clone();
        {
            let mut routes = self.shared.routes();
            self.shared.sip.insert_dialog(dialog);
            routes.dialogs.insert(id.clone(), self.self_tx.clone());
        }
        self.dialog = Some(id);
        if !self.respond(spec) {
            // The CANCEL won the race and the core answered 487.
            return Err(Ending::Cancelled);
        }
        let now = Instant::now();
        self.answered_at = Some(now);
        if let Some(media) = &self.media {
            let config = &self.shared.config;
            let timeout = self
                .dispatch
                .as_ref()
                .and_then(|d| media_timeout(&d.media))
                .unwrap_or(config.media_timeout);
            // The initial allowance counts from the answer, not the INVITE.
            let initial =
                now.saturating_duration_since(self.started) + config.initial_media_timeout;
            media.set_media_timeout(timeout, initial);
        }
        info!(call_id = %self.invite.call_id, sip_call_id = %self.invite.sip_call_id, "call answered");
        Ok(())
    }

    /// The PIN path: answer, prompt, collect digits until `#`, dispatch again.
    async fn collect_pin(
        &mut self,
        mut input: CallInput,
        trunk: TrunkMatch,
        answer_sdp: String,
    ) -> Result<(), Ending> {
        self.answer(answer_sdp)?;
        let config = self.shared.config.clone();
        let rate = config.session.room_rate;
        self.bridge.play(&Prompt::EnterPin.samples(rate));
        let deadline = tokio::time::Instant::now() + config.pin_timeout;
        let mut pin = String::new();
        let entered = loop {
            let digit = tokio::select! {
                event = next_media_event(&mut self.media_events) => match event {
                    Some(MediaEvent::Dtmf(digit)) => Some(digit),
                    Some(MediaEvent::MediaTimeout { .. }) => return Err(Ending::MediaTimeout),
                    Some(_) => None,
                    None => return Err(Ending::MediaFailure("media worker stopped".into())),
                },
                signal = self.signals.recv() => match signal {
                    Some(Signal::Request(incoming)) => match self.in_dialog_request(incoming).await {
                        InDialog::Digit(d) => Some(d),
                        InDialog::Hangup => return Err(Ending::CallerHungUp),
                        InDialog::Handled => None,
                    },
                    Some(Signal::Ack) => { self.acked = true; None }
                    Some(Signal::AckTimeout) => return Err(Ending::AckTimeout),
                    Some(_) => None,
                    None => return Err(Ending::CallerHungUp),
                },
                _ = tokio::time::sleep_until(deadline) => return Err(Ending::PinTimeout),
            };
            let Some(digit) = digit else { continue };
            match digit.as_char() {
                '#' => break pin,
                c => {
                    pin.push(c);
                    if pin.len() > config.max_pin_digits {
                        break pin;
                    }
                }
            }
        };
        if entered.is_empty() {
            input.no_pin = true;
        } else {
            input.pin = Some(entered);
        }
        let index = self.shared.routing.current();
        let mut rng = os_random;
        let report = index.dispatch(&input, &trunk, &mut rng);
        match report.result {
            Ok(DispatchDecision::Accept(result)) => {
                info!(call_id = %self.invite.call_id, room = %result.room_name, rule = %result.rule_id, "PIN accepted");
                self.dispatch = Some(*result);
                self.bridge.play(&Prompt::RoomJoin.samples(rate));
                self.join_room("active")?;
                if let Some(p) = &self.participant {
                    self.bridge.set_port(Some(p.audio()));
                }
                Ok(())
            }
            _ => {
                info!(call_id = %self.invite.call_id, explain = %explain(&report.passed_over), "PIN refused");
                self.bridge.play(&Prompt::WrongPin.samples(rate));
                // Let the prompt play out before hanging up.
                let until = tokio::time::Instant::now() + Duration::from_secs(3);
                while self.bridge.prompt_playing() && tokio::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(Ending::WrongPin)
            }
        }
    }

    // ----- in call -------------------------------------------------------

    async fn in_call(&mut self) -> Ending {
        let config = self.shared.config.clone();
        let max_duration = self
            .dispatch
            .as_ref()
            .and_then(|d| std_duration(d.max_call_duration.as_ref()))
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
                            info!(call_id = %self.invite.call_id, "call active");
                        }
                    }
                    Some(Signal::AckTimeout) => return Ending::AckTimeout,
                    Some(Signal::Request(incoming)) => match self.in_dialog_request(incoming).await {
                        InDialog::Hangup => return Ending::CallerHungUp,
                        InDialog::Digit(digit) => self.dtmf_to_room(digit),
                        InDialog::Handled => {}
                    },
                    Some(Signal::Cancelled) => debug!(call_id = %self.invite.call_id, "CANCEL after the answer ignored"),
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
                        info!(call_id = %self.invite.call_id, silent_for = ?silent_for, "no RTP from the caller");
                        return Ending::MediaTimeout;
                    }
                    Some(other) => debug!(call_id = %self.invite.call_id, event = ?other, "media event"),
                    None => return Ending::MediaFailure("media worker stopped".into()),
                },
                _ = tokio::time::sleep_until(deadline) => return Ending::MaxDuration,
            }
        }
    }

    fn dtmf_to_room(&self, digit: DtmfDigit) {
        if let Some(p) = &self.participant {
            debug!(call_id = %self.invite.call_id, digit = %digit.as_char(), "DTMF from the caller");
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
            debug!(call_id = %self.invite.call_id, error = %e, "DTMF to the caller not sent");
        }
    }

    /// Answers a request within the dialog.
    async fn in_dialog_request(&mut self, incoming: Incoming) -> InDialog {
        let sip = &self.shared.sip.clone();
        let method = incoming.request.method.clone();
        match method {
            Method::Bye => {
                answer(sip, &incoming, ResponseSpec::new(200));
                if let Some(reason) = incoming.request.headers.get(&HeaderName::Reason) {
                    info!(call_id = %self.invite.call_id, reason, "caller's BYE reason");
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
                        warn!(call_id = %self.invite.call_id, error = %e, "media update failed");
                        return ResponseSpec::new(500).reason("Media Update Failed");
                    }
                }
                info!(call_id = %self.invite.call_id, direction = ?direction, "media renegotiated");
                ResponseSpec::new(200)
                    .header(HeaderName::Contact, self.contact())
                    .body("application/sdp", answer_sdp)
            }
            Err(e) => {
                info!(call_id = %self.invite.call_id, error = %e, "re-INVITE refused");
                ResponseSpec::new(e.sip_status())
            }
        }
    }

    // ----- teardown ------------------------------------------------------

    async fn finish(mut self, ending: Ending) {
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
            routes.invites.remove(&self.invite.incoming.txn);
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
                    call_id = %self.invite.call_id,
                    sip_call_id = %self.invite.sip_call_id,
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
        if let (Some(result), Some(p)) = (&self.dispatch, &self.participant) {
            let attributes = p.info().attributes;
            let mut mapped: Vec<_> = result
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
        info!(call_id = %self.invite.call_id, reason = %ending.text(), "BYE sent");
        let wait = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                signal = self.signals.recv() => match signal {
                    Some(Signal::Response(t, response)) if t == txn && response.status >= 200 => break,
                    Some(Signal::RequestFailed(t, reason)) if t == txn => {
                        debug!(call_id = %self.invite.call_id, ?reason, "BYE got no answer");
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
enum InDialog {
    /// The caller hung up.
    Hangup,
    /// A DTMF digit by SIP INFO.
    Digit(DtmfDigit),
    /// Answered; nothing else to do.
    Handled,
}
