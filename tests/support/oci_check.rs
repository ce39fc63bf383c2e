//! An OCI image layout read without layerkit's code, as the tests' oracle of "the layout is
//! valid": `oci-layout`, index.json and the indexes, manifests, configs and layers it reaches,
//! every descriptor's blob checked for its size and its sha256 (sha2, directly). Only std,
//! serde_json, sha2 and hex: common's own tests include this file too (`#[path]`).

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

const INDEXES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Deeper than any index nesting a test makes.
const MAX_DEPTH: usize = 8;

/// The sha256 of a file's bytes, in hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut h = sha2::Sha256::default();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut h, &buf[..n]);
    }
    Ok(hex::encode(sha2::Digest::finalize(h)))
}

/// Checks the layout at `root`; returns each tag (a ref name in index.json) and the digest of
/// the manifest or index it names. A tag held twice is an error. With `hash_layers` false,
/// layer blobs are checked for their size only (for a caller that hashes every blob file).
pub fn valid_layout(root: &Path, hash_layers: bool) -> Result<BTreeMap<String, String>, String> {
    let version = read_json(&root.join("oci-layout"))?;
    if version["imageLayoutVersion"] != "1.0.0" {
        return Err(format!("oci-layout: {version}"));
    }
    let index = read_json(&root.join("index.json"))?;
    let mut tags = BTreeMap::new();
    for d in list(&index, "manifests", "index.json")? {
        walk(root, d, hash_layers, 0)?;
        if let Some(tag) = d["annotations"][REF_NAME].as_str() {
            let digest = d["digest"].as_str().unwrap_or_default().to_string();
            if tags.insert(tag.to_string(), digest).is_some() {
                return Err(format!("index.json: tag {tag} is held twice"));
            }
        }
    }
    Ok(tags)
}

/// Every file in blobs/sha256 named like a digest (64 hex digits) is named by the sha256 of its
/// bytes. (Other names are not blobs: image-prune leaves such files alone.)
pub fn blobs_match_their_names(root: &Path) -> Result<(), String> {
    let dir = root.join("blobs/sha256");
    for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| !is_hex64(n))
        {
            continue;
        }
        let got = sha256_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if path.file_name() != Some(got.as_ref()) {
            return Err(format!("{}: its bytes hash to {got}", path.display()));
        }
    }
    Ok(())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn list<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a Vec<Value>, String> {
    v[key].as_array().ok_or_else(|| format!("{what}: no {key} array"))
}

/// The blob `d` names, checked for size and (when `hash`) digest; its path.
fn blob(root: &Path, d: &Value, hash: bool) -> Result<std::path::PathBuf, String> {
    let digest = d["digest"]
        .as_str()
        .ok_or_else(|| format!("descriptor without a digest: {d}"))?;
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| is_hex64(h))
        .ok_or_else(|| format!("{digest}: not a sha256 digest"))?;
    let path = root.join("blobs/sha256").join(hex);
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("{digest}: {e}"))?
        .len();
    if Some(size) != d["size"].as_u64() {
        return Err(format!(
            "{digest}: {size} bytes, the descriptor says {}",
            d["size"]
        ));
    }
    if hash {
        let got = sha256_file(&path).map_err(|e| format!("{digest}: {e}"))?;
        if got != hex {
            return Err(format!("{digest}: its bytes hash to sha256:{got}"));
        }
    }
    Ok(path)
}

/// Checks the manifest or index `d` names and everything it reaches.
fn walk(root: &Path, d: &Value, hash_layers: bool, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{}: indexes nested deeper than {MAX_DEPTH}", d["digest"]));
    }
    let what = d["digest"].to_string();
    let v = read_json(&blob(root, d, true)?)?;
    let media_type = d["mediaType"]
        .as_str()
        .or(v["mediaType"].as_str())
        .unwrap_or_default();
    if INDEXES.contains(&media_type) {
        for m in list(&v, "manifests", &what)? {
            walk(root, m, hash_layers, depth + 1)?;
        }
        return Ok(());
    }
    let config = &v["config"];
    read_json(&blob(root, config, true)?).map_err(|e| format!("{what}: config: {e}"))?;
    for l in list(&v, "layers", &what)? {
        blob(root, l, hash_layers).map_err(|e| format!("{what}: layer: {e}"))?;
    }
    Ok(())
}
