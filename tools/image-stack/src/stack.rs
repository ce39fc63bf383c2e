//! The stack: a base image (or scratch) plus layer descriptors, minus dropped layers; where each
//! layer's blob can be found; the config it all goes into.

use anyhow::{Context, bail};
use common::config::ImageConfig;
use common::descriptor::{Descriptor, LayerDescriptor};
use common::digest::Digest;
use common::layer::LayerStream;
use common::layout::Layout;
use common::manifest::PlatformSpec;
use common::media;
use common::progress::{Progress, Unit};
use common::reference::ImageRef;
use common::size::LayerSize;
use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// One layer of the stack.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The descriptor as it goes into the manifest.
    pub desc: Descriptor,
    pub diff_id: Digest,
    /// Where the blob is, besides the layout an image is written to.
    pub home: Home,
}

impl Layer {
    /// The layer a descriptor names, read from its `source` when it has one.
    fn of(d: &LayerDescriptor) -> crate::Result<Layer> {
        common::media::layer_compression(&d.media_type).with_context(|| format!("layer {}", d.digest))?;
        let home = match &d.source {
            None => Home::Unknown,
            Some(src) if src.is_dir() => {
                Home::Layout(Layout::open(src).with_context(|| format!("layer {}: source", d.digest))?)
            }
            Some(src) => Home::File(src.clone()),
        };
        Ok(Layer {
            desc: d.to_manifest_layer(),
            diff_id: d.diff_id.clone(),
            home,
        })
    }
}

/// Where a layer's blob can be read.
#[derive(Clone, Debug)]
pub enum Home {
    /// In this layout (the base image's, or a descriptor's `source`).
    Layout(Layout),
    /// In a blob file (`layer-pack -o FILE`).
    File(PathBuf),
    /// The descriptor names no source: the blob must already be where it is needed.
    Unknown,
}

/// The base image as read.
pub struct Base {
    pub layout: Layout,
    /// The tag `--from` named it by, if it named a tag.
    pub tag: Option<String>,
    pub descriptor: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config_desc: Descriptor,
}

impl Base {
    /// image-spec's base annotations for an image built on this one: its manifest digest, and
    /// its tag when `--from` named one. The REF alone: the layout's path would make the
    /// digest depend on where the layout is.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        a.insert(media::BASE_DIGEST.to_string(), self.descriptor.digest.to_string());
        if let Some(tag) = &self.tag {
            a.insert(media::BASE_NAME.to_string(), tag.clone());
        }
        a
    }
}

/// Everything a sink needs.
pub struct Stack {
    pub base: Option<Base>,
    /// The base config (or a scratch one) with the dropped layers' history removed.
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// How many layers at the top came from `--layer` files.
    pub added: usize,
    pub dropped: usize,
}

impl Stack {
    /// Reads the base image (the flag that named it, for errors, and the IMAGE), removes its
    /// top `drop` layers, then adds the layers of each descriptor file (`-` is stdin) on top. No
    /// JSON document read is larger than `max_json`.
    pub fn load(
        from: Option<(&str, &str)>,
        platform: Option<&str>,
        drop: usize,
        layer_files: &[PathBuf],
        max_json: u64,
    ) -> crate::Result<Stack> {
        let platform = platform.map(PlatformSpec::parse).transpose()?;
        let (base, mut config, mut layers) = match from {
            Some((flag, from)) => {
                let (base, config, layers) = read_base(flag, from, platform.as_ref(), max_json)?;
                (Some(base), config, layers)
            }
            None => {
                let p = platform.unwrap_or_else(PlatformSpec::host);
                (None, ImageConfig::scratch(&p), Vec::new())
            }
        };
        if drop > layers.len() {
            bail!(
                "--drop {drop}: the image has only {} layer{}",
                layers.len(),
                if layers.len() == 1 { "" } else { "s" }
            );
        }
        if drop > 0 {
            drop_history(&mut config, layers.len(), drop)?;
            layers.truncate(layers.len() - drop);
        }
        let mut added = 0;
        let mut stdin_read = false;
        for file in layer_files {
            let descriptors = read_descriptors(file, &mut stdin_read, max_json)?;
            // An empty list is what a failed producer upstream in a pipe leaves: committing
            // it would move the tag to an image without the layer.
            if descriptors.is_empty() {
                bail!("--layer {}: no layer descriptors", file.display());
            }
            for d in descriptors {
                layers.push(Layer::of(&d)?);
                added += 1;
            }
        }
        Ok(Stack {
            base,
            config,
            layers,
            added,
            dropped: drop,
        })
    }

    /// Adds a layer on top, as a `--layer` file's descriptor.
    pub fn push(&mut self, d: &LayerDescriptor) -> crate::Result<()> {
        self.layers.push(Layer::of(d)?);
        self.added += 1;
        Ok(())
    }

    /// Opens a layer's uncompressed tar for reading: from its own home, else from the base
    /// image's layout. The stream checks the blob digest and the diffID as it is read.
    pub fn open_layer(&self, layer: &Layer) -> crate::Result<LayerStream> {
        let base = self.base.as_ref().map(|b| &b.layout);
        match &layer.home {
            Home::Layout(l) if l.has_blob(&layer.desc.digest) => {
                LayerStream::open(l, &layer.desc, Some(&layer.diff_id))
            }
            Home::File(path) => LayerStream::open_file(path, &layer.desc, Some(&layer.diff_id)),
            _ => match base {
                Some(l) if l.has_blob(&layer.desc.digest) => {
                    LayerStream::open(l, &layer.desc, Some(&layer.diff_id))
                }
                _ => Err(missing(layer, None)),
            },
        }
    }

    /// A progress line over the stack's layers, in uncompressed bytes: with a total when every
    /// layer's size is recorded (layerkit records it in the manifest).
    pub fn progress(&self, what: &str, quiet: bool) -> Progress {
        let total = self.layers.iter().map(|l| LayerSize::recorded_tar(&l.desc)).sum();
        let progress = Progress::new(quiet);
        progress.start(what, Unit::Bytes, total);
        progress
    }

    /// Makes sure `target` holds the layer's blob, copying it in (verified) from wherever it
    /// is, counting its bytes on `progress`. A blob already there is trusted when its size
    /// matches.
    pub fn bring_in(&self, target: &Layout, layer: &Layer, progress: &Progress) -> crate::Result<()> {
        let digest = &layer.desc.digest;
        // Claimed, not just found: a concurrent image-prune keeps it for this commit.
        if target.claim_blob(digest)? {
            let path = target.blob_path(digest);
            let size = std::fs::metadata(&path)
                .with_context(|| path.display().to_string())?
                .len();
            if size != layer.desc.size {
                return Err(common::Error::SizeMismatch {
                    digest: digest.clone(),
                    expected: layer.desc.size,
                    actual: size,
                }
                .into());
            }
            progress.inc(size);
            return Ok(());
        }
        let base = self.base.as_ref().map(|b| &b.layout);
        let from: Option<PathBuf> = match &layer.home {
            Home::Layout(l) if l.has_blob(digest) => Some(l.blob_path(digest)),
            Home::File(p) => Some(p.clone()),
            _ => base.filter(|l| l.has_blob(digest)).map(|l| l.blob_path(digest)),
        };
        let Some(from) = from else {
            return Err(missing(layer, Some(target)));
        };
        target
            .copy_blob_from(&from, digest, layer.desc.size, progress)
            .with_context(|| format!("copying layer {digest} from {}", from.display()))?;
        Ok(())
    }
}

fn missing(layer: &Layer, target: Option<&Layout>) -> anyhow::Error {
    let mut places: Vec<String> = Vec::new();
    if let Some(t) = target {
        places.push(t.root().display().to_string());
    }
    match &layer.home {
        Home::Layout(l) => places.push(l.root().display().to_string()),
        Home::File(p) => places.push(p.display().to_string()),
        Home::Unknown => {}
    }
    anyhow::anyhow!(
        "layer blob {} is missing (looked in: {}; a layer descriptor's \"source\" names where its blob is)",
        layer.desc.digest,
        if places.is_empty() {
            "nowhere".to_string()
        } else {
            places.join(", ")
        }
    )
}

fn read_base(
    flag: &str,
    from: &str,
    platform: Option<&PlatformSpec>,
    max_json: u64,
) -> crate::Result<(Base, ImageConfig, Vec<Layer>)> {
    let r = ImageRef::parse(from)?;
    let layout = Layout::open_image(&r)
        .with_context(|| format!("{flag} {from}"))?
        .with_max_json(max_json);
    let image = layout
        .resolve(&r.target, platform)
        .with_context(|| format!("{flag} {r}"))?;
    let manifest_bytes = layout.read_blob(&image.descriptor)?;
    let config_desc = image.manifest.config.clone();
    let config = layout.read_config(&config_desc)?;
    let rootfs_type = config.rootfs.as_ref().and_then(|r| r.fs_type.as_deref());
    if rootfs_type != Some("layers") {
        bail!(
            "config {}: rootfs.type is {}, not \"layers\"",
            config_desc.digest,
            rootfs_type.map_or("missing".into(), |t| format!("{t:?}"))
        );
    }
    let diff_ids = config.diff_ids();
    if diff_ids.len() != image.manifest.layers.len() {
        bail!(
            "image {}: the config lists {} diff_ids for {} layers",
            image.descriptor.digest,
            diff_ids.len(),
            image.manifest.layers.len()
        );
    }
    let layers = image
        .manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(desc, diff_id)| Layer {
            desc: desc.clone(),
            diff_id: diff_id.clone(),
            home: Home::Layout(layout.clone()),
        })
        .collect();
    let base = Base {
        layout,
        tag: r.tag().ok().map(str::to_string),
        descriptor: image.descriptor,
        manifest_bytes,
        config_desc,
    };
    Ok((base, config, layers))
}

/// Removes the history entries of the top `drop` of `layers` layers: from the end, every entry
/// down to and including the `drop`-th one that made a layer (the empty-layer entries above a
/// dropped layer were made after it). Layers without history entries (an image whose history
/// is shorter than its layers) are taken to be the top ones.
fn drop_history(config: &mut ImageConfig, layers: usize, drop: usize) -> crate::Result<()> {
    let Some(history) = config.history.as_mut() else {
        return Ok(());
    };
    let with_history = history.iter().filter(|h| !h.is_empty_layer()).count();
    if with_history > layers {
        bail!("the image's history lists {with_history} layers, but it has {layers}");
    }
    let mut to_remove = drop.saturating_sub(layers - with_history);
    while to_remove > 0 {
        match history.pop() {
            Some(h) if !h.is_empty_layer() => to_remove -= 1,
            Some(_) => {}
            None => break,
        }
    }
    Ok(())
}

fn read_descriptors(
    file: &Path,
    stdin_read: &mut bool,
    max_json: u64,
) -> crate::Result<Vec<LayerDescriptor>> {
    if file == Path::new("-") {
        if std::mem::replace(stdin_read, true) {
            bail!("--layer -: stdin can be read only once");
        }
        return common::json::read_lines(std::io::stdin().lock(), "--layer -", max_json);
    }
    let f = std::fs::File::open(file).with_context(|| format!("--layer {}", file.display()))?;
    common::json::read_lines(
        BufReader::new(f),
        &format!("--layer {}", file.display()),
        max_json,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::HistoryEntry;

    fn entry(created_by: &str, empty: bool) -> HistoryEntry {
        HistoryEntry {
            created_by: Some(created_by.into()),
            empty_layer: empty.then_some(true),
            ..HistoryEntry::default()
        }
    }

    fn with_history(entries: Vec<HistoryEntry>) -> ImageConfig {
        ImageConfig {
            history: Some(entries),
            ..ImageConfig::default()
        }
    }

    fn names(config: &ImageConfig) -> Vec<String> {
        config
            .history()
            .iter()
            .map(|h| h.created_by.clone().unwrap())
            .collect()
    }

    #[test]
    fn drop_removes_the_top_layers_history_and_the_empty_entries_above_them() {
        let base = with_history(vec![
            entry("l1", false),
            entry("env", true),
            entry("l2", false),
            entry("cmd", true),
            entry("l3", false),
            entry("label", true),
        ]);
        let mut c = base.clone();
        drop_history(&mut c, 3, 1).unwrap();
        assert_eq!(names(&c), ["l1", "env", "l2", "cmd"]);
        let mut c = base.clone();
        drop_history(&mut c, 3, 2).unwrap();
        assert_eq!(names(&c), ["l1", "env"]);
        let mut c = base.clone();
        drop_history(&mut c, 3, 3).unwrap();
        assert!(names(&c).is_empty());
        let mut c = base.clone();
        assert!(drop_history(&mut c, 2, 1).is_err());
    }

    #[test]
    fn drop_with_short_history_takes_the_missing_entries_from_the_top() {
        let mut c = with_history(vec![entry("l1", false), entry("l2", false)]);
        drop_history(&mut c, 4, 2).unwrap();
        assert_eq!(names(&c), ["l1", "l2"]);
        drop_history(&mut c, 4, 3).unwrap();
        assert_eq!(names(&c), ["l1"]);
        let mut none = ImageConfig::default();
        drop_history(&mut none, 2, 1).unwrap();
        assert_eq!(none, ImageConfig::default());
    }
}
