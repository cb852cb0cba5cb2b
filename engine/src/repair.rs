//! Repair: a stream whose records fail their checksums is rewritten without them, so its
//! files are clean again and every good record is kept (invariant `repair-keeps-good`).

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::error::{DurabilityError, WriteError};
use crate::state::Data;
use crate::stream::Stream;

/// What `Stream::repair` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Live messages read by the check that preceded the repair.
    pub checked: u64,
    /// Damaged sequences removed, as inclusive ranges (what `verify` reported).
    pub removed: Vec<(u64, u64)>,
    /// Block files rewritten without the damaged records.
    pub rewritten_blocks: Vec<u64>,
    /// The lease file, unreadable at open (`RecoveryReport::lease_error`), was written anew.
    pub lease_rewritten: bool,
}

impl Stream {
    /// Removes every message that fails its checksum (`verify`) and rewrites the blocks that
    /// held them, or that recovery found damaged, keeping every good record. Damaged records
    /// are removed with plain tombstones: a removal marker would have to name a subject the
    /// damage may have changed. A stream with no damage is left untouched.
    pub fn repair(&self) -> Result<RepairReport, WriteError> {
        let found = self.verify();
        let rec = self.recovery_report();
        let mut blocks = self.blocks_holding(&found.damaged);
        blocks.extend(self.blocks_holding(&rec.lost));
        blocks.extend(rec.damaged_blocks.iter().copied());
        blocks.extend(found.damaged_blocks.iter().copied());
        blocks.sort_unstable();
        blocks.dedup();
        let mut report = RepairReport {
            checked: found.checked,
            removed: found.damaged,
            rewritten_blocks: Vec::new(),
            lease_rewritten: false,
        };
        if rec.lease_error.is_some() {
            // Recovery already skipped a lease span past the last sequence; writing a lease
            // just above that keeps the skip and makes the file sound again.
            let upto = self
                .s
                .lease
                .load(Ordering::SeqCst)
                .max(self.state().last_seq)
                + 1;
            self.raise_lease(upto)?;
            report.lease_rewritten = true;
        }
        if blocks.is_empty() {
            return Ok(report);
        }
        for &(lo, hi) in &report.removed {
            for seq in lo..=hi {
                match self.remove_plain(seq, true) {
                    Ok(()) | Err(WriteError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.seal_active_if(&blocks)?;
        // Both checkpoints on disk must reflect the removals before a rewrite may drop them.
        self.checkpoint()?;
        self.checkpoint()?;
        report.rewritten_blocks = self
            .rewrite_blocks(&blocks)
            .map_err(|e| WriteError::Durability(DurabilityError::from_io(e)))?;
        Ok(report)
    }

    /// Ids of the blocks whose sequences overlap `ranges`, live or not.
    fn blocks_holding(&self, ranges: &[(u64, u64)]) -> Vec<u64> {
        let st = self.s.state.read();
        st.blocks
            .iter()
            .filter(|b| {
                ranges
                    .iter()
                    .any(|&(lo, hi)| b.first_seq <= hi && b.end_seq() > lo)
            })
            .map(|b| b.id)
            .collect()
    }

    /// Seals the active block when it is among `ids`: only sealed blocks are rewritten.
    fn seal_active_if(&self, ids: &[u64]) -> Result<(), WriteError> {
        let mut st = self.s.state.write();
        let active = st
            .blocks
            .last()
            .filter(|b| matches!(b.data, Data::Active(_)))
            .map(|b| b.id);
        if active.is_some_and(|id| ids.contains(&id)) {
            let now = self.s.clock.now_ns();
            st.roll(&*self.s.vfs, 0, now)
                .map_err(|e| WriteError::Durability(DurabilityError::from_io(e)))?;
        }
        Ok(())
    }
}
