//! `--tar`: the union of the stack as one flat tar, without extracting anything.
//!
//! One pass over the layers stacks the tar headers into a [`Tree`] (whiteouts, opaque
//! directories, hard links as they stand when each layer is applied) and copies every file's
//! content into a spool as it streams by: reading a layer twice would decompress and verify it
//! twice, which costs more than spooling the few files that a later layer hides. Then the tree
//! is written in the fixed order every layerkit layer uses, so the same image always gives the
//! same bytes and `layer-pack` turns it into the squashed layer.

use crate::stack::Stack;
use anyhow::Context;
use common::changeset::write_tree;
use common::content::Contents;
use common::progress::Unit;
use common::tarwrite::TarWriter;
use common::tree::Tree;
use std::io::Write;

pub fn write<W: Write>(stack: &Stack, out: W, quiet: bool) -> crate::Result<W> {
    let progress = stack.progress("reading layers", quiet);
    let mut tree = Tree::new();
    let mut contents = Contents::new();
    for (i, layer) in stack.layers.iter().enumerate() {
        progress.set_layer(i + 1, stack.layers.len());
        let mut stream = stack.open_layer(layer)?;
        tree.apply_layer_with(i, progress.reader(&mut stream), &mut |index, _, content| {
            contents.spool_entry(i, index, content)
        })
        .with_context(|| format!("layer {}", layer.desc.digest))?;
        stream.finish()?;
    }
    let total = common::changeset::tree_tar_len_estimate(&tree);
    progress.start("writing the tar", Unit::Bytes, Some(total));
    let out = write_tree(&tree, &contents, TarWriter::new(progress.writer(out))?)?;
    Ok(out.into_inner())
}
