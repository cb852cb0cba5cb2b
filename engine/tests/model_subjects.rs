//! Model-based property tests of subject queries and stream limits: random operation sequences
//! (appends, batches, raw appends with gaps, removals, filtered purges, compaction,
//! truncation, limit changes, clock moves, restarts and power losses) run against a stream and
//! a plain `BTreeMap` model, and after every step every query is compared with the model.
//!
//! Invariants checked:
//! - `queries-equal-model`: `load_next`, `load_prev`, `load_last`, `subjects_state`,
//!   `subjects_totals`, `num_pending` (both forms), `multi_last_seqs`, `num_subjects` and
//!   `seq_for_time` give what the model computes with `subject::matches`, for a fixed set of
//!   filters and start sequences around the live range.
//! - `limits-equal-model`: what limits remove, and the errors a discard-new stream returns,
//!   are exactly what the documented rules give; a refused operation changes nothing.
//! - `state-equals-model`: counters (including bytes), every message and every absent
//!   sequence agree with the model, and `check_invariants()` passes.
//! - `acked-survives-power-loss`: with `Durability::Always` every acknowledged operation
//!   survives a power loss, so the recovered stream is the model itself (after the limit
//!   enforcement that runs at open).

mod common;

use common::by_subject::{self, HasSubject};
use common::{pick, Db, GenMsg, Pick};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use tidelog::io::CrashKind;
use tidelog::subject::matches;
use tidelog::{
    AppendError, Clock, Discard, Durability, Limit, Limits, ManualClock, NewMessage, QueryError,
    StoredMessage, StreamConfig, SubjectState, WriteError,
};

const NAME: &str = "subj";
/// One to three tokens, sharing prefixes and suffixes so wildcards overlap in every way; then
/// a family large enough that `m.*`, `*.*` and `*.>` match more subjects than `load_next`
/// looks up one by one (it first scans forward then).
const SUBJECTS: [&str; 26] = [
    "a", "a.b", "a.c", "a.b.c", "x.b.c", "x.y", "m.0", "m.1", "m.2", "m.3", "m.4", "m.5", "m.6",
    "m.7", "m.8", "m.9", "m.10", "m.11", "m.12", "m.13", "m.14", "m.15", "m.16", "m.17", "m.18",
    "m.19",
];
/// How many of `SUBJECTS` are the small set most messages use.
const COMMON: usize = 6;
/// Queried after every step. Literals take the index's lookup path, wildcards its trie walk,
/// and `>` its own shortcuts.
const FILTERS: [&str; 19] = [
    ">", "*", "a", "a.*", "a.>", "*.b.c", "*.*", "x.>", "q.>", "a.b", "*.>", "a.*.c", "a.c",
    "a.b.c", "x.b.c", "x.y", "m.*", "m.>", "m.7",
];
/// Filters `purge_filtered` is given; the last one is invalid.
const PURGE_FILTERS: [&str; 11] = [
    ">", "a", "a.*", "a.>", "*.b.c", "*.*", "x.>", "a.b", "q.>", "m.*", "a.>.b",
];
const MULTI_FILTERS: [&[&str]; 5] = [
    &["a.*", "a.b"],
    &["x.>", "*.b.c"],
    &[">", "a"],
    &["q.>", "a.c", "a.b.c"],
    &["m.*", "*.*", "a"],
];
/// Fixed header and trailer of every message record (`MIN_RECORD_LEN`); `subjects.rs` checks
/// it against `StreamState::bytes`.
const RECORD_OVERHEAD: u64 = 40;
const SEC: i64 = 1_000_000_000;
const START_NS: i64 = 1_700_000_000 * SEC;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Append(GenMsg),
    Batch(Vec<GenMsg>),
    /// One batch of `n` empty messages, every third to `other` and the rest to `main`: long
    /// enough for a subject's sequence list to leave its inline form.
    Bulk {
        main: usize,
        other: usize,
        n: usize,
    },
    /// `seq = last_seq + 1 + gap`, timestamp `back_ms` before now but never before any
    /// message stored so far: `seq_for_time` searches every record still in a block, removed
    /// ones included, and only promises one answer while timestamps never decrease.
    Raw {
        gap: u64,
        back_ms: u64,
        msg: GenMsg,
    },
    Remove(Pick),
    PurgeFiltered(by_subject::Purge),
    Compact(Pick),
    Truncate(Pick),
    UpdateLimits(Limits),
    /// Moves the clock only: the next append, `enforce_limits` or open sees the new time.
    Advance(i64),
    EnforceLimits,
    Restart,
    /// Power loss with nothing armed: only synced data survives.
    Crash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    subject: &'static str,
    headers: Vec<u8>,
    payload: Vec<u8>,
    ts: i64,
}

impl Msg {
    fn bytes(&self) -> u64 {
        RECORD_OVERHEAD + (self.subject.len() + self.headers.len() + self.payload.len()) as u64
    }
}

impl HasSubject for Msg {
    fn subject(&self) -> &'static str {
        self.subject
    }
}

fn msg_of(g: &GenMsg, ts: i64) -> Msg {
    Msg {
        subject: SUBJECTS[g.subject % SUBJECTS.len()],
        headers: g.headers.clone(),
        payload: g.payload.clone(),
        ts,
    }
}

/// An operation with its arguments fixed against the model.
#[derive(Clone, Debug)]
enum R {
    Append(Msg),
    Batch(Vec<Msg>),
    Raw(u64, Msg),
    Remove(u64),
    PurgeFiltered(&'static str, Option<u64>, u64),
    Compact(u64),
    Truncate(u64),
    UpdateLimits(Limits),
    Advance(i64),
    EnforceLimits,
    Restart,
    Crash,
}

impl R {
    fn short(&self) -> String {
        let m = |m: &Msg| format!("{} ({}B)", m.subject, m.bytes());
        match self {
            R::Append(x) => format!("append({})", m(x)),
            R::Batch(xs) if xs.len() > 8 => format!("append_batch(n={}, {})", xs.len(), m(&xs[0])),
            R::Batch(xs) => format!(
                "append_batch([{}])",
                xs.iter().map(m).collect::<Vec<_>>().join(", ")
            ),
            R::Raw(seq, x) => format!("append_raw(seq={seq}, ts=+{}ns, {})", x.ts - START_NS, m(x)),
            other => format!("{other:?}"),
        }
    }
}

/// The outcome of an operation, comparable between model and stream.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Appended(u64, i64),
    Range(u64, u64, i64),
    Unit,
    Count(u64),
    NotFound(u64),
    Invalid,
    Limit(Limit),
    Config,
    Err(String),
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Model {
    msgs: BTreeMap<u64, Msg>,
    last_seq: u64,
    limits: Limits,
    now: i64,
    /// Newest timestamp ever stored (removals do not lower it).
    max_ts: i64,
}

fn limits_valid(l: &Limits) -> bool {
    let pos = |v: Option<u64>| v != Some(0);
    pos(l.max_msgs)
        && pos(l.max_bytes)
        && pos(l.max_msgs_per_subject)
        && l.max_age.is_none_or(|a| !a.is_zero())
        && !(l.discard == Discard::NewPerSubject && l.max_msgs_per_subject.is_none())
}

impl Model {
    fn new(limits: Limits) -> Model {
        Model {
            msgs: BTreeMap::new(),
            last_seq: 0,
            limits,
            now: START_NS,
            max_ts: 0,
        }
    }

    fn first_seq(&self) -> u64 {
        common::first_seq(&self.msgs, self.last_seq)
    }

    fn bytes(&self) -> u64 {
        self.msgs.values().map(Msg::bytes).sum()
    }

    fn matching<'a>(
        &'a self,
        filter: &'a str,
    ) -> impl DoubleEndedIterator<Item = (&'a u64, &'a Msg)> + 'a {
        self.msgs
            .iter()
            .filter(move |(_, m)| matches(filter, m.subject))
    }

    fn pick(&self, p: Pick) -> u64 {
        common::pick_seq(&self.msgs, self.last_seq, p)
    }

    fn resolve(&self, op: &Op) -> R {
        match op {
            Op::Append(g) => R::Append(msg_of(g, self.now)),
            Op::Batch(gs) => R::Batch(gs.iter().map(|g| msg_of(g, self.now)).collect()),
            Op::Bulk { main, other, n } => R::Batch(
                (0..*n)
                    .map(|i| {
                        let g = GenMsg {
                            subject: if i % 3 == 2 { *other } else { *main },
                            headers: Vec::new(),
                            payload: Vec::new(),
                        };
                        msg_of(&g, self.now)
                    })
                    .collect(),
            ),
            Op::Raw { gap, back_ms, msg } => {
                let ts = (self.now - *back_ms as i64 * 1_000_000).max(self.max_ts);
                R::Raw(self.last_seq + 1 + gap, msg_of(msg, ts))
            }
            Op::Remove(p) => R::Remove(self.pick(*p)),
            Op::PurgeFiltered(p) => {
                let (filter, up_to, keep) = p.args(&PURGE_FILTERS, |q| self.pick(q));
                R::PurgeFiltered(filter, up_to, keep)
            }
            Op::Compact(p) => R::Compact(self.pick(*p)),
            Op::Truncate(p) => R::Truncate(self.pick(*p)),
            Op::UpdateLimits(l) => R::UpdateLimits(*l),
            Op::Advance(d) => R::Advance(*d),
            Op::EnforceLimits => R::EnforceLimits,
            Op::Restart => R::Restart,
            Op::Crash => R::Crash,
        }
    }

    /// The check a stream runs before an append: a message that can never fit is refused
    /// under any policy; a discard-new stream is judged as it would be after the append and
    /// the per-subject removals it causes.
    fn check_append(&self, batch: &[Msg]) -> Result<(), Limit> {
        let lim = &self.limits;
        if let Some(mb) = lim.max_bytes {
            if batch.iter().any(|m| m.bytes() > mb) {
                return Err(Limit::MaxBytes);
            }
        }
        if lim.discard == Discard::Old {
            return Ok(());
        }
        let mut msgs_after = self.msgs.len() as u64 + batch.len() as u64;
        let mut bytes_after = self.bytes() + batch.iter().map(Msg::bytes).sum::<u64>();
        if let Some(per) = lim.max_msgs_per_subject {
            let touched: BTreeSet<&str> = batch.iter().map(|m| m.subject).collect();
            for s in touched {
                let existing = by_subject::seqs_of(&self.msgs, s);
                let new: Vec<&Msg> = batch.iter().filter(|m| m.subject == s).collect();
                let over = (existing.len() as u64 + new.len() as u64).saturating_sub(per);
                if over == 0 {
                    continue;
                }
                if lim.discard == Discard::NewPerSubject {
                    return Err(Limit::MaxMsgsPerSubject);
                }
                let from_old = over.min(existing.len() as u64) as usize;
                let freed_old: u64 = existing[..from_old]
                    .iter()
                    .map(|q| self.msgs[q].bytes())
                    .sum();
                let freed_new: u64 = new
                    .iter()
                    .take(over as usize - from_old)
                    .map(|m| m.bytes())
                    .sum();
                msgs_after -= over;
                bytes_after -= freed_old + freed_new;
            }
        }
        if lim.max_msgs.is_some_and(|m| msgs_after > m) {
            return Err(Limit::MaxMsgs);
        }
        if lim.max_bytes.is_some_and(|m| bytes_after > m) {
            return Err(Limit::MaxBytes);
        }
        Ok(())
    }

    /// The removals after an append to `subjects` (`None`: every subject): each subject's
    /// oldest beyond its limit, then the stream's oldest while a discard-old limit is broken
    /// or (with `age`: expiry runs, which appends do not do) the oldest message has expired.
    fn enforce(&mut self, lim: &Limits, subjects: Option<&[&'static str]>, age: bool) {
        if let Some(per) = lim.max_msgs_per_subject {
            by_subject::limit(&mut self.msgs, per, subjects);
        }
        let old = lim.discard == Discard::Old;
        let cutoff = lim
            .max_age
            .filter(|_| age)
            .map(|a| self.now.saturating_sub(a.as_nanos() as i64));
        let mut bytes = self.bytes();
        while let Some((&q, m)) = self.msgs.iter().next() {
            let count = self.msgs.len() as u64;
            let over = old
                && (lim.max_msgs.is_some_and(|x| count > x)
                    || lim.max_bytes.is_some_and(|x| bytes > x));
            let expired = cutoff.is_some_and(|c| m.ts < c);
            if !over && !expired {
                break;
            }
            bytes -= m.bytes();
            self.msgs.remove(&q);
        }
    }

    fn append_all(&mut self, first: u64, batch: &[Msg]) -> Result<(), Limit> {
        self.check_append(batch)?;
        for (i, m) in batch.iter().enumerate() {
            self.msgs.insert(first + i as u64, m.clone());
            self.max_ts = self.max_ts.max(m.ts);
        }
        self.last_seq = first + batch.len() as u64 - 1;
        let subjects: Vec<&'static str> = batch.iter().map(|m| m.subject).collect();
        let lim = self.limits;
        self.enforce(&lim, Some(&subjects), false);
        Ok(())
    }

    /// Applies `r` as the documented semantics say and returns the expected outcome.
    fn apply(&mut self, r: &R) -> Out {
        match r {
            R::Append(m) => {
                let seq = self.last_seq + 1;
                match self.append_all(seq, std::slice::from_ref(m)) {
                    Ok(()) => Out::Appended(seq, m.ts),
                    Err(l) => Out::Limit(l),
                }
            }
            R::Batch(ms) => {
                let first = self.last_seq + 1;
                match self.append_all(first, ms) {
                    Ok(()) => Out::Range(first, self.last_seq, self.now),
                    Err(l) => Out::Limit(l),
                }
            }
            R::Raw(seq, m) => {
                if *seq <= self.last_seq {
                    return Out::Invalid;
                }
                match self.append_all(*seq, std::slice::from_ref(m)) {
                    Ok(()) => Out::Unit,
                    Err(l) => Out::Limit(l),
                }
            }
            R::Remove(seq) => match self.msgs.remove(seq) {
                Some(_) => Out::Unit,
                None => Out::NotFound(*seq),
            },
            R::PurgeFiltered(filter, up_to, keep) => {
                let Some(gone) = by_subject::purge_filtered(&self.msgs, filter, *up_to, *keep)
                else {
                    return Out::Config;
                };
                for q in &gone {
                    self.msgs.remove(q);
                }
                Out::Count(gone.len() as u64)
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
            R::UpdateLimits(l) => {
                if !limits_valid(l) {
                    return Out::Config;
                }
                // Applied at once as if discarding old, whatever the new policy.
                let mut now = *l;
                now.discard = Discard::Old;
                self.enforce(&now, None, true);
                self.limits = *l;
                Out::Unit
            }
            R::Advance(d) => {
                self.now += d;
                Out::Unit
            }
            R::EnforceLimits | R::Restart | R::Crash => {
                // Open runs `enforce_limits` too.
                let lim = self.limits;
                self.enforce(&lim, None, true);
                Out::Unit
            }
        }
    }

    // Query answers, computed from the messages alone.

    fn subjects_state(&self, filter: &str) -> BTreeMap<String, SubjectState> {
        let mut out: BTreeMap<String, SubjectState> = BTreeMap::new();
        for (&q, m) in self.matching(filter) {
            out.entry(m.subject.to_string())
                .and_modify(|s| {
                    s.messages += 1;
                    s.last_seq = q;
                })
                .or_insert(SubjectState {
                    messages: 1,
                    first_seq: q,
                    last_seq: q,
                });
        }
        out
    }

    fn num_pending(&self, from: u64, filter: &str, last_per_subject: bool) -> u64 {
        if last_per_subject {
            self.subjects_state(filter)
                .values()
                .filter(|s| s.last_seq >= from)
                .count() as u64
        } else {
            self.matching(filter).filter(|(q, _)| **q >= from).count() as u64
        }
    }

    fn multi_last_seqs(&self, filters: &[&str], up_to: u64) -> Vec<u64> {
        let up_to = if up_to == 0 { self.last_seq } else { up_to };
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for (&q, m) in &self.msgs {
            if q <= up_to && filters.iter().any(|f| matches(f, m.subject)) {
                last.insert(m.subject, q);
            }
        }
        let set: BTreeSet<u64> = last.values().copied().collect();
        set.into_iter().collect()
    }

    fn seq_for_time(&self, ts: i64) -> u64 {
        self.msgs
            .iter()
            .find(|(_, m)| m.ts >= ts)
            .map_or(self.last_seq + 1, |(q, _)| *q)
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    memory: bool,
    clock: Arc<ManualClock>,
    db: Db,
    model: Model,
    /// Every sequence ever handed out or asked about (probed for `NotFound`).
    touched: BTreeSet<u64>,
    trace: Vec<String>,
}

fn a_out(r: Result<Out, AppendError>) -> Out {
    match r {
        Ok(o) => o,
        Err(AppendError::SequenceNotAfterLast { .. }) => Out::Invalid,
        Err(AppendError::LimitReached(l)) => Out::Limit(l),
        Err(e) => Out::Err(format!("{e:?}")),
    }
}

fn w_out(r: Result<Out, WriteError>) -> Out {
    match r {
        Ok(o) => o,
        Err(WriteError::NotFound(s)) => Out::NotFound(s),
        Err(WriteError::InvalidSequence { .. }) => Out::Invalid,
        Err(WriteError::Config(_)) => Out::Config,
        Err(e) => Out::Err(format!("{e:?}")),
    }
}

fn describe(m: &Option<StoredMessage>) -> String {
    match m {
        Some(m) => format!(
            "Some(seq {} {} ts +{})",
            m.seq,
            m.subject(),
            m.ts - START_NS
        ),
        None => "None".into(),
    }
}

/// True when a query's answer is the model's message.
fn same(got: &Option<StoredMessage>, want: Option<(&u64, &Msg)>) -> bool {
    match (got, want) {
        (None, None) => true,
        (Some(g), Some((q, m))) => {
            g.seq == *q
                && g.subject() == m.subject
                && g.ts == m.ts
                && g.headers() == m.headers.as_slice()
                && g.payload() == m.payload.as_slice()
        }
        _ => false,
    }
}

impl Harness {
    fn new(memory: bool, block_size: u64, limits: Limits) -> Harness {
        let clock = Arc::new(ManualClock::new(START_NS));
        let cfg = StreamConfig::new(NAME)
            .block_size(block_size)
            .durability(Durability::Always)
            .limits(limits);
        Harness {
            memory,
            db: Db::create(common::store_options(Some(clock.clone())), cfg, memory),
            clock,
            model: Model::new(limits),
            touched: BTreeSet::new(),
            trace: Vec::new(),
        }
    }

    fn fail(&self, what: String) -> TestCaseError {
        let mut s = common::failure(&what, &self.trace);
        s.push_str(&format!(
            "--- model ---\nlast_seq {} limits {:?} now +{}ns\n",
            self.model.last_seq,
            self.model.limits,
            self.model.now - START_NS
        ));
        for (q, m) in &self.model.msgs {
            s.push_str(&format!(
                "  {q}: {} {}B ts +{}\n",
                m.subject,
                m.bytes(),
                m.ts - START_NS
            ));
        }
        TestCaseError::fail(s)
    }

    fn exec(&mut self, r: &R) -> Out {
        match r {
            R::Restart => return self.db.restart().map_or_else(Out::Err, |()| Out::Unit),
            R::Crash => {
                let reopened = self.db.crash(CrashKind::PowerLoss);
                return reopened.map_or_else(Out::Err, |()| Out::Unit);
            }
            R::Advance(d) => {
                self.clock.advance_ns(*d);
                return Out::Unit;
            }
            _ => {}
        }
        let s = self.db.stream();
        match r {
            R::Append(m) => a_out(
                s.append(m.subject, &m.headers, &m.payload)
                    .map(|a| Out::Appended(a.seq, a.ts)),
            ),
            R::Batch(ms) => {
                let nm: Vec<NewMessage<'_>> = ms
                    .iter()
                    .map(|m| NewMessage::new(m.subject, &m.payload).with_headers(&m.headers))
                    .collect();
                a_out(
                    s.append_batch(&nm)
                        .map(|b| Out::Range(b.first_seq, b.last_seq, b.ts)),
                )
            }
            R::Raw(seq, m) => a_out(
                s.append_raw(*seq, m.ts, m.subject, &m.headers, &m.payload)
                    .map(|()| Out::Unit),
            ),
            R::Remove(q) => w_out(s.remove(*q).map(|()| Out::Unit)),
            R::PurgeFiltered(f, up_to, keep) => {
                w_out(s.purge_filtered(f, *up_to, *keep).map(Out::Count))
            }
            R::Compact(q) => w_out(s.compact(*q).map(Out::Count)),
            R::Truncate(q) => w_out(s.truncate(*q).map(Out::Count)),
            R::UpdateLimits(l) => w_out(s.update_limits(*l).map(|()| Out::Unit)),
            R::EnforceLimits => w_out(s.enforce_limits().map(|()| Out::Unit)),
            R::Restart | R::Crash | R::Advance(_) => unreachable!(),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        if self.memory && matches!(op, Op::Restart | Op::Crash) {
            return Ok(());
        }
        let r = self.model.resolve(op);
        if let R::Remove(q) | R::Compact(q) | R::Truncate(q) | R::Raw(q, _) = &r {
            self.touched.insert(*q);
        }
        let mut after = self.model.clone();
        let expected = after.apply(&r);
        let actual = self.exec(&r);
        self.trace.push(format!("{} -> {actual:?}", r.short()));
        if actual != expected {
            return Err(self.fail(format!(
                "limits-equal-model: {} returned {actual:?}, model expects {expected:?}",
                r.short()
            )));
        }
        // A refused operation leaves the model as it was, and `verify` checks that the stream
        // did not change either.
        self.model = after;
        self.touched.extend(self.model.msgs.keys().copied());
        self.touched.insert(self.model.last_seq);
        let what = match r {
            R::Crash => "acked-survives-power-loss",
            _ => "state-equals-model",
        };
        self.verify(what)?;
        self.verify_queries()
    }

    fn verify(&self, name: &str) -> Result<(), TestCaseError> {
        let s = self.db.stream();
        let m = &self.model;
        if self.clock.now_ns() != m.now {
            return Err(self.fail(format!("{name}: clock and model disagree")));
        }
        let st = s.state();
        let want = (
            common::counts(&m.msgs, m.last_seq),
            m.bytes(),
            m.msgs.values().next().map_or(0, |x| x.ts),
        );
        let got = (common::stream_counts(&st), st.bytes, st.first_ts);
        if want != got {
            return Err(self.fail(format!(
                "{name}: state ((messages, first_seq, last_seq, num_deleted), bytes, first_ts) is {got:?}, model {want:?}"
            )));
        }
        for (q, msg) in &m.msgs {
            match s.load(*q) {
                Ok(g) if same(&Some(g.clone()), Some((q, msg))) => {}
                other => {
                    return Err(self.fail(format!(
                        "{name}: load({q}) = {other:?}, model has {} ts +{}",
                        msg.subject,
                        msg.ts - START_NS
                    )))
                }
            }
        }
        let probe = self.touched.clone();
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

    fn verify_queries(&self) -> Result<(), TestCaseError> {
        let s = self.db.stream();
        let m = &self.model;
        let q = |what: String, r: Result<(), String>| -> Result<(), TestCaseError> {
            r.map_err(|e| self.fail(format!("queries-equal-model: {what}: {e}")))
        };
        let keys: Vec<u64> = m.msgs.keys().copied().collect();
        let first = m.first_seq();
        let mid = keys.get(keys.len() / 2).copied().unwrap_or(first);
        let last_live = keys.last().copied().unwrap_or(0);
        let froms: BTreeSet<u64> = [
            0,
            1,
            first.saturating_sub(1),
            first,
            mid.saturating_sub(1),
            mid,
            mid + 1,
            last_live,
            m.last_seq,
            m.last_seq + 1,
        ]
        .into();
        for f in FILTERS {
            let want = m.subjects_state(f);
            let got = s.subjects_state(f);
            if got.as_ref().ok() != Some(&want) {
                q(
                    format!("subjects_state({f:?})"),
                    Err(format!("got {got:?}, model {want:?}")),
                )?;
            }
            let want_totals: BTreeMap<String, u64> =
                want.iter().map(|(k, v)| (k.clone(), v.messages)).collect();
            let got = s.subjects_totals(f);
            if got.as_ref().ok() != Some(&want_totals) {
                q(
                    format!("subjects_totals({f:?})"),
                    Err(format!("got {got:?}, model {want_totals:?}")),
                )?;
            }
            let got = s.load_last(f).map_err(|e| format!("{e:?}"));
            let ok = got
                .as_ref()
                .is_ok_and(|g| same(g, m.matching(f).next_back()));
            if !ok {
                q(
                    format!("load_last({f:?})"),
                    Err(format!(
                        "got {:?}, model {:?}",
                        got.map(|g| describe(&g)),
                        m.matching(f).next_back().map(|(q, _)| q)
                    )),
                )?;
            }
            for &from in &froms {
                let want = m.matching(f).find(|(q, _)| **q >= from);
                let got = s.load_next(f, from).map_err(|e| format!("{e:?}"));
                if !got.as_ref().is_ok_and(|g| same(g, want)) {
                    q(
                        format!("load_next({f:?}, {from})"),
                        Err(format!(
                            "got {:?}, model {:?}",
                            got.map(|g| describe(&g)),
                            want.map(|(q, _)| q)
                        )),
                    )?;
                }
                let want = m.matching(f).rev().find(|(q, _)| **q <= from);
                let got = s.load_prev(f, from).map_err(|e| format!("{e:?}"));
                if !got.as_ref().is_ok_and(|g| same(g, want)) {
                    q(
                        format!("load_prev({f:?}, {from})"),
                        Err(format!(
                            "got {:?}, model {:?}",
                            got.map(|g| describe(&g)),
                            want.map(|(q, _)| q)
                        )),
                    )?;
                }
                for lps in [false, true] {
                    let want = m.num_pending(from, f, lps);
                    let got = s.num_pending(from, f, lps);
                    if got.as_ref().ok() != Some(&want) {
                        q(
                            format!("num_pending({from}, {f:?}, {lps})"),
                            Err(format!("got {got:?}, model {want}")),
                        )?;
                    }
                }
            }
            for up_to in [0, first, mid, m.last_seq, m.last_seq + 5] {
                let want = m.multi_last_seqs(&[f], up_to);
                let got = s.multi_last_seqs(&[f], up_to, usize::MAX);
                if got.as_ref().ok() != Some(&want) {
                    q(
                        format!("multi_last_seqs([{f:?}], {up_to})"),
                        Err(format!("got {got:?}, model {want:?}")),
                    )?;
                }
            }
        }
        for fs in MULTI_FILTERS {
            for up_to in [0, mid] {
                let want = m.multi_last_seqs(fs, up_to);
                let got = s.multi_last_seqs(fs, up_to, want.len());
                if got.as_ref().ok() != Some(&want) {
                    q(
                        format!("multi_last_seqs({fs:?}, {up_to}, {})", want.len()),
                        Err(format!("got {got:?}, model {want:?}")),
                    )?;
                }
                if let Some(max) = want.len().checked_sub(1) {
                    let got = s.multi_last_seqs(fs, up_to, max);
                    if !matches!(got, Err(QueryError::TooManyResults { max: x }) if x == max) {
                        q(
                            format!("multi_last_seqs({fs:?}, {up_to}, {max})"),
                            Err(format!("got {got:?}, model has {} results", want.len())),
                        )?;
                    }
                }
            }
        }
        let want = by_subject::subjects(&m.msgs).len() as u64;
        if s.num_subjects() != want {
            q(
                "num_subjects".into(),
                Err(format!("got {}, model {want}", s.num_subjects())),
            )?;
        }
        let mut times: BTreeSet<i64> = [0, START_NS, m.now, m.now + 1].into();
        let stamps: BTreeSet<i64> = m.msgs.values().map(|x| x.ts).collect();
        for t in stamps {
            times.extend([t - 1, t, t + 1]);
        }
        for t in times {
            let want = m.seq_for_time(t);
            let got = s.seq_for_time(t);
            if got != want {
                q(
                    format!("seq_for_time(+{}ns)", t - START_NS),
                    Err(format!("got {got}, model {want}")),
                )?;
            }
        }
        Ok(())
    }

    /// Ends a case: a clean close and reopen of a file stream must keep everything.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        if self.memory {
            return Ok(());
        }
        self.step(&Op::Restart)
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn msg() -> impl Strategy<Value = GenMsg> {
    common::gen_msg(subject(), 0.2, 12, 64)
}

fn subject() -> impl Strategy<Value = usize> {
    prop_oneof![5 => 0..COMMON, 1 => COMMON..SUBJECTS.len()]
}

/// Small enough to bite: a message is 41 to 157 bytes.
fn limits(valid: bool) -> impl Strategy<Value = Limits> {
    let zero = if valid { 1 } else { 0 };
    (
        proptest::option::weighted(0.5, zero..10u64),
        proptest::option::weighted(0.4, prop_oneof![zero..120u64, 120..1200u64]),
        proptest::option::weighted(0.3, (1u64..6).prop_map(|s| Duration::from_millis(s * 700))),
        proptest::option::weighted(0.5, zero..4u64),
        prop_oneof![
            Just(Discard::Old),
            Just(Discard::New),
            Just(Discard::NewPerSubject)
        ],
    )
        .prop_map(move |(max_msgs, max_bytes, max_age, per, discard)| {
            let mut l = Limits {
                max_msgs,
                max_bytes,
                max_age,
                max_msgs_per_subject: per,
                discard,
            };
            if valid && discard == Discard::NewPerSubject && per.is_none() {
                l.max_msgs_per_subject = Some(2);
            }
            l
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        14 => msg().prop_map(Op::Append),
        4 => vec(msg(), 1..6).prop_map(Op::Batch),
        1 => (subject(), subject(), 20usize..300)
            .prop_map(|(main, other, n)| Op::Bulk { main, other, n }),
        3 => (
            prop_oneof![6 => 0u64..4, 1 => 20u64..40, 1 => Just(1500u64)],
            prop_oneof![3 => Just(0u64), 1 => 0u64..5000],
            msg(),
        )
            .prop_map(|(gap, back_ms, msg)| Op::Raw { gap, back_ms, msg }),
        4 => pick().prop_map(Op::Remove),
        3 => by_subject::purge(PURGE_FILTERS.len(), 0.6).prop_map(Op::PurgeFiltered),
        1 => pick().prop_map(Op::Compact),
        1 => pick().prop_map(Op::Truncate),
        3 => prop_oneof![6 => limits(true), 1 => limits(false), 1 => Just(Limits::default())]
            .prop_map(Op::UpdateLimits),
        3 => (1i64..8).prop_map(|n| Op::Advance(n * 350_000_000)),
        1 => Just(Op::EnforceLimits),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
    ]
}

fn run(memory: bool, block_size: u64, initial: Limits, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(memory, block_size, initial);
    h.verify("state-equals-model (fresh)")?;
    for op in ops {
        h.step(op)?;
    }
    common::print_trace(&h.trace);
    h.finish()
}

// The default keeps this file well under a minute on two cores; `TIDELOG_MODEL_CASES=20000`
// searches longer.
proptest! {
    #![proptest_config(common::model_config(1200))]

    /// `queries-equal-model`, `limits-equal-model`, `state-equals-model` and
    /// `acked-survives-power-loss` on a file stream with durable acknowledgements.
    #[test]
    fn subjects_and_limits_match_model_on_file_stream(
        block_size in 4096u64..8192,
        initial in prop_oneof![2 => Just(Limits::default()), 1 => limits(true)],
        ops in vec(op(), 1..50),
    ) {
        run(false, block_size, initial, &ops)?;
    }

    /// The same checks on a memory stream (no restarts or power losses: it does not outlive
    /// its store).
    #[test]
    fn subjects_and_limits_match_model_on_memory_stream(
        block_size in 4096u64..8192,
        initial in prop_oneof![2 => Just(Limits::default()), 1 => limits(true)],
        ops in vec(op(), 1..50),
    ) {
        run(true, block_size, initial, &ops)?;
    }
}
