//! Benchmark of the compaction of sparse blocks, on real files in a temporary directory (or
//! one under `TIDELOG_BENCH_DIR`), with payloads of 1 KiB over 100 subjects unless said
//! otherwise. Sizes come from environment variables; the defaults keep a run to a few minutes.
//!
//! - Space: a stream of `TIDELOG_COMPACT_MB` MB (default 128) of message bytes in blocks of
//!   `TIDELOG_COMPACT_BLOCK` bytes (default 8 MiB), `Durability::None`, in a store without a
//!   maintenance thread; 9 of every 10 messages removed (every 10th kept), then `reclaim()`.
//!   Printed: `disk_bytes() / state().bytes` (target: at most 1.25); the same ratio for the
//!   stream's files as the file system counts them, and where those bytes are (compacted
//!   blocks, the active block, checkpoints); and all of it again for 128-byte payloads (the
//!   12 bytes of sparse trailer per record weigh more there).
//! - Write amplification of the same runs: (bytes appended + `compacted_bytes()`) / bytes
//!   appended (target: at most 2), and the bytes compaction wrote per byte it gave back.
//! - Appends during compaction: in a store with its maintenance thread, appends of 1 KiB to a
//!   fresh stream B for `TIDELOG_COMPACT_WINDOW_MS` ms (default 2000), (a) while stream A in
//!   the same store (`TIDELOG_COMPACT_LOAD_MB` MB, default 256) has nothing to compact and
//!   (b) from right after 90% of A was removed, so the maintenance thread compacts it (what it
//!   wrote during the window, and when, is printed to show that it ran). Three producers: one
//!   thread with `Durability::Always`, four threads with `Durability::Always` (group commit),
//!   one thread with `Durability::None`. `TIDELOG_COMPACT_ROUNDS` rounds (default 4; 0 skips
//!   this part) alternate which of (a) and (b) goes first, as the machine may be noisy.
//!   Printed: median rates and the median of the per-round ratios b / a (target: at least
//!   0.8), and the same ratio over only the span between A's first and last rewrite (the
//!   default A is compacted within about a second, so the rest of the window has none).
//! - criterion, `compaction/append_1k_durable/{idle,compacting}`: single durable appends to B
//!   while A has nothing to compact, and while the maintenance thread compacts A (A is filled
//!   and 90% removed again, untimed, whenever its compaction is done or stalls).
//!
//! Smoke-test mode (`--test`) runs everything at a tenth of its size, one round, 200 ms
//! windows.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{bench_dir, list, load_average, median, quick, verdict};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidelog::{Durability, NewMessage, Store, StoreOptions, Stream, StreamConfig};

const SUBJECTS: usize = 100;
const KIB: usize = 1024;
const MB: u64 = 1_000_000;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// `n`, or a tenth of it in smoke-test mode.
fn tenth(n: u64) -> u64 {
    if quick() {
        n / 10
    } else {
        n
    }
}

fn fill_bytes() -> u64 {
    tenth(env_u64("TIDELOG_COMPACT_MB", 128) * MB)
}

fn block_size() -> u64 {
    env_u64("TIDELOG_COMPACT_BLOCK", 8 << 20)
}

fn load_bytes() -> u64 {
    tenth(env_u64("TIDELOG_COMPACT_LOAD_MB", 256) * MB)
}

fn window() -> Duration {
    Duration::from_millis(if quick() {
        200
    } else {
        env_u64("TIDELOG_COMPACT_WINDOW_MS", 2000)
    })
}

fn rounds() -> usize {
    if quick() {
        1
    } else {
        env_u64("TIDELOG_COMPACT_ROUNDS", 4) as usize
    }
}

fn rates(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mb(b: u64) -> f64 {
    b as f64 / MB as f64
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(37)).collect()
}

/// Appends messages of `payload` over `SUBJECTS` subjects, in batches of about 256 KiB, until
/// the stream holds at least `bytes` of live message bytes.
fn fill(s: &Stream, payload: &[u8], bytes: u64) {
    let subjects: Vec<String> = (0..SUBJECTS).map(|i| format!("fill.s{i:03}")).collect();
    let per = ((256 << 10) / payload.len()).clamp(1, 1000);
    let mut i = 0;
    while s.state().bytes < bytes {
        let batch: Vec<NewMessage<'_>> = (0..per)
            .map(|k| NewMessage::new(&subjects[(i + k) % SUBJECTS], payload))
            .collect();
        s.append_batch(&batch).unwrap();
        i += per;
    }
}

/// Removes 9 of every 10 messages (keeps every 10th); returns how many it removed.
fn remove_90(s: &Stream) -> u64 {
    let st = s.state();
    let mut n = 0;
    for seq in st.first_seq..=st.last_seq {
        if !(seq - st.first_seq).is_multiple_of(10) {
            s.remove(seq).unwrap();
            n += 1;
        }
    }
    n
}

/// A stream's files as the file system counts them (allocated blocks).
#[derive(Default)]
struct Files {
    /// Block files, and how many.
    blocks: u64,
    count: usize,
    /// The newest block file (the active block, which compaction never rewrites).
    newest: u64,
    /// `checkpoint` and `checkpoint.prev`.
    checkpoints: u64,
    /// Everything else: config, lease, consumer files and the directory itself.
    other: u64,
}

impl Files {
    fn of(store: &Store, name: &str) -> Option<Files> {
        use std::os::unix::fs::MetadataExt;
        let dir = store.dir().join("streams").join(name);
        let mut f = Files {
            other: std::fs::metadata(&dir).ok()?.blocks() * 512,
            ..Files::default()
        };
        let mut newest = String::new();
        for e in std::fs::read_dir(&dir).ok()? {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let on_disk = e.metadata().ok()?.blocks() * 512;
            if name.ends_with(".blk") {
                f.blocks += on_disk;
                f.count += 1;
                if name > newest {
                    newest = name;
                    f.newest = on_disk;
                }
            } else if name.starts_with("checkpoint") {
                f.checkpoints += on_disk;
            } else {
                f.other += on_disk;
            }
        }
        Some(f)
    }

    fn total(&self) -> u64 {
        self.blocks + self.checkpoints + self.other
    }
}

// ---------------------------------------------------------------------------------------
// Targets 1 and 2: space after compaction and write amplification.

struct Space {
    payload: usize,
    messages: u64,
    appended: u64,
    disk_full: u64,
    disk_removed: u64,
    removed: u64,
    remove_t: Duration,
    reclaim_t: Duration,
    rewritten: usize,
    live: u64,
    disk: u64,
    compacted: u64,
    files: Option<Files>,
}

fn space(payload_len: usize) -> Space {
    let dir = bench_dir();
    let store = Store::open(
        dir.path().join("space"),
        StoreOptions {
            manual_maintenance: true,
            ..Default::default()
        },
    )
    .unwrap();
    let name = format!("space{payload_len}");
    let s = store
        .create_stream(
            StreamConfig::new(&name)
                .block_size(block_size())
                .durability(Durability::None),
        )
        .unwrap();
    fill(&s, &payload(payload_len), fill_bytes());
    s.checkpoint().unwrap();
    let st = s.state();
    let disk_full = s.disk_bytes();
    let t = Instant::now();
    let removed = remove_90(&s);
    let remove_t = t.elapsed();
    s.sync().unwrap();
    let disk_removed = s.disk_bytes();
    let t = Instant::now();
    let rewritten = s.reclaim().unwrap();
    let reclaim_t = t.elapsed();
    let r = Space {
        payload: payload_len,
        messages: st.messages,
        appended: st.bytes,
        disk_full,
        disk_removed,
        removed,
        remove_t,
        reclaim_t,
        rewritten,
        live: s.state().bytes,
        disk: s.disk_bytes(),
        compacted: s.compacted_bytes(),
        files: Files::of(&store, &name),
    };
    drop(s);
    store.close().unwrap();
    r
}

fn report_space(r: &Space) {
    let ratio = r.disk as f64 / r.live as f64;
    let wa = (r.appended + r.compacted) as f64 / r.appended as f64;
    let freed = r.disk_removed.saturating_sub(r.disk);
    let of_live = |b: u64| b as f64 / r.live as f64;
    println!(
        "  {} B payloads: {} messages, {:.1} MB of message bytes appended, {:.1} MB on disk \
         ({:.3}x); removed {} in {:.2} s ({:.1} MB on disk with the removal records); \
         reclaim() rewrote {} blocks in {:.2} s",
        r.payload,
        r.messages,
        mb(r.appended),
        mb(r.disk_full),
        r.disk_full as f64 / r.appended as f64,
        r.removed,
        r.remove_t.as_secs_f64(),
        mb(r.disk_removed),
        r.rewritten,
        r.reclaim_t.as_secs_f64(),
    );
    println!(
        "    space after compaction: disk_bytes() {:.2} MB / live bytes {:.2} MB = {ratio:.3} \
         (target <= 1.25: {})",
        mb(r.disk),
        mb(r.live),
        verdict(ratio <= 1.25),
    );
    if let Some(f) = &r.files {
        let fs = of_live(f.total());
        println!(
            "    the stream's files as the file system counts them: {:.2} MB = {fs:.3}x live \
             (target <= 1.25: {}): {} block files {:.2} MB ({:.3}x; of which the newest, the \
             active block that is never compacted, {:.2} MB = {:.3}x, and the {} compacted ones \
             {:.3}x), checkpoints {:.2} MB ({:.3}x), other files and the directory {:.0} KB",
            mb(f.total()),
            verdict(fs <= 1.25),
            f.count,
            mb(f.blocks),
            of_live(f.blocks),
            mb(f.newest),
            of_live(f.newest),
            f.count.saturating_sub(1),
            of_live(f.blocks - f.newest),
            mb(f.checkpoints),
            of_live(f.checkpoints),
            f.other as f64 / 1e3,
        );
    }
    println!(
        "    write amplification: (appended {:.1} MB + compacted {:.2} MB) / appended = {wa:.3} \
         (target <= 2: {}); compacted / reclaimed ({:.1} MB by disk_bytes()) = {:.3}",
        mb(r.appended),
        mb(r.compacted),
        verdict(wa <= 2.0),
        mb(freed),
        r.compacted as f64 / freed as f64,
    );
}

// ---------------------------------------------------------------------------------------
// Target 3: appends while the maintenance thread compacts another stream.

#[derive(Clone, Copy, PartialEq)]
enum Producer {
    Always1,
    Always4,
    None1,
}

impl Producer {
    const ALL: [Producer; 3] = [Producer::Always1, Producer::Always4, Producer::None1];

    fn label(self) -> &'static str {
        match self {
            Producer::Always1 => "1 thread, Durability::Always",
            Producer::Always4 => "4 threads, Durability::Always",
            Producer::None1 => "1 thread, Durability::None",
        }
    }

    fn threads(self) -> usize {
        if self == Producer::Always4 {
            4
        } else {
            1
        }
    }

    fn durability(self) -> Durability {
        if self == Producer::None1 {
            Durability::None
        } else {
            Durability::Always
        }
    }
}

/// Appends are counted in slices of the window this long.
const SLICE: Duration = Duration::from_millis(10);

/// What compaction of A did during a window.
#[derive(Default)]
struct Progress {
    /// Bytes it wrote during the window.
    bytes: u64,
    /// When block rewrites were seen (increments of `compacted_bytes`, polled every 2 ms),
    /// from the start of the window.
    at: Vec<Duration>,
}

impl Progress {
    fn describe(&self) -> String {
        let gaps: Vec<f64> = self
            .at
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
            .collect();
        match (self.at.first(), self.at.last()) {
            (Some(first), Some(last)) => format!(
                "{:.1} MB in {} rewrites from {:.2} s to {:.2} s{}",
                mb(self.bytes),
                self.at.len(),
                first.as_secs_f64(),
                last.as_secs_f64(),
                if gaps.is_empty() {
                    String::new()
                } else {
                    format!(" ({:.0} ms apart)", median(&gaps))
                }
            ),
            _ => format!("{:.1} MB, no rewrite", mb(self.bytes)),
        }
    }
}

/// One measured window: appends completed in each `SLICE`, the whole window's rate, and what
/// A's compaction did meanwhile.
struct Window {
    counts: Vec<u64>,
    rate: f64,
    progress: Progress,
}

impl Window {
    /// Messages per second between `from` and `to` (whole slices) from the window's start.
    fn rate_between(&self, from: Duration, to: Duration) -> f64 {
        let n = self.counts.len();
        let i = ((from.as_nanos() / SLICE.as_nanos()) as usize).min(n - 1);
        let j = (to.as_nanos().div_ceil(SLICE.as_nanos()) as usize).clamp(i + 1, n);
        self.counts[i..j].iter().sum::<u64>() as f64 / ((j - i) as f64 * SLICE.as_secs_f64())
    }
}

/// Appends 1 KiB messages to `b` from `p.threads()` threads for `window`, while watching
/// `a`'s compaction.
fn produce(b: &Stream, a: &Stream, p: Producer, window: Duration) -> Window {
    let body = payload(KIB);
    let slices = window.as_nanos().div_ceil(SLICE.as_nanos()) as usize;
    let counts: Vec<AtomicU64> = (0..slices).map(|_| AtomicU64::new(0)).collect();
    let done = AtomicBool::new(false);
    let c0 = a.compacted_bytes();
    let start = Instant::now();
    std::thread::scope(|sc| {
        let watcher = sc.spawn(|| {
            let mut at = Vec::new();
            let mut seen = c0;
            while !done.load(Ordering::Acquire) {
                let c = a.compacted_bytes();
                if c != seen {
                    at.push(start.elapsed());
                    seen = c;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            at
        });
        let workers: Vec<_> = (0..p.threads())
            .map(|t| {
                let (body, counts) = (&body, &counts);
                sc.spawn(move || {
                    let subject = format!("load.t{t}");
                    loop {
                        b.append(&subject, &[], body).unwrap();
                        let e = start.elapsed();
                        if e >= window {
                            break;
                        }
                        counts[(e.as_nanos() / SLICE.as_nanos()) as usize]
                            .fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let at = watcher.join().unwrap();
        let counts: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        Window {
            rate: counts.iter().sum::<u64>() as f64 / window.as_secs_f64(),
            counts,
            progress: Progress {
                bytes: a.compacted_bytes() - c0,
                at,
            },
        }
    })
}

/// A store with its maintenance thread, streams A to compact and fresh streams B to append
/// to.
struct Load {
    store: Store,
    _dir: tempfile::TempDir,
    n: u64,
    payload: Vec<u8>,
}

impl Load {
    fn new() -> Load {
        let dir = bench_dir();
        let store = Store::open(dir.path().join("load"), StoreOptions::default()).unwrap();
        Load {
            store,
            _dir: dir,
            n: 0,
            payload: payload(KIB),
        }
    }

    fn name(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}{}", self.n)
    }

    /// A new stream A of `load_bytes()`, synced and checkpointed twice: nothing to compact.
    fn stream_a(&mut self) -> Stream {
        let name = self.name("a");
        let a = self
            .store
            .create_stream(
                StreamConfig::new(name)
                    .block_size(block_size())
                    .durability(Durability::None),
            )
            .unwrap();
        fill(&a, &self.payload, load_bytes());
        a.checkpoint().unwrap();
        a.checkpoint().unwrap();
        a
    }

    fn stream_b(&mut self, d: Durability) -> Stream {
        let name = self.name("b");
        self.store
            .create_stream(StreamConfig::new(name).durability(d))
            .unwrap()
    }

    fn done(&self, s: Stream) {
        self.store.delete_stream(s.name()).unwrap();
    }

    /// One window of producer `p` against a fresh stream B.
    fn window(&mut self, a: &Stream, p: Producer) -> Window {
        let b = self.stream_b(p.durability());
        let w = produce(&b, a, p, window());
        self.done(b);
        w
    }

    /// One round of producer `p`: (a) without and (b) during compaction, in the order
    /// `b_first`. Also returns A's `disk_bytes() / state().bytes` at the end of (b).
    fn round(&mut self, p: Producer, b_first: bool) -> (Window, Window, f64) {
        let a = self.stream_a();
        let mut idle = None;
        if !b_first {
            idle = Some(self.window(&a, p));
        }
        remove_90(&a);
        let busy = self.window(&a, p);
        let space = a.disk_bytes() as f64 / a.state().bytes as f64;
        if b_first {
            // Finish A's compaction now, so that it has nothing left to compact.
            a.reclaim().unwrap();
            idle = Some(self.window(&a, p));
        }
        self.done(a);
        (idle.unwrap(), busy, space)
    }
}

#[derive(Default)]
struct Row {
    idle: Vec<f64>,
    busy: Vec<f64>,
    ratio: Vec<f64>,
    /// Ratio of the rates between A's first and last rewrite seen in (b).
    ratio_rewriting: Vec<f64>,
    progress: Vec<String>,
    space: Vec<f64>,
}

fn interleaved() {
    let rounds = rounds();
    if rounds == 0 {
        return;
    }
    let mut load = Load::new();
    let w = window();
    let load_before = load_average();
    let mut rows: Vec<Row> = Producer::ALL.iter().map(|_| Row::default()).collect();
    let mut idle_compacted = 0;
    for r in 0..rounds {
        for (i, (p, row)) in Producer::ALL.iter().zip(&mut rows).enumerate() {
            let (idle, busy, space) = load.round(*p, (r + i) % 2 == 1);
            idle_compacted += idle.progress.bytes;
            row.idle.push(idle.rate);
            row.busy.push(busy.rate);
            row.ratio.push(busy.rate / idle.rate);
            let at = &busy.progress.at;
            if let (Some(&first), Some(&last)) = (at.first(), at.last()) {
                // The first rewrite was seen when it ended: count from about when it began.
                let from = first.saturating_sub(Duration::from_millis(10));
                row.ratio_rewriting
                    .push(busy.rate_between(from, last) / idle.rate_between(from, last));
            }
            row.progress.push(busy.progress.describe());
            row.space.push(space);
        }
    }
    println!(
        "appends of 1 KiB to a fresh stream B for {:.1} s, (a) while stream A ({:.0} MB in {} \
         KiB blocks) in the same store has nothing to compact, (b) from right after 90% of A \
         was removed, while the maintenance thread compacts it ({rounds} rounds, alternating \
         which goes first; load average before: {load_before}, after: {}):",
        w.as_secs_f64(),
        mb(load_bytes()),
        block_size() >> 10,
        load_average(),
    );
    for (p, row) in Producer::ALL.iter().zip(&rows) {
        let m = median(&row.ratio);
        println!(
            "  {}: (a) median {:.0} msgs/s [{}], (b) median {:.0} msgs/s [{}]",
            p.label(),
            median(&row.idle),
            rates(&row.idle),
            median(&row.busy),
            rates(&row.busy),
        );
        println!(
            "    ratio b/a per round [{}]: median {m:.3} (target >= 0.8: {})",
            list(&row.ratio, 2),
            verdict(m >= 0.8),
        );
        if !row.ratio_rewriting.is_empty() {
            println!(
                "    ratio over the span from A's first to its last rewrite only (the same span \
                 of (a)), per round [{}]: median {:.3}",
                list(&row.ratio_rewriting, 2),
                median(&row.ratio_rewriting),
            );
        }
        println!(
            "    A's compaction during (b): {}; A's disk_bytes / live bytes at the end of (b): \
             [{}]",
            row.progress.join("; "),
            list(&row.space, 2),
        );
    }
    println!(
        "  (A's compaction wrote {:.1} MB during all the (a) windows together)",
        mb(idle_compacted)
    );
}

// ---------------------------------------------------------------------------------------
// criterion: single durable appends with and without compaction of another stream.

/// Stream A of a `Load`, filled and 90% removed again whenever its compaction is done.
struct Compacting {
    a: Option<Stream>,
    seen: u64,
    moved: Instant,
    refills: u32,
}

impl Compacting {
    /// Makes sure A's compaction is under way: unless A still takes more than 1.5x its live
    /// bytes and its compaction wrote something in the last 2 s, a new A is filled, 90% of it
    /// removed, and this waits (up to 3 s) for its first rewrite.
    fn ensure(&mut self, load: &mut Load) -> &Stream {
        let mut busy = false;
        if let Some(a) = &self.a {
            let c = a.compacted_bytes();
            if c != self.seen {
                self.seen = c;
                self.moved = Instant::now();
            }
            busy = a.disk_bytes() as f64 > 1.5 * a.state().bytes as f64
                && self.moved.elapsed() < Duration::from_secs(2);
        }
        if !busy {
            if let Some(old) = self.a.take() {
                load.done(old);
            }
            let a = load.stream_a();
            remove_90(&a);
            let t = Instant::now();
            while a.compacted_bytes() == 0 && t.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.seen = a.compacted_bytes();
            self.moved = Instant::now();
            self.refills += 1;
            self.a = Some(a);
        }
        self.a.as_ref().unwrap()
    }
}

fn bench(c: &mut Criterion) {
    let mut load = Load::new();
    let body = payload(KIB);
    let b = load.stream_b(Durability::Always);
    let idle_a = load.stream_a();
    let mut g = c.benchmark_group("compaction/append_1k_durable");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 3 }));
    g.bench_function("idle", |bn| {
        bn.iter(|| b.append("bench.idle", &[], &body).unwrap())
    });
    load.done(idle_a);
    let mut comp = Compacting {
        a: None,
        seen: 0,
        moved: Instant::now(),
        refills: 0,
    };
    let (mut calls, mut with_progress) = (0, 0);
    g.bench_function("compacting", |bn| {
        // Outside `iter_custom`: criterion does not count this towards the sample's time.
        let a = comp.ensure(&mut load);
        bn.iter_custom(|iters| {
            let c0 = a.compacted_bytes();
            let t = Instant::now();
            for _ in 0..iters {
                b.append("bench.busy", &[], &body).unwrap();
            }
            let t = t.elapsed();
            calls += 1;
            if a.compacted_bytes() != c0 {
                with_progress += 1;
            }
            t
        })
    });
    g.finish();
    println!(
        "compaction/append_1k_durable/compacting: A's compaction wrote during {with_progress} of \
         {calls} timed calls (warm-up included); A was filled and 90% removed {} times",
        comp.refills
    );
    if let Some(a) = comp.a.take() {
        load.done(a);
    }
    load.done(b);
    drop(load);

    println!(
        "compaction after removing 9 of every 10 messages ({:.0} MB of message bytes, {} KiB \
         blocks, Durability::None, reclaim() in a store without a maintenance thread):",
        mb(fill_bytes()),
        block_size() >> 10,
    );
    report_space(&space(KIB));
    report_space(&space(128));
    interleaved();
    std::io::stdout().flush().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
