//! The one pass over a tar stream: every input byte is hashed (the diffID) and handed on to the
//! compressor as it is read, while tar-rs parses the very same bytes, so a malformed or
//! truncated tar is refused without any more of it in memory than a read buffer.
//!
//! The parse is [`common::tarread::for_each_entry`], the one every tool reads layers with (it
//! accepts a tar that ends right after its last entry's content, as umoci 0.4.7 writes them;
//! it caps PAX headers and GNU long names; it reads a sparse file's real name and size and
//! checks its map against its data); it reads through a [`Tee`]. Where that alone would be too lax for a blob we store, the tee
//! and the code around it decide:
//! - tar-rs stops at the first zero block and never looks further: what follows is passed
//!   through too (the blob must be the input, byte for byte) and must be zeros;
//! - an empty input is a valid empty tar for tar-rs; here it is refused, because it is what a
//!   failed producer at the head of a pipe leaves (an empty layer is 1024 zero bytes);
//! - errors say where: the input offset of a cut, or of the header block tar-rs rejected.

use anyhow::anyhow;
use common::digest::{Digest, Hasher};
use common::size::ContentSize;
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;

const BLOCK: u64 = 512;

/// Size of the buffer entry contents are read through.
const CHUNK: usize = 256 << 10;

/// What the uncompressed input was: its diffID, length and content size (docker's SIZE).
pub struct Packed {
    /// None when it was not computed: an uncompressed blob is the tar, and the blob's digest,
    /// computed as it is written, is the diffID.
    pub diff_id: Option<Digest>,
    pub len: u64,
    pub content: ContentSize,
}

/// Reads a tar from `input` to its end, checking it, and writes every byte of it to `out`.
/// `what` names the input in errors (`stdin`, a path). `diff_id`: hash the tar.
pub fn pack<R: Read, W: Write>(input: R, what: &str, out: &mut W, diff_id: bool) -> common::Result<Packed> {
    let cursor = Rc::new(Cursor::default());
    let mut tee = Tee {
        input,
        out,
        diff: diff_id.then(Hasher::new),
        cursor: cursor.clone(),
    };
    let mut content = ContentSize::default();
    walk(&mut tee, &mut content)
        .and_then(|()| trailer(&mut tee, &cursor))
        .map_err(|e| cursor.explain(e, what))?;
    if cursor.pos.get() == 0 {
        return Err(anyhow!(
            "{what}: empty input, not a tar (an empty layer is a tar of two zero blocks)"
        ));
    }
    Ok(Packed {
        diff_id: tee.diff.map(|h| h.finish().0),
        len: cursor.pos.get(),
        content,
    })
}

/// Reads every entry: headers through tar-rs (adding each to the content size), contents
/// through [`CHUNK`]-sized reads (a sparse file's data only: its holes are not made up).
fn walk<R: Read, W: Write>(tee: &mut Tee<R, W>, size: &mut ContentSize) -> Result<(), Failure> {
    let mut buf = vec![0u8; CHUNK];
    common::tarread::for_each_entry(tee, |_, entry, content| {
        size.add_entry(&entry);
        content.read_data(&mut buf, |_, _| Ok(()))?;
        Ok(())
    })
    .map_err(Failure::Parse)
}

/// Passes what follows the end of the archive through, refusing anything but zeros.
fn trailer<R: Read, W: Write>(tee: &mut Tee<R, W>, cursor: &Cursor) -> Result<(), Failure> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let start = cursor.pos.get();
        let n = tee.read(&mut buf).map_err(|e| Failure::Parse(e.into()))?;
        if n == 0 {
            return Ok(());
        }
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            return Err(Failure::Garbage(start + i as u64));
        }
    }
}

/// Why the pass stopped, before [`Cursor::explain`] says it in words.
enum Failure {
    /// The parse failed; the cursor knows whether for the input, the output, a cut or a header.
    Parse(anyhow::Error),
    /// A non-zero byte at this offset after the end of the archive.
    Garbage(u64),
}

/// What the pass and the tee share: the tee is out of reach while tar-rs parses from it.
#[derive(Default)]
struct Cursor {
    /// Input bytes read so far.
    pos: Cell<u64>,
    /// The input has ended.
    eof: Cell<bool>,
    /// The first bytes of the input, to recognize a compressed stream.
    magic: Cell<[u8; 4]>,
    /// Set when the tee failed for a reason of its own.
    stop: Cell<Option<Stop>>,
}

enum Stop {
    Input(io::Error),
    Output(io::Error),
}

impl Cursor {
    fn explain(&self, failure: Failure, what: &str) -> anyhow::Error {
        let e = match failure {
            Failure::Garbage(at) => {
                return anyhow!(
                    "{what}: trailing garbage after the end of the tar at byte {at} (only zeros may follow)"
                );
            }
            Failure::Parse(e) => e,
        };
        match self.stop.take() {
            Some(Stop::Input(e)) => anyhow::Error::new(e).context(format!("reading {what}")),
            Some(Stop::Output(e)) => anyhow::Error::new(e).context("writing the layer blob"),
            None if self.eof.get() => anyhow!("{what}: truncated tar at byte {}", self.pos.get()),
            None => {
                // Headers are whole blocks, and the parse fails right after the block it rejects.
                let at = self.pos.get().saturating_sub(1) / BLOCK * BLOCK;
                match (at, self.magic.get()) {
                    (0, [0x1f, 0x8b, ..]) => {
                        anyhow!("{what}: gzip-compressed, not a tar: decompress it first (gzip -dc)")
                    }
                    (0, [0x28, 0xb5, 0x2f, 0xfd]) => {
                        anyhow!("{what}: zstd-compressed, not a tar: decompress it first (zstd -dc)")
                    }
                    _ => anyhow!(
                        "{what}: bad tar header at byte {at}: {}",
                        printable(&format!("{e:#}"))
                    ),
                }
            }
        }
    }
}

/// The reader tar-rs parses from: hashes and forwards every input byte it hands over.
struct Tee<'w, R, W> {
    input: R,
    out: &'w mut W,
    diff: Option<Hasher>,
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
        let pos = c.pos.get();
        if c.eof.get() || buf.is_empty() {
            return Ok(0);
        }
        let n = loop {
            match self.input.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(Stop::Input(e))),
            }
        };
        if n == 0 {
            c.eof.set(true);
            return Ok(0);
        }
        if pos < 4 {
            let mut magic = c.magic.get();
            let k = (4 - pos as usize).min(n);
            magic[pos as usize..pos as usize + k].copy_from_slice(&buf[..k]);
            c.magic.set(magic);
        }
        if let Some(h) = &mut self.diff {
            h.update(&buf[..n]);
        }
        if let Err(e) = self.out.write_all(&buf[..n]) {
            return Err(self.fail(Stop::Output(e)));
        }
        c.pos.set(pos + n as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, len) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(*len as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, &vec![b'x'; *len][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn run(input: &[u8]) -> common::Result<Vec<u8>> {
        let mut out = Vec::new();
        let packed = pack(input, "in", &mut out, true)?;
        assert_eq!(packed.diff_id, Some(Digest::of(input)));
        assert_eq!(packed.len, input.len() as u64);
        Ok(out)
    }

    fn error(input: &[u8]) -> String {
        match run(input) {
            Ok(_) => panic!("accepted {} bytes", input.len()),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn passes_every_byte_through() {
        let tar = tar_of(&[("a", 5), ("b", 600)]);
        assert_eq!(run(&tar).unwrap(), tar);
        let mut padded = tar.clone();
        padded.extend_from_slice(&[0; 9000]);
        assert_eq!(run(&padded).unwrap(), padded);
        // umoci 0.4.7: no padding after the last content, no end blocks.
        let short = &tar[..512 + 512 + 512 + 600];
        assert_eq!(run(short).unwrap(), short);
    }

    #[test]
    fn says_where_the_input_is_wrong() {
        let tar = tar_of(&[("a", 5), ("b", 600)]);
        assert_eq!(error(&tar[..1124]), "in: truncated tar at byte 1124");
        assert_eq!(error(&tar[..1024 + 512 + 10]), "in: truncated tar at byte 1546");
        let mut bad = tar.clone();
        bad[1024] ^= 1;
        assert!(
            error(&bad).starts_with("in: bad tar header at byte 1024: "),
            "{}",
            error(&bad)
        );
        let mut trailing = tar.clone();
        trailing[tar.len() - 3] = 1;
        assert_eq!(
            error(&trailing),
            format!(
                "in: trailing garbage after the end of the tar at byte {} (only zeros may follow)",
                tar.len() - 3
            )
        );
        assert!(error(b"").starts_with("in: empty input"));
    }

    #[test]
    fn caps_the_headers_of_one_entry() {
        let mut b = tar::Builder::new(Vec::new());
        let long = vec![b'n'; (common::tarread::MAX_EXTENDED_HEADER + 10) as usize];
        b.append_pax_extensions([("comment", &long[..])]).unwrap();
        let tar = b.into_inner().unwrap();
        // One record: "1048603 comment=" (16 bytes), 1 MiB + 10 bytes of value, "\n".
        assert_eq!(
            error(&tar),
            "in: bad tar header at byte 0: reading tar entry 1: a PAX extended header of 1048603 bytes at byte 0, more than the 1 MiB accepted"
        );
    }
}
