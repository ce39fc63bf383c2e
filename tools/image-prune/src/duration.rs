//! Go-style durations (`time.ParseDuration`, what docker's `--filter until=` takes):
//! `90s`, `10m`, `1h30m`, `1.5h`, `300ms`, and a bare `0`.

use anyhow::bail;
use std::time::Duration;

/// Parses a duration; negative values and unit-less numbers (other than `0`) are refused.
pub fn parse(s: &str) -> crate::Result<Duration> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || anyhow::anyhow!("invalid duration {s:?}: expected e.g. 90s, 10m, 1h30m, 24h or 0");
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += value * scale;
        rest = tail;
    }
    // Go's limit: about 290 years.
    if !nanos.is_finite() || nanos > i64::MAX as f64 {
        bail!("invalid duration {s:?}: too large");
    }
    Ok(Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse("2h45m10s").unwrap(), Duration::from_secs(9910));
    }

    #[test]
    fn bad_durations() {
        for s in [
            "",
            "10",
            "-5m",
            "m",
            "10x",
            "1..5h",
            ".h",
            "1h 30m",
            "ten",
            "10M",
            "1d",
            "99999999999h",
        ] {
            let err = parse(s).unwrap_err().to_string();
            assert!(err.starts_with("invalid duration"), "{s:?}: {err}");
        }
    }
}
