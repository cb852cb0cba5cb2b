//! Strings the library hands out: one (`tidelog_string`) or a list (`tidelog_strings`), each
//! NUL-terminated UTF-8 and owned until freed.

use std::ffi::{c_char, CString};

use crate::error::Fail;
use crate::guard::free;

/// An owned string (JSON documents, paths). Immutable, so thread-safe.
#[allow(non_camel_case_types)]
pub struct tidelog_string(CString);

/// An owned list of strings (names). Immutable, so thread-safe.
#[allow(non_camel_case_types)]
pub struct tidelog_strings(Vec<CString>);

impl tidelog_string {
    pub(crate) fn new(s: String) -> Result<tidelog_string, Fail> {
        crate::store::c_string(s).map(tidelog_string)
    }
}

impl tidelog_strings {
    pub(crate) fn new<S: Into<Vec<u8>>>(
        v: impl IntoIterator<Item = S>,
    ) -> Result<tidelog_strings, Fail> {
        v.into_iter()
            .map(crate::store::c_string)
            .collect::<Result<_, _>>()
            .map(tidelog_strings)
    }
}

/// The string's bytes, NUL-terminated; valid until it is freed. "" for NULL.
///
/// # Safety
/// `s` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_string_ptr(s: *const tidelog_string) -> *const c_char {
    s.as_ref().map_or(c"".as_ptr(), |s| s.0.as_ptr())
}

/// The string's length in bytes, without the NUL.
///
/// # Safety
/// `s` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_string_len(s: *const tidelog_string) -> usize {
    s.as_ref().map_or(0, |s| s.0.as_bytes().len())
}

/// Frees a string; NULL is ignored.
///
/// # Safety
/// `s` is NULL or handed out by this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_string_free(s: *mut tidelog_string) {
    free(s);
}

/// The number of strings in the list (0 for NULL).
///
/// # Safety
/// `list` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_strings_len(list: *const tidelog_strings) -> usize {
    list.as_ref().map_or(0, |l| l.0.len())
}

/// String `i` of the list, NUL-terminated and valid until the list is freed; NULL when `i` is
/// out of range.
///
/// # Safety
/// `list` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tidelog_strings_get(
    list: *const tidelog_strings,
    i: usize,
) -> *const c_char {
    list.as_ref()
        .and_then(|l| l.0.get(i))
        .map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Frees a list; NULL is ignored.
///
/// # Safety
/// `list` is NULL or handed out by this library, and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_strings_free(list: *mut tidelog_strings) {
    free(list);
}
