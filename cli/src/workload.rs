//! What the benchmark writes: one payload, subjects `bench.s<k>` used round-robin.

use std::ops::Range;
use std::time::Duration;

use tidelog::{Durability, StreamConfig};

/// Name of the stream the benchmark creates.
pub const STREAM: &str = "bench";
/// Record bytes besides subject, headers and payload (header + checksum).
pub const RECORD_OVERHEAD: u64 = 40;
/// Sync period of `--durability interval`.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The durability modes the command line offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Every append waits for fdatasync (shared by concurrent appenders).
    Always,
    /// Data is synced every 100 ms.
    Interval,
    /// Data is handed to the OS within milliseconds, synced only at checkpoints.
    None,
}

impl Mode {
    pub fn durability(self) -> Durability {
        match self {
            Mode::Always => Durability::Always,
            Mode::Interval => Durability::Interval(INTERVAL),
            Mode::None => Durability::None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::Interval => "interval",
            Mode::None => "none",
        }
    }
}

/// The messages of a run.
pub struct Workload {
    pub payload: Vec<u8>,
    pub subjects: Vec<String>,
    pub mode: Mode,
}

impl Workload {
    pub fn new(payload: usize, subjects: u32, mode: Mode) -> Workload {
        let mut rng = XorShift::new(0x5eed);
        let payload = (0..payload).map(|_| rng.next() as u8).collect();
        let subjects = (0..subjects.max(1))
            .map(|k| format!("bench.s{k}"))
            .collect();
        Workload {
            payload,
            subjects,
            mode,
        }
    }

    /// Subject of the `i`-th message.
    pub fn subject(&self, i: u64) -> &str {
        &self.subjects[(i % self.subjects.len() as u64) as usize]
    }

    /// Stream configuration for this workload.
    pub fn config(&self) -> StreamConfig {
        let max = (self.payload.len() as u32).max(1 << 20);
        StreamConfig::new(STREAM)
            .durability(self.mode.durability())
            .max_msg_size(max)
    }

    /// Subject + payload bytes of messages `0..n` (what a user hands to the store).
    pub fn user_bytes(&self, n: u64) -> u64 {
        n * self.payload.len() as u64 + self.subject_bytes(n)
    }

    /// Estimated log bytes of messages `0..n`.
    pub fn record_bytes(&self, n: u64) -> u64 {
        self.user_bytes(n) + n * RECORD_OVERHEAD
    }

    fn subject_bytes(&self, n: u64) -> u64 {
        let k = self.subjects.len() as u64;
        let full: u64 = self.subjects.iter().map(|s| s.len() as u64).sum();
        let rest: u64 = self.subjects[..(n % k) as usize]
            .iter()
            .map(|s| s.len() as u64)
            .sum();
        (n / k) * full + rest
    }
}

/// The message indices producer `p` of `producers` appends, out of `n`.
pub fn share(n: u64, producers: u64, p: u64) -> Range<u64> {
    let base = n / producers;
    let extra = n % producers;
    let start = p * base + p.min(extra);
    let len = base + u64::from(p < extra);
    start..start + len
}

/// A xorshift64 generator: enough for picking sequences and filling payloads.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once() {
        for (n, p) in [(10, 3), (3, 10), (1_000_000, 64), (7, 1)] {
            let mut next = 0;
            for i in 0..p {
                let r = share(n, p, i);
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, n);
        }
    }

    #[test]
    fn subject_bytes_match_round_robin() {
        let w = Workload::new(4, 12, Mode::None);
        for n in [0, 1, 11, 12, 13, 100] {
            let want: u64 = (0..n).map(|i| w.subject(i).len() as u64).sum();
            assert_eq!(w.subject_bytes(n), want, "{n}");
        }
    }
}
