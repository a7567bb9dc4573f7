//! SDP offer/answer for one audio stream (RFC 3264, RFC 4566, RFC 4568).
//!
//! [`SdpNegotiator`] holds one call's SDP state (origin, version, local
//! address and keys) across the initial exchange and later re-INVITEs:
//! [`SdpNegotiator::create_offer`] + [`SdpNegotiator::accept_answer`] when we
//! offer, [`SdpNegotiator::answer_offer`] when the peer offers. Each yields a
//! [`NegotiatedMedia`] that configures the
//! [`MediaSession`](crate::session::MediaSession).
//!
//! Parsing uses `rtc-sdp`; `a=rtpmap`, `a=fmtp`, `a=crypto`, `a=rtcp` and the
//! direction attributes are interpreted here. Text is generated here, small
//! enough for a UDP INVITE (see `offer_stays_small` in the tests).

use crate::codec::CodecKind;
use crate::srtp::{CryptoAttribute, SrtpKey, SrtpPolicy, SrtpSuite};
use rtc_sdp::description::media::MediaDescription;
use rtc_sdp::description::session::SessionDescription;
use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

/// A codec named in configuration, as LiveKit's `SIPCodec {name, rate}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecPreference {
    /// Encoding name (`PCMU`, `PCMA`, `G722`, `opus`), case-insensitive,
    /// optionally with a `/1` channel suffix.
    pub name: String,
    /// RTP clock rate; 0 matches any.
    pub rate: u32,
}

impl CodecPreference {
    fn matches(&self) -> Option<CodecKind> {
        let name = self.name.trim();
        let name = name.strip_suffix("/1").unwrap_or(name);
        let name = name.strip_suffix("/2").unwrap_or(name);
        CodecKind::ALL.into_iter().find(|k| {
            k.sdp_name().eq_ignore_ascii_case(name)
                && (self.rate == 0 || self.rate == k.clock_rate())
        })
    }
}

/// Media configuration of a trunk, dispatch rule or call (LiveKit's
/// `SIPMediaConfig`, plus switchboard's extras).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Preferred codecs, first = most preferred. Listed codecs come first;
    /// the other defaults follow unless `only_listed_codecs`.
    pub codecs: Vec<CodecPreference>,
    /// Enable only the listed codecs.
    pub only_listed_codecs: bool,
    /// SRTP policy.
    pub encryption: SrtpPolicy,
    /// Suites we offer, in order. Every implemented suite is accepted in an
    /// offer whatever this says; the default keeps the INVITE small.
    pub offered_suites: Vec<SrtpSuite>,
    /// When answering, pick the codec by our order rather than the offerer's.
    pub answer_in_own_order: bool,
    /// Offer and accept `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// Offer telephone-event (RFC 4733 DTMF).
    pub telephone_event: bool,
    /// Networks a peer's SDP may not point our media at (link-local cloud
    /// metadata, multicast...): such an offer or answer is refused with
    /// 488. The unspecified address (`c=0.0.0.0`, hold) is always allowed.
    pub refused_networks: Vec<ipnet::IpNet>,
    /// The highest audio rate our Opus side renders (the configured Opus
    /// PCM rate), told to the peer in `a=fmtp` as `maxplaybackrate` and
    /// `sprop-maxcapturerate` (RFC 7587 §6.1) so that its encoder spends no
    /// bits on a band we would throw away (libwebrtc limits its encoder's
    /// band to it). `None` (or 48 kHz): fullband, nothing said.
    pub opus_max_playback_rate: Option<u32>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            codecs: Vec::new(),
            only_listed_codecs: false,
            encryption: SrtpPolicy::Disable,
            offered_suites: vec![
                SrtpSuite::AesCm128HmacSha1_80,
                SrtpSuite::AesCm128HmacSha1_32,
                SrtpSuite::AeadAes128Gcm,
            ],
            answer_in_own_order: false,
            rtcp_mux: true,
            telephone_event: true,
            refused_networks: Vec::new(),
            opus_max_playback_rate: None,
        }
    }
}

impl MediaConfig {
    /// The codecs enabled, in preference order: listed ones first, then
    /// (unless `only_listed_codecs`) the defaults G.722, PCMU, PCMA, Opus.
    pub fn enabled_codecs(&self) -> Vec<CodecKind> {
        let mut out: Vec<CodecKind> = Vec::new();
        for pref in &self.codecs {
            if let Some(kind) = pref.matches() {
                if !out.contains(&kind) {
                    out.push(kind);
                }
            }
        }
        if !self.only_listed_codecs {
            for kind in CodecKind::ALL {
                if !out.contains(&kind) {
                    out.push(kind);
                }
            }
        }
        out
    }
}

/// Our media address and ports as the peer must see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// The advertised (external/NAT) address written in `c=` and `o=`.
    pub address: IpAddr,
    /// The RTP port; RTCP is on `rtp_port + 1` unless muxed.
    pub rtp_port: u16,
}

/// An SDP direction attribute (RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both ways.
    #[default]
    SendRecv,
    /// Only to the peer (we put them on hold).
    SendOnly,
    /// Only from the peer (they put us on hold).
    RecvOnly,
    /// Neither way.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether this side sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this side receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The direction an answerer may use for an offer of `self`, limited by
    /// what the answerer wants (`wanted`).
    pub fn answer(self, wanted: Direction) -> Direction {
        Direction::from_flags(
            self.receives() && wanted.sends(),
            self.sends() && wanted.receives(),
        )
    }
}

/// SRTP keys agreed for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedSrtp {
    /// Our key (we protect with it).
    pub local: SrtpKey,
    /// The peer's key (we unprotect with it).
    pub remote: SrtpKey,
}

/// The outcome of an offer/answer exchange: what the media session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// The audio codec.
    pub codec: CodecKind,
    /// Payload type we send the codec with (the peer's numbering).
    pub send_payload_type: u8,
    /// Payload type we receive the codec with (our numbering).
    pub receive_payload_type: u8,
    /// telephone-event payload types (send, receive), at the codec's clock rate.
    pub telephone_event: Option<(u8, u8)>,
    /// Clock rate of telephone-event: the codec's, unless the peer pairs a
    /// codec with telephone-event at another rate (baresip sends
    /// opus/48000 with telephone-event/8000), which we tolerate.
    pub telephone_event_rate: u32,
    /// Where the peer wants RTP.
    pub remote_rtp: SocketAddr,
    /// Where the peer wants RTCP (the RTP address when muxed).
    pub remote_rtcp: SocketAddr,
    /// RTP and RTCP share one port.
    pub rtcp_mux: bool,
    /// Our direction.
    pub direction: Direction,
    /// The peer's direction.
    pub remote_direction: Direction,
    /// SRTP keys, when the call is encrypted.
    pub srtp: Option<NegotiatedSrtp>,
    /// The peer's `a=ptime`, if given (we always send 20 ms).
    pub remote_ptime_ms: Option<u32>,
}

impl NegotiatedMedia {
    /// Whether the peer is expected to send us media (for the media timeout).
    pub fn expects_inbound(&self) -> bool {
        self.direction.receives()
            && self.remote_direction.sends()
            && !self.remote_rtp.ip().is_unspecified()
    }
}

/// Why an SDP could not be used; [`SdpError::sip_status`] gives the response code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Not parseable SDP.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No usable `m=audio` line.
    #[error("no audio stream in SDP")]
    NoAudio,
    /// Missing or unusable `c=` address or port.
    #[error("invalid audio address in SDP: {0}")]
    InvalidAddress(String),
    /// No codec in common.
    #[error("no common codec: offered {offered}, enabled {enabled}")]
    NoCommonCodec {
        /// What the peer offered.
        offered: String,
        /// What we have enabled.
        enabled: String,
    },
    /// Encryption is REQUIRE and the peer offered no usable crypto.
    #[error("SRTP required but {0}")]
    SrtpRequired(String),
    /// Encryption is DISABLE and the peer demands SRTP (RTP/SAVP).
    #[error("peer requires SRTP ({0}) and encryption is disabled")]
    SrtpRefused(String),
    /// The answer does not fit our offer.
    #[error("answer does not match the offer: {0}")]
    AnswerMismatch(String),
    /// We have no offer outstanding.
    #[error("no offer outstanding")]
    NoPendingOffer,
    /// Key generation failed.
    #[error("SRTP key generation: {0}")]
    Keys(String),
    /// The peer's media address is in a refused network.
    #[error("media address {0} is refused (security.refused_destinations)")]
    AddressRefused(IpAddr),
}

impl SdpError {
    /// The SIP status the gateway should answer with: 488 Not Acceptable
    /// Here for a negotiation failure, 400 for a malformed body.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) | SdpError::InvalidAddress(_) => 400,
            SdpError::NoPendingOffer | SdpError::Keys(_) => 500,
            _ => 488,
        }
    }
}

const OPUS_PT: u8 = 111;
const TELEPHONE_EVENT_8K_PT: u8 = 101;
const TELEPHONE_EVENT_48K_PT: u8 = 110;

#[derive(Debug, Clone)]
struct PendingOffer {
    codecs: Vec<(CodecKind, u8)>,
    keys: Vec<(u32, SrtpKey)>,
    secure: bool,
    direction: Direction,
}

/// One call's SDP state across offers and answers.
#[derive(Debug, Clone)]
pub struct SdpNegotiator {
    config: MediaConfig,
    local: LocalEndpoint,
    session_id: u64,
    version: u64,
    keys: Vec<SrtpKey>,
    pending: Option<PendingOffer>,
    current: Option<NegotiatedMedia>,
}

struct ParsedAudio {
    formats: Vec<(u8, String, u32)>,
    proto: String,
    secure_proto: bool,
    remote_rtp: SocketAddr,
    remote_rtcp: SocketAddr,
    rtcp_mux: bool,
    direction: Direction,
    crypto: Vec<CryptoAttribute>,
    ptime: Option<u32>,
    index: usize,
    other_media: Vec<(usize, String)>,
}

impl SdpNegotiator {
    /// Refuses a peer's SDP that points our media into a refused network.
    fn check_addresses(&self, audio: &ParsedAudio) -> Result<(), SdpError> {
        for ip in [audio.remote_rtp.ip(), audio.remote_rtcp.ip()] {
            let ip = ip.to_canonical();
            if ip.is_unspecified() {
                continue;
            }
            if self.config.refused_networks.iter().any(|n| n.contains(&ip)) {
                return Err(SdpError::AddressRefused(ip));
            }
        }
        Ok(())
    }

    /// A negotiator for a call with `config`, advertising `local`.
    pub fn new(config: MediaConfig, local: LocalEndpoint) -> Self {
        let mut id = [0u8; 8];
        // An all-zero id on RNG failure is still a valid origin.
        let _ = getrandom::fill(&mut id);
        let session_id = u64::from_be_bytes(id) >> 2;
        SdpNegotiator {
            config,
            local,
            session_id,
            version: session_id % 1_000_000,
            keys: Vec::new(),
            pending: None,
            current: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// The media agreed by the last completed exchange.
    pub fn current(&self) -> Option<&NegotiatedMedia> {
        self.current.as_ref()
    }

    /// Replaces the configuration (a re-INVITE under new settings); the
    /// origin, version and keys carry on.
    pub fn set_config(&mut self, config: MediaConfig) {
        self.config = config;
    }

    /// Changes the advertised endpoint (applies to the next SDP).
    pub fn set_local(&mut self, local: LocalEndpoint) {
        self.local = local;
    }

    fn key_for(&mut self, suite: SrtpSuite) -> Result<SrtpKey, SdpError> {
        // Keys stay the same across re-offers of one call: changing them
        // would reset the rollover counter mid-stream for no gain.
        if let Some(k) = self.keys.iter().find(|k| k.suite == suite) {
            return Ok(k.clone());
        }
        let key = SrtpKey::generate(suite).map_err(|e| SdpError::Keys(e.to_string()))?;
        self.keys.push(key.clone());
        Ok(key)
    }

    fn header(&mut self, out: &mut String) {
        self.version += 1;
        let ip = match self.local.address {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        let _ = write!(
            out,
            "v=0\r\no=switchboard {} {} IN {ip} {addr}\r\ns=switchboard\r\nc=IN {ip} {addr}\r\nt=0 0\r\n",
            self.session_id,
            self.version,
            addr = self.local.address
        );
    }

    /// Builds an offer with direction `direction` (sendonly/inactive to hold).
    pub fn create_offer(&mut self, direction: Direction) -> Result<String, SdpError> {
        let codecs: Vec<(CodecKind, u8)> = self
            .config
            .enabled_codecs()
            .into_iter()
            .map(|k| (k, k.static_payload_type().unwrap_or(OPUS_PT)))
            .collect();
        if codecs.is_empty() {
            return Err(SdpError::NoCommonCodec {
                offered: String::new(),
                enabled: "none".into(),
            });
        }
        let secure = self.config.encryption != SrtpPolicy::Disable;
        let mut keys = Vec::new();
        if secure {
            let suites = self.config.offered_suites.clone();
            for (i, suite) in suites.into_iter().enumerate() {
                keys.push((i as u32 + 1, self.key_for(suite)?));
            }
        }
        let mut sdp = String::with_capacity(900);
        self.header(&mut sdp);
        let proto = if secure { "RTP/SAVP" } else { "RTP/AVP" };
        let _ = write!(sdp, "m=audio {} {proto}", self.local.rtp_port);
        for (_, pt) in &codecs {
            let _ = write!(sdp, " {pt}");
        }
        let has_narrow = codecs.iter().any(|(k, _)| k.clock_rate() == 8000);
        let has_opus = codecs.iter().any(|(k, _)| *k == CodecKind::Opus);
        if self.config.telephone_event {
            if has_narrow {
                let _ = write!(sdp, " {TELEPHONE_EVENT_8K_PT}");
            }
            if has_opus {
                let _ = write!(sdp, " {TELEPHONE_EVENT_48K_PT}");
            }
        }
        sdp.push_str("\r\n");
        for (kind, pt) in &codecs {
            write_rtpmap(&mut sdp, *kind, *pt, self.config.opus_max_playback_rate);
        }
        if self.config.telephone_event {
            if has_narrow {
                let _ = write!(sdp, "a=rtpmap:{TELEPHONE_EVENT_8K_PT} telephone-event/8000\r\na=fmtp:{TELEPHONE_EVENT_8K_PT} 0-16\r\n");
            }
            if has_opus {
                let _ = write!(sdp, "a=rtpmap:{TELEPHONE_EVENT_48K_PT} telephone-event/48000\r\na=fmtp:{TELEPHONE_EVENT_48K_PT} 0-16\r\n");
            }
        }
        sdp.push_str("a=ptime:20\r\n");
        if self.config.rtcp_mux {
            sdp.push_str("a=rtcp-mux\r\n");
        }
        for (tag, key) in &keys {
            let _ = write!(sdp, "a=crypto:{}\r\n", CryptoAttribute::format(*tag, key));
        }
        let _ = write!(sdp, "a={}\r\n", direction.as_str());
        self.pending = Some(PendingOffer {
            codecs,
            keys,
            secure,
            direction,
        });
        Ok(sdp)
    }

    /// Applies the peer's answer to our last offer. May be called again
    /// with the answer repeated in a later response (183 then 200).
    pub fn accept_answer(&mut self, answer: &str) -> Result<NegotiatedMedia, SdpError> {
        // The offer stays pending: the same answer may come in a 183 (early
        // media) and again in the 200.
        let pending = self.pending.clone().ok_or(SdpError::NoPendingOffer)?;
        let audio = parse_audio(answer)?;
        self.check_addresses(&audio)?;
        let mut chosen = None;
        for (pt, name, rate) in &audio.formats {
            let kind = CodecKind::from_sdp(name, *rate);
            if let Some((kind, ours)) = pending.codecs.iter().find(|(k, _)| Some(*k) == kind) {
                chosen = Some((*kind, *pt, *ours));
                break;
            }
        }
        let Some((codec, send_pt, receive_pt)) = chosen else {
            return Err(SdpError::AnswerMismatch(
                "no offered codec in the answer".into(),
            ));
        };
        let picked = pick_telephone_event(&audio.formats, codec.clock_rate());
        let telephone_event = picked.map(|(pt, rate)| {
            let ours = if rate == 48000 {
                TELEPHONE_EVENT_48K_PT
            } else {
                TELEPHONE_EVENT_8K_PT
            };
            (pt, ours)
        });
        let telephone_event_rate = picked.map_or(codec.clock_rate(), |(_, rate)| rate);
        let srtp = if pending.secure {
            let usable = audio.crypto.iter().find_map(|c| {
                let remote = c.key.clone()?;
                let (_, local) = pending
                    .keys
                    .iter()
                    .find(|(tag, k)| *tag == c.tag && k.suite == remote.suite)?;
                Some(NegotiatedSrtp {
                    local: local.clone(),
                    remote,
                })
            });
            match usable {
                Some(s) => Some(s),
                None if self.config.encryption == SrtpPolicy::Require || audio.secure_proto => {
                    return Err(SdpError::SrtpRequired(
                        "the answer has no crypto line matching our offer".into(),
                    ));
                }
                None => None,
            }
        } else {
            if audio.secure_proto {
                return Err(SdpError::AnswerMismatch(format!(
                    "answered {} to a plain RTP offer",
                    audio.proto
                )));
            }
            None
        };
        let negotiated = NegotiatedMedia {
            codec,
            send_payload_type: send_pt,
            receive_payload_type: receive_pt,
            telephone_event,
            telephone_event_rate,
            remote_rtp: audio.remote_rtp,
            remote_rtcp: if audio.rtcp_mux && self.config.rtcp_mux {
                audio.remote_rtp
            } else {
                audio.remote_rtcp
            },
            rtcp_mux: audio.rtcp_mux && self.config.rtcp_mux,
            direction: Direction::from_flags(
                pending.direction.sends() && audio.direction.receives(),
                pending.direction.receives() && audio.direction.sends(),
            ),
            remote_direction: audio.direction,
            srtp,
            remote_ptime_ms: audio.ptime,
        };
        self.current = Some(negotiated.clone());
        Ok(negotiated)
    }

    /// Answers the peer's offer; `wanted` is the direction we want (sendrecv,
    /// or sendonly/inactive while we hold). Returns the answer SDP and the
    /// agreed media.
    pub fn answer_offer(
        &mut self,
        offer: &str,
        wanted: Direction,
    ) -> Result<(String, NegotiatedMedia), SdpError> {
        let audio = parse_audio(offer)?;
        self.check_addresses(&audio)?;
        let enabled = self.config.enabled_codecs();
        let offered: Vec<(CodecKind, u8)> = audio
            .formats
            .iter()
            .filter_map(|(pt, name, rate)| CodecKind::from_sdp(name, *rate).map(|k| (k, *pt)))
            .collect();
        let chosen = if self.config.answer_in_own_order {
            enabled
                .iter()
                .find_map(|k| offered.iter().find(|(o, _)| o == k).copied())
        } else {
            offered.iter().find(|(k, _)| enabled.contains(k)).copied()
        };
        let Some((codec, pt)) = chosen else {
            return Err(SdpError::NoCommonCodec {
                offered: audio
                    .formats
                    .iter()
                    .map(|(_, n, r)| format!("{n}/{r}"))
                    .collect::<Vec<_>>()
                    .join(","),
                enabled: enabled
                    .iter()
                    .map(|k| k.sdp_name())
                    .collect::<Vec<_>>()
                    .join(","),
            });
        };
        let picked = self
            .config
            .telephone_event
            .then(|| pick_telephone_event(&audio.formats, codec.clock_rate()))
            .flatten();
        let telephone_event = picked.map(|(pt, _)| (pt, pt));
        let telephone_event_rate = picked.map_or(codec.clock_rate(), |(_, rate)| rate);

        let srtp = self.choose_crypto(&audio)?;
        let direction = audio.direction.answer(wanted);
        let rtcp_mux = audio.rtcp_mux && self.config.rtcp_mux;

        let mut sdp = String::with_capacity(600);
        self.header(&mut sdp);
        // RFC 3264 §6: one m-line per offered m-line, refused ones with port 0.
        let mut m_lines = audio.other_media.clone();
        m_lines.push((audio.index, String::new()));
        m_lines.sort_by_key(|(i, _)| *i);
        for (index, refused) in m_lines {
            if index != audio.index {
                let _ = write!(sdp, "{refused}\r\n");
                continue;
            }
            let _ = write!(sdp, "m=audio {} {} {pt}", self.local.rtp_port, audio.proto);
            if let Some((te, _)) = telephone_event {
                let _ = write!(sdp, " {te}");
            }
            sdp.push_str("\r\n");
            write_rtpmap(&mut sdp, codec, pt, self.config.opus_max_playback_rate);
            if let Some((te, _)) = telephone_event {
                let _ = write!(
                    sdp,
                    "a=rtpmap:{te} telephone-event/{telephone_event_rate}\r\na=fmtp:{te} 0-16\r\n"
                );
            }
            sdp.push_str("a=ptime:20\r\n");
            if rtcp_mux {
                sdp.push_str("a=rtcp-mux\r\n");
            }
            if let Some((tag, s)) = &srtp {
                let _ = write!(
                    sdp,
                    "a=crypto:{}\r\n",
                    CryptoAttribute::format(*tag, &s.local)
                );
            }
            let _ = write!(sdp, "a={}\r\n", direction.as_str());
        }
        let negotiated = NegotiatedMedia {
            codec,
            send_payload_type: pt,
            receive_payload_type: pt,
            telephone_event,
            telephone_event_rate,
            remote_rtp: audio.remote_rtp,
            remote_rtcp: if rtcp_mux {
                audio.remote_rtp
            } else {
                audio.remote_rtcp
            },
            rtcp_mux,
            direction,
            remote_direction: audio.direction,
            srtp: srtp.map(|(_, s)| s),
            remote_ptime_ms: audio.ptime,
        };
        self.pending = None;
        self.current = Some(negotiated.clone());
        Ok((sdp, negotiated))
    }

    fn choose_crypto(
        &mut self,
        audio: &ParsedAudio,
    ) -> Result<Option<(u32, NegotiatedSrtp)>, SdpError> {
        match self.config.encryption {
            SrtpPolicy::Disable => {
                if audio.secure_proto {
                    return Err(SdpError::SrtpRefused(audio.proto.clone()));
                }
                Ok(None)
            }
            SrtpPolicy::Allow | SrtpPolicy::Require => {
                // The offerer lists crypto lines in its order of preference.
                let usable = audio
                    .crypto
                    .iter()
                    .find_map(|c| c.key.clone().map(|k| (c.tag, k)));
                if let Some((tag, remote)) = usable {
                    let local = self.key_for(remote.suite)?;
                    return Ok(Some((tag, NegotiatedSrtp { local, remote })));
                }
                let why = if audio.crypto.is_empty() {
                    format!("the offer ({}) has no a=crypto line", audio.proto)
                } else {
                    let reasons: Vec<String> = audio
                        .crypto
                        .iter()
                        .map(|c| format!("{}: {}", c.suite_name, c.unusable.unwrap_or("unusable")))
                        .collect();
                    format!("no usable a=crypto line ({})", reasons.join("; "))
                };
                if self.config.encryption == SrtpPolicy::Require || audio.secure_proto {
                    Err(SdpError::SrtpRequired(why))
                } else {
                    Ok(None)
                }
            }
        }
    }
}

fn write_rtpmap(sdp: &mut String, kind: CodecKind, pt: u8, opus_max_playback_rate: Option<u32>) {
    match kind.sdp_channels() {
        Some(ch) => {
            let _ = write!(
                sdp,
                "a=rtpmap:{pt} {}/{}/{ch}\r\n",
                kind.sdp_name(),
                kind.clock_rate()
            );
        }
        None => {
            let _ = write!(
                sdp,
                "a=rtpmap:{pt} {}/{}\r\n",
                kind.sdp_name(),
                kind.clock_rate()
            );
        }
    }
    if kind == CodecKind::Opus {
        let _ = write!(sdp, "a=fmtp:{pt} useinbandfec=1;minptime=10");
        if let Some(rate) = opus_max_playback_rate.filter(|r| (8_000..48_000).contains(r)) {
            let _ = write!(sdp, ";maxplaybackrate={rate};sprop-maxcapturerate={rate}");
        }
        sdp.push_str("\r\n");
    }
}

/// The peer's telephone-event: at the codec's clock rate if offered, else
/// at any rate (payload type, clock rate).
fn pick_telephone_event(formats: &[(u8, String, u32)], codec_clock: u32) -> Option<(u8, u32)> {
    let events = || {
        formats
            .iter()
            .filter(|(_, n, _)| n.eq_ignore_ascii_case("telephone-event"))
    };
    events()
        .find(|(_, _, r)| *r == codec_clock)
        .or_else(|| events().next())
        .map(|(pt, _, r)| (*pt, *r))
}

fn static_format(pt: u8) -> Option<(&'static str, u32)> {
    match pt {
        0 => Some(("PCMU", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        _ => None,
    }
}

fn direction_of(attrs: &[rtc_sdp::description::common::Attribute]) -> Option<Direction> {
    attrs.iter().find_map(|a| match a.key.as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    })
}

fn parse_address(address: &str) -> Result<IpAddr, SdpError> {
    address
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| SdpError::InvalidAddress(format!("{address:?} is not an IP address")))
}

fn parse_audio(text: &str) -> Result<ParsedAudio, SdpError> {
    // Some peers end lines with bare LF; the parser wants either consistently.
    let normalised;
    let text = if text.contains("\r\n") {
        text
    } else {
        normalised = text.replace('\n', "\r\n");
        &normalised
    };
    let sd = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .map_err(|e| SdpError::Malformed(e.to_string()))?;
    let mut chosen: Option<(usize, &MediaDescription)> = None;
    let mut other_media = Vec::new();
    for (i, md) in sd.media_descriptions.iter().enumerate() {
        let usable = md.media_name.media == "audio"
            && md.media_name.port.value > 0
            && chosen.is_none()
            && md.media_name.protos.iter().any(|p| p == "RTP");
        if usable {
            chosen = Some((i, md));
        } else {
            other_media.push((
                i,
                format!(
                    "m={} 0 {} {}",
                    md.media_name.media,
                    md.media_name.protos.join("/"),
                    md.media_name
                        .formats
                        .first()
                        .map(String::as_str)
                        .unwrap_or("0")
                ),
            ));
        }
    }
    let (index, md) = chosen.ok_or(SdpError::NoAudio)?;
    let connection = md
        .connection_information
        .as_ref()
        .or(sd.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .ok_or_else(|| SdpError::InvalidAddress("no c= line".into()))?;
    let ip = parse_address(&connection.address)?;
    let port = u16::try_from(md.media_name.port.value)
        .map_err(|_| SdpError::InvalidAddress("port out of range".into()))?;
    let remote_rtp = SocketAddr::new(ip, port);
    let rtcp_mux = md.has_attribute("rtcp-mux");
    let remote_rtcp = match md.attribute("rtcp").flatten() {
        Some(value) => {
            let mut parts = value.split_ascii_whitespace();
            let rtcp_port: u16 = parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| SdpError::InvalidAddress(format!("a=rtcp:{value}")))?;
            let rtcp_ip = match parts.nth(2) {
                Some(a) => parse_address(a)?,
                None => ip,
            };
            SocketAddr::new(rtcp_ip, rtcp_port)
        }
        None => SocketAddr::new(ip, port.saturating_add(1)),
    };
    let mut formats = Vec::new();
    for f in &md.media_name.formats {
        let Ok(pt) = f.parse::<u8>() else { continue };
        let rtpmap = md.attributes.iter().find_map(|a| {
            let v = a.value.as_deref()?;
            if a.key != "rtpmap" {
                return None;
            }
            let (p, rest) = v.split_once(' ')?;
            if p.parse::<u8>().ok()? != pt {
                return None;
            }
            let mut parts = rest.trim().split('/');
            let name = parts.next()?.to_owned();
            let rate = parts.next()?.parse().ok()?;
            Some((name, rate))
        });
        match rtpmap.or_else(|| static_format(pt).map(|(n, r)| (n.to_owned(), r))) {
            Some((name, rate)) => formats.push((pt, name, rate)),
            None => continue,
        }
    }
    let proto = md.media_name.protos.join("/");
    let secure_proto = md
        .media_name
        .protos
        .iter()
        .any(|p| p == "SAVP" || p == "SAVPF");
    let crypto = md
        .attributes
        .iter()
        .filter(|a| a.key == "crypto")
        .filter_map(|a| a.value.as_deref().and_then(CryptoAttribute::parse))
        .collect();
    let direction = direction_of(&md.attributes)
        .or_else(|| direction_of(&sd.attributes))
        .unwrap_or_default();
    let ptime = md
        .attribute("ptime")
        .flatten()
        .and_then(|v| v.trim().parse().ok());
    Ok(ParsedAudio {
        formats,
        proto,
        secure_proto,
        remote_rtp,
        remote_rtcp,
        rtcp_mux,
        direction,
        crypto,
        ptime,
        index,
        other_media,
    })
}

#[cfg(test)]
mod tests;
