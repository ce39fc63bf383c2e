//! The overlay format of [`super::Applier`]: one layer applied alone into a directory of its own
//! (a layer cache entry, `image-stack --mount`) so that overlayfs, given such directories as
//! lower layers, shows what `--rootfs` unpacks.
//!
//! A layer's directory holds only what the layer writes, so its whiteouts have nothing to
//! remove there: they are written as overlayfs keeps them. `.wh.NAME` becomes a 0/0 character
//! device at NAME (unless the layer writes NAME: then a directory it writes there is made
//! opaque, as the on-disk rules keep only what the layer wrote beneath it); `DIR/.wh..wh..opq`
//! marks DIR opaque. A directory the layer makes where it also put a non-directory or a
//! whiteout is opaque too (the lower one was removed before it came). Whiteouts beneath a
//! non-directory or a symlink the layer wrote do nothing, as on disk.
//!
//! What overlayfs cannot show as `--rootfs` does, because a layer's directory knows nothing of
//! the layers below it: a directory the layer implies without an entry (it gets 0755 and root,
//! as docker and containerd make it, where `--rootfs` keeps the lower one's attributes; listed
//! in [`super::Report::implied`]), and a path written beneath a lower layer's symlink (the
//! layer's directory shadows the symlink, as in docker's overlay2). A hard link to a lower
//! layer's file cannot be made at all and is refused. The root of a lower layer cannot be
//! opaque in overlayfs: a layer whose `.wh..wh..opq` is at its top says so
//! ([`super::Report::opaque_root`]) and the mount leaves out the layers below it.
//!
//! The layer's own xattrs in overlayfs's namespace must not steer the mount: as root they are
//! stored escaped (`trusted.overlay.X` as `trusted.overlay.overlay.X`, which overlayfs shows
//! as `trusted.overlay.X` without acting on it, Linux 6.7+); without root (fuse-overlayfs, which
//! does not unescape) `user.overlay.*` and `user.fuseoverlayfs.*` are left out with a warning.

use super::at::{lstat, open_subdir};
use super::{Applier, io_err};
use crate::path::{basename, parent};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, XattrFlags};
use rustix::io::Errno;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

/// Which overlay reads the directory: the namespace of its opaque marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlay {
    /// The kernel's overlayfs mounted by root: `trusted.overlay.opaque`.
    Trusted,
    /// fuse-overlayfs, or the kernel's with `userxattr`: `user.overlay.opaque`.
    User,
}

impl Overlay {
    fn opaque_xattr(self) -> &'static [u8] {
        match self {
            Overlay::Trusted => b"trusted.overlay.opaque",
            Overlay::User => b"user.overlay.opaque",
        }
    }
}

/// What the overlay format tracks while one layer is applied.
pub(super) struct State {
    format: Overlay,
    /// Paths where the layer put a non-directory or a whiteout: a directory made there later
    /// is opaque.
    hidden: HashSet<Vec<u8>>,
    /// Directories made without an entry (parents of entries or whiteouts).
    pub(super) implied: BTreeSet<Vec<u8>>,
    /// The layer hides every lower path (`.wh..wh..opq` at its top).
    pub(super) opaque_root: bool,
}

impl State {
    pub(super) fn new(format: Overlay) -> State {
        State {
            format,
            hidden: HashSet::new(),
            implied: BTreeSet::new(),
            opaque_root: false,
        }
    }

    /// The name a layer's xattr is stored under; None when it is not stored at all.
    pub(super) fn stored_name<'a>(&self, name: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        match self.format {
            Overlay::Trusted => Some(match name.strip_prefix(b"trusted.overlay.") {
                Some(rest) => Cow::Owned([&b"trusted.overlay.overlay."[..], rest].concat()),
                None => Cow::Borrowed(name),
            }),
            Overlay::User => {
                let reserved = name.starts_with(b"user.overlay.") || name.starts_with(b"user.fuseoverlayfs.");
                (!reserved).then_some(Cow::Borrowed(name))
            }
        }
    }
}

impl Applier {
    fn state(&mut self) -> &mut State {
        self.overlay.as_mut().expect("called in overlay format only")
    }

    /// `.wh.NAME` at `path`, written as overlayfs keeps it.
    pub(super) fn overlay_whiteout(&mut self, path: &[u8]) -> crate::Result<()> {
        let Some(dir) = self.overlay_parent(parent(path))? else {
            return Ok(());
        };
        let name = basename(path);
        self.state().hidden.insert(path.to_vec());
        match lstat(dir.as_fd(), name).map_err(|e| io_err(e, "lstat", path))? {
            Some(FileType::Directory) => self.mark_opaque(dir.as_fd(), name, path),
            // What the layer wrote survives its own whiteout.
            Some(_) => Ok(()),
            None => self.make_whiteout(dir.as_fd(), name, path),
        }
    }

    /// `DIR/.wh..wh..opq`: DIR marked opaque (made, without an entry, when missing).
    pub(super) fn overlay_opaque(&mut self, path: &[u8]) -> crate::Result<()> {
        if path.is_empty() {
            self.state().opaque_root = true;
            return Ok(());
        }
        let Some(dir) = self.overlay_parent(parent(path))? else {
            return Ok(());
        };
        let name = basename(path);
        match lstat(dir.as_fd(), name).map_err(|e| io_err(e, "lstat", path))? {
            Some(FileType::Directory) => self.mark_opaque(dir.as_fd(), name, path),
            Some(_) => Ok(()),
            None => {
                self.make_implied(dir.as_fd(), name, path)?;
                self.mark_opaque(dir.as_fd(), name, path)
            }
        }
    }

    /// A 0:0 character device is overlayfs's whiteout: made, it would hide the path instead
    /// of showing a device (without root no device is made, and a whiteout in its place is
    /// what `--rootfs` shows: nothing).
    pub(super) fn overlay_check_device(&self, e: &crate::entry::Entry) -> crate::Result<()> {
        if self.overlay.is_some()
            && self.privileged
            && e.meta.kind == crate::entry::Kind::Char
            && e.meta.rdev == (0, 0)
        {
            anyhow::bail!(
                "a 0:0 character device is overlayfs's whiteout: a layer cache entry cannot hold one as a device (image-stack --rootfs can)"
            );
        }
        Ok(())
    }

    /// A non-directory (or a device left out) now stands at `path`.
    pub(super) fn overlay_wrote(&mut self, path: &[u8]) {
        if let Some(s) = self.overlay.as_mut() {
            s.hidden.insert(path.to_vec());
        }
    }

    /// A directory was made at `path` (`implied`: for a child, without an entry of its own).
    pub(super) fn overlay_made_dir(&mut self, fd: &OwnedFd, path: &[u8], implied: bool) -> crate::Result<()> {
        let Some(s) = self.overlay.as_mut() else {
            return Ok(());
        };
        if implied {
            s.implied.insert(path.to_vec());
        } else {
            s.implied.remove(path);
        }
        if s.hidden.contains(path) {
            let name = s.format.opaque_xattr();
            rustix::fs::fsetxattr(fd, name, b"y", XattrFlags::empty())
                .map_err(|e| io_err(e, "marking opaque", path))?;
        }
        Ok(())
    }

    /// A device the run may not make: a whiteout in its place, so that the lower layers' path
    /// stays hidden as it is on disk (where the entry removed it).
    pub(super) fn overlay_skipped(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
    ) -> crate::Result<()> {
        if self.overlay.is_none() {
            return Ok(());
        }
        self.overlay_wrote(path);
        self.make_whiteout(dir, name, path)
    }

    /// The directory at `path` in the layer's tree, its missing components made (implied);
    /// None when a component is a non-directory or a symlink the layer wrote (a whiteout does
    /// not act beneath them). Entry paths are normalized: no `..` to climb with.
    fn overlay_parent(&mut self, path: &[u8]) -> crate::Result<Option<OwnedFd>> {
        let mut cur = self.open_root().map_err(|e| io_err(e, "opening", b""))?;
        let mut len = 0;
        for comp in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            len += comp.len() + usize::from(len > 0);
            let here = &path[..len];
            cur = match open_subdir(cur.as_fd(), comp) {
                Ok(fd) => fd,
                Err(Errno::NOTDIR | Errno::LOOP) => return Ok(None),
                Err(Errno::NOENT) => self.make_implied(cur.as_fd(), comp, here)?,
                Err(e) => return Err(io_err(e, "opening", here)),
            };
        }
        Ok(Some(cur))
    }

    fn make_implied(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> crate::Result<OwnedFd> {
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)).map_err(|e| io_err(e, "mkdir", path))?;
        let fd = open_subdir(dir, name).map_err(|e| io_err(e, "opening", path))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(|e| io_err(e, "chmod", path))?;
        self.overlay_made_dir(&fd, path, true)?;
        Ok(fd)
    }

    fn make_whiteout(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> crate::Result<()> {
        // Linux lets anyone make this one device (the overlay whiteout), root or not.
        rustix::fs::mknodat(dir, name, FileType::CharacterDevice, Mode::empty(), 0)
            .map_err(|e| io_err(e, "making the whiteout", path))
    }

    fn mark_opaque(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> crate::Result<()> {
        let xattr = self.state().format.opaque_xattr();
        let fd = open_subdir(dir, name).map_err(|e| io_err(e, "opening", path))?;
        rustix::fs::fsetxattr(&fd, xattr, b"y", XattrFlags::empty())
            .map_err(|e| io_err(e, "marking opaque", path))
    }
}

/// Where a hard link's target would have to be: refused in overlay format, where a layer's
/// directory cannot reach a lower layer's file.
pub(super) fn lower_link_error(target: &[u8]) -> anyhow::Error {
    anyhow::anyhow!(
        "hard link target {} does not exist in this layer: a layer cache entry holds one layer and cannot link to a lower one's file (image-stack --rootfs can)",
        crate::path::display(target)
    )
}
