//! Header names (with compact forms) and the ordered header list.

use super::grammar::split_top_level_commas;
use super::via::Via;
use std::fmt;

/// A header field name. Known names are matched case-insensitively and by
/// their compact form (RFC 3261 §7.3.3); others keep the spelling they came in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderName {
    /// Accept
    Accept,
    /// Allow
    Allow,
    /// Allow-Events (u)
    AllowEvents,
    /// Authorization
    Authorization,
    /// Call-ID (i)
    CallId,
    /// Contact (m)
    Contact,
    /// Content-Disposition
    ContentDisposition,
    /// Content-Encoding (e)
    ContentEncoding,
    /// Content-Length (l)
    ContentLength,
    /// Content-Type (c)
    ContentType,
    /// CSeq
    CSeq,
    /// Date
    Date,
    /// Event (o)
    Event,
    /// Expires
    Expires,
    /// From (f)
    From,
    /// Max-Forwards
    MaxForwards,
    /// Min-SE
    MinSe,
    /// Proxy-Authenticate
    ProxyAuthenticate,
    /// Proxy-Authorization
    ProxyAuthorization,
    /// Proxy-Require
    ProxyRequire,
    /// Reason
    Reason,
    /// Record-Route
    RecordRoute,
    /// Refer-To (r)
    ReferTo,
    /// Referred-By (b)
    ReferredBy,
    /// Require
    Require,
    /// Retry-After
    RetryAfter,
    /// Route
    Route,
    /// Server
    Server,
    /// Session-Expires (x)
    SessionExpires,
    /// Subject (s)
    Subject,
    /// Supported (k)
    Supported,
    /// To (t)
    To,
    /// Unsupported
    Unsupported,
    /// User-Agent
    UserAgent,
    /// Via (v)
    Via,
    /// Warning
    Warning,
    /// WWW-Authenticate
    WwwAuthenticate,
    /// Any other header, spelled as received.
    Other(String),
}

impl HeaderName {
    /// The name for a field name as written in a message (any case, compact
    /// forms allowed).
    pub fn parse(name: &str) -> HeaderName {
        if name.len() == 1 {
            let compact = match name.as_bytes()[0].to_ascii_lowercase() {
                b'i' => Some(HeaderName::CallId),
                b'm' => Some(HeaderName::Contact),
                b'e' => Some(HeaderName::ContentEncoding),
                b'l' => Some(HeaderName::ContentLength),
                b'c' => Some(HeaderName::ContentType),
                b'o' => Some(HeaderName::Event),
                b'f' => Some(HeaderName::From),
                b'r' => Some(HeaderName::ReferTo),
                b'b' => Some(HeaderName::ReferredBy),
                b'x' => Some(HeaderName::SessionExpires),
                b's' => Some(HeaderName::Subject),
                b'k' => Some(HeaderName::Supported),
                b't' => Some(HeaderName::To),
                b'u' => Some(HeaderName::AllowEvents),
                b'v' => Some(HeaderName::Via),
                _ => None,
            };
            if let Some(known) = compact {
                return known;
            }
        }
        const KNOWN: &[(&str, HeaderName)] = &[
            ("accept", HeaderName::Accept),
            ("allow", HeaderName::Allow),
            ("allow-events", HeaderName::AllowEvents),
            ("authorization", HeaderName::Authorization),
            ("call-id", HeaderName::CallId),
            ("contact", HeaderName::Contact),
            ("content-disposition", HeaderName::ContentDisposition),
            ("content-encoding", HeaderName::ContentEncoding),
            ("content-length", HeaderName::ContentLength),
            ("content-type", HeaderName::ContentType),
            ("cseq", HeaderName::CSeq),
            ("date", HeaderName::Date),
            ("event", HeaderName::Event),
            ("expires", HeaderName::Expires),
            ("from", HeaderName::From),
            ("max-forwards", HeaderName::MaxForwards),
            ("min-se", HeaderName::MinSe),
            ("proxy-authenticate", HeaderName::ProxyAuthenticate),
            ("proxy-authorization", HeaderName::ProxyAuthorization),
            ("proxy-require", HeaderName::ProxyRequire),
            ("reason", HeaderName::Reason),
            ("record-route", HeaderName::RecordRoute),
            ("refer-to", HeaderName::ReferTo),
            ("referred-by", HeaderName::ReferredBy),
            ("require", HeaderName::Require),
            ("retry-after", HeaderName::RetryAfter),
            ("route", HeaderName::Route),
            ("server", HeaderName::Server),
            ("session-expires", HeaderName::SessionExpires),
            ("subject", HeaderName::Subject),
            ("supported", HeaderName::Supported),
            ("to", HeaderName::To),
            ("unsupported", HeaderName::Unsupported),
            ("user-agent", HeaderName::UserAgent),
            ("via", HeaderName::Via),
            ("warning", HeaderName::Warning),
            ("www-authenticate", HeaderName::WwwAuthenticate),
        ];
        for (known, header) in KNOWN {
            if name.eq_ignore_ascii_case(known) {
                return header.clone();
            }
        }
        HeaderName::Other(name.to_string())
    }

    /// The canonical spelling used when writing.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Accept => "Accept",
            HeaderName::Allow => "Allow",
            HeaderName::AllowEvents => "Allow-Events",
            HeaderName::Authorization => "Authorization",
            HeaderName::CallId => "Call-ID",
            HeaderName::Contact => "Contact",
            HeaderName::ContentDisposition => "Content-Disposition",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::CSeq => "CSeq",
            HeaderName::Date => "Date",
            HeaderName::Event => "Event",
            HeaderName::Expires => "Expires",
            HeaderName::From => "From",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::MinSe => "Min-SE",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Reason => "Reason",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::Require => "Require",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::Route => "Route",
            HeaderName::Server => "Server",
            HeaderName::SessionExpires => "Session-Expires",
            HeaderName::Subject => "Subject",
            HeaderName::Supported => "Supported",
            HeaderName::To => "To",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Via => "Via",
            HeaderName::Warning => "Warning",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::Other(name) => name,
        }
    }

    /// True when two names denote the same header (extension names compare
    /// case-insensitively).
    pub fn matches(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field line: a name and its unfolded, trimmed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The field name.
    pub name: HeaderName,
    /// The value, with line folding replaced by a single space.
    pub value: String,
}

/// Header fields in the order they were received or added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<HeaderField>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Appends a field.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.fields.push(HeaderField {
            name,
            value: value.into(),
        });
    }

    /// The first value of a header.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name.matches(name))
            .map(|f| f.value.as_str())
    }

    /// Every field line of a header, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.name.matches(name))
            .map(|f| f.value.as_str())
    }

    /// Every comma-separated element of a list header, across all its lines.
    pub fn list<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name)
            .flat_map(split_top_level_commas)
            .filter(|v| !v.is_empty())
    }

    /// How many field lines carry this header.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.fields.iter().filter(|f| f.name.matches(name)).count()
    }

    /// True when the header is present.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.fields.iter().any(|f| f.name.matches(name))
    }

    /// Removes every line of a header.
    pub fn remove(&mut self, name: &HeaderName) {
        self.fields.retain(|f| !f.name.matches(name));
    }

    /// Replaces every line of a header with one value.
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        if let Some(pos) = self.fields.iter().position(|f| f.name.matches(&name)) {
            self.fields[pos].value = value;
            let mut index = 0;
            self.fields.retain(|f| {
                let keep = index <= pos || !f.name.matches(&name);
                index += 1;
                keep
            });
        } else {
            self.push(name, value);
        }
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &HeaderField> {
        self.fields.iter()
    }

    /// Number of field lines.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The topmost Via element, parsed.
    pub fn top_via(&self) -> Option<Via> {
        self.list(&HeaderName::Via)
            .next()
            .and_then(|v| Via::parse(v).ok())
    }

    /// Writes the fields, a Content-Length for `body`, the blank line and the
    /// body.
    pub(crate) fn write_with_body(&self, out: &mut Vec<u8>, body: &[u8]) {
        for field in &self.fields {
            if field.name == HeaderName::ContentLength {
                continue;
            }
            extend_line_safe(out, field.name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            extend_line_safe(out, field.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    }
}

/// Appends text that must stay on one line of a message (a header name or
/// value, a Request-URI, a reason phrase): CR, LF, NUL and the other control
/// characters but HTAB become spaces. Values from the API and from room
/// participants are checked where they enter; this is the last line of
/// defence, so that nothing can ever add a header or end the head early.
pub(crate) fn extend_line_safe(out: &mut Vec<u8>, text: &[u8]) {
    if !text.iter().any(|b| is_line_breaking(*b)) {
        out.extend_from_slice(text);
        return;
    }
    out.extend(
        text.iter()
            .map(|b| if is_line_breaking(*b) { b' ' } else { *b }),
    );
}

fn is_line_breaking(byte: u8) -> bool {
    byte.is_ascii_control() && byte != b'\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_cannot_add_lines() {
        let mut h = Headers::new();
        h.push(HeaderName::To, "<sip:1000\r\nX-Evil: injected@example.com>");
        h.push(HeaderName::Other("X-A\nB".into()), "v\0w");
        let mut out = Vec::new();
        h.write_with_body(&mut out, b"");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "To: <sip:1000  X-Evil: injected@example.com>\r\nX-A B: v w\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn compact_and_mixed_case_names_are_recognised() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("V"), HeaderName::Via);
        assert_eq!(HeaderName::parse("ViA"), HeaderName::Via);
        assert_eq!(HeaderName::parse("i"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::parse("MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(
            HeaderName::parse("C%6Fntact"),
            HeaderName::Other("C%6Fntact".into())
        );
    }

    #[test]
    fn lists_span_lines_and_commas() {
        let mut h = Headers::new();
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b",
        );
        h.push(HeaderName::Via, "SIP/2.0/TCP c");
        let vias: Vec<_> = h.list(&HeaderName::Via).collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[2], "SIP/2.0/TCP c");
        assert_eq!(h.count(&HeaderName::Via), 2);
    }

    #[test]
    fn set_replaces_all_lines() {
        let mut h = Headers::new();
        h.push(HeaderName::Other("X-A".into()), "1");
        h.push(HeaderName::To, "t");
        h.push(HeaderName::Other("x-a".into()), "2");
        h.set(HeaderName::Other("X-A".into()), "3");
        let name = HeaderName::Other("X-A".into());
        let values: Vec<_> = h.get_all(&name).collect();
        assert_eq!(values, vec!["3"]);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn written_content_length_is_the_body_length() {
        let mut h = Headers::new();
        h.push(HeaderName::ContentLength, "999");
        let mut out = Vec::new();
        h.write_with_body(&mut out, b"abc");
        assert_eq!(out, b"Content-Length: 3\r\n\r\nabc");
    }
}
