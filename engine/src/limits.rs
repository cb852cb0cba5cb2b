//! Stream limits: the check a discard-new stream runs before an append (nothing changes when
//! it fails), and the removals every append (and every limit change) makes afterwards. The
//! removals are logged like any other removal (a `Remove` record for a subject's oldest
//! messages, a `Purge` record for the stream's oldest), so replay reproduces them exactly.

use std::collections::HashMap;
use std::io;

use serde::Serialize;

use crate::config::{Discard, Limits};
use crate::io::Vfs;
use crate::query::next_live;
use crate::record::{self, Kind};
use crate::state::LogState;
use crate::varint;

/// The limit an append ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Limit {
    MaxMsgs,
    MaxBytes,
    MaxMsgsPerSubject,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::MaxMsgs => "max_msgs",
            Limit::MaxBytes => "max_bytes",
            Limit::MaxMsgsPerSubject => "max_msgs_per_subject",
        })
    }
}

/// Largest payload of one `Remove` record; longer lists take several records.
const MAX_REMOVE_PAYLOAD: usize = 64 << 10;

/// Encodes sorted, distinct `seqs` as ranges: pairs of (gap from the previous range's end,
/// length - 1), the first gap counted from `seqs[0]` (the record's own sequence).
pub(crate) fn encode_ranges(seqs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut prev_end = seqs.first().copied().unwrap_or(0);
    while i < seqs.len() {
        let start = seqs[i];
        let mut end = start;
        while seqs.get(i + 1) == Some(&(end + 1)) {
            end += 1;
            i += 1;
        }
        varint::put(&mut out, start - prev_end);
        varint::put(&mut out, end - start);
        prev_end = end;
        i += 1;
    }
    out
}

/// Decodes `encode_ranges` output for a record with sequence `seq`. Stops at the first
/// malformed or out-of-range pair (a damaged payload never reaches past `MAX_SEQ`).
pub(crate) fn decode_ranges(seq: u64, b: &[u8]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut prev_end = seq;
    while at < b.len() {
        let (Some(gap), Some(len)) = (varint::get(b, &mut at), varint::get(b, &mut at)) else {
            break;
        };
        let Some(start) = prev_end.checked_add(gap) else {
            break;
        };
        let Some(end) = start.checked_add(len).filter(|&e| e <= record::MAX_SEQ) else {
            break;
        };
        out.push((start, end));
        prev_end = end;
    }
    if out.is_empty() && seq <= record::MAX_SEQ {
        out.push((seq, seq));
    }
    out
}

/// Encodes a control record and applies it through `LogState::apply_record`, the path replay
/// takes.
pub(crate) fn log_control(
    st: &mut LogState,
    vfs: &dyn Vfs,
    kind: Kind,
    seq: u64,
    payload: &[u8],
    now: i64,
    flags: u8,
) -> io::Result<()> {
    let len = record::encoded_len(0, 0, payload.len());
    st.ensure_room(vfs, None, len, now)?;
    st.encode(kind, flags, seq, now, &[], &[], payload, Default::default());
    let r = record::RecordRef {
        kind,
        flags,
        seq,
        ts: now,
        subject: &[],
        headers: &[],
        payload,
        ttl: None,
        msg_id: &[],
        len,
    };
    st.apply_record(&r, 0);
    Ok(())
}

/// The `Remove` records (first sequence, payload) that remove `seqs` (sorted).
pub(crate) fn remove_records(seqs: &[u64]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < seqs.len() {
        // Each record covers as many sequences as fit its payload bound.
        let mut end = (start + MAX_REMOVE_PAYLOAD / 20).min(seqs.len());
        let mut payload = encode_ranges(&seqs[start..end]);
        while payload.len() > MAX_REMOVE_PAYLOAD && end > start + 1 {
            end = start + (end - start) / 2;
            payload = encode_ranges(&seqs[start..end]);
        }
        out.push((seqs[start], payload));
        start = end;
    }
    out
}

/// Logs and applies the removal of `seqs` (sorted, live).
pub(crate) fn remove_logged(
    st: &mut LogState,
    vfs: &dyn Vfs,
    seqs: &[u64],
    now: i64,
) -> io::Result<()> {
    for (first, payload) in remove_records(seqs) {
        log_control(st, vfs, Kind::Remove, first, &payload, now, 0)?;
    }
    Ok(())
}

fn subject_count(st: &LogState, subject: &[u8]) -> u64 {
    st.index
        .as_ref()
        .and_then(|ix| ix.seqs(ix.lookup(subject)?))
        .map_or(0, |l| l.len())
}

/// The check run before appending `msgs` (subject, encoded length): an error when the append
/// must be refused. A message larger than `max_bytes` can never fit and is refused under any
/// policy; the other checks belong to discard-new streams, and give credit for the messages
/// the per-subject limit would remove (the stream is judged as it would be after the append).
pub(crate) fn check_append(
    st: &LogState,
    lim: &Limits,
    msgs: &[(&[u8], usize)],
    rollup_frees: Option<(u64, u64)>,
) -> Result<(), Limit> {
    if let Some(mb) = lim.max_bytes {
        if msgs.iter().any(|&(_, len)| len as u64 > mb) {
            return Err(Limit::MaxBytes);
        }
    }
    if lim.discard == Discard::Old {
        return Ok(());
    }
    let mut msgs_after = st.messages() + msgs.len() as u64;
    let mut bytes_after = st.live_bytes + msgs.iter().map(|&(_, l)| l as u64).sum::<u64>();
    if let Some((n, bytes)) = rollup_frees {
        // A rollup leaves its subject (or the stream) with itself alone, so the per-subject
        // limit never refuses it, and the room it makes counts.
        msgs_after -= n;
        bytes_after -= bytes;
    } else if let Some(m) = lim.max_msgs_per_subject {
        let mut per: HashMap<&[u8], Vec<u64>> = HashMap::new();
        for &(s, len) in msgs {
            per.entry(s).or_default().push(len as u64);
        }
        for (s, lens) in per {
            let existing = subject_count(st, s);
            let over = (existing + lens.len() as u64).saturating_sub(m);
            if over == 0 {
                continue;
            }
            if lim.discard == Discard::NewPerSubject {
                return Err(Limit::MaxMsgsPerSubject);
            }
            let old = st.subject_first_n(s, over.min(existing) as usize);
            let freed_old = st.bytes_of(&old);
            let freed_new: u64 = lens.iter().take((over - old.len() as u64) as usize).sum();
            msgs_after -= over;
            bytes_after -= freed_old + freed_new;
        }
    }
    if lim.max_msgs.is_some_and(|m| msgs_after > m) {
        return Err(Limit::MaxMsgs);
    }
    if lim.max_bytes.is_some_and(|m| bytes_after > m) {
        return Err(Limit::MaxBytes);
    }
    Ok(())
}

/// Applies every limit after an append to `subjects` (or, with `None`, to every subject: a
/// limit change or the periodic age check). Logs what it removes.
pub(crate) fn enforce(
    st: &mut LogState,
    vfs: &dyn Vfs,
    lim: &Limits,
    subjects: Option<&[&[u8]]>,
    now: i64,
) -> io::Result<()> {
    if let Some(m) = lim.max_msgs_per_subject {
        let mut remove = Vec::new();
        match subjects {
            Some(list) => {
                for (i, &s) in list.iter().enumerate() {
                    let over = subject_count(st, s).saturating_sub(m);
                    if over > 0 && !list[..i].contains(&s) {
                        remove.extend(st.subject_first_n(s, over as usize));
                    }
                }
            }
            None => {
                if let Some(ix) = &st.index {
                    for (_, l) in ix.entries() {
                        remove.extend(l.first_n(l.len().saturating_sub(m) as usize));
                    }
                }
            }
        }
        if !remove.is_empty() {
            remove.sort_unstable();
            remove_logged(st, vfs, &remove, now)?;
        }
    }
    let floor = prefix_floor(st, lim);
    if floor > st.floor {
        log_control(st, vfs, Kind::Purge, floor, &[], now, 0)?;
    }
    Ok(())
}

/// The purge floor that empties the oldest sealed blocks whose files together hold at least
/// `bytes`; `None` when the sealed blocks hold less.
pub(crate) fn floor_freeing(st: &LogState, bytes: u64) -> Option<u64> {
    let n = st.blocks.len();
    let mut freed = 0;
    for i in 0..n.saturating_sub(1) {
        freed += st.blocks[i].charged;
        if freed >= bytes {
            return Some(st.blocks[i + 1].first_seq);
        }
    }
    None
}

/// Whether removing every message, the active block's included, frees `bytes`.
pub(crate) fn frees_with_active(st: &LogState, bytes: u64) -> bool {
    st.messages() > 0 && st.blocks.iter().map(|b| b.charged).sum::<u64>() >= bytes
}

/// The first sequence to keep after removing the oldest messages that break max_msgs or
/// max_bytes (discard-old streams). max_age is not a prefix (messages with a TTL of "never"
/// stay): `expiry` applies it.
fn prefix_floor(st: &LogState, lim: &Limits) -> u64 {
    let old = lim.discard == Discard::Old;
    if !(old && (lim.max_msgs.is_some() || lim.max_bytes.is_some())) {
        return st.floor;
    }
    let max_msgs = lim.max_msgs.filter(|_| old).unwrap_or(u64::MAX);
    let max_bytes = lim.max_bytes.filter(|_| old).unwrap_or(u64::MAX);
    let (mut msgs, mut bytes) = (st.messages(), st.live_bytes);
    let mut seq = st.floor;
    while let Some(s) = next_live(st, seq) {
        if msgs <= max_msgs && bytes <= max_bytes {
            return s;
        }
        msgs -= 1;
        bytes = bytes.saturating_sub(st.bytes_of(&[s]));
        seq = s + 1;
    }
    seq.max(st.last_seq + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        for seqs in [
            vec![5],
            vec![5, 6, 7],
            vec![1, 3, 5, 6, 100, 101, 102, 1 << 40],
        ] {
            let b = encode_ranges(&seqs);
            let mut back = Vec::new();
            for (a, e) in decode_ranges(seqs[0], &b) {
                back.extend(a..=e);
            }
            assert_eq!(back, seqs);
        }
        assert_eq!(decode_ranges(9, &[0xff; 3]), vec![(9, 9)]);
    }
}
