//! Errors, one type per family of operations. Each keeps the `io::Error` that caused it.

use std::io;
use std::sync::Arc;

/// A stream that failed a write or an fsync refuses further writes until it heals (its files
/// cut back to the last successful sync and its state rebuilt, in place; see
/// `docs/durability.md`), because the state of the un-synced data is unknown.
#[derive(Debug, Clone, thiserror::Error)]
#[error("stream is poisoned by an earlier failed write or fsync: {cause}")]
pub struct Poisoned {
    #[source]
    pub cause: Arc<io::Error>,
}

impl Poisoned {
    /// What a writer gets from a poisoned stream: a full disk stays `StorageFull`, so hosts
    /// can match on it; anything else is `Poisoned`, carrying the original error.
    pub fn to_durability(&self) -> DurabilityError {
        if crate::io::is_storage_full(&self.cause) {
            let e = match self.cause.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(self.cause.kind(), self.cause.to_string()),
            };
            return DurabilityError::StorageFull(e);
        }
        DurabilityError::Poisoned(self.clone())
    }
}

/// A failure to make data durable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurabilityError {
    /// The device (or quota) is full. Nothing from the failed batch is reported as stored.
    #[error("storage is full")]
    StorageFull(#[source] io::Error),
    /// A write or fsync failed; the stream is now poisoned for writes.
    #[error("write or fsync failed")]
    Io(#[source] io::Error),
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
}

impl DurabilityError {
    pub(crate) fn from_io(e: io::Error) -> Self {
        if crate::io::is_storage_full(&e) {
            DurabilityError::StorageFull(e)
        } else {
            DurabilityError::Io(e)
        }
    }
}

/// Invalid configuration or names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("invalid stream name {0:?}: 1-128 characters of A-Z a-z 0-9 - _")]
    InvalidName(String),
    #[error("invalid subject {subject:?}: {why}")]
    InvalidSubject { subject: String, why: &'static str },
    #[error("invalid subject filter {filter:?}: {why}")]
    InvalidFilter { filter: String, why: &'static str },
    #[error("invalid limit {name}: {why}")]
    InvalidLimit { name: &'static str, why: String },
}

/// Errors of [`crate::Store::open`] and store-level calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("store directory is locked by another process")]
    Locked(#[source] io::Error),
    #[error("I/O error on the store directory")]
    Io(#[from] io::Error),
    #[error("store metadata at {path} is corrupt: {why}")]
    Corrupt { path: String, why: String },
    #[error("failed to open stream {name}")]
    Stream {
        name: String,
        #[source]
        source: Box<StreamError>,
    },
    /// An invalid option (a budget out of range).
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store is closed")]
    Closed,
    /// A read-only open of a directory that holds no store (it creates none).
    #[error("no store at {0} (a read-only open creates none)")]
    NotAStore(String),
}

/// Errors of stream creation, opening and deletion.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("stream {0} does not exist")]
    NotFound(String),
    #[error("stream {0} already exists")]
    AlreadyExists(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("I/O error")]
    Io(#[from] io::Error),
    #[error("{what} is corrupt: {why}")]
    Corrupt { what: String, why: String },
    #[error("store is closed")]
    Closed,
}

/// Errors of appends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error(transparent)]
    InvalidSubject(ConfigError),
    #[error("subject {0:?} is not accepted by this stream's subject filters")]
    SubjectNotInStream(String),
    #[error("message of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("sequence {seq} is not after the last sequence {last}")]
    SequenceNotAfterLast { seq: u64, last: u64 },
    #[error("batch is empty")]
    EmptyBatch,
    /// The filter of an expected last subject sequence is not a valid filter.
    #[error(transparent)]
    InvalidFilter(ConfigError),
    /// The stream's last sequence is not the one the append expected; nothing changed.
    #[error("expected last sequence {expected}, the stream's is {current}")]
    WrongLastSequence { expected: u64, current: u64 },
    /// The subject's (or filter's) last sequence is not the one the append expected (0: no
    /// message); nothing changed.
    #[error("expected last subject sequence {expected}, it is {current}")]
    WrongLastSubjectSequence { expected: u64, current: u64 },
    /// The message asks for a rollup but the stream's config does not allow them.
    #[error("this stream does not allow rollups")]
    RollupNotAllowed,
    /// Rollups go in single appends, not batches.
    #[error("a rollup cannot be part of a batch")]
    RollupInBatch,
    /// A message id that is empty or longer than 255 bytes.
    #[error("invalid message id of {len} bytes: must be between 1 and 255")]
    InvalidMsgId { len: usize },
    /// The message at `index` of a batch has the id of message `seq`, appended within the
    /// duplicate window; nothing was stored. (A single append returns the first message.)
    #[error("message {index} of the batch duplicates message {seq}")]
    Duplicate { index: usize, seq: u64 },
    /// The message at `index` of a batch has the same id as the one at `first`; nothing was
    /// stored.
    #[error("message {index} of the batch has the id of message {first} of the batch")]
    DuplicateInBatch { index: usize, first: usize },
    /// The message has a TTL but the stream's config does not allow them.
    #[error("this stream does not allow per-message TTLs")]
    TtlNotAllowed,
    /// A TTL of zero seconds or beyond [`crate::MAX_TTL_SECS`].
    #[error("invalid TTL of {secs} seconds: must be between 1 and {max}", max = crate::MAX_TTL_SECS)]
    InvalidTtl { secs: u64 },
    /// A discard-new stream (or a full subject of a discard-new-per-subject stream) refused
    /// the append; nothing changed.
    #[error("stream limit {0} reached")]
    LimitReached(crate::Limit),
    /// The store's byte budget has no room for `need` more bytes and this stream could not
    /// make room (it discards new messages, or its own oldest messages do not free enough);
    /// nothing changed. Appends succeed again once deletes, expiry or other streams free
    /// space. A real `ENOSPC` is `Durability(StorageFull)`; [`AppendError::is_storage_full`]
    /// is true for both.
    #[error("store budget is full: {need} more bytes do not fit ({used} of {limit} in use)")]
    StorageFull { need: u64, used: u64, limit: u64 },
    #[error(transparent)]
    Durability(#[from] DurabilityError),
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    #[error("stream is closed")]
    Closed,
}

impl AppendError {
    /// The store's budget or the file system is full: the append may succeed once space is
    /// freed, with no reopen.
    pub fn is_storage_full(&self) -> bool {
        matches!(
            self,
            AppendError::StorageFull { .. }
                | AppendError::Durability(DurabilityError::StorageFull(_))
        )
    }
}

/// Errors of consumer operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    #[error(transparent)]
    Config(ConfigError),
    #[error("consumer {0} already exists")]
    AlreadyExists(String),
    #[error("consumer {0} does not exist")]
    NotFound(String),
    /// The handle's consumer was deleted.
    #[error("consumer {0} was deleted")]
    Deleted(String),
    #[error(transparent)]
    Query(QueryError),
    /// The consumer's file could not be written or removed.
    #[error(transparent)]
    Durability(DurabilityError),
    #[error("stream is closed")]
    Closed,
}

/// Errors of reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Never stored, removed, or outside the stream's range.
    #[error("no message with sequence {0}")]
    NotFound(u64),
    /// The record failed its checksum: this message alone is lost.
    #[error("message {0} is damaged on disk")]
    Corrupt(u64),
    #[error("stream is closed")]
    Closed,
}

/// Errors of removals, purges, compaction, truncation, skips and syncs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// An invalid filter or limit.
    #[error(transparent)]
    Config(ConfigError),
    #[error("no message with sequence {0}")]
    NotFound(u64),
    #[error("invalid sequence {seq}: {why}")]
    InvalidSequence { seq: u64, why: &'static str },
    #[error(transparent)]
    Durability(#[from] DurabilityError),
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    #[error("stream is closed")]
    Closed,
}

/// Errors of subject queries and filtered reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error(transparent)]
    InvalidFilter(ConfigError),
    /// `multi_last_seqs` matched more subjects than the caller allowed.
    #[error("more than {max} results")]
    TooManyResults { max: usize },
    /// The message the query found fails its checksum; the caller may continue past it.
    #[error("message {0} is damaged on disk")]
    Corrupt(u64),
    #[error("stream is closed")]
    Closed,
}

/// Errors of snapshots and restores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Reading or writing the snapshot's bytes failed.
    #[error("snapshot I/O")]
    Io(#[from] io::Error),
    /// The bytes are not a snapshot, or are damaged; says where.
    #[error("snapshot is not valid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error("stream is closed")]
    Closed,
}
