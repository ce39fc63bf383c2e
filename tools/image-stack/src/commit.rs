//! `--tag`: the stack as an image (docker commit): config and manifest blobs, layer blobs
//! copied in, the tag moved, the manifest's descriptor printed.

use crate::stack::Stack;
use anyhow::Context;
use common::config::{HistoryEntry, ImageConfig};
use common::descriptor::Descriptor;
use common::layout::Layout;
use common::manifest::Manifest;
use common::media;
use common::progress::{Progress, Unit};
use common::reference::ImageRef;
use common::time::Time;
use std::collections::BTreeMap;

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
        _ => ManifestSource::New(Box::new(new_config(stack, msg)?), BTreeMap::new()),
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
    let entry = HistoryEntry {
        created: Some(created),
        created_by: msg.created_by.clone(),
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
