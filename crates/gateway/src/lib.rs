//! Call control for switchboard: the B2BUA between SIP legs and rooms.
//!
//! The gateway is the SIP stack's transaction user. The SIP core has already
//! answered everything that needs no policy (OPTIONS, CANCEL, malformed and
//! out-of-dialog requests, drain); what reaches the gateway is a new INVITE
//! or a request in a dialog it created. Routing is not wired in yet, so
//! every new INVITE is refused with 404 and a Reason header that says no
//! trunk is configured: an honest final answer, never silence.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use switchboard_sip::message::{HeaderName, Method, ResponseSpec};
use switchboard_sip::transport::{EventReceiver, SipHandle};
use switchboard_sip::{Event, Incoming};
use tracing::{debug, info, warn};

/// Gateway settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Most calls up at once; further INVITEs get 503 with Retry-After.
    pub max_active_calls: usize,
    /// Retry-After seconds on a 503 for the call limit.
    pub retry_after_secs: u32,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            max_active_calls: 1000,
            retry_after_secs: 30,
        }
    }
}

/// Calls in progress, shared with whoever needs to know (drain, metrics).
#[derive(Debug, Default)]
pub struct CallRegistry {
    active: AtomicUsize,
}

impl CallRegistry {
    /// Calls in progress.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// Why an inbound call was refused: the status, its text, and the words an
/// operator reads in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No inbound trunk can take the call (none is configured yet).
    NoTrunkConfigured,
    /// The call limit is reached.
    AtCapacity,
}

impl Refusal {
    /// The SIP status.
    pub fn status(self) -> u16 {
        match self {
            Refusal::NoTrunkConfigured => 404,
            Refusal::AtCapacity => 503,
        }
    }

    /// The text of the Reason header (RFC 3326) and the log line.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::NoTrunkConfigured => "No trunk configured",
            Refusal::AtCapacity => "Call limit reached",
        }
    }
}

/// The transaction user of the SIP stack.
pub struct Gateway {
    sip: SipHandle,
    config: GatewayConfig,
    calls: Arc<CallRegistry>,
}

impl Gateway {
    /// A gateway answering through `sip`.
    pub fn new(sip: SipHandle, config: GatewayConfig) -> Gateway {
        Gateway {
            sip,
            config,
            calls: Arc::new(CallRegistry::default()),
        }
    }

    /// The call registry (for drain and metrics).
    pub fn calls(&self) -> Arc<CallRegistry> {
        self.calls.clone()
    }

    /// Handles the stack's events until it stops.
    pub async fn run(self, mut events: EventReceiver) {
        while let Some(event) = events.recv().await {
            self.handle(event);
        }
    }

    fn handle(&self, event: Event) {
        match event {
            Event::Request(incoming) => {
                if incoming.request.method == Method::Invite && incoming.dialog.is_none() {
                    self.on_new_invite(incoming);
                } else {
                    // The gateway creates no dialogs yet, so the core cannot
                    // have matched one; answer as for an unknown dialog.
                    warn!(call_id = ?incoming.request.call_id(), method = %incoming.request.method, "in-dialog request without a call");
                    self.answer(&incoming, ResponseSpec::new(481));
                }
            }
            Event::Cancelled { txn } => debug!(?txn, "INVITE cancelled by the caller"),
            other => debug!(event = ?other, "event ignored: no outbound calls yet"),
        }
    }

    fn on_new_invite(&self, incoming: Incoming) {
        let refusal = if self.calls.active() >= self.config.max_active_calls {
            Refusal::AtCapacity
        } else {
            Refusal::NoTrunkConfigured
        };
        let request = &incoming.request;
        let from = request.from().and_then(|f| f.uri.user());
        let to = request.to().and_then(|t| t.uri.user());
        info!(
            call_id = ?request.call_id().unwrap_or_default(),
            from = ?from.unwrap_or_default(),
            to = ?to.unwrap_or_default(),
            source = %incoming.flow.remote,
            transport = incoming.flow.transport.as_str(),
            status = refusal.status(),
            reason = refusal.text(),
            "inbound call refused"
        );
        let mut spec = ResponseSpec::new(refusal.status()).header(
            HeaderName::Reason,
            format!("SIP;cause={};text=\"{}\"", refusal.status(), refusal.text()),
        );
        if refusal == Refusal::AtCapacity {
            spec = spec.header(
                HeaderName::RetryAfter,
                self.config.retry_after_secs.to_string(),
            );
        }
        self.answer(&incoming, spec);
    }

    fn answer(&self, incoming: &Incoming, spec: ResponseSpec) {
        if let Err(e) = self.sip.respond(incoming.txn, spec) {
            // CANCEL can win the race: the core has then sent 487 already.
            debug!(call_id = ?incoming.request.call_id(), error = %e, "response not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_honest_codes() {
        assert_eq!(Refusal::NoTrunkConfigured.status(), 404);
        assert_eq!(Refusal::AtCapacity.status(), 503);
        assert!(Refusal::NoTrunkConfigured.text().contains("trunk"));
    }
}
