//! The call's task: one loop that waits for whatever comes next (a SIP
//! event routed to the call, a room or media event, the bot's stream
//! ending, a piece of work finishing, the machine's next timer), hands it
//! to the call's [`CallMachine`] and carries out the actions it asks for.
//! What those events mean is the machine's business; how an action is done
//! is this module's (the actions every call has) and the leg's (inbound or
//! outbound).

use crate::call::{Call, Ending};
use crate::info_dtmf::parse_info_dtmf;
use crate::machine::{Action, DialogRequest, Input, Phase, Route, Sent};
use crate::session_timer::{min_se, supports_timer, timer_from_answer, SessionExpires};
use crate::Signal;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;
use switchboard_media::session::MediaEvent;
use switchboard_rooms::{LeaveReason, Participant, RoomEvent};
use switchboard_sip::message::{HeaderName, Method, Request};
use switchboard_sip::Incoming;
use switchboard_streams::{BotSocket, StreamEnd};
use tracing::{debug, info};

/// A piece of work the call waits for while it goes on hearing SIP, room
/// and media events.
/// (Wrapped so the call, borrowed across awaits, stays `Sync`: the future
/// is only ever polled through `&mut`.)
pub(crate) type Work = sync_wrapper::SyncWrapper<Pin<Box<dyn Future<Output = WorkDone> + Send>>>;

/// Work to wait for.
pub(crate) fn work(future: impl Future<Output = WorkDone> + Send + 'static) -> Work {
    sync_wrapper::SyncWrapper::new(Box::pin(future))
}

/// How a piece of work ended.
pub(crate) enum WorkDone {
    /// The rule's voice bot answered (or not).
    BotConnected(Result<Box<BotSocket>, String>),
    /// The prompt queued for the caller has played out.
    PromptPlayed,
}

/// What one kind of call (inbound, outbound) does that the other does not.
pub(crate) trait Leg: Send {
    /// The call.
    fn call(&mut self) -> &mut Call;

    /// Gets the call routed: admission, trunk, credentials and dispatch
    /// rule for an inbound call (the refusal sent when it fails), the
    /// trunk's address and our offer for an outbound one.
    fn route(&mut self) -> impl Future<Output = Result<Route, Ending>> + Send;

    /// Carries out `action`, or hands it to [`Call::execute`]; returns what
    /// came of it for the machine.
    fn execute(&mut self, action: Action) -> impl Future<Output = Option<Input>> + Send;

    /// What a finished piece of work means for the machine.
    fn work_done(&mut self, done: WorkDone) -> Option<Input>;
}

/// What woke the call's task: something the call itself turns into the
/// machine's input, or a piece of the leg's work finishing. (A value of one
/// loop turn on the stack; boxing the large variant would allocate per
/// event.)
#[allow(clippy::large_enum_variant)]
enum Wake {
    Call(CallWake),
    Work(WorkDone),
}

/// What woke the call's task, for the call.
enum CallWake {
    Signal(Option<Signal>),
    Room(Option<RoomEvent>),
    Media(Option<MediaEvent>),
    StreamEnded(StreamEnd),
    Timer,
}

/// Runs a call from its first step to its release.
pub(crate) async fn drive<L: Leg>(mut leg: L) {
    let first = match leg.route().await {
        Ok(route) => Input::Routed(route),
        Err(ending) => Input::Failed(ending),
    };
    step(&mut leg, first).await;
    while leg.call().machine.phase() != Phase::Ended {
        let call = leg.call();
        let wake_at = call.machine.poll_timeout();
        let wake = tokio::select! {
            signal = call.signals.recv() => Wake::Call(CallWake::Signal(signal)),
            event = next_room_event(&mut call.participant) => Wake::Call(CallWake::Room(event)),
            event = next_media_event(&mut call.media_events) => Wake::Call(CallWake::Media(event)),
            end = next_stream_end(&mut call.stream) => Wake::Call(CallWake::StreamEnded(end)),
            _ = sleep_until(wake_at) => Wake::Call(CallWake::Timer),
            done = next_work(&mut call.work) => Wake::Work(done),
        };
        let input = match wake {
            Wake::Work(done) => {
                leg.call().work = None;
                leg.work_done(done)
            }
            Wake::Call(wake) => leg.call().input_of(wake).await,
        };
        match input {
            Some(input) => step(&mut leg, input).await,
            None => run_actions(&mut leg).await,
        }
    }
}

/// Feeds `input` to the machine and carries out what it asks, feeding
/// back what each action reports, until it asks for nothing more.
async fn step<L: Leg>(leg: &mut L, input: Input) {
    leg.call().machine.handle(Instant::now(), input);
    run_actions(leg).await;
}

async fn run_actions<L: Leg>(leg: &mut L) {
    while let Some(action) = leg.call().machine.poll_action() {
        if let Some(input) = leg.execute(action).await {
            leg.call().machine.handle(Instant::now(), input);
        }
    }
}

async fn next_room_event(participant: &mut Option<Participant>) -> Option<RoomEvent> {
    match participant {
        Some(p) => p.next_event().await,
        None => std::future::pending().await,
    }
}

async fn next_media_event(
    events: &mut Option<tokio::sync::mpsc::UnboundedReceiver<MediaEvent>>,
) -> Option<MediaEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_stream_end(stream: &mut Option<switchboard_streams::StreamHandle>) -> StreamEnd {
    match stream {
        Some(handle) => handle.ended().await,
        None => std::future::pending().await,
    }
}

async fn next_work(work: &mut Option<Work>) -> WorkDone {
    match work {
        Some(work) => work.get_mut().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// What a request in the dialog is, for the machine.
fn classify(request: &Request) -> DialogRequest {
    let headers = &request.headers;
    match request.method {
        Method::Bye => DialogRequest::Bye,
        Method::Info => {
            let content_type = headers.get(&HeaderName::ContentType).unwrap_or_default();
            DialogRequest::Info(parse_info_dtmf(content_type, &request.body))
        }
        Method::Invite | Method::Update => DialogRequest::Offer {
            session_expires: SessionExpires::of(headers),
            peer_supports: supports_timer(headers),
        },
        Method::Notify => {
            let event = headers
                .get(&HeaderName::Event)
                .unwrap_or_default()
                .to_ascii_lowercase();
            let mut parts = event.split(';').map(str::trim);
            let refer_event = parts.next() == Some("refer");
            let id = parts
                .find_map(|p| p.strip_prefix("id="))
                .map(|id| id.trim().to_string());
            let body = String::from_utf8_lossy(&request.body);
            DialogRequest::Notify {
                refer_event,
                id,
                frag: parse_sipfrag(&body),
            }
        }
        Method::Options => DialogRequest::Options,
        _ => DialogRequest::Other,
    }
}

/// The status line of a `message/sipfrag` body (RFC 3420): `SIP/2.0 200 OK`.
pub(crate) fn parse_sipfrag(body: &str) -> Option<(u16, String)> {
    let line = body.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code.trim().parse().ok()?;
    (100..700)
        .contains(&code)
        .then(|| (code, reason.trim().to_string()))
}

impl Call {
    /// What woke the task means this for the machine (`None`: nothing
    /// more; the machine's own timers are handed to it here).
    async fn input_of(&mut self, wake: CallWake) -> Option<Input> {
        match wake {
            CallWake::Signal(Some(signal)) => self.signal_input(signal).await,
            // The gateway dropped the call's routes: it is gone.
            CallWake::Signal(None) => Some(Input::Failed(Ending::CallerHungUp)),
            CallWake::Room(event) => self.room_input(event),
            CallWake::Media(event) => self.media_input(event),
            CallWake::StreamEnded(end) => {
                self.stream = None;
                info!(call_id = %self.call_id, end = ?end, "media stream ended");
                Some(Input::BotEnded(end))
            }
            CallWake::Timer => {
                self.machine.handle_timeout(Instant::now());
                None
            }
        }
    }

    async fn signal_input(&mut self, signal: Signal) -> Option<Input> {
        match signal {
            Signal::Cancelled => Some(Input::Cancelled),
            Signal::AckTimeout => Some(Input::AckTimeout),
            Signal::Ack(body) => {
                if self.offer_in_2xx {
                    self.offer_in_2xx = false;
                    self.answer_in_ack(&body).await;
                }
                Some(Input::Ack)
            }
            Signal::Request(incoming) => Some(self.request_input(incoming)),
            Signal::Response(txn, response, flow) => {
                let to = self.sent_as(txn)?;
                if response.status >= 200 {
                    self.forget_sent(txn);
                }
                // Only a 422 names a Min-SE and only a 2xx agrees a timer.
                let status = response.status;
                let headers = &response.headers;
                let input = Input::Response {
                    to,
                    status,
                    reason: response.reason.clone(),
                    min_se: (status == 422).then(|| min_se(headers)).flatten(),
                    session: (200..300)
                        .contains(&status)
                        .then(|| timer_from_answer(headers))
                        .flatten(),
                };
                self.response = Some((response, flow));
                Some(input)
            }
            Signal::RequestFailed(txn, reason) => {
                let to = self.sent_as(txn)?;
                self.forget_sent(txn);
                info!(call_id = %self.call_id, request = ?to, ?reason, "request got no answer");
                Some(Input::NoResponse(to, reason))
            }
            Signal::Transfer(order) => {
                let refused = self.refused_target(&order.refer_to);
                let input = Input::Transfer {
                    refer_to: order.refer_to.clone(),
                    timeout: order.timeout,
                    dialtone: order.play_dialtone,
                    refused,
                };
                self.order = Some(order);
                Some(input)
            }
        }
    }

    fn request_input(&mut self, incoming: Incoming) -> Input {
        let request = classify(&incoming.request);
        if request == DialogRequest::Bye {
            if let Some(reason) = incoming.request.headers.get(&HeaderName::Reason) {
                info!(call_id = %self.call_id, reason, "caller's BYE reason");
            }
        }
        self.request = Some(incoming);
        Input::Request(request)
    }

    fn room_input(&mut self, event: Option<RoomEvent>) -> Option<Input> {
        let gone = || {
            self.participant
                .as_ref()
                .and_then(Participant::disconnected)
        };
        match event {
            None => Some(Input::RoomGone(gone().unwrap_or(LeaveReason::RoomDeleted))),
            Some(RoomEvent::Disconnected { reason }) => Some(Input::RoomGone(reason)),
            Some(RoomEvent::Dtmf { digit, .. }) => Some(Input::RoomDtmf(digit)),
            Some(RoomEvent::Rpc {
                from,
                id,
                method,
                payload,
            }) => {
                let bye_headers = self.answer_rpc(&from, &id, &method, &payload)?;
                self.bye_headers = bye_headers;
                Some(Input::EndCall { from })
            }
            Some(RoomEvent::ParticipantLeft { .. }) if gone().is_some() => {
                gone().map(Input::RoomGone)
            }
            Some(_) => self.audience_ready().then_some(Input::AudienceReady),
        }
    }

    /// Someone who can be heard is in the caller's room (asked only while
    /// it rings: it looks at the room).
    pub(crate) fn audience_ready(&self) -> bool {
        self.machine.phase() == Phase::Ringing
            && self
                .participant
                .as_ref()
                .is_some_and(Participant::others_publish_audio)
    }

    fn media_input(&mut self, event: Option<MediaEvent>) -> Option<Input> {
        match event {
            Some(MediaEvent::Dtmf(digit)) => Some(Input::Dtmf(digit)),
            Some(MediaEvent::DtmfSent) => Some(Input::DigitsSent),
            Some(MediaEvent::MediaTimeout { silent_for }) => {
                info!(call_id = %self.call_id, silent_for = ?silent_for, "no RTP from the caller");
                Some(Input::MediaTimeout)
            }
            Some(other) => {
                debug!(call_id = %self.call_id, event = ?other, "media event");
                None
            }
            None => Some(Input::MediaStopped),
        }
    }

    /// Which of the call's requests `txn` is.
    fn sent_as(&self, txn: switchboard_sip::ClientTxnId) -> Option<Sent> {
        self.sent.iter().find(|(t, _)| *t == txn).map(|(_, s)| *s)
    }

    fn forget_sent(&mut self, txn: switchboard_sip::ClientTxnId) {
        self.sent.retain(|(t, _)| *t != txn);
    }

    /// Remembers a request the call sent as the one of its kind: a late
    /// response to an earlier one (an INVITE answered again with
    /// credentials) is not for the machine.
    pub(crate) fn note_sent(&mut self, txn: switchboard_sip::ClientTxnId, what: Sent) {
        self.sent.retain(|(_, s)| *s != what);
        self.sent.push((txn, what));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfrag_status_lines_parse_and_garbage_does_not() {
        assert_eq!(
            parse_sipfrag("SIP/2.0 200 OK\r\n"),
            Some((200, "OK".into()))
        );
        assert_eq!(
            parse_sipfrag("SIP/2.0 486 Busy Here\r\nVia: x\r\n"),
            Some((486, "Busy Here".into()))
        );
        assert_eq!(parse_sipfrag("SIP/2.0 100"), Some((100, String::new())));
        assert_eq!(parse_sipfrag("SIP/2.0 99 Low"), None);
        assert_eq!(parse_sipfrag("HTTP/1.1 200 OK"), None);
        assert_eq!(parse_sipfrag(""), None);
    }
}
