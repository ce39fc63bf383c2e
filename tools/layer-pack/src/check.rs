//! The one pass over a tar stream: every input byte is hashed (the diffID) and handed on to the
//! compressor as it is read, while tar-rs parses the very same bytes, so a malformed or
//! truncated tar is refused without any more of it in memory than a read buffer.
//!
//! tar-rs is driven through a [`Tee`] it reads from. Where tar-rs alone would be too strict or
//! too lax for a layer, the tee and the loop around it decide instead:
//! - a tar that ends right after its last entry's content, without padding or end blocks
//!   (Debian's umoci 0.4.7 writes such layers; Go's archive/tar reads them): tar-rs would fail
//!   with "unexpected EOF during skip", so the tee makes up the missing padding as zeros
//!   for the parser only (they are neither hashed nor written);
//! - tar-rs stops at the first zero block and never looks further: the loop passes what follows
//!   through too (the blob must be the input, byte for byte) and refuses anything but zeros;
//! - a content cut short makes tar-rs's entry reader return fewer bytes, not an error: the loop
//!   counts them;
//! - tar-rs keeps PAX records and GNU long names in memory whatever their declared size: the tee
//!   caps what one entry's headers may read;
//! - an empty input is a valid empty tar for tar-rs; here it is refused, because it is what a
//!   failed producer at the head of a pipe leaves (an empty layer is 1024 zero bytes).

use anyhow::anyhow;
use common::digest::{Digest, Hasher};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;

const BLOCK: u64 = 512;

/// The most bytes the headers of one entry (PAX records, GNU long names, their padding) may take.
/// tar-rs holds them in memory; Go's archive/tar allows 1 MiB per record.
const MAX_HEADERS: u64 = 4 << 20;

/// Size of the buffer entry contents are read through.
const CHUNK: usize = 256 << 10;

/// What the uncompressed input was: its diffID and length.
pub struct Packed {
    pub diff_id: Digest,
    pub len: u64,
}

/// Reads a tar from `input` to its end, checking it, and writes every byte of it to `out`.
/// `what` names the input in errors (`stdin`, a path).
pub fn pack<R: Read, W: Write>(input: R, what: &str, out: &mut W) -> common::Result<Packed> {
    let cursor = Rc::new(Cursor::default());
    let tee = Tee {
        input,
        out,
        diff: Hasher::new(),
        cursor: cursor.clone(),
    };
    let mut archive = tar::Archive::new(tee);
    walk(&mut archive, &cursor).map_err(|e| cursor.explain(e, what))?;
    let mut tee = archive.into_inner();
    trailer(&mut tee, &cursor).map_err(|e| cursor.explain(e, what))?;
    if cursor.real.get() == 0 {
        return Err(anyhow!(
            "{what}: empty input, not a tar (an empty layer is a tar of two zero blocks)"
        ));
    }
    let (diff_id, len) = tee.diff.finish();
    Ok(Packed { diff_id, len })
}

/// Reads every entry, headers through tar-rs and contents through [`CHUNK`]-sized reads.
fn walk<R: Read>(archive: &mut tar::Archive<R>, cursor: &Cursor) -> Result<(), Failure> {
    let mut entries = archive.entries().map_err(Failure::Tar)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let at = cursor.seen.get().next_multiple_of(BLOCK);
        cursor.limit.set(at.saturating_add(MAX_HEADERS));
        let Some(entry) = entries.next() else {
            return Ok(());
        };
        let mut entry = entry.map_err(Failure::Tar)?;
        cursor.limit.set(u64::MAX);
        common::entry::from_tar(&mut entry).map_err(|e| Failure::Entry(at, e))?;
        let size = entry.size();
        let mut got = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(Failure::Tar)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        if got < size {
            return Err(Failure::Tar(io::ErrorKind::UnexpectedEof.into()));
        }
        cursor.pad_until.set(cursor.seen.get().next_multiple_of(BLOCK));
    }
}

/// Passes what follows the end of the archive through, refusing anything but zeros.
fn trailer<R: Read, W: Write>(tee: &mut Tee<R, W>, cursor: &Cursor) -> Result<(), Failure> {
    cursor.limit.set(u64::MAX);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let start = cursor.real.get();
        let n = tee.read(&mut buf).map_err(Failure::Tar)?;
        if n == 0 {
            return Ok(());
        }
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            return Err(Failure::Garbage(start + i as u64));
        }
    }
}

/// Why the walk stopped, before [`Cursor::explain`] says it in words.
enum Failure {
    /// tar-rs or the tee failed (the cursor knows whether it was the input, the output or EOF).
    Tar(io::Error),
    /// The entry whose headers start at this offset is not one a layer may hold.
    Entry(u64, anyhow::Error),
    /// A non-zero byte at this offset after the end of the archive.
    Garbage(u64),
}

/// What the walk and the tee share: tar-rs owns the tee while it parses.
#[derive(Default)]
struct Cursor {
    /// Input bytes read so far.
    real: Cell<u64>,
    /// Bytes handed to tar-rs: the input plus any padding made up at a short end.
    seen: Cell<u64>,
    /// The input has ended.
    eof: Cell<bool>,
    /// Where a short end may be filled in: the end of the last entry's padding.
    pad_until: Cell<u64>,
    /// Where tar-rs must stop reading until it has returned the next entry.
    limit: Cell<u64>,
    /// The first bytes of the input, to recognize a compressed stream.
    magic: Cell<[u8; 4]>,
    /// Set when the tee failed for a reason of its own.
    stop: Cell<Option<Stop>>,
}

enum Stop {
    Input(io::Error),
    Output(io::Error),
    HeadersTooLarge(u64),
}

impl Cursor {
    fn explain(&self, failure: Failure, what: &str) -> anyhow::Error {
        match failure {
            Failure::Entry(at, e) => e.context(format!("{what}: tar entry at byte {at}")),
            Failure::Garbage(at) => anyhow!(
                "{what}: trailing garbage after the end of the tar at byte {at} (only zeros may follow)"
            ),
            Failure::Tar(e) => match self.stop.take() {
                Some(Stop::Input(e)) => anyhow::Error::new(e).context(format!("reading {what}")),
                Some(Stop::Output(e)) => anyhow::Error::new(e).context("writing the layer blob"),
                Some(Stop::HeadersTooLarge(at)) => anyhow!(
                    "{what}: tar headers at byte {at} are larger than {} MiB (PAX records or long names)",
                    MAX_HEADERS >> 20
                ),
                None if self.eof.get() => anyhow!("{what}: truncated tar at byte {}", self.real.get()),
                None => {
                    // tar-rs fails right after reading the block it rejects.
                    let at = self.seen.get().saturating_sub(1) / BLOCK * BLOCK;
                    match (at, self.magic.get()) {
                        (0, [0x1f, 0x8b, ..]) => {
                            anyhow!("{what}: gzip-compressed, not a tar: decompress it first (gzip -dc)")
                        }
                        (0, [0x28, 0xb5, 0x2f, 0xfd]) => {
                            anyhow!("{what}: zstd-compressed, not a tar: decompress it first (zstd -dc)")
                        }
                        _ => anyhow!(
                            "{what}: bad tar header at byte {at}: {}",
                            printable(&e.to_string())
                        ),
                    }
                }
            },
        }
    }
}

/// The reader tar-rs parses from: hashes and forwards every input byte it hands over.
struct Tee<'w, R, W> {
    input: R,
    out: &'w mut W,
    diff: Hasher,
    cursor: Rc<Cursor>,
}

impl<R: Read, W: Write> Tee<'_, R, W> {
    fn fail(&self, stop: Stop) -> io::Error {
        self.cursor.stop.set(Some(stop));
        io::Error::other("stopped")
    }
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let c = &*self.cursor;
        let seen = c.seen.get();
        let room = usize::try_from(c.limit.get().saturating_sub(seen)).unwrap_or(usize::MAX);
        if room == 0 && !buf.is_empty() {
            let at = c.limit.get() - MAX_HEADERS;
            return Err(self.fail(Stop::HeadersTooLarge(at)));
        }
        let want = buf.len().min(room);
        let n = if c.eof.get() {
            0
        } else {
            loop {
                match self.input.read(&mut buf[..want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.fail(Stop::Input(e))),
                }
            }
        };
        if n == 0 {
            c.eof.set(want > 0 || c.eof.get());
            let pad = c.pad_until.get().saturating_sub(seen).min(want as u64) as usize;
            buf[..pad].fill(0);
            c.seen.set(seen + pad as u64);
            return Ok(pad);
        }
        let real = c.real.get();
        if real < 4 {
            let mut magic = c.magic.get();
            let k = (4 - real as usize).min(n);
            magic[real as usize..real as usize + k].copy_from_slice(&buf[..k]);
            c.magic.set(magic);
        }
        self.diff.update(&buf[..n]);
        if let Err(e) = self.out.write_all(&buf[..n]) {
            return Err(self.fail(Stop::Output(e)));
        }
        c.real.set(real + n as u64);
        c.seen.set(seen + n as u64);
        Ok(n)
    }
}

/// tar-rs quotes header fields in its messages: keep their bytes from breaking the line.
fn printable(msg: &str) -> String {
    msg.chars()
        .map(|c| match c {
            '\u{fffd}' => "?".to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}
