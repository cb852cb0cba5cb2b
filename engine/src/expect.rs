//! Conditional appends: the sequences a writer expects to be last, checked under the stream's
//! write lock together with the append, so of two writers expecting the same sequence exactly
//! one succeeds (optimistic concurrency for key-value updates).

use crate::error::AppendError;
use crate::query::last_match;
use crate::state::LogState;

/// What must hold for an append to go ahead. Sequence 0 means "no message".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect<'a> {
    /// The stream's last sequence.
    pub last_seq: Option<u64>,
    /// The last sequence of the message's subject, or of `subject_filter` when given.
    pub last_subject_seq: Option<u64>,
    /// A subject or filter to check `last_subject_seq` against instead of the subject.
    pub subject_filter: Option<&'a str>,
}

impl Expect<'_> {
    pub fn is_none(&self) -> bool {
        self.last_seq.is_none() && self.last_subject_seq.is_none()
    }

    /// Checks the expectations against the state an append to `subject` would follow.
    pub(crate) fn check(&self, st: &LogState, subject: &str) -> Result<(), AppendError> {
        if let Some(expected) = self.last_seq {
            if st.last_seq != expected {
                return Err(AppendError::WrongLastSequence {
                    expected,
                    current: st.last_seq,
                });
            }
        }
        if let Some(expected) = self.last_subject_seq {
            let of = self.subject_filter.unwrap_or(subject);
            let current = last_match(st, of)
                .map_err(AppendError::InvalidFilter)?
                .unwrap_or(0);
            if current != expected {
                return Err(AppendError::WrongLastSubjectSequence { expected, current });
            }
        }
        Ok(())
    }

    /// Whether the filter (if any) is valid, before any lock is taken.
    pub(crate) fn validate(&self) -> Result<(), AppendError> {
        match self.subject_filter {
            Some(f) => crate::subject::validate_filter(f).map_err(AppendError::InvalidFilter),
            None => Ok(()),
        }
    }
}
