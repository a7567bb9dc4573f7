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

use crate::call::{
    next_media_event, next_room_event, sip_uri, sleep_until_deadline, Call, CallPolicy, Ending,
    InDialog,
};
use crate::deadlines::Timer;
use crate::media_config::{media_config, media_timeout};
use crate::prompts::Prompt;
use crate::refusal::Refusal;
use crate::session_timer::{
    answer_session_timer, refresher_for_request, supports_timer, Refresher, SessionExpires,
    SessionTimer,
};
use crate::status::CallStatus;
use crate::stream::{take_stream_request, StreamRequest};
use crate::{AnswerMode, CallGuard, Shared, Signal, TransferError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use switchboard_media::sdp::{Direction, LocalEndpoint, SdpNegotiator};
use switchboard_media::session::MediaEvent;
use switchboard_media::tones::ToneKind;
use switchboard_rooms::{
    AgentRequest, JoinRequest, LeaveReason, Participant, ParticipantKind, RoomEvent, RoomOptions,
};
use switchboard_routing::livekit_protocol::SipMediaConfig;
use switchboard_routing::{
    attrs, effective_media, proto_duration, CallInput, DispatchDecision, DispatchResult,
    PassedOver, RoutingError, TrunkMatch,
};
use switchboard_sip::auth::AuthFailure;
use switchboard_sip::dialog::Dialog;
use switchboard_sip::message::{HeaderName, ResponseSpec};
use switchboard_sip::{Incoming, Offence};
use switchboard_streams::{BotSocket, CallFacts};
use tokio::sync::mpsc;
use tracing::{debug, info};

/// The longest gap between repeated 180s (RFC 3261 §13.3.1.1: at least one
/// a minute keeps proxies from giving up on the transaction).
const MAX_RINGING_GAP: Duration = Duration::from_secs(60);

/// How long a caller who entered a wrong PIN may take to hear it said
/// before the BYE, whatever the prompt (it takes about 1.5 s).
const WRONG_PIN_PROMPT_MAX: Duration = Duration::from_secs(3);

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

/// An inbound call while it is set up: the INVITE and what routing decided.
struct InboundCall {
    call: Call,
    incoming: Incoming,
    from_user: String,
    to_user: String,
    dispatch: Option<DispatchResult>,
    /// The bot the rule streams this call to, connected before the answer
    /// and started once the caller is in the room.
    pending_stream: Option<(StreamRequest, BotSocket)>,
}

fn explain(passed_over: &[PassedOver]) -> String {
    let text = passed_over
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    capped(&text, MAX_LOGGED_EXPLANATION).into_owned()
}

/// How many trunks a refused call's log line explains.
const EXPLAINED_TRUNKS: usize = 8;
/// The longest caller or called user written to a log line.
const MAX_LOGGED_USER: usize = 64;
/// The longest explanation written to a log line.
const MAX_LOGGED_EXPLANATION: usize = 2048;

/// `text` cut to at most `max` bytes (on a character boundary), marked
/// with an ellipsis when cut: peer-supplied text in a log line.
fn capped(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &text[..end]))
}

impl InboundCall {
    fn new(
        shared: Arc<Shared>,
        incoming: Incoming,
        self_tx: mpsc::UnboundedSender<Signal>,
        signals: mpsc::UnboundedReceiver<Signal>,
        guard: CallGuard,
    ) -> InboundCall {
        let request = &incoming.request;
        let sip_call_id = request.call_id().unwrap_or_default().to_string();
        let from_user = request
            .from()
            .and_then(|f| f.uri.user())
            .unwrap_or_default();
        let to_user = request.to().and_then(|t| t.uri.user()).unwrap_or_default();
        let mut call = Call::new(shared, incoming.flow, sip_call_id, self_tx, signals, guard);
        call.invite_txn = Some(incoming.txn);
        // Behind a trusted proxy (a load balancer) the caller is the hop
        // the proxy heard from, not the proxy.
        call.peer = switchboard_sip::message::original_source(
            &request.headers,
            incoming.flow.remote,
            &call.shared.config.trusted_proxies,
        );
        let peer = call.peer.to_string();
        call.note(|record| record.remote_address = peer);
        let from = request
            .from()
            .map(|f| sip_uri(&f.uri, incoming.flow.transport));
        let to = request
            .to()
            .map(|t| sip_uri(&t.uri, incoming.flow.transport));
        call.note_info(|info| {
            info.from_uri = from;
            info.to_uri = to;
        });
        InboundCall {
            call,
            incoming,
            from_user,
            to_user,
            dispatch: None,
            pending_stream: None,
        }
    }

    async fn run(mut self) {
        let ending = match self.establish().await {
            Ok(()) => {
                // Set up: the INVITE's headers now serve only
                // lk.sip.GetRemoteHeaders, which the call answers.
                self.call.remote_headers = std::mem::take(&mut self.incoming.request.headers);
                self.call.in_call().await
            }
            Err(ending) => ending,
        };
        self.call.finish(ending).await;
    }

    // ----- routing -------------------------------------------------------

    fn call_input(&self) -> CallInput {
        let request = &self.incoming.request;
        CallInput {
            call_id: self.call.call_id.clone(),
            from_user: self.from_user.clone(),
            from_host: request
                .from()
                .and_then(|f| f.uri.as_sip().map(|s| s.host.to_string()))
                .unwrap_or_default(),
            to_user: self.to_user.clone(),
            request_uri_user: request
                .parsed_uri()
                .ok()
                .and_then(|u| u.user())
                .unwrap_or_default(),
            source_ip: Some(self.call.peer.ip()),
            pin: None,
            no_pin: false,
            headers: request
                .headers
                .iter()
                .map(|f| (f.name.as_str().to_string(), f.value.clone()))
                .collect(),
            sip_call_id: self.call.sip_call_id.clone(),
            from_tag: request
                .from()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default(),
        }
    }

    fn refuse(&self, refusal: Refusal, explanation: &str) -> Ending {
        // What a password guesser or a number scanner does, counted against
        // its source; past the threshold the source is banned.
        let offence = match refusal {
            Refusal::AuthenticationFailed => Some(Offence::AuthFailure),
            Refusal::NoMatchingTrunk => Some(Offence::UnknownNumber),
            _ => None,
        };
        if let Some(offence) = offence {
            self.call
                .shared
                .sip
                .report_offence(self.call.peer.ip(), offence);
        }
        info!(
            call_id = %self.call.call_id,
            sip_call_id = %self.call.sip_call_id,
            from = %capped(&self.from_user, MAX_LOGGED_USER),
            to = %capped(&self.to_user, MAX_LOGGED_USER),
            source = %self.call.peer,
            transport = self.incoming.flow.transport.as_str(),
            status = refusal.status(),
            reason = %refusal.text(),
            explain = %explanation,
            "inbound call refused"
        );
        self.respond(refusal.response(self.call.shared.config.retry_after_secs));
        Ending::Refused(refusal)
    }

    fn respond(&self, spec: ResponseSpec) -> bool {
        match self.call.shared.sip.respond(self.incoming.txn, spec) {
            Ok(()) => true,
            Err(e) => {
                debug!(call_id = %self.call.call_id, error = %e, "response not sent");
                false
            }
        }
    }

    fn match_trunk(&self, input: &CallInput) -> Result<TrunkMatch, Ending> {
        let index = self.call.shared.routing.current();
        let report = index.match_trunk(input);
        match report.result {
            Ok(found) => Ok(found),
            Err(RoutingError::MultipleTrunks(_) | RoutingError::MultipleDefaultTrunks(_)) => {
                Err(self.refuse(Refusal::AmbiguousTrunk, &explain(&report.passed_over)))
            }
            Err(_) if self.call.shared.config.challenge_unknown_numbers => {
                Err(self.challenge_unknown_number())
            }
            Err(e) => {
                // The fast path only looked at trunks for this number; the
                // log says why the first few trunks passed (`switchboard sip
                // explain` tells about all of them), with the caller's
                // numbers cut short: a refusal costs the same however many
                // trunks there are and however long the To user is.
                let mut short = input.clone();
                for field in [
                    &mut short.to_user,
                    &mut short.from_user,
                    &mut short.request_uri_user,
                ] {
                    *field = capped(field, MAX_LOGGED_USER).into_owned();
                }
                let (some, more) = index.explain_some_trunks(&short, EXPLAINED_TRUNKS);
                let mut why = explain(&some.passed_over);
                if more > 0 {
                    why.push_str(&format!("; {more} more trunks not shown"));
                }
                if why.is_empty() {
                    why = e.to_string();
                }
                Err(self.refuse(Refusal::NoMatchingTrunk, &why))
            }
        }
    }

    /// A call to a number no trunk has, answered as a trunk with
    /// credentials would answer it: a challenge first, then 403 for any
    /// credentials. Nothing tells the caller the number does not exist.
    fn challenge_unknown_number(&self) -> Ending {
        if self.credentials().is_some() {
            return self.refuse(
                Refusal::AuthenticationFailed,
                "no trunk has this number (challenged like one that does)",
            );
        }
        self.call
            .shared
            .sip
            .report_offence(self.call.peer.ip(), Offence::UnknownNumber);
        debug!(call_id = %self.call.call_id, "digest challenge sent for a number no trunk has");
        self.challenge(&self.call.shared.config.default_realm, false)
    }

    /// The INVITE's digest credentials. Either header is read: some
    /// carriers answer a 407 with Authorization.
    fn credentials(&self) -> Option<&str> {
        let headers = &self.incoming.request.headers;
        headers
            .get(&self.call.shared.config.challenge.credentials_header())
            .or_else(|| headers.get(&HeaderName::Authorization))
            .or_else(|| headers.get(&HeaderName::ProxyAuthorization))
    }

    /// Answers with a digest challenge (401 or 407 as configured) for `realm`.
    fn challenge(&self, realm: &str, stale: bool) -> Ending {
        let kind = self.call.shared.config.challenge;
        let mut spec = ResponseSpec::new(kind.status());
        for value in self
            .call
            .shared
            .digest()
            .challenges(SystemTime::now(), realm, stale)
        {
            spec = spec.header(kind.challenge_header(), value);
        }
        self.respond(spec);
        Ending::Challenged
    }

    /// A response verified here is claimed in the replicas' shared ledger
    /// too: taken by another replica before, it is a replay.
    async fn claim_nonce_count(
        &self,
        trunk: &TrunkMatch,
        nonce: &str,
        count: u32,
    ) -> Result<(), Ending> {
        let Some(ledger) = self.call.shared.nonce_ledger.clone() else {
            return Ok(());
        };
        if ledger.claim(nonce, count).await {
            return Ok(());
        }
        Err(self.refuse(
            Refusal::AuthenticationFailed,
            &format!(
                "trunk {}: nonce count replayed (taken by another replica)",
                trunk.trunk_id()
            ),
        ))
    }

    /// Checks the digest credentials the trunk asks for: a challenge when
    /// there are none (or the nonce went stale), 403 when they are wrong.
    /// Verified credentials give their nonce and count, for the replicas'
    /// shared replay check.
    fn authenticate(&self, trunk: &TrunkMatch) -> Result<Option<(String, u32)>, Ending> {
        let Some(auth) = trunk.digest_auth() else {
            return Ok(None);
        };
        let config = &self.call.shared.config;
        let realm = if auth.realm.is_empty() {
            config.default_realm.clone()
        } else {
            auth.realm.clone()
        };
        let request = &self.incoming.request;
        let challenge = |stale: bool| {
            debug!(call_id = %self.call.call_id, trunk = %trunk.trunk_id(), stale, "digest challenge sent");
            self.challenge(&realm, stale)
        };
        let Some(credentials) = self.credentials() else {
            return Err(challenge(false));
        };
        let password_of = |user: &str| (user == auth.username).then(|| auth.password.clone());
        let verdict = self.call.shared.digest().verify_request(
            SystemTime::now(),
            "INVITE",
            &request.uri,
            &realm,
            credentials,
            &password_of,
            &request.body,
        );
        match verdict {
            Ok(verified) => Ok(Some((verified.nonce, verified.nc.unwrap_or(u32::MAX)))),
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
        let index = self.call.shared.routing.current();
        let mut rng = switchboard_sip::fill_random;
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
        let config = &self.call.shared.config;
        if !self.call.guard.activate(config.max_active_calls) {
            return Err(self.refuse(Refusal::AtCapacity, "call limit reached"));
        }
        let min_se = config.min_session_expires;
        if SessionExpires::of(&self.incoming.request.headers).is_some_and(|se| se.interval < min_se)
        {
            return Err(self.refuse(
                Refusal::SessionIntervalTooSmall {
                    min_se: min_se.as_secs(),
                },
                "Session-Expires below our Min-SE",
            ));
        }
        let input = self.call_input();
        let trunk = self.match_trunk(&input)?;
        let trunk_id = trunk.trunk_id().to_owned();
        self.call.note_info(|info| info.trunk_id = trunk_id);
        if let Some((nonce, count)) = self.authenticate(&trunk)? {
            self.claim_nonce_count(&trunk, &nonce, count).await?;
        }
        let decision = self.dispatch(&input, &trunk)?;
        // The To tag is the call ID (as LiveKit): carriers and logs can tie
        // the SIP dialog to `sip.callID`.
        self.call
            .shared
            .sip
            .set_local_tag(self.incoming.txn, &self.call.call_id);
        match decision {
            DispatchDecision::Accept(mut result) => {
                let stream = take_stream_request(
                    &mut result.participant_attributes,
                    &self.call.shared.config.streams,
                    &self.call.shared.config.refused_destinations,
                );
                let stream = match stream {
                    Ok(stream) => stream,
                    Err(why) => return Err(self.refuse_stream(why)),
                };
                let media = result.media.clone();
                let room = result.room_name.clone();
                let answer_sdp = self.prepare_media(&media, &room)?;
                self.adopt(*result);
                if let Some(request) = stream {
                    let socket = self.connect_stream(&request).await?;
                    self.pending_stream = Some((request, socket));
                }
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
                let answer_sdp = self.prepare_media(&media, &self.call.call_id.clone())?;
                info!(call_id = %self.call.call_id, rule = %rule_id, "PIN requested");
                self.collect_pin(input, trunk, answer_sdp).await
            }
        }
    }

    /// Answers the SDP offer; keeps the negotiator and the media session
    /// ready to start. Returns the SDP answer.
    fn prepare_media(&mut self, media: &SipMediaConfig, room: &str) -> Result<String, Ending> {
        let request = &self.incoming.request;
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
        let config = &self.call.shared.config;
        let ports = match self.call.shared.media.ports().allocate(config.rtp_bind) {
            Ok(ports) => ports,
            Err(e) => return Err(self.refuse(Refusal::NoMediaPorts, &e.to_string())),
        };
        let local = LocalEndpoint {
            address: config.media_address,
            rtp_port: ports.rtp_port(),
        };
        let negotiation = media_config(
            media,
            &self.call.shared.config.refused_destinations,
            self.call.shared.config.session.opus.pcm_rate,
        );
        let mut negotiator = SdpNegotiator::new(negotiation, local);
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
        self.call.negotiator = Some(negotiator);
        let timeout = media_timeout(media).unwrap_or(config.media_timeout);
        if let Err(e) = self.call.start_media(ports, negotiated, timeout, room) {
            self.respond(ResponseSpec::new(500).reason("Media Failure"));
            return Err(Ending::MediaFailure(e));
        }
        Ok(answer_sdp)
    }

    /// A response that establishes the dialog: Contact and the INVITE's
    /// Record-Route (RFC 3261 §12.1.1).
    fn dialog_response(&self, status: u16) -> ResponseSpec {
        let mut spec = ResponseSpec::new(status).header(HeaderName::Contact, self.call.contact());
        for route in self.incoming.request.headers.list(&HeaderName::RecordRoute) {
            spec = spec.header(HeaderName::RecordRoute, route);
        }
        spec
    }

    async fn join_room(&mut self, status: CallStatus) -> Result<(), Ending> {
        let Some(room_name) = self.dispatch.as_ref().map(|d| d.room_name.clone()) else {
            return Ok(());
        };
        let placed = self.call.place(&room_name).await;
        let Some(result) = &self.dispatch else {
            return Ok(());
        };
        let mut attributes: BTreeMap<String, String> = result
            .participant_attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        attributes.insert(attrs::CALL_STATUS.to_string(), status.as_str().to_string());
        let request = JoinRequest {
            identity: result.participant_identity.clone(),
            name: result.participant_name.clone(),
            metadata: result.participant_metadata.clone(),
            attributes,
            kind: ParticipantKind::Sip,
            publishes_audio: true,
            audio_rate: self.call.room_audio_rate(),
        };
        let room = self.call.local_room(&result.room_name);
        let joined = placed.and_then(|_| {
            // The rule's room configuration applies when this call creates the
            // room (as a LiveKit token's roomConfig does): its agents.
            let options = RoomOptions {
                agents: result
                    .room_config
                    .iter()
                    .flat_map(|c| &c.agents)
                    .map(|a| AgentRequest {
                        agent_name: a.agent_name.clone(),
                        metadata: a.metadata.clone(),
                    })
                    .collect(),
                ..RoomOptions::default()
            };
            self.call.shared.rooms.join_with(&room, request, &options)
        });
        match joined {
            Ok(participant) => {
                info!(
                    call_id = %self.call.call_id,
                    room = %room,
                    identity = %participant.info().identity,
                    trunk = %result.trunk_id,
                    rule = %result.rule_id,
                    status = status.as_str(),
                    "caller joined the room"
                );
                self.call.note_joined(&room, &participant);
                self.call.participant = Some(participant);
                Ok(())
            }
            Err(e) => {
                info!(
                    call_id = %self.call.call_id,
                    room = %room,
                    identity = %result.participant_identity,
                    error = %e,
                    "caller could not join the room"
                );
                // Before the answer the INVITE still waits for a final
                // response; after it (the PIN path) the BYE says why.
                if self.call.answered_at.is_none() {
                    let refusal = Refusal::RoomUnavailable(e.to_string());
                    self.respond(refusal.response(self.call.shared.config.retry_after_secs));
                }
                Err(Ending::JoinFailed(e))
            }
        }
    }

    /// Refuses the call whose bot cannot be reached, with the configured status.
    fn refuse_stream(&self, why: String) -> Ending {
        let status = self.call.shared.config.streams.unreachable_status;
        info!(call_id = %self.call.call_id, status, reason = %why, "media stream bot unreachable: call refused");
        let refusal = Refusal::StreamUnavailable { status, why };
        self.respond(refusal.response(self.call.shared.config.retry_after_secs));
        Ending::Refused(refusal)
    }

    /// Connects to the rule's bot before the answer, so a bot that is down
    /// refuses the call instead of answering it into silence. A CANCEL
    /// meanwhile ends the wait.
    async fn connect_stream(&mut self, request: &StreamRequest) -> Result<BotSocket, Ending> {
        let connecting = switchboard_streams::connect(&request.spec);
        tokio::pin!(connecting);
        loop {
            tokio::select! {
                connected = &mut connecting => {
                    return match connected {
                        Ok(socket) => {
                            info!(call_id = %self.call.call_id, host = %socket.host(), port = socket.port(), tls = socket.is_tls(), "media stream bot connected");
                            Ok(socket)
                        }
                        Err(e) => Err(self.refuse_stream(e.to_string())),
                    };
                }
                signal = self.call.signals.recv() => match signal {
                    Some(Signal::Cancelled) | None => return Err(Ending::Cancelled),
                    Some(Signal::Transfer(order)) => Call::refuse_transfer(order, TransferError::NotEstablished),
                    Some(other) => debug!(call_id = %self.call.call_id, signal = ?other, "ignored while connecting the bot"),
                },
            }
        }
    }

    /// Puts the connected bot in the caller's room and starts streaming.
    fn start_stream(&mut self) -> Result<(), Ending> {
        let Some((request, socket)) = self.pending_stream.take() else {
            return Ok(());
        };
        let Some(result) = &self.dispatch else {
            return Ok(());
        };
        let room = self.call.local_room(&result.room_name);
        let join = switchboard_streams::join_request(format!("stream-{}", self.call.call_id));
        let participant = match self.call.shared.rooms.join(&room, join) {
            Ok(participant) => participant,
            Err(e) => {
                info!(call_id = %self.call.call_id, room = %room, error = %e, "the voice bot could not join the room");
                let refusal = Refusal::RoomUnavailable(e.to_string());
                self.respond(refusal.response(self.call.shared.config.retry_after_secs));
                return Err(Ending::JoinFailed(e));
            }
        };
        let facts = CallFacts {
            call_id: self.call.call_id.clone(),
            from: self.from_user.clone(),
            to: self.to_user.clone(),
            trunk_id: result.trunk_id.clone(),
            room,
            custom_parameters: request.custom_parameters.clone(),
        };
        self.call.stream = Some(switchboard_streams::start(
            socket,
            participant,
            facts,
            &request.spec,
        ));
        Ok(())
    }

    /// Keeps the dispatch result and what it decides for the call's life.
    fn adopt(&mut self, result: DispatchResult) {
        self.call.note_info(|info| {
            info.trunk_id.clone_from(&result.trunk_id);
            info.dispatch_rule_id.clone_from(&result.rule_id);
            info.room_name.clone_from(&result.room_name);
            info.participant_identity
                .clone_from(&result.participant_identity);
        });
        self.call.policy = CallPolicy {
            max_call_duration: proto_duration(result.max_call_duration.as_ref()),
            attributes_to_headers: result.attributes_to_headers.clone(),
        };
        self.dispatch = Some(result);
    }

    fn ready_to_answer(&self) -> bool {
        match self.call.shared.config.answer {
            AnswerMode::Immediate => true,
            AnswerMode::OnParticipant => self
                .call
                .participant
                .as_ref()
                .is_some_and(Participant::others_publish_audio),
        }
    }

    async fn ring_then_answer(&mut self, answer_sdp: String) -> Result<(), Ending> {
        self.join_room(CallStatus::Ringing).await?;
        self.start_stream()?;
        let config = self.call.shared.config.clone();
        let ringing_timeout = self
            .dispatch
            .as_ref()
            .and_then(|d| proto_duration(d.ringing_timeout.as_ref()))
            .unwrap_or(config.ringing_timeout);
        let ringing_response = self.dialog_response(180);
        self.respond(ringing_response.clone());
        self.call.note_ringing();
        if config.early_media {
            let spec = self
                .dialog_response(183)
                .body("application/sdp", answer_sdp.clone());
            self.respond(spec);
            if let Some(media) = &self.call.media {
                media.play_tone(Some(ToneKind::Ringback));
            }
        }
        self.call
            .deadlines
            .set(Timer::RingingTimeout, self.call.started, ringing_timeout);
        // 180 again after 1, 2, 4… intervals, then once a minute (RFC 3261
        // §13.3.1.1): a lost 180 is soon made good, while a source that
        // forged its INVITE gets a handful of answers, not one a second.
        let mut ringing_gap = config.ringing_interval;
        self.call
            .deadlines
            .set(Timer::RingAgain, Instant::now(), ringing_gap);
        while !self.ready_to_answer() {
            tokio::select! {
                signal = self.call.signals.recv() => match signal {
                    Some(Signal::Cancelled) | None => return Err(Ending::Cancelled),
                    Some(Signal::Transfer(order)) => Call::refuse_transfer(order, TransferError::NotEstablished),
                    Some(other) => debug!(call_id = %self.call.call_id, signal = ?other, "ignored while ringing"),
                },
                event = next_room_event(&mut self.call.participant) => {
                    if let Some(RoomEvent::Rpc { from, id, method, payload }) = &event {
                        // GetRemoteHeaders reads the INVITE; EndCall declines.
                        let headers = &self.incoming.request.headers;
                        if self.call.answer_rpc(headers, from, id, method, payload).is_some() {
                            self.respond(Refusal::EndedWhileRinging.response(config.retry_after_secs));
                            return Err(Ending::EndedByParticipant(from.clone()));
                        }
                        continue;
                    }
                    let gone = self.call.participant.as_ref().and_then(Participant::disconnected);
                    let removed = match event {
                        None => Some(gone.unwrap_or(LeaveReason::RoomDeleted)),
                        Some(RoomEvent::Disconnected { .. } | RoomEvent::ParticipantLeft { .. }) => gone,
                        Some(_) => None,
                    };
                    if let Some(reason) = removed {
                        self.respond(Refusal::RemovedWhileRinging.response(config.retry_after_secs));
                        return Err(Ending::Removed(reason));
                    }
                }
                _ = sleep_until_deadline(self.call.deadlines.next()) => {
                    while let Some(timer) = self.call.deadlines.expired(Instant::now()) {
                        match timer {
                            Timer::RingAgain => {
                                self.respond(ringing_response.clone());
                                ringing_gap = ringing_gap.saturating_mul(2).min(MAX_RINGING_GAP);
                                self.call.deadlines.set(Timer::RingAgain, Instant::now(), ringing_gap);
                            }
                            Timer::RingingTimeout => return Err(self.ringing_timed_out(ringing_timeout)),
                            _ => {}
                        }
                    }
                }
            }
        }
        self.call.deadlines.clear(Timer::RingAgain);
        self.call.deadlines.clear(Timer::RingingTimeout);
        self.answer(answer_sdp)?;
        if let Some(media) = &self.call.media {
            media.play_tone(None);
        }
        if let Some(p) = &self.call.participant {
            self.call.bridge.set_port(Some(p.audio()));
        }
        Ok(())
    }

    /// Refuses the call nobody answered in time, with the rule's status if
    /// it names one.
    fn ringing_timed_out(&self, ringing_timeout: Duration) -> Ending {
        let config = &self.call.shared.config;
        let status = self
            .dispatch
            .as_ref()
            .map(|d| d.ringing_timeout_status)
            .unwrap_or(0);
        let refusal = Refusal::RingingTimeout;
        let mut spec = refusal.response(config.retry_after_secs);
        if let Ok(code) = u16::try_from(status) {
            if (400..700).contains(&code) {
                spec.status = code;
                spec.reason = None;
            }
        }
        info!(call_id = %self.call.call_id, status = spec.status, timeout = ?ringing_timeout, "ringing timeout");
        self.respond(spec);
        Ending::Refused(refusal)
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
        let spec = self.session_timer_headers(spec);
        let spec = spec.body("application/sdp", answer_sdp);
        let request = &self.incoming.request;
        let dialog = match Dialog::new_uas(request, &self.call.call_id, self.incoming.flow, true) {
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
            let mut routes = self.call.shared.routes();
            self.call.shared.sip.insert_dialog(dialog);
            routes.dialogs.insert(id.clone(), self.call.self_tx.clone());
        }
        self.call.dialog = Some(id);
        if !self.respond(spec) {
            // The CANCEL won the race and the core answered 487.
            return Err(Ending::Cancelled);
        }
        self.call.mark_answered();
        let timeout = self
            .dispatch
            .as_ref()
            .and_then(|d| media_timeout(&d.media))
            .unwrap_or(self.call.shared.config.media_timeout);
        self.call.media_answered(timeout);
        info!(call_id = %self.call.call_id, sip_call_id = %self.call.sip_call_id, "call answered");
        Ok(())
    }

    /// RFC 4028 as the UAS: the caller's Session-Expires is kept (it is at
    /// least our Min-SE here); the refresher is the caller's choice, else
    /// the caller when it supports timers, else us.
    fn session_timer_headers(&mut self, spec: ResponseSpec) -> ResponseSpec {
        let headers = &self.incoming.request.headers;
        let Some(asked) = SessionExpires::of(headers) else {
            return spec;
        };
        let peer_supports = supports_timer(headers);
        let refresher = refresher_for_request(Some(asked), peer_supports);
        self.call.session_timer = Some(SessionTimer {
            interval: asked.interval,
            we_refresh: refresher == Refresher::Uas,
        });
        answer_session_timer(spec, asked.interval, refresher, peer_supports)
    }

    /// The PIN path: answer, prompt, collect digits until `#`, dispatch again.
    async fn collect_pin(
        &mut self,
        mut input: CallInput,
        trunk: TrunkMatch,
        answer_sdp: String,
    ) -> Result<(), Ending> {
        self.answer(answer_sdp)?;
        let config = self.call.shared.config.clone();
        let rate = config.session.room_rate;
        self.call.bridge.play(&Prompt::EnterPin.samples(rate), rate);
        self.call
            .deadlines
            .set(Timer::PinTimeout, Instant::now(), config.pin_timeout);
        let mut pin = String::new();
        let entered = loop {
            let digit = tokio::select! {
                event = next_media_event(&mut self.call.media_events) => match event {
                    Some(MediaEvent::Dtmf(digit)) => Some(digit),
                    Some(MediaEvent::MediaTimeout { .. }) => return Err(Ending::MediaTimeout),
                    Some(_) => None,
                    None => return Err(Ending::MediaFailure("media worker stopped".into())),
                },
                signal = self.call.signals.recv() => match signal {
                    Some(Signal::Request(incoming)) => match self.call.in_dialog_request(incoming).await {
                        InDialog::Digit(d) => Some(d),
                        InDialog::Hangup => return Err(Ending::CallerHungUp),
                        InDialog::Handled => None,
                    },
                    Some(Signal::Ack(_)) => { self.call.acked = true; None }
                    Some(Signal::AckTimeout) => return Err(Ending::AckTimeout),
                    Some(Signal::Transfer(order)) => {
                        Call::refuse_transfer(order, TransferError::NotEstablished);
                        None
                    }
                    Some(_) => None,
                    None => return Err(Ending::CallerHungUp),
                },
                _ = sleep_until_deadline(self.call.deadlines.next()) => {
                    if self.call.deadlines.expired(Instant::now()) == Some(Timer::PinTimeout) {
                        return Err(Ending::PinTimeout);
                    }
                    None
                }
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
        self.call.deadlines.clear(Timer::PinTimeout);
        if entered.is_empty() {
            input.no_pin = true;
        } else {
            input.pin = Some(entered);
        }
        let index = self.call.shared.routing.current();
        let mut rng = switchboard_sip::fill_random;
        let report = index.dispatch(&input, &trunk, &mut rng);
        match report.result {
            Ok(DispatchDecision::Accept(result)) => {
                info!(call_id = %self.call.call_id, room = %result.room_name, rule = %result.rule_id, "PIN accepted");
                self.adopt(*result);
                self.call.bridge.play(&Prompt::RoomJoin.samples(rate), rate);
                self.join_room(CallStatus::Active).await?;
                if let Some(p) = &self.call.participant {
                    self.call.bridge.set_port(Some(p.audio()));
                }
                Ok(())
            }
            _ => {
                info!(call_id = %self.call.call_id, explain = %explain(&report.passed_over), "PIN refused");
                // A wrong PIN is a failed authentication: guessing PINs in
                // parallel calls from one source ends in a ban.
                self.call
                    .shared
                    .sip
                    .report_offence(self.call.peer.ip(), Offence::AuthFailure);
                // The prompt, and a fifth of a second of silence for the
                // phone's jitter buffer to play it out, before the BYE.
                let mut prompt = Prompt::WrongPin.samples(rate);
                prompt.resize(prompt.len() + rate as usize / 5, 0);
                self.call.bridge.play(&prompt, rate);
                let played = self.call.bridge.prompt_played();
                if tokio::time::timeout(WRONG_PIN_PROMPT_MAX, played)
                    .await
                    .is_err()
                {
                    debug!(call_id = %self.call.call_id, "wrong-PIN prompt cut short");
                }
                Err(Ending::WrongPin)
            }
        }
    }
}
