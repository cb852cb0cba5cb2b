//! Benchmarks of message-id deduplication with 10M ids in the duplicate window (a file
//! stream with `Durability::None`, a window of one hour and `max_ids` 10M, filled with 10M
//! messages of 64 bytes, each with an 18-byte id, over 1,000 subjects).
//!
//! - `dedup/duplicate`: `append_msg` of a random id already in the window: the check finds
//!   it, confirms it against its record and returns the first sequence, storing nothing.
//! - `dedup/append_new_id` and `dedup/append_no_id`: appends of new messages with a fresh id
//!   and without one; their difference is what a check that finds nothing plus the insert
//!   cost.
//!
//! Printed after criterion's samples: the index's bytes (target: at most 64 MiB for 10M
//! ids), and the median and p99 of 1,000,000 individually timed duplicate checks and of
//! 200,000 appends with and without ids, interleaved (target: a check at most 1 µs median).

mod common;

use std::time::{Duration, Instant};

use common::{median, millions, scaled, Fresh, Rng};
use criterion::{criterion_group, criterion_main, Criterion};
use tidelog::{Dedup, Durability, NewMessage, Stream, StreamConfig};

const IDS: u64 = 10_000_000;
const BATCH: u64 = 1000;
const PAYLOAD: [u8; 64] = [5; 64];

fn id(i: u64) -> String {
    format!("order-{i:012}")
}

fn subject(i: u64) -> String {
    format!("orders.s{}", i % 1000)
}

fn fill(s: &Stream, n: u64) {
    let mut i = 0;
    while i < n {
        let k = BATCH.min(n - i);
        let subjects: Vec<String> = (i..i + k).map(subject).collect();
        let ids: Vec<String> = (i..i + k).map(id).collect();
        let msgs: Vec<NewMessage<'_>> = (0..k as usize)
            .map(|j| NewMessage::new(&subjects[j], &PAYLOAD).with_msg_id(ids[j].as_bytes()))
            .collect();
        s.append_batch(&msgs).unwrap();
        i += k;
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

fn bench(c: &mut Criterion) {
    let n = scaled(IDS);
    let mut fresh = Fresh::new();
    let s = fresh.stream(|name| {
        let mut c = StreamConfig::new(name).dedup(Dedup::new(Duration::from_secs(3600), n));
        c.durability = Durability::None;
        c
    });
    let t = Instant::now();
    fill(&s, n);
    let fill_t = t.elapsed();
    let stats = s.dedup_stats().unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut g = c.benchmark_group("dedup");
    g.bench_function("duplicate", |b| {
        b.iter(|| {
            let i = rng.next() % n;
            let m = NewMessage::new("orders.s1", &PAYLOAD);
            let id = id(i);
            let a = s.append_msg(&m.with_msg_id(id.as_bytes())).unwrap();
            debug_assert!(a.duplicate);
            a
        })
    });
    let checks = scaled(1_000_000) as usize;
    // Ids retried soon after they were sent, as producers retry: among the newest 10,000.
    let mut recent = Vec::with_capacity(checks);
    for _ in 0..checks {
        let id = id(n - 1 - rng.next() % 10_000.min(n));
        let m = NewMessage::new("orders.s1", &PAYLOAD).with_msg_id(id.as_bytes());
        let t = Instant::now();
        let a = s.append_msg(&m).unwrap();
        recent.push(t.elapsed().as_nanos() as f64);
        assert!(a.duplicate);
    }
    let mut dup = Vec::with_capacity(checks);
    for _ in 0..checks {
        let id = id(rng.next() % n);
        let m = NewMessage::new("orders.s1", &PAYLOAD).with_msg_id(id.as_bytes());
        let t = Instant::now();
        let a = s.append_msg(&m).unwrap();
        dup.push(t.elapsed().as_nanos() as f64);
        assert!(a.duplicate);
    }
    // Appends of new ids push the oldest out of the window: they come after every check.
    let mut next = n;
    g.bench_function("append_new_id", |b| {
        b.iter(|| {
            next += 1;
            let id = id(next);
            s.append_msg(&NewMessage::new("orders.s1", &PAYLOAD).with_msg_id(id.as_bytes()))
                .unwrap()
        })
    });
    g.bench_function("append_no_id", |b| {
        b.iter(|| {
            // The id is formatted (and dropped) as above, so only the dedup work differs.
            next += 1;
            let _id = id(next);
            s.append_msg(&NewMessage::new("orders.s1", &PAYLOAD))
                .unwrap()
        })
    });
    g.finish();

    let appends = scaled(200_000) as usize;
    let (mut with, mut without) = (Vec::with_capacity(appends), Vec::with_capacity(appends));
    for k in 0..2 * appends {
        next += 1;
        let id = id(next);
        let mut m = NewMessage::new("orders.s1", &PAYLOAD);
        if k % 2 == 0 {
            m = m.with_msg_id(id.as_bytes());
        }
        let t = Instant::now();
        let a = s.append_msg(&m).unwrap();
        let ns = t.elapsed().as_nanos() as f64;
        assert!(!a.duplicate);
        if k % 2 == 0 { &mut with } else { &mut without }.push(ns);
    }
    let stats_after = s.dedup_stats().unwrap();
    let mib = stats.index_bytes as f64 / (1 << 20) as f64;
    println!(
        "dedup with {} ids in the window (filled in {:.1} s):",
        millions(n),
        fill_t.as_secs_f64()
    );
    println!(
        "  index {mib:.1} MiB = {:.2} bytes per id (target <= 64 MiB: {}); ids remembered {} (after the runs {})",
        stats.index_bytes as f64 / n as f64,
        if mib <= 64.0 { "met" } else { "NOT met" },
        stats.ids,
        stats_after.ids
    );
    let m = median(&dup);
    println!(
        "  duplicate check (append_msg of an id in the window, confirmed against its record): median {:.0} ns, p99 {:.0} ns (target <= 1 us median: {})",
        m,
        percentile(&mut dup, 0.99),
        if m <= 1000.0 { "met" } else { "NOT met" }
    );
    println!(
        "  duplicate check of a recent id (one of the newest 10,000): median {:.0} ns, p99 {:.0} ns",
        median(&recent),
        percentile(&mut recent, 0.99)
    );
    let (mw, mo) = (median(&with), median(&without));
    println!(
        "  new appends, interleaved: with a new id median {mw:.0} ns (p99 {:.0}), without an id {mo:.0} ns (p99 {:.0}); the check that finds nothing plus the insert: {:.0} ns",
        percentile(&mut with, 0.99),
        percentile(&mut without, 0.99),
        mw - mo
    );
    fresh.done(s);
}

criterion_group!(benches, bench);
criterion_main!(benches);
