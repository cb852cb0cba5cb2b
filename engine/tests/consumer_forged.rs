//! A consumer file whose checksum holds but whose state the engine never writes (found by
//! the `consumer_state` fuzz target) is set aside as damaged when the stream opens, instead
//! of panicking or wrapping counters later.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tidelog::io::{MemVfs, OpenMode, Vfs};
use tidelog::{ManualClock, Store, StoreOptions, StreamConfig};
use xxhash_rust::xxh3::xxh3_64;

fn file(json: &str) -> Vec<u8> {
    let mut b = b"TLCONS\0\0".to_vec();
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&[0u8; 6]);
    b.extend_from_slice(&(json.len() as u64).to_le_bytes());
    b.extend_from_slice(json.as_bytes());
    let sum = xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

fn state(next: u64, initial: &str, delivered: (u64, u64), pending: &str, maxd: &str) -> String {
    format!(
        r#"{{"config":{{"name":"e","filters":[],"deliver":"all","ack":"explicit","ack_wait":{{"secs":1,"nanos":0}},"backoff":[],"max_deliver":null,"max_ack_pending":1000}},"start":0,"next":{next},"initial":{initial},"delivered":[{},{}],"floor":0,"floor_dseq":0,"pending":{pending},"max_delivered":{maxd}}}"#,
        delivered.0, delivered.1
    )
}

#[test]
fn restored_consumer_states_do_not_panic() {
    let cases = [
        // consumer.rs state(): `d - 1` with a first delivery sequence of 0.
        (
            "pending first delivery sequence 0",
            state(7, "[]", (6, 6), "[[3,1,0,0,false]]", "[]"),
        ),
        (
            "max_delivered first delivery sequence 0",
            state(7, "[]", (6, 6), "[]", "[[2,0]]"),
        ),
        // consumer.rs fetch(): `meta.count + 1` on redelivery.
        (
            "delivery count u64::MAX",
            state(7, "[]", (6, 6), "[[3,18446744073709551615,3,0,true]]", "[]"),
        ),
        // consumer.rs fetch(): `delivered.consumer_seq += 1`.
        (
            "delivered consumer sequence u64::MAX",
            state(7, "[]", (6, 18446744073709551615), "[]", "[]"),
        ),
        // pending.rs entry(): sequence outside 1..=MAX_SEQ (then `seq << 2` overflows).
        (
            "pending sequence 0",
            state(7, "[]", (6, 6), "[[0,1,1,0,false]]", "[]"),
        ),
        (
            "pending sequence u64::MAX",
            state(
                7,
                "[]",
                (6, 6),
                "[[18446744073709551615,1,1,0,false]]",
                "[]",
            ),
        ),
        // pending.rs insert(): "insert {seq} twice".
        (
            "pending sequence twice",
            state(7, "[]", (6, 6), "[[3,1,1,0,false],[3,2,2,5,true]]", "[]"),
        ),
        // pending.rs AckFloor::delivered(): first deliveries must grow.
        (
            "starters out of order",
            state(20, "[9,3]", (6, 6), "[]", "[]"),
        ),
        (
            "next below a pending message",
            state(2, "[]", (6, 6), "[[9,1,1,0,false]]", "[]"),
        ),
        ("starter above next", state(3, "[9]", (6, 6), "[]", "[]")),
        // The ack floor's "first deliveries in order" assertion, on the next fetch.
        (
            "max-delivered message at next",
            state(7, "[]", (6, 6), "[]", "[[7,1]]"),
        ),
        (
            "starter below a pending message",
            state(20, "[4,12]", (6, 6), "[[9,1,1,0,false]]", "[]"),
        ),
    ];
    let mut failed = Vec::new();
    for (name, json) in cases {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mem = MemVfs::new();
            let clock = Arc::new(ManualClock::new(1_700_000_000_000_000_000));
            let opts = || StoreOptions {
                manual_maintenance: true,
                clock: Some(clock.clone()),
                ..Default::default()
            };
            let store = Store::open_with_vfs("/c", Arc::new(mem.clone()), opts()).unwrap();
            let s = store.create_stream(StreamConfig::new("s")).unwrap();
            for i in 0..12u8 {
                s.append(["a.x", "b"][usize::from(i % 2)], b"", &[i])
                    .unwrap();
            }
            drop(s);
            store.close().unwrap();
            drop(store);
            let path = std::path::Path::new("/c/streams/s/consumer.e");
            let f = mem.open(path, OpenMode::CreateOrOpen).unwrap();
            f.write_all_at(&file(&json), 0).unwrap();
            let store = Store::open_with_vfs("/c", Arc::new(mem.clone()), opts()).unwrap();
            let s = store.stream("s").unwrap();
            let Ok(c) = s.consumer("e") else {
                assert!(!s.damaged_consumers().is_empty());
                return;
            };
            for _ in 0..3 {
                let _ = c.state();
                let _ = c.fetch(8, 0);
                clock.advance_ns(5_000_000_000);
            }
        }));
        if r.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "panicked: {failed:?}");
}
