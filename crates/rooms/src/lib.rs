//! Embedded rooms and participants: audio mixing, data events, attributes.
//!
//! This crate is a placeholder in the workspace layout of `DESIGN.md`; its
//! issue has not landed yet.
