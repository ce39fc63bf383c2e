//! image-history: the layers of an image of an OCI layout, as `docker history` shows them, and
//! (`--wasted`) the bytes each layer carries that later layers mask.

pub mod stack;
mod table;
mod wasted;

use anyhow::Context;
use clap::{ArgAction, Parser, ValueEnum};
use common::cli::Exit;
use common::descriptor::{Descriptor, recorded_uncompressed_size};
use common::digest::Digest;
use common::layer::LayerStream;
use common::layout::{Layout, PlatformSpec};
use common::progress::Progress;
use common::reference::ImageRef;
use common::tarread::for_each_entry;
use common::time::{self, Time};
use common::units;
use serde::Serialize;
use stack::Stack;
use std::collections::HashMap;
use std::io::{self, Write};

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
image of the layout whose stack ends at that row, else <missing>. SIZE is the layer's
uncompressed tar length (recorded by layer-pack, else measured by reading the blob, verified).

--format json prints one object per row (JSON Lines), full values, keys:
  id          config digest of an image ending at this row, or null
  created     RFC 3339 UTC, or null when the entry has no (valid) time
  createdBy   untruncated; author, comment as the config has them (\"\" when absent)
  size        bytes; emptyLayer  true when the row has no layer
  digest, diffID   the layer's blob digest and diffID, or null
  with --wasted: wasted (bytes) and wastedFiles [{path, size, maskedBy (diffID), how
  (removed|hidden|replaced)}], then a last line {totalSize, wastedSize, efficiency (percent)}.

--wasted counts, for each layer, the file content that a later layer removes (whiteout), hides
(opaque directory) or replaces; the copy still visible is not counted (N-1 copies of a path
are waste, not N). Efficiency = visible content / all content of all layers.

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
    #[command(flatten)]
    pub limits: common::cli::Limits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// docker's table
    Table,
    /// JSON Lines with full values
    Json,
}

pub fn run(args: Args) -> Result<Exit> {
    args.limits.apply();
    let image = ImageRef::parse(&args.image)?;
    let platform = args.platform.as_deref().map(PlatformSpec::parse).transpose()?;
    let layout = Layout::open(&image.layout)?;
    let resolved = layout
        .resolve(&image.target, platform.as_ref())
        .with_context(|| image.to_string())?;
    let stack = Stack::read(&layout, &resolved.manifest).with_context(|| image.to_string())?;
    let ids = stack::row_ids(&layout, &stack)?;
    let short = |id: &Option<Digest>| match id {
        Some(d) if args.no_trunc => d.to_string(),
        Some(d) => d.short().to_string(),
        None => "<missing>".to_string(),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.quiet && args.format == Format::Table {
        for id in ids.iter().rev() {
            writeln!(out, "{}", short(id))?;
        }
        out.flush()?;
        return Ok(Exit::Success);
    }
    let measured = Measured::of(&layout, &stack, args.wasted, args.quiet)?;
    let size_of = |row: &stack::Row| row.layer.as_ref().map_or(0, |(d, _)| measured.sizes[&d.digest]);
    // The n-th layer's waste is measured.waste[n]; a row's layer number counts layer rows.
    let layer_no: Vec<usize> = stack
        .rows
        .iter()
        .scan(0, |n, r| {
            *n += usize::from(r.layer.is_some());
            Some(*n)
        })
        .collect();
    let waste_of = |i: usize| {
        let row = &stack.rows[i];
        row.layer.as_ref()?;
        measured.waste.as_ref()?.get(layer_no[i] - 1)
    };
    match args.format {
        Format::Json => {
            for (i, (row, id)) in stack.rows.iter().zip(&ids).enumerate().rev() {
                let w = waste_of(i);
                let line = JsonRow {
                    id: id.as_ref(),
                    created: row.created.map(|t| t.rfc3339_nano()),
                    created_by: &row.created_by,
                    author: &row.author,
                    comment: &row.comment,
                    size: size_of(row),
                    empty_layer: row.layer.is_none(),
                    digest: row.layer.as_ref().map(|l| &l.0.digest),
                    diff_id: row.layer.as_ref().map(|l| &l.1),
                    wasted: args.wasted.then(|| w.map_or(0, |w| w.wasted)),
                    wasted_files: args.wasted.then(|| w.map_or(&[][..], |w| &w.files[..])),
                };
                common::json::write_line(&mut out, &line)?;
            }
            if let Some(total) = &measured.total {
                common::json::write_line(&mut out, total)?;
            }
        }
        Format::Table => {
            let now = if args.human { Some(Time::now()?) } else { None };
            let size_text = |n: u64| {
                if args.human {
                    units::human_size(n, 3)
                } else {
                    n.to_string()
                }
            };
            let mut header = vec![
                "IMAGE",
                if args.human { "CREATED" } else { "CREATED AT" },
                "CREATED BY",
                "SIZE",
            ];
            if args.wasted {
                header.push("WASTED");
            }
            header.push("COMMENT");
            let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
            for (i, (row, id)) in stack.rows.iter().zip(&ids).enumerate().rev() {
                let created = match (row.created, now) {
                    (Some(t), _) if t.secs <= time::EPOCH_2000 => "N/A".to_string(),
                    (None, _) => "N/A".to_string(),
                    (Some(t), Some(now)) => {
                        // docker has whole seconds of the creation time.
                        let t = Time {
                            secs: t.secs,
                            nanos: 0,
                        };
                        format!("{} ago", units::human_duration(now.since(&t)))
                    }
                    (Some(t), None) => t.rfc3339(),
                };
                let created_by = table::cell_text(&row.created_by);
                let mut cells = vec![
                    short(id),
                    created,
                    if args.no_trunc {
                        created_by
                    } else {
                        table::ellipsis(&created_by, 45)
                    },
                    size_text(size_of(row)),
                ];
                if args.wasted {
                    cells.push(size_text(waste_of(i).map_or(0, |w| w.wasted)));
                }
                cells.push(table::cell_text(&row.comment));
                rows.push(cells);
            }
            out.write_all(table::render(&rows).as_bytes())?;
            if let Some(t) = &measured.total {
                writeln!(
                    out,
                    "Wasted {} of {} ({:.1}% efficient)",
                    size_text(t.wasted_size),
                    size_text(t.total_size),
                    t.efficiency
                )?;
            }
        }
    }
    out.flush()?;
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct JsonRow<'a> {
    id: Option<&'a Digest>,
    created: Option<String>,
    #[serde(rename = "createdBy")]
    created_by: &'a str,
    author: &'a str,
    comment: &'a str,
    size: u64,
    #[serde(rename = "emptyLayer")]
    empty_layer: bool,
    digest: Option<&'a Digest>,
    #[serde(rename = "diffID")]
    diff_id: Option<&'a Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wasted: Option<u64>,
    #[serde(rename = "wastedFiles", skip_serializing_if = "Option::is_none")]
    wasted_files: Option<&'a [wasted::WastedFile]>,
}

#[derive(Serialize)]
struct Total {
    #[serde(rename = "totalSize")]
    total_size: u64,
    #[serde(rename = "wastedSize")]
    wasted_size: u64,
    efficiency: f64,
}

/// What reading the layers tells: each layer's uncompressed size and, with `--wasted`, the
/// waste of each layer (by diffID) and the total.
struct Measured {
    sizes: HashMap<Digest, u64>,
    /// Per layer, in order.
    waste: Option<Vec<wasted::LayerWaste>>,
    total: Option<Total>,
}

impl Measured {
    fn of(layout: &Layout, stack: &Stack, wasted: bool, quiet: bool) -> Result<Measured> {
        let layers: Vec<&(Descriptor, Digest)> = stack.rows.iter().filter_map(|r| r.layer.as_ref()).collect();
        let progress = Progress::bytes("reading layers", quiet);
        let mut sizes = HashMap::new();
        if !wasted {
            for (desc, diff_id) in layers {
                if sizes.contains_key(&desc.digest) {
                    continue;
                }
                let size = match recorded_uncompressed_size(desc) {
                    Some(n) => n,
                    None => {
                        let mut stream = LayerStream::open(layout, desc, Some(diff_id))?;
                        io::copy(&mut progress.reader(&mut stream), &mut io::sink())
                            .with_context(|| format!("layer {}", desc.digest))?;
                        stream.finish()?.1
                    }
                };
                sizes.insert(desc.digest.clone(), size);
            }
            return Ok(Measured {
                sizes,
                waste: None,
                total: None,
            });
        }
        let mut tracker = wasted::Tracker::default();
        for (desc, diff_id) in &layers {
            let mut stream = LayerStream::open(layout, desc, Some(diff_id))?;
            let mut entries = Vec::new();
            for_each_entry(progress.reader(&mut stream), |_, e, _| {
                entries.push(e);
                Ok(())
            })
            .with_context(|| format!("layer {}", desc.digest))?;
            let (_, len) = stream.finish()?;
            sizes.insert(desc.digest.clone(), len);
            tracker
                .add_layer(diff_id, entries)
                .with_context(|| format!("layer {}", desc.digest))?;
        }
        let total = Total {
            total_size: tracker.total,
            wasted_size: tracker.wasted,
            efficiency: (wasted::efficiency(tracker.total, tracker.wasted) * 100.0).round() / 100.0,
        };
        Ok(Measured {
            sizes,
            waste: Some(tracker.finish()),
            total: Some(total),
        })
    }
}
