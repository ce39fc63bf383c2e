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
use std::path::PathBuf;

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

    if let Some(upper_dir) = &args.overlay {
        if !tar_out && args.overlay_lower.is_none() {
            anyhow::bail!(
                "--overlay with --list or --json needs --lower DIR: the upper directory alone \
                 cannot tell an added path from a changed one"
            );
        }
        let progress = Progress::new(quiet);
        progress.start(&format!("reading {}", upper_dir.display()), Unit::Busy, None);
        let (tree, diff, plan) =
            overlay::changeset(upper_dir, args.overlay_lower.as_deref(), &exclude, &warn)?;
        match out {
            Some(out) => {
                progress.start("writing changes", Unit::Bytes, Some(plan.tar_len_estimate(&tree)));
                write_tar(&plan, &tree, &Contents::new(), progress.writer(out))?;
            }
            None => {
                drop(progress);
                print_changes(&diff, args.json)?;
            }
        }
        return Ok(status(&args, &diff));
    }

    let (lower_arg, upper_arg) = (
        args.lower.as_deref().context("LOWER is missing")?,
        args.upper.as_deref().context("UPPER is missing")?,
    );
    let lower_in = Input::classify(lower_arg).context("LOWER")?;
    let upper_in = Input::classify(upper_arg).context("UPPER")?;
    if matches!((&lower_in, &upper_in), (Input::Stdin, Input::Stdin)) {
        anyhow::bail!("LOWER and UPPER cannot both be stdin");
    }
    let images = match (&lower_in, &upper_in) {
        (Input::Image(l), Input::Image(u)) => Some((l.clone(), u.clone())),
        _ if args.image => anyhow::bail!(
            "--image compares two IMAGEs (LAYOUT:REF): {lower_arg} and {upper_arg} are not both images"
        ),
        _ => None,
    };
    let opts = |spool_stdin| ReadOptions {
        exclude: &exclude,
        platform: platform.as_ref(),
        max_json: args.limits.max_json,
        hash: args.ignore_times,
        spool_stdin,
        warn: &warn,
    };
    let progress = Progress::new(quiet);
    progress.start("reading LOWER and UPPER", Unit::Busy, None);
    let (lower, upper) = rayon::join(
        || Side::read(&lower_in, &opts(false)).with_context(|| format!("LOWER {lower_arg}")),
        || Side::read(&upper_in, &opts(tar_out)).with_context(|| format!("UPPER {upper_arg}")),
    );
    let (lower, mut upper) = (lower?, upper?);

    progress.start("comparing", Unit::Busy, None);
    let diff = if args.ignore_times {
        let mut same = |path: &[u8], l: &Node, u: &Node| -> common::Result<bool> {
            Ok(u.meta.size == 0 || lower.content_hash(path, l)? == upper.content_hash(path, u)?)
        };
        changeset::diff(&lower.tree, &upper.tree, Some(&mut same))?
    } else {
        changeset::diff(&lower.tree, &upper.tree, None)?
    };

    if let Some((old, new)) = images.filter(|_| args.image) {
        let opts = image::Options {
            ignore_file_times: args.ignore_times,
            ignore_image_times: args.ignore_image_times,
            exclude: &exclude,
            platform: platform.as_ref(),
            max_json: args.limits.max_json,
        };
        let records = image::compare(&old, &new, &diff, &opts)?;
        image::print(&records, args.json)?;
        return Ok(if args.exit_code && !records.is_empty() {
            Exit::Differs
        } else {
            Exit::Success
        });
    }
    match out {
        Some(out) => {
            let plan = Plan::changeset(&diff, &lower.tree, &upper.tree, args.opaque);
            let needed: Vec<Node> = plan.content_nodes(&upper.tree).cloned().collect();
            progress.start("reading the changed files", Unit::Busy, None);
            upper.spool(needed.iter())?;
            let total = plan.tar_len_estimate(&upper.tree);
            progress.start("writing changes", Unit::Bytes, Some(total));
            write_tar(&plan, &upper.tree, &upper.contents, progress.writer(out))?;
        }
        None => {
            drop(progress);
            print_changes(&diff, args.json)?;
        }
    }
    Ok(status(&args, &diff))
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

/// Writes the tar to `out`, which writes to stdout. When it fails half way, or a signal ends
/// the tool, a block that no tar reader accepts (a header with a bad checksum) ends what was
/// written, so the output cannot pass for a complete layer.
fn write_tar<W: Write>(plan: &Plan, tree: &Tree, contents: &Contents, out: W) -> common::Result<()> {
    let mut out = PoisonOnDrop::stdout(out);
    plan.write(tree, contents, TarWriter::new(&mut out)?)?;
    out.finish()?;
    Ok(())
}
