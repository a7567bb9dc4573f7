//! Dialog bookkeeping (RFC 3261 §12): identity, sequence numbers, remote
//! target and route set, and building requests within a dialog.
//!
//! The endpoint keeps a table of dialogs so that an in-dialog request that
//! matches none is answered 481 by the core, and one that matches is handed
//! to the transaction user with its dialog.

use crate::message::{HeaderName, Headers, Method, NameAddr, Request, Response};
use crate::Flow;
use bytes::Bytes;
use thiserror::Error;

/// Identifies a dialog from our side: Call-ID, our tag, the peer's tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag (To tag as UAS, From tag as UAC).
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

/// Which side of the dialog we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE.
    Uac,
    /// We received the INVITE.
    Uas,
}

/// Dialog state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended by BYE or a failure.
    Terminated,
}

/// Why a dialog could not be created or a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DialogError {
    /// A header the dialog needs is missing or malformed.
    #[error("missing or malformed {0}")]
    Missing(&'static str),
    /// An in-dialog request with a CSeq lower than one already seen
    /// (answer 500, RFC 3261 §12.2.2).
    #[error("CSeq {got} is lower than {last}")]
    CSeqOutOfOrder {
        /// The CSeq received.
        got: u32,
        /// The highest seen.
        last: u32,
    },
}

/// One dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Identity.
    pub id: DialogId,
    /// Our role.
    pub role: Role,
    /// State.
    pub state: DialogState,
    /// Our From/To header value without the tag parameter rebuilt: the
    /// header text as it is sent by us (with our tag).
    pub local_party: String,
    /// The peer's From/To header value (with its tag).
    pub remote_party: String,
    /// Our last CSeq number.
    pub local_seq: u32,
    /// The peer's highest CSeq number seen.
    pub remote_seq: Option<u32>,
    /// The peer's Contact URI (where in-dialog requests go).
    pub remote_target: String,
    /// Route set, in the order requests must carry it.
    pub route_set: Vec<String>,
    /// True for a sips: dialog.
    pub secure: bool,
    /// The flow the dialog's messages travel on (stream connections are
    /// reused for in-dialog requests).
    pub flow: Flow,
}

fn contact_uri(headers: &Headers) -> Option<String> {
    let contact = headers.list(&HeaderName::Contact).next()?;
    NameAddr::parse(contact).ok().map(|na| na.uri_text)
}

impl Dialog {
    /// The dialog a UAS creates when it answers `request` with a response
    /// carrying `local_tag` (RFC 3261 §12.1.1).
    pub fn new_uas(
        request: &Request,
        local_tag: &str,
        flow: Flow,
        confirmed: bool,
    ) -> Result<Dialog, DialogError> {
        let from = request.from().ok_or(DialogError::Missing("From"))?;
        let remote_tag = from
            .tag()
            .ok_or(DialogError::Missing("From tag"))?
            .to_string();
        let call_id = request
            .call_id()
            .ok_or(DialogError::Missing("Call-ID"))?
            .to_string();
        let to_value = request
            .headers
            .get(&HeaderName::To)
            .ok_or(DialogError::Missing("To"))?;
        let remote_target = contact_uri(&request.headers).ok_or(DialogError::Missing("Contact"))?;
        let remote_seq = request.cseq().map(|c| c.seq);
        let route_set = request
            .headers
            .list(&HeaderName::RecordRoute)
            .map(str::to_string)
            .collect();
        let secure = request.uri.to_ascii_lowercase().starts_with("sips:");
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag: local_tag.to_string(),
                remote_tag,
            },
            role: Role::Uas,
            state: if confirmed {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_party: format!("{to_value};tag={local_tag}"),
            remote_party: request
                .headers
                .get(&HeaderName::From)
                .unwrap_or_default()
                .to_string(),
            local_seq: 0,
            remote_seq,
            remote_target,
            route_set,
            secure,
            flow,
        })
    }

    /// The dialog a UAC creates from a response with a To tag to its
    /// `request` (RFC 3261 §12.1.2).
    pub fn new_uac(
        request: &Request,
        response: &Response,
        flow: Flow,
    ) -> Result<Dialog, DialogError> {
        let from = request.from().ok_or(DialogError::Missing("From"))?;
        let local_tag = from
            .tag()
            .ok_or(DialogError::Missing("From tag"))?
            .to_string();
        let to = response.to().ok_or(DialogError::Missing("To"))?;
        let remote_tag = to.tag().ok_or(DialogError::Missing("To tag"))?.to_string();
        let call_id = request
            .call_id()
            .ok_or(DialogError::Missing("Call-ID"))?
            .to_string();
        let remote_target =
            contact_uri(&response.headers).ok_or(DialogError::Missing("Contact"))?;
        let mut route_set: Vec<String> = response
            .headers
            .list(&HeaderName::RecordRoute)
            .map(str::to_string)
            .collect();
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            role: Role::Uac,
            state: if (200..300).contains(&response.status) {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_party: request
                .headers
                .get(&HeaderName::From)
                .unwrap_or_default()
                .to_string(),
            remote_party: response
                .headers
                .get(&HeaderName::To)
                .unwrap_or_default()
                .to_string(),
            local_seq: request.cseq().map(|c| c.seq).unwrap_or(1),
            remote_seq: None,
            remote_target,
            route_set,
            secure: request.uri.to_ascii_lowercase().starts_with("sips:"),
            flow,
        })
    }

    /// Where the dialog's next request goes: its connection while open,
    /// else the remote target (an IP-literal Contact; a host name falls
    /// back to the peer's address, as no resolver runs here).
    pub fn destination(&self) -> crate::Destination {
        let target = crate::message::Uri::parse(&self.remote_target)
            .ok()
            .and_then(|uri| {
                let sip = uri.as_sip()?.clone();
                let ip = match sip.host {
                    crate::message::Host::Ip(ip) => ip,
                    crate::message::Host::Name(_) => return None,
                };
                let port = sip.port.unwrap_or(if sip.secure { 5061 } else { 5060 });
                Some(std::net::SocketAddr::new(ip, port))
            })
            .unwrap_or(self.flow.remote);
        crate::Destination::Dialog {
            flow: self.flow,
            target,
        }
    }

    /// Checks and records the CSeq of a request from the peer.
    pub fn accept_remote_cseq(&mut self, seq: u32, method: &Method) -> Result<(), DialogError> {
        if matches!(method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if let Some(last) = self.remote_seq {
            if seq < last {
                return Err(DialogError::CSeqOutOfOrder { got: seq, last });
            }
        }
        self.remote_seq = Some(seq);
        Ok(())
    }

    /// A new request within the dialog (RFC 3261 §12.2.1.1), without Via:
    /// the endpoint adds that when it sends. ACK reuses the INVITE's CSeq
    /// number; every other method takes the next one.
    pub fn request(&mut self, method: Method, invite_seq: Option<u32>) -> Request {
        let seq = match (&method, invite_seq) {
            (Method::Ack, Some(seq)) => seq,
            _ => {
                self.local_seq = self.local_seq.wrapping_add(1).max(1);
                self.local_seq
            }
        };
        let mut headers = Headers::new();
        // Loose routing (lr) is the rule since RFC 3261; a strict first hop
        // would take the Request-URI's place.
        let first_is_strict = self
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .and_then(|na| na.uri.as_sip().map(|s| s.param("lr").is_none()))
            .unwrap_or(false);
        let (uri, routes): (String, Vec<String>) = if first_is_strict {
            let first = self
                .route_set
                .first()
                .and_then(|r| NameAddr::parse(r).ok())
                .map(|na| na.uri_text)
                .unwrap_or_else(|| self.remote_target.clone());
            let mut rest: Vec<String> = self.route_set.iter().skip(1).cloned().collect();
            rest.push(format!("<{}>", self.remote_target));
            (first, rest)
        } else {
            (self.remote_target.clone(), self.route_set.clone())
        };
        for route in routes {
            headers.push(HeaderName::Route, route);
        }
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(HeaderName::From, self.local_party.clone());
        headers.push(HeaderName::To, self.remote_party.clone());
        headers.push(HeaderName::CallId, self.id.call_id.clone());
        headers.push(HeaderName::CSeq, format!("{seq} {method}"));
        Request {
            method,
            uri,
            headers,
            body: Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_message, Message};
    use crate::{Limits, Transport};

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:5070".parse().unwrap(),
            connection: None,
        }
    }

    fn invite() -> Request {
        let text = "INVITE sip:bob@gw.example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
            Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
            From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
            To: <sip:bob@gw.example.com>\r\n\
            Call-ID: dlg-1\r\nCSeq: 10 INVITE\r\n\
            Contact: <sip:alice@10.0.0.1:5080>\r\nContent-Length: 0\r\n\r\n";
        match parse_message(text.as_bytes(), &Limits::default()).unwrap() {
            Message::Request(r) => r,
            _ => panic!(),
        }
    }

    #[test]
    fn uas_dialog_routes_requests_through_the_record_route() {
        let mut dialog = Dialog::new_uas(&invite(), "b1", flow(), true).unwrap();
        assert_eq!(dialog.id.remote_tag, "a1");
        let bye = dialog.request(Method::Bye, None);
        assert_eq!(bye.uri, "sip:alice@10.0.0.1:5080");
        let routes: Vec<_> = bye.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(
            routes,
            vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert_eq!(bye.headers.get(&HeaderName::CSeq), Some("1 BYE"));
        assert_eq!(
            bye.headers.get(&HeaderName::From),
            Some("<sip:bob@gw.example.com>;tag=b1")
        );
        assert_eq!(
            bye.headers.get(&HeaderName::To),
            Some("\"Alice\" <sip:alice@example.com>;tag=a1")
        );
    }

    #[test]
    fn remote_cseq_must_not_go_backwards() {
        let mut dialog = Dialog::new_uas(&invite(), "b1", flow(), true).unwrap();
        assert!(dialog.accept_remote_cseq(11, &Method::Bye).is_ok());
        assert_eq!(
            dialog.accept_remote_cseq(5, &Method::Info),
            Err(DialogError::CSeqOutOfOrder { got: 5, last: 11 })
        );
        assert!(dialog.accept_remote_cseq(5, &Method::Ack).is_ok());
    }

    #[test]
    fn a_strict_first_route_takes_the_request_uri() {
        let mut dialog = Dialog::new_uas(&invite(), "b1", flow(), true).unwrap();
        dialog.route_set = vec!["<sip:strict.example.com>".into()];
        let req = dialog.request(Method::Bye, None);
        assert_eq!(req.uri, "sip:strict.example.com");
        assert_eq!(
            req.headers.get(&HeaderName::Route),
            Some("<sip:alice@10.0.0.1:5080>")
        );
    }
}
