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

/// Most Via headers walked back through trusted proxies.
const MAX_TRUSTED_HOPS: usize = 8;

/// Where a request really came from when it reached us through proxies we
/// trust (a load balancer in front of replicas): the first hop, walking the
/// Via headers down from the top, whose address is not a trusted proxy.
/// Each hop's address is its Via's `received` (stamped by the proxy that
/// took the request from it) or, without one, its sent-by IP, with `rport`
/// or the Via port. A request whose packet did not come from a trusted
/// proxy is its packet's source, whatever its Vias say; so is one whose
/// chain is unreadable (a host name, no Via below the proxy's).
pub fn original_source(
    headers: &super::Headers,
    packet_source: std::net::SocketAddr,
    trusted: &[ipnet::IpNet],
) -> std::net::SocketAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|n| n.contains(&ip.to_canonical()));
    let mut source = packet_source;
    if !is_trusted(source.ip()) {
        return source;
    }
    // The top Via is the nearest proxy's own; the one below it the hop
    // that proxy heard from.
    for value in headers
        .list(&super::HeaderName::Via)
        .skip(1)
        .take(MAX_TRUSTED_HOPS)
    {
        let Ok(via) = Via::parse(value) else {
            return source;
        };
        let received = via
            .param("received")
            .flatten()
            .and_then(|r| r.parse::<std::net::IpAddr>().ok());
        let ip = match (received, &via.host) {
            (Some(ip), _) => ip,
            (None, Host::Ip(ip)) => *ip,
            (None, Host::Name(_)) => return source,
        };
        let port = via
            .param("rport")
            .flatten()
            .and_then(|p| p.parse::<u16>().ok())
            .or(via.port)
            .unwrap_or(5060);
        source = std::net::SocketAddr::new(ip.to_canonical(), port);
        if !is_trusted(ip) {
            return source;
        }
    }
    source
}

#[cfg(test)]
mod original_source_tests {
    use super::*;
    use crate::message::{HeaderName, Headers};

    fn headers(vias: &[&str]) -> Headers {
        let mut h = Headers::new();
        for via in vias {
            h.push(HeaderName::Via, (*via).to_string());
        }
        h
    }

    fn source(vias: &[&str], packet: &str) -> String {
        let trusted: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/24".parse().unwrap_or_else(|_| unreachable!())];
        let packet = packet.parse().unwrap_or_else(|_| unreachable!());
        original_source(&headers(vias), packet, &trusted).to_string()
    }

    #[test]
    fn behind_a_trusted_proxy_the_caller_is_the_via_below_it() {
        let vias = [
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKp",
            "SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKc",
        ];
        assert_eq!(source(&vias, "10.0.0.1:5060"), "198.51.100.7:5070");
        // received and rport stamped by the proxy win over sent-by.
        let natted = [
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp",
            "SIP/2.0/UDP 192.168.1.5:5060;received=203.0.113.9;rport=40000;branch=z9hG4bKc",
        ];
        assert_eq!(source(&natted, "10.0.0.1:5060"), "203.0.113.9:40000");
        // Two trusted proxies in a row.
        let two = [
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa",
            "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb",
            "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKc",
        ];
        assert_eq!(source(&two, "10.0.0.1:5060"), "198.51.100.7:5060");
    }

    #[test]
    fn vias_from_anyone_else_are_not_believed() {
        let forged = [
            "SIP/2.0/UDP 203.0.113.66;branch=z9hG4bKx",
            "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKc",
        ];
        assert_eq!(source(&forged, "203.0.113.66:5060"), "203.0.113.66:5060");
        // Only the hop the proxy heard from counts, not what that hop
        // wrote below its own Via.
        let chain = [
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp",
            "SIP/2.0/UDP 203.0.113.66;branch=z9hG4bKa",
            "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKc",
        ];
        assert_eq!(source(&chain, "10.0.0.1:5060"), "203.0.113.66:5060");
        // Unreadable chains fall back to the packet's source.
        assert_eq!(
            source(&["SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp"], "10.0.0.1:5060"),
            "10.0.0.1:5060"
        );
        let named = [
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp",
            "SIP/2.0/UDP pbx.example;branch=z9hG4bKc",
        ];
        assert_eq!(source(&named, "10.0.0.1:5060"), "10.0.0.1:5060");
    }
}
