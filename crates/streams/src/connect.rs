//! Reaching a bot: name resolution, TCP, TLS (wss://) and the WebSocket
//! upgrade. Each step is ours rather than tokio-tungstenite's `connect`, so
//! that each failure gets its own error: an operator told "connection
//! refused by 10.0.0.5:8765" or "the bot answered HTTP 403" knows where to
//! look, which "IO error" would not tell them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::playout::PlayoutLimits;
use crate::protocol::StreamProtocol;

/// Where and how to stream a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// `ws://` or `wss://` URL of the bot (a Pipecat runner listens on
    /// `/ws`). Never logged whole: paths and queries may carry tokens.
    pub url: String,
    /// The protocol the bot speaks.
    pub protocol: StreamProtocol,
    /// Extra request headers (`Authorization: Bearer …`, say). Values are
    /// never logged; CR, LF and NUL are refused.
    pub headers: Vec<(String, String)>,
    /// The `Origin` header, if any: bots with `PIPECAT_ALLOWED_ORIGINS`
    /// close sockets without a listed one (code 4003).
    pub origin: Option<String>,
    /// Most time for resolution, TCP, TLS and the upgrade together.
    pub connect_timeout: Duration,
    /// Most bot audio queued for playout, in seconds (the oldest is
    /// dropped beyond it).
    pub max_queued_secs: u32,
    /// Bot audio buffered before playout starts, in ms
    /// ([`PlayoutLimits::start_buffer_ms`]).
    pub start_buffer_ms: u32,
    /// Most marks waiting for their audio.
    pub max_pending_marks: usize,
    /// Largest message the bot may send; a larger one ends the stream.
    /// A 30 s chunk of base64 µ-law is 320 KB.
    pub max_message_bytes: usize,
    /// A bot that takes no data for this long is given up on.
    pub send_timeout: Duration,
    /// How long our close waits for the bot's answering close frame (and
    /// our answer to its close may take to send) before the socket is
    /// dropped anyway.
    pub close_timeout: Duration,
    /// Networks never connected to (`security.refused_destinations`: cloud
    /// metadata at 169.254.169.254 and the like), so a URL in a rule or an
    /// API call cannot aim switchboard at them. Checked on the resolved
    /// addresses, so a name that resolves there is refused too.
    pub refused: Vec<ipnet::IpNet>,
}

impl StreamSpec {
    /// A spec with the default limits: 10 s to connect, 120 s of queued
    /// audio, 40 ms start buffer, 1024 pending marks, 4 MiB messages, 5 s
    /// send timeout, 1 s close timeout.
    pub fn new(url: impl Into<String>, protocol: StreamProtocol) -> StreamSpec {
        let playout = PlayoutLimits::default();
        StreamSpec {
            url: url.into(),
            protocol,
            headers: Vec::new(),
            origin: None,
            connect_timeout: Duration::from_secs(10),
            max_queued_secs: playout.max_queued_secs,
            start_buffer_ms: playout.start_buffer_ms,
            max_pending_marks: playout.max_pending_marks,
            max_message_bytes: 4 << 20,
            refused: Vec::new(),
            send_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(1),
        }
    }

    /// The playout limits of this spec.
    pub fn playout_limits(&self) -> PlayoutLimits {
        PlayoutLimits {
            max_queued_secs: self.max_queued_secs,
            start_buffer_ms: self.start_buffer_ms,
            max_pending_marks: self.max_pending_marks,
        }
    }
}

/// A step of connecting, named in a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectStage {
    /// Resolving the host name.
    Dns,
    /// The TCP connection.
    Tcp,
    /// The TLS handshake (wss://).
    Tls,
    /// The WebSocket upgrade (HTTP request and 101 response).
    Upgrade,
}

impl std::fmt::Display for ConnectStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectStage::Dns => "name resolution",
            ConnectStage::Tcp => "TCP connection",
            ConnectStage::Tls => "TLS handshake",
            ConnectStage::Upgrade => "WebSocket upgrade",
        })
    }
}

/// Why a bot could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The URL does not parse, or its scheme is not ws/wss, or it has no
    /// host. (The URL itself is not repeated: it may carry a token.)
    #[error("invalid stream URL: {0}")]
    InvalidUrl(String),
    /// A header name or value that cannot be sent.
    #[error("header {name:?} refused: {reason}")]
    InvalidHeader {
        /// The header's name (never its value).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The bot's address is in a refused network.
    #[error("{addr} is in a refused network (security.refused_destinations)")]
    RefusedDestination {
        /// The address.
        addr: SocketAddr,
    },
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Dns {
        /// The host.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// Nothing listens there (TCP RST).
    #[error("connection refused by {addr}")]
    Refused {
        /// The last address tried.
        addr: SocketAddr,
    },
    /// TCP failed otherwise (unreachable network, reset).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// The system's error.
        reason: String,
    },
    /// TLS failed: no CA roots, an untrusted or mismatched certificate, a
    /// handshake failure.
    #[error("TLS with {host} failed: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// rustls's error.
        reason: String,
    },
    /// The bot answered the upgrade request with this HTTP status instead
    /// of 101 (403 for a bad token, 404 for a wrong path).
    #[error("the bot refused the WebSocket upgrade with HTTP {status}")]
    UpgradeRefused {
        /// The HTTP status.
        status: u16,
    },
    /// The upgrade failed otherwise (not HTTP, a bad accept key).
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    /// A step did not finish within [`StreamSpec::connect_timeout`].
    #[error("{stage} did not finish within {after:?}")]
    Timeout {
        /// The step.
        stage: ConnectStage,
        /// The timeout.
        after: Duration,
    },
}

/// A connected, upgraded socket to a bot, ready for
/// [`start`](crate::start).
pub struct BotSocket {
    pub(crate) ws: WebSocketStream<BotStream>,
    host: String,
    port: u16,
    tls: bool,
}

impl std::fmt::Debug for BotSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotSocket")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl BotSocket {
    /// The bot's host (name or address, no path: safe to log).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The bot's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the socket runs over TLS (wss://).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The WebSocket itself, for a caller that speaks its own protocol on
    /// it (the LiveKit uplink's signalling).
    pub fn into_websocket(self) -> WebSocketStream<BotStream> {
        self.ws
    }
}

/// Connects to the bot and upgrades to a WebSocket; wss:// trusts the
/// system's CA roots. Nothing is sent on the socket yet.
pub async fn connect(spec: &StreamSpec) -> Result<BotSocket, StreamError> {
    connect_inner(spec, None).await
}

/// [`connect`] with a TLS configuration of the caller's (a private CA, a
/// test's self-signed certificate); see [`tls_config_with_roots`].
pub async fn connect_with_tls(
    spec: &StreamSpec,
    tls: Arc<ClientConfig>,
) -> Result<BotSocket, StreamError> {
    connect_inner(spec, Some(tls)).await
}

/// A client TLS configuration (ring, TLS 1.2 and 1.3) trusting `roots`.
pub fn tls_config_with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>, String> {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The system's CA roots, loaded once (reading the store takes a few ms of
/// blocking file I/O, so it runs off the async threads).
async fn native_tls_config() -> Result<Arc<ClientConfig>, String> {
    static NATIVE: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    if let Some(config) = NATIVE.get() {
        return config.clone();
    }
    let built = tokio::task::spawn_blocking(|| {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _unparsable) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "no CA certificates in the system store ({})",
                errors.join("; ")
            ));
        }
        tls_config_with_roots(roots)
    })
    .await
    .map_err(|e| format!("loading the system's CA roots: {e}"))?;
    NATIVE.get_or_init(|| built).clone()
}

/// The parts of a stream URL.
struct Target {
    uri: Uri,
    host: String,
    port: u16,
    tls: bool,
}

fn parse_url(url: &str) -> Result<Target, StreamError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| StreamError::InvalidUrl(format!("{e}")))?;
    let tls = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("ws") => false,
        Some("wss") => true,
        Some(other) => {
            return Err(StreamError::InvalidUrl(format!(
                "scheme {other:?} is not ws or wss"
            )))
        }
        None => {
            return Err(StreamError::InvalidUrl(
                "no scheme (ws:// or wss://)".into(),
            ))
        }
    };
    let Some(authority) = uri.authority().cloned() else {
        return Err(StreamError::InvalidUrl("no host".into()));
    };
    // IPv6 literals come bracketed; the resolver and TLS want them bare.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(StreamError::InvalidUrl("no host".into()));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("") => "/",
        Some(p) => p,
    };
    let uri = Uri::builder()
        .scheme(if tls { "wss" } else { "ws" })
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| StreamError::InvalidUrl(format!("{e}")))?;
    Ok(Target {
        uri,
        host,
        port,
        tls,
    })
}

/// Headers the upgrade writes itself; a second copy would make the
/// request invalid.
const HANDSHAKE_HEADERS: [&str; 5] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-version",
    "sec-websocket-key",
];

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), StreamError> {
    let refuse = |reason| StreamError::InvalidHeader {
        name: name.to_string(),
        reason,
    };
    let header_name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| refuse("not a valid header name"))?;
    if HANDSHAKE_HEADERS.contains(&header_name.as_str()) {
        return Err(refuse("set by the WebSocket handshake itself"));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(refuse("the value contains CR, LF or NUL"));
    }
    let header_value =
        HeaderValue::from_str(value).map_err(|_| refuse("the value has control characters"))?;
    Ok((header_name, header_value))
}

/// A deadline that never comes, for a timeout too large to add to now.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

async fn connect_inner(
    spec: &StreamSpec,
    tls: Option<Arc<ClientConfig>>,
) -> Result<BotSocket, StreamError> {
    let options = WebSocketOptions {
        headers: spec.headers.clone(),
        origin: spec.origin.clone(),
        connect_timeout: spec.connect_timeout,
        max_message_bytes: spec.max_message_bytes,
        refused: spec.refused.clone(),
        tls,
    };
    connect_websocket(&spec.url, &options).await
}

/// How to open a client WebSocket: a bot's stream, or the signalling of a
/// LiveKit server the uplink joins rooms on.
#[derive(Clone)]
pub struct WebSocketOptions {
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// An `Origin` header.
    pub origin: Option<String>,
    /// DNS, TCP, TLS and upgrade together must take no longer.
    pub connect_timeout: Duration,
    /// The largest message (and frame) taken.
    pub max_message_bytes: usize,
    /// Networks never connected to.
    pub refused: Vec<ipnet::IpNet>,
    /// TLS for wss:// (`None`: the system's CA roots).
    pub tls: Option<Arc<ClientConfig>>,
}

impl WebSocketOptions {
    /// No extra headers, 10 s to connect, 1 MiB messages, the system's roots.
    pub fn new() -> WebSocketOptions {
        WebSocketOptions {
            headers: Vec::new(),
            origin: None,
            connect_timeout: Duration::from_secs(10),
            max_message_bytes: 1 << 20,
            refused: Vec::new(),
            tls: None,
        }
    }
}

impl Default for WebSocketOptions {
    fn default() -> WebSocketOptions {
        WebSocketOptions::new()
    }
}

/// The WebSocket URL of `path_and_query` on the server at `base`
/// (`http://`, `https://`, `ws://` or `wss://`; a trailing `/` is dropped);
/// `None` for any other scheme.
pub fn websocket_url(base: &str, path_and_query: &str) -> Option<String> {
    let base = base.trim_end_matches('/');
    let (secure, rest) = if let Some(rest) = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("ws://"))
    {
        (false, rest)
    } else {
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("wss://"))?;
        (true, rest)
    };
    let scheme = if secure { "wss" } else { "ws" };
    Some(format!("{scheme}://{rest}{path_and_query}"))
}

/// Connects to `url` (ws:// or wss://) and upgrades to a WebSocket.
pub async fn connect_websocket(
    url: &str,
    options: &WebSocketOptions,
) -> Result<BotSocket, StreamError> {
    let tls = options.tls.clone();
    let target = parse_url(url)?;
    let mut request = target
        .uri
        .clone()
        .into_client_request()
        .map_err(|e| StreamError::InvalidUrl(e.to_string()))?;
    let origin = options
        .origin
        .as_ref()
        .map(|o| ("Origin".to_string(), o.clone()));
    for (name, value) in options.headers.iter().chain(origin.as_ref()) {
        let (name, value) = header(name, value)?;
        request.headers_mut().append(name, value);
    }

    let after = options.connect_timeout;
    // The timeout is configuration; a huge one means "no limit", not a panic.
    let deadline = Instant::now()
        .checked_add(after)
        .unwrap_or_else(|| Instant::now() + FAR_FUTURE);
    let timeout = |stage| StreamError::Timeout { stage, after };

    let addrs: Vec<SocketAddr> = timeout_at(
        deadline,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| timeout(ConnectStage::Dns))?
    .map_err(|e| StreamError::Dns {
        host: target.host.clone(),
        reason: e.to_string(),
    })?
    .collect();
    if let Some(addr) = addrs.iter().find(|a| {
        let ip = a.ip().to_canonical();
        options.refused.iter().any(|n| n.contains(&ip))
    }) {
        return Err(StreamError::RefusedDestination { addr: *addr });
    }
    let tcp = tcp_connect(&target.host, &addrs, deadline, after).await?;
    // Frames of 20 ms each: Nagle would hold every other one back.
    let _ = tcp.set_nodelay(true);

    let stream = if target.tls {
        let config = match tls {
            Some(config) => config,
            None => native_tls_config()
                .await
                .map_err(|reason| StreamError::Tls {
                    host: target.host.clone(),
                    reason,
                })?,
        };
        let name = ServerName::try_from(target.host.clone()).map_err(|e| StreamError::Tls {
            host: target.host.clone(),
            reason: format!("not a valid server name: {e}"),
        })?;
        let tls_stream = timeout_at(deadline, TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| timeout(ConnectStage::Tls))?
            .map_err(|e| StreamError::Tls {
                host: target.host.clone(),
                reason: tls_reason(&e),
            })?;
        BotStream::Tls(Box::new(tls_stream))
    } else {
        BotStream::Plain(tcp)
    };

    let config = WebSocketConfig::default()
        .max_message_size(Some(options.max_message_bytes))
        .max_frame_size(Some(options.max_message_bytes));
    let upgraded = timeout_at(
        deadline,
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)),
    )
    .await
    .map_err(|_| timeout(ConnectStage::Upgrade))?;
    let ws = match upgraded {
        Ok((ws, _response)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            return Err(StreamError::UpgradeRefused {
                status: response.status().as_u16(),
            })
        }
        Err(e) => return Err(StreamError::Handshake(e.to_string())),
    };
    debug!(host = %target.host, port = target.port, tls = target.tls, "bot socket upgraded");
    Ok(BotSocket {
        ws,
        host: target.host,
        port: target.port,
        tls: target.tls,
    })
}

/// Tries each address in turn; the last failure is the one reported.
async fn tcp_connect(
    host: &str,
    addrs: &[SocketAddr],
    deadline: Instant,
    after: Duration,
) -> Result<TcpStream, StreamError> {
    let mut last: Option<(SocketAddr, io::Error)> = None;
    for &addr in addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(StreamError::Timeout {
                    stage: ConnectStage::Tcp,
                    after,
                })
            }
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some((addr, e)),
        }
    }
    match last {
        Some((addr, e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(StreamError::Refused { addr })
        }
        Some((addr, e)) => Err(StreamError::Connect {
            addr,
            reason: e.to_string(),
        }),
        None => Err(StreamError::Dns {
            host: host.to_string(),
            reason: "no addresses".into(),
        }),
    }
}

/// rustls's own words when it is the cause ("invalid peer certificate:
/// UnknownIssuer"), rather than the IO wrapper's.
fn tls_reason(e: &io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

/// The byte stream under a client WebSocket: plain TCP or TLS over it.
pub enum BotStream {
    /// ws://
    Plain(TcpStream),
    /// wss://
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for BotStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BotStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BotStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BotStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BotStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BotStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BotStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BotStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BotStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BotStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn spec(url: &str) -> StreamSpec {
        StreamSpec::new(url, StreamProtocol::Twilio)
    }

    #[test]
    fn servers_urls_become_websocket_urls() {
        assert_eq!(
            websocket_url("http://10.0.0.2:7880/", "/rooms/r/ws?x=1").as_deref(),
            Some("ws://10.0.0.2:7880/rooms/r/ws?x=1")
        );
        assert_eq!(
            websocket_url("https://sb-1:7880", "/rtc").as_deref(),
            Some("wss://sb-1:7880/rtc")
        );
        assert_eq!(
            websocket_url("wss://lk.example.com", "/rtc").as_deref(),
            Some("wss://lk.example.com/rtc")
        );
        assert_eq!(websocket_url("ftp://x", "/rtc"), None);
    }

    #[test]
    fn urls_need_ws_or_wss_and_a_host_and_get_a_path() {
        let t = parse_url("ws://bot.example:8765").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tls),
            ("bot.example", 8765, false)
        );
        assert_eq!(t.uri.path(), "/");
        let t = parse_url("WSS://[::1]/ws/tok?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 443, true));
        assert_eq!(t.uri.path_and_query().unwrap().as_str(), "/ws/tok?x=1");
        for bad in ["http://bot/ws", "bot:80/ws", "/ws", "ws://", "ws:// bad"] {
            assert!(
                matches!(parse_url(bad), Err(StreamError::InvalidUrl(_))),
                "{bad}"
            );
        }
        // The error never repeats the URL (it may carry a token).
        let e = parse_url("https://bot/ws/secret-token").err().unwrap();
        assert!(!e.to_string().contains("secret-token"), "{e}");
    }

    #[test]
    fn header_values_with_line_breaks_are_refused_without_showing_them() {
        let e = header("Authorization", "Bearer a\r\nX-Evil: 1").unwrap_err();
        assert_eq!(
            e,
            StreamError::InvalidHeader {
                name: "Authorization".into(),
                reason: "the value contains CR, LF or NUL"
            }
        );
        assert!(!e.to_string().contains("Bearer"));
        assert!(header("Bad Name", "v").is_err());
        assert!(header("Sec-WebSocket-Key", "x").is_err());
        assert!(header("X-Token", "abc").is_ok());
    }

    #[tokio::test]
    async fn bad_urls_and_headers_fail_before_any_connection() {
        let mut s = spec("ws://127.0.0.1:9/ws");
        s.origin = Some("https://a\nb".into());
        assert!(matches!(
            connect(&s).await,
            Err(StreamError::InvalidHeader { name, .. }) if name == "Origin"
        ));
        assert!(matches!(
            connect(&spec("ftp://x/")).await,
            Err(StreamError::InvalidUrl(_))
        ));
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_a_dns_error() {
        // `.invalid` never resolves (RFC 6761).
        let e = connect(&spec("ws://no-such-bot.invalid/ws"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StreamError::Dns { host, .. } if host == "no-such-bot.invalid")
                || matches!(
                    e,
                    StreamError::Timeout {
                        stage: ConnectStage::Dns,
                        ..
                    }
                ),
            "{e}"
        );
    }
}
