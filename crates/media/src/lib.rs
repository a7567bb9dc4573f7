//! switchboard's media engine (placeholder docs, written at the end).
#![allow(missing_docs)]
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
