//! Messages across the boundary: what a host appends (`tidelog_message`, borrowed for one
//! call) and what it reads (`tidelog_msg`, owned, seen through a `tidelog_msg_view`).

use std::ffi::c_char;

use engine::{Expect, NewMessage, Rollup, StoredMessage, Ttl};

use crate::error::Fail;
use crate::guard::{bytes, free, str_bytes};

/// `ttl` value: never removed by age (exempt from max_age too).
pub const TIDELOG_TTL_NEVER: u64 = u64::MAX;

/// `expect` bit: the stream's last sequence must be `expect_last_seq`.
pub const TIDELOG_EXPECT_LAST_SEQ: u32 = 1;
/// `expect` bit: the last sequence of the subject (or of `expect_filter`) must be
/// `expect_last_subject_seq`.
pub const TIDELOG_EXPECT_LAST_SUBJECT_SEQ: u32 = 2;

/// What a message replaces when it is stored.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tidelog_rollup {
    None = 0,
    /// Every earlier message of its subject.
    Subject = 1,
    /// Every earlier message of the stream.
    All = 2,
}

/// A message to append, borrowed for the duration of the call. Zero-initialise it and set
/// what you need: a zeroed field means "none". Lengths are in bytes; pointers may be NULL when
/// their length is 0.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tidelog_message {
    pub subject: *const c_char,
    pub subject_len: usize,
    pub headers: *const u8,
    pub headers_len: usize,
    pub payload: *const u8,
    pub payload_len: usize,
    /// Seconds to live (0: the stream's rules only; `TIDELOG_TTL_NEVER`: never by age).
    pub ttl: u64,
    /// A `tidelog_rollup` value.
    pub rollup: u32,
    /// A message id for duplicate detection (1-255 bytes), or NULL.
    pub msg_id: *const u8,
    pub msg_id_len: usize,
    /// `TIDELOG_EXPECT_*` bits saying which expectations below apply.
    pub expect: u32,
    pub expect_last_seq: u64,
    pub expect_last_subject_seq: u64,
    /// A subject or filter to check `expect_last_subject_seq` against instead of the
    /// message's subject (length 0: none).
    pub expect_filter: *const c_char,
    pub expect_filter_len: usize,
}

/// One entry of a packed batch (`tidelog_stream_append_packed`): the message's subject,
/// headers, payload, id and expectation filter lie back to back in the batch buffer, in that
/// order, right after the previous entry's. Suits hosts whose memory may not hold pointers
/// into C (Go). The fields mean what they mean in `tidelog_message`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct tidelog_packed_message {
    pub subject_len: u32,
    pub headers_len: u32,
    pub payload_len: u32,
    pub msg_id_len: u32,
    pub expect_filter_len: u32,
    /// `TIDELOG_EXPECT_*` bits.
    pub expect: u32,
    pub ttl: u64,
    pub expect_last_seq: u64,
    pub expect_last_subject_seq: u64,
}

/// A stored message, owned by the caller until `tidelog_msg_free`. Immutable, so
/// thread-safe.
#[allow(non_camel_case_types)]
pub struct tidelog_msg(pub(crate) StoredMessage);

/// A look at a stored message's fields. Its pointers belong to the `tidelog_msg` (or
/// `tidelog_deliveries`) it came from and live as long as that does. Strings are not
/// NUL-terminated: use the lengths.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tidelog_msg_view {
    pub seq: u64,
    /// Nanoseconds since the Unix epoch.
    pub ts: i64,
    pub subject: *const c_char,
    pub subject_len: usize,
    pub headers: *const u8,
    pub headers_len: usize,
    pub payload: *const u8,
    pub payload_len: usize,
    /// As `tidelog_message.ttl`.
    pub ttl: u64,
    /// A delete marker the store wrote (its reason is in the headers).
    pub marker: bool,
    /// A `tidelog_rollup` value.
    pub rollup: u32,
    pub msg_id: *const u8,
    pub msg_id_len: usize,
}

impl tidelog_msg_view {
    pub(crate) fn of(m: &StoredMessage) -> tidelog_msg_view {
        let (msg_id, msg_id_len) = m
            .msg_id()
            .map_or((std::ptr::null(), 0), |id| (id.as_ptr(), id.len()));
        tidelog_msg_view {
            seq: m.seq,
            ts: m.ts,
            subject: m.subject().as_ptr().cast(),
            subject_len: m.subject().len(),
            headers: m.headers().as_ptr(),
            headers_len: m.headers().len(),
            payload: m.payload().as_ptr(),
            payload_len: m.payload().len(),
            ttl: match m.ttl {
                Some(Ttl::Secs(s)) => s,
                Some(Ttl::Never) => TIDELOG_TTL_NEVER,
                None => 0,
            },
            marker: m.marker,
            rollup: match m.rollup {
                Some(Rollup::Subject) => tidelog_rollup::Subject as u32,
                Some(Rollup::All) => tidelog_rollup::All as u32,
                None => tidelog_rollup::None as u32,
            },
            msg_id,
            msg_id_len,
        }
    }
}

pub(crate) fn ttl(v: u64) -> Option<Ttl> {
    match v {
        0 => None,
        TIDELOG_TTL_NEVER => Some(Ttl::Never),
        s => Some(Ttl::Secs(s)),
    }
}

fn rollup(v: u32) -> Result<Option<Rollup>, Fail> {
    match v {
        0 => Ok(None),
        1 => Ok(Some(Rollup::Subject)),
        2 => Ok(Some(Rollup::All)),
        v => Err(Fail::invalid(format!("rollup {v}"))),
    }
}

fn msg_id<'a>(p: *const u8, len: usize) -> Result<Option<&'a [u8]>, Fail> {
    if p.is_null() && len == 0 {
        return Ok(None);
    }
    // SAFETY: the caller vouches for `len` bytes at `p`.
    unsafe { bytes(p, len, "msg_id") }.map(Some)
}

impl tidelog_message {
    /// The engine's view of this message, borrowing the host's memory.
    ///
    /// # Safety
    /// The pointers are valid for their lengths for `'a`.
    pub(crate) unsafe fn engine_msg<'a>(&self) -> Result<NewMessage<'a>, Fail> {
        let mut m = NewMessage::new(
            str_bytes(self.subject, self.subject_len, "subject")?,
            bytes(self.payload, self.payload_len, "payload")?,
        )
        .with_headers(bytes(self.headers, self.headers_len, "headers")?);
        m.ttl = ttl(self.ttl);
        m.rollup = rollup(self.rollup)?;
        m.msg_id = msg_id(self.msg_id, self.msg_id_len)?;
        let filter = str_bytes(self.expect_filter, self.expect_filter_len, "expect_filter")?;
        m.expect = expect(
            self.expect,
            self.expect_last_seq,
            self.expect_last_subject_seq,
            filter,
        )?;
        Ok(m)
    }
}

/// The expectations `bits` select; an empty filter means the message's subject.
fn expect(
    bits: u32,
    last_seq: u64,
    last_subject_seq: u64,
    filter: &str,
) -> Result<Expect<'_>, Fail> {
    if bits & !(TIDELOG_EXPECT_LAST_SEQ | TIDELOG_EXPECT_LAST_SUBJECT_SEQ) != 0 {
        return Err(Fail::invalid(format!("expect bits {bits:#x}")));
    }
    Ok(Expect {
        last_seq: (bits & TIDELOG_EXPECT_LAST_SEQ != 0).then_some(last_seq),
        last_subject_seq: (bits & TIDELOG_EXPECT_LAST_SUBJECT_SEQ != 0).then_some(last_subject_seq),
        subject_filter: (!filter.is_empty()).then_some(filter),
    })
}

/// Splits a packed batch into messages borrowing `buf`.
pub(crate) fn unpack<'a>(
    buf: &'a [u8],
    entries: &[tidelog_packed_message],
) -> Result<Vec<NewMessage<'a>>, Fail> {
    let mut rest = buf;
    let mut take = |n: u32, what: &str, i: usize| -> Result<&'a [u8], Fail> {
        let n = n as usize;
        if n > rest.len() {
            let f = Fail::invalid(format!("{what} runs past the buffer"));
            return Err(crate::append::at(f, i));
        }
        let (a, b) = rest.split_at(n);
        rest = b;
        Ok(a)
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let not_utf8 =
            |what: &str| crate::append::at(Fail::invalid(format!("{what} is not UTF-8")), i);
        let subject = std::str::from_utf8(take(e.subject_len, "subject", i)?)
            .map_err(|_| not_utf8("subject"))?;
        let headers = take(e.headers_len, "headers", i)?;
        let payload = take(e.payload_len, "payload", i)?;
        let id = take(e.msg_id_len, "msg_id", i)?;
        let filter = std::str::from_utf8(take(e.expect_filter_len, "expect_filter", i)?)
            .map_err(|_| not_utf8("expect_filter"))?;
        let mut m = NewMessage::new(subject, payload).with_headers(headers);
        m.ttl = ttl(e.ttl);
        if e.msg_id_len > 0 {
            m.msg_id = Some(id);
        }
        m.expect = expect(
            e.expect,
            e.expect_last_seq,
            e.expect_last_subject_seq,
            filter,
        )
        .map_err(|f| crate::append::at(f, i))?;
        out.push(m);
    }
    if !rest.is_empty() {
        return Err(Fail::invalid(format!(
            "packed batch: {} bytes after the last message",
            rest.len()
        )));
    }
    Ok(out)
}

/// The fields of a stored message (all zero and NULL for NULL).
///
/// # Safety
/// `msg` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_msg_get_view(msg: *const tidelog_msg) -> tidelog_msg_view {
    match msg.as_ref() {
        Some(m) => tidelog_msg_view::of(&m.0),
        None => tidelog_msg_view {
            seq: 0,
            ts: 0,
            subject: std::ptr::null(),
            subject_len: 0,
            headers: std::ptr::null(),
            headers_len: 0,
            payload: std::ptr::null(),
            payload_len: 0,
            ttl: 0,
            marker: false,
            rollup: 0,
            msg_id: std::ptr::null(),
            msg_id_len: 0,
        },
    }
}

/// Frees a message; NULL is ignored.
///
/// # Safety
/// `msg` is NULL or from this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_msg_free(msg: *mut tidelog_msg) {
    free(msg);
}
