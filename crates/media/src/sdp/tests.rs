use super::*;
use std::net::Ipv4Addr;

fn local(port: u16) -> LocalEndpoint {
    LocalEndpoint {
        address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        rtp_port: port,
    }
}

fn config(encryption: SrtpPolicy) -> MediaConfig {
    MediaConfig {
        encryption,
        ..MediaConfig::default()
    }
}

const TWILIO_LIKE: &str = "v=0\r\no=root 1 2 IN IP4 198.51.100.7\r\ns=call\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
m=audio 18000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

#[test]
fn answer_honours_the_offerers_order_and_echoes_telephone_event() {
    let mut n = SdpNegotiator::new(config(SrtpPolicy::Disable), local(10000));
    let offer = TWILIO_LIKE.replace("RTP/AVP 0 8 101", "RTP/AVP 8 0 101");
    let (answer, media) = n.answer_offer(&offer, Direction::SendRecv).unwrap();
    assert_eq!(media.codec, CodecKind::Pcma);
    assert_eq!(media.telephone_event, Some((101, 101)));
    assert_eq!(media.remote_rtp, "198.51.100.7:18000".parse().unwrap());
    assert_eq!(media.remote_rtcp, "198.51.100.7:18001".parse().unwrap());
    assert!(
        answer.contains("m=audio 10000 RTP/AVP 8 101\r\n"),
        "{answer}"
    );
    assert!(answer.contains("c=IN IP4 203.0.113.5\r\n"));
    assert!(answer.contains("a=sendrecv"));
    assert!(
        !answer.contains("PCMU"),
        "answer lists only the chosen codec"
    );
}

#[test]
fn own_order_and_only_listed_codecs() {
    let cfg = MediaConfig {
        codecs: vec![CodecPreference {
            name: "PCMU".into(),
            rate: 8000,
        }],
        only_listed_codecs: true,
        answer_in_own_order: true,
        ..MediaConfig::default()
    };
    assert_eq!(cfg.enabled_codecs(), vec![CodecKind::Pcmu]);
    let mut n = SdpNegotiator::new(cfg.clone(), local(10000));
    let offer = TWILIO_LIKE.replace("RTP/AVP 0 8 101", "RTP/AVP 8 0 101");
    let (_, media) = n.answer_offer(&offer, Direction::SendRecv).unwrap();
    assert_eq!(media.codec, CodecKind::Pcmu);
    let g722_only = TWILIO_LIKE.replace("RTP/AVP 0 8 101", "RTP/AVP 9 101");
    let err = SdpNegotiator::new(cfg, local(10000))
        .answer_offer(&g722_only, Direction::SendRecv)
        .unwrap_err();
    assert!(matches!(err, SdpError::NoCommonCodec { .. }), "{err}");
    assert_eq!(err.sip_status(), 488);
    let listed_first = MediaConfig {
        codecs: vec![CodecPreference {
            name: "opus".into(),
            rate: 0,
        }],
        ..MediaConfig::default()
    };
    assert_eq!(listed_first.enabled_codecs()[0], CodecKind::Opus);
    assert_eq!(listed_first.enabled_codecs().len(), 4);
}

#[test]
fn opus_on_the_trunk_uses_telephone_event_at_48k() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 111 0 101 102\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\na=rtpmap:102 telephone-event/48000\r\n";
    let mut n = SdpNegotiator::new(MediaConfig::default(), local(10002));
    let (answer, media) = n.answer_offer(offer, Direction::SendRecv).unwrap();
    assert_eq!(media.codec, CodecKind::Opus);
    assert_eq!(media.telephone_event, Some((102, 102)));
    assert!(answer.contains("a=rtpmap:111 opus/48000/2"));
    assert!(answer.contains("a=rtpmap:102 telephone-event/48000"));
    assert!(answer.contains("a=fmtp:111 useinbandfec=1;minptime=10\r\n"));

    // Rendering at most 16 kHz, we ask for no more than wideband, in the
    // answer as in an offer of ours.
    let wideband = MediaConfig {
        opus_max_playback_rate: Some(16_000),
        ..MediaConfig::default()
    };
    let mut n = SdpNegotiator::new(wideband, local(10002));
    let (answer, _) = n.answer_offer(offer, Direction::SendRecv).unwrap();
    assert!(
        answer.contains(
            "a=fmtp:111 useinbandfec=1;minptime=10;maxplaybackrate=16000;sprop-maxcapturerate=16000\r\n"
        ),
        "{answer}"
    );
    assert!(n
        .create_offer(Direction::SendRecv)
        .unwrap()
        .contains(";maxplaybackrate=16000;"));
}

#[test]
fn hold_and_resume_directions() {
    let mut n = SdpNegotiator::new(MediaConfig::default(), local(10000));
    let hold = TWILIO_LIKE.replace("a=sendrecv", "a=sendonly");
    let (answer, media) = n.answer_offer(&hold, Direction::SendRecv).unwrap();
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert_eq!(media.direction, Direction::RecvOnly);
    assert!(media.expects_inbound(), "they still send music on hold");
    let inactive = TWILIO_LIKE.replace("a=sendrecv", "a=inactive");
    let (answer, media) = n.answer_offer(&inactive, Direction::SendRecv).unwrap();
    assert!(answer.contains("a=inactive"));
    assert!(!media.expects_inbound());
    let old_style = TWILIO_LIKE.replace("c=IN IP4 198.51.100.7", "c=IN IP4 0.0.0.0");
    let (_, media) = n.answer_offer(&old_style, Direction::SendRecv).unwrap();
    assert!(!media.expects_inbound(), "c=0.0.0.0 is hold");
    // We hold them: our offer says sendonly, their answer recvonly.
    let offer = n.create_offer(Direction::SendOnly).unwrap();
    assert!(offer.contains("a=sendonly"));
    let answer = TWILIO_LIKE.replace("a=sendrecv", "a=recvonly");
    let media = n.accept_answer(&answer).unwrap();
    assert_eq!(media.direction, Direction::SendOnly);
    assert!(!media.expects_inbound());
}

#[test]
fn offer_then_answer_with_srtp_and_rtcp_mux() {
    let mut ours = SdpNegotiator::new(config(SrtpPolicy::Require), local(10000));
    let offer = ours.create_offer(Direction::SendRecv).unwrap();
    assert!(
        offer.contains("m=audio 10000 RTP/SAVP 9 0 8 111 101 110\r\n"),
        "{offer}"
    );
    assert_eq!(offer.matches("a=crypto:").count(), 3);
    let mut theirs = SdpNegotiator::new(config(SrtpPolicy::Allow), local(20000));
    let (answer, their_media) = theirs.answer_offer(&offer, Direction::SendRecv).unwrap();
    assert_eq!(
        answer.matches("a=crypto:1 AES_CM_128_HMAC_SHA1_80").count(),
        1,
        "{answer}"
    );
    assert!(answer.contains("RTP/SAVP"));
    let our_media = ours.accept_answer(&answer).unwrap();
    assert_eq!(
        ours.accept_answer(&answer).unwrap(),
        our_media,
        "the 200 may repeat the 183's answer"
    );
    let (a, b) = (our_media.srtp.unwrap(), their_media.srtp.unwrap());
    assert_eq!(a.local, b.remote);
    assert_eq!(a.remote, b.local);
    assert!(our_media.rtcp_mux);
    assert_eq!(our_media.remote_rtcp, our_media.remote_rtp);
    assert_eq!(our_media.codec, CodecKind::G722);
}

#[test]
fn srtp_policy_refusals_are_precise() {
    let plain = TWILIO_LIKE;
    let err = SdpNegotiator::new(config(SrtpPolicy::Require), local(1))
        .answer_offer(plain, Direction::SendRecv)
        .unwrap_err();
    assert_eq!(
        err,
        SdpError::SrtpRequired("the offer (RTP/AVP) has no a=crypto line".into())
    );
    assert_eq!(err.sip_status(), 488);
    let mki = TWILIO_LIKE.replace("RTP/AVP", "RTP/SAVP").replace(
        "a=sendrecv",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32\r\na=crypto:2 F8_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    );
    let err = SdpNegotiator::new(config(SrtpPolicy::Require), local(1))
        .answer_offer(&mki, Direction::SendRecv)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("MKI is not supported")
            && text.contains("F8_128_HMAC_SHA1_80: unsupported crypto suite"),
        "{text}"
    );
    let err = SdpNegotiator::new(config(SrtpPolicy::Disable), local(1))
        .answer_offer(&mki, Direction::SendRecv)
        .unwrap_err();
    assert!(matches!(err, SdpError::SrtpRefused(_)));
    // ALLOW takes plain RTP, and DISABLE ignores best-effort crypto on RTP/AVP.
    let (_, media) = SdpNegotiator::new(config(SrtpPolicy::Allow), local(1))
        .answer_offer(plain, Direction::SendRecv)
        .unwrap();
    assert!(media.srtp.is_none());
    let key = SrtpKey::generate(SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let best_effort = TWILIO_LIKE.replace(
        "a=sendrecv",
        &format!(
            "a=crypto:5 {}",
            CryptoAttribute::format(5, &key).split_once(' ').unwrap().1
        ),
    );
    let (answer, media) = SdpNegotiator::new(config(SrtpPolicy::Disable), local(1))
        .answer_offer(&best_effort, Direction::SendRecv)
        .unwrap();
    assert!(media.srtp.is_none() && !answer.contains("crypto"));
    let (answer, media) = SdpNegotiator::new(config(SrtpPolicy::Allow), local(1))
        .answer_offer(&best_effort, Direction::SendRecv)
        .unwrap();
    assert_eq!(media.srtp.unwrap().remote, key);
    assert!(
        answer.contains("a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:"),
        "tag mirrored: {answer}"
    );
}

#[test]
fn answer_accepts_every_suite_and_freeswitch_spellings() {
    for name in [
        "AES_CM_128_HMAC_SHA1_32",
        "AES_256_CM_HMAC_SHA1_80",
        "AES_CM_256_HMAC_SHA1_32",
        "AEAD_AES_128_GCM",
        "AEAD_AES_256_GCM",
    ] {
        let suite = SrtpSuite::from_name(name).unwrap();
        let key = SrtpKey::generate(suite).unwrap();
        let offer = TWILIO_LIKE.replace("RTP/AVP", "RTP/SAVP").replace(
            "a=sendrecv",
            &format!("a=crypto:9 {name} inline:{}", key.inline_base64()),
        );
        let (answer, media) = SdpNegotiator::new(config(SrtpPolicy::Require), local(1))
            .answer_offer(&offer, Direction::SendRecv)
            .unwrap();
        assert_eq!(media.srtp.unwrap().local.suite, suite);
        assert!(
            answer.contains(&format!("a=crypto:9 {} inline:", suite.name())),
            "{answer}"
        );
    }
}

#[test]
fn refuses_other_media_and_keeps_m_line_count() {
    let offer = format!("{TWILIO_LIKE}m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
    let (answer, _) = SdpNegotiator::new(MediaConfig::default(), local(1))
        .answer_offer(&offer, Direction::SendRecv)
        .unwrap();
    assert!(answer.contains("m=video 0 RTP/AVP 96"), "{answer}");
    assert_eq!(answer.matches("m=").count(), 2);
}

#[test]
fn ipv6_rtcp_attribute_and_bad_input() {
    let offer = "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\na=rtcp:7005 IN IP6 2001:db8::2\r\n";
    let mut n = SdpNegotiator::new(
        MediaConfig::default(),
        LocalEndpoint {
            address: "2001:db8::9".parse().unwrap(),
            rtp_port: 9,
        },
    );
    let (answer, media) = n.answer_offer(offer, Direction::SendRecv).unwrap();
    assert_eq!(media.remote_rtcp, "[2001:db8::2]:7005".parse().unwrap());
    assert!(answer.contains("c=IN IP6 2001:db8::9"));
    for bad in [
        "",
        "garbage",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 5 RTP/AVP 0\r\n",
    ] {
        assert!(n.answer_offer(bad, Direction::SendRecv).is_err(), "{bad:?}");
    }
}

#[test]
fn offer_stays_small_and_versions_increase() {
    let cfg = MediaConfig {
        encryption: SrtpPolicy::Allow,
        ..MediaConfig::default()
    };
    let mut n = SdpNegotiator::new(cfg, local(10000));
    let first = n.create_offer(Direction::SendRecv).unwrap();
    // With every codec, both telephone-events and three crypto lines, the
    // body leaves room for the SIP headers in a 1300-byte UDP INVITE.
    assert!(first.len() < 700, "{} bytes:\n{first}", first.len());
    let second = n.create_offer(Direction::SendRecv).unwrap();
    let version = |s: &str| {
        s.lines()
            .nth(1)
            .unwrap()
            .split(' ')
            .nth(2)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(version(&second), version(&first) + 1);
    let keys = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("a=crypto"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&first), keys(&second), "re-offers keep the keys");
}

#[test]
fn telephone_event_at_another_clock_is_tolerated() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n";
    let (answer, media) = SdpNegotiator::new(MediaConfig::default(), local(1))
        .answer_offer(offer, Direction::SendRecv)
        .unwrap();
    assert_eq!(media.telephone_event, Some((101, 101)));
    assert_eq!(media.telephone_event_rate, 8000);
    assert!(
        answer.contains("a=rtpmap:101 telephone-event/8000"),
        "{answer}"
    );
}

proptest::proptest! {
    #[test]
    fn offers_of_any_shape_never_panic(body in "(v=0\r\n)?(o=- 1 1 IN IP4 [0-9.]{1,15}\r\n)?(s=-\r\n)?(c=IN IP[46] [0-9a-f.:]{0,20}\r\n)?(t=0 0\r\n)?(m=audio [0-9]{1,6} RTP/S?AVP( [0-9]{1,3}){0,5}\r\n)?(a=[a-z-]{1,12}(:[ -~]{0,40})?\r\n){0,8}") {
        let mut n = SdpNegotiator::new(MediaConfig { encryption: SrtpPolicy::Allow, ..MediaConfig::default() }, local(1));
        let _ = n.answer_offer(&body, Direction::SendRecv);
        let _ = n.create_offer(Direction::SendRecv).map(|_| n.accept_answer(&body));
    }

    #[test]
    fn crypto_lines_of_any_shape_never_panic(value in "[ -~]{0,120}") {
        let _ = CryptoAttribute::parse(&value);
    }
}
