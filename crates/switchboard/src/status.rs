//! The call-side numbers of `GET /debug/state`, read from the gateway's call
//! registry, the RTP port allocator and the SIP stack (the API crate cannot
//! see them: it does not depend on the gateway).

use std::sync::Arc;
use switchboard_api::{CallStatus, StatusSource};
use switchboard_gateway::{CallRegistry, GatewayHandle};
use switchboard_media::ports::PortAllocator;
use switchboard_sip::transport::SipHandle;

/// Reads the live counters of a running `serve`.
pub struct ServeStatus {
    calls: Arc<CallRegistry>,
    ports: PortAllocator,
    sip: SipHandle,
    gateway: GatewayHandle,
}

impl ServeStatus {
    /// Counters of these parts.
    pub fn new(
        calls: Arc<CallRegistry>,
        ports: PortAllocator,
        sip: SipHandle,
        gateway: GatewayHandle,
    ) -> ServeStatus {
        ServeStatus {
            calls,
            ports,
            sip,
            gateway,
        }
    }
}

impl StatusSource for ServeStatus {
    fn call_status(&self) -> CallStatus {
        CallStatus {
            calls_active: self.calls.active(),
            call_tasks: self.calls.tasks(),
            rtp_ports_active: self.ports.active_count(),
            sip_transactions: self.sip.transaction_count(),
        }
    }

    fn metrics(&self) -> String {
        self.gateway.metrics_text()
    }
}
