//! image-ls: the images of an OCI layout, as `docker images` lists them, and (`--disk-usage`)
//! what the layout holds on disk, as `docker system df` shows it.

mod list;
mod render;
mod usage;

use anyhow::Context;
use clap::Parser;
use common::cli::{Exit, Format};
use common::images::Images;
use common::layout::Layout;
use common::progress::Progress;
use common::size::Sizes;
use std::io::{self, Write};
use std::path::PathBuf;

pub use common::Result;

const AFTER_HELP: &str = "\
Examples:
  image-ls store
  image-ls -a store                             # intermediate images too
  image-ls -f dangling=true -q store            # the ids image-prune store would remove
  image-ls -f reference='web:*' --digests store
  image-ls --format json store | jq -r 'select(.tag == \"v1\") | .size'
  image-ls --disk-usage -v store                # docker system df -v

Rows are newest first, one per tag; a REF is split as docker splits a reference, at the last
':' not followed by '/' (web:v1 is web, v1; a REF without one is a repository without a tag).
An untagged image is dangling (shown as <none> <none>) unless it is the parent of another
image: then it is intermediate, shown only with -a (image-prune keeps it). SIZE is the sum of
the image's layer sizes as image-history shows them (docker's overlay2 SIZE); our own images
record them, others are measured once per layer from its tar headers. IMAGE ID is the config
digest (12 hex digits unless --no-trunc); -q prints one per row, as docker does.

Filters (-f, repeatable; an unknown one is an error): dangling=true|false, reference=PATTERN
(a glob on REPOSITORY:TAG or REPOSITORY), before=IMAGE, since=IMAGE (a REF of the layout, or
an id prefix), label=KEY or label=KEY=VALUE (all must match).

--format json prints one object per row (JSON Lines), full values: repository, tag (null
for <none>), id, digest (the manifest's), created (RFC 3339 or null), size (content bytes),
tarSize (the layers' tars), storedSize (the blobs as stored: layers, config, manifest),
dangling, intermediate, parent (the parent's id or null).

--disk-usage shows what the layout holds, as docker system df: TYPE TOTAL ACTIVE SIZE
RECLAIMABLE, for Images (ACTIVE: tagged), Unreferenced blobs and Temporary files (ACTIVE:
what image-prune keeps, a writer may be using it), and the Layer cache of image-stack --mount
(ACTIVE: entries an image needs or a live mount uses). Sizes are the bytes of the blob files,
shared blobs counted once, and the cache's disk usage; RECLAIMABLE is what image-prune LAYOUT
would remove now (its dry run). -v adds one row per image with its SIZE, SHARED SIZE (blobs other images use too) and
UNIQUE SIZE. With --format json: one document (the two tables' rows have two shapes), on one
line: {\"types\": [{type, total, active, size, reclaimable}], \"images\" (with -v): [{repository,
tag, id, created, size, sharedSize, uniqueSize}]}. -q and --format json are refused together.

Environment (tests only): LAYERKIT_NOW fixes \"now\" for relative times, as RFC 3339 or
seconds since the epoch.";

/// List the images of an OCI layout, as docker images does.
#[derive(Parser, Debug)]
#[command(name = "image-ls", version, after_help = AFTER_HELP)]
pub struct Args {
    /// The OCI image layout directory.
    #[arg(value_name = "LAYOUT")]
    pub layout: PathBuf,
    /// Show all images, intermediate ones (untagged parents of other images) included.
    #[arg(short, long)]
    pub all: bool,
    /// Only show image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show the manifest digests.
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output (full image ids).
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter the rows: dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE,
    /// label=KEY[=VALUE]; repeatable.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Show the layout's disk usage, as docker system df.
    #[arg(long, conflicts_with_all = ["all", "quiet", "digests", "filter"])]
    pub disk_usage: bool,
    /// With --disk-usage: one row per image too, as docker system df -v.
    #[arg(short, long, requires = "disk_usage")]
    pub verbose: bool,
    #[command(flatten)]
    pub limits: common::cli::Limits,
}

pub fn run(args: Args) -> Result<Exit> {
    args.format.check_quiet(args.quiet)?;
    let filters = list::Filters::parse(&args.filter)?;
    let layout = Layout::open(&args.layout)?.with_max_json(args.limits.max_json);
    let images = Images::read(&layout).with_context(|| args.layout.display().to_string())?;
    for (entry, why) in &images.skipped {
        common::progress::message(&format!("image-ls: warning: {}: not listed: {why}", entry.digest));
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.disk_usage {
        let usage = usage::measure(&layout, &images)?;
        let opts = render::Options {
            no_trunc: args.no_trunc,
            json: args.format == Format::Json,
        };
        render::usage(&mut out, &images, &usage, args.verbose, &opts)?;
        out.flush()?;
        return Ok(Exit::Success);
    }
    let rows = list::rows(&layout, &images, args.all, &filters)?;
    if args.quiet {
        render::ids(&mut out, &images, &rows, args.no_trunc)?;
    } else {
        let progress = Progress::bytes("reading layers", false);
        let mut sizes = Sizes::default();
        let mut measured = vec![None; images.list.len()];
        for r in &rows {
            if measured[r.image].is_none() {
                let im = &images.list[r.image];
                let diff_ids = im.config.diff_ids();
                let mut total = render::ImageSize::default();
                for (n, layer) in im.manifest.layers.iter().enumerate() {
                    let s = sizes
                        .layer(&layout, layer, diff_ids.get(n), &progress)
                        .with_context(|| format!("image {}", im.id()))?;
                    total.add(&s);
                }
                total.stored += im.descriptor.size + im.manifest.config.size;
                measured[r.image] = Some(total);
            }
        }
        drop(progress);
        let opts = render::Options {
            no_trunc: args.no_trunc,
            json: args.format == Format::Json,
        };
        render::images(&mut out, &images, &rows, &measured, args.digests, &opts)?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
        assert!(
            Args::try_parse_from(["image-ls", "-v", "s"]).is_err(),
            "-v needs --disk-usage"
        );
        assert!(Args::try_parse_from(["image-ls", "--disk-usage", "-a", "s"]).is_err());
        let a =
            Args::try_parse_from(["image-ls", "-aq", "-f", "dangling=true", "-f", "label=x", "s"]).unwrap();
        assert!(a.all && a.quiet && a.filter.len() == 2);
    }
}
