//! Audio codecs on the trunk side: PCMU, PCMA, G.722 and Opus.
//!
//! [`CodecKind`] names a codec; [`AudioEncoder`] and [`AudioDecoder`] are enum
//! dispatchers (no trait objects on the hot path) over 20 ms frames at the
//! codec's own PCM rate ([`CodecKind::pcm_rate`]).

pub mod g711;
pub mod g722;
pub mod opus;

pub use self::opus::OpusSettings;

/// The audio codecs switchboard speaks on a SIP trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.722 at 64 kbit/s, static payload type 9.
    G722,
    /// Opus (RFC 7587), dynamic payload type, `opus/48000/2` in SDP.
    Opus,
}

impl CodecKind {
    /// Every codec, in switchboard's default preference order.
    pub const ALL: [CodecKind; 4] = [
        CodecKind::G722,
        CodecKind::Pcmu,
        CodecKind::Pcma,
        CodecKind::Opus,
    ];

    /// The encoding name as written in `a=rtpmap`.
    pub fn sdp_name(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::G722 => "G722",
            CodecKind::Opus => "opus",
        }
    }

    /// The RTP clock rate advertised in SDP (8000 for G.722 by RFC 3551).
    pub fn clock_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 => 8000,
            CodecKind::Opus => 48000,
        }
    }

    /// Channels written in `a=rtpmap` (Opus is always signalled as 2).
    pub fn sdp_channels(self) -> Option<u8> {
        match self {
            CodecKind::Opus => Some(2),
            _ => None,
        }
    }

    /// The static payload type, for codecs that have one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::G722 => Some(9),
            CodecKind::Opus => None,
        }
    }

    /// The rate of the PCM the codec consumes and produces (for Opus, the
    /// configured input rate).
    pub fn pcm_rate(self, opus: &OpusSettings) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => 8000,
            CodecKind::G722 => 16000,
            CodecKind::Opus => opus.pcm_rate,
        }
    }

    /// Matches an rtpmap encoding name case-insensitively; `rate` is the
    /// rtpmap clock rate.
    pub fn from_sdp(name: &str, rate: u32) -> Option<CodecKind> {
        let kind = [
            CodecKind::Pcmu,
            CodecKind::Pcma,
            CodecKind::G722,
            CodecKind::Opus,
        ]
        .into_iter()
        .find(|k| k.sdp_name().eq_ignore_ascii_case(name))?;
        (kind.clock_rate() == rate).then_some(kind)
    }
}

/// Errors creating or running a codec. Per call: a failure ends that call's
/// media, never the process.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// libopus refused a setting or a packet.
    #[error("opus: {0}")]
    Opus(String),
    /// The configured PCM rate is not one the codec accepts.
    #[error("unsupported PCM rate {0} Hz for this codec")]
    UnsupportedRate(u32),
}

/// The largest encoded 20 ms frame any supported codec produces (Opus' cap).
pub const MAX_ENCODED_FRAME: usize = 1275;

/// An encoder for one call direction.
pub enum AudioEncoder {
    /// µ-law.
    Pcmu,
    /// A-law.
    Pcma,
    /// G.722.
    G722(Box<g722::G722Encoder>),
    /// Opus.
    Opus(opus::OpusEncoder),
}

impl AudioEncoder {
    /// Creates the encoder for `kind`.
    pub fn new(kind: CodecKind, settings: &OpusSettings) -> Result<Self, CodecError> {
        Ok(match kind {
            CodecKind::Pcmu => AudioEncoder::Pcmu,
            CodecKind::Pcma => AudioEncoder::Pcma,
            CodecKind::G722 => AudioEncoder::G722(Box::default()),
            CodecKind::Opus => AudioEncoder::Opus(opus::OpusEncoder::new(settings)?),
        })
    }

    /// Encodes one frame of PCM at the codec rate; returns the payload length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        Ok(match self {
            AudioEncoder::Pcmu => g711::encode_ulaw(pcm, out),
            AudioEncoder::Pcma => g711::encode_alaw(pcm, out),
            AudioEncoder::G722(enc) => enc.encode(pcm, out),
            AudioEncoder::Opus(enc) => enc.encode(pcm, out)?,
        })
    }
}

/// A decoder for one call direction, with loss concealment.
pub enum AudioDecoder {
    /// µ-law.
    Pcmu(Concealer),
    /// A-law.
    Pcma(Concealer),
    /// G.722.
    G722(Box<g722::G722Decoder>, Concealer),
    /// Opus (concealment and FEC by libopus).
    Opus(opus::OpusDecoder),
}

impl AudioDecoder {
    /// Creates the decoder for `kind`.
    pub fn new(kind: CodecKind, settings: &OpusSettings) -> Result<Self, CodecError> {
        Ok(match kind {
            CodecKind::Pcmu => AudioDecoder::Pcmu(Concealer::default()),
            CodecKind::Pcma => AudioDecoder::Pcma(Concealer::default()),
            CodecKind::G722 => AudioDecoder::G722(Box::default(), Concealer::default()),
            CodecKind::Opus => AudioDecoder::Opus(opus::OpusDecoder::new(settings.pcm_rate)?),
        })
    }

    /// Decodes one packet's payload; returns samples written at the codec rate.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        Ok(match self {
            AudioDecoder::Pcmu(c) => {
                let n = g711::decode_ulaw(payload, out);
                c.remember(&out[..n]);
                n
            }
            AudioDecoder::Pcma(c) => {
                let n = g711::decode_alaw(payload, out);
                c.remember(&out[..n]);
                n
            }
            AudioDecoder::G722(dec, c) => {
                let n = dec.decode(payload, out);
                c.remember(&out[..n]);
                n
            }
            AudioDecoder::Opus(dec) => dec.decode(payload, out)?,
        })
    }

    /// Fills `out` for a lost packet. For Opus, `next_payload` (the packet
    /// after the lost one, when the jitter buffer already holds it) lets the
    /// decoder recover the loss from in-band FEC.
    pub fn conceal(
        &mut self,
        next_payload: Option<&[u8]>,
        out: &mut [i16],
    ) -> Result<usize, CodecError> {
        Ok(match self {
            AudioDecoder::Pcmu(c) | AudioDecoder::Pcma(c) | AudioDecoder::G722(_, c) => {
                c.conceal(out)
            }
            AudioDecoder::Opus(dec) => dec.conceal(next_payload, out)?,
        })
    }
}

/// Waveform-repetition concealment for codecs without their own PLC (G.711,
/// G.722): the last good frame is replayed, faded by 6 dB per lost frame and
/// muted after 60 ms, with a short cross-fade so the repeat point doesn't click.
#[derive(Debug, Clone)]
pub struct Concealer {
    last: [i16; 960],
    len: usize,
    lost_in_a_row: u32,
}

impl Default for Concealer {
    fn default() -> Self {
        Concealer {
            last: [0; 960],
            len: 0,
            lost_in_a_row: 0,
        }
    }
}

impl Concealer {
    fn remember(&mut self, pcm: &[i16]) {
        let n = pcm.len().min(self.last.len());
        self.last[..n].copy_from_slice(&pcm[..n]);
        self.len = n;
        self.lost_in_a_row = 0;
    }

    fn conceal(&mut self, out: &mut [i16]) -> usize {
        self.lost_in_a_row += 1;
        let n = out.len();
        if self.len == 0 || self.lost_in_a_row > 3 {
            out.fill(0);
            return n;
        }
        let gain = 1.0f32 / (1u32 << self.lost_in_a_row) as f32;
        let src = &self.last[..self.len];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (f32::from(src[i % src.len()]) * gain) as i16;
        }
        n
    }
}
