//! Block files: a header, records, and (once sealed) a trailer with the per-sequence offset
//! table. Layout in `docs/format.md` ("Block file"). Also the in-memory buffer of the active
//! block and the scanner recovery uses.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use crate::record::{u32_at, u64_at};

use crate::io::Mapping;
use crate::record::{self, DecodeError, Head, RecordRef};

pub const BLOCK_MAGIC: [u8; 8] = *b"TLBLOCK\0";
pub const SEAL_MAGIC: [u8; 8] = *b"TLSEAL\0\0";
/// Footer magic of a sparse trailer (a compacted block): tables list only the slots that
/// have a record.
pub const SPARSE_SEAL_MAGIC: [u8; 8] = *b"TLSEALSP";
/// Trailer bytes per record of a sparse trailer: slot, offset and subject id.
pub const SPARSE_ENTRY_LEN: usize = 12;
/// Trailer bytes per slot of a dense trailer: offset and subject id.
const DENSE_ENTRY_LEN: usize = 8;
pub const BLOCK_VERSION: u16 = 2;
pub const HEADER_LEN: usize = 64;
pub const FOOTER_LEN: usize = 64;
/// Offset-table entry of a sequence that has no record in this block.
pub const NO_RECORD: u32 = u32::MAX;
/// Largest run of missing sequences padded inside a block; a larger gap starts a new block.
pub const MAX_PAD: u64 = 1024;

/// The fixed header at the start of every block file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub stream_id: u64,
    pub block_id: u64,
    pub first_seq: u64,
    pub created_ns: i64,
}

impl BlockHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&BLOCK_MAGIC);
        b[8..10].copy_from_slice(&BLOCK_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.stream_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.block_id.to_le_bytes());
        b[32..40].copy_from_slice(&self.first_seq.to_le_bytes());
        b[40..48].copy_from_slice(&self.created_ns.to_le_bytes());
        let sum = xxh3_64(&b[..56]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        debug_assert_eq!(BlockHeader::decode(&b), Some(*self));
        b
    }

    /// `None` when the bytes are not an intact header of a known version.
    pub fn decode(b: &[u8]) -> Option<BlockHeader> {
        if b.len() < HEADER_LEN
            || b[0..8] != BLOCK_MAGIC
            || u16::from_le_bytes([b[8], b[9]]) != BLOCK_VERSION
            || u64_at(b, 56) != xxh3_64(&b[..56])
        {
            return None;
        }
        Some(BlockHeader {
            stream_id: u64_at(b, 16),
            block_id: u64_at(b, 24),
            first_seq: u64_at(b, 32),
            created_ns: u64_at(b, 40) as i64,
        })
    }
}

/// The trailer written when a block is sealed: the offset table, the subject of every slot
/// (so `open` rebuilds the subject index without reading records) and a footer. `body` is the
/// file up to the end of its records.
pub fn encode_trailer(block_id: u64, first_seq: u64, body: &[u8], offsets: &[u32]) -> Vec<u8> {
    encode_any_trailer(block_id, first_seq, body, offsets, false)
}

/// A trailer whose tables list only the slots with a record (slot numbers, then offsets,
/// then subject ids): what compaction writes, so a block with few records left does not
/// keep 8 bytes for every removed one.
pub fn encode_sparse_trailer(
    block_id: u64,
    first_seq: u64,
    body: &[u8],
    offsets: &[u32],
) -> Vec<u8> {
    encode_any_trailer(block_id, first_seq, body, offsets, true)
}

fn encode_any_trailer(
    block_id: u64,
    first_seq: u64,
    body: &[u8],
    all: &[u32],
    sparse: bool,
) -> Vec<u8> {
    let body_end = body.len() as u64;
    let present: Vec<u32> = (0..all.len() as u32)
        .filter(|&i| !sparse || all[i as usize] != NO_RECORD)
        .collect();
    let offsets: Vec<u32> = present.iter().map(|&i| all[i as usize]).collect();
    let mut t = Vec::with_capacity(offsets.len() * SPARSE_ENTRY_LEN + FOOTER_LEN);
    if sparse {
        for i in &present {
            t.extend_from_slice(&i.to_le_bytes());
        }
    }
    for o in &offsets {
        t.extend_from_slice(&o.to_le_bytes());
    }
    // Slot -> index into the block's own subject dictionary, in order of first use. This runs
    // once per record when a block is sealed, so it hashes with xxh3 into a table of ids and
    // skips the lookup when a record repeats the previous record's subject.
    let mut dict: HashTable<u32> = HashTable::new();
    let mut names: Vec<(&[u8], u64)> = Vec::new();
    let mut prev: Option<(&[u8], u32)> = None;
    for &o in &offsets {
        let subject = (o != NO_RECORD)
            .then(|| record::subject_at(body, o as usize))
            .flatten();
        let id = match (subject, prev) {
            (Some(s), Some((p, id))) if s == p => id,
            (Some(s), _) => {
                let h = xxh3_64(s);
                let id = match dict.find(h, |&i| names[i as usize].0 == s) {
                    Some(&id) => id,
                    None => {
                        let id = names.len() as u32;
                        names.push((s, h));
                        dict.insert_unique(h, id, |&i| names[i as usize].1);
                        id
                    }
                };
                prev = Some((s, id));
                id
            }
            (None, _) => NO_SUBJECT,
        };
        t.extend_from_slice(&id.to_le_bytes());
    }
    let dict_at = body_end + t.len() as u64;
    for (n, _) in &names {
        t.extend_from_slice(&(n.len() as u16).to_le_bytes());
        t.extend_from_slice(n);
    }
    t.extend_from_slice(if sparse {
        &SPARSE_SEAL_MAGIC
    } else {
        &SEAL_MAGIC
    });
    t.extend_from_slice(&block_id.to_le_bytes());
    t.extend_from_slice(&(all.len() as u64).to_le_bytes());
    t.extend_from_slice(&body_end.to_le_bytes());
    t.extend_from_slice(&first_seq.to_le_bytes());
    t.extend_from_slice(&dict_at.to_le_bytes());
    t.extend_from_slice(&(names.len() as u64).to_le_bytes());
    let sum = xxh3_64(&t);
    t.extend_from_slice(&sum.to_le_bytes());
    debug_assert!(decode_trailer(&[body, &t].concat()).is_some_and(|d| d.slots == all.len()));
    t
}

/// Subject-table entry of a slot with no (readable) record.
pub const NO_SUBJECT: u32 = u32::MAX;

/// A valid trailer found at the end of a sealed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub block_id: u64,
    pub first_seq: u64,
    pub slots: usize,
    /// End of the records; the offset table starts here.
    pub body_end: usize,
    /// Slots with a record, for a sparse trailer.
    pub present: Option<usize>,
    dict_at: usize,
    dict_len: usize,
}

/// Reads the trailer of a whole block file, if it has an intact one.
pub fn decode_trailer(file: &[u8]) -> Option<Trailer> {
    let n = file.len();
    if n < HEADER_LEN + FOOTER_LEN {
        return None;
    }
    let f = &file[n - FOOTER_LEN..];
    let sparse = match f[0..8].try_into().ok()? {
        SEAL_MAGIC => false,
        SPARSE_SEAL_MAGIC => true,
        _ => return None,
    };
    let slots = usize::try_from(u64_at(f, 16)).ok()?;
    let body_end = usize::try_from(u64_at(f, 24)).ok()?;
    let dict_at = usize::try_from(u64_at(f, 40)).ok()?;
    let dict_len = usize::try_from(u64_at(f, 48)).ok()?;
    let present = if sparse {
        let bytes = dict_at.checked_sub(body_end)?;
        let n = bytes / SPARSE_ENTRY_LEN;
        (bytes % SPARSE_ENTRY_LEN == 0 && n <= slots).then_some(n)?
    } else {
        slots
    };
    let tables = present.checked_mul(if sparse {
        SPARSE_ENTRY_LEN
    } else {
        DENSE_ENTRY_LEN
    })?;
    if body_end.checked_add(tables)? != dict_at
        || dict_at.checked_add(FOOTER_LEN)? > n
        || body_end < HEADER_LEN
    {
        return None;
    }
    if u64_at(f, 56) != xxh3_64(&file[body_end..n - 8]) {
        return None;
    }
    let first_seq = u64_at(f, 32);
    if first_seq > crate::record::MAX_SEQ || slots as u64 > crate::record::MAX_SEQ - first_seq {
        return None;
    }
    let t = Trailer {
        block_id: u64_at(f, 8),
        first_seq,
        slots,
        body_end,
        present: sparse.then_some(present),
        dict_at,
        dict_len,
    };
    if let Some(k) = t.present {
        // Slot numbers strictly ascending and inside the block.
        let at = |i: usize| u32_at(file, body_end + i * 4) as usize;
        if (0..k).any(|i| at(i) >= slots || (i > 0 && at(i) <= at(i - 1))) {
            return None;
        }
    }
    // The dictionary must fill exactly the space before the footer.
    t.subjects(file)?;
    Some(t)
}

impl Trailer {
    /// The subject of every slot, as the trailer records it.
    pub fn subjects<'a>(&self, file: &'a [u8]) -> Option<SlotSubjects<'a>> {
        let end = file.len().checked_sub(FOOTER_LEN)?;
        let mut names = Vec::with_capacity(self.dict_len.min(end));
        let mut at = self.dict_at;
        for _ in 0..self.dict_len {
            let len = u16::from_le_bytes([*file.get(at)?, *file.get(at + 1)?]) as usize;
            names.push(
                file.get(at + 2..at + 2 + len)
                    .filter(|_| at + 2 + len <= end)?,
            );
            at += 2 + len;
        }
        if at != end {
            return None;
        }
        let (slots, ids) = match self.present {
            Some(k) => (
                file.get(self.body_end..self.body_end + k * 4),
                file.get(self.body_end + k * 8..self.dict_at)?,
            ),
            None => (
                None,
                file.get(self.body_end + self.slots * 4..self.dict_at)?,
            ),
        };
        Some(SlotSubjects { slots, ids, names })
    }

    /// The block's offset table (`logical` slots visible), read in place from a dense
    /// trailer or expanded from a sparse one.
    pub fn offsets(&self, map: &Arc<Mapping>, logical: usize) -> Offsets {
        let Some(k) = self.present else {
            return Offsets::mapped(map.clone(), self.body_end, self.slots, logical);
        };
        let at = |i: usize| u32_at(map, self.body_end + i * 4);
        let slots = (0..k).map(at).collect();
        let offs = (k..2 * k).map(at).collect();
        Offsets {
            table: Table::Sparse {
                slots,
                offs,
                len: self.slots,
            },
            logical: logical.min(self.slots),
        }
    }
}

/// The position of `slot` in a sparse table's slot list (little-endian u32s, ascending).
fn sparse_index(slots: &[u8], slot: usize) -> Option<usize> {
    let n = slots.len() / 4;
    let at = |i: usize| u32_at(slots, i * 4) as usize;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match at(mid).cmp(&slot) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(mid),
        }
    }
    None
}

/// Slot -> subject, read from a sealed block's trailer.
pub struct SlotSubjects<'a> {
    /// A sparse trailer's slot list; `ids` then follows it, not the slot number.
    slots: Option<&'a [u8]>,
    ids: &'a [u8],
    names: Vec<&'a [u8]>,
}

impl<'a> SlotSubjects<'a> {
    /// The dictionary index of `slot`'s subject.
    pub fn id(&self, slot: usize) -> Option<u32> {
        let i = match self.slots {
            Some(list) => sparse_index(list, slot)?,
            None => slot,
        };
        let b = self.ids.get(i * 4..i * 4 + 4)?;
        // Only ids inside the dictionary: a checksummed but inconsistent trailer (a bug, or
        // crafted input) must not index out of bounds.
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .filter(|&i| (i as usize) < self.names.len())
    }
    pub fn names(&self) -> &[&'a [u8]] {
        &self.names
    }
}

enum Table {
    Owned(Vec<u32>),
    /// The offset table of a sealed block, read in place from its mapping.
    Mapped {
        map: Arc<Mapping>,
        at: usize,
        len: usize,
    },
    /// A compacted block's table: the slots with a record (ascending) and their offsets.
    Sparse {
        slots: Vec<u32>,
        offs: Vec<u32>,
        len: usize,
    },
}

/// Sequence -> record offset within one block. The *physical* table describes the records in
/// the file and is what a trailer stores; the *logical* length can be shorter after a
/// `truncate`, so that a truncate that never reaches the disk cannot shorten a trailer.
pub struct Offsets {
    table: Table,
    logical: usize,
}

impl Offsets {
    pub fn owned(v: Vec<u32>) -> Self {
        Offsets {
            logical: v.len(),
            table: Table::Owned(v),
        }
    }
    pub fn mapped(map: Arc<Mapping>, at: usize, len: usize, logical: usize) -> Self {
        Offsets {
            table: Table::Mapped { map, at, len },
            logical: logical.min(len),
        }
    }
    /// Slots visible to readers.
    pub fn len(&self) -> usize {
        self.logical
    }
    fn physical_get(&self, i: usize) -> Option<u32> {
        match &self.table {
            Table::Owned(v) => v.get(i).copied(),
            Table::Mapped { map, at, len } => (i < *len).then(|| u32_at(map, at + i * 4)),
            Table::Sparse { slots, offs, len } => {
                (i < *len).then(|| match slots.binary_search(&(i as u32)) {
                    Ok(k) => offs[k],
                    Err(_) => NO_RECORD,
                })
            }
        }
    }
    pub fn get(&self, i: usize) -> Option<u32> {
        if i < self.logical {
            self.physical_get(i)
        } else {
            None
        }
    }
    fn physical_len(&self) -> usize {
        match &self.table {
            Table::Owned(v) => v.len(),
            Table::Mapped { len, .. } | Table::Sparse { len, .. } => *len,
        }
    }
    /// The whole physical table, for a trailer.
    pub fn physical(&self) -> Vec<u32> {
        (0..self.physical_len())
            .filter_map(|i| self.physical_get(i))
            .collect()
    }
    /// Appends a slot; slots hidden by a truncate are overwritten first.
    pub fn push(&mut self, off: u32) {
        self.detach();
        if let Table::Owned(v) = &mut self.table {
            v.truncate(self.logical);
            v.push(off);
        }
        self.logical += 1;
    }
    /// Hides every slot from `n` on (truncate); the physical table is untouched.
    pub fn clip(&mut self, n: usize) {
        self.logical = self.logical.min(n);
    }
    /// Copies a mapped table to the heap (before the mapping is replaced or dropped).
    pub fn detach(&mut self) {
        if !matches!(self.table, Table::Owned(_)) {
            self.table = Table::Owned(self.physical());
        }
    }
}

impl Default for Offsets {
    fn default() -> Self {
        Self::owned(Vec::new())
    }
}

/// The growing body of the active block: one writer appends past the committed length while
/// any number of readers (loads, the flusher) read below it without a lock.
pub struct AppendBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: AtomicUsize,
}

// SAFETY: bytes below `len` are never written again and are published with Release/Acquire;
// bytes at or above `len` are touched only through `&mut Writer`, of which there is one.
unsafe impl Send for AppendBuf {}
unsafe impl Sync for AppendBuf {}

impl AppendBuf {
    fn layout(cap: usize) -> Layout {
        // A capacity of zero is not a valid allocation; `new` never asks for one.
        Layout::from_size_align(cap.max(1), 8).unwrap_or(Layout::new::<u64>())
    }

    /// The committed bytes.
    pub fn bytes(&self) -> &[u8] {
        let len = self.len.load(Ordering::Acquire);
        // SAFETY: `len <= cap` and bytes below `len` are immutable once committed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), len) }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Replaces committed bytes (used only by `erase`).
    ///
    /// # Safety
    /// The caller must guarantee that no other thread reads `off..off + bytes.len()` during
    /// the call: the stream holds its state lock exclusively (readers copy under the shared
    /// lock) and the range is already written to the file (the flusher never reads it again).
    pub unsafe fn overwrite(&self, off: usize, bytes: &[u8]) {
        let len = self.len();
        if off.checked_add(bytes.len()).is_some_and(|end| end <= len) {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(off), bytes.len());
        }
    }
}

impl Drop for AppendBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

/// The one handle allowed to append to an [`AppendBuf`].
pub struct Writer(Arc<AppendBuf>);

impl Writer {
    /// A zeroed buffer of `cap` bytes (the OS hands out zero pages lazily, so unused capacity
    /// costs address space, not memory) and its single writer.
    pub fn new(cap: usize) -> Writer {
        let layout = AppendBuf::layout(cap);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        Writer(Arc::new(AppendBuf {
            ptr,
            cap: layout.size(),
            len: AtomicUsize::new(0),
        }))
    }

    pub fn buf(&self) -> &Arc<AppendBuf> {
        &self.0
    }
    pub fn spare(&self) -> usize {
        self.0.cap - self.0.len()
    }
    /// Lets `f` fill up to `n` bytes past the committed end, then commits what it reports.
    pub fn append_with(&mut self, n: usize, f: impl FnOnce(&mut [u8]) -> usize) -> usize {
        let len = self.0.len();
        debug_assert!(n <= self.0.cap - len, "append past capacity");
        let n = n.min(self.0.cap - len);
        // SAFETY: `[len, len+n)` is inside the allocation and above the committed length, so
        // no reader looks at it; `&mut self` makes this the only writer.
        let spare = unsafe { std::slice::from_raw_parts_mut(self.0.ptr.as_ptr().add(len), n) };
        let wrote = f(spare).min(n);
        self.0.len.store(len + wrote, Ordering::Release);
        wrote
    }
    pub fn append(&mut self, bytes: &[u8]) {
        self.append_with(bytes.len(), |s| {
            s.copy_from_slice(bytes);
            bytes.len()
        });
    }
}

/// One step of a scan.
pub enum Scanned<'a> {
    Record(RecordRef<'a>),
    /// A damaged record. With `Some(head)` its header was intact, so we know exactly what was
    /// lost; with `None` the scanner skipped to the next valid header.
    Damaged(Option<Head>),
}

/// Result of scanning a block body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// End of the last record (good or damaged) that the scanner could delimit.
    pub end: usize,
    /// Bytes after `end` that are not a record (a torn tail or garbage).
    pub torn: bool,
}

/// Walks the records in `bytes[from..to]`, calling `visit(offset, item)` for each.
/// In a `sealed` body (its extent is known from a valid trailer) nothing is a torn tail: an
/// undecodable stretch is a damaged record.
pub fn scan<'a>(
    bytes: &'a [u8],
    from: usize,
    to: usize,
    sealed: bool,
    mut visit: impl FnMut(usize, Scanned<'a>),
) -> ScanEnd {
    let to = to.min(bytes.len());
    let body = &bytes[..to];
    let mut off = from.min(to);
    while off < to {
        match record::decode(&body[off..]) {
            Ok(r) => {
                visit(off, Scanned::Record(r));
                off += r.len;
            }
            // Zeros to the end are the end of the log; a zeroed length field with data after
            // it is damage, handled like a bad header.
            Err(DecodeError::End) if body[off..].iter().all(|&b| b == 0) => {
                return ScanEnd {
                    end: off,
                    torn: false,
                };
            }
            Err(DecodeError::Truncated) => {
                return ScanEnd {
                    end: off,
                    torn: true,
                }
            }
            Err(DecodeError::BadBody(h)) => {
                visit(off, Scanned::Damaged(Some(h)));
                off += h.len;
            }
            Err(DecodeError::BadHeader | DecodeError::End) => match record::resync(body, off + 1) {
                Some(next) if record::decode(&body[next..]).is_ok() => {
                    visit(off, Scanned::Damaged(None));
                    off = next;
                }
                _ if sealed => {
                    visit(off, Scanned::Damaged(None));
                    return ScanEnd {
                        end: to,
                        torn: false,
                    };
                }
                _ => {
                    return ScanEnd {
                        end: off,
                        torn: true,
                    }
                }
            },
        }
    }
    ScanEnd {
        end: off,
        torn: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode, Kind};

    #[test]
    fn header_round_trip_and_damage() {
        let h = BlockHeader {
            stream_id: 1,
            block_id: 2,
            first_seq: 3,
            created_ns: 4,
        };
        let mut b = h.encode();
        assert_eq!(BlockHeader::decode(&b), Some(h));
        b[30] ^= 1;
        assert_eq!(BlockHeader::decode(&b), None);
    }

    #[test]
    fn trailer_round_trip() {
        for sparse in [false, true] {
            let mut file = vec![0u8; HEADER_LEN];
            file.extend(encode(Kind::Msg, 5, 1, b"a.b", b"", b"x"));
            let second = file.len() as u32;
            file.extend(encode(Kind::Msg, 7, 1, b"c", b"", b"y"));
            let body_end = file.len();
            let table = [HEADER_LEN as u32, NO_RECORD, second, NO_RECORD];
            let t = match sparse {
                false => encode_trailer(9, 5, &file, &table),
                true => encode_sparse_trailer(9, 5, &file, &table),
            };
            // Two records: 12 bytes each sparse, 8 per slot (4 slots) dense.
            assert_eq!(
                t.len(),
                if sparse { 24 } else { 32 } + 2 + 3 + 2 + 1 + FOOTER_LEN
            );
            file.extend(t);
            let t = decode_trailer(&file).unwrap();
            assert_eq!(
                (t.block_id, t.first_seq, t.slots, t.body_end),
                (9, 5, 4, body_end)
            );
            assert_eq!(t.present, sparse.then_some(2));
            let map = Arc::new(Mapping::Shared(Arc::new(file.clone())));
            assert_eq!(t.offsets(&map, 4).physical(), table);
            assert_eq!(t.offsets(&map, 3).get(3), None, "logical length");
            let subjects = t.subjects(&file).unwrap();
            let name = |i: usize| subjects.id(i).map(|id| subjects.names()[id as usize]);
            assert_eq!(
                (name(0), name(1), name(2), name(3)),
                (Some(&b"a.b"[..]), None, Some(&b"c"[..]), None)
            );
            let n = file.len();
            file[n - 20] ^= 1;
            assert_eq!(decode_trailer(&file), None);
        }
    }

    #[test]
    fn sparse_trailer_rejects_bad_slot_lists() {
        let mut file = vec![0u8; HEADER_LEN];
        file.extend(encode(Kind::Msg, 5, 1, b"a", b"", b"x"));
        let second = file.len() as u32;
        file.extend(encode(Kind::Msg, 6, 1, b"a", b"", b"y"));
        let body_end = file.len();
        let t = encode_sparse_trailer(1, 5, &file, &[HEADER_LEN as u32, second]);
        file.extend(t);
        assert!(decode_trailer(&file).is_some());
        // Slot list out of order (checksum fixed up): refused, never indexed out of bounds.
        let mut bad = file.clone();
        bad[body_end..body_end + 4].copy_from_slice(&1u32.to_le_bytes());
        bad[body_end + 4..body_end + 8].copy_from_slice(&0u32.to_le_bytes());
        let n = bad.len();
        let sum = xxh3_64(&bad[body_end..n - 8]);
        bad[n - 8..].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(decode_trailer(&bad), None);
    }

    #[test]
    fn append_buf_publishes() {
        let mut w = Writer::new(16);
        w.append(b"abc");
        assert_eq!(w.buf().bytes(), b"abc");
        assert_eq!(w.spare(), 13);
    }

    #[test]
    fn scan_skips_one_damaged_record() {
        let mut b = vec![0u8; HEADER_LEN];
        for s in 1..=3u64 {
            b.extend(encode(Kind::Msg, s, 0, b"a", b"", b"payload"));
        }
        let rec = (b.len() - HEADER_LEN) / 3;
        b[HEADER_LEN + rec + 3] ^= 0x10; // header of record 2
        let mut seen = vec![];
        let mut damaged = 0;
        let end = scan(&b, HEADER_LEN, b.len(), false, |_, s| match s {
            Scanned::Record(r) => seen.push(r.seq),
            Scanned::Damaged(_) => damaged += 1,
        });
        assert_eq!(seen, vec![1, 3]);
        assert_eq!(damaged, 1);
        assert_eq!(
            end,
            ScanEnd {
                end: b.len(),
                torn: false
            }
        );
    }

    #[test]
    fn zeroed_length_is_damage_not_end() {
        let mut b = vec![0u8; HEADER_LEN];
        for s in 1..=3u64 {
            b.extend(encode(Kind::Msg, s, 0, b"a", b"", b"payload"));
        }
        let rec = (b.len() - HEADER_LEN) / 3;
        b[HEADER_LEN + rec..HEADER_LEN + rec + 4].fill(0);
        let mut seen = vec![];
        let end = scan(&b, HEADER_LEN, b.len(), false, |_, s| {
            if let Scanned::Record(r) = s {
                seen.push(r.seq)
            }
        });
        assert_eq!(seen, vec![1, 3]);
        assert!(!end.torn);
    }

    #[test]
    fn scan_stops_at_torn_tail() {
        let mut b = vec![0u8; HEADER_LEN];
        b.extend(encode(Kind::Msg, 1, 0, b"a", b"", b"x"));
        let good = b.len();
        let r2 = encode(Kind::Msg, 2, 0, b"a", b"", b"yyyyyyyy");
        b.extend(&r2[..r2.len() / 2]);
        let end = scan(&b, HEADER_LEN, b.len(), false, |_, _| {});
        assert_eq!(
            end,
            ScanEnd {
                end: good,
                torn: true
            }
        );
    }
}
