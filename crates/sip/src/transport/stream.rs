//! Stream connections (TCP and TLS): accepting, dialling, and one task pair
//! per connection that frames what it reads and writes what it is given.

use super::{Input, Shared};
use crate::framing::{Frame, StreamDecoder};
use crate::{ConnectionId, Flow, Limits, Transport};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

#[derive(Clone)]
pub(crate) struct StreamContext {
    pub limits: Limits,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub connect_timeout: Duration,
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    pub input: mpsc::Sender<Input>,
    pub shared_connections: Arc<Shared>,
}

impl StreamContext {
    fn try_reserve_connection(&self) -> bool {
        let counter = &self.shared_connections.connections;
        let mut current = counter.load(Ordering::Relaxed);
        loop {
            if current >= self.max_connections {
                return false;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Counts a connection from `ip` unless the source already holds
    /// `max_connections_per_ip` (sources exempt from the guard excepted).
    fn try_reserve_for_ip(&self, ip: std::net::IpAddr) -> bool {
        let exempt = self.shared_connections.endpoint().is_guard_exempt(ip);
        let mut per_ip = self
            .shared_connections
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_connections_per_ip && !exempt {
            return false;
        }
        *count += 1;
        true
    }

    fn release_for_ip(&self, ip: std::net::IpAddr) {
        let mut per_ip = self
            .shared_connections
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    fn release_connection(&self) {
        self.shared_connections
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }

    fn next_id(&self) -> ConnectionId {
        ConnectionId(
            self.shared_connections
                .next_connection
                .fetch_add(1, Ordering::Relaxed),
        )
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    ctx: StreamContext,
) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, do not spin.
                warn!(error = %e, transport = transport.as_str(), "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let banned = ctx
            .shared_connections
            .endpoint()
            .is_banned(remote.ip(), std::time::Instant::now());
        if banned {
            drop(tcp);
            continue;
        }
        if !ctx.try_reserve_connection() {
            info!(peer = %remote, transport = transport.as_str(), "connection limit reached; connection refused");
            drop(tcp);
            continue;
        }
        if !ctx.try_reserve_for_ip(remote.ip()) {
            ctx.release_connection();
            info!(peer = %remote, transport = transport.as_str(), "per-source connection limit reached; connection refused");
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let local = match tcp.local_addr() {
            Ok(addr) => addr,
            Err(_) => {
                ctx.release_for_ip(remote.ip());
                ctx.release_connection();
                continue;
            }
        };
        let flow = Flow {
            transport,
            local,
            remote,
            connection: Some(ctx.next_id()),
        };
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => run_connection(&ctx, tcp, flow, None).await,
                Some(acceptor) => {
                    match tokio::time::timeout(ctx.connect_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => run_connection(&ctx, tls, flow, None).await,
                        Ok(Err(e)) => debug!(peer = %remote, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(peer = %remote, "TLS handshake timed out"),
                    }
                }
            }
            ctx.release_for_ip(remote.ip());
            ctx.release_connection();
        });
    }
}

/// Dials `addr` for a request with no connection to ride on.
pub(crate) async fn connect(
    ctx: StreamContext,
    id: ConnectionId,
    transport: Transport,
    addr: SocketAddr,
) {
    let failed = |ctx: &StreamContext| {
        let input = ctx.input.clone();
        async move {
            let _ = input.send(Input::ConnectFailed { transport, addr }).await;
        }
    };
    if !ctx.try_reserve_connection() {
        info!(peer = %addr, "connection limit reached; cannot dial");
        failed(&ctx).await;
        return;
    }
    let tcp = match tokio::time::timeout(ctx.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            info!(peer = %addr, error = %e, "connect failed");
            ctx.release_connection();
            failed(&ctx).await;
            return;
        }
        Err(_) => {
            info!(peer = %addr, "connect timed out");
            ctx.release_connection();
            failed(&ctx).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(addr);
    let flow = Flow {
        transport,
        local,
        remote: addr,
        connection: Some(id),
    };
    match transport {
        Transport::Tls => {
            let Some(config) = ctx.tls_client.clone() else {
                warn!(peer = %addr, "no TLS client configuration; cannot dial TLS");
                ctx.release_connection();
                failed(&ctx).await;
                return;
            };
            let connector = tokio_rustls::TlsConnector::from(config);
            let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
            match tokio::time::timeout(ctx.connect_timeout, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => run_connection(&ctx, tls, flow, Some((transport, addr))).await,
                _ => {
                    info!(peer = %addr, "TLS handshake with peer failed");
                    ctx.release_connection();
                    failed(&ctx).await;
                    return;
                }
            }
        }
        _ => run_connection(&ctx, tcp, flow, Some((transport, addr))).await,
    }
    ctx.release_connection();
}

async fn run_connection<S>(
    ctx: &StreamContext,
    stream: S,
    flow: Flow,
    dialled: Option<(Transport, SocketAddr)>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Bytes>(512);
    if ctx
        .input
        .send(Input::Opened {
            flow,
            writer: tx,
            dialled,
        })
        .await
        .is_err()
    {
        return;
    }
    let write_timeout = ctx.write_timeout;
    let peer = flow.remote;
    let write_task = tokio::spawn(async move {
        while let Some(payload) = rx.recv().await {
            // A peer that stops reading cannot hold the task, the socket
            // and the queued answers for ever.
            match tokio::time::timeout(write_timeout, writer.write_all(&payload)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    info!(peer = %peer, "write timed out; connection closed");
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(write_timeout, writer.shutdown()).await;
    });
    let mut decoder = StreamDecoder::new(ctx.limits.clone());
    let mut buf = vec![0u8; 16 * 1024];
    let mut half_closed = false;
    // Only a complete SIP message resets the idle clock: keep-alives and
    // bytes trickled into a message that never completes do not.
    let mut idle_deadline = tokio::time::Instant::now() + ctx.idle_timeout;
    loop {
        let read = tokio::time::timeout_at(idle_deadline, reader.read(&mut buf)).await;
        let n = match read {
            Err(_) => {
                debug!(peer = %flow.remote, "idle connection closed");
                break;
            }
            Ok(Err(e)) => {
                debug!(peer = %flow.remote, error = %e, "connection read error");
                break;
            }
            Ok(Ok(0)) => {
                // End of stream: whatever is left is answered like the tail
                // of a datagram, and the write side stays open until the
                // answers are out.
                if let Some(frame) = decoder.finish() {
                    deliver(ctx, flow, frame).await;
                }
                half_closed = true;
                break;
            }
            Ok(Ok(n)) => n,
        };
        decoder.push(&buf[..n]);
        let mut fatal = false;
        while let Some(frame) = decoder.next_frame() {
            fatal |= matches!(frame, Frame::Error(..));
            if matches!(frame, Frame::Message(_)) {
                idle_deadline = tokio::time::Instant::now() + ctx.idle_timeout;
            }
            deliver(ctx, flow, frame).await;
        }
        if fatal {
            half_closed = true;
            break;
        }
    }
    if half_closed {
        let _ = ctx.input.send(Input::ReadClosed { flow }).await;
        // The driver closes the connection once every request that came on
        // it is answered; a transaction user that never answers cannot hold
        // the socket longer than the idle timeout.
        let mut write_task = write_task;
        if tokio::time::timeout(ctx.idle_timeout, &mut write_task)
            .await
            .is_err()
        {
            let _ = ctx.input.send(Input::Closed { flow }).await;
            let _ = write_task.await;
        }
        // Closing a socket with unread input makes the kernel send RST,
        // which can destroy the answer just written (a framing error stops
        // reading mid-message). Read and discard what is left, briefly.
        drain(&mut reader, &mut buf).await;
        return;
    }
    let _ = ctx.input.send(Input::Closed { flow }).await;
    // The writer ends once the driver drops its sender, after flushing.
    let _ = write_task.await;
}

/// Reads and discards until end of stream, at most 1 MiB or 2 seconds.
async fn drain<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) {
    let mut left: usize = 1 << 20;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while left > 0 {
        match tokio::time::timeout_at(deadline, reader.read(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => left = left.saturating_sub(n),
        }
    }
}

async fn deliver(ctx: &StreamContext, flow: Flow, frame: Frame) {
    let input = match frame {
        Frame::Message(data) => Input::Message { flow, data },
        Frame::KeepAlive => Input::KeepAlive { flow },
        Frame::Error(error, head) => Input::FrameError { flow, error, head },
    };
    // A stream applies back-pressure: wait for the driver rather than drop.
    let _ = ctx.input.send(input).await;
}
