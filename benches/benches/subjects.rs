//! Benchmarks of the subject index, with `Durability::None`, on file streams in a temporary
//! directory (or one under `TIDELOG_BENCH_DIR`) unless said otherwise:
//!
//! - `subjects/append/<K>_subjects`: appends of 128-byte payloads round-robin over K distinct
//!   subjects (1, 1,000, 1,000,000) that already exist (one message each is appended before the
//!   clock starts), on a memory stream so the disk does not decide the figure; the ratio to
//!   `1_subjects` is the cost of the index. (`log/append/none_128B_1000_subjects` is the file
//!   stream.)
//! - `subjects/load_last/1000_subjects`: `load_last(subject)` of a random subject, 1M messages.
//! - `subjects/load_next_1M_gap/{literal,wildcard}`: `load_next` from just after one match of
//!   `rare.x` (`rare.*`) to the next, 1,000,000 other messages later.
//! - `subjects/load_next_dense/all_of_100k_subjects`: `load_next("bench.>")` from a random
//!   sequence, the filter matching all 100,000 subjects of a 1M-message stream.
//! - `subjects/num_pending_10M/{literal,wildcard_1000_of_100k}`: `num_pending` on a 10M-message
//!   stream over 100,000 subjects `bench.<g>.<i>` (g < 100, i < 1000), for one subject and for
//!   `bench.7.*` (1,000 subjects), from the middle of the stream.
//!
//! Set-up also prints the index memory of a stream with 1M subjects and 10M messages, counted
//! by a counting allocator (heap bytes) and by the engine (`Stream::index_memory`).

mod common;

use common::{bench_dir, Rng};

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tempfile::TempDir;
use tidelog::{Durability, Storage, Store, StoreOptions, Stream, StreamConfig};

struct Counting;

static HEAP: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new, Ordering::Relaxed);
        HEAP.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const PAYLOAD: [u8; 128] = [0x5a; 128];

struct Fixture {
    store: Store,
    stream: Stream,
    _dir: TempDir,
}

fn fixture(name: &str) -> Fixture {
    fixture_on(name, Storage::File)
}

fn fixture_on(name: &str, storage: Storage) -> Fixture {
    let dir = bench_dir();
    let store = Store::open(dir.path().join("db"), StoreOptions::default()).unwrap();
    let cfg = StreamConfig::new(name)
        .durability(Durability::None)
        .storage(storage);
    let stream = store.create_stream(cfg).unwrap();
    Fixture {
        store,
        stream,
        _dir: dir,
    }
}

fn fill(s: &Stream, subjects: &[String], n: usize) {
    for i in 0..n {
        s.append(&subjects[i % subjects.len()], b"", &PAYLOAD)
            .unwrap();
    }
}

fn bench_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("subjects/append");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for k in [1usize, 1000, 1_000_000] {
        let subjects: Vec<String> = (0..k).map(|i| format!("bench.s.{i}")).collect();
        g.bench_function(format!("{k}_subjects"), |b| {
            b.iter_custom(|iters| {
                // A memory stream: the same engine and index without the disk, whose write-back
                // throttling would otherwise decide the figure once a sample has written the
                // warm-up of a million subjects.
                let f = fixture_on("a", Storage::Memory);
                // Every subject exists before the clock starts: this is the steady state of a
                // stream with K live subjects (creating a subject costs more, once).
                fill(&f.stream, &subjects, subjects.len());
                let start = Instant::now();
                fill(&f.stream, &subjects, iters as usize);
                let t = start.elapsed();
                f.store.close().unwrap();
                t
            })
        });
    }
    g.finish();
}

fn bench_queries(c: &mut Criterion) {
    let mut g = c.benchmark_group("subjects");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let subjects: Vec<String> = (0..1000).map(|i| format!("bench.s.{i}")).collect();
    let mut last: Option<Fixture> = None;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    g.bench_function("load_last/1000_subjects", |b| {
        let f = last.get_or_insert_with(|| {
            let f = fixture("l");
            fill(&f.stream, &subjects, 1_000_000);
            f
        });
        b.iter(|| {
            let s = &subjects[(rng.next() % 1000) as usize];
            black_box(f.stream.load_last(s).unwrap())
        })
    });
    drop(last);

    let mut gap: Option<(Fixture, u64)> = None;
    for (name, filter) in [("literal", "rare.x"), ("wildcard", "rare.*")] {
        g.bench_function(format!("load_next_1M_gap/{name}"), |b| {
            let (f, first) = gap.get_or_insert_with(|| {
                let f = fixture("g");
                let first = f.stream.append("rare.x", b"", &PAYLOAD).unwrap().seq;
                fill(&f.stream, &["fill.a".to_string()], 1_000_000);
                f.stream.append("rare.x", b"", &PAYLOAD).unwrap();
                (f, first)
            });
            b.iter(|| {
                let m = f.stream.load_next(filter, *first + 1).unwrap().unwrap();
                black_box(m.seq)
            })
        });
    }
    drop(gap);

    // A filter matching every one of 100,000 subjects: each call must not enumerate them.
    let mut dense: Option<Fixture> = None;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    g.bench_function("load_next_dense/all_of_100k_subjects", |b| {
        let f = dense.get_or_insert_with(|| {
            let f = fixture("d");
            let subjects: Vec<String> = (0..100_000).map(|i| format!("bench.s.{i}")).collect();
            fill(&f.stream, &subjects, 1_000_000);
            f
        });
        b.iter(|| {
            let from = 1 + rng.next() % 1_000_000;
            black_box(f.stream.load_next("bench.>", from).unwrap())
        })
    });
    drop(dense);

    let mut big: Option<(Fixture, u64)> = None;
    g.sampling_mode(SamplingMode::Flat);
    for (name, filter) in [
        ("literal", "bench.7.123"),
        ("wildcard_1000_of_100k", "bench.7.*"),
    ] {
        g.bench_function(format!("num_pending_10M/{name}"), |b| {
            let (f, mid) = big.get_or_insert_with(|| {
                let f = fixture("p");
                let subjects: Vec<String> = (0..100_000)
                    .map(|i| format!("bench.{}.{}", i / 1000, i % 1000))
                    .collect();
                let t = Instant::now();
                fill(&f.stream, &subjects, 10_000_000);
                eprintln!("populated 10M messages in {:.1?}", t.elapsed());
                (f, 5_000_000)
            });
            b.iter(|| black_box(f.stream.num_pending(*mid, filter, false).unwrap()))
        });
    }
    drop(big);
    g.finish();
}

/// Heap and engine-counted index memory with 1M subjects and 10M messages.
fn report_memory(_: &mut Criterion) {
    if std::env::var("TIDELOG_BENCH_MEMORY").as_deref() == Ok("0") {
        return;
    }
    let f = fixture("mem");
    let subjects: Vec<String> = (0..1_000_000).map(|i| format!("bench.s.{i}")).collect();
    let names: usize = subjects.iter().map(String::len).sum();
    f.stream.append("warm.up", b"", &PAYLOAD).unwrap();
    f.stream.remove(1).unwrap();
    let before = HEAP.load(Ordering::Relaxed);
    fill(&f.stream, &subjects, 10_000_000);
    f.stream.sync().unwrap();
    let after = HEAP.load(Ordering::Relaxed);
    let m = f.stream.index_memory();
    let per = |total: usize| (total as f64 - names as f64) / 1e6;
    eprintln!(
        "index memory, 1M subjects ({names} name bytes), 10M messages: heap growth {} B \
         ({:.1} B/subject + 8 B/msg budget leaves {:.1}); engine count: subject index {} B, \
         offsets {} B (4 B/msg), other {} B; subject index beyond names = {:.1} B/subject \
         at 10 msgs/subject",
        after - before,
        per(after - before - 80_000_000),
        64.0 - per(after - before - 80_000_000),
        m.subject_index,
        m.offsets,
        m.other,
        per(m.subject_index),
    );
    f.store.close().unwrap();
}

criterion_group!(benches, report_memory, bench_append, bench_queries);
criterion_main!(benches);
