//! What routing needs to know about an incoming call, independent of SIP parsing.

use std::net::IpAddr;

/// An incoming call as routing sees it. The gateway fills it from the INVITE;
/// `switchboard sip explain` fills it from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInput {
    /// The `SCL_…` call ID (attribute `sip.callID`).
    pub call_id: String,
    /// The From header user: the caller's number or SIP user.
    pub from_user: String,
    /// The From header host (compared with host names in `allowed_addresses`).
    pub from_host: String,
    /// The To header user: the called number. Trunks match on this, as in LiveKit.
    pub to_user: String,
    /// The Request-URI user; not used to match, but reported when it would
    /// have matched where the To user did not.
    pub request_uri_user: String,
    /// The packet source address. `None` skips the `allowed_addresses` check
    /// (only sensible for a dry run that does not know it).
    pub source_ip: Option<IpAddr>,
    /// The PIN the caller entered, if the PIN prompt ran.
    pub pin: Option<String>,
    /// The caller pressed only `#` at the PIN prompt.
    pub no_pin: bool,
    /// The INVITE headers, in order, for `include_headers` and `headers_to_attributes`.
    pub headers: Vec<(String, String)>,
    /// The SIP Call-ID header (attribute `sip.callIDFull`), if known.
    pub sip_call_id: String,
    /// The From tag (attribute `sip.callTag`), if known.
    pub from_tag: String,
}

impl CallInput {
    /// The entered PIN, treating an empty one as none.
    pub(crate) fn entered_pin(&self) -> Option<&str> {
        self.pin.as_deref().filter(|p| !p.is_empty())
    }
}
