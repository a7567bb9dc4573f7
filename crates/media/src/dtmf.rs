//! DTMF as RFC 4733 telephone-events: a receiver that reports each digit
//! exactly once, and a sender that turns a digit string into event packets.

use std::collections::VecDeque;
use std::time::Duration;

/// A DTMF digit as RFC 4733 codes it: 0–9, `*` = 10, `#` = 11, A–D = 12–15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtmfDigit {
    /// The event code, 0..=15.
    pub code: u8,
}

impl DtmfDigit {
    /// The digit for a character (`0-9 * # A-D`, case-insensitive).
    pub fn from_char(c: char) -> Option<DtmfDigit> {
        let code = match c.to_ascii_uppercase() {
            d @ '0'..='9' => d as u8 - b'0',
            '*' => 10,
            '#' => 11,
            d @ 'A'..='D' => 12 + (d as u8 - b'A'),
            _ => return None,
        };
        Some(DtmfDigit { code })
    }

    /// The digit for an event code, if it is one of the 16 DTMF events.
    pub fn from_code(code: u8) -> Option<DtmfDigit> {
        (code <= 15).then_some(DtmfDigit { code })
    }

    /// The character, as LiveKit writes it in `SipDTMF.digit`.
    pub fn as_char(self) -> char {
        match self.code {
            0..=9 => (b'0' + self.code) as char,
            10 => '*',
            11 => '#',
            c => (b'A' + (c - 12)) as char,
        }
    }
}

/// A decoded telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code.
    pub event: u8,
    /// End bit.
    pub end: bool,
    /// Volume in -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in RTP clock units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first four bytes of a payload.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let b = payload.get(..4)?;
        Some(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The 4-byte payload.
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

const HISTORY: usize = 8;

/// Reports each received digit once, at its first packet.
///
/// Events are keyed by RTP timestamp, not by the marker bit, because many
/// carriers omit the marker; a new timestamp is a new digit even if the
/// previous one never sent its end packets. The only exception is the
/// continuation segment of a very long event (RFC 4733 §2.5.1.3), recognised
/// by the previous segment having reached the maximum duration.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    recent: [Option<u32>; HISTORY],
    next_slot: usize,
    last: Option<(u32, TelephoneEvent)>,
}

impl DtmfReceiver {
    /// A receiver with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one telephone-event packet; returns the digit if it starts a new one.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<DtmfDigit> {
        let event = TelephoneEvent::parse(payload)?;
        if self.recent.contains(&Some(timestamp)) {
            if let Some((ts, last)) = &mut self.last {
                if *ts == timestamp {
                    last.end |= event.end;
                    last.duration = last.duration.max(event.duration);
                }
            }
            return None;
        }
        if let Some((last_ts, last)) = self.last {
            // An old event arriving after a newer one has started.
            if (timestamp.wrapping_sub(last_ts) as i32) < 0 {
                return None;
            }
            if last.event == event.event && !last.end && last.duration >= 0xff00 {
                self.remember(timestamp, event);
                return None;
            }
        }
        self.remember(timestamp, event);
        DtmfDigit::from_code(event.event)
    }

    fn remember(&mut self, timestamp: u32, event: TelephoneEvent) {
        self.recent[self.next_slot] = Some(timestamp);
        self.next_slot = (self.next_slot + 1) % HISTORY;
        self.last = Some((timestamp, event));
    }
}

/// How digits are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfSendConfig {
    /// Tone duration per digit (LiveKit: 250 ms).
    pub duration: Duration,
    /// Silence after each digit (LiveKit: 250 ms).
    pub gap: Duration,
    /// Volume in -dBm0 (LiveKit: 10).
    pub volume: u8,
    /// Pause for `w`/`W` in a digit string.
    pub pause: Duration,
}

impl Default for DtmfSendConfig {
    fn default() -> Self {
        DtmfSendConfig {
            duration: Duration::from_millis(250),
            gap: Duration::from_millis(250),
            volume: 10,
            pause: Duration::from_millis(500),
        }
    }
}

/// An invalid character in a digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a DTMF digit (0-9, *, #, A-D, w)")]
pub struct InvalidDigit(pub char);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Digit(DtmfDigit),
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Idle,
    Tone {
        digit: DtmfDigit,
        timestamp: u32,
        elapsed: u32,
        ends_sent: u8,
    },
    Silence {
        remaining: u32,
    },
}

/// What the sender wants in this 20 ms frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfFrame {
    /// No event: send audio as usual.
    Audio,
    /// Send this telephone-event instead of audio.
    Event {
        /// The payload.
        payload: [u8; 4],
        /// Marker bit (first packet of the event).
        marker: bool,
        /// RTP timestamp: the event's start, the same for all its packets.
        timestamp: u32,
    },
}

/// Turns queued digits into one telephone-event packet per 20 ms frame:
/// updates while the tone lasts, then the end packet three times (RFC 4733
/// §2.5.1.4), then a gap of audio.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    config: DtmfSendConfig,
    queue: VecDeque<Step>,
    state: SendState,
}

impl DtmfSender {
    /// A sender with `config`.
    pub fn new(config: DtmfSendConfig) -> Self {
        DtmfSender {
            config,
            queue: VecDeque::with_capacity(32),
            state: SendState::Idle,
        }
    }

    /// Queues a digit string; `w`/`W` pause. Nothing is queued if any character is invalid.
    pub fn queue(&mut self, digits: &str) -> Result<(), InvalidDigit> {
        let steps = digits
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| match c {
                'w' | 'W' => Ok(Step::Pause),
                c => DtmfDigit::from_char(c)
                    .map(Step::Digit)
                    .ok_or(InvalidDigit(c)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.queue.extend(steps);
        Ok(())
    }

    /// True while digits are queued or being sent.
    pub fn is_busy(&self) -> bool {
        !self.queue.is_empty() || self.state != SendState::Idle
    }

    fn units(d: Duration, clock_rate: u32) -> u32 {
        (d.as_micros() as u64 * u64::from(clock_rate) / 1_000_000) as u32
    }

    /// Advances one frame of `frame_units` clock units whose audio timestamp
    /// would be `timestamp`.
    pub fn next_frame(&mut self, timestamp: u32, frame_units: u32, clock_rate: u32) -> DtmfFrame {
        loop {
            match self.state {
                SendState::Idle => match self.queue.pop_front() {
                    None => return DtmfFrame::Audio,
                    Some(Step::Pause) => {
                        self.state = SendState::Silence {
                            remaining: Self::units(self.config.pause, clock_rate),
                        }
                    }
                    Some(Step::Digit(digit)) => {
                        self.state = SendState::Tone {
                            digit,
                            timestamp,
                            elapsed: 0,
                            ends_sent: 0,
                        };
                    }
                },
                SendState::Silence { remaining } => {
                    if remaining == 0 {
                        self.state = SendState::Idle;
                        continue;
                    }
                    self.state = SendState::Silence {
                        remaining: remaining.saturating_sub(frame_units),
                    };
                    return DtmfFrame::Audio;
                }
                SendState::Tone {
                    digit,
                    timestamp: start,
                    elapsed,
                    ends_sent,
                } => {
                    let total = Self::units(self.config.duration, clock_rate).max(frame_units);
                    let marker = elapsed == 0;
                    let elapsed = (elapsed + frame_units).min(total);
                    let end = elapsed >= total;
                    let payload = TelephoneEvent {
                        event: digit.code,
                        end,
                        volume: self.config.volume,
                        duration: elapsed.min(0xffff) as u16,
                    }
                    .to_bytes();
                    let ends_sent = ends_sent + u8::from(end);
                    self.state = if ends_sent >= 3 {
                        SendState::Silence {
                            remaining: Self::units(self.config.gap, clock_rate),
                        }
                    } else {
                        SendState::Tone {
                            digit,
                            timestamp: start,
                            elapsed,
                            ends_sent,
                        }
                    };
                    return DtmfFrame::Event {
                        payload,
                        marker,
                        timestamp: start,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_all(sender: &mut DtmfSender) -> Vec<(u32, TelephoneEvent, bool)> {
        let mut out = vec![];
        let mut ts = 1000u32;
        for _ in 0..2000 {
            if let DtmfFrame::Event {
                payload,
                marker,
                timestamp,
            } = sender.next_frame(ts, 160, 8000)
            {
                out.push((timestamp, TelephoneEvent::parse(&payload).unwrap(), marker));
            }
            ts = ts.wrapping_add(160);
            if !sender.is_busy() {
                break;
            }
        }
        out
    }

    #[test]
    fn sends_updates_then_three_end_packets() {
        let mut sender = DtmfSender::new(DtmfSendConfig::default());
        sender.queue("5").unwrap();
        let packets = send_all(&mut sender);
        // 250 ms in 20 ms steps: 12 updates (the 13th reaches the end) + 3 ends.
        let ends: Vec<_> = packets.iter().filter(|p| p.1.end).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(|p| p.1.duration == 2000));
        assert!(packets[0].2, "first packet carries the marker");
        assert!(packets[1..].iter().all(|p| !p.2));
        assert!(packets
            .iter()
            .all(|p| p.0 == packets[0].0 && p.1.event == 5 && p.1.volume == 10));
    }

    #[test]
    fn pause_spaces_digits_by_half_a_second() {
        let mut sender = DtmfSender::new(DtmfSendConfig::default());
        sender.queue("1w2").unwrap();
        let packets = send_all(&mut sender);
        let first = packets.iter().find(|p| p.1.event == 1).unwrap().0;
        let second = packets.iter().find(|p| p.1.event == 2).unwrap().0;
        // 250 ms tone + 40 ms more end packets + 250 ms gap + 500 ms pause.
        let gap_ms = (second - first) / 8;
        assert!(
            (1000..=1100).contains(&gap_ms),
            "{gap_ms} ms between digit starts"
        );
        assert_eq!(sender.queue("1x"), Err(InvalidDigit('x')));
    }

    #[test]
    fn receiver_reports_each_digit_once_without_marker_or_end() {
        let mut rx = DtmfReceiver::new();
        let mut seen = vec![];
        let ev = |e: u8, end: bool, d: u16| {
            TelephoneEvent {
                event: e,
                end,
                volume: 10,
                duration: d,
            }
            .to_bytes()
        };
        // Digit 1: updates, duplicates, three ends.
        for (ts, p) in [
            (100, ev(1, false, 160)),
            (100, ev(1, false, 320)),
            (100, ev(1, false, 320)),
            (100, ev(1, true, 480)),
            (100, ev(1, true, 480)),
            (100, ev(1, true, 480)),
        ] {
            seen.extend(rx.on_packet(ts, &p));
        }
        // Digit 1 again with its end packets lost, then 2.
        for (ts, p) in [
            (2000, ev(1, false, 160)),
            (2000, ev(1, false, 320)),
            (4000, ev(2, false, 160)),
            (4000, ev(2, true, 800)),
        ] {
            seen.extend(rx.on_packet(ts, &p));
        }
        // A late duplicate of the first digit.
        seen.extend(rx.on_packet(100, &ev(1, true, 480)));
        assert_eq!(seen.iter().map(|d| d.as_char()).collect::<String>(), "112");
    }

    #[test]
    fn long_event_segments_are_one_digit() {
        let mut rx = DtmfReceiver::new();
        let ev = |end: bool, d: u16| {
            TelephoneEvent {
                event: 9,
                end,
                volume: 10,
                duration: d,
            }
            .to_bytes()
        };
        assert!(rx.on_packet(0, &ev(false, 0xffff)).is_some());
        assert!(rx.on_packet(0xffff, &ev(false, 800)).is_none());
    }

    #[test]
    fn digits_map_both_ways() {
        for (c, code) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('a', 12),
            ('D', 15),
        ] {
            let d = DtmfDigit::from_char(c).unwrap();
            assert_eq!(d.code, code);
            assert_eq!(d.as_char(), c.to_ascii_uppercase());
        }
        assert_eq!(DtmfDigit::from_code(16), None);
    }
}
