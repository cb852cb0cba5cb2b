//! What the benchmark writes: payloads of sizes drawn from a range, subjects `bench.s<k>`
//! used round-robin, optionally a TTL on every message.

use std::ops::Range;
use std::time::Duration;

use tidelog::{Durability, NewMessage, StreamConfig, Ttl};

/// Name of the stream the benchmark creates.
pub const STREAM: &str = "bench";
/// Record bytes besides subject, headers and payload (header + checksum).
pub const RECORD_OVERHEAD: u64 = 40;
/// Record bytes a TTL adds.
const TTL_OVERHEAD: u64 = 8;
/// Seeds the size draw, so every run (and the crash child) writes the same sizes.
const SIZE_SEED: u64 = 0x51ce_5eed;
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

/// Payload sizes, drawn uniformly from `min..=max` per message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeRange {
    pub min: u32,
    pub max: u32,
}

impl SizeRange {
    pub fn fixed(n: u32) -> SizeRange {
        SizeRange { min: n, max: n }
    }

    /// Size of the `i`-th message: a hash of `i` rather than a running generator, so it does
    /// not depend on which producer appends the message.
    pub fn of(self, i: u64) -> usize {
        let span = u64::from(self.max - self.min) + 1;
        let pick = if span == 1 {
            0
        } else {
            mix(i ^ SIZE_SEED) % span
        };
        self.min as usize + pick as usize
    }

    /// `128` or `64..4096`, as the option takes it.
    pub fn arg(self) -> String {
        if self.min == self.max {
            self.min.to_string()
        } else {
            format!("{}..{}", self.min, self.max)
        }
    }
}

/// splitmix64's finaliser: spreads consecutive indices over the whole range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The messages of a run.
pub struct Workload {
    /// Random bytes; a message's payload is a prefix of its size.
    data: Vec<u8>,
    pub sizes: SizeRange,
    pub subjects: Vec<String>,
    pub mode: Mode,
    pub ttl: Option<Ttl>,
}

impl Workload {
    pub fn new(sizes: SizeRange, subjects: u32, mode: Mode, ttl_secs: Option<u64>) -> Workload {
        let mut rng = XorShift::new(0x5eed);
        let data = (0..sizes.max).map(|_| rng.next() as u8).collect();
        let subjects = (0..subjects.max(1))
            .map(|k| format!("bench.s{k}"))
            .collect();
        Workload {
            data,
            sizes,
            subjects,
            mode,
            ttl: ttl_secs.map(Ttl::Secs),
        }
    }

    /// Subject of the `i`-th message.
    pub fn subject(&self, i: u64) -> &str {
        &self.subjects[(i % self.subjects.len() as u64) as usize]
    }

    /// Payload of the `i`-th message.
    pub fn payload(&self, i: u64) -> &[u8] {
        &self.data[..self.sizes.of(i)]
    }

    /// The `i`-th message, with the run's TTL.
    pub fn message(&self, i: u64) -> NewMessage<'_> {
        let m = NewMessage::new(self.subject(i), self.payload(i));
        match self.ttl {
            Some(t) => m.with_ttl(t),
            None => m,
        }
    }

    /// Stream configuration for this workload.
    pub fn config(&self) -> StreamConfig {
        let max = self.sizes.max.max(1 << 20);
        StreamConfig::new(STREAM)
            .durability(self.mode.durability())
            .max_msg_size(max)
            .allow_msg_ttl(self.ttl.is_some())
    }

    /// Subject + payload bytes of messages `0..n` (what a user hands to the store).
    pub fn user_bytes(&self, n: u64) -> u64 {
        self.payload_bytes(n) + self.subject_bytes(n)
    }

    /// Estimated log bytes of messages `0..n`. Drawn sizes count at their mean: summing them
    /// takes a pass over every message before the run has started.
    pub fn record_bytes(&self, n: u64) -> u64 {
        let ttl = if self.ttl.is_some() { TTL_OVERHEAD } else { 0 };
        let mean = (u64::from(self.sizes.min) + u64::from(self.sizes.max)) / 2;
        n * mean + self.subject_bytes(n) + n * (RECORD_OVERHEAD + ttl)
    }

    /// Payload bytes of messages `0..n`.
    pub fn payload_bytes(&self, n: u64) -> u64 {
        if self.sizes.min == self.sizes.max {
            return n * u64::from(self.sizes.min);
        }
        (0..n).map(|i| self.sizes.of(i) as u64).sum()
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

    /// How many of messages `0..n` match `filter` (all of them without one).
    pub fn matching_filter(&self, filter: Option<&str>, n: u64) -> u64 {
        filter.map_or(n, |f| self.matching(f, n))
    }

    /// How many of messages `0..n` have a subject matching `filter` (a valid filter).
    pub fn matching(&self, filter: &str, n: u64) -> u64 {
        let k = self.subjects.len() as u64;
        let (base, extra) = (n / k, n % k);
        (0..k)
            .filter(|&j| tidelog::subject::matches(filter, &self.subjects[j as usize]))
            .map(|j| base + u64::from(j < extra))
            .sum()
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
        let w = Workload::new(SizeRange::fixed(4), 12, Mode::None, None);
        for n in [0, 1, 11, 12, 13, 100] {
            let want: u64 = (0..n).map(|i| w.subject(i).len() as u64).sum();
            assert_eq!(w.subject_bytes(n), want, "{n}");
        }
    }

    #[test]
    fn sizes_cover_the_range_uniformly() {
        let r = SizeRange { min: 10, max: 13 };
        let mut seen = [0u32; 4];
        for i in 0..4000 {
            seen[r.of(i) - 10] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(SizeRange::fixed(7).of(12345), 7);
        let w = Workload::new(r, 3, Mode::None, None);
        let want: u64 = (0..100).map(|i| w.payload(i).len() as u64).sum();
        assert_eq!(w.payload_bytes(100), want);
    }

    #[test]
    fn matching_counts_round_robin_messages() {
        let w = Workload::new(SizeRange::fixed(1), 12, Mode::None, Some(5));
        for (f, n) in [
            (">", 100),
            ("bench.*", 7),
            ("bench.s3", 100),
            ("bench.s11", 5),
        ] {
            let want = (0..n)
                .filter(|&i| tidelog::subject::matches(f, w.subject(i)))
                .count() as u64;
            assert_eq!(w.matching(f, n), want, "{f} {n}");
        }
        assert!(w.message(0).ttl.is_some());
        assert!(w.config().allow_msg_ttl);
    }
}
