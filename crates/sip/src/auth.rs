//! Digest authentication (placeholder while the module is written).
