//! Pure routing policy: number normalisation, inbound trunk matching, dispatch rules, validation. No I/O.
//!
//! This crate is a placeholder in the workspace layout of `DESIGN.md`; its
//! issue has not landed yet.
