//! Reading layer tars: the entries of a tar stream as the [`Entry`] model, with what tar-rs
//! leaves out or gets wrong for layers (base-256 device numbers, PAX mtimes, a tar that ends
//! without padding, names longer than PATH_MAX, GNU's PAX sparse files). The mirror of
//! `tarwrite`.
//!
//! A layer must mean to us what it means to docker and containerd, which read it with Go's
//! archive/tar. Where tar-rs and Go read the same header differently, the entry is read as Go
//! reads it when tar-rs's framing agrees, and refused otherwise, naming it:
//! - a size on an entry that has no data (directory, link, device, fifo): Go reads the next
//!   header right after it, tar-rs skips that many bytes first, so the two see different
//!   entries (a layer could hide files from our diff and validation that docker unpacks);
//! - a PAX `path`, `linkpath` or `size` record given twice (tar-rs takes the first, Go the
//!   last), or a PAX `size` that Go parses differently (`abc`, `-0`: tar-rs falls back to the
//!   header's size, Go refuses or reads 0);
//! - an empty PAX `path` or `linkpath`, or an empty GNU long name, counts as absent, as in Go
//!   (tar-rs would take the empty name);
//! - a pre-POSIX regular entry (typeflag NUL) whose name ends in `/` is a directory, as in Go;
//! - PAX headers and GNU long names are capped at [`MAX_EXTENDED_HEADER`] before tar-rs holds
//!   them in memory, as Go caps them;
//! - `GNU.sparse.*` records are read as Go reads them ([`crate::sparse`]); `GNU.volume.*`
//!   records (a piece of a multi-volume archive, whose content starts elsewhere) are refused.

use crate::entry::{Entry, Kind, Meta};
use crate::path::{MAX_PATH, display, normalize};
use crate::sparse::{self, SparseHeader, SparseReader};
use anyhow::{Context, bail};
use std::borrow::Cow;
use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::rc::Rc;

/// The largest PAX extended header or GNU long name or link accepted, in bytes: Go's archive/tar
/// refuses larger ones (`maxSpecialFileSize`), and tar-rs would hold any size in memory.
pub const MAX_EXTENDED_HEADER: u64 = 1 << 20;

/// An entry's PAX records, as `(key, value)` in archive order.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads the entry a tar header describes, and for a sparse file how its content is laid out.
/// Returns `None` for entries that carry no file (PAX global headers). Unknown entry types,
/// GNU's old sparse entries and headers tar readers disagree on are refused.
fn read_entry<R: Read>(e: &mut tar::Entry<'_, R>) -> crate::Result<Option<(Entry, Option<SparseHeader>)>> {
    use tar::EntryType as T;
    // A global header's records describe the archive, not an entry (GNU tar -V puts its volume
    // label there): skipped unread, as docker and containerd skip them.
    if e.header().entry_type() == T::XGlobalHeader {
        return Ok(None);
    }
    let records: io::Result<Records> = match e.pax_extensions() {
        Ok(Some(pax)) => pax
            .map(|r| r.map(|r| (r.key_bytes().to_vec(), r.value_bytes().to_vec())))
            .collect(),
        Ok(None) => Ok(Vec::new()),
        Err(err) => Err(err),
    };
    let records = records.with_context(|| format!("{}: bad PAX header", head(&e.path_bytes())))?;
    let h = e.header();
    let name = go_name(e.path_bytes(), record(&records, b"path"), h.path_bytes());
    let shown = head(&name);
    for key in ["path", "linkpath", "size"] {
        if records.iter().filter(|(k, _)| k == key.as_bytes()).count() > 1 {
            bail!("{shown}: PAX record {key} given twice (tar readers differ on which one counts)");
        }
    }
    if let Some((key, _)) = records.iter().find(|(k, _)| k.starts_with(b"GNU.volume.")) {
        bail!(
            "{shown}: PAX record {}: a piece of a multi-volume archive, whose content starts in another volume",
            String::from_utf8_lossy(key)
        );
    }
    if let Some(value) = record(&records, b"size").filter(|v| !v.is_empty()) {
        let size = sparse::decimal(value).with_context(|| format!("{shown}: bad PAX size"))?;
        if size != e.size() {
            bail!(
                "{shown}: PAX size {:?} is read as {size} by Go's archive/tar and as {} by tar-rs",
                String::from_utf8_lossy(value),
                e.size()
            );
        }
    }
    let mut entry_type = h.entry_type();
    // Before POSIX, a directory was a regular entry named with a trailing slash.
    if h.as_old().linkflag[0] == 0 && name.ends_with(b"/") {
        entry_type = T::Directory;
    }
    let kind = match entry_type {
        T::Regular | T::Continuous | T::Link => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        T::Char => Kind::Char,
        T::Block => Kind::Block,
        T::Fifo => Kind::Fifo,
        T::GNUSparse => bail!(
            "{shown}: an old GNU sparse entry (typeflag 'S'), which docker, containerd and umoci refuse too (GNU tar writes sparse files layers can hold with --format=posix)"
        ),
        other => bail!(
            "{shown}: unsupported tar entry type {:?}",
            other.as_byte() as char
        ),
    };
    let is_link = entry_type == T::Link;
    if (kind != Kind::File || is_link) && e.size() != 0 {
        bail!(
            "{shown}: a {} entry carrying {} bytes of data: Go's archive/tar reads the next header right after it, tar-rs skips them, so readers disagree on what follows",
            if is_link { "hard link" } else { kind_name(kind) },
            e.size()
        );
    }
    let sparse = sparse::from_pax(
        entry_type,
        e.size(),
        records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
    )
    .with_context(|| shown.clone())?;
    let raw_path = sparse.as_ref().and_then(|s| s.name()).unwrap_or(&name);
    if raw_path.len() > MAX_PATH {
        bail!(
            "/{}: a path of {} bytes, longer than PATH_MAX ({MAX_PATH}); no Linux file system can hold it",
            head(raw_path),
            raw_path.len()
        );
    }
    let shown = String::from_utf8_lossy(raw_path).into_owned();
    let mut meta = Meta::new(
        kind,
        h.mode().with_context(|| format!("{shown}: bad mode"))? & 0o7777,
    );
    meta.uid =
        id("uid", h.uid().with_context(|| format!("{shown}: bad uid"))?).with_context(|| shown.clone())?;
    meta.gid =
        id("gid", h.gid().with_context(|| format!("{shown}: bad gid"))?).with_context(|| shown.clone())?;
    let mtime = h.mtime().with_context(|| format!("{shown}: bad mtime"))?;
    // tar-rs reads base-256 as the field's last 8 bytes: a negative time (pre-1970, first
    // byte 0xff) is then its two's complement, as Go reads it; a positive one past i64 is not
    // a time any file system has.
    meta.mtime = if h.as_old().mtime[0] & 0xc0 == 0xc0 {
        mtime as i64
    } else {
        i64::try_from(mtime).map_err(|_| anyhow::anyhow!("{shown}: mtime {mtime} out of range"))?
    };
    meta.size = match (&sparse, kind) {
        (Some(s), _) => s.real_size(),
        (None, Kind::File) if !is_link => e.size(),
        _ => 0,
    };
    if matches!(kind, Kind::Char | Kind::Block) {
        let (major, minor) = match (h.as_ustar(), h.as_gnu()) {
            (Some(u), _) => (u.dev_major, u.dev_minor),
            (None, Some(g)) => (g.dev_major, g.dev_minor),
            (None, None) => bail!("{shown}: a device in a pre-POSIX tar header, which has no device numbers"),
        };
        meta.rdev = (
            device_number(&major).with_context(|| format!("{shown}: bad device major number"))?,
            device_number(&minor).with_context(|| format!("{shown}: bad device minor number"))?,
        );
    }
    let link_name = go_name(
        e.link_name_bytes().unwrap_or_default(),
        record(&records, b"linkpath"),
        h.link_name_bytes().unwrap_or_default(),
    );
    for (key, value) in &records {
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            meta.xattrs_mut().insert(name.to_vec(), value.to_vec());
        }
    }
    // The last record counts, and an empty one leaves the header's value, as Go reads them.
    let text = |key: &[u8]| {
        record(&records, key)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    if let Some(t) = text(b"mtime") {
        let (secs, nsec) = parse_pax_time(&t).with_context(|| format!("{shown}: bad PAX mtime"))?;
        meta.mtime = secs;
        meta.mtime_nsec = nsec;
    }
    if let Some(t) = text(b"uid") {
        let v = t.parse().with_context(|| format!("{shown}: bad PAX uid"))?;
        meta.uid = id("uid", v).with_context(|| format!("{shown}: PAX uid"))?;
    }
    if let Some(t) = text(b"gid") {
        let v = t.parse().with_context(|| format!("{shown}: bad PAX gid"))?;
        meta.gid = id("gid", v).with_context(|| format!("{shown}: PAX gid"))?;
    }
    let path = normalize(raw_path).with_context(|| format!("entry {shown:?}"))?;
    let mut link = None;
    match (kind, is_link) {
        (_, true) => {
            if link_name.is_empty() {
                bail!("{shown}: hard link without a target");
            }
            let target = normalize(&link_name).with_context(|| format!("{shown}: hard link target"))?;
            if target.is_empty() {
                bail!("{shown}: hard link to the root directory");
            }
            link = Some(target);
        }
        (Kind::Symlink, _) => {
            if link_name.is_empty() {
                bail!("{shown}: symlink without a target");
            }
            meta.size = link_name.len() as u64;
            meta.set_target(Some(link_name.into_owned()));
        }
        _ => {}
    }
    Ok(Some((Entry { path, meta, link }, sparse)))
}

/// A name (or link target) as Go's archive/tar reads it: the GNU long one, else the PAX record,
/// else the header's, each only when not empty. tar-rs gives the same order (`by_tar_rs`) but
/// takes an empty long name or PAX record as the name; duplicated records are refused before.
fn go_name<'a>(by_tar_rs: Cow<'a, [u8]>, pax: Option<&'a [u8]>, header: Cow<'a, [u8]>) -> Cow<'a, [u8]> {
    if !by_tar_rs.is_empty() {
        return by_tar_rs;
    }
    // tar-rs's choice is empty: an empty long name (Go: the PAX record, else the header's) or
    // an empty PAX record (Go: the header's).
    match pax {
        Some(p) if !p.is_empty() => Cow::Borrowed(p),
        _ => header,
    }
}

/// The value of the PAX record `key` (the last one, as in Go).
fn record<'a>(records: &'a Records, key: &[u8]) -> Option<&'a [u8]> {
    records
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

/// The start of a name for an error message (a PAX name may be a megabyte long).
fn head(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    match text.char_indices().nth(64) {
        Some((i, _)) if text.len() > MAX_PATH => format!("{}…", &text[..i]),
        _ => text.into_owned(),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Symlink => "symlink",
        Kind::Char => "character device",
        Kind::Block => "block device",
        Kind::Fifo => "fifo",
    }
}

/// An owner id from a tar header: Linux ids are 32 bits, so a wider one cannot name an owner.
/// (`u32::MAX`, chown's "no change", is refused where owners are set: see `apply`.)
fn id(what: &str, v: u64) -> crate::Result<u32> {
    u32::try_from(v).map_err(|_| anyhow::anyhow!("{what} {v} out of range"))
}

/// Parses a device number field. tar-rs would read a malformed one as an error we could only
/// turn into 0 (a different device), and cuts base-256 values to 32 bits; so the field is read
/// here as Go's archive/tar reads it: octal, or base-256 when the high bit of the first byte is
/// set. Empty (all NUL or space) is 0, as there. Negative and wider-than-32-bit numbers are
/// refused: no kernel has such devices.
fn device_number(field: &[u8; 8]) -> crate::Result<u32> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            bail!("negative (base-256 {})", hex::encode(field));
        }
        let value = field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x3f), |v, b| (v << 8) | u64::from(*b));
        return u32::try_from(value).map_err(|_| anyhow::anyhow!("{value} does not fit in 32 bits"));
    }
    let pad = |b: &u8| *b == 0 || *b == b' ';
    let start = field.iter().position(|b| !pad(b)).unwrap_or(field.len());
    let end = field.iter().rposition(|b| !pad(b)).map_or(start, |i| i + 1);
    let text = &field[start..end];
    if text.is_empty() {
        return Ok(0);
    }
    if !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        bail!("not an octal number: {:?}", String::from_utf8_lossy(text));
    }
    let value = text.iter().fold(0u64, |v, b| (v << 3) | u64::from(b - b'0'));
    u32::try_from(value).map_err(|_| anyhow::anyhow!("{value} does not fit in 32 bits"))
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative).
fn parse_pax_time(s: &str) -> crate::Result<(i64, u32)> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse()?;
    if frac.is_empty() {
        return Ok((secs, 0));
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        bail!("not a number: {s:?}");
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nsec: u32 = digits.parse()?;
    // A negative PAX time counts the fraction towards minus infinity's side of the second.
    if s.starts_with('-') && nsec > 0 {
        Ok((secs - 1, 1_000_000_000 - nsec))
    } else {
        Ok((secs, nsec))
    }
}

/// Calls `f` for each entry of a tar stream, in order, with the entry's index, the model and
/// the entry's content. Errors name the entry.
///
/// A tar that ends right after its last entry's content, without padding or end blocks, is
/// accepted (Debian's umoci 0.4.7 writes such layers; Go's archive/tar reads them); one cut
/// inside an entry's header or content is still refused.
pub fn for_each_entry<R: Read>(
    reader: R,
    mut f: impl FnMut(u64, Entry, &mut Content<'_>) -> crate::Result<()>,
) -> crate::Result<()> {
    let frame = Rc::new(Cell::new((0, 0)));
    let mut archive = tar::Archive::new(ShortEnd {
        inner: reader,
        pos: 0,
        frame: frame.clone(),
        headers_from: 0,
        next_header: Some(0),
        block: [0; BLOCK as usize],
    });
    let entries = archive.entries().context("reading tar")?;
    for (i, e) in (0u64..).zip(entries) {
        let mut e = e.with_context(|| format!("reading tar entry {}", i + 1))?;
        // The entry's data in the archive (for a sparse file, its map and packed data).
        let end = e.raw_file_position() + e.size();
        frame.set((end, end.next_multiple_of(BLOCK)));
        let Some((model, sparse)) = read_entry(&mut e)? else {
            continue;
        };
        let shown = display(&model.path);
        let data: &mut dyn Read = &mut e;
        let mut content = match sparse {
            None => Content::Plain { data, pos: 0 },
            Some(s) => Content::Sparse(s.reader(data).with_context(|| shown.clone())?),
        };
        f(i, model, &mut content).with_context(|| shown)?;
    }
    Ok(())
}

/// One entry's content, as [`for_each_entry`] hands it out. It reads as the file's bytes, a
/// sparse file's with zeros for its holes (time grows with its real size);
/// [`Content::write_into`] and [`Content::read_data`] take only the data and leave the holes
/// out (time and space grow with the data).
pub enum Content<'a> {
    Plain { data: &'a mut dyn Read, pos: u64 },
    Sparse(SparseReader<&'a mut dyn Read>),
}

impl Read for Content<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Content::Plain { data, pos } => {
                let n = data.read(buf)?;
                *pos += n as u64;
                Ok(n)
            }
            Content::Sparse(s) => s.read(buf),
        }
    }
}

impl Content<'_> {
    /// Reads the content not read yet, handing each piece of data to `sink` with its offset in
    /// the file, through `buf`; a sparse file's holes are skipped, never made up. Returns the
    /// content's length (a sparse file's real size).
    pub fn read_data(
        &mut self,
        buf: &mut [u8],
        mut sink: impl FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        match self {
            Content::Plain { data, pos } => loop {
                let n = match data.read(buf) {
                    Ok(0) => return Ok(*pos),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                sink(*pos, &buf[..n])?;
                *pos += n as u64;
            },
            Content::Sparse(s) => {
                s.read_data(buf, sink)?;
                Ok(s.real_size())
            }
        }
    }

    /// Writes the content not read yet into `file` at offset `at` (0 for a new file, the end
    /// of a spool), with positional writes: a sparse file's holes are not written, so they stay
    /// holes on disk, as Go's archive/tar leaves them. The file then ends no earlier than the
    /// content. Returns the content's length.
    pub fn write_into(&mut self, file: &File, at: u64, buf: &mut [u8]) -> io::Result<u64> {
        let mut written_end = at;
        let len = self.read_data(buf, |offset, data| {
            file.write_all_at(data, at + offset)?;
            written_end = at + offset + data.len() as u64;
            Ok(())
        })?;
        // A hole at the end is never written: the file's length covers it.
        if written_end < at + len {
            file.set_len(at + len)?;
        }
        Ok(len)
    }
}

const BLOCK: u64 = 512;

/// The reader tar-rs parses in [`for_each_entry`]:
/// - when the input ends after the current entry's content but before its padding, it makes up
///   the padding as zeros (for the parser only: they are not part of the layer), so that a clean
///   end at a header boundary is then the end of the archive;
/// - it reads the headers tar-rs reads between two entries as they go by, and refuses a PAX
///   header or GNU long name larger than [`MAX_EXTENDED_HEADER`] before tar-rs reads it into
///   memory.
struct ShortEnd<R> {
    inner: R,
    pos: u64,
    /// The current entry's content end and padded end, set as each entry is returned.
    frame: Rc<Cell<(u64, u64)>>,
    /// The padded end the headers are watched from (the next entry's first header is there).
    headers_from: u64,
    /// Where the next header block tar-rs reads starts, while tar-rs reads headers.
    next_header: Option<u64>,
    /// That header block, as it is read.
    block: [u8; BLOCK as usize],
}

impl<R: Read> Read for ShortEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = self.inner.read(buf)?;
        let (content_end, padded_end) = self.frame.get();
        if n == 0 && self.pos >= content_end && self.pos < padded_end {
            n = buf.len().min((padded_end - self.pos) as usize);
            buf[..n].fill(0);
        }
        if padded_end > self.headers_from {
            self.headers_from = padded_end;
            self.next_header = Some(padded_end);
        }
        self.watch_headers(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R> ShortEnd<R> {
    /// Follows the header blocks in `data` (read at `self.pos`): an extended header (PAX `x`,
    /// GNU `L`, `K`) is checked against the cap and followed to the header after its content;
    /// any other header is the entry's own, which tar-rs hands to [`for_each_entry`].
    fn watch_headers(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(at) = self.next_header else {
            return Ok(());
        };
        let (start, end) = (self.pos, self.pos + data.len() as u64);
        if end <= at || start >= at + BLOCK {
            return Ok(());
        }
        let from = start.max(at);
        let to = end.min(at + BLOCK);
        self.block[(from - at) as usize..(to - at) as usize]
            .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
        if to < at + BLOCK {
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(&self.block);
        let what = match header.as_old().linkflag[0] {
            b'x' => "PAX extended header",
            b'L' => "GNU long name",
            b'K' => "GNU long link name",
            _ => {
                self.next_header = None;
                return Ok(());
            }
        };
        // A malformed size is tar-rs's to report.
        let Ok(size) = header.entry_size() else {
            self.next_header = None;
            return Ok(());
        };
        if size > MAX_EXTENDED_HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a {what} of {size} bytes at byte {at}, more than the {} MiB accepted",
                    MAX_EXTENDED_HEADER >> 20
                ),
            ));
        }
        self.next_header = Some(at + BLOCK + size.next_multiple_of(BLOCK));
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn refuses_paths_longer_than_path_max() {
        let read = |len: usize| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            // A GNU long name: tar-rs writes one for a path of more than 100 bytes.
            let path = "d/".repeat(len / 2) + &"f".repeat(len % 2 + 1);
            let path = path[..len - 1].to_string() + "f";
            b.append_data(&mut h, &path, &[][..]).unwrap();
            let tar = b.into_inner().unwrap();
            let mut archive = tar::Archive::new(&tar[..]);
            let mut e = archive.entries().unwrap().next().unwrap().unwrap();
            read_entry(&mut e).map(|m| m.map(|(m, _)| m.path.len()))
        };
        assert_eq!(read(MAX_PATH).unwrap(), Some(MAX_PATH));
        let err = format!("{:#}", read(MAX_PATH + 1).unwrap_err());
        assert!(
            err.contains("a path of 4097 bytes, longer than PATH_MAX (4096)"),
            "{err}"
        );
        assert!(err.len() < 200, "the message quotes the path whole: {err}");
    }

    #[test]
    fn reads_base_256_mtimes_as_go_does() {
        let read = |field: [u8; 12]| {
            let mut h = tar::Header::new_gnu();
            h.set_path("f").unwrap();
            h.set_mode(0o644);
            h.set_size(0);
            h.set_uid(0);
            h.set_gid(0);
            h.as_old_mut().mtime = field;
            h.set_cksum();
            let mut tar = h.as_bytes().to_vec();
            tar.resize(512 * 3, 0);
            let mut a = tar::Archive::new(tar.as_slice());
            let mut e = a.entries().unwrap().next().unwrap().unwrap();
            read_entry(&mut e).map(|e| e.unwrap().0.meta.mtime)
        };
        let mut minus_one = [0xff; 12];
        assert_eq!(read(minus_one).unwrap(), -1);
        minus_one[11] = 0xfe;
        assert_eq!(read(minus_one).unwrap(), -2);
        // 2^63 seconds: wraps to a negative time when cast, refused instead.
        let too_late = [0x80, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0];
        let err = format!("{:#}", read(too_late).unwrap_err());
        assert!(err.contains("f: mtime 9223372036854775808 out of range"), "{err}");
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 7;
        assert_eq!(read(big).unwrap(), 7);
    }

    #[test]
    fn parses_pax_times() {
        assert_eq!(parse_pax_time("12.5").unwrap(), (12, 500_000_000));
        assert_eq!(parse_pax_time("-1.25").unwrap(), (-2, 750_000_000));
    }

    /// One device entry of type `kind` whose major and minor fields hold these raw bytes.
    fn device_tar(kind: tar::EntryType, major: [u8; 8], minor: [u8; 8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path("dev/x").unwrap();
        h.set_entry_type(kind);
        h.set_mode(0o600);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let u = h.as_ustar_mut().unwrap();
        u.dev_major = major;
        u.dev_minor = minor;
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.resize(512 * 3, 0);
        out
    }

    fn read_device(kind: tar::EntryType, major: [u8; 8], minor: [u8; 8]) -> crate::Result<(u32, u32)> {
        let tar = device_tar(kind, major, minor);
        let mut a = tar::Archive::new(tar.as_slice());
        let mut e = a.entries()?.next().unwrap()?;
        Ok(read_entry(&mut e)?.unwrap().0.meta.rdev)
    }

    #[test]
    fn reads_device_numbers_as_go_does() {
        use tar::EntryType::{Block, Char};
        assert_eq!(read_device(Char, *b"0000001\0", *b"0000003\0").unwrap(), (1, 3));
        // Space or NUL padding on either side, and an empty field (0), as Go reads them.
        assert_eq!(
            read_device(Block, *b"  10   \0", *b"\0\0\0\0\0\0\0\0").unwrap(),
            (8, 0)
        );
        // Base-256, as Go and GNU tar write numbers that do not fit in octal.
        let big = [0x80, 0, 0, 0, 0, 0x12, 0x34, 0x56];
        assert_eq!(read_device(Char, big, *b"0000000\0").unwrap(), (0x123456, 0));
    }

    #[test]
    fn refuses_malformed_device_numbers_naming_the_entry() {
        use tar::EntryType::Char;
        let ok = *b"0000001\0";
        let cases: [([u8; 8], [u8; 8], &str); 5] = [
            (*b"12x4\0\0\0\0", ok, "major"),
            (ok, *b"0009\0\0\0\0", "minor"),
            (ok, *b"1 2\0\0\0\0\0", "minor"),
            // Negative in base-256 (Go's -1).
            ([0xff; 8], ok, "negative"),
            // 2^32 in base-256: wider than any device number.
            ([0x80, 0, 0, 1, 0, 0, 0, 0], ok, "32 bits"),
        ];
        for (major, minor, why) in cases {
            let err = format!("{:#}", read_device(Char, major, minor).unwrap_err());
            assert!(err.contains("dev/x") && err.contains(why), "{err}");
        }
    }

    /// A ustar archive of regular files, mode 0644, owned by root, mtime 0.
    pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn names(tar: &[u8]) -> crate::Result<Vec<String>> {
        let mut out = Vec::new();
        for_each_entry(tar, |_, e, content| {
            let mut data = Vec::new();
            content.read_to_end(&mut data)?;
            out.push(format!("{}={}", String::from_utf8_lossy(&e.path), data.len()));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn accepts_a_tar_without_end_padding_but_not_a_cut_one() {
        let tar = tar_of(&[("a", b"hello"), ("b", b"world!")]);
        // Header, 5 bytes and their padding, header, 6 bytes: where umoci 0.4.7 stops.
        let short = &tar[..512 + 512 + 512 + 6];
        assert_eq!(names(short).unwrap(), ["a=5", "b=6"]);
        assert_eq!(names(&tar).unwrap(), ["a=5", "b=6"]);
        for cut in [512 + 512 + 512 + 5, 512 + 512 + 100, 512 + 3, 100] {
            assert!(names(&tar[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    /// A raw header block: tar-rs's Builder would not write the odd headers these tests need.
    fn header(name: &[u8], flag: u8, size: u64, link: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h.as_old_mut().linkflag = [flag];
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    /// A header and its data, padded to whole blocks.
    pub(crate) fn member(name: &[u8], flag: u8, link: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = header(name, flag, data.len() as u64, link);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
        out
    }

    /// A PAX extended header for the next entry, records in this order (tar-rs writes them as
    /// given, duplicates and empty values included).
    pub(crate) fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions(records.iter().copied()).unwrap();
        b.get_ref().clone()
    }

    pub(crate) fn tar(members: &[Vec<u8>]) -> Vec<u8> {
        let mut out = members.concat();
        out.resize(out.len() + 1024, 0);
        out
    }

    /// Each entry as `path kind size [-> link or target] =content`.
    fn list(tar: &[u8]) -> crate::Result<Vec<String>> {
        let mut out = Vec::new();
        for_each_entry(tar, |_, e, content| {
            let mut data = Vec::new();
            content.read_to_end(&mut data)?;
            let link = e.link.as_deref().or(e.meta.target()).unwrap_or_default();
            out.push(format!(
                "{} {:?} {}{}{}",
                String::from_utf8_lossy(&e.path),
                e.meta.kind,
                e.meta.size,
                if link.is_empty() {
                    String::new()
                } else {
                    format!(" -> {}", String::from_utf8_lossy(link))
                },
                if data.is_empty() {
                    String::new()
                } else {
                    format!(" ={}", String::from_utf8_lossy(&data))
                },
            ));
            Ok(())
        })?;
        Ok(out)
    }

    fn refused(tar: &[u8]) -> String {
        match list(tar) {
            Ok(entries) => panic!("accepted: {entries:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn refuses_data_on_entries_that_have_none() {
        // Go's archive/tar (docker) reads `hidden` right after the directory's header; tar-rs
        // skips 1024 bytes and sees only `visible`.
        for (flag, name, link, kind) in [
            (b'5', &b"d/"[..], &b""[..], "directory"),
            (b'2', b"s", b"target", "symlink"),
            (b'1', b"h", b"visible", "hard link"),
            (b'3', b"c", b"", "character device"),
            (b'4', b"b", b"", "block device"),
            (b'6', b"p", b"", "fifo"),
            // A pre-POSIX regular entry named with a slash: a directory, for Go too.
            (0, b"old/", b"", "directory"),
        ] {
            let hiding = tar(&[
                member(b"visible", b'0', b"", b""),
                header(name, flag, 1024, link),
                member(b"hidden", b'0', b"", b"x"),
                member(b"visible", b'0', b"", b""),
            ]);
            let err = refused(&hiding);
            let shown = String::from_utf8_lossy(name);
            assert!(
                err.contains(&format!("{shown}: a {kind} entry carrying 1024 bytes of data")),
                "{err}"
            );
        }
        // Without data they are read (the pre-POSIX one as a directory, as Go reads it).
        let fine = tar(&[member(b"old/", 0, b"", b""), member(b"s", b'2', b"t", b"")]);
        assert_eq!(list(&fine).unwrap(), ["old Dir 0", "s Symlink 1 -> t"]);
    }

    #[test]
    fn refuses_pax_records_tar_readers_read_differently() {
        let file = member(b"f", b'0', b"", b"12345");
        for (records, why) in [
            (
                &[("path", &b"a"[..]), ("path", b"b")][..],
                "PAX record path given twice",
            ),
            (
                &[("linkpath", b"a"), ("linkpath", b"b")],
                "PAX record linkpath given twice",
            ),
            (&[("size", b"5"), ("size", b"5")], "PAX record size given twice"),
            (
                &[("size", b"abc")],
                "bad PAX size: \"abc\" is not a decimal number",
            ),
            (&[("size", b"-1")], "bad PAX size: \"-1\" is negative"),
            (&[("size", b"99999999999999999999")], "out of range"),
            // Go reads 0; tar-rs cannot parse it and keeps the header's 5.
            (
                &[("size", b"-0")],
                "PAX size \"-0\" is read as 0 by Go's archive/tar and as 5 by tar-rs",
            ),
            (
                &[("GNU.volume.offset", b"100")],
                "PAX record GNU.volume.offset: a piece of a multi-volume archive",
            ),
        ] {
            let err = refused(&tar(&[pax(records), file.clone()]));
            assert!(err.starts_with("f: ") || err.starts_with("a: "), "{err}");
            assert!(err.contains(why), "{why}: {err}");
        }
        // What both read alike: a '+' sign, an empty value (the header's size is kept).
        for size in [&b"+5"[..], b""] {
            assert_eq!(
                list(&tar(&[pax(&[("size", size)]), file.clone()])).unwrap(),
                ["f File 5 =12345"]
            );
        }
    }

    #[test]
    fn empty_names_in_pax_records_or_long_names_count_as_absent() {
        let entries = tar(&[
            pax(&[("path", b""), ("uid", b""), ("mtime", b"")]),
            member(b"real", b'0', b"", b"x"),
            pax(&[("linkpath", b"")]),
            member(b"s", b'2', b"target", b""),
            // An empty GNU long name (just its NUL), then a PAX path: Go takes the PAX one.
            member(b"././@LongLink", b'L', b"", b"\0"),
            pax(&[("path", b"from-pax")]),
            member(b"header", b'0', b"", b""),
            member(b"././@LongLink", b'L', b"", b""),
            member(b"plain", b'0', b"", b""),
        ]);
        assert_eq!(
            list(&entries).unwrap(),
            [
                "real File 1 =x",
                "s Symlink 6 -> target",
                "from-pax File 0",
                "plain File 0"
            ]
        );
    }

    #[test]
    fn skips_global_headers_unread() {
        // `tar -V label --format=posix` writes the label as a global record.
        let records = pax(&[("GNU.volume.label", b"backup"), ("path", b"a"), ("path", b"b")]);
        let size = tar::Header::from_byte_slice(&records[..512])
            .entry_size()
            .unwrap();
        let body = &records[512..512 + size as usize];
        let global = member(b"pax_global_header", b'g', b"", body);
        let entries = tar(&[global, member(b"f", b'0', b"", b"x")]);
        assert_eq!(list(&entries).unwrap(), ["f File 1 =x"]);
    }

    /// A reader that counts what it hands out.
    struct Counting<R>(R, Rc<Cell<u64>>);

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.set(self.1.get() + n as u64);
            Ok(n)
        }
    }

    #[test]
    fn caps_extended_headers_before_reading_them() {
        let cap = MAX_EXTENDED_HEADER;
        for (flag, what) in [
            (b'x', "a PAX extended header"),
            (b'L', "a GNU long name"),
            (b'K', "a GNU long link name"),
        ] {
            // A header announcing 64 GiB, then 8 MiB: refused once its header is read (tar-rs
            // alone would read the 8 MiB into memory, and fail only where the input ends).
            let head = header(b"././@LongLink", flag, 64 << 30, b"");
            let read = Rc::new(Cell::new(0));
            let before = member(b"before", b'0', b"", b"x");
            let rest = io::repeat(b'a').take(8 << 20);
            let input = Counting(before[..].chain(&head[..]).chain(rest), read.clone());
            let err = format!("{:#}", for_each_entry(input, |_, _, _| Ok(())).unwrap_err());
            assert!(
                err.contains(&format!(
                    "{what} of 68719476736 bytes at byte 1024, more than the 1 MiB accepted"
                )),
                "{err}"
            );
            assert!(read.get() < 2 * cap, "{} bytes read", read.get());
        }
        // At the cap, a PAX header and a long name for one entry are read.
        let long = "n".repeat(200);
        let mut name = long.clone().into_bytes();
        name.push(0);
        let comment = vec![b'c'; cap as usize - 20];
        let at_cap = tar(&[
            member(b"././@LongLink", b'L', b"", &name),
            pax(&[("comment", &comment)]),
            member(b"short", b'0', b"", b"x"),
        ]);
        assert_eq!(list(&at_cap).unwrap(), [format!("{long} File 1 =x")]);
        let over = tar(&[
            pax(&[("comment", &vec![b'c'; cap as usize])]),
            member(b"f", b'0', b"", b""),
        ]);
        assert!(refused(&over).contains("more than the 1 MiB accepted"));
    }

    #[test]
    fn reads_pax_sparse_files_with_their_holes() {
        // Format 0.1: "abcde" at 2 and 1 MiB - 3, the file 1 MiB long.
        let records: &[(&str, &[u8])] = &[
            ("GNU.sparse.major", b"0"),
            ("GNU.sparse.minor", b"1"),
            ("GNU.sparse.name", b"var/real"),
            ("GNU.sparse.size", b"1048576"),
            ("GNU.sparse.numblocks", b"2"),
            ("GNU.sparse.map", b"2,2,1048573,3"),
        ];
        let layer = tar(&[
            pax(records),
            member(b"var/GNUSparseFile.1/real", b'0', b"", b"abcde"),
            member(b"after", b'0', b"", b"z"),
        ]);
        let mut expected = vec![0u8; 1 << 20];
        expected[2..4].copy_from_slice(b"ab");
        expected[(1 << 20) - 3..].copy_from_slice(b"cde");
        let mut seen = Vec::new();
        for_each_entry(&layer[..], |_, e, content| {
            let mut data = Vec::new();
            content.read_to_end(&mut data)?;
            seen.push((String::from_utf8_lossy(&e.path).into_owned(), e.meta.size, data));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].0.as_str(), seen[0].1), ("var/real", 1 << 20));
        assert!(seen[0].2 == expected, "content with its holes");
        assert_eq!(seen[1], ("after".into(), 1, b"z".to_vec()));

        // Written into a file: the same bytes, and only the data's blocks.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        for_each_entry(&layer[..], |i, _, content| {
            if i == 0 {
                assert_eq!(content.write_into(&file, 0, &mut [0; 7])?, 1 << 20);
            }
            Ok(())
        })
        .unwrap();
        assert!(std::fs::read(&path).unwrap() == expected);
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&path).unwrap().blocks();
        assert!(
            blocks <= 2 * 8,
            "{blocks} blocks of 512 bytes for 5 bytes of data"
        );

        // A bad map names the real file.
        let bad = tar(&[
            pax(&[
                ("GNU.sparse.major", b"1"),
                ("GNU.sparse.minor", b"0"),
                ("GNU.sparse.name", b"var/real"),
                ("GNU.sparse.realsize", b"10"),
            ]),
            member(b"var/GNUSparseFile.1/real", b'0', b"", &{
                let mut map = b"1\n20\n5\n".to_vec();
                map.resize(512, 0);
                map.extend_from_slice(b"abcde");
                map
            }),
        ]);
        let err = refused(&bad);
        assert!(
            err.starts_with("/var/real: ") && err.contains("past the file's size, 10"),
            "{err}"
        );
    }
}
