//! Subject queries and filtered reads, answered from the subject index: the work is
//! proportional to the matching subjects (or, for a filter matching many subjects, to a short
//! bounded scan), never to the messages in between.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::error::{ConfigError, QueryError};
use crate::record::{self, Kind};
use crate::state::LogState;
use crate::stream::{StoredMessage, Stream};
use crate::subject::{self, matches_bytes};
use crate::subject_index::SubjectIndex;

/// One subject's messages, as `subjects_state` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SubjectState {
    pub messages: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// Memory held by a stream's in-memory indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IndexMemory {
    /// Subject names, trie, lookup tables and per-subject sequence lists.
    pub subject_index: usize,
    /// Sequence -> offset tables (4 bytes per slot; sealed blocks' tables are mapped pages).
    pub offsets: usize,
    /// Delete set and block descriptors.
    pub other: usize,
    /// TTL timers: the wheel, its buckets and the "never" list.
    pub timers: usize,
    /// Messages with a TTL (pending or "never").
    pub timed_messages: u64,
}

/// With more matching subjects than this, `load_next` first scans a few messages forward
/// (cheaper than a lookup per subject when matches are dense).
const MERGE_LIMIT: usize = 16;
/// Messages `load_next` scans before falling back to the per-subject lookups.
const SCAN_LIMIT: u64 = 64;

fn check_filter(filter: &str) -> Result<(), QueryError> {
    subject::validate_filter(filter).map_err(QueryError::InvalidFilter)
}

fn index(st: &LogState) -> &SubjectIndex {
    static EMPTY: std::sync::OnceLock<SubjectIndex> = std::sync::OnceLock::new();
    st.index
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(SubjectIndex::default))
}

/// The first live sequence at or after `seq`.
pub(crate) fn next_live(st: &LogState, seq: u64) -> Option<u64> {
    let mut s = seq.max(st.floor);
    while let Some((_, e)) = st.deletes.range_of(s) {
        s = e + 1;
    }
    (s <= st.last_seq).then_some(s)
}

/// The last live sequence at or before `seq`.
fn prev_live(st: &LogState, seq: u64) -> Option<u64> {
    let mut s = seq.min(st.last_seq);
    while let Some((b, _)) = st.deletes.range_of(s) {
        s = b.checked_sub(1)?;
    }
    (s >= st.floor && s > 0).then_some(s)
}

/// Reads live message `seq`.
pub(crate) fn read(st: &LogState, seq: u64) -> Option<Result<StoredMessage, u64>> {
    let mut out = None;
    let ok = read_record(st, seq, |r| out = Some(StoredMessage::from_record(r)))?;
    Some(out.filter(|_| ok).ok_or(seq))
}

/// Hands live message `seq`'s record to `f` without copying it: `None` when not live,
/// `Some(false)` (and `f` not called) when the record is damaged.
pub(crate) fn read_record(
    st: &LogState,
    seq: u64,
    f: impl FnOnce(&record::RecordRef<'_>),
) -> Option<bool> {
    let (bi, off) = st.find(seq)?;
    Some(match st.blocks[bi].record_at(off) {
        Ok(r) if r.seq == seq && r.kind == Kind::Msg => {
            f(&r);
            true
        }
        _ => false,
    })
}

fn found(st: &LogState, seq: Option<u64>) -> Result<Option<StoredMessage>, QueryError> {
    match seq.and_then(|s| read(st, s)) {
        None => Ok(None),
        Some(Ok(m)) => Ok(Some(m)),
        Some(Err(s)) => Err(QueryError::Corrupt(s)),
    }
}

fn subject_of(st: &LogState, seq: u64) -> Option<&[u8]> {
    let (bi, off) = st.find(seq)?;
    st.subject_at(bi, off)
}

/// The last live sequence whose subject is `subject_or_filter` or matches it.
pub(crate) fn last_match(
    st: &LogState,
    subject_or_filter: &str,
) -> Result<Option<u64>, ConfigError> {
    let ix = index(st);
    // An indexed subject was validated when it was appended (and has no wildcard), so the
    // common case, a known subject, skips validation.
    if let Some(id) = ix.lookup(subject_or_filter.as_bytes()) {
        return Ok(ix.seqs(id).map(|l| l.last()));
    }
    subject::validate_filter(subject_or_filter)?;
    Ok(if subject::is_literal(subject_or_filter) {
        None
    } else if subject_or_filter == ">" {
        prev_live(st, st.last_seq)
    } else {
        ix.matching(subject_or_filter)
            .iter()
            .filter_map(|&id| Some(ix.seqs(id)?.last()))
            .max()
    })
}

/// The first live sequence at or after `from` whose subject matches `filter`.
pub(crate) fn next_match(st: &LogState, filter: &str, from: u64) -> Option<u64> {
    if filter == ">" {
        return next_live(st, from);
    }
    let ix = index(st);
    // Few matching subjects: one lookup each. Many: matches are dense, so a short scan usually
    // finds one before the (then costlier) lookups, and the set is only built if it does not.
    let ids = match ix.matching_upto(filter, MERGE_LIMIT) {
        Some(ids) => ids,
        None => {
            let mut s = from;
            for _ in 0..SCAN_LIMIT {
                s = next_live(st, s)?;
                if subject_of(st, s).is_some_and(|subj| matches_bytes(filter.as_bytes(), subj)) {
                    return Some(s);
                }
                s += 1;
            }
            ix.matching(filter)
        }
    };
    ids.iter()
        .filter_map(|&id| ix.seqs(id)?.next_ge(from))
        .min()
}

/// The first `max` live sequences at or after `from` whose subjects match any of `filters`,
/// in order.
fn next_matches(st: &LogState, filters: &[String], from: u64, max: usize) -> Vec<u64> {
    let ix = index(st);
    let mut out = Vec::new();
    for f in filters {
        let few = (f != ">")
            .then(|| ix.matching_upto(f, MERGE_LIMIT))
            .flatten();
        if let Some(ids) = few {
            // Each subject's first `max` from `from`: their union holds the first `max` overall.
            for l in ids.iter().filter_map(|&id| ix.seqs(id)) {
                l.extend_ge(from, max, &mut out);
            }
            continue;
        }
        let mut s = from;
        for _ in 0..max {
            let Some(q) = next_match(st, f, s) else { break };
            out.push(q);
            s = q + 1;
        }
    }
    out.sort_unstable();
    out.dedup();
    out.truncate(max);
    out
}

impl Stream {
    /// The first `max` sequences at or after `from` matching any of `filters` (valid ones),
    /// under one read of the state: a consumer's next deliveries.
    pub(crate) fn next_matching(
        &self,
        filters: &[String],
        from: u64,
        max: usize,
    ) -> Result<Vec<u64>, QueryError> {
        let st = self.read_state()?;
        Ok(next_matches(&st, filters, from, max))
    }

    /// For every subject, its live sequences below `bound(subject)`; sorted.
    pub(crate) fn subject_seqs_below(&self, bound: impl Fn(&str) -> u64) -> Vec<u64> {
        let Ok(st) = self.read_state() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, l) in index(&st).entries() {
            let b = std::str::from_utf8(name).map_or(0, &bound);
            l.extend_below(b, &mut out);
        }
        out.sort_unstable();
        out
    }

    /// The subject of live message `seq`, read without copying the message.
    pub(crate) fn subject_of(&self, seq: u64) -> Option<String> {
        let st = self.read_state().ok()?;
        let b = subject_of(&st, seq)?;
        std::str::from_utf8(b).ok().map(str::to_owned)
    }

    fn read_state(&self) -> Result<parking_lot::RwLockReadGuard<'_, LogState>, QueryError> {
        if self.s.closed.load(Ordering::Acquire) {
            return Err(QueryError::Closed);
        }
        Ok(self.s.state.read())
    }

    /// The first message at or after `from_seq` whose subject matches `filter`; `None` when
    /// there is none. Costs a lookup per matching subject (or a short scan when they are
    /// many), whatever the gap to the match.
    pub fn load_next(
        &self,
        filter: &str,
        from_seq: u64,
    ) -> Result<Option<StoredMessage>, QueryError> {
        check_filter(filter)?;
        let st = self.read_state()?;
        found(&st, next_match(&st, filter, from_seq))
    }

    /// The last message at or before `from_seq` whose subject matches `filter`.
    pub fn load_prev(
        &self,
        filter: &str,
        from_seq: u64,
    ) -> Result<Option<StoredMessage>, QueryError> {
        check_filter(filter)?;
        let st = self.read_state()?;
        let seq = if filter == ">" {
            prev_live(&st, from_seq)
        } else {
            let ix = index(&st);
            ix.matching(filter)
                .iter()
                .filter_map(|&id| ix.seqs(id)?.prev_le(from_seq))
                .max()
        };
        found(&st, seq)
    }

    /// The newest message of a subject, or the newest matching a filter.
    pub fn load_last(&self, subject_or_filter: &str) -> Result<Option<StoredMessage>, QueryError> {
        let st = self.read_state()?;
        let seq = last_match(&st, subject_or_filter).map_err(QueryError::InvalidFilter)?;
        found(&st, seq)
    }

    /// Every subject matching `filter` with its message count and first and last sequence.
    pub fn subjects_state(
        &self,
        filter: &str,
    ) -> Result<BTreeMap<String, SubjectState>, QueryError> {
        self.per_subject(filter, |l| SubjectState {
            messages: l.len(),
            first_seq: l.first(),
            last_seq: l.last(),
        })
    }

    /// Every subject matching `filter` with its message count.
    pub fn subjects_totals(&self, filter: &str) -> Result<BTreeMap<String, u64>, QueryError> {
        self.per_subject(filter, |l| l.len())
    }

    fn per_subject<T>(
        &self,
        filter: &str,
        f: impl Fn(&crate::seqlist::SeqList) -> T,
    ) -> Result<BTreeMap<String, T>, QueryError> {
        check_filter(filter)?;
        let st = self.read_state()?;
        let ix = index(&st);
        let mut out = BTreeMap::new();
        ix.for_each_match(filter, |id| {
            if let Some(l) = ix.seqs(id) {
                let name = String::from_utf8_lossy(ix.name(id)).into_owned();
                out.insert(name, f(l));
            }
        });
        Ok(out)
    }

    /// Number of distinct subjects with live messages.
    pub fn num_subjects(&self) -> u64 {
        index(&self.s.state.read()).len() as u64
    }

    /// Exact number of messages at or after `from_seq` matching `filter`; with
    /// `last_per_subject`, the number of matching subjects whose last message is at or after
    /// `from_seq`.
    pub fn num_pending(
        &self,
        from_seq: u64,
        filter: &str,
        last_per_subject: bool,
    ) -> Result<u64, QueryError> {
        check_filter(filter)?;
        let st = self.read_state()?;
        if filter == ">" && !last_per_subject {
            let from = from_seq.max(st.floor);
            if from > st.last_seq {
                return Ok(0);
            }
            return Ok(st.last_seq + 1 - from - st.deletes.count_in(from, st.last_seq));
        }
        let ix = index(&st);
        let mut n = 0;
        ix.for_each_match(filter, |id| {
            if let Some(l) = ix.seqs(id) {
                n += if last_per_subject {
                    u64::from(l.last() >= from_seq)
                } else {
                    l.count_ge(from_seq)
                };
            }
        });
        Ok(n)
    }

    /// The last sequence at or below `up_to_seq` (0: no bound) of every subject matching any
    /// of `filters`, de-duplicated and sorted. More than `max_results` is an error.
    pub fn multi_last_seqs(
        &self,
        filters: &[&str],
        up_to_seq: u64,
        max_results: usize,
    ) -> Result<Vec<u64>, QueryError> {
        for f in filters {
            check_filter(f)?;
        }
        let st = self.read_state()?;
        let up_to = if up_to_seq == 0 {
            st.last_seq
        } else {
            up_to_seq
        };
        let ix = index(&st);
        let mut seen = BTreeSet::new();
        let mut out = BTreeSet::new();
        for f in filters {
            let mut over = false;
            ix.for_each_match(f, |id| {
                if over || !seen.insert(id) {
                    return;
                }
                if let Some(s) = ix.seqs(id).and_then(|l| l.prev_le(up_to)) {
                    out.insert(s);
                    over = out.len() > max_results;
                }
            });
            if over {
                return Err(QueryError::TooManyResults { max: max_results });
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The first live sequence stored at or after `ts` (ns); `last_seq + 1` when there is
    /// none. Timestamps of local appends never decrease; `append_raw` keeps the caller's, and
    /// with decreasing raw timestamps the answer is one boundary among several.
    pub fn seq_for_time(&self, ts: i64) -> u64 {
        let st = self.s.state.read();
        let after = st.last_seq + 1;
        // The first block whose last record is at or after `ts`.
        let bi = st
            .blocks
            .partition_point(|b| last_ts(b).is_some_and(|t| t < ts));
        let Some(b) = st.blocks.get(bi) else {
            return after;
        };
        let slots = b.slots() as usize;
        let (mut lo, mut hi) = (0usize, slots);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match ts_from(b, mid) {
                Some((slot, t)) if t < ts => lo = slot + 1,
                Some(_) => hi = mid,
                None => hi = mid,
            }
        }
        next_live(&st, b.first_seq + lo as u64).unwrap_or(after)
    }

    /// Memory held by this stream's in-memory indexes.
    pub fn index_memory(&self) -> IndexMemory {
        let st = self.s.state.read();
        IndexMemory {
            subject_index: index(&st).memory_bytes(),
            offsets: st.blocks.iter().map(|b| b.slots() as usize * 4).sum(),
            other: st.deletes.range_count() * 48
                + st.blocks.capacity() * std::mem::size_of::<crate::state::Block>(),
            timers: st.timers.memory_bytes(),
            timed_messages: st.timers.len(),
        }
    }
}

/// Timestamp of the first readable record at or after `slot`, with that slot.
fn ts_from(b: &crate::state::Block, slot: usize) -> Option<(usize, i64)> {
    (slot..b.slots() as usize).find_map(|i| {
        let off = b.offsets.get(i).filter(|&o| o != crate::block::NO_RECORD)?;
        let h = record::decode_head(b.bytes().get(off as usize..)?).ok()?;
        Some((i, h.ts))
    })
}

/// Timestamp of the last readable record of a block.
fn last_ts(b: &crate::state::Block) -> Option<i64> {
    (0..b.slots() as usize).rev().find_map(|i| {
        let off = b.offsets.get(i).filter(|&o| o != crate::block::NO_RECORD)?;
        Some(record::decode_head(b.bytes().get(off as usize..)?).ok()?.ts)
    })
}
