//! SRTP with SDES key exchange (RFC 4568, RFC 3711, RFC 6188, RFC 7714):
//! the `a=crypto` attribute, suite names as carriers spell them, keys from
//! the OS CSPRNG, and protect/unprotect contexts with replay protection.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

/// Replay window of the receiving contexts, in packets (RFC 3711 asks ≥ 64;
/// libsrtp uses 128).
pub const REPLAY_WINDOW: usize = 128;

/// The SRTP policy of a trunk, rule or call (LiveKit's `SIPMediaEncryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Offer and accept plain RTP only.
    #[default]
    Disable,
    /// Offer SRTP; accept SRTP or plain RTP.
    Allow,
    /// Offer SRTP; refuse anything without a usable crypto line (488).
    Require,
}

/// The crypto suites switchboard implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// AES_CM_128_HMAC_SHA1_80 (RFC 4568), the one every carrier has.
    AesCm128HmacSha1_80,
    /// AES_CM_128_HMAC_SHA1_32 (RFC 4568).
    AesCm128HmacSha1_32,
    /// AES_256_CM_HMAC_SHA1_80 (RFC 6188).
    Aes256CmHmacSha1_80,
    /// AES_256_CM_HMAC_SHA1_32 (RFC 6188).
    Aes256CmHmacSha1_32,
    /// AEAD_AES_128_GCM (RFC 7714, 16-byte tag).
    AeadAes128Gcm,
    /// AEAD_AES_256_GCM (RFC 7714, 16-byte tag).
    AeadAes256Gcm,
}

impl SrtpSuite {
    /// Our offer order: strongest widely deployed first, then the rest.
    pub const OFFER_ORDER: [SrtpSuite; 6] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
        SrtpSuite::Aes256CmHmacSha1_80,
        SrtpSuite::Aes256CmHmacSha1_32,
        SrtpSuite::AeadAes128Gcm,
        SrtpSuite::AeadAes256Gcm,
    ];

    /// The RFC spelling.
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::Aes256CmHmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            SrtpSuite::Aes256CmHmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// Parses a suite name, accepting the alternative spellings FreeSWITCH
    /// and Linphone use (`AES_CM_256_HMAC_SHA1_80`, `AES_128_CM_...`).
    /// FreeSWITCH's `AEAD_AES_*_GCM_8` use an 8-byte tag, which is a
    /// different suite: they are not accepted.
    pub fn from_name(name: &str) -> Option<SrtpSuite> {
        Some(match name.to_ascii_uppercase().as_str() {
            "AES_CM_128_HMAC_SHA1_80" | "AES_128_CM_HMAC_SHA1_80" => SrtpSuite::AesCm128HmacSha1_80,
            "AES_CM_128_HMAC_SHA1_32" | "AES_128_CM_HMAC_SHA1_32" => SrtpSuite::AesCm128HmacSha1_32,
            "AES_256_CM_HMAC_SHA1_80" | "AES_CM_256_HMAC_SHA1_80" => SrtpSuite::Aes256CmHmacSha1_80,
            "AES_256_CM_HMAC_SHA1_32" | "AES_CM_256_HMAC_SHA1_32" => SrtpSuite::Aes256CmHmacSha1_32,
            "AEAD_AES_128_GCM" => SrtpSuite::AeadAes128Gcm,
            "AEAD_AES_256_GCM" => SrtpSuite::AeadAes256Gcm,
            _ => return None,
        })
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            SrtpSuite::Aes256CmHmacSha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
            SrtpSuite::Aes256CmHmacSha1_32 => ProtectionProfile::Aes256CmHmacSha1_32,
            SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpSuite::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        }
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        self.profile().key_len()
    }

    /// Master salt length in bytes.
    pub fn salt_len(self) -> usize {
        self.profile().salt_len()
    }
}

/// A master key and salt for one direction.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKey {
    /// The suite the key is for.
    pub suite: SrtpSuite,
    /// Master key followed by master salt.
    pub key_and_salt: Vec<u8>,
}

impl std::fmt::Debug for SrtpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach logs.
        f.debug_struct("SrtpKey")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// Errors of SRTP keying and contexts.
#[derive(Debug, thiserror::Error)]
pub enum SrtpError {
    /// The OS random source failed.
    #[error("no randomness for SRTP keys: {0}")]
    Random(String),
    /// The crypto backend refused the key.
    #[error("SRTP context: {0}")]
    Context(String),
}

impl SrtpKey {
    /// A fresh random key from the OS CSPRNG.
    pub fn generate(suite: SrtpSuite) -> Result<SrtpKey, SrtpError> {
        let mut key_and_salt = vec![0u8; suite.key_len() + suite.salt_len()];
        getrandom::fill(&mut key_and_salt).map_err(|e| SrtpError::Random(e.to_string()))?;
        Ok(SrtpKey {
            suite,
            key_and_salt,
        })
    }

    /// The `inline:` base64 value.
    pub fn inline_base64(&self) -> String {
        STANDARD.encode(&self.key_and_salt)
    }
}

/// A parsed `a=crypto` attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag the answer must mirror.
    pub tag: u32,
    /// The suite, or `None` when we don't implement it.
    pub suite: Option<SrtpSuite>,
    /// The suite name as written.
    pub suite_name: String,
    /// The key, when the line is usable by us.
    pub key: Option<SrtpKey>,
    /// Why the line is unusable, when it is.
    pub unusable: Option<&'static str>,
}

impl CryptoAttribute {
    /// Formats `<tag> <suite> inline:<key>` for `a=crypto:`.
    pub fn format(tag: u32, key: &SrtpKey) -> String {
        format!("{tag} {} inline:{}", key.suite.name(), key.inline_base64())
    }

    /// Parses an `a=crypto` value. `None` only when the line is not even
    /// `<tag> <suite> <key-params>`; a well-formed line we can't use comes
    /// back with `unusable` set, so the caller can pick another.
    pub fn parse(value: &str) -> Option<CryptoAttribute> {
        let mut parts = value.split_ascii_whitespace();
        let tag: u32 = parts.next()?.parse().ok()?;
        let suite_name = parts.next()?.to_owned();
        let key_params = parts.next()?;
        let session_params: Vec<&str> = parts.collect();
        let suite = SrtpSuite::from_name(&suite_name);
        let mut attr = CryptoAttribute {
            tag,
            suite,
            suite_name,
            key: None,
            unusable: None,
        };
        let Some(suite) = suite else {
            attr.unusable = Some("unsupported crypto suite");
            return Some(attr);
        };
        if session_params.iter().any(|p| {
            let p = p.to_ascii_uppercase();
            p.starts_with("UNENCRYPTED_SRTP")
                || p.starts_with("UNAUTHENTICATED_SRTP")
                || p.starts_with("UNENCRYPTED_SRTCP")
                || (p.starts_with("KDR=") && p != "KDR=0")
                || p.starts_with("FEC_")
        }) {
            attr.unusable = Some("unsupported session parameter");
            return Some(attr);
        }
        // Several key params (';'-separated) only matter with MKI; use the first.
        let first = key_params.split(';').next().unwrap_or_default();
        let Some(rest) = first.strip_prefix("inline:") else {
            attr.unusable = Some("key method is not inline");
            return Some(attr);
        };
        let mut fields = rest.split('|');
        let encoded = fields.next().unwrap_or_default();
        for field in fields {
            if field.contains(':') {
                attr.unusable = Some("MKI is not supported");
                return Some(attr);
            }
        }
        match STANDARD.decode(encoded) {
            Ok(bytes) if bytes.len() == suite.key_len() + suite.salt_len() => {
                attr.key = Some(SrtpKey {
                    suite,
                    key_and_salt: bytes,
                });
            }
            _ => attr.unusable = Some("key is not valid base64 of the suite's length"),
        }
        Some(attr)
    }
}

/// Why a packet was not protected or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpPacketError {
    /// Authentication failed, a replay, or a malformed packet.
    #[error("SRTP: {0}")]
    Rejected(String),
}

/// Refuses an RTP packet whose header rtc-srtp would read at another length
/// than the wire says. rtc-rtp 0.21.1 stops reading a one-byte header
/// extension at an element with ID 15 (RFC 8285 §4.2) and then starts the
/// cipher and the authenticated data inside the extension, where RFC 3711
/// follows the extension's length field: such a packet would decrypt to
/// noise (AES-CM) or fail authentication (AEAD). Found by the `rtp_srtp`
/// fuzz target. Only packets with an extension are parsed a second time.
fn check_header_agrees(packet: &[u8]) -> Result<(), SrtpPacketError> {
    let Some(&first) = packet.first() else {
        return Ok(());
    };
    if first & 0x10 == 0 {
        return Ok(());
    }
    let wire = wire_header_len(packet);
    let mut buf = packet;
    let parsed = <rtc_rtp::header::Header as rtc_shared::marshal::Unmarshal>::unmarshal(&mut buf)
        .map(|h| rtc_shared::marshal::MarshalSize::marshal_size(&h))
        .ok();
    match (wire, parsed) {
        (Some(wire), Some(parsed)) if wire == parsed => Ok(()),
        _ => Err(SrtpPacketError::Rejected(
            "RTP header extension the SRTP layer would misread".into(),
        )),
    }
}

/// The RTP header length on the wire: fixed part, CSRCs, and the extension
/// by its length field.
fn wire_header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    let mut len = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = packet.get(len..len.checked_add(4)?)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        len = len.checked_add(4)?.checked_add(words.checked_mul(4)?)?;
    }
    (len <= packet.len()).then_some(len)
}

/// One call's SRTP state: an outbound context with our key and an inbound
/// context with the peer's key and replay protection.
pub struct SrtpSession {
    outbound: Context,
    inbound: Context,
    suite: SrtpSuite,
}

impl SrtpSession {
    /// Builds both contexts.
    pub fn new(local: &SrtpKey, remote: &SrtpKey) -> Result<SrtpSession, SrtpError> {
        let provider =
            rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::Context(e.to_string()))?;
        let make = |key: &SrtpKey, replay: bool| {
            let (k, s) = key.key_and_salt.split_at(key.suite.key_len());
            let (rtp_opt, rtcp_opt) = if replay {
                (
                    Some(srtp_replay_protection(REPLAY_WINDOW)),
                    Some(srtcp_replay_protection(REPLAY_WINDOW)),
                )
            } else {
                (None, None)
            };
            Context::new(
                k,
                s,
                key.suite.profile(),
                rtp_opt,
                rtcp_opt,
                provider.crypto(),
            )
            .map_err(|e| SrtpError::Context(e.to_string()))
        };
        Ok(SrtpSession {
            outbound: make(local, false)?,
            inbound: make(remote, true)?,
            suite: local.suite,
        })
    }

    /// Takes our new key; the inbound context and its rollover counter carry on.
    pub fn replace_outbound(&mut self, local: &SrtpKey) -> Result<(), SrtpError> {
        self.outbound = context(local, false)?;
        Ok(())
    }

    /// Takes the peer's new key (a re-INVITE re-keyed its side); our
    /// outbound context and its rollover counter carry on.
    pub fn replace_inbound(&mut self, remote: &SrtpKey) -> Result<(), SrtpError> {
        self.inbound = inbound_context(remote)?;
        Ok(())
    }

    /// The negotiated suite.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// Protects an RTP packet into `out`; returns the protected length.
    pub fn protect_rtp(&mut self, packet: &[u8], out: &mut [u8]) -> Result<usize, SrtpPacketError> {
        check_header_agrees(packet)?;
        let protected = self
            .outbound
            .encrypt_rtp(packet)
            .map_err(|e| SrtpPacketError::Rejected(e.to_string()))?;
        copy_out(&protected, out)
    }

    /// Authenticates and decrypts an SRTP packet into `out`; returns the RTP length.
    pub fn unprotect_rtp(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SrtpPacketError> {
        check_header_agrees(packet)?;
        let plain = self
            .inbound
            .decrypt_rtp(packet)
            .map_err(|e| SrtpPacketError::Rejected(e.to_string()))?;
        copy_out(&plain, out)
    }

    /// Protects an RTCP compound packet into `out`.
    pub fn protect_rtcp(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SrtpPacketError> {
        let protected = self
            .outbound
            .encrypt_rtcp(packet)
            .map_err(|e| SrtpPacketError::Rejected(e.to_string()))?;
        copy_out(&protected, out)
    }

    /// Authenticates and decrypts an SRTCP packet into `out`.
    pub fn unprotect_rtcp(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SrtpPacketError> {
        let plain = self
            .inbound
            .decrypt_rtcp(packet)
            .map_err(|e| SrtpPacketError::Rejected(e.to_string()))?;
        copy_out(&plain, out)
    }
}

fn context(key: &SrtpKey, replay_protection: bool) -> Result<Context, SrtpError> {
    let provider =
        rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::Context(e.to_string()))?;
    let (master_key, salt) = key.key_and_salt.split_at(key.suite.key_len());
    let (rtp_opt, rtcp_opt) = if replay_protection {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(
        master_key,
        salt,
        key.suite.profile(),
        rtp_opt,
        rtcp_opt,
        provider.crypto(),
    )
    .map_err(|e| SrtpError::Context(e.to_string()))
}

fn inbound_context(key: &SrtpKey) -> Result<Context, SrtpError> {
    context(key, true)
}

fn copy_out(src: &[u8], out: &mut [u8]) -> Result<usize, SrtpPacketError> {
    let dst = out
        .get_mut(..src.len())
        .ok_or_else(|| SrtpPacketError::Rejected("output buffer too small".into()))?;
    dst.copy_from_slice(src);
    Ok(src.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{parse_rtp, write_rtp_header};

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0u8; 12 + 160];
        write_rtp_header(&mut p, false, 0, seq, u32::from(seq) * 160, 42);
        p[12..].fill(seq as u8);
        p
    }

    /// Two ends of one SRTP call in `suite`, each with the other's key.
    fn pair(suite: SrtpSuite) -> (SrtpSession, SrtpSession) {
        let a = SrtpKey::generate(suite).unwrap();
        let b = SrtpKey::generate(suite).unwrap();
        (
            SrtpSession::new(&a, &b).unwrap(),
            SrtpSession::new(&b, &a).unwrap(),
        )
    }

    /// An RTP packet with a one-byte header extension (RFC 8285) of two
    /// words, `elements`, and 20 payload bytes.
    fn with_extension(elements: [u8; 8]) -> Vec<u8> {
        let mut p = vec![
            0x90, 0x00, 0x00, 0x05, 0, 0, 0, 0x03, 0x20, 0xca, 0xfe, 0xba,
        ];
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x02]);
        p.extend_from_slice(&elements);
        p.extend_from_slice(&[0x11; 20]);
        p
    }

    /// Found by the `rtp_srtp` fuzz target
    /// (fuzz/artifacts-found/rtp_srtp/ext-id15-*): an element with ID 15
    /// made rtc-srtp start the cipher inside the extension. Such packets are
    /// refused both ways; a well-formed extension still round-trips.
    #[test]
    fn a_header_extension_the_srtp_layer_would_misread_is_refused() {
        for suite in SrtpSuite::OFFER_ORDER {
            let (mut alice, mut bob) = pair(suite);
            let mut wire = [0u8; 1500];
            let mut plain = [0u8; 1500];
            // ID 1 with one byte, padding, then an ID 15 element.
            let id15 = with_extension([0x10, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff]);
            assert!(alice.protect_rtp(&id15, &mut wire).is_err(), "{suite:?}");
            assert!(bob.unprotect_rtp(&id15, &mut plain).is_err(), "{suite:?}");
            // ID 1 and ID 2, then padding: read to the end by both parsers.
            let good = with_extension([0x10, 0xaa, 0x21, 0xbb, 0xcc, 0x00, 0x00, 0x00]);
            let n = alice.protect_rtp(&good, &mut wire).unwrap();
            let m = bob.unprotect_rtp(&wire[..n], &mut plain).unwrap();
            assert_eq!(&plain[..m], &good[..], "{suite:?}");
        }
    }

    #[test]
    fn every_suite_round_trips_and_rejects_tamper_and_replay() {
        for suite in SrtpSuite::OFFER_ORDER {
            let (mut alice, mut bob) = pair(suite);
            let mut wire = [0u8; 1500];
            let mut plain = [0u8; 1500];
            for seq in [65530u16, 65531, 65535, 0, 1] {
                let n = alice.protect_rtp(&rtp(seq), &mut wire).unwrap();
                assert_ne!(
                    &wire[12..n.min(172)],
                    &rtp(seq)[12..n.min(172)],
                    "{suite:?} encrypts"
                );
                let m = bob.unprotect_rtp(&wire[..n], &mut plain).unwrap();
                assert_eq!(
                    parse_rtp(&plain[..m]).unwrap().payload,
                    &rtp(seq)[12..],
                    "{suite:?}"
                );
                assert!(
                    bob.unprotect_rtp(&wire[..n], &mut plain).is_err(),
                    "{suite:?} replay refused"
                );
            }
            let n = alice.protect_rtp(&rtp(2), &mut wire).unwrap();
            wire[20] ^= 1;
            assert!(
                bob.unprotect_rtp(&wire[..n], &mut plain).is_err(),
                "{suite:?} tamper refused"
            );
        }
    }

    #[test]
    fn parses_crypto_lines_from_carriers() {
        let key = SrtpKey::generate(SrtpSuite::Aes256CmHmacSha1_80).unwrap();
        let line = format!(
            "3 AES_CM_256_HMAC_SHA1_80 inline:{}|2^31",
            key.inline_base64()
        );
        let attr = CryptoAttribute::parse(&line).unwrap();
        assert_eq!(attr.tag, 3);
        assert_eq!(attr.key, Some(key.clone()));
        let mki = format!(
            "1 AES_256_CM_HMAC_SHA1_80 inline:{}|2^20|1:4",
            key.inline_base64()
        );
        assert_eq!(
            CryptoAttribute::parse(&mki).unwrap().unusable,
            Some("MKI is not supported")
        );
        let gcm8 = CryptoAttribute::parse("1 AEAD_AES_256_GCM_8 inline:AAAA").unwrap();
        assert_eq!(gcm8.unusable, Some("unsupported crypto suite"));
        let short = CryptoAttribute::parse("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA").unwrap();
        assert!(short.key.is_none());
        assert!(CryptoAttribute::parse("x AES_CM_128_HMAC_SHA1_80").is_none());
        let formatted = CryptoAttribute::format(7, &key);
        assert_eq!(CryptoAttribute::parse(&formatted).unwrap().key, Some(key));
    }

    #[test]
    fn generated_keys_differ() {
        let a = SrtpKey::generate(SrtpSuite::AesCm128HmacSha1_80).unwrap();
        let b = SrtpKey::generate(SrtpSuite::AesCm128HmacSha1_80).unwrap();
        assert_ne!(a.key_and_salt, b.key_and_salt);
        assert_eq!(a.key_and_salt.len(), 30);
    }
}
