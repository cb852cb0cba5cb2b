//! The index checkpoint: everything recovery needs to skip the log before a position.
//! Layout in `docs/format.md` ("Checkpoint").

use xxhash_rust::xxh3::xxh3_64;

use crate::record::u64_at;

use crate::deletes::DeleteSet;
use crate::seqlist::SeqList;
use crate::ttl::TimerParts;
use crate::varint;

pub const CKPT_MAGIC: [u8; 8] = *b"TLCKPT\0\0";
pub const CKPT_VERSION: u16 = 3;
const FIXED_LEN: usize = 96;
const BLOCK_LEN: usize = 40;
const RANGE_LEN: usize = 16;

/// A block as the lookup knew it at checkpoint time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    pub id: u64,
    pub first_seq: u64,
    pub slots: u64,
    pub live: u64,
    pub live_bytes: u64,
}

/// Stream state as of log position (`pos_block`, `pos_offset`): every record before that
/// position is reflected here, none after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub stream_id: u64,
    pub last_seq: u64,
    pub last_ts: i64,
    pub floor: u64,
    pub live_bytes: u64,
    pub pos_block: u64,
    pub pos_offset: u64,
    pub next_block_id: u64,
    pub blocks: Vec<BlockEntry>,
    pub deletes: DeleteSet,
    /// The TTL timers (version 2).
    pub timers: TimerParts,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        // Ranges take about 3 bytes each as varints; 16 is the most.
        let n =
            FIXED_LEN + self.blocks.len() * BLOCK_LEN + self.deletes.range_count() * RANGE_LEN + 8;
        let mut b = Vec::with_capacity(n);
        b.extend_from_slice(&CKPT_MAGIC);
        b.extend_from_slice(&CKPT_VERSION.to_le_bytes());
        b.extend_from_slice(&[0u8; 6]);
        for v in [
            self.stream_id,
            self.last_seq,
            self.last_ts as u64,
            self.floor,
            self.live_bytes,
            self.pos_block,
            self.pos_offset,
            self.next_block_id,
            self.blocks.len() as u64,
            self.deletes.range_count() as u64,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(b.len(), FIXED_LEN);
        for e in &self.blocks {
            for v in [e.id, e.first_seq, e.slots, e.live, e.live_bytes] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        // After many scattered deletes the ranges dominate a checkpoint: each is the gap from
        // the previous range's end and its length - 1, as varints (version 3).
        let mut prev = 0;
        for (s, e) in self.deletes.ranges() {
            varint::put(&mut b, s - prev);
            varint::put(&mut b, e - s);
            prev = e;
        }
        debug_assert!(b.len() + 8 <= n);
        encode_timers(&mut b, &self.timers);
        let sum = xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        debug_assert!(Checkpoint::decode(&b).is_ok());
        b
    }

    /// Decodes a checkpoint; `Err` says why the bytes are not one.
    pub fn decode(b: &[u8]) -> Result<Checkpoint, &'static str> {
        if b.len() < FIXED_LEN + 8 {
            return Err("too short");
        }
        if b[0..8] != CKPT_MAGIC {
            return Err("bad magic");
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if !(1..=CKPT_VERSION).contains(&version) {
            return Err("unknown version");
        }
        let varint_ranges = version >= 3;
        let body = b.len() - 8;
        if u64_at(b, body) != xxh3_64(&b[..body]) {
            return Err("checksum mismatch");
        }
        let nb = usize::try_from(u64_at(b, 80)).map_err(|_| "bad block count")?;
        let nr = usize::try_from(u64_at(b, 88)).map_err(|_| "bad range count")?;
        // Fixed ranges take 16 bytes each, varint ones at least 2.
        let range_len = if varint_ranges { 2 } else { RANGE_LEN };
        let need = nb
            .checked_mul(BLOCK_LEN)
            .and_then(|x| nr.checked_mul(range_len).and_then(|y| x.checked_add(y)))
            .and_then(|x| x.checked_add(FIXED_LEN))
            .ok_or("bad counts")?;
        if need > body || (version == 1 && need != body) {
            return Err("length does not match counts");
        }
        let limit = crate::record::MAX_SEQ;
        if [u64_at(b, 24), u64_at(b, 40)]
            .iter()
            .any(|&v| v > limit + 1)
        {
            return Err("sequence out of range");
        }
        let mut p = FIXED_LEN;
        let mut blocks = Vec::with_capacity(nb);
        for _ in 0..nb {
            let f = |i: usize| u64_at(b, p + i * 8);
            let e = BlockEntry {
                id: f(0),
                first_seq: f(1),
                slots: f(2),
                live: f(3),
                live_bytes: f(4),
            };
            if e.first_seq > limit || e.slots > limit - e.first_seq {
                return Err("block entry out of range");
            }
            blocks.push(e);
            p += BLOCK_LEN;
        }
        let mut deletes = DeleteSet::new();
        let mut prev_end: Option<u64> = None;
        for _ in 0..nr {
            let (s, e) = if varint_ranges {
                let base = prev_end.unwrap_or(0);
                let gap = varint::get(&b[..body], &mut p).ok_or("bad delete range")?;
                let len = varint::get(&b[..body], &mut p).ok_or("bad delete range")?;
                let s = base.checked_add(gap).ok_or("delete ranges out of order")?;
                (s, s.checked_add(len).ok_or("delete ranges out of order")?)
            } else {
                let r = (u64_at(b, p), u64_at(b, p + 8));
                p += RANGE_LEN;
                r
            };
            if s > e || e > limit || prev_end.is_some_and(|pe| pe >= s) {
                return Err("delete ranges out of order");
            }
            deletes.insert_range(s, e);
            prev_end = Some(e);
        }
        let timers = match version {
            1 => TimerParts::default(),
            _ => decode_timers(&b[p..body]).ok_or("bad timers")?,
        };
        Ok(Checkpoint {
            stream_id: u64_at(b, 16),
            last_seq: u64_at(b, 24),
            last_ts: u64_at(b, 32) as i64,
            floor: u64_at(b, 40),
            live_bytes: u64_at(b, 48),
            pos_block: u64_at(b, 56),
            pos_offset: u64_at(b, 64),
            next_block_id: u64_at(b, 72),
            blocks,
            deletes,
            timers,
        })
    }
}

/// A sorted list: its length, its first sequence, then the gaps, all LEB128.
fn get_list(b: &[u8], at: &mut usize) -> Option<Vec<u64>> {
    let n = varint::get(b, at)?;
    // Every entry takes at least one byte: a damaged count cannot allocate past the input.
    if n > (b.len() - *at) as u64 {
        return None;
    }
    let mut v = Vec::with_capacity(n as usize);
    let mut prev = 0u64;
    for i in 0..n {
        let d = varint::get(b, at)?;
        if i > 0 && d == 0 {
            return None;
        }
        prev = prev
            .checked_add(d)
            .filter(|&s| s <= crate::record::MAX_SEQ)?;
        v.push(prev);
    }
    Some(v)
}

/// The timers section: the "never" list, the number of buckets, then each bucket's second
/// and list (layout in `docs/format.md`).
fn encode_timers(out: &mut Vec<u8>, t: &TimerParts) {
    put_seqlist(out, t.never.as_ref());
    let mut buckets: Vec<&(u64, SeqList)> = t.buckets.iter().collect();
    buckets.sort_unstable_by_key(|(d, _)| *d);
    varint::put(out, buckets.len() as u64);
    for (due, list) in buckets {
        varint::put(out, *due);
        put_seqlist(out, Some(list));
    }
}

/// `put_list` of a compressed list, whose own bytes are already the gaps.
fn put_seqlist(out: &mut Vec<u8>, list: Option<&SeqList>) {
    let Some(l) = list.filter(|l| l.len() > 0) else {
        return varint::put(out, 0);
    };
    varint::put(out, l.len());
    varint::put(out, l.first());
    l.write_gaps(out);
}

fn decode_timers(b: &[u8]) -> Option<TimerParts> {
    let mut at = 0;
    let never = get_list(b, &mut at)?;
    let n = varint::get(b, &mut at)?;
    if n > b.len() as u64 {
        return None;
    }
    let mut buckets = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let due = varint::get(b, &mut at)?;
        buckets.push((due, get_list(b, &mut at)?));
    }
    if at != b.len() {
        return None;
    }
    TimerParts::from_lists(buckets, never)
}

/// The sequence lease: the highest sequence that may have been handed out. Written durably
/// before any sequence above it is returned, so a crash never lets a sequence be reused.
pub const LEASE_MAGIC: [u8; 8] = *b"TLLEASE\0";

pub fn encode_lease(stream_id: u64, seq: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&LEASE_MAGIC);
    b.extend_from_slice(&stream_id.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    let sum = xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

pub fn decode_lease(b: &[u8]) -> Option<(u64, u64)> {
    if b.len() != 32 || b[0..8] != LEASE_MAGIC || u64_at(b, 24) != xxh3_64(&b[..24]) {
        return None;
    }
    Some((u64_at(b, 8), u64_at(b, 16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut d = DeleteSet::new();
        d.insert_range(5, 9);
        d.insert(20);
        let c = Checkpoint {
            stream_id: 1,
            last_seq: 30,
            last_ts: 7,
            floor: 2,
            live_bytes: 100,
            pos_block: 3,
            pos_offset: 64,
            next_block_id: 4,
            blocks: vec![BlockEntry {
                id: 3,
                first_seq: 2,
                slots: 29,
                live: 22,
                live_bytes: 100,
            }],
            deletes: d,
            timers: TimerParts::from_lists(vec![(1_000, vec![3, 4, 9]), (7, vec![20])], vec![5])
                .unwrap(),
        };
        let b = c.encode();
        assert_eq!(Checkpoint::decode(&b).as_ref(), Ok(&c));
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 4;
            assert!(Checkpoint::decode(&x).is_err());
        }
        assert_eq!(decode_lease(&encode_lease(1, 99)), Some((1, 99)));

        // Version 2 (fixed 16-byte delete ranges) is still read.
        let mut v2 = b[..FIXED_LEN + BLOCK_LEN].to_vec();
        v2[8..10].copy_from_slice(&2u16.to_le_bytes());
        for (s, e) in c.deletes.ranges() {
            v2.extend_from_slice(&s.to_le_bytes());
            v2.extend_from_slice(&e.to_le_bytes());
        }
        encode_timers(&mut v2, &c.timers);
        let sum = xxh3_64(&v2);
        v2.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(Checkpoint::decode(&v2), Ok(c));
    }

    #[test]
    fn scattered_deletes_take_few_bytes() {
        let mut d = DeleteSet::new();
        for i in 0..10_000u64 {
            d.insert_range(10 * i + 1, 10 * i + 9);
        }
        let c = Checkpoint {
            stream_id: 1,
            last_seq: 100_000,
            last_ts: 0,
            floor: 1,
            live_bytes: 0,
            pos_block: 1,
            pos_offset: 64,
            next_block_id: 2,
            blocks: Vec::new(),
            deletes: d,
            timers: TimerParts::default(),
        };
        let b = c.encode();
        assert!(b.len() < FIXED_LEN + 2 * 10_000 + 64, "{}", b.len());
        assert_eq!(Checkpoint::decode(&b), Ok(c));
    }
}
