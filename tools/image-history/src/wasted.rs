//! Where the bytes went: for each layer, the file content it carries that a later layer removes
//! (whiteout), hides (opaque directory) or replaces (same path written again). A delete in a
//! later layer masks the bytes but does not shrink the image.
//!
//! Honest accounting (unlike dive, whose wasted total counts every copy of a path, #684): only
//! masked copies count, each once, in the layer that carries it; the copy still visible at the
//! top is not waste. A file hard-linked within its layer is wasted only when all its names are
//! masked, since the content stays reachable through any one of them. Computed from the tar
//! headers, one pass over the layers, without extracting.

use common::digest::Digest;
use common::entry::{Entry, Kind};
use common::path::{self, TreePath};
use common::whiteout::{self, Whiteout};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// How a later layer masks a file.
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

/// One masked file of a layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WastedFile {
    /// `/etc/big`, escaped as listings show paths.
    pub path: String,
    /// Content bytes.
    pub size: u64,
    /// The diffID of the layer that masks it.
    #[serde(rename = "maskedBy")]
    pub masked_by: Digest,
    pub how: How,
}

/// A layer's waste.
#[derive(Clone, Debug, Default)]
pub struct LayerWaste {
    pub wasted: u64,
    pub files: Vec<WastedFile>,
}

/// Content of one regular file of one layer, shared by its hard-linked names.
struct Inode {
    layer: usize,
    path: Vec<u8>,
    size: u64,
    names: u32,
}

/// A path of the stacked tree.
struct Node {
    dir: bool,
    inode: Option<usize>,
}

/// The stacked tree seen so far and the waste found in it.
#[derive(Default)]
pub struct Tracker {
    visible: BTreeMap<TreePath, Node>,
    inodes: Vec<Inode>,
    layers: Vec<LayerWaste>,
    /// Content bytes of every layer.
    pub total: u64,
    /// Content bytes masked.
    pub wasted: u64,
}

impl Tracker {
    /// Adds the next layer, given its entries in tar order.
    pub fn add_layer(&mut self, diff_id: &Digest, entries: Vec<Entry>) -> crate::Result<()> {
        let layer = self.layers.len();
        self.layers.push(LayerWaste::default());
        let mut writes = Vec::new();
        let mut removes = Vec::new();
        let mut opaques = Vec::new();
        for e in entries {
            match whiteout::classify(&e.path)? {
                Whiteout::None => writes.push(e),
                Whiteout::Remove(p) => removes.push(p),
                Whiteout::Opaque(d) => opaques.push(d),
            }
        }
        // Whiteouts hide only lower layers, and an opaque marker applies first whatever its
        // place in the tar: so both go before this layer's own entries join the tree.
        for dir in opaques {
            self.mask_below(&dir, diff_id, How::Hidden);
        }
        for path in removes {
            self.mask(&path, diff_id, How::Removed);
            self.mask_below(&path, diff_id, How::Removed);
        }
        let mut own: HashMap<Vec<u8>, usize> = HashMap::new();
        for e in writes {
            let dir = e.meta.kind == Kind::Dir;
            let key = TreePath::from(e.path.clone());
            if self.visible.get(&key).is_some_and(|old| !(old.dir && dir)) {
                self.mask(&e.path, diff_id, How::Replaced);
            }
            if !dir {
                self.mask_below(&e.path, diff_id, How::Replaced);
            }
            let inode = match &e.link {
                // A link to a file of a lower layer cannot share its inode (image-spec): it
                // carries no bytes of its own.
                Some(target) => own.get(target).copied().inspect(|&i| self.inodes[i].names += 1),
                None if e.meta.kind == Kind::File => {
                    self.total += e.meta.size;
                    self.inodes.push(Inode {
                        layer,
                        path: e.path.clone(),
                        size: e.meta.size,
                        names: 1,
                    });
                    Some(self.inodes.len() - 1)
                }
                None => None,
            };
            if let Some(i) = inode {
                own.insert(e.path.clone(), i);
            }
            self.visible.insert(key, Node { dir, inode });
        }
        Ok(())
    }

    /// The waste of each layer added, in order; files sorted by path.
    pub fn finish(mut self) -> Vec<LayerWaste> {
        for l in &mut self.layers {
            l.files
                .sort_by(|a, b| path::path_cmp(a.path.as_bytes(), b.path.as_bytes()));
        }
        self.layers
    }

    /// Masks one path of the tree, if present.
    fn mask(&mut self, path: &[u8], by: &Digest, how: How) {
        if let Some(node) = self.visible.remove(&TreePath::from(path.to_vec())) {
            self.drop_name(node, by, how);
        }
    }

    /// Masks everything strictly below `dir` (everything, for the root).
    fn mask_below(&mut self, dir: &[u8], by: &Digest, how: How) {
        // path_cmp puts a directory right before its subtree, so the subtree is one range.
        let start = TreePath::from(dir.to_vec());
        let below: Vec<TreePath> = self
            .visible
            .range((Bound::Excluded(&start), Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| path::is_within(&k.0, dir))
            .cloned()
            .collect();
        for k in below {
            if let Some(node) = self.visible.remove(&k) {
                self.drop_name(node, by, how);
            }
        }
    }

    fn drop_name(&mut self, node: Node, by: &Digest, how: How) {
        let Some(i) = node.inode else { return };
        let inode = &mut self.inodes[i];
        inode.names -= 1;
        if inode.names > 0 || inode.size == 0 {
            return;
        }
        self.wasted += inode.size;
        let waste = &mut self.layers[inode.layer];
        waste.wasted += inode.size;
        waste.files.push(WastedFile {
            path: path::display(&inode.path),
            size: inode.size,
            masked_by: by.clone(),
            how,
        });
    }
}

/// Efficiency in percent: the share of all content bytes still visible at the top.
pub fn efficiency(total: u64, wasted: u64) -> f64 {
    if total == 0 {
        return 100.0;
    }
    (total - wasted) as f64 * 100.0 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::entry::Meta;

    fn file(path: &str, size: u64) -> Entry {
        let mut meta = Meta::new(Kind::File, 0o644);
        meta.size = size;
        Entry {
            path: path.into(),
            meta,
            link: None,
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            meta: Meta::new(Kind::Dir, 0o755),
            link: None,
        }
    }

    fn link(path: &str, target: &str) -> Entry {
        Entry {
            path: path.into(),
            meta: Meta::new(Kind::File, 0o644),
            link: Some(target.into()),
        }
    }

    fn id(n: u8) -> Digest {
        format!("sha256:{}", hex_of(n)).parse().unwrap()
    }

    fn hex_of(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn run(layers: Vec<Vec<Entry>>) -> (Vec<LayerWaste>, u64, u64) {
        let mut t = Tracker::default();
        for (i, l) in layers.into_iter().enumerate() {
            t.add_layer(&id(i as u8), l).unwrap();
        }
        let (total, wasted) = (t.total, t.wasted);
        (t.finish(), total, wasted)
    }

    #[test]
    fn a_later_delete_wastes_the_lower_copy_only() {
        let (w, total, wasted) = run(vec![
            vec![dir("a"), file("a/keep", 5)],
            vec![file("big", 1000), file("a/gone", 7)],
            vec![file(".wh.big", 0), file("a/.wh.gone", 0)],
        ]);
        assert_eq!((total, wasted), (1012, 1007));
        assert_eq!(w[1].wasted, 1007);
        assert_eq!(
            w[1].files[0],
            WastedFile {
                path: "/a/gone".into(),
                size: 7,
                masked_by: id(2),
                how: How::Removed
            }
        );
        assert_eq!(w[1].files[1].path, "/big");
        assert_eq!(w[0].wasted + w[2].wasted, 0);
        assert_eq!(efficiency(total, wasted), 5.0 * 100.0 / 1012.0);
    }

    #[test]
    fn n_copies_waste_n_minus_one() {
        // dive #684: three copies of a path are two masked copies, not three.
        let (w, total, wasted) = run(vec![
            vec![file("f", 10)],
            vec![file("f", 20)],
            vec![file("f", 30)],
        ]);
        assert_eq!((total, wasted), (60, 30));
        assert_eq!((w[0].wasted, w[1].wasted, w[2].wasted), (10, 20, 0));
        assert_eq!(w[0].files[0].how, How::Replaced);
        assert_eq!(w[0].files[0].masked_by, id(1));
    }

    #[test]
    fn whiteouts_hide_only_lower_layers() {
        // The same layer rewrites what it whites out, in either order: the new copy survives.
        let (w, _, wasted) = run(vec![
            vec![dir("d"), file("d/x", 4), file("y", 3)],
            vec![
                file("d/.wh..wh..opq", 0),
                file("d/z", 2),
                file("y", 9),
                file(".wh.y", 0),
            ],
        ]);
        assert_eq!(wasted, 7);
        assert_eq!(
            w[0].files
                .iter()
                .map(|f| (f.path.as_str(), f.how))
                .collect::<Vec<_>>(),
            vec![("/d/x", How::Hidden), ("/y", How::Removed)]
        );
        assert_eq!(w[1].wasted, 0);
    }

    #[test]
    fn removing_a_directory_masks_its_subtree_and_a_file_replacing_it_too() {
        let (w, _, wasted) = run(vec![
            vec![
                dir("a"),
                dir("a/b"),
                file("a/b/c", 11),
                file("ab", 1),
                dir("m"),
                file("m/n", 2),
            ],
            vec![file(".wh.a", 0), file("m", 5)],
        ]);
        assert_eq!(wasted, 13);
        assert_eq!(w[0].files.len(), 2);
        assert_eq!(
            w[0].files[1],
            WastedFile {
                path: "/m/n".into(),
                size: 2,
                masked_by: id(1),
                how: How::Replaced
            }
        );
    }

    #[test]
    fn hard_linked_content_is_wasted_when_every_name_is_masked() {
        let (w, total, wasted) = run(vec![vec![file("f", 100), link("g", "f")], vec![file(".wh.f", 0)]]);
        assert_eq!((total, wasted), (100, 0));
        let (w2, _, wasted2) = run(vec![
            vec![file("f", 100), link("g", "f")],
            vec![file(".wh.f", 0)],
            vec![file(".wh.g", 0)],
        ]);
        assert_eq!(wasted2, 100);
        assert_eq!(w2[0].files[0].masked_by, id(2));
        assert!(w[0].files.is_empty());
    }

    #[test]
    fn directory_entries_again_mask_nothing() {
        let (_, _, wasted) = run(vec![
            vec![dir("a"), file("a/f", 3)],
            vec![dir("a"), file("a/g", 1)],
        ]);
        assert_eq!(wasted, 0);
    }
}
