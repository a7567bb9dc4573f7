//! Pure routing policy for switchboard: number normalisation, inbound trunk
//! matching, dispatch rule selection and evaluation, create/update validation
//! and conflict detection, ListUpdate. No I/O, no async.
//!
//! The gateway builds a [`RoutingIndex`] from the store's snapshot, shares it
//! behind an `Arc`, and for each INVITE calls [`RoutingIndex::match_trunk`]
//! (then digest auth if [`TrunkMatch::digest_auth`] says so), then
//! [`RoutingIndex::dispatch`]. Every decision carries the trunks and rules
//! that were passed over and why ([`PassedOver`]); [`RoutingIndex::explain`]
//! does the same over every trunk and rule for `switchboard sip explain`.
//!
//! A called number in national form (`02079460000`) matches a trunk listing
//! it in E.164 (`+442079460000`) when no trunk lists it as written. For
//! outbound calls, [`format_number`] writes numbers in a trunk's
//! [`DialPlan`] (`+e164`, `e164` or `national`).
//!
//! Errors are [`RoutingError`]s whose `Display` is LiveKit's text and whose
//! [`RoutingError::code`] is the Twirp code to answer with.

mod address;
mod call;
mod dial_plan;
mod error;
mod evaluate;
mod explain;
pub mod ids;
mod index;
mod list_update;
mod number;
mod request;
mod update;
mod validate;

pub use address::AddressMask;
pub use call::CallInput;
pub use dial_plan::{
    country_of_number, format_number, is_region_code, national_alias, DialPlan, NumberFormat,
    NumberFormatError, UnknownNumberFormat, MAX_NUMBER_LEN,
};
pub use error::{go_quote, go_quote_list, ErrorCode, ObjectKind, RoutingError};
pub use evaluate::{
    attrs, effective_media, evaluate_dispatch, hashed_number, header_attributes, merge_media,
    participant_identity_and_name, proto_duration, room_name, DispatchResult,
    BUILTIN_HEADER_ATTRIBUTES,
};
pub use explain::{PassOverReason, PassedOver};
pub use ids::{new_id, IdPrefix, RandomSource};
pub use index::{
    dispatch_rule_priority, DigestAuth, DispatchDecision, DispatchReport, RouteReport,
    RoutingIndex, RoutingOptions, TrunkMatch, TrunkMatchKind, TrunkReport,
};
pub use list_update::{apply_list_update, validate_list_update};
pub use number::{normalize_number, numbers_equal};
pub use request::{
    is_country_code, is_go_quotable, validate_create_sip_participant, validate_destination,
    validate_outbound_config, validate_transfer_sip_participant, MAX_DISPLAY_NAME_LEN,
};
pub use update::{
    apply_dispatch_rule_action, apply_dispatch_rule_update, apply_inbound_trunk_action,
    apply_inbound_trunk_update, apply_outbound_trunk_action, apply_outbound_trunk_update,
    check_update_request, dispatch_rule_from_create_request, prepare_dispatch_rule_create,
    prepare_inbound_trunk_create, prepare_outbound_trunk_create,
};
pub use validate::{
    check_dispatch_rule_conflicts, check_inbound_trunk_conflicts, check_sip_text,
    check_sip_uri_text, header_warnings, is_valid_header_name, rule_kind, rule_pin, rule_room,
    validate_dispatch_rule, validate_header_keys, validate_header_values, validate_headers,
    validate_inbound_trunk, validate_media, validate_outbound_host, validate_outbound_trunk,
    MAX_MEDIA_TIMEOUT_SECS,
};

pub use livekit_protocol;
