//! Shared by the benchmark binaries.

use std::path::PathBuf;

use tempfile::TempDir;
use tidelog::{Store, StoreOptions, Stream, StreamConfig};

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
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
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

/// A store whose streams live for one sample each, so disk use stays bounded however long
/// criterion runs. (Each bench binary compiles this module; not all of them use it.)
#[allow(dead_code)]
pub struct Fresh {
    store: Store,
    pub dir: TempDir,
    n: u64,
}

#[allow(dead_code)]
impl Fresh {
    pub fn new() -> Fresh {
        let dir = bench_dir();
        let store = Store::open(dir.path().join("db"), StoreOptions::default()).unwrap();
        Fresh { store, dir, n: 0 }
    }

    /// A new stream configured by `cfg` from its name.
    pub fn stream(&mut self, cfg: impl FnOnce(String) -> StreamConfig) -> Stream {
        self.n += 1;
        self.store
            .create_stream(cfg(format!("s{}", self.n)))
            .unwrap()
    }

    pub fn done(&self, s: Stream) {
        self.store.delete_stream(s.name()).unwrap();
    }
}

/// The median of `v` (criterion's own statistics aside: for interleaved ratios).
#[allow(dead_code)]
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `n` as "10M" when it is a whole number of millions.
#[allow(dead_code)]
pub fn millions(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else {
        n.to_string()
    }
}

/// Criterion's smoke-test mode (`--test`): benchmarks run everything at 1/100 of its size.
#[allow(dead_code)]
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// `n`, or a hundredth of it in smoke-test mode.
#[allow(dead_code)]
pub fn scaled(n: u64) -> u64 {
    if quick() {
        n / 100
    } else {
        n
    }
}

/// How a figure compares with its target, for the summary tables.
#[allow(dead_code)]
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// Figures as a comma-separated list with `decimals` places.
#[allow(dead_code)]
pub fn list(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|r| format!("{r:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}
