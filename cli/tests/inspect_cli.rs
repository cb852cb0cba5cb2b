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
