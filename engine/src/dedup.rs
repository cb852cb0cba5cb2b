//! Message-id deduplication: which ids were appended within the duplicate window, and where.
//!
//! The index keeps no id. An entry is a sequence (32 bits above a base) and an 8-bit tag of the
//! id's hash, in a bucketed cuckoo table sized for the window's count when the stream opens, so
//! it never grows or rehashes (it could not: the hashes are not kept). A tag match is only a
//! candidate: the id is read back from the candidate's record (live or removed, in a block the
//! stream still holds), or from `kept` when that block was freed inside the window. So a tag
//! collision costs a record read, never a wrong answer.
//!
//! Ids leave without being looked for: an entry below `floor` (out of the window) is a free
//! slot to the next insert. The window is tracked in groups of [`GROUP`] ids, so the count bound
//! is exact to a group and the time bound is checked exactly on the candidate's timestamp.

use std::collections::{BTreeMap, VecDeque};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Slots per bucket: a bucket is one 64-byte cache line, 12 tag bytes, 4 spare, then 12
/// `u32` offsets.
const WAYS: usize = 12;
const BUCKET: usize = 64;
const OFFS: usize = 16;
/// Ids per window group: how far past `max_ids` the window may reach.
pub(crate) const GROUP: u32 = 256;
/// Fullest the table is allowed to get (cuckoo buckets of 12 insert reliably well past this).
const LOAD: f64 = 0.95;
/// Displacements an insert tries before it gives an entry up.
const MAX_KICKS: usize = 500;

/// The buckets, in anonymous memory (zeroed, committed as touched) that may use huge pages:
/// a lookup touches two random buckets of a table of tens of MiB, and with 4 KiB pages the TLB
/// misses cost as much as the cache misses.
struct Table {
    mem: Mem,
    n: usize,
}

enum Mem {
    Map(memmap2::MmapMut),
    Heap(Vec<u8>),
}

impl Table {
    fn new(n: usize) -> Table {
        let len = n * BUCKET;
        let mem = match memmap2::MmapMut::map_anon(len) {
            Ok(m) => {
                #[cfg(target_os = "linux")]
                // Only advice: without huge pages the table works the same, a little slower.
                let _ = m.advise(memmap2::Advice::HugePage);
                Mem::Map(m)
            }
            Err(_) => Mem::Heap(vec![0; len]),
        };
        Table { mem, n }
    }
    fn bytes(&self) -> &[u8] {
        match &self.mem {
            Mem::Map(m) => m,
            Mem::Heap(v) => v,
        }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.mem {
            Mem::Map(m) => m,
            Mem::Heap(v) => v,
        }
    }
    fn bucket(&self, b: usize) -> &[u8] {
        &self.bytes()[b * BUCKET..(b + 1) * BUCKET]
    }
    fn tag(&self, b: usize, i: usize) -> u8 {
        self.bucket(b)[i]
    }
    fn off(&self, b: usize, i: usize) -> u32 {
        off_in(self.bucket(b), i)
    }
    fn set(&mut self, b: usize, i: usize, tag: u8, off: u32) {
        let at = b * BUCKET;
        let bytes = self.bytes_mut();
        bytes[at + i] = tag;
        let o = at + OFFS + 4 * i;
        bytes[o..o + 4].copy_from_slice(&off.to_le_bytes());
    }
    fn clear(&mut self, b: usize, i: usize) {
        self.bytes_mut()[b * BUCKET + i] = 0;
    }
}

fn off_in(bucket: &[u8], i: usize) -> u32 {
    let o = OFFS + 4 * i;
    let mut a = [0u8; 4];
    a.copy_from_slice(&bucket[o..o + 4]);
    u32::from_le_bytes(a)
}

/// Ids appended together; the window drops whole groups.
#[derive(Clone, Copy, Debug)]
struct Group {
    first: u64,
    last_ts: i64,
    n: u32,
}

/// What the index needs to know about the record at a sequence.
pub(crate) struct Found<'a> {
    pub ts: i64,
    pub msg_id: &'a [u8],
}

pub(crate) struct Dedup {
    window_ns: i64,
    max_ids: u64,
    forget_on_purge: bool,
    buckets: Table,
    seed: u64,
    /// Sequence of offset 0 in the buckets.
    base: u64,
    /// Ids of lower sequences are forgotten.
    floor: u64,
    /// The last sequence inserted.
    last: u64,
    groups: VecDeque<Group>,
    count: u64,
    /// Ids in the window whose blocks were freed.
    kept: Kept,
    /// Victim choice for displacements (any rotation works; this one is deterministic).
    kick: usize,
    /// Entries given up because no slot could be made (a full table; not expected).
    lost: u64,
}

/// The index's size and contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DedupStats {
    /// Ids in the window.
    pub ids: u64,
    /// Bytes of the index (its table and window groups), allocated when the stream opened.
    pub index_bytes: u64,
    /// Ids kept in full because their message's block was freed inside the window.
    pub kept_ids: u64,
    /// Bytes those kept ids take.
    pub kept_bytes: u64,
}

fn fastrange(h: u32, n: usize) -> usize {
    ((h as u64 * n as u64) >> 32) as usize
}

impl Dedup {
    pub fn new(cfg: &crate::config::Dedup) -> Self {
        let slots = ((cfg.max_ids + u64::from(GROUP)) as f64 / LOAD).ceil() as usize;
        let n = slots.div_ceil(WAYS).max(1);
        Dedup {
            window_ns: i64::try_from(cfg.window.as_nanos()).unwrap_or(i64::MAX),
            max_ids: cfg.max_ids,
            forget_on_purge: cfg.forget_on_purge,
            buckets: Table::new(n),
            seed: std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                0u8,
            ),
            base: 0,
            floor: 0,
            last: 0,
            groups: VecDeque::new(),
            count: 0,
            kept: Kept::default(),
            kick: 0,
            lost: 0,
        }
    }

    fn hash(&self, id: &[u8]) -> u64 {
        xxh3_64_with_seed(id, self.seed)
    }

    /// The tag (never 0, which marks an empty slot) and home bucket of a hash.
    fn place(&self, h: u64) -> (u8, usize) {
        let tag = (h as u8).max(1);
        (tag, fastrange((h >> 32) as u32, self.buckets.n))
    }

    /// The other bucket of an entry with `tag` in bucket `b` (an involution: alt(alt(b)) = b).
    fn alt(&self, b: usize, tag: u8) -> usize {
        let n = self.buckets.n;
        let c = fastrange(
            (u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32,
            n,
        );
        (c + n - b) % n
    }

    fn live(&self, tag: u8, off: u32) -> bool {
        tag != 0 && self.base + u64::from(off) >= self.floor
    }

    /// Drops what left the window by count or by time at `now`.
    pub fn expire(&mut self, now: i64) {
        let oldest = now.saturating_sub(self.window_ns);
        while let Some(g) = self.groups.front().copied() {
            let by_count = self.count - u64::from(g.n) >= self.max_ids;
            if !by_count && g.last_ts >= oldest {
                break;
            }
            self.groups.pop_front();
            self.count -= u64::from(g.n);
            let next = self.groups.front().map_or(self.last + 1, |n| n.first);
            self.floor = self.floor.max(next);
        }
        self.prune_kept();
    }

    fn prune_kept(&mut self) {
        self.kept.retain(self.floor..=u64::MAX);
    }

    /// The sequence and timestamp of `id`'s message if it was appended within the window at
    /// `now`; `record` reads the message id and timestamp of a sequence's record if the
    /// stream still holds it.
    pub fn find<'a>(
        &mut self,
        id: &[u8],
        now: i64,
        record: impl Fn(u64) -> Option<Found<'a>>,
    ) -> Option<(u64, i64)> {
        self.expire(now);
        let oldest = now.saturating_sub(self.window_ns);
        let (tag, b1) = self.place(self.hash(id));
        let b2 = self.alt(b1, tag);
        // Both buckets' tags are read before any candidate's record, so their cache misses
        // overlap instead of following one another.
        let (m1, m2) = (self.matches(b1, tag), self.matches(b2, tag));
        let m2 = if b1 == b2 { 0 } else { m2 };
        for (b, mut mask) in [(b1, m1), (b2, m2)] {
            while mask != 0 {
                let i = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let off = self.buckets.off(b, i);
                if !self.live(tag, off) {
                    continue;
                }
                let seq = self.base + u64::from(off);
                let found = match record(seq) {
                    Some(f) => Some((f.ts, f.msg_id == id)),
                    None => self.kept.ids.get(&seq).map(|(ts, k)| (*ts, &k[..] == id)),
                };
                if let Some((ts, true)) = found {
                    if ts >= oldest {
                        return Some((seq, ts));
                    }
                }
            }
        }
        None
    }

    /// A bit per slot of bucket `b` holding `tag`.
    fn matches(&self, b: usize, tag: u8) -> u32 {
        let bucket = self.buckets.bucket(b);
        (0..WAYS).fold(0, |m, i| m | (u32::from(bucket[i] == tag) << i))
    }

    /// Remembers that `id` was appended at `seq` (after every earlier insert) with `ts`.
    pub fn insert(&mut self, id: &[u8], seq: u64, ts: i64) {
        debug_assert!(
            seq > self.last || self.count == 0,
            "dedup insert out of order"
        );
        if seq < self.floor {
            return;
        }
        self.last = seq;
        match self.groups.back_mut() {
            Some(g) if g.n < GROUP => {
                g.n += 1;
                g.last_ts = g.last_ts.max(ts);
            }
            _ => self.groups.push_back(Group {
                first: seq,
                last_ts: ts,
                n: 1,
            }),
        }
        self.count += 1;
        self.expire(ts);
        self.rebase(seq);
        let (tag, b) = self.place(self.hash(id));
        self.put(tag, (seq - self.base) as u32, b);
    }

    /// Keeps every live offset within 32 bits of `base`, moving the base up to the floor
    /// (and the floor up, forgetting the oldest ids, if the window spans 2^31 sequences).
    fn rebase(&mut self, seq: u64) {
        if seq - self.base < u64::from(u32::MAX) {
            return;
        }
        self.floor = self.floor.max(seq.saturating_sub(1 << 31));
        let new_base = self.floor;
        self.rewrite(new_base, |s| s >= new_base);
        self.forget_below(new_base);
    }

    /// One pass over the table: clears the entries whose sequence `keep` refuses and moves
    /// the others' offsets to `new_base` (which must not be above any kept sequence).
    fn rewrite(&mut self, new_base: u64, keep: impl Fn(u64) -> bool) {
        for b in 0..self.buckets.n {
            for i in 0..WAYS {
                let tag = self.buckets.tag(b, i);
                let s = self.base + u64::from(self.buckets.off(b, i));
                if tag == 0 {
                    continue;
                }
                if keep(s) {
                    debug_assert!(s >= new_base && s - new_base < 1 << 32);
                    self.buckets.set(b, i, tag, (s - new_base) as u32);
                } else {
                    self.buckets.clear(b, i);
                }
            }
        }
        self.base = new_base;
    }

    /// Puts an entry into bucket `b` or its other bucket, displacing others as cuckoo hashing
    /// does.
    fn put(&mut self, mut tag: u8, mut off: u32, mut b: usize) {
        for _ in 0..MAX_KICKS {
            for bb in [b, self.alt(b, tag)] {
                if let Some(i) = self.free_slot(bb) {
                    self.buckets.set(bb, i, tag, off);
                    return;
                }
            }
            // Both full of live entries: swap with one and move it to its other bucket.
            self.kick = (self.kick + 1) % WAYS;
            let k = self.kick;
            let victim = (self.buckets.tag(b, k), self.buckets.off(b, k));
            self.buckets.set(b, k, tag, off);
            (tag, off) = victim;
            b = self.alt(b, tag);
        }
        self.lost += 1;
    }

    fn free_slot(&self, b: usize) -> Option<usize> {
        let bucket = self.buckets.bucket(b);
        (0..WAYS).find(|&i| !self.live(bucket[i], off_in(bucket, i)))
    }

    /// A purge or compact removed every message below `seq`.
    pub fn purged_below(&mut self, seq: u64) {
        if self.forget_on_purge {
            self.forget_below(seq);
        }
    }

    /// A filtered purge removed `seqs` (sorted).
    pub fn purged(&mut self, seqs: &[u64]) {
        if self.forget_on_purge {
            self.forget(seqs);
        }
    }

    /// Forgets every id below `seq`.
    fn forget_below(&mut self, seq: u64) {
        self.floor = self.floor.max(seq);
        while self.groups.len() > 1 && self.groups[1].first <= seq {
            if let Some(g) = self.groups.pop_front() {
                self.count -= u64::from(g.n);
            }
        }
        if self.floor > self.last {
            self.groups.clear();
            self.count = 0;
        }
        self.prune_kept();
    }

    /// Forgets the ids of `seqs` (sorted).
    fn forget(&mut self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        self.rewrite(self.base, |s| seqs.binary_search(&s).is_err());
        for &s in seqs {
            self.kept.remove(s);
        }
    }

    /// Message `seq` was erased: its id goes with its bytes.
    pub fn erased(&mut self, seq: u64) {
        self.kept.remove(seq);
    }

    /// Whether ids at `seq` are still remembered (so a freed record's id must be kept).
    pub fn wants(&self, seq: u64) -> bool {
        seq >= self.floor && self.count > 0
    }

    /// Keeps the id of a record whose block is being freed.
    pub fn keep(&mut self, seq: u64, ts: i64, id: &[u8]) {
        if self.wants(seq) && !id.is_empty() {
            self.kept.insert(seq, ts, id);
        }
    }

    /// Forgets ids above `last`: a truncate hands those sequences out again, and new ids
    /// there must be remembered even below the old floor. One pass over the table clears
    /// the entries above `last` and those already forgotten, so the floor can come down.
    pub fn truncate(&mut self, last: u64) {
        while let Some(g) = self.groups.back().copied() {
            if g.first <= last {
                break;
            }
            self.groups.pop_back();
            self.count -= u64::from(g.n);
        }
        self.last = self.last.min(last);
        let old_floor = self.floor;
        self.floor = old_floor.min(last + 1);
        self.rewrite(self.base.min(self.floor), |s| s <= last && s >= old_floor);
        self.kept.retain(0..=last);
    }

    pub fn stats(&self) -> DedupStats {
        let index = self.buckets.n * BUCKET + self.groups.capacity() * std::mem::size_of::<Group>();
        DedupStats {
            ids: self.count,
            index_bytes: index as u64,
            kept_ids: self.kept.ids.len() as u64,
            kept_bytes: self.kept.bytes as u64,
        }
    }

    /// Entries given up so far (tests).
    #[cfg(test)]
    fn lost(&self) -> u64 {
        self.lost
    }
}

/// Bytes a kept id costs beyond its own: the map node's share, sequence, timestamp and box.
const KEPT_OVERHEAD: usize = 48;

/// Ids (and timestamps) by sequence, with the bytes they take.
#[derive(Default)]
struct Kept {
    ids: BTreeMap<u64, (i64, Box<[u8]>)>,
    bytes: usize,
}

impl Kept {
    fn insert(&mut self, seq: u64, ts: i64, id: &[u8]) {
        self.bytes += id.len() + KEPT_OVERHEAD;
        if let Some((_, old)) = self.ids.insert(seq, (ts, id.into())) {
            self.bytes -= old.len() + KEPT_OVERHEAD;
        }
    }
    fn remove(&mut self, seq: u64) {
        if let Some((_, id)) = self.ids.remove(&seq) {
            self.bytes -= id.len() + KEPT_OVERHEAD;
        }
    }
    /// Drops every id outside `keep`.
    fn retain(&mut self, keep: std::ops::RangeInclusive<u64>) {
        while let Some(e) = self.ids.first_entry().filter(|e| e.key() < keep.start()) {
            self.bytes -= e.get().1.len() + KEPT_OVERHEAD;
            e.remove();
        }
        while let Some(e) = self.ids.last_entry().filter(|e| e.key() > keep.end()) {
            self.bytes -= e.get().1.len() + KEPT_OVERHEAD;
            e.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn cfg(max_ids: u64, window_s: u64) -> crate::config::Dedup {
        crate::config::Dedup::new(Duration::from_secs(window_s), max_ids)
    }

    /// A store of records by sequence standing in for the stream's blocks.
    struct Log(HashMap<u64, (i64, Vec<u8>)>);

    impl Log {
        fn get(&self, s: u64) -> Option<Found<'_>> {
            self.0.get(&s).map(|(ts, id)| Found {
                ts: *ts,
                msg_id: id,
            })
        }
    }

    #[test]
    fn finds_ids_in_the_window_and_forgets_them_after() {
        let mut d = Dedup::new(&cfg(1000, 10));
        let mut log = Log(HashMap::new());
        for s in 1..=5000u64 {
            let id = format!("id-{s}").into_bytes();
            let ts = s as i64 * 1_000_000;
            log.0.insert(s, (ts, id.clone()));
            d.insert(&id, s, ts);
        }
        let now = 5000 * 1_000_000;
        for s in 1..=5000u64 {
            let id = format!("id-{s}").into_bytes();
            let got = d.find(&id, now, |q| log.get(q));
            // The newest 1000 are remembered for sure; at most a group more.
            if s > 4000 {
                assert_eq!(got, Some((s, s as i64 * 1_000_000)), "{s}");
            } else if s <= 4000 - u64::from(GROUP) {
                assert_eq!(got, None, "{s}");
            }
        }
        assert_eq!(d.find(b"never", now, |q| log.get(q)), None);
        assert!(d.stats().ids >= 1000 && d.stats().ids <= 1000 + u64::from(GROUP));
        assert_eq!(d.lost(), 0);
        // Time: ten seconds later nothing is left.
        let later = now + 11_000_000_000;
        assert_eq!(d.find(b"id-5000", later, |q| log.get(q)), None);
        assert_eq!(d.stats().ids, 0);
    }

    #[test]
    fn a_freed_record_is_answered_from_kept_and_a_collision_is_not_a_match() {
        let mut d = Dedup::new(&cfg(100, 100));
        d.insert(b"a", 1, 10);
        d.insert(b"b", 2, 10);
        d.keep(1, 10, b"a");
        let none = |_| None;
        assert_eq!(d.find(b"a", 20, none), Some((1, 10)));
        assert_eq!(d.find(b"b", 20, none), None);
        // A record that holds another id at the sequence is not a match.
        assert_eq!(
            d.find(b"a", 20, |_| Some(Found {
                ts: 10,
                msg_id: b"zz"
            })),
            None
        );
        d.forget(&[1]);
        assert_eq!(d.find(b"a", 20, none), None);
        assert_eq!(d.stats().kept_ids, 0);
    }

    #[test]
    fn full_load_loses_nothing_and_stays_within_its_bytes() {
        let n = 200_000u64;
        let mut d = Dedup::new(&cfg(n, 1000));
        let mut log = Log(HashMap::new());
        for s in 1..=3 * n {
            let id = s.to_le_bytes().to_vec();
            log.0.insert(s, (0, id.clone()));
            d.insert(&id, s, 0);
        }
        assert_eq!(d.lost(), 0);
        for s in (2 * n + 1..=3 * n).step_by(97) {
            assert_eq!(d.find(&s.to_le_bytes(), 0, |q| log.get(q)), Some((s, 0)));
        }
        let per_id = d.stats().index_bytes as f64 / n as f64;
        assert!(per_id < 6.0, "{per_id} bytes per id");
    }

    #[test]
    fn rebase_keeps_entries_across_huge_gaps() {
        let mut d = Dedup::new(&cfg(10, 1000));
        d.insert(b"x", 5, 0);
        d.insert(b"y", 5 + (1 << 31), 0);
        d.insert(b"z", 6 + (3 << 31), 0);
        let rec = |q: u64| {
            let id: &[u8] = match q {
                5 => b"x",
                q if q == 5 + (1 << 31) => b"y",
                q if q == 6 + (3 << 31) => b"z",
                _ => return None,
            };
            Some(Found { ts: 0, msg_id: id })
        };
        assert_eq!(d.find(b"z", 0, rec), Some((6 + (3 << 31), 0)));
        // y is more than 2^31 below z: forgotten to keep offsets in 32 bits.
        assert_eq!(d.find(b"y", 0, rec), None);
        assert_eq!(d.find(b"x", 0, rec), None);
    }
}
