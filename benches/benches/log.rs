//! Benchmarks of the log's hot paths, all on real files (a temporary directory, or one under
//! `TIDELOG_BENCH_DIR`), reported as messages per second:
//!
//! - `append/none_128B_1000_subjects`: one producer, `Durability::None`, 128-byte payloads over
//!   1,000 subjects, `StoreOptions::default()` (background flusher).
//! - `append/raw_write_<N>B`: the raw limit for the same bytes: plain `write(2)` of `N` bytes
//!   per message (the encoded record size) in 1 MiB chunks, no fsync. `append` / `raw_write`
//!   is the fraction of raw sequential-write speed the append path reaches.
//! - `durable/append_batch_1000`: `append_batch` of 1,000 messages, `Durability::Always`.
//! - `durable/append_64_threads`: 64 threads doing single durable appends (group commit); the
//!   figure is total messages per second.
//! - `load/random_seq/1M`: `load` of random sequences in a stream of 1M messages.
//! - `reopen/after_crash/1M`: `Store::open` of a stream of 1M messages whose process died
//!   (no close) after a `sync`, with checkpoints taken every 32 MiB of log as the background
//!   maintainer does, so the tail after the last one is replayed. `reopen/no_checkpoint/1M`
//!   is the worst case: the whole log is replayed. Throughput is messages recovered per second.
//!
//! `TIDELOG_BENCH_LARGE=1` adds the 10M-message variants of `load` and `reopen` (several GB of
//! disk and a few minutes). Every sample of the append benchmarks writes to a fresh stream,
//! deleted afterwards, so disk use stays bounded however long criterion runs.

mod common;

use common::{bench_dir, copy_dir, encoded_len, Fresh, Rng};

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use tempfile::TempDir;
use tidelog::{Durability, NewMessage, Store, StoreOptions, Stream, StreamConfig};

const PAYLOAD: usize = 128;
const SUBJECTS: usize = 1000;
/// How often the background maintainer checkpoints a busy stream (`CKPT_BYTES` in the engine).
const CHECKPOINT_BYTES: u64 = 32 << 20;

fn large() -> bool {
    std::env::var("TIDELOG_BENCH_LARGE").as_deref() == Ok("1")
}

/// Stream sizes for the load and reopen benchmarks.
fn sizes() -> Vec<u64> {
    let mut v = vec![1_000_000];
    if large() {
        v.push(10_000_000);
    }
    v
}

fn size_label(n: u64) -> String {
    let millions = n / 1_000_000;
    if millions > 0 && millions * 1_000_000 == n {
        format!("{millions}M")
    } else {
        n.to_string()
    }
}

fn subjects() -> Vec<String> {
    (0..SUBJECTS).map(|i| format!("bench.sub.{i:04}")).collect()
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i as u8).wrapping_mul(37)).collect()
}

fn bench_append(c: &mut Criterion) {
    let subjects = subjects();
    let payload = payload();
    let rec = encoded_len(&subjects[0], &payload);
    let mut fresh = Fresh::new();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    g.bench_function("none_128B_1000_subjects", |b| {
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

    let path = fresh.dir.path().join("raw");
    let chunk = vec![0x5au8; 1 << 20];
    g.bench_function(format!("raw_write_{rec}B"), |b| {
        b.iter_custom(|iters| {
            let mut f = File::create(&path).unwrap();
            let mut left = iters * rec;
            let start = Instant::now();
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n]).unwrap();
                left -= n as u64;
            }
            let t = start.elapsed();
            drop(f);
            std::fs::remove_file(&path).unwrap();
            t
        })
    });
    g.finish();
}

fn bench_durable(c: &mut Criterion) {
    let subjects = subjects();
    let payload = payload();
    let mut fresh = Fresh::new();
    let mut g = c.benchmark_group("durable");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    let batch: Vec<NewMessage<'_>> = (0..1000)
        .map(|i| NewMessage::new(&subjects[i % SUBJECTS], &payload))
        .collect();
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("append_batch_1000", |b| {
        b.iter_custom(|iters| {
            let s = fresh.stream(|n| StreamConfig::new(n).durability(Durability::Always));
            let start = Instant::now();
            for _ in 0..iters {
                s.append_batch(&batch).unwrap();
            }
            let t = start.elapsed();
            fresh.done(s);
            t
        })
    });

    const THREADS: u64 = 64;
    g.throughput(Throughput::Elements(1));
    g.bench_function("append_64_threads", |b| {
        b.iter_custom(|iters| {
            let s = fresh.stream(|n| StreamConfig::new(n).durability(Durability::Always));
            let ready = Barrier::new(THREADS as usize + 1);
            let t = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let n = iters / THREADS + u64::from(t < iters % THREADS);
                        let (s, ready, subjects, payload) = (&s, &ready, &subjects, &payload);
                        scope.spawn(move || {
                            ready.wait();
                            for i in 0..n {
                                let subject = &subjects[((t * 997 + i) % SUBJECTS as u64) as usize];
                                s.append(subject, b"", payload).unwrap();
                            }
                        })
                    })
                    .collect();
                ready.wait();
                let start = Instant::now();
                for w in workers {
                    w.join().unwrap();
                }
                start.elapsed()
            });
            fresh.done(s);
            t
        })
    });
    g.finish();
}

/// A store in a temporary directory holding stream "s" with `n` messages.
struct Populated {
    _dir: TempDir,
    store: Store,
    stream: Stream,
}

fn populate(n: u64) -> Populated {
    let dir = bench_dir();
    let store = Store::open(dir.path().join("db"), StoreOptions::default()).unwrap();
    let stream = store
        .create_stream(StreamConfig::new("s").durability(Durability::None))
        .unwrap();
    let (subjects, payload) = (subjects(), payload());
    let started = Instant::now();
    for i in 0..n as usize {
        stream
            .append(&subjects[i % SUBJECTS], b"", &payload)
            .unwrap();
    }
    stream.sync().unwrap();
    eprintln!(
        "populated {} messages in {:.1?}",
        size_label(n),
        started.elapsed()
    );
    Populated {
        _dir: dir,
        store,
        stream,
    }
}

fn bench_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("load");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in sizes() {
        // Built on first use, so a filter that skips this benchmark skips the set-up too.
        let mut fixture: Option<Populated> = None;
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        g.bench_function(BenchmarkId::new("random_seq", size_label(n)), |b| {
            let p = fixture.get_or_insert_with(|| populate(n));
            b.iter(|| {
                let seq = 1 + rng.next() % n;
                black_box(p.stream.load(seq).unwrap())
            })
        });
        if let Some(p) = fixture {
            p.store.close().unwrap();
        }
    }
    g.finish();
}

/// A store directory as a killed process leaves it: `n` messages appended with
/// `Durability::None`, synced, checkpointed every `checkpoint_every` log bytes (never with
/// `None`), and never closed.
fn crash_image(n: u64, checkpoint_every: Option<u64>) -> TempDir {
    let dir = bench_dir();
    let opts = StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open(dir.path().join("db"), opts).unwrap();
    let s = store
        .create_stream(StreamConfig::new("s").durability(Durability::None))
        .unwrap();
    let (subjects, payload) = (subjects(), payload());
    let per_checkpoint = checkpoint_every.map(|b| b / encoded_len(&subjects[0], &payload));
    for i in 0..n {
        s.append(&subjects[i as usize % SUBJECTS], b"", &payload)
            .unwrap();
        if per_checkpoint.is_some_and(|k| (i + 1) % k == 0) {
            s.checkpoint().unwrap();
        }
    }
    s.sync().unwrap();
    // kill -9: no close, so no final checkpoint and no lease release. The forgotten store
    // keeps its lock, which is why every reopen works on a copy.
    std::mem::forget(s);
    std::mem::forget(store);
    dir
}

fn bench_reopen(c: &mut Criterion) {
    let mut g = c.benchmark_group("reopen");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(200));
    for n in sizes() {
        g.throughput(Throughput::Elements(n));
        for (name, every, secs) in [
            ("after_crash", Some(CHECKPOINT_BYTES), 2),
            ("no_checkpoint", None, 5),
        ] {
            // Each iteration also copies the image (untimed), so keep the timed part short.
            g.measurement_time(Duration::from_secs(secs));
            let mut image: Option<TempDir> = None;
            let mut reported = false;
            g.bench_function(BenchmarkId::new(name, size_label(n)), |b| {
                let image = image.get_or_insert_with(|| crash_image(n, every));
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let copy = bench_dir();
                        copy_dir(image.path(), copy.path());
                        let start = Instant::now();
                        let store =
                            Store::open(copy.path().join("db"), StoreOptions::default()).unwrap();
                        total += start.elapsed();
                        let s = store.stream("s").unwrap();
                        assert_eq!(s.state().messages, n);
                        if !reported {
                            reported = true;
                            let r = s.recovery_report();
                            eprintln!(
                                "reopen/{name}/{}: checkpoint used: {}, replayed {} records \
                                 ({} bytes), recovery took {} ms (index {} ms)",
                                size_label(n),
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
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_append,
    bench_durable,
    bench_load,
    bench_reopen
);
criterion_main!(benches);
