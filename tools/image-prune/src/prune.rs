//! Deciding what goes, and removing it without ever leaving an invalid layout.
//!
//! Kept (never removed):
//! - every blob an `index.json` entry with a ref name reaches (see [`crate::graph`]);
//! - untagged entries that a kept entry reaches (they are part of a kept image, not leaves),
//!   that `--filter until` keeps, or that are referrers of a kept image: an untagged manifest
//!   whose `subject` is kept is an attachment (signature, SBOM; ORAS stores them in
//!   `index.json` untagged), so it stays while its subject stays, repeated to a fixed point;
//! - orphans (blobs nothing references, not even a removed image) younger than the grace
//!   period: a writer may be about to reference them; and what a young unreferenced manifest or
//!   index references (a writer is storing that image);
//! - blobs of removed images that a writer claimed (refreshed their mtime, see
//!   `common::layout::Layout::claim_blob`) after the newest removed manifest reaching them was
//!   written, while younger than the grace period: the writer is about to reference them again.
//!
//! Removed: the other untagged entries (dangling images), and with them old unreferenced
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
use crate::report::{RemovedBlob, RemovedFile, RemovedImage, Report};
use anyhow::Context;
use common::digest::Digest;
use common::layout::{Layout, TMP_PREFIX};
use common::progress::Progress;
use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Options {
    /// Report what would go; change nothing.
    pub dry_run: bool,
    /// Keep dangling images created less than this long ago.
    pub until: Option<Duration>,
    /// Keep orphan blobs and temporary files modified less than this long ago.
    pub grace: Duration,
}

pub fn prune(layout: &Layout, opts: &Options, progress: &Progress) -> crate::Result<Report> {
    let now = SystemTime::now();
    // A dry run writes nothing, not even the lock file; index.json is replaced by rename, so
    // one read of it is still a consistent snapshot.
    let _lock = if opts.dry_run { None } else { Some(layout.lock()?) };
    let index = layout.read_index()?;
    let entries = &index.manifests;

    let mut kept: Vec<bool> = entries.iter().map(|e| e.ref_name().is_some()).collect();
    if let Some(until) = opts.until {
        let cutoff = unix_seconds(now).saturating_sub(i64::try_from(until.as_secs()).unwrap_or(i64::MAX));
        for (keep, e) in kept.iter_mut().zip(entries) {
            if !*keep && graph::created(layout, e).is_some_and(|c| c > cutoff) {
                *keep = true;
            }
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
        let mut changed = false;
        for (i, e) in entries.iter().enumerate() {
            if kept[i] {
                continue;
            }
            if reach.contains(&e.digest) || subjects[i].as_ref().is_some_and(|s| reach.contains(s)) {
                kept[i] = true;
                reach.walk(layout, e, Unreadable::Fail, progress)?;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    // What index.json does not reach. Manifests and indexes among the unreferenced blobs decide
    // for what they reference: a young one (a writer such as skopeo or umoci is storing an
    // image) keeps it; an old one goes with its blobs, like a dangling image.
    let on_disk = list_blobs(&layout.root().join("blobs/sha256"))?;
    let mut doomed = Reach::default();
    let mut doomed_roots = Vec::new();
    let mut images = Vec::new();
    for (keep, e) in kept.iter().zip(entries) {
        if !*keep {
            doomed.walk(layout, e, Unreadable::Skip, progress)?;
            if !doomed_roots.contains(&e.digest) {
                doomed_roots.push(e.digest.clone());
                images.push(RemovedImage {
                    digest: e.digest.clone(),
                    media_type: e.media_type.clone(),
                });
            }
        }
    }
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
            } else {
                doomed.walk(layout, &desc, Unreadable::Skip, progress)?;
                doomed_roots.push(d.clone());
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
    let mut orphans: Vec<Digest> = on_disk
        .keys()
        .filter(|d| !reach.contains(d) && !doomed.contains(d))
        .cloned()
        .collect();
    orphans.sort();
    plan.extend(orphans.into_iter().map(|d| (d, Rule::Orphan)));

    let temporary_files = list_temporary_files(layout.root())?
        .into_iter()
        .filter(|(name, meta)| age(now, meta) >= opts.grace && !in_use(&layout.root().join(name)));
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
        removed_files.extend(temporary_files.map(|(name, meta)| RemovedFile {
            name,
            size: meta.len(),
        }));
    } else {
        if kept.iter().any(|k| !k) {
            let mut rewritten = index.clone();
            rewritten.manifests = entries
                .iter()
                .zip(&kept)
                .filter(|(_, keep)| **keep)
                .map(|(e, _)| e.clone())
                .collect();
            layout.write_index_locked(&rewritten)?;
        }
        for (digest, rule) in plan {
            match remove_blob(layout, &digest, rule, opts.grace)? {
                Removal::Removed(size) => deletions.push(RemovedBlob { digest, size }),
                Removal::Spared => kept_by_grace.push(digest),
                Removal::Gone => {}
            }
        }
        for (name, meta) in temporary_files {
            if remove_temporary(&layout.root().join(&name))? {
                removed_files.push(RemovedFile {
                    name,
                    size: meta.len(),
                });
            }
        }
    }
    kept_by_grace.sort();
    let mut report = Report::new(opts.dry_run, images, deletions, removed_files, kept_by_grace);
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

enum Removal {
    Removed(u64),
    Spared,
    Gone,
}

/// Removes a blob unless a writer has claimed it since the plan was made. Writers claim under
/// a shared `flock` on the blob (common::layout::Layout::claim_blob); holding it exclusively
/// while the mtime is read and the blob unlinked, a claim either came before and shows here,
/// or comes after and finds the blob unlinked (the writer then stores it anew). Checking the
/// mtime and then deleting without the lock would lose a claim made in between.
fn remove_blob(layout: &Layout, digest: &Digest, rule: Rule, grace: Duration) -> crate::Result<Removal> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = layout.blob_path(digest);
    if grace.is_zero() {
        // Nothing is spared, claimed or not: one unlink will do.
        return Ok(match fs::symlink_metadata(&path) {
            Ok(meta) if remove(&path)? => Removal::Removed(meta.len()),
            _ => Removal::Gone,
        });
    }
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    };
    // Blocking: a writer holds its shared lock only for the moment of a claim.
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(io::Error::from)
        .with_context(|| format!("locking {}", path.display()))?;
    let meta = file.metadata().with_context(|| path.display().to_string())?;
    if meta.nlink() == 0 {
        return Ok(Removal::Gone);
    }
    if rule.spares(&meta, SystemTime::now(), grace) {
        return Ok(Removal::Spared);
    }
    Ok(if remove(&path)? {
        Removal::Removed(meta.len())
    } else {
        Removal::Gone
    })
}

/// A live writer holds an exclusive `flock` on its temporary file (see common::layout).
fn in_use(path: &Path) -> bool {
    match fs::File::open(path) {
        Ok(f) => try_lock(&f) == Some(false),
        // Unreadable: whether it is in use cannot be told, so it is left alone.
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Some(true) when the lock was taken, Some(false) when another process holds it.
fn try_lock(f: &fs::File) -> Option<bool> {
    match rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Some(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Some(false),
        Err(_) => None,
    }
}

/// Removes a temporary file no writer holds, holding its lock meanwhile: a writer that
/// created it but had not locked it yet finds it unlinked and makes another. False when it
/// was in use or already gone.
fn remove_temporary(path: &Path) -> crate::Result<bool> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    if try_lock(&f) != Some(true) {
        return Ok(false);
    }
    remove(path)
}

/// The regular files under `blobs/sha256` named like a digest. Anything else there is left
/// alone (image-layout.md: unknown files MUST NOT cause errors).
fn list_blobs(dir: &Path) -> crate::Result<HashMap<Digest, Metadata>> {
    let mut out = HashMap::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in rd {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let Some(digest) = entry
            .file_name()
            .to_str()
            .and_then(|name| format!("sha256:{name}").parse::<Digest>().ok())
        else {
            continue;
        };
        // A blob renamed away since the listing began is simply not there any more.
        match entry.metadata() {
            Ok(meta) if meta.is_file() => {
                out.insert(digest, meta);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| entry.path().display().to_string()),
        }
    }
    Ok(out)
}

/// Temporary files writers leave in the layout's top directory, sorted by name.
fn list_temporary_files(root: &Path) -> crate::Result<Vec<(String, Metadata)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !name.starts_with(TMP_PREFIX) {
            continue;
        }
        match entry.metadata() {
            Ok(meta) if meta.is_file() => out.push((name, meta)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| entry.path().display().to_string()),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
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

/// Removes a file; false when it was already gone.
fn remove(path: &Path) -> crate::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}
