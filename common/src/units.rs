//! docker's human units, to the byte: go-units `HumanSizeWithPrecision` (`HumanSize` is
//! precision 4) and `HumanDuration`; and sizes read as dive reads them (go-humanize
//! `ParseBytes`), so a `.dive-ci` limit means the same bytes here.

use anyhow::{Context, bail};

/// `24.3MB`, `8.46kB`, `0B`: 1000-based, `precision` significant digits as Go's `%.*g`, no
/// space. docker prints image and history sizes with precision 3, prune and df totals with 4.
pub fn human_size(bytes: u64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g(size, precision), UNITS[unit])
}

/// Go's `fmt.Sprintf("%.*g", precision, x)` for x ≥ 0: trailing zeros trimmed, exponent form
/// when the rounded exponent is < -4 or ≥ precision (so with 3, 999.5 kB prints `1e+03kB`,
/// as docker does).
fn go_g(x: f64, precision: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    // Rust and Go both round the exact binary value half-to-even, so the digits agree.
    let precision = precision.max(1);
    let sci = format!("{x:.*e}", precision - 1);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs());
    }
    trim_zeros(&format!("{x:.*}", (precision as i32 - 1 - exp).max(0) as usize)).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// docker's CREATED cell: how long before `now` the whole second of `created` was, as
/// go-units `HumanDuration` says it, and " ago" ("2 minutes ago").
pub fn created_since(now: &crate::time::Time, created: &crate::time::Time) -> String {
    let whole = crate::time::Time {
        secs: created.secs,
        nanos: 0,
    };
    format!("{} ago", human_duration(now.since(&whole)))
}

/// A size as go-humanize's `ParseBytes` reads it (dive's `highestWastedBytes`): a number
/// (decimals and `,` separators allowed) then an optional unit, case-insensitive, spaces
/// between allowed: `B`, `kB`/`k` = 1000, `KiB`/`Ki` = 1024, and so on to `EB`/`EiB`.
/// `20MB` is 20,000,000 bytes, `20MiB` 20,971,520; a bare number is bytes.
pub fn parse_size(s: &str) -> crate::Result<u64> {
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(s.len());
    let number: f64 = s[..digits]
        .replace(',', "")
        .parse()
        .with_context(|| format!("{s:?} is not a size (a number, then B, kB, MB, KiB, MiB, …)"))?;
    let unit = s[digits..].trim().to_ascii_lowercase();
    let power = |base: u64, n: u32| base.pow(n);
    let multiplier = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => power(1000, 1),
        "ki" | "kib" => power(1024, 1),
        "m" | "mb" => power(1000, 2),
        "mi" | "mib" => power(1024, 2),
        "g" | "gb" => power(1000, 3),
        "gi" | "gib" => power(1024, 3),
        "t" | "tb" => power(1000, 4),
        "ti" | "tib" => power(1024, 4),
        "p" | "pb" => power(1000, 5),
        "pi" | "pib" => power(1024, 5),
        "e" | "eb" => power(1000, 6),
        "ei" | "eib" => power(1024, 6),
        _ => bail!("{s:?}: unknown size unit {unit:?} (B, kB, MB, GB, KiB, MiB, GiB, …)"),
    };
    let bytes = number * multiplier as f64;
    if bytes >= u64::MAX as f64 {
        bail!("{s:?}: too large");
    }
    Ok(bytes as u64)
}

/// go-units `HumanDuration` of a duration in nanoseconds ("About a minute", "4 weeks").
pub fn human_duration(nanos: i128) -> String {
    const S: i128 = 1_000_000_000;
    const H: i128 = 3600 * S;
    let seconds = nanos / S;
    let minutes = nanos / (60 * S);
    // go-units rounds hours to the nearest (`int(d.Hours() + 0.5)`), but not years.
    let hours = (nanos + H / 2).div_euclid(H);
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", nanos / H / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        let cases = [
            (0, "0B"),
            (1, "1B"),
            (999, "999B"),
            (1000, "1kB"),
            (1024, "1.02kB"),
            (24_300_000, "24.3MB"),
            (8_460_000, "8.46MB"),
            (183_000_000, "183MB"),
            (24_250, "24.2kB"),
            (24_350, "24.4kB"),
            (999_499, "999kB"),
            (999_500, "1e+03kB"),
            (10_485_760, "10.5MB"),
            (u64::MAX, "18.4EB"),
        ];
        for (n, want) in cases {
            assert_eq!(human_size(n, 3), want, "{n}");
        }
        // go-units HumanSize, as docker's prune and df totals print.
        assert_eq!(human_size(16_430_000, 4), "16.43MB");
        assert_eq!(human_size(1_840, 4), "1.84kB");
        assert_eq!(human_size(999_960, 4), "1000kB");
        assert_eq!(human_size(1024, 4), "1.024kB");
        assert_eq!(human_size(24_312_345, 4), "24.31MB");
        assert_eq!(human_size(10_000_000_000_000, 4), "10TB");
        assert_eq!(human_size(u64::MAX, 4), "18.45EB");
    }

    #[test]
    fn sizes_parse_as_go_humanize_parses_them() {
        let cases = [
            ("0", 0),
            ("42", 42),
            ("42B", 42),
            ("20MB", 20_000_000),
            ("20mb", 20_000_000),
            ("20 MB", 20_000_000),
            ("20M", 20_000_000),
            ("10MiB", 10_485_760),
            ("1.5kB", 1500),
            ("1,000 kB", 1_000_000),
            ("2GiB", 2 << 30),
            ("1 EiB", 1 << 60),
        ];
        for (s, want) in cases {
            assert_eq!(parse_size(s).unwrap(), want, "{s}");
        }
        for bad in ["", "MB", "-1", " 5", "5 parsecs", "1e3", "20EiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn durations_as_go_units_prints_them() {
        let s = |n: i128| n * 1_000_000_000;
        let cases = [
            (-s(5), "Less than a second"),
            (s(1) - 1, "Less than a second"),
            (s(1), "1 second"),
            (s(59), "59 seconds"),
            (s(60), "About a minute"),
            (s(119), "About a minute"),
            (s(120), "2 minutes"),
            (s(3599), "59 minutes"),
            (s(3600), "About an hour"),
            (s(5399), "About an hour"),
            (s(5400), "2 hours"),
            (s(47 * 3600 + 1799), "47 hours"),
            (s(47 * 3600 + 1800), "2 days"),
            (s(13 * 86400), "13 days"),
            (s(14 * 86400), "2 weeks"),
            (s(28 * 86400), "4 weeks"),
            (s(60 * 86400), "2 months"),
            (s(729 * 86400), "24 months"),
            (s(730 * 86400), "2 years"),
            (s(5 * 365 * 86400 + 86399), "5 years"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d}");
        }
    }
}
