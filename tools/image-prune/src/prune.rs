//! Deciding what goes, and removing it without ever leaving an invalid layout.
//!
//! Kept (never removed):
//! - every blob an `index.json` entry with a ref name reaches (see [`crate::graph`]), and every
//!   blob the image of a live `image-stack --mount` reaches, tagged or not (its `--commit`
//!   reads them, as docker keeps an image a container uses);
//! - untagged entries that a kept entry reaches (they are part of a kept image, not leaves),
//!   that a `--filter` keeps (`until=`, or a `label=`/`label!=` they do not pass), that are intermediate images (an ancestor of a kept image,
//!   see `common::images`: docker keeps them, so that history shows their ids and they can be
//!   tagged again; `--intermediate` removes them), or that are referrers of a kept image: an untagged manifest
//!   whose `subject` is kept is an attachment (signature, SBOM; ORAS stores them in
//!   `index.json` untagged), so it stays while its subject stays, repeated to a fixed point;
//! - orphans (blobs nothing references, not even a removed image) younger than the grace
//!   period: a writer may be about to reference them; and what a young unreferenced manifest or
//!   index references (a writer is storing that image);
//! - blobs of removed images that a writer claimed (refreshed their mtime, see
//!   `common::layout::Layout::claim_blob`) after the newest removed manifest reaching them was
//!   written, while younger than the grace period: the writer is about to reference them again.
//!
//! Removed: the other untagged entries (dangling images: untagged leaves, and the untagged
//! parents only they needed, as `docker image prune` removes a dangling image's untagged
//! parents with it), and with them old unreferenced
//! manifests and indexes, the blobs they alone reach (at once, whatever their age, unless
//! claimed), older orphans, and temporary files older than the grace period that no live
//! writer holds (writers keep a `flock` on theirs).
//!
//! Order, all under the layout lock: read `index.json`, compute reachability from that
//! snapshot, list the blobs, rewrite `index.json`, then delete blobs parents first. A crash at
//! any point leaves a valid layout: before the rewrite nothing changed; after it, what remains
//! to delete is unreferenced garbage for the next run, and no manifest or index is left
//! without what it references.

use crate::graph::{self, Reach, Unreadable};
use crate::report::{Event, Kept, KeptFile, RemovedBlob, RemovedFile, RemovedImage, Report};
use common::digest::Digest;
use common::images::{Images, LabelFilter};
use common::layout::Layout;
use common::layout::gc::Removal;
use common::manifest::Index;
use common::progress::Progress;
use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Options {
    /// Report what would go; change nothing.
    pub dry_run: bool,
    /// Keep dangling images created less than this long ago.
    pub until: Option<Duration>,
    /// Remove only dangling images that pass every one of these.
    pub labels: Vec<LabelFilter>,
    /// Keep orphan blobs and temporary files modified less than this long ago.
    pub grace: Duration,
    /// Remove intermediate images too (untagged parents of kept images), which docker keeps.
    pub intermediate: bool,
}

pub fn prune(layout: &Layout, opts: &Options, progress: &Progress) -> crate::Result<Report> {
    let now = SystemTime::now();
    // A dry run writes nothing, not even the lock file; index.json is replaced by rename, so
    // one read of it is still a consistent snapshot.
    let _lock = if opts.dry_run { None } else { Some(layout.lock()?) };
    let index = layout.read_index()?;
    let entries = &index.manifests;
    // Parents matter only to untagged entries: a layout without one reads no config.
    let images = if entries.iter().any(|e| e.ref_name().is_none()) {
        Images::read(layout)?
    } else {
        Images::default()
    };
    let image_of = entry_images(&images, entries.len());

    // Tagged entries, and the images live mounts were made from (a commit of one reads it).
    let mounted = layout.mounted_manifests()?;
    let mut kept: Vec<bool> = entries
        .iter()
        .map(|e| e.ref_name().is_some() || mounted.contains(&e.digest))
        .collect();
    if let Some(until) = opts.until {
        let cutoff = unix_seconds(now).saturating_sub(i64::try_from(until.as_secs()).unwrap_or(i64::MAX));
        for (keep, e) in kept.iter_mut().zip(entries) {
            if !*keep && graph::created(layout, e).is_some_and(|c| c > cutoff) {
                *keep = true;
            }
        }
    }
    if !opts.labels.is_empty() {
        for (keep, image) in kept.iter_mut().zip(&image_of) {
            let passes = image.is_some_and(|i| opts.labels.iter().all(|f| f.matches(&images.list[i])));
            *keep = *keep || !passes;
        }
    }
    let mut reach = Reach::default();
    for (keep, e) in kept.iter().zip(entries) {
        if *keep {
            reach.walk(layout, e, Unreadable::Fail, progress)?;
        }
    }
    let subjects: Vec<Option<Digest>> = kept
        .iter()
        .zip(entries)
        .map(|(keep, e)| if *keep { None } else { graph::subject(layout, e) })
        .collect();
    loop {
        // The ancestors of what is kept: intermediate images, unless asked to go too.
        let needed: HashSet<usize> = if opts.intermediate {
            HashSet::new()
        } else {
            kept.iter()
                .zip(&image_of)
                .filter_map(|(keep, image)| image.filter(|_| *keep))
                .flat_map(|i| images.lineage(i).into_iter().skip(1))
                .collect()
        };
        let mut changed = false;
        for (i, e) in entries.iter().enumerate() {
            if kept[i] {
                continue;
            }
            if reach.contains(&e.digest)
                || subjects[i].as_ref().is_some_and(|s| reach.contains(s))
                || image_of[i].is_some_and(|im| needed.contains(&im))
            {
                kept[i] = true;
                reach.walk(layout, e, Unreadable::Fail, progress)?;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut rewritten = index.clone();
    rewritten.manifests = entries
        .iter()
        .zip(&kept)
        .filter(|(_, keep)| **keep)
        .map(|(e, _)| e.clone())
        .collect();
    let mut events = Vec::new();
    for (i, keep) in kept.iter().enumerate() {
        if !keep {
            events.push(Event::Deleted(removed_image(&images, &image_of, &index, i)));
        }
    }
    let plan = Plan {
        index: &index,
        rewritten: (!kept.iter().all(|k| *k)).then_some(rewritten),
        removed: (0..entries.len()).filter(|&i| !kept[i]).collect(),
        events,
        reach,
        sweep: true,
    };
    carry_out(layout, plan, opts, progress, now)
}

/// For each `index.json` position, the image it stands for.
pub fn entry_images(images: &Images, entries: usize) -> Vec<Option<usize>> {
    let mut out = vec![None; entries];
    for (i, image) in images.list.iter().enumerate() {
        for &e in &image.entries {
            out[e] = Some(i);
        }
    }
    out
}

/// The report's record of the image the `index.json` entry at `pos` stands for.
pub fn removed_image(images: &Images, image_of: &[Option<usize>], index: &Index, pos: usize) -> RemovedImage {
    let e = &index.manifests[pos];
    RemovedImage {
        digest: e.digest.clone(),
        id: image_of[pos].map(|i| images.list[i].id().clone()),
        media_type: e.media_type.clone(),
    }
}

/// What a run decided, before anything changed.
pub struct Plan<'a> {
    /// `index.json` as read.
    pub index: &'a Index,
    /// What replaces it, if anything changes.
    pub rewritten: Option<Index>,
    /// The positions of the entries removed.
    pub removed: Vec<usize>,
    /// What the report tells, in order.
    pub events: Vec<Event>,
    /// Everything the entries left reach.
    pub reach: Reach,
    /// Also remove what no entry references (orphan blobs, old unreferenced manifests and
    /// what they reference, temporary files), as a plain prune does; removing named images
    /// takes only what they alone reached.
    pub sweep: bool,
}

/// Rewrites `index.json` and removes the blobs the plan leaves unreached, parents first (see
/// the module's doc), or with `--dry-run` reports what it would remove.
pub fn carry_out(
    layout: &Layout,
    plan: Plan<'_>,
    opts: &Options,
    progress: &Progress,
    now: SystemTime,
) -> crate::Result<Report> {
    let Plan {
        index,
        rewritten,
        removed,
        events,
        mut reach,
        sweep,
    } = plan;
    let entries = &index.manifests;

    // What index.json does not reach. Manifests and indexes among the unreferenced blobs decide
    // for what they reference: a young one (a writer such as skopeo or umoci is storing an
    // image) keeps it; an old one goes with its blobs, like a dangling image.
    let on_disk = layout.stored_blobs()?;
    let mut doomed = Reach::default();
    let mut doomed_roots: Vec<Digest> = Vec::new();
    // Young unreferenced manifests and indexes: kept by the grace period, and reported so.
    let mut young_roots: Vec<Digest> = Vec::new();
    for &i in &removed {
        let e = &entries[i];
        doomed.walk(layout, e, Unreadable::Skip, progress)?;
        if !doomed_roots.contains(&e.digest) {
            doomed_roots.push(e.digest.clone());
        }
    }
    if sweep {
        let mut unreferenced: Vec<(&Digest, &Metadata)> = on_disk
            .iter()
            .filter(|(d, _)| !reach.contains(d) && !doomed.contains(d))
            .collect();
        unreferenced.sort_by(|a, b| a.0.cmp(b.0));
        for (d, meta) in unreferenced {
            if reach.contains(d) {
                continue;
            }
            if let Some(desc) = graph::sniff(layout, d, meta.len()) {
                if age(now, meta) < opts.grace {
                    reach.walk(layout, &desc, Unreadable::Skip, progress)?;
                    young_roots.push(d.clone());
                } else {
                    doomed.walk(layout, &desc, Unreadable::Skip, progress)?;
                    doomed_roots.push(d.clone());
                }
            }
        }
    }

    // A removed root's blobs go at once, unless a writer claimed one (refreshed its mtime) since
    // the newest root reaching it was written.
    let mut written_after: HashMap<Digest, SystemTime> = HashMap::new();
    for root in &doomed_roots {
        let t = on_disk
            .get(root)
            .and_then(|m| m.modified().ok())
            .unwrap_or(UNIX_EPOCH);
        for d in doomed.parents_first([root]) {
            let newest = written_after.entry(d).or_insert(t);
            *newest = (*newest).max(t);
        }
    }
    // Parents first, so that a crash part way never leaves a manifest or index without the
    // blobs it references; the blobs nothing references (leaves all) after them.
    let mut plan: Vec<(Digest, Rule)> = doomed
        .parents_first(&doomed_roots)
        .into_iter()
        .filter(|d| !reach.contains(d) && on_disk.contains_key(d))
        .map(|d| {
            let rule = Rule::ClaimedAfter(written_after[&d]);
            (d, rule)
        })
        .collect();
    if sweep {
        let mut orphans: Vec<Digest> = on_disk
            .keys()
            .filter(|d| !reach.contains(d) && !doomed.contains(d))
            .cloned()
            .collect();
        orphans.sort();
        plan.extend(orphans.into_iter().map(|d| (d, Rule::Orphan)));
    }

    // A temporary file goes when it is older than the grace period and no writer holds it (a
    // killed writer's); the others are reported as kept, with why. Removing named images
    // leaves them alone.
    let mut temporary_files = Vec::new();
    let mut kept_files = Vec::new();
    for (name, meta) in if sweep {
        layout.temporary_files()?
    } else {
        Vec::new()
    } {
        let size = meta.len();
        if layout.temporary_in_use(&name) {
            kept_files.push(KeptFile::new(name, size, Kept::InUse));
        } else if age(now, &meta) < opts.grace {
            kept_files.push(KeptFile::new(name, size, Kept::Young));
        } else {
            temporary_files.push((name, size));
        }
    }
    let mut deletions = Vec::new();
    let mut kept_by_grace = Vec::new();
    let mut removed_files = Vec::new();
    if opts.dry_run {
        for (digest, rule) in plan {
            if rule.spares(&on_disk[&digest], now, opts.grace) {
                kept_by_grace.push(digest);
            } else {
                let size = on_disk[&digest].len();
                deletions.push(RemovedBlob { digest, size });
            }
        }
        removed_files.extend(
            temporary_files
                .into_iter()
                .map(|(name, size)| RemovedFile { name, size }),
        );
    } else {
        if let Some(rewritten) = &rewritten {
            layout.write_index_locked(rewritten)?;
        }
        for (digest, rule) in plan {
            let removal = if opts.grace.is_zero() {
                // Nothing is spared, claimed or not: one unlink will do.
                layout.remove_blob(&digest)?
            } else {
                // Decided under the blob's lock, so that a writer's claim is never lost (see
                // common::layout::gc).
                layout.remove_blob_unless(&digest, |meta| rule.spares(meta, SystemTime::now(), opts.grace))?
            };
            match removal {
                Removal::Removed(size) => deletions.push(RemovedBlob { digest, size }),
                Removal::Spared => kept_by_grace.push(digest),
                Removal::Gone => {}
            }
        }
        for (name, size) in temporary_files {
            if layout.remove_temporary(&name)? {
                removed_files.push(RemovedFile { name, size });
            } else if layout.root().join(&name).exists() {
                // A writer took it up since it was listed.
                kept_files.push(KeptFile::new(name, size, Kept::InUse));
            }
        }
    }
    kept_by_grace.extend(young_roots);
    kept_by_grace.sort();
    let mut report = Report::new(opts.dry_run, events, deletions, removed_files, kept_by_grace);
    report.kept_temporary_files = kept_files;
    if sweep {
        // The layer cache of image-stack --mount: what the images that stay need, or live
        // mounts use. Removing named images leaves it to the next prune, as it leaves orphans.
        let stays = rewritten.as_ref().unwrap_or(index);
        report.add_cache(layout.prune_cache(&layout.layers_of(&stays.manifests)?, opts.dry_run)?);
    }
    report.missing = reach.missing().to_vec();
    Ok(report)
}

/// When a blob planned for removal stays after all.
#[derive(Clone, Copy)]
enum Rule {
    /// Nothing references it: it stays while younger than the grace period (a writer may be
    /// about to reference it).
    Orphan,
    /// Removed images or manifests reference it, the newest written at this time: it stays
    /// only when a writer claimed it later, within the grace period.
    ClaimedAfter(SystemTime),
}

impl Rule {
    fn spares(self, meta: &Metadata, now: SystemTime, grace: Duration) -> bool {
        let young = age(now, meta) < grace;
        match self {
            Rule::Orphan => young,
            Rule::ClaimedAfter(t) => young && meta.modified().is_ok_and(|m| m > t),
        }
    }
}

/// How long ago a file was last written; a future mtime counts as now.
fn age(now: SystemTime, meta: &Metadata) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .unwrap_or(Duration::ZERO)
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
