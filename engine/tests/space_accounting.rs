//! Space accounting against the real file system, and reclamation by the maintainer.
//!
//! - `budget_used_matches_du`: the store's `used` bytes agree with `du` of its directory within
//!   1% (after writes, removals, checkpoints; after `reclaim()`; after a reopen), and each
//!   stream's `disk_bytes()` with `du` of its own directory.
//! - `reclamation_after_deleting_90_percent`: after 90% of a stream's messages are removed, the
//!   maintainer alone (no `reclaim()`) brings its files down to at most 1.25x its live bytes
//!   within 30 s, both when the removals leave every block sparse and when they empty whole
//!   blocks (whose files must go).
//! - `state_shows_the_effective_bound`: `StreamState::max_bytes` and `bound_by` show the bound in
//!   force, the stream's own or the store's.

#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tidelog::{
    AckPolicy, BoundBy, ConsumerConfig, Durability, NewMessage, Store, StoreOptions, Stream,
    StreamConfig,
};

/// Bytes the files under `dir` occupy, as `du -s -B1` counts them (or, without `du`, the sum of
/// every file's and directory's allocated blocks).
fn du(dir: &Path) -> u64 {
    let out = Command::new("du").args(["-s", "-B1"]).arg(dir).output();
    if let Some(o) = out.ok().filter(|o| o.status.success()) {
        let text = String::from_utf8_lossy(&o.stdout);
        if let Some(n) = text.split_whitespace().next().and_then(|n| n.parse().ok()) {
            return n;
        }
    }
    common::allocated_bytes(dir)
}

/// A payload of `len` bytes, different for every `n`.
fn payload(n: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A size between 10 B and `max`, mostly small.
fn size(n: u64, max: usize) -> usize {
    let r = n.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
    match r % 10 {
        0..=5 => 10 + (r >> 8) as usize % 500,
        6..=8 => 500 + (r >> 8) as usize % 4000,
        _ => 4500 + (r >> 8) as usize % (max - 4500),
    }
}

/// `used` against `du`, and each stream's `disk_bytes()` against `du` of its directory; all
/// within 1%.
fn compare(store: &Store, streams: &[&Stream], label: &str) {
    let used = store.budget().used;
    let disk = du(store.dir());
    let diff = used.abs_diff(disk) as f64 / disk as f64 * 100.0;
    println!(
        "{label}: budget used {used} B, du {disk} B ({:+} B, {diff:.3}%)",
        used as i64 - disk as i64
    );
    assert!(
        used.abs_diff(disk) * 100 <= disk,
        "{label}: used {used} vs du {disk}: more than 1% apart"
    );
    for s in streams {
        let mine = s.disk_bytes();
        let theirs = du(&store.dir().join("streams").join(s.name()));
        println!("  {}: disk_bytes {mine} B, du {theirs} B", s.name());
        assert!(
            mine.abs_diff(theirs) * 100 <= theirs,
            "{label}: {}: disk_bytes {mine} vs du {theirs}: more than 1% apart",
            s.name()
        );
    }
}

#[test]
fn budget_used_matches_du() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        manual_maintenance: true,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    // Different block sizes and write paths; one stream has a consumer.
    let small = store
        .create_stream(
            StreamConfig::new("small")
                .block_size(1 << 20)
                .durability(Durability::None),
        )
        .unwrap();
    let mid = store
        .create_stream(
            StreamConfig::new("mid")
                .block_size(4 << 20)
                .durability(Durability::Interval(Duration::from_millis(20))),
        )
        .unwrap();
    let big = store
        .create_stream(StreamConfig::new("big").durability(Durability::Always))
        .unwrap();
    // Many small messages, one in three removed: its checkpoints carry a large delete set
    // (a few bytes per deleted range).
    let sparse = store
        .create_stream(
            StreamConfig::new("sparse")
                .block_size(2 << 20)
                .durability(Durability::None),
        )
        .unwrap();
    let c = mid
        .create_consumer(ConsumerConfig::new("reader").ack(AckPolicy::Explicit))
        .unwrap();

    let t0 = Instant::now();
    let mut total = 0usize;
    let mut n = 0u64;
    let subjects = ["a.x", "a.y", "b.z", "c"];
    for (s, target, max) in [
        (&small, 8 << 20, 6000),
        (&mid, 6 << 20, 8000),
        (&big, 5 << 20, 16000),
        (&sparse, 1400 << 10, 0),
    ] {
        let mut bytes = 0;
        while bytes < target {
            // Durable appends go in batches: one fsync per batch.
            let batch: Vec<Vec<u8>> = (0..64)
                .map(|_| {
                    n += 1;
                    let len = match max {
                        0 => 10 + (n % 40) as usize,
                        max => size(n, max),
                    };
                    payload(n, len)
                })
                .collect();
            let msgs: Vec<NewMessage<'_>> = batch
                .iter()
                .enumerate()
                .map(|(i, p)| NewMessage::new(subjects[i % subjects.len()], p))
                .collect();
            s.append_batch(&msgs).unwrap();
            bytes += batch.iter().map(Vec::len).sum::<usize>();
        }
        total += bytes;
    }
    println!(
        "appended {:.1} MB in {:.2?}",
        total as f64 / 1e6,
        t0.elapsed()
    );
    let t0 = Instant::now();
    // Removals of several kinds: every 7th message, a compacted prefix, a contiguous range.
    let st = small.state();
    for q in (st.first_seq..=st.last_seq).step_by(7) {
        small.remove(q).unwrap();
    }
    let st = mid.state();
    mid.compact(st.first_seq + (st.last_seq - st.first_seq) * 3 / 10)
        .unwrap();
    // (Durable removals: one fsync each.)
    let st = big.state();
    let from = st.first_seq + (st.last_seq - st.first_seq) / 4;
    for q in from..from + 200 {
        big.remove(q).unwrap();
    }
    let st = sparse.state();
    for q in (st.first_seq..=st.last_seq).step_by(3) {
        sparse.remove(q).unwrap();
    }
    for d in c.fetch(500, 0).unwrap() {
        c.ack(d.message.seq).unwrap();
    }
    println!("removals in {:.2?}", t0.elapsed());
    let all = [&small, &mid, &big, &sparse];
    for s in all {
        s.sync().unwrap();
        s.checkpoint().unwrap();
    }
    c.save_now().unwrap();
    compare(&store, &all, "after writes, removals and checkpoints");

    for s in all {
        let n = s.reclaim().unwrap();
        println!("{}: reclaim rewrote {n} blocks", s.name());
    }
    compare(&store, &all, "after reclaim");

    drop(c);
    drop((small, mid, big, sparse));
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), opts).unwrap();
    let names = ["small", "mid", "big", "sparse"].map(|n| store.stream(n).unwrap());
    compare(&store, &names.iter().collect::<Vec<_>>(), "after reopen");
}

/// Fills a stream with about `target` bytes of ~1 KiB messages and stops right after the
/// active block rolls (so the active block, which compaction never rewrites, holds almost
/// nothing); returns the stream's first and last sequence and the payload bytes appended.
fn load(s: &Stream, target: usize) -> (u64, u64, u64) {
    let mut bytes = 0usize;
    let mut n = 0u64;
    let mut first = None;
    loop {
        let batch: Vec<Vec<u8>> = (0..16)
            .map(|_| {
                n += 1;
                payload(n, 900 + (n * 7919 % 250) as usize)
            })
            .collect();
        let msgs: Vec<NewMessage<'_>> = batch.iter().map(|p| NewMessage::new("load", p)).collect();
        let blocks = s.state().blocks;
        let b = s.append_batch(&msgs).unwrap();
        first.get_or_insert(b.first_seq);
        bytes += batch.iter().map(Vec::len).sum::<usize>();
        if bytes >= target && s.state().blocks > blocks {
            return (first.unwrap_or(1), b.last_seq, bytes as u64);
        }
    }
}

/// Polls every 100 ms (the maintainer runs; nobody calls `reclaim()`) until the stream's
/// files hold at most 1.25x its live bytes; returns the time it took.
fn wait_reclaimed(s: &Stream, label: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        let (disk, live) = (s.disk_bytes(), s.state().bytes);
        if disk * 4 <= live * 5 {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{label}: after 30 s the stream still occupies {disk} B for {live} live bytes \
             ({:.2}x; compacted {} B; blocks {:?})",
            disk as f64 / live as f64,
            s.compacted_bytes(),
            s.block_counts()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn blk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".blk"))
        .count()
}

#[test]
fn reclamation_after_deleting_90_percent() {
    for contiguous in [false, true] {
        let label = if contiguous {
            "contiguous 90% removed (whole blocks empty)"
        } else {
            "every 10th message kept (every block sparse)"
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let s = store
            .create_stream(
                StreamConfig::new("s")
                    .block_size(1 << 20)
                    .durability(Durability::None),
            )
            .unwrap();
        let t0 = Instant::now();
        let (first, last, appended) = load(&s, 40 << 20);
        let count = last - first + 1;
        let loaded_blocks = s.state().blocks;
        let t_load = t0.elapsed();
        let t1 = Instant::now();
        if contiguous {
            // Keep the first and the last 5%.
            let keep = count / 20;
            for q in first + keep..=last - keep {
                s.remove(q).unwrap();
            }
        } else {
            for q in first..=last {
                if (q - first) % 10 != 0 {
                    s.remove(q).unwrap();
                }
            }
        }
        s.sync().unwrap();
        let before = (s.disk_bytes(), s.state().bytes, s.state().blocks);
        let took = wait_reclaimed(&s, label);
        let st = s.state();
        let disk = s.disk_bytes();
        let compacted = s.compacted_bytes();
        let files = blk_files(&dir.path().join("streams").join("s"));
        println!(
            "{label}: appended {appended} B in {count} messages and {loaded_blocks} blocks \
             ({t_load:.2?}), removals {:.2?}; before: {} B on disk for {} live B in {} blocks; \
             reclaimed in {took:.2?} \
             to {disk} B for {} live B ({:.3}x) in {} blocks ({files} block files); compacted \
             {compacted} B = {:.3} of the bytes appended, {:.2}x the live bytes",
            t1.elapsed(),
            before.0,
            before.1,
            before.2,
            st.bytes,
            disk as f64 / st.bytes as f64,
            st.blocks,
            compacted as f64 / appended as f64,
            compacted as f64 / st.bytes as f64,
        );
        // Compaction rewrites what is live once: at most twice the live bytes in all.
        assert!(
            compacted <= 2 * st.bytes,
            "{label}: compaction wrote {compacted} B for {} live B",
            st.bytes
        );
        // Blocks with no live message leave no file behind (retired blocks' files go after
        // two checkpoints; nothing else is left on disk).
        let (blocks, retired) = s.block_counts();
        assert_eq!(
            files,
            blocks + retired,
            "{label}: {files} block files for {blocks} blocks and {retired} retired"
        );
        let t2 = Instant::now();
        while s.block_counts().1 > 0 {
            assert!(
                t2.elapsed() < Duration::from_secs(30),
                "{label}: retired blocks never deleted: {:?}",
                s.block_counts()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let files = blk_files(&dir.path().join("streams").join("s"));
        assert_eq!(
            files,
            s.block_counts().0,
            "{label}: block files left behind"
        );
        if contiguous {
            // Only the blocks of the first and the last 5% (and the new active block) remain.
            assert!(
                files <= loaded_blocks / 10 + 4,
                "{label}: {files} block files of {loaded_blocks} remain"
            );
        }
        s.check_invariants().unwrap();
        drop(s);
        store.close().unwrap();
    }
}

#[test]
fn state_shows_the_effective_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            manual_maintenance: true,
            ..StoreOptions::default()
        }
        .budget_bytes(64 << 20, 8 << 20),
    )
    .unwrap();
    let limit = store.budget().append_limit();
    assert_eq!(limit, 56 << 20);
    let free = store.create_stream(StreamConfig::new("free")).unwrap();
    let st = free.state();
    assert_eq!(st.bound_by, BoundBy::Store);
    assert_eq!(st.max_bytes, limit);
    let own = store
        .create_stream(StreamConfig::new("own").max_bytes(1 << 20))
        .unwrap();
    let st = own.state();
    assert_eq!(st.bound_by, BoundBy::Stream);
    assert_eq!(st.max_bytes, 1 << 20);
    // A limit of its own above what the store leaves: the store's budget is the bound.
    let loose = store
        .create_stream(StreamConfig::new("loose").max_bytes(1 << 40))
        .unwrap();
    let st = loose.state();
    assert_eq!(st.bound_by, BoundBy::Store);
    assert_eq!(st.max_bytes, limit);
    // The default budget: a share of the file system, and still a bound.
    drop((free, own, loose));
    store.close().unwrap();
    drop(store);
    let store = Store::open(
        dir.path(),
        StoreOptions {
            manual_maintenance: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let b = store.budget();
    let st = store.stream("free").unwrap().state();
    assert_eq!(
        (st.bound_by, st.max_bytes),
        (BoundBy::Store, b.append_limit())
    );
    let st = store.stream("own").unwrap().state();
    assert_eq!((st.bound_by, st.max_bytes), (BoundBy::Stream, 1 << 20));
    println!("default budget: {b:?}, append limit {}", b.append_limit());
}
