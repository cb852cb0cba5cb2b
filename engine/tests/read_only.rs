//! Opening a store read-only (`StoreOptions::read_only`, invariant `read-only-open`): the open
//! recovers, expires and answers exactly as a writable open would, takes appends, removes,
//! consumers and a close, and not one byte of the directory changes. A later writable open
//! then finds what the read-only one found (the same damage, reported again).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidelog::io::{read_file, CrashKind, MemVfs, OverlayVfs, Vfs};
use tidelog::{
    ConsumerConfig, ManualClock, NewMessage, Store, StoreError, StoreOptions, StreamConfig, Ttl,
};

const DIR: &str = "/db";
const NAME: &str = "orders";
const SEC: i64 = 1_000_000_000;

fn opts(clock: &Arc<ManualClock>, read_only: bool) -> StoreOptions {
    StoreOptions {
        manual_maintenance: true,
        read_only,
        clock: Some(clock.clone()),
        ..Default::default()
    }
}

/// Every file below `dir` with its bytes, and every directory.
fn tree(vfs: &MemVfs, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
    for name in vfs.list(dir).unwrap() {
        let p = dir.join(name);
        match read_file(vfs, &p) {
            Ok(bytes) => {
                out.insert(p, Some(bytes));
            }
            Err(_) => {
                out.insert(p.clone(), None);
                tree(vfs, &p, out);
            }
        }
    }
}

fn snapshot(vfs: &MemVfs) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    tree(vfs, Path::new(DIR), &mut out);
    out
}

/// A crashed store: 300 messages in 4 KiB blocks, a third of them with a 10 s TTL, one
/// consumer with acks, a checkpoint behind the last appends, and a damaged record.
fn crashed(clock: &Arc<ManualClock>) -> MemVfs {
    let mem = MemVfs::new();
    let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts(clock, false)).unwrap();
    let s = store
        .create_stream(StreamConfig::new(NAME).block_size(4096).allow_msg_ttl(true))
        .unwrap();
    let c = s.create_consumer(ConsumerConfig::new("c")).unwrap();
    for i in 0..300u64 {
        let payload = i.to_le_bytes();
        let subject = format!("orders.{}", i % 7);
        let mut m = NewMessage::new(&subject, &payload);
        if i % 3 == 0 {
            m = m.with_ttl(Ttl::Secs(10));
        }
        s.append_msg(&m).unwrap();
        if i == 150 {
            s.checkpoint().unwrap();
        }
    }
    for d in c.fetch(40, usize::MAX).unwrap() {
        c.ack(d.message.seq).unwrap();
    }
    s.sync().unwrap();
    let disk = mem.after_crash(CrashKind::Process);
    drop((c, s, store));
    // Damage one byte of the first record of the last block (after the checkpoint).
    let sdir = Path::new(DIR).join("streams").join(NAME);
    let last = disk
        .list(&sdir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".blk"))
        .max()
        .unwrap();
    let first = sdir.join(last);
    disk.corrupt(&first, 64 + 40, 0x10).unwrap();
    disk
}

#[test]
fn a_read_only_open_changes_nothing_on_disk() {
    let clock = Arc::new(ManualClock::new(1000 * SEC));
    let disk = crashed(&clock);
    let before = snapshot(&disk);
    // Past every TTL: a writable open would expire a third of the messages.
    clock.set_ns(2000 * SEC);
    let store = Store::open_with_vfs(DIR, Arc::new(disk.clone()), opts(&clock, true)).unwrap();
    let s = store.stream(NAME).unwrap();
    let report = s.recovery_report().clone();
    assert!(!report.lost.is_empty(), "{report:?}");
    let state = s.state();
    assert_eq!(state.last_seq, 300);
    assert!(state.messages < 200, "expiry applied in memory: {state:?}");
    assert!(s.verify().damaged.is_empty());
    // Everything a broker does works, on the in-memory copy.
    let seq = s.append("orders.new", b"", b"x").unwrap().seq;
    assert_eq!(s.load(seq).unwrap().payload(), b"x");
    s.remove(2).unwrap();
    s.checkpoint().unwrap();
    let c = s.consumer("c").unwrap();
    let got = c.fetch(10, usize::MAX).unwrap();
    assert!(!got.is_empty());
    c.ack(got[0].message.seq).unwrap();
    store.create_stream(StreamConfig::new("other")).unwrap();
    drop((c, s));
    store.close().unwrap();
    drop(store);
    assert_eq!(snapshot(&disk), before, "the directory changed");

    // A writable open finds the same store the read-only one found.
    let store = Store::open_with_vfs(DIR, Arc::new(disk.clone()), opts(&clock, false)).unwrap();
    let s = store.stream(NAME).unwrap();
    assert_eq!(s.recovery_report().lost, report.lost);
    assert_eq!(s.state().messages, state.messages);
    assert_eq!(store.stream_names(), [NAME]);
}

#[test]
fn a_read_only_open_creates_no_store() {
    let clock = Arc::new(ManualClock::new(SEC));
    let mem = MemVfs::new();
    mem.create_dir_all(Path::new("/empty")).unwrap();
    match Store::open_with_vfs("/empty", Arc::new(mem.clone()), opts(&clock, true)) {
        Err(StoreError::NotAStore(p)) => assert_eq!(p, "/empty"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a read-only open made a store"),
    }
    assert!(mem.list(Path::new("/empty")).unwrap().is_empty());
}

#[test]
fn a_read_only_open_still_takes_the_lock() {
    let clock = Arc::new(ManualClock::new(1000 * SEC));
    let disk = crashed(&clock);
    let writer = Store::open_with_vfs(DIR, Arc::new(disk.clone()), opts(&clock, false)).unwrap();
    let r = Store::open_with_vfs(DIR, Arc::new(disk.clone()), opts(&clock, true));
    assert!(matches!(r, Err(StoreError::Locked(_))));
    drop(writer);
}

#[test]
fn a_read_only_store_deletes_and_recreates_a_stream_in_memory() {
    let clock = Arc::new(ManualClock::new(1000 * SEC));
    let disk = crashed(&clock);
    let before = snapshot(&disk);
    let store = Store::open_with_vfs(DIR, Arc::new(disk.clone()), opts(&clock, true)).unwrap();
    store.delete_stream(NAME).unwrap();
    assert!(store.stream_names().is_empty());
    let s = store.create_stream(StreamConfig::new(NAME)).unwrap();
    assert_eq!(s.append("a.b", b"", b"x").unwrap().seq, 1);
    assert_eq!(s.state().messages, 1);
    drop(s);
    store.close().unwrap();
    drop(store);
    assert_eq!(snapshot(&disk), before, "the directory changed");
}

/// Every file below `dir` on the real file system, with its bytes.
fn os_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        match p.is_dir() {
            true => out.extend(os_tree(&p)),
            false => {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(p, bytes);
            }
        }
    }
    out
}

#[test]
fn on_the_real_file_system_nothing_changes_and_no_lock_file_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let clock = Arc::new(ManualClock::new(1000 * SEC));
    let store = Store::open(&dir, opts(&clock, false)).unwrap();
    let s = store
        .create_stream(StreamConfig::new(NAME).block_size(4096).allow_msg_ttl(true))
        .unwrap();
    for i in 0..200u64 {
        let m = NewMessage::new("a.b", b"payload").with_ttl(Ttl::Secs(1 + i % 20));
        s.append_msg(&m).unwrap();
    }
    drop(s);
    // Unclosed, as a crash leaves it; and without the LOCK file (a copied store).
    std::mem::forget(store);
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    let before = os_tree(&dir);
    clock.set_ns(2000 * SEC);
    let store = Store::open(&dir, opts(&clock, true)).unwrap();
    let s = store.stream(NAME).unwrap();
    assert_eq!(s.state().messages, 0, "every TTL is due");
    s.append("a.b", b"", b"x").unwrap();
    s.reclaim().unwrap();
    drop(s);
    store.close().unwrap();
    drop(store);
    assert!(os_tree(&dir) == before, "the directory changed");
}

#[test]
fn read_only_opens_share_the_lock_and_keep_a_writer_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let clock = Arc::new(ManualClock::new(SEC));
    drop(Store::open(&dir, opts(&clock, false)).unwrap());
    let a = Store::open(&dir, opts(&clock, true)).unwrap();
    let b = Store::open(&dir, opts(&clock, true)).unwrap();
    let w = Store::open(&dir, opts(&clock, false));
    assert!(matches!(w, Err(StoreError::Locked(_))));
    drop((a, b));
    Store::open(&dir, opts(&clock, false)).unwrap();
}

#[test]
fn compaction_does_not_copy_blocks_into_memory() {
    let clock = Arc::new(ManualClock::new(SEC));
    let mem = MemVfs::new();
    let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts(&clock, false)).unwrap();
    let s = store
        .create_stream(StreamConfig::new(NAME).block_size(16 * 1024))
        .unwrap();
    for _ in 0..3000 {
        s.append("a.b", b"", &[7u8; 1000]).unwrap();
    }
    for seq in (1..=3000).filter(|q| q % 3 != 0) {
        s.remove(seq).unwrap();
    }
    drop(s);
    store.close().unwrap();
    drop(store);
    let overlay = Arc::new(OverlayVfs::new(Arc::new(mem.clone())));
    let store = Store::open_with_vfs(DIR, overlay.clone(), opts(&clock, false)).unwrap();
    let s = store.stream(NAME).unwrap();
    assert_eq!(s.reclaim().unwrap(), 0);
    assert_eq!(s.state().messages, 1000);
    // Two checkpoints and a fresh active block at most; the 3 MB of blocks stay below.
    assert!(
        overlay.changed_bytes() < 256 * 1024,
        "{} bytes copied into memory",
        overlay.changed_bytes()
    );
}
