//! An image's history as rows: config `history` entries matched to layers the way image-spec
//! says (`empty_layer` entries have no layer; the others take the next `rootfs.diff_ids`
//! entry), plus rows made up for layers that have no history entry left.

use anyhow::{Context, bail};
use common::config::HistoryEntry;
use common::descriptor::Descriptor;
use common::digest::Digest;
use common::images;
use common::layout::Layout;
use common::manifest::Manifest;
use common::time::Time;
use std::collections::HashSet;

/// One row of the history, oldest first in [`History::rows`].
#[derive(Clone, Debug)]
pub struct Row {
    /// The config's history entry (None for a row made up for a bare layer).
    pub entry: Option<HistoryEntry>,
    /// When the entry says it was created; None when it does not say, or not in RFC 3339.
    pub created: Option<Time>,
    pub created_by: String,
    pub author: String,
    pub comment: String,
    /// The row's layer: its manifest descriptor and diffID; None for an empty-layer entry.
    pub layer: Option<(Descriptor, Digest)>,
}

/// An image's rows, and its id (the config digest, as docker's image id).
pub struct History {
    pub id: Digest,
    pub rows: Vec<Row>,
}

impl History {
    /// Reads the config of a manifest and matches its history to its layers.
    pub fn read(layout: &Layout, manifest: &Manifest) -> crate::Result<History> {
        let id = manifest.config.digest.clone();
        let config = layout.read_config(&manifest.config)?;
        if config.rootfs.is_none() {
            bail!("config {id}: no rootfs");
        }
        let diff_ids = config.diff_ids();
        if diff_ids.len() != manifest.layers.len() {
            bail!(
                "config {id}: {} diff_ids for {} layers in the manifest",
                diff_ids.len(),
                manifest.layers.len()
            );
        }
        let mut layers = manifest.layers.iter().cloned().zip(diff_ids.iter().cloned());
        let mut rows = Vec::new();
        for (i, e) in config.history().iter().enumerate() {
            let layer = if e.is_empty_layer() {
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
                created_by: e.created_by.clone().unwrap_or_default(),
                author: e.author.clone().unwrap_or_default(),
                comment: e.comment.clone().unwrap_or_default(),
                entry: Some(e.clone()),
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
        Ok(History { id, rows })
    }

    /// True when this image is built on `base` ([`images::extends`]).
    pub fn extends(&self, base: &History) -> bool {
        images::extends_by(base.parts(), self.parts())
    }

    /// The history entries and the diffIDs, in order.
    fn parts(&self) -> (impl Iterator<Item = &HistoryEntry>, impl Iterator<Item = &Digest>) {
        (
            self.rows.iter().filter_map(|r| r.entry.as_ref()),
            self.rows.iter().filter_map(|r| r.layer.as_ref().map(|l| &l.1)),
        )
    }
}

/// For each row of `image`, the id of an image of the layout whose stack ends at that row:
/// the image itself on the top row, and any image (every manifest `index.json` reaches) that
/// it extends ([`images::extends`]: the same first history entries and layers), on that
/// image's last row. Images of the layout that cannot be read give no id: they are not the one
/// asked about, and an id less is all their damage can do here. A blob that claims to be
/// something else than its descriptor says is another matter: it is made to mislead, and
/// refused (CVE-2021-41190), as reading that image itself would be.
pub fn row_ids(layout: &Layout, image: &History) -> crate::Result<Vec<Option<Digest>>> {
    let mut ids = vec![None; image.rows.len()];
    let mut seen = HashSet::new();
    for reached in layout.image_manifests()? {
        let manifest = &reached.manifest;
        if manifest.config.digest == image.id || !seen.insert(manifest.config.digest.clone()) {
            continue;
        }
        let Ok(other) = History::read(layout, manifest) else {
            continue;
        };
        if let Some(last) = other.rows.len().checked_sub(1)
            && last < ids.len()
            && image.extends(&other)
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

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::ImageConfig;

    #[test]
    fn history_entries_are_strictly_typed_but_all_optional() {
        let e: HistoryEntry = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(e, HistoryEntry::default());
        assert!(
            serde_json::from_value::<ImageConfig>(serde_json::json!({"history": [{"created_by": 3}]}))
                .is_err()
        );
    }
}
