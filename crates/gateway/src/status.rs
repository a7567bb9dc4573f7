//! The values a call reports about itself where they leave the gateway:
//! its `sip.callStatus` while it lasts, and how it ended (the result word
//! of the metrics and the log, LiveKit's disconnect reason, the SIP status).
//! The words are LiveKit's and the dashboards', so they are fixed here once.

use std::collections::BTreeMap;
use switchboard_routing::attrs;
use switchboard_routing::livekit_protocol::DisconnectReason;

/// Where a SIP participant's call stands: the `sip.callStatus` attribute
/// every member of the room sees (LiveKit's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// An outbound call is being placed; the callee has not answered.
    Dialing,
    /// The callee's phone rings (outbound), or the caller waits in the room
    /// for the answer (inbound).
    Ringing,
    /// Answered; the requested DTMF digits are being sent.
    Automation,
    /// Answered and bridged to the room.
    Active,
    /// The call has ended; the participant is about to leave.
    Hangup,
}

impl CallStatus {
    /// The attribute value, as LiveKit writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Dialing => "dialing",
            CallStatus::Ringing => "ringing",
            CallStatus::Automation => "automation",
            CallStatus::Active => "active",
            CallStatus::Hangup => "hangup",
        }
    }
}

impl std::fmt::Display for CallStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call ended, in one word: the `result` label of
/// `switchboard_calls_ended_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CallResult {
    /// It was answered (whatever ended it later).
    Answered,
    /// It ended before an answer, for a reason other than those below.
    Failed,
    /// Refused with a final response by routing or admission.
    Refused,
    /// Challenged for credentials; the retry is another call.
    Challenged,
    /// The caller (or, outbound, the room) gave up before the answer.
    Cancelled,
}

impl CallResult {
    /// The metric label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CallResult::Answered => "answered",
            CallResult::Failed => "failed",
            CallResult::Refused => "refused",
            CallResult::Challenged => "challenged",
            CallResult::Cancelled => "cancelled",
        }
    }
}

/// What a call's end is reported as: in the participant's last attributes
/// (`sip.disconnectReason`, `sip.callStatusCode`), the ended-calls metric
/// and the `call ended` log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The result word.
    pub result: CallResult,
    /// LiveKit's reason; its protobuf name is what is written.
    pub reason: DisconnectReason,
    /// The final SIP status of the call (or the cause its BYE carried).
    pub sip_status: u16,
}

impl Outcome {
    /// The participant's last attributes, set just before it leaves.
    pub(crate) fn final_attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                attrs::CALL_STATUS.to_string(),
                CallStatus::Hangup.as_str().to_string(),
            ),
            (
                attrs::DISCONNECT_REASON.to_string(),
                self.reason.as_str_name().to_string(),
            ),
            (
                attrs::CALL_STATUS_CODE.to_string(),
                self.sip_status.to_string(),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_statuses_are_livekits_attribute_values() {
        let values: Vec<(CallStatus, &str)> = [
            CallStatus::Dialing,
            CallStatus::Ringing,
            CallStatus::Automation,
            CallStatus::Active,
            CallStatus::Hangup,
        ]
        .iter()
        .map(|s| (*s, s.as_str()))
        .collect();
        assert_eq!(
            values,
            [
                (CallStatus::Dialing, "dialing"),
                (CallStatus::Ringing, "ringing"),
                (CallStatus::Automation, "automation"),
                (CallStatus::Active, "active"),
                (CallStatus::Hangup, "hangup"),
            ]
        );
        assert_eq!(CallStatus::Ringing.to_string(), "ringing");
    }

    #[test]
    fn the_last_attributes_say_hangup_and_why() {
        let outcome = Outcome {
            result: CallResult::Failed,
            reason: DisconnectReason::JoinFailure,
            sip_status: 503,
        };
        let attributes = outcome.final_attributes();
        let attributes: Vec<(&str, &str)> = attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attributes,
            [
                ("sip.callStatus", "hangup"),
                ("sip.callStatusCode", "503"),
                ("sip.disconnectReason", "JOIN_FAILURE"),
            ]
        );
    }

    #[test]
    fn call_results_are_the_metric_label_values() {
        assert_eq!(CallResult::Answered.as_str(), "answered");
        assert_eq!(CallResult::Failed.as_str(), "failed");
        assert_eq!(CallResult::Refused.as_str(), "refused");
        assert_eq!(CallResult::Challenged.as_str(), "challenged");
        assert_eq!(CallResult::Cancelled.as_str(), "cancelled");
    }
}
