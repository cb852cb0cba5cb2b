//! Consumers: delivery order, acknowledgements, redelivery on a hand-moved clock, limits on
//! pending, and removed messages leaving pending state at once (field failure 5).

#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::Duration;

use tidelog::io::{MemVfs, Vfs};
use tidelog::{
    AckOutcome, AckPolicy, ConsumerConfig, ConsumerError, DeliverPolicy, ManualClock, Store,
    StoreOptions, Stream, StreamConfig,
};

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;

fn setup() -> (Store, Stream, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let opts = StoreOptions {
        clock: Some(clock.clone()),
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open_with_vfs("/c", Arc::new(MemVfs::new()), opts).unwrap();
    let s = store.create_stream(StreamConfig::new("s")).unwrap();
    (store, s, clock)
}

fn seqs(d: &[tidelog::Delivery]) -> Vec<u64> {
    d.iter().map(|x| x.message.seq).collect()
}

#[test]
fn bad_configs_are_typed_errors() {
    let (_store, s, _) = setup();
    let bad = [
        ConsumerConfig::new("a b"),
        ConsumerConfig::new("c").filters(["x.*", "x.y"]),
        ConsumerConfig::new("c").filters(["x..y"]),
        ConsumerConfig::new("c").ack_wait(Duration::ZERO),
        ConsumerConfig::new("c").max_ack_pending(0),
        ConsumerConfig::new("c").max_deliver(0),
        ConsumerConfig::new("c")
            .max_deliver(2)
            .backoff(vec![Duration::from_secs(1); 3]),
        ConsumerConfig::new("c").ack(AckPolicy::None).max_deliver(3),
        ConsumerConfig::new("c").deliver(DeliverPolicy::ByStartSeq(0)),
    ];
    common::assert_configs_refused(&s, bad);
    s.create_consumer(ConsumerConfig::new("c")).unwrap();
    assert!(matches!(
        s.create_consumer(ConsumerConfig::new("c")),
        Err(ConsumerError::AlreadyExists(_))
    ));
    s.delete_consumer("c").unwrap();
    assert!(matches!(s.consumer("c"), Err(ConsumerError::NotFound(_))));
}

#[test]
fn deliver_policies_pick_the_start() {
    let (_store, s, clock) = setup();
    for (i, subj) in ["a", "b", "a", "c", "b"].iter().enumerate() {
        clock.set_ns(T0 + i as i64 * SEC);
        s.append(subj, b"", b"").unwrap();
    }
    let cases = [
        (DeliverPolicy::All, vec![1, 2, 3, 4, 5]),
        (DeliverPolicy::Last, vec![5]),
        (DeliverPolicy::LastPerSubject, vec![3, 4, 5]),
        (DeliverPolicy::New, vec![]),
        (DeliverPolicy::ByStartSeq(4), vec![4, 5]),
        (DeliverPolicy::ByStartTime(T0 + 2 * SEC), vec![3, 4, 5]),
    ];
    for (i, (p, want)) in cases.into_iter().enumerate() {
        let c = s
            .create_consumer(ConsumerConfig::new(format!("c{i}")).deliver(p))
            .unwrap();
        assert_eq!(seqs(&c.fetch(100, 0).unwrap()), want, "{p:?}");
    }
    let f = s
        .create_consumer(ConsumerConfig::new("f").filters(["a", "c"]))
        .unwrap();
    assert_eq!(seqs(&f.fetch(100, 0).unwrap()), vec![1, 3, 4]);
    let n = s.append("a", b"", b"").unwrap().seq;
    assert_eq!(seqs(&f.fetch(100, 0).unwrap()), vec![n]);
}

#[test]
fn acks_redelivery_and_counters() {
    let (_store, s, clock) = setup();
    for _ in 0..5 {
        s.append("a", b"", b"").unwrap();
    }
    let c = s
        .create_consumer(ConsumerConfig::new("c").ack_wait(Duration::from_secs(10)))
        .unwrap();
    let d = c.fetch(3, 0).unwrap();
    assert_eq!(seqs(&d), vec![1, 2, 3]);
    assert_eq!(d[2].delivery_seq, 3);
    let st = c.state().unwrap();
    assert_eq!((st.num_pending, st.num_ack_pending), (2, 3));
    assert_eq!(st.delivered.stream_seq, 3);
    assert_eq!(c.ack(2).unwrap(), AckOutcome::Done);
    assert_eq!(c.ack(2).unwrap(), AckOutcome::NotPending);
    assert_eq!(c.ack(99).unwrap(), AckOutcome::NotPending);
    assert_eq!(c.state().unwrap().ack_floor.stream_seq, 0);
    c.ack(1).unwrap();
    let st = c.state().unwrap();
    assert_eq!(st.ack_floor.stream_seq, 2);
    assert_eq!(st.num_ack_pending, 1);
    // Nak'd now: redelivered first, before new messages.
    assert_eq!(c.nak(3, None).unwrap(), AckOutcome::Done);
    assert_eq!(c.state().unwrap().num_waiting_redelivery, 1);
    let d = c.fetch(2, 0).unwrap();
    assert_eq!(seqs(&d), vec![3, 4]);
    assert_eq!((d[0].delivery_count, d[0].delivery_seq), (2, 4));
    let st = c.state().unwrap();
    assert_eq!((st.num_redelivered, st.num_waiting_redelivery), (1, 0));
    // The ack wait runs out: waiting, then redelivered.
    clock.advance_ns(10 * SEC);
    let st = c.state().unwrap();
    assert_eq!(st.num_waiting_redelivery, 2);
    c.in_progress(4).unwrap();
    let d = c.fetch(10, 0).unwrap();
    assert_eq!(seqs(&d), vec![3, 4, 5]);
    assert_eq!(c.term(3).unwrap(), AckOutcome::Done);
    c.ack(4).unwrap();
    c.ack(5).unwrap();
    let st = c.state().unwrap();
    assert_eq!(st.num_ack_pending, 0);
    assert_eq!(st.ack_floor.stream_seq, 5);
    assert_eq!(st.ack_floor.consumer_seq, st.delivered.consumer_seq);
}

#[test]
fn max_ack_pending_and_max_deliver() {
    let (_store, s, clock) = setup();
    for _ in 0..10 {
        s.append("a", b"", b"").unwrap();
    }
    let c = s
        .create_consumer(
            ConsumerConfig::new("c")
                .max_ack_pending(3)
                .max_deliver(2)
                .ack_wait(Duration::from_secs(1)),
        )
        .unwrap();
    assert_eq!(seqs(&c.fetch(10, 0).unwrap()), vec![1, 2, 3]);
    assert!(c.fetch(10, 0).unwrap().is_empty());
    c.ack(2).unwrap();
    assert_eq!(seqs(&c.fetch(10, 0).unwrap()), vec![4]);
    clock.advance_ns(SEC);
    assert_eq!(seqs(&c.fetch(10, 0).unwrap()), vec![1, 3, 4]);
    clock.advance_ns(SEC);
    // Delivered twice each: exhausted, kept in the stream, no longer pending.
    let d = c.fetch(10, 0).unwrap();
    assert_eq!(seqs(&d), vec![5, 6, 7]);
    let st = c.state().unwrap();
    assert_eq!((st.num_max_delivered, st.num_ack_pending), (3, 3));
    assert!(s.load(1).is_ok());
    assert_eq!(
        st.ack_floor.stream_seq, 0,
        "the floor stays below unacked 1"
    );
    assert_eq!(c.ack(1).unwrap(), AckOutcome::Done);
    assert_eq!(c.state().unwrap().ack_floor.stream_seq, 2);
}

#[test]
fn ack_all_acknowledges_everything_up_to() {
    let (_store, s, _) = setup();
    for _ in 0..5 {
        s.append("a", b"", b"").unwrap();
    }
    let c = s
        .create_consumer(ConsumerConfig::new("c").ack(AckPolicy::All))
        .unwrap();
    c.fetch(5, 0).unwrap();
    assert_eq!(c.ack(3).unwrap(), AckOutcome::Done);
    let st = c.state().unwrap();
    assert_eq!((st.ack_floor.stream_seq, st.num_ack_pending), (3, 2));
    let n = s
        .create_consumer(ConsumerConfig::new("n").ack(AckPolicy::None))
        .unwrap();
    n.fetch(5, 0).unwrap();
    let st = n.state().unwrap();
    assert_eq!((st.ack_floor.stream_seq, st.num_ack_pending), (5, 0));
}

/// Field failure 5, step by step: 1,000 pending messages are NAKed, half of them are deleted
/// before their redelivery; the consumer redelivers the rest at once, every counter is exact,
/// nothing stalls (the deleted ones free their max_ack_pending slots for new messages).
#[test]
fn field_failure_5_deleted_pending_never_stalls() {
    let (_store, s, clock) = setup();
    for _ in 0..1500 {
        s.append("work", b"", b"").unwrap();
    }
    let c = s
        .create_consumer(
            ConsumerConfig::new("c")
                .max_ack_pending(1000)
                .ack_wait(Duration::from_secs(30)),
        )
        .unwrap();
    assert_eq!(c.fetch(2000, 0).unwrap().len(), 1000);
    for q in 1..=1000 {
        c.nak(q, Some(Duration::from_secs(5))).unwrap();
    }
    let st = c.state().unwrap();
    assert_eq!(
        (st.num_ack_pending, st.num_waiting_redelivery),
        (1000, 1000)
    );
    // Half of them go, by several kinds of removal, before their redelivery.
    for q in (2..=400).step_by(2) {
        s.remove(q).unwrap();
    }
    s.erase(402).unwrap();
    s.purge_filtered("work", Some(601), 0).unwrap();
    s.compact(700).unwrap();
    let gone = 1000 - (1..=1000).filter(|&q| s.load(q).is_ok()).count() as u64;
    assert!(gone >= 500, "{gone} removed");
    let st = c.state().unwrap();
    assert_eq!(st.num_ack_pending, 1000 - gone);
    assert_eq!(st.num_waiting_redelivery, 1000 - gone);
    assert_eq!(st.ack_floor.stream_seq, 699);
    // The freed slots take new messages at once; the rest are redelivered when due.
    let fresh = c.fetch(2000, 0).unwrap();
    assert_eq!(
        fresh.len() as u64,
        gone.min(500),
        "all 500 new ones fit the freed slots"
    );
    assert!(fresh
        .iter()
        .all(|d| d.delivery_count == 1 && d.message.seq > 1000));
    clock.advance_ns(5 * SEC);
    let again = c.fetch(2000, 0).unwrap();
    assert_eq!(again.len() as u64, 1000 - gone);
    assert!(again
        .iter()
        .all(|d| d.delivery_count == 2 && s.load(d.message.seq).is_ok()));
    for d in fresh.iter().chain(&again) {
        assert_eq!(c.ack(d.message.seq).unwrap(), AckOutcome::Done);
    }
    let st = c.state().unwrap();
    assert_eq!(
        (
            st.num_ack_pending,
            st.num_waiting_redelivery,
            st.num_redelivered
        ),
        (0, 0, 0)
    );
    assert_eq!(st.ack_floor.stream_seq, st.delivered.stream_seq);
    assert_eq!(st.num_pending, 500 - fresh.len() as u64);
}

#[test]
fn deleted_consumer_handles_say_so() {
    let (_store, s, _) = setup();
    let c = s.create_consumer(ConsumerConfig::new("c")).unwrap();
    s.delete_consumer("c").unwrap();
    assert!(matches!(c.fetch(1, 0), Err(ConsumerError::Deleted(_))));
    assert!(matches!(c.ack(1), Err(ConsumerError::Deleted(_))));
}

#[test]
fn concurrent_acks_are_counted_once() {
    let (_store, s, _) = setup();
    for _ in 0..2000 {
        s.append("a", b"", b"").unwrap();
    }
    let c = s
        .create_consumer(ConsumerConfig::new("c").max_ack_pending(2000))
        .unwrap();
    assert_eq!(c.fetch(2000, 0).unwrap().len(), 2000);
    let done: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                sc.spawn(move || {
                    (1..=2000u64)
                        .filter(|&q| c.ack(q).unwrap() == AckOutcome::Done)
                        .count()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(done, 2000);
    let st = c.state().unwrap();
    assert_eq!((st.num_ack_pending, st.ack_floor.stream_seq), (0, 2000));
}

/// A store on an in-memory file system that survives restarts and power loss.
struct Disk {
    mem: MemVfs,
    clock: Arc<ManualClock>,
}

impl Disk {
    fn new() -> Disk {
        Disk {
            mem: MemVfs::new(),
            clock: Arc::new(ManualClock::new(T0)),
        }
    }
    fn open(&self) -> Store {
        let opts = StoreOptions {
            clock: Some(self.clock.clone()),
            manual_maintenance: true,
            ..Default::default()
        };
        Store::open_with_vfs("/p", Arc::new(self.mem.clone()), opts).unwrap()
    }
}

#[test]
fn consumers_survive_restarts_with_their_state() {
    let disk = Disk::new();
    let store = disk.open();
    let s = store.create_stream(StreamConfig::new("s")).unwrap();
    for _ in 0..10 {
        s.append("a", b"", b"").unwrap();
    }
    let cfg = ConsumerConfig::new("c")
        .filters(["a"])
        .ack_wait(Duration::from_secs(5));
    let c = s.create_consumer(cfg.clone()).unwrap();
    c.fetch(6, 0).unwrap();
    for q in [1, 2, 4] {
        c.ack(q).unwrap();
    }
    c.nak(5, None).unwrap();
    let before = c.state().unwrap();
    store.close().unwrap();
    drop(store);
    let store = disk.open();
    let s = store.stream("s").unwrap();
    assert!(s.damaged_consumers().is_empty());
    let c = s.consumer("c").unwrap();
    assert_eq!(c.config(), &cfg);
    assert_eq!(c.state().unwrap(), before);
    // The nak'd message comes first, then the rest continue where they were.
    let d = c.fetch(10, 0).unwrap();
    assert_eq!(seqs(&d)[..2], [5, 7]);
    assert_eq!(d[0].delivery_count, 2);
    s.delete_consumer("c").unwrap();
    store.close().unwrap();
    drop(store);
    let store = disk.open();
    assert!(store.stream("s").unwrap().consumer_names().is_empty());
}

/// After a power loss a consumer may deliver again what it delivered or had acknowledged
/// since its last save, but its ack floor never passes a message that was not acknowledged.
#[test]
fn a_crash_may_redeliver_but_never_passes_an_unacked_message() {
    let mut disk = Disk::new();
    let store = disk.open();
    let s = store.create_stream(StreamConfig::new("s")).unwrap();
    for _ in 0..10 {
        s.append("a", b"", b"").unwrap();
    }
    let c = s.create_consumer(ConsumerConfig::new("c")).unwrap();
    c.fetch(4, 0).unwrap();
    c.ack(1).unwrap();
    c.ack(2).unwrap();
    // Saved at close (the maintenance thread also saves a changed consumer every second).
    store.close().unwrap();
    drop(store);
    let store = disk.open();
    let s = store.stream("s").unwrap();
    let c = s.consumer("c").unwrap();
    // After the last save: acks of 3 and delivery of 5.. are lost with the power.
    c.ack(3).unwrap();
    c.fetch(3, 0).unwrap();
    disk.mem = disk.mem.after_crash(tidelog::io::CrashKind::PowerLoss);
    drop(store);
    let store = disk.open();
    let s = store.stream("s").unwrap();
    let c = s.consumer("c").unwrap();
    let st = c.state().unwrap();
    assert_eq!(
        st.ack_floor.stream_seq, 2,
        "3 and 4 were not acknowledged when saved"
    );
    assert_eq!(st.num_ack_pending, 2);
    let d = c.fetch(10, 0).unwrap();
    assert_eq!(seqs(&d), vec![5, 6, 7, 8, 9, 10]);
}

fn stream_with(store: &Store, name: &str, r: tidelog::Retention) -> Stream {
    store
        .create_stream(StreamConfig::new(name).retention(r))
        .unwrap()
}

#[test]
fn interest_retention_removes_once_every_interested_consumer_acked() {
    let (store, _, _) = setup();
    let s = stream_with(&store, "i", tidelog::Retention::Interest);
    // No consumer yet: nothing is kept.
    s.append("a", b"", b"").unwrap();
    assert_eq!(s.state().messages, 0);
    let a = s
        .create_consumer(ConsumerConfig::new("a").filters(["x.>"]))
        .unwrap();
    let b = s.create_consumer(ConsumerConfig::new("b")).unwrap();
    let q = s.append("x.1", b"", b"").unwrap().seq;
    let only_b = s.append("y.1", b"", b"").unwrap().seq;
    a.fetch(10, 0).unwrap();
    b.fetch(10, 0).unwrap();
    a.ack(q).unwrap();
    assert!(s.load(q).is_ok(), "b has not acked it");
    b.ack(q).unwrap();
    assert!(s.load(q).is_err());
    b.ack(only_b).unwrap();
    assert_eq!(s.state().messages, 0);
}

#[test]
fn work_queue_removes_on_ack_and_rejects_overlapping_consumers() {
    let (store, _, _) = setup();
    let s = stream_with(&store, "w", tidelog::Retention::WorkQueue);
    let c = s
        .create_consumer(ConsumerConfig::new("c").filters(["jobs.*"]))
        .unwrap();
    assert!(matches!(
        s.create_consumer(ConsumerConfig::new("d").filters(["jobs.eu"])),
        Err(ConsumerError::Config(_))
    ));
    s.create_consumer(ConsumerConfig::new("e").filters(["other"]))
        .unwrap();
    for _ in 0..3 {
        s.append("jobs.eu", b"", b"").unwrap();
    }
    let d = c.fetch(10, 0).unwrap();
    c.ack(d[1].message.seq).unwrap();
    assert_eq!(s.state().messages, 2);
    c.term(d[0].message.seq).unwrap();
    assert_eq!(s.state().messages, 1);
}

/// Field failure 2, step by step: on an interest stream a message NAKed until max_deliver (1)
/// without an ack stays while the consumer that exhausted it exists. It is not ack-pending and
/// stays readable; a short-lived second consumer created and deleted (a "view") does not remove
/// it, nor do reads; deleting the consumer that exhausted it does.
#[test]
fn field_failure_2_max_delivered_kept_under_interest() {
    let (store, _, clock) = setup();
    let s = stream_with(&store, "kv", tidelog::Retention::Interest);
    let worker = s
        .create_consumer(
            ConsumerConfig::new("worker")
                .max_deliver(1)
                .ack_wait(Duration::from_secs(1)),
        )
        .unwrap();
    let q = s.append("orders.1", b"", b"poison").unwrap().seq;
    assert_eq!(seqs(&worker.fetch(1, 0).unwrap()), vec![q]);
    worker.nak(q, None).unwrap();
    clock.advance_ns(2 * SEC);
    assert!(
        worker.fetch(1, 0).unwrap().is_empty(),
        "max_deliver 1 reached"
    );
    let st = worker.state().unwrap();
    assert_eq!((st.num_ack_pending, st.num_max_delivered), (0, 1));
    assert_eq!(s.load(q).unwrap().payload(), b"poison");
    let view = s
        .create_consumer(ConsumerConfig::new("view").ack(AckPolicy::None))
        .unwrap();
    assert_eq!(seqs(&view.fetch(10, 0).unwrap()), vec![q]);
    s.delete_consumer("view").unwrap();
    assert!(s.load(q).is_ok(), "deleting another consumer removed it");
    clock.advance_ns(3600 * SEC);
    s.load_next(">", 1).unwrap();
    assert!(s.load(q).is_ok());
    s.delete_consumer("worker").unwrap();
    assert!(s.load(q).is_err(), "nothing holds it any more");
}

#[test]
fn ack_of_a_removed_max_delivered_message_is_not_pending() {
    let (_store, s, clock) = setup();
    let c = s
        .create_consumer(
            ConsumerConfig::new("c")
                .ack_wait(Duration::from_secs(1))
                .max_deliver(1),
        )
        .unwrap();
    s.append("a", b"", b"").unwrap();
    s.append("a", b"", b"").unwrap();
    assert_eq!(seqs(&c.fetch(1, 0).unwrap()), vec![1]);
    clock.advance_ns(SEC);
    assert_eq!(seqs(&c.fetch(1, 0).unwrap()), vec![2]);
    s.purge().unwrap();
    assert_eq!(c.ack(1).unwrap(), AckOutcome::NotPending);
}

#[test]
fn a_damaged_message_is_passed_over_and_the_rest_delivered() {
    let mem = MemVfs::new();
    let opts = || StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open_with_vfs("/c", Arc::new(mem.clone()), opts()).unwrap();
    let s = store.create_stream(StreamConfig::new("s")).unwrap();
    for i in 1..=5u8 {
        s.append("a", b"", &[i; 64]).unwrap();
    }
    store.close().unwrap();
    drop((s, store));
    // Flip a payload byte of message 3 (its payload is the only run of 64 threes).
    let dir = std::path::Path::new("/c/streams/s");
    let blk = mem
        .list(dir)
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".blk"))
        .unwrap();
    let path = dir.join(blk);
    let bytes = tidelog::io::read_file(&mem, &path).unwrap();
    let at = bytes.windows(64).position(|w| w == [3u8; 64]).unwrap();
    mem.corrupt(&path, at + 10, 0xff).unwrap();

    let store = Store::open_with_vfs("/c", Arc::new(mem.clone()), opts()).unwrap();
    let s = store.stream("s").unwrap();
    assert!(s.load(3).is_err());
    let c = s.create_consumer(ConsumerConfig::new("c")).unwrap();
    assert_eq!(seqs(&c.fetch(10, 0).unwrap()), vec![1, 2, 4, 5]);
    assert_eq!(c.fetch(10, 0).unwrap().len(), 0, "nothing stalls on it");
}

#[test]
fn a_damaged_consumer_file_releases_nothing_at_open() {
    let mem = MemVfs::new();
    let opts = || StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open_with_vfs("/c", Arc::new(mem.clone()), opts()).unwrap();
    let s = store
        .create_stream(StreamConfig::new("s").retention(tidelog::Retention::Interest))
        .unwrap();
    s.create_consumer(ConsumerConfig::new("c")).unwrap();
    for _ in 0..3 {
        s.append("a", b"", b"x").unwrap();
    }
    store.close().unwrap();
    drop((s, store));
    mem.corrupt(std::path::Path::new("/c/streams/s/consumer.c"), 20, 0xff)
        .unwrap();
    let store = Store::open_with_vfs("/c", Arc::new(mem.clone()), opts()).unwrap();
    let s = store.stream("s").unwrap();
    assert_eq!(s.damaged_consumers().len(), 1);
    assert_eq!(
        s.state().messages,
        3,
        "kept: the unreadable consumer may need them"
    );
    // Nor on appends and acks while its interest is unknown.
    s.append("b", b"", b"y").unwrap();
    assert_eq!(s.state().messages, 4);
    // Deleting it (by name) removes its file and lets retention go on.
    s.delete_consumer("c").unwrap();
    assert!(s.damaged_consumers().is_empty());
    assert_eq!(s.state().messages, 0);
    assert!(matches!(
        s.delete_consumer("c"),
        Err(ConsumerError::NotFound(_))
    ));
}

/// Descriptors of this process open on files under `dir`.
fn fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.starts_with(dir))
        .count()
}

/// Handles kept past a close change nothing: a consumer's acks, its deletion and new
/// consumers or watchers are refused, so nothing can write into the store once reopened. And
/// a stream with consumers is freed, files and all, once the host's handles go (the stream
/// used to keep its consumers and they their stream).
#[test]
fn stale_handles_after_close_refuse_and_release_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().canonicalize().unwrap();
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let s = store.create_stream(StreamConfig::new("s")).unwrap();
    let c = s.create_consumer(ConsumerConfig::new("c")).unwrap();
    s.append("a", b"", b"1").unwrap();
    assert_eq!(c.fetch(10, 0).unwrap().len(), 1);
    store.close().unwrap();
    assert!(matches!(c.ack(1), Err(ConsumerError::Closed)));
    assert!(matches!(c.fetch(1, 0), Err(ConsumerError::Closed)));
    assert!(matches!(s.delete_consumer("c"), Err(ConsumerError::Closed)));
    assert!(matches!(s.consumer("c"), Err(ConsumerError::Closed)));
    assert!(matches!(
        s.watch(">", tidelog::WatchFrom::New),
        Err(tidelog::QueryError::Closed)
    ));
    drop((c, s, store));
    assert_eq!(fds_under(&path), 0, "files of a closed stream stay open");
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let s = store.stream("s").unwrap();
    let c = s.consumer("c").unwrap();
    assert_eq!(
        c.state().unwrap().num_ack_pending,
        1,
        "the refused ack changed nothing"
    );
}
