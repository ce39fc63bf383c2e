//! JSON I/O: canonical bytes for anything hashed, capped reads for anything untrusted, JSON Lines.

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{BufRead, Read, Write};

/// The most bytes read for one JSON document (manifest, config, index, descriptor line) unless
/// a tool's `--max-json` says otherwise: each reader takes the cap as a value (a
/// [`crate::layout::Layout`] carries its own). Real documents are kilobytes (a manifest of
/// 100,000 layers is 15 MB); the cap stops a hostile blob from exhausting memory (containerd
/// CVE-2023-25153).
pub const DEFAULT_MAX_JSON: u64 = 16 << 20;

/// Serializes with sorted object keys and no whitespace, so equal values hash equally.
/// (`serde_json::Value` keeps objects in a BTreeMap: going through it sorts every map. That
/// holds only while no crate in the build enables `serde_json/preserve_order`, which would
/// make it an IndexMap: `canonical_sorts_keys` fails then.)
pub fn canonical<T: Serialize>(value: &T) -> crate::Result<Vec<u8>> {
    let v = serde_json::to_value(value).context("serializing JSON")?;
    Ok(serde_json::to_vec(&v)?)
}

/// Reads one JSON document of at most `max` bytes.
pub fn read_capped<T: DeserializeOwned, R: Read>(r: R, what: &str, max: u64) -> crate::Result<T> {
    let mut buf = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {what}"))?;
    if buf.len() as u64 > max {
        bail!("{what}: larger than {max} bytes (--max-json)");
    }
    serde_json::from_slice(&buf).with_context(|| format!("{what}: not valid JSON"))
}

/// Reads JSON Lines: one object per non-empty line, each at most `max` bytes. `what` names the
/// source in errors.
pub fn read_lines<T: DeserializeOwned, R: BufRead>(r: R, what: &str, max: u64) -> crate::Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.with_context(|| format!("reading {what}"))?;
        if line.trim().is_empty() {
            continue;
        }
        if line.len() as u64 > max {
            bail!("{what}: line {} is longer than {max} bytes (--max-json)", i + 1);
        }
        out.push(serde_json::from_str(&line).with_context(|| format!("{what}: line {}", i + 1))?);
    }
    Ok(out)
}

/// Writes one value as one line.
pub fn write_line<T: Serialize, W: Write>(mut w: W, value: &T) -> crate::Result<()> {
    let mut bytes = canonical(value)?;
    bytes.push(b'\n');
    w.write_all(&bytes)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys() {
        let mut m = std::collections::HashMap::new();
        for k in ["z", "a", "m", "b"] {
            m.insert(k, 1);
        }
        assert_eq!(canonical(&m).unwrap(), br#"{"a":1,"b":1,"m":1,"z":1}"#);
    }

    #[test]
    fn lines_name_the_bad_line() {
        let err =
            read_lines::<serde_json::Value, _>(&b"{}\n\n{oops\n"[..], "stdin", DEFAULT_MAX_JSON).unwrap_err();
        assert_eq!(format!("{err}"), "stdin: line 3");
    }
}
