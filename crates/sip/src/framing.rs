//! Message boundaries on streams (TCP, TLS): RFC 3261 §18.3.
//!
//! A stream carries messages back to back, delimited only by Content-Length.
//! Where the length cannot be known (negative, malformed or conflicting
//! values) there is no safe way to find the next message, so the decoder
//! reports a framing error and the connection is answered and closed rather
//! than guessed at.

use crate::message::HeaderName;
use crate::Limits;
use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Why a stream could not be framed. Each is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    /// A Content-Length that is not a non-negative decimal number.
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Several Content-Length values that disagree.
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// The header section or the declared message exceeds the size limit.
    #[error("message exceeds {max} bytes")]
    TooLarge {
        /// The configured maximum.
        max: usize,
    },
}

/// What the decoder found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message.
    Message(Bytes),
    /// A CRLFCRLF keep-alive ping (RFC 5626 §3.5.1): answer with CRLF.
    KeepAlive,
    /// The stream cannot be framed. The bytes are the header section seen
    /// so far, for an error response; the connection must then be closed.
    Error(FramingError, Bytes),
}

/// Splits a byte stream into SIP messages.
#[derive(Debug)]
pub struct StreamDecoder {
    buffer: BytesMut,
    limits: Limits,
    failed: bool,
    /// Where the search for the end of the head resumes: bytes before it
    /// were looked at already (linear framing, whatever the read sizes).
    scan_from: usize,
}

impl StreamDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: Limits) -> StreamDecoder {
        StreamDecoder {
            buffer: BytesMut::new(),
            limits,
            failed: false,
            scan_from: 0,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buffer.extend_from_slice(data);
        }
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.failed {
            return None;
        }
        // Keep-alives and stray line breaks between messages (§7.5).
        loop {
            if self.buffer.starts_with(b"\r\n\r\n") {
                self.buffer.advance(4);
                self.scan_from = 0;
                return Some(Frame::KeepAlive);
            }
            if self.buffer.starts_with(b"\r\n") && self.buffer.len() >= 4 {
                self.buffer.advance(2);
                self.scan_from = 0;
                continue;
            }
            if self.buffer.starts_with(b"\n") {
                self.buffer.advance(1);
                self.scan_from = 0;
                continue;
            }
            break;
        }
        if self.buffer.starts_with(b"\r") && self.buffer.len() < 4 {
            return None;
        }
        let (head_end, body_start) =
            match crate::message::find_blank_line_from(&self.buffer, self.scan_from) {
                Ok(found) => found,
                Err(resume) => {
                    self.scan_from = resume;
                    if self.buffer.len() > self.limits.max_message_bytes {
                        return Some(self.fail(FramingError::TooLarge {
                            max: self.limits.max_message_bytes,
                        }));
                    }
                    return None;
                }
            };
        // The head is complete: its end is known, and once the message is
        // split off the next search starts afresh.
        self.scan_from = head_end;
        let body_length = match content_length(&self.buffer[..head_end]) {
            Ok(length) => length,
            Err(error) => return Some(self.fail(error)),
        };
        let total = body_start.saturating_add(body_length);
        if total > self.limits.max_message_bytes {
            return Some(self.fail(FramingError::TooLarge {
                max: self.limits.max_message_bytes,
            }));
        }
        if self.buffer.len() < total {
            return None;
        }
        self.scan_from = 0;
        Some(Frame::Message(self.buffer.split_to(total).freeze()))
    }

    /// Called at end of stream: whatever is left, if it is more than line
    /// breaks, is handed on as a last message so that it can be answered,
    /// as the tail of a datagram would be. A message whose head ended but
    /// whose body fell short of its Content-Length is dropped instead: on a
    /// stream the sender promised more and closed, and RFC 4475 §3.1.2.2
    /// (clerr) has the receiver wait and close, not answer.
    pub fn finish(&mut self) -> Option<Frame> {
        if self.failed {
            return None;
        }
        let rest = self.buffer.split().freeze();
        if rest.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return None;
        }
        if let Ok((head_end, body_start)) = crate::message::find_blank_line_from(&rest, 0) {
            let declared = content_length(&rest[..head_end]).unwrap_or(0);
            if declared > 0 && rest.len() < body_start.saturating_add(declared) {
                return None;
            }
        }
        Some(Frame::Message(rest))
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn fail(&mut self, error: FramingError) -> Frame {
        self.failed = true;
        let head = self.buffer.split().freeze();
        Frame::Error(error, head)
    }
}

/// The body length a header section declares: 0 without Content-Length, an
/// error when values are malformed or disagree.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]);
        if HeaderName::parse(name.trim_end()) != HeaderName::ContentLength {
            continue;
        }
        let value = String::from_utf8_lossy(&line[colon + 1..]);
        let value = value.trim();
        if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FramingError::BadContentLength);
        }
        let length: usize = value.parse().map_err(|_| FramingError::BadContentLength)?;
        if found.is_some_and(|previous| previous != length) {
            return Err(FramingError::ConflictingContentLength);
        }
        found = Some(length);
    }
    Ok(found.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nbody";

    fn decoder() -> StreamDecoder {
        StreamDecoder::new(Limits::default())
    }

    #[test]
    fn messages_split_at_any_byte_boundary() {
        let mut stream = Vec::new();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(MSG);
        for cut in 0..stream.len() {
            let mut d = decoder();
            let mut frames = Vec::new();
            d.push(&stream[..cut]);
            while let Some(f) = d.next_frame() {
                frames.push(f);
            }
            d.push(&stream[cut..]);
            while let Some(f) = d.next_frame() {
                frames.push(f);
            }
            assert_eq!(frames.len(), 2, "cut at {cut}");
            for f in frames {
                assert_eq!(f, Frame::Message(Bytes::from_static(MSG)));
            }
        }
    }

    #[test]
    fn keepalive_ping_is_reported() {
        let mut d = decoder();
        d.push(b"\r\n\r\n");
        assert_eq!(d.next_frame(), Some(Frame::KeepAlive));
        assert_eq!(d.next_frame(), None);
    }

    #[test]
    fn content_length_problems_are_fatal() {
        for (head, error) in [
            ("Content-Length: -999", FramingError::BadContentLength),
            ("Content-Length: abc", FramingError::BadContentLength),
            (
                "Content-Length: 13\r\nl: 5",
                FramingError::ConflictingContentLength,
            ),
            (
                "Content-Length: 999999",
                FramingError::TooLarge { max: 65535 },
            ),
        ] {
            let mut d = decoder();
            d.push(format!("INVITE sip:a@b SIP/2.0\r\n{head}\r\n\r\nxyz").as_bytes());
            match d.next_frame() {
                Some(Frame::Error(e, _)) => assert_eq!(e, error),
                other => panic!("{head}: {other:?}"),
            }
            d.push(MSG);
            assert_eq!(d.next_frame(), None, "a failed stream yields nothing more");
        }
    }

    #[test]
    fn agreeing_duplicates_frame_and_missing_length_means_empty_body() {
        let mut d = decoder();
        d.push(b"BYE sip:a@b SIP/2.0\r\nl: 2\r\nContent-Length: 2\r\n\r\nokBYE sip:a@b SIP/2.0\r\n\r\n");
        assert!(matches!(d.next_frame(), Some(Frame::Message(m)) if m.ends_with(b"ok")));
        assert!(matches!(d.next_frame(), Some(Frame::Message(m)) if m.ends_with(b"\r\n\r\n")));
    }

    #[test]
    fn an_unterminated_header_section_over_the_limit_fails() {
        let mut d = StreamDecoder::new(Limits {
            max_message_bytes: 64,
            ..Limits::default()
        });
        d.push(&[b'a'; 100]);
        assert!(matches!(
            d.next_frame(),
            Some(Frame::Error(FramingError::TooLarge { .. }, _))
        ));
    }

    #[test]
    fn end_of_stream_hands_on_an_unended_head_and_drops_a_short_body() {
        // A head that never ended is answered, as a datagram's would be.
        let mut d = decoder();
        d.push(b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n");
        assert_eq!(d.next_frame(), None);
        assert!(matches!(d.finish(), Some(Frame::Message(m)) if m.ends_with(b"INVITE\r\n")));
        // A body shorter than its Content-Length is not (RFC 4475 clerr).
        let mut d = decoder();
        d.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 9999\r\n\r\nshort");
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.finish(), None);
        let mut d = decoder();
        d.push(b"\r\n");
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn a_head_trickled_a_byte_at_a_time_frames_the_same() {
        let mut head = b"INVITE sip:a@b SIP/2.0\r\n".to_vec();
        for n in 0..400 {
            head.extend_from_slice(format!("X-Pad-{n}: {}\r\n", "v".repeat(100)).as_bytes());
        }
        head.extend_from_slice(b"Content-Length: 2\r\n\r\nhi");
        let mut stream = head.clone();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        let mut d = decoder();
        let mut frames = Vec::new();
        for byte in &stream {
            d.push(std::slice::from_ref(byte));
            while let Some(f) = d.next_frame() {
                frames.push(f);
            }
        }
        match frames.as_slice() {
            [Frame::Message(a), Frame::KeepAlive, Frame::Message(b)] => {
                assert_eq!(&a[..], &head[..]);
                assert_eq!(&b[..], MSG);
            }
            other => panic!("{other:?}"),
        }
    }
}
