//! The switchboard binary: configuration, wiring, signals and drain.

mod call_control;
mod cli;
mod config;
mod drain;
mod replicas;
mod shared_bans;
mod status;
mod store_health;
mod webhooks;

/// jemalloc rather than glibc's malloc: it returns the memory of a burst of
/// calls to the system once they end, where glibc's arenas kept it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use config::{AnswerName, Config, LatchingName, LogFormat, RoomsBackend, TransportName};
use drain::Drain;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_api::{ApiKeys, ApiState, WebSocketConfig};
use switchboard_gateway::{
    AnswerMode, CallRecords, Gateway, GatewayConfig, GatewayMetrics, GatewayParts, MediaPool,
    SipTraces, StreamsConfig, TraceConfig,
};
use switchboard_media::codec::OpusSettings;
use switchboard_media::ports::{PortAllocator, PortConfig};
use switchboard_media::session::{Latching, SessionConfig};
use switchboard_rooms::{RoomDirectory, Rooms, RoomsConfig};
use switchboard_routing::RoutingOptions;
use switchboard_sip::auth::{Algorithm, ChallengeKind, DigestServer, DigestServerConfig};
use switchboard_sip::hep::{HepConfig, HepExporter, Taps};
use switchboard_sip::tap::MessageTap;
use switchboard_sip::transport::{tls, BoundAddrs, SipStack, TransportConfig};
use switchboard_sip::{AdvertisedPorts, EndpointConfig, Limits, Timers};
use switchboard_store::{CallHistory, HistoryConfig, LiveRoutingIndex, RedisConfig, SipStore};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// A SIP B2BUA and media gateway with the LiveKit SIP management API.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (embedded defaults when no configuration is given).
    Serve(ServeArgs),
    /// Manage SIP trunks and dispatch rules on a running server (like `lk sip`).
    Sip(cli::SipArgs),
    /// Manage carrier trunks (the /v1 API): each one an inbound trunk, an
    /// outbound trunk and a dispatch rule, made and removed together.
    Trunk(cli::TrunkArgs),
    /// Create access tokens.
    Token(cli::TokenArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// YAML configuration file; every key can also be set from the
    /// environment as SWITCHBOARD_<SECTION>__<KEY>.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Write the bound addresses here as JSON once listening (for
    /// orchestration and tests that ask for port 0).
    #[arg(long, env = "SWITCHBOARD_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// Store URL (`redis://...`); overrides store.url. Default: the
    /// embedded store under data_dir.
    #[arg(long)]
    store: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Sip(args) => cli::run_sip(args),
        Command::Trunk(args) => cli::run_trunk(args),
        Command::Token(args) => cli::run_token(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(url) = args.store {
        config.store.url = Some(url);
    }
    init_logging(&config);
    // Freed pages go back to the system from jemalloc's own threads, also
    // while no call allocates (an idle gateway after a burst).
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        warn!(error = %e, "jemalloc background purging is off: memory freed by ended calls returns only while others allocate");
    }
    if let Err(e) = check_call_settings(&config) {
        error!(error = %e, "invalid call settings");
        return ExitCode::from(2);
    }
    let (mut transport, endpoint) = match sip_settings(&config) {
        Ok(settings) => settings,
        Err(e) => {
            error!(error = %e, "invalid SIP settings");
            return ExitCode::from(2);
        }
    };
    // Every SIP message is tapped into the calls' traces (when kept) and
    // to a HEP collector (when configured).
    let traces = Arc::new(SipTraces::new(trace_config(&config)));
    let mut taps: Vec<Arc<dyn MessageTap>> = Vec::new();
    if config.call_history.enabled && config.call_history.traces {
        taps.push(traces.clone());
    }
    match hep_exporter(&config) {
        Ok(Some(hep)) => taps.push(Arc::new(hep)),
        Ok(None) => {}
        Err(e) => {
            error!(error = %e, "invalid hep settings");
            return ExitCode::from(2);
        }
    }
    transport.tap = match taps.len() {
        0 => None,
        1 => taps.pop(),
        _ => Some(Arc::new(Taps(taps))),
    };
    // SIP timers get their own threads so media work can never delay them.
    let sip_runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.sip.worker_threads.max(1))
        .thread_name("sip")
        .on_thread_park(give_back_thread_cache)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the SIP runtime");
            return ExitCode::FAILURE;
        }
    };
    let main_runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("switchboard")
        .on_thread_park(give_back_thread_cache)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let stack = match sip_runtime.block_on(SipStack::start(transport, endpoint)) {
        Ok(stack) => stack,
        Err(e) => {
            error!(error = %e, "cannot bind the SIP sockets");
            return ExitCode::FAILURE;
        }
    };
    let api = match main_runtime.block_on(start_api(&config)) {
        Ok(api) => api,
        Err(e) => {
            error!(error = %e, "cannot start the API");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.ready_file {
        if let Err(e) = write_ready_file(path, &stack.bound, api.addr) {
            error!(error = %e, path = %path.display(), "cannot write the ready file");
            return ExitCode::FAILURE;
        }
    }
    let code = main_runtime.block_on(run(stack, api, &config, traces));
    sip_runtime.shutdown_timeout(Duration::from_secs(1));
    main_runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// The store, the routing index and the API listener, ready to serve once
/// the rooms and call control exist.
struct Api {
    addr: SocketAddr,
    listener: tokio::net::TcpListener,
    store: SipStore,
    keys: ApiKeys,
    /// The routing index the gateway decides calls with.
    routing: Arc<LiveRoutingIndex>,
}

/// Debug builds only: `SWITCHBOARD_FAULT` names a provisioning write to
/// fail, so the suite shows from outside the process that a failure half-way
/// through creating a carrier trunk writes nothing.
#[cfg(debug_assertions)]
fn with_test_fault(store: SipStore) -> SipStore {
    let fault = std::env::var("SWITCHBOARD_FAULT").ok();
    match fault
        .as_deref()
        .and_then(switchboard_store::ProvisioningFault::parse)
    {
        Some(fault) => {
            tracing::warn!(?fault, "test fault injected into provisioning writes");
            store.with_fault(fault)
        }
        None => store,
    }
}

#[cfg(not(debug_assertions))]
fn with_test_fault(store: SipStore) -> SipStore {
    store
}

async fn open_store(config: &Config) -> Result<SipStore, String> {
    open_any_store(config).await.map(with_test_fault)
}

async fn open_any_store(config: &Config) -> Result<SipStore, String> {
    match redis_url(config) {
        // rediss:// is Redis over TLS, verified against the system's CA
        // roots (SSL_CERT_FILE names another bundle).
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            let store = SipStore::connect_redis(RedisConfig::new(url))
                .await
                .map_err(|e| e.to_string())?;
            // The URL may carry a password: it is not logged.
            info!("store: redis");
            Ok(store)
        }
        Some(_) => Err(
            "store.url must be a redis:// or rediss:// URL (or unset for the embedded store)"
                .into(),
        ),
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
            let store = SipStore::open_embedded(&config.data_dir)
                .await
                .map_err(|e| e.to_string())?;
            info!(data_dir = %config.data_dir.display(), "store: embedded");
            Ok(store)
        }
    }
}

/// How often at most a runtime thread gives its allocator cache back.
const THREAD_CACHE_GIVE_BACK: Duration = Duration::from_secs(1);

/// Run as a runtime thread parks: at most once a second, empties the
/// thread's jemalloc cache (disabling it flushes it; it is enabled again at
/// once). jemalloc trims a thread's cache only as that thread allocates, so
/// the threads that carried a burst of calls kept the small objects they
/// freed once idle: 3 MB after 1,000 concurrent calls, the gap between
/// issue 10's 5 % and what was measured (bench/calls.md).
fn give_back_thread_cache() {
    use std::cell::Cell;
    use tikv_jemalloc_ctl::{Access, AsName};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        let now = Instant::now();
        if last
            .get()
            .is_some_and(|at| now.saturating_duration_since(at) < THREAD_CACHE_GIVE_BACK)
        {
            return;
        }
        last.set(Some(now));
        let name = b"thread.tcache.enabled\0".name();
        if name.write(false).is_ok() {
            let _ = name.write(true);
        }
    });
}

/// The configured keys, or a fresh development key printed once on stdout
/// (not through the log) so a laptop user can sign tokens with it.
fn api_keys(config: &Config) -> Result<ApiKeys, String> {
    if !config.api.keys.is_empty() {
        return Ok(config
            .api
            .keys
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect());
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| format!("random source: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "switchboard: no API key configured; made a development key for this run:\n  \
         LIVEKIT_API_KEY=devkey\n  LIVEKIT_API_SECRET={secret}"
    );
    info!("no API key configured: using a development key `devkey` (printed on stdout)");
    Ok(ApiKeys::from_iter([("devkey", secret)]))
}

async fn start_api(config: &Config) -> Result<Api, String> {
    let store = open_store(config).await?;
    let routing = Arc::new(
        LiveRoutingIndex::start(
            store.clone(),
            RoutingOptions {
                allow_unmatched_calls: config.calls.allow_unmatched_calls,
            },
        )
        .await
        .map_err(|e| format!("routing index: {e}"))?,
    );
    let keys = api_keys(config)?;
    let listener = tokio::net::TcpListener::bind((config.api.bind, config.api.port))
        .await
        .map_err(|e| {
            format!(
                "cannot bind the API on {}:{}: {e}",
                config.api.bind, config.api.port
            )
        })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    info!(%addr, keys = ?keys.key_names(), "API listening");
    Ok(Api {
        addr,
        listener,
        store,
        keys,
        routing,
    })
}

/// The API's state: the store, the shared rooms, call control and the
/// call-side numbers for /debug/state.
fn api_state(
    config: &Config,
    api: &Api,
    rooms: Rooms,
    status: status::ServeStatus,
    call_control: call_control::GatewayCalls,
    call_history: Option<CallHistory>,
    ports: PortAllocator,
) -> Result<ApiState, String> {
    let websocket = &config.api.websocket;
    // One 20 ms frame at 48 kHz is 1920 bytes; the limit must let audio through.
    if websocket.max_message_bytes < MIN_WEBSOCKET_MESSAGE_BYTES {
        return Err(format!(
            "api.websocket.max_message_bytes {} must be at least {MIN_WEBSOCKET_MESSAGE_BYTES}",
            websocket.max_message_bytes
        ));
    }
    Ok(ApiState {
        store: api.store.clone(),
        routing: api.routing.clone(),
        call_control: Arc::new(call_control),
        keys: api.keys.clone(),
        max_body_bytes: config.api.max_body_bytes,
        draining: Arc::new(AtomicBool::new(false)),
        rooms,
        status: Arc::new(status),
        websocket: WebSocketConfig {
            max_message_bytes: websocket.max_message_bytes,
            max_participants: websocket.max_participants,
            send_timeout: Duration::from_millis(websocket.send_timeout_ms.max(1)),
        },
        websocket_sessions: Default::default(),
        webrtc: switchboard_api::rtc::WebRtcConfig {
            bind: config.media.bind,
            advertise: media_advertised(config),
            ports: Some(ports),
        },
        agents: Default::default(),
        return_passwords: config.api.return_passwords,
        platform: switchboard_api::platform::PlatformSettings {
            max_trunks: config.platform.max_trunks,
            room_prefix: config.platform.room_prefix.clone(),
        },
        refused_destinations: config.security.refused_destinations.clone(),
        call_history,
        metrics: switchboard_api::metrics::ApiMetrics::new()
            .map_err(|e| format!("API metrics: {e}"))?,
        directory: None,
    })
}

/// The API's TLS settings, when `api.tls.cert` and `api.tls.key` are set.
fn api_tls(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let tls = &config.api.tls;
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let server = switchboard_sip::transport::tls::server_config(cert, key)
                .map_err(|e| e.to_string())?;
            let mut server = (*server).clone();
            // axum serves HTTP/1.1 (WebSocket upgrades included).
            server.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Some(Arc::new(server)))
        }
        (None, None) => Ok(None),
        _ => Err("api.tls needs both cert and key".into()),
    }
}

/// The Redis store's URL, when the store is Redis.
fn redis_url(config: &Config) -> Option<&str> {
    config.store.url.as_deref().filter(|u| !u.is_empty())
}

/// Keeps the SIP edge's exemptions equal to the inbound trunks'
/// `allowed_addresses`: a carrier the operator named is never rate-limited
/// or banned. Runs for the life of the process.
async fn exempt_trunk_addresses(
    routing: Arc<LiveRoutingIndex>,
    sip: switchboard_sip::transport::SipHandle,
) {
    let mut changes = routing.watch();
    loop {
        let networks = changes.borrow_and_update().1.allowed_networks();
        sip.set_guard_exempt(networks);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The smallest `api.websocket.max_message_bytes`: a 48 kHz audio frame
/// and room for small JSON messages.
const MIN_WEBSOCKET_MESSAGE_BYTES: usize = 4096;

/// The HEP3 exporter, when `hep.collector` names one.
fn hep_exporter(config: &Config) -> Result<Option<HepExporter>, String> {
    let hep = &config.hep;
    if hep.collector.is_empty() {
        return Ok(None);
    }
    use std::net::ToSocketAddrs;
    let collector = hep
        .collector
        .to_socket_addrs()
        .map_err(|e| format!("hep.collector {:?}: {e}", hep.collector))?
        .next()
        .ok_or_else(|| format!("hep.collector {:?} resolves to nothing", hep.collector))?;
    let exporter = HepExporter::new(HepConfig {
        collector,
        capture_id: hep.capture_id,
        password: (!hep.password.is_empty()).then(|| hep.password.clone()),
    })
    .map_err(|e| format!("hep.collector {collector}: {e}"))?;
    info!(%collector, capture_id = hep.capture_id, "SIP messages exported over HEP3");
    Ok(Some(exporter))
}

/// How much of each call's SIP messages is kept in memory.
fn trace_config(config: &Config) -> TraceConfig {
    let history = &config.call_history;
    TraceConfig {
        enabled: history.enabled && history.traces,
        max_bytes_per_call: history.trace_max_bytes_per_call,
        ..TraceConfig::default()
    }
}

/// The store of finished calls: beside the routing store (Redis, or
/// `calls.redb` under the data directory), or none when it is off.
async fn open_call_history(config: &Config) -> Result<Option<CallHistory>, String> {
    let section = &config.call_history;
    if !section.enabled {
        return Ok(None);
    }
    let hours = |h: u64| Duration::from_secs(h.saturating_mul(3600).max(60));
    let retention = HistoryConfig {
        max_records: section.max_records.max(1),
        max_age: hours(section.max_age_hours),
        trace_max_age: hours(section.trace_max_age_hours),
    };
    let history = match redis_url(config) {
        Some(url) => CallHistory::connect_redis(url, "", retention).await,
        None => CallHistory::open_embedded(&config.data_dir, retention).await,
    };
    history.map(Some).map_err(|e| e.to_string())
}

async fn run(stack: SipStack, api: Api, config: &Config, traces: Arc<SipTraces>) -> ExitCode {
    let SipStack {
        handle,
        events,
        bound: _,
        tasks: _tasks,
    } = stack;
    // One registry for the gateway's calls and the API's participants and
    // room administration.
    let rooms = match rooms(config) {
        Ok(rooms) => rooms,
        Err(e) => {
            error!(error = %e, "invalid room settings");
            return ExitCode::FAILURE;
        }
    };
    // The mixing clock runs for the life of the process.
    let _clock = rooms.spawn_clock();
    let webhooks = match webhooks::start(config, &api.keys, &rooms).await {
        Ok(webhooks) => webhooks,
        Err(e) => {
            error!(error = %e, "cannot start webhooks");
            return ExitCode::FAILURE;
        }
    };
    // With a Redis store, bans and digest nonce counts are shared with the
    // other replicas, over one connection.
    let shared_bans = match redis_url(config) {
        Some(url) => match switchboard_store::SharedBans::connect(url, "").await {
            Ok(shared) => Some(shared),
            Err(e) => {
                error!(error = %e, "cannot share SIP bans and nonce counts through Redis");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let nonce_ledger = shared_bans.as_ref().map(|shared| {
        Arc::new(shared_bans::RedisNonceLedger::new(shared.nonce_counts()))
            as Arc<dyn switchboard_gateway::NonceLedger>
    });
    let history = match open_call_history(config).await {
        Ok(history) => history,
        Err(e) => {
            error!(error = %e, "cannot open the call history");
            return ExitCode::FAILURE;
        }
    };
    let records = CallRecords::new(
        history.clone(),
        traces,
        config.call_history.max_refused_per_sec,
    );
    let homes = match room_homes(config, &api, &rooms).await {
        Ok(homes) => homes,
        Err(e) => {
            error!(error = %e, "cannot share rooms between replicas");
            return ExitCode::FAILURE;
        }
    };
    let (gateway, ports) = match start_gateway(
        config,
        handle.clone(),
        api.routing.clone(),
        rooms.clone(),
        nonce_ledger,
        records,
        homes.directory(),
    ) {
        Ok(started) => started,
        Err(e) => {
            error!(error = %e, "cannot start call handling");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(exempt_trunk_addresses(api.routing.clone(), handle.clone()));
    if let Some(shared) = &shared_bans {
        tokio::spawn(shared_bans::share_bans(handle.clone(), shared.clone()));
    }
    let store_health = store_health::StoreHealth::watch(api.store.clone());
    let status = status::ServeStatus::new(
        gateway.calls(),
        ports.clone(),
        handle.clone(),
        gateway.handle(),
    )
    .with_shared_bans(shared_bans)
    .with_store_and_webhooks(store_health, webhooks);
    let calls_api = call_control::GatewayCalls::new(gateway.handle());
    let uplink_tls = match livekit_tls(config) {
        Ok(tls) => tls,
        Err(e) => {
            error!(error = %e, "rooms.livekit.ca_file");
            return ExitCode::FAILURE;
        }
    };
    let _uplink = homes.directory().map(|directory| {
        let (api_key, api_secret, own_url) = match homes.replicas() {
            None => {
                let livekit = &config.rooms.livekit;
                info!(url = %livekit.url, "rooms are on a LiveKit server: each call joins its room there");
                (livekit.api_key.clone(), livekit.api_secret.clone(), None)
            }
            // Replicas share their API keys: ours signs the tokens with
            // which a replica's callers join another's rooms.
            Some(replicas) => {
                let (key, secret) = api.keys.signing_key().unwrap_or_default();
                let own_url = Some(replicas.url().to_string());
                (key.to_string(), secret.to_string(), own_url)
            }
        };
        switchboard_uplink::spawn(
            rooms.clone(),
            switchboard_uplink::LiveKitServer {
                directory,
                own_url,
                api_key,
                api_secret,
                bind: config.media.bind,
                advertise: media_advertised(config),
                ports: Some(ports.clone()),
                tls: uplink_tls,
            },
        )
    });
    if let Some(replicas) = homes.replicas() {
        replicas.spawn(gateway.handle());
    }
    let state = match api_state(config, &api, rooms, status, calls_api, history, ports) {
        Ok(state) => Arc::new(ApiState {
            // The API forwards to other replicas only; a LiveKit backend's
            // rooms are not the API's to serve.
            directory: homes
                .replicas()
                .map(|r| r.clone() as Arc<dyn RoomDirectory>),
            ..state
        }),
        Err(e) => {
            error!(error = %e, "invalid API settings");
            return ExitCode::FAILURE;
        }
    };
    let draining = state.draining.clone();
    let _agents = switchboard_api::agents::spawn_dispatcher(state.clone());
    if let Some(replicas) = homes.replicas() {
        replicas.spawn_agent_advertiser(state.clone());
    }
    let router = switchboard_api::router(state);
    let api_tls = match api_tls(config) {
        Ok(tls) => tls,
        Err(e) => {
            error!(error = %e, "invalid api.tls settings");
            return ExitCode::FAILURE;
        }
    };
    let http_limits = switchboard_api::HttpLimits {
        max_connections: config.api.max_connections,
        idle_timeout: Duration::from_secs(config.api.idle_timeout_secs.max(1)),
        max_connections_per_ip: config.api.max_connections_per_ip,
        header_timeout: Duration::from_secs(config.api.header_timeout_secs.max(1)),
    };
    // The API keeps serving through the drain; it ends with the process.
    tokio::spawn(async move {
        let limits = http_limits;
        let served = switchboard_api::serve_limited(
            api.listener,
            router,
            std::future::pending(),
            limits,
            api_tls,
        );
        if let Err(e) = served.await {
            error!(error = %e, "the API server stopped");
        }
    });
    let calls = gateway.calls();
    tokio::spawn(gateway.run(events));
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        _ => {
            error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    info!("switchboard ready");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = int.recv() => info!("SIGINT: draining"),
    }
    handle.set_draining(true);
    draining.store(true, Ordering::Relaxed);
    let drain = Drain::new(
        Instant::now(),
        Duration::from_secs(config.drain.min_secs),
        Duration::from_secs(config.drain.max_secs),
    );
    loop {
        if drain.should_exit(Instant::now(), calls.active()) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = term.recv() => { info!("second signal: exiting now"); break; }
            _ = int.recv() => { info!("second signal: exiting now"); break; }
        }
    }
    if let Some(replicas) = homes.replicas() {
        replicas.release_all().await;
    }
    info!(active_calls = calls.active(), "drained; exiting");
    ExitCode::SUCCESS
}

/// TLS for the LiveKit server's `wss://` signalling when
/// `rooms.livekit.ca_file` names a private CA (else the system's roots).
fn livekit_tls(config: &Config) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    use rustls::pki_types::pem::PemObject;
    let Some(path) = &config.rooms.livekit.ca_file else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    switchboard_streams::tls_config_with_roots(roots).map(Some)
}

/// Where rooms are served.
enum RoomHomes {
    /// Every room here.
    Here,
    /// Every room on the LiveKit server of `rooms.backend: livekit`.
    LiveKit(Arc<replicas::LiveKitRooms>),
    /// Shared with the other replicas of a Redis store
    /// (`rooms.replicas.share_rooms`): a directory whose leases must be kept.
    Replicas(Arc<replicas::ReplicaRooms>),
}

impl RoomHomes {
    /// The directory calls and the uplink ask; `None`: every room is here.
    fn directory(&self) -> Option<Arc<dyn RoomDirectory>> {
        match self {
            RoomHomes::Here => None,
            RoomHomes::LiveKit(livekit) => Some(livekit.clone()),
            RoomHomes::Replicas(replicas) => Some(replicas.clone()),
        }
    }

    /// The replicas' directory, when rooms are shared with them.
    fn replicas(&self) -> Option<&Arc<replicas::ReplicaRooms>> {
        match self {
            RoomHomes::Replicas(replicas) => Some(replicas),
            _ => None,
        }
    }
}

/// Where rooms are served, as the configuration says.
async fn room_homes(config: &Config, api: &Api, rooms: &Rooms) -> Result<RoomHomes, String> {
    if config.rooms.backend == RoomsBackend::Livekit {
        let livekit = replicas::LiveKitRooms {
            url: config.rooms.livekit.url.clone(),
        };
        return Ok(RoomHomes::LiveKit(Arc::new(livekit)));
    }
    let Some(url) = redis_url(config).filter(|_| config.rooms.replicas.share_rooms) else {
        return Ok(RoomHomes::Here);
    };
    let me = replica_url(config, api);
    if !me.starts_with("http://") {
        return Err(format!(
            "rooms.replicas.api_url {me} must be an http:// URL (the replicas' own network)"
        ));
    }
    if api.keys.is_empty() {
        return Err("replicas sharing rooms need an API key (api.keys)".into());
    }
    let leases = switchboard_store::Leases::connect(url, "")
        .await
        .map_err(|e| format!("room leases: {e}"))?;
    let ttl = Duration::from_secs(config.rooms.replicas.lease_secs.clamp(2, 3600));
    info!(api_url = %me, lease_secs = ttl.as_secs(), "rooms shared with the other replicas");
    Ok(RoomHomes::Replicas(replicas::ReplicaRooms::new(
        leases,
        me,
        ttl,
        rooms.clone(),
    )))
}

/// This replica's API URL as the other replicas reach it.
fn replica_url(config: &Config, api: &Api) -> String {
    let configured = config.rooms.replicas.api_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_string();
    }
    let host = if api.addr.ip().is_unspecified() {
        advertised_host(config)
    } else {
        api.addr.ip().to_string()
    };
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host,
    };
    format!("http://{host}:{}", api.addr.port())
}

/// The embedded rooms, as configured.
fn rooms(config: &Config) -> Result<Rooms, String> {
    let rooms_config = &config.rooms;
    if rooms_config.backend == RoomsBackend::Livekit {
        let livekit = &rooms_config.livekit;
        if livekit.url.is_empty() || livekit.api_key.is_empty() || livekit.api_secret.is_empty() {
            return Err(
                "rooms.backend livekit needs rooms.livekit.url, api_key and api_secret".into(),
            );
        }
        if !["ws://", "wss://", "http://", "https://"]
            .iter()
            .any(|s| livekit.url.starts_with(s))
        {
            return Err(format!(
                "rooms.livekit.url {} must be ws://, wss://, http:// or https://",
                livekit.url
            ));
        }
    }
    if !(8_000..=48_000).contains(&rooms_config.sample_rate)
        || !rooms_config.sample_rate.is_multiple_of(50)
    {
        return Err(format!(
            "rooms.sample_rate {} must be 8000 to 48000 and a multiple of 50",
            rooms_config.sample_rate
        ));
    }
    Ok(Rooms::new(RoomsConfig {
        sample_rate: rooms_config.sample_rate,
        max_rooms: rooms_config.max_rooms,
        max_participants: rooms_config.max_participants,
        empty_timeout: Duration::from_secs(rooms_config.empty_timeout_secs),
        ..RoomsConfig::default()
    }))
}

/// The media workers and the gateway, on the current runtime; also the
/// port allocator, whose count /debug/state reports.
fn start_gateway(
    config: &Config,
    sip: switchboard_sip::transport::SipHandle,
    routing: Arc<LiveRoutingIndex>,
    rooms: Rooms,
    nonce_ledger: Option<Arc<dyn switchboard_gateway::NonceLedger>>,
    records: CallRecords,
    directory: Option<Arc<dyn RoomDirectory>>,
) -> Result<(Gateway, PortAllocator), String> {
    let rooms_config = &config.rooms;
    let media = &config.media;
    let workers = if media.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        media.workers
    };
    let pool = MediaPool::start(
        workers,
        PortConfig {
            first: media.rtp_port_first,
            last: media.rtp_port_last,
            drain_idle: Duration::from_secs(media.port_drain_idle_secs),
            drain_max: Duration::from_secs(media.port_drain_max_secs),
            drain_min: Duration::from_secs(media.port_drain_min_secs),
        },
    )
    .map_err(|e| format!("media ports: {e}"))?;
    let ports = pool.ports().clone();
    let digest = digest_server(config)?;
    let metrics = GatewayMetrics::new().map_err(|e| format!("metrics: {e}"))?;
    let challenge = challenge_kind(config)?;
    let media_address = media_advertised(config);
    let gateway_config = GatewayConfig {
        trusted_proxies: config.security.trusted_proxies.clone(),
        max_active_calls: config.calls.max_active,
        retry_after_secs: config.drain.retry_after_secs,
        answer: match config.calls.answer {
            AnswerName::OnParticipant => AnswerMode::OnParticipant,
            AnswerName::Immediate => AnswerMode::Immediate,
        },
        early_media: config.calls.early_media,
        challenge,
        default_realm: config.calls.auth_realm.clone(),
        challenge_unknown_numbers: config.calls.challenge_unknown_numbers,
        refused_destinations: config.security.refused_destinations.clone(),
        streams: StreamsConfig {
            connect_timeout: Duration::from_millis(config.streams.connect_timeout_ms.max(1)),
            unreachable_status: match config.streams.unreachable_status {
                status @ (480 | 503) => status,
                other => {
                    return Err(format!(
                        "streams.unreachable_status must be 480 or 503, not {other}"
                    ))
                }
            },
            bot_close_hangs_up: config.streams.bot_close_hangs_up,
        },
        ringing_timeout: Duration::from_secs(config.calls.ringing_timeout_secs),
        ringing_interval: Duration::from_millis(config.calls.ringing_interval_ms.max(100)),
        max_call_duration: Duration::from_secs(config.calls.max_call_duration_secs),
        pin_timeout: Duration::from_secs(config.calls.pin_timeout_secs),
        session_expires: Duration::from_secs(
            config
                .calls
                .session_expires_secs
                .max(config.calls.min_session_expires_secs),
        ),
        min_session_expires: Duration::from_secs(config.calls.min_session_expires_secs),
        media_timeout: Duration::from_secs(media.timeout_secs),
        initial_media_timeout: Duration::from_secs(media.initial_timeout_secs),
        media_address,
        rtp_bind: media.bind,
        session: SessionConfig {
            room_rate: rooms_config.sample_rate,
            opus: OpusSettings {
                complexity: media.opus_complexity,
                bitrate: media.opus_bitrate,
                pcm_rate: media.opus_pcm_rate,
                fec: media.opus_fec,
                narrowband_complexity: media.opus_narrowband_complexity.min(10),
                narrowband_bitrate: media.opus_narrowband_bitrate.clamp(6_000, 510_000),
                ..OpusSettings::default()
            },
            latching: match media.latching {
                LatchingName::Off => Latching::Off,
                LatchingName::Auto => Latching::Auto,
                LatchingName::On => Latching::On,
            },
            ..SessionConfig::default()
        },
        ..GatewayConfig::default()
    };
    info!(%media_address, workers, rtp_ports = %format!("{}-{}", media.rtp_port_first, media.rtp_port_last), "call handling ready");
    let gateway = Gateway::new(
        gateway_config,
        GatewayParts {
            sip,
            routing,
            rooms,
            media: pool,
            digest,
            metrics,
            nonce_ledger,
            records,
            directory,
        },
    );
    Ok((gateway, ports))
}

/// 401 (WWW-Authenticate) or 407 (Proxy-Authenticate) challenges.
fn challenge_kind(config: &Config) -> Result<ChallengeKind, String> {
    match config.calls.auth_challenge {
        401 => Ok(ChallengeKind::Www),
        407 => Ok(ChallengeKind::Proxy),
        other => Err(format!(
            "calls.auth_challenge must be 401 or 407, not {other}"
        )),
    }
}

/// The call settings checked before anything listens, so a bad value
/// exits at once instead of after the ready file says the process is up.
fn check_call_settings(config: &Config) -> Result<(), String> {
    digest_server(config)?;
    challenge_kind(config)?;
    Ok(())
}

/// The digest nonce signer: the configured key (shared by replicas) or a
/// random one.
fn digest_server(config: &Config) -> Result<DigestServer, String> {
    let algorithms = config
        .calls
        .auth_algorithms
        .iter()
        .map(|name| {
            Algorithm::parse(name).ok_or_else(|| format!("calls.auth_algorithms: unknown {name:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if algorithms.is_empty() {
        return Err("calls.auth_algorithms must name at least one algorithm".into());
    }
    let settings = DigestServerConfig {
        algorithms,
        ..DigestServerConfig::default()
    };
    match &config.calls.auth_nonce_key {
        Some(hex) => {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .filter_map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                })
                .collect();
            let key: [u8; 32] = bytes
                .try_into()
                .ok()
                .filter(|_| hex.len() == 64)
                .ok_or("calls.auth_nonce_key must be 64 hex characters")?;
            Ok(DigestServer::new(key, settings))
        }
        None => DigestServer::with_random_key(settings).map_err(|e| format!("random source: {e}")),
    }
}

/// Log directives for the webrtc-rs crates, ahead of `log.level`.
const QUIET_WEBRTC_STACK: &str = "rtc=error,rtc_dtls=error,rtc_sctp=error,rtc_ice=error,\
rtc_srtp=error,rtc_interceptor=error,rtc_datachannel=error,rtc_stun=error,rtc_sdp=error";

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    // The WebRTC stack warns about every client's unknown DTLS extensions
    // and the like: errors only, unless the configured level names it.
    let level = format!("{QUIET_WEBRTC_STACK},{}", config.log.level);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only on a terminal: in a file or a log collector they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn sip_settings(config: &Config) -> Result<(TransportConfig, EndpointConfig), String> {
    let sip = &config.sip;
    let limits = Limits {
        max_message_bytes: sip.max_message_bytes,
        max_headers: sip.max_headers,
    };
    let tls_server = match (&sip.tls.cert, &sip.tls.key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key).map_err(|e| e.to_string())?),
        (None, None) => None,
        _ => return Err("sip.tls.cert and sip.tls.key must be set together".into()),
    };
    let ca = sip.tls.ca.clone().or_else(|| {
        Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt")).filter(|p| p.exists())
    });
    let tls_client = match ca {
        Some(ca) => Some(tls::client_config(&ca).map_err(|e| e.to_string())?),
        None => None,
    };
    let transport = TransportConfig {
        udp: sip
            .transports
            .contains(&TransportName::Udp)
            .then(|| SocketAddr::new(sip.bind, sip.udp_port)),
        tcp: sip
            .transports
            .contains(&TransportName::Tcp)
            .then(|| SocketAddr::new(sip.bind, sip.tcp_port)),
        tls: tls_server.map(|server| (SocketAddr::new(sip.bind, sip.tls_port), server)),
        tls_client,
        limits: limits.clone(),
        max_connections: sip.max_connections,
        max_connections_per_ip: sip.max_connections_per_ip.max(1),
        idle_timeout: Duration::from_secs(sip.connection_idle_secs),
        write_timeout: Duration::from_secs(sip.write_timeout_secs.max(1)),
        max_pending_requests: sip.max_pending_requests,
        ..TransportConfig::default()
    };
    let endpoint = EndpointConfig {
        limits,
        timers: Timers {
            t1: Duration::from_millis(sip.t1_ms),
            t2: Duration::from_millis(sip.t2_ms),
            t4: Duration::from_millis(sip.t4_ms),
        },
        advertised_host: advertised_host(config),
        // 0 means "the port actually bound", filled in by the stack.
        advertised_ports: AdvertisedPorts {
            udp: sip.advertise.udp_port.unwrap_or(0),
            tcp: sip.advertise.tcp_port.unwrap_or(0),
            tls: sip.advertise.tls_port.unwrap_or(0),
        },
        user_agent: sip.user_agent.clone(),
        // The gateway runs RFC 4028 session timers.
        supported: vec!["timer".into()],
        retry_after_secs: config.drain.retry_after_secs,
        max_transactions: sip.max_transactions,
        bind_dialogs_to_peer: sip.bind_dialogs_to_peer,
        guard: config.security.guard(),
        trying_delay: Duration::from_millis(sip.trying_delay_ms.min(200)),
        ..EndpointConfig::default()
    };
    Ok((transport, endpoint))
}

/// The host put in Via and Contact: configured, else the bind address, else
/// the source address of the default route (no packet is sent to find it).
/// The address written in SDP and ICE candidates: `media.advertise`, else
/// the SIP advertised host when it is an IP, else loopback.
fn media_advertised(config: &Config) -> IpAddr {
    config.media.advertise.unwrap_or_else(|| {
        advertised_host(config)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    })
}

fn advertised_host(config: &Config) -> String {
    if let Some(host) = &config.sip.advertise.host {
        return host.clone();
    }
    let ip = if config.sip.bind.is_unspecified() {
        default_route_ip().unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        config.sip.bind
    };
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn default_route_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    socket
        .local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
}

fn write_ready_file(path: &Path, bound: &BoundAddrs, api: SocketAddr) -> std::io::Result<()> {
    let json = serde_json::json!({
        "api": api.to_string(),
        "sip": {
            "udp": bound.udp.map(|a| a.to_string()),
            "tcp": bound.tcp.map(|a| a.to_string()),
            "tls": bound.tls.map(|a| a.to_string()),
        }
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json.to_string())?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tikv_jemalloc_ctl::{Access, AsName};

    #[test]
    fn giving_the_thread_cache_back_leaves_it_enabled() {
        let enabled = b"thread.tcache.enabled\0".name();
        // Fill this thread's cache, give it back, and it is on again (a
        // cache left off would cost every allocation the arena's lock).
        let scraps: Vec<Vec<u8>> = (0..1000).map(|i| vec![0u8; 16 + i % 200]).collect();
        drop(scraps);
        give_back_thread_cache();
        assert!(Access::<bool>::read(enabled).unwrap());
        // Within the second, a park leaves the cache alone.
        assert!(Access::<bool>::write(enabled, false).is_ok());
        give_back_thread_cache();
        assert!(!Access::<bool>::read(enabled).unwrap());
        assert!(Access::<bool>::write(enabled, true).is_ok());
    }
}
