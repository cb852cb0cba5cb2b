//! Appends: one message, a batch of `tidelog_message`s, a packed batch, and raw (replica)
//! appends. A batch is one boundary crossing and, under durable appends, one fdatasync.

use std::ffi::c_char;

use engine::NewMessage;

use crate::error::{tidelog_error, tidelog_status, Fail};
use crate::guard::{arg, bytes, call, items, put, str_bytes};
use crate::message::{tidelog_message, tidelog_packed_message, unpack};
use crate::stream::tidelog_stream;

/// Where an append went.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct tidelog_appended {
    pub seq: u64,
    /// Nanoseconds since the Unix epoch.
    pub ts: i64,
    /// The message id was seen within the duplicate window: nothing was stored and `seq` is
    /// the original's.
    pub duplicate: bool,
}

/// Where a batch went: sequences `first_seq ..= last_seq`, one timestamp.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct tidelog_batch_appended {
    pub first_seq: u64,
    pub last_seq: u64,
    pub ts: i64,
}

unsafe fn one(
    stream: *const tidelog_stream,
    out: *mut tidelog_appended,
    err: *mut tidelog_error,
    msg: impl FnOnce() -> Result<NewMessage<'static>, Fail>,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let a = s.0.append_msg(&msg()?)?;
        put(
            out,
            tidelog_appended {
                seq: a.seq,
                ts: a.ts,
                duplicate: a.duplicate,
            },
        );
        Ok(())
    })
}

/// Appends one message. Under durable appends it returns once the message is on stable
/// storage. `out` may be NULL.
///
/// # Safety
/// `stream` NULL or live; each pointer valid for its length; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_append(
    stream: *const tidelog_stream,
    subject: *const c_char,
    subject_len: usize,
    headers: *const u8,
    headers_len: usize,
    payload: *const u8,
    payload_len: usize,
    out: *mut tidelog_appended,
    err: *mut tidelog_error,
) -> tidelog_status {
    one(stream, out, err, || {
        Ok(NewMessage::new(
            str_bytes(subject, subject_len, "subject")?,
            bytes(payload, payload_len, "payload")?,
        )
        .with_headers(bytes(headers, headers_len, "headers")?))
    })
}

/// Appends one message with everything `tidelog_message` can say (TTL, rollup, message id,
/// expectations). `out` may be NULL.
///
/// # Safety
/// `stream`, `msg` NULL or live (with `msg`'s pointers valid); `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_append_msg(
    stream: *const tidelog_stream,
    msg: *const tidelog_message,
    out: *mut tidelog_appended,
    err: *mut tidelog_error,
) -> tidelog_status {
    one(stream, out, err, || arg(msg, "msg")?.engine_msg())
}

unsafe fn batch(
    stream: *const tidelog_stream,
    out: *mut tidelog_batch_appended,
    err: *mut tidelog_error,
    msgs: impl FnOnce() -> Result<Vec<NewMessage<'static>>, Fail>,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let msgs = msgs()?;
        let b =
            s.0.append_batch(&msgs)
                .map_err(|e| at_fault(&s.0, &msgs, e))?;
        put(
            out,
            tidelog_batch_appended {
                first_seq: b.first_seq,
                last_seq: b.last_seq,
                ts: b.ts,
            },
        );
        Ok(())
    })
}

/// Appends `n` messages atomically: all are stored with consecutive sequences, or none is.
/// When one message is at fault (malformed, invalid subject, too large, not allowed, a
/// duplicate id) the error's `index` names it; a failed expectation, a limit or a full store
/// concern the batch as a whole and leave `index` 0. Rollups are not allowed in a batch.
///
/// # Safety
/// `stream` NULL or live; `msgs` points to `n` messages with valid pointers; `out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_append_batch(
    stream: *const tidelog_stream,
    msgs: *const tidelog_message,
    n: usize,
    out: *mut tidelog_batch_appended,
    err: *mut tidelog_error,
) -> tidelog_status {
    batch(stream, out, err, || {
        items(msgs, n, "msgs")?
            .iter()
            .enumerate()
            .map(|(i, m)| m.engine_msg().map_err(|f| at(f, i)))
            .collect()
    })
}

/// As `tidelog_stream_append_batch`, for messages packed into one buffer: `entries[i]` gives
/// the lengths of message `i`, whose bytes follow message `i - 1`'s in `buf`. The buffer must
/// hold exactly the messages.
///
/// # Safety
/// `stream` NULL or live; `buf` valid for `buf_len` bytes; `entries` for `n` entries; `out`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_append_packed(
    stream: *const tidelog_stream,
    buf: *const u8,
    buf_len: usize,
    entries: *const tidelog_packed_message,
    n: usize,
    out: *mut tidelog_batch_appended,
    err: *mut tidelog_error,
) -> tidelog_status {
    batch(stream, out, err, || {
        unpack(bytes(buf, buf_len, "buf")?, items(entries, n, "entries")?)
    })
}

/// Stores a message under the sequence and timestamp the caller gives (replicas and mirrors):
/// `seq` must be after the last sequence, and a gap becomes skipped sequences. A TTL and a
/// rollup apply as at the origin unless the stream's replica options say otherwise.
///
/// # Safety
/// `stream`, `msg` NULL or live (with `msg`'s pointers valid).
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_append_raw(
    stream: *const tidelog_stream,
    seq: u64,
    ts: i64,
    msg: *const tidelog_message,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let m = arg(msg, "msg")?.engine_msg()?;
        Ok(s.0.append_raw_msg(seq, ts, &m)?)
    })
}

/// A batch refused for one message's sake names it: the engine reports what was wrong, and
/// the first message failing the per-message checks is the one (only on the failure path).
fn at_fault(s: &engine::Stream, msgs: &[NewMessage<'_>], e: engine::AppendError) -> Fail {
    let f = Fail::from(e);
    use tidelog_status as S;
    let per_message = matches!(
        f.status,
        S::InvalidSubject
            | S::SubjectNotInStream
            | S::TooLarge
            | S::InvalidMsgId
            | S::NotAllowed
            | S::InvalidTtl
            | S::InvalidFilter
    );
    // The engine's own order: each message's checks, then "no rollup in a batch".
    match msgs
        .iter()
        .position(|m| s.check_msg(m).is_err() || m.rollup.is_some())
    {
        Some(i) if per_message => at(f, i),
        _ => f,
    }
}

/// A malformed message of a batch names its position.
pub(crate) fn at(mut f: Fail, i: usize) -> Fail {
    f.info.index = i as u64;
    f.message = format!("message {i}: {}", f.message);
    f
}
