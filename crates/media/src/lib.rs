//! RTP/RTCP sessions, SDP offer/answer, SRTP, codecs, jitter buffer, DTMF and tones. Knows nothing of SIP.
//!
//! This crate is a placeholder in the workspace layout of `DESIGN.md`; its
//! issue has not landed yet.
