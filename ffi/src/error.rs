//! Status codes and the caller-owned error object. A failed call returns its status and, when
//! the caller passed an error object, describes itself there; nothing is kept per thread
//! (goroutines and async tasks move between threads).

use std::ffi::{c_char, CString};
use std::io;

use engine::{
    AppendError, ConfigError, ConsumerError, DurabilityError, LoadError, QueryError, SnapshotError,
    StoreError, StreamError, WriteError,
};

/// What a call did. Every fallible function returns one; `TIDELOG_STATUS_OK` is zero.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tidelog_status {
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument is malformed: not UTF-8, a length out of range, an unknown enum value.
    InvalidArgument = 2,
    /// The library panicked; the call did nothing it reported. A bug: please report it.
    Panic = 3,
    /// An invalid configuration value (a limit, a budget, a block size).
    Config = 4,
    /// An invalid stream or consumer name.
    InvalidName = 5,
    /// An invalid subject.
    InvalidSubject = 6,
    /// An invalid subject filter.
    InvalidFilter = 7,
    /// No message with that sequence, or no message matches.
    NotFound = 8,
    StreamNotFound = 9,
    StreamExists = 10,
    ConsumerNotFound = 11,
    ConsumerExists = 12,
    /// The consumer behind this handle was deleted.
    ConsumerDeleted = 13,
    /// The message is larger than the stream's maximum.
    TooLarge = 14,
    /// The subject is not accepted by the stream's subject filters.
    SubjectNotInStream = 15,
    /// A raw append's sequence is not after the stream's last.
    SequenceNotAfterLast = 16,
    EmptyBatch = 17,
    /// The stream's last sequence is not the expected one (`expected`, `current`).
    WrongLastSequence = 18,
    /// The subject's last sequence is not the expected one (`expected`, `current`).
    WrongLastSubjectSequence = 19,
    /// A rollup or TTL the stream's config does not allow, or a rollup in a batch.
    NotAllowed = 20,
    InvalidMsgId = 21,
    /// A message id seen within the duplicate window (`seq`, and `index` in a batch).
    Duplicate = 22,
    InvalidTtl = 23,
    /// A discard-new limit refused the append; nothing changed.
    LimitReached = 24,
    /// The store's byte budget (`need`, `used`, `limit`) or the device is full; nothing
    /// changed, and appends succeed again once space is freed.
    StorageFull = 25,
    /// An I/O error (`os_code` holds errno when there is one).
    Io = 26,
    /// The stream refuses writes after a failed write or fsync until it heals.
    Poisoned = 27,
    /// Damaged data or metadata (`seq` for a message).
    Corrupt = 28,
    /// Another process holds the store directory.
    Locked = 29,
    /// The store or stream is closed.
    Closed = 30,
    /// A wait ended with nothing to return.
    Timeout = 31,
    /// More results than the caller allowed.
    TooManyResults = 32,
    /// A sequence out of range for the operation.
    InvalidSequence = 33,
    /// A snapshot callback reported a failure.
    Callback = 34,
}

/// The details of a failure, as plain numbers. Fields that do not apply are zero.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct tidelog_error_info {
    pub status: u32,
    /// errno of the I/O error behind the failure, or 0.
    pub os_code: i32,
    /// The sequence the failure names (not found, corrupt, duplicate of).
    pub seq: u64,
    /// The position in a batch of the message at fault, for the statuses that name one (see
    /// `tidelog_stream_append_batch`); 0 otherwise.
    pub index: u64,
    /// Expected and current sequence of a failed expectation.
    pub expected: u64,
    pub current: u64,
    /// Budget figures of `STORAGE_FULL` from the budget (0 for a full device).
    pub need: u64,
    pub used: u64,
    pub limit: u64,
}

/// A caller-owned description of the last failure of the calls it was passed to. Create it
/// with `tidelog_error_new`, pass it to any number of calls, free it with `tidelog_error_free`.
/// A successful call resets it. Not thread-safe: one thread at a time (give each thread or
/// goroutine its own).
#[allow(non_camel_case_types)]
pub struct tidelog_error {
    pub(crate) status: tidelog_status,
    pub(crate) message: CString,
    pub(crate) info: tidelog_error_info,
}

/// A failure on its way to the caller.
#[derive(Debug)]
pub(crate) struct Fail {
    pub status: tidelog_status,
    pub message: String,
    pub info: tidelog_error_info,
}

impl Fail {
    pub fn new(status: tidelog_status, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
            info: tidelog_error_info::default(),
        }
    }

    pub fn null(what: &str) -> Fail {
        Fail::new(tidelog_status::NullArgument, format!("{what} is NULL"))
    }

    pub fn invalid(why: impl Into<String>) -> Fail {
        Fail::new(tidelog_status::InvalidArgument, why)
    }

    fn from_error(status: tidelog_status, e: &(dyn std::error::Error + 'static)) -> Fail {
        let mut f = Fail::new(status, chain(e));
        f.info.os_code = os_code(e);
        f
    }

    fn seq(mut self, seq: u64) -> Fail {
        self.info.seq = seq;
        self
    }

    fn index(mut self, index: usize) -> Fail {
        self.info.index = index as u64;
        self
    }

    fn expected(mut self, expected: u64, current: u64) -> Fail {
        self.info.expected = expected;
        self.info.current = current;
        self
    }
}

/// The whole chain of causes, so the one line a host logs says what happened and why.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.ends_with(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The errno of the first I/O error in the chain.
fn os_code(e: &(dyn std::error::Error + 'static)) -> i32 {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return code;
            }
        }
        if let Some(io) = c.downcast_ref::<std::sync::Arc<io::Error>>() {
            if let Some(code) = io.raw_os_error() {
                return code;
            }
        }
        cur = c.source();
    }
    0
}

fn config_status(e: &ConfigError) -> tidelog_status {
    match e {
        ConfigError::InvalidName(_) => tidelog_status::InvalidName,
        ConfigError::InvalidSubject { .. } => tidelog_status::InvalidSubject,
        ConfigError::InvalidFilter { .. } => tidelog_status::InvalidFilter,
        _ => tidelog_status::Config,
    }
}

fn durability_status(e: &DurabilityError) -> tidelog_status {
    match e {
        DurabilityError::StorageFull(_) => tidelog_status::StorageFull,
        DurabilityError::Poisoned(p) if engine::io::is_storage_full(&p.cause) => {
            tidelog_status::StorageFull
        }
        DurabilityError::Poisoned(_) => tidelog_status::Poisoned,
        _ => tidelog_status::Io,
    }
}

impl From<ConfigError> for Fail {
    fn from(e: ConfigError) -> Fail {
        Fail::from_error(config_status(&e), &e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        let status = match &e {
            StoreError::Locked(_) => tidelog_status::Locked,
            StoreError::Io(_) => tidelog_status::Io,
            StoreError::Corrupt { .. } => tidelog_status::Corrupt,
            StoreError::Stream { source, .. } => stream_status(source),
            StoreError::Config(c) => config_status(c),
            StoreError::NotAStore(_) => tidelog_status::NotFound,
            _ => tidelog_status::Closed,
        };
        Fail::from_error(status, &e)
    }
}

fn stream_status(e: &StreamError) -> tidelog_status {
    match e {
        StreamError::NotFound(_) => tidelog_status::StreamNotFound,
        StreamError::AlreadyExists(_) => tidelog_status::StreamExists,
        StreamError::Config(c) => config_status(c),
        StreamError::Io(_) => tidelog_status::Io,
        StreamError::Corrupt { .. } => tidelog_status::Corrupt,
        _ => tidelog_status::Closed,
    }
}

impl From<StreamError> for Fail {
    fn from(e: StreamError) -> Fail {
        Fail::from_error(stream_status(&e), &e)
    }
}

impl From<AppendError> for Fail {
    fn from(e: AppendError) -> Fail {
        use tidelog_status as S;
        let status = match &e {
            AppendError::InvalidSubject(_) => S::InvalidSubject,
            AppendError::InvalidFilter(_) => S::InvalidFilter,
            AppendError::SubjectNotInStream(_) => S::SubjectNotInStream,
            AppendError::TooLarge { .. } => S::TooLarge,
            AppendError::SequenceNotAfterLast { .. } => S::SequenceNotAfterLast,
            AppendError::EmptyBatch => S::EmptyBatch,
            AppendError::WrongLastSequence { .. } => S::WrongLastSequence,
            AppendError::WrongLastSubjectSequence { .. } => S::WrongLastSubjectSequence,
            AppendError::RollupNotAllowed
            | AppendError::RollupInBatch
            | AppendError::TtlNotAllowed => S::NotAllowed,
            AppendError::InvalidMsgId { .. } => S::InvalidMsgId,
            AppendError::Duplicate { .. } | AppendError::DuplicateInBatch { .. } => S::Duplicate,
            AppendError::InvalidTtl { .. } => S::InvalidTtl,
            AppendError::LimitReached(_) => S::LimitReached,
            AppendError::StorageFull { .. } => S::StorageFull,
            AppendError::Durability(d) => durability_status(d),
            AppendError::Poisoned(p) => durability_status(&p.to_durability()),
            _ => S::Closed,
        };
        let f = Fail::from_error(status, &e);
        match e {
            AppendError::SequenceNotAfterLast { seq, last } => f.seq(seq).expected(seq, last),
            AppendError::WrongLastSequence { expected, current }
            | AppendError::WrongLastSubjectSequence { expected, current } => {
                f.expected(expected, current)
            }
            AppendError::Duplicate { index, seq } => f.seq(seq).index(index),
            AppendError::DuplicateInBatch { index, .. } => f.index(index),
            AppendError::StorageFull { need, used, limit } => {
                let mut f = f;
                f.info.need = need;
                f.info.used = used;
                f.info.limit = limit;
                f
            }
            _ => f,
        }
    }
}

impl From<WriteError> for Fail {
    fn from(e: WriteError) -> Fail {
        let (status, seq) = match &e {
            WriteError::Config(c) => (config_status(c), 0),
            WriteError::NotFound(s) => (tidelog_status::NotFound, *s),
            WriteError::InvalidSequence { seq, .. } => (tidelog_status::InvalidSequence, *seq),
            WriteError::Durability(d) => (durability_status(d), 0),
            WriteError::Poisoned(p) => (durability_status(&p.to_durability()), 0),
            _ => (tidelog_status::Closed, 0),
        };
        Fail::from_error(status, &e).seq(seq)
    }
}

impl From<LoadError> for Fail {
    fn from(e: LoadError) -> Fail {
        let (status, seq) = match &e {
            LoadError::NotFound(s) => (tidelog_status::NotFound, *s),
            LoadError::Corrupt(s) => (tidelog_status::Corrupt, *s),
            _ => (tidelog_status::Closed, 0),
        };
        Fail::from_error(status, &e).seq(seq)
    }
}

/// The status of a query error, and the sequence it names.
fn query_status(e: &QueryError) -> (tidelog_status, u64) {
    match e {
        QueryError::InvalidFilter(c) => (config_status(c), 0),
        QueryError::TooManyResults { .. } => (tidelog_status::TooManyResults, 0),
        QueryError::Corrupt(s) => (tidelog_status::Corrupt, *s),
        _ => (tidelog_status::Closed, 0),
    }
}

impl From<QueryError> for Fail {
    fn from(e: QueryError) -> Fail {
        let (status, seq) = query_status(&e);
        Fail::from_error(status, &e).seq(seq)
    }
}

impl From<ConsumerError> for Fail {
    fn from(e: ConsumerError) -> Fail {
        let (status, seq) = match &e {
            ConsumerError::Config(c) => (config_status(c), 0),
            ConsumerError::AlreadyExists(_) => (tidelog_status::ConsumerExists, 0),
            ConsumerError::NotFound(_) => (tidelog_status::ConsumerNotFound, 0),
            ConsumerError::Deleted(_) => (tidelog_status::ConsumerDeleted, 0),
            ConsumerError::Query(q) => query_status(q),
            ConsumerError::Durability(d) => (durability_status(d), 0),
            _ => (tidelog_status::Closed, 0),
        };
        Fail::from_error(status, &e).seq(seq)
    }
}

impl From<SnapshotError> for Fail {
    fn from(e: SnapshotError) -> Fail {
        match e {
            SnapshotError::Io(io) => io.into(),
            SnapshotError::Corrupt(_) => Fail::from_error(tidelog_status::Corrupt, &e),
            SnapshotError::Stream(s) => s.into(),
            SnapshotError::Append(a) => a.into(),
            SnapshotError::Write(w) => w.into(),
            SnapshotError::Consumer(c) => c.into(),
            _ => Fail::from_error(tidelog_status::Closed, &e),
        }
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        let by_host = e
            .get_ref()
            .is_some_and(|i| i.is::<crate::snapshot::CallbackFailed>());
        let status = if by_host {
            tidelog_status::Callback
        } else if engine::io::is_storage_full(&e) {
            tidelog_status::StorageFull
        } else {
            tidelog_status::Io
        };
        Fail::from_error(status, &e)
    }
}

impl tidelog_error {
    pub(crate) fn set(&mut self, f: Fail) {
        self.status = f.status;
        self.info = f.info;
        self.info.status = f.status as u32;
        // A message with a NUL inside cannot be a C string: the NULs are dropped.
        self.message = CString::new(f.message.replace('\0', "")).unwrap_or_default();
    }

    pub(crate) fn clear(&mut self) {
        if self.status != tidelog_status::Ok {
            self.status = tidelog_status::Ok;
            self.info = tidelog_error_info::default();
            self.message = CString::default();
        }
    }
}

/// A new, empty error object (status OK), or NULL if memory ran out.
#[no_mangle]
pub extern "C" fn tidelog_error_new() -> *mut tidelog_error {
    crate::guard::boxed(|| tidelog_error {
        status: tidelog_status::Ok,
        message: CString::default(),
        info: tidelog_error_info::default(),
    })
}

/// Frees an error object. NULL is accepted and ignored.
///
/// # Safety
/// `err` is NULL or came from `tidelog_error_new` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tidelog_error_free(err: *mut tidelog_error) {
    crate::guard::free(err);
}

/// The status of the last failure recorded in `err` (OK after a success; OK for NULL).
///
/// # Safety
/// `err` is NULL or a live error object.
#[no_mangle]
pub unsafe extern "C" fn tidelog_error_status(err: *const tidelog_error) -> tidelog_status {
    match err.as_ref() {
        Some(e) => e.status,
        None => tidelog_status::Ok,
    }
}

/// The message of the last failure: a NUL-terminated UTF-8 string owned by `err`, valid until
/// `err` is passed to another call or freed. Empty after a success; never NULL.
///
/// # Safety
/// `err` is NULL or a live error object.
#[no_mangle]
pub unsafe extern "C" fn tidelog_error_message(err: *const tidelog_error) -> *const c_char {
    match err.as_ref() {
        Some(e) => e.message.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// The details of the last failure (all zero after a success or for NULL).
///
/// # Safety
/// `err` is NULL or a live error object.
#[no_mangle]
pub unsafe extern "C" fn tidelog_error_get_info(err: *const tidelog_error) -> tidelog_error_info {
    match err.as_ref() {
        Some(e) => e.info,
        None => tidelog_error_info::default(),
    }
}

/// Every status with its name, in order.
const NAMES: [(tidelog_status, &std::ffi::CStr); 35] = [
    (tidelog_status::Ok, c"TIDELOG_STATUS_OK"),
    (
        tidelog_status::NullArgument,
        c"TIDELOG_STATUS_NULL_ARGUMENT",
    ),
    (
        tidelog_status::InvalidArgument,
        c"TIDELOG_STATUS_INVALID_ARGUMENT",
    ),
    (tidelog_status::Panic, c"TIDELOG_STATUS_PANIC"),
    (tidelog_status::Config, c"TIDELOG_STATUS_CONFIG"),
    (tidelog_status::InvalidName, c"TIDELOG_STATUS_INVALID_NAME"),
    (
        tidelog_status::InvalidSubject,
        c"TIDELOG_STATUS_INVALID_SUBJECT",
    ),
    (
        tidelog_status::InvalidFilter,
        c"TIDELOG_STATUS_INVALID_FILTER",
    ),
    (tidelog_status::NotFound, c"TIDELOG_STATUS_NOT_FOUND"),
    (
        tidelog_status::StreamNotFound,
        c"TIDELOG_STATUS_STREAM_NOT_FOUND",
    ),
    (
        tidelog_status::StreamExists,
        c"TIDELOG_STATUS_STREAM_EXISTS",
    ),
    (
        tidelog_status::ConsumerNotFound,
        c"TIDELOG_STATUS_CONSUMER_NOT_FOUND",
    ),
    (
        tidelog_status::ConsumerExists,
        c"TIDELOG_STATUS_CONSUMER_EXISTS",
    ),
    (
        tidelog_status::ConsumerDeleted,
        c"TIDELOG_STATUS_CONSUMER_DELETED",
    ),
    (tidelog_status::TooLarge, c"TIDELOG_STATUS_TOO_LARGE"),
    (
        tidelog_status::SubjectNotInStream,
        c"TIDELOG_STATUS_SUBJECT_NOT_IN_STREAM",
    ),
    (
        tidelog_status::SequenceNotAfterLast,
        c"TIDELOG_STATUS_SEQUENCE_NOT_AFTER_LAST",
    ),
    (tidelog_status::EmptyBatch, c"TIDELOG_STATUS_EMPTY_BATCH"),
    (
        tidelog_status::WrongLastSequence,
        c"TIDELOG_STATUS_WRONG_LAST_SEQUENCE",
    ),
    (
        tidelog_status::WrongLastSubjectSequence,
        c"TIDELOG_STATUS_WRONG_LAST_SUBJECT_SEQUENCE",
    ),
    (tidelog_status::NotAllowed, c"TIDELOG_STATUS_NOT_ALLOWED"),
    (
        tidelog_status::InvalidMsgId,
        c"TIDELOG_STATUS_INVALID_MSG_ID",
    ),
    (tidelog_status::Duplicate, c"TIDELOG_STATUS_DUPLICATE"),
    (tidelog_status::InvalidTtl, c"TIDELOG_STATUS_INVALID_TTL"),
    (
        tidelog_status::LimitReached,
        c"TIDELOG_STATUS_LIMIT_REACHED",
    ),
    (tidelog_status::StorageFull, c"TIDELOG_STATUS_STORAGE_FULL"),
    (tidelog_status::Io, c"TIDELOG_STATUS_IO"),
    (tidelog_status::Poisoned, c"TIDELOG_STATUS_POISONED"),
    (tidelog_status::Corrupt, c"TIDELOG_STATUS_CORRUPT"),
    (tidelog_status::Locked, c"TIDELOG_STATUS_LOCKED"),
    (tidelog_status::Closed, c"TIDELOG_STATUS_CLOSED"),
    (tidelog_status::Timeout, c"TIDELOG_STATUS_TIMEOUT"),
    (
        tidelog_status::TooManyResults,
        c"TIDELOG_STATUS_TOO_MANY_RESULTS",
    ),
    (
        tidelog_status::InvalidSequence,
        c"TIDELOG_STATUS_INVALID_SEQUENCE",
    ),
    (tidelog_status::Callback, c"TIDELOG_STATUS_CALLBACK"),
];

/// A static, NUL-terminated name for a status value ("TIDELOG_STATUS_STORAGE_FULL"), or
/// "TIDELOG_STATUS_UNKNOWN" for a value that is not one.
#[no_mangle]
pub extern "C" fn tidelog_status_name(status: u32) -> *const c_char {
    NAMES
        .iter()
        .find(|(s, _)| *s as u32 == status)
        .map_or(c"TIDELOG_STATUS_UNKNOWN", |(_, n)| n)
        .as_ptr()
}
