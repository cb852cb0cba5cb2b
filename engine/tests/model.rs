//! Model-based property tests: random operation sequences run against a stream on an in-memory
//! disk with injected faults and crashes, checked step by step against a plain `BTreeMap` model.
//!
//! Invariants checked:
//! - `model-equals-stream`: after every successful step the stream's counters, every message
//!   and every absent sequence agree with the model, and `check_invariants()` passes.
//! - `acked-survives-crash` (Durability::Always): after a crash the stream is exactly the model
//!   before or after the operation that failed; everything acknowledged is there.
//! - `prefix-after-crash` (Durability::None): after a crash the stream is the model after some
//!   prefix of the operations at least as long as the last durable point (sync, checkpoint,
//!   close, truncate, erase).
//! - `seq-never-reused`: after recovery `last_seq` is at least every sequence an append returned
//!   (since the last truncate, which frees sequences on purpose).

mod common;

use common::{pick, Db, GenMsg, Pick, DIR};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use tidelog::io::{CrashKind, Fault, FaultPlan, MemVfs};
use tidelog::{
    AppendError, Durability, LoadError, NewMessage, Store, Stream, StreamConfig, StreamState,
    WriteError,
};

const NAME: &str = "m";
const SUBJECTS: [&str; 3] = ["a.b", "a.c", "x.y.z"];
/// Sequences one lease write reserves (`LEASE_SPAN` in stream.rs): the most a crash of a
/// non-`Always` stream may skip.
const LEASE_SPAN: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Append(GenMsg),
    Batch(Vec<GenMsg>),
    /// `seq = last_seq + 1 + gap`; a gap of -1 asks for an invalid `seq = last_seq`.
    Raw {
        gap: i64,
        ts: i64,
        msg: GenMsg,
    },
    Skip(u64),
    Remove(Pick),
    Erase(Pick),
    Purge,
    Compact(Pick),
    Truncate(Pick),
    Sync,
    Checkpoint,
    Restart,
    /// Arms a fault at the `after`-th mutating I/O from now; the crash (of `kind`) is simulated
    /// after the operation during which it fires.
    Crash {
        after: u64,
        fault: Fault,
        kind: CrashKind,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    subject: &'static str,
    headers: Vec<u8>,
    payload: Vec<u8>,
    /// Only known for `append_raw`.
    ts: Option<i64>,
}

impl From<&GenMsg> for Msg {
    fn from(g: &GenMsg) -> Msg {
        Msg {
            subject: SUBJECTS[g.subject % SUBJECTS.len()],
            headers: g.headers.clone(),
            payload: g.payload.clone(),
            ts: None,
        }
    }
}

/// An operation with its sequence arguments fixed.
#[derive(Clone, Debug)]
enum R {
    Append(Msg),
    Batch(Vec<Msg>),
    Raw(u64, Msg),
    Skip(u64),
    Remove(u64),
    Erase(u64),
    Purge,
    Compact(u64),
    Truncate(u64),
    Sync,
    Checkpoint,
    Restart,
}

impl R {
    fn short(&self) -> String {
        match self {
            R::Append(m) => format!(
                "append({}, h{}, p{})",
                m.subject,
                m.headers.len(),
                m.payload.len()
            ),
            R::Batch(ms) => format!("append_batch(n={})", ms.len()),
            R::Raw(seq, m) => format!("append_raw(seq={seq}, ts={:?})", m.ts),
            other => format!("{other:?}"),
        }
    }
}

/// The outcome of an operation, comparable between model and stream.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Seq(u64),
    Range(u64, u64),
    Unit,
    Count(u64),
    NotFound(u64),
    Invalid,
    Err(String),
}

impl Out {
    fn is_ok(&self) -> bool {
        matches!(
            self,
            Out::Seq(_) | Out::Range(..) | Out::Unit | Out::Count(_)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    msgs: BTreeMap<u64, Msg>,
    last_seq: u64,
}

impl Model {
    fn first_seq(&self) -> u64 {
        common::first_seq(&self.msgs, self.last_seq)
    }

    fn pick(&self, p: Pick) -> u64 {
        common::pick_seq(&self.msgs, self.last_seq, p)
    }

    fn resolve(&self, op: &Op) -> R {
        match op {
            Op::Append(m) => R::Append(m.into()),
            Op::Batch(ms) => R::Batch(ms.iter().map(Msg::from).collect()),
            Op::Raw { gap, ts, msg } => {
                let seq = (self.last_seq as i64 + 1 + gap).max(0) as u64;
                let mut m = Msg::from(msg);
                m.ts = Some(*ts);
                R::Raw(seq, m)
            }
            Op::Skip(n) => R::Skip(*n),
            Op::Remove(p) => R::Remove(self.pick(*p)),
            Op::Erase(p) => R::Erase(self.pick(*p)),
            Op::Purge => R::Purge,
            Op::Compact(p) => R::Compact(self.pick(*p)),
            Op::Truncate(p) => R::Truncate(self.pick(*p)),
            Op::Sync => R::Sync,
            Op::Checkpoint => R::Checkpoint,
            Op::Restart => R::Restart,
            Op::Crash { .. } => unreachable!("crash ops are not resolved"),
        }
    }

    /// Applies `r` as the documented semantics say and returns the expected outcome.
    fn apply(&mut self, r: &R) -> Out {
        match r {
            R::Append(m) => {
                let seq = self.last_seq + 1;
                self.msgs.insert(seq, m.clone());
                self.last_seq = seq;
                Out::Seq(seq)
            }
            R::Batch(ms) => {
                let first = self.last_seq + 1;
                for m in ms {
                    self.last_seq += 1;
                    self.msgs.insert(self.last_seq, m.clone());
                }
                Out::Range(first, self.last_seq)
            }
            R::Raw(seq, m) => {
                if *seq <= self.last_seq {
                    return Out::Invalid;
                }
                self.msgs.insert(*seq, m.clone());
                self.last_seq = *seq;
                Out::Unit
            }
            R::Skip(n) => {
                if *n == 0 {
                    return Out::Invalid;
                }
                self.last_seq += n;
                Out::Seq(self.last_seq)
            }
            R::Remove(seq) | R::Erase(seq) => match self.msgs.remove(seq) {
                Some(_) => Out::Unit,
                None => Out::NotFound(*seq),
            },
            R::Purge => {
                let n = self.msgs.len() as u64;
                self.msgs.clear();
                Out::Count(n)
            }
            R::Compact(seq) => {
                match common::compact_log(&mut self.msgs, &mut self.last_seq, *seq) {
                    Some(n) => Out::Count(n),
                    None => Out::Invalid,
                }
            }
            R::Truncate(seq) => {
                match common::truncate_log(&mut self.msgs, &mut self.last_seq, *seq) {
                    Some(n) => Out::Count(n),
                    None => Out::Invalid,
                }
            }
            R::Sync | R::Checkpoint | R::Restart => Out::Unit,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

struct Armed {
    at: u64,
    fault: Fault,
    kind: CrashKind,
}

struct Harness {
    mode: Durability,
    /// A memory stream: same semantics, nothing survives the store, so no restarts or crashes.
    memory: bool,
    db: Db,
    model: Model,
    /// Model snapshots since the last durable point; `history[0]` is durable.
    history: Vec<Model>,
    armed: Option<Armed>,
    /// Every sequence ever handed out or asked about (probed for `NotFound`).
    touched: BTreeSet<u64>,
    /// Highest sequence an acknowledged append returned (lowered by a truncate).
    acked_max: u64,
    /// Highest `last_seq` the stream ever had.
    max_last: u64,
    trace: Vec<String>,
}

fn a_out(r: Result<Out, AppendError>) -> Out {
    match r {
        Ok(o) => o,
        Err(AppendError::SequenceNotAfterLast { .. }) => Out::Invalid,
        Err(e) => Out::Err(format!("{e:?}")),
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

/// A timestamp the model knows must match; unknown ones match anything.
fn ts_ok(want: Option<i64>, got: Option<i64>) -> bool {
    match want {
        Some(t) => got == Some(t),
        None => true,
    }
}

fn is_durable_point(r: &R) -> bool {
    matches!(
        r,
        R::Sync | R::Checkpoint | R::Restart | R::Truncate(_) | R::Erase(_)
    )
}

/// Whether the fault armed at mutating I/O `at` has fired.
fn fired(db: &Db, at: u64) -> bool {
    db.fv.plan().lock().ops() > at
}

impl Harness {
    fn new(mode: Durability, block_size: u64, memory: bool) -> Harness {
        let cfg = StreamConfig::new(NAME)
            .block_size(block_size)
            .durability(mode);
        Harness {
            mode,
            memory,
            db: Db::create(common::store_options(None), cfg, memory),
            model: Model::default(),
            history: vec![Model::default()],
            armed: None,
            touched: BTreeSet::new(),
            acked_max: 0,
            max_last: 0,
            trace: Vec::new(),
        }
    }

    fn always(&self) -> bool {
        matches!(self.mode, Durability::Always)
    }

    fn fail(&self, what: String) -> TestCaseError {
        TestCaseError::fail(common::failure(&what, &self.trace))
    }

    fn exec(&mut self, r: &R) -> Out {
        if let R::Restart = r {
            return self.db.restart().map_or_else(Out::Err, |()| Out::Unit);
        }
        let s = self.db.stream();
        match r {
            R::Append(m) => a_out(
                s.append(m.subject, &m.headers, &m.payload)
                    .map(|a| Out::Seq(a.seq)),
            ),
            R::Batch(ms) => {
                let nm: Vec<NewMessage<'_>> = ms
                    .iter()
                    .map(|m| NewMessage::new(m.subject, &m.payload).with_headers(&m.headers))
                    .collect();
                a_out(
                    s.append_batch(&nm)
                        .map(|b| Out::Range(b.first_seq, b.last_seq)),
                )
            }
            R::Raw(seq, m) => a_out(
                s.append_raw(
                    *seq,
                    m.ts.unwrap_or_default(),
                    m.subject,
                    &m.headers,
                    &m.payload,
                )
                .map(|()| Out::Unit),
            ),
            R::Skip(n) => w_out(s.skip(*n).map(Out::Seq)),
            R::Remove(q) => w_out(s.remove(*q).map(|()| Out::Unit)),
            R::Erase(q) => w_out(s.erase(*q).map(|()| Out::Unit)),
            R::Purge => w_out(s.purge().map(Out::Count)),
            R::Compact(q) => w_out(s.compact(*q).map(Out::Count)),
            R::Truncate(q) => w_out(s.truncate(*q).map(Out::Count)),
            R::Sync => w_out(s.sync().map(|()| Out::Unit)),
            R::Checkpoint => w_out(s.checkpoint().map(|()| Out::Unit)),
            R::Restart => unreachable!(),
        }
    }

    /// Records an acknowledged operation.
    fn commit(&mut self, after: Model, r: &R, out: &Out) {
        match (r, out) {
            (_, Out::Seq(s)) if !matches!(r, R::Skip(_)) => self.acked_max = self.acked_max.max(*s),
            (_, Out::Range(_, l)) => self.acked_max = self.acked_max.max(*l),
            (R::Raw(seq, _), _) => self.acked_max = self.acked_max.max(*seq),
            (R::Truncate(seq), _) => self.acked_max = self.acked_max.min(*seq),
            _ => {}
        }
        self.touched.extend(after.msgs.keys().copied());
        self.touched.insert(after.last_seq);
        self.max_last = self.max_last.max(after.last_seq);
        self.model = after;
        if self.always() || is_durable_point(r) {
            self.history = vec![self.model.clone()];
        } else {
            self.history.push(self.model.clone());
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        if self.memory && matches!(op, Op::Crash { .. } | Op::Restart) {
            return Ok(());
        }
        if let Op::Crash { after, fault, kind } = op {
            *self.db.fv.plan().lock() = FaultPlan::at(*after, *fault);
            self.armed = Some(Armed {
                at: *after,
                fault: *fault,
                kind: *kind,
            });
            self.trace
                .push(format!("arm {fault:?} at I/O #{after} then {kind:?} crash"));
            return Ok(());
        }
        let r = self.model.resolve(op);
        if let R::Remove(q) | R::Erase(q) | R::Compact(q) | R::Truncate(q) | R::Raw(q, _) = &r {
            self.touched.insert(*q);
        }
        let mut after = self.model.clone();
        let expected = after.apply(&r);
        let actual = self.exec(&r);
        let fired = self.armed.as_ref().is_some_and(|a| fired(&self.db, a.at));
        self.trace.push(format!(
            "{} -> {actual:?}{}",
            r.short(),
            if fired { "  [fault fired]" } else { "" }
        ));
        if !fired {
            if actual != expected {
                return Err(self.fail(format!(
                    "model-equals-stream: {} returned {actual:?}, model expects {expected:?}",
                    r.short()
                )));
            }
            if actual.is_ok() {
                self.commit(after, &r, &actual);
                if let R::Restart = r {
                    self.check_clean_reopen()?;
                }
            }
            return self.verify("model-equals-stream");
        }
        // The fault fired during this operation: it must not have panicked (we got here), and
        // whatever it returned, the process now dies.
        let armed = self.armed.take().expect("armed");
        let mut seq_bound = self.acked_max;
        let mut candidates;
        if actual.is_ok() {
            if actual != expected {
                return Err(self.fail(format!(
                    "model-equals-stream: {} returned {actual:?} despite the fault, model expects {expected:?}",
                    r.short()
                )));
            }
            self.commit(after, &r, &actual);
            candidates = self.history.clone();
        } else {
            candidates = self.history.clone();
            if expected.is_ok() {
                self.touched.extend(after.msgs.keys().copied());
                self.max_last = self.max_last.max(after.last_seq);
                candidates.push(after);
            }
            if let R::Truncate(seq) = r {
                seq_bound = seq_bound.min(seq);
            }
        }
        self.trace.push(format!(
            "crash ({:?}, fault {:?}); {} candidate states",
            armed.kind,
            armed.fault,
            candidates.len()
        ));
        self.crash(armed.kind, candidates, seq_bound)
    }

    /// After a clean close and reopen nothing may be replayed, lost or torn.
    fn check_clean_reopen(&self) -> Result<(), TestCaseError> {
        let rep = self.db.stream().recovery_report();
        if !rep.lost.is_empty() || rep.torn_bytes != 0 || !rep.used_checkpoint {
            return Err(self.fail(format!(
                "clean-reopen: reopen after a clean close reports {rep:?}"
            )));
        }
        if rep.replayed_records != 0 {
            return Err(self.fail(format!(
                "clean-reopen: reopen after a clean close replayed {} records",
                rep.replayed_records
            )));
        }
        Ok(())
    }

    /// Kills the "process" (no further I/O), reopens on what survives a crash of `kind`, and
    /// checks the recovered stream against the candidate model states.
    fn crash(
        &mut self,
        kind: CrashKind,
        candidates: Vec<Model>,
        seq_bound: u64,
    ) -> Result<(), TestCaseError> {
        if let Err(e) = self.db.crash(kind) {
            return Err(self.fail(format!("recovery: store does not reopen: {e}")));
        }
        let s = self.db.stream().clone();
        if let Err(e) = s.check_invariants() {
            return Err(self.fail(format!("recovery: check_invariants: {e}")));
        }
        let st = s.state();
        let mut probe = self.touched.clone();
        for c in &candidates {
            probe.extend(c.msgs.keys().copied());
        }
        let mut seen: BTreeMap<u64, Msg> = BTreeMap::new();
        for &q in &probe {
            match s.load(q) {
                Ok(m) => {
                    let subject = SUBJECTS
                        .iter()
                        .copied()
                        .find(|x| *x == m.subject())
                        .unwrap_or("<unknown subject>");
                    seen.insert(
                        q,
                        Msg {
                            subject,
                            headers: m.headers().to_vec(),
                            payload: m.payload().to_vec(),
                            ts: Some(m.ts),
                        },
                    );
                }
                Err(LoadError::NotFound(_)) => {}
                Err(e) => {
                    return Err(self.fail(format!("recovery: load({q}) after crash: {e:?}")));
                }
            }
        }
        let chosen = candidates
            .iter()
            .enumerate()
            .rev()
            .find(|(_, c)| self.recovered_matches(c, &st, &seen));
        let Some((idx, chosen)) = chosen else {
            let name = if self.always() {
                "acked-survives-crash"
            } else {
                "prefix-after-crash"
            };
            let mut why = format!(
                "{name}: recovered stream matches none of {} candidate states\nrecovered: messages={} first={} last={} deleted={} seqs={:?}\nreport: {:?}\n",
                candidates.len(),
                st.messages,
                st.first_seq,
                st.last_seq,
                st.num_deleted,
                seen.keys().collect::<Vec<_>>(),
                s.recovery_report(),
            );
            for (i, c) in candidates.iter().enumerate() {
                why.push_str(&format!(
                    "candidate {i}: messages={} first={} last={} seqs={:?}\n",
                    c.msgs.len(),
                    c.first_seq(),
                    c.last_seq,
                    c.msgs.keys().collect::<Vec<_>>()
                ));
            }
            return Err(self.fail(why));
        };
        self.trace.push(format!(
            "recovered candidate {idx}/{} (last_seq {})",
            candidates.len(),
            st.last_seq
        ));
        if st.last_seq < seq_bound {
            return Err(self.fail(format!(
                "seq-never-reused: last_seq after recovery is {} but sequence {seq_bound} was acknowledged",
                st.last_seq
            )));
        }
        // A truncate that took effect in the crash frees its sequences on purpose.
        self.acked_max = self.acked_max.min(st.last_seq);
        let mut model = chosen.clone();
        model.last_seq = st.last_seq;
        for &(a, b) in &s.recovery_report().lost {
            if let Some(q) = model.msgs.range(a..=b).next() {
                return Err(self.fail(format!(
                    "recovery: report lists {a}..={b} as lost but message {} is intact",
                    q.0
                )));
            }
        }
        self.max_last = self.max_last.max(model.last_seq);
        self.touched.insert(model.last_seq);
        self.model = model;
        self.history = vec![self.model.clone()];
        self.verify("model-equals-stream (after recovery)")
    }

    fn recovered_matches(&self, c: &Model, st: &StreamState, seen: &BTreeMap<u64, Msg>) -> bool {
        let last_ok = if self.always() {
            st.last_seq == c.last_seq
        } else {
            // Sequences up to the durable lease are skipped, never reused.
            c.last_seq <= st.last_seq && st.last_seq <= self.max_last + LEASE_SPAN
        };
        // The candidate as of the recovered `last_seq`, which may lie past its own.
        if !last_ok
            || seen.len() != c.msgs.len()
            || common::counts(&c.msgs, st.last_seq) != common::stream_counts(st)
        {
            return false;
        }
        c.msgs.iter().all(|(q, m)| {
            seen.get(q).is_some_and(|g| {
                g.subject == m.subject
                    && g.headers == m.headers
                    && g.payload == m.payload
                    && ts_ok(m.ts, g.ts)
            })
        })
    }

    fn verify(&self, name: &str) -> Result<(), TestCaseError> {
        let s = self.db.stream();
        let m = &self.model;
        let want = common::counts(&m.msgs, m.last_seq);
        let got = common::stream_counts(&s.state());
        if want != got {
            return Err(self.fail(format!(
                "{name}: state (messages, first_seq, last_seq, num_deleted) is {got:?}, model {want:?}"
            )));
        }
        for (q, msg) in &m.msgs {
            match s.load(*q) {
                Ok(g) => {
                    let ok = g.seq == *q
                        && g.subject() == msg.subject
                        && g.headers() == msg.headers.as_slice()
                        && g.payload() == msg.payload.as_slice()
                        && ts_ok(msg.ts, Some(g.ts));
                    if !ok {
                        return Err(self.fail(format!(
                            "{name}: load({q}) = {g:?} differs from the model ({} h{} p{} ts {:?})",
                            msg.subject,
                            msg.headers.len(),
                            msg.payload.len(),
                            msg.ts
                        )));
                    }
                }
                Err(e) => return Err(self.fail(format!("{name}: load({q}) = {e:?}, model has it"))),
            }
        }
        let mut probe = self.touched.clone();
        probe.extend([m.first_seq(), m.last_seq, m.last_seq + 2]);
        for q in m.msgs.keys() {
            probe.insert(q.saturating_sub(1));
            probe.insert(q + 1);
        }
        if let Some((q, other)) = common::first_not_absent(s, &m.msgs, m.last_seq, probe) {
            return Err(self.fail(format!(
                "{name}: load({q}) = {other:?}, model has no such message"
            )));
        }
        if let Err(e) = s.check_invariants() {
            return Err(self.fail(format!("{name}: check_invariants: {e}")));
        }
        Ok(())
    }

    /// Ends a case: disarm, close cleanly, reopen (exact), then lose power after the clean
    /// close (exact again: a close syncs everything).
    fn finish(&mut self) -> Result<(), TestCaseError> {
        if self.memory {
            return self.verify("model-equals-stream (memory stream)");
        }
        self.armed = None;
        *self.db.fv.plan().lock() = FaultPlan::new();
        self.trace.push("final restart".into());
        let out = self.exec(&R::Restart);
        if out != Out::Unit {
            return Err(self.fail(format!("final restart: {out:?}")));
        }
        self.history = vec![self.model.clone()];
        self.check_clean_reopen()?;
        self.verify("model-equals-stream (final reopen)")?;
        self.db
            .close()
            .map_err(|e| self.fail(format!("final {e}")))?;
        self.db
            .crash(CrashKind::PowerLoss)
            .map_err(|e| self.fail(format!("reopen after power loss: {e}")))?;
        self.verify("model-equals-stream (power loss after close)")?;
        let a = self
            .db
            .stream()
            .append("a.b", b"", b"tail")
            .map_err(|e| self.fail(format!("append after final reopen: {e:?}")))?;
        if a.seq != self.model.last_seq + 1 {
            return Err(self.fail(format!(
                "seq-never-reused: final append got {} after last_seq {}",
                a.seq, self.model.last_seq
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn msg() -> impl Strategy<Value = GenMsg> {
    common::gen_msg(0..SUBJECTS.len(), 0.3, 40, 300)
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => Just(Fault::Crash),
        2 => Just(Fault::TornWrite),
        1 => Just(Fault::Eio),
        1 => Just(Fault::NoSpace),
    ]
}

fn crash_kind() -> impl Strategy<Value = CrashKind> {
    prop_oneof![Just(CrashKind::Process), Just(CrashKind::PowerLoss)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => msg().prop_map(Op::Append),
        3 => vec(msg(), 1..5).prop_map(Op::Batch),
        2 => (
            prop_oneof![6 => 0i64..4, 1 => Just(1500i64), 1 => Just(-1i64)],
            0i64..(1 << 61),
            msg()
        )
            .prop_map(|(gap, ts, msg)| Op::Raw { gap, ts, msg }),
        1 => prop_oneof![4 => 0u64..4, 1 => Just(2000u64)].prop_map(Op::Skip),
        3 => pick().prop_map(Op::Remove),
        2 => pick().prop_map(Op::Erase),
        1 => Just(Op::Purge),
        2 => pick().prop_map(Op::Compact),
        2 => pick().prop_map(Op::Truncate),
        1 => Just(Op::Sync),
        1 => Just(Op::Checkpoint),
        2 => Just(Op::Restart),
        3 => (0u64..30, fault(), crash_kind())
            .prop_map(|(after, fault, kind)| Op::Crash { after, fault, kind }),
    ]
}

fn run(mode: Durability, block_size: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    run_on(mode, block_size, false, ops)
}

fn run_on(
    mode: Durability,
    block_size: u64,
    memory: bool,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut h = Harness::new(mode, block_size, memory);
    for op in ops {
        h.step(op)?;
    }
    common::print_trace(&h.trace);
    h.finish()
}

// 2000 cases take a few seconds; `TIDELOG_MODEL_CASES=50000` searches longer.
proptest! {
    #![proptest_config(common::model_config(2000))]

    /// `model-equals-stream`, `acked-survives-crash`, `seq-never-reused` with durable appends.
    #[test]
    fn model_always_acked_survives_crash(
        block_size in 4096u64..16384,
        ops in vec(op(), 1..60),
    ) {
        run(Durability::Always, block_size, &ops)?;
    }

    /// `model-equals-stream`, `prefix-after-crash`, `seq-never-reused` with appends that are
    /// only synced at explicit durable points.
    #[test]
    fn model_none_prefix_after_crash(
        block_size in 4096u64..16384,
        ops in vec(op(), 1..60),
    ) {
        run(Durability::None, block_size, &ops)?;
    }

    /// The same with `Interval`: syncs happen on their own, so any prefix at least up to the
    /// last explicit durable point is a valid recovery.
    #[test]
    fn model_interval_prefix_after_crash(
        block_size in 4096u64..16384,
        ops in vec(op(), 1..60),
    ) {
        run(Durability::Interval(std::time::Duration::from_micros(200)), block_size, &ops)?;
    }

    /// `model-equals-stream` for memory streams: the same operations and checks, minus
    /// restarts and crashes (a memory stream does not outlive its store).
    #[test]
    fn model_memory_stream_equals_model(
        block_size in 4096u64..16384,
        ops in vec(op(), 1..60),
    ) {
        run_on(Durability::Always, block_size, true, &ops)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic reproductions of failures the property tests found. Each one injects the fault
// at every I/O of the operation in turn, so it does not depend on exact I/O counts.
// ---------------------------------------------------------------------------------------------

fn fixture(mode: Durability) -> Db {
    let cfg = StreamConfig::new(NAME).block_size(4096).durability(mode);
    Db::create(common::store_options(None), cfg, false)
}

fn live(s: &Stream, seqs: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    seqs.filter(|q| s.load(*q).is_ok()).collect()
}

/// `model-equals-stream` across a clean reopen after a crash during `truncate` (found by
/// `model_none_prefix_after_crash`). With `Durability::None` a block rolled by an append is
/// still "sealing" (its trailer not yet written) when `truncate` runs; the truncate shortens
/// that block's in-memory offset table, and the flush inside `truncate` writes the trailer with
/// the shortened table before the truncate record itself reaches the disk. If the process dies
/// in between, recovery (which scans the block) correctly keeps the messages, but the trailer
/// on disk now claims fewer slots; after the next clean close the checkpoint lists the block
/// with all its slots and the reopen maps it with `min(trailer slots, checkpoint slots)`: the
/// messages are silently gone and `check_invariants` fails.
#[test]
fn model_none_truncate_crash_keeps_messages_across_clean_reopen() {
    for k in 0..16 {
        let mut f = fixture(Durability::None);
        for _ in 0..3 {
            f.stream().append("a.b", b"", b"x").unwrap();
        }
        // A gap larger than a block pads: 2000 starts block 2, block 1 is now sealing.
        f.stream().append_raw(2000, 0, "a.b", b"", b"y").unwrap();
        *f.fv.plan().lock() = FaultPlan::at(k, Fault::Crash);
        let r = f.stream().truncate(1);
        if !fired(&f, k) {
            assert!(r.is_ok());
            break;
        }
        f.crash(CrashKind::Process).expect("reopen");
        let after_crash = live(f.stream(), 1..=3);
        assert!(
            after_crash == vec![1, 2, 3] || after_crash == vec![1] || after_crash.is_empty(),
            "crash at I/O #{k}: recovered {after_crash:?}"
        );
        f.stream().check_invariants().unwrap();
        f.restart().expect("restart");
        assert_eq!(
            live(f.stream(), 1..=3),
            after_crash,
            "crash at I/O #{k} during truncate: messages recovered after the crash are gone after a clean close and reopen (state {:?})",
            f.stream().state()
        );
        f.stream().check_invariants().unwrap_or_else(|e| {
            panic!("crash at I/O #{k}: check_invariants after clean reopen: {e}")
        });
    }
}

/// `seq-never-reused` when `erase` is torn (found by `model_always_acked_survives_crash`).
/// `erase(last_seq)` makes its erase record durable, then overwrites the message in place. If
/// that overwrite is torn, the message record's header no longer checks, recovery skips it as
/// an unknown gap, and since nothing after it is a message, `last_seq` falls back below the
/// acknowledged sequence, which the next append then reuses.
#[test]
fn model_always_torn_erase_never_reuses_seq() {
    for k in 0..16 {
        let mut f = fixture(Durability::Always);
        for i in 1..=9u64 {
            assert_eq!(f.stream().append("a.b", b"", b"").unwrap().seq, i);
        }
        *f.fv.plan().lock() = FaultPlan::at(k, Fault::TornWrite);
        let r = f.stream().erase(9);
        if !fired(&f, k) {
            assert!(r.is_ok());
            break;
        }
        f.crash(CrashKind::Process).expect("reopen");
        let s = f.stream();
        s.check_invariants()
            .unwrap_or_else(|e| panic!("torn write at I/O #{k}: check_invariants: {e}"));
        assert_eq!(live(s, 1..=8), (1..=8).collect::<Vec<_>>());
        assert_eq!(
            s.state().last_seq,
            9,
            "torn write at I/O #{k} of erase(9): last_seq after recovery (report {:?})",
            s.recovery_report()
        );
        let a = s.append("a.b", b"", b"next").unwrap();
        assert_eq!(a.seq, 10, "torn write at I/O #{k}: sequence 9 was reused");
    }
}

/// `model-equals-stream` after a torn `erase` of a message that a checkpoint already covers
/// in the active block (found by `model_none_prefix_after_crash`). Recovery only re-indexes
/// intact records before the checkpoint position, so the damaged record gets no slot; the
/// erase record replayed after it then removes nothing, and the stream keeps counting the
/// message: `check_invariants` fails and `state().messages` is one too many.
#[test]
fn model_always_torn_erase_of_checkpointed_message_keeps_counts() {
    for k in 0..16 {
        let mut f = fixture(Durability::Always);
        for _ in 1..=8u64 {
            f.stream().append("a.b", b"", b"").unwrap();
        }
        f.restart().expect("restart");
        f.stream().append("a.b", b"", b"").unwrap();
        *f.fv.plan().lock() = FaultPlan::at(k, Fault::TornWrite);
        let r = f.stream().erase(2);
        if !fired(&f, k) {
            assert!(r.is_ok());
            break;
        }
        f.crash(CrashKind::Process).expect("reopen");
        let s = f.stream();
        let live = live(s, 1..=9);
        assert!(
            live == (1..=9).collect::<Vec<_>>() || live == [1, 3, 4, 5, 6, 7, 8, 9],
            "torn write at I/O #{k}: live {live:?}"
        );
        assert_eq!(
            s.state().messages,
            live.len() as u64,
            "torn write at I/O #{k} of erase(2): counted messages vs loadable ones (report {:?})",
            s.recovery_report()
        );
        s.check_invariants().unwrap_or_else(|e| {
            panic!("torn write at I/O #{k} of erase(2): check_invariants: {e}")
        });
    }
}

/// Found while building the harness (which works around it): `MemVfs::rename` of a directory
/// moves the files but not their durable directory entries, so a simulated power loss right
/// after `create_stream` (which writes the config into `.m.new/`, syncs it, renames the
/// directory and syncs the parent, as on a real file system) loses the config, and the store
/// no longer opens. A bug in the in-memory disk model, not in the engine's write protocol.
#[test]
fn memvfs_power_loss_after_create_stream_keeps_stream() {
    let mem = MemVfs::new();
    let store =
        Store::open_with_vfs(DIR, Arc::new(mem.clone()), common::store_options(None)).unwrap();
    let s = store.create_stream(StreamConfig::new(NAME)).unwrap();
    // Power fails right after create_stream returned (before any append synced the stream
    // directory itself).
    let disk = mem.after_crash(CrashKind::PowerLoss);
    drop(s);
    drop(store);
    let store = Store::open_with_vfs(DIR, Arc::new(disk), common::store_options(None))
        .expect("a store whose stream was created durably does not reopen after a power loss");
    let s = store.stream(NAME).unwrap();
    assert_eq!(s.state().messages, 0);
}

#[test]
fn regress_none_power_loss_during_erase() {
    let m = || GenMsg {
        subject: 0,
        headers: vec![],
        payload: vec![],
    };
    let ops = vec![
        Op::Crash {
            after: 7,
            fault: Fault::Crash,
            kind: CrashKind::Process,
        },
        Op::Append(m()),
        Op::Sync,
        Op::Crash {
            after: 0,
            fault: Fault::Crash,
            kind: CrashKind::Process,
        },
        Op::Append(m()),
        Op::Remove(Pick { live: true, idx: 0 }),
        Op::Append(m()),
        Op::Append(m()),
        Op::Crash {
            after: 4,
            fault: Fault::Crash,
            kind: CrashKind::PowerLoss,
        },
        Op::Erase(Pick { live: true, idx: 0 }),
    ];
    run(Durability::None, 4096, &ops).unwrap();
}

/// A torn erase damages a checkpointed record whose header is gone; the damaged stretch is
/// followed by an intact tombstone, which must not be counted as part of the lost record.
#[test]
fn regress_always_damaged_stretch_ends_at_next_intact_record() {
    let m = |p: usize| GenMsg {
        subject: 0,
        headers: vec![],
        payload: vec![0; p],
    };
    let ops = vec![
        Op::Append(m(0)),
        Op::Append(m(1)),
        Op::Append(m(1)),
        Op::Append(m(0)),
        Op::Append(m(0)),
        Op::Remove(Pick { live: true, idx: 0 }),
        Op::Crash {
            after: 21,
            fault: Fault::TornWrite,
            kind: CrashKind::Process,
        },
        Op::Restart,
        Op::Append(m(0)),
        Op::Append(m(0)),
        Op::Append(m(0)),
        Op::Remove(Pick { live: true, idx: 0 }),
        Op::Append(m(0)),
        Op::Truncate(Pick { live: true, idx: 3 }),
        Op::Erase(Pick { live: true, idx: 2 }),
    ];
    run(Durability::Always, 4096, &ops).unwrap();
}

/// A record whose header a torn erase destroyed lies in front of a truncate that hands its
/// sequence to a new record: after a clean reopen nothing may be reported lost.
#[test]
fn regress_none_damaged_stretch_before_truncate_is_not_lost() {
    let m = || GenMsg {
        subject: 0,
        headers: vec![],
        payload: vec![],
    };
    let mut ops = vec![
        Op::Append(m()),
        Op::Append(m()),
        Op::Sync,
        Op::Append(m()),
        Op::Append(m()),
    ];
    ops.push(Op::Batch(vec![m(), m()]));
    ops.push(Op::Crash {
        after: 2,
        fault: Fault::TornWrite,
        kind: CrashKind::Process,
    });
    ops.extend([Op::Append(m()), Op::Append(m()), Op::Append(m())]);
    ops.push(Op::Erase(Pick { live: true, idx: 2 }));
    ops.push(Op::Truncate(Pick {
        live: false,
        idx: 0,
    }));
    ops.extend([
        Op::Append(m()),
        Op::Append(m()),
        Op::Append(m()),
        Op::Append(m()),
        Op::Append(m()),
    ]);
    run(Durability::None, 4096, &ops).unwrap();
}

/// A torn erase destroys the header of a checkpointed record that precedes a skipped
/// sequence: the damaged bytes belong to the lost message alone, not to the skipped one.
#[test]
fn regress_always_damaged_stretch_bytes_go_to_lost_messages_only() {
    let m = || GenMsg {
        subject: 0,
        headers: vec![],
        payload: vec![],
    };
    let ops = vec![
        Op::Append(m()),
        Op::Checkpoint,
        Op::Crash {
            after: 18,
            fault: Fault::TornWrite,
            kind: CrashKind::Process,
        },
        Op::Skip(1),
        Op::Append(m()),
        Op::Append(m()),
        Op::Append(m()),
        Op::Restart,
        Op::Erase(Pick { live: true, idx: 0 }),
    ];
    run(Durability::Always, 4096, &ops).unwrap();
}
