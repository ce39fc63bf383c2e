//! image-stack: stack layers (a base image plus layer descriptors) into an image (`--tag`,
//! docker commit), a directory (`--rootfs`), one flat tar (`--tar`), or a container's file
//! system (`--mount`, an overlay of the layer cache; `--commit DIR` commits it in one step).

mod change;
mod commit;
mod flatten;
mod mount;
mod rebase;
mod rewrite;
mod rootfs;
mod squash;
mod stack;

/// What the fuzz targets (fuzz/) drive: the `-c` parser and loading a base image.
#[doc(hidden)]
pub mod fuzz {
    pub use crate::change::apply as apply_changes;
    pub use crate::stack::Stack;
}

use clap::Parser;
use common::Result;
use common::cli::{Exit, PoisonOnDrop};
use common::reference::ImageRef;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  # docker commit: a changeset on top of a base image
  layer-diff store:httpd:2.4 web/ | layer-pack --layout store \\
    | image-stack --from store:httpd:2.4 --layer - --tag store:web:v1 -m \"Add site\"
  # a base image from a directory
  layer-pack --layout store base/ | image-stack --layer - --tag store:base --created-by debootstrap
  # config changes only, as docker commit -c
  image-stack --from store:web:v1 -c 'CMD [\"httpd-foreground\"]' -c 'EXPOSE 80' --tag store:web:v2
  # unpack the union into a directory, or write it as one flat tar (squash)
  image-stack --from store:web:v1 --rootfs web/
  image-stack --from store:web:v2 --tar | layer-pack --layout store | image-stack --layer - --tag store:web:flat
  # roll back: the image without its top layer, or an older image by its id (docker tag 9977b)
  image-stack --from store:web:v2 --drop 1 --tag store:web:rollback
  image-stack --from store@9977b --tag store:web:rollback
  # the image's own layers on a patched base (no layer read), and what would change first
  image-stack --from store:web:v1 --rebase store:debian:12.9 --dry-run --tag store:web:v1-rebased
  image-stack --from store:web:v1 --rebase store:debian:12.9 --tag store:web:v1-rebased
  # squash what the image adds to its base into one layer, the base's layers kept and shared
  image-stack --from store:web:v2 --squash-above store:debian:12 --tag store:web:squashed
  image-stack --from store:web:v2 --squash 3 --tag store:web:squashed
  # a container: an overlay of the cached layers with an upper directory of its own
  image-stack --from store:httpd:2.4 --mount web/
  chroot web/ /bin/sh -c 'echo hello > /srv/index.html'
  image-stack --commit web/ --tag store:web:v1 -m \"Add site\"    # docker commit in one step
  image-stack --unmount web/

--tag records the --from image in the new manifest (org.opencontainers.image.base.digest and,
when --from named a tag, org.opencontainers.image.base.name), unless --drop removed layers of
it: image-ls and image-prune know it as the new image's parent. --rebase and --squash-above
record NEWBASE or BASE there. A commit of -c changes alone, without --created-by, records the
instructions as its history entry's created_by.

The layer cache and the mounts' upper directories live in LAYOUT/.layerkit (0700);
image-prune removes the cache entries no image needs and no live mount uses.";

/// Stack layers: into an image, a directory, or one tar.
#[derive(Parser, Debug)]
#[command(
    name = "image-stack",
    version,
    about = "Stack layers: into an image (--tag), a directory (--rootfs), one flat tar (--tar) or a mount (--mount)",
    after_help = EXAMPLES,
    group = clap::ArgGroup::new("sink").required(true).multiple(false)
)]
pub struct Args {
    /// The base image (LAYOUT:REF, LAYOUT, LAYOUT@sha256:…, LAYOUT@ID); default: empty (scratch)
    #[arg(long, value_name = "IMAGE")]
    pub from: Option<String>,

    /// The platform to pick from a multi-platform base, or to record for a scratch image
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// A file of LAYER DESCRIPTORs (JSON Lines, `-` for stdin), stacked in order; repeatable
    #[arg(long = "layer", value_name = "FILE")]
    pub layers: Vec<PathBuf>,

    /// Remove the base image's top N layers and their history before stacking
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub drop: usize,

    /// Write the stack as an image with this tag, and print its manifest's descriptor
    #[arg(long, value_name = "IMAGE", group = "sink")]
    pub tag: Option<String>,

    /// Apply the stack into this directory (created if absent; must be empty)
    #[arg(long, value_name = "DIR", group = "sink")]
    pub rootfs: Option<PathBuf>,

    /// Write the union of the stack as one flat tar to stdout
    #[arg(long, group = "sink")]
    pub tar: bool,

    /// Mount the image at DIR (created if absent; must be empty): an overlay of its layers,
    /// each extracted once into the layout's layer cache, with a fresh upper directory of its
    /// own; prints one JSON line (image, manifest, mount, upper, work, lower, driver). As root
    /// the kernel's overlayfs, else fuse-overlayfs (LAYERKIT_MOUNT_DRIVER=overlay|fuse-overlayfs
    /// chooses)
    #[arg(long, value_name = "DIR", group = "sink", requires = "from", conflicts_with_all = ["layers", "rootless"])]
    pub mount: Option<PathBuf>,

    /// Unmount an image-stack mount and remove its upper and work directories
    #[arg(long, value_name = "DIR", group = "sink", conflicts_with_all = ["from", "layers", "drop", "rootless", "platform"])]
    pub unmount: Option<PathBuf>,

    /// With --tag: commit DIR in one step (docker commit): the changes of a mount (its image is
    /// the base), or of a directory against --from IMAGE
    #[arg(long, value_name = "DIR", requires = "tag", conflicts_with_all = ["layers", "drop"])]
    pub commit: Option<PathBuf>,

    /// Apply a Dockerfile instruction to the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER,
    /// VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK, ONBUILD); repeatable
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,

    /// The history comment of the new entries
    #[arg(short = 'm', long = "message", value_name = "MESSAGE")]
    pub message: Option<String>,

    /// The author of the image and of the new history entries
    #[arg(short = 'a', long, value_name = "AUTHOR")]
    pub author: Option<String>,

    /// The `created_by` of the new history entries (what made the layer)
    #[arg(long, value_name = "COMMAND")]
    pub created_by: Option<String>,

    /// Without root: skip chown and mknod, recording owners as umoci does, instead of failing
    #[arg(long, conflicts_with_all = ["tag", "tar"])]
    pub rootless: bool,

    /// Silence everything but errors
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: common::cli::Limits,
    #[command(flatten)]
    pub rewrite: rewrite::Rewrite,
}

pub fn run(args: Args) -> Result<Exit> {
    // Not `requires = "tag"`: clap waives a requirement whose target conflicts with an argument
    // given (here the other sinks of the exclusive group), so it would never fire.
    if args.tag.is_none()
        && (!args.changes.is_empty()
            || args.message.is_some()
            || args.author.is_some()
            || args.created_by.is_some())
    {
        anyhow::bail!("usage: -c, -m, --author and --created-by describe a commit: they need --tag");
    }
    if let Some(done) = rewrite::run(&args)? {
        return Ok(done);
    }
    let max_json = args.limits.max_json;
    if let Some(dir) = &args.unmount {
        mount::unmount(dir)?;
        return Ok(Exit::Success);
    }
    let target = args.tag.as_deref().map(ImageRef::parse).transpose()?;
    // A mount's base is the image it was made of: --from, if given, must name that one.
    let container = args
        .commit
        .as_deref()
        .map(|dir| commit::Container::of(dir, args.from.as_deref()))
        .transpose()?;
    let from = container
        .as_ref()
        .map(|c| c.base.as_str())
        .or(args.from.as_deref());
    let mut stack = stack::Stack::load(
        from.map(|f| ("--from", f)),
        args.platform.as_deref(),
        args.drop,
        &args.layers,
        max_json,
    )?;
    if let (Some(c), Some(target)) = (&container, &target) {
        c.check_base(&stack)?;
        let layout = common::layout::Layout::open_or_create(&target.layout)?.with_max_json(max_json);
        common::cli::say_if_created("image-stack", &layout, args.quiet);
        let desc = c.pack(&layout, args.platform.as_deref(), max_json, args.quiet)?;
        stack.push(&desc)?;
    }
    if let Some(dir) = &args.mount {
        let image = args.from.as_deref().unwrap_or_default();
        let mounted = mount::mount(&stack, image, dir, args.quiet)?;
        common::json::write_line(std::io::stdout().lock(), &mounted)?;
    } else if let Some(target) = target {
        let msg = commit::Message {
            comment: args.message,
            author: args.author,
            created_by: args.created_by,
            changes: args.changes,
        };
        let desc = commit::commit(&stack, &target, &msg, max_json, args.quiet)?;
        common::json::write_line(std::io::stdout().lock(), &desc)?;
    } else if let Some(dir) = &args.rootfs {
        rootfs::unpack(&stack, dir, args.rootless, args.quiet)?;
    } else {
        let out = PoisonOnDrop::stdout(common::cli::tar_stdout()?);
        flatten::write(&stack, out, args.quiet)?.finish()?;
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
        assert!(Args::try_parse_from(["image-stack", "--tar", "--tag", "s:x"]).is_err());
        assert!(Args::try_parse_from(["image-stack", "--from", "s:x"]).is_err());
        let a = Args::try_parse_from([
            "image-stack",
            "--layer",
            "-",
            "--layer",
            "f",
            "-c",
            "CMD x",
            "--tag",
            "s",
        ])
        .unwrap();
        assert_eq!(a.layers, [PathBuf::from("-"), PathBuf::from("f")]);
        for sink in [&["--tar"][..], &["--tag", "s:x"]] {
            let args = [&["image-stack", "--rootless"][..], sink].concat();
            let err = Args::try_parse_from(args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict, "{sink:?}");
        }
        assert!(Args::try_parse_from(["image-stack", "--rootless", "--rootfs", "d"]).is_ok());
    }
}
