//! The thin tokio driver: one [`MediaWorker`] task serves many calls with a
//! single 20 ms tick, instead of a timer and a task per call.
//!
//! Each tick, for every call: drain its non-blocking sockets (`recv_from`
//! until `WouldBlock`), run [`MediaSession::tick`] with the room's frame,
//! hand the inbound frame and events to the call's [`CallAudio`], and send
//! the transmits. Packets wait in the kernel for at most one tick, which the
//! jitter buffer absorbs; in exchange a call costs no wakeups of its own.
//! Keep a room's participants on one worker so mixing needs no locks.

use crate::ports::RtpPorts;
use crate::sdp::NegotiatedMedia;
use crate::session::{CallStats, Channel, FrameStatus, MediaEvent, MediaSession, SessionError};
use crate::tones::ToneKind;
use std::io::ErrorKind;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The room side of one call, called from the worker every 20 ms. Both
/// frames are at the session's room rate. Implementations must not block.
pub trait CallAudio: Send + 'static {
    /// Fills the next 20 ms to send to the caller; returns false for silence.
    fn outbound(&mut self, frame: &mut [i16]) -> bool;
    /// Takes the caller's next 20 ms.
    fn inbound(&mut self, frame: &[i16], status: FrameStatus);
    /// Takes an event (DTMF, media timeout, latching...).
    fn event(&mut self, event: MediaEvent);
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
    session: Box<MediaSession>,
    audio: Box<dyn CallAudio>,
    outbound: Vec<i16>,
    inbound: Vec<i16>,
}

/// A worker task serving many calls. Dropping it stops the task.
pub struct MediaWorker {
    commands: mpsc::UnboundedSender<Command>,
    next_id: std::sync::atomic::AtomicU64,
    task: JoinHandle<()>,
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
        let task = tokio::spawn(run(receiver));
        MediaWorker {
            commands,
            next_id: std::sync::atomic::AtomicU64::new(1),
            task,
        }
    }

    /// Puts a call on the worker: its sockets, its session and its room side.
    pub fn add_call(
        &self,
        ports: RtpPorts,
        session: MediaSession,
        audio: Box<dyn CallAudio>,
    ) -> CallHandle {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

async fn run(mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut calls: Vec<Call> = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let now = tokio::time::Instant::now().into_std();
                for call in &mut calls {
                    call.step(now, &mut buf);
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return };
                apply(&mut calls, command);
            }
        }
    }
}

fn apply(calls: &mut Vec<Call>, command: Command) {
    let find = |calls: &mut Vec<Call>, id: u64| calls.iter_mut().position(|c| c.id == id);
    match command {
        Command::Add {
            id,
            ports,
            session,
            audio,
        } => {
            let len = session.room_frame_len();
            calls.push(Call {
                id,
                ports,
                session,
                audio,
                outbound: vec![0; len],
                inbound: vec![0; len],
            });
        }
        Command::Remove { id } => {
            if let Some(i) = find(calls, id) {
                calls.swap_remove(i);
            }
        }
        Command::SendDtmf { id, digits, reply } => {
            let result = match find(calls, id) {
                Some(i) => calls[i]
                    .session
                    .send_dtmf(&digits)
                    .map_err(DriverError::from),
                None => Err(DriverError::CallGone),
            };
            let _ = reply.send(result);
        }
        Command::PlayTone { id, tone } => {
            if let Some(i) = find(calls, id) {
                calls[i].session.play_tone(tone);
            }
        }
        Command::Update { id, media, reply } => {
            let result = match find(calls, id) {
                Some(i) => calls[i]
                    .session
                    .update(*media, std::time::Instant::now())
                    .map_err(DriverError::from),
                None => Err(DriverError::CallGone),
            };
            let _ = reply.send(result);
        }
        Command::Stats { id, reply } => {
            let _ = reply.send(find(calls, id).map(|i| calls[i].session.stats()));
        }
        Command::SetTimeout {
            id,
            timeout,
            initial,
        } => {
            if let Some(i) = find(calls, id) {
                calls[i].session.set_media_timeout(timeout, initial);
            }
        }
    }
}

impl Call {
    fn step(&mut self, now: std::time::Instant, buf: &mut [u8]) {
        for (socket, channel) in [
            (&self.ports.rtp, Channel::Rtp),
            (&self.ports.rtcp, Channel::Rtcp),
        ] {
            loop {
                match socket.recv_from(buf) {
                    Ok((n, from)) => self.session.handle_datagram(now, from, channel, &buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // ICMP errors from the peer surface here (connection refused): ignore.
                    Err(_) => break,
                }
            }
        }
        let has_audio = self.audio.outbound(&mut self.outbound);
        let status = self.session.tick(
            now,
            has_audio.then_some(&self.outbound[..]),
            &mut self.inbound,
        );
        self.audio.inbound(&self.inbound, status);
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
