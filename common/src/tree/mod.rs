//! The in-memory view of a file system: one [`Node`] per path, in [`crate::path::path_cmp`] order.
//!
//! A tree comes from a directory on disk ([`Tree::from_dir`], an lstat walk that never follows
//! symlinks), from one tar ([`Tree::from_tar`]) or from a stack of layers ([`Tree::from_layers`],
//! [`Tree::from_image_with`]): the image-spec's apply rules played on the tar *headers* alone, so no
//! byte of file content is extracted. A node records where its content lives ([`Source`]) so
//! that a writer can fetch it later (see `changeset` and `content`).
//!
//! Stacking rules (image-spec layer.md, and umoci where the spec is silent):
//! - a whiteout hides only what lower layers put there: a path the same layer writes survives,
//!   in whatever order the two entries come; an opaque marker likewise applies "first"; and
//!   neither acts through a symlink its own layer made (beneath it nothing lower is left);
//! - a non-directory replacing a directory drops the directory's subtree; a directory over a
//!   directory only replaces its attributes;
//! - missing parents are implied (mode 0755, root-owned, time 0);
//! - parent components that are symlinks resolve inside the tree, as if it were `/`
//!   (`lib -> usr/lib` then `lib/x` lands at `usr/lib/x`), as docker and umoci apply layers;
//! - a parent component that does not resolve to a directory (a file, a dangling symlink, a
//!   symlink to a file) is replaced by an implied directory, as docker's overlay2 store and
//!   umoci 0.5 show such a layer, and as `apply` does on disk;
//! - a hard link takes its target's node as it is at that moment (same `ino`, same `source`),
//!   so a later overwrite of the target leaves the link's content alone.
//!
//! `stack.rs` holds the stacking rules, `walk.rs` the directory walker.

mod stack;
mod walk;

pub use stack::{How, ImageFileVisitor, Observer};
pub use walk::{DirOptions, Exclude};

use crate::entry::{Kind, Meta};
use crate::path::{TreePath, display, is_within, join, parent};
use anyhow::bail;
use std::collections::{BTreeMap, btree_map};
use std::ops::Bound;
use std::path::Path;

/// A file system view: every path (the root is the empty path) and its node.
#[derive(Clone, Debug)]
pub struct Tree {
    /// Boxed: with ordered inserts a B-tree leaf stays about half full, so its empty slots
    /// cost a pointer each rather than a whole node (the tree of a million paths is the
    /// largest thing any tool holds).
    ///
    /// Private: the stacking relies on every node's ancestors being directories of the tree
    /// (see `Tree::resolve_parent`), and only this module's methods keep that so.
    nodes: BTreeMap<TreePath, Box<Node>>,
    /// Next hard-link group id handed out while stacking layers.
    next_ino: u64,
    /// Counts the layers applied: the nodes a layer writes carry its number in `written`.
    layers: u32,
    /// The size of `nodes` when it was last rebuilt (see [`Tree::compact`]).
    compacted: usize,
}

/// Nodes that left a tree (replaced, removed, hidden), with their paths, in path order.
pub type Gone = Vec<(TreePath, Box<Node>)>;

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub meta: Meta,
    /// Hard-link group: non-directories with the same nonzero `ino` are one inode. 0 = not
    /// linked. The values mean nothing across trees; only equality within one tree counts.
    pub ino: u64,
    pub source: Source,
    /// The number of the layer application that last wrote this node (see [`Tree::layers`]),
    /// 0 for a node no layer wrote: a whiteout of the same layer spares it.
    pub written: u32,
}

/// Where a node's content can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// No content to read (implied directories, or a tree built by hand).
    None,
    /// A file on disk (the absolute or caller-relative path that was walked).
    Fs(Box<Path>),
    /// Entry number `index` (counted as [`crate::tarread::for_each_entry`] counts) of layer
    /// number `layer` (counted from the bottom of the stack, from 0).
    Layer { layer: u32, index: u64 },
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// An empty file system: only the root directory (0755, root-owned, time 0).
    pub fn new() -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(TreePath::from(Vec::new()), Box::new(implied_dir()));
        Tree {
            nodes,
            next_ino: 1,
            layers: 0,
            compacted: 0,
        }
    }

    pub fn get(&self, path: &[u8]) -> Option<&Node> {
        self.nodes.get(&TreePath::from(path.to_vec())).map(|n| &**n)
    }

    /// Every node, the root first, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&TreePath, &Node)> {
        self.nodes.iter().map(|(p, n)| (p, &**n))
    }

    /// The nodes, moved out in path order (parents before their subtree).
    pub fn into_nodes(self) -> impl Iterator<Item = (TreePath, Node)> {
        self.nodes.into_iter().map(|(p, n)| (p, *n))
    }

    /// Puts `node` at `path`, whose parent must be a directory of the tree (the root can only
    /// be a directory). What was at `path` goes, with its subtree unless both are directories.
    pub fn insert(&mut self, path: Vec<u8>, node: Node) -> crate::Result<()> {
        if path.is_empty() {
            if node.meta.kind != Kind::Dir {
                bail!("the root can only be a directory");
            }
        } else if !self.get(parent(&path)).is_some_and(|n| n.meta.kind == Kind::Dir) {
            bail!(
                "{}: parent {} is not a directory of the tree",
                display(&path),
                display(parent(&path))
            );
        }
        self.put(TreePath::from(path), Box::new(node));
        Ok(())
    }

    /// Puts `node` at `path`, whose parent is a directory. Returns what went: the node that was
    /// there and its subtree, unless both are directories (the entry over a directory then only
    /// replaces its attributes, and the children stay).
    fn put(&mut self, path: TreePath, node: Box<Node>) -> Gone {
        let dir = node.meta.kind == Kind::Dir;
        let mut gone = if dir {
            Vec::new()
        } else {
            self.remove_subtree(&path.0)
        };
        match self.nodes.entry(path) {
            btree_map::Entry::Occupied(mut there) => {
                let old = std::mem::replace(there.get_mut(), node);
                if !(dir && old.meta.kind == Kind::Dir) {
                    gone.insert(0, (there.key().clone(), old));
                }
            }
            btree_map::Entry::Vacant(free) => {
                free.insert(node);
            }
        }
        gone
    }

    /// Removes `path` with its subtree (the root stays: only its subtree goes). Returns what
    /// was removed, in path order.
    pub fn remove(&mut self, path: &[u8]) -> Gone {
        let mut gone = Vec::new();
        if !path.is_empty()
            && let Some(n) = self.nodes.remove(&TreePath::from(path.to_vec()))
        {
            gone.push((TreePath::from(path.to_vec()), n));
        }
        gone.extend(self.remove_subtree(path));
        gone
    }

    /// Removes the nodes strictly beneath `dir`. Returns them in path order.
    pub fn remove_subtree(&mut self, dir: &[u8]) -> Gone {
        let doomed: Vec<TreePath> = self.subtree(dir).map(|(p, _)| p.clone()).collect();
        doomed
            .into_iter()
            .filter_map(|p| self.nodes.remove(&p).map(|n| (p, n)))
            .collect()
    }

    /// Replaces what lies beneath directory `dir` with a copy of what lies beneath `from_dir`
    /// in `from` (a directory moved or copied from another tree).
    pub fn graft(&mut self, dir: &[u8], from: &Tree, from_dir: &[u8]) -> crate::Result<()> {
        if !self.get(dir).is_some_and(|n| n.meta.kind == Kind::Dir) {
            bail!("{}: not a directory of the tree", display(dir));
        }
        self.remove_subtree(dir);
        let cut = if from_dir.is_empty() {
            0
        } else {
            from_dir.len() + 1
        };
        for (q, n) in from.subtree(from_dir) {
            self.nodes
                .insert(TreePath::from(join(dir, &q.0[cut..])), Box::new(n.clone()));
        }
        Ok(())
    }

    /// Keeps, on every node, only the xattrs whose names `keep` accepts.
    pub fn retain_xattrs(&mut self, keep: impl Fn(&[u8]) -> bool) {
        for n in self.nodes.values_mut() {
            n.meta.retain_xattrs(&keep);
        }
    }

    /// The nodes strictly beneath `dir`, in order (for the root: every node but the root).
    pub fn subtree<'a>(&'a self, dir: &'a [u8]) -> impl Iterator<Item = (&'a TreePath, &'a Node)> + 'a {
        self.nodes
            .range((Bound::Excluded(TreePath::from(dir.to_vec())), Bound::Unbounded))
            .take_while(move |(p, _)| is_within(&p.0, dir))
            .map(|(p, n)| (p, &**n))
    }
}

fn implied_dir() -> Node {
    Node {
        meta: Meta::new(Kind::Dir, 0o755),
        ino: 0,
        source: Source::None,
        written: 0,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Helpers for the tests of the submodules (and of `changeset`).
    use super::*;
    use crate::tarwrite::TarWriter;

    pub(crate) fn file(size: u64) -> Meta {
        let mut m = Meta::new(Kind::File, 0o644);
        m.size = size;
        m
    }

    /// A layer tar from (path, kind) pairs: "f" file with content, "f:TEXT" file holding TEXT,
    /// "d" dir, "w" whiteout,
    /// "l:TARGET" hard link, "s:TARGET" symlink.
    pub(crate) fn layer(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut w = TarWriter::with_clamp(Vec::new(), None);
        for (p, k) in entries {
            let p = p.as_bytes();
            match *k {
                "f" => w.entry(p, &file(2), Some(&mut &b"hi"[..])).unwrap(),
                k if k.starts_with("f:") => {
                    let content = &k.as_bytes()[2..];
                    w.entry(p, &file(content.len() as u64), Some(&mut &content[..]))
                        .unwrap()
                }
                "d" => w.entry(p, &Meta::new(Kind::Dir, 0o700), None).unwrap(),
                "w" => w.whiteout(p).unwrap(),
                k if k.starts_with("l:") => w.hardlink(p, &k.as_bytes()[2..], &file(0)).unwrap(),
                k if k.starts_with("s:") => {
                    let mut m = Meta::new(Kind::Symlink, 0o777);
                    m.set_target(Some(k.as_bytes()[2..].to_vec()));
                    w.entry(p, &m, None).unwrap()
                }
                _ => unreachable!(),
            }
        }
        w.finish().unwrap()
    }

    pub(crate) fn paths(t: &Tree) -> Vec<String> {
        t.iter()
            .map(|(p, _)| String::from_utf8_lossy(&p.0).into_owned())
            .collect()
    }

    pub(crate) fn stack(layers: &[Vec<u8>]) -> Tree {
        Tree::from_layers(layers.iter().map(|l| Ok(&l[..]))).unwrap()
    }
}
