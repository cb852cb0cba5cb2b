//! Text forms shared by the inspection commands: sizes, times, byte strings, JSON objects as
//! aligned `key  value` lines.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        _ => format!("{x:.1} {}", UNITS[u]),
    }
}

/// Nanoseconds since the epoch as RFC 3339 UTC; times before the epoch as raw numbers.
pub fn time(ns: i64) -> String {
    match u64::try_from(ns) {
        Ok(ns) => {
            humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
        }
        Err(_) => format!("{ns} ns"),
    }
}

/// `1 block`, `7 blocks`.
pub fn count(n: u64, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}

/// Bytes as text when they are printable UTF-8, otherwise with `\xNN` escapes; the
/// operator reads it, so control characters (C1 ones too: U+009B starts an escape sequence
/// on some terminals) and the direction overrides that make text display in another order
/// than it is stored never reach the terminal raw.
pub fn escaped(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() || reorders(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02x}");
        }
    }
    out
}

/// Bidirectional marks, embeddings, overrides and isolates.
fn reorders(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Bytes for JSON: a string when UTF-8, otherwise `{"hex": "..."}`, so nothing is lost.
pub fn json_bytes(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::from(s),
        Err(_) => {
            serde_json::json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
        }
    }
}

/// A JSON object's fields as aligned `indent key  value` lines, nested objects flattened to
/// `outer.inner` keys, durations as `30s`, nulls left out: configs gain fields, and this
/// shows them without code changes.
pub fn fields(out: &mut String, indent: &str, v: &Value) {
    let mut rows = Vec::new();
    flatten(&mut rows, "", v);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, text) in rows {
        let _ = writeln!(out, "{indent}{k:width$}  {text}");
    }
}

fn flatten(rows: &mut Vec<(String, String)>, prefix: &str, v: &Value) {
    let Some(obj) = v.as_object() else {
        rows.push((prefix.to_owned(), text(v)));
        return;
    };
    for (k, v) in obj {
        let key = match prefix {
            "" => k.clone(),
            p => format!("{p}.{k}"),
        };
        match (v, duration(v)) {
            (Value::Null, _) => {}
            (_, Some(d)) => rows.push((key, d)),
            (Value::Object(_), None) => flatten(rows, &key, v),
            (v, None) => rows.push((key, text(v))),
        }
    }
}

/// A serialized `std::time::Duration` (`{"secs", "nanos"}`) as `1m 30s`.
fn duration(v: &Value) -> Option<String> {
    let o = v.as_object().filter(|o| o.len() == 2)?;
    let secs = Duration::from_secs(o.get("secs")?.as_u64()?);
    let d = secs.checked_add(Duration::from_nanos(o.get("nanos")?.as_u64()?))?;
    Some(humantime::format_duration(d).to_string())
}

/// Inclusive ranges (`[[a, b], ...]`) as `a-b, c`, or `none`.
pub fn ranges(v: &Value) -> String {
    list(v, |r| match (num(&r[0]), num(&r[1])) {
        (a, b) if a == b => a.to_string(),
        (a, b) => format!("{a}-{b}"),
    })
}

/// A JSON array's items joined with `, `, or `none`.
pub fn ids(v: &Value) -> String {
    list(v, Value::to_string)
}

fn list(v: &Value, f: impl Fn(&Value) -> String) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(f).collect();
    match items.is_empty() {
        true => "none".to_owned(),
        false => items.join(", "),
    }
}

/// A JSON string bare (escaped as [`escaped`] does: subjects and names come from the store),
/// anything else as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escaped(s.as_bytes()),
        v => v.to_string(),
    }
}

/// The sum of an object's numeric fields.
pub fn sum(v: &Value) -> u64 {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(_, x)| num(x))
        .sum()
}

pub fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

pub fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(time(-5), "-5 ns");
        assert_eq!(escaped(b"a\n\x01\xffz"), "a\\n\\u{1}\\xffz");
        assert_eq!(
            escaped("a\u{9b}b\u{202e}c".as_bytes()),
            "a\\u{9b}b\\u{202e}c"
        );
        assert_eq!(escaped("é ü 日本".as_bytes()), "é ü 日本");
        assert_eq!(text(&Value::from("x\u{1b}[2J")), "x\\u{1b}[2J");
        assert_eq!(
            (count(1, "block"), count(0, "block")),
            ("1 block".into(), "0 blocks".into())
        );
        assert_eq!(json_bytes(b"ok"), Value::from("ok"));
        assert_eq!(json_bytes(b"\xff"), serde_json::json!({"hex": "ff"}));
        let mut s = String::new();
        fields(
            &mut s,
            "  ",
            &serde_json::json!({"a": 1, "bb": "x", "c": null}),
        );
        assert_eq!(s, "  a   1\n  bb  x\n");
    }
}
