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
use crate::io::{read_file, Mapping, OpenMode, VFile, Vfs};
use crate::record::{self, Kind, FLAG_BATCH, FLAG_ERASED};
use crate::state::{Block, Data, LogState};
use crate::stream::{CHECKPOINT_FILE, LEASE_FILE};

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
    /// Block files that were damaged beyond single records (missing, bad trailer, bad header).
    pub damaged_blocks: Vec<u64>,
    pub duration_us: u64,
}

impl RecoveryReport {
    fn lose(&mut self, a: u64, b: u64) {
        if a > b {
            return;
        }
        if let Some(last) = self.lost.last_mut() {
            if last.1 + 1 >= a {
                last.1 = last.1.max(b);
                return;
            }
        }
        self.lost.push((a, b));
    }
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
            vfs.remove_file(&dir.join(&name))?;
        } else if let Some(id) = name
            .strip_suffix(".blk")
            .and_then(|n| n.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn read_checkpoint(
    vfs: &dyn Vfs,
    dir: &Path,
    stream_id: u64,
    report: &mut RecoveryReport,
) -> Option<Checkpoint> {
    let path = dir.join(CHECKPOINT_FILE);
    if !vfs.exists(&path) {
        return None;
    }
    let decoded = read_file(vfs, &path)
        .map_err(|e| e.to_string())
        .and_then(|b| Checkpoint::decode(&b).map_err(str::to_owned))
        .and_then(|c| {
            if c.stream_id == stream_id {
                Ok(c)
            } else {
                Err("belongs to another stream".to_owned())
            }
        });
    match decoded {
        Ok(c) => {
            report.used_checkpoint = true;
            Some(c)
        }
        Err(e) => {
            report.checkpoint_error = Some(e);
            None
        }
    }
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
        st.live_bytes = c.live_bytes;
        st.next_block_id = c.next_block_id;
        listed = c.blocks.iter().map(|e| (e.id, *e)).collect();
        for e in &c.blocks {
            if !ids.contains(&e.id) {
                report.damaged_blocks.push(e.id);
                lose_block(&mut st, e, &mut report);
            }
        }
    }
    let mut garbage = Vec::new();
    let mut erase_redo = Vec::new();
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
        let trailer = decode_trailer(&map).filter(|t| t.block_id == id);
        if let (None, Some(t), Some(e)) = (apply_from, trailer, entry) {
            // Covered by the checkpoint and sealed: map it, read nothing.
            st.blocks.push(Block {
                id,
                first_seq: e.first_seq,
                offsets: Offsets::Mapped {
                    map: map.clone(),
                    at: t.body_end,
                    slots: t.slots.min(e.slots as usize),
                },
                live: e.live,
                live_bytes: e.live_bytes,
                data: Data::Sealed(map),
                file: Some(file),
                written: t.body_end,
                synced: t.body_end,
                dir_synced: true,
            });
            continue;
        }
        if trailer.is_none() && apply_from.is_none() {
            report.damaged_blocks.push(id);
        }
        let header = BlockHeader::decode(&map);
        if header.is_none() && map.len() >= HEADER_LEN {
            report.damaged_blocks.push(id);
        }
        let first_seq = entry
            .map(|e| e.first_seq)
            .or(header.map(|h| h.first_seq))
            .unwrap_or(st.last_seq + 1);
        let body_end = trailer.map(|t| t.body_end).unwrap_or(map.len());
        let mut b = Block {
            id,
            first_seq,
            offsets: Offsets::Owned(Vec::new()),
            live: entry.map(|e| e.live).unwrap_or(0),
            live_bytes: entry.map(|e| e.live_bytes).unwrap_or(0),
            data: Data::Sealed(map.clone()),
            file: Some(file.clone()),
            written: 0,
            // Found in the page cache; the next sync makes sure it is on disk.
            synced: 0,
            dir_synced: true,
        };
        if entry.is_some() {
            st.blocks.push(b);
        } else {
            b.first_seq = st.last_seq + 1;
            st.push_block(b);
        }
        let end = replay_block(
            &mut st,
            &map,
            apply_from,
            body_end,
            entry,
            &mut report,
            &mut erase_redo,
        );
        let is_last = Some(id) == last_id;
        finish_block(
            &mut st,
            file,
            map,
            trailer.is_some(),
            end,
            is_last,
            &mut report,
        )?;
    }
    for id in garbage {
        vfs.remove_file(&Block::path(dir, id))?;
    }
    let lease = read_file(vfs, &dir.join(LEASE_FILE))
        .ok()
        .and_then(|b| decode_lease(&b))
        .filter(|(sid, _)| *sid == stream_id)
        .map(|(_, s)| s)
        .unwrap_or(0);
    if lease > st.last_seq {
        // Sequences up to the lease may have been handed out before the crash: never reuse.
        let first = st.last_seq + 1;
        st.apply_skip(first, lease);
    }
    redo_erases(&st, &erase_redo)?;
    report.duration_us = started.elapsed().as_micros() as u64;
    Ok(Recovered {
        state: st,
        lease,
        report,
    })
}

fn lose_block(st: &mut LogState, e: &BlockEntry, report: &mut RecoveryReport) {
    let (a, b) = (e.first_seq, e.first_seq + e.slots.saturating_sub(1));
    if e.slots == 0 {
        return;
    }
    for seq in a..=b.min(st.last_seq) {
        if seq >= st.floor && !st.deletes.contains(seq) {
            report.lose(seq, seq);
        }
    }
    st.deletes.insert_range(a.max(st.floor), b.min(st.last_seq));
    st.live_bytes = st.live_bytes.saturating_sub(e.live_bytes);
}

/// Indexes (and from `apply_from` on, applies) the records of the last block in `st`.
/// Returns the end of the last complete record or batch.
fn replay_block(
    st: &mut LogState,
    bytes: &[u8],
    apply_from: Option<usize>,
    body_end: usize,
    entry: Option<BlockEntry>,
    report: &mut RecoveryReport,
    erase_redo: &mut Vec<(u64, u64, usize)>,
) -> usize {
    let apply_from = apply_from.unwrap_or(usize::MAX);
    let mut batch: Vec<(usize, record::RecordRef<'_>)> = Vec::new();
    let mut unknown_gap = false;
    let mut committed_end = HEADER_LEN;
    let scan_end = block::scan(bytes, HEADER_LEN, body_end, |off, item| {
        if off < apply_from {
            if let Scanned::Record(r) = item {
                index_only(st, &r, off);
            }
            committed_end = off + record_len(&item);
            return;
        }
        report.replayed_bytes += record_len(&item) as u64;
        match item {
            Scanned::Record(r) if r.flags & FLAG_BATCH != 0 => batch.push((off, r)),
            Scanned::Record(r) => {
                report.replayed_records += 1 + batch.len() as u64;
                for (boff, br) in batch.drain(..) {
                    apply(st, &br, boff, &mut unknown_gap, report, erase_redo);
                }
                apply(st, &r, off, &mut unknown_gap, report, erase_redo);
                committed_end = off + r.len;
            }
            Scanned::Damaged(Some(h)) => {
                batch.clear();
                if h.kind == Kind::Msg && h.seq > st.last_seq && h.seq <= crate::state::MAX_SEQ {
                    report.lose(h.seq, h.seq);
                    st.apply_skip(h.seq, h.seq);
                }
                committed_end = off + h.len;
            }
            Scanned::Damaged(None) => {
                batch.clear();
                unknown_gap = true;
            }
        }
    });
    if let Some(e) = entry {
        // The checkpoint's view of a block wins over an index rebuilt from before it.
        let b = st.blocks.last_mut();
        if let Some(b) = b.filter(|b| b.id == e.id && apply_from == usize::MAX) {
            b.offsets.truncate(e.slots as usize);
        }
    }
    if scan_end.torn || !batch.is_empty() {
        report.torn_bytes += (body_end.saturating_sub(committed_end)) as u64;
    }
    committed_end.max(HEADER_LEN).min(body_end)
}

fn record_len(item: &Scanned<'_>) -> usize {
    match item {
        Scanned::Record(r) => r.len,
        Scanned::Damaged(Some(h)) => h.len,
        Scanned::Damaged(None) => 0,
    }
}

fn apply(
    st: &mut LogState,
    r: &record::RecordRef<'_>,
    off: usize,
    unknown_gap: &mut bool,
    report: &mut RecoveryReport,
    erase_redo: &mut Vec<(u64, u64, usize)>,
) {
    if *unknown_gap && r.kind == Kind::Msg && r.seq > st.last_seq + 1 {
        report.lose(st.last_seq + 1, r.seq - 1);
    }
    *unknown_gap = false;
    if r.kind == Kind::Erase {
        if let Some((bi, boff)) = st.find(r.seq) {
            erase_redo.push((st.blocks[bi].id, r.seq, boff));
        }
    }
    st.apply_record(r, off);
}

/// Rebuilds the offset of a record already reflected in the checkpoint.
fn index_only(st: &mut LogState, r: &record::RecordRef<'_>, off: usize) {
    let Some(b) = st.blocks.last_mut() else {
        return;
    };
    match r.kind {
        Kind::Msg => {
            if b.slots() == 0 {
                b.first_seq = r.seq;
            }
            if r.seq < b.first_seq || r.seq - b.end_seq().min(r.seq) > block::MAX_PAD {
                return;
            }
            if r.seq < b.end_seq() {
                b.offsets.truncate((r.seq - b.first_seq) as usize);
            }
            while b.end_seq() < r.seq {
                b.offsets.push(NO_RECORD);
            }
            b.offsets.push(off as u32);
        }
        Kind::Truncate if r.seq < b.end_seq() => {
            b.offsets
                .truncate(r.seq.saturating_add(1).saturating_sub(b.first_seq) as usize);
        }
        _ => {}
    }
}

/// Turns a scanned block into the active block (the newest, unsealed one) or seals it.
fn finish_block(
    st: &mut LogState,
    file: Arc<dyn VFile>,
    map: Arc<Mapping>,
    sealed: bool,
    end: usize,
    is_last: bool,
    report: &mut RecoveryReport,
) -> io::Result<()> {
    let Some(b) = st
        .blocks
        .iter_mut()
        .chain(st.retired.iter_mut())
        .rev()
        .find(|b| b.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, &file)))
    else {
        return Ok(());
    };
    if sealed {
        if let Offsets::Owned(_) = b.offsets {
            b.written = end;
        }
        return Ok(());
    }
    let bytes = map.get(..end).unwrap_or(&[]);
    let mut header = bytes.to_vec();
    if BlockHeader::decode(bytes).is_none() {
        // Keep the block readable even if its header was hit: records carry their own seqs.
        header.resize(HEADER_LEN.max(header.len()), 0);
        let h = BlockHeader {
            stream_id: st.stream_id,
            block_id: b.id,
            first_seq: b.first_seq,
            created_ns: 0,
        }
        .encode();
        header[..HEADER_LEN].copy_from_slice(&h);
        file.write_all_at(&h, 0)?;
    }
    drop(map);
    if is_last {
        let cap = st.block_size.max(header.len() + record::MIN_RECORD_LEN);
        let mut w = Writer::new(cap);
        w.append(&header);
        if (file.size()? as usize) > header.len() {
            file.set_len(header.len() as u64)?;
            file.sync_data()?;
        }
        b.data = Data::Active(w);
        b.written = header.len();
        b.offsets = Offsets::Owned(b.offsets.to_vec());
    } else {
        // An older block without a valid trailer (a crash while sealing): cut what is not a
        // record and seal it now.
        file.set_len(header.len() as u64)?;
        let t = block::encode_trailer(b.id, b.first_seq, header.len() as u64, &b.offsets.to_vec());
        file.write_and_sync(&[(&t, header.len() as u64)])?;
        let map = Arc::new(file.map()?);
        b.offsets = Offsets::Owned(b.offsets.to_vec());
        b.data = Data::Sealed(map);
        b.written = header.len();
    }
    let _ = report;
    Ok(())
}

fn redo_erases(st: &LogState, redo: &[(u64, u64, usize)]) -> io::Result<()> {
    for &(id, _seq, off) in redo {
        let Some(b) = st
            .blocks
            .iter()
            .chain(st.retired.iter())
            .find(|b| b.id == id)
        else {
            continue;
        };
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
