//! The layer cache of `image-stack --mount`: each layer extracted once, in overlayfs's format
//! (`apply::Overlay`), into `LAYOUT/.layerkit/layers/<hex of its diffID>/diff`, for overlay
//! mounts to stack as lower layers. Inside the layout because that is where the image's blobs
//! are, and because the mounts' upper and work directories (`mounts`) sit beside it on the same
//! file system, as overlayfs needs them to. `.layerkit` is 0700: the entries hold setuid files
//! and devices owned by other users, which must stay out of their reach (CVE-2021-41103).
//!
//! **Complete before use.** An entry is extracted into `layers/.tmp-<hex>-…` by the same
//! hardened applier as `--rootfs`, given its completion marker `layer.json` (holding the diffID
//! and the format) last, and renamed into place: a killed extraction leaves a `.tmp-` directory
//! no mount uses (the next prune removes it). An entry whose marker is missing or names another
//! layer or format was damaged on disk: it is refused, never used, until image-prune removes it.
//! What the marker cannot tell is a file changed inside a complete entry; the cache trusts the
//! file system as the layout trusts a blob once it is verified.
//!
//! **Locks.** Each entry has a lock file `layers/<hex>.lock`. A mount holds an exclusive `flock`
//! on the lock of every layer it uses (taken in diffID order, so two mounts never deadlock)
//! from before it looks for the entry until its mount is made: two mounts racing for one layer
//! extract it once, and image-prune, which removes an entry only under its lock and only when
//! no live mount (`/proc/self/mountinfo`, see [`super::mounts`]) uses it, never removes what a
//! mount is about to use. Once made, a mount keeps its layers through the mount table.

use super::mounts;
use super::{Layout, Step, Walk};
use crate::apply::{Applier, Options, Overlay, Report};
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use anyhow::{Context, bail};
use rustix::fs::{FlockOperation, RenameFlags};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, hash_map};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The directory of the layout that holds the cache and the mounts.
pub const STATE_DIR: &str = ".layerkit";
const LAYERS: &str = "layers";
const MARKER: &str = "layer.json";
const TREE: &str = "diff";
/// The directories the layer implies (see `apply::overlay`), NUL-separated.
const IMPLIED: &str = "implied";
const TMP: &str = ".tmp-";
const GONE: &str = ".gone-";

/// How the entries are extracted: by root for the kernel's overlayfs, or without root for
/// fuse-overlayfs (owners recorded in `user.rootlesscontainers`, devices left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Overlay,
    OverlayRootless,
}

impl Format {
    /// The format of the caller: rootless unless root.
    pub fn for_caller() -> Format {
        if crate::cli::is_root() {
            Format::Overlay
        } else {
            Format::OverlayRootless
        }
    }

    fn options(self) -> Options {
        let root = self == Format::Overlay;
        Options {
            privileged: root,
            rootless: !root,
            root_mode: Some(0o755),
            overlay: Some(if root { Overlay::Trusted } else { Overlay::User }),
        }
    }
}

/// The completion marker of an entry, written last.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
    pub format: Format,
    /// The layer carried `./`: the mount's root takes its attributes.
    pub root_entry: bool,
    /// The layer hides every path of the layers below it.
    pub opaque_root: bool,
    /// Directories the layer implies without an entry (see `apply::overlay`).
    pub implied: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_implied: Option<String>,
}

/// The layer cache of one layout.
pub struct Cache {
    dir: PathBuf,
    format: Format,
}

/// One complete entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The extracted layer, for overlayfs's `lowerdir`.
    pub tree: PathBuf,
    pub marker: Marker,
}

impl Entry {
    /// The directories the layer implies without an entry of its own.
    pub fn implied(&self) -> crate::Result<Vec<Vec<u8>>> {
        if self.marker.implied == 0 {
            return Ok(Vec::new());
        }
        let path = self.tree.with_file_name(IMPLIED);
        let bytes = fs::read(&path).with_context(|| path.display().to_string())?;
        Ok(bytes.split(|b| *b == 0).map(<[u8]>::to_vec).collect())
    }
}

/// Locks on the entries of some layers (see the module's comment); released on drop.
pub struct Held {
    locks: Vec<(Digest, File)>,
}

impl Layout {
    /// `LAYOUT/.layerkit`, made 0700 when `create` and missing; None when missing. Refused
    /// unless it is a directory of the caller (not a symlink someone planted in the layout).
    /// The path is absolute (mounts name it, and are found by it).
    pub fn state_dir(&self, create: bool) -> crate::Result<Option<PathBuf>> {
        let root = fs::canonicalize(&self.root).with_context(|| self.root.display().to_string())?;
        let dir = root.join(STATE_DIR);
        match private_dir(&dir, create)? {
            true => Ok(Some(dir)),
            false => Ok(None),
        }
    }

    /// The layer cache, made when missing.
    pub fn layer_cache(&self, format: Format) -> crate::Result<Cache> {
        let state = self.state_dir(true)?.context("creating the layer cache")?;
        let dir = state.join(LAYERS);
        private_dir(&dir, true)?;
        Ok(Cache { dir, format })
    }

    fn existing_cache_dir(&self) -> crate::Result<Option<PathBuf>> {
        let Some(state) = self.state_dir(false)? else {
            return Ok(None);
        };
        let dir = state.join(LAYERS);
        Ok(private_dir(&dir, false)?.then_some(dir))
    }
}

impl Cache {
    /// Takes the locks of these layers' entries, in diffID order, waiting for other holders.
    pub fn lock(&self, diff_ids: &[Digest]) -> crate::Result<Held> {
        let mut sorted: Vec<&Digest> = diff_ids.iter().collect();
        sorted.sort_by(|a, b| a.hex().cmp(b.hex()));
        sorted.dedup();
        let mut locks = Vec::new();
        for d in sorted {
            locks.push((d.clone(), lock_entry(&self.dir, d.hex())?));
        }
        Ok(Held { locks })
    }

    /// The entry of layer `diff_id` (locked in `held`), extracted first when missing:
    /// `extract` applies the layer's tar (and checks its digests) with the applier it is given.
    /// Returns the entry and the applier's warnings (none when it was already there).
    pub fn entry(
        &self,
        held: &Held,
        diff_id: &Digest,
        extract: impl FnOnce(&mut Applier) -> crate::Result<()>,
    ) -> crate::Result<(Entry, Vec<String>)> {
        assert!(
            held.locks.iter().any(|(d, _)| d == diff_id),
            "entry {diff_id} not locked"
        );
        if let Some(entry) = self.complete(diff_id)? {
            return Ok((entry, Vec::new()));
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{TMP}{}-", diff_id.hex()))
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&self.dir)
            .with_context(|| format!("creating a cache entry in {}", self.dir.display()))?;
        // Removed by `remove_tree` below on failure (TempDir's own removal cannot enter the
        // 0555 directories of a finished tree as non-root).
        let tmp = tmp.keep();
        let result = self.extract_into(&tmp, diff_id, extract);
        match result {
            Ok(report) => {
                let dest = self.dir.join(diff_id.hex());
                if let Err(e) = rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &tmp,
                    rustix::fs::CWD,
                    &dest,
                    RenameFlags::NOREPLACE,
                ) {
                    let _ = remove_tree(&tmp);
                    return Err(io::Error::from(e)).with_context(|| format!("installing {}", dest.display()));
                }
                let entry = self
                    .complete(diff_id)?
                    .with_context(|| format!("{}: vanished once installed", dest.display()))?;
                Ok((entry, report.warnings))
            }
            Err(e) => {
                let _ = remove_tree(&tmp);
                Err(e)
            }
        }
    }

    fn extract_into(
        &self,
        tmp: &Path,
        diff_id: &Digest,
        extract: impl FnOnce(&mut Applier) -> crate::Result<()>,
    ) -> crate::Result<Report> {
        let tree = tmp.join(TREE);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tree)
            .with_context(|| tree.display().to_string())?;
        let mut applier = Applier::new(&tree, self.format.options())?;
        extract(&mut applier)?;
        let mut report = applier.finish()?;
        if let Some(first) = report.implied.first() {
            report.warnings.push(format!(
                "{} directories it writes into have no entry of their own (first {}): mounts show them 0755 and owned by root, as docker does, where --rootfs keeps a lower layer's directory as it was",
                report.implied.len(),
                crate::path::display(first)
            ));
        }
        if !report.implied.is_empty() {
            let path = tmp.join(IMPLIED);
            fs::write(&path, report.implied.join(&0)).with_context(|| path.display().to_string())?;
        }
        let marker = Marker {
            diff_id: diff_id.clone(),
            format: self.format,
            root_entry: report.root_entry,
            opaque_root: report.opaque_root,
            implied: report.implied.len() as u64,
            first_implied: report.implied.first().map(|p| crate::path::display(p)),
        };
        let path = tmp.join(MARKER);
        let mut f = File::create_new(&path).with_context(|| path.display().to_string())?;
        f.write_all(&crate::json::canonical(&marker)?)
            .with_context(|| path.display().to_string())?;
        Ok(report)
    }

    /// The complete entry of `diff_id`; None when there is none; an error when one is there but
    /// cannot be used (see [`check`]).
    fn complete(&self, diff_id: &Digest) -> crate::Result<Option<Entry>> {
        let dir = self.dir.join(diff_id.hex());
        match check(&dir, diff_id, Some(self.format)) {
            Ok(Some(marker)) => Ok(Some(Entry {
                tree: dir.join(TREE),
                marker,
            })),
            Ok(None) => Ok(None),
            Err(why) => bail!(
                "layer cache entry {}: {why}: it is not used (image-prune {} removes it, and the next mount extracts the layer again)",
                dir.display(),
                self.dir
                    .parent()
                    .and_then(Path::parent)
                    .map_or_else(String::new, |l| l.display().to_string())
            ),
        }
    }
}

/// An entry's marker: Ok(None) when there is no entry at `dir`, Err (why) when what is there
/// cannot be used: no marker (an entry moved in by hand, or damaged), or one that names another
/// layer or, with `format`, another format.
fn check(dir: &Path, diff_id: &Digest, format: Option<Format>) -> Result<Option<Marker>, String> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err("not a directory".into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let marker_path = dir.join(MARKER);
    let mut bytes = Vec::new();
    let read = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&marker_path)
        .and_then(|f| f.take(64 << 10).read_to_end(&mut bytes));
    match read {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err("its completion marker layer.json is missing".into());
        }
        Err(e) => return Err(format!("reading layer.json: {e}")),
    }
    let marker: Marker = serde_json::from_slice(&bytes)
        .map_err(|e| format!("its completion marker layer.json is not valid: {e}"))?;
    if &marker.diff_id != diff_id {
        return Err(format!("its completion marker names layer {}", marker.diff_id));
    }
    if let Some(f) = format
        && marker.format != f
    {
        return Err(format!(
            "it was extracted as {:?}, not {:?} (by {} a user)",
            marker.format,
            f,
            if f == Format::Overlay {
                "another"
            } else {
                "root, not"
            }
        ));
    }
    if marker.implied > 0 && !dir.join(IMPLIED).is_file() {
        return Err("its list of implied directories is missing".into());
    }
    match fs::symlink_metadata(dir.join(TREE)) {
        Ok(m) if m.is_dir() => Ok(Some(marker)),
        _ => Err("its tree diff/ is missing".into()),
    }
}

/// Opens (creating) and locks `<hex>.lock` exclusively, waiting for another holder. A lock file
/// image-prune unlinked meanwhile is opened again.
fn lock_entry(dir: &Path, hex: &str) -> crate::Result<File> {
    let path = dir.join(format!("{hex}.lock"));
    loop {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .with_context(|| path.display().to_string())?;
        rustix::fs::flock(&f, FlockOperation::LockExclusive)
            .map_err(io::Error::from)
            .with_context(|| format!("locking {}", path.display()))?;
        if f.metadata().with_context(|| path.display().to_string())?.nlink() > 0 {
            return Ok(f);
        }
    }
}

/// For image-prune: takes `<hex>.lock` unless someone holds it (None); Some(None) when there
/// is no lock file, which no one then holds (a holder makes it first). Never makes one.
fn lock_if_free(dir: &Path, hex: &str) -> crate::Result<Option<Option<File>>> {
    let path = dir.join(format!("{hex}.lock"));
    let f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(None)),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(Some(f))),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(io::Error::from(e)).with_context(|| format!("locking {}", path.display())),
    }
}

/// Makes `dir` 0700 when `create` and missing (false when missing otherwise); refuses it unless
/// it is a directory owned by the caller.
fn private_dir(dir: &Path, create: bool) -> crate::Result<bool> {
    if create {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    let m = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| dir.display().to_string()),
    };
    if !m.is_dir() {
        bail!(
            "{}: not a directory (layerkit keeps its layer cache and mounts there)",
            dir.display()
        );
    }
    let me = rustix::process::geteuid().as_raw();
    if m.uid() != me {
        bail!(
            "{}: owned by uid {}, not by this user (uid {me}): the layer cache is private to the user who made it",
            dir.display(),
            m.uid()
        );
    }
    Ok(true)
}

/// Removes a tree whatever its modes: as non-root a 0555 directory of an extracted layer would
/// otherwise keep its children.
pub(super) fn remove_tree(path: &Path) -> crate::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    open_up(path);
    fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

/// Gives the owner rwx on every directory of a tree (never following a symlink).
fn open_up(dir: &Path) {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
    }
}

/// The bytes a tree takes on disk (allocated blocks, each inode once), not following symlinks.
pub fn disk_usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        if m.is_dir()
            && let Ok(rd) = fs::read_dir(&p)
        {
            todo.extend(rd.flatten().map(|e| e.path()));
        }
    }
    total
}

/// What the cache holds, as image-prune and image-ls see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A complete entry.
    Entry(Digest),
    /// An entry that cannot be used (see [`check`]), and why.
    Damaged(Digest, String),
    /// What a killed extraction or prune left (`.tmp-`, `.gone-`), or a lock file alone.
    Leftover,
}

/// One thing in the cache directory.
#[derive(Clone, Debug)]
pub struct CacheFile {
    pub name: String,
    pub item: Item,
    /// Its disk usage.
    pub bytes: u64,
}

/// What [`Layout::prune_cache`] removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default)]
pub struct CachePrune {
    pub removed: Vec<CacheFile>,
    /// Mount records whose mount is gone (a reboot, a plain `umount`), removed with their
    /// upper directory: (record, where it was mounted, bytes).
    pub stale_mounts: Vec<(PathBuf, PathBuf, u64)>,
    pub kept: Vec<CacheFile>,
}

impl CachePrune {
    pub fn reclaimed(&self) -> u64 {
        self.removed.iter().map(|f| f.bytes).sum::<u64>() + self.stale_mounts.iter().map(|s| s.2).sum::<u64>()
    }
}

impl Layout {
    /// The diffIDs of the layers of the images these index entries name (through nested
    /// indexes): the cache entries they need. Unreadable manifests and configs are passed over
    /// (what they would need is then not kept: a mount of them fails anyway).
    pub fn layers_of(&self, entries: &[Descriptor]) -> crate::Result<HashSet<Digest>> {
        let mut out = HashSet::new();
        for e in entries {
            self.walk(e, &mut |_, step| {
                if let Step::Manifest(m) = step
                    && let Ok(config) = self.read_config(&m.config)
                {
                    out.extend(config.diff_ids().iter().cloned());
                }
                Ok(match step {
                    Step::Enter | Step::Manifest(_) | Step::Index(_) => Walk::Continue,
                    Step::Unreadable(_) => Walk::Skip,
                })
            })?;
        }
        Ok(out)
    }

    /// Everything in the layer cache, with its disk usage (for image-ls's disk usage).
    pub fn cache_files(&self) -> crate::Result<Vec<CacheFile>> {
        let Some(dir) = self.existing_cache_dir()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let rd = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for e in rd {
            let e = e.with_context(|| format!("listing {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let item = match format!("sha256:{name}").parse::<Digest>() {
                Ok(d) => match check(&path, &d, None) {
                    Ok(Some(_)) => Item::Entry(d),
                    Ok(None) => continue,
                    Err(why) => Item::Damaged(d, why),
                },
                // A lock file goes with its entry.
                Err(_) if name.ends_with(".lock") && dir.join(name.trim_end_matches(".lock")).exists() => {
                    continue;
                }
                Err(_) if name.ends_with(".lock") || name.starts_with(TMP) || name.starts_with(GONE) => {
                    Item::Leftover
                }
                // Not ours: left alone, as a layout's unknown files are.
                Err(_) => continue,
            };
            out.push(CacheFile {
                bytes: disk_usage(&path),
                name,
                item,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes the cache entries no image needs (`needed`: the diffIDs of the images that stay)
    /// and no live mount uses, damaged entries no live mount uses, what killed extractions left,
    /// and the records (with their upper directories) of mounts that are gone. With `dry_run`
    /// nothing is removed: the report says what would be.
    pub fn prune_cache(&self, needed: &HashSet<Digest>, dry_run: bool) -> crate::Result<CachePrune> {
        let mut report = CachePrune::default();
        let Some(state) = self.state_dir(false)? else {
            return Ok(report);
        };
        // Records first: a stale record's layers are then used by nothing.
        report.stale_mounts = mounts::prune_stale(&state, dry_run)?;
        let Some(dir) = self.existing_cache_dir()? else {
            return Ok(report);
        };
        let files = self.cache_files()?;
        // Locks of the candidates (one per layer), taken before the mount table is read: a
        // mount that holds one is in progress (kept); one made before shows in the table.
        let mut held: HashMap<String, Option<Option<File>>> = HashMap::new();
        let mut candidates = Vec::new();
        for f in files {
            let hex = match &f.item {
                Item::Entry(d) if needed.contains(d) => {
                    report.kept.push(f);
                    continue;
                }
                Item::Entry(d) | Item::Damaged(d, _) => Some(d.hex().to_string()),
                Item::Leftover => leftover_hex(&f.name),
            };
            if let Some(h) = hex {
                let lock = match held.entry(h) {
                    hash_map::Entry::Occupied(o) => o.into_mut(),
                    hash_map::Entry::Vacant(v) => {
                        let lock = lock_if_free(&dir, v.key())?;
                        v.insert(lock)
                    }
                };
                if lock.is_none() {
                    report.kept.push(f);
                    continue;
                }
            }
            candidates.push(f);
        }
        let live = mounts::live_layers(&state)?;
        for f in candidates {
            if let Item::Entry(d) | Item::Damaged(d, _) = &f.item
                && live.contains(d)
            {
                report.kept.push(f);
                continue;
            }
            if !dry_run {
                remove_entry(&dir, &f.name)?;
                if let Item::Entry(d) | Item::Damaged(d, _) = &f.item {
                    // Unlinked while held: a mount waiting on it opens a new one.
                    remove_entry(&dir, &format!("{}.lock", d.hex()))?;
                }
            }
            report.removed.push(f);
        }
        drop(held);
        Ok(report)
    }
}

/// The diffID hex a leftover belongs to (`<hex>.lock`, `.tmp-<hex>-…`); None for `.gone-…`,
/// which no one holds.
fn leftover_hex(name: &str) -> Option<String> {
    let hex = name
        .strip_suffix(".lock")
        .or_else(|| name.strip_prefix(TMP).and_then(|r| r.split('-').next()))?;
    (hex.len() == 64).then(|| hex.to_string())
}

/// Removes a cache file: a directory is first renamed aside (`.gone-…`), so that it disappears
/// at once and whole, then removed.
fn remove_entry(dir: &Path, name: &str) -> crate::Result<()> {
    let path = dir.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    if !meta.is_dir() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let aside = if name.starts_with(GONE) {
        path
    } else {
        let aside = dir.join(format!("{GONE}{name}"));
        fs::rename(&path, &aside).with_context(|| format!("removing {}", path.display()))?;
        aside
    };
    remove_tree(&aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn layer(name: &str) -> Vec<u8> {
        crate::apply::tests::tar(&[(name, b'0', b"hi")])
    }

    fn setup() -> (tempfile::TempDir, Layout, Cache) {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(t.path().join("store")).unwrap();
        let cache = layout.layer_cache(Format::for_caller()).unwrap();
        (t, layout, cache)
    }

    fn extract(cache: &Cache, tar: &[u8], count: &AtomicUsize) -> crate::Result<Entry> {
        extract_slowly(cache, tar, count, std::time::Duration::ZERO)
    }

    /// Extracts, counting the extractions, each taking at least `slow`.
    fn extract_slowly(
        cache: &Cache,
        tar: &[u8],
        count: &AtomicUsize,
        slow: std::time::Duration,
    ) -> crate::Result<Entry> {
        let d = Digest::of(tar);
        let held = cache.lock(std::slice::from_ref(&d))?;
        let (e, _) = cache.entry(&held, &d, |a| {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(slow);
            a.apply_layer(tar)
        })?;
        Ok(e)
    }

    #[test]
    fn an_entry_is_extracted_once_even_when_two_race_for_it() {
        let (_t, _layout, cache) = setup();
        let tar = layer("f");
        let count = AtomicUsize::new(0);
        // Slow extractions: the second mount arrives while the first extracts.
        let slow = std::time::Duration::from_millis(300);
        let entries: Vec<Entry> = std::thread::scope(|s| {
            let a = s.spawn(|| extract_slowly(&cache, &tar, &count, slow).unwrap());
            let b = s.spawn(|| extract_slowly(&cache, &tar, &count, slow).unwrap());
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(entries[0].tree, entries[1].tree);
        assert_eq!(fs::read(entries[0].tree.join("f")).unwrap(), b"hi");
        assert_eq!(entries[0].marker.diff_id, Digest::of(&tar));
        let mode = fs::metadata(cache.dir.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the cache is private");
    }

    #[test]
    fn a_failed_extraction_leaves_nothing_and_a_damaged_entry_is_refused_until_pruned() {
        let (_t, layout, cache) = setup();
        let count = AtomicUsize::new(0);
        let tar = layer("f");
        let d = Digest::of(&tar);
        let held = cache.lock(std::slice::from_ref(&d)).unwrap();
        let err = cache.entry(&held, &d, |a| {
            a.apply_layer(&tar[..])?;
            bail!("the blob's digest did not match")
        });
        assert!(err.is_err());
        drop(held);
        let names = |c: &Cache| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&c.dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect();
            v.sort();
            v
        };
        assert!(names(&cache).is_empty(), "{:?}", names(&cache));
        let e = extract(&cache, &tar, &count).unwrap();
        // Damaged: a marker naming another layer, one that is not JSON, the tree gone, the
        // marker gone: each refused, saying which.
        let marker = e.tree.with_file_name(MARKER);
        let good = fs::read_to_string(&marker).unwrap();
        let other = "c".repeat(64);
        for (text, says) in [
            (
                good.replace(d.hex(), &other),
                format!("names layer sha256:{other}"),
            ),
            ("{".to_string(), "layer.json is not valid".to_string()),
        ] {
            fs::write(&marker, text).unwrap();
            let err = extract(&cache, &tar, &count).unwrap_err();
            assert!(format!("{err:#}").contains(&says), "{err:#}");
        }
        fs::write(&marker, &good).unwrap();
        let away = e.tree.with_file_name("diff-away");
        fs::rename(&e.tree, &away).unwrap();
        let err = extract(&cache, &tar, &count).unwrap_err();
        assert!(
            format!("{err:#}").contains("its tree diff/ is missing"),
            "{err:#}"
        );
        fs::rename(&away, &e.tree).unwrap();
        fs::remove_file(&marker).unwrap();
        let err = extract(&cache, &tar, &count).unwrap_err();
        assert!(
            format!("{err:#}").contains("completion marker layer.json is missing"),
            "{err:#}"
        );
        let files = layout.cache_files().unwrap();
        assert!(
            matches!(&files[0].item, Item::Damaged(x, _) if *x == d),
            "{files:?}"
        );
        // A leftover of a killed extraction, an entry no image needs, one an image needs.
        fs::create_dir(cache.dir.join(format!(".tmp-{}-killed", "b".repeat(64)))).unwrap();
        let other = extract(&cache, &layer("g"), &count).unwrap();
        let needed = extract(&cache, &layer("n"), &count).unwrap();
        let keep: HashSet<Digest> = [needed.marker.diff_id.clone()].into();
        let dry = layout.prune_cache(&keep, true).unwrap();
        assert_eq!(
            dry.removed.len(),
            3,
            "{:?}",
            dry.removed.iter().map(|f| &f.name).collect::<Vec<_>>()
        );
        assert_eq!(names(&cache).len(), 4, "a dry run removes nothing");
        let done = layout.prune_cache(&keep, false).unwrap();
        assert_eq!(done.removed.len(), 3);
        assert_eq!(names(&cache), [needed.marker.diff_id.hex().to_string()]);
        assert!(!other.tree.exists());
        // The next extraction of the damaged layer works again.
        extract(&cache, &tar, &count).unwrap();
    }

    #[test]
    fn a_state_directory_of_another_kind_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(t.path().join("store")).unwrap();
        std::os::unix::fs::symlink("/tmp", t.path().join("store").join(STATE_DIR)).unwrap();
        let err = layout.layer_cache(Format::for_caller()).err().unwrap();
        assert!(format!("{err:#}").contains("not a directory"), "{err:#}");
    }

    #[test]
    fn leftovers_name_their_layer() {
        let hex = "a".repeat(64);
        assert_eq!(leftover_hex(&format!("{hex}.lock")), Some(hex.clone()));
        assert_eq!(leftover_hex(&format!(".tmp-{hex}-XyZ12")), Some(hex.clone()));
        assert_eq!(leftover_hex(".gone-x"), None);
        assert_eq!(leftover_hex("short.lock"), None);
    }
}
