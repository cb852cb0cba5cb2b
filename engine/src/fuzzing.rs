//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the corpus replay test, so the
//! normal test run exercises exactly what the fuzzers do. None of them may panic on any input:
//! their `assert!`s and `panic!`s fire only when the engine breaks one of its documented rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

use crate::block::{self, Scanned};
use crate::checkpoint::{decode_lease, encode_lease, Checkpoint, CKPT_MAGIC};
use crate::consumer::Saved;
use crate::io::{read_file, CrashKind, Fault, FaultPlan, FaultyVfs, MemVfs, OpenMode, Vfs};
use crate::record;
use crate::recovery::recover;
use crate::state::Block;
use crate::ttl::TimerParts;
use crate::{
    AckPolicy, AppendError, Clock, Consumer, ConsumerConfig, ConsumerError, DeliverPolicy,
    Durability, ManualClock, NewMessage, Store, StoreOptions, StoredMessage, Stream, StreamConfig,
    Ttl, WriteError,
};

/// Decodes arbitrary bytes as a record; a record that decodes must re-encode identically.
pub fn record_decoder(data: &[u8]) {
    if let Ok(r) = record::decode(data) {
        let mut again = vec![0u8; r.len];
        record::encode_into(
            &mut again,
            r.kind,
            r.flags,
            r.seq,
            r.ts,
            r.subject,
            r.headers,
            r.payload,
            record::Extras {
                ttl: r.ttl,
                msg_id: r.msg_id,
            },
        );
        assert_eq!(&again[..], &data[..r.len], "decode/encode round trip");
    }
    let _ = block::scan(data, 0, data.len(), data.first() == Some(&1), |_, s| {
        if let Scanned::Record(r) = s {
            assert!(r.len >= record::MIN_RECORD_LEN);
        }
    });
    let _ = Checkpoint::decode(data);
    if let Some(t) = block::decode_trailer(data) {
        // Either trailer form: its tables must read within the file.
        let map = Arc::new(crate::io::Mapping::Shared(Arc::new(data.to_vec())));
        let offsets = t.offsets(&map, t.slots);
        for i in 0..t.slots.min(1 << 16) {
            let _ = offsets.get(i);
        }
        if let Some(s) = t.subjects(data) {
            for i in 0..t.slots.min(1 << 16) {
                let _ = s.id(i);
            }
        }
    }
}

/// Recovers a stream whose only block file holds `data` (after a valid header when
/// `data` starts with a 0 byte), then checks its invariants and that it accepts appends.
pub fn block_recovery(data: &[u8]) {
    let vfs = MemVfs::new();
    let dir = Path::new("/s");
    if vfs.create_dir_all(dir).is_err() {
        return;
    }
    let mut bytes = Vec::new();
    if data.first() == Some(&0) {
        let h = block::BlockHeader {
            stream_id: 7,
            block_id: 1,
            first_seq: 1,
            created_ns: 0,
        };
        bytes.extend_from_slice(&h.encode());
        bytes.extend_from_slice(&data[1..]);
    } else {
        bytes.extend_from_slice(data);
    }
    let Ok(f) = vfs.open(&Block::path(dir, 1), OpenMode::CreateNew) else {
        return;
    };
    if f.write_all_at(&bytes, 0).is_err() {
        return;
    }
    let Ok(rec) = recover(&vfs, dir, 7, 1 << 16) else {
        return;
    };
    if let Err(e) = rec.state.check_invariants() {
        panic!("invariants after recovery: {e}");
    }
    let clock: Arc<dyn crate::Clock> = Arc::new(crate::ManualClock::new(1));
    let cfg = crate::StreamConfig::new("s").durability(crate::Durability::None);
    let s = crate::Stream::from_parts(
        cfg,
        Arc::new(vfs),
        clock,
        dir.to_path_buf(),
        true,
        rec.state,
        rec.lease,
        rec.report,
    );
    if let Ok(a) = s.append("a.b", b"", b"x") {
        assert!(s.load(a.seq).is_ok(), "fresh append must load");
    }
}

/// Restores arbitrary bytes as a snapshot into an empty store: never a panic, and whatever it
/// restored (all of it, or the frames before the damage) passes the invariants and reads back.
pub fn snapshot_restore(data: &[u8]) {
    let opts = crate::StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let Ok(store) = crate::Store::open_with_vfs("/f", Arc::new(MemVfs::new()), opts) else {
        return;
    };
    let _ = store.restore(&mut &data[..]);
    for name in store.stream_names() {
        let Ok(s) = store.stream(&name) else { continue };
        if let Err(e) = s.check_invariants() {
            panic!("invariants after a restore: {e}");
        }
        let mut from = 1;
        while let Ok(Some(m)) = s.load_next(">", from) {
            from = m.seq + 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by the targets below.

/// A quarter second past a whole second, so TTLs fall due inside a second, not on its edge.
const START_NS: i64 = 1_700_000_000_000_000_000 + 250_000_000;
const SEC: i64 = 1_000_000_000;
/// Subjects of the template streams and of `op_sequence`.
const SUBJECTS: [&str; 4] = ["a.x", "a.y", "b", "c.d.e"];

fn store_options(clock: &Arc<ManualClock>) -> StoreOptions {
    StoreOptions {
        manual_maintenance: true,
        clock: Some(clock.clone() as Arc<dyn Clock>),
        ..Default::default()
    }
}

/// Every live message of `s`, oldest first; `Err` says which read failed.
fn live_messages(s: &Stream) -> Result<Vec<StoredMessage>, String> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        match s.load_next(">", from) {
            Ok(Some(m)) => {
                from = m.seq + 1;
                out.push(m);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(format!("load_next(\">\", {from}): {e}")),
        }
    }
}

/// Puts `bytes` at `path` behind the engine's back (a damaged or forged file).
fn put_file(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> bool {
    let Ok(f) = vfs.open(path, OpenMode::CreateOrOpen) else {
        return false;
    };
    f.set_len(0).is_ok() && f.write_all_at(bytes, 0).is_ok()
}

fn seal(mut b: Vec<u8>) -> Vec<u8> {
    let sum = xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

// ---------------------------------------------------------------------------------------------
// Checkpoint, timers and lease.

/// How `checkpoint_decoder` reads its input, by its first byte when that is below 0x20 (its
/// low four bits): the rest after a valid header of version 3, 2 or 1, as the timers section
/// of the template's checkpoint, or as the body of a lease file, each sealed with a correct
/// checksum so the fuzzer gets past it. Any other first byte (the engine's own files start
/// with `T`) takes the whole input as the checkpoint file.
const CK_WRAP_V3: u8 = 0;
const CK_WRAP_V2: u8 = 1;
const CK_WRAP_V1: u8 = 2;
const CK_WRAP_TIMERS: u8 = 3;
const CK_WRAP_LEASE: u8 = 4;
/// Set in a wrap byte: recovery keeps the template's `checkpoint.prev` to fall back to (a
/// whole file always keeps it).
pub const CK_KEEP_PREV: u8 = 0x10;
/// The stream id of the checked-in checkpoint and lease seeds. A whole checkpoint, or a
/// wrapped lease, with this id gets the template's (random) one, so a seed describes the
/// directory it is recovered in; any other id stays, another stream's file.
pub const SEED_STREAM_ID: u64 = 7;

/// A stream directory as a crash left it: sealed blocks, an active block with records after
/// the newest checkpoint, both checkpoints, deletes and TTL timers.
struct CkTemplate {
    vfs: MemVfs,
    dir: PathBuf,
    cfg: StreamConfig,
    stream_id: u64,
    checkpoint: Vec<u8>,
    /// The checkpoint before its timers section.
    before_timers: Vec<u8>,
    /// What recovery makes of the untouched directory.
    messages: Vec<StoredMessage>,
    last_seq: u64,
}

static CK_TEMPLATE: OnceLock<Option<CkTemplate>> = OnceLock::new();

fn build_ck_template() -> Option<CkTemplate> {
    let mem = MemVfs::new();
    let clock = Arc::new(ManualClock::new(START_NS));
    let store = Store::open_with_vfs("/k", Arc::new(mem.clone()), store_options(&clock)).ok()?;
    let cfg = StreamConfig::new("k")
        .durability(Durability::Always)
        .block_size(4096)
        .allow_msg_ttl(true);
    let s = store.create_stream(cfg.clone()).ok()?;
    let append = |i: u64| {
        let payload = vec![i as u8; 40 + (i as usize % 7) * 30];
        let m = NewMessage::new(SUBJECTS[i as usize % 4], &payload);
        let m = match i % 5 {
            0 => m.with_ttl(Ttl::Secs(3600 + i)),
            1 => m.with_ttl(Ttl::Never),
            _ => m,
        };
        s.append_msg(&m).map(|_| ())
    };
    for i in 0..60 {
        append(i).ok()?;
    }
    for q in [3, 4, 5, 17, 30] {
        s.remove(q).ok()?;
    }
    s.checkpoint().ok()?;
    for i in 60..90 {
        append(i).ok()?;
    }
    s.append_batch(&[
        NewMessage::new("b", b"one"),
        NewMessage::new("c.d.e", b"two").with_ttl(Ttl::Secs(7200)),
    ])
    .ok()?;
    s.remove(62).ok()?;
    s.checkpoint().ok()?;
    for i in 90..100 {
        append(i).ok()?;
    }
    s.remove(95).ok()?;
    // A crash, not a close: recovery then replays what came after the newest checkpoint.
    let vfs = mem.after_crash(CrashKind::Process);
    drop(s);
    drop(store);
    let dir = PathBuf::from("/k/streams/k");
    let checkpoint = read_file(&vfs, &dir.join("checkpoint")).ok()?;
    let c = Checkpoint::decode(&checkpoint).ok()?;
    let mut before_timers = Checkpoint {
        timers: TimerParts::default(),
        ..c.clone()
    }
    .encode();
    // Empty timers are two zero varints, then comes the checksum.
    before_timers.truncate(before_timers.len().checked_sub(10)?);
    let probe = vfs.after_crash(CrashKind::Process);
    let rec = recover(&probe, &dir, c.stream_id, 4096).ok()?;
    let s = Stream::from_parts(
        cfg.clone(),
        Arc::new(probe),
        clock,
        dir.clone(),
        true,
        rec.state,
        rec.lease,
        rec.report,
    );
    let messages = live_messages(&s).ok()?;
    let last_seq = s.state().last_seq;
    Some(CkTemplate {
        vfs,
        dir,
        cfg,
        stream_id: c.stream_id,
        checkpoint,
        before_timers,
        messages,
        last_seq,
    })
}

/// Arbitrary bytes through the checkpoint, timers and lease decoders (each value that decodes
/// must survive encode and decode unchanged), then as the checkpoint (or lease) of a real
/// stream directory: recovery must not panic, and when it refuses the forged checkpoint it
/// must recover exactly what the untouched directory holds, through `checkpoint.prev` or a
/// full replay.
pub fn checkpoint_decoder(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tpl = CK_TEMPLATE.get_or_init(build_ck_template).as_ref();
    let stream_id = tpl.map_or(0, |t| t.stream_id);
    let (wrap, keep_prev) = match mode {
        0..0x20 => (mode & 0x0f, mode & CK_KEEP_PREV != 0),
        _ => (u8::MAX, true),
    };
    let (name, bytes) = match wrap {
        CK_WRAP_V3 => ("checkpoint", wrap_checkpoint(3, rest, stream_id)),
        CK_WRAP_V2 => ("checkpoint", wrap_checkpoint(2, rest, stream_id)),
        CK_WRAP_V1 => ("checkpoint", wrap_checkpoint(1, rest, stream_id)),
        CK_WRAP_TIMERS => {
            let mut b = tpl.map_or_else(Vec::new, |t| t.before_timers.clone());
            b.extend_from_slice(rest);
            ("checkpoint", seal(b))
        }
        CK_WRAP_LEASE => {
            let mut b = b"TLLEASE\0".to_vec();
            b.extend_from_slice(&rest[..rest.len().min(16)]);
            if b.len() >= 16 && b[8..16] == SEED_STREAM_ID.to_le_bytes() {
                b[8..16].copy_from_slice(&stream_id.to_le_bytes());
            }
            ("lease", seal(b))
        }
        _ if data.len() >= 104
            && data.starts_with(&CKPT_MAGIC)
            && data[16..24] == SEED_STREAM_ID.to_le_bytes() =>
        {
            let mut b = data[..data.len() - 8].to_vec();
            b[16..24].copy_from_slice(&stream_id.to_le_bytes());
            ("checkpoint", seal(b))
        }
        _ => ("checkpoint", data.to_vec()),
    };
    checkpoint_round_trip(&bytes);
    for b in [data, rest, &bytes[..]] {
        if let Some((id, seq)) = decode_lease(b) {
            assert!(encode_lease(id, seq) == b, "lease decode/encode round trip");
        }
    }
    if let Some(t) = tpl {
        recover_forged(t, name, &bytes, keep_prev);
    }
}

/// Seeds for `checkpoint_decoder` made from the stream directory it recovers (which no other
/// code can reach): its checkpoint as is, after the wrap header (with and without
/// `checkpoint.prev` to fall back to), its timers section alone, and leases of its stream.
pub fn checkpoint_seeds() -> Vec<(String, Vec<u8>)> {
    let Some(t) = CK_TEMPLATE.get_or_init(build_ck_template).as_ref() else {
        return Vec::new();
    };
    let mut as_seed = t.checkpoint[..t.checkpoint.len() - 8].to_vec();
    as_seed[16..24].copy_from_slice(&SEED_STREAM_ID.to_le_bytes());
    let ck = &seal(as_seed);
    let body = &ck[16..ck.len() - 8];
    let timers = &ck[t.before_timers.len()..ck.len() - 8];
    let wrapped = |mode: u8, rest: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(rest);
        v
    };
    let mut lease = SEED_STREAM_ID.to_le_bytes().to_vec();
    lease.extend_from_slice(&(t.last_seq + 1000).to_le_bytes());
    let mut lease_past_max = SEED_STREAM_ID.to_le_bytes().to_vec();
    lease_past_max.extend_from_slice(&(record::MAX_SEQ + 5).to_le_bytes());
    vec![
        ("tpl-checkpoint.bin".into(), ck.clone()),
        ("tpl-v3.bin".into(), wrapped(CK_WRAP_V3, body)),
        (
            "tpl-v3-keep-prev.bin".into(),
            wrapped(CK_WRAP_V3 | CK_KEEP_PREV, body),
        ),
        ("tpl-timers.bin".into(), wrapped(CK_WRAP_TIMERS, timers)),
        (
            "tpl-timers-keep-prev.bin".into(),
            wrapped(CK_WRAP_TIMERS | CK_KEEP_PREV, timers),
        ),
        (
            "tpl-timers-empty.bin".into(),
            wrapped(CK_WRAP_TIMERS, &[0, 0]),
        ),
        ("tpl-lease.bin".into(), wrapped(CK_WRAP_LEASE, &lease)),
        (
            "tpl-lease-past-max.bin".into(),
            wrapped(CK_WRAP_LEASE, &lease_past_max),
        ),
        (
            "tpl-lease-short.bin".into(),
            wrapped(CK_WRAP_LEASE, &lease[..12]),
        ),
    ]
}

fn wrap_checkpoint(version: u16, rest: &[u8], stream_id: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(24 + rest.len());
    b.extend_from_slice(&CKPT_MAGIC);
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&[0u8; 6]);
    b.extend_from_slice(rest);
    // Another stream's checkpoint is refused before anything else is looked at.
    if b.len() >= 24 {
        b[16..24].copy_from_slice(&stream_id.to_le_bytes());
    }
    seal(b)
}

fn checkpoint_round_trip(bytes: &[u8]) {
    let Ok(c) = Checkpoint::decode(bytes) else {
        return;
    };
    // `Checkpoint::encode` sizes its buffer for 16 bytes per delete range and debug-asserts
    // that estimate, but a range's two varints take up to 18 (from 2^56 on): such a state is
    // not encoded here until the estimate allows for it.
    let mut prev = 0;
    for (s, e) in c.deletes.ranges() {
        if crate::varint::len(s - prev) + crate::varint::len(e - s) > 16 {
            return;
        }
        prev = e;
    }
    let enc = c.encode();
    match Checkpoint::decode(&enc) {
        Ok(again) => {
            assert!(
                again == c,
                "checkpoint decode(encode(x)) != x:\n{c:?}\nbecame\n{again:?}"
            );
            assert!(again.encode() == enc, "checkpoint encoding is not stable");
        }
        Err(e) => panic!("a decoded checkpoint re-encodes to bytes that do not decode: {e}"),
    }
}

/// Recovers a copy of the template with `bytes` as its file `name`.
fn recover_forged(t: &CkTemplate, name: &str, bytes: &[u8], keep_prev: bool) {
    let vfs = t.vfs.after_crash(CrashKind::Process);
    if !put_file(&vfs, &t.dir.join(name), bytes) {
        return;
    }
    if !keep_prev && vfs.remove_file(&t.dir.join("checkpoint.prev")).is_err() {
        return;
    }
    // A lease names the lowest last sequence recovery may end at (past the end only).
    let lease = match name {
        "lease" => decode_lease(bytes).filter(|&(id, _)| id == t.stream_id),
        _ => None,
    };
    let last_seq = match lease {
        // Past the sequence limit the lease is damaged: recovery skips one span instead.
        Some((_, seq)) if seq > record::MAX_SEQ => t.last_seq,
        Some((_, seq)) => t.last_seq.max(seq),
        None => t.last_seq,
    };
    let Ok(rec) = recover(&vfs, &t.dir, t.stream_id, 4096) else {
        return;
    };
    if lease.is_some_and(|(_, seq)| seq > record::MAX_SEQ) {
        assert!(
            rec.report.lease_error.is_some(),
            "a lease past the sequence limit was taken as sound"
        );
    }
    // A checkpoint recovery accepted may say anything its checks cannot refute (its checksum
    // vouches for it); only one it refused, or the template's own, pins the result down.
    let exact = name == "lease"
        || rec.report.checkpoint_error.is_some()
        || bytes == t.checkpoint.as_slice();
    if !exact {
        let _ = rec.state.check_invariants();
        return;
    }
    if let Err(e) = rec.state.check_invariants() {
        panic!("invariants after recovering with a forged {name}: {e}");
    }
    let clock = Arc::new(ManualClock::new(START_NS + 10 * SEC));
    let s = Stream::from_parts(
        t.cfg.clone(),
        Arc::new(vfs),
        clock,
        t.dir.clone(),
        true,
        rec.state,
        rec.lease,
        rec.report,
    );
    let got = match live_messages(&s) {
        Ok(g) => g,
        Err(e) => panic!("a message does not load after recovering with a forged {name}: {e}"),
    };
    if got != t.messages {
        let seqs = |v: &[StoredMessage]| v.iter().map(|m| m.seq).collect::<Vec<_>>();
        panic!(
            "damage-contained: a forged {name} changed what recovery finds: seqs {:?}, \
             expected {:?} ({:?})",
            seqs(&got),
            seqs(&t.messages),
            s.recovery_report()
        );
    }
    // A lease that cannot be trusted makes recovery skip ahead: past the end is sound.
    let st = s.state();
    assert!(
        st.last_seq == last_seq || name == "lease" && st.last_seq > last_seq,
        "recovering with a forged {name}: last_seq {} (expected {last_seq})",
        st.last_seq
    );
    if let Ok(a) = s.append("a.x", b"", b"after") {
        assert!(
            a.seq == st.last_seq + 1,
            "seq-never-reused: append got {}",
            a.seq
        );
        assert!(s.load(a.seq).is_ok(), "fresh append must load");
    }
}

// ---------------------------------------------------------------------------------------------
// Consumer state.

const CONS_MAGIC: &[u8; 8] = b"TLCONS\0\0";
const CONS_DIR: &str = "/c";

static CONS_TEMPLATE: OnceLock<Option<MemVfs>> = OnceLock::new();

/// A closed store with stream `s`: 16 messages on four subjects, two of them removed.
fn build_cons_template() -> Option<MemVfs> {
    let mem = MemVfs::new();
    let clock = Arc::new(ManualClock::new(START_NS));
    let store =
        Store::open_with_vfs(CONS_DIR, Arc::new(mem.clone()), store_options(&clock)).ok()?;
    let s = store
        .create_stream(StreamConfig::new("s").durability(Durability::Always))
        .ok()?;
    for i in 0..16u8 {
        s.append(SUBJECTS[usize::from(i % 4)], b"", &[i; 24]).ok()?;
    }
    s.remove(5).ok()?;
    s.remove(6).ok()?;
    drop(s);
    store.close().ok()?;
    Some(mem)
}

/// Wraps a JSON body in a consumer file header and checksum.
pub fn wrap_consumer_json(json: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(32 + json.len());
    b.extend_from_slice(CONS_MAGIC);
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&[0u8; 6]);
    b.extend_from_slice(&(json.len() as u64).to_le_bytes());
    b.extend_from_slice(json);
    seal(b)
}

/// Arbitrary bytes as a consumer's file (a leading 0 byte: the rest is its JSON, in a valid
/// header and checksum). A state that decodes must survive encode and decode unchanged. Then
/// the file is put in a real stream's directory and the store opened: the stream opens, with
/// the consumer or with the file reported damaged; the consumer answers fetches, acks, naks,
/// terms and state queries (or returns a typed error), delivers only live messages matching
/// its filters, and what the engine saves of it loads again after a reopen.
pub fn consumer_state(data: &[u8]) {
    let bytes = match data.split_first() {
        Some((0, json)) => wrap_consumer_json(json),
        _ => data.to_vec(),
    };
    let saved = match Saved::decode(&bytes) {
        Ok(s) => Some(consumer_round_trip(&s)),
        Err(_) => None,
    };
    if let Some(tpl) = CONS_TEMPLATE.get_or_init(build_cons_template) {
        open_with_consumer_file(tpl, &bytes, saved);
    }
}

/// Checks the round trip of a decoded state; returns the consumer's name and `next`.
fn consumer_round_trip(s: &Saved) -> (String, u64) {
    let enc = s.encode();
    let again = match Saved::decode(&enc) {
        Ok(a) => a,
        Err(e) => panic!("a decoded consumer state re-encodes to a file that does not decode: {e}"),
    };
    let (a, b) = (
        serde_json::to_value(s).ok(),
        serde_json::to_value(&again).ok(),
    );
    assert!(
        a.is_some() && a == b,
        "consumer state decode(encode(x)) != x:\n{a:?}\nbecame\n{b:?}"
    );
    assert!(
        again.encode() == enc,
        "consumer state encoding is not stable"
    );
    let name = a
        .as_ref()
        .and_then(|v| v.get("config")?.get("name")?.as_str())
        .unwrap_or_default()
        .to_owned();
    let next = a
        .as_ref()
        .and_then(|v| v.get("next")?.as_u64())
        .unwrap_or_default();
    (name, next)
}

/// `saved`: the decoded consumer's name and `next`, if the file decodes.
fn open_with_consumer_file(tpl: &MemVfs, bytes: &[u8], saved: Option<(String, u64)>) {
    let vfs = tpl.after_crash(CrashKind::Process);
    let dir = Path::new(CONS_DIR).join("streams/s");
    if !put_file(&vfs, &dir.join("consumer.f"), bytes) {
        return;
    }
    let clock = Arc::new(ManualClock::new(START_NS + 5 * SEC));
    let open = || {
        let store =
            match Store::open_with_vfs(CONS_DIR, Arc::new(vfs.clone()), store_options(&clock)) {
                Ok(s) => s,
                Err(e) => panic!("a consumer file kept the store from opening: {e}"),
            };
        match store.stream("s") {
            Ok(s) => (store, s),
            Err(e) => panic!(
                "a consumer file made its stream unusable: {e} {:?}",
                store.damaged_streams()
            ),
        }
    };
    let (store, s) = open();
    let damaged: Vec<String> = s.damaged_consumers().into_iter().map(|(n, _)| n).collect();
    let mut names = s.consumer_names();
    names.sort();
    match saved.as_ref().map(|(n, _)| n) {
        Some(n) => assert!(
            damaged.is_empty() && names == [n.clone()],
            "a consumer file that decodes: consumers {names:?}, damaged {damaged:?}"
        ),
        None => assert!(
            damaged == ["f"] && names.is_empty(),
            "a consumer file that does not decode: consumers {names:?}, damaged {damaged:?}"
        ),
    }
    for n in &names {
        if let Ok(c) = s.consumer(n) {
            exercise_consumer(&s, &c, &clock, saved.as_ref().map_or(0, |&(_, n)| n));
        }
    }
    if let Err(e) = s.check_invariants() {
        panic!("invariants with a restored consumer: {e}");
    }
    drop(s);
    if let Err(e) = store.close() {
        panic!("close with a restored consumer: {e}");
    }
    drop(store);
    // What the engine saved of the consumer must load again.
    let (_store, s) = open();
    let again: Vec<(String, String)> = s.damaged_consumers();
    assert!(
        again.iter().map(|(n, _)| n).eq(damaged.iter()),
        "the engine's own consumer file does not load: {again:?}"
    );
    let mut names_again = s.consumer_names();
    names_again.sort();
    assert!(
        names_again == names,
        "consumers {names:?} became {names_again:?} across a reopen"
    );
    for n in &names {
        if let Ok(c) = s.consumer(n) {
            let _ = c.state();
            let _ = c.fetch(4, 0);
        }
    }
}

/// Drives a consumer whose state came from an arbitrary file. The file's pending messages
/// and starters are delivered whatever its filters say (it may be any state); what it finds
/// from `next` on must match them.
fn exercise_consumer(s: &Stream, c: &Consumer, clock: &ManualClock, next: u64) {
    let filters = c.config().match_filters();
    let max_pending = c.config().max_ack_pending;
    let check_state = |c: &Consumer| {
        if let Ok(st) = c.state() {
            assert!(
                st.num_ack_pending <= max_pending,
                "{} pending deliveries, max_ack_pending {max_pending}",
                st.num_ack_pending
            );
        }
    };
    check_state(c);
    for _ in 0..2 {
        let mut seqs = Vec::new();
        if let Ok(ds) = c.fetch(8, 0) {
            for d in ds {
                let m = &d.message;
                assert!(
                    m.seq < next
                        || filters
                            .iter()
                            .any(|f| crate::subject::matches(f, m.subject())),
                    "delivered {} on {:?}, which its filters {filters:?} do not take",
                    m.seq,
                    m.subject()
                );
                match s.load(m.seq) {
                    Ok(l) => assert!(l == *m, "delivered {m:?}, the stream holds {l:?}"),
                    Err(e) => panic!("delivered message {} the stream does not have: {e}", m.seq),
                }
                assert!(d.delivery_count >= 1, "delivery count 0");
                seqs.push(m.seq);
            }
        }
        for (i, &q) in seqs.iter().enumerate() {
            let _ = match i % 4 {
                0 => c.ack(q),
                1 => c.nak(q, None),
                2 => c.term(q),
                _ => c.in_progress(q),
            };
        }
        let _ = c.ack(0);
        let _ = c.ack(u64::MAX);
        let _ = c.nak(u64::MAX, Some(Duration::MAX));
        let _ = c.term(1);
        check_state(c);
        clock.advance_ns(40 * SEC);
    }
    let _ = c.save_now();
}

// ---------------------------------------------------------------------------------------------
// Operation sequences against a model.

const OP_DIR: &str = "/o";
const OP_SIZES: [usize; 8] = [0, 1, 9, 40, 120, 600, 1500, 5000];
const OP_TTLS: [Option<Ttl>; 8] = [
    None,
    None,
    None,
    Some(Ttl::Secs(1)),
    Some(Ttl::Secs(2)),
    Some(Ttl::Secs(30)),
    Some(Ttl::Never),
    None,
];
const OP_STEPS_NS: [i64; 8] = [
    1_000_000,
    250_000_000,
    999_000_000,
    SEC,
    2 * SEC,
    5 * SEC,
    31 * SEC,
    61 * SEC,
];
const OP_CONSUMERS: [&str; 2] = ["c0", "c1"];
const OP_FILTERS: [&[&str]; 3] = [&[], &["a.*"], &["b", "c.>"]];
/// Operations one input runs at most (a run stays in the milliseconds).
pub const MAX_OPS: usize = 200;

/// A message as the input describes it.
#[derive(Clone, Debug)]
pub struct GenMsg {
    subject: usize,
    size: usize,
    extra_headers: bool,
    salt: u8,
    ttl: Option<Ttl>,
}

/// One step of `op_sequence`; `describe_ops` prints an input as these.
#[derive(Clone, Debug)]
pub enum Op {
    Append(GenMsg),
    Batch(Vec<GenMsg>),
    /// Removes (or erases) a live message, or a sequence near the end that may hold none.
    Remove {
        pick: u8,
        erase: bool,
    },
    Purge,
    Compact {
        pick: u8,
    },
    Skip(u64),
    Advance(i64),
    ExpireNow,
    /// Sync, checkpoint, maintenance tick or reclaim: nothing a reader can see changes.
    Upkeep(u8),
    /// Clean close and reopen on the same disk.
    Restart,
    /// The process dies; reopen on what a crash of this kind leaves.
    Crash(CrashKind),
    /// Fails the `after`-th mutating I/O from now; a `Crash` or `TornWrite` then kills the
    /// process and the disk is what a crash of `kind` leaves.
    Arm {
        after: u64,
        fault: Fault,
        kind: CrashKind,
    },
    FailSyncs(u64),
    Full(bool),
    ClearFaults,
    CreateConsumer {
        c: usize,
        cfg: u8,
    },
    DeleteConsumer(usize),
    Fetch {
        c: usize,
        n: usize,
    },
    /// Ack, nak, term or in_progress of a recent delivery or of any small sequence.
    Ack {
        c: usize,
        kind: u8,
        pick: u8,
    },
    SaveConsumer(usize),
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    /// The next byte; 0 past the end, so a cut input still makes whole operations.
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    fn done(&self) -> bool {
        self.at >= self.data.len()
    }
}

fn gen_msg(r: &mut Reader<'_>) -> GenMsg {
    let (a, b) = (r.byte(), r.byte());
    GenMsg {
        subject: usize::from(a % 4),
        size: OP_SIZES[usize::from(a / 4 % 8)],
        extra_headers: a & 0x20 != 0,
        salt: b,
        ttl: OP_TTLS[usize::from(b % 8)],
    }
}

fn crash_kind(b: u8) -> CrashKind {
    if b & 1 == 0 {
        CrashKind::Process
    } else {
        CrashKind::PowerLoss
    }
}

/// A stored message for a failure report (its payload by length only).
fn show(m: &StoredMessage) -> String {
    format!(
        "#{} {:?} headers {:?} payload {} bytes ts {} ttl {:?}",
        m.seq,
        m.subject(),
        String::from_utf8_lossy(m.headers()),
        m.payload().len(),
        m.ts,
        m.ttl
    )
}

/// The input's setup byte and operations (the encoding `op_sequence` documents).
pub fn parse_ops(data: &[u8]) -> (u8, Vec<Op>) {
    let mut r = Reader { data, at: 0 };
    let setup = r.byte();
    let mut ops = Vec::new();
    while !r.done() && ops.len() < MAX_OPS {
        let code = r.byte() % 25;
        let op = match code {
            0..=5 => Op::Append(gen_msg(&mut r)),
            6 | 7 => {
                let n = 1 + r.byte() % 4;
                Op::Batch((0..n).map(|_| gen_msg(&mut r)).collect())
            }
            8 | 9 => Op::Remove {
                pick: r.byte(),
                erase: code == 9,
            },
            10 => Op::Purge,
            11 => Op::Compact { pick: r.byte() },
            12 => Op::Skip(1 + u64::from(r.byte() % 40)),
            13 | 14 => Op::Advance(OP_STEPS_NS[usize::from(r.byte() % 8)]),
            15 => Op::ExpireNow,
            16 => Op::Upkeep(r.byte() % 4),
            17 => Op::Restart,
            18 => Op::Crash(crash_kind(r.byte())),
            19 => {
                let after = u64::from(r.byte() % 48);
                let b = r.byte();
                let fault = [Fault::Eio, Fault::NoSpace, Fault::Crash, Fault::TornWrite]
                    [usize::from(b % 4)];
                Op::Arm {
                    after,
                    fault,
                    kind: crash_kind(b / 4),
                }
            }
            20 => {
                let b = r.byte();
                match b % 4 {
                    0 => Op::FailSyncs(u64::from(b / 4 % 8)),
                    1 => Op::Full(true),
                    2 => Op::Full(false),
                    _ => Op::ClearFaults,
                }
            }
            21 => {
                let c = usize::from(r.byte() % 2);
                Op::CreateConsumer { c, cfg: r.byte() }
            }
            22 => {
                let b = r.byte();
                Op::Fetch {
                    c: usize::from(b % 2),
                    n: 1 + usize::from(b / 2 % 8),
                }
            }
            23 => {
                let b = r.byte();
                Op::Ack {
                    c: usize::from(b % 2),
                    kind: b / 2 % 4,
                    pick: r.byte(),
                }
            }
            _ => {
                let b = r.byte();
                let c = usize::from(b % 2);
                if b & 2 == 0 {
                    Op::SaveConsumer(c)
                } else {
                    Op::DeleteConsumer(c)
                }
            }
        };
        ops.push(op);
    }
    (setup, ops)
}

fn op_consumer_config(name: &str, b: u8) -> ConsumerConfig {
    let ack = [AckPolicy::Explicit, AckPolicy::All, AckPolicy::None][usize::from(b % 3)];
    let deliver = [
        DeliverPolicy::All,
        DeliverPolicy::New,
        DeliverPolicy::Last,
        DeliverPolicy::LastPerSubject,
        DeliverPolicy::ByStartSeq(3),
    ][usize::from(b / 9 % 5)];
    let mut c = ConsumerConfig::new(name)
        .filters(OP_FILTERS[usize::from(b / 3 % 3)].iter().copied())
        .deliver(deliver)
        .ack(ack)
        .ack_wait(Duration::from_secs(if b & 0x40 != 0 { 1 } else { 30 }))
        .max_ack_pending(if b & 0x80 != 0 { 3 } else { 100 });
    if ack != AckPolicy::None && b / 45 % 2 == 1 {
        c = c.max_deliver(2);
    }
    c
}

/// A message as the model knows it.
#[derive(Clone, PartialEq, Eq)]
struct OpMsg {
    subject: &'static str,
    headers: Vec<u8>,
    payload: Vec<u8>,
    ts: i64,
    ttl: Option<Ttl>,
}

impl std::fmt::Debug for OpMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpMsg")
            .field("subject", &self.subject)
            .field("headers", &String::from_utf8_lossy(&self.headers))
            .field("payload_len", &self.payload.len())
            .field("ts", &self.ts)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl OpMsg {
    /// Same message, whatever its timestamp (not known for an append that failed).
    fn same_body(&self, m: &StoredMessage) -> bool {
        m.subject() == self.subject
            && m.headers() == self.headers.as_slice()
            && m.payload() == self.payload.as_slice()
            && m.ttl == self.ttl
            && !m.marker
            && m.rollup.is_none()
    }
    fn same(&self, m: &StoredMessage) -> bool {
        self.same_body(m) && m.ts == self.ts
    }
    /// Due at `now`: stored at `ts` with a TTL of `s` seconds, it goes in the first whole
    /// second at or after `ts + s`.
    fn due(&self, now: i64) -> bool {
        match self.ttl {
            Some(Ttl::Secs(s)) => {
                let exp = i128::from(self.ts) + i128::from(s) * i128::from(SEC);
                let due = (exp + i128::from(SEC) - 1).div_euclid(i128::from(SEC));
                due <= i128::from(now.div_euclid(SEC))
            }
            _ => false,
        }
    }
}

#[derive(Default)]
struct OpModel {
    /// Acknowledged and not removed: present now and after any restart or `Always` crash.
    live: BTreeMap<u64, OpMsg>,
    /// Seen present after an operation that failed (or whose removal failed): either way.
    maybe: BTreeMap<u64, OpMsg>,
    /// Messages of appends that failed, not seen yet, by batch: they may appear, at some
    /// sequence, a batch whole or not at all.
    floating: Vec<(u64, OpMsg)>,
    /// Every message by sequence as appended (a crash of a non-`Always` stream may bring
    /// removed ones back: it recovers a prefix of the log).
    known: BTreeMap<u64, OpMsg>,
    /// Highest sequence an append returned.
    acked_max: u64,
    /// The next append's sequence is at least this.
    min_next: u64,
    /// Highest sequence seen in use since the last reopen: never given to another message.
    session_max: u64,
    /// Sequences whose (unacknowledged) message a reopen lost: a reader may have seen them,
    /// and they may now hold other messages.
    lost: std::collections::BTreeSet<u64>,
}

impl OpModel {
    /// Expiry at `now`: every due message goes, whatever else is uncertain about it.
    fn expire(&mut self, now: i64) {
        self.live.retain(|_, m| !m.due(now));
        self.maybe.retain(|_, m| !m.due(now));
        self.floating.retain(|(_, m)| !m.due(now));
    }
    /// Live messages matching `f` become uncertain (an operation that would remove them failed).
    fn unsure(&mut self, f: impl Fn(u64, &OpMsg) -> bool) {
        let moved: Vec<u64> = self
            .live
            .iter()
            .filter(|(q, m)| f(**q, m))
            .map(|(q, _)| *q)
            .collect();
        for q in moved {
            if let Some(m) = self.live.remove(&q) {
                self.maybe.insert(q, m);
            }
        }
    }
}

/// What the run knows of a consumer.
#[derive(Clone, Debug)]
struct ConsTrack {
    /// In the open store.
    live: bool,
    /// Its file: saved, absent, or unknown (a create or delete failed).
    durable: Option<bool>,
    /// Sequences of its last fetch (acks pick from them).
    recent: Vec<u64>,
    /// (ack floor, delivered consumer sequence) as of its last successful save: a reopen never
    /// shows less.
    saved: Option<(u64, u64)>,
    /// The same, as last seen in this process: never less later on.
    seen: (u64, u64),
}

impl ConsTrack {
    fn none() -> Self {
        ConsTrack {
            live: false,
            durable: Some(false),
            recent: Vec::new(),
            saved: None,
            seen: (0, 0),
        }
    }
}

struct OpRun {
    always: bool,
    clock: Arc<ManualClock>,
    mem: MemVfs,
    fv: FaultyVfs,
    store: Option<Store>,
    stream: Option<Stream>,
    /// What the armed fault's crash leaves.
    crash_kind: CrashKind,
    /// A `None` stream that met a fault since it opened: a heal cuts its log back to the last
    /// sync, so acknowledged appends and removals after that may be undone (as by a crash).
    lossy: bool,
    m: OpModel,
    cons: [ConsTrack; 2],
    msg_count: u64,
    groups: u64,
    ops: Vec<Op>,
    step: usize,
}

/// Interprets the input as a sequence of operations on one stream of a store over
/// [`MemVfs`], through [`FaultyVfs`], and checks it against a model after every step.
///
/// Encoding: the first byte picks the stream (`% 4 == 3`: `Durability::None`, else `Always`;
/// bit 2: 8 KiB blocks instead of 4 KiB); then each operation is a byte (`% 25`) and its
/// arguments (see [`parse_ops`]), at most [`MAX_OPS`] of them. The model checks, after every
/// operation: `check_invariants`; the live messages are exactly the acknowledged ones plus
/// possibly those of failed operations (same subject, headers, payload, timestamp and TTL);
/// removed and expired messages never come back; a failed batch is present whole or not at
/// all; sequences only grow and are never given to two messages; the counters agree with
/// the messages. Across a clean restart nothing changes and nothing is replayed; across a
/// crash of an `Always` stream everything acknowledged survives. Consumers deliver only live
/// messages that match their filters, with growing delivery sequences; their ack floors never
/// go back, within a process or across a reopen after a successful save, and a consumer
/// whose creation (deletion) was saved exists (does not) after any reopen.
pub fn op_sequence(data: &[u8]) {
    let (setup, ops) = parse_ops(data);
    let Some(mut run) = OpRun::new(setup, ops) else {
        return;
    };
    for i in 0..run.ops.len() {
        run.step = i;
        let op = run.ops[i].clone();
        run.exec(&op);
        if run.fv.plan().lock().crashed() {
            run.crash(run.crash_kind);
        }
        // These reach no engine code: the stream is as the last check left it.
        let inert = matches!(
            op,
            Op::Advance(_) | Op::Arm { .. } | Op::FailSyncs(_) | Op::Full(_) | Op::ClearFaults
        );
        if !inert {
            run.check();
        }
    }
    run.step = run.ops.len();
    run.finish();
}

impl OpRun {
    fn new(setup: u8, ops: Vec<Op>) -> Option<OpRun> {
        let always = setup % 4 != 3;
        let cfg = StreamConfig::new("s")
            .durability(if always {
                Durability::Always
            } else {
                Durability::None
            })
            .block_size(if setup & 4 == 0 { 4096 } else { 8192 })
            .allow_msg_ttl(true);
        let clock = Arc::new(ManualClock::new(START_NS));
        let mem = MemVfs::new();
        let fv = FaultyVfs::new(Arc::new(mem.clone()), FaultPlan::new());
        let store =
            Store::open_with_vfs(OP_DIR, Arc::new(fv.clone()), store_options(&clock)).ok()?;
        let stream = store.create_stream(cfg).ok()?;
        Some(OpRun {
            always,
            clock,
            mem,
            fv,
            store: Some(store),
            stream: Some(stream),
            crash_kind: CrashKind::Process,
            lossy: false,
            m: OpModel {
                min_next: 1,
                ..OpModel::default()
            },
            cons: [ConsTrack::none(), ConsTrack::none()],
            msg_count: 0,
            groups: 0,
            ops,
            step: 0,
        })
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        let upto = self.ops.len().min(self.step + 1);
        let mut trace = String::new();
        for (i, op) in self.ops[..upto].iter().enumerate() {
            trace.push_str(&format!("\n  #{i} {op:?}"));
        }
        if self.step >= self.ops.len() {
            trace.push_str("\n  (final restarts)");
        }
        panic!(
            "op_sequence ({}): {what}\noperations:{trace}",
            if self.always { "Always" } else { "None" }
        );
    }

    fn s(&self) -> Stream {
        match &self.stream {
            Some(s) => s.clone(),
            None => self.fail("no open stream"),
        }
    }

    fn exec(&mut self, op: &Op) {
        if matches!(op, Op::Arm { .. } | Op::FailSyncs(_) | Op::Full(true)) {
            self.lossy |= !self.always;
        }
        match op {
            Op::Append(g) => self.append(std::slice::from_ref(g), false),
            Op::Batch(gs) => self.append(gs, true),
            Op::Remove { pick, erase } => self.remove(*pick, *erase),
            Op::Purge => self.purge(),
            Op::Compact { pick } => self.compact(*pick),
            Op::Skip(n) => self.skip(*n),
            Op::Advance(d) => self.clock.advance_ns(*d),
            Op::ExpireNow => self.expire(),
            Op::Upkeep(k) => {
                let s = self.s();
                // Whether they work or fail, nothing a reader sees may change: `check` says.
                let _ = match k {
                    0 => s.sync().is_ok(),
                    1 => s.checkpoint().is_ok(),
                    2 => s.maintain().is_ok(),
                    _ => s.reclaim().is_ok(),
                };
            }
            Op::Restart => {
                self.restart();
            }
            Op::Crash(k) => self.crash(*k),
            Op::Arm { after, fault, kind } => {
                *self.fv.plan().lock() = FaultPlan::at(*after, *fault);
                self.crash_kind = *kind;
            }
            Op::FailSyncs(n) => *self.fv.plan().lock() = FaultPlan::fail_syncs_from(*n),
            Op::Full(on) => self.fv.plan().lock().set_full(*on),
            Op::ClearFaults => *self.fv.plan().lock() = FaultPlan::new(),
            Op::CreateConsumer { c, cfg } => self.create_consumer(*c, *cfg),
            Op::DeleteConsumer(c) => self.delete_consumer(*c),
            Op::Fetch { c, n } => self.fetch(*c, *n),
            Op::Ack { c, kind, pick } => self.ack(*c, *kind, *pick),
            Op::SaveConsumer(c) => self.save_consumer(*c),
        }
    }

    fn make_msg(&mut self, g: &GenMsg, now: i64) -> OpMsg {
        self.msg_count += 1;
        // A unique header, so a message of a failed append is recognised wherever it lands.
        let mut headers = format!("k: {}", self.msg_count).into_bytes();
        if g.extra_headers {
            headers.extend_from_slice(b"\r\nx: y");
        }
        OpMsg {
            subject: SUBJECTS[g.subject],
            headers,
            payload: (0..g.size)
                .map(|i| (i as u8).wrapping_mul(31) ^ g.salt)
                .collect(),
            ts: now,
            ttl: g.ttl,
        }
    }

    fn append(&mut self, gs: &[GenMsg], batch: bool) {
        let s = self.s();
        let now = self.clock.now_ns();
        let msgs: Vec<OpMsg> = gs.iter().map(|g| self.make_msg(g, now)).collect();
        let nm: Vec<NewMessage<'_>> = msgs
            .iter()
            .map(|m| {
                let n = NewMessage::new(m.subject, &m.payload).with_headers(&m.headers);
                match m.ttl {
                    Some(t) => n.with_ttl(t),
                    None => n,
                }
            })
            .collect();
        let r = if batch {
            s.append_batch(&nm).map(|b| (b.first_seq, b.last_seq, b.ts))
        } else {
            s.append_msg(&nm[0]).map(|a| {
                if a.duplicate {
                    self.fail("an append without a message id was a duplicate");
                }
                (a.seq, a.seq, a.ts)
            })
        };
        drop(nm);
        match r {
            Ok((first, last, ts)) => {
                if first > last || last - first + 1 != msgs.len() as u64 {
                    self.fail(format!(
                        "append of {} message(s) returned {first}..={last}",
                        msgs.len()
                    ));
                }
                if first < self.m.min_next || first <= self.m.session_max {
                    self.fail(format!(
                        "seq-never-reused: append returned {first}, \
                         but sequences up to {} are taken",
                        (self.m.min_next - 1).max(self.m.session_max)
                    ));
                }
                for (q, mut m) in (first..=last).zip(msgs) {
                    m.ts = ts;
                    self.m.known.insert(q, m.clone());
                    self.m.maybe.remove(&q);
                    self.m.live.insert(q, m);
                }
                self.m.acked_max = last;
                self.m.min_next = last + 1;
                self.m.session_max = last;
            }
            Err(AppendError::Durability(_) | AppendError::Poisoned(_)) => {
                self.groups += 1;
                for m in msgs {
                    self.m.floating.push((self.groups, m));
                }
            }
            Err(e) => self.fail(format!("append of a valid message refused: {e:?}")),
        }
    }

    /// A live (or possibly live) message, or, for `pick % 8 == 7`, a sequence near the end.
    fn pick(&self, pick: u8) -> u64 {
        let known: Vec<u64> = self
            .m
            .live
            .keys()
            .chain(self.m.maybe.keys())
            .copied()
            .collect();
        if pick % 8 == 7 || known.is_empty() {
            let last = self.s().state().last_seq;
            return (last + 1).saturating_sub(u64::from(pick / 8 % 6)).max(1);
        }
        known[usize::from(pick / 8) % known.len()]
    }

    fn remove(&mut self, pick: u8, erase: bool) {
        let q = self.pick(pick);
        let s = self.s();
        let r = if erase { s.erase(q) } else { s.remove(q) };
        match r {
            Ok(()) => {
                let had = self.m.live.remove(&q).is_some() | self.m.maybe.remove(&q).is_some();
                if !had && !self.lossy {
                    self.fail(format!("remove({q}) removed a message that is not there"));
                }
            }
            Err(WriteError::NotFound(_)) => {
                let now = self.clock.now_ns();
                if !self.lossy && self.m.live.get(&q).is_some_and(|m| !m.due(now)) {
                    self.fail(format!("remove({q}): NotFound for an acknowledged message"));
                }
            }
            Err(WriteError::Durability(_) | WriteError::Poisoned(_)) => {
                self.m.unsure(|x, _| x == q);
            }
            Err(e) => self.fail(format!("remove({q}): {e:?}")),
        }
    }

    /// The fewest and the most messages selected by `sel` an operation may remove: the
    /// acknowledged ones, less those a heal's expiry pass may take first (on a poisoned
    /// stream), up to every possibly present one.
    fn bounds(&self, sel: impl Fn(u64, &OpMsg) -> bool) -> (u64, u64) {
        let now = self.clock.now_ns();
        let heals = self.s().is_poisoned();
        let count = |m: &BTreeMap<u64, OpMsg>, heal: bool| {
            m.iter()
                .filter(|(q, m)| sel(**q, m) && !(heal && m.due(now)))
                .count() as u64
        };
        if self.lossy {
            // A heal may bring back what the model removed, and take what it added.
            return (0, u64::MAX);
        }
        let lo = count(&self.m.live, heals);
        (lo, count(&self.m.live, false) + count(&self.m.maybe, false))
    }

    fn purge(&mut self) {
        let (lo, hi) = self.bounds(|_, _| true);
        let s = self.s();
        match s.purge() {
            Ok(n) => {
                if n < lo || n > hi {
                    self.fail(format!("purge removed {n}, the model has {lo}..={hi}"));
                }
                self.m.live.clear();
                self.m.maybe.clear();
                self.m.floating.clear();
                self.m.min_next = self.m.min_next.max(s.state().last_seq + 1);
            }
            Err(WriteError::Durability(_) | WriteError::Poisoned(_)) => self.m.unsure(|_, _| true),
            Err(e) => self.fail(format!("purge: {e:?}")),
        }
    }

    fn compact(&mut self, pick: u8) {
        let q = self.pick(pick);
        let (lo, hi) = self.bounds(|x, _| x < q);
        let s = self.s();
        match s.compact(q) {
            Ok(n) => {
                if n < lo || n > hi {
                    self.fail(format!(
                        "compact({q}) removed {n}, the model has {lo}..={hi}"
                    ));
                }
                self.m.live = self.m.live.split_off(&q);
                self.m.maybe = self.m.maybe.split_off(&q);
                self.m.min_next = self.m.min_next.max(q);
            }
            Err(WriteError::Durability(_) | WriteError::Poisoned(_)) => {
                self.m.unsure(|x, _| x < q);
            }
            Err(e) => self.fail(format!("compact({q}): {e:?}")),
        }
    }

    fn skip(&mut self, n: u64) {
        match self.s().skip(n) {
            Ok(last) => {
                if last < self.m.min_next - 1 + n || last < self.m.session_max + n {
                    self.fail(format!("skip({n}) returned {last}"));
                }
                self.m.min_next = last + 1;
                self.m.session_max = last;
            }
            Err(WriteError::Durability(_) | WriteError::Poisoned(_)) => {}
            Err(e) => self.fail(format!("skip({n}): {e:?}")),
        }
    }

    fn expire(&mut self) {
        let now = self.clock.now_ns();
        let (lo, hi) = self.bounds(|_, m| m.due(now));
        match self.s().expire_now() {
            Ok(n) => {
                if n < lo || n > hi {
                    self.fail(format!(
                        "expire_now removed {n}, the model has {lo}..={hi} due"
                    ));
                }
                self.m.expire(now);
            }
            Err(WriteError::Durability(_) | WriteError::Poisoned(_)) => {
                self.m.unsure(|_, m| m.due(now));
            }
            Err(e) => self.fail(format!("expire_now: {e:?}")),
        }
    }

    fn scan(&self) -> BTreeMap<u64, StoredMessage> {
        match live_messages(&self.s()) {
            Ok(v) => v.into_iter().map(|m| (m.seq, m)).collect(),
            Err(e) => self.fail(format!("a live message does not load: {e}")),
        }
    }

    /// The stream against the model: after every operation.
    fn check(&mut self) {
        let s = self.s();
        let present = self.scan();
        let mut adopted: Vec<u64> = Vec::new();
        for (q, m) in &present {
            if let Some(w) = self.m.live.get(q) {
                if !w.same(m) {
                    self.fail(format!("message {q} is {}, the model has {w:?}", show(m)));
                }
                continue;
            }
            if self.m.maybe.get(q).is_some_and(|w| w.same(m)) {
                continue;
            }
            if let Some(w) = self.m.known.get(q).filter(|w| self.lossy && w.same(m)) {
                let w = w.clone();
                self.m.maybe.insert(*q, w);
                continue;
            }
            // An uncertain message may also have lost its place to one of a failed append.
            let Some(i) = self.m.floating.iter().position(|(_, f)| f.same_body(m)) else {
                self.fail(format!(
                    "message {q} ({}) was never appended, or was removed and came back \
                     (the model has {:?} there)",
                    show(m),
                    self.m.maybe.get(q).or_else(|| self.m.known.get(q))
                ));
            };
            let (g, mut f) = self.m.floating.remove(i);
            f.ts = m.ts;
            adopted.push(g);
            self.m.known.insert(*q, f.clone());
            self.m.maybe.insert(*q, f);
        }
        if let Some(g) = adopted
            .iter()
            .find(|g| self.m.floating.iter().any(|(h, _)| h == *g))
        {
            self.fail(format!(
                "batch-atomic: part of failed batch #{g} is present"
            ));
        }
        // A heal ends with an expiry pass, so a message that is due may go at any write; the
        // pass may fail in turn and be cut back, so it is not gone for good until an expiry
        // pass returns or the store reopens.
        let now = self.clock.now_ns();
        let gone: Vec<u64> = self
            .m
            .live
            .keys()
            .filter(|q| !present.contains_key(q))
            .copied()
            .collect();
        for q in gone {
            if !self.lossy && !self.m.live[&q].due(now) {
                self.fail(format!("acknowledged message {q} is gone"));
            }
            self.m.unsure(|x, _| x == q);
        }
        let st = s.state();
        let first = present.keys().next().copied().unwrap_or(st.last_seq + 1);
        let top = present.keys().last().copied().unwrap_or(0);
        if st.messages != present.len() as u64
            || st.first_seq != first
            || st.last_seq < top
            || st.last_seq + 1 < st.first_seq
            || st.num_deleted != st.last_seq + 1 - st.first_seq - st.messages
        {
            self.fail(format!(
                "state {} messages, first {}, last {}, deleted {}; \
                 the stream reads {} messages from {first} to {top}",
                st.messages,
                st.first_seq,
                st.last_seq,
                st.num_deleted,
                present.len()
            ));
        }
        if st.last_seq + 1 < self.m.min_next {
            self.fail(format!(
                "seq-never-reused: last_seq {} but {} was handed out",
                st.last_seq,
                self.m.min_next - 1
            ));
        }
        self.m.session_max = self.m.session_max.max(top);
        if let Err(e) = s.check_invariants() {
            self.fail(format!("check_invariants: {e}"));
        }
    }

    fn open(&mut self) {
        self.lossy = false;
        let store = match Store::open_with_vfs(
            OP_DIR,
            Arc::new(self.fv.clone()),
            store_options(&self.clock),
        ) {
            Ok(s) => s,
            Err(e) => self.fail(format!("the store does not reopen: {e}")),
        };
        let stream = match store.stream("s") {
            Ok(s) => s,
            Err(e) => self.fail(format!(
                "the stream does not reopen: {e} {:?}",
                store.damaged_streams()
            )),
        };
        self.store = Some(store);
        self.stream = Some(stream);
    }

    /// Closes the store and opens it again on the same disk: exactly as it was (less what is
    /// due now, which open expires) when the close succeeded on a healthy stream; otherwise
    /// as after a crash of the process. Returns whether it was clean.
    fn restart(&mut self) -> bool {
        let s = self.s();
        let healthy = !s.is_poisoned();
        let before = self.scan();
        let last_before = s.state().last_seq;
        let mut floors = [None, None];
        for (c, f) in floors.iter_mut().enumerate() {
            if self.cons[c].live {
                *f = Some(self.consumer_state(c, &s));
            }
        }
        drop(s);
        self.stream = None;
        let closed = self.store.take().is_some_and(|st| st.close().is_ok());
        if self.fv.plan().lock().crashed() {
            // The close hit the armed crash: the process died in it.
            self.crash(self.crash_kind);
            return false;
        }
        *self.fv.plan().lock() = FaultPlan::new();
        if !(closed && healthy) {
            self.open();
            self.recovered(false);
            return false;
        }
        for (c, f) in floors.iter().enumerate() {
            if let Some(f) = f {
                self.cons[c].saved = Some(*f);
            }
        }
        self.open();
        let s = self.s();
        let rep = s.recovery_report().clone();
        if !rep.lost.is_empty() || rep.torn_bytes != 0 || rep.replayed_records != 0 {
            self.fail(format!(
                "clean-reopen: a reopen after a clean close reports {rep:?}"
            ));
        }
        let now = self.clock.now_ns();
        let after = self.scan();
        let expected: BTreeMap<u64, StoredMessage> = before
            .into_iter()
            .filter(|(q, _)| {
                let m = self.m.live.get(q).or_else(|| self.m.maybe.get(q));
                !m.is_some_and(|m| m.due(now))
            })
            .collect();
        if after != expected {
            self.fail(format!(
                "replay-equals-live: after a clean restart the stream holds {:?}, \
                 before it held {:?}",
                after.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>()
            ));
        }
        if s.state().last_seq != last_before {
            self.fail(format!(
                "a clean restart moved last_seq from {last_before} to {}",
                s.state().last_seq
            ));
        }
        self.recovered(true);
        true
    }

    /// The process dies; the store reopens on what a crash of `kind` leaves.
    fn crash(&mut self, kind: CrashKind) {
        // Whatever the dying store still does must not reach the disk the next one sees.
        *self.fv.plan().lock() = FaultPlan::at(0, Fault::Crash);
        let disk = self.mem.after_crash(kind);
        self.stream = None;
        self.store = None;
        self.mem = disk;
        self.fv = FaultyVfs::new(Arc::new(self.mem.clone()), FaultPlan::new());
        self.open();
        self.recovered(false);
    }

    /// After a reopen: the recovered stream against the model, which then takes it as what is
    /// stored. A message of a failed operation that recovery found (in the page cache after a
    /// process crash or a close that could not sync) stays uncertain: open does not sync it,
    /// so a power loss may still take it.
    fn recovered(&mut self, clean: bool) {
        let acked = self.m.acked_max;
        // A sequence above every acknowledged one that holds nothing after the reopen may go
        // to another message, whether the reopen expired what was there or lost it: what an
        // append that failed (or was lost) left there is forgotten.
        let unacked: Vec<u64> = self
            .m
            .maybe
            .keys()
            .chain(self.m.live.keys())
            .filter(|q| **q > acked)
            .copied()
            .collect();
        let now = self.clock.now_ns();
        self.m.expire(now);
        let present = self.scan();
        self.m
            .lost
            .extend(unacked.into_iter().filter(|q| !present.contains_key(q)));
        let mut live = BTreeMap::new();
        let mut maybe = BTreeMap::new();
        for (q, m) in &present {
            let certain = clean || !self.always || self.m.live.contains_key(q);
            if let Some(w) = self.m.live.get(q).filter(|w| !w.same(m)) {
                self.fail(format!(
                    "after a reopen message {q} is {}, the model has {w:?}",
                    show(m)
                ));
            }
            let from_known = (!self.always && !clean)
                .then(|| self.m.known.get(q))
                .flatten();
            let candidates = [self.m.live.get(q), self.m.maybe.get(q), from_known];
            let w = match candidates.into_iter().flatten().find(|w| w.same(m)) {
                Some(w) => w.clone(),
                None => match self.m.floating.iter().find(|(_, f)| f.same_body(m)) {
                    Some((_, f)) => OpMsg {
                        ts: m.ts,
                        ..f.clone()
                    },
                    None => self.fail(format!(
                        "after a reopen message {q} ({}) was never appended, or was removed \
                         and came back (the model has {:?} there)",
                        show(m),
                        self.m.maybe.get(q).or(from_known)
                    )),
                },
            };
            if certain {
                live.insert(*q, w);
            } else {
                maybe.insert(*q, w);
            }
        }
        if self.always || clean {
            if let Some(q) = self.m.live.keys().find(|q| !present.contains_key(q)) {
                self.fail(format!(
                    "acked-survives-crash: acknowledged message {q} is gone after a {}",
                    if clean { "clean restart" } else { "crash" }
                ));
            }
        } else {
            // What a crash keeps of a `None` stream is a prefix of its log; sequences it
            // handed out are still never reused (the lease), other moves of the end may be lost.
            self.m.min_next = self.m.acked_max + 1;
        }
        self.m
            .known
            .retain(|q, _| *q <= acked || present.contains_key(q));
        if self.always && !clean {
            // What removed an uncertain message may itself be lost to a later power loss
            // (recovery found it in the page cache and open does not sync it): it may return.
            for (q, m) in &self.m.maybe {
                if !present.contains_key(q) {
                    maybe.insert(*q, m.clone());
                }
            }
        }
        for (q, m) in live.iter().chain(maybe.iter()) {
            self.m.known.insert(*q, m.clone());
        }
        self.m.live = live;
        self.m.maybe = maybe;
        self.m.floating.clear();
        self.m.session_max = present.keys().last().copied().unwrap_or(0);
        let s = self.s();
        for (c, &name) in OP_CONSUMERS.iter().enumerate() {
            let exists = match s.consumer(name) {
                Ok(_) => true,
                Err(ConsumerError::NotFound(_)) => false,
                Err(e) => self.fail(format!("consumer({name}): {e}")),
            };
            match (self.cons[c].durable, exists) {
                (Some(true), false) => self.fail(format!("consumer {name} is gone after a reopen")),
                (Some(false), true) => self.fail(format!(
                    "consumer {name} exists after a reopen, but was never created or was deleted"
                )),
                _ => {}
            }
            let saved = self.cons[c]
                .saved
                .filter(|_| self.cons[c].durable == Some(true));
            // Seeing the file (or not) says nothing of what a power loss leaves of a create
            // or delete that failed.
            self.cons[c] = ConsTrack {
                live: exists,
                durable: self.cons[c].durable,
                ..ConsTrack::none()
            };
            if exists {
                let now = self.consumer_state(c, &s);
                if let Some((f, d)) = saved {
                    if now.0 < f || now.1 < d {
                        self.fail(format!(
                            "consumer {name}: (ack floor, delivered) {now:?} after a reopen, \
                             {:?} saved",
                            (f, d)
                        ));
                    }
                }
                // What this process derives from the file is not saved until it saves.
                self.cons[c].saved = saved;
            }
        }
    }

    /// Ends a run: faults cleared, restarts until one is clean (a stream still poisoned by a
    /// fault closes without writing), then the power fails after that clean close.
    fn finish(&mut self) {
        *self.fv.plan().lock() = FaultPlan::new();
        self.restart();
        self.check();
        if self.s().is_poisoned() {
            self.fail("poisoned right after a reopen");
        }
        if !self.restart() {
            self.fail("a restart with no fault armed was not clean");
        }
        self.check();
        if let Some(st) = self.store.take() {
            self.stream = None;
            if let Err(e) = st.close() {
                self.fail(format!("a clean close failed: {e}"));
            }
        }
        self.crash(CrashKind::PowerLoss);
        self.check();
    }

    /// Looks up consumer `c`: `None` if it does not exist, which must be what the run expects.
    fn consumer(&self, c: usize, s: &Stream) -> Option<Consumer> {
        let name = OP_CONSUMERS[c];
        match s.consumer(name) {
            Ok(h) if self.cons[c].live => Some(h),
            Ok(_) => self.fail(format!(
                "consumer {name} exists, but was never created or was deleted"
            )),
            Err(ConsumerError::NotFound(_)) if !self.cons[c].live => None,
            Err(e) => self.fail(format!("consumer({name}): {e}")),
        }
    }

    /// Consumer `c`'s (ack floor, delivered consumer sequence) after checking its state.
    fn consumer_state(&mut self, c: usize, s: &Stream) -> (u64, u64) {
        let name = OP_CONSUMERS[c];
        let Some(h) = self.consumer(c, s) else {
            self.fail(format!("consumer {name} missing"));
        };
        let st = match h.state() {
            Ok(st) => st,
            Err(e) => self.fail(format!("consumer {name} state: {e}")),
        };
        let now = (st.ack_floor.stream_seq, st.delivered.consumer_seq);
        let seen = self.cons[c].seen;
        if now.0 < seen.0 || now.1 < seen.1 {
            self.fail(format!(
                "consumer {name}: ack floor and delivered sequence went from {seen:?} to {now:?}"
            ));
        }
        if st.ack_floor.stream_seq > st.delivered.stream_seq
            || st.ack_floor.consumer_seq > st.delivered.consumer_seq
            || st.num_ack_pending > h.config().max_ack_pending
        {
            self.fail(format!("consumer {name}: inconsistent state {st:?}"));
        }
        self.cons[c].seen = now;
        now
    }

    fn create_consumer(&mut self, c: usize, cfg: u8) {
        let name = OP_CONSUMERS[c];
        let s = self.s();
        match s.create_consumer(op_consumer_config(name, cfg)) {
            Ok(_) => {
                if self.cons[c].live {
                    self.fail(format!("created consumer {name} twice"));
                }
                self.cons[c] = ConsTrack {
                    live: true,
                    durable: Some(true),
                    ..ConsTrack::none()
                };
                let now = self.consumer_state(c, &s);
                self.cons[c].saved = Some(now);
            }
            Err(ConsumerError::AlreadyExists(_)) if self.cons[c].live => {}
            Err(ConsumerError::Durability(_)) if !self.cons[c].live => {
                self.cons[c] = ConsTrack {
                    durable: None,
                    ..ConsTrack::none()
                };
            }
            Err(e) => self.fail(format!("create consumer {name}: {e:?}")),
        }
    }

    fn delete_consumer(&mut self, c: usize) {
        let name = OP_CONSUMERS[c];
        match self.s().delete_consumer(name) {
            Ok(()) if self.cons[c].live => self.cons[c] = ConsTrack::none(),
            Err(ConsumerError::NotFound(_)) if !self.cons[c].live => {}
            Err(ConsumerError::Durability(_)) if self.cons[c].live => {
                self.cons[c] = ConsTrack {
                    durable: None,
                    ..ConsTrack::none()
                };
            }
            other => self.fail(format!("delete consumer {name}: {other:?}")),
        }
    }

    fn fetch(&mut self, c: usize, n: usize) {
        let s = self.s();
        let Some(h) = self.consumer(c, &s) else {
            return;
        };
        let ds = match h.fetch(n, 0) {
            Ok(ds) => ds,
            Err(e) => self.fail(format!("fetch: {e}")),
        };
        if ds.len() > n {
            self.fail(format!("fetch({n}) delivered {}", ds.len()));
        }
        let filters = h.config().match_filters();
        let mut dseq = self.cons[c].seen.1;
        for d in &ds {
            let m = &d.message;
            let want = self.m.live.get(&m.seq).or_else(|| self.m.maybe.get(&m.seq));
            if !want.is_some_and(|w| w.same(m)) {
                self.fail(format!("delivered {}, the model has {want:?}", show(m)));
            }
            // Under `Always` a consumer may have taken a sequence (as a starter or a pending
            // delivery) from a message whose append failed, which a reopen lost and the
            // stream then gave to another message: no lease keeps such a sequence from
            // being used again. The consumer then delivers whatever is there.
            let reused = self.m.lost.contains(&m.seq);
            if !reused
                && !filters
                    .iter()
                    .any(|f| crate::subject::matches(f, m.subject()))
            {
                self.fail(format!(
                    "delivered {} outside the filters {filters:?}",
                    m.seq
                ));
            }
            if d.delivery_seq <= dseq || d.delivery_count == 0 {
                self.fail(format!(
                    "delivery {} (count {}) after delivery sequence {dseq}",
                    d.delivery_seq, d.delivery_count
                ));
            }
            dseq = d.delivery_seq;
        }
        if !ds.is_empty() {
            self.cons[c].recent = ds.iter().map(|d| d.message.seq).collect();
        }
        self.consumer_state(c, &s);
    }

    fn ack(&mut self, c: usize, kind: u8, pick: u8) {
        let s = self.s();
        let Some(h) = self.consumer(c, &s) else {
            return;
        };
        let recent = &self.cons[c].recent;
        let q = if pick % 8 == 7 || recent.is_empty() {
            u64::from(pick / 8)
        } else {
            recent[usize::from(pick / 8) % recent.len()]
        };
        let r = match kind {
            0 => h.ack(q),
            1 => h.nak(q, (pick & 1 == 1).then_some(Duration::from_millis(1500))),
            2 => h.term(q),
            _ => h.in_progress(q),
        };
        if let Err(e) = r {
            self.fail(format!("ack kind {kind} of {q}: {e}"));
        }
        self.consumer_state(c, &s);
    }

    fn save_consumer(&mut self, c: usize) {
        let s = self.s();
        let Some(h) = self.consumer(c, &s) else {
            return;
        };
        let now = self.consumer_state(c, &s);
        match h.save_now() {
            Ok(()) => self.cons[c].saved = Some(now),
            Err(ConsumerError::Durability(_)) => {}
            Err(e) => self.fail(format!("save consumer: {e}")),
        }
    }
}

/// An input of `op_sequence` as its setup byte and operations, for reading a failing input.
pub fn describe_ops(data: &[u8]) -> String {
    let (setup, ops) = parse_ops(data);
    let mut s = format!("setup {setup:#04x}");
    for (i, op) in ops.iter().enumerate() {
        s.push_str(&format!("\n#{i} {op:?}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Kind;

    /// A `Remove` record whose (checksummed) payload names the range 1..=2^61 once walked
    /// every sequence in it during replay: recovery never returned.
    #[test]
    fn a_remove_of_a_vast_range_recovers_promptly() {
        let mut data = vec![0u8];
        for seq in 1..=3 {
            data.extend(record::encode(Kind::Msg, seq, 1, b"a.b", b"", b"x"));
        }
        let mut payload = Vec::new();
        crate::varint::put(&mut payload, 0);
        crate::varint::put(&mut payload, 1 << 61);
        data.extend(record::encode(Kind::Remove, 1, 2, b"", b"", &payload));
        let started = std::time::Instant::now();
        block_recovery(&data);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
