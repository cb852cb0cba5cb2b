//! The in-memory state of one stream's log: the block lookup (sequence -> record), the delete
//! set and the counters. Live operations and recovery replay change it through the same
//! `apply_*` methods, so a reopened stream is the stream that was running (invariant
//! `replay-equals-live` in `docs/format.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::block::{AppendBuf, BlockHeader, Offsets, Writer, HEADER_LEN, MAX_PAD, NO_RECORD};
use crate::budget::Usage;
use crate::dedup::{Dedup, Found};
use crate::deletes::DeleteSet;
use crate::io::{Mapping, OpenMode, VFile, Vfs};
use crate::record::{self, Kind};
use crate::subject_index::SubjectIndex;

/// Where a block's bytes live right now.
pub(crate) enum Data {
    /// The block being appended to.
    Active(Writer),
    /// Rolled over; its tail and trailer may still be on their way to disk (memory streams
    /// stay in this state). The trailer, once the maintenance thread has built it.
    Sealing(Arc<AppendBuf>, Option<Arc<[u8]>>),
    /// Sealed on disk and mapped.
    Sealed(Arc<Mapping>),
}

pub(crate) struct Block {
    pub id: u64,
    pub first_seq: u64,
    pub offsets: Offsets,
    pub live: u64,
    pub live_bytes: u64,
    pub data: Data,
    pub file: Option<Arc<dyn VFile>>,
    /// Bytes of the file already handed to the OS.
    pub written: usize,
    /// Bytes of the file handed to the OS, trailer included.
    pub file_len: usize,
    /// Bytes of the file known to be on stable storage.
    pub synced: usize,
    /// The directory entry of the file is durable.
    pub dir_synced: bool,
    /// Bytes counted for this block in the store's usage ([`Block::footprint`] when last
    /// counted).
    pub charged: u64,
    /// The checkpoint's live count this block was last compacted for: until more of it is
    /// removed, compacting it again would gain nothing.
    pub compacted_live: Option<u64>,
}

impl Block {
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Active(w) => w.buf().bytes(),
            Data::Sealing(b, _) => b.bytes(),
            Data::Sealed(m) => m,
        }
    }
    /// Whether the block's header (and a sealed block's trailer) pass their checksums and
    /// name this block. A block being sealed has no trailer yet.
    pub fn frame_intact(&self, stream_id: u64) -> bool {
        let header = crate::block::BlockHeader::decode(self.bytes())
            .is_some_and(|h| h.block_id == self.id && h.stream_id == stream_id);
        let trailer = match &self.data {
            Data::Sealed(m) => crate::block::decode_trailer(m).is_some(),
            _ => true,
        };
        header && trailer
    }

    /// Decodes the record at `off`. The body checksum is verified only for a mapped (sealed)
    /// block: an in-memory buffer holds records this process encoded, or verified when
    /// recovery read them in.
    pub fn record_at(&self, off: usize) -> Result<record::RecordRef<'_>, record::DecodeError> {
        let bytes = self.bytes().get(off..).unwrap_or(&[]);
        record::decode_checked(bytes, matches!(self.data, Data::Sealed(_)))
    }

    pub fn slots(&self) -> u64 {
        self.offsets.len() as u64
    }
    /// One past the highest sequence this block has a slot for.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.slots()
    }
    /// Whether `seq` can take this block's next slot: the placement rule shared by live
    /// appends and replay (a larger gap than `MAX_PAD` starts a new block).
    pub fn takes(&self, seq: u64) -> bool {
        self.slots() == 0 || (seq >= self.end_seq() && seq - self.end_seq() <= MAX_PAD)
    }

    pub fn offset_of(&self, seq: u64) -> Option<usize> {
        let slot = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.offsets
            .get(slot)
            .filter(|&o| o != NO_RECORD)
            .map(|o| o as usize)
    }
    /// End of the records (the active buffer's length, or a sealed body's end).
    fn body_len(&self) -> usize {
        match &self.data {
            Data::Sealed(_) => self.written,
            _ => self.bytes().len(),
        }
    }

    /// Encoded length of the record at `off`. Trusts the length field only when the header
    /// check passes; for a damaged header it measures up to the next valid record, so counters
    /// stay exact after on-disk damage.
    pub fn record_len(&self, off: usize) -> u64 {
        let end = self.body_len().min(self.bytes().len());
        let Some(rest) = self.bytes().get(off..end) else {
            return 0;
        };
        match record::decode_head(rest) {
            Ok(h) => h.len.min(rest.len()) as u64,
            Err(_) => record::resync(rest, 1).unwrap_or(rest.len()) as u64,
        }
    }

    /// Bytes the block occupies: its file as the file system counts it (whole pages), or a
    /// memory stream's buffer.
    pub fn footprint(&self, persistent: bool) -> u64 {
        let len = match &self.data {
            Data::Active(w) => w.buf().len(),
            Data::Sealing(buf, _) => buf.len(),
            Data::Sealed(m) => m.len(),
        };
        let len = len.max(self.file_len) as u64;
        if persistent {
            crate::budget::on_disk(len)
        } else {
            len
        }
    }

    pub fn path(dir: &Path, id: u64) -> PathBuf {
        dir.join(format!("{id:020}.blk"))
    }
}

pub use crate::record::MAX_SEQ;

fn valid_subject(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok_and(|s| crate::subject::validate_subject(s).is_ok())
}

/// Reused buffers of the counting sort `rebuild_index` runs per sealed block.
#[derive(Default)]
struct BySubject {
    ids: Vec<u32>,
    seqs: Vec<u64>,
    start: Vec<usize>,
    sorted: Vec<u64>,
}

impl BySubject {
    fn clear(&mut self, subjects: usize) {
        self.ids.clear();
        self.seqs.clear();
        self.start.clear();
        self.start.resize(subjects + 1, 0);
    }
    fn add(&mut self, id: u32, seq: u64) {
        self.ids.push(id);
        self.seqs.push(seq);
    }
    fn sort(&mut self) {
        for &id in &self.ids {
            self.start[id as usize + 1] += 1;
        }
        for i in 1..self.start.len() {
            self.start[i] += self.start[i - 1];
        }
        self.sorted.clear();
        self.sorted.resize(self.seqs.len(), 0);
        let mut next = self.start.clone();
        for (&id, &seq) in self.ids.iter().zip(&self.seqs) {
            self.sorted[next[id as usize]] = seq;
            next[id as usize] += 1;
        }
    }
    fn run(&self, id: usize) -> &[u64] {
        &self.sorted[self.start[id]..self.start[id + 1]]
    }
}

pub(crate) struct LogState {
    pub stream_id: u64,
    pub dir: PathBuf,
    pub block_size: usize,
    /// Persistent streams have files; memory streams only buffers.
    pub persistent: bool,
    /// Sorted by `first_seq`; the last one receives appends.
    pub blocks: Vec<Block>,
    /// Blocks with no live message, kept until a checkpoint makes their records redundant.
    pub retired: Vec<Block>,
    pub next_block_id: u64,
    pub last_seq: u64,
    pub last_ts: i64,
    /// Every sequence below `floor` is gone; the delete set holds only gaps above it.
    pub floor: u64,
    pub deletes: DeleteSet,
    pub live_bytes: u64,
    /// Bytes encoded since open: the position group commit waits on.
    pub lsn: u64,
    /// Subjects of the live messages. `None` while recovery replays the log; built from the
    /// recovered live set, then kept current by every `apply_*`.
    pub index: Option<SubjectIndex>,
    /// The stream's limits (changeable while the stream is open); set with `set_limits`.
    pub limits: crate::config::Limits,
    /// Some limit is set: appends to an unlimited stream skip every limit check.
    pub limited: bool,
    /// Subject id found by `knows_subject` for the message about to be applied.
    subject_hint: Option<u32>,
    /// The live messages with a TTL. Kept by every `apply_*`, like the index.
    pub timers: crate::ttl::Timers,
    /// Every message below this is removed or has a TTL of "never": where the next max_age
    /// scan starts, so exempt messages are stepped over once, not on every pass.
    pub age_from: u64,
    /// Counts operations that removed messages: consumers compare it with the value they saw
    /// to learn, cheaply, that pending messages may have gone.
    pub removals: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The message ids in the duplicate window, if the stream deduplicates.
    pub dedup: Option<Dedup>,
    /// The store's byte counters, which every block's footprint is added to.
    pub usage: Arc<Usage>,
    /// Bytes this stream's blocks add to `usage` (live and retired).
    pub charged: u64,
}

/// Brings `b`'s share of the usage counters up to date.
pub(crate) fn recharge(usage: &Usage, charged: &mut u64, b: &mut Block, persistent: bool) {
    let now = b.footprint(persistent);
    let delta = now as i64 - b.charged as i64;
    if delta != 0 {
        usage.add(delta);
        *charged = charged.wrapping_add_signed(delta);
        b.charged = now;
    }
}

/// Which block (live or retired) has a slot with a record for `seq`, whether or not the
/// message is still live.
enum Holder {
    Live(usize),
    Retired(usize),
}

fn holder(blocks: &[Block], retired: &[Block], seq: u64) -> Option<Holder> {
    let i = blocks
        .partition_point(|b| b.first_seq <= seq)
        .checked_sub(1);
    match i.filter(|&i| blocks[i].offset_of(seq).is_some()) {
        Some(i) => Some(Holder::Live(i)),
        None => retired
            .iter()
            .rposition(|b| b.offset_of(seq).is_some())
            .map(Holder::Retired),
    }
}

/// The message id and timestamp of the record of `seq` in a block the stream still holds
/// (live or retired), whether the message is live or removed.
fn id_record<'a>(blocks: &'a [Block], retired: &'a [Block], seq: u64) -> Option<Found<'a>> {
    let b = match holder(blocks, retired, seq)? {
        Holder::Live(i) => &blocks[i],
        Holder::Retired(i) => &retired[i],
    };
    // The header is checked, the body checksum not: a damaged id can only fail to match
    // (an id damaged into exactly the one looked for is beyond any real odds).
    let r = record::decode_checked(b.bytes().get(b.offset_of(seq)?..)?, false).ok()?;
    (r.seq == seq && r.kind == Kind::Msg).then_some(Found {
        ts: r.ts,
        msg_id: r.msg_id,
    })
}

/// The timestamp of the last record `b` has a slot for.
fn last_ts(b: &Block) -> Option<i64> {
    let seq = (b.first_seq..b.end_seq())
        .rev()
        .find(|&s| b.offset_of(s).is_some())?;
    let off = b.offset_of(seq)?;
    record::decode_head(b.bytes().get(off..)?)
        .ok()
        .map(|h| h.ts)
}

/// Hands `d` the ids in `b`'s records that the window still needs and that `going` says
/// are about to be freed.
pub(crate) fn keep_ids(d: &mut Dedup, b: &Block, going: impl Fn(u64) -> bool) {
    if !d.wants(b.end_seq().saturating_sub(1)) {
        return;
    }
    for seq in b.first_seq..b.end_seq() {
        let Some(off) = b.offset_of(seq).filter(|_| d.wants(seq) && going(seq)) else {
            continue;
        };
        if let Ok(r) = b.record_at(off) {
            if r.seq == seq && r.kind == Kind::Msg {
                d.keep(seq, r.ts, r.msg_id);
            }
        }
    }
}

impl LogState {
    pub fn new(stream_id: u64, dir: PathBuf, block_size: usize, persistent: bool) -> Self {
        LogState {
            stream_id,
            dir,
            block_size,
            persistent,
            blocks: Vec::new(),
            retired: Vec::new(),
            next_block_id: 1,
            last_seq: 0,
            last_ts: 0,
            floor: 1,
            deletes: DeleteSet::new(),
            live_bytes: 0,
            lsn: 0,
            index: None,
            limits: crate::config::Limits::default(),
            limited: false,
            subject_hint: None,
            timers: crate::ttl::Timers::default(),
            age_from: 0,
            removals: Default::default(),
            dedup: None,
            usage: Usage::detached(),
            charged: 0,
        }
    }

    /// Applies what the stream's config asks of a state built by `empty` or recovery: its
    /// limits and its duplicate window.
    pub fn configure(&mut self, cfg: &crate::config::StreamConfig, now: i64) {
        self.set_limits(cfg.limits);
        if let Some(d) = &cfg.dedup {
            self.start_dedup(d, now);
        }
    }

    /// Moves this state's bytes onto `usage` (a store's counters), counting every block.
    pub fn attach(&mut self, usage: Arc<Usage>) {
        self.detach();
        self.usage = usage;
        let persistent = self.persistent;
        for b in self.blocks.iter_mut() {
            b.charged = 0;
            recharge(&self.usage, &mut self.charged, b, persistent);
        }
        for b in self.retired.iter_mut() {
            b.charged = 0;
            recharge(&self.usage, &mut self.charged, b, persistent);
            self.usage.retiring(b.charged as i64);
        }
    }

    /// Takes this state's bytes off its usage counters (the stream is deleted or replaced).
    pub fn detach(&mut self) {
        let retiring: u64 = self.retired.iter().map(|b| b.charged).sum();
        self.usage.retiring(-(retiring as i64));
        self.usage.add(-(self.charged as i64));
        self.charged = 0;
        for b in self.blocks.iter_mut().chain(self.retired.iter_mut()) {
            b.charged = 0;
        }
    }

    /// Recounts the block with `id` (after its file changed).
    pub fn recharge_block(&mut self, id: u64) {
        let persistent = self.persistent;
        let (usage, charged) = (self.usage.clone(), &mut self.charged);
        let retired = self.retired.iter().any(|b| b.id == id);
        let Some(b) = self
            .blocks
            .iter_mut()
            .chain(self.retired.iter_mut())
            .find(|b| b.id == id)
        else {
            return;
        };
        let before = b.charged;
        recharge(&usage, charged, b, persistent);
        if retired {
            usage.retiring(b.charged as i64 - before as i64);
        }
    }

    /// Recounts the active block after an encode: files grow a page at a time, so most
    /// records change nothing.
    fn recharge_active(&mut self) {
        let persistent = self.persistent;
        if let Some(b) = self.blocks.last_mut() {
            let len = match &b.data {
                Data::Active(w) => w.buf().len() as u64,
                _ => return,
            };
            if !persistent || len > b.charged {
                recharge(&self.usage, &mut self.charged, b, persistent);
            }
        }
    }

    /// Takes retired blocks whose files are being deleted off the counters.
    pub fn uncharge_dropped(&mut self, gone: &[Block]) {
        for b in gone {
            self.usage.retiring(-(b.charged as i64));
            self.usage.add(-(b.charged as i64));
            self.charged -= b.charged;
        }
    }

    /// The sequence and timestamp of the message that `id` was appended as within the
    /// duplicate window at `now`.
    pub fn find_duplicate(&mut self, id: &[u8], now: i64) -> Option<(u64, i64)> {
        let d = self.dedup.as_mut()?;
        let (blocks, retired) = (&self.blocks, &self.retired);
        d.find(id, now, |s| id_record(blocks, retired, s))
    }

    /// Starts deduplicating with `cfg`, learning the ids in the window from the records the
    /// stream holds, in live or retired blocks (back to the newest one wholly out of the
    /// window). Removed messages' ids count too, unless purges forget ids: then only live
    /// messages' do (the log does not say which removals were purges).
    pub fn start_dedup(&mut self, cfg: &crate::config::Dedup, now: i64) {
        let mut d = Dedup::new(cfg);
        let oldest = now.saturating_sub(i64::try_from(cfg.window.as_nanos()).unwrap_or(i64::MAX));
        let mut all: Vec<&Block> = self.blocks.iter().chain(self.retired.iter()).collect();
        all.sort_by_key(|b| b.first_seq);
        let from = all
            .iter()
            .rposition(|b| last_ts(b).is_some_and(|ts| ts < oldest))
            .unwrap_or(0);
        for b in &all[from..] {
            for seq in b.first_seq..b.end_seq() {
                if cfg.forget_on_purge && self.find(seq).is_none() {
                    continue;
                }
                let Some(r) = b.offset_of(seq).and_then(|o| b.record_at(o).ok()) else {
                    continue;
                };
                if r.seq == seq && r.kind == Kind::Msg && !r.msg_id.is_empty() && r.ts >= oldest {
                    d.insert(r.msg_id, seq, r.ts);
                }
            }
        }
        d.expire(now);
        self.dedup = Some(d);
    }

    pub fn set_limits(&mut self, l: crate::config::Limits) {
        self.limits = l;
        self.limited = l != crate::config::Limits::default();
    }

    /// A new, empty stream's state (indexed from the start).
    pub fn empty(stream_id: u64, dir: PathBuf, block_size: usize, persistent: bool) -> Self {
        let mut st = Self::new(stream_id, dir, block_size, persistent);
        st.index = Some(SubjectIndex::default());
        st
    }

    /// True when `subject` has live messages (so it was validated when they were appended).
    /// Remembers its id for the `apply_msg` that usually follows, saving a second lookup.
    pub fn knows_subject(&mut self, subject: &str) -> bool {
        self.subject_hint = self
            .index
            .as_ref()
            .and_then(|ix| ix.lookup(subject.as_bytes()));
        self.subject_hint.is_some()
    }

    /// The subject of the record at `off` of block `bi` (header check only: the body is not
    /// needed to name the subject).
    pub fn subject_at(&self, bi: usize, off: usize) -> Option<&[u8]> {
        record::subject_at(self.blocks.get(bi)?.bytes(), off)
    }

    fn bump_removals(&self) {
        self.removals
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Takes live message `seq` (at `off` of block `bi`) out of the subject index and the
    /// timers.
    fn forget(&mut self, bi: usize, off: usize, seq: u64) {
        self.bump_removals();
        self.unindex(bi, off, seq);
        self.untime(bi, off, seq);
    }

    /// Takes live message `seq` out of the timers, finding its timer from its record.
    fn untime(&mut self, bi: usize, off: usize, seq: u64) {
        if self.timers.is_empty() {
            return;
        }
        let Some(b) = self.blocks.get(bi) else { return };
        // Not found is normal: expiry takes due messages out before it removes them. A timer
        // left behind by damage to the TTL bytes fires later as a removal of nothing.
        match record::ttl_at(b.bytes(), off) {
            Some((ts, raw)) => {
                self.timers.cancel(seq, ts, raw);
            }
            None if record::decode_head(b.bytes().get(off..).unwrap_or(&[])).is_err() => {
                // The header is damaged: the record no longer says whether it was timed.
                self.timers.cancel_any(seq);
            }
            None => {}
        }
    }

    /// Takes live message `seq` (at `off` of block `bi`) out of the subject index.
    fn unindex(&mut self, bi: usize, off: usize, seq: u64) {
        // Disjoint fields: the subject is read from the blocks while the index changes.
        let Some(ix) = self.index.as_mut() else {
            return;
        };
        let subject = self
            .blocks
            .get(bi)
            .and_then(|b| record::subject_at(b.bytes(), off));
        let found = subject.is_some_and(|s| ix.remove(s, seq));
        if !found {
            // The record's header was damaged after it was indexed: find it by sequence.
            ix.remove_seq(seq);
        }
    }

    /// Builds the subject index from the live messages (after recovery). A message whose
    /// record header is damaged cannot be indexed (nor read): it is removed and returned.
    pub fn build_index(&mut self) -> Vec<u64> {
        self.index = None;
        let (ix, unreadable) = self.rebuild_index();
        for &seq in &unreadable {
            self.apply_remove(seq);
        }
        self.index = Some(ix);
        unreadable
    }

    fn rebuild_index(&self) -> (SubjectIndex, Vec<u64>) {
        let mut unreadable = Vec::new();
        let mut ix = SubjectIndex::default();
        let mut by_subject = BySubject::default();
        for (bi, b) in self.blocks.iter().enumerate() {
            let from = b.first_seq.max(self.floor);
            let to = b.end_seq().min(self.last_seq + 1);
            if from >= to {
                continue;
            }
            // A sealed block's trailer names every slot's subject: no record is read.
            let trailer = match &b.data {
                Data::Sealed(map) => crate::block::decode_trailer(map)
                    .filter(|t| t.block_id == b.id && t.first_seq == b.first_seq)
                    .and_then(|t| t.subjects(map)),
                _ => None,
            };
            let gaps = self.deletes.gaps(from, to - 1);
            let live = || gaps.iter().flat_map(|&(a, z)| a..=z);
            // Grouped by subject first (a counting sort over the block's own subject ids),
            // so each subject's list is extended in one cache-friendly run.
            // Only valid subjects enter the index (appends rely on it): a name that is not
            // one (damage) sends the block down the record-by-record path below.
            let grouped = trailer.filter(|t| t.names().iter().all(|n| valid_subject(n)));
            let grouped = grouped.filter(|t| {
                by_subject.clear(t.names().len());
                live().all(|seq| match t.id((seq - b.first_seq) as usize) {
                    Some(l) => {
                        by_subject.add(l, seq);
                        true
                    }
                    // A live slot the trailer cannot name: read this block's records.
                    None => false,
                })
            });
            let Some(t) = grouped else {
                for seq in live() {
                    let Some(off) = b.offset_of(seq) else {
                        continue;
                    };
                    match self.subject_at(bi, off).filter(|s| valid_subject(s)) {
                        Some(subject) => {
                            ix.insert(subject, seq);
                        }
                        None => unreadable.push(seq),
                    }
                }
                continue;
            };
            by_subject.sort();
            for (l, name) in t.names().iter().enumerate() {
                if let Some((&first, rest)) = by_subject.run(l).split_first() {
                    let id = ix.insert(name, first);
                    ix.extend(id, rest);
                }
            }
        }
        (ix, unreadable)
    }

    /// A block by id, live or retired.
    pub fn block(&self, id: u64) -> Option<&Block> {
        self.blocks
            .iter()
            .chain(self.retired.iter())
            .find(|b| b.id == id)
    }

    /// A block by id, live or retired, to change.
    pub fn block_mut(&mut self, id: u64) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .chain(self.retired.iter_mut())
            .find(|b| b.id == id)
    }

    /// Live messages. The delete set only ever holds sequences in `floor..=last_seq`
    /// (invariant `deletes-inside-range`), so this is O(1).
    /// The first `n` live sequences of `subject` (all of them with `usize::MAX`).
    pub fn subject_first_n(&self, subject: &[u8], n: usize) -> Vec<u64> {
        self.index
            .as_ref()
            .and_then(|ix| ix.seqs(ix.lookup(subject)?))
            .map(|l| l.first_n(n))
            .unwrap_or_default()
    }

    /// Every live sequence of `subject`.
    pub fn subject_seqs(&self, subject: &[u8]) -> Vec<u64> {
        self.subject_first_n(subject, usize::MAX)
    }

    /// Bytes of the records of the live messages among `seqs`.
    pub fn bytes_of(&self, seqs: &[u64]) -> u64 {
        seqs.iter()
            .filter_map(|&q| self.find(q))
            .map(|(bi, off)| self.blocks[bi].record_len(off))
            .sum()
    }

    pub fn messages(&self) -> u64 {
        debug_assert!(self
            .deletes
            .ranges()
            .all(|(s, e)| s >= self.floor && e <= self.last_seq));
        (self.last_seq + 1)
            .saturating_sub(self.floor)
            .saturating_sub(self.deletes.len())
    }

    fn block_index(&self, seq: u64) -> Option<usize> {
        let i = self.blocks.partition_point(|b| b.first_seq <= seq);
        i.checked_sub(1)
    }

    /// The block (live or retired) whose slots cover `seq`, whether or not the message is
    /// still live.
    pub fn locate_mut(&mut self, seq: u64) -> Option<&mut Block> {
        match holder(&self.blocks, &self.retired, seq)? {
            Holder::Live(i) => self.blocks.get_mut(i),
            Holder::Retired(i) => self.retired.get_mut(i),
        }
    }

    /// The block and offset of a live message.
    pub fn find(&self, seq: u64) -> Option<(usize, usize)> {
        if seq < self.floor || seq > self.last_seq || self.deletes.contains(seq) {
            return None;
        }
        let bi = self.block_index(seq)?;
        let off = self.blocks[bi].offset_of(seq)?;
        Some((bi, off))
    }

    /// True when a message with `seq` and an encoded length `len` can go into the last block.
    fn fits(&self, seq: Option<u64>, len: usize) -> bool {
        let Some(b) = self.blocks.last() else {
            return false;
        };
        let Data::Active(w) = &b.data else {
            return false;
        };
        if w.spare() < len {
            return false;
        }
        seq.is_none_or(|s| b.takes(s))
    }

    /// Makes room for `len` bytes (and for `seq`'s slot) in the active block, rolling to a new
    /// block when needed.
    pub fn ensure_room(
        &mut self,
        vfs: &dyn Vfs,
        seq: Option<u64>,
        len: usize,
        now: i64,
    ) -> std::io::Result<()> {
        if self.fits(seq, len) {
            return Ok(());
        }
        self.roll(vfs, len, now)
    }

    /// Seals the active block (logically; its trailer is written by the next flush) and starts
    /// a new one.
    pub fn roll(&mut self, vfs: &dyn Vfs, need: usize, now: i64) -> std::io::Result<()> {
        let id = self.next_block_id;
        let file = if self.persistent {
            Some(vfs.open(&Block::path(&self.dir, id), OpenMode::CreateNew)?)
        } else {
            None
        };
        self.next_block_id += 1;
        if let Some(b) = self.blocks.last_mut() {
            if let Data::Active(w) = &b.data {
                b.data = Data::Sealing(w.buf().clone(), None);
            }
        }
        let cap = self.block_size.max(need + HEADER_LEN);
        let mut w = Writer::new(cap);
        let first_seq = self.last_seq + 1;
        w.append(
            &BlockHeader {
                stream_id: self.stream_id,
                block_id: id,
                first_seq,
                created_ns: now,
            }
            .encode(),
        );
        self.lsn += HEADER_LEN as u64;
        self.push_block(Block {
            id,
            first_seq,
            offsets: Offsets::default(),
            live: 0,
            live_bytes: 0,
            data: Data::Active(w),
            file,
            written: 0,
            file_len: 0,
            synced: 0,
            dir_synced: false,
            charged: 0,
            compacted_live: None,
        });
        self.recharge_active();
        Ok(())
    }

    /// Appends `b` as the newest block, retiring the previous one if nothing in it is live.
    pub fn push_block(&mut self, b: Block) {
        self.blocks.push(b);
        let n = self.blocks.len();
        if n >= 2 {
            self.retire_if_empty(n - 2);
        }
    }

    fn retire_if_empty(&mut self, i: usize) {
        if i + 1 < self.blocks.len() && self.blocks[i].live == 0 {
            let b = self.blocks.remove(i);
            self.retire(b);
        }
    }

    /// Encodes a record into the active block (which `ensure_room` prepared) and returns its
    /// offset and length.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &mut self,
        kind: Kind,
        flags: u8,
        seq: u64,
        ts: i64,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
        x: record::Extras<'_>,
    ) -> (usize, usize) {
        let len = record::msg_len(subject.len(), headers.len(), payload.len(), &x);
        let Some(Block {
            data: Data::Active(w),
            ..
        }) = self.blocks.last_mut()
        else {
            debug_assert!(false, "encode without an active block");
            return (0, 0);
        };
        let off = w.buf().len();
        w.append_with(len, |buf| {
            record::encode_into(buf, kind, flags, seq, ts, subject, headers, payload, x)
        });
        self.lsn += len as u64;
        self.recharge_active();
        (off, len)
    }

    /// True when a message record with `seq` can take the next slot of the last block, as the
    /// live path would have placed it (anything else is damage).
    pub fn placeable(&self, seq: u64) -> bool {
        seq > self.last_seq && seq <= MAX_SEQ && self.blocks.last().is_some_and(|b| b.takes(seq))
    }

    /// A damaged message record whose sequence is known: it keeps its slot (so slot numbering
    /// matches the block's trailer) but is counted as removed. Returns false if it could not
    /// be placed.
    pub fn apply_lost(&mut self, seq: u64, off: usize) -> bool {
        if !self.placeable(seq) {
            if seq > self.last_seq && seq <= MAX_SEQ {
                self.apply_skip(seq, seq);
            }
            return false;
        }
        if seq > self.last_seq + 1 {
            self.deletes.insert_range(self.last_seq + 1, seq - 1);
        }
        if let Some(b) = self.blocks.last_mut() {
            Self::place(b, seq, off);
        }
        self.last_seq = seq;
        self.deletes.insert(seq);
        self.normalize_floor();
        true
    }

    fn place(b: &mut Block, seq: u64, off: usize) {
        if b.slots() == 0 {
            b.first_seq = seq;
        }
        while b.end_seq() < seq {
            b.offsets.push(NO_RECORD);
        }
        b.offsets.push(off as u32);
    }

    /// Places a slot for a record the checkpoint already reflects (no counters change): the
    /// same placement rule as live appends, re-using slots hidden by an earlier truncate.
    pub fn place_indexed(&mut self, seq: u64, off: usize) -> bool {
        let Some(b) = self.blocks.last_mut() else {
            return false;
        };
        if b.slots() > 0 && seq < b.end_seq() && seq >= b.first_seq {
            b.offsets.clip((seq - b.first_seq) as usize);
        }
        let ok = seq <= MAX_SEQ && b.takes(seq);
        if ok {
            Self::place(b, seq, off);
        }
        ok
    }

    /// Removes `a..=b` wholesale (a block file that went missing), with the bytes it held.
    pub fn discard_range(&mut self, a: u64, b: u64, bytes: u64) {
        self.bump_removals();
        self.timers.remove_range(a, b);
        self.deletes.insert_range(a, b);
        self.live_bytes = self.live_bytes.saturating_sub(bytes);
        self.normalize_floor();
    }

    /// Takes a message the checkpoint counted as live out of the counters (its record turned
    /// out to be damaged). Returns false if it was not live.
    pub fn discount(&mut self, seq: u64, len: u64) -> bool {
        if seq < self.floor || seq > self.last_seq || self.deletes.contains(seq) {
            return false;
        }
        self.deletes.insert(seq);
        self.timers.cancel_any(seq);
        if let Some(b) = self.blocks.last_mut() {
            b.live = b.live.saturating_sub(1);
            b.live_bytes = b.live_bytes.saturating_sub(len);
        }
        self.live_bytes = self.live_bytes.saturating_sub(len);
        self.normalize_floor();
        true
    }

    /// A message record at `off` of the last block.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_msg(
        &mut self,
        seq: u64,
        ts: i64,
        off: usize,
        len: usize,
        subject: &[u8],
        ttl: Option<u64>,
    ) {
        debug_assert!(
            seq > self.last_seq,
            "apply_msg: {seq} not after {}",
            self.last_seq
        );
        if seq > self.last_seq + 1 {
            self.deletes.insert_range(self.last_seq + 1, seq - 1);
        }
        let Some(b) = self.blocks.last_mut() else {
            return;
        };
        Self::place(b, seq, off);
        b.live += 1;
        b.live_bytes += len as u64;
        self.live_bytes += len as u64;
        self.last_seq = seq;
        self.last_ts = self.last_ts.max(ts);
        self.normalize_floor();
        if let Some(raw) = ttl {
            self.timers.insert(seq, ts, raw);
        }
        let hint = self.subject_hint.take();
        if let Some(ix) = &mut self.index {
            // The hint is checked against the name, so a stale one costs only the check.
            match hint.filter(|&id| ix.name(id) == subject) {
                Some(id) => ix.push(id, seq),
                None => {
                    ix.insert(subject, seq);
                }
            }
        }
    }

    /// Sequences `first..=last` were skipped.
    pub fn apply_skip(&mut self, first: u64, last: u64) {
        if last <= self.last_seq {
            return;
        }
        let first = first.max(self.last_seq + 1);
        self.deletes.insert_range(first, last);
        if self.last_seq + 1 < first {
            self.deletes.insert_range(self.last_seq + 1, first - 1);
        }
        self.last_seq = last;
        self.normalize_floor();
    }

    /// Removes one live message; `None` if it was not live.
    pub fn apply_remove(&mut self, seq: u64) -> Option<u64> {
        let (bi, off) = self.find(seq)?;
        self.forget(bi, off, seq);
        self.deletes.insert(seq);
        let freed = self.free(bi, off);
        self.retire_if_empty(bi);
        self.normalize_floor();
        Some(freed)
    }

    /// Removes the live messages among `seqs` (sorted), as `apply_remove` on each would, but
    /// with each subject's sequence list rewritten once rather than once per message.
    pub fn apply_remove_many(&mut self, seqs: &[u64]) {
        if seqs.len() < 8 || self.index.is_none() {
            for &q in seqs {
                self.apply_remove(q);
            }
            return;
        }
        let live: Vec<(u64, usize, usize)> = seqs
            .iter()
            .filter_map(|&q| self.find(q).map(|(bi, off)| (q, bi, off)))
            .collect();
        let mut by_subject: Vec<(u32, u64)> = Vec::with_capacity(live.len());
        let mut unnamed = Vec::new();
        if let Some(ix) = &self.index {
            for &(q, bi, off) in &live {
                let id =
                    record::subject_at(self.blocks[bi].bytes(), off).and_then(|s| ix.lookup(s));
                match id {
                    Some(id) => by_subject.push((id, q)),
                    None => unnamed.push(q),
                }
            }
        }
        by_subject.sort_unstable();
        if let Some(ix) = &mut self.index {
            let mut rest = &by_subject[..];
            while let Some(&(id, _)) = rest.first() {
                let n = rest.partition_point(|&(i, _)| i == id);
                let run: Vec<u64> = rest[..n].iter().map(|&(_, q)| q).collect();
                if ix.remove_sorted(id, &run) < run.len() as u64 {
                    // Damage renamed a record to another live subject: find the rest by
                    // sequence, as `unindex` does.
                    unnamed.extend(run);
                }
                rest = &rest[n..];
            }
            for q in unnamed {
                ix.remove_seq(q);
            }
        }
        self.bump_removals();
        for (q, _, _) in live {
            // Blocks may retire as they empty, so each message is found again.
            let Some((bi, off)) = self.find(q) else {
                continue;
            };
            self.untime(bi, off, q);
            self.deletes.insert(q);
            self.free(bi, off);
            self.retire_if_empty(bi);
        }
        self.normalize_floor();
    }

    /// Takes the message at `off` of block `bi` out of the counters; returns its bytes.
    fn free(&mut self, bi: usize, off: usize) -> u64 {
        let b = &mut self.blocks[bi];
        let len = b.record_len(off);
        b.live = b.live.saturating_sub(1);
        b.live_bytes = b.live_bytes.saturating_sub(len);
        self.live_bytes = self.live_bytes.saturating_sub(len);
        len
    }

    /// Removes every message below `floor`. Returns how many were removed.
    pub fn apply_purge(&mut self, floor: u64) -> u64 {
        if floor <= self.floor {
            return 0;
        }
        let before = self.messages();
        self.forget_range(self.floor, floor.min(self.last_seq + 1), true);
        if floor > self.last_seq + 1 {
            self.last_seq = floor - 1;
        }
        // Whole blocks below the new floor go at once; the straddling block is walked.
        let mut i = 0;
        while i < self.blocks.len() {
            let b = &self.blocks[i];
            if b.first_seq >= floor {
                break;
            }
            if b.end_seq() <= floor {
                self.live_bytes = self.live_bytes.saturating_sub(b.live_bytes);
                let b = &mut self.blocks[i];
                b.live = 0;
                b.live_bytes = 0;
            } else {
                for seq in b.first_seq.max(self.floor)..floor {
                    if let Some((bi, off)) = self.find(seq) {
                        self.free(bi, off);
                    }
                }
            }
            i += 1;
        }
        self.floor = floor;
        self.deletes.remove_below(floor);
        self.retire_empty_blocks();
        self.normalize_floor();
        before - self.messages()
    }

    /// `apply_purge` by `purge` or `compact`, which may also forget message ids.
    pub fn apply_purge_ids(&mut self, floor: u64) -> u64 {
        let n = self.apply_purge(floor);
        if let Some(d) = &mut self.dedup {
            d.purged_below(floor);
        }
        n
    }

    /// Removes every message above `last`; `last` becomes the last sequence.
    pub fn apply_truncate(&mut self, last: u64) -> u64 {
        if last >= self.last_seq {
            return 0;
        }
        let before = self.messages();
        self.forget_range(last + 1, self.last_seq + 1, false);
        for bi in (0..self.blocks.len()).rev() {
            let b = &self.blocks[bi];
            if b.end_seq() <= last + 1 {
                break;
            }
            let from = b.first_seq.max(last + 1);
            for seq in from..b.end_seq() {
                if let Some((bj, off)) = self.find(seq) {
                    self.free(bj, off);
                }
            }
            let b = &mut self.blocks[bi];
            let keep = last.saturating_add(1).saturating_sub(b.first_seq);
            b.offsets.clip(keep as usize);
        }
        self.deletes.remove_above(last);
        if let Some(d) = &mut self.dedup {
            d.truncate(last);
        }
        self.age_from = self.age_from.min(last + 1);
        self.last_seq = last;
        self.floor = self.floor.min(last + 1);
        self.retire_empty_blocks();
        self.normalize_floor();
        before - self.messages()
    }

    /// Takes the live messages in `a..b` out of the subject index and the timers: one by one
    /// when there are fewer of them than subjects (timers), else by trimming every subject's
    /// list (every bucket) (`below`: the range is a prefix of the stream, else a suffix).
    fn forget_range(&mut self, a: u64, b: u64, below: bool) {
        if a >= b {
            return;
        }
        self.bump_removals();
        let walk_index = match &mut self.index {
            Some(ix) if b - a > ix.len() as u64 => {
                if below {
                    ix.remove_below(b);
                } else {
                    ix.remove_above(a - 1);
                }
                false
            }
            Some(_) => true,
            None => false,
        };
        let walk_timers = !self.timers.is_empty() && b - a <= self.timers.len();
        if !self.timers.is_empty() && !walk_timers {
            self.timers.remove_range(a, b - 1);
        }
        if !walk_index && !walk_timers {
            return;
        }
        for seq in a..b {
            if let Some((bi, off)) = self.find(seq) {
                if walk_index {
                    self.unindex(bi, off, seq);
                }
                if walk_timers {
                    self.untime(bi, off, seq);
                }
            }
        }
    }

    fn retire_empty_blocks(&mut self) {
        let mut i = 0;
        while i + 1 < self.blocks.len() {
            if self.blocks[i].live == 0 {
                let b = self.blocks.remove(i);
                self.retire(b);
            } else {
                i += 1;
            }
        }
    }

    /// A block with no live message leaves the lookup. A file stream keeps it until a
    /// checkpoint makes its tombstones redundant; a memory stream frees it at once.
    fn retire(&mut self, mut b: Block) {
        if let Some(d) = self.dedup.as_mut().filter(|_| !self.persistent) {
            keep_ids(d, &b, |_| true);
        }
        if self.persistent {
            // Counted as retiring: appends may use the space, which the next two
            // checkpoints give back.
            recharge(&self.usage, &mut self.charged, &mut b, true);
            self.usage.retiring(b.charged as i64);
            self.retired.push(b);
        } else {
            self.usage.add(-(b.charged as i64));
            self.charged -= b.charged;
        }
    }

    /// Keeps `floor` at the first sequence that is not a known gap.
    fn normalize_floor(&mut self) {
        while let Some(end) = self.deletes.take_range_at(self.floor) {
            self.floor = end + 1;
        }
    }

    /// Replays one record found in the log at `off` of the last block.
    /// Returns false for a record that no valid log can contain here (it is then ignored).
    pub fn apply_record(&mut self, r: &record::RecordRef<'_>, off: usize) -> bool {
        if r.seq > MAX_SEQ {
            return false;
        }
        match r.kind {
            Kind::Msg if r.flags & record::FLAG_ERASED != 0 => return self.apply_lost(r.seq, off),
            Kind::Msg => {
                if !self.placeable(r.seq) {
                    return false;
                }
                self.apply_msg(r.seq, r.ts, off, r.len, r.subject, r.ttl)
            }
            Kind::Skip => {
                let first = r.payload.get(..8).map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    u64::from_le_bytes(a)
                });
                // A damaged payload can claim a first sequence after `seq`; never skip past it.
                self.apply_skip(first.unwrap_or(r.seq).min(r.seq), r.seq);
            }
            Kind::Delete | Kind::Erase => {
                if r.seq > self.last_seq {
                    // The message it removes was lost (e.g. a torn tail); its sequence was
                    // still handed out and must not be reused.
                    self.apply_skip(r.seq, r.seq);
                }
                self.apply_remove(r.seq);
            }
            Kind::Purge => {
                self.apply_purge(r.seq);
            }
            Kind::Truncate => {
                self.apply_truncate(r.seq);
            }
            Kind::Remove => {
                let mut seqs = Vec::new();
                for (a, b) in crate::limits::decode_ranges(r.seq, r.payload) {
                    // Only the sequences not already deleted are visited: a damaged payload
                    // can name a range of 2^62, and recovery must not walk it.
                    let (lo, hi) = (a.max(self.floor), b.min(self.last_seq));
                    if lo <= hi {
                        for (x, y) in self.deletes.gaps(lo, hi) {
                            seqs.extend((x..=y).filter(|&q| self.find(q).is_some()));
                        }
                    }
                    if b > self.last_seq {
                        // As for a Delete: sequences handed out are never reused.
                        self.apply_skip(a.max(self.last_seq + 1), b);
                    }
                }
                // A damaged payload can repeat a sequence.
                seqs.sort_unstable();
                seqs.dedup();
                self.apply_remove_many(&seqs);
            }
        }
        true
    }

    /// Checks the counters against the blocks (tests and debug builds).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut live = 0;
        let mut bytes = 0;
        for w in self.blocks.windows(2) {
            if w[0].first_seq > w[1].first_seq {
                return Err("blocks out of order".into());
            }
        }
        for b in &self.blocks {
            let mut bl = 0;
            let mut bb = 0;
            for seq in b.first_seq..b.end_seq() {
                if self
                    .find(seq)
                    .is_some_and(|(bi, _)| self.blocks[bi].id == b.id)
                {
                    bl += 1;
                    bb += b.record_len(b.offset_of(seq).unwrap_or(0));
                }
            }
            if bl != b.live || bb != b.live_bytes {
                return Err(format!(
                    "block {} counts {}/{} but holds {bl}/{bb}",
                    b.id, b.live, b.live_bytes
                ));
            }
            live += bl;
            bytes += bb;
        }
        if live != self.messages() || bytes != self.live_bytes {
            return Err(format!(
                "stream counts {}/{} but blocks hold {live}/{bytes}",
                self.messages(),
                self.live_bytes
            ));
        }
        self.check_index()?;
        self.check_timers()
    }

    /// The timers hold exactly the live messages with a TTL, each in the bucket of its due
    /// second (`timers-equal-log`).
    fn check_timers(&self) -> Result<(), String> {
        let mut want: Vec<(u64, u64)> = Vec::new();
        let mut never = Vec::new();
        for (bi, b) in self.blocks.iter().enumerate() {
            for seq in b.first_seq..b.end_seq() {
                let Some((_, off)) = self.find(seq).filter(|&(i, _)| i == bi) else {
                    continue;
                };
                match record::ttl_at(b.bytes(), off)
                    .and_then(|(ts, raw)| Some((ts, crate::ttl::Ttl::from_raw(raw)?)))
                {
                    Some((_, crate::ttl::Ttl::Never)) => never.push(seq),
                    Some((ts, crate::ttl::Ttl::Secs(n))) => {
                        want.push((crate::ttl::due_second(ts, n), seq))
                    }
                    None => {}
                }
            }
        }
        want.sort_unstable();
        let mut have: Vec<(u64, u64)> = self
            .timers
            .buckets()
            .into_iter()
            .flat_map(|(d, v)| v.into_iter().map(move |q| (d, q)))
            .collect();
        have.sort_unstable();
        if have != want || self.timers.never() != never {
            return Err(format!(
                "timers hold {} pending / {} never, log has {} / {}",
                have.len(),
                self.timers.never().len(),
                want.len(),
                never.len()
            ));
        }
        if self.timers.pending() != want.len() as u64 {
            return Err("timer count wrong".into());
        }
        Ok(())
    }

    /// The subject index equals one rebuilt from the live messages (`index-equals-log`).
    fn check_index(&self) -> Result<(), String> {
        let Some(ix) = &self.index else {
            return Ok(());
        };
        let (rebuilt, _) = self.rebuild_index();
        let mut a: Vec<(Vec<u8>, Vec<u64>)> = ix
            .entries()
            .map(|(n, l)| (n.to_vec(), l.to_vec()))
            .collect();
        let mut b: Vec<(Vec<u8>, Vec<u64>)> = rebuilt
            .entries()
            .map(|(n, l)| (n.to_vec(), l.to_vec()))
            .collect();
        a.sort();
        b.sort();
        if a != b {
            return Err(format!(
                "subject index ({} subjects) differs from the log ({} subjects)",
                a.len(),
                b.len()
            ));
        }
        let total: u64 = a.iter().map(|(_, l)| l.len() as u64).sum();
        if total != self.messages() {
            return Err(format!(
                "index holds {total} of {} messages",
                self.messages()
            ));
        }
        Ok(())
    }
}
