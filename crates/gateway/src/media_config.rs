//! LiveKit's `SIPMediaConfig` (trunk and rule merged by routing) as the
//! media engine's settings.

use std::time::Duration;
use switchboard_media::sdp::{CodecPreference, MediaConfig};
use switchboard_media::srtp::SrtpPolicy;
use switchboard_routing::livekit_protocol::{SipMediaConfig, SipMediaEncryption};
use switchboard_routing::proto_duration;

/// The media engine's negotiation settings for a call; the peer's SDP may
/// not point media into `refused` networks; an Opus peer is told we render
/// at most `opus_pcm_rate`.
pub fn media_config(
    config: &SipMediaConfig,
    refused: &[ipnet::IpNet],
    opus_pcm_rate: u32,
) -> MediaConfig {
    let encryption = match config
        .encryption
        .and_then(|e| SipMediaEncryption::try_from(e).ok())
    {
        Some(SipMediaEncryption::SipMediaEncryptAllow) => SrtpPolicy::Allow,
        Some(SipMediaEncryption::SipMediaEncryptRequire) => SrtpPolicy::Require,
        _ => SrtpPolicy::Disable,
    };
    MediaConfig {
        codecs: config
            .codecs
            .iter()
            .map(|c| CodecPreference {
                name: c.name.clone(),
                rate: c.rate,
            })
            .collect(),
        only_listed_codecs: config.only_listed_codecs,
        encryption,
        refused_networks: refused.to_vec(),
        opus_max_playback_rate: Some(opus_pcm_rate),
        ..MediaConfig::default()
    }
}

/// The call's media timeout, when the trunk or rule sets one.
pub fn media_timeout(config: &SipMediaConfig) -> Option<Duration> {
    proto_duration(config.media_timeout.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_routing::livekit_protocol::SipCodec;

    #[test]
    fn codecs_policy_and_timeout_carry_over() {
        let config = SipMediaConfig {
            only_listed_codecs: true,
            codecs: vec![SipCodec {
                name: "PCMA".into(),
                rate: 8000,
            }],
            encryption: Some(SipMediaEncryption::SipMediaEncryptRequire as i32),
            media_timeout: Some(pbjson_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
        };
        let media = media_config(&config, &[], 16_000);
        assert!(media.only_listed_codecs);
        assert_eq!(media.codecs[0].name, "PCMA");
        assert_eq!(media.encryption, SrtpPolicy::Require);
        assert_eq!(media_timeout(&config), Some(Duration::from_secs(5)));
        assert_eq!(media_timeout(&SipMediaConfig::default()), None);
        assert_eq!(
            media_config(&SipMediaConfig::default(), &[], 16_000).encryption,
            SrtpPolicy::Disable
        );
    }
}
