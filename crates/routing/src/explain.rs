//! Why a trunk or a dispatch rule did not take a call: the structured
//! explanation behind `switchboard sip explain` and the rejection logs.

use std::fmt;
use std::net::IpAddr;

use crate::error::ObjectKind;

/// One trunk or rule that was passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedOver {
    /// Trunk or rule.
    pub kind: ObjectKind,
    /// Its ID (`ST_…` / `SDR_…`).
    pub id: String,
    /// Its name, for humans.
    pub name: String,
    /// The reason.
    pub reason: PassOverReason,
}

/// Why a trunk or rule did not take the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOverReason {
    /// Trunk: the caller is not in `allowed_numbers`.
    CallerNotAllowed {
        /// The From user.
        caller: String,
    },
    /// Trunk: the source matches no `allowed_addresses` entry.
    SourceNotAllowed {
        /// The packet source.
        source_ip: IpAddr,
        /// The From host (compared with host-name entries).
        from_host: String,
    },
    /// Trunk: the called number is not among the trunk's `numbers`.
    CalledNumberNotInTrunk {
        /// The To user.
        called: String,
        /// The Request-URI user would have matched: a common carrier set-up mistake.
        request_uri_would_match: Option<String>,
    },
    /// Trunk: a wildcard trunk that matched, but a number-specific trunk wins.
    LostToSpecificTrunk {
        /// The winning trunk.
        winner: String,
    },
    /// Trunk: accepts any caller, but a trunk for the same number lists this caller.
    LostToCallerSpecificTrunk {
        /// The winning trunk.
        winner: String,
    },
    /// Trunk or rule: several matched equally and the call is refused as ambiguous.
    Ambiguous,
    /// Rule: its `trunk_ids` do not include the matched trunk.
    TrunkNotInRule {
        /// The matched trunk, if any.
        trunk_id: Option<String>,
    },
    /// Rule: the caller is not in the rule's `inbound_numbers` (exact match).
    CallerNotInRule {
        /// The From user.
        caller: String,
    },
    /// Rule: the called number is not in the rule's `numbers` (exact match).
    CalledNotInRule {
        /// The To user.
        called: String,
    },
    /// Rule: PIN-protected, and the caller chose to enter no PIN.
    PinRequiredButSkipped,
    /// Rule: open, but the caller entered a PIN (PIN rules only).
    OpenRuleButPinEntered,
    /// Rule: the entered PIN is not this rule's.
    WrongPin,
    /// Rule: matched, but a rule with better priority took the call.
    LowerPriority {
        /// The winning rule.
        winner: String,
        /// This rule's priority (lower is better).
        priority: u32,
        /// The winner's priority.
        winner_priority: u32,
    },
    /// Rule: a wildcard rule that matched, but a rule naming the trunk wins.
    LostToTrunkRule {
        /// The winning rule.
        winner: String,
    },
    /// Rule: it collides with another stored rule, so neither can be used.
    Conflicting {
        /// The other rule.
        other: String,
    },
}

impl fmt::Display for PassedOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ObjectKind::Trunk => "trunk",
            ObjectKind::DispatchRule => "rule",
        };
        write!(f, "{what} {}", self.id)?;
        if !self.name.is_empty() {
            write!(f, " ({})", self.name)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl fmt::Display for PassOverReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PassOverReason::*;
        match self {
            CallerNotAllowed { caller } => write!(f, "caller {caller:?} not in allowed_numbers"),
            SourceNotAllowed { source_ip, from_host } => write!(
                f,
                "source {source_ip} (From host {from_host:?}) not in allowed_addresses"
            ),
            CalledNumberNotInTrunk { called, request_uri_would_match } => {
                write!(f, "called number {called:?} (To user) not in numbers")?;
                if let Some(ruri) = request_uri_would_match {
                    write!(f, "; the Request-URI user {ruri:?} would match: the carrier puts the number in the Request-URI, not in To")?;
                }
                Ok(())
            }
            LostToSpecificTrunk { winner } => {
                write!(f, "wildcard trunk, but trunk {winner} lists the called number")
            }
            LostToCallerSpecificTrunk { winner } => {
                write!(f, "accepts any caller, but trunk {winner} lists this caller in allowed_numbers")
            }
            Ambiguous => write!(f, "matched together with another trunk or rule: ambiguous, call refused"),
            TrunkNotInRule { trunk_id: Some(t) } => write!(f, "trunk {t} not in the rule's trunk_ids"),
            TrunkNotInRule { trunk_id: None } => {
                write!(f, "rule is limited to trunk_ids and no trunk matched the call")
            }
            CallerNotInRule { caller } => {
                write!(f, "caller {caller:?} not in the rule's inbound_numbers (exact match)")
            }
            CalledNotInRule { called } => {
                write!(f, "called number {called:?} not in the rule's numbers (exact match)")
            }
            PinRequiredButSkipped => write!(f, "rule needs a PIN and the caller entered none"),
            OpenRuleButPinEntered => write!(f, "open rule, but the caller entered a PIN"),
            WrongPin => write!(f, "entered PIN is not this rule's PIN"),
            LowerPriority { winner, priority, winner_priority } => write!(
                f,
                "matched with priority {priority}, but rule {winner} has better priority {winner_priority}"
            ),
            LostToTrunkRule { winner } => {
                write!(f, "wildcard rule, but rule {winner} names the matched trunk")
            }
            Conflicting { other } => {
                write!(f, "conflicts with rule {other} (same trunk, numbers and PIN)")
            }
        }
    }
}
