//! Interest and work-queue retention.
//!
//! - Interest: a message goes once every consumer interested in it (filter matches, message
//!   after its start) is done with it (delivered and acknowledged or terminated; with
//!   `AckPolicy::None`, delivered), and a message no consumer is interested in is not kept.
//!   Deleting a consumer removes only what it alone was holding back.
//! - Work queue: a message goes when the one consumer it matches has acknowledged (or
//!   terminated) it. Nothing else removes it: a message no consumer matches waits for one, and
//!   deleting a consumer leaves its work for the next. Consumers may not overlap, acknowledge
//!   explicitly and deliver from the start.
//!
//! While a consumer's file cannot be read (`Stream::damaged_consumers`) its interest is
//! unknown, so the stream releases nothing until that consumer is deleted.
//!
//! Reads, browsing and creating consumers never remove anything (field failure 2). A release
//! is logged after the acknowledgement or deletion that caused it, so a crash in between could
//! leave it undone: every open re-checks the stream ([`Stream::recheck_retention`]).

use crate::config::Retention;
use crate::consumer::{AckPolicy, Consumer, ConsumerConfig, DeliverPolicy};
use crate::error::ConfigError;
use crate::expiry::Reason;
use crate::stream::Stream;
use crate::subject;

impl Stream {
    fn retention(&self) -> Retention {
        self.s.cfg.retention
    }

    /// Removes those of `seqs` (sorted) that no consumer needs any more, after consumers
    /// acknowledged, terminated or (without acks) received them.
    pub(crate) fn retain_check(&self, seqs: &[u64]) {
        if self.retention() == Retention::Limits || seqs.is_empty() || self.interest_unknown() {
            return;
        }
        let consumers = self.consumer_list();
        let gone: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|&q| self.unneeded(q, &consumers))
            .collect();
        self.release_seqs(&gone);
    }

    fn consumer_list(&self) -> Vec<Consumer> {
        self.s.consumers.lock().values().cloned().collect()
    }

    /// Whether live message `seq` may go: every consumer is done with it and, on a work queue,
    /// one of them matched it (took it).
    fn unneeded(&self, seq: u64, consumers: &[Consumer]) -> bool {
        let Some(subject) = self.subject_of(seq) else {
            return false;
        };
        self.unneeded_subject(seq, &subject, consumers)
    }

    fn unneeded_subject(&self, seq: u64, subject: &str, consumers: &[Consumer]) -> bool {
        let taken = match self.retention() {
            Retention::Limits => return false,
            Retention::Interest => true,
            Retention::WorkQueue => consumers.iter().any(|c| c.matches(subject)),
        };
        taken && consumers.iter().all(|c| c.done_with(seq, subject))
    }

    /// Removes `seqs` (sorted) that are still live, with one logged removal. A failure poisons
    /// the stream (its writers see it); the next open's re-check removes them then.
    fn release_seqs(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        if let [q] = seqs {
            // One message (an acknowledgement): the single removal record. Already gone
            // (another acknowledgement raced to remove it) is fine.
            let _ = self.remove(*q);
            return;
        }
        let mark = self.s.cfg.removal_markers;
        let _ = self.locked_write(|this, st, now| {
            let live: Vec<u64> = seqs
                .iter()
                .copied()
                .filter(|&q| st.find(q).is_some())
                .collect();
            if live.is_empty() {
                return Ok(());
            }
            this.remove_marked(st, &live, mark, Reason::Remove, now)
        });
    }

    /// After appends to an interest stream: messages no consumer is interested in are not kept.
    pub(crate) fn drop_if_uninteresting(&self, first: u64, subjects: &[&str]) {
        if self.retention() != Retention::Interest || self.interest_unknown() {
            return;
        }
        let gone: Vec<u64> = {
            // `wants_new` takes no lock, so asking under the map's lock is brief.
            let consumers = self.s.consumers.lock();
            (first..)
                .zip(subjects)
                .filter(|&(q, s)| !consumers.values().any(|c| c.wants_new(q, s)))
                .map(|(q, _)| q)
                .collect()
        };
        self.release_seqs(&gone);
    }

    /// After `c` was deleted from an interest stream: removes what it alone was holding back
    /// (its pending and exhausted messages and the matching ones it had not delivered).
    pub(crate) fn release(&self, c: &Consumer) {
        if self.retention() != Retention::Interest {
            return;
        }
        let (mut held, next, filters) = c.held();
        let from = self.next_matching(&filters, next, usize::MAX);
        held.extend(from.unwrap_or_default());
        held.sort_unstable();
        held.dedup();
        self.retain_check(&held);
    }

    /// Removes what retention should have removed but a crash left: run at every open of an
    /// interest or work-queue stream. Only messages below where every consumer matching their
    /// subject delivers next can be unneeded (and, on an interest stream, every message of a
    /// subject no consumer matches), so the work is a pass over the subjects plus the
    /// delivered, unacknowledged messages, not over the stream.
    pub(crate) fn recheck_retention(&self) {
        // A consumer whose file could not be read may hold messages no one else does: nothing
        // is released on the word of the others.
        if self.retention() == Retention::Limits || self.interest_unknown() {
            return;
        }
        let consumers = self.consumer_list();
        let nexts: Vec<(u64, &[String])> = consumers.iter().map(Consumer::next_new_from).collect();
        let candidates = self.subject_seqs_below(|subject| {
            let matching = nexts
                .iter()
                .filter(|(_, fs)| fs.iter().any(|f| subject::matches(f, subject)));
            match (matching.map(|(n, _)| *n).min(), self.retention()) {
                (Some(next), _) => next,
                (None, Retention::Interest) => u64::MAX,
                (None, _) => 0,
            }
        });
        self.retain_check(&candidates);
    }

    /// Work-queue streams: a new consumer must not overlap any of `existing`, must acknowledge
    /// explicitly and must deliver from the start (so nothing it takes is skipped).
    pub(crate) fn check_work_queue<'a>(
        &self,
        cfg: &ConsumerConfig,
        mut existing: impl Iterator<Item = &'a Consumer>,
    ) -> Result<(), ConfigError> {
        if self.retention() != Retention::WorkQueue {
            return Ok(());
        }
        let bad = |name, why: &str| {
            Err(ConfigError::InvalidLimit {
                name,
                why: why.into(),
            })
        };
        if cfg.ack != AckPolicy::Explicit {
            return bad(
                "ack",
                "a work-queue stream's consumers acknowledge explicitly",
            );
        }
        if cfg.deliver != DeliverPolicy::All {
            return bad("deliver", "a work-queue stream's consumers deliver all");
        }
        let mine = cfg.match_filters();
        let overlap = existing.any(|c| {
            c.config()
                .match_filters()
                .iter()
                .any(|g| mine.iter().any(|f| subject::overlaps(f, g)))
        });
        if overlap {
            return bad("filters", "a work-queue stream's consumers may not overlap");
        }
        Ok(())
    }
}
