//! Interest and work-queue retention: a message goes once every consumer interested in it has
//! acknowledged it (work queue: at the first acknowledgement, as only one consumer can match),
//! and an interest stream keeps no message that no consumer is interested in. Reads, browsing
//! and creating consumers never remove anything; deleting a consumer removes only what it alone
//! was holding (field failure 2).

use crate::config::Retention;
use crate::consumer::Consumer;
use crate::stream::Stream;
use crate::subject;

impl Stream {
    fn retains_by_interest(&self) -> bool {
        self.s.cfg.retention != Retention::Limits
    }

    /// Removes `seq` if no consumer needs it any more (with `and_below`, every message up to
    /// it: an ack-all acknowledgement).
    pub(crate) fn retain_check(&self, seq: u64, and_below: bool) {
        if !self.retains_by_interest() {
            return;
        }
        let from = if and_below {
            self.state().first_seq
        } else {
            seq
        };
        let consumers = self.consumer_list();
        for q in from..=seq {
            self.remove_if_unneeded(q, &consumers);
        }
    }

    fn consumer_list(&self) -> Vec<Consumer> {
        self.s.consumers.lock().values().cloned().collect()
    }

    /// Removes `seq` when every consumer is done with it (or none is interested).
    fn remove_if_unneeded(&self, seq: u64, consumers: &[Consumer]) {
        let Some(subject) = self.subject_of(seq) else {
            return;
        };
        if consumers.iter().all(|c| c.done_with(seq, &subject)) {
            // Already gone (another acknowledgement raced to remove it) is fine.
            let _ = self.remove(seq);
        }
    }

    /// After an append to an interest stream: a message no consumer is interested in is not
    /// kept.
    pub(crate) fn drop_if_uninteresting(&self, seq: u64, subject: &str) {
        if self.s.cfg.retention != Retention::Interest {
            return;
        }
        if !self.consumer_list().iter().any(|c| c.matches(subject)) {
            let _ = self.remove(seq);
        }
    }

    /// After `c` was deleted: removes what it alone was holding back.
    pub(crate) fn release(&self, c: &Consumer) {
        if !self.retains_by_interest() {
            return;
        }
        let (held, next, filters) = c.held();
        let consumers = self.consumer_list();
        for q in held {
            self.remove_if_unneeded(q, &consumers);
        }
        // Messages it was interested in but had not delivered yet.
        for f in &filters {
            let mut from = next;
            while let Ok(Some(m)) = self.load_next(f, from) {
                self.remove_if_unneeded(m.seq, &consumers);
                from = m.seq + 1;
            }
        }
    }

    /// Work-queue streams: a new consumer's filters may not overlap any existing one's.
    pub(crate) fn check_work_queue(&self, cfg: &crate::ConsumerConfig) -> bool {
        if self.s.cfg.retention != Retention::WorkQueue {
            return true;
        }
        let mine = cfg.match_filters();
        self.consumer_list().iter().all(|c| {
            c.config()
                .match_filters()
                .iter()
                .all(|g| mine.iter().all(|f| !subject::overlaps(f, g)))
        })
    }
}
