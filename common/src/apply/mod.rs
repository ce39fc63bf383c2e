//! Applying layers to a directory (`image-stack --rootfs`), as image-spec layer.md says
//! ("Applying Changesets"), with every path resolved *inside* the destination as if it were `/`.
//!
//! A layer is hostile input. Nothing here ever names a path of the host: the destination is
//! opened once, and each entry's parent directory is opened from that handle with
//! `openat2(RESOLVE_IN_ROOT)` (or, with a symlink on the way, one component at a time from fds
//! we hold: `at.rs`), so that `..` and absolute symlinks (`var/run -> /run`, normal in real
//! images) resolve inside it as in a chroot, and a concurrent rename cannot move the walk out
//! of it (CVE-2018-15664). The entry itself is then made with `*at` calls on
//! (parent fd, one name) that never follow a final symlink, and its metadata is set through the
//! fd we created or with `AT_SYMLINK_NOFOLLOW`: nothing is written, chmod'ed, chown'ed or
//! xattr'ed through a link (CVE-2021-32760, RUSTSEC-2026-0067).
//!
//! The stacking rules are those of `tree::stack` (the in-memory version), played on disk.
//! Whiteouts hide lower layers only: the paths this layer writes (and their ancestors) are
//! tracked where they land (symlinked parents expanded), and a whiteout or opaque marker
//! removes everything beneath its target except them, whatever the order of the entries; it
//! does not act through a symlink this layer made.

mod at;
mod overlay;
mod report;

pub use overlay::Overlay;
pub use report::Report;

use crate::entry::{Entry, Kind, Meta};
use crate::path::{TreePath, basename, display, is_within, join, parent};
use crate::tarread::Content;
use crate::whiteout::{self, Whiteout};
use crate::xattrs;
use anyhow::{Context, anyhow, bail};
use at::{Handle, Root, list, lstat, open_subdir, remove_all_at, times};
use report::Notes;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec};
use rustix::io::Errno;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, Read};
use std::path::Path;

/// How to apply.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Chown, mknod devices and set xattrs of every namespace: for a caller running as root.
    /// The tool decides; without it owners and devices are left out, with a warning.
    pub privileged: bool,
    /// Never chown nor mknod (whatever `privileged` says), and record the owners a layer asks
    /// for in the `user.rootlesscontainers` xattr, as `umoci unpack --rootless` does.
    pub rootless: bool,
    /// The mode the destination gets once everything is applied, unless a layer carries `./`
    /// (whose attributes it then takes, as any directory over a directory). None: left as it
    /// is. Until then it keeps the mode the caller gave it (0700: unpacked setuid files and
    /// devices stay out of other users' reach meanwhile, CVE-2021-41103).
    pub root_mode: Option<u32>,
    /// Write one layer in overlayfs's format, for an overlay mount to stack (see [`overlay`]).
    pub overlay: Option<Overlay>,
}

/// Applies layers, in stack order, to one destination directory.
pub struct Applier {
    root: Root,
    /// May chown, mknod devices and set every xattr namespace.
    privileged: bool,
    /// Records owners in `user.rootlesscontainers` rather than chown.
    rootless: bool,
    root_mode: Option<u32>,
    /// Paths the current layer wrote, with their ancestors: its whiteouts spare them. Like every
    /// path recorded here, where the entry landed: its parents' symlinks expanded.
    written: HashSet<Vec<u8>>,
    /// Directories the current layer already made opaque.
    opaqued: HashSet<Vec<u8>>,
    /// Mode and mtime of every directory, set last (children change a directory's mtime, and an
    /// unprivileged run could not write into a 0555 directory).
    dirs: BTreeMap<TreePath, (u32, Timespec)>,
    /// Devices not created (unprivileged), so hard links to them are skipped too.
    skipped_devices: BTreeSet<TreePath>,
    notes: Notes,
    /// File content goes through it, written at its offsets (see [`Content::write_into`]).
    buf: Vec<u8>,
    /// In overlay format: what it tracks.
    overlay: Option<overlay::State>,
    /// A layer carried `./`.
    root_entry: bool,
}

const ROOTLESS_XATTR: &[u8] = b"user.rootlesscontainers";

impl Applier {
    /// Prepares to apply layers into `dest`, an existing directory (the caller creates it 0700
    /// and refuses a non-empty one). Its own attributes change only as `opts.root_mode` and the
    /// layers' `./` entries say, at [`Applier::finish`] for its mode.
    pub fn new(dest: &Path, opts: Options) -> crate::Result<Applier> {
        let root = Root::open(dest)
            .with_context(|| format!("{}: opening the destination directory", dest.display()))?;
        Ok(Applier {
            root,
            privileged: opts.privileged && !opts.rootless,
            rootless: opts.rootless,
            root_mode: opts.root_mode,
            written: HashSet::new(),
            opaqued: HashSet::new(),
            dirs: BTreeMap::new(),
            skipped_devices: BTreeSet::new(),
            notes: Notes::default(),
            buf: vec![0; 256 << 10],
            overlay: opts.overlay.map(overlay::State::new),
            root_entry: false,
        })
    }

    /// Applies one layer's tar (uncompressed). Errors name the entry.
    pub fn apply_layer<R: Read>(&mut self, tar: R) -> crate::Result<()> {
        self.written.clear();
        self.opaqued.clear();
        crate::tarread::for_each_entry(tar, |_, e, content| self.apply_entry(e, content))
    }

    /// Sets directories' modes and mtimes, now that nothing more is written into them, and
    /// reports what could not be applied.
    pub fn finish(self) -> crate::Result<Report> {
        // Deepest first: a directory is closed (perhaps to 0555) only after its subtree, the
        // root (the empty path, first in order) last.
        for (path, (mode, mtime)) in self.dirs.iter().rev() {
            let path = &path.0;
            let dir = match self.resolve(parent(path)) {
                Ok((fd, _)) => fd,
                Err(Errno::NOENT | Errno::NOTDIR) => continue,
                Err(e) => return Err(self.resolve_error(e, parent(path))),
            };
            let name = if path.is_empty() { b"." } else { basename(path) };
            let fd = match open_subdir(dir.as_fd(), name) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(io_err(e, "opening directory", path)),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(*mode)).map_err(|e| io_err(e, "chmod", path))?;
            rustix::fs::futimens(&fd, &times(mtime)).map_err(|e| io_err(e, "setting mtime", path))?;
        }
        if let Some(mode) = self.root_mode
            && !self.dirs.contains_key(&TreePath::from(Vec::new()))
        {
            let fd = self.open_root().map_err(|e| io_err(e, "opening", b""))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| io_err(e, "chmod", b""))?;
        }
        let mut report = self.notes.into_report(self.rootless);
        report.root_entry = self.root_entry;
        if let Some(s) = self.overlay {
            report.implied = s.implied.into_iter().collect();
            report.opaque_root = s.opaque_root;
        }
        Ok(report)
    }

    fn apply_entry(&mut self, e: Entry, content: &mut Content<'_>) -> crate::Result<()> {
        match whiteout::classify(&e.path)? {
            Whiteout::Remove(p) if self.overlay.is_some() => return self.overlay_whiteout(&p),
            Whiteout::Opaque(d) if self.overlay.is_some() => return self.overlay_opaque(&d),
            Whiteout::Remove(p) => return self.whiteout(&p),
            Whiteout::Opaque(d) => return self.opaque(&d),
            Whiteout::None => {}
        }
        for (what, id) in [("uid", e.meta.uid), ("gid", e.meta.gid)] {
            if id == u32::MAX {
                bail!("{what} {id} out of range");
            }
        }
        if e.path.is_empty() {
            // A symlink `.` -> `/` would send every later entry to the host (CVE-2021-29136).
            if e.link.is_some() || e.meta.kind != Kind::Dir {
                bail!("refusing to change the type of the root directory");
            }
            // A directory over a directory, as docker applies `./`; its mode comes last.
            self.root_entry = true;
            let fd = self.open_root().map_err(|err| io_err(err, "opening", b""))?;
            self.clear_xattrs(&fd, &e)?;
            return self.set_dir_meta(fd, &e, b"");
        }
        if matches!(e.meta.kind, Kind::Char | Kind::Block) {
            check_device(e.meta.rdev)?;
            self.overlay_check_device(&e)?;
        }
        let (dir, at) = self.parent_for_write(parent(&e.path))?;
        let name = basename(&e.path);
        let path = join(&at, name);
        self.mark_written(&path);
        if let Some(target) = &e.link {
            self.hardlink(dir.as_fd(), name, &path, target)?;
            self.overlay_wrote(&path);
            return Ok(());
        }
        let existing = lstat(dir.as_fd(), name).map_err(|err| io_err(err, "lstat", &e.path))?;
        if e.meta.kind == Kind::Dir && existing == Some(FileType::Directory) {
            // Both directories: the entry's attributes replace the old ones, children stay.
            let fd = open_subdir(dir.as_fd(), name).map_err(|err| io_err(err, "opening", &e.path))?;
            self.clear_xattrs(&fd, &e)?;
            self.overlay_made_dir(&fd, &path, false)?;
            return self.set_dir_meta(fd, &e, &path);
        }
        if existing.is_some() {
            // Never write through what is there (a symlink, a hard link to a lower file).
            self.remove(dir.as_fd(), name, &path)?;
        }
        if e.meta.kind != Kind::Dir {
            self.overlay_wrote(&path);
        }
        let m = &e.meta;
        match m.kind {
            Kind::File => {
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|err| io_err(err, "creating", &e.path))?;
                let file = std::fs::File::from(fd);
                // Data only: a sparse file's holes are left unwritten, holes on disk.
                content
                    .write_into(&file, 0, &mut self.buf)
                    .with_context(|| format!("writing {}", display(&e.path)))?;
                self.set_meta(Handle::Open(file.as_fd()), &e)
            }
            Kind::Dir => {
                rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                    .map_err(|err| io_err(err, "mkdir", &e.path))?;
                let fd = open_subdir(dir.as_fd(), name).map_err(|err| io_err(err, "opening", &e.path))?;
                self.overlay_made_dir(&fd, &path, false)?;
                self.set_dir_meta(fd, &e, &path)
            }
            Kind::Symlink => {
                // The target text is kept as it is, absolute or not: it is resolved (inside the
                // root) only when something is written beneath it.
                let target = m.target().unwrap_or_default();
                rustix::fs::symlinkat(target, &dir, name).map_err(|err| io_err(err, "symlink", &e.path))?;
                self.set_meta(Handle::At(dir.as_fd(), name), &e)
            }
            Kind::Fifo => {
                rustix::fs::mknodat(&dir, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(|err| io_err(err, "mkfifo", &e.path))?;
                self.set_meta(Handle::At(dir.as_fd(), name), &e)
            }
            Kind::Char | Kind::Block => {
                if !self.privileged {
                    self.skip_device(&path);
                    return self.overlay_skipped(dir.as_fd(), name, &path);
                }
                let ft = if m.kind == Kind::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let dev = rustix::fs::makedev(m.rdev.0, m.rdev.1);
                rustix::fs::mknodat(&dir, name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|err| io_err(err, "mknod", &e.path))?;
                self.set_meta(Handle::At(dir.as_fd(), name), &e)
            }
        }
    }

    /// Records `path` and its ancestors as written by the current layer.
    fn mark_written(&mut self, path: &[u8]) {
        let mut p = path;
        while self.written.insert(p.to_vec()) && !p.is_empty() {
            p = parent(p);
        }
    }

    /// `.wh.NAME`: removes what lower layers put at `path` (not a path this layer wrote).
    /// A whiteout beneath a missing or dangling parent has nothing to remove, nor one beneath
    /// a symlink this layer made.
    fn whiteout(&mut self, path: &[u8]) -> crate::Result<()> {
        let (dir, at) = match self.resolve_lower(parent(path)) {
            Ok(Some(found)) => found,
            Ok(None) | Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(self.resolve_error(e, parent(path))),
        };
        let name = basename(path);
        self.hide_lower(dir.as_fd(), name, &join(&at, name))
    }

    /// `DIR/.wh..wh..opq`: hides every lower child of DIR, as if applied before this layer.
    fn opaque(&mut self, path: &[u8]) -> crate::Result<()> {
        if !self.opaqued.insert(path.to_vec()) {
            return Ok(());
        }
        let (dir, at) = match self.resolve_lower(path) {
            Ok(Some(found)) => found,
            Ok(None) | Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(self.resolve_error(e, path)),
        };
        let listed = open_subdir(dir.as_fd(), b".").map_err(|e| io_err(e, "opening", path))?;
        for child in list(&listed).map_err(|e| io_err(e, "listing", path))? {
            self.hide_lower(listed.as_fd(), &child, &join(&at, &child))?;
        }
        Ok(())
    }

    /// Removes `name` in `dir` (at `path`) unless this layer wrote it; in a directory this layer
    /// wrote into, removes what it did not write, recursively.
    fn hide_lower(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> crate::Result<()> {
        let Some(kind) = lstat(dir, name).map_err(|e| io_err(e, "lstat", path))? else {
            return Ok(());
        };
        if !self.written.contains(path) {
            return self.remove(dir, name, path);
        }
        if kind == FileType::Directory {
            let sub = open_subdir(dir, name).map_err(|e| io_err(e, "opening", path))?;
            for child in list(&sub).map_err(|e| io_err(e, "listing", path))? {
                self.hide_lower(sub.as_fd(), &child, &join(path, &child))?;
            }
        }
        Ok(())
    }

    /// A hard link at `path`: the target is resolved inside the root, its last component not
    /// followed (a link to a symlink links the symlink). It must exist and not be a directory.
    fn hardlink(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        target: &[u8],
    ) -> crate::Result<()> {
        let in_layer_only = self.overlay.is_some();
        let missing = || {
            if in_layer_only {
                overlay::lower_link_error(target)
            } else {
                anyhow!("hard link target {} does not exist", display(target))
            }
        };
        let (tdir, tat) = match self.resolve(parent(target)) {
            Ok(found) => found,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(missing()),
            Err(e) => return Err(self.resolve_error(e, parent(target))),
        };
        let tname = basename(target);
        if self.skipped_devices.contains(&TreePath::from(join(&tat, tname))) {
            self.skip_device(path);
            return Ok(());
        }
        let tst = match rustix::fs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(io_err(e, "lstat", target)),
        };
        if FileType::from_raw_mode(tst.st_mode) == FileType::Directory {
            bail!("refusing a hard link to a directory ({})", display(target));
        }
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino) => return Ok(()),
            Ok(_) => self.remove(dir, name, path)?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(io_err(e, "lstat", path)),
        }
        rustix::fs::linkat(&tdir, tname, dir, name, AtFlags::empty()).map_err(|e| match e {
            Errno::NOENT => missing(),
            e => io_err(e, "hard link", path),
        })
    }

    /// Removes `name` in `dir` with everything beneath it, and forgets what was recorded there.
    fn remove(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> crate::Result<()> {
        remove_all_at(dir, name).map_err(|e| io_err(e, "removing", path))?;
        let from = TreePath::from(path.to_vec());
        for k in within(self.dirs.range(from.clone()..).map(|(k, _)| k), path) {
            self.dirs.remove(&k);
        }
        for k in within(self.skipped_devices.range(from..), path) {
            self.skipped_devices.remove(&k);
        }
        Ok(())
    }

    /// The directory to create an entry in, made when missing: implied directories are 0755
    /// (as docker makes them), and a parent that is not a directory (a file, a dangling symlink)
    /// is replaced by one, as docker's overlay2 store and umoci 0.5 show it (the tree's rule,
    /// see `crate::tree`). Returns it with where it is.
    fn parent_for_write(&mut self, path: &[u8]) -> crate::Result<(OwnedFd, Vec<u8>)> {
        match self.resolve(path) {
            Ok(found) => return Ok(found),
            Err(Errno::NOENT | Errno::NOTDIR) => {}
            Err(e) => return Err(self.resolve_error(e, path)),
        }
        let (mut cur, mut at) = self.resolve(b"").map_err(|e| self.resolve_error(e, b""))?;
        let mut len = 0;
        for comp in path.split(|b| *b == b'/') {
            len += comp.len() + usize::from(len > 0);
            let prefix = &path[..len];
            (cur, at) = match self.resolve(prefix) {
                Ok(found) => found,
                Err(Errno::NOENT | Errno::NOTDIR) => {
                    let here = join(&at, comp);
                    match lstat(cur.as_fd(), comp).map_err(|e| io_err(e, "lstat", prefix))? {
                        Some(FileType::Directory) => {
                            bail!("{}: changed while being resolved", display(prefix))
                        }
                        Some(_) => self.remove(cur.as_fd(), comp, &here)?,
                        None => {}
                    }
                    rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755))
                        .map_err(|e| io_err(e, "mkdir", prefix))?;
                    let fd = open_subdir(cur.as_fd(), comp).map_err(|e| io_err(e, "opening", prefix))?;
                    // Not the umask's choice.
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
                        .map_err(|e| io_err(e, "chmod", prefix))?;
                    self.overlay_made_dir(&fd, &here, true)?;
                    (fd, here)
                }
                Err(e) => return Err(self.resolve_error(e, prefix)),
            };
        }
        Ok((cur, at))
    }

    /// The destination itself, for reading and fd-based metadata.
    fn open_root(&self) -> Result<OwnedFd, Errno> {
        let (root, _) = self.resolve(b"")?;
        open_subdir(root.as_fd(), b".")
    }

    /// Opens directory `path` (`""` = the root) as if the root were `/`, and tells where it is
    /// (the symlinks on the way expanded).
    fn resolve(&self, path: &[u8]) -> Result<(OwnedFd, Vec<u8>), Errno> {
        let found = self.root.resolve(path, &|_| false)?;
        Ok(found.expect("a resolution that never stops ends"))
    }

    /// [`Applier::resolve`] for a whiteout, which applies to lower layers only: it does not act
    /// through a symlink this layer made (None). `umoci repack` writes such whiteouts when a
    /// change replaces a directory by a symlink to where the directory's files went.
    fn resolve_lower(&self, path: &[u8]) -> Result<Option<(OwnedFd, Vec<u8>)>, Errno> {
        self.root.resolve(path, &|link| self.written.contains(link))
    }

    fn resolve_error(&self, e: Errno, path: &[u8]) -> anyhow::Error {
        if e == Errno::LOOP {
            anyhow!("symlink loop resolving {}", display(path))
        } else {
            io_err(e, "resolving", path)
        }
    }

    /// Owner, xattrs, mode (after chown, which clears setuid), mtime.
    fn set_meta(&mut self, node: Handle<'_>, e: &Entry) -> crate::Result<()> {
        self.set_owner(node, e)?;
        self.set_xattrs(node, e)?;
        let m = &e.meta;
        if m.kind != Kind::Symlink {
            node.chmod(m.mode).map_err(|err| io_err(err, "chmod", &e.path))?;
        }
        node.set_mtime(&mtime(m))
            .map_err(|err| io_err(err, "setting mtime", &e.path))
    }

    /// A directory's owner and xattrs now; its mode and mtime at [`Applier::finish`].
    fn set_dir_meta(&mut self, fd: OwnedFd, e: &Entry, path: &[u8]) -> crate::Result<()> {
        self.set_owner(Handle::Open(fd.as_fd()), e)?;
        self.set_xattrs(Handle::Open(fd.as_fd()), e)?;
        self.dirs
            .insert(TreePath::from(path.to_vec()), (e.meta.mode, mtime(&e.meta)));
        Ok(())
    }

    fn set_owner(&mut self, node: Handle<'_>, e: &Entry) -> crate::Result<()> {
        let (uid, gid) = (e.meta.uid, e.meta.gid);
        if self.privileged {
            return node.chown(uid, gid).map_err(|err| io_err(err, "chown", &e.path));
        }
        if (uid, gid) == (0, 0) {
            return Ok(());
        }
        if self.rootless {
            let value = rootless_owner(uid, gid);
            return self.set_xattr(node, ROOTLESS_XATTR, &value, &e.path);
        }
        self.notes.owners += 1;
        Ok(())
    }

    fn set_xattrs(&mut self, node: Handle<'_>, e: &Entry) -> crate::Result<()> {
        for (name, value) in e.meta.xattrs() {
            if !self.xattr_allowed(name, &e.path) {
                continue;
            }
            match self.overlay.as_ref().map(|s| s.stored_name(name)) {
                None => self.set_xattr(node, name, value, &e.path)?,
                Some(Some(stored)) => self.set_xattr(node, &stored, value, &e.path)?,
                Some(None) => {
                    let first = || format!("{} on {}", String::from_utf8_lossy(name), display(&e.path));
                    self.notes.overlay_reserved.get_or_insert_with(|| (0, first())).0 += 1;
                }
            }
        }
        Ok(())
    }

    /// The xattrs this unpack sets from a layer, and removes from a directory whose entry no
    /// longer has them: as root all but the host's own (see [`xattrs`]); otherwise the `user.*`
    /// namespace only (the kernel refuses the others).
    fn manages_xattr(&self, name: &[u8]) -> bool {
        !xattrs::is_host(name) && (self.privileged || name.starts_with(b"user."))
    }

    /// Whether to set one of a layer's xattrs; what is not set is noted for the report.
    fn xattr_allowed(&mut self, name: &[u8], path: &[u8]) -> bool {
        if xattrs::is_host(name) {
            return false;
        }
        if name == ROOTLESS_XATTR {
            // Only what this run records is trusted (umoci strips it too).
            self.notes.rootless_stripped += 1;
            return false;
        }
        if !self.manages_xattr(name) {
            let first = || format!("{} on {}", String::from_utf8_lossy(name), display(path));
            let n = self.notes.xattrs_skipped.get_or_insert_with(|| (0, first()));
            n.0 += 1;
            return false;
        }
        true
    }

    /// Sets one xattr; a file system or kernel that refuses it (ENOTSUP, EPERM: user.* on a
    /// symlink) is a warning, not a failure, as in umoci and containerd.
    fn set_xattr(&mut self, node: Handle<'_>, name: &[u8], value: &[u8], path: &[u8]) -> crate::Result<()> {
        match node.set_xattr(name, value) {
            Ok(()) => Ok(()),
            Err(err @ (Errno::NOTSUP | Errno::PERM)) => {
                let what = format!("{} on {}", String::from_utf8_lossy(name), display(path));
                self.notes
                    .xattr_failures
                    .entry(err.to_string())
                    .or_insert((0, what))
                    .0 += 1;
                Ok(())
            }
            Err(err) => Err(io_err(
                err,
                &format!("setting xattr {}", String::from_utf8_lossy(name)),
                path,
            )),
        }
    }

    /// On a directory whose entry replaces its attributes: removes the xattrs it no longer has.
    fn clear_xattrs(&mut self, fd: &OwnedFd, e: &Entry) -> crate::Result<()> {
        let names = xattrs::names(fd).map_err(|err| io_err(err, "listing xattrs of", &e.path))?;
        for name in names {
            // In overlay format the overlay's marks (and the layer's escaped names) stay: a
            // directory entry repeated in one layer is the only way to come here with them.
            if self.overlay.is_some() && xattrs::is_overlay(&name) {
                continue;
            }
            if self.manages_xattr(&name) && !e.meta.xattrs().contains_key(&name) {
                rustix::fs::fremovexattr(fd, name.as_slice()).map_err(|err| {
                    io_err(
                        err,
                        &format!("removing xattr {} of", String::from_utf8_lossy(&name)),
                        &e.path,
                    )
                })?;
            }
        }
        Ok(())
    }

    fn skip_device(&mut self, path: &[u8]) {
        self.skipped_devices.insert(TreePath::from(path.to_vec()));
        self.notes.devices.push(display(path));
    }
}

fn mtime(m: &Meta) -> Timespec {
    Timespec {
        tv_sec: m.mtime,
        tv_nsec: i64::from(m.mtime_nsec),
    }
}

/// The largest device numbers Linux has (12 bits of major, 20 of minor). mknod takes the
/// device as 32 bits, so a larger major or minor would not fail: it would wrap to another
/// device (4097:1 becomes 1:1, /dev/mem). Refused whether or not devices are made, so that a
/// layer is hostile or not the same way for every run.
const MAX_MAJOR: u32 = 0xfff;
const MAX_MINOR: u32 = 0xf_ffff;

fn check_device((major, minor): (u32, u32)) -> crate::Result<()> {
    if major > MAX_MAJOR || minor > MAX_MINOR {
        bail!(
            "device number {major}:{minor} out of range (Linux has majors up to {MAX_MAJOR} and minors up to {MAX_MINOR})"
        );
    }
    Ok(())
}

fn io_err(e: Errno, what: &str, path: &[u8]) -> anyhow::Error {
    anyhow!("{what} {}: {}", display(path), io::Error::from(e))
}

/// The keys that are `path` or lie beneath it, given the keys of a path-ordered map or set
/// from `path` on (path_cmp puts a path's subtree right after it).
fn within<'a>(from: impl Iterator<Item = &'a TreePath>, path: &[u8]) -> Vec<TreePath> {
    from.take_while(|k| is_within(&k.0, path)).cloned().collect()
}

/// The `user.rootlesscontainers` value (protobuf `Resource { uint32 uid = 1; uint32 gid = 2; }`,
/// rootlesscontaine.rs): the owner a rootless unpack could not set.
fn rootless_owner(uid: u32, gid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, mut v) in [(0x08u8, uid), (0x10, gid)] {
        if v == 0 {
            continue;
        }
        out.push(tag);
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A tar of (name, kind, data/target) entries built from raw headers (tar-rs's Builder
    /// refuses `..` in names).
    pub(crate) fn tar(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_mode(if *kind == b'5' { 0o755 } else { 0o644 });
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::new(*kind));
            let body: &[u8] = if matches!(kind, b'2' | b'1') {
                h.as_old_mut().linkname[..data.len()].copy_from_slice(data);
                b""
            } else {
                data
            };
            h.set_size(body.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    /// For a check that needs root: true when it may run. Otherwise it says so, and fails in
    /// CI, which runs as root (a silent skip there would hide the check).
    fn needs_root(why: &str) -> bool {
        if crate::cli::is_root() {
            return true;
        }
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "CI runs the tests as root, but this one is not: {why}");
        eprintln!("SKIPPED: {why} needs root");
        false
    }

    /// Applies as the tool does: privileged when root.
    fn apply(dest: &Path, layers: &[Vec<u8>]) -> crate::Result<Report> {
        let opts = Options {
            privileged: crate::cli::is_root(),
            ..Options::default()
        };
        let mut a = Applier::new(dest, opts)?;
        for l in layers {
            a.apply_layer(l.as_slice())?;
        }
        a.finish()
    }

    #[test]
    fn whiteouts_hide_lower_layers_only() {
        let t = tempfile::tempdir().unwrap();
        let lower = tar(&[
            ("d/", b'5', b""),
            ("d/old", b'0', b"old"),
            ("d/keep", b'0', b"k"),
            ("gone", b'0', b"g"),
            ("o/", b'5', b""),
            ("o/lower", b'0', b"l"),
        ]);
        // Same-layer path and whiteout in both orders; opaque marker after the new child.
        let upper = tar(&[
            ("d/.wh.old", b'0', b""),
            ("d/old", b'0', b"new"),
            ("d/keep", b'0', b"k2"),
            ("d/.wh.keep", b'0', b""),
            (".wh.gone", b'0', b""),
            ("o/upper", b'0', b"u"),
            ("o/.wh..wh..opq", b'0', b""),
        ]);
        apply(t.path(), &[lower, upper]).unwrap();
        let p = t.path();
        assert_eq!(std::fs::read(p.join("d/old")).unwrap(), b"new");
        assert_eq!(std::fs::read(p.join("d/keep")).unwrap(), b"k2");
        assert!(!p.join("gone").exists());
        assert!(!p.join("o/lower").exists());
        assert_eq!(std::fs::read(p.join("o/upper")).unwrap(), b"u");
        assert!(!p.join("d/.wh.old").exists() && !p.join("o/.wh..wh..opq").exists());
    }

    #[test]
    fn whiteouts_do_not_act_through_a_symlink_their_layer_made() {
        let t = tempfile::tempdir().unwrap();
        let lower = tar(&[
            ("usr/share/doc/apt/", b'5', b""),
            ("usr/share/doc/apt/NEWS", b'0', b"old"),
            ("usr/share/doc/apt/keep", b'0', b"k"),
            ("opt/docs/apt/", b'5', b""),
            ("opt/docs/apt/keep", b'0', b"lower"),
            ("opt/docs/apt/x", b'0', b"x"),
        ]);
        // umoci repack of `mv usr/share/doc/apt opt/docs/; ln -s ../../../opt/docs/apt
        // usr/share/doc/apt`: the symlink, then whiteouts of the old directory's files under it.
        let upper = tar(&[
            ("opt/docs/apt/NEWS", b'0', b"new"),
            ("usr/share/doc/apt", b'2', b"../../../opt/docs/apt"),
            ("usr/share/doc/apt/.wh.NEWS", b'0', b""),
            ("usr/share/doc/apt/.wh.keep", b'0', b""),
            ("link", b'2', b"opt/docs"),
            ("link/apt/.wh..wh..opq", b'0', b""),
        ]);
        apply(t.path(), &[lower, upper]).unwrap();
        let read = |p: &str| std::fs::read(t.path().join(p)).ok();
        assert_eq!(read("opt/docs/apt/NEWS").as_deref(), Some(&b"new"[..]));
        assert_eq!(read("opt/docs/apt/keep").as_deref(), Some(&b"lower"[..]));
        assert_eq!(read("opt/docs/apt/x").as_deref(), Some(&b"x"[..]));
        assert_eq!(read("usr/share/doc/apt/NEWS").as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn whiteouts_spare_what_the_layer_wrote_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let lower = tar(&[
            ("usr/lib/", b'5', b""),
            ("usr/lib/x", b'0', b"old"),
            ("usr/lib/y", b'0', b"old"),
            ("usr/lib/gone", b'0', b"old"),
            ("lib", b'2', b"usr/lib"),
        ]);
        // The same paths written through the symlink and whited out by their real name, and
        // the other way round, in both orders; one whiteout through the symlink of a lower layer.
        let upper = tar(&[
            ("lib/x", b'0', b"new"),
            ("usr/lib/.wh.x", b'0', b""),
            ("lib/.wh.y", b'0', b""),
            ("usr/lib/y", b'0', b"new"),
            ("lib/.wh.gone", b'0', b""),
        ]);
        apply(t.path(), &[lower, upper]).unwrap();
        let read = |p: &str| std::fs::read(t.path().join(p)).ok();
        assert_eq!(read("usr/lib/x").as_deref(), Some(&b"new"[..]));
        assert_eq!(read("usr/lib/y").as_deref(), Some(&b"new"[..]));
        assert_eq!(read("usr/lib/gone"), None);
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let l = tar(&[
            ("run/", b'5', b""),
            ("var/", b'5', b""),
            ("var/run", b'2', b"/run"),
            ("var/run/x", b'0', b"x"),
            ("up", b'2', b"../../../.."),
            ("up/y", b'0', b"y"),
        ]);
        apply(t.path(), &[l]).unwrap();
        assert_eq!(std::fs::read(t.path().join("run/x")).unwrap(), b"x");
        assert_eq!(std::fs::read(t.path().join("y")).unwrap(), b"y");
        assert_eq!(
            std::fs::read_link(t.path().join("var/run")).unwrap(),
            Path::new("/run")
        );
    }

    #[test]
    fn refuses_root_type_change_loops_and_dir_hardlinks() {
        for (l, want) in [
            (tar(&[("./", b'2', b"/")]), "root directory"),
            (
                tar(&[("a", b'2', b"b"), ("b", b'2', b"a"), ("a/x", b'0', b"")]),
                "symlink loop",
            ),
            (
                tar(&[("d/", b'5', b""), ("h", b'1', b"d")]),
                "hard link to a directory",
            ),
            (tar(&[("h", b'1', b"nothing")]), "does not exist"),
        ] {
            let t = tempfile::tempdir().unwrap();
            let err = format!("{:#}", apply(t.path(), &[l]).unwrap_err());
            assert!(err.contains(want), "{err}");
        }
    }

    /// A layer of one device entry `dev/d` with these numbers.
    fn device_layer(kind: tar::EntryType, major: u32, minor: u32) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path("dev/d").unwrap();
        h.set_entry_type(kind);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.resize(512 * 3, 0);
        out
    }

    #[test]
    fn refuses_device_numbers_out_of_range() {
        use tar::EntryType::{Block, Char};
        // Why: mknod takes 32 bits, so these would wrap to real devices instead of failing.
        assert_eq!(
            rustix::fs::makedev(4097, 1) as u32,
            rustix::fs::makedev(1, 1) as u32
        );
        for (kind, major, minor) in [
            (Char, MAX_MAJOR + 1, 1),
            (Block, 1, MAX_MINOR + 1),
            (Char, 0o7777777, 0o7777777), // the largest the octal fields hold
        ] {
            let t = tempfile::tempdir().unwrap();
            let err = format!(
                "{:#}",
                apply(t.path(), &[device_layer(kind, major, minor)]).unwrap_err()
            );
            assert!(err.contains("/dev/d") && err.contains("out of range"), "{err}");
            assert!(
                !t.path().join("dev/d").exists(),
                "nothing made for {major}:{minor}"
            );
        }
        // The largest numbers are devices like any other (made as root, skipped otherwise).
        let t = tempfile::tempdir().unwrap();
        apply(t.path(), &[device_layer(Char, MAX_MAJOR, MAX_MINOR)]).unwrap();
        if needs_root("making the largest device node") {
            let st = rustix::fs::lstat(t.path().join("dev/d")).unwrap();
            let rdev = st.st_rdev;
            assert_eq!(
                (rustix::fs::major(rdev), rustix::fs::minor(rdev)),
                (MAX_MAJOR, MAX_MINOR)
            );
        }
    }

    #[test]
    fn replaces_rather_than_writes_through() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), b"safe").unwrap();
        let victim = outside.path().join("victim");
        let lower = tar(&[
            ("f", b'2', victim.to_str().unwrap().as_bytes()),
            ("s", b'0', b"file"),
            ("p", b'0', b"plain"),
        ]);
        // f: a file over a symlink; s: a directory over a file; p/c: a file under a file.
        let upper = tar(&[("f", b'0', b"mine"), ("s/", b'5', b""), ("p/c", b'0', b"c")]);
        apply(t.path(), &[lower, upper]).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"safe");
        assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"mine");
        assert!(t.path().join("s").is_dir());
        assert_eq!(std::fs::read(t.path().join("p/c")).unwrap(), b"c");
        let m = std::fs::metadata(t.path().join("p")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    }

    #[test]
    fn directory_modes_and_mtimes_come_last() {
        let t = tempfile::tempdir().unwrap();
        let mut l = tar(&[("ro/", b'5', b""), ("ro/f", b'0', b"x")]);
        // Make the directory 0555: its child must still be written.
        let mut h = tar::Header::from_byte_slice(&l[..512]).clone();
        h.set_mode(0o555);
        h.set_cksum();
        l[..512].copy_from_slice(h.as_bytes());
        apply(t.path(), &[l]).unwrap();
        let m = std::fs::metadata(t.path().join("ro")).unwrap();
        assert_eq!(
            (m.permissions().mode() & 0o7777, m.mtime()),
            (0o555, 1_600_000_000)
        );
        assert_eq!(std::fs::read(t.path().join("ro/f")).unwrap(), b"x");
    }

    #[test]
    fn host_xattrs_are_neither_set_nor_removed() {
        let t = tempfile::tempdir().unwrap();
        for privileged in [false, true] {
            let opts = Options {
                privileged,
                ..Options::default()
            };
            let a = Applier::new(t.path(), opts).unwrap();
            for host in [&b"security.selinux"[..], b"system.nfs4_acl"] {
                assert!(
                    !a.manages_xattr(host),
                    "{} privileged={privileged}",
                    String::from_utf8_lossy(host)
                );
            }
            assert!(a.manages_xattr(b"user.x"));
            assert_eq!(a.manages_xattr(b"trusted.x"), privileged);
            assert_eq!(a.manages_xattr(b"security.capability"), privileged);
        }
    }

    #[test]
    fn rootless_owner_is_protobuf() {
        assert_eq!(rootless_owner(0, 0), b"");
        assert_eq!(rootless_owner(1000, 0), [0x08, 0xe8, 0x07]);
        assert_eq!(rootless_owner(1, 300), [0x08, 0x01, 0x10, 0xac, 0x02]);
    }

    #[test]
    fn forgets_only_the_subtree() {
        let mut m: BTreeSet<TreePath> = [&b"a"[..], b"a/b", b"a/b/c", b"a-b", b"ab"]
            .iter()
            .map(|p| TreePath::from(p.to_vec()))
            .collect();
        for k in within(m.range(TreePath::from(b"a".to_vec())..), b"a") {
            m.remove(&k);
        }
        let left: Vec<&[u8]> = m.iter().map(|k| &*k.0).collect();
        assert_eq!(left, vec![&b"a-b"[..], b"ab"]);
    }
}
