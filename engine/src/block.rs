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
    let body_end = body.len() as u64;
    let mut t = Vec::with_capacity(offsets.len() * 8 + FOOTER_LEN);
    for o in offsets {
        t.extend_from_slice(&o.to_le_bytes());
    }
    // Slot -> index into the block's own subject dictionary, in order of first use. This runs
    // once per record when a block is sealed, so it hashes with xxh3 into a table of ids and
    // skips the lookup when a record repeats the previous record's subject.
    let mut dict: HashTable<u32> = HashTable::new();
    let mut names: Vec<(&[u8], u64)> = Vec::new();
    let mut prev: Option<(&[u8], u32)> = None;
    for &o in offsets {
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
    t.extend_from_slice(&SEAL_MAGIC);
    t.extend_from_slice(&block_id.to_le_bytes());
    t.extend_from_slice(&(offsets.len() as u64).to_le_bytes());
    t.extend_from_slice(&body_end.to_le_bytes());
    t.extend_from_slice(&first_seq.to_le_bytes());
    t.extend_from_slice(&dict_at.to_le_bytes());
    t.extend_from_slice(&(names.len() as u64).to_le_bytes());
    let sum = xxh3_64(&t);
    t.extend_from_slice(&sum.to_le_bytes());
    debug_assert!(decode_trailer(&[body, &t].concat()).is_some_and(|d| d.slots == offsets.len()));
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
    if f[0..8] != SEAL_MAGIC {
        return None;
    }
    let slots = usize::try_from(u64_at(f, 16)).ok()?;
    let body_end = usize::try_from(u64_at(f, 24)).ok()?;
    let dict_at = usize::try_from(u64_at(f, 40)).ok()?;
    let dict_len = usize::try_from(u64_at(f, 48)).ok()?;
    let tables = slots.checked_mul(8)?;
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
        dict_at,
        dict_len,
    };
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
        let ids = file.get(self.body_end + self.slots * 4..self.dict_at)?;
        Some(SlotSubjects { ids, names })
    }
}

/// Slot -> subject, read from a sealed block's trailer.
pub struct SlotSubjects<'a> {
    ids: &'a [u8],
    names: Vec<&'a [u8]>,
}

impl<'a> SlotSubjects<'a> {
    /// The dictionary index of `slot`'s subject.
    pub fn id(&self, slot: usize) -> Option<u32> {
        let b = self.ids.get(slot * 4..slot * 4 + 4)?;
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
            Table::Mapped { len, .. } => *len,
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
        if let Table::Mapped { .. } = self.table {
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
        let mut file = vec![0u8; HEADER_LEN];
        file.extend(encode(Kind::Msg, 5, 1, b"a.b", b"", b"x"));
        let second = file.len() as u32;
        file.extend(encode(Kind::Msg, 7, 1, b"c", b"", b"y"));
        let body_end = file.len();
        let t = encode_trailer(9, 5, &file, &[HEADER_LEN as u32, NO_RECORD, second]);
        file.extend(t);
        let t = decode_trailer(&file).unwrap();
        assert_eq!(
            (t.block_id, t.first_seq, t.slots, t.body_end),
            (9, 5, 3, body_end)
        );
        let subjects = t.subjects(&file).unwrap();
        let name = |i: usize| subjects.id(i).map(|id| subjects.names()[id as usize]);
        assert_eq!(
            (name(0), name(1), name(2)),
            (Some(&b"a.b"[..]), None, Some(&b"c"[..]))
        );
        let n = file.len();
        file[n - 20] ^= 1;
        assert_eq!(decode_trailer(&file), None);
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
