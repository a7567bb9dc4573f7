//! Durable trunks and dispatch rules: embedded file store and Redis, with a change feed.
//!
//! This crate is a placeholder in the workspace layout of `DESIGN.md`; its
//! issue has not landed yet.
