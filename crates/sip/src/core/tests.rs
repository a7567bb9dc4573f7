//! The endpoint driven with virtual time: every transaction timer and UAS
//! core rule, in milliseconds of real time.

use super::*;
use crate::dialog::Dialog;
use crate::message::{parse_message, standard_reason, Message};
use crate::ConnectionId;

struct Harness {
    ep: Endpoint,
    now: Instant,
    flow: Flow,
}

fn flow(transport: Transport) -> Flow {
    Flow {
        transport,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: "127.0.0.1:40000".parse().unwrap(),
        connection: transport.is_reliable().then_some(ConnectionId(7)),
    }
}

impl Harness {
    /// An endpoint that sends 100 Trying at once, as RFC 3261's timer
    /// tables assume (the deferred 100 has its own tests).
    fn new(transport: Transport) -> Harness {
        Harness::with_config(
            transport,
            EndpointConfig {
                trying_delay: Duration::ZERO,
                ..EndpointConfig::default()
            },
        )
    }

    fn with_config(transport: Transport, config: EndpointConfig) -> Harness {
        Harness {
            ep: Endpoint::new(config),
            now: Instant::now(),
            flow: flow(transport),
        }
    }

    fn send(&mut self, text: &str) {
        let flow = self.flow;
        self.ep.handle_message(self.now, flow, text.as_bytes());
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.ep.handle_timeout(self.now);
    }

    /// Advances in 50 ms steps so every timer fires at its own time.
    fn run_for(&mut self, total: Duration) -> Vec<(Duration, Message)> {
        let start = self.now;
        let mut seen = Vec::new();
        let step = Duration::from_millis(50);
        let end = self.now + total;
        while self.now < end {
            self.advance(step);
            for m in self.sent() {
                seen.push((self.now - start, m));
            }
        }
        seen
    }

    fn sent(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(t) = self.ep.poll_transmit() {
            out.push(parse_message(&t.payload, &Limits::default()).expect("we send valid SIP"));
        }
        out
    }

    fn responses(&mut self) -> Vec<Response> {
        self.sent()
            .into_iter()
            .filter_map(|m| match m {
                Message::Response(r) => Some(r),
                Message::Request(_) => None,
            })
            .collect()
    }

    fn statuses(&mut self) -> Vec<u16> {
        self.responses().iter().map(|r| r.status).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.ep.poll_event()).collect()
    }

    fn incoming(&mut self) -> Incoming {
        let events = self.events();
        match events.as_slice() {
            [Event::Request(incoming)] => incoming.clone(),
            other => panic!("expected one request, got {other:?}"),
        }
    }
}

fn request(method: &str, branch: &str, extra: &str) -> String {
    format!(
        "{method} sip:+15550100@gw.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:40000;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15550199@carrier.example.net>;tag=from1\r\n\
         To: <sip:+15550100@gw.example.com>\r\n\
         Call-ID: call-1@carrier.example.net\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:carrier@127.0.0.1:40000>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn invite(branch: &str) -> String {
    request("INVITE", branch, "")
}

fn ack_for(branch: &str, to_tag: &str) -> String {
    request("ACK", branch, "").replace(
        "To: <sip:+15550100@gw.example.com>",
        &format!("To: <sip:+15550100@gw.example.com>;tag={to_tag}"),
    )
}

fn to_tag(r: &Response) -> String {
    r.to().unwrap().tag().unwrap().to_string()
}

#[test]
fn options_out_of_dialog_is_answered_with_capabilities() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&request("OPTIONS", "z9hG4bKo1", ""));
    let responses = h.responses();
    assert_eq!(responses.len(), 1);
    let r = &responses[0];
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .get(&HeaderName::Allow)
        .unwrap()
        .contains("INVITE"));
    assert_eq!(r.headers.get(&HeaderName::Accept), Some("application/sdp"));
    assert!(r.headers.contains(&HeaderName::Supported));
    assert!(r.to().unwrap().tag().is_some());
    assert!(h.events().is_empty(), "OPTIONS is the core's to answer");
}

#[test]
fn options_pings_leave_no_transaction_and_retransmissions_get_the_same_tag() {
    let mut h = Harness::with_config(
        Transport::Udp,
        EndpointConfig {
            max_transactions: 4,
            trying_delay: Duration::ZERO,
            ..EndpointConfig::default()
        },
    );
    for i in 0..50 {
        h.send(&request("OPTIONS", &format!("z9hG4bKping{i}"), ""));
    }
    assert_eq!(h.ep.transaction_count(), (0, 0));
    let statuses: Vec<u16> = h.responses().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![200; 50],
        "a ping flood cannot fill the table"
    );
    h.send(&request("OPTIONS", "z9hG4bKsame", ""));
    h.send(&request("OPTIONS", "z9hG4bKsame", ""));
    let tags: Vec<String> = h
        .responses()
        .iter()
        .map(|r| r.to().unwrap().tag().unwrap().to_string())
        .collect();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0], tags[1], "a retransmission gets the same To tag");
    h.send(&invite("z9hG4bKi1"));
    assert_eq!(
        h.statuses(),
        vec![100],
        "the INVITE still gets a transaction"
    );
}

#[test]
fn draining_refuses_options_and_new_invites_with_retry_after() {
    let mut h = Harness::new(Transport::Udp);
    h.ep.set_draining(true);
    h.send(&request("OPTIONS", "z9hG4bKo1", ""));
    h.send(&invite("z9hG4bKi1"));
    let responses = h.responses();
    assert_eq!(
        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 503]
    );
    for r in &responses {
        assert_eq!(r.headers.get(&HeaderName::RetryAfter), Some("60"));
    }
    assert!(h.events().is_empty());
}

#[test]
fn a_retransmitted_invite_is_absorbed_into_one_transaction() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKi1"));
    assert_eq!(h.statuses(), vec![100]);
    let incoming = h.incoming();
    h.send(&invite("z9hG4bKi1"));
    assert_eq!(h.statuses(), vec![100], "the last provisional is resent");
    assert!(
        h.events().is_empty(),
        "no second request for the application"
    );
    h.ep.respond(h.now, incoming.txn, ResponseSpec::new(404))
        .unwrap();
    let first = h.responses();
    h.send(&invite("z9hG4bKi1"));
    let again = h.responses();
    assert_eq!(first.len(), 1);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].status, 404);
    assert_eq!(
        to_tag(&first[0]),
        to_tag(&again[0]),
        "same transaction, same To tag"
    );
    assert_eq!(h.ep.stats().retransmissions_absorbed, 2);
}

#[test]
fn a_final_error_is_retransmitted_with_timer_g_until_ack() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKi1"));
    h.sent();
    let txn = h.incoming().txn;
    h.ep.respond(h.now, txn, ResponseSpec::new(486)).unwrap();
    let tag = to_tag(&h.responses()[0]);
    // Retransmissions at 0.5, 1.5, 3.5, 7.5, 11.5 s (intervals 0.5, 1, 2, 4, 4).
    let seen = h.run_for(Duration::from_millis(11_600));
    let at: Vec<u128> = seen.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(at, vec![500, 1500, 3500, 7500, 11500]);
    h.send(&ack_for("z9hG4bKi1", &tag));
    let after_ack = h.run_for(Duration::from_secs(10));
    assert!(after_ack.is_empty(), "the ACK stops retransmissions");
    assert_eq!(
        h.ep.transaction_count(),
        (0, 0),
        "Timer I ended the transaction"
    );
}

#[test]
fn without_ack_timer_h_ends_the_transaction() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKi1"));
    h.sent();
    let txn = h.incoming().txn;
    h.ep.respond(h.now, txn, ResponseSpec::new(404)).unwrap();
    h.sent();
    let seen = h.run_for(Duration::from_secs(33));
    assert!(seen.len() >= 8, "retransmitted until Timer H");
    assert_eq!(h.ep.transaction_count(), (0, 0));
}

#[test]
fn over_tcp_final_responses_are_not_retransmitted() {
    let mut h = Harness::new(Transport::Tcp);
    h.send(&invite("z9hG4bKi1").replace("SIP/2.0/UDP", "SIP/2.0/TCP"));
    h.sent();
    let txn = h.incoming().txn;
    h.ep.respond(h.now, txn, ResponseSpec::new(404)).unwrap();
    assert_eq!(h.statuses(), vec![404]);
    assert!(h.run_for(Duration::from_secs(40)).is_empty());
    assert_eq!(h.ep.transaction_count(), (0, 0));
}

#[test]
fn a_lost_200_is_retransmitted_until_the_ack_arrives() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKi1"));
    h.sent();
    let txn = h.incoming().txn;
    h.ep.respond(h.now, txn, ResponseSpec::new(200)).unwrap();
    let tag = to_tag(&h.responses()[0]);
    let seen = h.run_for(Duration::from_millis(3_600));
    let at: Vec<u128> = seen.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(at, vec![500, 1500, 3500]);
    // The ACK for a 2xx is a new transaction with its own branch.
    h.send(&ack_for("z9hG4bKack", &tag));
    assert!(matches!(h.events().as_slice(), [Event::Ack { txn: Some(t), .. }] if *t == txn));
    assert!(h.run_for(Duration::from_secs(40)).is_empty());
    assert!(h.events().is_empty(), "no AckTimeout after the ACK");
}

#[test]
fn an_unacknowledged_200_reports_ack_timeout() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKi1"));
    h.sent();
    let txn = h.incoming().txn;
    h.ep.respond(h.now, txn, ResponseSpec::new(200)).unwrap();
    h.run_for(Duration::from_secs(33));
    assert_eq!(h.events(), vec![Event::AckTimeout { txn }]);
    assert_eq!(h.ep.transaction_count(), (0, 0));
}

#[test]
fn cancel_of_a_pending_invite_gets_200_and_487() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKi1"));
    h.sent();
    let txn = h.incoming().txn;
    h.send(&request("CANCEL", "z9hG4bKi1", ""));
    let responses = h.responses();
    let pairs: Vec<(u16, String)> = responses
        .iter()
        .map(|r| (r.status, r.cseq().unwrap().method.to_string()))
        .collect();
    assert_eq!(pairs, vec![(200, "CANCEL".into()), (487, "INVITE".into())]);
    assert_eq!(h.events(), vec![Event::Cancelled { txn }]);
    assert_eq!(
        h.ep.respond(h.now, txn, ResponseSpec::new(200)),
        Err(RespondError::AlreadyFinal)
    );
    // A retransmitted CANCEL is absorbed by its own transaction.
    h.send(&request("CANCEL", "z9hG4bKi1", ""));
    assert_eq!(h.statuses(), vec![200]);
}

#[test]
fn cancel_without_invite_gets_481_and_after_final_only_200() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&request("CANCEL", "z9hG4bKnone", ""));
    assert_eq!(h.statuses(), vec![481]);
    h.send(&invite("z9hG4bKi2"));
    h.sent();
    let txn = h.incoming().txn;
    h.ep.respond(h.now, txn, ResponseSpec::new(404)).unwrap();
    h.sent();
    h.send(&request("CANCEL", "z9hG4bKi2", ""));
    assert_eq!(h.statuses(), vec![200]);
    assert!(h.events().is_empty());
}

#[test]
fn in_dialog_methods_without_a_dialog_get_481() {
    let mut h = Harness::new(Transport::Udp);
    for (i, method) in ["BYE", "INFO", "UPDATE", "REFER", "NOTIFY"]
        .iter()
        .enumerate()
    {
        h.send(&request(method, &format!("z9hG4bKd{i}"), ""));
        assert_eq!(h.statuses(), vec![481], "{method}");
    }
    let reinvite = invite("z9hG4bKre").replace(
        "To: <sip:+15550100@gw.example.com>",
        "To: <sip:+15550100@gw.example.com>;tag=gone",
    );
    h.send(&reinvite);
    assert_eq!(h.statuses(), vec![481]);
    assert!(h.events().is_empty());
}

#[test]
fn requests_in_a_known_dialog_reach_the_application_in_order() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKi1"));
    h.sent();
    let incoming = h.incoming();
    let tag = h.ep.local_tag(incoming.txn).unwrap().to_string();
    let dialog = Dialog::new_uas(&incoming.request, &tag, h.flow, true).unwrap();
    let id = dialog.id.clone();
    h.ep.insert_dialog(dialog);
    let bye = request("BYE", "z9hG4bKb1", "")
        .replace("CSeq: 1 BYE", "CSeq: 5 BYE")
        .replace(
            "To: <sip:+15550100@gw.example.com>",
            &format!("To: <sip:+15550100@gw.example.com>;tag={tag}"),
        );
    h.send(&bye);
    let got = h.incoming();
    assert_eq!(got.dialog, Some(id));
    assert_eq!(got.request.method, Method::Bye);
    let stale = bye
        .replace("z9hG4bKb1", "z9hG4bKb2")
        .replace("CSeq: 5 BYE", "CSeq: 2 BYE");
    h.send(&stale);
    assert_eq!(h.statuses(), vec![500], "a CSeq lower than one seen");
}

#[test]
fn methods_we_do_not_implement() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&request("REGISTER", "z9hG4bKr1", ""));
    h.send(&request("MESSAGE", "z9hG4bKm1", ""));
    h.send(&request("NEWMETHOD", "z9hG4bKn1", ""));
    let responses = h.responses();
    assert_eq!(
        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![405, 405, 501]
    );
    for r in &responses {
        assert!(r
            .headers
            .get(&HeaderName::Allow)
            .unwrap()
            .contains("OPTIONS"));
    }
}

#[test]
fn unknown_required_extensions_get_420_with_unsupported() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&request("OPTIONS", "z9hG4bKx", "Require: foo, bar\r\n"));
    let r = &h.responses()[0];
    assert_eq!(r.status, 420);
    assert_eq!(r.headers.get(&HeaderName::Unsupported), Some("foo, bar"));
    let config = EndpointConfig {
        supported: vec!["foo".into(), "bar".into()],
        ..EndpointConfig::default()
    };
    let mut h = Harness::with_config(Transport::Udp, config);
    h.send(&request("OPTIONS", "z9hG4bKx", "Require: foo, bar\r\n"));
    assert_eq!(h.statuses(), vec![200]);
}

#[test]
fn invite_bodies_we_cannot_read_and_accept_without_sdp() {
    let mut h = Harness::new(Transport::Udp);
    let text = invite("z9hG4bKb").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
    );
    h.send(&text);
    let r = &h.responses()[0];
    assert_eq!(r.status, 415);
    assert!(r
        .headers
        .get(&HeaderName::Accept)
        .unwrap()
        .contains("application/sdp"));
    h.send(
        &request("INVITE", "z9hG4bKa", "Accept: text/nobodyKnowsThis\r\n")
            .replace("call-1@", "call-2@"),
    );
    let r = &h.responses()[0];
    assert_eq!(r.status, 406);
    assert!(r
        .headers
        .get(&HeaderName::Warning)
        .unwrap()
        .starts_with("399 "));
    h.send(
        &request(
            "INVITE",
            "z9hG4bKc",
            "Accept: application/sdp, text/html\r\n",
        )
        .replace("call-1@", "call-3@"),
    );
    assert_eq!(h.statuses(), vec![100]);
}

#[test]
fn non_invite_transactions_linger_to_absorb_retransmissions() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&request("OPTIONS", "z9hG4bKo", ""));
    let first = h.responses();
    h.advance(Duration::from_secs(20));
    h.send(&request("OPTIONS", "z9hG4bKo", ""));
    let again = h.responses();
    assert_eq!(to_tag(&first[0]), to_tag(&again[0]));
    h.advance(Duration::from_secs(13));
    assert_eq!(h.ep.transaction_count(), (0, 0), "Timer J is 64*T1");
    let mut tcp = Harness::new(Transport::Tcp);
    tcp.send(&request("OPTIONS", "z9hG4bKo", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP"));
    tcp.advance(Duration::ZERO);
    assert_eq!(tcp.ep.transaction_count(), (0, 0), "Timer J is zero on TCP");
}

#[test]
fn merged_requests_get_482() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKpath1"));
    h.sent();
    h.events();
    h.send(&invite("z9hG4bKpath2"));
    assert_eq!(h.statuses(), vec![482]);
}

#[test]
fn malformed_requests_get_400_with_a_warning_and_acks_never_do() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&request("OPTIONS", "z9hG4bKm", "").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"));
    let r = &h.responses()[0];
    assert_eq!(r.status, 400);
    assert!(r
        .headers
        .get(&HeaderName::Warning)
        .unwrap()
        .contains("CSeq"));
    h.send(&ack_for("z9hG4bKm2", "t").replace("Max-Forwards: 70", "Max-Forwards: 300"));
    assert!(h.sent().is_empty());
    h.send("SIP/2.0 200 OK\r\n\r\n");
    assert!(h.sent().is_empty(), "responses are never answered");
}

#[test]
fn overload_refuses_without_creating_state() {
    let config = EndpointConfig {
        max_transactions: 1,
        ..EndpointConfig::default()
    };
    let mut h = Harness::with_config(Transport::Udp, config);
    h.send(&invite("z9hG4bKi1"));
    h.sent();
    h.send(&request("OPTIONS", "z9hG4bKo", ""));
    let r = &h.responses()[0];
    assert_eq!(r.status, 503);
    assert!(r.headers.contains(&HeaderName::RetryAfter));
    assert_eq!(h.ep.transaction_count(), (1, 0));
}

#[test]
fn rfc2543_transactions_match_without_a_branch() {
    let mut h = Harness::new(Transport::Udp);
    let old = invite("x").replace(";branch=x", "");
    h.send(&old);
    h.sent();
    let txn = h.incoming().txn;
    h.send(&old);
    assert_eq!(h.statuses(), vec![100]);
    h.ep.respond(h.now, txn, ResponseSpec::new(404)).unwrap();
    let tag = to_tag(&h.responses()[0]);
    let ack = ack_for("x", &tag).replace(";branch=x", "");
    h.send(&ack);
    assert!(
        h.run_for(Duration::from_secs(6)).is_empty(),
        "ACK matched by To tag"
    );
    assert_eq!(h.ep.transaction_count(), (0, 0));
}

// ----- client side ---------------------------------------------------------

fn outgoing(method: Method) -> Request {
    let mut headers = Headers::new();
    headers.push(HeaderName::From, "<sip:gw@127.0.0.1>;tag=ours");
    headers.push(HeaderName::To, "<sip:bob@127.0.0.1:40000>");
    headers.push(HeaderName::CallId, "out-1");
    headers.push(HeaderName::CSeq, format!("1 {method}"));
    headers.push(HeaderName::Contact, "<sip:gw@127.0.0.1:5060>");
    Request {
        method,
        uri: "sip:bob@127.0.0.1:40000".into(),
        headers,
        body: Bytes::new(),
    }
}

fn reply(to: &Request, status: u16, to_tag: Option<&str>) -> String {
    let mut out = format!("SIP/2.0 {status} {}\r\n", standard_reason(status));
    for via in to.headers.get_all(&HeaderName::Via) {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    let to_value = to.headers.get(&HeaderName::To).unwrap();
    let to_value = match to_tag {
        Some(tag) => format!("{to_value};tag={tag}"),
        None => to_value.to_string(),
    };
    out.push_str(&format!(
        "From: {}\r\nTo: {to_value}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:bob@127.0.0.1:40000>\r\nContent-Length: 0\r\n\r\n",
        to.headers.get(&HeaderName::From).unwrap(),
        to.call_id().unwrap(),
        to.headers.get(&HeaderName::CSeq).unwrap()
    ));
    out
}

fn sent_requests(h: &mut Harness) -> Vec<Request> {
    h.sent()
        .into_iter()
        .filter_map(|m| match m {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        })
        .collect()
}

fn udp_destination() -> Destination {
    Destination::Address {
        transport: Transport::Udp,
        addr: "127.0.0.1:40000".parse().unwrap(),
    }
}

#[test]
fn client_invite_retransmits_with_timer_a_and_times_out_with_timer_b() {
    let mut h = Harness::new(Transport::Udp);
    let txn =
        h.ep.send_request(h.now, outgoing(Method::Invite), udp_destination());
    let first = sent_requests(&mut h);
    assert_eq!(first.len(), 1);
    let via = first[0].top_via().unwrap();
    assert!(via.rfc3261_branch().is_some());
    assert_eq!(via.param("rport"), Some(None));
    let seen = h.run_for(Duration::from_secs(33));
    let at: Vec<u128> = seen.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(at, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(
        h.events(),
        vec![Event::RequestFailed {
            txn,
            reason: RequestFailure::Timeout
        }]
    );
}

#[test]
fn client_invite_acks_a_failure_once_and_absorbs_its_retransmission() {
    let mut h = Harness::new(Transport::Udp);
    let txn =
        h.ep.send_request(h.now, outgoing(Method::Invite), udp_destination());
    let invite = sent_requests(&mut h).remove(0);
    h.send(&reply(&invite, 180, Some("callee")));
    assert!(
        h.run_for(Duration::from_secs(2)).is_empty(),
        "1xx stops Timer A"
    );
    h.send(&reply(&invite, 486, Some("callee")));
    let acks = sent_requests(&mut h);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].method, Method::Ack);
    assert_eq!(acks[0].to().unwrap().tag(), Some("callee"));
    assert_eq!(
        acks[0].top_via(),
        invite.top_via(),
        "same branch as the INVITE"
    );
    h.send(&reply(&invite, 486, Some("callee")));
    assert_eq!(sent_requests(&mut h).len(), 1, "ACK resent");
    let statuses: Vec<u16> = h
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Response {
                txn: t, response, ..
            } if *t == txn => Some(response.status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![180, 486],
        "the retransmitted 486 is not reported twice"
    );
}

#[test]
fn cancel_waits_for_a_provisional_response() {
    let mut h = Harness::new(Transport::Udp);
    let txn =
        h.ep.send_request(h.now, outgoing(Method::Invite), udp_destination());
    let invite = sent_requests(&mut h).remove(0);
    assert!(h.ep.cancel(h.now, txn));
    assert!(sent_requests(&mut h).is_empty(), "no CANCEL before a 1xx");
    h.send(&reply(&invite, 100, None));
    let cancels = sent_requests(&mut h);
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].method, Method::Cancel);
    assert_eq!(cancels[0].top_via(), invite.top_via());
    assert_eq!(cancels[0].cseq().unwrap().seq, 1);
    assert!(!h.ep.cancel(h.now, txn), "only once");
}

#[test]
fn client_non_invite_caps_timer_e_at_t2() {
    let mut h = Harness::new(Transport::Udp);
    let txn =
        h.ep.send_request(h.now, outgoing(Method::Options), udp_destination());
    sent_requests(&mut h);
    let seen = h.run_for(Duration::from_secs(33));
    let at: Vec<u128> = seen.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(&at[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
    assert!(matches!(
        h.events().as_slice(),
        [Event::RequestFailed { txn: t, reason: RequestFailure::Timeout }] if *t == txn
    ));
}

#[test]
fn transport_failure_fails_requests_in_flight() {
    let mut h = Harness::new(Transport::Tcp);
    let destination = Destination::Address {
        transport: Transport::Tcp,
        addr: "127.0.0.1:40000".parse().unwrap(),
    };
    let txn =
        h.ep.send_request(h.now, outgoing(Method::Invite), destination);
    sent_requests(&mut h);
    assert!(
        h.run_for(Duration::from_secs(5)).is_empty(),
        "no retransmission on TCP"
    );
    h.ep.transport_failed(destination);
    assert_eq!(
        h.events(),
        vec![Event::RequestFailed {
            txn,
            reason: RequestFailure::Transport
        }]
    );
    assert_eq!(h.ep.transaction_count(), (0, 0));
}

#[test]
fn core_rejections_keep_no_state_and_are_sent_once() {
    // The source guard would drop most of this flood; here the core alone.
    let config = EndpointConfig {
        max_transactions: 10,
        guard: GuardConfig {
            enabled: false,
            ..GuardConfig::default()
        },
        ..EndpointConfig::default()
    };
    let mut h = Harness::with_config(
        Transport::Udp,
        EndpointConfig {
            trying_delay: Duration::ZERO,
            ..config
        },
    );
    // A flood of forged out-of-dialog requests, each with a fresh branch,
    // and of requests the core cannot take.
    for i in 0..200 {
        h.send(&request("BYE", &format!("z9hG4bKbye{i}"), ""));
        h.send(&request("CANCEL", &format!("z9hG4bKcan{i}"), ""));
        h.send(&request("REGISTER", &format!("z9hG4bKreg{i}"), ""));
        h.send(&request("NEWMETHOD", &format!("z9hG4bKnew{i}"), ""));
    }
    let statuses = h.statuses();
    assert_eq!(statuses.len(), 800, "one answer per request");
    assert_eq!(statuses.iter().filter(|s| **s == 481).count(), 400);
    assert_eq!(h.ep.transaction_count(), (0, 0), "no transaction kept");
    let later = h.run_for(Duration::from_secs(40));
    assert!(later.is_empty(), "nothing retransmitted: {later:?}");
    // The table is free for a real call.
    h.send(&invite("z9hG4bKreal"));
    assert_eq!(h.statuses(), vec![100]);
    assert_eq!(h.incoming().request.method, Method::Invite);
    // A retransmitted rejection gets the same To tag.
    h.send(&request("BYE", "z9hG4bKagain", ""));
    h.send(&request("BYE", "z9hG4bKagain", ""));
    let answers = h.responses();
    assert_eq!(to_tag(&answers[0]), to_tag(&answers[1]));
}

#[test]
fn in_dialog_requests_are_taken_only_from_the_dialogs_peer() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKi1"));
    h.sent();
    let incoming = h.incoming();
    let tag = h.ep.local_tag(incoming.txn).unwrap().to_string();
    let dialog = Dialog::new_uas(&incoming.request, &tag, h.flow, true).unwrap();
    h.ep.insert_dialog(dialog);
    let bye = |branch: &str, seq: u32| {
        request("BYE", branch, "")
            .replace("CSeq: 1 BYE", &format!("CSeq: {seq} BYE"))
            .replace(
                "To: <sip:+15550100@gw.example.com>",
                &format!("To: <sip:+15550100@gw.example.com>;tag={tag}"),
            )
    };
    // Someone who read the Call-ID and tags from the room's attributes.
    h.flow.remote = "127.0.0.66:5060".parse().unwrap();
    h.send(&bye("z9hG4bKforged", 5));
    let refused = h.responses();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].status, 403);
    assert!(h.events().is_empty(), "the call never hears of it");
    assert_eq!(h.ep.transaction_count(), (1, 0), "only the INVITE");
    // The peer itself, from a new port (NAT rebinding), is heard; its CSeq
    // was not spent by the forgery.
    h.flow.remote = "127.0.0.1:40002".parse().unwrap();
    h.send(&bye("z9hG4bKreal", 5));
    assert_eq!(h.incoming().request.method, Method::Bye);
    // With the check off, anyone is heard (the old behaviour).
    let config = EndpointConfig {
        bind_dialogs_to_peer: false,
        ..EndpointConfig::default()
    };
    let mut open = Harness::with_config(Transport::Udp, config);
    open.send(&invite("z9hG4bKi1"));
    open.sent();
    let incoming = open.incoming();
    let dialog = Dialog::new_uas(&incoming.request, &tag, open.flow, true).unwrap();
    open.ep.insert_dialog(dialog);
    open.flow.remote = "127.0.0.66:5060".parse().unwrap();
    open.send(&bye("z9hG4bKforged", 5));
    assert_eq!(open.incoming().request.method, Method::Bye);
}

#[test]
fn a_peer_may_send_from_the_address_its_contact_names() {
    let mut h = Harness::new(Transport::Udp);
    h.send(&invite("z9hG4bKi1").replace(
        "Contact: <sip:carrier@127.0.0.1:40000>",
        "Contact: <sip:carrier@192.0.2.50:5060>",
    ));
    h.sent();
    let incoming = h.incoming();
    let tag = h.ep.local_tag(incoming.txn).unwrap().to_string();
    let dialog = Dialog::new_uas(&incoming.request, &tag, h.flow, true).unwrap();
    h.ep.insert_dialog(dialog);
    h.flow.remote = "192.0.2.50:5060".parse().unwrap();
    let bye = request("BYE", "z9hG4bKb", "")
        .replace("CSeq: 1 BYE", "CSeq: 2 BYE")
        .replace(
            "To: <sip:+15550100@gw.example.com>",
            &format!("To: <sip:+15550100@gw.example.com>;tag={tag}"),
        );
    h.send(&bye);
    assert_eq!(h.incoming().request.method, Method::Bye);
}

#[test]
fn a_flooding_source_is_limited_then_banned_and_others_are_still_heard() {
    let config = EndpointConfig {
        guard: GuardConfig {
            requests_per_sec: 10,
            request_burst: 20,
            excess_to_ban: 30,
            ..GuardConfig::default()
        },
        ..EndpointConfig::default()
    };
    let mut h = Harness::with_config(Transport::Udp, config);
    let mut answered = 0;
    for i in 0..100 {
        h.send(&request("OPTIONS", &format!("z9hG4bKfl{i}"), ""));
        answered += h.statuses().len();
    }
    assert_eq!(answered, 20, "the burst, then silence");
    assert_eq!(h.ep.bans(h.now).len(), 1, "banned after 30 over the rate");
    h.advance(Duration::from_secs(5));
    h.send(&request("OPTIONS", "z9hG4bKafter", ""));
    assert!(h.sent().is_empty(), "a banned source gets silence");
    h.flow.remote = "127.0.0.9:5060".parse().unwrap();
    h.send(&request("OPTIONS", "z9hG4bKother", ""));
    assert_eq!(h.statuses(), vec![200], "another source is heard");
    h.send(&request(
        "OPTIONS",
        "z9hG4bKscan",
        "User-Agent: friendly-scanner\r\n",
    ));
    assert!(h.sent().is_empty(), "a scanner is not answered");
    assert_eq!(h.ep.bans(h.now).len(), 2);
    assert!(h.ep.lift_ban(h.now, "127.0.0.9".parse().unwrap()));
    h.send(&request("OPTIONS", "z9hG4bKlifted", ""));
    assert_eq!(h.statuses(), vec![200]);
}

#[test]
fn an_invite_answered_at_once_gets_no_100_and_its_refusal_is_not_retransmitted() {
    let mut h = Harness::with_config(Transport::Udp, EndpointConfig::default());
    h.send(&invite("z9hG4bKq1"));
    assert!(
        h.sent().is_empty(),
        "no 100 before the transaction user speaks"
    );
    let txn = h.incoming().txn;
    h.ep.respond(h.now, txn, ResponseSpec::new(407)).unwrap();
    assert_eq!(h.statuses(), vec![407]);
    // Nothing more by itself: the client still retransmits (Timer A)...
    let later = h.run_for(Duration::from_millis(1900));
    assert!(later.is_empty(), "{later:?}");
    // ...and each retransmission gets the answer once.
    h.send(&invite("z9hG4bKq1"));
    assert_eq!(h.statuses(), vec![407]);
    let later = h.run_for(Duration::from_secs(40));
    assert!(later.is_empty(), "no Timer G: {later:?}");
    assert_eq!(h.ep.transaction_count(), (0, 0), "Timer H still ends it");
}

#[test]
fn a_slow_transaction_user_gets_100_and_then_timer_g() {
    let mut h = Harness::with_config(Transport::Udp, EndpointConfig::default());
    h.send(&invite("z9hG4bKq2"));
    let txn = h.incoming().txn;
    let trying = h.run_for(Duration::from_millis(150));
    let statuses: Vec<u16> = trying
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Response(r) => Some(r.status),
            Message::Request(_) => None,
        })
        .collect();
    assert_eq!(statuses, vec![100], "100 Trying after the delay");
    h.ep.respond(h.now, txn, ResponseSpec::new(486)).unwrap();
    assert_eq!(h.statuses(), vec![486]);
    let again = h.run_for(Duration::from_millis(600));
    assert_eq!(again.len(), 1, "Timer G: the client may be in Proceeding");
}

#[test]
fn a_table_a_burst_grew_gives_its_room_back_once_mostly_empty() {
    let mut table: HashMap<u32, [u8; 256]> = HashMap::new();
    for key in 0..40_000 {
        table.insert(key, [0; 256]);
    }
    let grown = table.capacity();
    for key in 0..39_990 {
        table.remove(&key);
        give_back_spare(&mut table);
    }
    assert_eq!(table.len(), 10);
    assert!(
        table.capacity() <= 2048 && table.capacity() < grown / 16,
        "capacity {} after the burst (grew to {grown})",
        table.capacity()
    );
    // A small table keeps its room: no rehash per removal.
    let mut small: HashMap<u32, u32> = (0..500).map(|k| (k, k)).collect();
    small.retain(|k, _| *k < 5);
    give_back_spare(&mut small);
    assert!(small.capacity() >= 500, "shrunk to {}", small.capacity());
}
