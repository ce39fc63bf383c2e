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
use crate::reference::{self, ImageRef};
use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use blob::BlobWriter;
pub use index::LayoutLock;
pub use walk::{MAX_INDEX_DEPTH, Reached, Step, Walk};

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
    /// [`Layout::open_or_create`] made it: the tool says so (docs/CLI.md).
    created: bool,
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
            created: false,
        })
    }

    /// Opens the layout of an IMAGE. When there is none, the error says what an IMAGE is: a
    /// docker reference typed alone (`httpd:2.4`) names a layout `httpd` that is not there.
    pub fn open_image(image: &ImageRef) -> crate::Result<Layout> {
        let root = &image.layout;
        Layout::open(root).map_err(|e| {
            let why = match fs::metadata(root) {
                Err(m) if m.kind() == io::ErrorKind::NotFound => "no such OCI image layout",
                Ok(m) if !m.is_dir() => "not a directory",
                Ok(_) if matches!(e.downcast_ref::<Error>(), Some(Error::NotALayout(_))) => {
                    "not an OCI image layout, no oci-layout file"
                }
                _ => return e,
            };
            anyhow!("{}: {why}; {}", root.display(), reference::IMAGE_HINT)
        })
    }

    /// Opens a layout, creating it first when the directory is missing or empty;
    /// [`Layout::created`] tells which. A path holding `:` is never made a layout: no IMAGE
    /// could name it.
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
        reference::check_layout_path(root).with_context(|| root.display().to_string())?;
        fs::create_dir_all(root.join("blobs/sha256"))
            .with_context(|| format!("creating layout {}", root.display()))?;
        let mut layout = Layout {
            root: root.to_path_buf(),
            max_json: json::DEFAULT_MAX_JSON,
            created: false,
        };
        let empty = json::canonical(&Index::empty())?;
        layout.install_file_if_missing("index.json", &empty)?;
        let header = format!("{{\"imageLayoutVersion\":\"{}\"}}", media::OCI_LAYOUT_VERSION);
        // `oci-layout` makes it a layout: of writers creating it at once, the one that
        // installs it is the one that created it.
        layout.created = layout.install_file_if_missing("oci-layout", header.as_bytes())?;
        Ok(layout)
    }

    /// True when [`Layout::open_or_create`] created the layout rather than opened it.
    pub fn created(&self) -> bool {
        self.created
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

    /// Installs `name` unless it exists; true when this call installed it.
    fn install_file_if_missing(&self, name: &str, bytes: &[u8]) -> crate::Result<bool> {
        let dest = self.root.join(name);
        if dest.exists() {
            return Ok(false);
        }
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes).with_context(|| dest.display().to_string())?;
        // Another writer creating the layout at the same time installed it first: the same bytes.
        match tmp.persist_new(&dest)? {
            Persisted::Done => Ok(true),
            Persisted::Exists(_) => Ok(false),
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
    fn says_whether_it_created_the_layout_and_never_makes_one_no_image_can_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("web");
        assert!(Layout::open_or_create(&root).unwrap().created());
        assert!(!Layout::open_or_create(&root).unwrap().created());
        assert!(!Layout::open(&root).unwrap().created());
        let colon = dir.path().join("web:v1");
        let err = format!("{:#}", Layout::open_or_create(&colon).unwrap_err());
        assert!(err.contains("a layout path cannot hold ':'"), "{err}");
        assert!(!colon.exists());
    }

    #[test]
    fn an_image_without_its_layout_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let at = |rel: &str| dir.path().join(rel).display().to_string();
        fs::create_dir(dir.path().join("plain")).unwrap();
        fs::write(dir.path().join("file"), "x").unwrap();
        Layout::open_or_create(dir.path().join("store")).unwrap();
        let hint = "; an IMAGE is LAYOUT:REF, e.g. store:httpd:2.4 (the tag httpd:2.4 of the layout directory store)";
        for (image, why) in [
            ("httpd:2.4", "httpd: no such OCI image layout"),
            ("plain:x", "plain: not an OCI image layout, no oci-layout file"),
            ("file", "file: not a directory"),
        ] {
            let r = ImageRef::parse(&at(image)).unwrap();
            let err = format!("{:#}", Layout::open_image(&r).unwrap_err());
            assert_eq!(err, format!("{}{why}{hint}", at("")), "{image}");
        }
        Layout::open_image(&ImageRef::parse(&at("store:x")).unwrap()).unwrap();
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
