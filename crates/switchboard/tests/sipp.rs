//! SIPp against the real binary, over UDP and TCP: OPTIONS ping, INVITE →
//! 404, a retransmitted INVITE absorbed into one transaction, BYE outside a
//! dialog → 481; and INVITE then CANCEL against the same SIP stack holding
//! the call in ringing (the binary answers every INVITE at once until
//! inbound calls ring, so the CANCEL race needs a stack that rings).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{sipp, SippTransport, Switchboard};
use std::time::Duration;
use switchboard_sip::message::ResponseSpec;
use switchboard_sip::transport::{SipStack, TransportConfig};
use switchboard_sip::{AdvertisedPorts, EndpointConfig, Event};

fn run(scenario: &str, transport: SippTransport, extra: &[&str]) {
    let sb = Switchboard::start(&[]);
    let target = match transport {
        SippTransport::Udp => sb.udp.unwrap(),
        SippTransport::Tcp => sb.tcp.unwrap(),
    };
    if let Err(report) = sipp(scenario, target, transport, extra) {
        panic!("{report}\n--- switchboard log\n{}", sb.log());
    }
}

#[test]
fn options_ping_udp() {
    run("options", SippTransport::Udp, &[]);
}

#[test]
fn options_ping_tcp() {
    run("options", SippTransport::Tcp, &[]);
}

#[test]
fn invite_gets_404_no_trunk_udp() {
    run("invite_404", SippTransport::Udp, &[]);
}

#[test]
fn invite_gets_404_no_trunk_tcp() {
    run("invite_404", SippTransport::Tcp, &[]);
}

#[test]
fn retransmitted_invite_is_one_transaction_udp() {
    // -nr: our resent 404 must not make SIPp resend its INVITE in a loop.
    run("invite_retransmit", SippTransport::Udp, &["-nr"]);
}

#[test]
fn retransmitted_invite_is_one_transaction_tcp() {
    run("invite_retransmit", SippTransport::Tcp, &[]);
}

#[test]
fn bye_outside_a_dialog_gets_481_udp() {
    run("bye_481", SippTransport::Udp, &[]);
}

#[test]
fn bye_outside_a_dialog_gets_481_tcp() {
    run("bye_481", SippTransport::Tcp, &[]);
}

/// A SIP stack on ephemeral loopback ports.
async fn ringing_stack() -> SipStack {
    let transport = TransportConfig {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        ..TransportConfig::default()
    };
    let endpoint = EndpointConfig {
        advertised_ports: AdvertisedPorts {
            udp: 0,
            tcp: 0,
            tls: 0,
        },
        ..EndpointConfig::default()
    };
    SipStack::start(transport, endpoint).await.unwrap()
}

async fn cancel(transport: SippTransport) {
    let SipStack {
        handle,
        mut events,
        bound,
        tasks: _tasks,
    } = ringing_stack().await;
    let (cancelled_tx, mut cancelled) = tokio::sync::mpsc::unbounded_channel();
    let ringer = handle.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Request(incoming) => {
                    let _ = ringer.respond(incoming.txn, ResponseSpec::new(180));
                }
                Event::Cancelled { .. } => {
                    let _ = cancelled_tx.send(());
                }
                _ => {}
            }
        }
    });
    let target = match transport {
        SippTransport::Udp => bound.udp.unwrap(),
        SippTransport::Tcp => bound.tcp.unwrap(),
    };
    let result = tokio::task::spawn_blocking(move || sipp("invite_cancel", target, transport, &[]))
        .await
        .unwrap();
    if let Err(report) = result {
        panic!("{report}");
    }
    let told = tokio::time::timeout(Duration::from_secs(5), cancelled.recv()).await;
    assert!(
        matches!(told, Ok(Some(()))),
        "the transaction user learns of the CANCEL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_then_cancel_gets_200_and_487_udp() {
    cancel(SippTransport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_then_cancel_gets_200_and_487_tcp() {
    cancel(SippTransport::Tcp).await;
}
