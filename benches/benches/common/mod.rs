//! Shared by the benchmark binaries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;
use tidelog::io::MemVfs;
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

/// Encoded bytes of one message, as the engine counts them (`StreamState::bytes`).
#[allow(dead_code)]
pub fn encoded_len(subject: &str, payload: &[u8]) -> u64 {
    let opts = StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open_with_vfs("/m", Arc::new(MemVfs::new()), opts).unwrap();
    let s = store.create_stream(StreamConfig::new("m")).unwrap();
    s.append(subject, b"", payload).unwrap();
    s.state().bytes
}

/// Copies the tree `from` to `to` (a crash image, so every reopen works on a copy).
#[allow(dead_code)]
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
#[allow(dead_code)]
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Whether the work named `id` runs: not when listing, and with filters on the command line
/// only when one of them is a substring of `id` (or equals it, with `--exact`). For set-up
/// that criterion's own filter cannot skip (printed reports, fixtures whose size must be
/// known before a benchmark starts); criterion's regular expressions are not understood.
#[allow(dead_code)]
pub fn selected(id: &str) -> bool {
    const TAKES_VALUE: &[&str] = &[
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--format",
        "--profile-time",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return false;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let mut filters = Vec::new();
    let mut value_next = false;
    for a in &args {
        if std::mem::take(&mut value_next) {
            continue;
        }
        if a.starts_with('-') {
            value_next = TAKES_VALUE.contains(&a.as_str());
        } else {
            filters.push(a.as_str());
        }
    }
    filters.is_empty()
        || filters
            .iter()
            .any(|f| if exact { id == *f } else { id.contains(f) })
}
