//! The thin tokio driver: one [`MediaWorker`] task serves many calls with a
//! single 20 ms tick, instead of a timer and a task per call.
//!
//! Each tick, for every call: read what arrived on its sockets, run
//! [`MediaSession::tick`] with the room's frame, hand the inbound frame and
//! events to the call's [`CallAudio`], and send the transmits. Packets wait
//! in the kernel for at most one tick, which the jitter buffer absorbs; in
//! exchange a call costs no wakeups of its own.
//!
//! The sockets are registered with tokio's reactor, and a socket is read
//! (`recv_from` until `WouldBlock`) only when the reactor has seen it
//! become readable: a call on which nothing arrives costs no system call
//! per tick. [`MediaWorker::receive_syscalls`] counts the reads that do
//! reach the kernel. Registration works on a duplicate of each socket's
//! descriptor (the pair itself goes back to the port quarantine when the
//! call ends), so a call holds four descriptors.
//!
//! Keep a room's participants on one worker: it then mixes during the
//! worker's tick (see [`CallAudio`]), with no clock phase between.

use crate::ports::RtpPorts;
use crate::sdp::NegotiatedMedia;
use crate::session::{CallStats, Channel, FrameStatus, MediaEvent, MediaSession, SessionError};
use crate::tones::ToneKind;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The room side of one call, called from the worker every 20 ms. Both
/// frames are at the session's room rate. Each tick the worker first calls
/// [`CallAudio::inbound`] of all its calls, then [`CallAudio::outbound`] of
/// all, so audio that goes from one call to another on the same worker
/// (through a room that mixes as its members hand over their frames)
/// arrives in the same tick. Implementations must not block.
pub trait CallAudio: Send + 'static {
    /// Fills the next 20 ms to send to the caller; returns false for silence.
    fn outbound(&mut self, frame: &mut [i16]) -> bool;
    /// Takes the caller's next 20 ms.
    fn inbound(&mut self, frame: &[i16], status: FrameStatus);
    /// Takes an event (DTMF, media timeout, latching...).
    fn event(&mut self, event: MediaEvent);
    /// Samples per frame the other side wants now, when its rate can
    /// change (a room follows its members' rates); the session follows
    /// before the next frame. `None`: keep the session's room rate.
    fn room_frame_len(&self) -> Option<usize> {
        None
    }
}

/// Errors of the driver's handles.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The call is no longer on the worker (ended or worker stopped).
    #[error("call is gone")]
    CallGone,
    /// The session refused the request.
    #[error(transparent)]
    Session(#[from] SessionError),
}

type Reply<T> = oneshot::Sender<T>;

enum Command {
    Add {
        id: u64,
        ports: RtpPorts,
        session: Box<MediaSession>,
        audio: Box<dyn CallAudio>,
    },
    Remove {
        id: u64,
    },
    SendDtmf {
        id: u64,
        digits: String,
        reply: Reply<Result<(), DriverError>>,
    },
    PlayTone {
        id: u64,
        tone: Option<ToneKind>,
    },
    Update {
        id: u64,
        media: Box<NegotiatedMedia>,
        reply: Reply<Result<(), DriverError>>,
    },
    Stats {
        id: u64,
        reply: Reply<Option<CallStats>>,
    },
    SetTimeout {
        id: u64,
        timeout: Duration,
        initial: Duration,
    },
}

struct Call {
    id: u64,
    ports: RtpPorts,
    /// The pair's sockets as the reactor sees them (duplicates of the
    /// pair's descriptors), for readiness; `None` if registering failed,
    /// and the call is then read every tick.
    registered: Option<(UdpSocket, UdpSocket)>,
    session: Box<MediaSession>,
    audio: Box<dyn CallAudio>,
    outbound: Vec<i16>,
    inbound: Vec<i16>,
}

/// A worker task serving many calls. Dropping it stops the task.
pub struct MediaWorker {
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
    receive_syscalls: Arc<AtomicU64>,
    tick_lag: Arc<TickLag>,
    task: JoinHandle<()>,
}

/// The upper bounds of the tick-lag buckets, in seconds.
pub const TICK_LAG_BUCKETS: [f64; 7] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];

/// How late a worker's ticks ran, as a histogram: a worker behind its
/// 20 ms clock delays every call's audio on it.
#[derive(Debug, Default)]
pub struct TickLag {
    /// Ticks per bucket of [`TICK_LAG_BUCKETS`], then later than the last.
    buckets: [AtomicU64; TICK_LAG_BUCKETS.len() + 1],
    /// Sum of the lags, µs.
    sum_micros: AtomicU64,
}

/// A copy of a [`TickLag`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickLagCounts {
    /// Ticks per bucket (not cumulative), the last past the last bound.
    pub buckets: [u64; TICK_LAG_BUCKETS.len() + 1],
    /// Sum of the lags, µs.
    pub sum_micros: u64,
}

impl TickLag {
    fn observe(&self, lag: Duration) {
        let secs = lag.as_secs_f64();
        let index = TICK_LAG_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(TICK_LAG_BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TickLagCounts {
        let mut counts = TickLagCounts::default();
        for (out, bucket) in counts.buckets.iter_mut().zip(&self.buckets) {
            *out = bucket.load(Ordering::Relaxed);
        }
        counts.sum_micros = self.sum_micros.load(Ordering::Relaxed);
        counts
    }
}

impl TickLagCounts {
    /// Adds another worker's counts.
    pub fn add(&mut self, other: &TickLagCounts) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a = a.saturating_add(b);
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }
}

/// The gateway's handle on one call. Dropping it ends the call's media and
/// releases its ports into quarantine.
pub struct CallHandle {
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
}

impl MediaWorker {
    /// Spawns a worker on the current tokio runtime.
    pub fn spawn() -> MediaWorker {
        let (commands, receiver) = mpsc::unbounded_channel();
        let receive_syscalls = Arc::new(AtomicU64::new(0));
        let tick_lag = Arc::new(TickLag::default());
        let task = tokio::spawn(run(receiver, receive_syscalls.clone(), tick_lag.clone()));
        MediaWorker {
            commands,
            next_id: AtomicU64::new(1),
            receive_syscalls,
            tick_lag,
            task,
        }
    }

    /// How late this worker's ticks have run.
    pub fn tick_lag(&self) -> TickLagCounts {
        self.tick_lag.snapshot()
    }

    /// Reads of a call's socket that reached the kernel since the worker
    /// started (each `recv_from`, the final `WouldBlock` included). Calls on
    /// which nothing arrives add nothing.
    pub fn receive_syscalls(&self) -> u64 {
        self.receive_syscalls.load(Ordering::Relaxed)
    }

    /// Puts a call on the worker: its sockets, its session and its room side.
    pub fn add_call(
        &self,
        ports: RtpPorts,
        session: MediaSession,
        audio: Box<dyn CallAudio>,
    ) -> CallHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // A send error means the worker stopped; the handle then reports CallGone.
        let _ = self.commands.send(Command::Add {
            id,
            ports,
            session: Box::new(session),
            audio,
        });
        CallHandle {
            id,
            commands: self.commands.clone(),
        }
    }
}

impl Drop for MediaWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CallHandle {
    /// Sends DTMF digits (`w` = 0.5 s pause).
    pub async fn send_dtmf(&self, digits: &str) -> Result<(), DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::SendDtmf {
                id: self.id,
                digits: digits.to_owned(),
                reply,
            })
            .map_err(|_| DriverError::CallGone)?;
        rx.await.map_err(|_| DriverError::CallGone)?
    }

    /// Plays a tone to the caller instead of room audio (`None` stops it).
    pub fn play_tone(&self, tone: Option<ToneKind>) {
        let _ = self.commands.send(Command::PlayTone { id: self.id, tone });
    }

    /// Applies a re-negotiated SDP (re-INVITE, hold, resume).
    pub async fn update(&self, media: NegotiatedMedia) -> Result<(), DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Update {
                id: self.id,
                media: Box::new(media),
                reply,
            })
            .map_err(|_| DriverError::CallGone)?;
        rx.await.map_err(|_| DriverError::CallGone)?
    }

    /// Changes the media timeout of this call.
    pub fn set_media_timeout(&self, timeout: Duration, initial: Duration) {
        let _ = self.commands.send(Command::SetTimeout {
            id: self.id,
            timeout,
            initial,
        });
    }

    /// The call's statistics.
    pub async fn stats(&self) -> Result<CallStats, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats { id: self.id, reply })
            .map_err(|_| DriverError::CallGone)?;
        rx.await
            .map_err(|_| DriverError::CallGone)?
            .ok_or(DriverError::CallGone)
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Remove { id: self.id });
    }
}

/// The calls of one worker, and where each sits in the tick's order.
#[derive(Default)]
struct Calls {
    list: Vec<Call>,
    index: HashMap<u64, usize>,
}

impl Calls {
    fn get(&mut self, id: u64) -> Option<&mut Call> {
        let at = *self.index.get(&id)?;
        self.list.get_mut(at)
    }

    fn push(&mut self, call: Call) {
        self.index.insert(call.id, self.list.len());
        self.list.push(call);
    }

    fn remove(&mut self, id: u64) {
        let Some(at) = self.index.remove(&id) else {
            return;
        };
        if at >= self.list.len() {
            return;
        }
        self.list.swap_remove(at);
        if let Some(moved) = self.list.get(at) {
            self.index.insert(moved.id, at);
        }
    }
}

async fn run(
    mut commands: mpsc::UnboundedReceiver<Command>,
    receive_syscalls: Arc<AtomicU64>,
    tick_lag: Arc<TickLag>,
) {
    let mut calls = Calls::default();
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            scheduled = interval.tick() => {
                let now = tokio::time::Instant::now().into_std();
                tick_lag.observe(now.saturating_duration_since(scheduled.into_std()));
                let mut reads = 0;
                // Every call's inbound frame first, then every call's
                // outbound: a room whose members all are on this worker
                // mixes during the first pass (when the last of them hands
                // over its frame), and they all hear it in the second.
                for call in &mut calls.list {
                    reads += call.receive(now, &mut buf);
                }
                for call in &mut calls.list {
                    call.send(now);
                }
                if reads > 0 {
                    receive_syscalls.fetch_add(reads, Ordering::Relaxed);
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return };
                apply(&mut calls, command);
            }
        }
    }
}

fn apply(calls: &mut Calls, command: Command) {
    match command {
        Command::Add {
            id,
            ports,
            session,
            audio,
        } => {
            let len = session.room_frame_len();
            // Out of descriptors, say: the call still works, read every
            // tick (and the receive counter shows it).
            let registered = ports.register().ok();
            calls.push(Call {
                id,
                ports,
                registered,
                session,
                audio,
                outbound: vec![0; len],
                inbound: vec![0; len],
            });
        }
        Command::Remove { id } => calls.remove(id),
        Command::SendDtmf { id, digits, reply } => {
            let result = match calls.get(id) {
                Some(call) => call.session.send_dtmf(&digits).map_err(DriverError::from),
                None => Err(DriverError::CallGone),
            };
            let _ = reply.send(result);
        }
        Command::PlayTone { id, tone } => {
            if let Some(call) = calls.get(id) {
                call.session.play_tone(tone);
            }
        }
        Command::Update { id, media, reply } => {
            let result = match calls.get(id) {
                Some(call) => call
                    .session
                    .update(*media, std::time::Instant::now())
                    .map_err(DriverError::from),
                None => Err(DriverError::CallGone),
            };
            let _ = reply.send(result);
        }
        Command::Stats { id, reply } => {
            let _ = reply.send(calls.get(id).map(|call| call.session.stats()));
        }
        Command::SetTimeout {
            id,
            timeout,
            initial,
        } => {
            if let Some(call) = calls.get(id) {
                call.session.set_media_timeout(timeout, initial);
            }
        }
    }
}

impl Call {
    /// The inbound half of a tick: reads what arrived and hands the next
    /// frame to the room side; returns the socket reads that reached the
    /// kernel.
    fn receive(&mut self, now: std::time::Instant, buf: &mut [u8]) -> u64 {
        let mut reads = 0;
        for (channel, std_socket, registered) in [
            (
                Channel::Rtp,
                &self.ports.rtp,
                self.registered.as_ref().map(|r| &r.0),
            ),
            (
                Channel::Rtcp,
                &self.ports.rtcp,
                self.registered.as_ref().map(|r| &r.1),
            ),
        ] {
            loop {
                // Through the reactor: no system call unless it saw data
                // arrive; a `WouldBlock` from the kernel clears its flag.
                let read = match registered {
                    Some(socket) => socket.try_io(Interest::READABLE, || {
                        reads += 1;
                        std_socket.recv_from(buf)
                    }),
                    None => {
                        reads += 1;
                        std_socket.recv_from(buf)
                    }
                };
                match read {
                    Ok((n, from)) => self.session.handle_datagram(now, from, channel, &buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // ICMP errors from the peer surface here (connection refused): ignore.
                    Err(_) => break,
                }
            }
        }
        if let Some(len) = self.audio.room_frame_len() {
            if len != self.outbound.len() && len > 0 {
                let rate = u32::try_from(len.saturating_mul(50)).unwrap_or(u32::MAX);
                if self.session.set_room_rate(rate).is_ok() {
                    self.outbound = vec![0; len];
                    self.inbound = vec![0; len];
                }
            }
        }
        let status = self.session.receive_frame(&mut self.inbound);
        self.audio.inbound(&self.inbound, status);
        reads
    }

    /// The outbound half of a tick: the room side's frame to the caller,
    /// timers, events, and the datagrams to send.
    fn send(&mut self, now: std::time::Instant) {
        let has_audio = self.audio.outbound(&mut self.outbound);
        self.session
            .send_frame(has_audio.then_some(&self.outbound[..]));
        if now >= self.session.poll_timeout() {
            self.session.handle_timeout(now);
        }
        while let Some(event) = self.session.poll_event() {
            self.audio.event(event);
        }
        while let Some(transmit) = self.session.poll_transmit() {
            let socket = match transmit.channel {
                Channel::Rtp => &self.ports.rtp,
                Channel::Rtcp => &self.ports.rtcp,
            };
            // A full socket buffer drops this datagram, as the network would.
            let _ = socket.send_to(transmit.data, transmit.destination);
        }
    }
}
