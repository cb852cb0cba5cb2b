//! Model-based property tests of per-message TTLs, max_age, expiry passes and subject delete
//! markers: random operation sequences (appends and batches with mixed TTLs, clock moves,
//! expiry passes, removals, purges, compaction, limit changes, checkpoints, restarts and power
//! losses) run against a stream and a plain `BTreeMap` model of the documented rules, and after
//! every step the whole stream is compared with the model.
//!
//! Invariants checked:
//! - `ops-equal-model`: every operation returns what the model computes (sequences,
//!   timestamps, how many messages an expiry pass or a purge removed, `InvalidTtl` for a TTL
//!   out of range, and nothing changes then).
//! - `state-equals-model`: counters, every live message (subject, headers, payload, timestamp,
//!   effective TTL, marker flag) and every absent sequence agree with the model, and
//!   `check_invariants()` passes (`timers-equal-log` among them).
//! - `acked-survives-power-loss`: with `Durability::Always` every acknowledged operation,
//!   completed expiry passes included, survives a power loss; the stream after reopen is the
//!   model after the limits and the expiry pass that open runs at the current clock.
//! - `markers-only-for-emptied-subjects`: read from the stream, not the model, every marker an
//!   operation writes is on a subject the operation emptied whose last removed message was not
//!   a marker, with the reason of the operation, one per subject, in the order of the subjects'
//!   last removed messages; and an expiry or removal pass that empties such a subject always
//!   writes its marker.
//! - `one-marker-per-emptying`: in the history of every subject, a marker always follows a
//!   message that is not a marker (a subject never gets two markers for one emptying, even
//!   across restarts and power losses).

mod common;

use common::by_subject::{self, HasSubject};
use common::{pick, Db, GenMsg, Pick, DIR};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use tidelog::io::{CrashKind, MemVfs};
use tidelog::{
    AppendError, Clock, Durability, Limits, LoadError, ManualClock, NewMessage, Storage, Store,
    StoredMessage, StreamConfig, Ttl, WriteError, MAX_TTL_SECS,
};

const NAME: &str = "ttl";
/// Few subjects, so they empty and fill up again often: that is when markers are written.
const SUBJECTS: [&str; 5] = ["a", "b", "c.x", "c.y", "d"];
/// Filters `purge_filtered` is given; the last one is invalid.
const PURGE_FILTERS: [&str; 8] = [">", "a", "c.*", "c.>", "b", "*", "d", "c.>.x"];
const SEC: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// A whole second, so TTLs and max_age fall on round boundaries the clock moves can hit.
const START_NS: i64 = 1_700_000_000 * SEC;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct TtlMsg {
    msg: GenMsg,
    ttl: Option<Ttl>,
}

#[derive(Clone, Debug)]
enum Op {
    Append(TtlMsg),
    Batch(Vec<TtlMsg>),
    /// One batch of up to `n` empty messages, every third to `other` and the rest to `main`,
    /// with TTLs taken in turn from `ttls`: long enough for a subject's sequence list to leave
    /// its inline form, so expiry removes many messages of one subject at once.
    Bulk {
        main: usize,
        other: usize,
        n: usize,
        ttls: Vec<Option<Ttl>>,
    },
    /// Moves the clock only: nothing expires until a pass runs.
    Advance(i64),
    ExpireNow,
    Remove(Pick),
    Erase(Pick),
    PurgeFiltered(by_subject::Purge),
    Compact(Pick),
    /// `compact(last_seq + 1 + gap)`: the floor moves past the end, and the markers a purge
    /// leaves start there, across a gap that may be too long for the active block.
    CompactPast(u64),
    Truncate(Pick),
    Purge,
    UpdateLimits(Limits),
    /// Puts the timers into a checkpoint, so a later power loss recovers them from there plus
    /// a replay instead of from the log alone.
    Checkpoint,
    Restart,
    /// Power loss with nothing armed: only synced data survives.
    Crash,
}

/// Why a marker was written (its `Nats-Marker-Reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    MaxAge,
    Remove,
    Purge,
}

fn marker_headers(reason: Reason, ttl_secs: u64) -> Vec<u8> {
    format!(
        "NATS/1.0\r\nNats-Marker-Reason: {reason:?}\r\nNats-TTL: {ttl_secs}s\r\nNats-Rollup: sub\r\n\r\n"
    )
    .into_bytes()
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    subject: &'static str,
    headers: Vec<u8>,
    payload: Vec<u8>,
    ts: i64,
    /// As requested in an operation; as stored (after the raise to the marker TTL) in the
    /// model's log.
    ttl: Option<Ttl>,
    marker: bool,
}

/// The second in which a message stored at `ts` with a TTL of `secs` falls due: the first
/// whole second at or after its exact expiry.
fn due_second(ts: i64, secs: u64) -> i128 {
    let exp = i128::from(ts) + i128::from(secs) * i128::from(SEC);
    (exp + i128::from(SEC) - 1).div_euclid(i128::from(SEC))
}

fn rel(ts: i64) -> String {
    format!("+{}ms", (ts - START_NS) / MS)
}

impl Msg {
    fn describe(&self) -> String {
        let ttl = match self.ttl {
            None => String::new(),
            Some(Ttl::Never) => " ttl never".into(),
            Some(Ttl::Secs(s)) => format!(
                " ttl {s}s (due +{}s)",
                due_second(self.ts, s) - i128::from(START_NS / SEC)
            ),
        };
        let kind = if self.marker { " MARKER" } else { "" };
        format!("{} ts {}{ttl}{kind}", self.subject, rel(self.ts))
    }
}

impl HasSubject for Msg {
    fn subject(&self) -> &'static str {
        self.subject
    }
}

fn msg_of(g: &TtlMsg, ts: i64) -> Msg {
    Msg {
        subject: SUBJECTS[g.msg.subject % SUBJECTS.len()],
        headers: g.msg.headers.clone(),
        payload: g.msg.payload.clone(),
        ts,
        ttl: g.ttl,
        marker: false,
    }
}

/// An operation with its arguments fixed against the model.
#[derive(Clone, Debug)]
enum R {
    Append(Msg),
    Batch(Vec<Msg>),
    Advance(i64),
    ExpireNow,
    Remove(u64),
    Erase(u64),
    PurgeFiltered(&'static str, Option<u64>, u64),
    Compact(u64),
    Truncate(u64),
    Purge,
    UpdateLimits(Limits),
    Checkpoint,
    Restart,
    Crash,
}

impl R {
    fn short(&self) -> String {
        let m = |m: &Msg| match m.ttl {
            Some(t) => format!("{} {t:?}", m.subject),
            None => m.subject.to_string(),
        };
        match self {
            R::Append(x) => format!("append({})", m(x)),
            R::Batch(xs) if xs.len() > 8 => format!(
                "append_batch(n={}, [{}, ...])",
                xs.len(),
                xs[..3].iter().map(m).collect::<Vec<_>>().join(", ")
            ),
            R::Batch(xs) => format!(
                "append_batch([{}])",
                xs.iter().map(m).collect::<Vec<_>>().join(", ")
            ),
            R::Advance(d) => format!("advance({}ms)", d / MS),
            other => format!("{other:?}"),
        }
    }

    /// The reason of the markers this operation may write, if any.
    fn marker_reason(&self) -> Option<Reason> {
        match self {
            R::ExpireNow | R::UpdateLimits(_) | R::Restart | R::Crash => Some(Reason::MaxAge),
            R::Remove(_) | R::Erase(_) => Some(Reason::Remove),
            R::Purge | R::Compact(_) | R::PurgeFiltered(..) => Some(Reason::Purge),
            _ => None,
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
    InvalidTtl(u64),
    TtlNotAllowed,
    Config,
    Err(String),
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Setup {
    memory: bool,
    block_size: u64,
    marker_ttl: Option<u64>,
    removal_markers: bool,
    limits: Limits,
}

#[derive(Clone, Debug)]
struct Model {
    msgs: BTreeMap<u64, Msg>,
    last_seq: u64,
    limits: Limits,
    now: i64,
    /// Newest timestamp ever stored (removals do not lower it).
    max_ts: i64,
    marker_ttl: Option<u64>,
    removal_markers: bool,
}

impl Model {
    fn new(setup: &Setup) -> Model {
        Model {
            msgs: BTreeMap::new(),
            last_seq: 0,
            limits: setup.limits,
            now: START_NS,
            max_ts: 0,
            marker_ttl: setup.marker_ttl,
            removal_markers: setup.removal_markers,
        }
    }

    fn pick(&self, p: Pick) -> u64 {
        common::pick_seq(&self.msgs, self.last_seq, p)
    }

    fn resolve(&self, op: &Op) -> R {
        match op {
            Op::Append(g) => R::Append(msg_of(g, self.now)),
            Op::Batch(gs) => R::Batch(gs.iter().map(|g| msg_of(g, self.now)).collect()),
            Op::Bulk {
                main,
                other,
                n,
                ttls,
            } => {
                // Capped so one expiry pass (2048 due by TTL, as many by age) covers the
                // stream, which the order of markers in the model relies on.
                let n = (*n).min(1500usize.saturating_sub(self.msgs.len())).max(1);
                R::Batch(
                    (0..n)
                        .map(|i| {
                            let g = TtlMsg {
                                msg: GenMsg {
                                    subject: if i % 3 == 2 { *other } else { *main },
                                    headers: Vec::new(),
                                    payload: Vec::new(),
                                },
                                ttl: ttls[i % ttls.len()],
                            };
                            msg_of(&g, self.now)
                        })
                        .collect(),
                )
            }
            Op::Advance(d) => R::Advance(*d),
            Op::ExpireNow => R::ExpireNow,
            Op::Remove(p) => R::Remove(self.pick(*p)),
            Op::Erase(p) => R::Erase(self.pick(*p)),
            Op::PurgeFiltered(p) => {
                let (filter, up_to, keep) = p.args(&PURGE_FILTERS, |q| self.pick(q));
                R::PurgeFiltered(filter, up_to, keep)
            }
            Op::Compact(p) => R::Compact(self.pick(*p)),
            Op::CompactPast(gap) => R::Compact(self.last_seq + 1 + gap),
            Op::Truncate(p) => R::Truncate(self.pick(*p)),
            Op::Purge => R::Purge,
            Op::UpdateLimits(l) => R::UpdateLimits(*l),
            Op::Checkpoint => R::Checkpoint,
            Op::Restart => R::Restart,
            Op::Crash => R::Crash,
        }
    }

    /// The TTL a message is stored with: shorter than the marker TTL is raised to it, unless
    /// a subject holds one message (then an append replaces the marker instead).
    fn effective(&self, ttl: Option<Ttl>) -> Option<Ttl> {
        match (ttl, self.marker_ttl) {
            (Some(Ttl::Secs(s)), Some(m)) if self.limits.max_msgs_per_subject != Some(1) => {
                Some(Ttl::Secs(s.max(m)))
            }
            _ => ttl,
        }
    }

    /// The first TTL of `batch` the stream refuses.
    fn invalid_ttl(batch: &[Msg]) -> Option<u64> {
        batch.iter().find_map(|m| match m.ttl {
            Some(Ttl::Secs(s)) if !(1..=MAX_TTL_SECS).contains(&s) => Some(s),
            _ => None,
        })
    }

    /// The removals after an append to `subjects` (`None`: every subject, as open and a limit
    /// change do): each subject's oldest beyond its limit, then the stream's oldest beyond
    /// max_msgs. Limits never write markers.
    fn enforce(&mut self, lim: &Limits, subjects: Option<&[&'static str]>) {
        if let Some(per) = lim.max_msgs_per_subject {
            by_subject::limit(&mut self.msgs, per, subjects);
        }
        if let Some(max) = lim.max_msgs {
            while self.msgs.len() as u64 > max {
                self.msgs.pop_first();
            }
        }
    }

    fn append_all(&mut self, batch: &[Msg]) -> Result<(u64, i64), Out> {
        if let Some(secs) = Self::invalid_ttl(batch) {
            return Err(Out::InvalidTtl(secs));
        }
        let first = self.last_seq + 1;
        let ts = self.now.max(self.max_ts);
        for (i, m) in batch.iter().enumerate() {
            let mut m = m.clone();
            m.ts = ts;
            m.ttl = self.effective(m.ttl);
            self.msgs.insert(first + i as u64, m);
        }
        self.max_ts = ts;
        self.last_seq = first + batch.len() as u64 - 1;
        let subjects: Vec<&'static str> = batch.iter().map(|m| m.subject).collect();
        let lim = self.limits;
        self.enforce(&lim, Some(&subjects));
        Ok((first, ts))
    }

    /// Per subject, the last of `gone` (live, sorted): its sequence and whether it is a marker.
    fn last_removed(&self, gone: &[u64]) -> BTreeMap<&'static str, (u64, bool)> {
        let mut last = BTreeMap::new();
        for q in gone {
            let m = &self.msgs[q];
            last.insert(m.subject, (*q, m.marker));
        }
        last
    }

    /// Removes `gone` (live, sorted) and, with a reason, marks the subjects it empties.
    fn remove_marked(&mut self, gone: &[u64], reason: Option<Reason>) {
        let last = self.last_removed(gone);
        for q in gone {
            self.msgs.remove(q);
        }
        self.mark(last, reason);
    }

    /// Writes a marker on every subject of `last` (what a removal took) that has no message
    /// left and whose last removed message was not a marker, in the order of those messages.
    fn mark(&mut self, last: BTreeMap<&'static str, (u64, bool)>, reason: Option<Reason>) {
        let (Some(reason), Some(ttl)) = (reason, self.marker_ttl) else {
            return;
        };
        let live = by_subject::subjects(&self.msgs);
        let mut emptied: Vec<(u64, &'static str)> = last
            .into_iter()
            .filter(|(s, (_, marker))| !marker && !live.contains(s))
            .map(|(s, (q, _))| (q, s))
            .collect();
        emptied.sort_unstable();
        let ts = self.now.max(self.max_ts);
        for (_, subject) in emptied {
            self.last_seq += 1;
            self.msgs.insert(
                self.last_seq,
                Msg {
                    subject,
                    headers: marker_headers(reason, ttl),
                    payload: Vec::new(),
                    ts,
                    ttl: Some(Ttl::Secs(ttl)),
                    marker: true,
                },
            );
            self.max_ts = ts;
        }
    }

    /// Whether `m` is due at the model's clock: by its TTL in whole seconds, or by max_age
    /// (strictly older than the cutoff) unless its TTL is "never".
    fn due(&self, m: &Msg) -> bool {
        let second = i128::from(self.now.div_euclid(SEC));
        let by_ttl = matches!(m.ttl, Some(Ttl::Secs(s)) if due_second(m.ts, s) <= second);
        let by_age = m.ttl != Some(Ttl::Never)
            && self
                .limits
                .max_age
                .is_some_and(|a| m.ts < self.now.saturating_sub(a.as_nanos() as i64));
        by_ttl || by_age
    }

    /// One expiry pass at the model's clock; returns how many messages went (markers it
    /// writes not counted).
    fn expire(&mut self) -> u64 {
        let gone: Vec<u64> = self
            .msgs
            .iter()
            .filter(|(_, m)| self.due(m))
            .map(|(q, _)| *q)
            .collect();
        self.remove_marked(&gone, Some(Reason::MaxAge));
        gone.len() as u64
    }

    fn removal_reason(&self, reason: Reason) -> Option<Reason> {
        self.removal_markers.then_some(reason)
    }

    /// Applies `r` as the documented semantics say and returns the expected outcome.
    fn apply(&mut self, r: &R) -> Out {
        match r {
            R::Append(m) => match self.append_all(std::slice::from_ref(m)) {
                Ok((seq, ts)) => Out::Appended(seq, ts),
                Err(e) => e,
            },
            R::Batch(ms) => match self.append_all(ms) {
                Ok((first, ts)) => Out::Range(first, self.last_seq, ts),
                Err(e) => e,
            },
            R::Advance(d) => {
                self.now += d;
                Out::Unit
            }
            R::ExpireNow => Out::Count(self.expire()),
            R::Remove(seq) | R::Erase(seq) => {
                if !self.msgs.contains_key(seq) {
                    return Out::NotFound(*seq);
                }
                self.remove_marked(&[*seq], self.removal_reason(Reason::Remove));
                Out::Unit
            }
            R::PurgeFiltered(filter, up_to, keep) => {
                let Some(gone) = by_subject::purge_filtered(&self.msgs, filter, *up_to, *keep)
                else {
                    return Out::Config;
                };
                self.remove_marked(&gone, self.removal_reason(Reason::Purge));
                Out::Count(gone.len() as u64)
            }
            R::Compact(seq) => {
                let gone: Vec<u64> = self.msgs.range(..*seq).map(|(q, _)| *q).collect();
                let last = self.last_removed(&gone);
                // A floor past the end moves the last sequence up before any marker is written.
                let n = common::compact_log(&mut self.msgs, &mut self.last_seq, *seq);
                self.mark(last, self.removal_reason(Reason::Purge));
                n.map_or(Out::Invalid, Out::Count)
            }
            // Rolls back without markers; the timers of what it drops go with it.
            R::Truncate(seq) => {
                match common::truncate_log(&mut self.msgs, &mut self.last_seq, *seq) {
                    Some(n) => Out::Count(n),
                    None => Out::Invalid,
                }
            }
            R::Purge => {
                let gone: Vec<u64> = self.msgs.keys().copied().collect();
                self.remove_marked(&gone, self.removal_reason(Reason::Purge));
                Out::Count(gone.len() as u64)
            }
            R::UpdateLimits(l) => {
                if l.validate().is_err() {
                    return Out::Config;
                }
                self.enforce(l, None);
                self.limits = *l;
                self.expire();
                Out::Unit
            }
            R::Checkpoint => Out::Unit,
            R::Restart | R::Crash => {
                // Open applies the limits, then runs an expiry pass at the current clock.
                let lim = self.limits;
                self.enforce(&lim, None);
                self.expire();
                Out::Unit
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    setup: Setup,
    clock: Arc<ManualClock>,
    db: Db,
    model: Model,
    /// Every sequence ever handed out or asked about (probed for `NotFound`).
    touched: BTreeSet<u64>,
    /// Per subject, the last message written to it as the stream reports it: (seq, marker).
    last_write: BTreeMap<String, (u64, bool)>,
    /// Every marker the stream wrote: (seq, subject, reason, step).
    marker_log: Vec<(u64, String, Reason, usize)>,
    trace: Vec<String>,
}

fn a_out(r: Result<Out, AppendError>) -> Out {
    match r {
        Ok(o) => o,
        Err(AppendError::InvalidTtl { secs }) => Out::InvalidTtl(secs),
        Err(AppendError::TtlNotAllowed) => Out::TtlNotAllowed,
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

fn new_msg(m: &Msg) -> NewMessage<'_> {
    let n = NewMessage::new(m.subject, &m.payload).with_headers(&m.headers);
    match m.ttl {
        Some(t) => n.with_ttl(t),
        None => n,
    }
}

/// True when a stored message is the model's message `q`.
fn same(g: &StoredMessage, q: u64, m: &Msg) -> bool {
    g.seq == q
        && g.subject() == m.subject
        && g.ts == m.ts
        && g.headers() == m.headers.as_slice()
        && g.payload() == m.payload.as_slice()
        && g.ttl == m.ttl
        && g.marker == m.marker
}

fn describe(g: &StoredMessage) -> String {
    format!(
        "seq {} {} ts {} ttl {:?}{} headers {:?}",
        g.seq,
        g.subject(),
        rel(g.ts),
        g.ttl,
        if g.marker { " MARKER" } else { "" },
        String::from_utf8_lossy(g.headers())
    )
}

impl Harness {
    fn new(setup: Setup) -> Harness {
        let clock = Arc::new(ManualClock::new(START_NS));
        let mut cfg = StreamConfig::new(NAME)
            .block_size(setup.block_size)
            .durability(Durability::Always)
            .limits(setup.limits)
            .allow_msg_ttl(true)
            .removal_markers(setup.removal_markers);
        if let Some(m) = setup.marker_ttl {
            cfg = cfg.subject_delete_marker_ttl(Duration::from_secs(m));
        }
        let db = Db::create(
            common::store_options(Some(clock.clone())),
            cfg,
            setup.memory,
        );
        Harness {
            setup,
            db,
            clock,
            model: Model::new(&setup),
            touched: BTreeSet::new(),
            last_write: BTreeMap::new(),
            marker_log: Vec::new(),
            trace: Vec::new(),
        }
    }

    fn fail(&self, what: String) -> TestCaseError {
        let mut s = common::failure(&what, &self.trace);
        s.push_str(&format!(
            "--- model ---\nsetup {:?}\nlast_seq {} limits {:?} now {}\n",
            self.setup,
            self.model.last_seq,
            self.model.limits,
            rel(self.model.now)
        ));
        for (q, m) in &self.model.msgs {
            s.push_str(&format!("  {q}: {}\n", m.describe()));
        }
        let recent: Vec<_> = self.marker_log.iter().rev().take(10).rev().collect();
        s.push_str(&format!("--- markers written (last 10) ---\n{recent:?}\n"));
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
                s.append_msg(&new_msg(m))
                    .map(|a| Out::Appended(a.seq, a.ts)),
            ),
            R::Batch(ms) => {
                let nm: Vec<NewMessage<'_>> = ms.iter().map(new_msg).collect();
                a_out(
                    s.append_batch(&nm)
                        .map(|b| Out::Range(b.first_seq, b.last_seq, b.ts)),
                )
            }
            R::ExpireNow => w_out(s.expire_now().map(Out::Count)),
            R::Remove(q) => w_out(s.remove(*q).map(|()| Out::Unit)),
            R::Erase(q) => w_out(s.erase(*q).map(|()| Out::Unit)),
            R::PurgeFiltered(f, up_to, keep) => {
                w_out(s.purge_filtered(f, *up_to, *keep).map(Out::Count))
            }
            R::Compact(q) => w_out(s.compact(*q).map(Out::Count)),
            R::Truncate(q) => w_out(s.truncate(*q).map(Out::Count)),
            R::Purge => w_out(s.purge().map(Out::Count)),
            R::UpdateLimits(l) => w_out(s.update_limits(*l).map(|()| Out::Unit)),
            R::Checkpoint => w_out(s.checkpoint().map(|()| Out::Unit)),
            R::Restart | R::Crash | R::Advance(_) => unreachable!(),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        if self.setup.memory && matches!(op, Op::Restart | Op::Crash) {
            return Ok(());
        }
        let r = self.model.resolve(op);
        if let R::Remove(q) | R::Erase(q) | R::Compact(q) | R::Truncate(q) = &r {
            self.touched.insert(*q);
        }
        let before = self.model.clone();
        let mut after = self.model.clone();
        let expected = after.apply(&r);
        let actual = self.exec(&r);
        self.trace
            .push(format!("{} -> {actual:?} @ {}", r.short(), rel(after.now)));
        if actual != expected {
            return Err(self.fail(format!(
                "ops-equal-model: {} returned {actual:?}, model expects {expected:?}",
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
        self.check_markers(&before, &r, &actual)
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
            m.msgs.values().next().map_or(0, |x| x.ts),
        );
        let got = (common::stream_counts(&st), st.first_ts);
        if want != got {
            return Err(self.fail(format!(
                "{name}: state ((messages, first_seq, last_seq, num_deleted), first_ts) is {got:?}, model {want:?}"
            )));
        }
        for (q, msg) in &m.msgs {
            match s.load(*q) {
                Ok(g) if same(&g, *q, msg) => {}
                Ok(g) => {
                    return Err(self.fail(format!(
                        "{name}: load({q}) = {}, model has {}",
                        describe(&g),
                        msg.describe()
                    )))
                }
                Err(e) => {
                    return Err(self.fail(format!(
                        "{name}: load({q}) = {e:?}, model has {}",
                        msg.describe()
                    )))
                }
            }
        }
        let probe = self.touched.clone();
        if let Some((q, other)) = common::first_not_absent(s, &m.msgs, m.last_seq, probe) {
            let got = match other {
                Ok(g) => describe(&g),
                Err(e) => format!("{e:?}"),
            };
            return Err(self.fail(format!(
                "{name}: load({q}) = {got}, model has no such message"
            )));
        }
        if let Err(e) = s.check_invariants() {
            return Err(self.fail(format!("{name}: check_invariants: {e}")));
        }
        Ok(())
    }

    /// `markers-only-for-emptied-subjects` and `one-marker-per-emptying`, judged from what the
    /// stream holds before (`pre`, which `verify` showed to be the stream) and after `r`, so a
    /// mistake the model shares with the engine still shows.
    fn check_markers(&mut self, pre: &Model, r: &R, out: &Out) -> Result<(), TestCaseError> {
        // Messages the operation appended come first in every subject's history.
        let appended: Vec<(u64, &'static str)> = match (r, out) {
            (R::Append(m), Out::Appended(q, _)) => vec![(*q, m.subject)],
            (R::Batch(ms), Out::Range(first, _, _)) => ms
                .iter()
                .enumerate()
                .map(|(i, m)| (first + i as u64, m.subject))
                .collect(),
            _ => Vec::new(),
        };
        for (q, subject) in appended {
            self.last_write.insert(subject.to_string(), (q, false));
        }
        let s = self.db.stream().clone();
        let mut new = Vec::new();
        for q in pre.last_seq + 1..=s.state().last_seq {
            if let Ok(g) = s.load(q) {
                if g.marker {
                    new.push(g);
                }
            }
        }
        let gone = |subject: &str| -> Option<u64> {
            let seqs = by_subject::seqs_of(&pre.msgs, subject);
            let all_gone = !seqs.is_empty()
                && seqs
                    .iter()
                    .all(|q| matches!(s.load(*q), Err(LoadError::NotFound(_))));
            all_gone.then(|| *seqs.last().expect("not empty"))
        };
        let name = "markers-only-for-emptied-subjects";
        let mut seen = BTreeSet::new();
        let mut prev_last = 0;
        for g in &new {
            let subject = g.subject().to_string();
            let Some(reason) = r.marker_reason() else {
                return Err(self.fail(format!(
                    "{name}: {} wrote marker {}",
                    r.short(),
                    describe(g)
                )));
            };
            let Some(last) = gone(&subject) else {
                return Err(self.fail(format!(
                    "{name}: marker {} on a subject {} did not empty",
                    describe(g),
                    r.short()
                )));
            };
            if pre.msgs[&last].marker {
                return Err(self.fail(format!(
                    "{name}: marker {} after the removal of marker {last}",
                    describe(g)
                )));
            }
            if !seen.insert(subject.clone()) {
                return Err(self.fail(format!(
                    "{name}: {} wrote two markers on {subject}",
                    r.short()
                )));
            }
            if last <= prev_last {
                return Err(self.fail(format!(
                    "{name}: marker {} out of the order of the subjects' last messages",
                    describe(g)
                )));
            }
            prev_last = last;
            let ttl = pre.marker_ttl.unwrap_or(0);
            if g.headers() != marker_headers(reason, ttl).as_slice()
                || g.ttl != Some(Ttl::Secs(ttl))
                || !g.payload().is_empty()
            {
                return Err(self.fail(format!(
                    "{name}: marker {} is not a {reason:?} marker with TTL {ttl}s",
                    describe(g)
                )));
            }
            match self.last_write.get(&subject) {
                Some((_, false)) => {}
                other => {
                    return Err(self.fail(format!(
                        "one-marker-per-emptying: marker {} follows {other:?} on its subject",
                        describe(g)
                    )))
                }
            }
            self.last_write.insert(subject.clone(), (g.seq, true));
            self.marker_log
                .push((g.seq, subject, reason, self.trace.len() - 1));
        }
        // Expiry and removal passes mark every subject they empty; limit changes and opens
        // also remove by limits first, which never mark, so they are only held to the above.
        let marking = match r {
            R::ExpireNow => pre.marker_ttl.is_some(),
            R::Remove(_) | R::Erase(_) | R::Purge | R::Compact(_) | R::PurgeFiltered(..) => {
                pre.removal_markers
            }
            _ => false,
        };
        if marking {
            for subject in by_subject::subjects(&pre.msgs) {
                if let Some(last) = gone(subject) {
                    if !pre.msgs[&last].marker && !seen.contains(subject) {
                        return Err(self.fail(format!(
                            "{name}: {} emptied {subject} (last message {last}) without a marker",
                            r.short()
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends a case: a clean close and reopen of a file stream must keep everything.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        if self.setup.memory {
            return Ok(());
        }
        self.step(&Op::Restart)
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn ttl() -> impl Strategy<Value = Option<Ttl>> {
    prop_oneof![
        12 => Just(None),
        15 => (1u64..=20).prop_map(|s| Some(Ttl::Secs(s))),
        3 => Just(Some(Ttl::Never)),
        // Due seconds that sit in higher levels of the timer wheel; long clock moves reach them.
        1 => prop_oneof![
            Just(255u64),
            Just(256),
            Just(257),
            Just(65_536),
            Just(86_400 * 30)
        ]
        .prop_map(|s| Some(Ttl::Secs(s))),
        // The longest TTL the stream takes, and a few it refuses.
        1 => prop_oneof![
            Just(MAX_TTL_SECS),
            Just(0),
            Just(MAX_TTL_SECS + 1),
            Just(u64::MAX)
        ]
        .prop_map(|s| Some(Ttl::Secs(s))),
    ]
}

fn msg() -> impl Strategy<Value = TtlMsg> {
    (
        0..SUBJECTS.len(),
        proptest::option::weighted(0.2, vec(any::<u8>(), 0..8)),
        // Now and then large enough for blocks to fill up under expiry passes and markers.
        prop_oneof![9 => vec(any::<u8>(), 0..16), 1 => vec(any::<u8>(), 200..900)],
        ttl(),
    )
        .prop_map(|(subject, h, payload, ttl)| TtlMsg {
            msg: GenMsg {
                subject,
                headers: h.unwrap_or_default(),
                payload,
            },
            ttl,
        })
}

fn max_age() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1u64..20).prop_map(Duration::from_secs),
        (500u64..20_000).prop_map(Duration::from_millis),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        proptest::option::weighted(0.5, max_age()),
        prop_oneof![2 => Just(None), 1 => Just(Some(1u64)), 1 => Just(Some(2u64))],
        proptest::option::weighted(0.15, 3u64..30),
    )
        .prop_map(|(max_age, per, max_msgs)| Limits {
            max_age,
            max_msgs_per_subject: per,
            max_msgs,
            ..Limits::default()
        })
}

/// Whole seconds land exactly on due seconds and max_age cutoffs; the rest fall in between.
fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => (1i64..=15).prop_map(|s| s * SEC),
        3 => (200i64..2000).prop_map(|ms| ms * MS),
        1 => (2000i64..15_000).prop_map(|ms| ms * MS),
        // Carries the timer wheel over its higher levels.
        1 => prop_oneof![Just(256 * SEC), (1i64..400).prop_map(|d| d * 86_400 * SEC)],
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        16 => msg().prop_map(Op::Append),
        5 => vec(msg(), 1..6).prop_map(Op::Batch),
        1 => (
            0..SUBJECTS.len(),
            0..SUBJECTS.len(),
            20usize..300,
            vec(
                prop_oneof![
                    Just(None),
                    (1u64..=20).prop_map(|s| Some(Ttl::Secs(s))),
                    Just(Some(Ttl::Never))
                ],
                1..4
            ),
        )
            .prop_map(|(main, other, n, ttls)| Op::Bulk {
                main,
                other,
                n,
                ttls
            }),
        8 => advance().prop_map(Op::Advance),
        8 => Just(Op::ExpireNow),
        4 => pick().prop_map(Op::Remove),
        1 => pick().prop_map(Op::Erase),
        3 => by_subject::purge(PURGE_FILTERS.len(), 0.5).prop_map(Op::PurgeFiltered),
        1 => pick().prop_map(Op::Compact),
        1 => prop_oneof![Just(0u64), 1u64..4, 1000u64..1050, 2000u64..5000]
            .prop_map(Op::CompactPast),
        1 => pick().prop_map(Op::Truncate),
        1 => Just(Op::Purge),
        3 => prop_oneof![
            8 => limits(),
            1 => Just(Limits { max_msgs_per_subject: Some(0), ..Limits::default() }),
        ]
        .prop_map(Op::UpdateLimits),
        1 => Just(Op::Checkpoint),
        2 => Just(Op::Restart),
        2 => Just(Op::Crash),
    ]
}

fn setup(memory: bool) -> impl Strategy<Value = Setup> {
    (
        proptest::option::weighted(0.75, 1u64..=10),
        any::<bool>(),
        prop_oneof![1 => Just(Limits::default()), 2 => limits()],
        4096u64..16384,
    )
        .prop_map(move |(marker_ttl, removal, limits, block_size)| Setup {
            memory,
            block_size,
            marker_ttl,
            // Removal markers need a marker TTL.
            removal_markers: removal && marker_ttl.is_some(),
            limits,
        })
}

fn run(setup: Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(setup);
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
    #![proptest_config(common::model_config(1000))]

    /// Every invariant of this file on a file stream with durable acknowledgements.
    #[test]
    fn ttl_and_markers_match_model_on_file_stream(
        setup in setup(false),
        ops in vec(op(), 1..80),
    ) {
        run(setup, &ops)?;
    }

    /// The same checks on a memory stream (no restarts or power losses: it does not outlive
    /// its store).
    #[test]
    fn ttl_and_markers_match_model_on_memory_stream(
        setup in setup(true),
        ops in vec(op(), 1..80),
    ) {
        run(setup, &ops)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic cases
// ---------------------------------------------------------------------------------------------

fn ok(r: Result<(), TestCaseError>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

fn put(subject: usize, ttl: Option<Ttl>) -> TtlMsg {
    TtlMsg {
        msg: GenMsg {
            subject,
            headers: Vec::new(),
            payload: vec![subject as u8],
        },
        ttl,
    }
}

/// `acked-survives-power-loss` for timers: a power loss after any prefix of a history of
/// appends, checkpoints, passes and a restart loses no timer and adds none; after reopen every
/// message (markers included) expires in exactly its second, checked by stepping the clock a
/// quarter second at a time with a pass after each step.
#[test]
fn ttl_expiry_restored_after_crash() {
    let secs = |s| Some(Ttl::Secs(s));
    let script = vec![
        Op::Append(put(0, secs(3))),
        Op::Append(put(1, secs(1))),
        Op::Advance(300 * MS),
        Op::Append(put(2, Some(Ttl::Never))),
        Op::Append(put(0, None)),
        Op::Checkpoint,
        Op::Advance(700 * MS),
        Op::Batch(vec![put(1, secs(5)), put(4, secs(2)), put(3, secs(9))]),
        Op::ExpireNow,
        Op::Advance(1200 * MS),
        Op::Append(put(4, secs(4))),
        Op::Checkpoint,
        Op::Advance(900 * MS),
        Op::ExpireNow,
        Op::Append(put(0, secs(12))),
        Op::Restart,
        Op::Advance(400 * MS),
        Op::Append(put(1, secs(6))),
        Op::Advance(2 * SEC),
        Op::ExpireNow,
        Op::Append(put(3, secs(MAX_TTL_SECS))),
    ];
    let setups = [
        // Markers, which carry timers of their own.
        Setup {
            memory: false,
            block_size: 4096,
            marker_ttl: Some(2),
            removal_markers: false,
            limits: Limits::default(),
        },
        // No raise to a marker TTL, and max_age removing the messages without one.
        Setup {
            memory: false,
            block_size: 4096,
            marker_ttl: None,
            removal_markers: false,
            limits: Limits {
                max_age: Some(Duration::from_secs(10)),
                ..Limits::default()
            },
        },
    ];
    for setup in setups {
        for k in 0..=script.len() {
            let mut h = Harness::new(setup);
            for op in &script[..k] {
                ok(h.step(op));
            }
            ok(h.step(&Op::Crash));
            for _ in 0..100 {
                ok(h.step(&Op::Advance(SEC / 4)));
                ok(h.step(&Op::ExpireNow));
            }
            // The stream agreed with the model at every quarter second; this makes sure the
            // model did reach the end: only what never expires (or is not due for a century)
            // is left.
            let left: Vec<String> = h
                .model
                .msgs
                .values()
                .filter(|m| m.ttl != Some(Ttl::Never) && m.ttl != Some(Ttl::Secs(MAX_TTL_SECS)))
                .filter(|m| setup.limits.max_age.is_some() || m.ttl.is_some())
                .map(Msg::describe)
                .collect();
            assert!(left.is_empty(), "crash after {k} steps: left {left:?}");
            ok(h.finish());
        }
    }
}

/// A stream without `allow_msg_ttl` refuses any TTL, valid or not, single or in a batch, on
/// both append paths, and stores nothing.
#[test]
fn ttl_not_allowed_without_allow_msg_ttl() {
    let opts = common::store_options(Some(Arc::new(ManualClock::new(START_NS))));
    let store = Store::open_with_vfs(DIR, Arc::new(MemVfs::new()), opts).expect("open");
    for (name, storage) in [("file", Storage::File), ("mem", Storage::Memory)] {
        let s = store
            .create_stream(
                StreamConfig::new(name)
                    .storage(storage)
                    .durability(Durability::Always),
            )
            .expect("create stream");
        for ttl in [Ttl::Secs(5), Ttl::Never, Ttl::Secs(0), Ttl::Secs(u64::MAX)] {
            let m = NewMessage::new("a", b"x").with_ttl(ttl);
            assert!(
                matches!(s.append_msg(&m), Err(AppendError::TtlNotAllowed)),
                "{name} {ttl:?}"
            );
            let batch = [NewMessage::new("a", b"x"), m];
            assert!(
                matches!(s.append_batch(&batch), Err(AppendError::TtlNotAllowed)),
                "{name} batch {ttl:?}"
            );
        }
        let st = s.state();
        assert_eq!((st.messages, st.last_seq), (0, 0), "{name}");
        let a = s
            .append_msg(&NewMessage::new("a", b"x"))
            .expect("append without a TTL");
        assert_eq!(a.seq, 1);
        assert_eq!(s.load(1).expect("load").ttl, None);
        s.check_invariants().expect("invariants");
    }
}
