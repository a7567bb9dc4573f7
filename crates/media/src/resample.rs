//! Resampling of 20 ms mono frames between a codec's PCM rate and the room
//! rate, with rubato's FFT resampler and buffers allocated once per call.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

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
    inner: Option<Fft<f32>>,
    input: Vec<f32>,
    output: Vec<f32>,
    from_rate: u32,
    to_rate: u32,
}

impl FrameResampler {
    /// A resampler for 20 ms frames from `from_rate` to `to_rate`.
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self, ResampleError> {
        let in_frames = (from_rate / 50) as usize;
        let out_frames = (to_rate / 50) as usize;
        let err = |reason: String| ResampleError::Unsupported {
            from: from_rate,
            to: to_rate,
            reason,
        };
        let inner = if from_rate == to_rate {
            None
        } else {
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
            Some(fft)
        };
        Ok(FrameResampler {
            inner,
            input: vec![0.0; in_frames],
            output: vec![0.0; out_frames],
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

    /// Delay the resampler adds, in output samples.
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Resamples one frame. `input` must hold [`Self::input_len`] samples and
    /// `output` [`Self::output_len`]; shorter buffers are zero-padded/truncated.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) {
        let Some(fft) = self.inner.as_mut() else {
            let n = input.len().min(output.len());
            output[..n].copy_from_slice(&input[..n]);
            output[n..].fill(0);
            return;
        };
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
