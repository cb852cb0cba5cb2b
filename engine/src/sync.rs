//! The atomics the lock-free parts use: std's, or loom's when the crate is built with
//! `--cfg loom` so the loom models in `pending.rs` explore every interleaving.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
