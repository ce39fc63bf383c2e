//! The tar entry model: what one file system entry is, as a layer carries it.
//!
//! Paths are kept as bytes (tar names need not be UTF-8), relative, without `./` or a leading
//! or trailing `/`: `etc/passwd`; the root is the empty path. They sort component by component
//! ([`path_cmp`]), which puts a directory right before its own subtree.

use anyhow::{Context, bail};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The kind of a file system entry. A hard link is not a kind: it is a second name of a
/// regular file (or other non-directory), see [`Entry::link`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            Kind::File => 0o100000,
            Kind::Dir => 0o040000,
            Kind::Symlink => 0o120000,
            Kind::Char => 0o020000,
            Kind::Block => 0o060000,
            Kind::Fifo => 0o010000,
        }
    }
}

/// The metadata of one entry, everything a layer must record (image-spec layer.md).
///
/// Kept small: a tree holds one per path (a million paths in the largest images), so the
/// symlink target and the xattrs, which most entries lack, live in one optional box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owners, numeric: Linux ids are 32 bits, and a tar naming a wider one is refused.
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds within the second (0 when read from a tar without PAX mtime).
    pub mtime_nsec: u32,
    /// Content length for files; target length for symlinks; 0 otherwise.
    pub size: u64,
    /// Device numbers of character and block devices.
    pub rdev: (u32, u32),
    extra: Extra,
}

/// A symlink's target and the extended attributes: `None` when there are neither.
#[derive(Clone, Debug, Default)]
struct Extra(Option<Box<ExtraFields>>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ExtraFields {
    target: Option<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

static NO_XATTRS: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();

impl PartialEq for Extra {
    /// An empty box is no box.
    fn eq(&self, other: &Self) -> bool {
        let fields = |e: &Extra| {
            e.0.as_deref()
                .filter(|f| f.target.is_some() || !f.xattrs.is_empty())
                .cloned()
        };
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => a == b,
            _ => fields(self) == fields(other),
        }
    }
}

impl Eq for Extra {}

impl Meta {
    pub fn new(kind: Kind, mode: u32) -> Meta {
        Meta {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            rdev: (0, 0),
            extra: Extra(None),
        }
    }

    /// A symlink's target, as written.
    pub fn target(&self) -> Option<&[u8]> {
        self.extra.0.as_ref()?.target.as_deref()
    }

    pub fn set_target(&mut self, target: Option<Vec<u8>>) {
        if target.is_some() || self.extra.0.is_some() {
            self.extra.0.get_or_insert_default().target = target;
        }
    }

    /// Extended attributes, name → value.
    pub fn xattrs(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        self.extra.0.as_ref().map_or(&NO_XATTRS, |e| &e.xattrs)
    }

    pub fn xattrs_mut(&mut self) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        &mut self.extra.0.get_or_insert_default().xattrs
    }

    pub fn set_xattrs(&mut self, xattrs: BTreeMap<Vec<u8>, Vec<u8>>) {
        if !xattrs.is_empty() || self.extra.0.is_some() {
            self.extra.0.get_or_insert_default().xattrs = xattrs;
        }
    }
}

/// One entry read from a layer tar: a path, and either metadata or a hard link to a path.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: Vec<u8>,
    pub meta: Meta,
    /// For a hard link: the (normalized) path it links to. `meta` then holds the header's own
    /// fields, which readers should take from the target instead.
    pub link: Option<Vec<u8>>,
}

/// Compares paths component by component: `a` < `a/b` < `a-c`.
pub fn path_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: &u8| if *c == b'/' { 0u8 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// A path that sorts with [`path_cmp`], for ordered maps of trees.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TreePath(pub Box<[u8]>);

impl From<Vec<u8>> for TreePath {
    fn from(path: Vec<u8>) -> TreePath {
        TreePath(path.into_boxed_slice())
    }
}

impl From<&[u8]> for TreePath {
    fn from(path: &[u8]) -> TreePath {
        TreePath(path.into())
    }
}

impl Ord for TreePath {
    fn cmp(&self, other: &Self) -> Ordering {
        path_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for TreePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Normalizes a name from a tar header or a link target into our path form.
///
/// `./a//b/` → `a/b`; `/etc/passwd` → `etc/passwd` (absolute names are root-relative, as
/// docker, containerd and umoci read them); `a/../b` → `b`. A name that climbs above the root
/// (`../x`, `a/../../x`), or holds a NUL byte, is refused: it can only be an attack.
pub fn normalize(name: &[u8]) -> crate::Result<Vec<u8>> {
    if name.contains(&0) {
        bail!(
            "entry name {:?} contains a NUL byte",
            String::from_utf8_lossy(name)
        );
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    bail!(
                        "entry name {:?} climbs out of the root",
                        String::from_utf8_lossy(name)
                    );
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join(&b'/'))
}

/// The parent of a path (`a/b` → `a`, `a` → ``).
pub fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

/// The last component of a path.
pub fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a parent path and a name.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// True when `path` is `dir` or lies beneath it.
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/'))
}

/// Shows a path as `/etc/passwd`, escaping what would break a line-oriented listing
/// (newlines, control bytes, invalid UTF-8) the way Rust escapes strings.
pub fn display(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    for chunk in path.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch.is_control() || ch == '\\' {
                out.extend(ch.escape_default());
            } else {
                out.push(ch);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The longest entry path accepted (Linux PATH_MAX). Longer ones are refused as they are read:
/// the kernel could not create them, and walking tens of thousands of components made the
/// applier's memory grow with the square of the path length (a 64 KiB path took 1 GB).
pub const MAX_PATH: usize = 4096;

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
    meta.mtime = h.mtime().with_context(|| format!("{shown}: bad mtime"))? as i64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize(b"./a//b/").unwrap(), b"a/b");
        assert_eq!(normalize(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"a/../b").unwrap(), b"b");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b"a\\b").unwrap(), b"a\\b");
        for bad in [&b"../x"[..], b"a/../../x", b"..", b"/../x", b"a\0b"] {
            assert!(normalize(bad).is_err(), "{bad:?}");
        }
    }

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
    fn sorts_parents_before_their_subtree() {
        let mut v = vec![&b"a-c"[..], b"a/b", b"a", b"a/.wh.x", b"-z"];
        v.sort_by(|a, b| path_cmp(a, b));
        assert_eq!(v, vec![&b"-z"[..], b"a", b"a/.wh.x", b"a/b", b"a-c"]);
    }

    #[test]
    fn path_helpers() {
        assert_eq!(parent(b"a/b/c"), b"a/b");
        assert_eq!(parent(b"a"), b"");
        assert_eq!(basename(b"a/b"), b"b");
        assert!(is_within(b"a/b", b"a") && !is_within(b"ab", b"a") && is_within(b"x", b""));
        assert_eq!(display(b"a\nb\xff"), "/a\\nb\\xff");
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
}
