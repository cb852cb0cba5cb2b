use std::sync::Arc;

use tidelog::io::MemVfs;
use tidelog::{Durability, Storage, Store, StoreOptions, StreamConfig};

fn opts() -> StoreOptions {
    StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    }
}

#[test]
fn append_load_remove_reopen_memvfs() {
    let vfs = MemVfs::new();
    let store = Store::open_with_vfs("/db", Arc::new(vfs.clone()), opts()).unwrap();
    let s = store
        .create_stream(StreamConfig::new("s").block_size(4096))
        .unwrap();
    for i in 0..200u32 {
        let a = s
            .append(&format!("a.{}", i % 7), b"", &i.to_le_bytes())
            .unwrap();
        assert_eq!(a.seq, i as u64 + 1);
    }
    s.remove(5).unwrap();
    s.erase(6).unwrap();
    assert!(s.load(5).is_err());
    assert_eq!(s.load(7).unwrap().payload(), &6u32.to_le_bytes());
    s.compact(10).unwrap();
    s.truncate(150).unwrap();
    s.check_invariants().unwrap();
    let st = s.state();
    assert_eq!((st.first_seq, st.last_seq, st.messages), (10, 150, 141));
    store.close().unwrap();
    drop(store);
    let store = Store::open_with_vfs("/db", Arc::new(vfs.clone()), opts()).unwrap();
    let s2 = store.stream("s").unwrap();
    assert_eq!(s2.state(), st);
    s2.check_invariants().unwrap();
    let a = s2.append("a.b", b"h", b"p").unwrap();
    assert_eq!(a.seq, 151);
    drop(store);
    // Crash without close.
    let crashed = vfs.after_crash(tidelog::io::CrashKind::PowerLoss);
    let store = Store::open_with_vfs("/db", Arc::new(crashed), opts()).unwrap();
    let s3 = store.stream("s").unwrap();
    assert_eq!(s3.state().last_seq, 151);
    s3.check_invariants().unwrap();
}

#[test]
fn file_store_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    eprintln!("backend {}", store.io_backend());
    let s = store
        .create_stream(
            StreamConfig::new("s")
                .durability(Durability::None)
                .block_size(64 << 10),
        )
        .unwrap();
    for i in 0..10_000u32 {
        s.append("x.y", b"", &i.to_le_bytes()).unwrap();
    }
    assert!(Store::open(dir.path(), StoreOptions::default()).is_err());
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let s = store.stream("s").unwrap();
    assert_eq!(s.state().messages, 10_000);
    assert_eq!(s.load(9_999).unwrap().payload(), &9_998u32.to_le_bytes());
    assert!(s.recovery_report().used_checkpoint);
    assert_eq!(s.recovery_report().replayed_records, 0);
}

/// A memory stream with 4 KiB blocks, in a store in a temporary directory.
fn memory_stream_with_small_blocks() -> (tempfile::TempDir, Store, tidelog::Stream) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let cfg = StreamConfig::new("m")
        .storage(Storage::Memory)
        .block_size(4096);
    let s = store.create_stream(cfg).unwrap();
    (dir, store, s)
}

#[test]
fn memory_stream() {
    let (_dir, _store, s) = memory_stream_with_small_blocks();
    for i in 0..1000u32 {
        s.append("x", b"", &i.to_le_bytes()).unwrap();
    }
    s.erase(3).unwrap();
    assert_eq!(s.state().messages, 999);
    s.check_invariants().unwrap();
}

#[test]
fn reclaim_drops_and_compacts_blocks() {
    let vfs = MemVfs::new();
    let store = Store::open_with_vfs("/db", Arc::new(vfs.clone()), opts()).unwrap();
    let s = store
        .create_stream(
            StreamConfig::new("s")
                .block_size(8192)
                .durability(Durability::None),
        )
        .unwrap();
    let payload = [9u8; 100];
    for _ in 0..2000 {
        s.append("a.b", b"", &payload).unwrap();
    }
    s.sync().unwrap();
    let before = vfs.total_bytes();
    // Keep every tenth message: blocks become sparse but not empty.
    for seq in 1..=2000u64 {
        if seq % 10 != 0 {
            s.remove(seq).unwrap();
        }
    }
    s.remove(2000).unwrap();
    for seq in 1001..2000u64 {
        let _ = s.remove(seq);
    }
    let rewritten = s.reclaim().unwrap();
    assert!(rewritten > 0);
    s.reclaim().unwrap();
    let after = vfs.total_bytes();
    let live = s.state().bytes;
    assert!(after < before / 4, "before {before} after {after}");
    assert!(after < live * 3 + 64 * 1024, "after {after} live {live}");
    s.check_invariants().unwrap();
    for seq in (10..1000u64).step_by(10) {
        assert_eq!(s.load(seq).unwrap().payload(), &payload);
    }
    // A crash right after compaction recovers the same state.
    let st = s.state();
    let crashed = vfs.after_crash(tidelog::io::CrashKind::PowerLoss);
    drop(store);
    let store = Store::open_with_vfs("/db", Arc::new(crashed), opts()).unwrap();
    let s = store.stream("s").unwrap();
    assert_eq!(s.state().messages, st.messages);
    s.check_invariants().unwrap();
}

#[test]
fn memory_stream_frees_removed_blocks() {
    let (_dir, _store, s) = memory_stream_with_small_blocks();
    for round in 0..50u64 {
        for i in 0..100u32 {
            s.append("x", b"", &i.to_le_bytes()).unwrap();
        }
        s.purge().unwrap();
        let (live, retired) = s.block_counts();
        assert!(
            live <= 2 && retired == 0,
            "round {round}: {live} live, {retired} retired blocks"
        );
    }
    s.check_invariants().unwrap();
}

#[test]
fn store_opens_with_a_damaged_stream_config() {
    let vfs = MemVfs::new();
    let store = Store::open_with_vfs("/db", Arc::new(vfs.clone()), opts()).unwrap();
    let good = store.create_stream(StreamConfig::new("good")).unwrap();
    good.append("a", b"", b"x").unwrap();
    store.create_stream(StreamConfig::new("bad")).unwrap();
    store.close().unwrap();
    drop((good, store));
    vfs.corrupt(std::path::Path::new("/db/streams/bad/config"), 30, 0xff)
        .unwrap();
    let store = Store::open_with_vfs("/db", Arc::new(vfs.clone()), opts()).unwrap();
    assert_eq!(store.stream_names(), vec!["good".to_string()]);
    let damaged = store.damaged_streams();
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].name, "bad");
    assert!(store.create_stream(StreamConfig::new("bad")).is_err());
    assert_eq!(store.stream("good").unwrap().state().messages, 1);
    store.delete_stream("bad").unwrap();
    assert!(store.damaged_streams().is_empty());
    store.create_stream(StreamConfig::new("bad")).unwrap();
}

/// A failed fsync poisons that stream for writes only: the failed append and every later one
/// get typed errors, reads keep working, and other streams are not affected.
#[test]
fn failed_fsync_poisons_only_that_stream() {
    use tidelog::io::{FaultPlan, FaultyVfs};
    use tidelog::{AppendError, DurabilityError};
    let mem = MemVfs::new();
    let fv = FaultyVfs::new(Arc::new(mem.clone()), FaultPlan::new());
    let store = Store::open_with_vfs("/db", Arc::new(fv.clone()), opts()).unwrap();
    let a = store.create_stream(StreamConfig::new("a")).unwrap();
    let b = store.create_stream(StreamConfig::new("b")).unwrap();
    a.append("x", b"", b"1").unwrap();
    *fv.plan().lock() = FaultPlan::fail_syncs_from(0);
    let err = a.append("x", b"", b"2").unwrap_err();
    assert!(
        matches!(err, AppendError::Durability(DurabilityError::Io(_))),
        "{err:?}"
    );
    assert!(a.is_poisoned());
    let again = a.append("x", b"", b"3").unwrap_err();
    assert!(
        matches!(again, AppendError::Durability(DurabilityError::Poisoned(_))),
        "{again:?}"
    );
    assert!(a.remove(1).is_err());
    assert_eq!(a.load(1).unwrap().payload(), b"1");
    *fv.plan().lock() = FaultPlan::new();
    b.append("y", b"", b"still fine").unwrap();
    assert!(!b.is_poisoned());
    // Reopening recovers exactly what is on disk, and the stream accepts writes again.
    drop((a, b, store));
    let store = Store::open_with_vfs(
        "/db",
        Arc::new(mem.after_crash(tidelog::io::CrashKind::Process)),
        opts(),
    )
    .unwrap();
    let a = store.stream("a").unwrap();
    assert!(!a.is_poisoned());
    let next = a.append("x", b"", b"4").unwrap();
    assert!(next.seq >= 2);
}

/// ENOSPC is `StorageFull` for the failed append; once space is back, writes resume.
#[test]
fn full_disk_is_storage_full() {
    use tidelog::io::{Fault, FaultPlan, FaultyVfs};
    use tidelog::{AppendError, DurabilityError};
    let mem = MemVfs::new();
    let fv = FaultyVfs::new(Arc::new(mem.clone()), FaultPlan::new());
    let store = Store::open_with_vfs("/db", Arc::new(fv.clone()), opts()).unwrap();
    let a = store.create_stream(StreamConfig::new("a")).unwrap();
    a.append("x", b"", b"1").unwrap();
    *fv.plan().lock() = FaultPlan::at(0, Fault::NoSpace);
    let err = a.append("x", b"", b"2").unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::Durability(DurabilityError::StorageFull(_))
        ),
        "{err:?}"
    );
    // The one-shot fault is over (space was freed): the next write heals the stream in
    // place, with no reopen, and sequence 2, handed out to the failed append, is not reused.
    let later = a.append("x", b"", b"3").unwrap();
    assert!(later.seq > 2, "{later:?}");
    assert!(a.load(2).is_err());
    assert!(!a.is_poisoned());
    a.remove(later.seq).unwrap();
    assert_eq!(a.load(1).unwrap().payload(), b"1");
}

/// Many producers of durable single appends (the combining path): every append gets its own
/// sequence, sequences are contiguous, and each loads its own payload, also after reopen.
#[test]
fn concurrent_durable_appends_get_distinct_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let s = store.create_stream(StreamConfig::new("d")).unwrap();
    let per = 300u32;
    let got: Vec<(u64, Vec<u8>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16u32)
            .map(|t| {
                let s = s.clone();
                sc.spawn(move || {
                    (0..per)
                        .map(|i| {
                            let p = format!("{t}:{i}").into_bytes();
                            (s.append("c.d", b"", &p).unwrap().seq, p)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut seqs: Vec<u64> = got.iter().map(|(q, _)| *q).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=16 * per as u64).collect::<Vec<_>>());
    for (q, p) in &got {
        assert_eq!(s.load(*q).unwrap().payload(), &p[..]);
    }
    store.close().unwrap();
    drop((s, store));
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let s = store.stream("d").unwrap();
    for (q, p) in &got {
        assert_eq!(s.load(*q).unwrap().payload(), &p[..]);
    }
}

/// Damage in a sealed block the checkpoint covers is not read at open (reopen stays fast);
/// `load` reports it as `Corrupt` and `verify` names exactly that sequence.
#[test]
fn verify_finds_damage_that_open_does_not_read() {
    let vfs = MemVfs::new();
    let store = Store::open_with_vfs("/db", Arc::new(vfs.clone()), opts()).unwrap();
    let s = store
        .create_stream(StreamConfig::new("v").block_size(4096))
        .unwrap();
    for i in 0..300u32 {
        s.append("a.b", b"", &[i as u8; 10]).unwrap();
    }
    store.close().unwrap();
    drop((s, store));
    // Block 1 starts with seq 1: header (64) + record header (32) + subject "a.b" (3).
    let first_block = std::path::Path::new("/db/streams/v/00000000000000000001.blk");
    vfs.corrupt(first_block, 64 + 32 + 3 + 4, 0x40).unwrap();
    let store = Store::open_with_vfs("/db", Arc::new(vfs.clone()), opts()).unwrap();
    let s = store.stream("v").unwrap();
    assert!(s.recovery_report().lost.is_empty());
    assert!(matches!(s.load(1), Err(tidelog::LoadError::Corrupt(1))));
    let v = s.verify();
    assert_eq!(v.checked, 300);
    assert_eq!(v.damaged, vec![(1, 1)]);
    assert_eq!(s.load(2).unwrap().payload(), &[1u8; 10]);
}

/// Under `Interval`, the maintainer makes data durable by itself: no further append and no
/// explicit sync are needed (polled, so the test does not depend on exact timing).
#[test]
fn interval_data_becomes_durable_without_further_writes() {
    let vfs = MemVfs::new();
    let store =
        Store::open_with_vfs("/db", Arc::new(vfs.clone()), StoreOptions::default()).unwrap();
    let d = std::time::Duration::from_millis(2);
    let s = store
        .create_stream(StreamConfig::new("i").durability(Durability::Interval(d)))
        .unwrap();
    s.append("a", b"", b"first").unwrap();
    std::thread::sleep(d * 2);
    let a = s.append("a", b"", b"second").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let disk = vfs.after_crash(tidelog::io::CrashKind::PowerLoss);
        let reopened = Store::open_with_vfs("/db", Arc::new(disk), opts()).unwrap();
        if reopened.stream("i").is_ok_and(|r| r.load(a.seq).is_ok()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "interval data never became durable"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A stream whose files cannot be read is set aside at open; the others open normally.
#[test]
fn unreadable_stream_does_not_stop_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    store
        .create_stream(StreamConfig::new("ok"))
        .unwrap()
        .append("a", b"", b"1")
        .unwrap();
    store
        .create_stream(StreamConfig::new("bad"))
        .unwrap()
        .append("a", b"", b"1")
        .unwrap();
    store.close().unwrap();
    drop(store);
    let blk = dir.path().join("streams/bad/00000000000000000001.blk");
    std::fs::remove_file(&blk).unwrap();
    std::fs::create_dir(&blk).unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.stream_names(), vec!["ok".to_string()]);
    let damaged = store.damaged_streams();
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].name, "bad");
    assert!(!damaged[0].why.is_empty());
    assert_eq!(store.stream("ok").unwrap().load(1).unwrap().payload(), b"1");
}
