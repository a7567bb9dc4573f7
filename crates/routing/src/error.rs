//! Errors of routing decisions and validation, each with the Twirp code LiveKit
//! answers with, so the API crate maps them without guessing.

use std::fmt;

/// The Twirp error code an error is reported with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or violates a rule (HTTP 400).
    InvalidArgument,
    /// The stored configuration does not allow the operation (HTTP 412).
    FailedPrecondition,
    /// The object does not exist (HTTP 404).
    NotFound,
    /// Something inside switchboard failed (HTTP 500).
    Internal,
    /// A dependency (the store) cannot be reached or is too busy (HTTP 503).
    Unavailable,
}

impl ErrorCode {
    /// The code as Twirp spells it on the wire (`"invalid_argument"`...).
    pub fn as_twirp_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status Twirp sends with this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::FailedPrecondition => 412,
            ErrorCode::NotFound => 404,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_twirp_str())
    }
}

/// Which kind of object an error is about; it picks LiveKit's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// An inbound or outbound trunk.
    Trunk,
    /// A dispatch rule.
    DispatchRule,
}

/// Every way a routing decision or a create/update validation can fail.
///
/// `Display` gives LiveKit's exact text where LiveKit has one, so SDK users see
/// the messages they know; [`RoutingError::code`] gives the Twirp code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    // ---- inbound trunk ----
    /// An inbound trunk that anyone could call: no auth, no addresses, no numbers.
    #[error("for security, one of the fields must be set: AuthUsername+AuthPassword, AllowedAddresses or Numbers")]
    InboundTrunkUnprotected,
    /// Two inbound trunks would both take the same calls (`numbers` x `allowed_numbers`).
    #[error("Conflicting inbound SIP Trunks: {first} and {second}, using the same number(s) {numbers} without AllowedNumbers set")]
    ConflictingInboundTrunks {
        /// Go-quoted ID of the trunk being checked (`"<new>"` for a new one).
        first: String,
        /// Go-quoted ID of the trunk it collides with.
        second: String,
        /// The numbers of the first trunk, printed as LiveKit does (`<any>` when empty).
        numbers: String,
    },
    /// Two inbound trunks would both take the same calls from one allowed caller.
    #[error("Conflicting inbound SIP Trunks: {first} and {second}, using the same number(s) {numbers} and AllowedNumber {allowed_number}")]
    ConflictingInboundTrunksAllowedNumber {
        /// Go-quoted ID of the trunk being checked (`"<new>"` for a new one).
        first: String,
        /// Go-quoted ID of the trunk it collides with.
        second: String,
        /// The numbers of the first trunk, printed as LiveKit does.
        numbers: String,
        /// Go-quoted allowed caller number shared by both.
        allowed_number: String,
    },

    // ---- outbound trunk ----
    /// An outbound trunk needs at least one number to call from.
    #[error("no trunk numbers specified")]
    OutboundTrunkNoNumbers,
    /// An outbound trunk needs an address to send INVITEs to.
    #[error("no outbound address specified")]
    OutboundTrunkNoAddress,
    /// The address carries `transport=`, which is a field of its own.
    #[error("trunk transport should be set as a field, not a URI parameter")]
    TransportInAddress,
    /// The address (or from_host) is a SIP URI, not a host.
    #[error("trunk {field} should be a hostname or IP, not SIP URI")]
    AddressIsSipUri {
        /// `address`, `from host` or `hostname`.
        field: &'static str,
    },

    // ---- dispatch rule ----
    /// A dispatch rule without a rule kind (direct, individual, callee).
    #[error("missing rule")]
    MissingRule,
    /// A create request carried a dispatch rule ID.
    #[error("rule id must not be set")]
    RuleIdSet,
    /// A create request carried a trunk ID.
    #[error("trunk id must not be set")]
    TrunkIdSet,
    /// Two dispatch rules with one (trunk, caller, callee, PIN) scope.
    #[error("Dispatch rule for the same trunk, inbound number, number, and PIN combination already exists in dispatch rule {rule_id} {rule_name}")]
    ConflictingDispatchRules {
        /// Go-quoted ID of the rule already there.
        rule_id: String,
        /// Go-quoted name of the rule already there (`"<blank name>"` when empty).
        rule_name: String,
    },

    // ---- media and headers ----
    /// A codec name that cannot be one.
    #[error("invalid codec name {0:?}: must be non-empty, without whitespace or '/'")]
    InvalidCodecName(String),
    /// media_timeout below zero or above 10 minutes.
    #[error("media timeout must be between 0 and 10m")]
    InvalidMediaTimeout,
    /// A header name with characters outside the SIP token set, or too long.
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    /// A header switchboard must own (Call-ID, CSeq...) set by the user.
    #[error("header {0:?} is not allowed to be set")]
    ForbiddenHeader(String),
    /// A header value too long or with control characters.
    #[error("invalid value for header {0:?}")]
    InvalidHeaderValue(String),

    // ---- ListUpdate ----
    /// A ListUpdate with no operation.
    #[error("unsupported list update operation")]
    ListUpdateEmpty,
    /// A ListUpdate that clears and changes at once.
    #[error("cannot clear and change the list at the same time")]
    ListUpdateClearAndChange,
    /// A ListUpdate that sets and adds/removes at once.
    #[error("cannot set and change the list at the same time")]
    ListUpdateSetAndChange,
    /// A ListUpdate with an empty string in it.
    #[error("empty element in the list")]
    ListUpdateEmptyElement,

    // ---- update requests ----
    /// Update without the object ID.
    #[error("{} id must be set", kind_word(*.0))]
    MissingId(ObjectKind),
    /// Update without replace or update.
    #[error("missing or unsupported update action")]
    MissingUpdateAction,
    /// Replace whose info names another object.
    #[error("{} id in the info must be empty or match the id in the update", kind_word(*.0))]
    ReplaceIdMismatch(ObjectKind),
    /// An `allowed_addresses` entry that is neither an IP nor a CIDR.
    #[error("invalid allowed address {}: must be an IP or a CIDR", go_quote(.0))]
    InvalidAllowedAddress(String),
    /// An `allowed_addresses` host name: LiveKit compares it with the From
    /// host, which any caller can write, so switchboard refuses it.
    #[error("allowed address {}: host names are not accepted, the From host proves nothing about where a call comes from; give the carrier's IP addresses or CIDR ranges", go_quote(.0))]
    HostNameAllowedAddress(String),
    /// The object to get/update does not exist.
    #[error("requested sip {} does not exist", match .0 { ObjectKind::Trunk => "trunk", ObjectKind::DispatchRule => "dispatch rule" })]
    NotFound(ObjectKind),

    // ---- CreateSIPParticipant / TransferSIPParticipant ----
    /// Neither a stored trunk, an inline trunk nor a From number.
    #[error("missing sip trunk id and sip number")]
    MissingTrunkAndNumber,
    /// An inline trunk without a host.
    #[error("no outbound hostname specified")]
    OutboundConfigNoHostname,
    /// No number to call.
    #[error("missing sip callee number")]
    MissingCallee,
    /// `sip_call_to` given as a SIP URI.
    #[error("SipCallTo should be a phone number or SIP user, not a full SIP URI")]
    CalleeIsUri,
    /// `to_user_override` that cannot be a SIP user.
    #[error("to_user_override must be SIP token characters, without '@'")]
    InvalidToUserOverride,
    /// No room.
    #[error("missing room name")]
    MissingRoomName,
    /// display_name longer than 128 bytes.
    #[error("DisplayName too long (max 128 characters)")]
    DisplayNameTooLong,
    /// display_name that is not a valid Go double-quoted string body.
    #[error("DisplayName must be a valid quoted string: invalid syntax")]
    DisplayNameNotQuotable,
    /// destination.city without country or region.
    #[error("if city is specified, country or region must also be specified")]
    DestinationCityAlone,
    /// destination.country that is not an ISO 3166-1 alpha-2 code.
    #[error("country must be a valid ISO 3166-1 alpha-2 code (2-letter like 'US', 'IN', 'UK')")]
    InvalidCountry,
    /// Transfer without a participant.
    #[error("missing participant identity")]
    MissingParticipantIdentity,
    /// Transfer without a target.
    #[error("missing transfer to")]
    MissingTransferTo,
    /// Transfer target that is not a sip:, sips: or tel: URI.
    #[error("transfer_to must be a valid SIP or TEL URI (sip:, sips: or tel:)")]
    InvalidTransferTo,
    /// A field that would reach a SIP message holds CR, LF or another
    /// control character (it could add headers or end the message early).
    #[error("{0} must not contain control characters (CR, LF, NUL, ...)")]
    ControlCharacters(String),
    /// A user part or URI field holds whitespace, quotes or angle brackets,
    /// which would change the structure of the header it goes into.
    #[error("{0} must not contain whitespace, quotes or angle brackets")]
    UnsafeUriCharacters(String),

    // ---- call routing ----
    /// More than one number-specific trunk takes this call.
    #[error("Multiple SIP Trunks matched for {}", go_quote(.0))]
    MultipleTrunks(String),
    /// More than one wildcard trunk takes this call.
    #[error("Multiple default SIP Trunks matched for {}", go_quote(.0))]
    MultipleDefaultTrunks(String),
    /// No trunk took the call and unmatched calls are not allowed (switchboard policy).
    #[error("No SIP Trunk matched for {}", go_quote(.0))]
    NoTrunk(String),
    /// There are no dispatch rules at all.
    #[error("No SIP Dispatch Rules defined")]
    NoDispatchRulesDefined,
    /// No rule took the call and no trunk matched either.
    #[error("No SIP Trunk or Dispatch Rules matched for {}", go_quote(.0))]
    NoTrunkOrDispatchRule(String),
    /// A trunk matched but no rule took the call.
    #[error("No SIP Dispatch Rules matched for {}", go_quote(.0))]
    NoDispatchRule(String),
}

fn kind_word(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Trunk => "trunk",
        ObjectKind::DispatchRule => "rule",
    }
}

impl RoutingError {
    /// The Twirp code LiveKit answers this error with.
    ///
    /// Update-time validation failures are `invalid_argument` here, where
    /// LiveKit's server leaks them as `unknown` (a documented quirk we fix).
    pub fn code(&self) -> ErrorCode {
        use RoutingError::*;
        match self {
            NotFound(_) => ErrorCode::NotFound,
            MultipleTrunks(_)
            | MultipleDefaultTrunks(_)
            | NoTrunk(_)
            | NoDispatchRulesDefined
            | NoTrunkOrDispatchRule(_)
            | NoDispatchRule(_) => ErrorCode::FailedPrecondition,
            _ => ErrorCode::InvalidArgument,
        }
    }
}

/// Quotes a string the way Go's `%q` does, so messages match LiveKit's byte for byte
/// on ordinary input.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let code = c as u32;
                if code < 0x80 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prints a list of numbers as LiveKit's conflict messages do: `<any>` when
/// empty, otherwise Go's `%q` of a string slice (`["+1" "+2"]`).
pub fn go_quote_list(items: &[String]) -> String {
    if items.is_empty() {
        return "<any>".to_owned();
    }
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}
