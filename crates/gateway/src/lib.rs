//! Call control for switchboard: the B2BUA between SIP legs and rooms.
//!
//! The gateway is the SIP stack's transaction user. The SIP core has
//! already answered everything that needs no policy (OPTIONS, CANCEL,
//! malformed and out-of-dialog requests, drain); what reaches the gateway
//! is a new INVITE, or a request, ACK or response that belongs to a call.
//!
//! [`Gateway::run`] is the dispatcher: each new INVITE becomes a call task
//! ([`inbound`]), and every later SIP event is routed to its call by the
//! INVITE's server transaction, the dialog, or the client transaction the
//! call started. A call owns its media session (on a [`MediaPool`] worker),
//! its room participant, its timers and its dialog; when its task ends,
//! everything it held is released.

mod actions;
mod bridge;
mod call;
mod deadlines;
mod driver;
mod inbound;
mod info_dtmf;
mod machine;
mod media_config;
mod metrics;
mod outbound;
mod prompts;
mod records;
mod refusal;
mod room_rpc;
mod session_timer;
mod status;
mod stream;
mod trace;

pub use info_dtmf::parse_info_dtmf;
pub use metrics::GatewayMetrics;
pub use outbound::{DialError, DialRequest, DialStarted};
pub use prompts::Prompt;
pub use records::CallRecords;
pub use refusal::Refusal;
pub use status::CallStatus;
pub use stream::{
    StreamsConfig, PARAM_PREFIX as STREAM_PARAM_PREFIX, PROTOCOL_KEY as STREAM_PROTOCOL_KEY,
    URL_KEY as STREAM_URL_KEY,
};
pub use trace::{SipTraces, TraceConfig};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use switchboard_media::driver::MediaWorker;
use switchboard_media::ports::{PortAllocator, PortConfig, PortError};
use switchboard_media::session::SessionConfig;
use switchboard_rooms::Rooms;
use switchboard_routing::RoutingIndex;
use switchboard_sip::auth::{ChallengeKind, DigestServer};
use switchboard_sip::dialog::DialogId;
use switchboard_sip::message::{Method, Request, Response, ResponseSpec};
use switchboard_sip::transport::{EventReceiver, SipHandle};
use switchboard_sip::{ClientTxnId, Event, Flow, Incoming, RequestFailure, ServerTxnId};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// When an inbound call is answered with 200 OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerMode {
    /// Once another participant who sends audio is in the room (LiveKit's
    /// rule: the caller is not charged for talking to nobody).
    #[default]
    OnParticipant,
    /// At once, when the caller has joined the room.
    Immediate,
}

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Most calls up at once; further INVITEs get 503 with Retry-After.
    pub max_active_calls: usize,
    /// Retry-After seconds on a 503.
    pub retry_after_secs: u32,
    /// When to answer inbound calls.
    pub answer: AnswerMode,
    /// Send 183 Session Progress with ringback as early media while the
    /// call waits for the room.
    pub early_media: bool,
    /// Challenge with 407 (Proxy-Authenticate, the default) or 401.
    pub challenge: ChallengeKind,
    /// Realm for trunks that set none.
    pub default_realm: String,
    /// Challenge a call to a number no trunk has exactly as a trunk with
    /// digest credentials would (then refuse its answer with 403), so
    /// scanning numbers learns nothing from 404 against 407.
    pub challenge_unknown_numbers: bool,
    /// How long a call rings when the trunk sets no ringing timeout.
    pub ringing_timeout: Duration,
    /// The first gap before 180 Ringing is repeated; each later gap doubles,
    /// up to a minute.
    pub ringing_interval: Duration,
    /// Longest call when the trunk sets no maximum.
    pub max_call_duration: Duration,
    /// No RTP for this long ends an answered call (unless the trunk or rule
    /// sets its own).
    pub media_timeout: Duration,
    /// The allowance before the first RTP packet.
    pub initial_media_timeout: Duration,
    /// How long a caller has to enter a PIN.
    pub pin_timeout: Duration,
    /// Most PIN digits before `#`.
    pub max_pin_digits: usize,
    /// The address written in SDP (`c=`): the public address behind NAT.
    pub media_address: IpAddr,
    /// The address RTP sockets bind to.
    pub rtp_bind: IpAddr,
    /// Media session settings (room rate, Opus, jitter, DTMF, latching).
    pub session: SessionConfig,
    /// The session interval we ask for on outbound calls (RFC 4028).
    pub session_expires: Duration,
    /// The shortest session interval we accept (our Min-SE); shorter ones
    /// get 422.
    pub min_session_expires: Duration,
    /// Addresses we never send signalling or media to (link-local, which
    /// holds cloud metadata services, multicast, unspecified): outbound
    /// trunks, transfer targets and peers' SDP addresses in them are refused.
    pub refused_destinations: Vec<ipnet::IpNet>,
    /// Calls streamed to a voice bot by their dispatch rule.
    pub streams: StreamsConfig,
    /// Proxies whose Via headers are believed: a call that reaches us
    /// through one is matched, limited and recorded by the address of the
    /// hop before it (`switchboard_sip::message::original_source`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl GatewayConfig {
    /// Whether `ip` is in a refused network.
    pub fn refuses(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.refused_destinations.iter().any(|n| n.contains(&ip))
    }
}

/// The networks refused by default: unspecified, link-local (cloud metadata
/// at 169.254.169.254) and multicast, IPv4 and IPv6.
pub fn default_refused_destinations() -> Vec<ipnet::IpNet> {
    [
        "0.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "::/128",
        "fe80::/10",
        "ff00::/8",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            max_active_calls: 1000,
            retry_after_secs: 30,
            answer: AnswerMode::OnParticipant,
            early_media: false,
            challenge: ChallengeKind::Proxy,
            default_realm: "switchboard".into(),
            challenge_unknown_numbers: false,
            ringing_timeout: Duration::from_secs(180),
            ringing_interval: Duration::from_secs(1),
            max_call_duration: Duration::from_secs(24 * 3600),
            media_timeout: Duration::from_secs(15),
            initial_media_timeout: Duration::from_secs(30),
            pin_timeout: Duration::from_secs(30),
            max_pin_digits: 16,
            media_address: IpAddr::from([127, 0, 0, 1]),
            rtp_bind: IpAddr::from([0, 0, 0, 0]),
            session: SessionConfig::default(),
            session_expires: Duration::from_secs(1800),
            min_session_expires: Duration::from_secs(90),
            refused_destinations: default_refused_destinations(),
            streams: StreamsConfig::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Where the gateway reads the current routing configuration: the store's
/// live index in production, a fixed index in tests.
pub trait RoutingSource: Send + Sync + 'static {
    /// The routing index to decide the next call with.
    fn current(&self) -> Arc<RoutingIndex>;
}

impl RoutingSource for switchboard_store::LiveRoutingIndex {
    fn current(&self) -> Arc<RoutingIndex> {
        switchboard_store::LiveRoutingIndex::current(self)
    }
}

impl RoutingSource for Arc<RoutingIndex> {
    fn current(&self) -> Arc<RoutingIndex> {
        self.clone()
    }
}

/// The media workers and the RTP port range calls draw from.
pub struct MediaPool {
    workers: Vec<MediaWorker>,
    ports: PortAllocator,
    maintenance: tokio::task::JoinHandle<()>,
}

impl MediaPool {
    /// Starts `workers` media workers (at least one) on the current tokio
    /// runtime, and a task that returns quarantined ports to the pool.
    pub fn start(workers: usize, ports: PortConfig) -> Result<MediaPool, PortError> {
        let ports = PortAllocator::new(ports)?;
        let maintained = ports.clone();
        let maintenance = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                maintained.maintain(Instant::now());
            }
        });
        Ok(MediaPool {
            workers: (0..workers.max(1)).map(|_| MediaWorker::spawn()).collect(),
            ports,
            maintenance,
        })
    }

    /// The worker for a room: every participant of one room on one worker.
    fn worker_for(&self, room: &str) -> &MediaWorker {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        room.hash(&mut hasher);
        let index = (hasher.finish() % self.workers.len() as u64) as usize;
        &self.workers[index]
    }

    /// The port allocator.
    pub fn ports(&self) -> &PortAllocator {
        &self.ports
    }

    /// RTP/RTCP socket reads that reached the kernel, on all workers.
    pub fn receive_syscalls(&self) -> u64 {
        self.workers.iter().map(MediaWorker::receive_syscalls).sum()
    }

    /// The pool's counters in Prometheus' text format.
    fn metrics_text(&self) -> String {
        use switchboard_media::driver::{TickLagCounts, TICK_LAG_BUCKETS};
        let mut lag = TickLagCounts::default();
        for worker in &self.workers {
            lag.add(&worker.tick_lag());
        }
        let mut text = String::from(
            "# HELP switchboard_media_tick_lag_seconds How late each media worker's 20 ms tick ran (a late tick delays every call on its worker).\n\
             # TYPE switchboard_media_tick_lag_seconds histogram\n",
        );
        let mut cumulative = 0u64;
        for (bound, count) in TICK_LAG_BUCKETS.iter().zip(lag.buckets) {
            cumulative = cumulative.saturating_add(count);
            text.push_str(&format!(
                "switchboard_media_tick_lag_seconds_bucket{{le=\"{bound}\"}} {cumulative}\n"
            ));
        }
        let total: u64 = lag.buckets.iter().fold(0u64, |a, b| a.saturating_add(*b));
        text.push_str(&format!(
            "switchboard_media_tick_lag_seconds_bucket{{le=\"+Inf\"}} {total}\n\
             switchboard_media_tick_lag_seconds_sum {}\n\
             switchboard_media_tick_lag_seconds_count {total}\n\
             # HELP switchboard_rtp_ports_active RTP port pairs held by calls and WebRTC clients now.\n\
             # TYPE switchboard_rtp_ports_active gauge\n\
             switchboard_rtp_ports_active {}\n",
            lag.sum_micros as f64 / 1e6,
            self.ports.active_count()
        ));
        text + &format!(
            "# HELP switchboard_media_receive_syscalls_total RTP and RTCP socket reads that reached the kernel (a call on which nothing arrives makes none).\n\
             # TYPE switchboard_media_receive_syscalls_total counter\n\
             switchboard_media_receive_syscalls_total {}\n\
             # HELP switchboard_rtp_ports_draining RTP port pairs in quarantine after their call ended.\n\
             # TYPE switchboard_rtp_ports_draining gauge\n\
             switchboard_rtp_ports_draining {}\n\
             # HELP switchboard_rtp_ports_reused_early_total Port pairs handed out before their full quarantine because no other pair was free.\n\
             # TYPE switchboard_rtp_ports_reused_early_total counter\n\
             switchboard_rtp_ports_reused_early_total {}\n\
             # HELP switchboard_media_resampled_frames_total 20 ms frames resampled between a codec's or client's rate and a room's (none in a room whose members share one rate).\n\
             # TYPE switchboard_media_resampled_frames_total counter\n\
             switchboard_media_resampled_frames_total {}\n",
            self.receive_syscalls(),
            self.ports.draining_count(),
            self.ports.reused_early_count(),
            switchboard_media::resample::resampled_frames()
        )
    }
}

impl Drop for MediaPool {
    fn drop(&mut self) {
        self.maintenance.abort();
    }
}

/// Calls in progress, shared with whoever needs to know (drain, metrics,
/// leak checks).
#[derive(Debug, Default)]
pub struct CallRegistry {
    active: AtomicUsize,
    tasks: AtomicUsize,
}

impl CallRegistry {
    /// Calls in progress (from the INVITE until the call's resources are
    /// released).
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Call tasks alive, refused ones included: zero when nothing leaks.
    pub fn tasks(&self) -> usize {
        self.tasks.load(Ordering::Relaxed)
    }
}

/// Counts a call task (and optionally an active call) for as long as it
/// lives.
struct CallGuard {
    calls: Arc<CallRegistry>,
    active: bool,
}

impl CallGuard {
    fn task(calls: &Arc<CallRegistry>) -> CallGuard {
        calls.tasks.fetch_add(1, Ordering::Relaxed);
        CallGuard {
            calls: calls.clone(),
            active: false,
        }
    }

    /// Counts the call as active; false when that would pass `limit`.
    fn activate(&mut self, limit: usize) -> bool {
        let admitted = self
            .calls
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        self.active = admitted;
        admitted
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.active {
            self.calls.active.fetch_sub(1, Ordering::Relaxed);
        }
        self.calls.tasks.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a call's task is told by the dispatcher.
#[derive(Debug)]
enum Signal {
    /// The caller cancelled; the core has answered 487.
    Cancelled,
    /// The ACK for our 2xx, with its body (the answer to an offer we made
    /// in a 2xx).
    Ack(bytes::Bytes),
    /// Our 2xx was never acknowledged.
    AckTimeout,
    /// A request within the call's dialog.
    Request(Incoming),
    /// A response to a request the call sent, and the flow it came on.
    Response(ClientTxnId, Response, Flow),
    /// A request the call sent got no final response.
    RequestFailed(ClientTxnId, RequestFailure),
    /// Transfer the call (TransferSIPParticipant).
    Transfer(TransferOrder),
}

/// A transfer handed to a call's task.
#[derive(Debug)]
struct TransferOrder {
    refer_to: String,
    headers: Vec<(String, String)>,
    play_dialtone: bool,
    timeout: Duration,
    reply: tokio::sync::oneshot::Sender<Result<TransferDone, TransferError>>,
}

/// Why a call could not be hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HangUpError {
    /// No call in progress has that ID (it may have ended).
    #[error("no call in progress with that ID")]
    NoSuchCall,
    /// The call has no participant in a room yet (routing, PIN entry).
    #[error("the call is not in a room yet")]
    NotInRoom,
}

/// A transfer asked for through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// The room of the SIP participant.
    pub room: String,
    /// The participant whose call is transferred.
    pub identity: String,
    /// The Refer-To value (`<sip:…>`, `<sips:…>` or `tel:…`).
    pub refer_to: String,
    /// Extra headers on the REFER.
    pub headers: Vec<(String, String)>,
    /// Play ringback to the caller (and mute the room) while transferring.
    pub play_dialtone: bool,
    /// How long to wait for the transfer's outcome.
    pub timeout: Duration,
}

/// A transfer that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferDone {
    /// `STR_…`.
    pub transfer_id: String,
    /// The final status the transferee reported (200), or 0 when the call
    /// ended before a final NOTIFY (LiveKit counts that as success).
    pub status: u16,
}

/// Why a transfer did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// No such participant in that room.
    #[error("participant {identity:?} not found in room {room:?}")]
    NoSuchParticipant {
        /// The room.
        room: String,
        /// The identity.
        identity: String,
    },
    /// The participant is not a SIP call of this gateway.
    #[error("no SIP session associated with participant")]
    NotSip,
    /// The call is not answered yet.
    #[error("can't transfer non established call")]
    NotEstablished,
    /// The transfer target is an address in `security.refused_destinations`.
    #[error("transfer_to names a refused address ({0})")]
    DestinationRefused(IpAddr),
    /// Another transfer to another target is under way.
    #[error("call already being transferred elsewhere")]
    AlreadyTransferring,
    /// The peer refused the REFER, or the transfer target answered with a
    /// failure (the NOTIFY sipfrag status).
    #[error("transfer failed: {status} {reason}")]
    Failed {
        /// The SIP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// No outcome within the timeout.
    #[error("transfer timed out")]
    Timeout,
}

type CallSender = mpsc::UnboundedSender<Signal>;

/// Which call each SIP event belongs to.
#[derive(Default)]
struct Routes {
    /// By `SCL_` call ID (for the API: transfers).
    calls: HashMap<String, CallSender>,
    invites: HashMap<ServerTxnId, CallSender>,
    dialogs: HashMap<DialogId, CallSender>,
    requests: HashMap<ClientTxnId, CallSender>,
}

/// Everything a call task needs, shared by all calls.
struct Shared {
    config: GatewayConfig,
    sip: SipHandle,
    routing: Arc<dyn RoutingSource>,
    rooms: Rooms,
    media: MediaPool,
    digest: Mutex<DigestServer>,
    nonce_ledger: Option<Arc<dyn NonceLedger>>,
    routes: Mutex<Routes>,
    calls: Arc<CallRegistry>,
    metrics: GatewayMetrics,
    records: CallRecords,
    directory: Option<Arc<dyn switchboard_rooms::RoomDirectory>>,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn digest(&self) -> MutexGuard<'_, DigestServer> {
        self.digest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Digest nonce counts shared by replicas: a response is taken once across
/// all of them, so one captured on the wire cannot be replayed to another
/// replica within the nonce's lifetime.
pub trait NonceLedger: Send + Sync + 'static {
    /// Claims `count` for `nonce`: true when it is higher than every count
    /// any replica claimed for it. An unreachable ledger answers true (each
    /// replica still refuses replays it saw itself).
    fn claim<'a>(
        &'a self,
        nonce: &'a str,
        count: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

/// What the gateway is built from.
pub struct GatewayParts {
    /// The SIP stack.
    pub sip: SipHandle,
    /// The routing configuration.
    pub routing: Arc<dyn RoutingSource>,
    /// The rooms calls join.
    pub rooms: Rooms,
    /// Media workers and ports.
    pub media: MediaPool,
    /// Checks digest credentials; its key signs nonces, so replicas that
    /// share it accept each other's challenges.
    pub digest: DigestServer,
    /// Where call outcomes are counted.
    pub metrics: GatewayMetrics,
    /// Nonce counts shared with other replicas, when there are any.
    pub nonce_ledger: Option<Arc<dyn NonceLedger>>,
    /// Where calls' records go (live, then the history).
    pub records: CallRecords,
    /// Where rooms live when not all of them are here: a call whose room
    /// is elsewhere (a LiveKit server, another replica) sits, with the
    /// voice bot streamed its audio, in a local room of its own
    /// (`switchboard_rooms::private_room_name`) standing for it, and the
    /// uplink joins the call there. `None`: every room is here.
    pub directory: Option<Arc<dyn switchboard_rooms::RoomDirectory>>,
}

/// The transaction user of the SIP stack.
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// A gateway answering through `parts.sip`.
    pub fn new(config: GatewayConfig, parts: GatewayParts) -> Gateway {
        Gateway {
            shared: Arc::new(Shared {
                config,
                sip: parts.sip,
                routing: parts.routing,
                rooms: parts.rooms,
                media: parts.media,
                digest: Mutex::new(parts.digest),
                nonce_ledger: parts.nonce_ledger,
                routes: Mutex::new(Routes::default()),
                calls: Arc::new(CallRegistry::default()),
                metrics: parts.metrics,
                records: parts.records,
                directory: parts.directory,
            }),
        }
    }

    /// The call registry (for drain, metrics and leak checks).
    pub fn calls(&self) -> Arc<CallRegistry> {
        self.shared.calls.clone()
    }

    /// RTP port pairs held by calls now.
    pub fn active_ports(&self) -> usize {
        self.shared.media.ports().active_count()
    }

    /// A handle for the API: transfers (and later outbound calls).
    pub fn handle(&self) -> GatewayHandle {
        GatewayHandle {
            shared: self.shared.clone(),
        }
    }

    /// Handles the stack's events until it stops.
    pub async fn run(self, mut events: EventReceiver) {
        while let Some(event) = events.recv().await {
            self.dispatch(event);
        }
    }

    fn dispatch(&self, event: Event) {
        match event {
            Event::Request(incoming) => match &incoming.dialog {
                None if incoming.request.method == Method::Invite => {
                    inbound::spawn(self.shared.clone(), incoming);
                }
                Some(dialog) => {
                    let target = self.shared.routes().dialogs.get(dialog).cloned();
                    match target {
                        Some(call) => {
                            if let Err(mpsc::error::SendError(Signal::Request(incoming))) =
                                call.send(Signal::Request(incoming))
                            {
                                self.answer(&incoming, ResponseSpec::new(481));
                            }
                        }
                        None => self.answer(&incoming, ResponseSpec::new(481)),
                    }
                }
                None => {
                    // The core answers out-of-dialog requests other than
                    // INVITE itself; anything else here has lost its call.
                    warn!(call_id = ?incoming.request.call_id(), method = %incoming.request.method, "request without a call");
                    self.answer(&incoming, ResponseSpec::new(481));
                }
            },
            Event::Cancelled { txn } => self.to_invite(txn, Signal::Cancelled),
            Event::AckTimeout { txn } => self.to_invite(txn, Signal::AckTimeout),
            Event::Ack { txn, request, flow } => self.on_ack(txn, request, flow),
            Event::Response {
                txn,
                response,
                flow,
            } => self.to_request(txn, Signal::Response(txn, response, flow)),
            Event::RequestFailed { txn, reason } => {
                self.to_request(txn, Signal::RequestFailed(txn, reason))
            }
        }
    }

    fn to_invite(&self, txn: ServerTxnId, signal: Signal) {
        let target = self.shared.routes().invites.get(&txn).cloned();
        match target {
            Some(call) => {
                let _ = call.send(signal);
            }
            None => debug!(?txn, ?signal, "event for a finished call"),
        }
    }

    fn to_request(&self, txn: ClientTxnId, signal: Signal) {
        let target = self.shared.routes().requests.get(&txn).cloned();
        match target {
            Some(call) => {
                let _ = call.send(signal);
            }
            None => debug!(?txn, "response for a finished call"),
        }
    }

    fn on_ack(&self, txn: Option<ServerTxnId>, request: Request, flow: Flow) {
        let routes = self.shared.routes();
        let by_txn = txn.and_then(|t| routes.invites.get(&t).cloned());
        let target = by_txn.or_else(|| {
            let id = DialogId {
                call_id: request.call_id()?.to_string(),
                local_tag: request.to()?.tag()?.to_string(),
                remote_tag: request.from()?.tag()?.to_string(),
            };
            routes.dialogs.get(&id).cloned()
        });
        drop(routes);
        match target {
            Some(call) => {
                let _ = call.send(Signal::Ack(request.body));
            }
            None => debug!(peer = %flow.remote, call_id = ?request.call_id(), "ACK for no call"),
        }
    }

    fn answer(&self, incoming: &Incoming, spec: ResponseSpec) {
        answer(&self.shared.sip, incoming, spec);
    }
}

/// What the API asks of calls in progress. Cheap to clone.
#[derive(Clone)]
pub struct GatewayHandle {
    shared: Arc<Shared>,
}

impl GatewayHandle {
    /// The gateway's metrics in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        let mut text = self.shared.metrics.render();
        text.push_str(&self.shared.media.metrics_text());
        text.push_str(&self.shared.records.metrics_text());
        text
    }

    /// The records of the calls in progress, oldest first.
    pub fn live_calls(&self) -> Vec<switchboard_store::CallRecord> {
        self.shared.records.live_calls()
    }

    /// The record of a call in progress, or of one that has just ended and
    /// is not in the history yet (`ended_at_ns` set).
    pub fn live_call(&self, call_id: &str) -> Option<switchboard_store::CallRecord> {
        self.shared.records.call(call_id)
    }

    /// The SIP trace so far of a call in progress (or just ended).
    pub fn live_trace(&self, call_id: &str) -> Option<switchboard_store::CallTrace> {
        let sip_call_id = self.shared.records.sip_call_id(call_id)?;
        self.shared.records.traces().snapshot(&sip_call_id)
    }

    /// Calls with a live record (zero when nothing leaks).
    pub fn live_count(&self) -> usize {
        self.shared.records.live_count()
    }

    /// Hangs up a call in progress: its participant is taken out of its
    /// room, so the call ends as RemoveParticipant ends it (BYE after the
    /// answer, a final response before it).
    pub fn hang_up(&self, call_id: &str) -> Result<(), HangUpError> {
        let record = self
            .shared
            .records
            .live_call(call_id)
            .ok_or(HangUpError::NoSuchCall)?;
        let info = record.info.unwrap_or_default();
        if info.room_name.is_empty() || info.participant_identity.is_empty() {
            return Err(HangUpError::NotInRoom);
        }
        self.shared
            .rooms
            .remove_participant(&info.room_name, &info.participant_identity)
            .map_err(|_| HangUpError::NotInRoom)?;
        tracing::info!(call_id = %call_id, room = %info.room_name, "hang-up ordered through the API");
        Ok(())
    }

    /// Places an outbound call (CreateSIPParticipant). Returns when the
    /// callee is in the room and dialling, or with `wait_until_answered`
    /// when the call is answered or has failed.
    pub async fn dial(
        &self,
        request: DialRequest,
        wait_until_answered: bool,
    ) -> Result<DialStarted, DialError> {
        outbound::dial(self.shared.clone(), request, wait_until_answered).await
    }

    /// Whether the call `call_id` (`SCL_…`) is one of this process's, in
    /// progress.
    pub fn holds_call(&self, call_id: &str) -> bool {
        self.shared.routes().calls.contains_key(call_id)
    }

    /// Participant `identity` of `room` as this process has it: in the room
    /// itself, or (when the room lives elsewhere) in the call's private room
    /// standing for it. A caller that another replica bridged into our room
    /// is found in the room but has no call here.
    fn caller_in(&self, room: &str, identity: &str) -> Option<switchboard_rooms::ParticipantInfo> {
        let rooms = &self.shared.rooms;
        let in_room = rooms.participant(room, identity).ok();
        let has_call = |p: &switchboard_rooms::ParticipantInfo| {
            p.attributes
                .get(switchboard_routing::attrs::CALL_ID)
                .is_some_and(|id| self.holds_call(id))
        };
        if in_room.as_ref().is_some_and(has_call) || self.shared.directory.is_none() {
            return in_room;
        }
        // An API order, not a call's path: a scan of the rooms is fine.
        rooms
            .list_rooms()
            .iter()
            .filter(|r| switchboard_rooms::shared_room_of(&r.name) == Some(room))
            .find_map(|r| rooms.participant(&r.name, identity).ok().filter(has_call))
            .or(in_room)
    }

    /// Transfers a SIP participant's call with a REFER and waits for the
    /// outcome (the NOTIFY sipfrag), at most `request.timeout`.
    pub async fn transfer(&self, request: TransferRequest) -> Result<TransferDone, TransferError> {
        let participant = self
            .caller_in(&request.room, &request.identity)
            .ok_or_else(|| TransferError::NoSuchParticipant {
                room: request.room.clone(),
                identity: request.identity.clone(),
            })?;
        let call_id = participant
            .attributes
            .get(switchboard_routing::attrs::CALL_ID)
            .ok_or(TransferError::NotSip)?;
        let call = self
            .shared
            .routes()
            .calls
            .get(call_id)
            .cloned()
            .ok_or(TransferError::NotSip)?;
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let order = TransferOrder {
            refer_to: request.refer_to,
            headers: request.headers,
            play_dialtone: request.play_dialtone,
            timeout: request.timeout,
            reply,
        };
        call.send(Signal::Transfer(order))
            .map_err(|_| TransferError::NotSip)?;
        // A call that ends without answering has dropped the sender: it
        // was gone before the REFER could go out.
        outcome.await.unwrap_or(Err(TransferError::NotSip))
    }
}

fn answer(sip: &SipHandle, incoming: &Incoming, spec: ResponseSpec) {
    if let Err(e) = sip.respond(incoming.txn, spec) {
        // CANCEL can win the race: the core has then sent 487 already.
        debug!(call_id = ?incoming.request.call_id(), error = %e, "response not sent");
    }
}
