//! tidelog: an embeddable, log-structured message store.
//!
//! A [`Store`] is a directory of named [`Stream`]s. A stream keeps subject-addressed messages
//! in segmented append-only block files, numbered by sequences that are never reused, and
//! makes them durable according to its [`Durability`] mode (durable acknowledgements with
//! group commit by default). See `docs/architecture.md` for the design and `docs/format.md`
//! for every on-disk structure.
//!
//! ```
//! use tidelog::{Store, StoreOptions, StreamConfig};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
//! let orders = store.create_stream(StreamConfig::new("orders")).unwrap();
//! let a = orders.append("orders.eu.42", b"", b"hello").unwrap();
//! assert_eq!(orders.load(a.seq).unwrap().payload(), b"hello");
//! ```

mod block;
mod budget;
mod checkpoint;
pub mod clock;
mod config;
mod consumer;
mod dedup;
mod deletes;
mod digest;
mod durability;
mod error;
mod expect;
mod expiry;
mod flush;
mod heal;
mod id_table;
pub mod io;
mod limits;
mod pending;
mod query;
mod record;
mod recovery;
mod repair;
mod retention;
mod rollup;
mod seqlist;
mod snapshot;
mod state;
mod store;
mod stream;
pub mod subject;
mod subject_index;
mod sync;
mod ttl;
mod varint;
mod watch;

#[doc(hidden)]
pub mod fuzzing;

pub use budget::{BudgetInfo, DEFAULT_BUDGET_PERCENT};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    Budget, Dedup, Discard, Durability, Limits, ReplicaOptions, Retention, Storage, StoreOptions,
    StreamConfig, DEFAULT_BLOCK_SIZE, MAX_DEDUP_IDS, MIN_BUDGET,
};
pub use consumer::{
    AckOutcome, AckPolicy, Consumer, ConsumerConfig, ConsumerState, DeliverPolicy, Delivery,
    SeqPair, MAX_ACK_PENDING,
};
pub use dedup::DedupStats;
pub use error::{
    AppendError, ConfigError, ConsumerError, DurabilityError, LoadError, Poisoned, QueryError,
    SnapshotError, StoreError, StreamError, WriteError,
};
pub use expect::Expect;
pub use io::{IoBackend, IoBackendChoice};
pub use limits::Limit;
pub use query::{IndexMemory, SubjectState};
pub use record::{MAX_MESSAGE_LEN, MAX_SUBJECT_LEN};
pub use recovery::RecoveryReport;
pub use repair::RepairReport;
pub use rollup::Rollup;
pub use snapshot::SnapshotInfo;
pub use store::{DamagedStream, Store};
pub use stream::{
    Appended, BatchAppended, BoundBy, NewMessage, StoredMessage, Stream, StreamState, VerifyReport,
};
pub use ttl::{Ttl, MAX_TTL_SECS};
pub use watch::{WatchFrom, Watcher};
