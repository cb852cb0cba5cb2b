//! Expiry: max_age and per-message TTLs are one mechanism. Each pass collects the messages
//! due (the timer wheel's ready buckets, and the oldest messages past max_age that are not
//! "never"), removes them with a logged `Remove` record and, in the same atomic batch of
//! records, appends a subject delete marker for every subject whose last message went (unless
//! that message was itself a marker). Passes are bounded so appends never wait long behind a
//! mass expiry. Explicit removals and purges can leave markers the same way (`Remove`,
//! `Purge` reasons) when the stream asks for them.

use std::collections::HashMap;
use std::io;
use std::time::Instant;

use crate::error::{DurabilityError, WriteError};
use crate::limits;
use crate::query::next_live;
use crate::record::{self, Kind, FLAG_BATCH, FLAG_MARKER};
use crate::state::LogState;
use crate::stream::{NewMessage, Stream};
use crate::ttl::{second_of, Ttl};

/// Most messages one state-lock hold expires (plus as many past max_age): bounds how long an
/// append can wait behind a mass expiry (about a millisecond).
pub(crate) const EXPIRE_BATCH: usize = 2048;

/// Why a marker was written: its `Nats-Marker-Reason` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// max_age or a per-message TTL (the incumbent's wire vocabulary uses one reason for both).
    MaxAge,
    /// `remove` or `erase`.
    Remove,
    /// `purge`, `compact` or `purge_filtered`.
    Purge,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::MaxAge => "MaxAge",
            Reason::Remove => "Remove",
            Reason::Purge => "Purge",
        }
    }
}

/// A marker's headers, in the NATS header wire format.
pub(crate) fn marker_headers(reason: Reason, ttl_secs: u64) -> Vec<u8> {
    format!(
        "NATS/1.0\r\nNats-Marker-Reason: {}\r\nNats-TTL: {ttl_secs}s\r\nNats-Rollup: sub\r\n\r\n",
        reason.as_str()
    )
    .into_bytes()
}

fn nanos(d: std::time::Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

fn ts_of(st: &LogState, seq: u64) -> Option<i64> {
    let (bi, off) = st.find(seq)?;
    Some(
        record::decode_head(st.blocks[bi].bytes().get(off..)?)
            .ok()?
            .ts,
    )
}

/// The next sequences to expire at `now`, sorted: up to `max` due by TTL and up to `max` past
/// max_age. Moves `age_from` past the "never" messages it steps over.
fn due_batch(st: &mut LogState, now: i64, max: usize) -> Vec<u64> {
    let now_s = second_of(now);
    st.timers.advance(now_s);
    let mut v = st.timers.take_due(max, now_s);
    // A timer whose record no longer says it is due (damage, or a sequence reused after a
    // truncate) is dropped, not obeyed.
    v.retain(|&q| due_by_record(st, q, now_s));
    if let Some(age) = st.limits.max_age {
        let cutoff = now.saturating_sub(nanos(age));
        let mut seq = st.floor.max(st.age_from);
        let mut n = 0;
        while n < max {
            let Some(s) = next_live(st, seq) else { break };
            if ts_of(st, s).is_none_or(|t| t >= cutoff) {
                break;
            }
            if st.timers.never_from(s) != Some(s) {
                v.push(s);
                n += 1;
            }
            seq = s + 1;
        }
        // Everything below `seq` is now removed or exempt: the next pass starts there.
        st.age_from = seq;
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// The live message `seq` has a TTL that is due at second `now`.
fn due_by_record(st: &LogState, seq: u64, now: u64) -> bool {
    let Some((bi, off)) = st.find(seq) else {
        return false;
    };
    match record::ttl_at(st.blocks[bi].bytes(), off).map(|(ts, raw)| (ts, Ttl::from_raw(raw))) {
        Some((ts, Some(Ttl::Secs(s)))) => crate::ttl::due_second(ts, s) <= now,
        _ => false,
    }
}

/// Whether a pass at `now` may have work, judged under the shared lock: a new second for the
/// wheel, a ready bucket, or a message at the max_age cursor that is older than the cutoff
/// (or "never", which only the exclusive lock can step over).
fn maybe_due(st: &LogState, now: i64) -> bool {
    if st.timers.maybe_due(second_of(now)) {
        return true;
    }
    let Some(age) = st.limits.max_age else {
        return false;
    };
    let cutoff = now.saturating_sub(nanos(age));
    next_live(st, st.floor.max(st.age_from))
        .is_some_and(|s| ts_of(st, s).is_some_and(|t| t < cutoff))
}

/// Puts the timers of the live messages among `seqs` back (a pass that failed).
fn retime(st: &mut LogState, seqs: &[u64]) {
    for &q in seqs {
        let Some((bi, off)) = st.find(q) else {
            continue;
        };
        if let Some((ts, raw)) = record::ttl_at(st.blocks[bi].bytes(), off) {
            // Cancel first: an age-expired message was never taken out.
            st.timers.cancel(q, ts, raw);
            st.timers.insert(q, ts, raw);
        }
    }
}

/// The subjects that removing `seqs` (sorted, live) leaves without messages and that get a
/// marker, in the order of their last removed message: not when that message was a marker.
pub(crate) fn emptied(st: &LogState, seqs: &[u64]) -> Vec<Vec<u8>> {
    let Some(ix) = &st.index else {
        return Vec::new();
    };
    // subject -> (removed, last removed seq, last removed was a marker)
    let mut per: HashMap<&[u8], (u64, u64, bool)> = HashMap::new();
    for &q in seqs {
        let Some((bi, off)) = st.find(q) else {
            continue;
        };
        let bytes = st.blocks[bi].bytes();
        let (Some(subject), Ok(h)) = (
            record::subject_at(bytes, off),
            record::decode_head(bytes.get(off..).unwrap_or(&[])),
        ) else {
            continue;
        };
        let e = per.entry(subject).or_insert((0, 0, false));
        *e = (e.0 + 1, q, h.flags & FLAG_MARKER != 0);
    }
    let mut out: Vec<(u64, &[u8])> = per
        .into_iter()
        .filter(|&(s, (n, _, marker))| {
            !marker
                && ix
                    .lookup(s)
                    .and_then(|id| ix.seqs(id))
                    .map_or(0, |l| l.len())
                    == n
        })
        .map(|(s, (_, last, _))| (last, s))
        .collect();
    out.sort_unstable();
    out.into_iter().map(|(_, s)| s.to_vec()).collect()
}

/// The subjects a purge below `floor` empties, in the order of their last message, without
/// those whose last message is a marker.
fn emptied_below(st: &LogState, floor: u64) -> Vec<Vec<u8>> {
    let Some(ix) = &st.index else {
        return Vec::new();
    };
    let mut out: Vec<(u64, &[u8])> = ix
        .entries()
        .filter(|(_, l)| l.last() < floor)
        .map(|(s, l)| (l.last(), s))
        .filter(|&(last, _)| !is_marker(st, last))
        .collect();
    out.sort_unstable();
    out.into_iter().map(|(_, s)| s.to_vec()).collect()
}

fn is_marker(st: &LogState, seq: u64) -> bool {
    st.find(seq).is_some_and(|(bi, off)| {
        record::decode_head(st.blocks[bi].bytes().get(off..).unwrap_or(&[]))
            .is_ok_and(|h| h.flags & FLAG_MARKER != 0)
    })
}

impl Stream {
    /// Expires everything due now, in passes of at most [`EXPIRE_BATCH`] messages per
    /// state-lock hold, and returns how many messages went, once the removals and markers are
    /// as durable as the stream's mode makes an append. Called by the maintenance thread
    /// (every tick), at open and after a limit change; hosts that run without maintenance
    /// call it themselves.
    pub fn expire_now(&self) -> Result<u64, WriteError> {
        self.expire_until(None).map(|(n, _)| n)
    }

    /// `expire_now`, stopping after the batch that ends past `deadline`; also returns whether
    /// messages may still be due. The maintenance thread works in such slices so that block
    /// sealing and flushing keep up while a mass expiry runs.
    pub(crate) fn expire_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(u64, bool), WriteError> {
        let mut end = None;
        let r = self.expire_passes(&mut end, deadline);
        if let Some((lsn, last)) = end {
            // One wait for the whole pass, not one per batch.
            self.after_write(lsn, last)?;
        }
        r
    }

    fn expire_passes(
        &self,
        end: &mut Option<(u64, u64)>,
        deadline: Option<Instant>,
    ) -> Result<(u64, bool), WriteError> {
        let mut total = 0;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok((total, true));
            }
            self.check_writable().map_err(as_write)?;
            {
                // Most ticks find nothing to do: decide that under the shared lock.
                let st = self.s.state.read();
                if !maybe_due(&st, self.s.clock.now_ns()) {
                    return Ok((total, false));
                }
            }
            let (n, lsn, last) = {
                let mut st = self.s.state.write();
                self.check_open().map_err(as_write)?;
                let now = self.s.clock.now_ns();
                let age_from = st.age_from;
                let seqs = due_batch(&mut st, now, EXPIRE_BATCH);
                if seqs.is_empty() {
                    return Ok((total, false));
                }
                let mark = self.s.cfg.subject_delete_marker_ttl.is_some();
                if let Err(e) = self.remove_marked(&mut st, &seqs, mark, Reason::MaxAge, now) {
                    // Nothing was removed (a full disk, say): the taken timers go back, so
                    // the next pass tries again.
                    retime(&mut st, &seqs);
                    st.age_from = age_from;
                    return Err(e);
                }
                let out = (seqs.len() as u64, st.lsn, st.last_seq);
                // Fairly: a waiting appender goes next, rather than the next batch.
                parking_lot::RwLockWriteGuard::unlock_fair(st);
                out
            };
            total += n;
            *end = Some((lsn, last));
            // Batches are not waited for one by one: a crash before they are durable leaves
            // the messages due, and the pass at open removes them (and marks them) again.
            self.after_background_write(lsn, last)?;
        }
    }

    /// Removes `seqs` (sorted, live) with one logged removal and, with `mark`, in the same
    /// batch of records a marker for every subject it empties.
    pub(crate) fn remove_marked(
        &self,
        st: &mut LogState,
        seqs: &[u64],
        mark: bool,
        reason: Reason,
        now: i64,
    ) -> Result<(), WriteError> {
        let subjects = match self.s.cfg.subject_delete_marker_ttl {
            Some(_) if mark => emptied(st, seqs),
            _ => Vec::new(),
        };
        let removals = limits::remove_records(seqs);
        let marked = self.marker_room(&subjects, reason);
        let total: usize = removals
            .iter()
            .map(|(_, p)| record::encoded_len(0, 0, p.len()))
            .sum::<usize>()
            + marked;
        // One batch lives in one block, so recovery keeps or drops it whole.
        let first_marker = (!subjects.is_empty()).then_some(st.last_seq + 1);
        st.ensure_room(&*self.s.vfs, first_marker, total, now)
            .map_err(io_err)?;
        let n = removals.len();
        for (i, (first, payload)) in removals.iter().enumerate() {
            let more = i + 1 < n || !subjects.is_empty();
            let flags = if more { FLAG_BATCH } else { 0 };
            limits::log_control(st, &*self.s.vfs, Kind::Remove, *first, payload, now, flags)
                .map_err(io_err)?;
        }
        self.append_markers(st, &subjects, reason)
    }

    /// Removes every message below `floor` with one `Purge` record and, with `mark`, a marker
    /// (reason `Purge`) on every subject it empties, in the same batch.
    pub(crate) fn purge_marked(
        &self,
        st: &mut LogState,
        floor: u64,
        mark: bool,
        now: i64,
    ) -> Result<u64, WriteError> {
        let subjects = if mark {
            emptied_below(st, floor)
        } else {
            Vec::new()
        };
        let total = record::encoded_len(0, 0, 0) + self.marker_room(&subjects, Reason::Purge);
        let first_marker = (!subjects.is_empty()).then_some(st.last_seq.max(floor - 1) + 1);
        st.ensure_room(&*self.s.vfs, first_marker, total, now)
            .map_err(io_err)?;
        let before = st.messages();
        let flags = if subjects.is_empty() { 0 } else { FLAG_BATCH };
        limits::log_control(st, &*self.s.vfs, Kind::Purge, floor, &[], now, flags)
            .map_err(io_err)?;
        let n = before - st.messages();
        self.append_markers(st, &subjects, Reason::Purge)?;
        Ok(n)
    }

    /// Bytes the markers for `subjects` take.
    fn marker_room(&self, subjects: &[Vec<u8>], reason: Reason) -> usize {
        let Some(ttl) = self.s.cfg.subject_delete_marker_ttl else {
            return 0;
        };
        let h = marker_headers(reason, ttl.as_secs()).len();
        subjects
            .iter()
            .map(|s| record::msg_len(s.len(), h, 0, &record::Extras::ttl(Some(0))))
            .sum()
    }

    /// Appends a marker on each of `subjects`; all but the last carry the batch flag.
    pub(crate) fn append_markers(
        &self,
        st: &mut LogState,
        subjects: &[Vec<u8>],
        reason: Reason,
    ) -> Result<(), WriteError> {
        let Some(ttl) = self.s.cfg.subject_delete_marker_ttl else {
            return Ok(());
        };
        let headers = marker_headers(reason, ttl.as_secs());
        let ts = self.s.clock.now_ns().max(st.last_ts);
        for (i, s) in subjects.iter().enumerate() {
            let Ok(subject) = std::str::from_utf8(s) else {
                continue;
            };
            let m = NewMessage::new(subject, &[])
                .with_headers(&headers)
                .with_ttl(Ttl::Secs(ttl.as_secs()));
            let batch = if i + 1 < subjects.len() {
                FLAG_BATCH
            } else {
                0
            };
            let seq = st.last_seq + 1;
            self.put_unlimited(st, seq, ts, FLAG_MARKER | batch, &m)
                .map_err(as_write)?;
        }
        Ok(())
    }
}

fn as_write(e: crate::error::AppendError) -> WriteError {
    crate::stream::as_write(e)
}

fn io_err(e: io::Error) -> WriteError {
    WriteError::Durability(DurabilityError::from_io(e))
}
