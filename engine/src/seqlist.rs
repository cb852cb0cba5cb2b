//! A sorted set of sequences, compressed: each chunk stores its first sequence and LEB128
//! deltas. A subject with few messages keeps one chunk inline (no allocation), so the index
//! costs a fixed few dozen bytes per subject plus one to three bytes per message; a subject with
//! millions of messages has a deque of larger chunks found by binary search, so "next at or
//! after", "last at or before" and "count at or after" are a binary search and one chunk decode.
//!
//! Appends only ever add at the end (sequences grow); removals may hit any chunk and rewrite
//! that chunk alone.

use std::collections::VecDeque;

/// Bytes of deltas kept inline (sized so a whole `SeqList` is 48 bytes).
const INLINE: usize = 29;
/// Bytes of deltas per heap chunk.
const CHUNK: usize = 240;

#[derive(Clone, Debug)]
pub(crate) struct SeqList {
    first: u64,
    last: u64,
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    Inline { n: u8, len: u8, buf: [u8; INLINE] },
    Chunked(Box<Chunks>),
}

#[derive(Clone, Debug, Default)]
struct Chunks {
    chunks: VecDeque<Chunk>,
    count: u64,
}

#[derive(Clone, Debug)]
struct Chunk {
    first: u64,
    last: u64,
    n: u32,
    deltas: Vec<u8>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Decodes `first` followed by the deltas in `b`.
fn decode(first: u64, b: &[u8], out: &mut Vec<u64>) {
    out.push(first);
    let mut cur = first;
    let mut v = 0u64;
    let mut shift = 0;
    for &x in b {
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            cur += v;
            out.push(cur);
            v = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
}

impl Chunk {
    fn from_sorted(seqs: &[u64]) -> Chunk {
        let mut deltas = Vec::with_capacity(seqs.len() * 2);
        for w in seqs.windows(2) {
            put_varint(&mut deltas, w[1] - w[0]);
        }
        Chunk {
            first: seqs[0],
            last: seqs[seqs.len() - 1],
            n: seqs.len() as u32,
            deltas,
        }
    }
    fn seqs(&self) -> Vec<u64> {
        let mut v = Vec::with_capacity(self.n as usize);
        decode(self.first, &self.deltas, &mut v);
        debug_assert_eq!(v.len(), self.n as usize);
        v
    }
}

/// Splits sorted `seqs` into chunks of at most `CHUNK` delta bytes.
fn chunks_of(seqs: &[u64], out: &mut Vec<Chunk>) {
    let mut start = 0;
    let mut bytes = 0;
    for i in 1..=seqs.len() {
        let d = seqs.get(i).map(|s| varint_len(s - seqs[i - 1]));
        match d {
            Some(d) if bytes + d <= CHUNK => bytes += d,
            _ => {
                out.push(Chunk::from_sorted(&seqs[start..i]));
                start = i;
                bytes = 0;
            }
        }
    }
}

impl SeqList {
    pub fn new(seq: u64) -> SeqList {
        SeqList {
            first: seq,
            last: seq,
            repr: Repr::Inline {
                n: 1,
                len: 0,
                buf: [0; INLINE],
            },
        }
    }

    fn from_sorted(seqs: &[u64]) -> Option<SeqList> {
        let (&first, &last) = (seqs.first()?, seqs.last()?);
        let mut tmp = Vec::new();
        for w in seqs.windows(2) {
            put_varint(&mut tmp, w[1] - w[0]);
        }
        let repr = if tmp.len() <= INLINE && seqs.len() <= u8::MAX as usize {
            let mut buf = [0; INLINE];
            buf[..tmp.len()].copy_from_slice(&tmp);
            Repr::Inline {
                n: seqs.len() as u8,
                len: tmp.len() as u8,
                buf,
            }
        } else {
            let mut v = Vec::new();
            chunks_of(seqs, &mut v);
            Repr::Chunked(Box::new(Chunks {
                chunks: v.into(),
                count: seqs.len() as u64,
            }))
        };
        Some(SeqList { first, last, repr })
    }

    pub fn len(&self) -> u64 {
        match &self.repr {
            Repr::Inline { n, .. } => u64::from(*n),
            Repr::Chunked(c) => c.count,
        }
    }
    pub fn first(&self) -> u64 {
        self.first
    }
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Adds `seq`, which must be after the last one.
    pub fn push(&mut self, seq: u64) {
        debug_assert!(seq > self.last, "push {seq} after {}", self.last);
        let d = seq - self.last;
        match &mut self.repr {
            Repr::Inline { n, len, buf } => {
                let at = *len as usize;
                let k = varint_len(d);
                if at + k <= INLINE && *n < u8::MAX {
                    let mut v = d;
                    for b in &mut buf[at..at + k] {
                        *b = v as u8 | 0x80;
                        v >>= 7;
                    }
                    buf[at + k - 1] &= 0x7f;
                    *len += k as u8;
                    *n += 1;
                } else {
                    let mut all = self.to_vec();
                    all.push(seq);
                    let mut v = Vec::new();
                    chunks_of(&all, &mut v);
                    self.repr = Repr::Chunked(Box::new(Chunks {
                        chunks: v.into(),
                        count: all.len() as u64,
                    }));
                }
            }
            Repr::Chunked(c) => {
                c.count += 1;
                match c.chunks.back_mut() {
                    Some(ch) if ch.deltas.len() + varint_len(d) <= CHUNK => {
                        put_varint(&mut ch.deltas, d);
                        ch.n += 1;
                        ch.last = seq;
                    }
                    _ => c.chunks.push_back(Chunk::from_sorted(&[seq])),
                }
            }
        }
        self.last = seq;
    }

    /// Every sequence, in order.
    pub fn to_vec(&self) -> Vec<u64> {
        let mut v = Vec::with_capacity(self.len() as usize);
        if self.len() == 0 {
            return v;
        }
        match &self.repr {
            Repr::Inline { len, buf, .. } => decode(self.first, &buf[..*len as usize], &mut v),
            Repr::Chunked(c) => {
                for ch in &c.chunks {
                    decode(ch.first, &ch.deltas, &mut v);
                }
            }
        }
        v
    }

    /// The first `n` sequences.
    pub fn first_n(&self, n: usize) -> Vec<u64> {
        let mut v = Vec::with_capacity(n.min(self.len() as usize));
        if n == 0 || self.len() == 0 {
            return v;
        }
        match &self.repr {
            Repr::Inline { len, buf, .. } => decode(self.first, &buf[..*len as usize], &mut v),
            Repr::Chunked(c) => {
                for ch in &c.chunks {
                    decode(ch.first, &ch.deltas, &mut v);
                    if v.len() >= n {
                        break;
                    }
                }
            }
        }
        v.truncate(n);
        v
    }

    /// The first sequence at or after `seq`.
    pub fn next_ge(&self, seq: u64) -> Option<u64> {
        if seq <= self.first {
            return Some(self.first);
        }
        if seq > self.last {
            return None;
        }
        match &self.repr {
            Repr::Inline { .. } => self.to_vec().into_iter().find(|&s| s >= seq),
            Repr::Chunked(c) => {
                let i = c.chunks.partition_point(|ch| ch.last < seq);
                c.chunks.get(i)?.seqs().into_iter().find(|&s| s >= seq)
            }
        }
    }

    /// The last sequence at or before `seq`.
    pub fn prev_le(&self, seq: u64) -> Option<u64> {
        if seq >= self.last {
            return Some(self.last);
        }
        if seq < self.first {
            return None;
        }
        match &self.repr {
            Repr::Inline { .. } => self.to_vec().into_iter().rev().find(|&s| s <= seq),
            Repr::Chunked(c) => {
                let i = c.chunks.partition_point(|ch| ch.first <= seq);
                c.chunks
                    .get(i.checked_sub(1)?)?
                    .seqs()
                    .into_iter()
                    .rev()
                    .find(|&s| s <= seq)
            }
        }
    }

    /// How many sequences are at or after `seq`.
    pub fn count_ge(&self, seq: u64) -> u64 {
        if seq <= self.first {
            return self.len();
        }
        if seq > self.last {
            return 0;
        }
        match &self.repr {
            Repr::Inline { .. } => self.to_vec().iter().filter(|&&s| s >= seq).count() as u64,
            Repr::Chunked(c) => {
                let i = c.chunks.partition_point(|ch| ch.last < seq);
                let Some(ch) = c.chunks.get(i) else {
                    return 0;
                };
                let partial = ch.seqs().iter().filter(|&&s| s >= seq).count() as u64;
                // Sum whichever side of chunk `i` is shorter.
                if i > c.chunks.len() / 2 {
                    let after: u64 = c.chunks.range(i + 1..).map(|ch| u64::from(ch.n)).sum();
                    partial + after
                } else {
                    let before: u64 = c.chunks.range(..i).map(|ch| u64::from(ch.n)).sum();
                    c.count - before - (u64::from(ch.n) - partial)
                }
            }
        }
    }

    /// Removes `seq`; false if it was not there. A list left empty must be dropped by the
    /// caller (`len() == 0`).
    pub fn remove(&mut self, seq: u64) -> bool {
        if self.len() == 0 || seq < self.first || seq > self.last {
            return false;
        }
        match &mut self.repr {
            Repr::Inline { .. } => {
                let mut v = self.to_vec();
                let Ok(i) = v.binary_search(&seq) else {
                    return false;
                };
                v.remove(i);
                self.replace(&v);
                true
            }
            Repr::Chunked(c) => {
                let i = c.chunks.partition_point(|ch| ch.last < seq);
                let Some(ch) = c.chunks.get_mut(i) else {
                    return false;
                };
                let mut v = ch.seqs();
                let Ok(j) = v.binary_search(&seq) else {
                    return false;
                };
                v.remove(j);
                c.count -= 1;
                if v.is_empty() {
                    c.chunks.remove(i);
                } else {
                    // Removing a sequence merges two deltas, which never needs more bytes.
                    *ch = Chunk::from_sorted(&v);
                }
                self.settle();
                true
            }
        }
    }

    /// Removes every sequence below `floor`; returns how many went.
    pub fn remove_below(&mut self, floor: u64) -> u64 {
        if floor <= self.first {
            return 0;
        }
        let before = self.len();
        match &mut self.repr {
            Repr::Inline { .. } => {
                let mut v = self.to_vec();
                v.retain(|&s| s >= floor);
                self.replace(&v);
            }
            Repr::Chunked(c) => {
                while c.chunks.front().is_some_and(|ch| ch.last < floor) {
                    if let Some(ch) = c.chunks.pop_front() {
                        c.count -= u64::from(ch.n);
                    }
                }
                if let Some(ch) = c.chunks.front_mut() {
                    let mut v = ch.seqs();
                    let n0 = v.len();
                    v.retain(|&s| s >= floor);
                    c.count -= (n0 - v.len()) as u64;
                    *ch = Chunk::from_sorted(&v);
                }
                self.settle();
            }
        }
        before - self.len()
    }

    /// Removes every sequence above `last`; returns how many went.
    pub fn remove_above(&mut self, last: u64) -> u64 {
        if last >= self.last {
            return 0;
        }
        let before = self.len();
        match &mut self.repr {
            Repr::Inline { .. } => {
                let mut v = self.to_vec();
                v.retain(|&s| s <= last);
                self.replace(&v);
            }
            Repr::Chunked(c) => {
                while c.chunks.back().is_some_and(|ch| ch.first > last) {
                    if let Some(ch) = c.chunks.pop_back() {
                        c.count -= u64::from(ch.n);
                    }
                }
                if let Some(ch) = c.chunks.back_mut() {
                    let mut v = ch.seqs();
                    let n0 = v.len();
                    v.retain(|&s| s <= last);
                    c.count -= (n0 - v.len()) as u64;
                    *ch = Chunk::from_sorted(&v);
                }
                self.settle();
            }
        }
        before - self.len()
    }

    /// Rebuilds from `v` (possibly empty: then `len()` is 0).
    fn replace(&mut self, v: &[u64]) {
        match SeqList::from_sorted(v) {
            Some(l) => *self = l,
            None => self.clear(),
        }
    }

    fn clear(&mut self) {
        self.repr = Repr::Inline {
            n: 0,
            len: 0,
            buf: [0; INLINE],
        };
    }

    /// Fixes `first`/`last` after chunks changed; returns a small list to inline form.
    fn settle(&mut self) {
        let Repr::Chunked(c) = &mut self.repr else {
            return;
        };
        c.chunks.retain(|ch| ch.n > 0);
        match (c.chunks.front(), c.chunks.back()) {
            (Some(f), Some(b)) => {
                self.first = f.first;
                self.last = b.last;
            }
            _ => return self.clear(),
        }
        if c.chunks.len() == 1 && c.count <= 16 {
            let v = self.to_vec();
            self.replace(&v);
        }
    }

    /// Heap bytes held beyond the struct itself.
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Inline { .. } => 0,
            Repr::Chunked(c) => {
                std::mem::size_of::<Chunks>()
                    + c.chunks.capacity() * std::mem::size_of::<Chunk>()
                    + c.chunks
                        .iter()
                        .map(|ch| ch.deltas.capacity())
                        .sum::<usize>()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn size() {
        assert_eq!(std::mem::size_of::<SeqList>(), 48);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u64),
        Remove(usize),
        Below(usize),
        Above(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => prop_oneof![1u64..3, 1u64..300, 1u64..1_000_000_000].prop_map(Op::Push),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => any::<usize>().prop_map(Op::Below),
            1 => any::<usize>().prop_map(Op::Above),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn agrees_with_a_vec(ops in proptest::collection::vec(op(), 1..800)) {
            let mut model: Vec<u64> = Vec::new();
            let mut list: Option<SeqList> = None;
            let mut top = 0u64;
            for op in ops {
                let pick = |i: usize| model.get(i % model.len().max(1)).copied();
                match op {
                    Op::Push(d) => {
                        top += d;
                        model.push(top);
                        match &mut list {
                            Some(l) if l.len() > 0 => l.push(top),
                            _ => list = Some(SeqList::new(top)),
                        }
                    }
                    Op::Remove(i) => if let (Some(s), Some(l)) = (pick(i), &mut list) {
                        model.retain(|&x| x != s);
                        prop_assert!(l.remove(s));
                        prop_assert!(!l.remove(s));
                    },
                    Op::Below(i) => if let (Some(s), Some(l)) = (pick(i), &mut list) {
                        let n = model.iter().filter(|&&x| x < s).count() as u64;
                        model.retain(|&x| x >= s);
                        prop_assert_eq!(l.remove_below(s), n);
                    },
                    Op::Above(i) => if let (Some(s), Some(l)) = (pick(i), &mut list) {
                        let n = model.iter().filter(|&&x| x > s).count() as u64;
                        model.retain(|&x| x <= s);
                        prop_assert_eq!(l.remove_above(s), n);
                    },
                }
                let Some(l) = &list else { continue };
                prop_assert_eq!(l.len(), model.len() as u64);
                if model.is_empty() { list = None; continue; }
                prop_assert_eq!(l.to_vec(), model.clone());
                prop_assert_eq!(l.first(), model[0]);
                prop_assert_eq!(l.last(), *model.last().unwrap());
                for probe in [model[0], model[model.len() / 2], model[model.len() / 2] + 1, top, 0] {
                    prop_assert_eq!(l.next_ge(probe), model.iter().copied().find(|&x| x >= probe));
                    prop_assert_eq!(l.prev_le(probe), model.iter().rev().copied().find(|&x| x <= probe));
                    prop_assert_eq!(l.count_ge(probe), model.iter().filter(|&&x| x >= probe).count() as u64);
                    prop_assert_eq!(l.first_n(3), model.iter().copied().take(3).collect::<Vec<_>>());
                }
            }
        }
    }
}
