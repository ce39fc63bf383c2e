//! image-history: the layers of an image of an OCI layout, as `docker history` shows them, and
//! (`--wasted`) the bytes each layer carries that later layers mask.

mod gate;
mod history;
mod render;
mod wasted;

/// What the fuzz targets (fuzz/) drive: an image's history, matched to its layers.
#[doc(hidden)]
pub mod fuzz {
    pub use crate::history::{History, row_ids};
}

use anyhow::Context;
use clap::{ArgAction, Parser};
use common::atomic::AtomicFile;
use common::cli::{Exit, Format};
use common::descriptor::Descriptor;
use common::digest::Digest;
use common::layer::LayerStream;
use common::layout::Layout;
use common::manifest::PlatformSpec;
use common::progress::Progress;
use common::reference::ImageRef;
use common::size::{LayerSize, Sizes};
use history::History;
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;

pub use common::Result;

const AFTER_HELP: &str = "\
Examples:
  image-history store:web:v1
  image-history --no-trunc -H=false store:web:v1
  image-history -q store@sha256:<hex>          # ids only, newest first
  image-history --format json store:web:v1 | jq -r 'select(.emptyLayer | not) | .diffID'
  image-history --wasted store:web:v1          # bytes masked by later deletes and rewrites

Rows are newest first, one per config history entry (empty_layer entries show 0B), plus one
for each layer the history does not describe. IMAGE is the short id (config digest) of an
image of the layout whose stack ends at that row, else <missing>. SIZE is the layer's size as
docker's overlay2 store reports it: the apparent size of every non-directory entry, each inode
once, a symlink by its target's length, whiteouts 0 (a layer adding a 33-byte file is 33B).
layer-pack records it (with the tar's length) in the manifest, so our own images are listed
without reading a layer; other layers are measured once from their tar headers (verified).

--format json prints one object per row (JSON Lines), full values, keys:
  id          config digest of an image ending at this row, or null
  created     RFC 3339 UTC, or null when the entry has no (valid) time
  createdBy   untruncated; author, comment as the config has them (\"\" when absent)
  size        the SIZE in bytes; tarSize the uncompressed tar's length; storedSize the blob's
              (compressed) length; all 0 for a row without a layer
  emptyLayer  true when the row has no layer
  digest, diffID   the layer's blob digest and diffID, or null
  with --wasted: wasted (bytes) and wastedFiles [{path, size, maskedBy (diffID), how
  (removed|hidden|replaced)}]. Every line has this one shape; -q (ids alone) is refused with it.
--report FILE, which implies --wasted, writes the summary as one JSON document (- for stdout,
which then carries it alone): {totalSize, wastedSize, efficiency (percent), wastedFiles
[{path, size, layer, maskedBy, how}]}, and with rules {result, rules [{rule, status, value,
limit, message}]}.

--wasted counts, for each layer, the file content that a later layer removes (whiteout), hides
(opaque directory) or replaces; the copy still visible is not counted (N-1 copies of a path
are waste, not N). Efficiency = visible content / all content of all layers.

As a CI gate (any rule flag, or --ci-config, turns it on, and --wasted with it):
  image-history --ci-config .dive-ci store:web:v2            # dive's rules, dive's defaults
  image-history --lowest-efficiency 0.9 --highest-wasted-bytes 20MB store:web:v2
  image-history --baseline store:web:v1 --highest-growth 5% store:web:v2
A value at its limit passes (as in dive). After the table: the wasted files, largest first,
and PASS/FAIL/SKIP per rule; the verdicts as JSON: --report (e.g. --report - | jq .result).
Exit status: 0 all rules pass, 1 a rule fails, 2 an error (a rule that does not parse too).

Environment (tests only): LAYERKIT_NOW fixes \"now\" for relative times, as RFC 3339 or
seconds since the epoch.";

/// Show the history of an image of an OCI layout, as docker history does.
#[derive(Parser, Debug)]
#[command(name = "image-history", version, after_help = AFTER_HELP)]
pub struct Args {
    /// The image: LAYOUT:REF, LAYOUT (REF latest) or LAYOUT@sha256:<hex>.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Print sizes and dates in human readable format; -H=false prints RFC 3339 times and
    /// sizes in bytes.
    #[arg(short = 'H', long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value_t = true, default_missing_value = "true")]
    pub human: bool,
    /// Don't truncate output (full ids and CREATED BY).
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image ids (<missing> for rows no image of the layout ends at).
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Pick this platform from a multi-platform image (default: the host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Also show, per layer, the bytes later layers remove or overwrite, with a total and an
    /// efficiency percentage.
    #[arg(long)]
    pub wasted: bool,
    /// Write the summary of --wasted, which it implies (total, wasted, efficiency, the files that
    /// waste, and the CI gate's verdicts) as one JSON document to FILE; `-` for stdout, which
    /// then carries it alone
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub limits: common::cli::Limits,
    #[command(flatten)]
    pub gate: gate::GateArgs,
}

pub fn run(args: Args) -> Result<Exit> {
    // Rules that do not parse are refused before any layer is read.
    let rules = gate::Rules::from_args(&args.gate)?;
    args.format.check_quiet(args.quiet)?;
    let wasted = args.wasted || rules.is_some() || args.report.is_some();
    let report_to_stdout = args.report.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let platform = args.platform.as_deref().map(PlatformSpec::parse).transpose()?;
    let image = ImageRef::parse(&args.image)?;
    let (layout, history) = open(&image, platform.as_ref(), args.limits.max_json)?;
    let ids = history::row_ids(&layout, &history).with_context(|| image.to_string())?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut verdicts = Vec::new();
    if args.quiet && !report_to_stdout {
        render::ids(&mut out, &ids, args.no_trunc)?;
    }
    if !args.quiet || wasted {
        let measured = Measured::of(&layout, &history, wasted, args.quiet)?;
        if let Some(rules) = &rules {
            let baseline = match &rules.baseline {
                Some(b) => {
                    let b = ImageRef::parse(b).context("--baseline")?;
                    let (layout, history) =
                        open(&b, platform.as_ref(), args.limits.max_json).context("--baseline")?;
                    Some(Measured::of(&layout, &history, true, args.quiet)?)
                }
                None => None,
            };
            verdicts = gate::judge(rules, &gate::Facts::of(&measured, baseline.as_ref()));
        }
        if let Some(path) = &args.report {
            let report = gate::report(rules.is_some(), &verdicts, &history, &measured)?;
            if report_to_stdout {
                out.write_all(&report)?;
            } else {
                let mut file = AtomicFile::for_output(path, ".image-history-tmp-").context("--report")?;
                file.write_all(&report)
                    .with_context(|| path.display().to_string())?;
                file.replace(path)?;
            }
        }
        match args.format {
            _ if report_to_stdout || args.quiet => {}
            Format::Json => render::json(&mut out, &history, &ids, &measured, wasted)?,
            Format::Table => {
                let opts = render::TableOptions {
                    no_trunc: args.no_trunc,
                    human: args.human,
                    wasted,
                };
                render::table(&mut out, &history, &ids, &measured, &opts)?;
                if rules.is_some() {
                    gate::text(&mut out, &verdicts, &history, &measured)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(if gate::failed(&verdicts) {
        Exit::Differs
    } else {
        Exit::Success
    })
}

/// Reads an IMAGE's history from its layout.
fn open(image: &ImageRef, platform: Option<&PlatformSpec>, max_json: u64) -> Result<(Layout, History)> {
    let layout = Layout::open_image(image)?.with_max_json(max_json);
    let resolved = layout
        .resolve(&image.target, platform)
        .with_context(|| image.to_string())?;
    let history = History::read(&layout, &resolved.manifest).with_context(|| image.to_string())?;
    Ok((layout, history))
}

/// What the layers' sizes are and, with `--wasted`, the waste of each layer (in order) and the
/// total.
struct Measured {
    sizes: HashMap<Digest, LayerSize>,
    waste: Option<Vec<wasted::LayerWaste>>,
    total: Option<render::Total>,
}

impl Measured {
    fn of(layout: &Layout, history: &History, wasted: bool, quiet: bool) -> Result<Measured> {
        let layers: Vec<&(Descriptor, Digest)> =
            history.rows.iter().filter_map(|r| r.layer.as_ref()).collect();
        let progress = Progress::bytes("reading layers", quiet);
        if !wasted {
            // Our own layers record their sizes: nothing is read for them.
            let mut sizes = Sizes::default();
            let mut by_digest = HashMap::new();
            for (i, (desc, diff_id)) in layers.iter().enumerate() {
                progress.set_layer(i + 1, layers.len());
                let size = sizes.layer(layout, desc, Some(diff_id), &progress)?;
                by_digest.insert(desc.digest.clone(), size);
            }
            return Ok(Measured {
                sizes: by_digest,
                waste: None,
                total: None,
            });
        }
        let mut sizes = HashMap::new();
        let mut tracker = wasted::Tracker::default();
        for (i, (desc, diff_id)) in layers.iter().enumerate() {
            progress.set_layer(i + 1, layers.len());
            let mut stream = LayerStream::open(layout, desc, Some(diff_id))?;
            let content = tracker
                .add_layer(diff_id, progress.reader(&mut stream))
                .with_context(|| format!("layer {}", desc.digest))?;
            let (_, tar) = stream.finish()?;
            let size = LayerSize {
                content: content.bytes(),
                tar,
                stored: desc.size,
            };
            sizes.insert(desc.digest.clone(), size);
        }
        let total = render::Total {
            total_size: tracker.total(),
            wasted_size: tracker.wasted(),
            efficiency: (wasted::efficiency(tracker.total(), tracker.wasted()) * 100.0).round() / 100.0,
        };
        Ok(Measured {
            sizes,
            waste: Some(tracker.finish()),
            total: Some(total),
        })
    }
}
