//! The fd-level primitives of [`super::Applier`]: resolving a directory inside the root
//! (`openat2(RESOLVE_IN_ROOT)`, or [`walk_in_root`] where the kernel lacks it), and the `*at`
//! calls that never follow a final symlink. This is the security-critical part of `--rootfs`:
//! every path a layer names reaches the disk through it.

use crate::path::{MAX_SYMLINKS, join, parent};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::path::Path;

/// The destination directory, and how paths resolve inside it.
pub(super) struct Root {
    fd: OwnedFd,
    /// False when the kernel has no openat2 (ENOSYS): then [`walk_in_root`] resolves instead.
    pub(super) openat2: bool,
}

impl Root {
    pub(super) fn open(dest: &Path) -> Result<Root, Errno> {
        let fd = rustix::fs::open(
            dest,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let openat2 = !matches!(
            rustix::fs::openat2(&fd, ".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), in_root()),
            Err(Errno::NOSYS)
        );
        Ok(Root { fd, openat2 })
    }

    /// Opens directory `path` (normalized, as entry paths are; `""` = the root) as if the root
    /// were `/`, and tells where it is: its path with the symlinks on the way expanded, which
    /// is what the applier records. `stop` is shown each symlink met (by that expanded path)
    /// and may end the resolution: then None.
    pub(super) fn resolve(
        &self,
        path: &[u8],
        stop: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Option<(OwnedFd, Vec<u8>)>, Errno> {
        if self.openat2 {
            // Most paths have no symlink on the way: one call, and the path is where it is.
            match self.open_in_root(path, ResolveFlags::NO_SYMLINKS) {
                Err(Errno::LOOP) => {}
                r => return r.map(|fd| Some((fd, path.to_vec()))),
            }
        }
        walk_in_root(self.fd.as_fd(), path, stop)
    }

    /// openat2(RESOLVE_IN_ROOT) of directory `path`, with `more` resolve flags.
    fn open_in_root(&self, path: &[u8], more: ResolveFlags) -> Result<OwnedFd, Errno> {
        let path = if path.is_empty() { b"." } else { path };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        // EAGAIN: a rename raced with RESOLVE_IN_ROOT's `..` check; the kernel asks to retry.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, path, flags, Mode::empty(), in_root() | more) {
                Err(Errno::AGAIN) if tries < 64 => tries += 1,
                r => return r,
            }
        }
    }
}

/// Where an entry's metadata goes: the fd we created it through (files, directories), or
/// (parent fd, name) never following the name (symlinks, fifos, devices).
#[derive(Clone, Copy)]
pub(super) enum Handle<'a> {
    Open(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

impl Handle<'_> {
    pub(super) fn chown(self, uid: u32, gid: u32) -> Result<(), Errno> {
        let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        match self {
            Handle::Open(fd) => rustix::fs::fchown(fd, u, g),
            Handle::At(dir, name) => rustix::fs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW),
        }
    }

    pub(super) fn chmod(self, mode: u32) -> Result<(), Errno> {
        let mode = Mode::from_raw_mode(mode);
        match self {
            Handle::Open(fd) => rustix::fs::fchmod(fd, mode),
            Handle::At(dir, name) => {
                // fchmodat cannot refuse to follow a symlink; an O_PATH fd can, and chmod of its
                // /proc magic link reaches exactly that inode.
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
                    return Err(Errno::LOOP);
                }
                rustix::fs::chmodat(rustix::fs::CWD, proc_fd(fd.as_fd(), None), mode, AtFlags::empty())
            }
        }
    }

    pub(super) fn set_mtime(self, t: &Timespec) -> Result<(), Errno> {
        match self {
            Handle::Open(fd) => rustix::fs::futimens(fd, &times(t)),
            Handle::At(dir, name) => rustix::fs::utimensat(dir, name, &times(t), AtFlags::SYMLINK_NOFOLLOW),
        }
    }

    pub(super) fn set_xattr(self, name: &[u8], value: &[u8]) -> Result<(), Errno> {
        match self {
            Handle::Open(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
            // No fd-based call exists for a symlink's own xattrs: lsetxattr through the parent's
            // magic link, not following the name.
            Handle::At(dir, name_in_dir) => {
                rustix::fs::lsetxattr(proc_fd(dir, Some(name_in_dir)), name, value, XattrFlags::empty())
            }
        }
    }
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// `/proc/self/fd/N` or `/proc/self/fd/N/NAME`.
fn proc_fd(fd: BorrowedFd<'_>, name: Option<&[u8]>) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(name) = name {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    p
}

pub(super) fn times(t: &Timespec) -> Timestamps {
    Timestamps {
        last_access: *t,
        last_modification: *t,
    }
}

/// The file type at `name` in `dir`, not following a symlink; None when nothing is there.
pub(super) fn lstat(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<FileType>, Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a subdirectory for reading and fd-based metadata, refusing a symlink in its place.
pub(super) fn open_subdir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The names in a directory, without `.` and `..`.
pub(super) fn list(dir: &OwnedFd) -> Result<Vec<Vec<u8>>, Errno> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let name = e?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Removes `name` in `dir` and everything beneath it, through fds only (a symlink is removed,
/// never followed), with an explicit stack: a hostile tree can be deeper than the call stack.
pub(super) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => {}
        Err(Errno::NOENT) => return Ok(()),
        r => return r,
    }
    struct Frame {
        fd: OwnedFd,
        name: Vec<u8>,
        subdirs: Vec<Vec<u8>>,
    }
    let open = |dir: BorrowedFd<'_>, name: &[u8]| -> Result<Frame, Errno> {
        let fd = open_subdir(dir, name)?;
        let mut subdirs = Vec::new();
        for child in list(&fd)? {
            match rustix::fs::unlinkat(&fd, &child, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) => subdirs.push(child),
                Err(e) => return Err(e),
            }
        }
        Ok(Frame {
            fd,
            name: name.to_vec(),
            subdirs,
        })
    };
    let mut stack = vec![open(dir, name)?];
    while let Some(top) = stack.last_mut() {
        if let Some(sub) = top.subdirs.pop() {
            let frame = open(top.fd.as_fd(), &sub)?;
            stack.push(frame);
            continue;
        }
        let Some(done) = stack.pop() else { break };
        drop(done.fd);
        let parent = stack.last().map_or(dir, |f| f.fd.as_fd());
        rustix::fs::unlinkat(parent, &done.name, AtFlags::REMOVEDIR)?;
    }
    Ok(())
}

/// Resolves directory `path` inside `root` as openat2(RESOLVE_IN_ROOT) does, where the kernel
/// has no openat2 or a symlink is on the way: one component at a time with O_PATH|O_NOFOLLOW
/// from fds we hold, symlinks expanded by hand (absolute ones from the root, `..` clamped at
/// the root), at most [`MAX_SYMLINKS`]. Returns the directory and its path with the symlinks expanded; None
/// when `stop` said so of a symlink (given its expanded path).
pub(super) fn walk_in_root(
    root: BorrowedFd<'_>,
    path: &[u8],
    stop: &dyn Fn(&[u8]) -> bool,
) -> Result<Option<(OwnedFd, Vec<u8>)>, Errno> {
    let mut stack: Vec<OwnedFd> = Vec::new();
    // Where the top of `stack` is.
    let mut at: Vec<u8> = Vec::new();
    let mut todo: VecDeque<Vec<u8>> = path.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
    let mut links = 0;
    while let Some(comp) = todo.pop_front() {
        match comp.as_slice() {
            b"" | b"." => continue,
            b".." => {
                stack.pop();
                at = parent(&at).to_vec();
                continue;
            }
            _ => {}
        }
        let cur = stack.last().map_or(root, |f| f.as_fd());
        let fd = rustix::fs::openat(
            cur,
            &comp,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        match FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
            FileType::Directory => {
                stack.push(fd);
                at = join(&at, &comp);
            }
            FileType::Symlink => {
                if stop(&join(&at, &comp)) {
                    return Ok(None);
                }
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP);
                }
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
                let target = target.as_bytes();
                if target.starts_with(b"/") {
                    stack.clear();
                    at.clear();
                }
                for c in target.split(|b| *b == b'/').rev() {
                    todo.push_front(c.to_vec());
                }
            }
            _ => return Err(Errno::NOTDIR),
        }
    }
    let fd = match stack.pop() {
        Some(fd) => fd,
        None => rustix::fs::openat(
            root,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?,
    };
    Ok(Some((fd, at)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::display;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn fallback_walk_resolves_like_openat2() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib64")).unwrap();
        std::fs::write(r.join("file"), b"").unwrap();
        symlink("/usr/lib64", r.join("lib64")).unwrap();
        symlink("../../../usr", r.join("usr/lib64/up")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        symlink("/nowhere", r.join("dangling")).unwrap();
        let root = rustix::fs::open(r, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let a = Root::open(r).unwrap();
        assert!(a.openat2, "this kernel has openat2");
        let id = |fd: Result<OwnedFd, Errno>| {
            fd.map(|fd| {
                let st = rustix::fs::fstat(fd).unwrap();
                (st.st_dev, st.st_ino)
            })
        };
        let never = |_: &[u8]| false;
        let walk = |p: &[u8]| walk_in_root(root.as_fd(), p, &never).map(|w| w.unwrap().0);
        for p in [
            &b""[..],
            b"lib64",
            b"lib64/up/lib64/up",
            b"/../usr",
            b"loop1",
            b"dangling",
            b"file",
            b"no/such",
        ] {
            assert_eq!(
                id(walk(p)),
                id(a.open_in_root(p, ResolveFlags::empty())),
                "{}",
                display(p)
            );
        }
        let ino = |p: &str| std::fs::metadata(r.join(p)).unwrap().ino();
        assert_eq!(
            id(a.open_in_root(b"lib64/up", ResolveFlags::empty())).unwrap().1,
            ino("usr")
        );
    }

    #[test]
    fn resolving_tells_where_a_directory_is_and_stops_where_asked() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib64/d")).unwrap();
        symlink("/usr/lib64", r.join("lib64")).unwrap();
        symlink("../../../usr", r.join("usr/lib64/up")).unwrap();
        let root = Root::open(r).unwrap();
        let at = |p: &[u8], stop: &dyn Fn(&[u8]) -> bool| {
            root.resolve(p, stop)
                .unwrap()
                .map(|(_, at)| String::from_utf8(at).unwrap())
        };
        let never = |_: &[u8]| false;
        for (p, want) in [
            (&b""[..], ""),
            (b"usr/lib64/d", "usr/lib64/d"),
            (b"lib64/d", "usr/lib64/d"),
            (b"lib64/up/lib64", "usr/lib64"),
        ] {
            assert_eq!(at(p, &never).as_deref(), Some(want), "{}", display(p));
        }
        let seen = std::cell::RefCell::new(Vec::new());
        let stop_at_up = |link: &[u8]| {
            seen.borrow_mut().push(String::from_utf8(link.to_vec()).unwrap());
            link == b"usr/lib64/up"
        };
        assert_eq!(at(b"lib64/up/lib64", &stop_at_up), None);
        assert_eq!(*seen.borrow(), ["lib64", "usr/lib64/up"]);
        assert!(root.resolve(b"lib64/nothing", &never).is_err());
    }
}
