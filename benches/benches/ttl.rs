//! Benchmarks of per-message TTLs. Every message has a 128-byte payload, subjects go round-robin
//! over 1,000 names and streams use `Durability::None`, as in `append/none_128B_1000_subjects`
//! (log.rs). Stores live in a temporary directory (or one under `TIDELOG_BENCH_DIR`).
//!
//! - `ttl/append/{no_ttl,ttl_3600s}`: one producer appending to a file stream (a fresh stream
//!   per sample, `StoreOptions::default()`), with no TTL and with `Ttl::Secs(3600)` on every
//!   message; messages per second. Both streams allow TTLs. After criterion's samples the two
//!   also run interleaved (9 rounds of 1M messages each, alternating which goes first), and the
//!   median of the per-round rate ratios `ttl_3600s / no_ttl` is printed, by wall time (the
//!   target: at least 0.90) and by the appending thread's CPU time.
//! - `ttl/expire_1M_same_second`: wall time of `expire_now` (called until the stream is empty)
//!   removing 1,000,000 messages that all fall due in the same second, on a memory stream with
//!   a `ManualClock` and no background maintainer. The messages are appended with a TTL of 1 s
//!   at a fixed time (untimed), then the clock is set to their due second and the clock of the
//!   benchmark starts. Throughput is messages expired per second. Target: all expired within
//!   1 s.
//! - `ttl/append_p99_during_expiry` (printed; not a criterion measurement): with the system
//!   clock and the background maintainer, 1M messages are appended to a file stream with TTLs
//!   that make them all fall due in the same second D. One thread then appends single messages
//!   without a TTL as fast as it can, timing each append, from 3 s before D until all 1M are
//!   gone. Printed per run: p50/p99/p99.9 of its appends in the expiry window (second D, or
//!   longer if the 1M are not gone by its end), the same for a window of equal length just
//!   before D (no expiry) and the ratio of the p99s (target at most 2); the time from the start
//!   of D until all 1M are gone; the same for the stricter window from D until all are gone.
//!   Each window also shows the time the appender spent in appends of 100 us or more (a
//!   closed-loop appender that waits 1 ms records one slow append, not a millisecond's worth)
//!   and its page faults. Three runs (about 20 s); the median ratio is the figure.
//! - `ttl/memory` (printed): heap bytes per pending TTL, `index_memory().timers /
//!   timed_messages`, for 1M messages (a) all with a TTL of 3,600 s appended at full speed on
//!   the system clock, (b) TTLs uniformly random in 3,600..=86,400 s, (c) TTLs 1..=1,000,000 s
//!   at one fixed time (a `ManualClock`), so each message falls due in a second of its own: the
//!   worst case. Nothing expires while they are counted. Target: at most 16 bytes.
//!
//! `--test` runs everything at 1/100 of the sizes. The printed reports are skipped by `--list`
//! and by a filter that is not a substring of their names (criterion's regular expressions
//! are not understood there); `TIDELOG_BENCH_P99=0` and `TIDELOG_BENCH_MEMORY=0` skip them too.

mod common;

use common::{bench_dir, median, millions, quick, scaled, selected, Fresh, Rng};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use hdrhistogram::Histogram;
use tidelog::{
    Clock, Durability, ManualClock, NewMessage, Storage, Store, StoreOptions, Stream, StreamConfig,
    SystemClock, Ttl,
};

const PAYLOAD: usize = 128;
const SUBJECTS: usize = 1000;
const NS: i64 = 1_000_000_000;
/// A fixed wall-clock time for the manual clocks: mid-second, mid-2025.
const T0: i64 = 1_750_000_000 * NS + NS / 4;

fn env_off(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("0")
}

fn subjects() -> Vec<String> {
    (0..SUBJECTS).map(|i| format!("bench.sub.{i:04}")).collect()
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i as u8).wrapping_mul(37)).collect()
}

fn config(name: String, storage: Storage) -> StreamConfig {
    StreamConfig::new(name)
        .allow_msg_ttl(true)
        .durability(Durability::None)
        .storage(storage)
}

/// First whole second at or after `ns`: a message stored at `ns` with a TTL of `t` seconds
/// falls due in second `ceil_s(ns) + t`.
fn ceil_s(ns: i64) -> i64 {
    (ns + NS - 1).div_euclid(NS)
}

/// Appends `n` messages, cycling through `msgs`; returns how long it took.
fn fill(s: &Stream, msgs: &[NewMessage<'_>], n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n as usize {
        s.append_msg(&msgs[i % msgs.len()]).unwrap();
    }
    start.elapsed()
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

fn bench_append(c: &mut Criterion) {
    let subjects = subjects();
    let payload = payload();
    let plain: Vec<NewMessage<'_>> = subjects
        .iter()
        .map(|s| NewMessage::new(s, &payload))
        .collect();
    let timed: Vec<NewMessage<'_>> = plain.iter().map(|m| m.with_ttl(Ttl::Secs(3600))).collect();
    let mut fresh = Fresh::new();
    let mut g = c.benchmark_group("ttl/append");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut ran = false;
    for (name, msgs) in [("no_ttl", &plain), ("ttl_3600s", &timed)] {
        g.bench_function(name, |b| {
            ran = true;
            b.iter_custom(|iters| {
                let s = fresh.stream(|n| config(n, Storage::File));
                let t = fill(&s, msgs, iters);
                fresh.done(s);
                t
            })
        });
    }
    g.finish();
    if ran {
        interleaved(&mut fresh, &plain, &timed);
    }
}

/// Both append variants in alternating order on fresh streams; prints the median ratios of
/// their rates by wall time and by the appending thread's CPU time (which other processes on a
/// shared machine disturb less).
fn interleaved(fresh: &mut Fresh, plain: &[NewMessage<'_>], timed: &[NewMessage<'_>]) {
    let n = scaled(1_000_000);
    let rounds = if quick() { 1 } else { 9 };
    let mut rates = [Vec::new(), Vec::new()];
    let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let (mut wall, mut cpu) = ([0.0; 2], [0.0; 2]);
        for k in if r % 2 == 0 { [0, 1] } else { [1, 0] } {
            let s = fresh.stream(|n| config(n, Storage::File));
            let c0 = thread_cpu_ns();
            let t = fill(&s, [plain, timed][k], n);
            cpu[k] = (thread_cpu_ns() - c0) as f64 / 1e9;
            fresh.done(s);
            wall[k] = t.as_secs_f64();
            rates[k].push(n as f64 / wall[k]);
        }
        ratios.push(wall[0] / wall[1]);
        cpu_ratios.push(cpu[0] / cpu[1]);
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ratio = median(&ratios);
    eprintln!(
        "ttl/append interleaved ({rounds} rounds of {} messages each, file stream): median \
         no_ttl {:.2} M msgs/s, ttl_3600s {:.2} M msgs/s\n  \
         ratio ttl_3600s/no_ttl by wall time, per round [{}]: median {ratio:.3} \
         (target >= 0.90: {})\n  \
         same by the appending thread's CPU time, per round [{}]: median {:.3}",
        millions(n),
        median(&rates[0]) / 1e6,
        median(&rates[1]) / 1e6,
        list(&ratios),
        verdict(ratio >= 0.90),
        list(&cpu_ratios),
        median(&cpu_ratios),
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn bench_expire(c: &mut Criterion) {
    let n = scaled(1_000_000);
    let (subjects, payload) = (subjects(), payload());
    let batch: Vec<NewMessage<'_>> = subjects
        .iter()
        .map(|s| NewMessage::new(s, &payload).with_ttl(Ttl::Secs(1)))
        .collect();
    let clock = Arc::new(ManualClock::new(T0));
    let dir = bench_dir();
    let opts = StoreOptions {
        clock: Some(clock.clone()),
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open(dir.path().join("db"), opts).unwrap();
    let mut runs: Vec<f64> = Vec::new();
    let mut k = 0;
    let mut g = c.benchmark_group("ttl");
    g.throughput(Throughput::Elements(n))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(6));
    g.bench_function(format!("expire_{}_same_second", millions(n)), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                let s = store
                    .create_stream(config(format!("e{k}"), Storage::Memory))
                    .unwrap();
                // All at one timestamp (the clock stands still), so all due in one second.
                let at = clock.now_ns();
                let mut left = n as usize;
                while left > 0 {
                    let m = left.min(batch.len());
                    s.append_batch(&batch[..m]).unwrap();
                    left -= m;
                }
                // The wheel's clock catches up with `at` (as the maintainer's ticks keep it),
                // so the timed pass only moves it on by the second or two to the due one.
                assert_eq!(s.expire_now().unwrap(), 0);
                let due = ceil_s(at) + 1;
                clock.set_ns(due * NS);
                let start = Instant::now();
                let mut gone = 0;
                for _ in 0..1000 {
                    gone += s.expire_now().unwrap();
                    if s.state().messages == 0 {
                        break;
                    }
                }
                let t = start.elapsed();
                assert_eq!((gone, s.state().messages), (n, 0));
                total += t;
                runs.push(t.as_secs_f64());
                store.delete_stream(s.name()).unwrap();
                clock.set_ns(due * NS + NS / 4);
            }
            total
        })
    });
    g.finish();
    if !runs.is_empty() {
        let (lo, hi) = runs
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let med = median(&runs);
        eprintln!(
            "ttl/expire_{}_same_second (memory stream, manual clock, expire_now until empty): \
             median {:.1} ms over {} runs (min {:.1}, max {:.1}) = {:.2} M msgs/s; \
             all expired within 1 s of due: {}",
            millions(n),
            med * 1e3,
            runs.len(),
            lo * 1e3,
            hi * 1e3,
            n as f64 / med / 1e6,
            verdict(hi < 1.0),
        );
    }
}

/// Minor page faults of the calling thread so far.
fn thread_faults() -> u64 {
    // SAFETY: `getrusage` only writes the zeroed struct it is given.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru.ru_minflt as u64
    }
}

/// What the appender saw: each append's latency (ns, from the end of the previous one) and,
/// for each millisecond `k` after the start, the index of the first append that ended at or
/// after it and the thread's page faults by then.
struct Trace {
    lat: Vec<u32>,
    marks: Vec<(usize, u64)>,
}

/// Appends single messages without a TTL until told to stop (or `lat` is full).
fn appender(
    s: &Stream,
    stop: &AtomicBool,
    i0: Instant,
    lat: &mut [u32],
    subjects: &[String],
    payload: &[u8],
) -> (usize, Vec<(usize, u64)>) {
    let ms = Duration::from_millis(1);
    let mut marks = Vec::with_capacity(1 << 16);
    let mut next = i0;
    let mut prev = Instant::now();
    let mut n = 0;
    while n < lat.len() && !stop.load(Ordering::Relaxed) {
        s.append(&subjects[n % SUBJECTS], b"", payload).unwrap();
        let t = Instant::now();
        if t >= next {
            let k = (t - i0).as_millis() as usize;
            marks.resize(k + 1, (n, thread_faults()));
            next = i0 + ms * (k as u32 + 1);
        }
        lat[n] = (t - prev).as_nanos().min(u32::MAX as u128) as u32;
        prev = t;
        n += 1;
    }
    (n, marks)
}

fn sleep_until(clock: &SystemClock, ns: i64) {
    let now = clock.now_ns();
    if ns > now {
        std::thread::sleep(Duration::from_nanos((ns - now) as u64));
    }
}

/// The appends of one window of the trace.
struct Window {
    hist: Histogram<u64>,
    ms: u64,
    /// Time spent in appends of 100 us or more.
    stalled_ns: u64,
    faults: u64,
}

impl Window {
    fn new(t: &Trace, from_ms: u64, to_ms: u64) -> Window {
        let at = |k: u64| {
            t.marks
                .get(k as usize)
                .copied()
                .unwrap_or((t.lat.len(), t.marks.last().map_or(0, |m| m.1)))
        };
        let ((a, fa), (b, fb)) = (at(from_ms), at(to_ms));
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        let mut stalled_ns = 0;
        for &l in &t.lat[a..b] {
            hist.saturating_record(u64::from(l.max(1)));
            if l >= 100_000 {
                stalled_ns += u64::from(l);
            }
        }
        Window {
            hist,
            ms: to_ms - from_ms,
            stalled_ns,
            faults: fb - fa,
        }
    }

    fn p(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    fn line(&self) -> String {
        format!(
            "{:>5} ms, {:>8} appends ({:.2} M/s), p50 {} ns, p99 {} ns, p99.9 {} ns, max {:.2} ms; \
             {:.0} ms in appends >= 100 us; {} page faults",
            self.ms,
            self.hist.len(),
            self.hist.len() as f64 / self.ms as f64 / 1e3,
            self.p(0.5),
            self.p(0.99),
            self.p(0.999),
            self.hist.max() as f64 / 1e6,
            self.stalled_ns as f64 / 1e6,
            self.faults,
        )
    }
}

/// One run of the expiry-latency experiment; returns the p99 ratio and the ms from due to
/// all gone, or `None` if it could not be measured.
fn p99_run(run: usize, n: u64) -> Option<(f64, f64)> {
    let (lead, before) = p99_lead();
    let (subjects, payload) = (subjects(), payload());
    let clock = SystemClock;
    let dir = bench_dir();
    let store = Store::open(dir.path().join("db"), StoreOptions::default()).unwrap();
    let s = store
        .create_stream(config("p".into(), P99_STORAGE))
        .unwrap();

    // Each message's TTL counts from its own second so that all fall due in `due`. The engine
    // reads the clock after this loop does: a message it stored in a later second than the
    // loop read is removed and appended again.
    let due = ceil_s(clock.now_ns()) + lead;
    let started = Instant::now();
    let (mut i, mut again) = (0, 0);
    while i < n {
        let c = ceil_s(clock.now_ns());
        assert!(c < due, "prefill too slow: it reached the due second");
        let m = NewMessage::new(&subjects[i as usize % SUBJECTS], &payload)
            .with_ttl(Ttl::Secs((due - c) as u64));
        let a = s.append_msg(&m).unwrap();
        if ceil_s(a.ts) != c {
            s.remove(a.seq).unwrap();
            again += 1;
            continue;
        }
        i += 1;
    }
    let prefilled = s.state().last_seq;
    let prefill = started.elapsed();

    // Room for a few seconds of latencies, touched before the clock starts.
    let cap = if quick() { 16 << 20 } else { 48 << 20 };
    let mut lat = vec![1u32; cap];
    sleep_until(&clock, (due - before) * NS);
    let stop = AtomicBool::new(false);
    let (i0, r0) = (Instant::now(), clock.now_ns());
    let ((count, marks), gone_at, timed_out) = std::thread::scope(|scope| {
        let (s, stop, lat) = (&s, &stop, &mut lat);
        let (subjects, payload) = (&subjects, &payload);
        let w = scope.spawn(move || appender(s, stop, i0, lat, subjects, payload));
        sleep_until(&clock, due * NS);
        let deadline = (due + 20) * NS;
        let (gone_at, timed_out) = loop {
            let now = clock.now_ns();
            if s.state().first_seq > prefilled {
                break (now, false);
            }
            if now > deadline {
                break (now, true);
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        sleep_until(&clock, gone_at.max((due + 1) * NS) + 5_000_000);
        stop.store(true, Ordering::Relaxed);
        (w.join().unwrap(), gone_at, timed_out)
    });
    store.close().unwrap();
    if timed_out || count == cap {
        eprintln!(
            "  run {run}: no figures: {}",
            if timed_out {
                "the messages were not all gone 20 s after due"
            } else {
                "the latency buffer filled up"
            }
        );
        return None;
    }
    lat.truncate(count);
    let t = Trace { lat, marks };
    let ms_of = |ns: i64| ((ns - r0).max(0) / 1_000_000) as u64;
    let (d, gone) = (ms_of(due * NS), ms_of(gone_at));
    let end = gone.max(d + 1000);
    // The baseline: the same length just before D, after 100 ms of warm-up at most.
    let base = |len: u64| Window::new(&t, d.saturating_sub(len).max(100), d);
    let (exp, exp_base) = (Window::new(&t, d, end), base(end - d));
    let (strict, strict_base) = (Window::new(&t, d, gone.max(d + 1)), base(gone - d));
    let ratio = exp.p(0.99) as f64 / exp_base.p(0.99) as f64;
    let after_due = (gone_at - due * NS) as f64 / 1e6;
    eprintln!(
        "  run {run}: {} prefilled in {:.2} s ({again} re-appended across a second boundary); \
         all gone {after_due:.1} ms after the start of D\n    \
         expiry (D + until all gone): {}\n    \
         baseline (just before D):    {}\n    \
         p99 ratio {ratio:.2}\n    \
         strict (D until all gone):   {}\n    \
         baseline (just before D):    {}\n    \
         strict p99 ratio {:.2}",
        millions(n),
        prefill.as_secs_f64(),
        exp.line(),
        exp_base.line(),
        strict.line(),
        strict_base.line(),
        strict.p(0.99) as f64 / strict_base.p(0.99) as f64,
    );
    Some((ratio, after_due))
}

/// Seconds from the start of a run to the due second D, and of appending before D.
fn p99_lead() -> (i64, i64) {
    if quick() {
        (2, 1)
    } else {
        (5, 3)
    }
}

/// Where the latency experiment keeps its stream. A file stream: its block buffers are freed
/// when blocks are sealed and reused by the next ones, so the baseline is not dominated by
/// first touches of fresh memory, as it is on a memory stream that only grows.
const P99_STORAGE: Storage = Storage::File;

/// The appender's latency around a mass expiry, with the system clock and the maintainer.
fn report_p99(_: &mut Criterion) {
    const NAME: &str = "ttl/append_p99_during_expiry";
    if !selected(NAME) || env_off("TIDELOG_BENCH_P99") {
        return;
    }
    let n = scaled(1_000_000);
    let runs = if quick() { 1 } else { 3 };
    eprintln!(
        "{NAME}: {} stream, Durability::None, system clock, background maintainer; \
         {} messages fall due in one second D; one thread appends single messages without \
         a TTL from {} s before D until all {} are gone; runs: {runs}",
        format!("{P99_STORAGE:?}").to_lowercase(),
        millions(n),
        p99_lead().1,
        millions(n),
    );
    let results: Vec<(f64, f64)> = (1..=runs).filter_map(|r| p99_run(r, n)).collect();
    if results.is_empty() {
        return;
    }
    let ratios: Vec<f64> = results.iter().map(|r| r.0).collect();
    let gone: Vec<f64> = results.iter().map(|r| r.1).collect();
    let ratio = median(&ratios);
    eprintln!(
        "{NAME}: median p99 ratio expiry/baseline {ratio:.2} (target <= 2: {}); median time \
         from the start of D until all {} were gone {:.1} ms",
        verdict(ratio <= 2.0),
        millions(n),
        median(&gone),
    );
}

/// Heap bytes per pending TTL in three shapes of due times.
fn report_memory(_: &mut Criterion) {
    if !selected("ttl/memory") || env_off("TIDELOG_BENCH_MEMORY") {
        return;
    }
    let n = scaled(1_000_000);
    let (subjects, payload) = (subjects(), payload());
    let dir = bench_dir();
    // No maintainer: nothing expires while the timers are counted. Each stream's wheel is
    // caught up with the clock after its first message, as the maintainer's ticks keep it.
    let open = |name: &str, clock: Option<Arc<dyn Clock>>| {
        let opts = StoreOptions {
            clock,
            manual_maintenance: true,
            ..Default::default()
        };
        Store::open(dir.path().join(name), opts).unwrap()
    };
    let system = open("system", None);
    let manual = open("manual", Some(Arc::new(ManualClock::new(T0))));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    type Pick<'a> = Box<dyn FnMut(u64) -> u64 + 'a>;
    let cases: [(&str, &Store, Pick<'_>); 3] = [
        (
            "(a) one TTL (3600 s), full speed",
            &system,
            Box::new(|_| 3600),
        ),
        (
            "(b) TTL uniform in 3600..=86400 s",
            &system,
            Box::new(|_| 3600 + rng.next() % (86_400 - 3600 + 1)),
        ),
        (
            "(c) TTL 1..=1M s, one per second",
            &manual,
            Box::new(|i| i + 1),
        ),
    ];
    eprintln!(
        "ttl/memory: heap bytes per pending TTL (index_memory().timers / timed_messages), \
         {} messages each, memory streams, target <= 16 B",
        millions(n)
    );
    eprintln!(
        "  {:<36} {:>9} {:>13} {:>8}",
        "case", "pending", "timers B", "B/TTL"
    );
    for (k, (name, store, mut ttl)) in cases.into_iter().enumerate() {
        let s = store
            .create_stream(config(format!("m{k}"), Storage::Memory))
            .unwrap();
        for i in 0..n {
            let m = NewMessage::new(&subjects[i as usize % SUBJECTS], &payload)
                .with_ttl(Ttl::Secs(ttl(i)));
            s.append_msg(&m).unwrap();
            if i == 0 {
                assert_eq!(s.expire_now().unwrap(), 0);
            }
        }
        let m = s.index_memory();
        assert_eq!(m.timed_messages, n);
        let per = m.timers as f64 / m.timed_messages as f64;
        eprintln!(
            "  {name:<36} {:>9} {:>13} {per:>8.2}  {}",
            m.timed_messages,
            m.timers,
            verdict(per <= 16.0)
        );
        store.delete_stream(s.name()).unwrap();
    }
    system.close().unwrap();
    manual.close().unwrap();
}

criterion_group!(
    benches,
    bench_append,
    bench_expire,
    report_p99,
    report_memory
);
criterion_main!(benches);
