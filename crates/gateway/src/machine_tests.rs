//! The call machine in virtual time: every timer at its real value (a
//! 180 s ringing timeout, a 24 h call, 1,800 s session timers), every race
//! the network can deal, each in microseconds.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::session_timer::Refresher;

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

fn settings() -> Settings {
    Settings {
        ringing_interval: SECOND,
        answer_immediately: false,
        pin_timeout: 30 * SECOND,
        max_pin_digits: 16,
        max_duration: 24 * HOUR,
        min_session_expires: 90 * SECOND,
        bot_close_hangs_up: true,
    }
}

/// A machine and its virtual clock.
struct Harness {
    machine: CallMachine,
    start: Instant,
    now: Instant,
}

impl Harness {
    fn inbound() -> Harness {
        Harness::inbound_with(None, false)
    }

    fn inbound_with(session_expires: Option<&str>, supports: bool) -> Harness {
        let start = Instant::now();
        let session = session_expires.and_then(SessionExpires::parse);
        Harness {
            machine: CallMachine::inbound(settings(), start, session, supports),
            start,
            now: start,
        }
    }

    /// An inbound call that rings (180 s), nobody in the room yet.
    fn ringing() -> Harness {
        let mut h = Harness::inbound();
        assert_eq!(h.feed(ring(180)), [Action::Ring]);
        assert_eq!(h.feed(Input::Rung { audience: false }), []);
        h
    }

    fn outbound() -> Harness {
        let start = Instant::now();
        Harness {
            machine: CallMachine::outbound(settings(), start),
            start,
            now: start,
        }
    }

    /// Feeds `input` now; what the machine asks for.
    fn feed(&mut self, input: Input) -> Vec<Action> {
        self.machine.handle(self.now, input);
        self.actions()
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.machine.poll_action()).collect()
    }

    /// Jumps to the machine's next timer and fires it.
    fn wake(&mut self) -> Vec<Action> {
        let at = self.machine.poll_timeout().expect("a timer is set");
        assert!(at >= self.now, "timers do not go back in time");
        self.now = at;
        self.machine.handle_timeout(at);
        self.actions()
    }

    /// Moves the clock on by `by`, firing every timer due on the way.
    fn advance(&mut self, by: Duration) -> Vec<Action> {
        let to = self.now + by;
        let mut actions = Vec::new();
        while let Some(at) = self.machine.poll_timeout().filter(|at| *at <= to) {
            self.now = at;
            self.machine.handle_timeout(at);
            actions.extend(self.actions());
        }
        self.now = to;
        actions
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// An inbound call rung and answered, its ACK in.
    fn answered_inbound(mut self) -> Harness {
        assert_eq!(self.feed(ring(180)), [Action::Ring]);
        let session = self.machine.invite_session.0.map(|asked| {
            let peer_supports = self.machine.invite_session.1;
            SessionAnswer {
                interval: asked.interval,
                refresher: refresher_for_request(Some(asked), peer_supports),
                peer_supports,
            }
        });
        assert_eq!(
            self.feed(Input::Rung { audience: true }),
            [Action::Answer(session)]
        );
        assert_eq!(self.feed(Input::Answered), [Action::Bridge]);
        assert_eq!(
            self.feed(Input::Ack),
            [Action::SetStatus(CallStatus::Active)]
        );
        assert_eq!(self.machine.phase(), Phase::Answered);
        self
    }
}

/// A transfer order to one desk, within 30 s.
fn to_the_desk(dialtone: bool) -> Input {
    Input::Transfer {
        refer_to: "sip:desk@example.com".into(),
        timeout: 30 * SECOND,
        dialtone,
        refused: None,
    }
}

fn ring(ringing_secs: u64) -> Input {
    Input::Routed(Route::Ring {
        ringing_timeout: Duration::from_secs(ringing_secs),
        timeout_status: None,
        max_duration: None,
        bot: false,
    })
}

fn dial(ringing_secs: u64, digits: bool) -> Input {
    Input::Routed(Route::Dial {
        ringing_timeout: Duration::from_secs(ringing_secs),
        max_duration: None,
        session_expires: 1800 * SECOND,
        digits,
    })
}

fn response(to: Sent, status: u16) -> Input {
    Input::Response {
        to,
        status,
        reason: String::new(),
        min_se: None,
        session: None,
    }
}

fn bye_then_released(h: &mut Harness, ending: Ending) {
    assert_eq!(h.feed(Input::Sent(Sent::Bye, 9)), []);
    assert_eq!(h.feed(response(Sent::Bye, 200)), [Action::Finish(ending)]);
    assert_eq!(h.machine.phase(), Phase::Ended);
    assert_eq!(h.machine.poll_timeout(), None, "nothing left to wake for");
}

// ----- timers at their real values ---------------------------------------------

#[test]
fn an_unanswered_call_rings_again_at_1_3_7_15_31_63_123_s_and_is_refused_at_180_s() {
    let mut h = Harness::inbound();
    assert_eq!(h.feed(ring(180)), [Action::Ring]);
    assert_eq!(h.feed(Input::Rung { audience: false }), []);
    let mut rang_at = Vec::new();
    loop {
        let actions = h.wake();
        if actions == [Action::RingAgain] {
            rang_at.push(h.elapsed().as_secs());
            continue;
        }
        assert_eq!(
            actions,
            [
                Action::Refuse(Refusal::RingingTimeout { status: 480 }),
                Action::Finish(Ending::Refused(Refusal::RingingTimeout { status: 480 })),
            ]
        );
        break;
    }
    assert_eq!(rang_at, [1, 3, 7, 15, 31, 63, 123]);
    assert_eq!(h.elapsed(), 180 * SECOND);
    assert_eq!(h.machine.phase(), Phase::Ended);
}

#[test]
fn a_ringing_timeout_is_refused_with_the_rules_status() {
    let mut h = Harness::inbound();
    h.feed(Input::Routed(Route::Ring {
        ringing_timeout: 20 * SECOND,
        timeout_status: Some(486),
        max_duration: None,
        bot: false,
    }));
    h.feed(Input::Rung { audience: false });
    let actions = h.advance(20 * SECOND);
    assert_eq!(h.elapsed(), 20 * SECOND);
    assert_eq!(
        actions[actions.len() - 2],
        Action::Refuse(Refusal::RingingTimeout { status: 486 })
    );
}

#[test]
fn a_day_long_call_is_hung_up_at_24_hours_and_not_a_microsecond_before() {
    let mut h = Harness::inbound().answered_inbound();
    // Nothing else is timed: an idle call wakes once, at its end.
    assert_eq!(h.machine.poll_timeout(), Some(h.start + 24 * HOUR));
    assert_eq!(h.advance(24 * HOUR - Duration::from_micros(1)), []);
    assert_eq!(h.wake(), [Action::SendBye(Ending::MaxDuration)]);
    assert_eq!(h.elapsed(), 24 * HOUR);
    assert_eq!(h.machine.phase(), Phase::HangingUp);
    bye_then_released(&mut h, Ending::MaxDuration);
}

#[test]
fn the_rules_maximum_duration_counts_from_the_answer() {
    let mut h = Harness::inbound();
    h.feed(Input::Routed(Route::Ring {
        ringing_timeout: 180 * SECOND,
        timeout_status: None,
        max_duration: Some(HOUR),
        bot: false,
    }));
    h.feed(Input::Rung { audience: false });
    h.advance(10 * SECOND);
    h.feed(Input::AudienceReady);
    h.feed(Input::Answered);
    h.feed(Input::Ack);
    loop {
        if h.wake() == [Action::SendBye(Ending::MaxDuration)] {
            break;
        }
    }
    assert_eq!(h.elapsed(), HOUR + 10 * SECOND);
}

#[test]
fn we_refresh_an_1800_s_session_every_900_s() {
    let mut h = Harness::inbound_with(Some("1800;refresher=uas"), true).answered_inbound();
    assert_eq!(
        h.machine.session_timer(),
        Some(SessionTimer {
            interval: 1800 * SECOND,
            we_refresh: true
        })
    );
    for refresh in 1..=48u32 {
        assert_eq!(h.wake(), [Action::SendRefresh(1800 * SECOND)]);
        assert_eq!(h.elapsed(), 900 * SECOND * refresh);
        h.feed(Input::Sent(Sent::Refresh, refresh + 1));
        let agreed = Input::Response {
            to: Sent::Refresh,
            status: 200,
            reason: "OK".into(),
            min_se: None,
            session: Some(SessionTimer {
                interval: 1800 * SECOND,
                we_refresh: true,
            }),
        };
        assert_eq!(h.feed(agreed), [Action::AcceptRefresh]);
    }
    assert_eq!(h.elapsed(), 12 * HOUR);
}

#[test]
fn a_refresh_without_answer_is_sent_again_once_then_the_session_ends_on_its_timeout() {
    let mut h = Harness::inbound_with(Some("1800;refresher=uas"), true).answered_inbound();
    assert_eq!(h.wake(), [Action::SendRefresh(1800 * SECOND)]);
    h.feed(Input::Sent(Sent::Refresh, 2));
    // Half an interval later still no final answer: no second refresh on
    // top of the first.
    assert_eq!(h.wake(), []);
    assert_eq!(h.elapsed(), 1800 * SECOND);
    // The transaction gives up: RFC 4028 §10, the session is gone.
    assert_eq!(
        h.feed(Input::NoResponse(Sent::Refresh, RequestFailure::Timeout)),
        [Action::SendBye(Ending::SessionExpired)]
    );
}

#[test]
fn a_422_to_our_refresh_asks_again_with_the_peers_min_se() {
    let mut h = Harness::inbound_with(Some("1800;refresher=uas"), true).answered_inbound();
    h.wake();
    h.feed(Input::Sent(Sent::Refresh, 2));
    let too_small = Input::Response {
        to: Sent::Refresh,
        status: 422,
        reason: "Session Interval Too Small".into(),
        min_se: Some(3600 * SECOND),
        session: None,
    };
    assert_eq!(h.feed(too_small), [Action::SendRefresh(3600 * SECOND)]);
}

#[test]
fn a_peer_that_stops_refreshing_an_1800_s_session_loses_it_32_s_early() {
    let mut h = Harness::inbound_with(Some("1800;refresher=uac"), true).answered_inbound();
    let refresh = || {
        Input::Request(DialogRequest::Offer {
            session_expires: SessionExpires::parse("1800;refresher=uac"),
            peer_supports: true,
        })
    };
    for _ in 0..2 {
        assert_eq!(h.advance(1000 * SECOND), []);
        let answer = SessionAnswer {
            interval: 1800 * SECOND,
            refresher: Refresher::Uac,
            peer_supports: true,
        };
        assert_eq!(h.feed(refresh()), [Action::Renegotiate(Some(answer))]);
        assert_eq!(h.feed(Input::PeerRefreshed(answer)), []);
    }
    let last = h.elapsed();
    assert_eq!(h.wake(), [Action::SendBye(Ending::SessionExpired)]);
    assert_eq!(h.elapsed() - last, 1768 * SECOND);
}

#[test]
fn a_peers_refresh_below_our_min_se_keeps_the_interval() {
    let mut h = Harness::inbound_with(Some("1800"), true).answered_inbound();
    let short = Input::Request(DialogRequest::Offer {
        session_expires: SessionExpires::parse("30;refresher=uac"),
        peer_supports: true,
    });
    let actions = h.feed(short);
    let Action::Renegotiate(Some(answer)) = &actions[0] else {
        panic!("{actions:?}");
    };
    assert_eq!(answer.interval, 1800 * SECOND);
}

#[test]
fn a_caller_who_types_no_pin_is_hung_up_after_30_s() {
    let mut h = Harness::inbound();
    assert_eq!(h.feed(Input::Routed(Route::Pin)), [Action::Answer(None)]);
    assert_eq!(h.feed(Input::Answered), [Action::PromptPin]);
    // The ACK does not make a caller without a room `active`.
    assert_eq!(h.feed(Input::Ack), []);
    assert_eq!(h.advance(29 * SECOND), []);
    assert_eq!(h.wake(), [Action::SendBye(Ending::PinTimeout)]);
    assert_eq!(h.elapsed(), 30 * SECOND);
}

#[test]
fn a_pin_is_checked_at_hash_and_a_wrong_one_is_said_before_the_bye() {
    let mut h = Harness::inbound();
    h.feed(Input::Routed(Route::Pin));
    h.feed(Input::Answered);
    let digit = |c| DtmfDigit::from_char(c).unwrap();
    assert_eq!(h.feed(Input::Dtmf(digit('4'))), []);
    // A digit by SIP INFO counts as one in the RTP.
    assert_eq!(
        h.feed(Input::Request(DialogRequest::Info(Some(digit('2'))))),
        [Action::Reply(200)]
    );
    assert_eq!(
        h.feed(Input::Dtmf(digit('#'))),
        [Action::CheckPin("42".into())]
    );
    assert_eq!(h.feed(Input::PinRefused), [Action::PromptWrongPin]);
    assert_eq!(h.machine.phase(), Phase::RefusingPin);
    assert_eq!(
        h.feed(Input::PromptPlayed),
        [Action::SendBye(Ending::WrongPin)]
    );
}

#[test]
fn a_wrong_pin_prompt_that_never_ends_is_cut_at_3_s() {
    let mut h = Harness::inbound();
    h.feed(Input::Routed(Route::Pin));
    h.feed(Input::Answered);
    h.feed(Input::Dtmf(DtmfDigit::from_char('#').unwrap()));
    h.feed(Input::PinRefused);
    let asked = h.elapsed();
    assert_eq!(h.wake(), [Action::SendBye(Ending::WrongPin)]);
    assert_eq!(h.elapsed() - asked, 3 * SECOND);
}

#[test]
fn a_right_pin_bridges_the_call_and_its_rules_limit_counts_from_the_answer() {
    let mut h = Harness::inbound();
    h.feed(Input::Routed(Route::Pin));
    h.feed(Input::Answered);
    h.advance(5 * SECOND);
    h.feed(Input::Dtmf(DtmfDigit::from_char('#').unwrap()));
    assert_eq!(h.feed(Input::PinAccepted(Some(HOUR))), [Action::Bridge]);
    assert_eq!(h.machine.phase(), Phase::Answered);
    assert_eq!(h.wake(), [Action::SendBye(Ending::MaxDuration)]);
    assert_eq!(h.elapsed(), HOUR);
}

#[test]
fn a_transfer_without_outcome_fails_at_its_timeout_and_gives_the_caller_the_room_back() {
    let mut h = Harness::inbound().answered_inbound();
    let order = to_the_desk(true);
    assert_eq!(
        h.feed(order),
        [Action::SendRefer, Action::TransferTone(true)]
    );
    h.feed(Input::Sent(Sent::Refer, 2));
    assert_eq!(h.machine.phase(), Phase::Transferring);
    assert_eq!(h.feed(response(Sent::Refer, 202)), []);
    assert_eq!(
        h.wake(),
        [
            Action::TransferTone(false),
            Action::TransferOutcome(Err(TransferError::Timeout))
        ]
    );
    assert_eq!(h.elapsed(), 30 * SECOND);
    assert_eq!(h.machine.phase(), Phase::Answered);
}

// ----- races -------------------------------------------------------------------

#[test]
fn a_cancel_that_beats_our_200_ends_the_call_without_a_bye() {
    let mut h = Harness::ringing();
    assert_eq!(h.feed(Input::AudienceReady), [Action::Answer(None)]);
    // The core answered the CANCEL's INVITE with 487 first: our 200
    // cannot go out.
    assert_eq!(
        h.feed(Input::Failed(Ending::Cancelled)),
        [Action::Finish(Ending::Cancelled)]
    );
}

#[test]
fn a_cancel_that_crosses_our_200_changes_nothing() {
    let mut h = Harness::inbound().answered_inbound();
    assert_eq!(h.feed(Input::Cancelled), []);
    assert_eq!(h.machine.phase(), Phase::Answered);
}

#[test]
fn a_cancel_while_ringing_ends_the_call_without_another_final_response() {
    let mut h = Harness::ringing();
    assert_eq!(
        h.feed(Input::Cancelled),
        [Action::Finish(Ending::Cancelled)]
    );
}

#[test]
fn a_200_that_crosses_our_cancel_is_acked_and_hung_up() {
    let mut h = Harness::outbound();
    assert_eq!(
        h.feed(dial(30, false)),
        [Action::SendInvite {
            session_expires: 1800 * SECOND,
            authenticate: false
        }]
    );
    h.feed(Input::Sent(Sent::Invite, 1));
    assert_eq!(
        h.feed(response(Sent::Invite, 180)),
        [Action::SetStatus(CallStatus::Ringing), Action::EarlyMedia]
    );
    assert_eq!(h.wake(), [Action::Cancel]);
    assert_eq!(h.elapsed(), 30 * SECOND);
    assert_eq!(h.machine.phase(), Phase::Cancelling);
    assert_eq!(h.feed(response(Sent::Invite, 200)), [Action::Confirm]);
    let timed_out = DialError::RingingTimeout(30 * SECOND);
    assert_eq!(
        h.feed(Input::Answered),
        [
            Action::DialResult(Err(timed_out.clone())),
            Action::SendBye(Ending::DialFailed(timed_out.clone()))
        ]
    );
    bye_then_released(&mut h, Ending::DialFailed(timed_out));
}

#[test]
fn our_cancel_answered_with_487_is_a_ringing_timeout() {
    let mut h = Harness::outbound();
    h.feed(dial(30, false));
    h.wake();
    let timed_out = DialError::RingingTimeout(30 * SECOND);
    assert_eq!(
        h.feed(response(Sent::Invite, 487)),
        [
            Action::DialResult(Err(timed_out.clone())),
            Action::Finish(Ending::DialFailed(timed_out))
        ]
    );
}

#[test]
fn a_cancel_nobody_answers_gives_up_after_5_s() {
    let mut h = Harness::outbound();
    h.feed(dial(30, false));
    h.wake();
    let actions = h.wake();
    assert_eq!(h.elapsed(), 35 * SECOND);
    assert_eq!(
        actions.last(),
        Some(&Action::Finish(Ending::DialFailed(
            DialError::RingingTimeout(30 * SECOND)
        )))
    );
}

#[test]
fn a_callee_removed_while_dialling_is_cancelled_and_reported_once() {
    let mut h = Harness::outbound();
    h.feed(dial(30, false));
    assert_eq!(
        h.feed(Input::RoomGone(LeaveReason::Removed)),
        [
            Action::DialResult(Err(DialError::Abandoned)),
            Action::Cancel
        ]
    );
    assert_eq!(h.feed(Input::RoomGone(LeaveReason::Removed)), []);
    assert_eq!(
        h.feed(response(Sent::Invite, 487)),
        [Action::Finish(Ending::DialFailed(DialError::Abandoned))]
    );
}

#[test]
fn a_trunk_that_keeps_challenging_is_refused_after_3_challenges() {
    let mut h = Harness::outbound();
    h.feed(dial(30, false));
    let again = Action::SendInvite {
        session_expires: 1800 * SECOND,
        authenticate: true,
    };
    for _ in 0..3 {
        assert_eq!(
            h.feed(response(Sent::Invite, 407)),
            std::slice::from_ref(&again)
        );
    }
    let actions = h.feed(response(Sent::Invite, 407));
    let refused = DialError::Sip {
        status: 407,
        reason: String::new(),
    };
    assert_eq!(
        actions,
        [
            Action::DialResult(Err(refused.clone())),
            Action::Finish(Ending::DialFailed(refused))
        ]
    );
}

#[test]
fn an_answered_outbound_call_with_digits_is_automation_until_they_are_sent() {
    let mut h = Harness::outbound();
    h.feed(dial(30, true));
    assert_eq!(h.feed(response(Sent::Invite, 200)), [Action::Confirm]);
    assert_eq!(
        h.feed(Input::Answered),
        [
            Action::DialResult(Ok(())),
            Action::SendDigits,
            Action::SetStatus(CallStatus::Automation)
        ]
    );
    assert_eq!(
        h.feed(Input::DigitsSent),
        [Action::SetStatus(CallStatus::Active)]
    );
    assert_eq!(h.feed(Input::DigitsSent), []);
}

#[test]
fn a_bye_crossing_ours_is_answered_and_our_ending_stands() {
    let mut h = Harness::inbound().answered_inbound();
    let by = Ending::EndedByParticipant("agent".into());
    assert_eq!(
        h.feed(Input::EndCall {
            from: "agent".into()
        }),
        [Action::SendBye(by.clone())]
    );
    h.feed(Input::Sent(Sent::Bye, 2));
    assert_eq!(
        h.feed(Input::Request(DialogRequest::Bye)),
        [Action::Reply(200)]
    );
    // Anything else in the dialog now finds no call.
    assert_eq!(
        h.feed(Input::Request(DialogRequest::Options)),
        [Action::Reply(481)]
    );
    assert_eq!(h.feed(response(Sent::Bye, 481)), [Action::Finish(by)]);
}

#[test]
fn a_bye_nobody_answers_is_given_up_after_5_s() {
    let mut h = Harness::inbound().answered_inbound();
    h.feed(Input::MediaTimeout);
    h.feed(Input::Sent(Sent::Bye, 2));
    assert_eq!(h.wake(), [Action::Finish(Ending::MediaTimeout)]);
    assert_eq!(h.elapsed(), 5 * SECOND);
}

#[test]
fn the_callers_bye_ends_the_call_without_ours() {
    let mut h = Harness::inbound().answered_inbound();
    assert_eq!(
        h.feed(Input::Request(DialogRequest::Bye)),
        [Action::Reply(200), Action::Finish(Ending::CallerHungUp)]
    );
}

#[test]
fn a_reinvite_during_a_transfer_is_answered_and_the_transfer_goes_on() {
    let mut h = Harness::inbound_with(Some("1800;refresher=uac"), true).answered_inbound();
    h.feed(to_the_desk(false));
    h.feed(Input::Sent(Sent::Refer, 2));
    h.advance(2 * SECOND);
    let hold = Input::Request(DialogRequest::Offer {
        session_expires: SessionExpires::parse("1800;refresher=uac"),
        peer_supports: true,
    });
    let answer = SessionAnswer {
        interval: 1800 * SECOND,
        refresher: Refresher::Uac,
        peer_supports: true,
    };
    assert_eq!(h.feed(hold), [Action::Renegotiate(Some(answer))]);
    assert_eq!(h.machine.phase(), Phase::Transferring);
    // A second order to the same target waits for the same outcome.
    let again = to_the_desk(false);
    assert_eq!(h.feed(again), [Action::JoinTransfer]);
    let notify = |frag: &str| {
        Input::Request(DialogRequest::Notify {
            refer_event: true,
            id: Some("2".into()),
            frag: crate::driver::parse_sipfrag(frag),
        })
    };
    assert_eq!(h.feed(notify("SIP/2.0 180 Ringing")), [Action::Reply(200)]);
    assert_eq!(
        h.feed(notify("SIP/2.0 200 OK")),
        [Action::Reply(200), Action::TransferOutcome(Ok(200))]
    );
    // The peer normally hangs up now; it does not, so we do.
    assert_eq!(h.wake(), [Action::SendBye(Ending::Transferred)]);
    assert_eq!(h.elapsed(), 3 * SECOND);
}

#[test]
fn a_notify_for_another_refer_or_event_is_refused() {
    let mut h = Harness::inbound().answered_inbound();
    let notify = |event: bool, id: &str| {
        Input::Request(DialogRequest::Notify {
            refer_event: event,
            id: Some(id.into()),
            frag: Some((200, "OK".into())),
        })
    };
    assert_eq!(h.feed(notify(true, "2")), [Action::Reply(481)], "no REFER");
    h.feed(to_the_desk(false));
    h.feed(Input::Sent(Sent::Refer, 2));
    assert_eq!(h.feed(notify(false, "2")), [Action::Reply(489)]);
    assert_eq!(h.feed(notify(true, "7")), [Action::Reply(481)]);
    assert_eq!(h.machine.phase(), Phase::Transferring);
}

#[test]
fn a_call_that_ends_mid_transfer_reports_the_transfer_done() {
    let mut h = Harness::inbound().answered_inbound();
    h.feed(to_the_desk(false));
    assert_eq!(
        h.feed(Input::Request(DialogRequest::Bye)),
        [
            Action::Reply(200),
            Action::TransferOutcome(Ok(0)),
            Action::Finish(Ending::CallerHungUp)
        ]
    );
}

#[test]
fn a_transfer_before_the_answer_or_to_a_refused_address_is_refused() {
    let mut h = Harness::inbound();
    h.feed(ring(180));
    let order = |refused| Input::Transfer {
        refer_to: "sip:desk@169.254.169.254".into(),
        timeout: 30 * SECOND,
        dialtone: false,
        refused,
    };
    assert_eq!(
        h.feed(order(None)),
        [Action::RefuseTransfer(TransferError::NotEstablished)]
    );
    let mut h = h.answered_inbound_from_ringing();
    let metadata: IpAddr = [169, 254, 169, 254].into();
    assert_eq!(
        h.feed(order(Some(metadata))),
        [Action::RefuseTransfer(TransferError::DestinationRefused(
            metadata
        ))]
    );
}

impl Harness {
    /// Answers a call that already rings.
    fn answered_inbound_from_ringing(mut self) -> Harness {
        assert_eq!(
            self.feed(Input::Rung { audience: true }),
            [Action::Answer(None)]
        );
        self.feed(Input::Answered);
        self.feed(Input::Ack);
        self
    }
}

#[test]
fn an_ack_that_never_comes_hangs_up_an_answered_call() {
    let mut h = Harness::inbound();
    h.feed(ring(180));
    h.feed(Input::Rung { audience: true });
    h.feed(Input::Answered);
    assert_eq!(
        h.feed(Input::AckTimeout),
        [Action::SendBye(Ending::AckTimeout)]
    );
}

#[test]
fn a_room_that_disappears_while_ringing_refuses_the_call() {
    let mut h = Harness::ringing();
    assert_eq!(
        h.feed(Input::RoomGone(LeaveReason::RoomDeleted)),
        [
            Action::Refuse(Refusal::RemovedWhileRinging),
            Action::Finish(Ending::Removed(LeaveReason::RoomDeleted))
        ]
    );
}

#[test]
fn a_room_that_cannot_take_the_caller_refuses_the_call_as_unavailable() {
    let mut h = Harness::inbound();
    h.feed(ring(180));
    let full = switchboard_rooms::RoomError::RoomFull {
        room: "lobby".into(),
        limit: 2,
    };
    let actions = h.feed(Input::Failed(Ending::JoinFailed(full.clone())));
    assert_eq!(
        actions,
        [
            Action::Refuse(Refusal::RoomUnavailable(full.to_string())),
            Action::Finish(Ending::JoinFailed(full))
        ]
    );
}

#[test]
fn a_bot_connection_is_waited_for_and_a_cancel_meanwhile_ends_the_call() {
    let mut h = Harness::inbound();
    let with_bot = Input::Routed(Route::Ring {
        ringing_timeout: 180 * SECOND,
        timeout_status: None,
        max_duration: None,
        bot: true,
    });
    assert_eq!(h.feed(with_bot.clone()), [Action::ConnectBot]);
    assert_eq!(h.machine.phase(), Phase::ConnectingBot);
    assert_eq!(h.feed(Input::AudienceReady), [], "not before it rings");
    assert_eq!(
        h.feed(Input::Cancelled),
        [Action::Finish(Ending::Cancelled)]
    );
    let mut h = Harness::inbound();
    h.feed(with_bot);
    assert_eq!(h.feed(Input::BotConnected), [Action::Ring]);
    assert_eq!(h.machine.phase(), Phase::Ringing);
}

#[test]
fn a_call_ended_by_a_participant_while_ringing_is_declined() {
    let mut h = Harness::ringing();
    let actions = h.feed(Input::EndCall {
        from: "agent".into(),
    });
    assert_eq!(actions[0], Action::Refuse(Refusal::EndedWhileRinging));
}

#[test]
fn nothing_moves_an_ended_call() {
    let mut h = Harness::inbound();
    h.feed(Input::Failed(Ending::Refused(Refusal::NoMatchingTrunk)));
    assert_eq!(h.machine.phase(), Phase::Ended);
    for input in [
        Input::Cancelled,
        Input::Request(DialogRequest::Bye),
        Input::MediaTimeout,
        Input::Answered,
    ] {
        assert_eq!(h.feed(input), []);
    }
    assert_eq!(h.machine.poll_timeout(), None);
}

#[test]
fn the_bot_closing_its_stream_hangs_up_unless_configured_not_to() {
    let closed = switchboard_streams::StreamEnd::BotClosed {
        code: Some(1000),
        reason: String::new(),
    };
    let mut h = Harness::inbound().answered_inbound();
    assert_eq!(
        h.feed(Input::BotEnded(closed.clone())),
        [Action::SendBye(Ending::StreamEnded(closed.clone()))]
    );
    let mut h = Harness::inbound();
    h.machine.settings.bot_close_hangs_up = false;
    let mut h = h.answered_inbound();
    assert_eq!(h.feed(Input::BotEnded(closed)), []);
    assert_eq!(h.machine.phase(), Phase::Answered);
}

#[test]
fn a_422_to_our_invite_asks_again_with_the_callees_min_se_and_fails_without_one() {
    let mut h = Harness::outbound();
    h.feed(dial(30, false));
    let too_small = |min_se: Option<u64>| Input::Response {
        to: Sent::Invite,
        status: 422,
        reason: "Session Interval Too Small".into(),
        min_se: min_se.map(Duration::from_secs),
        session: None,
    };
    assert_eq!(
        h.feed(too_small(Some(3600))),
        [Action::SendInvite {
            session_expires: 3600 * SECOND,
            authenticate: false
        }]
    );
    // A Min-SE no higher than what we asked already cannot help.
    let refused = DialError::Sip {
        status: 422,
        reason: "Session Interval Too Small".into(),
    };
    assert_eq!(
        h.feed(too_small(Some(3600))),
        [
            Action::DialResult(Err(refused.clone())),
            Action::Finish(Ending::DialFailed(refused))
        ]
    );
}

#[test]
fn the_callees_200_sets_the_session_timer_it_names() {
    let mut h = Harness::outbound();
    h.feed(dial(30, false));
    let ok = Input::Response {
        to: Sent::Invite,
        status: 200,
        reason: "OK".into(),
        min_se: None,
        session: Some(SessionTimer {
            interval: 1800 * SECOND,
            we_refresh: true,
        }),
    };
    assert_eq!(h.feed(ok), [Action::Confirm]);
    h.feed(Input::Answered);
    assert_eq!(h.wake(), [Action::SendRefresh(1800 * SECOND)]);
    assert_eq!(h.elapsed(), 900 * SECOND);
}

#[test]
fn an_invite_nobody_answers_fails_with_the_transports_cause() {
    let mut h = Harness::outbound();
    h.feed(dial(30, false));
    let failed = DialError::Transport(RequestFailure::Timeout);
    assert_eq!(
        h.feed(Input::NoResponse(Sent::Invite, RequestFailure::Timeout)),
        [
            Action::DialResult(Err(failed.clone())),
            Action::Finish(Ending::DialFailed(failed))
        ]
    );
}

#[test]
fn a_reinvite_we_refuse_does_not_refresh_the_session() {
    let mut h = Harness::inbound_with(Some("1800;refresher=uac"), true).answered_inbound();
    h.advance(1000 * SECOND);
    let offer = Input::Request(DialogRequest::Offer {
        session_expires: SessionExpires::parse("1800;refresher=uac"),
        peer_supports: true,
    });
    // Answered 488 (no codec in common, say): no PeerRefreshed follows.
    assert_eq!(h.feed(offer).len(), 1);
    assert_eq!(h.wake(), [Action::SendBye(Ending::SessionExpired)]);
    assert_eq!(
        h.elapsed(),
        1768 * SECOND,
        "the answer's clock, not the re-INVITE's"
    );
}
