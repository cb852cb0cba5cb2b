//! Message-id deduplication: an append whose id was appended within the stream's duplicate
//! window stores nothing and returns the first message's sequence and timestamp.
//!
//! Pinned here, on every write path (memory streams, and file streams with `Always` group
//! commit, `Interval` and `None`):
//! - config and id validation (nothing created, nothing stored);
//! - a duplicate changes nothing anyone can see (counters, digest, watchers, consumers);
//! - the window's time bound (exact at `ts >= now - window`) and count bound (the newest
//!   `max_ids` always, nothing older than `max_ids + 256` back);
//! - removed messages keep their ids (remove, work-queue acks, rollups, max_msgs), also after
//!   their blocks were freed; purges forget only with `forget_on_purge`; erase and truncate
//!   forget;
//! - restarts rebuild the window from the records on disk;
//! - batches are refused whole; concurrent appenders store every id once;
//! - replicas (raw appends) and snapshots carry ids; `msg_id()`, `dedup_stats()` and
//!   `state_digest()` show them;
//! - a property test of random operations against a plain model of the window.

#[allow(dead_code)]
mod common;

use common::{pick, variants, Db, Pick};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use tidelog::io::{CrashKind, MemVfs, Vfs};
use tidelog::{
    AppendError, Appended, Clock, ConfigError, ConsumerConfig, Dedup, Discard, Durability, Limits,
    LoadError, ManualClock, NewMessage, Retention, Rollup, Storage, Store, Stream, StreamConfig,
    StreamError, WatchFrom, MAX_DEDUP_IDS, MAX_TTL_SECS,
};

const SEC: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const T0: i64 = 1_700_000_000 * SEC;
const HOUR: Duration = Duration::from_secs(3600);
/// Ids per window group: how far past `max_ids` the window may reach.
const GROUP: u64 = 256;
const STORE_DIR: &str = "/d";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn open_store(vfs: &MemVfs, clock: &Arc<ManualClock>) -> Store {
    Store::open_with_vfs(
        STORE_DIR,
        Arc::new(vfs.clone()),
        common::store_options(Some(clock.clone())),
    )
    .unwrap()
}

/// A store on an in-memory disk with a manual clock, which can be closed and reopened.
struct Env {
    vfs: MemVfs,
    clock: Arc<ManualClock>,
    /// Always open (an `Option` only so a reopen can drop the old store, which holds the
    /// store's lock, before it opens the new one).
    open: Option<Store>,
}

impl Env {
    fn new() -> Env {
        let vfs = MemVfs::new();
        let clock = Arc::new(ManualClock::new(T0));
        let open = Some(open_store(&vfs, &clock));
        Env { vfs, clock, open }
    }

    fn store(&self) -> &Store {
        self.open.as_ref().expect("store open")
    }

    /// A clean close and reopen of the store.
    fn reopen_store(&mut self) {
        if let Some(old) = self.open.take() {
            old.close().unwrap();
        }
        self.open = Some(open_store(&self.vfs, &self.clock));
    }

    fn create(&self, cfg: StreamConfig) -> Stream {
        self.store().create_stream(cfg).unwrap()
    }

    /// A clean close and reopen of the store; returns the stream `name` as reopened.
    fn reopen(&mut self, name: &str) -> Stream {
        self.reopen_store();
        self.store().stream(name).unwrap()
    }

    fn advance(&self, ns: i64) {
        self.clock.advance_ns(ns);
    }

    /// Names of the block files of stream `name`.
    fn block_files(&self, name: &str) -> Vec<String> {
        let dir = Path::new(STORE_DIR).join("streams").join(name);
        let mut v: Vec<String> = self
            .vfs
            .list(&dir)
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".blk"))
            .collect();
        v.sort();
        v
    }
}

/// Runs `f` on every case, and fails with every case's failure (not just the first one's).
fn on_each<T: Copy + std::fmt::Debug>(cases: impl IntoIterator<Item = T>, f: impl Fn(T)) {
    let mut failed = Vec::new();
    for c in cases {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c))) {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{c:?}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "failed in {} case(s):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// The write paths without a sync on every append, on memory and on files.
const UNSYNCED: [(Storage, Durability); 2] = [
    (Storage::Memory, Durability::None),
    (Storage::File, Durability::None),
];

/// The write paths whose blocks a test fills and frees: memory, and files with and without
/// group commit.
const FREEING: [(Storage, Durability); 3] = [
    (Storage::Memory, Durability::None),
    (Storage::File, Durability::None),
    (Storage::File, Durability::Always),
];

/// Runs `f` on every write path (`variants()`) with a new store and in it a stream "s" with
/// dedup `d`; `f` gets the case's label, the store and the stream.
fn each_stream(d: Dedup, f: impl Fn(&str, &Env, Stream)) {
    each_stream_on(variants(), d, f)
}

/// `each_stream` on the write paths `cases`.
fn each_stream_on(
    cases: impl IntoIterator<Item = (Storage, Durability)>,
    d: Dedup,
    f: impl Fn(&str, &Env, Stream),
) {
    each_stream_with(cases, |c| c.dedup(d), f)
}

/// `each_stream` on the write paths `cases`, the stream's config (its storage and durability
/// set, no dedup) as `config` makes it.
fn each_stream_with(
    cases: impl IntoIterator<Item = (Storage, Durability)>,
    config: impl Fn(StreamConfig) -> StreamConfig,
    f: impl Fn(&str, &Env, Stream),
) {
    on_each(cases, |(storage, durability)| {
        let env = Env::new();
        let s = env.create(config(
            StreamConfig::new("s")
                .storage(storage)
                .durability(durability),
        ));
        f(&label(storage, durability), &env, s);
    });
}

fn dedup(window: Duration, max_ids: u64) -> Dedup {
    Dedup::new(window, max_ids)
}

fn cfg(name: &str, storage: Storage, durability: Durability, d: Dedup) -> StreamConfig {
    StreamConfig::new(name)
        .storage(storage)
        .durability(durability)
        .dedup(d)
}

/// A new store with a memory stream "s" of dedup `d`.
fn memory_stream(d: Dedup) -> (Env, Stream) {
    let env = Env::new();
    let s = env.create(cfg("s", Storage::Memory, Durability::None, d));
    (env, s)
}

/// A new store with a file stream `name` (`Durability::Always`) of dedup `d`.
fn file_stream(name: &str, d: Dedup) -> (Env, Stream) {
    let env = Env::new();
    let s = env.create(cfg(name, Storage::File, Durability::Always, d));
    (env, s)
}

fn msg<'a>(subject: &'a str, id: &'a [u8]) -> NewMessage<'a> {
    NewMessage::new(subject, b"payload").with_msg_id(id)
}

/// Appends `id` on `subject`; returns what the append said.
fn put(s: &Stream, subject: &str, id: &[u8]) -> Appended {
    s.append_msg(&msg(subject, id)).unwrap()
}

/// Appends `id`, which must be stored as a new message.
fn put_new(s: &Stream, subject: &str, id: &[u8]) -> Appended {
    let a = put(s, subject, id);
    assert!(
        !a.duplicate,
        "{:?} was wrongly taken for a duplicate of {a:?}",
        String::from_utf8_lossy(id)
    );
    a
}

/// Appends `id` again, which must be a duplicate of `first`, and checks that nothing changed.
fn assert_dup(s: &Stream, id: &[u8], first: Appended) {
    let before = s.state();
    let a = put(s, "dup.check", id);
    assert_eq!(
        a,
        Appended {
            seq: first.seq,
            ts: first.ts,
            duplicate: true
        },
        "id {:?}",
        String::from_utf8_lossy(id)
    );
    assert_eq!(s.state(), before, "a duplicate changed the stream");
}

fn id(i: usize) -> Vec<u8> {
    format!("id-{i}").into_bytes()
}

fn label(storage: Storage, durability: Durability) -> String {
    format!("{storage:?}/{durability:?}")
}

// ---------------------------------------------------------------------------------------------
// Config and id validation
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_dedup_configs_are_refused_and_create_nothing() {
    let mut env = Env::new();
    let over_100_years = Duration::from_secs(MAX_TTL_SECS) + Duration::from_nanos(1);
    let bad = [
        (dedup(Duration::ZERO, 10), "dedup window"),
        (dedup(over_100_years, 10), "dedup window"),
        (dedup(Duration::MAX, 10), "dedup window"),
        (dedup(HOUR, 0), "dedup max_ids"),
        (dedup(HOUR, MAX_DEDUP_IDS + 1), "dedup max_ids"),
        (dedup(HOUR, u64::MAX), "dedup max_ids"),
    ];
    on_each([Storage::File, Storage::Memory], |storage| {
        for (d, field) in bad {
            let c = StreamConfig::new("s").storage(storage).dedup(d);
            match env.store().create_stream(c) {
                Err(StreamError::Config(ConfigError::InvalidLimit { name, .. })) => {
                    assert_eq!(name, field, "{d:?}")
                }
                Err(e) => panic!("{d:?}: wrong error {e:?}"),
                Ok(_) => panic!("{d:?} was accepted"),
            }
            assert!(env.store().stream_names().is_empty(), "{d:?}");
            assert!(matches!(
                env.store().stream("s"),
                Err(StreamError::NotFound(_))
            ));
        }
    });
    // Nothing was written for them: the name is free after a reopen too.
    env.reopen_store();
    assert!(env.store().stream_names().is_empty());
    let sdir = Path::new(STORE_DIR).join("streams");
    if env.vfs.exists(&sdir) {
        assert_eq!(env.vfs.list(&sdir).unwrap(), Vec::<String>::new());
    }
    // The bounds themselves are accepted.
    let ok = [
        dedup(Duration::from_nanos(1), 1),
        dedup(Duration::from_secs(MAX_TTL_SECS), 1),
        dedup(HOUR, 1).forget_on_purge(true),
    ];
    for (i, d) in ok.into_iter().enumerate() {
        let s = env.create(StreamConfig::new(format!("ok{i}")).dedup(d));
        assert_eq!(s.config().dedup, Some(d));
        let a = put_new(&s, "x", b"k");
        assert_dup(&s, b"k", a);
    }
}

#[test]
fn invalid_msg_ids_are_refused_and_store_nothing() {
    each_stream(dedup(HOUR, 100), |l, _, s| {
        let long = [7u8; 256];
        for bad in [&b""[..], &long[..]] {
            match s.append_msg(&msg("x", bad)) {
                Err(AppendError::InvalidMsgId { len }) => assert_eq!(len, bad.len()),
                other => panic!("{l}: id of {} bytes: {other:?}", bad.len()),
            }
            let batch = [NewMessage::new("x", b"ok"), msg("x", bad)];
            match s.append_batch(&batch) {
                Err(AppendError::InvalidMsgId { len }) => assert_eq!(len, bad.len()),
                other => panic!("batch with an id of {} bytes: {other:?}", bad.len()),
            }
            let st = s.state();
            assert_eq!((st.messages, st.last_seq), (0, 0));
        }
        // 1 and 255 bytes are fine, and deduplicate.
        let max = [9u8; 255];
        for good in [&b"1"[..], &max[..]] {
            let a = put_new(&s, "x", good);
            assert_eq!(s.load(a.seq).unwrap().msg_id(), Some(good));
            assert_dup(&s, good, a);
        }
        // A 255-byte id that differs from the stored one only in its last byte is another id.
        let mut other = max;
        other[254] = 8;
        put_new(&s, "x", &other);
        assert_eq!(s.state().messages, 3);
    });
}

// ---------------------------------------------------------------------------------------------
// A duplicate
// ---------------------------------------------------------------------------------------------

#[test]
fn a_repeated_id_stores_nothing_and_returns_the_first_message() {
    each_stream(dedup(HOUR, 1000), |l, env, s| {
        let mut w = s.watch(">", WatchFrom::New).unwrap();
        let c = s.create_consumer(ConsumerConfig::new("c")).unwrap();
        let first = s
            .append_msg(&NewMessage::new("orders.1", b"first").with_msg_id(b"order-1"))
            .unwrap();
        assert_eq!(
            (first.seq, first.ts, first.duplicate),
            (1, T0, false),
            "{l}"
        );
        assert_eq!(w.poll().unwrap().map(|m| m.seq), Some(1));
        assert!(w.poll().unwrap().is_none());
        let d = c.fetch(10, 0).unwrap();
        assert_eq!(d.len(), 1);
        c.ack(d[0].message.seq).unwrap();

        env.advance(5 * SEC);
        let state = s.state();
        let digest = s.state_digest();
        // Another subject, payload and headers: the id alone decides.
        let again = s
            .append_msg(
                &NewMessage::new("orders.2", b"second")
                    .with_headers(b"h")
                    .with_msg_id(b"order-1"),
            )
            .unwrap();
        assert_eq!(
            again,
            Appended {
                seq: 1,
                ts: T0,
                duplicate: true
            },
            "{l}"
        );
        assert_eq!(s.state(), state, "{l}");
        assert_eq!(s.state_digest(), digest, "{l}");
        assert_eq!(s.load(1).unwrap().payload(), b"first");
        assert!(matches!(s.load(2), Err(LoadError::NotFound(2))));
        assert!(s.load_last("orders.2").unwrap().is_none());
        assert!(
            w.poll().unwrap().is_none(),
            "{l}: a watcher saw a duplicate"
        );
        assert!(
            c.fetch(10, 0).unwrap().is_empty(),
            "{l}: a consumer got a duplicate"
        );

        // The next new id takes the next sequence: the duplicate used none.
        let b = put_new(&s, "orders.2", b"order-2");
        assert_eq!((b.seq, b.ts), (2, T0 + 5 * SEC), "{l}");
        assert_eq!(w.poll().unwrap().map(|m| m.seq), Some(2));
        assert_dup(&s, b"order-2", b);
        assert_dup(&s, b"order-1", first);
        assert_eq!(s.state().messages, 2);
        s.check_invariants().unwrap();
    });
}

#[test]
fn messages_without_an_id_are_never_duplicates_and_read_back_without_one() {
    each_stream(dedup(HOUR, 1000), |_, _, s| {
        for i in 1..=3u64 {
            let a = s.append("a", b"", b"same").unwrap();
            assert_eq!((a.seq, a.duplicate), (i, false));
            assert_eq!(s.load(i).unwrap().msg_id(), None);
        }
        let a = put_new(&s, "b", b"key");
        let m = s.load(a.seq).unwrap();
        assert_eq!(m.msg_id(), Some(&b"key"[..]));
        // The id is not part of the payload, headers or subject.
        assert_eq!(
            (m.subject(), m.headers(), m.payload()),
            ("b", &b""[..], &b"payload"[..])
        );
        assert_eq!(
            s.load_next(">", a.seq).unwrap().unwrap().msg_id(),
            Some(&b"key"[..])
        );
        assert_eq!(
            s.load_last("b").unwrap().unwrap().msg_id(),
            Some(&b"key"[..])
        );
        assert_eq!(s.load_last("a").unwrap().unwrap().msg_id(), None);
        assert_eq!(s.load_next(">", 1).unwrap().unwrap().msg_id(), None);
        // Ids are bytes, not strings; their case and length matter.
        for other in [&b"KEY"[..], b"key ", b"ke", b"\0key", &[0xff, 0x00]] {
            put_new(&s, "b", other);
        }
        assert_eq!(s.state().messages, 9);
    });
}

#[test]
fn a_stream_without_dedup_stores_every_message_and_keeps_their_ids() {
    // No dedup: the config as it is.
    each_stream_with(variants(), std::convert::identity, |_, _, s| {
        assert_eq!(s.dedup_stats(), None);
        let a = put_new(&s, "x", b"k");
        let b = put_new(&s, "x", b"k");
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(s.load(2).unwrap().msg_id(), Some(&b"k"[..]));
        assert!(matches!(
            s.append_msg(&msg("x", b"")),
            Err(AppendError::InvalidMsgId { len: 0 })
        ));
        assert_eq!(s.state().messages, 2);
    });
}

// ---------------------------------------------------------------------------------------------
// The window: time and count
// ---------------------------------------------------------------------------------------------

#[test]
fn an_id_is_a_duplicate_until_exactly_the_window_after_its_timestamp() {
    let window = Duration::from_secs(10);
    each_stream(dedup(window, 1000), |l, env, s| {
        let w = 10 * SEC;
        let a = put_new(&s, "x", b"a");
        env.advance(3 * SEC);
        let b = put_new(&s, "x", b"b");
        env.clock.set_ns(a.ts + w);
        assert_dup(&s, b"a", a);
        env.clock.set_ns(a.ts + w + 1);
        let a2 = put_new(&s, "x", b"a");
        assert_eq!((a2.seq, a2.ts), (3, a.ts + w + 1), "{l}");
        // b is still in its window; the new a replaces the old one.
        assert_dup(&s, b"b", b);
        env.clock.set_ns(a2.ts + w);
        assert_dup(&s, b"a", a2);
        env.clock.set_ns(b.ts + w + 1);
        assert_dup(&s, b"a", a2);
        let b2 = put_new(&s, "x", b"b");
        assert_eq!(b2.seq, 4, "{l}");
        env.clock.set_ns(a2.ts + w + 1);
        put_new(&s, "x", b"a");
        // Long after, nothing is remembered.
        env.advance(3600 * SEC);
        for k in [&b"a"[..], b"b"] {
            put_new(&s, "x", k);
        }
        assert_eq!(s.state().messages, 7, "{l}");
    });
}

#[test]
fn a_one_nanosecond_window_remembers_an_id_only_at_its_own_timestamp() {
    let (env, s) = memory_stream(dedup(Duration::from_nanos(1), 10));
    let a = put_new(&s, "x", b"k");
    assert_dup(&s, b"k", a);
    env.advance(1);
    assert_dup(&s, b"k", a);
    env.advance(1);
    put_new(&s, "x", b"k");
}

#[test]
fn the_newest_max_ids_are_always_remembered_and_none_older_than_a_group_past_them() {
    let max_ids = 300u64;
    let config = |c: StreamConfig| c.dedup(dedup(HOUR, max_ids)).block_size(64 << 10);
    each_stream_with(UNSYNCED, config, |_, env, s| {
        let storage = s.config().storage;
        let n = 2000usize;
        let mut first = Vec::new();
        for i in 1..=n {
            env.advance(MS);
            first.push(put_new(&s, "x", &id(i)));
        }
        let st = s.dedup_stats().unwrap();
        assert!(
            (max_ids..=max_ids + GROUP).contains(&st.ids),
            "{storage:?}: {st:?}"
        );
        // The newest max_ids: duplicates of their first message.
        for i in n + 1 - max_ids as usize..=n {
            assert_dup(&s, &id(i), first[i - 1]);
        }
        // Between max_ids and max_ids + GROUP back: either answer, but a duplicate is of the
        // right message.
        for i in n + 1 - (max_ids + GROUP) as usize..=n - max_ids as usize {
            let a = put(&s, "x", &id(i));
            if a.duplicate {
                assert_eq!((a.seq, a.ts), (first[i - 1].seq, first[i - 1].ts));
            }
        }
        // Older: never.
        for i in 1..=n - (max_ids + GROUP) as usize {
            let a = put(&s, "x", &id(i));
            assert!(
                !a.duplicate,
                "{storage:?}: id {i} of {n} is remembered: {a:?}"
            );
        }
    });
}

#[test]
fn a_window_of_one_id_always_remembers_the_last_one() {
    each_stream(dedup(HOUR, 1), |_, _, s| {
        let mut prev: Option<(Vec<u8>, Appended)> = None;
        for i in 0..700 {
            let a = put_new(&s, "x", &id(i));
            assert_dup(&s, &id(i), a);
            if let Some((pid, pa)) = &prev {
                // The one before may or may not be remembered; if it is, rightly.
                let b = put(&s, "x", pid);
                if b.duplicate {
                    assert_eq!(b.seq, pa.seq);
                } else {
                    prev = Some((pid.clone(), b));
                    continue;
                }
            }
            prev = Some((id(i), a));
        }
        let st = s.dedup_stats().unwrap();
        assert!(st.ids >= 1 && st.ids <= 1 + GROUP, "{st:?}");
    });
}

/// The index keeps sequences in 32 bits above a base; gaps of billions of sequences (skips)
/// move the base. Ids less than 2^31 sequences apart are kept; older ones may go.
#[test]
fn ids_are_remembered_across_sequence_gaps_of_billions() {
    each_stream_on(UNSYNCED, dedup(HOUR, 1000), |_, _, s| {
        let a = put_new(&s, "x", b"a");
        s.skip(u64::from(u32::MAX) + 5).unwrap();
        let b = put_new(&s, "x", b"b");
        assert_eq!(b.seq, a.seq + u64::from(u32::MAX) + 6);
        let c = put_new(&s, "x", b"c");
        assert_dup(&s, b"b", b);
        assert_dup(&s, b"c", c);
        let again = put(&s, "x", b"a");
        if again.duplicate {
            assert_eq!(again.seq, a.seq);
        }
        s.skip(1 << 30).unwrap();
        let d = put_new(&s, "x", b"d");
        s.skip((1 << 30) - 1000).unwrap();
        let e = put_new(&s, "x", b"e");
        // All within 2^31 sequences of the newest.
        for (k, x) in [(&b"b"[..], b), (b"c", c), (b"d", d), (b"e", e)] {
            assert_dup(&s, k, x);
        }
        // Past 2^31 above b: the base moves again; b and c may go, the others stay.
        s.skip(2000).unwrap();
        let f = put_new(&s, "x", b"f");
        for (k, x) in [(&b"d"[..], d), (b"e", e), (b"f", f)] {
            assert_dup(&s, k, x);
        }
        for (k, x) in [(&b"b"[..], b), (b"c", c)] {
            let again = put(&s, "x", k);
            if again.duplicate {
                assert_eq!(again.seq, x.seq);
            }
        }
    });
}

#[test]
fn dedup_stats_count_the_window_within_about_six_bytes_per_id() {
    let max_ids = 20_000u64;
    let (env, s) = memory_stream(dedup(Duration::from_secs(60), max_ids));
    let bound = 6 * max_ids + 16 * 1024;
    let fresh = s.dedup_stats().unwrap();
    assert_eq!((fresh.ids, fresh.kept_ids, fresh.kept_bytes), (0, 0, 0));
    assert!(
        fresh.index_bytes > 0 && fresh.index_bytes <= bound,
        "{fresh:?}"
    );
    for i in 0..30_000 {
        put_new(&s, "x", &id(i));
        if i == 99 {
            assert_eq!(s.dedup_stats().unwrap().ids, 100);
        }
    }
    // Messages without ids take no room in the window.
    for _ in 0..100 {
        s.append("x", b"", b"").unwrap();
    }
    let full = s.dedup_stats().unwrap();
    assert!((max_ids..=max_ids + GROUP).contains(&full.ids), "{full:?}");
    assert!(full.index_bytes <= bound, "{full:?}");
    assert_eq!((full.kept_ids, full.kept_bytes), (0, 0));
    // After the window, the ids go.
    env.advance(61 * SEC);
    put_new(&s, "x", b"late");
    let later = s.dedup_stats().unwrap();
    assert!(later.ids <= 1 + GROUP, "{later:?}");
    // A stream without dedup has no stats.
    let plain = env.create(StreamConfig::new("plain").storage(Storage::Memory));
    assert_eq!(plain.dedup_stats(), None);
}

// ---------------------------------------------------------------------------------------------
// Removed messages keep their ids
// ---------------------------------------------------------------------------------------------

#[test]
fn a_removed_messages_id_is_still_a_duplicate() {
    each_stream(dedup(HOUR, 1000), |_, env, s| {
        let a = put_new(&s, "x", b"a");
        env.advance(SEC);
        let b = put_new(&s, "x", b"b");
        s.remove(a.seq).unwrap();
        env.advance(SEC);
        assert_dup(&s, b"a", a);
        assert!(matches!(s.load(a.seq), Err(LoadError::NotFound(_))));
        s.remove(b.seq).unwrap();
        assert_dup(&s, b"b", b);
        assert_eq!(s.state().messages, 0);
    });
}

/// Messages of `n` ids with 100-byte payloads, 1 ms apart, so a 4 KiB block holds ~30.
fn fill(env: &Env, s: &Stream, n: usize) -> Vec<Appended> {
    (0..n)
        .map(|i| {
            env.advance(MS);
            let a = s
                .append_msg(&NewMessage::new("jobs.x", &[1u8; 100]).with_msg_id(&id(i)))
                .unwrap();
            assert!(!a.duplicate);
            a
        })
        .collect()
}

/// Checkpoints a file stream a few times, so retired blocks' files are deleted.
fn settle(s: &Stream) {
    for _ in 0..3 {
        s.checkpoint().unwrap();
    }
}

/// The stream freed blocks and keeps ids of freed records.
fn assert_blocks_freed(env: &Env, s: &Stream, storage: Storage, before: usize) {
    let (blocks, retired) = s.block_counts();
    assert!(
        blocks < 3,
        "{storage:?}: {blocks} blocks still in use (of {before})"
    );
    assert_eq!(retired, 0, "{storage:?}: retired blocks not freed");
    if storage == Storage::File {
        let files = env.block_files("s");
        assert!(files.len() < 3, "block files left: {files:?}");
    }
    let st = s.dedup_stats().unwrap();
    assert!(st.kept_ids > 0 && st.kept_bytes > 0, "{storage:?}: {st:?}");
}

#[test]
fn a_removed_messages_id_is_still_a_duplicate_after_its_block_is_freed() {
    let config = |c: StreamConfig| c.dedup(dedup(HOUR, 10_000)).block_size(4096);
    each_stream_with(FREEING, config, |_, env, s| {
        let storage = s.config().storage;
        let all = fill(env, &s, 600);
        let before = s.block_counts().0;
        assert!(before > 10, "{before} blocks");
        for a in &all {
            s.remove(a.seq).unwrap();
        }
        settle(&s);
        assert_eq!(s.state().messages, 0);
        assert_blocks_freed(env, &s, storage, before);
        for (i, a) in all.iter().enumerate() {
            assert_dup(&s, &id(i), *a);
        }
        assert_eq!(s.state().last_seq, 600);
    });
}

#[test]
fn kept_ids_of_freed_blocks_leave_with_the_window() {
    let max_ids = 100;
    let config = |c: StreamConfig| {
        c.dedup(dedup(Duration::from_secs(60), max_ids))
            .block_size(4096)
    };
    each_stream_with(UNSYNCED, config, |_, env, s| {
        let all = fill(env, &s, 2000);
        for a in &all {
            s.remove(a.seq).unwrap();
        }
        settle(&s);
        // Bounded by the count: only the window's ids are kept.
        let st = s.dedup_stats().unwrap();
        assert!(st.kept_ids > 0, "{st:?}");
        assert!(st.kept_ids <= max_ids + GROUP, "{st:?}");
        let newest = all.len() - max_ids as usize;
        for (i, a) in all.iter().enumerate().skip(newest) {
            assert_dup(&s, &id(i), *a);
        }
        // And by time: past the window, they go.
        env.advance(61 * SEC);
        put_new(&s, "x", b"late");
        let st = s.dedup_stats().unwrap();
        assert!(st.kept_ids <= GROUP, "{st:?}");
        for (i, _) in all.iter().enumerate().skip(newest) {
            put_new(&s, "x", &id(i));
        }
    });
}

#[test]
fn an_id_stays_a_duplicate_after_a_work_queue_ack_removes_its_message() {
    let config = |c: StreamConfig| {
        c.dedup(dedup(HOUR, 10_000))
            .retention(Retention::WorkQueue)
            .block_size(4096)
    };
    each_stream_with(variants(), config, |l, env, s| {
        let c = s
            .create_consumer(ConsumerConfig::new("worker").filters(["jobs.>"]))
            .unwrap();
        let all = fill(env, &s, 300);
        let mut acked = 0;
        while acked < all.len() {
            let d = c.fetch(100, 0).unwrap();
            assert!(!d.is_empty(), "{l}");
            for x in d {
                c.ack(x.message.seq).unwrap();
                acked += 1;
            }
        }
        assert_eq!(s.state().messages, 0, "{l}");
        if s.config().storage == Storage::File {
            settle(&s);
        }
        for (i, a) in all.iter().enumerate() {
            assert_dup(&s, &id(i), *a);
        }
        // Nothing new to work on.
        assert!(c.fetch(10, 0).unwrap().is_empty(), "{l}");
    });
}

#[test]
fn an_id_replaced_by_a_rollup_is_still_a_duplicate() {
    let config = |c: StreamConfig| c.dedup(dedup(HOUR, 1000)).allow_rollup(true);
    each_stream_with(variants(), config, |_, _, s| {
        // Appends a rollup message of `subject` and `payload` with the id `k`.
        let roll = |subject, payload: &[u8], k: &[u8], r| {
            let m = NewMessage::new(subject, payload).with_msg_id(k);
            s.append_msg(&m.with_rollup(r)).unwrap()
        };
        let v1 = put_new(&s, "kv.a", b"v1");
        let other = put_new(&s, "kv.b", b"other");
        let v2 = roll("kv.a", b"v2", b"v2", Rollup::Subject);
        assert!(!v2.duplicate);
        assert!(s.load(v1.seq).is_err());
        assert_dup(&s, b"v1", v1);
        let all = roll("kv.c", b"all", b"all", Rollup::All);
        assert_eq!(s.state().messages, 1);
        for (k, a) in [
            (&b"v1"[..], v1),
            (b"other", other),
            (b"v2", v2),
            (b"all", all),
        ] {
            assert_dup(&s, k, a);
        }
        // A rollup with a duplicate id is a duplicate: it replaces nothing.
        let again = roll("kv.c", b"all", b"v1", Rollup::All);
        assert_eq!((again.seq, again.duplicate), (v1.seq, true));
        assert_eq!(s.state().messages, 1);
    });
}

#[test]
fn an_id_dropped_by_max_msgs_is_still_a_duplicate() {
    let limits = Limits {
        max_msgs: Some(5),
        ..Limits::default()
    };
    let config = |c: StreamConfig| c.dedup(dedup(HOUR, 10_000)).limits(limits).block_size(4096);
    each_stream_with(variants(), config, |_, env, s| {
        let all = fill(env, &s, 400);
        assert_eq!(s.state().messages, 5);
        if s.config().storage == Storage::File {
            settle(&s);
        }
        for (i, a) in all.iter().enumerate() {
            assert_dup(&s, &id(i), *a);
        }
        assert_eq!(s.state().messages, 5);
        assert_eq!(s.state().last_seq, 400);
    });
}

#[test]
fn an_id_expired_by_max_age_is_still_a_duplicate() {
    let limits = Limits {
        max_age: Some(Duration::from_secs(1)),
        ..Limits::default()
    };
    let config = |c: StreamConfig| c.dedup(dedup(HOUR, 1000)).limits(limits);
    each_stream_with(variants(), config, |_, env, s| {
        let a = put_new(&s, "x", b"a");
        env.advance(2 * SEC);
        s.enforce_limits().unwrap();
        assert_eq!(s.state().messages, 0);
        assert_dup(&s, b"a", a);
    });
}

#[test]
fn an_id_dropped_at_once_by_interest_retention_is_still_a_duplicate() {
    let config = |c: StreamConfig| c.dedup(dedup(HOUR, 1000)).retention(Retention::Interest);
    each_stream_with(variants(), config, |_, _, s| {
        // No consumer: nothing is kept, but the id was appended.
        let a = put_new(&s, "x", b"a");
        assert_eq!(s.state().messages, 0);
        assert_dup(&s, b"a", a);
    });
}

#[test]
fn removed_ids_stay_duplicates_when_reclaim_rewrites_their_blocks() {
    let config = |c: StreamConfig| c.dedup(dedup(HOUR, 10_000)).block_size(4096);
    each_stream_with([(Storage::File, Durability::None)], config, |_, env, s| {
        let all = fill(env, &s, 300);
        // Two of every three go: blocks less than half live are rewritten without them.
        for (i, a) in all.iter().enumerate() {
            if i % 3 != 0 {
                s.remove(a.seq).unwrap();
            }
        }
        let rewritten = s.reclaim().unwrap();
        assert!(rewritten > 0, "no block was rewritten");
        assert!(s.dedup_stats().unwrap().kept_ids > 0);
        for (i, a) in all.iter().enumerate() {
            assert_dup(&s, &id(i), *a);
        }
    });
}

#[test]
fn a_refused_append_leaves_its_id_unremembered() {
    let limits = Limits {
        max_msgs: Some(1),
        discard: Discard::New,
        ..Limits::default()
    };
    let config = |c: StreamConfig| c.dedup(dedup(HOUR, 1000)).limits(limits);
    each_stream_with(variants(), config, |l, _, s| {
        let a = put_new(&s, "x", b"a");
        match s.append_msg(&msg("x", b"full")) {
            Err(AppendError::LimitReached(_)) => {}
            other => panic!("{l}: {other:?}"),
        }
        match s.append_msg(&msg("x", b"expect").expect_last_seq(99)) {
            Err(AppendError::WrongLastSequence { .. }) => {}
            other => panic!("{l}: {other:?}"),
        }
        // A duplicate of a full stream is still a duplicate (it stores nothing).
        assert_dup(&s, b"a", a);
        s.remove(a.seq).unwrap();
        put_new(&s, "x", b"full");
        s.purge().unwrap();
        put_new(&s, "x", b"expect");
    });
}

// ---------------------------------------------------------------------------------------------
// Purges, erase, truncate
// ---------------------------------------------------------------------------------------------

/// Stream configs a purge test runs on: every write path, and removal markers (whose purges
/// take their own path).
fn purge_configs(forget: bool) -> Vec<(String, StreamConfig)> {
    let d = dedup(HOUR, 1000).forget_on_purge(forget);
    let mut v: Vec<(String, StreamConfig)> = variants()
        .into_iter()
        .map(|(st, du)| (label(st, du), cfg("s", st, du, d)))
        .collect();
    v.push((
        "File/Always with removal markers".into(),
        cfg("s", Storage::File, Durability::Always, d)
            .allow_msg_ttl(true)
            .subject_delete_marker_ttl(Duration::from_secs(60))
            .removal_markers(true),
    ));
    v
}

/// Runs `f` on a new store with a stream "s" of every purge config, with and without
/// `forget_on_purge`; `f` gets the case's label, whether purges forget, and the stream.
fn each_purge_stream(f: impl Fn(&str, bool, Stream)) {
    for forget in [false, true] {
        for (l, c) in purge_configs(forget) {
            let what = format!("{l} forget={forget}");
            let env = Env::new();
            f(&what, forget, env.create(c));
        }
    }
}

/// Re-appends `id`: a duplicate of `first` unless `forgotten`, then a new message.
fn check_after_purge(s: &Stream, id: &[u8], first: Appended, forgotten: bool, what: &str) {
    let a = put(s, "again", id);
    if forgotten {
        assert!(
            !a.duplicate && a.seq > first.seq,
            "{what}: the purged id {:?} was not forgotten: {a:?}",
            String::from_utf8_lossy(id)
        );
        assert_eq!(s.load(a.seq).unwrap().msg_id(), Some(id));
    } else {
        assert_eq!(
            (a.seq, a.ts, a.duplicate),
            (first.seq, first.ts, true),
            "{what}: the purged id {:?} was forgotten",
            String::from_utf8_lossy(id)
        );
    }
}

#[test]
fn purge_forgets_ids_only_with_forget_on_purge() {
    each_purge_stream(|what, forget, s| {
        let a = put_new(&s, "x.1", b"a");
        let b = put_new(&s, "y.1", b"b");
        assert_eq!(s.purge().unwrap(), 2, "{what}");
        check_after_purge(&s, b"a", a, forget, what);
        check_after_purge(&s, b"b", b, forget, what);
        // Whatever was appended after the purge is remembered.
        let c = put_new(&s, "x.1", b"c");
        assert_dup(&s, b"c", c);
    });
}

#[test]
fn compact_forgets_the_ids_below_its_sequence_only_with_forget_on_purge() {
    each_purge_stream(|what, forget, s| {
        let all: Vec<Appended> = (0..6).map(|i| put_new(&s, "x.1", &id(i))).collect();
        assert_eq!(s.compact(all[3].seq).unwrap(), 3, "{what}");
        for (i, a) in all.iter().enumerate() {
            if i < 3 {
                check_after_purge(&s, &id(i), *a, forget, what);
            } else {
                assert_dup(&s, &id(i), *a);
            }
        }
    });
}

#[test]
fn purge_filtered_forgets_only_the_purged_messages_ids_with_forget_on_purge() {
    each_purge_stream(|what, forget, s| {
        let x1 = put_new(&s, "x.1", b"x1");
        let y1 = put_new(&s, "y.1", b"y1");
        let x2 = put_new(&s, "x.2", b"x2");
        let x1b = put_new(&s, "x.1", b"x1b");
        let y2 = put_new(&s, "y.1", b"y2");
        // x.* keeping the newest of each subject: x1 goes, x2 and x1b stay.
        assert_eq!(s.purge_filtered("x.*", None, 1).unwrap(), 1, "{what}");
        check_after_purge(&s, b"x1", x1, forget, what);
        for (k, a) in [(&b"y1"[..], y1), (b"x2", x2), (b"x1b", x1b), (b"y2", y2)] {
            assert_dup(&s, k, a);
        }
        // y.1 below y2's sequence: y1 goes, y2 stays.
        assert_eq!(
            s.purge_filtered("y.1", Some(y2.seq), 0).unwrap(),
            1,
            "{what}"
        );
        check_after_purge(&s, b"y1", y1, forget, what);
        assert_dup(&s, b"y2", y2);
    });
}

#[test]
fn purged_ids_are_remembered_without_forget_on_purge_after_their_blocks_are_freed() {
    for forget in [false, true] {
        for storage in [Storage::Memory, Storage::File] {
            let what = format!("{storage:?} forget={forget}");
            let env = Env::new();
            let d = dedup(HOUR, 10_000).forget_on_purge(forget);
            let s = env.create(cfg("s", storage, Durability::None, d).block_size(4096));
            let all = fill(&env, &s, 400);
            assert_eq!(s.purge().unwrap(), 400);
            settle(&s);
            assert!(s.block_counts().0 < 3, "{what}");
            for (i, a) in all.iter().enumerate() {
                check_after_purge(&s, &id(i), *a, forget, &what);
            }
        }
    }
}

#[test]
fn an_erased_messages_id_is_forgotten() {
    each_stream(dedup(HOUR, 1000), |l, _, s| {
        let a = put_new(&s, "x", b"a");
        let b = put_new(&s, "x", b"b");
        s.erase(a.seq).unwrap();
        let a2 = put(&s, "x", b"a");
        assert!(
            !a2.duplicate,
            "{l}: an erased id is still remembered: {a2:?}"
        );
        assert_eq!(a2.seq, 3);
        assert_dup(&s, b"a", a2);
        assert_dup(&s, b"b", b);
    });
}

#[test]
fn an_erased_messages_id_is_forgotten_when_the_erase_frees_its_block() {
    let config = |c: StreamConfig| c.dedup(dedup(HOUR, 10_000)).block_size(4096);
    each_stream_with(FREEING, config, |l, env, s| {
        let all = fill(env, &s, 200);
        let blocks = s.block_counts().0;
        // Erase the oldest 60 messages: the first blocks are emptied (and freed).
        for a in &all[..60] {
            s.erase(a.seq).unwrap();
        }
        if s.config().storage == Storage::File {
            settle(&s);
        }
        assert!(s.block_counts().0 < blocks, "{l}: no block was freed");
        for (i, first) in all.iter().enumerate() {
            if i >= 60 {
                assert_dup(&s, &id(i), *first);
                continue;
            }
            let a = put(&s, "x", &id(i));
            assert!(
                !a.duplicate,
                "{l}: the erased message {}'s id is still a duplicate: {a:?}",
                first.seq
            );
        }
    });
}

#[test]
fn truncate_forgets_the_truncated_ids_and_a_reused_sequence_dedups_as_its_new_message() {
    each_stream(dedup(HOUR, 1000), |l, env, s| {
        let a = put_new(&s, "x", b"a");
        put_new(&s, "x", b"b");
        put_new(&s, "x", b"c");
        env.advance(SEC);
        assert_eq!(s.truncate(1).unwrap(), 2);
        // Sequence 2 again, with b's id: a new message.
        let b2 = put(&s, "y", b"b");
        assert_eq!((b2.seq, b2.ts, b2.duplicate), (2, T0 + SEC, false), "{l}");
        assert_eq!(s.load(2).unwrap().subject(), "y");
        // Sequence 3 again, with another id: c's id, which had 3, is forgotten.
        let z = put_new(&s, "y", b"z");
        assert_eq!(z.seq, 3);
        let c2 = put(&s, "y", b"c");
        assert_eq!((c2.seq, c2.duplicate), (4, false), "{l}");
        assert_dup(&s, b"b", b2);
        assert_dup(&s, b"z", z);
        assert_dup(&s, b"c", c2);
        assert_dup(&s, b"a", a);
        s.check_invariants().unwrap();
    });
}

/// `forget_on_purge` moves the window's floor past every sequence purged; a truncate then
/// hands lower sequences out again, and their ids must be remembered.
#[test]
fn an_id_appended_after_a_truncate_below_a_forget_on_purge_purge_is_remembered() {
    each_stream(dedup(HOUR, 1000).forget_on_purge(true), |l, _, s| {
        for i in 0..3 {
            put_new(&s, "x", &id(i));
        }
        s.purge().unwrap();
        s.truncate(1).unwrap();
        let n = put_new(&s, "x", b"new");
        assert_eq!(n.seq, 2);
        let again = put(&s, "x", b"new");
        assert!(
            again.duplicate,
            "{l}: the id of message {} (appended after truncate(1) below a purge) was not \
             remembered: stored again as {again:?}",
            n.seq
        );
        assert_eq!(s.state().messages, 1, "{l}");
    });
}

/// The count bound moves the window's floor up; a truncate below it hands those sequences out
/// again, and the newest `max_ids` ids must still be remembered.
#[test]
fn the_newest_ids_are_remembered_after_a_truncate_below_ids_the_window_dropped() {
    let max_ids = 10;
    each_stream(dedup(HOUR, max_ids), |l, _, s| {
        for i in 0..600 {
            put_new(&s, "x", &id(i));
        }
        s.truncate(100).unwrap();
        let mut newest = Vec::new();
        for i in 0..max_ids as usize {
            let k = format!("after-{i}").into_bytes();
            newest.push((put_new(&s, "x", &k), k));
        }
        for (a, k) in &newest {
            let b = put(&s, "x", k);
            assert!(
                b.duplicate && b.seq == a.seq,
                "{l}: {:?} (seq {}, one of the newest {max_ids} ids, appended after \
                 truncate(100) of 600 messages) is not remembered: {b:?}",
                String::from_utf8_lossy(k),
                a.seq
            );
        }
    });
}

/// The same, with the floor moved by time: ids that left the window, then a truncate into them.
#[test]
fn an_id_appended_after_a_truncate_below_ids_that_left_the_window_by_time_is_remembered() {
    each_stream(dedup(Duration::from_secs(10), 100_000), |l, env, s| {
        for i in 0..300 {
            put_new(&s, "x", &id(i));
        }
        env.advance(11 * SEC);
        put_new(&s, "x", b"late");
        s.truncate(5).unwrap();
        let n = put_new(&s, "x", b"new");
        assert_eq!(n.seq, 6);
        let again = put(&s, "x", b"new");
        assert!(
            again.duplicate,
            "{l}: the id of message 6 (appended after truncate(5)) was not remembered: \
             stored again as {again:?}"
        );
    });
}

/// A truncate leaves the truncated ids' entries in the table; sequences handed out again
/// must not crowd the ids in the window out of it.
#[test]
fn ids_stay_remembered_across_repeated_truncates_of_the_same_sequences() {
    each_stream_on(UNSYNCED, dedup(HOUR, 1000), |l, _, s| {
        put_new(&s, "x", b"base");
        for round in 0..6 {
            let ids: Vec<Vec<u8>> = (0..600)
                .map(|i| format!("r{round}-{i}").into_bytes())
                .collect();
            let firsts: Vec<Appended> = ids.iter().map(|k| put_new(&s, "x", k)).collect();
            let missed: Vec<u64> = ids
                .iter()
                .zip(&firsts)
                .filter(|(k, a)| {
                    let b = put(&s, "x", k);
                    !(b.duplicate && b.seq == a.seq)
                })
                .map(|(_, a)| a.seq)
                .collect();
            assert!(
                missed.is_empty(),
                "{l}: round {round}: {} of 600 ids in the window (max_ids 1000) not \
             remembered after {round} truncates, e.g. seqs {:?}",
                missed.len(),
                &missed[..missed.len().min(5)]
            );
            s.truncate(1).unwrap();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Restarts
// ---------------------------------------------------------------------------------------------

#[test]
fn ids_in_the_window_are_still_duplicates_after_a_restart() {
    on_each([Durability::Always, Durability::None], |durability| {
        let mut env = Env::new();
        let window = Duration::from_secs(60);
        let c = cfg("s", Storage::File, durability, dedup(window, 10_000)).block_size(4096);
        let mut s = env.create(c);
        let old = fill(&env, &s, 50);
        env.clock.set_ns(T0 + 30 * SEC);
        let new: Vec<Appended> = (0..50)
            .map(|i| {
                env.advance(MS);
                put_new(&s, "y", format!("new-{i}").as_bytes())
            })
            .collect();
        let plain = s.append("y", b"", b"no id").unwrap();
        // Removed messages in blocks that still hold live ones.
        for a in new.iter().step_by(7) {
            s.remove(a.seq).unwrap();
        }
        s = env.reopen("s");
        for (i, a) in new.iter().enumerate() {
            assert_dup(&s, format!("new-{i}").as_bytes(), *a);
        }
        for (i, a) in old.iter().enumerate() {
            assert_dup(&s, &id(i), *a);
        }
        // Past the old ids' window, reopened again: old ids are new, the others still not.
        env.clock.set_ns(T0 + 61 * SEC);
        s = env.reopen("s");
        for (i, a) in new.iter().enumerate() {
            assert_dup(&s, format!("new-{i}").as_bytes(), *a);
        }
        for i in 0..old.len() {
            put_new(&s, "x", &id(i));
        }
        assert_eq!(s.load(plain.seq).unwrap().msg_id(), None);
        // And past everything.
        env.clock.set_ns(T0 + 200 * SEC);
        s = env.reopen("s");
        for i in 0..new.len() {
            put_new(&s, "y", format!("new-{i}").as_bytes());
        }
        s.check_invariants().unwrap();
    });
}

/// A store that can crash, with a file stream "s" (`Always`, 4 KiB blocks) and `n` messages
/// appended 1 ms apart, the `i`th by `append(stream, i)`.
fn crash_db(n: usize, append: impl Fn(&Stream, usize) -> Appended) -> (Db, Vec<Appended>) {
    let clock = Arc::new(ManualClock::new(T0));
    let c = cfg("s", Storage::File, Durability::Always, dedup(HOUR, 10_000)).block_size(4096);
    let db = Db::create(common::store_options(Some(clock.clone())), c, false);
    let all = (0..n)
        .map(|i| {
            clock.advance_ns(MS);
            append(db.stream(), i)
        })
        .collect();
    (db, all)
}

#[test]
fn removed_ids_in_block_files_that_still_exist_are_duplicates_after_a_crash() {
    let (mut db, all) = crash_db(300, |s, i| {
        s.append_msg(&NewMessage::new("x", &[1u8; 100]).with_msg_id(&id(i)))
            .unwrap()
    });
    for a in &all[..100] {
        db.stream().remove(a.seq).unwrap();
    }
    assert!(db.stream().block_counts().1 > 0, "no retired block");
    db.crash(CrashKind::Process).unwrap();
    // The retired blocks are still there (their files too): the stream holds their records.
    let (_, retired) = db.stream().block_counts();
    assert!(retired > 0, "the retired blocks are gone after the crash");
    let forgotten: Vec<u64> = all
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            let b = put(db.stream(), "x", &id(*i));
            !(b.duplicate && b.seq == a.seq)
        })
        .map(|(_, a)| a.seq)
        .collect();
    assert!(
        forgotten.is_empty(),
        "after a crash, {} removed messages' ids are forgotten although the stream still \
         holds their {retired} retired block(s): seqs {}..={}",
        forgotten.len(),
        forgotten[0],
        forgotten[forgotten.len() - 1]
    );
}

#[test]
fn a_restart_keeps_the_window_exact_to_the_nanosecond() {
    let (mut env, s) = file_stream("s", dedup(Duration::from_secs(10), 1000));
    let a = put_new(&s, "x", b"a");
    env.clock.set_ns(T0 + 10 * SEC);
    let s = env.reopen("s");
    assert_dup(&s, b"a", a);
    env.clock.set_ns(T0 + 10 * SEC + 1);
    let s = env.reopen("s");
    put_new(&s, "x", b"a");
}

#[test]
fn ids_forgotten_by_a_purge_stay_forgotten_after_a_restart() {
    let (mut env, s) = file_stream("s", dedup(HOUR, 1000).forget_on_purge(true));
    let a = put_new(&s, "x", b"a");
    put_new(&s, "x", b"keep");
    s.compact(2).unwrap();
    check_after_purge(&s, b"a", a, true, "before restart");
    put_new(&s, "y.1", b"filtered");
    s.purge_filtered("y.*", None, 0).unwrap();
    s.purge().unwrap();
    let s = env.reopen("s");
    let again: Vec<(String, Appended)> = [&b"a"[..], b"keep", b"filtered"]
        .into_iter()
        .map(|k| (String::from_utf8_lossy(k).into_owned(), put(&s, "x", k)))
        .filter(|(_, b)| b.duplicate)
        .collect();
    assert!(
        again.is_empty(),
        "after a restart, ids forgotten by forget_on_purge purges before it are duplicates \
         again: {again:?}"
    );
}

#[test]
fn erased_and_truncated_ids_stay_forgotten_after_a_restart() {
    let (mut env, s) = file_stream("s", dedup(HOUR, 1000));
    let a = put_new(&s, "x", b"a");
    put_new(&s, "x", b"erased");
    put_new(&s, "x", b"truncated");
    s.erase(2).unwrap();
    s.truncate(2).unwrap();
    let s = env.reopen("s");
    assert_dup(&s, b"a", a);
    for k in [&b"erased"[..], b"truncated"] {
        let b = put(&s, "x", k);
        assert!(!b.duplicate, "{:?}: {b:?}", String::from_utf8_lossy(k));
    }
}

#[test]
fn acknowledged_ids_are_duplicates_after_a_power_loss() {
    let (mut db, all) = crash_db(200, |s, i| put_new(s, "x", &id(i)));
    for a in all.iter().step_by(3) {
        db.stream().remove(a.seq).unwrap();
    }
    db.crash(CrashKind::PowerLoss).unwrap();
    for (i, a) in all.iter().enumerate() {
        assert_dup(db.stream(), &id(i), *a);
    }
    db.crash(CrashKind::Process).unwrap();
    for (i, a) in all.iter().enumerate() {
        assert_dup(db.stream(), &id(i), *a);
    }
}

// ---------------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------------

#[test]
fn a_batch_with_an_id_in_the_window_is_refused_whole() {
    each_stream(dedup(HOUR, 1000), |l, _, s| {
        let mut w = s.watch(">", WatchFrom::New).unwrap();
        let a = put_new(&s, "x", b"a");
        let removed = put_new(&s, "x", b"removed");
        s.remove(removed.seq).unwrap();
        assert!(w.poll().unwrap().is_some());
        let st = s.state();
        let refused: [(Vec<NewMessage>, AppendError); 4] = [
            (
                vec![msg("x", b"x"), NewMessage::new("x", b""), msg("x", b"a")],
                AppendError::Duplicate {
                    index: 2,
                    seq: a.seq,
                },
            ),
            (
                vec![msg("x", b"removed"), msg("x", b"x")],
                AppendError::Duplicate {
                    index: 0,
                    seq: removed.seq,
                },
            ),
            (
                vec![msg("x", b"p"), msg("x", b"q"), msg("y", b"p")],
                AppendError::DuplicateInBatch { index: 2, first: 0 },
            ),
            (
                vec![
                    NewMessage::new("x", b""),
                    msg("x", b"q"),
                    msg("x", b"q"),
                    msg("x", b"a"),
                ],
                AppendError::DuplicateInBatch { index: 2, first: 1 },
            ),
        ];
        for (batch, want) in refused {
            let got = s.append_batch(&batch).unwrap_err();
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{l}");
            assert_eq!(s.state(), st, "{l}: a refused batch changed the stream");
            assert!(w.poll().unwrap().is_none(), "{l}");
        }
        // Nothing of the refused batches is remembered.
        let x = put_new(&s, "x", b"x");
        let p = put_new(&s, "x", b"p");
        // A batch of new ids is stored, and its ids are then duplicates.
        let b = s
            .append_batch(&[
                msg("x", b"b1"),
                NewMessage::new("x", b"no id"),
                msg("x", b"b2"),
            ])
            .unwrap();
        assert_eq!((b.first_seq, b.last_seq), (p.seq + 1, p.seq + 3), "{l}");
        let at = |seq| Appended {
            seq,
            ts: b.ts,
            duplicate: false,
        };
        assert_dup(&s, b"b1", at(b.first_seq));
        assert_dup(&s, b"b2", at(b.first_seq + 2));
        assert_eq!(s.load(b.first_seq + 1).unwrap().msg_id(), None);
        match s.append_batch(&[msg("x", b"new"), msg("x", b"b2")]) {
            Err(AppendError::Duplicate { index: 1, seq }) => assert_eq!(seq, b.first_seq + 2),
            other => panic!("{l}: {other:?}"),
        }
        assert_dup(&s, b"x", x);
        assert_dup(&s, b"p", p);
        put_new(&s, "x", b"new");
    });
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_appends_of_the_same_ids_store_each_id_once() {
    const THREADS: usize = 8;
    const IDS: usize = 500;
    each_stream(dedup(HOUR, 10_000), |l, _, s| {
        let start = Barrier::new(THREADS);
        let results: Vec<Vec<(usize, Appended)>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (s, start) = (s.clone(), &start);
                    sc.spawn(move || {
                        start.wait();
                        (0..IDS)
                            .map(|k| {
                                // Every thread in its own order.
                                let i = (k * 7 + t * 61) % IDS;
                                (i, put(&s, "x", &id(i)))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut by_id: BTreeMap<usize, Vec<Appended>> = BTreeMap::new();
        for (i, a) in results.into_iter().flatten() {
            by_id.entry(i).or_default().push(a);
        }
        assert_eq!(by_id.len(), IDS);
        for (i, v) in &by_id {
            assert_eq!(v.len(), THREADS);
            let stored = v.iter().filter(|a| !a.duplicate).count();
            assert_eq!(stored, 1, "{l}: id {i} stored {stored} times: {v:?}");
            assert!(
                v.iter().all(|a| (a.seq, a.ts) == (v[0].seq, v[0].ts)),
                "{l}: id {i}: {v:?}"
            );
            assert_eq!(s.load(v[0].seq).unwrap().msg_id(), Some(&id(*i)[..]), "{l}");
        }
        let st = s.state();
        assert_eq!((st.messages, st.last_seq), (IDS as u64, IDS as u64), "{l}");
        s.check_invariants().unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Replicas, snapshots, digests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_replica_stores_and_indexes_the_origins_ids() {
    on_each(variants(), |(storage, durability)| {
        let l = label(storage, durability);
        let env = Env::new();
        let d = dedup(HOUR, 1000);
        let o = env.create(cfg("origin", storage, durability, d));
        let r = env.create(cfg("replica", storage, durability, d));
        for i in 0..20 {
            env.advance(MS);
            if i % 4 == 3 {
                o.append("x", b"", b"no id").unwrap();
            } else {
                put_new(&o, "x", &id(i));
            }
        }
        o.remove(5).unwrap();
        let mut q = 0;
        while let Some(m) = o.load_next(">", q).unwrap() {
            q = m.seq + 1;
            let mut n = NewMessage::new(m.subject(), m.payload()).with_headers(m.headers());
            n.msg_id = m.msg_id();
            r.append_raw_msg(m.seq, m.ts, &n).unwrap();
            assert_eq!(r.load(m.seq).unwrap().msg_id(), m.msg_id(), "{l}");
        }
        assert_eq!(r.state_digest(), o.state_digest(), "{l}");
        env.advance(SEC);
        // A normal append of an id the replica applied is a duplicate of the origin's message.
        let mut q = 0;
        while let Some(m) = o.load_next(">", q).unwrap() {
            q = m.seq + 1;
            if let Some(k) = m.msg_id() {
                let a = put(&r, "x", k);
                assert_eq!((a.seq, a.ts, a.duplicate), (m.seq, m.ts, true), "{l}");
            }
        }
        assert_eq!(r.state_digest(), o.state_digest(), "{l}");
        // A raw append does not check: an id already on the replica is stored again.
        let last = r.state().last_seq;
        r.append_raw_msg(last + 1, T0 + 2 * SEC, &msg("x", &id(0)))
            .unwrap();
        assert_eq!(r.state().last_seq, last + 1, "{l}");
        assert_eq!(r.load(last + 1).unwrap().msg_id(), Some(&id(0)[..]));
        let a = put(&r, "x", &id(0));
        assert!(
            a.duplicate && (a.seq == 1 || a.seq == last + 1),
            "{l}: {a:?}"
        );
        // A raw message older than the window is not remembered.
        let old = r.state().last_seq + 1;
        r.append_raw_msg(old, T0 - 2 * HOUR.as_nanos() as i64, &msg("x", b"ancient"))
            .unwrap_or_else(|e| panic!("{l}: {e:?}"));
        let a = put(&r, "x", b"ancient");
        assert!(!a.duplicate, "{l}: {a:?}");
    });
}

#[test]
fn a_replicas_raw_ids_survive_its_restart() {
    let (mut env, r) = file_stream("r", dedup(HOUR, 1000));
    r.append_raw_msg(10, T0 - SEC, &msg("x", b"a")).unwrap();
    r.append_raw_msg(20, T0, &msg("x", b"b")).unwrap();
    let r = env.reopen("r");
    assert_dup(
        &r,
        b"a",
        Appended {
            seq: 10,
            ts: T0 - SEC,
            duplicate: false,
        },
    );
    assert_dup(
        &r,
        b"b",
        Appended {
            seq: 20,
            ts: T0,
            duplicate: false,
        },
    );
    assert_eq!(put_new(&r, "x", b"c").seq, 21);
}

#[test]
fn a_restored_stream_dedups_the_snapshots_ids() {
    on_each([Storage::File, Storage::Memory], |storage| {
        let clock = Arc::new(ManualClock::new(T0));
        let a = open_store(&MemVfs::new(), &clock);
        let o = a
            .create_stream(cfg("s", storage, Durability::None, dedup(HOUR, 1000)))
            .unwrap();
        let mut first = Vec::new();
        for i in 0..100 {
            clock.advance_ns(MS);
            if i % 10 == 9 {
                o.append("y", b"", b"no id").unwrap();
            } else {
                first.push((i, put_new(&o, "x", &id(i))));
            }
        }
        for (_, f) in first.iter().step_by(5) {
            o.remove(f.seq).unwrap();
        }
        let mut snap = Vec::new();
        o.snapshot(&mut snap, 1).unwrap();
        clock.advance_ns(SEC);
        let b = open_store(&MemVfs::new(), &clock);
        let (r, _) = b.restore(&mut snap.as_slice()).unwrap();
        assert_eq!(r.config().dedup, o.config().dedup);
        assert_eq!(r.state_digest(), o.state_digest(), "{storage:?}");
        for (k, (i, f)) in first.iter().enumerate() {
            if k % 5 == 0 {
                continue;
            }
            assert_eq!(r.load(f.seq).unwrap().msg_id(), Some(&id(*i)[..]));
            assert_dup(&r, &id(*i), *f);
        }
        assert_eq!(r.state().last_seq, 100);
        assert_eq!(put_new(&r, "x", b"fresh").seq, 101);
    });
}

#[test]
fn state_digest_differs_between_streams_differing_only_in_a_message_id() {
    let env = Env::new();
    let mk = |name: &str, k: Option<&[u8]>| {
        let s = env.create(cfg(
            name,
            Storage::Memory,
            Durability::None,
            dedup(HOUR, 100),
        ));
        s.append("x", b"", b"before").unwrap();
        let mut m = NewMessage::new("x", b"p");
        m.msg_id = k;
        s.append_msg(&m).unwrap();
        s.state_digest()
    };
    let a = mk("a", Some(b"id-a"));
    let a2 = mk("a2", Some(b"id-a"));
    let b = mk("b", Some(b"id-b"));
    let long = mk("long", Some(b"id-aa"));
    let none = mk("none", None);
    assert_eq!(a, a2);
    for (x, y) in [(a, b), (a, none), (b, none), (a, long), (long, none)] {
        assert_ne!(x, y);
    }
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// The window of the model tests.
const WINDOW_NS: i64 = 5 * SEC;
/// Ids the model tests draw from (few, so they repeat).
const POOL: u8 = 8;
const SUBJECTS: [&str; 3] = ["a", "b.x", "b.y"];
const FILTERS: [&str; 3] = ["a", "b.*", ">"];

fn pool_id(i: u8) -> Vec<u8> {
    format!("pool-{i}").into_bytes()
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        id: Option<u8>,
        subject: usize,
        len: usize,
    },
    Batch(Vec<(Option<u8>, usize)>),
    Remove(Pick),
    Advance(i64),
    /// Moves the clock to `delta` ns around the end of the window of an id (if that is later).
    ToEdge {
        id: u8,
        delta: i64,
    },
    Purge,
    Compact(Pick),
    PurgeFiltered(usize),
    /// A clean restart (file streams with big blocks; a checkpoint otherwise).
    Reopen,
    Checkpoint,
}

#[derive(Clone, Copy, Debug)]
struct Setup {
    memory: bool,
    forget: bool,
    small_blocks: bool,
    always: bool,
}

#[derive(Default)]
struct Model {
    /// Live messages: subject and id.
    live: BTreeMap<u64, (usize, Option<u8>)>,
    last_seq: u64,
    last_ts: i64,
    /// The newest stored message of every id: (seq, ts), removed or not.
    ids: HashMap<u8, (u64, i64)>,
}

impl Model {
    fn dup(&self, id: u8, now: i64) -> Option<(u64, i64)> {
        self.ids
            .get(&id)
            .copied()
            .filter(|&(_, ts)| ts >= now.saturating_sub(WINDOW_NS))
    }
    fn forget(&mut self, gone: impl Fn(u64) -> bool) {
        self.ids.retain(|_, (seq, _)| !gone(*seq));
    }
}

struct Harness {
    db: Db,
    clock: Arc<ManualClock>,
    setup: Setup,
    m: Model,
    trace: Vec<String>,
}

impl Harness {
    fn new(setup: Setup) -> Harness {
        let clock = Arc::new(ManualClock::new(T0));
        let d = Dedup::new(Duration::from_nanos(WINDOW_NS as u64), 100_000)
            .forget_on_purge(setup.forget);
        let c = StreamConfig::new("m")
            .durability(if setup.always {
                Durability::Always
            } else {
                Durability::None
            })
            .block_size(if setup.small_blocks { 4096 } else { 1 << 20 })
            .dedup(d);
        let db = Db::create(common::store_options(Some(clock.clone())), c, setup.memory);
        Harness {
            db,
            clock,
            setup,
            m: Model::default(),
            trace: vec![format!("{setup:?}")],
        }
    }

    fn s(&self) -> &Stream {
        self.db.stream()
    }

    fn fail(&self, what: String) -> TestCaseError {
        TestCaseError::fail(common::failure(&what, &self.trace))
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.clock.now_ns();
        self.trace.push(format!("t+{}ms {op:?}", (now - T0) / MS));
        match op {
            Op::Append { id, subject, len } => {
                let payload = vec![b'p'; *len];
                let k = id.map(pool_id);
                let mut nm = NewMessage::new(SUBJECTS[*subject], &payload);
                nm.msg_id = k.as_deref();
                let got = self
                    .s()
                    .append_msg(&nm)
                    .map_err(|e| self.fail(format!("append: {e:?}")))?;
                let want = match id.and_then(|i| self.m.dup(i, now)) {
                    Some((seq, ts)) => Appended {
                        seq,
                        ts,
                        duplicate: true,
                    },
                    None => {
                        let seq = self.m.last_seq + 1;
                        let ts = now.max(self.m.last_ts);
                        self.m.last_seq = seq;
                        self.m.last_ts = ts;
                        self.m.live.insert(seq, (*subject, *id));
                        if let Some(i) = id {
                            self.m.ids.insert(*i, (seq, ts));
                        }
                        Appended {
                            seq,
                            ts,
                            duplicate: false,
                        }
                    }
                };
                if got != want {
                    return Err(self.fail(format!("append {id:?}: got {got:?}, model {want:?}")));
                }
            }
            Op::Batch(msgs) => {
                let ids: Vec<Option<Vec<u8>>> = msgs.iter().map(|(i, _)| i.map(pool_id)).collect();
                let batch: Vec<NewMessage> = msgs
                    .iter()
                    .zip(&ids)
                    .map(|((_, sub), k)| {
                        let mut nm = NewMessage::new(SUBJECTS[*sub], b"batched");
                        nm.msg_id = k.as_deref();
                        nm
                    })
                    .collect();
                let got = self.s().append_batch(&batch);
                let mut seen: HashMap<u8, usize> = HashMap::new();
                let mut want_err = None;
                for (index, (i, _)) in msgs.iter().enumerate() {
                    let Some(i) = i else { continue };
                    if let Some(&first) = seen.get(i) {
                        want_err = Some(AppendError::DuplicateInBatch { index, first });
                        break;
                    }
                    seen.insert(*i, index);
                    if let Some((seq, _)) = self.m.dup(*i, now) {
                        want_err = Some(AppendError::Duplicate { index, seq });
                        break;
                    }
                }
                match (got, want_err) {
                    (Err(g), Some(w)) if format!("{g:?}") == format!("{w:?}") => {}
                    (Ok(b), None) => {
                        let ts = now.max(self.m.last_ts);
                        let first = self.m.last_seq + 1;
                        let last = first + msgs.len() as u64 - 1;
                        if (b.first_seq, b.last_seq, b.ts) != (first, last, ts) {
                            return Err(
                                self.fail(format!("batch: {b:?}, model {first}..={last} at {ts}"))
                            );
                        }
                        for (j, (i, sub)) in msgs.iter().enumerate() {
                            let seq = first + j as u64;
                            self.m.live.insert(seq, (*sub, *i));
                            if let Some(i) = i {
                                self.m.ids.insert(*i, (seq, ts));
                            }
                        }
                        self.m.last_seq = last;
                        self.m.last_ts = ts;
                    }
                    (g, w) => return Err(self.fail(format!("batch: got {g:?}, model {w:?}"))),
                }
            }
            Op::Remove(p) => {
                let q = common::pick_seq(&self.m.live, self.m.last_seq, *p);
                let r = self.s().remove(q);
                if self.m.live.remove(&q).is_some() {
                    r.map_err(|e| self.fail(format!("remove {q}: {e:?}")))?;
                } else if r.is_ok() {
                    return Err(self.fail(format!("remove {q} of no message succeeded")));
                }
            }
            Op::Advance(ns) => self.clock.advance_ns(*ns),
            Op::ToEdge { id, delta } => {
                if let Some(&(_, ts)) = self.m.ids.get(id) {
                    let t = ts + WINDOW_NS + delta;
                    if t > now {
                        self.clock.set_ns(t);
                    }
                }
            }
            Op::Purge => {
                let n = self
                    .s()
                    .purge()
                    .map_err(|e| self.fail(format!("purge: {e:?}")))?;
                if n != self.m.live.len() as u64 {
                    return Err(
                        self.fail(format!("purge removed {n}, model {}", self.m.live.len()))
                    );
                }
                self.m.live.clear();
                if self.setup.forget {
                    let last = self.m.last_seq;
                    self.m.forget(|q| q <= last);
                }
            }
            Op::Compact(p) => {
                let q = common::pick_seq(&self.m.live, self.m.last_seq, *p).max(1);
                let n = self
                    .s()
                    .compact(q)
                    .map_err(|e| self.fail(format!("compact {q}: {e:?}")))?;
                let want = common::compact_log(&mut self.m.live, &mut self.m.last_seq, q);
                if Some(n) != want {
                    return Err(self.fail(format!("compact {q} removed {n}, model {want:?}")));
                }
                if self.setup.forget {
                    self.m.forget(|s| s < q);
                }
            }
            Op::PurgeFiltered(f) => {
                let filter = FILTERS[*f];
                let gone: Vec<u64> = self
                    .m
                    .live
                    .iter()
                    .filter(|(_, (sub, _))| tidelog::subject::matches(filter, SUBJECTS[*sub]))
                    .map(|(q, _)| *q)
                    .collect();
                let n = self
                    .s()
                    .purge_filtered(filter, None, 0)
                    .map_err(|e| self.fail(format!("purge_filtered: {e:?}")))?;
                if n != gone.len() as u64 {
                    return Err(self.fail(format!(
                        "purge_filtered {filter} removed {n}, model {}",
                        gone.len()
                    )));
                }
                for q in &gone {
                    self.m.live.remove(q);
                }
                if self.setup.forget {
                    self.m.forget(|q| gone.contains(&q));
                }
            }
            Op::Reopen if !self.setup.memory && !self.setup.small_blocks => {
                self.db.restart().map_err(|e| self.fail(e))?;
                if self.setup.forget {
                    // The log does not say which removals were purges: with forget_on_purge
                    // a reopen remembers live messages' ids only.
                    let live = self.m.live.clone();
                    self.m.forget(|q| !live.contains_key(&q));
                }
            }
            Op::Reopen | Op::Checkpoint => {
                if !self.setup.memory {
                    self.s()
                        .checkpoint()
                        .map_err(|e| self.fail(format!("checkpoint: {e:?}")))?;
                }
            }
        }
        self.verify()
    }

    fn verify(&self) -> Result<(), TestCaseError> {
        let st = self.s().state();
        if (st.messages, st.last_seq) != (self.m.live.len() as u64, self.m.last_seq) {
            return Err(self.fail(format!(
                "state {st:?}, model {} messages, last {}",
                self.m.live.len(),
                self.m.last_seq
            )));
        }
        for (&q, &(sub, id)) in &self.m.live {
            let m = self
                .s()
                .load(q)
                .map_err(|e| self.fail(format!("load {q}: {e:?}")))?;
            let want = id.map(pool_id);
            if m.subject() != SUBJECTS[sub] || m.msg_id() != want.as_deref() {
                return Err(self.fail(format!(
                    "message {q}: {m:?} id {:?}, model id {id:?}",
                    m.msg_id()
                )));
            }
        }
        self.s()
            .check_invariants()
            .map_err(|e| self.fail(format!("invariants: {e}")))
    }
}

fn model_op() -> impl Strategy<Value = Op> {
    let id = || proptest::option::weighted(0.85, 0..POOL);
    prop_oneof![
        12 => (id(), 0..SUBJECTS.len(), prop_oneof![3 => 0usize..40, 1 => 100usize..600])
            .prop_map(|(id, subject, len)| Op::Append { id, subject, len }),
        2 => vec((id(), 0..SUBJECTS.len()), 1..4).prop_map(Op::Batch),
        4 => pick().prop_map(Op::Remove),
        3 => prop_oneof![
            3 => (1i64..2000).prop_map(|ms| ms * MS),
            1 => Just(WINDOW_NS),
            1 => Just(1i64),
        ]
        .prop_map(Op::Advance),
        3 => (0..POOL, -1i64..=1).prop_map(|(id, delta)| Op::ToEdge { id, delta }),
        1 => Just(Op::Purge),
        1 => pick().prop_map(Op::Compact),
        1 => (0..FILTERS.len()).prop_map(Op::PurgeFiltered),
        2 => Just(Op::Reopen),
        1 => Just(Op::Checkpoint),
    ]
}

fn run_model(setup: Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(setup);
    for op in ops {
        h.step(op)?;
    }
    common::print_trace(&h.trace);
    Ok(())
}

proptest! {
    #![proptest_config(common::model_config(256))]

    /// Every append's answer on a memory stream (small blocks: freed blocks keep their ids).
    #[test]
    fn appends_match_the_window_model_on_a_memory_stream(
        forget in any::<bool>(),
        small_blocks in any::<bool>(),
        ops in vec(model_op(), 1..60),
    ) {
        run_model(Setup { memory: true, forget, small_blocks, always: false }, &ops)?;
    }

    /// The same on a file stream with restarts (big blocks, so every removed message's block
    /// file still exists at a restart) or with small blocks and checkpoints (no restarts).
    #[test]
    fn appends_match_the_window_model_on_a_file_stream(
        small_blocks in any::<bool>(),
        always in any::<bool>(),
        ops in vec(model_op(), 1..60),
    ) {
        run_model(Setup { memory: false, forget: false, small_blocks, always }, &ops)?;
    }

    /// The same with `forget_on_purge`.
    #[test]
    fn appends_match_the_window_model_on_a_file_stream_forgetting_on_purge(
        small_blocks in any::<bool>(),
        always in any::<bool>(),
        ops in vec(model_op(), 1..60),
    ) {
        run_model(Setup { memory: false, forget: true, small_blocks, always }, &ops)?;
    }
}
