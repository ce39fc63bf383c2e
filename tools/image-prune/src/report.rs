//! The report: docker's `image prune` text, or one JSON document.

use common::digest::Digest;
use serde::Serialize;
use std::io::Write;

/// An `index.json` entry that was removed.
#[derive(Clone, Serialize)]
pub struct RemovedImage {
    /// The entry's digest (a manifest's, or an index's).
    pub digest: Digest,
    /// The image id (config digest) when the entry is an image.
    pub id: Option<Digest>,
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

impl RemovedImage {
    /// What docker prints for it: the image id, else the entry's digest.
    fn shown(&self) -> &Digest {
        self.id.as_ref().unwrap_or(&self.digest)
    }
}

/// What the report tells, in order.
pub enum Event {
    /// A tag left `index.json` (removing an image by name).
    Untagged(String),
    /// An image left `index.json`.
    Deleted(RemovedImage),
}

/// A blob that was removed, with its size on disk.
#[derive(Serialize)]
pub struct RemovedBlob {
    pub digest: Digest,
    pub size: u64,
}

/// A temporary file a killed writer left in the layout's top directory.
#[derive(Serialize)]
pub struct RemovedFile {
    pub name: String,
    pub size: u64,
}

/// A temporary file left in place, and why.
#[derive(Serialize)]
pub struct KeptFile {
    pub name: String,
    pub size: u64,
    pub reason: Kept,
}

impl KeptFile {
    pub fn new(name: String, size: u64, reason: Kept) -> KeptFile {
        KeptFile { name, size, reason }
    }
}

/// Why a temporary file stays.
#[derive(Clone, Copy, Serialize)]
pub enum Kept {
    /// A live writer holds it.
    #[serde(rename = "inUse")]
    InUse,
    /// Younger than the grace period: a writer may be about to take it up.
    #[serde(rename = "grace")]
    Young,
}

/// What a run removed (or, with `--dry-run`, would remove). As JSON, one document:
/// `{"blobs":[{"digest","size"}],"dryRun":false,"images":[{"digest","id","mediaType"}],
/// "keptByGrace":["sha256:…"],"keptTemporaryFiles":[{"name","size","reason"}],
/// "layerCache":[{"name","size"}],"reclaimedSpace":N,"staleMounts":[{"name","size"}],
/// "temporaryFiles":[{"name","size"}],"untagged":["web:v1"]}`.
#[derive(Serialize)]
pub struct Report {
    #[serde(rename = "dryRun")]
    pub dry_run: bool,
    pub images: Vec<RemovedImage>,
    /// The tags removed (naming images to remove), in order.
    pub untagged: Vec<String>,
    #[serde(skip)]
    events: Vec<Event>,
    /// Every blob removed, the images' own manifests included, sorted by digest.
    pub blobs: Vec<RemovedBlob>,
    #[serde(rename = "temporaryFiles")]
    pub temporary_files: Vec<RemovedFile>,
    /// Blobs nothing kept references, left in place because they are younger than the grace
    /// period: orphans, and manifests and indexes a writer may be storing (what they reference
    /// stays with them).
    #[serde(rename = "keptByGrace")]
    pub kept_by_grace: Vec<Digest>,
    /// Temporary files left in place: a writer holds them, or they are younger than the
    /// grace period.
    #[serde(rename = "keptTemporaryFiles")]
    pub kept_temporary_files: Vec<KeptFile>,
    #[serde(rename = "reclaimedSpace")]
    pub reclaimed_space: u64,
    /// image-stack --mount's layer cache entries and stale mount records removed.
    #[serde(rename = "layerCache")]
    pub layer_cache: Vec<RemovedFile>,
    #[serde(rename = "staleMounts")]
    pub stale_mounts: Vec<RemovedFile>,
    /// Manifests or indexes a kept image references that the layout does not hold (warned
    /// about on stderr; not part of the JSON document).
    #[serde(skip)]
    pub missing: Vec<Digest>,
}

impl Report {
    pub fn new(
        dry_run: bool,
        events: Vec<Event>,
        mut blobs: Vec<RemovedBlob>,
        temporary_files: Vec<RemovedFile>,
        kept_by_grace: Vec<Digest>,
    ) -> Report {
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        let reclaimed_space =
            blobs.iter().map(|b| b.size).sum::<u64>() + temporary_files.iter().map(|t| t.size).sum::<u64>();
        let (mut images, mut untagged) = (Vec::new(), Vec::new());
        for e in &events {
            match e {
                Event::Deleted(i) => images.push(i.clone()),
                Event::Untagged(t) => untagged.push(t.clone()),
            }
        }
        Report {
            dry_run,
            images,
            untagged,
            events,
            blobs,
            temporary_files,
            kept_by_grace,
            kept_temporary_files: Vec::new(),
            reclaimed_space,
            layer_cache: Vec::new(),
            stale_mounts: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// Adds what the layer cache's prune removed (`common::layout::cache`).
    pub fn add_cache(&mut self, cache: common::layout::cache::CachePrune) {
        self.reclaimed_space += cache.reclaimed();
        self.layer_cache = (cache.removed.into_iter())
            .map(|f| RemovedFile {
                name: f.name,
                size: f.bytes,
            })
            .collect();
        self.stale_mounts = (cache.stale_mounts.into_iter())
            .map(|(record, point, size)| RemovedFile {
                name: format!("{} (mounted at {})", record.display(), point.display()),
                size,
            })
            .collect();
    }

    /// docker/cli `image prune`: `Deleted Images:`, one `deleted:` line per removed image (its
    /// id) and then per other removed blob (docker lists an image's layers there too), a blank
    /// line, and `Total reclaimed space: 24.3MB`; only the last line when nothing was removed.
    /// Temporary files, which docker has not, get a section of their own before the total:
    /// each removed or kept, with its size (and why it was kept). A dry run says what *would*
    /// go, in the same shape (`Would delete images:`, `would delete:` lines, `Total space that
    /// would be reclaimed:`): it deleted nothing, and must not say it did.
    pub fn write_text(&self, mut w: impl Write) -> std::io::Result<()> {
        let words = Words::of(self.dry_run);
        let mut listed = std::collections::HashSet::new();
        let lines: Vec<&Digest> = self
            .images
            .iter()
            .map(RemovedImage::shown)
            .chain(self.blobs.iter().map(|b| &b.digest))
            .filter(|d| listed.insert(*d))
            .collect();
        if !lines.is_empty() {
            writeln!(w, "{}:", words.images)?;
            for d in lines {
                writeln!(w, "{}: {d}", words.line)?;
            }
            writeln!(w)?;
        }
        for (title, files) in [
            ("layer cache entries:", &self.layer_cache),
            ("records of mounts that are gone:", &self.stale_mounts),
        ] {
            if !files.is_empty() {
                writeln!(w, "{} {title}", words.heading)?;
                for f in files {
                    writeln!(w, "{}: {}", words.line, f.name)?;
                }
                writeln!(w)?;
            }
        }
        if !self.temporary_files.is_empty() || !self.kept_temporary_files.is_empty() {
            writeln!(w, "Temporary files:")?;
            let removed = if self.dry_run { "would remove" } else { "removed" };
            for f in &self.temporary_files {
                writeln!(w, "{removed}: {} ({})", f.name, size(f.size))?;
            }
            for f in &self.kept_temporary_files {
                let why = match f.reason {
                    Kept::InUse => "a writer holds it",
                    Kept::Young => "younger than --grace",
                };
                writeln!(w, "kept: {} ({}): {why}", f.name, size(f.size))?;
            }
            writeln!(w)?;
        }
        writeln!(w, "{}: {}", words.total, size(self.reclaimed_space))?;
        w.flush()
    }

    /// docker `rmi`: `Untagged: web:v1` for each tag removed and `Deleted: sha256:<image id>`
    /// for each image removed, in order, then `Total reclaimed space: …`; a dry run says
    /// `Would untag:`, `Would delete:` and `Total space that would be reclaimed:`.
    pub fn write_removed(&self, mut w: impl Write) -> std::io::Result<()> {
        let (untag, delete) = if self.dry_run {
            ("Would untag", "Would delete")
        } else {
            ("Untagged", "Deleted")
        };
        for e in &self.events {
            match e {
                Event::Untagged(t) => writeln!(w, "{untag}: {t}")?,
                Event::Deleted(i) => writeln!(w, "{delete}: {}", i.shown())?,
            }
        }
        let words = Words::of(self.dry_run);
        writeln!(w, "{}: {}", words.total, size(self.reclaimed_space))?;
        w.flush()
    }
}

/// The report's words for what went, or (a dry run) for what would go.
struct Words {
    images: &'static str,
    heading: &'static str,
    line: &'static str,
    total: &'static str,
}

impl Words {
    fn of(dry_run: bool) -> Words {
        if dry_run {
            Words {
                images: "Would delete images",
                heading: "Would delete",
                line: "would delete",
                total: "Total space that would be reclaimed",
            }
        } else {
            Words {
                images: "Deleted Images",
                heading: "Deleted",
                line: "deleted",
                total: "Total reclaimed space",
            }
        }
    }
}

fn size(bytes: u64) -> String {
    common::units::human_size(bytes, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(images: &[char], blobs: &[(char, u64)]) -> Report {
        let d = |c: char| {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse::<Digest>()
                .unwrap()
        };
        Report::new(
            false,
            images
                .iter()
                .map(|c| {
                    Event::Deleted(RemovedImage {
                        digest: d(*c),
                        id: None,
                        media_type: common::media::MANIFEST.into(),
                    })
                })
                .collect(),
            blobs
                .iter()
                .map(|(c, size)| RemovedBlob {
                    digest: d(*c),
                    size: *size,
                })
                .collect(),
            vec![RemovedFile {
                name: ".layerkit-tmp-x".into(),
                size: 5,
            }],
            Vec::new(),
        )
    }

    #[test]
    fn text_lists_images_first_then_the_other_blobs_sorted_then_temporary_files() {
        let mut r = report(&['e'], &[('c', 1_000_000), ('e', 300), ('a', 23_299_695)]);
        r.kept_temporary_files = vec![
            KeptFile::new(".layerkit-tmp-y".into(), 15_700_000, Kept::InUse),
            KeptFile::new(".layerkit-tmp-z".into(), 1_500, Kept::Young),
        ];
        let mut out = Vec::new();
        r.write_text(&mut out).unwrap();
        let (a, c, e) = ("a".repeat(64), "c".repeat(64), "e".repeat(64));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "Deleted Images:\ndeleted: sha256:{e}\ndeleted: sha256:{a}\ndeleted: sha256:{c}\n\n\
                 Temporary files:\nremoved: .layerkit-tmp-x (5B)\n\
                 kept: .layerkit-tmp-y (15.7MB): a writer holds it\n\
                 kept: .layerkit-tmp-z (1.5kB): younger than --grace\n\n\
                 Total reclaimed space: 24.3MB\n"
            )
        );
    }

    #[test]
    fn nothing_removed_is_one_line() {
        let mut r = report(&[], &[]);
        r.temporary_files.clear();
        r.reclaimed_space = 0;
        let mut out = Vec::new();
        r.write_text(&mut out).unwrap();
        assert_eq!(out, b"Total reclaimed space: 0B\n");
    }
}
