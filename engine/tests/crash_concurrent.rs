//! `acked-survives-crash` with many producers: a child process appends durably from several
//! threads at once (single appends go through the combining leader, batches through the
//! group-commit condvar) and is killed with SIGKILL; every acknowledged message must be
//! present after reopen, under the sequence it was acknowledged with, with its own payload.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use tidelog::{IoBackendChoice, NewMessage, Store, StoreOptions, StreamConfig};

const CHILD_DIR_ENV: &str = "TIDELOG_CRASH_MT_CHILD";
const CHILD_BACKEND_ENV: &str = "TIDELOG_CRASH_MT_BACKEND";
const CHILD_TEST: &str = "crash_concurrent_child";
const STREAM: &str = "mt";
const THREADS: u32 = 8;
const ROUNDS: u64 = 3;

fn options(backend: &str) -> StoreOptions {
    let io_backend = match backend {
        "pwrite" => IoBackendChoice::Pwrite,
        _ => IoBackendChoice::Auto,
    };
    StoreOptions {
        io_backend,
        ..Default::default()
    }
}

/// The child: appends from `THREADS` threads forever, printing `ack <seq> <payload>` lines.
#[test]
#[ignore = "run by acked_messages_survive_sigkill_with_many_producers"]
fn crash_concurrent_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let be = std::env::var(CHILD_BACKEND_ENV).unwrap_or_default();
    let store = Store::open(&dir, options(&be)).expect("child: open");
    let s = match store.stream(STREAM) {
        Ok(s) => s,
        Err(_) => store
            .create_stream(StreamConfig::new(STREAM).block_size(64 << 10))
            .expect("child: create"),
    };
    let out = Mutex::new(std::io::stdout());
    {
        let mut o = out.lock().unwrap();
        writeln!(o, "ready").unwrap();
        o.flush().unwrap();
    }
    let round = std::process::id();
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let (s, out) = (s.clone(), &out);
            sc.spawn(move || {
                for i in 0u64.. {
                    let p = format!("{round}-{t}-{i}");
                    let acked: Vec<(u64, String)> = if i % 5 == 4 {
                        let ps: Vec<String> = (0..3).map(|k| format!("{p}-{k}")).collect();
                        let msgs: Vec<NewMessage<'_>> = ps
                            .iter()
                            .map(|q| NewMessage::new("mt.b", q.as_bytes()))
                            .collect();
                        let b = s.append_batch(&msgs).expect("child: batch");
                        (b.first_seq..=b.last_seq).zip(ps).collect()
                    } else {
                        vec![(
                            s.append("mt.s", b"", p.as_bytes())
                                .expect("child: append")
                                .seq,
                            p,
                        )]
                    };
                    let mut o = out.lock().unwrap();
                    for (seq, q) in acked {
                        writeln!(o, "ack {seq} {q}").unwrap();
                    }
                    o.flush().unwrap();
                }
            });
        }
    });
}

fn run_round(dir: &std::path::Path, backend: &str, kill_after: Duration) -> BTreeMap<u64, String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_BACKEND_ENV, backend)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = false;
    let mut acked = BTreeMap::new();
    let mut kill_at = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(line) if line.ends_with("ready") => {
                ready = true;
                kill_at = Some(Instant::now() + kill_after);
            }
            Ok(line) => {
                let mut parts = line.splitn(3, ' ');
                if let (Some("ack"), Some(seq), Some(p)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    let seq: u64 = seq.parse().unwrap();
                    assert!(
                        acked.insert(seq, p.to_string()).is_none(),
                        "sequence {seq} acknowledged twice"
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("child exited before it was killed")
            }
        }
        if kill_at.is_some_and(|k| Instant::now() >= k) {
            break;
        }
        assert!(Instant::now() < deadline, "child never became ready");
    }
    assert!(ready);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // Lines already in the pipe were acknowledged before the kill too.
    for line in rx.try_iter() {
        let mut parts = line.splitn(3, ' ');
        if let (Some("ack"), Some(seq), Some(p)) = (parts.next(), parts.next(), parts.next()) {
            acked.insert(seq.parse().unwrap(), p.to_string());
        }
    }
    reader.join().unwrap();
    acked
}

#[test]
fn acked_messages_survive_sigkill_with_many_producers() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    for backend in ["auto", "pwrite"] {
        let dir = tempfile::tempdir().unwrap();
        let mut all = BTreeMap::new();
        for round in 0..ROUNDS {
            let acked = run_round(dir.path(), backend, Duration::from_millis(80 + 70 * round));
            assert!(!acked.is_empty(), "round {round}: nothing acknowledged");
            eprintln!("{backend} round {round}: {} acknowledged", acked.len());
            let store = Store::open(dir.path(), options(backend)).unwrap();
            let s = store.stream(STREAM).unwrap();
            s.check_invariants().unwrap();
            assert!(
                s.recovery_report().lost.is_empty(),
                "{:?}",
                s.recovery_report()
            );
            all.extend(acked);
            for (seq, p) in &all {
                let m = s
                    .load(*seq)
                    .unwrap_or_else(|e| panic!("{backend}: acknowledged {seq} missing: {e}"));
                assert_eq!(m.payload(), p.as_bytes(), "{backend}: sequence {seq}");
            }
            assert!(s.state().last_seq >= *all.keys().last().unwrap());
        }
    }
}
