//! Per-call SIP traces: the transport's tap hands every message here, it
//! is filed under its Call-ID, and the call takes its messages when it
//! ends (to keep them with its record).
//!
//! The INVITE that starts a call is tapped before the call exists, so
//! messages are kept for any Call-ID at first. A call *claims* its Call-ID
//! when it starts; unclaimed traces (OPTIONS pings, scanners, a challenged
//! INVITE whose retry has not come yet) are forgotten after
//! [`TraceConfig::unclaimed_ttl`] or when the unclaimed bytes pass
//! [`TraceConfig::max_unclaimed_bytes`], oldest first. A claimed trace
//! lives as long as its call and never grows past
//! [`TraceConfig::max_bytes_per_call`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchboard_sip::tap::{MessageTap, TappedMessage};
use switchboard_store::{CallTrace, TracedMessage};

/// Limits of the traces kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceConfig {
    /// Keep traces at all.
    pub enabled: bool,
    /// Most message bytes kept per call; later messages are dropped and
    /// the trace is marked truncated.
    pub max_bytes_per_call: usize,
    /// How long messages of a Call-ID no call claimed are kept.
    pub unclaimed_ttl: Duration,
    /// Most bytes of unclaimed traces; the oldest go first.
    pub max_unclaimed_bytes: usize,
}

impl Default for TraceConfig {
    fn default() -> TraceConfig {
        TraceConfig {
            enabled: true,
            max_bytes_per_call: 64 * 1024,
            unclaimed_ttl: Duration::from_secs(30),
            max_unclaimed_bytes: 16 << 20,
        }
    }
}

/// A message as tapped: what the transport's task pays for per message is
/// one copy of its bytes; the text of the addresses is written only when
/// the trace is read.
struct Tapped {
    at: SystemTime,
    sent: bool,
    transport: switchboard_sip::Transport,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    data: Box<[u8]>,
}

impl Tapped {
    fn traced(&self) -> TracedMessage {
        TracedMessage {
            at_ns: unix_ns(self.at),
            sent: self.sent,
            transport: self.transport.as_str().to_ascii_lowercase(),
            local: self.local.to_string(),
            remote: self.remote.to_string(),
            data: self.data.to_vec(),
        }
    }
}

struct Buffer {
    messages: Vec<Tapped>,
    bytes: usize,
    truncated: bool,
    claimed: bool,
    /// Which entry of the unclaimed queue is this buffer's.
    generation: u64,
}

#[derive(Default)]
struct Buffers {
    by_call_id: HashMap<String, Buffer>,
    /// Unclaimed traces by age: (first message, Call-ID, generation).
    unclaimed: VecDeque<(Instant, String, u64)>,
    unclaimed_bytes: usize,
    next_generation: u64,
}

/// The traces of the calls in progress (and of messages no call claimed
/// yet). Implements the SIP transport's [`MessageTap`].
pub struct SipTraces {
    config: TraceConfig,
    buffers: Mutex<Buffers>,
}

impl SipTraces {
    /// Traces kept within `config`'s limits.
    pub fn new(config: TraceConfig) -> SipTraces {
        SipTraces {
            config,
            buffers: Mutex::new(Buffers::default()),
        }
    }

    fn buffers(&self) -> std::sync::MutexGuard<'_, Buffers> {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the messages of `call_id` for as long as the call lasts.
    pub(crate) fn claim(&self, call_id: &str) {
        if !self.config.enabled {
            return;
        }
        let mut buffers = self.buffers();
        let buffers = &mut *buffers;
        match buffers.by_call_id.get_mut(call_id) {
            Some(buffer) if !buffer.claimed => {
                buffer.claimed = true;
                buffers.unclaimed_bytes = buffers.unclaimed_bytes.saturating_sub(buffer.bytes);
            }
            Some(_) => {}
            None => {
                buffers.by_call_id.insert(
                    call_id.to_owned(),
                    Buffer {
                        messages: Vec::new(),
                        bytes: 0,
                        truncated: false,
                        claimed: true,
                        generation: 0,
                    },
                );
            }
        }
    }

    /// Lets go of a call's messages without taking them (a challenged
    /// INVITE: its retry, with the same Call-ID, takes the whole ladder).
    pub(crate) fn release(&self, call_id: &str, now: Instant) {
        let mut buffers = self.buffers();
        let buffers = &mut *buffers;
        if let Some(buffer) = buffers.by_call_id.get_mut(call_id) {
            if buffer.claimed {
                buffer.claimed = false;
                buffers.next_generation += 1;
                buffer.generation = buffers.next_generation;
                buffers.unclaimed_bytes = buffers.unclaimed_bytes.saturating_add(buffer.bytes);
                buffers
                    .unclaimed
                    .push_back((now, call_id.to_owned(), buffer.generation));
            }
        }
    }

    /// Takes the messages of `call_id` so far (the call has ended).
    pub(crate) fn take(&self, call_id: &str) -> Option<CallTrace> {
        let mut buffers = self.buffers();
        let buffer = buffers.by_call_id.remove(call_id)?;
        if !buffer.claimed {
            buffers.unclaimed_bytes = buffers.unclaimed_bytes.saturating_sub(buffer.bytes);
        }
        Some(CallTrace {
            messages: buffer.messages.iter().map(Tapped::traced).collect(),
            truncated: buffer.truncated,
        })
    }

    /// A copy of the messages of `call_id` so far (a call in progress).
    pub fn snapshot(&self, call_id: &str) -> Option<CallTrace> {
        let buffers = self.buffers();
        let buffer = buffers.by_call_id.get(call_id)?;
        Some(CallTrace {
            messages: buffer.messages.iter().map(Tapped::traced).collect(),
            truncated: buffer.truncated,
        })
    }

    /// Call-IDs with a trace in memory (claimed or not), for leak checks.
    pub fn len(&self) -> usize {
        self.buffers().by_call_id.len()
    }

    /// No trace is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets unclaimed traces that are too old, then the oldest while
    /// unclaimed bytes pass the cap.
    fn prune(&self, buffers: &mut Buffers, now: Instant) {
        while let Some((first, call_id, generation)) = buffers.unclaimed.front() {
            let expired = now.saturating_duration_since(*first) >= self.config.unclaimed_ttl;
            if !expired && buffers.unclaimed_bytes <= self.config.max_unclaimed_bytes {
                break;
            }
            let stale = buffers
                .by_call_id
                .get(call_id)
                .is_some_and(|b| !b.claimed && b.generation == *generation);
            if stale {
                if let Some(buffer) = buffers.by_call_id.remove(call_id) {
                    buffers.unclaimed_bytes = buffers.unclaimed_bytes.saturating_sub(buffer.bytes);
                }
            }
            buffers.unclaimed.pop_front();
        }
    }

    fn record(&self, call_id: &str, message: Tapped, now: Instant) {
        let size = message.data.len();
        let mut buffers = self.buffers();
        let buffers = &mut *buffers;
        let buffer = match buffers.by_call_id.get_mut(call_id) {
            Some(buffer) => buffer,
            None => {
                self.prune(buffers, now);
                buffers.next_generation += 1;
                let generation = buffers.next_generation;
                buffers
                    .unclaimed
                    .push_back((now, call_id.to_owned(), generation));
                buffers
                    .by_call_id
                    .entry(call_id.to_owned())
                    .or_insert(Buffer {
                        messages: Vec::new(),
                        bytes: 0,
                        truncated: false,
                        claimed: false,
                        generation,
                    })
            }
        };
        if buffer.truncated || buffer.bytes.saturating_add(size) > self.config.max_bytes_per_call {
            buffer.truncated = true;
            return;
        }
        buffer.bytes = buffer.bytes.saturating_add(size);
        buffer.messages.push(message);
        if !buffer.claimed {
            buffers.unclaimed_bytes = buffers.unclaimed_bytes.saturating_add(size);
        }
    }
}

/// Nanoseconds since the Unix epoch (0 before it, saturated far after).
pub(crate) fn unix_ns(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl MessageTap for SipTraces {
    fn tapped(&self, message: TappedMessage<'_>) {
        if !self.config.enabled {
            return;
        }
        let Some(call_id) = message.call_id else {
            return;
        };
        let traced = Tapped {
            at: message.at,
            sent: message.sent,
            transport: message.transport,
            local: message.local,
            remote: message.remote,
            data: message.data.into(),
        };
        self.record(call_id, traced, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use switchboard_sip::Transport;

    fn tap(traces: &SipTraces, call_id: &str, text: &str) {
        let data = format!("OPTIONS sip:x SIP/2.0\r\nCall-ID: {call_id}\r\n\r\n{text}");
        traces.tapped(TappedMessage {
            at: SystemTime::now(),
            sent: false,
            transport: Transport::Udp,
            local: SocketAddr::from(([127, 0, 0, 1], 5060)),
            remote: SocketAddr::from(([127, 0, 0, 2], 5060)),
            data: data.as_bytes(),
            call_id: switchboard_sip::tap::peek_call_id(data.as_bytes()),
        });
    }

    fn config() -> TraceConfig {
        TraceConfig {
            enabled: true,
            max_bytes_per_call: 200,
            unclaimed_ttl: Duration::from_secs(30),
            max_unclaimed_bytes: 400,
        }
    }

    #[test]
    fn a_claimed_call_keeps_the_messages_that_came_before_the_claim() {
        let traces = SipTraces::new(config());
        tap(&traces, "a", "invite");
        traces.claim("a");
        tap(&traces, "a", "ack");
        tap(&traces, "b", "other call");
        let trace = traces.take("a").unwrap_or_default();
        assert_eq!(trace.messages.len(), 2);
        assert!(!trace.truncated);
        assert!(trace.messages[0].data.ends_with(b"invite"));
        assert_eq!(trace.messages[0].remote, "127.0.0.2:5060");
        assert_eq!(trace.messages[0].transport, "udp");
        assert!(traces.take("a").is_none(), "taken once");
        assert_eq!(traces.len(), 1, "b is still unclaimed");
    }

    #[test]
    fn a_trace_stops_growing_at_its_cap_and_says_so() {
        let traces = SipTraces::new(config());
        traces.claim("a");
        for _ in 0..10 {
            tap(&traces, "a", "0123456789");
        }
        let trace = traces.take("a").unwrap_or_default();
        assert!(trace.truncated);
        let bytes: usize = trace.messages.iter().map(|m| m.data.len()).sum();
        assert!(bytes <= 200, "{bytes}");
        assert!(!trace.messages.is_empty());
    }

    #[test]
    fn unclaimed_traces_are_forgotten_oldest_first_but_claimed_ones_are_kept() {
        let traces = SipTraces::new(config());
        traces.claim("call");
        tap(&traces, "call", "x");
        for i in 0..40 {
            tap(&traces, &format!("scan-{i}"), "y");
        }
        let buffers = traces.buffers();
        assert!(
            buffers.unclaimed_bytes <= 400 + 100,
            "{}",
            buffers.unclaimed_bytes
        );
        assert!(!buffers.by_call_id.contains_key("scan-0"));
        assert!(buffers.by_call_id.contains_key("scan-39"));
        drop(buffers);
        assert_eq!(traces.take("call").map(|t| t.messages.len()), Some(1));
    }

    #[test]
    fn a_released_trace_is_taken_whole_by_the_next_claim() {
        let traces = SipTraces::new(config());
        tap(&traces, "a", "invite");
        traces.claim("a");
        tap(&traces, "a", "407");
        traces.release("a", Instant::now());
        tap(&traces, "a", "invite with credentials");
        traces.claim("a");
        let trace = traces.take("a").unwrap_or_default();
        assert_eq!(trace.messages.len(), 3);
        assert_eq!(traces.buffers().unclaimed_bytes, 0);
    }

    #[test]
    fn old_unclaimed_traces_expire() {
        let traces = SipTraces::new(config());
        let start = Instant::now();
        tap(&traces, "old", "x");
        let mut buffers = traces.buffers();
        traces.prune(&mut buffers, start + Duration::from_secs(31));
        assert!(buffers.by_call_id.is_empty());
        assert_eq!(buffers.unclaimed_bytes, 0);
    }

    #[test]
    fn nothing_is_kept_when_tracing_is_off() {
        let traces = SipTraces::new(TraceConfig {
            enabled: false,
            ..config()
        });
        tap(&traces, "a", "x");
        traces.claim("a");
        assert!(traces.is_empty());
    }
}
