//! Model-based property tests of consumers: random operation sequences (appends, fetches with
//! and without byte bounds, ack / nak / term / in_progress of delivered and unknown sequences,
//! clock moves, every kind of removal from the stream, consumer re-creation) run against one
//! or two consumers of a memory stream and against a plain in-memory model of the documented
//! rules (the doc comments of `consumer.rs`), on a hand-moved clock.
//!
//! Invariants checked:
//! - `ops-equal-model`: every operation returns what the model computes: each fetch delivers
//!   exactly the model's messages (sequence, subject, headers, payload, timestamp, delivery
//!   count, delivery sequence) in the model's order; acks, naks, terms and in_progress answer
//!   `Done` / `NotPending` as the model does; stream operations return the model's results.
//! - `state-equals-model`: the full `ConsumerState` of every consumer equals the model's after
//!   every step (in most cases; see below) and at every explicit state check.
//! - `delivered-exists`: every delivered message is in the stream, as delivered.
//! - `stream-equals-model`: the stream's counters agree with the model's log.
//!
//! `ConsumerState` has side effects (it reconciles removals and flags messages whose ack wait
//! ran out), so a quarter of the cases check it only at explicit `State` steps: those cases
//! see what the other calls answer when no state call came in between.
//!
//! Concurrency: `concurrent_acks_while_fetching_*` ack from several threads while one thread
//! fetches (and, in one of them, the clock moves, messages are redelivered, nak'd and put in
//! progress, and another thread reads the state): every message is acknowledged exactly once
//! and every counter ends at zero.
//!
//! Regression tests at the end pin down, each on a small fixed history, rules this model once
//! caught the engine breaking.
//! `TIDELOG_MODEL_CASES` sets the number of cases, `TIDELOG_MODEL_TRACE` prints every case.

// This file uses a memory stream only: no restarts, crashes or absence probes.
#[allow(dead_code)]
mod common;

use common::by_subject;
use common::consumer_model::{
    self, advance, apick, c_out, fetch_out, APick, AckKind, AppendOp, CfgGen, Fetch, Log, Out,
    Removal, MS, SEC, START_NS,
};
use common::{pick, Db, GenMsg, Rng};

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use tidelog::{
    AckOutcome, Consumer, ConsumerConfig, ConsumerError, ConsumerState, DeliverPolicy, Delivery,
    ManualClock, NewMessage, SeqPair, StreamConfig,
};

const NAME: &str = "cons";
const SUBJECTS: [&str; 5] = ["a", "b", "c.x", "c.y", "d.x"];
/// Consumer filter sets (none may overlap within a set).
const FILTER_SETS: [&[&str]; 8] = [
    &[],
    &[">"],
    &["a"],
    &["c.*"],
    &["a", "c.>"],
    &["b", "d.*"],
    &["c.x", "d.>", "a"],
    &["*"],
];
/// Filters `purge_filtered` is given.
const PURGE_FILTERS: [&str; 7] = [">", "a", "c.*", "b", "d.x", "*", "c.>"];

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Append(AppendOp),
    Fetch(Fetch),
    Ack(usize, AckKind, APick),
    Advance(i64),
    /// A removal from the stream.
    Removal(Removal),
    State(usize),
    /// Deletes the slot's consumer (if any) and creates one with this config.
    Recreate(usize, CfgGen),
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// The stream and its two consumer slots.
type Model = Log<2>;

impl Model {
    fn config(&self, g: &CfgGen, name: &str) -> ConsumerConfig {
        g.config(name, &FILTER_SETS, self.deliver(g.deliver), g.ack)
    }

    fn describe(&self) -> String {
        self.dump("model")
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    clock: Arc<ManualClock>,
    db: Db,
    model: Model,
    cons: [Option<Consumer>; 2],
    /// Compare every consumer's state after every step (else only at `State` steps).
    check_each: bool,
    trace: Vec<String>,
}

impl Harness {
    fn new(block_size: u64, check_each: bool) -> Harness {
        let clock = Arc::new(ManualClock::new(START_NS));
        let db = Db::create(
            common::store_options(Some(clock.clone())),
            StreamConfig::new(NAME).block_size(block_size),
            true,
        );
        Harness {
            clock,
            db,
            model: Model::new(),
            cons: [None, None],
            check_each,
            trace: Vec::new(),
        }
    }

    fn fail(&self, what: String) -> TestCaseError {
        let mut s = common::failure(&what, &self.trace);
        s.push_str(&self.model.describe());
        TestCaseError::fail(s)
    }

    /// Creates consumer `k` (deleting the one there, whose handle must then say so).
    fn create(&mut self, k: usize, g: &CfgGen) -> Result<(), TestCaseError> {
        let name = format!("c{k}");
        let s = self.db.stream().clone();
        if let Some(old) = self.cons[k].take() {
            if let Err(e) = s.delete_consumer(&name) {
                return Err(self.fail(format!("delete_consumer({name}): {e:?}")));
            }
            if !matches!(old.fetch(1, 0), Err(ConsumerError::Deleted(_))) {
                return Err(self.fail(format!("deleted {name}: fetch did not say Deleted")));
            }
        }
        let cfg = self.model.config(g, &name);
        self.trace.push(format!(
            "create {name}: filters {:?} {:?} ack {:?} wait {:?} backoff {:?} max_deliver {:?} max_ack_pending {}",
            cfg.filters, cfg.deliver, cfg.ack, cfg.ack_wait, cfg.backoff, cfg.max_deliver, cfg.max_ack_pending
        ));
        match s.create_consumer(cfg.clone()) {
            Ok(c) => self.cons[k] = Some(c),
            Err(e) => return Err(self.fail(format!("create_consumer: {e:?}"))),
        }
        self.model.cons[k] = Some(self.model.create(cfg));
        self.check_state(k, "state-equals-model (created)")
    }

    fn check_state(&mut self, k: usize, name: &str) -> Result<(), TestCaseError> {
        let model = &mut self.model;
        consumer_model::check_state(self.cons[k].as_ref(), || model.state(k), k, name)
            .map_err(|e| self.fail(e))
    }

    fn verify_stream(&self) -> Result<(), TestCaseError> {
        let st = self.db.stream().state();
        let want = common::counts(&self.model.msgs, self.model.last_seq);
        let got = common::stream_counts(&st);
        if got != want {
            return Err(self.fail(format!(
                "stream-equals-model: (messages, first, last, deleted) {got:?}, model {want:?}"
            )));
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let s = self.db.stream().clone();
        let (what, want, got) = match op {
            Op::Append(a) => {
                let got = a.run(&s, &SUBJECTS);
                let (what, want) = a.model(&mut self.model, &SUBJECTS);
                (what, want, got)
            }
            Op::Fetch(Fetch {
                slot,
                max_msgs,
                max_bytes,
            }) => {
                let Some(c) = self.cons[*slot].clone() else {
                    return Ok(());
                };
                let what = format!("c{slot}.fetch({max_msgs}, {max_bytes})");
                let got = fetch_out(&c, *max_msgs, *max_bytes);
                if let Out::Fetched(gs) = &got {
                    for g in gs {
                        let ok = s.load(g.seq).is_ok_and(|m| {
                            m.subject() == g.subject
                                && m.headers() == g.headers.as_slice()
                                && m.payload() == g.payload.as_slice()
                                && m.ts == g.ts
                        });
                        if !ok {
                            self.trace.push(format!("{what} -> {}", got.short()));
                            return Err(self.fail(format!(
                                "delivered-exists: delivered {} is not in the stream as delivered",
                                g.seq
                            )));
                        }
                    }
                }
                let want = Out::Fetched(self.model.fetch(*slot, *max_msgs, *max_bytes));
                (what, want, got)
            }
            Op::Ack(slot, kind, p) => {
                let Some(c) = self.cons[*slot].clone() else {
                    return Ok(());
                };
                let q = self.model.ack_seq(*slot, *p);
                let (what, got) = (kind.describe(*slot, q), kind.call(&c, q));
                let want = Out::Ack(self.model.ack(*slot, *kind, q).0);
                (what, want, c_out(got))
            }
            Op::Advance(d) => {
                self.clock.advance_ns(*d);
                self.model.now += d;
                (format!("advance({}ms)", d / MS), Out::Unit, Out::Unit)
            }
            Op::Removal(r) => {
                let m = &self.model;
                let (what, want, gone, got) =
                    consumer_model::removal(r, &m.msgs, m.last_seq, &PURGE_FILTERS, &s);
                if want == got {
                    if let Removal::Compact(p) = r {
                        let q = self.model.pick(*p);
                        common::compact_log(&mut self.model.msgs, &mut self.model.last_seq, q);
                    }
                    if let (Removal::Truncate(p), Out::Count(_)) = (r, &got) {
                        let q = self.model.pick(*p);
                        common::truncate_log(&mut self.model.msgs, &mut self.model.last_seq, q);
                        // Sequences above `q` are handed out again: every consumer forgets
                        // them and delivers from `q + 1` again.
                        for c in self.model.cons.iter_mut().flatten() {
                            c.pending.retain(|&s, _| s <= q);
                            c.max_delivered.retain(|&s| s <= q);
                            c.initial.retain(|&s| s <= q);
                            c.next = c.next.min(q + 1);
                            c.delivered_seq = c.delivered_seq.min(q);
                            c.floor = c.floor.min(q);
                        }
                    }
                    self.model.remove(&gone);
                }
                (what, want, got)
            }
            Op::State(k) => {
                self.trace.push(format!("c{k}.state()"));
                return self.check_state(*k, "state-equals-model");
            }
            Op::Recreate(k, g) => return self.create(*k, g),
        };
        self.trace.push(format!(
            "{what} -> {} @ +{}ms",
            got.short(),
            (self.model.now - START_NS) / MS
        ));
        if got != want {
            return Err(self.fail(format!(
                "ops-equal-model: {what} returned {}, model expects {}",
                got.short(),
                want.short()
            )));
        }
        self.verify_stream()?;
        if self.check_each {
            for k in 0..2 {
                self.check_state(k, "state-equals-model")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn cfg_gen() -> impl Strategy<Value = CfgGen> {
    consumer_model::cfg_gen(
        FILTER_SETS.len(),
        consumer_model::dgen(4),
        1u64..=10,
        prop_oneof![1 => Just(Vec::new()), 1 => vec(1u64..=10, 1..4)],
        proptest::option::weighted(0.5, 1u64..=5),
        prop_oneof![1 => 1u64..=4, 2 => 1u64..=20],
    )
}

fn gen_msg() -> impl Strategy<Value = GenMsg> {
    consumer_model::gen_msg(SUBJECTS.len())
}

fn ack_kind() -> impl Strategy<Value = AckKind> {
    consumer_model::ack_kind(8, 3)
}

fn op() -> impl Strategy<Value = Op> {
    let slot = prop_oneof![3 => Just(0usize), 1 => Just(1usize)];
    prop_oneof![
        12 => gen_msg().prop_map(AppendOp::One).prop_map(Op::Append),
        2 => (0..SUBJECTS.len(), 2usize..25)
            .prop_map(|(s, n)| Op::Append(AppendOp::Batch(s, n))),
        14 => consumer_model::fetch(slot.clone(), 2).prop_map(Op::Fetch),
        16 => (slot.clone(), ack_kind(), apick()).prop_map(|(s, k, p)| Op::Ack(s, k, p)),
        7 => advance().prop_map(Op::Advance),
        2 => pick().prop_map(Removal::Remove).prop_map(Op::Removal),
        1 => pick().prop_map(Removal::Erase).prop_map(Op::Removal),
        1 => Just(Op::Removal(Removal::Purge)),
        1 => pick().prop_map(Removal::Compact).prop_map(Op::Removal),
        2 => by_subject::purge(PURGE_FILTERS.len(), 0.5).prop_map(Removal::PurgeFiltered).prop_map(Op::Removal),
        1 => pick().prop_map(Removal::Truncate).prop_map(Op::Removal),
        2 => slot.clone().prop_map(Op::State),
        1 => (slot, cfg_gen()).prop_map(|(s, g)| Op::Recreate(s, g)),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    cfgs: [CfgGen; 2],
    /// The step before which each consumer is created (the second one maybe never).
    create_at: [Option<usize>; 2],
    check_each: bool,
    block_size: u64,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        cfg_gen(),
        cfg_gen(),
        0usize..8,
        proptest::option::weighted(0.5, 0usize..40),
        prop::bool::weighted(0.75),
        4096u64..12_000,
        vec(op(), 1..200),
    )
        .prop_map(|(c0, c1, at0, at1, check_each, block_size, ops)| Case {
            cfgs: [c0, c1],
            create_at: [Some(at0), at1],
            check_each,
            block_size,
            ops,
        })
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let mut h = Harness::new(case.block_size, case.check_each);
    for (i, op) in case.ops.iter().enumerate() {
        for k in 0..2 {
            if case.create_at[k] == Some(i) && h.cons[k].is_none() {
                h.create(k, &case.cfgs[k])?;
            }
        }
        h.step(op)?;
    }
    for k in 0..2 {
        h.check_state(k, "state-equals-model (end)")?;
    }
    common::print_trace(&h.trace);
    Ok(())
}

// The default runs in about two seconds; `TIDELOG_MODEL_CASES=100000` takes about a minute.
proptest! {
    #![proptest_config(common::model_config(3000))]

    /// Every invariant of this file on a memory stream.
    #[test]
    fn consumers_match_model(case in case()) {
        run(&case)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// `n` messages on a memory stream, and a consumer of them.
fn threaded_setup(n: u64, cfg: ConsumerConfig) -> (Db, Consumer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_NS));
    let db = Db::create(
        common::store_options(Some(clock.clone())),
        StreamConfig::new(NAME),
        true,
    );
    let s = db.stream().clone();
    let payloads: Vec<Vec<u8>> = (0..n).map(|i| i.to_le_bytes().to_vec()).collect();
    for chunk in payloads.chunks(500) {
        let batch: Vec<NewMessage<'_>> = chunk.iter().map(|p| NewMessage::new("w", p)).collect();
        s.append_batch(&batch).expect("append");
    }
    let c = s.create_consumer(cfg).expect("consumer");
    (db, c, clock)
}

/// One thread fetches and hands every delivery to `ackers` threads, which ack it (and now and
/// then ack it again, or ack some other delivered sequence). With `chaos`, the fetching thread
/// also moves the clock past the ack wait (redeliveries race with acks), and another thread
/// naks, puts in progress and reads the state meanwhile. Every sequence must get exactly one
/// `Done` over all threads, and every counter must end at zero.
fn concurrent_acks(n: u64, ackers: usize, chaos: bool, seed: u64) {
    let cfg = ConsumerConfig::new("c")
        .max_ack_pending(64)
        .ack_wait(Duration::from_secs(if chaos { 1 } else { 3600 }));
    let (_db, c, clock) = threaded_setup(n, cfg);
    let done: Vec<AtomicU32> = (0..=n).map(|_| AtomicU32::new(0)).collect();
    let total = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (tx, rx) = crossbeam::channel::unbounded::<u64>();
    std::thread::scope(|sc| {
        let done = &done;
        let total = &total;
        let finished = &finished;
        for a in 0..ackers {
            let c = c.clone();
            let rx = rx.clone();
            sc.spawn(move || {
                let mut rng = Rng(seed ^ (a as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let count = |q: u64, r: AckOutcome| {
                    if r == AckOutcome::Done {
                        done[q as usize].fetch_add(1, Ordering::AcqRel);
                        total.fetch_add(1, Ordering::AcqRel);
                    }
                };
                for q in rx.iter() {
                    // Some deliveries are left alone: under chaos they are redelivered.
                    if chaos && rng.below(4) == 0 {
                        continue;
                    }
                    count(q, c.ack(q).expect("ack"));
                    if rng.below(4) == 0 {
                        count(q, c.ack(q).expect("ack"));
                    }
                    if rng.below(4) == 0 {
                        let o = 1 + rng.below(n);
                        count(o, c.ack(o).expect("ack"));
                    }
                }
            });
        }
        drop(rx);
        if chaos {
            let c = c.clone();
            sc.spawn(move || {
                let mut rng = Rng(seed ^ 0xABCD);
                while !finished.load(Ordering::Acquire) {
                    let q = 1 + rng.below(n);
                    match rng.below(3) {
                        0 => drop(c.nak(q, None).expect("nak")),
                        1 => drop(c.in_progress(q).expect("in_progress")),
                        _ => {
                            let st = c.state().expect("state");
                            assert!(st.num_ack_pending <= 64, "{st:?}");
                        }
                    }
                }
            });
        }
        let mut rng = Rng(seed ^ 0x1234);
        let mut rounds = 0u64;
        while total.load(Ordering::Acquire) < n {
            assert!(
                Instant::now() < deadline,
                "stuck: {} of {n} acknowledged, {:?}",
                total.load(Ordering::Acquire),
                c.state()
            );
            let d = c.fetch(1 + rng.below(32) as usize, 0).expect("fetch");
            for x in &d {
                tx.send(x.message.seq).expect("send");
            }
            rounds += 1;
            if chaos && (d.is_empty() || rounds.is_multiple_of(8)) {
                clock.advance_ns(SEC);
            }
            if d.is_empty() {
                std::thread::yield_now();
            }
        }
        finished.store(true, Ordering::Release);
        drop(tx);
    });
    let wrong: Vec<(usize, u32)> = done
        .iter()
        .enumerate()
        .skip(1)
        .map(|(q, d)| (q, d.load(Ordering::Acquire)))
        .filter(|&(_, d)| d != 1)
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "sequences not acknowledged exactly once: {wrong:?}"
    );
    assert!(c.fetch(100, 0).expect("fetch").is_empty());
    let st = c.state().expect("state");
    let want = ConsumerState {
        delivered: st.delivered,
        ack_floor: SeqPair {
            stream_seq: n,
            consumer_seq: st.delivered.consumer_seq,
        },
        ..ConsumerState::default()
    };
    assert_eq!(st, want);
    assert_eq!(st.delivered.stream_seq, n);
    if chaos {
        assert!(
            st.delivered.consumer_seq > n,
            "no redelivery raced with the acks"
        );
    } else {
        assert_eq!(st.delivered.consumer_seq, n);
    }
}

#[test]
fn concurrent_acks_while_fetching_count_once() {
    for seed in 1..=3 {
        concurrent_acks(20_000, 3, false, seed);
    }
}

#[test]
fn concurrent_acks_while_fetching_with_redeliveries_count_once() {
    for seed in 1..=3 {
        concurrent_acks(20_000, 3, true, seed);
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: rules the model once caught the engine breaking, each on a fixed history.
// ---------------------------------------------------------------------------------------------

fn plain_setup(cfgs: &[ConsumerConfig]) -> (Db, Vec<Consumer>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_NS));
    let db = Db::create(
        common::store_options(Some(clock.clone())),
        StreamConfig::new(NAME),
        true,
    );
    let cs = cfgs
        .iter()
        .map(|c| db.stream().create_consumer(c.clone()).expect("consumer"))
        .collect();
    (db, cs, clock)
}

fn seqs(d: &[Delivery]) -> Vec<u64> {
    d.iter().map(|x| x.message.seq).collect()
}

/// A message removed from the stream is no longer pending, even when an ack or term is the
/// consumer's first call after the removal.
#[test]
fn ack_of_a_removed_message_is_not_pending() {
    let (db, cs, _) = plain_setup(&[ConsumerConfig::new("c")]);
    let s = db.stream();
    s.append("a", b"", b"").unwrap();
    s.append("a", b"", b"").unwrap();
    assert_eq!(seqs(&cs[0].fetch(2, 0).unwrap()), vec![1, 2]);
    s.remove(1).unwrap();
    s.remove(2).unwrap();
    assert_eq!(cs[0].ack(1).unwrap(), AckOutcome::NotPending, "ack(1)");
    assert_eq!(cs[0].term(2).unwrap(), AckOutcome::NotPending, "term(2)");
}

/// `truncate(q)` rewinds every consumer: it forgets what it knew of the sequences above `q`
/// (pending messages, last-per-subject starters, its delivered sequence) and delivers from
/// `q + 1` again, so a new message that takes a freed sequence is a new delivery if it matches
/// the filters and nothing at all if it does not.
#[test]
fn sequences_reused_after_truncate_are_new_deliveries() {
    let wait = Duration::from_secs(1);
    let (db, cs, clock) = plain_setup(&[ConsumerConfig::new("c").filters(["a"]).ack_wait(wait)]);
    let s = db.stream();
    s.append("a", b"", b"old").unwrap();
    s.append("b", b"", b"old").unwrap();
    let l = s
        .create_consumer(
            ConsumerConfig::new("l")
                .filters(["a", "b"])
                .deliver(DeliverPolicy::LastPerSubject)
                .ack_wait(wait),
        )
        .unwrap();
    s.append("a", b"", b"old").unwrap();
    assert_eq!(seqs(&cs[0].fetch(10, 0).unwrap()), vec![1, 3]);
    let st = cs[0].state().unwrap();
    assert_eq!(
        (st.delivered, st.num_ack_pending),
        (
            SeqPair {
                stream_seq: 3,
                consumer_seq: 2
            },
            2
        ),
        "{st:?}"
    );
    // 3 (pending for c) and 2 (a starter of l) go; c and l rewind to 2. With no call of
    // theirs in between, "x" takes 2 (matching no filter) and a new "a" takes 3.
    assert_eq!(s.truncate(1).unwrap(), 2);
    s.append("x", b"", b"new").unwrap();
    s.append("a", b"", b"new").unwrap();
    let st = cs[0].state().unwrap();
    let want = ConsumerState {
        delivered: SeqPair {
            stream_seq: 1,
            consumer_seq: 2,
        },
        ack_floor: SeqPair {
            stream_seq: 0,
            consumer_seq: 0,
        },
        num_pending: 1,
        num_ack_pending: 1,
        ..ConsumerState::default()
    };
    assert_eq!(
        st, want,
        "c: only 1 is pending, the new 3 is yet to deliver"
    );
    clock.advance_ns(SEC);
    // (sequence, delivery count, payload) of each delivery.
    let seen = |d: Vec<Delivery>| -> Vec<(u64, u64, Vec<u8>)> {
        d.iter()
            .map(|x| {
                (
                    x.message.seq,
                    x.delivery_count,
                    x.message.payload().to_vec(),
                )
            })
            .collect()
    };
    assert_eq!(
        seen(cs[0].fetch(10, 0).unwrap()),
        vec![(1, 2, b"old".to_vec()), (3, 1, b"new".to_vec())],
        "c redelivers 1 and delivers the new 3 for the first time"
    );
    assert_eq!(
        seen(l.fetch(10, 0).unwrap()),
        vec![(1, 1, b"old".to_vec()), (3, 1, b"new".to_vec())],
        "l delivers its live starter 1 and the new 3, not x at 2"
    );
}

/// A message whose ack wait ran out is waiting for redelivery, so `in_progress` of it is
/// `NotPending`, whether or not a `state()` call came in between.
#[test]
fn in_progress_of_a_due_message_is_not_pending() {
    let cfg = |n: &str| ConsumerConfig::new(n).ack_wait(Duration::from_secs(1));
    let (db, cs, clock) = plain_setup(&[cfg("p"), cfg("q")]);
    db.stream().append("a", b"", b"").unwrap();
    for c in &cs {
        assert_eq!(seqs(&c.fetch(1, 0).unwrap()), vec![1]);
    }
    clock.advance_ns(SEC);
    // Same history, except that q is asked for its state.
    let q_state = cs[1].state().unwrap();
    assert_eq!(q_state.num_waiting_redelivery, 1);
    assert_eq!(cs[0].in_progress(1).unwrap(), AckOutcome::NotPending, "p");
    assert_eq!(cs[1].in_progress(1).unwrap(), AckOutcome::NotPending, "q");
}

/// Redeliveries come first: a due redelivery that does not fit the byte bound ends the fetch,
/// even when a new message would fit.
#[test]
fn a_due_redelivery_that_does_not_fit_ends_the_fetch() {
    let (db, cs, clock) = plain_setup(&[ConsumerConfig::new("c").ack_wait(Duration::from_secs(1))]);
    let s = db.stream();
    s.append("a", b"", &[0; 10]).unwrap();
    s.append("a", b"", &[0; 10]).unwrap();
    assert_eq!(seqs(&cs[0].fetch(2, 0).unwrap()), vec![1, 2]);
    clock.advance_ns(SEC);
    s.append("a", b"", b"").unwrap();
    // 1 (11 bytes) goes first anyway; 2 (11 more) does not fit 15; 3 (1 byte) would.
    let d = cs[0].fetch(10, 15).unwrap();
    assert_eq!(seqs(&d), vec![1], "the fetch stops at 2, which is due");
}

/// Everything at or below the ack floor is acknowledged: an unacknowledged max-delivered
/// message holds back the floor's consumer sequence as well as its stream sequence.
#[test]
fn floor_consumer_seq_stays_below_max_delivered() {
    let (db, cs, clock) = plain_setup(&[ConsumerConfig::new("c")
        .ack_wait(Duration::from_secs(1))
        .max_deliver(1)]);
    let s = db.stream();
    s.append("a", b"", b"").unwrap();
    s.append("a", b"", b"").unwrap();
    assert_eq!(seqs(&cs[0].fetch(1, 0).unwrap()), vec![1]);
    clock.advance_ns(SEC);
    assert_eq!(seqs(&cs[0].fetch(1, 0).unwrap()), vec![2]);
    let st = cs[0].state().unwrap();
    assert_eq!(st.num_max_delivered, 1);
    assert_eq!(st.ack_floor.stream_seq, 0, "1 holds the floor back");
    assert_eq!(
        st.ack_floor.consumer_seq, 0,
        "delivery 1 (of max-delivered 1) is not acknowledged"
    );
}
