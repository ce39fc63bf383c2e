//! Reading layer blobs: verified against the blob digest, decompressed, and hashed again so the
//! diffID can be checked or learned, all in the one pass that reads the tar.

use crate::compress::{Compression, Decoder};
use crate::descriptor::Descriptor;
use crate::digest::{Digest, Hasher, VerifyingReader};
use crate::layout::Layout;
use anyhow::{Context, bail};
use std::fs::File;
use std::io::{self, Read};
use std::sync::mpsc;
use std::thread;

/// The uncompressed tar of one layer blob.
///
/// The work is spread over three threads, a few chunks apart: one reads the blob and checks
/// its digest, one decompresses, and the consumer's own thread hashes the tar (the diffID) as
/// it takes each chunk, beside parsing it. Measured on unpacking a Debian base (200 MB of tar,
/// 92 MB of gzip), a single reader thread doing all three was busy 73% of the time while the
/// thread applying the entries waited: decompression (47%) and the two hashes (23%) are split
/// so that neither thread waits on the other.
pub struct LayerStream {
    tar: Chunks,
    diff: Hasher,
    /// The decompressing thread; it joins the blob reader.
    reader: Option<thread::JoinHandle<io::Result<()>>>,
    digest: Digest,
    diff_id: Option<Digest>,
}

/// Size of one read-ahead chunk of the tar, and how many may wait for the next thread. The
/// compressed blob, about a third of that, goes in smaller chunks: what waits between threads
/// is memory (a 4 GiB gzip bomb stays within 10 MB).
const CHUNK: usize = 256 << 10;
const BLOB_CHUNK: usize = 64 << 10;
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
        let (compressed, blob_reader) =
            Chunks::spawn("layer-blob", BLOB_CHUNK, move |out| out.pump(blob).map(drop))?;
        let (tar, reader) = Chunks::spawn("layer-reader", CHUNK, move |out| {
            let decoder = Decoder::new(compressed, c).map_err(io::Error::other)?;
            // After the tar's end, the rest of the compressed stream, so that the blob's
            // digest and size are checked whatever the tar holds.
            let drained = io::copy(&mut out.pump(decoder)?.into_source(), &mut io::sink());
            let checked = blob_reader
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the blob reader thread panicked")));
            drained.and(checked)
        })?;
        Ok(LayerStream {
            tar,
            diff: Hasher::new(),
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
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("layer {}: the reader thread panicked", self.digest))?
            .with_context(|| format!("layer {}", self.digest))?;
        let (diff_id, len) = std::mem::take(&mut self.diff).finish();
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

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tar.read_hashing(buf, Some(&mut self.diff))
    }
}

/// What a producing thread sends.
enum Chunk {
    Data(Vec<u8>),
    Failed(io::Error),
    End,
}

/// The receiving end of a producing thread: its bytes, in whole chunks, as a reader.
struct Chunks {
    chunks: mpsc::Receiver<Chunk>,
    /// Emptied buffers go back to the producer.
    spent: mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    /// The producer ended (its input's end, or an error already handed on).
    ended: bool,
}

/// The sending end, given to the producing thread.
struct Producer {
    tx: mpsc::SyncSender<Chunk>,
    recycled: mpsc::Receiver<Vec<u8>>,
    chunk: usize,
}

impl Chunks {
    /// Starts `produce` on a thread of its own, pumping `chunk` bytes at a time. What it pumps is
    /// read from the returned reader, which ends when `produce` returns Ok, or fails with its
    /// error. The thread returns the same result (the error as a copy, with its kind and message).
    fn spawn<T: Send + 'static>(
        name: &str,
        chunk: usize,
        produce: impl FnOnce(&Producer) -> io::Result<T> + Send + 'static,
    ) -> crate::Result<(Chunks, thread::JoinHandle<io::Result<T>>)> {
        let (tx, chunks) = mpsc::sync_channel(AHEAD);
        let (spent, recycled) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let out = Producer { tx, recycled, chunk };
                match produce(&out) {
                    Ok(t) => {
                        let _ = out.tx.send(Chunk::End);
                        Ok(t)
                    }
                    Err(e) => {
                        let copy = io::Error::new(e.kind(), e.to_string());
                        let _ = out.tx.send(Chunk::Failed(e));
                        Err(copy)
                    }
                }
            })
            .with_context(|| format!("starting the {name} thread"))?;
        let reader = Chunks {
            chunks,
            spent,
            current: Vec::new(),
            pos: 0,
            ended: false,
        };
        Ok((reader, thread))
    }

    /// Reads from the current chunk; `hasher` sees each chunk whole as it arrives.
    fn read_hashing(&mut self, buf: &mut [u8], mut hasher: Option<&mut Hasher>) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Chunk::Data(data)) => {
                    if let Some(h) = hasher.as_deref_mut() {
                        h.update(&data);
                    }
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
                    return Err(io::Error::other("a layer reader thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_hashing(buf, None)
    }
}

impl Producer {
    /// Sends everything `r` holds, in whole chunks (a decoder hands out a few KiB per call),
    /// and returns `r` at its end.
    fn pump<R: Read>(&self, mut r: R) -> io::Result<R> {
        loop {
            let mut buf = self.recycled.try_recv().unwrap_or_else(|_| vec![0; self.chunk]);
            buf.resize(self.chunk, 0);
            let mut n = 0;
            while n < self.chunk {
                match r.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if n == 0 {
                return Ok(r);
            }
            buf.truncate(n);
            if self.tx.send(Chunk::Data(buf)).is_err() {
                // The consumer stopped reading: nothing more to check for anyone.
                return Err(io::Error::other("layer reading abandoned"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarread::tests::tar_of;

    /// A gzip blob (from flate2's encoder, not ours) of a tar of two files, in a temp file.
    fn gzip_blob() -> (tempfile::NamedTempFile, Vec<u8>, Vec<u8>) {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let tar = tar_of(&[("a", b"hello"), ("big", &big)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let blob = gz.finish().unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        io::Write::write_all(&mut f, &blob).unwrap();
        (f, blob, tar)
    }

    fn open(f: &tempfile::NamedTempFile, digest: Digest, size: u64, diff_id: Option<&Digest>) -> LayerStream {
        let desc = Descriptor::new(crate::media::LAYER_GZIP, digest, size);
        LayerStream::open_file(f.path(), &desc, diff_id).unwrap()
    }

    fn read_all(stream: &mut LayerStream) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        stream.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn a_layer_stream_hands_out_the_tar_and_its_diff_id() {
        let (f, blob, tar) = gzip_blob();
        let diff_id = Digest::of(&tar);
        let mut stream = open(&f, Digest::of(&blob), blob.len() as u64, Some(&diff_id));
        assert!(read_all(&mut stream).unwrap() == tar);
        assert_eq!(stream.finish().unwrap(), (diff_id, tar.len() as u64));
    }

    #[test]
    fn a_layer_stream_says_why_a_blob_is_refused() {
        let (f, blob, tar) = gzip_blob();
        let size = blob.len() as u64;
        // The blob is not what its descriptor says: the reader sees the cause, not just an end.
        let mut wrong = open(&f, Digest::of(b"another blob"), size, None);
        let e = read_all(&mut wrong).unwrap_err().to_string();
        assert!(e.contains("digest mismatch"), "{e}");
        let e = format!("{:#}", wrong.finish().unwrap_err());
        assert!(e.contains("digest mismatch"), "{e}");
        let mut short = open(&f, Digest::of(&blob), size + 1, None);
        let e = read_all(&mut short).unwrap_err().to_string();
        assert!(e.contains("size mismatch"), "{e}");
        // The tar is not what the config says.
        let other = Digest::of(b"another tar");
        let mut stream = open(&f, Digest::of(&blob), size, Some(&other));
        assert!(read_all(&mut stream).unwrap() == tar);
        let e = format!("{:#}", stream.finish().unwrap_err());
        assert!(e.contains("diffID mismatch"), "{e}");
        // A gzip stream cut short, whose digest is right.
        let cut = &blob[..blob.len() - 100];
        let mut g = tempfile::NamedTempFile::new().unwrap();
        io::Write::write_all(&mut g, cut).unwrap();
        let mut stream = open(&g, Digest::of(cut), cut.len() as u64, None);
        assert!(read_all(&mut stream).is_err(), "a cut gzip stream was read whole");
        assert!(stream.finish().is_err());
    }
}
