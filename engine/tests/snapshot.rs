//! Snapshots and restores: a restored stream reads exactly as the original (`state_digest`,
//! consumers, sequences), a cut or damaged snapshot is refused with a typed error, a restore
//! cut short resumes from a snapshot of what is missing, and limits apply at the end.

use std::sync::Arc;
use std::time::Duration;

use tidelog::io::MemVfs;
use tidelog::{
    AckPolicy, Clock, ConsumerConfig, ManualClock, NewMessage, Rollup, SnapshotError, Store,
    StoreOptions, Stream, StreamConfig, Ttl,
};

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;

fn store(clock: &Arc<ManualClock>) -> Store {
    let opts = StoreOptions {
        clock: Some(clock.clone() as Arc<dyn Clock>),
        manual_maintenance: true,
        ..Default::default()
    };
    Store::open_with_vfs("/db", Arc::new(MemVfs::new()), opts).unwrap()
}

/// A stream with TTLs, rollups, removals (gaps), skipped sequences and a consumer.
fn origin(s: &Store) -> Stream {
    let o = s
        .create_stream(
            StreamConfig::new("orders")
                .allow_rollup(true)
                .allow_msg_ttl(true),
        )
        .unwrap();
    for i in 0..500u32 {
        let subject = format!("orders.{}", i % 37);
        let payload = i.to_le_bytes();
        let mut m = NewMessage::new(&subject, &payload).with_headers(b"h");
        if i % 7 == 0 {
            m = m.with_ttl(Ttl::Secs(3600));
        }
        if i % 11 == 0 {
            m = m.with_rollup(Rollup::Subject);
        }
        o.append_msg(&m).unwrap();
    }
    for q in (3..400).step_by(13) {
        let _ = o.remove(q);
    }
    o.skip(5).unwrap();
    let c = o
        .create_consumer(ConsumerConfig::new("c").ack(AckPolicy::Explicit))
        .unwrap();
    let d = c.fetch(20, 0).unwrap();
    c.ack(d[3].message.seq).unwrap();
    o
}

#[test]
fn restore_reads_as_the_original() {
    let clock = Arc::new(ManualClock::new(T0));
    let a = store(&clock);
    let o = origin(&a);
    let mut snap = Vec::new();
    let info = o.snapshot(&mut snap, 1).unwrap();
    assert_eq!(info.messages, o.state().messages);
    assert_eq!(info.bytes, snap.len() as u64);
    let b = store(&clock);
    let (r, rinfo) = b.restore(&mut snap.as_slice()).unwrap();
    assert_eq!(rinfo, info);
    assert_eq!(r.state_digest(), o.state_digest());
    assert_eq!(r.state().last_seq, o.state().last_seq);
    r.check_invariants().unwrap();
    let (oc, rc) = (o.consumer("c").unwrap(), r.consumer("c").unwrap());
    assert_eq!(rc.state().unwrap(), oc.state().unwrap());
    // Sequences go on where the original's would.
    assert_eq!(
        r.append("orders.1", b"", b"x").unwrap().seq,
        o.append("orders.1", b"", b"x").unwrap().seq
    );
}

#[test]
fn a_cut_or_damaged_snapshot_is_refused() {
    let clock = Arc::new(ManualClock::new(T0));
    let a = store(&clock);
    let o = origin(&a);
    let mut snap = Vec::new();
    o.snapshot(&mut snap, 1).unwrap();
    for cut in [0, 5, 9, 40, snap.len() / 2, snap.len() - 1] {
        let b = store(&clock);
        let Err(e) = b.restore(&mut &snap[..cut]) else {
            panic!("cut at {cut} restored")
        };
        assert!(
            matches!(e, SnapshotError::Corrupt(_)),
            "cut at {cut}: {e:?}"
        );
    }
    for at in [0, 12, 20, 40, snap.len() / 3, snap.len() - 3] {
        let mut bad = snap.clone();
        bad[at] ^= 0x40;
        let b = store(&clock);
        let Err(e) = b.restore(&mut bad.as_slice()) else {
            panic!("flip at {at} restored")
        };
        assert!(
            matches!(e, SnapshotError::Corrupt(_)),
            "flip at {at}: {e:?}"
        );
        // A damaged header creates nothing; damage further on keeps what came before it.
        if at < 60 {
            assert!(b.stream_names().is_empty(), "flip at {at}");
        }
    }
}

#[test]
fn a_restore_cut_short_resumes() {
    let clock = Arc::new(ManualClock::new(T0));
    let a = store(&clock);
    let o = origin(&a);
    // Several frames' worth (a frame is about 1 MiB of records).
    let subjects: Vec<String> = (0..100).map(|i| format!("bulk.{i}")).collect();
    for _ in 0..30 {
        let batch: Vec<NewMessage<'_>> = (0..1000)
            .map(|i| NewMessage::new(&subjects[i % 100], &[7u8; 100]))
            .collect();
        o.append_batch(&batch).unwrap();
    }
    let mut snap = Vec::new();
    o.snapshot(&mut snap, 1).unwrap();
    let b = store(&clock);
    // The first half arrives, then the connection drops.
    assert!(b.restore(&mut &snap[..snap.len() / 2]).is_err());
    let r = b.stream("orders").unwrap();
    let have = r.state().last_seq;
    assert!(
        have > 0 && have < o.state().last_seq,
        "restored up to {have}"
    );
    let mut rest = Vec::new();
    o.snapshot(&mut rest, have + 1).unwrap();
    assert!(rest.len() < snap.len());
    let (r, _) = b.restore(&mut rest.as_slice()).unwrap();
    assert_eq!(r.state_digest(), o.state_digest());
    r.check_invariants().unwrap();
}

#[test]
fn limits_apply_at_the_end_of_a_restore() {
    let clock = Arc::new(ManualClock::new(T0));
    let a = store(&clock);
    let o = a
        .create_stream(StreamConfig::new("aged").max_age(Duration::from_secs(60)))
        .unwrap();
    for i in 0..100u32 {
        o.append("a", b"", &i.to_le_bytes()).unwrap();
        clock.advance_ns(SEC);
    }
    let mut snap = Vec::new();
    o.snapshot(&mut snap, 1).unwrap();
    // Restored 30 s later: the 30 oldest it carried are past max_age by then.
    clock.advance_ns(30 * SEC);
    let b = store(&clock);
    let (r, info) = b.restore(&mut snap.as_slice()).unwrap();
    assert_eq!(info.messages, 100);
    o.expire_now().unwrap();
    assert_eq!(r.state().messages, o.state().messages);
    assert_eq!(r.state_digest(), o.state_digest());
}

/// Writes the seeds of the `snapshot_restore` fuzz target (run by hand after a format change:
/// `cargo test -p tidelog --test snapshot write_snapshot_corpus -- --ignored`).
#[test]
#[ignore]
fn write_snapshot_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/snapshot_restore");
    std::fs::create_dir_all(&dir).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for n in [0u32, 1, 2, 5, 17, 60] {
        let a = store(&clock);
        let s = a
            .create_stream(
                StreamConfig::new("f")
                    .allow_rollup(true)
                    .allow_msg_ttl(true),
            )
            .unwrap();
        for i in 0..n {
            let subject = format!("f.{}", i % 3);
            let mut m = NewMessage::new(&subject, b"pp").with_headers(b"h");
            if i % 4 == 1 {
                m = m.with_ttl(Ttl::Secs(60));
            }
            if i % 5 == 2 {
                m = m.with_rollup(Rollup::Subject);
            }
            s.append_msg(&m).unwrap();
        }
        if n > 3 {
            let _ = s.remove(2);
            s.create_consumer(ConsumerConfig::new("c")).unwrap();
        }
        for from in [1, 3] {
            let mut snap = Vec::new();
            s.snapshot(&mut snap, from).unwrap();
            seeds.push(snap);
        }
    }
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
    }
}
