//! `--wasted` as a CI gate: rules on the waste `wasted` measures and on the image's size, read
//! from flags and from dive's `.dive-ci` (so a dive user switches in one line), judged as dive
//! judges them (a value at the limit passes), and reported with the files that waste.
//!
//! Better than dive where its users complain: wasted bytes are the masked copies only, each
//! once (dive#684 counts every copy, the visible one too); an absolute floor keeps the ratio
//! rules from failing a small image over a few kilobytes; the image's size and its growth
//! against a baseline image are rules too.

use crate::Measured;
use crate::history::History;
use crate::wasted::WastedFile;
use anyhow::{Context, bail};
use common::digest::Digest;
use common::units::{human_size, parse_size};
use serde::Serialize;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The gate's flags (flattened into image-history's). Any of them turns the gate on, and
/// `--wasted` with it.
#[derive(clap::Args, Debug, Default)]
pub struct GateArgs {
    /// Fail when the efficiency (content still visible / all content) is below RATIO (0.9 or
    /// 90%), as dive's lowestEfficiency; `disabled` turns a --ci-config rule off
    #[arg(long, value_name = "RATIO")]
    pub lowest_efficiency: Option<String>,

    /// Fail when more than SIZE bytes are wasted (20MB = 20,000,000, 20MiB, 1000), as dive's
    /// highestWastedBytes
    #[arg(long, value_name = "SIZE")]
    pub highest_wasted_bytes: Option<String>,

    /// Fail when the wasted bytes are more than RATIO of the content the layers above the
    /// first add (0.1 or 10%), as dive's highestUserWastedPercent
    #[arg(long, value_name = "RATIO")]
    pub highest_user_wasted_percent: Option<String>,

    /// The ratio rules (efficiency, user wasted percent) pass while no more than SIZE bytes
    /// are wasted: a small image is not failed over a few kilobytes
    #[arg(long, value_name = "SIZE")]
    pub wasted_floor: Option<String>,

    /// Fail when the content of all layers is more than SIZE
    #[arg(long, value_name = "SIZE")]
    pub highest_image_size: Option<String>,

    /// An image to compare the size with (the previous release, the base)
    #[arg(long, value_name = "IMAGE")]
    pub baseline: Option<String>,

    /// With --baseline: fail when the content grew by more than SIZE, or PERCENT% of the
    /// baseline's
    #[arg(long, value_name = "SIZE|PERCENT%", requires = "baseline")]
    pub highest_growth: Option<String>,

    /// Read the rules from dive's CI config (rules: lowestEfficiency, highestWastedBytes,
    /// highestUserWastedPercent, or their kebab-case names); rules it leaves out take dive's
    /// defaults (0.9, disabled, 0.1); flags override it
    #[arg(long, value_name = "FILE")]
    pub ci_config: Option<PathBuf>,
}

/// How much an image may grow over its baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Growth {
    Bytes(u64),
    /// A share of the baseline's size (0.05 for 5%).
    Share(f64),
}

/// The rules in force; None is a rule left off.
#[derive(Debug, Default, PartialEq)]
pub struct Rules {
    lowest_efficiency: Option<f64>,
    highest_wasted_bytes: Option<u64>,
    highest_user_wasted_percent: Option<f64>,
    highest_image_size: Option<u64>,
    highest_growth: Option<Growth>,
    wasted_floor: u64,
    pub baseline: Option<String>,
}

/// dive's rule names, as `.dive-ci` and the report spell them.
const LOWEST_EFFICIENCY: &str = "lowestEfficiency";
const HIGHEST_WASTED_BYTES: &str = "highestWastedBytes";
const HIGHEST_USER_WASTED_PERCENT: &str = "highestUserWastedPercent";
const HIGHEST_IMAGE_SIZE: &str = "highestImageSize";
const HIGHEST_GROWTH: &str = "highestGrowth";

/// A rule's value as written: None when it says the rule is off.
fn enabled(value: &str) -> Option<&str> {
    let v = value.trim();
    (!matches!(v.to_ascii_lowercase().as_str(), "" | "disabled" | "off" | "false")).then_some(v)
}

/// `0.9` or `90%`.
fn ratio(value: &str) -> crate::Result<f64> {
    let (number, scale) = match value.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (value, 1.0),
    };
    let r: f64 = number
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && *r >= 0.0)
        .with_context(|| format!("{value:?} is not a ratio (0.9, or 90%)"))?;
    Ok(r / scale)
}

fn growth(value: &str) -> crate::Result<Growth> {
    if value.ends_with('%') {
        return Ok(Growth::Share(ratio(value)?));
    }
    Ok(Growth::Bytes(parse_size(value)?))
}

impl Rules {
    /// The rules the flags and `--ci-config` ask for; None when they ask for none (no gate).
    pub fn from_args(a: &GateArgs) -> crate::Result<Option<Rules>> {
        let given = [
            &a.lowest_efficiency,
            &a.highest_wasted_bytes,
            &a.highest_user_wasted_percent,
            &a.wasted_floor,
            &a.highest_image_size,
            &a.baseline,
        ];
        if a.ci_config.is_none() && given.iter().all(|g| g.is_none()) {
            return Ok(None);
        }
        let mut rules = Rules::default();
        if let Some(file) = &a.ci_config {
            rules.read_dive_ci(file)?;
        }
        let flags: [(&str, &Option<String>); 5] = [
            ("--lowest-efficiency", &a.lowest_efficiency),
            ("--highest-wasted-bytes", &a.highest_wasted_bytes),
            ("--highest-user-wasted-percent", &a.highest_user_wasted_percent),
            ("--highest-image-size", &a.highest_image_size),
            ("--highest-growth", &a.highest_growth),
        ];
        for (flag, value) in flags {
            if let Some(v) = value {
                rules.set(flag, v).with_context(|| flag.to_string())?;
            }
        }
        if let Some(floor) = &a.wasted_floor {
            rules.wasted_floor = parse_size(floor).context("--wasted-floor")?;
        }
        rules.baseline.clone_from(&a.baseline);
        Ok(Some(rules))
    }

    /// Sets the rule a flag or a `.dive-ci` key names.
    fn set(&mut self, name: &str, value: &str) -> crate::Result<()> {
        let v = enabled(value);
        match name {
            "--lowest-efficiency" | LOWEST_EFFICIENCY => self.lowest_efficiency = v.map(ratio).transpose()?,
            "--highest-wasted-bytes" | HIGHEST_WASTED_BYTES => {
                self.highest_wasted_bytes = v.map(parse_size).transpose()?;
            }
            "--highest-user-wasted-percent" | HIGHEST_USER_WASTED_PERCENT => {
                self.highest_user_wasted_percent = v.map(ratio).transpose()?;
            }
            "--highest-image-size" => self.highest_image_size = v.map(parse_size).transpose()?,
            "--highest-growth" => self.highest_growth = v.map(growth).transpose()?,
            other => bail!("unknown rule {other:?}"),
        }
        Ok(())
    }

    /// Reads dive's `.dive-ci`: the `rules:` mapping of its YAML (keys in camelCase, or the
    /// kebab-case names dive 0.13 reads), values plain or quoted, `#` comments. Rules it does
    /// not set take dive's defaults. An unknown rule is an error: a misspelt one would
    /// silently never fail.
    fn read_dive_ci(&mut self, file: &Path) -> crate::Result<()> {
        let shown = file.display();
        let text = std::fs::read_to_string(file).with_context(|| format!("--ci-config {shown}"))?;
        self.lowest_efficiency = Some(0.9);
        self.highest_user_wasted_percent = Some(0.1);
        let mut in_rules = false;
        for (n, raw) in text.lines().enumerate() {
            let line = strip_comment(raw);
            if line.trim().is_empty() || line.trim() == "---" {
                continue;
            }
            let nested = line.starts_with([' ', '\t']);
            let Some((key, value)) = line.trim().split_once(':') else {
                bail!("--ci-config {shown}: line {}: not a `key: value` line", n + 1);
            };
            let (key, value) = (key.trim(), unquote(value.trim()));
            if !nested {
                in_rules = key == "rules";
                if in_rules && !value.is_empty() {
                    bail!(
                        "--ci-config {shown}: line {}: rules: is a mapping of rules",
                        n + 1
                    );
                }
                continue;
            }
            if !in_rules {
                continue;
            }
            let name = match key {
                LOWEST_EFFICIENCY | "lowest-efficiency" => LOWEST_EFFICIENCY,
                HIGHEST_WASTED_BYTES | "highest-wasted-bytes" => HIGHEST_WASTED_BYTES,
                HIGHEST_USER_WASTED_PERCENT | "highest-user-wasted-percent" => HIGHEST_USER_WASTED_PERCENT,
                other => bail!(
                    "--ci-config {shown}: line {}: unknown rule {other:?} (lowestEfficiency, highestWastedBytes, highestUserWastedPercent)",
                    n + 1
                ),
            };
            self.set(name, value)
                .with_context(|| format!("--ci-config {shown}: line {}: {key}", n + 1))?;
        }
        Ok(())
    }
}

/// A YAML line without its comment (a `#` at the start or after a space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

/// What the rules are judged on.
pub struct Facts {
    /// Content bytes of all layers.
    pub total: u64,
    pub wasted: u64,
    /// Content bytes of the layers above the first (dive's "user" bytes).
    pub user: u64,
    /// The baseline image's content bytes, with `--baseline`.
    pub baseline: Option<u64>,
}

impl Facts {
    pub fn of(measured: &Measured, baseline: Option<&Measured>) -> Facts {
        let total = |m: &Measured| m.total.as_ref().map_or(0, |t| t.total_size);
        let layers = measured.waste.as_deref().unwrap_or_default();
        Facts {
            total: total(measured),
            wasted: measured.total.as_ref().map_or(0, |t| t.wasted_size),
            user: layers.iter().skip(1).map(|l| l.content).sum(),
            baseline: baseline.map(total),
        }
    }

    fn efficiency(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        (self.total - self.wasted) as f64 / self.total as f64
    }

    fn user_wasted(&self) -> f64 {
        if self.user == 0 {
            return 0.0;
        }
        self.wasted as f64 / self.user as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One rule's verdict.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub rule: &'static str,
    pub status: Status,
    /// What was measured and the limit (bytes, or a ratio); null for a rule left off.
    pub value: Value,
    pub limit: Value,
    /// Why, in words.
    pub message: String,
}

/// The rules judged, in a fixed order.
pub fn judge(rules: &Rules, facts: &Facts) -> Vec<Verdict> {
    let below_floor = facts.wasted <= rules.wasted_floor && rules.wasted_floor > 0;
    let floor_note = format!(
        "; {} wasted is within --wasted-floor {}",
        bytes(facts.wasted),
        bytes(rules.wasted_floor)
    );
    let mut out = Vec::new();
    let mut verdict = |rule, failed: Option<bool>, value: Value, limit: Value, message: String| {
        let status = match failed {
            None => Status::Skip,
            Some(true) => Status::Fail,
            Some(false) => Status::Pass,
        };
        out.push(Verdict {
            rule,
            status,
            value,
            limit,
            message,
        });
    };
    let off = || "disabled".to_string();

    let e = facts.efficiency();
    match rules.lowest_efficiency {
        Some(l) => verdict(
            LOWEST_EFFICIENCY,
            Some(e < l && !below_floor),
            json!(e),
            json!(l),
            format!(
                "efficiency {e:.4} {} {l}{}",
                if e < l { "<" } else { ">=" },
                if e < l && below_floor { &floor_note } else { "" }
            ),
        ),
        None => verdict(LOWEST_EFFICIENCY, None, json!(e), Value::Null, off()),
    }
    match rules.highest_wasted_bytes {
        Some(l) => verdict(
            HIGHEST_WASTED_BYTES,
            Some(facts.wasted > l),
            json!(facts.wasted),
            json!(l),
            format!(
                "{} wasted {} {}",
                bytes(facts.wasted),
                if facts.wasted > l { ">" } else { "<=" },
                bytes(l)
            ),
        ),
        None => verdict(
            HIGHEST_WASTED_BYTES,
            None,
            json!(facts.wasted),
            Value::Null,
            off(),
        ),
    }
    let u = facts.user_wasted();
    match rules.highest_user_wasted_percent {
        Some(l) => verdict(
            HIGHEST_USER_WASTED_PERCENT,
            Some(u > l && !below_floor),
            json!(u),
            json!(l),
            format!(
                "{} wasted of {} added above the first layer: {u:.4} {} {l}{}",
                bytes(facts.wasted),
                bytes(facts.user),
                if u > l { ">" } else { "<=" },
                if u > l && below_floor { &floor_note } else { "" }
            ),
        ),
        None => verdict(HIGHEST_USER_WASTED_PERCENT, None, json!(u), Value::Null, off()),
    }
    match rules.highest_image_size {
        Some(l) => verdict(
            HIGHEST_IMAGE_SIZE,
            Some(facts.total > l),
            json!(facts.total),
            json!(l),
            format!(
                "content {} {} {}",
                bytes(facts.total),
                if facts.total > l { ">" } else { "<=" },
                bytes(l)
            ),
        ),
        None => verdict(HIGHEST_IMAGE_SIZE, None, json!(facts.total), Value::Null, off()),
    }
    let grown = facts.baseline.map(|b| facts.total as i128 - b as i128);
    match (rules.highest_growth, facts.baseline, grown) {
        (Some(g), Some(base), Some(grown)) => {
            let limit = match g {
                Growth::Bytes(n) => n as i128,
                Growth::Share(s) => (base as f64 * s).floor() as i128,
            };
            let shown = match g {
                Growth::Bytes(_) => bytes(limit as u64),
                Growth::Share(s) => format!("{} ({}% of {})", bytes(limit as u64), s * 100.0, bytes(base)),
            };
            verdict(
                HIGHEST_GROWTH,
                Some(grown > limit),
                json!(grown),
                json!(limit),
                format!(
                    "grew by {} bytes over the baseline {} {shown}",
                    grown,
                    if grown > limit { ">" } else { "<=" }
                ),
            )
        }
        _ => verdict(HIGHEST_GROWTH, None, json!(grown), Value::Null, off()),
    }
    out
}

fn bytes(n: u64) -> String {
    format!("{n} bytes ({})", human_size(n, 3))
}

/// A masked file with the layer that carries it.
#[derive(Serialize)]
struct Waste<'a> {
    #[serde(flatten)]
    file: &'a WastedFile,
    /// The diffID of the layer that carries the masked copy.
    layer: &'a Digest,
}

/// The masked files, largest first, each with its layer.
fn wasted_files<'a>(history: &'a History, measured: &'a Measured) -> Vec<Waste<'a>> {
    let layers = history.rows.iter().filter_map(|r| r.layer.as_ref().map(|l| &l.1));
    let mut files: Vec<Waste> = layers
        .zip(measured.waste.as_deref().unwrap_or_default())
        .flat_map(|(layer, w)| w.files.iter().map(move |file| Waste { file, layer }))
        .collect();
    files.sort_by(|a, b| {
        b.file
            .size
            .cmp(&a.file.size)
            .then_with(|| a.file.path.cmp(&b.file.path))
            .then_with(|| a.layer.cmp(b.layer))
    });
    files
}

/// True when a rule failed.
pub fn failed(verdicts: &[Verdict]) -> bool {
    verdicts.iter().any(|v| v.status == Status::Fail)
}

/// `--report FILE`: one JSON document, apart from the rows (JSON Lines of one shape each):
/// `{totalSize, wastedSize, efficiency, wastedFiles}`, and with rules `result` and `rules`.
pub fn report(
    gated: bool,
    verdicts: &[Verdict],
    history: &History,
    measured: &Measured,
) -> crate::Result<Vec<u8>> {
    let mut doc = serde_json::to_value(&measured.total)?;
    if let Some(map) = doc.as_object_mut() {
        map.insert(
            "wastedFiles".into(),
            serde_json::to_value(wasted_files(history, measured))?,
        );
        if gated {
            let result = if failed(verdicts) { "fail" } else { "pass" };
            map.insert("result".into(), result.into());
            map.insert("rules".into(), serde_json::to_value(verdicts)?);
        }
    }
    let mut bytes = common::json::canonical(&doc)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The report after the table: the files that waste, then each rule and the result, as dive
/// prints them.
pub fn text(
    out: &mut impl Write,
    verdicts: &[Verdict],
    history: &History,
    measured: &Measured,
) -> crate::Result<()> {
    writeln!(out, "Wasted files:")?;
    let files = wasted_files(history, measured);
    if files.is_empty() {
        writeln!(out, "  None")?;
    }
    for w in files {
        writeln!(
            out,
            "  {:>8}  {}  (layer {}, {} by {})",
            human_size(w.file.size, 3),
            common::table::cell_text(&w.file.path),
            w.layer.short(),
            serde_json::to_value(w.file.how)?.as_str().unwrap_or_default(),
            w.file.masked_by.short()
        )?;
    }
    writeln!(out, "Rules:")?;
    let count = |s: Status| verdicts.iter().filter(|v| v.status == s).count();
    for v in verdicts {
        let status = match v.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        writeln!(out, "  {status}: {}: {}", v.rule, v.message)?;
    }
    writeln!(
        out,
        "Result: {} [Total:{}] [Passed:{}] [Failed:{}] [Skipped:{}]",
        if failed(verdicts) { "FAIL" } else { "PASS" },
        verdicts.len(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skip)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(total: u64, wasted: u64, user: u64) -> Facts {
        Facts {
            total,
            wasted,
            user,
            baseline: None,
        }
    }

    fn statuses(rules: &Rules, f: &Facts) -> Vec<Status> {
        judge(rules, f).iter().map(|v| v.status).collect()
    }

    #[test]
    fn a_value_at_the_limit_passes_as_in_dive() {
        use Status::*;
        let f = facts(2000, 1000, 1000);
        let at = Rules {
            lowest_efficiency: Some(0.5),
            highest_wasted_bytes: Some(1000),
            highest_user_wasted_percent: Some(1.0),
            highest_image_size: Some(2000),
            ..Rules::default()
        };
        assert_eq!(statuses(&at, &f), [Pass, Pass, Pass, Pass, Skip]);
        let over = Rules {
            lowest_efficiency: Some(0.5001),
            highest_wasted_bytes: Some(999),
            highest_user_wasted_percent: Some(0.999),
            highest_image_size: Some(1999),
            ..Rules::default()
        };
        assert_eq!(statuses(&over, &f), [Fail, Fail, Fail, Fail, Skip]);
        // The floor spares the ratio rules only.
        let floored = Rules {
            wasted_floor: 1000,
            ..over
        };
        assert_eq!(statuses(&floored, &f), [Pass, Fail, Pass, Fail, Skip]);
        // An empty image is fully efficient and wastes nothing.
        assert_eq!(
            statuses(&floored, &facts(0, 0, 0)),
            [Pass, Pass, Pass, Pass, Skip]
        );
    }

    #[test]
    fn growth_is_in_bytes_or_a_share_of_the_baseline() {
        use Status::*;
        let f = Facts {
            baseline: Some(1000),
            ..facts(1500, 0, 0)
        };
        let limit = |g| Rules {
            highest_growth: Some(g),
            ..Rules::default()
        };
        let last = |r: &Rules| *statuses(r, &f).last().unwrap();
        assert_eq!(last(&limit(Growth::Bytes(500))), Pass);
        assert_eq!(last(&limit(Growth::Bytes(499))), Fail);
        assert_eq!(last(&limit(Growth::Share(0.5))), Pass);
        assert_eq!(last(&limit(Growth::Share(0.499))), Fail);
    }

    #[test]
    fn values_read_as_dive_reads_them() {
        assert_eq!(ratio("0.9").unwrap(), 0.9);
        assert_eq!(ratio("90%").unwrap(), 0.9);
        assert!(ratio("-1").is_err() && ratio("lots").is_err() && ratio("NaN").is_err());
        for off in ["disabled", "off", "false", "", "  Disabled "] {
            assert_eq!(enabled(off), None, "{off:?}");
        }
        assert_eq!(growth("5%").unwrap(), Growth::Share(0.05));
        assert_eq!(growth("10MB").unwrap(), Growth::Bytes(10_000_000));
        assert_eq!(strip_comment("a: '#1' # note"), "a: '#1' ");
        assert_eq!(strip_comment("a: b#c"), "a: b#c");
    }
}
