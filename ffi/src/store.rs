//! Store handles, their options and the manual clock.

use std::ffi::{c_char, CString};
use std::sync::Arc;

use engine::{Budget, IoBackend, IoBackendChoice, ManualClock, Store, StoreOptions};

use crate::error::{tidelog_error, tidelog_status, Fail};
use crate::guard::{arg, call, cstr, free, give, out_ptr};
use crate::strings::tidelog_strings;

/// An open store: a directory of streams, locked against other processes. Thread-safe: any
/// number of threads may use one handle at once. Free it once, when no call using it (or a
/// stream opened from it) is running; freeing closes the store.
#[allow(non_camel_case_types)]
pub struct tidelog_store(pub(crate) Store);

/// Options for `tidelog_store_open`, built with the setters. Not thread-safe.
#[allow(non_camel_case_types)]
pub struct tidelog_store_options(pub(crate) StoreOptions);

/// A clock the host moves by hand, for tests of TTLs, redelivery and max_age without
/// sleeping. Thread-safe. A store using it keeps its own reference: the handle may be freed
/// while the store is open.
#[allow(non_camel_case_types)]
pub struct tidelog_clock(pub(crate) Arc<ManualClock>);

/// How writes reach the disk (`tidelog_store_options_set_io_backend`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tidelog_io_choice {
    /// io_uring when the kernel and the seccomp profile allow it, pwrite otherwise.
    Auto = 0,
    /// io_uring or an error at open.
    IoUring = 1,
    /// pwrite + fdatasync.
    Pwrite = 2,
}

/// The I/O back end a store uses (`tidelog_store_io_backend`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tidelog_io_backend {
    IoUring = 0,
    Pwrite = 1,
    /// No files (tests).
    Memory = 2,
}

/// The store's byte budget and its use, in bytes on disk.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct tidelog_budget_info {
    pub max_bytes: u64,
    /// The part of `max_bytes` appends may not use (kept for checkpoints and consumers).
    pub reserve: u64,
    pub used: u64,
    /// Bytes of blocks with no live message, freed at the next checkpoints.
    pub retiring: u64,
}

/// New store options with the defaults: a budget of 75% of the file system's size, I/O back
/// end chosen at open, the system clock, background maintenance. Free with
/// `tidelog_store_options_free`. NULL if memory ran out.
#[no_mangle]
pub extern "C" fn tidelog_store_options_new() -> *mut tidelog_store_options {
    crate::guard::boxed(|| tidelog_store_options(StoreOptions::default()))
}

/// Frees store options; NULL is ignored.
///
/// # Safety
/// `opts` is NULL or from `tidelog_store_options_new`, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_options_free(opts: *mut tidelog_store_options) {
    free(opts);
}

/// Budget: `percent` (1-100) of the size of the file system holding the store. Checked at open.
///
/// # Safety
/// `opts` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_options_set_budget_percent(
    opts: *mut tidelog_store_options,
    percent: u8,
) -> tidelog_status {
    set(opts, |o| o.budget = Budget::FileSystemPercent(percent))
}

/// Budget: `max_bytes` in all (at least 1 MiB), of which `reserve` (less than half) is kept
/// from appends for checkpoints, consumer state and removals. Checked at open.
///
/// # Safety
/// `opts` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_options_set_budget_bytes(
    opts: *mut tidelog_store_options,
    max_bytes: u64,
    reserve: u64,
) -> tidelog_status {
    set(opts, |o| o.budget = Budget::Bytes { max_bytes, reserve })
}

/// The I/O back end: a `tidelog_io_choice` value.
///
/// # Safety
/// `opts` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_options_set_io_backend(
    opts: *mut tidelog_store_options,
    choice: u32,
) -> tidelog_status {
    let choice = match choice {
        0 => Some(IoBackendChoice::Auto),
        1 => Some(IoBackendChoice::IoUring),
        2 => Some(IoBackendChoice::Pwrite),
        _ => None,
    };
    match choice {
        Some(c) => set(opts, |o| o.io_backend = c),
        None if opts.is_null() => tidelog_status::NullArgument,
        None => tidelog_status::InvalidArgument,
    }
}

/// With `manual` true, no background thread runs: the host calls `tidelog_stream_checkpoint`
/// and friends itself (tests, single-threaded hosts).
///
/// # Safety
/// `opts` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_options_set_manual_maintenance(
    opts: *mut tidelog_store_options,
    manual: bool,
) -> tidelog_status {
    set(opts, |o| o.manual_maintenance = manual)
}

/// With `read_only` true, the store never changes its directory: recovery, expiry, appends
/// and checkpoints work on an in-memory copy of what they change, discarded when the store
/// is freed. The store must exist (`TIDELOG_STATUS_NOT_FOUND` otherwise). A shared lock keeps
/// writable opens out (`TIDELOG_STATUS_LOCKED`); read-only opens may share it. For inspecting
/// a store (also on a read-only mount), and for looking at one again without the first look
/// changing what the second finds.
///
/// # Safety
/// `opts` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_options_set_read_only(
    opts: *mut tidelog_store_options,
    read_only: bool,
) -> tidelog_status {
    set(opts, |o| o.read_only = read_only)
}

/// The store reads time from `clock` instead of the system clock.
///
/// # Safety
/// `opts` is NULL or live; `clock` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_options_set_clock(
    opts: *mut tidelog_store_options,
    clock: *const tidelog_clock,
) -> tidelog_status {
    let Some(clock) = clock.as_ref() else {
        return tidelog_status::NullArgument;
    };
    let c: Arc<dyn engine::Clock> = clock.0.clone();
    set(opts, |o| o.clock = Some(c))
}

unsafe fn set(
    opts: *mut tidelog_store_options,
    f: impl FnOnce(&mut StoreOptions),
) -> tidelog_status {
    match opts.as_mut() {
        Some(o) => call(std::ptr::null_mut(), || {
            f(&mut o.0);
            Ok(())
        }),
        None => tidelog_status::NullArgument,
    }
}

/// A manual clock starting at `start_ns` nanoseconds since the Unix epoch. Free with
/// `tidelog_clock_free`. NULL if memory ran out.
#[no_mangle]
pub extern "C" fn tidelog_clock_new_manual(start_ns: i64) -> *mut tidelog_clock {
    crate::guard::boxed(|| tidelog_clock(Arc::new(ManualClock::new(start_ns))))
}

/// Frees a clock handle; stores using the clock keep it. NULL is ignored.
///
/// # Safety
/// `clock` is NULL or from `tidelog_clock_new_manual`, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_clock_free(clock: *mut tidelog_clock) {
    free(clock);
}

/// Moves the clock forward by `ns` nanoseconds.
///
/// # Safety
/// `clock` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_clock_advance(
    clock: *const tidelog_clock,
    ns: i64,
) -> tidelog_status {
    match clock.as_ref() {
        Some(c) => call(std::ptr::null_mut(), || {
            c.0.advance_ns(ns);
            Ok(())
        }),
        None => tidelog_status::NullArgument,
    }
}

/// Sets the clock to `ns` nanoseconds since the epoch (it may go back: tests of clock skew).
///
/// # Safety
/// `clock` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_clock_set(clock: *const tidelog_clock, ns: i64) -> tidelog_status {
    match clock.as_ref() {
        Some(c) => call(std::ptr::null_mut(), || {
            c.0.set_ns(ns);
            Ok(())
        }),
        None => tidelog_status::NullArgument,
    }
}

/// The clock's time in nanoseconds since the epoch (0 for NULL).
///
/// # Safety
/// `clock` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_clock_now(clock: *const tidelog_clock) -> i64 {
    use engine::Clock;
    clock.as_ref().map_or(0, |c| c.0.now_ns())
}

/// Opens (creating if needed) the store in directory `dir`. `opts` may be NULL for the
/// defaults; it is not consumed. On success `*out` is a store to free with `tidelog_store_free`.
///
/// # Safety
/// `dir` is a NUL-terminated path; `opts` NULL or live; `out` writable; `err` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_open(
    dir: *const c_char,
    opts: *const tidelog_store_options,
    out: *mut *mut tidelog_store,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let dir = cstr(dir, "dir")?;
        let out = out_ptr(out, "out")?;
        let opts = opts.as_ref().map(|o| o.0.clone()).unwrap_or_default();
        let store = Store::open(dir, opts)?;
        give(out, tidelog_store(store));
        Ok(())
    })
}

/// Closes the store: syncs and checkpoints every stream and saves every consumer. Afterwards
/// every call that reads or changes a stream, consumer or watcher of it returns
/// `TIDELOG_STATUS_CLOSED`; the store's own descriptive calls (stream names, budget,
/// directory, back end) still answer. The handle must still be freed. A stream or consumer
/// handle keeps that stream's files open until it is freed.
///
/// # Safety
/// `store` is NULL or live; `err` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_close(
    store: *const tidelog_store,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || Ok(arg(store, "store")?.0.close()?))
}

/// Frees a store handle, closing the store if this was the last handle. NULL is ignored.
/// Stream and consumer handles must be freed too; using them afterwards returns
/// `TIDELOG_STATUS_CLOSED`.
///
/// # Safety
/// `store` is NULL or from `tidelog_store_open`, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_free(store: *mut tidelog_store) {
    if let Some(s) = store.as_ref() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.0.close()));
    }
    free(store);
}

/// The I/O back end the store uses, as a `tidelog_io_backend` value.
///
/// # Safety
/// `store` is NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_io_backend(
    store: *const tidelog_store,
    out: *mut tidelog_io_backend,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let store = arg(store, "store")?;
        let out = out_ptr(out, "out")?;
        *out = match store.0.io_backend() {
            IoBackend::IoUring => tidelog_io_backend::IoUring,
            IoBackend::Pwrite => tidelog_io_backend::Pwrite,
            _ => tidelog_io_backend::Memory,
        };
        Ok(())
    })
}

/// The store's budget and how much of it is in use.
///
/// # Safety
/// `store` is NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_budget(
    store: *const tidelog_store,
    out: *mut tidelog_budget_info,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let store = arg(store, "store")?;
        let out = out_ptr(out, "out")?;
        let b = store.0.budget();
        *out = tidelog_budget_info {
            max_bytes: b.max_bytes,
            reserve: b.reserve,
            used: b.used,
            retiring: b.retiring,
        };
        Ok(())
    })
}

/// The names of the store's streams, sorted. Free `*out` with `tidelog_strings_free`.
///
/// # Safety
/// `store` is NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_stream_names(
    store: *const tidelog_store,
    out: *mut *mut tidelog_strings,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let store = arg(store, "store")?;
        let out = out_ptr(out, "out")?;
        give(out, tidelog_strings::new(store.0.stream_names())?);
        Ok(())
    })
}

/// Streams set aside at open because their metadata or files could not be read: their names
/// in `*names` and why in `*reasons`, in the same order. Free both with `tidelog_strings_free`.
///
/// # Safety
/// `store` is NULL or live; `names` and `reasons` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_damaged_streams(
    store: *const tidelog_store,
    names: *mut *mut tidelog_strings,
    reasons: *mut *mut tidelog_strings,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let store = arg(store, "store")?;
        let names = out_ptr(names, "names")?;
        let reasons = out_ptr(reasons, "reasons")?;
        let damaged = store.0.damaged_streams();
        let n = tidelog_strings::new(damaged.iter().map(|d| d.name.clone()))?;
        let r = tidelog_strings::new(damaged.into_iter().map(|d| d.why))?;
        give(names, n);
        give(reasons, r);
        Ok(())
    })
}

/// The store's directory as given at open. Free `*out` with `tidelog_string_free`.
///
/// # Safety
/// `store` is NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_dir(
    store: *const tidelog_store,
    out: *mut *mut crate::strings::tidelog_string,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let store = arg(store, "store")?;
        let out = out_ptr(out, "out")?;
        let dir = store.0.dir().to_string_lossy().into_owned();
        give(out, crate::strings::tidelog_string::new(dir)?);
        Ok(())
    })
}

pub(crate) fn c_string(s: impl Into<Vec<u8>>) -> Result<CString, Fail> {
    CString::new(s).map_err(|_| Fail::invalid("string holds a NUL byte"))
}
