//! The call control the API hands outbound calls and transfers to. Outbound
//! calls and REFER transfers are not built yet, so this answers every
//! request with Twirp `unavailable` and says so; the gateway replaces it
//! when they land.

use switchboard_api::{CallControl, CallFuture, Code, OutboundCall, Transfer, TwirpError};
use switchboard_routing::livekit_protocol::{SipParticipantInfo, TransferSipParticipantResponse};

/// Refuses outbound calls and transfers until the gateway implements them.
#[derive(Debug, Default, Clone, Copy)]
pub struct NotYetImplemented;

impl CallControl for NotYetImplemented {
    fn create_participant(&self, call: OutboundCall) -> CallFuture<'_, SipParticipantInfo> {
        tracing::info!(room = %call.request.room_name, "CreateSIPParticipant refused: outbound calls not implemented yet");
        Box::pin(async {
            Err(TwirpError::new(
                Code::Unavailable,
                "outbound calls are not implemented yet in switchboard",
            ))
        })
    }

    fn transfer_participant(
        &self,
        transfer: Transfer,
    ) -> CallFuture<'_, TransferSipParticipantResponse> {
        tracing::info!(room = %transfer.request.room_name, "TransferSIPParticipant refused: transfers not implemented yet");
        Box::pin(async {
            Err(TwirpError::new(
                Code::Unavailable,
                "call transfers are not implemented yet in switchboard",
            ))
        })
    }
}
