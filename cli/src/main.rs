//! `tidelog`: the command-line tool of the tidelog message store.

mod bench;
mod child;
mod crash;
mod dump;
mod fail;
mod info;
mod open;
mod out;
mod parse;
mod progress;
mod report;
mod show;
mod verify;
mod workload;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// Exit status for bad arguments.
const USAGE: u8 = 2;
/// Exit status for a runtime failure.
const FAILURE: u8 = 1;

/// tidelog: an embeddable, log-structured message store.
#[derive(Parser, Debug)]
#[command(name = "tidelog", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Measure append and consume throughput and latency, random loads, reopen and crash
    /// recovery against the raw write speed of the same file system.
    #[command(long_about = BENCH_ABOUT)]
    Bench(bench::BenchArgs),
    /// Show a store: streams, config, state, top subjects, consumers, disk use against the
    /// budget, I/O back end.
    Info(info::InfoArgs),
    /// Check every checksum and invariant; exit status 3 on damage. --repair rewrites
    /// damaged blocks keeping every good record.
    #[command(long_about = VERIFY_ABOUT)]
    Verify(verify::VerifyArgs),
    /// Print a stream's messages with their headers.
    Dump(dump::DumpArgs),
    /// Internal: the process `bench` kills to measure crash recovery.
    #[command(hide = true)]
    BenchChild(child::ChildArgs),
}

const BENCH_ABOUT: &str = "\
Measure append throughput and latency, consumer throughput and end-to-end latency, random
loads, reopen and crash recovery against the raw write speed of the same file system.

Workload: --messages N messages on --subjects K subjects (bench.s0, bench.s1, ...) used
round-robin, payloads of --message-size SIZE or MIN..MAX bytes (drawn uniformly, the same
sizes on every run), each appended with --ttl if given.

Phases, in one run:
  1. raw write       sequential 1 MiB writes of about as many bytes as the store will write,
                     then fdatasync (the file-system limit)
  2. append          N messages from P producer threads (append, or append_batch when B > 1),
                     per-call latency percentiles; the final stream.sync() is included in the
                     time, so the figure covers data reaching the OS (and disk when synced)
     consume         with --consumers C, during the appends: C threads, each with its own
                     durable consumer (bench-c0, bench-c1, ...) reading every message that
                     matches --filter (like C independent subscribers) in fetches of up to 256
                     messages or 8 MiB, acknowledging as --ack says, until all are read;
                     msgs/s per consumer and in all, fetch and ack latency, end-to-end latency
                     (a message's stored timestamp to its fetch) and where each ack floor ended
  3. random load     up to 1,000,000 loads of random sequences from one thread (with --filter,
                     load_next: the first matching message at or after each)
  4. reopen          clean close, then a timed Store::open and a message count check
  5. crash recovery  a child process appends (same sizes, no TTL) until killed with SIGKILL;
                     Store::open on its directory is timed and no acknowledged message may be
                     missing (with --durability always)

With --ttl, messages that expire during the run are counted (before the loads, by the reopen,
and those no consumer received), not failures; every loaded message's TTL is checked.

Latencies come from HDR histograms (p50, p99, p99.9, max). A progress bar appears on stderr
for any phase that runs longer than a second, never with --json or when stderr is not a
terminal. --json prints exactly one JSON object on stdout.

Errors print one line on stderr; exit status 2 for bad arguments, 1 for a failed run.";

const VERIFY_ABOUT: &str = "\
Check every checksum and invariant of a store: block and record checksums (every live message
is read), checkpoints, stream metadata, consumer state files, and the counters against the
blocks. Damage is reported as the exact sequences it cost.

The store is opened as the engine opens it (recovery cuts a torn tail left by a crash, which
held nothing acknowledged; messages past their stream's limits or TTL go), so the broker must
not have it open. No compaction runs. Without --repair no checkpoint is written at the end, so
what recovery found is found again by the next run (info and dump leave the store the same
way).

With --repair, damaged messages are removed and the blocks that held them are rewritten
without them, keeping every good record, and an unreadable checkpoint is replaced; the store
is then checked again. Unreadable stream metadata and consumer state files are reported, not
repaired.

Exit status: 0 sound (after any repair), 3 damaged, 1 the check could not run, 2 bad
arguments.";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let r = match &cli.command {
        Cmd::Bench(a) => bench::run(a),
        Cmd::BenchChild(a) => child::run(a),
        Cmd::Info(a) => info::run(a),
        Cmd::Dump(a) => dump::run(a),
        Cmd::Verify(a) => match verify::run(a) {
            Ok(false) => return ExitCode::from(verify::DAMAGED),
            r => r.map(|_| ()),
        },
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidelog: error: {e}");
            ExitCode::from(FAILURE)
        }
    }
}

/// Prints help or version as clap does; any other parse error as one line, status 2.
fn usage_error(e: clap::Error) -> ExitCode {
    let msg = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "missing command (try 'tidelog bench' or 'tidelog info DIR') (see 'tidelog --help')"
                .to_owned()
        }
        _ => one_line(&e.render().to_string()),
    };
    eprintln!("tidelog: error: {msg}");
    ExitCode::from(USAGE)
}

/// The first paragraph of a clap error, on one line, pointing at the right `--help`.
fn one_line(rendered: &str) -> String {
    let first: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let msg = first.join(" ");
    let msg = msg.strip_prefix("error: ").unwrap_or(&msg).to_owned();
    // `args_os`: `env::args` panics on an argument that is not UTF-8.
    let first = std::env::args_os().nth(1);
    let cmd = match first.as_ref().and_then(|a| a.to_str()) {
        Some(c @ ("bench" | "info" | "verify" | "dump")) => format!("tidelog {c}"),
        _ => "tidelog".to_owned(),
    };
    format!("{msg} (see '{cmd} --help')")
}
