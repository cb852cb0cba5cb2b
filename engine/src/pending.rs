//! A consumer's pending set: the messages delivered and not yet acknowledged, and its ack
//! floor, built so that acknowledgements take no lock.
//!
//! [`PendingTable`] is an open-addressing hash set of stream sequences with a fixed capacity
//! (four slots per message of the consumer's max_ack_pending, at least `MIN_SLOTS`, a power
//! of two; see `home` for where a sequence goes and why). One thread at a time changes it
//! structurally (the consumer's fetch path, under the consumer's own lock): it inserts
//! deliveries, flags messages that wait for redelivery, and sweeps tombstones. Any number of
//! threads acknowledge concurrently with one compare-and-swap on the message's slot (entry to
//! tombstone), so an acknowledgement succeeds exactly once however many threads race on it.
//!
//! Slots hold `EMPTY`, `TOMB`, or `seq << 2 | flags`. A lookup stops at the first `EMPTY`, so
//! the invariant is: between a key's home slot and the key, no slot is `EMPTY`. Acks only turn
//! keys into tombstones (which keeps it); the sweep turns a tombstone back into `EMPTY` only when
//! no key's probe run passes through it, so lookups stay short.
//!
//! [`AckFloor`] keeps the deliveries in order and publishes the floor (every sequence at or
//! below it that was delivered has been acknowledged) through an atomic that readers load
//! without a lock. Only the fetch path advances it, past messages the table no longer holds.

use std::collections::VecDeque;

use crossbeam::utils::CachePadded;

use crate::sync::{AtomicU64, Ordering};

const EMPTY: u64 = 0;
const TOMB: u64 = 1;
/// Flag bit of an entry: the message waits for redelivery (nak'd or its ack wait ran out).
const WAITING: u64 = 1;
const FLAGS: u64 = 3;
/// Counters of acknowledgements, each on its own cache line. Each thread counts into its own
/// (threads are numbered as they first acknowledge), so up to this many threads acking one
/// consumer never write the same line.
const ACK_SHARDS: usize = 16;

/// The calling thread's acknowledgement counter.
#[cfg(not(loom))]
fn ack_shard() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % ACK_SHARDS;
    }
    SHARD.with(|s| *s)
}

/// Under loom every thread shares one counter: the models then cover the contended case.
#[cfg(loom)]
fn ack_shard() -> usize {
    0
}

/// The delivered, unacknowledged messages of one consumer.
pub(crate) struct PendingTable {
    slots: Slots,
    mask: usize,
    /// Entries ever inserted (the fetch path alone writes it).
    inserted: AtomicU64,
    /// Entries ever acknowledged, in shards; present = inserted - acked.
    acked: [CachePadded<AtomicU64>; ACK_SHARDS],
    /// Entries with the `WAITING` flag.
    waiting: AtomicU64,
    /// Slots not `EMPTY` (entries and tombstones); changed by the fetch path alone, which
    /// sweeps when it reaches three quarters, so probe runs stay short.
    used: AtomicU64,
}

/// The slot array, starting on a 128-byte boundary so that each run of sixteen slots (see
/// `home`) is exactly one prefetched pair of cache lines: runs acked by different threads then
/// never share a line.
struct Slots {
    buf: Box<[AtomicU64]>,
    /// Index in `buf` of slot 0.
    base: usize,
    len: usize,
}

/// Slots per 128 bytes.
const RUN: usize = 1 << RUN_BITS;
const RUN_BITS: u32 = 4;
/// Fewest slots a table has: sixty-four per lane, so no lane fills before the table does.
#[cfg(not(loom))]
const MIN_SLOTS: usize = 1024;
/// Loom models explore every access: two slots per lane keep them small.
#[cfg(loom)]
const MIN_SLOTS: usize = 32;

impl Slots {
    fn new(len: usize) -> Slots {
        let buf = empty_slots(len + RUN);
        let misalign = (buf.as_ptr() as usize % (RUN * 8)) / 8;
        Slots {
            buf,
            base: (RUN - misalign) % RUN,
            len,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    #[cfg(all(test, not(loom)))]
    fn iter(&self) -> impl Iterator<Item = &AtomicU64> {
        self.buf[self.base..self.base + self.len].iter()
    }
}

impl std::ops::Index<usize> for Slots {
    type Output = AtomicU64;
    fn index(&self, i: usize) -> &AtomicU64 {
        &self.buf[self.base + i]
    }
}

/// `n` empty slots. Allocated zeroed and never written, so a table sized for a large
/// max_ack_pending costs its memory only as deliveries touch it (the allocator maps fresh
/// zero pages), and creating the consumer stays O(1).
#[cfg(not(loom))]
fn empty_slots(n: usize) -> Box<[AtomicU64]> {
    const _: () = assert!(std::mem::align_of::<u64>() == std::mem::align_of::<AtomicU64>());
    const _: () = assert!(EMPTY == 0);
    let zeroed: Box<[u64]> = vec![0u64; n].into_boxed_slice();
    // SAFETY: AtomicU64 has the size and bit validity of u64 (std documents it) and, as
    // asserted above, its alignment here, so the allocation's layout is unchanged.
    unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [AtomicU64]) }
}

#[cfg(loom)]
fn empty_slots(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(EMPTY)).collect()
}

fn entry(seq: u64) -> u64 {
    debug_assert!((1..=crate::record::MAX_SEQ).contains(&seq));
    seq << 2
}

/// What a successful acknowledgement removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Acked {
    /// The message was waiting for redelivery.
    pub waiting: bool,
}

impl PendingTable {
    /// A table for at most `max_pending` messages at once.
    pub fn new(max_pending: usize) -> Self {
        let cap = (max_pending.saturating_mul(4))
            .max(MIN_SLOTS)
            .next_power_of_two();
        PendingTable {
            slots: Slots::new(cap),
            mask: cap - 1,
            inserted: AtomicU64::new(0),
            acked: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
            waiting: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }

    /// Most messages the table holds at once.
    pub fn capacity(&self) -> usize {
        self.slots.len() / 4
    }

    fn home(&self, seq: u64) -> usize {
        // Sixteen neighbouring sequences (a run) share 128 bytes of slots, two cache lines
        // that x86 prefetches as a pair: messages are delivered and acknowledged roughly in
        // order, so a run of acks misses the cache once, not once per ack (the table is sized
        // for max_ack_pending and rarely fits the cache), and threads acking different runs
        // write different lines. Within its block a run is rotated by its hash, so sequences
        // one per run (a filter matching every sixteenth message) spread over all lanes.
        let h = (seq >> RUN_BITS).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let block = (h >> 32) as usize * RUN;
        let lane = (seq.wrapping_add(h >> 8) & (RUN as u64 - 1)) as usize;
        (block | lane) & self.mask
    }

    /// The next slot of `i`'s probe sequence: the same lane of the next block, so a run
    /// displaced by another moves on whole instead of walking through the other run's slots
    /// (linear probing in each of the sixteen lanes).
    fn step(&self, i: usize) -> usize {
        (i + RUN) & self.mask
    }

    /// Slot index and current value of `seq`'s entry, if present.
    fn find(&self, seq: u64) -> Option<(usize, u64)> {
        let mut i = self.home(seq);
        for _ in 0..self.slots.len() / RUN {
            let v = self.slots[i].load(Ordering::Acquire);
            if v == EMPTY {
                return None;
            }
            if v != TOMB && v >> 2 == seq {
                return Some((i, v));
            }
            i = self.step(i);
        }
        None
    }

    /// Adds a delivered message (fetch path only; `seq` not present). False when the table is
    /// at capacity: the caller enforces max_ack_pending before that.
    pub fn insert(&self, seq: u64) -> bool {
        if self.len() >= self.capacity() as u64 {
            return false;
        }
        debug_assert!(self.find(seq).is_none(), "insert {seq} twice");
        if self.used.load(Ordering::Relaxed) * 4 >= self.slots.len() as u64 * 3 {
            self.sweep();
        }
        let mut i = self.home(seq);
        for _ in 0..self.slots.len() / RUN {
            let v = self.slots[i].load(Ordering::Acquire);
            if (v == EMPTY || v == TOMB)
                && self.slots[i]
                    .compare_exchange(v, entry(seq), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                self.inserted.fetch_add(1, Ordering::AcqRel);
                if v == EMPTY {
                    self.used.fetch_add(1, Ordering::Relaxed);
                }
                return true;
            }
            i = self.step(i);
        }
        false
    }

    /// Acknowledges `seq` from any thread: `Some` for the one call that removed it, `None` if it
    /// was not pending (never delivered, or acknowledged already).
    pub fn ack(&self, seq: u64) -> Option<Acked> {
        let (i, mut v) = self.find(seq)?;
        loop {
            match self.slots[i].compare_exchange(v, TOMB, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if v & WAITING != 0 {
                        self.waiting.fetch_sub(1, Ordering::AcqRel);
                    }
                    self.acked[ack_shard()].fetch_add(1, Ordering::AcqRel);
                    return Some(Acked {
                        waiting: v & WAITING != 0,
                    });
                }
                // Its flags changed (the fetch path marked it): try again with them.
                Err(now) if now != TOMB && now >> 2 == seq => v = now,
                // Another thread acknowledged it first.
                Err(_) => return None,
            }
        }
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.find(seq).is_some()
    }

    /// Whether `seq` is pending and waiting for redelivery.
    pub fn is_waiting(&self, seq: u64) -> bool {
        self.find(seq).is_some_and(|(_, v)| v & WAITING != 0)
    }

    /// Marks `seq` as waiting for redelivery, or not (fetch path only). False when it is no
    /// longer pending (acknowledged meanwhile).
    pub fn set_waiting(&self, seq: u64, on: bool) -> bool {
        let Some((i, mut v)) = self.find(seq) else {
            return false;
        };
        loop {
            if (v & WAITING != 0) == on {
                return true;
            }
            // Counted before the flag is visible, so an acknowledgement that sees the flag
            // never takes the count below zero.
            if on {
                self.waiting.fetch_add(1, Ordering::AcqRel);
            }
            let want = (v & !FLAGS) | if on { WAITING } else { 0 };
            match self.slots[i].compare_exchange(v, want, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if !on {
                        self.waiting.fetch_sub(1, Ordering::AcqRel);
                    }
                    return true;
                }
                Err(now) => {
                    if on {
                        self.waiting.fetch_sub(1, Ordering::AcqRel);
                    }
                    if now == TOMB || now >> 2 != seq {
                        return false;
                    }
                    v = now;
                }
            }
        }
    }

    /// Messages pending (waiting ones included).
    pub fn len(&self) -> u64 {
        // Acks read before inserts: every ack read has its insert counted, so no underflow.
        let acked: u64 = self.acked.iter().map(|a| a.load(Ordering::Acquire)).sum();
        self.inserted.load(Ordering::Acquire).saturating_sub(acked)
    }

    /// Messages waiting for redelivery.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Acquire)
    }

    /// Turns every tombstone that no key's probe run passes through back into an empty slot
    /// (fetch path only; keys neither appear nor move meanwhile, acks only remove them).
    pub fn sweep(&self) {
        for j in 0..self.slots.len() {
            if self.slots[j].load(Ordering::Acquire) == TOMB
                && self.unneeded(j)
                && self.slots[j]
                    .compare_exchange(TOMB, EMPTY, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                self.used.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// No key after slot `j` in its lane (up to the next empty slot) has its home at or
    /// before `j`. Along a lane, distances modulo the table size keep their order.
    fn unneeded(&self, j: usize) -> bool {
        let dist = |a: usize, b: usize| b.wrapping_sub(a) & self.mask;
        let mut p = self.step(j);
        while p != j {
            let v = self.slots[p].load(Ordering::Acquire);
            if v == EMPTY {
                return true;
            }
            if v != TOMB && dist(self.home(v >> 2), j) < dist(self.home(v >> 2), p) {
                return false;
            }
            p = self.step(p);
        }
        true
    }

    /// Tombstones present (tests: the sweep keeps lookups short).
    #[cfg(all(test, not(loom)))]
    fn tombs(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.load(Ordering::Acquire) == TOMB)
            .count()
    }
}

/// The deliveries in order and the published ack floor.
pub(crate) struct AckFloor {
    /// First deliveries not yet known to be acknowledged, in sequence order (fetch path only).
    order: VecDeque<u64>,
    floor: AtomicU64,
}

impl AckFloor {
    /// A floor starting at `floor` (everything at or below it counts as acknowledged).
    pub fn new(floor: u64) -> Self {
        AckFloor {
            order: VecDeque::new(),
            floor: AtomicU64::new(floor),
        }
    }

    /// Records a first delivery (sequences grow).
    pub fn delivered(&mut self, seq: u64) {
        debug_assert!(self.order.back().is_none_or(|&b| b < seq));
        self.order.push_back(seq);
    }

    /// Moves the floor past every delivered message no longer `unacked`, up to the first one
    /// that is; with none left, to `delivered_up_to`. Returns the floor.
    pub fn advance(&mut self, unacked: impl Fn(u64) -> bool, delivered_up_to: u64) -> u64 {
        while let Some(&s) = self.order.front() {
            if unacked(s) {
                let f = s - 1;
                self.floor.fetch_max(f, Ordering::AcqRel);
                return self.floor();
            }
            self.order.pop_front();
        }
        self.floor.fetch_max(delivered_up_to, Ordering::AcqRel);
        self.floor()
    }

    /// Forgets a delivery that no longer needs an acknowledgement (its message was removed).
    pub fn forget(&mut self, seq: u64) {
        if let Ok(i) = self.order.binary_search(&seq) {
            self.order.remove(i);
        }
    }

    /// Forgets every delivery above `last` and lowers the floor to at most `last` (the stream
    /// was truncated: those sequences will be handed out again).
    pub fn truncate(&mut self, last: u64) {
        while self.order.back().is_some_and(|&b| b > last) {
            self.order.pop_back();
        }
        self.floor.fetch_min(last, Ordering::AcqRel);
    }

    /// The published floor: a lock-free read.
    pub fn floor(&self) -> u64 {
        self.floor.load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[test]
    fn ack_succeeds_exactly_once_across_threads() {
        let t = Arc::new(PendingTable::new(10_000));
        for seq in 1..=10_000u64 {
            assert!(t.insert(seq));
        }
        for seq in (1..=10_000u64).step_by(3) {
            assert!(t.set_waiting(seq, true));
        }
        let wins: Vec<u64> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|k| {
                    let t = t.clone();
                    sc.spawn(move || {
                        // Every thread acknowledges everything, in a different order.
                        let mut n = 0u64;
                        for i in 0..10_000u64 {
                            let seq = (i * (2 * k + 1) * 7919) % 10_000 + 1;
                            n += u64::from(t.ack(seq).is_some());
                        }
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().sum::<u64>(), 10_000);
        assert_eq!((t.len(), t.waiting()), (0, 0));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Deliver,
        Ack(usize),
        Wait(usize, bool),
        Sweep,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Deliver),
            4 => any::<usize>().prop_map(Op::Ack),
            2 => (any::<usize>(), any::<bool>()).prop_map(|(i, b)| Op::Wait(i, b)),
            1 => Just(Op::Sweep),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Single-threaded against a map: membership, flags, counters and the floor.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec(op(), 1..600), max in 1usize..40) {
            let t = PendingTable::new(max);
            let mut f = AckFloor::new(0);
            let mut model: BTreeMap<u64, bool> = BTreeMap::new();
            let mut next = 1u64;
            for op in ops {
                // Delivered sequences, and the next one (never delivered).
                let pick = |i: usize| 1 + (i as u64 % next);
                match op {
                    Op::Deliver => {
                        let ok = t.insert(next);
                        prop_assert_eq!(ok, model.len() < t.capacity());
                        if ok {
                            model.insert(next, false);
                            f.delivered(next);
                            next += 1;
                        }
                    }
                    Op::Ack(i) => {
                        let s = pick(i);
                        let got = t.ack(s).map(|a| a.waiting);
                        prop_assert_eq!(got, model.remove(&s));
                    }
                    Op::Wait(i, on) => {
                        let s = pick(i);
                        prop_assert_eq!(t.set_waiting(s, on), model.contains_key(&s));
                        if let Some(w) = model.get_mut(&s) {
                            *w = on;
                        }
                    }
                    Op::Sweep => t.sweep(),
                }
                prop_assert_eq!(t.len(), model.len() as u64);
                prop_assert_eq!(t.waiting(), model.values().filter(|&&w| w).count() as u64);
                let want_floor = model.keys().next().map_or(next - 1, |&k| k - 1);
                prop_assert_eq!(f.advance(|s| t.contains(s), next - 1), want_floor);
                for s in 1..next {
                    prop_assert_eq!(t.contains(s), model.contains_key(&s));
                }
            }
            // With everything acknowledged, a sweep leaves no tombstone.
            for &s in model.keys() {
                prop_assert!(t.ack(s).is_some());
            }
            t.sweep();
            prop_assert_eq!(t.tombs(), 0);
        }
    }

    #[test]
    fn sweep_clears_tombstones_before_empty_slots() {
        let t = PendingTable::new(8);
        for seq in 1..=8u64 {
            t.insert(seq);
        }
        for seq in 1..=8u64 {
            t.ack(seq);
        }
        assert!(t.tombs() > 0);
        t.sweep();
        assert_eq!(t.tombs(), 0);
        assert!(!t.contains(3));
    }
}

/// Loom models: `RUSTFLAGS="--cfg loom" cargo test -p tidelog --release --lib pending`.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two threads acknowledge the same messages: each succeeds exactly once and the counters
    /// end at zero.
    #[test]
    fn concurrent_acks() {
        loom::model(|| {
            let t = Arc::new(PendingTable::new(2));
            t.insert(1);
            t.insert(2);
            t.set_waiting(2, true);
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let t = t.clone();
                    thread::spawn(move || {
                        u64::from(t.ack(1).is_some()) + u64::from(t.ack(2).is_some())
                    })
                })
                .collect();
            let wins: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(wins, 2);
            assert_eq!((t.len(), t.waiting()), (0, 0));
        });
    }

    /// The fetch path delivers, flags and sweeps while another thread acknowledges; the floor
    /// never passes an unacknowledged message and the counters stay exact.
    #[test]
    fn fetch_racing_with_acks_and_floor_advance() {
        loom::model(|| {
            let t = Arc::new(PendingTable::new(2));
            let mut f = AckFloor::new(0);
            t.insert(1);
            f.delivered(1);
            let acker = {
                let t = t.clone();
                thread::spawn(move || t.ack(1).is_some())
            };
            // The fetch path meanwhile: flag 1 for redelivery, deliver 2, sweep, advance.
            let flagged = t.set_waiting(1, true);
            t.insert(2);
            f.delivered(2);
            t.sweep();
            let floor = f.advance(|s| t.contains(s), 2);
            let acked = acker.join().unwrap();
            assert!(acked);
            assert!(floor <= 1, "floor {floor} passed unacknowledged 2");
            if t.contains(1) {
                assert_eq!(floor, 0);
            }
            assert_eq!(f.advance(|s| t.contains(s), 2), 1);
            assert_eq!(t.len(), 1);
            assert_eq!(t.waiting(), 0, "flagged {flagged}");
        });
    }
}
