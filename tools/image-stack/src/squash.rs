//! `--squash-above BASE` and `--squash N`: the layers above a base made one, the base's layers
//! kept as they are (the same blobs, still shared with every image on that base).
//!
//! The layers are stacked as `--tar` stacks them (the same [`Tree`] rules), and the squashed
//! layer is what the top layers change ([`changeset::above`]): everything they wrote, an
//! explicit whiteout for the top of everything they removed, and whole hard-link groups, the
//! first name carrying the content. A link whose target a later layer removes or overwrites
//! keeps the content it had (crane's flatten loses it, go-containerregistry#977). The layer is
//! compressed as layer-pack compresses (gzip level 6 by default, the same bytes for any number
//! of threads).

use crate::rewrite::{Image, Split, pad_history, split};
use crate::stack::{Home, Layer, Stack};
use anyhow::{Context, bail};
use common::changeset::{self, Plan};
use common::compress::{Compression, Encoder};
use common::config::HistoryEntry;
use common::content::Contents;
use common::descriptor::{Descriptor, LayerDescriptor};
use common::digest::{Digest, HashingWriter};
use common::layout::Layout;
use common::progress::Progress;
use common::reference::ImageRef;
use common::tarwrite::TarWriter;
use common::tree::Tree;
use std::collections::BTreeMap;

pub fn run(args: &crate::Args, from: &str, target: &ImageRef) -> crate::Result<()> {
    let r = &args.rewrite;
    let compress = r.compress.unwrap_or(Compression::Gzip);
    let level = r.level.unwrap_or(compress.default_level());
    compress.check_level(level)?;
    let image = Image::load("--from", from, args)?;
    let (at, annotations) = match (&r.squash_above, r.squash) {
        (Some(base), _) => {
            let base = Image::load("--squash-above", base, args)?;
            (
                split(&image, &base).context("--squash-above")?,
                base.base_annotations(),
            )
        }
        (None, Some(n)) => (top(from, args, &image, n)?, BTreeMap::new()),
        (None, None) => bail!("usage: --squash N or --squash-above BASE"),
    };
    if at.layers == image.layers() {
        bail!("{}: no layer above its first {} to squash", image.name, at.layers);
    }

    let layout = Layout::open_or_create(&target.layout)?.with_max_json(args.limits.max_json);
    let (desc, diff_id) = write_layer(&image.stack, at.layers, &layout, compress, level, args.quiet)?;

    let mut config = image.stack.config.clone();
    let created = crate::commit::created()?;
    let history = config.history.get_or_insert_default();
    let squashed = history.split_off(at.history.min(history.len()));
    pad_history(history, at.layers);
    let steps: Vec<&str> = squashed
        .iter()
        .filter_map(|h| h.created_by.as_deref())
        .filter(|c| !c.is_empty())
        .collect();
    let layers = image.layers() - at.layers;
    history.push(HistoryEntry {
        created: Some(created.clone()),
        created_by: args.created_by.clone().or_else(|| Some(steps.join("; "))),
        author: args.author.clone(),
        comment: args.message.clone().or_else(|| {
            Some(format!(
                "{layers} layer{} and {} history entr{} squashed into one layer",
                if layers == 1 { "" } else { "s" },
                squashed.len(),
                if squashed.len() == 1 { "y" } else { "ies" }
            ))
        }),
        ..HistoryEntry::default()
    });
    config.created = Some(created);
    if let Some(a) = &args.author {
        config.author = Some(a.clone());
    }

    let mut stack = image.stack;
    stack.layers.truncate(at.layers);
    stack.layers.push(Layer {
        desc,
        diff_id,
        home: Home::Layout(layout),
    });
    stack.added = 1;
    crate::rewrite::tag(&stack, target, config, annotations, args)
}

/// `--squash N`: the split below the top `n` layers, with the history `--drop n` keeps.
fn top(from: &str, args: &crate::Args, image: &Image, n: usize) -> crate::Result<Split> {
    if n == 0 || n > image.layers() {
        bail!(
            "--squash {n}: the image has {} layer{} (squash 1 to all of them)",
            image.layers(),
            if image.layers() == 1 { "" } else { "s" }
        );
    }
    let kept = Stack::load(
        Some(("--from", from)),
        args.platform.as_deref(),
        n,
        &[],
        args.limits.max_json,
    )?;
    Ok(Split {
        layers: kept.layers.len(),
        history: kept.config.history().len(),
    })
}

/// Writes the layer the stack's layers above the first `keep` make, as a blob of `layout`.
/// Returns its manifest descriptor and diffID.
fn write_layer(
    stack: &Stack,
    keep: usize,
    layout: &Layout,
    compress: Compression,
    level: i32,
    quiet: bool,
) -> crate::Result<(Descriptor, Digest)> {
    let progress = Progress::bytes("reading layers", quiet);
    let mut tree = Tree::new();
    let mut lower = Tree::new();
    // The top layers' files are spooled as they stream by (reading a layer twice costs more
    // than spooling what a later layer hides); the base's only when a hard-link group needs
    // them, in a second pass over those layers.
    let mut contents = Contents::new();
    for (i, layer) in stack.layers.iter().enumerate() {
        let mut stream = stack.open_layer(layer)?;
        let read = progress.reader(&mut stream);
        if i < keep {
            tree.apply_layer(i, read)
        } else {
            tree.apply_layer_with(i, read, &mut |index, _, content| {
                contents.spool_entry(i, index, content)
            })
        }
        .with_context(|| format!("layer {}", layer.desc.digest))?;
        stream.finish()?;
        if i + 1 == keep {
            lower = tree.clone();
        }
    }
    let keep_u32 = u32::try_from(keep).context("too many layers")?;
    let plan = Plan::changeset(&changeset::above(&lower, &tree, keep_u32), &lower, &tree, false);
    for (i, wanted) in Contents::wanted(plan.content_nodes(&tree)).range(..keep) {
        let layer = &stack.layers[*i];
        let mut stream = stack.open_layer(layer)?;
        contents
            .spool_layer(*i, progress.reader(&mut stream), wanted)
            .with_context(|| format!("layer {}", layer.desc.digest))?;
        stream.finish()?;
    }
    drop(progress);

    let encoder = Encoder::new(
        layout.blob_writer()?,
        compress,
        level,
        common::cli::default_threads(),
    )?;
    // docker's SIZE of the layer, recorded so that its history reads no blob.
    let content = plan.content_size(&tree);
    let tar = plan.write(&tree, &contents, TarWriter::new(HashingWriter::new(encoder))?)?;
    let (encoder, diff_id, len) = tar.finish();
    let blob = encoder.finish().context("compressing the squashed layer")?;
    let (digest, size, _) = blob.commit()?;
    let desc = LayerDescriptor {
        media_type: common::media::layer_type(compress).to_string(),
        digest,
        size,
        diff_id: diff_id.clone(),
        uncompressed_size: len,
        content_size: Some(content.bytes()),
        reused: false,
        source: None,
        annotations: BTreeMap::new(),
    };
    Ok((desc.to_manifest_layer(), diff_id))
}
