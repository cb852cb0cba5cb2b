//! Snapshots and restores, to a file or through host callbacks.

use std::ffi::{c_char, c_void};
use std::fs::File;
use std::io::{self, Read, Write};

use engine::SnapshotInfo;

use crate::error::{tidelog_error, tidelog_status, Fail};
use crate::guard::{arg, call, cstr, give, out_ptr, put};
use crate::store::tidelog_store;
use crate::stream::tidelog_stream;

/// What a snapshot held.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct tidelog_snapshot_info {
    /// First sequence the snapshot covers.
    pub from_seq: u64,
    /// The stream's last sequence when it was taken.
    pub last_seq: u64,
    pub messages: u64,
    /// Bytes of the snapshot.
    pub bytes: u64,
}

/// Receives `len` bytes of a snapshot; returns 0 on success, anything else to stop it.
#[allow(non_camel_case_types)]
pub type tidelog_write_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, buf: *const u8, len: usize) -> i32>;

/// Fills up to `cap` bytes of `buf` with the snapshot and stores how many in `*len` (0: the
/// end); returns 0 on success, anything else to stop the restore.
#[allow(non_camel_case_types)]
pub type tidelog_read_fn = Option<
    unsafe extern "C" fn(user: *mut c_void, buf: *mut u8, cap: usize, len: *mut usize) -> i32,
>;

fn info(i: SnapshotInfo) -> tidelog_snapshot_info {
    tidelog_snapshot_info {
        from_seq: i.from_seq,
        last_seq: i.last_seq,
        messages: i.messages,
        bytes: i.bytes,
    }
}

/// The host's writer.
struct HostWriter {
    f: unsafe extern "C" fn(*mut c_void, *const u8, usize) -> i32,
    user: *mut c_void,
}

impl Write for HostWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the host gave a callback that accepts this buffer for the call's duration.
        match unsafe { (self.f)(self.user, buf.as_ptr(), buf.len()) } {
            0 => Ok(buf.len()),
            code => Err(io::Error::other(CallbackFailed("write", code))),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The host's reader.
struct HostReader {
    f: unsafe extern "C" fn(*mut c_void, *mut u8, usize, *mut usize) -> i32,
    user: *mut c_void,
}

impl Read for HostReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0usize;
        // SAFETY: the host fills at most `buf.len()` bytes, as its contract says.
        match unsafe { (self.f)(self.user, buf.as_mut_ptr(), buf.len(), &mut n) } {
            0 if n <= buf.len() => Ok(n),
            0 => Err(io::Error::other(
                "read callback claimed more bytes than fit",
            )),
            code => Err(io::Error::other(CallbackFailed("read", code))),
        }
    }
}

/// A host callback returned non-zero: carried inside the `io::Error` the engine sees, so the
/// failure comes back as `TIDELOG_STATUS_CALLBACK` (see `From<io::Error> for Fail`).
#[derive(Debug)]
pub(crate) struct CallbackFailed(&'static str, i32);

impl std::fmt::Display for CallbackFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} callback returned {}", self.0, self.1)
    }
}

impl std::error::Error for CallbackFailed {}

/// Writes a snapshot of the live messages from `from_seq` on (with config and consumers) to
/// the file at `path`, synced before it returns. It is written beside it first and renamed
/// into place, so a failed snapshot leaves an existing file as it was. `out` is optional.
///
/// # Safety
/// `stream` NULL or live; `path` NUL-terminated; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_snapshot_file(
    stream: *const tidelog_stream,
    path: *const c_char,
    from_seq: u64,
    out: *mut tidelog_snapshot_info,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = crate::stream::open(stream)?;
        let path = std::path::Path::new(cstr(path, "path")?);
        let tmp = engine::io::tmp_path(path);
        let written = (|| -> Result<SnapshotInfo, Fail> {
            let mut f = io::BufWriter::new(File::create(&tmp)?);
            let i = s.snapshot(&mut f, from_seq)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)?;
            Ok(i)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        put(out, info(written?));
        Ok(())
    })
}

/// Writes a snapshot through `write` (called with `user` and successive pieces).
///
/// # Safety
/// `stream` NULL or live; `write` a valid callback; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_stream_snapshot(
    stream: *const tidelog_stream,
    from_seq: u64,
    write: tidelog_write_fn,
    user: *mut c_void,
    out: *mut tidelog_snapshot_info,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let s = arg(stream, "stream")?;
        let f = write.ok_or_else(|| Fail::null("write"))?;
        let mut w = io::BufWriter::with_capacity(1 << 16, HostWriter { f, user });
        let i = s.0.snapshot(&mut w, from_seq)?;
        w.flush()?;
        put(out, info(i));
        Ok(())
    })
}

unsafe fn restore(
    store: *const tidelog_store,
    inp: &mut dyn Read,
    stream_out: *mut *mut tidelog_stream,
    out: *mut tidelog_snapshot_info,
) -> Result<(), Fail> {
    let store = arg(store, "store")?;
    let stream_out = out_ptr(stream_out, "stream_out")?;
    let (s, i) = store.0.restore(inp)?;
    put(out, info(i));
    give(stream_out, tidelog_stream(s));
    Ok(())
}

/// Restores the snapshot in file `path` into the stream it names (created if absent,
/// continued if present). `*stream_out` gets the stream; `out` is optional.
///
/// # Safety
/// `store` NULL or live; `path` NUL-terminated; `stream_out` writable; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_restore_file(
    store: *const tidelog_store,
    path: *const c_char,
    stream_out: *mut *mut tidelog_stream,
    out: *mut tidelog_snapshot_info,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let path = cstr(path, "path")?;
        let mut f = io::BufReader::new(File::open(path)?);
        restore(store, &mut f, stream_out, out)
    })
}

/// Restores a snapshot read through `read`.
///
/// # Safety
/// `store` NULL or live; `read` a valid callback; `stream_out` writable; `out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn tidelog_store_restore(
    store: *const tidelog_store,
    read: tidelog_read_fn,
    user: *mut c_void,
    stream_out: *mut *mut tidelog_stream,
    out: *mut tidelog_snapshot_info,
    err: *mut tidelog_error,
) -> tidelog_status {
    call(err, || {
        let f = read.ok_or_else(|| Fail::null("read"))?;
        let mut r = io::BufReader::with_capacity(1 << 16, HostReader { f, user });
        restore(store, &mut r, stream_out, out)
    })
}
