//! Shared by the benchmark binaries.

use std::path::PathBuf;

use tempfile::TempDir;

/// A fresh directory under `TIDELOG_BENCH_DIR`, or the system temporary directory.
pub fn bench_dir() -> TempDir {
    let base = std::env::var_os("TIDELOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("tidelog-bench-")
        .tempdir_in(base)
        .unwrap()
}

/// xorshift64: cheap, reproducible picks inside timed loops.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
