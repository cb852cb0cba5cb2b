//! The results of `tidelog bench`, as a human summary or one JSON object.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::bench::{
    per_sec, AppendResult, BenchArgs, ConsumeResult, LoadResult, RawResult, ReopenResult, Tally,
    TtlResult, FETCH, FETCH_BYTES,
};
use crate::crash::CrashResult;
use crate::fail::{Context, Fail};
use crate::out;

const MB: f64 = 1e6;

pub struct Report<'a> {
    pub args: &'a BenchArgs,
    pub dir: &'a Path,
    pub temporary: bool,
    pub io_backend: String,
    /// Subject + payload bytes appended.
    pub user_bytes: u64,
    pub payload_bytes: u64,
    /// Messages whose subject matches --filter (all without one).
    pub matching: u64,
    pub raw: RawResult,
    pub append: AppendResult,
    pub consume: Option<ConsumeResult>,
    pub load: LoadResult,
    pub reopen: ReopenResult,
    pub ttl: Option<TtlResult>,
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
        let [p50, p99, p999, max] = quantiles(&a.hist);
        Rates {
            raw_mb_s,
            msgs_s: per_sec(self.args.messages as f64, secs),
            user_mb_s: per_sec(self.user_bytes as f64 / MB, secs),
            disk_mb_s,
            ratio: disk_mb_s / raw_mb_s.max(1e-9),
            p50,
            p99,
            p999,
            max,
            loads_s: per_sec(self.load.loads as f64, self.load.secs),
            syncs_s: per_sec(self.raw.syncs as f64, self.raw.sync_secs),
        }
    }

    /// Mean payload bytes per message.
    fn mean_payload(&self) -> f64 {
        self.payload_bytes as f64 / self.args.messages.max(1) as f64
    }
}

/// A quantile of a nanosecond histogram in microseconds, four significant digits.
fn us_at(h: &Histogram<u64>, q: f64) -> f64 {
    sig4(h.value_at_quantile(q) as f64 / 1e3)
}

/// p50, p99, p99.9 and max of a nanosecond histogram, in microseconds.
fn quantiles(h: &Histogram<u64>) -> [f64; 4] {
    [
        us_at(h, 0.5),
        us_at(h, 0.99),
        us_at(h, 0.999),
        sig4(h.max() as f64 / 1e3),
    ]
}

/// Prints the report on stdout: JSON with `--json`, a summary otherwise.
pub fn print(r: &Report<'_>) -> Result<(), Fail> {
    let text = if r.args.json {
        serde_json::to_string(&to_json(r)).context("encoding JSON")?
    } else {
        human(r).trim_end().to_owned()
    };
    out::print(&text)
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
    let mut v = base_json(r);
    if let Value::Object(m) = &mut v {
        m.extend(workload_json(r));
        m.extend(consume_json(r));
    }
    v
}

fn base_json(r: &Report<'_>) -> Value {
    let (x, a, c) = (r.rates(), r.args, &r.crash);
    json!({
        "messages": a.messages,
        "payload": r.mean_payload().round() as u64,
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
        "load_random_missing": r.load.missing,
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

/// Message sizes, TTL and filter.
fn workload_json(r: &Report<'_>) -> Map<String, Value> {
    let (a, sizes, t) = (r.args, r.args.sizes(), r.ttl.as_ref());
    fields(json!({
        "message_size_min": sizes.min,
        "message_size_max": sizes.max,
        "payload_bytes_total": r.payload_bytes,
        "ttl_secs": a.ttl,
        "ttl_expired_before_load": t.map(|t| t.expired_before_load),
        "ttl_expired_at_reopen": t.map(|t| t.expired_at_reopen),
        "ttl_run_secs": t.map(|t| round3(t.run_secs)),
        "filter": a.filter,
        "filter_matching_msgs": r.matching,
        "reopen_messages": r.reopen.messages,
    }))
}

/// The consumers' figures; null when the run had none.
fn consume_json(r: &Report<'_>) -> Map<String, Value> {
    let c = r.consume.as_ref();
    let total = c.map(|c| c.runs.iter().map(|t| t.msgs).sum::<u64>());
    let q = |h: fn(&ConsumeResult) -> &Histogram<u64>, i: usize| {
        c.filter(|c| !h(c).is_empty()).map(|c| quantiles(h(c))[i])
    };
    fields(json!({
        "consumers": r.args.consumer_count(),
        "ack": c.map(|c| c.ack.name()),
        "consume_expected_per_consumer": c.map(|c| c.expected),
        "consume_msgs_total": total,
        "consume_missed_msgs": c.map(missed),
        "consume_secs": c.map(|c| round3(c.secs)),
        "consume_msgs_per_s": c.zip(total).map(|(c, t)| per_sec(t as f64, c.secs).round()),
        "consume_fetches": c.map(|c| c.fetch.len()),
        "consume_fetch_p50_us": q(|c| &c.fetch, 0),
        "consume_fetch_p99_us": q(|c| &c.fetch, 1),
        "consume_fetch_p999_us": q(|c| &c.fetch, 2),
        "consume_acks": c.map(|c| c.ack_lat.len()),
        "consume_ack_p50_us": q(|c| &c.ack_lat, 0),
        "consume_ack_p99_us": q(|c| &c.ack_lat, 1),
        "consume_ack_p999_us": q(|c| &c.ack_lat, 2),
        "consume_e2e_p50_us": q(|c| &c.e2e, 0),
        "consume_e2e_p99_us": q(|c| &c.e2e, 1),
        "consume_e2e_p999_us": q(|c| &c.e2e, 2),
        "consume_e2e_max_us": q(|c| &c.e2e, 3),
        "consume_redelivered": c.map(|c| c.runs.iter().map(|t| t.redelivered).sum::<u64>()),
        "consume_ack_floor_at_last": c.map(floor_at_last),
        "consumer_runs": c.map(|c| c.runs.iter().map(run_json).collect::<Vec<_>>()),
    }))
}

/// The members of a `json!` object.
fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Matching messages the consumers did not read (they expired first).
fn missed(c: &ConsumeResult) -> u64 {
    let total: u64 = c.runs.iter().map(|t| t.msgs).sum();
    (c.expected * c.runs.len() as u64).saturating_sub(total)
}

fn run_json(t: &Tally) -> Value {
    json!({
        "name": t.name,
        "msgs": t.msgs,
        "secs": round3(t.secs),
        "msgs_per_s": per_sec(t.msgs as f64, t.secs).round(),
        "fetches": t.fetches,
        "idle_fetches": t.idle_fetches,
        "redelivered": t.redelivered,
        "acks_not_pending": t.acks_not_pending,
        "ack_floor": t.ack_floor,
        "last_delivered": t.last_delivered,
        "ack_pending": t.ack_pending,
    })
}

/// Every consumer's ack floor reached its last delivered message, nothing left pending.
fn floor_at_last(c: &ConsumeResult) -> bool {
    c.runs.iter().all(settled)
}

fn settled(t: &Tally) -> bool {
    t.ack_floor == t.last_delivered && t.ack_pending == 0
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
        "tidelog bench: {} messages, {}, {} subjects, durability {}{}, \
         {} producer(s), batch {}",
        a.messages,
        payload_words(r),
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
    extras(s, r)?;
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

/// `128 B payload` or `64..4096 B payloads (uniform, mean 2080 B)`.
fn payload_words(r: &Report<'_>) -> String {
    let z = r.args.sizes();
    if z.min == z.max {
        return format!("{} B payload", z.min);
    }
    format!(
        "{}..{} B payloads (uniform, mean {:.0} B)",
        z.min,
        z.max,
        r.mean_payload()
    )
}

/// The header line of the options a plain run does not use.
fn extras(s: &mut String, r: &Report<'_>) -> std::fmt::Result {
    let a = r.args;
    let mut parts = Vec::new();
    if let Some(c) = &r.consume {
        parts.push(format!(
            "{} consumer(s) with ack {}, each reading every matching message",
            c.runs.len(),
            c.ack.name()
        ));
    }
    if let Some(f) = &a.filter {
        parts.push(format!("filter {f}"));
    }
    if let Some(t) = a.ttl {
        parts.push(format!("TTL {} on every message", secs_words(t)));
    }
    if parts.is_empty() {
        return Ok(());
    }
    writeln!(s, "               {}", parts.join("; "))
}

/// Seconds as `45 s`, `5 min` or `2 h` when whole.
fn secs_words(t: u64) -> String {
    match t {
        t if t % 3600 == 0 => format!("{} h", t / 3600),
        t if t % 60 == 0 => format!("{} min", t / 60),
        t => format!("{t} s"),
    }
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
    if let Some(c) = &r.consume {
        consume_lines(s, c)?;
    }
    load_lines(s, r, &x)?;
    ttl_lines(s, r)?;
    crash_lines(s, r)
}

fn consume_lines(s: &mut String, c: &ConsumeResult) -> std::fmt::Result {
    let total: u64 = c.runs.iter().map(|t| t.msgs).sum();
    writeln!(
        s,
        "consume         {} consumer(s) read {} of {} matching msgs each (with the appends) \
         in {:.2} s: {} msgs/s in all",
        c.runs.len(),
        spread(c, |t| t.msgs as f64),
        thousands(c.expected as f64),
        c.secs,
        thousands(per_sec(total as f64, c.secs))
    )?;
    writeln!(
        s,
        "                per consumer: {} msgs/s",
        spread(c, |t| per_sec(t.msgs as f64, t.secs))
    )?;
    let fetch = format!(
        "per fetch of up to {FETCH} msgs / {} MiB",
        FETCH_BYTES >> 20
    );
    latency_line(s, &fetch, &c.fetch, "fetches")?;
    if !c.ack_lat.is_empty() {
        latency_line(s, "per ack call", &c.ack_lat, "calls")?;
    }
    latency_line(s, "end to end, stored -> fetched", &c.e2e, "msgs")?;
    floor_line(s, c)
}

/// One figure of the consumers: the figure when they all agree, else the lowest and the
/// highest, with whose they are.
fn spread(c: &ConsumeResult, f: impl Fn(&Tally) -> f64) -> String {
    let by = |a: &&Tally, b: &&Tally| f(a).total_cmp(&f(b));
    let (Some(lo), Some(hi)) = (c.runs.iter().min_by(by), c.runs.iter().max_by(by)) else {
        return String::new();
    };
    let (l, h) = (thousands(f(lo)), thousands(f(hi)));
    if l == h {
        return l;
    }
    format!("{l} ({}) to {h} ({})", lo.name, hi.name)
}

fn latency_line(s: &mut String, what: &str, h: &Histogram<u64>, of: &str) -> std::fmt::Result {
    let [p50, p99, p999, max] = quantiles(h);
    writeln!(
        s,
        "                latency {what} ({} {of}): p50 {}, p99 {}, p99.9 {}, max {}",
        thousands(h.len() as f64),
        duration(p50),
        duration(p99),
        duration(p999),
        duration(max)
    )
}

fn floor_line(s: &mut String, c: &ConsumeResult) -> std::fmt::Result {
    let redelivered: u64 = c.runs.iter().map(|t| t.redelivered).sum();
    let expired = match missed(c) {
        0 => String::new(),
        n => format!("; {} msgs expired before delivery", thousands(n as f64)),
    };
    if c.runs.iter().all(settled) {
        return writeln!(
            s,
            "                ack floor at the last delivered message on every consumer, \
             none pending; {redelivered} redeliveries{expired}"
        );
    }
    for t in c.runs.iter().filter(|t| !settled(t)) {
        writeln!(
            s,
            "                note: {} ack floor {} below its last delivered message {} \
             ({} pending)",
            t.name, t.ack_floor, t.last_delivered, t.ack_pending
        )?;
    }
    writeln!(s, "                {redelivered} redeliveries{expired}")
}

fn load_lines(s: &mut String, r: &Report<'_>, x: &Rates) -> std::fmt::Result {
    let how = match &r.args.filter {
        Some(f) => format!(" (load_next with filter {f})"),
        None => String::new(),
    };
    let missing = match r.load.missing {
        0 => String::new(),
        n => format!("; {} found expired", thousands(n as f64)),
    };
    writeln!(
        s,
        "random load     {} loads{how} in {:.2} s: {} loads/s{missing}",
        thousands(r.load.loads as f64),
        r.load.secs,
        thousands(x.loads_s)
    )?;
    let count = if r.ttl.is_some() {
        format!("{} messages left", thousands(r.reopen.messages as f64))
    } else {
        "message count verified".to_owned()
    };
    writeln!(
        s,
        "reopen          Store::open in {:.1} ms after a clean close ({} records replayed), \
         {count}",
        r.reopen.ms, r.reopen.replayed_records
    )
}

fn ttl_lines(s: &mut String, r: &Report<'_>) -> std::fmt::Result {
    let Some(t) = &r.ttl else {
        return Ok(());
    };
    writeln!(
        s,
        "ttl             every message appended with a {} TTL (checked on every load); \
         {} expired before the random loads, {} by the reopen, {:.1} s after the first append",
        secs_words(t.secs),
        thousands(t.expired_before_load as f64),
        thousands(t.expired_at_reopen as f64),
        t.run_secs
    )
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
        assert_eq!(secs_words(45), "45 s");
        assert_eq!(secs_words(300), "5 min");
        assert_eq!(secs_words(7200), "2 h");
    }
}
