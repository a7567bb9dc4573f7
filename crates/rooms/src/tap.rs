//! One participant's own audio, as the room takes it into the mix, for a
//! listener that wants each publisher separately (a WebRTC client gets one
//! track per publisher, as from a LiveKit server, and mixes them itself):
//! Opus-encoded once per round, whoever many listen.

use crate::lock;
use std::sync::{Arc, Mutex, Weak};
use switchboard_media::codec::opus::{OpusEncoder, OpusSettings};
use tracing::debug;

/// Room for one Opus packet of a tap. The encoder is given no more than
/// this, so every packet fits (at the 24 kbit/s we send, a 20 ms packet is
/// about 60 bytes).
const OPUS_SLOT: usize = 400;

/// The shared end of an Opus tap: a fixed ring of packets, allocated once.
pub(crate) struct OpusRing {
    packets: Mutex<PacketRing>,
}

struct PacketRing {
    data: Vec<u8>,
    lens: Vec<usize>,
    head: usize,
    len: usize,
}

impl PacketRing {
    fn push(&mut self, packet: &[u8]) {
        let capacity = self.lens.len();
        if self.len == capacity {
            // Full: the oldest goes, as with PCM frames.
            self.head = (self.head + 1) % capacity;
            self.len -= 1;
        }
        let slot = (self.head + self.len) % capacity;
        let n = packet.len().min(OPUS_SLOT);
        self.data[slot * OPUS_SLOT..slot * OPUS_SLOT + n].copy_from_slice(&packet[..n]);
        self.lens[slot] = n;
        self.len += 1;
    }

    fn pop_into(&mut self, out: &mut [u8]) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let slot = self.head;
        let n = self.lens[slot].min(out.len());
        out[..n].copy_from_slice(&self.data[slot * OPUS_SLOT..slot * OPUS_SLOT + n]);
        self.head = (self.head + 1) % self.lens.len();
        self.len -= 1;
        Some(n)
    }
}

impl OpusRing {
    pub(crate) fn new(capacity: usize) -> Arc<OpusRing> {
        let capacity = capacity.max(1);
        Arc::new(OpusRing {
            packets: Mutex::new(PacketRing {
                data: vec![0; capacity * OPUS_SLOT],
                lens: vec![0; capacity],
                head: 0,
                len: 0,
            }),
        })
    }
}

/// A publisher's audio for the listeners that take it Opus-encoded (the
/// WebRTC clients): encoded once per round, whoever many listen, and
/// copied to each listener's ring. The encoder lives while someone listens.
#[derive(Default)]
pub(crate) struct OpusFanout {
    taps: Vec<Weak<OpusRing>>,
    encoder: Option<(u32, OpusEncoder)>,
    packet: Vec<u8>,
}

impl OpusFanout {
    pub(crate) fn add(&mut self, ring: &Arc<OpusRing>) {
        self.taps.push(Arc::downgrade(ring));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    /// Encodes this round's `frame` (at `rate` Hz) once and hands it to
    /// every live tap; forgets the taps whose listeners are gone.
    pub(crate) fn feed(&mut self, frame: &[i16], rate: u32) {
        self.taps.retain(|tap| tap.strong_count() > 0);
        if self.taps.is_empty() {
            self.encoder = None;
            return;
        }
        if self.encoder.as_ref().map(|(r, _)| *r) != Some(rate) {
            let settings = OpusSettings {
                pcm_rate: rate,
                ..OpusSettings::default()
            };
            match OpusEncoder::new(&settings) {
                Ok(encoder) => self.encoder = Some((rate, encoder)),
                Err(e) => {
                    self.encoder = None;
                    debug!(error = %e, rate, "no Opus encoder at the room's rate");
                    return;
                }
            }
        }
        let Some((_, encoder)) = self.encoder.as_mut() else {
            return;
        };
        self.packet.resize(OPUS_SLOT, 0);
        let n = match encoder.encode(frame, &mut self.packet) {
            Ok(n) => n.min(OPUS_SLOT),
            Err(e) => {
                debug!(error = %e, "frame not encoded");
                return;
            }
        };
        for tap in &self.taps {
            if let Some(ring) = tap.upgrade() {
                lock(&ring.packets).push(&self.packet[..n]);
            }
        }
    }
}

/// A listener's copy of one other participant's audio, Opus-encoded at the
/// room's rate (RTP clock 48 kHz, 20 ms a packet), only while it is heard.
/// Every listener of a publisher shares its one encoding.
pub struct OpusTap {
    pub(crate) ring: Arc<OpusRing>,
}

impl OpusTap {
    /// Takes the publisher's next packet into `out`: its length, or `None`
    /// when there is none.
    pub fn pull(&self, out: &mut [u8]) -> Option<usize> {
        lock(&self.ring.packets).pop_into(out)
    }
}
