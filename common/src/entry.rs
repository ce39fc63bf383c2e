//! The tar entry model: what one file system entry is, as a layer carries it. Paths are in the
//! form of [`crate::path`]; reading entries from a tar is [`crate::tarread`].

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

    /// Keeps only the xattrs whose names `keep` accepts.
    pub fn retain_xattrs(&mut self, keep: impl Fn(&[u8]) -> bool) {
        if let Some(extra) = &mut self.extra.0 {
            extra.xattrs.retain(|name, _| keep(name));
        }
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
