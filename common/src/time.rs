//! RFC 3339 timestamps, as image configs carry them, "now" (which tests can fix), and
//! `SOURCE_DATE_EPOCH`, which clamps every time the tools write.

use anyhow::{Context, bail};

/// Seconds and nanoseconds since the epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

/// The environment variable that fixes "now", for tests only: RFC 3339 or epoch seconds.
pub const NOW_VAR: &str = "LAYERKIT_NOW";

/// The reproducible-builds variable: when set, no time the tools write (tar mtimes, a config's
/// `created`) is later than it.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Reads [`SOURCE_DATE_EPOCH`] (seconds since the epoch): unset or empty is `None`, a bad
/// value is an error.
pub fn source_date_epoch() -> crate::Result<Option<i64>> {
    match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(s) if !s.trim().is_empty() => {
            Ok(Some(s.trim().parse().with_context(|| {
                format!("{SOURCE_DATE_EPOCH}={s:?} is not a number")
            })?))
        }
        _ => Ok(None),
    }
}

/// 2000-01-01T00:00:00Z: docker shows no relative age for images created before (or at) it
/// (`SOURCE_DATE_EPOCH=0` builds).
pub const EPOCH_2000: i64 = 946_684_800;

impl Time {
    /// The current time, or the one [`NOW_VAR`] fixes.
    pub fn now() -> crate::Result<Time> {
        if let Some(v) = std::env::var_os(NOW_VAR) {
            let v = v.to_string_lossy();
            if let Ok(secs) = v.parse::<i64>() {
                return Ok(Time { secs, nanos: 0 });
            }
            return Time::parse(&v)
                .with_context(|| format!("{NOW_VAR}={v:?}: expected RFC 3339 or seconds since the epoch"));
        }
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the system clock is before 1970")?;
        Ok(Time {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        })
    }

    /// Parses `2024-05-01T12:00:00Z`, `…T12:00:00.123456789+02:00` (RFC 3339, as Go reads it).
    pub fn parse(s: &str) -> crate::Result<Time> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> crate::Result<i64> {
            let part = b.get(r).context("too short")?;
            if !part.iter().all(u8::is_ascii_digit) {
                bail!("not a number");
            }
            Ok(std::str::from_utf8(part)?.parse()?)
        };
        let sep = |i: usize, ok: &[u8]| b.get(i).is_some_and(|c| ok.contains(c));
        if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
            bail!("not an RFC 3339 time: {s:?}");
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || min > 59
            || sec > 60
        {
            bail!("not a valid date and time: {s:?}");
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let digits = &s[start..i];
            if digits.is_empty() || digits.len() > 9 {
                bail!("bad fraction of a second in {s:?}");
            }
            nanos = format!("{digits:0<9}").parse()?;
        }
        let offset = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if h > 23 || m > 59 {
                    bail!("bad zone offset in {s:?}");
                }
                let o = h * 3600 + m * 60;
                if *sign == b'-' { -o } else { o }
            }
            _ => bail!("bad zone in {s:?}"),
        };
        let secs = days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec - offset;
        Ok(Time { secs, nanos })
    }

    /// RFC 3339 in UTC, whole seconds: `2024-05-01T10:00:00Z` (docker's `CREATED AT`).
    pub fn rfc3339(&self) -> String {
        let (y, mo, d) = civil_from_days(self.secs.div_euclid(86400));
        let t = self.secs.rem_euclid(86400);
        format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
            t / 3600,
            t / 60 % 60,
            t % 60
        )
    }

    /// RFC 3339 in UTC with the fraction of a second when there is one (Go's RFC3339Nano).
    pub fn rfc3339_nano(&self) -> String {
        let whole = self.rfc3339();
        if self.nanos == 0 {
            return whole;
        }
        let frac = format!("{:09}", self.nanos);
        format!("{}.{}Z", &whole[..whole.len() - 1], frac.trim_end_matches('0'))
    }

    /// `self - earlier` in nanoseconds.
    pub fn since(&self, earlier: &Time) -> i128 {
        (self.secs as i128 - earlier.secs as i128) * 1_000_000_000 + self.nanos as i128
            - earlier.nanos as i128
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Parses a Go `time.Duration` (`90s`, `1m30s`, `1.5h`, `250ms`, a bare `0`), as docker's flags
/// take them (`--filter until=`, `HEALTHCHECK --interval=`). Negative durations are refused.
pub fn go_duration(s: &str) -> crate::Result<std::time::Duration> {
    let bad = || anyhow::anyhow!("invalid duration {s:?}: expected e.g. 90s, 10m, 1h30m, 250ms or 0");
    let body = s.strip_prefix('+').unwrap_or(s);
    if body == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if body.is_empty() || body.starts_with('-') {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += number * scale;
        rest = &rest[unit_end..];
    }
    // Go's limit: about 290 years.
    if nanos > i64::MAX as f64 {
        bail!("invalid duration {s:?}: too large");
    }
    Ok(std::time::Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_rfc3339() {
        let t = Time::parse("2000-01-01T00:00:00Z").unwrap();
        assert_eq!(t.secs, EPOCH_2000);
        let t = Time::parse("2024-02-29T23:59:59.5+01:30").unwrap();
        assert_eq!(
            (t.rfc3339(), t.nanos),
            ("2024-02-29T22:29:59Z".into(), 500_000_000)
        );
        assert_eq!(t.rfc3339_nano(), "2024-02-29T22:29:59.5Z");
        let t = Time::parse("1969-12-31t23:59:59.123456789-00:00").unwrap();
        assert_eq!(t.secs, -1);
        assert_eq!(t.rfc3339_nano(), "1969-12-31T23:59:59.123456789Z");
        assert_eq!(
            Time {
                secs: 1_700_000_000,
                nanos: 0
            }
            .rfc3339(),
            "2023-11-14T22:13:20Z"
        );
        for bad in [
            "",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00+0100",
            "+024-01-01T00:00:00Z",
            "2024-01-01T00:00:00Zjunk",
        ] {
            assert!(Time::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn since_counts_nanoseconds() {
        let a = Time {
            secs: 10,
            nanos: 900_000_000,
        };
        let b = Time {
            secs: 12,
            nanos: 100_000_000,
        };
        assert_eq!(b.since(&a), 1_200_000_000);
        assert_eq!(a.since(&b), -1_200_000_000);
    }

    #[test]
    fn go_durations() {
        let ms = |s: &str| go_duration(s).unwrap().as_millis();
        assert_eq!(ms("1h2m3s"), 3_723_000);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("0"), 0);
        assert_eq!(ms("+1h30m"), 5_400_000);
        assert_eq!(ms("1.5h"), 5_400_000);
        for bad in [
            "10",
            "5d",
            "",
            "-1s",
            ".",
            "1..5s",
            "1h 30m",
            "10M",
            "ten",
            "99999999999h",
        ] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
    }
}
