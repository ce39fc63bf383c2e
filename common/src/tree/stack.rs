//! The stacking rules: layers applied to a [`Tree`] as the image-spec applies changesets, on
//! the tar headers alone (see the rules in the module doc of [`crate::tree`]).

use super::{Node, Source, Tree, implied_dir};
use crate::entry::{Entry, Kind};
use crate::layout::{Image, Layout};
use crate::path::{TreePath, basename, display, join, parent};
use crate::tarread::Content;
use crate::whiteout::{self, Whiteout};
use anyhow::{Context, bail};
use std::collections::HashSet;
use std::io::Read;

/// Sees each regular file of an image as its layer streams by: (layer, entry index, entry, content).
pub type ImageFileVisitor<'a> = dyn FnMut(usize, u64, &Entry, &mut Content<'_>) -> crate::Result<()> + 'a;

impl Tree {
    /// The file system a single tar describes, applied to an empty tree.
    pub fn from_tar(reader: impl Read) -> crate::Result<Tree> {
        let mut t = Tree::new();
        t.apply_layer(0, reader)?;
        Ok(t)
    }

    /// The stacked view of layers, bottom first. Each item is one layer's uncompressed tar.
    pub fn from_layers<R: Read>(layers: impl IntoIterator<Item = crate::Result<R>>) -> crate::Result<Tree> {
        let mut t = Tree::new();
        for (i, r) in layers.into_iter().enumerate() {
            t.apply_layer(i, r?).with_context(|| format!("layer {}", i + 1))?;
        }
        Ok(t)
    }

    /// The stacked view of an image's layers, each read and verified (blob digest, and the
    /// config's diffID when it lists one) from `layout`.
    pub fn from_image(layout: &Layout, image: &Image) -> crate::Result<Tree> {
        Self::from_image_with(layout, image, &mut |_, _, _, _| Ok(()))
    }

    /// [`Tree::from_image`], also handing each regular file's content (layer, entry index,
    /// entry, reader) to `on_file` as it streams by, e.g. to hash it.
    pub fn from_image_with(
        layout: &Layout,
        image: &Image,
        on_file: &mut ImageFileVisitor,
    ) -> crate::Result<Tree> {
        let diff_ids = image_diff_ids(layout, image)?;
        let mut t = Tree::new();
        for (i, desc) in image.manifest.layers.iter().enumerate() {
            let mut stream = crate::layer::LayerStream::open(layout, desc, diff_ids.get(i))?;
            t.apply_layer_with(i, &mut stream, &mut |idx, e, r| on_file(i, idx, e, r))
                .with_context(|| format!("layer {}", desc.digest))?;
            stream.finish()?;
        }
        Ok(t)
    }

    /// Applies one layer's tar (headers only) on top of this tree.
    pub fn apply_layer(&mut self, layer: usize, reader: impl Read) -> crate::Result<()> {
        self.apply_layer_with(layer, reader, &mut |_, _, _| Ok(()))
    }

    /// [`Tree::apply_layer`], handing each regular file's content to `on_file` (entry index,
    /// entry, reader) as it streams by.
    pub fn apply_layer_with(
        &mut self,
        layer: usize,
        reader: impl Read,
        on_file: &mut dyn FnMut(u64, &Entry, &mut Content<'_>) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let layer = u32::try_from(layer).context("too many layers")?;
        // Nodes this layer writes carry its number: whiteouts of the same layer never hide them.
        self.layers += 1;
        crate::tarread::for_each_entry(reader, |index, e, content| {
            match whiteout::classify(&e.path)? {
                Whiteout::Remove(p) => {
                    let p = self.resolve_parent(&p)?;
                    self.hide_lower(&p, true);
                }
                Whiteout::Opaque(d) => {
                    let d = self.resolve_parent(&d)?;
                    self.hide_lower(&d, false);
                }
                Whiteout::None => {
                    if e.meta.kind == Kind::File && e.link.is_none() && e.meta.size > 0 {
                        on_file(index, &e, content)?;
                    }
                    self.add_entry(layer, index, e)?;
                }
            }
            Ok(())
        })
    }

    fn add_entry(&mut self, layer: u32, index: u64, e: Entry) -> crate::Result<()> {
        let written = self.layers;
        if e.path.is_empty() {
            if e.meta.kind != Kind::Dir || e.link.is_some() {
                bail!("the root can only be a directory");
            }
            let root = self
                .nodes
                .entry(TreePath::from(Vec::new()))
                .or_insert_with(|| Box::new(implied_dir()));
            root.meta = e.meta;
            root.source = Source::Layer { layer, index };
            return Ok(());
        }
        let path = self.resolve_parent(&e.path)?;
        self.make_parents(&path)?;
        let node = match &e.link {
            Some(target) => {
                let target = self.resolve_parent(target)?;
                let Some(t) = self.nodes.get_mut(&TreePath::from(target.clone())) else {
                    bail!("hard link to {}, which does not exist", display(&target));
                };
                if t.meta.kind == Kind::Dir {
                    bail!("hard link to directory {}", display(&target));
                }
                if t.ino == 0 {
                    t.ino = self.next_ino;
                    self.next_ino += 1;
                }
                Box::new(Node {
                    written,
                    ..(**t).clone()
                })
            }
            None => Box::new(Node {
                meta: e.meta,
                ino: 0,
                source: Source::Layer { layer, index },
                written,
            }),
        };
        let key = TreePath::from(path);
        match self.nodes.get_mut(&key) {
            Some(old) if old.meta.kind == Kind::Dir && node.meta.kind == Kind::Dir => {
                old.meta = node.meta;
                old.source = node.source;
                old.written = written;
            }
            Some(old) if old.meta.kind == Kind::Dir => {
                self.remove_subtree(&key.0);
                self.nodes.insert(key, node);
            }
            _ => {
                self.nodes.insert(key, node);
            }
        }
        self.compact();
        Ok(())
    }

    /// Rebuilds the map when it has grown by a quarter since the last rebuild. Layers list
    /// their entries in path order, and a B-tree filled in order leaves every leaf half empty;
    /// `append` rebuilds it from the sorted entries into full leaves, freeing the old ones as
    /// it goes. Amortized, five more passes over the map (a few milliseconds per 100,000
    /// paths) for a quarter less memory.
    fn compact(&mut self) {
        let len = self.nodes.len();
        if len < 1 << 12 || len < self.compacted + self.compacted / 4 {
            return;
        }
        self.compacted = len;
        if let Some(last) = self.nodes.keys().next_back().cloned() {
            let mut tail = self.nodes.split_off(&last);
            self.nodes.append(&mut tail);
        }
    }

    /// Creates the missing ancestors of `path` as implied directories.
    fn make_parents(&mut self, path: &[u8]) -> crate::Result<()> {
        let mut missing = Vec::new();
        let mut p = parent(path);
        while !p.is_empty() {
            match self.nodes.get(&TreePath::from(p.to_vec())) {
                Some(n) if n.meta.kind == Kind::Dir => break,
                Some(_) => bail!("{}: parent {} is not a directory", display(path), display(p)),
                None => missing.push(p.to_vec()),
            }
            p = parent(p);
        }
        for m in missing {
            let node = Node {
                written: self.layers,
                ..implied_dir()
            };
            self.nodes.insert(TreePath::from(m), Box::new(node));
        }
        Ok(())
    }

    /// Removes the subtree of `dir` (not `dir` itself).
    fn remove_subtree(&mut self, dir: &[u8]) {
        let doomed: Vec<TreePath> = self.subtree(dir).map(|(p, _)| p.clone()).collect();
        for p in doomed {
            self.nodes.remove(&p);
        }
    }

    /// Hides what lower layers put at `path` (with `itself`) and beneath it. What this layer
    /// wrote stays, and so do the ancestors it needs.
    fn hide_lower(&mut self, path: &[u8], itself: bool) {
        if path.is_empty() && itself {
            return;
        }
        let key = TreePath::from(path.to_vec());
        let mut candidates: Vec<(TreePath, bool)> = self
            .subtree(path)
            .map(|(p, n)| (p.clone(), n.written == self.layers))
            .collect();
        if itself && let Some(n) = self.nodes.get(&key) {
            let written = n.written == self.layers;
            candidates.insert(0, (key, written));
        }
        // Deepest first, so a kept node can keep its ancestors.
        let mut needed: HashSet<Vec<u8>> = HashSet::new();
        for (p, written) in candidates.into_iter().rev() {
            if written || needed.contains(&*p.0) {
                needed.insert(parent(&p.0).to_vec());
            } else {
                self.nodes.remove(&p);
            }
        }
    }

    /// `path` with its parent directories resolved inside the tree: symlinks among them are
    /// followed (absolute ones from the tree's root), `..` stops at the root.
    pub fn resolve_parent(&self, path: &[u8]) -> crate::Result<Vec<u8>> {
        let dir = parent(path);
        if dir.is_empty() {
            return Ok(path.to_vec());
        }
        // Every node's ancestors are directories in the tree (entries go in beneath resolved,
        // existing directories; a directory replaced drops its subtree), so a parent that is a
        // directory node needs no walk. The walk costs a lookup per component, each comparing
        // keys as long as the path: without this, 2,000 nested directories took minutes.
        if !dir
            .split(|b| *b == b'/')
            .any(|c| c == b".." || c == b"." || c.is_empty())
            && self
                .nodes
                .get(&TreePath::from(dir.to_vec()))
                .is_some_and(|n| n.meta.kind == Kind::Dir)
        {
            return Ok(path.to_vec());
        }
        let mut resolved: Vec<u8> = Vec::new();
        let mut pending: Vec<Vec<u8>> = dir.split(|b| *b == b'/').rev().map(<[u8]>::to_vec).collect();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    resolved = parent(&resolved).to_vec();
                    continue;
                }
                _ => {}
            }
            let next = join(&resolved, &c);
            match self.nodes.get(&TreePath::from(next.clone())) {
                Some(n) if n.meta.kind == Kind::Symlink => {
                    hops += 1;
                    if hops > 40 {
                        bail!("{}: too many levels of symbolic links", display(path));
                    }
                    let target = n.meta.target().unwrap_or_default();
                    if target.starts_with(b"/") {
                        resolved.clear();
                    }
                    pending.extend(target.split(|b| *b == b'/').rev().map(<[u8]>::to_vec));
                }
                _ => resolved = next,
            }
        }
        Ok(join(&resolved, basename(path)))
    }
}

/// The config's `rootfs.diff_ids`, when it has them (checked against the layers as read).
fn image_diff_ids(layout: &Layout, image: &Image) -> crate::Result<Vec<crate::digest::Digest>> {
    let config: serde_json::Value = layout.read_json(&image.manifest.config)?;
    let Some(ids) = config.pointer("/rootfs/diff_ids").and_then(|v| v.as_array()) else {
        return Ok(Vec::new());
    };
    ids.iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_default()
                .parse()
                .with_context(|| format!("config {}: rootfs.diff_ids", image.manifest.config.digest))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::{layer, paths, stack};

    #[test]
    fn whiteouts_hide_only_lower_layers() {
        let l1 = layer(&[("a", "d"), ("a/x", "f"), ("b", "f"), ("c", "f")]);
        // The whiteout of b comes after b in the same layer, the one of c before c: both survive.
        let l2 = layer(&[
            ("b", "f"),
            (".wh.b", "w"),
            (".wh.c", "w"),
            ("c", "f"),
            ("a/.wh.x", "w"),
        ]);
        let t = stack(&[l1, l2]);
        assert_eq!(paths(&t), ["", "a", "b", "c"]);
        assert_eq!(t.get(b"b").unwrap().source, Source::Layer { layer: 1, index: 0 });
    }

    #[test]
    fn opaque_applies_first_wherever_it_is() {
        let l1 = layer(&[("d", "d"), ("d/old", "f"), ("d/sub", "d"), ("d/sub/x", "f")]);
        let l2 = layer(&[("d/new", "f"), ("d/.wh..wh..opq", "w"), ("d/sub/y", "f")]);
        let t = stack(&[l1, l2]);
        assert_eq!(paths(&t), ["", "d", "d/new", "d/sub", "d/sub/y"]);
    }

    #[test]
    fn file_over_dir_drops_subtree_and_parents_are_implied() {
        let l1 = layer(&[("a/b/c", "f"), ("a/b/d", "f")]);
        let l2 = layer(&[("a/b", "f")]);
        let t = stack(&[l1, l2]);
        assert_eq!(paths(&t), ["", "a", "a/b"]);
        assert_eq!(t.get(b"a").unwrap().meta.mode, 0o755);
        assert_eq!(t.get(b"a").unwrap().source, Source::None);
    }

    #[test]
    fn hard_links_keep_the_target_as_it_was() {
        let l1 = layer(&[("t", "f"), ("h", "l:t")]);
        let l2 = layer(&[("t", "d")]);
        let t = stack(&[l1, l2]);
        let h = t.get(b"h").unwrap();
        assert_eq!(h.source, Source::Layer { layer: 0, index: 0 });
        assert_ne!(h.ino, 0);
        assert_eq!(t.get(b"t").unwrap().meta.kind, Kind::Dir);
        assert!(Tree::from_tar(&layer(&[("h", "l:missing")])[..]).is_err());
        assert!(Tree::from_tar(&layer(&[("d", "d"), ("h", "l:d")])[..]).is_err());
    }

    #[test]
    fn symlinked_parents_resolve_inside_the_tree() {
        let l1 = layer(&[("usr/lib", "d"), ("lib", "s:/usr/lib"), ("up", "s:../../usr")]);
        let l2 = layer(&[("lib/x", "f"), ("up/y", "f"), ("lib/.wh.x", "w")]);
        let t = stack(&[l1, l2]);
        assert_eq!(
            paths(&t),
            ["", "lib", "up", "usr", "usr/lib", "usr/lib/x", "usr/y"]
        );
        let loop_ = layer(&[("a", "s:b"), ("b", "s:a"), ("a/x", "f")]);
        assert!(format!("{:#}", Tree::from_tar(&loop_[..]).unwrap_err()).contains("levels"));
    }
}
