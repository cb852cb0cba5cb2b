//! Arbitrary bytes as a sequence of operations (appends, batches, removals, purges, clock
//! moves, expiry, consumers, restarts, crashes and injected I/O faults) on a store over an
//! in-memory disk, checked against a model after every step (see
//! `tidelog::fuzzing::op_sequence` for the encoding and the rules).
//! Seeds: `fuzz/corpus/op_sequence/` (regenerate with the `write_corpus` test in
//! `engine/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidelog::fuzzing::op_sequence(data);
});
