//! The HTTP surface: Twirp livekit.SIP, access tokens, health and metrics.
//!
//! This crate is a placeholder in the workspace layout of `DESIGN.md`; its
//! issue has not landed yet.
