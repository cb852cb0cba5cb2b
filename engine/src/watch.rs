//! The change feed: a [`Watcher`] yields, in sequence order, every stored message matching a
//! filter from a starting sequence on, then waits for new ones. Any thread may append, remove
//! or watch; a watcher finds its next match through the subject index, so a sparse filter
//! costs nothing per non-matching message.
//!
//! A watcher sees what `load` sees: a message is delivered once it is in the stream, which under
//! `Durability::Always` may be just before its appender is told it is durable.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::QueryError;
use crate::query::{next_match, read};
use crate::stream::{StoredMessage, Stream};
use crate::subject;

/// Where a feed starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchFrom {
    /// Every matching message from this sequence on.
    Seq(u64),
    /// The newest message of every matching subject (a key-value view), then every new one.
    LastPerSubject,
    /// Only messages appended after the watcher is created.
    New,
}

/// A feed of a stream's messages matching one filter. Not shared between threads: each
/// consumer makes its own (they are cheap).
pub struct Watcher {
    stream: Stream,
    filter: String,
    /// The next sequence to look at.
    cursor: u64,
    /// Sequences to deliver before the cursor (the last-per-subject start).
    first: VecDeque<u64>,
    /// The descriptor a host polls, once asked for.
    fd: Option<Arc<FeedFd>>,
}

/// An eventfd that is readable while a watcher may have something new: hosts with their own
/// event loop poll it instead of blocking a thread in [`Watcher::next_timeout`].
pub(crate) struct FeedFd(OwnedFd);

impl FeedFd {
    fn new() -> io::Result<FeedFd> {
        use rustix::event::{eventfd, EventfdFlags};
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(FeedFd(fd))
    }

    /// Makes the descriptor readable. A full counter (EAGAIN) is readable already.
    pub(crate) fn signal(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Makes it unreadable until the next signal; done before looking for messages, so a
    /// signal for anything the look misses comes after and is kept.
    fn drain(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut b);
    }
}

impl Stream {
    /// A feed of the messages matching `filter`, starting as `from` says.
    pub fn watch(&self, filter: &str, from: WatchFrom) -> Result<Watcher, QueryError> {
        subject::validate_filter(filter).map_err(QueryError::InvalidFilter)?;
        if self.is_closed() {
            return Err(QueryError::Closed);
        }
        // Counted before anything is read, so no append after this point can miss waking it.
        self.s.watchers.fetch_add(1, Ordering::AcqRel);
        let mut w = Watcher {
            stream: self.clone(),
            filter: filter.to_owned(),
            cursor: 0,
            first: VecDeque::new(),
            fd: None,
        };
        match from {
            WatchFrom::Seq(seq) => w.cursor = seq,
            WatchFrom::New => w.cursor = self.s.state.read().last_seq + 1,
            WatchFrom::LastPerSubject => {
                // One read of the state, so the starting set and the cursor agree.
                let st = self.s.state.read();
                let ix = st.index.as_ref();
                let mut last: Vec<u64> = Vec::new();
                if let Some(ix) = ix {
                    ix.for_each_match(filter, |id| {
                        if let Some(l) = ix.seqs(id) {
                            last.push(l.last());
                        }
                    });
                }
                last.sort_unstable();
                w.first = last.into();
                w.cursor = st.last_seq + 1;
            }
        }
        Ok(w)
    }

    /// Wakes every watcher waiting for new messages (cheap when there is none).
    pub(crate) fn wake_watchers(&self) {
        if self.s.watchers.load(Ordering::Acquire) > 0 {
            let fds = self.s.feed_lock.lock();
            self.s.feed.notify_all();
            for fd in fds.iter() {
                fd.signal();
            }
        }
    }
}

impl Watcher {
    /// The next matching message if there is one now; never blocks.
    pub fn poll(&mut self) -> Result<Option<StoredMessage>, QueryError> {
        if let Some(fd) = &self.fd {
            fd.drain();
        }
        if self.stream.s.closed.load(Ordering::Acquire) {
            return Err(QueryError::Closed);
        }
        let st = self.stream.s.state.read();
        while let Some(seq) = self.first.pop_front() {
            // A message removed since the watch began is no longer stored: skipped.
            match read(&st, seq) {
                Some(Ok(m)) => return Ok(Some(m)),
                Some(Err(s)) => return Err(QueryError::Corrupt(s)),
                None => {}
            }
        }
        match next_match(&st, &self.filter, self.cursor) {
            Some(seq) => {
                self.cursor = seq + 1;
                match read(&st, seq) {
                    Some(Ok(m)) => Ok(Some(m)),
                    Some(Err(s)) => Err(QueryError::Corrupt(s)),
                    None => Ok(None),
                }
            }
            None => {
                // Nothing up to the last sequence matches: never look at those again.
                self.cursor = self.cursor.max(st.last_seq + 1);
                Ok(None)
            }
        }
    }

    /// The next matching message, waiting up to `timeout` for one to be appended; `None` when
    /// the time ran out.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<StoredMessage>, QueryError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.poll()? {
                return Ok(Some(m));
            }
            let s = &self.stream.s;
            let mut g = s.feed_lock.lock();
            // Checked under the feed lock: an append after this check must take the lock to
            // wake us, which it can only do once we wait.
            let fresh = s.state.read().last_seq >= self.cursor;
            if fresh || s.closed.load(Ordering::Acquire) {
                continue;
            }
            if s.feed.wait_until(&mut g, deadline).timed_out() {
                drop(g);
                return self.poll();
            }
        }
    }

    /// The next sequence the feed will look at.
    pub fn position(&self) -> u64 {
        self.cursor
    }

    /// A descriptor (an eventfd) that is readable while the feed may have a message for
    /// [`Watcher::poll`]: after an append, a removal that could matter, or the stream's close.
    /// Poll it for reading, then call `poll` until it returns `None` (which also makes the
    /// descriptor unreadable until the next change). It starts readable, and lives as long as
    /// the watcher; the caller must not close it.
    pub fn fd(&mut self) -> io::Result<BorrowedFd<'_>> {
        let fd = match self.fd.take() {
            Some(fd) => fd,
            None => {
                let fd = Arc::new(FeedFd::new()?);
                fd.signal();
                self.stream.s.feed_lock.lock().push(fd.clone());
                fd
            }
        };
        Ok(self.fd.insert(fd).0.as_fd())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            self.stream
                .s
                .feed_lock
                .lock()
                .retain(|f| !Arc::ptr_eq(f, &fd));
        }
        self.stream.s.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}
