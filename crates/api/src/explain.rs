//! `POST /twirp/switchboard.SIP/ExplainCall`: why would this call (not)
//! match, answered from this replica's live routing index.
//!
//! JSON only, `sip.admin` grant. The request and response shapes are a
//! contract with `switchboard sip explain`; see the crate docs.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use switchboard_routing::{
    CallInput, DispatchDecision, ObjectKind, PassedOver, RouteReport, RoutingError, RoutingIndex,
    TrunkMatchKind,
};
use switchboard_store::OsRandom;

use crate::twirp::{Code, TwirpError};

/// The call to explain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ExplainCallRequest {
    /// The From user (caller number or SIP user).
    pub from: String,
    /// The To user (called number): trunks match on this.
    pub to: String,
    /// The packet source IP; empty skips the `allowed_addresses` check.
    pub source_ip: String,
    /// The From host (compared with host names in `allowed_addresses`).
    pub from_host: String,
    /// The Request-URI user, reported when it would have matched where To did not.
    pub request_uri_user: String,
    /// A PIN as entered at the prompt.
    pub pin: Option<String>,
    /// The caller pressed only `#` at the PIN prompt.
    pub no_pin: bool,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainCallResponse {
    /// One line for humans.
    pub verdict: String,
    /// True when the call would be put in a room (or asked for its PIN).
    pub accepted: bool,
    /// The trunk step.
    pub trunk: TrunkExplanation,
    /// The dispatch step; `None` when the trunk step refused the call.
    pub dispatch: Option<DispatchExplanation>,
}

/// The trunk step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkExplanation {
    /// The trunk taking the call, or "".
    pub id: String,
    /// `specific`, `default`, `unmatched` (no trunk, allowed by policy) or
    /// `none` (refused).
    #[serde(rename = "match")]
    pub match_kind: String,
    /// The trunk challenges the caller with digest auth.
    pub digest_auth: bool,
    /// Why the call is refused at this step.
    pub error: Option<String>,
    /// Trunks not taken, with the reason.
    pub passed_over: Vec<PassedOverEntry>,
}

/// The dispatch step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchExplanation {
    /// The rule taking the call, or "".
    pub rule_id: String,
    /// The rule asks for a PIN first.
    pub request_pin: bool,
    /// The room the call would join (rooms with a random suffix differ per call).
    pub room_name: String,
    /// The participant identity.
    pub participant_identity: String,
    /// The participant name.
    pub participant_name: String,
    /// Why no rule takes the call.
    pub error: Option<String>,
    /// Rules not taken, with the reason.
    pub passed_over: Vec<PassedOverEntry>,
}

/// A trunk or rule that was passed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassedOverEntry {
    /// `trunk` or `dispatch_rule`.
    pub kind: String,
    /// Its ID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Why, in words.
    pub reason: String,
}

impl From<&PassedOver> for PassedOverEntry {
    fn from(p: &PassedOver) -> PassedOverEntry {
        PassedOverEntry {
            kind: match p.kind {
                ObjectKind::Trunk => "trunk",
                ObjectKind::DispatchRule => "dispatch_rule",
            }
            .to_owned(),
            id: p.id.clone(),
            name: p.name.clone(),
            reason: p.reason.to_string(),
        }
    }
}

impl ExplainCallRequest {
    /// The routing input; `invalid_argument` for a source IP that is not one.
    pub fn call_input(&self) -> Result<CallInput, TwirpError> {
        let source_ip = match self.source_ip.trim() {
            "" => None,
            ip => Some(ip.parse::<IpAddr>().map_err(|_| {
                TwirpError::new(
                    Code::InvalidArgument,
                    format!("source_ip {ip:?} is not an IP address"),
                )
            })?),
        };
        Ok(CallInput {
            from_user: self.from.clone(),
            from_host: self.from_host.clone(),
            to_user: self.to.clone(),
            request_uri_user: self.request_uri_user.clone(),
            source_ip,
            pin: self.pin.clone(),
            no_pin: self.no_pin,
            ..CallInput::default()
        })
    }
}

/// The SIP answer a refusal gets: switchboard always sends a final response.
pub fn refusal_status(error: &RoutingError) -> (u16, &'static str) {
    match error {
        RoutingError::NoTrunk(_) => (404, "No matching trunk"),
        RoutingError::NoDispatchRulesDefined
        | RoutingError::NoTrunkOrDispatchRule(_)
        | RoutingError::NoDispatchRule(_) => (404, "No matching dispatch rule"),
        RoutingError::MultipleTrunks(_) | RoutingError::MultipleDefaultTrunks(_) => {
            (500, "Ambiguous trunk configuration")
        }
        _ => (500, "Routing configuration error"),
    }
}

/// Runs the index's explanation of a call and shapes the answer.
pub fn explain(index: &RoutingIndex, call: &CallInput) -> ExplainCallResponse {
    let mut rng = OsRandom::new();
    let report = index.explain(call, &mut rng);
    shape(&report)
}

fn shape(report: &RouteReport) -> ExplainCallResponse {
    let trunk_step = &report.trunk;
    let (trunk_id, match_kind, digest_auth, trunk_error) = match &trunk_step.result {
        Ok(m) => (
            m.trunk_id().to_owned(),
            match m.kind {
                TrunkMatchKind::Specific => "specific",
                TrunkMatchKind::Default => "default",
                TrunkMatchKind::Unmatched => "unmatched",
            },
            m.digest_auth().is_some(),
            None,
        ),
        Err(e) => (String::new(), "none", false, Some(e)),
    };
    let trunk = TrunkExplanation {
        id: trunk_id.clone(),
        match_kind: match_kind.to_owned(),
        digest_auth,
        error: trunk_error.map(ToString::to_string),
        passed_over: trunk_step.passed_over.iter().map(Into::into).collect(),
    };
    let trunk_words = if trunk_id.is_empty() {
        "no trunk".to_owned()
    } else {
        format!("trunk {trunk_id}")
    };
    let mut accepted = false;
    let (verdict, dispatch) = match (&trunk_error, &report.dispatch) {
        (Some(e), _) => (refused(e), None),
        (None, None) => ("refused: no dispatch decision".to_owned(), None),
        (None, Some(d)) => {
            let passed_over = d.passed_over.iter().map(Into::into).collect();
            match &d.result {
                Ok(DispatchDecision::Accept(r)) => {
                    accepted = true;
                    (
                        format!(
                            "accepted: {trunk_words}, rule {}, room {}",
                            r.rule_id, r.room_name
                        ),
                        Some(DispatchExplanation {
                            rule_id: r.rule_id.clone(),
                            request_pin: false,
                            room_name: r.room_name.clone(),
                            participant_identity: r.participant_identity.clone(),
                            participant_name: r.participant_name.clone(),
                            error: None,
                            passed_over,
                        }),
                    )
                }
                Ok(DispatchDecision::RequestPin { rule_id }) => {
                    accepted = true;
                    (
                        format!(
                            "accepted: {trunk_words}, rule {rule_id} asks the caller for a PIN"
                        ),
                        Some(DispatchExplanation {
                            rule_id: rule_id.clone(),
                            request_pin: true,
                            room_name: String::new(),
                            participant_identity: String::new(),
                            participant_name: String::new(),
                            error: None,
                            passed_over,
                        }),
                    )
                }
                Err(e) => (
                    refused(e),
                    Some(DispatchExplanation {
                        rule_id: String::new(),
                        request_pin: false,
                        room_name: String::new(),
                        participant_identity: String::new(),
                        participant_name: String::new(),
                        error: Some(e.to_string()),
                        passed_over,
                    }),
                ),
            }
        }
    };
    ExplainCallResponse {
        verdict,
        accepted,
        trunk,
        dispatch,
    }
}

fn refused(e: &RoutingError) -> String {
    let (status, reason) = refusal_status(e);
    format!("refused: {status} {reason}: {e}")
}
