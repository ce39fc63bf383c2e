//! A directory as one whole-tree layer: read by `common::tree` as layer-diff reads a directory,
//! written by `common::changeset::write_tree` in the same fixed order, so `layer-pack DIR` is
//! the tar `layer-diff` would write against an empty lower tree.

use crate::check::Packed;
use common::changeset::write_tree;
use common::content::Contents;
use common::digest::Hasher;
use common::progress::{Progress, Unit};
use common::size::ContentSize;
use common::tarwrite::TarWriter;
use common::tree::{DirOptions, Tree};
use std::io::{self, Write};
use std::path::Path;

/// Writes the tar of the tree at `dir` to `out`. `diff_id`: hash the tar.
pub fn pack<W: Write>(dir: &Path, progress: &Progress, out: &mut W, diff_id: bool) -> common::Result<Packed> {
    let warn = |msg: &str| progress.warn("layer-pack", msg);
    let opts = DirOptions {
        warn: Some(&warn),
        ..DirOptions::default()
    };
    progress.start(&format!("reading {}", dir.display()), Unit::Busy, None);
    let tree = Tree::from_dir(dir, &opts)?;
    let content = ContentSize::of_tree(&tree);
    let total = common::changeset::tree_tar_len_estimate(&tree);
    progress.start("packing", Unit::Bytes, Some(total));
    let counted = Counted {
        inner: out,
        progress,
        diff: diff_id.then(Hasher::new),
        len: 0,
    };
    let tar = write_tree(&tree, &Contents::new(), TarWriter::new(counted)?)?;
    Ok(Packed {
        diff_id: tar.diff.map(|h| h.finish().0),
        len: tar.len,
        content,
    })
}

/// Counts the tar's bytes (and on the progress line), and hashes them when asked to.
struct Counted<'a, W> {
    inner: &'a mut W,
    progress: &'a Progress,
    diff: Option<Hasher>,
    len: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.diff {
            h.update(&buf[..n]);
        }
        self.len += n as u64;
        self.progress.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
