//! Media streams a dispatch rule asks for: every call it takes is streamed
//! to a voice bot over a WebSocket (Twilio or Telnyx media streams, or raw
//! L16), as a participant of the call's room. docs/media-streams.md.
//!
//! The rule says so in its `attributes` (LiveKit's messages have no field
//! for it): [`URL_KEY`], [`PROTOCOL_KEY`] and [`PARAM_PREFIX`]`<name>`.
//! Those keys configure the call rather than describe the caller, and the
//! URL may carry a bot's token, so they are taken out of the attributes the
//! room sees.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use switchboard_streams::{StreamProtocol, StreamSpec};

#[cfg(test)]
use switchboard_streams::G711Law;

/// The bot's WebSocket URL (`ws://` or `wss://`); its presence asks for a stream.
pub const URL_KEY: &str = "switchboard.stream.url";
/// `twilio` (default), `telnyx`, `telnyx-pcma` or `raw-l16`.
pub const PROTOCOL_KEY: &str = "switchboard.stream.protocol";
/// `switchboard.stream.param.<name>`: a custom parameter of the stream's
/// `start` message (Twilio's `customParameters`).
pub const PARAM_PREFIX: &str = "switchboard.stream.param.";

/// How calls with a media stream behave (`streams:` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsConfig {
    /// How long the bot may take to accept the WebSocket before the call is
    /// refused.
    pub connect_timeout: Duration,
    /// The SIP status a call gets when its bot cannot be reached (503 says
    /// try again later, 480 temporarily unavailable).
    pub unreachable_status: u16,
    /// The bot closing its socket hangs up the call (BYE); otherwise the
    /// caller stays in the room without it.
    pub bot_close_hangs_up: bool,
}

impl Default for StreamsConfig {
    fn default() -> StreamsConfig {
        StreamsConfig {
            connect_timeout: Duration::from_secs(5),
            unreachable_status: 503,
            bot_close_hangs_up: true,
        }
    }
}

/// A stream a rule asked for.
#[derive(Debug, Clone)]
pub(crate) struct StreamRequest {
    /// Where and how to connect.
    pub spec: StreamSpec,
    /// The rule's custom parameters, sent in `start`.
    pub custom_parameters: BTreeMap<String, String>,
}

/// Takes the stream keys out of a dispatch result's participant attributes.
/// `Ok(None)`: the rule asks for no stream. `Err`: it asks for one in a way
/// that cannot work (an unknown protocol); the call is refused.
pub(crate) fn take_stream_request(
    attributes: &mut HashMap<String, String>,
    config: &StreamsConfig,
    refused: &[ipnet::IpNet],
) -> Result<Option<StreamRequest>, String> {
    let url = attributes.remove(URL_KEY);
    let protocol = attributes.remove(PROTOCOL_KEY);
    let names: Vec<String> = attributes
        .keys()
        .filter(|k| k.starts_with(PARAM_PREFIX))
        .cloned()
        .collect();
    let mut custom_parameters = BTreeMap::new();
    for name in names {
        if let Some(value) = attributes.remove(&name) {
            let key = name.trim_start_matches(PARAM_PREFIX);
            if !key.is_empty() {
                custom_parameters.insert(key.to_owned(), value);
            }
        }
    }
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let name = protocol.as_deref().unwrap_or("");
    let Some(protocol) = StreamProtocol::from_name(name) else {
        return Err(format!(
            "{PROTOCOL_KEY} {name:?} is not twilio, telnyx, telnyx-pcma or raw-l16"
        ));
    };
    let mut spec = StreamSpec::new(url.trim().to_owned(), protocol);
    spec.connect_timeout = config.connect_timeout;
    spec.refused = refused.to_vec();
    Ok(Some(StreamRequest {
        spec,
        custom_parameters,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn stream_keys_are_taken_out_and_the_rest_stays() {
        let mut attrs = attributes(&[
            (URL_KEY, "wss://bot.example/ws?token=secret"),
            (PROTOCOL_KEY, "telnyx"),
            ("switchboard.stream.param.assistant", "sales"),
            ("switchboard.stream.param.", "dropped"),
            ("team", "blue"),
        ]);
        let request = take_stream_request(&mut attrs, &StreamsConfig::default(), &[])
            .unwrap_or_default()
            .map(|r| {
                (
                    r.spec.url.clone(),
                    r.spec.protocol.name(),
                    r.custom_parameters,
                )
            });
        let (url, protocol, params) = request.unwrap_or_default();
        assert_eq!(url, "wss://bot.example/ws?token=secret");
        assert_eq!(protocol, StreamProtocol::telnyx(G711Law::Pcmu).name());
        assert_eq!(params.get("assistant").map(String::as_str), Some("sales"));
        assert_eq!(params.len(), 1);
        assert_eq!(attrs, attributes(&[("team", "blue")]));
    }

    #[test]
    fn no_url_no_stream_and_unknown_protocols_refuse() {
        let mut attrs = attributes(&[("switchboard.stream.param.x", "1")]);
        assert!(matches!(
            take_stream_request(&mut attrs, &StreamsConfig::default(), &[]),
            Ok(None)
        ));
        assert!(
            attrs.is_empty(),
            "parameters without a URL are still taken out"
        );
        let mut attrs = attributes(&[(URL_KEY, "ws://127.0.0.1:9/ws"), (PROTOCOL_KEY, "plivo")]);
        let refused = take_stream_request(&mut attrs, &StreamsConfig::default(), &[]);
        assert!(
            matches!(&refused, Err(why) if why.contains("plivo")),
            "{refused:?}"
        );
    }
}
