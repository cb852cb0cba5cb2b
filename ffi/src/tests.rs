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
