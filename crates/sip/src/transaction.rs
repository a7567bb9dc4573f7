//! Transaction identities and states (RFC 3261 §17, RFC 6026).
//!
//! The state machines themselves run inside [`crate::Endpoint`], which owns
//! the timers and the transmit queue; this module holds what a transaction
//! is and how requests and responses are matched to one.

use crate::message::{Method, Request};
use crate::Flow;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Methods that share a transaction: an ACK for a non-2xx response belongs
/// to the INVITE transaction; CANCEL has its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MethodClass {
    /// INVITE and its ACK.
    Invite,
    /// Any other method.
    Other(String),
}

impl MethodClass {
    /// The class of a method.
    pub fn of(method: &Method) -> MethodClass {
        match method {
            Method::Invite | Method::Ack => MethodClass::Invite,
            other => MethodClass::Other(other.as_str().to_string()),
        }
    }
}

/// How a server transaction is recognised when a retransmission arrives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnKey {
    /// RFC 3261 §17.2.3: the branch (with the magic cookie), the sent-by of
    /// the top Via and the method class. Call-ID, CSeq number and From tag
    /// are added: a real retransmission carries the same ones, and a peer
    /// that reuses a branch for another call must not be answered with that
    /// call's response.
    Rfc3261 {
        /// Top Via branch.
        branch: String,
        /// Top Via sent-by, lowercased.
        sent_by: String,
        /// Method class.
        method: MethodClass,
        /// Call-ID.
        call_id: String,
        /// CSeq number.
        cseq: u32,
        /// From tag, if any.
        from_tag: Option<String>,
    },
    /// RFC 2543 peers (no magic cookie): Request-URI, From tag, Call-ID,
    /// CSeq number, top Via and method class. The To tag is checked
    /// separately for ACK.
    Rfc2543 {
        /// Request-URI text.
        request_uri: String,
        /// From tag, if any.
        from_tag: Option<String>,
        /// Call-ID.
        call_id: String,
        /// CSeq number.
        cseq: u32,
        /// Top Via, whitespace removed.
        top_via: String,
        /// Method class.
        method: MethodClass,
    },
}

impl TxnKey {
    /// The key of a request, or `None` when it lacks what a key needs (the
    /// parser guarantees those headers, so this is defensive).
    pub fn of(request: &Request) -> Option<TxnKey> {
        let via_text = request
            .headers
            .list(&crate::message::HeaderName::Via)
            .next()?;
        let via = crate::message::Via::parse(via_text).ok()?;
        let method = MethodClass::of(&request.method);
        let from_tag = request.from().and_then(|f| f.tag().map(str::to_string));
        if let Some(branch) = via.rfc3261_branch() {
            return Some(TxnKey::Rfc3261 {
                branch: branch.to_string(),
                sent_by: via.sent_by().to_ascii_lowercase(),
                method,
                call_id: request.call_id()?.to_string(),
                cseq: request.cseq()?.seq,
                from_tag,
            });
        }
        Some(TxnKey::Rfc2543 {
            request_uri: request.uri.clone(),
            from_tag,
            call_id: request.call_id()?.to_string(),
            cseq: request.cseq()?.seq,
            top_via: via_text.chars().filter(|c| !c.is_whitespace()).collect(),
            method,
        })
    }

    /// The same key with another method class (to find the INVITE a CANCEL
    /// or ACK refers to).
    pub fn with_method(&self, class: MethodClass) -> TxnKey {
        let mut key = self.clone();
        match &mut key {
            TxnKey::Rfc3261 { method, .. } | TxnKey::Rfc2543 { method, .. } => *method = class,
        }
        key
    }
}

/// Server transaction states (RFC 3261 §17.2, with RFC 6026 Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE: no response sent yet.
    Trying,
    /// A provisional response has been sent (INVITE starts here).
    Proceeding,
    /// A final non-2xx (INVITE) or any final (non-INVITE) response was sent.
    Completed,
    /// INVITE: the ACK for the non-2xx response arrived.
    Confirmed,
    /// INVITE: a 2xx was sent; waiting for its ACK (RFC 6026).
    Accepted,
    /// Done; removed at the next opportunity.
    Terminated,
}

/// Client transaction states (RFC 3261 §17.1, with RFC 6026 Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing heard.
    Calling,
    /// Non-INVITE sent, nothing heard.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived (non-2xx for INVITE).
    Completed,
    /// INVITE: a 2xx arrived; further 2xx are passed up (RFC 6026).
    Accepted,
    /// Done.
    Terminated,
}

/// The timers a transaction can arm. One deadline per kind; a timer that
/// pops with a deadline other than the armed one is stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Client: retransmit the request (A for INVITE, E for non-INVITE).
    Retransmit,
    /// Client: give up (B, F).
    Timeout,
    /// Server: retransmit the final response (G, and 2xx retransmission).
    ResponseRetransmit,
    /// Server: give up waiting for ACK (H, L).
    AckWait,
    /// Both: linger in Completed/Confirmed/Accepted to absorb
    /// retransmissions (D, I, J, K, M).
    Linger,
    /// Server: send 100 Trying if the transaction user has not answered
    /// an INVITE by now (RFC 3261 §17.2.1 allows 200 ms).
    Trying,
}

/// Number of timer kinds.
pub(crate) const TIMER_KINDS: usize = 6;

impl TimerKind {
    pub(crate) fn index(self) -> usize {
        match self {
            TimerKind::Retransmit => 0,
            TimerKind::Timeout => 1,
            TimerKind::ResponseRetransmit => 2,
            TimerKind::AckWait => 3,
            TimerKind::Linger => 4,
            TimerKind::Trying => 5,
        }
    }
}

/// A server transaction.
#[derive(Debug)]
pub(crate) struct ServerTxn {
    pub key: TxnKey,
    pub merge_key: Option<MergeKey>,
    pub is_invite: bool,
    pub state: ServerState,
    pub flow: Flow,
    pub request: Request,
    pub local_tag: String,
    pub last_response: Option<Bytes>,
    pub last_status: u16,
    pub retransmit_interval: Duration,
    pub acked: bool,
    pub deadlines: [Option<Instant>; TIMER_KINDS],
    /// True when the transaction user has been told about the request and
    /// so owns the final response.
    pub delivered: bool,
    /// A provisional response went out: the client may have stopped
    /// retransmitting (Proceeding), so a final response over UDP must be
    /// retransmitted by us (Timer G).
    pub provisional_sent: bool,
}

/// A client transaction.
#[derive(Debug)]
pub(crate) struct ClientTxn {
    pub branch: String,
    pub is_invite: bool,
    pub state: ClientState,
    pub request: Request,
    pub payload: Bytes,
    pub destination: crate::Destination,
    pub reliable: bool,
    pub retransmit_interval: Duration,
    pub deadlines: [Option<Instant>; TIMER_KINDS],
    pub cancel_requested: bool,
    pub got_provisional: bool,
    pub ack: Option<Bytes>,
}

/// Identifies requests that arrive along two paths (RFC 3261 §8.2.2.2):
/// same From tag, Call-ID and CSeq, different transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MergeKey {
    pub from_tag: String,
    pub call_id: String,
    pub cseq: u32,
    pub method: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_message, Message};
    use crate::Limits;

    fn request(text: &str) -> Request {
        match parse_message(text.as_bytes(), &Limits::default()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!(),
        }
    }

    fn invite(via: &str, method: &str) -> Request {
        request(&format!(
            "{method} sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@x>;tag=f\r\n\
             To: <sip:bob@example.com>\r\nCall-ID: k1\r\nCSeq: 1 {method}\r\n\r\n"
        ))
    }

    #[test]
    fn ack_and_invite_share_a_key_and_cancel_does_not() {
        let via = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc";
        let i = TxnKey::of(&invite(via, "INVITE")).unwrap();
        let a = TxnKey::of(&invite(via, "ACK")).unwrap();
        let c = TxnKey::of(&invite(via, "CANCEL")).unwrap();
        assert_eq!(i, a);
        assert_ne!(i, c);
        assert_eq!(c.with_method(MethodClass::Invite), i);
    }

    #[test]
    fn a_bare_magic_cookie_gives_an_rfc2543_key() {
        let key = TxnKey::of(&invite("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK", "INVITE")).unwrap();
        assert!(matches!(key, TxnKey::Rfc2543 { .. }));
        let key = TxnKey::of(&invite("SIP/2.0/UDP 192.0.2.1", "INVITE")).unwrap();
        assert!(matches!(key, TxnKey::Rfc2543 { cseq: 1, .. }));
    }

    #[test]
    fn a_reused_branch_in_another_call_is_another_transaction() {
        let via = "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKreused";
        let a = TxnKey::of(&invite(via, "OPTIONS"));
        let other = invite(via, "OPTIONS").to_bytes();
        let text = String::from_utf8_lossy(&other).replace("Call-ID: k1", "Call-ID: k2");
        let b = TxnKey::of(&request(&text));
        assert_ne!(a, b);
    }

    #[test]
    fn sent_by_is_part_of_the_key() {
        let a = TxnKey::of(&invite("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKabc", "INVITE"));
        let b = TxnKey::of(&invite("SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKabc", "INVITE"));
        assert_ne!(a, b);
    }
}
