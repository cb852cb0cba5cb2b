//! Value parsers for options, with messages that name what is accepted.

use std::time::Duration;

use tidelog::{ConfigError, MAX_MESSAGE_LEN, MAX_TTL_SECS};

use crate::workload::SizeRange;

/// A whole number in `LO..=HI`.
pub fn number<const LO: u64, const HI: u64>(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("expected a whole number, at least {LO}"))?;
    in_range::<LO, HI>(n)
}

fn in_range<const LO: u64, const HI: u64>(n: u64) -> Result<u64, String> {
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

/// Binary multiples: a message size is a memory size, so `4K` is 4096 bytes.
const SUFFIXES: [(&str, u64); 5] = [
    ("b", 1),
    ("kib", 1 << 10),
    ("k", 1 << 10),
    ("mib", 1 << 20),
    ("m", 1 << 20),
];

/// A message size: `128`, `4K`, `4KiB`, `1M` or `1MiB` (binary multiples), at most 32 MiB.
pub fn message_size(s: &str) -> Result<u32, String> {
    let max = MAX_MESSAGE_LEN as u64;
    let n = bytes(s)?;
    if n > max {
        return Err(format!("above the largest message, {max} bytes (32 MiB)"));
    }
    u32::try_from(n).map_err(|_| "too large".to_string())
}

fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "").to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let mult = match unit {
        "" => Some(1),
        u => SUFFIXES
            .iter()
            .find(|(name, _)| *name == u)
            .map(|&(_, m)| m),
    };
    let bad = || format!("'{}' is not a size (like 128, 4K, 64KiB or 1M)", s.trim());
    let (Ok(n), Some(mult)) = (num.parse::<u64>(), mult) else {
        return Err(bad());
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// `SIZE` or `MIN..MAX` (sizes as [`message_size`] takes them).
pub fn size_range(s: &str) -> Result<SizeRange, String> {
    let (min, max) = match s.split_once("..") {
        Some((a, b)) => (message_size(a)?, message_size(b)?),
        None => {
            let n = message_size(s)?;
            (n, n)
        }
    };
    if min > max {
        return Err("min above max".to_string());
    }
    Ok(SizeRange { min, max })
}

/// A duration with a unit: `1500ms`, `30s`, `5m`, `2h` or `1d`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().replace('_', "");
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err("expected a duration with a unit, like 30s, 5m, 2h, 1d or 2000ms".into()),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(ms_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("'{}' is not a duration (like 30s or 5m)", s.trim()))
}

/// A per-message TTL in whole seconds, the store's resolution: `30s`, `5m`, `2000ms`.
pub fn ttl_secs(s: &str) -> Result<u64, String> {
    let d = duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err("the store keeps TTLs in whole seconds (try 1s or more)".into());
    }
    match d.as_secs() {
        0 => Err("must be at least 1s".into()),
        n if n > MAX_TTL_SECS => Err(format!("must be at most {MAX_TTL_SECS}s (100 years)")),
        n => Ok(n),
    }
}

/// A subject filter, checked by the store's own rules (`bench.s7`, `bench.*`, `>`).
pub fn filter(s: &str) -> Result<String, String> {
    match tidelog::subject::validate_filter(s) {
        Ok(()) => Ok(s.to_owned()),
        Err(ConfigError::InvalidFilter { why, .. }) => Err(format!("not a subject filter: {why}")),
        Err(e) => Err(e.to_string()),
    }
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

    #[test]
    fn sizes() {
        assert_eq!(message_size("128"), Ok(128));
        assert_eq!(message_size("4K"), Ok(4096));
        assert_eq!(message_size("4kib"), Ok(4096));
        assert_eq!(message_size("1M"), Ok(1 << 20));
        assert_eq!(message_size("32MiB"), Ok(32 << 20));
        assert_eq!(message_size("0"), Ok(0));
        assert!(message_size("33M").unwrap_err().contains("largest"));
        assert!(message_size("4KB").is_err());
        assert!(message_size("").is_err());
        assert!(message_size("-1").is_err());
        let r = size_range("64..4K").unwrap();
        assert_eq!((r.min, r.max), (64, 4096));
        let r = size_range("100").unwrap();
        assert_eq!((r.min, r.max), (100, 100));
        assert_eq!(size_range("10..5").unwrap_err(), "min above max");
        assert!(size_range("10..").is_err());
        assert!(size_range("..10").is_err());
    }

    #[test]
    fn durations_and_ttls() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert!(duration("5").is_err());
        assert!(duration("s").is_err());
        assert_eq!(ttl_secs("30s"), Ok(30));
        assert_eq!(ttl_secs("2000ms"), Ok(2));
        assert_eq!(ttl_secs("1h"), Ok(3600));
        assert!(ttl_secs("500ms").unwrap_err().contains("whole seconds"));
        assert!(ttl_secs("0s").is_err());
        assert!(ttl_secs("36600d").is_err());
    }

    #[test]
    fn filters() {
        assert_eq!(filter("bench.*").as_deref(), Ok("bench.*"));
        assert!(filter("bench..x").unwrap_err().contains("empty token"));
        assert!(filter("bench.s1*").unwrap_err().contains("wildcard"));
    }
}
