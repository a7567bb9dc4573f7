//! Why an inbound call was refused, as a SIP status with honest words: every
//! refusal is a final response a carrier can act on (never silence, never
//! LiveKit's 486 "flood" for a routing miss).

use switchboard_sip::message::{HeaderName, ResponseSpec};

/// Why an inbound call was refused before it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No inbound trunk takes the call.
    NoMatchingTrunk,
    /// Several trunks take it equally: a configuration error.
    AmbiguousTrunk,
    /// The digest credentials were wrong.
    AuthenticationFailed,
    /// The trunk matched but no dispatch rule takes the call.
    NoMatchingDispatchRule,
    /// Several dispatch rules collide: a configuration error.
    AmbiguousDispatchRule,
    /// The SDP offer has nothing we can accept (codec, SRTP policy).
    MediaNotAcceptable(String),
    /// The SDP offer cannot be parsed.
    BadSdp(String),
    /// The INVITE carries no SDP offer (late offer is not supported).
    NoSdpOffer,
    /// The call limit is reached.
    AtCapacity,
    /// No RTP port pair is free.
    NoMediaPorts,
    /// The room cannot take another participant (full, or the rooms limit):
    /// a passing condition.
    RoomUnavailable(String),
    /// The caller was taken out of the room (removed, room deleted) before
    /// anyone answered: not worth retrying.
    RemovedWhileRinging,
    /// A room participant ended the call before it was answered
    /// (`lk.sip.EndCall`): declined.
    EndedWhileRinging,
    /// Nobody in the room answered within the ringing timeout: 480, or the
    /// dispatch rule's status (4xx–6xx).
    RingingTimeout {
        /// The status the caller gets.
        status: u16,
    },
    /// The session timer interval is below our Min-SE (RFC 4028).
    SessionIntervalTooSmall {
        /// Our Min-SE, in seconds.
        min_se: u64,
    },
    /// The rule streams the call to a bot that cannot be reached (or is
    /// asked for in a way that cannot work).
    StreamUnavailable {
        /// The configured status (`streams.unreachable_status`).
        status: u16,
        /// Why (no URL, no token: the bot's host and port at most).
        why: String,
    },
}

impl Refusal {
    /// The SIP status.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NoMatchingTrunk | Refusal::NoMatchingDispatchRule => 404,
            Refusal::AuthenticationFailed => 403,
            Refusal::BadSdp(_) => 400,
            Refusal::MediaNotAcceptable(_) | Refusal::NoSdpOffer => 488,
            Refusal::AtCapacity
            | Refusal::NoMediaPorts
            | Refusal::RoomUnavailable(_)
            | Refusal::RemovedWhileRinging => 503,
            Refusal::AmbiguousTrunk | Refusal::AmbiguousDispatchRule => 500,
            Refusal::RingingTimeout { status } => *status,
            Refusal::EndedWhileRinging => 603,
            Refusal::SessionIntervalTooSmall { .. } => 422,
            Refusal::StreamUnavailable { status, .. } => *status,
        }
    }

    /// The text of the Reason header (RFC 3326) and the log line.
    pub fn text(&self) -> String {
        match self {
            Refusal::NoMatchingTrunk => "No matching trunk".into(),
            Refusal::AmbiguousTrunk => "Several trunks match this call".into(),
            Refusal::AuthenticationFailed => "Authentication failed".into(),
            Refusal::NoMatchingDispatchRule => "No matching dispatch rule".into(),
            Refusal::AmbiguousDispatchRule => "Conflicting dispatch rules".into(),
            Refusal::MediaNotAcceptable(why) => format!("Media not acceptable: {why}"),
            Refusal::BadSdp(why) => format!("Malformed SDP: {why}"),
            Refusal::NoSdpOffer => "INVITE without an SDP offer is not supported".into(),
            Refusal::AtCapacity => "Call limit reached".into(),
            Refusal::NoMediaPorts => "No media ports free".into(),
            Refusal::RoomUnavailable(why) => format!("Room unavailable: {why}"),
            Refusal::RemovedWhileRinging => "Removed from the room while ringing".into(),
            Refusal::RingingTimeout { .. } => "No answer in the room".into(),
            Refusal::EndedWhileRinging => "Ended by a room participant while ringing".into(),
            Refusal::SessionIntervalTooSmall { min_se } => {
                format!("Session interval too small (Min-SE {min_se})")
            }
            Refusal::StreamUnavailable { why, .. } => format!("Voice bot unavailable: {why}"),
        }
    }

    /// The response: status, its standard reason phrase, and a Reason
    /// header carrying our words (quotes and backslashes escaped).
    pub fn response(&self, retry_after_secs: u32) -> ResponseSpec {
        let mut spec = ResponseSpec::new(self.status()).header(
            HeaderName::Reason,
            reason_header(self.status(), &self.text()),
        );
        if let Refusal::SessionIntervalTooSmall { min_se } = self {
            spec = spec.header(HeaderName::MinSe, min_se.to_string());
        }
        let passing = match self {
            Refusal::StreamUnavailable { status, .. } => *status == 503,
            _ => matches!(
                self,
                Refusal::AtCapacity | Refusal::NoMediaPorts | Refusal::RoomUnavailable(_)
            ),
        };
        if passing {
            spec = spec.header(HeaderName::RetryAfter, retry_after_secs.to_string());
        }
        spec
    }
}

/// A Reason header value (RFC 3326) carrying our words. The words may hold
/// text from outside (a room error, a voice bot's socket error), so quotes
/// and backslashes become `'` and control characters a space: nothing can
/// close the quoted string or the header line.
pub(crate) fn reason_header(cause: u16, text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    format!("SIP;cause={cause};text=\"{text}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_honest_codes_and_words() {
        assert_eq!(Refusal::NoMatchingTrunk.status(), 404);
        assert_eq!(Refusal::NoMatchingDispatchRule.status(), 404);
        assert_eq!(Refusal::AuthenticationFailed.status(), 403);
        assert_eq!(Refusal::MediaNotAcceptable("x".into()).status(), 488);
        assert_eq!(Refusal::AtCapacity.status(), 503);
        assert_eq!(Refusal::NoMatchingTrunk.text(), "No matching trunk");
        assert_eq!(
            Refusal::NoMatchingDispatchRule.text(),
            "No matching dispatch rule"
        );
    }

    #[test]
    fn capacity_refusals_say_when_to_retry_and_quotes_cannot_break_the_header() {
        let spec = Refusal::AtCapacity.response(30);
        assert_eq!(spec.headers.get(&HeaderName::RetryAfter), Some("30"));
        // A full room passes; being taken out of it does not.
        let spec = Refusal::RoomUnavailable("room full".into()).response(30);
        assert_eq!(spec.headers.get(&HeaderName::RetryAfter), Some("30"));
        let spec = Refusal::RemovedWhileRinging.response(30);
        assert_eq!(spec.status, 503);
        assert_eq!(spec.headers.get(&HeaderName::RetryAfter), None);
        let spec = Refusal::MediaNotAcceptable("no \"PCMX\"".into()).response(30);
        assert_eq!(
            spec.headers.get(&HeaderName::Reason),
            Some("SIP;cause=488;text=\"Media not acceptable: no 'PCMX'\"")
        );
        assert_eq!(spec.headers.get(&HeaderName::RetryAfter), None);
        let spec = Refusal::StreamUnavailable {
            status: 503,
            why: "bot said \r\nVia: forged".into(),
        }
        .response(30);
        assert_eq!(
            spec.headers.get(&HeaderName::Reason),
            Some("SIP;cause=503;text=\"Voice bot unavailable: bot said   Via: forged\"")
        );
    }
}
