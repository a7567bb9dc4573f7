//! One receiver's HTTP client: resolution, TCP, TLS and an HTTP/1.1
//! connection, kept open between events.
//!
//! Built on hyper's `client::conn::http1` rather than hyper-util's legacy
//! pooled `Client`: a sender has at most one request in flight, so a pool
//! has nothing to do, https:// through the legacy client would need
//! hyper-rustls (not in the tree) or a hand-written connector, and doing
//! each step here keeps every failure distinct in the log ("connection
//! refused by 10.0.0.5:8080", "TLS with hooks.example.com failed: …")
//! instead of one opaque "client error (Connect)".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsConnector;

use crate::WebhookError;

/// A deadline that never comes, for a timeout too large to add to now.
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// The content type LiveKit sends, "to ensure signature is checked prior
/// to parsing" (a framework that parses `application/json` by itself would
/// hand the receiver a re-encoded body whose hash no longer matches).
pub const CONTENT_TYPE_WEBHOOK: &str = "application/webhook+json";

/// Our `User-Agent`. LiveKit's own is "LiveKit"; receivers do not check it.
const USER_AGENT_VALUE: &str = concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION"));

/// A receiver's URL, parsed once.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The URL as configured: the key of the receiver's cursor in the queue.
    pub url: String,
    /// Host name or address (IPv6 without brackets): safe to log, unlike
    /// the path and query, which may carry the receiver's own token.
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The request target (origin form: path and query).
    path: Uri,
    /// The `Host` header: the URL's authority.
    host_header: HeaderValue,
}

impl Target {
    /// Parses and checks a URL: http or https, a host, no user info, no CR,
    /// LF or other control characters. Errors name the URL's position in
    /// the list, not the URL.
    pub(crate) fn parse(index: usize, url: &str) -> Result<Target, WebhookError> {
        let refuse = |reason: String| WebhookError::InvalidUrl { index, reason };
        // Header injection through the URL would reach the request line.
        if url.chars().any(char::is_control) {
            return Err(refuse(
                "contains CR, LF or another control character".into(),
            ));
        }
        let uri: Uri = url.parse().map_err(|e| refuse(format!("{e}")))?;
        let tls = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(refuse(format!("scheme {other:?} is not http or https"))),
            None => return Err(refuse("no scheme (http:// or https://)".into())),
        };
        let Some(authority) = uri.authority() else {
            return Err(refuse("no host".into()));
        };
        // The legacy user:password@ form would end up in the Host header.
        if authority.as_str().contains('@') {
            return Err(refuse("user info (user:password@) is not supported".into()));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(refuse("no host".into()));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") => "/",
            Some(p) => p,
        };
        let path: Uri = path.parse().map_err(|e| refuse(format!("{e}")))?;
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|e| refuse(format!("{e}")))?;
        Ok(Target {
            url: url.to_string(),
            host,
            port,
            tls,
            path,
            host_header,
        })
    }
}

/// The host of a URL for logs and `Debug`, or a placeholder if it does
/// not parse. Never the path or query.
pub(crate) fn log_host(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) => uri.host().unwrap_or("<no host>").to_string(),
        Err(_) => "<invalid URL>".to_string(),
    }
}

/// The client TLS configuration trusting the system's CA roots (ring,
/// TLS 1.2 and 1.3). Reads the system store: call it off the async threads.
pub(crate) fn native_tls_config() -> Result<Arc<ClientConfig>, WebhookError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        return Err(WebhookError::Tls(format!(
            "no CA certificates in the system store ({})",
            errors.join("; ")
        )));
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| WebhookError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why an attempt failed. `Display` names the host and the step, never the
/// URL's path or the token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PostError {
    #[error("cannot resolve {host}: {reason}")]
    Dns { host: String, reason: String },
    #[error("connection refused by {addr}")]
    Refused { addr: SocketAddr },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the token could not be made: {0}")]
    Sign(String),
}

/// One receiver's connection, opened on demand and kept while the
/// receiver keeps it alive.
pub(crate) struct Client {
    target: Arc<Target>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub(crate) fn new(
        target: Arc<Target>,
        tls: Option<Arc<ClientConfig>>,
        timeout: Duration,
    ) -> Result<Client, WebhookError> {
        let tls = match (target.tls, tls) {
            (true, Some(config)) => {
                let name = ServerName::try_from(target.host.clone()).map_err(|e| {
                    WebhookError::Tls(format!("{} is not a TLS server name: {e}", target.host))
                })?;
                Some((TlsConnector::from(config), name))
            }
            (true, None) => {
                return Err(WebhookError::Tls(
                    "https:// receiver without a TLS configuration".into(),
                ))
            }
            (false, _) => None,
        };
        Ok(Client {
            target,
            tls,
            timeout,
            conn: None,
        })
    }

    /// POSTs `body` with `authorization` and returns the receiver's status.
    /// The whole attempt (connecting included) takes at most the timeout.
    pub(crate) async fn post(
        &mut self,
        body: &Bytes,
        authorization: &str,
    ) -> Result<StatusCode, PostError> {
        // The timeout is configuration; a huge one means "no limit", not a panic.
        let deadline = Instant::now()
            .checked_add(self.timeout)
            .unwrap_or_else(|| Instant::now() + FAR_FUTURE);
        let authorization =
            HeaderValue::from_str(authorization).map_err(|e| PostError::Sign(e.to_string()))?;
        loop {
            let (mut sender, reused) = match self.conn.take().filter(|c| !c.is_closed()) {
                Some(conn) => (conn, true),
                None => (self.connect(deadline).await?, false),
            };
            let ready = timeout_at(deadline, sender.ready())
                .await
                .map_err(|_| PostError::Timeout(self.timeout))?;
            if let Err(e) = ready {
                // The receiver closed an idle kept-alive connection: not a
                // failure of this attempt, open a fresh one.
                if reused {
                    continue;
                }
                return Err(PostError::Http(e.to_string()));
            }
            let request = self.request(body.clone(), authorization.clone())?;
            let response = match timeout_at(deadline, sender.send_request(request)).await {
                Err(_) => return Err(PostError::Timeout(self.timeout)),
                // Same as above, found only when the request was written:
                // the receiver closed the idle connection as we reused it.
                // It saw no request, so sending again on a new one is safe.
                Ok(Err(e))
                    if reused
                        && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) =>
                {
                    continue
                }
                Ok(Err(e)) => return Err(PostError::Http(e.to_string())),
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            // Read the (ignored) response body so that the connection can
            // carry the next event; within the same deadline, and a body
            // that does not end in time only costs the connection.
            let mut body = response.into_body();
            let drained = timeout_at(deadline, async {
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        return false;
                    }
                }
                true
            })
            .await;
            if matches!(drained, Ok(true)) {
                self.conn = Some(sender);
            }
            return Ok(status);
        }
    }

    fn request(
        &self,
        body: Bytes,
        authorization: HeaderValue,
    ) -> Result<Request<Full<Bytes>>, PostError> {
        Request::builder()
            .method(Method::POST)
            .uri(self.target.path.clone())
            .header(HOST, self.target.host_header.clone())
            .header(CONTENT_TYPE, CONTENT_TYPE_WEBHOOK)
            .header(CONTENT_LENGTH, body.len())
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(AUTHORIZATION, authorization)
            .body(Full::new(body))
            .map_err(|e| PostError::Http(e.to_string()))
    }

    async fn connect(&self, deadline: Instant) -> Result<SendRequest<Full<Bytes>>, PostError> {
        let host = self.target.host.as_str();
        let addrs: Vec<SocketAddr> =
            timeout_at(deadline, tokio::net::lookup_host((host, self.target.port)))
                .await
                .map_err(|_| PostError::Timeout(self.timeout))?
                .map_err(|e| PostError::Dns {
                    host: host.to_string(),
                    reason: e.to_string(),
                })?
                .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match timeout_at(deadline, TcpStream::connect(addr)).await {
                Err(_) => return Err(PostError::Timeout(self.timeout)),
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Some(PostError::Refused { addr });
                }
                Ok(Err(e)) => {
                    last = Some(PostError::Connect {
                        addr,
                        reason: e.to_string(),
                    });
                }
            }
        }
        let Some(tcp) = tcp else {
            return Err(last.unwrap_or_else(|| PostError::Dns {
                host: host.to_string(),
                reason: "no addresses".into(),
            }));
        };
        // Small requests, one at a time: do not wait for more to coalesce.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(TokioIo::new(tcp), deadline, self.timeout).await,
            Some((connector, name)) => {
                let stream = timeout_at(deadline, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| PostError::Timeout(self.timeout))?
                    .map_err(|e| PostError::Tls {
                        host: host.to_string(),
                        reason: e.to_string(),
                    })?;
                handshake(TokioIo::new(stream), deadline, self.timeout).await
            }
        }
    }
}

/// The HTTP/1.1 handshake over a connected socket; the connection runs on
/// its own task until the sender drops its end (or the receiver closes).
async fn handshake<T>(
    io: T,
    deadline: Instant,
    after: Duration,
) -> Result<SendRequest<Full<Bytes>>, PostError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = timeout_at(deadline, http1::handshake(io))
        .await
        .map_err(|_| PostError::Timeout(after))?
        .map_err(|e| PostError::Http(e.to_string()))?;
    tokio::spawn(async move {
        // Its errors surface through the sender as the request's error.
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_and_https() {
        let t = Target::parse(0, "http://127.0.0.1:8080/hooks?k=v").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 8080, false));
        assert_eq!(t.path.to_string(), "/hooks?k=v");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        let t = Target::parse(0, "https://hooks.example.com").unwrap();
        assert_eq!((t.port, t.tls), (443, true));
        assert_eq!(t.path.to_string(), "/");
        let t = Target::parse(0, "http://[::1]:9/").unwrap();
        assert_eq!(t.host, "::1");
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "ftp://example.com/",
            "example.com/hook",
            "http:///path",
            "http://example.com/a\r\nX-Evil: 1",
            "http://example.com/\n",
            "http://user:pw@example.com/",
            "",
        ] {
            assert!(Target::parse(3, url).is_err(), "{url:?}");
        }
        let err = Target::parse(3, "http://x/\r\n").unwrap_err().to_string();
        assert!(err.contains("#3"), "{err}");
        assert!(!err.contains("http://x"), "{err}");
    }

    #[test]
    fn log_host_is_host_only() {
        assert_eq!(
            log_host("https://h.example.com/p?token=s3cret"),
            "h.example.com"
        );
        assert_eq!(log_host("::::"), "<invalid URL>");
    }
}
