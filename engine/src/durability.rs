//! When a write counts as stored: group commit for durable writes (flat combining for single
//! appends, a leader/follower handshake for the rest), inline hand-off to the OS for the
//! others, the sequence lease, and poisoning after a failed write or fsync.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::checkpoint::encode_lease;
use crate::config::Durability;
use crate::error::{AppendError, DurabilityError, Poisoned};
use crate::io;
use crate::stream::{Appended, NewMessage, Shared, Stream, LEASE_FILE};

/// Unwritten bytes after which an appender writes them itself.
const INLINE_BYTES: u64 = 1 << 20;
/// Sequences reserved by one lease write.
pub(crate) const LEASE_SPAN: u64 = 1 << 20;

/// A durable single append waiting in the combining queue.
pub(crate) struct Request {
    msg: OwnedMessage,
    thread: std::thread::Thread,
    result: Mutex<Option<Result<Appended, AppendError>>>,
}

impl Request {
    fn new(m: &NewMessage<'_>) -> Self {
        Request {
            msg: OwnedMessage::new(m),
            thread: std::thread::current(),
            result: Mutex::new(None),
        }
    }
    pub(crate) fn take(&self) -> Option<Result<Appended, AppendError>> {
        self.result.lock().take()
    }
    pub(crate) fn finish(&self, r: Result<Appended, AppendError>) {
        *self.result.lock() = Some(r);
        self.thread.unpark();
    }
}

/// A [`NewMessage`] that owns its bytes, to wait in the queue.
struct OwnedMessage {
    subject: String,
    headers: Vec<u8>,
    payload: Vec<u8>,
    ttl: Option<crate::ttl::Ttl>,
    rollup: Option<crate::Rollup>,
    last_seq: Option<u64>,
    last_subject_seq: Option<u64>,
    subject_filter: Option<String>,
    msg_id: Option<Vec<u8>>,
}

impl OwnedMessage {
    fn new(m: &NewMessage<'_>) -> Self {
        OwnedMessage {
            subject: m.subject.to_owned(),
            headers: m.headers.to_vec(),
            payload: m.payload.to_vec(),
            ttl: m.ttl,
            rollup: m.rollup,
            last_seq: m.expect.last_seq,
            last_subject_seq: m.expect.last_subject_seq,
            subject_filter: m.expect.subject_filter.map(str::to_owned),
            msg_id: m.msg_id.map(<[u8]>::to_vec),
        }
    }

    fn as_new(&self) -> NewMessage<'_> {
        NewMessage {
            subject: &self.subject,
            headers: &self.headers,
            payload: &self.payload,
            ttl: self.ttl,
            rollup: self.rollup,
            expect: crate::Expect {
                last_seq: self.last_seq,
                last_subject_seq: self.last_subject_seq,
                subject_filter: self.subject_filter.as_deref(),
            },
            msg_id: self.msg_id.as_deref(),
        }
    }
}

/// Hands group-commit leadership back when the leader is done, however it leaves.
pub(crate) struct Leader<'a>(&'a Shared);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        *self.0.commit.lock() = false;
        self.0.committed.notify_all();
    }
}

impl Stream {
    /// A durable single append by flat combining: the message joins a queue, and one
    /// producer at a time leads: it encodes everything queued under one state-lock hold,
    /// syncs once, and wakes each producer with its result. Each message then costs one
    /// sleep and one wake-up; with the lock taken per message, many producers on few cores
    /// spent their time handing the lock and the commit condvar to each other.
    pub(crate) fn append_combined(&self, m: &NewMessage<'_>) -> Result<Appended, AppendError> {
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
                let m = r.msg.as_new();
                results.push(match self.duplicate_of(&mut st, &m) {
                    Some(first) => Ok(first),
                    None => self
                        .put(&mut st, seq, ts, 0, &m)
                        .map(|()| Appended::stored(seq, ts)),
                });
            }
            st.lsn
        };
        self.wake_watchers();
        let mut durable = self.flush(true, false, Some(lsn)).err();
        for (r, res) in batch.iter().zip(results) {
            let res = match (res, durable.take()) {
                (Ok(_), Some(e)) => Err(AppendError::Durability(e)),
                // Later members of a failed group get the poisoned stream's error.
                (Ok(a), None) => match self.poison() {
                    Some(p) if self.s.synced_lsn.load(Ordering::Acquire) < lsn => {
                        Err(AppendError::Durability(p.to_durability()))
                    }
                    _ => match self.dropped_by_heal(lsn) {
                        Some(e) => Err(AppendError::Durability(e)),
                        None => Ok(a),
                    },
                },
                (Err(e), d) => {
                    durable = d;
                    Err(e)
                }
            };
            r.finish(res);
        }
    }

    pub(crate) fn uses_lease(&self) -> bool {
        self.s.persistent && !matches!(self.s.cfg.durability, Durability::Always)
    }

    pub(crate) fn after_write(&self, lsn: u64, last_seq: u64) -> Result<(), DurabilityError> {
        self.wake_watchers();
        if !self.s.persistent {
            return Ok(());
        }
        // The lease first: if writing it fails, the record has not been synced on this
        // append's behalf, so the heal that follows drops it and the error stands.
        if self.uses_lease() && last_seq > self.s.lease.load(Ordering::SeqCst) {
            self.raise_lease(last_seq + LEASE_SPAN)?;
        }
        match self.s.cfg.durability {
            Durability::Always => self.wait_durable(lsn)?,
            Durability::Interval(d) => {
                if self.since_last_sync() >= d {
                    self.wait_durable(lsn)?;
                } else {
                    self.nudge(lsn)?;
                }
            }
            Durability::None => self.nudge(lsn)?,
        }
        Ok(())
    }

    /// After a write no caller waits for (expiry): hands the bytes to the OS as appends do
    /// and covers new sequences with the lease, whatever the durability mode.
    pub(crate) fn after_background_write(
        &self,
        lsn: u64,
        last_seq: u64,
    ) -> Result<(), DurabilityError> {
        self.wake_watchers();
        if !self.s.persistent {
            return Ok(());
        }
        self.nudge(lsn)?;
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
        self.wait_synced(lsn)?;
        // A heal may have dropped the record after a failed sync, then synced past it.
        match self.dropped_by_heal(lsn) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn wait_synced(&self, lsn: u64) -> Result<(), DurabilityError> {
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
    pub(crate) fn raise_lease(&self, upto: u64) -> Result<(), DurabilityError> {
        let _g = self.s.lease_lock.lock();
        if self.s.lease.load(Ordering::SeqCst) >= upto || self.s.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        self.store_lease(upto)
    }

    /// Lowers the lease to the current last sequence (after a truncate, and at close).
    /// While it runs the in-memory lease reads 0, so a racing appender takes the slow path
    /// and waits for the lock: no sequence is returned above a lease that ends up on disk.
    pub(crate) fn lower_lease(&self) -> Result<(), DurabilityError> {
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

    pub(crate) fn poison_with(&self, e: std::io::Error) -> DurabilityError {
        let kind = e.kind();
        let raw = e.raw_os_error();
        let copy = match raw {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(kind, e.to_string()),
        };
        let mut p = self.s.poison.lock();
        if p.is_none() {
            *p = Some(Poisoned {
                cause: Arc::new(copy),
            });
            self.s.poisoned.store(true, Ordering::Release);
        }
        DurabilityError::from_io(e)
    }

    pub(crate) fn poison(&self) -> Option<Poisoned> {
        if !self.is_poisoned() {
            return None;
        }
        self.s.poison.lock().clone()
    }

    pub(crate) fn check_poison(&self) -> Result<(), DurabilityError> {
        match self.poison() {
            Some(p) => Err(p.to_durability()),
            None => Ok(()),
        }
    }
}
