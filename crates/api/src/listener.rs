//! The API's listener: caps on open connections (in all and per source
//! address), an idle timeout, and a deadline for each request's head, so
//! that clients which connect and say nothing, stop mid-request or trickle
//! their headers a byte at a time (slowloris) cannot hold sockets and tasks
//! for ever. (axum's server runs hyper without a timer, so hyper's own
//! header timeout is off: the deadline is kept here.)

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Limits of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once; further clients wait in the
    /// kernel's backlog until one closes.
    pub max_connections: usize,
    /// A connection with no byte read or written for this long is closed
    /// (WebSocket participants exchange audio every 20 ms).
    pub idle_timeout: Duration,
    /// Most connections open at once from one source address; more are
    /// closed as soon as they are accepted.
    pub max_connections_per_ip: usize,
    /// From a request's first byte, its start line and headers must have
    /// arrived within this long, or the connection is closed.
    pub header_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            max_connections_per_ip: 128,
            header_timeout: Duration::from_secs(30),
        }
    }
}

/// Open connections per source address, shared by the listener and the
/// connections it hands out.
#[derive(Clone, Default)]
struct SourceCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl SourceCounts {
    /// Counts one more connection from `ip`, unless it holds `max` already.
    fn admit(&self, ip: IpAddr, max: usize) -> Option<SourceSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            counts: self.clone(),
            ip,
        })
    }
}

/// One connection's place in its source's count, given back when dropped.
pub(crate) struct SourceSlot {
    counts: SourceCounts,
    ip: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A TCP listener that holds a permit per open connection, and speaks TLS
/// when given a server configuration.
pub(crate) struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limits: HttpLimits,
    sources: SourceCounts,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl LimitedListener {
    pub(crate) fn new(
        inner: TcpListener,
        limits: HttpLimits,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> LimitedListener {
        // Timeouts are added to clock readings: configured years would
        // overflow them, and a day is already no limit at all.
        const LONGEST: Duration = Duration::from_secs(24 * 3600);
        let limits = HttpLimits {
            idle_timeout: limits.idle_timeout.min(LONGEST),
            header_timeout: limits.header_timeout.min(LONGEST),
            ..limits
        };
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            sources: SourceCounts::default(),
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
        }
    }
}

/// A connection, plain or TLS. The TLS handshake runs when the connection
/// is first read or written, inside its own task and under its idle
/// timeout, so a client that never finishes it holds up nobody else.
pub(crate) enum Connection {
    Plain(TcpStream),
    Handshake(Box<tokio_rustls::Accept<TcpStream>>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Failed,
}

impl Connection {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Connection::Handshake(accept) = self else {
            return match self {
                Connection::Failed => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "TLS handshake failed",
                ))),
                _ => Poll::Ready(Ok(())),
            };
        };
        match Pin::new(accept.as_mut()).poll(cx) {
            Poll::Ready(Ok(stream)) => {
                *self = Connection::Tls(Box::new(stream));
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                *self = Connection::Failed;
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        match this {
            Connection::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        match this {
            Connection::Plain(s) => Pin::new(s).poll_write(cx, data),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            _ => Poll::Ready(Ok(0)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_flush(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = IdleStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // The semaphore is never closed, so this only waits.
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let max = self.limits.max_connections_per_ip.max(1);
                    let Some(slot) = self.sources.admit(addr.ip(), max) else {
                        // Closed at once (dropping it), its permit back.
                        tracing::debug!(peer = %addr, "API connection over the per-source cap closed");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let connection = match &self.tls {
                        Some(acceptor) => Connection::Handshake(Box::new(acceptor.accept(stream))),
                        None => Connection::Plain(stream),
                    };
                    return (IdleStream::new(connection, permit, slot, self.limits), addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Where a connection is in its current request, for the head deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Between requests: no byte of the next one yet (the idle timeout
    /// applies).
    Awaiting,
    /// The head is arriving: it must end (a blank line) by `due`. `window`
    /// holds the last four bytes read, to find the blank line across reads.
    Reading { due: Instant, window: u32 },
    /// The head is complete: the body, the handling and the answer take as
    /// long as they take.
    Complete,
    /// Switched protocols (a WebSocket): no more HTTP heads.
    Upgraded,
}

/// A connection that fails with `TimedOut` once nothing moved either way
/// for the idle timeout, or a request's head took longer than the header
/// timeout; it gives its permits back when dropped.
pub(crate) struct IdleStream {
    inner: Connection,
    _permit: OwnedSemaphorePermit,
    _slot: SourceSlot,
    idle_timeout: Duration,
    header_timeout: Duration,
    head: Head,
    /// When a byte last moved. Recording it is a clock read; the timer is
    /// only moved when it fires early, not on every 20 ms audio frame.
    last_activity: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl IdleStream {
    fn new(
        inner: Connection,
        permit: OwnedSemaphorePermit,
        slot: SourceSlot,
        limits: HttpLimits,
    ) -> IdleStream {
        IdleStream {
            inner,
            _permit: permit,
            _slot: slot,
            idle_timeout: limits.idle_timeout,
            header_timeout: limits.header_timeout,
            head: Head::Awaiting,
            last_activity: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Follows the request heads through the bytes just read.
    fn read_bytes(&mut self, data: &[u8]) {
        if matches!(self.head, Head::Awaiting) && !data.is_empty() {
            let due = Instant::now() + self.header_timeout;
            self.head = Head::Reading { due, window: 0 };
            // The timer may be set for the idle end, later than this.
            if due < self.deadline.deadline() {
                self.deadline.as_mut().reset(due);
            }
        }
        if let Head::Reading { window, .. } = &mut self.head {
            for &byte in data {
                *window = (*window << 8) | u32::from(byte);
                if *window == u32::from_be_bytes(*b"\r\n\r\n") {
                    self.head = Head::Complete;
                    return;
                }
            }
        }
    }

    /// Follows the answers written: after a final answer the next bytes
    /// read start a new request; after 101 the connection is no longer HTTP.
    fn wrote_bytes(&mut self, data: &[u8]) {
        if self.head == Head::Upgraded || !data.starts_with(b"HTTP/1.1 ") {
            return;
        }
        if data.starts_with(b"HTTP/1.1 101") {
            self.head = Head::Upgraded;
        } else if !data.starts_with(b"HTTP/1.1 1") && self.head == Head::Complete {
            self.head = Head::Awaiting;
        }
    }

    /// Whether the connection has been idle for the whole timeout, or its
    /// request head is overdue; when the timer fires early it is set to
    /// the nearer of the two ends.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            let idle_due = self.last_activity + self.idle_timeout;
            let due = match self.head {
                Head::Reading { due, .. } => due.min(idle_due),
                _ => idle_due,
            };
            if due <= now {
                return true;
            }
            self.deadline.as_mut().reset(due);
        }
    }
}

fn idle_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "idle HTTP connection, or a request head too slow",
    )
}

impl AsyncRead for IdleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.touch();
                    self.read_bytes(&buf.filled()[before..]);
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                    self.wrote_bytes(data);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // A client that does not read is idle too.
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
