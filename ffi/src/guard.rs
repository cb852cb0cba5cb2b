//! The boundary: every exported call runs inside `call`, which turns a panic into
//! `TIDELOG_STATUS_PANIC`, and reads its arguments through the checked helpers here, so a NULL
//! or malformed argument is a status, never undefined behaviour on our side.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{tidelog_error, tidelog_status, Fail};

/// Runs `f`, records its failure in `err` (when given) and returns its status. Outputs are
/// written by `f` only after everything that can fail has succeeded.
pub(crate) fn call(
    err: *mut tidelog_error,
    f: impl FnOnce() -> Result<(), Fail>,
) -> tidelog_status {
    let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panicked(p)));
    // SAFETY: the caller passes NULL or a live error object it owns for this call.
    let err = unsafe { err.as_mut() };
    match result {
        Ok(()) => {
            if let Some(e) = err {
                e.clear();
            }
            tidelog_status::Ok
        }
        Err(f) => {
            let status = f.status;
            if let Some(e) = err {
                // Recording the failure allocates; a panic there must not cross either.
                let _ = catch_unwind(AssertUnwindSafe(|| e.set(f)));
            }
            status
        }
    }
}

fn panicked(p: Box<dyn std::any::Any + Send>) -> Fail {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Fail::new(tidelog_status::Panic, format!("internal panic: {what}"))
}

/// Runs an infallible constructor behind the panic guard; NULL if it panicked.
pub(crate) fn boxed<T>(f: impl FnOnce() -> T) -> *mut T {
    catch_unwind(AssertUnwindSafe(|| Box::into_raw(Box::new(f())))).unwrap_or(std::ptr::null_mut())
}

/// Frees what `Box::into_raw` handed out; NULL is ignored. Dropping may run engine code
/// (closing a store), so it is guarded too.
///
/// # Safety
/// `p` is NULL or came from `Box::into_raw` of this type and is not used afterwards.
pub(crate) unsafe fn free<T>(p: *mut T) {
    if !p.is_null() {
        let b = Box::from_raw(p);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
    }
}

/// Hands ownership of `v` to the caller through `out`.
///
/// # Safety
/// `out` was checked non-NULL by [`out_ptr`].
pub(crate) unsafe fn give<T>(out: *mut *mut T, v: T) {
    *out = Box::into_raw(Box::new(v));
}

/// A required handle or input struct.
///
/// # Safety
/// `p` is NULL or points to a live `T`.
pub(crate) unsafe fn arg<'a, T>(p: *const T, what: &str) -> Result<&'a T, Fail> {
    p.as_ref().ok_or_else(|| Fail::null(what))
}

/// A required output location, checked before any work is done.
pub(crate) fn out_ptr<T>(p: *mut T, what: &str) -> Result<*mut T, Fail> {
    if p.is_null() {
        Err(Fail::null(what))
    } else {
        Ok(p)
    }
}

/// Writes an optional output (NULL: the caller does not want it).
///
/// # Safety
/// `p` is NULL or writable.
pub(crate) unsafe fn put<T>(p: *mut T, v: T) {
    if let Some(p) = p.as_mut() {
        *p = v;
    }
}

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives the call.
pub(crate) unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::null(what));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Fail::invalid(format!("{what} is not UTF-8")))
}

/// `len` bytes at `p`; NULL is allowed for zero bytes.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that outlive the call.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Fail::null(what));
    }
    if len > isize::MAX as usize {
        return Err(Fail::invalid(format!("{what} length {len} is too large")));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

/// `len` UTF-8 bytes at `p`.
///
/// # Safety
/// As [`bytes`].
pub(crate) unsafe fn str_bytes<'a>(
    p: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a str, Fail> {
    std::str::from_utf8(bytes(p.cast(), len, what)?)
        .map_err(|_| Fail::invalid(format!("{what} is not UTF-8")))
}

/// `n` elements at `p`; NULL is allowed for none.
///
/// # Safety
/// `p` is NULL or points to `n` live elements.
pub(crate) unsafe fn items<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T], Fail> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Fail::null(what));
    }
    if n > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Fail::invalid(format!("{what} count {n} is too large")));
    }
    Ok(std::slice::from_raw_parts(p, n))
}

/// `n` NUL-terminated strings.
///
/// # Safety
/// As [`items`] and [`cstr`] for each.
pub(crate) unsafe fn cstrs<'a>(
    p: *const *const c_char,
    n: usize,
    what: &str,
) -> Result<Vec<&'a str>, Fail> {
    items(p, n, what)?.iter().map(|&s| cstr(s, what)).collect()
}

/// A millisecond count as a duration.
pub(crate) fn millis(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms)
}
