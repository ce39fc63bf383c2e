//! Reading layer blobs: verified against the blob digest, decompressed, and hashed again so the
//! diffID can be checked or learned, all in the one pass that reads the tar.

use crate::compress::Compression;
use crate::descriptor::Descriptor;
use crate::digest::{Digest, HashingReader, VerifyingReader};
use crate::layout::Layout;
use anyhow::{Context, bail};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::mpsc;
use std::thread;

/// A decompressing reader that can hand back its source to be drained.
pub enum Decoder<R: Read> {
    Plain(R),
    /// Boxed: the gzip state is some 300 bytes more than the others'.
    Gzip(Box<flate2::read::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    pub fn new(inner: R, c: Compression) -> crate::Result<Decoder<R>> {
        Ok(match c {
            Compression::None => Decoder::Plain(inner),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(inner))),
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
            Decoder::Gzip(d) => Box::new((*d).into_inner()),
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
///
/// Reading the blob, checking its digest, decompressing and hashing the tar run on a thread of
/// their own, a few chunks ahead of the consumer: whoever parses the tar (and creates files,
/// writes a tar) has the other core to itself.
pub struct LayerStream {
    chunks: mpsc::Receiver<Chunk>,
    /// Emptied buffers go back to the reader thread.
    spent: mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    /// The reader thread ended (the tar's end, or an error already handed on).
    ended: bool,
    reader: Option<thread::JoinHandle<crate::Result<(Digest, u64)>>>,
    digest: Digest,
    diff_id: Option<Digest>,
}

/// What the reader thread sends.
enum Chunk {
    Data(Vec<u8>),
    Failed(io::Error),
    End,
}

/// Size of one read-ahead chunk, and how many may wait for the consumer.
const CHUNK: usize = 256 << 10;
const AHEAD: usize = 4;

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
        let tar = HashingReader::new(Decoder::new(blob, c)?);
        let (tx, chunks) = mpsc::sync_channel(AHEAD);
        let (spent, recycled) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("layer-reader".into())
            .spawn(move || read_ahead(tar, &tx, &recycled))
            .context("starting a layer reader thread")?;
        Ok(LayerStream {
            chunks,
            spent,
            current: Vec::new(),
            pos: 0,
            ended: false,
            reader: Some(reader),
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
        io::copy(&mut self, &mut io::sink()).with_context(|| format!("layer {}", self.digest))?;
        let reader = self.reader.take().context("layer reader already joined")?;
        let (diff_id, len) = reader
            .join()
            .map_err(|_| anyhow::anyhow!("layer {}: the reader thread panicked", self.digest))?
            .with_context(|| format!("layer {}", self.digest))?;
        if let Some(expected) = &self.diff_id
            && *expected != diff_id
        {
            bail!(
                "layer {}: diffID mismatch: config says {expected}, the tar hashes to {diff_id}",
                self.digest
            );
        }
        Ok((diff_id, len))
    }
}

/// The reader thread: the tar in chunks, then (after the tar's end) the rest of the compressed
/// stream, so that the blob's digest and size are checked whatever the tar holds.
fn read_ahead(
    mut tar: HashingReader<Decoder<VerifyingReader<File>>>,
    tx: &mpsc::SyncSender<Chunk>,
    recycled: &mpsc::Receiver<Vec<u8>>,
) -> crate::Result<(Digest, u64)> {
    loop {
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        buf.resize(CHUNK, 0);
        let mut n = 0;
        // Whole chunks: a decoder hands out a few KiB per call.
        while n < CHUNK {
            match tar.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let msg = e.to_string();
                    let _ = tx.send(Chunk::Failed(e));
                    bail!("{msg}");
                }
            }
        }
        if n == 0 {
            break;
        }
        buf.truncate(n);
        if tx.send(Chunk::Data(buf)).is_err() {
            // The consumer stopped reading: nothing more to check for anyone.
            bail!("layer reading abandoned");
        }
    }
    let (decoder, diff_id, len) = tar.finish();
    let drained = io::copy(&mut decoder.into_source(), &mut io::sink());
    match drained {
        Ok(_) => {
            let _ = tx.send(Chunk::End);
            Ok((diff_id, len))
        }
        Err(e) => {
            let msg = e.to_string();
            let _ = tx.send(Chunk::Failed(e));
            bail!("{msg}")
        }
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Chunk::Data(data)) => {
                    let old = std::mem::replace(&mut self.current, data);
                    self.pos = 0;
                    let _ = self.spent.send(old);
                }
                Ok(Chunk::End) => self.ended = true,
                Ok(Chunk::Failed(e)) => {
                    self.ended = true;
                    return Err(e);
                }
                Err(_) => {
                    self.ended = true;
                    return Err(io::Error::other("the layer reader thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
