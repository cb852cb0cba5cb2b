//! Runs the built `tidelog` binary's inspection commands on real stores: `info`, `dump`,
//! `verify` (sound, damaged, `--repair`) and their errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tidelog::{AckPolicy, ConsumerConfig, NewMessage, Store, StoreOptions, StreamConfig, Ttl};

const N: u64 = 400;

fn tidelog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .output()
        .expect("run tidelog")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(stdout(o).trim()).expect("stdout is one JSON object")
}

fn payload(seq: u64) -> String {
    format!("payload-{seq}-{}", "x".repeat((seq % 50) as usize))
}

/// A store with stream `orders` (N messages on 5 subjects in 4 KiB blocks, some with headers
/// or a TTL, one consumer that acked 10) and an empty stream `empty`.
fn build() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let s = store
        .create_stream(
            StreamConfig::new("orders")
                .block_size(4096)
                .allow_msg_ttl(true),
        )
        .unwrap();
    for seq in 1..=N {
        let subject = format!("orders.{}", seq % 5);
        let body = payload(seq);
        let mut m = NewMessage::new(&subject, body.as_bytes());
        if seq % 7 == 0 {
            m = m.with_headers(b"NATS/1.0\r\nk: v\r\n\r\n");
        }
        if seq % 11 == 0 {
            m = m.with_ttl(Ttl::Secs(3600));
        }
        assert_eq!(s.append_msg(&m).unwrap().seq, seq);
    }
    let c = s
        .create_consumer(ConsumerConfig::new("worker").ack(AckPolicy::Explicit))
        .unwrap();
    for d in c.fetch(10, usize::MAX).unwrap() {
        c.ack(d.message.seq).unwrap();
    }
    store.create_stream(StreamConfig::new("empty")).unwrap();
    store.close().unwrap();
    (tmp, dir)
}

fn blocks(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("streams/orders"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "blk"))
        .collect();
    v.sort();
    v
}

/// Flips a byte inside the payload of the `i`-th record of block file `f`; returns its seq.
fn damage(f: &Path, i: usize) -> u64 {
    let mut b = std::fs::read(f).unwrap();
    let mut off = 64;
    for _ in 0..i {
        off += u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
    }
    let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
    let seq = u64::from_le_bytes(b[off + 8..off + 16].try_into().unwrap());
    b[off + len - 12] ^= 0x5a;
    std::fs::write(f, b).unwrap();
    seq
}

#[test]
fn info_shows_streams_subjects_consumers_and_budget() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    let o = tidelog(&["info", d, "--json", "--top", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert!(["io_uring", "pwrite"].contains(&v["io_backend"].as_str().unwrap()));
    assert!(v["budget"]["used"].as_u64().unwrap() > 0);
    assert!(v["budget"]["max_bytes"].as_u64().unwrap() > v["budget"]["used"].as_u64().unwrap());
    let streams = v["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    let o0 = &streams[1];
    assert_eq!(o0["name"], "orders");
    assert_eq!(o0["state"]["messages"], N);
    assert_eq!(o0["config"]["block_size"], 4096);
    assert_eq!(o0["subjects"], 5);
    let top = o0["top_subjects"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["messages"], N / 5);
    let c = &o0["consumers"][0];
    assert_eq!(c["name"], "worker");
    assert_eq!(c["state"]["ack_floor"]["stream_seq"], 10);

    let o = tidelog(&["info", d, "orders"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "stream orders",
        "messages     400",
        "orders.0",
        "worker",
        "io back end",
        "budget",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains("stream empty"));
}

#[test]
fn dump_prints_messages_with_headers_from_a_sequence_and_filter() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    let o = tidelog(&[
        "dump", d, "orders", "--from", "100", "--filter", "orders.2", "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<u64> = (100..=N).filter(|q| q % 5 == 2).collect();
    assert_eq!(lines.len(), want.len());
    for (m, q) in lines.iter().zip(&want) {
        assert_eq!(m["seq"], *q);
        assert_eq!(m["subject"], "orders.2");
        assert_eq!(m["payload"], payload(*q));
        if q % 7 == 0 {
            assert_eq!(m["headers"], "NATS/1.0\r\nk: v\r\n\r\n");
        }
        if q % 11 == 0 {
            assert_eq!(m["ttl"], "3600s");
        }
    }

    let o = tidelog(&["dump", d, "orders", "--limit", "7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.lines().filter(|l| !l.starts_with("  ")).count(), 7);
    assert!(
        text.contains("7 ") && text.contains("headers: NATS/1.0\\r\\nk: v"),
        "{text}"
    );
}

#[test]
fn verify_finds_exact_damage_and_repair_keeps_every_good_record() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    let o = tidelog(&["verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("store is sound"));

    let files = blocks(&dir);
    assert!(files.len() > 3);
    let bad = [damage(&files[0], 2), damage(&files[2], 4)];
    let o = tidelog(&["verify", d, "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["sound"], false);
    let orders = &v["streams"][1];
    assert_eq!(
        orders["damaged"],
        serde_json::json!([[bad[0], bad[0]], [bad[1], bad[1]]])
    );
    let o = tidelog(&["verify", d]);
    assert_eq!(o.status.code(), Some(3));
    let text = stdout(&o);
    assert!(
        text.contains(&format!("damaged messages: {}, {}", bad[0], bad[1])),
        "{text}"
    );

    let o = tidelog(&["verify", d, "orders", "--repair"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("repaired: removed"), "{}", stdout(&o));
    let o = tidelog(&["verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    let o = tidelog(&["dump", d, "orders", "--json"]);
    let seqs: Vec<u64> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let want: Vec<u64> = (1..=N).filter(|q| !bad.contains(q)).collect();
    assert_eq!(seqs, want);
}

#[test]
fn dump_reports_a_damaged_message_in_place() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    let bad = damage(&blocks(&dir)[1], 0);
    let o = tidelog(&["dump", d, "orders", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, N);
    let hit = lines.iter().find(|m| m["seq"] == bad).unwrap();
    assert_eq!(hit["damaged"], true);
}

#[test]
fn bad_arguments_and_unreadable_stores_are_one_line() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    let missing = dir.join("nope");
    let m = missing.to_str().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["info", m], 1, "is not a tidelog store"),
        (&["verify", m], 1, "is not a tidelog store"),
        (&["dump", d, "nostream"], 1, "streams: empty, orders"),
        (&["info", d, "nostream"], 1, "does not exist"),
        (&["dump", d, "orders", "--filter", "a..b"], 2, "--filter"),
        (&["dump", d, "orders", "--from", "0"], 2, "--from"),
        (&["dump", d], 2, "STREAM"),
        (&["info"], 2, "DIR"),
        (&["info", d, "--top", "x"], 2, "--top"),
    ];
    for (args, code, want) in cases {
        let o = tidelog(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!missing.exists(), "inspecting created a store");
    }
    // A store in use by another process.
    let _held = Store::open(&dir, StoreOptions::default()).unwrap();
    let o = tidelog(&["info", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("open in another process"),
        "{}",
        stderr(&o)
    );
}

/// Runs `tidelog` with stdout a pipe nobody reads (`| head` that already exited).
fn tidelog_to_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .stdout(writer)
        .output()
        .expect("run tidelog")
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_usual_status() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    for args in [
        &["info", d][..],
        &["info", d, "--json"],
        &["verify", d],
        &["verify", d, "--json"],
        &["dump", d, "orders"],
        &["dump", d, "orders", "--json"],
    ] {
        let o = tidelog_to_closed_pipe(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(o.stderr.is_empty(), "{args:?}: {}", stderr(&o));
    }
    damage(&blocks(&dir)[1], 0);
    let o = tidelog_to_closed_pipe(&["verify", d]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "the verdict survives: {}",
        stderr(&o)
    );
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn an_argument_that_is_not_utf8_is_a_usage_error() {
    use std::os::unix::ffi::OsStrExt;
    for args in [&[&b"\xff"[..]][..], &[b"dump", b"dir", b"\xff"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_tidelog"))
            .args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
            .output()
            .expect("run tidelog");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// What recovery found at an open must still be there for the next command: `info` and
/// `dump` write no checkpoint that would turn a lost message into a plain deletion.
#[test]
fn inspection_leaves_what_recovery_found_for_verify_and_repair() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    // The last block is replayed at open, so recovery (not a checksum read) meets the damage.
    let last = blocks(&dir).pop().unwrap();
    let bad = damage(&last, 1);
    for args in [&["info", d][..], &["dump", d, "orders"], &["verify", d]] {
        let o = tidelog(args);
        assert_ne!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    }
    let o = tidelog(&["verify", d, "orders", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(
        v["streams"][0]["recovery"]["lost"],
        serde_json::json!([[bad, bad]])
    );
    let o = tidelog(&["verify", d, "--repair"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("lost at open: {bad}")),
        "{}",
        stdout(&o)
    );
    let o = tidelog(&["verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = tidelog(&["dump", d, "orders", "--json"]);
    let seqs: Vec<u64> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let want: Vec<u64> = (1..=N).filter(|&q| q != bad).collect();
    assert_eq!(seqs, want);
}

/// Every file below `dir` with its bytes (the LOCK file's name only).
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn inspection_changes_no_byte_of_the_store() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    // A crash-like state: damage that recovery meets, and a lease and checkpoint behind.
    let last = blocks(&dir).pop().unwrap();
    damage(&last, 1);
    let before = files(&dir);
    for args in [
        &["info", d][..],
        &["info", d, "orders", "--json"],
        &["dump", d, "orders"],
        &["dump", d, "orders", "--from", "100", "--json"],
        &["verify", d],
        &["verify", d, "orders", "--json"],
    ] {
        let o = tidelog(args);
        assert_ne!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(files(&dir) == before, "{args:?} changed the store");
    }
    // A repair is the one command that writes.
    let o = tidelog(&["verify", d, "--repair"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(files(&dir) != before);
}

#[test]
fn an_unreadable_checkpoint_is_damage_that_repair_replaces() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    let ck = dir.join("streams/orders/checkpoint");
    let mut b = std::fs::read(&ck).unwrap();
    b[40] ^= 0xff;
    std::fs::write(&ck, b).unwrap();
    for _ in 0..2 {
        let o = tidelog(&["verify", d]);
        assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
        assert!(
            stdout(&o).contains("checkpoint unreadable"),
            "{}",
            stdout(&o)
        );
    }
    let o = tidelog(&["verify", d, "--repair"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("wrote a new checkpoint"),
        "{}",
        stdout(&o)
    );
    let o = tidelog(&["verify", d, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(json(&o)["streams"][1]["recovery"]["checkpoint_error"].is_null());
}

#[test]
fn a_named_stream_with_damaged_metadata_is_damaged_not_missing() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    let cfg = dir.join("streams/orders/config");
    let mut b = std::fs::read(&cfg).unwrap();
    b[30] ^= 0xff;
    std::fs::write(&cfg, b).unwrap();
    let o = tidelog(&["verify", d, "orders", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["damaged_streams"][0]["name"], "orders");
    assert_eq!(v["streams"], serde_json::json!([]));
    for args in [&["info", d, "orders"][..], &["dump", d, "orders"]] {
        let o = tidelog(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("stream orders is damaged"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn text_output_escapes_what_a_terminal_would_act_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let s = store.create_stream(StreamConfig::new("odd")).unwrap();
    let subject = "odd.\u{9b}2J.\u{202e}txt";
    s.append_msg(&NewMessage::new(subject, b"\xff\x00").with_headers(b"\x1b[31m"))
        .unwrap();
    let gone = store.create_stream(StreamConfig::new("gone")).unwrap();
    for _ in 0..3 {
        gone.append("gone.x", b"", b"x").unwrap();
    }
    gone.purge().unwrap();
    store.close().unwrap();
    drop(store);
    let d = dir.to_str().unwrap();
    let o = tidelog(&["dump", d, "odd"]);
    let text = stdout(&o);
    assert!(
        text.contains("odd.\\u{9b}2J.\\u{202e}txt") && text.contains("headers: \\u{1b}[31m"),
        "{text}"
    );
    assert!(
        !text.contains('\u{9b}') && !text.contains('\u{1b}'),
        "{text}"
    );
    let o = tidelog(&["info", d]);
    let text = stdout(&o);
    assert!(
        text.contains("\\u{202e}") && !text.contains('\u{202e}'),
        "{text}"
    );
    // A stream emptied by a purge: no backwards `4..3` range.
    let o = tidelog(&["info", d, "gone"]);
    assert!(
        stdout(&o).contains("messages     0 (last sequence 3), 1 block\n"),
        "{}",
        stdout(&o)
    );
    let o = tidelog(&["dump", d, "odd", "--json"]);
    let m: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(m["subject"], subject);
    assert_eq!(m["payload"], serde_json::json!({"hex": "ff00"}));
}

#[test]
fn a_damaged_block_header_is_damage_that_repair_rewrites() {
    let (_t, dir) = build();
    let d = dir.to_str().unwrap();
    let f = &blocks(&dir)[1];
    let mut b = std::fs::read(f).unwrap();
    b[30] ^= 0x01;
    std::fs::write(f, b).unwrap();
    let o = tidelog(&["verify", d, "orders"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("block header or trailer damaged: 2"),
        "{}",
        stdout(&o)
    );
    let o = tidelog(&["verify", d, "orders", "--repair"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = tidelog(&["verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = tidelog(&["dump", d, "orders", "--json"]);
    assert_eq!(stdout(&o).lines().count() as u64, N);
}

#[test]
fn an_unreadable_lease_is_damage_that_repair_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let s = store
        .create_stream(StreamConfig::new("fast").durability(tidelog::Durability::None))
        .unwrap();
    for i in 0..100u64 {
        s.append("f.x", b"", &i.to_le_bytes()).unwrap();
    }
    drop(s);
    store.close().unwrap();
    drop(store);
    let lease = dir.join("streams/fast/lease");
    let mut b = std::fs::read(&lease).unwrap();
    b[20] ^= 0x40;
    std::fs::write(&lease, b).unwrap();
    let d = dir.to_str().unwrap();
    let o = tidelog(&["verify", d]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("lease unreadable"), "{}", stdout(&o));
    let o = tidelog(&["verify", d, "--repair"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = tidelog(&["verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
