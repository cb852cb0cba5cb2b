//! A heal takes every lock of the stream, and those locks are not reentrant: no write path
//! may start a heal while it holds one. Found by the `op_sequence` fuzz target: `erase` on a
//! poisoned stream healed while holding the compaction and write locks, and never returned.

use std::sync::Arc;
use std::time::Duration;

use tidelog::io::{Fault, FaultPlan, FaultyVfs, MemVfs};
use tidelog::{Durability, Store, StoreOptions, Stream, StreamConfig};

/// A durable stream holding messages 1 and 2 whose next write failed (poisoned, not healed).
fn poisoned() -> (Store, Stream) {
    let fv = FaultyVfs::new(Arc::new(MemVfs::new()), FaultPlan::new());
    let opts = StoreOptions {
        manual_maintenance: true,
        ..Default::default()
    };
    let store = Store::open_with_vfs("/db", Arc::new(fv.clone()), opts).unwrap();
    let s = store
        .create_stream(
            StreamConfig::new("s")
                .durability(Durability::Always)
                .allow_msg_ttl(true),
        )
        .unwrap();
    s.append("a", b"", b"one").unwrap();
    s.append("a", b"", b"two").unwrap();
    *fv.plan().lock() = FaultPlan::at(0, Fault::Eio);
    assert!(s.append("a", b"", b"three").is_err());
    assert!(s.is_poisoned());
    (store, s)
}

/// Runs `f` on another thread; fails the test if it does not return within 5 s.
fn returns(what: &str, s: &Stream, f: fn(&Stream) -> String) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = s.clone();
    std::thread::spawn(move || {
        let _ = tx.send(f(&s2));
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what} on a poisoned stream did not return (deadlock)"))
}

#[test]
fn write_paths_on_a_poisoned_stream_heal_and_return() {
    type Op = (&'static str, fn(&Stream) -> String);
    let ops: [Op; 5] = [
        ("erase", |s| format!("{:?}", s.erase(1))),
        ("remove", |s| format!("{:?}", s.remove(2))),
        ("skip", |s| format!("{:?}", s.skip(3))),
        ("purge", |s| format!("{:?}", s.purge())),
        ("expire_now", |s| format!("{:?}", s.expire_now())),
    ];
    for (what, f) in ops {
        let (_store, s) = poisoned();
        let r = returns(what, &s, f);
        // The fault was one write: the heal succeeds and the stream takes writes again.
        assert!(!s.is_poisoned(), "{what}: {r}");
        s.append("a", b"", b"after").unwrap();
        s.check_invariants().unwrap();
    }
}
