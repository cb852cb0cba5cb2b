//! Durable consumers: what to deliver next and when, and which deliveries are acknowledged.
//! The host does the networking; a consumer does the bookkeeping.
//!
//! Acknowledgements of an explicit-ack consumer go through the lock-free [`PendingTable`] (one
//! compare-and-swap); everything else (fetch, nak, term, in_progress, ack-all, state) takes the
//! consumer's own lock, never the stream's write lock. A consumer notices removed messages
//! through the stream's removal counter and drops them from pending and from the redelivery
//! schedule before it answers anything, so its counters match the stream at every call.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::validate_name;
use crate::error::{ConfigError, ConsumerError, DurabilityError, LoadError, QueryError};
use crate::pending::{AckFloor, PendingTable};
use crate::stream::{StoredMessage, Stream};
use crate::subject;

/// Largest max_ack_pending (the pending table is sized for it up front).
pub const MAX_ACK_PENDING: u64 = 1 << 20;

/// Where a new consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    /// From the first message.
    All,
    /// From the newest matching message.
    Last,
    /// The newest message of every matching subject, then everything after.
    LastPerSubject,
    /// Only messages appended after the consumer is created.
    New,
    /// From this stream sequence.
    ByStartSeq(u64),
    /// From the first message stored at or after this time (ns since the epoch).
    ByStartTime(i64),
}

/// What the host must acknowledge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckPolicy {
    /// Nothing: a delivered message counts as acknowledged.
    None,
    /// An ack acknowledges its message and every earlier pending one.
    All,
    /// Every message on its own.
    Explicit,
}

/// A consumer's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerConfig {
    pub name: String,
    /// Subject filters (empty: every subject); they may not overlap one another.
    pub filters: Vec<String>,
    pub deliver: DeliverPolicy,
    pub ack: AckPolicy,
    /// How long a delivery waits for its ack before it is redelivered.
    pub ack_wait: Duration,
    /// Waits before the 1st, 2nd, ... redelivery instead of `ack_wait` (the last one repeats).
    pub backoff: Vec<Duration>,
    /// Deliveries of one message at most (`None`: no limit). A message that reaches it
    /// without an ack stays in the stream and stops counting as pending.
    pub max_deliver: Option<u64>,
    /// Deliveries awaiting an ack at once, at most (1 ..= [`MAX_ACK_PENDING`]).
    pub max_ack_pending: u64,
}

impl ConsumerConfig {
    /// Explicit acks, from the first message, 30 s ack wait, 1,000 pending at most.
    pub fn new(name: impl Into<String>) -> Self {
        ConsumerConfig {
            name: name.into(),
            filters: Vec::new(),
            deliver: DeliverPolicy::All,
            ack: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            backoff: Vec::new(),
            max_deliver: None,
            max_ack_pending: 1000,
        }
    }
    pub fn filters<S: Into<String>>(mut self, f: impl IntoIterator<Item = S>) -> Self {
        self.filters = f.into_iter().map(Into::into).collect();
        self
    }
    pub fn deliver(mut self, d: DeliverPolicy) -> Self {
        self.deliver = d;
        self
    }
    pub fn ack(mut self, a: AckPolicy) -> Self {
        self.ack = a;
        self
    }
    pub fn ack_wait(mut self, d: Duration) -> Self {
        self.ack_wait = d;
        self
    }
    pub fn backoff(mut self, b: Vec<Duration>) -> Self {
        self.backoff = b;
        self
    }
    pub fn max_deliver(mut self, n: u64) -> Self {
        self.max_deliver = Some(n);
        self
    }
    pub fn max_ack_pending(mut self, n: u64) -> Self {
        self.max_ack_pending = n;
        self
    }

    /// Checks every field and their combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name, why: &str| {
            Err(ConfigError::InvalidLimit {
                name,
                why: why.into(),
            })
        };
        validate_name(&self.name)?;
        for (i, f) in self.filters.iter().enumerate() {
            subject::validate_filter(f)?;
            if self.filters[..i].iter().any(|g| subject::overlaps(f, g)) {
                return bad("filters", "filters of one consumer may not overlap");
            }
        }
        if self.ack_wait.is_zero() {
            return bad("ack_wait", "must be longer than zero");
        }
        if !(1..=MAX_ACK_PENDING).contains(&self.max_ack_pending) {
            return bad("max_ack_pending", "must be between 1 and 2^20");
        }
        if self.max_deliver == Some(0) {
            return bad("max_deliver", "must be at least 1 (None for no limit)");
        }
        if self.backoff.iter().any(|d| d.is_zero()) {
            return bad("backoff", "every wait must be longer than zero");
        }
        if let Some(m) = self.max_deliver {
            if self.backoff.len() as u64 > m {
                return bad("backoff", "more waits than max_deliver allows redeliveries");
            }
        }
        if self.ack == AckPolicy::None && (self.max_deliver.is_some() || !self.backoff.is_empty()) {
            return bad("ack", "max_deliver and backoff need acknowledgements");
        }
        if let DeliverPolicy::ByStartSeq(0) = self.deliver {
            return bad("deliver", "start sequence must be at least 1");
        }
        Ok(())
    }

    /// The filters to match, `>` for none.
    pub(crate) fn match_filters(&self) -> Vec<String> {
        if self.filters.is_empty() {
            vec![">".to_owned()]
        } else {
            self.filters.clone()
        }
    }
}

/// One delivered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub message: StoredMessage,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub delivery_count: u64,
    /// The consumer's own sequence for this delivery (every delivery gets the next one).
    pub delivery_seq: u64,
}

/// What an acknowledgement (or nak, term, in_progress) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum AckOutcome {
    /// It applied.
    Done,
    /// The message was not pending (never delivered, acknowledged already, or removed):
    /// nothing changed.
    NotPending,
}

/// A (stream sequence, consumer sequence) pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SeqPair {
    pub stream_seq: u64,
    pub consumer_seq: u64,
}

/// A consumer's counters, exact when returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsumerState {
    /// The last message delivered for the first time, and the last delivery sequence used.
    pub delivered: SeqPair,
    /// Everything at or below it is acknowledged (or needs no acknowledgement).
    pub ack_floor: SeqPair,
    /// Matching messages not yet delivered.
    pub num_pending: u64,
    /// Delivered, not yet acknowledged (waiting ones included).
    pub num_ack_pending: u64,
    /// Pending messages delivered more than once.
    pub num_redelivered: u64,
    /// Pending messages due for redelivery (nak'd, or their ack wait ran out).
    pub num_waiting_redelivery: u64,
    /// Messages that reached max_deliver without an ack (kept, no longer pending).
    pub num_max_delivered: u64,
}

#[derive(Clone, Copy, Debug)]
struct Meta {
    count: u64,
    first_dseq: u64,
    due: i64,
}

struct Inner {
    /// Messages at or below this are outside the consumer's interest (before its start).
    start: u64,
    /// Next stream sequence to look at for first deliveries.
    next: u64,
    /// Last-per-subject starting set still to deliver, in sequence order.
    initial: VecDeque<u64>,
    delivered: SeqPair,
    floor: AckFloor,
    floor_dseq: u64,
    meta: HashMap<u64, Meta>,
    /// (due time, sequence) of every pending message: its ack wait or nak delay.
    schedule: BTreeSet<(i64, u64)>,
    /// Messages past max_deliver, unacknowledged: sequence -> first delivery sequence.
    max_delivered: BTreeMap<u64, u64>,
    /// The stream's removal counter when pending was last checked against it.
    removals_seen: u64,
}

pub(crate) struct ConsumerShared {
    stream: Stream,
    cfg: ConsumerConfig,
    filters: Vec<String>,
    table: PendingTable,
    inner: Mutex<Inner>,
    deleted: AtomicBool,
    /// Changed since the last save (set by acks without a lock).
    dirty: AtomicBool,
    /// `Inner::removals_seen`, readable by acknowledgements without the lock.
    removals_seen: AtomicU64,
    /// `Inner::start`, readable without the lock (retention checks every append).
    start: AtomicU64,
    saved_at: Mutex<Option<Instant>>,
}

/// How often a changed consumer's state is saved by the maintenance thread.
const SAVE_EVERY: Duration = Duration::from_secs(1);
const FILE_MAGIC: [u8; 8] = *b"TLCONS\0\0";
const FILE_VERSION: u16 = 1;

/// A consumer's file name in its stream's directory.
pub(crate) fn file_name(name: &str) -> String {
    format!("consumer.{name}")
}

/// The saved form of a consumer (`docs/format.md`, "Consumer").
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Saved {
    config: ConsumerConfig,
    #[serde(default)]
    start: u64,
    next: u64,
    initial: Vec<u64>,
    delivered: (u64, u64),
    floor: u64,
    floor_dseq: u64,
    /// (sequence, deliveries, first delivery sequence, due ns, waiting for redelivery)
    pending: Vec<(u64, u64, u64, i64, bool)>,
    /// (sequence, first delivery sequence)
    max_delivered: Vec<(u64, u64)>,
}

impl Saved {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut b = Vec::with_capacity(32 + json.len());
        b.extend_from_slice(&FILE_MAGIC);
        b.extend_from_slice(&FILE_VERSION.to_le_bytes());
        b.extend_from_slice(&[0u8; 6]);
        b.extend_from_slice(&(json.len() as u64).to_le_bytes());
        b.extend_from_slice(&json);
        let sum = xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes and checks a consumer file; `Err` says why it is not one.
    pub(crate) fn decode(b: &[u8]) -> Result<Saved, String> {
        if b.len() < 32 || b[..8] != FILE_MAGIC {
            return Err("bad magic".into());
        }
        if u16::from_le_bytes([b[8], b[9]]) != FILE_VERSION {
            return Err("unknown version".into());
        }
        let body = b.len() - 8;
        if crate::record::u64_at(b, body) != xxh3_64(&b[..body]) {
            return Err("checksum mismatch".into());
        }
        if crate::record::u64_at(b, 16) != (body - 24) as u64 {
            return Err("length mismatch".into());
        }
        let s: Saved = serde_json::from_slice(&b[24..body]).map_err(|e| e.to_string())?;
        s.config.validate().map_err(|e| e.to_string())?;
        if s.pending.len() as u64 > s.config.max_ack_pending {
            return Err("more pending than max_ack_pending".into());
        }
        s.check_consistent()?;
        Ok(s)
    }

    /// What the engine never writes, so a file holding it is damaged (or forged) even though
    /// its checksum holds: restoring it would break the pending set's and the counters'
    /// assumptions (arithmetic that cannot overflow, sequences in range, unique and ordered).
    fn check_consistent(&self) -> Result<(), String> {
        let seq_ok = |q: u64| (1..=crate::record::MAX_SEQ).contains(&q);
        // Room for every later delivery: the counters only grow by one at a time.
        let count_ok = |n: u64| n < u64::MAX / 2;
        let (dseq_last, dseq) = (self.delivered.0, self.delivered.1);
        let dseq_ok = |d: u64| d >= 1 && d <= dseq;
        if self.next > crate::record::MAX_SEQ + 1 || dseq_last > crate::record::MAX_SEQ {
            return Err("sequence out of range".into());
        }
        if !count_ok(dseq) {
            return Err("delivery sequence out of range".into());
        }
        if !self.initial.windows(2).all(|w| w[0] < w[1])
            || !self.initial.iter().all(|&q| seq_ok(q) && q < self.next)
        {
            return Err("starting set not ascending below next".into());
        }
        let mut seen: Vec<u64> = Vec::with_capacity(self.pending.len());
        for &(q, n, d, _, _) in &self.pending {
            if !seq_ok(q) || q >= self.next || !count_ok(n) || n == 0 || !dseq_ok(d) {
                return Err(format!("pending message {q} out of range"));
            }
            seen.push(q);
        }
        for &(q, d) in &self.max_delivered {
            if !seq_ok(q) || q >= self.next || !dseq_ok(d) {
                return Err(format!("max-delivered message {q} out of range"));
            }
            seen.push(q);
        }
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err("a message listed twice".into());
        }
        // Starters are delivered in order, before anything else: one left below a message
        // already delivered would be a first delivery out of order, which the ack floor
        // cannot take.
        if let (Some(&first), Some(&top)) = (self.initial.first(), seen.last()) {
            if first <= top {
                return Err(format!("starter {first} not above delivered message {top}"));
            }
        }
        Ok(())
    }
}

/// A handle to a consumer. Cheap to clone; every method may be called from any thread.
#[derive(Clone)]
pub struct Consumer {
    c: Arc<ConsumerShared>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.c.cfg.name)
            .finish_non_exhaustive()
    }
}

/// What one acknowledgement applied to: one message without an allocation (the explicit-ack
/// hot path), or a sorted list.
enum Acked {
    One(u64),
    Many(Vec<u64>),
}

impl Acked {
    fn seqs(&self) -> &[u64] {
        match self {
            Acked::One(q) => std::slice::from_ref(q),
            Acked::Many(v) => v,
        }
    }
}

/// The matching sequences one fetch lists from the stream at once (fewer lookups and lock
/// holds than one `load_next` per message).
#[derive(Default)]
struct Candidates {
    seqs: VecDeque<u64>,
    /// Where the next listing starts (past every listed sequence).
    from: u64,
}

fn query(e: QueryError) -> ConsumerError {
    match e {
        QueryError::Closed => ConsumerError::Closed,
        other => ConsumerError::Query(other),
    }
}

impl Consumer {
    /// A new consumer on `stream`, starting where `cfg.deliver` says.
    pub(crate) fn create(stream: &Stream, cfg: ConsumerConfig) -> Result<Consumer, ConsumerError> {
        cfg.validate().map_err(ConsumerError::Config)?;
        let filters = cfg.match_filters();
        let st = stream.state();
        let (next, initial) = match cfg.deliver {
            DeliverPolicy::All => (st.first_seq, VecDeque::new()),
            DeliverPolicy::New => (st.last_seq + 1, VecDeque::new()),
            DeliverPolicy::ByStartSeq(s) => (s, VecDeque::new()),
            DeliverPolicy::ByStartTime(t) => (stream.seq_for_time(t), VecDeque::new()),
            DeliverPolicy::Last => {
                let mut last = 0;
                for f in &filters {
                    if let Some(m) = stream.load_last(f).map_err(query)? {
                        last = last.max(m.seq);
                    }
                }
                (
                    if last == 0 { st.last_seq + 1 } else { last },
                    VecDeque::new(),
                )
            }
            DeliverPolicy::LastPerSubject => {
                let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
                let seqs = stream
                    .multi_last_seqs(&refs, 0, usize::MAX)
                    .map_err(query)?;
                (st.last_seq + 1, seqs.into_iter().collect())
            }
        };
        let floor = next
            .saturating_sub(1)
            .min(initial.front().map_or(u64::MAX, |s| s - 1));
        Ok(Consumer {
            c: Arc::new(ConsumerShared {
                stream: stream.clone(),
                table: PendingTable::new(cfg.max_ack_pending as usize),
                filters,
                cfg,
                inner: Mutex::new(Inner {
                    start: floor,
                    next,
                    initial,
                    delivered: SeqPair {
                        stream_seq: floor,
                        consumer_seq: 0,
                    },
                    floor: AckFloor::new(floor),
                    floor_dseq: 0,
                    meta: HashMap::new(),
                    schedule: BTreeSet::new(),
                    max_delivered: BTreeMap::new(),
                    removals_seen: stream.removal_count(),
                }),
                deleted: AtomicBool::new(false),
                removals_seen: AtomicU64::new(stream.removal_count()),
                start: AtomicU64::new(floor),
                dirty: AtomicBool::new(true),
                saved_at: Mutex::new(None),
            }),
        })
    }

    /// A consumer as it was saved; its first call checks it against the stream.
    pub(crate) fn restore(stream: &Stream, s: Saved) -> Consumer {
        let table = PendingTable::new(s.config.max_ack_pending as usize);
        let mut order: Vec<u64> = s.pending.iter().map(|p| p.0).collect();
        order.extend(s.max_delivered.iter().map(|&(q, _)| q));
        order.sort_unstable();
        order.dedup();
        let mut floor = AckFloor::new(s.floor);
        for &q in &order {
            floor.delivered(q);
        }
        let mut meta = HashMap::new();
        let mut schedule = BTreeSet::new();
        for &(q, count, first_dseq, due, waiting) in &s.pending {
            if table.insert(q) {
                table.set_waiting(q, waiting);
                meta.insert(
                    q,
                    Meta {
                        count,
                        first_dseq,
                        due,
                    },
                );
                schedule.insert((due, q));
            }
        }
        Consumer {
            c: Arc::new(ConsumerShared {
                stream: stream.clone(),
                filters: s.config.match_filters(),
                table,
                inner: Mutex::new(Inner {
                    start: s.start,
                    next: s.next,
                    initial: s.initial.into_iter().collect(),
                    delivered: SeqPair {
                        stream_seq: s.delivered.0,
                        consumer_seq: s.delivered.1,
                    },
                    floor,
                    floor_dseq: s.floor_dseq,
                    meta,
                    schedule,
                    max_delivered: s.max_delivered.into_iter().collect(),
                    // Checked against the stream on the first call.
                    removals_seen: u64::MAX,
                }),
                cfg: s.config,
                deleted: AtomicBool::new(false),
                removals_seen: AtomicU64::new(u64::MAX),
                start: AtomicU64::new(s.start),
                dirty: AtomicBool::new(false),
                saved_at: Mutex::new(None),
            }),
        }
    }

    /// The state to save, as of now.
    fn snapshot(&self) -> Saved {
        let mut inner = self.c.inner.lock();
        self.reconcile(&mut inner);
        let floor = inner.floor.floor();
        let pending = inner
            .meta
            .iter()
            .filter(|(q, _)| self.c.table.contains(**q))
            .map(|(&q, m)| (q, m.count, m.first_dseq, m.due, self.c.table.is_waiting(q)))
            .collect();
        Saved {
            config: self.c.cfg.clone(),
            start: inner.start,
            next: inner.next,
            initial: inner.initial.iter().copied().collect(),
            delivered: (inner.delivered.stream_seq, inner.delivered.consumer_seq),
            floor,
            floor_dseq: inner.floor_dseq,
            pending,
            max_delivered: inner.max_delivered.iter().map(|(&q, &d)| (q, d)).collect(),
        }
    }

    /// The bytes of its file as of now (a snapshot carries them).
    pub(crate) fn saved_bytes(&self) -> Vec<u8> {
        self.snapshot().encode()
    }

    /// Saves the state if it changed and the last save is older than [`SAVE_EVERY`] (or
    /// always, with `force`): written whole to a temporary file and renamed into place.
    pub(crate) fn save(&self, force: bool) -> std::io::Result<()> {
        let mut at = self.c.saved_at.lock();
        let due = at.is_none_or(|t| t.elapsed() >= SAVE_EVERY);
        if self.c.deleted.load(Ordering::Acquire)
            || !(force || due && self.c.dirty.load(Ordering::Acquire))
        {
            return Ok(());
        }
        // Cleared first: a change racing with the snapshot marks it dirty again.
        self.c.dirty.store(false, Ordering::Release);
        let bytes = self.snapshot().encode();
        let path = self.c.stream.dir().join(file_name(&self.c.cfg.name));
        let r = crate::io::replace_file(self.c.stream.vfs(), &path, &bytes);
        match r {
            Ok(()) => *at = Some(Instant::now()),
            Err(_) => self.c.dirty.store(true, Ordering::Release),
        }
        r
    }

    fn touch(&self) {
        // Read first: acks from many threads then share the line instead of bouncing it.
        if !self.c.dirty.load(Ordering::Relaxed) {
            self.c.dirty.store(true, Ordering::Relaxed);
        }
    }

    pub fn name(&self) -> &str {
        &self.c.cfg.name
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.c.cfg
    }

    pub(crate) fn mark_deleted(&self) {
        self.c.deleted.store(true, Ordering::Release);
    }

    /// A deleted consumer, or one whose stream was closed (its state was saved then, so a
    /// change now would be lost, or would write into a store reopened meanwhile), refuses.
    fn check(&self) -> Result<(), ConsumerError> {
        if self.c.deleted.load(Ordering::Acquire) {
            return Err(ConsumerError::Deleted(self.c.cfg.name.clone()));
        }
        if self.c.stream.is_closed() {
            return Err(ConsumerError::Closed);
        }
        Ok(())
    }

    fn now(&self) -> i64 {
        self.c.stream.now_ns()
    }

    /// The wait before delivery number `count + 1` of a message delivered `count` times.
    fn wait_after(&self, count: u64) -> i64 {
        let b = &self.c.cfg.backoff;
        let d = match count.checked_sub(1) {
            Some(i) if !b.is_empty() => b[(i as usize).min(b.len() - 1)],
            _ => self.c.cfg.ack_wait,
        };
        d.as_nanos().min(i64::MAX as u128) as i64
    }

    /// Drops pending messages the stream no longer has, when it removed anything since the
    /// last look; and forgets bookkeeping of messages acknowledged meanwhile.
    fn reconcile(&self, inner: &mut Inner) {
        let removals = self.c.stream.removal_count();
        if removals != inner.removals_seen {
            inner.removals_seen = removals;
            self.c.removals_seen.store(removals, Ordering::Release);
            let gone: Vec<u64> = inner
                .meta
                .keys()
                .chain(inner.max_delivered.keys())
                .copied()
                .filter(|&q| !self.c.stream.contains(q))
                .collect();
            if !gone.is_empty() {
                self.touch();
            }
            for q in gone {
                self.c.table.ack(q);
                inner.max_delivered.remove(&q);
                self.drop_meta(inner, q);
                inner.floor.forget(q);
            }
            inner.initial.retain(|&q| self.c.stream.contains(q));
        }
        if inner.meta.len() > 2 * self.c.table.len() as usize + 64 {
            let acked: Vec<u64> = inner
                .meta
                .keys()
                .copied()
                .filter(|&q| !self.c.table.contains(q))
                .collect();
            for q in acked {
                self.drop_meta(inner, q);
            }
        }
    }

    /// Forgets the redelivery bookkeeping of `seq` (acknowledged, removed or exhausted).
    fn drop_meta(&self, inner: &mut Inner, seq: u64) {
        if let Some(m) = inner.meta.remove(&seq) {
            inner.schedule.remove(&(m.due, seq));
        }
    }

    /// Flags every pending message whose wait ran out as waiting for redelivery.
    fn mark_due(&self, inner: &mut Inner, now: i64) {
        for &(_, q) in inner.schedule.range(..(now.saturating_add(1), 0)) {
            self.c.table.set_waiting(q, true);
        }
    }

    /// Up to `max_msgs` messages of at most `max_bytes` in all (0: no byte bound; the first
    /// message always goes): redeliveries that are due first (by due time, then sequence),
    /// then new matching messages, within max_ack_pending. A message that fails its checksum
    /// is passed over (it cannot be delivered; `Stream::verify` reports it), so damage never
    /// stalls a consumer.
    pub fn fetch(&self, max_msgs: usize, max_bytes: usize) -> Result<Vec<Delivery>, ConsumerError> {
        self.check()?;
        let mut inner = self.c.inner.lock();
        self.reconcile(&mut inner);
        let now = self.now();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // Set when a due redelivery does not fit: nothing new may pass it.
        let mut full = false;
        let fits = |out: &Vec<Delivery>, bytes: usize, m: &StoredMessage| {
            let size = m.subject().len() + m.headers().len() + m.payload().len();
            (out.len() < max_msgs
                && (max_bytes == 0 || out.is_empty() || bytes + size <= max_bytes))
                .then_some(size)
        };
        while let Some(&(due, q)) = inner.schedule.first() {
            if due > now || out.len() >= max_msgs {
                break;
            }
            if !self.c.table.contains(q) {
                self.drop_meta(&mut inner, q);
                continue;
            }
            let meta = inner.meta[&q];
            if self.c.cfg.max_deliver.is_some_and(|m| meta.count >= m) {
                // Exhausted: kept in the stream, no longer pending (field failure 2).
                self.drop_meta(&mut inner, q);
                if self.c.table.ack(q).is_some() {
                    inner.max_delivered.insert(q, meta.first_dseq);
                }
                continue;
            }
            let Ok(m) = self.c.stream.load(q) else {
                self.c.table.ack(q);
                self.drop_meta(&mut inner, q);
                inner.floor.forget(q);
                continue;
            };
            let Some(size) = fits(&out, bytes, &m) else {
                full = true;
                break;
            };
            bytes += size;
            inner.schedule.remove(&(due, q));
            inner.delivered.consumer_seq += 1;
            let count = meta.count + 1;
            let due = now.saturating_add(self.wait_after(count));
            inner.meta.insert(q, Meta { count, due, ..meta });
            inner.schedule.insert((due, q));
            self.c.table.set_waiting(q, false);
            out.push(Delivery {
                message: m,
                delivery_count: count,
                delivery_seq: inner.delivered.consumer_seq,
            });
        }
        let tracked = self.c.cfg.ack != AckPolicy::None;
        let mut next = Candidates::default();
        while !full && out.len() < max_msgs {
            let mut want = max_msgs - out.len();
            if tracked {
                // Acks from other threads only make room, so this never overshoots.
                let room = self
                    .c
                    .cfg
                    .max_ack_pending
                    .saturating_sub(self.c.table.len());
                want = want.min(usize::try_from(room).unwrap_or(usize::MAX));
                if want == 0 {
                    break;
                }
            }
            let Some(m) = self.next_new(&mut inner, &mut next, want)? else {
                break;
            };
            let Some(size) = fits(&out, bytes, &m) else {
                break;
            };
            // The table refuses only when full (below max_ack_pending only if one of its
            // lanes is, which the sizing makes vanishingly rare): deliver the rest later.
            if tracked && !self.c.table.insert(m.seq) {
                break;
            }
            bytes += size;
            self.take_new(&mut inner, m.seq);
            inner.delivered.consumer_seq += 1;
            let dseq = inner.delivered.consumer_seq;
            inner.delivered.stream_seq = m.seq;
            if tracked {
                let due = now.saturating_add(self.wait_after(1));
                inner.floor.delivered(m.seq);
                inner.meta.insert(
                    m.seq,
                    Meta {
                        count: 1,
                        first_dseq: dseq,
                        due,
                    },
                );
                inner.schedule.insert((due, m.seq));
            }
            out.push(Delivery {
                message: m,
                delivery_count: 1,
                delivery_seq: dseq,
            });
        }
        if !out.is_empty() {
            self.touch();
        }
        drop(inner);
        if !tracked {
            // Without acks a delivery is the acknowledgement: retention may release it now.
            let mut seqs: Vec<u64> = out.iter().map(|d| d.message.seq).collect();
            seqs.sort_unstable();
            self.c.stream.retain_check(&seqs);
        }
        Ok(out)
    }

    /// The next message to deliver for the first time (not yet taken); `want` is how many
    /// more the caller could take. A message removed or damaged since the stream listed it is
    /// passed over: it cannot be delivered.
    fn next_new(
        &self,
        inner: &mut Inner,
        next: &mut Candidates,
        want: usize,
    ) -> Result<Option<StoredMessage>, ConsumerError> {
        while let Some(&q) = inner.initial.front() {
            match self.c.stream.load(q) {
                Ok(m) => return Ok(Some(m)),
                Err(_) => {
                    inner.initial.pop_front();
                }
            }
        }
        loop {
            if next.seqs.is_empty() {
                let from = next.from.max(inner.next);
                let seqs = self.c.stream.next_matching(&self.c.filters, from, want);
                next.seqs = seqs.map_err(query)?.into();
            }
            let Some(q) = next.seqs.pop_front() else {
                return Ok(None);
            };
            next.from = q + 1;
            match self.c.stream.load(q) {
                Ok(m) => return Ok(Some(m)),
                Err(LoadError::Closed) => return Err(ConsumerError::Closed),
                Err(_) => {}
            }
        }
    }

    fn take_new(&self, inner: &mut Inner, seq: u64) {
        if inner.initial.front() == Some(&seq) {
            inner.initial.pop_front();
        } else {
            inner.next = seq + 1;
        }
    }

    /// Whether the consumer's filters take `subject`.
    pub(crate) fn matches(&self, subject: &str) -> bool {
        self.c.filters.iter().any(|f| subject::matches(f, subject))
    }

    /// The stream was truncated to `last`: sequences above it will be handed out again to new
    /// messages, so everything this consumer knows about them is dropped and it delivers
    /// from `last + 1` again.
    pub(crate) fn truncated(&self, last: u64) {
        let mut inner = self.c.inner.lock();
        let above: Vec<u64> = inner.meta.keys().copied().filter(|&q| q > last).collect();
        for q in above {
            self.c.table.ack(q);
            self.drop_meta(&mut inner, q);
            inner.floor.forget(q);
        }
        let exhausted: Vec<u64> = inner
            .max_delivered
            .range(last + 1..)
            .map(|(&q, _)| q)
            .collect();
        for q in exhausted {
            inner.max_delivered.remove(&q);
            inner.floor.forget(q);
        }
        inner.initial.retain(|&q| q <= last);
        inner.next = inner.next.min(last + 1);
        inner.delivered.stream_seq = inner.delivered.stream_seq.min(last);
        inner.start = inner.start.min(last);
        self.c.start.store(inner.start, Ordering::Release);
        inner.floor.truncate(last);
        self.touch();
    }

    /// Whether a message just appended (so not yet delivered) on `subject` is one this
    /// consumer will deliver. Takes no lock: every append to an interest stream asks.
    pub(crate) fn wants_new(&self, seq: u64, subject: &str) -> bool {
        self.matches(subject) && seq > self.c.start.load(Ordering::Acquire)
    }

    /// True when the consumer needs `seq` (on `subject`) no longer: not interested in it, or
    /// delivered and acknowledged (or terminated). Retention asks this of every consumer.
    pub(crate) fn done_with(&self, seq: u64, subject: &str) -> bool {
        if !self.matches(subject) {
            return true;
        }
        let inner = self.c.inner.lock();
        if seq <= inner.start {
            return true;
        }
        // Below `next` a matching message was delivered (or skipped as not a last-per-subject
        // starter), unless it is a starter still queued.
        let undelivered = seq >= inner.next || inner.initial.binary_search(&seq).is_ok();
        !undelivered && !self.c.table.contains(seq) && !inner.max_delivered.contains_key(&seq)
    }

    /// Where new deliveries continue from, and the filters (retention's re-check at open).
    pub(crate) fn next_new_from(&self) -> (u64, &[String]) {
        (self.c.inner.lock().next, &self.c.filters)
    }

    /// The messages this consumer still holds back: pending, past max_deliver, and those it
    /// is interested in but has not delivered (`first` onwards, matching). For retention when
    /// the consumer is deleted.
    pub(crate) fn held(&self) -> (Vec<u64>, u64, Vec<String>) {
        let inner = self.c.inner.lock();
        let mut v: Vec<u64> = inner.meta.keys().copied().collect();
        v.extend(inner.max_delivered.keys().copied());
        v.extend(inner.initial.iter().copied());
        (v, inner.next, self.c.filters.clone())
    }

    /// Acknowledges `seq` (with `AckPolicy::All`, every pending message up to it). Explicit
    /// acks take no lock (on a stream with limits retention).
    pub fn ack(&self, seq: u64) -> Result<AckOutcome, ConsumerError> {
        let acked = self.ack_only(seq)?;
        if acked.seqs().is_empty() {
            return Ok(AckOutcome::NotPending);
        }
        self.c.stream.retain_check(acked.seqs());
        Ok(AckOutcome::Done)
    }

    /// The sequences the acknowledgement of `seq` applied to (sorted; none: not pending).
    fn ack_only(&self, seq: u64) -> Result<Acked, ConsumerError> {
        self.check()?;
        match self.c.cfg.ack {
            AckPolicy::None => Ok(Acked::Many(Vec::new())),
            AckPolicy::Explicit => {
                // The stream removed something since this consumer last looked: a message
                // already gone is not acknowledged (the locked path below drops it). Checked
                // before the ack, so an ack that applies is never reported as not pending
                // when another consumer's ack removes the message right after it.
                let seen = self.c.removals_seen.load(Ordering::Acquire);
                let gone = self.c.stream.removal_count() != seen && !self.c.stream.contains(seq);
                if !gone && self.c.table.ack(seq).is_some() {
                    self.touch();
                    return Ok(Acked::One(seq));
                }
                // A message past max_deliver can still be acknowledged (then it may go).
                let mut inner = self.c.inner.lock();
                self.reconcile(&mut inner);
                if inner.max_delivered.remove(&seq).is_none() {
                    return Ok(Acked::Many(Vec::new()));
                }
                self.touch();
                Ok(Acked::One(seq))
            }
            AckPolicy::All => {
                let mut inner = self.c.inner.lock();
                self.reconcile(&mut inner);
                let upto: Vec<u64> = inner.meta.keys().copied().filter(|&q| q <= seq).collect();
                let mut acked = Vec::new();
                for q in upto {
                    if self.c.table.ack(q).is_some() {
                        acked.push(q);
                    }
                    self.drop_meta(&mut inner, q);
                }
                let exhausted: Vec<u64> =
                    inner.max_delivered.range(..=seq).map(|(&q, _)| q).collect();
                for q in exhausted {
                    inner.max_delivered.remove(&q);
                    acked.push(q);
                }
                acked.sort_unstable();
                if !acked.is_empty() {
                    self.touch();
                }
                Ok(Acked::Many(acked))
            }
        }
    }

    /// Asks for `seq` to be redelivered, after `delay` (none: at the next fetch).
    pub fn nak(&self, seq: u64, delay: Option<Duration>) -> Result<AckOutcome, ConsumerError> {
        let d = delay.map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64);
        self.reschedule(seq, |now, _| now.saturating_add(d), true)
    }

    /// Restarts `seq`'s ack wait (the host is still working on it).
    pub fn in_progress(&self, seq: u64) -> Result<AckOutcome, ConsumerError> {
        self.reschedule(seq, |now, wait| now.saturating_add(wait), false)
    }

    fn reschedule(
        &self,
        seq: u64,
        due: impl FnOnce(i64, i64) -> i64,
        waiting: bool,
    ) -> Result<AckOutcome, ConsumerError> {
        self.check()?;
        let mut inner = self.c.inner.lock();
        self.reconcile(&mut inner);
        let now = self.now();
        // A message whose wait ran out is waiting for redelivery, whoever looks first.
        self.mark_due(&mut inner, now);
        let Some(meta) = inner.meta.get(&seq).copied() else {
            return Ok(AckOutcome::NotPending);
        };
        if !self.c.table.contains(seq) || (!waiting && self.c.table.is_waiting(seq)) {
            return Ok(AckOutcome::NotPending);
        }
        let new_due = due(now, self.wait_after(meta.count));
        inner.schedule.remove(&(meta.due, seq));
        inner.schedule.insert((new_due, seq));
        inner.meta.insert(
            seq,
            Meta {
                due: new_due,
                ..meta
            },
        );
        if waiting && !self.c.table.set_waiting(seq, true) {
            return Ok(AckOutcome::NotPending);
        }
        Ok(self.outcome(true))
    }

    /// `Done` (and a change to save) or `NotPending`.
    fn outcome(&self, done: bool) -> AckOutcome {
        if done {
            self.touch();
            AckOutcome::Done
        } else {
            AckOutcome::NotPending
        }
    }

    /// Stops delivering `seq`: it counts as acknowledged.
    pub fn term(&self, seq: u64) -> Result<AckOutcome, ConsumerError> {
        self.check()?;
        let done = {
            let mut inner = self.c.inner.lock();
            self.reconcile(&mut inner);
            let done =
                self.c.table.ack(seq).is_some() || inner.max_delivered.remove(&seq).is_some();
            self.drop_meta(&mut inner, seq);
            done
        };
        if done {
            self.c.stream.retain_check(&[seq]);
        }
        Ok(self.outcome(done))
    }

    /// Saves the consumer's state now (temporary file, fsync, rename, directory fsync), so a
    /// crash after this call redelivers nothing acknowledged before it. The maintenance thread
    /// does this at most once a second on its own; a host that must not redeliver calls it.
    pub fn save_now(&self) -> Result<(), ConsumerError> {
        self.check()?;
        if !self.c.stream.is_persistent() {
            return Ok(());
        }
        self.save(true)
            .map_err(|e| ConsumerError::Durability(DurabilityError::from_io(e)))
    }

    /// The counters, exact as of this call.
    pub fn state(&self) -> Result<ConsumerState, ConsumerError> {
        self.check()?;
        let mut inner = self.c.inner.lock();
        self.reconcile(&mut inner);
        let now = self.now();
        self.mark_due(&mut inner, now);
        let delivered = inner.delivered;
        let floor = {
            let Inner {
                floor,
                max_delivered,
                ..
            } = &mut *inner;
            let table = &self.c.table;
            floor.advance(
                |q| table.contains(q) || max_delivered.contains_key(&q),
                delivered.stream_seq,
            )
        };
        let first_pending = inner
            .meta
            .iter()
            .filter(|(q, _)| self.c.table.contains(**q))
            .map(|(&q, m)| (q, m.first_dseq))
            .chain(inner.max_delivered.iter().map(|(&q, &d)| (q, d)))
            .min();
        inner.floor_dseq = first_pending.map_or(delivered.consumer_seq, |(_, d)| d - 1);
        let mut num_pending = inner.initial.len() as u64;
        for f in &self.c.filters {
            num_pending += self
                .c
                .stream
                .num_pending(inner.next, f, false)
                .map_err(query)?;
        }
        let num_redelivered = inner
            .meta
            .iter()
            .filter(|(q, m)| m.count > 1 && self.c.table.contains(**q))
            .count() as u64;
        Ok(ConsumerState {
            delivered,
            ack_floor: SeqPair {
                stream_seq: floor,
                consumer_seq: inner.floor_dseq,
            },
            num_pending,
            num_ack_pending: self.c.table.len(),
            num_redelivered,
            num_waiting_redelivery: self.c.table.waiting(),
            num_max_delivered: inner.max_delivered.len() as u64,
        })
    }
}
