//! `--disk-usage`: `docker system df [-v]` for a layout. A layout stores blobs, so its disk
//! usage is counted in the bytes of the blob files (compressed layers as stored, configs,
//! manifests), each blob once however many images share it, unlike `docker system df`, whose
//! store holds layers unpacked. RECLAIMABLE is what `image-prune LAYOUT` would remove now
//! (its dry run, with the default grace period), so the two never disagree.
//!
//! One row per kind of thing the layout holds. Another store kept in the layout joins here
//! with a row of its own, and image-prune's dry run counts what it would remove from it: so
//! does the layer cache of `image-stack --mount` (`LAYOUT/.layerkit/layers`, extracted layers:
//! its SIZE is their disk usage, each inode once).

use common::digest::Digest;
use common::images::Images;
use common::layout::{Layout, Step, Walk};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// One row of the summary: a kind of thing the layout holds.
#[derive(Debug, Serialize)]
pub struct Kind {
    #[serde(rename = "type")]
    pub name: &'static str,
    pub total: usize,
    /// Images: tagged. Unreferenced blobs and temporary files: what image-prune keeps (a
    /// writer may be about to use them). Layer cache: the entries image-prune keeps (an image
    /// needs them, or a live mount uses them).
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
}

/// One image's share (`-v`).
#[derive(Debug)]
pub struct ImageShare {
    pub image: usize,
    pub size: u64,
    pub shared: u64,
}

pub struct Usage {
    pub kinds: Vec<Kind>,
    pub images: Vec<ImageShare>,
}

/// Measures the layout's disk usage.
pub fn measure(layout: &Layout, images: &Images) -> crate::Result<Usage> {
    let stored = layout.stored_blobs()?;
    let size_of = |d: &Digest| stored.get(d).map_or(0, |m| m.len());
    // Everything index.json reaches (artifacts and nested indexes included), by the one walk.
    let mut referenced: HashSet<Digest> = HashSet::new();
    let index = layout.read_index()?;
    for entry in &index.manifests {
        layout.walk(entry, &mut |path, step| {
            let d = &path.last().expect("a walk's path ends at its descriptor").digest;
            Ok(match step {
                Step::Enter if !referenced.insert(d.clone()) => Walk::Skip,
                Step::Unreadable(_) => Walk::Skip,
                _ => Walk::Continue,
            })
        })?;
    }
    let grace = common::time::go_duration(image_prune::DEFAULT_GRACE)?;
    let report = image_prune::would_remove(layout, grace)?;
    let removed: HashMap<&Digest, u64> = report.blobs.iter().map(|b| (&b.digest, b.size)).collect();

    // Each image's blobs: its index.json entries (an index, for a multi-platform image), its
    // manifest, config and layers.
    let blobs_of = |i: usize| -> HashSet<Digest> {
        let im = &images.list[i];
        let entries = im.entries.iter().map(|&e| index.manifests[e].digest.clone());
        std::iter::once(im.descriptor.digest.clone())
            .chain(entries)
            .chain(std::iter::once(im.manifest.config.digest.clone()))
            .chain(im.manifest.layers.iter().map(|l| l.digest.clone()))
            .collect()
    };
    let per_image: Vec<HashSet<Digest>> = (0..images.list.len()).map(blobs_of).collect();
    let mut users: HashMap<&Digest, usize> = HashMap::new();
    for blobs in &per_image {
        for d in blobs {
            *users.entry(d).or_default() += 1;
        }
    }
    let shares = per_image
        .iter()
        .enumerate()
        .map(|(image, blobs)| ImageShare {
            image,
            size: blobs.iter().map(&size_of).sum(),
            shared: blobs.iter().filter(|d| users[d] > 1).map(&size_of).sum(),
        })
        .collect();

    let referenced_size: u64 = referenced.iter().map(&size_of).sum();
    let unreferenced: Vec<&Digest> = stored.keys().filter(|d| !referenced.contains(d)).collect();
    let reclaim =
        |blobs: &mut dyn Iterator<Item = &Digest>| blobs.filter_map(|d| removed.get(d)).sum::<u64>();
    let temporary = layout.temporary_files()?;
    let cache = layout.cache_files()?;
    let unreferenced_reclaimable = reclaim(&mut unreferenced.iter().copied());
    let kinds = vec![
        Kind {
            name: "Images",
            total: images.list.len(),
            active: images.list.iter().filter(|i| !i.tags.is_empty()).count(),
            size: referenced_size,
            reclaimable: reclaim(&mut referenced.iter()),
        },
        Kind {
            name: "Unreferenced blobs",
            total: unreferenced.len(),
            active: unreferenced.iter().filter(|d| !removed.contains_key(*d)).count(),
            size: unreferenced.iter().map(|d| size_of(d)).sum(),
            reclaimable: unreferenced_reclaimable,
        },
        Kind {
            name: "Temporary files",
            total: temporary.len(),
            active: temporary.len() - report.temporary_files.len(),
            size: temporary.iter().map(|(_, m)| m.len()).sum(),
            reclaimable: report.temporary_files.iter().map(|t| t.size).sum(),
        },
        Kind {
            name: "Layer cache",
            total: cache.len(),
            active: cache.len().saturating_sub(report.layer_cache.len()),
            size: cache.iter().map(|f| f.bytes).sum(),
            reclaimable: report.layer_cache.iter().map(|f| f.size).sum(),
        },
    ];
    Ok(Usage {
        kinds,
        images: shares,
    })
}
