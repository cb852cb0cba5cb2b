//! The set of removed sequences inside a stream's range, as sorted, merged ranges.

use std::collections::BTreeMap;

/// Sorted disjoint inclusive ranges `start -> end`; adjacent ranges are always merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteSet {
    ranges: BTreeMap<u64, u64>,
    count: u64,
}

impl DeleteSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of sequences in the set.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.ranges
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &e)| e >= seq)
    }

    /// Adds `a..=b`; returns how many sequences were new.
    pub fn insert_range(&mut self, a: u64, b: u64) -> u64 {
        if a > b {
            return 0;
        }
        let (mut lo, mut hi) = (a, b);
        let mut absorbed = 0u64;
        // Merge with every range that overlaps or touches [a, b].
        let first = self
            .ranges
            .range(..=a)
            .next_back()
            .filter(|(_, &e)| e.saturating_add(1) >= a)
            .map(|(&s, _)| s)
            .unwrap_or(a);
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(first..=b.saturating_add(1))
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.ranges.remove(&s);
            absorbed += e - s + 1;
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.ranges.insert(lo, hi);
        let total = hi - lo + 1;
        let added = total - absorbed;
        self.count += added;
        debug_assert!(self.check());
        added
    }

    pub fn insert(&mut self, seq: u64) -> bool {
        self.insert_range(seq, seq) == 1
    }

    /// Drops `a..=b`, splitting the ranges that straddle its ends.
    pub fn remove_range(&mut self, a: u64, b: u64) {
        if a > b {
            return;
        }
        let first = self
            .ranges
            .range(..=a)
            .next_back()
            .filter(|(_, &e)| e >= a)
            .map(|(&s, _)| s)
            .unwrap_or(a);
        let hit: Vec<(u64, u64)> = self
            .ranges
            .range(first..=b)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in hit {
            self.ranges.remove(&s);
            self.count -= e - s + 1;
            if s < a {
                self.ranges.insert(s, a - 1);
                self.count += a - s;
            }
            if e > b {
                self.ranges.insert(b + 1, e);
                self.count += e - b;
            }
        }
        debug_assert!(self.check());
    }

    /// Drops every sequence below `floor`.
    pub fn remove_below(&mut self, floor: u64) {
        if floor > 0 {
            self.remove_range(0, floor - 1);
        }
    }

    /// Drops every sequence above `last`.
    pub fn remove_above(&mut self, last: u64) {
        if last < u64::MAX {
            self.remove_range(last + 1, u64::MAX);
        }
    }

    /// If a range starts exactly at `floor`, removes it and returns its end.
    pub fn take_range_at(&mut self, floor: u64) -> Option<u64> {
        let e = self.ranges.remove(&floor)?;
        self.count -= e - floor + 1;
        Some(e)
    }

    /// The sub-ranges of `a..=b` that are not in the set.
    pub fn gaps(&self, a: u64, b: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut next = a;
        let start = self
            .ranges
            .range(..=a)
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(a);
        for (&s, &e) in self.ranges.range(start..=b) {
            if e < next {
                continue;
            }
            if s > next {
                out.push((next, s - 1));
            }
            next = e.saturating_add(1);
            if next > b {
                return out;
            }
        }
        if next <= b {
            out.push((next, b));
        }
        out
    }

    /// The range holding `seq`, if any.
    pub fn range_of(&self, seq: u64) -> Option<(u64, u64)> {
        self.ranges
            .range(..=seq)
            .next_back()
            .filter(|(_, &e)| e >= seq)
            .map(|(&s, &e)| (s, e))
    }

    /// How many sequences of `a..=b` are in the set.
    pub fn count_in(&self, a: u64, b: u64) -> u64 {
        if a > b {
            return 0;
        }
        let start = self.range_of(a).map_or(a, |(s, _)| s);
        self.ranges
            .range(start..=b)
            .map(|(&s, &e)| e.min(b) + 1 - s.max(a))
            .sum()
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }

    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    fn check(&self) -> bool {
        let mut prev: Option<u64> = None;
        let mut n = 0;
        for (&s, &e) in &self.ranges {
            if s > e || prev.is_some_and(|p| p.saturating_add(1) >= s) {
                return false;
            }
            n += e - s + 1;
            prev = Some(e);
        }
        n == self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((0u8..4, 0u64..60, 0u64..8), 1..80)) {
            let mut d = DeleteSet::new();
            let mut m = BTreeSet::new();
            for (op, a, w) in ops {
                match op {
                    0 | 1 => { let added = d.insert_range(a, a + w); let before = m.len(); m.extend(a..=a + w); prop_assert_eq!(added as usize, m.len() - before); }
                    2 if w % 2 == 0 => { d.remove_range(a, a + w); m.retain(|&x| x < a || x > a + w); }
                    2 => { d.remove_below(a); m.retain(|&x| x >= a); }
                    _ => { d.remove_above(a); m.retain(|&x| x <= a); }
                }
                prop_assert_eq!(d.len() as usize, m.len());
                for x in 0..80 { prop_assert_eq!(d.contains(x), m.contains(&x)); }
                let missing: usize = d.gaps(5, 40).iter().map(|(x, y)| (y - x + 1) as usize).sum();
                prop_assert_eq!(missing, (5..=40).filter(|x| !m.contains(x)).count());
            }
        }
    }
}
