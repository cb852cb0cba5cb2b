//! A hash table from names (stored elsewhere) to `u32` ids, laid out for the append path: one
//! array of 8-byte slots (32 bits of the name's hash beside the id), linear probing, so a
//! lookup with millions of subjects costs one cache miss where a control-byte table costs two
//! (control group, then bucket). Deletion shifts the following run back (no tombstones), and
//! growth rehashes from the stored hash bits without reading any name.

const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    h: u32,
    id: u32,
}

const FREE: Slot = Slot { h: 0, id: EMPTY };

#[derive(Default)]
pub(crate) struct IdTable {
    slots: Vec<Slot>,
    len: usize,
}

/// The 32 hash bits kept per slot (the home slot is their low bits).
fn h32(hash: u64) -> u32 {
    (hash >> 32) as u32 ^ hash as u32
}

impl IdTable {
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The id whose name has `hash` and satisfies `eq`.
    pub fn find(&self, hash: u64, eq: impl Fn(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let h = h32(hash);
        let mask = self.mask();
        let mut i = h as usize & mask;
        loop {
            let s = self.slots[i];
            if s.id == EMPTY {
                return None;
            }
            if s.h == h && eq(s.id) {
                return Some(s.id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `id` (its name must not be in the table).
    pub fn insert(&mut self, hash: u64, id: u32) {
        debug_assert_ne!(id, EMPTY);
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        let h = h32(hash);
        let mask = self.mask();
        let mut i = h as usize & mask;
        while self.slots[i].id != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot { h, id };
        self.len += 1;
    }

    /// Removes `id`, whose name has `hash`.
    pub fn remove(&mut self, hash: u64, id: u32) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mask = self.mask();
        let mut i = h32(hash) as usize & mask;
        loop {
            match self.slots[i] {
                s if s.id == EMPTY => return false,
                s if s.id == id => break,
                _ => i = (i + 1) & mask,
            }
        }
        // Backward shift: move each following entry whose home is not between the hole and
        // itself into the hole, so every entry stays reachable from its home slot.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        while self.slots[j].id != EMPTY {
            let home = self.slots[j].h as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = FREE;
        self.len -= 1;
        true
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(16);
        let mut fresh: Vec<Slot> = Vec::with_capacity(cap);
        advise_huge_pages(&mut fresh);
        fresh.resize(cap, FREE);
        let old = std::mem::replace(&mut self.slots, fresh);
        let mask = cap - 1;
        for s in old.into_iter().filter(|s| s.id != EMPTY) {
            let mut i = s.h as usize & mask;
            while self.slots[i].id != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    pub fn capacity_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

/// Asks for transparent huge pages under a large table before it is touched: every lookup is
/// a random access, and with 4 KiB pages each also misses the TLB.
fn advise_huge_pages(v: &mut Vec<Slot>) {
    const HUGE: usize = 2 << 20;
    let bytes = v.capacity() * std::mem::size_of::<Slot>();
    if bytes < 2 * HUGE {
        return;
    }
    let start = v.as_mut_ptr() as usize;
    let lo = start.next_multiple_of(HUGE);
    let hi = (start + bytes) / HUGE * HUGE;
    if hi > lo {
        // SAFETY: the range lies inside `v`'s allocation, which we own; MADV_HUGEPAGE is
        // advice about backing pages and changes no contents or protections. A refusal (old
        // kernel, THP disabled) changes nothing, so its error is not needed.
        let _ = unsafe {
            rustix::mm::madvise(
                lo as *mut std::ffi::c_void,
                hi - lo,
                rustix::mm::Advice::LinuxHugepage,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..300), 1..2000)) {
            // Few distinct hashes, so collisions and long runs are exercised.
            let hash = |k: u64| (k % 37).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut t = IdTable::default();
            let mut m: HashMap<u64, u32> = HashMap::new();
            for (add, k) in ops {
                if add && !m.contains_key(&k) {
                    t.insert(hash(k), k as u32);
                    m.insert(k, k as u32);
                } else if !add {
                    prop_assert_eq!(t.remove(hash(k), k as u32), m.remove(&k).is_some());
                }
                for probe in 0..300u64 {
                    prop_assert_eq!(t.find(hash(probe), |id| id as u64 == probe), m.get(&probe).copied());
                }
            }
        }
    }
}
