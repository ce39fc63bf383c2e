//! The harness and oracle of the apply targets (`apply`, rootless; `apply_root`, as root: chown,
//! mknod and every xattr namespace): the input is up to four layers' tars, separated by
//! `LAYER_SEP`, applied in order into a fresh root in a scratch directory, beside a canary.
//!
//! The oracles: whatever the layers hold, nothing is written outside the root; and when the
//! applier takes them, the root holds what the tree model (`Tree::from_layers`, behind
//! `--tar`, layer-diff and `--wasted`) stacks from the same layers: the same paths, each of the
//! same type, file size and symlink target (device nodes, which a rootless apply skips, left
//! out), since the stacking rules have two homes that must agree. Run as root, the
//! target first gives itself a private mount namespace with its own empty tmpfs on `/tmp` and
//! `/dev/shm` (`nodev`: a device node a layer makes cannot reach a real device even if the
//! applier wrote through one), so everything in both is this process's own and after each input
//! both must be exactly as before, entry for entry: names, type, mode, owner, size, link count,
//! times (mtime and ctime: a chmod, chown, utime or xattr done through a link shows), content,
//! link target and xattrs. Only the root's contents are the applier's, and the scratch
//! directory's times, which creating and removing the root changes. Not root (a developer's
//! `apply` run), the host's /tmp and /dev/shm are shared with other processes and only the
//! scratch directory is watched.
//!
//! libFuzzer keeps reading and writing its corpus and artifacts under the working directory
//! (`fuzz/`) by path. A checkout under /tmp (CI's `git clone . /tmp/ci`) would vanish under the
//! fresh tmpfs, and libFuzzer would exit at its next corpus write; so that directory is bound
//! back at its place in the new /tmp, and left out of the comparison (it is libFuzzer's).

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const LAYER_SEP: &[u8] = b"--layerkit-fuzz-layer--";

struct Work {
    /// The scratch directory: the canary, and the root made anew for every input.
    dir: PathBuf,
    /// Where anything new or changed is looked for.
    watched: Vec<PathBuf>,
    /// libFuzzer's own directory, when it lies under a watched one.
    fuzzer: Option<PathBuf>,
    before: String,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A private mount namespace with fresh tmpfs mounts on /tmp and /dev/shm. The namespace is the
/// calling thread's (unshare(CLONE_NEWNS) unshares its fs context): libFuzzer runs every input
/// on the thread that first got here. Returns the working directory when it was under one of
/// them and is now bound back at its place.
fn private_tmp() -> Option<PathBuf> {
    fn check(what: &str, r: libc::c_int) {
        assert!(r == 0, "{what}: {}", std::io::Error::last_os_error());
    }
    let cwd = std::env::current_dir().expect("the working directory");
    let hidden = ["/tmp", "/dev/shm"].iter().any(|d| cwd.starts_with(d));
    let mut kept = None;
    // SAFETY: plain system calls on NUL-terminated constants; nothing in this process holds a
    // path under /tmp or /dev/shm open yet.
    unsafe {
        check("unshare(CLONE_NEWNS)", libc::unshare(libc::CLONE_NEWNS));
        let none = std::ptr::null();
        check(
            "making / private",
            libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()),
        );
        // Opened in the new namespace (a bind mount takes its source from the caller's own)
        // before the tmpfs hides it; bound back through /proc/self/fd after.
        if hidden {
            kept = Some(std::fs::File::open(&cwd).expect("opening the working directory"));
        }
        for dir in [c"/tmp", c"/dev/shm"] {
            check(
                "mounting a tmpfs",
                libc::mount(
                    c"layerkit-fuzz".as_ptr(),
                    dir.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NODEV | libc::MS_NOSUID,
                    c"mode=1777,size=1g".as_ptr().cast(),
                ),
            );
        }
    }
    let kept = kept?;
    std::fs::create_dir_all(&cwd).expect("the working directory's place in the new tmpfs");
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&kept)))
        .expect("a path without NUL");
    let to = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(cwd.as_os_str())).expect("a path without NUL");
    // SAFETY: a bind mount of two NUL-terminated paths; `kept` is open for the call.
    check("binding the working directory back", unsafe {
        libc::mount(from.as_ptr(), to.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null())
    });
    Some(cwd)
}

fn work(privileged: bool) -> &'static Work {
    static WORK: OnceLock<Work> = OnceLock::new();
    WORK.get_or_init(|| {
        let root = is_root();
        if privileged && !root {
            eprintln!("apply_root fuzzes chown, mknod and trusted.* xattrs: run it as root");
            std::process::exit(2);
        }
        let fuzzer = if root { private_tmp() } else { None };
        let dir = PathBuf::from(format!("/dev/shm/layerkit-fuzz-apply-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let canary = dir.join("canary");
        std::fs::create_dir_all(canary.join("sub")).expect("canary");
        std::fs::write(canary.join("file"), b"canary\n").expect("canary file");
        std::fs::write(canary.join("sub/file"), b"canary\n").expect("canary file");
        std::os::unix::fs::symlink("../canary/file", canary.join("link")).expect("canary link");
        std::fs::create_dir(dir.join("root")).expect("the root");
        let watched = if root {
            vec![PathBuf::from("/tmp"), PathBuf::from("/dev/shm")]
        } else {
            eprintln!("apply: not root, so /tmp and /dev/shm are shared: only {} is watched", dir.display());
            vec![dir.clone()]
        };
        let mut w = Work { dir, watched, fuzzer, before: String::new() };
        w.before = snapshot(&w);
        w
    })
}

/// Everything under the watched directories, one line an entry, except the root's own
/// metadata and contents (the layers').
fn snapshot(w: &Work) -> String {
    let root = w.dir.join("root");
    let mut out = String::new();
    let mut todo = w.watched.clone();
    while let Some(p) = todo.pop() {
        if p == root {
            let _ = writeln!(out, "{} (the root)", p.display());
            continue;
        }
        if w.fuzzer.as_ref() == Some(&p) {
            let _ = writeln!(out, "{} (libFuzzer's)", p.display());
            continue;
        }
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let _ = write!(
            out,
            "{} {:o} {}:{} {} {}",
            p.display(),
            md.mode(),
            md.uid(),
            md.gid(),
            md.len(),
            md.nlink()
        );
        if p != w.dir {
            let _ = write!(
                out,
                " m{}.{} c{}.{}",
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec()
            );
        }
        let mut names: Vec<_> = xattr::list(&p)
            .unwrap_or_else(|e| panic!("{}: listing xattrs: {e}", p.display()))
            .collect();
        names.sort();
        for n in names {
            let v = xattr::get(&p, &n).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let _ = write!(out, " {n:?}={v:?}");
        }
        if md.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .map(|e| e.expect("dirent").path())
                .collect();
            names.sort();
            todo.extend(names);
        } else if md.file_type().is_symlink() {
            let _ = write!(out, " -> {}", std::fs::read_link(&p).expect("readlink").display());
        } else if md.is_file() {
            let _ = write!(out, " {:?}", std::fs::read(&p).expect("read"));
        }
        out.push('\n');
    }
    out
}

fn split_layers(data: &[u8]) -> Vec<&[u8]> {
    let mut layers = Vec::new();
    let mut rest = data;
    while layers.len() < 3
        && let Some(i) = rest.windows(LAYER_SEP.len()).position(|w| w == LAYER_SEP)
    {
        layers.push(&rest[..i]);
        rest = &rest[i + LAYER_SEP.len()..];
    }
    layers.push(rest);
    layers
}

/// Applies the input's layers into the (empty) root, checks that nothing else changed, and
/// makes the root empty again.
pub fn run(data: &[u8], privileged: bool) {
    let w = work(privileged);
    let root = w.dir.join("root");
    let opts = common::apply::Options { rootless: !privileged, ..Default::default() };
    let layers = split_layers(data);
    if let Ok(mut applier) = common::apply::Applier::new(&root, opts) {
        let applied = layers.iter().try_for_each(|layer| applier.apply_layer(*layer));
        if applied.is_ok() && applier.finish().is_ok() {
            same_as_the_tree(&layers, &root);
        }
    }
    let after = snapshot(w);
    if after != w.before {
        let changed: Vec<_> = after.lines().filter(|l| !w.before.lines().any(|b| b == *l)).collect();
        let gone: Vec<_> = w.before.lines().filter(|l| !after.lines().any(|a| a == *l)).collect();
        panic!("written outside the root:\nnew or changed:\n{}\ngone:\n{}", changed.join("\n"), gone.join("\n"));
    }
    // Directories may have been left 0555: root removes them anyway.
    std::fs::remove_dir_all(&root).expect("removing the root");
    std::fs::create_dir(&root).expect("a fresh root");
}

/// The tree model's stack of `layers`, when it takes them, against what the applier left in
/// `root`: paths, types, file sizes, symlink targets.
fn same_as_the_tree(layers: &[&[u8]], root: &Path) {
    use common::entry::Kind;
    let Ok(tree) = common::tree::Tree::from_layers(layers.iter().map(|l| Ok(*l))) else { return };
    let mut devices = Vec::new();
    let mut stacked = Vec::new();
    for (p, n) in tree.iter() {
        let name = String::from_utf8_lossy(&p.0).into_owned();
        let what = match n.meta.kind {
            Kind::Dir => "dir".to_string(),
            Kind::File => format!("file {}", n.meta.size),
            Kind::Symlink => format!("symlink {}", String::from_utf8_lossy(n.meta.target().unwrap_or_default())),
            Kind::Fifo => "fifo".to_string(),
            Kind::Char | Kind::Block => {
                devices.push(name);
                continue;
            }
        };
        stacked.push((name, what));
    }
    let mut on_disk = Vec::new();
    list(root, root, &mut on_disk);
    on_disk.retain(|(name, what)| what != "device" && !devices.contains(name));
    stacked.sort();
    on_disk.sort();
    assert_eq!(stacked, on_disk, "the tree model and the applier disagree");
}

/// `dir` and everything beneath it, as [`same_as_the_tree`] compares them.
fn list(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let md = std::fs::symlink_metadata(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let name = String::from_utf8_lossy(dir.strip_prefix(root).expect("beneath the root").as_os_str().as_bytes()).into_owned();
    let ft = md.file_type();
    let what = if ft.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            list(root, &entry.expect("dirent").path(), out);
        }
        "dir".to_string()
    } else if ft.is_symlink() {
        let target = std::fs::read_link(dir).expect("readlink");
        format!("symlink {}", String::from_utf8_lossy(target.as_os_str().as_bytes()))
    } else if ft.is_file() {
        format!("file {}", md.len())
    } else if ft.is_fifo() {
        "fifo".to_string()
    } else {
        "device".to_string()
    };
    out.push((name, what));
}
