//! Arbitrary bytes as a record, a block body, a checkpoint and a block trailer.
//! Seeds: `fuzz/corpus/record_decoder/` (regenerate with the `write_corpus` test in
//! `engine/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidelog::fuzzing::record_decoder(data);
});
