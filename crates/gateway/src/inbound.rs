//! An inbound call, from the INVITE to the last packet.
//!
//! 1. Capacity, then routing ([`Leg::route`]): trunk (digest challenge
//!    when the trunk has credentials), dispatch rule. Every refusal is a
//!    final response with honest words, logged with the reasons
//!    `switchboard sip explain` gives.
//! 2. Media: the SDP offer is answered with the merged media settings.
//! 3. PIN rules: answer at once, prompt, collect digits until `#`, dispatch
//!    again. Open rules: connect the rule's bot, join the room as
//!    `ringing`, 180 (and 183 with ringback when configured), answer once
//!    someone who can be heard is in the room (or at once).
//! 4. In call and teardown: as every call (`crate::machine` decides,
//!    `crate::actions` carries out).
//!
//! This module carries out the actions only an inbound call has.

use crate::call::{sip_uri, Call, CallPolicy, Ending};
use crate::driver::{Leg, WorkDone};
use crate::machine::{Action, CallMachine, Input, Route, SessionAnswer, Settings};
use crate::media_config::{media_config, media_timeout};
use crate::prompts::Prompt;
use crate::refusal::Refusal;
use crate::session_timer::{answer_session_timer, supports_timer, SessionExpires};
use crate::status::CallStatus;
use crate::stream::{take_stream_request, StreamRequest};
use crate::{CallGuard, Shared, Signal};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use switchboard_media::sdp::{Direction, LocalEndpoint, SdpNegotiator};
use switchboard_media::tones::ToneKind;
use switchboard_rooms::{AgentRequest, JoinRequest, ParticipantKind, RoomOptions};
use switchboard_routing::livekit_protocol::SipMediaConfig;
use switchboard_routing::{
    attrs, effective_media, proto_duration, CallInput, DispatchDecision, DispatchResult,
    PassedOver, RoutingError, TrunkMatch,
};
use switchboard_sip::auth::AuthFailure;
use switchboard_sip::dialog::Dialog;
use switchboard_sip::message::{HeaderName, ResponseSpec};
use switchboard_sip::{Incoming, Offence};
use switchboard_streams::CallFacts;
use tokio::sync::mpsc;
use tracing::{debug, info};

/// Starts the task of a new inbound call.
pub(crate) fn spawn(shared: Arc<Shared>, incoming: Incoming) {
    let (tx, rx) = mpsc::unbounded_channel();
    // Registered before the task runs, so a CANCEL right behind the INVITE
    // finds the call.
    shared.routes().invites.insert(incoming.txn, tx.clone());
    let guard = CallGuard::task(&shared.calls);
    let call = InboundCall::new(shared, incoming, tx, rx, guard);
    tokio::spawn(crate::driver::drive(call));
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
    stream_request: Option<StreamRequest>,
    /// The connected bot's socket, until the caller is in the room.
    bot: Option<switchboard_streams::BotSocket>,
    /// Our SDP answer, for the 183 and the 200.
    answer_sdp: String,
    /// What the PIN is dispatched with again, on the PIN path.
    pin_route: Option<(CallInput, TrunkMatch)>,
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
        let machine = CallMachine::inbound(
            Settings::of(&shared.config),
            Instant::now(),
            SessionExpires::of(&request.headers),
            supports_timer(&request.headers),
        );
        let flow = incoming.flow;
        let mut call = Call::new(shared, flow, sip_call_id, self_tx, signals, guard, machine);
        call.invite_txn = Some(incoming.txn);
        // lk.sip.GetRemoteHeaders reads the INVITE's, at any phase.
        call.remote_headers = request.headers.clone();
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
            stream_request: None,
            bot: None,
            answer_sdp: String::new(),
            pin_route: None,
        }
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

    /// Admission and routing: what the call does next, or how it was
    /// refused (the final response sent).
    async fn establish(&mut self) -> Result<Route, Ending> {
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
            DispatchDecision::Accept(result) => self.accept(*result),
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
                self.prepare_media(&media, &self.call.call_id.clone())?;
                info!(call_id = %self.call.call_id, rule = %rule_id, "PIN requested");
                self.pin_route = Some((input, trunk));
                Ok(Route::Pin)
            }
        }
    }

    /// A rule took the call: its bot, its media, how long it rings.
    fn accept(&mut self, mut result: DispatchResult) -> Result<Route, Ending> {
        let config = &self.call.shared.config;
        let stream = take_stream_request(
            &mut result.participant_attributes,
            &config.streams,
            &config.refused_destinations,
        );
        let stream = match stream {
            Ok(stream) => stream,
            Err(why) => return Err(self.refuse_stream(why)),
        };
        let route = Route::Ring {
            ringing_timeout: proto_duration(result.ringing_timeout.as_ref())
                .unwrap_or(config.ringing_timeout),
            // The machine takes it only if it is a 4xx–6xx.
            timeout_status: u16::try_from(result.ringing_timeout_status).ok(),
            max_duration: proto_duration(result.max_call_duration.as_ref()),
            bot: stream.is_some(),
        };
        let media = result.media.clone();
        let room = result.room_name.clone();
        self.prepare_media(&media, &room)?;
        self.adopt(result);
        self.stream_request = stream;
        Ok(route)
    }

    /// Answers the SDP offer (kept for the 183 and the 200); keeps the
    /// negotiator and the media session ready to start.
    fn prepare_media(&mut self, media: &SipMediaConfig, room: &str) -> Result<(), Ending> {
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
        self.answer_sdp = answer_sdp;
        Ok(())
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
                self.call.joined(&room, participant);
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

    /// Connects to the rule's bot before ringing, so a bot that is down
    /// refuses the call instead of answering it into silence. The call
    /// hears its CANCEL meanwhile.
    fn connect_bot(&mut self) {
        let Some(request) = &self.stream_request else {
            return;
        };
        let spec = request.spec.clone();
        self.call.work = Some(crate::driver::work(async move {
            let connected = switchboard_streams::connect(&spec).await;
            WorkDone::BotConnected(connected.map(Box::new).map_err(|e| e.to_string()))
        }));
    }

    /// Puts the connected bot in the caller's room and starts streaming.
    fn start_stream(&mut self) -> Result<(), Ending> {
        let (Some(request), Some(socket)) = (self.stream_request.take(), self.bot.take()) else {
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
            attributes_to_headers: result.attributes_to_headers.clone(),
        };
        self.dispatch = Some(result);
    }

    /// The caller joins the room as `ringing` (with the bot, if any), and
    /// hears 180 (and 183 with ringback when configured).
    async fn ring(&mut self) -> Input {
        if let Err(ending) = self.join_room(CallStatus::Ringing).await {
            return Input::Failed(ending);
        }
        if let Err(ending) = self.start_stream() {
            return Input::Failed(ending);
        }
        self.respond(self.dialog_response(180));
        self.call.note_ringing();
        if self.call.shared.config.early_media {
            let spec = self
                .dialog_response(183)
                .body("application/sdp", self.answer_sdp.clone());
            self.respond(spec);
            if let Some(media) = &self.call.media {
                media.play_tone(Some(ToneKind::Ringback));
            }
        }
        Input::Rung {
            audience: self.call.audience_ready(),
        }
    }

    /// Refuses the INVITE as the machine decided.
    fn refuse_invite(&self, refusal: Refusal) {
        let spec = refusal.response(self.call.shared.config.retry_after_secs);
        if let Refusal::RingingTimeout { .. } = refusal {
            info!(call_id = %self.call.call_id, status = spec.status, "ringing timeout");
        } else {
            info!(call_id = %self.call.call_id, status = spec.status, reason = %refusal.text(), "call refused before the answer");
        }
        self.respond(spec);
    }

    /// Sends 200 OK with the SDP answer (and the session timer's headers)
    /// and registers the dialog.
    fn answer(&mut self, session: Option<SessionAnswer>) -> Result<(), Ending> {
        let mut spec = self.dialog_response(200);
        if let Some(result) = &self.dispatch {
            let mut headers: Vec<_> = result.headers.iter().collect();
            headers.sort();
            for (name, value) in headers {
                spec = spec.header(HeaderName::parse(name), value.clone());
            }
        }
        let spec = match session {
            Some(s) => answer_session_timer(spec, s.interval, s.refresher, s.peer_supports),
            None => spec,
        };
        let spec = spec.body("application/sdp", self.answer_sdp.clone());
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
        self.call.adopt_dialog(dialog);
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

    /// Dispatches again with the PIN the caller typed: in the room, or
    /// refused (a wrong PIN counts against the source, as a wrong password).
    async fn check_pin(&mut self, pin: String) -> Input {
        let Some((mut input, trunk)) = self.pin_route.take() else {
            return Input::PinRefused;
        };
        if pin.is_empty() {
            input.no_pin = true;
        } else {
            input.pin = Some(pin);
        }
        let index = self.call.shared.routing.current();
        let mut rng = switchboard_sip::fill_random;
        let report = index.dispatch(&input, &trunk, &mut rng);
        let rate = self.call.shared.config.session.room_rate;
        match report.result {
            Ok(DispatchDecision::Accept(result)) => {
                info!(call_id = %self.call.call_id, room = %result.room_name, rule = %result.rule_id, "PIN accepted");
                let max_duration = proto_duration(result.max_call_duration.as_ref());
                self.adopt(*result);
                self.call.bridge.play(&Prompt::RoomJoin.samples(rate), rate);
                match self.join_room(CallStatus::Active).await {
                    Ok(()) => Input::PinAccepted(max_duration),
                    Err(ending) => Input::Failed(ending),
                }
            }
            _ => {
                info!(call_id = %self.call.call_id, explain = %explain(&report.passed_over), "PIN refused");
                // Guessing PINs in parallel calls from one source ends in a ban.
                self.call
                    .shared
                    .sip
                    .report_offence(self.call.peer.ip(), Offence::AuthFailure);
                Input::PinRefused
            }
        }
    }

    /// 180 again.
    fn respond_ringing(&self) {
        self.respond(self.dialog_response(180));
    }

    /// Plays the wrong-PIN prompt, and a fifth of a second of silence for
    /// the phone's jitter buffer to play it out; the call waits for it.
    fn prompt_wrong_pin(&mut self) {
        let rate = self.call.shared.config.session.room_rate;
        let mut prompt = Prompt::WrongPin.samples(rate);
        prompt.resize(prompt.len() + rate as usize / 5, 0);
        self.call.bridge.play(&prompt, rate);
        let bridge = self.call.bridge.clone();
        self.call.work = Some(crate::driver::work(async move {
            bridge.prompt_played().await;
            WorkDone::PromptPlayed
        }));
    }
}

impl Leg for InboundCall {
    fn call(&mut self) -> &mut Call {
        &mut self.call
    }

    async fn route(&mut self) -> Result<Route, Ending> {
        self.establish().await
    }

    async fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::ConnectBot => self.connect_bot(),
            Action::Ring => return Some(self.ring().await),
            Action::Answer(session) => {
                return Some(match self.answer(session) {
                    Ok(()) => Input::Answered,
                    Err(ending) => Input::Failed(ending),
                })
            }
            Action::Refuse(refusal) => self.refuse_invite(refusal),
            Action::RingAgain => self.respond_ringing(),
            Action::PromptPin => {
                let rate = self.call.shared.config.session.room_rate;
                self.call.bridge.play(&Prompt::EnterPin.samples(rate), rate);
            }
            Action::CheckPin(pin) => return Some(self.check_pin(pin).await),
            Action::PromptWrongPin => self.prompt_wrong_pin(),
            other => return self.call.execute(other).await,
        }
        None
    }

    fn work_done(&mut self, done: WorkDone) -> Option<Input> {
        match done {
            WorkDone::BotConnected(Ok(socket)) => {
                info!(call_id = %self.call.call_id, host = %socket.host(), port = socket.port(), tls = socket.is_tls(), "media stream bot connected");
                self.bot = Some(*socket);
                Some(Input::BotConnected)
            }
            WorkDone::BotConnected(Err(why)) => Some(Input::Failed(self.refuse_stream(why))),
            WorkDone::PromptPlayed => Some(Input::PromptPlayed),
        }
    }
}
