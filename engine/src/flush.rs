//! The write path under the API: hands encoded bytes to the OS in log order, syncs them,
//! writes and rotates checkpoints, deletes retired blocks and compacts sparse ones, and the
//! maintainer's periodic upkeep.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use crate::block::{encode_sparse_trailer, encode_trailer, AppendBuf, Offsets};
use crate::checkpoint::{BlockEntry, Checkpoint};
use crate::config::Durability;
use crate::durability::LEASE_SPAN;
use crate::error::DurabilityError;
use crate::io::{self, VFile};
use crate::record;
use crate::state::{keep_ids, Block, Data};
use crate::stream::{Stream, CHECKPOINT_FILE, CHECKPOINT_PREV_FILE};

/// Log bytes between checkpoints.
const CKPT_BYTES: u64 = 32 << 20;
/// Time between checkpoints while the log changes.
const CKPT_EVERY: Duration = Duration::from_secs(1);
/// Savings smaller than this are not worth a rewrite (or an eighth of the block size).
const COMPACT_MIN_BYTES: usize = 64 << 10;
/// Share of the time (percent) compaction may spend rewriting blocks.
const COMPACT_DUTY: u64 = 20;
/// Time between checkpoints while space waits for them (retired blocks, compaction).
const RECLAIM_CKPT_EVERY: Duration = Duration::from_millis(200);

/// Bytes compacting a block of `file_len` bytes with `live` records of `live_bytes` would
/// save, if worth it: at least a fifth of the file and at least `min_gain`. The new file holds
/// the live records, 12 bytes of sparse trailer per record, a header and a footer.
fn compaction_gain(file_len: u64, live: u64, live_bytes: u64, min_gain: u64) -> Option<u64> {
    use crate::block::{FOOTER_LEN, HEADER_LEN, SPARSE_ENTRY_LEN};
    let keep = live_bytes + SPARSE_ENTRY_LEN as u64 * live + (HEADER_LEN + FOOTER_LEN) as u64;
    let gain = file_len.checked_sub(keep)?;
    (gain >= min_gain && gain * 5 >= file_len).then_some(gain)
}

/// A block holding only the records at `offsets` (slots from `first_seq`) that `live`
/// keeps, with a sparse trailer: (file bytes, new offset table, end of records).
fn rewrite_block(
    map: &[u8],
    (stream_id, id, first_seq): (u64, u64, u64),
    offsets: &[u32],
    live: impl Fn(u64) -> bool,
) -> (Vec<u8>, Vec<u32>, usize) {
    let mut out = Vec::with_capacity(map.len() / 2);
    out.extend_from_slice(&rewritten_header(map, stream_id, id, first_seq));
    let mut new_offsets = vec![crate::block::NO_RECORD; offsets.len()];
    for (i, &off) in offsets.iter().enumerate() {
        let rec = map.get(off as usize..).and_then(|b| {
            record::decode_head(b)
                .ok()
                .map(|h| &b[..h.len.min(b.len())])
        });
        if let (Some(rec), true) = (
            rec,
            off != crate::block::NO_RECORD && live(first_seq + i as u64),
        ) {
            new_offsets[i] = out.len() as u32;
            out.extend_from_slice(rec);
        }
    }
    let body_end = out.len();
    let trailer = encode_sparse_trailer(id, first_seq, &out, &new_offsets);
    out.extend(trailer);
    (out, new_offsets, body_end)
}

/// The old header when it is intact, else a new one (a repair rewrites a block whose header
/// was damaged), dated by its first record.
fn rewritten_header(
    map: &[u8],
    stream_id: u64,
    block_id: u64,
    first_seq: u64,
) -> [u8; crate::block::HEADER_LEN] {
    let intact = crate::block::BlockHeader::decode(map)
        .filter(|h| h.block_id == block_id && h.stream_id == stream_id);
    let created_ns = match intact {
        Some(h) => h.created_ns,
        None => map
            .get(crate::block::HEADER_LEN..)
            .and_then(|b| record::decode_head(b).ok())
            .map_or(0, |h| h.ts),
    };
    crate::block::BlockHeader {
        stream_id,
        block_id,
        first_seq,
        created_ns,
    }
    .encode()
}

/// When the last checkpoint was written (guarded by the sync lock, which orders checkpoints).
pub(crate) struct CkptTiming {
    pub(crate) ckpt_lsn: u64,
    pub(crate) ckpt_at: Instant,
}

/// The checkpoints on disk, newest first.
#[derive(Default)]
pub(crate) struct Ckpts {
    pub(crate) newest: Option<Arc<Checkpoint>>,
    pub(crate) older: Option<Arc<Checkpoint>>,
}

/// One write the flusher performs outside the state lock.
struct Job {
    id: u64,
    file: Arc<dyn VFile>,
    buf: Arc<AppendBuf>,
    from: usize,
    to: usize,
    trailer: Option<Arc<[u8]>>,
    /// A block to seal.
    seal: Option<Seal>,
    new_file: bool,
}

enum Seal {
    /// Built by the maintenance thread.
    Ready(Arc<[u8]>),
    /// To build from the block's first sequence and offset table.
    Build(u64, Vec<u32>),
}

struct Work {
    jobs: Vec<Job>,
    lsn: u64,
    ckpt: Option<Checkpoint>,
}

impl Stream {
    /// Writes (and with `sync`, fsyncs) everything encoded so far; with `ckpt`, also writes a
    /// checkpoint. With `target`, returns at once if that log position is already handled
    /// (another flush covered it while this one waited for the write lock).
    pub(crate) fn flush(
        &self,
        sync: bool,
        ckpt: bool,
        target: Option<u64>,
    ) -> Result<(), DurabilityError> {
        if !self.s.persistent {
            return Ok(());
        }
        let sync = sync || ckpt;
        let written = {
            // Writes never queue behind an fsync: under `None` a checkpoint's sync must not
            // hold back handing data to the OS.
            let w = self.s.write_lock.lock();
            self.write_phase(&w, sync, ckpt, target)?
        };
        match written {
            Some((lsn, ck)) if sync => self.sync_phase(lsn, ck),
            _ => Ok(()),
        }
    }

    /// Hands everything encoded so far to the OS (with the write lock held by the caller).
    /// `None` when `target` was already reached or the stream is deleted.
    pub(crate) fn write_phase(
        &self,
        _write_lock: &MutexGuard<'_, ()>,
        sync: bool,
        ckpt: bool,
        target: Option<u64>,
    ) -> Result<Option<(u64, Option<Checkpoint>)>, DurabilityError> {
        self.check_poison()?;
        let done = |t: u64| !ckpt && self.done_lsn(sync) >= t;
        if target.is_some_and(done) || self.s.deleted.load(Ordering::Acquire) {
            return Ok(None);
        }
        // Building a trailer names every record's subject (a pass over the whole block):
        // flushes made on an appender's behalf (with a `target`) leave it to the maintenance
        // thread, so it never lands on the append path. A block that recovery found without
        // one is sealed the same way.
        let work = self.flush_work(ckpt, target.is_none());
        // A durable appender leading a group commit submits write + fdatasync as one linked
        // chain (one io_uring submission).
        let linked = sync && matches!(self.s.cfg.durability, Durability::Always);
        self.write_jobs(&work.jobs, linked)
            .map_err(|e| self.poison_with(e))?;
        self.finish_jobs(&work.jobs, linked);
        self.s.written_lsn.fetch_max(work.lsn, Ordering::AcqRel);
        Ok(Some((work.lsn, work.ckpt)))
    }

    /// Makes everything written up to `lsn` durable, then writes `ck` if it is newer than the
    /// checkpoint on disk.
    pub(crate) fn sync_phase(
        &self,
        lsn: u64,
        ck: Option<Checkpoint>,
    ) -> Result<(), DurabilityError> {
        let mut io = self.s.sync_lock.lock();
        self.check_poison()?;
        if self.s.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        if ck.is_none() && self.s.synced_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        self.sync_written().map_err(|e| self.poison_with(e))?;
        self.s.synced_lsn.fetch_max(lsn, Ordering::AcqRel);
        let now = self.s.opened.elapsed().as_micros() as u64;
        self.s.last_sync_us.fetch_max(now, Ordering::AcqRel);
        let Some(ck) = ck else { return Ok(()) };
        if lsn < io.ckpt_lsn {
            // A newer checkpoint reached the disk while this one waited: never go back.
            return Ok(());
        }
        // A failed checkpoint loses nothing: the log is synced and the previous checkpoint
        // stays valid; recovery just replays more.
        self.write_checkpoint(&ck)
            .map_err(DurabilityError::from_io)?;
        io.ckpt_lsn = lsn;
        io.ckpt_at = Instant::now();
        self.refresh_meta_usage();
        let older = {
            let mut c = self.s.ckpts.lock();
            let older = c.newest.replace(Arc::new(ck));
            c.older = older.clone();
            older
        };
        // Only what both checkpoints on disk cover may go: if the newest is damaged,
        // recovery falls back to the older one and still finds every record it needs.
        if let Some(older) = older {
            self.drop_retired(&older)
                .map_err(DurabilityError::from_io)?;
        }
        Ok(())
    }

    /// Rotates the checkpoint: the current one becomes `checkpoint.prev`, the new one
    /// `checkpoint` (each step crash-safe; recovery uses the newest valid one).
    fn write_checkpoint(&self, ck: &Checkpoint) -> std::io::Result<()> {
        let vfs = &*self.s.vfs;
        let path = self.s.dir.join(CHECKPOINT_FILE);
        let tmp = io::tmp_path(&path);
        if vfs.exists(&tmp) {
            vfs.remove_file(&tmp)?;
        }
        vfs.open(&tmp, io::OpenMode::CreateNew)?
            .write_and_sync(&[(&ck.encode(), 0)])?;
        if vfs.exists(&path) {
            vfs.rename(&path, &self.s.dir.join(CHECKPOINT_PREV_FILE))?;
        }
        vfs.rename(&tmp, &path)?;
        vfs.sync_dir(&self.s.dir)
    }

    fn done_lsn(&self, synced: bool) -> u64 {
        let w = if synced {
            &self.s.synced_lsn
        } else {
            &self.s.written_lsn
        };
        w.load(Ordering::Acquire)
    }

    fn flush_work(&self, ckpt: bool, seal: bool) -> Work {
        let st = self.s.state.read();
        let mut jobs = Vec::new();
        let mut all: Vec<&Block> = st.retired.iter().chain(st.blocks.iter()).collect();
        all.sort_by_key(|b| b.id);
        for b in all {
            let Some(file) = &b.file else { continue };
            let (buf, trailer) = match &b.data {
                Data::Active(w) => (w.buf().clone(), None),
                Data::Sealing(buf, Some(t)) => (buf.clone(), Some(Seal::Ready(t.clone()))),
                Data::Sealing(buf, None) => (
                    buf.clone(),
                    seal.then(|| Seal::Build(b.first_seq, b.offsets.physical())),
                ),
                Data::Sealed(_) => continue,
            };
            let to = buf.len();
            if to == b.written && trailer.is_none() {
                continue;
            }
            jobs.push(Job {
                id: b.id,
                file: file.clone(),
                buf,
                from: b.written,
                to,
                trailer: None,
                seal: trailer,
                new_file: !b.dir_synced,
            });
        }
        let ckpt = ckpt.then(|| {
            let (pos_block, pos_offset) = st
                .blocks
                .last()
                .map(|b| (b.id, b.bytes().len() as u64))
                .unwrap_or((0, 0));
            let ck = Checkpoint {
                stream_id: st.stream_id,
                last_seq: st.last_seq,
                last_ts: st.last_ts,
                floor: st.floor,
                live_bytes: st.live_bytes,
                pos_block,
                pos_offset,
                next_block_id: st.next_block_id,
                blocks: st
                    .blocks
                    .iter()
                    .map(|b| BlockEntry {
                        id: b.id,
                        first_seq: b.first_seq,
                        slots: b.slots(),
                        live: b.live,
                        live_bytes: b.live_bytes,
                    })
                    .collect(),
                deletes: st.deletes.clone(),
                timers: st.timers.parts(),
            };
            ck
        });
        let lsn = st.lsn;
        drop(st);
        // Trailers name every slot's subject: built outside the state lock.
        let jobs = jobs
            .into_iter()
            .map(|mut j| {
                j.trailer = match j.seal.take() {
                    Some(Seal::Ready(t)) => Some(t),
                    Some(Seal::Build(first_seq, offsets)) => {
                        let body = j.buf.bytes().get(..j.to).unwrap_or(&[]);
                        Some(encode_trailer(j.id, first_seq, body, &offsets).into())
                    }
                    None => None,
                };
                j
            })
            .collect();
        Work { jobs, lsn, ckpt }
    }

    /// Writes the jobs; with `linked`, each file's writes and its fdatasync go as one chain and
    /// new directory entries are synced too.
    fn write_jobs(&self, jobs: &[Job], linked: bool) -> std::io::Result<()> {
        let mut new_file = false;
        for j in jobs {
            let bytes = j.buf.bytes();
            let mut parts: Vec<(&[u8], u64)> = Vec::with_capacity(2);
            if j.to > j.from {
                parts.push((&bytes[j.from..j.to], j.from as u64));
            }
            if let Some(t) = &j.trailer {
                parts.push((t, j.to as u64));
            }
            if linked {
                j.file.write_and_sync(&parts)?;
            } else {
                for (b, off) in parts {
                    j.file.write_all_at(b, off)?;
                }
            }
            new_file |= j.new_file;
        }
        if new_file && linked {
            self.s.vfs.sync_dir(&self.s.dir)?;
        }
        Ok(())
    }

    fn finish_jobs(&self, jobs: &[Job], synced: bool) {
        let mut st = self.s.state.write();
        for j in jobs {
            let Some(b) = st.block_mut(j.id) else {
                continue;
            };
            b.written = b.written.max(j.to);
            b.file_len = b
                .file_len
                .max(j.to + j.trailer.as_ref().map_or(0, |t| t.len()));
            if synced {
                b.synced = b.file_len;
                b.dir_synced = true;
            }
            if j.trailer.is_some() {
                if let Ok(map) = j.file.map() {
                    b.offsets.detach();
                    b.data = Data::Sealed(Arc::new(map));
                }
                st.recharge_block(j.id);
            }
        }
    }

    /// Builds the trailers of rolled-over blocks with no lock held (a block's bytes and offset
    /// table no longer change once it rolls over), so the write lock, which appenders' inline
    /// writes take, is held only to write them.
    fn prepare_trailers(&self) {
        let todo: Vec<(u64, u64, Arc<AppendBuf>, Vec<u32>)> = {
            let st = self.s.state.read();
            st.blocks
                .iter()
                .chain(st.retired.iter())
                .filter_map(|b| match &b.data {
                    Data::Sealing(buf, None) => {
                        Some((b.id, b.first_seq, buf.clone(), b.offsets.physical()))
                    }
                    _ => None,
                })
                .collect()
        };
        for (id, first_seq, buf, offsets) in todo {
            let t: Arc<[u8]> = encode_trailer(id, first_seq, buf.bytes(), &offsets).into();
            let mut st = self.s.state.write();
            if let Some(Data::Sealing(b, slot @ None)) = st.block_mut(id).map(|b| &mut b.data) {
                if Arc::ptr_eq(b, &buf) {
                    *slot = Some(t);
                }
            }
        }
    }

    /// fdatasyncs every file with written but unsynced bytes, and the directory if a block
    /// file is new.
    fn sync_written(&self) -> std::io::Result<()> {
        let (mut files, new_dir) = {
            let st = self.s.state.read();
            let mut new_dir = false;
            let mut files: Vec<(u64, Arc<dyn VFile>, usize)> = Vec::new();
            for b in st.blocks.iter().chain(st.retired.iter()) {
                let Some(f) = &b.file else { continue };
                new_dir |= !b.dir_synced;
                if b.synced < b.file_len || !b.dir_synced {
                    files.push((b.id, f.clone(), b.file_len));
                }
            }
            (files, new_dir)
        };
        // Log order: a crash between two syncs then keeps a prefix of the log (an older
        // block's tombstone is never lost while a newer block's records survive).
        files.sort_by_key(|(id, _, _)| *id);
        for (_, f, _) in &files {
            f.sync_data()?;
        }
        if new_dir {
            self.s.vfs.sync_dir(&self.s.dir)?;
        }
        let mut st = self.s.state.write();
        for (id, _, len) in files {
            if let Some(b) = st.block_mut(id) {
                b.synced = b.synced.max(len);
                b.dir_synced = true;
            }
        }
        Ok(())
    }

    /// Deletes the files of retired blocks that `older` (the older checkpoint on disk)
    /// neither lists nor needs: everything in them is reflected by both checkpoints.
    fn drop_retired(&self, older: &Checkpoint) -> std::io::Result<()> {
        let gone: Vec<Block> = {
            let mut st = self.s.state.write();
            let covered =
                |b: &Block| b.id < older.pos_block && !older.blocks.iter().any(|e| e.id == b.id);
            let (gone, keep): (Vec<Block>, Vec<Block>) = std::mem::take(&mut st.retired)
                .into_iter()
                .partition(covered);
            st.retired = keep;
            st.uncharge_dropped(&gone);
            if let Some(d) = st.dedup.as_mut() {
                for b in &gone {
                    keep_ids(d, b, |_| true);
                }
            }
            gone
        };
        if gone.is_empty() {
            return Ok(());
        }
        for b in &gone {
            match self.s.vfs.remove_file(&Block::path(&self.s.dir, b.id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.s.vfs.sync_dir(&self.s.dir)
    }

    /// Rewrites the sealed block that compaction shrinks most, if any shrinks enough: a new
    /// file with the records the older durable checkpoint calls live and a sparse trailer,
    /// fsynced, renamed over the old one, then the directory fsynced. Never in place, so a
    /// crash leaves the old or the new file. Records deleted after that checkpoint are kept,
    /// so replaying their tombstones and the checkpoint's per-block counts stay valid
    /// (invariant `compaction-keeps-checkpoint-live`). The new file is built and synced with
    /// no lock that appends take; only the rename and the swap hold the state lock.
    pub(crate) fn compact_one_sparse(&self) -> std::io::Result<bool> {
        // Compact against the older checkpoint on disk: if the newest is damaged, recovery
        // falls back to it, and it must still find every record it counts as live.
        if !self.s.vfs.reclaims_space() {
            return Ok(false);
        }
        let Some(ck) = self.s.ckpts.lock().older.clone() else {
            return Ok(false);
        };
        let _c = self.s.compact_lock.lock();
        if self.s.deleted.load(Ordering::Acquire) || self.is_poisoned() {
            return Ok(false);
        }
        let min_gain = self.min_gain();
        let pick = {
            let st = self.s.state.read();
            let n = st.blocks.len();
            st.blocks
                .iter()
                .take(n.saturating_sub(1))
                .filter(|b| b.id < ck.pos_block && matches!(b.data, Data::Sealed(_)))
                .filter_map(|b| {
                    let e = ck.blocks.iter().find(|e| e.id == b.id)?;
                    if b.compacted_live == Some(e.live) {
                        return None;
                    }
                    let g = compaction_gain(b.file_len as u64, e.live, e.live_bytes, min_gain)?;
                    Some((g, b.id))
                })
                .max_by_key(|(g, _)| *g)
                .map(|(_, id)| id)
        };
        match pick {
            Some(id) => self.rewrite_sealed(id, &ck),
            None => Ok(false),
        }
    }

    /// Rewrites the given sealed blocks whatever they would gain (`Stream::repair`: a
    /// rewrite leaves out records that were removed as damaged). Returns the ids rewritten;
    /// blocks that are gone, active, or newer than the older checkpoint are left alone.
    pub(crate) fn rewrite_blocks(&self, ids: &[u64]) -> std::io::Result<Vec<u64>> {
        let Some(ck) = self.s.ckpts.lock().older.clone() else {
            return Ok(Vec::new());
        };
        let _c = self.s.compact_lock.lock();
        let mut done = Vec::new();
        for &id in ids {
            if self.s.deleted.load(Ordering::Acquire) || self.is_poisoned() {
                break;
            }
            if self.rewrite_sealed(id, &ck)? {
                done.push(id);
            }
        }
        Ok(done)
    }

    /// The rewrite itself (see `compact_one_sparse`); the caller holds the compaction lock.
    fn rewrite_sealed(&self, id: u64, ck: &Checkpoint) -> std::io::Result<bool> {
        let pick = {
            let st = self.s.state.read();
            let last = st.blocks.last().map(|b| b.id);
            st.blocks
                .iter()
                .find(|b| b.id == id && Some(id) != last && id < ck.pos_block)
                .and_then(|b| {
                    let e = ck.blocks.iter().find(|e| e.id == id)?;
                    match &b.data {
                        Data::Sealed(m) => {
                            let mut table = b.offsets.physical();
                            table.truncate(e.slots as usize);
                            Some((st.stream_id, b.first_seq, m.clone(), table, e.live))
                        }
                        _ => None,
                    }
                })
        };
        let Some((stream_id, first_seq, map, offsets, ck_live)) = pick else {
            return Ok(false);
        };
        let live = |seq: u64| seq >= ck.floor && seq <= ck.last_seq && !ck.deletes.contains(seq);
        let (out, new_offsets, body_end) =
            rewrite_block(&map, (stream_id, id, first_seq), &offsets, live);
        drop(map);
        let path = Block::path(&self.s.dir, id);
        let tmp = io::tmp_path(&path);
        if self.s.vfs.exists(&tmp) {
            self.s.vfs.remove_file(&tmp)?;
        }
        let f = self.s.vfs.open(&tmp, io::OpenMode::CreateNew)?;
        if let Err(e) = f.write_and_sync(&[(&out, 0)]) {
            drop(f);
            let _ = self.s.vfs.remove_file(&tmp);
            return Err(e);
        }
        drop(f);
        {
            let mut guard = self.s.state.write();
            if !guard.blocks.iter().any(|b| b.id == id) {
                // Retired meanwhile: its file goes with the next checkpoints.
                drop(guard);
                self.s.vfs.remove_file(&tmp)?;
                return Ok(false);
            }
            let st = &mut *guard;
            self.s.vfs.rename(&tmp, &path)?;
            let file = self.s.vfs.open(&path, io::OpenMode::Existing)?;
            let map = Arc::new(file.map()?);
            if let (Some(d), Some(b)) = (st.dedup.as_mut(), st.blocks.iter().find(|b| b.id == id)) {
                // The records left behind may hold ids the window still needs.
                keep_ids(d, b, |seq| {
                    let kept = new_offsets.get((seq - first_seq) as usize);
                    !matches!(kept, Some(&o) if o != crate::block::NO_RECORD)
                });
            }
            if let Some(b) = st.block_mut(id) {
                // The new table keeps the checkpoint's slot count (a later truncate that is not
                // yet durable must not shorten a trailer); readers see the current count.
                let logical = b.offsets.len();
                b.offsets = Offsets::owned(new_offsets);
                b.offsets.clip(logical);
                b.data = Data::Sealed(map);
                b.file = Some(file);
                b.written = body_end;
                b.file_len = out.len();
                b.synced = out.len();
                b.compacted_live = Some(ck_live);
            }
            st.recharge_block(id);
        }
        self.s.vfs.sync_dir(&self.s.dir)?;
        self.s
            .compacted_bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(true)
    }

    /// Seals the active block early when at least half a block of it is dead (removed
    /// messages, removal records), so that space can be reclaimed: the active block is never
    /// compacted. Half a block keeps a stream of deletes from making many small blocks.
    pub(crate) fn roll_if_dead(&self) {
        if !self.s.vfs.reclaims_space() {
            return;
        }
        let half = self.s.cfg.block_size / 2;
        let mut st = self.s.state.write();
        let dead = st
            .blocks
            .last()
            .filter(|b| matches!(b.data, Data::Active(_)))
            .map_or(0, |b| (b.bytes().len() as u64).saturating_sub(b.live_bytes));
        if dead >= half.max(self.min_gain()) && !self.s.closed.load(Ordering::Acquire) {
            let now = self.s.clock.now_ns();
            // A failure to create the file leaves the block active; nothing is lost.
            let _ = st.roll(&*self.s.vfs, 0, now);
        }
    }

    /// Smallest saving worth a rewrite.
    fn min_gain(&self) -> u64 {
        COMPACT_MIN_BYTES.min(self.s.cfg.block_size as usize / 8) as u64
    }

    /// Compacts one block if the duty cycle allows: after a rewrite that took `t`, the next
    /// waits `t * (100 - COMPACT_DUTY) / COMPACT_DUTY`, so compaction's reads, writes and
    /// fsyncs take at most `COMPACT_DUTY`% of the time and appends keep the rest.
    pub(crate) fn compact_throttled(&self) -> std::io::Result<()> {
        let now = self.s.opened.elapsed().as_micros() as u64;
        if now < self.s.compact_next_us.load(Ordering::Acquire) {
            return Ok(());
        }
        let t0 = Instant::now();
        if self.compact_one_sparse()? {
            let took = t0.elapsed().as_micros() as u64;
            let wait = took * (100 - COMPACT_DUTY) / COMPACT_DUTY;
            self.s
                .compact_next_us
                .store(now + took + wait, Ordering::Release);
        }
        Ok(())
    }

    /// Whether space waits for checkpoints: a retired block's file, or a block that enough
    /// deletes made worth compacting, while the older checkpoint on disk does not yet cover
    /// the log's end (both checkpoints must reflect a removal before its bytes can go). Looks
    /// at most once per `RECLAIM_CKPT_EVERY`: the look scans every block.
    fn reclaim_waits(&self) -> bool {
        let now = self.s.opened.elapsed().as_micros() as u64;
        let every = RECLAIM_CKPT_EVERY.as_micros() as u64;
        if now < self.s.reclaim_checked_us.load(Ordering::Acquire) + every {
            return false;
        }
        self.s.reclaim_checked_us.store(now, Ordering::Release);
        let older = self.s.ckpts.lock().older.clone();
        let st = self.s.state.read();
        let end = st
            .blocks
            .last()
            .map(|b| (b.id, b.bytes().len() as u64))
            .unwrap_or((0, 0));
        if older.is_some_and(|o| (o.pos_block, o.pos_offset) == end) {
            return false;
        }
        let min_gain = self.min_gain();
        let n = st.blocks.len();
        !st.retired.is_empty()
            || st.blocks.iter().take(n.saturating_sub(1)).any(|b| {
                matches!(b.data, Data::Sealed(_))
                    && compaction_gain(b.file_len as u64, b.live, b.live_bytes, min_gain).is_some()
            })
    }

    /// Background upkeep: write what is pending, sync on the interval, checkpoint when due,
    /// renew the sequence lease ahead of need.
    pub(crate) fn maintain(&self) -> Result<(), DurabilityError> {
        if !self.s.persistent || self.s.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.is_poisoned() {
            // Writes resume by themselves once the cause (a full disk) is gone.
            self.heal()?;
        }
        self.prepare_trailers();
        let (lsn, last_seq, sealing) = {
            let st = self.s.state.read();
            let sealing = st
                .blocks
                .iter()
                .chain(st.retired.iter())
                .any(|b| matches!(b.data, Data::Sealing(..)));
            (st.lsn, st.last_seq, sealing)
        };
        let (ck_due, sync_due) = {
            let io = self.s.sync_lock.lock();
            let ck_due = (lsn > io.ckpt_lsn
                && (lsn - io.ckpt_lsn >= CKPT_BYTES || io.ckpt_at.elapsed() >= CKPT_EVERY))
                || (io.ckpt_at.elapsed() >= RECLAIM_CKPT_EVERY && self.reclaim_waits());
            let unsynced = lsn > self.s.synced_lsn.load(Ordering::Acquire);
            let sync_due = unsynced
                && match self.s.cfg.durability {
                    Durability::Interval(d) => self.since_last_sync() >= d / 2,
                    _ => false,
                };
            (ck_due, sync_due)
        };
        if ck_due || sync_due || sealing || lsn > self.s.written_lsn.load(Ordering::Acquire) {
            self.flush(sync_due, ck_due, None)?;
        }
        if self.uses_lease() && last_seq + LEASE_SPAN / 2 > self.s.lease.load(Ordering::SeqCst) {
            self.raise_lease(last_seq + LEASE_SPAN)?;
        }
        if ck_due {
            self.roll_if_dead();
        }
        self.compact_throttled().map_err(DurabilityError::from_io)?;
        Ok(())
    }
}
