//! Rollups (a message replacing every earlier message of its subject or of the stream) and
//! conditional appends (expected last sequences): typed errors that change nothing, the
//! semantics on every counter and query, atomicity across crashes and towards readers,
//! watchers and consumers, replay, limits, TTL timers, replicas, and optimistic concurrency
//! under contention.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tidelog::io::{CrashKind, Fault, FaultPlan, MemVfs};
use tidelog::{
    AckOutcome, AppendError, ConsumerConfig, Discard, Durability, Limit, LoadError, ManualClock,
    NewMessage, ReplicaOptions, Rollup, Storage, Store, StoreOptions, StoredMessage, Stream,
    StreamConfig, SubjectState, Ttl, WatchFrom,
};

#[allow(dead_code)]
mod common;
use common::{variants, Db};

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;

/// A message as read back, for whole-stream comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    seq: u64,
    subject: String,
    payload: Vec<u8>,
    rollup: Option<Rollup>,
    ttl: Option<Ttl>,
}

impl Msg {
    fn of(m: &StoredMessage) -> Msg {
        Msg {
            seq: m.seq,
            subject: m.subject().to_owned(),
            payload: m.payload().to_vec(),
            rollup: m.rollup,
            ttl: m.ttl,
        }
    }
}

/// Every live message, oldest first.
fn live(s: &Stream) -> Vec<Msg> {
    let mut v = Vec::new();
    let mut q = 0;
    while let Some(m) = s.load_next(">", q).unwrap() {
        q = m.seq + 1;
        v.push(Msg::of(&m));
    }
    v
}

/// Adds an appended message (no TTL) to the expected live messages `want`, after what its
/// rollup (if any) replaces: its subject's earlier messages, or all of them.
fn add_expected(
    want: &mut Vec<Msg>,
    seq: u64,
    subject: &str,
    payload: Vec<u8>,
    rollup: Option<Rollup>,
) {
    match rollup {
        None => {}
        Some(Rollup::Subject) => want.retain(|w| w.subject != subject),
        Some(Rollup::All) => want.clear(),
    }
    want.push(Msg {
        seq,
        subject: subject.to_owned(),
        payload,
        rollup,
        ttl: None,
    });
}

/// Fails with every failure a sweep collected.
fn assert_no_failures(bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{} failures:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

fn seqs(v: &[Msg]) -> Vec<u64> {
    v.iter().map(|m| m.seq).collect()
}

/// The stream holds exactly `want`, and its counters, subject queries and invariants agree.
fn check_holds(s: &Stream, want: &[Msg], ctx: &str) {
    assert_eq!(live(s), want, "{ctx}: live messages");
    let st = s.state();
    assert_eq!(st.messages, want.len() as u64, "{ctx}: messages");
    if let Some(first) = want.first() {
        assert_eq!(st.first_seq, first.seq, "{ctx}: first_seq");
        let span = st.last_seq + 1 - st.first_seq;
        assert_eq!(
            st.num_deleted,
            span - want.len() as u64,
            "{ctx}: num_deleted"
        );
    } else {
        assert_eq!(st.first_seq, st.last_seq + 1, "{ctx}: empty first_seq");
        assert_eq!(st.num_deleted, 0, "{ctx}: empty num_deleted");
    }
    let mut subjects: BTreeMap<String, SubjectState> = BTreeMap::new();
    for m in want {
        let e = subjects.entry(m.subject.clone()).or_insert(SubjectState {
            messages: 0,
            first_seq: m.seq,
            last_seq: m.seq,
        });
        e.messages += 1;
        e.last_seq = m.seq;
    }
    assert_eq!(
        s.subjects_state(">").unwrap(),
        subjects,
        "{ctx}: subjects_state"
    );
    assert_eq!(
        s.num_subjects(),
        subjects.len() as u64,
        "{ctx}: num_subjects"
    );
    for (subj, ss) in &subjects {
        let last = s
            .load_last(subj)
            .unwrap()
            .expect("subject has a last message");
        assert_eq!(last.seq, ss.last_seq, "{ctx}: load_last({subj})");
    }
    s.check_invariants()
        .unwrap_or_else(|e| panic!("{ctx}: invariants: {e}"));
}

fn store_with(vfs: MemVfs, clock: Option<Arc<ManualClock>>) -> Store {
    Store::open_with_vfs("/r", Arc::new(vfs), common::store_options(clock)).unwrap()
}

fn mem_store() -> Store {
    store_with(MemVfs::new(), None)
}

fn cfg(name: &str, storage: Storage, durability: Durability) -> StreamConfig {
    StreamConfig::new(name)
        .storage(storage)
        .durability(durability)
        .allow_rollup(true)
}

fn roll(s: &Stream, subject: &str, r: Rollup) -> u64 {
    s.append_msg(&NewMessage::new(subject, b"roll").with_rollup(r))
        .unwrap()
        .seq
}

fn put(s: &Stream, subject: &str, payload: &[u8]) -> u64 {
    s.append(subject, b"", payload).unwrap().seq
}

// ---------------------------------------------------------------------------------------------
// 1. Typed errors that change nothing.
// ---------------------------------------------------------------------------------------------

#[test]
fn rollup_not_allowed_and_rollup_in_batch_change_nothing() {
    let store = mem_store();
    for (i, (storage, durability)) in variants().into_iter().enumerate() {
        let plain = store
            .create_stream(cfg(&format!("plain{i}"), storage, durability).allow_rollup(false))
            .unwrap();
        let roller = store
            .create_stream(cfg(&format!("roll{i}"), storage, durability))
            .unwrap();
        for s in [&plain, &roller] {
            put(s, "a", b"1");
            put(s, "b", b"2");
            put(s, "a", b"3");
        }
        let ctx = format!("{storage:?}/{durability:?}");
        for r in [Rollup::Subject, Rollup::All] {
            let (before, st) = (live(&plain), plain.state());
            let got = plain.append_msg(&NewMessage::new("a", b"x").with_rollup(r));
            assert!(
                matches!(got, Err(AppendError::RollupNotAllowed)),
                "{ctx}: {r:?} on a stream without rollups: {got:?}"
            );
            assert_eq!(live(&plain), before, "{ctx}");
            assert_eq!(plain.state(), st, "{ctx}");
            // Also refused inside a batch, whichever check comes first.
            let got = plain.append_batch(&[
                NewMessage::new("a", b"x"),
                NewMessage::new("a", b"y").with_rollup(r),
            ]);
            assert!(
                matches!(
                    got,
                    Err(AppendError::RollupNotAllowed | AppendError::RollupInBatch)
                ),
                "{ctx}: {got:?}"
            );
            assert_eq!(plain.state(), st, "{ctx}");

            let (before, st) = (live(&roller), roller.state());
            for batch in [
                vec![NewMessage::new("a", b"y").with_rollup(r)],
                vec![
                    NewMessage::new("c", b"x"),
                    NewMessage::new("a", b"y").with_rollup(r),
                ],
                vec![
                    NewMessage::new("a", b"y").with_rollup(r),
                    NewMessage::new("c", b"x"),
                ],
            ] {
                let got = roller.append_batch(&batch);
                assert!(
                    matches!(got, Err(AppendError::RollupInBatch)),
                    "{ctx}: {got:?}"
                );
                assert_eq!(live(&roller), before, "{ctx}");
                assert_eq!(roller.state(), st, "{ctx}");
            }
        }
        // No sequence was consumed by the refused appends.
        assert_eq!(put(&plain, "a", b"4"), 4, "{ctx}");
        assert_eq!(put(&roller, "a", b"4"), 4, "{ctx}");
        plain.check_invariants().unwrap();
        roller.check_invariants().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Semantics.
// ---------------------------------------------------------------------------------------------

#[test]
fn subject_and_all_rollups_replace_earlier_messages() {
    for (storage, durability) in variants() {
        let ctx = format!("{storage:?}/{durability:?}");
        let vfs = MemVfs::new();
        let store = store_with(vfs.clone(), None);
        let s = store.create_stream(cfg("s", storage, durability)).unwrap();
        let mut want: Vec<Msg> = Vec::new();
        let mut bytes: BTreeMap<u64, u64> = BTreeMap::new();
        let mut append = |s: &Stream, subject: &str, r: Option<Rollup>, want: &mut Vec<Msg>| {
            let before = s.state().bytes;
            let payload = format!("{subject}-{}", want.len()).into_bytes();
            let mut m = NewMessage::new(subject, &payload);
            m.rollup = r;
            let seq = s.append_msg(&m).unwrap().seq;
            let added = s.load(seq).unwrap();
            assert_eq!(added.rollup, r, "{ctx}: rollup flag of {seq}");
            // Removals of the rollup happen before its record is counted.
            let removed: u64 = match r {
                None => 0,
                Some(Rollup::Subject) => want
                    .iter()
                    .filter(|w| w.subject == subject)
                    .map(|w| bytes[&w.seq])
                    .sum(),
                Some(Rollup::All) => want.iter().map(|w| bytes[&w.seq]).sum(),
            };
            bytes.insert(seq, s.state().bytes + removed - before);
            add_expected(want, seq, subject, payload, r);
            let total: u64 = want.iter().map(|w| bytes[&w.seq]).sum();
            assert_eq!(s.state().bytes, total, "{ctx}: bytes after {seq}");
            assert_eq!(s.load_last(subject).unwrap().unwrap().seq, seq, "{ctx}");
            assert_eq!(s.load_last(">").unwrap().unwrap().seq, seq, "{ctx}");
            seq
        };
        for subj in ["kv.a", "kv.b", "kv.a", "other", "kv.a", "kv.b"] {
            append(&s, subj, None, &mut want);
        }
        check_holds(&s, &want, &ctx);
        // Subject: 1, 3 and 5 (kv.a) go; kv.b and other stay.
        let r1 = append(&s, "kv.a", Some(Rollup::Subject), &mut want);
        assert_eq!(r1, 7);
        assert_eq!(seqs(&want), vec![2, 4, 6, 7]);
        check_holds(&s, &want, &ctx);
        for q in [1, 3, 5] {
            assert!(
                matches!(s.load(q), Err(LoadError::NotFound(x)) if x == q),
                "{ctx}"
            );
        }
        let st = s.state();
        assert_eq!((st.first_seq, st.last_seq, st.num_deleted), (2, 7, 2));
        assert_eq!(st.deleted, vec![(3, 3), (5, 5)], "{ctx}");
        assert_eq!(
            s.subjects_state("kv.a").unwrap()["kv.a"],
            SubjectState {
                messages: 1,
                first_seq: 7,
                last_seq: 7
            }
        );
        // Only the rollup message carries the flag.
        for m in live(&s) {
            assert_eq!(m.rollup.is_some(), m.seq == r1, "{ctx}: {m:?}");
        }
        // A Subject rollup on a subject with nothing to replace removes nothing.
        append(&s, "kv.new", Some(Rollup::Subject), &mut want);
        check_holds(&s, &want, &ctx);
        // Plain appends after a rollup are plain; a second rollup replaces the first.
        append(&s, "kv.a", None, &mut want);
        append(&s, "kv.b", None, &mut want);
        append(&s, "kv.a", Some(Rollup::Subject), &mut want);
        check_holds(&s, &want, &ctx);
        assert_eq!(
            s.subjects_totals(">").unwrap(),
            BTreeMap::from([
                ("kv.a".to_owned(), 1),
                ("kv.b".to_owned(), 3),
                ("kv.new".to_owned(), 1),
                ("other".to_owned(), 1),
            ])
        );
        // All: everything else goes, whatever its subject.
        let r2 = append(&s, "other", Some(Rollup::All), &mut want);
        assert_eq!(seqs(&want), vec![r2]);
        check_holds(&s, &want, &ctx);
        let st = s.state();
        assert_eq!(
            (st.messages, st.first_seq, st.last_seq, st.num_deleted),
            (1, r2, r2, 0)
        );
        assert_eq!(s.num_subjects(), 1);
        assert_eq!(s.load_last("kv.>").unwrap(), None, "{ctx}");
        // All again, on a different subject, then on an empty stream.
        append(&s, "kv.a", None, &mut want);
        append(&s, "kv.z", Some(Rollup::All), &mut want);
        check_holds(&s, &want, &ctx);
        s.purge().unwrap();
        want.clear();
        check_holds(&s, &want, &ctx);
        append(&s, "x", Some(Rollup::All), &mut want);
        append(&s, "y", Some(Rollup::Subject), &mut want);
        check_holds(&s, &want, &ctx);
        // The flags and the removals survive a clean restart (file streams).
        if storage == Storage::File {
            drop(s);
            store.close().unwrap();
            drop(store);
            let store = store_with(vfs, None);
            let s = store.stream("s").unwrap();
            check_holds(&s, &want, &format!("{ctx} after restart"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Crash atomicity.
// ---------------------------------------------------------------------------------------------

const CRASH_PAYLOAD: usize = 150;
/// Larger prefills are written in batches of this many small messages.
const BULK: usize = 100;

fn prefill_subject(i: usize) -> &'static str {
    ["a", "b", "a", "c"][i % 4]
}

fn prefill_payload(i: usize) -> Vec<u8> {
    let mut p = format!("m{i:04}").into_bytes();
    p.resize(CRASH_PAYLOAD, b'.');
    p
}

/// The rollup message of a crash case. A torn write keeps the first half of what it writes
/// (the rollup's removal records, then its message): with a long message the tear falls
/// inside the message, after complete removal records, which recovery must drop with it.
fn rollup_payload(prefill: usize) -> Vec<u8> {
    let len = match prefill {
        21 => 4,
        p if p > BULK => 16_000,
        _ => 600,
    };
    vec![b'r'; len]
}

fn crash_db(durability: Durability, prefill: usize) -> Db {
    let cfg = StreamConfig::new("r")
        .allow_rollup(true)
        .durability(durability)
        .block_size(4096);
    let db = Db::create(common::store_options(None), cfg, false);
    if prefill <= BULK {
        for i in 0..prefill {
            put(db.stream(), prefill_subject(i), &prefill_payload(i));
        }
    } else {
        // Small messages in batches: quick to write, and many sequences to remove.
        let payloads: Vec<Vec<u8>> = (0..prefill).map(|i| i.to_le_bytes().to_vec()).collect();
        for chunk in (0..prefill).collect::<Vec<_>>().chunks(BULK) {
            let msgs: Vec<NewMessage<'_>> = chunk
                .iter()
                .map(|&i| NewMessage::new(prefill_subject(i), &payloads[i]))
                .collect();
            db.stream().append_batch(&msgs).unwrap();
        }
    }
    // Everything before the rollup is durable: a crash can only lose the rollup.
    db.stream().sync().unwrap();
    db
}

/// The outcome of one crash during a rollup: whether the fault fired, and what is wrong.
fn rollup_crash_case(
    r: Rollup,
    durability: Durability,
    prefill: usize,
    kind: CrashKind,
    fault: Fault,
    at: u64,
) -> (bool, Result<&'static str, String>) {
    let mut db = crash_db(durability, prefill);
    let payload = rollup_payload(prefill);
    let before = live(db.stream());
    let seq = db.stream().state().last_seq + 1;
    let mut after: Vec<Msg> = match r {
        Rollup::Subject => before
            .iter()
            .filter(|m| m.subject != "a")
            .cloned()
            .collect(),
        Rollup::All => Vec::new(),
    };
    after.push(Msg {
        seq,
        subject: "a".into(),
        payload: payload.clone(),
        rollup: Some(r),
        ttl: None,
    });
    *db.fv.plan().lock() = FaultPlan::at(at, fault);
    let got = db
        .stream()
        .append_msg(&NewMessage::new("a", &payload).with_rollup(r));
    // `None` makes nothing durable until a sync (docs/durability.md); `Always` syncs in append.
    let acked = match durability {
        Durability::Always => got.is_ok(),
        _ => got.is_ok() && db.stream().sync().is_ok(),
    };
    let fired = db.fv.plan().lock().crashed();
    let what = format!(
        "{r:?} {durability:?} prefill {prefill}, {fault:?} at I/O #{at}, {kind:?} crash \
         (append {got:?}, acked {acked})"
    );
    if let Err(e) = db.crash(kind) {
        return (fired, Err(format!("{what}: reopen failed: {e}")));
    }
    let s = db.stream();
    let now = live(s);
    let which = if now == before {
        "before"
    } else if now == after {
        "after"
    } else {
        return (
            fired,
            Err(format!(
                "{what}: stream is neither before nor after the rollup: {} messages {:?}.. \
                 (before {} {:?}.., after {} {:?}..)",
                now.len(),
                &seqs(&now)[..now.len().min(8)],
                before.len(),
                &seqs(&before)[..before.len().min(8)],
                after.len(),
                &seqs(&after)[..after.len().min(8)],
            )),
        );
    };
    if acked && which == "before" {
        return (fired, Err(format!("{what}: acknowledged rollup lost")));
    }
    let want = if which == "before" { &before } else { &after };
    let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_holds(s, want, &what);
        // The stream keeps working: a plain append lands after everything, invariants hold.
        let q = put(s, "z", b"after");
        assert!(
            q > seq || (which == "before" && q >= seq),
            "{what}: next seq {q}"
        );
        s.check_invariants().unwrap();
    }));
    if check.is_err() {
        return (
            fired,
            Err(format!("{what}: checks failed (see panic above)")),
        );
    }
    (fired, Ok(which))
}

fn rollup_crash_sweep(r: Rollup, durability: Durability) {
    let mut bad = Vec::new();
    let mut cases = 0;
    // 5: a Subject rollup removes 3 messages inside the current block; 21 and 42: the
    // rollup's batch does not fit the current block (a new block file is made for the
    // whole batch), and a Subject rollup removes 11 or 21 messages (the bulk path) from one
    // or two older blocks; 7000: it removes 3500 sequences that are not contiguous, more
    // than one `Remove` record holds, and with its 16 kB message the batch is larger than a
    // block. `rollup_payload` puts the torn half inside the message where it can.
    let mut outcomes = BTreeMap::new();
    for prefill in [5, 21, 42, 7000] {
        for kind in [CrashKind::Process, CrashKind::PowerLoss] {
            // (The large case only tears: its checks are slow.)
            let faults = if prefill > BULK {
                &[Fault::TornWrite][..]
            } else {
                &[Fault::Crash, Fault::TornWrite][..]
            };
            for &fault in faults {
                for at in 0..200 {
                    cases += 1;
                    let (fired, got) = rollup_crash_case(r, durability, prefill, kind, fault, at);
                    match got {
                        Ok(which) => *outcomes.entry(which).or_insert(0) += 1,
                        Err(e) => bad.push(e),
                    }
                    if !fired {
                        break;
                    }
                    assert!(at < 199, "the rollup never completed");
                }
            }
        }
    }
    assert!(cases > 32, "too few cases: {cases}");
    // Crashes both before and after the rollup became durable were hit.
    assert!(outcomes.len() == 2 || !bad.is_empty(), "{outcomes:?}");
    assert_no_failures(&bad);
}

/// The prefill sizes of the sweep cover a rollup that opens a new block.
#[test]
fn crash_sweep_covers_a_rollup_opening_a_block() {
    for (prefill, opens) in [(5, false), (21, true), (42, true)] {
        let db = crash_db(Durability::Always, prefill);
        let blocks = db.stream().state().blocks;
        let m = rollup_payload(prefill);
        db.stream()
            .append_msg(&NewMessage::new("a", &m).with_rollup(Rollup::Subject))
            .unwrap();
        let after = db.stream().state().blocks;
        assert_eq!(
            after > blocks,
            opens,
            "prefill {prefill}: {blocks} -> {after}"
        );
    }
}

#[test]
fn subject_rollup_is_crash_atomic_always() {
    rollup_crash_sweep(Rollup::Subject, Durability::Always);
}

#[test]
fn subject_rollup_is_crash_atomic_none() {
    rollup_crash_sweep(Rollup::Subject, Durability::None);
}

#[test]
fn all_rollup_is_crash_atomic_always() {
    rollup_crash_sweep(Rollup::All, Durability::Always);
}

#[test]
fn all_rollup_is_crash_atomic_none() {
    rollup_crash_sweep(Rollup::All, Durability::None);
}

// ---------------------------------------------------------------------------------------------
// 4. Replay.
// ---------------------------------------------------------------------------------------------

#[test]
fn replaced_messages_never_come_back() {
    for durability in [Durability::Always, Durability::None] {
        for kind in [CrashKind::Process, CrashKind::PowerLoss] {
            let ctx = format!("{durability:?}/{kind:?}");
            let cfg = StreamConfig::new("r")
                .allow_rollup(true)
                .durability(durability)
                .block_size(4096);
            let mut db = Db::create(common::store_options(None), cfg, false);
            let mut want: Vec<Msg> = Vec::new();
            let add = |db: &Db, want: &mut Vec<Msg>, subject: &str, r: Option<Rollup>| {
                let payload = prefill_payload(want.len());
                let mut m = NewMessage::new(subject, &payload);
                m.rollup = r;
                let seq = db.stream().append_msg(&m).unwrap().seq;
                add_expected(want, seq, subject, payload, r);
                seq
            };
            // Older messages under the checkpoint, newer ones replayed after it.
            for i in 0..30 {
                add(&db, &mut want, prefill_subject(i), None);
            }
            db.stream().checkpoint().unwrap();
            for i in 0..6 {
                add(&db, &mut want, prefill_subject(i), None);
            }
            let r1 = add(&db, &mut want, "a", Some(Rollup::Subject));
            db.stream().sync().unwrap();
            db.crash(kind).unwrap();
            let rep = db.stream().recovery_report().clone();
            assert!(rep.used_checkpoint, "{ctx}: {rep:?}");
            assert!(rep.replayed_records > 0, "{ctx}: {rep:?}");
            check_holds(
                db.stream(),
                &want,
                &format!("{ctx}: after the Subject rollup"),
            );
            assert_eq!(db.stream().load(r1).unwrap().rollup, Some(Rollup::Subject));

            // Erasing the rollup message brings nothing back, after a crash or a restart.
            db.stream().erase(r1).unwrap();
            want.retain(|w| w.seq != r1);
            db.stream().sync().unwrap();
            db.crash(kind).unwrap();
            check_holds(db.stream(), &want, &format!("{ctx}: erased rollup, crash"));
            assert!(db.stream().load_last("a").unwrap().is_none(), "{ctx}");
            db.restart().unwrap();
            check_holds(
                db.stream(),
                &want,
                &format!("{ctx}: erased rollup, restart"),
            );

            // All, then its erase, then space reclaimed, each followed by a crash.
            for i in 0..8 {
                add(&db, &mut want, prefill_subject(i), None);
            }
            db.stream().checkpoint().unwrap();
            add(&db, &mut want, "b", None);
            let r2 = add(&db, &mut want, "c", Some(Rollup::All));
            db.stream().sync().unwrap();
            db.crash(kind).unwrap();
            check_holds(db.stream(), &want, &format!("{ctx}: after the All rollup"));
            db.stream().erase(r2).unwrap();
            want.clear();
            db.stream().sync().unwrap();
            db.crash(kind).unwrap();
            check_holds(db.stream(), &want, &format!("{ctx}: erased All rollup"));
            assert!(
                db.stream().state().last_seq >= r2,
                "{ctx}: sequences reused"
            );
            db.stream().reclaim().unwrap();
            db.crash(kind).unwrap();
            check_holds(db.stream(), &want, &format!("{ctx}: after reclaim"));
            let q = add(&db, &mut want, "d", None);
            assert!(q > r2, "{ctx}");
            db.stream().sync().unwrap();
            db.crash(kind).unwrap();
            check_holds(db.stream(), &want, &format!("{ctx}: final"));
        }
    }
}

/// A rollup whose batch needs a new block file that cannot be made (full disk) fails alone:
/// nothing is removed, the stream is not poisoned, and the same rollup succeeds afterwards
/// (docs/durability.md, "A full disk").
#[test]
fn rollup_that_cannot_get_a_block_changes_nothing() {
    for durability in [Durability::Always, Durability::None] {
        for r in [Rollup::Subject, Rollup::All] {
            let ctx = format!("{durability:?}/{r:?}");
            let db = crash_db(durability, 21);
            let s = db.stream();
            let (before, st) = (live(s), s.state());
            // The first I/O of this rollup creates the block file (see the sweep's check).
            *db.fv.plan().lock() = FaultPlan::at(0, Fault::NoSpace);
            let got = s.append_msg(&NewMessage::new("a", b"roll").with_rollup(r));
            *db.fv.plan().lock() = FaultPlan::new();
            assert!(
                matches!(
                    got,
                    Err(AppendError::Durability(
                        tidelog::DurabilityError::StorageFull(_)
                    ))
                ),
                "{ctx}: {got:?}"
            );
            assert_eq!(live(s), before, "{ctx}");
            assert_eq!(s.state(), st, "{ctx}");
            assert!(!s.is_poisoned(), "{ctx}");
            s.check_invariants().unwrap();
            let q = roll(s, "a", r);
            assert_eq!(q, st.last_seq + 1, "{ctx}");
            assert_eq!(s.load(q).unwrap().rollup, Some(r));
            s.check_invariants().unwrap();
        }
    }
}

/// `erase` of a rollup message overwrites its record in place, the record that ends the
/// rollup's batch. Whatever I/O of the erase a crash (or a torn write) hits, the messages the
/// rollup replaced stay gone after the reopen, and only the rollup message may be missing.
#[test]
fn erasing_a_rollup_never_resurrects_under_crashes() {
    let mut bad = Vec::new();
    for durability in [Durability::Always, Durability::None] {
        for r in [Rollup::Subject, Rollup::All] {
            for tail in [false, true] {
                for kind in [CrashKind::Process, CrashKind::PowerLoss] {
                    for fault in [Fault::Crash, Fault::TornWrite] {
                        for at in 0..100 {
                            let mut db = crash_db(durability, 10);
                            // The rollup is replayed at open: it is after the checkpoint.
                            db.stream().checkpoint().unwrap();
                            let q = roll(db.stream(), "a", r);
                            if !tail {
                                put(db.stream(), "z", b"later");
                            }
                            db.stream().sync().unwrap();
                            let with = live(db.stream());
                            let without: Vec<Msg> =
                                with.iter().filter(|m| m.seq != q).cloned().collect();
                            *db.fv.plan().lock() = FaultPlan::at(at, fault);
                            let got = db.stream().erase(q);
                            let fired = db.fv.plan().lock().crashed();
                            db.crash(kind).unwrap();
                            let now = live(db.stream());
                            let what = format!(
                                "{durability:?} {r:?} tail {tail}: {fault:?} at I/O #{at} of \
                                 erase ({got:?}), {kind:?} crash"
                            );
                            if now != with && now != without {
                                bad.push(format!(
                                    "{what}: {:?}, want {:?} or {:?}",
                                    seqs(&now),
                                    seqs(&with),
                                    seqs(&without)
                                ));
                            } else if got.is_ok() && now != without {
                                bad.push(format!("{what}: the acknowledged erase was lost"));
                            } else if let Err(e) = db.stream().check_invariants() {
                                bad.push(format!("{what}: {e}"));
                            }
                            if !fired {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_no_failures(&bad);
}

/// `truncate` below a rollup (replication rollback) drops the rollup message; whatever it
/// leaves of the replaced messages, a restart and a crash recover exactly the same stream,
/// and the next append takes the freed sequence.
#[test]
fn truncate_below_a_rollup_agrees_across_reopen() {
    for durability in [Durability::Always, Durability::None] {
        for r in [Rollup::Subject, Rollup::All] {
            let ctx = format!("{durability:?}/{r:?}");
            let mut db = crash_db(durability, 8);
            db.stream().checkpoint().unwrap();
            let q = roll(db.stream(), "a", r);
            put(db.stream(), "z", b"");
            db.stream().truncate(q - 1).unwrap();
            let mem = live(db.stream());
            assert!(mem.iter().all(|m| m.seq < q), "{ctx}: {:?}", seqs(&mem));
            assert_eq!(db.stream().state().last_seq, q - 1, "{ctx}");
            db.stream().check_invariants().unwrap();
            db.restart().unwrap();
            assert_eq!(live(db.stream()), mem, "{ctx}: after a restart");
            db.crash(CrashKind::PowerLoss).unwrap();
            assert_eq!(live(db.stream()), mem, "{ctx}: after a crash");
            db.stream().check_invariants().unwrap();
            assert_eq!(put(db.stream(), "a", b""), q, "{ctx}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Limits.
// ---------------------------------------------------------------------------------------------

#[test]
fn per_subject_discard_new_accepts_a_rollup_on_a_full_subject() {
    let store = mem_store();
    for (i, (storage, durability)) in variants().into_iter().enumerate() {
        let ctx = format!("{storage:?}/{durability:?}");
        let s = store
            .create_stream(
                cfg(&format!("s{i}"), storage, durability)
                    .max_msgs_per_subject(1)
                    .discard(Discard::NewPerSubject),
            )
            .unwrap();
        put(&s, "a", b"1");
        put(&s, "b", b"2");
        let st = s.state();
        let got = s.append("a", b"", b"3");
        assert!(
            matches!(
                got,
                Err(AppendError::LimitReached(Limit::MaxMsgsPerSubject))
            ),
            "{ctx}: {got:?}"
        );
        assert_eq!(s.state(), st, "{ctx}");
        let r = roll(&s, "a", Rollup::Subject);
        assert_eq!(r, 3, "{ctx}");
        assert_eq!(seqs(&live(&s)), vec![2, 3], "{ctx}");
        // A second one on the same (still full) subject, and an All one.
        let r = roll(&s, "a", Rollup::Subject);
        assert_eq!(seqs(&live(&s)), vec![2, r], "{ctx}");
        let r = roll(&s, "b", Rollup::All);
        assert_eq!(seqs(&live(&s)), vec![r], "{ctx}");
        assert!(matches!(
            s.append("b", b"", b"x"),
            Err(AppendError::LimitReached(Limit::MaxMsgsPerSubject))
        ));
        s.check_invariants().unwrap();
    }
}

#[test]
fn discard_new_counts_the_room_a_rollup_frees() {
    let store = mem_store();
    for (i, (storage, durability)) in variants().into_iter().enumerate() {
        let ctx = format!("{storage:?}/{durability:?}");
        let s = store
            .create_stream(
                cfg(&format!("m{i}"), storage, durability)
                    .max_msgs(3)
                    .discard(Discard::New),
            )
            .unwrap();
        put(&s, "a", b"1");
        put(&s, "b", b"2");
        put(&s, "c", b"3");
        let full = |s: &Stream, m: NewMessage<'_>| {
            let (before, st) = (live(s), s.state());
            let got = s.append_msg(&m);
            assert!(
                matches!(got, Err(AppendError::LimitReached(Limit::MaxMsgs))),
                "{ctx}: {m:?}: {got:?}"
            );
            assert_eq!((live(s), s.state()), (before, st), "{ctx}");
        };
        full(&s, NewMessage::new("d", b"4"));
        // A Subject rollup on a subject with nothing to replace frees nothing.
        full(&s, NewMessage::new("d", b"4").with_rollup(Rollup::Subject));
        // One that replaces a message keeps the count.
        let r = roll(&s, "a", Rollup::Subject);
        assert_eq!(seqs(&live(&s)), vec![2, 3, r], "{ctx}");
        full(&s, NewMessage::new("a", b"x"));
        let r = roll(&s, "e", Rollup::All);
        assert_eq!(seqs(&live(&s)), vec![r], "{ctx}");
        put(&s, "f", b"");
        put(&s, "g", b"");
        full(&s, NewMessage::new("h", b""));
        s.check_invariants().unwrap();

        // A rollup larger than max_bytes can never fit, whatever the policy: it removes
        // nothing.
        let o = store
            .create_stream(cfg(&format!("o{i}"), storage, durability).max_bytes(300))
            .unwrap();
        put(&o, "a", b"1");
        put(&o, "b", b"2");
        let (before, st) = (live(&o), o.state());
        for r in [Rollup::Subject, Rollup::All] {
            let got = o.append_msg(&NewMessage::new("a", &[0; 400]).with_rollup(r));
            assert!(
                matches!(got, Err(AppendError::LimitReached(Limit::MaxBytes))),
                "{ctx}: {got:?}"
            );
            assert_eq!((live(&o), o.state()), (before.clone(), st.clone()), "{ctx}");
        }

        // max_bytes: a full stream refuses a plain append and accepts an All rollup of the
        // same size.
        let b = store
            .create_stream(cfg(&format!("b{i}"), storage, durability).discard(Discard::New))
            .unwrap();
        put(&b, "a", &[7; 100]);
        let one = b.state().bytes;
        put(&b, "b", &[7; 100]);
        b.update_limits(tidelog::Limits {
            max_bytes: Some(2 * one),
            discard: Discard::New,
            ..Default::default()
        })
        .unwrap();
        let st = b.state();
        let got = b.append("c", b"", &[7; 100]);
        assert!(
            matches!(got, Err(AppendError::LimitReached(Limit::MaxBytes))),
            "{ctx}: {got:?}"
        );
        assert_eq!(b.state(), st, "{ctx}");
        let q = b
            .append_msg(&NewMessage::new("c", &[7; 100]).with_rollup(Rollup::All))
            .unwrap()
            .seq;
        assert_eq!(seqs(&live(&b)), vec![q], "{ctx}");
        assert_eq!(b.state().bytes, one, "{ctx}");
        b.check_invariants().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Consumers.
// ---------------------------------------------------------------------------------------------

fn dseqs(d: &[tidelog::Delivery]) -> Vec<u64> {
    d.iter().map(|x| x.message.seq).collect()
}

/// (num_pending, num_ack_pending, num_waiting_redelivery) of a consumer.
fn pending_counts(st: &tidelog::ConsumerState) -> (u64, u64, u64) {
    (
        st.num_pending,
        st.num_ack_pending,
        st.num_waiting_redelivery,
    )
}

#[test]
fn rolled_up_messages_leave_consumers_pending_at_once() {
    for storage in [Storage::File, Storage::Memory] {
        let clock = Arc::new(ManualClock::new(T0));
        let store = store_with(MemVfs::new(), Some(clock.clone()));
        let s = store
            .create_stream(cfg("s", storage, Durability::Always))
            .unwrap();
        for subj in ["a", "a", "b", "a", "a"] {
            put(&s, subj, b"");
        }
        let c = s
            .create_consumer(ConsumerConfig::new("c").ack_wait(Duration::from_secs(30)))
            .unwrap();
        let only_a = s
            .create_consumer(
                ConsumerConfig::new("fa")
                    .filters(["a"])
                    .ack_wait(Duration::from_secs(30)),
            )
            .unwrap();
        assert_eq!(dseqs(&c.fetch(3, 0).unwrap()), vec![1, 2, 3]);
        assert_eq!(dseqs(&only_a.fetch(10, 0).unwrap()), vec![1, 2, 4, 5]);
        assert_eq!(c.nak(2, None).unwrap(), AckOutcome::Done);
        assert_eq!(only_a.nak(4, None).unwrap(), AckOutcome::Done);
        let st = c.state().unwrap();
        assert_eq!(pending_counts(&st), (2, 3, 1));
        // Removes 1, 2, 4, 5: c's delivered 1, its nak'd 2 and its undelivered 4, 5.
        let r = roll(&s, "a", Rollup::Subject);
        assert_eq!(r, 6);
        let st = c.state().unwrap();
        assert_eq!(st.num_pending, 1, "only 6 is left to deliver: {st:?}");
        assert_eq!(st.num_ack_pending, 1, "only 3 is pending: {st:?}");
        assert_eq!(st.num_waiting_redelivery, 0, "{st:?}");
        assert_eq!(st.num_redelivered, 0, "{st:?}");
        assert_eq!(st.delivered.stream_seq, 3, "{st:?}");
        assert_eq!(st.ack_floor.stream_seq, 2, "1 and 2 are gone: {st:?}");
        let st = only_a.state().unwrap();
        assert_eq!(pending_counts(&st), (1, 0, 0), "{st:?}");
        for q in [1, 2] {
            assert_eq!(c.ack(q).unwrap(), AckOutcome::NotPending, "ack {q}");
            assert_eq!(c.nak(q, None).unwrap(), AckOutcome::NotPending, "nak {q}");
            assert_eq!(c.term(q).unwrap(), AckOutcome::NotPending, "term {q}");
        }
        for q in [1, 2, 4, 5] {
            assert_eq!(only_a.ack(q).unwrap(), AckOutcome::NotPending, "fa ack {q}");
        }
        // Fetch continues with what is left: no redelivery of removed 2 or 4.
        assert_eq!(dseqs(&c.fetch(10, 0).unwrap()), vec![6]);
        assert_eq!(dseqs(&only_a.fetch(10, 0).unwrap()), vec![6]);
        clock.advance_ns(60 * SEC);
        // The ack wait ran out on 3 and 6 only.
        assert_eq!(dseqs(&c.fetch(10, 0).unwrap()), vec![3, 6]);
        assert_eq!(c.ack(3).unwrap(), AckOutcome::Done);
        assert_eq!(c.ack(6).unwrap(), AckOutcome::Done);
        assert_eq!(only_a.ack(6).unwrap(), AckOutcome::Done);
        let st = c.state().unwrap();
        assert_eq!((st.num_pending, st.num_ack_pending), (0, 0), "{st:?}");
        assert_eq!(st.ack_floor.stream_seq, 6, "{st:?}");

        // All: removes pending messages of every subject.
        for subj in ["x", "y", "x"] {
            put(&s, subj, b"");
        }
        assert_eq!(dseqs(&c.fetch(2, 0).unwrap()), vec![7, 8]);
        c.nak(8, None).unwrap();
        let r = roll(&s, "z", Rollup::All);
        let st = c.state().unwrap();
        assert_eq!(pending_counts(&st), (1, 0, 0), "{st:?}");
        assert_eq!(c.ack(7).unwrap(), AckOutcome::NotPending);
        assert_eq!(c.ack(8).unwrap(), AckOutcome::NotPending);
        assert_eq!(dseqs(&c.fetch(10, 0).unwrap()), vec![r]);
        assert_eq!(c.ack(r).unwrap(), AckOutcome::Done);
        assert_eq!(c.state().unwrap().ack_floor.stream_seq, r);
        s.check_invariants().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 7. TTLs.
// ---------------------------------------------------------------------------------------------

fn put_ttl(s: &Stream, subject: &str, ttl: Option<Ttl>, r: Option<Rollup>) -> u64 {
    let mut m = NewMessage::new(subject, b"t");
    m.ttl = ttl;
    m.rollup = r;
    s.append_msg(&m).unwrap().seq
}

#[test]
fn rollups_cancel_the_timers_they_replace_and_keep_their_own() {
    for (memory, durability) in [
        (false, Durability::Always),
        (false, Durability::None),
        (true, Durability::None),
    ] {
        let ctx = format!("memory {memory}, {durability:?}");
        let clock = Arc::new(ManualClock::new(T0));
        let cfg = StreamConfig::new("t")
            .allow_rollup(true)
            .allow_msg_ttl(true)
            .durability(durability);
        let mut db = Db::create(common::store_options(Some(clock.clone())), cfg, memory);
        let at = |secs: i64| clock.set_ns(T0 + secs * SEC);
        let timed = |db: &Db| db.stream().index_memory().timed_messages;
        let s = db.stream().clone();
        put_ttl(&s, "a", Some(Ttl::Secs(100)), None); // 1
        put_ttl(&s, "a", Some(Ttl::Secs(200)), None); // 2
        put_ttl(&s, "b", Some(Ttl::Secs(50)), None); // 3
        put_ttl(&s, "a", None, None); // 4
        put_ttl(&s, "c", Some(Ttl::Never), None); // 5
        assert_eq!(timed(&db), 4, "{ctx}");
        let r = put_ttl(&s, "a", Some(Ttl::Secs(10)), Some(Rollup::Subject));
        assert_eq!(r, 6);
        assert_eq!(s.load(r).unwrap().ttl, Some(Ttl::Secs(10)));
        s.check_invariants().unwrap();
        assert_eq!(timed(&db), 3, "{ctx}: 3, 5 and 6");
        drop(s);
        if !memory {
            db.stream().sync().unwrap();
            db.crash(CrashKind::PowerLoss).unwrap();
            db.stream().check_invariants().unwrap();
            assert_eq!(timed(&db), 3, "{ctx}: after a crash");
        }
        let s = db.stream().clone();
        at(5);
        assert_eq!(s.expire_now().unwrap(), 0, "{ctx}");
        at(11);
        assert_eq!(
            s.expire_now().unwrap(),
            1,
            "{ctx}: the rollup's own TTL fires"
        );
        assert!(s.load(r).is_err());
        assert!(s.load_last("a").unwrap().is_none(), "{ctx}");
        s.check_invariants().unwrap();
        assert_eq!(seqs(&live(&s)), vec![3, 5], "{ctx}");
        // All: takes 3's timer and 5's "never" with it.
        let r2 = put_ttl(&s, "d", Some(Ttl::Secs(30)), Some(Rollup::All));
        assert_eq!(seqs(&live(&s)), vec![r2]);
        s.check_invariants().unwrap();
        assert_eq!(timed(&db), 1, "{ctx}");
        drop(s);
        if !memory {
            db.restart().unwrap();
            db.stream().check_invariants().unwrap();
            assert_eq!(timed(&db), 1, "{ctx}: after a restart");
        }
        let s = db.stream().clone();
        // The rollup is due at 41 and 3 would have been at 50: only the rollup fires.
        at(55);
        assert_eq!(s.expire_now().unwrap(), 1, "{ctx}");
        at(300);
        assert_eq!(s.expire_now().unwrap(), 0, "{ctx}");
        assert_eq!(s.state().messages, 0);
        assert_eq!(timed(&db), 0);
        s.check_invariants().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Watchers and readers.
// ---------------------------------------------------------------------------------------------

fn poll_all(w: &mut tidelog::Watcher) -> Vec<StoredMessage> {
    let mut v = Vec::new();
    while let Some(m) = w.poll().unwrap() {
        v.push(m);
    }
    v
}

#[test]
fn watchers_see_the_rollup_message() {
    let store = mem_store();
    for (i, (storage, durability)) in variants().into_iter().enumerate() {
        let ctx = format!("{storage:?}/{durability:?}");
        let s = store
            .create_stream(cfg(&format!("w{i}"), storage, durability))
            .unwrap();
        let mut all = s.watch(">", WatchFrom::Seq(1)).unwrap();
        let mut only_a = s.watch("a", WatchFrom::Seq(1)).unwrap();
        let mut new = s.watch(">", WatchFrom::New).unwrap();
        put(&s, "a", b"1");
        put(&s, "b", b"2");
        put(&s, "a", b"3");
        assert_eq!(all.poll().unwrap().unwrap().seq, 1);
        let r = roll(&s, "a", Rollup::Subject);
        assert_eq!(s.load_last("a").unwrap().unwrap().seq, r);
        let got = poll_all(&mut all);
        assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, r]);
        assert_eq!(got[0].rollup, None, "{ctx}");
        assert_eq!(got[1].rollup, Some(Rollup::Subject), "{ctx}");
        let got = poll_all(&mut only_a);
        assert_eq!(
            got.len(),
            1,
            "{ctx}: 1 and 3 were replaced before being read"
        );
        assert_eq!((got[0].seq, got[0].rollup), (r, Some(Rollup::Subject)));
        assert_eq!(
            poll_all(&mut new).iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![2, r],
            "{ctx}"
        );
        let mut kv = s.watch(">", WatchFrom::LastPerSubject).unwrap();
        let r2 = roll(&s, "b", Rollup::All);
        assert_eq!(s.load_last(">").unwrap().unwrap().seq, r2);
        assert_eq!(s.load_last("b").unwrap().unwrap().seq, r2);
        assert!(s.load_last("a").unwrap().is_none());
        let got = poll_all(&mut kv);
        assert_eq!(
            got.iter().map(|m| (m.seq, m.rollup)).collect::<Vec<_>>(),
            vec![(r2, Some(Rollup::All))],
            "{ctx}: 2 and {r} were replaced before being read"
        );
        let got = poll_all(&mut all);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rollup, Some(Rollup::All));
        assert!(poll_all(&mut only_a).is_empty());
    }
}

/// No reader or watcher ever sees a rollup message without its removals or the removals
/// without it: a subject written only by Subject rollups always holds exactly one message,
/// and a stream written only by All rollups always holds exactly one.
#[test]
fn readers_never_see_half_a_rollup() {
    let store = mem_store();
    const ROUNDS: u64 = 150;
    for (i, (storage, durability)) in [
        (Storage::File, Durability::Always),
        (Storage::File, Durability::None),
        (Storage::Memory, Durability::None),
    ]
    .into_iter()
    .enumerate()
    {
        for r in [Rollup::Subject, Rollup::All] {
            let ctx = format!("{storage:?}/{durability:?}/{r:?}");
            let s = store
                .create_stream(cfg(&format!("h{i}{r:?}"), storage, durability))
                .unwrap();
            let first = roll(&s, "k", r);
            let done = Arc::new(AtomicBool::new(false));
            let reader = {
                let (s, done, ctx) = (s.clone(), done.clone(), ctx.clone());
                thread::spawn(move || {
                    let mut last = first;
                    let mut looks = 0u64;
                    while !done.load(Ordering::Acquire) || looks < 10 {
                        looks += 1;
                        let n = match r {
                            Rollup::Subject => s.subjects_totals("k").unwrap()["k"],
                            Rollup::All => s.state().messages,
                        };
                        assert_eq!(n, 1, "{ctx}: a reader saw {n} messages");
                        let m = s.load_last("k").unwrap().expect("k always has a message");
                        assert!(m.seq >= last, "{ctx}: load_last went back");
                        assert_eq!(m.rollup, Some(r), "{ctx}");
                        last = m.seq;
                    }
                    looks
                })
            };
            let last_written = Arc::new(AtomicU64::new(0));
            let watcher = {
                let s = s.clone();
                let last_written = last_written.clone();
                let mut w = s.watch("k", WatchFrom::Seq(1)).unwrap();
                thread::spawn(move || {
                    let started = Instant::now();
                    let mut seen = Vec::new();
                    loop {
                        let end = last_written.load(Ordering::Acquire);
                        if end != 0 && seen.last() == Some(&end) {
                            return seen;
                        }
                        assert!(started.elapsed() < Duration::from_secs(10), "{seen:?}");
                        if let Some(m) = w.next_timeout(Duration::from_millis(20)).unwrap() {
                            assert_eq!(m.rollup, Some(r));
                            seen.push(m.seq);
                        }
                    }
                })
            };
            let mut q = first;
            for n in 1..=ROUNDS {
                if r == Rollup::Subject && n % 3 == 0 {
                    put(&s, "other", b"");
                }
                q = roll(&s, "k", r);
                assert_eq!(s.load_last("k").unwrap().unwrap().seq, q, "{ctx}");
            }
            last_written.store(q, Ordering::Release);
            done.store(true, Ordering::Release);
            reader.join().unwrap();
            let seen = watcher.join().unwrap();
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{ctx}: {seen:?}");
            s.check_invariants().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Expectations.
// ---------------------------------------------------------------------------------------------

/// Appends `m`, which must fail with `want`, and checks nothing changed.
fn refused(s: &Stream, m: NewMessage<'_>, want: &AppendError, ctx: &str) {
    let (before, st) = (live(s), s.state());
    let got = s.append_msg(&m);
    let same = same_error(&got, want);
    assert!(same, "{ctx}: {m:?}: got {got:?}, want {want:?}");
    assert_eq!(live(s), before, "{ctx}: {m:?} changed the messages");
    assert_eq!(s.state(), st, "{ctx}: {m:?} changed the state");
}

/// Whether `got` is the failed expectation `want` (the same sequences; any invalid filter).
fn same_error<T>(got: &Result<T, AppendError>, want: &AppendError) -> bool {
    match (got, want) {
        (
            Err(AppendError::WrongLastSequence { expected, current }),
            AppendError::WrongLastSequence {
                expected: e,
                current: c,
            },
        ) => (expected, current) == (e, c),
        (
            Err(AppendError::WrongLastSubjectSequence { expected, current }),
            AppendError::WrongLastSubjectSequence {
                expected: e,
                current: c,
            },
        ) => (expected, current) == (e, c),
        (Err(AppendError::InvalidFilter(_)), AppendError::InvalidFilter(_)) => true,
        _ => false,
    }
}

fn wrong_seq(expected: u64, current: u64) -> AppendError {
    AppendError::WrongLastSequence { expected, current }
}

fn wrong_subj(expected: u64, current: u64) -> AppendError {
    AppendError::WrongLastSubjectSequence { expected, current }
}

fn invalid_filter() -> AppendError {
    AppendError::InvalidFilter(tidelog::ConfigError::InvalidFilter {
        filter: String::new(),
        why: "",
    })
}

fn ok(s: &Stream, m: NewMessage<'_>) -> u64 {
    s.append_msg(&m)
        .unwrap_or_else(|e| panic!("{m:?}: {e:?}"))
        .seq
}

#[test]
fn expectations_on_single_appends() {
    let store = mem_store();
    for (i, (storage, durability)) in variants().into_iter().enumerate() {
        let ctx = &format!("{storage:?}/{durability:?}");
        let s = store
            .create_stream(cfg(&format!("e{i}"), storage, durability))
            .unwrap();
        let m = NewMessage::new;
        // Last sequence; 0 means an empty stream.
        refused(&s, m("a", b"").expect_last_seq(1), &wrong_seq(1, 0), ctx);
        assert_eq!(ok(&s, m("a", b"").expect_last_seq(0)), 1);
        refused(&s, m("a", b"").expect_last_seq(0), &wrong_seq(0, 1), ctx);
        refused(&s, m("b", b"").expect_last_seq(2), &wrong_seq(2, 1), ctx);
        assert_eq!(ok(&s, m("b", b"").expect_last_seq(1)), 2);
        // Last sequence of the subject; 0 means none.
        assert_eq!(ok(&s, m("c", b"").expect_last_subject_seq(0)), 3);
        refused(
            &s,
            m("a", b"").expect_last_subject_seq(0),
            &wrong_subj(0, 1),
            ctx,
        );
        refused(
            &s,
            m("a", b"").expect_last_subject_seq(2),
            &wrong_subj(2, 1),
            ctx,
        );
        assert_eq!(ok(&s, m("a", b"").expect_last_subject_seq(1)), 4);
        refused(
            &s,
            m("a", b"").expect_last_subject_seq(1),
            &wrong_subj(1, 4),
            ctx,
        );
        // Both at once: each must hold.
        refused(
            &s,
            m("a", b"").expect_last_seq(4).expect_last_subject_seq(1),
            &wrong_subj(1, 4),
            ctx,
        );
        refused(
            &s,
            m("a", b"").expect_last_seq(3).expect_last_subject_seq(4),
            &wrong_seq(3, 4),
            ctx,
        );
        assert_eq!(
            ok(
                &s,
                m("a", b"").expect_last_seq(4).expect_last_subject_seq(4)
            ),
            5
        );
        // A filter instead of the subject, with wildcards.
        assert_eq!(ok(&s, m("kv.x", b"").expect_last_seq_for("kv.*", 0)), 6);
        refused(
            &s,
            m("kv.y", b"").expect_last_seq_for("kv.*", 0),
            &wrong_subj(0, 6),
            ctx,
        );
        assert_eq!(ok(&s, m("kv.y", b"").expect_last_seq_for("kv.*", 6)), 7);
        refused(
            &s,
            m("kv.z", b"").expect_last_seq_for("kv.>", 6),
            &wrong_subj(6, 7),
            ctx,
        );
        refused(
            &s,
            m("kv.x", b"").expect_last_seq_for("kv.x", 7),
            &wrong_subj(7, 6),
            ctx,
        );
        // The filter need not match the message's own subject.
        assert_eq!(ok(&s, m("other", b"").expect_last_seq_for("kv.x", 6)), 8);
        assert_eq!(ok(&s, m("other", b"").expect_last_seq_for("none.*", 0)), 9);
        assert_eq!(ok(&s, m("kv.z", b"").expect_last_seq_for(">", 9)), 10);
        // Invalid filters.
        for bad in ["kv..x", "kv.>.x", "", "kv.*x", " "] {
            refused(
                &s,
                m("kv.x", b"").expect_last_seq_for(bad, 0),
                &invalid_filter(),
                ctx,
            );
        }
        // With a rollup: a failed expectation removes nothing; a right one rolls up.
        refused(
            &s,
            m("a", b"")
                .with_rollup(Rollup::Subject)
                .expect_last_subject_seq(4),
            &wrong_subj(4, 5),
            ctx,
        );
        refused(
            &s,
            m("a", b"").with_rollup(Rollup::All).expect_last_seq(9),
            &wrong_seq(9, 10),
            ctx,
        );
        let r = ok(
            &s,
            m("a", b"")
                .with_rollup(Rollup::Subject)
                .expect_last_subject_seq(5),
        );
        assert_eq!(r, 11);
        assert_eq!(s.subjects_totals("a").unwrap()["a"], 1);
        // After the rollup the subject's last is the rollup; removed ones count for nothing.
        refused(
            &s,
            m("a", b"").expect_last_subject_seq(5),
            &wrong_subj(5, 11),
            ctx,
        );
        assert_eq!(ok(&s, m("a", b"").expect_last_subject_seq(11)), 12);
        // After a removal, the current value is what is left.
        s.remove(12).unwrap();
        refused(
            &s,
            m("a", b"").expect_last_subject_seq(12),
            &wrong_subj(12, 11),
            ctx,
        );
        // A purge leaves none of the subject but keeps the stream's last sequence.
        s.purge().unwrap();
        refused(
            &s,
            m("a", b"").expect_last_subject_seq(11),
            &wrong_subj(11, 0),
            ctx,
        );
        refused(&s, m("a", b"").expect_last_seq(0), &wrong_seq(0, 12), ctx);
        assert_eq!(
            ok(
                &s,
                m("a", b"").expect_last_subject_seq(0).expect_last_seq(12)
            ),
            13
        );
        s.check_invariants().unwrap();
    }
}

/// A batch that must fail with `want` (as `refused` checks it) and change nothing.
fn batch_refused(s: &Stream, msgs: &[NewMessage<'_>], want: &AppendError, ctx: &str) {
    let (before, st) = (live(s), s.state());
    let got = s.append_batch(msgs);
    let same = same_error(&got, want);
    assert!(same, "{ctx}: {msgs:?}: got {got:?}, want {want:?}");
    assert_eq!(live(s), before, "{ctx}");
    assert_eq!(s.state(), st, "{ctx}");
}

#[test]
fn expectations_in_batches() {
    let store = mem_store();
    for (i, (storage, durability)) in variants().into_iter().enumerate() {
        let ctx = &format!("{storage:?}/{durability:?}");
        let s = store
            .create_stream(cfg(&format!("b{i}"), storage, durability))
            .unwrap();
        let m = NewMessage::new;
        put(&s, "a", b""); // 1
        put(&s, "b", b""); // 2
                           // Each message is checked against the stream as the earlier ones leave it.
        let b = s
            .append_batch(&[
                m("a", b"").expect_last_seq(2).expect_last_subject_seq(1),
                m("a", b"").expect_last_seq(3).expect_last_subject_seq(3),
                m("b", b"").expect_last_subject_seq(2),
                m("c", b"").expect_last_subject_seq(0),
                m("kv.x", b"").expect_last_seq_for("a", 4),
                m("kv.y", b"").expect_last_seq_for("kv.*", 7),
                m("kv.z", b"").expect_last_seq_for(">", 8),
            ])
            .unwrap();
        assert_eq!((b.first_seq, b.last_seq), (3, 9), "{ctx}");
        // Wrong on the first or on a later message: the whole batch is refused, and the
        // error carries the value as the batch would have left it.
        batch_refused(
            &s,
            &[m("a", b"").expect_last_seq(8), m("a", b"")],
            &wrong_seq(8, 9),
            ctx,
        );
        batch_refused(
            &s,
            &[m("a", b""), m("a", b"").expect_last_seq(9)],
            &wrong_seq(9, 10),
            ctx,
        );
        batch_refused(
            &s,
            &[
                m("a", b""),
                m("b", b""),
                m("a", b"").expect_last_subject_seq(4),
            ],
            &wrong_subj(4, 10),
            ctx,
        );
        batch_refused(
            &s,
            &[m("kv.q", b""), m("x", b"").expect_last_seq_for("kv.>", 9)],
            &wrong_subj(9, 10),
            ctx,
        );
        batch_refused(
            &s,
            &[m("x", b"").expect_last_subject_seq(1)],
            &wrong_subj(1, 0),
            ctx,
        );
        batch_refused(
            &s,
            &[m("x", b""), m("x", b"").expect_last_seq_for("a..b", 0)],
            &invalid_filter(),
            ctx,
        );
        // Nothing was consumed by the refusals.
        let b = s
            .append_batch(&[
                m("a", b"").expect_last_seq(9),
                m("d", b"").expect_last_seq(10),
            ])
            .unwrap();
        assert_eq!((b.first_seq, b.last_seq), (10, 11), "{ctx}");
        s.check_invariants().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Optimistic concurrency.
// ---------------------------------------------------------------------------------------------

const CAS_THREADS: usize = 4;

/// (round, expected, stored seq) of each success and the number of failures, per thread.
type CasLog = (Vec<(usize, u64, u64)>, u64);

/// Whether the threads of round `i` all read before any of them appends: then they all
/// expect the same value and exactly one may succeed. In the other rounds each thread reads
/// and appends as it goes (a natural race).
fn forced_conflict(i: usize) -> bool {
    i.is_multiple_of(2)
}

fn cas_run(s: &Stream, rounds: usize, by_subject: bool) -> Vec<CasLog> {
    // Every round starts and ends together, so the threads race for the same value.
    let barrier = Arc::new(std::sync::Barrier::new(CAS_THREADS));
    let handles: Vec<_> = (0..CAS_THREADS)
        .map(|t| {
            let s = s.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut wins = Vec::new();
                let mut losses = 0;
                let subject = if by_subject {
                    "kv.key".to_owned()
                } else {
                    format!("seq.t{t}")
                };
                for i in 0..rounds {
                    if by_subject && i % 4 == t % 4 {
                        // Other subjects move the stream, not the key.
                        put(&s, &format!("noise.t{t}"), b"");
                    }
                    if !forced_conflict(i) {
                        barrier.wait();
                    }
                    let cur = if by_subject {
                        s.load_last(&subject).unwrap().map_or(0, |m| m.seq)
                    } else {
                        s.state().last_seq
                    };
                    if forced_conflict(i) {
                        barrier.wait();
                    }
                    let payload = cur.to_le_bytes();
                    let m = NewMessage::new(&subject, &payload);
                    let m = if by_subject {
                        m.expect_last_subject_seq(cur)
                    } else {
                        m.expect_last_seq(cur)
                    };
                    match s.append_msg(&m) {
                        Ok(a) => wins.push((i, cur, a.seq)),
                        Err(
                            AppendError::WrongLastSubjectSequence { expected, current }
                            | AppendError::WrongLastSequence { expected, current },
                        ) => {
                            assert_eq!(expected, cur);
                            // Only appends move these values: a failure saw a newer one.
                            assert!(current > expected, "spurious failure: {current} {expected}");
                            losses += 1;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                    barrier.wait();
                }
                (wins, losses)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn check_cas(s: &Stream, logs: &[CasLog], rounds: usize, by_subject: bool, ctx: &str) {
    let mut per_round = vec![0usize; rounds];
    for &(i, _, _) in logs.iter().flat_map(|l| l.0.iter()) {
        per_round[i] += 1;
    }
    for (i, &n) in per_round.iter().enumerate() {
        if forced_conflict(i) {
            assert_eq!(
                n, 1,
                "{ctx}: round {i}: {n} successes on one expected value"
            );
        } else {
            assert!(n >= 1, "{ctx}: round {i}: no success");
        }
    }
    let mut wins: Vec<(u64, u64)> = logs
        .iter()
        .flat_map(|l| l.0.iter().map(|&(_, e, q)| (e, q)))
        .collect();
    let losses: u64 = logs.iter().map(|l| l.1).sum();
    assert_eq!(
        wins.len() as u64 + losses,
        (CAS_THREADS * rounds) as u64,
        "{ctx}"
    );
    let expected: BTreeSet<u64> = wins.iter().map(|w| w.0).collect();
    assert_eq!(
        expected.len(),
        wins.len(),
        "{ctx}: two successes expected the same seq"
    );
    wins.sort_by_key(|w| w.1);
    if by_subject {
        // The key's messages are exactly the successes, each after the one it expected.
        let mut prev = 0;
        for &(exp, seq) in &wins {
            assert_eq!(
                exp, prev,
                "{ctx}: {seq} expected {exp}, its predecessor is {prev}"
            );
            prev = seq;
        }
        let stored: Vec<Msg> = live(s)
            .into_iter()
            .filter(|m| m.subject == "kv.key")
            .collect();
        assert_eq!(
            seqs(&stored),
            wins.iter().map(|w| w.1).collect::<Vec<_>>(),
            "{ctx}"
        );
        for (m, w) in stored.iter().zip(&wins) {
            assert_eq!(m.payload, w.0.to_le_bytes(), "{ctx}");
        }
    } else {
        // Every message of the stream is a success, stored right after the one it expected.
        for &(exp, seq) in &wins {
            assert_eq!(seq, exp + 1, "{ctx}");
        }
        let all = live(s);
        assert_eq!(
            seqs(&all),
            wins.iter().map(|w| w.1).collect::<Vec<_>>(),
            "{ctx}"
        );
        for m in &all {
            assert_eq!(m.payload, (m.seq - 1).to_le_bytes(), "{ctx}");
        }
    }
    s.check_invariants().unwrap();
}

#[test]
fn concurrent_conditional_appends_on_memory_and_durable_streams() {
    let store = mem_store();
    const ROUNDS: usize = 60;
    for (i, storage) in [Storage::File, Storage::Memory].into_iter().enumerate() {
        for by_subject in [true, false] {
            let ctx = format!("{storage:?} Always, by subject {by_subject}");
            let s = store
                .create_stream(cfg(
                    &format!("c{i}{by_subject}"),
                    storage,
                    Durability::Always,
                ))
                .unwrap();
            let logs = cas_run(&s, ROUNDS, by_subject);
            check_cas(&s, &logs, ROUNDS, by_subject, &ctx);
        }
    }
}

/// The same on a real directory, where `Always` appends share real fsyncs.
#[test]
fn concurrent_conditional_appends_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    const ROUNDS: usize = 25;
    for by_subject in [true, false] {
        let ctx = format!("disk, by subject {by_subject}");
        let s = store
            .create_stream(cfg(
                &format!("d{by_subject}"),
                Storage::File,
                Durability::Always,
            ))
            .unwrap();
        let logs = cas_run(&s, ROUNDS, by_subject);
        check_cas(&s, &logs, ROUNDS, by_subject, &ctx);
    }
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for by_subject in [true, false] {
        let s = store.stream(&format!("d{by_subject}")).unwrap();
        s.check_invariants().unwrap();
        assert!(s.state().messages > 0);
    }
}

// ---------------------------------------------------------------------------------------------
// 11. Replicas.
// ---------------------------------------------------------------------------------------------

fn replicate(replica: &Stream, m: &StoredMessage) -> Result<(), AppendError> {
    let mut n = NewMessage::new(m.subject(), m.payload()).with_headers(m.headers());
    n.ttl = m.ttl;
    n.rollup = m.rollup;
    replica.append_raw_msg(m.seq, m.ts, &n)
}

#[test]
fn append_raw_applies_rollups_unless_the_replica_says_not() {
    let clock = Arc::new(ManualClock::new(T0));
    let store = store_with(MemVfs::new(), Some(clock.clone()));
    let origin = store
        .create_stream(cfg("origin", Storage::File, Durability::None).allow_msg_ttl(true))
        .unwrap();
    // A replica applies whatever its origin did, even without allowing rollups itself.
    let same = store
        .create_stream(StreamConfig::new("same").allow_msg_ttl(true))
        .unwrap();
    let keep = store
        .create_stream(
            StreamConfig::new("keep")
                .allow_msg_ttl(true)
                .replica(ReplicaOptions {
                    apply_rollups: false,
                    ..ReplicaOptions::default()
                }),
        )
        .unwrap();
    let no_ttl = store
        .create_stream(StreamConfig::new("nottl").replica(ReplicaOptions {
            apply_ttls: false,
            ..ReplicaOptions::default()
        }))
        .unwrap();
    // Off even where the stream itself allows TTLs.
    let no_ttl2 =
        store
            .create_stream(StreamConfig::new("nottl2").allow_msg_ttl(true).replica(
                ReplicaOptions {
                    apply_ttls: false,
                    ..ReplicaOptions::default()
                },
            ))
            .unwrap();
    let mut sent: Vec<Msg> = Vec::new();
    let steps: [(&str, Option<Ttl>, Option<Rollup>); 7] = [
        ("a", None, None),
        ("b", Some(Ttl::Secs(30)), None),
        ("a", None, None),
        ("a", Some(Ttl::Secs(60)), Some(Rollup::Subject)),
        ("c", None, None),
        ("b", None, Some(Rollup::Subject)),
        ("d", Some(Ttl::Secs(10)), Some(Rollup::All)),
    ];
    for (subject, ttl, rollup) in steps {
        clock.advance_ns(SEC);
        let q = put_ttl(&origin, subject, ttl, rollup);
        let m = origin.load(q).unwrap();
        for r in [&same, &keep, &no_ttl, &no_ttl2] {
            replicate(r, &m).unwrap();
        }
        let mut plain = Msg::of(&m);
        plain.rollup = None;
        sent.push(plain);
        assert_eq!(live(&same), live(&origin), "after {q}");
        assert_eq!(
            live(&keep),
            sent,
            "after {q}: every message kept, as plain ones"
        );
        let stripped: Vec<Msg> = live(&origin)
            .into_iter()
            .map(|m| Msg { ttl: None, ..m })
            .collect();
        assert_eq!(
            live(&no_ttl),
            stripped,
            "after {q}: rollups applied, TTLs not"
        );
        assert_eq!(
            live(&no_ttl2),
            stripped,
            "after {q}: rollups applied, TTLs not"
        );
        for r in [&same, &keep, &no_ttl, &no_ttl2] {
            r.check_invariants().unwrap();
        }
    }
    assert_eq!(same.index_memory().timed_messages, 1);
    assert_eq!(keep.index_memory().timed_messages, 3);
    assert_eq!(no_ttl.index_memory().timed_messages, 0);
    assert_eq!(no_ttl2.index_memory().timed_messages, 0);
    // The TTLs fire where they were applied (counted from the origin's timestamps).
    clock.advance_ns(100 * SEC);
    for s in [&origin, &same, &keep, &no_ttl, &no_ttl2] {
        s.expire_now().unwrap();
        s.check_invariants().unwrap();
    }
    assert_eq!(origin.state().messages, 0);
    assert_eq!(same.state().messages, 0);
    assert_eq!(
        keep.state().messages,
        4,
        "b (30 s), a (60 s) and d (10 s) expired"
    );
    assert_eq!(no_ttl.state().messages, 1, "d lives by the stream's limits");
    assert_eq!(
        no_ttl2.state().messages,
        1,
        "d lives by the stream's limits"
    );
}

#[test]
fn append_raw_rollups_with_gaps_and_old_timestamps() {
    let clock = Arc::new(ManualClock::new(T0));
    let store = store_with(MemVfs::new(), Some(clock.clone()));
    for (i, (storage, durability)) in variants().into_iter().enumerate() {
        let ctx = format!("{storage:?}/{durability:?}");
        let r = store
            .create_stream(
                StreamConfig::new(format!("g{i}"))
                    .storage(storage)
                    .durability(durability)
                    .allow_msg_ttl(true),
            )
            .unwrap();
        let raw = |seq: u64, subject: &str, rollup: Option<Rollup>| {
            let mut m = NewMessage::new(subject, b"r");
            m.rollup = rollup;
            r.append_raw_msg(seq, T0, &m)
        };
        raw(1, "a", None).unwrap();
        raw(2, "b", None).unwrap();
        raw(5, "a", None).unwrap();
        raw(9, "a", Some(Rollup::Subject)).unwrap();
        assert_eq!(seqs(&live(&r)), vec![2, 9], "{ctx}");
        raw(20, "c", Some(Rollup::All)).unwrap();
        let st = r.state();
        assert_eq!(
            (st.messages, st.first_seq, st.last_seq, st.num_deleted),
            (1, 20, 20, 0),
            "{ctx}"
        );
        // Sequence checks come first: a refused raw append removes nothing.
        let got = raw(20, "c", Some(Rollup::All));
        assert!(
            matches!(got, Err(AppendError::SequenceNotAfterLast { .. })),
            "{ctx}"
        );
        // Expectations hold for raw appends too.
        let got = r.append_raw_msg(
            21,
            T0,
            &NewMessage::new("c", b"")
                .with_rollup(Rollup::All)
                .expect_last_seq(19),
        );
        assert!(
            matches!(
                got,
                Err(AppendError::WrongLastSequence {
                    expected: 19,
                    current: 20
                })
            ),
            "{ctx}: {got:?}"
        );
        let got = r.append_raw_msg(
            21,
            T0,
            &NewMessage::new("c", b"").expect_last_seq_for("c.>.d", 20),
        );
        assert!(
            matches!(got, Err(AppendError::InvalidFilter(_))),
            "{ctx}: {got:?}"
        );
        assert_eq!(seqs(&live(&r)), vec![20], "{ctx}");
        assert_eq!(r.state().last_seq, 20, "{ctx}");
        // A TTL counted from an old origin timestamp is already due.
        let m = NewMessage::new("d", b"").with_ttl(Ttl::Secs(10));
        r.append_raw_msg(21, T0 - 100 * SEC, &m).unwrap();
        assert_eq!(r.expire_now().unwrap(), 1, "{ctx}");
        assert_eq!(seqs(&live(&r)), vec![20], "{ctx}");
        r.check_invariants().unwrap();
    }
}
