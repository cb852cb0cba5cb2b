//! The C ABI of tidelog, in the style of rustls-ffi: opaque handles, a status returned by
//! every fallible call, outputs written only on success, failures described in a caller-owned
//! `tidelog_error`, a `*_free` for everything handed out (each accepting NULL), and no panic
//! ever crossing the boundary. `include/tidelog.h` is generated from this crate by cbindgen.
//!
//! Thread safety is stated on each handle type. Stores, streams, consumers and watchers are
//! thread-safe; option and config builders and error objects belong to one thread at a time.
#![allow(clippy::missing_safety_doc)] // each function's `# Safety` section says it in C terms

pub mod append;
pub mod consumer;
pub mod error;
mod guard;
pub mod message;
pub mod query;
pub mod snapshot;
pub mod store;
pub mod stream;
pub mod strings;
pub mod watch;

#[cfg(test)]
mod tests;

use std::ffi::c_char;

/// The ABI version this header describes; `tidelog_abi_version()` returns the library's.
/// It changes whenever a function, type or constant of the header changes incompatibly.
pub const TIDELOG_ABI_VERSION: u32 = 1;

/// The ABI version of the linked library: compare with `TIDELOG_ABI_VERSION` at start-up.
#[no_mangle]
pub extern "C" fn tidelog_abi_version() -> u32 {
    TIDELOG_ABI_VERSION
}

/// The library's version ("0.1.0"), a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn tidelog_version() -> *const c_char {
    const V: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    V.as_ptr()
}
