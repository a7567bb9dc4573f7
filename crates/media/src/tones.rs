//! Call-progress tones (dial tone, ringback) for the US and EU plans, and a
//! Goertzel detector used to check tones and DTMF by content.

/// A national tone plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TonePlan {
    /// North America (ANSI T1.401): dial 350+440 Hz, ringback 440+480 Hz 2 s on / 4 s off.
    #[default]
    Us,
    /// Europe (ETSI TR 101 041 / CEPT common values): dial 425 Hz, ringback
    /// 425 Hz 1 s on / 4 s off.
    Eu,
}

/// A call-progress tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToneKind {
    /// Continuous dial tone.
    Dial,
    /// Ringback (the caller hears the far end ringing).
    Ringback,
}

/// Frequencies and cadence of one tone in one plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneSpec {
    /// One or two frequencies in Hz (0 for none).
    pub frequencies: [f32; 2],
    /// Milliseconds on, then off; `off_ms == 0` means continuous.
    pub on_ms: u32,
    /// Milliseconds off.
    pub off_ms: u32,
}

impl ToneSpec {
    /// The tone `kind` in `plan`.
    pub fn of(plan: TonePlan, kind: ToneKind) -> ToneSpec {
        match (plan, kind) {
            (TonePlan::Us, ToneKind::Dial) => ToneSpec {
                frequencies: [350.0, 440.0],
                on_ms: 1000,
                off_ms: 0,
            },
            (TonePlan::Us, ToneKind::Ringback) => ToneSpec {
                frequencies: [440.0, 480.0],
                on_ms: 2000,
                off_ms: 4000,
            },
            (TonePlan::Eu, ToneKind::Dial) => ToneSpec {
                frequencies: [425.0, 0.0],
                on_ms: 1000,
                off_ms: 0,
            },
            (TonePlan::Eu, ToneKind::Ringback) => ToneSpec {
                frequencies: [425.0, 0.0],
                on_ms: 1000,
                off_ms: 4000,
            },
        }
    }
}

/// Generates a tone frame by frame, with no allocation after creation.
///
/// Each frequency is a phase accumulator wrapped at 2π, so long tones keep
/// their pitch and level exactly; tones are rare enough that `sin` per sample
/// costs nothing that matters.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    spec: ToneSpec,
    rate: u32,
    amplitude: f32,
    phase_step: [f32; 2],
    phase: [f32; 2],
    position_samples: u64,
}

impl ToneGenerator {
    /// A generator for `spec` at `rate` Hz; each component at `level_dbfs`
    /// (e.g. -20 dBFS, close to the -13 dBm0 of the plans).
    pub fn new(spec: ToneSpec, rate: u32, level_dbfs: f32) -> Self {
        let amplitude = 32767.0 * 10f32.powf(level_dbfs / 20.0);
        let step = |f: f32| 2.0 * std::f32::consts::PI * f / rate as f32;
        ToneGenerator {
            spec,
            rate,
            amplitude,
            phase_step: [step(spec.frequencies[0]), step(spec.frequencies[1])],
            phase: [0.0; 2],
            position_samples: 0,
        }
    }

    /// Writes the next `out.len()` samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        let period = u64::from(self.spec.on_ms + self.spec.off_ms) * u64::from(self.rate) / 1000;
        let on = u64::from(self.spec.on_ms) * u64::from(self.rate) / 1000;
        for o in out.iter_mut() {
            let audible = self.spec.off_ms == 0 || self.position_samples % period.max(1) < on;
            let mut v = 0.0;
            for k in 0..2 {
                if self.spec.frequencies[k] > 0.0 {
                    v += self.phase[k].sin();
                }
                self.phase[k] += self.phase_step[k];
                if self.phase[k] > std::f32::consts::TAU {
                    self.phase[k] -= std::f32::consts::TAU;
                }
            }
            *o = if audible {
                (v * self.amplitude) as i16
            } else {
                0
            };
            self.position_samples += 1;
        }
    }
}

/// Power of `frequency` in `samples` relative to full scale, in dB, by the
/// Goertzel algorithm. A full-scale sine reads about 0 dB.
pub fn goertzel_dbfs(samples: &[i16], rate: u32, frequency: f32) -> f32 {
    if samples.is_empty() {
        return -200.0;
    }
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * f64::from(frequency) / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let amplitude = 2.0 * power.max(0.0).sqrt() / samples.len() as f64;
    (20.0 * amplitude.max(1e-10).log10()) as f32
}

/// RMS level of `samples` in dBFS (a full-scale sine reads -3 dB).
pub fn rms_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return -200.0;
    }
    let sum: f64 = samples
        .iter()
        .map(|&s| (f64::from(s) / 32768.0).powi(2))
        .sum();
    (10.0 * (sum / samples.len() as f64).max(1e-20).log10()) as f32
}

/// The strongest frequency among `candidates` in `samples`.
pub fn dominant_frequency(
    samples: &[i16],
    rate: u32,
    candidates: impl IntoIterator<Item = f32>,
) -> Option<f32> {
    candidates
        .into_iter()
        .map(|f| (f, goertzel_dbfs(samples, rate, f)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_dial_tone_has_both_frequencies_and_nothing_else() {
        let mut generator =
            ToneGenerator::new(ToneSpec::of(TonePlan::Us, ToneKind::Dial), 8000, -20.0);
        let mut buf = vec![0i16; 8000];
        generator.fill(&mut buf);
        let p350 = goertzel_dbfs(&buf, 8000, 350.0);
        let p440 = goertzel_dbfs(&buf, 8000, 440.0);
        assert!((p350 + 20.0).abs() < 1.0, "350 Hz at {p350} dB");
        assert!((p440 + 20.0).abs() < 1.0, "440 Hz at {p440} dB");
        assert!(goertzel_dbfs(&buf, 8000, 1000.0) < -60.0);
    }

    #[test]
    fn ringback_follows_its_cadence() {
        for (plan, on_ms, off_ms, f) in [
            (TonePlan::Us, 2000, 4000, 480.0),
            (TonePlan::Eu, 1000, 4000, 425.0),
        ] {
            let mut generator =
                ToneGenerator::new(ToneSpec::of(plan, ToneKind::Ringback), 48000, -20.0);
            let mut buf = vec![0i16; 48 * (on_ms + off_ms) as usize];
            generator.fill(&mut buf);
            let on = &buf[..48 * on_ms as usize];
            let off = &buf[48 * on_ms as usize..];
            assert!(goertzel_dbfs(on, 48000, f) > -21.0, "{plan:?} on");
            assert!(off.iter().all(|&s| s == 0), "{plan:?} off period is silent");
        }
    }
}
