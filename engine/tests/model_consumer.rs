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

use common::by_subject::{self, HasSubject};
use common::{pick, Db, GenMsg, Pick};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use tidelog::subject::matches;
use tidelog::{
    AckOutcome, AckPolicy, AppendError, Consumer, ConsumerConfig, ConsumerError, ConsumerState,
    DeliverPolicy, Delivery, ManualClock, NewMessage, SeqPair, StreamConfig, WriteError,
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
const SEC: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const START_NS: i64 = 1_700_000_000 * SEC;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Where a generated consumer starts; sequences and times are resolved against the model when
/// the consumer is created.
#[derive(Clone, Copy, Debug)]
enum DGen {
    All,
    Last,
    LastPerSubject,
    New,
    StartSeq(Pick),
    /// The timestamp of a live message, moved by the offset (ns).
    StartTime(Pick, i64),
}

#[derive(Clone, Debug)]
struct CfgGen {
    filters: usize,
    deliver: DGen,
    ack: AckPolicy,
    ack_wait_s: u64,
    backoff_s: Vec<u64>,
    max_deliver: Option<u64>,
    max_ack_pending: u64,
}

/// A sequence to acknowledge: one the consumer holds (pending or max-delivered), one it ever
/// delivered, or any sequence around the stream.
#[derive(Clone, Copy, Debug)]
enum APick {
    Held(u32),
    Seen(u32),
    Any(Pick),
}

#[derive(Clone, Copy, Debug)]
enum AckKind {
    Ack,
    /// Delay in ns (`None`: redeliver at the next fetch).
    Nak(Option<i64>),
    Term,
    InProgress,
}

#[derive(Clone, Debug)]
enum Op {
    Append(GenMsg),
    /// One batch of `n` small messages on one subject.
    Batch(usize, usize),
    Fetch {
        slot: usize,
        max_msgs: usize,
        max_bytes: usize,
    },
    Ack(usize, AckKind, APick),
    Advance(i64),
    Remove(Pick),
    Erase(Pick),
    Purge,
    Compact(Pick),
    PurgeFiltered(by_subject::Purge),
    Truncate(Pick),
    State(usize),
    /// Deletes the slot's consumer (if any) and creates one with this config.
    Recreate(usize, CfgGen),
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    subject: &'static str,
    headers: Vec<u8>,
    payload: Vec<u8>,
    ts: i64,
}

impl Msg {
    fn size(&self) -> usize {
        self.subject.len() + self.headers.len() + self.payload.len()
    }
}

impl HasSubject for Msg {
    fn subject(&self) -> &'static str {
        self.subject
    }
}

/// A delivery, comparable between model and consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    seq: u64,
    count: u64,
    dseq: u64,
    subject: String,
    headers: Vec<u8>,
    payload: Vec<u8>,
    ts: i64,
}

impl Got {
    fn of(d: &Delivery) -> Got {
        Got {
            seq: d.message.seq,
            count: d.delivery_count,
            dseq: d.delivery_seq,
            subject: d.message.subject().to_string(),
            headers: d.message.headers().to_vec(),
            payload: d.message.payload().to_vec(),
            ts: d.message.ts,
        }
    }
}

fn short(gs: &[Got]) -> String {
    let v: Vec<String> = gs
        .iter()
        .map(|g| format!("{}#{}@{}", g.seq, g.count, g.dseq))
        .collect();
    format!("[{}]", v.join(" "))
}

/// One message delivered and not acknowledged.
#[derive(Clone, Debug)]
struct Pend {
    count: u64,
    first_dseq: u64,
    /// When it is redelivered: its ack wait (or backoff) from its last delivery, a nak's
    /// delay, or in_progress's restart.
    due: i64,
    /// Nak'd since its last delivery: waiting for redelivery whatever `due` says.
    nakd: bool,
}

/// One consumer as its documentation describes it.
#[derive(Clone, Debug)]
struct CModel {
    cfg: ConsumerConfig,
    /// Next stream sequence to look at for first deliveries.
    next: u64,
    /// Live last-per-subject starters still to deliver.
    initial: VecDeque<u64>,
    delivered_seq: u64,
    dseq: u64,
    floor: u64,
    pending: BTreeMap<u64, Pend>,
    max_delivered: BTreeSet<u64>,
    /// First delivery sequence of every message delivered (for the ack floor).
    first_dseq: BTreeMap<u64, u64>,
    /// Every sequence it delivered, in order of first delivery (for picks).
    seen: Vec<u64>,
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ns(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

impl CModel {
    fn matches(&self, subject: &str) -> bool {
        self.cfg.filters.is_empty() || self.cfg.filters.iter().any(|f| matches(f, subject))
    }

    fn tracked(&self) -> bool {
        self.cfg.ack != AckPolicy::None
    }

    /// The wait before delivery `count + 1` of a message delivered `count` times.
    fn wait_after(&self, count: u64) -> i64 {
        let b = &self.cfg.backoff;
        if b.is_empty() {
            return ns(self.cfg.ack_wait);
        }
        ns(b[((count - 1) as usize).min(b.len() - 1)])
    }

    fn waiting(p: &Pend, now: i64) -> bool {
        p.nakd || p.due <= now
    }

    fn next_new(&self, msgs: &BTreeMap<u64, Msg>) -> Option<u64> {
        if let Some(&q) = self.initial.front() {
            return Some(q);
        }
        msgs.range(self.next..)
            .find(|(_, m)| self.matches(m.subject))
            .map(|(q, _)| *q)
    }
}

#[derive(Clone, Debug)]
struct Model {
    msgs: BTreeMap<u64, Msg>,
    last_seq: u64,
    now: i64,
    max_ts: i64,
    cons: [Option<CModel>; 2],
}

impl Model {
    fn new() -> Model {
        Model {
            msgs: BTreeMap::new(),
            last_seq: 0,
            now: START_NS,
            max_ts: 0,
            cons: [None, None],
        }
    }

    fn pick(&self, p: Pick) -> u64 {
        common::pick_seq(&self.msgs, self.last_seq, p)
    }

    fn config(&self, g: &CfgGen, name: &str) -> ConsumerConfig {
        let deliver = match g.deliver {
            DGen::All => DeliverPolicy::All,
            DGen::Last => DeliverPolicy::Last,
            DGen::LastPerSubject => DeliverPolicy::LastPerSubject,
            DGen::New => DeliverPolicy::New,
            DGen::StartSeq(p) => DeliverPolicy::ByStartSeq(self.pick(p).max(1)),
            DGen::StartTime(p, off) => {
                let q = self.pick(Pick { live: true, ..p });
                DeliverPolicy::ByStartTime(self.msgs.get(&q).map_or(self.now, |m| m.ts) + off)
            }
        };
        let mut cfg = ConsumerConfig::new(name)
            .filters(FILTER_SETS[g.filters % FILTER_SETS.len()].iter().copied())
            .deliver(deliver)
            .ack(g.ack)
            .ack_wait(secs(g.ack_wait_s))
            .max_ack_pending(g.max_ack_pending);
        if g.ack != AckPolicy::None {
            let mut b: Vec<Duration> = g.backoff_s.iter().map(|&s| secs(s)).collect();
            if let Some(m) = g.max_deliver {
                b.truncate(m as usize);
                cfg = cfg.max_deliver(m);
            }
            cfg = cfg.backoff(b);
        }
        cfg
    }

    /// A new consumer, starting where its deliver policy says.
    fn create(&self, cfg: ConsumerConfig) -> CModel {
        let probe = CModel {
            cfg,
            next: 0,
            initial: VecDeque::new(),
            delivered_seq: 0,
            dseq: 0,
            floor: 0,
            pending: BTreeMap::new(),
            max_delivered: BTreeSet::new(),
            first_dseq: BTreeMap::new(),
            seen: Vec::new(),
        };
        let after = self.last_seq + 1;
        let mut initial = VecDeque::new();
        let next = match probe.cfg.deliver {
            DeliverPolicy::All => common::first_seq(&self.msgs, self.last_seq),
            DeliverPolicy::New => after,
            DeliverPolicy::ByStartSeq(s) => s,
            DeliverPolicy::ByStartTime(t) => self
                .msgs
                .iter()
                .find(|(_, m)| m.ts >= t)
                .map_or(after, |(q, _)| *q),
            DeliverPolicy::Last => self
                .msgs
                .iter()
                .rev()
                .find(|(_, m)| probe.matches(m.subject))
                .map_or(after, |(q, _)| *q),
            DeliverPolicy::LastPerSubject => {
                let mut last = BTreeMap::new();
                for (q, m) in &self.msgs {
                    if probe.matches(m.subject) {
                        last.insert(m.subject, *q);
                    }
                }
                let mut v: Vec<u64> = last.into_values().collect();
                v.sort_unstable();
                initial = v.into();
                after
            }
        };
        let floor = (next - 1).min(initial.front().map_or(u64::MAX, |q| q - 1));
        CModel {
            next,
            initial,
            delivered_seq: floor,
            floor,
            ..probe
        }
    }

    /// Takes removed messages out of the log and out of every consumer at once.
    fn remove(&mut self, gone: &[u64]) {
        for q in gone {
            self.msgs.remove(q);
        }
        for c in self.cons.iter_mut().flatten() {
            for q in gone {
                c.pending.remove(q);
                c.max_delivered.remove(q);
            }
            c.initial.retain(|q| !gone.contains(q));
        }
    }

    fn fetch(&mut self, k: usize, max_msgs: usize, max_bytes: usize) -> Vec<Got> {
        let now = self.now;
        let msgs = &self.msgs;
        let c = self.cons[k].as_mut().expect("consumer");
        let mut out: Vec<Got> = Vec::new();
        let mut bytes = 0usize;
        let fits = |out: &Vec<Got>, bytes: usize, m: &Msg| {
            (out.len() < max_msgs
                && (max_bytes == 0 || out.is_empty() || bytes + m.size() <= max_bytes))
                .then_some(m.size())
        };
        let got = |q: u64, count: u64, dseq: u64, m: &Msg| Got {
            seq: q,
            count,
            dseq,
            subject: m.subject.to_string(),
            headers: m.headers.clone(),
            payload: m.payload.clone(),
            ts: m.ts,
        };
        let mut due: Vec<(i64, u64)> = c
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(q, p)| (p.due, *q))
            .collect();
        due.sort_unstable();
        let mut stopped = false;
        for (_, q) in due {
            if out.len() >= max_msgs {
                break;
            }
            let p = c.pending[&q].clone();
            if c.cfg.max_deliver.is_some_and(|m| p.count >= m) {
                c.pending.remove(&q);
                c.max_delivered.insert(q);
                continue;
            }
            let m = &msgs[&q];
            let Some(size) = fits(&out, bytes, m) else {
                stopped = true;
                break;
            };
            bytes += size;
            c.dseq += 1;
            let count = p.count + 1;
            let due = now + c.wait_after(count);
            c.pending.insert(
                q,
                Pend {
                    count,
                    due,
                    nakd: false,
                    ..p
                },
            );
            out.push(got(q, count, c.dseq, m));
        }
        // Redeliveries come first: one that is due but does not fit ends the fetch.
        if stopped {
            return out;
        }
        while out.len() < max_msgs {
            if c.tracked() && c.pending.len() as u64 >= c.cfg.max_ack_pending {
                break;
            }
            let Some(q) = c.next_new(msgs) else { break };
            let m = &msgs[&q];
            let Some(size) = fits(&out, bytes, m) else {
                break;
            };
            bytes += size;
            if c.initial.front() == Some(&q) {
                c.initial.pop_front();
            } else {
                c.next = q + 1;
            }
            c.dseq += 1;
            c.delivered_seq = q;
            c.seen.push(q);
            c.first_dseq.insert(q, c.dseq);
            if c.tracked() {
                let due = now + c.wait_after(1);
                c.pending.insert(
                    q,
                    Pend {
                        count: 1,
                        first_dseq: c.dseq,
                        due,
                        nakd: false,
                    },
                );
            }
            out.push(got(q, 1, c.dseq, m));
        }
        out
    }

    fn ack(&mut self, k: usize, kind: AckKind, seq: u64) -> AckOutcome {
        let now = self.now;
        let c = self.cons[k].as_mut().expect("consumer");
        let done = |b: bool| {
            if b {
                AckOutcome::Done
            } else {
                AckOutcome::NotPending
            }
        };
        match kind {
            AckKind::Ack if c.cfg.ack == AckPolicy::All => {
                let upto: Vec<u64> = c.pending.range(..=seq).map(|(q, _)| *q).collect();
                let before = c.max_delivered.len();
                c.max_delivered.retain(|&q| q > seq);
                for q in &upto {
                    c.pending.remove(q);
                }
                done(!upto.is_empty() || c.max_delivered.len() != before)
            }
            AckKind::Ack | AckKind::Term => {
                let a = c.pending.remove(&seq).is_some();
                done(a || c.max_delivered.remove(&seq))
            }
            AckKind::Nak(delay) => {
                let Some(p) = c.pending.get_mut(&seq) else {
                    return AckOutcome::NotPending;
                };
                p.due = now + delay.unwrap_or(0);
                p.nakd = true;
                AckOutcome::Done
            }
            AckKind::InProgress => {
                let Some(p) = c.pending.get(&seq) else {
                    return AckOutcome::NotPending;
                };
                if CModel::waiting(p, now) {
                    return AckOutcome::NotPending;
                }
                let due = now + c.wait_after(p.count);
                c.pending.get_mut(&seq).expect("pending").due = due;
                AckOutcome::Done
            }
        }
    }

    fn state(&mut self, k: usize) -> ConsumerState {
        let now = self.now;
        let msgs = &self.msgs;
        let c = self.cons[k].as_mut().expect("consumer");
        let lowest = [c.pending.keys().next(), c.max_delivered.first()]
            .into_iter()
            .flatten()
            .min()
            .copied();
        c.floor = c.floor.max(lowest.map_or(c.delivered_seq, |q| q - 1));
        // Everything at or below the floor is acknowledged: the lowest message still held
        // (pending or max-delivered) holds back both of its sequences.
        let floor_dseq = lowest.map_or(c.dseq, |q| c.first_dseq[&q] - 1);
        let new = msgs
            .range(c.next..)
            .filter(|(_, m)| c.matches(m.subject))
            .count();
        ConsumerState {
            delivered: SeqPair {
                stream_seq: c.delivered_seq,
                consumer_seq: c.dseq,
            },
            ack_floor: SeqPair {
                stream_seq: c.floor,
                consumer_seq: floor_dseq,
            },
            num_pending: (c.initial.len() + new) as u64,
            num_ack_pending: c.pending.len() as u64,
            num_redelivered: c.pending.values().filter(|p| p.count > 1).count() as u64,
            num_waiting_redelivery: c
                .pending
                .values()
                .filter(|p| CModel::waiting(p, now))
                .count() as u64,
            num_max_delivered: c.max_delivered.len() as u64,
        }
    }

    /// The sequence an acknowledgement of consumer `k` is about.
    fn ack_seq(&self, k: usize, p: APick) -> u64 {
        let c = self.cons[k].as_ref().expect("consumer");
        let held: Vec<u64> = c
            .pending
            .keys()
            .chain(c.max_delivered.iter())
            .copied()
            .collect();
        match p {
            APick::Held(i) if !held.is_empty() => held[i as usize % held.len()],
            APick::Held(i) | APick::Seen(i) if !c.seen.is_empty() => {
                c.seen[i as usize % c.seen.len()]
            }
            APick::Held(i) | APick::Seen(i) => self.pick(Pick {
                live: false,
                idx: i,
            }),
            APick::Any(p) => self.pick(p),
        }
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "--- model ---\nnow +{}ms last_seq {}\n",
            (self.now - START_NS) / MS,
            self.last_seq
        );
        for (q, m) in &self.msgs {
            s.push_str(&format!(
                "  {q}: {} size {} ts +{}ms\n",
                m.subject,
                m.size(),
                (m.ts - START_NS) / MS
            ));
        }
        for (k, c) in self.cons.iter().enumerate() {
            let Some(c) = c else { continue };
            s.push_str(&format!(
                "consumer c{k}: {:?}\n  next {} initial {:?} delivered ({}, {}) floor {}\n  max_delivered {:?}\n",
                c.cfg, c.next, c.initial, c.delivered_seq, c.dseq, c.floor, c.max_delivered
            ));
            for (q, p) in &c.pending {
                s.push_str(&format!(
                    "  pending {q}: count {} first_dseq {} due +{}ms{}\n",
                    p.count,
                    p.first_dseq,
                    (p.due - START_NS) / MS,
                    if p.nakd { " nak'd" } else { "" }
                ));
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

/// An outcome, comparable between model and engine.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Appended(u64, u64, i64),
    Fetched(Vec<Got>),
    Ack(AckOutcome),
    Count(u64),
    Unit,
    NotFound(u64),
    Invalid,
    Err(String),
}

impl Out {
    fn short(&self) -> String {
        match self {
            Out::Fetched(g) => short(g),
            other => format!("{other:?}"),
        }
    }
}

fn w_out(r: Result<Out, WriteError>) -> Out {
    match r {
        Ok(o) => o,
        Err(WriteError::NotFound(s)) => Out::NotFound(s),
        Err(WriteError::InvalidSequence { .. }) => Out::Invalid,
        Err(e) => Out::Err(format!("{e:?}")),
    }
}

fn a_out(r: Result<Out, AppendError>) -> Out {
    r.unwrap_or_else(|e| Out::Err(format!("{e:?}")))
}

fn c_out(r: Result<AckOutcome, ConsumerError>) -> Out {
    match r {
        Ok(a) => Out::Ack(a),
        Err(e) => Out::Err(format!("{e:?}")),
    }
}

struct Harness {
    clock: Arc<ManualClock>,
    db: Db,
    model: Model,
    cons: [Option<Consumer>; 2],
    /// Compare every consumer's state after every step (else only at `State` steps).
    check_each: bool,
    trace: Vec<String>,
}

fn msg_of(g: &GenMsg) -> (&'static str, Vec<u8>, Vec<u8>) {
    (
        SUBJECTS[g.subject % SUBJECTS.len()],
        g.headers.clone(),
        g.payload.clone(),
    )
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
        let Some(c) = &self.cons[k] else {
            return Ok(());
        };
        let got = c.state();
        let want = self.model.state(k);
        match got {
            Ok(got) if got == want => Ok(()),
            Ok(got) => Err(self.fail(format!(
                "{name}: c{k}.state() =\n  {got:?}\nmodel\n  {want:?}"
            ))),
            Err(e) => Err(self.fail(format!("{name}: c{k}.state() = {e:?}"))),
        }
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

    /// A removal: the model's outcome and removed sequences, and the stream's outcome.
    fn removal(&mut self, op: &Op) -> (String, Out, Vec<u64>, Out) {
        let m = &self.model;
        let s = self.db.stream().clone();
        match op {
            Op::Remove(p) | Op::Erase(p) => {
                let q = m.pick(*p);
                let (want, gone) = match m.msgs.contains_key(&q) {
                    true => (Out::Unit, vec![q]),
                    false => (Out::NotFound(q), vec![]),
                };
                let (what, got) = if let Op::Remove(_) = op {
                    ("remove", s.remove(q))
                } else {
                    ("erase", s.erase(q))
                };
                (
                    format!("{what}({q})"),
                    want,
                    gone,
                    w_out(got.map(|()| Out::Unit)),
                )
            }
            Op::Purge => {
                let gone: Vec<u64> = m.msgs.keys().copied().collect();
                let want = Out::Count(gone.len() as u64);
                (
                    "purge()".into(),
                    want,
                    gone,
                    w_out(s.purge().map(Out::Count)),
                )
            }
            Op::Compact(p) => {
                let q = m.pick(*p);
                let gone: Vec<u64> = m.msgs.range(..q).map(|(q, _)| *q).collect();
                let want = match q {
                    0 => Out::Invalid,
                    _ => Out::Count(gone.len() as u64),
                };
                let got = w_out(s.compact(q).map(Out::Count));
                (format!("compact({q})"), want, gone, got)
            }
            Op::Truncate(p) => {
                let q = m.pick(*p);
                let gone: Vec<u64> = m.msgs.range(q + 1..).map(|(q, _)| *q).collect();
                let want = match q >= m.last_seq {
                    true => Out::Invalid,
                    false => Out::Count(gone.len() as u64),
                };
                let got = w_out(s.truncate(q).map(Out::Count));
                (format!("truncate({q})"), want, gone, got)
            }
            Op::PurgeFiltered(p) => {
                let (f, up_to, keep) = p.args(&PURGE_FILTERS, |x| m.pick(x));
                let gone =
                    by_subject::purge_filtered(&m.msgs, f, up_to, keep).expect("valid filter");
                let want = Out::Count(gone.len() as u64);
                let got = w_out(s.purge_filtered(f, up_to, keep).map(Out::Count));
                (
                    format!("purge_filtered({f}, {up_to:?}, keep {keep})"),
                    want,
                    gone,
                    got,
                )
            }
            _ => unreachable!(),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let s = self.db.stream().clone();
        let (what, want, got) = match op {
            Op::Append(g) => {
                let (subject, h, p) = msg_of(g);
                let got = a_out(
                    s.append_msg(&NewMessage::new(subject, &p).with_headers(&h))
                        .map(|a| Out::Appended(a.seq, a.seq, a.ts)),
                );
                let m = &mut self.model;
                let ts = m.now.max(m.max_ts);
                m.max_ts = ts;
                m.last_seq += 1;
                m.msgs.insert(
                    m.last_seq,
                    Msg {
                        subject,
                        headers: h,
                        payload: p,
                        ts,
                    },
                );
                let want = Out::Appended(m.last_seq, m.last_seq, ts);
                (
                    format!("append({subject}, {}B)", g.payload.len()),
                    want,
                    got,
                )
            }
            Op::Batch(subject, n) => {
                let subject = SUBJECTS[subject % SUBJECTS.len()];
                let payloads: Vec<Vec<u8>> = (0..*n).map(|i| vec![i as u8; i % 7]).collect();
                let batch: Vec<NewMessage<'_>> = payloads
                    .iter()
                    .map(|p| NewMessage::new(subject, p))
                    .collect();
                let got = a_out(
                    s.append_batch(&batch)
                        .map(|b| Out::Appended(b.first_seq, b.last_seq, b.ts)),
                );
                let m = &mut self.model;
                let ts = m.now.max(m.max_ts);
                m.max_ts = ts;
                let first = m.last_seq + 1;
                for p in payloads {
                    m.last_seq += 1;
                    m.msgs.insert(
                        m.last_seq,
                        Msg {
                            subject,
                            headers: Vec::new(),
                            payload: p,
                            ts,
                        },
                    );
                }
                let want = Out::Appended(first, m.last_seq, ts);
                (format!("append_batch({subject} x{n})"), want, got)
            }
            Op::Fetch {
                slot,
                max_msgs,
                max_bytes,
            } => {
                let Some(c) = self.cons[*slot].clone() else {
                    return Ok(());
                };
                let what = format!("c{slot}.fetch({max_msgs}, {max_bytes})");
                let got = match c.fetch(*max_msgs, *max_bytes) {
                    Ok(d) => Out::Fetched(d.iter().map(Got::of).collect()),
                    Err(e) => Out::Err(format!("{e:?}")),
                };
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
                let (what, got) = match kind {
                    AckKind::Ack => (format!("c{slot}.ack({q})"), c.ack(q)),
                    AckKind::Nak(d) => {
                        let dur = d.map(|d| Duration::from_nanos(d as u64));
                        (format!("c{slot}.nak({q}, {dur:?})"), c.nak(q, dur))
                    }
                    AckKind::Term => (format!("c{slot}.term({q})"), c.term(q)),
                    AckKind::InProgress => (format!("c{slot}.in_progress({q})"), c.in_progress(q)),
                };
                let want = Out::Ack(self.model.ack(*slot, *kind, q));
                (what, want, c_out(got))
            }
            Op::Advance(d) => {
                self.clock.advance_ns(*d);
                self.model.now += d;
                (format!("advance({}ms)", d / MS), Out::Unit, Out::Unit)
            }
            Op::Remove(_)
            | Op::Erase(_)
            | Op::Purge
            | Op::Compact(_)
            | Op::Truncate(_)
            | Op::PurgeFiltered(_) => {
                let (what, want, gone, got) = self.removal(op);
                if want == got {
                    if let Op::Compact(p) = op {
                        let q = self.model.pick(*p);
                        common::compact_log(&mut self.model.msgs, &mut self.model.last_seq, q);
                    }
                    if let (Op::Truncate(p), Out::Count(_)) = (op, &got) {
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
    let deliver = prop_oneof![
        4 => Just(DGen::All),
        1 => Just(DGen::Last),
        2 => Just(DGen::LastPerSubject),
        1 => Just(DGen::New),
        2 => pick().prop_map(DGen::StartSeq),
        1 => (pick(), prop_oneof![Just(0i64), Just(-1), Just(1), -2000 * MS..2000 * MS])
            .prop_map(|(p, off)| DGen::StartTime(p, off)),
    ];
    let ack = prop_oneof![
        6 => Just(AckPolicy::Explicit),
        2 => Just(AckPolicy::All),
        1 => Just(AckPolicy::None),
    ];
    (
        0..FILTER_SETS.len(),
        deliver,
        ack,
        1u64..=10,
        prop_oneof![1 => Just(Vec::new()), 1 => vec(1u64..=10, 1..4)],
        proptest::option::weighted(0.5, 1u64..=5),
        prop_oneof![1 => 1u64..=4, 2 => 1u64..=20],
    )
        .prop_map(
            |(filters, deliver, ack, ack_wait_s, backoff_s, max_deliver, max_ack_pending)| CfgGen {
                filters,
                deliver,
                ack,
                ack_wait_s,
                backoff_s,
                max_deliver,
                max_ack_pending,
            },
        )
}

fn gen_msg() -> impl Strategy<Value = GenMsg> {
    (
        0..SUBJECTS.len(),
        proptest::option::weighted(0.2, vec(any::<u8>(), 0..8)),
        vec(any::<u8>(), 0..40),
    )
        .prop_map(|(subject, h, payload)| GenMsg {
            subject,
            headers: h.unwrap_or_default(),
            payload,
        })
}

fn apick() -> impl Strategy<Value = APick> {
    prop_oneof![
        14 => any::<u32>().prop_map(APick::Held),
        4 => any::<u32>().prop_map(APick::Seen),
        1 => pick().prop_map(APick::Any),
    ]
}

fn ack_kind() -> impl Strategy<Value = AckKind> {
    prop_oneof![
        8 => Just(AckKind::Ack),
        2 => Just(AckKind::Nak(None)),
        1 => Just(AckKind::Nak(Some(0))),
        2 => (1i64..=10).prop_map(|s| AckKind::Nak(Some(s * SEC))),
        1 => (1i64..3000).prop_map(|ms| AckKind::Nak(Some(ms * MS))),
        2 => Just(AckKind::Term),
        3 => Just(AckKind::InProgress),
    ]
}

/// Whole seconds land exactly on due times (waits are whole seconds); the rest in between.
fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (1i64..=12).prop_map(|s| s * SEC),
        2 => (1i64..2000).prop_map(|ms| ms * MS),
        1 => Just(1i64),
        1 => (30i64..120).prop_map(|s| s * SEC),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = prop_oneof![3 => Just(0usize), 1 => Just(1usize)];
    prop_oneof![
        12 => gen_msg().prop_map(Op::Append),
        2 => (0..SUBJECTS.len(), 2usize..25).prop_map(|(s, n)| Op::Batch(s, n)),
        14 => (
            slot.clone(),
            1usize..=10,
            prop_oneof![3 => Just(0usize), 2 => 1usize..120],
        )
            .prop_map(|(slot, max_msgs, max_bytes)| Op::Fetch {
                slot,
                max_msgs,
                max_bytes
            }),
        16 => (slot.clone(), ack_kind(), apick()).prop_map(|(s, k, p)| Op::Ack(s, k, p)),
        7 => advance().prop_map(Op::Advance),
        2 => pick().prop_map(Op::Remove),
        1 => pick().prop_map(Op::Erase),
        1 => Just(Op::Purge),
        1 => pick().prop_map(Op::Compact),
        2 => by_subject::purge(PURGE_FILTERS.len(), 0.5).prop_map(Op::PurgeFiltered),
        1 => pick().prop_map(Op::Truncate),
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

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

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
    let d = cs[0].fetch(10, 0).unwrap();
    let got: Vec<(u64, u64, &[u8])> = d
        .iter()
        .map(|x| (x.message.seq, x.delivery_count, x.message.payload()))
        .collect();
    assert_eq!(
        got,
        vec![(1, 2, &b"old"[..]), (3, 1, &b"new"[..])],
        "c redelivers 1 and delivers the new 3 for the first time"
    );
    let d = l.fetch(10, 0).unwrap();
    let got: Vec<(u64, u64, &[u8])> = d
        .iter()
        .map(|x| (x.message.seq, x.delivery_count, x.message.payload()))
        .collect();
    assert_eq!(
        got,
        vec![(1, 1, &b"old"[..]), (3, 1, &b"new"[..])],
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
