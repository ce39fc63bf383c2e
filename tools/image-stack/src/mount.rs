//! `--mount DIR` and `--unmount DIR`: a container's file system, docker's way. The image's
//! layers come from the layout's layer cache (`common::layout::cache`: each extracted once, by
//! the same hardened applier as `--rootfs`, in overlayfs's format), stacked by an overlay mount
//! with a fresh upper directory of its own (the container layer, `common::layout::mounts`).
//!
//! As root, the kernel's overlayfs, through the new mount API (fsopen/fsconfig/fsmount): one
//! `lowerdir+` parameter per layer, so a stack of a hundred layers never meets the one-page
//! limit of mount(2)'s option string. Without root, fuse-overlayfs: a kernel overlay in a user
//! namespace of our own would be seen only inside that namespace, never by the caller's shell.
//!
//! Never a half-made mount: everything that can fail is done before the mount call (extracting,
//! the record, the upper directory), and a failure removes what this run made.

use crate::stack::Stack;
use anyhow::{Context, anyhow, bail};
use common::digest::Digest;
use common::layout::cache::{Cache, Entry, Format};
use common::layout::mounts::{self, Driver, Record, RecordDir};
use common::progress::Progress;
use rustix::fd::{AsFd, OwnedFd};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags};
use serde::Serialize;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The line `--mount` prints.
#[derive(Serialize)]
pub struct Mounted {
    pub image: String,
    pub manifest: Digest,
    pub mount: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The lower directories, top first (overlayfs's order).
    pub lower: Vec<PathBuf>,
    pub driver: Driver,
}

/// Mounts the stack (a base image, `image` as `--from` named it) at `dir`.
pub fn mount(stack: &Stack, image: &str, dir: &Path, quiet: bool) -> crate::Result<Mounted> {
    let base = stack.base.as_ref().context("--mount needs --from IMAGE")?;
    let driver = driver()?;
    let point = MountPoint::prepare(dir)?;
    let made = (|| {
        let cache = base.layout.layer_cache(Format::for_caller())?;
        let diff_ids: Vec<Digest> = stack.layers.iter().map(|l| l.diff_id.clone()).collect();
        // Held until the mount is made: image-prune keeps these entries meanwhile.
        let held = cache.lock(&diff_ids)?;
        let (entries, notes) = extract(stack, &cache, &held, quiet)?;
        check_implied(&entries)?;
        let record = base.layout.new_mount_record()?;
        let result = (|| {
            let lower = lower_stack(&entries, &record)?;
            dress_root(&record.upper(), &entries)?;
            record.write(&Record {
                image: image.to_string(),
                manifest: base.descriptor.digest.clone(),
                layout: fs::canonicalize(base.layout.root())
                    .with_context(|| base.layout.root().display().to_string())?,
                mount: point.path.clone(),
                driver,
                diff_ids,
                lower: lower.clone(),
                created: point.created,
            })?;
            match driver {
                Driver::Overlay => kernel_mount(&point.path, &record, &lower)?,
                Driver::FuseOverlayfs => fuse_mount(&point.path, &record, &lower)?,
            }
            Ok(lower)
        })();
        match result {
            Ok(lower) => {
                if !quiet {
                    for n in notes {
                        let _ = writeln!(io::stderr(), "image-stack: warning: {n}");
                    }
                }
                Ok((record, lower))
            }
            Err(e) => {
                let _ = record.remove();
                Err(e)
            }
        }
    })();
    let (record, lower) = match made {
        Ok(m) => m,
        Err(e) => {
            point.undo();
            return Err(e);
        }
    };
    Ok(Mounted {
        image: image.to_string(),
        manifest: base.descriptor.digest.clone(),
        mount: point.path,
        upper: record.upper(),
        work: record.work(),
        lower,
        driver,
    })
}

/// Unmounts an image-stack mount and removes its record, upper directory included (and the
/// mount point, when `--mount` made it).
pub fn unmount(dir: &Path) -> crate::Result<()> {
    let (point, record) = find(dir)?;
    let r = record.read()?;
    match rustix::mount::unmount(&point, UnmountFlags::empty()) {
        Ok(()) => {}
        Err(rustix::io::Errno::BUSY) => bail!(
            "--unmount {}: busy (a process has a file open or its working directory in it): still mounted",
            dir.display()
        ),
        // Without root, a FUSE mount goes through fusermount.
        Err(rustix::io::Errno::PERM) if r.driver == Driver::FuseOverlayfs => fusermount_u(&point)?,
        Err(e) => return Err(io::Error::from(e)).with_context(|| format!("--unmount {}", dir.display())),
    }
    record.remove()?;
    if r.created {
        let _ = fs::remove_dir(&point);
    }
    Ok(())
}

/// The record of the image-stack mount at `dir`, found from the mount table (and held).
pub fn find(dir: &Path) -> crate::Result<(PathBuf, RecordDir)> {
    let point = fs::canonicalize(dir).with_context(|| dir.display().to_string())?;
    let record = mounts::find(&point)?.ok_or_else(|| {
        anyhow!(
            "{}: not an image-stack mount (nothing mounted there by image-stack --mount)",
            dir.display()
        )
    })?;
    Ok((point, record))
}

/// Which overlay: the kernel's as root, else fuse-overlayfs. `LAYERKIT_MOUNT_DRIVER`
/// (`overlay`, `fuse-overlayfs`) chooses, e.g. fuse-overlayfs where the kernel's refuses the
/// layout's file system.
fn driver() -> crate::Result<Driver> {
    let forced = std::env::var("LAYERKIT_MOUNT_DRIVER").ok();
    match forced.as_deref() {
        Some("overlay") => return Ok(Driver::Overlay),
        Some("fuse-overlayfs") => {}
        Some(other) => bail!("LAYERKIT_MOUNT_DRIVER={other}: expected overlay or fuse-overlayfs"),
        None if common::cli::is_root() => return Ok(Driver::Overlay),
        None => {}
    }
    let why = "mounting without root needs fuse-overlayfs (the kernel's overlayfs needs root here: in a user namespace of its own, the mount would be seen only inside that namespace)";
    fuse_overlayfs().with_context(|| why.to_string())?;
    if let Err(e) = fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        bail!("{why}, which needs /dev/fuse: {e}");
    }
    Ok(Driver::FuseOverlayfs)
}

fn fuse_overlayfs() -> crate::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("fuse-overlayfs"))
        .find(|p| p.is_file())
        .context("fuse-overlayfs is not installed (not on PATH)")
}

/// The mount point: made when absent, else an empty directory; `undo` removes what `prepare`
/// made.
struct MountPoint {
    path: PathBuf,
    created: bool,
}

impl MountPoint {
    fn prepare(dir: &Path) -> crate::Result<MountPoint> {
        let created = match fs::DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e).with_context(|| format!("--mount {}: creating it", dir.display())),
        };
        let point = MountPoint {
            path: fs::canonicalize(dir).with_context(|| format!("--mount {}", dir.display()))?,
            created,
        };
        if created {
            return Ok(point);
        }
        let meta = fs::metadata(&point.path).with_context(|| format!("--mount {}", dir.display()))?;
        if !meta.is_dir() {
            bail!("--mount {}: not a directory", dir.display());
        }
        if fs::read_dir(&point.path)
            .with_context(|| format!("--mount {}", dir.display()))?
            .next()
            .is_some()
        {
            bail!(
                "--mount {}: the directory is not empty (mount on a new or empty one)",
                dir.display()
            );
        }
        if mounts::mount_table()?.iter().any(|m| m.point == point.path) {
            bail!("--mount {}: something is mounted there already", dir.display());
        }
        Ok(point)
    }

    fn undo(self) {
        if self.created {
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// Every layer's cache entry, extracted where missing, bottom first, and the warnings of the
/// extractions (shown once the mount is made: a refusal is one line).
fn extract(
    stack: &Stack,
    cache: &Cache,
    held: &common::layout::cache::Held,
    quiet: bool,
) -> crate::Result<(Vec<Entry>, Vec<String>)> {
    let progress = Progress::bytes("extracting", quiet);
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    for layer in &stack.layers {
        let (entry, warnings) = cache.entry(held, &layer.diff_id, |applier| {
            let mut stream = stack.open_layer(layer)?;
            applier
                .apply_layer(progress.reader(&mut stream))
                .with_context(|| format!("layer {}", layer.desc.digest))?;
            stream.finish().map(drop)
        })?;
        notes.extend(
            warnings
                .iter()
                .map(|w| format!("layer {}: {w}", layer.desc.digest)),
        );
        entries.push(entry);
    }
    Ok((entries, notes))
}

/// Refuses a stack overlayfs would show otherwise than `--rootfs`: a layer that writes (or
/// whites out) beneath a path which a lower layer makes a symlink, without an entry of its own
/// for the directory. `--rootfs` follows the symlink; the layer's cache entry cannot know of it,
/// holds a directory of that name, and overlayfs would show that directory in the symlink's
/// place (docker's overlay2 does so, silently).
fn check_implied(entries: &[Entry]) -> crate::Result<()> {
    for (k, e) in entries.iter().enumerate() {
        let implied = e.implied()?;
        let set: HashSet<&[u8]> = implied.iter().map(Vec::as_slice).collect();
        // The topmost implied directories: beneath them, nothing of the lowers is reached.
        for p in implied
            .iter()
            .filter(|p| !set.contains(common::path::parent(p)) || common::path::parent(p).is_empty())
        {
            for lower in entries[..k].iter().rev() {
                match lower_at(&lower.tree, p)? {
                    Lower::Absent { opaque: false } if !lower.marker.opaque_root => {}
                    Lower::Symlink => bail!(
                        "layer {} writes beneath {}, which a lower layer ({}) makes a symlink: an overlay mount would show a directory there, not follow the symlink as --rootfs does (use image-stack --rootfs for this image)",
                        e.marker.diff_id,
                        common::path::display(p),
                        lower.marker.diff_id
                    ),
                    _ => break,
                }
            }
        }
    }
    Ok(())
}

/// What a lower layer's cache entry has at a path.
enum Lower {
    /// Nothing: the layers below decide; `opaque`: not even they (an opaque directory on the way).
    Absent {
        opaque: bool,
    },
    Symlink,
    /// A directory, a whiteout or another non-directory (on the way or there): what `--rootfs`
    /// and the mount show agree.
    Stops,
}

fn lower_at(tree: &Path, p: &[u8]) -> crate::Result<Lower> {
    let mut at = tree.to_path_buf();
    let mut opaque = false;
    let comps: Vec<&[u8]> = p.split(|b| *b == b'/').filter(|c| !c.is_empty()).collect();
    for (i, c) in comps.iter().enumerate() {
        at.push(std::ffi::OsStr::from_bytes(c));
        let m = match fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lower::Absent { opaque }),
            Err(e) => return Err(e).with_context(|| at.display().to_string()),
        };
        let last = i + 1 == comps.len();
        if m.file_type().is_symlink() && last {
            return Ok(Lower::Symlink);
        }
        if !m.is_dir() || last {
            return Ok(Lower::Stops);
        }
        let x = common::xattrs::read(&at, true)
            .map_err(io::Error::from)
            .with_context(|| at.display().to_string())?;
        opaque |= common::xattrs::overlay(&x, b"opaque") == Some(b"y");
    }
    Ok(Lower::Stops)
}

/// The lower directories, top first: a layer that repeats a higher one adds nothing (overlayfs
/// refuses a directory twice), and a layer hiding everything below (`.wh..wh..opq` at its top,
/// which overlayfs cannot honour on a lower root) ends the stack.
fn lower_stack(entries: &[Entry], record: &RecordDir) -> crate::Result<Vec<PathBuf>> {
    let mut seen = HashSet::new();
    let mut lower = Vec::new();
    for e in entries.iter().rev() {
        if seen.insert(e.marker.diff_id.clone()) {
            lower.push(e.tree.clone());
        }
        if e.marker.opaque_root {
            break;
        }
    }
    if lower.is_empty() {
        lower.push(record.empty()?);
    }
    Ok(lower)
}

/// The mount's root is its upper directory's root: it takes the attributes of the top layer
/// that carries `./`, or 0755 (as `--rootfs`).
fn dress_root(upper: &Path, entries: &[Entry]) -> crate::Result<()> {
    let ctx = || format!("{}: setting the root's attributes", upper.display());
    let Some(top) = entries.iter().rev().find(|e| e.marker.root_entry) else {
        return fs::set_permissions(upper, fs::Permissions::from_mode(0o755)).with_context(ctx);
    };
    let m = fs::symlink_metadata(&top.tree).with_context(ctx)?;
    if common::cli::is_root() {
        std::os::unix::fs::chown(upper, Some(m.uid()), Some(m.gid())).with_context(ctx)?;
    }
    for name in common::xattrs::read(&top.tree, false)
        .map_err(io::Error::from)
        .with_context(ctx)?
    {
        rustix::fs::setxattr(upper, name.0.as_slice(), &name.1, rustix::fs::XattrFlags::empty())
            .map_err(io::Error::from)
            .with_context(ctx)?;
    }
    fs::set_permissions(upper, fs::Permissions::from_mode(m.mode() & 0o7777)).with_context(ctx)?;
    let t = rustix::fs::Timespec {
        tv_sec: m.mtime(),
        tv_nsec: m.mtime_nsec(),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        upper,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::empty(),
    )
    .map_err(io::Error::from)
    .with_context(ctx)
}

/// The kernel's overlayfs, through the new mount API. The source names the record (that is how
/// `--commit` and `--unmount` find it); redirects and metacopy stay off, so the upper
/// directory alone is the change (`layer-diff --overlay` refuses what needs the lower).
fn kernel_mount(point: &Path, record: &RecordDir, lower: &[PathBuf]) -> crate::Result<()> {
    let fs_fd = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| match e {
        rustix::io::Errno::NODEV => anyhow!("the kernel has no overlayfs"),
        e => anyhow!(
            "the kernel's overlayfs: fsopen: {} (a mount needs root)",
            io::Error::from(e)
        ),
    })?;
    let set = |key: &str, value: &Path| -> crate::Result<()> {
        mounts::check_param_len(key, value)?;
        rustix::mount::fsconfig_set_string(&fs_fd, key, value).map_err(|e| refused(&fs_fd, e, key))
    };
    set("source", &record.dir)?;
    for l in lower {
        set("lowerdir+", l)?;
    }
    set("upperdir", &record.upper())?;
    set("workdir", &record.work())?;
    for (key, value) in [("redirect_dir", "off"), ("metacopy", "off"), ("index", "off")] {
        rustix::mount::fsconfig_set_string(&fs_fd, key, value).map_err(|e| refused(&fs_fd, e, key))?;
    }
    rustix::mount::fsconfig_create(&fs_fd).map_err(|e| refused(&fs_fd, e, "creating the mount"))?;
    let mnt = rustix::mount::fsmount(&fs_fd, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| refused(&fs_fd, e, "fsmount"))?;
    rustix::mount::move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        point,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(io::Error::from)
    .with_context(|| format!("mounting at {}", point.display()))
}

/// The kernel's refusal, with what it said about it (the messages fsopen's fd holds).
fn refused(fs_fd: &OwnedFd, e: rustix::io::Errno, step: &str) -> anyhow::Error {
    let mut said = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = rustix::io::read(fs_fd, &mut buf) {
        if n == 0 {
            break;
        }
        said.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(" ({})", said.join("; "))
    };
    anyhow!(
        "the kernel refused the overlay mount: {step}: {}{said}",
        io::Error::from(e)
    )
}

/// fuse-overlayfs, which daemonizes once the mount is made.
fn fuse_mount(point: &Path, record: &RecordDir, lower: &[PathBuf]) -> crate::Result<()> {
    let mut opt = OsString::from("lowerdir=");
    for (i, l) in lower.iter().enumerate() {
        if i > 0 {
            opt.push(":");
        }
        opt.push(fuse_path(l)?);
    }
    opt.push(",upperdir=");
    opt.push(fuse_path(&record.upper())?);
    opt.push(",workdir=");
    opt.push(fuse_path(&record.work())?);
    let out = Command::new(fuse_overlayfs()?)
        .arg("-o")
        .arg(opt)
        .arg(point)
        .output()
        .context("running fuse-overlayfs")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("unknown argument ignored"))
            .collect();
        bail!("fuse-overlayfs failed ({}): {}", out.status, said.join("; "));
    }
    Ok(())
}

/// A path as fuse-overlayfs's options can carry it: without `:` and `,`.
fn fuse_path(p: &Path) -> crate::Result<&Path> {
    let bytes = p.as_os_str().as_encoded_bytes();
    if bytes.contains(&b':') || bytes.contains(&b',') {
        bail!(
            "{}: fuse-overlayfs cannot take a path holding ':' or ','",
            p.display()
        );
    }
    Ok(p)
}

fn fusermount_u(point: &Path) -> crate::Result<()> {
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(point)
        .output()
        .context("running fusermount3 -u")?;
    if !out.status.success() {
        bail!(
            "fusermount3 -u {}: {}",
            point.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
