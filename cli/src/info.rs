//! `tidelog info DIR [STREAM]`: what a store holds, for operators.

use std::fmt::Write;
use std::path::PathBuf;

use serde_json::{json, Value};
use tidelog::{Store, Stream, DEFAULT_BUDGET_PERCENT};

use crate::fail::{chain, Context, Fail};
use crate::open;
use crate::out;
use crate::parse::number;
use crate::show;

/// Options of `tidelog info`.
#[derive(Clone, Debug, clap::Args)]
pub struct InfoArgs {
    /// The store's directory.
    pub dir: PathBuf,
    /// Show only this stream (default: every stream).
    pub stream: Option<String>,
    /// Subjects listed per stream, most messages first.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = number::<0, 1_000_000>)]
    pub top: u64,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &InfoArgs) -> Result<(), Fail> {
    let store = open::existing(&a.dir, false)?;
    describe(&store, a).and_then(|v| {
        out::print(&match a.json {
            true => v.to_string(),
            false => human(&v),
        })
    })
}

fn describe(store: &Store, a: &InfoArgs) -> Result<Value, Fail> {
    let streams = open::streams(store, a.stream.as_deref())?;
    let infos = streams
        .iter()
        .map(|s| stream_info(s, a.top as usize))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "dir": store.dir().display().to_string(),
        "io_backend": store.io_backend().to_string(),
        "budget": budget(store),
        "damaged_streams": store.damaged_streams().iter()
            .map(|d| json!({"name": d.name, "why": d.why})).collect::<Vec<_>>(),
        "streams": infos,
    }))
}

/// The budget as this command's open resolved it: the default share of the file system. The
/// store keeps no budget on disk, so the host's own (if it sets one) cannot be known here.
fn budget(store: &Store) -> Value {
    let b = store.budget();
    json!({
        "max_bytes": b.max_bytes,
        "reserve": b.reserve,
        "used": b.used,
        "retiring": b.retiring,
        "used_percent": 100.0 * b.used as f64 / b.max_bytes.max(1) as f64,
        "default_percent_of_file_system": DEFAULT_BUDGET_PERCENT,
    })
}

fn stream_info(s: &Stream, top: usize) -> Result<Value, Fail> {
    let name = s.name().to_owned();
    let ctx = |what: &str| format!("stream {name}: {what}");
    let state = s.state();
    let totals = s.subjects_totals(">").with_context(|| ctx("subjects"))?;
    let mut subjects: Vec<(&String, &u64)> = totals.iter().collect();
    subjects.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let consumers = s
        .consumer_names()
        .iter()
        .map(|c| consumer_info(s, c))
        .collect::<Vec<_>>();
    let damaged: Vec<Value> = s
        .damaged_consumers()
        .into_iter()
        .map(|(n, why)| json!({"name": n, "why": why}))
        .collect();
    Ok(json!({
        "name": name,
        "config": s.config(),
        "state": state,
        "disk_bytes": s.disk_bytes(),
        "index_memory": s.index_memory(),
        "subjects": totals.len(),
        "top_subjects": subjects.iter().take(top)
            .map(|(k, n)| json!({"subject": k, "messages": n})).collect::<Vec<_>>(),
        "consumers": consumers,
        "damaged_consumers": damaged,
        "recovery": s.recovery_report(),
    }))
}

fn consumer_info(s: &Stream, name: &str) -> Value {
    let c = match s.consumer(name) {
        Ok(c) => c,
        Err(e) => return json!({"name": name, "error": chain(&e)}),
    };
    let state = match c.state() {
        Ok(st) => serde_json::to_value(st).unwrap_or(Value::Null),
        Err(e) => json!({"error": chain(&e)}),
    };
    json!({"name": name, "config": c.config(), "state": state})
}

fn human(v: &Value) -> String {
    let mut s = String::new();
    let b = &v["budget"];
    let _ = writeln!(s, "store {}", v["dir"].as_str().unwrap_or(""));
    let _ = writeln!(
        s,
        "  io back end  {}",
        v["io_backend"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        s,
        "  disk         {} used of a {} budget ({:.1}%; the default, {}% of the file system), \
         {} reserved, {} retiring",
        show::bytes(show::num(&b["used"])),
        show::bytes(show::num(&b["max_bytes"])),
        b["used_percent"].as_f64().unwrap_or(0.0),
        show::num(&b["default_percent_of_file_system"]),
        show::bytes(show::num(&b["reserve"])),
        show::bytes(show::num(&b["retiring"])),
    );
    let streams = v["streams"].as_array().map_or(&[][..], Vec::as_slice);
    let _ = writeln!(s, "  streams      {}", streams.len());
    for d in v["damaged_streams"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  DAMAGED      stream {}: {}",
            show::text(&d["name"]),
            show::text(&d["why"])
        );
    }
    for st in streams {
        s.push('\n');
        stream_text(&mut s, st);
    }
    s.trim_end().to_owned()
}

fn stream_text(s: &mut String, v: &Value) {
    let st = &v["state"];
    let _ = writeln!(s, "stream {}", show::text(&v["name"]));
    messages_line(s, st);
    if show::num(&st["messages"]) > 0 {
        let (first, last) = (show::int(&st["first_ts"]), show::int(&st["last_ts"]));
        let _ = writeln!(
            s,
            "  stored       {} .. {}",
            show::time(first),
            show::time(last)
        );
    }
    let _ = writeln!(
        s,
        "  disk         {} on disk, bound {} ({}), index memory {}",
        show::bytes(show::num(&v["disk_bytes"])),
        show::bytes(show::num(&st["max_bytes"])),
        show::text(&st["bound_by"]),
        show::bytes(show::sum(&v["index_memory"])),
    );
    recovery_line(s, &v["recovery"]);
    let _ = writeln!(s, "  config");
    show::fields(s, "    ", &v["config"]);
    let top = v["top_subjects"].as_array().map_or(&[][..], Vec::as_slice);
    let _ = writeln!(
        s,
        "  subjects     {} (top {} by messages)",
        show::num(&v["subjects"]),
        top.len()
    );
    for t in top {
        let _ = writeln!(
            s,
            "    {:>12}  {}",
            show::num(&t["messages"]),
            show::text(&t["subject"])
        );
    }
    consumers_text(s, v);
}

fn messages_line(s: &mut String, st: &Value) {
    let blocks = show::count(show::num(&st["blocks"]), "block");
    let last = show::num(&st["last_seq"]);
    if show::num(&st["messages"]) == 0 {
        // `first_seq..last_seq` would read backwards (`51..50`) for a stream emptied by removals.
        let _ = writeln!(s, "  messages     0 (last sequence {last}), {blocks}");
        return;
    }
    let _ = writeln!(
        s,
        "  messages     {} ({}), sequences {}..{last}, {} deleted, {blocks}",
        show::num(&st["messages"]),
        show::bytes(show::num(&st["bytes"])),
        show::num(&st["first_seq"]),
        show::num(&st["num_deleted"]),
    );
}

/// What opening the stream for this command found; damage is flagged for `verify`.
fn recovery_line(s: &mut String, rec: &Value) {
    let mut damage = String::new();
    if rec["damaged_blocks"]
        .as_array()
        .is_some_and(|b| !b.is_empty())
    {
        damage.push_str(&format!(
            ", DAMAGED blocks {}",
            show::ids(&rec["damaged_blocks"])
        ));
    }
    if !rec["checkpoint_error"].is_null() {
        damage.push_str(", checkpoint DAMAGED");
    }
    if !damage.is_empty() || !show::ranges(&rec["lost"]).eq("none") {
        damage.push_str(" (see 'tidelog verify')");
    }
    let _ = writeln!(
        s,
        "  last open    {} records replayed, {} torn bytes cut, lost {}{damage}",
        show::num(&rec["replayed_records"]),
        show::num(&rec["torn_bytes"]),
        show::ranges(&rec["lost"]),
    );
}

fn consumers_text(s: &mut String, v: &Value) {
    let cs = v["consumers"].as_array().map_or(&[][..], Vec::as_slice);
    let _ = writeln!(s, "  consumers    {}", cs.len());
    for c in cs {
        let _ = writeln!(s, "    {}", show::text(&c["name"]));
        if let Some(e) = c.get("error") {
            let _ = writeln!(s, "      error  {}", show::text(e));
            continue;
        }
        // One aligned block: the state, then the config (its name is the heading).
        let mut both = c["state"].clone();
        if let (Some(b), Some(cfg)) = (both.as_object_mut(), c["config"].as_object()) {
            b.extend(
                cfg.iter()
                    .filter(|(k, _)| *k != "name")
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        show::fields(s, "      ", &both);
    }
    for d in v["damaged_consumers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "    DAMAGED {}: {}",
            show::text(&d["name"]),
            show::text(&d["why"])
        );
    }
}
