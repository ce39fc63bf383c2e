//! The OCI image layout store (image-spec v1.1 image-layout.md).
//!
//! - A blob appears only complete: it is written to a temporary file inside the layout (named
//!   [`TMP_PREFIX`]…, so image-prune can find what a killed writer left), fsynced, then renamed
//!   to `blobs/sha256/<hex>` without replacing an existing blob.
//! - A writer holds an exclusive `flock` on its temporary file until the rename, so image-prune
//!   can tell a live writer's file from one a killed writer left.
//! - A writer that finds its blob already stored refreshes the blob's mtime ([`Layout::claim_blob`]):
//!   image-prune keeps a blob claimed within its grace period even when only a dangling image
//!   references it, because the writer is about to reference it again.
//! - Every read is checked against the digest while streaming ([`VerifyingReader`]).
//! - `index.json` is changed only under an exclusive `flock` on [`LOCK_FILE`] and replaced by
//!   rename, so concurrent writers never lose a tag and readers never see a torn file. A tag is
//!   only set on an image whose blobs are all there, checked under that lock (image-prune
//!   deletes under it too).

use crate::descriptor::{Descriptor, Platform};
use crate::digest::{Digest, HashingWriter, VerifyingReader};
use crate::error::Error;
use crate::json;
use crate::media;
use crate::reference::Target;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Prefix of the temporary files writers create in the layout's top directory.
pub const TMP_PREFIX: &str = ".layerkit-tmp-";
/// The lock file that serializes `index.json` updates.
pub const LOCK_FILE: &str = ".layerkit.lock";

/// `index.json` or a nested image index.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Index {
    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media::INDEX.to_string()),
            manifests: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// An image manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A resolved image: its manifest's descriptor and the manifest.
#[derive(Clone, Debug)]
pub struct Image {
    pub descriptor: Descriptor,
    pub manifest: Manifest,
}

/// An `os/arch[/variant]` choice among the entries of a multi-platform index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// The platform of this machine, in Go's names (amd64, arm64, …).
    pub fn host() -> PlatformSpec {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "arm" => "arm",
            other => other,
        };
        PlatformSpec {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    pub fn parse(s: &str) -> crate::Result<PlatformSpec> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(PlatformSpec {
                os: os.into(),
                architecture: arch.into(),
                variant: Some(v.into()),
            }),
            _ => bail!("invalid platform {s:?}: expected os/arch[/variant], e.g. linux/amd64"),
        }
    }

    fn matches(&self, p: &Platform) -> bool {
        p.os == self.os
            && p.architecture == self.architecture
            && (self.variant.is_none() || self.variant == p.variant)
    }
}

/// An open OCI image layout.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
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
        Ok(Layout { root })
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
        };
        let empty = json::canonical(&Index::empty())?;
        layout.install_file_if_missing("index.json", &empty)?;
        let header = format!("{{\"imageLayoutVersion\":\"{}\"}}", media::OCI_LAYOUT_VERSION);
        layout.install_file_if_missing("oci-layout", header.as_bytes())?;
        Ok(layout)
    }

    fn install_file_if_missing(&self, name: &str, bytes: &[u8]) -> crate::Result<()> {
        let dest = self.root.join(name);
        if dest.exists() {
            return Ok(());
        }
        let tmp = self.temp_file()?;
        write_synced(tmp.as_file(), bytes).with_context(|| dest.display().to_string())?;
        match tmp.persist_noclobber(&dest) {
            Ok(_) => sync_dir(&self.root),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e.error).with_context(|| dest.display().to_string()),
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

    /// Reuses a stored blob: refreshes its mtime, which tells image-prune that a writer is
    /// about to reference it. False when the blob is not there (or was just pruned: then the
    /// writer stores it anew). The claim is made under a shared `flock` on the blob, which
    /// image-prune takes exclusively while it reads the mtime and deletes, so a claim is either
    /// seen by the prune or finds the blob deleted, never lost in between. A blob this user may
    /// not touch (another owner's, read-only) is still reused, unclaimed.
    pub fn claim_blob(&self, digest: &Digest) -> crate::Result<bool> {
        use rustix::fs::{FlockOperation, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = self.blob_path(digest);
        let context = || format!("reusing {}", path.display());
        // Non-blocking: a FIFO planted under a digest name must not hang the open.
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(context),
        };
        rustix::fs::flock(&file, FlockOperation::LockShared)
            .map_err(io::Error::from)
            .with_context(context)?;
        let meta = file.metadata().with_context(context)?;
        if !meta.is_file() || meta.nlink() == 0 {
            return Ok(false);
        }
        let now = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_NOW,
            },
        };
        match rustix::fs::futimens(&file, &now) {
            Ok(()) | Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM | rustix::io::Errno::ROFS) => {
                Ok(true)
            }
            Err(e) => Err(io::Error::from(e)).with_context(context),
        }
    }

    /// Opens a blob for a verified read: the reader fails at the end unless the bytes match.
    pub fn open_blob(&self, digest: &Digest, size: Option<u64>) -> crate::Result<VerifyingReader<File>> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::BlobMissing {
                    layout: self.root.clone(),
                    digest: digest.clone(),
                }
                .into());
            }
            Err(e) => return Err(e).with_context(|| path.display().to_string()),
        };
        Ok(VerifyingReader::new(file, digest.clone(), size))
    }

    /// Reads a small JSON blob whole (capped at [`json::max_json`]) and verifies it.
    pub fn read_blob(&self, desc: &Descriptor) -> crate::Result<Vec<u8>> {
        if desc.size > json::max_json() {
            bail!(
                "{}: {} bytes is too large for a JSON document (--max-json {})",
                desc.digest,
                desc.size,
                json::max_json()
            );
        }
        let mut buf = Vec::with_capacity(desc.size as usize);
        self.open_blob(&desc.digest, Some(desc.size))?
            .read_to_end(&mut buf)
            .with_context(|| format!("reading blob {}", desc.digest))?;
        Ok(buf)
    }

    /// A temporary file in the layout, removed unless persisted, and locked (an exclusive
    /// `flock`) until it is closed: image-prune removes only temporary files it can lock.
    fn temp_file(&self) -> crate::Result<tempfile::NamedTempFile> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let context = || format!("creating a temporary file in {}", self.root.display());
        // A prune may remove the file between its creation and the lock (with --grace 0):
        // then it has no name any more, and a new one is made.
        for _ in 0..8 {
            let tmp = tempfile::Builder::new()
                .prefix(TMP_PREFIX)
                // Blobs and index.json are content anyone may read (0644 less the umask, as
                // umoci and skopeo write them), not tempfile's private 0600.
                .permissions(fs::Permissions::from_mode(0o644))
                .tempfile_in(&self.root)
                .with_context(context)?;
            // Blocking: image-prune holds it for a moment while it checks whether it is in use.
            rustix::fs::flock(tmp.as_file(), rustix::fs::FlockOperation::LockExclusive)
                .map_err(io::Error::from)
                .with_context(context)?;
            if tmp.as_file().metadata().with_context(context)?.nlink() > 0 {
                return Ok(tmp);
            }
        }
        bail!("{}: temporary files keep vanishing", self.root.display())
    }

    /// Starts a new blob.
    pub fn blob_writer(&self) -> crate::Result<BlobWriter> {
        let tmp = self.temp_file()?;
        Ok(BlobWriter {
            out: HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp)),
            layout: self.clone(),
        })
    }

    /// Stores bytes as a blob. Returns the digest and whether the blob was already there.
    pub fn write_blob(&self, bytes: &[u8]) -> crate::Result<(Digest, bool)> {
        let digest = Digest::of(bytes);
        if self.claim_blob(&digest)? {
            return Ok((digest, true));
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes)?;
        let (d, _, reused) = w.commit()?;
        Ok((d, reused))
    }

    /// Copies a blob from a file (another layout's blob, a `-o` output), verifying it.
    pub fn copy_blob_from(&self, src: &Path, digest: &Digest, size: u64) -> crate::Result<bool> {
        if self.claim_blob(digest)? {
            return Ok(true);
        }
        let file = File::open(src).with_context(|| src.display().to_string())?;
        let mut r = VerifyingReader::new(file, digest.clone(), Some(size));
        let mut w = self.blob_writer()?;
        io::copy(&mut r, &mut w).with_context(|| format!("copying {digest} from {}", src.display()))?;
        let (d, _, reused) = w.commit()?;
        if &d != digest {
            bail!("{}: digest mismatch: the content hashes to {d}", digest);
        }
        Ok(reused)
    }

    /// Reads `index.json` (readers need no lock: it is only ever replaced by rename).
    pub fn read_index(&self) -> crate::Result<Index> {
        let path = self.root.join("index.json");
        let f = File::open(&path).with_context(|| path.display().to_string())?;
        json::read_capped(f, &path.display().to_string())
    }

    /// Takes the exclusive lock that serializes `index.json` updates (and image-prune).
    pub fn lock(&self) -> crate::Result<LayoutLock> {
        let path = self.root.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| path.display().to_string())?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(LayoutLock { _file: file })
    }

    /// Reads, changes and atomically replaces `index.json` under the lock.
    pub fn update_index<T>(&self, change: impl FnOnce(&mut Index) -> crate::Result<T>) -> crate::Result<T> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let out = change(&mut index)?;
        self.write_index_locked(&index)?;
        Ok(out)
    }

    /// Replaces `index.json`; the caller holds [`Layout::lock`].
    pub fn write_index_locked(&self, index: &Index) -> crate::Result<()> {
        let bytes = json::canonical(index)?;
        let dest = self.root.join("index.json");
        let tmp = self.temp_file()?;
        write_synced(tmp.as_file(), &bytes).with_context(|| format!("writing {}", dest.display()))?;
        tmp.persist(&dest)
            .with_context(|| format!("replacing {}", dest.display()))?;
        sync_dir(&self.root)
    }

    /// Points `tag` at `desc`. A previous holder of the tag stays in the index without its
    /// ref name (a dangling image, as docker leaves `<none>:<none>`), unless it is the same
    /// manifest or another entry still holds it. Refused, with the index unchanged, when the
    /// manifest (or index) blob, or an image manifest's config or a layer, is not in the layout.
    pub fn set_tag(&self, tag: &str, desc: Descriptor) -> crate::Result<()> {
        self.tag(tag, desc, None)
    }

    /// Stores `manifest` (the bytes `desc` describes) and points `tag` at it, both under the
    /// index lock. A new image's manifest is written this way: stored before the lock, it could
    /// be the manifest of a dangling image that a concurrent image-prune removes before the tag
    /// lands (re-committing identical content gives the same manifest).
    pub fn store_and_tag(&self, tag: &str, desc: Descriptor, manifest: &[u8]) -> crate::Result<()> {
        let digest = Digest::of(manifest);
        if digest != desc.digest || manifest.len() as u64 != desc.size {
            bail!(
                "{}: the manifest is {} bytes hashing to {digest}, not what its descriptor says",
                desc.digest,
                manifest.len()
            );
        }
        self.tag(tag, desc, Some(manifest))
    }

    fn tag(&self, tag: &str, mut desc: Descriptor, manifest: Option<&[u8]>) -> crate::Result<()> {
        crate::reference::check_ref_name(tag)?;
        desc.annotations
            .insert(media::REF_NAME.to_string(), tag.to_string());
        self.update_index(|index| {
            if let Some(bytes) = manifest {
                self.write_blob(bytes)?;
            }
            self.check_complete(&desc)
                .with_context(|| format!("tagging {tag}"))?;
            for entry in index.manifests.iter_mut() {
                if entry.ref_name() == Some(tag) {
                    entry.annotations.remove(media::REF_NAME);
                }
            }
            // Drop untagged duplicates of entries that are still reachable from another entry,
            // so re-tagging the same image does not pile up dangling entries.
            let new_digest = desc.digest.clone();
            index
                .manifests
                .retain(|e| !(e.ref_name().is_none() && e.digest == new_digest));
            // An image that keeps another tag is not dangling: no untagged entry for it either.
            let tagged: std::collections::HashSet<Digest> = index
                .manifests
                .iter()
                .filter(|e| e.ref_name().is_some())
                .map(|e| e.digest.clone())
                .collect();
            let mut seen = std::collections::HashSet::new();
            index.manifests.retain(|e| {
                e.ref_name().is_some() || (!tagged.contains(&e.digest) && seen.insert(e.digest.clone()))
            });
            index.manifests.push(desc);
            Ok(())
        })
    }

    /// The blob `desc` names is stored and, for an image manifest, its config and layers too:
    /// what a tag must never point past. Called under the index lock, which image-prune holds
    /// while it deletes.
    fn check_complete(&self, desc: &Descriptor) -> crate::Result<()> {
        let missing = |digest: &Digest| Error::BlobMissing {
            layout: self.root.clone(),
            digest: digest.clone(),
        };
        if !self.has_blob(&desc.digest) {
            return Err(missing(&desc.digest).into());
        }
        if media::is_manifest(&desc.media_type) {
            let m = self.read_manifest(desc)?;
            // A layer listed many times is looked up once.
            let mut seen = std::collections::HashSet::new();
            if let Some(d) = std::iter::once(&m.config)
                .chain(&m.layers)
                .filter(|d| seen.insert(&d.digest))
                .find(|d| !self.has_blob(&d.digest))
            {
                return Err(missing(&d.digest).into());
            }
        }
        Ok(())
    }

    /// Resolves a reference to an image manifest, picking a platform from an index.
    pub fn resolve(&self, target: &Target, platform: Option<&PlatformSpec>) -> crate::Result<Image> {
        let index = self.read_index()?;
        let not_found = || Error::ImageNotFound {
            layout: self.root.clone(),
            reference: match target {
                Target::Tag(t) => format!("tagged {t:?}"),
                Target::Digest(d) => d.to_string(),
            },
        };
        let mut desc = match target {
            Target::Tag(t) => index
                .manifests
                .iter()
                .rev()
                .find(|e| e.ref_name() == Some(t))
                .cloned(),
            Target::Digest(d) => match index.manifests.iter().find(|e| &e.digest == d) {
                Some(e) => Some(e.clone()),
                None if self.has_blob(d) => {
                    let size = fs::metadata(self.blob_path(d))?.len();
                    let v: Value =
                        serde_json::from_slice(&self.read_blob(&Descriptor::new("", d.clone(), size))?)
                            .with_context(|| format!("{d}: not a JSON manifest"))?;
                    let mt = v
                        .get("mediaType")
                        .and_then(Value::as_str)
                        .unwrap_or(media::MANIFEST);
                    Some(Descriptor::new(mt, d.clone(), size))
                }
                None => None,
            },
        }
        .ok_or_else(not_found)?;
        let host = PlatformSpec::host();
        let want = platform.unwrap_or(&host);
        for _ in 0..8 {
            if media::is_manifest(&desc.media_type) {
                let manifest = self.read_manifest(&desc)?;
                return Ok(Image {
                    descriptor: desc,
                    manifest,
                });
            }
            if !media::is_index(&desc.media_type) {
                bail!(
                    "{}: unsupported media type {:?} (not an image manifest or index)",
                    desc.digest,
                    desc.media_type
                );
            }
            let nested: Index = self.read_json(&desc)?;
            check_media_type(&desc, nested.media_type.as_deref())?;
            let candidates: Vec<&Descriptor> = nested
                .manifests
                .iter()
                .filter(|m| media::is_manifest(&m.media_type) || media::is_index(&m.media_type))
                .collect();
            let pick = candidates
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| want.matches(p)))
                .or_else(|| {
                    if candidates.len() == 1 && platform.is_none() {
                        candidates.first()
                    } else {
                        None
                    }
                })
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: no manifest for platform {}/{} in the index",
                        desc.digest,
                        want.os,
                        want.architecture
                    )
                })?;
            desc = (*pick).clone();
        }
        bail!("{}: image indexes nested too deep", desc.digest)
    }

    /// Reads and parses a manifest, checking its media type against the descriptor's.
    pub fn read_manifest(&self, desc: &Descriptor) -> crate::Result<Manifest> {
        let m: Manifest = self.read_json(desc)?;
        check_media_type(desc, m.media_type.as_deref())?;
        if m.schema_version != 2 {
            bail!(
                "{}: unsupported manifest schemaVersion {}",
                desc.digest,
                m.schema_version
            );
        }
        Ok(m)
    }

    /// Reads a verified JSON blob into a type.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, desc: &Descriptor) -> crate::Result<T> {
        let bytes = self.read_blob(desc)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a valid {}", desc.digest, desc.media_type))
    }
}

/// Held while `index.json` may change; released on drop.
pub struct LayoutLock {
    _file: File,
}

/// The blob's own `mediaType` must agree with what referenced it (CVE-2021-41190).
fn check_media_type(desc: &Descriptor, inside: Option<&str>) -> crate::Result<()> {
    if let Some(inside) = inside
        && inside != desc.media_type
    {
        bail!(
            "{}: media type confusion: descriptor says {:?}, blob says {inside:?}",
            desc.digest,
            desc.media_type
        );
    }
    Ok(())
}

/// A blob being written: hashes as it goes, appears under its digest on `commit`.
pub struct BlobWriter {
    out: HashingWriter<BufWriter<tempfile::NamedTempFile>>,
    layout: Layout,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.written()
    }

    /// fsyncs and renames the blob into place. Returns its digest, size and whether an
    /// identical blob was already there (then the new copy is discarded).
    pub fn commit(self) -> crate::Result<(Digest, u64, bool)> {
        let (buf, digest, size) = self.out.finish();
        let mut tmp = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .context("flushing blob")?;
        tmp.as_file().sync_all().context("syncing blob")?;
        let dest = self.layout.blob_path(&digest);
        // A stored copy is claimed instead; one pruned between the claim and the rename is
        // replaced by this one.
        for _ in 0..8 {
            if self.layout.claim_blob(&digest)? {
                return Ok((digest, size, true));
            }
            match tmp.persist_noclobber(&dest) {
                Ok(_) => {
                    sync_dir(&self.layout.root.join("blobs/sha256"))?;
                    return Ok((digest, size, false));
                }
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => tmp = e.file,
                Err(e) => return Err(e.error).with_context(|| dest.display().to_string()),
            }
        }
        bail!("{}: exists but is not a regular file", dest.display())
    }
}

fn write_synced(mut f: &File, bytes: &[u8]) -> crate::Result<()> {
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn sync_dir(dir: &Path) -> crate::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
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

    fn age_blob(layout: &Layout, digest: &Digest) -> std::time::SystemTime {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        filetime::set_file_mtime(
            layout.blob_path(digest),
            filetime::FileTime::from_system_time(old),
        )
        .unwrap();
        old
    }

    fn mtime(layout: &Layout, digest: &Digest) -> std::time::SystemTime {
        fs::metadata(layout.blob_path(digest))
            .unwrap()
            .modified()
            .unwrap()
    }

    #[test]
    fn every_way_of_reusing_a_blob_claims_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
        let bytes = b"a layer, say";
        let (digest, reused) = layout.write_blob(bytes).unwrap();
        assert!(!reused);
        let src = dir.path().join("copy");
        fs::write(&src, bytes).unwrap();
        let reuses: [&dyn Fn() -> bool; 3] = [
            &|| layout.write_blob(bytes).unwrap().1,
            &|| {
                let mut w = layout.blob_writer().unwrap();
                w.write_all(bytes).unwrap();
                w.commit().unwrap().2
            },
            &|| layout.copy_blob_from(&src, &digest, bytes.len() as u64).unwrap(),
        ];
        for (i, reuse) in reuses.iter().enumerate() {
            let old = age_blob(&layout, &digest);
            assert!(reuse(), "way {i} reuses");
            assert!(
                mtime(&layout, &digest) > old + std::time::Duration::from_secs(3000),
                "way {i}"
            );
        }
        // A blob pruned meanwhile is not claimed: the writer stores it anew.
        fs::remove_file(layout.blob_path(&digest)).unwrap();
        assert!(!layout.claim_blob(&digest).unwrap());
        assert_eq!(layout.write_blob(bytes).unwrap(), (digest.clone(), false));
        assert_eq!(fs::read(layout.blob_path(&digest)).unwrap(), bytes);
    }

    #[test]
    fn a_writers_temporary_file_is_locked_until_it_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
        let mut w = layout.blob_writer().unwrap();
        w.write_all(b"in progress").unwrap();
        w.flush().unwrap();
        let tmp: Vec<PathBuf> = fs::read_dir(layout.root())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(TMP_PREFIX))
            .collect();
        assert_eq!(tmp.len(), 1);
        let try_lock = || {
            let f = File::open(&tmp[0]).unwrap();
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        };
        assert_eq!(try_lock(), Err(rustix::io::Errno::WOULDBLOCK));
        drop(w);
        assert!(!tmp[0].exists(), "an abandoned writer removes its file");
    }

    fn manifest_with(layout: &Layout, layer: &[u8]) -> (Descriptor, Vec<u8>, Digest) {
        let (layer, _) = layout.write_blob(layer).unwrap();
        let (config, _) = layout.write_blob(b"{}").unwrap();
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::MANIFEST,
            "config": {"mediaType": media::CONFIG, "digest": config, "size": 2},
            "layers": [{"mediaType": media::LAYER_GZIP, "digest": layer, "size": 1}],
        });
        let bytes = json::canonical(&m).unwrap();
        let desc = Descriptor::new(media::MANIFEST, Digest::of(&bytes), bytes.len() as u64);
        (desc, bytes, layer)
    }

    #[test]
    fn a_tag_never_lands_on_an_image_with_a_blob_missing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
        let (desc, bytes, layer) = manifest_with(&layout, b"x");
        let err = format!("{:#}", layout.set_tag("t", desc.clone()).unwrap_err());
        assert!(
            err.contains(&desc.digest.to_string()) && err.contains("missing"),
            "{err}"
        );

        layout.store_and_tag("t", desc.clone(), &bytes).unwrap();
        assert_eq!(fs::read(layout.blob_path(&desc.digest)).unwrap(), bytes);
        assert_eq!(layout.read_index().unwrap().manifests.len(), 1);

        let (other, other_bytes, other_layer) = manifest_with(&layout, b"y");
        fs::remove_file(layout.blob_path(&other_layer)).unwrap();
        let before = fs::read(layout.root().join("index.json")).unwrap();
        let err = format!(
            "{:#}",
            layout
                .store_and_tag("t", other.clone(), &other_bytes)
                .unwrap_err()
        );
        assert!(
            err.contains("tagging t") && err.contains(&other_layer.to_string()),
            "{err}"
        );
        assert_eq!(fs::read(layout.root().join("index.json")).unwrap(), before);
        assert!(layout.has_blob(&layer));

        let mut forged = other.clone();
        forged.size += 1;
        assert!(layout.store_and_tag("t", forged, &other_bytes).is_err());
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
