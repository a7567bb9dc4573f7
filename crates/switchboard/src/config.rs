//! Configuration: built-in defaults, then a YAML file, then environment
//! variables. Every key can be set from the environment as
//! `SWITCHBOARD_<SECTION>__<KEY>` (double underscore between levels), for
//! example `SWITCHBOARD_SIP__UDP_PORT=5070`; values are read as YAML
//! scalars or lists (`SWITCHBOARD_SIP__TRANSPORTS='[udp]'`).

use serde::{Deserialize, Serialize};
use serde_norway::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The environment prefix of configuration overrides.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Configuration keys outside any section, settable as `SWITCHBOARD_<KEY>`.
const TOP_LEVEL_KEYS: &[&str] = &["data_dir"];

/// Why the configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The YAML (file or environment) is malformed or names unknown keys.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A SIP transport that can be enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded store (and later other local state) lives.
    pub data_dir: PathBuf,
    /// Trunks and dispatch rules.
    pub store: StoreConfig,
    /// The LiveKit SIP API over HTTP.
    pub api: ApiConfig,
    /// SIP signalling.
    pub sip: SipConfig,
    /// Graceful shutdown.
    pub drain: DrainConfig,
    /// Call handling.
    pub calls: CallsConfig,
    /// RTP media.
    pub media: MediaSection,
    /// The embedded rooms.
    pub rooms: RoomsSection,
    /// Logging.
    pub log: LogConfig,
    /// Defences of the SIP edge: per-source budgets, bans, scanners.
    pub security: SecurityConfig,
    /// The `/v1/` carrier trunk API (docs/platform-api.md).
    pub platform: PlatformConfig,
    /// Calls streamed to voice bots (docs/media-streams.md).
    pub streams: StreamsSection,
    /// LiveKit-format webhooks (docs/webhooks.md).
    pub webhooks: WebhooksSection,
    /// Records and SIP traces of finished calls (docs/operations.md).
    pub call_history: CallHistorySection,
    /// A copy of every SIP message to a HEP3 collector (Homer).
    pub hep: HepSection,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./data"),
            store: StoreConfig::default(),
            api: ApiConfig::default(),
            sip: SipConfig::default(),
            drain: DrainConfig::default(),
            calls: CallsConfig::default(),
            media: MediaSection::default(),
            rooms: RoomsSection::default(),
            log: LogConfig::default(),
            security: SecurityConfig::default(),
            platform: PlatformConfig::default(),
            streams: StreamsSection::default(),
            webhooks: WebhooksSection::default(),
            call_history: CallHistorySection::default(),
            hep: HepSection::default(),
        }
    }
}

/// LiveKit-format webhooks: room and participant events, signed with an
/// API key, queued durably under `data_dir` and retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksSection {
    /// Receivers (`http://` or `https://`); none: webhooks are off.
    pub urls: Vec<String>,
    /// The API key that signs them (its secret from `api.keys`); may be
    /// left out when only one key is configured.
    pub api_key: String,
    /// Most time for one delivery attempt, in milliseconds.
    pub request_timeout_ms: u64,
    /// Wait after a failed attempt, doubling up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// Longest wait between two attempts at one event.
    pub max_backoff_ms: u64,
    /// An event still undelivered this long after it happened is given up.
    pub max_event_age_secs: u64,
    /// Most events queued; beyond it the oldest are dropped (and counted).
    pub max_queued: u64,
}

impl Default for WebhooksSection {
    fn default() -> WebhooksSection {
        WebhooksSection {
            urls: Vec::new(),
            api_key: String::new(),
            request_timeout_ms: 10_000,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 30_000,
            max_event_age_secs: 3_600,
            max_queued: 10_000,
        }
    }
}

/// Every call's record and SIP trace: kept in memory while the call
/// lasts, then in the store (the embedded `calls.redb` under `data_dir`, or
/// Redis when the store is Redis) within these limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallHistorySection {
    /// Keep finished calls at all.
    pub enabled: bool,
    /// Most finished calls kept; the oldest go first.
    pub max_records: usize,
    /// Finished calls older than this are dropped, in hours.
    pub max_age_hours: u64,
    /// Keep each call's SIP messages with its record.
    pub traces: bool,
    /// Most bytes of SIP messages kept per call; later ones are dropped and
    /// the trace says it was truncated.
    pub trace_max_bytes_per_call: usize,
    /// SIP traces are dropped after this many hours (before their records).
    pub trace_max_age_hours: u64,
    /// Most refused calls kept per second (a burst as large): a scanner's
    /// flood of INVITEs must not push real calls out of the history.
    pub max_refused_per_sec: u32,
}

impl Default for CallHistorySection {
    fn default() -> CallHistorySection {
        CallHistorySection {
            enabled: true,
            max_records: 10_000,
            max_age_hours: 7 * 24,
            traces: true,
            trace_max_bytes_per_call: 64 * 1024,
            trace_max_age_hours: 24,
            max_refused_per_sec: 50,
        }
    }
}

/// HEP3 export: every SIP message switchboard receives (from a source that
/// is not banned) or sends, as a UDP datagram to a capture server such as
/// Homer's heplify-server or `sngrep -L`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HepSection {
    /// The collector as `host:port` (UDP); empty: no export.
    pub collector: String,
    /// The capture agent ID this node reports.
    pub capture_id: u32,
    /// The collector's password, if it asks for one.
    pub password: String,
}

impl Default for HepSection {
    fn default() -> HepSection {
        HepSection {
            collector: String::new(),
            capture_id: 2001,
            password: String::new(),
        }
    }
}

/// Calls a dispatch rule streams to a voice bot over a WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsSection {
    /// How long the bot may take to accept the WebSocket, in milliseconds,
    /// before the call is refused.
    pub connect_timeout_ms: u64,
    /// The SIP status of a call whose bot cannot be reached: 503 (with
    /// Retry-After) or 480.
    pub unreachable_status: u16,
    /// The bot closing its socket hangs up the call; `false` leaves the
    /// caller in the room.
    pub bot_close_hangs_up: bool,
}

impl Default for StreamsSection {
    fn default() -> StreamsSection {
        StreamsSection {
            connect_timeout_ms: 5_000,
            unreachable_status: 503,
            bot_close_hangs_up: true,
        }
    }
}

/// The `/v1/` carrier trunk API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformConfig {
    /// Carrier trunks that may exist at once; one more is answered 402.
    pub max_trunks: usize,
    /// Room name prefix of the rule a trunk gets by default (one room per call).
    pub room_prefix: String,
}

impl Default for PlatformConfig {
    fn default() -> PlatformConfig {
        PlatformConfig {
            max_trunks: 20,
            room_prefix: "call-".into(),
        }
    }
}

/// Per-source accounting and bans at the SIP edge (docs/security.md).
/// Every limit is per source IP; sources in `trusted` and in any inbound
/// trunk's `allowed_addresses` are exempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Off: nothing is limited or banned.
    pub enabled: bool,
    /// New SIP requests a second, sustained, and in a burst.
    pub requests_per_sec: u32,
    /// See `requests_per_sec`.
    pub request_burst: u32,
    /// New INVITEs a second, sustained, and in a burst.
    pub invites_per_sec: u32,
    /// See `invites_per_sec`.
    pub invite_burst: u32,
    /// Requests over the rates within `window_secs` that ban the source.
    pub flood_requests_to_ban: u32,
    /// Failed digest authentications or wrong PINs within `window_secs`
    /// that ban the source.
    pub auth_failures_to_ban: u32,
    /// Calls to numbers no trunk has within `window_secs` that ban the source.
    pub unknown_numbers_to_ban: u32,
    /// The window of the counts above.
    pub window_secs: u64,
    /// How long a ban lasts.
    pub ban_secs: u64,
    /// User-Agent substrings of scanners, banned at their first request.
    pub scanner_user_agents: Vec<String>,
    /// Networks never limited nor banned (IPs or CIDRs).
    pub trusted: Vec<ipnet::IpNet>,
    /// Proxies in front of switchboard (a Kamailio load balancer) whose Via
    /// headers are believed: a call through one is matched against trunks'
    /// `allowed_addresses`, counted for bans and recorded by the address of
    /// the hop before it. List them in `trusted` too.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Networks we never send signalling or media to: outbound trunks,
    /// transfer targets and peers' SDP addresses in them are refused.
    pub refused_destinations: Vec<ipnet::IpNet>,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

impl Default for SecurityConfig {
    fn default() -> SecurityConfig {
        let guard = switchboard_sip::GuardConfig::default();
        SecurityConfig {
            enabled: guard.enabled,
            requests_per_sec: guard.requests_per_sec,
            request_burst: guard.request_burst,
            invites_per_sec: guard.invites_per_sec,
            invite_burst: guard.invite_burst,
            flood_requests_to_ban: guard.excess_to_ban,
            auth_failures_to_ban: guard.auth_failures_to_ban,
            unknown_numbers_to_ban: guard.refusals_to_ban,
            window_secs: guard.window.as_secs(),
            ban_secs: guard.ban_time.as_secs(),
            scanner_user_agents: guard.scanner_user_agents,
            trusted: guard.trusted,
            trusted_proxies: Vec::new(),
            refused_destinations: switchboard_gateway::default_refused_destinations(),
            max_sources: guard.max_sources,
        }
    }
}

impl SecurityConfig {
    /// The SIP stack's guard settings.
    pub fn guard(&self) -> switchboard_sip::GuardConfig {
        switchboard_sip::GuardConfig {
            enabled: self.enabled,
            requests_per_sec: self.requests_per_sec,
            request_burst: self.request_burst.max(1),
            invites_per_sec: self.invites_per_sec,
            invite_burst: self.invite_burst.max(1),
            excess_to_ban: self.flood_requests_to_ban.max(1),
            auth_failures_to_ban: self.auth_failures_to_ban.max(1),
            refusals_to_ban: self.unknown_numbers_to_ban.max(1),
            window: std::time::Duration::from_secs(self.window_secs),
            ban_time: std::time::Duration::from_secs(self.ban_secs),
            scanner_user_agents: self.scanner_user_agents.clone(),
            trusted: self.trusted.clone(),
            max_sources: self.max_sources.max(1),
        }
    }
}

/// Where trunks and dispatch rules are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS) to
    /// share the store between replicas; unset keeps the embedded store
    /// under `data_dir`.
    pub url: Option<String>,
}

/// The HTTP API (Twirp `livekit.SIP`, health, ExplainCall).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the API listens on.
    pub bind: IpAddr,
    /// Port (0 picks a free one; see --ready-file).
    pub port: u16,
    /// API keys and their secrets (`key: secret`). LIVEKIT_API_KEY and
    /// LIVEKIT_API_SECRET add one more. With none at all, a development key
    /// `devkey` with a random secret is made at start and printed.
    pub keys: BTreeMap<String, String>,
    /// Largest request body accepted, in bytes (larger: HTTP 413).
    pub max_body_bytes: usize,
    /// WebSocket participants (`GET /rooms/<room>/ws`).
    pub websocket: WebSocketSection,
    /// Most HTTP connections open at once (WebSocket participants
    /// included); more wait in the kernel's backlog.
    pub max_connections: usize,
    /// An HTTP connection with nothing read or written for this long is
    /// closed.
    pub idle_timeout_secs: u64,
    /// Most HTTP connections open at once from one source address; more
    /// are closed as soon as they are accepted.
    pub max_connections_per_ip: usize,
    /// A request's start line and headers must arrive within this long of
    /// its first byte (against clients that trickle them, slowloris).
    pub header_timeout_secs: u64,
    /// HTTPS (and `wss://`) for the API when `cert` and `key` are set.
    pub tls: TlsConfig,
    /// Return trunks' `auth_password` from Get and List (LiveKit does).
    /// Off by default: a token that may read trunks should not be enough
    /// to read the carrier's credentials.
    pub return_passwords: bool,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 7880,
            keys: BTreeMap::new(),
            max_body_bytes: 1024 * 1024,
            websocket: WebSocketSection::default(),
            max_connections: 1024,
            idle_timeout_secs: 60,
            max_connections_per_ip: 128,
            header_timeout_secs: 30,
            tls: TlsConfig::default(),
            return_passwords: false,
        }
    }
}

/// Limits of the WebSocket participant endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSection {
    /// Largest message a client may send, in bytes (larger closes the
    /// socket with 1009; an audio frame is at most 1920 bytes; at least
    /// 4096).
    pub max_message_bytes: usize,
    /// Most WebSocket participants at once; more get HTTP 429.
    pub max_participants: usize,
    /// A client that takes no data for this long is disconnected.
    pub send_timeout_ms: u64,
}

impl Default for WebSocketSection {
    fn default() -> WebSocketSection {
        WebSocketSection {
            max_message_bytes: 64 * 1024,
            max_participants: 1000,
            send_timeout_ms: 5000,
        }
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach a log line.
        f.debug_struct("ApiConfig")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("max_body_bytes", &self.max_body_bytes)
            .field("websocket", &self.websocket)
            .finish()
    }
}

/// SIP signalling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Address the SIP sockets bind to.
    pub bind: IpAddr,
    /// UDP port (0 picks a free one).
    pub udp_port: u16,
    /// TCP port (0 picks a free one).
    pub tcp_port: u16,
    /// TLS port, used when a certificate and key are configured.
    pub tls_port: u16,
    /// Plain transports to enable.
    pub transports: Vec<TransportName>,
    /// TLS files.
    pub tls: TlsConfig,
    /// What we tell peers our address is (Via, Contact, later SDP).
    pub advertise: AdvertiseConfig,
    /// Server / User-Agent header value; empty sends none.
    pub user_agent: String,
    /// Largest SIP message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Most header lines in one message.
    pub max_headers: usize,
    /// Most TCP and TLS connections open at once.
    pub max_connections: usize,
    /// Most TCP and TLS connections from one source address (trusted
    /// sources and trunks' allowed addresses are not limited).
    pub max_connections_per_ip: usize,
    /// Stream connections without a complete SIP message for this many
    /// seconds are closed (keep-alives do not count).
    pub connection_idle_secs: u64,
    /// A write a peer does not read within this many seconds closes its
    /// connection.
    pub write_timeout_secs: u64,
    /// Most SIP transactions alive at once.
    pub max_transactions: usize,
    /// Most requests waiting for call control before 503.
    pub max_pending_requests: usize,
    /// RFC 3261 timer T1 in milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 timer T2 in milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 timer T4 in milliseconds.
    pub t4_ms: u64,
    /// Threads of the SIP runtime, kept apart from media work.
    pub worker_threads: usize,
    /// In-dialog requests only from the dialog's peer (its connection, its
    /// address, or an IP its Contact or route set names); 403 otherwise.
    pub bind_dialogs_to_peer: bool,
    /// Milliseconds an INVITE waits for call control's first answer before
    /// 100 Trying is sent (0: at once; RFC 3261 allows 200).
    pub trying_delay_ms: u64,
}

impl Default for SipConfig {
    fn default() -> SipConfig {
        SipConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            udp_port: 5060,
            tcp_port: 5060,
            tls_port: 5061,
            transports: vec![TransportName::Udp, TransportName::Tcp],
            tls: TlsConfig::default(),
            advertise: AdvertiseConfig::default(),
            user_agent: "switchboard".into(),
            max_message_bytes: 65_535,
            max_headers: 256,
            max_connections: 4096,
            max_connections_per_ip: 64,
            connection_idle_secs: 600,
            write_timeout_secs: 10,
            max_transactions: 100_000,
            max_pending_requests: 10_000,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            worker_threads: 1,
            bind_dialogs_to_peer: true,
            trying_delay_ms: 100,
        }
    }
}

/// TLS certificate files. TLS is on when both `cert` and `key` are set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// PEM trust anchors for outbound TLS (defaults to Debian's bundle).
    pub ca: Option<PathBuf>,
}

/// The address peers are told to use, when it differs from the bind
/// address (NAT, Kubernetes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdvertiseConfig {
    /// Host name or IP for Via and Contact. Default: the bind address, or
    /// when that is unspecified, the address of the default route.
    pub host: Option<String>,
    /// Advertised UDP port (default: the bound one).
    pub udp_port: Option<u16>,
    /// Advertised TCP port.
    pub tcp_port: Option<u16>,
    /// Advertised TLS port.
    pub tls_port: Option<u16>,
}

/// Graceful shutdown settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrainConfig {
    /// After SIGTERM, keep answering 503 for at least this long so load
    /// balancers and carriers' OPTIONS pings see the drain.
    pub min_secs: u64,
    /// Exit after this long even if calls remain.
    pub max_secs: u64,
    /// Retry-After seconds on 503 while draining.
    pub retry_after_secs: u32,
}

impl Default for DrainConfig {
    fn default() -> DrainConfig {
        DrainConfig {
            min_secs: 5,
            max_secs: 3600,
            retry_after_secs: 60,
        }
    }
}

/// Call handling.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Most calls up at once; further INVITEs get 503.
    pub max_active: usize,
    /// When inbound calls are answered.
    pub answer: AnswerName,
    /// Send 183 with ringback as early media while a call waits.
    pub early_media: bool,
    /// Digest challenge status: 407 (Proxy-Authenticate) or 401.
    pub auth_challenge: u16,
    /// Realm for trunks that set none.
    pub auth_realm: String,
    /// Challenge calls to numbers no trunk has like calls to a trunk with
    /// credentials (then 403), so number scanning learns nothing.
    pub challenge_unknown_numbers: bool,
    /// Digest algorithms offered, one challenge header each, in this order
    /// (some clients take only the first header they see).
    pub auth_algorithms: Vec<String>,
    /// 64 hex characters signing digest nonces. Replicas behind one address
    /// must share it (a challenge from one is answered to another); unset,
    /// each process makes its own.
    pub auth_nonce_key: Option<String>,
    /// Let a call that matches no trunk go on to wildcard dispatch rules
    /// (LiveKit's open-source behaviour). Off: such a call gets 404.
    pub allow_unmatched_calls: bool,
    /// Ringing timeout when the trunk sets none.
    pub ringing_timeout_secs: u64,
    /// How often 180 Ringing is repeated while a call rings.
    pub ringing_interval_ms: u64,
    /// Longest call when the trunk sets no maximum.
    pub max_call_duration_secs: u64,
    /// How long a caller has to enter a PIN.
    pub pin_timeout_secs: u64,
    /// The session interval asked for on outbound calls (RFC 4028).
    pub session_expires_secs: u64,
    /// The shortest session interval accepted (Min-SE); shorter gets 422.
    pub min_session_expires_secs: u64,
}

impl Default for CallsConfig {
    fn default() -> CallsConfig {
        CallsConfig {
            max_active: 1000,
            answer: AnswerName::OnParticipant,
            early_media: false,
            auth_challenge: 407,
            auth_realm: "switchboard".into(),
            challenge_unknown_numbers: false,
            // MD5 alone: baresip 1.0 and SIPp 3.6 give up on a call when they
            // see a SHA-256 challenge (config/switchboard.yaml says more).
            auth_algorithms: vec!["MD5".into()],
            auth_nonce_key: None,
            allow_unmatched_calls: false,
            ringing_timeout_secs: 180,
            ringing_interval_ms: 1000,
            max_call_duration_secs: 24 * 3600,
            pin_timeout_secs: 30,
            session_expires_secs: 1800,
            min_session_expires_secs: 90,
        }
    }
}

impl fmt::Debug for CallsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The nonce key is a secret: never in a log line.
        f.debug_struct("CallsConfig")
            .field("max_active", &self.max_active)
            .field("answer", &self.answer)
            .field("early_media", &self.early_media)
            .field("auth_challenge", &self.auth_challenge)
            .field("auth_realm", &self.auth_realm)
            .field("auth_algorithms", &self.auth_algorithms)
            .field(
                "auth_nonce_key",
                &self.auth_nonce_key.as_ref().map(|_| "<set>"),
            )
            .field("allow_unmatched_calls", &self.allow_unmatched_calls)
            .field("ringing_timeout_secs", &self.ringing_timeout_secs)
            .field("ringing_interval_ms", &self.ringing_interval_ms)
            .field("max_call_duration_secs", &self.max_call_duration_secs)
            .field("pin_timeout_secs", &self.pin_timeout_secs)
            .field("session_expires_secs", &self.session_expires_secs)
            .field("min_session_expires_secs", &self.min_session_expires_secs)
            .finish()
    }
}

/// When inbound calls are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerName {
    /// Once someone who sends audio is in the room.
    OnParticipant,
    /// At once.
    Immediate,
}

/// Symmetric RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatchingName {
    /// Always send where the SDP says.
    Off,
    /// Latch to the real source when the SDP address is private or differs.
    Auto,
    /// Always follow the latest source.
    On,
}

/// RTP media.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSection {
    /// Address RTP sockets bind to.
    pub bind: IpAddr,
    /// The address written in SDP; default: `sip.advertise.host` when it is
    /// an IP, else the bind address or the default route's address.
    pub advertise: Option<IpAddr>,
    /// First port of the RTP range.
    pub rtp_port_first: u16,
    /// Last port of the RTP range.
    pub rtp_port_last: u16,
    /// A released port pair is reused after this long without stray packets...
    pub port_drain_idle_secs: u64,
    /// ...and in any case after this long.
    pub port_drain_max_secs: u64,
    /// When no pair is free, one quiet this long is reused early rather
    /// than the call refused (as long as `port_drain_idle_secs`: never).
    pub port_drain_min_secs: u64,
    /// Media worker tasks; 0 = one per CPU.
    pub workers: usize,
    /// No RTP for this long ends a call (trunks and rules may override).
    pub timeout_secs: u64,
    /// The allowance before the first packet of an answered call.
    pub initial_timeout_secs: u64,
    /// Symmetric RTP: off, auto or on.
    pub latching: LatchingName,
    /// Opus encoder complexity, 0 (cheap) to 10.
    pub opus_complexity: u8,
    /// Opus bitrate, bit/s.
    pub opus_bitrate: i32,
    /// PCM rate inside the Opus codec: 8000, 12000, 16000, 24000 or 48000.
    pub opus_pcm_rate: u32,
    /// Opus in-band forward error correction.
    pub opus_fec: bool,
    /// Opus complexity for participants of narrowband rooms (a G.711
    /// party), where the encoder runs at 8 kHz.
    pub opus_narrowband_complexity: u8,
    /// Opus bitrate in narrowband rooms, bit/s.
    pub opus_narrowband_bitrate: i32,
}

impl Default for MediaSection {
    fn default() -> MediaSection {
        MediaSection {
            bind: IpAddr::from([0, 0, 0, 0]),
            advertise: None,
            rtp_port_first: 10_000,
            rtp_port_last: 20_000,
            port_drain_idle_secs: 30,
            port_drain_max_secs: 600,
            port_drain_min_secs: 3,
            workers: 0,
            timeout_secs: 15,
            initial_timeout_secs: 30,
            latching: LatchingName::Auto,
            opus_complexity: 5,
            opus_bitrate: 24_000,
            opus_pcm_rate: 16_000,
            opus_fec: true,
            opus_narrowband_complexity: 0,
            opus_narrowband_bitrate: 24_000,
        }
    }
}

/// The embedded rooms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsSection {
    /// The highest rate a room mixes at (8000 to 48000); each room mixes at
    /// the highest rate its members need, up to this.
    pub sample_rate: u32,
    /// Most rooms at once.
    pub max_rooms: usize,
    /// Most participants in one room.
    pub max_participants: usize,
    /// How long a room created through the API lives without participants.
    pub empty_timeout_secs: u64,
    /// Where the rooms calls join live: `embedded` (in this process) or
    /// `livekit` (on the server of `livekit`, which each call joins as its
    /// own participant over LiveKit's client protocol).
    pub backend: RoomsBackend,
    /// The LiveKit server, for `backend: livekit`.
    pub livekit: LiveKitSection,
    /// Embedded rooms shared by the replicas of one Redis store.
    pub replicas: ReplicasSection,
}

/// Embedded rooms shared by replicas (with `store.url` on Redis): each room
/// is owned by one replica, which holds a lease on it in Redis; a call, a
/// WebSocket or LiveKit client that lands on another replica joins the
/// room there, over LiveKit's client protocol, and API orders for a room
/// or a call are forwarded to the replica holding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicasSection {
    /// Share rooms (true) or give each replica rooms of its own (false).
    pub share_rooms: bool,
    /// This replica's API as the other replicas reach it, e.g.
    /// `http://10.1.2.3:7880` (a pod's IP); empty: `http://` + `api.bind`
    /// (or the SIP advertised host when the API binds every address) +
    /// the API's port.
    pub api_url: String,
    /// How long a replica's room and call leases outlive it: a room whose
    /// owner died moves to the next replica that needs it after at most
    /// this long. Renewed every third of it.
    pub lease_secs: u64,
}

impl Default for ReplicasSection {
    fn default() -> ReplicasSection {
        ReplicasSection {
            share_rooms: true,
            api_url: String::new(),
            lease_secs: 6,
        }
    }
}

impl Default for RoomsSection {
    fn default() -> RoomsSection {
        RoomsSection {
            sample_rate: 48_000,
            max_rooms: 10_000,
            max_participants: 100,
            empty_timeout_secs: 300,
            backend: RoomsBackend::Embedded,
            livekit: LiveKitSection::default(),
            replicas: ReplicasSection::default(),
        }
    }
}

/// Where rooms live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomsBackend {
    /// In this process.
    Embedded,
    /// On a LiveKit server (or another switchboard serving rooms).
    Livekit,
}

/// A LiveKit server calls join their rooms on.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveKitSection {
    /// Its URL (`ws://host:7880` or `http://host:7880`).
    pub url: String,
    /// One of its API keys.
    pub api_key: String,
    /// That key's secret.
    pub api_secret: String,
    /// A PEM file of CA certificates to trust for a `wss://` server (a
    /// private CA); unset: the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for LiveKitSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("LiveKitSection")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `switchboard_sip=debug,info`, ...).
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let value: Value = serde_norway::from_str(&text)
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
                match value {
                    Value::Null => Value::Mapping(Mapping::new()),
                    other => other,
                }
            }
            None => Value::Mapping(Mapping::new()),
        };
        let mut livekit_key = None;
        let mut livekit_secret = None;
        for (name, raw) in env {
            match name.as_str() {
                "LIVEKIT_API_KEY" => livekit_key = Some(raw.clone()),
                "LIVEKIT_API_SECRET" => livekit_secret = Some(raw.clone()),
                _ => {}
            }
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Variables without a section are options of the command
            // (SWITCHBOARD_CONFIG, SWITCHBOARD_READY_FILE), except the few
            // top-level keys.
            if !path.contains("__") && !TOP_LEVEL_KEYS.contains(&path.to_ascii_lowercase().as_str())
            {
                continue;
            }
            let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
            let value: Value = serde_norway::from_str(&raw).unwrap_or(Value::String(raw.clone()));
            set_path(&mut tree, &keys, value)
                .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
        let mut config: Config =
            serde_norway::from_value(tree).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        // The variables LiveKit's SDKs read, so SDK users change nothing.
        match (livekit_key.filter(|k| !k.is_empty()), livekit_secret) {
            (Some(key), Some(secret)) if !secret.is_empty() => {
                config.api.keys.insert(key, secret);
            }
            (None, _) => {}
            (Some(_), _) => {
                return Err(ConfigError::Invalid(
                    "LIVEKIT_API_KEY is set without LIVEKIT_API_SECRET".into(),
                ))
            }
        }
        Ok(config)
    }
}

fn set_path(tree: &mut Value, keys: &[String], value: Value) -> Result<(), String> {
    let Some((first, rest)) = keys.split_first() else {
        return Err("empty key".into());
    };
    let Value::Mapping(map) = tree else {
        return Err(format!("{first} is inside a value that is not a section"));
    };
    let key = Value::String(first.clone());
    if rest.is_empty() {
        map.insert(key, value);
        return Ok(());
    }
    let child = map
        .entry(key)
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if child.is_null() {
        *child = Value::Mapping(Mapping::new());
    }
    set_path(child, rest, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.sip.udp_port, 5060);
        assert_eq!(config.sip.tcp_port, 5060);
        assert_eq!(config.sip.tls_port, 5061);
        assert_eq!(
            config.sip.transports,
            vec![TransportName::Udp, TransportName::Tcp]
        );
        assert!(config.sip.tls.cert.is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(&file, "sip:\n  udp_port: 5070\n  user_agent: from-file\n").unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("SWITCHBOARD_SIP__UDP_PORT", "5080"),
                ("SWITCHBOARD_SIP__TRANSPORTS", "[udp]"),
                ("SWITCHBOARD_SIP__ADVERTISE__HOST", "203.0.113.7"),
                ("SWITCHBOARD_DRAIN__MIN_SECS", "0"),
                ("SWITCHBOARD_CONFIG", "/ignored"),
                ("SWITCHBOARD_READY_FILE", "/ignored"),
                ("SWITCHBOARD_DATA_DIR", "/var/lib/sb"),
                ("SWITCHBOARD_CALLS__AUTH_ALGORITHMS", "[SHA-256, MD5]"),
                ("OTHER_SIP__UDP_PORT", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/sb"));
        assert_eq!(
            config.calls.auth_algorithms,
            vec!["SHA-256".to_string(), "MD5".to_string()]
        );
        assert_eq!(config.sip.udp_port, 5080);
        assert_eq!(config.sip.user_agent, "from-file");
        assert_eq!(config.sip.transports, vec![TransportName::Udp]);
        assert_eq!(config.sip.advertise.host.as_deref(), Some("203.0.113.7"));
        assert_eq!(config.drain.min_secs, 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::load(None, env(&[("SWITCHBOARD_SIP__UDP_PRT", "1")])).is_err());
        assert!(Config::load(None, env(&[("SWITCHBOARD_SIP__UDP_PORT", "70000")])).is_err());
        assert!(Config::load(None, env(&[("SWITCHBOARD_SIP__BIND", "not-an-ip")])).is_err());
    }

    #[test]
    fn api_keys_come_from_the_file_the_environment_and_livekits_variables() {
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_API__KEYS", "{ops: s3cret}"),
                ("LIVEKIT_API_KEY", "APIsdk"),
                ("LIVEKIT_API_SECRET", "sdk-secret"),
                ("SWITCHBOARD_API__PORT", "0"),
                ("SWITCHBOARD_STORE__URL", "redis://127.0.0.1:6390/"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.api.keys.get("ops").map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(
            config.api.keys.get("APIsdk").map(String::as_str),
            Some("sdk-secret")
        );
        assert_eq!(config.api.port, 0);
        assert_eq!(config.store.url.as_deref(), Some("redis://127.0.0.1:6390/"));
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("s3cret") && !printed.contains("sdk-secret"),
            "{printed}"
        );
        assert!(Config::load(None, env(&[("LIVEKIT_API_KEY", "k")])).is_err());
        let defaults = Config::load(None, env(&[])).unwrap();
        assert!(defaults.api.keys.is_empty());
        assert_eq!(defaults.api.port, 7880);
        assert_eq!(defaults.api.max_body_bytes, 1 << 20);
        assert_eq!(defaults.data_dir, PathBuf::from("./data"));
        assert_eq!(defaults.store.url, None);
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/switchboard.yaml");
        let config = Config::load(Some(&example), env(&[])).unwrap();
        assert_eq!(config, Config::default());
    }
}
