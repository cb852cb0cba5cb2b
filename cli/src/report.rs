//! The results of `tidelog bench`, as a human summary or one JSON object.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::bench::{per_sec, AppendResult, BenchArgs, LoadResult, RawResult, ReopenResult};
use crate::crash::CrashResult;
use crate::fail::{Context, Fail};

const MB: f64 = 1e6;

pub struct Report<'a> {
    pub args: &'a BenchArgs,
    pub dir: &'a Path,
    pub temporary: bool,
    pub io_backend: String,
    /// Subject + payload bytes appended.
    pub user_bytes: u64,
    pub raw: RawResult,
    pub append: AppendResult,
    pub load: LoadResult,
    pub reopen: ReopenResult,
    pub crash: CrashResult,
}

/// Figures derived from the raw results.
struct Rates {
    raw_mb_s: f64,
    msgs_s: f64,
    user_mb_s: f64,
    disk_mb_s: f64,
    ratio: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    loads_s: f64,
    syncs_s: f64,
}

impl Report<'_> {
    fn rates(&self) -> Rates {
        let (a, secs) = (&self.append, self.append.secs);
        let raw_mb_s = per_sec(self.raw.bytes as f64 / MB, self.raw.secs);
        let disk_mb_s = per_sec(a.disk_bytes as f64 / MB, secs);
        let us = |q: f64| sig4(a.hist.value_at_quantile(q) as f64 / 1e3);
        Rates {
            raw_mb_s,
            msgs_s: per_sec(self.args.messages as f64, secs),
            user_mb_s: per_sec(self.user_bytes as f64 / MB, secs),
            disk_mb_s,
            ratio: disk_mb_s / raw_mb_s.max(1e-9),
            p50: us(0.5),
            p99: us(0.99),
            p999: us(0.999),
            max: sig4(a.hist.max() as f64 / 1e3),
            loads_s: per_sec(self.load.loads as f64, self.load.secs),
            syncs_s: per_sec(self.raw.syncs as f64, self.raw.sync_secs),
        }
    }
}

/// Prints the report on stdout: JSON with `--json`, a summary otherwise.
pub fn print(r: &Report<'_>) -> Result<(), Fail> {
    let text = if r.args.json {
        let mut s = serde_json::to_string(&to_json(r)).context("encoding JSON")?;
        s.push('\n');
        s
    } else {
        human(r)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing the report")
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// `x` rounded to four significant digits (ratios and latencies span many magnitudes).
fn sig4(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn to_json(r: &Report<'_>) -> Value {
    let (x, a, c) = (r.rates(), r.args, &r.crash);
    json!({
        "messages": a.messages,
        "payload": a.payload,
        "subjects": a.subjects,
        "producers": a.producers,
        "batch": a.batch,
        "durability": a.durability.name(),
        "io_backend": r.io_backend,
        "dir": r.dir.display().to_string(),
        "raw_write_bytes": r.raw.bytes,
        "raw_write_mb_per_s": round1(x.raw_mb_s),
        "raw_fsync_per_s": x.syncs_s.round(),
        "append_msgs_per_fsync": sig4(x.msgs_s / x.syncs_s.max(1e-9)),
        "append_secs": round3(r.append.secs),
        "append_final_sync_secs": round3(r.append.sync_secs),
        "append_calls": r.append.calls,
        "append_msgs_per_s": x.msgs_s.round(),
        "append_mb_per_s": round1(x.user_mb_s),
        "append_disk_bytes": r.append.disk_bytes,
        "append_disk_mb_per_s": round1(x.disk_mb_s),
        "append_vs_raw_ratio": sig4(x.ratio),
        "append_p50_us": x.p50,
        "append_p99_us": x.p99,
        "append_p999_us": x.p999,
        "append_max_us": x.max,
        "load_random_count": r.load.loads,
        "load_random_per_s": x.loads_s.round(),
        "reopen_ms": round3(r.reopen.ms),
        "reopen_replayed_records": r.reopen.replayed_records,
        "crash_acked_msgs": c.acked,
        "crash_recovered_msgs": c.recovered,
        "crash_lost_acked_msgs": c.lost_acked,
        "crash_replayed_records": c.replayed_records,
        "crash_torn_bytes": c.torn_bytes,
        "crash_recover_ms": round3(c.recover_ms),
    })
}

fn human(r: &Report<'_>) -> String {
    let mut s = String::new();
    let _ = header(&mut s, r).and_then(|_| phases(&mut s, r));
    s
}

fn header(s: &mut String, r: &Report<'_>) -> std::fmt::Result {
    let a = r.args;
    writeln!(
        s,
        "tidelog bench: {} messages, {} B payload, {} subjects, durability {}{}, \
         {} producer(s), batch {}",
        a.messages,
        a.payload,
        a.subjects,
        a.durability.name(),
        if a.durability.name() == "interval" {
            " (100 ms)"
        } else {
            ""
        },
        a.producers,
        a.batch
    )?;
    let kept = if r.temporary {
        "temporary, removed afterwards"
    } else {
        "kept"
    };
    writeln!(
        s,
        "store: {} ({kept}); io backend: {}",
        r.dir.display(),
        r.io_backend
    )?;
    writeln!(s, "(MB = 10^6 bytes)\n")
}

fn phases(s: &mut String, r: &Report<'_>) -> std::fmt::Result {
    let (x, ap) = (r.rates(), &r.append);
    writeln!(
        s,
        "raw write       {:.1} MB in 1 MiB writes + fdatasync in {:.2} s: {:.1} MB/s; \
         512 B write + fdatasync: {:.0}/s",
        r.raw.bytes as f64 / MB,
        r.raw.secs,
        x.raw_mb_s,
        x.syncs_s
    )?;
    writeln!(
        s,
        "append          {} msgs in {:.2} s, including the final stream.sync() ({:.3} s): \
         {} msgs/s, {:.1} MB/s of subject+payload",
        thousands(r.args.messages as f64),
        ap.secs,
        ap.sync_secs,
        thousands(x.msgs_s),
        x.user_mb_s
    )?;
    writeln!(
        s,
        "                latency per append call ({} calls): p50 {}, p99 {}, p99.9 {}, max {}",
        thousands(ap.calls as f64),
        duration(x.p50),
        duration(x.p99),
        duration(x.p999),
        duration(x.max)
    )?;
    writeln!(
        s,
        "                {:.1} MB on disk -> {:.1} MB/s = {} x raw write; {} msgs per raw fdatasync",
        ap.disk_bytes as f64 / MB,
        x.disk_mb_s,
        sig4(x.ratio),
        sig4(x.msgs_s / x.syncs_s.max(1e-9))
    )?;
    writeln!(
        s,
        "random load     {} loads in {:.2} s: {} loads/s",
        thousands(r.load.loads as f64),
        r.load.secs,
        thousands(x.loads_s)
    )?;
    writeln!(
        s,
        "reopen          Store::open in {:.1} ms after a clean close ({} records replayed), \
         message count verified",
        r.reopen.ms, r.reopen.replayed_records
    )?;
    crash_lines(s, r)
}

/// Microseconds as `850 ns`, `12.3 us` or `4.56 ms`.
fn duration(us: f64) -> String {
    match us {
        us if us < 1.0 => format!("{:.0} ns", us * 1e3),
        us if us < 1e3 => format!("{us:.1} us"),
        us => format!("{:.2} ms", us / 1e3),
    }
}

/// A count rounded to a whole number, with thousands separators.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn crash_lines(s: &mut String, r: &Report<'_>) -> std::fmt::Result {
    let c = &r.crash;
    writeln!(
        s,
        "crash recovery  child SIGKILLed after {} acked msgs; Store::open in {:.1} ms: \
         {} msgs recovered, {} records replayed, {} torn bytes cut",
        thousands(c.acked as f64),
        c.recover_ms,
        thousands(c.recovered as f64),
        thousands(c.replayed_records as f64),
        c.torn_bytes
    )?;
    if c.lost_acked > 0 {
        writeln!(
            s,
            "                note: {} acked msgs were not recovered; allowed with durability \
             {}: an acknowledged append may still be in process memory when it is killed",
            thousands(c.lost_acked as f64),
            r.args.durability.name()
        )?;
    } else {
        writeln!(
            s,
            "                every acknowledged message was recovered"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(0.2), "0");
        assert_eq!(duration(0.16), "160 ns");
        assert_eq!(duration(12.34), "12.3 us");
        assert_eq!(duration(4567.0), "4.57 ms");
        assert_eq!(sig4(0.000123456), 0.0001235);
        assert_eq!(sig4(1308.671), 1309.0);
        assert_eq!(sig4(0.0), 0.0);
    }
}
