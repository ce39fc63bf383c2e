//! layer-diff: what changed between two file systems, as `docker diff` lists it (`--list`,
//! `--json`) and as an OCI layer changeset carries it (a tar on stdout).
//!
//! Both sides are read into a `common::tree::Tree` (in parallel), compared by
//! `common::changeset::diff`, and the tar is written from a `common::changeset::Plan`: only
//! the files that go into the layer are read (or, for images and tar files, spooled in a
//! second pass over the layers that hold them).

mod image;
mod input;
mod overlay;

use anyhow::Context;
use clap::Parser;
use common::changeset::{self, Diff, Plan};
use common::cli::{Exit, PoisonOnDrop};
use common::content::Contents;
use common::manifest::PlatformSpec;
use common::path::display;
use common::progress::{Progress, Unit};
use common::tarwrite::TarWriter;
use common::tree::{Exclude, Node, Tree};
use input::{Input, ReadOptions, Side};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "\
Examples:
  layer-diff --list store:httpd:2.4 web/         # docker diff: A/C/D lines
  layer-diff --json store:web:v1 store:web:v2    # JSON Lines {\"path\",\"kind\"}
  layer-diff store:httpd:2.4 web/ | layer-pack --layout store
  layer-diff base/ upper/ > changes.tar          # OCI changeset tar
  layer-diff --overlay /var/lib/ovl/upper > changes.tar
  layer-diff --overlay /var/lib/ovl/upper --lower /var/lib/ovl/lower --list
  layer-diff --exit-code -q --list old.tar new/ >/dev/null || echo changed
  layer-diff --image --json --ignore-image-times store:web:v1 store:web:v2

LOWER and UPPER: a directory (one holding oci-layout is the IMAGE DIR:latest), an IMAGE
(LAYOUT:REF, LAYOUT@sha256:...), or a tar file, gzip- or zstd-compressed or not (- for stdin).
--image (two IMAGEs): records in this order, JSON Lines with --json, each with a \"section\":
  manifest {key, old, new}   annotations by key, mediaType, the config's mediaType
  config   {key, old, new}   top-level fields; [\"config\", \"Env\", NAME], [\"config\", \"Labels\", KEY],
                             ExposedPorts and Volumes by key, other container config keys whole
  history  {index, old, new} entries by position
  layer    {old, new, pairedBy, changes}   layers paired by diffID, then by history
                             step; a pair that differs, or a layer of one side, with the
                             entries its tars differ in
  file     {path, kind}      the stacked file systems' changes, as --json
Absent values are null. --ignore-times (--ignore-file-times) drops file mtimes;
--ignore-image-times drops created times and the org.opencontainers.image.created annotation/label.
Exit status: 0 success (with --exit-code: no changes), 1 changes found with --exit-code, 2 error.";

/// Show or package what changed between two file systems.
#[derive(Parser, Debug)]
#[command(name = "layer-diff", version, after_help = EXAMPLES)]
pub struct Args {
    /// The base: a directory, an IMAGE (LAYOUT:REF) or a tar file (- for stdin).
    #[arg(value_name = "LOWER", required_unless_present = "overlay")]
    pub lower: Option<String>,

    /// The changed file system, in the same forms.
    #[arg(value_name = "UPPER", required_unless_present = "overlay")]
    pub upper: Option<String>,

    /// Print docker diff's lines ("A /path", "C /path", "D /path") instead of a tar.
    #[arg(long, conflicts_with = "json")]
    pub list: bool,

    /// Print JSON Lines ({"path":"/etc/passwd","kind":"C"}) instead of a tar.
    #[arg(long)]
    pub json: bool,

    /// Exit with status 1 when there are changes (errors exit 2).
    #[arg(long)]
    pub exit_code: bool,

    /// Compare file content instead of mtimes (semantic diffs of two images).
    #[arg(long, visible_alias = "ignore-file-times")]
    pub ignore_times: bool,

    /// Compare two IMAGEs as images: manifest, config and history differences (old and new
    /// values), the layers (paired by diffID, then by history step) and the entries a pair
    /// differs in, then the file changes; lines, or JSON Lines with --json
    #[arg(long, conflicts_with_all = ["overlay", "opaque"])]
    pub image: bool,

    /// With --image: leave the image's times out (config and history created, the
    /// org.opencontainers.image.created annotation and label)
    #[arg(long, requires = "image")]
    pub ignore_image_times: bool,

    /// Use .wh..wh..opq for a directory whose lower children were all removed.
    #[arg(long)]
    pub opaque: bool,

    /// Leave out paths matching this glob on the absolute path (/var/cache/*); repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// Convert an overlayfs upper directory into the changeset tar (no LOWER/UPPER).
    #[arg(long, value_name = "UPPERDIR", conflicts_with_all = ["lower", "upper", "ignore_times", "opaque"])]
    pub overlay: Option<PathBuf>,

    /// With --overlay: the lower directory, to resolve metacopy files and renamed directories,
    /// and to tell added from changed for --list and --json.
    #[arg(long = "lower", value_name = "DIR", requires = "overlay")]
    pub overlay_lower: Option<PathBuf>,

    /// The platform to pick from multi-platform IMAGE arguments (os/arch[/variant]).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// Print nothing but errors (and the data).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: common::cli::Limits,
}

pub fn run(args: Args) -> common::Result<Exit> {
    let exclude = Exclude::new(&args.exclude)?;
    let platform = args.platform.as_deref().map(PlatformSpec::parse).transpose()?;
    let quiet = args.quiet;
    let warn = move |msg: &str| {
        if !quiet {
            common::progress::message(&format!("layer-diff: warning: {msg}"));
        }
    };
    let tar_out = !(args.list || args.json || args.image);
    // Refused before any work: a tar to a terminal is never what was meant.
    let out = if tar_out {
        Some(common::cli::tar_stdout()?)
    } else {
        None
    };
    let source = match &args.overlay {
        Some(upper) => {
            if !tar_out && args.overlay_lower.is_none() {
                anyhow::bail!(
                    "--overlay with --list or --json needs --lower DIR: the upper directory alone \
                     cannot tell an added path from a changed one"
                );
            }
            Changes::Overlay {
                upper,
                lower: args.overlay_lower.as_deref(),
            }
        }
        None => Changes::Trees {
            lower: args.lower.as_deref().context("LOWER is missing")?,
            upper: args.upper.as_deref().context("UPPER is missing")?,
        },
    };
    let opts = DiffOptions {
        exclude: &exclude,
        platform: platform.as_ref(),
        max_json: args.limits.max_json,
        ignore_times: args.ignore_times,
        opaque: args.opaque,
        warn: &warn,
        quiet,
    };
    if args.image {
        return compare_images(&args, &source, &opts);
    }
    let diff = match out {
        Some(out) => write_changeset(&source, &opts, out, PoisonOnDrop::stdout)?,
        None => {
            let diff = compare(&source, &opts, false, &Progress::new(quiet))?.diff;
            print_changes(&diff, args.json)?;
            diff
        }
    };
    Ok(status(&args, &diff))
}

/// `--image`: two IMAGEs compared as images (manifest, config, history, layers), then as file
/// systems.
fn compare_images(args: &Args, source: &Changes<'_>, opts: &DiffOptions<'_>) -> common::Result<Exit> {
    let images = match source {
        Changes::Trees { lower, upper } => match (Input::classify(lower)?, Input::classify(upper)?) {
            (Input::Image(l), Input::Image(u)) => Some((l, u)),
            _ => None,
        },
        Changes::Overlay { .. } => None,
    };
    let Some((old, new)) = images else {
        let (l, u) = (args.lower.as_deref(), args.upper.as_deref());
        anyhow::bail!(
            "--image compares two IMAGEs (LAYOUT:REF): {} and {} are not both images",
            l.unwrap_or("-"),
            u.unwrap_or("-")
        );
    };
    let diff = compare(source, opts, false, &Progress::new(opts.quiet))?.diff;
    let image_opts = image::Options {
        ignore_file_times: args.ignore_times,
        ignore_image_times: args.ignore_image_times,
        exclude: opts.exclude,
        platform: opts.platform,
        max_json: opts.max_json,
    };
    let records = image::compare(&old, &new, &diff, &image_opts)?;
    image::print(&records, args.json)?;
    Ok(if args.exit_code && !records.is_empty() {
        Exit::Differs
    } else {
        Exit::Success
    })
}

/// What to compare.
pub enum Changes<'a> {
    /// An overlayfs upper directory (`--overlay UPPER [--lower DIR]`).
    Overlay {
        upper: &'a Path,
        lower: Option<&'a Path>,
    },
    /// LOWER and UPPER arguments: directories, IMAGEs or tar files.
    Trees { lower: &'a str, upper: &'a str },
}

/// How to compare.
pub struct DiffOptions<'a> {
    pub exclude: &'a Exclude,
    pub platform: Option<&'a PlatformSpec>,
    /// The largest JSON document read from a layout (`--max-json`).
    pub max_json: u64,
    pub ignore_times: bool,
    /// `.wh..wh..opq` for a directory whose lower children were all removed.
    pub opaque: bool,
    pub warn: &'a (dyn Fn(&str) + Sync),
    /// No progress line.
    pub quiet: bool,
}

/// The compared trees, their changes, and what the tar is written from.
struct Compared {
    diff: Diff,
    plan: Option<Plan>,
    tree: Tree,
    contents: Contents,
}

/// Writes the changeset tar (`layer-diff` without `--list`/`--json`) into `out`. Once the
/// trees are compared and the tar begins, `out` is wrapped by `poison` (`PoisonOnDrop::new`,
/// or `::stdout`, which a signal cuts too), so that a failure half way ends what was written
/// with a block no reader accepts; a failure before leaves `out` untouched. Returns the
/// changes.
pub fn write_changeset<W: Write>(
    source: &Changes<'_>,
    opts: &DiffOptions<'_>,
    out: W,
    poison: fn(W) -> PoisonOnDrop<W>,
) -> common::Result<Diff> {
    let progress = Progress::new(opts.quiet);
    let c = compare(source, opts, true, &progress)?;
    let mut out = poison(out);
    let plan = c.plan.as_ref().expect("a plan when writing the tar");
    progress.start(
        "writing changes",
        Unit::Bytes,
        Some(plan.tar_len_estimate(&c.tree)),
    );
    plan.write(&c.tree, &c.contents, TarWriter::new(progress.writer(&mut out))?)?;
    drop(progress);
    out.finish()?;
    Ok(c.diff)
}

/// Reads both sides and compares them; with `for_tar`, also plans the tar and spools the
/// content it needs.
fn compare(
    source: &Changes<'_>,
    opts: &DiffOptions<'_>,
    for_tar: bool,
    progress: &Progress,
) -> common::Result<Compared> {
    let (lower_arg, upper_arg) = match source {
        Changes::Overlay { upper, lower } => {
            progress.start(&format!("reading {}", upper.display()), Unit::Busy, None);
            let (tree, diff, plan) = overlay::changeset(upper, *lower, opts.exclude, opts.warn)?;
            return Ok(Compared {
                diff,
                plan: Some(plan),
                tree,
                contents: Contents::new(),
            });
        }
        Changes::Trees { lower, upper } => (*lower, *upper),
    };
    let lower_in = Input::classify(lower_arg).context("LOWER")?;
    let upper_in = Input::classify(upper_arg).context("UPPER")?;
    if matches!((&lower_in, &upper_in), (Input::Stdin, Input::Stdin)) {
        anyhow::bail!("LOWER and UPPER cannot both be stdin");
    }
    let read_opts = |spool_stdin| ReadOptions {
        exclude: opts.exclude,
        platform: opts.platform,
        max_json: opts.max_json,
        hash: opts.ignore_times,
        spool_stdin,
        warn: opts.warn,
    };
    progress.start("reading LOWER and UPPER", Unit::Busy, None);
    let (lower, upper) = rayon::join(
        || Side::read(&lower_in, &read_opts(false)).with_context(|| format!("LOWER {lower_arg}")),
        || Side::read(&upper_in, &read_opts(for_tar)).with_context(|| format!("UPPER {upper_arg}")),
    );
    let (lower, mut upper) = (lower?, upper?);

    progress.start("comparing", Unit::Busy, None);
    let diff = if opts.ignore_times {
        let mut same = |path: &[u8], l: &Node, u: &Node| -> common::Result<bool> {
            Ok(u.meta.size == 0 || lower.content_hash(path, l)? == upper.content_hash(path, u)?)
        };
        changeset::diff(&lower.tree, &upper.tree, Some(&mut same))?
    } else {
        changeset::diff(&lower.tree, &upper.tree, None)?
    };
    let plan = if for_tar {
        let plan = Plan::changeset(&diff, &lower.tree, &upper.tree, opts.opaque);
        let needed: Vec<Node> = plan.content_nodes(&upper.tree).cloned().collect();
        progress.start("reading the changed files", Unit::Busy, None);
        upper.spool(needed.iter())?;
        Some(plan)
    } else {
        None
    };
    Ok(Compared {
        diff,
        plan,
        tree: upper.tree,
        contents: upper.contents,
    })
}

fn status(args: &Args, diff: &Diff) -> Exit {
    if args.exit_code && !diff.is_empty() {
        Exit::Differs
    } else {
        Exit::Success
    }
}

/// Prints the changes sorted as moby sorts them (pkg/archive changes.go, `changesByPath`: a
/// plain byte comparison of the paths), so `/a-b` comes before `/a/b`. `docker diff` itself
/// prints them unsorted, in Go map order. The tar keeps its own order, a directory right
/// before its subtree (`common::path::path_cmp`).
fn print_changes(diff: &Diff, json: bool) -> common::Result<()> {
    let mut changes: Vec<&changeset::Change> = diff.changes.iter().collect();
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = io::BufWriter::new(io::stdout().lock());
    for c in changes {
        if json {
            // Keys in the contract's order, path first (not the canonical sorted order).
            let path = serde_json::to_string(&format!("/{}", String::from_utf8_lossy(&c.path)))?;
            writeln!(out, "{{\"path\":{path},\"kind\":\"{}\"}}", c.kind.letter())?;
        } else {
            writeln!(out, "{} {}", c.kind.letter(), display(&c.path))?;
        }
    }
    out.flush()?;
    Ok(())
}
