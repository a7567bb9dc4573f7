//! tokio driver
