//! `tidelog verify DIR [STREAM] [--repair]`: every checksum and invariant of a store, with the
//! exact sequences that damage cost; `--repair` rewrites damaged blocks keeping every good
//! record.

use std::fmt::Write;
use std::path::PathBuf;

use serde_json::{json, Value};
use tidelog::{Store, Stream};

use crate::fail::{Context, Fail};
use crate::open;
use crate::out;
use crate::show::{escaped, ids, ranges, text};

/// Exit status when damage was found (and, with `--repair`, remains).
pub const DAMAGED: u8 = 3;

/// Options of `tidelog verify`.
#[derive(Clone, Debug, clap::Args)]
pub struct VerifyArgs {
    /// The store's directory.
    pub dir: PathBuf,
    /// Check only this stream (default: every stream).
    pub stream: Option<String>,
    /// Remove the damaged messages and rewrite the blocks that held them, keeping every good
    /// record; then check again.
    #[arg(long)]
    pub repair: bool,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the check; `Ok(true)` when the store is sound (after any repair).
pub fn run(a: &VerifyArgs) -> Result<bool, Fail> {
    let store = open::existing(&a.dir, a.repair)?;
    let sound = check_store(&store, a);
    if !a.repair {
        return sound;
    }
    // A repair wrote: closing makes its checkpoint the one the next open starts from.
    let closed = store.close().context("closing the store");
    let sound = sound?;
    closed.map(|()| sound)
}

/// Checks (and with `--repair` repairs) the streams `a` names, prints the findings and says
/// whether all is sound.
fn check_store(store: &Store, a: &VerifyArgs) -> Result<bool, Fail> {
    // A named stream the store could not open is a finding, like any other damage.
    let named_damaged = a.stream.as_deref().and_then(|n| open::damaged(store, n));
    let streams = match named_damaged {
        Some(_) => Vec::new(),
        None => open::streams(store, a.stream.as_deref())?,
    };
    let results = streams
        .iter()
        .map(|s| checked(s, a.repair))
        .collect::<Result<Vec<_>, _>>()?;
    let damaged = match a.stream {
        Some(_) => named_damaged.into_iter().collect(),
        None => store.damaged_streams(),
    };
    let damaged_streams: Vec<Value> = damaged
        .iter()
        .map(|d| json!({"name": d.name, "why": d.why}))
        .collect();
    let sound = damaged_streams.is_empty() && results.iter().all(is_sound);
    let v = json!({
        "dir": store.dir().display().to_string(),
        "sound": sound,
        "damaged_streams": damaged_streams,
        "streams": results,
    });
    out::print(&match a.json {
        true => v.to_string(),
        false => human(&v),
    })?;
    Ok(sound)
}

/// One stream's findings; with `repair`, a damaged stream is repaired and checked again.
fn checked(s: &Stream, repair: bool) -> Result<Value, Fail> {
    let mut v = check(s);
    if !repair || is_sound(&v) {
        return Ok(v);
    }
    let what = |doing: &str| format!("{doing} stream {}", s.name());
    let repaired = s.repair().with_context(|| what("repairing"))?;
    // Replaces a checkpoint recovery could not read, and records the repair.
    s.checkpoint().with_context(|| what("checkpointing"))?;
    let mut again = check(s);
    again["repair"] = json!(repaired);
    again["repair"]["checkpoint_rewritten"] = json!(!v["recovery"]["checkpoint_error"].is_null());
    // What this open's recovery found stays part of the story after the repair.
    again["recovery"] = v["recovery"].take();
    Ok(again)
}

/// Everything checkable about one stream: what this open's recovery found, every live
/// record's checksum, the counters against the blocks, and the consumers' files.
fn check(s: &Stream) -> Value {
    let rec = s.recovery_report();
    let found = s.verify();
    json!({
        "name": s.name(),
        "checked": found.checked,
        "damaged": found.damaged,
        "damaged_block_files": found.damaged_blocks,
        "recovery": {
            "lost": rec.lost,
            "damaged_blocks": rec.damaged_blocks,
            "torn_bytes": rec.torn_bytes,
            "checkpoint_error": rec.checkpoint_error,
            "lease_error": rec.lease_error,
        },
        "invariants": match s.check_invariants() {
            Ok(()) => Value::Null,
            Err(e) => Value::from(e),
        },
        "damaged_consumers": s.damaged_consumers().into_iter()
            .map(|(n, why)| json!({"name": n, "why": why})).collect::<Vec<_>>(),
    })
}

/// Sound: no damaged record, no broken invariant, no unreadable consumer. What recovery found
/// at this open (lost sequences, damaged blocks, an unreadable checkpoint or lease) is reported, but
/// once repaired it no longer makes the stream unsound. A torn tail is what a crash leaves; it
/// held nothing acknowledged.
fn is_sound(v: &Value) -> bool {
    let empty = |x: &Value| x.as_array().is_none_or(Vec::is_empty);
    let rec = &v["recovery"];
    let recovered_clean = empty(&rec["lost"])
        && empty(&rec["damaged_blocks"])
        && rec["checkpoint_error"].is_null()
        && rec["lease_error"].is_null();
    empty(&v["damaged"])
        && empty(&v["damaged_block_files"])
        && v["invariants"].is_null()
        && empty(&v["damaged_consumers"])
        && (v.get("repair").is_some() || recovered_clean)
}

fn human(v: &Value) -> String {
    let mut s = String::new();
    for d in v["damaged_streams"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "stream {}: DAMAGED metadata, not opened: {} (repair cannot rebuild a stream's config)",
            text(&d["name"]),
            text(&d["why"])
        );
    }
    for st in v["streams"].as_array().into_iter().flatten() {
        stream_text(&mut s, st);
    }
    let verdict = match v["sound"].as_bool() {
        Some(true) => "store is sound",
        _ => "store is DAMAGED (exit status 3)",
    };
    let _ = write!(s, "{verdict}");
    s
}

fn stream_text(s: &mut String, v: &Value) {
    let name = text(&v["name"]);
    let ok = is_sound(v);
    let _ = writeln!(
        s,
        "stream {name}: {} ({} messages checked)",
        if ok { "ok" } else { "DAMAGED" },
        v["checked"]
    );
    let rec = &v["recovery"];
    let lines = [
        ("damaged messages", ranges(&v["damaged"])),
        ("lost at open", ranges(&rec["lost"])),
        ("damaged blocks", ids(&rec["damaged_blocks"])),
        (
            "block header or trailer damaged",
            ids(&v["damaged_block_files"]),
        ),
    ];
    for (what, list) in lines {
        if list != "none" {
            let _ = writeln!(s, "  {what}: {list}");
        }
    }
    if let Some(n) = rec["torn_bytes"].as_u64().filter(|&n| n > 0) {
        let _ = writeln!(
            s,
            "  torn tail cut at open: {n} bytes (an interrupted write)"
        );
    }
    if let Some(e) = rec["checkpoint_error"].as_str() {
        let _ = writeln!(
            s,
            "  checkpoint unreadable, not used: {}",
            escaped(e.as_bytes())
        );
    }
    if let Some(e) = rec["lease_error"].as_str() {
        let _ = writeln!(
            s,
            "  lease unreadable: {} (sequences skipped ahead one lease span)",
            escaped(e.as_bytes())
        );
    }
    if let Some(e) = v["invariants"].as_str() {
        let _ = writeln!(s, "  invariant broken: {}", escaped(e.as_bytes()));
    }
    for d in v["damaged_consumers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  consumer {}: state file unreadable: {} (not repaired: delete and recreate it)",
            text(&d["name"]),
            text(&d["why"])
        );
    }
    if let Some(r) = v.get("repair") {
        let checkpoint = match r["checkpoint_rewritten"].as_bool() {
            Some(true) => ", wrote a new checkpoint",
            _ => "",
        };
        let _ = writeln!(
            s,
            "  repaired: removed {}, rewrote blocks {}{checkpoint}",
            ranges(&r["removed"]),
            ids(&r["rewritten_blocks"])
        );
    }
}
