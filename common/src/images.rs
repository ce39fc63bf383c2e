//! The images of a layout as docker manages them: one per image manifest that `index.json`
//! lists (a multi-platform index stands for its host-platform image), with its tags, its id
//! (the config digest), and its parent, so that an untagged image is either *dangling* (a leaf:
//! what a moved tag leaves, `<none>:<none>`) or *intermediate* (the parent of another image,
//! which docker keeps so that `docker history` shows its id and it can be tagged again).
//!
//! The parent of an image is the manifest its `org.opencontainers.image.base.digest`
//! annotation names (image-stack records the `--from` image there), when the layout holds it;
//! otherwise the image whose history and layers are the longest strict prefix of its own (what
//! docker's parent chain is for images it commits or builds). image-history, image-ls and
//! image-prune all read images through here.

use crate::config::{HistoryEntry, ImageConfig};
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::layout::Layout;
use crate::manifest::Manifest;
use crate::media;
use std::collections::HashSet;

/// One image of a layout.
#[derive(Clone, Debug)]
pub struct Image {
    /// Its manifest's descriptor, as `index.json` (or the index it was picked from) lists it.
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// The tags of the `index.json` entries that are this image, in index order.
    pub tags: Vec<String>,
    /// The positions in `index.json` of the entries that stand for this image.
    pub entries: Vec<usize>,
    /// Its parent, an index into [`Images::list`].
    pub parent: Option<usize>,
}

impl Image {
    /// docker's image id: the config digest.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// The value of its config's label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        let labels = self.config.config.as_ref()?.get("Labels")?;
        labels.get(key)?.as_str()
    }
}

/// docker's `label=KEY[=VALUE]` filter (`docker images`, `docker image prune`), and
/// `label!=KEY[=VALUE]` (`docker image prune`): the image has the label (with that value), or,
/// negated, has not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
    pub negated: bool,
}

impl LabelFilter {
    /// `KEY` or `KEY=VALUE`, the part after `label=` or `label!=`; None when KEY is empty.
    pub fn new(spec: &str, negated: bool) -> Option<LabelFilter> {
        let (key, value) = match spec.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (spec, None),
        };
        (!key.is_empty()).then(|| LabelFilter {
            key: key.to_string(),
            value,
            negated,
        })
    }

    pub fn matches(&self, image: &Image) -> bool {
        let found = image.label(&self.key);
        let has = match &self.value {
            Some(v) => found == Some(v.as_str()),
            None => found.is_some(),
        };
        has != self.negated
    }
}

/// The images of a layout.
#[derive(Debug, Default)]
pub struct Images {
    pub list: Vec<Image>,
    /// The `index.json` entries that should be images but cannot be read as one (an index
    /// without the host's platform, a missing or corrupt manifest or config), with why, for the
    /// caller to warn about or ignore. Artifacts and referrers (a manifest whose config is no
    /// image config, or with a `subject`) are no images: they are left out silently.
    pub skipped: Vec<(Descriptor, String)>,
}

impl Images {
    /// Reads every image `index.json` lists, and their parents.
    pub fn read(layout: &Layout) -> crate::Result<Images> {
        let index = layout.read_index()?;
        let mut images = Images::default();
        for (pos, entry) in index.manifests.iter().enumerate() {
            if let Some(i) = images.list.iter().position(|im| {
                im.entries
                    .iter()
                    .any(|&e| index.manifests[e].digest == entry.digest)
            }) {
                images.list[i].entries.push(pos);
                images.list[i].tags.extend(entry.ref_name().map(str::to_string));
                continue;
            }
            let picked = match layout.resolve_descriptor(entry, None) {
                Ok(image) => image,
                Err(e) => {
                    images.skipped.push((entry.clone(), format!("{e:#}")));
                    continue;
                }
            };
            let m = &picked.manifest;
            let is_image_config = m.config.media_type == media::CONFIG
                || m.config.media_type == "application/vnd.docker.container.image.v1+json";
            if !is_image_config || m.subject.is_some() {
                continue;
            }
            let config = match layout.read_config(&m.config) {
                Ok(c) => c,
                Err(e) => {
                    images.skipped.push((entry.clone(), format!("{e:#}")));
                    continue;
                }
            };
            images.list.push(Image {
                descriptor: picked.descriptor,
                manifest: picked.manifest,
                config,
                tags: entry.ref_name().map(str::to_string).into_iter().collect(),
                entries: vec![pos],
                parent: None,
            });
        }
        let parents: Vec<Option<usize>> = (0..images.list.len()).map(|i| images.find_parent(i)).collect();
        for (image, parent) in images.list.iter_mut().zip(parents) {
            image.parent = parent;
        }
        Ok(images)
    }

    /// The recorded base when the layout holds it, else the longest strict prefix.
    fn find_parent(&self, child: usize) -> Option<usize> {
        let c = &self.list[child];
        if let Some(base) = c.manifest.annotations.get(media::BASE_DIGEST)
            && let Some(p) = self
                .list
                .iter()
                .position(|p| p.descriptor.digest.to_string() == *base)
            && p != child
        {
            return Some(p);
        }
        self.list
            .iter()
            .enumerate()
            .filter(|(i, p)| *i != child && is_parent(&p.config, &c.config))
            .max_by_key(|(_, p)| (p.config.history().len(), p.config.diff_ids().len()))
            .map(|(i, _)| i)
    }

    /// The images whose parent is `i`.
    pub fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.list.len()).filter(move |&c| self.list[c].parent == Some(i))
    }

    /// Untagged and the parent of no image: what `docker image prune` removes.
    pub fn is_dangling(&self, i: usize) -> bool {
        self.list[i].tags.is_empty() && self.children(i).next().is_none()
    }

    /// Untagged, and the parent of another image: kept as docker keeps it.
    pub fn is_intermediate(&self, i: usize) -> bool {
        self.list[i].tags.is_empty() && self.children(i).next().is_some()
    }

    /// `i` and its ancestors, nearest first (a parent loop, which only a forged annotation can
    /// make, ends the walk).
    pub fn lineage(&self, i: usize) -> Vec<usize> {
        let mut seen = HashSet::new();
        std::iter::successors(Some(i), |&j| self.list[j].parent)
            .take_while(|j| seen.insert(*j))
            .collect()
    }
}

/// True when `image` is built on `base`: `base`'s history entries and layers are the first of
/// `image`'s (the same entries, the same diffIDs). Every image extends itself.
pub fn extends(base: &ImageConfig, image: &ImageConfig) -> bool {
    extends_by(
        (base.history(), base.diff_ids()),
        (image.history(), image.diff_ids()),
    )
}

/// [`extends`], given each image's history entries and diffIDs in order (for a reader that
/// holds them in another shape than a config, such as image-history's rows).
pub fn extends_by<'a>(
    base: (
        impl IntoIterator<Item = &'a HistoryEntry>,
        impl IntoIterator<Item = &'a Digest>,
    ),
    image: (
        impl IntoIterator<Item = &'a HistoryEntry>,
        impl IntoIterator<Item = &'a Digest>,
    ),
) -> bool {
    fn prefix<T: PartialEq>(a: impl IntoIterator<Item = T>, b: impl IntoIterator<Item = T>) -> bool {
        let mut b = b.into_iter();
        a.into_iter().all(|x| b.next().is_some_and(|y| x == y))
    }
    prefix(base.0, image.0) && prefix(base.1, image.1)
}

/// True when `base` is a parent candidate of `image`: `image` extends it with more history or
/// layers, and `base` is not empty (an image of nothing would be everyone's parent).
pub fn is_parent(base: &ImageConfig, image: &ImageConfig) -> bool {
    let (bh, bl) = (base.history().len(), base.diff_ids().len());
    (bh, bl) != (0, 0) && extends(base, image) && (bh, bl) != (image.history().len(), image.diff_ids().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(history: &[&str], layers: &[char]) -> ImageConfig {
        ImageConfig {
            history: Some(
                history
                    .iter()
                    .map(|h| HistoryEntry {
                        created_by: Some(h.to_string()),
                        ..HistoryEntry::default()
                    })
                    .collect(),
            ),
            rootfs: Some(crate::config::RootFs {
                fs_type: Some("layers".into()),
                diff_ids: layers
                    .iter()
                    .map(|c| format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap())
                    .collect(),
                ..Default::default()
            }),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn a_parent_is_a_strict_nonempty_prefix() {
        let base = config(&["a"], &['a']);
        let child = config(&["a", "b"], &['a', 'b']);
        let cmd_only = config(&["a", "CMD x"], &['a']);
        assert!(is_parent(&base, &child));
        assert!(is_parent(&base, &cmd_only));
        assert!(!is_parent(&child, &base));
        assert!(!is_parent(&base, &base), "an image is not its own parent");
        assert!(
            !is_parent(&config(&[], &[]), &child),
            "nothing is nobody's parent"
        );
        assert!(!is_parent(&config(&["a"], &['b']), &child), "another layer");
        assert!(!is_parent(&config(&["x"], &['a']), &child), "another history");
        assert!(extends(&base, &base));
    }
}
