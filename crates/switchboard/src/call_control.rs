//! The call control the API hands outbound calls and transfers to: the
//! gateway, with its outcomes turned into Twirp answers as LiveKit gives
//! them (a SIP failure carries `sip_status_code` and `sip_status` in the
//! error's meta, which the Python SDK raises as `SipCallError`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchboard_api::{CallControl, CallFuture, Code, OutboundCall, Transfer, TwirpError};
use switchboard_gateway::{DialError, DialRequest, GatewayHandle, TransferError, TransferRequest};
use switchboard_routing::livekit_protocol::{
    sip_named_dest, sip_request_dest, SipHeaderOptions, SipMediaConfig, SipNamedDest,
    SipParticipantInfo, SipStatus, SipTransferReason, SipTransferStatus, SipTransport, SipUri,
    TransferSipParticipantResponse,
};
use switchboard_routing::{attrs, effective_media, merge_media, proto_duration};
use switchboard_sip::message::{standard_reason, Uri};
use switchboard_sip::Transport;

/// How long a transfer may take when the request sets no ringing timeout
/// (LiveKit's server default).
const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an outbound call rings when the request sets no timeout (the
/// SDKs' default), and the most it may ring.
const DEFAULT_RINGING_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RINGING_TIMEOUT: Duration = Duration::from_secs(80);

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
        TransferError::NotSip
        | TransferError::AlreadyTransferring
        | TransferError::DestinationRefused(_) => TwirpError::new(Code::InvalidArgument, message),
        TransferError::NotEstablished => TwirpError::new(Code::FailedPrecondition, message),
        TransferError::Failed { status, reason } => sip_error(status, &reason, message),
        TransferError::Timeout => sip_error(408, "Request Timeout", message),
    }
}

/// A random entry of `numbers` (LiveKit picks the From number at random).
fn pick(numbers: &[String]) -> Option<String> {
    if numbers.is_empty() {
        return None;
    }
    let mut byte = [0u8; 8];
    switchboard_sip::fill_random(&mut byte);
    let index = (u64::from_le_bytes(byte) % numbers.len() as u64) as usize;
    numbers.get(index).cloned()
}

/// CreateSIPParticipant resolved against its trunk (stored or inline), as
/// LiveKit's server assembles it (reference §2.7).
pub fn dial_request(call: &OutboundCall) -> Result<DialRequest, TwirpError> {
    let r = &call.request;
    let inline = r.trunk.as_ref();
    let stored = call.trunk.as_ref();
    let address = stored
        .map(|t| t.address.clone())
        .or_else(|| inline.map(|t| t.hostname.clone()))
        .unwrap_or_default();
    if address.is_empty() {
        return Err(TwirpError::new(
            Code::InvalidArgument,
            "no outbound address specified",
        ));
    }
    let plan = call.dial_plan.as_ref();
    let from_trunk = r.sip_number.is_empty();
    let mut from_number = if from_trunk {
        pick(stored.map(|t| t.numbers.as_slice()).unwrap_or_default()).ok_or_else(|| {
            TwirpError::new(Code::FailedPrecondition, "no numbers on outbound trunk")
        })?
    } else {
        r.sip_number.clone()
    };
    // What the carrier is sent as the From user. With a dial plan, a number
    // picked from the trunk is written in the trunk's format; an explicit
    // sip_number is what the caller asked for and is sent as given.
    let from_user = match plan {
        Some(plan) if from_trunk => plan.format(&from_number).map_err(|e| {
            // The trunk's stored number, not the request, is at fault (like
            // "no numbers on outbound trunk").
            TwirpError::new(
                Code::FailedPrecondition,
                format!("outbound trunk numbers: {e}"),
            )
        })?,
        _ => {
            if address
                .trim_end_matches(|c: char| c == ':' || c.is_ascii_digit())
                .ends_with("twilio.com")
                && !from_number.starts_with('+')
            {
                // Twilio wants E.164 (LiveKit's rule); a dial plan's format,
                // chosen for the trunk, is not second-guessed.
                from_number.insert(0, '+');
            }
            from_number.clone()
        }
    };
    // What the carrier is sent as the called number (To and Request-URI
    // user): sip_call_to in the trunk's format. A to_user_override is sent
    // as given, and then sip_call_to is not dialled, so it is not checked.
    let (call_to, to_user) = if !r.to_user_override.is_empty() {
        (r.sip_call_to.clone(), r.to_user_override.clone())
    } else {
        let call_to = match plan {
            Some(plan) => plan
                .format(&r.sip_call_to)
                .map_err(|e| TwirpError::new(Code::InvalidArgument, format!("sip_call_to: {e}")))?,
            None => r.sip_call_to.clone(),
        };
        (call_to.clone(), call_to)
    };
    let transport = match stored
        .map(|t| t.transport)
        .or_else(|| inline.map(|t| t.transport))
        .and_then(|t| SipTransport::try_from(t).ok())
    {
        Some(SipTransport::Tcp) => Transport::Tcp,
        Some(SipTransport::Tls) => Transport::Tls,
        _ => Transport::Udp,
    };
    let from_host = stored
        .map(|t| t.from_host.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            inline
                .map(|t| t.from_host.clone())
                .filter(|h| !h.is_empty())
        });
    let (user, pass) = stored
        .map(|t| (t.auth_username.clone(), t.auth_password.clone()))
        .or_else(|| inline.map(|t| (t.auth_username.clone(), t.auth_password.clone())))
        .unwrap_or_default();
    let auth = (!user.is_empty() && !pass.is_empty()).then_some((user, pass));
    let mut headers: BTreeMap<String, String> = stored
        .map(|t| {
            t.headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    headers.extend(r.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    #[allow(deprecated)]
    let trunk_media = stored
        .map(|t| effective_media(t.media.as_ref(), t.media_encryption))
        .unwrap_or_default();
    #[allow(deprecated)]
    let request_media = effective_media(r.media.as_ref(), r.media_encryption);
    let media: SipMediaConfig = merge_media(&trunk_media, &request_media);
    let mut attributes: BTreeMap<String, String> = r
        .participant_attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    attributes.insert(
        attrs::TRUNK_ID.to_string(),
        stored.map(|t| t.sip_trunk_id.clone()).unwrap_or_default(),
    );
    if !r.hide_phone_number {
        // The numbers as requested and stored, whatever the carrier is sent.
        attributes.insert(attrs::PHONE_NUMBER.to_string(), r.sip_call_to.clone());
        attributes.insert(attrs::HOSTNAME.to_string(), address.clone());
        attributes.insert(attrs::TRUNK_PHONE_NUMBER.to_string(), from_number.clone());
    }
    // The deprecated play_ringtone still arrives from older SDKs.
    #[allow(deprecated)]
    let play_dialtone = r.play_dialtone || r.play_ringtone;
    let identity = if r.participant_identity.is_empty() {
        format!("sip_{}", r.sip_call_to)
    } else {
        r.participant_identity.clone()
    };
    let headers_to_attributes: HashMap<String, String> = stored
        .map(|t| t.headers_to_attributes.clone())
        .or_else(|| inline.map(|t| t.headers_to_attributes.clone()))
        .unwrap_or_default();
    // The request's include_headers wins when set (LiveKit's rule).
    let include_headers = [
        r.include_headers,
        stored.map(|t| t.include_headers).unwrap_or(0),
    ]
    .into_iter()
    .find(|v| *v != 0)
    .and_then(|v| SipHeaderOptions::try_from(v).ok())
    .unwrap_or(SipHeaderOptions::SipNoHeaders);
    let attributes_to_headers: HashMap<String, String> = stored
        .map(|t| t.attributes_to_headers.clone())
        .or_else(|| inline.map(|t| t.attributes_to_headers.clone()))
        .unwrap_or_default();
    let request_uri = match r.sip_request_uri.as_ref().and_then(|d| d.uri.as_ref()) {
        Some(sip_request_dest::Uri::Raw(raw)) => Some(checked_uri(raw, "sip_request_uri")?),
        Some(sip_request_dest::Uri::Values(values)) => Some(uri_of(values, &address)),
        None => None,
    };
    let named = |dest: &Option<SipNamedDest>, field: &str| -> Result<Option<String>, TwirpError> {
        let Some(dest) = dest else { return Ok(None) };
        let uri = match &dest.uri {
            Some(sip_named_dest::Uri::Raw(raw)) => checked_uri(raw, field)?,
            Some(sip_named_dest::Uri::Values(values)) => uri_of(values, &address),
            None => return Ok(None),
        };
        let display = dest.display_name.replace(['"', '\\'], "");
        Ok(Some(if display.is_empty() {
            format!("<{uri}>")
        } else {
            format!("\"{display}\" <{uri}>")
        }))
    };
    let to_header = named(&r.sip_to_header, "sip_to_header")?;
    let from_header = named(&r.sip_from_header, "sip_from_header")?;
    Ok(DialRequest {
        room: r.room_name.clone(),
        identity,
        name: r.participant_name.clone(),
        metadata: r.participant_metadata.clone(),
        attributes,
        address,
        transport,
        call_to,
        request_uri,
        to_header,
        from_header,
        to_user,
        from_number: from_user,
        from_host,
        display_name: r.display_name.clone(),
        auth,
        trunk_id: stored.map(|t| t.sip_trunk_id.clone()).unwrap_or_default(),
        headers: headers.into_iter().collect(),
        media,
        ringing_timeout: proto_duration(r.ringing_timeout.as_ref())
            .unwrap_or(DEFAULT_RINGING_TIMEOUT)
            .min(MAX_RINGING_TIMEOUT),
        max_call_duration: proto_duration(r.max_call_duration.as_ref()),
        dtmf: r.dtmf.clone(),
        play_dialtone,
        attributes_to_headers,
        headers_to_attributes,
        include_headers,
    })
}

/// A URI given as text (angle brackets allowed), checked to be SIP or tel.
fn checked_uri(raw: &str, field: &str) -> Result<String, TwirpError> {
    let uri = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    match Uri::parse(uri) {
        Ok(Uri::Sip(_) | Uri::Tel(_)) => Ok(uri.to_string()),
        _ => Err(TwirpError::new(
            Code::InvalidArgument,
            format!("{field} must be a sip:, sips: or tel: URI"),
        )),
    }
}

/// A SIP URI from its parts; the host defaults to the trunk's address.
fn uri_of(values: &SipUri, address: &str) -> String {
    // The trunk's address without its port, when the parts name one.
    let trunk_host = match address.rsplit_once(':') {
        Some((host, port))
            if values.port != 0
                && !host.ends_with(':')
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => address,
    };
    let host = [values.host.as_str(), values.ip.as_str()]
        .into_iter()
        .find(|h| !h.is_empty())
        .unwrap_or(trunk_host);
    let mut uri = String::from("sip:");
    if !values.user.is_empty() {
        uri.push_str(&values.user);
        uri.push('@');
    }
    uri.push_str(host);
    if values.port != 0 {
        uri.push_str(&format!(":{}", values.port));
    }
    match SipTransport::try_from(values.transport) {
        Ok(SipTransport::Tcp) => uri.push_str(";transport=tcp"),
        Ok(SipTransport::Tls) => uri.push_str(";transport=tls"),
        Ok(SipTransport::Udp) => uri.push_str(";transport=udp"),
        _ => {}
    }
    uri
}

fn dial_error(error: DialError) -> TwirpError {
    let message = error.to_string();
    match error {
        DialError::Address(_) | DialError::DestinationRefused(_) => {
            TwirpError::new(Code::InvalidArgument, message)
        }
        DialError::AtCapacity | DialError::NoPorts | DialError::Room(_) => {
            TwirpError::new(Code::Unavailable, message)
        }
        DialError::Sip { status, reason } => sip_error(status, &reason, message),
        DialError::AuthMissing | DialError::Media(_) | DialError::TransportNotListening(_) => {
            TwirpError::new(Code::FailedPrecondition, message)
        }
        DialError::RingingTimeout(_) => TwirpError::new(Code::Canceled, message)
            .with_meta("sip_status_code", "408")
            .with_meta("sip_status", "Request Timeout"),
        DialError::Transport(_) => TwirpError::new(Code::Unavailable, message)
            .with_meta("sip_status_code", "408")
            .with_meta("sip_status", "Request Timeout"),
        // The callee answered with a 200 that cannot form a dialog: a
        // broken trunk, as a 502 from it would be.
        DialError::BadAnswer(_) => TwirpError::new(Code::Unavailable, message),
        DialError::Abandoned => TwirpError::new(Code::Aborted, message),
    }
}

impl CallControl for GatewayCalls {
    fn create_participant(&self, call: OutboundCall) -> CallFuture<'_, SipParticipantInfo> {
        let gateway = self.gateway.clone();
        Box::pin(async move {
            let request = dial_request(&call)?;
            let started = gateway
                .dial(request, call.request.wait_until_answered)
                .await
                .map_err(dial_error)?;
            Ok(SipParticipantInfo {
                participant_id: started.participant_id,
                participant_identity: started.participant_identity,
                room_name: started.room,
                sip_call_id: started.call_id,
            })
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
        let timeout =
            proto_duration(request.ringing_timeout.as_ref()).unwrap_or(DEFAULT_TRANSFER_TIMEOUT);
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use switchboard_routing::livekit_protocol::{
        CreateSipParticipantRequest, SipOutboundConfig, SipOutboundTrunkInfo, SipRequestDest,
    };
    use switchboard_routing::{DialPlan, NumberFormat};

    fn trunk() -> SipOutboundTrunkInfo {
        SipOutboundTrunkInfo {
            sip_trunk_id: "ST_a".into(),
            address: "sip.example.net:5070".into(),
            numbers: vec!["+15550001".into()],
            transport: SipTransport::Tcp as i32,
            auth_username: "u".into(),
            auth_password: "p".into(),
            headers: [
                ("X-Trunk".to_string(), "t".to_string()),
                ("X-Both".to_string(), "trunk".to_string()),
            ]
            .into(),
            ..Default::default()
        }
    }

    fn call(
        request: CreateSipParticipantRequest,
        trunk: Option<SipOutboundTrunkInfo>,
    ) -> OutboundCall {
        OutboundCall {
            request,
            trunk,
            dial_plan: None,
        }
    }

    /// A call on `trunk()` with the number `+12025550100` and a dial plan.
    fn planned(
        request: CreateSipParticipantRequest,
        number_format: NumberFormat,
        country: Option<&str>,
    ) -> OutboundCall {
        OutboundCall {
            request,
            trunk: Some(SipOutboundTrunkInfo {
                numbers: vec!["+12025550100".into()],
                ..trunk()
            }),
            dial_plan: Some(DialPlan {
                number_format,
                country: country.map(str::to_owned),
            }),
        }
    }

    fn to(number: &str) -> CreateSipParticipantRequest {
        CreateSipParticipantRequest {
            sip_trunk_id: "ST_a".into(),
            sip_call_to: number.into(),
            room_name: "r".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_dial_plan_formats_the_called_and_the_trunk_number() {
        let dial = dial_request(&planned(
            to("+12025550123"),
            NumberFormat::National,
            Some("US"),
        ))
        .unwrap();
        assert_eq!(dial.to_user, "2025550123");
        assert_eq!(dial.call_to, "2025550123");
        assert_eq!(dial.from_number, "2025550100");
        // The participant keeps the numbers as requested and stored.
        assert_eq!(dial.identity, "sip_+12025550123");
        assert_eq!(
            dial.attributes.get("sip.phoneNumber").map(String::as_str),
            Some("+12025550123")
        );
        assert_eq!(
            dial.attributes
                .get("sip.trunkPhoneNumber")
                .map(String::as_str),
            Some("+12025550100")
        );

        // National input is read in the plan's country.
        let dial = dial_request(&planned(
            to("(202) 555-0123"),
            NumberFormat::E164,
            Some("US"),
        ))
        .unwrap();
        assert_eq!(dial.to_user, "12025550123");
        assert_eq!(dial.from_number, "12025550100");
        let dial = dial_request(&planned(
            to("2025550123"),
            NumberFormat::PlusE164,
            Some("US"),
        ))
        .unwrap();
        assert_eq!(dial.to_user, "+12025550123");
        assert_eq!(dial.from_number, "+12025550100");

        // Abroad from a national-format trunk: the international prefix.
        let dial = dial_request(&planned(
            to("+442079460000"),
            NumberFormat::National,
            Some("US"),
        ))
        .unwrap();
        assert_eq!(dial.to_user, "011442079460000");
    }

    #[test]
    fn a_dial_plan_leaves_user_names_explicit_numbers_and_overrides_alone() {
        let dial = dial_request(&planned(to("alice"), NumberFormat::National, Some("US"))).unwrap();
        assert_eq!(dial.to_user, "alice");
        let dial = dial_request(&planned(to("1001"), NumberFormat::PlusE164, Some("US"))).unwrap();
        assert_eq!(dial.to_user, "1001");

        let explicit = CreateSipParticipantRequest {
            sip_number: "+12025550199".into(),
            ..to("+12025550123")
        };
        let dial = dial_request(&planned(explicit, NumberFormat::National, Some("US"))).unwrap();
        assert_eq!(
            dial.from_number, "+12025550199",
            "sent as the request gave it"
        );

        // The override is dialled as given, so sip_call_to is not checked.
        let overridden = CreateSipParticipantRequest {
            to_user_override: "desk".into(),
            ..to("+1202555012")
        };
        let dial = dial_request(&planned(overridden, NumberFormat::National, Some("US"))).unwrap();
        assert_eq!(dial.to_user, "desk");
        assert_eq!(dial.call_to, "+1202555012");
    }

    #[test]
    fn a_dial_plans_format_is_not_second_guessed_for_twilio() {
        let mut call = planned(to("+12025550123"), NumberFormat::E164, None);
        if let Some(trunk) = call.trunk.as_mut() {
            trunk.address = "acme.pstn.twilio.com".into();
        }
        let dial = dial_request(&call).unwrap();
        assert_eq!(dial.from_number, "12025550100");
        assert_eq!(dial.to_user, "12025550123");
    }

    #[test]
    fn numbers_a_dial_plan_cannot_read_are_refused() {
        let error =
            dial_request(&planned(to("+1202555012"), NumberFormat::E164, None)).unwrap_err();
        assert_eq!(error.code, Code::InvalidArgument);
        assert_eq!(
            error.msg,
            "sip_call_to: \"+1202555012\" is not a valid phone number: \
             too short: 9 digits after +1, where numbers have 10"
        );
        let error = dial_request(&planned(
            to("1234567890"),
            NumberFormat::National,
            Some("US"),
        ))
        .unwrap_err();
        assert_eq!(error.code, Code::InvalidArgument);
        assert!(
            error.msg.starts_with(
                "sip_call_to: \"1234567890\" is not a valid phone number (read as dialled in US)"
            ),
            "{}",
            error.msg
        );

        // The stored trunk's number is at fault, not the request.
        let mut call = planned(to("+12025550123"), NumberFormat::National, Some("US"));
        if let Some(trunk) = call.trunk.as_mut() {
            trunk.numbers = vec!["+15550001".into()];
        }
        let error = dial_request(&call).unwrap_err();
        assert_eq!(error.code, Code::FailedPrecondition);
        assert!(
            error
                .msg
                .starts_with("outbound trunk numbers: \"+15550001\" is not a valid phone number"),
            "{}",
            error.msg
        );
    }

    #[test]
    fn a_stored_trunk_gives_address_number_transport_auth_and_headers() {
        let request = CreateSipParticipantRequest {
            sip_trunk_id: "ST_a".into(),
            sip_call_to: "+15559999".into(),
            room_name: "r".into(),
            headers: [("X-Both".to_string(), "request".to_string())].into(),
            ..Default::default()
        };
        let dial = dial_request(&call(request, Some(trunk()))).unwrap();
        assert_eq!(dial.address, "sip.example.net:5070");
        assert_eq!(dial.from_number, "+15550001");
        assert_eq!(dial.transport, Transport::Tcp);
        assert_eq!(dial.auth, Some(("u".into(), "p".into())));
        assert_eq!(dial.identity, "sip_+15559999");
        assert_eq!(
            dial.headers,
            vec![
                ("X-Both".into(), "request".into()),
                ("X-Trunk".into(), "t".into())
            ],
            "the request's headers win, sorted by name"
        );
        assert_eq!(
            dial.attributes.get("sip.phoneNumber").map(String::as_str),
            Some("+15559999")
        );
        assert_eq!(
            dial.attributes
                .get("sip.trunkPhoneNumber")
                .map(String::as_str),
            Some("+15550001")
        );
        assert_eq!(
            dial.attributes.get("sip.trunkID").map(String::as_str),
            Some("ST_a")
        );
        assert_eq!(dial.ringing_timeout, DEFAULT_RINGING_TIMEOUT);
    }

    #[test]
    fn hidden_numbers_twilio_plus_and_an_inline_trunk() {
        let request = CreateSipParticipantRequest {
            sip_call_to: "+15559999".into(),
            sip_number: "15550002".into(),
            room_name: "r".into(),
            hide_phone_number: true,
            trunk: Some(SipOutboundConfig {
                hostname: "acme.pstn.twilio.com".into(),
                ..Default::default()
            }),
            ringing_timeout: Some(pbjson_types::Duration {
                seconds: 300,
                nanos: 0,
            }),
            ..Default::default()
        };
        let dial = dial_request(&call(request, None)).unwrap();
        assert_eq!(dial.from_number, "+15550002", "Twilio wants E.164");
        assert!(!dial.attributes.contains_key("sip.phoneNumber"));
        assert_eq!(dial.ringing_timeout, MAX_RINGING_TIMEOUT, "capped at 80 s");
        assert_eq!(dial.transport, Transport::Udp);
    }

    #[test]
    fn request_uri_to_and_from_may_be_given() {
        let request = CreateSipParticipantRequest {
            sip_trunk_id: "ST_a".into(),
            sip_call_to: "+15559999".into(),
            room_name: "r".into(),
            sip_request_uri: Some(SipRequestDest {
                uri: Some(sip_request_dest::Uri::Raw(
                    "<sip:9999@gw.example.net;user=phone>".into(),
                )),
            }),
            sip_to_header: Some(SipNamedDest {
                display_name: "Desk".into(),
                uri: Some(sip_named_dest::Uri::Values(SipUri {
                    user: "desk".into(),
                    port: 5080,
                    transport: SipTransport::Tcp as i32,
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        let dial = dial_request(&call(request, Some(trunk()))).unwrap();
        assert_eq!(
            dial.request_uri.as_deref(),
            Some("sip:9999@gw.example.net;user=phone")
        );
        assert_eq!(
            dial.to_header.as_deref(),
            Some(r#""Desk" <sip:desk@sip.example.net:5080;transport=tcp>"#)
        );
        assert_eq!(dial.from_header, None);
        let bad = CreateSipParticipantRequest {
            sip_trunk_id: "ST_a".into(),
            sip_call_to: "+1".into(),
            room_name: "r".into(),
            sip_request_uri: Some(SipRequestDest {
                uri: Some(sip_request_dest::Uri::Raw("http://example.com".into())),
            }),
            ..Default::default()
        };
        assert!(dial_request(&call(bad, Some(trunk()))).is_err());
    }

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
