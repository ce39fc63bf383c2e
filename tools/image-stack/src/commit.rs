//! `--tag`: the stack as an image (docker commit): config and manifest blobs, layer blobs
//! copied in, the tag moved, the manifest's descriptor printed.

use crate::stack::Stack;
use anyhow::{Context, bail};
use common::cli::PoisonOnDrop;
use common::config::{HistoryEntry, ImageConfig};
use common::descriptor::Descriptor;
use common::descriptor::LayerDescriptor;
use common::digest::Digest;
use common::layout::Layout;
use common::layout::mounts::RecordDir;
use common::manifest::Manifest;
use common::manifest::PlatformSpec;
use common::media;
use common::progress::{Progress, Unit};
use common::reference::ImageRef;
use common::time::Time;
use common::tree::Exclude;
use layer_diff::DiffOptions;
use layer_pack::PackOptions;
use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// What the new history entries say.
#[derive(Debug, Default)]
pub struct Message {
    pub comment: Option<String>,
    pub author: Option<String>,
    pub created_by: Option<String>,
    pub changes: Vec<String>,
}

impl Message {
    fn is_empty(&self) -> bool {
        self.comment.is_none()
            && self.author.is_none()
            && self.created_by.is_none()
            && self.changes.is_empty()
    }
}

/// Writes the image and points `target`'s tag at it (reading no JSON document larger than
/// `max_json` from the target layout). Returns the index entry's descriptor. A layout it
/// creates is said on stderr unless `quiet`.
pub fn commit(
    stack: &Stack,
    target: &ImageRef,
    msg: &Message,
    max_json: u64,
    quiet: bool,
) -> crate::Result<Descriptor> {
    target.tag()?;
    // Everything that can be refused is checked before the layout is touched.
    let source = match &stack.base {
        Some(base) if stack.added == 0 && stack.dropped == 0 && msg.is_empty() => ManifestSource::Reuse {
            manifest: base.manifest_bytes.clone(),
            media_type: base.descriptor.media_type.clone(),
        },
        _ => ManifestSource::New(Box::new(new_config(stack, msg)?), base_annotations(stack)),
    };
    store(stack, target, source, max_json, quiet)
}

/// Writes `config`, made elsewhere (a rebase, a squash), as the image of the stack's layers,
/// its manifest carrying `annotations`, and points `target`'s tag at it.
pub fn commit_config(
    stack: &Stack,
    target: &ImageRef,
    mut config: ImageConfig,
    annotations: BTreeMap<String, String>,
    max_json: u64,
    quiet: bool,
) -> crate::Result<Descriptor> {
    target.tag()?;
    set_layers(&mut config, stack);
    store(
        stack,
        target,
        ManifestSource::New(Box::new(config), annotations),
        max_json,
        quiet,
    )
}

fn store(
    stack: &Stack,
    target: &ImageRef,
    source: ManifestSource,
    max_json: u64,
    quiet: bool,
) -> crate::Result<Descriptor> {
    let tag = target.tag()?;
    let layout = Layout::open_or_create(&target.layout)?.with_max_json(max_json);
    common::cli::say_if_created("image-stack", &layout, quiet);
    let progress = Progress::new(quiet);
    let total = stack.layers.iter().map(|l| l.desc.size).sum();
    progress.start("copying layers", Unit::Bytes, Some(total));
    for (i, layer) in stack.layers.iter().enumerate() {
        progress.set_layer(i + 1, stack.layers.len());
        stack.bring_in(&layout, layer, &progress)?;
    }
    drop(progress);
    let (manifest_bytes, media_type, platform) = match source {
        ManifestSource::Reuse { manifest, media_type } => {
            // A plain re-tag or a copy to another layout: the image stays byte for byte.
            if let Some(base) = &stack.base {
                let c = &base.config_desc;
                layout
                    .copy_blob_from(
                        &base.layout.blob_path(&c.digest),
                        &c.digest,
                        c.size,
                        &Progress::hidden(),
                    )
                    .with_context(|| format!("copying config {}", c.digest))?;
            }
            (manifest, media_type, stack.config.platform())
        }
        ManifestSource::New(config, annotations) => {
            let config_bytes = common::json::canonical(&config)?;
            let (config_digest, _) = layout.write_blob(&config_bytes)?;
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(media::MANIFEST.to_string()),
                artifact_type: None,
                config: Descriptor::new(media::CONFIG, config_digest, config_bytes.len() as u64),
                layers: stack.layers.iter().map(|l| l.desc.clone()).collect(),
                subject: None,
                annotations,
                extra: BTreeMap::new(),
            };
            (
                common::json::canonical(&manifest)?,
                media::MANIFEST.to_string(),
                config.platform(),
            )
        }
    };
    let digest = common::digest::Digest::of(&manifest_bytes);
    let mut desc = Descriptor::new(&media_type, digest, manifest_bytes.len() as u64);
    desc.platform = platform;
    // The manifest is stored under the index lock, with the tag: the same manifest may be a
    // dangling image's that a concurrent image-prune would otherwise remove in between.
    layout.store_and_tag(tag, desc.clone(), &manifest_bytes)?;
    desc.annotations
        .insert(media::REF_NAME.to_string(), tag.to_string());
    Ok(desc)
}

/// image-spec's base annotations, naming the `--from` image the new one extends (its parent,
/// for image-ls and image-prune). None when the stack does not extend it: from scratch, or
/// with layers dropped. The name is the REF alone: the layout's path would make the digest
/// depend on where the layout is.
fn base_annotations(stack: &Stack) -> BTreeMap<String, String> {
    match &stack.base {
        Some(base) if stack.dropped == 0 => base.annotations(),
        _ => BTreeMap::new(),
    }
}

/// Where the new image's manifest comes from.
enum ManifestSource {
    /// The base image's manifest, as it is: nothing changes but the tag (or the layout).
    Reuse { manifest: Vec<u8>, media_type: String },
    /// A new manifest, of this config and the stack's layers, with these annotations.
    New(Box<ImageConfig>, BTreeMap<String, String>),
}

/// The base config with the changes applied, the stack's diff_ids, and the new history.
fn new_config(stack: &Stack, msg: &Message) -> crate::Result<ImageConfig> {
    let mut config = stack.config.clone();
    crate::change::apply(&mut config, &msg.changes)?;
    let created = created()?;
    config.created = Some(created.clone());
    if let Some(a) = &msg.author {
        config.author = Some(a.clone());
    }
    set_layers(&mut config, stack);
    // A commit of config changes alone records them, as BuildKit does, rather than a blank.
    let created_by = match &msg.created_by {
        None if stack.added == 0 && !msg.changes.is_empty() => Some(crate::change::created_by(&msg.changes)),
        other => other.clone(),
    };
    let entry = HistoryEntry {
        created: Some(created),
        created_by,
        author: msg.author.clone(),
        comment: msg.comment.clone(),
        ..HistoryEntry::default()
    };
    let mut entries = vec![entry.clone(); stack.added];
    // docker commit writes one entry per commit: a commit without a layer records its config
    // change (or message) as one empty layer.
    if stack.added == 0 && !msg.is_empty() {
        entries.push(HistoryEntry {
            empty_layer: Some(true),
            ..entry
        });
    }
    config.history.get_or_insert_default().extend(entries);
    Ok(config)
}

/// The stack's layers as the config's `rootfs`.
fn set_layers(config: &mut ImageConfig, stack: &Stack) {
    let rootfs = config.rootfs.get_or_insert_default();
    rootfs.fs_type = Some("layers".into());
    rootfs.diff_ids = stack.layers.iter().map(|l| l.diff_id.clone()).collect();
}

/// `created`: now, or `SOURCE_DATE_EPOCH` when set (so one commit gives one digest).
pub fn created() -> crate::Result<String> {
    Ok(match common::time::source_date_epoch()? {
        Some(secs) => Time { secs, nanos: 0 }.rfc3339(),
        None => Time::now()?.rfc3339_nano(),
    })
}

/// `--commit DIR`: docker commit in one step. DIR is an image-stack mount (its image is the
/// base, its upper directory the change, read as `layer-diff --overlay UPPER` reads it) or, with
/// `--from`, a plain directory (compared with the image as `layer-diff IMAGE DIR` compares).
pub struct Container {
    /// The base, as `--from` takes it.
    pub base: String,
    /// The mount's manifest: what the base must still be.
    manifest: Option<Digest>,
    changes: Changes,
    /// Held while committing: `--unmount` waits.
    _record: Option<RecordDir>,
}

enum Changes {
    Upper(PathBuf),
    Dir(String),
}

impl Container {
    pub fn of(dir: &Path, from: Option<&str>) -> crate::Result<Container> {
        let is_mount = match crate::mount::find(dir) {
            Ok(found) => Some(found),
            Err(_) if !dir.is_dir() => bail!("--commit {}: no such directory", dir.display()),
            Err(_) => None,
        };
        if let Some((_, record)) = is_mount {
            let r = record.read()?;
            // The tag may have moved since the mount: the base is what was mounted.
            let base = if ImageRef::parse(&r.image)
                .and_then(|i| Layout::open(&i.layout)?.resolve(&i.target, None))
                .is_ok_and(|i| i.descriptor.digest == r.manifest)
            {
                r.image.clone()
            } else {
                format!("{}@{}", r.layout.display(), r.manifest)
            };
            if let Some(from) = from {
                let named = Stack::load(
                    Some(("--from", from)),
                    None,
                    0,
                    &[],
                    common::json::DEFAULT_MAX_JSON,
                )?;
                let digest = named.base.map(|b| b.descriptor.digest);
                if digest.as_ref() != Some(&r.manifest) {
                    bail!(
                        "--from {from} is not the image mounted at {} ({}, {}): a commit names its base once (leave --from out)",
                        dir.display(),
                        r.image,
                        r.manifest
                    );
                }
            }
            return Ok(Container {
                base,
                manifest: Some(r.manifest),
                changes: Changes::Upper(record.upper()),
                _record: Some(record),
            });
        }
        let Some(from) = from else {
            bail!(
                "--commit {}: not an image-stack mount; give --from IMAGE to commit a directory against that image",
                dir.display()
            );
        };
        let dir = dir
            .to_str()
            .with_context(|| format!("--commit {}: not a UTF-8 path", dir.display()))?;
        Ok(Container {
            base: from.to_string(),
            manifest: None,
            changes: Changes::Dir(dir.to_string()),
            _record: None,
        })
    }

    /// Refuses a base that is not the mounted image any more.
    pub fn check_base(&self, stack: &Stack) -> crate::Result<()> {
        let got = stack.base.as_ref().map(|b| &b.descriptor.digest);
        match &self.manifest {
            Some(m) if got != Some(m) => bail!(
                "{}: now names another image than the one mounted ({m})",
                self.base
            ),
            _ => Ok(()),
        }
    }

    /// The change as a layer of `layout`: diffed and packed as `layer-diff … | layer-pack
    /// --layout LAYOUT` would, through a pipe (the layer is never held in memory).
    pub fn pack(
        &self,
        layout: &Layout,
        platform: Option<&str>,
        max_json: u64,
        quiet: bool,
    ) -> crate::Result<LayerDescriptor> {
        let exclude = Exclude::new(&[])?;
        let platform = platform.map(PlatformSpec::parse).transpose()?;
        let warn = move |msg: &str| {
            if !quiet {
                common::progress::message(&format!("image-stack: warning: {msg}"));
            }
        };
        // The diff draws the progress line (it knows the tar's size); the pack reads it.
        let opts = DiffOptions {
            exclude: &exclude,
            platform: platform.as_ref(),
            max_json,
            ignore_times: false,
            opaque: false,
            warn: &warn,
            quiet,
        };
        let changes = match &self.changes {
            Changes::Upper(upper) => layer_diff::Changes::Overlay { upper, lower: None },
            Changes::Dir(dir) => layer_diff::Changes::Trees {
                lower: &self.base,
                upper: dir,
            },
        };
        let pack_opts = PackOptions {
            quiet: true,
            ..PackOptions::default()
        };
        let (reader, writer) = std::io::pipe().context("making a pipe")?;
        std::thread::scope(|s| {
            let out = BufWriter::with_capacity(1 << 20, writer);
            let diff = s.spawn(move || layer_diff::write_changeset(&changes, &opts, out, PoisonOnDrop::new));
            let packed = layer_pack::pack_tar_into(layout, reader, "the changes", &pack_opts);
            let diffed = diff
                .join()
                .map_err(|_| anyhow::anyhow!("the diff thread panicked"))?;
            // The diff's failure is the one to tell (the pack then only saw a cut stream).
            diffed.context("diffing")?;
            packed
        })
    }
}
