//! Deciding what goes, and removing it without ever leaving an invalid layout.
//!
//! Kept (never removed):
//! - every blob an `index.json` entry with a ref name reaches (see [`crate::graph`]);
//! - untagged entries that a kept entry reaches (they are part of a kept image, not leaves),
//!   that `--filter until` keeps, or that are referrers of a kept image: an untagged manifest
//!   whose `subject` is kept is an attachment (signature, SBOM; ORAS stores them in
//!   `index.json` untagged), so it stays while its subject stays, repeated to a fixed point;
//! - orphans (blobs nothing references, not even a removed image) younger than the grace
//!   period: a writer may be about to reference them.
//!
//! Removed: the other untagged entries (dangling images), the blobs they alone reach (at once,
//! whatever their age), older orphans, and temporary files older than the grace period.
//!
//! Order, all under the layout lock: read `index.json`, compute reachability from that
//! snapshot, list the blobs, rewrite `index.json`, then delete blobs parents first. A crash at
//! any point leaves a valid layout: before the rewrite nothing changed; after it, what remains
//! to delete is unreferenced garbage for the next run.

use crate::graph::{self, Reach, Unreadable};
use crate::report::{RemovedBlob, RemovedFile, RemovedImage, Report};
use anyhow::Context;
use common::digest::Digest;
use common::layout::{Layout, TMP_PREFIX};
use common::progress::Progress;
use std::collections::{HashMap, HashSet};
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

    let mut doomed = Reach::default();
    let mut images = Vec::new();
    let mut listed = HashSet::new();
    for (keep, e) in kept.iter().zip(entries) {
        if !*keep {
            doomed.walk(layout, e, Unreadable::Skip, progress)?;
            if listed.insert(e.digest.clone()) {
                images.push(RemovedImage {
                    digest: e.digest.clone(),
                    media_type: e.media_type.clone(),
                });
            }
        }
    }

    let mut on_disk = list_blobs(&layout.root().join("blobs/sha256"))?;
    let mut deletions = Vec::new();
    for d in doomed.in_order() {
        if !reach.contains(d)
            && let Some(meta) = on_disk.remove(d)
        {
            deletions.push(RemovedBlob {
                digest: d.clone(),
                size: meta.len(),
            });
        }
    }
    let mut orphans: Vec<(Digest, Metadata)> =
        on_disk.into_iter().filter(|(d, _)| !reach.contains(d)).collect();
    orphans.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept_by_grace = Vec::new();
    for (digest, meta) in orphans {
        if age(now, &meta) >= opts.grace {
            deletions.push(RemovedBlob {
                digest,
                size: meta.len(),
            });
        } else {
            kept_by_grace.push(digest);
        }
    }
    let temporary_files: Vec<RemovedFile> = list_temporary_files(layout.root())?
        .into_iter()
        .filter(|(_, meta)| age(now, meta) >= opts.grace)
        .map(|(name, meta)| RemovedFile {
            name,
            size: meta.len(),
        })
        .collect();

    if !opts.dry_run {
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
        for b in &deletions {
            remove(&layout.blob_path(&b.digest))?;
        }
        for t in &temporary_files {
            remove(&layout.root().join(&t.name))?;
        }
    }
    let mut report = Report::new(opts.dry_run, images, deletions, temporary_files, kept_by_grace);
    report.missing = reach.missing().to_vec();
    Ok(report)
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

fn remove(path: &Path) -> crate::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}
