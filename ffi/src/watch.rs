//! The change feed: a watcher yields matching messages in order and then waits for new ones,
//! either blocking with a timeout or through a descriptor the host polls.

use std::ffi::c_char;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use engine::{WatchFrom, Watcher};

use crate::error::{tidelog_error, tidelog_status, Fail};
use crate::guard::{arg, call, cstr, free, give, millis, out_ptr};
use crate::message::tidelog_msg;
use crate::stream::tidelog_stream;

/// Where a feed starts.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub enum tidelog_watch_from {
    /// Every matching message from sequence `seq` on.
    Seq = 0,
    /// The newest message of every matching subject, then every new one.
    LastPerSubject = 1,
    /// Only messages appended after the watcher is created.
    New = 2,
}

/// A feed of one stream's messages matching one filter. Thread-safe (calls on one watcher
/// are serialised), though a feed is usually read by one thread.
#[allow(non_camel_case_types)]
pub struct tidelog_watcher(Mutex<Watcher>);

impl tidelog_watcher {
    fn with<T>(&self, f: impl FnOnce(&mut Watcher) -> Result<T, Fail>) -> Result<T, Fail> {
        // A panic inside an earlier call poisons the lock; the watcher itself stays sound.
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut w)
    }
}

/// Starts a feed of the messages matching `filter`; `from` is a `tidelog_watch_from` value
/// and `seq` the start for `TIDELOG_WATCH_FROM_SEQ`. Free with `tidelog_watcher_free`.
///
/// # Safety
/// `stream` NULL or live; `filter` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_watch(
    stream: *const tidelog_stream,
    filter: *const c_char,
    from: u32,
    seq: u64,
    out: *mut *mut tidelog_watcher,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let filter = cstr(filter, "filter")?;
        let out = out_ptr(out, "out")?;
        let from = match from {
            0 => WatchFrom::Seq(seq),
            1 => WatchFrom::LastPerSubject,
            2 => WatchFrom::New,
            v => return Err(Fail::invalid(format!("watch from {v}"))),
        };
        let w = s.0.watch(filter, from)?;
        give(out, tidelog_watcher(Mutex::new(w)));
        Ok(())
    })
}

/// The next matching message, waiting up to `timeout_ms` for one (0: do not wait).
/// `TIDELOG_STATUS_TIMEOUT` when there is none; `TIDELOG_STATUS_CLOSED` once the stream is
/// closed or deleted. Free `*out` with `tidelog_msg_free`.
///
/// # Safety
/// `watcher` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_watcher_next(
    watcher: *const tidelog_watcher,
    timeout_ms: u32,
    out: *mut *mut tidelog_msg,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let w = arg(watcher, "watcher")?;
        let out = out_ptr(out, "out")?;
        let m = w.with(|w| {
            Ok(if timeout_ms == 0 {
                w.poll()?
            } else {
                w.next_timeout(millis(timeout_ms.into()))?
            })
        })?;
        let m = m.ok_or_else(|| Fail::new(tidelog_status::Timeout, "no message yet"))?;
        give(out, tidelog_msg(m));
        Ok(())
    })
}

/// A descriptor (an eventfd) that is readable while the feed may have a message: poll it
/// for reading, then call `tidelog_watcher_next` with timeout 0 until it returns
/// `TIDELOG_STATUS_TIMEOUT`, which also makes the descriptor unreadable until the next change.
/// It starts readable. It belongs to the watcher: do not close it; it is valid until the
/// watcher is freed.
///
/// # Safety
/// `watcher` NULL or live; `fd` writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_watcher_fd(
    watcher: *const tidelog_watcher,
    fd: *mut i32,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let w = arg(watcher, "watcher")?;
        let out = out_ptr(fd, "fd")?;
        *out = w.with(|w| Ok(w.fd()?.as_raw_fd()))?;
        Ok(())
    })
}

/// The next sequence the feed will look at (0 for NULL).
///
/// # Safety
/// `watcher` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_watcher_position(watcher: *const tidelog_watcher) -> u64 {
    watcher
        .as_ref()
        .and_then(|w| w.with(|w| Ok(w.position())).ok())
        .unwrap_or(0)
}

/// Frees a watcher (and closes its descriptor); NULL is ignored.
///
/// # Safety
/// `watcher` NULL or from this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_watcher_free(watcher: *mut tidelog_watcher) {
    free(watcher);
}
