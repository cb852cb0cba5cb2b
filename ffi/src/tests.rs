//! The committed header matches a fresh generation; smoke tests of the boundary itself
//! (host programs in C and Go test the rest through the real library).

use std::path::Path;

/// Generates the header as `include/tidelog.h` should hold it.
fn generate() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cfg = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    if let Some(a) = cfg.after_includes.as_mut() {
        *a = a
            .replace("@MAJOR@", env!("CARGO_PKG_VERSION_MAJOR"))
            .replace("@MINOR@", env!("CARGO_PKG_VERSION_MINOR"))
            .replace("@PATCH@", env!("CARGO_PKG_VERSION_PATCH"))
            .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    }
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(cfg)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/tidelog.h");
    let fresh = generate();
    if std::env::var_os("TIDELOG_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/tidelog.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/tidelog.h differs from a fresh generation: run \
         `TIDELOG_BLESS=1 cargo test -p tidelog-ffi header_is_current` and commit it"
    );
}

use std::ffi::CStr;

use crate::error::{
    tidelog_error_free, tidelog_error_get_info, tidelog_error_message, tidelog_error_new,
    tidelog_error_status, tidelog_status, Fail,
};
use crate::guard::call;

fn message(err: *const crate::error::tidelog_error) -> String {
    // SAFETY: a live error object; its message is NUL-terminated.
    unsafe { CStr::from_ptr(tidelog_error_message(err)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_panic_becomes_a_status_and_a_message() {
    let err = tidelog_error_new();
    let st = call(err, || -> Result<(), Fail> { panic!("boom") });
    assert_eq!(st, tidelog_status::Panic);
    // SAFETY: `err` is live until freed below.
    unsafe {
        assert_eq!(tidelog_error_status(err), tidelog_status::Panic);
        assert_eq!(
            tidelog_error_get_info(err).status,
            tidelog_status::Panic as u32
        );
    }
    assert!(message(err).contains("boom"), "{}", message(err));
    // A success resets it.
    assert_eq!(call(err, || Ok(())), tidelog_status::Ok);
    assert_eq!(message(err), "");
    // SAFETY: freed once.
    unsafe { tidelog_error_free(err) };
}

#[test]
fn a_message_with_a_nul_is_kept_readable() {
    let err = tidelog_error_new();
    let st = call(err, || Err(Fail::invalid("a\0b")));
    assert_eq!(st, tidelog_status::InvalidArgument);
    assert_eq!(message(err), "ab");
    // SAFETY: freed once.
    unsafe { tidelog_error_free(err) };
}

#[test]
fn engine_errors_keep_their_details() {
    let f: Fail = engine::AppendError::StorageFull {
        need: 1,
        used: 2,
        limit: 3,
    }
    .into();
    assert_eq!(f.status, tidelog_status::StorageFull);
    assert_eq!((f.info.need, f.info.used, f.info.limit), (1, 2, 3));
    let f: Fail = engine::AppendError::Durability(engine::DurabilityError::StorageFull(
        std::io::Error::from_raw_os_error(28),
    ))
    .into();
    assert_eq!(
        (f.status, f.info.os_code),
        (tidelog_status::StorageFull, 28)
    );
    let f: Fail = engine::AppendError::Duplicate { index: 4, seq: 9 }.into();
    assert_eq!(
        (f.status, f.info.index, f.info.seq),
        (tidelog_status::Duplicate, 4, 9)
    );
    let f: Fail = engine::LoadError::NotFound(7).into();
    assert_eq!((f.status, f.info.seq), (tidelog_status::NotFound, 7));
    let f: Fail = engine::ConsumerError::Query(engine::QueryError::Corrupt(5)).into();
    assert_eq!((f.status, f.info.seq), (tidelog_status::Corrupt, 5));
}

#[test]
fn every_status_has_a_name() {
    for v in 0..=tidelog_status::Callback as u32 {
        // SAFETY: a static NUL-terminated string.
        let name = unsafe { CStr::from_ptr(crate::error::tidelog_status_name(v)) };
        assert!(name.to_str().unwrap().starts_with("TIDELOG_STATUS_"));
        assert_ne!(name.to_str().unwrap(), "TIDELOG_STATUS_UNKNOWN", "{v}");
    }
    // SAFETY: as above.
    let unknown = unsafe { CStr::from_ptr(crate::error::tidelog_status_name(999)) };
    assert_eq!(unknown.to_str().unwrap(), "TIDELOG_STATUS_UNKNOWN");
}
