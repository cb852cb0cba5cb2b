//! `Stream::repair` (invariant `repair-keeps-good`): after damage, repair removes exactly the
//! messages `verify` reports, rewrites the blocks that held them so no damaged byte is left in
//! a file, keeps every other message with its exact contents across a reopen, and never
//! hands out a sequence again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidelog::io::{read_file, CrashKind, MemVfs, Vfs};
use tidelog::{LoadError, Store, StoreOptions, Stream, StreamConfig};

const DIR: &str = "/db";
const STREAM_DIR: &str = "/db/streams/s";
const N: u64 = 300;

fn opts() -> StoreOptions {
    StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    }
}

fn payload(seq: u64) -> Vec<u8> {
    (0..40 + seq % 90)
        .map(|i| (seq * 31 + i * 7) as u8)
        .collect()
}

fn subject(seq: u64) -> String {
    format!("orders.{}", seq % 5)
}

/// `n` messages in 4 KiB blocks, cleanly closed, as the disk a new process finds.
fn build(n: u64) -> MemVfs {
    let mem = MemVfs::new();
    let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts()).unwrap();
    let s = store
        .create_stream(StreamConfig::new("s").block_size(4096))
        .unwrap();
    for seq in 1..=n {
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
    let s = store.stream("s").unwrap();
    (store, s)
}

fn block_files(mem: &MemVfs) -> Vec<PathBuf> {
    let dir = Path::new(STREAM_DIR);
    let mut names: Vec<String> = mem.list(dir).unwrap();
    names.retain(|n| n.ends_with(".blk"));
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// `(offset, len, seq)` of the message records of a block file, walked by their length fields up to
/// the sealed body's end (or the file's).
fn records(bytes: &[u8]) -> Vec<(usize, usize, u64)> {
    let sealed = bytes.len() >= 64 && &bytes[bytes.len() - 64..bytes.len() - 56] == b"TLSEAL\0\0";
    let end = if sealed {
        let f = &bytes[bytes.len() - 64..];
        u64::from_le_bytes(f[24..32].try_into().unwrap()) as usize
    } else {
        bytes.len()
    };
    let mut out = Vec::new();
    let mut off = 64;
    while off + 40 <= end {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if len < 40 || off + len > end {
            break;
        }
        let seq = u64::from_le_bytes(bytes[off + 8..off + 16].try_into().unwrap());
        // Kind 1 is a message; tombstones carry the sequence they remove.
        if bytes[off + 4] == 1 {
            out.push((off, len, seq));
        }
        off += len;
    }
    out
}

/// Flips a payload byte of record `i` of block file `file`; returns its sequence.
fn damage(disk: &MemVfs, file: &Path, i: usize) -> u64 {
    let recs = records(&read_file(disk, file).unwrap());
    let (off, len, seq) = recs[i];
    disk.corrupt(file, off + len - 12, 0x5a).unwrap();
    seq
}

fn intact(s: &Stream, seq: u64) -> bool {
    s.load(seq)
        .is_ok_and(|m| m.payload() == payload(seq).as_slice() && m.subject() == subject(seq))
}

/// Every sequence any block file still holds a record for.
fn seqs_on_disk(disk: &MemVfs) -> Vec<u64> {
    block_files(disk)
        .iter()
        .flat_map(|f| records(&read_file(disk, f).unwrap()))
        .map(|(_, _, seq)| seq)
        .collect()
}

fn check_repaired(s: &Stream, bad: &[u64]) {
    assert_eq!(s.verify().damaged, vec![], "damage left after repair");
    s.check_invariants().unwrap();
    for seq in 1..=N {
        if bad.contains(&seq) {
            assert!(matches!(s.load(seq), Err(LoadError::NotFound(_))), "{seq}");
        } else {
            assert!(intact(s, seq), "good message {seq} lost by repair");
        }
    }
    assert_eq!(s.state().messages, N - bad.len() as u64);
}

#[test]
fn repair_keeps_good_records_of_sealed_blocks() {
    let disk = build(N);
    let files = block_files(&disk);
    assert!(files.len() >= 4, "want several sealed blocks");
    let mut bad = vec![
        damage(&disk, &files[0], 0),
        damage(&disk, &files[0], 3),
        damage(&disk, &files[2], 5),
    ];
    bad.sort_unstable();
    let (store, s) = open(&disk);
    let v = s.verify();
    assert_eq!(v.checked, N);
    let damaged: Vec<u64> = v.damaged.iter().flat_map(|&(a, b)| a..=b).collect();
    assert_eq!(damaged, bad);

    let r = s.repair().unwrap();
    let removed: Vec<u64> = r.removed.iter().flat_map(|&(a, b)| a..=b).collect();
    assert_eq!(removed, bad);
    assert_eq!(r.rewritten_blocks.len(), 2, "{r:?}");
    check_repaired(&s, &bad);
    let on_disk = seqs_on_disk(&disk);
    assert!(
        bad.iter().all(|q| !on_disk.contains(q)),
        "damaged record kept: {bad:?} {on_disk:?}"
    );

    // The repair survives a clean reopen and a crash; sequences go on from N.
    store.close().unwrap();
    drop((s, store));
    for disk in [disk.clone(), disk.after_crash(CrashKind::Process)] {
        let (_store, s) = open(&disk);
        check_repaired(&s, &bad);
        assert_eq!(s.append("orders.x", b"", b"next").unwrap().seq, N + 1);
    }
}

#[test]
fn repair_seals_and_rewrites_a_damaged_active_block() {
    let disk = build(N);
    let files = block_files(&disk);
    let last = files.last().unwrap();
    let bad = vec![damage(&disk, last, 1)];
    let (_store, s) = open(&disk);
    // Open either counts the record and verify finds it, or recovery drops it as lost.
    let lost = s.recovery_report().lost.clone();
    let r = s.repair().unwrap();
    let mut gone = r.removed.clone();
    gone.extend(lost);
    assert_eq!(gone, vec![(bad[0], bad[0])], "{r:?}");
    assert_eq!(r.rewritten_blocks.len(), 1, "{r:?}");
    check_repaired(&s, &bad);
    assert!(!seqs_on_disk(&disk).contains(&bad[0]));
    assert_eq!(s.append("orders.x", b"", b"next").unwrap().seq, N + 1);
}

#[test]
fn repair_of_a_sound_stream_changes_nothing() {
    let disk = build(N);
    let before: Vec<Vec<u8>> = block_files(&disk)
        .iter()
        .map(|f| read_file(&disk, f).unwrap())
        .collect();
    let (_store, s) = open(&disk);
    let r = s.repair().unwrap();
    assert_eq!(
        (r.checked, r.removed, r.rewritten_blocks),
        (N, vec![], vec![])
    );
    let after: Vec<Vec<u8>> = block_files(&disk)
        .iter()
        .map(|f| read_file(&disk, f).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn repair_rewrites_a_block_whose_trailer_is_damaged() {
    let disk = build(N);
    let file = &block_files(&disk)[1];
    let len = read_file(&disk, file).unwrap().len();
    disk.corrupt(file, len - 20, 0x10).unwrap();
    let (store, s) = open(&disk);
    let damaged = s.recovery_report().damaged_blocks.clone();
    assert_eq!(damaged.len(), 1, "{:?}", s.recovery_report());
    let r = s.repair().unwrap();
    assert_eq!(r.rewritten_blocks, damaged, "{r:?}");
    check_repaired(&s, &[]);
    store.close().unwrap();
    drop((s, store));
    let (_store, s) = open(&disk.after_crash(CrashKind::Process));
    assert!(s.recovery_report().damaged_blocks.is_empty());
    check_repaired(&s, &[]);
}

/// The damage may hit a message's TTL bytes: its timer must go with it, or the timers no
/// longer match the log (`timers-equal-log`).
#[test]
fn repair_removes_the_timer_of_a_damaged_message_with_a_ttl() {
    let mem = MemVfs::new();
    let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts()).unwrap();
    let s = store
        .create_stream(StreamConfig::new("s").block_size(4096).allow_msg_ttl(true))
        .unwrap();
    for seq in 1..=N {
        let (subj, body) = (subject(seq), payload(seq));
        let m = tidelog::NewMessage::new(&subj, &body).with_ttl(tidelog::Ttl::Secs(3600));
        s.append_msg(&m).unwrap();
    }
    store.close().unwrap();
    drop((s, store));
    let disk = mem.after_crash(CrashKind::Process);
    let file = &block_files(&disk)[1];
    let recs = records(&read_file(&disk, file).unwrap());
    // The last bytes before the checksum: the TTL extra.
    let (off, len, seq) = recs[2];
    disk.corrupt(file, off + len - 9, 0x40).unwrap();
    let (_store, s) = open(&disk);
    assert_eq!(s.verify().damaged, vec![(seq, seq)]);
    s.repair().unwrap();
    s.check_invariants().unwrap();
    assert!(matches!(s.load(seq), Err(LoadError::NotFound(_))));
}

/// A damaged block header loses no record (`damage-contained`), but `verify` must still find
/// it (open does not read a checkpointed block's header) and repair must write a sound one.
#[test]
fn verify_finds_a_damaged_block_header_and_repair_rewrites_it() {
    let disk = build(N);
    let file = &block_files(&disk)[1];
    disk.corrupt(file, 30, 0x01).unwrap();
    let (store, s) = open(&disk);
    let v = s.verify();
    assert_eq!((v.checked, v.damaged.len()), (N, 0));
    assert_eq!(v.damaged_blocks, vec![2], "{v:?}");
    let r = s.repair().unwrap();
    assert_eq!(r.rewritten_blocks, vec![2], "{r:?}");
    check_repaired(&s, &[]);
    assert!(s.verify().damaged_blocks.is_empty());
    store.close().unwrap();
    drop((s, store));
    for disk in [disk.clone(), disk.after_crash(CrashKind::Process)] {
        let (_store, s) = open(&disk);
        assert!(s.verify().damaged_blocks.is_empty());
        check_repaired(&s, &[]);
    }
}

/// Memory streams and sound file streams, sealed blocks and the active one: nothing to report.
#[test]
fn verify_reports_no_damaged_block_on_sound_streams() {
    let mem = MemVfs::new();
    let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts()).unwrap();
    for storage in [tidelog::Storage::Memory, tidelog::Storage::File] {
        let name = format!("{storage:?}").to_lowercase();
        let s = store
            .create_stream(StreamConfig::new(&name).block_size(4096).storage(storage))
            .unwrap();
        for seq in 1..=N {
            s.append(&subject(seq), b"", &payload(seq)).unwrap();
        }
        s.sync().unwrap();
        let v = s.verify();
        assert!(s.block_counts().0 > 3);
        assert_eq!(
            (v.checked, v.damaged, v.damaged_blocks),
            (N, vec![], vec![]),
            "{name}"
        );
    }
}
