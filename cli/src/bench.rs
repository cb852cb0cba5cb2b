//! `tidelog bench`: raw disk speed, append throughput and latency, random loads, reopen
//! and crash recovery, all in one run on one file system.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::thread;
use std::time::Instant;

use hdrhistogram::Histogram;
use tidelog::{NewMessage, Store, StoreOptions, Stream, MAX_MESSAGE_LEN};

use crate::crash;
use crate::fail::{Context, Fail};
use crate::parse::{number, number32};
use crate::progress::{Bar, Unit};
use crate::report::{self, Report};
use crate::workload::{share, Mode, Workload, XorShift, STREAM};

/// Most random loads of the load phase.
const MAX_LOADS: u64 = 1_000_000;
/// Size of one raw write.
const CHUNK: usize = 1 << 20;
/// Messages a producer appends between progress updates.
const PROGRESS_EVERY: u64 = 1024;

/// Options of `tidelog bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Directory for the store, created if missing and left in place afterwards. It must not
    /// already hold a stream named "bench". Default: a temporary directory under $TMPDIR (or
    /// /tmp), removed afterwards; pass --dir to measure a particular file system.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Messages to append.
    #[arg(long, value_name = "N", default_value_t = 1_000_000,
          value_parser = number::<1, { u64::MAX }>)]
    pub messages: u64,
    /// Payload bytes per message (at most 32 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = 128,
          value_parser = number32::<0, { MAX_MESSAGE_LEN as u64 }>)]
    pub payload: u32,
    /// Distinct subjects (bench.s0, bench.s1, ...), used round-robin.
    #[arg(long, value_name = "K", default_value_t = 1_000,
          value_parser = number32::<1, 10_000_000>)]
    pub subjects: u32,
    /// When an append counts as stored: always (fdatasync per append, shared by concurrent
    /// appenders), interval (synced every 100 ms) or none (synced only at checkpoints).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Mode::None)]
    pub durability: Mode,
    /// Threads appending concurrently; each appends an equal share of the messages.
    #[arg(long, value_name = "P", default_value_t = 1,
          value_parser = number32::<1, 4096>)]
    pub producers: u32,
    /// Messages per append call; above 1, appends go through append_batch.
    #[arg(long, value_name = "B", default_value_t = 1,
          value_parser = number32::<1, 1_000_000>)]
    pub batch: u32,
    /// Print exactly one JSON object on stdout instead of the summary (no progress bars).
    #[arg(long)]
    pub json: bool,
}

/// Where the run keeps its files.
struct WorkDir {
    path: PathBuf,
    temp: Option<tempfile::TempDir>,
}

pub struct RawResult {
    pub bytes: u64,
    pub secs: f64,
    /// Small appending writes each followed by fdatasync: the device's sync rate, the
    /// ceiling of durable appends per group commit.
    pub syncs: u32,
    pub sync_secs: f64,
}

/// Small write + fdatasync rounds in the raw sync probe.
const SYNC_PROBE_ROUNDS: u32 = 200;

pub struct AppendResult {
    pub secs: f64,
    pub sync_secs: f64,
    pub calls: u64,
    pub hist: Histogram<u64>,
    pub disk_bytes: u64,
}

pub struct LoadResult {
    pub loads: u64,
    pub secs: f64,
}

pub struct ReopenResult {
    pub ms: f64,
    pub replayed_records: u64,
}

/// Runs every phase and prints the report.
pub fn run(args: &BenchArgs) -> Result<(), Fail> {
    let work = WorkDir::prepare(args.dir.as_deref())?;
    let w = Workload::new(args.payload as usize, args.subjects, args.durability);
    let show = !args.json;
    let raw = raw_write(&work.path, w.record_bytes(args.messages), show)?;
    let store = Store::open(&work.path, StoreOptions::default())
        .with_context(|| format!("opening a store in {}", work.path.display()))?;
    let io_backend = store.io_backend().to_string();
    let stream = create_stream(&store, &w, &work.path)?;
    let append = append_phase(&stream, &w, args, &work.path, show)?;
    let load = load_phase(&stream, &w, args.messages, show)?;
    let reopen = reopen_phase(store, stream, &work.path, args.messages)?;
    let crash = crash::run(&work.path, args, show)?;
    let r = Report {
        args,
        dir: &work.path,
        temporary: work.temp.is_some(),
        io_backend,
        user_bytes: w.user_bytes(args.messages),
        raw,
        append,
        load,
        reopen,
        crash,
    };
    report::print(&r)
}

impl WorkDir {
    fn prepare(dir: Option<&Path>) -> Result<WorkDir, Fail> {
        let Some(dir) = dir else {
            let t = tempfile::TempDir::new().context("creating a temporary directory")?;
            return Ok(WorkDir {
                path: t.path().to_path_buf(),
                temp: Some(t),
            });
        };
        if dir.exists() && !dir.is_dir() {
            return Err(Fail::new(format!(
                "--dir {} is not a directory",
                dir.display()
            )));
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if dir.join("streams").join(STREAM).exists() {
            return Err(already_there(dir));
        }
        Ok(WorkDir {
            path: dir.to_path_buf(),
            temp: None,
        })
    }
}

fn already_there(dir: &Path) -> Fail {
    Fail::new(format!(
        "{} already contains a store with a stream named \"{STREAM}\" (from an earlier \
         run?); remove it or choose another --dir",
        dir.display()
    ))
}

fn create_stream(store: &Store, w: &Workload, dir: &Path) -> Result<Stream, Fail> {
    if store.stream(STREAM).is_ok() {
        return Err(already_there(dir));
    }
    store
        .create_stream(w.config())
        .context("creating stream \"bench\"")
}

/// Removes a file when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Phase 1: sequential 1 MiB writes of `bytes` bytes, then one fdatasync.
fn raw_write(dir: &Path, bytes: u64, show: bool) -> Result<RawResult, Fail> {
    let path = dir.join(format!(".tidelog-bench-raw-{}", std::process::id()));
    let mut rng = XorShift::new(7);
    let chunk: Vec<u8> = (0..CHUNK).map(|_| rng.next() as u8).collect();
    let bar = Bar::new(show, "raw write", bytes, Unit::Bytes);
    let ctx = || format!("raw write to {}", path.display());
    let mut f = File::create(&path).with_context(ctx)?;
    let _scratch = Scratch(path.clone());
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64);
        f.write_all(&chunk[..n as usize]).with_context(ctx)?;
        left -= n;
        bar.inc(n);
    }
    bar.message("fdatasync");
    f.sync_data().with_context(ctx)?;
    let secs = start.elapsed().as_secs_f64();
    bar.message("fdatasync rate");
    let sync_start = Instant::now();
    for _ in 0..SYNC_PROBE_ROUNDS {
        f.write_all(&chunk[..512]).with_context(ctx)?;
        f.sync_data().with_context(ctx)?;
    }
    let sync_secs = sync_start.elapsed().as_secs_f64();
    bar.finish();
    Ok(RawResult {
        bytes,
        secs,
        syncs: SYNC_PROBE_ROUNDS,
        sync_secs,
    })
}

/// Phase 2: `producers` threads append their share; the final `sync` is timed too.
fn append_phase(
    stream: &Stream,
    w: &Workload,
    args: &BenchArgs,
    dir: &Path,
    show: bool,
) -> Result<AppendResult, Fail> {
    let bar = Bar::new(show, "append", args.messages, Unit::Items);
    let (secs_before_sync, calls, hist) = run_producers(stream, w, args, &bar)?;
    bar.message("final sync");
    let t = Instant::now();
    stream.sync().context("syncing the stream")?;
    let sync_secs = t.elapsed().as_secs_f64();
    bar.finish();
    Ok(AppendResult {
        secs: secs_before_sync + sync_secs,
        sync_secs,
        calls,
        hist,
        disk_bytes: dir_bytes(&dir.join("streams").join(STREAM))?,
    })
}

/// Starts the producers together and returns (seconds, append calls, merged latencies).
fn run_producers(
    stream: &Stream,
    w: &Workload,
    args: &BenchArgs,
    bar: &Bar,
) -> Result<(f64, u64, Histogram<u64>), Fail> {
    let gate = RwLock::new(());
    let stop = AtomicBool::new(false);
    let p = u64::from(args.producers);
    thread::scope(|s| {
        let guard = gate
            .write()
            .map_err(|_| Fail::new("producer start gate poisoned"))?;
        let mut handles = Vec::new();
        for i in 0..p {
            let ctx = Producer {
                stream,
                w,
                batch: u64::from(args.batch),
                bar,
                stop: &stop,
                gate: &gate,
            };
            let spawned = thread::Builder::new()
                .name(format!("producer-{i}"))
                .spawn_scoped(s, move || ctx.run(share(args.messages, p, i)));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Release);
                    drop(guard);
                    return Err(Fail::new(format!("starting producer thread {i}: {e}")));
                }
            }
        }
        let start = Instant::now();
        drop(guard);
        let merged = join_producers(handles, &stop);
        merged.map(|(calls, h)| (start.elapsed().as_secs_f64(), calls, h))
    })
}

type ProducerResult = Result<(u64, Histogram<u64>), Fail>;

fn join_producers(
    handles: Vec<thread::ScopedJoinHandle<'_, ProducerResult>>,
    stop: &AtomicBool,
) -> ProducerResult {
    let mut total = new_histogram()?;
    let mut calls = 0;
    let mut first_err = None;
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(Fail::new("a producer thread panicked")));
        match r {
            Ok((c, hist)) => {
                calls += c;
                total.add(&hist).context("merging latency histograms")?;
            }
            Err(e) => {
                stop.store(true, Ordering::Release);
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok((calls, total)), Err)
}

/// Latencies in nanoseconds, 1 ns to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Result<Histogram<u64>, Fail> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).context("creating a latency histogram")
}

/// One producer thread's view of the run.
struct Producer<'a> {
    stream: &'a Stream,
    w: &'a Workload,
    batch: u64,
    bar: &'a Bar,
    stop: &'a AtomicBool,
    gate: &'a RwLock<()>,
}

impl Producer<'_> {
    fn run(self, range: std::ops::Range<u64>) -> ProducerResult {
        drop(self.gate.read());
        let mut hist = new_histogram()?;
        let mut msgs: Vec<NewMessage<'_>> = Vec::with_capacity(self.batch as usize);
        let (mut i, mut calls, mut unreported) = (range.start, 0, 0);
        while i < range.end && !self.stop.load(Ordering::Relaxed) {
            let n = self.batch.min(range.end - i);
            let t = if self.batch == 1 {
                let t = Instant::now();
                self.append_one(i)?;
                t
            } else {
                msgs.clear();
                msgs.extend(
                    (i..i + n).map(|j| NewMessage::new(self.w.subject(j), &self.w.payload)),
                );
                let t = Instant::now();
                self.append_batch(&msgs)?;
                t
            };
            hist.saturating_record(t.elapsed().as_nanos() as u64);
            (i, calls, unreported) = (i + n, calls + 1, unreported + n);
            if unreported >= PROGRESS_EVERY {
                self.bar.inc(std::mem::take(&mut unreported));
            }
        }
        self.bar.inc(unreported);
        Ok((calls, hist))
    }

    fn append_one(&self, i: u64) -> Result<(), Fail> {
        self.stream
            .append(self.w.subject(i), &[], &self.w.payload)
            .map(|_| ())
            .with_context(|| format!("append of message {i}"))
    }

    fn append_batch(&self, msgs: &[NewMessage<'_>]) -> Result<(), Fail> {
        self.stream
            .append_batch(msgs)
            .map(|_| ())
            .with_context(|| format!("append_batch of {} messages", msgs.len()))
    }
}

/// Total size of the regular files under `dir`.
pub fn dir_bytes(dir: &Path) -> Result<u64, Fail> {
    let ctx = || format!("measuring {}", dir.display());
    let mut total = 0;
    for e in fs::read_dir(dir).with_context(ctx)? {
        let e = e.with_context(ctx)?;
        let meta = e.metadata().with_context(ctx)?;
        total += if meta.is_dir() {
            dir_bytes(&e.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Phase 3: single-threaded loads of random sequences.
fn load_phase(stream: &Stream, w: &Workload, n: u64, show: bool) -> Result<LoadResult, Fail> {
    let st = stream.state();
    let span = st.last_seq + 1 - st.first_seq;
    let loads = n.min(MAX_LOADS);
    let bar = Bar::new(show, "random load", loads, Unit::Items);
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let want = w.payload.len();
    let start = Instant::now();
    for k in 0..loads {
        let seq = st.first_seq + rng.next() % span;
        let m = stream
            .load(seq)
            .with_context(|| format!("load of sequence {seq}"))?;
        if m.payload().len() != want {
            return Err(Fail::new(format!(
                "load of sequence {seq} returned {} payload bytes, expected {want}",
                m.payload().len()
            )));
        }
        if k % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
            bar.inc(PROGRESS_EVERY);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    bar.finish();
    Ok(LoadResult { loads, secs })
}

/// Phase 4: a clean close, then a timed `Store::open` and a count check.
fn reopen_phase(store: Store, stream: Stream, dir: &Path, n: u64) -> Result<ReopenResult, Fail> {
    store.close().context("closing the store")?;
    drop(stream);
    drop(store);
    let t = Instant::now();
    let store = Store::open(dir, StoreOptions::default()).context("reopening the store")?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let stream = store.stream(STREAM).context("reopened store")?;
    let got = stream.state().messages;
    if got != n {
        return Err(Fail::new(format!(
            "reopened stream holds {got} messages, expected {n}"
        )));
    }
    let replayed_records = stream.recovery_report().replayed_records;
    store.close().context("closing the reopened store")?;
    Ok(ReopenResult {
        ms,
        replayed_records,
    })
}

/// A rate, safe for a zero duration.
pub fn per_sec(count: f64, secs: f64) -> f64 {
    count / secs.max(1e-9)
}
