//! Arbitrary bytes as a consumer's state file (a leading 0 byte: the rest is its JSON, in a
//! valid header): a state that decodes survives encode and decode; a stream opened with the
//! file opens, restores the consumer or reports the file damaged, and the consumer's fetches,
//! acks and state queries never panic and deliver only live matching messages.
//! Seeds: `fuzz/corpus/consumer_state/` (regenerate with the `write_corpus` test in
//! `engine/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidelog::fuzzing::consumer_state(data);
});
