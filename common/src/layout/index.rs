//! `index.json`: read without a lock (it is only ever replaced by rename), changed under the
//! layout lock, and tags, which are set only on complete images.

use super::{LOCK_FILE, Layout};
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::Error;
use crate::json;
use crate::manifest::Index;
use crate::media;
use anyhow::{Context, bail};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;

/// Held while `index.json` may change; released on drop.
pub struct LayoutLock {
    _file: File,
}

impl Layout {
    /// Reads `index.json` (readers need no lock: it is only ever replaced by rename).
    pub fn read_index(&self) -> crate::Result<Index> {
        let path = self.root.join("index.json");
        let f = File::open(&path).with_context(|| path.display().to_string())?;
        json::read_capped(f, &path.display().to_string(), self.max_json)
    }

    /// Takes the exclusive lock that serializes `index.json` updates (and image-prune).
    pub fn lock(&self) -> crate::Result<LayoutLock> {
        let path = self.root.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| path.display().to_string())?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(LayoutLock { _file: file })
    }

    /// Reads, changes and atomically replaces `index.json` under the lock.
    pub fn update_index<T>(&self, change: impl FnOnce(&mut Index) -> crate::Result<T>) -> crate::Result<T> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let out = change(&mut index)?;
        self.write_index_locked(&index)?;
        Ok(out)
    }

    /// Replaces `index.json`; the caller holds [`Layout::lock`].
    pub fn write_index_locked(&self, index: &Index) -> crate::Result<()> {
        let bytes = json::canonical(index)?;
        let dest = self.root.join("index.json");
        let mut tmp = self.temp_file()?;
        tmp.write_all(&bytes)
            .with_context(|| format!("writing {}", dest.display()))?;
        tmp.replace(&dest)
    }

    /// Points `tag` at `desc`. A previous holder of the tag stays in the index without its
    /// ref name (a dangling image, as docker leaves `<none>:<none>`), unless it is the same
    /// manifest or another entry still holds it. Refused, with the index unchanged, when the
    /// manifest (or index) blob, or an image manifest's config or a layer, is not in the layout.
    pub fn set_tag(&self, tag: &str, desc: Descriptor) -> crate::Result<()> {
        self.tag(tag, desc, None)
    }

    /// Stores `manifest` (the bytes `desc` describes) and points `tag` at it, both under the
    /// index lock. A new image's manifest is written this way: stored before the lock, it could
    /// be the manifest of a dangling image that a concurrent image-prune removes before the tag
    /// lands (re-committing identical content gives the same manifest).
    pub fn store_and_tag(&self, tag: &str, desc: Descriptor, manifest: &[u8]) -> crate::Result<()> {
        let digest = Digest::of(manifest);
        if digest != desc.digest || manifest.len() as u64 != desc.size {
            bail!(
                "{}: the manifest is {} bytes hashing to {digest}, not what its descriptor says",
                desc.digest,
                manifest.len()
            );
        }
        self.tag(tag, desc, Some(manifest))
    }

    fn tag(&self, tag: &str, mut desc: Descriptor, manifest: Option<&[u8]>) -> crate::Result<()> {
        crate::reference::check_ref_name(tag)?;
        desc.annotations
            .insert(media::REF_NAME.to_string(), tag.to_string());
        self.update_index(|index| {
            if let Some(bytes) = manifest {
                self.write_blob(bytes)?;
            }
            self.check_complete(&desc)
                .with_context(|| format!("tagging {tag}"))?;
            for entry in index.manifests.iter_mut() {
                if entry.ref_name() == Some(tag) {
                    entry.annotations.remove(media::REF_NAME);
                }
            }
            // Drop untagged duplicates of entries that are still reachable from another entry,
            // so re-tagging the same image does not pile up dangling entries.
            let new_digest = desc.digest.clone();
            index
                .manifests
                .retain(|e| !(e.ref_name().is_none() && e.digest == new_digest));
            index.drop_redundant_untagged();
            index.manifests.push(desc);
            Ok(())
        })
    }

    /// The blob `desc` names is stored and, for an image manifest, its config and layers too:
    /// what a tag must never point past. Called under the index lock, which image-prune holds
    /// while it deletes.
    fn check_complete(&self, desc: &Descriptor) -> crate::Result<()> {
        let missing = |digest: &Digest| Error::BlobMissing {
            layout: self.root.clone(),
            digest: digest.clone(),
        };
        if !self.has_blob(&desc.digest) {
            return Err(missing(&desc.digest).into());
        }
        if media::is_manifest(&desc.media_type) {
            let m = self.read_manifest(desc)?;
            // A layer listed many times is looked up once.
            let mut seen = HashSet::new();
            if let Some(d) = std::iter::once(&m.config)
                .chain(&m.layers)
                .filter(|d| seen.insert(&d.digest))
                .find(|d| !self.has_blob(&d.digest))
            {
                return Err(missing(&d.digest).into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with(layout: &Layout, layer: &[u8]) -> (Descriptor, Vec<u8>, Digest) {
        let (layer, _) = layout.write_blob(layer).unwrap();
        let (config, _) = layout.write_blob(b"{}").unwrap();
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::MANIFEST,
            "config": {"mediaType": media::CONFIG, "digest": config, "size": 2},
            "layers": [{"mediaType": media::LAYER_GZIP, "digest": layer, "size": 1}],
        });
        let bytes = json::canonical(&m).unwrap();
        let desc = Descriptor::new(media::MANIFEST, Digest::of(&bytes), bytes.len() as u64);
        (desc, bytes, layer)
    }

    #[test]
    fn a_tag_never_lands_on_an_image_with_a_blob_missing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
        let (desc, bytes, layer) = manifest_with(&layout, b"x");
        let err = format!("{:#}", layout.set_tag("t", desc.clone()).unwrap_err());
        assert!(
            err.contains(&desc.digest.to_string()) && err.contains("missing"),
            "{err}"
        );

        layout.store_and_tag("t", desc.clone(), &bytes).unwrap();
        assert_eq!(fs::read(layout.blob_path(&desc.digest)).unwrap(), bytes);
        assert_eq!(layout.read_index().unwrap().manifests.len(), 1);

        let (other, other_bytes, other_layer) = manifest_with(&layout, b"y");
        fs::remove_file(layout.blob_path(&other_layer)).unwrap();
        let before = fs::read(layout.root().join("index.json")).unwrap();
        let err = format!(
            "{:#}",
            layout
                .store_and_tag("t", other.clone(), &other_bytes)
                .unwrap_err()
        );
        assert!(
            err.contains("tagging t") && err.contains(&other_layer.to_string()),
            "{err}"
        );
        assert_eq!(fs::read(layout.root().join("index.json")).unwrap(), before);
        assert!(layout.has_blob(&layer));

        let mut forged = other.clone();
        forged.size += 1;
        assert!(layout.store_and_tag("t", forged, &other_bytes).is_err());
    }
}
