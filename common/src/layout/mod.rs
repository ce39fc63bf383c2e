//! The OCI image layout store (image-spec v1.1 image-layout.md), split as umoci splits its
//! `oci/cas` (the raw store) from `oci/casext` (what is built on it):
//!
//! - this module: opening and creating a layout, where its files are, the cap on the JSON it
//!   reads;
//! - [`blob`]: blobs in and out. A blob appears only complete (written to a temporary file in
//!   the layout, fsynced, renamed to `blobs/sha256/<hex>` without replacing an existing blob,
//!   see [`crate::atomic`]), and every read is checked against the digest while streaming;
//! - [`index`]: `index.json`, changed only under an exclusive `flock` on [`LOCK_FILE`] and
//!   replaced by rename, so concurrent writers never lose a tag and readers never see a torn
//!   file; a tag is only set on an image whose blobs are all there, checked under that lock;
//! - [`walk`]: the one walk from a descriptor through nested indexes to manifests, configs and
//!   layers, with the media-type check every manifest and index read gets, and reference
//!   resolution on it;
//! - [`gc`]: the protocol between writers and image-prune (temporary files locked while
//!   written, blobs claimed on reuse), both halves;
//! - [`cache`] and [`mounts`]: `image-stack --mount`'s layer cache and mount records, in the
//!   layout's `.layerkit` directory, and their half of image-prune.

pub mod blob;
pub mod cache;
pub mod gc;
pub mod index;
pub mod mounts;
pub mod walk;

use crate::atomic::Persisted;
use crate::digest::Digest;
use crate::error::Error;
use crate::json;
use crate::manifest::Index;
use crate::media;
use anyhow::{Context, bail};
use serde_json::Value;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use blob::BlobWriter;
pub use index::LayoutLock;
pub use walk::{MAX_INDEX_DEPTH, Step, Walk};

/// Prefix of the temporary files writers create in the layout's top directory (image-prune
/// finds by it what a killed writer left).
pub const TMP_PREFIX: &str = ".layerkit-tmp-";
/// The lock file that serializes `index.json` updates.
pub const LOCK_FILE: &str = ".layerkit.lock";

/// An open OCI image layout.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    /// The largest JSON document read from it (`--max-json`).
    max_json: u64,
}

impl Layout {
    /// Opens an existing layout.
    pub fn open(root: impl AsRef<Path>) -> crate::Result<Layout> {
        let root = root.as_ref().to_path_buf();
        let meta = fs::metadata(&root).with_context(|| format!("{}", root.display()))?;
        if !meta.is_dir() {
            bail!("{}: not a directory", root.display());
        }
        let header = root.join("oci-layout");
        let text = match fs::read(&header) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotALayout(root).into()),
            Err(e) => return Err(e).with_context(|| header.display().to_string()),
        };
        let v: Value =
            serde_json::from_slice(&text).with_context(|| format!("{}: not valid JSON", header.display()))?;
        if v.get("imageLayoutVersion").and_then(Value::as_str).is_none() {
            bail!("{}: no imageLayoutVersion", header.display());
        }
        Ok(Layout {
            root,
            max_json: json::DEFAULT_MAX_JSON,
        })
    }

    /// Opens a layout, creating it first when the directory is missing or empty.
    pub fn open_or_create(root: impl AsRef<Path>) -> crate::Result<Layout> {
        let root = root.as_ref();
        match Layout::open(root) {
            Ok(l) => return Ok(l),
            Err(e) => {
                let empty_or_missing = match fs::read_dir(root) {
                    Ok(mut d) => d.next().is_none(),
                    Err(err) => err.kind() == io::ErrorKind::NotFound,
                };
                // Another writer may be creating it right now: then the directory is neither
                // empty nor a layout yet, and retrying the open after a moment is right.
                if !empty_or_missing && !root.join("blobs").is_dir() {
                    return Err(e);
                }
            }
        }
        fs::create_dir_all(root.join("blobs/sha256"))
            .with_context(|| format!("creating layout {}", root.display()))?;
        let layout = Layout {
            root: root.to_path_buf(),
            max_json: json::DEFAULT_MAX_JSON,
        };
        let empty = json::canonical(&Index::empty())?;
        layout.install_file_if_missing("index.json", &empty)?;
        let header = format!("{{\"imageLayoutVersion\":\"{}\"}}", media::OCI_LAYOUT_VERSION);
        layout.install_file_if_missing("oci-layout", header.as_bytes())?;
        Ok(layout)
    }

    /// The same layout, reading JSON documents (index, manifests, configs) of at most `bytes`.
    #[must_use]
    pub fn with_max_json(mut self, bytes: u64) -> Layout {
        self.max_json = bytes;
        self
    }

    /// The cap on JSON documents read from this layout.
    pub fn max_json(&self) -> u64 {
        self.max_json
    }

    fn install_file_if_missing(&self, name: &str, bytes: &[u8]) -> crate::Result<()> {
        let dest = self.root.join(name);
        if dest.exists() {
            return Ok(());
        }
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes).with_context(|| dest.display().to_string())?;
        // Another writer creating the layout at the same time installed it first: the same bytes.
        match tmp.persist_new(&dest)? {
            Persisted::Done | Persisted::Exists(_) => Ok(()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
    }

    #[test]
    fn files_are_readable_as_umoci_and_skopeo_write_them() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
        let (digest, _) = layout.write_blob(b"{}").unwrap();
        let want = 0o644 & !umask();
        for path in [
            layout.blob_path(&digest),
            layout.root().join("index.json"),
            layout.root().join("oci-layout"),
        ] {
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, want, "{}", path.display());
        }
    }
}
