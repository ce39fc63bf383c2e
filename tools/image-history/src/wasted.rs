//! Where the bytes went: for each layer, the file content it carries that a later layer removes
//! (whiteout), hides (opaque directory) or replaces (same path written again). A delete in a
//! later layer masks the bytes but does not shrink the image.
//!
//! Honest accounting (unlike dive, whose wasted total counts every copy of a path, #684): only
//! masked copies count, each once, in the layer that carries it; the copy still visible at the
//! top is not waste. A hard-linked file is wasted only when all its names are masked, since the
//! content stays reachable through any one of them (a later layer's link to it included, as
//! the stacked tree links it). Computed from the tar
//! headers, one pass over the layers, without extracting: the layers are stacked into a
//! [`Tree`], which tells what each one masks, so the stacking rules (whiteouts, opaque
//! directories, replacement, parents that are symlinks) are those of `image-stack --tar`.

use common::digest::Digest;
use common::entry::{Entry, Kind};
use common::path;
use common::size::ContentSize;
use common::tree::How;
use common::tree::{Node, Observer, Source, Tree};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;

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
    /// Content bytes the layer carries (each hard-linked file once).
    pub content: u64,
    pub wasted: u64,
    pub files: Vec<WastedFile>,
}

/// The stacked tree seen so far and the waste found in it.
#[derive(Default)]
pub struct Tracker {
    tree: Tree,
    seen: Seen,
}

/// What the tree has shown.
#[derive(Default)]
struct Seen {
    /// Content of regular files still reachable, by where it sits in the layers.
    contents: HashMap<(u32, u64), Content>,
    layers: Vec<LayerWaste>,
    /// Content bytes of every layer.
    total: u64,
    /// Content bytes masked.
    wasted: u64,
}

/// Content of one regular file of one layer, shared by its hard-linked names.
struct Content {
    layer: usize,
    path: Vec<u8>,
    size: u64,
    names: u32,
}

impl Tracker {
    /// Stacks the next layer (its uncompressed tar, `diff_id` naming it). Returns its content
    /// size (docker's SIZE), measured in the same pass.
    pub fn add_layer(&mut self, diff_id: &Digest, tar: impl Read) -> crate::Result<ContentSize> {
        let layer = self.seen.layers.len();
        self.seen.layers.push(LayerWaste::default());
        let mut watch = Watch {
            seen: &mut self.seen,
            by: diff_id,
            size: ContentSize::default(),
        };
        self.tree.apply_layer_observed(layer, tar, &mut watch)?;
        Ok(watch.size)
    }

    /// Content bytes of every layer added.
    pub fn total(&self) -> u64 {
        self.seen.total
    }

    /// Content bytes masked.
    pub fn wasted(&self) -> u64 {
        self.seen.wasted
    }

    /// The waste of each layer added, in order; files sorted by path.
    pub fn finish(mut self) -> Vec<LayerWaste> {
        for l in &mut self.seen.layers {
            l.files
                .sort_by(|a, b| path::path_cmp(a.path.as_bytes(), b.path.as_bytes()));
        }
        self.seen.layers
    }
}

/// Counts names of content as the tree adds and masks them, while layer `by` is applied.
struct Watch<'a> {
    seen: &'a mut Seen,
    by: &'a Digest,
    size: ContentSize,
}

/// Where a regular file's content sits: a hard link's node shares its target's.
fn content_of(node: &Node) -> Option<(u32, u64)> {
    match node.source {
        Source::Layer { layer, index } if node.meta.kind == Kind::File => Some((layer, index)),
        _ => None,
    }
}

impl Observer for Watch<'_> {
    fn entry(&mut self, entry: &Entry) {
        self.size.add_entry(entry);
    }

    fn added(&mut self, path: &[u8], node: &Node) {
        let Some(key) = content_of(node) else { return };
        let (total, layers) = (&mut self.seen.total, &mut self.seen.layers);
        let content = self.seen.contents.entry(key).or_insert_with(|| {
            *total += node.meta.size;
            layers[key.0 as usize].content += node.meta.size;
            Content {
                layer: key.0 as usize,
                path: path.to_vec(),
                size: node.meta.size,
                names: 0,
            }
        });
        content.names += 1;
    }

    fn masked(&mut self, _path: &[u8], node: &Node, how: How) {
        let Some(key) = content_of(node) else { return };
        let Some(content) = self.seen.contents.get_mut(&key) else {
            return;
        };
        content.names -= 1;
        if content.names > 0 {
            return;
        }
        let Some(content) = self.seen.contents.remove(&key) else {
            return;
        };
        if content.size == 0 {
            return;
        }
        self.seen.wasted += content.size;
        let waste = &mut self.seen.layers[content.layer];
        waste.wasted += content.size;
        waste.files.push(WastedFile {
            path: path::display(&content.path),
            size: content.size,
            masked_by: self.by.clone(),
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
    use common::tarwrite::TarWriter;

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

    /// The layer tar of these entries, files filled with their size in bytes.
    fn tar_of(entries: &[Entry]) -> Vec<u8> {
        let mut w = TarWriter::with_clamp(Vec::new(), None);
        for e in entries {
            match &e.link {
                Some(target) => w.hardlink(&e.path, target, &e.meta).unwrap(),
                None => {
                    let mut content = std::io::repeat(b'x').take(e.meta.size);
                    w.entry(&e.path, &e.meta, Some(&mut content)).unwrap();
                }
            }
        }
        w.finish().unwrap()
    }

    fn run(layers: Vec<Vec<Entry>>) -> (Vec<LayerWaste>, u64, u64) {
        let mut t = Tracker::default();
        for (i, l) in layers.into_iter().enumerate() {
            t.add_layer(&id(i as u8), &tar_of(&l)[..]).unwrap();
        }
        let (total, wasted) = (t.total(), t.wasted());
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
        assert_eq!((w[0].content, w[1].content, w[2].content), (5, 1007, 0));
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
    fn a_later_layers_hard_link_keeps_the_content_reachable() {
        let (_, total, wasted) = run(vec![
            vec![file("f", 100)],
            vec![link("g", "f")],
            vec![file(".wh.f", 0)],
        ]);
        assert_eq!((total, wasted), (100, 0));
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
