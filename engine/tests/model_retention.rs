//! Model-based property tests of consumers under every retention policy (`Retention::Limits`,
//! `Interest` and `WorkQueue`) on a file stream with durable appends (`Durability::Always`), on
//! an in-memory disk that is restarted and crashed. Random sequences of appends, consumer
//! creation (random filters, deliver and ack policies; on a work queue overlapping, ack-none,
//! ack-all and not-from-the-start ones too) and deletion, fetches with and without byte
//! bounds, ack / nak (with and without delay) / term / in_progress, stream removals (remove,
//! erase, purge, purge_filtered, compact), clock moves past ack waits, `Consumer::save_now`,
//! clean restarts, crashes between operations (process or power loss, with or without saving
//! every consumer and syncing first), crashes at an I/O inside an operation (`save_now`,
//! `create_consumer`, `delete_consumer`, an append or a batch, a fetch, an ack / nak / term /
//! in_progress), and a full disk at an I/O inside an append, a fetch or an ack (its release
//! then fails) followed, with or without saving every consumer, by a crash; with up to three
//! consumers (explicit, ack-all and ack-none; small max_deliver and max_ack_pending among
//! them), run against the engine and against a plain model of the documented rules (doc
//! comments of `consumer.rs`, `retention.rs` and `config.rs`, docs/durability.md "Consumers",
//! docs/architecture.md "Consumers"), on a hand-moved clock. The store does no upkeep of its
//! own (manual maintenance), so a consumer is saved exactly at its creation, at `save_now` and
//! at a clean close, and the model knows every saved state.
//!
//! Invariants checked:
//! - `ops-equal-model`: every operation returns what the model computes: deliveries (sequence,
//!   content, timestamp, delivery count, delivery sequence, in order), `Done` / `NotPending` of
//!   acks, naks, terms and in_progress, counts of removals, the typed errors of consumer
//!   creation (`AlreadyExists`, and the work queue's `Config(InvalidLimit)`) and deletion
//!   (`NotFound`), and `Deleted` from the handle of a deleted consumer (its fetch and its
//!   `save_now`, which must not bring it back). An ack or a fetch returns its outcome even
//!   when the release it causes fails (a crash or a full disk): the next open catches up.
//! - `state-equals-model`: after every step, the full `ConsumerState` of every consumer equals
//!   the model's, and the stream has exactly the model's consumers.
//! - `stream-equals-model`: after every step, the stream holds exactly the model's messages
//!   (counters, and every message read back as stored).
//! - `interest-keeps-only-needed` (Interest): a message stays exactly while some consumer needs
//!   it (is interested in it and not done with it): its filter matches, it is after the
//!   consumer's start, and the consumer has not delivered it yet, or it is pending, or past
//!   max_deliver without an ack (field failure 2); a delivery to an ack-none consumer is its
//!   acknowledgement. So a message no consumer is interested in (filter or start) goes at its
//!   append, an ack, term or ack-none fetch releases what no other consumer needs, deleting a
//!   consumer releases exactly what only it held, and creating consumers, tracked fetches,
//!   naks, reads, clock moves and clean restarts release nothing.
//! - `work-queue-removes-on-ack` (WorkQueue): a message goes at its acknowledgement (ack or
//!   term) by the consumer matching it, and nothing else removes: appends keep messages no
//!   consumer matches, and deleting a consumer keeps its pending and undelivered messages for
//!   the next consumer.
//! - `work-queue-rejects-invalid`: creating a consumer that does not ack explicitly, does not
//!   deliver all, or whose filters overlap another's returns
//!   `ConsumerError::Config(ConfigError::InvalidLimit { name: "ack" | "deliver" | "filters", .. })`
//!   and changes nothing (consumers, their states, the stream; nor after a later restart).
//! - `restart-keeps-all`: after a clean restart every consumer is back with its config and
//!   exactly its state, and no consumer file is damaged.
//! - `crash-restores-last-save`: after a crash every consumer is exactly as it was at its last
//!   save, less the messages the stream no longer has (so acknowledgements since then are
//!   lost and delivered again, but nothing removed comes back or is pending again). An
//!   operation cut by a crash (or a full disk) is undone or completed (told apart by the
//!   consumer file, or the stream's last sequence), never half, and completed whenever it
//!   returned `Ok`; the release retention made for it is logged whole or not at all.
//! - `open-rechecks-retention` (Interest, WorkQueue): every open (restart, crash recovery)
//!   then removes every message the rules above let go under the restored consumers: one a
//!   crash left between a consumer file's removal or an append and its release, or one
//!   acknowledged in a saved consumer whose release failed.
//! - `crash-floor-bounded`: after a crash each ack floor is at least the saved one and at most
//!   the one before the crash: it never passes a message that was not acknowledged.
//! - `acked-survives-crash`: after a crash the stream holds exactly the model's messages: every
//!   append is there, every removal (by the stream or by retention) stays done.
//!
//! The regression tests at the end pin, on small fixed histories, rules the model covers
//! (several were engine bugs the model found). `TIDELOG_MODEL_CASES` sets the number of cases,
//! `TIDELOG_MODEL_TRACE` prints every case (with counts of what happened in it).

#[allow(dead_code)]
mod common;

use common::by_subject;
use common::consumer_model::{
    self, advance, apick, c_out, fetch_out, APick, AckKind, AppendOp, CModel, Fetch, Log, Out,
    Removal, MS, SEC, START_NS,
};
use common::{pick, Db, GenMsg};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use tidelog::io::CrashKind;
use tidelog::{
    AckOutcome, AckPolicy, ConfigError, Consumer, ConsumerConfig, ConsumerError, ConsumerState,
    DeliverPolicy, Delivery, Durability, ManualClock, Retention, SeqPair, Stream, StreamConfig,
};

const NAME: &str = "ret";
const SLOTS: usize = 3;
const SUBJECTS: [&str; 6] = ["a", "b", "c.x", "c.y", "d.x", "e"];
/// Consumer filter sets (none overlaps within a set; many are disjoint from one another, so a
/// work queue can have several consumers).
const FILTER_SETS: [&[&str]; 13] = [
    &[],
    &[">"],
    &["a"],
    &["b"],
    &["c.*"],
    &["c.x"],
    &["c.y"],
    &["d.>"],
    &["a", "c.>"],
    &["b", "d.*"],
    &["*"],
    &["e", "c.y"],
    &["e"],
];
/// Filters `purge_filtered` is given.
const PURGE_FILTERS: [&str; 7] = [">", "a", "c.*", "b", "d.x", "*", "e"];

fn cname(k: usize) -> String {
    format!("c{k}")
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// A generated consumer config; on a work queue, `wq_valid` ones are made explicit-ack and
/// deliver-all (else as generated, so mostly refused).
#[derive(Clone, Debug)]
struct CfgGen {
    base: consumer_model::CfgGen,
    wq_valid: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Append(AppendOp),
    /// Creates the slot's consumer (an error when the slot has one, or on a work queue when
    /// the filters overlap another consumer's).
    Create(usize, CfgGen),
    /// Deletes the slot's consumer (`NotFound` when there is none).
    Delete(usize),
    Fetch(Fetch),
    Ack(usize, AckKind, APick),
    Advance(i64),
    /// A removal from the stream.
    Removal(Removal),
    SaveNow(usize),
    Restart,
    /// With `save_first`, every consumer is saved (`save_now`) and the stream synced first.
    Crash {
        kind: CrashKind,
        save_first: bool,
    },
    /// An operation cut at its `after`-th I/O, then a crash (of `kind`).
    CrashDuring {
        op: CrashOp,
        after: u64,
        cut: Cut,
        kind: CrashKind,
    },
}

/// How an operation is cut at an I/O.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The process dies there.
    Crash,
    /// The disk is full there (that I/O fails, and only it; the stream is then poisoned), and
    /// the process dies after the operation, having saved every consumer with `save_all`.
    /// Appends, fetches and acks only (a crash otherwise).
    NoSpace { save_all: bool },
}

/// An operation a crash may interrupt: one that writes a consumer file, or one that writes
/// the log and may release messages by retention.
#[derive(Clone, Debug)]
enum CrashOp {
    SaveNow(usize),
    Create(usize, CfgGen),
    Delete(usize),
    Append(AppendOp),
    Fetch(Fetch),
    Ack(usize, AckKind, APick),
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------
/// Filters `a` and `b` overlap when some subject matches both (written independently of the
/// engine's `subject::overlaps`).
fn filters_overlap(a: &str, b: &str) -> bool {
    let x: Vec<&str> = a.split('.').collect();
    let y: Vec<&str> = b.split('.').collect();
    for i in 0.. {
        match (x.get(i), y.get(i)) {
            (Some(&">"), Some(_)) | (Some(_), Some(&">")) => return true,
            (Some(p), Some(q)) if *p == "*" || *q == "*" || p == q => {}
            (Some(_), Some(_)) => return false,
            (None, None) => return true,
            _ => return false,
        }
    }
    unreachable!()
}

fn match_filters(cfg: &ConsumerConfig) -> Vec<String> {
    if cfg.filters.is_empty() {
        vec![">".to_owned()]
    } else {
        cfg.filters.clone()
    }
}

/// The stream (its log and consumer slots), under a retention policy.
#[derive(Clone, Debug)]
struct Model {
    log: Log<SLOTS>,
    retention: Retention,
    /// Every consumer as of its last save (what a crash restores).
    saved: [Option<CModel>; SLOTS],
}

impl std::ops::Deref for Model {
    type Target = Log<SLOTS>;

    fn deref(&self) -> &Log<SLOTS> {
        &self.log
    }
}

impl std::ops::DerefMut for Model {
    fn deref_mut(&mut self) -> &mut Log<SLOTS> {
        &mut self.log
    }
}

impl Model {
    fn new(retention: Retention) -> Model {
        Model {
            log: Log::new(),
            retention,
            saved: [None, None, None],
        }
    }

    fn config(&self, g: &CfgGen, name: &str) -> ConsumerConfig {
        let deliver = self.deliver(g.base.deliver);
        // A work queue accepts only explicit acks and delivery from the start: most of its
        // consumers are made so, the others are refused (`work-queue-rejects-invalid`).
        let (ack, deliver) = match self.retention {
            Retention::WorkQueue if g.wq_valid => (AckPolicy::Explicit, DeliverPolicy::All),
            _ => (g.base.ack, deliver),
        };
        g.base.config(name, &FILTER_SETS, deliver, ack)
    }

    /// Why a work queue refuses `cfg` (the `name` of its `InvalidLimit`): it does not ack
    /// explicitly, does not deliver all, or its filters overlap an existing consumer's.
    fn wq_rejects(&self, cfg: &ConsumerConfig) -> Option<&'static str> {
        if self.retention != Retention::WorkQueue {
            return None;
        }
        if cfg.ack != AckPolicy::Explicit {
            return Some("ack");
        }
        if cfg.deliver != DeliverPolicy::All {
            return Some("deliver");
        }
        let mine = match_filters(cfg);
        let overlap = self.cons.iter().flatten().any(|c| {
            match_filters(&c.cfg)
                .iter()
                .any(|g| mine.iter().any(|f| filters_overlap(f, g)))
        });
        overlap.then_some("filters")
    }

    /// After a crash: each consumer comes back as of its last save, less what the stream no
    /// longer has.
    fn restore_saved(&mut self) {
        for k in 0..SLOTS {
            let before = self.cons[k].take();
            let Some(mut c) = self.saved[k].clone() else {
                continue;
            };
            c.reconcile(&self.msgs);
            // Picks keep what it had delivered before the crash.
            c.seen = before.map_or(c.seen, |b| b.seen);
            self.cons[k] = Some(c);
        }
    }

    /// Whether some consumer needs live message `q`.
    fn needed(&self, q: u64) -> bool {
        let s = self.msgs[&q].subject;
        self.cons.iter().flatten().any(|c| c.needs(q, s))
    }

    /// Whether retention lets live message `q` go: no consumer needs it and (work queue) a
    /// consumer matches it, so took it.
    fn unneeded(&self, q: u64) -> bool {
        let s = self.msgs[&q].subject;
        let taken = match self.retention {
            Retention::Limits => return false,
            Retention::Interest => true,
            Retention::WorkQueue => self.cons.iter().flatten().any(|c| c.matches(s)),
        };
        taken && !self.needed(q)
    }

    /// Removes every live message retention lets go (the whole stream looked at: what every
    /// open re-checks); returns them.
    fn gc(&mut self) -> Vec<u64> {
        let gone: Vec<u64> = self
            .msgs
            .keys()
            .copied()
            .filter(|&q| self.unneeded(q))
            .collect();
        self.remove(&gone);
        gone
    }

    /// Applies the retention policy after an operation; `acked` are the messages it
    /// acknowledged or terminated. Interest: every message no consumer needs goes (at an
    /// append, an ack or term, an ack-none fetch, a delete). Work queue: only acknowledged
    /// messages go.
    fn retain(&mut self, acked: &BTreeSet<u64>) -> Vec<u64> {
        match self.retention {
            Retention::Limits => Vec::new(),
            Retention::Interest => self.gc(),
            Retention::WorkQueue => {
                let gone: Vec<u64> = acked
                    .iter()
                    .copied()
                    .filter(|q| self.msgs.contains_key(q) && self.unneeded(*q))
                    .collect();
                self.remove(&gone);
                gone
            }
        }
    }

    fn describe(&self) -> String {
        self.dump(&format!("model ({:?})", self.retention))
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    clock: Arc<ManualClock>,
    db: Db,
    model: Model,
    cons: [Option<Consumer>; SLOTS],
    trace: Vec<String>,
    /// How often interesting things happened (printed with the trace).
    stats: BTreeMap<&'static str, u64>,
}

impl Harness {
    fn new(retention: Retention, block_size: u64) -> Harness {
        let clock = Arc::new(ManualClock::new(START_NS));
        let db = Db::create(
            common::store_options(Some(clock.clone())),
            StreamConfig::new(NAME)
                .block_size(block_size)
                .retention(retention)
                .durability(Durability::Always),
            false,
        );
        Harness {
            clock,
            db,
            model: Model::new(retention),
            cons: [None, None, None],
            trace: Vec::new(),
            stats: BTreeMap::new(),
        }
    }

    fn fail(&self, what: String) -> TestCaseError {
        let mut s = common::failure(&what, &self.trace);
        s.push_str(&self.model.describe());
        TestCaseError::fail(s)
    }

    /// The consumer a fetch, ack or save of `k` goes to: the `k`-th existing one (so few of
    /// them find no consumer).
    fn live_slot(&self, k: usize) -> Option<usize> {
        let live: Vec<usize> = (0..SLOTS).filter(|&i| self.cons[i].is_some()).collect();
        (!live.is_empty()).then(|| live[k % live.len()])
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    fn log(&mut self, what: String) {
        self.trace
            .push(format!("{what} @ +{}ms", (self.model.now - START_NS) / MS));
    }

    /// `ops-equal-model` for one outcome.
    fn expect(&mut self, what: String, want: Out, got: Out) -> Result<(), TestCaseError> {
        self.log(format!("{what} -> {}", got.short()));
        if got != want {
            return Err(self.fail(format!(
                "ops-equal-model: {what} returned {}, model expects {}",
                got.short(),
                want.short()
            )));
        }
        Ok(())
    }

    /// Applies retention in the model after an operation and logs what it removed.
    fn retain(&mut self, acked: &BTreeSet<u64>, why: &'static str) {
        let gone = self.model.retain(acked);
        if !gone.is_empty() {
            self.count(why);
            self.trace
                .push(format!("  (model retention removes {gone:?})"));
        }
    }

    /// `open-rechecks-retention`: every open removes whatever retention lets go.
    fn reopen_gc(&mut self) {
        let gone = self.model.gc();
        if !gone.is_empty() {
            self.count("released at reopen");
            self.trace
                .push(format!("  (model retention at reopen removes {gone:?})"));
        }
    }

    fn check_state(&mut self, k: usize, name: &str) -> Result<(), TestCaseError> {
        let model = &mut self.model;
        consumer_model::check_state(self.cons[k].as_ref(), || model.state(k), k, name)
            .map_err(|e| self.fail(e))
    }

    /// `stream-equals-model`, and the stream's consumers are the model's.
    fn verify_stream(&self, name: &str) -> Result<(), TestCaseError> {
        let s = self.db.stream();
        let st = s.state();
        let want = common::counts(&self.model.msgs, self.model.last_seq);
        let got = common::stream_counts(&st);
        if got != want {
            return Err(self.fail(format!(
                "{name}: (messages, first, last, deleted) {got:?}, model {want:?}"
            )));
        }
        for (q, m) in &self.model.msgs {
            let ok = s.load(*q).is_ok_and(|x| {
                x.subject() == m.subject
                    && x.headers() == m.headers.as_slice()
                    && x.payload() == m.payload.as_slice()
                    && x.ts == m.ts
            });
            if !ok {
                return Err(self.fail(format!("{name}: load({q}) = {:?}, model {m:?}", s.load(*q))));
            }
        }
        let names: Vec<String> = (0..SLOTS)
            .filter(|&k| self.model.cons[k].is_some())
            .map(cname)
            .collect();
        if s.consumer_names() != names {
            return Err(self.fail(format!(
                "state-equals-model: consumers {:?}, model {names:?}",
                s.consumer_names()
            )));
        }
        Ok(())
    }

    fn check_all(&mut self, name: &str) -> Result<(), TestCaseError> {
        let stream_name = if name == "state-equals-model" {
            "stream-equals-model"
        } else {
            name
        };
        self.verify_stream(stream_name)?;
        for k in 0..SLOTS {
            self.check_state(k, name)?;
        }
        Ok(())
    }

    /// Takes fresh handles of every consumer after a reopen, and checks that the reopened
    /// stream has exactly the model's consumers, with their configs, and no damaged one.
    fn rebind(&mut self, name: &str) -> Result<(), TestCaseError> {
        let s = self.db.stream().clone();
        if !s.damaged_consumers().is_empty() {
            return Err(self.fail(format!(
                "{name}: damaged consumers {:?}",
                s.damaged_consumers()
            )));
        }
        for k in 0..SLOTS {
            self.cons[k] = None;
            let Some(m) = &self.model.cons[k] else {
                continue;
            };
            match s.consumer(&cname(k)) {
                Ok(c) if c.config() == &m.cfg => self.cons[k] = Some(c),
                Ok(c) => {
                    return Err(self.fail(format!(
                        "{name}: c{k} config {:?}, model {:?}",
                        c.config(),
                        m.cfg
                    )))
                }
                Err(e) => return Err(self.fail(format!("{name}: consumer(c{k}) = {e:?}"))),
            }
        }
        Ok(())
    }

    fn create(&mut self, k: usize, g: &CfgGen) -> Result<(), TestCaseError> {
        let name = cname(k);
        let cfg = self.model.config(g, &name);
        let exists = self.model.cons[k].is_some();
        let refused = self.model.wq_rejects(&cfg);
        let what = format!(
            "create {name}: filters {:?} {:?} ack {:?} wait {:?} backoff {:?} max_deliver {:?} max_ack_pending {}",
            cfg.filters, cfg.deliver, cfg.ack, cfg.ack_wait, cfg.backoff, cfg.max_deliver, cfg.max_ack_pending
        );
        let got = self.db.stream().create_consumer(cfg.clone());
        self.log(format!(
            "{what} -> {}",
            match &got {
                Ok(_) => "Ok".to_string(),
                Err(e) => format!("{e:?}"),
            }
        ));
        let rejected = |e: &ConsumerError, why: &str| {
            matches!(
                e,
                ConsumerError::Config(ConfigError::InvalidLimit { name, .. }) if *name == why
            )
        };
        match got {
            Ok(c) if !exists && refused.is_none() => {
                self.cons[k] = Some(c);
                let m = self.model.create(cfg);
                // Saved at creation.
                self.model.saved[k] = Some(m.clone());
                self.model.cons[k] = Some(m);
                Ok(())
            }
            Err(ConsumerError::AlreadyExists(n)) if exists && n == name => Ok(()),
            // `work-queue-rejects-invalid`; the checks after the step show nothing changed.
            Err(e) if !exists && refused.is_some_and(|why| rejected(&e, why)) => {
                self.count(match refused {
                    Some("filters") => "work-queue overlap rejected",
                    Some("ack") => "work-queue ack policy rejected",
                    _ => "work-queue deliver policy rejected",
                });
                Ok(())
            }
            other => Err(self.fail(format!(
                "ops-equal-model: create_consumer({name}) = {:?}, model expects {}",
                other.map(|_| ()),
                match (exists, refused) {
                    (true, _) => "AlreadyExists".to_string(),
                    (false, Some(why)) => format!("Config(InvalidLimit {why})"),
                    (false, None) => "Ok".to_string(),
                }
            ))),
        }
    }

    fn delete(&mut self, k: usize) -> Result<(), TestCaseError> {
        let name = cname(k);
        let got = self.db.stream().delete_consumer(&name);
        self.log(format!("delete {name} -> {got:?}"));
        if self.model.cons[k].take().is_none() {
            return match got {
                Err(ConsumerError::NotFound(n)) if n == name => Ok(()),
                other => Err(self.fail(format!(
                    "ops-equal-model: delete_consumer({name}) = {other:?}, model expects NotFound"
                ))),
            };
        };
        if let Err(e) = got {
            return Err(self.fail(format!("delete_consumer({name}) = {e:?}")));
        }
        let old = self.cons[k].take().expect("handle");
        if !matches!(old.fetch(1, 0), Err(ConsumerError::Deleted(_))) {
            return Err(self.fail(format!("deleted {name}: fetch did not say Deleted")));
        }
        // Nor may a save bring it back at the next open.
        if !matches!(old.save_now(), Err(ConsumerError::Deleted(_))) {
            return Err(self.fail(format!("deleted {name}: save_now did not say Deleted")));
        }
        self.model.saved[k] = None;
        // Interest: what only it held goes. Work queue: nothing goes (its work waits).
        self.retain(&BTreeSet::new(), "released by delete");
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let s = self.db.stream().clone();
        match op {
            Op::Append(a) => {
                let got = a.run(&s, &SUBJECTS);
                let (what, want) = a.model(&mut self.model, &SUBJECTS);
                self.expect(what, want, got)?;
                self.retain(&BTreeSet::new(), "dropped at append");
            }
            Op::Create(k, g) => self.create(*k, g)?,
            Op::Delete(k) => self.delete(*k)?,
            Op::Fetch(Fetch {
                slot,
                max_msgs,
                max_bytes,
            }) => {
                let Some(slot) = &self.live_slot(*slot) else {
                    return Ok(());
                };
                let c = self.cons[*slot].clone().expect("live");
                let what = format!("c{slot}.fetch({max_msgs}, {max_bytes})");
                let got = fetch_out(&c, *max_msgs, *max_bytes);
                let exhausted = self.model.cons[*slot]
                    .as_ref()
                    .map(|c| c.max_delivered.len());
                let gs = self.model.fetch(*slot, *max_msgs, *max_bytes);
                if gs.iter().any(|g| g.count > 1) {
                    self.count("redelivered");
                }
                if self.model.cons[*slot]
                    .as_ref()
                    .map(|c| c.max_delivered.len())
                    > exhausted
                {
                    self.count("max delivered");
                }
                self.expect(what, Out::Fetched(gs), got)?;
                self.retain(&BTreeSet::new(), "released by fetch");
            }
            Op::Ack(slot, kind, p) => {
                let Some(slot) = &self.live_slot(*slot) else {
                    return Ok(());
                };
                let c = self.cons[*slot].clone().expect("live");
                let q = self.model.ack_seq(*slot, *p);
                let what = kind.describe(*slot, q);
                let got = c_out(kind.call(&c, q));
                let (want, acked) = self.model.ack(*slot, *kind, q);
                self.expect(what, Out::Ack(want), got)?;
                if want == AckOutcome::Done {
                    self.count(match kind {
                        AckKind::Ack => "ack done",
                        AckKind::Nak(_) => "nak done",
                        AckKind::Term => "term done",
                        AckKind::InProgress => "in_progress done",
                    });
                }
                self.retain(&acked, "released by ack");
            }
            Op::Advance(d) => {
                self.clock.advance_ns(*d);
                self.model.now += d;
                self.log(format!("advance({}ms)", d / MS));
            }
            Op::Removal(r) => {
                let m = &self.model;
                let (what, want, gone, got) =
                    consumer_model::removal(r, &m.msgs, m.last_seq, &PURGE_FILTERS, &s);
                let ok = want == got;
                self.expect(what, want, got)?;
                if ok {
                    if let Removal::Compact(p) = r {
                        let q = self.model.pick(*p);
                        let m = &mut self.model.log;
                        common::compact_log(&mut m.msgs, &mut m.last_seq, q);
                    }
                    self.model.remove(&gone);
                }
                self.retain(&BTreeSet::new(), "released by removal");
            }
            Op::SaveNow(k) => {
                let Some(k) = &self.live_slot(*k) else {
                    return Ok(());
                };
                let c = self.cons[*k].clone().expect("live");
                let got = c.save_now();
                self.log(format!("c{k}.save_now() -> {got:?}"));
                if let Err(e) = got {
                    return Err(self.fail(format!("c{k}.save_now() = {e:?}")));
                }
                self.model.saved[*k] = self.model.cons[*k].clone();
            }
            Op::Restart => {
                self.log("restart".into());
                if let Err(e) = self.db.restart() {
                    return Err(self.fail(format!("restart: {e}")));
                }
                // Every consumer is saved at close.
                self.model.saved = self.model.cons.clone();
                self.rebind("restart-keeps-all")?;
                self.reopen_gc();
                return self.check_all("restart-keeps-all");
            }
            Op::Crash { kind, save_first } => return self.crash(*kind, *save_first),
            Op::CrashDuring {
                op,
                after,
                cut,
                kind,
            } => return self.crash_during(op, *after, *cut, *kind),
        }
        self.check_all("state-equals-model")
    }

    /// A crash inside an operation: afterwards the stream is as if the operation never
    /// happened or as if it completed (and its consumer file was saved), and only the latter
    /// if it returned `Ok`; the messages retention released for it (logged after it, in one
    /// batch) are all gone or all there; every consumer is as of its last save; and then
    /// whatever retention lets go is removed (every open re-checks). A release the crash cut
    /// off is no failure of the call (an ack or a fetch returns its outcome regardless).
    fn crash_during(
        &mut self,
        op: &CrashOp,
        after: u64,
        cut: Cut,
        kind: CrashKind,
    ) -> Result<(), TestCaseError> {
        let s = self.db.stream().clone();
        let mut done = self.model.clone();
        let cut = match op {
            CrashOp::SaveNow(_) | CrashOp::Create(..) | CrashOp::Delete(_) => Cut::Crash,
            _ => cut,
        };
        // How a failed call is told completed after the crash (its release aside).
        enum Tell {
            /// The consumer file changed.
            Saved(usize, Option<Vec<u8>>),
            Present(usize),
            Absent(usize),
            /// The stream's last sequence reached it.
            LastSeq(u64),
            /// Nothing of it but its release outlives a crash (an ack, a fetch).
            InMemory,
        }
        // The consumer file as of the last save: a save the crash interrupted left it as it was.
        let file = |db: &Db, k: usize| {
            let path = std::path::Path::new(common::DIR)
                .join("streams")
                .join(NAME)
                .join(format!("consumer.{}", cname(k)));
            tidelog::io::read_file(&db.fv, &path).ok()
        };
        // What it acknowledged (retention looks at those on a work queue).
        let mut acked = BTreeSet::new();
        // `always`: the call returns `want` whatever the crash does to its releases.
        type Run = Box<dyn FnOnce() -> Out>;
        let unit = |r: Result<(), ConsumerError>| match r {
            Ok(()) => Out::Unit,
            Err(e) => Out::Err(format!("{e:?}")),
        };
        let (what, run, tell, want, always): (String, Run, Tell, Out, bool) = match op {
            CrashOp::SaveNow(k) => {
                let Some(k) = self.live_slot(*k) else {
                    return Ok(());
                };
                done.saved[k] = done.cons[k].clone();
                let c = self.cons[k].clone().expect("live");
                (
                    format!("c{k}.save_now()"),
                    Box::new(move || unit(c.save_now())),
                    Tell::Saved(k, file(&self.db, k)),
                    Out::Unit,
                    false,
                )
            }
            CrashOp::Create(k, g) => {
                let cfg = self.model.config(g, &cname(*k));
                if self.model.cons[*k].is_some() || self.model.wq_rejects(&cfg).is_some() {
                    return Ok(());
                }
                let m = done.create(cfg.clone());
                done.saved[*k] = Some(m.clone());
                done.cons[*k] = Some(m);
                (
                    format!("create c{k}: {cfg:?}"),
                    Box::new(move || unit(s.create_consumer(cfg).map(|_| ()))),
                    Tell::Present(*k),
                    Out::Unit,
                    false,
                )
            }
            CrashOp::Delete(k) => {
                if done.cons[*k].take().is_none() {
                    return Ok(());
                }
                done.saved[*k] = None;
                let name = cname(*k);
                (
                    format!("delete {name}"),
                    Box::new(move || unit(s.delete_consumer(&name))),
                    Tell::Absent(*k),
                    Out::Unit,
                    false,
                )
            }
            CrashOp::Append(a) => {
                let (what, want) = a.model(&mut done, &SUBJECTS);
                let a = a.clone();
                (
                    what,
                    Box::new(move || a.run(&s, &SUBJECTS)),
                    Tell::LastSeq(done.last_seq),
                    want,
                    false,
                )
            }
            CrashOp::Fetch(Fetch {
                slot,
                max_msgs,
                max_bytes,
            }) => {
                let Some(k) = self.live_slot(*slot) else {
                    return Ok(());
                };
                let gs = done.fetch(k, *max_msgs, *max_bytes);
                let c = self.cons[k].clone().expect("live");
                let (m, b) = (*max_msgs, *max_bytes);
                (
                    format!("c{k}.fetch({m}, {b})"),
                    Box::new(move || fetch_out(&c, m, b)),
                    Tell::InMemory,
                    Out::Fetched(gs),
                    true,
                )
            }
            CrashOp::Ack(slot, ak, p) => {
                let Some(k) = self.live_slot(*slot) else {
                    return Ok(());
                };
                let q = done.ack_seq(k, *p);
                let out;
                (out, acked) = done.ack(k, *ak, q);
                let c = self.cons[k].clone().expect("live");
                let ak = *ak;
                (
                    ak.describe(k, q),
                    Box::new(move || c_out(ak.call(&c, q))),
                    Tell::InMemory,
                    Out::Ack(out),
                    true,
                )
            }
        };
        // What retention releases for it.
        let gone = done.clone().retain(&acked);
        if !gone.is_empty() {
            self.count(match op {
                CrashOp::Delete(_) => "crash inside a releasing delete",
                CrashOp::Append(_) => "crash inside a dropping append",
                CrashOp::Fetch(_) => "crash inside a releasing fetch",
                _ => "crash inside a releasing ack",
            });
        }
        // The ack floors just before the crash if the operation completed.
        for k in 0..SLOTS {
            if done.cons[k].is_some() {
                done.state(k);
            }
        }
        let fault = match cut {
            Cut::Crash => tidelog::io::Fault::Crash,
            Cut::NoSpace { .. } => tidelog::io::Fault::NoSpace,
        };
        *self.db.fv.plan().lock() = tidelog::io::FaultPlan::at(after, fault);
        let got = run();
        *self.db.fv.plan().lock() = tidelog::io::FaultPlan::new();
        self.log(format!(
            "{what} with {} at its I/O #{after} -> {}",
            match cut {
                Cut::Crash => format!("a {kind:?} crash"),
                Cut::NoSpace { .. } => "a full disk".into(),
            },
            got.short()
        ));
        let failed = matches!(got, Out::Err(_));
        if (always || !failed) && got != want {
            return Err(self.fail(format!(
                "ops-equal-model: {what} (cut at its I/O #{after}) returned {}, model expects {}",
                got.short(),
                want.short()
            )));
        }
        if let Cut::NoSpace { save_all: true } = cut {
            // What the operation did to consumers is saved (appends change none of them).
            for k in self.save_all(" after a full disk")? {
                done.saved[k] = done.cons[k].clone();
            }
            self.log("save_now() of every consumer".into());
        }
        self.log(format!("crash({kind:?})"));
        if let Err(e) = self.db.crash(kind) {
            return Err(self.fail(format!("reopen after crash: {e}")));
        }
        let s = self.db.stream().clone();
        let present = |k: usize| s.consumer_names().contains(&cname(k));
        let completed = !failed
            || match &tell {
                Tell::Saved(k, before) => file(&self.db, *k) != *before,
                Tell::Present(k) => present(*k),
                Tell::Absent(k) => !present(*k),
                Tell::LastSeq(q) => s.state().last_seq >= *q,
                Tell::InMemory => true,
            };
        // The release was logged if its messages are all gone and the re-check at open would
        // not have removed them all anyway (then the model leaves them to the re-check). A
        // partial release is caught by the checks below.
        let released = completed && gone.iter().all(|q| s.load(*q).is_err()) && {
            let mut kept = done.clone();
            kept.restore_saved();
            kept.gc();
            gone.iter().any(|q| kept.msgs.contains_key(q))
        };
        self.count(match (failed, completed) {
            (false, _) => "crash after an operation",
            (true, true) => "crash inside an operation, completed",
            (true, false) => "crash inside an operation, undone",
        });
        if completed && !gone.is_empty() {
            self.count(if released {
                "crash kept the release"
            } else {
                "crash lost the release (or the re-check redid it)"
            });
        }
        self.log(format!(
            "  (the crash left it {}{})",
            if completed { "completed" } else { "undone" },
            match (gone.is_empty() || !completed, released) {
                (true, _) => String::new(),
                (false, true) => format!(", release of {gone:?} logged"),
                (false, false) => format!(", release of {gone:?} lost or redone at open"),
            }
        ));
        if released {
            done.remove(&gone);
        }
        let before = if completed {
            done.cons.clone()
        } else {
            self.model.cons.clone()
        };
        if completed {
            self.model = done;
        }
        self.model.restore_saved();
        self.rebind("crash-restores-last-save")?;
        self.check_floor_bounded(&before)?;
        self.reopen_gc();
        self.check_all("crash-restores-last-save")
    }

    /// `crash-floor-bounded`, on the engine's own answer: every ack floor after the crash lies
    /// between the saved one and the one before the crash.
    fn check_floor_bounded(
        &mut self,
        before: &[Option<CModel>; SLOTS],
    ) -> Result<(), TestCaseError> {
        for (k, b) in before.iter().enumerate() {
            let (Some(c), Some(b)) = (self.cons[k].clone(), b) else {
                continue;
            };
            let saved = self.model.saved[k].as_ref().expect("saved").floor;
            let current = b.floor;
            match c.state() {
                Ok(st) if (saved..=current).contains(&st.ack_floor.stream_seq) => {}
                other => {
                    return Err(self.fail(format!(
                        "crash-floor-bounded: c{k}.state() = {other:?}, saved floor {saved}, floor before the crash {current}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Saves every consumer (`save_now`), as the model does; returns the slots saved. `when`
    /// goes into the failure message.
    fn save_all(&mut self, when: &str) -> Result<Vec<usize>, TestCaseError> {
        let mut saved = Vec::new();
        for k in 0..SLOTS {
            let Some(c) = self.cons[k].clone() else {
                continue;
            };
            if let Err(e) = c.save_now() {
                return Err(self.fail(format!("c{k}.save_now(){when} = {e:?}")));
            }
            self.model.saved[k] = self.model.cons[k].clone();
            saved.push(k);
        }
        Ok(saved)
    }

    fn crash(&mut self, kind: CrashKind, save_first: bool) -> Result<(), TestCaseError> {
        if save_first {
            self.save_all("")?;
            if let Err(e) = self.db.stream().sync() {
                return Err(self.fail(format!("sync: {e:?}")));
            }
        }
        self.log(format!(
            "crash({kind:?}){}",
            if save_first {
                " after save_now of all and sync"
            } else {
                ""
            }
        ));
        let before = self.model.cons.clone();
        let rolled_back = (0..SLOTS).any(|k| {
            let key = |c: &Option<CModel>| {
                c.as_ref().map(|c| {
                    (
                        c.next,
                        c.dseq,
                        c.pending.keys().copied().collect::<Vec<_>>(),
                        c.max_delivered.clone(),
                    )
                })
            };
            key(&self.model.saved[k]) != key(&before[k])
        });
        self.count(if rolled_back {
            "crash rolling consumers back"
        } else {
            "crash"
        });
        if let Err(e) = self.db.crash(kind) {
            return Err(self.fail(format!("reopen after crash: {e}")));
        }
        self.model.restore_saved();
        self.rebind("crash-restores-last-save")?;
        self.check_floor_bounded(&before)?;
        self.reopen_gc();
        self.verify_stream("acked-survives-crash")?;
        self.check_all("crash-restores-last-save")
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn cfg_gen() -> impl Strategy<Value = CfgGen> {
    (
        consumer_model::cfg_gen(
            FILTER_SETS.len(),
            consumer_model::dgen(5),
            1u64..=6,
            prop_oneof![2 => Just(Vec::new()), 1 => vec(1u64..=6, 1..4)],
            proptest::option::weighted(0.5, prop_oneof![3 => 1u64..=3, 1 => 4u64..=5]),
            prop_oneof![1 => 1u64..=3, 2 => 1u64..=20],
        ),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(base, wq_valid)| CfgGen { base, wq_valid })
}

fn gen_msg() -> impl Strategy<Value = GenMsg> {
    consumer_model::gen_msg(SUBJECTS.len())
}

fn append_op() -> impl Strategy<Value = AppendOp> {
    prop_oneof![
        6 => gen_msg().prop_map(AppendOp::One),
        1 => (0..SUBJECTS.len(), 2usize..12).prop_map(|(s, n)| AppendOp::Batch(s, n)),
    ]
}

fn ack_kind() -> impl Strategy<Value = AckKind> {
    consumer_model::ack_kind(10, 2)
}

fn op() -> impl Strategy<Value = Op> {
    let slot = prop_oneof![3 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize)];
    prop_oneof![
        14 => append_op().prop_map(Op::Append),
        3 => (slot.clone(), cfg_gen()).prop_map(|(s, g)| Op::Create(s, g)),
        1 => slot.clone().prop_map(Op::Delete),
        14 => consumer_model::fetch(slot.clone(), 2).prop_map(Op::Fetch),
        18 => (slot.clone(), ack_kind(), apick()).prop_map(|(s, k, p)| Op::Ack(s, k, p)),
        6 => advance().prop_map(Op::Advance),
        2 => pick().prop_map(Removal::Remove).prop_map(Op::Removal),
        1 => pick().prop_map(Removal::Erase).prop_map(Op::Removal),
        1 => Just(Op::Removal(Removal::Purge)),
        1 => pick().prop_map(Removal::Compact).prop_map(Op::Removal),
        1 => by_subject::purge(PURGE_FILTERS.len(), 0.5).prop_map(Removal::PurgeFiltered).prop_map(Op::Removal),
        2 => slot.prop_map(Op::SaveNow),
        1 => Just(Op::Restart),
        2 => (
            prop_oneof![Just(CrashKind::Process), Just(CrashKind::PowerLoss)],
            prop::bool::weighted(0.3),
        )
            .prop_map(|(kind, save_first)| Op::Crash { kind, save_first }),
        2 => (
            prop_oneof![
                2 => any::<usize>().prop_map(CrashOp::SaveNow),
                1 => (0..SLOTS, cfg_gen()).prop_map(|(k, g)| CrashOp::Create(k, g)),
                1 => (0..SLOTS).prop_map(CrashOp::Delete),
                2 => append_op().prop_map(CrashOp::Append),
                2 => consumer_model::fetch(any::<usize>(), 1).prop_map(CrashOp::Fetch),
                2 => (any::<usize>(), ack_kind(), apick())
                    .prop_map(|(s, k, p)| CrashOp::Ack(s, k, p)),
            ],
            0u64..7,
            prop_oneof![Just(CrashKind::Process), Just(CrashKind::PowerLoss)],
            prop_oneof![
                3 => Just(Cut::Crash),
                1 => prop::bool::weighted(0.7).prop_map(|save_all| Cut::NoSpace { save_all }),
            ],
        )
            .prop_map(|(op, after, kind, cut)| Op::CrashDuring {
                op,
                after,
                cut,
                kind
            }),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    retention: Retention,
    block_size: u64,
    /// Consumers created before the first operation.
    first: Vec<(usize, CfgGen)>,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            1 => Just(Retention::Limits),
            2 => Just(Retention::Interest),
            2 => Just(Retention::WorkQueue),
        ],
        4096u64..12_000,
        vec((0usize..SLOTS, cfg_gen()), 1..4),
        vec(op(), 1..200),
    )
        .prop_map(|(retention, block_size, first, ops)| Case {
            retention,
            block_size,
            first,
            ops,
        })
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let mut h = Harness::new(case.retention, case.block_size);
    for (k, g) in &case.first {
        h.step(&Op::Create(*k, g.clone()))?;
    }
    for op in &case.ops {
        h.step(op)?;
    }
    // Everything survives a last clean restart.
    h.step(&Op::Restart)?;
    h.trace
        .push(format!("stats {:?}: {:?}", case.retention, h.stats));
    common::print_trace(&h.trace);
    Ok(())
}

// The default runs in about four seconds; `TIDELOG_MODEL_CASES=20000` takes about 45 seconds.
proptest! {
    #![proptest_config(common::model_config(2000))]

    /// Every invariant of this file, under each retention policy.
    #[test]
    fn consumers_under_retention_match_model(case in case()) {
        run(&case)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions
// ---------------------------------------------------------------------------------------------

/// A file stream with `retention` on a fresh disk, with a manual clock.
fn fixture(retention: Retention) -> (Db, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_NS));
    let db = Db::create(
        common::store_options(Some(clock.clone())),
        StreamConfig::new(NAME).retention(retention),
        false,
    );
    (db, clock)
}

fn seqs(d: &[Delivery]) -> Vec<u64> {
    d.iter().map(|x| x.message.seq).collect()
}

/// Interest retention: a delivery to an `AckPolicy::None` consumer counts as acknowledged, so
/// once every interested consumer has had it the message goes, right after the fetch (it once
/// stayed for good, even with no consumer left).
#[test]
fn ack_none_delivery_releases_under_interest() {
    let (db, _) = fixture(Retention::Interest);
    let s = db.stream();
    let c = s
        .create_consumer(ConsumerConfig::new("c").ack(AckPolicy::None))
        .unwrap();
    let q = s.append("a", b"", b"").unwrap().seq;
    assert_eq!(seqs(&c.fetch(1, 0).unwrap()), vec![q]);
    let kept_after_delivery = s.load(q).is_ok();
    s.delete_consumer("c").unwrap();
    let kept_after_delete = s.load(q).is_ok();
    assert!(
        !kept_after_delivery && !kept_after_delete,
        "delivered to its only (ack-none) consumer: kept after the delivery {kept_after_delivery}, \
         kept after the consumer was deleted {kept_after_delete}"
    );
}

/// A work queue's consumers acknowledge explicitly and deliver from the start: an ack-none
/// consumer (a delivery would be the acknowledgement) or an ack-all one (an acknowledgement
/// would take messages it never saw) is refused, as is a start after the first message.
#[test]
fn work_queue_consumers_ack_explicitly_and_deliver_all() {
    let (db, _) = fixture(Retention::WorkQueue);
    let s = db.stream();
    s.append("a", b"", b"").unwrap();
    common::assert_configs_refused(
        s,
        [
            ConsumerConfig::new("c").ack(AckPolicy::None),
            ConsumerConfig::new("c").ack(AckPolicy::All),
            ConsumerConfig::new("c").deliver(DeliverPolicy::New),
            ConsumerConfig::new("c").deliver(DeliverPolicy::ByStartSeq(2)),
            ConsumerConfig::new("c").deliver(DeliverPolicy::LastPerSubject),
        ],
    );
    assert_eq!(s.state().messages, 1);
}

/// Interest retention: "interested" means the filter matches and the message is after the
/// consumer's start, and "a message no consumer is interested in is not kept": a message
/// appended below the start of every consumer whose filter matches it goes at its append (the
/// append path once looked only at the filters, and kept it for good).
#[test]
fn interest_append_before_every_start_is_not_kept() {
    let (db, _) = fixture(Retention::Interest);
    let s = db.stream();
    let c = s
        .create_consumer(ConsumerConfig::new("c").deliver(DeliverPolicy::ByStartSeq(3)))
        .unwrap();
    let q = s.append("a", b"", b"").unwrap().seq;
    assert_eq!(q, 1);
    assert!(
        s.load(q).is_err(),
        "1 is before c's start (3) and no other consumer exists: kept (c's state {:?})",
        c.state()
    );
}

/// Interest retention across a crash inside `delete_consumer`: the consumer's file is removed
/// (durably) before the messages it alone held are removed, so a crash in between leaves
/// messages no consumer is interested in, which the re-check at open removes. After the crash
/// either the consumer is still there (with its messages) or it is gone and so are they.
#[test]
fn interest_delete_consumer_is_crash_atomic() {
    let mut bad = Vec::new();
    for kind in [CrashKind::Process, CrashKind::PowerLoss] {
        for after in 0..12 {
            let (mut db, _) = fixture(Retention::Interest);
            db.stream()
                .create_consumer(ConsumerConfig::new("c"))
                .unwrap();
            for _ in 0..3 {
                db.stream().append("a", b"", b"").unwrap();
            }
            *db.fv.plan().lock() = tidelog::io::FaultPlan::at(after, tidelog::io::Fault::Crash);
            let r = db.stream().delete_consumer("c");
            db.crash(kind).unwrap();
            let s = db.stream();
            let names = s.consumer_names();
            let left = s.state().messages;
            if !((names.len() == 1 && left == 3) || (names.is_empty() && left == 0)) {
                bad.push(format!(
                    "{kind:?} crash at I/O #{after} of delete_consumer ({r:?}): consumers {names:?}, {left} messages left"
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Interest retention across a crash inside `append`: an append no consumer matches is stored
/// (durably), then removed by a second record; a crash between the two leaves it, and the
/// re-check at open removes it (as open re-applies the limits after the same kind of crash,
/// docs/durability.md "Removals made by limits").
#[test]
fn interest_append_drop_is_crash_atomic() {
    let mut bad = Vec::new();
    for kind in [CrashKind::Process, CrashKind::PowerLoss] {
        for after in 0..12 {
            let (mut db, _) = fixture(Retention::Interest);
            db.stream()
                .create_consumer(ConsumerConfig::new("c").filters(["a"]))
                .unwrap();
            *db.fv.plan().lock() = tidelog::io::FaultPlan::at(after, tidelog::io::Fault::Crash);
            let r = db.stream().append("b", b"", b"");
            db.crash(kind).unwrap();
            let left = db.stream().state().messages;
            if left != 0 {
                bad.push(format!("{kind:?} crash at I/O #{after} of append ({r:?})"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "the message no consumer matches is kept after:\n{}",
        bad.join("\n")
    );
}

/// Interest retention across a crash without a save: the consumer comes back as of its last
/// save (at-least-once: what it delivered and acknowledged since is delivered again), but a
/// message its lost acknowledgement released stays gone and is no longer pending, and its ack
/// floor never passes the message it had not acknowledged.
#[test]
fn crash_restores_the_last_save_under_interest() {
    let (mut db, clock) = fixture(Retention::Interest);
    let s = db.stream().clone();
    let c = s
        .create_consumer(ConsumerConfig::new("c").ack_wait(Duration::from_secs(1)))
        .unwrap();
    for _ in 0..4 {
        s.append("a", b"", b"").unwrap();
    }
    assert_eq!(seqs(&c.fetch(3, 0).unwrap()), vec![1, 2, 3]);
    c.ack(1).unwrap();
    c.save_now().unwrap();
    // Lost with the crash: the acks of 2 and 3 (which removed them), the delivery of 4.
    c.ack(3).unwrap();
    c.ack(2).unwrap();
    assert_eq!(seqs(&c.fetch(1, 0).unwrap()), vec![4]);
    assert_eq!(s.state().messages, 1, "1, 2 and 3 were released");
    drop((s, c));
    db.crash(CrashKind::PowerLoss).unwrap();
    let s = db.stream().clone();
    let c = s.consumer("c").unwrap();
    let st = c.state().unwrap();
    let want = ConsumerState {
        delivered: SeqPair {
            stream_seq: 3,
            consumer_seq: 3,
        },
        ack_floor: SeqPair {
            stream_seq: 3,
            consumer_seq: 3,
        },
        num_pending: 1,
        ..ConsumerState::default()
    };
    assert_eq!(
        st, want,
        "2 and 3 are gone, so not pending; 4 is to deliver"
    );
    clock.advance_ns(2 * SEC);
    let d = c.fetch(10, 0).unwrap();
    assert_eq!(
        d.iter()
            .map(|x| (x.message.seq, x.delivery_count, x.delivery_seq))
            .collect::<Vec<_>>(),
        vec![(4, 1, 4)],
        "4 is delivered again as a first delivery"
    );
    c.ack(4).unwrap();
    assert_eq!(s.state().messages, 0);
}

/// Work queue: a consumer whose filters overlap another's is refused with a typed error and
/// leaves nothing behind (no consumer, no file: a restart does not bring it back); a disjoint
/// one is accepted.
#[test]
fn work_queue_overlap_is_refused_and_changes_nothing() {
    let (mut db, _) = fixture(Retention::WorkQueue);
    let s = db.stream().clone();
    let c = s
        .create_consumer(ConsumerConfig::new("c").filters(["c.*"]))
        .unwrap();
    s.append("c.x", b"", b"").unwrap();
    let before = (s.state(), c.state().unwrap());
    for filters in [
        vec!["c.x"],
        vec![">"],
        vec![],
        vec!["*.x"],
        vec!["b", "c.>"],
    ] {
        let r = s.create_consumer(ConsumerConfig::new("d").filters(filters.clone()));
        assert!(
            matches!(
                r,
                Err(ConsumerError::Config(ConfigError::InvalidLimit {
                    name: "filters",
                    ..
                }))
            ),
            "{filters:?}: {r:?}"
        );
        assert_eq!(s.consumer_names(), vec!["c".to_string()]);
        assert_eq!((s.state(), c.state().unwrap()), before);
    }
    drop((s, c));
    db.restart().unwrap();
    let s = db.stream().clone();
    assert_eq!(s.consumer_names(), vec!["c".to_string()]);
    assert!(matches!(s.consumer("d"), Err(ConsumerError::NotFound(_))));
    s.create_consumer(ConsumerConfig::new("d").filters(["c.y.>", "d"]))
        .unwrap();
    assert_eq!(s.state().messages, 1);
}

/// Field failure 2 on a work queue, across a restart and a crash: a message that reached
/// max_deliver without an ack stays (not pending, counted as max-delivered) while its consumer
/// exists, and its acknowledgement removes it.
#[test]
fn work_queue_keeps_a_max_delivered_message_until_acked() {
    let (mut db, clock) = fixture(Retention::WorkQueue);
    let s = db.stream().clone();
    let c = s
        .create_consumer(
            ConsumerConfig::new("w")
                .max_deliver(2)
                .ack_wait(Duration::from_secs(1)),
        )
        .unwrap();
    let q = s.append("jobs", b"", b"poison").unwrap().seq;
    for n in 1..=2 {
        let d = c.fetch(1, 0).unwrap();
        assert_eq!((seqs(&d), d[0].delivery_count), (vec![q], n));
        clock.advance_ns(SEC);
    }
    assert!(c.fetch(1, 0).unwrap().is_empty(), "max_deliver reached");
    let st = c.state().unwrap();
    assert_eq!((st.num_ack_pending, st.num_max_delivered), (0, 1));
    drop((s, c));
    db.restart().unwrap();
    db.crash(CrashKind::PowerLoss).unwrap();
    let s = db.stream().clone();
    let c = s.consumer("w").unwrap();
    let st = c.state().unwrap();
    assert_eq!((st.num_ack_pending, st.num_max_delivered), (0, 1));
    assert_eq!(s.load(q).unwrap().payload(), b"poison");
    assert_eq!(c.ack(q).unwrap(), AckOutcome::Done);
    assert!(s.load(q).is_err(), "acknowledged: removed");
    assert_eq!(c.state().unwrap().num_max_delivered, 0);
}

/// Work queue: deleting a consumer removes nothing; its pending and undelivered messages (and
/// the ones no consumer matches) wait for the next consumer, which delivers them (across a
/// restart, whose re-check removes nothing either). What it acknowledged is gone.
#[test]
fn work_queue_delete_keeps_the_work() {
    let (mut db, _) = fixture(Retention::WorkQueue);
    let s = db.stream().clone();
    let early = s.append("jobs", b"", b"").unwrap().seq;
    let c = s
        .create_consumer(ConsumerConfig::new("w").filters(["jobs"]))
        .unwrap();
    let pending = s.append("jobs", b"", b"").unwrap().seq;
    let undelivered = s.append("jobs", b"", b"").unwrap().seq;
    let other = s.append("other", b"", b"").unwrap().seq;
    assert_eq!(seqs(&c.fetch(2, 0).unwrap()), vec![early, pending]);
    assert_eq!(c.ack(early).unwrap(), AckOutcome::Done);
    s.delete_consumer("w").unwrap();
    let live = |s: &Stream| -> Vec<u64> {
        [early, pending, undelivered, other]
            .into_iter()
            .filter(|&q| s.load(q).is_ok())
            .collect()
    };
    assert_eq!(
        live(&s),
        vec![pending, undelivered, other],
        "acknowledged: gone"
    );
    drop((s, c));
    db.restart().unwrap();
    let s = db.stream().clone();
    assert_eq!(
        live(&s),
        vec![pending, undelivered, other],
        "kept across a restart"
    );
    let c = s
        .create_consumer(ConsumerConfig::new("v").filters(["jobs"]))
        .unwrap();
    let d = c.fetch(10, 0).unwrap();
    assert_eq!(seqs(&d), vec![pending, undelivered]);
    assert!(d.iter().all(|x| x.delivery_count == 1));
    c.ack(pending).unwrap();
    c.ack(undelivered).unwrap();
    assert_eq!(live(&s), vec![other], "no consumer matches it: kept");
}

/// Work queue: an acknowledgement whose removal failed (a full disk) still returns `Done`;
/// the consumer is saved with it, and the re-check at the next open removes the message
/// (and, on an interest stream, the same for an ack-none delivery).
#[test]
fn open_rechecks_a_release_that_failed() {
    for retention in [Retention::WorkQueue, Retention::Interest] {
        let (mut db, _) = fixture(retention);
        let s = db.stream().clone();
        let c = s.create_consumer(ConsumerConfig::new("w")).unwrap();
        let q = s.append("jobs", b"", b"").unwrap().seq;
        assert_eq!(seqs(&c.fetch(1, 0).unwrap()), vec![q]);
        *db.fv.plan().lock() = tidelog::io::FaultPlan::at(0, tidelog::io::Fault::NoSpace);
        assert_eq!(c.ack(q).unwrap(), AckOutcome::Done, "{retention:?}");
        *db.fv.plan().lock() = tidelog::io::FaultPlan::new();
        assert!(s.is_poisoned(), "{retention:?}: the removal failed");
        c.save_now().unwrap();
        drop((s, c));
        db.crash(CrashKind::PowerLoss).unwrap();
        let s = db.stream().clone();
        assert!(s.load(q).is_err(), "{retention:?}: removed at open");
        assert_eq!(s.state().messages, 0, "{retention:?}");
    }
    let (mut db, _) = fixture(Retention::Interest);
    let s = db.stream().clone();
    let c = s
        .create_consumer(ConsumerConfig::new("n").ack(AckPolicy::None))
        .unwrap();
    let q = s.append("a", b"", b"").unwrap().seq;
    *db.fv.plan().lock() = tidelog::io::FaultPlan::at(0, tidelog::io::Fault::NoSpace);
    assert_eq!(
        seqs(&c.fetch(1, 0).unwrap()),
        vec![q],
        "delivered all the same"
    );
    *db.fv.plan().lock() = tidelog::io::FaultPlan::new();
    assert!(s.is_poisoned(), "the removal failed");
    c.save_now().unwrap();
    drop((s, c));
    db.crash(CrashKind::Process).unwrap();
    assert_eq!(db.stream().state().messages, 0, "removed at open");
}

/// Work queue: the overlap check and the insertion happen under one lock, so of two
/// overlapping consumers created at once exactly one is accepted.
#[test]
fn work_queue_overlap_check_is_atomic() {
    for round in 0..200 {
        let (db, _) = fixture(Retention::WorkQueue);
        let s = db.stream().clone();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = ["x", "y"]
            .into_iter()
            .map(|name| {
                let (s, barrier) = (s.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    s.create_consumer(ConsumerConfig::new(name).filters(["jobs.>"]))
                        .is_ok()
                })
            })
            .collect();
        let ok = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(ok, 1, "round {round}: {:?}", s.consumer_names());
        assert_eq!(s.consumer_names().len(), 1);
    }
}
