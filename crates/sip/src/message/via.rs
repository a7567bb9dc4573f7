//! One Via element: `sent-protocol LWS sent-by *( SEMI via-params )`.

use super::grammar::{parse_params, skip_ws, take_token};
use super::uri::{split_host_port, Host};
use thiserror::Error;

/// The RFC 3261 branch prefix that marks a transaction ID (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Why a Via element was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ViaError {
    /// The `SIP/2.0/transport` part is malformed.
    #[error("malformed sent-protocol")]
    Protocol,
    /// The host or port is malformed.
    #[error("malformed sent-by")]
    SentBy,
    /// A parameter is malformed.
    #[error("malformed via parameter")]
    Parameter,
}

/// A parsed Via element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The protocol version (normally "2.0").
    pub version: String,
    /// The transport token, uppercased (UDP, TCP, TLS, SCTP, WS, ...).
    pub transport: String,
    /// The sent-by host.
    pub host: Host,
    /// The sent-by port, if given.
    pub port: Option<u16>,
    /// Parameters, names lowercased, values as written.
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parses one element of a Via header (already split at commas).
    pub fn parse(value: &str) -> Result<Via, ViaError> {
        let s = skip_ws(value);
        let (name, s) = take_token(s).ok_or(ViaError::Protocol)?;
        let s = skip_ws(s).strip_prefix('/').ok_or(ViaError::Protocol)?;
        let (version, s) = take_token(skip_ws(s)).ok_or(ViaError::Protocol)?;
        let s = skip_ws(s).strip_prefix('/').ok_or(ViaError::Protocol)?;
        let (transport, s) = take_token(skip_ws(s)).ok_or(ViaError::Protocol)?;
        if !name.eq_ignore_ascii_case("SIP") {
            return Err(ViaError::Protocol);
        }
        if !s.starts_with([' ', '\t']) {
            return Err(ViaError::SentBy);
        }
        let s = skip_ws(s);
        // sent-by = host [ COLON port ], with SWS allowed around the colon.
        let host_end = if s.starts_with('[') {
            s.find(']').map(|i| i + 1).ok_or(ViaError::SentBy)?
        } else {
            s.find([';', ' ', '\t', ':']).unwrap_or(s.len())
        };
        let host_text = &s[..host_end];
        let mut rest = skip_ws(&s[host_end..]);
        let mut port_text = None;
        if let Some(after_colon) = rest.strip_prefix(':') {
            let after_colon = skip_ws(after_colon);
            let end = after_colon
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_colon.len());
            port_text = Some(&after_colon[..end]);
            rest = &after_colon[end..];
        }
        let hostport = match port_text {
            Some(port) => format!("{host_text}:{port}"),
            None => host_text.to_string(),
        };
        let (host, port) = split_host_port(&hostport).map_err(|_| ViaError::SentBy)?;
        let host = Host::parse(host).map_err(|_| ViaError::SentBy)?;
        let params = parse_params(rest).ok_or(ViaError::Parameter)?;
        Ok(Via {
            version: version.to_string(),
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    /// The value of a parameter (`Some(None)` for a flag like `rport`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// The branch, when it marks an RFC 3261 transaction: the magic cookie
    /// followed by at least one more character. A branch that is only the
    /// cookie, or none at all, means an RFC 2543 peer (RFC 4475 §3.2.1).
    pub fn rfc3261_branch(&self) -> Option<&str> {
        self.branch()
            .filter(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The sent-by as `host[:port]` text, for transaction matching.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_around_slashes_and_equals() {
        let via = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.branch(), Some("390skdjuw"));
        assert_eq!(via.rfc3261_branch(), None);
        let via =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(via.rfc3261_branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(via.host, Host::Name("spindle.example.com".into()));
    }

    #[test]
    fn ports_ipv6_and_flag_params() {
        let via = Via::parse("SIP/2.0/UDP [2001:db8::1]:5070;rport;branch=z9hG4bKx").unwrap();
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.param("rport"), Some(None));
        assert_eq!(via.sent_by(), "[2001:db8::1]:5070");
        let via = Via::parse("SIP/2.0/UDP host : 5060").unwrap();
        assert_eq!(via.port, Some(5060));
    }

    #[test]
    fn only_the_magic_cookie_is_an_rfc2543_branch() {
        let via = Via::parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK").unwrap();
        assert_eq!(via.rfc3261_branch(), None);
    }

    #[test]
    fn malformed_vias_are_rejected() {
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("SIP/2.0 192.0.2.1").is_err());
        assert!(Via::parse("HTTP/1.1/TCP host").is_err());
        assert!(Via::parse("SIP/2.0/UDP host:port").is_err());
        assert!(Via::parse("SIP/2.0/UDPhost").is_err());
    }
}
