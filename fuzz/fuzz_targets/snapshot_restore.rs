//! Arbitrary bytes restored as a snapshot into an empty store.
//! Seeds: `fuzz/corpus/snapshot_restore/` (regenerate with the ignored `write_snapshot_corpus`
//! test in `engine/tests/snapshot.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidelog::fuzzing::snapshot_restore(data);
});
