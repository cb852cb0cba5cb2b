//! Rollups: a message that replaces every earlier message of its subject
//! ([`Rollup::Subject`], NATS `sub`) or of the whole stream ([`Rollup::All`], NATS `all`).
//!
//! The removals are logged as ordinary removal records (a `Remove` of the subject's sequences,
//! or a `Purge` below the new message) carrying the batch flag, followed by the message, which
//! ends the batch: recovery keeps or drops the three together, and the whole step runs in one
//! hold of the write lock, so no reader, watcher or consumer sees the message without the
//! removals or the removals without the message. Replay needs nothing new, and erasing the
//! rollup message later cannot bring back what it replaced.

use serde::{Deserialize, Serialize};

use crate::error::{AppendError, DurabilityError};
use crate::limits;
use crate::record::{self, Kind, FLAG_BATCH, FLAG_ROLLUP_ALL, FLAG_ROLLUP_SUB};
use crate::state::LogState;
use crate::stream::Stream;

/// What a message replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rollup {
    /// Every earlier message of its subject.
    Subject,
    /// Every earlier message of the stream.
    All,
}

impl Rollup {
    pub(crate) fn flag(self) -> u8 {
        match self {
            Rollup::Subject => FLAG_ROLLUP_SUB,
            Rollup::All => FLAG_ROLLUP_ALL,
        }
    }

    pub(crate) fn from_flags(flags: u8) -> Option<Rollup> {
        if flags & FLAG_ROLLUP_ALL != 0 {
            Some(Rollup::All)
        } else if flags & FLAG_ROLLUP_SUB != 0 {
            Some(Rollup::Subject)
        } else {
            None
        }
    }
}

/// The removals a rollup by a message on `subject` makes: a purge below it, or the subject's
/// live sequences (sorted).
pub(crate) enum Removal {
    Nothing,
    PurgeBelow,
    Seqs(Vec<u64>),
}

pub(crate) fn removal(st: &LogState, rollup: Rollup, subject: &str) -> Removal {
    match rollup {
        Rollup::All if st.messages() > 0 => Removal::PurgeBelow,
        Rollup::All => Removal::Nothing,
        Rollup::Subject => {
            let seqs = st.subject_seqs(subject.as_bytes());
            if seqs.is_empty() {
                Removal::Nothing
            } else {
                Removal::Seqs(seqs)
            }
        }
    }
}

/// Messages and bytes `r` removes (discard-new limits count the room a rollup makes).
pub(crate) fn frees(st: &LogState, r: &Removal) -> (u64, u64) {
    match r {
        Removal::Nothing => (0, 0),
        Removal::PurgeBelow => (st.messages(), st.live_bytes),
        Removal::Seqs(seqs) => (seqs.len() as u64, st.bytes_of(seqs)),
    }
}

/// Bytes of the records that log `r`.
fn records_len(r: &Removal) -> usize {
    match r {
        Removal::Nothing => 0,
        Removal::PurgeBelow => record::encoded_len(0, 0, 0),
        Removal::Seqs(seqs) => limits::remove_records(seqs)
            .iter()
            .map(|(_, p)| record::encoded_len(0, 0, p.len()))
            .sum(),
    }
}

impl Stream {
    /// Logs and applies `r`, the removals of a rollup by message `seq` (`msg_len` bytes),
    /// as the start of the batch the message ends. Room for the whole batch is made first, so
    /// it lives in one block.
    pub(crate) fn log_rollup(
        &self,
        st: &mut LogState,
        r: &Removal,
        seq: u64,
        msg_len: usize,
        now: i64,
    ) -> Result<(), AppendError> {
        let io = |e| AppendError::Durability(DurabilityError::from_io(e));
        let vfs = self.vfs();
        st.ensure_room(vfs, Some(seq), records_len(r) + msg_len, now)
            .map_err(io)?;
        match r {
            Removal::Nothing => {}
            Removal::PurgeBelow => {
                limits::log_control(st, vfs, Kind::Purge, seq, &[], now, FLAG_BATCH).map_err(io)?
            }
            Removal::Seqs(seqs) => {
                for (first, payload) in limits::remove_records(seqs) {
                    limits::log_control(st, vfs, Kind::Remove, first, &payload, now, FLAG_BATCH)
                        .map_err(io)?;
                }
            }
        }
        Ok(())
    }
}
