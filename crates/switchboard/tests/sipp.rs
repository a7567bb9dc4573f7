//! SIPp against the real binary, over UDP and TCP: OPTIONS ping, INVITE →
//! 404, a retransmitted INVITE absorbed into one transaction, BYE outside a
//! dialog → 481, and INVITE then CANCEL while the call rings (a call rings
//! until a participant joins its room).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{sipp, SippTransport, Switchboard};

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

/// SIPp calls a routed number, which rings, and cancels: 200 for the
/// CANCEL, 487 for the INVITE, and the call leaves nothing behind.
fn cancel(transport: SippTransport) {
    let sb = common::routes::start(&[]);
    common::routes::open_route(&sb, "");
    let target = match transport {
        SippTransport::Udp => sb.udp.unwrap(),
        SippTransport::Tcp => sb.tcp.unwrap(),
    };
    if let Err(report) = sipp("invite_cancel", target, transport, &["-s", "+15550100"]) {
        panic!("{report}\n--- switchboard log\n{}", sb.log());
    }
    let call = common::routes::last_ended_call(&sb);
    assert_eq!(call["result"], "cancelled", "{call}");
    assert_eq!(call["sip_status"], 487, "{call}");
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}

#[test]
fn invite_then_cancel_gets_200_and_487_udp() {
    cancel(SippTransport::Udp);
}

#[test]
fn invite_then_cancel_gets_200_and_487_tcp() {
    cancel(SippTransport::Tcp);
}

/// Session timers against SIPp (tests/sipp/uac_session_timer.xml): the
/// caller asks for 2 s with switchboard as the refresher; SIPp sees three
/// re-INVITE refreshes, answers them, and its BYE still finds the call.
#[test]
fn switchboard_refreshes_a_sipp_callers_session_by_reinvite() {
    let sb = common::routes::start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_CALLS__MIN_SESSION_EXPIRES_SECS", "2"),
    ]);
    common::routes::open_route(&sb, "");
    let target = sb.udp.unwrap();
    if let Err(report) = sipp(
        "uac_session_timer",
        target,
        SippTransport::Udp,
        &["-s", "+15550100"],
    ) {
        panic!("{report}\n--- switchboard log\n{}", sb.log());
    }
    // Hung up by SIPp's BYE, not by an expired session.
    let call = common::routes::last_ended_call(&sb);
    assert_eq!(call["result"], "answered", "{call}");
    assert_eq!(
        call["info"]["disconnect_reason"], "CLIENT_INITIATED",
        "{call}"
    );
    common::api::assert_nothing_left(sb.api.unwrap(), || sb.log());
}
