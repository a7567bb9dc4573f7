//! The media worker's side of a call: 20 ms frames between the RTP session
//! and the room, prompts played to the caller, and media events handed to
//! the call's task. Runs on the media worker, so it never blocks: one
//! uncontended lock per frame.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use switchboard_media::driver::CallAudio;
use switchboard_media::session::{FrameStatus, MediaEvent};
use switchboard_rooms::AudioPort;
use tokio::sync::{mpsc, Notify};

/// What the call's task controls of the bridge.
#[derive(Default)]
pub struct BridgeState {
    /// The room's port, once the caller is in a room.
    pub port: Option<AudioPort>,
    /// Samples still to play to the caller before the room's audio.
    pub prompt: VecDeque<i16>,
    /// The rate the prompt was made at; the call's media follows it while
    /// the prompt plays.
    pub prompt_rate: u32,
    /// Room audio is not sent to the caller (a tone plays instead).
    pub room_muted: bool,
}

/// Shared handle on a [`BridgeState`].
#[derive(Clone, Default)]
pub struct BridgeControl(Arc<Shared>);

#[derive(Default)]
struct Shared {
    state: Mutex<BridgeState>,
    /// Woken when the worker sends the last frame of a prompt.
    prompt_played: Notify,
}

impl BridgeControl {
    /// Locks the state (a poisoned lock is still consistent: plain fields).
    pub fn lock(&self) -> MutexGuard<'_, BridgeState> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once the prompt playing now (if any) has been sent to the
    /// caller, to the last frame.
    pub async fn prompt_played(&self) {
        let played = self.0.prompt_played.notified();
        tokio::pin!(played);
        // Registered before the check, so an end between the two is not missed.
        played.as_mut().enable();
        if !self.prompt_playing() {
            return;
        }
        played.await;
    }

    /// Queues a prompt made at `rate`; it plays before any room audio.
    pub fn play(&self, samples: &[i16], rate: u32) {
        let mut state = self.lock();
        state.prompt_rate = rate;
        state.prompt.extend(samples.iter().copied());
    }

    /// Whether a prompt is still playing.
    pub fn prompt_playing(&self) -> bool {
        !self.lock().prompt.is_empty()
    }

    /// Connects the caller's audio to a room port (or disconnects it).
    pub fn set_port(&self, port: Option<AudioPort>) {
        self.lock().port = port;
    }
}

/// The [`CallAudio`] given to the media worker.
pub struct RoomBridge {
    control: BridgeControl,
    events: mpsc::UnboundedSender<MediaEvent>,
}

impl RoomBridge {
    /// A bridge reporting media events on `events`.
    pub fn new(control: BridgeControl, events: mpsc::UnboundedSender<MediaEvent>) -> RoomBridge {
        RoomBridge { control, events }
    }
}

impl CallAudio for RoomBridge {
    fn outbound(&mut self, frame: &mut [i16]) -> bool {
        let mut state = self.control.lock();
        if !state.prompt.is_empty() {
            for sample in frame.iter_mut() {
                *sample = state.prompt.pop_front().unwrap_or(0);
            }
            if state.prompt.is_empty() {
                self.control.0.prompt_played.notify_waiters();
            }
            return true;
        }
        if state.room_muted {
            return false;
        }
        match &state.port {
            Some(port) => port.pull(frame),
            None => false,
        }
    }

    fn inbound(&mut self, frame: &[i16], status: FrameStatus) {
        // A step also when there is nothing to say: the room's mix waits
        // for every call's step, silent or not.
        if let Some(port) = &self.control.lock().port {
            port.step((status != FrameStatus::Silence).then_some(frame));
        }
    }

    fn event(&mut self, event: MediaEvent) {
        // The call's task may be gone already; the event then has no one to
        // act on it.
        let _ = self.events.send(event);
    }

    fn room_frame_len(&self) -> Option<usize> {
        let state = self.control.lock();
        if !state.prompt.is_empty() && state.prompt_rate > 0 {
            return Some((state.prompt_rate / 50) as usize);
        }
        state.port.as_ref().map(AudioPort::frame_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_rooms::{AudioRate, JoinRequest, ParticipantKind, Rooms, RoomsConfig};

    #[test]
    fn prompts_come_first_then_the_room_and_caller_audio_reaches_the_room() {
        let rooms = Rooms::new(RoomsConfig {
            sample_rate: 8_000,
            ..RoomsConfig::default()
        });
        let join = |id: &str| JoinRequest {
            identity: id.into(),
            name: String::new(),
            metadata: String::new(),
            attributes: Default::default(),
            kind: ParticipantKind::Sip,
            publishes_audio: true,
            audio_rate: AudioRate::Configured,
        };
        let caller = rooms
            .join("r", join("caller"))
            .unwrap_or_else(|e| panic!("{e}"));
        let other = rooms
            .join("r", join("other"))
            .unwrap_or_else(|e| panic!("{e}"));
        let control = BridgeControl::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut bridge = RoomBridge::new(control.clone(), tx);
        let mut frame = vec![0i16; 160];

        assert!(!bridge.outbound(&mut frame), "no room yet: silence");
        control.play(&[5; 200], 8_000);
        assert!(bridge.outbound(&mut frame));
        assert_eq!(frame[159], 5);
        assert!(bridge.outbound(&mut frame));
        assert_eq!((frame[39], frame[40]), (5, 0), "the prompt ends, padded");
        assert!(!control.prompt_playing());

        control.set_port(Some(caller.audio()));
        let other_port = other.audio();
        for _ in 0..3 {
            other_port.push(&[40; 160]);
            bridge.inbound(&[300; 160], FrameStatus::Audio);
        }
        bridge.inbound(&[999; 160], FrameStatus::Silence);
        let mut caller_heard = Vec::new();
        while bridge.outbound(&mut frame) {
            caller_heard.push(frame[0]);
        }
        assert_eq!(
            caller_heard,
            [0, 40, 40, 40],
            "a mix per step of the caller; the other one's pushes enter after its prebuffer"
        );
        let mut other_heard = Vec::new();
        let mut heard = vec![0i16; 160];
        while other_port.pull(&mut heard) {
            other_heard.push(heard[0]);
        }
        assert_eq!(
            other_heard,
            [300, 300, 300, 0],
            "the room hears the caller at each step, and its silence as silence"
        );

        control.lock().room_muted = true;
        assert!(!bridge.outbound(&mut frame));

        bridge.event(MediaEvent::RemoteBye);
        assert_eq!(rx.try_recv().ok(), Some(MediaEvent::RemoteBye));
    }

    #[tokio::test]
    async fn a_prompt_is_reported_played_when_its_last_frame_is_sent() {
        let control = BridgeControl::default();
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut bridge = RoomBridge::new(control.clone(), tx);
        control.prompt_played().await;

        control.play(&[1; 300], 8_000);
        let waiter = tokio::spawn({
            let control = control.clone();
            async move { control.prompt_played().await }
        });
        tokio::task::yield_now().await;
        let mut frame = vec![0i16; 160];
        assert!(bridge.outbound(&mut frame));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "140 samples are still to play");
        assert!(bridge.outbound(&mut frame));
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(matches!(woke, Ok(Ok(()))), "{woke:?}");
    }
}
