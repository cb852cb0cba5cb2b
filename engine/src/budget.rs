//! The store's byte budget and the accounting it is checked against: every block file, every
//! metadata file and every memory block of every stream, counted as the file system counts
//! them (whole 4 KiB pages for files), shared by all streams of a store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

/// Allocation unit assumed for files (ext4, xfs and tmpfs allocate whole 4 KiB pages).
pub(crate) const PAGE: u64 = 4096;

/// Bytes a file of `len` bytes occupies on disk.
pub(crate) fn on_disk(len: u64) -> u64 {
    len.div_ceil(PAGE) * PAGE
}

/// The budget in force: what the store may use, and what appends may use of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetInfo {
    /// The whole budget: block files, metadata and memory blocks of every stream.
    pub max_bytes: u64,
    /// The part of `max_bytes` appends may not use: checkpoints, consumer state, removal
    /// records, markers and compaction's temporary files always find room in it.
    pub reserve: u64,
    /// Bytes in use now (files as the file system counts them, plus memory blocks).
    pub used: u64,
    /// Part of `used` held by blocks with no live message, deleted within two checkpoints.
    pub retiring: u64,
}

impl BudgetInfo {
    /// Bytes appends may use: `max_bytes - reserve`.
    pub fn append_limit(&self) -> u64 {
        self.max_bytes - self.reserve
    }
}

/// The store-wide counters. Streams add and subtract deltas as their files change.
#[derive(Debug)]
pub(crate) struct Usage {
    max_bytes: u64,
    reserve: u64,
    used: AtomicU64,
    retiring: AtomicU64,
}

impl Usage {
    pub(crate) fn new(max_bytes: u64, reserve: u64) -> Arc<Usage> {
        debug_assert!(reserve < max_bytes);
        Arc::new(Usage {
            max_bytes,
            reserve,
            used: AtomicU64::new(0),
            retiring: AtomicU64::new(0),
        })
    }

    /// An unlimited counter, for a state not yet attached to a store (recovery).
    pub(crate) fn detached() -> Arc<Usage> {
        Usage::new(u64::MAX, 0)
    }

    pub(crate) fn add(&self, delta: i64) {
        add_signed(&self.used, delta);
    }

    pub(crate) fn retiring(&self, delta: i64) {
        add_signed(&self.retiring, delta);
    }

    pub(crate) fn info(&self) -> BudgetInfo {
        BudgetInfo {
            max_bytes: self.max_bytes,
            reserve: self.reserve,
            used: self.used.load(Ordering::Acquire),
            retiring: self.retiring.load(Ordering::Acquire),
        }
    }

    /// Bytes appends may use.
    pub(crate) fn append_limit(&self) -> u64 {
        self.info().append_limit()
    }

    /// Bytes counted against appends: what is used, less what empty blocks will give back.
    pub(crate) fn committed(&self) -> u64 {
        let used = self.used.load(Ordering::Acquire);
        used.saturating_sub(self.retiring.load(Ordering::Acquire))
    }

    /// How far an append of `need` bytes would go over the append limit (0: it fits).
    pub(crate) fn excess(&self, need: u64) -> u64 {
        (self.committed() + need).saturating_sub(self.append_limit())
    }
}

fn add_signed(counter: &AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta as u64, Ordering::AcqRel);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::AcqRel);
    }
}

/// Default share of the file system's size a store may use.
pub const DEFAULT_BUDGET_PERCENT: u64 = 75;

/// The default reserve for a budget of `max_bytes`: 2%, at least 32 MiB and at most 1 GiB,
/// and never more than a quarter of the budget.
pub(crate) fn default_reserve(max_bytes: u64) -> u64 {
    (max_bytes / 50).clamp(32 << 20, 1 << 30).min(max_bytes / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_limits() {
        assert_eq!(on_disk(0), 0);
        assert_eq!(on_disk(1), 4096);
        assert_eq!(on_disk(4096), 4096);
        assert_eq!(on_disk(4097), 8192);
        let u = Usage::new(100 << 20, 10 << 20);
        assert_eq!(u.excess(90 << 20), 0);
        assert_eq!(u.excess((90 << 20) + 1), 1);
        u.add(50 << 20);
        u.retiring(20 << 20);
        assert_eq!(u.committed(), 30 << 20);
        u.retiring(-(20 << 20));
        u.add(-(50 << 20));
        assert_eq!(u.info().used, 0);
        assert_eq!(default_reserve(1 << 40), 1 << 30);
        assert_eq!(default_reserve(64 << 20), 16 << 20);
    }
}
