//! Checks and conversions of instruction values as docker makes them: ports, the working
//! directory, stop signals, healthcheck flags.

use super::dockerfile::json_array;
use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

/// EXPOSE's `PORT[/PROTO]` or `START-END[/PROTO]` as `port/proto` keys.
pub(super) fn port_spec(spec: &str) -> crate::Result<Vec<String>> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    let port = |s: &str| -> crate::Result<u16> {
        s.parse()
            .with_context(|| format!("invalid containerPort: {spec}"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if end < start {
        bail!("invalid range specified for containerPort: {spec}");
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// WORKDIR: a relative path continues from the current working directory.
pub(super) fn workdir(current: &str, requested: &str) -> crate::Result<String> {
    if requested.is_empty() {
        bail!("cannot normalize nothing");
    }
    if requested.starts_with('/') {
        return Ok(requested.to_string());
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in current.split('/').chain(requested.split('/')) {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Signal names docker accepts on Linux (with or without `SIG`), or a positive number.
pub(super) fn check_signal(raw: &str) -> crate::Result<()> {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
        "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
        "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
    ];
    if let Ok(n) = raw.parse::<i64>() {
        if n > 0 {
            return Ok(());
        }
        bail!("Invalid signal: {raw}");
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |prefix: &str, max: u32| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    if NAMES.contains(&name) || realtime("RTMIN+", 15) || realtime("RTMAX-", 14) {
        return Ok(());
    }
    bail!("Invalid signal: {raw}")
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=D …] CMD command` as docker's HealthConfig
/// (durations in nanoseconds; zero values left out, as Go's omitempty does).
pub(super) fn healthcheck(rest: &str) -> crate::Result<Value> {
    let mut flags = Map::new();
    let mut rest = rest;
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (name, value) = flag[..end]
            .split_once('=')
            .with_context(|| format!("Missing a value on flag: --{}", &flag[..end]))?;
        let key = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => "Retries",
            other => bail!("Unknown flag: {other}"),
        };
        let parsed = if key == "Retries" {
            let n: i32 = value
                .parse()
                .with_context(|| format!("--retries: invalid number {value:?}"))?;
            if n < 0 {
                bail!("--retries cannot be negative ({n})");
            }
            i64::from(n)
        } else {
            let d = common::time::go_duration(value).with_context(|| format!("--{name}"))?;
            let d =
                i64::try_from(d.as_nanos()).with_context(|| format!("--{name}: {value:?} is too long"))?;
            if d != 0 && d < 1_000_000 {
                bail!("{key} {value:?} cannot be less than 1ms");
            }
            d
        };
        if parsed != 0 {
            flags.insert(key.into(), json!(parsed));
        }
        rest = flag[end..].trim_start();
    }
    let (kind, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let test = match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !args.is_empty() || !flags.is_empty() {
                bail!("HEALTHCHECK NONE takes no arguments");
            }
            vec!["NONE".to_string()]
        }
        "CMD" => match json_array(args) {
            Some(words) if words.is_empty() => bail!("Missing command after HEALTHCHECK CMD"),
            Some(words) => std::iter::once("CMD".to_string()).chain(words).collect(),
            None if args.is_empty() => bail!("Missing command after HEALTHCHECK CMD"),
            None => vec!["CMD-SHELL".to_string(), args.to_string()],
        },
        other => bail!("Unknown type {other:?} in HEALTHCHECK (try CMD)"),
    };
    flags.insert("Test".into(), json!(test));
    Ok(Value::Object(flags))
}
