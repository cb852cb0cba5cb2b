//! Benchmark of snapshots and restores of a 10M-message file stream (128-byte payloads over
//! 1,000 subjects, `Durability::None`, built with `append_batch` of 1,000; a tenth of it in
//! smoke-test mode), in a temporary directory (or one under `TIDELOG_BENCH_DIR`).
//!
//! - `snapshot`: `Stream::snapshot` into a file on the same file system through an 8 MiB
//!   `BufWriter`, then `sync_all`.
//! - `restore`: `Store::restore` from that file (8 MiB `BufReader`) into a fresh store (its
//!   stream's `Durability::None`: written to the OS as it goes), and separately the `sync`
//!   that then makes it durable; a check that its `state_digest` equals the original's
//!   (untimed).
//!
//! - the raw limit, in the same round: writing as many bytes to a new file on the same file
//!   system in 8 MiB `write`s, then `sync_all` (what any snapshot to a file, or any restore
//!   into a file stream, must do at least), and `snapshot` into `io::sink()` (the CPU cost of
//!   producing a snapshot, as when it is sent over a socket).
//!
//! Three rounds each; printed: the median rates in MB/s of snapshot bytes (and messages/s),
//! and each one's ratio to the raw write in the same round. Target: each at least 500 MB/s.

mod common;

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::time::{Duration, Instant};

use common::{bench_dir, median, millions, quick, scaled};
use criterion::{criterion_group, criterion_main, Criterion};
use tidelog::{Durability, NewMessage, Store, StoreOptions, Stream, StreamConfig};

const MESSAGES: u64 = 10_000_000;
const SUBJECTS: usize = 1000;
const PAYLOAD: [u8; 128] = [5; 128];

fn build(store: &Store, n: u64) -> Stream {
    let mut cfg = StreamConfig::new("snap");
    cfg.durability = Durability::None;
    let s = store.create_stream(cfg).unwrap();
    let subjects: Vec<String> = (0..SUBJECTS).map(|i| format!("snap.s{i:04}")).collect();
    let mut done = 0u64;
    while done < n {
        let k = (n - done).min(1000) as usize;
        let batch: Vec<NewMessage<'_>> = (0..k)
            .map(|i| NewMessage::new(&subjects[(done as usize + i) % SUBJECTS], &PAYLOAD))
            .collect();
        s.append_batch(&batch).unwrap();
        done += k as u64;
    }
    s.sync().unwrap();
    s
}

fn bench(_c: &mut Criterion) {
    let n = scaled(MESSAGES / 10) * 10;
    let dir = bench_dir();
    let store = Store::open(dir.path().join("origin"), StoreOptions::default()).unwrap();
    let t = Instant::now();
    let s = build(&store, n);
    println!(
        "snapshot: built a file stream of {} messages in {:.1} s",
        millions(n),
        t.elapsed().as_secs_f64()
    );
    let digest = s.state_digest();
    let file = dir.path().join("snap.bin");
    let rounds = if quick() { 1 } else { 3 };
    let (mut snap_mb, mut rest_mb, mut durable_mb, mut bytes) =
        (Vec::new(), Vec::new(), Vec::new(), 0u64);
    let mut times: Vec<(Duration, Duration, Duration)> = Vec::new();
    let (mut raw_mb, mut sink_mb, mut snap_ratio, mut rest_ratio) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let t = Instant::now();
        let info = s.snapshot(&mut std::io::sink(), 1).unwrap();
        sink_mb.push(info.bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
        let raw = raw_write(&dir.path().join("raw.bin"), info.bytes);
        raw_mb.push(info.bytes as f64 / raw.as_secs_f64() / 1e6);
        let t = Instant::now();
        let mut w = BufWriter::with_capacity(8 << 20, File::create(&file).unwrap());
        let info = s.snapshot(&mut w, 1).unwrap();
        let f = w.into_inner().unwrap();
        f.sync_all().unwrap();
        let ts = t.elapsed();
        bytes = info.bytes;
        assert_eq!(info.messages, n);

        let target = Store::open(
            dir.path().join(format!("r{round}")),
            StoreOptions::default(),
        )
        .unwrap();
        let t = Instant::now();
        let mut r = BufReader::with_capacity(8 << 20, File::open(&file).unwrap());
        let (restored, _) = target.restore(&mut r).unwrap();
        let tr = t.elapsed();
        let t = Instant::now();
        restored.sync().unwrap();
        let tsync = t.elapsed();
        assert_eq!(restored.state_digest(), digest);
        drop(restored);
        target.close().unwrap();
        drop(target);
        std::fs::remove_dir_all(dir.path().join(format!("r{round}"))).unwrap();

        snap_mb.push(bytes as f64 / ts.as_secs_f64() / 1e6);
        rest_mb.push(bytes as f64 / tr.as_secs_f64() / 1e6);
        durable_mb.push(bytes as f64 / (tr + tsync).as_secs_f64() / 1e6);
        times.push((ts, tr, tsync));
        snap_ratio.push(raw.as_secs_f64() / ts.as_secs_f64());
        rest_ratio.push(raw.as_secs_f64() / (tr + tsync).as_secs_f64());
    }
    let (sm, rm) = (median(&snap_mb), median(&rest_mb));
    let msgs = |mb: f64| mb * 1e6 / (bytes as f64 / n as f64) / 1e6;
    println!(
        "snapshot/restore of {} messages ({:.0} MB of snapshot), {rounds} rounds:",
        millions(n),
        bytes as f64 / 1e6
    );
    println!(
        "  snapshot: median {sm:.0} MB/s ({:.2} M msgs/s), per round {:?} (target >= 500 MB/s: {})",
        msgs(sm),
        times.iter().map(|t| t.0).collect::<Vec<_>>(),
        if sm >= 500.0 { "met" } else { "NOT met" }
    );
    println!(
        "  restore:  median {rm:.0} MB/s ({:.2} M msgs/s), per round {:?} (target >= 500 MB/s: {})",
        msgs(rm),
        times.iter().map(|t| t.1).collect::<Vec<_>>(),
        if rm >= 500.0 { "met" } else { "NOT met" }
    );
    println!(
        "  restore then sync of the restored stream: median {:.0} MB/s (syncs {:?})",
        median(&durable_mb),
        times.iter().map(|t| t.2).collect::<Vec<_>>()
    );
    println!(
        "  raw limit: writing as many bytes to a file and syncing: median {:.0} MB/s; snapshot into io::sink (CPU alone): median {:.0} MB/s",
        median(&raw_mb),
        median(&sink_mb)
    );
    println!(
        "  ratio to the raw write in the same round: snapshot {:.2} (per round {:?}), restore + sync {:.2} (per round {:?})",
        median(&snap_ratio),
        snap_ratio.iter().map(|x| (x * 100.0).round() / 100.0).collect::<Vec<_>>(),
        median(&rest_ratio),
        rest_ratio.iter().map(|x| (x * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    std::io::stdout().flush().unwrap();
}

/// Time to write `n` bytes to a new file at `path` in 8 MiB writes and sync it (the file is
/// removed after).
fn raw_write(path: &std::path::Path, n: u64) -> Duration {
    let chunk = vec![0x5au8; 8 << 20];
    let t = Instant::now();
    let mut f = File::create(path).unwrap();
    let mut left = n as usize;
    while left > 0 {
        let k = left.min(chunk.len());
        f.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    f.sync_all().unwrap();
    let d = t.elapsed();
    drop(f);
    std::fs::remove_file(path).unwrap();
    d
}

criterion_group!(benches, bench);
criterion_main!(benches);
