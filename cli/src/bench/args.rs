//! The options of `tidelog bench`, and the checks that need more than one of them (made
//! while parsing, so a bad combination is a usage error like any other).

use std::ops::Deref;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use tidelog::AckPolicy;

use crate::parse::{filter, message_size, number, number32, size_range, ttl_secs};
use crate::workload::{Mode, SizeRange};

/// Default payload bytes.
const DEFAULT_SIZE: u32 = 128;
/// Most messages a run may append: far beyond any disk, and low enough that the byte counts
/// of a run (up to 32 MiB per message) cannot overflow.
const MAX_MESSAGES: u64 = 100_000_000_000;

/// How the benchmark's consumers acknowledge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AckMode {
    /// Every message on its own.
    Explicit,
    /// One ack per fetched batch, for its last message and everything before it.
    All,
    /// No acks: a delivery counts as acknowledged.
    None,
}

impl AckMode {
    pub fn policy(self) -> AckPolicy {
        match self {
            AckMode::Explicit => AckPolicy::Explicit,
            AckMode::All => AckPolicy::All,
            AckMode::None => AckPolicy::None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            AckMode::Explicit => "explicit",
            AckMode::All => "all",
            AckMode::None => "none",
        }
    }
}

/// Options of `tidelog bench`, as given.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchFlags {
    /// Directory for the store, created if missing and left in place afterwards. It must not
    /// already hold a stream named "bench". Default: a temporary directory under $TMPDIR (or
    /// /tmp), removed afterwards; pass --dir to measure a particular file system.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Messages to append (at most 100 billion).
    #[arg(long, value_name = "N", default_value_t = 1_000_000,
          value_parser = number::<1, MAX_MESSAGES>)]
    pub messages: u64,
    /// Payload bytes of every message (at most 32M); the same as --message-size BYTES.
    /// [default: 128]
    #[arg(long, value_name = "BYTES", value_parser = message_size,
          conflicts_with = "message_size")]
    pub payload: Option<u32>,
    /// Payload bytes per message: a fixed SIZE, or MIN..MAX for sizes drawn uniformly (the
    /// same sizes on every run). K and M (or KiB and MiB) are multiples of 1024; at most 32M.
    /// [default: 128]
    #[arg(long, value_name = "SIZE|MIN..MAX", value_parser = size_range)]
    pub message_size: Option<SizeRange>,
    /// Distinct subjects (bench.s0, bench.s1, ...), used round-robin.
    #[arg(long, value_name = "K", default_value_t = 1_000,
          value_parser = number32::<1, 10_000_000>)]
    pub subjects: u32,
    /// Append every message with this TTL (whole seconds: 30s, 5m, 2h, 1d); the stream
    /// allows per-message TTLs. Messages that expire during the run are counted, not errors.
    #[arg(long, value_name = "DURATION", value_parser = ttl_secs)]
    pub ttl: Option<u64>,
    /// When an append counts as stored: always (fdatasync per append, shared by concurrent
    /// appenders), interval (synced every 100 ms) or none (synced only at checkpoints).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Mode::None)]
    pub durability: Mode,
    /// Threads appending concurrently; each appends an equal share of the messages.
    #[arg(long, value_name = "P", default_value_t = 1,
          value_parser = number32::<1, 4096>)]
    pub producers: u32,
    /// Messages per append call; above 1, appends go through append_batch.
    #[arg(long, value_name = "B", default_value_t = 1,
          value_parser = number32::<1, 1_000_000>)]
    pub batch: u32,
    /// Consumer threads, started with the producers. Each has its own durable consumer
    /// (bench-c0, bench-c1, ...) and reads every message (matching --filter), like N
    /// independent subscribers, until it has seen them all.
    #[arg(long, value_name = "N", value_parser = number32::<1, 256>)]
    pub consumers: Option<u32>,
    /// How the consumers acknowledge: explicit (each message), all (the last of each fetch)
    /// or none. Needs --consumers. [default: explicit]
    #[arg(long, value_name = "POLICY", value_enum)]
    pub ack: Option<AckMode>,
    /// Subject filter for the consumers and the random loads (through load_next): bench.s7
    /// (one subject), bench.* or > (all). Subjects have two tokens, so bench.s1* is invalid.
    #[arg(long, value_name = "FILTER", value_parser = filter)]
    pub filter: Option<String>,
    /// Print exactly one JSON object on stdout instead of the summary (no progress bars).
    #[arg(long)]
    pub json: bool,
}

/// Options of `tidelog bench`, checked against one another.
#[derive(Clone, Debug)]
pub struct BenchArgs(BenchFlags);

impl Deref for BenchArgs {
    type Target = BenchFlags;
    fn deref(&self) -> &BenchFlags {
        &self.0
    }
}

impl BenchArgs {
    /// Payload sizes, from --message-size or --payload.
    pub fn sizes(&self) -> SizeRange {
        self.message_size
            .unwrap_or(SizeRange::fixed(self.payload.unwrap_or(DEFAULT_SIZE)))
    }

    /// Consumer threads (0: none).
    pub fn consumer_count(&self) -> u32 {
        self.consumers.unwrap_or(0)
    }

    /// The ack policy of the consumers, explicit unless given.
    pub fn ack_mode(&self) -> AckMode {
        self.ack.unwrap_or(AckMode::Explicit)
    }

    fn check(flags: BenchFlags) -> Result<BenchArgs, clap::Error> {
        let bad = |msg: String| Err(clap::Error::raw(ErrorKind::ArgumentConflict, msg + "\n"));
        if flags.ack.is_some() && flags.consumers.is_none() {
            return bad("'--ack' needs '--consumers N' (only consumers acknowledge)".into());
        }
        if let Some(f) = &flags.filter {
            if !writes_matching(f, flags.subjects, flags.messages) {
                return bad(no_match(f, flags.subjects, flags.messages));
            }
        }
        Ok(BenchArgs(flags))
    }
}

/// Whether any message of the run (subject `bench.s<i % k>` for i below `n`) matches.
fn writes_matching(filter: &str, k: u32, n: u64) -> bool {
    let used = u64::from(k).min(n);
    let mut s = String::new();
    (0..used).any(|j| {
        s.clear();
        s.push_str("bench.s");
        s.push_str(&j.to_string());
        tidelog::subject::matches(filter, &s)
    })
}

fn no_match(filter: &str, k: u32, n: u64) -> String {
    let last = u64::from(k).min(n) - 1;
    format!(
        "'--filter {filter}' matches none of the subjects the run writes (bench.s0 to \
         bench.s{last}); try bench.s0, bench.* or >"
    )
}

impl FromArgMatches for BenchArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        BenchFlags::from_arg_matches(m).and_then(BenchArgs::check)
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        let mut flags = self.0.clone();
        flags.update_from_arg_matches(m)?;
        *self = BenchArgs::check(flags)?;
        Ok(())
    }
}

impl Args for BenchArgs {
    fn group_id() -> Option<clap::Id> {
        BenchFlags::group_id()
    }
    fn augment_args(cmd: Command) -> Command {
        BenchFlags::augment_args(cmd)
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        BenchFlags::augment_args_for_update(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_must_match_a_written_subject() {
        assert!(writes_matching("bench.s7", 1000, 8));
        assert!(!writes_matching("bench.s7", 1000, 7));
        assert!(!writes_matching("bench.s7", 7, 100));
        assert!(writes_matching(">", 1, 1));
        assert!(writes_matching("*.*", 1, 1));
        assert!(!writes_matching("bench", 10, 10));
        assert!(!writes_matching("bench.s1.x", 10, 10));
    }
}
