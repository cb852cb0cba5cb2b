//! Stream and store configuration, validated before anything is written.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::ConfigError;
use crate::io::IoBackendChoice;
use crate::record::MAX_MESSAGE_LEN;
use crate::subject::validate_filter;

/// Where a stream keeps its messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// Block files in the store directory.
    #[default]
    File,
    /// Process memory; gone when the store is closed.
    Memory,
}

/// When an append counts as stored. See `docs/durability.md`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `append` returns after the record is on stable storage; concurrent appenders share one
    /// fdatasync (group commit).
    #[default]
    Always,
    /// Data is synced at least this often; a crash of the machine loses at most this window.
    Interval(Duration),
    /// Data is handed to the OS within a few milliseconds and synced only at checkpoints.
    None,
}

/// When messages leave a stream besides its limits, TTLs and explicit removals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Only by limits, TTLs and removals.
    #[default]
    Limits,
    /// Also as soon as every consumer interested in a message (its filter matches and the
    /// message is after the consumer's start) has acknowledged or terminated it (an ack-none
    /// consumer: received it); a message no consumer is interested in is not kept. Deleting a
    /// consumer releases what it alone held.
    Interest,
    /// Also when the one consumer matching a message acknowledges or terminates it. Nothing
    /// else removes it: a message no consumer matches, or whose consumer was deleted, waits
    /// for the next. Consumers' filters may not overlap; they acknowledge explicitly and
    /// deliver all.
    WorkQueue,
}

/// What happens when an append would break a stream limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discard {
    /// Remove the oldest messages to make room (per subject for `max_msgs_per_subject`).
    #[default]
    Old,
    /// Reject the append with [`crate::AppendError::LimitReached`]; nothing changes. A full
    /// subject still drops its oldest message.
    New,
    /// Like `New`, and a subject at `max_msgs_per_subject` rejects further appends too.
    NewPerSubject,
}

/// Stream limits, enforced on every append and applied at once when changed. `None` means
/// no limit of that kind *of the stream's own*: every stream is still bound by its store's
/// byte budget ([`Budget`]), and `Stream::state()` shows the bound in force
/// (`StreamState::max_bytes`). With `discard: Old` (the default) a stream at the store's
/// budget drops its own oldest messages; with `New` its appends get `StorageFull`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub max_msgs: Option<u64>,
    /// Encoded bytes of the live messages (`StreamState::bytes`).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub max_age: Option<Duration>,
    #[serde(default)]
    pub max_msgs_per_subject: Option<u64>,
    #[serde(default)]
    pub discard: Discard,
}

impl Limits {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let zero = |name: &'static str, v: Option<u64>| match v {
            Some(0) => Err(ConfigError::InvalidLimit {
                name,
                why: "must be at least 1 (use None for no limit)".into(),
            }),
            _ => Ok(()),
        };
        zero("max_msgs", self.max_msgs)?;
        zero("max_bytes", self.max_bytes)?;
        zero("max_msgs_per_subject", self.max_msgs_per_subject)?;
        if self
            .max_age
            .is_some_and(|a| a.is_zero() || a.as_nanos() > i64::MAX as u128)
        {
            return Err(ConfigError::InvalidLimit {
                name: "max_age",
                why: "must be between 1 ns and 292 years".into(),
            });
        }
        if self.discard == Discard::NewPerSubject && self.max_msgs_per_subject.is_none() {
            return Err(ConfigError::InvalidLimit {
                name: "discard",
                why: "new_per_subject needs max_msgs_per_subject".into(),
            });
        }
        Ok(())
    }
}

/// Smallest block size.
pub const MIN_BLOCK_SIZE: u64 = 4 << 10;
/// Largest block size.
pub const MAX_BLOCK_SIZE: u64 = 1 << 30;
/// Default block size.
pub const DEFAULT_BLOCK_SIZE: u64 = 8 << 20;

/// A stream's configuration; persisted with the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    pub name: String,
    /// Subject filters the stream accepts; empty accepts every subject.
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub durability: Durability,
    /// Size at which a block is sealed and a new one started.
    pub block_size: u64,
    /// Largest headers + payload accepted by `append` (at most 32 MiB).
    pub max_msg_size: u32,
    #[serde(default)]
    pub limits: Limits,
    /// Appends may carry a per-message TTL ([`crate::Ttl`]); without this they get
    /// [`crate::AppendError::TtlNotAllowed`].
    #[serde(default)]
    pub allow_msg_ttl: bool,
    /// When max_age or a TTL removes the last message of a subject, append a delete marker on
    /// that subject that lives this long (whole seconds; needs `allow_msg_ttl`). Per-message
    /// TTLs shorter than this are raised to it unless `max_msgs_per_subject` is 1 (see
    /// `docs/architecture.md`).
    #[serde(default)]
    pub subject_delete_marker_ttl: Option<Duration>,
    /// Also append markers when `remove`/`erase` (reason `Remove`) or a purge (reason `Purge`)
    /// removes the last message of a subject. Needs `subject_delete_marker_ttl`.
    #[serde(default)]
    pub removal_markers: bool,
    #[serde(default)]
    pub retention: Retention,
    /// Appends may carry a rollup ([`crate::Rollup`]); without this they get
    /// [`crate::AppendError::RollupNotAllowed`].
    #[serde(default)]
    pub allow_rollup: bool,
    /// What `append_raw` (a mirror or follower applying another stream's messages) applies.
    #[serde(default)]
    pub replica: ReplicaOptions,
    /// Message-id deduplication; `None` (the default) keeps no ids.
    #[serde(default)]
    pub dedup: Option<Dedup>,
}

/// The duplicate window: an append whose message id was appended within it stores nothing
/// and returns the first message's sequence. Each id in the window costs about 5.6 bytes of
/// index (sized for `max_ids` when the stream opens); see `docs/architecture.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    /// How long an id is remembered after its message's timestamp.
    pub window: Duration,
    /// How many of the newest ids are remembered at most (a few hundred more may be).
    pub max_ids: u64,
    /// A purge (or compact) also forgets the ids of the messages it removes; otherwise
    /// removed messages' ids stay until they leave the window, like every other id.
    #[serde(default)]
    pub forget_on_purge: bool,
}

/// Largest `Dedup::max_ids` (an index of about 1.4 GiB).
pub const MAX_DEDUP_IDS: u64 = 1 << 28;

impl Dedup {
    /// A window of `window`, bounded to `max_ids` ids.
    pub fn new(window: Duration, max_ids: u64) -> Self {
        Dedup {
            window,
            max_ids,
            forget_on_purge: false,
        }
    }
    pub fn forget_on_purge(mut self, yes: bool) -> Self {
        self.forget_on_purge = yes;
        self
    }
    fn validate(&self) -> Result<(), ConfigError> {
        if self.window.is_zero() || self.window > Duration::from_secs(crate::ttl::MAX_TTL_SECS) {
            return Err(ConfigError::InvalidLimit {
                name: "dedup window",
                why: "must be between 1 ns and 100 years".into(),
            });
        }
        if !(1..=MAX_DEDUP_IDS).contains(&self.max_ids) {
            return Err(ConfigError::InvalidLimit {
                name: "dedup max_ids",
                why: format!("must be between 1 and {MAX_DEDUP_IDS}"),
            });
        }
        Ok(())
    }
}

/// What a stream fed by `append_raw` applies of the origin's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaOptions {
    /// Apply the origin's rollups (default). Off, a rolled-up message is stored as a plain
    /// message and the messages it replaced stay: the replica keeps history the origin
    /// dropped, and its reads differ from the origin's.
    pub apply_rollups: bool,
    /// Apply the origin's per-message TTLs, counted from the origin's timestamps (default).
    /// Off, messages are stored without their TTL and live by this stream's limits.
    pub apply_ttls: bool,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            apply_rollups: true,
            apply_ttls: true,
        }
    }
}

impl StreamConfig {
    /// A file stream with durable appends and 8 MiB blocks.
    pub fn new(name: impl Into<String>) -> Self {
        StreamConfig {
            name: name.into(),
            subjects: Vec::new(),
            storage: Storage::File,
            durability: Durability::Always,
            block_size: DEFAULT_BLOCK_SIZE,
            max_msg_size: 1 << 20,
            limits: Limits::default(),
            allow_msg_ttl: false,
            subject_delete_marker_ttl: None,
            removal_markers: false,
            retention: Retention::Limits,
            allow_rollup: false,
            replica: ReplicaOptions::default(),
            dedup: None,
        }
    }
    /// Deduplicates appends by message id within `d`'s window.
    pub fn dedup(mut self, d: Dedup) -> Self {
        self.dedup = Some(d);
        self
    }
    pub fn allow_rollup(mut self, yes: bool) -> Self {
        self.allow_rollup = yes;
        self
    }
    pub fn replica(mut self, r: ReplicaOptions) -> Self {
        self.replica = r;
        self
    }
    pub fn retention(mut self, r: Retention) -> Self {
        self.retention = r;
        self
    }
    pub fn allow_msg_ttl(mut self, yes: bool) -> Self {
        self.allow_msg_ttl = yes;
        self
    }
    pub fn subject_delete_marker_ttl(mut self, d: Duration) -> Self {
        self.subject_delete_marker_ttl = Some(d);
        self
    }
    pub fn removal_markers(mut self, yes: bool) -> Self {
        self.removal_markers = yes;
        self
    }
    pub fn limits(mut self, l: Limits) -> Self {
        self.limits = l;
        self
    }
    pub fn max_msgs(mut self, n: u64) -> Self {
        self.limits.max_msgs = Some(n);
        self
    }
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.limits.max_bytes = Some(n);
        self
    }
    pub fn max_age(mut self, d: Duration) -> Self {
        self.limits.max_age = Some(d);
        self
    }
    pub fn max_msgs_per_subject(mut self, n: u64) -> Self {
        self.limits.max_msgs_per_subject = Some(n);
        self
    }
    pub fn discard(mut self, d: Discard) -> Self {
        self.limits.discard = d;
        self
    }
    pub fn subjects<S: Into<String>>(mut self, s: impl IntoIterator<Item = S>) -> Self {
        self.subjects = s.into_iter().map(Into::into).collect();
        self
    }
    pub fn storage(mut self, s: Storage) -> Self {
        self.storage = s;
        self
    }
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    pub fn block_size(mut self, b: u64) -> Self {
        self.block_size = b;
        self
    }
    pub fn max_msg_size(mut self, m: u32) -> Self {
        self.max_msg_size = m;
        self
    }

    /// Checks every field; nothing is created for an invalid config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        for f in &self.subjects {
            validate_filter(f)?;
        }
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size) {
            return Err(ConfigError::InvalidLimit {
                name: "block_size",
                why: format!("must be between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}"),
            });
        }
        if self.max_msg_size == 0 || self.max_msg_size as usize > MAX_MESSAGE_LEN {
            return Err(ConfigError::InvalidLimit {
                name: "max_msg_size",
                why: format!("must be between 1 and {MAX_MESSAGE_LEN}"),
            });
        }
        self.limits.validate()?;
        self.validate_markers()?;
        if let Some(d) = &self.dedup {
            d.validate()?;
        }
        if let Durability::Interval(d) = self.durability {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return Err(ConfigError::InvalidLimit {
                    name: "durability interval",
                    why: "must be between 1 ns and 1 hour".into(),
                });
            }
        }
        Ok(())
    }
}

impl StreamConfig {
    fn validate_markers(&self) -> Result<(), ConfigError> {
        let bad = |name, why: &str| {
            Err(ConfigError::InvalidLimit {
                name,
                why: why.into(),
            })
        };
        if let Some(d) = self.subject_delete_marker_ttl {
            let s = d.as_secs();
            if d.subsec_nanos() != 0 || !(1..=crate::ttl::MAX_TTL_SECS).contains(&s) {
                return bad(
                    "subject_delete_marker_ttl",
                    "must be whole seconds between 1 s and 100 years",
                );
            }
            if !self.allow_msg_ttl {
                return bad("subject_delete_marker_ttl", "markers need allow_msg_ttl");
            }
        }
        if self.removal_markers && self.subject_delete_marker_ttl.is_none() {
            return bad("removal_markers", "needs subject_delete_marker_ttl");
        }
        Ok(())
    }
}

/// Validates a stream name: it becomes a directory name.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidName(name.to_owned()))
    }
}

/// How many bytes a store may occupy. There is no unlimited setting: every stream, with or
/// without limits of its own, is bound by its store's budget (see `docs/architecture.md`,
/// "Space").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// This share (1-100 %) of the *size* of the file system holding the store (not of its
    /// free space at the moment of opening, which would make the bound depend on when the
    /// store happened to open), with the default reserve: 2% of the budget, at least 32 MiB,
    /// at most 1 GiB and at most a quarter of it. The default is
    /// `FileSystemPercent(DEFAULT_BUDGET_PERCENT)`.
    FileSystemPercent(u8),
    /// Exactly `max_bytes`, of which `reserve` is kept from appends.
    Bytes { max_bytes: u64, reserve: u64 },
}

impl Default for Budget {
    fn default() -> Self {
        Budget::FileSystemPercent(crate::budget::DEFAULT_BUDGET_PERCENT as u8)
    }
}

/// Smallest store budget.
pub const MIN_BUDGET: u64 = 1 << 20;

impl Budget {
    /// `(max_bytes, reserve)` for a file system of `fs_size` bytes.
    pub(crate) fn resolve(&self, fs_size: u64) -> Result<(u64, u64), ConfigError> {
        let bad = |why: String| ConfigError::InvalidLimit {
            name: "store budget",
            why,
        };
        let (max, reserve) = match *self {
            Budget::FileSystemPercent(p) if (1..=100).contains(&p) => {
                let max = (fs_size as u128 * p as u128 / 100) as u64;
                (max, crate::budget::default_reserve(max))
            }
            Budget::FileSystemPercent(p) => return Err(bad(format!("{p}% is not 1-100%"))),
            Budget::Bytes { max_bytes, reserve } => (max_bytes, reserve),
        };
        if max < MIN_BUDGET {
            return Err(bad(format!(
                "{max} bytes is below the minimum of {MIN_BUDGET}"
            )));
        }
        if reserve >= max / 2 {
            return Err(bad(format!(
                "the reserve ({reserve}) must be less than half of the budget ({max})"
            )));
        }
        Ok((max, reserve))
    }
}

/// Options for opening a store.
#[derive(Clone)]
pub struct StoreOptions {
    /// The store's byte budget (default: 75% of the file system's size).
    pub budget: Budget,
    /// Write path; `Auto` probes io_uring and falls back to pwrite. The default reads the
    /// `TIDELOG_IO` environment variable (`auto`, `io_uring`, `pwrite`) so operators can force
    /// the fallback without rebuilding, and the test suite can run on both paths.
    pub io_backend: IoBackendChoice,
    /// Time source; the system clock when `None`.
    pub clock: Option<Arc<dyn Clock>>,
    /// Run no background thread (tests drive flushes and checkpoints by hand).
    pub manual_maintenance: bool,
    /// Never change the directory: recovery, expiry, appends and checkpoints work on an
    /// in-memory copy of what they change, discarded at close (`docs/durability.md`,
    /// "Opening a store read-only"). The store must exist. A shared lock keeps writable opens
    /// out; other read-only opens may share it.
    pub read_only: bool,
}

impl StoreOptions {
    /// A budget of exactly `max_bytes`, of which `reserve` is kept from appends.
    pub fn budget_bytes(mut self, max_bytes: u64, reserve: u64) -> Self {
        self.budget = Budget::Bytes { max_bytes, reserve };
        self
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            budget: Budget::default(),
            io_backend: IoBackendChoice::from_env(),
            clock: None,
            manual_maintenance: false,
            read_only: false,
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("budget", &self.budget)
            .field("io_backend", &self.io_backend)
            .field("manual_maintenance", &self.manual_maintenance)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(StreamConfig::new("orders_1-x").validate().is_ok());
        for bad in ["", "a.b", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(StreamConfig::new(bad).validate().is_err(), "{bad:?}");
        }
        assert!(StreamConfig::new("s").block_size(10).validate().is_err());
        assert!(StreamConfig::new("s").max_msg_size(0).validate().is_err());
        assert!(StreamConfig::new("s")
            .subjects(["a.>.b"])
            .validate()
            .is_err());
        assert!(StreamConfig::new("s")
            .durability(Durability::Interval(Duration::ZERO))
            .validate()
            .is_err());
        let m = StreamConfig::new("s").subject_delete_marker_ttl(Duration::from_secs(5));
        assert!(m.clone().validate().is_err(), "markers need TTLs");
        assert!(m.clone().allow_msg_ttl(true).validate().is_ok());
        assert!(StreamConfig::new("s")
            .allow_msg_ttl(true)
            .subject_delete_marker_ttl(Duration::from_millis(1500))
            .validate()
            .is_err());
        assert!(StreamConfig::new("s")
            .allow_msg_ttl(true)
            .removal_markers(true)
            .validate()
            .is_err());
    }
}
