//! Reading a directory on disk into a [`Tree`], and the `--exclude` globs.

use super::{Node, Source, Tree};
use crate::entry::{Kind, Meta};
use crate::path::{TreePath, is_within, join};
use crate::whiteout;
use crate::xattrs;
use anyhow::{Context, bail};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Paths to leave out: globs matched against the absolute path inside the tree (`/var/cache/*`).
/// A matching path is left out with its whole subtree. `*` also matches `/`.
#[derive(Clone, Debug, Default)]
pub struct Exclude {
    patterns: Vec<glob::Pattern>,
}

impl Exclude {
    /// Compiles patterns. One without a leading `/` or `*` is anchored at the root (`tmp` is `/tmp`).
    pub fn new(patterns: &[String]) -> crate::Result<Exclude> {
        let patterns = patterns
            .iter()
            .map(|p| {
                let anchored = if p.starts_with('/') || p.starts_with('*') {
                    p.clone()
                } else {
                    format!("/{p}")
                };
                glob::Pattern::new(&anchored).with_context(|| format!("invalid --exclude pattern {p:?}"))
            })
            .collect::<crate::Result<_>>()?;
        Ok(Exclude { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when `path` (tree form, without the leading `/`) is excluded by itself.
    pub fn matches(&self, path: &[u8]) -> bool {
        if self.patterns.is_empty() || path.is_empty() {
            return false;
        }
        let mut abs = String::with_capacity(path.len() + 1);
        abs.push('/');
        abs.push_str(&String::from_utf8_lossy(path));
        self.patterns.iter().any(|p| p.matches(&abs))
    }
}

/// How [`Tree::from_dir`] reads a directory.
#[derive(Clone, Copy, Default)]
pub struct DirOptions<'a> {
    pub exclude: Option<&'a Exclude>,
    /// Keep `trusted.overlay.*` / `user.overlay.*` xattrs (to read an overlayfs upper dir);
    /// they are dropped otherwise, as overlay internals.
    pub keep_overlay_xattrs: bool,
    /// Called with a message for what is skipped (sockets). None: skipped silently.
    pub warn: Option<&'a (dyn Fn(&str) + Sync)>,
}

impl Tree {
    /// Removes excluded paths and their subtrees.
    pub fn exclude(&mut self, exclude: &Exclude) {
        if exclude.is_empty() {
            return;
        }
        let mut cut: Option<Vec<u8>> = None;
        self.nodes.retain(|p, _| {
            if let Some(c) = &cut
                && is_within(&p.0, c)
            {
                return false;
            }
            if exclude.matches(&p.0) {
                cut = Some(p.0.to_vec());
                return false;
            }
            true
        });
    }

    /// Reads a directory: an lstat walk (symlinks are never followed), xattrs included
    /// (`security.selinux` and `system.nfs4_acl` are the host's, left out). Sockets are skipped
    /// with a warning. A name starting with `.wh.` is refused: a layer cannot carry it.
    /// Subdirectories are read in parallel (rayon).
    pub fn from_dir(root: &Path, opts: &DirOptions) -> crate::Result<Tree> {
        let md = fs::symlink_metadata(root).with_context(|| format!("{}", root.display()))?;
        if !md.is_dir() {
            bail!("{}: not a directory", root.display());
        }
        let root_node = node_from_fs(root, &md, opts)?;
        let mut nodes = BTreeMap::new();
        for (p, n) in walk(root, opts)? {
            nodes.insert(TreePath::from(p), Box::new(n));
        }
        nodes.insert(TreePath::from(Vec::new()), Box::new(root_node));
        Ok(Tree {
            nodes,
            next_ino: 1,
            layers: 0,
            compacted: 0,
        })
    }
}

/// Reads the tree beneath `root` level by level, each level's directories in parallel. No
/// recursion: 10,000 nested directories overflowed the stack of a recursive walk.
fn walk(root: &Path, opts: &DirOptions) -> crate::Result<Vec<(Vec<u8>, Node)>> {
    let mut out = Vec::new();
    let mut level = vec![(root.to_path_buf(), Vec::new())];
    while !level.is_empty() {
        let read: Vec<DirListing> = level
            .par_iter()
            .map(|(path, rel)| read_one_dir(path, rel, opts))
            .collect::<crate::Result<_>>()?;
        level = Vec::new();
        for (entries, subdirs) in read {
            out.extend(entries);
            level.extend(subdirs);
        }
    }
    Ok(out)
}

/// One directory's entries, and its subdirectories (path on disk, path in the tree).
type DirListing = (Vec<(Vec<u8>, Node)>, Vec<(std::path::PathBuf, Vec<u8>)>);

fn read_one_dir(dir: &Path, rel: &[u8], opts: &DirOptions) -> crate::Result<DirListing> {
    let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)
        .with_context(|| format!("{}: reading directory", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: reading directory", dir.display()))?;
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    let mut subdirs = Vec::new();
    for name in names {
        let name_bytes = name.as_bytes();
        let path = dir.join(&name);
        let child = join(rel, name_bytes);
        // The kernel refuses a path this long (ENAMETOOLONG) with a message quoting all of it;
        // say so in one short line instead.
        let longest = child.len().max(path.as_os_str().len());
        if longest >= crate::path::MAX_PATH {
            let head: String = path.display().to_string().chars().take(64).collect();
            bail!(
                "{head}…: a path of {longest} bytes, too long for PATH_MAX ({}); a layer cannot carry it",
                crate::path::MAX_PATH
            );
        }
        if opts.exclude.is_some_and(|x| x.matches(&child)) {
            continue;
        }
        if whiteout::is_reserved(name_bytes) {
            bail!(
                "{}: names starting with .wh. cannot be represented in a layer (they are OCI whiteouts)",
                path.display()
            );
        }
        let md = fs::symlink_metadata(&path).with_context(|| format!("{}", path.display()))?;
        if md.file_type().is_socket() {
            if let Some(w) = opts.warn {
                w(&format!(
                    "{}: skipping a socket (layers cannot carry one)",
                    path.display()
                ));
            }
            continue;
        }
        let node = node_from_fs(&path, &md, opts)?;
        if md.is_dir() {
            subdirs.push((path, child.clone()));
        }
        out.push((child, node));
    }
    Ok((out, subdirs))
}

fn node_from_fs(path: &Path, md: &fs::Metadata, opts: &DirOptions) -> crate::Result<Node> {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        bail!("{}: unsupported file type", path.display());
    };
    let mut meta = Meta::new(kind, md.mode() & 0o7777);
    meta.uid = md.uid();
    meta.gid = md.gid();
    meta.mtime = md.mtime();
    meta.mtime_nsec = md.mtime_nsec() as u32;
    match kind {
        Kind::File => meta.size = md.len(),
        Kind::Symlink => {
            let target = fs::read_link(path).with_context(|| format!("{}: readlink", path.display()))?;
            let target = target.as_os_str().as_bytes().to_vec();
            meta.size = target.len() as u64;
            meta.set_target(Some(target));
        }
        Kind::Char | Kind::Block => {
            let rdev = md.rdev();
            meta.rdev = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        }
        _ => {}
    }
    meta.set_xattrs(
        xattrs::read(path, opts.keep_overlay_xattrs)
            .map_err(std::io::Error::from)
            .with_context(|| format!("{}: reading xattrs", path.display()))?,
    );
    let ino = if kind != Kind::Dir && md.nlink() > 1 {
        // Unique within one file system; the device is mixed in for trees spanning mounts.
        (md.ino() ^ md.dev().rotate_left(40)).max(1)
    } else {
        0
    };
    Ok(Node {
        meta,
        ino,
        source: Source::Fs(path.into()),
        written: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::path_cmp;
    use crate::tree::tests::{layer, paths, stack};

    #[test]
    fn reads_a_directory_and_refuses_whiteout_names() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a/b")).unwrap();
        fs::write(d.path().join("a/f"), b"x").unwrap();
        fs::hard_link(d.path().join("a/f"), d.path().join("a/b/g")).unwrap();
        std::os::unix::fs::symlink("f", d.path().join("a/s")).unwrap();
        let t = Tree::from_dir(d.path(), &DirOptions::default()).unwrap();
        assert_eq!(paths(&t), ["", "a", "a/b", "a/b/g", "a/f", "a/s"]);
        let (f, g) = (t.get(b"a/f").unwrap(), t.get(b"a/b/g").unwrap());
        assert!(f.ino != 0 && f.ino == g.ino);
        assert_eq!(t.get(b"a/s").unwrap().meta.target(), Some(&b"f"[..]));
        let ex = Exclude::new(&["/a/b".into()]).unwrap();
        let opts = DirOptions {
            exclude: Some(&ex),
            ..Default::default()
        };
        assert_eq!(
            paths(&Tree::from_dir(d.path(), &opts).unwrap()),
            ["", "a", "a/f", "a/s"]
        );
        fs::write(d.path().join("a/.wh.x"), b"").unwrap();
        assert!(Tree::from_dir(d.path(), &DirOptions::default()).is_err());
        assert!(Tree::from_dir(&d.path().join("a/f"), &DirOptions::default()).is_err());
    }

    #[test]
    fn exclude_cuts_subtrees() {
        let mut t = stack(&[layer(&[("a/b/c", "f"), ("a/bc", "f"), ("x.pyc", "f")])]);
        t.exclude(&Exclude::new(&["a/b".into(), "*.pyc".into()]).unwrap());
        assert_eq!(paths(&t), ["", "a", "a/bc"]);
        assert!(path_cmp(b"a", b"a/b").is_lt());
    }
}
