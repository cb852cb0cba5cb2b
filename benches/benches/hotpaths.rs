//! One benchmark per hot path, each next to the raw limit of the same work measured in the
//! same run, so that a figure can be read as a fraction of what the machine allows at that
//! moment. `docs/performance.md` has the table of a run and says how to read it;
//! `python3 benches/report.py` prints that table from `target/criterion`.
//!
//! Every group holds `<case>/tidelog` and its reference `<case>/raw` (for the C ABI:
//! `<case>/c_abi` and `<case>/rust`), so `cargo bench --bench hotpaths -- '<group>/<case>/'`
//! measures both. Files live in a temporary directory, or one under `TIDELOG_BENCH_DIR`, so
//! the raw limits use the same file system as the engine.
//!
//! - `append/<size>/<durability>`: single appends of `<size>` payloads (16 B to 256 KiB) over
//!   1,000 subjects, `Durability::None` or `Always`, one fresh stream per sample, bytes per
//!   second of encoded records. Raw: `write(2)` of the same record bytes to a file in 1 MiB
//!   chunks (`none`: what the page cache takes), or one `write` plus one `fdatasync` per
//!   record (`always`: what a single durable appender can get).
//! - `batch/1000x128B/always`: `append_batch` of 1,000 messages of 128 B, durable. Raw: one
//!   `write` of the 1,000 records' bytes and one `fdatasync`.
//!
//!   The durable cases are measured in pairs: every iteration of either benchmark does one
//!   engine operation and then its raw counterpart, each timed alone, and the benchmark
//!   reports its own half, so both figures come from the same moments of the disk.
//! - `load_seq/random_1M`: `load` of random sequences in a file stream of 1M messages of
//!   128 B. Raw: `memcpy` of the message's bytes (subject and payload) from a random offset
//!   of a buffer as large as the stream.
//! - `load_last/10k_subjects`: `load_last` of a random one of the 10,000 subjects of the same
//!   stream. Raw: as `load_seq`, from the part of the buffer the answers come from (the newest
//!   10,010 messages' bytes, about 1.8 MB: the newest message of every subject).
//! - `load_next/sparse_wildcard`: `load_next("rare.*", random)`; the filter matches 10
//!   subjects holding every 1,000th message. Raw: as `load_seq`.
//! - `num_pending/{sparse_wildcard,wildcard_10k_subjects}`: `num_pending` from the middle of
//!   the stream for `rare.*` and for `bench.*` (all 10,000 other subjects). No raw limit: it
//!   returns a count and moves no message bytes.
//! - `fetch_ack/batch_100`: a consumer with explicit acks on the same stream fetches 100
//!   messages at a time and acknowledges each; per message. Raw: sequential `memcpy` of each
//!   message's bytes.
//! - `ffi/{append_128B_none,load_random_1M}`: the same append and load through the C ABI
//!   (`libtidelog.so`, opened with `dlopen`) and through the Rust API. The library is built
//!   first (`cargo build -p tidelog-ffi`, same profile) so both run the same engine sources;
//!   the group is skipped, with a message, when that fails and there is no library.
//! - `ttl_expire/100k_due_at_once`: `expire_now` (until the stream is empty) removing
//!   100,000 messages that fall due in the same second, file stream, manual clock; per
//!   message. No raw limit: expiry logs one range record per batch of removals, so its I/O
//!   is negligible and the work is index bookkeeping.
//! - `recovery/64MB_after_checkpoint`: `Store::open` of a store whose process died after
//!   appending 64 MB of records (128 B payloads) past its last checkpoint; bytes per second of
//!   that tail. Raw: sequential `read(2)` of as many bytes from the end of the stream's
//!   block files. Both read freshly copied files, so from the page cache.
//! - `compaction/reclaim_10pct_live`: `reclaim()` of a stream of 64 MB of 1 KiB messages in
//!   8 MiB blocks of which 9 in 10 messages were removed; bytes per second of live data
//!   rewritten (`compacted_bytes`). Raw: for each rewritten block, `read(2)` of its share of
//!   those bytes from a page-cached file, `write` to a new file and `fdatasync`.
//!
//! The `ffi` and `compaction` groups do set-up that criterion's filter cannot skip (building
//! the library; measuring the bytes a reclaim rewrites, which criterion must know before the
//! benchmark starts), so they run only when a command-line filter is a plain substring of
//! one of their benchmarks' ids (criterion's regular expressions are not understood there),
//! and `--list` does not show them.
//!
//! `--test` runs everything once, at a hundredth of the sizes (compaction: a sixteenth).

mod common;

use common::{bench_dir, copy_dir, encoded_len, load_average, quick, scaled, selected, Fresh, Rng};

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use tempfile::TempDir;
use tidelog::{
    AckOutcome, Clock, ConsumerConfig, Durability, ManualClock, NewMessage, Store, StoreOptions,
    Stream, StreamConfig, Ttl,
};

const SIZES: [usize; 5] = [16, 128, 1 << 10, 16 << 10, 256 << 10];
const SUBJECTS: usize = 1000;
const MB: u64 = 1_000_000;

fn size_label(n: usize) -> String {
    match n {
        n if n >= 1 << 10 && n.is_multiple_of(1 << 10) => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(37)).collect()
}

fn subjects() -> Vec<String> {
    (0..SUBJECTS).map(|i| format!("bench.sub.{i:04}")).collect()
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    warm_up: Duration,
    measure: Duration,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(measure);
    g
}

/// `write(2)` of `total` bytes in chunks of `chunk.len()` to a new file at `path`; the file is
/// removed afterwards, untimed.
fn raw_write(path: &Path, chunk: &[u8], total: u64) -> Duration {
    let mut f = File::create(path).unwrap();
    let mut left = total;
    let start = Instant::now();
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    let t = start.elapsed();
    drop(f);
    std::fs::remove_file(path).unwrap();
    t
}

/// Which half of a paired measurement a benchmark reports.
#[derive(Clone, Copy)]
enum Side {
    Tidelog,
    Raw,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Tidelog => "tidelog",
            Side::Raw => "raw",
        }
    }
}

/// `iters` durable operations of a fresh stream, each followed by its raw counterpart: one
/// `write` of `raw` and one `fdatasync`, to a new file at `path`. Each is timed alone; the
/// time of `side` is returned. Both benchmarks of a pair run this, so both see the same
/// moments of a disk whose fdatasync latency can change several times over within a minute
/// on a shared machine.
fn durable_pair(
    fresh: &mut Fresh,
    path: &Path,
    raw: &[u8],
    iters: u64,
    side: Side,
    mut op: impl FnMut(&Stream, u64),
) -> Duration {
    let s = fresh.stream(|n| StreamConfig::new(n).durability(Durability::Always));
    let mut f = File::create(path).unwrap();
    let (mut engine, mut limit) = (Duration::ZERO, Duration::ZERO);
    for i in 0..iters {
        let start = Instant::now();
        op(&s, i);
        engine += start.elapsed();
        let start = Instant::now();
        f.write_all(raw).unwrap();
        f.sync_data().unwrap();
        limit += start.elapsed();
    }
    fresh.done(s);
    drop(f);
    std::fs::remove_file(path).unwrap();
    match side {
        Side::Tidelog => engine,
        Side::Raw => limit,
    }
}

fn bench_append(c: &mut Criterion) {
    let subjects = subjects();
    let mut fresh = Fresh::new();
    let raw_path = fresh.dir.path().join("raw");
    let mut g = group(c, "append", Duration::from_secs(1), Duration::from_secs(3));
    for len in SIZES {
        let payload = payload(len);
        let rec = encoded_len(&subjects[0], &payload);
        let record = vec![0x5au8; rec as usize];
        // Large enough that the syscall count does not decide the raw `none` figure.
        let chunk = vec![0x5au8; (rec as usize).max(1 << 20)];
        g.throughput(Throughput::Bytes(rec));
        let case = format!("{}/none", size_label(len));
        g.bench_function(format!("{case}/tidelog"), |b| {
            b.iter_custom(|iters| {
                let s = fresh.stream(|n| StreamConfig::new(n).durability(Durability::None));
                let start = Instant::now();
                for i in 0..iters as usize {
                    s.append(&subjects[i % SUBJECTS], b"", &payload).unwrap();
                }
                let t = start.elapsed();
                fresh.done(s);
                t
            })
        });
        g.bench_function(format!("{case}/raw"), |b| {
            b.iter_custom(|iters| raw_write(&raw_path, &chunk, iters * rec))
        });
        let case = format!("{}/always", size_label(len));
        for side in [Side::Tidelog, Side::Raw] {
            g.bench_function(format!("{case}/{}", side.name()), |b| {
                b.iter_custom(|iters| {
                    durable_pair(&mut fresh, &raw_path, &record, iters, side, |s, i| {
                        s.append(&subjects[i as usize % SUBJECTS], b"", &payload)
                            .unwrap();
                    })
                })
            });
        }
    }
    g.finish();
}

fn bench_batch(c: &mut Criterion) {
    const N: usize = 1000;
    let subjects = subjects();
    let payload = payload(128);
    let rec = encoded_len(&subjects[0], &payload);
    let batch: Vec<NewMessage<'_>> = (0..N)
        .map(|i| NewMessage::new(&subjects[i % SUBJECTS], &payload))
        .collect();
    let bytes = vec![0x5au8; N * rec as usize];
    let mut fresh = Fresh::new();
    let raw_path = fresh.dir.path().join("raw");
    let mut g = group(c, "batch", Duration::from_secs(1), Duration::from_secs(3));
    g.throughput(Throughput::Elements(N as u64));
    for side in [Side::Tidelog, Side::Raw] {
        g.bench_function(format!("1000x128B/always/{}", side.name()), |b| {
            b.iter_custom(|iters| {
                durable_pair(&mut fresh, &raw_path, &bytes, iters, side, |s, _| {
                    s.append_batch(&batch).unwrap();
                })
            })
        });
    }
    g.finish();
}

/// The stream the read benchmarks share: `n` messages of 128 B, every 1,000th on one of 10
/// subjects `rare.r<k>`, the others round-robin over 10,000 subjects `bench.s<i>`; and a
/// buffer of as many bytes, for the raw `memcpy`s.
struct Reads {
    _dir: TempDir,
    store: Store,
    s: Stream,
    n: u64,
    bench: Vec<String>,
    /// Bytes of a message as `load` returns them: subject and payload.
    msg_len: usize,
    rare_len: usize,
    buf: Vec<u8>,
}

const BENCH_SUBJECTS: usize = 10_000;

impl Reads {
    fn subject(i: u64) -> String {
        if i % 1000 == 999 {
            format!("rare.r{}", (i / 1000) % 10)
        } else {
            format!("bench.s{:05}", i % BENCH_SUBJECTS as u64)
        }
    }

    fn new() -> Reads {
        let n = scaled(1_000_000);
        let dir = bench_dir();
        let store = Store::open(dir.path().join("db"), StoreOptions::default()).unwrap();
        let s = store
            .create_stream(StreamConfig::new("r").durability(Durability::None))
            .unwrap();
        let payload = payload(128);
        let names: Vec<String> = (0..n).map(Reads::subject).collect();
        let start = Instant::now();
        for chunk in names.chunks(1000) {
            let batch: Vec<NewMessage<'_>> =
                chunk.iter().map(|s| NewMessage::new(s, &payload)).collect();
            s.append_batch(&batch).unwrap();
        }
        s.checkpoint().unwrap();
        let bytes = s.state().bytes as usize;
        eprintln!(
            "reads: {n} messages, {:.0} MB, written and checkpointed in {:.1} s",
            bytes as f64 / MB as f64,
            start.elapsed().as_secs_f64()
        );
        Reads {
            _dir: dir,
            store,
            s,
            n,
            bench: (0..BENCH_SUBJECTS as u64).map(Reads::subject).collect(),
            msg_len: Reads::subject(0).len() + payload.len(),
            rare_len: Reads::subject(999).len() + payload.len(),
            buf: vec![0x5a; bytes],
        }
    }

    /// A copy of `dst.len()` bytes from a random offset of the last `window` bytes of the
    /// buffer into `dst`.
    fn copy_random(&self, window: usize, rng: &mut Rng, dst: &mut [u8]) {
        let base = self.buf.len() - window;
        let off = base + (rng.next() % (window - dst.len()) as u64) as usize;
        dst.copy_from_slice(black_box(&self.buf[off..off + dst.len()]));
        black_box(dst);
    }

    /// Bytes of the newest `n` messages, near enough.
    fn tail(&self, n: u64) -> usize {
        (self.buf.len() as u64 / self.n * n) as usize
    }
}

fn reads(r: &mut Option<Reads>) -> &Reads {
    r.get_or_insert_with(Reads::new)
}

fn bench_reads(c: &mut Criterion, r: &mut Option<Reads>) {
    const SEED: u64 = 0x2545_f491_4f6c_dd1d;
    let mut dst = Vec::new();

    let mut g = group(
        c,
        "load_seq",
        Duration::from_secs(1),
        Duration::from_secs(3),
    );
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(SEED);
    g.bench_function("random_1M/tidelog", |b| {
        let f = reads(r);
        b.iter(|| black_box(f.s.load(1 + rng.next() % f.n).unwrap()))
    });
    let mut rng = Rng(SEED);
    g.bench_function("random_1M/raw", |b| {
        let f = reads(r);
        dst.resize(f.msg_len, 0);
        b.iter(|| f.copy_random(f.buf.len(), &mut rng, &mut dst))
    });
    g.finish();

    let mut g = group(
        c,
        "load_last",
        Duration::from_secs(1),
        Duration::from_secs(3),
    );
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(SEED);
    g.bench_function("10k_subjects/tidelog", |b| {
        let f = reads(r);
        b.iter(|| {
            let subject = &f.bench[(rng.next() % BENCH_SUBJECTS as u64) as usize];
            black_box(f.s.load_last(subject).unwrap().unwrap())
        })
    });
    let mut rng = Rng(SEED);
    g.bench_function("10k_subjects/raw", |b| {
        let f = reads(r);
        dst.resize(f.msg_len, 0);
        // The newest message of every subject is among the newest 10,010 of the stream.
        let window = f.tail(BENCH_SUBJECTS as u64 + 10);
        b.iter(|| f.copy_random(window, &mut rng, &mut dst))
    });
    g.finish();

    let mut g = group(
        c,
        "load_next",
        Duration::from_secs(1),
        Duration::from_secs(3),
    );
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(SEED);
    g.bench_function("sparse_wildcard/tidelog", |b| {
        let f = reads(r);
        b.iter(|| {
            // Below the last rare message, so there is always a match.
            let from = 1 + rng.next() % (f.n - 1000);
            black_box(f.s.load_next("rare.*", from).unwrap().unwrap())
        })
    });
    let mut rng = Rng(SEED);
    g.bench_function("sparse_wildcard/raw", |b| {
        let f = reads(r);
        dst.resize(f.rare_len, 0);
        b.iter(|| f.copy_random(f.buf.len(), &mut rng, &mut dst))
    });
    g.finish();

    let mut g = group(
        c,
        "num_pending",
        Duration::from_secs(1),
        Duration::from_secs(3),
    );
    g.throughput(Throughput::Elements(1));
    for (case, filter) in [
        ("sparse_wildcard", "rare.*"),
        ("wildcard_10k_subjects", "bench.*"),
    ] {
        g.bench_function(format!("{case}/tidelog"), |b| {
            let f = reads(r);
            b.iter(|| black_box(f.s.num_pending(f.n / 2, filter, false).unwrap()))
        });
    }
    g.finish();
}

fn bench_fetch_ack(c: &mut Criterion, r: &mut Option<Reads>) {
    const BATCH: usize = 100;
    let mut g = group(
        c,
        "fetch_ack",
        Duration::from_secs(1),
        Duration::from_secs(3),
    );
    g.throughput(Throughput::Elements(1));
    let mut made = 0;
    let mut consumer = None;
    g.bench_function("batch_100/tidelog", |b| {
        let f = reads(r);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                // A consumer that reached the end of the stream is replaced, untimed.
                let c = consumer.get_or_insert_with(|| {
                    made += 1;
                    f.s.create_consumer(
                        ConsumerConfig::new(format!("c{made}")).ack_wait(Duration::from_secs(3600)),
                    )
                    .unwrap()
                });
                let start = Instant::now();
                let got = c.fetch(left.min(BATCH), 0).unwrap();
                for d in &got {
                    assert_eq!(c.ack(d.message.seq).unwrap(), AckOutcome::Done);
                }
                total += start.elapsed();
                black_box(&got);
                if got.is_empty() {
                    let c = consumer.take().unwrap();
                    f.s.delete_consumer(c.name()).unwrap();
                }
                left -= got.len();
            }
            total
        })
    });
    let mut off = 0;
    let mut dst = Vec::new();
    g.bench_function("batch_100/raw", |b| {
        let f = reads(r);
        dst.resize(f.msg_len, 0);
        b.iter(|| {
            let len = dst.len();
            if off + len > f.buf.len() {
                off = 0;
            }
            dst.copy_from_slice(black_box(&f.buf[off..off + len]));
            off += len;
            black_box(&mut dst);
        })
    });
    g.finish();
    if let (Some(c), Some(f)) = (consumer, r.as_ref()) {
        f.s.delete_consumer(c.name()).unwrap();
    }
}

/// The C ABI of `libtidelog.so`, the few functions the FFI benchmarks call.
mod capi {
    use std::ffi::{c_char, c_void, CStr, CString};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    type Handle = *mut c_void;

    #[repr(C)]
    #[derive(Default)]
    pub struct Appended {
        pub seq: u64,
        pub ts: i64,
        pub duplicate: bool,
    }

    #[repr(C)]
    pub struct MsgView {
        pub seq: u64,
        pub ts: i64,
        pub subject: *const c_char,
        pub subject_len: usize,
        pub headers: *const u8,
        pub headers_len: usize,
        pub payload: *const u8,
        pub payload_len: usize,
        pub ttl: u64,
        pub marker: bool,
        pub rollup: u32,
        pub msg_id: *const u8,
        pub msg_id_len: usize,
    }

    const DURABILITY_NONE: u32 = 2;
    const ABI_VERSION: u32 = 1;

    pub struct Lib {
        abi_version: unsafe extern "C" fn() -> u32,
        error_new: unsafe extern "C" fn() -> Handle,
        error_message: unsafe extern "C" fn(Handle) -> *const c_char,
        store_open: unsafe extern "C" fn(*const c_char, Handle, *mut Handle, Handle) -> u32,
        store_close: unsafe extern "C" fn(Handle, Handle) -> u32,
        store_free: unsafe extern "C" fn(Handle),
        config_new: unsafe extern "C" fn(*const c_char, *mut Handle, Handle) -> u32,
        config_set_durability: unsafe extern "C" fn(Handle, u32, u64) -> u32,
        config_free: unsafe extern "C" fn(Handle),
        create_stream: unsafe extern "C" fn(Handle, Handle, *mut Handle, Handle) -> u32,
        delete_stream: unsafe extern "C" fn(Handle, *const c_char, Handle) -> u32,
        stream_free: unsafe extern "C" fn(Handle),
        #[allow(clippy::type_complexity)]
        append: unsafe extern "C" fn(
            Handle,
            *const c_char,
            usize,
            *const u8,
            usize,
            *const u8,
            usize,
            *mut Appended,
            Handle,
        ) -> u32,
        sync: unsafe extern "C" fn(Handle, Handle) -> u32,
        load: unsafe extern "C" fn(Handle, u64, *mut Handle, Handle) -> u32,
        msg_view: unsafe extern "C" fn(Handle) -> MsgView,
        msg_free: unsafe extern "C" fn(Handle),
    }

    /// The library next to the benchmark's profile directory, built first so that it holds
    /// the engine sources this benchmark was built from.
    pub fn library() -> Result<PathBuf, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/<profile>/deps/hotpaths-<hash>
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .ok_or("no profile directory")?;
        let so = profile.join("libtidelog.so");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "tidelog-ffi", "--lib"]);
        if profile.file_name().is_some_and(|n| n != "debug") {
            build.arg("--release");
        }
        match build.status() {
            Ok(s) if s.success() => {}
            r if so.exists() => eprintln!(
                "ffi: building tidelog-ffi failed ({r:?}); using the existing {}",
                so.display()
            ),
            r => return Err(format!("building tidelog-ffi failed ({r:?})")),
        }
        Ok(so)
    }

    /// The function `name` (NUL-terminated) of library `h`, as a function pointer type `F`.
    ///
    /// # Safety
    /// `h` is a live `dlopen` handle and `F` is the symbol's signature.
    unsafe fn sym<F: Copy>(h: *mut c_void, name: &str) -> Result<F, String> {
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
        // SAFETY: `name` is NUL-terminated; the caller vouches for `F`.
        unsafe {
            let p = libc::dlsym(h, name.as_ptr().cast());
            if p.is_null() {
                return Err(format!("{} not found", name.trim_end_matches('\0')));
            }
            Ok(std::mem::transmute_copy::<*mut c_void, F>(&p))
        }
    }

    impl Lib {
        pub fn open(path: &Path) -> Result<&'static Lib, String> {
            let c = CString::new(path.to_str().ok_or("path is not UTF-8")?).unwrap();
            // SAFETY: dlopen/dlsym with NUL-terminated names; every symbol is given the
            // signature include/tidelog.h declares for it. The library is never closed.
            unsafe {
                let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                if h.is_null() {
                    return Err(CStr::from_ptr(libc::dlerror())
                        .to_string_lossy()
                        .into_owned());
                }
                macro_rules! sym {
                    ($name:literal) => {
                        sym(h, concat!($name, "\0"))?
                    };
                }
                let lib = Lib {
                    abi_version: sym!("tidelog_abi_version"),
                    error_new: sym!("tidelog_error_new"),
                    error_message: sym!("tidelog_error_message"),
                    store_open: sym!("tidelog_store_open"),
                    store_close: sym!("tidelog_store_close"),
                    store_free: sym!("tidelog_store_free"),
                    config_new: sym!("tidelog_stream_config_new"),
                    config_set_durability: sym!("tidelog_stream_config_set_durability"),
                    config_free: sym!("tidelog_stream_config_free"),
                    create_stream: sym!("tidelog_store_create_stream"),
                    delete_stream: sym!("tidelog_store_delete_stream"),
                    stream_free: sym!("tidelog_stream_free"),
                    append: sym!("tidelog_stream_append"),
                    sync: sym!("tidelog_stream_sync"),
                    load: sym!("tidelog_stream_load"),
                    msg_view: sym!("tidelog_msg_get_view"),
                    msg_free: sym!("tidelog_msg_free"),
                };
                let v = (lib.abi_version)();
                if v != ABI_VERSION {
                    return Err(format!("ABI version {v}, expected {ABI_VERSION}"));
                }
                Ok(Box::leak(Box::new(lib)))
            }
        }
    }

    /// A store opened through the C ABI, with one error object for all its calls.
    pub struct CStore {
        lib: &'static Lib,
        store: Handle,
        err: Handle,
    }

    pub struct CStream<'a> {
        store: &'a CStore,
        s: Handle,
        name: CString,
    }

    impl CStore {
        pub fn open(lib: &'static Lib, dir: &Path) -> CStore {
            let d = CString::new(dir.to_str().unwrap()).unwrap();
            // SAFETY: arguments as the header requires; NULL options are the defaults.
            unsafe {
                let err = (lib.error_new)();
                let mut store = std::ptr::null_mut();
                let st = (lib.store_open)(d.as_ptr(), std::ptr::null_mut(), &mut store, err);
                let s = CStore { lib, store, err };
                s.check(st, "tidelog_store_open");
                s
            }
        }

        fn check(&self, status: u32, what: &str) {
            if status != 0 {
                // SAFETY: `err` is live and was passed to the failed call.
                let m = unsafe { CStr::from_ptr((self.lib.error_message)(self.err)) };
                panic!("{what}: status {status}: {}", m.to_string_lossy());
            }
        }

        /// A new file stream with `Durability::None`.
        pub fn stream(&self, name: &str) -> CStream<'_> {
            let name = CString::new(name).unwrap();
            // SAFETY: arguments as the header requires.
            unsafe {
                let mut cfg = std::ptr::null_mut();
                let st = (self.lib.config_new)(name.as_ptr(), &mut cfg, self.err);
                self.check(st, "tidelog_stream_config_new");
                let st = (self.lib.config_set_durability)(cfg, DURABILITY_NONE, 0);
                self.check(st, "tidelog_stream_config_set_durability");
                let mut s = std::ptr::null_mut();
                let st = (self.lib.create_stream)(self.store, cfg, &mut s, self.err);
                (self.lib.config_free)(cfg);
                self.check(st, "tidelog_store_create_stream");
                CStream {
                    store: self,
                    s,
                    name,
                }
            }
        }
    }

    impl Drop for CStore {
        fn drop(&mut self) {
            // SAFETY: handles from this library, not used afterwards.
            unsafe {
                let st = (self.lib.store_close)(self.store, self.err);
                self.check(st, "tidelog_store_close");
                (self.lib.store_free)(self.store);
            }
        }
    }

    impl CStream<'_> {
        pub fn append(&self, subject: &str, payload: &[u8]) -> u64 {
            let mut out = Appended::default();
            let lib = self.store.lib;
            // SAFETY: pointers valid for their lengths; `out` writable.
            let st = unsafe {
                (lib.append)(
                    self.s,
                    subject.as_ptr().cast(),
                    subject.len(),
                    std::ptr::null(),
                    0,
                    payload.as_ptr(),
                    payload.len(),
                    &mut out,
                    self.store.err,
                )
            };
            self.store.check(st, "tidelog_stream_append");
            out.seq
        }

        pub fn sync(&self) {
            // SAFETY: live handles.
            let st = unsafe { (self.store.lib.sync)(self.s, self.store.err) };
            self.store.check(st, "tidelog_stream_sync");
        }

        /// Loads `seq` and returns its payload's length, as a host reading it would.
        pub fn load(&self, seq: u64) -> usize {
            let lib = self.store.lib;
            let mut m = std::ptr::null_mut();
            // SAFETY: live handles; `m` writable, and freed once its view is read.
            unsafe {
                let st = (lib.load)(self.s, seq, &mut m, self.store.err);
                self.store.check(st, "tidelog_stream_load");
                let v = (lib.msg_view)(m);
                let n = std::hint::black_box(std::slice::from_raw_parts(v.payload, v.payload_len))
                    .len();
                (lib.msg_free)(m);
                n
            }
        }

        /// Deletes the stream and frees the handle.
        pub fn delete(self) {
            let lib = self.store.lib;
            // SAFETY: live handles; the stream handle is not used afterwards.
            unsafe {
                let st = (lib.delete_stream)(self.store.store, self.name.as_ptr(), self.store.err);
                self.store.check(st, "tidelog_store_delete_stream");
                (lib.stream_free)(self.s);
            }
        }
    }
}

/// Whether criterion will run one of `ids`, as far as [`selected`] can tell.
fn any_selected(ids: &[&str]) -> bool {
    ids.iter().any(|id| selected(id))
}

fn bench_ffi(c: &mut Criterion, r: &mut Option<Reads>) {
    // Building the library takes a while: not for a run that skips the group.
    if !any_selected(&[
        "ffi/append_128B_none/c_abi",
        "ffi/append_128B_none/rust",
        "ffi/load_random_1M/c_abi",
        "ffi/load_random_1M/rust",
    ]) {
        return;
    }
    let lib = match capi::library().and_then(|p| capi::Lib::open(&p).map(|l| (l, p))) {
        Ok((lib, p)) => {
            eprintln!("ffi: using {}", p.display());
            lib
        }
        Err(e) => {
            eprintln!("ffi: SKIPPED, no C library to load: {e}");
            return;
        }
    };
    let dir = bench_dir();
    let cstore = capi::CStore::open(lib, &dir.path().join("db"));
    let subjects = subjects();
    let payload = payload(128);
    let mut fresh = Fresh::new();
    let mut made = 0;

    let mut g = group(c, "ffi", Duration::from_secs(1), Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    g.bench_function("append_128B_none/c_abi", |b| {
        b.iter_custom(|iters| {
            made += 1;
            let s = cstore.stream(&format!("a{made}"));
            let start = Instant::now();
            for i in 0..iters as usize {
                s.append(&subjects[i % SUBJECTS], &payload);
            }
            let t = start.elapsed();
            s.delete();
            t
        })
    });
    g.bench_function("append_128B_none/rust", |b| {
        b.iter_custom(|iters| {
            let s = fresh.stream(|n| StreamConfig::new(n).durability(Durability::None));
            let start = Instant::now();
            for i in 0..iters as usize {
                s.append(&subjects[i % SUBJECTS], b"", &payload).unwrap();
            }
            let t = start.elapsed();
            fresh.done(s);
            t
        })
    });

    const SEED: u64 = 0x2545_f491_4f6c_dd1d;
    let mut loaded: Option<capi::CStream<'_>> = None;
    let mut rng = Rng(SEED);
    g.bench_function("load_random_1M/c_abi", |b| {
        let n = reads(r).n;
        // The same messages as the read benchmarks' stream, appended through the C ABI.
        let s = loaded.get_or_insert_with(|| {
            let s = cstore.stream("reads");
            let start = Instant::now();
            for i in 0..n {
                s.append(&Reads::subject(i), &payload);
            }
            s.sync();
            eprintln!(
                "ffi: {n} messages appended through the C ABI in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            s
        });
        b.iter(|| black_box(s.load(1 + rng.next() % n)))
    });
    let mut rng = Rng(SEED);
    g.bench_function("load_random_1M/rust", |b| {
        let f = reads(r);
        b.iter(|| black_box(f.s.load(1 + rng.next() % f.n).unwrap().payload().len()))
    });
    g.finish();
    if let Some(s) = loaded {
        s.delete();
    }
}

const NS: i64 = 1_000_000_000;

fn bench_expire(c: &mut Criterion) {
    let n = scaled(100_000);
    let (subjects, payload) = (subjects(), payload(128));
    let batch: Vec<NewMessage<'_>> = subjects
        .iter()
        .map(|s| NewMessage::new(s, &payload).with_ttl(Ttl::Secs(1)))
        .collect();
    // Mid-second, mid-2025: appends at one instant all fall due in the same second.
    let clock = Arc::new(ManualClock::new(1_750_000_000 * NS + NS / 4));
    let mut store: Option<(TempDir, Store)> = None;
    let mut k = 0;
    let mut g = group(
        c,
        "ttl_expire",
        Duration::from_millis(1),
        Duration::from_secs(2),
    );
    g.throughput(Throughput::Elements(n))
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("100k_due_at_once/tidelog", |b| {
        let (_, store) = store.get_or_insert_with(|| {
            let dir = bench_dir();
            let opts = StoreOptions {
                clock: Some(clock.clone()),
                manual_maintenance: true,
                ..Default::default()
            };
            let store = Store::open(dir.path().join("db"), opts).unwrap();
            (dir, store)
        });
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                let cfg = StreamConfig::new(format!("e{k}")).allow_msg_ttl(true);
                let s = store.create_stream(cfg).unwrap();
                let at = clock.now_ns();
                let mut left = n as usize;
                while left > 0 {
                    let m = left.min(batch.len());
                    s.append_batch(&batch[..m]).unwrap();
                    left -= m;
                }
                // Brings the timer wheel up to `at`, as the maintainer's ticks keep it, so the
                // timed passes only move it on to the due second.
                assert_eq!(s.expire_now().unwrap(), 0);
                let due = (at + NS - 1).div_euclid(NS) + 1;
                clock.set_ns(due * NS);
                let start = Instant::now();
                let mut gone = 0;
                while gone < n {
                    let e = s.expire_now().unwrap();
                    assert!(e > 0, "expiry stalled at {gone} of {n}");
                    gone += e;
                }
                total += start.elapsed();
                assert_eq!(s.state().messages, 0);
                store.delete_stream(s.name()).unwrap();
                clock.set_ns(due * NS + NS / 4);
            }
            total
        })
    });
    g.finish();
}

/// A store directory as a killed process leaves it: stream "s" with `before` bytes of
/// records covered by a checkpoint and `tail` bytes after it, synced, never closed.
fn crash_image(before: u64, tail: u64, rec: u64) -> TempDir {
    let dir = bench_dir();
    let opts = StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open(dir.path().join("db"), opts).unwrap();
    let s = store
        .create_stream(StreamConfig::new("s").durability(Durability::None))
        .unwrap();
    let (subjects, payload) = (subjects(), payload(128));
    let fill = |from: u64, n: u64| {
        for i in from..from + n {
            s.append(&subjects[i as usize % SUBJECTS], b"", &payload)
                .unwrap();
        }
    };
    fill(0, before / rec);
    s.checkpoint().unwrap();
    fill(before / rec, tail / rec);
    s.sync().unwrap();
    // No close: no final checkpoint. The forgotten store keeps its lock on this directory,
    // so every reopen works on a copy.
    std::mem::forget(s);
    std::mem::forget(store);
    dir
}

/// `read(2)` of the last `bytes` of the block files under `dir`, in log order.
fn read_tail(dir: &Path, bytes: u64, buf: &mut [u8]) -> Duration {
    let mut blocks: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "blk"))
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect();
    blocks.sort();
    let total: u64 = blocks.iter().map(|b| b.1).sum();
    let mut skip = total.saturating_sub(bytes);
    let start = Instant::now();
    for (p, len) in blocks {
        if skip >= len {
            skip -= len;
            continue;
        }
        let mut f = File::open(p).unwrap();
        f.seek(SeekFrom::Start(skip)).unwrap();
        skip = 0;
        loop {
            let n = f.read(buf).unwrap();
            if n == 0 {
                break;
            }
            black_box(&buf[..n]);
        }
    }
    start.elapsed()
}

fn bench_recovery(c: &mut Criterion) {
    let rec = encoded_len(&subjects()[0], &payload(128));
    let (before, tail) = (scaled(16 * MB), scaled(64 * MB));
    let tail_bytes = tail / rec * rec;
    let mut image: Option<TempDir> = None;
    let mut reported = false;
    let mut g = group(
        c,
        "recovery",
        Duration::from_millis(1),
        Duration::from_secs(4),
    );
    g.throughput(Throughput::Bytes(tail_bytes))
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("64MB_after_checkpoint/tidelog", |b| {
        let image = image.get_or_insert_with(|| crash_image(before, tail, rec));
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let copy = bench_dir();
                copy_dir(image.path(), copy.path());
                let opts = StoreOptions {
                    manual_maintenance: true,
                    ..Default::default()
                };
                let start = Instant::now();
                let store = Store::open(copy.path().join("db"), opts).unwrap();
                total += start.elapsed();
                if !std::mem::replace(&mut reported, true) {
                    let r = store.stream("s").unwrap().recovery_report().clone();
                    eprintln!(
                        "recovery: checkpoint used: {}, replayed {} records ({} bytes; tail \
                         appended: {tail_bytes} bytes) in {} ms (index {} ms)",
                        r.used_checkpoint,
                        r.replayed_records,
                        r.replayed_bytes,
                        r.duration_us / 1000,
                        r.index_us / 1000
                    );
                }
                // Closing writes a checkpoint into the copy, which is thrown away.
                drop(store);
            }
            total
        })
    });
    let mut buf = vec![0u8; 1 << 20];
    g.bench_function("64MB_after_checkpoint/raw", |b| {
        let image = image.get_or_insert_with(|| crash_image(before, tail, rec));
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let copy = bench_dir();
                copy_dir(image.path(), copy.path());
                total += read_tail(&copy.path().join("db/streams/s"), tail_bytes, &mut buf);
            }
            total
        })
    });
    g.finish();
}

/// Compaction's input: a stream of 1 KiB messages in 8 MiB blocks with 9 in 10 removed and
/// two checkpoints taken since, so that `reclaim()` only rewrites blocks.
fn sparse_stream(store: &Store, name: &str) -> Stream {
    let (bytes, block) = if quick() {
        (4 * MB, 1 << 20)
    } else {
        (64 * MB, 8 << 20)
    };
    let s = store
        .create_stream(
            StreamConfig::new(name)
                .durability(Durability::None)
                .block_size(block),
        )
        .unwrap();
    let payload = payload(1 << 10);
    let subjects: Vec<String> = (0..100).map(|i| format!("fill.s{i:03}")).collect();
    let mut i = 0;
    while s.state().bytes < bytes {
        let batch: Vec<NewMessage<'_>> = (i..i + 256)
            .map(|k| NewMessage::new(&subjects[k % subjects.len()], &payload))
            .collect();
        s.append_batch(&batch).unwrap();
        i += 256;
    }
    let st = s.state();
    for seq in st.first_seq..=st.last_seq {
        if !(seq - st.first_seq).is_multiple_of(10) {
            s.remove(seq).unwrap();
        }
    }
    s.checkpoint().unwrap();
    s.checkpoint().unwrap();
    s
}

fn bench_compaction(c: &mut Criterion) {
    if !any_selected(&[
        "compaction/reclaim_10pct_live/tidelog",
        "compaction/reclaim_10pct_live/raw",
    ]) {
        return;
    }
    let dir = bench_dir();
    let opts = StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open(dir.path().join("db"), opts).unwrap();
    // The bytes and blocks one reclaim rewrites: the same every time, as the input is.
    let s = sparse_stream(&store, "calibrate");
    let blocks = s.reclaim().unwrap() as u64;
    let bytes = s.compacted_bytes();
    store.delete_stream(s.name()).unwrap();
    assert!(blocks > 0 && bytes > 0, "nothing to compact");
    eprintln!(
        "compaction: reclaim rewrites {blocks} blocks, {:.2} MB of live records",
        bytes as f64 / MB as f64
    );

    let mut k = 0;
    let mut g = group(
        c,
        "compaction",
        Duration::from_millis(1),
        Duration::from_secs(3),
    );
    g.throughput(Throughput::Bytes(bytes))
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("reclaim_10pct_live/tidelog", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                let s = sparse_stream(&store, &format!("c{k}"));
                let start = Instant::now();
                let n = s.reclaim().unwrap() as u64;
                total += start.elapsed();
                assert_eq!((n, s.compacted_bytes()), (blocks, bytes));
                store.delete_stream(s.name()).unwrap();
            }
            total
        })
    });

    let per_block = bytes.div_ceil(blocks) as usize;
    let source = dir.path().join("source");
    std::fs::write(&source, vec![0x5au8; bytes as usize]).unwrap();
    File::open(&source).unwrap().sync_all().unwrap();
    let mut buf = vec![0u8; per_block];
    g.bench_function("reclaim_10pct_live/raw", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut src = File::open(&source).unwrap();
                let mut left = bytes as usize;
                let mut paths = Vec::new();
                let start = Instant::now();
                for i in 0..blocks {
                    let n = left.min(per_block);
                    src.read_exact(&mut buf[..n]).unwrap();
                    let path = dir.path().join(format!("out{i}"));
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .unwrap();
                    f.write_all(&buf[..n]).unwrap();
                    f.sync_data().unwrap();
                    paths.push(path);
                    left -= n;
                }
                total += start.elapsed();
                for p in paths {
                    std::fs::remove_file(p).unwrap();
                }
            }
            total
        })
    });
    g.finish();
}

fn main() {
    let started = Instant::now();
    eprintln!("load average at start: {}", load_average());
    let mut c = Criterion::default().configure_from_args();
    let mut reads: Option<Reads> = None;
    bench_append(&mut c);
    bench_batch(&mut c);
    bench_reads(&mut c, &mut reads);
    bench_fetch_ack(&mut c, &mut reads);
    bench_ffi(&mut c, &mut reads);
    if let Some(r) = reads.take() {
        r.store.close().unwrap();
    }
    bench_expire(&mut c);
    bench_recovery(&mut c);
    bench_compaction(&mut c);
    c.final_summary();
    eprintln!(
        "load average at end: {}; whole run {:.0} s",
        load_average(),
        started.elapsed().as_secs_f64()
    );
}
