//! Adaptive jitter buffer: reorders packets, drops duplicates and late
//! packets, declares losses at playout time, and adapts its depth to the
//! measured interarrival jitter (RFC 3550 §6.4.1 estimator).
//!
//! It is sans-IO: the caller pushes packets with their arrival time and pops
//! one packet per playout step. Storage is allocated once (32 slots).

use crate::rtp::{RtpView, SequenceExtender};
use std::time::{Duration, Instant};

const SLOTS: usize = 32;
/// Largest payload a slot keeps; bigger packets are dropped and counted.
pub const MAX_SLOT_PAYLOAD: usize = 1500;
/// A sequence jump beyond this many packets is a new stream, not a loss burst.
const RESYNC_JUMP: u64 = 100;

/// Depth bounds of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// The least audio held before playout starts and while playing.
    pub min_delay: Duration,
    /// The most audio held; beyond it packets are discarded to catch up.
    pub max_delay: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(300),
        }
    }
}

/// Counters of what the buffer did, for per-call statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets accepted into the buffer.
    pub stored: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Packets found missing at playout time (concealed).
    pub lost: u64,
    /// Packets dropped to shrink an over-deep buffer.
    pub discarded: u64,
    /// Packets that arrived out of order but in time.
    pub reordered: u64,
    /// Times the buffer ran empty while playing.
    pub underruns: u64,
    /// Restarts because of an SSRC change or a sequence jump.
    pub resets: u64,
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for playout.
    Stored,
    /// Already held or already played.
    Duplicate,
    /// Arrived after its playout slot.
    Late,
    /// Too large for a slot.
    TooLarge,
    /// Started a new stream (SSRC change or sequence jump); stored.
    Reset,
}

/// One playout step.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    /// The next packet in sequence.
    Packet {
        /// Its payload.
        payload: &'a [u8],
        /// Its RTP timestamp.
        timestamp: u32,
    },
    /// The next packet is missing while later ones are here: conceal one
    /// packet; `next` is the packet after it, for FEC.
    Lost {
        /// The payload after the lost one, if present.
        next: Option<&'a [u8]>,
    },
    /// Nothing to play (buffering, underrun or no stream).
    Empty,
}

#[derive(Debug, Clone, Copy, Default)]
struct SlotMeta {
    occupied: bool,
    ext_seq: u64,
    timestamp: u32,
    len: u16,
}

/// The jitter buffer of one inbound stream.
pub struct JitterBuffer {
    config: JitterConfig,
    clock_rate: u32,
    meta: [SlotMeta; SLOTS],
    data: Vec<u8>,
    extender: SequenceExtender,
    ssrc: Option<u32>,
    next_seq: Option<u64>,
    highest_seq: Option<u64>,
    last_pushed: Option<u64>,
    playing: bool,
    count: usize,
    packet_duration: u32,
    last_timestamp: Option<u32>,
    // RFC 3550 jitter, in clock units scaled by 16 as in its appendix A.8.
    jitter_q4: u64,
    last_transit: Option<i64>,
    epoch: Option<Instant>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer for a stream with `clock_rate` RTP clock.
    pub fn new(config: JitterConfig, clock_rate: u32) -> Self {
        JitterBuffer {
            config,
            clock_rate: clock_rate.max(1),
            meta: [SlotMeta::default(); SLOTS],
            data: vec![0; SLOTS * MAX_SLOT_PAYLOAD],
            extender: SequenceExtender::default(),
            ssrc: None,
            next_seq: None,
            highest_seq: None,
            last_pushed: None,
            playing: false,
            count: 0,
            packet_duration: clock_rate / 50,
            last_timestamp: None,
            jitter_q4: 0,
            last_transit: None,
            epoch: None,
            stats: JitterStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Interarrival jitter (RFC 3550) in RTP clock units.
    pub fn jitter_clock_units(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        f64::from(self.jitter_clock_units()) * 1000.0 / f64::from(self.clock_rate)
    }

    /// Audio currently held, in milliseconds.
    pub fn depth_ms(&self) -> u32 {
        (self.count as u64 * u64::from(self.packet_duration) * 1000 / u64::from(self.clock_rate))
            as u32
    }

    /// The depth the buffer aims for now: the minimum, or twice the jitter
    /// plus one packet when the network is worse, capped at the maximum.
    pub fn target_delay_ms(&self) -> u32 {
        let packet_ms = self.packet_duration * 1000 / self.clock_rate;
        let wanted = packet_ms as f64 + 3.0 * self.jitter_ms();
        (wanted as u32).clamp(
            self.config.min_delay.as_millis() as u32,
            self.config.max_delay.as_millis() as u32,
        )
    }

    /// The extended sequence number of the last packet pushed (whatever
    /// its outcome), for RTCP reception accounting.
    pub fn last_extended_sequence(&self) -> Option<u64> {
        self.last_pushed
    }

    /// The highest extended sequence number received, for RTCP.
    pub fn highest_sequence(&self) -> Option<u64> {
        self.highest_seq
    }

    fn reset(&mut self) {
        self.meta = [SlotMeta::default(); SLOTS];
        self.extender.reset();
        self.next_seq = None;
        self.highest_seq = None;
        self.playing = false;
        self.count = 0;
        self.last_timestamp = None;
        self.last_transit = None;
        self.stats.resets += 1;
    }

    fn update_jitter(&mut self, now: Instant, timestamp: u32) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = (now.duration_since(epoch).as_secs_f64() * f64::from(self.clock_rate)) as i64;
        let transit = arrival - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // A timestamp jump (a sender restarting its clock, silence
            // suppression) is not jitter: resynchronise instead of polluting
            // the estimate for the next hundred packets.
            if d < u64::from(self.clock_rate) {
                let jitter = self.jitter_q4 as i64;
                self.jitter_q4 = (jitter + (d as i64) - ((jitter + 8) >> 4)).max(0) as u64;
            }
        }
        self.last_transit = Some(transit);
    }

    /// Pushes a received packet that arrived at `now`.
    pub fn push(&mut self, now: Instant, packet: &RtpView<'_>) -> PushOutcome {
        if packet.payload.len() > MAX_SLOT_PAYLOAD {
            return PushOutcome::TooLarge;
        }
        let mut outcome = PushOutcome::Stored;
        if self.ssrc.is_some_and(|s| s != packet.ssrc) {
            self.reset();
            outcome = PushOutcome::Reset;
        }
        self.ssrc = Some(packet.ssrc);
        let mut ext = self.extender.extend(packet.sequence);
        if let Some(highest) = self.highest_seq {
            if ext > highest + RESYNC_JUMP || ext + RESYNC_JUMP * 4 < highest {
                self.reset();
                self.ssrc = Some(packet.ssrc);
                ext = self.extender.extend(packet.sequence);
                outcome = PushOutcome::Reset;
            }
        }
        self.last_pushed = Some(ext);
        if let Some(next) = self.next_seq {
            if ext < next {
                self.stats.late += 1;
                return PushOutcome::Late;
            }
        }
        let slot = (ext % SLOTS as u64) as usize;
        if self.meta[slot].occupied {
            if self.meta[slot].ext_seq == ext {
                self.stats.duplicates += 1;
                return PushOutcome::Duplicate;
            }
            // The slot holds a packet SLOTS behind: the buffer overflowed.
            self.meta[slot].occupied = false;
            self.count -= 1;
            self.stats.discarded += 1;
            if let Some(next) = self.next_seq {
                self.next_seq = Some(next.max(self.meta[slot].ext_seq + 1));
            }
        }
        self.update_jitter(now, packet.timestamp);
        match self.highest_seq {
            Some(h) if ext < h => self.stats.reordered += 1,
            Some(h) if ext == h + 1 => {
                if let Some(last_ts) = self.last_timestamp {
                    let delta = packet.timestamp.wrapping_sub(last_ts);
                    // Learn the packetisation (ptime) from consecutive packets.
                    if delta > 0 && delta <= self.clock_rate / 5 {
                        self.packet_duration = delta;
                    }
                }
            }
            _ => {}
        }
        if self.highest_seq.is_none_or(|h| ext > h) {
            self.highest_seq = Some(ext);
            self.last_timestamp = Some(packet.timestamp);
        }
        self.meta[slot] = SlotMeta {
            occupied: true,
            ext_seq: ext,
            timestamp: packet.timestamp,
            len: packet.payload.len() as u16,
        };
        let start = slot * MAX_SLOT_PAYLOAD;
        self.data[start..start + packet.payload.len()].copy_from_slice(packet.payload);
        self.count += 1;
        self.stats.stored += 1;
        outcome
    }

    fn lowest_held(&self) -> Option<u64> {
        self.meta
            .iter()
            .filter(|m| m.occupied)
            .map(|m| m.ext_seq)
            .min()
    }

    fn payload_of(&self, ext: u64) -> Option<&[u8]> {
        let slot = (ext % SLOTS as u64) as usize;
        let meta = &self.meta[slot];
        (meta.occupied && meta.ext_seq == ext).then(|| {
            let start = slot * MAX_SLOT_PAYLOAD;
            &self.data[start..start + usize::from(meta.len)]
        })
    }

    /// Takes the next playout step.
    pub fn pop(&mut self) -> Playout<'_> {
        if !self.playing {
            if self.count == 0 || self.depth_ms() < self.target_delay_ms() {
                return Playout::Empty;
            }
            self.playing = true;
            // After an underrun keep waiting for the packet we stopped at, so
            // a gap that never fills is counted as loss; late packets were
            // refused, so everything held is at or after it.
            self.next_seq = self.next_seq.or(self.lowest_held());
        }
        // Too deep (a burst after a stall): skip ahead to the target.
        let max_ms = self.config.max_delay.as_millis() as u32;
        while self.depth_ms() > max_ms && self.count > 1 {
            if let Some(next) = self.next_seq {
                let slot = (next % SLOTS as u64) as usize;
                if self.meta[slot].occupied && self.meta[slot].ext_seq == next {
                    self.meta[slot].occupied = false;
                    self.count -= 1;
                    self.stats.discarded += 1;
                }
                self.next_seq = Some(next + 1);
            }
        }
        let Some(next) = self.next_seq else {
            return Playout::Empty;
        };
        let slot = (next % SLOTS as u64) as usize;
        if self.meta[slot].occupied && self.meta[slot].ext_seq == next {
            self.meta[slot].occupied = false;
            self.count -= 1;
            self.next_seq = Some(next + 1);
            let start = slot * MAX_SLOT_PAYLOAD;
            let meta = self.meta[slot];
            return Playout::Packet {
                payload: &self.data[start..start + usize::from(meta.len)],
                timestamp: meta.timestamp,
            };
        }
        if self.count == 0 {
            // Nothing later either: the sender paused or the network
            // stalled. Rebuffer rather than declare losses we can't know of.
            self.playing = false;
            self.stats.underruns += 1;
            return Playout::Empty;
        }
        self.next_seq = Some(next + 1);
        self.stats.lost += 1;
        Playout::Lost {
            next: self.payload_of(next + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, payload: &[u8]) -> RtpView<'_> {
        RtpView {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 7,
            payload,
        }
    }

    fn drain(jb: &mut JitterBuffer) -> Vec<Option<u8>> {
        let mut out = vec![];
        loop {
            match jb.pop() {
                Playout::Packet { payload, .. } => out.push(Some(payload[0])),
                Playout::Lost { .. } => out.push(None),
                Playout::Empty => return out,
            }
        }
    }

    #[test]
    fn reorders_drops_duplicates_and_reports_loss() {
        let now = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        for seq in [1u16, 3, 2, 2, 5, 6] {
            jb.push(now, &packet(seq, &[seq as u8]));
        }
        assert_eq!(
            drain(&mut jb),
            vec![Some(1), Some(2), Some(3), None, Some(5), Some(6)]
        );
        let stats = jb.stats();
        assert_eq!(stats.duplicates, 1);
        assert_eq!(stats.lost, 1);
        assert_eq!(stats.reordered, 1);
        assert_eq!(jb.push(now, &packet(4, &[4])), PushOutcome::Late);
    }

    #[test]
    fn survives_sequence_wrap() {
        let now = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        for seq in [65534u16, 65535, 0, 1] {
            jb.push(now, &packet(seq, &[seq as u8]));
        }
        assert_eq!(drain(&mut jb), vec![Some(254), Some(255), Some(0), Some(1)]);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn ssrc_change_and_sequence_jump_restart_the_stream() {
        let now = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        jb.push(now, &packet(10, &[10]));
        jb.push(now, &packet(11, &[11]));
        let mut other = packet(5000, &[50]);
        assert_eq!(jb.push(now, &other), PushOutcome::Reset);
        other.ssrc = 8;
        other.sequence = 20;
        assert_eq!(jb.push(now, &other), PushOutcome::Reset);
        let next = packet(21, &[21]);
        let mut next = next;
        next.ssrc = 8;
        jb.push(now, &next);
        assert_eq!(drain(&mut jb), vec![Some(50), Some(21)]);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn waits_for_the_target_depth_before_playing() {
        let now = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        jb.push(now, &packet(1, &[1]));
        assert_eq!(jb.pop(), Playout::Empty, "20 ms held, 40 ms wanted");
        jb.push(now, &packet(2, &[2]));
        assert!(matches!(jb.pop(), Playout::Packet { .. }));
    }

    #[test]
    fn jitter_estimate_grows_with_irregular_arrival_and_deepens_the_target() {
        let start = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        for seq in 0..200u16 {
            // Every other packet 30 ms late.
            let wobble = if seq % 2 == 0 { 0 } else { 30 };
            let at = start + Duration::from_millis(u64::from(seq) * 20 + wobble);
            jb.push(at, &packet(seq, &[0]));
            while !matches!(jb.pop(), Playout::Empty) {}
        }
        assert!(jb.jitter_ms() > 10.0, "jitter {}", jb.jitter_ms());
        assert!(jb.target_delay_ms() > 60, "target {}", jb.target_delay_ms());
    }
}
