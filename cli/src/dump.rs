//! `tidelog dump DIR STREAM`: a stream's messages with their headers, as text or JSON lines.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use serde_json::{json, Value};
use tidelog::{QueryError, StoredMessage, Stream, Ttl};

use crate::fail::{chain, Context, Fail};
use crate::open;
use crate::out;
use crate::parse::number;
use crate::show;

/// Options of `tidelog dump`.
#[derive(Clone, Debug, clap::Args)]
pub struct DumpArgs {
    /// The store's directory.
    pub dir: PathBuf,
    /// The stream to dump.
    pub stream: String,
    /// First sequence to show.
    #[arg(long, value_name = "SEQ", default_value_t = 1, value_parser = number::<1, { u64::MAX }>)]
    pub from: u64,
    /// Only subjects matching this filter (`*` one token, `>` the rest), e.g. `orders.*.eu`.
    #[arg(long, value_name = "FILTER", default_value = ">", value_parser = filter)]
    pub filter: String,
    /// Stop after this many messages (default: all).
    #[arg(long, value_name = "N", value_parser = number::<1, { u64::MAX }>)]
    pub limit: Option<u64>,
    /// One JSON object per message, one per line (bytes that are not UTF-8 as `{"hex": ..}`).
    #[arg(long)]
    pub json: bool,
}

fn filter(s: &str) -> Result<String, String> {
    tidelog::subject::validate_filter(s)
        .map(|()| s.to_owned())
        .map_err(|e| chain(&e))
}

pub fn run(a: &DumpArgs) -> Result<(), Fail> {
    let store = open::existing(&a.dir, false)?;
    open::stream(&store, &a.stream).and_then(|s| dump(&s, a))
}

fn dump(s: &Stream, a: &DumpArgs) -> Result<(), Fail> {
    let mut out = BufWriter::new(io::stdout().lock());
    if walk(s, a, &mut out)? == Walk::ReaderGone {
        return Ok(());
    }
    out::quiet_pipe(out.flush()).context("writing to stdout")
}

#[derive(PartialEq)]
enum Walk {
    Done,
    /// Stdout was closed (`| head`): the reader has what it wanted, so the dump ends quietly.
    ReaderGone,
}

fn walk(s: &Stream, a: &DumpArgs, out: &mut impl Write) -> Result<Walk, Fail> {
    let mut from = a.from;
    let mut left = a.limit.unwrap_or(u64::MAX);
    while left > 0 {
        let (seq, written) = match s.load_next(&a.filter, from) {
            Ok(Some(m)) => (m.seq, message(out, &m, a.json)),
            Ok(None) => break,
            // Damage costs that message only: say so in place and go on.
            Err(QueryError::Corrupt(seq)) => (seq, damaged(out, seq, a.json)),
            Err(e) => {
                return Err(Fail::new(format!(
                    "reading stream {} from sequence {from}: {}",
                    s.name(),
                    chain(&e)
                )))
            }
        };
        match written {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Walk::ReaderGone),
            r => r.context("writing to stdout")?,
        }
        // `max`: the walk only ever moves forward, whatever sequence the store names.
        let Some(next) = seq.max(from).checked_add(1) else {
            break;
        };
        from = next;
        left -= 1;
    }
    Ok(Walk::Done)
}

fn message(out: &mut impl Write, m: &StoredMessage, json: bool) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", to_json(m));
    }
    let mut flags = String::new();
    if let Some(t) = m.ttl {
        flags.push_str(&format!(" ttl={}", ttl(t)));
    }
    if m.marker {
        flags.push_str(" marker");
    }
    if let Some(r) = m.rollup {
        flags.push_str(&format!(" rollup={r:?}").to_lowercase());
    }
    if let Some(id) = m.msg_id() {
        flags.push_str(&format!(" msg_id={}", show::escaped(id)));
    }
    writeln!(
        out,
        "{} {} {}{flags} ({} B)",
        m.seq,
        show::time(m.ts),
        show::escaped(m.subject().as_bytes()),
        m.payload().len()
    )?;
    if !m.headers().is_empty() {
        writeln!(out, "  headers: {}", show::escaped(m.headers()))?;
    }
    writeln!(out, "  payload: {}", show::escaped(m.payload()))
}

fn damaged(out: &mut impl Write, seq: u64, json: bool) -> io::Result<()> {
    match json {
        true => writeln!(out, "{}", json!({"seq": seq, "damaged": true})),
        false => writeln!(
            out,
            "{seq} DAMAGED (fails its checksum; `tidelog verify --repair` removes it)"
        ),
    }
}

fn ttl(t: Ttl) -> String {
    match t {
        Ttl::Secs(s) => format!("{s}s"),
        Ttl::Never => "never".to_owned(),
    }
}

fn to_json(m: &StoredMessage) -> Value {
    json!({
        "seq": m.seq,
        "ts": m.ts,
        "time": show::time(m.ts),
        "subject": m.subject(),
        "headers": show::json_bytes(m.headers()),
        "payload": show::json_bytes(m.payload()),
        "ttl": m.ttl.map(ttl),
        "marker": m.marker,
        "rollup": m.rollup.map(|r| format!("{r:?}").to_lowercase()),
        "msg_id": m.msg_id().map(show::json_bytes),
    })
}
