//! `tidelog`: the command-line tool of the tidelog message store.

mod bench;
mod child;
mod crash;
mod fail;
mod parse;
mod progress;
mod report;
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
    /// Measure append throughput and latency, random loads, reopen and crash recovery
    /// against the raw write speed of the same file system.
    #[command(long_about = BENCH_ABOUT)]
    Bench(bench::BenchArgs),
    /// Internal: the process `bench` kills to measure crash recovery.
    #[command(hide = true)]
    BenchChild(child::ChildArgs),
}

const BENCH_ABOUT: &str = "\
Measure append throughput and latency, random loads, reopen and crash recovery against the
raw write speed of the same file system.

Phases, in one run:
  1. raw write       sequential 1 MiB writes of about as many bytes as the store will write,
                     then fdatasync (the file-system limit)
  2. append          N messages from P producer threads (append, or append_batch when B > 1),
                     per-call latency percentiles; the final stream.sync() is included in the
                     time, so the figure covers data reaching the OS (and disk when synced)
  3. random load     up to 1,000,000 loads of random sequences from one thread
  4. reopen          clean close, then a timed Store::open and a message count check
  5. crash recovery  a child process appends until killed with SIGKILL; Store::open on its
                     directory is timed and no acknowledged message may be missing
                     (with --durability always)

Errors print one line on stderr; exit status 2 for bad arguments, 1 for a failed run.";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let r = match &cli.command {
        Cmd::Bench(a) => bench::run(a),
        Cmd::BenchChild(a) => child::run(a),
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
            "missing command (try 'tidelog bench') (see 'tidelog --help')".to_owned()
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
    let cmd = match std::env::args().nth(1).as_deref() {
        Some("bench") => "tidelog bench",
        _ => "tidelog",
    };
    format!("{msg} (see '{cmd} --help')")
}
