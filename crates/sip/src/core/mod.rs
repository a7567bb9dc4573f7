//! The sans-IO SIP endpoint: transactions, the UAS core checks of RFC 3261
//! §8.2, dialog matching and every timer, driven by the caller's clock.
//!
//! Feed it with [`Endpoint::handle_message`] (a datagram or one framed
//! stream message) and [`Endpoint::handle_timeout`]; drain
//! [`Endpoint::poll_transmit`] and [`Endpoint::poll_event`]; sleep until
//! [`Endpoint::poll_timeout`]. Nothing here reads a clock or a socket.

use crate::dialog::{Dialog, DialogId};
use crate::framing::FramingError;
use crate::guard::{Ban, GuardConfig, GuardStats, Offence, SourceGuard};
use crate::message::{
    media_type, parse_message, HeaderName, Headers, Host, Message, Method, NameAddr, Rejection,
    Request, Response, ResponseBuilder, ResponseSpec, Uri,
};
use crate::random::random_token;
use crate::transaction::{
    ClientState, ClientTxn, MergeKey, MethodClass, ServerState, ServerTxn, TimerKind, TxnKey,
    TIMER_KINDS,
};
use crate::{Destination, Flow, Limits, Timers, Transmit, Transport};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// What the endpoint needs to know about itself.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Message size limits.
    pub limits: Limits,
    /// RFC 3261 timer values.
    pub timers: Timers,
    /// The host (name or IP) we put in Via and Warning headers: the address
    /// peers reach us at, which may differ from the one we bind (NAT).
    pub advertised_host: String,
    /// The port we advertise for each transport.
    pub advertised_ports: AdvertisedPorts,
    /// The Server / User-Agent header value; empty to send none.
    pub user_agent: String,
    /// Methods we implement, in the order the Allow header lists them.
    pub allow: Vec<Method>,
    /// Option tags we support (RFC 3261 §19.2): a Require of anything else
    /// gets 420.
    pub supported: Vec<String>,
    /// Retry-After seconds sent with 503 while draining or overloaded.
    pub retry_after_secs: u32,
    /// Most server and client transactions alive at once; beyond it new
    /// requests get 503 without creating state.
    pub max_transactions: usize,
    /// Accept in-dialog requests only from the dialog's peer: its
    /// connection, its address, or an address its Contact or route set
    /// names. Call-ID and tags are no secret (every room participant sees
    /// them), so without this anyone could end or move a call.
    pub bind_dialogs_to_peer: bool,
    /// Per-source budgets, bans and scanner detection.
    pub guard: GuardConfig,
    /// How long an INVITE may wait for the transaction user's first
    /// answer before we send 100 Trying ourselves; zero sends it at once.
    pub trying_delay: Duration,
}

/// The port advertised for each transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertisedPorts {
    /// UDP port.
    pub udp: u16,
    /// TCP port.
    pub tcp: u16,
    /// TLS port.
    pub tls: u16,
}

impl AdvertisedPorts {
    fn for_transport(&self, transport: Transport) -> u16 {
        match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
        }
    }
}

impl Default for EndpointConfig {
    fn default() -> EndpointConfig {
        EndpointConfig {
            limits: Limits::default(),
            timers: Timers::default(),
            advertised_host: "127.0.0.1".into(),
            advertised_ports: AdvertisedPorts {
                udp: 5060,
                tcp: 5060,
                tls: 5061,
            },
            user_agent: "switchboard".into(),
            allow: vec![
                Method::Invite,
                Method::Ack,
                Method::Cancel,
                Method::Bye,
                Method::Options,
                Method::Info,
                Method::Update,
                Method::Refer,
                Method::Notify,
            ],
            supported: Vec::new(),
            retry_after_secs: 60,
            max_transactions: 100_000,
            bind_dialogs_to_peer: true,
            guard: GuardConfig::default(),
            trying_delay: Duration::from_millis(100),
        }
    }
}

/// Identifies a server transaction (a request we received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxnId(u64);

/// Identifies a client transaction (a request we sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxnId(u64);

/// A request handed to the transaction user, who owns its final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The transaction to answer with [`Endpoint::respond`].
    pub txn: ServerTxnId,
    /// The request.
    pub request: Request,
    /// Where it came from.
    pub flow: Flow,
    /// The dialog it belongs to, for in-dialog requests.
    pub dialog: Option<DialogId>,
}

/// Why a request we sent failed without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// No final response within 64*T1 (Timer B or F).
    Timeout,
    /// The transport could not deliver it.
    Transport,
}

/// Something the transaction user must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request that passed the core checks: an out-of-dialog INVITE, or
    /// a request within a known dialog.
    Request(Incoming),
    /// The caller cancelled a pending INVITE. The core has answered the
    /// CANCEL with 200 and the INVITE with 487.
    Cancelled {
        /// The INVITE's transaction.
        txn: ServerTxnId,
    },
    /// The ACK for a 2xx we sent.
    Ack {
        /// The INVITE transaction, when it is still alive.
        txn: Option<ServerTxnId>,
        /// The ACK (it may carry an SDP answer).
        request: Request,
        /// Where it came from.
        flow: Flow,
    },
    /// A 2xx we sent was never acknowledged (RFC 3261 §13.3.1.4): the
    /// session should be ended with BYE.
    AckTimeout {
        /// The INVITE transaction.
        txn: ServerTxnId,
    },
    /// A response to a request we sent.
    Response {
        /// The request's transaction.
        txn: ClientTxnId,
        /// The response.
        response: Response,
        /// Where it came from.
        flow: Flow,
    },
    /// A request we sent got no final response.
    RequestFailed {
        /// The request's transaction.
        txn: ClientTxnId,
        /// Why.
        reason: RequestFailure,
    },
}

/// Why [`Endpoint::respond`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    /// No such transaction (it ended, or never existed).
    #[error("no such transaction")]
    UnknownTransaction,
    /// A final response was already sent (for example 487 after CANCEL).
    #[error("a final response was already sent")]
    AlreadyFinal,
    /// Not a status code from 100 to 699.
    #[error("invalid status code")]
    InvalidStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TxnRef {
    Server(ServerTxnId),
    Client(ClientTxnId),
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests parsed successfully.
    pub requests: u64,
    /// Responses parsed successfully.
    pub responses: u64,
    /// Messages refused by the parser or framer.
    pub rejected: u64,
    /// Request retransmissions absorbed by a server transaction.
    pub retransmissions_absorbed: u64,
    /// Responses dropped because no client transaction matched.
    pub stray_responses: u64,
}

/// Outcome of the UAS core checks for a new request.
enum Verdict {
    Respond(ResponseSpec),
    Deliver(Option<DialogId>),
}

/// The SIP endpoint state machine.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    server: HashMap<ServerTxnId, ServerTxn>,
    server_index: HashMap<TxnKey, ServerTxnId>,
    merge_index: HashMap<MergeKey, ServerTxnId>,
    accepted_index: HashMap<(String, String, u32), ServerTxnId>,
    client: HashMap<ClientTxnId, ClientTxn>,
    client_index: HashMap<(String, MethodClass), ClientTxnId>,
    dialogs: HashMap<DialogId, Dialog>,
    timers: BTreeMap<(Instant, u64), (TxnRef, TimerKind)>,
    timer_seq: u64,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    draining: bool,
    stats: Stats,
    guard: SourceGuard,
    /// The latest time we were given (for checks made without one).
    clock: Instant,
}

impl Endpoint {
    /// A new endpoint.
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            guard: SourceGuard::new(config.guard.clone()),
            clock: Instant::now(),
            config,
            server: HashMap::new(),
            server_index: HashMap::new(),
            merge_index: HashMap::new(),
            accepted_index: HashMap::new(),
            client: HashMap::new(),
            client_index: HashMap::new(),
            dialogs: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            next_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            draining: false,
            stats: Stats::default(),
        }
    }

    /// Whether a source is trusted or exempt from the source guard.
    pub fn is_guard_exempt(&self, ip: std::net::IpAddr) -> bool {
        self.guard.is_exempt(ip)
    }

    /// Whether a source is banned now (a stream from it is not accepted).
    pub fn is_banned(&mut self, ip: std::net::IpAddr, now: Instant) -> bool {
        self.guard.check_banned(ip, now)
    }

    /// Counts what the transaction user found wrong with a source (a failed
    /// authentication, a call to an unknown number); bans it at the
    /// threshold. Returns whether it is banned now.
    pub fn report_offence(&mut self, now: Instant, ip: std::net::IpAddr, offence: Offence) -> bool {
        self.guard.report(ip, now, offence)
    }

    /// The bans in force.
    pub fn bans(&self, now: Instant) -> Vec<Ban> {
        self.guard.bans(now)
    }

    /// Applies a ban another replica made.
    pub fn ban_from_peer(&mut self, now: Instant, ip: std::net::IpAddr, remaining: Duration) {
        self.guard.ban_from_peer(ip, now, remaining);
    }

    /// Bans made here since the last call, to share with other replicas.
    pub fn take_new_bans(&mut self) -> Vec<Ban> {
        self.guard.take_new_bans()
    }

    /// Lifts a ban; whether there was one.
    pub fn lift_ban(&mut self, now: Instant, ip: std::net::IpAddr) -> bool {
        self.guard.lift(ip, now)
    }

    /// Networks exempt from the source guard besides the trusted ones (the
    /// trunks' allowed addresses).
    pub fn set_guard_exempt(&mut self, networks: Vec<ipnet::IpNet>) {
        self.guard.set_exempt(networks);
    }

    /// The source guard's counters.
    pub fn guard_stats(&self, now: Instant) -> GuardStats {
        self.guard.stats(now)
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Enters or leaves the drain state: while draining, OPTIONS and new
    /// INVITEs get 503 with Retry-After; dialogs carry on.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// True while draining.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// True while a server transaction that arrived on this connection
    /// still owes its final response (the connection must stay writable).
    pub fn awaits_response_on(&self, connection: crate::ConnectionId) -> bool {
        self.server.values().any(|t| {
            t.flow.connection == Some(connection)
                && matches!(t.state, ServerState::Trying | ServerState::Proceeding)
        })
    }

    /// Whether we listen on (and so can advertise) a transport.
    pub fn advertises(&self, transport: Transport) -> bool {
        self.config.advertised_ports.for_transport(transport) != 0
    }

    /// The host we advertise.
    pub fn advertised_host(&self) -> &str {
        &self.config.advertised_host
    }

    /// Our Contact URI for a transport: the advertised host and port, with
    /// `transport=` for streams (and `sips:` for TLS).
    pub fn contact_uri(&self, transport: Transport) -> String {
        let port = self.config.advertised_ports.for_transport(transport);
        let host = &self.config.advertised_host;
        match transport {
            Transport::Udp => format!("sip:{host}:{port}"),
            Transport::Tcp => format!("sip:{host}:{port};transport=tcp"),
            Transport::Tls => format!("sips:{host}:{port}"),
        }
    }

    /// Dialogs registered now.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// Live server and client transactions.
    pub fn transaction_count(&self) -> (usize, usize) {
        (self.server.len(), self.client.len())
    }

    /// The earliest time [`Endpoint::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        // Nothing more goes to a source once it is banned (retransmissions
        // of answers it was given before would keep a scanner going).
        while let Some(transmit) = self.transmits.pop_front() {
            let ip = match &transmit.destination {
                Destination::Flow(flow) | Destination::Dialog { flow, .. } => flow.remote.ip(),
                Destination::Address { addr, .. } => addr.ip(),
            };
            if !self.guard.is_banned(ip, self.clock) {
                return Some(transmit);
            }
        }
        None
    }

    /// The next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Registers a dialog so in-dialog requests reach the transaction user.
    pub fn insert_dialog(&mut self, dialog: Dialog) {
        self.dialogs.insert(dialog.id.clone(), dialog);
    }

    /// Forgets a dialog: later requests in it get 481.
    pub fn remove_dialog(&mut self, id: &DialogId) -> Option<Dialog> {
        let dialog = self.dialogs.remove(id);
        give_back_spare(&mut self.dialogs);
        dialog
    }

    /// A registered dialog.
    pub fn dialog_mut(&mut self, id: &DialogId) -> Option<&mut Dialog> {
        self.dialogs.get_mut(id)
    }

    /// The To tag the endpoint chose for a server transaction.
    pub fn local_tag(&self, txn: ServerTxnId) -> Option<&str> {
        self.server.get(&txn).map(|t| t.local_tag.as_str())
    }

    /// Sets the To tag of a server transaction before its first response
    /// with a tag (a call may want its own identifier as the tag).
    pub fn set_local_tag(&mut self, txn: ServerTxnId, tag: &str) -> bool {
        match self.server.get_mut(&txn) {
            Some(t) if t.last_status <= 100 => {
                t.local_tag = tag.to_string();
                true
            }
            _ => false,
        }
    }

    /// Handles one datagram or one framed stream message. False when it
    /// was dropped unread because its source is banned.
    pub fn handle_message(&mut self, now: Instant, flow: Flow, data: &[u8]) -> bool {
        self.clock = self.clock.max(now);
        // A banned source gets silence, before any parsing work.
        if self.guard.check_banned(flow.remote.ip(), now) {
            return false;
        }
        match parse_message(data, &self.config.limits) {
            Ok(Message::Request(request)) => {
                self.stats.requests += 1;
                self.on_request(now, flow, request);
            }
            Ok(Message::Response(response)) => {
                self.stats.responses += 1;
                self.on_response(now, flow, response);
            }
            Err(rejection) => {
                self.stats.rejected += 1;
                self.on_rejected(flow, &rejection, &rejection.error.to_string());
            }
        }
        true
    }

    /// Handles a stream that could not be framed: the request (if it is one)
    /// is answered; the caller then closes the connection.
    pub fn handle_frame_error(&mut self, flow: Flow, error: &FramingError, head: &[u8]) {
        self.stats.rejected += 1;
        let mut rejection = match parse_message(head, &self.config.limits) {
            Err(rejection) => rejection,
            Ok(message) => Rejection {
                error: crate::message::ParseError::BadStartLine,
                looks_like_request: matches!(message, Message::Request(_)),
                method: match &message {
                    Message::Request(r) => Some(r.method.to_string()),
                    Message::Response(_) => None,
                },
                envelope: match &message {
                    Message::Request(r) => r.headers.clone(),
                    Message::Response(r) => r.headers.clone(),
                },
            },
        };
        let status = match error {
            FramingError::TooLarge { .. } => 513,
            _ => 400,
        };
        rejection.error = match error {
            FramingError::TooLarge { max } => crate::message::ParseError::TooLarge {
                size: head.len(),
                max: *max,
            },
            _ => rejection.error,
        };
        let detail = error.to_string();
        if rejection.is_answerable() {
            let spec = ResponseSpec::new(status).header(HeaderName::Warning, self.warning(&detail));
            self.send_stateless(flow, &rejection.envelope, &spec);
        }
        info!(peer = %flow.remote, transport = flow.transport.as_str(), error = %detail, "stream framing error; closing connection");
    }

    /// Answers a CRLFCRLF keep-alive ping with a CRLF pong (RFC 5626).
    pub fn handle_keepalive(&mut self, flow: Flow) {
        self.transmits.push_back(Transmit {
            destination: Destination::Flow(flow),
            payload: Bytes::from_static(b"\r\n"),
        });
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, _), (target, kind)) = entry.remove_entry();
            match target {
                TxnRef::Server(id) => self.on_server_timer(now, id, kind, at),
                TxnRef::Client(id) => self.on_client_timer(now, id, kind, at),
            }
        }
    }

    // ----- server side -------------------------------------------------

    fn on_request(&mut self, now: Instant, flow: Flow, request: Request) {
        let Some(key) = TxnKey::of(&request) else {
            return;
        };
        if request.method == Method::Ack {
            self.on_ack(now, flow, key, request);
            return;
        }
        if let Some(&id) = self.server_index.get(&key) {
            self.stats.retransmissions_absorbed += 1;
            if let Some(txn) = self.server.get(&id) {
                if let Some(payload) = txn.last_response.clone() {
                    self.transmits.push_back(Transmit {
                        destination: Destination::Flow(txn.flow),
                        payload,
                    });
                }
            }
            return;
        }
        let new_invite =
            request.method == Method::Invite && request.to().is_none_or(|t| t.tag().is_none());
        let user_agent = request.headers.get(&HeaderName::UserAgent);
        if let Err(refused) = self
            .guard
            .admit(flow.remote.ip(), now, new_invite, user_agent)
        {
            // Silence: an answer would only feed the flood or the scanner.
            debug!(peer = %flow.remote, method = %request.method, ?refused, "request dropped by the source guard");
            return;
        }
        if self.server.len() + self.client.len() >= self.config.max_transactions {
            warn!(peer = %flow.remote, "transaction limit reached; refusing request");
            let spec = ResponseSpec::new(503).reason("Overloaded").header(
                HeaderName::RetryAfter,
                self.config.retry_after_secs.to_string(),
            );
            self.send_stateless(flow, &request.headers, &spec);
            return;
        }
        if request.method == Method::Cancel {
            let Some(invite_id) = self.invite_cancelled_by(&key) else {
                // Nothing to cancel: no state is kept for it (see below).
                let tag = stateless_tag(&key);
                let spec = ResponseSpec::new(481).reason("Call/Transaction Does Not Exist");
                self.send_stateless_tagged(flow, &request.headers, &spec, &tag);
                return;
            };
            let id = self.create_server_txn(key, flow, request);
            self.on_cancel(now, id, invite_id);
            return;
        }
        let dialog = match self.verdict(&flow, &request) {
            Verdict::Deliver(dialog) => dialog,
            Verdict::Respond(spec) => {
                // Everything the core refuses on its own (OPTIONS pings, 481 for
                // unknown dialogs, 405/501/415/420/416/482, drain) is answered
                // statelessly (RFC 3261 §8.2.7): a transaction would linger 32 s
                // (Timer J) per request over UDP and retransmit its answer to a
                // source nobody verified, so a flood of forged requests could
                // fill the table real calls need and be reflected ten times
                // over. One request in, one response out. The To tag is derived
                // from the transaction key, so a retransmission gets the same
                // answer.
                if request.method == Method::Options {
                    debug!(call_id = ?request.call_id(), status = spec.status, peer = %flow.remote, "OPTIONS answered statelessly");
                } else {
                    info!(call_id = ?request.call_id(), method = %request.method, status = spec.status, peer = %flow.remote, "request answered by the SIP core");
                }
                let tag = stateless_tag(&key);
                self.send_stateless_tagged(flow, &request.headers, &spec, &tag);
                return;
            }
        };
        let method = request.method.clone();
        let id = self.create_server_txn(key, flow, request);
        if method == Method::Invite {
            // 100 Trying only if the transaction user is slow: a
            // refusal or challenge given at once then goes out
            // alone, the client keeps retransmitting the INVITE
            // (Timer A) until it has it, and we need not send the
            // final response again and again (Timer G) to a source
            // nobody verified.
            let delay = self.config.trying_delay;
            if delay.is_zero() {
                self.respond_internal(now, id, &ResponseSpec::new(100));
            } else {
                self.arm(TxnRef::Server(id), TimerKind::Trying, now + delay);
            }
        }
        if let Some(txn) = self.server.get_mut(&id) {
            txn.delivered = true;
            let incoming = Incoming {
                txn: id,
                request: txn.request.clone(),
                flow,
                dialog,
            };
            self.events.push_back(Event::Request(incoming));
        }
    }

    fn create_server_txn(&mut self, key: TxnKey, flow: Flow, request: Request) -> ServerTxnId {
        let id = ServerTxnId(self.next_id);
        self.next_id += 1;
        let is_invite = request.method == Method::Invite;
        let merge_key = self.merge_key_of(&request);
        if let Some(merge_key) = &merge_key {
            self.merge_index.entry(merge_key.clone()).or_insert(id);
        }
        self.server_index.insert(key.clone(), id);
        self.server.insert(
            id,
            ServerTxn {
                key,
                merge_key,
                is_invite,
                state: if is_invite {
                    ServerState::Proceeding
                } else {
                    ServerState::Trying
                },
                flow,
                request,
                local_tag: random_token(16),
                last_response: None,
                last_status: 0,
                retransmit_interval: self.config.timers.t1,
                acked: false,
                deadlines: [None; TIMER_KINDS],
                delivered: false,
                provisional_sent: false,
            },
        );
        id
    }

    fn merge_key_of(&self, request: &Request) -> Option<MergeKey> {
        let to_has_tag = request.to().is_some_and(|t| t.tag().is_some());
        if to_has_tag || matches!(request.method, Method::Ack | Method::Cancel) {
            return None;
        }
        Some(MergeKey {
            from_tag: request.from()?.tag()?.to_string(),
            call_id: request.call_id()?.to_string(),
            cseq: request.cseq()?.seq,
            method: request.method.to_string(),
        })
    }

    /// The UAS core checks of RFC 3261 §8.2, in the order it gives them.
    fn verdict(&mut self, flow: &Flow, request: &Request) -> Verdict {
        let method = &request.method;
        if !self.config.allow.contains(method) {
            let status = if matches!(method, Method::Extension(_)) {
                501
            } else {
                405
            };
            return Verdict::Respond(
                ResponseSpec::new(status).header(HeaderName::Allow, self.allow_header()),
            );
        }
        match request.parsed_uri() {
            Ok(Uri::Sip(_)) | Ok(Uri::Tel(_)) => {}
            Ok(Uri::Other { .. }) | Err(_) => {
                return Verdict::Respond(ResponseSpec::new(416));
            }
        }
        let to_tag = request.to().and_then(|t| t.tag().map(str::to_string));
        let mut dialog = None;
        if let Some(to_tag) = to_tag {
            let id = DialogId {
                call_id: request.call_id().unwrap_or_default().to_string(),
                local_tag: to_tag,
                remote_tag: request
                    .from()
                    .and_then(|f| f.tag().map(str::to_string))
                    .unwrap_or_default(),
            };
            let bind = self.config.bind_dialogs_to_peer;
            let Some(found) = self.dialogs.get_mut(&id) else {
                return Verdict::Respond(
                    ResponseSpec::new(481).reason("Call/Transaction Does Not Exist"),
                );
            };
            if bind && !from_dialog_peer(found, flow) {
                warn!(call_id = %id.call_id, method = %method, peer = %flow.remote, dialog_peer = %found.flow.remote, "in-dialog request from a source that is not the dialog's peer refused");
                return Verdict::Respond(
                    ResponseSpec::new(403).reason("Not From The Dialog's Peer"),
                );
            }
            if let Some(cseq) = request.cseq() {
                if let Err(e) = found.accept_remote_cseq(cseq.seq, method) {
                    return Verdict::Respond(ResponseSpec::new(500).reason(e.to_string()));
                }
            }
            dialog = Some(id);
        } else {
            if matches!(
                method,
                Method::Bye
                    | Method::Info
                    | Method::Update
                    | Method::Refer
                    | Method::Notify
                    | Method::Prack
            ) {
                return Verdict::Respond(
                    ResponseSpec::new(481).reason("Call/Transaction Does Not Exist"),
                );
            }
            if let Some(merge_key) = self.merge_key_of(request) {
                let key = TxnKey::of(request);
                let merged = self
                    .merge_index
                    .get(&merge_key)
                    .and_then(|id| self.server.get(id))
                    .is_some_and(|other| Some(&other.key) != key.as_ref());
                if merged {
                    return Verdict::Respond(ResponseSpec::new(482));
                }
            }
        }
        let unsupported: Vec<String> = request
            .headers
            .get_all(&HeaderName::Require)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .filter(|tag| {
                !self
                    .config
                    .supported
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(tag))
            })
            .map(str::to_string)
            .collect();
        if !unsupported.is_empty() && *method != Method::Cancel {
            return Verdict::Respond(
                ResponseSpec::new(420).header(HeaderName::Unsupported, unsupported.join(", ")),
            );
        }
        if let Some(spec) = self.content_verdict(request) {
            return Verdict::Respond(spec);
        }
        if dialog.is_none() && self.draining && matches!(method, Method::Invite | Method::Options) {
            return Verdict::Respond(ResponseSpec::new(503).reason("Draining").header(
                HeaderName::RetryAfter,
                self.config.retry_after_secs.to_string(),
            ));
        }
        if dialog.is_none() && *method == Method::Options {
            return Verdict::Respond(self.options_response());
        }
        Verdict::Deliver(dialog)
    }

    /// RFC 3261 §8.2.3: bodies we cannot understand get 415. An INVITE whose
    /// Accept rules out SDP leaves no body type our answer could carry:
    /// 406 with a Warning 399, as RFC 4475 §3.3.15 (sdp01) suggests.
    fn content_verdict(&self, request: &Request) -> Option<ResponseSpec> {
        let accepted: &[&str] = match request.method {
            Method::Invite | Method::Update | Method::Ack | Method::Prack => {
                &["application/sdp", "multipart/mixed"]
            }
            Method::Info => &["application/dtmf-relay", "application/dtmf"],
            Method::Notify => &["message/sipfrag"],
            _ => &[],
        };
        if !request.body.is_empty() && !accepted.is_empty() {
            if let Some(encoding) = request.headers.get(&HeaderName::ContentEncoding) {
                if !encoding.trim().eq_ignore_ascii_case("identity") {
                    return Some(
                        ResponseSpec::new(415)
                            .header(HeaderName::Other("Accept-Encoding".into()), "identity"),
                    );
                }
            }
            let content_type = request
                .headers
                .get(&HeaderName::ContentType)
                .and_then(media_type)
                .unwrap_or_default();
            if !accepted.contains(&content_type.as_str()) {
                return Some(
                    ResponseSpec::new(415).header(HeaderName::Accept, accepted.join(", ")),
                );
            }
        }
        if request.method == Method::Invite && request.headers.contains(&HeaderName::Accept) {
            let sdp_acceptable = request
                .headers
                .list(&HeaderName::Accept)
                .filter_map(media_type)
                .any(|t| t == "application/sdp" || t == "application/*" || t == "*/*");
            if !sdp_acceptable {
                return Some(ResponseSpec::new(406).header(
                    HeaderName::Warning,
                    self.warning("Accept excludes application/sdp; no answer can carry a session"),
                ));
            }
        }
        None
    }

    fn options_response(&self) -> ResponseSpec {
        ResponseSpec::new(200)
            .header(HeaderName::Allow, self.allow_header())
            .header(HeaderName::Accept, "application/sdp")
            .header(HeaderName::Supported, self.config.supported.join(", "))
    }

    fn allow_header(&self) -> String {
        self.config
            .allow
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn warning(&self, text: &str) -> String {
        let text: String = text.chars().filter(|c| *c != '"' && *c != '\\').collect();
        format!("399 {} \"{}\"", self.config.advertised_host, text)
    }

    /// The INVITE transaction a CANCEL with this key is for, if any.
    fn invite_cancelled_by(&self, cancel_key: &TxnKey) -> Option<ServerTxnId> {
        let invite_key = cancel_key.with_method(MethodClass::Invite);
        self.server_index
            .get(&invite_key)
            .copied()
            .filter(|id| self.server.get(id).is_some_and(|t| t.is_invite))
    }

    /// A CANCEL for a known INVITE: 200, and 487 for the INVITE while it is
    /// still pending.
    fn on_cancel(&mut self, now: Instant, cancel_id: ServerTxnId, invite_id: ServerTxnId) {
        self.respond_internal(now, cancel_id, &ResponseSpec::new(200));
        let Some(invite) = self.server.get(&invite_id) else {
            return;
        };
        if invite.state != ServerState::Proceeding {
            return;
        }
        let delivered = invite.delivered;
        self.respond_internal(now, invite_id, &ResponseSpec::new(487));
        if delivered {
            self.events.push_back(Event::Cancelled { txn: invite_id });
        }
    }

    fn on_ack(&mut self, now: Instant, flow: Flow, key: TxnKey, request: Request) {
        let to_tag = request.to().and_then(|t| t.tag().map(str::to_string));
        if let Some(&id) = self.server_index.get(&key) {
            let t4 = self.config.timers.t4;
            let Some(txn) = self.server.get_mut(&id) else {
                return;
            };
            let tag_matches = match &key {
                TxnKey::Rfc2543 { .. } => to_tag.as_deref() == Some(txn.local_tag.as_str()),
                TxnKey::Rfc3261 { .. } => true,
            };
            if tag_matches {
                match txn.state {
                    ServerState::Completed => {
                        txn.state = ServerState::Confirmed;
                        txn.deadlines = [None; TIMER_KINDS];
                        let linger = if txn.flow.transport.is_reliable() {
                            Duration::ZERO
                        } else {
                            t4
                        };
                        self.arm(TxnRef::Server(id), TimerKind::Linger, now + linger);
                    }
                    ServerState::Accepted if !txn.acked => {
                        txn.acked = true;
                        txn.deadlines[TimerKind::ResponseRetransmit.index()] = None;
                        self.events.push_back(Event::Ack {
                            txn: Some(id),
                            request,
                            flow,
                        });
                    }
                    _ => {}
                }
                return;
            }
        }
        // The ACK for a 2xx is a new transaction (RFC 3261 §17.1.1.3): find
        // the accepted INVITE by dialog and sequence number.
        let (Some(call_id), Some(cseq), Some(to_tag)) = (request.call_id(), request.cseq(), to_tag)
        else {
            return;
        };
        let accepted = self
            .accepted_index
            .get(&(call_id.to_string(), to_tag.clone(), cseq.seq))
            .copied();
        if let Some(id) = accepted {
            if let Some(txn) = self.server.get_mut(&id) {
                if !txn.acked {
                    txn.acked = true;
                    txn.deadlines[TimerKind::ResponseRetransmit.index()] = None;
                    self.events.push_back(Event::Ack {
                        txn: Some(id),
                        request,
                        flow,
                    });
                }
            }
            return;
        }
        let dialog = DialogId {
            call_id: call_id.to_string(),
            local_tag: to_tag,
            remote_tag: request
                .from()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default(),
        };
        if self.dialogs.contains_key(&dialog) {
            self.events.push_back(Event::Ack {
                txn: None,
                request,
                flow,
            });
        } else {
            debug!(call_id = ?call_id, "ACK matches no transaction or dialog; absorbed");
        }
    }

    /// Sends a response for a server transaction and moves it on.
    pub fn respond(
        &mut self,
        now: Instant,
        txn: ServerTxnId,
        spec: ResponseSpec,
    ) -> Result<(), RespondError> {
        if !(100..=699).contains(&spec.status) {
            return Err(RespondError::InvalidStatus);
        }
        let state = self
            .server
            .get(&txn)
            .map(|t| (t.state, t.is_invite))
            .ok_or(RespondError::UnknownTransaction)?;
        let may_respond = match state {
            (ServerState::Trying | ServerState::Proceeding, _) => true,
            // RFC 6026: further 2xx for an accepted INVITE are passed on.
            (ServerState::Accepted, true) => (200..300).contains(&spec.status),
            _ => false,
        };
        if !may_respond {
            return Err(RespondError::AlreadyFinal);
        }
        self.respond_internal(now, txn, &spec);
        Ok(())
    }

    fn respond_internal(&mut self, now: Instant, id: ServerTxnId, spec: &ResponseSpec) {
        let timers = self.config.timers;
        let user_agent = self.config.user_agent.clone();
        let Some(txn) = self.server.get_mut(&id) else {
            return;
        };
        let response = ResponseBuilder {
            request_headers: &txn.request.headers,
            source: Some(txn.flow.remote),
            local_tag: Some(&txn.local_tag),
            server: Some(&user_agent),
        }
        .build(spec);
        let payload = response.to_bytes();
        txn.last_response = Some(payload.clone());
        txn.last_status = spec.status;
        self.transmits.push_back(Transmit {
            destination: Destination::Flow(txn.flow),
            payload,
        });
        let reliable = txn.flow.transport.is_reliable();
        let status = spec.status;
        let mut arm: Vec<(TimerKind, Instant)> = Vec::new();
        if status < 200 {
            txn.provisional_sent = true;
            if txn.state == ServerState::Trying {
                txn.state = ServerState::Proceeding;
            }
        } else if txn.is_invite && status < 300 {
            if txn.state != ServerState::Accepted {
                txn.state = ServerState::Accepted;
                txn.retransmit_interval = timers.t1;
                if !reliable {
                    arm.push((TimerKind::ResponseRetransmit, now + timers.t1));
                }
                arm.push((TimerKind::AckWait, now + timers.t1 * 64));
                if let (Some(call_id), Some(cseq)) = (txn.request.call_id(), txn.request.cseq()) {
                    self.accepted_index
                        .insert((call_id.to_string(), txn.local_tag.clone(), cseq.seq), id);
                }
            }
        } else if txn.is_invite {
            txn.state = ServerState::Completed;
            txn.retransmit_interval = timers.t1;
            // Without a provisional response the client is still
            // retransmitting (Calling, Timer A) and gets this answer again
            // each time: Timer G would only multiply what we send.
            if !reliable && txn.provisional_sent {
                arm.push((TimerKind::ResponseRetransmit, now + timers.t1));
            }
            arm.push((TimerKind::AckWait, now + timers.t1 * 64));
        } else {
            txn.state = ServerState::Completed;
            let linger = if reliable {
                Duration::ZERO
            } else {
                timers.t1 * 64
            };
            arm.push((TimerKind::Linger, now + linger));
        }
        for (kind, at) in arm {
            self.arm(TxnRef::Server(id), kind, at);
        }
    }

    fn on_server_timer(&mut self, now: Instant, id: ServerTxnId, kind: TimerKind, at: Instant) {
        let t2 = self.config.timers.t2;
        let Some(txn) = self.server.get_mut(&id) else {
            return;
        };
        if txn.deadlines[kind.index()] != Some(at) {
            return;
        }
        txn.deadlines[kind.index()] = None;
        match kind {
            TimerKind::ResponseRetransmit => {
                let resend = match txn.state {
                    ServerState::Completed => true,
                    ServerState::Accepted => !txn.acked,
                    _ => false,
                };
                if resend {
                    if let Some(payload) = txn.last_response.clone() {
                        self.transmits.push_back(Transmit {
                            destination: Destination::Flow(txn.flow),
                            payload,
                        });
                    }
                    txn.retransmit_interval = (txn.retransmit_interval * 2).min(t2);
                    let next = now + txn.retransmit_interval;
                    self.arm(TxnRef::Server(id), TimerKind::ResponseRetransmit, next);
                }
            }
            TimerKind::AckWait => {
                match txn.state {
                    ServerState::Completed => {
                        debug!(call_id = ?txn.request.call_id(), "no ACK for final response (Timer H)");
                    }
                    ServerState::Accepted if !txn.acked => {
                        warn!(call_id = ?txn.request.call_id(), "2xx never acknowledged (Timer L)");
                        self.events.push_back(Event::AckTimeout { txn: id });
                    }
                    _ => {}
                }
                self.terminate_server(id);
            }
            TimerKind::Linger => self.terminate_server(id),
            TimerKind::Trying => {
                if txn.state == ServerState::Proceeding && !txn.provisional_sent {
                    self.respond_internal(now, id, &ResponseSpec::new(100));
                }
            }
            TimerKind::Retransmit | TimerKind::Timeout => {}
        }
    }

    fn terminate_server(&mut self, id: ServerTxnId) {
        if let Some(txn) = self.server.remove(&id) {
            if self.server_index.get(&txn.key) == Some(&id) {
                self.server_index.remove(&txn.key);
            }
            if let Some(merge_key) = &txn.merge_key {
                if self.merge_index.get(merge_key) == Some(&id) {
                    self.merge_index.remove(merge_key);
                }
            }
            if let (Some(call_id), Some(cseq)) = (txn.request.call_id(), txn.request.cseq()) {
                let key = (call_id.to_string(), txn.local_tag.clone(), cseq.seq);
                if self.accepted_index.get(&key) == Some(&id) {
                    self.accepted_index.remove(&key);
                }
            }
            give_back_spare(&mut self.server);
            give_back_spare(&mut self.server_index);
            give_back_spare(&mut self.merge_index);
            give_back_spare(&mut self.accepted_index);
        }
    }

    /// Answers a request without a transaction: rejections of malformed
    /// requests and overload refusals.
    fn send_stateless(&mut self, flow: Flow, request_headers: &Headers, spec: &ResponseSpec) {
        self.send_stateless_tagged(flow, request_headers, spec, &random_token(16));
    }

    fn send_stateless_tagged(
        &mut self,
        flow: Flow,
        request_headers: &Headers,
        spec: &ResponseSpec,
        tag: &str,
    ) {
        let response = ResponseBuilder {
            request_headers,
            source: Some(flow.remote),
            local_tag: Some(tag),
            server: Some(&self.config.user_agent),
        }
        .build(spec);
        self.transmits.push_back(Transmit {
            destination: Destination::Flow(flow),
            payload: response.to_bytes(),
        });
    }

    fn on_rejected(&mut self, flow: Flow, rejection: &Rejection, detail: &str) {
        let call_id = rejection
            .envelope
            .get(&HeaderName::CallId)
            .unwrap_or_default();
        if rejection.is_answerable() {
            let status = rejection.error.status();
            info!(call_id = ?call_id, status, error = %detail, peer = %flow.remote, "malformed request rejected");
            let mut spec =
                ResponseSpec::new(status).header(HeaderName::Warning, self.warning(detail));
            if status == 501 {
                // A method we do not implement: say which we do (§8.2.1).
                spec = spec.header(HeaderName::Allow, self.allow_header());
            }
            let envelope = rejection.envelope.clone();
            self.send_stateless(flow, &envelope, &spec);
        } else {
            debug!(call_id = ?call_id, error = %detail, peer = %flow.remote, "malformed message dropped");
        }
    }

    // ----- client side -------------------------------------------------

    /// Sends a request in a new client transaction. The endpoint adds the
    /// top Via (with a fresh branch) and Max-Forwards when missing; the
    /// caller provides Request-URI, From, To, Call-ID, CSeq and the rest.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        destination: Destination,
    ) -> ClientTxnId {
        let branch = format!("{}{}", crate::message::MAGIC_COOKIE, random_token(22));
        let request = self.with_via(request, destination, &branch);
        self.start_client(now, request, destination, branch)
    }

    /// Sends the ACK for a 2xx (a transaction of its own, never
    /// retransmitted by the endpoint: the dialog resends it when the 2xx
    /// is retransmitted).
    pub fn send_ack(&mut self, request: Request, destination: Destination) {
        let branch = format!("{}{}", crate::message::MAGIC_COOKIE, random_token(22));
        let request = self.with_via(request, destination, &branch);
        self.transmits.push_back(Transmit {
            destination,
            payload: request.to_bytes(),
        });
    }

    /// Cancels a pending INVITE (RFC 3261 §9.1). Before a provisional
    /// response arrives the CANCEL waits for one. Returns false when the
    /// transaction is not a pending INVITE.
    pub fn cancel(&mut self, now: Instant, txn: ClientTxnId) -> bool {
        let Some(invite) = self.client.get_mut(&txn) else {
            return false;
        };
        if !invite.is_invite
            || !matches!(invite.state, ClientState::Calling | ClientState::Proceeding)
            || invite.cancel_requested
        {
            return false;
        }
        invite.cancel_requested = true;
        if invite.got_provisional {
            self.send_cancel(now, txn);
        }
        true
    }

    fn send_cancel(&mut self, now: Instant, txn: ClientTxnId) {
        let Some(invite) = self.client.get(&txn) else {
            return;
        };
        let mut headers = Headers::new();
        if let Some(via) = invite.request.headers.list(&HeaderName::Via).next() {
            headers.push(HeaderName::Via, via);
        }
        for route in invite.request.headers.get_all(&HeaderName::Route) {
            headers.push(HeaderName::Route, route);
        }
        headers.push(HeaderName::MaxForwards, "70");
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            if let Some(value) = invite.request.headers.get(&name) {
                headers.push(name, value);
            }
        }
        let seq = invite.request.cseq().map(|c| c.seq).unwrap_or(1);
        headers.push(HeaderName::CSeq, format!("{seq} CANCEL"));
        let cancel = Request {
            method: Method::Cancel,
            uri: invite.request.uri.clone(),
            headers,
            body: Bytes::new(),
        };
        let (destination, branch) = (invite.destination, invite.branch.clone());
        self.start_client(now, cancel, destination, branch);
    }

    fn with_via(&self, mut request: Request, destination: Destination, branch: &str) -> Request {
        let transport = destination.transport();
        let port = self.config.advertised_ports.for_transport(transport);
        let via = format!(
            "SIP/2.0/{} {}:{};branch={};rport",
            transport.as_str(),
            self.config.advertised_host,
            port,
            branch
        );
        let mut headers = Headers::new();
        headers.push(HeaderName::Via, via);
        if !request.headers.contains(&HeaderName::MaxForwards) {
            headers.push(HeaderName::MaxForwards, "70");
        }
        for field in request.headers.iter() {
            headers.push(field.name.clone(), field.value.clone());
        }
        request.headers = headers;
        request
    }

    fn start_client(
        &mut self,
        now: Instant,
        request: Request,
        destination: Destination,
        branch: String,
    ) -> ClientTxnId {
        let id = ClientTxnId(self.next_id);
        self.next_id += 1;
        let timers = self.config.timers;
        let reliable = destination.transport().is_reliable();
        let is_invite = request.method == Method::Invite;
        let class = MethodClass::of(&request.method);
        let payload = request.to_bytes();
        self.transmits.push_back(Transmit {
            destination,
            payload: payload.clone(),
        });
        self.client.insert(
            id,
            ClientTxn {
                branch: branch.clone(),
                is_invite,
                state: if is_invite {
                    ClientState::Calling
                } else {
                    ClientState::Trying
                },
                request,
                payload,
                destination,
                reliable,
                retransmit_interval: timers.t1,
                deadlines: [None; TIMER_KINDS],
                cancel_requested: false,
                got_provisional: false,
                ack: None,
            },
        );
        self.client_index.insert((branch, class), id);
        if !reliable {
            self.arm(TxnRef::Client(id), TimerKind::Retransmit, now + timers.t1);
        }
        self.arm(TxnRef::Client(id), TimerKind::Timeout, now + timers.t1 * 64);
        id
    }

    fn on_response(&mut self, now: Instant, flow: Flow, response: Response) {
        let branch = response
            .top_via()
            .and_then(|v| v.branch().map(str::to_string));
        let class = response.cseq().map(|c| MethodClass::of(&c.method));
        let id = match (branch, class) {
            (Some(branch), Some(class)) => self.client_index.get(&(branch, class)).copied(),
            _ => None,
        };
        let Some(id) = id else {
            self.stats.stray_responses += 1;
            debug!(call_id = ?response.call_id(), status = response.status, "response matches no transaction; dropped");
            return;
        };
        let timers = self.config.timers;
        let Some(txn) = self.client.get_mut(&id) else {
            return;
        };
        let status = response.status;
        let mut arm: Vec<(TimerKind, Instant)> = Vec::new();
        let mut deliver = true;
        let mut send_cancel = false;
        if txn.is_invite {
            match (txn.state, status) {
                (ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                    txn.state = ClientState::Proceeding;
                    txn.deadlines[TimerKind::Retransmit.index()] = None;
                    txn.deadlines[TimerKind::Timeout.index()] = None;
                    if !txn.got_provisional && txn.cancel_requested {
                        send_cancel = true;
                    }
                    txn.got_provisional = true;
                }
                (ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                    txn.state = ClientState::Accepted;
                    txn.deadlines = [None; TIMER_KINDS];
                    arm.push((TimerKind::Linger, now + timers.t1 * 64));
                }
                (ClientState::Accepted, 200..=299) => {}
                (ClientState::Calling | ClientState::Proceeding, _) => {
                    let ack = build_non2xx_ack(&txn.request, &response);
                    self.transmits.push_back(Transmit {
                        destination: txn.destination,
                        payload: ack.clone(),
                    });
                    txn.ack = Some(ack);
                    txn.state = ClientState::Completed;
                    txn.deadlines = [None; TIMER_KINDS];
                    let linger = if txn.reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32)
                    };
                    arm.push((TimerKind::Linger, now + linger));
                }
                (ClientState::Completed, 300..=699) => {
                    if let Some(ack) = txn.ack.clone() {
                        self.transmits.push_back(Transmit {
                            destination: txn.destination,
                            payload: ack,
                        });
                    }
                    deliver = false;
                }
                _ => deliver = false,
            }
        } else {
            match (txn.state, status) {
                (ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                    txn.state = ClientState::Proceeding;
                }
                (ClientState::Trying | ClientState::Proceeding, _) => {
                    txn.state = ClientState::Completed;
                    txn.deadlines = [None; TIMER_KINDS];
                    let linger = if txn.reliable {
                        Duration::ZERO
                    } else {
                        timers.t4
                    };
                    arm.push((TimerKind::Linger, now + linger));
                }
                _ => deliver = false,
            }
        }
        for (kind, at) in arm {
            self.arm(TxnRef::Client(id), kind, at);
        }
        if send_cancel {
            self.send_cancel(now, id);
        }
        if deliver {
            self.events.push_back(Event::Response {
                txn: id,
                response,
                flow,
            });
        }
    }

    fn on_client_timer(&mut self, now: Instant, id: ClientTxnId, kind: TimerKind, at: Instant) {
        let timers = self.config.timers;
        let Some(txn) = self.client.get_mut(&id) else {
            return;
        };
        if txn.deadlines[kind.index()] != Some(at) {
            return;
        }
        txn.deadlines[kind.index()] = None;
        let active = matches!(
            txn.state,
            ClientState::Calling | ClientState::Trying | ClientState::Proceeding
        );
        match kind {
            TimerKind::Retransmit if active => {
                self.transmits.push_back(Transmit {
                    destination: txn.destination,
                    payload: txn.payload.clone(),
                });
                txn.retransmit_interval = if txn.is_invite {
                    txn.retransmit_interval * 2
                } else if txn.state == ClientState::Proceeding {
                    timers.t2
                } else {
                    (txn.retransmit_interval * 2).min(timers.t2)
                };
                let next = now + txn.retransmit_interval;
                self.arm(TxnRef::Client(id), TimerKind::Retransmit, next);
            }
            TimerKind::Timeout if active => {
                self.events.push_back(Event::RequestFailed {
                    txn: id,
                    reason: RequestFailure::Timeout,
                });
                self.terminate_client(id);
            }
            TimerKind::Linger => self.terminate_client(id),
            _ => {}
        }
    }

    /// The transport could not deliver to `destination` (connection refused
    /// or lost): every request in flight there fails.
    pub fn transport_failed(&mut self, destination: Destination) {
        let failed: Vec<ClientTxnId> = self
            .client
            .iter()
            .filter(|(_, t)| {
                t.destination.affected_by(&destination)
                    && matches!(
                        t.state,
                        ClientState::Calling | ClientState::Trying | ClientState::Proceeding
                    )
            })
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            self.events.push_back(Event::RequestFailed {
                txn: id,
                reason: RequestFailure::Transport,
            });
            self.terminate_client(id);
        }
    }

    fn terminate_client(&mut self, id: ClientTxnId) {
        if let Some(txn) = self.client.remove(&id) {
            let key = (txn.branch.clone(), MethodClass::of(&txn.request.method));
            if self.client_index.get(&key) == Some(&id) {
                self.client_index.remove(&key);
            }
            give_back_spare(&mut self.client);
            give_back_spare(&mut self.client_index);
        }
    }

    fn arm(&mut self, target: TxnRef, kind: TimerKind, at: Instant) {
        let deadlines = match target {
            TxnRef::Server(id) => self.server.get_mut(&id).map(|t| &mut t.deadlines),
            TxnRef::Client(id) => self.client.get_mut(&id).map(|t| &mut t.deadlines),
        };
        if let Some(deadlines) = deadlines {
            deadlines[kind.index()] = Some(at);
            self.timer_seq += 1;
            self.timers.insert((at, self.timer_seq), (target, kind));
        }
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same
/// Request-URI, top Via, From, Call-ID and Route as the INVITE, the
/// response's To, CSeq number with method ACK.
fn build_non2xx_ack(invite: &Request, response: &Response) -> Bytes {
    let mut headers = Headers::new();
    if let Some(via) = invite.headers.list(&HeaderName::Via).next() {
        headers.push(HeaderName::Via, via);
    }
    for route in invite.headers.get_all(&HeaderName::Route) {
        headers.push(HeaderName::Route, route);
    }
    headers.push(HeaderName::MaxForwards, "70");
    if let Some(from) = invite.headers.get(&HeaderName::From) {
        headers.push(HeaderName::From, from);
    }
    if let Some(to) = response.headers.get(&HeaderName::To) {
        headers.push(HeaderName::To, to);
    }
    if let Some(call_id) = invite.headers.get(&HeaderName::CallId) {
        headers.push(HeaderName::CallId, call_id);
    }
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(1);
    headers.push(HeaderName::CSeq, format!("{seq} ACK"));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
    .to_bytes()
}

/// Whether a request on `flow` comes from the dialog's peer: on its
/// connection, from its address, or from an IP address its Contact or route
/// set names (a carrier's SBC may send a BYE from its proxy, or a NATed
/// phone from a new port). Names are not resolved here: a peer that sends
/// from an address it never named is refused.
fn from_dialog_peer(dialog: &Dialog, flow: &Flow) -> bool {
    if flow.connection.is_some() && flow.connection == dialog.flow.connection {
        return true;
    }
    let ip = flow.remote.ip().to_canonical();
    if ip == dialog.flow.remote.ip().to_canonical() {
        return true;
    }
    let named_ip = |text: &str| -> Option<std::net::IpAddr> {
        let uri = match NameAddr::parse(text) {
            Ok(name_addr) => name_addr.uri,
            Err(_) => Uri::parse(text).ok()?,
        };
        match &uri.as_sip()?.host {
            Host::Ip(ip) => Some(ip.to_canonical()),
            Host::Name(_) => None,
        }
    };
    std::iter::once(dialog.remote_target.as_str())
        .chain(dialog.route_set.iter().map(String::as_str))
        .filter_map(named_ip)
        .any(|named| named == ip)
}

/// Shrinks a table that a burst grew and that is now mostly empty. A
/// hash map keeps its largest capacity, and the transaction table's slots
/// are large: 40,000 transactions of a 500 calls/s burst kept about 30 MB
/// after the calls had ended. Shrinking to twice the entries once they
/// fill under a quarter keeps the cost per removal constant (amortised).
pub(crate) fn give_back_spare<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    /// Small tables are left alone: their spare room is cheap to keep.
    const KEPT_CAPACITY: usize = 1024;
    if map.capacity() > KEPT_CAPACITY && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len().saturating_mul(2).max(KEPT_CAPACITY));
    }
}

#[cfg(test)]
mod tests;

/// A To tag that is the same for every retransmission of one request, for
/// stateless answers. `DefaultHasher::new()` has fixed keys: stable within
/// one binary, which is all a retransmission needs; the tag is not secret.
fn stateless_tag(key: &TxnKey) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
