//! The consumer model shared by `model_consumer.rs` and `model_retention.rs`: one consumer as
//! the doc comments of `consumer.rs` describe it (deliveries, redeliveries, acks, naks, terms,
//! in_progress, its state), the generated inputs that drive it, and the outcomes compared
//! between model and engine. Each test file keeps its own stream model (the log, the clock,
//! the consumer slots, retention) and calls into this one per consumer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use proptest::prelude::*;
use tidelog::subject::matches;
use tidelog::{
    AckOutcome, AckPolicy, AppendError, Consumer, ConsumerConfig, ConsumerError, ConsumerState,
    DeliverPolicy, Delivery, NewMessage, SeqPair, Stream, WriteError,
};

use super::by_subject::{self, HasSubject};
use super::{pick, pick_seq, GenMsg, Pick};

pub const SEC: i64 = 1_000_000_000;
pub const MS: i64 = 1_000_000;
pub const START_NS: i64 = 1_700_000_000 * SEC;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Where a generated consumer starts; sequences and times are resolved against the model when
/// the consumer is created.
#[derive(Clone, Copy, Debug)]
pub enum DGen {
    All,
    Last,
    LastPerSubject,
    New,
    StartSeq(Pick),
    /// The timestamp of a live message, moved by the offset (ns).
    StartTime(Pick, i64),
}

impl DGen {
    /// The deliver policy, resolved against a model log (`now`: a start time when the picked
    /// message is gone).
    pub fn resolve(self, msgs: &BTreeMap<u64, Msg>, last_seq: u64, now: i64) -> DeliverPolicy {
        match self {
            DGen::All => DeliverPolicy::All,
            DGen::Last => DeliverPolicy::Last,
            DGen::LastPerSubject => DeliverPolicy::LastPerSubject,
            DGen::New => DeliverPolicy::New,
            DGen::StartSeq(p) => DeliverPolicy::ByStartSeq(pick_seq(msgs, last_seq, p).max(1)),
            DGen::StartTime(p, off) => {
                let q = pick_seq(msgs, last_seq, Pick { live: true, ..p });
                DeliverPolicy::ByStartTime(msgs.get(&q).map_or(now, |m| m.ts) + off)
            }
        }
    }
}

/// A generated consumer config.
#[derive(Clone, Debug)]
pub struct CfgGen {
    pub filters: usize,
    pub deliver: DGen,
    pub ack: AckPolicy,
    pub ack_wait_s: u64,
    pub backoff_s: Vec<u64>,
    pub max_deliver: Option<u64>,
    pub max_ack_pending: u64,
}

impl CfgGen {
    /// The config named `name`, with `filter_sets[filters]`, the given (resolved) deliver and
    /// ack policies, and (when it acks) its backoff cut to its max_deliver.
    pub fn config(
        &self,
        name: &str,
        filter_sets: &[&[&str]],
        deliver: DeliverPolicy,
        ack: AckPolicy,
    ) -> ConsumerConfig {
        let mut cfg = ConsumerConfig::new(name)
            .filters(
                filter_sets[self.filters % filter_sets.len()]
                    .iter()
                    .copied(),
            )
            .deliver(deliver)
            .ack(ack)
            .ack_wait(secs(self.ack_wait_s))
            .max_ack_pending(self.max_ack_pending);
        if ack != AckPolicy::None {
            let mut b: Vec<Duration> = self.backoff_s.iter().map(|&s| secs(s)).collect();
            if let Some(m) = self.max_deliver {
                b.truncate(m as usize);
                cfg = cfg.max_deliver(m);
            }
            cfg = cfg.backoff(b);
        }
        cfg
    }
}

/// A fetch by the consumer in `slot`: at most `max_msgs` messages and (unless 0) `max_bytes`
/// bytes.
#[derive(Clone, Copy, Debug)]
pub struct Fetch {
    pub slot: usize,
    pub max_msgs: usize,
    pub max_bytes: usize,
}

/// A sequence to acknowledge: one the consumer holds (pending or max-delivered), one it ever
/// delivered, or any sequence around the stream.
#[derive(Clone, Copy, Debug)]
pub enum APick {
    Held(u32),
    Seen(u32),
    Any(Pick),
}

#[derive(Clone, Copy, Debug)]
pub enum AckKind {
    Ack,
    /// Delay in ns (`None`: redeliver at the next fetch).
    Nak(Option<i64>),
    Term,
    InProgress,
}

impl AckKind {
    pub fn describe(&self, slot: usize, q: u64) -> String {
        match self {
            AckKind::Ack => format!("c{slot}.ack({q})"),
            AckKind::Nak(d) => format!(
                "c{slot}.nak({q}, {:?})",
                d.map(|d| Duration::from_nanos(d as u64))
            ),
            AckKind::Term => format!("c{slot}.term({q})"),
            AckKind::InProgress => format!("c{slot}.in_progress({q})"),
        }
    }

    pub fn call(&self, c: &Consumer, q: u64) -> Result<AckOutcome, ConsumerError> {
        match self {
            AckKind::Ack => c.ack(q),
            AckKind::Nak(d) => c.nak(q, d.map(|d| Duration::from_nanos(d as u64))),
            AckKind::Term => c.term(q),
            AckKind::InProgress => c.in_progress(q),
        }
    }
}

/// An append: one message, or a batch (`subject` and `GenMsg::subject` index the test
/// file's subject list).
#[derive(Clone, Debug)]
pub enum AppendOp {
    One(GenMsg),
    /// One batch of `n` small messages on one subject.
    Batch(usize, usize),
}

impl AppendOp {
    fn batch(subjects: &[&'static str], subject: usize, n: usize) -> (&'static str, Vec<Vec<u8>>) {
        let payloads = (0..n).map(|i| vec![i as u8; i % 7]).collect();
        (subjects[subject % subjects.len()], payloads)
    }

    /// Makes the append on `s`.
    pub fn run(&self, s: &Stream, subjects: &[&'static str]) -> Out {
        a_out(match self {
            AppendOp::One(g) => {
                let (subject, h, p) = msg_of(subjects, g);
                s.append_msg(&NewMessage::new(subject, &p).with_headers(&h))
                    .map(|a| Out::Appended(a.seq, a.seq, a.ts))
            }
            AppendOp::Batch(subject, n) => {
                let (subject, payloads) = AppendOp::batch(subjects, *subject, *n);
                let batch: Vec<NewMessage<'_>> = payloads
                    .iter()
                    .map(|p| NewMessage::new(subject, p))
                    .collect();
                s.append_batch(&batch)
                    .map(|b| Out::Appended(b.first_seq, b.last_seq, b.ts))
            }
        })
    }

    /// Makes the append in `m` (retention not applied): what it is, and what it returns.
    pub fn model<const N: usize>(
        &self,
        m: &mut Log<N>,
        subjects: &[&'static str],
    ) -> (String, Out) {
        let first = m.last_seq + 1;
        let what = match self {
            AppendOp::One(g) => {
                let (subject, h, p) = msg_of(subjects, g);
                m.append(subject, h, p);
                format!("append({subject}, {}B)", g.payload.len())
            }
            AppendOp::Batch(subject, n) => {
                let (subject, payloads) = AppendOp::batch(subjects, *subject, *n);
                for p in payloads {
                    m.append(subject, Vec::new(), p);
                }
                format!("append_batch({subject} x{n})")
            }
        };
        (what, Out::Appended(first, m.last_seq, m.max_ts))
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub subject: &'static str,
    pub headers: Vec<u8>,
    pub payload: Vec<u8>,
    pub ts: i64,
}

impl Msg {
    pub fn size(&self) -> usize {
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
pub struct Got {
    pub seq: u64,
    pub count: u64,
    pub dseq: u64,
    pub subject: String,
    pub headers: Vec<u8>,
    pub payload: Vec<u8>,
    pub ts: i64,
}

impl Got {
    pub fn of(d: &Delivery) -> Got {
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

pub fn short(gs: &[Got]) -> String {
    let v: Vec<String> = gs
        .iter()
        .map(|g| format!("{}#{}@{}", g.seq, g.count, g.dseq))
        .collect();
    format!("[{}]", v.join(" "))
}

/// One message delivered and not acknowledged.
#[derive(Clone, Debug)]
pub struct Pend {
    pub count: u64,
    pub first_dseq: u64,
    /// When it is redelivered: its ack wait (or backoff) from its last delivery, a nak's
    /// delay, or in_progress's restart.
    pub due: i64,
    /// Nak'd since its last delivery: waiting for redelivery whatever `due` says.
    pub nakd: bool,
}

/// One consumer as its documentation describes it.
#[derive(Clone, Debug)]
pub struct CModel {
    pub cfg: ConsumerConfig,
    /// Messages at or below it are before the consumer's start (never of interest to it).
    pub start: u64,
    /// Next stream sequence to look at for first deliveries.
    pub next: u64,
    /// Live last-per-subject starters still to deliver.
    pub initial: VecDeque<u64>,
    pub delivered_seq: u64,
    pub dseq: u64,
    pub floor: u64,
    pub pending: BTreeMap<u64, Pend>,
    pub max_delivered: BTreeSet<u64>,
    /// First delivery sequence of every message delivered (for the ack floor).
    pub first_dseq: BTreeMap<u64, u64>,
    /// Every sequence it delivered, in order of first delivery (for picks).
    pub seen: Vec<u64>,
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ns(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

impl CModel {
    /// A new consumer on the log `msgs`, starting where its deliver policy says.
    pub fn new(cfg: ConsumerConfig, msgs: &BTreeMap<u64, Msg>, last_seq: u64) -> CModel {
        let probe = CModel {
            cfg,
            start: 0,
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
        let after = last_seq + 1;
        let mut initial = VecDeque::new();
        let next = match probe.cfg.deliver {
            DeliverPolicy::All => super::first_seq(msgs, last_seq),
            DeliverPolicy::New => after,
            DeliverPolicy::ByStartSeq(s) => s,
            DeliverPolicy::ByStartTime(t) => msgs
                .iter()
                .find(|(_, m)| m.ts >= t)
                .map_or(after, |(q, _)| *q),
            DeliverPolicy::Last => msgs
                .iter()
                .rev()
                .find(|(_, m)| probe.matches(m.subject))
                .map_or(after, |(q, _)| *q),
            DeliverPolicy::LastPerSubject => {
                let mut last = BTreeMap::new();
                for (q, m) in msgs {
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
            start: floor,
            next,
            initial,
            delivered_seq: floor,
            floor,
            ..probe
        }
    }

    pub fn matches(&self, subject: &str) -> bool {
        self.cfg.filters.is_empty() || self.cfg.filters.iter().any(|f| matches(f, subject))
    }

    pub fn tracked(&self) -> bool {
        self.cfg.ack != AckPolicy::None
    }

    /// The wait before delivery `count + 1` of a message delivered `count` times.
    pub fn wait_after(&self, count: u64) -> i64 {
        let b = &self.cfg.backoff;
        if b.is_empty() {
            return ns(self.cfg.ack_wait);
        }
        ns(b[((count - 1) as usize).min(b.len() - 1)])
    }

    pub fn waiting(p: &Pend, now: i64) -> bool {
        p.nakd || p.due <= now
    }

    pub fn next_new(&self, msgs: &BTreeMap<u64, Msg>) -> Option<u64> {
        if let Some(&q) = self.initial.front() {
            return Some(q);
        }
        msgs.range(self.next..)
            .find(|(_, m)| self.matches(m.subject))
            .map(|(q, _)| *q)
    }

    /// Whether the consumer still needs message `q` on `subject` (retention): its filter
    /// matches, the message is after its start, and it is not delivered yet, or pending, or
    /// past max_deliver without an ack.
    pub fn needs(&self, q: u64, subject: &str) -> bool {
        if !self.matches(subject) || q <= self.start {
            return false;
        }
        let delivered = q < self.next && !self.initial.contains(&q);
        !delivered || self.pending.contains_key(&q) || self.max_delivered.contains(&q)
    }

    /// Forgets every message the stream no longer has (what a consumer does on its first
    /// call after a removal, or after it was restored).
    pub fn reconcile(&mut self, msgs: &BTreeMap<u64, Msg>) {
        self.pending.retain(|q, _| msgs.contains_key(q));
        self.max_delivered.retain(|q| msgs.contains_key(q));
        self.initial.retain(|q| msgs.contains_key(q));
    }

    /// Forgets the removed messages `gone`.
    pub fn forget(&mut self, gone: &[u64]) {
        for q in gone {
            self.pending.remove(q);
            self.max_delivered.remove(q);
        }
        self.initial.retain(|q| !gone.contains(q));
    }

    /// A fetch of at most `max_msgs` messages and (unless 0) `max_bytes` bytes at `now`.
    pub fn fetch(
        &mut self,
        msgs: &BTreeMap<u64, Msg>,
        now: i64,
        max_msgs: usize,
        max_bytes: usize,
    ) -> Vec<Got> {
        let c = self;
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
                // Exhausted: kept, no longer pending (field failure 2).
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

    /// An acknowledgement (or nak, term, in_progress) at `now`: its outcome, and the messages
    /// it acknowledged.
    pub fn ack(&mut self, now: i64, kind: AckKind, seq: u64) -> (AckOutcome, BTreeSet<u64>) {
        let c = self;
        let done = |acked: BTreeSet<u64>| {
            if acked.is_empty() {
                (AckOutcome::NotPending, acked)
            } else {
                (AckOutcome::Done, acked)
            }
        };
        match kind {
            AckKind::Ack if c.cfg.ack == AckPolicy::None => done(BTreeSet::new()),
            AckKind::Ack if c.cfg.ack == AckPolicy::All => {
                let mut acked: BTreeSet<u64> = c.pending.range(..=seq).map(|(q, _)| *q).collect();
                acked.extend(c.max_delivered.range(..=seq).copied());
                for q in &acked {
                    c.pending.remove(q);
                    c.max_delivered.remove(q);
                }
                done(acked)
            }
            AckKind::Ack | AckKind::Term => {
                let a = c.pending.remove(&seq).is_some();
                let b = c.max_delivered.remove(&seq);
                done(if a || b {
                    BTreeSet::from([seq])
                } else {
                    BTreeSet::new()
                })
            }
            AckKind::Nak(delay) => {
                let Some(p) = c.pending.get_mut(&seq) else {
                    return (AckOutcome::NotPending, BTreeSet::new());
                };
                p.due = now + delay.unwrap_or(0);
                p.nakd = true;
                (AckOutcome::Done, BTreeSet::new())
            }
            AckKind::InProgress => {
                let Some(p) = c.pending.get(&seq) else {
                    return (AckOutcome::NotPending, BTreeSet::new());
                };
                if CModel::waiting(p, now) {
                    return (AckOutcome::NotPending, BTreeSet::new());
                }
                let due = now + c.wait_after(p.count);
                c.pending.get_mut(&seq).expect("pending").due = due;
                (AckOutcome::Done, BTreeSet::new())
            }
        }
    }

    /// The consumer's state at `now` (which moves its ack floor up, as the engine's does).
    pub fn state(&mut self, msgs: &BTreeMap<u64, Msg>, now: i64) -> ConsumerState {
        let c = self;
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

    /// The sequence an acknowledgement is about (`pick` resolves a sequence of the stream).
    pub fn ack_seq(&self, p: APick, pick: impl Fn(Pick) -> u64) -> u64 {
        let held: Vec<u64> = self
            .pending
            .keys()
            .chain(self.max_delivered.iter())
            .copied()
            .collect();
        match p {
            APick::Held(i) if !held.is_empty() => held[i as usize % held.len()],
            APick::Held(i) | APick::Seen(i) if !self.seen.is_empty() => {
                self.seen[i as usize % self.seen.len()]
            }
            APick::Held(i) | APick::Seen(i) => pick(Pick {
                live: false,
                idx: i,
            }),
            APick::Any(p) => pick(p),
        }
    }
}

/// A stream as the model keeps it: its log, its clock, and `N` consumer slots.
#[derive(Clone, Debug)]
pub struct Log<const N: usize> {
    pub msgs: BTreeMap<u64, Msg>,
    pub last_seq: u64,
    pub now: i64,
    pub max_ts: i64,
    pub cons: [Option<CModel>; N],
}

impl<const N: usize> Log<N> {
    pub fn new() -> Log<N> {
        Log {
            msgs: BTreeMap::new(),
            last_seq: 0,
            now: START_NS,
            max_ts: 0,
            cons: std::array::from_fn(|_| None),
        }
    }

    pub fn pick(&self, p: Pick) -> u64 {
        pick_seq(&self.msgs, self.last_seq, p)
    }

    /// A generated deliver policy, resolved against the log.
    pub fn deliver(&self, d: DGen) -> DeliverPolicy {
        d.resolve(&self.msgs, self.last_seq, self.now)
    }

    /// A new consumer, starting where its deliver policy says.
    pub fn create(&self, cfg: ConsumerConfig) -> CModel {
        CModel::new(cfg, &self.msgs, self.last_seq)
    }

    /// Takes removed messages out of the log and out of every consumer at once.
    pub fn remove(&mut self, gone: &[u64]) {
        for q in gone {
            self.msgs.remove(q);
        }
        for c in self.cons.iter_mut().flatten() {
            c.forget(gone);
        }
    }

    /// An append of one message (at the model's clock, never before an earlier message).
    pub fn append(&mut self, subject: &'static str, headers: Vec<u8>, payload: Vec<u8>) {
        let ts = self.now.max(self.max_ts);
        self.max_ts = ts;
        self.last_seq += 1;
        self.msgs.insert(
            self.last_seq,
            Msg {
                subject,
                headers,
                payload,
                ts,
            },
        );
    }

    pub fn fetch(&mut self, k: usize, max_msgs: usize, max_bytes: usize) -> Vec<Got> {
        let c = self.cons[k].as_mut().expect("consumer");
        c.fetch(&self.msgs, self.now, max_msgs, max_bytes)
    }

    /// An acknowledgement (or nak, term, in_progress) of consumer `k`: its outcome, and the
    /// messages it acknowledged.
    pub fn ack(&mut self, k: usize, kind: AckKind, seq: u64) -> (AckOutcome, BTreeSet<u64>) {
        let c = self.cons[k].as_mut().expect("consumer");
        c.ack(self.now, kind, seq)
    }

    pub fn state(&mut self, k: usize) -> ConsumerState {
        let c = self.cons[k].as_mut().expect("consumer");
        c.state(&self.msgs, self.now)
    }

    /// The sequence an acknowledgement of consumer `k` is about.
    pub fn ack_seq(&self, k: usize, p: APick) -> u64 {
        let c = self.cons[k].as_ref().expect("consumer");
        c.ack_seq(p, |p| self.pick(p))
    }

    /// The model as text, for a failure: `title` names it.
    pub fn dump(&self, title: &str) -> String {
        let mut s = format!(
            "--- {title} ---\nnow +{}ms last_seq {}\n",
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
                "consumer c{k}: {:?}\n  start {} next {} initial {:?} delivered ({}, {}) floor {}\n  max_delivered {:?}\n",
                c.cfg, c.start, c.next, c.initial, c.delivered_seq, c.dseq, c.floor, c.max_delivered
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
// Outcomes
// ---------------------------------------------------------------------------------------------

/// An outcome, comparable between model and engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
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
    pub fn short(&self) -> String {
        match self {
            Out::Fetched(g) => short(g),
            other => format!("{other:?}"),
        }
    }
}

pub fn w_out(r: Result<Out, WriteError>) -> Out {
    match r {
        Ok(o) => o,
        Err(WriteError::NotFound(s)) => Out::NotFound(s),
        Err(WriteError::InvalidSequence { .. }) => Out::Invalid,
        Err(e) => Out::Err(format!("{e:?}")),
    }
}

pub fn a_out(r: Result<Out, AppendError>) -> Out {
    r.unwrap_or_else(|e| Out::Err(format!("{e:?}")))
}

pub fn c_out(r: Result<AckOutcome, ConsumerError>) -> Out {
    match r {
        Ok(a) => Out::Ack(a),
        Err(e) => Out::Err(format!("{e:?}")),
    }
}

pub fn fetch_out(c: &Consumer, max_msgs: usize, max_bytes: usize) -> Out {
    match c.fetch(max_msgs, max_bytes) {
        Ok(d) => Out::Fetched(d.iter().map(Got::of).collect()),
        Err(e) => Out::Err(format!("{e:?}")),
    }
}

/// A removal from the stream.
#[derive(Clone, Debug)]
pub enum Removal {
    Remove(Pick),
    Erase(Pick),
    Purge,
    Compact(Pick),
    Truncate(Pick),
    PurgeFiltered(by_subject::Purge),
}

/// A removal made on the stream `s` and computed on the model log (`purge_filters` are the
/// filters `purge_filtered` picks from): what it is, the model's outcome and removed
/// sequences, and the stream's outcome.
pub fn removal(
    r: &Removal,
    msgs: &BTreeMap<u64, Msg>,
    last_seq: u64,
    purge_filters: &[&'static str],
    s: &Stream,
) -> (String, Out, Vec<u64>, Out) {
    let pick = |p: Pick| pick_seq(msgs, last_seq, p);
    match r {
        Removal::Remove(p) | Removal::Erase(p) => {
            let q = pick(*p);
            let (want, gone) = match msgs.contains_key(&q) {
                true => (Out::Unit, vec![q]),
                false => (Out::NotFound(q), vec![]),
            };
            let (what, got) = if let Removal::Remove(_) = r {
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
        Removal::Purge => {
            let gone: Vec<u64> = msgs.keys().copied().collect();
            let want = Out::Count(gone.len() as u64);
            (
                "purge()".into(),
                want,
                gone,
                w_out(s.purge().map(Out::Count)),
            )
        }
        Removal::Compact(p) => {
            let q = pick(*p);
            let gone: Vec<u64> = msgs.range(..q).map(|(q, _)| *q).collect();
            let want = match q {
                0 => Out::Invalid,
                _ => Out::Count(gone.len() as u64),
            };
            let got = w_out(s.compact(q).map(Out::Count));
            (format!("compact({q})"), want, gone, got)
        }
        Removal::Truncate(p) => {
            let q = pick(*p);
            let gone: Vec<u64> = msgs.range(q + 1..).map(|(q, _)| *q).collect();
            let want = match q >= last_seq {
                true => Out::Invalid,
                false => Out::Count(gone.len() as u64),
            };
            let got = w_out(s.truncate(q).map(Out::Count));
            (format!("truncate({q})"), want, gone, got)
        }
        Removal::PurgeFiltered(p) => {
            let (f, up_to, keep) = p.args(purge_filters, pick);
            let gone = by_subject::purge_filtered(msgs, f, up_to, keep).expect("valid filter");
            let want = Out::Count(gone.len() as u64);
            let got = w_out(s.purge_filtered(f, up_to, keep).map(Out::Count));
            (
                format!("purge_filtered({f}, {up_to:?}, keep {keep})"),
                want,
                gone,
                got,
            )
        }
    }
}

/// `state-equals-model` for consumer `k` (when it exists): the engine's state, then the
/// model's (`want`), must be equal; else the failure, named `name`.
pub fn check_state(
    c: Option<&Consumer>,
    want: impl FnOnce() -> ConsumerState,
    k: usize,
    name: &str,
) -> Result<(), String> {
    let Some(c) = c else {
        return Ok(());
    };
    let got = c.state();
    let want = want();
    match got {
        Ok(got) if got == want => Ok(()),
        Ok(got) => Err(format!(
            "{name}: c{k}.state() =\n  {got:?}\nmodel\n  {want:?}"
        )),
        Err(e) => Err(format!("{name}: c{k}.state() = {e:?}")),
    }
}

/// A generated message on `subjects`: (subject, headers, payload).
pub fn msg_of(subjects: &[&'static str], g: &GenMsg) -> (&'static str, Vec<u8>, Vec<u8>) {
    (
        subjects[g.subject % subjects.len()],
        g.headers.clone(),
        g.payload.clone(),
    )
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// A fetch on a slot from `slot`, of 1 to 10 messages, byte-bounded in `bounded` cases of
/// every `3 + bounded`.
pub fn fetch(slot: impl Strategy<Value = usize>, bounded: u32) -> impl Strategy<Value = Fetch> {
    (
        slot,
        1usize..=10,
        prop_oneof![3 => Just(0usize), bounded => 1usize..120],
    )
        .prop_map(|(slot, max_msgs, max_bytes)| Fetch {
            slot,
            max_msgs,
            max_bytes,
        })
}

pub fn apick() -> impl Strategy<Value = APick> {
    prop_oneof![
        14 => any::<u32>().prop_map(APick::Held),
        4 => any::<u32>().prop_map(APick::Seen),
        1 => pick().prop_map(APick::Any),
    ]
}

/// Whole seconds land exactly on due times (waits are whole seconds); the rest in between.
pub fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (1i64..=12).prop_map(|s| s * SEC),
        2 => (1i64..2000).prop_map(|ms| ms * MS),
        1 => Just(1i64),
        1 => (30i64..120).prop_map(|s| s * SEC),
    ]
}

/// A consumer config on one of `filter_sets` filter sets, with the given strategies for the
/// deliver policy and the numbers (the ack policy as [`ack_policy`]).
pub fn cfg_gen(
    filter_sets: usize,
    deliver: impl Strategy<Value = DGen>,
    ack_wait_s: impl Strategy<Value = u64>,
    backoff_s: impl Strategy<Value = Vec<u64>>,
    max_deliver: impl Strategy<Value = Option<u64>>,
    max_ack_pending: impl Strategy<Value = u64>,
) -> impl Strategy<Value = CfgGen> {
    (
        0..filter_sets,
        deliver,
        ack_policy(),
        ack_wait_s,
        backoff_s,
        max_deliver,
        max_ack_pending,
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

/// Where a generated consumer starts: `all` the weight of `DGen::All`.
pub fn dgen(all: u32) -> impl Strategy<Value = DGen> {
    prop_oneof![
        all => Just(DGen::All),
        1 => Just(DGen::Last),
        2 => Just(DGen::LastPerSubject),
        1 => Just(DGen::New),
        2 => pick().prop_map(DGen::StartSeq),
        1 => (pick(), prop_oneof![Just(0i64), Just(-1), Just(1), -2000 * MS..2000 * MS])
            .prop_map(|(p, off)| DGen::StartTime(p, off)),
    ]
}

pub fn ack_policy() -> impl Strategy<Value = AckPolicy> {
    prop_oneof![
        6 => Just(AckPolicy::Explicit),
        2 => Just(AckPolicy::All),
        1 => Just(AckPolicy::None),
    ]
}

/// An ack kind: `ack` and `in_progress` the weights of `Ack` and `InProgress`.
pub fn ack_kind(ack: u32, in_progress: u32) -> impl Strategy<Value = AckKind> {
    prop_oneof![
        ack => Just(AckKind::Ack),
        2 => Just(AckKind::Nak(None)),
        1 => Just(AckKind::Nak(Some(0))),
        2 => (1i64..=10).prop_map(|s| AckKind::Nak(Some(s * SEC))),
        1 => (1i64..3000).prop_map(|ms| AckKind::Nak(Some(ms * MS))),
        2 => Just(AckKind::Term),
        in_progress => Just(AckKind::InProgress),
    ]
}

/// A message on one of `subjects` subjects (headers in a fifth of them).
pub fn gen_msg(subjects: usize) -> impl Strategy<Value = GenMsg> {
    super::gen_msg(0..subjects, 0.2, 8, 40)
}
