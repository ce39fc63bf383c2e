//! An image's history as rows: config `history` entries matched to layers the way image-spec
//! says (`empty_layer` entries have no layer; the others take the next `rootfs.diff_ids`
//! entry), plus rows made up for layers that have no history entry left.

use anyhow::{Context, bail};
use common::descriptor::Descriptor;
use common::digest::Digest;
use common::layout::{Layout, Manifest};
use common::media;
use common::time::Time;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;

/// The parts of an image config that history needs.
#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
    #[serde(default)]
    history: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

/// One `history` entry (every field is optional in image-spec).
#[derive(Deserialize, Default, PartialEq, Debug)]
struct Entry {
    created: Option<String>,
    created_by: Option<String>,
    author: Option<String>,
    comment: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

/// One row of the history, oldest first in [`Stack::rows`].
#[derive(Clone, Debug)]
pub struct Row {
    /// The config's history entry as written (None for a row made up for a bare layer).
    pub entry: Option<Value>,
    /// When the entry says it was created; None when it does not say, or not in RFC 3339.
    pub created: Option<Time>,
    pub created_by: String,
    pub author: String,
    pub comment: String,
    /// The row's layer: its manifest descriptor and diffID; None for an empty-layer entry.
    pub layer: Option<(Descriptor, Digest)>,
}

/// An image's rows, and its id (the config digest, as docker's image id).
pub struct Stack {
    pub id: Digest,
    pub rows: Vec<Row>,
}

impl Stack {
    /// Reads the config of a manifest and matches its history to its layers.
    pub fn read(layout: &Layout, manifest: &Manifest) -> crate::Result<Stack> {
        let id = manifest.config.digest.clone();
        let config: Config = layout.read_json(&manifest.config)?;
        let diff_ids = config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            bail!(
                "config {id}: {} diff_ids for {} layers in the manifest",
                diff_ids.len(),
                manifest.layers.len()
            );
        }
        let mut layers = manifest.layers.iter().cloned().zip(diff_ids);
        let mut rows = Vec::new();
        for (i, raw) in config.history.unwrap_or_default().into_iter().enumerate() {
            let e: Entry = serde_json::from_value(raw.clone())
                .with_context(|| format!("config {id}: history entry {}", i + 1))?;
            let layer = if e.empty_layer {
                None
            } else {
                // docker refuses this too ("too many non-empty layers in History section"):
                // a layer would be shown against the wrong command.
                Some(layers.next().with_context(|| {
                    format!(
                        "config {id}: history entry {} has no layer left to describe",
                        i + 1
                    )
                })?)
            };
            rows.push(Row {
                created: e.created.as_deref().and_then(|c| Time::parse(c).ok()),
                created_by: e.created_by.unwrap_or_default(),
                author: e.author.unwrap_or_default(),
                comment: e.comment.unwrap_or_default(),
                entry: Some(raw),
                layer,
            });
        }
        rows.extend(layers.map(|layer| Row {
            entry: None,
            created: None,
            created_by: String::new(),
            author: String::new(),
            comment: String::new(),
            layer: Some(layer),
        }));
        Ok(Stack { id, rows })
    }

    /// True when `base`'s rows are exactly our first rows: its stack ends at our row
    /// `base.rows.len() - 1` (same history entries, same layers).
    pub fn starts_with(&self, base: &Stack) -> bool {
        base.rows.len() <= self.rows.len()
            && base.rows.iter().zip(&self.rows).all(|(b, r)| {
                b.entry == r.entry && b.layer.as_ref().map(|l| &l.1) == r.layer.as_ref().map(|l| &l.1)
            })
    }
}

/// For each row of `image`, the id of an image of the layout whose stack ends at that row:
/// the image itself on the top row, and any image (every manifest `index.json` reaches) whose
/// rows are a prefix of it. Images of the layout that cannot be read give no id: they are not
/// the one asked about, and an id less is all their damage can do here.
pub fn row_ids(layout: &Layout, image: &Stack) -> crate::Result<Vec<Option<Digest>>> {
    let mut ids = vec![None; image.rows.len()];
    let mut seen = HashSet::new();
    for manifest in manifests(layout)? {
        if manifest.config.digest == image.id || !seen.insert(manifest.config.digest.clone()) {
            continue;
        }
        let Ok(other) = Stack::read(layout, &manifest) else {
            continue;
        };
        if let Some(last) = other.rows.len().checked_sub(1)
            && image.starts_with(&other)
            && ids[last].is_none()
        {
            ids[last] = Some(other.id);
        }
    }
    if let Some(top) = ids.last_mut() {
        *top = Some(image.id.clone());
    }
    Ok(ids)
}

/// Every image manifest `index.json` reaches, through nested indexes, in index order.
fn manifests(layout: &Layout) -> crate::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    let mut todo: Vec<(Descriptor, u32)> = layout
        .read_index()?
        .manifests
        .into_iter()
        .rev()
        .map(|d| (d, 0))
        .collect();
    while let Some((desc, depth)) = todo.pop() {
        if media::is_manifest(&desc.media_type) {
            if let Ok(m) = layout.read_manifest(&desc) {
                out.push(m);
            }
        } else if media::is_index(&desc.media_type)
            && depth < 8
            && let Ok(nested) = layout.read_json::<common::layout::Index>(&desc)
        {
            todo.extend(nested.manifests.into_iter().rev().map(|d| (d, depth + 1)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_entries_are_strictly_typed_but_all_optional() {
        let e: Entry = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(e, Entry::default());
        assert!(serde_json::from_value::<Entry>(serde_json::json!({"created_by": 3})).is_err());
    }
}
