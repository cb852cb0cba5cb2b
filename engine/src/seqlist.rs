//! A sorted set of sequences, compressed: each chunk stores its first sequence and LEB128
//! deltas. A subject with few messages keeps one chunk inline (no allocation), so the index
//! costs a fixed few dozen bytes per subject plus one to three bytes per message; a subject with
//! millions of messages has a deque of larger chunks found by binary search, so "next at or
//! after", "last at or before" and "count at or after" are a binary search and one chunk decode.
//!
//! Appends only ever add at the end (sequences grow) and go to a tail chunk whose bytes are
//! inline, so an append follows one pointer; removals may hit any chunk and rewrite that chunk
//! alone.

use std::collections::VecDeque;

use crate::varint;

/// Bytes of deltas kept inline (sized so a whole `SeqList` is 48 bytes).
const INLINE: usize = 29;
/// Bytes of deltas per heap chunk.
const CHUNK: usize = 240;

/// Heap bytes for `need` bytes of deltas: powers of two from 32, at most a chunk.
fn heap_capacity(need: usize) -> usize {
    need.next_power_of_two().clamp(32, CHUNK)
}

#[derive(Clone, Debug)]
pub(crate) struct SeqList {
    first: u64,
    last: u64,
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    Inline {
        n: u8,
        len: u8,
        buf: [u8; INLINE],
    },
    /// Deltas on the heap, for lists past the inline bytes but within one chunk: a list of a
    /// dozen sparse sequences costs its bytes, not a whole chunk set.
    Heap {
        n: u32,
        len: u16,
        buf: Box<[u8]>,
    },
    Chunked(Box<Chunks>),
}

#[derive(Clone, Debug)]
struct Chunks {
    /// Older chunks, full or shrunk by removals.
    full: VecDeque<Chunk>,
    /// The chunk appends go to; `n == 0` when empty.
    tail: Tail,
    count: u64,
}

#[derive(Clone, Debug)]
struct Chunk {
    first: u64,
    last: u64,
    n: u32,
    deltas: Box<[u8]>,
}

#[derive(Clone, Debug)]
struct Tail {
    first: u64,
    last: u64,
    n: u32,
    len: u16,
    buf: [u8; CHUNK],
}

/// Any chunk, full or tail.
#[derive(Clone, Copy)]
struct View<'a> {
    first: u64,
    last: u64,
    n: u32,
    deltas: &'a [u8],
}

impl View<'_> {
    fn iter(&self) -> Seqs<'_> {
        Seqs::new(self.first, self.deltas)
    }

    fn seqs(&self) -> Vec<u64> {
        let mut v = Vec::with_capacity(self.n as usize);
        decode(self.first, self.deltas, &mut v);
        debug_assert_eq!(v.len(), self.n as usize);
        v
    }
}

/// Decodes `first` followed by the deltas in `b`.
fn decode(first: u64, b: &[u8], out: &mut Vec<u64>) {
    out.extend(Seqs::new(first, b));
}

/// `first` followed by the deltas in `b`, decoded as they are asked for: a point query stops
/// at the sequence it wants instead of decoding (and allocating) the whole chunk.
struct Seqs<'a> {
    next: Option<u64>,
    deltas: &'a [u8],
}

impl<'a> Seqs<'a> {
    fn new(first: u64, deltas: &'a [u8]) -> Self {
        Seqs {
            next: Some(first),
            deltas,
        }
    }
}

impl Iterator for Seqs<'_> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        let cur = self.next?;
        let mut v = 0u64;
        let mut shift = 0;
        self.next = None;
        while let Some((&x, rest)) = self.deltas.split_first() {
            self.deltas = rest;
            v |= u64::from(x & 0x7f) << shift;
            if x & 0x80 == 0 {
                self.next = Some(cur + v);
                break;
            }
            shift += 7;
        }
        Some(cur)
    }
}

/// Drops the first `k` deltas of `deltas` (moving `first` past them) and shifts the rest to
/// the front once; returns how many bytes went. The caller knows `k` deltas are there.
fn shift_prefix(first: &mut u64, deltas: &mut [u8], k: usize) -> usize {
    let mut at = 0;
    for _ in 0..k {
        let d = varint::get(deltas, &mut at).unwrap_or(0);
        debug_assert!(d > 0, "fewer than {k} deltas after {first}");
        *first += d;
    }
    deltas.copy_within(at.., 0);
    at
}

fn deltas_of(seqs: &[u64]) -> Vec<u8> {
    let mut d = Vec::with_capacity(seqs.len() * 2);
    for w in seqs.windows(2) {
        varint::put(&mut d, w[1] - w[0]);
    }
    d
}

impl Repr {
    /// The deltas of an inline or heap list (none for a chunked one).
    fn small_deltas(&self) -> &[u8] {
        match self {
            Repr::Inline { len, buf, .. } => &buf[..*len as usize],
            Repr::Heap { len, buf, .. } => &buf[..*len as usize],
            Repr::Chunked(_) => &[],
        }
    }
}

impl Tail {
    fn empty() -> Tail {
        Tail {
            first: 0,
            last: 0,
            n: 0,
            len: 0,
            buf: [0; CHUNK],
        }
    }
    fn view(&self) -> View<'_> {
        View {
            first: self.first,
            last: self.last,
            n: self.n,
            deltas: &self.buf[..self.len as usize],
        }
    }
    /// Appends `seq` if it fits.
    fn push(&mut self, seq: u64) -> bool {
        if self.n == 0 {
            (self.first, self.last, self.n, self.len) = (seq, seq, 1, 0);
            return true;
        }
        let d = seq - self.last;
        let (at, k) = (self.len as usize, varint::len(d));
        if at + k > CHUNK {
            return false;
        }
        varint::write(&mut self.buf[at..at + k], d);
        self.len += k as u16;
        self.n += 1;
        self.last = seq;
        true
    }
    /// Replaces the contents with `seqs` (a subset of the current ones, so they fit).
    fn set(&mut self, seqs: &[u64]) {
        self.n = 0;
        for &s in seqs {
            let fits = self.push(s);
            debug_assert!(fits, "a subset of a tail fits the tail");
        }
    }
}

impl Chunk {
    fn view(&self) -> View<'_> {
        View {
            first: self.first,
            last: self.last,
            n: self.n,
            deltas: &self.deltas,
        }
    }
}

impl Chunks {
    fn new() -> Chunks {
        Chunks {
            full: VecDeque::new(),
            tail: Tail::empty(),
            count: 0,
        }
    }
    fn from_sorted(seqs: &[u64]) -> Chunks {
        let mut c = Chunks::new();
        for &s in seqs {
            c.push(s);
        }
        c
    }
    fn len(&self) -> usize {
        self.full.len() + usize::from(self.tail.n > 0)
    }
    fn view(&self, i: usize) -> View<'_> {
        match self.full.get(i) {
            Some(c) => c.view(),
            None => self.tail.view(),
        }
    }
    fn views(&self) -> impl Iterator<Item = View<'_>> + '_ {
        (0..self.len()).map(|i| self.view(i))
    }
    /// The first chunk index for which `pred` is false (`pred` must hold for a prefix).
    fn partition_point(&self, pred: impl Fn(&View<'_>) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(&self.view(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
    fn push(&mut self, seq: u64) {
        // The common case, a small gap with room in the tail, without the general encoder.
        let t = &mut self.tail;
        let at = t.len as usize;
        if t.n > 0 && at + 2 <= CHUNK {
            let d = seq - t.last;
            if d < 0x80 {
                t.buf[at] = d as u8;
                t.len += 1;
            } else if d < 0x4000 {
                t.buf[at] = d as u8 | 0x80;
                t.buf[at + 1] = (d >> 7) as u8;
                t.len += 2;
            } else {
                return self.push_slow(seq);
            }
            t.n += 1;
            t.last = seq;
            self.count += 1;
            return;
        }
        self.push_slow(seq);
    }

    fn push_slow(&mut self, seq: u64) {
        if !self.tail.push(seq) {
            let t = &self.tail;
            self.full.push_back(Chunk {
                first: t.first,
                last: t.last,
                n: t.n,
                deltas: t.buf[..t.len as usize].into(),
            });
            self.tail.n = 0;
            self.tail.push(seq);
        }
        self.count += 1;
    }
    /// Removes the first sequence (the list holds at least one).
    fn pop_first(&mut self) {
        self.count -= 1;
        let Some(ch) = self.full.front_mut() else {
            let t = &mut self.tail;
            let k = shift_prefix(&mut t.first, &mut t.buf[..t.len as usize], 1);
            t.len -= k as u16;
            t.n -= 1;
            return;
        };
        if ch.n == 1 {
            self.full.pop_front();
            return;
        }
        let mut at = 0;
        let d = varint::get(&ch.deltas, &mut at).unwrap_or(0);
        debug_assert!(
            d > 0,
            "chunk {} holds {} sequences but no delta",
            ch.first,
            ch.n
        );
        ch.first += d;
        ch.deltas = ch.deltas[at..].into();
        ch.n -= 1;
    }

    /// Replaces chunk `i` with `seqs` (a subset of it; empty drops the chunk).
    fn set(&mut self, i: usize, seqs: &[u64]) {
        let before = self.view(i).n;
        self.count = self.count + seqs.len() as u64 - u64::from(before);
        if i >= self.full.len() {
            self.tail.set(seqs);
        } else if seqs.is_empty() {
            self.full.remove(i);
        } else {
            self.full[i] = Chunk {
                first: seqs[0],
                last: seqs[seqs.len() - 1],
                n: seqs.len() as u32,
                deltas: deltas_of(seqs).into(),
            };
        }
    }
}

impl SeqList {
    /// An empty list (a placeholder about to be filled).
    pub fn empty() -> SeqList {
        let mut l = SeqList::new(0);
        l.clear();
        l
    }

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

    pub fn from_sorted(seqs: &[u64]) -> Option<SeqList> {
        let (&first, &last) = (seqs.first()?, seqs.last()?);
        let d = deltas_of(seqs);
        let repr = if d.len() <= INLINE && seqs.len() <= u8::MAX as usize {
            let mut buf = [0; INLINE];
            buf[..d.len()].copy_from_slice(&d);
            Repr::Inline {
                n: seqs.len() as u8,
                len: d.len() as u8,
                buf,
            }
        } else if d.len() <= CHUNK {
            let mut buf = vec![0u8; heap_capacity(d.len())].into_boxed_slice();
            buf[..d.len()].copy_from_slice(&d);
            Repr::Heap {
                n: seqs.len() as u32,
                len: d.len() as u16,
                buf,
            }
        } else {
            Repr::Chunked(Box::new(Chunks::from_sorted(seqs)))
        };
        Some(SeqList { first, last, repr })
    }

    pub fn len(&self) -> u64 {
        match &self.repr {
            Repr::Inline { n, .. } => u64::from(*n),
            Repr::Heap { n, .. } => u64::from(*n),
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
        match &mut self.repr {
            Repr::Inline { n, len, buf } => {
                let d = seq - self.last;
                let (at, k) = (*len as usize, varint::len(d));
                if at + k <= INLINE && *n < u8::MAX {
                    varint::write(&mut buf[at..at + k], d);
                    *len += k as u8;
                    *n += 1;
                } else {
                    self.rebuild_with(seq);
                }
            }
            Repr::Heap { n, len, buf } => {
                let d = seq - self.last;
                let (at, k) = (*len as usize, varint::len(d));
                if at + k > buf.len() && at + k <= CHUNK {
                    let mut bigger = vec![0u8; heap_capacity(at + k)].into_boxed_slice();
                    bigger[..at].copy_from_slice(&buf[..at]);
                    *buf = bigger;
                }
                if at + k <= buf.len() {
                    varint::write(&mut buf[at..at + k], d);
                    *len += k as u16;
                    *n += 1;
                } else {
                    self.rebuild_with(seq);
                }
            }
            Repr::Chunked(c) => c.push(seq),
        }
        self.last = seq;
    }

    /// Re-encodes the list with `seq` added at the end, in the next larger form.
    fn rebuild_with(&mut self, seq: u64) {
        let mut all = self.to_vec();
        all.push(seq);
        if let Some(l) = SeqList::from_sorted(&all) {
            self.repr = l.repr;
        }
    }

    /// Adds sorted `seqs`, all after the last one (a bulk `push`).
    pub fn extend(&mut self, seqs: &[u64]) {
        let mut rest = seqs;
        while let (Some(&s), Repr::Inline { .. } | Repr::Heap { .. }) = (rest.first(), &self.repr) {
            self.push(s);
            rest = &rest[1..];
        }
        if let (Repr::Chunked(c), Some(&last)) = (&mut self.repr, rest.last()) {
            for &s in rest {
                c.push(s);
            }
            self.last = last;
        }
    }

    /// Appends the LEB128 gaps between consecutive sequences (the first excluded): the list's
    /// own encoding, copied chunk by chunk rather than decoded.
    pub fn write_gaps(&self, out: &mut Vec<u8>) {
        if self.len() == 0 {
            return;
        }
        match &self.repr {
            Repr::Inline { len, buf, .. } => out.extend_from_slice(&buf[..*len as usize]),
            Repr::Heap { len, buf, .. } => out.extend_from_slice(&buf[..*len as usize]),
            Repr::Chunked(c) => {
                let mut prev = None;
                for ch in c.views() {
                    if let Some(p) = prev {
                        let gap = ch.first - p;
                        let mut b = [0u8; 10];
                        let k = varint::len(gap);
                        varint::write(&mut b[..k], gap);
                        out.extend_from_slice(&b[..k]);
                    }
                    out.extend_from_slice(ch.deltas);
                    prev = Some(ch.last);
                }
            }
        }
    }

    /// Every sequence, in order.
    pub fn to_vec(&self) -> Vec<u64> {
        self.first_n(usize::MAX)
    }

    /// The first `n` sequences.
    pub fn first_n(&self, n: usize) -> Vec<u64> {
        let mut v = Vec::with_capacity(n.min(self.len() as usize));
        if n == 0 || self.len() == 0 {
            return v;
        }
        match &self.repr {
            r @ (Repr::Inline { .. } | Repr::Heap { .. }) => {
                decode(self.first, r.small_deltas(), &mut v)
            }
            Repr::Chunked(c) => {
                for ch in c.views() {
                    decode(ch.first, ch.deltas, &mut v);
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
            r @ (Repr::Inline { .. } | Repr::Heap { .. }) => {
                Seqs::new(self.first, r.small_deltas()).find(|&s| s >= seq)
            }
            Repr::Chunked(c) => {
                let i = c.partition_point(|ch| ch.last < seq);
                (i < c.len()).then(|| c.view(i).iter().find(|&s| s >= seq))?
            }
        }
    }

    /// Appends to `out` every sequence below `bound`, in order.
    pub fn extend_below(&self, bound: u64, out: &mut Vec<u64>) {
        if bound <= self.first || self.len() == 0 {
            return;
        }
        match &self.repr {
            r @ (Repr::Inline { .. } | Repr::Heap { .. }) => {
                out.extend(Seqs::new(self.first, r.small_deltas()).take_while(|&s| s < bound))
            }
            Repr::Chunked(c) => {
                for ch in c.views().take_while(|ch| ch.first < bound) {
                    out.extend(ch.iter().take_while(|&s| s < bound));
                }
            }
        }
    }

    /// Appends to `out` the first `max` sequences at or after `seq`, in order.
    pub fn extend_ge(&self, seq: u64, max: usize, out: &mut Vec<u64>) {
        if seq > self.last || max == 0 {
            return;
        }
        let before = out.len();
        let room = |out: &Vec<u64>| out.len() - before < max;
        match &self.repr {
            r @ (Repr::Inline { .. } | Repr::Heap { .. }) => out.extend(
                Seqs::new(self.first, r.small_deltas())
                    .filter(|&s| s >= seq)
                    .take(max),
            ),
            Repr::Chunked(c) => {
                let from = c.partition_point(|ch| ch.last < seq);
                for i in from..c.len() {
                    for s in c.view(i).iter().filter(|&s| s >= seq) {
                        if !room(out) {
                            return;
                        }
                        out.push(s);
                    }
                }
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
            r @ (Repr::Inline { .. } | Repr::Heap { .. }) => {
                Seqs::new(self.first, r.small_deltas())
                    .take_while(|&s| s <= seq)
                    .last()
            }
            Repr::Chunked(c) => {
                let i = c.partition_point(|ch| ch.first <= seq).checked_sub(1)?;
                c.view(i).iter().take_while(|&s| s <= seq).last()
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
            r @ (Repr::Inline { .. } | Repr::Heap { .. }) => {
                Seqs::new(self.first, r.small_deltas())
                    .filter(|&s| s >= seq)
                    .count() as u64
            }
            Repr::Chunked(c) => {
                let i = c.partition_point(|ch| ch.last < seq);
                if i >= c.len() {
                    return 0;
                }
                let ch = c.view(i);
                let partial = ch.iter().filter(|&s| s >= seq).count() as u64;
                // Sum whichever side of chunk `i` is shorter.
                let n = |j: usize| u64::from(c.view(j).n);
                if i > c.len() / 2 {
                    partial + (i + 1..c.len()).map(n).sum::<u64>()
                } else {
                    let before: u64 = (0..i).map(n).sum();
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
        if seq == self.first {
            self.pop_first();
            return true;
        }
        match &mut self.repr {
            Repr::Inline { .. } | Repr::Heap { .. } => {
                let mut v = self.to_vec();
                let Ok(i) = v.binary_search(&seq) else {
                    return false;
                };
                v.remove(i);
                self.replace(&v);
                true
            }
            Repr::Chunked(c) => {
                let i = c.partition_point(|ch| ch.last < seq);
                if i >= c.len() {
                    return false;
                }
                let mut v = c.view(i).seqs();
                let Ok(j) = v.binary_search(&seq) else {
                    return false;
                };
                v.remove(j);
                c.set(i, &v);
                self.settle();
                true
            }
        }
    }

    /// Removes the sequences of `seqs` (sorted) that are present, rewriting each touched chunk
    /// once; returns how many went. A list left empty must be dropped by the caller.
    pub fn remove_sorted(&mut self, seqs: &[u64]) -> u64 {
        debug_assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let before = self.len();
        if self.drop_prefix(seqs) {
            return before - self.len();
        }
        match &mut self.repr {
            Repr::Inline { .. } | Repr::Heap { .. } => {
                let mut v = self.to_vec();
                v.retain(|q| seqs.binary_search(q).is_err());
                self.replace(&v);
            }
            Repr::Chunked(c) => {
                let mut rest = seqs;
                while let Some(&q) = rest.first() {
                    let i = c.partition_point(|ch| ch.last < q);
                    if i >= c.len() {
                        break;
                    }
                    let ch = c.view(i);
                    let (mine, later) = rest.split_at(rest.partition_point(|&x| x <= ch.last));
                    rest = later;
                    let mut v = ch.seqs();
                    let n = v.len();
                    v.retain(|x| mine.binary_search(x).is_err());
                    if v.len() != n {
                        c.set(i, &v);
                    }
                }
                self.settle();
            }
        }
        before - self.len()
    }

    /// Removes every sequence below `floor`; returns how many went.
    pub fn remove_below(&mut self, floor: u64) -> u64 {
        if floor <= self.first {
            return 0;
        }
        let before = self.len();
        match &mut self.repr {
            r @ (Repr::Inline { .. } | Repr::Heap { .. }) => {
                let k = Seqs::new(self.first, r.small_deltas())
                    .take_while(|&s| s < floor)
                    .count();
                self.shift_out_small(k);
            }
            Repr::Chunked(c) => {
                while c.len() > 0 && c.view(0).last < floor {
                    c.set(0, &[]);
                }
                if c.len() > 0 {
                    let mut v = c.view(0).seqs();
                    v.retain(|&s| s >= floor);
                    c.set(0, &v);
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
            Repr::Inline { .. } | Repr::Heap { .. } => {
                let mut v = self.to_vec();
                v.retain(|&s| s <= last);
                self.replace(&v);
            }
            Repr::Chunked(c) => {
                while c.len() > 0 && c.view(c.len() - 1).first > last {
                    c.set(c.len() - 1, &[]);
                }
                if c.len() > 0 {
                    let i = c.len() - 1;
                    let mut v = c.view(i).seqs();
                    v.retain(|&s| s <= last);
                    c.set(i, &v);
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

    /// When `seqs` are exactly the first sequences of a list kept in one piece (inline or heap),
    /// removes them by shifting out their deltas at once: expiry and limits remove the oldest
    /// messages, batch after batch, and re-encoding the list each time cost more than the rest
    /// of the removal. False (nothing done) otherwise.
    fn drop_prefix(&mut self, seqs: &[u64]) -> bool {
        let k = seqs.len();
        if k == 0 || matches!(self.repr, Repr::Chunked(_)) {
            return false;
        }
        let is_prefix = Seqs::new(self.first, self.repr.small_deltas())
            .take(k)
            .eq(seqs.iter().copied());
        if !is_prefix {
            return false;
        }
        self.shift_out_small(k);
        true
    }

    /// Removes the first `k` sequences of an inline or heap list by shifting out their deltas
    /// at once (all of them: the list is cleared).
    fn shift_out_small(&mut self, k: usize) {
        if k == 0 {
            return;
        }
        if k as u64 >= self.len() {
            return self.clear();
        }
        let first = &mut self.first;
        match &mut self.repr {
            Repr::Inline { n, len, buf } => {
                *len -= shift_prefix(first, &mut buf[..*len as usize], k) as u8;
                *n -= k as u8;
            }
            Repr::Heap { n, len, buf } => {
                *len -= shift_prefix(first, &mut buf[..*len as usize], k) as u16;
                *n -= k as u32;
            }
            Repr::Chunked(_) => debug_assert!(false, "shift_out_small on a chunked list"),
        }
    }

    /// Removes the first sequence by shifting out its delta instead of re-encoding: removals
    /// mostly take a subject's oldest message.
    fn pop_first(&mut self) {
        match &mut self.repr {
            Repr::Chunked(c) => {
                c.pop_first();
                self.settle();
            }
            _ => self.shift_out_small(1),
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
        if c.len() == 0 {
            return self.clear();
        }
        self.first = c.view(0).first;
        self.last = c.view(c.len() - 1).last;
        if c.count <= 16 {
            let v = self.to_vec();
            self.replace(&v);
        }
    }

    /// Heap bytes held beyond the struct itself.
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Inline { .. } => 0,
            Repr::Heap { buf, .. } => buf.len(),
            Repr::Chunked(c) => {
                std::mem::size_of::<Chunks>()
                    + c.full.capacity() * std::mem::size_of::<Chunk>()
                    + c.full.iter().map(|ch| ch.deltas.len()).sum::<usize>()
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
        RemoveFirst,
        /// The first `k` (a prefix, as expiry removes).
        RemovePrefix(usize),
        Below(usize),
        Above(usize),
        /// Every `step`-th present sequence from index `at`, plus absent neighbours.
        Many(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => prop_oneof![1u64..3, 1u64..300, 1u64..1_000_000_000].prop_map(Op::Push),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => Just(Op::RemoveFirst),
            1 => (1usize..20).prop_map(Op::RemovePrefix),
            1 => any::<usize>().prop_map(Op::Below),
            1 => any::<usize>().prop_map(Op::Above),
            1 => (any::<usize>(), 1usize..40).prop_map(|(a, s)| Op::Many(a, s)),
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
                    Op::RemoveFirst => if let (Some(s), Some(l)) = (pick(0), &mut list) {
                        model.remove(0);
                        prop_assert!(l.remove(s));
                    },
                    Op::RemovePrefix(k) => if let Some(l) = &mut list {
                        let k = k.min(model.len());
                        let gone: Vec<u64> = model.drain(..k).collect();
                        prop_assert_eq!(l.remove_sorted(&gone), k as u64);
                    },
                    Op::Below(i) => if let (Some(s), Some(l)) = (pick(i), &mut list) {
                        let n = model.iter().filter(|&&x| x < s).count() as u64;
                        model.retain(|&x| x >= s);
                        prop_assert_eq!(l.remove_below(s), n);
                    },
                    Op::Many(at, step) => if let Some(l) = &mut list {
                        let at = at % model.len().max(1);
                        let gone: Vec<u64> = model.iter().copied().skip(at).step_by(step).collect();
                        let absent = |x: &u64| !model.contains(x);
                        let mut ask: Vec<u64> = gone.iter().map(|&x| x + 1).filter(absent).collect();
                        ask.extend(&gone);
                        ask.sort_unstable();
                        ask.dedup();
                        model.retain(|x| !gone.contains(x));
                        prop_assert_eq!(l.remove_sorted(&ask), gone.len() as u64);
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
                let mut gaps = Vec::new();
                l.write_gaps(&mut gaps);
                let mut back = vec![model[0]];
                decode(model[0], &gaps, &mut back);
                prop_assert_eq!(&back[1..], &model[..]);
                prop_assert_eq!(l.last(), *model.last().unwrap());
                for probe in [model[0], model[model.len() / 2], model[model.len() / 2] + 1, top, 0] {
                    prop_assert_eq!(l.next_ge(probe), model.iter().copied().find(|&x| x >= probe));
                    prop_assert_eq!(l.prev_le(probe), model.iter().rev().copied().find(|&x| x <= probe));
                    prop_assert_eq!(l.count_ge(probe), model.iter().filter(|&&x| x >= probe).count() as u64);
                    prop_assert_eq!(l.first_n(3), model.iter().copied().take(3).collect::<Vec<_>>());
                    let mut below = vec![7];
                    l.extend_below(probe, &mut below);
                    let want: Vec<u64> = model.iter().copied().filter(|&x| x < probe).collect();
                    prop_assert_eq!(&below[1..], &want[..]);
                    for max in [0, 1, 5, 300] {
                        let mut got = vec![7];
                        l.extend_ge(probe, max, &mut got);
                        let want: Vec<u64> = model.iter().copied().filter(|&x| x >= probe).take(max).collect();
                        prop_assert_eq!(&got[1..], &want[..]);
                    }
                }
            }
        }
    }
}
