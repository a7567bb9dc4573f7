//! SDP offer/answer (switchboard_media::sdp::SdpNegotiator).
//!
//! The first input byte picks the negotiator's configuration (SRTP policy,
//! codec order, rtcp-mux, telephone-event, listed codecs) and the direction;
//! the rest is SDP text. Three uses of that text, as the gateway has them:
//! - an offer from the peer: `answer_offer`, and on success a re-offer of
//!   the same text on the same negotiator (a re-INVITE);
//! - an answer to our offer: `create_offer` then `accept_answer`;
//! - each `a=crypto:` value alone through `CryptoAttribute::parse`.
//!
//! Our own answer must be SDP that a negotiator with the same settings
//! accepts as an offer when the peer offered plain RTP/AVP to an address we
//! could reach (checked loosely: no panic, and no `Malformed` error).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use switchboard_media::sdp::{
    CodecPreference, Direction, LocalEndpoint, MediaConfig, SdpError, SdpNegotiator,
};
use switchboard_media::srtp::{CryptoAttribute, SrtpPolicy};

fn config(selector: u8) -> MediaConfig {
    let mut config = MediaConfig {
        encryption: match selector & 3 {
            0 => SrtpPolicy::Disable,
            1 => SrtpPolicy::Allow,
            _ => SrtpPolicy::Require,
        },
        answer_in_own_order: selector & 4 != 0,
        rtcp_mux: selector & 8 != 0,
        telephone_event: selector & 16 != 0,
        ..MediaConfig::default()
    };
    if selector & 32 != 0 {
        config.codecs = vec![
            CodecPreference {
                name: "opus".into(),
                rate: 0,
            },
            CodecPreference {
                name: "PCMA".into(),
                rate: 8000,
            },
        ];
        config.only_listed_codecs = selector & 64 != 0;
    }
    config
}

fn direction(selector: u8) -> Direction {
    match selector >> 6 {
        0 => Direction::SendRecv,
        1 => Direction::SendOnly,
        2 => Direction::RecvOnly,
        _ => Direction::Inactive,
    }
}

fn local() -> LocalEndpoint {
    LocalEndpoint {
        address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        rtp_port: 20_000,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let config = config(selector);
    let wanted = direction(selector);

    // The peer offers.
    let mut negotiator = SdpNegotiator::new(config.clone(), local());
    match negotiator.answer_offer(&text, wanted) {
        Ok((answer, media)) => {
            let _ = media.expects_inbound();
            assert!(negotiator.current().is_some());
            // Our answer is well-formed SDP: offered back to a fresh
            // negotiator it may be refused, but never as malformed.
            let mut other = SdpNegotiator::new(config.clone(), local());
            if let Err(SdpError::Malformed(why)) = other.answer_offer(&answer, Direction::SendRecv) {
                panic!("our own answer is malformed SDP ({why}):\n{answer}");
            }
            // A re-INVITE with the same offer on the same call.
            let _ = negotiator.answer_offer(&text, Direction::SendRecv);
            // And then we re-offer (hold), answered with the same text.
            if negotiator.create_offer(Direction::SendOnly).is_ok() {
                let _ = negotiator.accept_answer(&text);
            }
        }
        Err(e) => {
            let _ = e.sip_status();
            let _ = e.to_string();
        }
    }

    // The peer answers our offer.
    let mut negotiator = SdpNegotiator::new(config, local());
    match negotiator.create_offer(wanted) {
        Ok(_offer) => match negotiator.accept_answer(&text) {
            Ok(media) => {
                let _ = media.expects_inbound();
                let _ = negotiator.accept_answer(&text);
            }
            Err(e) => {
                let _ = e.sip_status();
            }
        },
        Err(e) => panic!("create_offer failed with a fixed configuration: {e}"),
    }

    // a=crypto values on their own.
    for line in text.lines() {
        if let Some(value) = line.trim_end().strip_prefix("a=crypto:") {
            if let Some(attr) = CryptoAttribute::parse(value) {
                if let Some(key) = &attr.key {
                    let formatted = CryptoAttribute::format(attr.tag, key);
                    let again = CryptoAttribute::parse(&formatted)
                        .expect("a formatted crypto attribute parses");
                    assert_eq!(again.key.as_ref(), Some(key), "crypto key round trip");
                }
            }
        }
    }
});
