//! Rewrites of an existing image into a new one: `--rebase` (the layers above its base restacked
//! on another base) and `--squash-above`/`--squash` (the layers above a base made one). What
//! both need: the base an image is built on, checked by its diffIDs, and where the image's
//! history stops describing the base.

use crate::stack::{Base, Stack};
use anyhow::{Context, bail};
use common::cli::Exit;
use common::compress::Compression;
use common::config::HistoryEntry;
use common::reference::ImageRef;
use std::collections::BTreeMap;

/// The flags of the rewrites (flattened into image-stack's).
#[derive(clap::Args, Debug, Default)]
pub struct Rewrite {
    /// Restack the --from image's own layers (those above its base) on NEWBASE, with their
    /// history; the config is NEWBASE's plus the image's own changes. Reads no layer
    #[arg(long, value_name = "NEWBASE",
          conflicts_with_all = ["layers", "drop", "changes", "message", "author", "created_by", "rootfs", "tar", "rootless"])]
    pub rebase: Option<String>,

    /// With --rebase: the image's old base, when its manifest does not record it
    /// (org.opencontainers.image.base.digest)
    #[arg(long, value_name = "IMAGE", requires = "rebase")]
    pub old_base: Option<String>,

    /// With --rebase: print the new image's layers (JSON Lines) and the config conflicts, and
    /// write nothing
    #[arg(long, requires = "rebase")]
    pub dry_run: bool,

    /// Keep BASE's layers (the same blobs) and squash the --from image's layers above them
    /// into one
    #[arg(long, value_name = "BASE",
          conflicts_with_all = ["rebase", "squash", "layers", "drop", "changes", "rootfs", "tar", "rootless"])]
    pub squash_above: Option<String>,

    /// Squash the --from image's top N layers into one
    #[arg(long, value_name = "N",
          conflicts_with_all = ["rebase", "layers", "drop", "changes", "rootfs", "tar", "rootless"])]
    pub squash: Option<usize>,

    /// With --squash or --squash-above: the squashed layer's compression [default: gzip]
    #[arg(long, value_enum)]
    pub compress: Option<Compression>,

    /// With --squash or --squash-above: the compression level (gzip 0-9, default 6; zstd 1-22,
    /// default 3)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub level: Option<i32>,
}

/// Writes the rewritten image (`config`, its manifest carrying `annotations`), points `target`'s
/// tag at it and prints the manifest's descriptor, as `--tag` does.
pub fn tag(
    stack: &Stack,
    target: &ImageRef,
    config: common::config::ImageConfig,
    annotations: BTreeMap<String, String>,
    args: &crate::Args,
) -> crate::Result<()> {
    let desc = crate::commit::commit_config(
        stack,
        target,
        config,
        annotations,
        args.limits.max_json,
        args.quiet,
    )?;
    common::json::write_line(std::io::stdout().lock(), &desc)?;
    Ok(())
}

/// Runs a rewrite when one is asked for; None otherwise.
pub fn run(args: &crate::Args) -> crate::Result<Option<Exit>> {
    let r = &args.rewrite;
    let squash = r.squash_above.is_some() || r.squash.is_some();
    if !squash && (r.compress.is_some() || r.level.is_some()) {
        bail!("usage: --compress and --level are for the layer --squash and --squash-above write");
    }
    if !squash && r.rebase.is_none() {
        return Ok(None);
    }
    let what = if squash { "--squash" } else { "--rebase" };
    let from = args
        .from
        .as_deref()
        .with_context(|| format!("usage: {what} rewrites an image: name it with --from IMAGE"))?;
    let tag = args
        .tag
        .as_deref()
        .with_context(|| format!("usage: {what} writes a new image: name it with --tag IMAGE"))?;
    let target = ImageRef::parse(tag)?;
    target.tag()?;
    match &r.rebase {
        Some(new_base) => crate::rebase::run(args, from, new_base, &target)?,
        None => crate::squash::run(args, from, &target)?,
    }
    Ok(Some(Exit::Success))
}

/// An image as read for a rewrite: the stack of its layers, and its reference.
pub struct Image {
    pub name: ImageRef,
    pub stack: Stack,
}

impl Image {
    /// The image `name`, which the flag `flag` named (errors say which).
    pub fn load(flag: &str, name: &str, args: &crate::Args) -> crate::Result<Image> {
        let stack = Stack::load(
            Some((flag, name)),
            args.platform.as_deref(),
            0,
            &[],
            args.limits.max_json,
        )?;
        Ok(Image {
            name: ImageRef::parse(name)?,
            stack,
        })
    }

    pub fn layers(&self) -> usize {
        self.stack.layers.len()
    }

    /// The manifest annotations of an image built on this one (image-spec's base
    /// annotations): its manifest digest, and its tag when it was named by one.
    pub fn base_annotations(&self) -> BTreeMap<String, String> {
        self.stack
            .base
            .as_ref()
            .map(Base::annotations)
            .unwrap_or_default()
    }
}

/// Where an image stops being its base: the base's layers and history entries are its
/// first `layers` layers and `history` history entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub layers: usize,
    pub history: usize,
}

/// Checks that `base` is what `image` is built on: its diffIDs are the first of the image's.
/// The image's history describes the base with as many entries as the base's own, made and
/// empty layers alike.
pub fn split(image: &Image, base: &Image) -> crate::Result<Split> {
    let (ours, theirs) = (image.stack.config.diff_ids(), base.stack.config.diff_ids());
    if theirs.len() > ours.len() {
        bail!(
            "{} is not built on {}: the base has {} layers, the image {}",
            image.name,
            base.name,
            theirs.len(),
            ours.len()
        );
    }
    if let Some(i) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
        bail!(
            "{} is not built on {}: its layer {} is {}, the base's is {} (the base's diffIDs must be the first of the image's)",
            image.name,
            base.name,
            i + 1,
            ours[i],
            theirs[i]
        );
    }
    let (ours, theirs) = (image.stack.config.history(), base.stack.config.history());
    let same_steps = theirs.len() <= ours.len()
        && ours
            .iter()
            .zip(theirs)
            .all(|(a, b)| a.is_empty_layer() == b.is_empty_layer());
    if !same_steps {
        bail!(
            "{}: its history does not start with the {} entries of {}'s",
            image.name,
            theirs.len(),
            base.name
        );
    }
    Ok(Split {
        layers: base.layers(),
        history: theirs.len(),
    })
}

/// Gives the first `layers` layers a history entry each, when the history describes fewer
/// (image-spec matches entries to layers from the bottom): what is added after them then
/// describes the layers above.
pub fn pad_history(history: &mut Vec<HistoryEntry>, layers: usize) {
    let described = history.iter().filter(|h| !h.is_empty_layer()).count();
    history.extend((described..layers).map(|_| HistoryEntry::default()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(empty: bool) -> HistoryEntry {
        HistoryEntry {
            empty_layer: empty.then_some(true),
            ..HistoryEntry::default()
        }
    }

    #[test]
    fn padding_gives_each_layer_below_an_entry() {
        let mut h = vec![entry(false), entry(true)];
        pad_history(&mut h, 3);
        assert_eq!(h, [entry(false), entry(true), entry(false), entry(false)]);
        pad_history(&mut h, 2);
        assert_eq!(h.len(), 4);
    }
}
