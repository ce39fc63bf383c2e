//! The stacking rules: layers applied to a [`Tree`] as the image-spec applies changesets, on
//! the tar headers alone (see the rules in the module doc of [`crate::tree`]). `apply` is the
//! on-disk version of the same rules; an [`Observer`] sees them at work.

use super::{Gone, Node, Source, Tree, implied_dir};
use crate::entry::{Entry, Kind};
use crate::layout::Layout;
use crate::manifest::Image;
use crate::path::{MAX_SYMLINKS, TreePath, basename, display, join, parent};
use crate::tarread::Content;
use crate::whiteout::{self, Whiteout};
use anyhow::{Context, bail};
use serde::Serialize;
use std::collections::HashSet;
use std::io::Read;

/// Sees each regular file of an image as its layer streams by: (layer, entry index, entry, content).
pub type ImageFileVisitor<'a> = dyn FnMut(usize, u64, &Entry, &mut Content<'_>) -> crate::Result<()> + 'a;

/// Why a node left the tree while a layer was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// A whiteout removes it or one of its parent directories.
    Removed,
    /// An opaque marker hides the directory's lower contents.
    Hidden,
    /// The path (or a parent turned into a non-directory) is written again.
    Replaced,
}

/// Sees a layer being applied ([`Tree::apply_layer_observed`]). Every method does nothing
/// unless implemented.
pub trait Observer {
    /// An entry of the layer is read, whatever it is (whiteouts and hard links included),
    /// before it is applied.
    fn entry(&mut self, _entry: &Entry) {}

    /// A regular file with content streams by (entry index, entry, content); hard links do not.
    fn file(&mut self, _index: u64, _entry: &Entry, _content: &mut Content<'_>) -> crate::Result<()> {
        Ok(())
    }

    /// The layer puts `node` at `path` (its parents resolved).
    fn added(&mut self, _path: &[u8], _node: &Node) {}

    /// `node` left the tree from `path` while the layer was applied. Called once the layer is
    /// read, with `how` as the image-spec orders a layer whatever the order of its entries:
    /// opaque markers first, then whiteouts, then entries (a lower file that the layer both
    /// whites out and writes again is `Removed`).
    fn masked(&mut self, _path: &[u8], _node: &Node, _how: How) {}
}

/// Hands regular files' content to a function ([`Tree::apply_layer_with`]).
struct OnFile<'a>(&'a mut dyn FnMut(u64, &Entry, &mut Content<'_>) -> crate::Result<()>);

impl Observer for OnFile<'_> {
    fn file(&mut self, index: u64, entry: &Entry, content: &mut Content<'_>) -> crate::Result<()> {
        (self.0)(index, entry, content)
    }
}

/// What one layer masks, kept (when observed) until the layer's end to be classified.
struct Masks {
    keep: bool,
    gone: Vec<(TreePath, Box<Node>, How)>,
    /// The layer's whiteout targets and opaque directories, resolved.
    removed: HashSet<Vec<u8>>,
    hidden: HashSet<Vec<u8>>,
}

impl Masks {
    /// Keeps what went, and (for a whiteout or opaque marker) the path it named.
    fn add(&mut self, gone: Gone, how: How, named: Option<Vec<u8>>) {
        if !self.keep {
            return;
        }
        self.gone.extend(gone.into_iter().map(|(p, n)| (p, n, how)));
        if let Some(path) = named {
            match how {
                How::Removed => self.removed.insert(path),
                How::Hidden => self.hidden.insert(path),
                How::Replaced => false,
            };
        }
    }

    /// How a lower node at `path` left, in the spec's order: beneath an opaque directory of
    /// the layer it is hidden, else at or beneath a whiteout target removed, else `how`.
    fn classify(&self, path: &[u8], how: How) -> How {
        let ancestors = || std::iter::successors(Some(path), |p| (!p.is_empty()).then(|| parent(p)));
        if ancestors().skip(1).any(|a| self.hidden.contains(a)) {
            How::Hidden
        } else if ancestors().any(|a| self.removed.contains(a)) {
            How::Removed
        } else {
            how
        }
    }
}

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
    /// config's diffID when it lists one) from `layout`, handing each regular file's content
    /// (layer, entry index, entry, reader) to `on_file` as it streams by, e.g. to hash it.
    pub fn from_image_with(
        layout: &Layout,
        image: &Image,
        on_file: &mut ImageFileVisitor,
    ) -> crate::Result<Tree> {
        let config = layout.read_config(&image.manifest.config)?;
        let diff_ids = config.diff_ids();
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
        self.stack_layer(layer, reader, &mut OnFile(on_file), false)
    }

    /// [`Tree::apply_layer`], telling `observer` what the layer adds and masks.
    pub fn apply_layer_observed(
        &mut self,
        layer: usize,
        reader: impl Read,
        observer: &mut dyn Observer,
    ) -> crate::Result<()> {
        self.stack_layer(layer, reader, observer, true)
    }

    fn stack_layer(
        &mut self,
        layer: usize,
        reader: impl Read,
        observer: &mut dyn Observer,
        keep_masks: bool,
    ) -> crate::Result<()> {
        let layer = u32::try_from(layer).context("too many layers")?;
        // Nodes this layer writes carry its number: whiteouts of the same layer never hide them.
        self.layers += 1;
        let mut masks = Masks {
            keep: keep_masks,
            gone: Vec::new(),
            removed: HashSet::new(),
            hidden: HashSet::new(),
        };
        crate::tarread::for_each_entry(reader, |index, e, content| {
            observer.entry(&e);
            match whiteout::classify(&e.path)? {
                Whiteout::Remove(p) => {
                    if let Some(p) = self.resolve_lower(&p)? {
                        let gone = self.hide_lower(&p, true);
                        masks.add(gone, How::Removed, Some(p));
                    }
                }
                Whiteout::Opaque(d) => {
                    // The directory itself resolved too (`lnk/.wh..wh..opq`, `lnk -> d`, hides
                    // what is in `d`), as apply resolves it on disk.
                    let dir = self.resolve_lower(&join(&d, b"x"))?.map(|p| parent(&p).to_vec());
                    if let Some(d) = dir {
                        let gone = self.hide_lower(&d, false);
                        masks.add(gone, How::Hidden, Some(d));
                    }
                }
                Whiteout::None => {
                    if e.meta.kind == Kind::File && e.link.is_none() && e.meta.size > 0 {
                        observer.file(index, &e, content)?;
                    }
                    let gone = self.add_entry(layer, index, e, observer)?;
                    masks.add(gone, How::Replaced, None);
                }
            }
            Ok(())
        })?;
        for (p, node, how) in masks.gone.iter() {
            let how = if node.written == self.layers {
                *how
            } else {
                masks.classify(&p.0, *how)
            };
            observer.masked(&p.0, node, how);
        }
        Ok(())
    }

    /// Puts an entry into the tree. Returns the nodes it replaced.
    fn add_entry(
        &mut self,
        layer: u32,
        index: u64,
        e: Entry,
        observer: &mut dyn Observer,
    ) -> crate::Result<Gone> {
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
            observer.added(b"", root);
            return Ok(Vec::new());
        }
        let (path, mut gone) = self.parents_for_write(&e.path)?;
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
        observer.added(&path, &node);
        gone.extend(self.put(TreePath::from(path), node));
        self.compact();
        Ok(gone)
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

    /// Where the entry `path` goes, its parent directories made as `apply` makes them on disk:
    /// each component of the parent, in turn, resolved inside the tree (symlinks followed); one
    /// that does not resolve to a directory is made one, an implied directory replacing what
    /// is there (a file, a dangling symlink, a symlink to a file), as docker's overlay2 store
    /// and umoci 0.5 show such a layer. Returns the path with its parents resolved and the
    /// nodes replaced on the way.
    fn parents_for_write(&mut self, path: &[u8]) -> crate::Result<(Vec<u8>, Gone)> {
        let dir = parent(path);
        let mut gone = Vec::new();
        if let Some(at) = self.resolve_dir(dir)? {
            return Ok((join(&at, basename(path)), gone));
        }
        let mut at: Vec<u8> = Vec::new();
        let mut len = 0;
        // Beneath a directory just made, nothing is left to resolve.
        let mut made = false;
        for comp in dir.split(|b| *b == b'/') {
            len += comp.len() + usize::from(len > 0);
            let resolved = if made {
                None
            } else {
                self.resolve_dir(&dir[..len])?
            };
            at = match resolved {
                Some(resolved) => resolved,
                None => {
                    made = true;
                    let here = join(&at, comp);
                    let node = Node {
                        written: self.layers,
                        ..implied_dir()
                    };
                    gone.extend(self.put(TreePath::from(here.clone()), Box::new(node)));
                    here
                }
            };
        }
        Ok((join(&at, basename(path)), gone))
    }

    /// Directory `dir` with its symlinks followed inside the tree, when it is one (the root
    /// included); None when it is missing or not a directory.
    fn resolve_dir(&self, dir: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        if dir.is_empty() {
            return Ok(Some(Vec::new()));
        }
        // Resolving a child resolves every component of `dir`, its last included.
        let resolved = parent(&self.resolve_parent(&join(dir, b"x"))?).to_vec();
        let is_dir = resolved.is_empty()
            || self
                .nodes
                .get(&TreePath::from(resolved.clone()))
                .is_some_and(|n| n.meta.kind == Kind::Dir);
        Ok(is_dir.then_some(resolved))
    }

    /// Hides what lower layers put at `path` (with `itself`) and beneath it. What this layer
    /// wrote stays, and so do the ancestors it needs. Returns what was hidden.
    fn hide_lower(&mut self, path: &[u8], itself: bool) -> Gone {
        let mut gone = Vec::new();
        if path.is_empty() && itself {
            return gone;
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
            } else if let Some(n) = self.nodes.remove(&p) {
                gone.push((p, n));
            }
        }
        gone.reverse();
        gone
    }

    /// `path` with its parent directories resolved inside the tree: symlinks among them are
    /// followed (absolute ones from the tree's root), `..` stops at the root.
    fn resolve_parent(&self, path: &[u8]) -> crate::Result<Vec<u8>> {
        let resolved = self.resolve(path, false)?;
        Ok(resolved.expect("only a whiteout's resolution stops"))
    }

    /// Where a whiteout's `path` lies in the lower layers: as [`Tree::resolve_parent`], but a
    /// whiteout applies to lower layers only, so it does not act through a symlink its own layer
    /// made (None: nothing lower is beneath that symlink). umoci repack writes such whiteouts
    /// when a change replaces a directory by a symlink to where the directory's files went.
    fn resolve_lower(&self, path: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        self.resolve(path, true)
    }

    fn resolve(&self, path: &[u8], lower_only: bool) -> crate::Result<Option<Vec<u8>>> {
        let dir = parent(path);
        if dir.is_empty() {
            return Ok(Some(path.to_vec()));
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
            return Ok(Some(path.to_vec()));
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
                    if lower_only && n.written == self.layers {
                        return Ok(None);
                    }
                    hops += 1;
                    if hops > MAX_SYMLINKS {
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
        Ok(Some(join(&resolved, basename(path))))
    }
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
    fn whiteouts_do_not_act_through_a_symlink_their_layer_made() {
        let l1 = layer(&[
            ("usr/share/doc/apt", "d"),
            ("usr/share/doc/apt/NEWS", "f"),
            ("usr/share/doc/apt/keep", "f"),
            ("opt/docs/apt", "d"),
            ("opt/docs/apt/keep", "f"),
            ("opt/docs/apt/x", "f"),
        ]);
        // umoci repack of `mv usr/share/doc/apt opt/docs/; ln -s ../../../opt/docs/apt
        // usr/share/doc/apt`: the symlink, then whiteouts of the old directory's files under it.
        let l2 = layer(&[
            ("opt/docs/apt/NEWS", "f"),
            ("usr/share/doc/apt", "s:../../../opt/docs/apt"),
            ("usr/share/doc/apt/.wh.NEWS", "w"),
            ("usr/share/doc/apt/.wh.keep", "w"),
            ("link", "s:opt/docs"),
            ("link/apt/.wh..wh..opq", "w"),
        ]);
        let t = stack(&[l1, l2.clone()]);
        assert_eq!(
            paths(&t),
            [
                "",
                "link",
                "opt",
                "opt/docs",
                "opt/docs/apt",
                "opt/docs/apt/NEWS",
                "opt/docs/apt/keep",
                "opt/docs/apt/x",
                "usr",
                "usr/share",
                "usr/share/doc",
                "usr/share/doc/apt"
            ]
        );
        // Through a symlink of a lower layer, a whiteout acts.
        let l3 = layer(&[("usr/share/doc/apt/.wh.keep", "w")]);
        let t = stack(&[layer(&[("opt/docs/apt/keep", "f")]), l2, l3]);
        assert!(t.get(b"opt/docs/apt/keep").is_none());
        // And so does an opaque marker: it hides what is in the directory the symlink names.
        let l1 = layer(&[("d", "d"), ("d/a", "f"), ("lnk", "s:d")]);
        let l2 = layer(&[("lnk/.wh..wh..opq", "w"), ("lnk/b", "f")]);
        assert_eq!(paths(&stack(&[l1, l2])), ["", "d", "d/b", "lnk"]);
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

    #[test]
    fn a_parent_that_is_not_a_directory_becomes_one() {
        struct Masked(Vec<(String, How)>);
        impl Observer for Masked {
            fn masked(&mut self, path: &[u8], _node: &Node, how: How) {
                self.0.push((String::from_utf8_lossy(path).into_owned(), how));
            }
        }
        let l1 = layer(&[
            ("file", "f"),
            ("dangling", "s:nowhere/deeper"),
            ("target", "f"),
            ("tofile", "s:target"),
            ("d", "d"),
            ("d/file", "f"),
            ("todir", "s:d"),
        ]);
        // Each parent made as deep as the entry needs; through the symlink to a directory, the
        // entries land in it.
        let l2 = layer(&[
            ("file/x", "f"),
            ("dangling/a/b/x", "f"),
            ("tofile/x", "f"),
            ("d/file/x", "f"),
            ("todir/y", "f"),
        ]);
        let mut t = stack(&[l1]);
        let mut seen = Masked(Vec::new());
        t.apply_layer_observed(1, &l2[..], &mut seen).unwrap();
        assert_eq!(
            paths(&t),
            [
                "",
                "d",
                "d/file",
                "d/file/x",
                "d/y",
                "dangling",
                "dangling/a",
                "dangling/a/b",
                "dangling/a/b/x",
                "file",
                "file/x",
                "target",
                "todir",
                "tofile",
                "tofile/x"
            ]
        );
        for dir in ["file", "dangling", "dangling/a", "tofile", "d/file"] {
            assert_eq!(t.get(dir.as_bytes()).unwrap().meta.kind, Kind::Dir, "{dir}");
        }
        seen.0.sort_by(|a, b| a.0.cmp(&b.0));
        let replaced = [
            ("d/file", How::Replaced),
            ("dangling", How::Replaced),
            ("file", How::Replaced),
            ("tofile", How::Replaced),
        ];
        assert_eq!(seen.0, replaced.map(|(p, h)| (p.to_string(), h)));
    }
}
