//! Opus through libopus (audiopus), with the settings that decide capacity
//! exposed: complexity, bitrate, PCM rate and in-band FEC.

use super::CodecError;
use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};

/// Opus encoder and decoder settings.
///
/// Defaults: complexity 5, 24 kbit/s, 16 kHz PCM (wideband voice, G.722
/// class), in-band FEC on with 5 % expected loss. Complexity and the PCM
/// rate dominate the cost per frame (see `bench/media.md`):
/// [`OpusSettings::narrowband_capacity`] halves it for calls whose audio is
/// narrowband anyway (a G.711 caller), [`OpusSettings::fullband`] spends
/// more for music or fullband TTS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusSettings {
    /// 0 (cheapest) to 10 (libopus default, about 4x the cost of 5).
    pub complexity: u8,
    /// Target bitrate in bit/s.
    pub bitrate: i32,
    /// PCM rate fed to the encoder and produced by the decoder: 8000, 12000,
    /// 16000, 24000 or 48000. The RTP clock stays 48 kHz whatever this is.
    pub pcm_rate: u32,
    /// Send in-band FEC so the peer can recover single losses.
    pub fec: bool,
    /// Expected loss in percent, which sizes the FEC.
    pub expected_loss_percent: u8,
    /// Complexity when the encoder runs at 8 kHz for a narrowband room (a
    /// G.711 party): there a higher bitrate buys more than complexity does
    /// (bench/media.md, "Narrowband Opus").
    pub narrowband_complexity: u8,
    /// Bitrate at 8 kHz, bit/s.
    pub narrowband_bitrate: i32,
}

impl Default for OpusSettings {
    fn default() -> Self {
        OpusSettings {
            complexity: 5,
            bitrate: 24_000,
            pcm_rate: 16_000,
            fec: true,
            expected_loss_percent: 5,
            narrowband_complexity: 0,
            narrowband_bitrate: 24_000,
        }
    }
}

impl OpusSettings {
    /// 8 kHz PCM at the narrowband complexity and bitrate (0, 24 kbit/s):
    /// what a narrowband room's Opus participants get. As good as
    /// complexity 5 at 16 kbit/s by PESQ on G.711 speech, for under half
    /// the encoder's time.
    pub fn narrowband_capacity() -> Self {
        let defaults = OpusSettings::default();
        OpusSettings {
            complexity: defaults.narrowband_complexity,
            bitrate: defaults.narrowband_bitrate,
            pcm_rate: 8000,
            ..defaults
        }
    }

    /// 48 kHz PCM, complexity 10, 32 kbit/s: libopus' own defaults (LiveKit's choice).
    pub fn fullband() -> Self {
        OpusSettings {
            complexity: 10,
            bitrate: 32_000,
            pcm_rate: 48_000,
            ..OpusSettings::default()
        }
    }
}

fn sample_rate(rate: u32) -> Result<SampleRate, CodecError> {
    Ok(match rate {
        8000 => SampleRate::Hz8000,
        12000 => SampleRate::Hz12000,
        16000 => SampleRate::Hz16000,
        24000 => SampleRate::Hz24000,
        48000 => SampleRate::Hz48000,
        other => return Err(CodecError::UnsupportedRate(other)),
    })
}

fn opus_err(e: audiopus::Error) -> CodecError {
    CodecError::Opus(e.to_string())
}

/// A mono Opus encoder.
pub struct OpusEncoder {
    encoder: Encoder,
}

impl OpusEncoder {
    /// Creates an encoder with `settings`.
    pub fn new(settings: &OpusSettings) -> Result<Self, CodecError> {
        let mut encoder = Encoder::new(
            sample_rate(settings.pcm_rate)?,
            Channels::Mono,
            Application::Voip,
        )
        .map_err(opus_err)?;
        encoder
            .set_complexity(settings.complexity.min(10))
            .map_err(opus_err)?;
        encoder
            .set_bitrate(Bitrate::BitsPerSecond(
                settings.bitrate.clamp(6000, 510_000),
            ))
            .map_err(opus_err)?;
        encoder.set_inband_fec(settings.fec).map_err(opus_err)?;
        encoder
            .set_packet_loss_perc(settings.expected_loss_percent.min(100))
            .map_err(opus_err)?;
        Ok(OpusEncoder { encoder })
    }

    /// Encodes one frame; returns the payload length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        self.encoder.encode(pcm, out).map_err(opus_err)
    }
}

/// A mono Opus decoder (stereo packets are downmixed by libopus).
pub struct OpusDecoder {
    decoder: Decoder,
}

impl OpusDecoder {
    /// Creates a decoder producing PCM at `pcm_rate`.
    pub fn new(pcm_rate: u32) -> Result<Self, CodecError> {
        let decoder = Decoder::new(sample_rate(pcm_rate)?, Channels::Mono).map_err(opus_err)?;
        Ok(OpusDecoder { decoder })
    }

    /// Decodes one packet; returns samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if payload.is_empty() {
            return self.conceal(None, out);
        }
        self.decoder
            .decode(Some(payload), out, false)
            .map_err(opus_err)
    }

    /// Conceals one lost frame of `out.len()` samples, from FEC in
    /// `next_payload` when there is one, else by libopus PLC.
    pub fn conceal(
        &mut self,
        next_payload: Option<&[u8]>,
        out: &mut [i16],
    ) -> Result<usize, CodecError> {
        match next_payload.filter(|p| !p.is_empty()) {
            Some(next) => self.decoder.decode(Some(next), out, true).map_err(opus_err),
            None => self
                .decoder
                .decode(None::<&[u8]>, out, false)
                .map_err(opus_err),
        }
    }
}
