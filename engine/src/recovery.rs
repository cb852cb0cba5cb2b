//! Opening a stream from its files: load the checkpoint, map the blocks it covers, replay the
//! records written after it, cut a torn tail, step over damaged records and report exactly
//! what was lost. The store always opens.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::block::{
    self, decode_trailer, BlockHeader, Offsets, Scanned, Writer, HEADER_LEN, NO_RECORD,
};
use crate::checkpoint::{decode_lease, BlockEntry, Checkpoint};
use crate::deletes::DeleteSet;
use crate::durability::LEASE_SPAN;
use crate::io::{read_file, Mapping, OpenMode, Vfs};
use crate::record::{self, Kind, FLAG_BATCH, FLAG_ERASED};
use crate::state::{Block, Data, LogState};
use crate::stream::{CHECKPOINT_FILE, CHECKPOINT_PREV_FILE, LEASE_FILE};

/// Most slots a block can have (its offset table is indexed by `u32`).
const MAX_SLOTS: u64 = 1 << 32;

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Sequences whose records were damaged and are gone, as inclusive ranges. A range may
    /// include sequences that never held a message when the damage hid a record's header.
    pub lost: Vec<(u64, u64)>,
    /// Bytes cut from the end of the log (a torn write or an incomplete batch).
    pub torn_bytes: u64,
    /// Records replayed after the checkpoint.
    pub replayed_records: u64,
    /// Bytes scanned after the checkpoint.
    pub replayed_bytes: u64,
    pub used_checkpoint: bool,
    /// Why the checkpoint could not be used, if it existed.
    pub checkpoint_error: Option<String>,
    /// Block files that were damaged beyond single records (missing, cut short, bad trailer,
    /// bad header).
    pub damaged_blocks: Vec<u64>,
    /// Why the `lease` file could not be used, if it existed. Recovery then skips a whole
    /// lease span past the last sequence found, so no sequence is handed out twice.
    pub lease_error: Option<String>,
    pub duration_us: u64,
    /// Part of `duration_us` spent rebuilding the subject index.
    pub index_us: u64,
}

/// The recovered state plus the durable sequence lease.
pub(crate) struct Recovered {
    pub state: LogState,
    pub lease: u64,
    pub report: RecoveryReport,
}

fn block_ids(vfs: &dyn Vfs, dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for name in vfs.list(dir)? {
        if name.ends_with(".tmp") {
            vfs.remove_file(&dir.join(&name))?
        } else if let Some(id) = name
            .strip_suffix(".blk")
            .and_then(|n| n.parse::<u64>().ok())
        {
            // Only names the engine writes: `1.blk` or `+1.blk` would alias a real block.
            if name == format!("{id:020}.blk") {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The newest valid checkpoint: `checkpoint`, else `checkpoint.prev` (a damaged newest one
/// only makes recovery replay more, since blocks are deleted only once both cover them).
fn read_checkpoint(
    vfs: &dyn Vfs,
    dir: &Path,
    stream_id: u64,
    report: &mut RecoveryReport,
) -> Option<Checkpoint> {
    let mut errors = Vec::new();
    for name in [CHECKPOINT_FILE, CHECKPOINT_PREV_FILE] {
        let path = dir.join(name);
        if !vfs.exists(&path) {
            continue;
        }
        let decoded = read_file(vfs, &path)
            .map_err(|e| e.to_string())
            .and_then(|b| Checkpoint::decode(&b).map_err(str::to_owned))
            .and_then(|c| check_checkpoint(c, stream_id).map_err(str::to_owned));
        match decoded {
            Ok(c) => {
                report.used_checkpoint = true;
                report.checkpoint_error = (!errors.is_empty()).then(|| errors.join("; "));
                return Some(c);
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    report.checkpoint_error = (!errors.is_empty()).then(|| errors.join("; "));
    None
}

/// Checks what a checksum cannot: that the checkpoint describes a state the engine can be in.
fn check_checkpoint(c: Checkpoint, stream_id: u64) -> Result<Checkpoint, &'static str> {
    if c.stream_id != stream_id {
        return Err("belongs to another stream");
    }
    if c.floor > c.last_seq + 1 {
        return Err("floor above the last sequence");
    }
    if c.deletes
        .ranges()
        .any(|(a, b)| a <= c.floor || b > c.last_seq)
    {
        return Err("delete range outside the stream");
    }
    let outside = |l: &crate::seqlist::SeqList| l.first() < c.floor || l.last() > c.last_seq;
    if c.timers.buckets.iter().any(|(_, l)| outside(l))
        || c.timers.never.as_ref().is_some_and(outside)
    {
        return Err("timer outside the stream");
    }
    let mut prev: Option<&BlockEntry> = None;
    for e in &c.blocks {
        let bad_order = prev.is_some_and(|p| p.id >= e.id || p.first_seq + p.slots > e.first_seq);
        if bad_order || e.slots > MAX_SLOTS || e.live > e.slots || e.id >= c.next_block_id {
            return Err("block entries inconsistent");
        }
        prev = Some(e);
    }
    Ok(c)
}

/// Rebuilds a stream's state from `dir`.
pub(crate) fn recover(
    vfs: &dyn Vfs,
    dir: &Path,
    stream_id: u64,
    block_size: usize,
) -> io::Result<Recovered> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let mut replay = Replay::default();
    let ids = block_ids(vfs, dir)?;
    let ck = read_checkpoint(vfs, dir, stream_id, &mut report);
    let mut st = LogState::new(stream_id, dir.to_path_buf(), block_size, true);
    let (pos_block, pos_offset) = ck
        .as_ref()
        .map(|c| (c.pos_block, c.pos_offset as usize))
        .unwrap_or((0, 0));
    let mut listed: HashMap<u64, BlockEntry> = HashMap::new();
    if let Some(c) = &ck {
        st.last_seq = c.last_seq;
        st.last_ts = c.last_ts;
        st.floor = c.floor;
        st.deletes = c.deletes.clone();
        st.timers = crate::ttl::Timers::from_parts(c.timers.clone());
        st.live_bytes = c.live_bytes;
        st.next_block_id = c.next_block_id;
        listed = c.blocks.iter().map(|e| (e.id, *e)).collect();
        for e in &c.blocks {
            if !ids.contains(&e.id) {
                report.damaged_blocks.push(e.id);
                lose_block(&mut st, e, &mut replay.lost);
            }
        }
    }
    let mut garbage = Vec::new();
    let last_id = ids.last().copied();
    for &id in &ids {
        st.next_block_id = st.next_block_id.max(id + 1);
        let entry = listed.get(&id).copied();
        let apply_from = match (ck.is_some(), entry) {
            (true, Some(_)) if id < pos_block => None,
            (true, None) if id <= pos_block => {
                garbage.push(id);
                continue;
            }
            (true, _) if id == pos_block => Some(pos_offset.max(HEADER_LEN)),
            _ => Some(HEADER_LEN),
        };
        let file = vfs.open(&Block::path(dir, id), OpenMode::Existing)?;
        let map = Arc::new(file.map()?);
        let file_len = map.len();
        if BlockHeader::decode(&map).is_some_and(|h| h.stream_id != stream_id || h.block_id != id) {
            // Not this stream's block (left by a writer of a deleted stream of the same
            // name, or copied in by hand): never replay it; leave it for inspection. What the
            // checkpoint counted in it is lost, as for a missing file.
            report.damaged_blocks.push(id);
            if let Some(e) = entry {
                lose_block(&mut st, &e, &mut replay.lost);
            }
            continue;
        }
        let trailer = decode_trailer(&map).filter(|t| t.block_id == id);
        // A trailer with fewer slots than the checkpoint gives the block was written after
        // recovery found some of them lost (the checkpoint is then the older one): scanning
        // settles the counts again.
        let mapped = match (apply_from, trailer, entry) {
            (None, Some(t), Some(e)) if t.slots as u64 >= e.slots && t.first_seq == e.first_seq => {
                Some((t, e))
            }
            _ => None,
        };
        if let Some((t, e)) = mapped {
            // Covered by the checkpoint and sealed: map it, read nothing.
            st.blocks.push(Block {
                id,
                first_seq: e.first_seq,
                offsets: t.offsets(&map, e.slots as usize),
                live: e.live,
                live_bytes: e.live_bytes,
                data: Data::Sealed(map),
                file: Some(file),
                written: t.body_end,
                file_len,
                synced: file_len,
                dir_synced: true,
                charged: 0,
                compacted_live: None,
            });
            continue;
        }
        if trailer.is_none() && apply_from.is_none() {
            report.damaged_blocks.push(id);
        }
        let header = BlockHeader::decode(&map);
        // A short header is a torn write only in a block the checkpoint does not cover.
        if header.is_none() && (map.len() >= HEADER_LEN || entry.is_some()) {
            report.damaged_blocks.push(id);
        }
        let first_seq = entry
            .map(|e| e.first_seq)
            .or(header.map(|h| h.first_seq.min(crate::record::MAX_SEQ)))
            .unwrap_or(st.last_seq + 1);
        let body_end = trailer.map(|t| t.body_end).unwrap_or(map.len());
        let mut b = Block {
            id,
            first_seq,
            offsets: Offsets::default(),
            live: entry.map(|e| e.live).unwrap_or(0),
            live_bytes: entry.map(|e| e.live_bytes).unwrap_or(0),
            data: Data::Sealed(map.clone()),
            file: Some(file.clone()),
            // The scan's extent; `finish_block` settles it.
            written: body_end,
            file_len,
            // Found in the page cache: counted as synced (a heal never cuts it), but the
            // unsynced directory entry makes the next sync fsync it too.
            synced: file_len,
            dir_synced: false,
            charged: 0,
            compacted_live: None,
        };
        if entry.is_some() {
            st.blocks.push(b);
        } else {
            b.first_seq = st.last_seq + 1;
            st.push_block(b);
        }
        let mut scan = BlockScan {
            st: &mut st,
            report: &mut report,
            replay: &mut replay,
            seq_at: SeqAt::new(trailer, &map),
            entry,
            damaged: Vec::new(),
            settled: false,
        };
        let end = scan.run(&map, apply_from, body_end, trailer.is_some());
        // Appends may go on in the newest block only if it still reaches the checkpoint's
        // position: records written below that position would be taken for records the
        // checkpoint already reflects by the next recovery, and never applied. A block cut
        // short is sealed instead, and appends start a new one.
        let proven = match apply_from {
            None => usize::MAX,
            Some(_) if ck.is_some() && id == pos_block => pos_offset.max(HEADER_LEN),
            Some(_) => 0,
        };
        let active = Some(id) == last_id && end >= proven;
        finish_block(&mut st, id, map, trailer.map(|t| t.body_end), end, active)?;
    }
    for id in garbage {
        vfs.remove_file(&Block::path(dir, id))?;
    }
    let (lease, skip_to) = match read_lease(vfs, dir, stream_id) {
        Ok(lease) => (lease, lease),
        Err(why) => {
            // The lease was last raised to a sequence handed out plus one span, so a span
            // past the last sequence found covers every sequence a reader may have seen
            // (unless a crash lost a whole span of appends as well). Reporting the lease as
            // 0 makes the next append write a sound one.
            report.lease_error = Some(why);
            let to = st
                .last_seq
                .saturating_add(LEASE_SPAN)
                .min(crate::state::MAX_SEQ);
            (0, to)
        }
    };
    if skip_to > st.last_seq {
        // Sequences up to the lease may have been handed out before the crash: never reuse.
        let first = st.last_seq + 1;
        st.apply_skip(first, skip_to);
    }
    redo_erases(&st, &replay.erase_redo)?;
    let index_started = Instant::now();
    for seq in st.build_index() {
        replay.lost.insert(seq);
    }
    report.lost = replay.lost.ranges().collect();
    report.damaged_blocks.sort_unstable();
    report.damaged_blocks.dedup();
    report.duration_us = started.elapsed().as_micros() as u64;
    report.index_us = index_started.elapsed().as_micros() as u64;
    Ok(Recovered {
        state: st,
        lease,
        report,
    })
}

/// The sequence lease on disk (0 without a lease file), or why the file cannot be trusted.
fn read_lease(vfs: &dyn Vfs, dir: &Path, stream_id: u64) -> Result<u64, String> {
    let bytes = match read_file(vfs, &dir.join(LEASE_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("{LEASE_FILE}: {e}")),
    };
    match decode_lease(&bytes) {
        // The engine never leases past the sequence limit; such a lease would overflow
        // the last sequence, so it is damage like a bad checksum.
        Some((sid, seq)) if sid == stream_id && seq > record::MAX_SEQ => Err(format!(
            "{LEASE_FILE}: sequence {seq} is past the limit {}",
            record::MAX_SEQ
        )),
        Some((sid, seq)) if sid == stream_id => Ok(seq),
        Some(_) => Err(format!("{LEASE_FILE}: belongs to another stream")),
        None => Err(format!(
            "{LEASE_FILE}: bad length, magic or checksum ({} bytes)",
            bytes.len()
        )),
    }
}

fn lose_block(st: &mut LogState, e: &BlockEntry, lost: &mut DeleteSet) {
    if e.slots == 0 {
        return;
    }
    let a = e.first_seq.max(st.floor);
    let b = (e.first_seq + e.slots - 1).min(st.last_seq);
    if a > b {
        return;
    }
    for (x, y) in st.deletes.gaps(a, b) {
        lost.insert_range(x, y);
    }
    st.discard_range(a, b, e.live_bytes);
}

/// Replay state that carries across blocks.
#[derive(Default)]
struct Replay {
    /// A damaged record of unknown sequence was skipped; the next message tells what was lost.
    unknown_gap: bool,
    /// (block id, seq, offset) of erases to redo in place.
    erase_redo: Vec<(u64, u64, usize)>,
    /// Sequences lost to damage that no later record removed.
    lost: DeleteSet,
}

/// In a sealed block the trailer names the sequence at every offset, so a damaged record is
/// identified exactly even when its header is gone. The table is built at the first damaged
/// record: an intact block never needs it.
struct SeqAt<'m> {
    trailer: Option<(block::Trailer, &'m Arc<Mapping>)>,
    table: Option<HashMap<usize, u64>>,
}

impl<'m> SeqAt<'m> {
    fn new(trailer: Option<block::Trailer>, map: &'m Arc<Mapping>) -> Self {
        SeqAt {
            trailer: trailer.map(|t| (t, map)),
            table: None,
        }
    }

    fn get(&mut self, off: usize) -> Option<u64> {
        let (t, map) = self.trailer?;
        let table = self.table.get_or_insert_with(|| {
            t.offsets(map, t.slots)
                .physical()
                .iter()
                .enumerate()
                .filter(|(_, &o)| o != NO_RECORD)
                .map(|(i, &o)| (o as usize, t.first_seq + i as u64))
                .collect()
        });
        table.get(&off).copied()
    }
}

/// Scanning one block: records before `apply_from` are only indexed (the checkpoint already
/// reflects them), records after it are applied.
struct BlockScan<'s> {
    st: &'s mut LogState,
    report: &'s mut RecoveryReport,
    replay: &'s mut Replay,
    seq_at: SeqAt<'s>,
    entry: Option<BlockEntry>,
    /// Damaged records met while indexing: (seq, offset, bytes). Judged once indexing ends,
    /// because a later truncate in the same block may hand the sequence to a new record.
    damaged: Vec<(u64, usize, u64)>,
    /// The part the checkpoint covers has been reconciled with what the block holds.
    settled: bool,
}

impl BlockScan<'_> {
    /// Returns the end of the last complete record or batch.
    fn run(
        &mut self,
        bytes: &[u8],
        apply_from: Option<usize>,
        body_end: usize,
        sealed: bool,
    ) -> usize {
        let apply_from = apply_from.unwrap_or(usize::MAX);
        // Records of a batch wait for its last record: a batch cut short by a crash is
        // dropped whole. A damaged record inside a batch does not cancel it.
        let mut batch: Vec<(usize, Scanned<'_>)> = Vec::new();
        let mut committed_end = HEADER_LEN;
        let scan_end = block::scan(bytes, HEADER_LEN, body_end, sealed, |off, item| {
            let len = item_len(&item);
            if off < apply_from {
                self.index_only(item, off);
                committed_end = off + len;
                return;
            }
            self.settle_covered();
            self.report.replayed_bytes += len as u64;
            let in_batch = match &item {
                Scanned::Record(r) => r.flags & FLAG_BATCH != 0,
                Scanned::Damaged(Some(h)) => h.flags & FLAG_BATCH != 0,
                // Undecodable bytes inside a pending batch do not end it: only a record
                // without the batch flag does (else a batch cut short by damage and a crash
                // would be committed without its end).
                Scanned::Damaged(None) => !batch.is_empty(),
            };
            batch.push((off, item));
            if in_batch {
                return;
            }
            self.report.replayed_records += batch.len() as u64;
            for (boff, bitem) in batch.drain(..) {
                self.replay_item(bitem, boff);
            }
            if len > 0 {
                committed_end = off + len;
            }
        });
        if let Some(e) = self.entry.filter(|_| apply_from == usize::MAX) {
            // A covered block rebuilt by scanning: the checkpoint's slot count wins.
            if let Some(b) = self.st.blocks.last_mut().filter(|b| b.id == e.id) {
                b.offsets.clip(e.slots as usize);
            }
        }
        // Bytes the checkpoint proves were durable are never a torn tail: whatever the
        // covered part no longer holds is lost here, however the scan ended.
        self.settle_covered();
        if scan_end.torn || !batch.is_empty() {
            self.report.torn_bytes += body_end.saturating_sub(committed_end) as u64;
        }
        if sealed {
            return body_end;
        }
        committed_end.max(HEADER_LEN).min(body_end)
    }

    /// Ends the part of the block the checkpoint covers (at the first replayed record, or at
    /// the end of the scan). Every sequence the checkpoint counts as live in this block that
    /// now has no intact record is lost, wherever the record went (a damaged stretch, a
    /// file cut short, a header gone), and the block's counters become what it holds.
    fn settle_covered(&mut self) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let Some(e) = self.entry else {
            return;
        };
        if self.st.blocks.last().map(|b| b.id) != Some(e.id) {
            return;
        }
        for (seq, off, len) in std::mem::take(&mut self.damaged) {
            if self.st.blocks.last().and_then(|b| b.offset_of(seq)) == Some(off) {
                self.lose_counted(seq, len);
            }
        }
        let missing = self.missing(&e);
        for &(a, z) in &missing {
            self.replay.lost.insert_range(a, z);
            self.st.discard_range(a, z, 0);
        }
        if !missing.is_empty() {
            self.report.damaged_blocks.push(e.id);
        }
        let st = &mut *self.st;
        let Some(b) = st.blocks.last() else {
            return;
        };
        let (mut live, mut bytes) = (0, 0);
        for seq in b.first_seq.max(st.floor)..b.end_seq().min(st.last_seq.saturating_add(1)) {
            if let Some(off) = b.offset_of(seq).filter(|_| !st.deletes.contains(seq)) {
                live += 1;
                bytes += b.record_len(off);
            }
        }
        let before = b.live_bytes;
        st.live_bytes = st.live_bytes.saturating_sub(before).saturating_add(bytes);
        if let Some(b) = st.blocks.last_mut() {
            b.live = live;
            b.live_bytes = bytes;
            debug_assert!(b.live <= b.slots());
        }
    }

    /// The sequences the checkpoint counts as live in block `e` that the block (the last one)
    /// has no slot for, as inclusive ranges. Work is bounded by the slots the scan placed:
    /// whole ranges beyond them are taken at once.
    fn missing(&self, e: &BlockEntry) -> Vec<(u64, u64)> {
        let st = &*self.st;
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut add = |a: u64, z: u64| match out.last_mut() {
            Some(last) if last.1 + 1 == a => last.1 = z,
            _ => out.push((a, z)),
        };
        let Some(b) = st.blocks.last() else {
            return out;
        };
        let lo = e.first_seq.max(st.floor);
        let hi = (e.first_seq + e.slots).min(st.last_seq.saturating_add(1));
        if lo >= hi {
            return out;
        }
        let (first, end) = (b.first_seq, b.end_seq());
        for (a, z) in st.deletes.gaps(lo, hi - 1) {
            if a < first {
                add(a, z.min(first - 1));
            }
            for seq in a.max(first)..z.saturating_add(1).min(end) {
                if b.offset_of(seq).is_none() {
                    add(seq, seq);
                }
            }
            if z >= end {
                add(a.max(end), z);
            }
        }
        out
    }

    fn replay_item(&mut self, item: Scanned<'_>, off: usize) {
        match item {
            Scanned::Record(r) => self.apply(&r, off),
            Scanned::Damaged(head) => {
                let seq = head
                    .filter(|h| h.kind == Kind::Msg)
                    .map(|h| h.seq)
                    .or_else(|| self.seq_at.get(off));
                match (head, seq) {
                    (_, Some(seq)) => self.lose(seq, off),
                    (Some(h), None) => self.apply_damaged_control(h),
                    (None, None) => self.replay.unknown_gap = true,
                }
            }
        }
    }

    fn apply(&mut self, r: &record::RecordRef<'_>, off: usize) {
        let st = &mut *self.st;
        if self.replay.unknown_gap && r.kind == Kind::Msg && r.seq > st.last_seq + 1 {
            self.replay.lost.insert_range(st.last_seq + 1, r.seq - 1);
        }
        self.replay.unknown_gap = false;
        if r.kind == Kind::Erase {
            if let Some((bi, boff)) = st.find(r.seq) {
                self.replay.erase_redo.push((st.blocks[bi].id, r.seq, boff));
            }
        }
        // A later removal overtakes a loss: the message was going away anyway, or its
        // sequence was handed to a new message after a truncate.
        let lost = &mut self.replay.lost;
        match r.kind {
            Kind::Delete | Kind::Erase => lost.remove_range(r.seq, r.seq),
            Kind::Purge => lost.remove_below(r.seq),
            Kind::Truncate => lost.remove_above(r.seq),
            Kind::Remove => {
                for (a, b) in crate::limits::decode_ranges(r.seq, r.payload) {
                    lost.remove_range(a, b);
                }
            }
            Kind::Msg | Kind::Skip => {}
        }
        st.apply_record(r, off);
    }

    /// A damaged message record of known sequence in the replayed part.
    fn lose(&mut self, seq: u64, off: usize) {
        if seq > self.st.last_seq && seq <= crate::state::MAX_SEQ {
            self.replay.lost.insert(seq);
            self.st.apply_lost(seq, off);
        }
    }

    /// A control record whose body is damaged but whose header is intact: everything it does
    /// is in the header (a Skip's first sequence is implied by the gap rule).
    fn apply_damaged_control(&mut self, h: record::Head) {
        let r = record::RecordRef {
            kind: h.kind,
            flags: h.flags,
            seq: h.seq,
            ts: h.ts,
            subject: &[],
            headers: &[],
            payload: &[],
            ttl: None,
            msg_id: &[],
            len: h.len,
        };
        self.st.apply_record(&r, 0);
    }

    /// Rebuilds the slot of a record the checkpoint already reflects. A damaged message the
    /// checkpoint counted as live is lost once indexing ends (`settle_covered`), as is every
    /// live sequence left without a record; undecodable bytes need nothing more here.
    fn index_only(&mut self, item: Scanned<'_>, off: usize) {
        let seq = match &item {
            Scanned::Record(r) if r.kind == Kind::Truncate => {
                if let Some(b) = self.st.blocks.last_mut() {
                    b.offsets
                        .clip(r.seq.saturating_add(1).saturating_sub(b.first_seq) as usize);
                }
                return;
            }
            Scanned::Record(r) if r.kind == Kind::Msg => Some(r.seq),
            Scanned::Record(_) => return,
            Scanned::Damaged(h) => h
                .filter(|h| h.kind == Kind::Msg)
                .map(|h| h.seq)
                .or_else(|| self.seq_at.get(off)),
        };
        let Some(seq) = seq else {
            return;
        };
        if !self.place_covered(seq, off) {
            return;
        }
        if let Scanned::Damaged(_) = item {
            let len = self
                .st
                .blocks
                .last()
                .map(|b| b.record_len(off))
                .unwrap_or(0);
            self.damaged.push((seq, off, len));
        }
    }

    /// Places the slot of a covered record. Compaction can leave more than `MAX_PAD`
    /// sequences between two records of a block, which the live placement rule refuses:
    /// inside the slots the checkpoint gives the block, any gap is padded.
    fn place_covered(&mut self, seq: u64, off: usize) -> bool {
        if self.st.place_indexed(seq, off) {
            return true;
        }
        let (Some(e), Some(b)) = (self.entry, self.st.blocks.last_mut()) else {
            return false;
        };
        if b.slots() == 0 || seq < b.end_seq() || seq >= e.first_seq + e.slots {
            return false;
        }
        while b.end_seq() < seq {
            b.offsets.push(NO_RECORD);
        }
        b.offsets.push(off as u32);
        true
    }

    fn lose_counted(&mut self, seq: u64, len: u64) {
        if self.st.discount(seq, len) {
            self.replay.lost.insert(seq);
        }
    }
}

fn item_len(item: &Scanned<'_>) -> usize {
    match item {
        Scanned::Record(r) => r.len,
        Scanned::Damaged(Some(h)) => h.len,
        Scanned::Damaged(None) => 0,
    }
}

/// Turns a scanned block into the active block (the newest, unsealed one, when `active`) or
/// seals it.
fn finish_block(
    st: &mut LogState,
    id: u64,
    map: Arc<Mapping>,
    sealed_body: Option<usize>,
    end: usize,
    active: bool,
) -> io::Result<()> {
    let (stream_id, block_size) = (st.stream_id, st.block_size);
    let Some(b) = st.block_mut(id) else {
        return Ok(());
    };
    if let Some(body_end) = sealed_body {
        b.written = body_end;
        return Ok(());
    }
    let Some(file) = b.file.clone() else {
        return Ok(());
    };
    let mut body = map.get(..end).unwrap_or(&[]).to_vec();
    if BlockHeader::decode(&body).is_none() {
        // Keep the block readable even if its header was hit: records carry their own seqs.
        body.resize(HEADER_LEN.max(body.len()), 0);
        let h = BlockHeader {
            stream_id,
            block_id: b.id,
            first_seq: b.first_seq,
            created_ns: 0,
        }
        .encode();
        body[..HEADER_LEN].copy_from_slice(&h);
        // Repaired on disk when the device allows; on a full disk the block stays readable
        // from memory and the next open repairs it again, so a stream still opens.
        let _ = file.write_all_at(&h, 0);
    }
    // Every mapping of the file goes before it is cut: touching a mapped page past the new
    // end would raise SIGBUS.
    let mut w = Writer::new(block_size.max(body.len() + record::MIN_RECORD_LEN));
    w.append(&body);
    b.offsets.detach();
    b.data = Data::Sealing(w.buf().clone(), None);
    drop(map);
    if (file.size()? as usize) > body.len() {
        file.set_len(body.len() as u64)?;
        file.sync_data()?;
    }
    b.written = body.len();
    b.file_len = body.len();
    b.synced = b.synced.min(b.file_len);
    if active {
        b.data = Data::Active(w);
    }
    // An older block without a valid trailer (a crash while sealing), or a newest one cut
    // short of the checkpoint's position, stays `Sealing`: the next flush writes its trailer. Recovery itself writes nothing that needs space, so a
    // stream opens (and heals) on a full disk.
    Ok(())
}

fn redo_erases(st: &LogState, redo: &[(u64, u64, usize)]) -> io::Result<()> {
    for &(id, _seq, off) in redo {
        let Some(b) = st.block(id) else { continue };
        let bytes = b.bytes().get(off..).unwrap_or(&[]);
        let already = record::decode_head(bytes).is_ok_and(|h| h.flags & FLAG_ERASED != 0);
        if already {
            continue;
        }
        if let (Some(erased), Some(file)) = (record::erased_copy(bytes), &b.file) {
            file.write_all_at(&erased, off as u64)?;
            file.sync_data()?;
        }
    }
    Ok(())
}
