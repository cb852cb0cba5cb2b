//! Phase 5 of `tidelog bench`: run `tidelog bench-child`, SIGKILL it mid-append, then time
//! `Store::open` on what it left behind and check that no acknowledged message is missing.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tidelog::{Store, StoreOptions};

use crate::bench::BenchArgs;
use crate::fail::{Context, Fail};
use crate::progress::{self, Bar, Unit};
use crate::workload::{Mode, STREAM};

/// Most messages the child appends before it is killed.
const MAX_TARGET: u64 = 1_000_000;
/// Longest the child appends before it is killed.
const MAX_WAIT: Duration = Duration::from_secs(2);

pub struct CrashResult {
    /// Messages the child reported as acknowledged before it died.
    pub acked: u64,
    pub recovered: u64,
    pub recover_ms: f64,
    pub replayed_records: u64,
    pub torn_bytes: u64,
    /// Acknowledged messages missing after recovery (always 0 with `--durability always`,
    /// or the run fails).
    pub lost_acked: u64,
}

/// Kills the child when dropped, so an early return leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn run(base: &Path, args: &BenchArgs, show: bool) -> Result<CrashResult, Fail> {
    let dir = base.join(format!("crash-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let r = crash_and_recover(&dir, args, show);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn crash_and_recover(dir: &Path, args: &BenchArgs, show: bool) -> Result<CrashResult, Fail> {
    let target = args.messages.min(MAX_TARGET);
    let (acked, status) = run_child(dir, args, target, show)?;
    if status.signal() != Some(libc::SIGKILL) {
        return Err(Fail::new(format!(
            "crash child ended on its own before it was killed ({status})"
        )));
    }
    let t = Instant::now();
    let store = progress::during(show, "recovery", || {
        Store::open(dir, StoreOptions::default())
    })
    .context("recovering after SIGKILL")?;
    let recover_ms = t.elapsed().as_secs_f64() * 1e3;
    let stream = store.stream(STREAM).context("recovered store")?;
    let recovered = stream.state().messages;
    let report = stream.recovery_report().clone();
    store.close().context("closing the recovered store")?;
    let lost_acked = acked.saturating_sub(recovered);
    if lost_acked > 0 && args.durability == Mode::Always {
        return Err(Fail::new(format!(
            "durability violation: the child had {acked} acknowledged messages but only \
             {recovered} were recovered after SIGKILL"
        )));
    }
    Ok(CrashResult {
        acked,
        recovered,
        recover_ms,
        replayed_records: report.replayed_records,
        torn_bytes: report.torn_bytes,
        lost_acked,
    })
}

/// Runs the child until it acked `target` messages or `MAX_WAIT` passed, then SIGKILLs it.
/// Returns the acknowledged count (including lines read after the kill) and its status.
fn run_child(
    dir: &Path,
    args: &BenchArgs,
    target: u64,
    show: bool,
) -> Result<(u64, ExitStatus), Fail> {
    let mut child = Guard(spawn_child(dir, args, target)?);
    let stdout = child
        .0
        .stdout
        .take()
        .ok_or_else(|| Fail::new("child has no stdout"))?;
    let (rx, reader) = read_acks(stdout)?;
    let mut acked = wait_for_acks(&rx, target, show);
    let pid = child.0.id() as libc::pid_t;
    // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return Err(Fail::new(format!(
            "killing the crash child: {}",
            std::io::Error::last_os_error()
        )));
    }
    let status = child.0.wait().context("waiting for the crash child")?;
    let stderr = child_stderr(&mut child.0);
    let _ = reader.join();
    acked = rx.try_iter().fold(acked, u64::max);
    if status.signal() != Some(libc::SIGKILL) && !stderr.is_empty() {
        return Err(Fail::new(format!("crash child failed: {stderr}")));
    }
    Ok((acked, status))
}

fn spawn_child(dir: &Path, args: &BenchArgs, target: u64) -> Result<Child, Fail> {
    let exe: PathBuf = std::env::current_exe().context("finding the tidelog executable")?;
    Command::new(exe)
        .arg("bench-child")
        .arg("--dir")
        .arg(dir)
        .args(["--durability", args.durability.name()])
        .args(["--message-size", &args.sizes().arg()])
        .args(["--subjects", &args.subjects.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .args(["--max-messages", &(target * 4 + 1_000_000).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the crash child (tidelog bench-child)")
}

/// A thread forwarding the child's `acked <n>` lines as numbers.
fn read_acks(stdout: ChildStdout) -> Result<(Receiver<u64>, JoinHandle<()>), Fail> {
    let (tx, rx) = mpsc::channel();
    let h = thread::Builder::new()
        .name("crash-child-reader".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let n = line
                    .strip_prefix("acked ")
                    .and_then(|n| n.trim().parse().ok());
                if n.is_some_and(|n| tx.send(n).is_err()) {
                    return;
                }
            }
        })
        .context("starting a reader thread")?;
    Ok((rx, h))
}

/// Waits until `target` messages are acked, `MAX_WAIT` passes or the child's stdout closes.
fn wait_for_acks(rx: &Receiver<u64>, target: u64, show: bool) -> u64 {
    let bar = Bar::new(show, "crash child", target, Unit::Items);
    let deadline = Instant::now() + MAX_WAIT;
    let mut acked = 0;
    while acked < target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(n) => acked = acked.max(n),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        bar.set(acked.min(target));
    }
    bar.finish();
    acked
}

fn child_stderr(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
