//! Replica ingest: a mirror that applies an origin's messages with `append_raw_msg` (origin
//! sequences, timestamps, TTLs and rollups; gaps where the origin removed a message before the
//! mirror read it) answers every read as the origin did at the same sequence.
//!
//! Field failure 3 (`field_failure_3_mirror_rollup_serves_newest`): a stream with `sub`
//! rollups, mirrored, served old values from the mirror. Here, after every message the mirror
//! applies, `load_last` of every subject and `state_digest()` equal the origin's as they were
//! when the origin's last sequence was that message's (its state at that sequence), and
//! whenever the mirror has caught up they equal the origin's current ones. The origin's
//! messages carry ids and its producer retries some of them: retries store nothing on the
//! origin, so the mirror never sees them, and the ids the mirror stores are the origin's.

#[allow(dead_code)]
mod common;

use common::Rng;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tidelog::io::MemVfs;
use tidelog::{
    Clock, Dedup, ManualClock, NewMessage, Rollup, Store, StoreOptions, Stream, StreamConfig, Ttl,
};

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;
const SUBJECTS: usize = 12;

fn subject(i: usize) -> String {
    format!("kv.key{i}")
}

/// A stream on a store of its own (the store stays open while the stream is used: it is
/// leaked, as the test process ends soon after).
fn open(dir: &str, vfs: &MemVfs, clock: &Arc<ManualClock>, cfg: StreamConfig) -> Stream {
    let opts = StoreOptions {
        clock: Some(clock.clone() as Arc<dyn Clock>),
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open_with_vfs(dir, Arc::new(vfs.clone()), opts).unwrap();
    let s = store.create_stream(cfg).unwrap();
    std::mem::forget(store);
    s
}

/// What every read of a stream answers, in the terms the test compares.
#[derive(Clone, Debug, PartialEq, Eq)]
struct View {
    digest: u64,
    /// Per subject: the last message's (sequence, payload), if any.
    last: Vec<Option<(u64, Vec<u8>)>>,
}

fn view(s: &Stream) -> View {
    View {
        digest: s.state_digest(),
        last: (0..SUBJECTS)
            .map(|i| {
                s.load_last(&subject(i))
                    .unwrap()
                    .map(|m| (m.seq, m.payload().to_vec()))
            })
            .collect(),
    }
}

/// The origin's views at each of its sequences (taken when the next message was appended, so
/// after every removal while that was its last), and whether each is still the state a replica
/// reaches: a message removed (by a delete, an expiry or a later rollup) before the mirror read
/// it is a gap for the mirror, so the views taken while it existed are ones the mirror cannot
/// show, and are no longer checked.
#[derive(Default)]
struct History {
    at: BTreeMap<u64, (View, bool)>,
}

impl History {
    fn record(&mut self, seq: u64, v: View) {
        self.at.insert(seq, (v, true));
    }
    fn removed(&mut self, seq: u64) {
        for (_, (_, valid)) in self.at.range_mut(seq..) {
            *valid = false;
        }
    }
}

/// Applies origin messages `from..=to` to the mirror, checking it after each one; returns how
/// many checks were made against the origin's history.
fn catch_up(origin: &Stream, mirror: &Stream, upto: u64, hist: &History) -> usize {
    let mut checked = 0;
    let mut from = mirror.state().last_seq + 1;
    while from <= upto {
        let Some(m) = origin
            .load_next(">", from)
            .unwrap()
            .filter(|m| m.seq <= upto)
        else {
            break;
        };
        let mut msg = NewMessage::new(m.subject(), m.payload()).with_headers(m.headers());
        msg.ttl = m.ttl;
        msg.rollup = m.rollup;
        msg.msg_id = m.msg_id();
        mirror.append_raw_msg(m.seq, m.ts, &msg).unwrap();
        from = m.seq + 1;
        if let Some((want, true)) = hist.at.get(&m.seq) {
            assert_eq!(&view(mirror), want, "mirror after applying {}", m.seq);
            checked += 1;
        }
    }
    checked
}

fn run(seed: u64, ops: usize) -> (usize, usize) {
    let clock = Arc::new(ManualClock::new(T0));
    let cfg = |name: &str| {
        StreamConfig::new(name)
            .allow_rollup(true)
            .allow_msg_ttl(true)
            .dedup(Dedup::new(Duration::from_secs(3600), 100_000))
    };
    let (ov, mv) = (MemVfs::new(), MemVfs::new());
    let origin = open("/origin", &ov, &clock, cfg("kv"));
    let mirror = open("/mirror", &mv, &clock, cfg("kv-mirror"));
    let mut rng = Rng(seed);
    let mut hist = History::default();
    let (mut checked, mut caught_up) = (0, 0);
    // The last update sent: a producer that lost the reply sends it again, with its id.
    let mut sent: Option<(String, String, String)> = None;
    for step in 0..ops {
        match rng.below(100) {
            // A retry: the origin stores nothing and returns the first sequence, so the
            // mirror has nothing to apply.
            0..=4 if sent.is_some() => {
                let Some((s, payload, id)) = &sent else {
                    continue;
                };
                let before = origin.state().last_seq;
                let m = NewMessage::new(s, payload.as_bytes()).with_msg_id(id.as_bytes());
                let a = origin.append_msg(&m).unwrap();
                assert!(a.duplicate, "retry of {id} at step {step}");
                assert_eq!(origin.state().last_seq, before);
            }
            // An update of a key: mostly a `sub` rollup (a KV put), sometimes with a TTL.
            0..=59 => {
                let last = origin.state().last_seq;
                if last > 0 {
                    hist.record(last, view(&origin));
                }
                let s = subject(rng.below(SUBJECTS as u64) as usize);
                let payload = format!("{s}={step}");
                let id = format!("{seed}-{step}");
                let mut m = NewMessage::new(&s, payload.as_bytes()).with_msg_id(id.as_bytes());
                // A rollup removed before a replica reads it cannot take effect there (see
                // docs/architecture.md, "Rollups, conditional appends and replicas"): rollups here carry no TTL and are not
                // deleted, plain messages may be both. A later `sub` rollup removes an earlier
                // one but repeats its effect; nothing repeats an `all` rollup's, so the mirror
                // reads those at once.
                let mut all = false;
                match rng.below(100) {
                    0..=2 => {
                        m = m.with_rollup(Rollup::All);
                        all = true;
                    }
                    3..=69 => m = m.with_rollup(Rollup::Subject),
                    70..=84 => m = m.with_ttl(Ttl::Secs(1 + rng.below(5))),
                    _ => {}
                }
                let before = live(&origin);
                assert!(!origin.append_msg(&m).unwrap().duplicate);
                sent = Some((s.clone(), payload.clone(), id.clone()));
                // What the rollup replaced and the mirror has not read is a gap for it.
                let after = live(&origin);
                let unread = mirror.state().last_seq;
                for q in before.into_iter().filter(|&q| q > unread) {
                    if after.binary_search(&q).is_err() {
                        hist.removed(q);
                    }
                }
                if all {
                    let hi = origin.state().last_seq;
                    checked += catch_up(&origin, &mirror, hi, &hist);
                }
            }
            // The origin removes a message the mirror has not read yet (a gap for it).
            60..=69 => {
                let (lo, hi) = (mirror.state().last_seq + 1, origin.state().last_seq);
                if lo <= hi {
                    let q = lo + rng.below(hi - lo + 1);
                    let plain = origin.load(q).is_ok_and(|m| m.rollup.is_none());
                    if plain && origin.remove(q).is_ok() {
                        hist.removed(q);
                    }
                }
            }
            // Time passes: TTLs expire on both, on the origin's clock base. The views taken
            // before hold messages that are gone now on either side.
            70..=79 => {
                clock.advance_ns((rng.below(3000) as i64) * 1_000_000);
                for s in [&origin, &mirror] {
                    let before = live(s);
                    s.expire_now().unwrap();
                    let after = live(s);
                    for q in before
                        .into_iter()
                        .filter(|q| after.binary_search(q).is_err())
                    {
                        hist.removed(q);
                    }
                }
            }
            // The mirror reads part of what it lags behind, or all of it.
            _ => {
                let (lo, hi) = (mirror.state().last_seq, origin.state().last_seq);
                let upto = if rng.chance(50) {
                    hi
                } else {
                    lo + rng.below(hi - lo + 1)
                };
                checked += catch_up(&origin, &mirror, upto, &hist);
            }
        }
        if mirror.state().last_seq == origin.state().last_seq {
            assert_eq!(view(&mirror), view(&origin), "caught up after step {step}");
            caught_up += 1;
        }
        mirror.check_invariants().unwrap();
    }
    let hi = origin.state().last_seq;
    checked += catch_up(&origin, &mirror, hi, &hist);
    assert_eq!(view(&mirror), view(&origin), "caught up at the end");
    (checked, caught_up)
}

fn live(s: &Stream) -> Vec<u64> {
    let mut out = Vec::new();
    let mut from = 1;
    while let Some(m) = s.load_next(">", from).unwrap() {
        out.push(m.seq);
        from = m.seq + 1;
    }
    out
}

#[test]
fn field_failure_3_mirror_rollup_serves_newest() {
    let mut checked = 0;
    let mut caught_up = 0;
    for seed in 1..=8u64 {
        let (c, u) = run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, 600);
        checked += c;
        caught_up += u;
    }
    // Enough of the comparisons were made for the test to mean something.
    assert!(
        checked > 500,
        "only {checked} checks against the origin's history"
    );
    assert!(
        caught_up > 200,
        "only {caught_up} checks of a caught-up mirror"
    );
}

#[test]
fn a_replica_that_skips_rollups_keeps_what_they_replaced() {
    let clock = Arc::new(ManualClock::new(T0));
    let (ov, mv) = (MemVfs::new(), MemVfs::new());
    let origin = open("/o", &ov, &clock, StreamConfig::new("o").allow_rollup(true));
    let opts = tidelog::ReplicaOptions {
        apply_rollups: false,
        apply_ttls: true,
    };
    let mirror = open("/m", &mv, &clock, StreamConfig::new("m").replica(opts));
    origin.append("k", b"", b"1").unwrap();
    origin
        .append_msg(&NewMessage::new("k", b"2").with_rollup(Rollup::Subject))
        .unwrap();
    let hi = origin.state().last_seq;
    let checked = catch_up(&origin, &mirror, hi, &History::default());
    assert_eq!(checked, 0);
    assert_eq!(origin.state().messages, 1);
    assert_eq!(
        mirror.state().messages,
        1,
        "message 1 was never read: a gap"
    );
    assert_eq!(mirror.load_last("k").unwrap().unwrap().rollup, None);
}

#[test]
fn digest_differs_when_any_visible_thing_differs() {
    let clock = Arc::new(ManualClock::new(T0));
    let make = |name: &str| {
        let v = MemVfs::new();
        open(
            &format!("/{name}"),
            &v,
            &clock,
            StreamConfig::new(name).allow_msg_ttl(true),
        )
    };
    let base = |s: &Stream| {
        s.append_raw(1, T0, "a", b"h", b"p").unwrap();
    };
    let a = make("a");
    base(&a);
    let same = make("same");
    base(&same);
    assert_eq!(a.state_digest(), same.state_digest());
    type Variant = Box<dyn Fn(&Stream)>;
    let variants: Vec<Variant> = vec![
        Box::new(|s| s.append_raw(1, T0 + 1, "a", b"h", b"p").unwrap()),
        Box::new(|s| s.append_raw(1, T0, "b", b"h", b"p").unwrap()),
        Box::new(|s| s.append_raw(1, T0, "a", b"", b"hp").unwrap()),
        Box::new(|s| s.append_raw(2, T0, "a", b"h", b"p").unwrap()),
        Box::new(|s| {
            let m = NewMessage::new("a", b"p")
                .with_headers(b"h")
                .with_ttl(Ttl::Secs(9));
            s.append_raw_msg(1, T0, &m).unwrap()
        }),
    ];
    for (i, v) in variants.iter().enumerate() {
        let s = make(&format!("v{i}"));
        v(&s);
        assert_ne!(s.state_digest(), a.state_digest(), "variant {i}");
    }
}
