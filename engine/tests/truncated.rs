//! Truncated block files (invariant `damage-contained`): a block file cut short, in the middle
//! of the log or at its end, mid-record, on a record boundary, inside its header or to nothing.
//! The open that finds it, and every open until a checkpoint records the loss, reports exactly
//! the sequences that were live and are gone as `lost` (nothing that still loads); the counters
//! match what the files hold, every other message loads with its exact contents, sequences are
//! never reused, and all of this holds across clean reopens, crashes, a fallback to the older
//! checkpoint and `Stream::repair`. Once checkpointed, the loss is an ordinary removal.
//!
//! Also: a damaged `lease` file makes recovery skip ahead rather than reuse a sequence, and a
//! stream directory without a `config` file is reported naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidelog::io::{read_file, CrashKind, MemVfs, OpenMode, Vfs};
use tidelog::{Durability, LoadError, Store, StoreOptions, Stream, StreamConfig};

const DIR: &str = "/db";
const NAME: &str = "orders";
const STREAM_DIR: &str = "/db/streams/orders";
const N: u64 = 440;
const HEADER_LEN: usize = 64;
/// Sequences one lease write reserves (`LEASE_SPAN` in the engine).
const LEASE_SPAN: u64 = 1 << 20;

fn opts() -> StoreOptions {
    StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    }
}

fn subject(seq: u64) -> String {
    format!("orders.{}", seq % 5)
}

fn payload(seq: u64) -> Vec<u8> {
    (0..8 + seq % 13)
        .map(|i| (seq * 31 + i * 7) as u8)
        .collect()
}

/// `N` messages in 4 KiB blocks, cleanly closed, as the disk a new process finds.
fn build() -> MemVfs {
    let mem = MemVfs::new();
    let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts()).unwrap();
    let s = store
        .create_stream(StreamConfig::new(NAME).block_size(4096))
        .unwrap();
    for seq in 1..=N {
        assert_eq!(
            s.append(&subject(seq), b"", &payload(seq)).unwrap().seq,
            seq
        );
    }
    store.close().unwrap();
    mem.after_crash(CrashKind::Process)
}

fn open(disk: &MemVfs) -> (Store, Stream) {
    let store = Store::open_with_vfs(DIR, Arc::new(disk.clone()), opts()).unwrap();
    let s = store.stream(NAME).unwrap();
    (store, s)
}

fn block_path(id: u64) -> PathBuf {
    Path::new(STREAM_DIR).join(format!("{id:020}.blk"))
}

fn block_ids(disk: &MemVfs) -> Vec<u64> {
    let mut ids: Vec<u64> = disk
        .list(Path::new(STREAM_DIR))
        .unwrap()
        .iter()
        .filter_map(|n| n.strip_suffix(".blk")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// `(offset, len, seq)` of the message records of a block file, walked by their length fields
/// up to the sealed body's end (or the file's).
fn records(bytes: &[u8]) -> Vec<(usize, usize, u64)> {
    let n = bytes.len();
    let sealed = n >= 128 && matches!(&bytes[n - 64..n - 56], b"TLSEAL\0\0" | b"TLSEALSP");
    let end = if sealed {
        u64::from_le_bytes(bytes[n - 40..n - 32].try_into().unwrap()) as usize
    } else {
        n
    };
    let mut out = Vec::new();
    let mut off = HEADER_LEN;
    while off + 40 <= end {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if len < 40 || off + len > end {
            break;
        }
        if bytes[off + 4] == 1 {
            let seq = u64::from_le_bytes(bytes[off + 8..off + 16].try_into().unwrap());
            out.push((off, len, seq));
        }
        off += len;
    }
    out
}

/// Where to cut a block file.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// At this length (mid-record for 2000).
    At(usize),
    /// Right after the record holding the block's `n`th message (a clean record boundary).
    AfterRecord(usize),
}

/// Cuts block `id` of `disk`; returns the sequences whose records no longer fit in the file.
fn truncate(disk: &MemVfs, id: u64, cut: Cut) -> Vec<u64> {
    let path = block_path(id);
    let bytes = read_file(disk, &path).unwrap();
    let recs = records(&bytes);
    assert!(recs.len() > 10, "block {id} holds {} records", recs.len());
    let len = match cut {
        Cut::At(len) => len,
        Cut::AfterRecord(n) => recs[n].0 + recs[n].1,
    };
    assert!(len < bytes.len());
    disk.open(&path, OpenMode::Existing)
        .unwrap()
        .set_len(len as u64)
        .unwrap();
    recs.iter()
        .filter(|&&(off, rlen, _)| len < HEADER_LEN || off + rlen > len)
        .map(|&(_, _, seq)| seq)
        .collect()
}

fn flat(ranges: &[(u64, u64)]) -> Vec<u64> {
    ranges.iter().flat_map(|&(a, b)| a..=b).collect()
}

fn intact(s: &Stream, seq: u64) -> bool {
    s.load(seq)
        .is_ok_and(|m| m.payload() == payload(seq).as_slice() && m.subject() == subject(seq))
}

/// The stream holds exactly `1..=last` except `gone`, each message with its exact contents,
/// and its counters agree with its blocks. Whatever this open reports lost is among `gone`.
fn check(s: &Stream, gone: &[u64], last: u64) {
    s.check_invariants().unwrap();
    let lost = flat(&s.recovery_report().lost);
    assert!(
        lost.iter().all(|q| gone.contains(q)),
        "reported lost {lost:?} beyond {gone:?}"
    );
    for seq in 1..=last {
        if gone.contains(&seq) {
            assert!(
                matches!(s.load(seq), Err(LoadError::NotFound(_))),
                "{seq} came back"
            );
        } else if seq <= N {
            assert!(intact(s, seq), "message {seq} does not load intact");
        } else {
            assert!(s.load(seq).is_ok(), "message {seq} does not load");
        }
    }
    let st = s.state();
    assert_eq!(st.last_seq, last);
    assert_eq!(st.messages, last - gone.len() as u64);
    assert_eq!(s.verify().damaged, Vec::<(u64, u64)>::new());
}

/// The first open after the damage reports exactly `gone` lost and block `id` damaged.
fn check_first(s: &Stream, id: u64, gone: &[u64]) {
    let rep = s.recovery_report().clone();
    assert_eq!(flat(&rep.lost), gone, "{rep:?}");
    assert!(rep.damaged_blocks.contains(&id), "{rep:?}");
    check(s, gone, N);
}

/// Appends the next message and checks it gets the next sequence.
fn append_next(s: &Stream, last: &mut u64) {
    *last += 1;
    let seq = *last;
    assert_eq!(
        s.append(&subject(seq), b"", &payload(seq)).unwrap().seq,
        seq
    );
}

/// Which block to cut: the third (sealed, mid-log) or the last (active when closed).
fn pick(disk: &MemVfs, middle: bool) -> u64 {
    let ids = block_ids(disk);
    assert!(ids.len() >= 5, "{ids:?}");
    if middle {
        ids[2]
    } else {
        *ids.last().unwrap()
    }
}

const CUTS: [Cut; 4] = [Cut::At(2000), Cut::AfterRecord(20), Cut::At(30), Cut::At(0)];

/// Open, append, clean reopen, crash reopen: the loss is reported once and stays consistent.
fn clean_reopens(middle: bool, cut: Cut) {
    let disk = build();
    let id = pick(&disk, middle);
    let gone = truncate(&disk, id, cut);
    let (store, s) = open(&disk);
    check_first(&s, id, &gone);
    let mut last = N;
    append_next(&s, &mut last);
    check(&s, &gone, last);
    let crashed = disk.after_crash(CrashKind::Process);
    store.close().unwrap();
    drop((s, store));
    for d in [disk.clone(), crashed] {
        let (store, s) = open(&d);
        check(&s, &gone, last);
        let mut l = last;
        append_next(&s, &mut l);
        check(&s, &gone, l);
        store.close().unwrap();
        let (_store, s) = open(&d.after_crash(CrashKind::Process));
        assert_eq!(s.recovery_report().lost, Vec::<(u64, u64)>::new());
        check(&s, &gone, l);
    }
}

#[test]
fn truncated_middle_block_is_lost_exactly_across_reopens() {
    for cut in CUTS {
        clean_reopens(true, cut);
    }
}

#[test]
fn truncated_last_block_is_lost_exactly_across_reopens() {
    for cut in CUTS {
        clean_reopens(false, cut);
    }
}

/// The first open after the damage ends in a crash (no checkpoint records the loss, but the
/// open may already have cut the partial record): the next open reports the loss again.
fn crash_after_first_open(middle: bool, cut: Cut) {
    let disk = build();
    let id = pick(&disk, middle);
    let gone = truncate(&disk, id, cut);
    let (store, s) = open(&disk);
    check_first(&s, id, &gone);
    let crashed = disk.after_crash(CrashKind::Process);
    std::mem::forget((s, store));
    let (store, s) = open(&crashed);
    assert_eq!(flat(&s.recovery_report().lost), gone);
    check(&s, &gone, N);
    let mut last = N;
    append_next(&s, &mut last);
    check(&s, &gone, last);
    let r = s.repair().unwrap();
    assert_eq!(r.removed, Vec::<(u64, u64)>::new());
    check(&s, &gone, last);
    store.close().unwrap();
    drop((s, store));
    let (_store, s) = open(&crashed);
    assert_eq!(s.recovery_report().checkpoint_error, None);
    assert_eq!(s.recovery_report().lost, Vec::<(u64, u64)>::new());
    check(&s, &gone, last);
}

#[test]
fn truncated_block_after_a_crashed_open_is_still_lost_exactly() {
    for middle in [true, false] {
        for cut in CUTS {
            crash_after_first_open(middle, cut);
        }
    }
}

/// `repair` after the damage: the stream is clean at once, after a clean reopen and after a
/// crash, and sequences go on.
fn repair_then_reopen(middle: bool, cut: Cut) {
    let disk = build();
    let id = pick(&disk, middle);
    let gone = truncate(&disk, id, cut);
    let (store, s) = open(&disk);
    check_first(&s, id, &gone);
    let r = s.repair().unwrap();
    assert_eq!(r.removed, Vec::<(u64, u64)>::new(), "{r:?}");
    check(&s, &gone, N);
    let v = s.verify();
    assert!(v.damaged.is_empty() && v.damaged_blocks.is_empty(), "{v:?}");
    let mut last = N;
    append_next(&s, &mut last);
    let crashed = disk.after_crash(CrashKind::Process);
    store.close().unwrap();
    drop((s, store));
    for d in [disk.clone(), crashed] {
        let (store, s) = open(&d);
        let rep = s.recovery_report().clone();
        assert!(rep.damaged_blocks.is_empty(), "{cut:?}: {rep:?}");
        assert_eq!(rep.checkpoint_error, None, "{cut:?}");
        assert!(s.verify().damaged_blocks.is_empty());
        check(&s, &gone, last);
        let mut l = last;
        append_next(&s, &mut l);
        check(&s, &gone, l);
        drop((s, store));
    }
}

#[test]
fn repair_after_a_truncated_block_leaves_a_clean_stream() {
    for middle in [true, false] {
        for cut in CUTS {
            repair_then_reopen(middle, cut);
        }
    }
}

/// After the loss was checkpointed, `checkpoint` is damaged: recovery falls back to
/// `checkpoint.prev`, written before the loss, and must not count the lost messages again.
#[test]
fn fallback_to_the_older_checkpoint_after_a_truncated_block() {
    for middle in [true, false] {
        for cut in CUTS {
            let disk = build();
            let id = pick(&disk, middle);
            let gone = truncate(&disk, id, cut);
            let (store, s) = open(&disk);
            check_first(&s, id, &gone);
            store.close().unwrap();
            drop((s, store));
            let ck = Path::new(STREAM_DIR).join("checkpoint");
            disk.corrupt(&ck, 100, 0x01).unwrap();
            let (store, s) = open(&disk);
            assert!(s.recovery_report().checkpoint_error.is_some());
            check(&s, &gone, N);
            let mut last = N;
            append_next(&s, &mut last);
            check(&s, &gone, last);
            store.close().unwrap();
            drop((s, store));
            let (_store, s) = open(&disk);
            check(&s, &gone, last);
        }
    }
}

/// A listed block file replaced by another stream's block: it is never replayed, and what the
/// checkpoint counted in it is lost, as for a missing file.
#[test]
fn a_block_file_replaced_by_another_streams_is_lost_exactly() {
    let disk = build();
    let other = Store::open_with_vfs("/other", Arc::new(disk.clone()), opts()).unwrap();
    let o = other
        .create_stream(StreamConfig::new(NAME).block_size(4096))
        .unwrap();
    for seq in 1..=100 {
        o.append("other", b"", &payload(seq)).unwrap();
    }
    other.close().unwrap();
    drop((o, other));
    let id = pick(&disk, true);
    let path = block_path(id);
    let gone: Vec<u64> = records(&read_file(&disk, &path).unwrap())
        .iter()
        .map(|r| r.2)
        .collect();
    let foreign = read_file(
        &disk,
        &Path::new("/other/streams/orders").join(format!("{:020}.blk", 1)),
    )
    .unwrap();
    disk.remove_file(&path).unwrap();
    disk.open(&path, OpenMode::CreateNew)
        .unwrap()
        .write_all_at(&foreign, 0)
        .unwrap();
    let (store, s) = open(&disk);
    check_first(&s, id, &gone);
    let mut last = N;
    append_next(&s, &mut last);
    store.close().unwrap();
    drop((s, store));
    let (_store, s) = open(&disk);
    check(&s, &gone, last);
}

/// A compacted block keeps records more than 1024 sequences apart (more than the live path
/// pads inside a block). When its trailer is damaged, the scan that replaces it must still
/// place every record, not report intact messages lost.
#[test]
fn a_compacted_block_with_a_damaged_trailer_loses_nothing() {
    let mem = MemVfs::new();
    let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts()).unwrap();
    let s = store
        .create_stream(StreamConfig::new(NAME).block_size(1 << 16))
        .unwrap();
    let keep = [1u64, 1200, 1201, 1300];
    for seq in 1..=3000u64 {
        let subject = if keep.contains(&seq) {
            "a.keep"
        } else {
            "a.drop"
        };
        assert_eq!(s.append(subject, b"", &[seq as u8]).unwrap().seq, seq);
    }
    s.purge_filtered("a.drop", Some(2000), 0).unwrap();
    assert!(s.reclaim().unwrap() >= 1);
    let messages = s.state().messages;
    store.close().unwrap();
    drop((s, store));
    let disk = mem.after_crash(CrashKind::Process);
    let first = block_ids(&disk)[0];
    let path = block_path(first);
    let bytes = read_file(&disk, &path).unwrap();
    let n = bytes.len();
    assert_eq!(
        &bytes[n - 64..n - 56],
        b"TLSEALSP",
        "block {first} is not compacted"
    );
    let held: Vec<u64> = records(&bytes).iter().map(|r| r.2).collect();
    assert!(
        held.windows(2).any(|w| w[1] - w[0] > 1025),
        "block {first} holds {held:?}"
    );
    disk.corrupt(&path, n - 4, 0x20).unwrap();
    let (_store, s) = open(&disk);
    let rep = s.recovery_report().clone();
    assert_eq!(rep.lost, Vec::<(u64, u64)>::new(), "{rep:?}");
    assert!(rep.damaged_blocks.contains(&first), "{rep:?}");
    s.check_invariants().unwrap();
    for seq in keep {
        assert_eq!(s.load(seq).unwrap().payload(), &[seq as u8], "{seq}");
    }
    assert_eq!(s.state().messages, messages);
}

// ---------------------------------------------------------------------------------------------
// The lease.

/// A stream under `Durability::None` with `n` messages, as a crash leaves it (the lease is
/// then far ahead of the last sequence on disk, and the checkpoint behind it).
fn build_leased(n: u64) -> MemVfs {
    let mem = MemVfs::new();
    let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts()).unwrap();
    let s = store
        .create_stream(
            StreamConfig::new(NAME)
                .block_size(4096)
                .durability(Durability::None),
        )
        .unwrap();
    for seq in 1..=n {
        s.append(&subject(seq), b"", &payload(seq)).unwrap();
    }
    s.sync().unwrap();
    let disk = mem.after_crash(CrashKind::Process);
    drop((s, store));
    disk
}

fn lease_path() -> PathBuf {
    Path::new(STREAM_DIR).join("lease")
}

#[test]
fn an_intact_lease_is_applied_and_not_reported() {
    let disk = build_leased(50);
    let (_store, s) = open(&disk);
    let rep = s.recovery_report();
    assert_eq!(rep.lease_error, None);
    // The first append leased a span past sequence 1.
    assert_eq!(s.state().last_seq, 1 + LEASE_SPAN);
}

#[test]
fn a_damaged_lease_never_lets_a_sequence_be_reused() {
    for damage in [
        "checksum",
        "short",
        "empty",
        "other stream",
        "past the limit",
    ] {
        let disk = build_leased(50);
        let path = lease_path();
        let mut bytes = read_file(&disk, &path).unwrap();
        match damage {
            "checksum" => bytes[20] ^= 0x40,
            "short" => bytes.truncate(20),
            "empty" => bytes.clear(),
            "past the limit" => {
                // Sound checksum, but a sequence the engine never hands out (2^62 + 5):
                // taken as it is, the next append would overflow.
                bytes[16..24].copy_from_slice(&((1u64 << 62) + 5).to_le_bytes());
                let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..24]);
                bytes[24..].copy_from_slice(&sum.to_le_bytes());
            }
            _ => {
                // A well-formed lease of another stream.
                bytes[8] ^= 1;
                let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..24]);
                bytes[24..].copy_from_slice(&sum.to_le_bytes());
            }
        }
        disk.remove_file(&path).unwrap();
        disk.open(&path, OpenMode::CreateNew)
            .unwrap()
            .write_all_at(&bytes, 0)
            .unwrap();
        let (store, s) = open(&disk);
        let rep = s.recovery_report().clone();
        assert!(rep.lease_error.is_some(), "{damage}: {rep:?}");
        // Every sequence the lost lease could have covered is skipped.
        let last = s.state().last_seq;
        assert!(last >= 50 + LEASE_SPAN, "{damage}: last_seq {last}");
        s.check_invariants().unwrap();
        for seq in 1..=50 {
            assert!(intact(&s, seq), "{damage}: {seq}");
        }
        let next = s.append("orders.x", b"", b"next").unwrap().seq;
        assert_eq!(next, last + 1);
        // The append wrote a sound lease again.
        store.close().unwrap();
        drop((s, store));
        let (_store, s) = open(&disk);
        assert_eq!(s.recovery_report().lease_error, None, "{damage}");
        assert_eq!(s.state().last_seq, next);
    }
}

#[test]
fn no_lease_file_is_not_an_error() {
    let disk = build();
    assert!(!disk.exists(&lease_path()));
    let (_store, s) = open(&disk);
    assert_eq!(s.recovery_report().lease_error, None);
    assert_eq!(s.state().last_seq, N);
}

// ---------------------------------------------------------------------------------------------
// The config file.

#[test]
fn a_stream_without_a_config_file_is_reported_naming_the_file() {
    let disk = build();
    disk.remove_file(&Path::new(STREAM_DIR).join("config"))
        .unwrap();
    let store = Store::open_with_vfs(DIR, Arc::new(disk.clone()), opts()).unwrap();
    assert!(store.stream_names().is_empty());
    let damaged = store.damaged_streams();
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].name, NAME);
    assert!(
        damaged[0]
            .why
            .contains("config file streams/orders/config is missing"),
        "{}",
        damaged[0].why
    );
}

#[test]
fn repair_writes_a_sound_lease_over_a_damaged_one() {
    let disk = build_leased(50);
    let path = lease_path();
    disk.corrupt(&path, 20, 0x40).unwrap();
    let (_store, s) = open(&disk);
    assert!(s.recovery_report().lease_error.is_some());
    let last = s.state().last_seq;
    let r = s.repair().unwrap();
    assert!(r.lease_rewritten, "{r:?}");
    s.check_invariants().unwrap();
    // Even a crash right after the repair finds a sound lease and reuses no sequence.
    let after = disk.after_crash(CrashKind::Process);
    let (_store, s) = open(&after);
    assert_eq!(s.recovery_report().lease_error, None);
    assert!(s.append("orders.x", b"", b"next").unwrap().seq > last);
}
