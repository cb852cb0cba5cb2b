//! Arbitrary bytes as the only block file of a stream (after a valid block header when the
//! input starts with a 0 byte): recovery must not panic, must leave consistent state, and
//! the recovered stream must accept and load an append.
//! Seeds: `fuzz/corpus/block_recovery/` (regenerate with the `write_corpus` test in
//! `engine/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidelog::fuzzing::block_recovery(data);
});
