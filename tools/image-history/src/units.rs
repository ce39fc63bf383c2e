//! docker's human units, to the byte: go-units `HumanSizeWithPrecision(n, 3)` and
//! `HumanDuration`, and docker/cli's display-width-aware `Ellipsis`.

/// `24.3MB`, `8.46kB`, `0B`: 1000-based, 3 significant digits in Go's `%.3g`, no space.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g3(size), UNITS[unit])
}

/// Go's `fmt.Sprintf("%.3g", x)` for x ≥ 0: 3 significant digits, trailing zeros trimmed,
/// exponent form when the rounded exponent is < -4 or ≥ 3 (so 999.5 kB prints `1e+03kB`,
/// as docker does).
fn go_g3(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    // Rust and Go both round the exact binary value half-to-even, so the digits agree.
    let sci = format!("{x:.2e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..3).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs());
    }
    trim_zeros(&format!("{x:.*}", (2 - exp) as usize)).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
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

/// Columns a character takes on a terminal: 2 for East Asian Wide and Fullwidth, else 1 (as
/// docker/cli counts; combining marks count 1 there too).
pub fn char_width(c: char) -> usize {
    let c = c as u32;
    let wide = matches!(c,
        0x1100..=0x115F | 0x231A..=0x231B | 0x2329..=0x232A | 0x23E9..=0x23EC | 0x23F0 | 0x23F3
        | 0x25FD..=0x25FE | 0x2614..=0x2615 | 0x2648..=0x2653 | 0x267F | 0x2693 | 0x26A1
        | 0x26AA..=0x26AB | 0x26BD..=0x26BE | 0x26C4..=0x26C5 | 0x26CE | 0x26D4 | 0x26EA
        | 0x26F2..=0x26F3 | 0x26F5 | 0x26FA | 0x26FD | 0x2705 | 0x270A..=0x270B | 0x2728 | 0x274C
        | 0x274E | 0x2753..=0x2755 | 0x2757 | 0x2795..=0x2797 | 0x27B0 | 0x27BF | 0x2B1B..=0x2B1C
        | 0x2B50 | 0x2B55 | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF | 0xA960..=0xA97F | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE10..=0xFE19
        | 0xFE30..=0xFE6F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x16FE0..=0x18CFF
        | 0x1B000..=0x1B2FF | 0x1F004 | 0x1F0CF | 0x1F18E | 0x1F191..=0x1F19A
        | 0x1F200..=0x1F251 | 0x1F300..=0x1F64F | 0x1F680..=0x1F6FF | 0x1F7E0..=0x1F7EB
        | 0x1F90C..=0x1F9FF | 0x1FA70..=0x1FAFF | 0x20000..=0x2FFFD | 0x30000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

/// Display width of a string.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// docker/cli `Ellipsis`: at most `max` columns, the cut marked with `…`.
pub fn ellipsis(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = char_width(c);
        if used + w > max - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
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
            assert_eq!(human_size(n), want, "{n}");
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

    #[test]
    fn ellipsis_counts_display_columns() {
        let long = "/bin/sh -c set -eux;   savedAptMark=\"$(apt-mark showmanual)\"";
        assert_eq!(
            ellipsis(long, 45),
            "/bin/sh -c set -eux;   savedAptMark=\"$(apt-m…"
        );
        assert_eq!(width(&ellipsis(long, 45)), 45);
        assert_eq!(ellipsis("short", 45), "short");
        let exact = "x".repeat(45);
        assert_eq!(ellipsis(&exact, 45), exact);
        // Wide characters take two columns: 22 of them fill 44, the ellipsis the 45th.
        let cjk = "漢".repeat(30);
        let cut = ellipsis(&cjk, 45);
        assert_eq!(cut, format!("{}…", "漢".repeat(22)));
        assert_eq!(width(&cut), 45);
        assert_eq!(ellipsis("aé漢字b", 4), "aé…");
    }
}
