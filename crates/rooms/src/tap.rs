//! One participant's own audio, as the room takes it into the mix, for a
//! listener that wants each publisher separately (a WebRTC client gets one
//! track per publisher, as from a LiveKit server, and mixes them itself).

use crate::lock;
use crate::ring::FrameRing;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The shared end of a tap: the room pushes, the listener pulls.
pub(crate) struct TapRing {
    frames: Mutex<FrameRing>,
    /// Samples per frame at the room's rate now.
    frame_len: AtomicUsize,
    capacity: usize,
}

impl TapRing {
    pub(crate) fn new(frame_len: usize, capacity: usize) -> Arc<TapRing> {
        Arc::new(TapRing {
            frames: Mutex::new(FrameRing::new(frame_len, capacity)),
            frame_len: AtomicUsize::new(frame_len),
            capacity,
        })
    }

    /// Starts afresh at a new frame length (the room's rate changed).
    pub(crate) fn retune(&self, frame_len: usize) {
        let mut frames = lock(&self.frames);
        *frames = FrameRing::new(frame_len, self.capacity);
        self.frame_len.store(frame_len, Ordering::Release);
    }

    pub(crate) fn push(&self, frame: &[i16]) {
        lock(&self.frames).push(frame);
    }
}

/// Feeds every live tap of a publisher with its frame of this round and
/// forgets the taps whose listeners are gone.
pub(crate) fn feed(taps: &mut Vec<Weak<TapRing>>, frame: &[i16]) {
    taps.retain(|tap| match tap.upgrade() {
        Some(tap) => {
            tap.push(frame);
            true
        }
        None => false,
    });
}

/// Remakes every live tap at a new frame length.
pub(crate) fn retune(taps: &mut Vec<Weak<TapRing>>, frame_len: usize) {
    taps.retain(|tap| match tap.upgrade() {
        Some(tap) => {
            tap.retune(frame_len);
            true
        }
        None => false,
    });
}

/// A listener's copy of one other participant's audio: the frames it
/// contributed to the room's mix, at the room's rate, 20 ms each, only
/// while it is heard (nothing while it is silent or muted). Dropping the
/// tap stops the copying.
pub struct AudioTap {
    pub(crate) ring: Arc<TapRing>,
}

impl AudioTap {
    /// Samples per frame (the room's rate now / 50).
    pub fn frame_len(&self) -> usize {
        self.ring.frame_len.load(Ordering::Acquire)
    }

    /// The room's rate now, in Hz.
    pub fn rate(&self) -> u32 {
        u32::try_from(self.frame_len() * 50).unwrap_or(u32::MAX)
    }

    /// Takes the publisher's next frame; `false` (and `out` untouched) when
    /// there is none or `out` is not one frame at the room's rate now.
    pub fn pull(&self, out: &mut [i16]) -> bool {
        let mut frames = lock(&self.ring.frames);
        out.len() == self.frame_len() && frames.pop_into(out)
    }

    /// Frames buffered now.
    pub fn buffered(&self) -> usize {
        lock(&self.ring.frames).len()
    }
}
