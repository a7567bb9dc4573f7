//! SIP messages: a model that keeps the text it was given.
//!
//! A parsed message keeps every header value as it arrived (unfolded and
//! trimmed, nothing else), and the Request-URI as raw text. Structured views
//! (URIs, name-addrs, Via, CSeq) are parsed on demand from that text and are
//! never written back: a URI relayed or echoed keeps its original escapes.

mod build;
pub(crate) mod grammar;
mod header;
mod name_addr;
mod parse;
mod uri;
mod via;

pub use build::{ResponseBuilder, ResponseSpec};
pub use header::{HeaderField, HeaderName, Headers};
pub use name_addr::NameAddr;
pub(crate) use parse::{find_blank_line_from, media_type};
pub use parse::{parse_message, ParseError, Rejection};
pub use uri::{Host, SipUri, TelUri, Uri, UriError};
pub use via::{original_source, Via, MAGIC_COOKIE};

use bytes::Bytes;
use std::fmt;

/// A SIP request method. Methods are case-sensitive tokens (RFC 3261 §7.1):
/// anything that is not one of the methods we know is an extension method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// CANCEL (RFC 3261).
    Cancel,
    /// BYE (RFC 3261).
    Bye,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// REFER (RFC 3515).
    Refer,
    /// NOTIFY (RFC 6665).
    Notify,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// MESSAGE (RFC 3428).
    Message,
    /// PRACK (RFC 3262).
    Prack,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other method token, kept as sent.
    Extension(String),
}

impl Method {
    /// The method for a token, exactly as written on the wire.
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "CANCEL" => Method::Cancel,
            "BYE" => Method::Bye,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(other.to_string()),
        }
    }

    /// The wire form of the method.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Cancel => "CANCEL",
            Method::Bye => "BYE",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Extension(token) => token,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method of the Request-Line.
    pub method: Method,
    /// The Request-URI as it appeared on the wire.
    pub uri: String,
    /// Header fields in order of arrival.
    pub headers: Headers,
    /// The message body (exactly Content-Length octets).
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, 100 to 699.
    pub status: u16,
    /// The reason phrase as sent (may be empty).
    pub reason: String,
    /// Header fields in order of arrival.
    pub headers: Headers,
    /// The message body.
    pub body: Bytes,
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number, below 2^31 (RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// The method token.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(value: &str) -> Option<CSeq> {
        let value = value.trim();
        let digits_end = value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len());
        let (digits, rest) = value.split_at(digits_end);
        if digits.is_empty() || digits.len() > 10 {
            return None;
        }
        let seq: u64 = digits.parse().ok()?;
        if seq >= 1 << 31 {
            return None;
        }
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let method = rest.trim();
        if method.is_empty() || !method.bytes().all(grammar::is_token_byte) {
            return None;
        }
        Some(CSeq {
            seq: seq as u32,
            method: Method::from_token(method),
        })
    }
}

impl Request {
    /// The parsed Request-URI.
    pub fn parsed_uri(&self) -> Result<Uri, UriError> {
        Uri::parse(&self.uri)
    }

    /// The CSeq header, parsed.
    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.get(&HeaderName::CSeq).and_then(CSeq::parse)
    }

    /// The Call-ID header value.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.get(&HeaderName::CallId)
    }

    /// The From header, parsed.
    pub fn from(&self) -> Option<NameAddr> {
        self.headers
            .get(&HeaderName::From)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// The To header, parsed.
    pub fn to(&self) -> Option<NameAddr> {
        self.headers
            .get(&HeaderName::To)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// The topmost Via, parsed.
    pub fn top_via(&self) -> Option<Via> {
        self.headers.top_via()
    }

    /// Serialises the request. Content-Length is written from the body; a
    /// Content-Length in `headers` is ignored.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(256 + self.body.len());
        header::extend_line_safe(&mut out, self.method.as_str().as_bytes());
        out.push(b' ');
        header::extend_line_safe(&mut out, self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.headers.write_with_body(&mut out, &self.body);
        Bytes::from(out)
    }
}

impl Response {
    /// The CSeq header, parsed.
    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.get(&HeaderName::CSeq).and_then(CSeq::parse)
    }

    /// The Call-ID header value.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.get(&HeaderName::CallId)
    }

    /// The To header, parsed.
    pub fn to(&self) -> Option<NameAddr> {
        self.headers
            .get(&HeaderName::To)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// The From header, parsed.
    pub fn from(&self) -> Option<NameAddr> {
        self.headers
            .get(&HeaderName::From)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// The topmost Via, parsed.
    pub fn top_via(&self) -> Option<Via> {
        self.headers.top_via()
    }

    /// Serialises the response. Content-Length is written from the body.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        header::extend_line_safe(&mut out, self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.headers.write_with_body(&mut out, &self.body);
        Bytes::from(out)
    }
}

/// The standard reason phrase of a status code (RFC 3261 §21 and the
/// extensions a gateway sends), or "" for codes without one.
pub fn standard_reason(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_case_sensitive_tokens() {
        assert_eq!(Method::from_token("INVITE"), Method::Invite);
        assert_eq!(
            Method::from_token("invite"),
            Method::Extension("invite".into())
        );
        assert_eq!(Method::from_token("RE%47IST%45R").as_str(), "RE%47IST%45R");
    }

    #[test]
    fn cseq_parses_and_bounds_the_number() {
        assert_eq!(
            CSeq::parse("0009 INVITE"),
            Some(CSeq {
                seq: 9,
                method: Method::Invite
            })
        );
        assert_eq!(
            CSeq::parse("2147483647 BYE").map(|c| c.seq),
            Some(2147483647)
        );
        assert_eq!(CSeq::parse("2147483648 BYE"), None);
        assert_eq!(CSeq::parse("36893488147419103232 REGISTER"), None);
        assert_eq!(CSeq::parse("INVITE"), None);
        assert_eq!(CSeq::parse("1INVITE"), None);
        assert_eq!(CSeq::parse("1 "), None);
        assert_eq!(CSeq::parse("-1 INVITE"), None);
    }
}
