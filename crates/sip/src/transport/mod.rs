//! The tokio driver of the [`Endpoint`]: UDP, TCP and TLS sockets, the
//! connection table, and the clock.
//!
//! One task owns the sockets' write side and feeds the endpoint; reader
//! tasks (one per UDP socket, one per stream connection) frame what they
//! receive and pass it on. The endpoint sits behind a mutex that the
//! transaction user's calls ([`SipHandle`]) take briefly; after each call the
//! driver is woken to send what the call produced.
//!
//! Responses go back along the flow of their request: the same UDP socket
//! to the packet's source, or the same stream connection. Requests to an
//! address reuse a connection to it when one exists.

mod stream;
pub mod tls;

use crate::core::{ClientTxnId, RespondError, ServerTxnId, Stats};
use crate::counts::{MessageCounters, MessageCounts};
use crate::dialog::{Dialog, DialogId};
use crate::framing::FramingError;
use crate::message::{Request, ResponseSpec};
use crate::tap::{MessageTap, TappedMessage};
use crate::{ConnectionId, Destination, Endpoint, EndpointConfig, Event, Flow, Limits, Transport};
use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Sockets, limits and timeouts of the transport layer.
#[derive(Clone)]
pub struct TransportConfig {
    /// UDP bind address; `None` disables UDP.
    pub udp: Option<SocketAddr>,
    /// TCP bind address; `None` disables TCP.
    pub tcp: Option<SocketAddr>,
    /// TLS bind address with its server configuration; `None` disables TLS.
    pub tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    /// Client TLS configuration for outbound TLS connections.
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// Message size limits.
    pub limits: Limits,
    /// Most stream connections open at once (both directions); further
    /// accepts are closed at once.
    pub max_connections: usize,
    /// Most stream connections one source address may hold open (sources
    /// exempt from the guard are not limited).
    pub max_connections_per_ip: usize,
    /// A stream connection with no complete SIP message for this long is
    /// closed: CRLF keep-alives and a message trickled byte by byte do not
    /// keep it open.
    pub idle_timeout: Duration,
    /// A write that cannot complete in this long (a peer that does not
    /// read) closes the connection.
    pub write_timeout: Duration,
    /// How long an outbound TCP connect (and TLS handshake) may take.
    pub connect_timeout: Duration,
    /// Most requests waiting for the transaction user; beyond it new
    /// requests are refused with 503.
    pub max_pending_requests: usize,
    /// UDP receive buffer size requested from the kernel.
    pub udp_recv_buffer: usize,
    /// Where every message received (from sources not banned) and sent is
    /// reported, for per-call SIP traces.
    pub tap: Option<Arc<dyn MessageTap>>,
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            udp: None,
            tcp: None,
            tls: None,
            tls_client: None,
            limits: Limits::default(),
            max_connections: 4096,
            max_connections_per_ip: 64,
            idle_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_pending_requests: 10_000,
            udp_recv_buffer: 4 << 20,
            tap: None,
        }
    }
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.as_ref().map(|(addr, _)| addr))
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// The addresses actually bound (ports resolved when 0 was asked for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundAddrs {
    /// UDP.
    pub udp: Option<SocketAddr>,
    /// TCP.
    pub tcp: Option<SocketAddr>,
    /// TLS.
    pub tls: Option<SocketAddr>,
}

/// What reader tasks tell the driver.
pub(crate) enum Input {
    Datagram {
        flow: Flow,
        data: Bytes,
    },
    Message {
        flow: Flow,
        data: Bytes,
    },
    FrameError {
        flow: Flow,
        error: FramingError,
        head: Bytes,
    },
    KeepAlive {
        flow: Flow,
    },
    Opened {
        flow: Flow,
        writer: mpsc::Sender<Bytes>,
        dialled: Option<(Transport, SocketAddr)>,
    },
    /// The peer finished sending (half-close): keep writing until what
    /// it asked for is answered.
    ReadClosed {
        flow: Flow,
    },
    Closed {
        flow: Flow,
    },
    ConnectFailed {
        transport: Transport,
        addr: SocketAddr,
    },
}

struct Shared {
    endpoint: Mutex<Endpoint>,
    wake: Notify,
    pending_requests: AtomicUsize,
    connections: AtomicUsize,
    /// Open stream connections per source address.
    per_ip: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    next_connection: AtomicU64,
    /// Messages received and sent, by method or class.
    counters: MessageCounters,
}

impl Shared {
    fn endpoint(&self) -> MutexGuard<'_, Endpoint> {
        // A panic while holding the lock would be a bug in the endpoint; the
        // state it leaves is still the best there is, so carry on with it.
        self.endpoint.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The transaction user's handle on the running endpoint. Cheap to clone.
#[derive(Clone)]
pub struct SipHandle {
    shared: Arc<Shared>,
}

impl SipHandle {
    fn with<T>(&self, f: impl FnOnce(&mut Endpoint, Instant) -> T) -> T {
        let result = f(&mut self.shared.endpoint(), Instant::now());
        self.shared.wake.notify_one();
        result
    }

    /// Sends a response in a server transaction.
    pub fn respond(&self, txn: ServerTxnId, spec: ResponseSpec) -> Result<(), RespondError> {
        self.with(|ep, now| ep.respond(now, txn, spec))
    }

    /// Sends a request in a new client transaction.
    pub fn send_request(&self, request: Request, destination: Destination) -> ClientTxnId {
        self.with(|ep, now| ep.send_request(now, request, destination))
    }

    /// Sends the ACK for a 2xx.
    pub fn send_ack(&self, request: Request, destination: Destination) {
        self.with(|ep, _| ep.send_ack(request, destination))
    }

    /// Cancels a pending INVITE.
    pub fn cancel(&self, txn: ClientTxnId) -> bool {
        self.with(|ep, now| ep.cancel(now, txn))
    }

    /// Enters or leaves the drain state.
    pub fn set_draining(&self, draining: bool) {
        self.with(|ep, _| ep.set_draining(draining))
    }

    /// Sets the To tag of a server transaction before its first tagged
    /// response.
    pub fn set_local_tag(&self, txn: ServerTxnId, tag: &str) -> bool {
        self.with(|ep, _| ep.set_local_tag(txn, tag))
    }

    /// The To tag of a server transaction.
    pub fn local_tag(&self, txn: ServerTxnId) -> Option<String> {
        self.with(|ep, _| ep.local_tag(txn).map(str::to_string))
    }

    /// Registers a dialog.
    pub fn insert_dialog(&self, dialog: Dialog) {
        self.with(|ep, _| ep.insert_dialog(dialog))
    }

    /// Forgets a dialog.
    pub fn remove_dialog(&self, id: &DialogId) -> Option<Dialog> {
        self.with(|ep, _| ep.remove_dialog(id))
    }

    /// Runs `f` on a registered dialog (to build an in-dialog request).
    pub fn with_dialog<T>(&self, id: &DialogId, f: impl FnOnce(&mut Dialog) -> T) -> Option<T> {
        self.with(|ep, _| ep.dialog_mut(id).map(f))
    }

    /// Whether a transport listens, so our Via and Contact can name it.
    pub fn advertises(&self, transport: crate::Transport) -> bool {
        self.with(|ep, _| ep.advertises(transport))
    }

    /// The host we advertise (Via, Contact, From of our requests).
    pub fn advertised_host(&self) -> String {
        self.with(|ep, _| ep.advertised_host().to_string())
    }

    /// Our Contact URI for a transport (see [`Endpoint::contact_uri`]).
    pub fn contact_uri(&self, transport: crate::Transport) -> String {
        self.with(|ep, _| ep.contact_uri(transport))
    }

    /// Endpoint counters.
    pub fn stats(&self) -> Stats {
        self.with(|ep, _| ep.stats())
    }

    /// Live server and client transactions.
    pub fn transaction_count(&self) -> (usize, usize) {
        self.with(|ep, _| ep.transaction_count())
    }

    /// Dialogs registered now.
    pub fn dialog_count(&self) -> usize {
        self.with(|ep, _| ep.dialog_count())
    }

    /// SIP messages received and sent so far, by method or class.
    pub fn message_counts(&self) -> MessageCounts {
        self.shared.counters.snapshot()
    }

    /// Counts an offence of a source (see [`Endpoint::report_offence`]);
    /// whether the source is banned now.
    pub fn report_offence(&self, ip: std::net::IpAddr, offence: crate::Offence) -> bool {
        self.with(|ep, now| ep.report_offence(now, ip, offence))
    }

    /// The bans in force.
    pub fn bans(&self) -> Vec<crate::Ban> {
        self.with(|ep, now| ep.bans(now))
    }

    /// Applies a ban another replica made.
    pub fn ban_from_peer(&self, ip: std::net::IpAddr, remaining: Duration) {
        self.with(|ep, now| ep.ban_from_peer(now, ip, remaining))
    }

    /// Bans made here since the last call, to share with other replicas.
    pub fn take_new_bans(&self) -> Vec<crate::Ban> {
        self.with(|ep, _| ep.take_new_bans())
    }

    /// Lifts a ban; whether there was one.
    pub fn lift_ban(&self, ip: std::net::IpAddr) -> bool {
        self.with(|ep, now| ep.lift_ban(now, ip))
    }

    /// Sets the networks exempt from the source guard besides the trusted
    /// ones (the trunks' allowed addresses).
    pub fn set_guard_exempt(&self, networks: Vec<ipnet::IpNet>) {
        self.with(|ep, _| ep.set_guard_exempt(networks))
    }

    /// The source guard's counters.
    pub fn guard_stats(&self) -> crate::GuardStats {
        self.with(|ep, now| ep.guard_stats(now))
    }

    /// Open stream connections.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

/// Receives the endpoint's events. Requests count against
/// `max_pending_requests` until they are received here.
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<Event>,
    shared: Arc<Shared>,
}

impl EventReceiver {
    /// The next event, or `None` when the stack has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.rx.recv().await?;
        if matches!(event, Event::Request(_)) {
            self.shared.pending_requests.fetch_sub(1, Ordering::Relaxed);
        }
        Some(event)
    }
}

/// A running SIP stack: the endpoint, its sockets and their tasks.
pub struct SipStack {
    /// The handle for the transaction user.
    pub handle: SipHandle,
    /// The events for the transaction user.
    pub events: EventReceiver,
    /// The addresses bound.
    pub bound: BoundAddrs,
    /// The stack's tasks; dropping this stops them.
    pub tasks: StackTasks,
}

/// The tasks of a running stack. Dropping it stops them and closes the
/// sockets.
pub struct StackTasks(Vec<JoinHandle<()>>);

impl Drop for StackTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl SipStack {
    /// Binds the configured sockets and starts the endpoint. Advertised
    /// ports left at 0 take the bound port.
    pub async fn start(
        transport: TransportConfig,
        mut endpoint: EndpointConfig,
    ) -> io::Result<SipStack> {
        let mut bound = BoundAddrs::default();
        let udp = match transport.udp {
            Some(addr) => {
                let socket = bind_udp(addr, transport.udp_recv_buffer)?;
                bound.udp = Some(socket.local_addr()?);
                Some(Arc::new(socket))
            }
            None => None,
        };
        let tcp = match transport.tcp {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await?;
                bound.tcp = Some(listener.local_addr()?);
                Some(listener)
            }
            None => None,
        };
        let tls = match &transport.tls {
            Some((addr, config)) => {
                let listener = TcpListener::bind(addr).await?;
                bound.tls = Some(listener.local_addr()?);
                Some((listener, config.clone()))
            }
            None => None,
        };
        let ports = &mut endpoint.advertised_ports;
        if ports.udp == 0 {
            ports.udp = bound.udp.map(|a| a.port()).unwrap_or(0);
        }
        if ports.tcp == 0 {
            ports.tcp = bound.tcp.map(|a| a.port()).unwrap_or(0);
        }
        if ports.tls == 0 {
            ports.tls = bound.tls.map(|a| a.port()).unwrap_or(0);
        }
        let shared = Arc::new(Shared {
            endpoint: Mutex::new(Endpoint::new(endpoint)),
            wake: Notify::new(),
            pending_requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            per_ip: Mutex::new(std::collections::HashMap::new()),
            next_connection: AtomicU64::new(1),
            counters: MessageCounters::default(),
        });
        let (input_tx, input_rx) = mpsc::channel::<Input>(8192);
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        if let Some(socket) = &udp {
            tasks.push(tokio::spawn(udp_reader(
                socket.clone(),
                input_tx.clone(),
                transport.limits.max_message_bytes,
            )));
        }
        let streams = stream::StreamContext {
            limits: transport.limits.clone(),
            idle_timeout: transport.idle_timeout,
            write_timeout: transport.write_timeout,
            max_connections: transport.max_connections,
            max_connections_per_ip: transport.max_connections_per_ip,
            connect_timeout: transport.connect_timeout,
            tls_client: transport.tls_client.clone(),
            input: input_tx.clone(),
            shared_connections: shared.clone(),
        };
        if let Some(listener) = tcp {
            tasks.push(tokio::spawn(stream::accept_loop(
                listener,
                Transport::Tcp,
                None,
                streams.clone(),
            )));
        }
        if let Some((listener, config)) = tls {
            tasks.push(tokio::spawn(stream::accept_loop(
                listener,
                Transport::Tls,
                Some(tokio_rustls::TlsAcceptor::from(config)),
                streams.clone(),
            )));
        }
        let driver = Driver {
            shared: shared.clone(),
            udp,
            connections: HashMap::new(),
            closing: HashMap::new(),
            by_addr: HashMap::new(),
            pending: HashMap::new(),
            events: event_tx,
            streams,
            max_pending_requests: transport.max_pending_requests,
            tap: transport.tap.clone(),
            bound,
        };
        tasks.push(tokio::spawn(driver.run(input_rx)));
        info!(udp = ?bound.udp, tcp = ?bound.tcp, tls = ?bound.tls, "SIP transports listening");
        Ok(SipStack {
            handle: SipHandle {
                shared: shared.clone(),
            },
            events: EventReceiver {
                rx: event_rx,
                shared,
            },
            bound,
            tasks: StackTasks(tasks),
        })
    }
}

fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // A larger buffer absorbs bursts of INVITEs; the kernel may clamp it.
    if let Err(e) = socket.set_recv_buffer_size(recv_buffer) {
        debug!(error = %e, "could not set the UDP receive buffer size");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn udp_reader(socket: Arc<UdpSocket>, input: mpsc::Sender<Input>, max: usize) {
    let local = match socket.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            warn!(error = %e, "UDP socket has no local address; reader stopped");
            return;
        }
    };
    // One byte more than the limit so an oversized datagram is seen as such.
    let mut buf = vec![0u8; max.max(1500) + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, remote)) => {
                if len == 0 || buf[..len].iter().all(|b| *b == b'\r' || *b == b'\n') {
                    // Keep-alive datagrams (CRLF) are not answered on UDP.
                    continue;
                }
                let flow = Flow {
                    transport: Transport::Udp,
                    local,
                    remote,
                    connection: None,
                };
                let data = Bytes::copy_from_slice(&buf[..len]);
                if input.try_send(Input::Datagram { flow, data }).is_err() {
                    // The driver is behind: dropping is what UDP does, and the
                    // sender's retransmission will try again.
                    debug!(peer = %remote, "SIP input queue full; datagram dropped");
                }
            }
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here on
                // some systems; it is not fatal for the socket.
                debug!(error = %e, "UDP receive error");
            }
        }
    }
}

struct Connection {
    writer: mpsc::Sender<Bytes>,
}

struct Driver {
    shared: Arc<Shared>,
    udp: Option<Arc<UdpSocket>>,
    connections: HashMap<ConnectionId, Connection>,
    closing: HashMap<ConnectionId, Flow>,
    by_addr: HashMap<(Transport, SocketAddr), ConnectionId>,
    pending: HashMap<(Transport, SocketAddr), Vec<Bytes>>,
    events: mpsc::UnboundedSender<Event>,
    streams: stream::StreamContext,
    max_pending_requests: usize,
    tap: Option<Arc<dyn MessageTap>>,
    bound: BoundAddrs,
}

impl Driver {
    async fn run(mut self, mut input: mpsc::Receiver<Input>) {
        loop {
            let deadline = self.shared.endpoint().poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                received = input.recv() => {
                    let Some(first) = received else { return };
                    self.handle_input(first);
                    // Take what else is queued before flushing, in batches.
                    for _ in 0..64 {
                        match input.try_recv() {
                            Ok(next) => self.handle_input(next),
                            Err(_) => break,
                        }
                    }
                }
                _ = self.shared.wake.notified() => {}
                _ = sleep => {
                    self.shared.endpoint().handle_timeout(Instant::now());
                }
            }
            self.flush();
            self.close_finished();
        }
    }

    fn handle_input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Datagram { flow, data } | Input::Message { flow, data } => {
                let heard = self.shared.endpoint().handle_message(now, flow, &data);
                if heard {
                    self.shared.counters.count(false, &data);
                    if let Some(tap) = &self.tap {
                        tap.tapped(TappedMessage {
                            at: std::time::SystemTime::now(),
                            sent: false,
                            transport: flow.transport,
                            local: flow.local,
                            remote: flow.remote,
                            data: &data,
                            call_id: crate::tap::peek_call_id(&data),
                        });
                    }
                }
            }
            Input::FrameError { flow, error, head } => {
                self.shared
                    .endpoint()
                    .handle_frame_error(flow, &error, &head);
            }
            Input::KeepAlive { flow } => self.shared.endpoint().handle_keepalive(flow),
            Input::Opened {
                flow,
                writer,
                dialled,
            } => {
                let Some(id) = flow.connection else { return };
                self.by_addr.insert((flow.transport, flow.remote), id);
                if let Some(key) = dialled {
                    self.by_addr.insert(key, id);
                    for payload in self.pending.remove(&key).unwrap_or_default() {
                        if writer.try_send(payload).is_err() {
                            debug!(peer = %flow.remote, "connection writer full; message dropped");
                        }
                    }
                }
                self.connections.insert(id, Connection { writer });
            }
            Input::ReadClosed { flow } => {
                if let Some(id) = flow.connection {
                    self.closing.insert(id, flow);
                }
            }
            Input::Closed { flow } => self.close(flow),
            Input::ConnectFailed { transport, addr } => {
                self.pending.remove(&(transport, addr));
                self.shared
                    .endpoint()
                    .transport_failed(Destination::Address { transport, addr });
            }
        }
    }

    fn close(&mut self, flow: Flow) {
        let Some(id) = flow.connection else { return };
        self.closing.remove(&id);
        if let Some(conn) = self.connections.remove(&id) {
            self.by_addr.retain(|_, c| *c != id);
            // Dropping the writer lets it flush what is queued and close the
            // socket.
            drop(conn);
        }
        self.shared
            .endpoint()
            .transport_failed(Destination::Flow(flow));
    }

    /// Closes half-closed connections once nothing arrived on them awaits
    /// an answer.
    fn close_finished(&mut self) {
        if self.closing.is_empty() {
            return;
        }
        // Transmits are taken under the same lock as the check: an answer
        // given by the transaction user after the last flush is still queued
        // in the endpoint, and closing first would drop it.
        let (transmits, done): (Vec<_>, Vec<Flow>) = {
            let mut ep = self.shared.endpoint();
            let transmits = std::iter::from_fn(|| ep.poll_transmit()).collect();
            let done = self
                .closing
                .iter()
                .filter(|(id, _)| !ep.awaits_response_on(**id))
                .map(|(_, flow)| *flow)
                .collect();
            (transmits, done)
        };
        for transmit in transmits {
            self.send(transmit.destination, transmit.payload);
        }
        for flow in done {
            self.close(flow);
        }
    }

    fn flush(&mut self) {
        let (transmits, events) = {
            let mut ep = self.shared.endpoint();
            let transmits: Vec<_> = std::iter::from_fn(|| ep.poll_transmit()).collect();
            let events: Vec<_> = std::iter::from_fn(|| ep.poll_event()).collect();
            (transmits, events)
        };
        for transmit in transmits {
            self.send(transmit.destination, transmit.payload);
        }
        for event in events {
            if let Event::Request(incoming) = &event {
                let pending = self.shared.pending_requests.load(Ordering::Relaxed);
                if pending >= self.max_pending_requests {
                    warn!(peer = %incoming.flow.remote, "transaction user is behind; request refused");
                    let spec = ResponseSpec::new(503)
                        .reason("Overloaded")
                        .header(crate::message::HeaderName::RetryAfter, "5");
                    let _ = self
                        .shared
                        .endpoint()
                        .respond(Instant::now(), incoming.txn, spec);
                    let again: Vec<_> = {
                        let mut ep = self.shared.endpoint();
                        std::iter::from_fn(|| ep.poll_transmit()).collect()
                    };
                    for t in again {
                        self.send(t.destination, t.payload);
                    }
                    continue;
                }
                self.shared.pending_requests.fetch_add(1, Ordering::Relaxed);
            }
            if self.events.send(event).is_err() {
                debug!("no transaction user; event dropped");
            }
        }
    }

    fn send(&mut self, destination: Destination, payload: Bytes) {
        self.shared.counters.count(true, &payload);
        self.tap_sent(destination, &payload);
        match destination {
            Destination::Flow(flow) if flow.transport == Transport::Udp => {
                self.send_udp(flow.remote, payload);
            }
            Destination::Flow(flow) => {
                let sent = flow
                    .connection
                    .and_then(|id| self.connections.get(&id))
                    .map(|c| c.writer.try_send(payload).is_ok());
                if sent != Some(true) {
                    debug!(peer = %flow.remote, "connection gone or full; message not sent");
                }
            }
            Destination::Address { transport, addr } => match transport {
                Transport::Udp => self.send_udp(addr, payload),
                Transport::Tcp | Transport::Tls => self.send_stream(transport, addr, payload),
            },
            Destination::Dialog { flow, .. } if flow.transport == Transport::Udp => {
                self.send_udp(flow.remote, payload);
            }
            Destination::Dialog { flow, target } => {
                let open = flow
                    .connection
                    .and_then(|id| self.connections.get(&id))
                    .filter(|c| !c.writer.is_closed());
                let payload = match open {
                    Some(connection) => match connection.writer.try_send(payload) {
                        Ok(()) => return,
                        Err(e) => e.into_inner(),
                    },
                    None => payload,
                };
                // The dialog's connection is gone: a new one to the remote
                // target (or the one already open to it).
                debug!(peer = %target, "dialog connection gone; sending to the remote target");
                self.send_stream(flow.transport, target, payload);
            }
        }
    }

    /// Reports a message about to be sent (not keep-alives) to the tap.
    fn tap_sent(&self, destination: Destination, payload: &[u8]) {
        let Some(tap) = &self.tap else { return };
        if !payload.first().is_some_and(u8::is_ascii_alphabetic) {
            return;
        }
        let (transport, local, remote) = match destination {
            Destination::Flow(flow) | Destination::Dialog { flow, .. } => {
                (flow.transport, flow.local, flow.remote)
            }
            Destination::Address { transport, addr } => {
                let listener = match transport {
                    Transport::Udp => self.bound.udp,
                    Transport::Tcp => self.bound.tcp,
                    Transport::Tls => self.bound.tls,
                };
                // A new stream's own port is not known yet; UDP leaves from
                // the listener.
                let local = match (transport, listener) {
                    (Transport::Udp, Some(addr)) => addr,
                    (_, Some(addr)) => SocketAddr::new(addr.ip(), 0),
                    _ => SocketAddr::from(([0, 0, 0, 0], 0)),
                };
                (transport, local, addr)
            }
        };
        tap.tapped(TappedMessage {
            at: std::time::SystemTime::now(),
            sent: true,
            transport,
            local,
            remote,
            data: payload,
            call_id: crate::tap::peek_call_id(payload),
        });
    }

    fn send_udp(&self, to: SocketAddr, payload: Bytes) {
        match &self.udp {
            Some(socket) => {
                if let Err(e) = socket.try_send_to(&payload, to) {
                    // A full socket buffer: UDP retransmission covers it.
                    debug!(peer = %to, error = %e, "UDP send failed");
                }
            }
            None => debug!(peer = %to, "UDP is disabled; message not sent"),
        }
    }

    fn send_stream(&mut self, transport: Transport, addr: SocketAddr, payload: Bytes) {
        if let Some(conn) = self
            .by_addr
            .get(&(transport, addr))
            .and_then(|id| self.connections.get(id))
        {
            if conn.writer.try_send(payload).is_err() {
                debug!(peer = %addr, "connection writer full; message dropped");
            }
            return;
        }
        let key = (transport, addr);
        let first = !self.pending.contains_key(&key);
        self.pending.entry(key).or_default().push(payload);
        if first {
            let id = ConnectionId(self.shared.next_connection.fetch_add(1, Ordering::Relaxed));
            tokio::spawn(stream::connect(self.streams.clone(), id, transport, addr));
        }
    }
}
