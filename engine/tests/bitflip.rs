//! Damage containment (invariant `damage-contained`): one damaged byte anywhere in a block file
//! costs at most the one message whose record holds it. The store still opens, every other
//! message loads with its exact contents, the damaged one is reported (`LoadError::Corrupt`,
//! `NotFound`, or `recovery_report().lost`), the counters stay consistent, sequences are not
//! reused and appends keep working. Also: a damaged record in the unsealed active block is
//! reported exactly, and a torn tail is cut without losing anything before it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidelog::io::{CrashKind, Fault, FaultPlan, FaultyVfs, MemVfs, OpenMode, Vfs};
use tidelog::{LoadError, Store, StoreOptions, Stream, StreamConfig};

const DIR: &str = "/db";
const NAME: &str = "s";
const STREAM_DIR: &str = "/db/streams/s";
/// Block file header, then records: `len: u32, kind: u8, flags: u8, subject_len: u16,
/// seq: u64, ts: i64, headers_len: u32, check: u32`, subject, headers, payload, checksum.
const BLOCK_HEADER_LEN: usize = 64;

fn opts() -> StoreOptions {
    StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    subject: String,
    headers: Vec<u8>,
    payload: Vec<u8>,
}

fn msg(seq: u64) -> Msg {
    let len = 40 + (seq * 37 % 160) as usize;
    let payload = (0..len)
        .map(|i| (seq as usize * 31 + i * 7) as u8)
        .collect::<Vec<u8>>();
    Msg {
        subject: format!("orders.{}", seq % 5),
        headers: if seq.is_multiple_of(4) {
            format!("k={seq}").into_bytes()
        } else {
            Vec::new()
        },
        payload,
    }
}

fn append(s: &Stream, seq: u64) {
    let m = msg(seq);
    let a = s.append(&m.subject, &m.headers, &m.payload).unwrap();
    assert_eq!(a.seq, seq);
}

fn open(disk: &MemVfs) -> Result<(Store, Stream), String> {
    let store = Store::open_with_vfs(DIR, Arc::new(disk.clone()), opts())
        .map_err(|e| format!("store does not open: {e:?}"))?;
    let s = store
        .stream(NAME)
        .map_err(|e| format!("stream missing: {e:?}"))?;
    Ok((store, s))
}

/// A store with `n` messages in 4 KiB blocks (several sealed), left either cleanly closed
/// (with a checkpoint) or as a crash leaves it.
fn build(n: u64, clean_close: bool) -> MemVfs {
    let mem = MemVfs::new();
    let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts()).unwrap();
    let s = store
        .create_stream(StreamConfig::new(NAME).block_size(4096))
        .unwrap();
    for seq in 1..=n {
        append(&s, seq);
    }
    if clean_close {
        store.close().unwrap();
    } else {
        // What the maintenance thread does within a tick in production: seal the rolled-over
        // blocks (writes their trailers), so the crash image has sealed blocks to damage.
        s.sync().unwrap();
    }
    // Taken before the store is dropped: dropping it would close it cleanly.
    let disk = mem.after_crash(CrashKind::Process);
    drop(s);
    drop(store);
    disk
}

fn block_files(mem: &MemVfs) -> Vec<PathBuf> {
    let dir = Path::new(STREAM_DIR);
    let mut names: Vec<String> = mem
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".blk"))
        .collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

fn read(mem: &MemVfs, path: &Path) -> Vec<u8> {
    tidelog::io::read_file(mem, path).unwrap()
}

/// `(offset, len, seq)` of every record in a block file, walked by the length fields.
fn records(bytes: &[u8]) -> Vec<(usize, usize, u64)> {
    // A sealed block's body ends where its trailer's footer says.
    let bytes = if is_sealed(bytes) {
        let f = &bytes[bytes.len() - 64..];
        let body_end = u64::from_le_bytes(f[24..32].try_into().unwrap()) as usize;
        &bytes[..body_end]
    } else {
        bytes
    };
    let mut out = Vec::new();
    let mut off = BLOCK_HEADER_LEN;
    while off + 32 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if len < 40 || off + len > bytes.len() {
            break;
        }
        let seq = u64::from_le_bytes(bytes[off + 8..off + 16].try_into().unwrap());
        out.push((off, len, seq));
        off += len;
    }
    out
}

fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() >= 64 && &bytes[bytes.len() - 64..bytes.len() - 56] == b"TLSEAL\0\0"
}

/// Flips `xor` into byte `off` of `path` on a copy of `base`, reopens, and checks
/// `damage-contained`. Returns the sequence that did not survive, if any.
fn trial(
    base: &MemVfs,
    n: u64,
    path: &Path,
    off: usize,
    xor: u8,
    restart: bool,
    in_tail_record: bool,
) -> Result<Option<u64>, String> {
    let disk = base.after_crash(CrashKind::Process);
    disk.corrupt(path, off, xor)
        .map_err(|e| format!("corrupt: {e}"))?;
    let (store, s) = open(&disk)?;
    s.check_invariants()
        .map_err(|e| format!("check_invariants: {e}"))?;
    let rep = s.recovery_report().clone();
    let st = s.state();
    // Damage to the header of the very last record of the log cannot be told apart from a
    // torn write of that record, so recovery may cut it as a torn tail (and the next append
    // then gets its sequence). Anywhere else, last_seq must not go back.
    let cut_as_torn_tail = in_tail_record && st.last_seq == n - 1 && rep.torn_bytes > 0;
    if st.last_seq < n && !cut_as_torn_tail {
        return Err(format!(
            "seq-never-reused: last_seq {} < {n} after damage (report {rep:?})",
            st.last_seq
        ));
    }
    let mut bad = Vec::new();
    let mut not_found = Vec::new();
    for seq in 1..=n {
        let want = msg(seq);
        match s.load(seq) {
            Ok(m) => {
                let got = Msg {
                    subject: m.subject().to_owned(),
                    headers: m.headers().to_vec(),
                    payload: m.payload().to_vec(),
                };
                if got != want || m.seq != seq {
                    return Err(format!("load({seq}) returned different contents: {m:?}"));
                }
            }
            Err(LoadError::Corrupt(q)) if q == seq => bad.push(seq),
            Err(LoadError::NotFound(q)) if q == seq => {
                bad.push(seq);
                not_found.push(seq);
            }
            Err(e) => return Err(format!("load({seq}): {e:?}")),
        }
    }
    if bad.len() > 1 {
        return Err(format!(
            "{} messages lost to one damaged byte: {bad:?} (report {rep:?})",
            bad.len()
        ));
    }
    // A message that vanished (rather than failing its checksum on load) must be reported.
    for &q in &not_found {
        if cut_as_torn_tail && q == n {
            continue;
        }
        let reported = rep.lost.iter().any(|&(a, b)| (a..=b).contains(&q));
        if !reported {
            return Err(format!(
                "message {q} is silently gone: not in recovery_report().lost ({rep:?})"
            ));
        }
    }
    // Messages counted as live are exactly the ones that exist (Corrupt ones count: their
    // slot is live, only their bytes are bad).
    let live = n - not_found.len() as u64;
    if st.messages != live {
        return Err(format!(
            "state().messages is {} but {live} messages exist (missing {not_found:?}, report {rep:?})",
            st.messages
        ));
    }
    let a = s
        .append("after.damage", b"", b"still works")
        .map_err(|e| format!("append after damage: {e:?}"))?;
    if a.seq != st.last_seq + 1 {
        return Err(format!(
            "append after damage got {} after last_seq {}",
            a.seq, st.last_seq
        ));
    }
    match s.load(a.seq) {
        Ok(m) if m.payload() == b"still works" => {}
        other => return Err(format!("load of the new append: {other:?}")),
    }
    if restart {
        store
            .close()
            .map_err(|e| format!("close after damage: {e:?}"))?;
        drop(s);
        drop(store);
        let (_store, s) = open(&disk).map_err(|e| format!("second reopen: {e}"))?;
        s.check_invariants()
            .map_err(|e| format!("check_invariants after second reopen: {e}"))?;
        for seq in 1..=n {
            if bad.contains(&seq) {
                continue;
            }
            match s.load(seq) {
                Ok(m) if m.payload() == msg(seq).payload.as_slice() => {}
                other => {
                    return Err(format!(
                        "after a clean reopen of the damaged store, load({seq}) = {other:?}"
                    ))
                }
            }
        }
        match s.load(a.seq) {
            Ok(m) if m.payload() == b"still works" => {}
            other => {
                return Err(format!(
                    "after a clean reopen, the append made after the damage: {other:?}"
                ))
            }
        }
    }
    Ok(bad.first().copied())
}

/// The block file and byte range of the last record of the log.
fn tail_record(base: &MemVfs) -> (PathBuf, std::ops::Range<usize>) {
    let last = block_files(base).pop().expect("a block");
    let (off, len, _) = *records(&read(base, &last)).last().expect("a record");
    (last, off..off + len)
}

/// Runs `trial` at every offset in `offsets`, collecting failures.
fn sweep(
    base: &MemVfs,
    n: u64,
    path: &Path,
    offsets: impl IntoIterator<Item = usize>,
    restart_every: usize,
) -> (usize, usize, Vec<String>) {
    let tail = tail_record(base);
    let mut tried = 0;
    let mut lost_one = 0;
    let mut failures = Vec::new();
    for off in offsets {
        let xor = 1u8 << (off % 8);
        let restart = restart_every > 0 && off % restart_every == 0;
        tried += 1;
        let in_tail_record = tail.0 == path && tail.1.contains(&off);
        match trial(base, n, path, off, xor, restart, in_tail_record) {
            Ok(Some(_)) => lost_one += 1,
            Ok(None) => {}
            Err(e) => failures.push(format!(
                "{} byte {off} ^ {xor:#04x}: {e}",
                path.file_name().unwrap().to_string_lossy()
            )),
        }
    }
    (tried, lost_one, failures)
}

/// Fails with a summary of the failures grouped by kind (the message with digits masked).
fn report(what: &str, (tried, lost_one, failures): (usize, usize, Vec<String>)) {
    eprintln!(
        "{what}: {tried} positions, {lost_one} cost one message, {} failed",
        failures.len()
    );
    if failures.is_empty() {
        return;
    }
    let mut kinds: Vec<(String, usize, String)> = Vec::new();
    for f in &failures {
        let body = f.split_once(": ").map_or(f.as_str(), |(_, b)| b);
        let kind: String = body
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(90)
            .collect();
        match kinds.iter_mut().find(|k| k.0 == kind) {
            Some(k) => k.1 += 1,
            None => kinds.push((kind, 1, f.clone())),
        }
    }
    let mut msg = format!(
        "damage-contained ({what}): {} of {tried} damaged positions broke containment, {} kinds:\n",
        failures.len(),
        kinds.len()
    );
    for (kind, n, example) in &kinds {
        msg.push_str(&format!("  {n} x {kind}\n    e.g. {example}\n"));
    }
    panic!("{msg}");
}

const N: u64 = 120;

/// Flips every byte of the second block (sealed: header, records, offset table, footer) of a
/// store built with or without a clean close.
fn sweep_sealed_block(clean: bool, what: &str) {
    let base = build(N, clean);
    let blocks = block_files(&base);
    assert!(
        blocks.len() >= 4,
        "want several blocks, got {}",
        blocks.len()
    );
    let path = &blocks[1];
    let bytes = read(&base, path);
    assert!(is_sealed(&bytes), "block 2 is not sealed");
    report(what, sweep(&base, N, path, 0..bytes.len(), 1));
}

/// Reopened from a clean close: the checkpoint maps the block without reading it.
#[test]
fn damage_contained_every_byte_of_sealed_block_after_clean_close() {
    sweep_sealed_block(true, "sealed block, clean close");
}

/// Reopened after a crash (no checkpoint): recovery scans every block and must step over the
/// damaged record.
#[test]
fn damage_contained_every_byte_of_sealed_block_after_crash() {
    sweep_sealed_block(false, "sealed block, crash");
}

/// Strided and pseudo-random positions in every block file, sealed or active, after a clean
/// close and after a crash.
#[test]
fn damage_contained_sampled_bytes_of_every_block() {
    let mut all = (0, 0, Vec::new());
    for clean in [true, false] {
        let base = build(N, clean);
        let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
        for path in block_files(&base) {
            let bytes = read(&base, &path);
            let len = bytes.len();
            let mut offs: Vec<usize> = (0..len).step_by(97).collect();
            for _ in 0..40 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                offs.push((rng % len as u64) as usize);
            }
            let (tried, lost_one, failures) = sweep(&base, N, &path, offs, 1);
            eprintln!(
                "{} ({}, {}): {tried} positions, {lost_one} cost one message, {} failed",
                path.file_name().unwrap().to_string_lossy(),
                if is_sealed(&bytes) {
                    "sealed"
                } else {
                    "active"
                },
                if clean { "clean close" } else { "crash" },
                failures.len()
            );
            all.0 += tried;
            all.1 += lost_one;
            all.2.extend(
                failures
                    .into_iter()
                    .map(|f| format!("{} {f}", if clean { "[clean]" } else { "[crash]" })),
            );
        }
    }
    report("sampled bytes of every block", all);
}

/// A damaged record in the middle of the unsealed active block, found by recovery after a
/// crash: exactly that sequence is reported lost and every later record is kept. Damage to
/// the payload keeps the record's header (its sequence is known); damage to the header makes
/// recovery resynchronise on the next record.
#[test]
fn damage_in_active_block_reports_exactly_that_record() {
    // 12 more messages than fill five blocks, so the active block holds a dozen records.
    const N: u64 = 132;
    let base = build(N, false);
    let blocks = block_files(&base);
    let last = blocks.last().unwrap();
    let bytes = read(&base, last);
    assert!(!is_sealed(&bytes), "the last block should be active");
    let recs = records(&bytes);
    assert!(
        recs.len() >= 5,
        "active block holds only {} records",
        recs.len()
    );
    let (off, len, seq) = recs[recs.len() / 2];
    assert_eq!(recs.last().unwrap().2, N);
    for (what, at) in [
        ("payload", off + len - 12),
        ("seq field", off + 9),
        ("length field", off + 1),
        ("checksum", off + len - 1),
    ] {
        let disk = base.after_crash(CrashKind::Process);
        disk.corrupt(last, at, 0x5a).unwrap();
        let (_store, s) = open(&disk).unwrap();
        let rep = s.recovery_report().clone();
        assert_eq!(
            rep.lost,
            vec![(seq, seq)],
            "damaged {what} of record {seq}: recovery report {rep:?}"
        );
        s.check_invariants().unwrap();
        assert!(matches!(s.load(seq), Err(LoadError::NotFound(_))));
        for q in (1..=N).filter(|&q| q != seq) {
            let m = s
                .load(q)
                .unwrap_or_else(|e| panic!("damaged {what} of {seq}: load({q}): {e:?}"));
            assert_eq!(m.payload(), msg(q).payload.as_slice(), "payload of {q}");
        }
        let st = s.state();
        assert_eq!(
            (st.messages, st.last_seq, st.num_deleted),
            (N - 1, N, 1),
            "damaged {what}"
        );
        assert_eq!(s.append("x", b"", b"y").unwrap().seq, N + 1);
    }
}

/// A torn tail: an append whose write is cut in half by a crash. The store opens, reports the
/// torn bytes, the message is not there, everything before it is, and the next append gets
/// the next sequence.
#[test]
fn torn_tail_is_cut_and_sequence_continues() {
    let mut tore = 0;
    for batch in [false, true] {
        for k in 0..6 {
            let mem = MemVfs::new();
            let fv = FaultyVfs::new(Arc::new(mem.clone()), FaultPlan::new());
            let store = Store::open_with_vfs(DIR, Arc::new(fv.clone()), opts()).unwrap();
            let s = store
                .create_stream(StreamConfig::new(NAME).block_size(4096))
                .unwrap();
            for seq in 1..=N {
                append(&s, seq);
            }
            *fv.plan().lock() = FaultPlan::at(k, Fault::TornWrite);
            let big = vec![0xabu8; 1500];
            let r = if batch {
                let m = tidelog::NewMessage::new("t.t", &big);
                s.append_batch(&[m, m, m]).map(|_| ())
            } else {
                s.append("t.t", b"", &big).map(|_| ())
            };
            let fired = fv.plan().lock().ops() > k;
            if !fired {
                assert!(r.is_ok());
                continue;
            }
            assert!(r.is_err(), "an append torn at I/O #{k} was acknowledged");
            *fv.plan().lock() = FaultPlan::at(0, Fault::Crash);
            drop(s);
            drop(store);
            let disk = mem.after_crash(CrashKind::Process);
            let (_store, s) = open(&disk).unwrap();
            let rep = s.recovery_report().clone();
            let what = format!("batch {batch}, fault at I/O #{k}: {rep:?}");
            s.check_invariants().unwrap();
            assert!(rep.lost.is_empty(), "torn tail reported as lost: {what}");
            for q in 1..=N {
                assert_eq!(s.load(q).unwrap().payload(), msg(q).payload.as_slice());
            }
            // The unacknowledged append is either entirely there (the fault hit an fsync after
            // its write reached the OS) or entirely gone; a torn write always means gone.
            let st = s.state();
            let n_new = if batch { 3 } else { 1 };
            if st.last_seq == N {
                assert_eq!(st.messages, N, "{what}");
                assert!(matches!(s.load(N + 1), Err(LoadError::NotFound(_))));
            } else {
                assert_eq!(rep.torn_bytes, 0, "torn bytes reported yet kept: {what}");
                assert_eq!((st.last_seq, st.messages), (N + n_new, N + n_new), "{what}");
                for q in N + 1..=N + n_new {
                    assert_eq!(s.load(q).unwrap().payload(), big.as_slice(), "{what}");
                }
            }
            if rep.torn_bytes > 0 {
                tore += 1;
            }
            let a = s.append("after.tear", b"", b"ok").unwrap();
            assert_eq!(a.seq, st.last_seq + 1, "{what}");
            assert_eq!(s.load(a.seq).unwrap().payload(), b"ok");
        }
    }
    assert!(tore > 0, "no fault position produced a torn tail");
}

/// A torn tail made by cutting the last block file in the middle of its last record.
#[test]
fn cut_last_record_is_dropped_as_torn_tail() {
    let base = build(N, false);
    let last = block_files(&base).pop().unwrap();
    let bytes = read(&base, &last);
    let (off, len, seq) = *records(&bytes).last().unwrap();
    assert_eq!(seq, N);
    let f = base.open(&last, OpenMode::Existing).unwrap();
    f.set_len((off + len / 2) as u64).unwrap();
    drop(f);
    let (_store, s) = open(&base).unwrap();
    let rep = s.recovery_report().clone();
    assert_eq!(rep.torn_bytes, (len / 2) as u64, "{rep:?}");
    assert!(rep.lost.is_empty(), "{rep:?}");
    s.check_invariants().unwrap();
    assert_eq!(s.state().last_seq, N - 1);
    assert!(matches!(s.load(N), Err(LoadError::NotFound(_))));
    for q in 1..N {
        assert_eq!(s.load(q).unwrap().payload(), msg(q).payload.as_slice());
    }
    assert_eq!(s.append("a.b", b"", b"next").unwrap().seq, N);
}

// ---------------------------------------------------------------------------------------------
// Focused reproductions of the containment failures the sweeps above find.
// ---------------------------------------------------------------------------------------------

fn intact(s: &Stream, seq: u64) -> bool {
    s.load(seq).is_ok_and(|m| {
        m.payload() == msg(seq).payload.as_slice() && m.subject() == msg(seq).subject
    })
}

/// The first record of a sealed block is damaged and recovery (a crash, so a full scan) skips
/// it; that is contained. But the block's first sequence is then taken from the next record,
/// the next checkpoint stores that shifted first sequence, and a later clean reopen reads the
/// block's on-disk offset table (which still starts at the damaged record) with it: every
/// other message of the block is misaddressed and loads as `Corrupt`.
#[test]
fn damage_contained_first_record_of_sealed_block_across_clean_reopen() {
    let base = build(N, false);
    let path = &block_files(&base)[1];
    let (off, len, seq) = records(&read(&base, path))[0];
    let disk = base.after_crash(CrashKind::Process);
    disk.corrupt(path, off + len - 12, 0x5a).unwrap();
    let (store, s) = open(&disk).unwrap();
    assert_eq!(s.recovery_report().lost, vec![(seq, seq)]);
    s.check_invariants().unwrap();
    assert!((1..=N).filter(|&q| q != seq).all(|q| intact(&s, q)));
    store.close().unwrap();
    drop(s);
    drop(store);
    let (_store, s) = open(&disk).unwrap();
    let broken: Vec<u64> = (1..=N).filter(|&q| q != seq && !intact(&s, q)).collect();
    assert!(
        broken.is_empty(),
        "damage to message {seq} (first record of a sealed block) costs {} more messages after a clean reopen: {broken:?}; check_invariants: {:?}",
        broken.len(),
        s.check_invariants()
    );
    s.check_invariants().unwrap();
}

/// Header damage to the last record of a sealed block that is not the end of the log: the
/// block's trailer proves the record was complete, yet recovery treats it as a torn tail, so
/// the message vanishes without being listed in `recovery_report().lost`.
#[test]
fn damage_contained_last_record_of_sealed_block_is_reported_lost() {
    let base = build(N, false);
    let path = &block_files(&base)[1];
    let (off, _len, seq) = *records(&read(&base, path)).last().unwrap();
    let disk = base.after_crash(CrashKind::Process);
    disk.corrupt(path, off + 9, 0x01).unwrap();
    let (_store, s) = open(&disk).unwrap();
    let rep = s.recovery_report().clone();
    s.check_invariants().unwrap();
    assert!((1..=N).filter(|&q| q != seq).all(|q| intact(&s, q)));
    assert!(matches!(s.load(seq), Err(LoadError::NotFound(_))));
    assert!(
        rep.lost.iter().any(|&(a, b)| (a..=b).contains(&seq)),
        "message {seq} (last record of sealed block {}) is gone but not reported lost: {rep:?}",
        path.file_name().unwrap().to_string_lossy()
    );
}

/// A message whose record fails its checksum is still counted (correctly: its slot is live),
/// but the byte counters trust the damaged record's length field: `check_invariants` fails, and
/// removing the message subtracts a garbage length from the stream's live bytes.
#[test]
fn damage_contained_corrupt_message_keeps_byte_counts() {
    let base = build(N, true);
    let path = &block_files(&base)[1];
    let (off, len, seq) = records(&read(&base, path))[0];
    let disk = base.after_crash(CrashKind::Process);
    disk.corrupt(path, off + 3, 0x08).unwrap();
    let (_store, s) = open(&disk).unwrap();
    assert!(matches!(s.load(seq), Err(LoadError::Corrupt(_))));
    let before = s.state();
    s.remove(seq).unwrap();
    let after = s.state();
    assert_eq!(
        (after.messages, after.bytes),
        (before.messages - 1, before.bytes - len as u64),
        "removing corrupt message {seq} ({len} bytes on disk) from a stream of {} bytes",
        before.bytes
    );
    s.check_invariants().unwrap();
}

/// A damaged record that the checkpoint already covers in the unsealed active block (a clean
/// close, then damage): recovery re-indexes the records before the checkpoint position but
/// skips the damaged one without accounting for it, so the stream keeps counting a message
/// it can no longer find, which is neither `Corrupt` nor reported lost.
#[test]
fn damage_contained_checkpointed_record_in_active_block() {
    const N: u64 = 132;
    let base = build(N, true);
    let last = block_files(&base).pop().unwrap();
    let recs = records(&read(&base, &last));
    let (off, len, seq) = recs[recs.len() / 2];
    let disk = base.after_crash(CrashKind::Process);
    disk.corrupt(&last, off + len - 12, 0x5a).unwrap();
    let (_store, s) = open(&disk).unwrap();
    let rep = s.recovery_report().clone();
    assert!((1..=N).filter(|&q| q != seq).all(|q| intact(&s, q)));
    let gone = match s.load(seq) {
        Err(LoadError::Corrupt(_)) => false,
        Err(LoadError::NotFound(_)) => {
            assert!(
                rep.lost.iter().any(|&(a, b)| (a..=b).contains(&seq)),
                "message {seq} is gone but not reported lost: {rep:?}"
            );
            true
        }
        other => panic!("load({seq}) of a damaged record: {other:?}"),
    };
    assert_eq!(s.state().messages, N - gone as u64);
    s.check_invariants().unwrap();
}

/// Header damage to the last record of a sealed block that ends the log (the block after it
/// is gone): no later record tells its sequence, so only the trailer's offset table can name
/// it, and it must be reported lost rather than vanish.
#[test]
fn damage_contained_last_record_of_the_last_sealed_block_is_named_by_its_trailer() {
    let base = build(N, false);
    let blocks = block_files(&base);
    let (last_sealed, active) = (&blocks[blocks.len() - 2], &blocks[blocks.len() - 1]);
    assert!(is_sealed(&read(&base, last_sealed)));
    let (off, _len, seq) = *records(&read(&base, last_sealed)).last().unwrap();
    let disk = base.after_crash(CrashKind::Process);
    disk.remove_file(active).unwrap();
    disk.corrupt(last_sealed, off + 9, 0x01).unwrap();
    let (_store, s) = open(&disk).unwrap();
    let rep = s.recovery_report().clone();
    s.check_invariants().unwrap();
    assert!(
        rep.lost.iter().any(|&(a, b)| (a..=b).contains(&seq)),
        "message {seq} is gone but not reported lost: {rep:?}"
    );
    assert!((1..seq).all(|q| intact(&s, q)));
}
