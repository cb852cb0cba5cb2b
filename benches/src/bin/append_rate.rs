//! The Rust API's batch append rate, for hosts that compare their own binding against it in
//! the same run (the Go package's `TestBatchRateVsRust`): appends `--messages` messages of
//! `--payload` bytes in batches of `--batch` to a new stream in `--dir`, one thread, and
//! prints `{"msgs_per_s": R, "secs": S}`.
//!
//! `append_rate --dir D [--messages N] [--payload B] [--batch K] [--durability always|none]`

use std::process::ExitCode;
use std::time::Instant;

use tidelog::{Durability, NewMessage, Store, StoreOptions, StreamConfig};

struct Args {
    dir: String,
    messages: u64,
    payload: usize,
    batch: usize,
    durability: Durability,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        dir: String::new(),
        messages: 1_000_000,
        payload: 128,
        batch: 1000,
        durability: Durability::None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--dir" => a.dir = v,
            "--messages" => a.messages = num(&v)?,
            "--payload" => a.payload = num(&v)? as usize,
            "--batch" => a.batch = num(&v)?.max(1) as usize,
            "--durability" => {
                a.durability = match v.as_str() {
                    "always" => Durability::Always,
                    "none" => Durability::None,
                    _ => return Err(format!("--durability {v}: always or none")),
                }
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.dir.is_empty() {
        return Err("--dir is required".into());
    }
    Ok(a)
}

fn run(a: &Args) -> Result<(f64, f64), String> {
    let store = Store::open(&a.dir, StoreOptions::default()).map_err(|e| e.to_string())?;
    let cfg = StreamConfig::new("rate").durability(a.durability);
    let s = store.create_stream(cfg).map_err(|e| e.to_string())?;
    let subjects: Vec<String> = (0..1000).map(|i| format!("bench.s{i}")).collect();
    let payload = vec![0x5a_u8; a.payload];
    let started = Instant::now();
    let mut done = 0u64;
    while done < a.messages {
        let n = (a.messages - done).min(a.batch as u64) as usize;
        let msgs: Vec<NewMessage<'_>> = (0..n)
            .map(|i| NewMessage::new(&subjects[(done as usize + i) % 1000], &payload))
            .collect();
        s.append_batch(&msgs).map_err(|e| e.to_string())?;
        done += n as u64;
    }
    s.sync().map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    store.close().map_err(|e| e.to_string())?;
    Ok((a.messages as f64 / secs, secs))
}

fn main() -> ExitCode {
    match parse().and_then(|a| run(&a)) {
        Ok((rate, secs)) => {
            println!("{{\"msgs_per_s\": {rate:.0}, \"secs\": {secs:.4}}}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("append_rate: {e}");
            ExitCode::FAILURE
        }
    }
}
