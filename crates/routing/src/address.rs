//! `allowed_addresses` entries: an IP, a CIDR prefix, or a host name compared
//! with the From host.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// One parsed `allowed_addresses` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressMask {
    /// A single address; the source IP must equal it.
    Ip(IpAddr),
    /// A CIDR prefix; the source IP must fall inside it.
    Net(IpNet),
    /// A host name. LiveKit compares it with the From header host, which any
    /// caller can forge; switchboard refuses new ones at create time and
    /// never lets one match (a trunk stored before fails closed).
    Host(String),
}

impl AddressMask {
    /// Parses an entry; `None` for anything that is not an IP, a CIDR or a
    /// plausible host name (for example `1.2.3.4:5060` or `sip://x`).
    pub fn parse(mask: &str) -> Option<AddressMask> {
        let unbracketed = strip_brackets(mask);
        if let Ok(ip) = IpAddr::from_str(&unbracketed) {
            return Some(AddressMask::Ip(canonical(ip)));
        }
        if unbracketed.contains('/') {
            return IpNet::from_str(&unbracketed).ok().map(AddressMask::Net);
        }
        is_host_name(mask).then(|| AddressMask::Host(mask.to_owned()))
    }

    /// Whether a call from `source_ip` with From host `from_host` passes this entry.
    pub fn matches(&self, source_ip: IpAddr, _from_host: &str) -> bool {
        let ip = canonical(source_ip);
        match self {
            AddressMask::Ip(mask) => *mask == ip,
            AddressMask::Net(net) => net.contains(&ip),
            AddressMask::Host(_) => false,
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack socket reports) is
/// compared as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// `[::1]` and `[::]/8` are accepted for IPv6, as LiveKit documents.
fn strip_brackets(mask: &str) -> String {
    if let Some(rest) = mask.strip_prefix('[') {
        if let Some((inner, tail)) = rest.split_once(']') {
            return format!("{inner}{tail}");
        }
    }
    mask.to_owned()
}

fn is_host_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mask_table() {
        // (mask, source ip, from host, matches)
        let cases = [
            ("1.2.3.4", "1.2.3.4", "x", true),
            ("1.2.3.4", "1.2.3.5", "x", false),
            ("10.0.0.0/8", "10.9.8.7", "x", true),
            ("10.0.0.1/8", "10.9.8.7", "x", true),
            ("10.0.0.0/8", "11.0.0.1", "x", false),
            ("[::1]", "::1", "x", true),
            ("[2001:db8::]/32", "2001:db8::5", "x", true),
            ("2001:db8::/32", "2001:db9::5", "x", false),
            ("1.2.3.4", "::ffff:1.2.3.4", "x", true),
            // A From host is no source check: host names never match.
            ("sip.example.com", "9.9.9.9", "sip.example.com", false),
            ("sip.example.com", "9.9.9.9", "evil.example.com", false),
        ];
        for (mask, source, host, want) in cases {
            let parsed = AddressMask::parse(mask).unwrap_or_else(|| panic!("{mask} parses"));
            assert_eq!(
                parsed.matches(ip(source), host),
                want,
                "{mask} vs {source}/{host}"
            );
        }
    }

    #[test]
    fn malformed_masks_are_refused() {
        for mask in [
            "",
            "1.2.3.4:5060",
            "sip://1.2.3.4",
            "1.2.3.4, 5.6.7.8",
            "10.0.0.0/33",
            "a b",
            "*.example.com",
            "(x)",
        ] {
            assert_eq!(AddressMask::parse(mask), None, "{mask:?}");
        }
    }
}
