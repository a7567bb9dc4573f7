//! How a call carries out the actions every call has, inbound or outbound:
//! answering the far end's requests, re-negotiating media, refreshing the
//! session, transferring, DTMF both ways, the BYE and the release. Whether
//! and when to do them is the machine's decision (`crate::machine`).

use crate::call::{sip_status, Call, Ending};
use crate::machine::{Action, Input, Sent, SessionAnswer};
use crate::records::now_ns;
use crate::session_timer::{answer_session_timer, Refresher, SessionExpires};
use crate::{answer, TransferDone, TransferError};
use std::time::Duration;
use switchboard_media::sdp::Direction;
use switchboard_media::tones::ToneKind;
use switchboard_routing::livekit_protocol::{SipStatus, SipTransferInfo, SipTransferStatus};
use switchboard_sip::message::{HeaderName, Host, Method, Request, ResponseSpec, Uri};
use switchboard_sip::Destination;
use tracing::{debug, info, warn};

impl Call {
    /// Carries out an action every call has; returns what came of it.
    pub(crate) async fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::SetStatus(status) => self.set_status(status),
            Action::Reply(status) => self.reply(ResponseSpec::new(status)),
            Action::Renegotiate(session) => {
                let spec = self.renegotiate(session).await;
                let refreshed = (200..300).contains(&spec.status);
                self.reply(spec);
                if let Some(s) = session.filter(|_| refreshed) {
                    debug!(call_id = %self.call_id, interval = ?s.interval, refresher = ?s.refresher, "session refreshed by the peer");
                    return Some(Input::PeerRefreshed(s));
                }
            }
            Action::AcceptRefresh => self.accept_refresh().await,
            Action::SendRefresh(interval) => return Some(self.send_refresh(interval)),
            Action::SendRefer => return Some(self.send_refer()),
            Action::JoinTransfer => self.join_transfer(),
            Action::RefuseTransfer(error) => {
                if let Some(order) = self.order.take() {
                    // Whoever ordered it may have stopped waiting.
                    let _ = order.reply.send(Err(error));
                }
            }
            Action::TransferOutcome(outcome) => self.transfer_over(outcome),
            Action::TransferTone(on) => {
                self.bridge.lock().room_muted = on;
                if let Some(media) = &self.media {
                    media.play_tone(on.then_some(ToneKind::Ringback));
                }
            }
            Action::DtmfToRoom(digit) => self.dtmf_to_room(digit),
            Action::DtmfToPhone(digits) => self.dtmf_to_phone(&digits).await,
            Action::Bridge => {
                if let Some(media) = &self.media {
                    media.play_tone(None);
                }
                if let Some(p) = &self.participant {
                    self.bridge.set_port(Some(p.audio()));
                }
            }
            Action::SendBye(ending) => return Some(self.send_bye(&ending).await),
            Action::Finish(ending) => self.finish(ending).await,
            other => debug!(call_id = %self.call_id, action = ?other, "not an action of this call"),
        }
        None
    }

    /// Answers the far end's request the machine decided on.
    fn reply(&mut self, spec: ResponseSpec) {
        if let Some(incoming) = self.request.take() {
            answer(&self.shared.sip, &incoming, spec);
        }
    }

    /// Sends the dialog's next request of `method`, shaped by `build`, with
    /// its responses routed back to this call as `what`. The route is in
    /// place before the request leaves (`Call::send_routed`).
    fn send_in_dialog(
        &mut self,
        method: Method,
        what: Sent,
        build: impl FnOnce(&mut Request),
    ) -> Input {
        let Some((mut request, destination)) = self.dialog_request(method) else {
            return Input::NotSent(what);
        };
        let cseq = request.cseq().map(|c| c.seq).unwrap_or_default();
        build(&mut request);
        let txn = self.send_routed(request, destination);
        self.note_sent(txn, what);
        Input::Sent(what, cseq)
    }

    /// A re-INVITE or UPDATE: hold, resume, new address or codec; the
    /// session timer's headers when one runs.
    async fn renegotiate(&mut self, session: Option<SessionAnswer>) -> ResponseSpec {
        let Some(incoming) = &self.request else {
            return ResponseSpec::new(500);
        };
        let with_session = |spec: ResponseSpec| match session {
            Some(s) => answer_session_timer(spec, s.interval, s.refresher, s.peer_supports),
            None => spec,
        };
        let body = incoming.request.body.clone();
        if body.is_empty() {
            if incoming.request.method == Method::Update {
                // A session refresh without media changes.
                return with_session(ResponseSpec::new(200));
            }
            // An offerless re-INVITE: our offer goes in the 200, the answer
            // comes in the ACK (RFC 3261 §14.2).
            let offer = match self
                .negotiator
                .as_mut()
                .map(|n| n.create_offer(Direction::SendRecv))
            {
                Some(Ok(offer)) => offer,
                _ => return ResponseSpec::new(500),
            };
            self.offer_in_2xx = true;
            let spec = ResponseSpec::new(200).header(HeaderName::Contact, self.contact());
            return with_session(spec).body("application/sdp", offer);
        }
        let offer = String::from_utf8_lossy(&body).into_owned();
        let Some(negotiator) = self.negotiator.as_mut() else {
            return ResponseSpec::new(500);
        };
        match negotiator.answer_offer(&offer, Direction::SendRecv) {
            Ok((answer_sdp, negotiated)) => {
                let direction = negotiated.direction;
                if let Some(media) = &self.media {
                    if let Err(e) = media.update(negotiated).await {
                        warn!(call_id = %self.call_id, error = %e, "media update failed");
                        return ResponseSpec::new(500).reason("Media Update Failed");
                    }
                }
                info!(call_id = %self.call_id, direction = ?direction, "media renegotiated");
                let spec = ResponseSpec::new(200).header(HeaderName::Contact, self.contact());
                with_session(spec).body("application/sdp", answer_sdp)
            }
            Err(e) => {
                info!(call_id = %self.call_id, error = %e, "re-INVITE refused");
                ResponseSpec::new(e.sip_status())
            }
        }
    }

    /// The answer in the ACK to the offer we put in a 2xx.
    pub(crate) async fn answer_in_ack(&mut self, body: &[u8]) {
        if body.is_empty() {
            warn!(call_id = %self.call_id, "the ACK carried no answer to our offer; media unchanged");
            return;
        }
        let answer = String::from_utf8_lossy(body).into_owned();
        self.take_answer(&answer, "the answer in the ACK").await;
    }

    /// Applies an SDP answer to our offer to the running media.
    async fn take_answer(&mut self, answer: &str, what: &str) {
        let Some(negotiator) = self.negotiator.as_mut() else {
            return;
        };
        match negotiator.accept_answer(answer) {
            Ok(negotiated) => {
                let direction = negotiated.direction;
                if let Some(media) = &self.media {
                    if let Err(e) = media.update(negotiated).await {
                        warn!(call_id = %self.call_id, error = %e, what, "media update failed; media unchanged");
                        return;
                    }
                }
                info!(call_id = %self.call_id, direction = ?direction, "media renegotiated");
            }
            Err(e) => warn!(call_id = %self.call_id, error = %e, what, "SDP answer unusable"),
        }
    }

    // ----- session timers (RFC 4028) -----------------------------------------

    /// Refreshes the session with a re-INVITE carrying our current offer.
    fn send_refresh(&mut self, interval: Duration) -> Input {
        let offer = match self
            .negotiator
            .as_mut()
            .map(|n| n.create_offer(Direction::SendRecv))
        {
            Some(Ok(offer)) => offer,
            Some(Err(e)) => {
                warn!(call_id = %self.call_id, error = %e, "no offer for the session refresh");
                return Input::NotSent(Sent::Refresh);
            }
            None => return Input::NotSent(Sent::Refresh),
        };
        let contact = self.contact();
        let sent = self.send_in_dialog(Method::Invite, Sent::Refresh, |request| {
            let headers = &mut request.headers;
            headers.push(HeaderName::Contact, contact);
            headers.push(HeaderName::Supported, "timer");
            let expires = SessionExpires {
                interval,
                refresher: Some(Refresher::Uac),
            };
            headers.push(HeaderName::SessionExpires, expires.to_header());
            headers.push(HeaderName::ContentType, "application/sdp");
            request.body = bytes::Bytes::from(offer);
        });
        if let Input::Sent(_, cseq) = sent {
            self.refresh_cseq = Some(cseq);
            debug!(call_id = %self.call_id, "session refresh sent");
        }
        sent
    }

    /// Our refresh's 2xx: ACK it and take its SDP.
    async fn accept_refresh(&mut self) {
        let Some((response, flow)) = self.response.take() else {
            return;
        };
        let sip = self.shared.sip.clone();
        if let (Some(id), Some(cseq)) = (&self.dialog, self.refresh_cseq.take()) {
            if let Some(ack) = sip.with_dialog(id, |d| d.request(Method::Ack, Some(cseq))) {
                sip.send_ack(ack, Destination::Flow(flow));
            }
        }
        if !response.body.is_empty() {
            let answer = String::from_utf8_lossy(&response.body).into_owned();
            self.take_answer(&answer, "the refresh's answer").await;
        }
        debug!(call_id = %self.call_id, status = response.status, "our session refresh succeeded");
    }

    // ----- transfers (RFC 3515) --------------------------------------------------

    /// Whether a REFER target names an address in a refused network.
    pub(crate) fn refused_target(&self, refer_to: &str) -> Option<std::net::IpAddr> {
        let target = refer_to.trim_start_matches('<').trim_end_matches('>');
        match Uri::parse(target) {
            Ok(Uri::Sip(uri)) => match uri.host {
                Host::Ip(ip) if self.shared.config.refuses(ip) => Some(ip),
                _ => None,
            },
            _ => None,
        }
    }

    /// Sends the ordered REFER; whoever ordered it waits for the outcome.
    fn send_refer(&mut self) -> Input {
        let Some(order) = self.order.take() else {
            return Input::NotSent(Sent::Refer);
        };
        let mut rng = switchboard_sip::fill_random;
        let transfer_id =
            switchboard_routing::new_id(switchboard_routing::IdPrefix::Transfer, &mut rng);
        self.transfer = Some((transfer_id.clone(), vec![order.reply]));
        let contact = self.contact();
        let mapped = self.mapped_attribute_headers();
        let refer_to = order.refer_to.clone();
        let sent = self.send_in_dialog(Method::Refer, Sent::Refer, |request| {
            let headers = &mut request.headers;
            headers.push(HeaderName::ReferTo, refer_to);
            headers.push(HeaderName::Contact, contact.clone());
            headers.push(HeaderName::parse("Referred-By"), contact);
            for (name, value) in mapped.into_iter().chain(order.headers) {
                headers.push(HeaderName::parse(&name), value);
            }
        });
        if let Input::Sent(..) = sent {
            info!(call_id = %self.call_id, transfer_id = %transfer_id, refer_to = %order.refer_to, "REFER sent");
            let (initiated, call_id) = (now_ns(), self.call_id.clone());
            self.note(|record| {
                record.transfer = Some(SipTransferInfo {
                    transfer_id,
                    call_id,
                    transfer_to: order.refer_to,
                    transfer_initiated_at_ns: initiated,
                    transfer_status: SipTransferStatus::StsTransferOngoing as i32,
                    ..SipTransferInfo::default()
                });
            });
        }
        sent
    }

    /// The same transfer ordered again: the order waits for its outcome.
    fn join_transfer(&mut self) {
        let Some(order) = self.order.take() else {
            return;
        };
        match &mut self.transfer {
            Some((_, replies)) => replies.push(order.reply),
            None => {
                let _ = order.reply.send(Err(TransferError::NotEstablished));
            }
        }
    }

    /// Reports a transfer's outcome to the record, the metrics and whoever
    /// waits.
    fn transfer_over(&mut self, outcome: Result<u16, TransferError>) {
        let Some((transfer_id, replies)) = self.transfer.take() else {
            return;
        };
        match &outcome {
            Ok(status) => info!(call_id = %self.call_id, status, "transfer succeeded"),
            Err(e) => info!(call_id = %self.call_id, error = %e, "transfer failed"),
        }
        let completed = now_ns();
        self.note(|record| {
            let Some(transfer) = &mut record.transfer else {
                return;
            };
            transfer.transfer_completed_at_ns = completed;
            match &outcome {
                Ok(status) => {
                    transfer.transfer_status = SipTransferStatus::StsTransferSuccessful as i32;
                    if *status != 0 {
                        transfer.transfer_status_code = Some(sip_status(*status));
                    }
                }
                Err(e) => {
                    transfer.transfer_status = SipTransferStatus::StsTransferFailed as i32;
                    transfer.error = e.to_string();
                    if let TransferError::Failed { status, reason } = e {
                        transfer.transfer_status_code = Some(SipStatus {
                            code: i32::from(*status),
                            status: reason.clone(),
                        });
                    }
                }
            }
        });
        let label = if outcome.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        self.shared
            .metrics
            .transfers
            .with_label_values(&[label])
            .inc();
        let outcome = outcome.map(|status| TransferDone {
            transfer_id,
            status,
        });
        for reply in replies {
            let _ = reply.send(outcome.clone());
        }
    }

    // ----- the end ---------------------------------------------------------------

    /// Ends the dialog with BYE (with the trunk's attributes_to_headers, the
    /// headers a participant asked for, and a Reason). The media stops
    /// first: no RTP follows our BYE while it waits for its answer.
    async fn send_bye(&mut self, ending: &Ending) -> Input {
        self.stop_media().await;
        let reason = crate::refusal::reason_header(ending.bye_cause(), &ending.text());
        let extra: Vec<(String, String)> = self
            .mapped_attribute_headers()
            .into_iter()
            .chain(std::mem::take(&mut self.bye_headers))
            .collect();
        let sent = self.send_in_dialog(Method::Bye, Sent::Bye, |request| {
            request.headers.push(HeaderName::Reason, reason);
            for (header, value) in extra {
                request.headers.push(HeaderName::parse(&header), value);
            }
        });
        info!(call_id = %self.call_id, reason = %ending.text(), "BYE sent");
        sent
    }
}
