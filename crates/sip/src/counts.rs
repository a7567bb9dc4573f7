//! How many SIP requests (by method) and responses (by class) the
//! transport received and sent: counted from each message's first line as
//! it crosses the wire, retransmissions included, without parsing.

use std::sync::atomic::{AtomicU64, Ordering};

/// The methods counted by name; anything else is `other`.
pub const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
    "MESSAGE",
    "PRACK",
    "other",
];

/// The response classes, `1xx` to `6xx`.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// Counters of one direction.
#[derive(Debug, Default)]
struct Direction {
    requests: [AtomicU64; METHODS.len()],
    responses: [AtomicU64; CLASSES.len()],
}

/// Counters of both directions; shared by the transport's tasks.
#[derive(Debug, Default)]
pub struct MessageCounters {
    received: Direction,
    sent: Direction,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// Requests received, by [`METHODS`] index.
    pub requests_received: [u64; METHODS.len()],
    /// Requests sent, by [`METHODS`] index.
    pub requests_sent: [u64; METHODS.len()],
    /// Responses received, by [`CLASSES`] index.
    pub responses_received: [u64; CLASSES.len()],
    /// Responses sent, by [`CLASSES`] index.
    pub responses_sent: [u64; CLASSES.len()],
}

/// What a message's first line says it is.
enum Kind {
    Request(usize),
    Response(usize),
}

fn kind(data: &[u8]) -> Option<Kind> {
    if let Some(rest) = data.strip_prefix(b"SIP/2.0 ") {
        let class = rest.first()?.checked_sub(b'1')?;
        let class = usize::from(class);
        return (class < CLASSES.len() && rest.get(1..3)?.iter().all(u8::is_ascii_digit))
            .then_some(Kind::Response(class));
    }
    let end = data.iter().position(|&b| b == b' ')?;
    let method = &data[..end];
    let other = METHODS.len() - 1;
    let index = METHODS[..other]
        .iter()
        .position(|m| m.as_bytes() == method)
        .unwrap_or(other);
    Some(Kind::Request(index))
}

impl MessageCounters {
    /// Counts a message; keep-alives and garbage are not counted.
    pub fn count(&self, sent: bool, data: &[u8]) {
        let direction = if sent { &self.sent } else { &self.received };
        match kind(data) {
            Some(Kind::Request(i)) => direction.requests[i].fetch_add(1, Ordering::Relaxed),
            Some(Kind::Response(i)) => direction.responses[i].fetch_add(1, Ordering::Relaxed),
            None => return,
        };
    }

    /// The counts now.
    pub fn snapshot(&self) -> MessageCounts {
        fn load<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
            std::array::from_fn(|i| counters[i].load(Ordering::Relaxed))
        }
        MessageCounts {
            requests_received: load(&self.received.requests),
            requests_sent: load(&self.sent.requests),
            responses_received: load(&self.received.responses),
            responses_sent: load(&self.sent.responses),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_by_method_and_responses_by_class() {
        let counters = MessageCounters::default();
        counters.count(false, b"INVITE sip:a SIP/2.0\r\n");
        counters.count(false, b"FOO sip:a SIP/2.0\r\n");
        counters.count(true, b"SIP/2.0 100 Trying\r\n");
        counters.count(true, b"SIP/2.0 486 Busy Here\r\n");
        counters.count(true, b"SIP/2.0 999 Nonsense\r\n");
        counters.count(true, b"SIP/2.0 4");
        counters.count(false, b"\r\n\r\n");
        let counts = counters.snapshot();
        assert_eq!(counts.requests_received[0], 1, "INVITE");
        assert_eq!(counts.requests_received[METHODS.len() - 1], 1, "other");
        assert_eq!(counts.responses_sent, [1, 0, 0, 1, 0, 0]);
        assert_eq!(counts.requests_sent, [0; METHODS.len()]);
        assert_eq!(counts.responses_received, [0; CLASSES.len()]);
    }
}
