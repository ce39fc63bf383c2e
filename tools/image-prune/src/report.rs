//! The report: docker's `image prune` text, or one JSON document.

use common::digest::Digest;
use serde::Serialize;
use std::io::Write;

/// A dangling `index.json` entry that was removed.
#[derive(Serialize)]
pub struct RemovedImage {
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
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

/// What a run removed (or, with `--dry-run`, would remove). As JSON, one document:
/// `{"blobs":[{"digest","size"}],"dryRun":false,"images":[{"digest","mediaType"}],
/// "keptByGrace":["sha256:…"],"layerCache":[{"name","size"}],"reclaimedSpace":N,
/// "staleMounts":[{"name","size"}],"temporaryFiles":[{"name","size"}]}`.
#[derive(Serialize)]
pub struct Report {
    #[serde(rename = "dryRun")]
    pub dry_run: bool,
    pub images: Vec<RemovedImage>,
    /// Every blob removed, the images' own manifests included, sorted by digest.
    pub blobs: Vec<RemovedBlob>,
    #[serde(rename = "temporaryFiles")]
    pub temporary_files: Vec<RemovedFile>,
    /// Orphan blobs left in place because they are younger than the grace period.
    #[serde(rename = "keptByGrace")]
    pub kept_by_grace: Vec<Digest>,
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
        images: Vec<RemovedImage>,
        mut blobs: Vec<RemovedBlob>,
        temporary_files: Vec<RemovedFile>,
        kept_by_grace: Vec<Digest>,
    ) -> Report {
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        let reclaimed_space =
            blobs.iter().map(|b| b.size).sum::<u64>() + temporary_files.iter().map(|t| t.size).sum::<u64>();
        Report {
            dry_run,
            images,
            blobs,
            temporary_files,
            kept_by_grace,
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

    /// docker/cli `image prune`: `Deleted Images:`, one `deleted:` line per removed image and
    /// then per other removed blob (docker lists an image's layers there too), a blank line,
    /// and `Total reclaimed space: 24.3MB`; only the last line when nothing was removed.
    pub fn write_text(&self, mut w: impl Write) -> std::io::Result<()> {
        let mut listed = std::collections::HashSet::new();
        let lines: Vec<&Digest> = self
            .images
            .iter()
            .map(|i| &i.digest)
            .chain(self.blobs.iter().map(|b| &b.digest))
            .filter(|d| listed.insert(*d))
            .collect();
        if !lines.is_empty() {
            writeln!(w, "Deleted Images:")?;
            for d in lines {
                writeln!(w, "deleted: {d}")?;
            }
            writeln!(w)?;
        }
        for (title, files) in [
            ("Deleted layer cache entries:", &self.layer_cache),
            ("Deleted records of mounts that are gone:", &self.stale_mounts),
        ] {
            if !files.is_empty() {
                writeln!(w, "{title}")?;
                for f in files {
                    writeln!(w, "deleted: {}", f.name)?;
                }
                writeln!(w)?;
            }
        }
        writeln!(
            w,
            "Total reclaimed space: {}",
            common::units::human_size(self.reclaimed_space, 4)
        )?;
        w.flush()
    }
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
                .map(|c| RemovedImage {
                    digest: d(*c),
                    media_type: common::media::MANIFEST.into(),
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
    fn text_lists_images_first_then_the_other_blobs_sorted() {
        let r = report(&['e'], &[('c', 1_000_000), ('e', 300), ('a', 23_299_695)]);
        let mut out = Vec::new();
        r.write_text(&mut out).unwrap();
        let (a, c, e) = ("a".repeat(64), "c".repeat(64), "e".repeat(64));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "Deleted Images:\ndeleted: sha256:{e}\ndeleted: sha256:{a}\ndeleted: sha256:{c}\n\n\
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
