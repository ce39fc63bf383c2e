//! layer-pack: a tar stream (or a directory) into a content-addressed layer blob, in one
//! streaming pass: read and check the tar, hash it (diffID), compress it in parallel, hash the
//! compressed bytes (digest), write a temporary file, rename. Prints one LAYER DESCRIPTOR.

mod check;
mod dir;
mod sink;

use anyhow::Context;
use clap::Parser;
use common::cli::Exit;
use common::compress::{Compression, Decoder, Encoder};
use common::descriptor::LayerDescriptor;
use common::layout::Layout;
use common::progress::{Progress, Unit};
use sink::{Behind, NewLayout, Sink};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "\
Examples:
  layer-diff base web | layer-pack --layout store    # prints one LAYER DESCRIPTOR
  layer-pack --layout store rootfs/                  # a whole directory as one layer
  layer-pack --compress zstd --layout store < changes.tar
  layer-pack -o layer.tar.gz < changes.tar           # blob to a file, descriptor to stdout
  layer-pack --layout store rootfs.tar.gz            # gzip or zstd input, as docker import

The descriptor is one JSON line: mediaType, digest, size (the blob), diffID and
uncompressedSize (the tar), contentSize (what docker shows as the layer's SIZE: the apparent
size of its files, each inode once, a symlink by its target's length, whiteouts 0), reused
(the blob was already there), source (the layout or file).
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
    /// A tar file (gzip or zstd compressed or not), `-` for stdin, or a directory to pack as
    /// one whole-tree layer.
    #[arg(value_name = "INPUT", default_value = "-")]
    pub input: PathBuf,

    /// The OCI layout to store the blob in (created when missing, which is said on stderr;
    /// its path cannot hold ':', where an IMAGE splits).
    #[arg(long, value_name = "LAYOUT", value_parser = common::reference::layout_path)]
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
    let mut opened = None;
    let sink = match (&args.layout, &args.output) {
        (Some(dir), _) => {
            let (layout, created) = NewLayout::open(dir)?;
            new_layout = created;
            let sink = Sink::blob(&layout)?;
            opened = Some(layout);
            sink
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
    // Said once the layout stays: a failed first pack removes the layout it made.
    if let Some(layout) = &opened {
        common::cli::say_if_created("layer-pack", layout, args.quiet);
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
        Input::Tar(what.to_string(), Box::new(tar), None),
        Sink::blob(layout)?,
        opts,
    )
}

fn pack(input: Input, sink: Sink, opts: &PackOptions) -> common::Result<LayerDescriptor> {
    if let Input::Dir(dir) = &input {
        sink.check_outside(dir)?;
    }
    let progress = Progress::new(opts.quiet);
    let mut encoder = Encoder::new(Behind::new(sink)?, opts.compress, opts.level, opts.threads)?;
    // Uncompressed, the blob is the tar: its digest, computed on the writer thread, is the
    // diffID, and hashing the same bytes a second time here would only cost CPU.
    let diff_id = opts.compress != Compression::None;
    let packed = match input {
        Input::Tar(what, r, size) => {
            progress.start("packing", Unit::Bytes, size);
            // Counted as read, compressed or not, so the line's total is the file's size.
            let tar = Decoder::sniff(progress.reader(r)).with_context(|| what.clone())?;
            let what = match tar.compression() {
                Compression::None => what,
                c => format!("{what} ({c})"),
            };
            check::pack(tar, &what, &mut encoder, diff_id)?
        }
        Input::Dir(dir) => dir::pack(&dir, &progress, &mut encoder, diff_id)?,
    };
    let behind = encoder.finish().context("compressing the layer")?;
    let stored = behind.finish().context("writing the layer")?.commit()?;
    drop(progress);
    Ok(LayerDescriptor {
        media_type: common::media::layer_type(opts.compress).to_string(),
        diff_id: packed.diff_id.unwrap_or_else(|| stored.digest.clone()),
        digest: stored.digest,
        size: stored.size,
        uncompressed_size: packed.len,
        content_size: Some(packed.content.bytes()),
        reused: stored.reused,
        source: Some(stored.source),
        annotations: Default::default(),
    })
}

enum Input {
    /// A tar stream, its name for messages, and its size when it is a file.
    Tar(String, Box<dyn Read>, Option<u64>),
    Dir(PathBuf),
}

fn open_input(path: &Path) -> common::Result<Input> {
    if path.as_os_str() == "-" {
        // `< changes.tar`: a file's size is the progress line's total.
        let size = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(|fd| File::from(fd).metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len());
        let stdin = BufReader::with_capacity(1 << 20, common::cli::tar_stdin()?);
        return Ok(Input::Tar("stdin".into(), Box::new(stdin), size));
    }
    let shown = path.display().to_string();
    let file = File::open(path).with_context(|| shown.clone())?;
    let meta = file.metadata().with_context(|| shown.clone())?;
    if meta.is_dir() {
        return Ok(Input::Dir(path.to_path_buf()));
    }
    Ok(Input::Tar(
        shown,
        Box::new(BufReader::with_capacity(1 << 20, file)),
        Some(meta.len()),
    ))
}
