//! Healing a stream after a failed write or fsync, in place and with no reopen: every file is
//! cut back to what the last successful sync made durable, the state is rebuilt from the files
//! exactly as `open` rebuilds it, and writes resume. A full disk therefore stops only the
//! appends that hit it; the stream's other state is never reset, and the stream writes again
//! as soon as space is freed (see `docs/durability.md`, "A failed write or fsync").

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{DurabilityError, Poisoned};
use crate::record::Kind;
use crate::recovery::recover;
use crate::state::{Block, LogState};
use crate::stream::Stream;

/// Shortest time between two attempts (each rereads the log after the last checkpoint).
const HEAL_EVERY: Duration = Duration::from_millis(20);
/// Dropped ranges remembered (appenders of older ones have long been answered).
const MAX_DROPPED: usize = 64;

/// What heals have done.
#[derive(Default)]
pub(crate) struct HealLog {
    /// Log positions `(after, upto]` whose records a heal dropped, and why.
    dropped: Vec<(u64, u64, Arc<io::Error>)>,
    /// The highest sequence ever handed out: a heal skips up to it, so a sequence that a
    /// dropped record had (and a reader may have seen) is never given to another message.
    skip_to: u64,
    last_try: Option<Instant>,
}

impl Stream {
    /// The error for an appender whose record at log position `lsn` a heal dropped.
    pub(crate) fn dropped_by_heal(&self, lsn: u64) -> Option<DurabilityError> {
        if self.s.heals.load(Ordering::Acquire) == 0 {
            return None;
        }
        let h = self.s.heal.lock();
        h.dropped
            .iter()
            .find(|(after, upto, _)| lsn > *after && lsn <= *upto)
            .map(|(_, _, cause)| {
                Poisoned {
                    cause: cause.clone(),
                }
                .to_durability()
            })
    }

    /// Heals a poisoned stream if it can now (at most every `HEAL_EVERY`); otherwise returns
    /// the failure that poisoned it, unchanged.
    pub(crate) fn heal(&self) -> Result<(), DurabilityError> {
        {
            let mut h = self.s.heal.lock();
            if h.last_try.is_some_and(|t| t.elapsed() < HEAL_EVERY) {
                return self.check_poison();
            }
            h.last_try = Some(Instant::now());
        }
        if !self.s.persistent || self.s.closed.load(Ordering::Acquire) {
            return self.check_poison();
        }
        self.heal_now()?;
        self.settle();
        self.wake_watchers();
        Ok(())
    }

    fn heal_now(&self) -> Result<(), DurabilityError> {
        let _c = self.s.compact_lock.lock();
        let _w = self.s.write_lock.lock();
        let mut io = self.s.sync_lock.lock();
        let _l = self.s.lease_lock.lock();
        let Some(p) = self.poison() else {
            return Ok(());
        };
        let fail = |_| p.to_durability();
        let mut st = self.s.state.write();
        cut_to_synced(&st, &*self.s.vfs).map_err(fail)?;
        let block_size = self.s.cfg.block_size as usize;
        let rec = recover(&*self.s.vfs, &self.s.dir, st.stream_id, block_size).map_err(fail)?;
        let (old_lsn, old_last) = (st.lsn, st.last_seq);
        let mut fresh = rec.state;
        fresh.removals = st.removals.clone();
        st.detach();
        fresh.attach(st.usage.clone());
        fresh.configure(&self.s.cfg, self.s.clock.now_ns());
        // Log positions only grow: waiters below the cut are answered by `dropped_by_heal`.
        fresh.lsn = old_lsn + 1;
        let synced = self.s.synced_lsn.load(Ordering::Acquire);
        *st = fresh;
        self.s.written_lsn.store(st.lsn, Ordering::Release);
        self.s.synced_lsn.store(st.lsn, Ordering::Release);
        io.ckpt_lsn = st.lsn;
        let skip_to = {
            let mut h = self.s.heal.lock();
            h.skip_to = h.skip_to.max(old_last);
            if h.dropped.len() == MAX_DROPPED {
                h.dropped.remove(0);
            }
            h.dropped.push((synced, old_lsn, p.cause.clone()));
            h.skip_to
        };
        self.s.heals.fetch_add(1, Ordering::AcqRel);
        if st.last_seq < skip_to {
            let now = self.s.clock.now_ns();
            let first = (st.last_seq + 1).to_le_bytes();
            crate::limits::log_control(&mut st, &*self.s.vfs, Kind::Skip, skip_to, &first, now, 0)
                .map_err(fail)?;
        }
        // Consumers drop pending messages the heal took away.
        st.removals.fetch_add(1, Ordering::AcqRel);
        drop(st);
        *self.s.poison.lock() = None;
        self.s.poisoned.store(false, Ordering::Release);
        Ok(())
    }
}

/// Cuts every block file back to its synced length (files never synced are removed), and
/// syncs the cuts. Truncating only frees space, so this works on a full disk.
fn cut_to_synced(st: &LogState, vfs: &dyn crate::io::Vfs) -> io::Result<()> {
    let mut removed = false;
    for b in st.blocks.iter().chain(st.retired.iter()) {
        let Some(f) = &b.file else { continue };
        if b.synced == 0 && !b.dir_synced {
            match vfs.remove_file(&Block::path(&st.dir, b.id)) {
                // Removed by an earlier attempt that failed later on.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
            removed = true;
            continue;
        }
        if f.size()? > b.synced as u64 {
            f.set_len(b.synced as u64)?;
            f.sync_data()?;
        }
    }
    if removed {
        vfs.sync_dir(&st.dir)?;
    }
    Ok(())
}
