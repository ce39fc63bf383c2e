//! The records of `image-stack --mount`: one directory per mount,
//! `LAYOUT/.layerkit/mounts/<id>/` holding `mount.json` (which image, where, which layers) and
//! the mount's own `upper` and `work` directories (overlayfs needs both on one file system;
//! beside the layer cache they are). A record is made under a `.tmp-` name, locked (`flock` on
//! the directory), then renamed into place, and stays locked while its mount is made or
//! removed, so that image-prune never takes a mount in progress for a stale one.
//!
//! The mount table is the truth about which mounts are live: a kernel overlay mount carries its
//! record's path as its source (`/proc/self/mountinfo`), so `--commit DIR` and `--unmount DIR`
//! find the record from DIR alone; fuse-overlayfs does not keep a source, so its record is the
//! one its daemon's command line names (`upperdir=…/upper`).

use super::Layout;
use super::cache::{STATE_DIR, disk_usage, remove_tree};
use crate::digest::Digest;
use anyhow::{Context, bail};
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MOUNTS: &str = "mounts";
const RECORD: &str = "mount.json";
const TMP: &str = ".tmp-";

/// What made a mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// The kernel's overlayfs (root).
    Overlay,
    /// fuse-overlayfs (without root).
    FuseOverlayfs,
}

impl Driver {
    /// The file system type the mount table shows.
    fn fstype(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::FuseOverlayfs => "fuse.fuse-overlayfs",
        }
    }
}

/// `mount.json`: what a mount is of.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The image as `--from` named it.
    pub image: String,
    /// Its manifest: the base of a commit, even if the tag moves meanwhile.
    pub manifest: Digest,
    pub layout: PathBuf,
    /// Where it is mounted (absolute, symlinks resolved).
    pub mount: PathBuf,
    pub driver: Driver,
    /// The image's layers, bottom first.
    #[serde(rename = "diffIDs")]
    pub diff_ids: Vec<Digest>,
    /// The lower directories, top first (overlayfs's order).
    pub lower: Vec<PathBuf>,
    /// `--mount` made the mount point (`--unmount` removes it again).
    pub created: bool,
}

/// A record directory, locked while held.
pub struct RecordDir {
    pub dir: PathBuf,
    _lock: File,
}

impl RecordDir {
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// An empty directory: the lower layer of an image without layers.
    pub fn empty(&self) -> crate::Result<PathBuf> {
        let p = self.dir.join("empty");
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&p)
            .with_context(|| p.display().to_string())?;
        Ok(p)
    }

    pub fn write(&self, record: &Record) -> crate::Result<()> {
        let path = self.dir.join(RECORD);
        fs::write(&path, crate::json::canonical(record)?).with_context(|| path.display().to_string())
    }

    pub fn read(&self) -> crate::Result<Record> {
        read_record(&self.dir)
    }

    /// Removes the record with its upper and work directories.
    pub fn remove(self) -> crate::Result<()> {
        let name = self.dir.file_name().map(OsStr::to_os_string).unwrap_or_default();
        let aside = self
            .dir
            .with_file_name(format!("{TMP}gone-{}", name.to_string_lossy()));
        fs::rename(&self.dir, &aside).with_context(|| format!("removing {}", self.dir.display()))?;
        remove_tree(&aside)
    }
}

impl Layout {
    /// The manifests of this layout's live mounts: each the base its `--commit` will read, so
    /// image-prune keeps it whole (manifest, config, layers) whatever its tags do meanwhile, as
    /// docker never prunes an image a container uses.
    pub fn mounted_manifests(&self) -> crate::Result<HashSet<Digest>> {
        let Some(state) = self.state_dir(false)? else {
            return Ok(HashSet::new());
        };
        Ok(live_records(&state)?
            .into_iter()
            .map(|(_, r)| r.manifest)
            .collect())
    }

    /// A new mount record with empty `upper` and `work` directories, locked.
    pub fn new_mount_record(&self) -> crate::Result<RecordDir> {
        let state = self.state_dir(true)?.context("creating the mounts directory")?;
        let mounts = state.join(MOUNTS);
        match fs::DirBuilder::new().mode(0o700).create(&mounts) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("creating {}", mounts.display()));
            }
            _ => {}
        }
        let tmp = tempfile::Builder::new()
            .prefix(TMP)
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&mounts)
            .with_context(|| format!("creating a mount record in {}", mounts.display()))?;
        let lock = lock_dir(tmp.path(), true)?.expect("blocking lock");
        for sub in ["upper", "work"] {
            let p = tmp.path().join(sub);
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&p)
                .with_context(|| p.display().to_string())?;
        }
        // The id: tempfile's random name without its prefix.
        let name = tmp
            .path()
            .file_name()
            .map(OsStr::to_os_string)
            .unwrap_or_default();
        let id = name.to_string_lossy().trim_start_matches(TMP).to_string();
        let dir = mounts.join(&id);
        fs::rename(tmp.path(), &dir).with_context(|| format!("creating {}", dir.display()))?;
        let _ = tmp.keep();
        Ok(RecordDir { dir, _lock: lock })
    }
}

fn read_record(dir: &Path) -> crate::Result<Record> {
    let path = dir.join(RECORD);
    let f = File::open(&path).with_context(|| path.display().to_string())?;
    crate::json::read_capped(f, &path.display().to_string(), 1 << 20)
}

/// `flock` on a directory: exclusive, blocking or not (None when held elsewhere).
fn lock_dir(dir: &Path, wait: bool) -> crate::Result<Option<File>> {
    let f = File::open(dir).with_context(|| dir.display().to_string())?;
    let op = if wait {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    match rustix::fs::flock(&f, op) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) if !wait => Ok(None),
        Err(e) => Err(io::Error::from(e)).with_context(|| format!("locking {}", dir.display())),
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub point: PathBuf,
    pub fstype: String,
    pub source: Vec<u8>,
}

/// The mount table of this process's mount namespace.
pub fn mount_table() -> crate::Result<Vec<MountEntry>> {
    let text = fs::read("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

/// Parses mountinfo (proc(5)): `ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS…] - FSTYPE SOURCE
/// SUPEROPTIONS`, fields with spaces, tabs, newlines and backslashes escaped in octal.
fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if fields.len() < dash + 3 || dash < 6 {
            continue;
        }
        out.push(MountEntry {
            point: PathBuf::from(OsStr::from_bytes(&unescape(fields[4]))),
            fstype: String::from_utf8_lossy(&unescape(fields[dash + 1])).into_owned(),
            source: unescape(fields[dash + 2]),
        });
    }
    out
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (field[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The record of the image-stack mount at `point` (absolute, symlinks resolved), found through
/// the mount table; None when nothing of ours is mounted there.
pub fn find(point: &Path) -> crate::Result<Option<RecordDir>> {
    let table = mount_table()?;
    // The last mount at a point is the one seen there.
    let Some(m) = table.iter().rev().find(|m| m.point == point) else {
        return Ok(None);
    };
    let dir = match m.fstype.as_str() {
        "overlay" => PathBuf::from(OsStr::from_bytes(&m.source)),
        "fuse.fuse-overlayfs" => match fuse_record(point) {
            Some(d) => d,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let is_record = dir.parent().and_then(Path::file_name) == Some(OsStr::new(MOUNTS))
        && dir.parent().and_then(Path::parent).and_then(Path::file_name) == Some(OsStr::new(STATE_DIR));
    if !is_record || !dir.join(RECORD).is_file() {
        return Ok(None);
    }
    let record = read_record(&dir)?;
    if record.mount != point {
        return Ok(None);
    }
    let lock = lock_dir(&dir, true)?.expect("blocking lock");
    Ok(Some(RecordDir { dir, _lock: lock }))
}

/// The record directory of the fuse-overlayfs mount at `point`: the parent of the `upperdir`
/// its daemon was started with.
fn fuse_record(point: &Path) -> Option<PathBuf> {
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        let is_fuse = args.first().is_some_and(|a| {
            Path::new(OsStr::from_bytes(a)).file_name() == Some(OsStr::new("fuse-overlayfs"))
        });
        if !is_fuse || args.last().map(|a| Path::new(OsStr::from_bytes(a))) != Some(point) {
            continue;
        }
        for opts in args.windows(2).filter(|w| w[0] == b"-o").map(|w| w[1]) {
            for o in opts.split(|b| *b == b',') {
                if let Some(upper) = o.strip_prefix(b"upperdir=") {
                    return Path::new(OsStr::from_bytes(upper))
                        .parent()
                        .map(Path::to_path_buf);
                }
            }
        }
    }
    None
}

/// The records under `state` whose mounts are in the mount table: (record dir, record).
fn live_records(state: &Path) -> crate::Result<Vec<(PathBuf, Record)>> {
    let mounts = state.join(MOUNTS);
    let rd = match fs::read_dir(&mounts) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", mounts.display())),
    };
    let table = mount_table()?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let dir = e.path();
        if e.file_name().to_string_lossy().starts_with(TMP) {
            continue;
        }
        let Ok(record) = read_record(&dir) else {
            continue;
        };
        if is_live(&table, &dir, &record) {
            out.push((dir, record));
        }
    }
    Ok(out)
}

fn is_live(table: &[MountEntry], dir: &Path, record: &Record) -> bool {
    table.iter().any(|m| {
        m.point == record.mount
            && m.fstype == record.driver.fstype()
            && (record.driver != Driver::Overlay || m.source == dir.as_os_str().as_bytes())
    })
}

/// The layers the live mounts of this layout use.
pub(super) fn live_layers(state: &Path) -> crate::Result<HashSet<Digest>> {
    Ok(live_records(state)?
        .into_iter()
        .flat_map(|(_, r)| r.diff_ids)
        .collect())
}

/// Removes (unless `dry_run`) the records whose mounts are gone and what killed runs left
/// (`.tmp-` records no one holds): (record, its mount point, bytes).
pub(super) fn prune_stale(state: &Path, dry_run: bool) -> crate::Result<Vec<(PathBuf, PathBuf, u64)>> {
    let mounts = state.join(MOUNTS);
    let rd = match fs::read_dir(&mounts) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", mounts.display())),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let dir = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // Locked first: a mount in progress (or being removed) holds it.
        let Some(lock) = lock_dir(&dir, false)? else {
            continue;
        };
        let record = read_record(&dir).ok();
        if let Some(r) = &record
            && is_live(&mount_table()?, &dir, r)
        {
            continue;
        }
        let point = record.map(|r| r.mount).unwrap_or_default();
        let bytes = disk_usage(&dir);
        if !dry_run {
            let held = RecordDir {
                dir: dir.clone(),
                _lock: lock,
            };
            if dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TMP))
            {
                remove_tree(&dir)?;
            } else {
                held.remove()?;
            }
        }
        out.push((dir, point, bytes));
    }
    out.sort();
    Ok(out)
}

/// Fails unless `path` is short enough to be one overlayfs mount parameter (the kernel copies
/// at most 256 bytes of each, fsconfig(2)).
pub fn check_param_len(what: &str, path: &Path) -> crate::Result<()> {
    if path.as_os_str().len() > 255 {
        bail!(
            "{what} {}: {} bytes is too long for an overlay mount parameter (at most 255: use a layout with a shorter path)",
            path.display(),
            path.as_os_str().len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_and_escapes() {
        let text = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
48 27 0:40 / /tmp/my\\040web rw,relatime shared:5 - overlay /s/.layerkit/mounts/ab\\134c rw,lowerdir=x\n\
45 27 0:40 / /tmp/fo/m rw,nodev - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0\n";
        let t = parse_mountinfo(text);
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].point, Path::new("/tmp/my web"));
        assert_eq!(t[1].fstype, "overlay");
        assert_eq!(t[1].source, b"/s/.layerkit/mounts/ab\\c");
        assert_eq!(t[2].fstype, "fuse.fuse-overlayfs");
        assert_eq!(unescape(b"a\\12"), b"a\\12");
    }
}
