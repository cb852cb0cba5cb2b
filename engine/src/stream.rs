//! A stream: the public API over one log, its durability (group commit), checkpoints and the
//! sequence lease.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use serde::Serialize;

use crate::block::{encode_trailer, AppendBuf, Offsets};
use crate::checkpoint::{encode_lease, BlockEntry, Checkpoint};
use crate::clock::Clock;
use crate::config::{Durability, StreamConfig};
use crate::error::{AppendError, DurabilityError, LoadError, Poisoned, WriteError};
use crate::io::{self, VFile, Vfs};
use crate::record::{self, Kind, FLAG_BATCH};
use crate::recovery::RecoveryReport;
use crate::state::{Block, Data, LogState, MAX_SEQ};
use crate::subject;

/// Unwritten bytes after which an appender writes them itself.
const INLINE_BYTES: u64 = 1 << 20;
/// Log bytes between checkpoints.
const CKPT_BYTES: u64 = 32 << 20;
/// Time between checkpoints while the log changes.
const CKPT_EVERY: Duration = Duration::from_secs(1);
/// Largest encoded size of one batch (it must fit a block with 32-bit offsets).
const MAX_BATCH_BYTES: usize = 1 << 30;
/// Blocks smaller than this are not worth rewriting.
const COMPACT_MIN_BYTES: usize = 64 << 10;
/// Sequences reserved by one lease write.
const LEASE_SPAN: u64 = 1 << 20;

pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
pub(crate) const CHECKPOINT_PREV_FILE: &str = "checkpoint.prev";
pub(crate) const LEASE_FILE: &str = "lease";

/// Where and when an appended message was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Appended {
    pub seq: u64,
    pub ts: i64,
}

/// The result of a batch append: sequences `first_seq..=last_seq`, all with timestamp `ts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BatchAppended {
    pub first_seq: u64,
    pub last_seq: u64,
    pub ts: i64,
}

/// A message to append.
#[derive(Clone, Copy, Debug)]
pub struct NewMessage<'a> {
    pub subject: &'a str,
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> NewMessage<'a> {
    pub fn new(subject: &'a str, payload: &'a [u8]) -> Self {
        NewMessage {
            subject,
            headers: &[],
            payload,
        }
    }
    pub fn with_headers(mut self, headers: &'a [u8]) -> Self {
        self.headers = headers;
        self
    }
}

/// A message read from a stream (one allocation holding subject, headers and payload).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: u64,
    pub ts: i64,
    data: Box<[u8]>,
    subject_len: usize,
    headers_len: usize,
}

impl StoredMessage {
    fn from_record(r: &record::RecordRef<'_>) -> Self {
        let mut data = Vec::with_capacity(r.subject.len() + r.headers.len() + r.payload.len());
        data.extend_from_slice(r.subject);
        data.extend_from_slice(r.headers);
        data.extend_from_slice(r.payload);
        StoredMessage {
            seq: r.seq,
            ts: r.ts,
            data: data.into_boxed_slice(),
            subject_len: r.subject.len(),
            headers_len: r.headers.len(),
        }
    }
    pub fn subject(&self) -> &str {
        std::str::from_utf8(&self.data[..self.subject_len]).unwrap_or("")
    }
    pub fn headers(&self) -> &[u8] {
        &self.data[self.subject_len..self.subject_len + self.headers_len]
    }
    pub fn payload(&self) -> &[u8] {
        &self.data[self.subject_len + self.headers_len..]
    }
}

impl std::fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredMessage")
            .field("seq", &self.seq)
            .field("ts", &self.ts)
            .field("subject", &self.subject())
            .field("headers_len", &self.headers_len)
            .field("payload_len", &self.payload().len())
            .finish()
    }
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
}

/// What the I/O path is doing; held while writing so concurrent flushers queue behind it
/// and find their data already synced (group commit).
struct IoState {
    ckpt_lsn: u64,
    ckpt_at: Instant,
}

pub(crate) struct Shared {
    pub name: String,
    pub cfg: StreamConfig,
    pub vfs: Arc<dyn Vfs>,
    pub clock: Arc<dyn Clock>,
    pub dir: PathBuf,
    pub persistent: bool,
    pub state: RwLock<LogState>,
    /// Serializes writes (and the linked write+fsync of a durable leader).
    write_lock: Mutex<()>,
    /// Serializes fsyncs and checkpoints; writes never wait behind it.
    sync_lock: Mutex<IoState>,
    lease_lock: Mutex<()>,
    lease: AtomicU64,
    written_lsn: AtomicU64,
    synced_lsn: AtomicU64,
    last_sync: Mutex<Instant>,
    /// Group commit: whether a leader is syncing, and the condvar followers wait on.
    commit: Mutex<bool>,
    committed: Condvar,
    /// Durable single appends waiting for a combining leader, and whether one is leading.
    queue: crossbeam::queue::SegQueue<Arc<Request>>,
    combining: AtomicBool,
    /// The two checkpoints on disk (`checkpoint` and `checkpoint.prev`).
    ckpts: Mutex<Ckpts>,
    /// Set when the stream is deleted: no further I/O may touch its directory.
    deleted: AtomicBool,
    poison: OnceLock<Poisoned>,
    closed: AtomicBool,
    pub recovery: RecoveryReport,
}

/// A handle to one stream. Cheap to clone; every method may be called from any thread.
#[derive(Clone)]
pub struct Stream {
    pub(crate) s: Arc<Shared>,
}

/// A durable single append waiting in the combining queue.
struct Request {
    subject: String,
    headers: Vec<u8>,
    payload: Vec<u8>,
    thread: std::thread::Thread,
    result: Mutex<Option<Result<Appended, AppendError>>>,
}

impl Request {
    fn new(m: &NewMessage<'_>) -> Self {
        Request {
            subject: m.subject.to_owned(),
            headers: m.headers.to_vec(),
            payload: m.payload.to_vec(),
            thread: std::thread::current(),
            result: Mutex::new(None),
        }
    }
    fn take(&self) -> Option<Result<Appended, AppendError>> {
        self.result.lock().take()
    }
    fn finish(&self, r: Result<Appended, AppendError>) {
        *self.result.lock() = Some(r);
        self.thread.unpark();
    }
}

/// Hands group-commit leadership back when the leader is done, however it leaves.
struct Leader<'a>(&'a Shared);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        *self.0.commit.lock() = false;
        self.0.committed.notify_all();
    }
}

/// The checkpoints on disk, newest first.
#[derive(Default)]
struct Ckpts {
    newest: Option<Arc<Checkpoint>>,
    older: Option<Arc<Checkpoint>>,
}

/// One write the flusher performs outside the state lock.
struct Job {
    id: u64,
    file: Arc<dyn VFile>,
    buf: Arc<AppendBuf>,
    from: usize,
    to: usize,
    trailer: Option<Vec<u8>>,
    new_file: bool,
}

struct Work {
    jobs: Vec<Job>,
    lsn: u64,
    ckpt: Option<Checkpoint>,
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
                sync_lock: Mutex::new(IoState {
                    ckpt_lsn: lsn,
                    ckpt_at: Instant::now(),
                }),
                lease_lock: Mutex::new(()),
                lease: AtomicU64::new(lease),
                written_lsn: AtomicU64::new(lsn),
                synced_lsn: AtomicU64::new(lsn),
                last_sync: Mutex::new(Instant::now()),
                commit: Mutex::new(false),
                ckpts: Mutex::new(Ckpts::default()),
                queue: crossbeam::queue::SegQueue::new(),
                combining: AtomicBool::new(false),
                deleted: AtomicBool::new(false),
                committed: Condvar::new(),
                poison: OnceLock::new(),
                closed: AtomicBool::new(false),
                recovery,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.s.name
    }

    pub fn config(&self) -> &StreamConfig {
        &self.s.cfg
    }

    /// What recovery found when this stream was opened: lost sequences, a torn tail, whether a
    /// checkpoint was used.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.s.recovery
    }

    /// True once a failed write or fsync has stopped this stream from accepting writes.
    pub fn is_poisoned(&self) -> bool {
        self.s.poison.get().is_some()
    }

    fn check_writable(&self) -> Result<(), AppendError> {
        if self.s.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        if let Some(p) = self.s.poison.get() {
            return Err(AppendError::Durability(p.to_durability()));
        }
        Ok(())
    }

    fn check_message(&self, m: &NewMessage<'_>) -> Result<(), AppendError> {
        subject::validate_subject(m.subject).map_err(AppendError::InvalidSubject)?;
        let subjects = &self.s.cfg.subjects;
        if !subjects.is_empty() && !subjects.iter().any(|f| subject::matches(f, m.subject)) {
            return Err(AppendError::SubjectNotInStream(m.subject.to_owned()));
        }
        let size = m.headers.len() + m.payload.len();
        let max = self.s.cfg.max_msg_size as usize;
        if size > max {
            return Err(AppendError::TooLarge { size, max });
        }
        Ok(())
    }

    /// Appends one message. With [`Durability::Always`] it returns once the message is on
    /// stable storage.
    pub fn append(
        &self,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<Appended, AppendError> {
        let m = NewMessage {
            subject,
            headers,
            payload,
        };
        self.check_writable()?;
        self.check_message(&m)?;
        if self.s.persistent && matches!(self.s.cfg.durability, Durability::Always) {
            return self.append_combined(&m);
        }
        let (a, lsn) = {
            let mut st = self.s.state.write();
            let seq = st.last_seq + 1;
            let ts = self.s.clock.now_ns().max(st.last_ts);
            self.put(&mut st, seq, ts, 0, &m)?;
            (Appended { seq, ts }, st.lsn)
        };
        self.after_write(lsn, a.seq)?;
        Ok(a)
    }

    /// A durable single append by flat combining: the message joins a queue, and one
    /// producer at a time leads: it encodes everything queued under one state-lock hold,
    /// syncs once, and wakes each producer with its result. Each message then costs one
    /// sleep and one wake-up; with the lock taken per message, many producers on few cores
    /// spent their time handing the lock and the commit condvar to each other.
    fn append_combined(&self, m: &NewMessage<'_>) -> Result<Appended, AppendError> {
        let req = Arc::new(Request::new(m));
        self.s.queue.push(req.clone());
        loop {
            if let Some(r) = req.take() {
                return r;
            }
            if self
                .s
                .combining
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.lead_combined();
                continue;
            }
            // The timeout only bounds the cost of an unpark that raced with this park.
            std::thread::park_timeout(Duration::from_millis(5));
        }
    }

    /// Serves the queue until it is empty, then gives up leadership (taking it back if a
    /// request slipped in meanwhile, so no request waits for a leader that is gone).
    fn lead_combined(&self) {
        loop {
            let mut batch = Vec::new();
            while let Some(r) = self.s.queue.pop() {
                batch.push(r);
            }
            if batch.is_empty() {
                self.s.combining.store(false, Ordering::Release);
                let retake = !self.s.queue.is_empty()
                    && self
                        .s
                        .combining
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                if retake {
                    continue;
                }
                return;
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&self, batch: Vec<Arc<Request>>) {
        let mut results: Vec<Result<Appended, AppendError>> = Vec::with_capacity(batch.len());
        let lsn = {
            let mut st = self.s.state.write();
            for r in &batch {
                let seq = st.last_seq + 1;
                let ts = self.s.clock.now_ns().max(st.last_ts);
                let m = NewMessage {
                    subject: &r.subject,
                    headers: &r.headers,
                    payload: &r.payload,
                };
                results.push(
                    self.put(&mut st, seq, ts, 0, &m)
                        .map(|()| Appended { seq, ts }),
                );
            }
            st.lsn
        };
        let mut durable = self.flush(true, false, Some(lsn)).err();
        for (r, res) in batch.iter().zip(results) {
            let res = match (res, durable.take()) {
                (Ok(_), Some(e)) => Err(AppendError::Durability(e)),
                // Later members of a failed group get the poisoned stream's error.
                (Ok(a), None) => match self.s.poison.get() {
                    Some(p) if self.s.synced_lsn.load(Ordering::Acquire) < lsn => {
                        Err(AppendError::Durability(p.to_durability()))
                    }
                    _ => Ok(a),
                },
                (Err(e), d) => {
                    durable = d;
                    Err(e)
                }
            };
            r.finish(res);
        }
    }

    /// Appends all messages or none, with one durability wait. Sequences are consecutive and
    /// share one timestamp. After a crash either the whole batch is present or none of it.
    pub fn append_batch(&self, msgs: &[NewMessage<'_>]) -> Result<BatchAppended, AppendError> {
        self.check_writable()?;
        if msgs.is_empty() {
            return Err(AppendError::EmptyBatch);
        }
        for m in msgs {
            self.check_message(m)?;
        }
        let total: usize = msgs
            .iter()
            .map(|m| record::encoded_len(m.subject.len(), m.headers.len(), m.payload.len()))
            .sum();
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
            let ts = self.s.clock.now_ns().max(st.last_ts);
            // The whole batch goes into one block so recovery can drop an incomplete batch by
            // cutting the tail of a single file.
            st.ensure_room(&*self.s.vfs, Some(first), total, ts)
                .map_err(|e| AppendError::Durability(DurabilityError::from_io(e)))?;
            for (i, m) in msgs.iter().enumerate() {
                let flags = if i + 1 < msgs.len() { FLAG_BATCH } else { 0 };
                self.put(&mut st, first + i as u64, ts, flags, m)?;
            }
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
        let m = NewMessage {
            subject,
            headers,
            payload,
        };
        self.check_writable()?;
        self.check_message(&m)?;
        let lsn = {
            let mut st = self.s.state.write();
            if seq <= st.last_seq || seq > MAX_SEQ {
                return Err(AppendError::SequenceNotAfterLast {
                    seq,
                    last: st.last_seq,
                });
            }
            self.put(&mut st, seq, ts, 0, &m)?;
            st.lsn
        };
        self.after_write(lsn, seq)?;
        Ok(())
    }

    fn put(
        &self,
        st: &mut LogState,
        seq: u64,
        ts: i64,
        flags: u8,
        m: &NewMessage<'_>,
    ) -> Result<(), AppendError> {
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
        let len = record::encoded_len(m.subject.len(), m.headers.len(), m.payload.len());
        st.ensure_room(&*self.s.vfs, Some(seq), len, ts)
            .map_err(|e| AppendError::Durability(DurabilityError::from_io(e)))?;
        let (off, len) = st.encode(
            Kind::Msg,
            flags,
            seq,
            ts,
            m.subject.as_bytes(),
            m.headers,
            m.payload,
        );
        st.apply_msg(seq, ts, off, len);
        Ok(())
    }

    /// Writes a control record and applies it; `apply` runs only if `valid` accepted the op.
    fn control<T>(
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
    fn control_record<T>(
        &self,
        kind: Kind,
        seq_of: impl FnOnce(&LogState) -> Result<(u64, Vec<u8>), WriteError>,
        apply: impl FnOnce(&mut LogState, u64) -> T,
    ) -> Result<(T, u64, u64), WriteError> {
        let as_write = |e: AppendError| match e {
            AppendError::Poisoned(p) => WriteError::Poisoned(p),
            AppendError::Durability(d) => WriteError::Durability(d),
            _ => WriteError::Closed,
        };
        self.check_writable().map_err(as_write)?;
        {
            let mut st = self.s.state.write();
            // Re-checked under the lock: a deleted stream must not touch its old directory.
            self.check_writable().map_err(as_write)?;
            let (seq, payload) = seq_of(&st)?;
            let now = self.s.clock.now_ns();
            let len = record::encoded_len(0, 0, payload.len());
            st.ensure_room(&*self.s.vfs, None, len, now)
                .map_err(|e| WriteError::Durability(DurabilityError::from_io(e)))?;
            st.encode(kind, 0, seq, now, &[], &[], &payload);
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
        let (bi, off) = st.find(seq).ok_or(LoadError::NotFound(seq))?;
        let bytes = st.blocks[bi].bytes();
        match record::decode(bytes.get(off..).unwrap_or(&[])) {
            Ok(r) if r.seq == seq && r.kind == Kind::Msg => Ok(StoredMessage::from_record(&r)),
            _ => Err(LoadError::Corrupt(seq)),
        }
    }

    /// Removes one message.
    pub fn remove(&self, seq: u64) -> Result<(), WriteError> {
        self.control(
            Kind::Delete,
            |st| {
                st.find(seq)
                    .map(|_| (seq, Vec::new()))
                    .ok_or(WriteError::NotFound(seq))
            },
            |st, seq| {
                st.apply_remove(seq);
            },
        )
    }

    /// Removes one message and overwrites its bytes on disk (and in memory) before returning.
    pub fn erase(&self, seq: u64) -> Result<(), WriteError> {
        // The write lock is held from the tombstone to the overwrite, so no checkpoint can
        // cover the tombstone before the bytes are gone, and no compaction can move them.
        let w = self.s.write_lock.lock();
        let mut sum = None;
        let (_, lsn, _) = self.control_record(
            Kind::Erase,
            |st| {
                let (bi, off) = st.find(seq).ok_or(WriteError::NotFound(seq))?;
                sum = record::checksum_at(st.blocks[bi].bytes(), off);
                Ok((seq, Vec::new()))
            },
            |st, seq| {
                st.apply_remove(seq);
            },
        )?;
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
    fn overwrite_erased(&self, seq: u64, sum: u64) -> std::io::Result<()> {
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
            Data::Sealing(buf) => Some(buf.clone()),
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

    /// Removes every message; sequences continue after the last one. Returns how many went.
    pub fn purge(&self) -> Result<u64, WriteError> {
        self.control(
            Kind::Purge,
            |st| Ok((st.last_seq + 1, Vec::new())),
            |st, floor| st.apply_purge(floor),
        )
    }

    /// Removes every message below `seq`. Returns how many went.
    pub fn compact(&self, seq: u64) -> Result<u64, WriteError> {
        self.control(
            Kind::Purge,
            |_| {
                if seq == 0 || seq > MAX_SEQ {
                    return Err(WriteError::InvalidSequence {
                        seq,
                        why: "must be between 1 and 2^62",
                    });
                }
                Ok((seq, Vec::new()))
            },
            |st, floor| st.apply_purge(floor),
        )
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
        Ok(n)
    }

    /// The stream's counters.
    pub fn state(&self) -> StreamState {
        let st = self.s.state.read();
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

    fn uses_lease(&self) -> bool {
        self.s.persistent && !matches!(self.s.cfg.durability, Durability::Always)
    }

    fn after_write(&self, lsn: u64, last_seq: u64) -> Result<(), DurabilityError> {
        if !self.s.persistent {
            return Ok(());
        }
        match self.s.cfg.durability {
            Durability::Always => self.wait_durable(lsn)?,
            Durability::Interval(d) => {
                if self.s.last_sync.lock().elapsed() >= d {
                    self.wait_durable(lsn)?;
                } else {
                    self.nudge(lsn)?;
                }
            }
            Durability::None => self.nudge(lsn)?,
        }
        if self.uses_lease() && last_seq > self.s.lease.load(Ordering::SeqCst) {
            self.raise_lease(last_seq + LEASE_SPAN)?;
        }
        Ok(())
    }

    /// Returns once log position `lsn` is synced. One caller at a time leads: it syncs
    /// everything appended so far while the others wait on the condvar, then the next
    /// leader covers everything that arrived meanwhile. A mutex alone would let a returning
    /// leader barge ahead of parked waiters, so each fsync would cover one message.
    fn wait_durable(&self, lsn: u64) -> Result<(), DurabilityError> {
        loop {
            if self.s.synced_lsn.load(Ordering::Acquire) >= lsn {
                return Ok(());
            }
            let mut leading = self.s.commit.lock();
            if self.s.synced_lsn.load(Ordering::Acquire) >= lsn {
                return Ok(());
            }
            if *leading {
                self.s.committed.wait(&mut leading);
                continue;
            }
            *leading = true;
            drop(leading);
            let _leader = Leader(&self.s);
            return self.flush(true, false, Some(lsn));
        }
    }

    /// Under `None` and `Interval` the appender hands its own data to the OS every
    /// `INLINE_BYTES`: on a small machine a background copy thread only competes with it, and
    /// a process crash then loses at most that much (plus the maintainer's 10 ms tick).
    fn nudge(&self, lsn: u64) -> Result<(), DurabilityError> {
        let unwritten = lsn.saturating_sub(self.s.written_lsn.load(Ordering::Acquire));
        if unwritten >= INLINE_BYTES {
            return self.flush(false, false, Some(lsn));
        }
        Ok(())
    }

    /// Raises the durable lease to at least `upto`; never lowers it.
    fn raise_lease(&self, upto: u64) -> Result<(), DurabilityError> {
        let _g = self.s.lease_lock.lock();
        if self.s.lease.load(Ordering::SeqCst) >= upto || self.s.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        self.store_lease(upto)
    }

    /// Lowers the lease to the current last sequence (after a truncate, and at close).
    /// While it runs the in-memory lease reads 0, so a racing appender takes the slow path
    /// and waits for the lock: no sequence is returned above a lease that ends up on disk.
    fn lower_lease(&self) -> Result<(), DurabilityError> {
        let _g = self.s.lease_lock.lock();
        self.s.lease.store(0, Ordering::SeqCst);
        let last = self.s.state.read().last_seq;
        self.store_lease(last)
    }

    fn store_lease(&self, v: u64) -> Result<(), DurabilityError> {
        let path = self.s.dir.join(LEASE_FILE);
        let id = self.s.state.read().stream_id;
        io::replace_file(&*self.s.vfs, &path, &encode_lease(id, v))
            .map_err(|e| self.poison_with(e))?;
        self.s.lease.store(v, Ordering::SeqCst);
        Ok(())
    }

    fn poison_with(&self, e: std::io::Error) -> DurabilityError {
        let kind = e.kind();
        let raw = e.raw_os_error();
        let copy = match raw {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(kind, e.to_string()),
        };
        let _ = self.s.poison.set(Poisoned {
            cause: Arc::new(copy),
        });
        DurabilityError::from_io(e)
    }

    /// Writes (and with `sync`, fsyncs) everything encoded so far; with `ckpt`, also writes a
    /// checkpoint. With `target`, returns at once if that log position is already handled:
    /// concurrent durable appenders queue on the I/O lock and most find their work done by
    /// the one ahead of them (group commit).
    pub(crate) fn flush(
        &self,
        sync: bool,
        ckpt: bool,
        target: Option<u64>,
    ) -> Result<(), DurabilityError> {
        if !self.s.persistent {
            return Ok(());
        }
        let sync = sync || ckpt;
        let written = {
            // Writes never queue behind an fsync: under `None` a checkpoint's sync must not
            // hold back handing data to the OS.
            let w = self.s.write_lock.lock();
            self.write_phase(&w, sync, ckpt, target)?
        };
        match written {
            Some((lsn, ck)) if sync => self.sync_phase(lsn, ck),
            _ => Ok(()),
        }
    }

    /// Hands everything encoded so far to the OS (with the write lock held by the caller).
    /// `None` when `target` was already reached or the stream is deleted.
    fn write_phase(
        &self,
        _write_lock: &MutexGuard<'_, ()>,
        sync: bool,
        ckpt: bool,
        target: Option<u64>,
    ) -> Result<Option<(u64, Option<Checkpoint>)>, DurabilityError> {
        self.check_poison()?;
        let done = |t: u64| !ckpt && self.done_lsn(sync) >= t;
        if target.is_some_and(done) || self.s.deleted.load(Ordering::Acquire) {
            return Ok(None);
        }
        let work = self.snapshot(ckpt);
        // A durable appender leading a group commit submits write + fdatasync as one linked
        // chain (one io_uring submission).
        let linked = sync && matches!(self.s.cfg.durability, Durability::Always);
        self.write_jobs(&work.jobs, linked)
            .map_err(|e| self.poison_with(e))?;
        self.finish_jobs(&work.jobs, linked);
        self.s.written_lsn.fetch_max(work.lsn, Ordering::AcqRel);
        Ok(Some((work.lsn, work.ckpt)))
    }

    /// Makes everything written up to `lsn` durable, then writes `ck` if it is newer than the
    /// checkpoint on disk.
    fn sync_phase(&self, lsn: u64, ck: Option<Checkpoint>) -> Result<(), DurabilityError> {
        let mut io = self.s.sync_lock.lock();
        self.check_poison()?;
        if self.s.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        if ck.is_none() && self.s.synced_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        self.sync_written().map_err(|e| self.poison_with(e))?;
        self.s.synced_lsn.fetch_max(lsn, Ordering::AcqRel);
        *self.s.last_sync.lock() = Instant::now();
        let Some(ck) = ck else { return Ok(()) };
        if lsn < io.ckpt_lsn {
            // A newer checkpoint reached the disk while this one waited: never go back.
            return Ok(());
        }
        // A failed checkpoint loses nothing: the log is synced and the previous checkpoint
        // stays valid; recovery just replays more.
        self.write_checkpoint(&ck)
            .map_err(DurabilityError::from_io)?;
        io.ckpt_lsn = lsn;
        io.ckpt_at = Instant::now();
        let older = {
            let mut c = self.s.ckpts.lock();
            let older = c.newest.replace(Arc::new(ck));
            c.older = older.clone();
            older
        };
        // Only what both checkpoints on disk cover may go: if the newest is damaged,
        // recovery falls back to the older one and still finds every record it needs.
        if let Some(older) = older {
            self.drop_retired(&older)
                .map_err(DurabilityError::from_io)?;
        }
        Ok(())
    }

    /// Rotates the checkpoint: the current one becomes `checkpoint.prev`, the new one
    /// `checkpoint` (each step crash-safe; recovery uses the newest valid one).
    fn write_checkpoint(&self, ck: &Checkpoint) -> std::io::Result<()> {
        let vfs = &*self.s.vfs;
        let path = self.s.dir.join(CHECKPOINT_FILE);
        let tmp = io::tmp_path(&path);
        if vfs.exists(&tmp) {
            vfs.remove_file(&tmp)?;
        }
        vfs.open(&tmp, io::OpenMode::CreateNew)?
            .write_and_sync(&[(&ck.encode(), 0)])?;
        if vfs.exists(&path) {
            vfs.rename(&path, &self.s.dir.join(CHECKPOINT_PREV_FILE))?;
        }
        vfs.rename(&tmp, &path)?;
        vfs.sync_dir(&self.s.dir)
    }

    fn done_lsn(&self, synced: bool) -> u64 {
        let w = if synced {
            &self.s.synced_lsn
        } else {
            &self.s.written_lsn
        };
        w.load(Ordering::Acquire)
    }

    fn check_poison(&self) -> Result<(), DurabilityError> {
        match self.s.poison.get() {
            Some(p) => Err(p.to_durability()),
            None => Ok(()),
        }
    }

    fn snapshot(&self, ckpt: bool) -> Work {
        let st = self.s.state.read();
        let mut jobs = Vec::new();
        let mut all: Vec<&Block> = st.retired.iter().chain(st.blocks.iter()).collect();
        all.sort_by_key(|b| b.id);
        for b in all {
            let Some(file) = &b.file else { continue };
            let (buf, trailer) = match &b.data {
                Data::Active(w) => (w.buf().clone(), None),
                Data::Sealing(buf) => {
                    let t =
                        encode_trailer(b.id, b.first_seq, buf.len() as u64, &b.offsets.physical());
                    (buf.clone(), Some(t))
                }
                Data::Sealed(_) => continue,
            };
            let to = buf.len();
            if to == b.written && trailer.is_none() {
                continue;
            }
            jobs.push(Job {
                id: b.id,
                file: file.clone(),
                buf,
                from: b.written,
                to,
                trailer,
                new_file: !b.dir_synced,
            });
        }
        let ckpt = ckpt.then(|| {
            let (pos_block, pos_offset) = st
                .blocks
                .last()
                .map(|b| (b.id, b.bytes().len() as u64))
                .unwrap_or((0, 0));
            let ck = Checkpoint {
                stream_id: st.stream_id,
                last_seq: st.last_seq,
                last_ts: st.last_ts,
                floor: st.floor,
                live_bytes: st.live_bytes,
                pos_block,
                pos_offset,
                next_block_id: st.next_block_id,
                blocks: st
                    .blocks
                    .iter()
                    .map(|b| BlockEntry {
                        id: b.id,
                        first_seq: b.first_seq,
                        slots: b.slots(),
                        live: b.live,
                        live_bytes: b.live_bytes,
                    })
                    .collect(),
                deletes: st.deletes.clone(),
            };
            ck
        });
        Work {
            jobs,
            lsn: st.lsn,
            ckpt,
        }
    }

    /// Writes the jobs; with `linked`, each file's writes and its fdatasync go as one chain and
    /// new directory entries are synced too.
    fn write_jobs(&self, jobs: &[Job], linked: bool) -> std::io::Result<()> {
        let mut new_file = false;
        for j in jobs {
            let bytes = j.buf.bytes();
            let mut parts: Vec<(&[u8], u64)> = Vec::with_capacity(2);
            if j.to > j.from {
                parts.push((&bytes[j.from..j.to], j.from as u64));
            }
            if let Some(t) = &j.trailer {
                parts.push((t, j.to as u64));
            }
            if linked {
                j.file.write_and_sync(&parts)?;
            } else {
                for (b, off) in parts {
                    j.file.write_all_at(b, off)?;
                }
            }
            new_file |= j.new_file;
        }
        if new_file && linked {
            self.s.vfs.sync_dir(&self.s.dir)?;
        }
        Ok(())
    }

    fn finish_jobs(&self, jobs: &[Job], synced: bool) {
        let mut st = self.s.state.write();
        for j in jobs {
            let Some(b) = st.block_mut(j.id) else {
                continue;
            };
            b.written = b.written.max(j.to);
            b.file_len = b
                .file_len
                .max(j.to + j.trailer.as_ref().map_or(0, Vec::len));
            if synced {
                b.synced = b.file_len;
                b.dir_synced = true;
            }
            if j.trailer.is_some() {
                if let Ok(map) = j.file.map() {
                    b.offsets.detach();
                    b.data = Data::Sealed(Arc::new(map));
                }
            }
        }
    }

    /// fdatasyncs every file with written but unsynced bytes, and the directory if a block
    /// file is new.
    fn sync_written(&self) -> std::io::Result<()> {
        let (mut files, new_dir) = {
            let st = self.s.state.read();
            let mut new_dir = false;
            let mut files: Vec<(u64, Arc<dyn VFile>, usize)> = Vec::new();
            for b in st.blocks.iter().chain(st.retired.iter()) {
                let Some(f) = &b.file else { continue };
                new_dir |= !b.dir_synced;
                if b.synced < b.file_len || !b.dir_synced {
                    files.push((b.id, f.clone(), b.file_len));
                }
            }
            (files, new_dir)
        };
        // Log order: a crash between two syncs then keeps a prefix of the log (an older
        // block's tombstone is never lost while a newer block's records survive).
        files.sort_by_key(|(id, _, _)| *id);
        for (_, f, _) in &files {
            f.sync_data()?;
        }
        if new_dir {
            self.s.vfs.sync_dir(&self.s.dir)?;
        }
        let mut st = self.s.state.write();
        for (id, _, len) in files {
            if let Some(b) = st.block_mut(id) {
                b.synced = b.synced.max(len);
                b.dir_synced = true;
            }
        }
        Ok(())
    }

    /// Deletes the files of retired blocks that `older` (the older checkpoint on disk)
    /// neither lists nor needs: everything in them is reflected by both checkpoints.
    fn drop_retired(&self, older: &Checkpoint) -> std::io::Result<()> {
        let gone: Vec<Block> = {
            let mut st = self.s.state.write();
            let covered =
                |b: &Block| b.id < older.pos_block && !older.blocks.iter().any(|e| e.id == b.id);
            let (gone, keep): (Vec<Block>, Vec<Block>) = std::mem::take(&mut st.retired)
                .into_iter()
                .partition(covered);
            st.retired = keep;
            gone
        };
        if gone.is_empty() {
            return Ok(());
        }
        for b in &gone {
            match self.s.vfs.remove_file(&Block::path(&self.s.dir, b.id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.s.vfs.sync_dir(&self.s.dir)
    }

    /// Reclaims space now: checkpoints (twice), deletes blocks with no live message and
    /// rewrites sealed blocks that are less than half live. Returns how many were rewritten.
    pub fn reclaim(&self) -> Result<usize, WriteError> {
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

    /// Rewrites the sparsest eligible sealed block, if any: write a new file with the records
    /// the durable checkpoint calls live, fsync, rename over the old one, fsync the directory.
    /// Never in place, so a crash leaves the old or the new file. Records deleted after that
    /// checkpoint are kept, so replaying their tombstones and the checkpoint's per-block
    /// counts stay valid (invariant `compaction-keeps-checkpoint-live`).
    fn compact_one_sparse(&self) -> std::io::Result<bool> {
        // Compact against the older checkpoint on disk: if the newest is damaged, recovery
        // falls back to it, and it must still find every record it counts as live.
        let Some(ck) = self.s.ckpts.lock().older.clone() else {
            return Ok(false);
        };
        let _w = self.s.write_lock.lock();
        if self.s.deleted.load(Ordering::Acquire) {
            return Ok(false);
        }
        let min_bytes = COMPACT_MIN_BYTES.min(self.s.cfg.block_size as usize / 2);
        let pick = {
            let st = self.s.state.read();
            let n = st.blocks.len();
            st.blocks
                .iter()
                .take(n.saturating_sub(1))
                .filter(|b| b.id < ck.pos_block && matches!(b.data, Data::Sealed(_)))
                .filter(|b| b.written >= min_bytes && (b.live_bytes as usize) * 2 < b.written)
                .min_by_key(|b| b.live_bytes * 1000 / b.written.max(1) as u64)
                .and_then(|b| match &b.data {
                    Data::Sealed(m) => {
                        let ck_slots = ck.blocks.iter().find(|e| e.id == b.id)?.slots as usize;
                        let mut table = b.offsets.physical();
                        table.truncate(ck_slots);
                        Some((b.id, b.first_seq, m.clone(), table))
                    }
                    _ => None,
                })
        };
        let Some((id, first_seq, map, offsets)) = pick else {
            return Ok(false);
        };
        let live = |seq: u64| seq >= ck.floor && seq <= ck.last_seq && !ck.deletes.contains(seq);
        let mut out = Vec::with_capacity(map.len() / 2);
        out.extend_from_slice(map.get(..crate::block::HEADER_LEN).unwrap_or(&[]));
        let mut new_offsets = vec![crate::block::NO_RECORD; offsets.len()];
        for (i, &off) in offsets.iter().enumerate() {
            let rec = map.get(off as usize..).and_then(|b| {
                record::decode_head(b)
                    .ok()
                    .map(|h| &b[..h.len.min(b.len())])
            });
            if let (Some(rec), true) = (
                rec,
                off != crate::block::NO_RECORD && live(first_seq + i as u64),
            ) {
                new_offsets[i] = out.len() as u32;
                out.extend_from_slice(rec);
            }
        }
        let body_end = out.len();
        out.extend(encode_trailer(id, first_seq, body_end as u64, &new_offsets));
        let path = Block::path(&self.s.dir, id);
        let tmp = io::tmp_path(&path);
        if self.s.vfs.exists(&tmp) {
            self.s.vfs.remove_file(&tmp)?;
        }
        let f = self.s.vfs.open(&tmp, io::OpenMode::CreateNew)?;
        f.write_and_sync(&[(&out, 0)])?;
        self.s.vfs.rename(&tmp, &path)?;
        self.s.vfs.sync_dir(&self.s.dir)?;
        let file = self.s.vfs.open(&path, io::OpenMode::Existing)?;
        let map = Arc::new(file.map()?);
        let mut st = self.s.state.write();
        if let Some(b) = st.block_mut(id) {
            // The new table keeps the checkpoint's slot count (a later truncate that is not yet
            // durable must not shorten a trailer); readers see the current count.
            let logical = b.offsets.len();
            b.offsets = Offsets::owned(new_offsets);
            b.offsets.clip(logical);
            b.data = Data::Sealed(map);
            b.file = Some(file);
            b.written = body_end;
            b.file_len = out.len();
            b.synced = out.len();
        }
        Ok(true)
    }

    /// Background upkeep: write what is pending, sync on the interval, checkpoint when due,
    /// renew the sequence lease ahead of need.
    pub(crate) fn maintain(&self) -> Result<(), DurabilityError> {
        if !self.s.persistent || self.s.closed.load(Ordering::Acquire) || self.is_poisoned() {
            return Ok(());
        }
        let (lsn, last_seq) = {
            let st = self.s.state.read();
            (st.lsn, st.last_seq)
        };
        let (ck_due, sync_due) = {
            let io = self.s.sync_lock.lock();
            let ck_due = lsn > io.ckpt_lsn
                && (lsn - io.ckpt_lsn >= CKPT_BYTES || io.ckpt_at.elapsed() >= CKPT_EVERY);
            let unsynced = lsn > self.s.synced_lsn.load(Ordering::Acquire);
            let sync_due = unsynced
                && match self.s.cfg.durability {
                    Durability::Interval(d) => self.s.last_sync.lock().elapsed() >= d / 2,
                    _ => false,
                };
            (ck_due, sync_due)
        };
        if ck_due || sync_due || lsn > self.s.written_lsn.load(Ordering::Acquire) {
            self.flush(sync_due, ck_due, None)?;
        }
        if self.uses_lease() && last_seq + LEASE_SPAN / 2 > self.s.lease.load(Ordering::SeqCst) {
            self.raise_lease(last_seq + LEASE_SPAN)?;
        }
        if ck_due {
            // One block per checkpoint bounds the I/O spent on reclamation.
            self.compact_one_sparse()
                .map_err(DurabilityError::from_io)?;
        }
        Ok(())
    }

    /// Flushes, checkpoints and releases the lease so a clean reopen replays nothing and skips
    /// no sequence. Later calls on this handle return `Closed`.
    pub(crate) fn close(&self) -> Result<(), DurabilityError> {
        if self.s.closed.swap(true, Ordering::AcqRel) || !self.s.persistent || self.is_poisoned() {
            return Ok(());
        }
        self.flush(true, true, None)?;
        if self.uses_lease() {
            self.lower_lease()?;
        }
        Ok(())
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
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.s.dir
    }
}
