//! Conditional appends: the sequences a writer expects to be last, checked under the stream's
//! write lock together with the append, so of two writers expecting the same sequence exactly
//! one succeeds (optimistic concurrency for key-value updates).

use crate::error::AppendError;
use crate::query::last_match;
use crate::state::LogState;
use crate::stream::NewMessage;
use crate::subject;

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
        self.check_with(st.last_seq, subject, |of| last_in(st, of))
    }

    /// Checks the expectations of an append to `subject` that would follow `last_seq`, where
    /// `last_of` gives the last sequence of a subject or filter (None: no message).
    fn check_with(
        &self,
        last_seq: u64,
        subject: &str,
        last_of: impl FnOnce(&str) -> Result<Option<u64>, AppendError>,
    ) -> Result<(), AppendError> {
        if let Some(expected) = self.last_seq {
            if last_seq != expected {
                return Err(AppendError::WrongLastSequence {
                    expected,
                    current: last_seq,
                });
            }
        }
        if let Some(expected) = self.last_subject_seq {
            let current = last_of(self.subject_filter.unwrap_or(subject))?.unwrap_or(0);
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

/// The last sequence in `st` of a subject or filter.
fn last_in(st: &LogState, of: &str) -> Result<Option<u64>, AppendError> {
    last_match(st, of).map_err(AppendError::InvalidFilter)
}

/// Checks the expectations of a batch's messages, each against the stream as the messages
/// before it in the batch leave it (the first goes at `last_seq + 1`).
pub(crate) fn check_batch(st: &LogState, msgs: &[NewMessage<'_>]) -> Result<(), AppendError> {
    let first = st.last_seq + 1;
    for (i, m) in msgs.iter().enumerate() {
        let earlier = &msgs[..i];
        m.expect.check_with(first + i as u64 - 1, m.subject, |of| {
            match earlier
                .iter()
                .rposition(|e| subject::matches(of, e.subject))
            {
                Some(j) => Ok(Some(first + j as u64)),
                None => last_in(st, of),
            }
        })?;
    }
    Ok(())
}
