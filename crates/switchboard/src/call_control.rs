//! The call control the API hands outbound calls and transfers to: the
//! gateway, with its outcomes turned into Twirp answers as LiveKit gives
//! them (a SIP failure carries `sip_status_code` and `sip_status` in the
//! error's meta, which the Python SDK raises as `SipCallError`).

use std::time::Duration;
use switchboard_api::{CallControl, CallFuture, Code, OutboundCall, Transfer, TwirpError};
use switchboard_gateway::{GatewayHandle, TransferError, TransferRequest};
use switchboard_routing::livekit_protocol::{
    SipParticipantInfo, SipStatus, SipTransferReason, SipTransferStatus,
    TransferSipParticipantResponse,
};
use switchboard_sip::message::standard_reason;

/// How long a transfer may take when the request sets no ringing timeout
/// (LiveKit's server default).
const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway behind the API.
#[derive(Clone)]
pub struct GatewayCalls {
    gateway: GatewayHandle,
}

impl GatewayCalls {
    /// Call control through `gateway`.
    pub fn new(gateway: GatewayHandle) -> GatewayCalls {
        GatewayCalls { gateway }
    }
}

/// The Twirp code LiveKit answers a SIP failure status with
/// (`SIPStatus.GRPCStatus()` in its protocol package).
pub fn sip_status_code(status: u16) -> Code {
    match status {
        400 => Code::InvalidArgument,
        401 | 403 | 407 | 603 | 607 | 608 => Code::PermissionDenied,
        404 | 604 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        480 | 503 => Code::Unavailable,
        486 | 600 => Code::ResourceExhausted,
        487 => Code::Aborted,
        _ => Code::FailedPrecondition,
    }
}

/// A SIP failure as a Twirp error with LiveKit's meta.
fn sip_error(status: u16, reason: &str, message: String) -> TwirpError {
    let reason = if reason.is_empty() {
        standard_reason(status)
    } else {
        reason
    };
    TwirpError::new(sip_status_code(status), message)
        .with_meta("sip_status_code", status.to_string())
        .with_meta("sip_status", reason)
}

fn transfer_error(error: TransferError) -> TwirpError {
    let message = error.to_string();
    match error {
        TransferError::NoSuchParticipant { .. } => TwirpError::new(Code::NotFound, message),
        TransferError::NotSip | TransferError::AlreadyTransferring => {
            TwirpError::new(Code::InvalidArgument, message)
        }
        TransferError::NotEstablished => TwirpError::new(Code::FailedPrecondition, message),
        TransferError::Failed { status, reason } => sip_error(status, &reason, message),
        TransferError::Timeout => sip_error(408, "Request Timeout", message),
    }
}

impl CallControl for GatewayCalls {
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
        let request = &transfer.request;
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.sort();
        let timeout = request
            .ringing_timeout
            .as_ref()
            .and_then(|d| {
                let secs = u64::try_from(d.seconds).ok()?;
                let nanos = u32::try_from(d.nanos).ok()?;
                Some(Duration::new(secs, nanos))
            })
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_TRANSFER_TIMEOUT);
        let order = TransferRequest {
            room: request.room_name.clone(),
            identity: request.participant_identity.clone(),
            refer_to: transfer.refer_to.clone(),
            headers,
            play_dialtone: request.play_dialtone,
            timeout,
        };
        let gateway = self.gateway.clone();
        Box::pin(async move {
            let done = gateway.transfer(order).await.map_err(transfer_error)?;
            let (reason, sip_status) = if done.status == 0 {
                (SipTransferReason::StrCallEnded, None)
            } else {
                (
                    SipTransferReason::StrCompleted,
                    Some(SipStatus {
                        code: i32::from(done.status),
                        status: standard_reason(done.status).to_string(),
                    }),
                )
            };
            Ok(TransferSipParticipantResponse {
                transfer_id: done.transfer_id,
                status: SipTransferStatus::StsTransferSuccessful as i32,
                reason: reason as i32,
                sip_status,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_failures_map_to_livekits_codes_with_meta() {
        assert_eq!(sip_status_code(486), Code::ResourceExhausted);
        assert_eq!(sip_status_code(404), Code::NotFound);
        assert_eq!(sip_status_code(603), Code::PermissionDenied);
        assert_eq!(sip_status_code(408), Code::DeadlineExceeded);
        assert_eq!(sip_status_code(504), Code::DeadlineExceeded);
        assert_eq!(sip_status_code(487), Code::Aborted);
        assert_eq!(sip_status_code(500), Code::FailedPrecondition);
        let error = transfer_error(TransferError::Failed {
            status: 486,
            reason: String::new(),
        });
        let body = error.body().to_string();
        assert!(body.contains(r#""sip_status_code":"486""#), "{body}");
        assert!(body.contains(r#""sip_status":"Busy Here""#), "{body}");
    }
}
