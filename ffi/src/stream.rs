//! Stream configs, stream handles, their state, and the calls that remove messages.

use std::ffi::c_char;

use engine::{
    BoundBy, Dedup, Discard, Durability, ReplicaOptions, Retention, Storage, Stream, StreamConfig,
};

use crate::error::{tidelog_error, tidelog_status, Fail};
use crate::guard::{arg, call, cstr, cstrs, free, give, millis, out_ptr, put};
use crate::store::tidelog_store;
use crate::strings::{tidelog_string, tidelog_strings};

/// A stream of a store. Thread-safe: any number of threads may use one handle at once. Free
/// it when no call using it is running; it does not keep the store open.
#[allow(non_camel_case_types)]
pub struct tidelog_stream(pub(crate) Stream);

/// A stream configuration under construction. Not thread-safe. Every setter returns
/// `TIDELOG_STATUS_NULL_ARGUMENT` for a NULL config or `TIDELOG_STATUS_INVALID_ARGUMENT` for
/// an unknown enum value; values themselves are checked when the stream is created.
#[allow(non_camel_case_types)]
pub struct tidelog_stream_config(pub(crate) StreamConfig);

/// Where a stream keeps its messages.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub enum tidelog_storage {
    File = 0,
    Memory = 1,
}

/// When an append counts as stored (see docs/durability.md).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub enum tidelog_durability {
    /// After fdatasync, shared by concurrent appenders (the default).
    Always = 0,
    /// Synced at least every `interval_ms`.
    Interval = 1,
    /// Synced only at checkpoints.
    None = 2,
}

/// What happens when an append would break a limit.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub enum tidelog_discard {
    Old = 0,
    New = 1,
    NewPerSubject = 2,
}

/// When messages leave besides limits, TTLs and removals.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub enum tidelog_retention {
    Limits = 0,
    Interest = 1,
    WorkQueue = 2,
}

/// Which limit bounds a stream's bytes.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tidelog_bound_by {
    /// Its own max_bytes.
    Stream = 0,
    /// The store's budget.
    Store = 1,
}

/// A stream's state at one moment.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tidelog_stream_state {
    pub messages: u64,
    /// Bytes of the stored records.
    pub bytes: u64,
    pub first_seq: u64,
    pub first_ts: i64,
    pub last_seq: u64,
    pub last_ts: i64,
    /// Removed sequences between first_seq and last_seq.
    pub num_deleted: u64,
    pub num_subjects: u64,
    pub blocks: u64,
    /// The byte bound in force, and where it comes from.
    pub max_bytes: u64,
    pub bound_by: tidelog_bound_by,
    /// Bytes the stream's files take on disk.
    pub disk_bytes: u64,
    /// Writes are refused until the stream heals.
    pub poisoned: bool,
}

/// A new config for stream `name` with the defaults: file storage, durable appends, no
/// limits of its own (bound by the store's budget), discard old. Free with
/// `tidelog_stream_config_free`.
///
/// # Safety
/// `name` is NUL-terminated; `out` writable; `err` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_new(
    name: *const c_char,
    out: *mut *mut tidelog_stream_config,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let name = cstr(name, "name")?;
        let out = out_ptr(out, "out")?;
        give(out, tidelog_stream_config(StreamConfig::new(name)));
        Ok(())
    })
}

/// A config from its JSON form (as `tidelog_stream_config_json` writes it).
///
/// # Safety
/// `json` is NUL-terminated; `out` writable; `err` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_from_json(
    json: *const c_char,
    out: *mut *mut tidelog_stream_config,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let json = cstr(json, "json")?;
        let out = out_ptr(out, "out")?;
        let cfg: StreamConfig = serde_json::from_str(json)
            .map_err(|e| Fail::new(tidelog_status::Config, format!("stream config JSON: {e}")))?;
        give(out, tidelog_stream_config(cfg));
        Ok(())
    })
}

/// Frees a config; NULL is ignored.
///
/// # Safety
/// `cfg` is NULL or from this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_free(cfg: *mut tidelog_stream_config) {
    free(cfg);
}

unsafe fn set_cfg(
    cfg: *mut tidelog_stream_config,
    f: impl FnOnce(&mut StreamConfig) -> Result<(), Fail>,
) -> tidelog_status {
    match cfg.as_mut() {
        Some(c) => call(std::ptr::null_mut(), || f(&mut c.0)),
        None => tidelog_status::NullArgument,
    }
}

/// Limits of 0 mean "none".
fn limit(v: u64) -> Option<u64> {
    (v > 0).then_some(v)
}

/// The subjects the stream accepts (subjects or filters); none: any subject.
///
/// # Safety
/// `cfg` NULL or live; `subjects` points to `n` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_subjects(
    cfg: *mut tidelog_stream_config,
    subjects: *const *const c_char,
    n: usize,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.subjects = cstrs(subjects, n, "subjects")?
            .into_iter()
            .map(String::from)
            .collect();
        Ok(())
    })
}

/// A `tidelog_storage` value.
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_storage(
    cfg: *mut tidelog_stream_config,
    storage: u32,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.storage = match storage {
            0 => Storage::File,
            1 => Storage::Memory,
            v => return Err(Fail::invalid(format!("storage {v}"))),
        };
        Ok(())
    })
}

/// A `tidelog_durability` value; `interval_ms` is used by `TIDELOG_DURABILITY_INTERVAL`.
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_durability(
    cfg: *mut tidelog_stream_config,
    durability: u32,
    interval_ms: u64,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.durability = match durability {
            0 => Durability::Always,
            1 => Durability::Interval(millis(interval_ms)),
            2 => Durability::None,
            v => return Err(Fail::invalid(format!("durability {v}"))),
        };
        Ok(())
    })
}

/// Block file size in bytes, and the largest message (0: the default for each).
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_sizes(
    cfg: *mut tidelog_stream_config,
    block_size: u64,
    max_msg_size: u32,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        if block_size > 0 {
            c.block_size = block_size;
        }
        if max_msg_size > 0 {
            c.max_msg_size = max_msg_size;
        }
        Ok(())
    })
}

/// The stream's own limits; 0 means none of that kind. `discard` is a `tidelog_discard`.
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_limits(
    cfg: *mut tidelog_stream_config,
    max_msgs: u64,
    max_bytes: u64,
    max_age_ms: u64,
    max_msgs_per_subject: u64,
    discard: u32,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        let l = &mut c.limits;
        l.discard = match discard {
            0 => Discard::Old,
            1 => Discard::New,
            2 => Discard::NewPerSubject,
            v => return Err(Fail::invalid(format!("discard {v}"))),
        };
        l.max_msgs = limit(max_msgs);
        l.max_bytes = limit(max_bytes);
        l.max_age = limit(max_age_ms).map(millis);
        l.max_msgs_per_subject = limit(max_msgs_per_subject);
        Ok(())
    })
}

/// Per-message TTLs allowed; markers left for `marker_ttl_ms` (0: none) when age or a TTL
/// removes a subject's last message; markers for explicit removals too.
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_ttl(
    cfg: *mut tidelog_stream_config,
    allow_msg_ttl: bool,
    marker_ttl_ms: u64,
    removal_markers: bool,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.allow_msg_ttl = allow_msg_ttl;
        c.subject_delete_marker_ttl = limit(marker_ttl_ms).map(millis);
        c.removal_markers = removal_markers;
        Ok(())
    })
}

/// A `tidelog_retention` value.
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_retention(
    cfg: *mut tidelog_stream_config,
    retention: u32,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.retention = match retention {
            0 => Retention::Limits,
            1 => Retention::Interest,
            2 => Retention::WorkQueue,
            v => return Err(Fail::invalid(format!("retention {v}"))),
        };
        Ok(())
    })
}

/// Rollup messages allowed.
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_allow_rollup(
    cfg: *mut tidelog_stream_config,
    allow: bool,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.allow_rollup = allow;
        Ok(())
    })
}

/// How raw (replicated) appends treat the origin's rollups and TTLs.
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_replica(
    cfg: *mut tidelog_stream_config,
    apply_rollups: bool,
    apply_ttls: bool,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.replica = ReplicaOptions {
            apply_rollups,
            apply_ttls,
        };
        Ok(())
    })
}

/// Duplicate detection by message id within `window_ms`, remembering at most `max_ids`
/// (window 0: off).
///
/// # Safety
/// `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_set_dedup(
    cfg: *mut tidelog_stream_config,
    window_ms: u64,
    max_ids: u64,
    forget_on_purge: bool,
) -> tidelog_status {
    set_cfg(cfg, |c| {
        c.dedup = limit(window_ms)
            .map(|w| Dedup::new(millis(w), max_ids).forget_on_purge(forget_on_purge));
        Ok(())
    })
}

/// Creates a stream; fails with `TIDELOG_STATUS_STREAM_EXISTS` if the name is taken and
/// with a config status if `cfg` is invalid (nothing is created). `cfg` is not consumed.
///
/// # Safety
/// `store`, `cfg` NULL or live; `out` writable; `err` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_create_stream(
    store: *const tidelog_store,
    cfg: *const tidelog_stream_config,
    out: *mut *mut tidelog_stream,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let store = arg(store, "store")?;
        let cfg = arg(cfg, "cfg")?;
        let out = out_ptr(out, "out")?;
        let s = store.0.create_stream(cfg.0.clone())?;
        give(out, tidelog_stream(s));
        Ok(())
    })
}

/// Opens an existing stream (`TIDELOG_STATUS_STREAM_NOT_FOUND` if there is none).
///
/// # Safety
/// `store` NULL or live; `name` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_open_stream(
    store: *const tidelog_store,
    name: *const c_char,
    out: *mut *mut tidelog_stream,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let store = arg(store, "store")?;
        let name = cstr(name, "name")?;
        let out = out_ptr(out, "out")?;
        let s = store.0.stream(name)?;
        give(out, tidelog_stream(s));
        Ok(())
    })
}

/// Deletes a stream with its files and consumers. Open handles of it return
/// `TIDELOG_STATUS_CLOSED` afterwards.
///
/// # Safety
/// `store` NULL or live; `name` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_delete_stream(
    store: *const tidelog_store,
    name: *const c_char,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let store = arg(store, "store")?;
        Ok(store.0.delete_stream(cstr(name, "name")?)?)
    })
}

/// Frees a stream handle; NULL is ignored. The stream stays in the store.
///
/// # Safety
/// `stream` is NULL or from this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_free(stream: *mut tidelog_stream) {
    free(stream);
}

/// The stream's config as JSON. Free `*out` with `tidelog_string_free`.
///
/// # Safety
/// `stream` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_config_json(
    stream: *const tidelog_stream,
    out: *mut *mut tidelog_string,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let stream = arg(stream, "stream")?;
        let out = out_ptr(out, "out")?;
        let json = serde_json::to_string(&stream.0.config())
            .map_err(|e| Fail::new(tidelog_status::Config, e.to_string()))?;
        give(out, tidelog_string::new(json)?);
        Ok(())
    })
}

/// Replaces the stream's limits with those of `cfg` (the rest of `cfg` is ignored) and
/// applies them at once.
///
/// # Safety
/// `stream`, `cfg` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_update_limits(
    stream: *const tidelog_stream,
    cfg: *const tidelog_stream_config,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let stream = arg(stream, "stream")?;
        let cfg = arg(cfg, "cfg")?;
        Ok(stream.0.update_limits(cfg.0.limits)?)
    })
}

/// The stream's state.
///
/// # Safety
/// `stream` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_get_state(
    stream: *const tidelog_stream,
    out: *mut tidelog_stream_state,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = open(stream)?;
        let out = out_ptr(out, "out")?;
        let st = s.state();
        *out = tidelog_stream_state {
            messages: st.messages,
            bytes: st.bytes,
            first_seq: st.first_seq,
            first_ts: st.first_ts,
            last_seq: st.last_seq,
            last_ts: st.last_ts,
            num_deleted: st.num_deleted,
            num_subjects: s.num_subjects(),
            blocks: st.blocks as u64,
            max_bytes: st.max_bytes,
            bound_by: match st.bound_by {
                BoundBy::Stream => tidelog_bound_by::Stream,
                _ => tidelog_bound_by::Store,
            },
            disk_bytes: s.disk_bytes(),
            poisoned: s.is_poisoned(),
        };
        Ok(())
    })
}

/// The names of the stream's consumers. Free `*out` with `tidelog_strings_free`.
///
/// # Safety
/// `stream` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_consumer_names(
    stream: *const tidelog_stream,
    out: *mut *mut tidelog_strings,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = open(stream)?;
        let out = out_ptr(out, "out")?;
        give(out, tidelog_strings::new(s.consumer_names())?);
        Ok(())
    })
}

/// The stream behind a handle, unless it was closed or deleted (some engine calls, such as a
/// sync with nothing to do, would otherwise succeed on it).
pub(crate) unsafe fn open<'a>(stream: *const tidelog_stream) -> Result<&'a Stream, Fail> {
    let s = &arg(stream, "stream")?.0;
    if s.is_closed() {
        return Err(Fail::new(tidelog_status::Closed, "stream is closed"));
    }
    Ok(s)
}

/// Runs a write that returns a count, storing it in the optional `out`.
unsafe fn counted(
    stream: *const tidelog_stream,
    out: *mut u64,
    err: *mut tidelog_error,
    f: impl FnOnce(&Stream) -> Result<u64, Fail>,
) -> tidelog_status {
    call(err, || {
        let n = f(open(stream)?)?;
        put(out, n);
        Ok(())
    })
}

/// Runs a write that returns nothing.
unsafe fn done(
    stream: *const tidelog_stream,
    err: *mut tidelog_error,
    f: impl FnOnce(&Stream) -> Result<(), Fail>,
) -> tidelog_status {
    counted(stream, std::ptr::null_mut(), err, |s| f(s).map(|()| 0))
}

/// Removes message `seq` (`TIDELOG_STATUS_NOT_FOUND` if it is not stored).
///
/// # Safety
/// `stream` NULL or live; `err` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_remove(
    stream: *const tidelog_stream,
    seq: u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    done(stream, err, |s| Ok(s.remove(seq)?))
}

/// Removes message `seq` and overwrites its bytes on disk.
///
/// # Safety
/// As `tidelog_stream_remove`.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_erase(
    stream: *const tidelog_stream,
    seq: u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    done(stream, err, |s| Ok(s.erase(seq)?))
}

/// Removes every message; `*removed` (optional) gets how many went.
///
/// # Safety
/// `stream` NULL or live; `removed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_purge(
    stream: *const tidelog_stream,
    removed: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    counted(stream, removed, err, |s| Ok(s.purge()?))
}

/// Removes the messages matching `filter` below `up_to_seq` (0: all of them), keeping the
/// newest `keep` of every matching subject.
///
/// # Safety
/// `stream` NULL or live; `filter` NUL-terminated; `removed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_purge_filtered(
    stream: *const tidelog_stream,
    filter: *const c_char,
    up_to_seq: u64,
    keep: u64,
    removed: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    counted(stream, removed, err, |s| {
        Ok(s.purge_filtered(cstr(filter, "filter")?, limit(up_to_seq), keep)?)
    })
}

/// Removes every message below `seq`.
///
/// # Safety
/// `stream` NULL or live; `removed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_compact(
    stream: *const tidelog_stream,
    seq: u64,
    removed: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    counted(stream, removed, err, |s| Ok(s.compact(seq)?))
}

/// Removes every message after `seq`; the next append gets `seq + 1`.
///
/// # Safety
/// `stream` NULL or live; `removed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_truncate(
    stream: *const tidelog_stream,
    seq: u64,
    removed: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    counted(stream, removed, err, |s| Ok(s.truncate(seq)?))
}

/// Marks the next `count` sequences as skipped (never stored); `*last` gets the last one.
///
/// # Safety
/// `stream` NULL or live; `last` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_skip(
    stream: *const tidelog_stream,
    count: u64,
    last: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    counted(stream, last, err, |s| Ok(s.skip(count)?))
}

/// Makes everything appended so far durable, whatever the durability mode.
///
/// # Safety
/// `stream` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_sync(
    stream: *const tidelog_stream,
    err: *mut tidelog_error,
) -> tidelog_status {
    done(stream, err, |s| Ok(s.sync()?))
}

/// Writes a checkpoint now (hosts with manual maintenance call this periodically).
///
/// # Safety
/// `stream` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_checkpoint(
    stream: *const tidelog_stream,
    err: *mut tidelog_error,
) -> tidelog_status {
    done(stream, err, |s| Ok(s.checkpoint()?))
}

/// Applies limits and age now (the maintainer does this in the background).
///
/// # Safety
/// `stream` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_enforce_limits(
    stream: *const tidelog_stream,
    err: *mut tidelog_error,
) -> tidelog_status {
    done(stream, err, |s| Ok(s.enforce_limits()?))
}

/// Rewrites blocks that are mostly removed messages and frees retired ones now;
/// `*blocks` gets how many blocks were rewritten or freed.
///
/// # Safety
/// `stream` NULL or live; `blocks` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_reclaim(
    stream: *const tidelog_stream,
    blocks: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    counted(stream, blocks, err, |s| Ok(s.reclaim()? as u64))
}

/// Expires every message due now (TTL and max_age) and leaves their markers, as the
/// maintainer does every tick; `*removed` (optional) gets how many went. Hosts with manual
/// maintenance or a manual clock call it.
///
/// # Safety
/// `stream` NULL or live; `removed` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_expire_now(
    stream: *const tidelog_stream,
    removed: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    counted(stream, removed, err, |s| Ok(s.expire_now()?))
}

/// A hash of the stream's visible state: equal digests mean every read answers the same
/// (replica audits, tests). O(messages); writers wait while it runs.
///
/// # Safety
/// `stream` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_state_digest(
    stream: *const tidelog_stream,
    out: *mut u64,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = open(stream)?;
        let out = out_ptr(out, "out")?;
        *out = s.state_digest();
        Ok(())
    })
}

/// Runs `f` and hands its JSON to the caller.
unsafe fn json<T: serde::Serialize>(
    stream: *const tidelog_stream,
    out: *mut *mut tidelog_string,
    err: *mut tidelog_error,
    f: impl FnOnce(&Stream) -> T,
) -> tidelog_status {
    json_try(stream, out, err, |s| Ok(f(s)))
}

/// Runs fallible `f` and hands its JSON to the caller; `*out` is untouched on failure.
unsafe fn json_try<T: serde::Serialize>(
    stream: *const tidelog_stream,
    out: *mut *mut tidelog_string,
    err: *mut tidelog_error,
    f: impl FnOnce(&Stream) -> Result<T, Fail>,
) -> tidelog_status {
    call(err, || {
        let s = open(stream)?;
        let out = out_ptr(out, "out")?;
        let j = serde_json::to_string(&f(s)?)
            .map_err(|e| Fail::new(tidelog_status::Corrupt, e.to_string()))?;
        give(out, tidelog_string::new(j)?);
        Ok(())
    })
}

/// Reads every record and checks its checksum, and every block's header and trailer: JSON
/// `{"checked": N, "damaged": [[first, last], ...], "damaged_blocks": [id, ...]}` with the
/// damaged sequence ranges and the blocks whose header or trailer is damaged. Free `*out` with `tidelog_string_free`.
///
/// # Safety
/// `stream` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_verify_json(
    stream: *const tidelog_stream,
    out: *mut *mut tidelog_string,
    err: *mut tidelog_error,
) -> tidelog_status {
    json(stream, out, err, Stream::verify)
}

/// Removes the messages `verify` finds damaged and rewrites the blocks that held them (or
/// that recovery found damaged) without them, keeping every good record: JSON `{"checked":
/// N, "removed": [[first, last], ...], "rewritten_blocks": [id, ...], "lease_rewritten":
/// bool}`. A sound stream is
/// left untouched. Free `*out` with `tidelog_string_free`.
///
/// # Safety
/// `stream` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_repair_json(
    stream: *const tidelog_stream,
    out: *mut *mut tidelog_string,
    err: *mut tidelog_error,
) -> tidelog_status {
    json_try(stream, out, err, |s| Ok(s.repair()?))
}

/// What recovery found when the stream opened, as JSON: `lost` sequence ranges of damaged
/// records, `torn_bytes`, `replayed_records`, `damaged_blocks`, `checkpoint_error`,
/// `lease_error` and timings. Free `*out` with
/// `tidelog_string_free`.
///
/// # Safety
/// `stream` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_recovery_report_json(
    stream: *const tidelog_stream,
    out: *mut *mut tidelog_string,
    err: *mut tidelog_error,
) -> tidelog_status {
    json(stream, out, err, |s| s.recovery_report().clone())
}
