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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Options;
    use crate::apply::tests::tar;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::Path;

    fn header(kind: u8) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        h
    }

    fn apply(dest: &Path, format: Overlay, layer: &[u8]) -> crate::Result<crate::apply::Report> {
        let opts = Options {
            privileged: format == Overlay::Trusted,
            rootless: format == Overlay::User,
            overlay: Some(format),
            ..Options::default()
        };
        let mut a = Applier::new(dest, opts)?;
        a.apply_layer(layer)?;
        a.finish()
    }

    fn is_whiteout(p: &Path) -> bool {
        std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
    }

    fn opaque(p: &Path) -> bool {
        xattr_of(p, "user.overlay.opaque").as_deref() == Some(&b"y"[..])
    }

    fn xattr_of(p: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0; 64];
        rustix::fs::lgetxattr(p, name, &mut buf)
            .ok()
            .map(|n| buf[..n].to_vec())
    }

    fn user_xattrs_work(dir: &Path) -> bool {
        let ok = rustix::fs::lsetxattr(dir, "user.probe", b"1", XattrFlags::empty()).is_ok();
        if !ok {
            eprintln!("SKIPPED: this file system has no user xattrs");
        }
        ok
    }

    #[test]
    fn whiteouts_and_opaque_markers_are_written_as_overlayfs_keeps_them() {
        let t = tempfile::tempdir().unwrap();
        if !user_xattrs_work(t.path()) {
            return;
        }
        let layer = tar(&[
            ("d/", b'5', b""),
            ("d/.wh.gone", b'0', b""),
            ("o/", b'5', b""),
            ("o/.wh..wh..opq", b'0', b""),
            ("o/new", b'0', b"n"),
            // A whiteout and a directory of the same layer, in both orders: the directory
            // stays, opaque (it keeps only what this layer wrote beneath it).
            (".wh.w1", b'0', b""),
            ("w1/", b'5', b""),
            ("w1/kept", b'0', b"k"),
            ("w2/", b'5', b""),
            (".wh.w2", b'0', b""),
            // A file and its own whiteout: the file stays, no mark.
            ("f", b'0', b"f"),
            (".wh.f", b'0', b""),
            // A whiteout beneath a missing parent: the parent is implied.
            ("implied/.wh.x", b'0', b""),
            // A directory where the layer first put a file: opaque too.
            ("was-file", b'0', b"x"),
            ("was-file/", b'5', b""),
            // Beneath a symlink the layer made, a whiteout does nothing.
            ("s", b'2', b"d"),
            ("s/.wh.y", b'0', b""),
        ]);
        let report = apply(t.path(), Overlay::User, &layer).unwrap();
        let p = t.path();
        assert!(is_whiteout(&p.join("d/gone")));
        assert!(opaque(&p.join("o")) && p.join("o/new").is_file());
        assert!(
            !opaque(&p.join("d")),
            "a directory with a whiteout in it is not opaque"
        );
        assert!(opaque(&p.join("w1")) && p.join("w1/kept").is_file());
        assert!(opaque(&p.join("w2")));
        assert!(p.join("f").is_file() && !opaque(p));
        assert!(is_whiteout(&p.join("implied/x")));
        assert!(opaque(&p.join("was-file")));
        assert!(!p.join("d/y").exists() && std::fs::symlink_metadata(p.join("s")).unwrap().is_symlink());
        assert_eq!(report.implied, [b"implied".to_vec()]);
        assert!(!report.opaque_root);
        // `.wh..wh..opq` at the top cannot be marked on a lower root: it is reported.
        let t2 = tempfile::tempdir().unwrap();
        let r = apply(
            t2.path(),
            Overlay::User,
            &tar(&[(".wh..wh..opq", b'0', b""), ("a", b'0', b"")]),
        )
        .unwrap();
        assert!(r.opaque_root);
    }

    #[test]
    fn links_to_lower_files_are_refused_and_reserved_xattrs_left_out() {
        let t = tempfile::tempdir().unwrap();
        let err = apply(t.path(), Overlay::User, &tar(&[("h", b'1', b"lower/file")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("does not exist in this layer"),
            "{err:#}"
        );
        let t = tempfile::tempdir().unwrap();
        if !user_xattrs_work(t.path()) {
            return;
        }
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.user.overlay.opaque", &b"y"[..]),
            ("SCHILY.xattr.user.fuseoverlayfs.opaque", b"y"),
            ("SCHILY.xattr.user.kept", b"k"),
        ])
        .unwrap();
        b.append_data(&mut header(b'5'), "d/", std::io::empty()).unwrap();
        let report = apply(t.path(), Overlay::User, &b.into_inner().unwrap()).unwrap();
        let d = t.path().join("d");
        assert!(!opaque(&d) && xattr_of(&d, "user.fuseoverlayfs.opaque").is_none());
        assert_eq!(xattr_of(&d, "user.kept").as_deref(), Some(&b"k"[..]));
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("overlayfs's namespace")),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn as_root_layer_overlay_xattrs_are_escaped_and_whiteout_devices_refused() {
        if !crate::cli::is_root() {
            eprintln!("SKIPPED: trusted xattrs need root");
            return;
        }
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..])])
            .unwrap();
        b.append_data(&mut header(b'5'), "d/", std::io::empty()).unwrap();
        let t = tempfile::tempdir().unwrap();
        apply(t.path(), Overlay::Trusted, &b.into_inner().unwrap()).unwrap();
        let d = t.path().join("d");
        assert_eq!(
            xattr_of(&d, "trusted.overlay.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert!(xattr_of(&d, "trusted.overlay.opaque").is_none());
        let t = tempfile::tempdir().unwrap();
        let err = apply(t.path(), Overlay::Trusted, &tar(&[("dev", b'3', b"")])).unwrap_err();
        assert!(format!("{err:#}").contains("0:0 character device"), "{err:#}");
    }
}
