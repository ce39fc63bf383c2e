//! `image-prune IMAGE...`: docker rmi. Each named tag leaves `index.json`; an image left with
//! no tag and no child image is removed, and then each untagged parent of it that no other
//! image needs, as docker removes untagged parents unless `--no-prune`. Named by id, an image
//! with several tags is refused unless forced, and one with child images is refused even then
//! (docker: "cannot be forced"). Every decision is made before anything changes, under the
//! layout lock: one refused IMAGE leaves the layout as it was. The blobs the removed images
//! alone reached go as a prune's do (see [`crate::prune`]); nothing else is swept.

use crate::graph::{Reach, Unreadable};
use crate::prune::{self, Options, Plan};
use crate::report::{Event, Report};
use anyhow::bail;
use common::images::Images;
use common::layout::Layout;
use common::media;
use common::progress::Progress;
use common::reference::{ImageRef, Target};
use std::collections::HashSet;
use std::time::SystemTime;

/// One thing `index.json` names: an image (its entries), or an entry that is no image (an
/// artifact, an index without the host's platform), with the other entries of its digest.
struct Unit {
    entries: Vec<usize>,
    image: Option<usize>,
}

/// The state of the layout as the IMAGEs are taken one by one.
struct State<'a> {
    images: &'a Images,
    units: Vec<Unit>,
    /// Entries whose tag was removed.
    untagged: HashSet<usize>,
    deleted: HashSet<usize>,
    tags: Vec<Option<String>>,
    events: Vec<Event>,
}

impl State<'_> {
    fn live_tags(&self, u: usize) -> Vec<usize> {
        self.units[u]
            .entries
            .iter()
            .copied()
            .filter(|e| self.tags[*e].is_some() && !self.untagged.contains(e))
            .collect()
    }

    fn unit_of_image(&self, i: usize) -> Option<usize> {
        self.units.iter().position(|u| u.image == Some(i))
    }

    /// The images not removed (so far) whose parent is unit `u`.
    fn live_children(&self, u: usize) -> Vec<usize> {
        let Some(i) = self.units[u].image else {
            return Vec::new();
        };
        self.images
            .children(i)
            .filter_map(|c| self.unit_of_image(c))
            .filter(|c| !self.deleted.contains(c))
            .collect()
    }

    fn untag(&mut self, entry: usize) {
        if self.untagged.insert(entry)
            && let Some(t) = &self.tags[entry]
        {
            self.events.push(Event::Untagged(t.clone()));
        }
    }

    /// Removes unit `u` when nothing needs it any more, then its untagged parents likewise.
    fn remove_if_unneeded(&mut self, index: &common::manifest::Index, image_of: &[Option<usize>], u: usize) {
        let mut next = Some(u);
        while let Some(u) = next.take() {
            if self.deleted.contains(&u) || !self.live_tags(u).is_empty() || !self.live_children(u).is_empty()
            {
                return;
            }
            self.deleted.insert(u);
            let first = self.units[u].entries[0];
            self.events.push(Event::Deleted(prune::removed_image(
                self.images,
                image_of,
                index,
                first,
            )));
            next = self.units[u]
                .image
                .and_then(|i| self.images.list[i].parent)
                .and_then(|p| self.unit_of_image(p));
        }
    }
}

/// Removes `targets` (IMAGEs of `layout`, as typed for messages) as docker rmi does.
pub fn remove(
    layout: &Layout,
    targets: &[ImageRef],
    force: bool,
    opts: &Options,
    progress: &Progress,
) -> crate::Result<Report> {
    let now = SystemTime::now();
    let _lock = if opts.dry_run { None } else { Some(layout.lock()?) };
    let index = layout.read_index()?;
    let entries = &index.manifests;
    let images = Images::read(layout)?;
    let image_of = prune::entry_images(&images, entries.len());
    let mut units: Vec<Unit> = images
        .list
        .iter()
        .enumerate()
        .map(|(i, im)| Unit {
            entries: im.entries.clone(),
            image: Some(i),
        })
        .collect();
    for (pos, e) in entries.iter().enumerate() {
        if image_of[pos].is_some() {
            continue;
        }
        match units
            .iter_mut()
            .find(|u| u.image.is_none() && entries[u.entries[0]].digest == e.digest)
        {
            Some(u) => u.entries.push(pos),
            None => units.push(Unit {
                entries: vec![pos],
                image: None,
            }),
        }
    }
    let found: Vec<Option<usize>> = (0..entries.len())
        .map(|pos| units.iter().position(|u| u.entries.contains(&pos)))
        .collect();
    let mut state = State {
        images: &images,
        tags: entries.iter().map(|e| e.ref_name().map(str::to_string)).collect(),
        units,
        untagged: HashSet::new(),
        deleted: HashSet::new(),
        events: Vec::new(),
    };

    for target in targets {
        match &target.target {
            Target::Tag(t) => {
                let Some(pos) = (0..entries.len())
                    .rev()
                    .find(|&p| state.tags[p].as_deref() == Some(t) && !state.untagged.contains(&p))
                else {
                    // A tag the layout lacks: the error every tool gives (its tags listed).
                    layout.resolve(&target.target, None)?;
                    bail!("{target}: no image tagged {t:?}");
                };
                let u = found[pos].expect("every entry is in a unit");
                state.untag(pos);
                state.remove_if_unneeded(&index, &image_of, u);
            }
            Target::Digest(_) | Target::Id(_) => {
                let picked = layout.resolve(&target.target, None)?;
                let u = (0..state.units.len()).find(|&u| {
                    let unit = &state.units[u];
                    unit.image
                        .is_some_and(|i| images.list[i].descriptor.digest == picked.descriptor.digest)
                        || unit
                            .entries
                            .iter()
                            .any(|&e| entries[e].digest == picked.descriptor.digest)
                });
                let Some(u) = u.filter(|u| !state.deleted.contains(u)) else {
                    bail!(
                        "{target}: no image of index.json is manifest {} (nothing to remove)",
                        picked.descriptor.digest
                    );
                };
                let shown = picked.manifest.config.digest.short().to_string();
                let tags = state.live_tags(u);
                if tags.len() > 1 && !force {
                    let names: Vec<&str> = tags.iter().filter_map(|&e| state.tags[e].as_deref()).collect();
                    bail!(
                        "{target}: conflict: unable to delete {shown} (must be forced) - image is tagged {}: name a tag, or give --force",
                        names.join(", ")
                    );
                }
                if !state.live_children(u).is_empty() {
                    bail!(
                        "{target}: conflict: unable to delete {shown} (cannot be forced) - image has dependent child images"
                    );
                }
                for e in tags {
                    state.untag(e);
                }
                state.remove_if_unneeded(&index, &image_of, u);
            }
        }
    }

    // The new index.json: removed images' entries gone, untagged entries without their tag
    // (dropped when another entry of the same manifest stays).
    let deleted_entries: HashSet<usize> = state
        .deleted
        .iter()
        .flat_map(|&u| state.units[u].entries.iter().copied())
        .collect();
    let mut rewritten = index.clone();
    rewritten.manifests.clear();
    let mut removed = Vec::new();
    for (pos, e) in entries.iter().enumerate() {
        if deleted_entries.contains(&pos) {
            removed.push(pos);
            continue;
        }
        let mut e = e.clone();
        if state.untagged.contains(&pos) {
            e.annotations.remove(media::REF_NAME);
        }
        rewritten.manifests.push(e);
    }
    rewritten.drop_redundant_untagged();

    let mut reach = Reach::default();
    for e in &rewritten.manifests {
        reach.walk(layout, e, Unreadable::Fail, progress)?;
    }
    let changed = !state.untagged.is_empty() || !removed.is_empty();
    let plan = Plan {
        index: &index,
        rewritten: changed.then_some(rewritten),
        removed,
        events: state.events,
        reach,
        sweep: false,
    };
    prune::carry_out(layout, plan, opts, progress, now)
}
