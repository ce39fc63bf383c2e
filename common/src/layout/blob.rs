//! Blobs in and out: verified reads, and writes that appear complete or not at all.

use super::Layout;
use crate::atomic::{AtomicFile, Persisted};
use crate::descriptor::Descriptor;
use crate::digest::{Digest, HashingWriter, VerifyingReader};
use crate::error::Error;
use crate::progress::Progress;
use anyhow::{Context, bail};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

impl Layout {
    /// Opens a blob for a verified read: the reader fails at the end unless the bytes match.
    pub fn open_blob(&self, digest: &Digest, size: Option<u64>) -> crate::Result<VerifyingReader<File>> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::BlobMissing {
                    layout: self.root.clone(),
                    digest: digest.clone(),
                }
                .into());
            }
            Err(e) => return Err(e).with_context(|| path.display().to_string()),
        };
        Ok(VerifyingReader::new(file, digest.clone(), size))
    }

    /// Reads a small JSON blob whole (capped at [`Layout::max_json`]) and verifies it.
    pub fn read_blob(&self, desc: &Descriptor) -> crate::Result<Vec<u8>> {
        if desc.size > self.max_json {
            bail!(
                "{}: {} bytes is too large for a JSON document (--max-json {})",
                desc.digest,
                desc.size,
                self.max_json
            );
        }
        let mut buf = Vec::with_capacity(desc.size as usize);
        self.open_blob(&desc.digest, Some(desc.size))?
            .read_to_end(&mut buf)
            .with_context(|| format!("reading blob {}", desc.digest))?;
        Ok(buf)
    }

    /// Reads a verified JSON blob into a type. Manifests and indexes are read through
    /// [`Layout::read_manifest`] and [`Layout::read_index_blob`], which check their media type.
    pub(super) fn read_json<T: serde::de::DeserializeOwned>(&self, desc: &Descriptor) -> crate::Result<T> {
        let bytes = self.read_blob(desc)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a valid {}", desc.digest, desc.media_type))
    }

    /// Starts a new blob.
    pub fn blob_writer(&self) -> crate::Result<BlobWriter> {
        let tmp = self.temp_file()?;
        Ok(BlobWriter {
            out: HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp)),
            layout: self.clone(),
        })
    }

    /// Stores bytes as a blob. Returns the digest and whether the blob was already there.
    pub fn write_blob(&self, bytes: &[u8]) -> crate::Result<(Digest, bool)> {
        let digest = Digest::of(bytes);
        if self.claim_blob(&digest)? {
            return Ok((digest, true));
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes)?;
        let (d, _, reused) = w.commit()?;
        Ok((d, reused))
    }

    /// Copies a blob from a file (another layout's blob, a `-o` output), verifying it, and
    /// counting the bytes read on `progress`.
    pub fn copy_blob_from(
        &self,
        src: &Path,
        digest: &Digest,
        size: u64,
        progress: &Progress,
    ) -> crate::Result<bool> {
        if self.claim_blob(digest)? {
            return Ok(true);
        }
        let file = File::open(src).with_context(|| src.display().to_string())?;
        let mut r = VerifyingReader::new(progress.reader(file), digest.clone(), Some(size));
        let mut w = self.blob_writer()?;
        io::copy(&mut r, &mut w).with_context(|| format!("copying {digest} from {}", src.display()))?;
        let (d, _, reused) = w.commit()?;
        if &d != digest {
            bail!("{}: digest mismatch: the content hashes to {d}", digest);
        }
        Ok(reused)
    }
}

/// A blob being written: hashes as it goes, appears under its digest on `commit`.
pub struct BlobWriter {
    out: HashingWriter<BufWriter<AtomicFile>>,
    layout: Layout,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.written()
    }

    /// fsyncs and renames the blob into place. Returns its digest, size and whether an
    /// identical blob was already there (then the new copy is discarded).
    pub fn commit(self) -> crate::Result<(Digest, u64, bool)> {
        let (buf, digest, size) = self.out.finish();
        let mut tmp = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .context("flushing blob")?;
        let dest = self.layout.blob_path(&digest);
        // A stored copy is claimed instead; one pruned between the claim and the rename is
        // replaced by this one.
        for _ in 0..8 {
            if self.layout.claim_blob(&digest)? {
                return Ok((digest, size, true));
            }
            match tmp.persist_new(&dest)? {
                Persisted::Done => return Ok((digest, size, false)),
                Persisted::Exists(t) => tmp = t,
            }
        }
        bail!("{}: exists but is not a regular file", dest.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::TMP_PREFIX;
    use std::fs;
    use std::path::PathBuf;

    fn age_blob(layout: &Layout, digest: &Digest) -> std::time::SystemTime {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        filetime::set_file_mtime(
            layout.blob_path(digest),
            filetime::FileTime::from_system_time(old),
        )
        .unwrap();
        old
    }

    fn mtime(layout: &Layout, digest: &Digest) -> std::time::SystemTime {
        fs::metadata(layout.blob_path(digest))
            .unwrap()
            .modified()
            .unwrap()
    }

    #[test]
    fn every_way_of_reusing_a_blob_claims_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
        let bytes = b"a layer, say";
        let (digest, reused) = layout.write_blob(bytes).unwrap();
        assert!(!reused);
        let src = dir.path().join("copy");
        fs::write(&src, bytes).unwrap();
        let reuses: [&dyn Fn() -> bool; 3] = [
            &|| layout.write_blob(bytes).unwrap().1,
            &|| {
                let mut w = layout.blob_writer().unwrap();
                w.write_all(bytes).unwrap();
                w.commit().unwrap().2
            },
            &|| {
                layout
                    .copy_blob_from(&src, &digest, bytes.len() as u64, &Progress::hidden())
                    .unwrap()
            },
        ];
        for (i, reuse) in reuses.iter().enumerate() {
            let old = age_blob(&layout, &digest);
            assert!(reuse(), "way {i} reuses");
            assert!(
                mtime(&layout, &digest) > old + std::time::Duration::from_secs(3000),
                "way {i}"
            );
        }
        // A blob pruned meanwhile is not claimed: the writer stores it anew.
        fs::remove_file(layout.blob_path(&digest)).unwrap();
        assert!(!layout.claim_blob(&digest).unwrap());
        assert_eq!(layout.write_blob(bytes).unwrap(), (digest.clone(), false));
        assert_eq!(fs::read(layout.blob_path(&digest)).unwrap(), bytes);
    }

    #[test]
    fn a_writers_temporary_file_is_locked_until_it_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
        let mut w = layout.blob_writer().unwrap();
        w.write_all(b"in progress").unwrap();
        w.flush().unwrap();
        let tmp: Vec<PathBuf> = fs::read_dir(layout.root())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(TMP_PREFIX))
            .collect();
        assert_eq!(tmp.len(), 1);
        let try_lock = || {
            let f = File::open(&tmp[0]).unwrap();
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        };
        assert_eq!(try_lock(), Err(rustix::io::Errno::WOULDBLOCK));
        drop(w);
        assert!(!tmp[0].exists(), "an abandoned writer removes its file");
    }
}
