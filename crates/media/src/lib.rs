//! switchboard's media engine: RTP/RTCP sessions, SDP offer/answer, SDES-SRTP,
//! G.711/G.722/Opus, resampling, jitter buffer and concealment, RFC 4733
//! DTMF and call-progress tones. It knows nothing of SIP: the gateway drives
//! it with SDP bodies, sockets and 20 ms PCM frames.
//!
//! # How the gateway uses it
//!
//! 1. **Ports.** One [`ports::PortAllocator`] per process (range 10000–20000
//!    by default, [`ports::PortConfig`]). [`ports::PortAllocator::allocate`]
//!    returns bound, non-blocking [`ports::RtpPorts`] (even RTP port, RTCP
//!    one above). Dropping them starts a quarantine: the sockets stay bound
//!    and drained until idle 30 s (at most 10 min) before the pair is reused.
//! 2. **SDP.** One [`sdp::SdpNegotiator`] per call, built from the
//!    trunk/rule/call [`sdp::MediaConfig`] (codec preferences,
//!    `only_listed_codecs`, [`srtp::SrtpPolicy`] DISABLE/ALLOW/REQUIRE,
//!    offered suites) and the advertised [`sdp::LocalEndpoint`]
//!    (external/NAT address + RTP port).
//!    - Inbound INVITE: [`sdp::SdpNegotiator::answer_offer`] → answer SDP for
//!      the 200 and the [`sdp::NegotiatedMedia`]; on error,
//!      [`sdp::SdpError::sip_status`] gives the response (488 for no common
//!      codec or unmet SRTP policy, 400 for a malformed body), and the
//!      error's text says precisely why (e.g. "SRTP required but the offer
//!      (RTP/AVP) has no a=crypto line").
//!    - Outbound INVITE: [`sdp::SdpNegotiator::create_offer`], then
//!      [`sdp::SdpNegotiator::accept_answer`] with the 200's body.
//!    - re-INVITE/UPDATE: the same calls on the same negotiator (origin and
//!      version carry on, SRTP keys are kept); pass
//!      [`sdp::Direction::SendOnly`]/`Inactive` to hold. Apply the result to
//!      the running call with [`driver::CallHandle::update`].
//! 3. **Media.** [`session::MediaSession::new`] with a
//!    [`session::SessionConfig`] (room rate, 48 kHz default; Opus
//!    complexity/bitrate/PCM rate/FEC in [`codec::OpusSettings`]; jitter
//!    bounds; DTMF duration/volume; latching off/auto/on; media timeout 15 s
//!    and 30 s before the first packet; tone plan US/EU) and the
//!    [`sdp::NegotiatedMedia`]. The session is sans-IO: datagrams in
//!    ([`session::MediaSession::handle_datagram`]), one
//!    [`session::MediaSession::tick`] per 20 ms with the room's outbound
//!    frame and a buffer for the caller's, datagrams out
//!    ([`session::MediaSession::poll_transmit`]), events out
//!    ([`session::MediaSession::poll_event`]: DTMF digit once per press,
//!    media timeout/resumed, latched, SSRC change, RTCP BYE).
//!    [`session::MediaSession::stats`] gives loss, jitter, RTT and jitter
//!    buffer counters.
//! 4. **Driver.** [`driver::MediaWorker::spawn`] starts one tokio task that
//!    serves many calls on one 20 ms tick; [`driver::MediaWorker::add_call`]
//!    takes the ports, the session and the room side as a
//!    [`driver::CallAudio`] (frames in and out, events), and returns a
//!    [`driver::CallHandle`] for DTMF ([`driver::CallHandle::send_dtmf`],
//!    `w` = 0.5 s pause), tones ([`driver::CallHandle::play_tone`]:
//!    dial tone, ringback), re-negotiation, per-call timeout and stats.
//!    Dropping the handle ends the call's media and quarantines its ports.
//!
//! # Hot path
//!
//! After setup a frame allocates nothing on the RTP path (see
//! `tests/alloc.rs`); SRTP costs one buffer per packet inside `rtc-srtp`.
//! Costs per frame are in `bench/media.md`.

pub mod codec;
pub mod driver;
pub mod dtmf;
pub mod jitter;
pub mod mix;
pub mod ports;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod srtp;
pub mod tones;
