//! Building responses from the request they answer.

use super::grammar::split_top_level_commas;
use super::header::{HeaderName, Headers};
use super::uri::Host;
use super::via::Via;
use super::{standard_reason, Response};
use bytes::Bytes;
use std::net::SocketAddr;

/// What the transaction user chooses for a response; the headers that tie it
/// to the request (Via, From, To, Call-ID, CSeq) come from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseSpec {
    /// The status code.
    pub status: u16,
    /// The reason phrase; the standard phrase when `None`.
    pub reason: Option<String>,
    /// Extra header fields, written after the copied ones.
    pub headers: Headers,
    /// The body; its Content-Type is among `headers`.
    pub body: Bytes,
}

impl ResponseSpec {
    /// A response with the standard reason phrase and no extra headers.
    pub fn new(status: u16) -> ResponseSpec {
        ResponseSpec {
            status,
            ..ResponseSpec::default()
        }
    }

    /// Sets the reason phrase.
    pub fn reason(mut self, reason: impl Into<String>) -> ResponseSpec {
        self.reason = Some(reason.into());
        self
    }

    /// Adds a header field.
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> ResponseSpec {
        self.headers.push(name, value);
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> ResponseSpec {
        self.headers.set(HeaderName::ContentType, content_type);
        self.body = body.into();
        self
    }
}

/// Builds responses from the fields of a request.
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'a> {
    /// The request's header fields (at least its Via, From, To, Call-ID and
    /// CSeq; other fields are ignored).
    pub request_headers: &'a Headers,
    /// Where the request came from, for `received` and `rport` (RFC 3581).
    pub source: Option<SocketAddr>,
    /// The To tag to add when the request's To has none.
    pub local_tag: Option<&'a str>,
    /// A Server header value, if any.
    pub server: Option<&'a str>,
}

impl ResponseBuilder<'_> {
    /// The response for `spec`.
    pub fn build(&self, spec: &ResponseSpec) -> Response {
        let mut headers = Headers::new();
        let mut first_via = true;
        for via_line in self.request_headers.get_all(&HeaderName::Via) {
            if first_via {
                first_via = false;
                headers.push(HeaderName::Via, self.top_via_line(via_line));
            } else {
                headers.push(HeaderName::Via, via_line);
            }
        }
        if let Some(from) = self.request_headers.get(&HeaderName::From) {
            headers.push(HeaderName::From, from);
        }
        if let Some(to) = self.request_headers.get(&HeaderName::To) {
            headers.push(HeaderName::To, self.to_value(to, spec.status));
        }
        for name in [HeaderName::CallId, HeaderName::CSeq] {
            if let Some(value) = self.request_headers.get(&name) {
                headers.push(name, value);
            }
        }
        if let Some(server) = self.server.filter(|s| !s.is_empty()) {
            if !spec.headers.contains(&HeaderName::Server) {
                headers.push(HeaderName::Server, server);
            }
        }
        for field in spec.headers.iter() {
            headers.push(field.name.clone(), field.value.clone());
        }
        let reason = spec
            .reason
            .clone()
            .unwrap_or_else(|| standard_reason(spec.status).to_string());
        Response {
            status: spec.status,
            reason,
            headers,
            body: spec.body.clone(),
        }
    }

    fn to_value(&self, to: &str, status: u16) -> String {
        let Some(tag) = self.local_tag.filter(|_| status > 100) else {
            return to.to_string();
        };
        let has_tag = super::NameAddr::parse(to).is_ok_and(|na| na.tag().is_some());
        if has_tag {
            to.to_string()
        } else {
            format!("{to};tag={tag}")
        }
    }

    /// The first Via line with `received` and `rport` filled in for the top
    /// element when the source address calls for them. Other elements of
    /// the line, and all other lines, are copied unchanged.
    fn top_via_line(&self, line: &str) -> String {
        let Some(source) = self.source else {
            return line.to_string();
        };
        let elements = split_top_level_commas(line);
        let Some(top_text) = elements.first() else {
            return line.to_string();
        };
        let Ok(mut via) = Via::parse(top_text) else {
            return line.to_string();
        };
        let needs_received = via.host != Host::Ip(source.ip());
        let wants_rport = via.param("rport") == Some(None);
        if !needs_received && !wants_rport {
            return line.to_string();
        }
        via.params.retain(|(n, _)| n != "received" && n != "rport");
        let mut top = format!("SIP/{}/{} {}", via.version, via.transport, via.sent_by());
        for (name, value) in &via.params {
            top.push(';');
            top.push_str(name);
            if let Some(value) = value {
                top.push('=');
                top.push_str(value);
            }
        }
        if needs_received || wants_rport {
            top.push_str(&format!(";received={}", source.ip()));
        }
        if wants_rport {
            top.push_str(&format!(";rport={}", source.port()));
        }
        let mut out = top;
        for rest in &elements[1..] {
            out.push_str(", ");
            out.push_str(rest);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_headers(via: &str, to: &str) -> Headers {
        let mut h = Headers::new();
        h.push(HeaderName::Via, via);
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2",
        );
        h.push(HeaderName::From, "<sip:a@example.com>;tag=f1");
        h.push(HeaderName::To, to);
        h.push(HeaderName::CallId, "call-1");
        h.push(HeaderName::CSeq, "7 INVITE");
        h.push(HeaderName::Other("X-Ignored".into()), "1");
        h
    }

    #[test]
    fn copies_identity_headers_and_adds_a_to_tag() {
        let headers = request_headers(
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
            "<sip:b@example.com>",
        );
        let builder = ResponseBuilder {
            request_headers: &headers,
            source: Some("10.0.0.1:5060".parse().unwrap()),
            local_tag: Some("t1"),
            server: Some("switchboard"),
        };
        let resp = builder.build(&ResponseSpec::new(404).header(
            HeaderName::Reason,
            "SIP;cause=404;text=\"No trunk configured\"",
        ));
        assert_eq!(resp.reason, "Not Found");
        assert_eq!(
            resp.headers.get(&HeaderName::To),
            Some("<sip:b@example.com>;tag=t1")
        );
        assert_eq!(resp.headers.count(&HeaderName::Via), 2);
        assert_eq!(
            resp.headers.get(&HeaderName::Via),
            Some("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1")
        );
        assert_eq!(resp.headers.get(&HeaderName::CSeq), Some("7 INVITE"));
        assert!(resp
            .headers
            .get(&HeaderName::Other("X-Ignored".into()))
            .is_none());
        let trying = builder.build(&ResponseSpec::new(100));
        assert_eq!(
            trying.headers.get(&HeaderName::To),
            Some("<sip:b@example.com>")
        );
    }

    #[test]
    fn an_existing_to_tag_is_kept() {
        let headers = request_headers("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1", "<sip:b@x>;tag=old");
        let builder = ResponseBuilder {
            request_headers: &headers,
            source: None,
            local_tag: Some("new"),
            server: None,
        };
        let resp = builder.build(&ResponseSpec::new(481));
        assert_eq!(resp.headers.get(&HeaderName::To), Some("<sip:b@x>;tag=old"));
    }

    #[test]
    fn received_and_rport_are_filled_for_the_top_via() {
        let headers = request_headers(
            "SIP/2.0/UDP client.example.com;rport;branch=z9hG4bK1",
            "<sip:b@x>",
        );
        let builder = ResponseBuilder {
            request_headers: &headers,
            source: Some("192.0.2.7:40000".parse().unwrap()),
            local_tag: None,
            server: None,
        };
        let resp = builder.build(&ResponseSpec::new(200));
        assert_eq!(
            resp.headers.get(&HeaderName::Via),
            Some("SIP/2.0/UDP client.example.com;branch=z9hG4bK1;received=192.0.2.7;rport=40000")
        );
    }
}
