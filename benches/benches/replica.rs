//! Benchmarks of replica ingest. Payloads are 128 bytes over 1,000 subjects, half of the
//! appends `sub` rollups (a key-value workload); streams are file streams with
//! `Durability::None` in a temporary directory (or one under `TIDELOG_BENCH_DIR`).
//!
//! - `replica/origin_append`: single appends (`append_msg`) to an origin stream.
//! - `replica/ingest`: `append_raw_msg` of the same messages (sequence, timestamp, rollup)
//!   into a replica stream, as a mirror applies what it reads from its origin. The messages
//!   are read from the origin beforehand (untimed), so the figure is the replica's cost alone.
//!
//! After criterion's samples the two run interleaved, 7 rounds of 200,000 messages each on
//! fresh streams; printed: the median rates and the median of the per-round ratios
//! `ingest / origin_append`. Target: at least 0.9.

mod common;

use std::time::{Duration, Instant};

use common::{median, quick, scaled, Fresh};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidelog::{Durability, NewMessage, Rollup, StoredMessage, Stream, StreamConfig};

const SUBJECTS: usize = 1000;
const PAYLOAD: [u8; 128] = [7; 128];
const ROUND: u64 = 200_000;

fn cfg(name: String) -> StreamConfig {
    let mut c = StreamConfig::new(name).allow_rollup(true);
    c.durability = Durability::None;
    c
}

fn subjects() -> Vec<String> {
    (0..SUBJECTS).map(|i| format!("kv.key{i}")).collect()
}

/// Appends `n` messages to `s` as the origin's producers would.
fn produce(s: &Stream, subjects: &[String], n: u64) {
    for i in 0..n as usize {
        let mut m = NewMessage::new(&subjects[i % SUBJECTS], &PAYLOAD);
        if i % 2 == 0 {
            m = m.with_rollup(Rollup::Subject);
        }
        s.append_msg(&m).unwrap();
    }
}

/// Everything `s` holds, as a mirror reads it.
fn read_all(s: &Stream) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    let mut from = 1;
    while let Some(m) = s.load_next(">", from).unwrap() {
        from = m.seq + 1;
        out.push(m);
    }
    out
}

/// Applies `msgs` to `s` with the origin's sequences, timestamps and rollups.
fn ingest(s: &Stream, msgs: &[StoredMessage]) {
    for m in msgs {
        let mut n = NewMessage::new(m.subject(), m.payload()).with_headers(m.headers());
        n.rollup = m.rollup;
        n.ttl = m.ttl;
        s.append_raw_msg(m.seq, m.ts, &n).unwrap();
    }
}

/// Time of one origin round and one ingest round of its messages, on fresh streams.
fn round(fresh: &mut Fresh, subjects: &[String], n: u64) -> (Duration, Duration) {
    let origin = fresh.stream(cfg);
    let t = Instant::now();
    produce(&origin, subjects, n);
    let append = t.elapsed();
    let msgs = read_all(&origin);
    let replica = fresh.stream(cfg);
    let t = Instant::now();
    ingest(&replica, &msgs);
    let ingest_t = t.elapsed();
    assert_eq!(replica.state_digest(), origin.state_digest());
    fresh.done(origin);
    fresh.done(replica);
    (append, ingest_t)
}

fn bench(c: &mut Criterion) {
    let subjects = subjects();
    let mut fresh = Fresh::new();
    let n = scaled(ROUND);
    let mut g = c.benchmark_group("replica");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("origin_append", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| round(&mut fresh, &subjects, n).0)
                .sum::<Duration>()
        })
    });
    g.bench_function("ingest", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| round(&mut fresh, &subjects, n).1)
                .sum::<Duration>()
        })
    });
    g.finish();
    let rounds = if quick() { 1 } else { 7 };
    let (mut a, mut i, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (ta, ti) = round(&mut fresh, &subjects, n);
        let (ra, ri) = (n as f64 / ta.as_secs_f64(), n as f64 / ti.as_secs_f64());
        a.push(ra / 1e6);
        i.push(ri / 1e6);
        ratio.push(ri / ra);
    }
    let r = median(&ratio);
    println!(
        "replica interleaved ({rounds} rounds of {n} messages, half of them sub rollups, file streams, Durability::None):"
    );
    println!(
        "  median origin appends {:.2} M msgs/s, replica ingest {:.2} M msgs/s",
        median(&a),
        median(&i)
    );
    println!(
        "  ratio ingest/origin, per round {:?}: median {r:.3} (target >= 0.9: {})",
        ratio
            .iter()
            .map(|x| (x * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        if r >= 0.9 { "met" } else { "NOT met" }
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
