//! `--tar`: the union of the stack as one flat tar, without extracting anything.
//!
//! Two passes over the layers: the first stacks the tar headers into a [`Tree`] (whiteouts,
//! opaque directories, hard links as they stand when each layer is applied); the second copies
//! the content of the files that survive into a spool. Then the tree is written in the fixed
//! order every layerkit layer uses, so the same image always gives the same bytes and
//! `layer-pack` turns it into the squashed layer.

use crate::stack::Stack;
use anyhow::Context;
use common::changeset::{Contents, Plan};
use common::progress::Progress;
use common::tarwrite::TarWriter;
use common::tree::Tree;
use std::io::Write;

pub fn write<W: Write>(stack: &Stack, out: W, quiet: bool) -> crate::Result<W> {
    let progress = Progress::bytes("reading layers", quiet);
    let mut tree = Tree::new();
    for (i, layer) in stack.layers.iter().enumerate() {
        let mut stream = stack.open_layer(layer)?;
        tree.apply_layer(i, progress.reader(&mut stream))
            .with_context(|| format!("layer {}", layer.desc.digest))?;
        stream.finish()?;
    }
    let mut contents = Contents::new();
    let plan = Plan::whole(&tree);
    for (i, wanted) in Contents::wanted(plan.content_nodes(&tree)) {
        let layer = &stack.layers[i];
        let mut stream = stack.open_layer(layer)?;
        contents
            .spool_layer(i, progress.reader(&mut stream), &wanted)
            .with_context(|| format!("layer {}", layer.desc.digest))?;
        stream.finish()?;
    }
    drop(progress);
    plan.write(&tree, &contents, TarWriter::new(out)?)
}
