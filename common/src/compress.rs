//! Layer compression: the reader of every codec a layer may use, and the deterministic writers.
//!
//! gzip is written pigz-style: the stream is cut into fixed-size blocks, each compressed on its
//! own into a gzip member by libdeflate (whole buffers are what it compresses; at level 6, on the
//! 204 MB tar of a Debian base, 2.0 CPU-s where zlib-rs took 2.9, for 2% fewer bytes), in
//! parallel, and the members are concatenated in order. A multi-member gzip is one valid gzip
//! stream (RFC 1952 §2.2; Go, GNU gzip, zlib read it), and because the cut points depend on the
//! byte count only, the output is the same whatever the number of threads. zstd uses libzstd's
//! own workers, which give the same bytes for any worker count of one or more.

use anyhow::{Context, bail};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::mpsc;

/// How a layer blob is compressed (in the order `--compress` lists them: the default first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// The level used when none is given: gzip 6 (as gzip and docker), zstd 3 (as zstd).
    pub fn default_level(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 6,
            Compression::Zstd => 3,
        }
    }

    /// The codec a stream's first bytes announce: gzip's magic `1f 8b` or zstd's `28 b5 2f fd`
    /// (what `docker import` looks for); anything else is read as it is.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn check_level(self, level: i32) -> crate::Result<()> {
        let ok = match self {
            Compression::None => true,
            Compression::Gzip => (0..=9).contains(&level),
            Compression::Zstd => (1..=22).contains(&level),
        };
        if !ok {
            bail!("--level {level} is out of range for {self:?} (gzip 0-9, zstd 1-22)");
        }
        Ok(())
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// A stream whose first bytes were read to tell its codec, and are handed back first.
pub type Sniffed<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// A decompressing reader that can hand back its source, to be drained: gzip of any shape (one
/// member or many, from any writer) is read by flate2 in constant memory. libdeflate, which
/// writes our members, could only read whole members of known size (its safe API does not say
/// where a member ends, so the stream would need member sizes of our own making). Measured on
/// the 92 MB gzip of a Debian base, it inflates in 0.24 CPU-s where zlib-rs takes 0.32: not
/// enough to be worth a second reader whose view of a hostile stream could differ from
/// everyone else's, now that inflating has a thread of its own (see `layer::LayerStream`).
pub enum Decoder<R: Read> {
    Plain(R),
    Gzip(Box<flate2::read::MultiGzDecoder<R>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, io::BufReader<R>>>),
}

impl<R: Read> Decoder<R> {
    pub fn new(inner: R, c: Compression) -> crate::Result<Decoder<R>> {
        Ok(match c {
            Compression::None => Decoder::Plain(inner),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(inner))),
            Compression::Zstd => Decoder::Zstd(Box::new(
                zstd::stream::read::Decoder::new(inner).context("zstd decoder")?,
            )),
        })
    }

    /// The codec it decodes.
    pub fn compression(&self) -> Compression {
        match self {
            Decoder::Plain(_) => Compression::None,
            Decoder::Gzip(_) => Compression::Gzip,
            Decoder::Zstd(_) => Compression::Zstd,
        }
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

impl<R: Read> Decoder<Sniffed<R>> {
    /// A tar read from a file or stdin: decompressed when its first bytes are gzip's or zstd's
    /// magic, as `docker import` reads it (a tar's first bytes are its first entry's name,
    /// which such bytes would start only in a crafted archive).
    pub fn sniff(mut inner: R) -> crate::Result<Self> {
        let mut head = Vec::with_capacity(4);
        // `take` reads until it has 4 bytes or the input ends: a pipe may hand them over one
        // at a time.
        (&mut inner)
            .take(4)
            .read_to_end(&mut head)
            .context("reading the first bytes")?;
        let c = Compression::sniff(&head);
        Decoder::new(io::Cursor::new(head).chain(inner), c)
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

/// Size of one independently compressed gzip member. Large enough that the ratio is within
/// a fraction of a percent of a single stream, small enough to keep two cores busy.
const GZIP_BLOCK: usize = 1 << 20;

/// What is handed to libzstd at a time.
const ZSTD_BUFFER: usize = 1 << 20;

/// A compressing writer; `finish` flushes the last block and returns the inner writer.
pub struct Encoder<W: Write> {
    kind: EncoderKind<W>,
}

enum EncoderKind<W: Write> {
    Plain(W),
    Gzip(ParallelGzip<W>),
    /// Buffered: in multithreaded mode each call into libzstd takes its locks, and tar headers
    /// come 512 bytes at a time (measured: 2 workers were slower than 1 without the buffer).
    Zstd(io::BufWriter<zstd::stream::write::Encoder<'static, W>>),
}

impl<W: Write> Encoder<W> {
    /// `threads` changes the speed, never the bytes.
    pub fn new(inner: W, c: Compression, level: i32, threads: usize) -> crate::Result<Encoder<W>> {
        c.check_level(level)?;
        let threads = threads.max(1);
        let kind = match c {
            Compression::None => EncoderKind::Plain(inner),
            Compression::Gzip => EncoderKind::Gzip(ParallelGzip::new(inner, level as u32, threads)?),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(inner, level).context("zstd encoder")?;
                // n >= 1 always: libzstd's single-thread mode (n = 0) writes different bytes.
                e.multithread(threads as u32).context("zstd workers")?;
                EncoderKind::Zstd(io::BufWriter::with_capacity(ZSTD_BUFFER, e))
            }
        };
        Ok(Encoder { kind })
    }

    pub fn finish(self) -> io::Result<W> {
        match self.kind {
            EncoderKind::Plain(w) => Ok(w),
            EncoderKind::Gzip(g) => g.finish(),
            EncoderKind::Zstd(z) => z.into_inner().map_err(io::IntoInnerError::into_error)?.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.kind {
            EncoderKind::Plain(w) => w.write(buf),
            EncoderKind::Gzip(g) => g.write(buf),
            EncoderKind::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            EncoderKind::Plain(w) => w.flush(),
            EncoderKind::Gzip(_) => Ok(()),
            EncoderKind::Zstd(z) => z.flush(),
        }
    }
}

struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    pool: rayon::ThreadPool,
    block: Vec<u8>,
    in_flight: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
    max_in_flight: usize,
}

impl<W: Write> ParallelGzip<W> {
    fn new(inner: W, level: u32, threads: usize) -> crate::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gzip-{i}"))
            .build()
            .context("starting compression threads")?;
        Ok(ParallelGzip {
            inner,
            level,
            pool,
            block: Vec::with_capacity(GZIP_BLOCK),
            in_flight: VecDeque::new(),
            max_in_flight: threads * 2,
        })
    }

    fn submit(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(GZIP_BLOCK));
        let (tx, rx) = mpsc::sync_channel(1);
        let level = self.level;
        self.pool.spawn(move || {
            let _ = tx.send(gzip_member(&block, level));
        });
        self.in_flight.push_back(rx);
        while self.in_flight.len() >= self.max_in_flight {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(rx) = self.in_flight.pop_front() {
            let member = rx
                .recv()
                .map_err(|_| io::Error::other("compression thread died"))??;
            self.inner.write_all(&member)?;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        // An empty input still needs one member: a zero-length file is not a gzip stream.
        if !self.block.is_empty() || self.in_flight.is_empty() {
            self.submit()?;
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == GZIP_BLOCK {
            self.submit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One gzip member, compressed by libdeflate: its header has no file name, mtime 0 and OS 255,
/// so the member depends on the data, the level and libdeflate's version only (not on the CPU:
/// libdeflate picks SIMD code for speed, never a different parse).
fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let level = libdeflater::CompressionLvl::new(level as i32)
        .map_err(|e| io::Error::other(format!("gzip level {level}: {e:?}")))?;
    let mut c = libdeflater::Compressor::new(level);
    let mut out = vec![0; c.gzip_compress_bound(data.len())];
    let n = c
        .gzip_compress(data, &mut out)
        .map_err(|e| io::Error::other(format!("gzip: {e}")))?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pack(data: &[u8], c: Compression, threads: usize) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new(), c, c.default_level(), threads).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn unpack(data: &[u8], c: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        Decoder::new(data, c).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    /// Three whole blocks and a part of one: four gzip members.
    fn sample() -> Vec<u8> {
        (0..3 * GZIP_BLOCK + 77)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn round_trips_and_thread_count_does_not_change_bytes() {
        let data = sample();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let one = pack(&data, c, 1);
            assert_eq!(one, pack(&data, c, 2), "{c:?}");
            assert_eq!(one, pack(&data, c, 4), "{c:?}");
            assert_eq!(unpack(&one, c), data, "{c:?}");
        }
        assert_eq!(unpack(&pack(b"", Compression::Gzip, 2), Compression::Gzip), b"");
    }

    /// The gzip blob of a fixed input is pinned, so that a change of compressor bytes (a new
    /// libdeflate in Cargo.lock, another block size, another header) cannot go unseen: it changes
    /// the digest of every layer packed from then on, and the README's table of which versions
    /// give which bytes must say so. The values are libdeflate 1.26's (libdeflater 1.26.1)
    /// output for `sample()` cut in 1 MiB blocks, worked out independently with the Python
    /// wrapper of libdeflate (PyPI `deflate` 0.9.0): `b"".join(deflate.gzip_compress(data[o:o +
    /// 2**20], level) for o in range(0, len(data), 2**20))`, then sha256.
    #[test]
    fn gzip_bytes_are_pinned() {
        let data = sample();
        for (level, len, sha256) in [
            (
                1,
                107_039,
                "0c69329eb480203f8e2bf1743eff886d18486046624a8921f4c5a234e7aad25b",
            ),
            (
                6,
                74_457,
                "46bf6b00670331382b129ceb4ce25a916e8ac7ccb99dfb5064e2566b606549f5",
            ),
            (
                9,
                73_887,
                "5061652ab280327ca3672b95ba936e163e21b47042aeb51a8e7bdb9a4bf549a8",
            ),
        ] {
            let mut e = Encoder::new(Vec::new(), Compression::Gzip, level, 2).unwrap();
            e.write_all(&data).unwrap();
            let blob = e.finish().unwrap();
            assert_eq!(
                (blob.len(), crate::digest::Digest::of(&blob).hex()),
                (len, sha256),
                "level {level}"
            );
        }
    }

    #[test]
    fn sniffing_decompresses_by_magic_and_hands_back_plain_input_whole() {
        let data = sample();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let packed = pack(&data, c, 2);
            // One byte per read, as a slow pipe may deliver the magic.
            let mut d = Decoder::sniff(OneByte(&packed)).unwrap();
            assert_eq!(d.compression(), c);
            let mut out = Vec::new();
            d.read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "{c:?}");
        }
        for short in [&b""[..], b"\x1f", b"ab"] {
            let mut out = Vec::new();
            let mut d = Decoder::sniff(short).unwrap();
            assert_eq!(d.compression(), Compression::None);
            d.read_to_end(&mut out).unwrap();
            assert_eq!(out, short);
        }
    }

    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn levels_are_checked() {
        assert!(Encoder::new(Vec::new(), Compression::Gzip, 10, 1).is_err());
        assert!(Encoder::new(Vec::new(), Compression::Zstd, 0, 1).is_err());
    }
}
