//! Reading layer tars: the entries of a tar stream as the [`Entry`] model, with what tar-rs
//! leaves out or gets wrong for layers (base-256 device numbers, PAX mtimes, a tar that ends
//! without padding, names longer than PATH_MAX). The mirror of `tarwrite`.

use crate::entry::{Entry, Kind, Meta};
use crate::path::{MAX_PATH, display, normalize};
use anyhow::{Context, bail};
use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Reads the entry a tar header describes. Returns `None` for entries that carry no file
/// (PAX global headers). Unknown entry types and sparse files are refused.
pub fn from_tar<R: std::io::Read>(e: &mut tar::Entry<'_, R>) -> crate::Result<Option<Entry>> {
    use tar::EntryType as T;
    let raw_path = e.path_bytes().into_owned();
    if raw_path.len() > MAX_PATH {
        let head: String = String::from_utf8_lossy(&raw_path).chars().take(64).collect();
        bail!(
            "/{head}…: a path of {} bytes, longer than PATH_MAX ({MAX_PATH}); no Linux file system can hold it",
            raw_path.len()
        );
    }
    let shown = String::from_utf8_lossy(&raw_path).into_owned();
    let h = e.header();
    let kind = match h.entry_type() {
        T::Regular | T::Continuous | T::Link => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        T::Char => Kind::Char,
        T::Block => Kind::Block,
        T::Fifo => Kind::Fifo,
        T::XGlobalHeader => return Ok(None),
        T::GNUSparse => bail!("{shown}: sparse tar entries are not supported in layers"),
        other => bail!(
            "{shown}: unsupported tar entry type {:?}",
            other.as_byte() as char
        ),
    };
    let is_link = h.entry_type() == T::Link;
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
    meta.size = if kind == Kind::File && !is_link {
        e.size()
    } else {
        0
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
    let link_name = e.link_name_bytes().map(|l| l.into_owned());
    if let Some(pax) = e
        .pax_extensions()
        .with_context(|| format!("{shown}: bad PAX header"))?
    {
        for rec in pax {
            let rec = rec.with_context(|| format!("{shown}: bad PAX record"))?;
            let key = rec.key_bytes();
            let value = rec.value_bytes();
            let text = || String::from_utf8_lossy(value).into_owned();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                meta.xattrs_mut().insert(name.to_vec(), value.to_vec());
            } else if key == b"mtime" {
                let (secs, nsec) =
                    parse_pax_time(&text()).with_context(|| format!("{shown}: bad PAX mtime"))?;
                meta.mtime = secs;
                meta.mtime_nsec = nsec;
            } else if key == b"uid" {
                let v = text().parse().with_context(|| format!("{shown}: bad PAX uid"))?;
                meta.uid = id("uid", v).with_context(|| format!("{shown}: PAX uid"))?;
            } else if key == b"gid" {
                let v = text().parse().with_context(|| format!("{shown}: bad PAX gid"))?;
                meta.gid = id("gid", v).with_context(|| format!("{shown}: PAX gid"))?;
            }
        }
    }
    let path = normalize(&raw_path).with_context(|| format!("entry {shown:?}"))?;
    let mut link = None;
    match (kind, is_link) {
        (_, true) => {
            let target = link_name.with_context(|| format!("{shown}: hard link without a target"))?;
            let target = normalize(&target).with_context(|| format!("{shown}: hard link target"))?;
            if target.is_empty() {
                bail!("{shown}: hard link to the root directory");
            }
            link = Some(target);
        }
        (Kind::Symlink, _) => {
            let target = link_name.with_context(|| format!("{shown}: symlink without a target"))?;
            meta.size = target.len() as u64;
            meta.set_target(Some(target));
        }
        _ => {}
    }
    Ok(Some(Entry { path, meta, link }))
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
/// the entry itself (its content can be read). Errors name the entry.
///
/// A tar that ends right after its last entry's content, without padding or end blocks, is
/// accepted (Debian's umoci 0.4.7 writes such layers; Go's archive/tar reads them); one cut
/// inside an entry's header or content is still refused.
pub fn for_each_entry<R: Read>(
    reader: R,
    mut f: impl FnMut(u64, Entry, &mut dyn Read) -> crate::Result<()>,
) -> crate::Result<()> {
    let bounds = Rc::new(Cell::new((0, 0)));
    let mut archive = tar::Archive::new(ShortEnd {
        inner: reader,
        pos: 0,
        bounds: bounds.clone(),
    });
    let entries = archive.entries().context("reading tar")?;
    for (i, e) in (0u64..).zip(entries) {
        let mut e = e.with_context(|| format!("reading tar entry {}", i + 1))?;
        let end = e.raw_file_position() + e.size();
        bounds.set((end, end.next_multiple_of(512)));
        let Some(model) = from_tar(&mut e)? else {
            continue;
        };
        let shown = display(&model.path);
        f(i, model, &mut e).with_context(|| shown)?;
    }
    Ok(())
}

/// The reader tar-rs parses in [`for_each_entry`]: when the input ends after the current entry's
/// content but before its padding, makes up the padding as zeros (for the parser only: they
/// are not part of the layer). A clean end at a header boundary is then the end of the archive.
struct ShortEnd<R> {
    inner: R,
    pos: u64,
    /// The current entry's content end and padded end, set as each entry is returned.
    bounds: Rc<Cell<(u64, u64)>>,
}

impl<R: Read> Read for ShortEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = self.inner.read(buf)?;
        let (content_end, padded_end) = self.bounds.get();
        if n == 0 && self.pos >= content_end && self.pos < padded_end {
            n = buf.len().min((padded_end - self.pos) as usize);
            buf[..n].fill(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
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
            from_tar(&mut e).map(|m| m.map(|m| m.path.len()))
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
            from_tar(&mut e).map(|e| e.unwrap().meta.mtime)
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
        Ok(from_tar(&mut e)?.unwrap().meta.rdev)
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

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
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
}
