//! A layer's sizes: what docker shows as its SIZE, the tar's length, and the blob as stored.
//!
//! docker's SIZE of a layer (`docker history`, and summed over the layers, `docker images`) is
//! what its overlay2 store reports for the layer's directory (moby `directory.Size`): the
//! apparent size (`st_size`) of every non-directory entry, each inode once. So a regular file
//! counts its length (a PAX sparse file its real size, holes included), a symlink the length of
//! its target, a hard link nothing more than the file it names, and a whiteout (a 0/0
//! character device there), an opaque marker, a device or a fifo nothing; directories count
//! nothing. A layer adding one 33-byte file is `33B`, whatever the tar around it weighs.
//!
//! layer-pack measures it while it packs and records it (the LAYER DESCRIPTOR's `contentSize`,
//! the manifest layer annotation [`CONTENT_SIZE`]), so that the history and the listing of our
//! own images read no layer. A layer without the record is measured once from its tar headers
//! (content is skipped, not read into anything). One known difference: an entry that a later
//! entry of the same layer writes again counts twice here, once in docker (tars made by any
//! common tool list a path once).

use crate::descriptor::{CONTENT_SIZE, Descriptor, UNCOMPRESSED_SIZE};
use crate::digest::Digest;
use crate::entry::{Entry, Kind, Meta};
use crate::layer::LayerStream;
use crate::layout::Layout;
use crate::path::basename;
use crate::progress::Progress;
use crate::tree::{Node, Tree};
use crate::whiteout;
use anyhow::Context;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// docker's SIZE of a layer, added up entry by entry as the layer's tar lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentSize(u64);

impl ContentSize {
    /// Adds one entry of a layer tar (a hard link adds nothing: its file is counted once).
    pub fn add_entry(&mut self, e: &Entry) {
        if e.link.is_none() {
            self.add(&e.path, &e.meta);
        }
    }

    /// Adds the first name of an inode.
    fn add(&mut self, path: &[u8], meta: &Meta) {
        if basename(path).starts_with(whiteout::PREFIX) {
            return;
        }
        if matches!(meta.kind, Kind::File | Kind::Symlink) {
            self.0 = self.0.saturating_add(meta.size);
        }
    }

    /// The size of a whole tree packed as one layer (`layer-pack DIR`): each hard-link group
    /// once.
    pub fn of_tree(tree: &Tree) -> ContentSize {
        ContentSize::of_nodes(tree.iter().map(|(path, node)| (&*path.0, node)))
    }

    /// The size of a layer tar written from these nodes (a tree's, or a changeset plan's), at
    /// their paths: each hard-link group once.
    pub fn of_nodes<'a>(nodes: impl Iterator<Item = (&'a [u8], &'a Node)>) -> ContentSize {
        let mut size = ContentSize::default();
        let mut inodes = HashSet::new();
        for (path, node) in nodes {
            if node.ino == 0 || inodes.insert(node.ino) {
                size.add(path, &node.meta);
            }
        }
        size
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// A layer's three sizes, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LayerSize {
    /// docker's SIZE (see the module's doc).
    pub content: u64,
    /// The uncompressed tar's length.
    pub tar: u64,
    /// The blob as stored (compressed or not): its descriptor's `size`.
    pub stored: u64,
}

impl LayerSize {
    /// The sizes a manifest layer descriptor records (our tools record both annotations);
    /// None when either is missing or not a number.
    pub fn recorded(desc: &Descriptor) -> Option<LayerSize> {
        Some(LayerSize {
            content: desc.annotations.get(CONTENT_SIZE)?.parse().ok()?,
            tar: LayerSize::recorded_tar(desc)?,
            stored: desc.size,
        })
    }

    /// The tar's length a manifest layer descriptor records, if our tools wrote it.
    pub fn recorded_tar(desc: &Descriptor) -> Option<u64> {
        desc.annotations.get(UNCOMPRESSED_SIZE)?.parse().ok()
    }
}

/// The sizes of the layers met in one run, each layer measured at most once.
#[derive(Default)]
pub struct Sizes {
    known: HashMap<Digest, LayerSize>,
}

impl Sizes {
    /// A layer's sizes: as recorded, or measured from its tar headers (verifying the blob, and
    /// the diffID when given), reading it through `progress`.
    pub fn layer(
        &mut self,
        layout: &Layout,
        desc: &Descriptor,
        diff_id: Option<&Digest>,
        progress: &Progress,
    ) -> crate::Result<LayerSize> {
        if let Some(s) = self.known.get(&desc.digest) {
            return Ok(*s);
        }
        let size = match LayerSize::recorded(desc) {
            Some(s) => s,
            None => {
                let mut stream = LayerStream::open(layout, desc, diff_id)?;
                let mut content = ContentSize::default();
                crate::tarread::for_each_entry(progress.reader(&mut stream), |_, e, _| {
                    content.add_entry(&e);
                    Ok(())
                })
                .with_context(|| format!("layer {}", desc.digest))?;
                let (_, tar) = stream.finish()?;
                LayerSize {
                    content: content.bytes(),
                    tar,
                    stored: desc.size,
                }
            }
        };
        self.known.insert(desc.digest.clone(), size);
        Ok(size)
    }

    /// Records sizes measured elsewhere (while the layer was read for another purpose).
    pub fn insert(&mut self, digest: Digest, size: LayerSize) {
        self.known.insert(digest, size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarwrite::TarWriter;

    fn meta(kind: Kind, size: u64) -> Meta {
        let mut m = Meta::new(kind, 0o644);
        m.size = size;
        m
    }

    #[test]
    fn counts_as_dockers_overlay2_does() {
        // By hand: a 33-byte file, its hard link (0), a symlink to "app.js" (6), a directory (0),
        // a whiteout and an opaque marker (0), a fifo (0): 39 bytes.
        let mut w = TarWriter::with_clamp(Vec::new(), None);
        w.entry(b"srv", &meta(Kind::Dir, 0), None).unwrap();
        w.entry(b"srv/app.js", &meta(Kind::File, 33), Some(&mut &[b'x'; 33][..]))
            .unwrap();
        w.hardlink(b"srv/again.js", b"srv/app.js", &meta(Kind::File, 0))
            .unwrap();
        let mut link = Meta::new(Kind::Symlink, 0o777);
        link.set_target(Some(b"app.js".to_vec()));
        w.entry(b"srv/current", &link, None).unwrap();
        w.whiteout(b"etc/hostname").unwrap();
        w.entry(b"tmp/.wh..wh..opq", &meta(Kind::File, 0), None).unwrap();
        w.entry(b"run/fifo", &meta(Kind::Fifo, 0), None).unwrap();
        let tar = w.finish().unwrap();
        let mut size = ContentSize::default();
        crate::tarread::for_each_entry(&tar[..], |_, e, _| {
            size.add_entry(&e);
            Ok(())
        })
        .unwrap();
        assert_eq!(size.bytes(), 39);
        assert_eq!(
            ContentSize::of_tree(&Tree::from_tar(&tar[..]).unwrap()).bytes(),
            39
        );
    }

    #[test]
    fn a_recorded_size_needs_both_annotations() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut desc = Descriptor::new(crate::media::LAYER_GZIP, d.parse().unwrap(), 20);
        assert_eq!(LayerSize::recorded(&desc), None);
        desc.annotations.insert(UNCOMPRESSED_SIZE.into(), "1024".into());
        assert_eq!(LayerSize::recorded(&desc), None);
        desc.annotations.insert(CONTENT_SIZE.into(), "3".into());
        assert_eq!(
            LayerSize::recorded(&desc),
            Some(LayerSize {
                content: 3,
                tar: 1024,
                stored: 20
            })
        );
    }
}
