//! Reading layer blobs: verified against the blob digest, decompressed, and hashed again so the
//! diffID can be checked or learned, all in the one pass that reads the tar.

use crate::compress::Compression;
use crate::descriptor::Descriptor;
use crate::digest::{Digest, HashingReader, VerifyingReader};
use crate::entry::Entry;
use crate::layout::Layout;
use anyhow::{Context, bail};
use std::fs::File;
use std::io::{self, BufReader, Read};

/// A decompressing reader that can hand back its source to be drained.
pub enum Decoder<R: Read> {
    Plain(R),
    Gzip(flate2::read::MultiGzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    pub fn new(inner: R, c: Compression) -> crate::Result<Decoder<R>> {
        Ok(match c {
            Compression::None => Decoder::Plain(inner),
            Compression::Gzip => Decoder::Gzip(flate2::read::MultiGzDecoder::new(inner)),
            Compression::Zstd => {
                Decoder::Zstd(zstd::stream::read::Decoder::new(inner).context("zstd decoder")?)
            }
        })
    }

    /// The compressed source, positioned wherever the decoder stopped reading it.
    pub fn into_source(self) -> Box<dyn Read>
    where
        R: 'static,
    {
        match self {
            Decoder::Plain(r) => Box::new(r),
            Decoder::Gzip(d) => Box::new(d.into_inner()),
            Decoder::Zstd(d) => Box::new(d.finish()),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// The uncompressed tar of one layer blob.
pub struct LayerStream {
    inner: HashingReader<Decoder<VerifyingReader<File>>>,
    digest: Digest,
    diff_id: Option<Digest>,
}

impl LayerStream {
    /// Opens a layer of `layout`. `diff_id`, when known (from the config), is checked too.
    pub fn open(layout: &Layout, desc: &Descriptor, diff_id: Option<&Digest>) -> crate::Result<LayerStream> {
        let c = crate::media::layer_compression(&desc.media_type)
            .with_context(|| format!("layer {}", desc.digest))?;
        let blob = layout.open_blob(&desc.digest, Some(desc.size))?;
        Self::from_verifying(blob, c, desc.digest.clone(), diff_id.cloned())
    }

    /// Opens a layer blob kept in a file outside any layout (`layer-pack -o FILE`).
    pub fn open_file(
        path: &std::path::Path,
        desc: &Descriptor,
        diff_id: Option<&Digest>,
    ) -> crate::Result<LayerStream> {
        let c = crate::media::layer_compression(&desc.media_type)
            .with_context(|| format!("layer {}", desc.digest))?;
        let file = File::open(path).with_context(|| format!("layer {}: {}", desc.digest, path.display()))?;
        let blob = VerifyingReader::new(file, desc.digest.clone(), Some(desc.size));
        Self::from_verifying(blob, c, desc.digest.clone(), diff_id.cloned())
    }

    fn from_verifying(
        blob: VerifyingReader<File>,
        c: Compression,
        digest: Digest,
        diff_id: Option<Digest>,
    ) -> crate::Result<LayerStream> {
        Ok(LayerStream {
            inner: HashingReader::new(Decoder::new(blob, c)?),
            digest,
            diff_id,
        })
    }

    /// The blob digest, for messages.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Reads what is left (the tar's end padding, the rest of the compressed stream), then
    /// checks the blob digest and size and the diffID. Returns the diffID and tar length.
    pub fn finish(mut self) -> crate::Result<(Digest, u64)> {
        io::copy(&mut self.inner, &mut io::sink()).with_context(|| format!("layer {}", self.digest))?;
        let (decoder, diff_id, len) = self.inner.finish();
        io::copy(&mut decoder.into_source(), &mut io::sink())
            .with_context(|| format!("layer {}", self.digest))?;
        if let Some(expected) = self.diff_id
            && expected != diff_id
        {
            bail!(
                "layer {}: diffID mismatch: config says {expected}, the tar hashes to {diff_id}",
                self.digest
            );
        }
        Ok((diff_id, len))
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// Calls `f` for each entry of a tar stream, in order, with the entry's index, the model and
/// the entry itself (its content can be read). Errors name the entry.
pub fn for_each_entry<R: Read>(
    reader: R,
    mut f: impl FnMut(u64, Entry, &mut dyn Read) -> crate::Result<()>,
) -> crate::Result<()> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().context("reading tar")?;
    for (i, e) in (0u64..).zip(entries) {
        let mut e = e.with_context(|| format!("reading tar entry {}", i + 1))?;
        let Some(model) = crate::entry::from_tar(&mut e)? else {
            continue;
        };
        let shown = crate::entry::display(&model.path);
        f(i, model, &mut e).with_context(|| shown)?;
    }
    Ok(())
}
