//! A tap on the wire: every SIP message the transport receives (from a
//! source that is not banned) or sends, handed to whoever keeps per-call
//! traces. The transport calls the tap on its own task, so a tap must be
//! quick: copy what it keeps and return.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::Transport;

/// One message as it crossed the wire.
#[derive(Debug, Clone, Copy)]
pub struct TappedMessage<'a> {
    /// When it was received or handed to the socket.
    pub at: SystemTime,
    /// Sent by us (true) or received (false).
    pub sent: bool,
    /// The transport.
    pub transport: Transport,
    /// Our address (unspecified while an outbound stream is still
    /// connecting).
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// The message as on the wire (decrypted, for TLS).
    pub data: &'a [u8],
    /// Its Call-ID ([`peek_call_id`]), found once for every tap.
    pub call_id: Option<&'a str>,
}

/// Receives every SIP message the transport handles.
pub trait MessageTap: Send + Sync + 'static {
    /// Called once per message, on the transport's task.
    fn tapped(&self, message: TappedMessage<'_>);
}

/// The Call-ID of a raw SIP message, found without parsing it: the value
/// of the first `Call-ID:` (or compact `i:`) header line of the header
/// section, trimmed. `None` for anything else (keep-alives, garbage).
pub fn peek_call_id(data: &[u8]) -> Option<&str> {
    let head_end = find(data, b"\r\n\r\n").unwrap_or(data.len());
    let head = &data[..head_end];
    // The first line is the start line; headers follow.
    let mut lines = head.split(|&b| b == b'\n').skip(1);
    lines.find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = trim(&line[..colon]);
        let is_call_id = name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i");
        if !is_call_id {
            return None;
        }
        let value = trim(&line[colon + 1..]);
        let value = std::str::from_utf8(value).ok()?;
        (!value.is_empty()).then_some(value)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_id_is_found_in_long_and_compact_form() {
        let long = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x\r\nCall-ID:  abc@host \r\nCSeq: 1 INVITE\r\n\r\nv=0\r\nCall-ID: body\r\n";
        assert_eq!(peek_call_id(long), Some("abc@host"));
        let compact = b"SIP/2.0 200 OK\r\ni:xyz\r\n\r\n";
        assert_eq!(peek_call_id(compact), Some("xyz"));
        let lower = b"BYE sip:a SIP/2.0\r\ncall-id: q\r\n\r\n";
        assert_eq!(peek_call_id(lower), Some("q"));
    }

    #[test]
    fn no_call_id_in_the_body_start_line_or_garbage() {
        assert_eq!(peek_call_id(b"\r\n\r\n"), None);
        assert_eq!(peek_call_id(b"Call-ID: start-line\r\n\r\n"), None);
        assert_eq!(
            peek_call_id(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\nCall-ID: in-body\r\n"),
            None
        );
        assert_eq!(peek_call_id(b"X sip:a SIP/2.0\r\nCall-ID:\r\n\r\n"), None);
        assert_eq!(
            peek_call_id(b"X sip:a SIP/2.0\r\nCall-ID: \xff\r\n\r\n"),
            None
        );
        assert_eq!(peek_call_id(&[]), None);
    }
}
