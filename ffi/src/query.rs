//! Reads: by sequence, next/previous/last by filter, and subject queries.

use std::ffi::c_char;

use engine::{StoredMessage, Stream};

use crate::error::{tidelog_error, tidelog_status, Fail};
use crate::guard::{arg, call, cstr, cstrs, free, give, out_ptr};
use crate::message::tidelog_msg;
use crate::stream::tidelog_stream;

/// Per-subject figures of `tidelog_stream_subjects_state`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tidelog_subject_state {
    /// Not NUL-terminated: use `subject_len`.
    pub subject: *const c_char,
    pub subject_len: usize,
    pub messages: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// The result of `tidelog_stream_subjects_state`, owned until `tidelog_subjects_free`.
/// Immutable, so thread-safe.
#[allow(non_camel_case_types)]
pub struct tidelog_subjects {
    _names: Vec<String>,
    items: Vec<tidelog_subject_state>,
}

// SAFETY: the raw pointers in `items` point into `_names`, which is owned and never changed.
unsafe impl Send for tidelog_subjects {}
unsafe impl Sync for tidelog_subjects {}

unsafe fn found(
    stream: *const tidelog_stream,
    out: *mut *mut tidelog_msg,
    err: *mut tidelog_error,
    f: impl FnOnce(&Stream) -> Result<Option<StoredMessage>, Fail>,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let out = out_ptr(out, "out")?;
        let m =
            f(&s.0)?.ok_or_else(|| Fail::new(tidelog_status::NotFound, "no matching message"))?;
        give(out, tidelog_msg(m));
        Ok(())
    })
}

/// Reads message `seq` (`TIDELOG_STATUS_NOT_FOUND` if it is not stored). Free `*out` with
/// `tidelog_msg_free`.
///
/// # Safety
/// `stream` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_load(
    stream: *const tidelog_stream,
    seq: u64,
    out: *mut *mut tidelog_msg,
    err: *mut tidelog_error,
) -> tidelog_status {
    found(stream, out, err, |s| Ok(Some(s.load(seq)?)))
}

/// The first message at or after `from_seq` matching `filter` (`TIDELOG_STATUS_NOT_FOUND`
/// when none does).
///
/// # Safety
/// `stream` NULL or live; `filter` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_load_next(
    stream: *const tidelog_stream,
    filter: *const c_char,
    from_seq: u64,
    out: *mut *mut tidelog_msg,
    err: *mut tidelog_error,
) -> tidelog_status {
    found(stream, out, err, |s| {
        Ok(s.load_next(cstr(filter, "filter")?, from_seq)?)
    })
}

/// The last message at or before `from_seq` matching `filter`.
///
/// # Safety
/// As `tidelog_stream_load_next`.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_load_prev(
    stream: *const tidelog_stream,
    filter: *const c_char,
    from_seq: u64,
    out: *mut *mut tidelog_msg,
    err: *mut tidelog_error,
) -> tidelog_status {
    found(stream, out, err, |s| {
        Ok(s.load_prev(cstr(filter, "filter")?, from_seq)?)
    })
}

/// The newest message of a subject, or matching a filter.
///
/// # Safety
/// `stream` NULL or live; `subject_or_filter` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_load_last(
    stream: *const tidelog_stream,
    subject_or_filter: *const c_char,
    out: *mut *mut tidelog_msg,
    err: *mut tidelog_error,
) -> tidelog_status {
    found(stream, out, err, |s| {
        Ok(s.load_last(cstr(subject_or_filter, "subject_or_filter")?)?)
    })
}

/// The exact number of messages at or after `from_seq` matching `filter`; with
/// `last_per_subject`, of matching subjects whose last message is at or after `from_seq`.
///
/// # Safety
/// `stream` NULL or live; `filter` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_num_pending(
    stream: *const tidelog_stream,
    from_seq: u64,
    filter: *const c_char,
    last_per_subject: bool,
    out: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let filter = cstr(filter, "filter")?;
        let out = out_ptr(out, "out")?;
        *out = s.0.num_pending(from_seq, filter, last_per_subject)?;
        Ok(())
    })
}

/// Every subject matching `filter` with its count and first and last sequence, sorted by
/// subject. Free `*out` with `tidelog_subjects_free`.
///
/// # Safety
/// `stream` NULL or live; `filter` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_subjects_state(
    stream: *const tidelog_stream,
    filter: *const c_char,
    out: *mut *mut tidelog_subjects,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let filter = cstr(filter, "filter")?;
        let out = out_ptr(out, "out")?;
        let map = s.0.subjects_state(filter)?;
        let names: Vec<String> = map.keys().cloned().collect();
        let items = names
            .iter()
            .zip(map.values())
            .map(|(n, st)| tidelog_subject_state {
                subject: n.as_ptr().cast(),
                subject_len: n.len(),
                messages: st.messages,
                first_seq: st.first_seq,
                last_seq: st.last_seq,
            })
            .collect();
        give(
            out,
            tidelog_subjects {
                _names: names,
                items,
            },
        );
        Ok(())
    })
}

/// The entries of a subjects result: `*len` of them, valid until it is freed. NULL (and 0)
/// for NULL.
///
/// # Safety
/// `subjects` NULL or live; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_subjects_items(
    subjects: *const tidelog_subjects,
    len: *mut usize,
) -> *const tidelog_subject_state {
    let (p, n) = subjects
        .as_ref()
        .map_or((std::ptr::null(), 0), |s| (s.items.as_ptr(), s.items.len()));
    crate::guard::put(len, n);
    p
}

/// Frees a subjects result; NULL is ignored.
///
/// # Safety
/// `subjects` NULL or from this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_subjects_free(subjects: *mut tidelog_subjects) {
    free(subjects);
}

/// The last sequence at or below `up_to_seq` (0: the stream's last) of every subject matching
/// any of the `n` filters, ascending, into `seqs` (room for `cap`); `*len` gets how many.
/// More than `cap` results is `TIDELOG_STATUS_TOO_MANY_RESULTS`, writing nothing.
///
/// # Safety
/// `stream` NULL or live; `filters` `n` NUL-terminated strings; `seqs` room for `cap`;
/// `len` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_multi_last_seqs(
    stream: *const tidelog_stream,
    filters: *const *const c_char,
    n: usize,
    up_to_seq: u64,
    seqs: *mut u64,
    cap: usize,
    len: *mut usize,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let filters = cstrs(filters, n, "filters")?;
        let len = out_ptr(len, "len")?;
        if cap > 0 {
            out_ptr(seqs, "seqs")?;
        }
        let found = s.0.multi_last_seqs(&filters, up_to_seq, cap)?;
        if found.len() > cap {
            return Err(Fail::new(
                tidelog_status::TooManyResults,
                "more results than cap",
            ));
        }
        if !found.is_empty() {
            std::ptr::copy_nonoverlapping(found.as_ptr(), seqs, found.len());
        }
        *len = found.len();
        Ok(())
    })
}

/// The first sequence stored at or after `ts` (ns since the epoch); the last sequence + 1 if
/// none is.
///
/// # Safety
/// `stream` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_seq_for_time(
    stream: *const tidelog_stream,
    ts: i64,
    out: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let out = out_ptr(out, "out")?;
        *out = s.0.seq_for_time(ts);
        Ok(())
    })
}
