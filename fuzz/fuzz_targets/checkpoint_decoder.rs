//! Arbitrary bytes as a checkpoint (whole, or when the first byte is below 0x20 the rest after
//! a valid header or as the timers section of a real checkpoint), a timers section and a
//! lease: each value that decodes survives encode and decode; recovery of a real stream
//! directory with the forged file never panics, and recovers exactly the directory's messages
//! when it refuses the file.
//! Seeds: `fuzz/corpus/checkpoint_decoder/` (regenerate with the `write_corpus` test in
//! `engine/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidelog::fuzzing::checkpoint_decoder(data);
});
