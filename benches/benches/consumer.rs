//! Benchmarks of consumers. Payloads are 128 bytes and streams use `Durability::None`; stores
//! live in a temporary directory (or one under `TIDELOG_BENCH_DIR`). Consumers wait an hour
//! for acknowledgements, so nothing is redelivered while a benchmark runs.
//!
//! - `consumer/ack/{1_thread,2_threads}`: explicit acknowledgements per second on one
//!   consumer. A memory stream holds 2^20 messages (1,000 subjects round-robin); each round
//!   creates a consumer with `max_ack_pending` 2^20 (`MAX_ACK_PENDING`), fetches the messages
//!   it acknowledges in batches of 65,536 (untimed), then times only the acks: the calling
//!   thread acking them all in sequence order, or it and one more thread each acking one half
//!   (the lower and the upper half of the sequences) at the same time, started together at a
//!   barrier, the figure then being their total. A criterion iteration is one ack; every ack
//!   must return `Done`. After criterion's samples the variants run interleaved (7 rounds of
//!   2^20 acks each, rotating which goes first), with a control: two threads acking as many
//!   messages each on a consumer of its own, so that they share nothing but the stream, which
//!   shows what the machine gives two threads. Printed: the median rates, the acking threads'
//!   CPU time per ack, and the medians of the per-round ratios `2_threads / 1_thread` and
//!   `control / 1_thread`. Targets: at least 10M acks/s from one thread; two threads at least
//!   1.5 times one.
//! - `consumer/fetch_filtered_1pct/{ack_none,ack_explicit}`: first deliveries per second of a
//!   consumer whose filter (one literal subject) matches 1% of a memory stream of 10M
//!   messages (100 subjects round-robin, so every 100th message matches; built once with
//!   `append_batch` of 1,000). Each pass creates the consumer (untimed) and times `fetch(1000,
//!   0)` until it comes back empty, 100,000 messages in all. `ack_none` uses
//!   `AckPolicy::None`; `ack_explicit` uses explicit acks with `max_ack_pending` 2^17
//!   (`FETCH_PENDING`, room for the 100,000 it fetches) and acknowledges nothing, so the
//!   figure includes the pending bookkeeping of a delivery but not the acks. Throughput is
//!   messages delivered per second; target at least 1M msgs/s. (The pending table takes 32
//!   bytes per max_ack_pending and its pages are first touched by deliveries: with 2^20, a
//!   fresh consumer's first 100,000 deliveries also fault in 32 MiB, which cut the figure to
//!   0.6-0.8M msgs/s here, a cost a consumer pays once.)
//! - `consumer/create_filtered/{literal,wildcard_tail,wildcard_mid,literal_max_pending_1M}`:
//!   time of `create_consumer` plus `state()` (whose `num_pending` is checked) on a memory
//!   stream of 10M messages over 100,000 subjects `bench.gNNN.sNNN` (100 groups of 1,000,
//!   round-robin: 100 messages each). Filters: one subject (`bench.g042.s007`, 100 pending),
//!   `bench.g042.*` and `bench.*.s007` (1,000 subjects, 100,000 pending each), and the single
//!   subject again with `max_ack_pending` 2^20 instead of the default 1,000 (the pending
//!   table is sized for it up front). Default explicit acks, deliver all. The consumer is
//!   deleted after each iteration, untimed; the median delete time is printed too, and the
//!   first create's time (the 2^20 table's memory is then fresh from the OS; the allocator
//!   reuses it afterwards). Target: at most 5 ms per create.
//! - `consumer/interest_append/{limits_no_consumers,interest_2_consumers}`: one producer
//!   appending single messages (1,000 subjects round-robin) to a fresh file stream per
//!   sample, with limits retention and no consumers, or interest retention and two consumers
//!   (no filter, explicit acks, `max_ack_pending` 16,384), each on its own thread fetching
//!   batches of up to 1,000 and acknowledging every message as it goes, sleeping 100 us when
//!   a fetch comes back empty. Messages per second of the producer; the consumers drain the
//!   rest untimed and the interest stream must end empty. After criterion's samples the two
//!   run interleaved (9 rounds of 1M messages each, alternating which goes first) and the
//!   median of the per-round ratios `interest / limits` is printed (target at least 0.5),
//!   with the same ratio by the producer's CPU time (what it spent itself rather than waiting
//!   or preempted: three busy threads on two cores), how far behind the consumers were when
//!   the producer finished, the consumers' own rate (below the producer's, the stream grows
//!   while it runs) and how many acks returned `NotPending` (see `consume`). The same
//!   interleaved comparison is printed for memory streams.
//!
//! The printed reports also show the load average (the benchmarks are meant for a quiet
//! machine). `--test` runs everything at 1/100 of the sizes, one round each. The 10M-message
//! streams take a few seconds each to build, on first use, so a filter that skips their
//! benchmarks skips that too; `TIDELOG_BENCH_SMALL=1` builds them with 1M messages instead
//! (the targets are stated for 10M). The printed interleaved comparisons run only after their
//! criterion benchmarks ran.

// `Rng` is not needed here: nothing picks at random.
#[allow(dead_code)]
mod common;

use common::{list, load_average, median, millions, quick, scaled, verdict, Fresh};

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tidelog::{
    AckOutcome, AckPolicy, Consumer, ConsumerConfig, Durability, NewMessage, Retention, Storage,
    Stream, StreamConfig, MAX_ACK_PENDING,
};

const PAYLOAD: usize = 128;
const SUBJECTS: usize = 1000;
/// Consumers wait this long for an ack: nothing is redelivered during a benchmark.
const ACK_WAIT: Duration = Duration::from_secs(3600);
/// Messages per `fetch` when filling a round of the ack benchmarks (untimed).
const ACK_FETCH_BATCH: usize = 1 << 16;
/// Messages per `fetch` in the fetch and interest benchmarks.
const FETCH_BATCH: usize = 1000;
/// Messages per `append_batch` when building the large streams.
const APPEND_BATCH: usize = 1000;

/// Messages in the two large streams: 10M (1M with `TIDELOG_BENCH_SMALL=1`), scaled.
fn large_stream() -> u64 {
    let n = if std::env::var("TIDELOG_BENCH_SMALL").as_deref() == Ok("1") {
        1_000_000
    } else {
        10_000_000
    };
    scaled(n)
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i as u8).wrapping_mul(37)).collect()
}

fn subjects() -> Vec<String> {
    (0..SUBJECTS).map(|i| format!("bench.sub.{i:04}")).collect()
}

fn memory(name: String) -> StreamConfig {
    StreamConfig::new(name)
        .storage(Storage::Memory)
        .durability(Durability::None)
}

/// Appends `n` messages in batches of [`APPEND_BATCH`], message `i` on `subjects[i % len]`.
fn fill(s: &Stream, subjects: &[String], payload: &[u8], n: u64) {
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    let mut i = 0;
    while i < n as usize {
        batch.clear();
        let m = (n as usize - i).min(APPEND_BATCH);
        batch.extend((i..i + m).map(|k| NewMessage::new(&subjects[k % subjects.len()], payload)));
        s.append_batch(&batch).unwrap();
        i += m;
    }
}

/// A memory stream of `n` messages on `subjects` (round-robin), with a line saying so.
fn build(fresh: &mut Fresh, what: &str, subjects: &[String], n: u64) -> Stream {
    let s = fresh.stream(memory);
    let start = Instant::now();
    fill(&s, subjects, &payload(), n);
    eprintln!(
        "{what}: built a memory stream of {} messages over {} subjects in {:.1} s",
        millions(n),
        subjects.len(),
        start.elapsed().as_secs_f64()
    );
    s
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    // SAFETY: `clock_gettime` only writes the struct it is given.
    unsafe {
        let mut t: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }
}

/// Acknowledges every sequence of `seqs`; returns how many acks returned `Done`.
fn ack_all(c: &Consumer, seqs: &[u64]) -> u64 {
    let mut done = 0;
    for &q in seqs {
        if c.ack(q).unwrap() == AckOutcome::Done {
            done += 1;
        }
    }
    done
}

/// Who acknowledges a round's messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ackers {
    /// The calling thread, all of them, on one consumer.
    One,
    /// The calling thread and one more, one half each, on one consumer.
    TwoShared,
    /// The control: two threads, each acking as many messages of a consumer of its own, so
    /// the threads share nothing but the stream. What the machine gives two threads.
    TwoSeparate,
}

/// Wall time and the acking threads' CPU time (summed) of one round.
#[derive(Clone, Copy)]
struct AckTime {
    wall: Duration,
    cpu_ns: u64,
}

/// The ack benchmarks' stream and the consumers made on it, new ones every round.
struct AckFixture {
    fresh: Fresh,
    s: Stream,
    /// Messages in the stream, and the most one round acknowledges.
    n: u64,
    k: u64,
}

impl AckFixture {
    fn new() -> AckFixture {
        let mut fresh = Fresh::new();
        let n = scaled(MAX_ACK_PENDING);
        let s = build(&mut fresh, "consumer/ack", &subjects(), n);
        AckFixture { fresh, s, n, k: 0 }
    }

    /// A new consumer with `max_ack_pending` `self.n` and the sequences of the first `m`
    /// messages it fetched.
    fn fetched(&mut self, m: usize) -> (String, Consumer, Vec<u64>) {
        self.k += 1;
        let name = format!("a{}", self.k);
        let c = self
            .s
            .create_consumer(
                ConsumerConfig::new(&name)
                    .ack(AckPolicy::Explicit)
                    .max_ack_pending(self.n)
                    .ack_wait(ACK_WAIT),
            )
            .unwrap();
        let mut seqs = Vec::with_capacity(m);
        while seqs.len() < m {
            let d = c.fetch((m - seqs.len()).min(ACK_FETCH_BATCH), 0).unwrap();
            assert!(!d.is_empty(), "the stream ran out of messages to deliver");
            seqs.extend(d.iter().map(|d| d.message.seq));
        }
        (name, c, seqs)
    }

    /// Fetches `m` messages (untimed), then times their acknowledgements by `who`. The
    /// threads start together at a barrier; the wall time runs from the calling thread
    /// leaving it until every ack is done.
    fn round(&mut self, m: u64, who: Ackers) -> AckTime {
        assert!((1..=self.n).contains(&m));
        let m = m as usize;
        // (consumer, the sequences one thread acknowledges on it), one per thread.
        let mut work: Vec<(Consumer, Vec<u64>)> = Vec::new();
        let mut names = Vec::new();
        match who {
            Ackers::One | Ackers::TwoShared => {
                let (name, c, mut seqs) = self.fetched(m);
                names.push(name);
                if who == Ackers::TwoShared {
                    let upper = seqs.split_off(m.div_ceil(2));
                    work.push((c.clone(), upper));
                }
                work.insert(0, (c, seqs));
            }
            Ackers::TwoSeparate => {
                for part in [m.div_ceil(2), m / 2] {
                    let (name, c, seqs) = self.fetched(part);
                    names.push(name);
                    work.push((c, seqs));
                }
            }
        }
        let start_line = Barrier::new(work.len());
        let (mine, others) = work.split_first().unwrap();
        let (t, done) = std::thread::scope(|scope| {
            let helpers: Vec<_> = others
                .iter()
                .map(|(c, seqs)| {
                    let start_line = &start_line;
                    scope.spawn(move || {
                        start_line.wait();
                        let cpu = thread_cpu_ns();
                        let done = ack_all(c, seqs);
                        (done, thread_cpu_ns() - cpu)
                    })
                })
                .collect();
            start_line.wait();
            let start = Instant::now();
            let cpu = thread_cpu_ns();
            let mut done = ack_all(&mine.0, &mine.1);
            let mut cpu_ns = thread_cpu_ns() - cpu;
            for h in helpers {
                let (d, c) = h.join().unwrap();
                done += d;
                cpu_ns += c;
            }
            let wall = start.elapsed();
            (AckTime { wall, cpu_ns }, done)
        });
        assert_eq!(done, m as u64, "every ack must apply");
        drop(work);
        for name in names {
            self.s.delete_consumer(&name).unwrap();
        }
        t
    }
}

fn bench_ack(c: &mut Criterion) {
    let mut fixture: Option<AckFixture> = None;
    let mut g = c.benchmark_group("consumer/ack");
    // Only the acks count towards criterion's time; each round also fetches up to 2^20
    // messages untimed, which takes about ten times as long.
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    for (name, who) in [("1_thread", Ackers::One), ("2_threads", Ackers::TwoShared)] {
        g.bench_function(name, |b| {
            let f = fixture.get_or_insert_with(AckFixture::new);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let m = left.min(f.n);
                    total += f.round(m, who).wall;
                    left -= m;
                }
                total
            })
        });
    }
    g.finish();
    if let Some(mut f) = fixture {
        ack_interleaved(&mut f);
        f.fresh.done(f.s);
    }
}

/// One thread, two threads on one consumer and two on two consumers, in rotating order, a
/// full round each.
fn ack_interleaved(f: &mut AckFixture) {
    const WHO: [Ackers; 3] = [Ackers::One, Ackers::TwoShared, Ackers::TwoSeparate];
    let rounds = if quick() { 1 } else { 7 };
    let load = load_average();
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new(), Vec::new()];
    let (mut ratios, mut control) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let mut t = [0.0; 3];
        for i in 0..3 {
            let k = (i + r) % 3;
            let a = f.round(f.n, WHO[k]);
            t[k] = a.wall.as_secs_f64();
            rates[k].push(f.n as f64 / t[k] / 1e6);
            cpu[k].push(a.cpu_ns as f64 / f.n as f64);
        }
        ratios.push(t[0] / t[1]);
        control.push(t[0] / t[2]);
    }
    let (one, ratio) = (median(&rates[0]), median(&ratios));
    eprintln!(
        "consumer/ack interleaved ({rounds} rounds of {} acks each way, memory stream, \
         max_ack_pending {}; load average before: {load}):\n  \
         1 thread:                  median {one:.2} M acks/s, per round [{}], CPU {:.1} ns/ack \
         (target >= 10M acks/s: {})\n  \
         2 threads, one consumer:   median {:.2} M acks/s in total, per round [{}], CPU {:.1} \
         ns/ack (both threads' CPU time)\n  \
         2 threads, two consumers:  median {:.2} M acks/s in total, per round [{}], CPU {:.1} \
         ns/ack (control: nothing shared)\n  \
         ratio 2 threads / 1 thread, per round [{}]: median {ratio:.3} (target >= 1.5: {})\n  \
         control ratio (two consumers) / 1 thread, per round [{}]: median {:.3}",
        f.n,
        f.n,
        list(&rates[0], 3),
        median(&cpu[0]),
        verdict(one >= 10.0),
        median(&rates[1]),
        list(&rates[1], 3),
        median(&cpu[1]),
        median(&rates[2]),
        list(&rates[2], 3),
        median(&cpu[2]),
        list(&ratios, 3),
        verdict(ratio >= 1.5),
        list(&control, 3),
        median(&control),
    );
}

/// The filtered-fetch consumers' `max_ack_pending`: room for everything one pass delivers.
const FETCH_PENDING: u64 = 1 << 17;

/// Times `fetch` on a new consumer of `filter` until nothing is left; returns the time and
/// the messages delivered.
fn fetch_pass(s: &Stream, name: &str, filter: &str, ack: AckPolicy) -> (Duration, u64) {
    let c = s
        .create_consumer(
            ConsumerConfig::new(name)
                .filters([filter])
                .ack(ack)
                .max_ack_pending(FETCH_PENDING)
                .ack_wait(ACK_WAIT),
        )
        .unwrap();
    let mut got = 0;
    let start = Instant::now();
    loop {
        let d = c.fetch(FETCH_BATCH, 0).unwrap();
        if d.is_empty() {
            break;
        }
        got += d.len() as u64;
        black_box(&d);
    }
    let t = start.elapsed();
    s.delete_consumer(name).unwrap();
    (t, got)
}

fn bench_fetch_filtered(c: &mut Criterion) {
    const FETCH_SUBJECTS: usize = 100;
    let n = large_stream();
    let subjects: Vec<String> = (0..FETCH_SUBJECTS)
        .map(|i| format!("bench.f.{i:03}"))
        .collect();
    let filter = subjects[42].clone();
    // Message i is on subject i % 100, so subject 42 has every 100th from the 43rd.
    let matching = n / FETCH_SUBJECTS as u64;
    let mut fresh = Fresh::new();
    let mut stream: Option<Stream> = None;
    let mut runs: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut g = c.benchmark_group("consumer/fetch_filtered_1pct");
    g.throughput(Throughput::Elements(matching))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, ack) in [
        ("ack_none", AckPolicy::None),
        ("ack_explicit", AckPolicy::Explicit),
    ] {
        let mut times = Vec::new();
        g.bench_function(name, |b| {
            let s = stream.get_or_insert_with(|| {
                build(&mut fresh, "consumer/fetch_filtered_1pct", &subjects, n)
            });
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (t, got) = fetch_pass(s, "f", &filter, ack);
                    assert_eq!(got, matching);
                    times.push(t.as_secs_f64());
                    total += t;
                }
                total
            })
        });
        if !times.is_empty() {
            runs.push((name, times));
        }
    }
    g.finish();
    if let Some(s) = stream {
        fresh.done(s);
    }
    if runs.is_empty() {
        return;
    }
    eprintln!(
        "consumer/fetch_filtered_1pct ({} of {} messages match `{filter}`, memory stream, \
         fetch({FETCH_BATCH}, 0) until empty; load average now: {}):",
        matching,
        millions(n),
        load_average()
    );
    for (name, times) in runs {
        let rate = matching as f64 / median(&times);
        eprintln!(
            "  {name}: median {:.1} ms per pass over {} passes = {:.2} M msgs/s \
             (target >= 1M msgs/s: {})",
            median(&times) * 1e3,
            times.len(),
            rate / 1e6,
            verdict(rate >= 1e6)
        );
    }
}

fn bench_create_filtered(c: &mut Criterion) {
    let n = large_stream();
    // 100 groups of 1,000 subjects for 10M messages (100 messages a subject); at least 10 a
    // group, so that `s007` exists.
    let per_group = (n / 100 / 100).max(10) as usize;
    let subjects: Vec<String> = (0..100 * per_group)
        .map(|i| format!("bench.g{:03}.s{:03}", i / per_group, i % per_group))
        .collect();
    let per_subject = n / subjects.len() as u64;
    let cases = [
        ("literal", "bench.g042.s007", 1000, per_subject),
        (
            "wildcard_tail",
            "bench.g042.*",
            1000,
            per_subject * per_group as u64,
        ),
        ("wildcard_mid", "bench.*.s007", 1000, per_subject * 100),
        (
            "literal_max_pending_1M",
            "bench.g042.s007",
            MAX_ACK_PENDING,
            per_subject,
        ),
    ];
    let mut fresh = Fresh::new();
    let mut stream: Option<Stream> = None;
    let mut runs: Vec<(&str, &str, Vec<f64>, Vec<f64>)> = Vec::new();
    let mut g = c.benchmark_group("consumer/create_filtered");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, filter, max_pending, pending) in cases {
        let (mut creates, mut deletes) = (Vec::new(), Vec::new());
        g.bench_function(name, |b| {
            let s = stream
                .get_or_insert_with(|| build(&mut fresh, "consumer/create_filtered", &subjects, n));
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let c = s
                        .create_consumer(
                            ConsumerConfig::new("c")
                                .filters([filter])
                                .max_ack_pending(max_pending),
                        )
                        .unwrap();
                    let st = c.state().unwrap();
                    let t = start.elapsed();
                    assert_eq!(st.num_pending, pending);
                    drop(c);
                    let d = Instant::now();
                    s.delete_consumer("c").unwrap();
                    deletes.push(d.elapsed().as_secs_f64());
                    creates.push(t.as_secs_f64());
                    total += t;
                }
                total
            })
        });
        if !creates.is_empty() {
            runs.push((name, filter, creates, deletes));
        }
    }
    g.finish();
    if let Some(s) = stream {
        fresh.done(s);
    }
    if runs.is_empty() {
        return;
    }
    eprintln!(
        "consumer/create_filtered (memory stream of {} messages over {} subjects, \
         create_consumer + state(); load average now: {}):",
        millions(n),
        subjects.len(),
        load_average()
    );
    for (name, filter, creates, deletes) in runs {
        let (lo, hi) = creates
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let med = median(&creates);
        eprintln!(
            "  {name:<24} {filter:<16} median {:>8.1} us (first {:.1}, min {:.1}, max {:.1}) \
             over {} creates (target <= 5 ms: {}); delete median {:.1} us",
            med * 1e6,
            creates[0] * 1e6,
            lo * 1e6,
            hi * 1e6,
            creates.len(),
            verdict(med <= 5e-3),
            median(&deletes) * 1e6,
        );
    }
}

/// The interest-retention consumers' `max_ack_pending`.
const INTEREST_PENDING: u64 = 1 << 14;

/// What one run of the interest benchmark measured.
struct AppendRun {
    /// The producer's time for all its appends.
    append: Duration,
    /// The producer's CPU time for them, in ns.
    append_cpu_ns: u64,
    /// Acks by all consumers when the producer finished.
    acked_then: u64,
    /// From the producer's end until the consumers acknowledged everything.
    drain: Duration,
    /// Acks of a delivered, unacknowledged message that returned `NotPending` (see
    /// [`consume`]).
    not_pending: u64,
}

/// Fetches and acknowledges `n` messages, sleeping briefly when there is nothing to fetch;
/// returns how many acks returned `NotPending`. Under interest retention an ack can: when the
/// other consumer's ack removes the message between this ack taking it out of the pending
/// table and checking that the stream still has it. Each such message must be gone.
fn consume(s: &Stream, c: &Consumer, n: u64, acked: &AtomicU64) -> u64 {
    let (mut done, mut not_pending) = (0, 0);
    while done < n {
        let d = c.fetch(FETCH_BATCH, 0).unwrap();
        if d.is_empty() {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        for m in &d {
            if c.ack(m.message.seq).unwrap() != AckOutcome::Done {
                assert!(s.load(m.message.seq).is_err(), "an ack did not apply");
                not_pending += 1;
            }
        }
        done += d.len() as u64;
        acked.fetch_add(d.len() as u64, Ordering::Relaxed);
    }
    not_pending
}

/// One producer appends `n` messages to a fresh stream: limits retention without consumers,
/// or interest retention with two consumers fetching and acknowledging on their own threads.
fn interest_run(
    fresh: &mut Fresh,
    storage: Storage,
    interest: bool,
    n: u64,
    subjects: &[String],
    payload: &[u8],
) -> AppendRun {
    let retention = if interest {
        Retention::Interest
    } else {
        Retention::Limits
    };
    let s = fresh.stream(|name| {
        StreamConfig::new(name)
            .storage(storage)
            .durability(Durability::None)
            .retention(retention)
    });
    let consumers: Vec<Consumer> = if interest { &["a", "b"][..] } else { &[] }
        .iter()
        .map(|name| {
            s.create_consumer(
                ConsumerConfig::new(*name)
                    .ack(AckPolicy::Explicit)
                    .max_ack_pending(INTEREST_PENDING)
                    .ack_wait(ACK_WAIT),
            )
            .unwrap()
        })
        .collect();
    let acked = AtomicU64::new(0);
    let run = std::thread::scope(|scope| {
        let (s, acked) = (&s, &acked);
        let workers: Vec<_> = consumers
            .iter()
            .map(|c| scope.spawn(move || consume(s, c, n, acked)))
            .collect();
        let (start, cpu) = (Instant::now(), thread_cpu_ns());
        for i in 0..n as usize {
            s.append(&subjects[i % subjects.len()], b"", payload)
                .unwrap();
        }
        let append = start.elapsed();
        let append_cpu_ns = thread_cpu_ns() - cpu;
        let acked_then = acked.load(Ordering::Relaxed);
        let end = Instant::now();
        // Not by the ack count: a consumer that panicked would never bring it up.
        while workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_micros(200));
        }
        let drain = end.elapsed();
        AppendRun {
            append,
            append_cpu_ns,
            acked_then,
            drain,
            not_pending: workers.into_iter().map(|w| w.join().unwrap()).sum(),
        }
    });
    assert_eq!(acked.load(Ordering::Relaxed), n * consumers.len() as u64);
    let left = s.state().messages;
    assert_eq!(left, if interest { 0 } else { n });
    drop(consumers);
    fresh.done(s);
    run
}

const INTEREST_STORAGE: Storage = Storage::File;

fn bench_interest_append(c: &mut Criterion) {
    let (subjects, payload) = (subjects(), payload());
    let mut fresh = Fresh::new();
    let mut g = c.benchmark_group("consumer/interest_append");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut ran = false;
    let (mut acks, mut not_pending) = (0, 0);
    for (name, interest) in [
        ("limits_no_consumers", false),
        ("interest_2_consumers", true),
    ] {
        g.bench_function(name, |b| {
            ran = true;
            b.iter_custom(|iters| {
                let run = interest_run(
                    &mut fresh,
                    INTEREST_STORAGE,
                    interest,
                    iters,
                    &subjects,
                    &payload,
                );
                if interest {
                    acks += 2 * iters;
                    not_pending += run.not_pending;
                }
                run.append
            })
        });
    }
    g.finish();
    if acks > 0 {
        eprintln!(
            "consumer/interest_append/interest_2_consumers: {not_pending} of {acks} acks of \
             delivered, unacknowledged messages returned NotPending (the other consumer's ack \
             removed the message meanwhile)"
        );
    }
    if ran {
        for storage in [INTEREST_STORAGE, Storage::Memory] {
            interest_interleaved(&mut fresh, storage, &subjects, &payload);
        }
    }
}

/// Both retentions in alternating order on fresh streams; prints the median ratio of the
/// producer's rates.
fn interest_interleaved(fresh: &mut Fresh, storage: Storage, subjects: &[String], payload: &[u8]) {
    let n = scaled(1_000_000);
    let rounds = if quick() { 1 } else { 9 };
    let load = load_average();
    let (mut rates, mut cpu) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    let (mut behind, mut drains, mut consumed) = (Vec::new(), Vec::new(), Vec::new());
    let mut not_pending = 0;
    for r in 0..rounds {
        let (mut t, mut c) = ([0.0; 2], [0.0; 2]);
        for k in if r % 2 == 0 { [0, 1] } else { [1, 0] } {
            let run = interest_run(fresh, storage, k == 1, n, subjects, payload);
            t[k] = run.append.as_secs_f64();
            c[k] = run.append_cpu_ns as f64;
            rates[k].push(n as f64 / t[k]);
            cpu[k].push(c[k] / n as f64);
            if k == 1 {
                // Messages each consumer still had to acknowledge, on average.
                behind.push(n as f64 - run.acked_then as f64 / 2.0);
                drains.push(run.drain.as_secs_f64() * 1e3);
                // Each consumer's rate from the first append to its last ack.
                consumed.push(n as f64 / (run.append + run.drain).as_secs_f64() / 1e6);
                not_pending += run.not_pending;
            }
        }
        ratios.push(t[0] / t[1]);
        cpu_ratios.push(c[0] / c[1]);
    }
    let ratio = median(&ratios);
    eprintln!(
        "consumer/interest_append interleaved ({rounds} rounds of {} messages each, {} stream, \
         Durability::None; load average before: {load}):\n  \
         median limits (no consumers) {:.2} M msgs/s, interest (2 consumers) {:.2} M msgs/s\n  \
         ratio interest/limits, per round [{}]: median {ratio:.3} (target >= 0.5: {})\n  \
         the producer's CPU time per append: median limits {:.0} ns, interest {:.0} ns; \
         ratio of rates by CPU time, per round [{}]: median {:.3}\n  \
         when the producer finished, each consumer had a median {:.0} messages left to ack \
         ({:.1}% of the round); they finished a median {:.1} ms later: each fetched and \
         acknowledged a median {:.2} M msgs/s from the first append to its last ack\n  \
         acks of delivered, unacknowledged messages that returned NotPending (the other \
         consumer's ack removed the message meanwhile): {not_pending} of {}",
        millions(n),
        format!("{storage:?}").to_lowercase(),
        median(&rates[0]) / 1e6,
        median(&rates[1]) / 1e6,
        list(&ratios, 3),
        verdict(ratio >= 0.5),
        median(&cpu[0]),
        median(&cpu[1]),
        list(&cpu_ratios, 3),
        median(&cpu_ratios),
        median(&behind),
        median(&behind) / n as f64 * 100.0,
        median(&drains),
        median(&consumed),
        2 * n * rounds,
    );
}

criterion_group!(
    benches,
    bench_ack,
    bench_fetch_filtered,
    bench_create_filtered,
    bench_interest_append
);
criterion_main!(benches);
