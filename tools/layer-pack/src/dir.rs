//! A directory as one whole-tree layer: read by `common::tree` as layer-diff reads a directory,
//! written by `common::changeset::write_tree` in the same fixed order, so `layer-pack DIR` is
//! the tar `layer-diff` would write against an empty lower tree.

use crate::check::Packed;
use common::changeset::write_tree;
use common::content::Contents;
use common::digest::HashingWriter;
use common::progress::{Progress, Unit};
use common::tarwrite::TarWriter;
use common::tree::{DirOptions, Tree};
use std::io::Write;
use std::path::Path;

/// Writes the tar of the tree at `dir` to `out`.
pub fn pack<W: Write>(dir: &Path, progress: &Progress, out: &mut W) -> common::Result<Packed> {
    let warn = |msg: &str| progress.warn("layer-pack", msg);
    let opts = DirOptions {
        warn: Some(&warn),
        ..DirOptions::default()
    };
    progress.start(&format!("reading {}", dir.display()), Unit::Busy, None);
    let tree = Tree::from_dir(dir, &opts)?;
    let total = common::changeset::tree_tar_len_estimate(&tree);
    progress.start("packing", Unit::Bytes, Some(total));
    let counted = progress.writer(out);
    let tar = write_tree(
        &tree,
        &Contents::new(),
        TarWriter::new(HashingWriter::new(counted))?,
    )?;
    let (_, diff_id, len) = tar.finish();
    Ok(Packed { diff_id, len })
}
