//! The record: the unit of the log. Layout in `docs/format.md` ("Record").

use xxhash_rust::xxh3::xxh3_64;

/// Bytes before the subject.
pub const HEADER_LEN: usize = 32;
/// Bytes after the payload (the xxh3-64 checksum).
pub const TRAILER_LEN: usize = 8;
/// Smallest valid record.
pub const MIN_RECORD_LEN: usize = HEADER_LEN + TRAILER_LEN;
/// Largest sequence number; leaves headroom so `seq + 1` never overflows. Decoders reject
/// anything larger as damage.
pub const MAX_SEQ: u64 = 1 << 62;
/// Largest subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 4096;
/// Largest headers + payload of one message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 32 << 20;
/// Largest record without extras; anything longer is damage, not data.
pub const MAX_RECORD_LEN: usize = MIN_RECORD_LEN + MAX_SUBJECT_LEN + MAX_MESSAGE_LEN;
/// Largest record the decoder accepts: `MAX_RECORD_LEN` with the largest id and a TTL.
pub const MAX_ENCODED_LEN: usize = MAX_RECORD_LEN + MAX_MSG_ID_LEN + 1 + TTL_LEN;

/// What a record does when replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A stored message with sequence `seq`.
    Msg = 1,
    /// Sequences `payload as u64 ..= seq` were skipped.
    Skip = 2,
    /// Message `seq` was removed.
    Delete = 3,
    /// Message `seq` was removed and its bytes overwritten.
    Erase = 4,
    /// Every message below `seq` was removed (purge and compact).
    Purge = 5,
    /// Every message above `seq` was removed and `seq` is the new last sequence.
    Truncate = 6,
    /// The messages in the payload's ranges were removed (limits, filtered purge); `seq` is
    /// the first of them.
    Remove = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Msg,
            2 => Kind::Skip,
            3 => Kind::Delete,
            4 => Kind::Erase,
            5 => Kind::Purge,
            6 => Kind::Truncate,
            7 => Kind::Remove,
            _ => return None,
        })
    }
}

/// Flag bit: the record's subject, headers and payload were overwritten by `erase`.
pub const FLAG_ERASED: u8 = 1;
/// Flag bit: more records of the same atomic batch follow; recovery drops a batch whose last
/// record (the one without this bit) is missing.
pub const FLAG_BATCH: u8 = 2;
/// Flag bit: the message carries a TTL, stored in the 8 bytes before the checksum.
pub const FLAG_TTL: u8 = 4;
/// Flag bit: the message is a subject delete marker written by the store.
pub const FLAG_MARKER: u8 = 8;
/// A message that replaced every earlier message of its subject (`Rollup::Subject`). The
/// removals are logged by their own records in the same batch; the flag only tells readers.
pub const FLAG_ROLLUP_SUB: u8 = 16;
/// A message that replaced every earlier message of the stream (`Rollup::All`).
pub const FLAG_ROLLUP_ALL: u8 = 32;
/// Flag bit: the message carries a message id (deduplication): the id's bytes, then its length
/// as one byte, between the payload and the TTL field (or the checksum).
pub const FLAG_MSG_ID: u8 = 64;
/// Longest message id, in bytes (its length is stored in one byte).
pub const MAX_MSG_ID_LEN: usize = 255;
/// Bytes of the TTL field of a message with [`FLAG_TTL`]: whole seconds as a `u32`, with
/// `u32::MAX` for "never" (100 years fit).
pub const TTL_LEN: usize = 4;

/// A decoded record borrowing from the block bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub kind: Kind,
    pub flags: u8,
    pub seq: u64,
    pub ts: i64,
    pub subject: &'a [u8],
    pub headers: &'a [u8],
    pub payload: &'a [u8],
    /// The raw TTL field (`FLAG_TTL`): seconds, or `u64::MAX` for "never".
    pub ttl: Option<u64>,
    /// The message id (`FLAG_MSG_ID`); empty without one.
    pub msg_id: &'a [u8],
    /// Whole encoded length.
    pub len: usize,
}

/// The fixed header alone, trusted once its own check passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: Kind,
    pub flags: u8,
    pub seq: u64,
    pub ts: i64,
    pub subject_len: usize,
    pub headers_len: usize,
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A zero length field (or no bytes at all): the end of the log.
    End,
    /// Fewer bytes than the header or the stated length need: a torn tail.
    Truncated,
    /// The header fails its check or is inconsistent: resynchronise.
    BadHeader,
    /// The header is good but the body fails the checksum: this record alone is lost.
    BadBody(Head),
}

/// Encoded size of a record.
pub fn encoded_len(subject: usize, headers: usize, payload: usize) -> usize {
    MIN_RECORD_LEN + subject + headers + payload
}

/// Check of the 28 fixed header bytes. A splitmix64-style mix rather than xxh3: it runs twice
/// per record (encode, decode) and costs a tenth as much. Every step is a bijection of the
/// state for a fixed input word, so any change confined to one word always changes the 64-bit
/// state; the stored low 32 bits miss a random change with probability 2^-32.
fn head_check(b: &[u8]) -> u32 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    let words = [
        u64_at(b, 0),
        u64_at(b, 8),
        u64_at(b, 16),
        u32_at(b, 24) as u64,
    ];
    for w in words {
        h = (h ^ w).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 29;
    }
    h as u32
}

/// What a message record may carry after its payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras<'a> {
    /// The raw TTL field's value (`FLAG_TTL`).
    pub ttl: Option<u64>,
    /// The message id (`FLAG_MSG_ID` when not empty), at most [`MAX_MSG_ID_LEN`] bytes.
    pub msg_id: &'a [u8],
}

impl Extras<'_> {
    /// A TTL alone.
    pub fn ttl(ttl: Option<u64>) -> Extras<'static> {
        Extras { ttl, msg_id: &[] }
    }
    /// Bytes they take in the record.
    pub fn len(&self) -> usize {
        id_field_len(self.msg_id.len()) + if self.ttl.is_some() { TTL_LEN } else { 0 }
    }
}

/// Bytes of the id field for an id of `n` bytes (none for no id).
fn id_field_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n + 1
    }
}

/// Encoded size of a message record with these extras.
pub fn msg_len(subject: usize, headers: usize, payload: usize, x: &Extras<'_>) -> usize {
    encoded_len(subject, headers, payload) + x.len()
}

/// Encodes a record into `out[..len]` (`msg_len`). `out` must be at least that long; returns
/// the length written. `FLAG_TTL` and `FLAG_MSG_ID` are set exactly when `x` has a TTL and an
/// id.
#[allow(clippy::too_many_arguments)]
pub fn encode_into(
    out: &mut [u8],
    kind: Kind,
    flags: u8,
    seq: u64,
    ts: i64,
    subject: &[u8],
    headers: &[u8],
    payload: &[u8],
    x: Extras<'_>,
) -> usize {
    let len = msg_len(subject.len(), headers.len(), payload.len(), &x);
    let mut flags = flags & !(FLAG_TTL | FLAG_MSG_ID);
    if x.ttl.is_some() {
        flags |= FLAG_TTL;
    }
    if !x.msg_id.is_empty() {
        flags |= FLAG_MSG_ID;
    }
    debug_assert!(out.len() >= len, "encode_into: buffer too small");
    debug_assert!(x.msg_id.len() <= MAX_MSG_ID_LEN);
    debug_assert!(subject.len() <= MAX_SUBJECT_LEN && len <= MAX_ENCODED_LEN);
    let out = &mut out[..len];
    out[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[4] = kind as u8;
    out[5] = flags;
    out[6..8].copy_from_slice(&(subject.len() as u16).to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16..24].copy_from_slice(&ts.to_le_bytes());
    out[24..28].copy_from_slice(&(headers.len() as u32).to_le_bytes());
    let hc = head_check(out);
    out[28..32].copy_from_slice(&hc.to_le_bytes());
    let mut p = HEADER_LEN;
    for part in [subject, headers, payload] {
        out[p..p + part.len()].copy_from_slice(part);
        p += part.len();
    }
    if !x.msg_id.is_empty() {
        out[p..p + x.msg_id.len()].copy_from_slice(x.msg_id);
        p += x.msg_id.len();
        out[p] = x.msg_id.len() as u8;
        p += 1;
    }
    if let Some(t) = x.ttl {
        out[p..p + TTL_LEN].copy_from_slice(&ttl_field(t).to_le_bytes());
        p += TTL_LEN;
    }
    let sum = xxh3_64(&out[..p]);
    out[p..p + 8].copy_from_slice(&sum.to_le_bytes());
    debug_assert_eq!(decode(out).map(|r| r.seq), Ok(seq));
    len
}

/// Encodes a record into a new vector.
#[cfg(test)]
pub fn encode(
    kind: Kind,
    seq: u64,
    ts: i64,
    subject: &[u8],
    headers: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut v = vec![0u8; encoded_len(subject.len(), headers.len(), payload.len())];
    encode_into(
        &mut v,
        kind,
        0,
        seq,
        ts,
        subject,
        headers,
        payload,
        Extras::default(),
    );
    v
}

/// Little-endian `u32` at `at` (the caller has checked the bounds).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Little-endian `u64` at `at` (the caller has checked the bounds).
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes and checks the fixed header at the start of `b`.
pub fn decode_head(b: &[u8]) -> Result<Head, DecodeError> {
    if b.len() < 4 || u32_at(b, 0) == 0 {
        return Err(DecodeError::End);
    }
    if b.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    if u32_at(b, 28) != head_check(b) {
        return Err(DecodeError::BadHeader);
    }
    let len = u32_at(b, 0) as usize;
    let kind = Kind::from_u8(b[4]).ok_or(DecodeError::BadHeader)?;
    let subject_len = u16::from_le_bytes([b[6], b[7]]) as usize;
    let headers_len = u32_at(b, 24) as usize;
    let ttl_len = if b[5] & FLAG_TTL != 0 { TTL_LEN } else { 0 };
    // An id takes at least two bytes (one of id, its length).
    let id_len = if b[5] & FLAG_MSG_ID != 0 { 2 } else { 0 };
    if !(MIN_RECORD_LEN..=MAX_ENCODED_LEN).contains(&len)
        || subject_len > MAX_SUBJECT_LEN
        || MIN_RECORD_LEN + ttl_len + id_len + subject_len + headers_len > len
    {
        return Err(DecodeError::BadHeader);
    }
    Ok(Head {
        len,
        kind,
        flags: b[5],
        seq: u64_at(b, 8),
        ts: u64_at(b, 16) as i64,
        subject_len,
        headers_len,
    })
}

/// Decodes and fully verifies the record at the start of `b`.
pub fn decode(b: &[u8]) -> Result<RecordRef<'_>, DecodeError> {
    decode_checked(b, true)
}

/// Decodes the record at the start of `b`, verifying the body checksum only with `verify`:
/// bytes that never left process memory since they were encoded or verified need not be
/// hashed again on every read.
pub fn decode_checked(b: &[u8], verify: bool) -> Result<RecordRef<'_>, DecodeError> {
    let h = decode_head(b)?;
    if b.len() < h.len {
        return Err(DecodeError::Truncated);
    }
    let body_end = h.len - TRAILER_LEN;
    if verify && u64_at(b, body_end) != xxh3_64(&b[..body_end]) {
        return Err(DecodeError::BadBody(h));
    }
    let (pl_end, ttl) = match h.flags & FLAG_TTL {
        0 => (body_end, None),
        _ => (
            body_end - TTL_LEN,
            Some(ttl_value(u32_at(b, body_end - TTL_LEN))),
        ),
    };
    let s = HEADER_LEN;
    let hd = s + h.subject_len;
    let pl = hd + h.headers_len;
    let (pl_end, msg_id) = match h.flags & FLAG_MSG_ID {
        0 => (pl_end, &b[pl_end..pl_end]),
        // The header check left room for the length byte and one id byte.
        _ => {
            let n = b[pl_end - 1] as usize;
            let at = (pl_end - 1).checked_sub(n).filter(|&at| n > 0 && at >= pl);
            let at = at.ok_or(DecodeError::BadBody(h))?;
            (at, &b[at..pl_end - 1])
        }
    };
    Ok(RecordRef {
        kind: h.kind,
        flags: h.flags,
        seq: h.seq,
        ts: h.ts,
        subject: &b[s..hd],
        headers: &b[hd..pl],
        payload: &b[pl..pl_end],
        ttl,
        msg_id,
        len: h.len,
    })
}

/// The subject of the record at `off` (its header must pass its check; the body is not
/// verified).
pub fn subject_at(bytes: &[u8], off: usize) -> Option<&[u8]> {
    let b = bytes.get(off..)?;
    let h = decode_head(b).ok()?;
    b.get(HEADER_LEN..HEADER_LEN + h.subject_len)
}

/// The 4-byte field for a TTL (`u64::MAX`, "never", is `u32::MAX`; no valid TTL is larger).
fn ttl_field(ttl: u64) -> u32 {
    debug_assert!(ttl == u64::MAX || ttl < u64::from(u32::MAX));
    u32::try_from(ttl).unwrap_or(u32::MAX)
}

/// The TTL a 4-byte field holds.
fn ttl_value(field: u32) -> u64 {
    match field {
        u32::MAX => u64::MAX,
        v => u64::from(v),
    }
}

/// The timestamp and raw TTL field of the message record at `off`, if it has one (its header
/// must pass its check; the body is not verified).
pub fn ttl_at(bytes: &[u8], off: usize) -> Option<(i64, u64)> {
    let b = bytes.get(off..)?;
    let h = decode_head(b).ok()?;
    if h.flags & FLAG_TTL == 0 || h.kind != Kind::Msg {
        return None;
    }
    let at = h.len.checked_sub(TRAILER_LEN + TTL_LEN)?;
    Some((h.ts, ttl_value(u32_at(b.get(at..at + TTL_LEN)?, 0))))
}

/// The stored checksum of the intact record at `off`, which identifies it.
pub fn checksum_at(bytes: &[u8], off: usize) -> Option<u64> {
    let r = bytes.get(off..)?;
    let h = decode_head(r).ok()?;
    let end = h.len.checked_sub(TRAILER_LEN)?;
    r.get(end..h.len).map(|b| u64_at(b, 0))
}

/// The erased form of the message record at the start of `b`: same length and sequence, the
/// subject, headers and payload zeroed, flagged [`FLAG_ERASED`]. `None` if `b` does not start
/// with a message record (damaged records are left as they are).
pub fn erased_copy(b: &[u8]) -> Option<Vec<u8>> {
    let h = decode_head(b).ok()?;
    if h.kind != Kind::Msg || b.len() < h.len {
        return None;
    }
    let ttl = ttl_at(b, 0).map(|(_, t)| t);
    // The id goes too: its bytes become part of the zeroed payload.
    let body = h.len - MIN_RECORD_LEN - if ttl.is_some() { TTL_LEN } else { 0 };
    let zeros = vec![0u8; body];
    let (subject, rest) = zeros.split_at(h.subject_len);
    let (headers, payload) = rest.split_at(h.headers_len);
    let mut out = vec![0u8; h.len];
    encode_into(
        &mut out,
        Kind::Msg,
        (h.flags & (FLAG_BATCH | FLAG_MARKER | FLAG_ROLLUP_SUB | FLAG_ROLLUP_ALL)) | FLAG_ERASED,
        h.seq,
        h.ts,
        subject,
        headers,
        payload,
        Extras::ttl(ttl),
    );
    Some(out)
}

/// From a failed position, the next offset (within `b`) where a record with a valid header
/// starts, if any. Recovery uses it to step over one damaged record.
pub fn resync(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + HEADER_LEN <= b.len() {
        if decode_head(&b[i..]).is_ok() {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = encode(Kind::Msg, 7, 99, b"a.b", b"h", b"payload");
        let r = decode(&v).unwrap();
        assert_eq!((r.kind, r.seq, r.ts), (Kind::Msg, 7, 99));
        assert_eq!(
            (r.subject, r.headers, r.payload),
            (&b"a.b"[..], &b"h"[..], &b"payload"[..])
        );
        assert_eq!(r.len, v.len());
    }

    fn encode_with(id: &[u8], ttl: Option<u64>) -> Vec<u8> {
        let x = Extras { ttl, msg_id: id };
        let mut v = vec![0u8; msg_len(3, 1, 5, &x)];
        encode_into(&mut v, Kind::Msg, 0, 9, 1, b"a.b", b"h", b"hello", x);
        v
    }

    #[test]
    fn message_ids_round_trip_with_and_without_a_ttl() {
        for ttl in [None, Some(60)] {
            for id in [&b""[..], b"x", b"order-42", &[7u8; MAX_MSG_ID_LEN]] {
                let v = encode_with(id, ttl);
                let r = decode(&v).unwrap();
                assert_eq!((r.payload, r.msg_id, r.ttl), (&b"hello"[..], id, ttl));
                assert_eq!(r.flags & FLAG_MSG_ID != 0, !id.is_empty());
                assert_eq!(ttl_at(&v, 0).map(|(_, t)| t), ttl);
                for i in 0..v.len() {
                    let mut c = v.clone();
                    c[i] ^= 0x10;
                    assert!(decode(&c).is_err(), "flip at {i} not detected");
                }
            }
        }
    }

    #[test]
    fn erasing_drops_the_id_with_the_payload() {
        let v = encode_with(b"order-42", Some(60));
        let e = erased_copy(&v).unwrap();
        let r = decode(&e).unwrap();
        assert_eq!((r.msg_id, r.ttl, e.len()), (&b""[..], Some(60), v.len()));
        assert!(r.payload.iter().all(|&b| b == 0));
    }

    #[test]
    fn an_id_length_past_the_payload_start_is_damage() {
        let mut v = encode_with(b"id", None);
        let n = v.len();
        // The length byte claims more id than the body holds; fix the checksum so only the
        // field is wrong.
        v[n - 9] = 200;
        let sum = xxh3_64(&v[..n - 8]);
        v[n - 8..].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(decode(&v), Err(DecodeError::BadBody(_))));
    }

    #[test]
    fn zeros_are_end_of_log() {
        assert_eq!(decode(&[0u8; 64]), Err(DecodeError::End));
        assert_eq!(decode(&[]), Err(DecodeError::End));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let v = encode(Kind::Msg, 1, 2, b"x.y", b"", b"hello world");
        for i in 0..v.len() {
            for bit in 0..8 {
                let mut c = v.clone();
                c[i] ^= 1 << bit;
                assert!(decode(&c).is_err(), "flip at {i}:{bit} not detected");
            }
        }
    }

    #[test]
    fn body_damage_keeps_the_header() {
        let mut v = encode(Kind::Msg, 5, 0, b"s", b"", b"abc");
        let n = v.len();
        v[n - 10] ^= 0xff;
        assert!(matches!(decode(&v), Err(DecodeError::BadBody(h)) if h.seq == 5));
    }

    #[test]
    fn resync_finds_next_record() {
        let mut v = encode(Kind::Msg, 1, 0, b"a", b"", b"one");
        let first = v.len();
        v.extend(encode(Kind::Msg, 2, 0, b"a", b"", b"two"));
        v[2] ^= 0x40;
        assert_eq!(decode(&v), Err(DecodeError::BadHeader));
        assert_eq!(resync(&v, 1), Some(first));
    }
}
