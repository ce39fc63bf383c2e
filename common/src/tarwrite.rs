//! The deterministic tar writer every tool uses.
//!
//! Headers are built here, field by field, rather than by `tar::Builder`: its defaults (sparse
//! files, following symlinks, readdir order, host user names, GNU long-name records) would make
//! layers differ between machines. What we write: ustar headers with PAX records only where
//! ustar cannot hold a value (long names, big ids, sizes or times, xattrs as
//! `SCHILY.xattr.NAME`); no atime/ctime, no user or group names; mtimes in whole seconds,
//! clamped to `SOURCE_DATE_EPOCH` when it is set; two zero blocks at the end.
//!
//! Files are written whole, never as sparse entries: a sparse file read from a layer (GNU's PAX
//! formats, see `sparse`) comes out as a plain file of its real size, holes as zeros, as
//! `docker export` writes it. image-spec says sparse files SHOULD NOT be used in layers, tar
//! readers disagree on them (tar-rs reads none of GNU's PAX formats), and writing one would
//! need a sparse map in our deterministic format. The price: time and output grow with the
//! real size (a 1 GiB file of holes is 1 GiB of tar), memory does not.

use crate::entry::{Kind, Meta};
use anyhow::{Context, bail};
use std::io::{self, Read, Write};

const BLOCK: usize = 512;
const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_NUM: u64 = 0o77777777777;

/// Writes tar entries in the layerkit format.
pub struct TarWriter<W: Write> {
    out: W,
    clamp: Option<i64>,
    /// Content goes through it: io::copy's 8 KiB would cost a read call per 8 KiB of a file.
    buf: Vec<u8>,
}

/// Size of [`TarWriter::buf`].
const COPY_BUF: usize = 256 << 10;

impl<W: Write> TarWriter<W> {
    /// A writer that clamps mtimes to `SOURCE_DATE_EPOCH` when it is set.
    pub fn new(out: W) -> crate::Result<TarWriter<W>> {
        Ok(TarWriter {
            out,
            clamp: crate::time::source_date_epoch()?,
            buf: Vec::new(),
        })
    }

    /// A writer with an explicit clamp (tests, or tools that read the epoch once).
    pub fn with_clamp(out: W, clamp: Option<i64>) -> TarWriter<W> {
        TarWriter {
            out,
            clamp,
            buf: Vec::new(),
        }
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes one entry. `content` must yield exactly `meta.size` bytes for a regular file;
    /// fewer is an error (the file changed while it was read).
    pub fn entry(&mut self, path: &[u8], meta: &Meta, content: Option<&mut dyn Read>) -> crate::Result<()> {
        let size = if meta.kind == Kind::File { meta.size } else { 0 };
        let link = if meta.kind == Kind::Symlink {
            meta.target()
        } else {
            None
        };
        self.header(path, meta, type_of(meta.kind), size, link)?;
        if size > 0 {
            let Some(content) = content else {
                bail!("{}: no content given", crate::path::display(path))
            };
            let copied = self
                .copy(content, size)
                .with_context(|| format!("{}: reading content", crate::path::display(path)))?;
            if copied != size {
                bail!(
                    "{}: file changed while being read ({copied} of {size} bytes)",
                    crate::path::display(path)
                );
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// Copies up to `size` bytes of `content` to the output; returns how many there were.
    fn copy(&mut self, content: &mut dyn Read, size: u64) -> io::Result<u64> {
        if self.buf.is_empty() {
            self.buf = vec![0; COPY_BUF];
        }
        let mut copied = 0;
        while copied < size {
            let want = self.buf.len().min((size - copied) as usize);
            let n = match content.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&self.buf[..n])?;
            copied += n as u64;
        }
        Ok(copied)
    }

    /// Writes a hard link `path` → `target`; `meta` gives the link header's own fields.
    pub fn hardlink(&mut self, path: &[u8], target: &[u8], meta: &Meta) -> crate::Result<()> {
        self.header(path, meta, tar::EntryType::Link, 0, Some(target))
    }

    /// Writes an OCI whiteout: an empty regular file, mode 0, owned by 0:0, time 0.
    pub fn whiteout(&mut self, path: &[u8]) -> crate::Result<()> {
        self.header(path, &Meta::new(Kind::File, 0), tar::EntryType::Regular, 0, None)
    }

    /// Writes the two zero blocks that end an archive.
    pub fn finish(mut self) -> crate::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(
        &mut self,
        path: &[u8],
        meta: &Meta,
        ty: tar::EntryType,
        size: u64,
        link: Option<&[u8]>,
    ) -> crate::Result<()> {
        let mut name = path.to_vec();
        if meta.kind == Kind::Dir && ty == tar::EntryType::Directory {
            name.push(b'/');
        }
        let mtime = match self.clamp {
            Some(c) => meta.mtime.min(c),
            None => meta.mtime,
        };
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(ty);
        h.set_mode(meta.mode & 0o7777);
        for (key, v, set) in [
            (
                "uid",
                u64::from(meta.uid),
                tar::Header::set_uid as fn(&mut tar::Header, u64),
            ),
            ("gid", u64::from(meta.gid), tar::Header::set_gid),
        ] {
            if v > USTAR_MAX_ID {
                pax.push((key.into(), v.to_string().into_bytes()));
                set(&mut h, 0);
            } else {
                set(&mut h, v);
            }
        }
        if mtime < 0 || mtime as u64 > USTAR_MAX_NUM {
            pax.push((b"mtime".to_vec(), mtime.to_string().into_bytes()));
            h.set_mtime(0);
        } else {
            h.set_mtime(mtime as u64);
        }
        if size > USTAR_MAX_NUM {
            pax.push((b"size".to_vec(), size.to_string().into_bytes()));
            h.set_size(0);
        } else {
            h.set_size(size);
        }
        if matches!(meta.kind, Kind::Char | Kind::Block) {
            h.set_device_major(meta.rdev.0)?;
            h.set_device_minor(meta.rdev.1)?;
        }
        if !set_ustar_name(&mut h, &name) {
            pax.push((b"path".to_vec(), name.clone()));
            h.as_old_mut().name.copy_from_slice(&fixed::<100>(&name));
        }
        if let Some(link) = link {
            if link.len() <= 100 {
                h.as_old_mut().linkname.copy_from_slice(&fixed::<100>(link));
            } else {
                pax.push((b"linkpath".to_vec(), link.to_vec()));
                h.as_old_mut().linkname.copy_from_slice(&fixed::<100>(link));
            }
        }
        for (k, v) in meta.xattrs() {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.push((key, v.clone()));
        }
        if !pax.is_empty() {
            self.pax_header(&name, &pax)?;
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        Ok(())
    }

    fn pax_header(&mut self, name: &[u8], records: &[(Vec<u8>, Vec<u8>)]) -> crate::Result<()> {
        let mut body = Vec::new();
        for (k, v) in records {
            // "LEN KEY=VALUE\n", where LEN counts its own digits too.
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} ").as_bytes());
            body.extend_from_slice(k);
            body.push(b'=');
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        let mut pax_name = b"PaxHeaders/".to_vec();
        pax_name.extend_from_slice(crate::path::basename(name.strip_suffix(b"/").unwrap_or(name)));
        h.as_old_mut().name.copy_from_slice(&fixed::<100>(&pax_name));
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(&body)?;
        self.pad(body.len() as u64)
    }

    fn pad(&mut self, size: u64) -> crate::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }
}

fn type_of(kind: Kind) -> tar::EntryType {
    match kind {
        Kind::File => tar::EntryType::Regular,
        Kind::Dir => tar::EntryType::Directory,
        Kind::Symlink => tar::EntryType::Symlink,
        Kind::Char => tar::EntryType::Char,
        Kind::Block => tar::EntryType::Block,
        Kind::Fifo => tar::EntryType::Fifo,
    }
}

/// Puts a name in the ustar name (and prefix) fields; false when it does not fit.
fn set_ustar_name(h: &mut tar::Header, name: &[u8]) -> bool {
    let Some(ustar) = h.as_ustar_mut() else {
        return false;
    };
    if name.len() <= 100 {
        ustar.name.copy_from_slice(&fixed::<100>(name));
        return true;
    }
    // Split at a '/' so that the prefix fits 155 bytes and the rest 100.
    let split = name
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'/' && *i <= 155 && name.len() - i - 1 <= 100 && name.len() - i - 1 > 0)
        .map(|(i, _)| i)
        .next();
    match split {
        Some(i) => {
            ustar.prefix.copy_from_slice(&fixed::<155>(&name[..i]));
            ustar.name.copy_from_slice(&fixed::<100>(&name[i + 1..]));
            true
        }
        None => false,
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = bytes.len().min(N);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::normalize;
    use crate::tarread::for_each_entry;

    fn read_back(bytes: &[u8]) -> Vec<crate::entry::Entry> {
        let mut out = Vec::new();
        for_each_entry(bytes, |_, e, _| {
            out.push(e);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn writes_what_it_reads_back() {
        let mut w = TarWriter::with_clamp(Vec::new(), None);
        let long = normalize(&[b'x'; 300].iter().copied().chain(*b"/f").collect::<Vec<u8>>()).unwrap();
        let mut file = Meta::new(Kind::File, 0o4755);
        file.uid = 3_000_000;
        file.gid = 7;
        file.mtime = 1_700_000_000;
        file.size = 5;
        file.xattrs_mut().insert(b"user.k".to_vec(), b"v\0w".to_vec());
        w.entry(&long, &file, Some(&mut &b"hello"[..])).unwrap();
        let mut dir = Meta::new(Kind::Dir, 0o1777);
        dir.mtime = -5;
        w.entry(b"d", &dir, None).unwrap();
        let mut link = Meta::new(Kind::Symlink, 0o777);
        link.set_target(Some(b"../".repeat(50)));
        w.entry(b"d/l", &link, None).unwrap();
        let mut dev = Meta::new(Kind::Char, 0o600);
        dev.rdev = (1, 3);
        w.entry(b"d/null", &dev, None).unwrap();
        w.hardlink(b"d/h", &long, &file).unwrap();
        w.whiteout(b"d/.wh.gone").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let e = read_back(&bytes);
        assert_eq!(e[0].path, long);
        assert_eq!(e[0].meta, file);
        assert_eq!(e[1].path, b"d");
        assert_eq!(
            (e[1].meta.kind, e[1].meta.mode, e[1].meta.mtime),
            (Kind::Dir, 0o1777, -5)
        );
        assert_eq!(e[2].meta.target(), link.target());
        assert_eq!(e[3].meta.rdev, (1, 3));
        assert_eq!(e[4].link.as_deref(), Some(&long[..]));
        assert_eq!((e[5].path.as_slice(), e[5].meta.size), (&b"d/.wh.gone"[..], 0));
    }

    #[test]
    fn short_content_is_an_error_and_clamp_applies() {
        let mut m = Meta::new(Kind::File, 0o644);
        m.size = 10;
        let mut w = TarWriter::with_clamp(Vec::new(), Some(100));
        assert!(
            w.entry(b"f", &m, Some(&mut &b"abc"[..]))
                .unwrap_err()
                .to_string()
                .contains("changed")
        );
        let mut w = TarWriter::with_clamp(Vec::new(), Some(100));
        m.size = 0;
        m.mtime = 5000;
        w.entry(b"f", &m, None).unwrap();
        assert_eq!(read_back(&w.finish().unwrap())[0].meta.mtime, 100);
    }
}
