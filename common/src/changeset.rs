//! Changesets: what changed between two [`Tree`]s, and the layer tars that carry a change or a
//! whole tree.
//!
//! - [`diff`] compares two trees the way `docker diff` does (moby pkg/archive changes.go):
//!   a non-directory is changed when its type, mode, owner, device numbers, size or mtime differ
//!   (mtimes as moby's `sameFsTime`: equal, or the same second with 0 ns on either side), and
//!   also, beyond docker, when its symlink target, any xattr or its hard-link structure differs;
//!   a directory when its type, mode, owner or xattrs differ. Every directory above a change is
//!   changed too (except `/`); an added directory lists everything inside as added; a removed
//!   one is one deletion. With a content comparer ("ignore times") regular files are compared
//!   by content instead of mtime.
//! - A [`Plan`] is the list of tar entries of a layer, in the fixed order (sorted by path,
//!   parents first): for a changeset, every added and changed path, the parents of every entry,
//!   an explicit `.wh.NAME` per removed path (or `.wh..wh..opq` for a directory whose lower
//!   children were all removed, when asked), and whole hard-link groups: when one name of an
//!   upper inode goes into the layer, all its names do; the first in order carries the content
//!   and the others link to it (a layer cannot link to a lower layer's inode).
//!
//! The writer takes each file's bytes from [`Contents`].

use crate::content::Contents;
use crate::entry::Kind;
use crate::path::{TreePath, parent};
use crate::size::ContentSize;
use crate::tarwrite::TarWriter;
use crate::tree::{Node, Tree};
use crate::whiteout;
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

/// The kind of one change, as `docker diff` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    /// `A`, `C` or `D`.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One line of `docker diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: Vec<u8>,
    pub kind: ChangeKind,
}

/// The result of [`diff`].
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// The `docker diff` list, sorted by path.
    pub changes: Vec<Change>,
    /// Directories whose only change is their mtime: docker does not list them, but a layer
    /// carries them so that applying it gives the upper tree exactly.
    pub touched_dirs: Vec<Vec<u8>>,
}

impl Diff {
    fn of(found: BTreeMap<TreePath, ChangeKind>, touched_dirs: Vec<Vec<u8>>) -> Diff {
        Diff {
            changes: found
                .into_iter()
                .map(|(p, kind)| Change {
                    path: p.0.into_vec(),
                    kind,
                })
                .collect(),
            touched_dirs,
        }
    }

    /// True when a layer would carry nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.touched_dirs.is_empty()
    }
}

/// Compares two regular files' content (the first node is the lower one).
pub type SameContent<'a> = dyn FnMut(&[u8], &Node, &Node) -> crate::Result<bool> + 'a;

/// Compares `lower` and `upper`. With `same_content`, regular files of equal size are compared
/// by content and mtimes are ignored (`--ignore-times`).
pub fn diff(lower: &Tree, upper: &Tree, mut same_content: Option<&mut SameContent>) -> crate::Result<Diff> {
    let lower_links = LinkGroups::new(lower);
    let upper_links = LinkGroups::new(upper);
    let mut found: BTreeMap<TreePath, ChangeKind> = BTreeMap::new();
    let mut touched_dirs = Vec::new();
    let mut l_iter = lower.iter().skip_while(|(p, _)| p.0.is_empty()).peekable();
    let mut u_iter = upper.iter().skip_while(|(p, _)| p.0.is_empty()).peekable();
    loop {
        let order = match (l_iter.peek(), u_iter.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((l, _)), Some((u, _))) => l.cmp(u),
        };
        match order {
            std::cmp::Ordering::Greater => {
                let (p, _) = u_iter.next().expect("peeked");
                found.insert(p.clone(), ChangeKind::Added);
            }
            std::cmp::Ordering::Less => {
                let (p, _) = l_iter.next().expect("peeked");
                // A removed subtree is one deletion: only the top of it sits in an upper dir.
                if upper.get(parent(&p.0)).is_some_and(|n| n.meta.kind == Kind::Dir) {
                    found.insert(p.clone(), ChangeKind::Deleted);
                }
            }
            std::cmp::Ordering::Equal => {
                let (p, l) = l_iter.next().expect("peeked");
                let (_, u) = u_iter.next().expect("peeked");
                let ignore_times = same_content.is_some();
                let mut changed = meta_differs(l, u, ignore_times)
                    || lower_links.key(l, &p.0, upper) != upper_links.key(u, &p.0, lower);
                if !changed
                    && u.meta.kind == Kind::File
                    && let Some(same) = same_content.as_deref_mut()
                {
                    changed = !same(&p.0, l, u).with_context(|| crate::path::display(&p.0))?;
                }
                if changed {
                    found.insert(p.clone(), ChangeKind::Changed);
                } else if u.meta.kind == Kind::Dir && !ignore_times && !same_fs_time(l, u) {
                    touched_dirs.push(p.0.to_vec());
                }
            }
        }
    }
    // Every directory above a change is changed (moby inserts it before its children).
    let originals: Vec<Vec<u8>> = found.keys().map(|p| p.0.to_vec()).collect();
    for p in originals {
        let mut a = parent(&p);
        while !a.is_empty() {
            let key = TreePath::from(a.to_vec());
            if found.contains_key(&key) {
                break;
            }
            found.insert(key, ChangeKind::Changed);
            a = parent(a);
        }
    }
    touched_dirs.retain(|d| !found.contains_key(&TreePath::from(d.clone())));
    Ok(Diff::of(found, touched_dirs))
}

/// The change the top layers of a stack make, from the stacked trees before them (`lower`,
/// `layers` layers applied) and after them (`upper`, the same tree with the top layers
/// applied): what they wrote, by provenance rather than by comparing metadata (a file
/// rewritten with the same size and mtime, as reproducible builds write them, is still in
/// it), and the top of every lower subtree they removed. The layer it plans applies on the
/// lower layers to `upper` exactly: a squash of the top layers.
pub fn above(lower: &Tree, upper: &Tree, layers: u32) -> Diff {
    let mut found: BTreeMap<TreePath, ChangeKind> = BTreeMap::new();
    for (p, _) in upper
        .iter()
        .filter(|(p, n)| !p.0.is_empty() && n.written > layers)
    {
        let kind = if lower.get(&p.0).is_some() {
            ChangeKind::Changed
        } else {
            ChangeKind::Added
        };
        found.insert(p.clone(), kind);
    }
    for (p, _) in lower.iter().filter(|(p, _)| !p.0.is_empty()) {
        if upper.get(&p.0).is_none() && upper.get(parent(&p.0)).is_some_and(|n| n.meta.kind == Kind::Dir) {
            found.insert(p.clone(), ChangeKind::Deleted);
        }
    }
    Diff::of(found, Vec::new())
}

/// moby's `sameFsTime`: equal, or the same second when either side lost its nanoseconds.
fn same_fs_time(l: &Node, u: &Node) -> bool {
    let (a, b) = (&l.meta, &u.meta);
    a.mtime == b.mtime && (a.mtime_nsec == b.mtime_nsec || a.mtime_nsec == 0 || b.mtime_nsec == 0)
}

fn meta_differs(l: &Node, u: &Node, ignore_times: bool) -> bool {
    let (a, b) = (&l.meta, &u.meta);
    if a.kind != b.kind || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.xattrs() != b.xattrs() {
        return true;
    }
    if a.kind == Kind::Dir {
        return false;
    }
    a.rdev != b.rdev || a.target() != b.target() || a.size != b.size || (!ignore_times && !same_fs_time(l, u))
}

/// The hard-link groups of one tree: inode id → its names, in order.
struct LinkGroups<'a> {
    groups: HashMap<u64, Vec<&'a [u8]>>,
}

impl<'a> LinkGroups<'a> {
    fn new(tree: &'a Tree) -> LinkGroups<'a> {
        let mut groups: HashMap<u64, Vec<&'a [u8]>> = HashMap::new();
        for (p, n) in tree.iter() {
            if n.ino != 0 && n.meta.kind != Kind::Dir {
                groups.entry(n.ino).or_default().push(&p.0);
            }
        }
        LinkGroups { groups }
    }

    /// The first name of `node`'s group that also exists in `other`: two trees link `path` the
    /// same way when these keys agree. Names only one side has do not count, so a new link to
    /// an unchanged file changes only the new name.
    fn key<'b>(&'b self, node: &Node, path: &'b [u8], other: &Tree) -> &'b [u8] {
        if node.ino == 0 {
            return path;
        }
        self.groups
            .get(&node.ino)
            .and_then(|names| names.iter().copied().find(|n| other.get(n).is_some()))
            .unwrap_or(path)
    }

    fn members(&self, ino: u64) -> &[&'a [u8]] {
        self.groups.get(&ino).map(Vec::as_slice).unwrap_or_default()
    }
}

/// One entry of a layer tar.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    /// The upper node at this path.
    Node,
    /// `.wh.NAME` (the item's path is the whiteout's own name).
    Whiteout,
}

/// The entries of a layer tar, in their fixed order.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    items: BTreeMap<TreePath, Item>,
}

impl Plan {
    /// The changeset of `diff` (computed from `lower` to `upper`). With `opaque`, a directory
    /// whose lower children are all gone gets one `.wh..wh..opq` instead of a whiteout each.
    pub fn changeset(diff: &Diff, lower: &Tree, upper: &Tree, opaque: bool) -> Plan {
        let links = LinkGroups::new(upper);
        let mut items: BTreeMap<TreePath, Item> = BTreeMap::new();
        let mut removed: Vec<&[u8]> = Vec::new();
        for c in &diff.changes {
            match c.kind {
                ChangeKind::Deleted => removed.push(&c.path),
                _ => {
                    items.insert(TreePath::from(c.path.clone()), Item::Node);
                }
            }
        }
        for d in &diff.touched_dirs {
            items.insert(TreePath::from(d.clone()), Item::Node);
        }
        // Whole hard-link groups.
        let linked: Vec<u64> = items
            .keys()
            .filter_map(|p| upper.get(&p.0).map(|n| n.ino).filter(|i| *i != 0))
            .collect();
        for ino in linked {
            for m in links.members(ino) {
                items.insert(TreePath::from(m.to_vec()), Item::Node);
            }
        }
        // Parents of every entry and of every whiteout.
        let tops: Vec<Vec<u8>> = items
            .keys()
            .map(|p| p.0.to_vec())
            .chain(removed.iter().map(|p| p.to_vec()))
            .collect();
        for p in tops {
            let mut a = parent(&p);
            while !a.is_empty() && items.insert(TreePath::from(a.to_vec()), Item::Node).is_none() {
                a = parent(a);
            }
        }
        let opaque_dirs: HashSet<&[u8]> = if opaque {
            removed
                .iter()
                .map(|p| parent(p))
                .filter(|d| {
                    lower
                        .subtree(d)
                        .filter(|(p, _)| parent(&p.0) == *d)
                        .all(|(p, _)| upper.get(&p.0).is_none())
                })
                .collect()
        } else {
            HashSet::new()
        };
        for p in removed {
            let dir = parent(p);
            let name = if opaque_dirs.contains(dir) {
                whiteout::opaque_name(dir)
            } else {
                whiteout::remove_name(p)
            };
            items.insert(TreePath::from(name), Item::Whiteout);
        }
        Plan { items }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds the opaque marker of `dir` (an overlayfs opaque directory), which must be in the plan.
    pub fn add_opaque(&mut self, dir: &[u8]) {
        self.items
            .insert(TreePath::from(whiteout::opaque_name(dir)), Item::Whiteout);
    }

    /// The nodes whose content the tar carries (one per hard-link group), e.g. to spool them.
    pub fn content_nodes<'a>(&'a self, tree: &'a Tree) -> impl Iterator<Item = &'a Node> + 'a {
        let mut seen = HashSet::new();
        self.items
            .iter()
            .filter(|(_, item)| **item == Item::Node)
            .filter_map(|(p, _)| tree.get(&p.0))
            .filter(move |n| {
                n.meta.kind == Kind::File && n.meta.size > 0 && (n.ino == 0 || seen.insert(n.ino))
            })
    }

    /// docker's SIZE of the layer [`Plan::write`] writes (see [`crate::size`]), known before
    /// it is written.
    pub fn content_size(&self, tree: &Tree) -> ContentSize {
        ContentSize::of_nodes(
            self.items
                .iter()
                .filter(|(_, item)| **item == Item::Node)
                .filter_map(|(p, _)| Some((&*p.0, tree.get(&p.0)?))),
        )
    }

    /// About the length of the tar [`Plan::write`] writes (see [`tar_len_estimate`]).
    pub fn tar_len_estimate(&self, tree: &Tree) -> u64 {
        tar_len_estimate(
            self.items.len() as u64,
            self.content_nodes(tree).map(|n| n.meta.size),
        )
    }

    /// Writes the entries (nodes from `tree`) and ends the archive.
    pub fn write<W: Write>(&self, tree: &Tree, contents: &Contents, w: TarWriter<W>) -> crate::Result<W> {
        let entries = self.items.iter().map(|(p, item)| match item {
            Item::Whiteout => Ok((&*p.0, None)),
            Item::Node => match tree.get(&p.0) {
                Some(node) => Ok((&*p.0, Some(node))),
                None => bail!("{}: not in the tree", crate::path::display(&p.0)),
            },
        });
        write_entries(entries, contents, w)
    }
}

/// Writes a whole tree as one layer tar (`layer-pack DIR`, a squash): the same entry rules
/// and order as a changeset against an empty tree. Straight from the tree: a plan of a
/// million paths would copy each of them.
pub fn write_tree<W: Write>(tree: &Tree, contents: &Contents, w: TarWriter<W>) -> crate::Result<W> {
    let entries = tree
        .iter()
        .filter(|(p, _)| !p.0.is_empty())
        .map(|(p, node)| Ok((&*p.0, Some(node))));
    write_entries(entries, contents, w)
}

/// About the length of the tar [`write_tree`] writes (see [`tar_len_estimate`]).
pub fn tree_tar_len_estimate(tree: &Tree) -> u64 {
    let mut seen = HashSet::new();
    let nodes = tree.subtree(b"");
    let (mut entries, mut content) = (0, Vec::new());
    for (_, n) in nodes {
        entries += 1;
        if n.meta.kind == Kind::File && n.meta.size > 0 && (n.ino == 0 || seen.insert(n.ino)) {
            content.push(n.meta.size);
        }
    }
    tar_len_estimate(entries, content)
}

/// The length of a tar of `entries` entries carrying `content`, short of the PAX records some
/// entries get (long names, xattrs, sub-second times): a total for a progress line.
pub fn tar_len_estimate(entries: u64, content: impl IntoIterator<Item = u64>) -> u64 {
    let padded: u64 = content.into_iter().map(|n| n.div_ceil(512) * 512).sum();
    entries * 512 + padded + 1024
}

/// Writes each path's node (None: its whiteout), in order, and ends the archive.
fn write_entries<'a, W: Write>(
    entries: impl Iterator<Item = crate::Result<(&'a [u8], Option<&'a Node>)>>,
    contents: &Contents,
    mut w: TarWriter<W>,
) -> crate::Result<W> {
    let mut first_name: HashMap<u64, &[u8]> = HashMap::new();
    for entry in entries {
        let (path, node) = entry?;
        let Some(node) = node else {
            w.whiteout(path)?;
            continue;
        };
        if node.ino != 0 && node.meta.kind != Kind::Dir {
            if let Some(first) = first_name.get(&node.ino) {
                w.hardlink(path, first, &node.meta)?;
                continue;
            }
            first_name.insert(node.ino, path);
        }
        if node.meta.kind == Kind::File && node.meta.size > 0 {
            let mut r = contents.open(path, node)?;
            w.entry(path, &node.meta, Some(&mut r))?;
        } else {
            w.entry(path, &node.meta, None)?;
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Meta;
    use crate::tree::Source;

    #[test]
    fn a_tree_tar_is_as_long_as_estimated_when_no_entry_needs_pax() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/f"), vec![1u8; 700]).unwrap();
        std::fs::hard_link(d.path().join("a/f"), d.path().join("a/g")).unwrap();
        let tree = Tree::from_dir(d.path(), &crate::tree::DirOptions::default()).unwrap();
        // Headers for a/, a/f and the link a/g; 700 bytes padded to 1024; two end blocks.
        assert_eq!(tree_tar_len_estimate(&tree), 3 * 512 + 1024 + 1024);
        let tar = write_tree(&tree, &Contents::new(), TarWriter::new(Vec::new()).unwrap()).unwrap();
        assert_eq!(tar.len() as u64, tree_tar_len_estimate(&tree));
    }

    fn node(kind: Kind, mtime: i64) -> Node {
        let mut meta = Meta::new(kind, 0o644);
        meta.mtime = mtime;
        Node {
            meta,
            ino: 0,
            source: Source::None,
            written: 0,
        }
    }

    fn tree(entries: &[(&str, Node)]) -> Tree {
        let mut t = Tree::new();
        for (p, n) in entries {
            t.insert(p.as_bytes().to_vec(), n.clone()).unwrap();
        }
        t
    }

    fn listing(d: &Diff) -> Vec<String> {
        d.changes
            .iter()
            .map(|c| format!("{} {}", c.kind.letter(), crate::path::display(&c.path)))
            .collect()
    }

    #[test]
    fn docker_diff_rules() {
        let dir = || node(Kind::Dir, 0);
        let f = |t| node(Kind::File, t);
        let lower = tree(&[
            ("a", dir()),
            ("a/b", dir()),
            ("a/b/f", f(1)),
            ("gone", dir()),
            ("gone/x", f(1)),
            ("t", f(1)),
            ("same", f(1)),
        ]);
        let mut t_dir = dir();
        t_dir.meta.mode = 0o700;
        let upper = tree(&[
            ("a", node(Kind::Dir, 99)),
            ("a/b", dir()),
            ("a/b/f", f(2)),
            ("new", dir()),
            ("new/y", f(1)),
            ("t", t_dir),
            ("t/z", f(1)),
            ("same", f(1)),
        ]);
        let d = diff(&lower, &upper, None).unwrap();
        assert_eq!(
            listing(&d),
            [
                "C /a", "C /a/b", "C /a/b/f", "D /gone", "A /new", "A /new/y", "C /t", "A /t/z"
            ]
        );
        // ignore-times: mtimes do not count, content does.
        let d = diff(&lower, &upper, Some(&mut |_, _, _| Ok(true))).unwrap();
        assert_eq!(listing(&d), ["D /gone", "A /new", "A /new/y", "C /t", "A /t/z"]);
    }

    #[test]
    fn same_fs_time_tolerates_lost_nanoseconds() {
        let (mut a, mut b) = (node(Kind::File, 5), node(Kind::File, 5));
        a.meta.mtime_nsec = 7;
        assert!(same_fs_time(&a, &b));
        b.meta.mtime_nsec = 8;
        assert!(!same_fs_time(&a, &b));
    }

    /// The top layers of `layers` above the first `k`, squashed into one layer tar.
    fn squash(layers: &[Vec<u8>], k: usize) -> Vec<u8> {
        let mut t = Tree::new();
        for (i, l) in layers[..k].iter().enumerate() {
            t.apply_layer(i, &l[..]).unwrap();
        }
        let lower = t.clone();
        for (i, l) in layers.iter().enumerate().skip(k) {
            t.apply_layer(i, &l[..]).unwrap();
        }
        let plan = Plan::changeset(&above(&lower, &t, k as u32), &lower, &t, false);
        let mut contents = Contents::new();
        for (layer, wanted) in Contents::wanted(plan.content_nodes(&t)) {
            contents.spool_layer(layer, &layers[layer][..], &wanted).unwrap();
        }
        plan.write(&t, &contents, TarWriter::with_clamp(Vec::new(), None))
            .unwrap()
    }

    /// The union of `layers` as one flat tar (`image-stack --tar`): what a stack holds, content
    /// and hard links included.
    fn flat(layers: &[Vec<u8>]) -> Vec<u8> {
        let mut t = Tree::new();
        let mut contents = Contents::new();
        for (i, l) in layers.iter().enumerate() {
            t.apply_layer_with(i, &l[..], &mut |index, _, content| {
                contents.spool_entry(i, index, content)
            })
            .unwrap();
        }
        write_tree(&t, &contents, TarWriter::with_clamp(Vec::new(), None)).unwrap()
    }

    #[test]
    fn a_squash_of_the_top_layers_stacks_to_the_same_tree() {
        use crate::tree::tests::layer;
        let cases: [(&str, Vec<Vec<u8>>); 7] = [
            (
                "hard link whose target a later layer removes (crane #977)",
                vec![
                    layer(&[("t", "f")]),
                    layer(&[("h", "l:t")]),
                    layer(&[(".wh.t", "w")]),
                ],
            ),
            (
                "hard link whose target a later layer overwrites (crane #2002)",
                vec![
                    layer(&[("t", "f:old")]),
                    layer(&[("h", "l:t")]),
                    layer(&[("t", "f:new")]),
                ],
            ),
            (
                "a new name for a linked base file",
                vec![layer(&[("t", "f"), ("h", "l:t")]), layer(&[("c", "l:t")])],
            ),
            (
                "opaque directories and removed subtrees",
                vec![
                    layer(&[
                        ("d", "d"),
                        ("d/x", "f"),
                        ("d/y", "f"),
                        ("e", "d"),
                        ("e/z", "f"),
                        ("keep", "f"),
                    ]),
                    layer(&[("d/.wh..wh..opq", "w"), ("d/n", "f"), (".wh.e", "w")]),
                ],
            ),
            (
                "a file replacing a directory, a directory replacing a file",
                vec![
                    layer(&[("a", "d"), ("a/b", "f"), ("f", "f")]),
                    layer(&[("a", "f:now a file"), ("f", "d"), ("f/g", "f")]),
                ],
            ),
            (
                "content rewritten with the same size and time",
                vec![layer(&[("c", "f:aaaa")]), layer(&[("c", "f:bbbb")])],
            ),
            (
                "a removed file written again by a later layer",
                vec![
                    layer(&[("x", "f:one"), ("y", "s:x")]),
                    layer(&[(".wh.x", "w"), (".wh.y", "w")]),
                    layer(&[("x", "f:two")]),
                ],
            ),
        ];
        for (what, layers) in cases {
            let want = flat(&layers);
            for k in 0..layers.len() {
                let mut squashed = layers[..k].to_vec();
                squashed.push(squash(&layers, k));
                assert!(flat(&squashed) == want, "{what}, above {k}");
            }
        }
    }

    #[test]
    fn changeset_plan_carries_groups_parents_and_whiteouts() {
        let dir = || node(Kind::Dir, 0);
        let mut linked = node(Kind::File, 1);
        linked.ino = 9;
        let lower = tree(&[
            ("d", dir()),
            ("d/old", node(Kind::File, 1)),
            ("u", dir()),
            ("u/a", linked.clone()),
        ]);
        let upper = tree(&[
            ("d", dir()),
            ("d/new", node(Kind::File, 1)),
            ("u", dir()),
            ("u/a", linked.clone()),
            ("z", linked),
        ]);
        let d = diff(&lower, &upper, None).unwrap();
        assert_eq!(listing(&d), ["C /d", "A /d/new", "D /d/old", "A /z"]);
        let names = |p: &Plan| {
            p.items
                .keys()
                .map(|k| String::from_utf8_lossy(&k.0).into_owned())
                .collect::<Vec<_>>()
        };
        let plan = Plan::changeset(&d, &lower, &upper, false);
        assert_eq!(names(&plan), ["d", "d/.wh.old", "d/new", "u", "u/a", "z"]);
        let plan = Plan::changeset(&d, &lower, &upper, true);
        assert_eq!(names(&plan), ["d", "d/.wh..wh..opq", "d/new", "u", "u/a", "z"]);
        let bytes = plan
            .write(&upper, &Contents::new(), TarWriter::with_clamp(Vec::new(), None))
            .unwrap();
        let t = Tree::from_tar(&bytes[..]).unwrap();
        assert_eq!(t.get(b"z").unwrap().ino, t.get(b"u/a").unwrap().ino);
    }
}
