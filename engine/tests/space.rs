//! Space: the store's byte budget, a full disk, and reclamation.
//!
//! Field failure 4 (`field_failure_4_unbounded_stream_hits_budget_safely`): a stream created
//! with no limits at all, fed until the store's budget is reached, must answer with typed
//! errors (never a crash, never corruption), reopen intact, and write again once consuming
//! and deleting free space.

use std::sync::Arc;
use std::time::Duration;

use tidelog::io::{FaultPlan, FaultyVfs, MemVfs, Vfs};
use tidelog::{
    AckPolicy, AppendError, BoundBy, ConsumerConfig, Discard, Durability, Retention, Store,
    StoreOptions, StreamConfig,
};

const DIR: &str = "/db";

fn opts(max_bytes: u64, reserve: u64) -> StoreOptions {
    StoreOptions {
        manual_maintenance: true,
        ..StoreOptions::default()
    }
    .budget_bytes(max_bytes, reserve)
}

/// Appends 1 KiB messages until one fails; returns the acknowledged sequences and the error.
fn fill(s: &tidelog::Stream, tag: u8) -> (Vec<u64>, AppendError) {
    let mut acked = Vec::new();
    let payload = vec![tag; 1024];
    loop {
        match s.append("orders.new", b"", &payload) {
            Ok(a) => acked.push(a.seq),
            Err(e) => return (acked, e),
        }
        assert!(acked.len() < 1_000_000, "the budget never stopped appends");
    }
}

#[test]
fn field_failure_4_unbounded_stream_hits_budget_safely() {
    let vfs = Arc::new(MemVfs::new());
    let budget = 8 << 20;
    let reserve = 1 << 20;
    let open =
        || Store::open_with_vfs(DIR, vfs.clone() as Arc<dyn Vfs>, opts(budget, reserve)).unwrap();
    let store = open();
    // As a careless user would: no limits, limits retention, an explicit-ack consumer that
    // keeps acknowledging, and a producer that never looks at the store's size.
    let cfg = StreamConfig::new("orders").block_size(256 << 10);
    assert_eq!(cfg.limits, Default::default());
    let s = store.create_stream(cfg.discard(Discard::New)).unwrap();
    let st = s.state();
    assert_eq!(st.bound_by, BoundBy::Store, "the store's budget bounds it");
    assert_eq!(st.max_bytes, budget - reserve);
    let c = s
        .create_consumer(ConsumerConfig::new("worker").ack(AckPolicy::Explicit))
        .unwrap();
    let (acked, err) = fill(&s, 1);
    assert!(
        matches!(err, AppendError::StorageFull { .. }),
        "a typed error, got {err:?}"
    );
    assert!(err.is_storage_full());
    assert!(store.budget().used <= budget, "{:?}", store.budget());
    // Refused appends change nothing; reads, consumers and the rest keep working.
    let before = s.state();
    for _ in 0..10 {
        assert!(s
            .append("orders.new", b"", &[0; 1024])
            .unwrap_err()
            .is_storage_full());
    }
    assert_eq!(s.state(), before);
    let got = c.fetch(100, usize::MAX).unwrap();
    for d in &got {
        c.ack(d.message.seq).unwrap();
    }
    s.check_invariants().unwrap();
    drop((c, s));
    store.close().unwrap();
    drop(store);

    // Reopen: every acknowledged message is there, intact.
    let store = open();
    let s = store.stream("orders").unwrap();
    for &seq in &acked {
        assert_eq!(s.load(seq).unwrap().payload(), &[1; 1024][..]);
    }
    assert_eq!(s.state().messages, acked.len() as u64);
    assert!(s
        .append("orders.new", b"", &[0; 1024])
        .unwrap_err()
        .is_storage_full());
    // Consuming and deleting frees space: the oldest half goes, and appends resume.
    let half = acked[acked.len() / 2];
    s.compact(half).unwrap();
    s.reclaim().unwrap();
    let (more, err) = fill(&s, 2);
    assert!(
        more.len() >= acked.len() / 4,
        "only {} appends resumed",
        more.len()
    );
    assert!(err.is_storage_full());
    assert!(more[0] > *acked.last().unwrap());
    s.check_invariants().unwrap();
    store.close().unwrap();
}

#[test]
fn discard_old_makes_room_within_the_append() {
    let vfs = Arc::new(MemVfs::new());
    let store =
        Store::open_with_vfs(DIR, vfs.clone() as Arc<dyn Vfs>, opts(4 << 20, 1 << 20)).unwrap();
    let s = store
        .create_stream(StreamConfig::new("events").block_size(64 << 10))
        .unwrap();
    let payload = [7u8; 1000];
    let mut last = 0;
    for _ in 0..20_000 {
        last = s.append("ev", b"", &payload).unwrap().seq;
        let b = store.budget();
        assert!(
            b.used - b.retiring <= b.append_limit() + (64 << 10),
            "{b:?} after {last}"
        );
    }
    let st = s.state();
    assert!(st.first_seq > 1, "the oldest messages made room");
    assert_eq!(st.last_seq, last);
    assert!(st.messages > 1000, "{st:?}");
    s.check_invariants().unwrap();
    s.reclaim().unwrap();
    assert!(store.budget().used <= 4 << 20, "{:?}", store.budget());
}

#[test]
fn other_streams_share_the_budget() {
    let vfs = Arc::new(MemVfs::new());
    let store =
        Store::open_with_vfs(DIR, vfs.clone() as Arc<dyn Vfs>, opts(4 << 20, 1 << 20)).unwrap();
    let a = store
        .create_stream(StreamConfig::new("a").discard(Discard::New))
        .unwrap();
    let b = store
        .create_stream(StreamConfig::new("b").discard(Discard::New))
        .unwrap();
    let (acked, _) = fill(&a, 1);
    assert!(!acked.is_empty());
    assert!(b
        .append("x", b"", &[0; 1024])
        .unwrap_err()
        .is_storage_full());
    // A memory stream counts too: the budget is the store's, wherever its bytes are.
    let m = store
        .create_stream(
            StreamConfig::new("m")
                .storage(tidelog::Storage::Memory)
                .discard(Discard::New),
        )
        .unwrap();
    assert!(m
        .append("x", b"", &[0; 1024])
        .unwrap_err()
        .is_storage_full());
    store.delete_stream("a").unwrap();
    b.append("x", b"", &[0; 1024]).unwrap();
    m.append("x", b"", &[0; 1024]).unwrap();
}

#[test]
fn enospc_heals_without_reopen() {
    for durability in [
        Durability::Always,
        Durability::Interval(Duration::from_millis(5)),
        Durability::None,
    ] {
        let mem: Arc<dyn Vfs> = Arc::new(MemVfs::new());
        let faulty = Arc::new(FaultyVfs::new(mem, FaultPlan::new()));
        let store = Store::open_with_vfs(
            DIR,
            faulty.clone() as Arc<dyn Vfs>,
            StoreOptions {
                manual_maintenance: true,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let s = store
            .create_stream(
                StreamConfig::new("s")
                    .durability(durability)
                    .block_size(16 << 10)
                    .retention(Retention::Limits),
            )
            .unwrap();
        let other = store.create_stream(StreamConfig::new("other")).unwrap();
        let mut acked = Vec::new();
        for i in 0..50u32 {
            acked.push((s.append("a", b"", &i.to_le_bytes()).unwrap().seq, i));
        }
        s.sync().unwrap();
        faulty.plan().lock().set_full(true);
        let mut failed = 0;
        for i in 50..80u32 {
            match s.append("a", b"", &i.to_le_bytes()) {
                Ok(a) if durability == Durability::Always => panic!("acked on a full disk: {a:?}"),
                Ok(_) => {}
                Err(e) => {
                    assert!(e.is_storage_full(), "{durability:?}: {e:?}");
                    failed += 1;
                }
            }
            let _ = s.sync();
        }
        assert!(failed > 0, "{durability:?}");
        // Reads keep working; another stream is not disabled (its writes fail only while
        // the disk is full, with the same typed error).
        for &(seq, i) in &acked {
            assert_eq!(s.load(seq).unwrap().payload(), &i.to_le_bytes());
        }
        assert!(other.append("b", b"", b"x").unwrap_err().is_storage_full());
        faulty.plan().lock().set_full(false);
        std::thread::sleep(Duration::from_millis(30));
        // Appends resume by themselves: no reopen.
        let a = s.append("a", b"", b"after").unwrap();
        other.append("b", b"", b"x").unwrap();
        assert!(a.seq > acked.last().unwrap().0);
        for &(seq, i) in &acked {
            assert_eq!(s.load(seq).unwrap().payload(), &i.to_le_bytes());
        }
        s.check_invariants().unwrap();
        s.sync().unwrap();
        store.close().unwrap();
        drop((s, other, store));
        let store =
            Store::open_with_vfs(DIR, faulty.clone() as Arc<dyn Vfs>, StoreOptions::default())
                .unwrap();
        let s = store.stream("s").unwrap();
        for &(seq, i) in &acked {
            assert_eq!(s.load(seq).unwrap().payload(), &i.to_le_bytes());
        }
        assert_eq!(s.load(a.seq).unwrap().payload(), b"after");
        assert_eq!(s.state().last_seq, a.seq);
    }
}

/// On a store at its budget, TTLs still expire (and write their markers), deletes still work,
/// and what they free lets appends resume.
#[test]
fn expiry_and_markers_work_on_a_full_store() {
    let clock = Arc::new(tidelog::ManualClock::new(1_000_000_000_000));
    let vfs = Arc::new(MemVfs::new());
    let store = Store::open_with_vfs(
        DIR,
        vfs as Arc<dyn Vfs>,
        StoreOptions {
            clock: Some(clock.clone()),
            ..opts(4 << 20, 1 << 20)
        },
    )
    .unwrap();
    let s = store
        .create_stream(
            StreamConfig::new("t")
                .block_size(64 << 10)
                .discard(Discard::New)
                .allow_msg_ttl(true)
                .subject_delete_marker_ttl(Duration::from_secs(60)),
        )
        .unwrap();
    let mut acked = Vec::new();
    let payload = [3u8; 1024];
    for i in 0.. {
        let subject = format!("k.{}", i % 50);
        let m = tidelog::NewMessage::new(&subject, &payload).with_ttl(tidelog::Ttl::Secs(10));
        match s.append_msg(&m) {
            Ok(a) => acked.push(a.seq),
            Err(e) => {
                assert!(e.is_storage_full(), "{e:?}");
                break;
            }
        }
    }
    assert!(acked.len() > 1000);
    // TTLs shorter than the marker TTL are raised to it.
    clock.advance_ns(61_000_000_000);
    let expired = s.expire_now().unwrap();
    assert_eq!(expired, acked.len() as u64);
    // One marker per subject, written into the reserve.
    assert_eq!(s.state().messages, 50);
    s.reclaim().unwrap();
    let more = fill(&s, 4).0;
    assert!(
        more.len() > acked.len() / 2,
        "{} appends after expiry",
        more.len()
    );
    s.check_invariants().unwrap();
}
