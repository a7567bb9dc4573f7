//! Session timers (RFC 4028): the headers and the arithmetic. A call whose
//! peer disappeared without a BYE is found and ended; a long call through
//! a proxy that expects refreshes (the classic 15-minute drop) is kept up.

use std::time::Duration;
use switchboard_sip::message::{HeaderName, Headers, ResponseSpec};

/// Who sends the refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The party that sent the INVITE.
    Uac,
    /// The party that answered it.
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` value: `1800;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// The interval.
    pub interval: Duration,
    /// The refresher, when named.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses a header value; `None` when malformed.
    pub fn parse(value: &str) -> Option<SessionExpires> {
        let mut parts = value.split(';').map(str::trim);
        let secs = delta_seconds(parts.next()?)?;
        let refresher = parts.find_map(|p| {
            let (name, value) = p.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("refresher") {
                return None;
            }
            match value.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            }
        });
        Some(SessionExpires {
            interval: secs,
            refresher,
        })
    }

    /// The header value.
    pub fn to_header(self) -> String {
        match self.refresher {
            Some(r) => format!("{};refresher={}", self.interval.as_secs(), r.as_str()),
            None => self.interval.as_secs().to_string(),
        }
    }

    /// The `Session-Expires` of a message, if any (and well formed).
    pub fn of(headers: &Headers) -> Option<SessionExpires> {
        headers
            .get(&HeaderName::SessionExpires)
            .and_then(SessionExpires::parse)
    }
}

/// Whether a message says it supports the `timer` extension.
pub fn supports_timer(headers: &Headers) -> bool {
    headers
        .get_all(&HeaderName::Supported)
        .chain(headers.get_all(&HeaderName::Require))
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim().eq_ignore_ascii_case("timer"))
}

/// The `Min-SE` of a message (a 422's floor for the interval).
pub fn min_se(headers: &Headers) -> Option<Duration> {
    headers
        .get(&HeaderName::MinSe)
        .and_then(|v| v.split(';').next())
        .and_then(|v| delta_seconds(v.trim()))
}

/// The largest delta-seconds RFC 3261 §20 asks a receiver to honour
/// (2^32 - 1); larger values, however many digits, are read as it.
const MAX_DELTA_SECONDS: u64 = u32::MAX as u64;

/// A delta-seconds value (digits only), saturating at [`MAX_DELTA_SECONDS`].
fn delta_seconds(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = text
        .parse::<u64>()
        .unwrap_or(u64::MAX)
        .min(MAX_DELTA_SECONDS);
    Some(Duration::from_secs(secs))
}

/// When we refresh a session we are the refresher of: half-way.
pub fn refresh_after(interval: Duration) -> Duration {
    interval / 2
}

/// When we give up on a session the peer should refresh (RFC 4028 §10:
/// the interval minus a third of it, or minus 32 s, whichever is less).
pub fn expire_after(interval: Duration) -> Duration {
    interval.saturating_sub((interval / 3).min(Duration::from_secs(32)))
}

/// The session timer of a running call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    /// The negotiated interval.
    pub interval: Duration,
    /// We send the refreshes (else the peer does, and we watch).
    pub we_refresh: bool,
}

/// Who refreshes a session the peer's request sets up or refreshes (RFC
/// 4028 §9, we are the UAS): the refresher the request names, else the
/// peer when it supports timers, else us.
pub fn refresher_for_request(asked: Option<SessionExpires>, peer_supports: bool) -> Refresher {
    asked
        .and_then(|se| se.refresher)
        .unwrap_or(if peer_supports {
            Refresher::Uac
        } else {
            Refresher::Uas
        })
}

/// The session timer a 2xx to our INVITE sets up (RFC 4028 §7.2, we are
/// the UAC): its interval, and us as the refresher unless it names `uas`.
/// `None` when it has no Session-Expires: the peer runs no timer.
pub fn timer_from_answer(headers: &Headers) -> Option<SessionTimer> {
    SessionExpires::of(headers).map(|se| SessionTimer {
        interval: se.interval,
        we_refresh: se.refresher != Some(Refresher::Uas),
    })
}

/// Adds the 2xx's session-timer headers (RFC 4028 §9): the interval and
/// refresher agreed, and `Require: timer`, which is a MUST when the peer
/// refreshes and a SHOULD when we do and the peer supports timers.
pub fn answer_session_timer(
    spec: ResponseSpec,
    interval: Duration,
    refresher: Refresher,
    peer_supports: bool,
) -> ResponseSpec {
    let spec = spec.header(
        HeaderName::SessionExpires,
        SessionExpires {
            interval,
            refresher: Some(refresher),
        }
        .to_header(),
    );
    if refresher == Refresher::Uac || peer_supports {
        spec.header(HeaderName::Require, "timer")
    } else {
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_refreshes_follows_rfc_4028() {
        let named = |refresher| {
            Some(SessionExpires {
                interval: Duration::from_secs(1800),
                refresher: Some(refresher),
            })
        };
        // As the UAS: the request's choice, else the peer if it can.
        assert_eq!(
            refresher_for_request(named(Refresher::Uas), true),
            Refresher::Uas
        );
        assert_eq!(
            refresher_for_request(named(Refresher::Uac), false),
            Refresher::Uac
        );
        assert_eq!(refresher_for_request(None, true), Refresher::Uac);
        assert_eq!(refresher_for_request(None, false), Refresher::Uas);

        // As the UAC: us, unless the 2xx names uas.
        let mut headers = Headers::new();
        assert_eq!(timer_from_answer(&headers), None, "no timer at all");
        headers.push(HeaderName::SessionExpires, "1800");
        assert_eq!(
            timer_from_answer(&headers),
            Some(SessionTimer {
                interval: Duration::from_secs(1800),
                we_refresh: true
            })
        );
        let mut headers = Headers::new();
        headers.push(HeaderName::SessionExpires, "600;refresher=uas");
        assert_eq!(
            timer_from_answer(&headers).map(|t| (t.interval.as_secs(), t.we_refresh)),
            Some((600, false))
        );
    }

    #[test]
    fn values_parse_and_print() {
        let se = SessionExpires::parse("1800;refresher=uac").unwrap_or_else(|| unreachable!());
        assert_eq!(se.interval, Duration::from_secs(1800));
        assert_eq!(se.refresher, Some(Refresher::Uac));
        assert_eq!(se.to_header(), "1800;refresher=uac");
        let se = SessionExpires::parse(" 90 ; Refresher = UAS ").unwrap_or_else(|| unreachable!());
        assert_eq!(se.refresher, Some(Refresher::Uas));
        assert_eq!(SessionExpires::parse("90").map(|s| s.refresher), Some(None));
        assert_eq!(SessionExpires::parse("soon"), None);
        assert_eq!(SessionExpires::parse(""), None);
    }

    #[test]
    fn refreshes_come_half_way_and_expiry_before_the_end() {
        assert_eq!(
            refresh_after(Duration::from_secs(1800)),
            Duration::from_secs(900)
        );
        assert_eq!(
            expire_after(Duration::from_secs(1800)),
            Duration::from_secs(1768)
        );
        assert_eq!(
            expire_after(Duration::from_secs(90)),
            Duration::from_secs(60)
        );
        assert_eq!(expire_after(Duration::from_secs(3)), Duration::from_secs(2));
    }

    #[test]
    fn timer_support_is_read_from_supported_and_require() {
        let mut headers = Headers::new();
        headers.push(HeaderName::Supported, "100rel, Timer");
        assert!(supports_timer(&headers));
        let mut headers = Headers::new();
        headers.push(HeaderName::Supported, "replaces");
        assert!(!supports_timer(&headers));
    }

    #[test]
    fn huge_intervals_saturate_instead_of_overflowing() {
        let se = SessionExpires::parse("18446744073709551615;refresher=uas")
            .unwrap_or_else(|| unreachable!());
        assert_eq!(se.interval, Duration::from_secs(u64::from(u32::MAX)));
        let se =
            SessionExpires::parse("99999999999999999999999999").unwrap_or_else(|| unreachable!());
        assert_eq!(se.interval, Duration::from_secs(u64::from(u32::MAX)));
        assert_eq!(SessionExpires::parse("-5"), None);
        assert_eq!(SessionExpires::parse("+5"), None);
        let mut headers = Headers::new();
        headers.push(HeaderName::MinSe, "340282366920938463463374607431768211456");
        assert_eq!(
            min_se(&headers),
            Some(Duration::from_secs(u64::from(u32::MAX)))
        );
    }
}
