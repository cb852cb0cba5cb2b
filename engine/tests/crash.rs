//! Process-level crash test: the test binary re-runs itself as a child that appends durable
//! messages to a real on-disk store and reports every acknowledged sequence on stdout; the
//! parent SIGKILLs it at a random moment, reopens the store and checks that every acknowledged
//! message is there, intact (`acked-survives-crash`), that the log has no holes, that
//! `check_invariants()` passes and that `last_seq` never goes backwards across rounds
//! (`seq-never-reused`). Runs on the pwrite back end and on `Auto` (io_uring when available).

#[allow(dead_code)]
mod common;

use common::Rng;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidelog::{IoBackendChoice, LoadError, NewMessage, Store, StoreOptions, StreamConfig};

/// Set in the child: the store directory.
const CHILD_DIR_ENV: &str = "TIDELOG_CRASH_CHILD";
/// Set in the child: `pwrite` or `auto`.
const CHILD_BACKEND_ENV: &str = "TIDELOG_CRASH_BACKEND";
const CHILD_TEST: &str = "crash_child";
const STREAM: &str = "s";
/// Kill rounds per back end; `TIDELOG_CRASH_ROUNDS=50` for a longer soak.
const ROUNDS: usize = 5;

fn rounds() -> usize {
    std::env::var("TIDELOG_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
}

fn backend(name: &str) -> IoBackendChoice {
    match name {
        "pwrite" => IoBackendChoice::Pwrite,
        "auto" => IoBackendChoice::Auto,
        other => panic!("unknown back end {other:?}"),
    }
}

fn options(name: &str) -> StoreOptions {
    StoreOptions {
        io_backend: backend(name),
        ..Default::default()
    }
}

/// Every message's content is a function of its sequence, so the parent can check it.
fn subject(seq: u64) -> String {
    format!("crash.s{}", seq % 7)
}

fn headers(seq: u64) -> Vec<u8> {
    if seq.is_multiple_of(3) {
        format!("h={seq}").into_bytes()
    } else {
        Vec::new()
    }
}

fn payload(seq: u64) -> Vec<u8> {
    let len = 8 + (seq.wrapping_mul(2_654_435_761) % 700) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&seq.to_le_bytes());
    let mut x = seq ^ 0x9E37_79B9_7F4A_7C15;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// The child: appends until it is killed, printing `ack <first> <last>` after each
/// acknowledged append or batch.
#[test]
#[ignore = "child process of acked_messages_survive_sigkill; does nothing on its own"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let be = std::env::var(CHILD_BACKEND_ENV).unwrap_or_else(|_| "auto".into());
    let store = Store::open(&dir, options(&be)).expect("child: open store");
    let s = match store.stream(STREAM) {
        Ok(s) => s,
        Err(_) => store
            .create_stream(StreamConfig::new(STREAM).block_size(32 << 10))
            .expect("child: create stream"),
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "ready {} {}",
        store.io_backend(),
        s.recovery_report().torn_bytes
    )
    .unwrap();
    out.flush().unwrap();
    let mut i: u64 = 0;
    loop {
        i += 1;
        let next = s.state().last_seq + 1;
        let (first, last) = if i.is_multiple_of(4) {
            let n = 1 + (i / 4) % 5;
            let subjects: Vec<String> = (next..next + n).map(subject).collect();
            let hs: Vec<Vec<u8>> = (next..next + n).map(headers).collect();
            let ps: Vec<Vec<u8>> = (next..next + n).map(payload).collect();
            let msgs: Vec<NewMessage<'_>> = (0..n as usize)
                .map(|k| NewMessage::new(&subjects[k], &ps[k]).with_headers(&hs[k]))
                .collect();
            let b = s.append_batch(&msgs).expect("child: append_batch");
            (b.first_seq, b.last_seq)
        } else {
            let a = s
                .append(&subject(next), &headers(next), &payload(next))
                .expect("child: append");
            (a.seq, a.seq)
        };
        if first != next {
            eprintln!("child: expected sequence {next}, the stream assigned {first}");
            std::process::exit(3);
        }
        writeln!(out, "ack {first} {last}").unwrap();
        out.flush().unwrap();
    }
}

/// Outcome of one child run.
struct Round {
    acked: Vec<(u64, u64)>,
    backend: String,
}

fn run_child(dir: &Path, be: &str, delay: Duration) -> Round {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([CHILD_TEST, "--exact", "--nocapture", "--ignored"])
        .args(["--test-threads", "1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_BACKEND_ENV, be)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Wait until the child has opened (and recovered) the store, then let it run.
    let started = Instant::now();
    let backend: String;
    let mut early = Vec::new();
    loop {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("child not ready after 60 s: {early:?}");
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            // The test harness prints `test crash_child ... ` on the same line.
            Ok(line) if line.contains("ready ") => {
                let at = line.find("ready ").unwrap_or(0);
                backend = line[at + "ready ".len()..]
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                break;
            }
            Ok(line) => early.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    let err = err_reader.join().unwrap_or_default();
                    panic!("child exited before it was ready ({status}): {err}\n{early:?}");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait");
                let err = err_reader.join().unwrap_or_default();
                panic!("child closed stdout before it was ready ({status}): {err}");
            }
        }
    }
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait().expect("try_wait") {
        let err = err_reader.join().unwrap_or_default();
        panic!("child died on its own ({status}): {err}");
    }
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill failed");
    let status = child.wait().expect("wait");
    reader.join().expect("reader thread");
    let err = err_reader.join().unwrap_or_default();
    assert!(
        !status.success(),
        "child exited cleanly instead of being killed: {err}"
    );
    let mut acked = Vec::new();
    for line in rx.try_iter() {
        let Some(rest) = line.strip_prefix("ack ") else {
            continue;
        };
        let mut it = rest.split(' ').map(|x| x.parse::<u64>().expect("ack line"));
        let (a, b) = (it.next().expect("first"), it.next().expect("last"));
        acked.push((a, b));
    }
    if !err.trim().is_empty() {
        eprintln!("child stderr: {err}");
    }
    Round { acked, backend }
}

/// Reopens the store and checks it against everything acknowledged so far; returns
/// `last_seq`.
fn verify(dir: &Path, be: &str, acked: &[(u64, u64)], prev_last: u64, round: usize) -> (u64, u64) {
    let store = Store::open(dir, options(be)).expect("parent: reopen after SIGKILL");
    let s = store.stream(STREAM).expect("parent: stream");
    s.check_invariants()
        .unwrap_or_else(|e| panic!("[{be} round {round}] check_invariants: {e}"));
    let st = s.state();
    let rep = s.recovery_report().clone();
    assert!(
        rep.lost.is_empty(),
        "[{be} round {round}] recovery lost sequences after a SIGKILL: {rep:?}"
    );
    assert!(
        st.last_seq >= prev_last,
        "[{be} round {round}] seq-never-reused: last_seq went backwards from {prev_last} to {}",
        st.last_seq
    );
    let max_acked = acked.iter().map(|r| r.1).max().unwrap_or(0);
    assert!(
        st.last_seq >= max_acked,
        "[{be} round {round}] acked-survives-crash: last_seq {} but {max_acked} was acknowledged",
        st.last_seq
    );
    // Nothing is ever removed and sequences are consecutive, so every sequence up to
    // last_seq must hold its message: acknowledged ones by the durability contract, the
    // others (written but not yet acknowledged when the child died) because the log is a
    // prefix.
    for seq in 1..=st.last_seq {
        match s.load(seq) {
            Ok(m) => {
                assert_eq!(m.seq, seq);
                assert_eq!(
                    m.subject(),
                    subject(seq),
                    "[{be} round {round}] subject of {seq}"
                );
                assert_eq!(
                    m.headers(),
                    headers(seq).as_slice(),
                    "[{be} round {round}] headers of {seq}"
                );
                assert!(
                    m.payload() == payload(seq).as_slice(),
                    "[{be} round {round}] payload of {seq} is damaged"
                );
            }
            Err(LoadError::NotFound(_)) => {
                let acked_here = acked.iter().any(|&(a, b)| (a..=b).contains(&seq));
                panic!(
                    "[{be} round {round}] message {seq} is missing (acknowledged: {acked_here}); last_seq {}",
                    st.last_seq
                );
            }
            Err(e) => panic!("[{be} round {round}] load({seq}): {e:?}"),
        }
    }
    assert_eq!(
        (st.messages, st.first_seq),
        (st.last_seq, 1),
        "[{be} round {round}] counters"
    );
    store.close().expect("parent: close");
    (st.last_seq, rep.torn_bytes)
}

#[test]
fn acked_messages_survive_sigkill() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rng = Rng(seed);
    eprintln!("seed {seed:#x}");
    for be in ["pwrite", "auto"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut acked: Vec<(u64, u64)> = Vec::new();
        let mut last = 0;
        for round in 0..rounds() {
            let delay = Duration::from_millis(50 + rng.next() % 251);
            let r = run_child(dir.path(), be, delay);
            let n: u64 = r.acked.iter().map(|(a, b)| b - a + 1).sum();
            let prev = last;
            acked.extend_from_slice(&r.acked);
            let (l, torn) = verify(dir.path(), be, &acked, last, round);
            last = l;
            eprintln!(
                "[{be} round {round}] backend {} killed after {delay:?}: {} appends acknowledged ({n} messages), last_seq {prev} -> {last}, torn bytes {torn}",
                r.backend,
                r.acked.len(),
            );
        }
        assert!(
            acked.len() >= rounds(),
            "[{be}] too few acknowledged appends to mean anything: {}",
            acked.len()
        );
    }
}
