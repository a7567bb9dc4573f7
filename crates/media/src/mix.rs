//! Mixing 20 ms frames: each participant hears everyone but themselves
//! ("mix-minus"), summed once in 32 bits and clipped once per output.
//! Allocation-free after [`Mixer::new`].

/// A mix-minus mixer for up to a fixed number of inputs of one frame length.
pub struct Mixer {
    sum: Vec<i32>,
}

impl Mixer {
    /// A mixer for frames of `frame_len` samples.
    pub fn new(frame_len: usize) -> Mixer {
        Mixer {
            sum: vec![0; frame_len],
        }
    }

    /// Writes into `outputs[i]` the sum of every input except `inputs[i]`
    /// (`None` = that participant is silent). Frames shorter than the mixer's
    /// length are zero-extended.
    pub fn mix_minus(&mut self, inputs: &[Option<&[i16]>], outputs: &mut [&mut [i16]]) {
        self.sum.fill(0);
        for frame in inputs.iter().flatten() {
            for (acc, s) in self.sum.iter_mut().zip(frame.iter()) {
                *acc += i32::from(*s);
            }
        }
        for (i, out) in outputs.iter_mut().enumerate() {
            let clip = |v: i32| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            match inputs.get(i).copied().flatten() {
                // Straight zips so the compiler vectorises the common case.
                Some(own) if own.len() >= self.sum.len() => {
                    for ((o, acc), mine) in out.iter_mut().zip(self.sum.iter()).zip(own.iter()) {
                        *o = clip(acc - i32::from(*mine));
                    }
                }
                Some(own) => {
                    for (j, (o, acc)) in out.iter_mut().zip(self.sum.iter()).enumerate() {
                        *o = clip(acc - own.get(j).map_or(0, |s| i32::from(*s)));
                    }
                }
                None => {
                    for (o, acc) in out.iter_mut().zip(self.sum.iter()) {
                        *o = clip(*acc);
                    }
                }
            }
        }
    }
}

impl Mixer {
    /// [`Mixer::mix_minus`] over flat buffers, for callers that keep every
    /// participant's frame in one allocation: frame `i` is
    /// `inputs[i * len..(i + 1) * len]` (silent unless `active[i]`), and its
    /// mix is written to the same range of `outputs`.
    pub fn mix_minus_flat(&mut self, inputs: &[i16], active: &[bool], outputs: &mut [i16]) {
        let len = self.sum.len();
        if len == 0 {
            return;
        }
        self.sum.fill(0);
        for (frame, _) in inputs.chunks_exact(len).zip(active).filter(|(_, on)| **on) {
            for (acc, s) in self.sum.iter_mut().zip(frame) {
                *acc += i32::from(*s);
            }
        }
        let clip = |v: i32| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        for ((out, own), on) in outputs
            .chunks_exact_mut(len)
            .zip(inputs.chunks_exact(len))
            .zip(active)
        {
            if *on {
                for ((o, acc), mine) in out.iter_mut().zip(self.sum.iter()).zip(own) {
                    *o = clip(acc - i32::from(*mine));
                }
            } else {
                for (o, acc) in out.iter_mut().zip(self.sum.iter()) {
                    *o = clip(*acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hears_the_others_not_themselves_and_sums_clip() {
        let mut mixer = Mixer::new(4);
        let a = [100i16, 200, 30_000, -30_000];
        let b = [1i16, 2, 30_000, -30_000];
        let c = [10i16, 20, 0, 0];
        let (mut oa, mut ob, mut oc, mut od) = ([0i16; 4], [0i16; 4], [0i16; 4], [0i16; 4]);
        mixer.mix_minus(
            &[Some(&a), Some(&b), Some(&c), None],
            &mut [&mut oa, &mut ob, &mut oc, &mut od],
        );
        assert_eq!(oa, [11, 22, 30_000, -30_000]);
        assert_eq!(ob, [110, 220, 30_000, -30_000]);
        assert_eq!(
            oc,
            [101, 202, 32_767, -32_768],
            "clipped once, at the output"
        );
        assert_eq!(od, [111, 222, 32_767, -32_768]);

        let inputs = [a, b, c, [7, 7, 7, 7]].concat();
        let mut flat = [0i16; 16];
        mixer.mix_minus_flat(&inputs, &[true, true, true, false], &mut flat);
        assert_eq!(
            flat.to_vec(),
            [oa, ob, oc, od].concat(),
            "flat and sliced agree"
        );
    }
}
