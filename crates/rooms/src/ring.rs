//! A fixed ring of 20 ms frames, allocated once: the hand-off between a
//! participant's endpoint (RTP worker, WebSocket task) and the room's mixer,
//! which run on different clocks.

/// Up to `capacity` frames of `frame_len` samples. Pushing onto a full ring
/// drops the oldest frame: late audio is worth less than current audio.
#[derive(Debug)]
pub(crate) struct FrameRing {
    samples: Vec<i16>,
    frame_len: usize,
    capacity: usize,
    head: usize,
    len: usize,
    dropped: u64,
}

impl FrameRing {
    pub(crate) fn new(frame_len: usize, capacity: usize) -> FrameRing {
        let capacity = capacity.max(1);
        FrameRing {
            samples: vec![0; frame_len * capacity],
            frame_len,
            capacity,
            head: 0,
            len: 0,
            dropped: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Frames dropped because the ring was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends a frame; a short frame is zero-extended, a long one cut.
    pub(crate) fn push(&mut self, frame: &[i16]) {
        if self.len == self.capacity {
            self.head = (self.head + 1) % self.capacity;
            self.len -= 1;
            self.dropped += 1;
        }
        let slot = (self.head + self.len) % self.capacity;
        let dest = &mut self.samples[slot * self.frame_len..(slot + 1) * self.frame_len];
        let n = frame.len().min(self.frame_len);
        dest[..n].copy_from_slice(&frame[..n]);
        dest[n..].fill(0);
        self.len += 1;
    }

    /// The oldest frame, if any, without removing it.
    pub(crate) fn front(&self) -> Option<&[i16]> {
        (self.len > 0)
            .then(|| &self.samples[self.head * self.frame_len..(self.head + 1) * self.frame_len])
    }

    /// Removes the oldest frame.
    pub(crate) fn pop_front(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.capacity;
            self.len -= 1;
        }
    }

    /// Copies the oldest frame into `out` and removes it.
    pub(crate) fn pop_into(&mut self, out: &mut [i16]) -> bool {
        let Some(front) = self.front() else {
            return false;
        };
        let n = out.len().min(front.len());
        out[..n].copy_from_slice(&front[..n]);
        out[n..].fill(0);
        self.pop_front();
        true
    }

    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_drops_the_oldest_when_full_and_pads_short_frames() {
        let mut ring = FrameRing::new(3, 2);
        ring.push(&[1, 1, 1]);
        ring.push(&[2, 2]);
        ring.push(&[3, 3, 3, 3]);
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.dropped(), 1);
        let mut out = [9; 3];
        assert!(ring.pop_into(&mut out));
        assert_eq!(out, [2, 2, 0]);
        assert!(ring.pop_into(&mut out));
        assert_eq!(out, [3, 3, 3]);
        assert!(!ring.pop_into(&mut out));
    }
}
