//! `tidelog bench`: raw disk speed, append throughput and latency with concurrent
//! consumers, random loads, reopen and crash recovery, all in one run on one file system.

// Declared here rather than in main.rs: they are parts of this command.
mod args;
mod consume;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::thread::{self, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog::{Consumer, LoadError, NewMessage, Store, StoreOptions, StoredMessage, Stream};

pub use args::{AckMode, BenchArgs};
pub use consume::{ConsumeResult, Tally, FETCH, FETCH_BYTES};

use crate::crash;
use crate::fail::{Context, Fail};
use crate::progress::{self, Bar, Unit};
use crate::report::{self, Report};
use crate::show;
use crate::workload::{share, Workload, XorShift, STREAM};

/// Most random loads of the load phase.
const MAX_LOADS: u64 = 1_000_000;
/// Size of one raw write.
const CHUNK: usize = 1 << 20;
/// Messages a producer appends (or loads the load phase makes) between progress updates...
const PROGRESS_EVERY: u64 = 1024;
/// ...unless this much time passed first (large messages or slow syncs).
const PROGRESS_AFTER: Duration = Duration::from_millis(100);

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
    /// Loads that found no message: expired (only with --ttl; otherwise the run fails).
    pub missing: u64,
}

pub struct ReopenResult {
    pub ms: f64,
    pub replayed_records: u64,
    /// Messages the reopened stream holds.
    pub messages: u64,
}

/// What a TTL did during the run.
pub struct TtlResult {
    pub secs: u64,
    /// Messages gone by the random loads, and by the reopen.
    pub expired_before_load: u64,
    pub expired_at_reopen: u64,
    /// From the first append to the end of the reopen.
    pub run_secs: f64,
}

/// Flags the producer and consumer threads share.
#[derive(Default)]
pub struct Signals {
    /// Held for writing while threads start, so they all begin together.
    gate: RwLock<()>,
    /// A thread failed: everyone stops.
    stop: AtomicBool,
    /// Every append has returned: a consumer that finds nothing more is done.
    appended: AtomicBool,
}

/// Runs every phase and prints the report.
pub fn run(args: &BenchArgs) -> Result<(), Fail> {
    let work = WorkDir::prepare(args.dir.as_deref())?;
    let w = Workload::new(args.sizes(), args.subjects, args.durability, args.ttl);
    let show = !args.json;
    let need = w.record_bytes(args.messages);
    check_space(&work.path, need)?;
    let raw = raw_write(&work.path, need, show)?;
    let store = Store::open(&work.path, StoreOptions::default())
        .with_context(|| format!("opening a store in {}", work.path.display()))?;
    let io_backend = store.io_backend().to_string();
    let stream = create_stream(&store, &w, &work.path)?;
    let consumers = consume::create(&stream, args)?;
    let matching = w.matching_filter(args.filter.as_deref(), args.messages);
    let started = Instant::now();
    let (append, consume) = traffic(&stream, &consumers, matching, &w, args, &work.path, show)?;
    drop(consumers);
    let before_load = args.messages.saturating_sub(stream.state().messages);
    let load = load_phase(&stream, &w, args, show)?;
    let reopen = reopen_phase(store, stream, &work.path, args, show)?;
    let ttl = args.ttl.map(|secs| TtlResult {
        secs,
        expired_before_load: before_load,
        expired_at_reopen: args.messages.saturating_sub(reopen.messages),
        run_secs: started.elapsed().as_secs_f64(),
    });
    let crash = crash::run(&work.path, args, show)?;
    let r = Report {
        args,
        dir: &work.path,
        temporary: work.temp.is_some(),
        io_backend,
        user_bytes: w.user_bytes(args.messages),
        payload_bytes: w.payload_bytes(args.messages),
        matching,
        raw,
        append,
        consume,
        load,
        reopen,
        ttl,
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

/// Fails at once when the run cannot fit in `dir`: the raw write and then the store each
/// write about `need` bytes, and a run that does not fit would only fail once it has filled
/// the disk. Free space that cannot be read is no reason not to try.
fn check_space(dir: &Path, need: u64) -> Result<(), Fail> {
    let Ok(fs) = rustix::fs::statvfs(dir) else {
        return Ok(());
    };
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    if need <= free {
        return Ok(());
    }
    Err(Fail::new(format!(
        "the run writes about {} to {} but only {} is free there; use fewer --messages or a \
         smaller --message-size",
        show::bytes(need),
        dir.display(),
        show::bytes(free)
    )))
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

/// Phase 2: the producers append their shares while the consumers (if any) read the
/// `expected` matching messages; the final `sync` is part of the append time.
fn traffic(
    stream: &Stream,
    consumers: &[Consumer],
    expected: u64,
    w: &Workload,
    args: &BenchArgs,
    dir: &Path,
    show: bool,
) -> Result<(AppendResult, Option<ConsumeResult>), Fail> {
    let bars = Bars {
        append: Bar::new(show, "append", args.messages, Unit::Items),
        consume: Bar::new(
            show,
            "consume",
            expected * consumers.len() as u64,
            Unit::Items,
        ),
    };
    let (mut append, tallies) = run_threads(stream, consumers, w, args, &bars)?;
    bars.consume.finish();
    // Measured once the consumers are done, so their state files count too.
    append.disk_bytes = dir_bytes(&dir.join("streams").join(STREAM))?;
    let consume = (!consumers.is_empty())
        .then(|| consume::result(tallies, args.ack_mode(), expected, args.ttl.is_some()))
        .transpose()?;
    Ok((append, consume))
}

struct Bars {
    append: Bar,
    consume: Bar,
}

/// Starts consumers and producers together and waits for all of them.
fn run_threads(
    stream: &Stream,
    consumers: &[Consumer],
    w: &Workload,
    args: &BenchArgs,
    bars: &Bars,
) -> Result<(AppendResult, Vec<Tally>), Fail> {
    let sig = Signals::default();
    thread::scope(|s| {
        let guard = sig
            .gate
            .write()
            .map_err(|_| Fail::new("thread start gate poisoned"))?;
        let started = spawn_readers(s, consumers, args.ack_mode(), &bars.consume, &sig)
            .and_then(|r| spawn_producers(s, stream, w, args, &bars.append, &sig).map(|p| (r, p)));
        let (readers, producers) = match started {
            Ok(handles) => handles,
            Err(e) => {
                sig.stop.store(true, Ordering::Release);
                drop(guard);
                return Err(e);
            }
        };
        let start = Instant::now();
        drop(guard);
        let appended = finish_appends(stream, producers, &bars.append, &sig, start);
        let tallies = join_all(readers, &sig.stop);
        Ok((appended?, tallies?))
    })
}

type Handles<'s, T> = Vec<ScopedJoinHandle<'s, Result<T, Fail>>>;

fn spawn_readers<'s>(
    s: &'s Scope<'s, '_>,
    consumers: &'s [Consumer],
    ack: AckMode,
    bar: &'s Bar,
    sig: &'s Signals,
) -> Result<Handles<'s, Tally>, Fail> {
    let jobs = consumers.iter().map(|consumer| consume::Reader {
        consumer,
        ack,
        bar,
        sig,
    });
    spawn_all(s, "consumer", jobs, consume::Reader::run, &sig.stop)
}

fn spawn_producers<'s>(
    s: &'s Scope<'s, '_>,
    stream: &'s Stream,
    w: &'s Workload,
    args: &'s BenchArgs,
    bar: &'s Bar,
    sig: &'s Signals,
) -> Result<Handles<'s, Appends>, Fail> {
    let p = u64::from(args.producers);
    let jobs = (0..p).map(|i| Producer {
        stream,
        w,
        batch: u64::from(args.batch),
        bar,
        sig,
        range: share(args.messages, p, i),
    });
    spawn_all(s, "producer", jobs, Producer::run, &sig.stop)
}

/// Starts one named thread per job; they wait at the gate. A thread that fails raises
/// `stop` at once, so the others do not run to the end for nothing.
fn spawn_all<'s, J: Send + 's, T: Send + 's>(
    s: &'s Scope<'s, '_>,
    what: &str,
    jobs: impl Iterator<Item = J>,
    run: fn(J) -> Result<T, Fail>,
    stop: &'s AtomicBool,
) -> Result<Handles<'s, T>, Fail> {
    let mut handles = Vec::new();
    for (i, job) in jobs.enumerate() {
        let h = thread::Builder::new()
            .name(format!("{what}-{i}"))
            .spawn_scoped(s, move || {
                let r = run(job);
                if r.is_err() {
                    stop.store(true, Ordering::Release);
                }
                r
            })
            .with_context(|| format!("starting {what} thread {i}"))?;
        handles.push(h);
    }
    Ok(handles)
}

/// Waits for the producers, tells the consumers every append returned, then syncs.
/// Leaves `disk_bytes` to the caller.
fn finish_appends(
    stream: &Stream,
    producers: Handles<'_, Appends>,
    bar: &Bar,
    sig: &Signals,
    start: Instant,
) -> Result<AppendResult, Fail> {
    let joined = join_all(producers, &sig.stop);
    sig.appended.store(true, Ordering::Release);
    let (calls, hist) = merge_appends(joined?)?;
    let before_sync = start.elapsed().as_secs_f64();
    bar.message("final sync");
    let t = Instant::now();
    let synced = stream.sync().context("syncing the stream");
    if synced.is_err() {
        sig.stop.store(true, Ordering::Release);
    }
    synced?;
    let sync_secs = t.elapsed().as_secs_f64();
    bar.finish();
    Ok(AppendResult {
        secs: before_sync + sync_secs,
        sync_secs,
        calls,
        hist,
        disk_bytes: 0,
    })
}

/// Joins every thread; the first failure wins and stops the others.
fn join_all<T>(handles: Handles<'_, T>, stop: &AtomicBool) -> Result<Vec<T>, Fail> {
    let mut out = Vec::with_capacity(handles.len());
    let mut first_err = None;
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(Fail::new("a benchmark thread panicked")));
        match r {
            Ok(x) => out.push(x),
            Err(e) => {
                stop.store(true, Ordering::Release);
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(out), Err)
}

/// One producer's append calls and their latencies.
type Appends = (u64, Histogram<u64>);

fn merge_appends(all: Vec<Appends>) -> Result<Appends, Fail> {
    let mut total = new_histogram()?;
    let mut calls = 0;
    for (c, h) in all {
        calls += c;
        total.add(&h).context("merging latency histograms")?;
    }
    Ok((calls, total))
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
    sig: &'a Signals,
    range: std::ops::Range<u64>,
}

impl Producer<'_> {
    fn run(self) -> Result<Appends, Fail> {
        drop(self.sig.gate.read());
        let mut hist = new_histogram()?;
        let mut msgs: Vec<NewMessage<'_>> = Vec::with_capacity(self.batch as usize);
        let (mut i, mut calls, mut unreported) = (self.range.start, 0, 0);
        let mut reported = Instant::now();
        while i < self.range.end && !self.sig.stop.load(Ordering::Relaxed) {
            let n = self.batch.min(self.range.end - i);
            let t = if self.batch == 1 {
                let t = Instant::now();
                self.append_one(i)?;
                t
            } else {
                msgs.clear();
                msgs.extend((i..i + n).map(|j| self.w.message(j)));
                let t = Instant::now();
                self.append_batch(&msgs)?;
                t
            };
            let now = Instant::now();
            hist.saturating_record((now - t).as_nanos() as u64);
            (i, calls, unreported) = (i + n, calls + 1, unreported + n);
            if unreported >= PROGRESS_EVERY || now - reported >= PROGRESS_AFTER {
                self.bar.inc(std::mem::take(&mut unreported));
                reported = now;
            }
        }
        self.bar.inc(unreported);
        Ok((calls, hist))
    }

    fn append_one(&self, i: u64) -> Result<(), Fail> {
        self.stream
            .append_msg(&self.w.message(i))
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

/// Phase 3: single-threaded loads of random sequences (with --filter, the first matching
/// message at or after each, through load_next).
fn load_phase(
    stream: &Stream,
    w: &Workload,
    args: &BenchArgs,
    show: bool,
) -> Result<LoadResult, Fail> {
    let n = args.messages;
    let loads = n.min(MAX_LOADS);
    let bar = Bar::new(show, "random load", loads, Unit::Items);
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let filter = args.filter.as_deref();
    let (mut missing, mut unreported) = (0, 0);
    // Reading the clock costs about as much as loading a small message, so it is read only
    // every 64 loads of those; loads of large ones can be slow enough to need every check.
    let clock_every = if w.sizes.max >= 1 << 16 { 1 } else { 64 };
    let start = Instant::now();
    let mut reported = start;
    for _ in 0..loads {
        // A new stream numbers its messages from 1.
        let seq = 1 + rng.next() % n;
        match load_one(stream, w, filter, seq)? {
            Some(m) => check_loaded(&m, w, filter)?,
            None => missing += 1,
        }
        unreported += 1;
        if unreported >= PROGRESS_EVERY
            || (unreported % clock_every == 0 && reported.elapsed() >= PROGRESS_AFTER)
        {
            bar.inc(std::mem::take(&mut unreported));
            reported = Instant::now();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    bar.finish();
    Ok(LoadResult {
        loads,
        secs,
        missing,
    })
}

/// The message at `seq` (or the first match at or after it, wrapping around to the start).
/// `None` only for a message that may have expired.
fn load_one(
    stream: &Stream,
    w: &Workload,
    filter: Option<&str>,
    seq: u64,
) -> Result<Option<StoredMessage>, Fail> {
    let ctx = || format!("load of sequence {seq}");
    let found = match filter {
        None => match stream.load(seq) {
            Err(LoadError::NotFound(_)) if w.ttl.is_some() => None,
            r => Some(r.with_context(ctx)?),
        },
        Some(f) => match stream.load_next(f, seq).with_context(ctx)? {
            Some(m) => Some(m),
            None => stream.load_next(f, 1).with_context(ctx)?,
        },
    };
    if found.is_none() && w.ttl.is_none() {
        return Err(Fail::new(format!("{}: no message found", ctx())));
    }
    Ok(found)
}

/// A loaded message has a size from the range, the run's TTL and a matching subject.
fn check_loaded(m: &StoredMessage, w: &Workload, filter: Option<&str>) -> Result<(), Fail> {
    let (len, r) = (m.payload().len(), w.sizes);
    let bad = if !(r.min as usize..=r.max as usize).contains(&len) {
        format!("{len} payload bytes, expected {}", r.arg())
    } else if m.ttl != w.ttl {
        format!("TTL {:?}, expected {:?}", m.ttl, w.ttl)
    } else if filter.is_some_and(|f| !tidelog::subject::matches(f, m.subject())) {
        format!("subject {} outside the filter", m.subject())
    } else {
        return Ok(());
    };
    Err(Fail::new(format!(
        "load of sequence {} returned {bad}",
        m.seq
    )))
}

/// Phase 4: a clean close, then a timed `Store::open` and a count check (messages may only
/// be missing when they had a TTL).
fn reopen_phase(
    store: Store,
    stream: Stream,
    dir: &Path,
    args: &BenchArgs,
    show: bool,
) -> Result<ReopenResult, Fail> {
    // Closing syncs and checkpoints everything appended, which can take a while.
    progress::during(show, "close", || store.close()).context("closing the store")?;
    drop(stream);
    drop(store);
    let t = Instant::now();
    let store = progress::during(show, "reopen", || Store::open(dir, StoreOptions::default()))
        .context("reopening the store")?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let stream = store.stream(STREAM).context("reopened store")?;
    let (got, n) = (stream.state().messages, args.messages);
    if got > n || (got < n && args.ttl.is_none()) {
        return Err(Fail::new(format!(
            "reopened stream holds {got} messages, expected {n}"
        )));
    }
    let replayed_records = stream.recovery_report().replayed_records;
    store.close().context("closing the reopened store")?;
    Ok(ReopenResult {
        ms,
        replayed_records,
        messages: got,
    })
}

/// A rate, safe for a zero duration.
pub fn per_sec(count: f64, secs: f64) -> f64 {
    count / secs.max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_cannot_fit_fails_before_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(check_space(dir.path(), 1).is_ok());
        let e = check_space(dir.path(), u64::MAX).expect_err("no disk is that large");
        assert!(e.to_string().contains("is free there"), "{e}");
    }
}
