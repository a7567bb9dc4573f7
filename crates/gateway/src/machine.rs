//! A call's decisions without I/O: the state machine every call, inbound or
//! outbound, runs on.
//!
//! [`CallMachine::handle`] takes what happened (a SIP request or response of
//! the call's dialog, a room or media event, an API order, the answer of an
//! action it asked for) at an instant the caller gives;
//! [`CallMachine::poll_action`] says what to do about it and
//! [`CallMachine::poll_timeout`] when to wake it next. It holds no socket,
//! no clock and no task: the call's task (`crate::call`) carries the actions
//! out, and the unit tests below drive it in virtual time, a 24-hour call
//! in microseconds.
//!
//! Each [`Phase`] says once what a BYE, a CANCEL, a transfer order, a room
//! event or a timer means in it; nothing else in the gateway decides that.

use crate::call::{Ending, MediaFault};
use crate::deadlines::{Deadlines, Timer};
use crate::outbound::DialError;
use crate::refusal::Refusal;
use crate::session_timer::{refresher_for_request, Refresher, SessionExpires, SessionTimer};
use crate::status::CallStatus;
use crate::{GatewayConfig, TransferError};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use switchboard_media::dtmf::DtmfDigit;
use switchboard_rooms::LeaveReason;
use switchboard_sip::RequestFailure;

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Inbound: the INVITE is being matched, authenticated and dispatched.
    /// Outbound: the trunk's address is being resolved.
    Routing,
    /// Inbound: the rule's voice bot is being connected before ringing.
    ConnectingBot,
    /// Inbound: the caller waits in the room; 180 sent (and repeated).
    Ringing,
    /// Inbound, PIN rule: answered, the caller types the PIN.
    CollectingPin,
    /// Inbound, PIN rule: the wrong-PIN prompt plays before the BYE.
    RefusingPin,
    /// Outbound: our INVITE waits for its final response.
    Dialing,
    /// Outbound: we CANCELled and wait for the INVITE's final response.
    Cancelling,
    /// Answered.
    Answered,
    /// Answered, and our REFER is under way.
    Transferring,
    /// Our BYE waits for its answer.
    HangingUp,
    /// Over: everything is released.
    Ended,
}

/// The gateway settings the machine decides with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The first gap between repeated 180s (doubling up to a minute).
    pub ringing_interval: Duration,
    /// Answer once the caller is in the room, not when someone can be heard.
    pub answer_immediately: bool,
    /// How long a caller has to enter a PIN.
    pub pin_timeout: Duration,
    /// Most PIN digits before `#`.
    pub max_pin_digits: usize,
    /// The longest call, unless its trunk or rule says otherwise.
    pub max_duration: Duration,
    /// Our Min-SE: shorter session intervals from the peer are not taken.
    pub min_session_expires: Duration,
    /// The bot closing its stream hangs the call up.
    pub bot_close_hangs_up: bool,
}

impl Settings {
    /// The settings of `config`.
    pub(crate) fn of(config: &GatewayConfig) -> Settings {
        Settings {
            ringing_interval: config.ringing_interval,
            answer_immediately: config.answer == crate::AnswerMode::Immediate,
            pin_timeout: config.pin_timeout,
            max_pin_digits: config.max_pin_digits,
            max_duration: config.max_call_duration,
            min_session_expires: config.min_session_expires,
            bot_close_hangs_up: config.streams.bot_close_hangs_up,
        }
    }
}

/// The longest gap between repeated 180s (RFC 3261 §13.3.1.1: at least one
/// a minute keeps proxies from giving up on the transaction).
const MAX_RINGING_GAP: Duration = Duration::from_secs(60);

/// How long our CANCEL (or BYE) may go without an answer before the call
/// counts as over anyway.
const GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// How long a caller who entered a wrong PIN may take to hear it said
/// before the BYE, whatever the prompt (it takes about 1.5 s).
const WRONG_PIN_PROMPT_MAX: Duration = Duration::from_secs(3);

/// How many digest challenges an outbound INVITE answers: a trunk that keeps
/// challenging good credentials is refusing them.
const MAX_CHALLENGES: u32 = 3;

/// After a transfer's final NOTIFY, the peer normally hangs up; if not, we
/// do after this.
const BYE_AFTER_TRANSFER: Duration = Duration::from_secs(1);

/// What routing decided for the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// Inbound: the caller joins the room as `ringing` and is answered when
    /// someone can hear them (after the rule's bot is connected, if any).
    Ring {
        /// How long the call may ring.
        ringing_timeout: Duration,
        /// The rule's status for a ringing timeout (4xx–6xx), if it names one.
        timeout_status: Option<u16>,
        /// The rule's or trunk's maximum call duration.
        max_duration: Option<Duration>,
        /// The rule streams the call to a voice bot, connected first.
        bot: bool,
    },
    /// Inbound: answer and ask for a PIN.
    Pin,
    /// Outbound: send the INVITE.
    Dial {
        /// How long the callee may ring before we CANCEL.
        ringing_timeout: Duration,
        /// The call's maximum duration.
        max_duration: Option<Duration>,
        /// The session interval we ask for.
        session_expires: Duration,
        /// Digits to send once answered (`automation`).
        digits: bool,
    },
}

/// A request of the far end within the call's dialog, as the machine needs
/// to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialogRequest {
    /// The far end hangs up.
    Bye,
    /// SIP INFO, with the DTMF digit it carries, if any.
    Info(Option<DtmfDigit>),
    /// A re-INVITE or UPDATE: media and session-timer changes.
    Offer {
        /// Its Session-Expires.
        session_expires: Option<SessionExpires>,
        /// Whether it says it supports timers.
        peer_supports: bool,
    },
    /// A NOTIFY, about our REFER when its event is `refer`.
    Notify {
        /// The Event header is `refer`.
        refer_event: bool,
        /// The event's `id` parameter.
        id: Option<String>,
        /// The status line of its sipfrag body, if it parses.
        frag: Option<(u16, String)>,
    },
    /// OPTIONS: a keep-alive.
    Options,
    /// Anything else.
    Other,
}

/// A request the call sent and may get a response to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The outbound call's INVITE (the latest; earlier ones are forgotten).
    Invite,
    /// Our session refresh re-INVITE.
    Refresh,
    /// Our REFER.
    Refer,
    /// Our BYE.
    Bye,
}

/// The session timer's headers for a 2xx: the interval, who refreshes,
/// whether the peer said it supports timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionAnswer {
    /// The interval.
    pub interval: Duration,
    /// Who refreshes, in the request's terms.
    pub refresher: Refresher,
    /// The peer supports timers (`Require: timer` goes back).
    pub peer_supports: bool,
}

/// What happened to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// Routing decided.
    Routed(Route),
    /// Something the call needs failed, or routing refused the call (the
    /// final response sent, for [`Ending::Refused`] and
    /// [`Ending::Challenged`] from routing).
    Failed(Ending),
    /// The rule's voice bot is connected.
    BotConnected,
    /// The caller is in the room and hears the ringing (inbound); someone
    /// who can be heard is there already.
    Rung {
        /// Someone who can be heard is in the room.
        audience: bool,
    },
    /// Someone who can be heard is in the room (inbound).
    AudienceReady,
    /// Our 200 is out (inbound), or the callee's 200 is confirmed
    /// (outbound).
    Answered,
    /// The callee's 200 is ACKed but its SDP answer is unusable.
    AnswerUnusable(DialError),
    /// The caller cancelled its INVITE (the SIP core answered 487).
    Cancelled,
    /// The ACK for our 2xx came.
    Ack,
    /// Our 2xx was never acknowledged.
    AckTimeout,
    /// A request of the far end in the dialog.
    Request(DialogRequest),
    /// Our 2xx to the peer's re-INVITE or UPDATE is out, with these
    /// session-timer terms: the session is refreshed.
    PeerRefreshed(SessionAnswer),
    /// A request the machine asked for is out, with its CSeq.
    Sent(Sent, u32),
    /// A request the machine asked for could not be sent (no dialog).
    NotSent(Sent),
    /// A response to a request the call sent.
    Response {
        /// Which request.
        to: Sent,
        /// The status.
        status: u16,
        /// Its reason phrase.
        reason: String,
        /// Its Min-SE (a 422's).
        min_se: Option<Duration>,
        /// The session timer a 2xx agrees to.
        session: Option<SessionTimer>,
    },
    /// A request the call sent got no final response, and why.
    NoResponse(Sent, RequestFailure),
    /// The API orders a transfer (TransferSIPParticipant).
    Transfer {
        /// The REFER target.
        refer_to: String,
        /// How long to wait for the outcome.
        timeout: Duration,
        /// Play ringback to the caller while transferring.
        dialtone: bool,
        /// The target names an address in a refused network.
        refused: Option<IpAddr>,
    },
    /// The participant left the room, or the room is gone.
    RoomGone(LeaveReason),
    /// A room participant asked to end the call (`lk.sip.EndCall`).
    EndCall {
        /// Its identity.
        from: String,
    },
    /// A room participant sent DTMF to the phone.
    RoomDtmf(String),
    /// The phone sent a DTMF digit (RFC 4733).
    Dtmf(DtmfDigit),
    /// The media engine sent the digits asked for after the answer.
    DigitsSent,
    /// The digits after the answer could not be queued.
    DigitsNotSent,
    /// No RTP for the media timeout.
    MediaTimeout,
    /// The media worker stopped.
    MediaStopped,
    /// The voice bot's stream ended, and how.
    BotEnded(switchboard_streams::StreamEnd),
    /// The PIN let the caller in; the new rule's maximum duration.
    PinAccepted(Option<Duration>),
    /// The PIN let nobody in.
    PinRefused,
    /// The prompt queued for the caller has played out.
    PromptPlayed,
}

/// What the call's task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Connect the rule's voice bot (report [`Input::BotConnected`] or a
    /// failure).
    ConnectBot,
    /// Join the room as `ringing`, start the bot's stream, send 180 (and
    /// 183 with ringback when configured); report [`Input::Rung`].
    Ring,
    /// Send the 180 again.
    RingAgain,
    /// Answer the INVITE with 200 and the SDP answer; report
    /// [`Input::Answered`].
    Answer(Option<SessionAnswer>),
    /// Refuse the INVITE.
    Refuse(Refusal),
    /// The call is answered: stop any ringback and connect the room.
    Bridge,
    /// Play the PIN prompt.
    PromptPin,
    /// Dispatch again with this PIN; report [`Input::PinAccepted`] (in the
    /// room) or [`Input::PinRefused`].
    CheckPin(String),
    /// Play the wrong-PIN prompt; report [`Input::PromptPlayed`].
    PromptWrongPin,
    /// Send the outbound INVITE (again); report [`Input::Sent`].
    SendInvite {
        /// The session interval to ask for.
        session_expires: Duration,
        /// Answer the last response's digest challenge.
        authenticate: bool,
    },
    /// Take the 18x's SDP as early media.
    EarlyMedia,
    /// Confirm the callee's 200: dialog, ACK, media; report
    /// [`Input::Answered`].
    Confirm,
    /// Tell whoever waits for the outbound call how dialling ended.
    DialResult(Result<(), DialError>),
    /// CANCEL the outbound INVITE.
    Cancel,
    /// Send the digits asked for after the answer.
    SendDigits,
    /// Set `sip.callStatus`.
    SetStatus(CallStatus),
    /// Answer the far end's request with this status.
    Reply(u16),
    /// Answer the far end's re-INVITE or UPDATE: its SDP, and the session
    /// timer's headers when a timer runs; report [`Input::PeerRefreshed`]
    /// when the answer is a 2xx.
    Renegotiate(Option<SessionAnswer>),
    /// ACK our refresh's 2xx and take its SDP.
    AcceptRefresh,
    /// Refresh the session with a re-INVITE; report [`Input::Sent`].
    SendRefresh(Duration),
    /// Send the ordered REFER; report [`Input::Sent`].
    SendRefer,
    /// The order waits for the transfer already under way to the same target.
    JoinTransfer,
    /// Refuse the transfer order at hand.
    RefuseTransfer(TransferError),
    /// The transfer is over: tell everyone who waits (`Ok(status)`: the
    /// NOTIFY's status, 0 when the call ended first).
    TransferOutcome(Result<u16, TransferError>),
    /// Mute the room and play ringback to the caller (true), or undo it.
    TransferTone(bool),
    /// A digit from the phone to the room.
    DtmfToRoom(DtmfDigit),
    /// Digits from the room to the phone.
    DtmfToPhone(String),
    /// Hang up with BYE; report [`Input::Sent`].
    SendBye(Ending),
    /// Release everything: the call is over.
    Finish(Ending),
}

/// The transfer under way.
#[derive(Debug, Clone)]
struct Transfer {
    refer_to: String,
    dialtone: bool,
    /// The REFER's CSeq (the NOTIFY's `id`), once sent.
    cseq: Option<u32>,
}

/// The outbound call's dialling state.
#[derive(Debug, Clone, Default)]
struct Dialling {
    ringing_timeout: Duration,
    session_expires: Duration,
    challenges: u32,
    digits: bool,
    /// Why we cancelled: the ending once the INVITE is over.
    cancelled: Option<DialError>,
}

/// One call's state machine.
#[derive(Debug)]
pub(crate) struct CallMachine {
    settings: Settings,
    outbound: bool,
    phase: Phase,
    deadlines: Deadlines,
    actions: VecDeque<Action>,
    /// When the call started (its INVITE came or went).
    started: Instant,
    answered_at: Option<Instant>,
    /// The INVITE has its final response (inbound).
    final_sent: bool,
    /// Our 200 is asked for (inbound).
    answering: bool,
    /// Whoever waits for the outbound call has been told how dialling went.
    dial_reported: bool,
    acked: bool,
    /// The digits after the answer are still being sent.
    automating: bool,
    max_duration: Option<Duration>,
    timeout_status: Option<u16>,
    ringing_gap: Duration,
    /// The caller's Session-Expires and timer support (inbound INVITE).
    invite_session: (Option<SessionExpires>, bool),
    session_timer: Option<SessionTimer>,
    refreshing: bool,
    transfer: Option<Transfer>,
    pin: String,
    dialling: Dialling,
    /// How the call ends, once decided.
    ending: Option<Ending>,
}

impl CallMachine {
    /// An inbound call whose INVITE came at `now`, with its Session-Expires
    /// and whether it supports timers.
    pub(crate) fn inbound(
        settings: Settings,
        now: Instant,
        session_expires: Option<SessionExpires>,
        peer_supports: bool,
    ) -> CallMachine {
        let mut machine = CallMachine::new(settings, now, false);
        machine.invite_session = (session_expires, peer_supports);
        machine
    }

    /// An outbound call placed at `now`.
    pub(crate) fn outbound(settings: Settings, now: Instant) -> CallMachine {
        let mut machine = CallMachine::new(settings, now, true);
        machine.final_sent = true;
        machine
    }

    fn new(settings: Settings, now: Instant, outbound: bool) -> CallMachine {
        CallMachine {
            ringing_gap: settings.ringing_interval,
            settings,
            outbound,
            phase: Phase::Routing,
            deadlines: Deadlines::default(),
            actions: VecDeque::new(),
            started: now,
            answered_at: None,
            final_sent: false,
            answering: false,
            dial_reported: false,
            acked: false,
            automating: false,
            max_duration: None,
            timeout_status: None,
            invite_session: (None, false),
            session_timer: None,
            refreshing: false,
            transfer: None,
            pin: String::new(),
            dialling: Dialling::default(),
            ending: None,
        }
    }

    /// Where the call stands.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether we placed the call (CreateSIPParticipant).
    pub(crate) fn is_outbound(&self) -> bool {
        self.outbound
    }

    /// When the call started: its INVITE came, or we began to place it.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// When the call was answered.
    pub(crate) fn answered_at(&self) -> Option<Instant> {
        self.answered_at
    }

    /// The session timer agreed, if any.
    #[cfg(test)]
    pub(crate) fn session_timer(&self) -> Option<SessionTimer> {
        self.session_timer
    }

    /// The next thing to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`CallMachine::handle_timeout`] must be called next; `None`:
    /// nothing is timed.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Ended {
            return None;
        }
        self.deadlines.next()
    }

    /// The timers due at `now` fire.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.deadlines.expired(now) {
            if self.phase == Phase::Ended {
                return;
            }
            self.timer(now, timer);
        }
    }

    fn act(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    fn answered(&self) -> bool {
        self.answered_at.is_some()
    }

    /// Takes what happened at `now`.
    pub(crate) fn handle(&mut self, now: Instant, input: Input) {
        match (self.phase, input) {
            (Phase::Ended, _) => {}
            (_, Input::Failed(ending)) => self.end(now, ending),
            (Phase::Routing, Input::Routed(route)) => self.routed(now, route),
            (_, Input::Transfer { .. })
                if !matches!(self.phase, Phase::Answered | Phase::Transferring) =>
            {
                self.act(Action::RefuseTransfer(TransferError::NotEstablished));
            }
            (
                _,
                Input::Transfer {
                    refer_to,
                    timeout,
                    dialtone,
                    refused,
                },
            ) => self.transfer_ordered(now, refer_to, timeout, dialtone, refused),
            (Phase::HangingUp, input) => self.hanging_up(input),
            (Phase::Dialing | Phase::Cancelling, input) => self.dialing(now, input),
            (_, Input::Cancelled) if !self.answered() && !self.outbound => {
                self.final_sent = true;
                self.end(now, Ending::Cancelled);
            }
            (Phase::ConnectingBot, Input::BotConnected) => {
                self.phase = Phase::Ringing;
                self.act(Action::Ring);
            }
            (Phase::Ringing | Phase::ConnectingBot, input) => self.ringing(now, input),
            (_, input) => self.in_call(now, input),
        }
    }

    fn routed(&mut self, now: Instant, route: Route) {
        match route {
            Route::Ring {
                ringing_timeout,
                timeout_status,
                max_duration,
                bot,
            } => {
                self.timeout_status = timeout_status;
                self.max_duration = max_duration;
                // The ringing timeout counts from the INVITE, the repeats
                // from the first 180.
                self.deadlines
                    .set(Timer::RingingTimeout, self.started, ringing_timeout);
                if bot {
                    self.phase = Phase::ConnectingBot;
                    self.act(Action::ConnectBot);
                } else {
                    self.phase = Phase::Ringing;
                    self.act(Action::Ring);
                }
            }
            Route::Pin => {
                self.phase = Phase::CollectingPin;
                let session = self.inbound_session_answer();
                self.act(Action::Answer(session));
            }
            Route::Dial {
                ringing_timeout,
                max_duration,
                session_expires,
                digits,
            } => {
                self.phase = Phase::Dialing;
                self.max_duration = max_duration;
                self.dialling = Dialling {
                    ringing_timeout,
                    session_expires,
                    digits,
                    ..Dialling::default()
                };
                self.deadlines
                    .set(Timer::RingingTimeout, now, ringing_timeout);
                self.act(Action::SendInvite {
                    session_expires,
                    authenticate: false,
                });
            }
        }
    }

    /// RFC 4028 as the UAS: the caller's Session-Expires is kept (it is at
    /// least our Min-SE: routing refused shorter ones with 422); the
    /// refresher is the caller's choice, else the caller when it supports
    /// timers, else us.
    fn inbound_session_answer(&mut self) -> Option<SessionAnswer> {
        let (asked, peer_supports) = self.invite_session;
        let asked = asked?;
        let refresher = refresher_for_request(Some(asked), peer_supports);
        self.session_timer = Some(SessionTimer {
            interval: asked.interval,
            we_refresh: refresher == Refresher::Uas,
        });
        Some(SessionAnswer {
            interval: asked.interval,
            refresher,
            peer_supports,
        })
    }

    // ----- inbound, before the answer --------------------------------------

    fn ringing(&mut self, now: Instant, input: Input) {
        match input {
            Input::Rung { audience } => {
                self.deadlines.set(Timer::RingAgain, now, self.ringing_gap);
                if self.settings.answer_immediately || audience {
                    self.answer_now();
                }
            }
            Input::AudienceReady if self.phase == Phase::Ringing => self.answer_now(),
            Input::Answered => self.answer_sent(now),
            Input::RoomGone(reason) => self.end(now, Ending::Removed(reason)),
            Input::EndCall { from } => self.end(now, Ending::EndedByParticipant(from)),
            _ => {}
        }
    }

    fn answer_now(&mut self) {
        if self.answering {
            return;
        }
        self.answering = true;
        self.deadlines.clear(Timer::RingAgain);
        self.deadlines.clear(Timer::RingingTimeout);
        let session = self.inbound_session_answer();
        self.act(Action::Answer(session));
    }

    /// Our 200 is out (or, outbound, the callee's is confirmed).
    fn answer_sent(&mut self, now: Instant) {
        self.answered_at = Some(now);
        self.final_sent = true;
        if self.phase == Phase::CollectingPin {
            self.act(Action::PromptPin);
            self.deadlines
                .set(Timer::PinTimeout, now, self.settings.pin_timeout);
            return;
        }
        self.act(Action::Bridge);
        self.start_call(now);
    }

    /// The answered call's timers start.
    fn start_call(&mut self, now: Instant) {
        self.phase = Phase::Answered;
        for before_the_answer in [Timer::RingingTimeout, Timer::RingAgain, Timer::CancelGiveUp] {
            self.deadlines.clear(before_the_answer);
        }
        let answered = self.answered_at.unwrap_or(now);
        let max = self.max_duration.unwrap_or(self.settings.max_duration);
        self.deadlines.set(Timer::MaxDuration, answered, max);
        self.deadlines.arm_session(self.session_timer, now);
    }

    // ----- outbound, before the answer -------------------------------------

    fn dialing(&mut self, now: Instant, input: Input) {
        match input {
            Input::Sent(Sent::Invite, _) => {}
            Input::Response {
                to: Sent::Invite,
                status,
                reason,
                min_se,
                session,
            } => self.invite_response(now, status, reason, min_se, session),
            Input::NoResponse(Sent::Invite, failure) => {
                let error = self
                    .dialling
                    .cancelled
                    .clone()
                    .unwrap_or(DialError::Transport(failure));
                self.end_dial(now, error);
            }
            Input::AnswerUnusable(error) => {
                // The callee is answered (and ACKed): the BYE says why not.
                self.answered_at = Some(now);
                self.end(now, Ending::DialFailed(error));
            }
            Input::Answered => {
                self.answered_at = Some(now);
                self.acked = true;
                match self.dialling.cancelled.clone() {
                    // The answer crossed our CANCEL: hang up at once.
                    Some(error) => self.end(now, Ending::DialFailed(error)),
                    None => {
                        self.report_dial(Ok(()));
                        self.start_call(now);
                        if self.dialling.digits {
                            self.automating = true;
                            self.act(Action::SendDigits);
                            self.act(Action::SetStatus(CallStatus::Automation));
                        } else {
                            self.act(Action::SetStatus(CallStatus::Active));
                        }
                    }
                }
            }
            Input::RoomGone(_) => self.cancel(now, DialError::Abandoned),
            Input::EndCall { .. } => self.cancel(now, DialError::Abandoned),
            _ => {}
        }
    }

    fn invite_response(
        &mut self,
        now: Instant,
        status: u16,
        reason: String,
        min_se: Option<Duration>,
        session: Option<SessionTimer>,
    ) {
        let cancelled = self.phase == Phase::Cancelling;
        match status {
            0..=100 => {}
            101..=199 => {
                if !cancelled {
                    self.act(Action::SetStatus(CallStatus::Ringing));
                    self.act(Action::EarlyMedia);
                }
            }
            200..=299 => {
                // RFC 4028 as the UAC: the 2xx names the refresher; none
                // means the peer runs no timer.
                self.session_timer = session;
                self.act(Action::Confirm);
            }
            422 if !cancelled => match min_se.filter(|m| *m > self.dialling.session_expires) {
                // RFC 4028 §7.4: ask again with the peer's Min-SE.
                Some(min_se) => {
                    self.dialling.session_expires = min_se;
                    self.act(Action::SendInvite {
                        session_expires: min_se,
                        authenticate: false,
                    });
                }
                None => self.end_dial(now, DialError::Sip { status, reason }),
            },
            401 | 407 if !cancelled && self.dialling.challenges < MAX_CHALLENGES => {
                self.dialling.challenges += 1;
                self.act(Action::SendInvite {
                    session_expires: self.dialling.session_expires,
                    authenticate: true,
                });
            }
            status => {
                let error = match self.dialling.cancelled.clone() {
                    Some(error) => error,
                    None => DialError::Sip { status, reason },
                };
                self.end_dial(now, error);
            }
        }
    }

    /// CANCELs the INVITE; the call ends with `error` once it is over.
    fn cancel(&mut self, now: Instant, error: DialError) {
        if self.phase == Phase::Cancelling {
            return;
        }
        self.phase = Phase::Cancelling;
        self.deadlines.clear(Timer::RingingTimeout);
        self.deadlines.set(Timer::CancelGiveUp, now, GIVE_UP_AFTER);
        if error == DialError::Abandoned {
            // Whoever waits hears at once; the INVITE still gets its end.
            self.report_dial(Err(error.clone()));
        }
        self.dialling.cancelled = Some(error);
        self.act(Action::Cancel);
    }

    fn end_dial(&mut self, now: Instant, error: DialError) {
        self.end(now, Ending::DialFailed(error));
    }

    /// Tells whoever waits for the outbound call how dialling went, once.
    fn report_dial(&mut self, result: Result<(), DialError>) {
        if self.outbound && !self.dial_reported {
            self.dial_reported = true;
            self.act(Action::DialResult(result));
        }
    }

    // ----- answered ----------------------------------------------------------

    fn in_call(&mut self, now: Instant, input: Input) {
        match input {
            Input::Answered => self.answer_sent(now),
            Input::Ack if !self.acked => {
                self.acked = true;
                let bridged = matches!(self.phase, Phase::Answered | Phase::Transferring);
                if bridged && !self.automating {
                    self.act(Action::SetStatus(CallStatus::Active));
                }
            }
            Input::AckTimeout => self.end(now, Ending::AckTimeout),
            Input::Request(request) => self.dialog_request(now, request),
            Input::PeerRefreshed(answer) => self.peer_refreshed(now, answer),
            Input::Sent(sent, cseq) => self.sent(sent, cseq),
            Input::NotSent(Sent::Refer) => self.transfer_over(Err(TransferError::NotEstablished)),
            Input::NotSent(Sent::Refresh) => self.refreshing = false,
            Input::Response {
                to,
                status,
                reason,
                min_se,
                session,
            } => self.response(now, to, status, reason, min_se, session),
            Input::NoResponse(Sent::Refresh, _) => {
                // RFC 4028 §10: a refresh that times out ends the session.
                self.end(now, Ending::SessionExpired);
            }
            Input::NoResponse(Sent::Refer, _) => self.transfer_over(Err(TransferError::Failed {
                status: 408,
                reason: "Request Timeout".into(),
            })),
            Input::RoomGone(reason) => self.end(now, Ending::Removed(reason)),
            Input::EndCall { from } => self.end(now, Ending::EndedByParticipant(from)),
            Input::RoomDtmf(digits) => self.act(Action::DtmfToPhone(digits)),
            Input::Dtmf(digit) => self.digit(digit),
            Input::DigitsSent | Input::DigitsNotSent if self.automating => {
                self.automating = false;
                self.act(Action::SetStatus(CallStatus::Active));
            }
            Input::MediaTimeout => self.end(now, Ending::MediaTimeout),
            Input::MediaStopped => self.end(now, Ending::MediaFailure(MediaFault::WorkerStopped)),
            Input::BotEnded(end) if self.settings.bot_close_hangs_up => {
                self.end(now, Ending::StreamEnded(end))
            }
            Input::PinAccepted(max_duration) if self.phase == Phase::CollectingPin => {
                self.deadlines.clear(Timer::PinTimeout);
                self.max_duration = max_duration;
                self.act(Action::Bridge);
                self.start_call(now);
            }
            Input::PinRefused if self.phase == Phase::CollectingPin => {
                self.deadlines.clear(Timer::PinTimeout);
                self.phase = Phase::RefusingPin;
                self.deadlines
                    .set(Timer::WrongPinPrompt, now, WRONG_PIN_PROMPT_MAX);
                self.act(Action::PromptWrongPin);
            }
            Input::PromptPlayed if self.phase == Phase::RefusingPin => {
                self.end(now, Ending::WrongPin)
            }
            _ => {}
        }
    }

    fn digit(&mut self, digit: DtmfDigit) {
        if self.phase != Phase::CollectingPin {
            self.act(Action::DtmfToRoom(digit));
            return;
        }
        match digit.as_char() {
            '#' => {}
            c => self.pin.push(c),
        }
        if digit.as_char() == '#' || self.pin.len() > self.settings.max_pin_digits {
            self.deadlines.clear(Timer::PinTimeout);
            let pin = std::mem::take(&mut self.pin);
            self.act(Action::CheckPin(pin));
        }
    }

    fn dialog_request(&mut self, now: Instant, request: DialogRequest) {
        match request {
            DialogRequest::Bye => {
                self.act(Action::Reply(200));
                self.end(now, Ending::CallerHungUp);
            }
            DialogRequest::Info(digit) => {
                self.act(Action::Reply(200));
                if let Some(digit) = digit {
                    self.digit(digit);
                }
            }
            DialogRequest::Offer {
                session_expires,
                peer_supports,
            } => {
                let session = self.session_answer(session_expires, peer_supports);
                self.act(Action::Renegotiate(session));
            }
            DialogRequest::Notify {
                refer_event,
                id,
                frag,
            } => {
                // The NOTIFY is answered before the outcome goes out.
                let at = self.actions.len();
                let status = self.transfer_notify(now, refer_event, id, frag);
                self.actions.insert(at, Action::Reply(status));
            }
            DialogRequest::Options => self.act(Action::Reply(200)),
            DialogRequest::Other => self.act(Action::Reply(501)),
        }
    }

    /// What a 2xx to the peer's re-INVITE or UPDATE says of the session
    /// timer: its Session-Expires (if not below our Min-SE, else ours),
    /// the refresher it names. Only a 2xx refreshes the session (RFC 4028
    /// §10), so nothing changes until [`Input::PeerRefreshed`].
    fn session_answer(
        &self,
        asked: Option<SessionExpires>,
        peer_supports: bool,
    ) -> Option<SessionAnswer> {
        let timer = self.session_timer?;
        let interval = asked
            .map(|se| se.interval)
            .filter(|interval| *interval >= self.settings.min_session_expires)
            .unwrap_or(timer.interval);
        Some(SessionAnswer {
            interval,
            // In this request the peer is the UAC: refresher=uac means them.
            refresher: refresher_for_request(asked, peer_supports),
            peer_supports,
        })
    }

    /// The peer's refresh was answered 2xx: the session runs on from now.
    fn peer_refreshed(&mut self, now: Instant, answer: SessionAnswer) {
        if self.session_timer.is_none() {
            return;
        }
        let timer = SessionTimer {
            interval: answer.interval,
            we_refresh: answer.refresher == Refresher::Uas,
        };
        self.session_timer = Some(timer);
        self.deadlines.arm_session(Some(timer), now);
    }

    fn sent(&mut self, sent: Sent, cseq: u32) {
        match sent {
            Sent::Refer => {
                if let Some(transfer) = &mut self.transfer {
                    transfer.cseq = Some(cseq);
                }
            }
            Sent::Refresh => self.refreshing = true,
            Sent::Invite | Sent::Bye => {}
        }
    }

    fn response(
        &mut self,
        now: Instant,
        to: Sent,
        status: u16,
        reason: String,
        min_se: Option<Duration>,
        session: Option<SessionTimer>,
    ) {
        if status < 200 {
            return;
        }
        match to {
            Sent::Refresh => self.refresh_answered(now, status, min_se, session),
            Sent::Refer if status >= 300 => {
                self.transfer_over(Err(TransferError::Failed { status, reason }))
            }
            // A retransmitted 2xx of the INVITE: the dialog's ACK is resent
            // by the SIP core.
            Sent::Refer | Sent::Invite | Sent::Bye => {}
        }
    }

    /// The answer to our refresh: a 2xx restarts the clock (with the
    /// interval it agrees); 422 asks again with the peer's Min-SE; 408 or
    /// 481 means the session is gone (RFC 4028 §10); other failures try
    /// again at the next refresh.
    fn refresh_answered(
        &mut self,
        now: Instant,
        status: u16,
        min_se: Option<Duration>,
        agreed: Option<SessionTimer>,
    ) {
        self.refreshing = false;
        match status {
            200..=299 => {
                self.act(Action::AcceptRefresh);
                if let (Some(timer), Some(agreed)) = (self.session_timer.as_mut(), agreed) {
                    *timer = agreed;
                }
                self.deadlines.arm_session(self.session_timer, now);
            }
            422 => {
                if let (Some(timer), Some(min_se)) = (self.session_timer.as_mut(), min_se) {
                    timer.interval = min_se;
                }
                self.refresh(now);
            }
            408 | 481 => self.end(now, Ending::SessionExpired),
            _ => {}
        }
    }

    /// Refreshes the session (we are the refresher), and again in half an
    /// interval if this one gets no final answer.
    fn refresh(&mut self, now: Instant) {
        let Some(timer) = self.session_timer else {
            return;
        };
        self.deadlines
            .set(Timer::SessionRefresh, now, timer.interval / 2);
        if !self.refreshing {
            self.act(Action::SendRefresh(timer.interval));
        }
    }

    // ----- transfers ----------------------------------------------------------

    fn transfer_ordered(
        &mut self,
        now: Instant,
        refer_to: String,
        timeout: Duration,
        dialtone: bool,
        refused: Option<IpAddr>,
    ) {
        if let Some(ip) = refused {
            return self.act(Action::RefuseTransfer(TransferError::DestinationRefused(
                ip,
            )));
        }
        if let Some(pending) = &self.transfer {
            let action = if pending.refer_to == refer_to {
                // The same transfer asked twice: both wait for one outcome.
                Action::JoinTransfer
            } else {
                Action::RefuseTransfer(TransferError::AlreadyTransferring)
            };
            return self.act(action);
        }
        self.phase = Phase::Transferring;
        self.transfer = Some(Transfer {
            refer_to,
            dialtone,
            cseq: None,
        });
        self.deadlines.set(Timer::Transfer, now, timeout);
        self.act(Action::SendRefer);
        if dialtone {
            self.act(Action::TransferTone(true));
        }
    }

    /// A NOTIFY about our REFER: its sipfrag carries the target's status.
    /// Returns the status to answer it with.
    fn transfer_notify(
        &mut self,
        now: Instant,
        refer_event: bool,
        id: Option<String>,
        frag: Option<(u16, String)>,
    ) -> u16 {
        if !refer_event {
            return 489;
        }
        let Some(pending) = &self.transfer else {
            return 481;
        };
        let ours = match (&id, pending.cseq) {
            (Some(id), Some(cseq)) => id.trim() == cseq.to_string(),
            _ => true,
        };
        if !ours {
            return 481;
        }
        let Some((status, reason)) = frag else {
            return 400;
        };
        match status {
            100..=199 => {}
            200..=299 => {
                self.transfer_over(Ok(status));
                self.deadlines
                    .set(Timer::ByeAfterTransfer, now, BYE_AFTER_TRANSFER);
            }
            _ => self.transfer_over(Err(TransferError::Failed { status, reason })),
        }
        200
    }

    /// Reports the transfer's outcome and, after a failure, gives the
    /// caller the room's audio back.
    fn transfer_over(&mut self, outcome: Result<u16, TransferError>) {
        let Some(pending) = self.transfer.take() else {
            return;
        };
        if self.phase == Phase::Transferring {
            self.phase = Phase::Answered;
        }
        self.deadlines.clear(Timer::Transfer);
        if pending.dialtone && outcome.is_err() {
            self.act(Action::TransferTone(false));
        }
        self.act(Action::TransferOutcome(outcome));
    }

    // ----- timers -------------------------------------------------------------

    fn timer(&mut self, now: Instant, timer: Timer) {
        match (self.phase, timer) {
            (Phase::Ringing | Phase::ConnectingBot, Timer::RingingTimeout) => {
                let status = self.timeout_status.filter(|s| (400..700).contains(s));
                let refusal = Refusal::RingingTimeout {
                    status: status.unwrap_or(480),
                };
                self.final_sent = true;
                self.act(Action::Refuse(refusal.clone()));
                self.end(now, Ending::Refused(refusal));
            }
            (Phase::Ringing, Timer::RingAgain) => {
                self.act(Action::RingAgain);
                self.ringing_gap = self.ringing_gap.saturating_mul(2).min(MAX_RINGING_GAP);
                self.deadlines.set(Timer::RingAgain, now, self.ringing_gap);
            }
            (Phase::Dialing, Timer::RingingTimeout) => {
                let timeout = self.dialling.ringing_timeout;
                self.cancel(now, DialError::RingingTimeout(timeout));
            }
            (Phase::Cancelling, Timer::CancelGiveUp) => {
                let error = self
                    .dialling
                    .cancelled
                    .clone()
                    .unwrap_or(DialError::Abandoned);
                self.end_dial(now, error);
            }
            (Phase::CollectingPin, Timer::PinTimeout) => self.end(now, Ending::PinTimeout),
            (Phase::RefusingPin, Timer::WrongPinPrompt) => self.end(now, Ending::WrongPin),
            (Phase::HangingUp, Timer::ByeGiveUp) => self.finish(),
            (_, Timer::MaxDuration) => self.end(now, Ending::MaxDuration),
            (_, Timer::SessionExpiry) => self.end(now, Ending::SessionExpired),
            (_, Timer::SessionRefresh) => self.refresh(now),
            (_, Timer::ByeAfterTransfer) => self.end(now, Ending::Transferred),
            (_, Timer::Transfer) => self.transfer_over(Err(TransferError::Timeout)),
            _ => {}
        }
    }

    // ----- the end ------------------------------------------------------------

    /// The call ends: a final response the INVITE still owes, BYE when it
    /// was answered and the far end did not hang up, then the release.
    fn end(&mut self, now: Instant, ending: Ending) {
        if matches!(self.phase, Phase::HangingUp | Phase::Ended) {
            return;
        }
        if self.transfer.is_some() {
            // Ended before the final NOTIFY: LiveKit reports that as a
            // successful transfer (the caller left for the target).
            self.transfer_over(Ok(0));
        }
        if !self.outbound && !self.final_sent {
            self.final_sent = true;
            if let Some(refusal) = refusal_for(&ending) {
                self.act(Action::Refuse(refusal));
            }
        }
        self.report_dial(Err(match &ending {
            Ending::DialFailed(error) => error.clone(),
            Ending::JoinFailed(error) => DialError::Room(error.clone()),
            _ => DialError::Abandoned,
        }));
        self.deadlines = Deadlines::default();
        let needs_bye =
            self.answered() && !matches!(ending, Ending::CallerHungUp | Ending::Cancelled);
        self.ending = Some(ending.clone());
        if needs_bye {
            self.phase = Phase::HangingUp;
            self.deadlines.set(Timer::ByeGiveUp, now, GIVE_UP_AFTER);
            self.act(Action::SendBye(ending));
        } else {
            self.finish();
        }
    }

    fn hanging_up(&mut self, input: Input) {
        match input {
            // A BYE crossing ours: answered; ours still ends the call.
            Input::Request(DialogRequest::Bye) => self.act(Action::Reply(200)),
            Input::Request(_) => self.act(Action::Reply(481)),
            Input::NotSent(Sent::Bye) | Input::NoResponse(Sent::Bye, _) => self.finish(),
            Input::Response {
                to: Sent::Bye,
                status,
                ..
            } if status >= 200 => self.finish(),
            _ => {}
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Ended;
        self.deadlines = Deadlines::default();
        let ending = self.ending.take().unwrap_or(Ending::CallerHungUp);
        self.act(Action::Finish(ending));
    }
}

/// The final response an unanswered inbound call owes for `ending`; `None`
/// when it has had one (routing's refusals, a challenge, the core's 487).
fn refusal_for(ending: &Ending) -> Option<Refusal> {
    match ending {
        Ending::Refused(_) | Ending::Challenged | Ending::Cancelled => None,
        Ending::Removed(_) => Some(Refusal::RemovedWhileRinging),
        Ending::EndedByParticipant(_) => Some(Refusal::EndedWhileRinging),
        Ending::JoinFailed(e) => Some(Refusal::RoomUnavailable(e.to_string())),
        _ => None,
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
