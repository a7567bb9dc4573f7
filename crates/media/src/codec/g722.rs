//! G.722 at 64 kbit/s (ITU-T G.722 mode 1): 16 kHz audio split by a QMF into
//! two sub-bands, each coded with ADPCM (6 bits low band, 2 bits high band).
//! The RTP clock stays 8000 Hz by the RFC 3551 erratum; 20 ms = 320 samples =
//! 160 bytes.

const QMF_COEFFS: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];
const Q6: [i32; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4, 0,
];
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32, 0,
];
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [i32; 4] = [2, 1, 2, 1];

fn saturate(value: i32) -> i32 {
    value.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// The adaptive predictor and quantiser scale of one sub-band.
#[derive(Debug, Clone, Default)]
struct Band {
    predicted: i32,
    pole_part: i32,
    zero_part: i32,
    reconstructed: [i32; 3],
    pole_coeffs: [i32; 3],
    pole_coeffs_next: [i32; 3],
    partial: [i32; 3],
    diffs: [i32; 7],
    zero_coeffs: [i32; 7],
    zero_coeffs_next: [i32; 7],
    signs: [i32; 7],
    log_scale: i32,
    scale: i32,
}

impl Band {
    /// The low band starts at scale 32 (DETL), the high band at 8 (DETH).
    fn new(initial_scale: i32) -> Self {
        Band {
            scale: initial_scale,
            ..Band::default()
        }
    }

    fn adapt_scale(&mut self, log_step: i32, max_log: i32, shift_base: i32) {
        let mut nb = (self.log_scale * 127) >> 7;
        nb += log_step;
        self.log_scale = nb.clamp(0, max_log);
        let index = ((self.log_scale >> 6) & 31) as usize;
        let shift = shift_base - (self.log_scale >> 11);
        let value = if shift < 0 {
            ILB[index] << -shift
        } else {
            ILB[index] >> shift
        };
        self.scale = value << 2;
    }

    /// Updates the pole/zero predictor with the quantised difference (ITU block 4).
    fn update_predictor(&mut self, diff: i32) {
        self.diffs[0] = diff;
        self.reconstructed[0] = saturate(self.predicted + diff);
        self.partial[0] = saturate(self.zero_part + diff);

        // Second pole coefficient.
        for i in 0..3 {
            self.signs[i] = self.partial[i] >> 15;
        }
        let wd1 = saturate(self.pole_coeffs[1] << 2);
        let mut wd2 = if self.signs[0] == self.signs[1] {
            -wd1
        } else {
            wd1
        };
        wd2 = wd2.min(32767);
        let mut wd3 = (wd2 >> 7)
            + if self.signs[0] == self.signs[2] {
                128
            } else {
                -128
            };
        wd3 += (self.pole_coeffs[2] * 32512) >> 15;
        self.pole_coeffs_next[2] = wd3.clamp(-12288, 12288);

        // First pole coefficient.
        let wd1 = if self.signs[0] == self.signs[1] {
            192
        } else {
            -192
        };
        let wd2 = (self.pole_coeffs[1] * 32640) >> 15;
        let limit = saturate(15360 - self.pole_coeffs_next[2]);
        self.pole_coeffs_next[1] = saturate(wd1 + wd2).clamp(-limit, limit);

        // Zero coefficients.
        let step = if diff == 0 { 0 } else { 128 };
        self.signs[0] = diff >> 15;
        for i in 1..7 {
            self.signs[i] = self.diffs[i] >> 15;
            let wd2 = if self.signs[i] == self.signs[0] {
                step
            } else {
                -step
            };
            let wd3 = (self.zero_coeffs[i] * 32640) >> 15;
            self.zero_coeffs_next[i] = saturate(wd2 + wd3);
        }

        // Delay lines.
        for i in (1..7).rev() {
            self.diffs[i] = self.diffs[i - 1];
            self.zero_coeffs[i] = self.zero_coeffs_next[i];
        }
        for i in (1..3).rev() {
            self.reconstructed[i] = self.reconstructed[i - 1];
            self.partial[i] = self.partial[i - 1];
            self.pole_coeffs[i] = self.pole_coeffs_next[i];
        }

        // Pole and zero predictor outputs.
        let wd1 = (self.pole_coeffs[1] * saturate(self.reconstructed[1] * 2)) >> 15;
        let wd2 = (self.pole_coeffs[2] * saturate(self.reconstructed[2] * 2)) >> 15;
        self.pole_part = saturate(wd1 + wd2);
        let mut zero = 0;
        for i in (1..7).rev() {
            zero += (self.zero_coeffs[i] * saturate(self.diffs[i] * 2)) >> 15;
        }
        self.zero_part = saturate(zero);
        self.predicted = saturate(self.pole_part + self.zero_part);
    }
}

/// A G.722 64 kbit/s encoder (16 kHz PCM in, one byte per two samples out).
#[derive(Debug, Clone)]
pub struct G722Encoder {
    qmf: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// A fresh encoder state.
    pub fn new() -> Self {
        G722Encoder {
            qmf: [0; 24],
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// Encodes 16 kHz samples (an even count) into `out`; returns bytes written.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let mut written = 0;
        for (pair, byte) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            self.qmf.copy_within(2.., 0);
            self.qmf[22] = i32::from(pair[0]);
            self.qmf[23] = i32::from(pair[1]);
            let mut sum_odd = 0;
            let mut sum_even = 0;
            for i in 0..12 {
                sum_odd += self.qmf[2 * i] * QMF_COEFFS[i];
                sum_even += self.qmf[2 * i + 1] * QMF_COEFFS[11 - i];
            }
            let x_low = (sum_even + sum_odd) >> 14;
            let x_high = (sum_even - sum_odd) >> 14;

            // Low band: 6-bit quantiser; the predictor sees the 4-bit value.
            let el = saturate(x_low - self.low.predicted);
            let magnitude = if el >= 0 { el } else { -(el + 1) };
            let mut level = 1;
            while level < 30 {
                if magnitude < (Q6[level] * self.low.scale) >> 12 {
                    break;
                }
                level += 1;
            }
            let ilow = if el < 0 { ILN[level] } else { ILP[level] };
            let ril = (ilow >> 2) as usize;
            let dlow = (self.low.scale * QM4[ril]) >> 15;
            self.low.adapt_scale(WL[RL42[ril] as usize], 18432, 8);
            self.low.update_predictor(dlow);

            // High band: 2-bit quantiser.
            let eh = saturate(x_high - self.high.predicted);
            let magnitude = if eh >= 0 { eh } else { -(eh + 1) };
            let threshold = (564 * self.high.scale) >> 12;
            let mih = if magnitude >= threshold { 2 } else { 1 };
            let ihigh = if eh < 0 { IHN[mih] } else { IHP[mih] };
            let dhigh = (self.high.scale * QM2[ihigh as usize]) >> 15;
            self.high
                .adapt_scale(WH[RH2[ihigh as usize] as usize], 22528, 10);
            self.high.update_predictor(dhigh);

            *byte = ((ihigh << 6) | ilow) as u8;
            written += 1;
        }
        written
    }
}

/// A G.722 64 kbit/s decoder (one byte in, two 16 kHz samples out).
#[derive(Debug, Clone)]
pub struct G722Decoder {
    qmf: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A fresh decoder state.
    pub fn new() -> Self {
        G722Decoder {
            qmf: [0; 24],
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// Decodes `payload` into `out` (two samples per byte); returns samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        let mut written = 0;
        for (byte, pair) in payload.iter().zip(out.chunks_exact_mut(2)) {
            let code = i32::from(*byte);
            let ilow = (code & 0x3f) as usize;
            let ihigh = ((code >> 6) & 0x03) as usize;

            let rlow =
                (self.low.predicted + ((self.low.scale * QM6[ilow]) >> 15)).clamp(-16384, 16383);
            let ril = ilow >> 2;
            let dlow = (self.low.scale * QM4[ril]) >> 15;
            self.low.adapt_scale(WL[RL42[ril] as usize], 18432, 8);
            self.low.update_predictor(dlow);

            let dhigh = (self.high.scale * QM2[ihigh]) >> 15;
            let rhigh = (dhigh + self.high.predicted).clamp(-16384, 16383);
            self.high.adapt_scale(WH[RH2[ihigh] as usize], 22528, 10);
            self.high.update_predictor(dhigh);

            self.qmf.copy_within(2.., 0);
            self.qmf[22] = rlow + rhigh;
            self.qmf[23] = rlow - rhigh;
            let mut out_first = 0;
            let mut out_second = 0;
            for i in 0..12 {
                out_second += self.qmf[2 * i] * QMF_COEFFS[i];
                out_first += self.qmf[2 * i + 1] * QMF_COEFFS[11 - i];
            }
            pair[0] = saturate(out_first >> 11) as i16;
            pair[1] = saturate(out_second >> 11) as i16;
            written += 2;
        }
        written
    }
}
