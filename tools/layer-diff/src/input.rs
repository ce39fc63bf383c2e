//! LOWER and UPPER arguments: a directory, an IMAGE, or a tar file (`-` for stdin), read into
//! a [`Tree`], with what is needed later to fetch content and compare it.

use anyhow::{Context, bail};
use common::compress::Decoder;
use common::content::Contents;
use common::digest::{Digest, Hasher};
use common::layout::Layout;
use common::manifest::{Image, PlatformSpec};
use common::reference::{ImageRef, Target};
use common::tree::{DirOptions, Exclude, Node, Source, Tree};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// What an argument names.
#[derive(Debug, Clone)]
pub enum Input {
    Dir(PathBuf),
    Image(ImageRef),
    Tar(PathBuf),
    Stdin,
}

impl Input {
    /// Tells the kinds apart as docs/CLI.md says: a directory holding `oci-layout` is the
    /// IMAGE `DIR:latest`, as for every tool; any other existing directory without `:` is a
    /// directory; `X:REF` where X holds `oci-layout` is an IMAGE; a regular file is a tar.
    /// stdin is refused when it is a terminal, before any work.
    pub fn classify(arg: &str) -> common::Result<Input> {
        let path = Path::new(arg);
        if arg == "-" {
            common::cli::tar_stdin()?;
            return Ok(Input::Stdin);
        }
        if !arg.contains(':') && path.is_dir() {
            if path.join("oci-layout").is_file() {
                // Not parsed: the whole argument is the layout's path, whatever `@` it holds.
                return Ok(Input::Image(ImageRef {
                    layout: path.into(),
                    target: Target::Tag("latest".into()),
                }));
            }
            return Ok(Input::Dir(path.into()));
        }
        if ImageRef::names_existing_layout(arg) {
            return Ok(Input::Image(ImageRef::parse(arg)?));
        }
        if path.is_file() {
            return Ok(Input::Tar(path.into()));
        }
        if path.is_dir() {
            return Ok(Input::Dir(path.into()));
        }
        // Meant as an IMAGE: its layout is missing, and the error says what an IMAGE is.
        if arg.contains(':')
            && let Ok(image) = ImageRef::parse(arg)
        {
            Layout::open_image(&image).with_context(|| arg.to_string())?;
        }
        bail!("{arg}: no such directory, image or tar file")
    }
}

/// A tree read from an argument, and where its content can be read again.
pub struct Side {
    pub tree: Tree,
    /// For an image: its layout and manifest, to spool content from.
    image: Option<(Layout, Image)>,
    /// For a tar file: its path, to read again.
    tar: Option<PathBuf>,
    /// Content read in the first pass (stdin).
    pub contents: Contents,
    /// Content hashes of layer entries, collected in the first pass for `--ignore-times`.
    hashes: HashMap<(usize, u64), Digest>,
}

/// How to read an argument.
pub struct ReadOptions<'a> {
    pub exclude: &'a Exclude,
    pub platform: Option<&'a PlatformSpec>,
    /// The largest JSON document read from a layout (`--max-json`).
    pub max_json: u64,
    /// Hash file content while reading layers (for `--ignore-times`).
    pub hash: bool,
    /// Keep every file's content of a tar that cannot be read twice (stdin as UPPER).
    pub spool_stdin: bool,
    pub warn: &'a (dyn Fn(&str) + Sync),
}

impl Side {
    pub fn read(input: &Input, opts: &ReadOptions) -> common::Result<Side> {
        let mut side = Side {
            tree: Tree::new(),
            image: None,
            tar: None,
            contents: Contents::new(),
            hashes: HashMap::new(),
        };
        match input {
            Input::Dir(dir) => {
                let dir_opts = DirOptions {
                    exclude: Some(opts.exclude),
                    keep_overlay_xattrs: false,
                    warn: Some(opts.warn),
                };
                side.tree = Tree::from_dir(dir, &dir_opts)?;
            }
            Input::Image(r) => {
                let layout = Layout::open_image(r)?.with_max_json(opts.max_json);
                let image = layout
                    .resolve(&r.target, opts.platform)
                    .with_context(|| r.to_string())?;
                let hashes = &mut side.hashes;
                side.tree = Tree::from_image_with(&layout, &image, &mut |layer, index, _, content| {
                    if opts.hash {
                        hashes.insert((layer, index), hash(content)?);
                    }
                    Ok(())
                })
                .with_context(|| r.to_string())?;
                side.image = Some((layout, image));
            }
            Input::Tar(path) => {
                side.read_tar(open_tar(path)?, opts, false)
                    .with_context(|| path.display().to_string())?;
                side.tar = Some(path.clone());
            }
            Input::Stdin => {
                let r = Decoder::sniff(common::cli::tar_stdin()?.lock()).context("stdin")?;
                side.read_tar(BufReader::with_capacity(1 << 20, r), opts, opts.spool_stdin)
                    .context("stdin")?;
            }
        }
        side.tree.exclude(opts.exclude);
        Ok(side)
    }

    fn read_tar(&mut self, mut r: impl BufRead, opts: &ReadOptions, spool: bool) -> common::Result<()> {
        // tar-rs reads no bytes as an empty archive; an empty input is rather what a failed
        // producer at the head of a pipe leaves (layer-pack refuses it for the same reason).
        if r.fill_buf()?.is_empty() {
            bail!("empty input, not a tar (an empty layer is a tar of two zero blocks)");
        }
        let (hashes, contents) = (&mut self.hashes, &mut self.contents);
        self.tree.apply_layer_with(0, r, &mut |index, _, content| {
            if spool {
                contents.spool_entry(0, index, content)?;
            }
            if opts.hash {
                let content: &mut dyn Read = &mut if spool {
                    contents.open(b"", &layer_node(index))?
                } else {
                    Box::new(content) as Box<dyn Read>
                };
                hashes.insert((0, index), hash(content)?);
            }
            Ok(())
        })
    }

    /// Fetches the content of `nodes` that lives in layers (a second pass over them).
    pub fn spool<'a>(&mut self, nodes: impl IntoIterator<Item = &'a Node>) -> common::Result<()> {
        if let Some((layout, image)) = &self.image {
            self.contents.spool_image(layout, image, nodes)?;
        } else if let Some(path) = &self.tar {
            let wanted = Contents::wanted(nodes).remove(&0).unwrap_or_default();
            if !wanted.is_empty() {
                self.contents
                    .spool_layer(0, open_tar(path)?, &wanted)
                    .with_context(|| path.display().to_string())?;
            }
        }
        Ok(())
    }

    /// The content hash of a regular file of this side.
    pub fn content_hash(&self, path: &[u8], node: &Node) -> common::Result<Digest> {
        match &node.source {
            Source::Layer { layer, index } => self
                .hashes
                .get(&(*layer as usize, *index))
                .cloned()
                .with_context(|| format!("{}: content was not hashed", common::path::display(path))),
            _ => hash(&mut self.contents.open(path, node)?),
        }
    }
}

/// A tar file, decompressed when it is gzip or zstd (as `docker import` reads one).
fn open_tar(path: &Path) -> common::Result<impl BufRead> {
    let shown = || path.display().to_string();
    let f = File::open(path).with_context(shown)?;
    let tar = Decoder::sniff(BufReader::with_capacity(1 << 20, f)).with_context(shown)?;
    Ok(BufReader::with_capacity(1 << 20, tar))
}

fn layer_node(index: u64) -> Node {
    Node {
        meta: common::entry::Meta::new(common::entry::Kind::File, 0),
        ino: 0,
        source: Source::Layer { layer: 0, index },
        written: 0,
    }
}

/// The digest of a file's whole content. A sparse file's holes are hashed as the zeros they
/// read as (time grows with its real size): the same bytes must compare equal whether a side
/// holds them as a sparse layer entry, a plain one or a file on disk.
pub fn hash(r: &mut dyn Read) -> common::Result<Digest> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).context("reading content")?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().0)
}
