//! The PIN prompts, generated as tones at the room rate: nothing to
//! download or license, and distinct enough to tell apart by ear (and by a
//! test's frequency check).

/// A prompt played to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// "Enter your PIN, then #": two short high beeps.
    EnterPin,
    /// "Wrong PIN": two falling low tones.
    WrongPin,
    /// "Joining the room": three rising tones.
    RoomJoin,
}

impl Prompt {
    /// (frequency Hz, milliseconds) steps; frequency 0 is a pause.
    fn steps(self) -> &'static [(f32, u32)] {
        match self {
            Prompt::EnterPin => &[(880.0, 150), (0.0, 100), (880.0, 150), (0.0, 200)],
            Prompt::WrongPin => &[(480.0, 300), (0.0, 50), (320.0, 400), (0.0, 200)],
            Prompt::RoomJoin => &[(523.0, 120), (659.0, 120), (784.0, 200), (0.0, 100)],
        }
    }

    /// The prompt's samples at `rate`, at -16 dBFS, with 5 ms ramps so the
    /// tones do not click.
    pub fn samples(self, rate: u32) -> Vec<i16> {
        let amplitude = 32767.0 * 10f32.powf(-16.0 / 20.0);
        let ramp = (rate / 200).max(1) as usize;
        let mut out = Vec::new();
        for &(freq, ms) in self.steps() {
            let n = (rate as usize * ms as usize) / 1000;
            for i in 0..n {
                let envelope = (i.min(n - 1 - i).min(ramp) as f32) / ramp as f32;
                let phase = 2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32;
                let value = if freq > 0.0 {
                    amplitude * envelope * phase.sin()
                } else {
                    0.0
                };
                out.push(value as i16);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_have_their_length_and_level() {
        let enter = Prompt::EnterPin.samples(48_000);
        assert_eq!(enter.len(), 48 * 600);
        let peak = enter.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((5000..6000).contains(&peak), "peak {peak}");
        assert_eq!(Prompt::RoomJoin.samples(8_000).len(), 8 * 540);
        assert_eq!(enter[0], 0, "ramps start from silence");
    }
}
