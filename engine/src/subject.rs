//! Subjects (`orders.eu.42`) and filters (`orders.*.42`, `orders.>`).

use crate::error::ConfigError;
use crate::record::MAX_SUBJECT_LEN;

fn check_tokens(s: &str, wildcards: bool) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > MAX_SUBJECT_LEN {
        return Err("longer than 4096 bytes");
    }
    let b = s.as_bytes();
    if plain_tokens(b) {
        return Ok(());
    }
    // Only subjects with wildcards or bad bytes get here.
    let mut tok_start = 0;
    for i in 0..=b.len() {
        let c = b.get(i).copied().unwrap_or(b'.');
        if c != b'.' {
            if c <= b' ' || c == 0x7f {
                return Err("whitespace or control character");
            }
            continue;
        }
        let tok = &b[tok_start..i];
        if tok.is_empty() {
            return Err("empty token");
        }
        let wild = tok == b"*" || tok == b">";
        if !wild && tok.iter().any(|&c| c == b'*' || c == b'>') {
            return Err("wildcard inside a token");
        }
        if wild && !wildcards {
            return Err("wildcards are not allowed in a published subject");
        }
        if tok == b">" && i != b.len() {
            return Err("'>' must be the last token");
        }
        tok_start = i + 1;
    }
    Ok(())
}

/// Byte classes for the fast path: 0 plain, 1 dot, 2 needs the slow path.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i == b'.' as usize {
            1
        } else if i <= b' ' as usize || i == 0x7f || i == b'*' as usize || i == b'>' as usize {
            2
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Fast path run on every append: true when `b` is non-empty dot-separated tokens of plain
/// bytes (no wildcard, whitespace or control characters).
fn plain_tokens(b: &[u8]) -> bool {
    let mut prev_dot = true;
    for &c in b {
        match CLASS[c as usize] {
            0 => prev_dot = false,
            1 if !prev_dot => prev_dot = true,
            _ => return false,
        }
    }
    !prev_dot
}

/// Validates a subject a message is published to (no wildcards).
pub fn validate_subject(s: &str) -> Result<(), ConfigError> {
    check_tokens(s, false).map_err(|why| ConfigError::InvalidSubject {
        subject: s.to_owned(),
        why,
    })
}

/// Validates a filter (wildcards allowed).
pub fn validate_filter(s: &str) -> Result<(), ConfigError> {
    check_tokens(s, true).map_err(|why| ConfigError::InvalidFilter {
        filter: s.to_owned(),
        why,
    })
}

/// True when `subject` matches `filter`. Both must be valid.
pub fn matches(filter: &str, subject: &str) -> bool {
    matches_bytes(filter.as_bytes(), subject.as_bytes())
}

/// [`matches`] on raw bytes (subjects read back from records).
pub fn matches_bytes(filter: &[u8], subject: &[u8]) -> bool {
    let mut f = filter.split(|&c| c == b'.');
    let mut s = subject.split(|&c| c == b'.');
    loop {
        match (f.next(), s.next()) {
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True when some subject matches both filters (both must be valid).
pub fn overlaps(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        match (x.next(), y.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(p), Some(q)) if p == "*" || q == "*" || p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True when `filter` has no wildcard (it names one subject).
pub fn is_literal(filter: &str) -> bool {
    !filter.split('.').any(|t| t == "*" || t == ">")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_filters() {
        for (a, b, want) in [
            ("a.b", "a.b", true),
            ("a.*", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            ("a.*", "b.*", false),
            ("*.b", "a.*", true),
            ("a.*.c", "a.b", false),
            (">", "x", true),
        ] {
            assert_eq!(overlaps(a, b), want, "{a} {b}");
            assert_eq!(overlaps(b, a), want, "{b} {a}");
        }
    }

    #[test]
    fn subjects() {
        assert!(validate_subject("a.b.c").is_ok());
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "a.*",
            "a.>",
            "a b",
            "a.b*",
            &"x".repeat(5000),
        ] {
            assert!(validate_subject(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn filters() {
        for ok in ["a.*", "a.>", ">", "*.b.*"] {
            assert!(validate_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["a.>.b", "a.b>", "", "a..*"] {
            assert!(validate_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching() {
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "x"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.c"));
    }
}
