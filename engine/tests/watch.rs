//! The change feed: order, filtering, waiting, removal and close, on file and memory streams.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tidelog::io::MemVfs;
use tidelog::{
    Durability, QueryError, Storage, Store, StoreOptions, Stream, StreamConfig, WatchFrom,
};

fn store() -> Store {
    let opts = StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    Store::open_with_vfs("/w", Arc::new(MemVfs::new()), opts).unwrap()
}

/// A file stream, a memory stream, and a durable file stream (whose single appends go through
/// group commit, a separate path that must wake watchers too).
fn streams(store: &Store) -> Vec<Stream> {
    [
        (Storage::File, Durability::None),
        (Storage::Memory, Durability::None),
        (Storage::File, Durability::Always),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (storage, durability))| {
        let cfg = StreamConfig::new(format!("s{i}"))
            .storage(storage)
            .durability(durability);
        store.create_stream(cfg).unwrap()
    })
    .collect()
}

fn seqs(w: &mut tidelog::Watcher) -> Vec<u64> {
    let mut v = Vec::new();
    while let Some(m) = w.poll().unwrap() {
        v.push(m.seq);
    }
    v
}

#[test]
fn yields_matching_messages_in_order_then_new_ones() {
    let store = store();
    for s in streams(&store) {
        for i in 0..10u64 {
            let subject = if i % 3 == 0 { "kv.a" } else { "other.b" };
            s.append(subject, b"", &i.to_le_bytes()).unwrap();
        }
        let mut w = s.watch("kv.*", WatchFrom::Seq(1)).unwrap();
        assert_eq!(seqs(&mut w), vec![1, 4, 7, 10]);
        assert!(w.poll().unwrap().is_none());
        let a = s.append("kv.b", b"", b"x").unwrap();
        s.append("other.c", b"", b"y").unwrap();
        assert_eq!(seqs(&mut w), vec![a.seq]);
        let mut from_new = s.watch(">", WatchFrom::New).unwrap();
        assert!(from_new.poll().unwrap().is_none());
        let b = s.append("z", b"", b"z").unwrap();
        assert_eq!(seqs(&mut from_new), vec![b.seq]);
    }
}

#[test]
fn removed_messages_are_skipped() {
    let store = store();
    for s in streams(&store) {
        for _ in 0..5 {
            s.append("a", b"", b"v").unwrap();
        }
        let mut w = s.watch("a", WatchFrom::Seq(0)).unwrap();
        assert_eq!(w.poll().unwrap().unwrap().seq, 1);
        s.remove(2).unwrap();
        s.purge_filtered("a", Some(4), 0).unwrap();
        assert_eq!(seqs(&mut w), vec![4, 5]);
    }
}

#[test]
fn last_per_subject_start_then_updates() {
    let store = store();
    for s in streams(&store) {
        s.append("kv.x", b"", b"1").unwrap();
        s.append("kv.y", b"", b"1").unwrap();
        let x2 = s.append("kv.x", b"", b"2").unwrap();
        s.append("other", b"", b"-").unwrap();
        let y2 = s.append("kv.y", b"", b"2").unwrap();
        let mut w = s.watch("kv.>", WatchFrom::LastPerSubject).unwrap();
        assert_eq!(seqs(&mut w), vec![x2.seq, y2.seq]);
        let x3 = s.append("kv.x", b"", b"3").unwrap();
        let m = w.poll().unwrap().unwrap();
        assert_eq!((m.seq, m.payload()), (x3.seq, &b"3"[..]));
    }
}

#[test]
fn waits_for_an_append_from_another_thread() {
    let store = store();
    for s in streams(&store) {
        let mut w = s.watch("lock.key", WatchFrom::New).unwrap();
        let writer = s.clone();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            writer.append("noise", b"", b"n").unwrap();
            writer.append("lock.key", b"", b"free").unwrap().seq
        });
        let started = Instant::now();
        let m = w.next_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(m.seq, t.join().unwrap());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn times_out_and_reports_close() {
    let store = store();
    let s = streams(&store).remove(0);
    let mut w = s.watch(">", WatchFrom::New).unwrap();
    let started = Instant::now();
    assert!(w.next_timeout(Duration::from_millis(30)).unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(30));
    let closer = thread::spawn({
        let store = store.clone();
        move || {
            thread::sleep(Duration::from_millis(30));
            store.close().unwrap();
        }
    });
    let r = w.next_timeout(Duration::from_secs(10));
    closer.join().unwrap();
    assert!(matches!(r, Err(QueryError::Closed)), "{r:?}");
}

#[test]
fn invalid_filter_is_a_typed_error() {
    let store = store();
    let s = streams(&store).remove(0);
    assert!(matches!(
        s.watch("a.>.b", WatchFrom::New),
        Err(QueryError::InvalidFilter(_))
    ));
}

/// Whether `fd` is readable now (poll with no wait).
fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLIN != 0
}

/// The pollable descriptor: readable at first, unreadable once `poll` has drained the feed,
/// readable again after an append from any path (single, batch, group commit) and at close.
#[test]
fn descriptor_is_readable_exactly_when_the_feed_may_have_news() {
    let store = store();
    for s in streams(&store) {
        let mut w = s.watch(">", WatchFrom::Seq(1)).unwrap();
        assert!(readable(w.fd().unwrap()), "starts readable");
        assert!(w.poll().unwrap().is_none());
        assert!(!readable(w.fd().unwrap()), "drained by an empty poll");
        s.append("a", b"", b"1").unwrap();
        assert!(readable(w.fd().unwrap()), "an append signals");
        s.append_batch(&[tidelog::NewMessage::new("b", b"2")])
            .unwrap();
        assert_eq!(seqs(&mut w), vec![1, 2]);
        assert!(!readable(w.fd().unwrap()));
        // Another watcher's descriptor is independent, and dropping it unregisters it.
        let mut other = s.watch("a", WatchFrom::New).unwrap();
        let _ = other.fd().unwrap();
        drop(other);
        s.append("a", b"", b"3").unwrap();
        assert!(readable(w.fd().unwrap()));
        assert_eq!(seqs(&mut w), vec![3]);
    }
    let s = store.stream("s0").unwrap();
    let mut w = s.watch(">", WatchFrom::New).unwrap();
    let _ = w.fd().unwrap();
    assert!(w.poll().unwrap().is_none());
    assert!(!readable(w.fd().unwrap()));
    store.close().unwrap();
    assert!(readable(w.fd().unwrap()), "close signals");
    assert!(matches!(w.poll(), Err(QueryError::Closed)));
}
