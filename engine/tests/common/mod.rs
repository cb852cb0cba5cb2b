//! Shared by the model-based test files.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::Config;

/// A message as generated; `subject` indexes the test file's subject list.
#[derive(Clone, Debug)]
pub struct GenMsg {
    pub subject: usize,
    pub headers: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A sequence argument, resolved against the model when the op runs: a live message, or any
/// sequence around the live range.
#[derive(Clone, Copy, Debug)]
pub struct Pick {
    pub live: bool,
    pub idx: u32,
}

pub fn pick() -> impl Strategy<Value = Pick> {
    (prop::bool::weighted(0.7), any::<u32>()).prop_map(|(live, idx)| Pick { live, idx })
}

/// First live sequence of a model log (`last_seq + 1` when empty).
pub fn first_seq<T>(msgs: &BTreeMap<u64, T>, last_seq: u64) -> u64 {
    msgs.keys().next().copied().unwrap_or(last_seq + 1)
}

/// Sequences between the first and the last that hold no message.
pub fn num_deleted<T>(msgs: &BTreeMap<u64, T>, last_seq: u64) -> u64 {
    last_seq + 1 - first_seq(msgs, last_seq) - msgs.len() as u64
}

/// The sequence `p` stands for in a model log.
pub fn pick_seq<T>(msgs: &BTreeMap<u64, T>, last_seq: u64, p: Pick) -> u64 {
    if p.live && !msgs.is_empty() {
        let i = p.idx as usize % msgs.len();
        return *msgs.keys().nth(i).expect("index in range");
    }
    let lo = first_seq(msgs, last_seq).saturating_sub(2);
    let span = last_seq + 4 - lo;
    lo + p.idx as u64 % span
}

/// Proptest settings of the model tests: `TIDELOG_MODEL_CASES` overrides the number of cases,
/// and failures are reported, not written into the source tree.
pub fn model_config(default_cases: u32) -> Config {
    Config {
        cases: std::env::var("TIDELOG_MODEL_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_cases),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// Prints a case's steps when `TIDELOG_MODEL_TRACE` is set.
pub fn print_trace(trace: &[String]) {
    if std::env::var_os("TIDELOG_MODEL_TRACE").is_some() {
        eprintln!("---- case ----\n{}", trace.join("\n"));
    }
}

/// `compact(seq)` on a model log: drops every message below `seq` (a floor past the end moves
/// the last sequence up). Returns how many went, or `None` for the invalid `seq == 0`.
pub fn compact_log<T>(msgs: &mut BTreeMap<u64, T>, last_seq: &mut u64, seq: u64) -> Option<u64> {
    if seq == 0 {
        return None;
    }
    let keep = msgs.split_off(&seq);
    let n = msgs.len() as u64;
    *msgs = keep;
    if seq > *last_seq + 1 {
        *last_seq = seq - 1;
    }
    Some(n)
}

/// `truncate(seq)` on a model log: drops every message above `seq`, which becomes the last
/// sequence. Returns how many went, or `None` when `seq` is not below the last sequence.
pub fn truncate_log<T>(msgs: &mut BTreeMap<u64, T>, last_seq: &mut u64, seq: u64) -> Option<u64> {
    if seq >= *last_seq {
        return None;
    }
    let gone = msgs.split_off(&(seq + 1));
    *last_seq = seq;
    Some(gone.len() as u64)
}
