//! Value parsers for numeric options, with messages that name the accepted range.

/// A whole number in `LO..=HI`.
pub fn number<const LO: u64, const HI: u64>(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("expected a whole number, at least {LO}"))?;
    match n {
        n if (LO..=HI).contains(&n) => Ok(n),
        _ if HI == u64::MAX => Err(format!("must be at least {LO}")),
        _ => Err(format!("must be from {LO} to {HI}")),
    }
}

/// Like [`number`], for options stored as `u32` (`HI` must fit).
pub fn number32<const LO: u64, const HI: u64>(s: &str) -> Result<u32, String> {
    number::<LO, HI>(s).and_then(|n| u32::try_from(n).map_err(|_| "too large".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(number::<1, 10>("10"), Ok(10));
        assert_eq!(number::<1, 1000>("1_000"), Ok(1000));
        assert!(number::<1, 10>("0").unwrap_err().contains("from 1 to 10"));
        assert!(number::<1, { u64::MAX }>("0")
            .unwrap_err()
            .contains("at least 1"));
        assert!(number::<1, 10>("x").is_err());
        assert!(number32::<0, 5>("-1").is_err());
    }
}
