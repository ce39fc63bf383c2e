//! layer-pack: a tar stream (or a directory) into a content-addressed layer blob, in one
//! streaming pass: read and check the tar, hash it (diffID), compress it in parallel, hash the
//! compressed bytes (digest), write a temporary file, rename. Prints one LAYER DESCRIPTOR.

mod check;
mod dir;
mod sink;

use anyhow::Context;
use clap::Parser;
use common::cli::Exit;
use common::compress::{Compression, Encoder};
use common::descriptor::LayerDescriptor;
use common::layout::Layout;
use common::progress::Progress;
use sink::{Behind, NewLayout, Sink};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "\
Examples:
  layer-diff base web | layer-pack --layout store    # prints one LAYER DESCRIPTOR
  layer-pack --layout store rootfs/                  # a whole directory as one layer
  layer-pack --compress zstd --layout store < changes.tar
  layer-pack -o layer.tar.gz < changes.tar           # blob to a file, descriptor to stdout

The descriptor is one JSON line: mediaType, digest, size (the blob), diffID and
uncompressedSize (the tar), reused (the blob was already there), source (the layout or file).
Exit status: 0 packed, 2 any error (a malformed or truncated tar leaves nothing behind).";

/// Pack a tar stream or a directory into a layer blob and print its descriptor.
#[derive(Parser, Debug)]
#[command(
    name = "layer-pack",
    version,
    after_help = EXAMPLES,
    group = clap::ArgGroup::new("sink").args(["layout", "output"]).multiple(false)
)]
pub struct Args {
    /// A tar file, `-` for stdin, or a directory to pack as one whole-tree layer.
    #[arg(value_name = "INPUT", default_value = "-")]
    pub input: PathBuf,

    /// The OCI layout to store the blob in (created when missing).
    #[arg(long, value_name = "DIR")]
    pub layout: Option<PathBuf>,

    /// Write the blob to FILE instead of a layout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Compression of the blob.
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    pub compress: Compression,

    /// Compression level (gzip 0-9, default 6; zstd 1-22, default 3).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub level: Option<i32>,

    /// Compression threads (default: the number of CPUs). Never changes the output.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Print nothing but errors (and the descriptor).
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> common::Result<Exit> {
    let level = args.level.unwrap_or(args.compress.default_level());
    args.compress.check_level(level)?;
    let threads = args
        .threads
        .map_or_else(common::cli::default_threads, usize::from);
    let input = open_input(&args.input)?;

    // Declared before the sink so that, on failure, the blob's temporary file is gone before
    // a layout this run created is removed.
    let mut new_layout = None;
    let sink = match (&args.layout, &args.output) {
        (Some(dir), _) => {
            let (layout, created) = NewLayout::open(dir)?;
            new_layout = created;
            Sink::blob(&layout)?
        }
        (None, Some(file)) if file.as_os_str() == "-" => anyhow::bail!(
            "-o -: stdout carries the descriptor; name a file, or pipe the tar into pigz or zstd instead"
        ),
        (None, Some(file)) => Sink::file(file)?,
        (None, None) => anyhow::bail!("give --layout DIR or -o FILE"),
    };
    let opts = PackOptions {
        compress: args.compress,
        level,
        threads,
        quiet: args.quiet,
    };
    let desc = pack(input, sink, &opts)?;
    if let Some(n) = new_layout {
        n.keep();
    }
    common::json::write_line(io::stdout().lock(), &desc)?;
    Ok(Exit::Success)
}

/// How to pack: what `layer-pack` takes as flags.
pub struct PackOptions {
    pub compress: Compression,
    pub level: i32,
    pub threads: usize,
    pub quiet: bool,
}

impl Default for PackOptions {
    /// `layer-pack`'s defaults: gzip at its default level, one thread per CPU.
    fn default() -> PackOptions {
        PackOptions {
            compress: Compression::Gzip,
            level: Compression::Gzip.default_level(),
            threads: common::cli::default_threads(),
            quiet: false,
        }
    }
}

/// `layer-pack --layout LAYOUT` of a tar stream (`what` names it in errors): the blob stored
/// in `layout`, its descriptor returned.
pub fn pack_tar_into<R: Read + 'static>(
    layout: &Layout,
    tar: R,
    what: &str,
    opts: &PackOptions,
) -> common::Result<LayerDescriptor> {
    pack(
        Input::Tar(what.to_string(), Box::new(tar)),
        Sink::blob(layout)?,
        opts,
    )
}

fn pack(input: Input, sink: Sink, opts: &PackOptions) -> common::Result<LayerDescriptor> {
    if let Input::Dir(dir) = &input {
        sink.check_outside(dir)?;
    }
    let progress = Progress::bytes("packing", opts.quiet);
    let mut encoder = Encoder::new(Behind::new(sink)?, opts.compress, opts.level, opts.threads)?;
    let packed = match input {
        Input::Tar(what, r) => check::pack(progress.reader(r), &what, &mut encoder)?,
        Input::Dir(dir) => dir::pack(&dir, &progress, &mut encoder)?,
    };
    let behind = encoder.finish().context("compressing the layer")?;
    let stored = behind.finish().context("writing the layer")?.commit()?;
    drop(progress);
    Ok(LayerDescriptor {
        media_type: common::media::layer_type(opts.compress).to_string(),
        digest: stored.digest,
        size: stored.size,
        diff_id: packed.diff_id,
        uncompressed_size: packed.len,
        reused: stored.reused,
        source: Some(stored.source),
        annotations: Default::default(),
    })
}

enum Input {
    /// A tar stream, and its name for messages.
    Tar(String, Box<dyn Read>),
    Dir(PathBuf),
}

fn open_input(path: &Path) -> common::Result<Input> {
    if path.as_os_str() == "-" {
        let stdin = BufReader::with_capacity(1 << 20, io::stdin());
        return Ok(Input::Tar("stdin".into(), Box::new(stdin)));
    }
    let shown = path.display().to_string();
    let file = File::open(path).with_context(|| shown.clone())?;
    if file.metadata().with_context(|| shown.clone())?.is_dir() {
        return Ok(Input::Dir(path.to_path_buf()));
    }
    Ok(Input::Tar(
        shown,
        Box::new(BufReader::with_capacity(1 << 20, file)),
    ))
}
