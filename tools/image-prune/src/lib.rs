//! image-prune: remove dangling images and the blobs no image needs from an OCI image layout
//! (docker image prune), or named images (docker rmi), safely while other tools write to it.
//! See [`prune`] for the rules and the protocol, [`rmi`] for removing images by name.

mod graph;
mod prune;
mod report;
mod rmi;

pub use report::Report;

use anyhow::{Context, bail};
use clap::Parser;
use common::cli::Exit;
use common::images::LabelFilter;
use common::layout::Layout;
use common::progress::Progress;
use common::reference::{ImageRef, Target};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use common::Result;

const EXAMPLES: &str = "\
Examples:
  image-prune store                         # dangling images and unreferenced blobs
  image-prune --dry-run store               # what would go, and how much space
  image-prune store:web:v1                  # docker rmi: untag, remove what nothing needs
  image-prune store@9977b                   # an image by a prefix of its id
  image-prune --intermediate store          # untagged parents of other images too
  image-prune --filter until=24h store      # only dangling images older than a day
  image-prune --filter label=tier=front store  # only dangling images with that label
  image-prune --grace 0 store               # also orphans just written (no writer running!)
  image-prune --json store | jq .reclaimedSpace";

const PROTOCOL: &str = "\
What goes (with a LAYOUT, as docker image prune):
  Dangling images: index.json entries without an org.opencontainers.image.ref.name (what a
  moved tag leaves, like docker's <none>:<none>) that are the parent of no kept image, then
  every blob that no remaining entry reaches through manifests, image indexes (nested too),
  configs and layers. An untagged entry is not dangling when a kept image reaches it, when
  a --filter keeps it (until=, label=, label!=), when it is an intermediate image (the parent of a kept image: the
  manifest its org.opencontainers.image.base.digest annotation names, as image-stack --tag
  records it, or else an image whose history and layers are a strict prefix of the other's;
  docker keeps these, so image-history shows their ids and --from LAYOUT@ID can roll back to
  them; --intermediate removes them too), or when it is a referrer (its `subject` is a kept
  image: signatures and SBOMs stay with their image). A subject is a weak reference: a kept
  referrer does not keep its subject.

What goes (with IMAGEs, as docker rmi):
  Each IMAGE's tag leaves index.json (LAYOUT:REF; LAYOUT alone is a layout to prune, so the
  tag latest is LAYOUT:latest); an image left with no tag and no child image is removed,
  then each untagged parent no other image needs, with every blob nothing else reaches
  (orphans, other dangling images and the layer cache are left to a prune of the layout).
  By id (LAYOUT@ID, LAYOUT@sha256:...) every tag of the image goes: refused for an image
  with several tags unless --force, and for an image with child images always. The IMAGEs are of one layout; all are decided
  before anything changes, so one refused leaves the layout as it was. Report, as docker rmi:
  'Untagged: web:v1', 'Deleted: sha256:<image id>', then 'Total reclaimed space: ...'.
  Orphans (blobs nothing references, not even a dangling image removed by this run) go only
  when older than --grace (by mtime). Blobs of the dangling images removed go at once, unless
  a writer has claimed one since (below). An unreferenced manifest or index older than --grace
  goes with what it references, like a dangling image; a younger one (a writer storing an
  image) keeps what it references.
  Temporary files (.layerkit-tmp-*) left by killed writers go when older than --grace; one a
  live writer holds (writers keep a flock on theirs) stays, even with --grace 0. The report
  names each, removed or kept, with its size. (Only SIGKILL or a crash leaves one: on SIGINT,
  SIGTERM or SIGHUP a tool removes what it was writing.)
  A kept image whose manifest is absent from the layout is warned about (what only it
  referenced becomes orphans); a corrupt one stops the run before anything changes.
  With a LAYOUT, the layer cache of image-stack --mount (LAYOUT/.layerkit/layers) is pruned
  too (IMAGEs leave it to the next prune of the layout): entries no remaining image
  needs and no live mount (in /proc/self/mountinfo) uses, damaged entries, and what killed
  extractions left; an entry a mount is being made of is locked and stays. Records of mounts
  that are gone (a reboot, a plain umount) go with their upper directories: commit first.

Concurrency protocol (safe while layer-pack, image-stack --tag and other image-prune runs
work on the same layout):
  1. take the layout's lock (.layerkit.lock, flock), the one every index.json writer takes;
  2. read index.json and compute what is reachable from that one snapshot;
  3. list the blobs; rewrite index.json atomically without the dangling entries;
  4. delete the blobs, each manifest or index before what it references, then temporary
     files no writer holds; release the lock.
  Writers claim blobs: one that finds its blob already stored (layer-pack's \"reused\": true,
  image-stack reusing a layer or config) sets the blob's mtime to now. A blob of a removed
  image with an mtime newer than that image's manifest and younger than --grace was claimed
  after the image was made: it stays. Writers claim under a shared flock on the blob, which
  image-prune holds exclusively while it reads the mtime and deletes, so no claim is lost: a
  writer that comes later finds no blob and stores it again. A blob just
  written (layer-pack | image-stack) is an orphan younger than --grace, so it stays too.
  Under the same lock, a tag is only set on a complete image (manifest, config and layers all
  stored), and image-stack stores the manifest itself there. A claim covers the images made
  before it: if another writer makes an image with the same blob after the claim and that
  image is pruned before the first writer tags, the tag is refused (exit 2, nothing changed)
  and the commit can be run again. Keep --grace longer than your longest pipeline; --grace 0
  is for layouts no writer is using. A crash at any point leaves a valid layout: at worst,
  unreferenced blobs for the next run.
  --dry-run takes no lock and changes nothing.

Report:
  As docker image prune: 'Deleted Images:', one 'deleted: sha256:...' line per removed image
  (its id: the config digest, or the entry's digest for what is no image), then per other
  removed blob, a blank line, 'Total reclaimed space: 24.3MB' (4 significant digits,
  1000-based); only 'Total reclaimed space: 0B' when nothing went. Layer cache entries and
  records of mounts that are gone follow the images, under 'Deleted layer cache entries:' and
  'Deleted records of mounts that are gone:'. Before the total, 'Temporary files:' lists each
  temporary file, 'removed: NAME (SIZE)' or 'kept: NAME (SIZE): WHY'. --dry-run reports what
  would go in the same shape, in its own words ('Would delete images:', 'would delete:',
  'Would untag:', 'Total space that would be reclaimed:'). keptByGrace names the unreferenced
  blobs the grace period keeps: orphans, and manifests or indexes a writer may be storing (with
  what they reference). --json prints one JSON document instead:
  {\"blobs\":[{\"digest\",\"size\"}],\"dryRun\",\"images\":[{\"digest\",\"id\",\"mediaType\"}],
   \"keptByGrace\":[digest],\"keptTemporaryFiles\":[{\"name\",\"size\",\"reason\"}],
   \"layerCache\":[{\"name\",\"size\"}],\"reclaimedSpace\",\"staleMounts\":[{\"name\",\"size\"}],
   \"temporaryFiles\":[{\"name\",\"size\"}],\"untagged\":[tag]}
  (reason: \"inUse\", a writer holds it, or \"grace\", younger than --grace)

Exit status: 0 success, 2 any error (the layout is then left as it was, or valid with
garbage left for the next run).";

/// Remove dangling images and the blobs no image needs from an OCI image layout, or images by
/// name.
#[derive(Parser, Debug)]
#[command(
    name = "image-prune",
    version,
    about = "Remove dangling images and the blobs no image needs from an OCI image layout (docker image prune), or named images (docker rmi)",
    after_help = EXAMPLES,
    after_long_help = format!("{EXAMPLES}\n\n{PROTOCOL}"),
)]
pub struct Args {
    /// The OCI image layout directory to prune, or the IMAGEs to remove (LAYOUT:REF,
    /// LAYOUT@ID, LAYOUT@sha256:<hex>; all of one layout).
    #[arg(value_name = "LAYOUT|IMAGE", required = true)]
    pub operands: Vec<String>,

    /// Show what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,

    /// As docker image prune's: `until=DURATION` keeps dangling images created (config
    /// `created`) less than DURATION ago (Go syntax: 90s, 10m, 1h30m, 24h); `label=KEY[=VALUE]`
    /// removes only dangling images with that label, `label!=KEY[=VALUE]` only those without.
    /// Repeatable: an image goes when it passes every one.
    #[arg(long, value_name = "FILTER", value_parser = parse_filter)]
    pub filter: Vec<Filter>,

    /// Keep orphan blobs and temporary files younger than this (0: remove them all).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_GRACE, value_parser = common::time::go_duration)]
    pub grace: Duration,

    /// Remove intermediate images too: untagged images that are the parent of a kept image
    /// (docker keeps them).
    #[arg(long)]
    pub intermediate: bool,

    /// Print nothing but errors (the --json document is still printed).
    #[arg(short, long)]
    pub quiet: bool,

    /// With IMAGEs, as docker rmi -f: remove an image named by id even when several tags
    /// name it. With a LAYOUT, accepted for docker's `image prune -f` (image-prune never asks).
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub limits: common::cli::Limits,
}

/// One `--filter`.
#[derive(Clone, Debug)]
pub enum Filter {
    Until(Duration),
    Label(LabelFilter),
}

fn parse_filter(s: &str) -> Result<Filter> {
    let label = |spec: &str, negated| {
        LabelFilter::new(spec, negated)
            .map(Filter::Label)
            .with_context(|| format!("invalid filter {s:?}: label=KEY[=VALUE] or label!=KEY[=VALUE]"))
    };
    if let Some(spec) = s.strip_prefix("label!=") {
        return label(spec, true);
    }
    match s.split_once('=') {
        Some(("until", d)) => Ok(Filter::Until(common::time::go_duration(d)?)),
        Some(("label", spec)) => label(spec, false),
        _ => bail!("unsupported filter {s:?}: until=DURATION, label=KEY[=VALUE] or label!=KEY[=VALUE]"),
    }
}

/// How long an unreferenced blob or temporary file is kept by default: a writer may be about to
/// reference it.
pub const DEFAULT_GRACE: &str = "10m";

/// What a plain `image-prune LAYOUT --grace GRACE` would remove, changing nothing (its
/// `--dry-run`): what image-ls's disk usage calls reclaimable.
pub fn would_remove(layout: &Layout, grace: Duration) -> Result<Report> {
    let opts = prune::Options {
        dry_run: true,
        until: None,
        labels: Vec::new(),
        grace,
        intermediate: false,
    };
    prune::prune(layout, &opts, &Progress::items("", true))
}

/// What the operands name.
enum Operands {
    /// A layout to prune.
    Layout(PathBuf),
    /// Images of one layout to remove.
    Images(Vec<ImageRef>),
}

/// A LAYOUT is an operand without `:` that names no image by id (`store`, `st@re`); anything
/// else is an IMAGE.
fn operands(args: &[String]) -> Result<Operands> {
    let mut layouts = Vec::new();
    let mut images = Vec::new();
    for a in args {
        let r = ImageRef::parse(a)?;
        if !a.contains(':') && matches!(r.target, Target::Tag(_)) {
            layouts.push(PathBuf::from(a));
        } else {
            images.push(r);
        }
    }
    match (layouts.len(), images.first()) {
        (1, None) => Ok(Operands::Layout(layouts.remove(0))),
        (0, Some(first)) => {
            let root = first.layout.clone();
            let same = |p: &Path| std::fs::canonicalize(p).ok();
            if let Some(other) = images.iter().find(|r| same(&r.layout) != same(&root)) {
                bail!(
                    "{other}: IMAGEs of one layout at a time ({} and {})",
                    root.display(),
                    other.layout.display()
                );
            }
            Ok(Operands::Images(images))
        }
        (0, None) => bail!("usage: give a LAYOUT to prune, or IMAGEs to remove"),
        _ => bail!(
            "usage: give one LAYOUT to prune, or IMAGEs (LAYOUT:REF, LAYOUT@ID) to remove, not {}",
            args.join(" ")
        ),
    }
}

pub fn run(args: Args) -> Result<Exit> {
    let mut until = None;
    let mut labels = Vec::new();
    for f in &args.filter {
        match f {
            Filter::Until(d) if until.is_none() => until = Some(*d),
            Filter::Until(_) => bail!("--filter until= given more than once"),
            Filter::Label(l) => labels.push(l.clone()),
        }
    }
    let operands = operands(&args.operands)?;
    let opts = prune::Options {
        dry_run: args.dry_run,
        until,
        labels,
        grace: args.grace,
        intermediate: args.intermediate,
    };
    let progress = Progress::items("checking blobs", args.quiet);
    let (report, named) = match &operands {
        Operands::Layout(root) => {
            let layout = Layout::open(root)?.with_max_json(args.limits.max_json);
            let report = prune::prune(&layout, &opts, &progress)
                .with_context(|| format!("pruning {}", root.display()))?;
            (report, false)
        }
        Operands::Images(images) => {
            if !args.filter.is_empty() || args.intermediate {
                bail!("usage: --filter and --intermediate prune a LAYOUT; IMAGEs are removed by name");
            }
            let layout = Layout::open_image(&images[0])?.with_max_json(args.limits.max_json);
            (rmi::remove(&layout, images, args.force, &opts, &progress)?, true)
        }
    };
    drop(progress);

    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        common::json::write_line(&mut out, &report)?;
    } else if !args.quiet && named {
        report.write_removed(&mut out)?;
    } else if !args.quiet {
        report.write_text(&mut out)?;
    }
    out.flush()?;
    if !args.quiet {
        let mut err = io::stderr();
        for d in &report.missing {
            let _ = writeln!(
                err,
                "image-prune: warning: {d} is referenced but missing from the layout; \
                 blobs only it referenced are treated as orphans"
            );
        }
        if !report.kept_by_grace.is_empty() {
            let _ = writeln!(
                err,
                "image-prune: kept {} unreferenced blob(s) younger than the grace period ({}); \
                 --grace 0 removes them",
                report.kept_by_grace.len(),
                duration_text(args.grace)
            );
        }
        if args.dry_run {
            let _ = writeln!(err, "image-prune: dry run: nothing was removed");
        }
    }
    Ok(Exit::Success)
}

/// A duration as the user would have typed it (`10m`, `1h30m`, `45s`).
fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if sec > 0 || out.is_empty() {
        out += &format!("{sec}s");
    }
    out
}
