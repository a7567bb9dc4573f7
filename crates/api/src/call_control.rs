//! The seam between the API and call control. The API validates
//! CreateSIPParticipant and TransferSIPParticipant and resolves the stored
//! trunk; placing or transferring the call is the job of whatever implements
//! [`CallControl`] (the binary plugs the gateway in). The API never depends
//! on the gateway.

use std::future::Future;
use std::pin::Pin;

use livekit_protocol::{
    CreateSipParticipantRequest, SipOutboundTrunkInfo, SipParticipantInfo,
    TransferSipParticipantRequest, TransferSipParticipantResponse,
};

use crate::twirp::TwirpError;

/// The future a [`CallControl`] method returns.
pub type CallFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TwirpError>> + Send + 'a>>;

/// A validated CreateSIPParticipant request.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundCall {
    /// The request as the client sent it (validated).
    pub request: CreateSipParticipantRequest,
    /// The stored trunk named by `sip_trunk_id`; `None` when the request
    /// carries an inline trunk or only a From number.
    pub trunk: Option<SipOutboundTrunkInfo>,
    /// The stored trunk's number format and country, when the trunk was
    /// provisioned with one (the /v1 trunk API).
    pub dial_plan: Option<switchboard_routing::DialPlan>,
}

/// A validated TransferSIPParticipant request.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// The request as the client sent it (validated).
    pub request: TransferSipParticipantRequest,
    /// The Refer-To value to send: `<sip:…>` / `<sips:…>`, or a bare `tel:` URI.
    pub refer_to: String,
}

/// Places outbound calls and transfers calls. Errors are Twirp errors as the
/// API should answer them (for a SIP failure: the code LiveKit maps the SIP
/// status to, with meta `sip_status_code` and `sip_status`).
pub trait CallControl: Send + Sync + 'static {
    /// Dials out and joins the callee to the room.
    fn create_participant(&self, call: OutboundCall) -> CallFuture<'_, SipParticipantInfo>;

    /// Transfers a SIP participant's call with a REFER.
    fn transfer_participant(
        &self,
        transfer: Transfer,
    ) -> CallFuture<'_, TransferSipParticipantResponse>;
}
