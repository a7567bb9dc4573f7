//! The strict parser: bytes in, a [`Message`] or a precise [`Rejection`] out.
//!
//! Structure is read leniently first (lines, folding, field names), so that
//! even a message that fails validation yields the Via, From, To, Call-ID and
//! CSeq needed to answer it with 400 or 505 instead of dropping it. Then the
//! start line and every header we interpret are checked against the RFC 3261
//! grammar: the RFC 4475 torture messages are the test of this module.

use super::grammar::{is_token, is_word_byte, split_top_level_commas};
use super::header::{HeaderName, Headers};
use super::name_addr::{NameAddr, NameAddrError};
use super::uri::{Uri, UriError};
use super::via::{Via, ViaError};
use super::{CSeq, Message, Method, Request, Response};
use crate::Limits;
use bytes::Bytes;
use thiserror::Error;

/// Why a message was rejected. Each variant names the status a request that
/// failed this way should get ([`ParseError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Nothing but line breaks.
    #[error("empty message")]
    Empty,
    /// Larger than the configured maximum.
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// More header lines than the configured maximum.
    #[error("more than {max} header fields")]
    TooManyHeaders {
        /// The configured maximum.
        max: usize,
    },
    /// The header section is not UTF-8.
    #[error("header section is not valid UTF-8")]
    NotUtf8,
    /// A header line without a colon or with a malformed name.
    #[error("malformed header line {line}")]
    BadHeaderLine {
        /// 1-based line number within the message.
        line: usize,
    },
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line")]
    BadStartLine,
    /// A SIP version other than 2.0.
    #[error("SIP version {0} is not supported")]
    UnsupportedVersion(String),
    /// The Request-URI is malformed.
    #[error("malformed Request-URI: {0}")]
    BadRequestUri(UriError),
    /// The Request-URI carries URI headers, which a request must not.
    #[error("Request-URI must not contain headers")]
    RequestUriHeaders,
    /// A mandatory header is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header that takes one value appears more than once.
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    /// A header value does not follow its grammar.
    #[error("malformed {name} header: {reason}")]
    BadHeader {
        /// The header's canonical name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
    /// A method we do not implement, whose CSeq names another method: 501
    /// rather than 400, as RFC 4475 §3.1.2.18 (mismatch02) prefers.
    #[error("method not implemented (and the CSeq method does not match it)")]
    UnknownMethodCSeqMismatch,
    /// Content-Length is larger than the body that arrived.
    #[error("Content-Length {declared} exceeds the {available} body bytes received")]
    BodyTruncated {
        /// The declared length.
        declared: usize,
        /// The bytes present.
        available: usize,
    },
}

impl ParseError {
    /// The status code a request rejected for this reason gets.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion(_) => 505,
            ParseError::UnknownMethodCSeqMismatch => 501,
            ParseError::TooLarge { .. } => 513,
            _ => 400,
        }
    }
}

/// A message that could not be accepted, with what is needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What was wrong.
    pub error: ParseError,
    /// True when the start line looked like a request (a response is never
    /// answered).
    pub looks_like_request: bool,
    /// The first token of a request's start line (an ACK is never answered).
    pub method: Option<String>,
    /// The Via, From, To, Call-ID and CSeq fields as received, when the
    /// message could be split into header lines. An answer needs at least
    /// one Via.
    pub envelope: Headers,
}

impl Rejection {
    /// True when a response can be sent: the message was a request that named
    /// at least one Via.
    pub fn is_answerable(&self) -> bool {
        self.looks_like_request
            && self.method.as_deref() != Some("ACK")
            && self.envelope.contains(&HeaderName::Via)
    }
}

struct RawParts<'a> {
    start_line: &'a str,
    headers: Headers,
    body: &'a [u8],
    has_content_length: bool,
}

/// Parses one SIP message from a datagram or a framed stream message.
///
/// Leading CRLFs are ignored (RFC 3261 §7.5). A header section without the
/// terminating blank line is taken to end with the input, as on a datagram.
pub fn parse_message(data: &[u8], limits: &Limits) -> Result<Message, Rejection> {
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    let data = &data[start..];
    if data.is_empty() {
        return Err(reject(ParseError::Empty, false, None, Headers::new()));
    }
    let looks_like_request = !data.starts_with(b"SIP/");
    let method = looks_like_request.then(|| {
        let end = data
            .iter()
            .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .unwrap_or(data.len());
        String::from_utf8_lossy(&data[..end]).into_owned()
    });
    if data.len() > limits.max_message_bytes {
        let envelope = lenient_envelope(data, limits);
        let error = ParseError::TooLarge {
            size: data.len(),
            max: limits.max_message_bytes,
        };
        return Err(reject(error, looks_like_request, method, envelope));
    }
    let parts = match split(data, limits) {
        Ok(parts) => parts,
        Err(error) => {
            let envelope = lenient_envelope(data, limits);
            return Err(reject(error, looks_like_request, method, envelope));
        }
    };
    let result = if looks_like_request {
        parse_request(&parts).map(Message::Request)
    } else {
        parse_response(&parts).map(Message::Response)
    };
    result.map_err(|e| reject(e, looks_like_request, method, envelope_of(&parts.headers)))
}

fn reject(
    error: ParseError,
    looks_like_request: bool,
    method: Option<String>,
    envelope: Headers,
) -> Rejection {
    Rejection {
        error,
        looks_like_request,
        method,
        envelope,
    }
}

/// The fields an error response copies, in their original order.
fn envelope_of(headers: &Headers) -> Headers {
    let mut envelope = Headers::new();
    let mut seen_single: Vec<HeaderName> = Vec::new();
    for field in headers.iter() {
        match field.name {
            HeaderName::Via => envelope.push(HeaderName::Via, field.value.clone()),
            HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq
                if !seen_single.contains(&field.name) =>
            {
                seen_single.push(field.name.clone());
                envelope.push(field.name.clone(), field.value.clone());
            }
            _ => {}
        }
    }
    envelope
}

/// A best-effort envelope from a message that could not be split normally:
/// every line that parses as a field, decoded lossily.
fn lenient_envelope(data: &[u8], limits: &Limits) -> Headers {
    let head_end = find_blank_line(data)
        .map(|(end, _)| end)
        .unwrap_or(data.len());
    let head_end = head_end.min(limits.max_message_bytes);
    let text = String::from_utf8_lossy(&data[..head_end]);
    let mut headers = Headers::new();
    for line in text.lines().skip(1).take(limits.max_headers) {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim_end_matches([' ', '\t']);
            if is_token(name) {
                headers.push(HeaderName::parse(name), value.trim());
            }
        }
    }
    envelope_of(&headers)
}

/// Finds the blank line ending the header section: returns the offset where
/// the header text ends and where the body starts. Lines may end in CRLF or
/// a bare LF.
pub(crate) fn find_blank_line(data: &[u8]) -> Option<(usize, usize)> {
    find_blank_line_from(data, 0).ok()
}

/// [`find_blank_line`] resumed at `pos`, the start of a line not yet
/// looked at; on failure, where to resume once more bytes arrive (the
/// start of the last, incomplete line). A stream decoder that resumes
/// looks at each byte once, however slowly the head arrives.
pub(crate) fn find_blank_line_from(data: &[u8], mut pos: usize) -> Result<(usize, usize), usize> {
    pos = pos.min(data.len());
    while let Some(nl) = data[pos..].iter().position(|&b| b == b'\n') {
        let nl = pos + nl;
        let line = &data[pos..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() && pos > 0 {
            return Ok((pos, nl + 1));
        }
        pos = nl + 1;
    }
    Err(pos)
}

fn split<'a>(data: &'a [u8], limits: &Limits) -> Result<RawParts<'a>, ParseError> {
    let (head, body) = match find_blank_line(data) {
        Some((head_end, body_start)) => (&data[..head_end], &data[body_start..]),
        None => (data, &data[data.len()..]),
    };
    let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().ok_or(ParseError::BadStartLine)?;
    let mut headers = Headers::new();
    let mut pending: Option<(HeaderName, String)> = None;
    let mut field_count = 0usize;
    let mut has_content_length = false;
    for (index, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let (_, value) = pending
                .as_mut()
                .ok_or(ParseError::BadHeaderLine { line: index + 2 })?;
            let continuation = line.trim_matches([' ', '\t']);
            if !continuation.is_empty() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(continuation);
            }
            continue;
        }
        if let Some((name, value)) = pending.take() {
            headers.push(name, value);
        }
        let colon = line
            .find(':')
            .ok_or(ParseError::BadHeaderLine { line: index + 2 })?;
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(ParseError::BadHeaderLine { line: index + 2 });
        }
        field_count += 1;
        if field_count > limits.max_headers {
            return Err(ParseError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        let name = HeaderName::parse(name);
        has_content_length |= name == HeaderName::ContentLength;
        pending = Some((
            name,
            line[colon + 1..].trim_matches([' ', '\t']).to_string(),
        ));
    }
    if let Some((name, value)) = pending {
        headers.push(name, value);
    }
    Ok(RawParts {
        start_line,
        headers,
        body,
        has_content_length,
    })
}

fn parse_version(version: &str) -> Result<(), ParseError> {
    if version.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let numbers = version
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and_then(|_| version[4..].split_once('.'));
    match numbers {
        Some((major, minor))
            if !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Err(ParseError::UnsupportedVersion(version[4..].to_string()))
        }
        _ => Err(ParseError::BadStartLine),
    }
}

fn parse_request(parts: &RawParts<'_>) -> Result<Request, ParseError> {
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one space
    // each, nothing before or after (RFC 4475 lwsstart, trws, lwsruri).
    let mut fields = parts.start_line.split(' ');
    let (method, uri, version) = match (fields.next(), fields.next(), fields.next(), fields.next())
    {
        (Some(m), Some(u), Some(v), None) if !m.is_empty() && !u.is_empty() && !v.is_empty() => {
            (m, u, v)
        }
        _ => return Err(ParseError::BadStartLine),
    };
    if !is_token(method) {
        return Err(ParseError::BadStartLine);
    }
    parse_version(version)?;
    let parsed_uri = Uri::parse(uri).map_err(ParseError::BadRequestUri)?;
    if let Uri::Sip(sip) = &parsed_uri {
        if !sip.headers.is_empty() {
            return Err(ParseError::RequestUriHeaders);
        }
    }
    let method = Method::from_token(method);
    validate_common_headers(&parts.headers)?;
    let cseq = parts
        .headers
        .get(&HeaderName::CSeq)
        .and_then(CSeq::parse)
        .ok_or_else(|| bad("CSeq", "expected a number below 2^31 and a method"))?;
    if cseq.method != method {
        return Err(if matches!(method, Method::Extension(_)) {
            ParseError::UnknownMethodCSeqMismatch
        } else {
            ParseError::CSeqMismatch
        });
    }
    validate_request_headers(&parts.headers)?;
    let body = body_of(parts)?;
    Ok(Request {
        method,
        uri: uri.to_string(),
        headers: parts.headers.clone(),
        body,
    })
}

fn parse_response(parts: &RawParts<'_>) -> Result<Response, ParseError> {
    let mut fields = parts.start_line.splitn(3, ' ');
    let version = fields.next().unwrap_or_default();
    let code = fields.next().unwrap_or_default();
    let reason = fields.next().unwrap_or_default();
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(ParseError::BadStartLine);
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadStartLine);
    }
    let status: u16 = code.parse().map_err(|_| ParseError::BadStartLine)?;
    if !(100..=699).contains(&status) {
        return Err(ParseError::BadStartLine);
    }
    validate_common_headers(&parts.headers)?;
    parts
        .headers
        .get(&HeaderName::CSeq)
        .and_then(CSeq::parse)
        .ok_or_else(|| bad("CSeq", "expected a number below 2^31 and a method"))?;
    let body = body_of(parts)?;
    Ok(Response {
        status,
        reason: reason.to_string(),
        headers: parts.headers.clone(),
        body,
    })
}

fn bad(name: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::BadHeader {
        name,
        reason: reason.into(),
    }
}

/// Checks shared by requests and responses: the headers that identify a
/// transaction must be present, single and well formed.
fn validate_common_headers(headers: &Headers) -> Result<(), ParseError> {
    const REQUIRED: &[(HeaderName, &str)] = &[
        (HeaderName::Via, "Via"),
        (HeaderName::From, "From"),
        (HeaderName::To, "To"),
        (HeaderName::CallId, "Call-ID"),
        (HeaderName::CSeq, "CSeq"),
    ];
    for (name, label) in REQUIRED {
        if !headers.contains(name) {
            return Err(ParseError::MissingHeader(label));
        }
    }
    const SINGLE: &[(HeaderName, &str)] = &[
        (HeaderName::From, "From"),
        (HeaderName::To, "To"),
        (HeaderName::CallId, "Call-ID"),
        (HeaderName::CSeq, "CSeq"),
        (HeaderName::MaxForwards, "Max-Forwards"),
        (HeaderName::ContentLength, "Content-Length"),
        (HeaderName::ContentType, "Content-Type"),
        (HeaderName::Expires, "Expires"),
        (HeaderName::Date, "Date"),
    ];
    for (name, label) in SINGLE {
        if headers.count(name) > 1 {
            return Err(ParseError::DuplicateHeader(label));
        }
    }
    // Empty elements (`a,,b`) are kept by the split so that they fail here.
    for via in headers
        .get_all(&HeaderName::Via)
        .flat_map(split_top_level_commas)
    {
        Via::parse(via).map_err(|e: ViaError| bad("Via", e.to_string()))?;
    }
    let call_id = headers.get(&HeaderName::CallId).unwrap_or_default();
    let call_id_ok = match call_id.split_once('@') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(is_word_byte)
                && b.bytes().all(is_word_byte)
        }
        None => !call_id.is_empty() && call_id.bytes().all(is_word_byte),
    };
    if !call_id_ok {
        return Err(bad("Call-ID", "expected word [\"@\" word]"));
    }
    for (name, label) in [(HeaderName::From, "From"), (HeaderName::To, "To")] {
        let value = headers.get(&name).unwrap_or_default();
        NameAddr::parse(value).map_err(|e: NameAddrError| bad(label, e.to_string()))?;
    }
    if let Some(length) = headers.get(&HeaderName::ContentLength) {
        parse_content_length(length)?;
    }
    Ok(())
}

/// Checks of the headers a UAS interprets in requests.
fn validate_request_headers(headers: &Headers) -> Result<(), ParseError> {
    if let Some(max_forwards) = headers.get(&HeaderName::MaxForwards) {
        let ok = !max_forwards.is_empty()
            && max_forwards.len() <= 10
            && max_forwards.bytes().all(|b| b.is_ascii_digit())
            && max_forwards.parse::<u32>().is_ok_and(|n| n <= 255);
        if !ok {
            return Err(bad("Max-Forwards", "expected a number from 0 to 255"));
        }
    }
    for contact in headers.list(&HeaderName::Contact) {
        if contact == "*" {
            continue;
        }
        NameAddr::parse(contact).map_err(|e| bad("Contact", e.to_string()))?;
    }
    for (name, label) in [
        (HeaderName::Route, "Route"),
        (HeaderName::RecordRoute, "Record-Route"),
    ] {
        for element in headers.list(&name) {
            NameAddr::parse(element).map_err(|e| bad(label, e.to_string()))?;
        }
    }
    // A malformed Date is ignored, not refused: nothing here depends on it
    // (RFC 3261 §8.2.2, RFC 4475 §3.1.2.12, baddate).
    if let Some(expires) = headers.get(&HeaderName::Expires) {
        // Values beyond 2^32-1 are allowed and mean "as long as possible"
        // (RFC 3261 §20.19); only the shape is checked.
        if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("Expires", "expected delta-seconds"));
        }
    }
    if let Some(content_type) = headers.get(&HeaderName::ContentType) {
        if media_type(content_type).is_none() {
            return Err(bad("Content-Type", "expected type/subtype"));
        }
    }
    for (name, label) in [
        (HeaderName::Require, "Require"),
        (HeaderName::ProxyRequire, "Proxy-Require"),
        (HeaderName::Supported, "Supported"),
    ] {
        for tag in headers.get_all(&name).flat_map(|v| v.split(',')) {
            let tag = tag.trim();
            if !tag.is_empty() && !is_token(tag) {
                return Err(bad(label, "expected option tags"));
            }
        }
    }
    Ok(())
}

fn parse_content_length(value: &str) -> Result<usize, ParseError> {
    if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("Content-Length", "expected a non-negative number"));
    }
    value
        .parse()
        .map_err(|_| bad("Content-Length", "expected a non-negative number"))
}

fn body_of(parts: &RawParts<'_>) -> Result<Bytes, ParseError> {
    if !parts.has_content_length {
        // No Content-Length: the body is the rest of the datagram (RFC 3261
        // §18.3); the stream framer has already cut it to zero.
        return Ok(Bytes::copy_from_slice(parts.body));
    }
    let declared = parts
        .headers
        .get(&HeaderName::ContentLength)
        .map(parse_content_length)
        .transpose()?
        .unwrap_or(0);
    if declared > parts.body.len() {
        return Err(ParseError::BodyTruncated {
            declared,
            available: parts.body.len(),
        });
    }
    // Octets beyond Content-Length are discarded (RFC 3261 §18.3).
    Ok(Bytes::copy_from_slice(&parts.body[..declared]))
}

/// The `type/subtype` of a Content-Type or Accept element, lowercased, or
/// `None` when it is malformed. Parameters are checked for shape only.
pub(crate) fn media_type(value: &str) -> Option<String> {
    let (essence, params) = match value.find(';') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let (kind, subtype) = essence.trim().split_once('/')?;
    let (kind, subtype) = (kind.trim(), subtype.trim());
    if !is_token(kind) || !is_token(subtype) {
        return None;
    }
    super::grammar::parse_params(params)?;
    Some(format!(
        "{}/{}",
        kind.to_ascii_lowercase(),
        subtype.to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    const OPTIONS: &str = "OPTIONS sip:user@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\n\
        To: <sip:user@example.com>\r\n\
        From: <sip:caller@example.net>;tag=1\r\n\
        Call-ID: c1@example.net\r\n\
        CSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn a_plain_request_parses() {
        let Message::Request(req) = parse_message(OPTIONS.as_bytes(), &limits()).unwrap() else {
            panic!()
        };
        assert_eq!(req.method, Method::Options);
        assert_eq!(req.call_id(), Some("c1@example.net"));
        assert_eq!(req.top_via().unwrap().rfc3261_branch(), Some("z9hG4bKabc"));
    }

    #[test]
    fn leading_crlf_is_ignored_and_bare_lf_accepted() {
        let msg = format!("\r\n\r\n{}", OPTIONS.replace("\r\n", "\n"));
        assert!(parse_message(msg.as_bytes(), &limits()).is_ok());
    }

    #[test]
    fn limits_are_enforced_with_an_envelope() {
        let small = Limits {
            max_message_bytes: 100,
            ..Limits::default()
        };
        let err = parse_message(OPTIONS.as_bytes(), &small).unwrap_err();
        assert!(matches!(err.error, ParseError::TooLarge { .. }));
        assert_eq!(err.error.status(), 513);
        assert!(err.is_answerable());
        let few = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let err = parse_message(OPTIONS.as_bytes(), &few).unwrap_err();
        assert_eq!(err.error, ParseError::TooManyHeaders { max: 3 });
        assert!(err.is_answerable());
    }

    #[test]
    fn content_length_rules() {
        let with_body = OPTIONS.replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Length: 3\r\n\r\nabcdef",
        );
        let Message::Request(req) = parse_message(with_body.as_bytes(), &limits()).unwrap() else {
            panic!()
        };
        assert_eq!(&req.body[..], b"abc");
        let short = OPTIONS.replace("Content-Length: 0", "Content-Length: 10");
        assert!(matches!(
            parse_message(short.as_bytes(), &limits())
                .unwrap_err()
                .error,
            ParseError::BodyTruncated {
                declared: 10,
                available: 0
            }
        ));
        let negative = OPTIONS.replace("Content-Length: 0", "Content-Length: -1");
        assert!(parse_message(negative.as_bytes(), &limits()).is_err());
        let twice = OPTIONS.replace("Content-Length: 0", "Content-Length: 0\r\nl: 0");
        assert_eq!(
            parse_message(twice.as_bytes(), &limits())
                .unwrap_err()
                .error,
            ParseError::DuplicateHeader("Content-Length")
        );
    }

    #[test]
    fn versions() {
        let v7 = OPTIONS.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
        let err = parse_message(v7.as_bytes(), &limits()).unwrap_err();
        assert_eq!(err.error.status(), 505);
        let junk = OPTIONS.replace("SIP/2.0\r\nVia", "HTTP/1.1\r\nVia");
        assert_eq!(
            parse_message(junk.as_bytes(), &limits()).unwrap_err().error,
            ParseError::BadStartLine
        );
    }

    #[test]
    fn responses_parse_and_bad_codes_fail() {
        let resp = "SIP/2.0 100 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCall-ID: a\r\n\
            CSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Length: 0\r\n\r\n";
        let Message::Response(r) = parse_message(resp.as_bytes(), &limits()).unwrap() else {
            panic!()
        };
        assert_eq!(r.status, 100);
        assert_eq!(r.reason, "");
        let big = resp.replace("100 ", "4294967301 x");
        let err = parse_message(big.as_bytes(), &limits()).unwrap_err();
        assert!(!err.is_answerable());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_type("Application/SDP").as_deref(),
            Some("application/sdp")
        );
        assert_eq!(
            media_type("multipart/mixed;boundary=7a9cbec02ceef655").as_deref(),
            Some("multipart/mixed")
        );
        assert_eq!(media_type("sdp"), None);
    }
}
