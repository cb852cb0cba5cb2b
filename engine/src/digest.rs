//! `state_digest`: one hash of everything a read can see, so that replicas can be compared
//! with their origin (and with each other) without shipping the data.
//!
//! Covered, in sequence order: the stream's first and last sequence and message count, and
//! per live message its sequence, timestamp, subject, headers, payload, message id, TTL and
//! rollup. Not
//! covered: how the log stores them (blocks, batches, checkpoints) and the `marker` flag, since
//! a replica receives an origin's markers as the messages they are (their headers say what
//! they are). Two streams with the same digest answer every read the same way.

use xxhash_rust::xxh3::Xxh3;

use crate::query;
use crate::record::{FLAG_ROLLUP_ALL, FLAG_ROLLUP_SUB};
use crate::state::LogState;
use crate::stream::Stream;

/// Version of what the digest covers, hashed first: a change of coverage changes every digest.
const DIGEST_VERSION: u64 = 2;

fn digest(st: &LogState) -> u64 {
    let mut h = Xxh3::new();
    let first = query::next_live(st, 0);
    for v in [
        DIGEST_VERSION,
        first.unwrap_or(st.last_seq + 1),
        st.last_seq,
        st.messages(),
    ] {
        h.update(&v.to_le_bytes());
    }
    let mut next = first;
    while let Some(seq) = next {
        match query::read_record(st, seq, |r| {
            for v in [
                r.seq,
                r.ts as u64,
                r.ttl.unwrap_or(0),
                u64::from(r.flags & ROLLUP),
            ] {
                h.update(&v.to_le_bytes());
            }
            for part in [r.subject, r.headers, r.payload, r.msg_id] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }) {
            Some(true) => {}
            // A damaged record: hashed as such, so a replica without the damage differs.
            _ => h.update(&[0xff; 8]),
        }
        next = query::next_live(st, seq + 1);
    }
    h.digest()
}

const ROLLUP: u8 = FLAG_ROLLUP_SUB | FLAG_ROLLUP_ALL;

impl Stream {
    /// A hash of the stream's visible state (see the module docs): equal digests mean every
    /// read answers the same. O(messages), under the state lock held shared, so writers wait
    /// for it: a check for tests, tools and replica audits, not for a hot path.
    pub fn state_digest(&self) -> u64 {
        digest(&self.s.state.read())
    }
}
