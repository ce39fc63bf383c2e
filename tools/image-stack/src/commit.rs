//! `--tag`: the stack as an image (docker commit): config and manifest blobs, layer blobs
//! copied in, the tag moved, the manifest's descriptor printed.

use crate::stack::Stack;
use anyhow::Context;
use common::descriptor::{Descriptor, Platform};
use common::layout::{Layout, Manifest};
use common::media;
use common::reference::ImageRef;
use common::time::Time;
use serde_json::{Map, Value, json};
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

/// Writes the image and points `target`'s tag at it. Returns the index entry's descriptor.
pub fn commit(stack: &Stack, target: &ImageRef, msg: &Message) -> crate::Result<Descriptor> {
    let tag = target.tag()?;
    // Everything that can be refused is checked before the layout is touched.
    let plan = match &stack.base {
        Some(base) if stack.added == 0 && stack.dropped == 0 && msg.is_empty() => Plan::Same {
            manifest: base.manifest_bytes.clone(),
            media_type: base.descriptor.media_type.clone(),
        },
        _ => Plan::New(new_config(stack, msg)?),
    };
    let layout = Layout::open_or_create(&target.layout)?;
    for layer in &stack.layers {
        stack.bring_in(&layout, layer)?;
    }
    let (manifest_bytes, media_type, config) = match plan {
        Plan::Same { manifest, media_type } => {
            // A plain re-tag or a copy to another layout: the image stays byte for byte.
            if let Some(base) = &stack.base {
                let c = &base.config_desc;
                layout
                    .copy_blob_from(&base.layout.blob_path(&c.digest), &c.digest, c.size)
                    .with_context(|| format!("copying config {}", c.digest))?;
            }
            let config: Value = serde_json::from_slice(&manifest)
                .ok()
                .and_then(|m: Value| m.get("config").cloned())
                .and_then(|c| serde_json::from_value::<Descriptor>(c).ok())
                .map(|c| layout.read_json(&c))
                .transpose()?
                .unwrap_or(Value::Null);
            (manifest, media_type, config)
        }
        Plan::New(config) => {
            let config_bytes = common::json::canonical(&config)?;
            let (config_digest, _) = layout.write_blob(&config_bytes)?;
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(media::MANIFEST.to_string()),
                artifact_type: None,
                config: Descriptor::new(media::CONFIG, config_digest, config_bytes.len() as u64),
                layers: stack.layers.iter().map(|l| l.desc.clone()).collect(),
                subject: None,
                annotations: BTreeMap::new(),
                extra: BTreeMap::new(),
            };
            (
                common::json::canonical(&manifest)?,
                media::MANIFEST.to_string(),
                config,
            )
        }
    };
    let digest = common::digest::Digest::of(&manifest_bytes);
    let mut desc = Descriptor::new(&media_type, digest, manifest_bytes.len() as u64);
    desc.platform = platform_of(&config);
    // The manifest is stored under the index lock, with the tag: the same manifest may be a
    // dangling image's that a concurrent image-prune would otherwise remove in between.
    layout.store_and_tag(tag, desc.clone(), &manifest_bytes)?;
    desc.annotations
        .insert(media::REF_NAME.to_string(), tag.to_string());
    Ok(desc)
}

enum Plan {
    Same { manifest: Vec<u8>, media_type: String },
    New(Value),
}

/// The base config with the changes applied, the stack's diff_ids, and the new history.
fn new_config(stack: &Stack, msg: &Message) -> crate::Result<Value> {
    let mut config = stack.config.clone();
    crate::change::apply(&mut config, &msg.changes)?;
    let created = created()?;
    let Some(root) = config.as_object_mut() else {
        anyhow::bail!("the image config is not a JSON object");
    };
    root.insert("created".into(), json!(created));
    if let Some(a) = &msg.author {
        root.insert("author".into(), json!(a));
    }
    let rootfs = root.entry("rootfs").or_insert_with(|| json!({}));
    rootfs["type"] = json!("layers");
    rootfs["diff_ids"] = json!(
        stack
            .layers
            .iter()
            .map(|l| l.diff_id.to_string())
            .collect::<Vec<_>>()
    );
    let mut entry = Map::new();
    entry.insert("created".into(), json!(created));
    for (key, value) in [
        ("created_by", &msg.created_by),
        ("author", &msg.author),
        ("comment", &msg.comment),
    ] {
        if let Some(v) = value {
            entry.insert(key.into(), json!(v));
        }
    }
    let mut entries = vec![Value::Object(entry.clone()); stack.added];
    // docker commit writes one entry per commit: a commit without a layer records its config
    // change (or message) as one empty layer.
    if stack.added == 0 && !msg.is_empty() {
        entry.insert("empty_layer".into(), json!(true));
        entries.push(Value::Object(entry));
    }
    let history = root.entry("history").or_insert_with(|| json!([]));
    if !history.is_array() {
        *history = json!([]);
    }
    if let Some(h) = history.as_array_mut() {
        h.extend(entries);
    }
    Ok(config)
}

/// The index entry's platform, from the config.
fn platform_of(config: &Value) -> Option<Platform> {
    let s = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
    Some(Platform {
        architecture: s("architecture")?,
        os: s("os")?,
        variant: s("variant"),
        extra: BTreeMap::new(),
    })
}

/// `created`: now, or `SOURCE_DATE_EPOCH` when set (so one commit gives one digest).
fn created() -> crate::Result<String> {
    Ok(match common::tarwrite::source_date_epoch()? {
        Some(secs) => Time { secs, nanos: 0 }.rfc3339(),
        None => Time::now()?.rfc3339_nano(),
    })
}
