//! Focused tests of subject queries, filtered purges and stream limits: the edge cases the
//! model test (`model_subjects.rs`) reaches only by chance, each checked against answers
//! worked out by hand or by brute force over `load`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tidelog::io::MemVfs;
use tidelog::subject::matches;
use tidelog::{
    AppendError, Clock, ConfigError, Discard, Limit, Limits, ManualClock, NewMessage, QueryError,
    Storage, Store, StoreOptions, Stream, StreamConfig, SubjectState, WriteError,
};

const DIR: &str = "/db";
const SEC: i64 = 1_000_000_000;
const START_NS: i64 = 1_700_000_000 * SEC;

/// A store on an in-memory disk with a clock that only moves when told to, and no background
/// thread, so every removal in these tests is one the test asked for.
struct Env {
    mem: MemVfs,
    clock: Arc<ManualClock>,
    store: Store,
}

impl Env {
    fn new() -> Env {
        let mem = MemVfs::new();
        let clock = Arc::new(ManualClock::new(START_NS));
        let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts(&clock)).unwrap();
        Env { mem, clock, store }
    }

    fn create(&self, cfg: StreamConfig) -> Stream {
        self.store.create_stream(cfg.block_size(4096)).unwrap()
    }

    /// Clean close and reopen; the caller fetches its stream again.
    fn restart(self) -> Env {
        let Env { mem, clock, store } = self;
        store.close().unwrap();
        drop(store);
        let store = Store::open_with_vfs(DIR, Arc::new(mem.clone()), opts(&clock)).unwrap();
        Env { mem, clock, store }
    }

    fn stream(&self, name: &str) -> Stream {
        self.store.stream(name).unwrap()
    }
}

fn opts(clock: &Arc<ManualClock>) -> StoreOptions {
    StoreOptions {
        clock: Some(clock.clone() as Arc<dyn Clock>),
        manual_maintenance: true,
        ..Default::default()
    }
}

/// Every live message as (seq, subject), read one by one: the brute-force answer the indexed
/// queries must agree with.
fn live(s: &Stream) -> Vec<(u64, String)> {
    let st = s.state();
    (st.first_seq..=st.last_seq)
        .filter_map(|q| s.load(q).ok().map(|m| (q, m.subject().to_string())))
        .collect()
}

fn brute_state(s: &Stream, filter: &str) -> BTreeMap<String, SubjectState> {
    let mut out: BTreeMap<String, SubjectState> = BTreeMap::new();
    for (q, subj) in live(s) {
        if !matches(filter, &subj) {
            continue;
        }
        out.entry(subj)
            .and_modify(|x| {
                x.messages += 1;
                x.last_seq = q;
            })
            .or_insert(SubjectState {
                messages: 1,
                first_seq: q,
                last_seq: q,
            });
    }
    out
}

fn seqs(s: &Stream, filter: &str) -> Vec<u64> {
    live(s)
        .into_iter()
        .filter(|(_, subj)| matches(filter, subj))
        .map(|(q, _)| q)
        .collect()
}

fn is_invalid_filter(e: &QueryError, filter: &str) -> bool {
    matches!(e, QueryError::InvalidFilter(ConfigError::InvalidFilter { filter: f, .. }) if f == filter)
}

fn limit_of<T: std::fmt::Debug>(r: Result<T, AppendError>) -> Limit {
    match r {
        Err(AppendError::LimitReached(l)) => l,
        other => panic!("expected LimitReached, got {other:?}"),
    }
}

#[test]
fn record_bytes_are_forty_plus_subject_headers_and_payload() {
    // `model_subjects.rs` accounts bytes with this formula; pin it to the engine's counter.
    let env = Env::new();
    for storage in [Storage::File, Storage::Memory] {
        let name = format!("b{storage:?}");
        let s = env.create(StreamConfig::new(name).storage(storage));
        let mut total = 0;
        for (subj, h, p) in [("a", 0, 0), ("a.b.c", 3, 10), ("xy.z", 0, 100), ("q", 7, 1)] {
            let before = s.state().bytes;
            s.append(subj, &vec![1; h], &vec![2; p]).unwrap();
            let len = (40 + subj.len() + h + p) as u64;
            assert_eq!(s.state().bytes - before, len, "{subj} h{h} p{p}");
            total += len;
        }
        assert_eq!(s.state().bytes, total);
        s.remove(2).unwrap();
        assert_eq!(s.state().bytes, total - (40 + 5 + 3 + 10));
    }
}

#[test]
fn num_pending_with_trailing_gt_never_exceeds_messages() {
    let env = Env::new();
    let mut subjects: Vec<String> = ["a", "a.b", "a.b.c", "a.c.d.e", "b.x", "a.b.c.d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Enough subjects under one prefix that a wildcard matches more than a handful.
    subjects.extend((0..20).map(|i| format!("m.{i}")));
    subjects.extend((0..20).map(|i| format!("a.m.{i}")));
    let filters = [
        ">", "a.>", "*.>", "a.b.>", "m.>", "*.*.>", "a.*.>", "q.>", "a.m.>", "*.m.>",
    ];
    for storage in [Storage::File, Storage::Memory] {
        let s = env.create(StreamConfig::new(format!("p{storage:?}")).storage(storage));
        for i in 0..600usize {
            s.append(&subjects[(i * 7) % subjects.len()], b"", b"x")
                .unwrap();
        }
        let check = |phase: &str| {
            let st = s.state();
            let all = live(&s);
            assert_eq!(all.len() as u64, st.messages, "{phase}");
            let mid = all.get(all.len() / 2).map_or(st.first_seq, |x| x.0);
            for f in filters {
                for from in [0, 1, st.first_seq, mid, st.last_seq, st.last_seq + 1] {
                    let want = all
                        .iter()
                        .filter(|(q, subj)| *q >= from && matches(f, subj))
                        .count() as u64;
                    let got = s.num_pending(from, f, false).unwrap();
                    assert!(
                        got <= st.messages,
                        "{phase}: num_pending({from}, {f:?}) = {got} > {} messages",
                        st.messages
                    );
                    assert_eq!(got, want, "{phase}: num_pending({from}, {f:?})");
                    let per_subject = brute_state(&s, f)
                        .values()
                        .filter(|x| x.last_seq >= from)
                        .count() as u64;
                    let got = s.num_pending(from, f, true).unwrap();
                    assert!(got <= st.messages.min(s.num_subjects()), "{phase}");
                    assert_eq!(
                        got, per_subject,
                        "{phase}: num_pending({from}, {f:?}, true)"
                    );
                }
            }
            assert_eq!(
                s.num_pending(0, ">", false).unwrap(),
                st.messages,
                "{phase}"
            );
        };
        check("appended");
        for q in [1, 2, 300, 301, 302, 599, 600] {
            s.remove(q).unwrap();
        }
        check("after removes");
        assert!(s.purge_filtered("a.>", Some(200), 1).unwrap() > 0);
        check("after purge_filtered a.>");
        assert!(s.purge_filtered("*.>", None, 2).unwrap() > 0);
        check("after purge_filtered *.> keep 2");
        s.compact(100).unwrap();
        check("after compact");
        s.truncate(590).unwrap();
        check("after truncate");
        s.purge().unwrap();
        check("after purge");
        s.append("a.b", b"", b"").unwrap();
        check("after purge and append");
    }
}

#[test]
fn subject_first_last_stay_right_after_removals() {
    let mut env = Env::new();
    let s = env.create(StreamConfig::new("fl"));
    // `big` gets enough messages (with gaps between them) that its sequence list is stored
    // in chunks; `small` stays short.
    let mut big = BTreeSet::new();
    let mut small = BTreeSet::new();
    for i in 0..900u64 {
        let subj = match i % 9 {
            0 => "s.small",
            1..=5 => "s.big",
            _ => "other",
        };
        let q = s.append(subj, b"", b"").unwrap().seq;
        match subj {
            "s.big" => big.insert(q),
            "s.small" => small.insert(q),
            _ => true,
        };
    }
    let expect = |s: &Stream, big: &BTreeSet<u64>, small: &BTreeSet<u64>, phase: &str| {
        let mut want = BTreeMap::new();
        for (name, set) in [("s.big", big), ("s.small", small)] {
            if let (Some(&f), Some(&l)) = (set.first(), set.last()) {
                want.insert(
                    name.to_string(),
                    SubjectState {
                        messages: set.len() as u64,
                        first_seq: f,
                        last_seq: l,
                    },
                );
            }
        }
        assert_eq!(s.subjects_state("s.*").unwrap(), want, "{phase}");
        assert_eq!(
            s.subjects_state("s.*").unwrap(),
            brute_state(s, "s.*"),
            "{phase}"
        );
        for (name, set) in [("s.big", big), ("s.small", small)] {
            assert_eq!(
                s.subjects_state(name).unwrap().get(name),
                want.get(name),
                "{phase}: {name}"
            );
            assert_eq!(
                s.load_last(name).unwrap().map(|m| m.seq),
                set.last().copied(),
                "{phase}: load_last({name})"
            );
            assert_eq!(
                s.load_next(name, 0).unwrap().map(|m| m.seq),
                set.first().copied(),
                "{phase}: load_next({name}, 0)"
            );
            assert_eq!(
                s.load_prev(name, u64::MAX).unwrap().map(|m| m.seq),
                set.last().copied(),
                "{phase}: load_prev({name}, max)"
            );
            assert_eq!(
                s.num_pending(0, name, false).unwrap(),
                set.len() as u64,
                "{phase}: num_pending({name})"
            );
            let totals = s.subjects_totals(name).unwrap();
            assert_eq!(
                totals.get(name).copied(),
                want.get(name).map(|x| x.messages)
            );
        }
        s.check_invariants().unwrap();
    };
    expect(&s, &big, &small, "appended");
    fn remove(s: &Stream, set: &mut BTreeSet<u64>, q: u64) {
        s.remove(q).unwrap();
        assert!(set.remove(&q));
    }
    for round in 0..3 {
        let first = *big.first().unwrap();
        remove(&s, &mut big, first);
        expect(
            &s,
            &big,
            &small,
            &format!("round {round}: big lost its first"),
        );
        let last = *big.last().unwrap();
        remove(&s, &mut big, last);
        expect(
            &s,
            &big,
            &small,
            &format!("round {round}: big lost its last"),
        );
        let mid = *big.iter().nth(big.len() / 2).unwrap();
        remove(&s, &mut big, mid);
        expect(&s, &big, &small, &format!("round {round}: big lost {mid}"));
    }
    // A whole stretch from the middle, then down to a handful (the list shrinks back).
    let stretch: Vec<u64> = big.iter().copied().skip(100).take(150).collect();
    for q in stretch {
        remove(&s, &mut big, q);
    }
    expect(&s, &big, &small, "big lost a stretch");
    while big.len() > 5 {
        let q = *big.iter().nth(big.len() / 3).unwrap();
        remove(&s, &mut big, q);
    }
    expect(&s, &big, &small, "big down to five");
    let first = *small.first().unwrap();
    remove(&s, &mut small, first);
    let last = *small.last().unwrap();
    remove(&s, &mut small, last);
    expect(&s, &big, &small, "small lost first and last");
    let subjects_before = s.num_subjects();
    while let Some(&q) = small.iter().nth(small.len() / 2) {
        remove(&s, &mut small, q);
    }
    expect(&s, &big, &small, "small gone");
    assert_eq!(s.num_subjects(), subjects_before - 1);
    assert!(s.load_last("s.small").unwrap().is_none());

    drop(s);
    env = env.restart();
    let s = env.stream("fl");
    expect(&s, &big, &small, "after restart");
    let first = *big.first().unwrap();
    remove(&s, &mut big, first);
    let last = *big.last().unwrap();
    remove(&s, &mut big, last);
    expect(&s, &big, &small, "after restart and removals");
    let q = s.append("s.big", b"", b"").unwrap().seq;
    big.insert(q);
    expect(&s, &big, &small, "after restart, removals and an append");
}

#[test]
fn purge_up_to_seq_one_purges_nothing() {
    let env = Env::new();
    for storage in [Storage::File, Storage::Memory] {
        let s = env.create(StreamConfig::new(format!("u{storage:?}")).storage(storage));
        for i in 0..12 {
            s.append(["a.b", "a.c", "x"][i % 3], b"", b"p").unwrap();
        }
        let before = (s.state(), s.subjects_state(">").unwrap());
        for f in [">", "a.b", "a.*", "x", "*"] {
            for keep in [0, 1, 100] {
                assert_eq!(
                    s.purge_filtered(f, Some(1), keep).unwrap(),
                    0,
                    "{f} keep {keep}"
                );
                assert_eq!(
                    s.purge_filtered(f, Some(0), keep).unwrap(),
                    0,
                    "{f} keep {keep}"
                );
            }
        }
        assert_eq!((s.state(), s.subjects_state(">").unwrap()), before);

        // The bound is exclusive wherever the stream starts.
        s.compact(5).unwrap();
        assert_eq!(s.purge_filtered(">", Some(5), 0).unwrap(), 0);
        assert_eq!(s.state().first_seq, 5);
        assert_eq!(s.purge_filtered(">", Some(6), 0).unwrap(), 1);
        assert!(s.load(5).is_err());
        assert!(s.load(6).is_ok());

        // `keep` counts a subject's newest messages before the bound is applied: a.b holds
        // 7 and 10, a.c holds 8 and 11; keeping one of each leaves 10 and 11, and the bound
        // then spares nothing else.
        assert_eq!(s.purge_filtered("a.*", Some(11), 1).unwrap(), 2);
        assert_eq!(seqs(&s, "a.*"), vec![10, 11]);
        // With keep 0 and bound 11, only a.b's 10 goes.
        assert_eq!(s.purge_filtered("a.*", Some(11), 0).unwrap(), 1);
        assert_eq!(seqs(&s, "a.*"), vec![11]);
        assert_eq!(seqs(&s, "x"), vec![6, 9, 12]);
        s.check_invariants().unwrap();
    }
}

const BAD_FILTERS: [&str; 10] = [
    "", "a..b", ".a", "a.", "a.>.b", "a.b>", "a.*b", "a b", "a.\tb", ">.a",
];

#[test]
fn invalid_filters_are_typed_errors_and_change_nothing() {
    let env = Env::new();
    let s = env.create(StreamConfig::new("f"));
    for subj in ["a", "a.b", "a.b.c", "x.y"] {
        s.append(subj, b"", b"").unwrap();
    }
    let state = s.state();
    let subjects = s.subjects_state(">").unwrap();
    let long = "a.".repeat(3000);
    let mut bad: Vec<&str> = BAD_FILTERS.to_vec();
    bad.push(&long);
    for f in bad {
        let e = s.load_next(f, 0).unwrap_err();
        assert!(is_invalid_filter(&e, f), "load_next({f:?}): {e:?}");
        let e = s.load_prev(f, 10).unwrap_err();
        assert!(is_invalid_filter(&e, f), "load_prev({f:?}): {e:?}");
        let e = s.load_last(f).unwrap_err();
        assert!(is_invalid_filter(&e, f), "load_last({f:?}): {e:?}");
        let e = s.subjects_state(f).unwrap_err();
        assert!(is_invalid_filter(&e, f), "subjects_state({f:?}): {e:?}");
        let e = s.subjects_totals(f).unwrap_err();
        assert!(is_invalid_filter(&e, f), "subjects_totals({f:?}): {e:?}");
        for lps in [false, true] {
            let e = s.num_pending(0, f, lps).unwrap_err();
            assert!(is_invalid_filter(&e, f), "num_pending({f:?}, {lps}): {e:?}");
        }
        // A bad filter anywhere in the list fails the whole call, whatever the limit.
        for list in [vec![f], vec![">", f], vec!["a.b", f, "x.y"]] {
            let e = s.multi_last_seqs(&list, 0, 0).unwrap_err();
            assert!(is_invalid_filter(&e, f), "multi_last_seqs({list:?}): {e:?}");
        }
        match s.purge_filtered(f, None, 0) {
            Err(WriteError::Config(ConfigError::InvalidFilter { filter, .. })) => {
                assert_eq!(filter, f)
            }
            other => panic!("purge_filtered({f:?}): {other:?}"),
        }
        assert_eq!(s.state(), state, "after {f:?}");
        assert_eq!(s.subjects_state(">").unwrap(), subjects, "after {f:?}");
    }
    s.check_invariants().unwrap();
}

#[test]
fn invalid_subjects_are_rejected_and_change_nothing() {
    let env = Env::new();
    for storage in [Storage::File, Storage::Memory] {
        let s = env.create(StreamConfig::new(format!("i{storage:?}")).storage(storage));
        s.append("a.b", b"", b"").unwrap();
        let state = s.state();
        let long = "x".repeat(5000);
        let mut bad: Vec<&str> = vec![
            "", "a.*", "a.>", ">", "*", "a..b", ".a", "a.", "a b", "a\nb", "a.b*", "a\u{7f}",
        ];
        bad.push(&long);
        let is_invalid = |r: &AppendError, subj: &str| matches!(r, AppendError::InvalidSubject(ConfigError::InvalidSubject { subject, .. }) if subject == subj);
        for subj in bad {
            let e = s.append(subj, b"", b"p").unwrap_err();
            assert!(is_invalid(&e, subj), "append({subj:?}): {e:?}");
            let e = s
                .append_raw(state.last_seq + 5, 1, subj, b"", b"p")
                .unwrap_err();
            assert!(is_invalid(&e, subj), "append_raw({subj:?}): {e:?}");
            // One bad message refuses the whole batch.
            let batch = [
                NewMessage::new("a.b", b"ok"),
                NewMessage::new(subj, b"bad"),
                NewMessage::new("a.c", b"ok"),
            ];
            let e = s.append_batch(&batch).unwrap_err();
            assert!(
                is_invalid(&e, subj),
                "append_batch(.., {subj:?}, ..): {e:?}"
            );
            assert_eq!(s.state(), state, "after {subj:?}");
            assert_eq!(s.num_subjects(), 1);
        }
        // No sequence was used up.
        assert_eq!(s.append("a.c", b"", b"").unwrap().seq, state.last_seq + 1);
        s.check_invariants().unwrap();
    }
}

#[test]
fn multi_last_seqs_too_many_results() {
    let env = Env::new();
    let s = env.create(StreamConfig::new("m").storage(Storage::Memory));
    // a.0 .. a.4, twice each: seqs 1..=5 then 6..=10; then x.y at 11.
    for _ in 0..2 {
        for i in 0..5 {
            s.append(&format!("a.{i}"), b"", b"").unwrap();
        }
    }
    s.append("x.y", b"", b"").unwrap();
    assert_eq!(
        s.multi_last_seqs(&["a.*"], 0, 5).unwrap(),
        vec![6, 7, 8, 9, 10]
    );
    assert!(matches!(
        s.multi_last_seqs(&["a.*"], 0, 4),
        Err(QueryError::TooManyResults { max: 4 })
    ));
    assert!(matches!(
        s.multi_last_seqs(&[">"], 0, 5),
        Err(QueryError::TooManyResults { max: 5 })
    ));
    assert!(matches!(
        s.multi_last_seqs(&["a.1", "x.y"], 0, 1),
        Err(QueryError::TooManyResults { max: 1 })
    ));
    // A subject matched by several filters counts once.
    assert_eq!(
        s.multi_last_seqs(&["a.*", "a.1", ">", "*.*"], 0, 6)
            .unwrap(),
        vec![6, 7, 8, 9, 10, 11]
    );
    // The bound picks each subject's last at or below it, and subjects with nothing there
    // do not count against the limit.
    assert_eq!(
        s.multi_last_seqs(&["a.*"], 7, 5).unwrap(),
        vec![3, 4, 5, 6, 7]
    );
    assert_eq!(s.multi_last_seqs(&[">"], 2, 2).unwrap(), vec![1, 2]);
    assert!(matches!(
        s.multi_last_seqs(&[">"], 3, 2),
        Err(QueryError::TooManyResults { max: 2 })
    ));
    assert_eq!(
        s.multi_last_seqs(&["q.>"], 0, 0).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(s.multi_last_seqs(&[], 0, 0).unwrap(), Vec::<u64>::new());
    assert!(matches!(
        s.multi_last_seqs(&["x.y", "q.>"], 0, 0),
        Err(QueryError::TooManyResults { max: 0 })
    ));
    // Removing the last message of a subject moves its answer back.
    s.remove(8).unwrap();
    assert_eq!(
        s.multi_last_seqs(&["a.*"], 0, 5).unwrap(),
        vec![3, 6, 7, 9, 10]
    );
}

#[test]
fn discard_new_rejects_with_named_limit_and_changes_nothing() {
    let mut env = Env::new();
    let new = |name: &str, l: Limits| StreamConfig::new(name).limits(l);

    // max_msgs
    let s = env.create(new(
        "msgs",
        Limits {
            max_msgs: Some(3),
            discard: Discard::New,
            ..Default::default()
        },
    ));
    for subj in ["a", "b", "c"] {
        s.append(subj, b"", b"").unwrap();
    }
    let before = (s.state(), s.subjects_state(">").unwrap());
    assert_eq!(limit_of(s.append("d", b"", b"")), Limit::MaxMsgs);
    assert_eq!(
        limit_of(s.append_batch(&[NewMessage::new("d", b"")])),
        Limit::MaxMsgs
    );
    assert_eq!(
        limit_of(s.append_raw(10, START_NS, "d", b"", b"")),
        Limit::MaxMsgs
    );
    assert_eq!((s.state(), s.subjects_state(">").unwrap()), before);

    // max_bytes: three 45-byte messages fit in 140, a fourth does not.
    let s = env.create(new(
        "bytes",
        Limits {
            max_bytes: Some(140),
            discard: Discard::New,
            ..Default::default()
        },
    ));
    for _ in 0..3 {
        s.append("a", b"", b"1234").unwrap();
    }
    assert_eq!(s.state().bytes, 135);
    let before = (s.state(), s.subjects_state(">").unwrap());
    assert_eq!(limit_of(s.append("a", b"", b"123456")), Limit::MaxBytes);
    assert_eq!(
        limit_of(s.append_batch(&[NewMessage::new("b", b""), NewMessage::new("c", b"")])),
        Limit::MaxBytes
    );
    assert_eq!((s.state(), s.subjects_state(">").unwrap()), before);
    // Exactly full is allowed.
    s.remove(1).unwrap();
    s.append("a", b"", b"123456789").unwrap();
    assert_eq!(s.state().bytes, 140);

    // A message larger than max_bytes can never fit, even when discarding old ones.
    let s = env.create(new(
        "huge",
        Limits {
            max_bytes: Some(100),
            ..Default::default()
        },
    ));
    s.append("a", b"", b"").unwrap();
    let before = (s.state(), s.subjects_state(">").unwrap());
    assert_eq!(limit_of(s.append("a", b"", &[0; 60])), Limit::MaxBytes);
    assert_eq!(
        limit_of(s.append_batch(&[NewMessage::new("a", b""), NewMessage::new("a", &[0; 60])])),
        Limit::MaxBytes
    );
    assert_eq!((s.state(), s.subjects_state(">").unwrap()), before);

    // A full subject still drops its oldest, and the check counts that: appending to a full
    // subject of a full stream succeeds, appending a new subject does not.
    let s = env.create(new(
        "credit",
        Limits {
            max_msgs: Some(2),
            max_msgs_per_subject: Some(1),
            discard: Discard::New,
            ..Default::default()
        },
    ));
    s.append("a.b", b"", b"").unwrap();
    s.append("x.y", b"", b"").unwrap();
    assert_eq!(s.append("a.b", b"", b"").unwrap().seq, 3);
    assert_eq!(seqs(&s, ">"), vec![2, 3]);
    let before = (s.state(), s.subjects_state(">").unwrap());
    assert_eq!(limit_of(s.append("q", b"", b"")), Limit::MaxMsgs);
    assert_eq!((s.state(), s.subjects_state(">").unwrap()), before);

    // A batch gets the same credit for its own earliest messages.
    let s = env.create(new(
        "batch",
        Limits {
            max_msgs: Some(2),
            max_msgs_per_subject: Some(2),
            discard: Discard::New,
            ..Default::default()
        },
    ));
    let b = s
        .append_batch(&[
            NewMessage::new("a.b", b"1"),
            NewMessage::new("a.b", b"2"),
            NewMessage::new("a.b", b"3"),
        ])
        .unwrap();
    assert_eq!((b.first_seq, b.last_seq), (1, 3));
    assert_eq!(seqs(&s, ">"), vec![2, 3]);
    assert_eq!(s.load(2).unwrap().payload(), b"2");
    let before = (s.state(), s.subjects_state(">").unwrap());
    assert_eq!(
        limit_of(s.append_batch(&[NewMessage::new("a.b", b""), NewMessage::new("x", b"")])),
        Limit::MaxMsgs
    );
    assert_eq!((s.state(), s.subjects_state(">").unwrap()), before);

    // Nothing a refused append tried is found after a restart either.
    let states: Vec<_> = ["msgs", "bytes", "huge", "credit", "batch"]
        .iter()
        .map(|n| (env.stream(n).state(), seqs(&env.stream(n), ">")))
        .collect();
    drop(s);
    env = env.restart();
    for (n, st) in ["msgs", "bytes", "huge", "credit", "batch"]
        .iter()
        .zip(states)
    {
        let s = env.stream(n);
        assert_eq!((s.state(), seqs(&s, ">")), st, "{n}");
        s.check_invariants().unwrap();
    }
    assert_eq!(
        limit_of(env.stream("msgs").append("d", b"", b"")),
        Limit::MaxMsgs
    );
}

#[test]
fn discard_new_per_subject_rejects_a_full_subject() {
    let env = Env::new();
    for storage in [Storage::File, Storage::Memory] {
        let s = env.create(
            StreamConfig::new(format!("ps{storage:?}"))
                .storage(storage)
                .max_msgs_per_subject(2)
                .discard(Discard::NewPerSubject),
        );
        s.append("a.b", b"", b"").unwrap();
        s.append("a.b", b"", b"").unwrap();
        let before = (s.state(), s.subjects_state(">").unwrap());
        assert_eq!(
            limit_of(s.append("a.b", b"", b"")),
            Limit::MaxMsgsPerSubject
        );
        assert_eq!(
            limit_of(s.append_raw(9, START_NS, "a.b", b"", b"")),
            Limit::MaxMsgsPerSubject
        );
        assert_eq!((s.state(), s.subjects_state(">").unwrap()), before);
        // Other subjects are not affected.
        assert_eq!(s.append("x.y", b"", b"").unwrap().seq, 3);
        // A batch that would overfill any one subject is refused whole.
        let before = (s.state(), s.subjects_state(">").unwrap());
        assert_eq!(
            limit_of(s.append_batch(&[
                NewMessage::new("c", b""),
                NewMessage::new("x.y", b""),
                NewMessage::new("x.y", b""),
            ])),
            Limit::MaxMsgsPerSubject
        );
        assert_eq!(
            limit_of(s.append_batch(&[
                NewMessage::new("c", b""),
                NewMessage::new("c", b""),
                NewMessage::new("c", b""),
            ])),
            Limit::MaxMsgsPerSubject
        );
        assert_eq!((s.state(), s.subjects_state(">").unwrap()), before);
        let b = s
            .append_batch(&[NewMessage::new("c", b""), NewMessage::new("c", b"")])
            .unwrap();
        assert_eq!((b.first_seq, b.last_seq), (4, 5));
        // Room made by a removal is usable again.
        s.remove(1).unwrap();
        assert_eq!(s.append("a.b", b"", b"").unwrap().seq, 6);
        assert_eq!(seqs(&s, "a.b"), vec![2, 6]);
        s.check_invariants().unwrap();
    }
}

#[test]
fn update_limits_applies_tightened_limits_at_once_and_persists() {
    let mut env = Env::new();
    let s = env.create(StreamConfig::new("ul").discard(Discard::New));
    for i in 0..20 {
        s.append(if i % 2 == 0 { "a.b" } else { "x.y" }, b"", b"1234")
            .unwrap();
    }
    // Tightened under discard-new: the oldest go at once all the same.
    let l = Limits {
        max_msgs: Some(12),
        discard: Discard::New,
        ..Default::default()
    };
    s.update_limits(l).unwrap();
    assert_eq!(s.config().limits, l);
    assert_eq!(seqs(&s, ">"), (9..=20).collect::<Vec<_>>());
    // Later appends follow the policy kept with the limits.
    assert_eq!(limit_of(s.append("a.b", b"", b"")), Limit::MaxMsgs);

    let l = Limits {
        max_msgs: Some(12),
        max_msgs_per_subject: Some(3),
        discard: Discard::New,
        ..Default::default()
    };
    s.update_limits(l).unwrap();
    assert_eq!(seqs(&s, "a.b"), vec![15, 17, 19]);
    assert_eq!(seqs(&s, "x.y"), vec![16, 18, 20]);

    // Six 47-byte messages; 150 bytes keep the newest three.
    assert_eq!(s.state().bytes, 6 * 47);
    let l = Limits {
        max_bytes: Some(150),
        max_msgs_per_subject: Some(3),
        discard: Discard::New,
        ..Default::default()
    };
    s.update_limits(l).unwrap();
    assert_eq!(seqs(&s, ">"), vec![18, 19, 20]);
    assert_eq!(s.state().bytes, 141);

    // An invalid change is refused and changes nothing.
    let before = (s.state(), s.config().limits);
    for bad in [
        Limits {
            max_msgs: Some(0),
            ..Default::default()
        },
        Limits {
            max_age: Some(Duration::ZERO),
            ..Default::default()
        },
        Limits {
            discard: Discard::NewPerSubject,
            ..Default::default()
        },
    ] {
        assert!(
            matches!(
                s.update_limits(bad),
                Err(WriteError::Config(ConfigError::InvalidLimit { .. }))
            ),
            "{bad:?}"
        );
        assert_eq!((s.state(), s.config().limits), before);
    }

    drop(s);
    env = env.restart();
    let s = env.stream("ul");
    assert_eq!(s.config().limits, l);
    assert_eq!(seqs(&s, ">"), vec![18, 19, 20]);
    assert_eq!(limit_of(s.append("q", b"", b"")), Limit::MaxBytes);
    s.remove(18).unwrap();
    assert_eq!(s.append("q", b"", b"12").unwrap().seq, 21);
    assert_eq!(s.state().bytes, 94 + 43);

    // Loosened, then tightened again across another restart.
    let loose = Limits::default();
    s.update_limits(loose).unwrap();
    for _ in 0..5 {
        s.append("a.b", b"", b"").unwrap();
    }
    assert_eq!(s.state().messages, 8);
    drop(s);
    env = env.restart();
    let s = env.stream("ul");
    assert_eq!(s.config().limits, loose);
    assert_eq!(s.state().messages, 8);
    let tight = Limits {
        max_msgs: Some(2),
        ..Default::default()
    };
    s.update_limits(tight).unwrap();
    assert_eq!(seqs(&s, ">"), vec![25, 26]);
    drop(s);
    env = env.restart();
    let s = env.stream("ul");
    assert_eq!(s.config().limits, tight);
    assert_eq!(seqs(&s, ">"), vec![25, 26]);
    // Discard-old now: an append pushes out the oldest.
    s.append("z", b"", b"").unwrap();
    assert_eq!(seqs(&s, ">"), vec![26, 27]);
    s.check_invariants().unwrap();
}

#[test]
fn max_age_expires_with_manual_clock() {
    let mut env = Env::new();
    let age = Duration::from_secs(10);
    let s = env.create(StreamConfig::new("age").max_age(age).discard(Discard::New));
    let t0 = env.clock.now_ns();
    assert_eq!(s.append("a", b"", b"").unwrap().ts, t0);
    env.clock.advance_ns(5 * SEC);
    assert_eq!(s.append("b", b"", b"").unwrap().ts, t0 + 5 * SEC);
    // Exactly max_age old is not yet expired.
    env.clock.set_ns(t0 + 10 * SEC);
    s.enforce_limits().unwrap();
    assert_eq!(seqs(&s, ">"), vec![1, 2]);
    // Without maintenance nothing expires on its own...
    env.clock.set_ns(t0 + 10 * SEC + 1);
    assert_eq!(seqs(&s, ">"), vec![1, 2]);
    // ...until asked.
    s.enforce_limits().unwrap();
    assert_eq!(seqs(&s, ">"), vec![2]);
    assert_eq!(s.state().first_ts, t0 + 5 * SEC);
    // Appends do no expiry work: the expiry pass (the maintenance tick) does.
    env.clock.set_ns(t0 + 16 * SEC);
    s.append("c", b"", b"").unwrap();
    assert_eq!(seqs(&s, ">"), vec![2, 3]);
    assert_eq!(s.expire_now().unwrap(), 1);
    assert_eq!(seqs(&s, ">"), vec![3]);
    s.append_raw(10, t0 + 16 * SEC, "d", b"", b"").unwrap();
    env.clock.set_ns(t0 + 20 * SEC);
    s.append("e", b"", b"").unwrap();
    s.expire_now().unwrap();
    assert_eq!(seqs(&s, ">"), vec![3, 10, 11]);
    // A raw message already past max_age goes at the next pass.
    let m = env.create(StreamConfig::new("ageraw").max_age(age));
    m.append_raw(5, t0 + 9 * SEC, "d", b"", b"").unwrap();
    m.expire_now().unwrap();
    assert_eq!(m.state().messages, 0);
    assert_eq!(m.state().last_seq, 5);
    m.append_raw(6, t0 + 11 * SEC, "d", b"", b"").unwrap();
    m.expire_now().unwrap();
    assert_eq!(seqs(&m, ">"), vec![6]);

    // Time that passed while closed is applied at open.
    drop(s);
    drop(m);
    env.clock.set_ns(t0 + 27 * SEC);
    env = env.restart();
    let s = env.stream("age");
    assert_eq!(seqs(&s, ">"), vec![11]);
    assert_eq!(env.stream("ageraw").state().messages, 0);
    env.clock.set_ns(t0 + 60 * SEC);
    drop(s);
    env = env.restart();
    let s = env.stream("age");
    assert_eq!(s.state().messages, 0);
    assert_eq!(s.state().first_seq, 12);
    assert_eq!(s.append("f", b"", b"").unwrap().seq, 12);

    // A memory stream expires the same way.
    let m = env.create(
        StreamConfig::new("agemem")
            .storage(Storage::Memory)
            .max_age(age),
    );
    m.append("a", b"", b"").unwrap();
    env.clock.advance_ns(4 * SEC);
    m.append("a", b"", b"").unwrap();
    env.clock.advance_ns(7 * SEC);
    m.enforce_limits().unwrap();
    assert_eq!(seqs(&m, ">"), vec![2]);
    s.check_invariants().unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn load_next_across_a_million_sequence_gap_on_a_memory_stream() {
    const GAP: u64 = 1_000_000;
    let env = Env::new();
    for (variant, use_skip) in [("skip", true), ("raw", false)] {
        let s = env.create(StreamConfig::new(variant).storage(Storage::Memory));
        s.append("a.b", b"", b"first").unwrap();
        // More subjects under `k` than `load_next` looks up one by one.
        for i in 0..20 {
            s.append(&format!("k.{i}"), b"", b"").unwrap();
        }
        assert_eq!(s.state().last_seq, 21);
        let far = 22 + GAP;
        if use_skip {
            assert_eq!(s.skip(GAP).unwrap(), 21 + GAP);
            s.append("a.b", b"", b"far").unwrap();
        } else {
            s.append_raw(far, env.clock.now_ns(), "a.b", b"", b"far")
                .unwrap();
        }
        let k5 = s.append("k.5", b"", b"").unwrap().seq;
        let xy = s.append("x.y", b"", b"").unwrap().seq;
        assert_eq!((k5, xy), (far + 1, far + 2));
        let next = |f: &str, from: u64| s.load_next(f, from).unwrap().map(|m| m.seq);
        let prev = |f: &str, from: u64| s.load_prev(f, from).unwrap().map(|m| m.seq);
        assert_eq!(next("a.b", 2), Some(far), "{variant}");
        assert_eq!(s.load_next("a.b", 2).unwrap().unwrap().payload(), b"far");
        assert_eq!(next("a.*", 2), Some(far), "{variant}");
        assert_eq!(next("*.b", 2), Some(far), "{variant}");
        assert_eq!(next(">", 22), Some(far), "{variant}");
        assert_eq!(next("k.*", 22), Some(k5), "{variant}");
        assert_eq!(next("k.5", 7), Some(7), "{variant}");
        assert_eq!(next("k.5", 8), Some(k5), "{variant}");
        assert_eq!(next("*.*", 22), Some(far), "{variant}");
        assert_eq!(next("*.*", far + 1), Some(k5), "{variant}");
        assert_eq!(next("x.>", 2), Some(xy), "{variant}");
        assert_eq!(next("k.*", xy), None, "{variant}");
        assert_eq!(next("q.>", 0), None, "{variant}");
        assert_eq!(prev("a.b", far - 1), Some(1), "{variant}");
        assert_eq!(prev("k.*", far - 1), Some(21), "{variant}");
        assert_eq!(prev(">", far - 1), Some(21), "{variant}");
        assert_eq!(prev("k.*", u64::MAX), Some(k5), "{variant}");
        assert_eq!(s.num_pending(2, "a.b", false).unwrap(), 1);
        assert_eq!(s.num_pending(22, ">", false).unwrap(), 3);
        assert_eq!(s.num_pending(22, "k.*", false).unwrap(), 1);
        assert_eq!(s.num_pending(22, "k.*", true).unwrap(), 1);
        assert_eq!(s.state().num_deleted, GAP);
        // Removing the far message makes the wildcard search go further still.
        s.remove(far).unwrap();
        assert_eq!(next("a.*", 2), None, "{variant}");
        assert_eq!(next("*.*", 22), Some(k5), "{variant}");
        assert_eq!(next(">", 22), Some(k5), "{variant}");
        s.check_invariants().unwrap();
    }
}

#[test]
fn seq_for_time_finds_the_first_message_at_or_after_a_time() {
    let mut env = Env::new();
    let s = env.create(StreamConfig::new("t"));
    let mut ts: BTreeMap<u64, i64> = BTreeMap::new();
    // Groups of ten messages share a timestamp; 4096-byte blocks make several blocks.
    for i in 0..300u64 {
        if i % 10 == 0 {
            env.clock.advance_ns(SEC);
        }
        let a = s
            .append(["a", "b.c"][i as usize % 2], b"", &[0; 20])
            .unwrap();
        assert_eq!(a.ts, env.clock.now_ns());
        ts.insert(a.seq, a.ts);
    }
    assert!(s.state().blocks > 2, "{:?}", s.state());
    let check = |s: &Stream, ts: &BTreeMap<u64, i64>, phase: &str| {
        let last = s.state().last_seq;
        let mut probes: BTreeSet<i64> = [0, START_NS, i64::MAX].into();
        for &t in ts.values() {
            probes.extend([t - 1, t, t + 1]);
        }
        for t in probes {
            let want = ts
                .iter()
                .find(|(_, &x)| x >= t)
                .map_or(last + 1, |(q, _)| *q);
            assert_eq!(s.seq_for_time(t), want, "{phase}: seq_for_time({t})");
        }
    };
    check(&s, &ts, "appended");
    assert_eq!(s.seq_for_time(0), 1);
    assert_eq!(s.seq_for_time(START_NS + SEC), 1);
    assert_eq!(s.seq_for_time(START_NS + SEC + 1), 11);
    assert_eq!(s.seq_for_time(i64::MAX), 301);
    // The first of a group, a whole group, and a group's last message go.
    let mut gone = vec![11, 50, 300];
    gone.extend(21..=30);
    for q in gone {
        s.remove(q).unwrap();
        ts.remove(&q);
    }
    check(&s, &ts, "after removals");
    assert_eq!(s.seq_for_time(START_NS + 2 * SEC), 12);
    assert_eq!(s.seq_for_time(START_NS + 3 * SEC), 31);
    s.compact(95).unwrap();
    ts.retain(|&q, _| q >= 95);
    check(&s, &ts, "after compact");
    s.truncate(250).unwrap();
    ts.retain(|&q, _| q <= 250);
    check(&s, &ts, "after truncate");
    drop(s);
    env = env.restart();
    let s = env.stream("t");
    check(&s, &ts, "after restart");
    s.purge().unwrap();
    ts.clear();
    check(&s, &ts, "after purge");
    assert_eq!(s.seq_for_time(0), 251);
}

#[test]
fn queries_stay_right_while_many_subjects_come_and_go() {
    // Thousands of three-token subjects (each with its own prefix) appear and are purged,
    // so the index recycles subject slots and trie nodes and compacts its name arenas.
    let mut env = Env::new();
    let s = env.create(StreamConfig::new("churn").block_size(1 << 20));
    let keep = ["keep.one", "keep.two.x", "k"];
    for round in 0..4u64 {
        for subj in keep {
            s.append(subj, b"", b"").unwrap();
        }
        let batch: Vec<String> = (0..1500)
            .map(|i| format!("r{round}.subject-{i:05}.tail"))
            .collect();
        let msgs: Vec<NewMessage<'_>> = batch.iter().map(|b| NewMessage::new(b, b"")).collect();
        s.append_batch(&msgs).unwrap();
        assert_eq!(s.num_subjects(), 3 + 1500);
        let filter = format!("r{round}.>");
        assert_eq!(s.subjects_totals(&filter).unwrap().len(), 1500);
        assert_eq!(s.purge_filtered(&filter, None, 0).unwrap(), 1500);
        assert_eq!(s.num_subjects(), 3, "round {round}");
        for f in [
            ">", "*", "keep.>", "*.two.*", "*.*", "k", "r0.>", "*.*.tail",
        ] {
            assert_eq!(
                s.subjects_state(f).unwrap(),
                brute_state(&s, f),
                "round {round}: {f}"
            );
            let want = seqs(&s, f);
            assert_eq!(
                s.load_next(f, 0).unwrap().map(|m| m.seq),
                want.first().copied(),
                "round {round}: {f}"
            );
            assert_eq!(
                s.load_last(f).unwrap().map(|m| m.seq),
                want.last().copied(),
                "round {round}: {f}"
            );
            assert_eq!(s.num_pending(0, f, false).unwrap(), want.len() as u64);
        }
        s.check_invariants().unwrap();
    }
    let before = s.subjects_state(">").unwrap();
    drop(s);
    env = env.restart();
    let s = env.stream("churn");
    assert_eq!(s.subjects_state(">").unwrap(), before);
    s.check_invariants().unwrap();
}

#[test]
fn large_filtered_purge_survives_power_loss() {
    use tidelog::io::{CrashKind, Vfs};
    let env = Env::new();
    let s = env.create(StreamConfig::new("big"));
    // The stream directory's entries are made durable under their final name (MemVfs does
    // not move durable entries with a renamed directory; see model.rs).
    env.mem
        .sync_dir(std::path::Path::new("/db/streams/big"))
        .unwrap();
    // Scattered sequences with growing gaps, so the removal list is long and its ranges
    // need multi-byte encodings: more than one removal record.
    let mut a = Vec::new();
    let mut next = 1u64;
    for i in 0..12_000u64 {
        let subj = if i % 3 == 0 { "b.x" } else { "a.x" };
        s.append_raw(next, START_NS, subj, b"", b"").unwrap();
        if subj == "a.x" {
            a.push(next);
        }
        next += 1 + i % 5 * 40;
    }
    // The range spans about a million sequences: follow the subject instead of loading
    // every one.
    let walk = |s: &Stream, f: &str| {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(m) = s.load_next(f, from).unwrap() {
            out.push(m.seq);
            from = m.seq + 1;
        }
        out
    };
    assert_eq!(walk(&s, "a.x"), a);
    let total = s.state().messages;
    assert_eq!(
        s.purge_filtered("a.*", None, 3).unwrap(),
        a.len() as u64 - 3
    );
    let after = (s.state(), s.subjects_state(">").unwrap());
    assert_eq!(after.0.messages, total - (a.len() as u64 - 3));
    assert_eq!(walk(&s, "a.x"), a[a.len() - 3..].to_vec());

    let disk = env.mem.after_crash(CrashKind::PowerLoss);
    drop(s);
    drop(env);
    let clock = Arc::new(ManualClock::new(START_NS));
    let store = Store::open_with_vfs(DIR, Arc::new(disk), opts(&clock)).unwrap();
    let s = store.stream("big").unwrap();
    s.check_invariants().unwrap();
    assert_eq!((s.state(), s.subjects_state(">").unwrap()), after);
    assert_eq!(walk(&s, "a.x"), a[a.len() - 3..].to_vec());
}
