//! The bot's audio waiting to be played into the room: a FIFO of 8 kHz
//! samples with the bot's markers between them, cut into 20 ms frames.
//!
//! Positions are counted in samples since the stream began (`appended` is
//! the tail, `taken` the head), so a marker is simply the tail position when
//! it arrived, and it has "passed" once the head reaches it, whether the
//! audio before it was played, cleared or dropped for space.

use std::collections::VecDeque;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// Limits of the playout queue. Every one has a default that suits a
/// Pipecat-style bot (40 ms chunks paced in real time, one chunk ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayoutLimits {
    /// Most audio queued, in seconds; beyond it the oldest audio is dropped
    /// (and counted). Bots may send far ahead of real time: 120 s by
    /// default.
    pub max_queued_secs: u32,
    /// Audio buffered before playout starts (and starts again after the
    /// bot ran dry), in ms: rides out the bot's send jitter. Playout starts
    /// anyway once the first sample has waited this long, so a short blip
    /// is not held back. 40 ms by default (two frames).
    pub start_buffer_ms: u32,
    /// Most markers waiting for their audio; further ones are ignored (and
    /// counted). 1024 by default.
    pub max_pending_marks: usize,
}

impl Default for PlayoutLimits {
    fn default() -> PlayoutLimits {
        PlayoutLimits {
            max_queued_secs: 120,
            start_buffer_ms: 40,
            max_pending_marks: 1024,
        }
    }
}

/// The queue of bot audio and markers.
#[derive(Debug)]
pub(crate) struct Playout {
    audio: VecDeque<i16>,
    /// Samples ever appended: the tail's position.
    appended: u64,
    /// Samples ever taken (played, cleared or dropped): the head's position.
    taken: u64,
    /// Markers with the tail position they wait for, oldest first.
    marks: VecDeque<(u64, String)>,
    /// Frames are being played (the start buffer was reached).
    playing: bool,
    /// Ticks the queued audio has waited for the start buffer.
    waited_frames: u32,
    max_samples: usize,
    start_samples: usize,
    start_wait_frames: u32,
    max_marks: usize,
    /// Samples dropped because the queue was full.
    pub(crate) dropped_samples: u64,
    /// Markers ignored because too many were pending.
    pub(crate) dropped_marks: u64,
}

impl Playout {
    pub(crate) fn new(limits: PlayoutLimits) -> Playout {
        let max_samples = usize::try_from(limits.max_queued_secs)
            .unwrap_or(usize::MAX)
            .saturating_mul(8_000)
            .max(FRAME_SAMPLES);
        let start_samples = usize::try_from(limits.start_buffer_ms)
            .unwrap_or(usize::MAX)
            .saturating_mul(8)
            .min(max_samples);
        Playout {
            audio: VecDeque::new(),
            appended: 0,
            taken: 0,
            marks: VecDeque::new(),
            playing: false,
            waited_frames: 0,
            max_samples,
            start_samples,
            start_wait_frames: limits.start_buffer_ms / 20,
            max_marks: limits.max_pending_marks,
            dropped_samples: 0,
            dropped_marks: 0,
        }
    }

    /// Samples queued now.
    pub(crate) fn queued(&self) -> usize {
        self.audio.len()
    }

    /// Appends audio; beyond the limit the oldest is dropped. Returns the
    /// markers that passed because of it.
    pub(crate) fn append(&mut self, samples: impl IntoIterator<Item = i16>) -> Vec<String> {
        let before = self.audio.len();
        self.audio.extend(samples);
        let added = self.audio.len().saturating_sub(before);
        self.appended = self.appended.saturating_add(added as u64);
        let excess = self.audio.len().saturating_sub(self.max_samples);
        if excess > 0 {
            self.audio.drain(..excess);
            self.taken = self.taken.saturating_add(excess as u64);
            self.dropped_samples = self.dropped_samples.saturating_add(excess as u64);
        }
        self.passed_marks()
    }

    /// Queues a marker behind the audio queued now. `Some(name)` when it
    /// passes at once (nothing is queued), `None` when it waits or was
    /// ignored (too many pending).
    pub(crate) fn mark(&mut self, name: String) -> Option<String> {
        if self.audio.is_empty() {
            return Some(name);
        }
        if self.marks.len() >= self.max_marks {
            self.dropped_marks = self.dropped_marks.saturating_add(1);
            return None;
        }
        self.marks.push_back((self.appended, name));
        None
    }

    /// Drops every queued sample at once; every pending marker passes.
    pub(crate) fn clear(&mut self) -> Vec<String> {
        self.audio.clear();
        self.taken = self.appended;
        self.playing = false;
        self.waited_frames = 0;
        self.marks.drain(..).map(|(_, name)| name).collect()
    }

    /// The next 20 ms for the room: `Some` with the bot's audio (a short
    /// last chunk padded with silence), or `None` while there is nothing
    /// to play or the start buffer is filling. Also the markers the
    /// taken audio passed.
    pub(crate) fn next_frame(&mut self) -> (Option<[i16; FRAME_SAMPLES]>, Vec<String>) {
        if self.audio.is_empty() {
            // Ran dry (or never started): buffer again before playing, so
            // a bot that sends just in time does not stutter every frame.
            self.playing = false;
            self.waited_frames = 0;
            return (None, Vec::new());
        }
        if !self.playing {
            if self.audio.len() >= self.start_samples
                || self.waited_frames >= self.start_wait_frames
            {
                self.playing = true;
            } else {
                self.waited_frames = self.waited_frames.saturating_add(1);
                return (None, Vec::new());
            }
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        let n = self.audio.len().min(FRAME_SAMPLES);
        for (slot, sample) in frame.iter_mut().zip(self.audio.drain(..n)) {
            *slot = sample;
        }
        self.taken = self.taken.saturating_add(n as u64);
        (Some(frame), self.passed_marks())
    }

    fn passed_marks(&mut self) -> Vec<String> {
        let mut passed = Vec::new();
        while let Some((at, _)) = self.marks.front() {
            if *at > self.taken {
                break;
            }
            if let Some((_, name)) = self.marks.pop_front() {
                passed.push(name);
            }
        }
        passed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn samples(n: usize, value: i16) -> Vec<i16> {
        vec![value; n]
    }

    fn no_lead() -> PlayoutLimits {
        PlayoutLimits {
            start_buffer_ms: 0,
            ..PlayoutLimits::default()
        }
    }

    #[test]
    fn frames_come_out_in_order_and_a_short_last_chunk_is_padded() {
        let mut p = Playout::new(no_lead());
        p.append(samples(160, 1));
        p.append(samples(100, 2));
        let (a, _) = p.next_frame();
        assert_eq!(a.unwrap(), [1; 160]);
        let (b, _) = p.next_frame();
        let b = b.unwrap();
        assert!(b[..100].iter().all(|&s| s == 2));
        assert!(b[100..].iter().all(|&s| s == 0));
        assert_eq!(p.next_frame().0, None);
    }

    #[test]
    fn playout_waits_for_the_start_buffer_or_its_time_and_has_no_gaps_after() {
        let mut p = Playout::new(PlayoutLimits::default());
        // 20 ms queued, 40 ms wanted: waits two ticks at most.
        p.append(samples(160, 7));
        assert_eq!(p.next_frame().0, None);
        assert_eq!(p.next_frame().0, None);
        assert!(p.next_frame().0.is_some(), "a blip is played after 40 ms");

        // A bot faster than real time: once started, every tick plays.
        let mut p = Playout::new(PlayoutLimits::default());
        p.append(samples(160 * 50, 3));
        for _ in 0..50 {
            assert_eq!(p.next_frame().0, Some([3; 160]));
        }
        assert_eq!(p.next_frame().0, None);
    }

    #[test]
    fn a_queue_that_empties_on_a_frame_boundary_keeps_playing_if_fed_in_time() {
        let mut p = Playout::new(PlayoutLimits::default());
        p.append(samples(320, 1));
        assert!(p.next_frame().0.is_some());
        assert!(p.next_frame().0.is_some());
        // Refilled before the next tick: no re-buffering.
        p.append(samples(160, 1));
        assert!(p.next_frame().0.is_some());
    }

    #[test]
    fn marks_pass_only_after_the_audio_before_them() {
        let mut p = Playout::new(no_lead());
        assert_eq!(p.mark("empty".into()), Some("empty".into()));
        p.append(samples(400, 1));
        assert_eq!(p.mark("m1".into()), None);
        p.append(samples(160, 2));
        assert_eq!(p.mark("m2".into()), None);
        assert_eq!(p.next_frame().1, Vec::<String>::new());
        assert_eq!(p.next_frame().1, Vec::<String>::new());
        // The third frame holds the last 80 samples before m1.
        assert_eq!(p.next_frame().1, vec!["m1".to_string()]);
        assert_eq!(p.next_frame().1, vec!["m2".to_string()]);
    }

    #[test]
    fn clear_drops_everything_at_once_and_passes_every_mark() {
        let mut p = Playout::new(no_lead());
        p.append(samples(8_000, 1));
        p.mark("a".into());
        p.append(samples(8_000, 1));
        p.mark("b".into());
        assert!(p.next_frame().0.is_some());
        assert_eq!(p.clear(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(p.queued(), 0);
        assert_eq!(p.next_frame(), (None, Vec::new()));
        // A mark after a clear passes at once.
        assert_eq!(p.mark("c".into()), Some("c".into()));
    }

    #[test]
    fn a_full_queue_drops_its_oldest_audio_and_passes_marks_dropped_with_it() {
        let mut p = Playout::new(PlayoutLimits {
            max_queued_secs: 1,
            start_buffer_ms: 0,
            ..PlayoutLimits::default()
        });
        p.append(samples(4_000, 1));
        p.mark("half".into());
        // 2000 samples dropped: the mark still waits for 2000 more.
        assert!(p.append(samples(6_000, 2)).is_empty());
        assert_eq!(p.dropped_samples, 2_000);
        assert_eq!(p.append(samples(2_000, 2)), vec!["half".to_string()]);
        assert_eq!(p.queued(), 8_000);
        assert_eq!(p.dropped_samples, 4_000);
        // One 16 s chunk into a 1 s queue keeps its last second.
        p.append(samples(128_000, 3));
        assert_eq!(p.queued(), 8_000);
        assert_eq!(p.next_frame().0, Some([3; 160]));
    }

    #[test]
    fn pending_marks_are_bounded() {
        let mut p = Playout::new(PlayoutLimits {
            max_pending_marks: 2,
            ..no_lead()
        });
        p.append(samples(160, 1));
        p.mark("1".into());
        p.mark("2".into());
        p.mark("3".into());
        assert_eq!(p.dropped_marks, 1);
        assert_eq!(p.next_frame().1, vec!["1".to_string(), "2".to_string()]);
    }
}
