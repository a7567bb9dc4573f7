//! Resampling of 20 ms mono frames between a codec's PCM rate and the room
//! rate, with rubato's FFT resampler and buffers allocated once per call.
//!
//! Two things keep a quiet call cheap. Building rubato's resampler designs
//! a filter and plans two FFTs (40–100 µs, more than a second of its frames),
//! so a call's resamplers are built when the first sound needs them, and
//! those of ended calls wait in a small pool for the next calls. And once a
//! resampler has been fed enough silence to hold nothing but zeros, further
//! silence is not run through it: the output is silence, exactly.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Idle resamplers kept per rate pair: enough for the calls that start
/// while others end, not the peak (whose memory should go back).
const POOLED_PER_RATE_PAIR: usize = 64;
/// Rate pairs remembered as valid (a WebSocket client names its own rate).
const MOST_KNOWN_RATE_PAIRS: usize = 1024;
/// Silent frames after which the resampler holds only zeros: one is enough
/// for rubato 5.1 (its overlap is one chunk; the tests show it), three
/// leave a margin for another version.
const FRAMES_TO_FLUSH: u8 = 3;

/// Frames run through a resampler, by every resampler of the process.
static RESAMPLED_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Frames run through a resampler so far in this process (copies between
/// equal rates and skipped silence not counted): what a room mixing at
/// its members' own rate saves.
pub fn resampled_frames() -> u64 {
    RESAMPLED_FRAMES.load(Ordering::Relaxed)
}

#[derive(Default)]
struct Pool {
    idle: HashMap<(u32, u32), Vec<Fft<f32>>>,
    valid: HashSet<(u32, u32)>,
}

fn pool() -> MutexGuard<'static, Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    // A poisoned lock only means a panic elsewhere mid-push; the pool is
    // still a set of independent resamplers.
    POOL.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Errors building a resampler.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// rubato refused the rate pair.
    #[error("resampler {from} Hz -> {to} Hz: {reason}")]
    Unsupported {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// rubato's explanation.
        reason: String,
    },
}

/// Converts fixed 20 ms frames from one rate to another. Equal rates copy.
pub struct FrameResampler {
    /// Built on the first frame that is not silence.
    inner: Option<Fft<f32>>,
    /// Consecutive silent frames fed, up to [`FRAMES_TO_FLUSH`].
    silent_frames: u8,
    input: Vec<f32>,
    output: Vec<f32>,
    from_rate: u32,
    to_rate: u32,
}

impl FrameResampler {
    /// A resampler for 20 ms frames from `from_rate` to `to_rate`.
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self, ResampleError> {
        let mut inner = None;
        if from_rate != to_rate && !pool().valid.contains(&(from_rate, to_rate)) {
            // A rate pair not seen before: build one now to learn whether
            // rubato can do it, and keep it.
            inner = Some(build(from_rate, to_rate)?);
            let mut pool = pool();
            if pool.valid.len() < MOST_KNOWN_RATE_PAIRS {
                pool.valid.insert((from_rate, to_rate));
            }
        }
        Ok(FrameResampler {
            inner,
            silent_frames: FRAMES_TO_FLUSH,
            input: vec![0.0; (from_rate / 50) as usize],
            output: vec![0.0; (to_rate / 50) as usize],
            from_rate,
            to_rate,
        })
    }

    /// Samples per input frame.
    pub fn input_len(&self) -> usize {
        (self.from_rate / 50) as usize
    }

    /// Samples per output frame.
    pub fn output_len(&self) -> usize {
        (self.to_rate / 50) as usize
    }

    /// Resamples one frame. `input` must hold [`Self::input_len`] samples and
    /// `output` [`Self::output_len`]; shorter buffers are zero-padded/truncated.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) {
        if self.from_rate == self.to_rate {
            let n = input.len().min(output.len());
            output[..n].copy_from_slice(&input[..n]);
            output[n..].fill(0);
            return;
        }
        let silent = input.iter().all(|sample| *sample == 0);
        if silent && self.silent_frames >= FRAMES_TO_FLUSH {
            output.fill(0);
            return;
        }
        self.silent_frames = if silent {
            self.silent_frames.saturating_add(1)
        } else {
            0
        };
        if self.inner.is_none() {
            self.inner = take_pooled(self.from_rate, self.to_rate)
                .or_else(|| build(self.from_rate, self.to_rate).ok());
        }
        let Some(fft) = self.inner.as_mut() else {
            output.fill(0);
            return;
        };
        RESAMPLED_FRAMES.fetch_add(1, Ordering::Relaxed);
        for (dst, src) in self
            .input
            .iter_mut()
            .zip(input.iter().chain(std::iter::repeat(&0)))
        {
            *dst = f32::from(*src) / 32768.0;
        }
        let in_len = self.input.len();
        let out_len = self.output.len();
        let produced = match (
            InterleavedSlice::new(&self.input[..], 1, in_len),
            InterleavedSlice::new_mut(&mut self.output[..], 1, out_len),
        ) {
            (Ok(inp), Ok(mut out)) => fft
                .process_into_buffer(&inp, &mut out, None)
                .map_or(0, |(_, produced)| produced),
            _ => 0,
        };
        for (i, dst) in output.iter_mut().enumerate() {
            let v = if i < produced { self.output[i] } else { 0.0 };
            *dst = (v * 32768.0).clamp(-32768.0, 32767.0) as i16;
        }
    }
}

impl Drop for FrameResampler {
    fn drop(&mut self) {
        let Some(mut fft) = self.inner.take() else {
            return;
        };
        fft.reset();
        let mut pool = pool();
        if !pool.valid.contains(&(self.from_rate, self.to_rate)) {
            return;
        }
        let idle = pool.idle.entry((self.from_rate, self.to_rate)).or_default();
        if idle.len() < POOLED_PER_RATE_PAIR {
            idle.push(fft);
        }
    }
}

fn take_pooled(from_rate: u32, to_rate: u32) -> Option<Fft<f32>> {
    pool().idle.get_mut(&(from_rate, to_rate))?.pop()
}

/// rubato's FFT resampler for one 20 ms frame in and one out, or why not.
fn build(from_rate: u32, to_rate: u32) -> Result<Fft<f32>, ResampleError> {
    let in_frames = (from_rate / 50) as usize;
    let out_frames = (to_rate / 50) as usize;
    let err = |reason: String| ResampleError::Unsupported {
        from: from_rate,
        to: to_rate,
        reason,
    };
    let fft = Fft::<f32>::new(
        from_rate as usize,
        to_rate as usize,
        in_frames,
        1,
        FixedSync::Both,
    )
    .map_err(|e| err(e.to_string()))?;
    if fft.input_frames_next() != in_frames || fft.output_frames_next() != out_frames {
        return Err(err(format!(
            "chunking {} -> {} frames, wanted {in_frames} -> {out_frames}",
            fft.input_frames_next(),
            fft.output_frames_next()
        )));
    }
    Ok(fft)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: &mut u32) -> Vec<i16> {
        (0..len)
            .map(|_| {
                *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((*seed >> 16) as i16) / 4
            })
            .collect()
    }

    /// What rubato itself gives for the frames, every one run through it.
    fn reference(from: u32, to: u32, frames: &[Vec<i16>]) -> Vec<Vec<i16>> {
        let mut fft = build(from, to).unwrap();
        let mut out = vec![0f32; (to / 50) as usize];
        frames
            .iter()
            .map(|frame| {
                let input: Vec<f32> = frame.iter().map(|s| f32::from(*s) / 32768.0).collect();
                let (inp, mut outp) = (
                    InterleavedSlice::new(&input[..], 1, input.len()).unwrap(),
                    InterleavedSlice::new_mut(&mut out[..], 1, (to / 50) as usize).unwrap(),
                );
                fft.process_into_buffer(&inp, &mut outp, None).unwrap();
                out.iter()
                    .map(|v| (v * 32768.0).clamp(-32768.0, 32767.0) as i16)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn skipping_flushed_silence_and_building_late_change_no_sample() {
        for (from, to) in [
            (8000, 48_000),
            (48_000, 8000),
            (16_000, 48_000),
            (48_000, 16_000),
        ] {
            let mut seed = from ^ to;
            let len = (from / 50) as usize;
            // Silence first (nothing built yet), then sound, a pause long
            // enough to be skipped, sound again, and a pause too short to be.
            let mut frames = vec![vec![0i16; len]; 4];
            frames.extend((0..6).map(|_| noise(len, &mut seed)));
            frames.extend(vec![vec![0i16; len]; 10]);
            frames.extend((0..6).map(|_| noise(len, &mut seed)));
            frames.extend(vec![vec![0i16; len]; 2]);
            frames.extend((0..3).map(|_| noise(len, &mut seed)));
            let mut ours = FrameResampler::new(from, to).unwrap();
            let mut got = Vec::new();
            for frame in &frames {
                let mut out = vec![1i16; (to / 50) as usize];
                ours.process(frame, &mut out);
                got.push(out);
            }
            assert_eq!(got, reference(from, to, &frames), "{from} -> {to}");
            assert!(
                got.iter().flatten().any(|s| *s != 0),
                "{from} -> {to} made sound"
            );
        }
    }

    #[test]
    fn a_pooled_resampler_starts_like_a_new_one() {
        let len = 160;
        let mut seed = 7;
        let frames: Vec<Vec<i16>> = (0..5).map(|_| noise(len, &mut seed)).collect();
        let mut used = FrameResampler::new(8000, 48_000).unwrap();
        let mut out = vec![0i16; 960];
        for frame in &frames {
            used.process(frame, &mut out);
        }
        drop(used);
        let mut again = FrameResampler::new(8000, 48_000).unwrap();
        let got: Vec<Vec<i16>> = frames
            .iter()
            .map(|frame| {
                again.process(frame, &mut out);
                out.clone()
            })
            .collect();
        assert_eq!(got, reference(8000, 48_000, &frames));
    }

    #[test]
    fn an_unusable_rate_pair_is_refused_when_made() {
        assert!(FrameResampler::new(8000, 0).is_err());
        assert!(FrameResampler::new(8000, 8000).is_ok());
    }
}
