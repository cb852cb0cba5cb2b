//! A stream: the public API over one log (durability is in `durability`, the write path in
//! `flush`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;

use crate::clock::Clock;
use crate::config::{Discard, Durability, Limits, StreamConfig};
use crate::durability::Request;
use crate::error::{AppendError, DurabilityError, LoadError, Poisoned, WriteError};
use crate::expect::Expect;
use crate::expiry::Reason;
use crate::flush::{CkptTiming, Ckpts};
use crate::io::Vfs;
use crate::limits;
use crate::record::{self, Kind, FLAG_BATCH};
use crate::recovery::RecoveryReport;
use crate::rollup::{self, Rollup};
use crate::state::{Data, LogState, MAX_SEQ};
use crate::subject;
use crate::ttl::Ttl;

/// Largest encoded size of one batch (it must fit a block with 32-bit offsets).
const MAX_BATCH_BYTES: usize = 1 << 30;

/// Where and when an appended message was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Appended {
    pub seq: u64,
    pub ts: i64,
    /// The message's id was appended within the duplicate window: nothing was stored, and
    /// `seq` and `ts` are the first message's.
    pub duplicate: bool,
}

impl Appended {
    pub(crate) fn stored(seq: u64, ts: i64) -> Self {
        Appended {
            seq,
            ts,
            duplicate: false,
        }
    }
}

/// The result of a batch append: sequences `first_seq..=last_seq`, all with timestamp `ts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BatchAppended {
    pub first_seq: u64,
    pub last_seq: u64,
    pub ts: i64,
}

pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
pub(crate) const CHECKPOINT_PREV_FILE: &str = "checkpoint.prev";
pub(crate) const LEASE_FILE: &str = "lease";

/// A message to append.
#[derive(Clone, Copy, Debug)]
pub struct NewMessage<'a> {
    pub subject: &'a str,
    pub headers: &'a [u8],
    pub payload: &'a [u8],
    /// Its own TTL (the stream must allow them); `None` lives by the stream's limits.
    pub ttl: Option<Ttl>,
    /// What it replaces (the stream must allow rollups); see [`Rollup`].
    pub rollup: Option<Rollup>,
    /// Conditions checked atomically with the append; see [`Expect`].
    pub expect: Expect<'a>,
    /// Its id for deduplication (1 to 255 bytes), if the stream deduplicates; see
    /// [`crate::Dedup`].
    pub msg_id: Option<&'a [u8]>,
}

impl<'a> NewMessage<'a> {
    pub fn new(subject: &'a str, payload: &'a [u8]) -> Self {
        NewMessage {
            subject,
            headers: &[],
            payload,
            ttl: None,
            rollup: None,
            expect: Expect::default(),
            msg_id: None,
        }
    }
    /// Deduplicate by `id` within the stream's duplicate window.
    pub fn with_msg_id(mut self, id: &'a [u8]) -> Self {
        self.msg_id = Some(id);
        self
    }
    pub fn with_rollup(mut self, r: Rollup) -> Self {
        self.rollup = Some(r);
        self
    }
    /// Append only if the stream's last sequence is `seq` (0: the stream is empty).
    pub fn expect_last_seq(mut self, seq: u64) -> Self {
        self.expect.last_seq = Some(seq);
        self
    }
    /// Append only if the last message of this subject has sequence `seq` (0: none).
    pub fn expect_last_subject_seq(mut self, seq: u64) -> Self {
        self.expect.last_subject_seq = Some(seq);
        self
    }
    /// Append only if the last message matching `filter` has sequence `seq` (0: none).
    pub fn expect_last_seq_for(mut self, filter: &'a str, seq: u64) -> Self {
        self.expect.last_subject_seq = Some(seq);
        self.expect.subject_filter = Some(filter);
        self
    }
    pub fn with_headers(mut self, headers: &'a [u8]) -> Self {
        self.headers = headers;
        self
    }
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Size of its record.
    pub(crate) fn record_len(&self) -> usize {
        let x = record::Extras {
            // Only whether there is one matters for the length.
            ttl: self.ttl.map(|_| 0),
            msg_id: self.msg_id.unwrap_or_default(),
        };
        record::msg_len(
            self.subject.len(),
            self.headers.len(),
            self.payload.len(),
            &x,
        )
    }
}

/// A message read from a stream (one allocation holding subject, headers and payload).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: u64,
    pub ts: i64,
    /// The TTL it was stored with (after any raise to the marker TTL).
    pub ttl: Option<Ttl>,
    /// A subject delete marker written by the store.
    pub marker: bool,
    /// It replaced earlier messages when it was appended.
    pub rollup: Option<Rollup>,
    data: Box<[u8]>,
    subject_len: usize,
    headers_len: usize,
    payload_len: usize,
}

impl StoredMessage {
    pub(crate) fn from_record(r: &record::RecordRef<'_>) -> Self {
        let n = r.subject.len() + r.headers.len() + r.payload.len() + r.msg_id.len();
        let mut data = Vec::with_capacity(n);
        for part in [r.subject, r.headers, r.payload, r.msg_id] {
            data.extend_from_slice(part);
        }
        StoredMessage {
            seq: r.seq,
            ts: r.ts,
            ttl: r.ttl.and_then(Ttl::from_raw),
            marker: r.flags & record::FLAG_MARKER != 0,
            rollup: Rollup::from_flags(r.flags),
            data: data.into_boxed_slice(),
            subject_len: r.subject.len(),
            headers_len: r.headers.len(),
            payload_len: r.payload.len(),
        }
    }
    pub fn subject(&self) -> &str {
        std::str::from_utf8(&self.data[..self.subject_len]).unwrap_or("")
    }
    pub fn headers(&self) -> &[u8] {
        &self.data[self.subject_len..self.subject_len + self.headers_len]
    }
    pub fn payload(&self) -> &[u8] {
        let at = self.subject_len + self.headers_len;
        &self.data[at..at + self.payload_len]
    }
    /// Its message id, if it was appended with one.
    pub fn msg_id(&self) -> Option<&[u8]> {
        let at = self.subject_len + self.headers_len + self.payload_len;
        Some(&self.data[at..]).filter(|id| !id.is_empty())
    }
}

impl std::fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredMessage")
            .field("seq", &self.seq)
            .field("ts", &self.ts)
            .field("ttl", &self.ttl)
            .field("marker", &self.marker)
            .field("rollup", &self.rollup)
            .field("subject", &self.subject())
            .field("headers_len", &self.headers_len)
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// What `Stream::verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Live messages read.
    pub checked: u64,
    /// Sequences whose records fail their checksum, as inclusive ranges.
    pub damaged: Vec<(u64, u64)>,
    /// Blocks whose header or (sealed) trailer fails its checksum. Their records may all be
    /// intact, but the next open that reads the file does more work or loses the trailer's
    /// table; `repair` rewrites them.
    pub damaged_blocks: Vec<u64>,
}

/// A snapshot of a stream's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamState {
    pub messages: u64,
    /// Encoded bytes of the live messages.
    pub bytes: u64,
    /// First live sequence, or `last_seq + 1` when empty.
    pub first_seq: u64,
    pub first_ts: i64,
    pub last_seq: u64,
    pub last_ts: i64,
    /// Sequences between first and last that hold no message.
    pub num_deleted: u64,
    /// Those sequences as inclusive ranges.
    pub deleted: Vec<(u64, u64)>,
    pub blocks: usize,
    /// The bound on this stream's size in force: its own `max_bytes`, or the bytes the
    /// store's budget leaves to appends (`BudgetInfo::append_limit`, shared with the other
    /// streams), whichever is lower. Never unbounded.
    pub max_bytes: u64,
    /// Which of the two `max_bytes` is.
    pub bound_by: BoundBy,
}

/// What bounds a stream's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BoundBy {
    /// Its own `Limits::max_bytes`.
    Stream,
    /// The store's byte budget (shared with the other streams).
    #[default]
    Store,
}

pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) cfg: StreamConfig,
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) dir: PathBuf,
    pub(crate) persistent: bool,
    pub(crate) state: RwLock<LogState>,
    /// Serializes writes (and the linked write+fsync of a durable leader).
    pub(crate) write_lock: Mutex<()>,
    /// Serializes fsyncs and checkpoints; writes never wait behind it.
    pub(crate) sync_lock: Mutex<CkptTiming>,
    pub(crate) lease_lock: Mutex<()>,
    pub(crate) lease: AtomicU64,
    pub(crate) written_lsn: AtomicU64,
    pub(crate) synced_lsn: AtomicU64,
    /// When the stream was opened; `last_sync_us` counts from here.
    pub(crate) opened: Instant,
    /// Microseconds after `opened` of the last completed sync (an atomic: `Interval` appends
    /// read it on every append).
    pub(crate) last_sync_us: AtomicU64,
    /// Group commit: whether a leader is syncing, and the condvar followers wait on.
    pub(crate) commit: Mutex<bool>,
    pub(crate) committed: Condvar,
    /// Durable single appends waiting for a combining leader, and whether one is leading.
    pub(crate) queue: crossbeam::queue::SegQueue<Arc<Request>>,
    pub(crate) combining: AtomicBool,
    /// The two checkpoints on disk (`checkpoint` and `checkpoint.prev`).
    pub(crate) ckpts: Mutex<Ckpts>,
    /// Set when the stream is deleted: no further I/O may touch its directory.
    pub(crate) deleted: AtomicBool,
    /// The failure that stopped writes, until a heal clears it (`docs/durability.md`).
    pub(crate) poison: Mutex<Option<Poisoned>>,
    /// `poison` is set: read on every write without the lock.
    pub(crate) poisoned: AtomicBool,
    /// Healing: log positions whose records a heal dropped, each with its cause, and when
    /// the last attempt ran.
    pub(crate) heal: Mutex<crate::heal::HealLog>,
    /// Heals so far: appends look at `heal` only if one happened.
    pub(crate) heals: AtomicU64,
    pub(crate) closed: AtomicBool,
    pub(crate) recovery: RecoveryReport,
    /// Watchers waiting for new messages wait on `feed` under `feed_lock`; `watchers` counts
    /// live watchers so appends skip the wake-up when there is none. The lock holds the event
    /// descriptors of watchers a host polls instead of blocking on (signalled with the condvar).
    pub(crate) feed_lock: Mutex<Vec<Arc<crate::watch::FeedFd>>>,
    pub(crate) feed: Condvar,
    pub(crate) watchers: std::sync::atomic::AtomicUsize,
    pub(crate) consumers: Mutex<std::collections::BTreeMap<String, crate::consumer::Consumer>>,
    pub(crate) damaged_consumers: Mutex<Vec<(String, String)>>,
    /// `damaged_consumers` is not empty: read by every append and acknowledgement on an
    /// interest or work-queue stream, so kept apart from the list's lock.
    interest_unknown: AtomicBool,
    /// The state's removal counter, readable without the state lock.
    pub(crate) removals: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes of the stream's directory and its files other than blocks (config, checkpoints,
    /// lease, consumers), as last counted in the store's usage.
    pub(crate) meta_bytes: AtomicU64,
    /// Held by a compaction from its pick to its swap, and by `erase` (which overwrites a
    /// record in place) and healing: never by appends.
    pub(crate) compact_lock: Mutex<()>,
    /// Microseconds after `opened` before which the next compaction waits (duty cycle).
    pub(crate) compact_next_us: AtomicU64,
    /// Bytes written by compaction since open (write amplification).
    pub(crate) compacted_bytes: AtomicU64,
    /// Microseconds after `opened` of the last look for space waiting on checkpoints (an
    /// O(blocks) scan, so at most one per `RECLAIM_CKPT_EVERY`).
    pub(crate) reclaim_checked_us: AtomicU64,
}

/// A write failure of the append path, as the other write operations report it.
pub(crate) fn as_write(e: AppendError) -> WriteError {
    match e {
        AppendError::Durability(d) => WriteError::Durability(d),
        AppendError::Poisoned(p) => WriteError::Poisoned(p),
        _ => WriteError::Closed,
    }
}

/// A handle to one stream. Cheap to clone; every method may be called from any thread.
#[derive(Clone)]
pub struct Stream {
    pub(crate) s: Arc<Shared>,
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        cfg: StreamConfig,
        vfs: Arc<dyn Vfs>,
        clock: Arc<dyn Clock>,
        dir: PathBuf,
        persistent: bool,
        state: LogState,
        lease: u64,
        recovery: RecoveryReport,
    ) -> Stream {
        let lsn = state.lsn;
        let removals = state.removals.clone();
        let mut state = state;
        state.configure(&cfg, clock.now_ns());
        Stream {
            s: Arc::new(Shared {
                name: cfg.name.clone(),
                cfg,
                vfs,
                clock,
                dir,
                persistent,
                state: RwLock::new(state),
                write_lock: Mutex::new(()),
                sync_lock: Mutex::new(CkptTiming {
                    ckpt_lsn: lsn,
                    ckpt_at: Instant::now(),
                }),
                lease_lock: Mutex::new(()),
                lease: AtomicU64::new(lease),
                written_lsn: AtomicU64::new(lsn),
                synced_lsn: AtomicU64::new(lsn),
                opened: Instant::now(),
                last_sync_us: AtomicU64::new(0),
                commit: Mutex::new(false),
                ckpts: Mutex::new(Ckpts::default()),
                queue: crossbeam::queue::SegQueue::new(),
                combining: AtomicBool::new(false),
                deleted: AtomicBool::new(false),
                committed: Condvar::new(),
                poison: Mutex::new(None),
                poisoned: AtomicBool::new(false),
                heal: Mutex::new(Default::default()),
                heals: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                recovery,
                feed_lock: Mutex::new(Vec::new()),
                feed: Condvar::new(),
                watchers: std::sync::atomic::AtomicUsize::new(0),
                consumers: Mutex::new(std::collections::BTreeMap::new()),
                damaged_consumers: Mutex::new(Vec::new()),
                interest_unknown: AtomicBool::new(false),
                removals,
                meta_bytes: AtomicU64::new(0),
                compact_lock: Mutex::new(()),
                compact_next_us: AtomicU64::new(0),
                compacted_bytes: AtomicU64::new(0),
                reclaim_checked_us: AtomicU64::new(0),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.s.name
    }

    /// The stream's configuration, with its current limits.
    pub fn config(&self) -> StreamConfig {
        let mut c = self.s.cfg.clone();
        c.limits = self.s.state.read().limits;
        c
    }

    /// Changes the stream's limits. They are persisted, and applied at once: a tightened limit
    /// removes the oldest messages (whatever the discard policy) before this returns.
    pub fn update_limits(&self, limits: Limits) -> Result<(), WriteError> {
        limits.validate().map_err(WriteError::Config)?;
        self.check_writable().map_err(as_write)?;
        if self.s.persistent {
            let mut cfg = self.s.cfg.clone();
            cfg.limits = limits;
            let id = self.s.state.read().stream_id;
            crate::store::write_config(&*self.s.vfs, &self.s.dir, id, &cfg)
                .map_err(|e| WriteError::Durability(DurabilityError::from_io(e)))?;
        }
        let lsn = {
            let mut st = self.s.state.write();
            // Applied as a discard-old stream would: a tightened limit takes effect now.
            let mut now_limits = limits;
            now_limits.discard = crate::config::Discard::Old;
            st.set_limits(now_limits);
            let r = self.enforce(&mut st, None);
            st.set_limits(limits);
            r.map_err(as_write)?;
            st.lsn
        };
        self.after_write(lsn, 0)?;
        self.expire_now()?;
        Ok(())
    }

    /// Applies the limits now, max_age and due TTLs included (called at open; the maintenance
    /// thread expires every tick).
    pub fn enforce_limits(&self) -> Result<(), WriteError> {
        self.check_writable().map_err(as_write)?;
        let lsn = {
            let mut st = self.s.state.write();
            let before = st.lsn;
            self.enforce(&mut st, None).map_err(as_write)?;
            (st.lsn != before).then_some(st.lsn)
        };
        if let Some(lsn) = lsn {
            self.after_write(lsn, 0)?;
        }
        self.expire_now()?;
        Ok(())
    }

    /// Removes the messages matching `filter` below `up_to_seq` (`None`: all of them; the
    /// sequence itself is kept, so 1 removes nothing), keeping the newest `keep` of every
    /// matching subject. Returns how many went.
    pub fn purge_filtered(
        &self,
        filter: &str,
        up_to_seq: Option<u64>,
        keep: u64,
    ) -> Result<u64, WriteError> {
        subject::validate_filter(filter).map_err(WriteError::Config)?;
        self.check_writable().map_err(as_write)?;
        let (n, lsn, last) = {
            let mut st = self.s.state.write();
            if self.s.closed.load(Ordering::Acquire) {
                return Err(WriteError::Closed);
            }
            let bound = up_to_seq.unwrap_or(u64::MAX);
            let mut seqs = Vec::new();
            if let Some(ix) = &st.index {
                ix.for_each_match(filter, |id| {
                    let Some(l) = ix.seqs(id) else { return };
                    let keep_from = l.len().saturating_sub(keep) as usize;
                    let mut v = l.first_n(keep_from);
                    v.retain(|&q| q < bound);
                    seqs.extend(v);
                });
            }
            seqs.sort_unstable();
            if seqs.is_empty() {
                return Ok(0);
            }
            let now = self.s.clock.now_ns();
            let mark = self.s.cfg.removal_markers;
            self.remove_marked(&mut st, &seqs, mark, Reason::Purge, now)?;
            if let Some(d) = &mut st.dedup {
                d.purged(&seqs);
            }
            (seqs.len() as u64, st.lsn, st.last_seq)
        };
        self.after_write(lsn, last)?;
        Ok(n)
    }

    /// What recovery found when this stream was opened: lost sequences, a torn tail, whether a
    /// checkpoint was used.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.s.recovery
    }

    /// Time since the last completed sync.
    pub(crate) fn since_last_sync(&self) -> std::time::Duration {
        let now = self.s.opened.elapsed().as_micros() as u64;
        std::time::Duration::from_micros(
            now.saturating_sub(self.s.last_sync_us.load(Ordering::Acquire)),
        )
    }

    /// The sync interval of an `Interval` stream with files.
    pub(crate) fn sync_interval(&self) -> Option<std::time::Duration> {
        match self.s.cfg.durability {
            Durability::Interval(d) if self.s.persistent => Some(d),
            _ => None,
        }
    }

    /// A write or fsync failed and the stream has not healed yet (see `docs/durability.md`,
    /// "A failed write or fsync").
    pub fn is_poisoned(&self) -> bool {
        self.s.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn check_writable(&self) -> Result<(), AppendError> {
        if self.s.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        if self.is_poisoned() {
            self.heal().map_err(AppendError::Durability)?;
        }
        Ok(())
    }

    /// `check_writable` for a caller holding one of the stream's locks: a heal takes them all
    /// (the locks are not reentrant), so here a poisoned stream is only reported. The caller
    /// has tried to heal before taking its lock.
    pub(crate) fn check_open(&self) -> Result<(), AppendError> {
        if self.s.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        self.check_poison().map_err(AppendError::Durability)
    }

    pub(crate) fn check_message(&self, m: &NewMessage<'_>) -> Result<(), AppendError> {
        self.check_subject(m.subject)?;
        self.check_size(m)
    }

    /// Checks what an append checks of one message on its own, storing nothing: subject,
    /// size, message id, TTL, rollup permission and the expectation's filter. A batch fails on
    /// the first message that fails these, and a host can use this to say which one it was.
    pub fn check_msg(&self, m: &NewMessage<'_>) -> Result<(), AppendError> {
        self.check_message(m)?;
        self.check_origin(m)
    }

    /// The stream was closed (with its store) or deleted: every operation returns `Closed`.
    pub fn is_closed(&self) -> bool {
        self.s.closed.load(Ordering::Acquire)
    }

    /// What an origin append may ask for: a rollup only if the stream allows them, and a
    /// valid filter for an expected sequence. (A replica applies whatever its origin did.)
    fn check_origin(&self, m: &NewMessage<'_>) -> Result<(), AppendError> {
        if m.rollup.is_some() && !self.s.cfg.allow_rollup {
            return Err(AppendError::RollupNotAllowed);
        }
        m.expect.validate()
    }

    /// The TTL is allowed and in range.
    fn check_ttl(&self, ttl: Option<Ttl>) -> Result<(), AppendError> {
        let Some(t) = ttl else { return Ok(()) };
        if !self.s.cfg.allow_msg_ttl {
            return Err(AppendError::TtlNotAllowed);
        }
        match t {
            Ttl::Secs(secs) if !t.is_valid() => Err(AppendError::InvalidTtl { secs }),
            _ => Ok(()),
        }
    }

    /// The TTL field a message gets: a TTL shorter than the marker TTL is raised to it, so a
    /// marker left earlier on the subject always expires first and the message's own expiry
    /// leaves a fresh marker (with one message per subject the append replaces that marker).
    pub(crate) fn effective_ttl(&self, st: &LogState, ttl: Ttl) -> u64 {
        match (ttl, self.s.cfg.subject_delete_marker_ttl) {
            (Ttl::Secs(s), Some(m)) if st.limits.max_msgs_per_subject != Some(1) => {
                s.max(m.as_secs())
            }
            _ => ttl.raw(),
        }
    }

    /// The subject is valid and accepted by the stream's subject filters.
    fn check_subject(&self, subject: &str) -> Result<(), AppendError> {
        subject::validate_subject(subject).map_err(AppendError::InvalidSubject)?;
        let subjects = &self.s.cfg.subjects;
        if !subjects.is_empty() && !subjects.iter().any(|f| subject::matches(f, subject)) {
            return Err(AppendError::SubjectNotInStream(subject.to_owned()));
        }
        Ok(())
    }

    /// Headers and payload fit `max_msg_size`, and the TTL is acceptable.
    fn check_size(&self, m: &NewMessage<'_>) -> Result<(), AppendError> {
        if let Some(id) = m.msg_id {
            if id.is_empty() || id.len() > record::MAX_MSG_ID_LEN {
                return Err(AppendError::InvalidMsgId { len: id.len() });
            }
        }
        let size = m.headers.len() + m.payload.len();
        let max = self.s.cfg.max_msg_size as usize;
        if size > max {
            return Err(AppendError::TooLarge { size, max });
        }
        self.check_ttl(m.ttl)
    }

    /// Appends one message. With [`Durability::Always`] it returns once the message is on
    /// stable storage.
    pub fn append(
        &self,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<Appended, AppendError> {
        self.append_msg(&NewMessage::new(subject, payload).with_headers(headers))
    }

    /// Appends one message with everything [`NewMessage`] can say (a TTL).
    pub fn append_msg(&self, m: &NewMessage<'_>) -> Result<Appended, AppendError> {
        let a = self.append_one(m)?;
        if !a.duplicate {
            self.drop_if_uninteresting(a.seq, &[m.subject]);
        }
        Ok(a)
    }

    /// The first message `m` duplicates (same id, within the duplicate window), if any.
    pub(crate) fn duplicate_of(&self, st: &mut LogState, m: &NewMessage<'_>) -> Option<Appended> {
        let id = m.msg_id?;
        let (seq, ts) = st.find_duplicate(id, self.s.clock.now_ns())?;
        Some(Appended {
            seq,
            ts,
            duplicate: true,
        })
    }

    /// A batch whose messages are all new: none has an id in the window or repeats an
    /// earlier message's id.
    fn check_batch_ids(
        &self,
        st: &mut LogState,
        msgs: &[NewMessage<'_>],
    ) -> Result<(), AppendError> {
        if st.dedup.is_none() {
            return Ok(());
        }
        let mut seen: std::collections::HashMap<&[u8], usize> = Default::default();
        for (index, m) in msgs.iter().enumerate() {
            let Some(id) = m.msg_id else { continue };
            if let Some(&first) = seen.get(id) {
                return Err(AppendError::DuplicateInBatch { index, first });
            }
            seen.insert(id, index);
            if let Some(a) = self.duplicate_of(st, m) {
                return Err(AppendError::Duplicate { index, seq: a.seq });
            }
        }
        Ok(())
    }

    fn append_one(&self, m: &NewMessage<'_>) -> Result<Appended, AppendError> {
        self.check_writable()?;
        self.check_origin(m)?;
        if self.s.persistent && matches!(self.s.cfg.durability, Durability::Always) {
            self.check_message(m)?;
            return self.append_combined(m);
        }
        self.check_size(m)?;
        let (a, lsn) = {
            let mut st = self.s.state.write();
            // A subject with live messages was checked when it was first appended (the index
            // only holds valid, accepted subjects), so only a new one is checked again.
            if !st.knows_subject(m.subject) {
                self.check_subject(m.subject)?;
            }
            let seq = st.last_seq + 1;
            let ts = self.s.clock.now_ns().max(st.last_ts);
            let a = match self.duplicate_of(&mut st, m) {
                Some(first) => first,
                None => {
                    self.put(&mut st, seq, ts, 0, m)?;
                    Appended::stored(seq, ts)
                }
            };
            (a, st.lsn)
        };
        self.after_write(lsn, a.seq)?;
        Ok(a)
    }

    /// Appends all messages or none, with one durability wait. Sequences are consecutive and
    /// share one timestamp. After a crash either the whole batch is present or none of it.
    pub fn append_batch(&self, msgs: &[NewMessage<'_>]) -> Result<BatchAppended, AppendError> {
        self.check_writable()?;
        if msgs.is_empty() {
            return Err(AppendError::EmptyBatch);
        }
        for m in msgs {
            self.check_msg(m)?;
            if m.rollup.is_some() {
                return Err(AppendError::RollupInBatch);
            }
        }
        let total: usize = msgs.iter().map(NewMessage::record_len).sum();
        if total > MAX_BATCH_BYTES {
            // A batch lives in one block, whose offsets are 32-bit.
            return Err(AppendError::TooLarge {
                size: total,
                max: MAX_BATCH_BYTES,
            });
        }
        let (b, lsn) = {
            let mut st = self.s.state.write();
            let first = st.last_seq + 1;
            let last = first + msgs.len() as u64 - 1;
            if last > MAX_SEQ {
                // Checked before anything is encoded: a batch is all or nothing.
                return Err(AppendError::SequenceNotAfterLast {
                    seq: last,
                    last: st.last_seq,
                });
            }
            self.check_batch_ids(&mut st, msgs)?;
            crate::expect::check_batch(&st, msgs)?;
            let ts = self.s.clock.now_ns().max(st.last_ts);
            let sized: Vec<(&[u8], usize)> = msgs
                .iter()
                .map(|m| (m.subject.as_bytes(), m.record_len()))
                .collect();
            let lim = st.limits;
            limits::check_append(&st, &lim, &sized, None).map_err(AppendError::LimitReached)?;
            self.make_room(&mut st, total as u64)?;
            // The whole batch goes into one block so recovery can drop an incomplete batch by
            // cutting the tail of a single file.
            st.ensure_room(&*self.s.vfs, Some(first), total, ts)
                .map_err(|e| AppendError::Durability(DurabilityError::from_io(e)))?;
            for (i, m) in msgs.iter().enumerate() {
                let flags = if i + 1 < msgs.len() { FLAG_BATCH } else { 0 };
                self.put_unlimited(&mut st, first + i as u64, ts, flags, m)?;
            }
            let subjects: Vec<&[u8]> = sized.iter().map(|&(s, _)| s).collect();
            self.enforce(&mut st, Some(&subjects))?;
            (
                BatchAppended {
                    first_seq: first,
                    last_seq: st.last_seq,
                    ts,
                },
                st.lsn,
            )
        };
        self.after_write(lsn, b.last_seq)?;
        let subjects: Vec<&str> = msgs.iter().map(|m| m.subject).collect();
        self.drop_if_uninteresting(b.first_seq, &subjects);
        Ok(b)
    }

    /// Stores a message under a sequence and timestamp chosen by the caller (replicas and
    /// mirrors). `seq` must be after the last sequence; the gap becomes skipped sequences.
    pub fn append_raw(
        &self,
        seq: u64,
        ts: i64,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<(), AppendError> {
        self.append_raw_msg(
            seq,
            ts,
            &NewMessage::new(subject, payload).with_headers(headers),
        )
    }

    /// `append_raw` with everything [`NewMessage`] can say: a TTL (counted from `ts`) and a
    /// rollup are applied as at the origin, unless the stream's [`crate::ReplicaOptions`] say
    /// otherwise; expectations are checked as for `append_msg`.
    pub fn append_raw_msg(&self, seq: u64, ts: i64, m: &NewMessage<'_>) -> Result<(), AppendError> {
        self.check_writable()?;
        let opts = self.s.cfg.replica;
        let m = &NewMessage {
            rollup: m.rollup.filter(|_| opts.apply_rollups),
            ttl: m.ttl.filter(|_| opts.apply_ttls),
            ..*m
        };
        self.check_message(m)?;
        m.expect.validate()?;
        let lsn = {
            let mut st = self.s.state.write();
            if seq <= st.last_seq || seq > MAX_SEQ {
                return Err(AppendError::SequenceNotAfterLast {
                    seq,
                    last: st.last_seq,
                });
            }
            self.put(&mut st, seq, ts, 0, m)?;
            st.lsn
        };
        self.after_write(lsn, seq)?;
        self.drop_if_uninteresting(seq, &[m.subject]);
        Ok(())
    }

    /// Stores one message (after its expectations hold, and with the removals of its
    /// rollup) and applies the stream limits to it.
    pub(crate) fn put(
        &self,
        st: &mut LogState,
        seq: u64,
        ts: i64,
        flags: u8,
        m: &NewMessage<'_>,
    ) -> Result<(), AppendError> {
        m.expect.check(st, m.subject)?;
        let len = m.record_len();
        self.make_room(st, len as u64)?;
        let removal = m.rollup.map(|r| rollup::removal(st, r, m.subject));
        if st.limited {
            let lim = st.limits;
            let frees = removal.as_ref().map(|r| rollup::frees(st, r));
            limits::check_append(st, &lim, &[(m.subject.as_bytes(), len)], frees)
                .map_err(AppendError::LimitReached)?;
        }
        let Some(removal) = removal else {
            self.put_unlimited(st, seq, ts, flags, m)?;
            return self.enforce(st, Some(&[m.subject.as_bytes()]));
        };
        // Nothing may fail between the removals and the message that ends their batch.
        self.check_put(st, seq)?;
        self.log_rollup(st, &removal, seq, len, ts)?;
        let flags = flags | m.rollup.map_or(0, Rollup::flag);
        self.put_unlimited(st, seq, ts, flags, m)?;
        self.enforce(st, Some(&[m.subject.as_bytes()]))
    }

    /// Checks the store's budget for `need` more bytes. A discard-old stream that would go
    /// over removes its own oldest messages, whole blocks at a time (removing part of a block
    /// gives nothing back), as one logged purge; a discard-new stream, or one whose own
    /// messages cannot free enough, gets `StorageFull` and nothing changes.
    pub(crate) fn make_room(&self, st: &mut LogState, need: u64) -> Result<(), AppendError> {
        let excess = st.usage.excess(need);
        if excess == 0 {
            return Ok(());
        }
        let usage = st.usage.clone();
        let full = || AppendError::StorageFull {
            need,
            used: usage.committed(),
            limit: usage.append_limit(),
        };
        if st.limits.discard != Discard::Old {
            return Err(full());
        }
        let now = self.s.clock.now_ns();
        let floor = match crate::limits::floor_freeing(st, excess) {
            Some(f) => f,
            None if crate::limits::frees_with_active(st, excess) => {
                // The active block's file goes too: the message starts a new one.
                st.roll(&*self.s.vfs, 0, now)
                    .map_err(|e| AppendError::Durability(DurabilityError::from_io(e)))?;
                st.last_seq + 1
            }
            None => return Err(full()),
        };
        limits::log_control(st, &*self.s.vfs, Kind::Purge, floor, &[], now, 0)
            .map_err(|e| AppendError::Durability(DurabilityError::from_io(e)))
    }

    /// Whether message `seq` may be stored now.
    fn check_put(&self, st: &LogState, seq: u64) -> Result<(), AppendError> {
        if self.s.closed.load(Ordering::Acquire) {
            // Re-checked under the lock: a deleted stream must not touch its old directory.
            return Err(AppendError::Closed);
        }
        if seq > MAX_SEQ {
            return Err(AppendError::SequenceNotAfterLast {
                seq,
                last: st.last_seq,
            });
        }
        Ok(())
    }

    /// Applies the limits after an append to `subjects` (`None`: every subject).
    pub(crate) fn enforce(
        &self,
        st: &mut LogState,
        subjects: Option<&[&[u8]]>,
    ) -> Result<(), AppendError> {
        if !st.limited {
            return Ok(());
        }
        let lim = st.limits;
        let now = self.s.clock.now_ns();
        limits::enforce(st, &*self.s.vfs, &lim, subjects, now)
            .map_err(|e| AppendError::Durability(DurabilityError::from_io(e)))
    }

    /// Stores one message without looking at the limits.
    pub(crate) fn put_unlimited(
        &self,
        st: &mut LogState,
        seq: u64,
        ts: i64,
        flags: u8,
        m: &NewMessage<'_>,
    ) -> Result<(), AppendError> {
        self.check_put(st, seq)?;
        let len = m.record_len();
        st.ensure_room(&*self.s.vfs, Some(seq), len, ts)
            .map_err(|e| AppendError::Durability(DurabilityError::from_io(e)))?;
        let ttl = m.ttl.map(|t| self.effective_ttl(st, t));
        let msg_id = m.msg_id.unwrap_or_default();
        let x = record::Extras { ttl, msg_id };
        let (off, len) = st.encode(
            Kind::Msg,
            flags,
            seq,
            ts,
            m.subject.as_bytes(),
            m.headers,
            m.payload,
            x,
        );
        st.apply_msg(seq, ts, off, len, m.subject.as_bytes(), ttl);
        if let Some(d) = st.dedup.as_mut().filter(|_| !msg_id.is_empty()) {
            d.insert(msg_id, seq, ts);
        }
        Ok(())
    }

    /// Writes a control record and applies it; `apply` runs only if `valid` accepted the op.
    pub(crate) fn control<T>(
        &self,
        kind: Kind,
        seq_of: impl FnOnce(&LogState) -> Result<(u64, Vec<u8>), WriteError>,
        apply: impl FnOnce(&mut LogState, u64) -> T,
    ) -> Result<T, WriteError> {
        let (out, lsn, last) = self.control_record(kind, seq_of, apply)?;
        self.after_write(lsn, last)?;
        Ok(out)
    }

    /// Encodes and applies a control record without waiting for durability; returns the
    /// result, the log position and the last sequence.
    pub(crate) fn control_record<T>(
        &self,
        kind: Kind,
        seq_of: impl FnOnce(&LogState) -> Result<(u64, Vec<u8>), WriteError>,
        apply: impl FnOnce(&mut LogState, u64) -> T,
    ) -> Result<(T, u64, u64), WriteError> {
        self.check_writable().map_err(as_write)?;
        self.control_record_checked(kind, seq_of, apply)
    }

    /// `control_record` after the caller's own `check_writable`, taken before any lock it
    /// holds now.
    fn control_record_checked<T>(
        &self,
        kind: Kind,
        seq_of: impl FnOnce(&LogState) -> Result<(u64, Vec<u8>), WriteError>,
        apply: impl FnOnce(&mut LogState, u64) -> T,
    ) -> Result<(T, u64, u64), WriteError> {
        {
            let mut st = self.s.state.write();
            // Re-checked under the lock: a deleted stream must not touch its old directory.
            self.check_open().map_err(as_write)?;
            let (seq, payload) = seq_of(&st)?;
            let now = self.s.clock.now_ns();
            let len = record::encoded_len(0, 0, payload.len());
            st.ensure_room(&*self.s.vfs, None, len, now)
                .map_err(|e| WriteError::Durability(DurabilityError::from_io(e)))?;
            st.encode(kind, 0, seq, now, &[], &[], &payload, Default::default());
            let out = apply(&mut st, seq);
            Ok((out, st.lsn, st.last_seq))
        }
    }

    /// Skips the next `count` sequences; returns the last one skipped.
    pub fn skip(&self, count: u64) -> Result<u64, WriteError> {
        self.control(
            Kind::Skip,
            |st| {
                let last = st.last_seq.saturating_add(count);
                if count == 0 || last > MAX_SEQ {
                    return Err(WriteError::InvalidSequence {
                        seq: last,
                        why: "count must be 1 or more and stay below 2^62",
                    });
                }
                Ok((last, (st.last_seq + 1).to_le_bytes().to_vec()))
            },
            |st, last| {
                let first = st.last_seq + 1;
                st.apply_skip(first, last);
                last
            },
        )
    }

    /// Reads one message.
    pub fn load(&self, seq: u64) -> Result<StoredMessage, LoadError> {
        if self.s.closed.load(Ordering::Acquire) {
            return Err(LoadError::Closed);
        }
        let st = self.s.state.read();
        match crate::query::read(&st, seq) {
            Some(Ok(m)) => Ok(m),
            Some(Err(_)) => Err(LoadError::Corrupt(seq)),
            None => Err(LoadError::NotFound(seq)),
        }
    }

    /// Removes one message.
    pub fn remove(&self, seq: u64) -> Result<(), WriteError> {
        if self.s.cfg.removal_markers {
            return self.locked_write(|this, st, now| {
                if st.find(seq).is_none() {
                    return Err(WriteError::NotFound(seq));
                }
                this.remove_marked(st, &[seq], true, Reason::Remove, now)
            });
        }
        self.remove_plain(seq, false)
    }

    /// Removes one message with a plain tombstone. `damaged`: its timer is taken out by
    /// sequence, since the TTL bytes of its record may be what the damage changed.
    pub(crate) fn remove_plain(&self, seq: u64, damaged: bool) -> Result<(), WriteError> {
        self.control(
            Kind::Delete,
            |st| {
                st.find(seq)
                    .map(|_| (seq, Vec::new()))
                    .ok_or(WriteError::NotFound(seq))
            },
            |st, seq| {
                if damaged {
                    st.timers.cancel_any(seq);
                }
                st.apply_remove(seq);
            },
        )
    }

    /// Removes one message and overwrites its bytes on disk (and in memory) before returning.
    pub fn erase(&self, seq: u64) -> Result<(), WriteError> {
        // The write lock is held from the tombstone to the overwrite, so no checkpoint can
        // cover the tombstone before the bytes are gone; the compaction lock (taken first, as
        // compaction does) keeps a compaction from copying them meanwhile.
        // Healed (if need be) before the locks: a heal takes them itself.
        self.check_writable().map_err(as_write)?;
        let _c = self.s.compact_lock.lock();
        let w = self.s.write_lock.lock();
        let mut sum = None;
        let (marked, lsn, _) = self.control_record_checked(
            Kind::Erase,
            |st| {
                let (bi, off) = st.find(seq).ok_or(WriteError::NotFound(seq))?;
                sum = record::checksum_at(st.blocks[bi].bytes(), off);
                Ok((seq, Vec::new()))
            },
            |st, seq| {
                let marks = match self.s.cfg.removal_markers {
                    true => crate::expiry::emptied(st, &[seq]),
                    false => Vec::new(),
                };
                st.apply_remove(seq);
                if let Some(d) = &mut st.dedup {
                    d.erased(seq);
                }
                // In the same hold, so the marker is made durable with the tombstone below.
                self.append_markers(st, &marks, Reason::Remove)
            },
        )?;
        marked?;
        // The original record must be on disk before it can be overwritten there.
        if let Some((lsn, _)) = self.write_phase(&w, true, false, Some(lsn))? {
            self.sync_phase(lsn, None)?;
        }
        if let Some(sum) = sum {
            self.overwrite_erased(seq, sum)
                .map_err(|e| self.poison_with(e))?;
        }
        Ok(())
    }

    /// Overwrites the (already removed) record of `seq` with its erased form, in the file and
    /// in memory, if it is still the record with checksum `sum`. The caller holds the write
    /// lock, so no compaction moves the record meanwhile.
    pub(crate) fn overwrite_erased(&self, seq: u64, sum: u64) -> std::io::Result<()> {
        let mut st = self.s.state.write();
        let persistent = self.s.persistent;
        let Some(b) = st.locate_mut(seq) else {
            return Ok(());
        };
        let Some(off) = b.offset_of(seq) else {
            return Ok(());
        };
        if record::checksum_at(b.bytes(), off) != Some(sum) {
            // Not the record the tombstone removed (a truncate let a new message take the
            // sequence): leave it alone.
            return Ok(());
        }
        let Some(erased) = record::erased_copy(b.bytes().get(off..).unwrap_or(&[])) else {
            return Ok(());
        };
        let end = off + erased.len();
        let in_memory = match &b.data {
            Data::Active(w) => Some(w.buf().clone()),
            Data::Sealing(buf, _) => Some(buf.clone()),
            Data::Sealed(_) => None,
        };
        if let Some(buf) = in_memory.filter(|_| !persistent || end <= b.written) {
            // SAFETY: we hold the state write lock, so no reader is copying these bytes, and
            // they are below `written`, so no flusher reads them again (memory streams have
            // no flusher).
            unsafe { buf.overwrite(off, &erased) }
        }
        if let Some(file) = &b.file {
            file.write_all_at(&erased, off as u64)?;
            file.sync_data()?;
            if let Data::Sealed(_) = b.data {
                b.data = Data::Sealed(Arc::new(file.map()?));
            }
        }
        Ok(())
    }

    /// Runs `f` under the state lock as one write (after the usual checks), then waits for
    /// it as the stream's durability mode says.
    pub(crate) fn locked_write<T>(
        &self,
        f: impl FnOnce(&Self, &mut LogState, i64) -> Result<T, WriteError>,
    ) -> Result<T, WriteError> {
        self.check_writable().map_err(as_write)?;
        let (out, lsn, last) = {
            let mut st = self.s.state.write();
            self.check_open().map_err(as_write)?;
            let now = self.s.clock.now_ns();
            let out = f(self, &mut st, now)?;
            (out, st.lsn, st.last_seq)
        };
        self.after_write(lsn, last)?;
        Ok(out)
    }

    /// Removes every message; sequences continue after the last one. Returns how many went.
    pub fn purge(&self) -> Result<u64, WriteError> {
        if self.s.cfg.removal_markers {
            return self.locked_write(|this, st, now| {
                let floor = st.last_seq + 1;
                this.purge_ids_marked(st, floor, now)
            });
        }
        self.control(
            Kind::Purge,
            |st| Ok((st.last_seq + 1, Vec::new())),
            LogState::apply_purge_ids,
        )
    }

    /// Removes every message below `seq`. Returns how many went.
    pub fn compact(&self, seq: u64) -> Result<u64, WriteError> {
        if seq == 0 || seq > MAX_SEQ {
            return Err(WriteError::InvalidSequence {
                seq,
                why: "must be between 1 and 2^62",
            });
        }
        if self.s.cfg.removal_markers {
            return self.locked_write(|this, st, now| this.purge_ids_marked(st, seq, now));
        }
        self.control(
            Kind::Purge,
            |_| Ok((seq, Vec::new())),
            LogState::apply_purge_ids,
        )
    }

    /// `purge_marked` by `purge` or `compact`, which may forget message ids.
    fn purge_ids_marked(&self, st: &mut LogState, floor: u64, now: i64) -> Result<u64, WriteError> {
        let n = self.purge_marked(st, floor, true, now)?;
        if let Some(d) = &mut st.dedup {
            d.purged_below(floor);
        }
        Ok(n)
    }

    /// Removes every message above `seq` and makes `seq` the last sequence (replication
    /// rollback): the next append gets `seq + 1`. Always durable before it returns.
    pub fn truncate(&self, seq: u64) -> Result<u64, WriteError> {
        let n = self.control(
            Kind::Truncate,
            |st| {
                if seq >= st.last_seq {
                    return Err(WriteError::InvalidSequence {
                        seq,
                        why: "not below the last sequence",
                    });
                }
                Ok((seq, Vec::new()))
            },
            |st, last| st.apply_truncate(last),
        )?;
        if self.uses_lease() {
            // The lease would otherwise make a restart jump past the sequences we just freed.
            self.flush(true, false, None)?;
            self.lower_lease()?;
        }
        // Sequences above `seq` will be handed out again: consumers forget them.
        let all: Vec<crate::Consumer> = self.s.consumers.lock().values().cloned().collect();
        for c in all {
            c.truncated(seq);
        }
        Ok(n)
    }

    /// After a state was rebuilt from the files (open, heal): a crash between an append and
    /// the removals its limits caused, limits lowered while closed, or removals a heal
    /// dropped, leave too much, and retention may owe removals; both are applied now. A
    /// failure poisons the stream; writers see it.
    pub(crate) fn settle(&self) {
        let _ = self.enforce_limits();
        self.recheck_retention();
    }

    /// Recounts the stream's directory and its files other than blocks (config, checkpoints,
    /// lease, consumers) in the store's usage: a few `stat`s, no directory listing. Run at open
    /// and creation, after every checkpoint and when consumers come and go.
    pub(crate) fn refresh_meta_usage(&self) {
        if !self.s.persistent || self.s.deleted.load(Ordering::Acquire) {
            return;
        }
        let mut names: Vec<String> = [
            crate::store::CONFIG_FILE,
            CHECKPOINT_FILE,
            CHECKPOINT_PREV_FILE,
            LEASE_FILE,
        ]
        .iter()
        .map(|n| n.to_string())
        .collect();
        names.extend(
            self.s
                .consumers
                .lock()
                .keys()
                .map(|n| crate::consumer::file_name(n)),
        );
        names.extend(
            self.s
                .damaged_consumers
                .lock()
                .iter()
                .map(|(n, _)| crate::consumer::file_name(n)),
        );
        let files: u64 = names
            .iter()
            .filter_map(|n| self.s.vfs.disk_bytes(&self.s.dir.join(n)).ok())
            .sum();
        let now = files + crate::budget::PAGE;
        let before = self.s.meta_bytes.swap(now, Ordering::AcqRel);
        self.s.state.read().usage.add(now as i64 - before as i64);
    }

    /// Takes everything the stream counted off the store's usage (it is being deleted).
    pub(crate) fn release_usage(&self) {
        let mut st = self.s.state.write();
        st.detach();
        let meta = self.s.meta_bytes.swap(0, Ordering::AcqRel);
        st.usage.add(-(meta as i64));
    }

    /// Bytes compaction has written for this stream since it was opened (its write
    /// amplification, next to the bytes appended).
    pub fn compacted_bytes(&self) -> u64 {
        self.s.compacted_bytes.load(Ordering::Relaxed)
    }

    /// Bytes the stream occupies now, as counted against the store's budget: its files as
    /// the file system counts them (blocks, config, checkpoints, lease, consumer state), or a
    /// memory stream's blocks.
    pub fn disk_bytes(&self) -> u64 {
        self.s.state.read().charged + self.s.meta_bytes.load(Ordering::Acquire)
    }

    /// The bound on this stream's size: its own `max_bytes` or the store's append limit,
    /// whichever is lower.
    fn bound(&self, st: &LogState) -> (u64, BoundBy) {
        let store = st.usage.append_limit();
        match st.limits.max_bytes {
            Some(own) if own <= store => (own, BoundBy::Stream),
            _ => (store, BoundBy::Store),
        }
    }

    /// The stream's counters.
    pub fn state(&self) -> StreamState {
        let st = self.s.state.read();
        let (max_bytes, bound_by) = self.bound(&st);
        let first_ts = st
            .find(st.floor)
            .and_then(|(bi, off)| record::decode_head(st.blocks[bi].bytes().get(off..)?).ok())
            .map(|h| h.ts)
            .unwrap_or(0);
        StreamState {
            messages: st.messages(),
            bytes: st.live_bytes,
            first_seq: st.floor,
            first_ts,
            last_seq: st.last_seq,
            last_ts: st.last_ts,
            num_deleted: st.deletes.len(),
            deleted: st.deletes.ranges().collect(),
            blocks: st.blocks.len(),
            max_bytes,
            bound_by,
        }
    }

    /// Writes and fsyncs everything appended so far, whatever the durability mode.
    pub fn sync(&self) -> Result<(), WriteError> {
        self.flush(true, false, None)?;
        Ok(())
    }

    /// Writes a checkpoint now (after syncing), so a reopen replays nothing.
    pub fn checkpoint(&self) -> Result<(), WriteError> {
        self.flush(true, true, None)?;
        Ok(())
    }

    /// Reads every live message and checks its checksum, and every block's header and
    /// trailer checksums. Open only reads the log after the last checkpoint, so damage to older, sealed blocks is found here (or by the `load` that
    /// meets it). O(messages); takes the state lock shared, block by block.
    pub fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        let mut damaged = crate::deletes::DeleteSet::new();
        let ids: Vec<u64> = self.s.state.read().blocks.iter().map(|b| b.id).collect();
        for id in ids {
            let st = self.s.state.read();
            let Some(b) = st.block(id) else { continue };
            if !b.frame_intact(st.stream_id) {
                report.damaged_blocks.push(id);
            }
            for seq in b.first_seq..b.end_seq() {
                let Some((bi, off)) = st.find(seq).filter(|(bi, _)| st.blocks[*bi].id == id) else {
                    continue;
                };
                report.checked += 1;
                let ok = record::decode(st.blocks[bi].bytes().get(off..).unwrap_or(&[]))
                    .is_ok_and(|r| r.seq == seq && r.kind == Kind::Msg);
                if !ok {
                    damaged.insert(seq);
                }
            }
        }
        report.damaged = damaged.ranges().collect();
        report
    }

    /// Blocks in the lookup and blocks retired but not yet deleted (tests).
    #[doc(hidden)]
    pub fn block_counts(&self) -> (usize, usize) {
        let st = self.s.state.read();
        (st.blocks.len(), st.retired.len())
    }

    /// Checks the counters against the blocks. O(messages); for tests and `verify`.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.s.state.read().check_invariants()
    }

    /// Reclaims space now: checkpoints (twice), deletes blocks with no live message and
    /// rewrites sealed blocks that are less than half live. Returns how many were rewritten.
    pub fn reclaim(&self) -> Result<usize, WriteError> {
        self.roll_if_dead();
        // Two checkpoints: space is reclaimed only behind what both checkpoints on disk cover.
        self.flush(true, true, None)?;
        self.flush(true, true, None)?;
        let mut n = 0;
        while self
            .compact_one_sparse()
            .map_err(|e| WriteError::Durability(DurabilityError::from_io(e)))?
        {
            n += 1;
        }
        Ok(n)
    }

    /// Flushes, checkpoints and releases the lease so a clean reopen replays nothing and skips
    /// no sequence. Later calls on this handle return `Closed`.
    pub(crate) fn close(&self) -> Result<(), DurabilityError> {
        let was_closed = self.s.closed.swap(true, Ordering::AcqRel);
        // Waiting watchers return `Closed` now rather than at their timeout.
        self.wake_watchers();
        if was_closed || !self.s.persistent || self.is_poisoned() {
            self.drop_consumers();
            return Ok(());
        }
        let closed = (|| {
            self.save_consumers(true)
                .map_err(DurabilityError::from_io)?;
            self.flush(true, true, None)?;
            if self.uses_lease() {
                self.lower_lease()?;
            }
            Ok(())
        })();
        self.drop_consumers();
        closed
    }

    /// Consumers hold their stream: the stream lets go of them once closed, so the two are
    /// freed (files included) when the host's last handles go.
    fn drop_consumers(&self) {
        let all = std::mem::take(&mut *self.s.consumers.lock());
        drop(all);
    }

    /// Stops every writer of a stream being deleted and waits for I/O already under way, so
    /// nothing touches its directory afterwards (a new stream may take the name).
    pub(crate) fn mark_deleted(&self) {
        self.s.closed.store(true, Ordering::Release);
        self.s.deleted.store(true, Ordering::Release);
        let _w = self.s.write_lock.lock();
        let _s = self.s.sync_lock.lock();
        let _l = self.s.lease_lock.lock();
        let _st = self.s.state.write();
        drop(_st);
        self.wake_watchers();
        self.drop_consumers();
    }

    /// Creates a consumer (see [`ConsumerConfig`](crate::ConsumerConfig)).
    pub fn create_consumer(
        &self,
        cfg: crate::ConsumerConfig,
    ) -> Result<crate::Consumer, crate::ConsumerError> {
        if self.s.closed.load(Ordering::Acquire) {
            return Err(crate::ConsumerError::Closed);
        }
        let mut all = self.s.consumers.lock();
        if all.contains_key(&cfg.name) {
            return Err(crate::ConsumerError::AlreadyExists(cfg.name));
        }
        // Under the lock, so two overlapping consumers cannot both pass.
        self.check_work_queue(&cfg, all.values())
            .map_err(crate::ConsumerError::Config)?;
        let c = crate::Consumer::create(self, cfg)?;
        if self.s.persistent {
            c.save(true)
                .map_err(|e| crate::ConsumerError::Durability(DurabilityError::from_io(e)))?;
        }
        all.insert(c.name().to_owned(), c.clone());
        drop(all);
        self.refresh_meta_usage();
        Ok(c)
    }

    /// The consumer called `name`.
    pub fn consumer(&self, name: &str) -> Result<crate::Consumer, crate::ConsumerError> {
        if self.is_closed() {
            return Err(crate::ConsumerError::Closed);
        }
        self.s
            .consumers
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| crate::ConsumerError::NotFound(name.to_owned()))
    }

    /// Deletes a consumer; its handles then return `Deleted`. The name of a consumer whose
    /// file could not be read ([`Stream::damaged_consumers`]) deletes that file.
    pub fn delete_consumer(&self, name: &str) -> Result<(), crate::ConsumerError> {
        if self.is_closed() {
            return Err(crate::ConsumerError::Closed);
        }
        let removed = self.s.consumers.lock().remove(name);
        let Some(c) = removed else {
            return self.delete_damaged_consumer(name);
        };
        c.mark_deleted();
        self.remove_consumer_file(name)?;
        self.refresh_meta_usage();
        self.release(&c);
        Ok(())
    }

    fn delete_damaged_consumer(&self, name: &str) -> Result<(), crate::ConsumerError> {
        let known = self
            .s
            .damaged_consumers
            .lock()
            .iter()
            .any(|(n, _)| n == name);
        if !known {
            return Err(crate::ConsumerError::NotFound(name.to_owned()));
        }
        self.remove_consumer_file(name)?;
        let mut damaged = self.s.damaged_consumers.lock();
        damaged.retain(|(n, _)| n != name);
        self.s
            .interest_unknown
            .store(!damaged.is_empty(), Ordering::Release);
        drop(damaged);
        // Releases held back while its interest was unknown go now.
        self.recheck_retention();
        Ok(())
    }

    fn remove_consumer_file(&self, name: &str) -> Result<(), crate::ConsumerError> {
        if !self.s.persistent {
            return Ok(());
        }
        let io = |e| crate::ConsumerError::Durability(DurabilityError::from_io(e));
        let path = self.s.dir.join(crate::consumer::file_name(name));
        if self.s.vfs.exists(&path) {
            self.s.vfs.remove_file(&path).map_err(io)?;
        }
        self.s.vfs.sync_dir(&self.s.dir).map_err(io)
    }

    /// Whether a consumer's file could not be read: its interest is unknown, so retention
    /// releases nothing until it is deleted.
    pub(crate) fn interest_unknown(&self) -> bool {
        self.s.interest_unknown.load(Ordering::Acquire)
    }

    /// Saves every changed consumer (all of them with `force`).
    pub(crate) fn save_consumers(&self, force: bool) -> std::io::Result<()> {
        if !self.s.persistent {
            return Ok(());
        }
        let all: Vec<crate::Consumer> = self.s.consumers.lock().values().cloned().collect();
        for c in all {
            c.save(force)?;
        }
        Ok(())
    }

    /// Restores the consumers saved in the stream's directory (at open). A file that does not
    /// decode is left in place and reported by [`Stream::damaged_consumers`].
    pub(crate) fn load_consumers(&self) -> std::io::Result<()> {
        let mut names = self.s.vfs.list(&self.s.dir)?;
        names.sort();
        for n in names {
            let Some(name) = n.strip_prefix("consumer.") else {
                continue;
            };
            if name.ends_with(".tmp") {
                continue;
            }
            let bytes = crate::io::read_file(&*self.s.vfs, &self.s.dir.join(&n))?;
            match crate::consumer::Saved::decode(&bytes) {
                Ok(saved) => {
                    let c = crate::Consumer::restore(self, saved);
                    self.s.consumers.lock().insert(c.name().to_owned(), c);
                }
                Err(why) => {
                    self.s.damaged_consumers.lock().push((name.to_owned(), why));
                    self.s.interest_unknown.store(true, Ordering::Release);
                }
            }
        }
        Ok(())
    }

    /// Every consumer's saved form (name, bytes of its file), for a snapshot.
    pub(crate) fn consumer_snapshots(&self) -> Vec<(String, Vec<u8>)> {
        let all: Vec<crate::Consumer> = self.s.consumers.lock().values().cloned().collect();
        all.iter()
            .map(|c| (c.name().to_owned(), c.saved_bytes()))
            .collect()
    }

    /// Restores consumers from their saved forms (a snapshot's), saving each.
    pub(crate) fn restore_consumers(
        &self,
        saved: &[(String, Vec<u8>)],
    ) -> Result<(), crate::SnapshotError> {
        for (name, bytes) in saved {
            let s = crate::consumer::Saved::decode(bytes)
                .map_err(|why| crate::SnapshotError::Corrupt(format!("consumer {name}: {why}")))?;
            let c = crate::Consumer::restore(self, s);
            if self.s.persistent {
                c.save_now()?;
            }
            self.s.consumers.lock().insert(c.name().to_owned(), c);
        }
        Ok(())
    }

    /// Consumer files that could not be read at open: (name, why).
    pub fn damaged_consumers(&self) -> Vec<(String, String)> {
        self.s.damaged_consumers.lock().clone()
    }

    /// Whether the stream keeps files (not a memory stream).
    pub(crate) fn is_persistent(&self) -> bool {
        self.s.persistent
    }

    pub(crate) fn vfs(&self) -> &dyn Vfs {
        &*self.s.vfs
    }

    /// The names of the stream's consumers.
    pub fn consumer_names(&self) -> Vec<String> {
        self.s.consumers.lock().keys().cloned().collect()
    }

    /// Whether message `seq` is stored.
    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.s.state.read().find(seq).is_some()
    }

    /// How many removals the stream has applied (consumers compare it).
    pub(crate) fn removal_count(&self) -> u64 {
        self.s.removals.load(Ordering::Acquire)
    }

    pub(crate) fn now_ns(&self) -> i64 {
        self.s.clock.now_ns()
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.s.dir
    }
}

impl Stream {
    /// The duplicate window's index, if the stream deduplicates.
    pub fn dedup_stats(&self) -> Option<crate::DedupStats> {
        self.s.state.read().dedup.as_ref().map(|d| d.stats())
    }
}
