//! Per-message TTL: the [`Ttl`] type and the timers that say which messages are due.
//!
//! Messages with a TTL are grouped in *buckets*, one per second in which they fall due (a
//! compressed [`SeqList`] each, so a pending TTL costs one to a few bytes plus its bucket's
//! share). Buckets hang in a hierarchical timer wheel of five levels of 256 slots over whole
//! seconds: a bucket sits at the level of the highest base-256 digit in which its second differs
//! from the wheel's clock, in the slot named by that digit. Where a bucket sits is therefore a
//! function of its second and the clock alone, so inserting and cancelling a message are one
//! slot lookup and one bucket lookup (O(1)); advancing the clock moves whole buckets down a
//! level, never single messages, and a bucket reaches the ready list exactly in the second it
//! is due, whatever its horizon (years at the top level). "Never" messages are kept in a
//! separate list: they are exempt from max_age, which must skip them.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

use crate::seqlist::SeqList;

/// Longest TTL: 100 years of 365 days.
pub const MAX_TTL_SECS: u64 = 100 * 365 * 86_400;
/// The record's TTL field for "never".
pub(crate) const TTL_NEVER: u64 = u64::MAX;
/// Seconds the wheel can express (five base-256 digits); far beyond any due time a valid
/// timestamp and TTL produce (about 2^34).
const MAX_DUE: u64 = (1 << 40) - 1;
const LEVELS: usize = 5;
const SLOTS: usize = 256;

/// How long a message lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Ttl {
    /// Removed this many whole seconds after it was stored (1 ..= [`MAX_TTL_SECS`]), or
    /// earlier by max_age.
    Secs(u64),
    /// Never removed by age: exempt from max_age too (other limits still apply).
    Never,
}

impl Ttl {
    /// Whether the TTL is one the store accepts.
    pub fn is_valid(self) -> bool {
        match self {
            Ttl::Secs(s) => (1..=MAX_TTL_SECS).contains(&s),
            Ttl::Never => true,
        }
    }

    /// The record's TTL field.
    pub(crate) fn raw(self) -> u64 {
        match self {
            Ttl::Secs(s) => s,
            Ttl::Never => TTL_NEVER,
        }
    }

    /// The TTL a record field holds; `None` for a value no valid append writes.
    pub(crate) fn from_raw(v: u64) -> Option<Ttl> {
        match v {
            TTL_NEVER => Some(Ttl::Never),
            s => Some(Ttl::Secs(s)).filter(|t| t.is_valid()),
        }
    }
}

/// The second in which a message stored at `ts` (ns) with a TTL of `secs` falls due: the first
/// whole second at or after its exact expiry, so it is never removed early.
pub(crate) fn due_second(ts: i64, secs: u64) -> u64 {
    // In whole seconds: 128-bit division would cost more than the rest of the insert.
    let whole = ts.div_euclid(1_000_000_000);
    let part = i64::from(ts.rem_euclid(1_000_000_000) > 0);
    let secs = i64::try_from(secs.min(MAX_DUE)).unwrap_or(i64::MAX);
    let due = whole.saturating_add(secs).saturating_add(part);
    u64::try_from(due).unwrap_or(0).min(MAX_DUE)
}

/// The whole second of `now_ns` (what a bucket's second is compared with).
pub(crate) fn second_of(now_ns: i64) -> u64 {
    (now_ns.max(0) / 1_000_000_000) as u64
}

/// A multiplicative hash for bucket seconds (keys are already well spread in their low bits).
#[derive(Default)]
pub(crate) struct SecondHasher(u64);

impl Hasher for SecondHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Buckets = HashMap<u64, SeqList, BuildHasherDefault<SecondHasher>>;

struct Level {
    slots: Box<[Buckets]>,
    occupied: [u64; SLOTS / 64],
}

impl Level {
    fn new() -> Self {
        Level {
            slots: (0..SLOTS).map(|_| Buckets::default()).collect(),
            occupied: [0; SLOTS / 64],
        }
    }
    fn mark(&mut self, slot: usize) {
        self.occupied[slot / 64] |= 1 << (slot % 64);
    }
    fn settle(&mut self, slot: usize) {
        if self.slots[slot].is_empty() {
            self.occupied[slot / 64] &= !(1 << (slot % 64));
        }
    }
    fn is_occupied(&self, slot: usize) -> bool {
        self.occupied[slot / 64] & (1 << (slot % 64)) != 0
    }
}

/// The wheel of buckets.
struct Wheel {
    /// The wheel's clock, in seconds. Every bucket in a slot is due after it; buckets due at
    /// or before it are in `ready`.
    now: u64,
    levels: Vec<Level>,
    ready: BTreeMap<u64, SeqList>,
    /// The newest bucket, kept outside the slots: appends with one TTL fill one bucket per
    /// second, so most inserts find it here without a hash lookup. Logically it sits where
    /// `place` says; it is put there before the clock moves.
    hot: Option<(u64, SeqList)>,
}

/// Where a bucket due at `due` sits when the clock reads `now`: `None` for the ready list.
fn place(now: u64, due: u64) -> Option<(usize, usize)> {
    if due <= now {
        return None;
    }
    let level = ((63 - (due ^ now).leading_zeros()) / 8) as usize;
    debug_assert!(level < LEVELS, "due {due} beyond the wheel");
    let level = level.min(LEVELS - 1);
    Some((level, ((due >> (8 * level)) & 0xff) as usize))
}

/// Adds `seq` to a list; appends (the usual case) are a push, anything else a rebuild.
fn add_to(list: &mut SeqList, seq: u64) {
    if seq > list.last() {
        list.push(seq);
        return;
    }
    let mut v = list.to_vec();
    if let Err(i) = v.binary_search(&seq) {
        v.insert(i, seq);
        if let Some(l) = SeqList::from_sorted(&v) {
            *list = l;
        }
    }
}

impl Wheel {
    fn new(now: u64) -> Self {
        Wheel {
            now: now.min(MAX_DUE),
            levels: (0..LEVELS).map(|_| Level::new()).collect(),
            ready: BTreeMap::new(),
            hot: None,
        }
    }

    fn flush_hot(&mut self) {
        if let Some((due, list)) = self.hot.take() {
            self.put(due, list);
        }
    }

    fn bucket_mut(&mut self, due: u64) -> Option<&mut SeqList> {
        if let Some((d, list)) = &mut self.hot {
            if *d == due {
                return Some(list);
            }
        }
        match place(self.now, due) {
            None => self.ready.get_mut(&due),
            Some((l, s)) => self.levels[l].slots[s].get_mut(&due),
        }
    }

    fn insert(&mut self, seq: u64, due: u64) {
        match self.bucket_mut(due) {
            Some(list) => add_to(list, seq),
            None => {
                // A new second: it becomes the hot bucket.
                self.flush_hot();
                self.hot = Some((due, SeqList::new(seq)));
            }
        }
    }

    /// Puts a whole bucket where it belongs now (it is not in the wheel).
    fn put(&mut self, due: u64, list: SeqList) {
        let have = match place(self.now, due) {
            None => self.ready.entry(due).or_insert_with(SeqList::empty),
            Some((l, s)) => {
                self.levels[l].mark(s);
                self.levels[l].slots[s]
                    .entry(due)
                    .or_insert_with(SeqList::empty)
            }
        };
        merge(have, list);
    }

    fn cancel(&mut self, seq: u64, due: u64) -> bool {
        let Some(list) = self.bucket_mut(due) else {
            return false;
        };
        if !list.remove(seq) {
            return false;
        }
        if list.len() == 0 {
            self.drop_bucket(due);
        }
        true
    }

    fn drop_bucket(&mut self, due: u64) {
        if self.hot.as_ref().is_some_and(|(d, _)| *d == due) {
            self.hot = None;
            return;
        }
        match place(self.now, due) {
            None => {
                self.ready.remove(&due);
            }
            Some((l, s)) => {
                self.levels[l].slots[s].remove(&due);
                self.levels[l].settle(s);
            }
        }
    }

    /// Moves the clock to `to`: buckets whose slot the clock passed or entered are taken out
    /// and put back where they now belong (a lower level, or the ready list).
    fn advance(&mut self, to: u64) {
        self.flush_hot();
        let to = to.min(MAX_DUE);
        if to <= self.now {
            return;
        }
        let old = self.now;
        let mut taken = Vec::new();
        for (l, level) in self.levels.iter_mut().enumerate() {
            let sh = 8 * l as u32;
            let (hi_old, hi_new) = (old >> (sh + 8), to >> (sh + 8));
            let (d_old, d_new) = (((old >> sh) & 0xff) as usize, ((to >> sh) & 0xff) as usize);
            let range = if hi_old != hi_new {
                0..SLOTS
            } else if d_new > d_old {
                d_old + 1..d_new + 1
            } else {
                continue;
            };
            for s in range {
                if level.is_occupied(s) {
                    taken.extend(level.slots[s].drain());
                    level.settle(s);
                }
            }
        }
        self.now = to;
        for (due, list) in taken {
            self.put(due, list);
        }
    }

    fn buckets(&self) -> impl Iterator<Item = (u64, &SeqList)> {
        let hot = self.hot.iter().map(|(d, l)| (*d, l));
        hot.chain(self.ready.iter().map(|(&d, l)| (d, l))).chain(
            self.levels
                .iter()
                .flat_map(|lv| lv.slots.iter())
                .flat_map(|b| b.iter().map(|(&d, l)| (d, l))),
        )
    }

    /// Applies `f` to every bucket, dropping the ones it empties; returns what `f` summed.
    fn retain_each(&mut self, mut f: impl FnMut(&mut SeqList) -> u64) -> u64 {
        self.flush_hot();
        let mut n = 0;
        self.ready.retain(|_, l| {
            n += f(l);
            l.len() > 0
        });
        for level in &mut self.levels {
            for s in 0..SLOTS {
                if level.is_occupied(s) {
                    level.slots[s].retain(|_, l| {
                        n += f(l);
                        l.len() > 0
                    });
                    level.settle(s);
                }
            }
        }
        n
    }
}

/// Adds `other` to `have` (a bucket met twice only after a clock step or a checkpoint
/// round trip; normally `have` is empty and simply replaced).
fn merge(have: &mut SeqList, other: SeqList) {
    if have.len() == 0 {
        *have = other;
        return;
    }
    let mut v = have.to_vec();
    v.extend(other.to_vec());
    v.sort_unstable();
    v.dedup();
    if let Some(l) = SeqList::from_sorted(&v) {
        *have = l;
    }
}

/// The timers as a checkpoint stores them.
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerParts {
    /// (due second, sequences), any order of seconds.
    pub buckets: Vec<(u64, SeqList)>,
    pub never: Option<SeqList>,
}

impl TimerParts {
    /// Buckets sorted by second, as plain lists (comparisons and encoding).
    pub fn sorted(&self) -> Vec<(u64, Vec<u64>)> {
        let mut v: Vec<(u64, Vec<u64>)> =
            self.buckets.iter().map(|(d, l)| (*d, l.to_vec())).collect();
        v.sort_unstable_by_key(|&(d, _)| d);
        v
    }
    pub fn never(&self) -> Vec<u64> {
        self.never.as_ref().map(|l| l.to_vec()).unwrap_or_default()
    }
    /// Builds parts from plain lists (sorted, distinct sequences each); `None` if one is not.
    pub fn from_lists(buckets: Vec<(u64, Vec<u64>)>, never: Vec<u64>) -> Option<TimerParts> {
        let sorted = |v: &[u64]| v.windows(2).all(|w| w[0] < w[1]);
        if !sorted(&never) || buckets.iter().any(|(_, v)| v.is_empty() || !sorted(v)) {
            return None;
        }
        let mut seen = std::collections::HashSet::new();
        if !buckets.iter().all(|(d, _)| seen.insert(*d))
            || buckets.iter().any(|(d, _)| *d > MAX_DUE)
        {
            return None;
        }
        Some(TimerParts {
            buckets: buckets
                .into_iter()
                .filter_map(|(d, v)| Some((d, SeqList::from_sorted(&v)?)))
                .collect(),
            never: SeqList::from_sorted(&never),
        })
    }
}

impl PartialEq for TimerParts {
    fn eq(&self, o: &Self) -> bool {
        self.sorted() == o.sorted() && self.never() == o.never()
    }
}
impl Eq for TimerParts {}

/// The timers of one stream: the wheel (created with the first TTL) and the "never" list.
#[derive(Default)]
pub(crate) struct Timers {
    wheel: Option<Box<Wheel>>,
    never: Option<SeqList>,
    /// Messages in the wheel.
    pending: u64,
}

impl Timers {
    /// Messages with a TTL (pending or "never").
    pub fn len(&self) -> u64 {
        self.pending + self.never.as_ref().map_or(0, |l| l.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Messages in the wheel.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The wheel, created on first use with its clock at zero: a clock never runs ahead of
    /// real time (a bucket in `ready` is due), and the first `advance` catches it up.
    fn wheel_mut(&mut self) -> &mut Wheel {
        self.wheel.get_or_insert_with(|| Box::new(Wheel::new(0)))
    }

    /// Adds message `seq`, stored at `ts`, whose record's TTL field is `raw`.
    pub fn insert(&mut self, seq: u64, ts: i64, raw: u64) {
        match Ttl::from_raw(raw) {
            Some(Ttl::Never) => match &mut self.never {
                Some(l) => add_to(l, seq),
                None => self.never = Some(SeqList::new(seq)),
            },
            Some(Ttl::Secs(s)) => {
                let due = due_second(ts, s);
                self.wheel_mut().insert(seq, due);
                self.pending += 1;
            }
            None => {}
        }
    }

    /// Takes message `seq` (stored at `ts`, TTL field `raw`) out. False if it was not there.
    pub fn cancel(&mut self, seq: u64, ts: i64, raw: u64) -> bool {
        match Ttl::from_raw(raw) {
            Some(Ttl::Never) => {
                let Some(l) = &mut self.never else {
                    return false;
                };
                let found = l.remove(seq);
                if l.len() == 0 {
                    self.never = None;
                }
                found
            }
            Some(Ttl::Secs(s)) => {
                let found = self
                    .wheel
                    .as_mut()
                    .is_some_and(|w| w.cancel(seq, due_second(ts, s)));
                if found {
                    self.pending -= 1;
                }
                found
            }
            None => false,
        }
    }

    /// Takes `seq` out wherever it is (its record no longer says): O(buckets), for damage.
    pub fn cancel_any(&mut self, seq: u64) -> bool {
        self.remove_range(seq, seq) > 0
    }

    /// Takes every message in `a..=b` out; returns how many went. O(buckets + removed).
    pub fn remove_range(&mut self, a: u64, b: u64) -> u64 {
        if a > b || self.is_empty() {
            return 0;
        }
        let cut = |l: &mut SeqList| -> u64 {
            if b < l.first() || a > l.last() {
                return 0;
            }
            let mut v = l.to_vec();
            let before = v.len();
            v.retain(|&s| s < a || s > b);
            let n = (before - v.len()) as u64;
            if n > 0 {
                match SeqList::from_sorted(&v) {
                    Some(new) => *l = new,
                    None => {
                        l.remove_below(u64::MAX);
                    }
                }
            }
            n
        };
        let mut n = 0;
        if let Some(w) = &mut self.wheel {
            let k = w.retain_each(cut);
            self.pending -= k;
            n += k;
        }
        if let Some(l) = &mut self.never {
            n += cut(l);
            if l.len() == 0 {
                self.never = None;
            }
        }
        n
    }

    /// Moves the wheel's clock to second `now`.
    pub fn advance(&mut self, now: u64) {
        if let Some(w) = &mut self.wheel {
            w.advance(now);
        }
    }

    /// True when messages are due by the wheel's clock.
    /// True when messages are due at second `now` (the wheel's clock may be ahead of `now`
    /// after the wall clock stepped back: those buckets wait).
    pub fn any_due(&self, now: u64) -> bool {
        let Some(w) = &self.wheel else { return false };
        w.ready.keys().next().is_some_and(|&d| d <= now)
    }

    /// Whether a pass at second `now` may find messages due, decided without changing
    /// anything: the clock moved into a new second, or a bucket is ready.
    pub fn maybe_due(&self, now: u64) -> bool {
        let Some(w) = &self.wheel else { return false };
        let hot_due = w.hot.as_ref().is_some_and(|&(d, _)| d <= now);
        now.min(MAX_DUE) > w.now || hot_due || self.any_due(now)
    }

    /// Takes up to `max` messages due by the wheel's clock out of the timers, earliest second
    /// first, in sequence order within a second: the caller removes them from the stream (their
    /// removal then finds no timer to cancel).
    pub fn take_due(&mut self, max: usize, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let Some(w) = &mut self.wheel else { return out };
        while out.len() < max {
            let Some(mut entry) = w.ready.first_entry().filter(|e| *e.key() <= now) else {
                break;
            };
            let list = entry.get_mut();
            let part = list.first_n(max - out.len());
            match part.last() {
                Some(&l) if l < list.last() => {
                    list.remove_below(l + 1);
                }
                _ => {
                    entry.remove();
                }
            }
            out.extend(part);
        }
        self.pending -= out.len() as u64;
        out
    }

    /// The first "never" message at or after `seq`.
    pub fn never_from(&self, seq: u64) -> Option<u64> {
        self.never.as_ref()?.next_ge(seq)
    }

    /// Every (due second, bucket) of the wheel, and the "never" list (checkpoints, checks).
    pub fn buckets(&self) -> Vec<(u64, Vec<u64>)> {
        let mut v: Vec<(u64, Vec<u64>)> = self
            .wheel
            .iter()
            .flat_map(|w| w.buckets())
            .map(|(d, l)| (d, l.to_vec()))
            .collect();
        v.sort_unstable_by_key(|&(d, _)| d);
        v
    }
    pub fn never(&self) -> Vec<u64> {
        self.never.as_ref().map(|l| l.to_vec()).unwrap_or_default()
    }

    /// A copy of the buckets and the "never" list for a checkpoint (compressed lists are
    /// copied, not decoded, so the state lock is held briefly).
    pub fn parts(&self) -> TimerParts {
        TimerParts {
            buckets: self
                .wheel
                .iter()
                .flat_map(|w| w.buckets())
                .map(|(d, l)| (d, l.clone()))
                .collect(),
            never: self.never.clone(),
        }
    }

    /// Rebuilds timers from a checkpoint's parts.
    pub fn from_parts(p: TimerParts) -> Timers {
        let mut t = Timers {
            never: p.never,
            ..Timers::default()
        };
        for (due, list) in p.buckets {
            t.pending += list.len();
            t.wheel_mut().put(due, list);
        }
        t
    }

    /// Heap bytes held (buckets, their tables and the wheel's slots).
    pub fn memory_bytes(&self) -> usize {
        let list = |l: &SeqList| std::mem::size_of::<SeqList>() + l.heap_bytes();
        let mut n = self.never.as_ref().map_or(0, list);
        if let Some(w) = &self.wheel {
            n += std::mem::size_of::<Wheel>();
            for level in &w.levels {
                for b in level.slots.iter() {
                    n += std::mem::size_of::<Buckets>()
                        + b.capacity() * (std::mem::size_of::<(u64, SeqList)>() + 1);
                }
            }
            n += w.buckets().map(|(_, l)| l.heap_bytes()).sum::<usize>();
            n += w.ready.len() * (std::mem::size_of::<(u64, SeqList)>() + 16);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn due_now(t: &mut Timers, now: u64) -> Vec<u64> {
        t.advance(now);
        let mut v = t.take_due(usize::MAX, now);
        v.sort_unstable();
        v
    }

    #[test]
    fn due_second_rounds_up_and_clamps() {
        assert_eq!(due_second(0, 1), 1);
        assert_eq!(due_second(S / 2, 1), 2);
        assert_eq!(due_second(-10 * S, 1), 0);
        assert_eq!(
            due_second(i64::MAX, MAX_TTL_SECS),
            9_223_372_037 + MAX_TTL_SECS
        );
    }

    #[test]
    fn fires_exactly_in_its_second_at_every_horizon() {
        let start = 1_800_000_000u64;
        let ttls = [
            1u64,
            2,
            255,
            256,
            257,
            65_535,
            65_536,
            3_600 * 30,
            16_777_216,
            86_400 * 400,
            MAX_TTL_SECS - 1,
            MAX_TTL_SECS,
        ];
        let mut t = Timers::default();
        t.advance(start);
        for (i, &ttl) in ttls.iter().enumerate() {
            t.insert(i as u64 + 1, start as i64 * S, ttl);
        }
        assert_eq!(t.pending(), ttls.len() as u64);
        for (i, &ttl) in ttls.iter().enumerate() {
            assert!(
                due_now(&mut t, start + ttl - 1).is_empty(),
                "ttl {ttl} early"
            );
            assert_eq!(
                due_now(&mut t, start + ttl),
                vec![i as u64 + 1],
                "ttl {ttl}"
            );
        }
        assert!(t.is_empty());
    }

    #[test]
    fn a_long_jump_fires_everything_due() {
        let mut t = Timers::default();
        t.advance(1000);
        for seq in 1..=500u64 {
            t.insert(seq, 1000 * S, seq * 997);
        }
        let got = due_now(&mut t, 1000 + 250_000);
        let want: Vec<u64> = (1..=500u64).filter(|s| s * 997 <= 250_000).collect();
        assert_eq!(got, want);
        assert_eq!(t.pending(), 500 - want.len() as u64);
        assert!(t.take_due(10, 1000 + 250_000).is_empty());
        // A clock that steps back leaves buckets due by the wheel's clock waiting.
        let mut t = Timers::default();
        t.insert(1000, 1_250_000 * S, 1);
        t.advance(1_250_001);
        assert!(!t.any_due(1_249_000) && t.take_due(10, 1_249_000).is_empty());
        assert_eq!(t.take_due(10, 1_250_001), vec![1000]);
    }

    #[test]
    fn cancel_and_ranges_leave_nothing_behind() {
        let mut t = Timers::default();
        t.advance(50);
        for seq in 1..=100u64 {
            t.insert(seq, 50 * S, 1 + seq % 7 * 300);
        }
        t.insert(101, 50 * S, TTL_NEVER);
        let five = 1 + 5 * 300;
        assert!(t.cancel(5, 50 * S, five));
        assert!(!t.cancel(5, 50 * S, five));
        assert_eq!(t.remove_range(90, 200), 12);
        assert_eq!(t.never_from(0), None);
        assert_eq!(t.remove_range(0, 89), 88);
        assert!(t.is_empty());
        assert!(t.buckets().is_empty());
    }

    #[test]
    fn parts_round_trip() {
        let mut t = Timers::default();
        t.advance(10);
        for seq in 1..=50u64 {
            t.insert(seq, 10 * S, seq * 1000);
        }
        t.insert(60, 10 * S, TTL_NEVER);
        let u = Timers::from_parts(t.parts());
        assert_eq!((u.buckets(), u.never()), (t.buckets(), t.never()));
        assert_eq!(u.len(), 51);
    }
}
