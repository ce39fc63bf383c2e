//! The protocol that lets image-prune delete while other tools write, both halves in one place
//! (umoci keeps its `gc.go` the same way, directly above the store).
//!
//! **Temporary files.** A writer creates its temporary files in the layout's top directory,
//! named [`TMP_PREFIX`]…, and holds an exclusive `flock` on each until it is renamed into place
//! or removed (`Layout::temp_file`). The pruner removes only a temporary file whose lock it
//! can take, holding the lock while it unlinks ([`Layout::remove_temporary`]): a live writer's
//! file is never removed, and one a killed writer left is. A writer that created its file but
//! had not locked it yet when the pruner removed it sees it unlinked and makes another.
//!
//! **Claims.** A writer that finds its blob already stored does not write it again: it claims
//! it ([`Layout::claim_blob`]), refreshing its mtime under a shared `flock` on the blob. The
//! pruner decides whether to delete a blob, and deletes it, under an exclusive `flock` on it
//! ([`Layout::remove_blob_unless`]): a claim either came first and shows in the mtime the
//! pruner reads, or comes after and finds the blob unlinked (the writer then stores it anew).
//! Reading the mtime, then deleting without the lock, would lose a claim made in between.
//! What the mtime means (the grace period, claims after an image was written) is the
//! pruner's policy, in image-prune.
//!
//! Both halves open blobs with `O_NONBLOCK`: a FIFO planted under a digest name must not hang
//! the open.

use super::{Layout, TMP_PREFIX};
use crate::atomic::AtomicFile;
use crate::digest::Digest;
use anyhow::{Context, bail};
use rustix::fs::FlockOperation;
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// What [`Layout::remove_blob_unless`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Removed; it held this many bytes.
    Removed(u64),
    /// Kept: the caller's rule spared it.
    Spared,
    /// Already gone.
    Gone,
}

impl Layout {
    /// A temporary file in the layout, removed unless persisted, and locked (an exclusive
    /// `flock`) until it is closed.
    pub(super) fn temp_file(&self) -> crate::Result<AtomicFile> {
        let context = || format!("creating a temporary file in {}", self.root.display());
        // A prune may remove the file between its creation and the lock (with --grace 0):
        // then it has no name any more, and a new one is made.
        for _ in 0..8 {
            // Blobs and index.json are content anyone may read (0644 less the umask, as umoci
            // and skopeo write them), not tempfile's private 0600.
            let tmp = AtomicFile::new_in(&self.root, TMP_PREFIX, 0o644)?;
            // Blocking: image-prune holds it for a moment while it checks whether it is in use.
            rustix::fs::flock(tmp.as_file(), FlockOperation::LockExclusive)
                .map_err(io::Error::from)
                .with_context(context)?;
            if tmp.as_file().metadata().with_context(context)?.nlink() > 0 {
                return Ok(tmp);
            }
        }
        bail!("{}: temporary files keep vanishing", self.root.display())
    }

    /// Reuses a stored blob: refreshes its mtime, which tells image-prune that a writer is
    /// about to reference it. False when the blob is not there (or was just pruned: then the
    /// writer stores it anew). A blob this user may not touch (another owner's, read-only) is
    /// still reused, unclaimed.
    pub fn claim_blob(&self, digest: &Digest) -> crate::Result<bool> {
        use rustix::fs::{Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};
        let path = self.blob_path(digest);
        let context = || format!("reusing {}", path.display());
        let file = match open_nonblocking(&path) {
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

    /// Removes a blob unless `spare`, shown the blob's metadata under the exclusive lock,
    /// says a writer has claimed it since the caller planned its removal.
    pub fn remove_blob_unless(
        &self,
        digest: &Digest,
        spare: impl FnOnce(&Metadata) -> bool,
    ) -> crate::Result<Removal> {
        let path = self.blob_path(digest);
        let file = match open_nonblocking(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        };
        // Blocking: a writer holds its shared lock only for the moment of a claim.
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(io::Error::from)
            .with_context(|| format!("locking {}", path.display()))?;
        let meta = file.metadata().with_context(|| path.display().to_string())?;
        if meta.nlink() == 0 {
            return Ok(Removal::Gone);
        }
        if spare(&meta) {
            return Ok(Removal::Spared);
        }
        Ok(if remove(&path)? {
            Removal::Removed(meta.len())
        } else {
            Removal::Gone
        })
    }

    /// Removes a blob that no claim could spare (image-prune `--grace 0`): one unlink.
    pub fn remove_blob(&self, digest: &Digest) -> crate::Result<Removal> {
        let path = self.blob_path(digest);
        Ok(match fs::symlink_metadata(&path) {
            Ok(meta) if remove(&path)? => Removal::Removed(meta.len()),
            _ => Removal::Gone,
        })
    }

    /// The regular files under `blobs/sha256` named like a digest. Anything else there is left
    /// alone (image-layout.md: unknown files MUST NOT cause errors).
    pub fn stored_blobs(&self) -> crate::Result<HashMap<Digest, Metadata>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = HashMap::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in rd {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|name| format!("sha256:{name}").parse::<Digest>().ok())
            else {
                continue;
            };
            // A blob renamed away since the listing began is simply not there any more.
            if let Some(meta) = regular_file(&entry)? {
                out.insert(digest, meta);
            }
        }
        Ok(out)
    }

    /// The temporary files writers left or are writing in the layout's top directory, by name.
    pub fn temporary_files(&self) -> crate::Result<Vec<(String, Metadata)>> {
        let root = &self.root;
        let mut out = Vec::new();
        for entry in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
            let entry = entry.with_context(|| format!("listing {}", root.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !name.starts_with(TMP_PREFIX) {
                continue;
            }
            if let Some(meta) = regular_file(&entry)? {
                out.push((name, meta));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// True when a live writer holds the temporary file `name`, or when that cannot be told
    /// (an unreadable file is left alone).
    pub fn temporary_in_use(&self, name: &str) -> bool {
        match File::open(self.root.join(name)) {
            Ok(f) => try_lock(&f) == Some(false),
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    }

    /// Removes the temporary file `name` unless a writer holds it, holding its lock meanwhile.
    /// False when it was in use or already gone.
    pub fn remove_temporary(&self, name: &str) -> crate::Result<bool> {
        let path = self.root.join(name);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| path.display().to_string()),
        };
        if try_lock(&f) != Some(true) {
            return Ok(false);
        }
        remove(&path)
    }
}

fn open_nonblocking(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

/// Some(true) when the lock was taken, Some(false) when another process holds it.
fn try_lock(f: &File) -> Option<bool> {
    match rustix::fs::flock(f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Some(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Some(false),
        Err(_) => None,
    }
}

/// A directory entry's metadata when it is a regular file; None when it is something else
/// or went away since the listing.
fn regular_file(entry: &fs::DirEntry) -> crate::Result<Option<Metadata>> {
    match entry.metadata() {
        Ok(meta) if meta.is_file() => Ok(Some(meta)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| entry.path().display().to_string()),
    }
}

/// Removes a file; false when it was already gone.
fn remove(path: &Path) -> crate::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}
