//! Extended attributes: which names belong to an image and which to the machine it sits on,
//! and reading them without following a symlink.
//!
//! - The host's: `security.selinux` (the label the host's policy gives a file) and
//!   `system.nfs4_acl` (the ACL of the NFS export the tree sits on). A tree read from disk
//!   leaves them out, and an unpack neither sets nor removes them. umoci leaves the same two out.
//! - overlayfs's: `trusted.overlay.*` and `user.overlay.*` record the whiteouts, opaque
//!   directories, renames and metacopies of an upper directory. They are read only to make
//!   sense of one (`layer-diff --overlay`), and never reach a layer.

use rustix::buffer::spare_capacity;
use rustix::fd::AsFd;
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::path::Path;

/// The overlayfs namespaces, `trusted.` for a mount by root, `user.` for a user-namespace one.
const OVERLAY: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// True for the attributes of the host's file system, never an image's.
pub fn is_host(name: &[u8]) -> bool {
    name == b"security.selinux" || name == b"system.nfs4_acl"
}

/// True for overlayfs's own attributes.
pub fn is_overlay(name: &[u8]) -> bool {
    OVERLAY.iter().any(|p| name.starts_with(p))
}

/// The value of overlayfs attribute `key` (`opaque`, `redirect`, `metacopy`) in either namespace.
pub fn overlay<'a>(xattrs: &'a BTreeMap<Vec<u8>, Vec<u8>>, key: &[u8]) -> Option<&'a [u8]> {
    OVERLAY.iter().find_map(|prefix| {
        let mut name = prefix.to_vec();
        name.extend_from_slice(key);
        xattrs.get(&name).map(Vec::as_slice)
    })
}

/// The attributes of `path` (not following a symlink), the host's left out, overlayfs's only
/// with `keep_overlay`. A file system without xattrs has none.
pub fn read(path: &Path, keep_overlay: bool) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Errno> {
    let mut out = BTreeMap::new();
    let names = match sized(
        || rustix::fs::llistxattr_query(path),
        |buf| rustix::fs::llistxattr(path, spare_capacity(buf)),
    ) {
        Ok(names) => names,
        Err(Errno::NOTSUP) => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in split(&names) {
        if is_host(name) || (!keep_overlay && is_overlay(name)) {
            continue;
        }
        match sized(
            || rustix::fs::lgetxattr_query(path, name),
            |buf| rustix::fs::lgetxattr(path, name, spare_capacity(buf)),
        ) {
            Ok(value) => {
                out.insert(name.to_vec(), value);
            }
            // Removed between the list and the read: simply gone.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The names of the attributes of an open file. A file system without xattrs has none.
pub fn names(fd: impl AsFd) -> Result<Vec<Vec<u8>>, Errno> {
    let fd = fd.as_fd();
    match sized(
        || rustix::fs::flistxattr_query(fd),
        |buf| rustix::fs::flistxattr(fd, spare_capacity(buf)),
    ) {
        Ok(names) => Ok(split(&names).map(<[u8]>::to_vec).collect()),
        Err(Errno::NOTSUP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The names in a NUL-separated list, as the kernel returns it.
fn split(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|b| *b == 0).filter(|n| !n.is_empty())
}

/// A value the kernel hands out after a size query: queried, then read into a buffer that
/// size, again when it grew in between (ERANGE).
fn sized(
    query: impl Fn() -> Result<usize, Errno>,
    read: impl Fn(&mut Vec<u8>) -> Result<usize, Errno>,
) -> Result<Vec<u8>, Errno> {
    loop {
        let len = query()?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut buf = Vec::with_capacity(len);
        match read(&mut buf) {
            Ok(_) => return Ok(buf),
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_overlay_names() {
        for host in [&b"security.selinux"[..], b"system.nfs4_acl"] {
            assert!(is_host(host) && !is_overlay(host));
        }
        for ovl in [&b"trusted.overlay.opaque"[..], b"user.overlay.redirect"] {
            assert!(is_overlay(ovl) && !is_host(ovl));
        }
        for image in [
            &b"user.x"[..],
            b"security.capability",
            b"trusted.overlayx",
            b"system.posix_acl_access",
        ] {
            assert!(!is_host(image) && !is_overlay(image), "{image:?}");
        }
        let mut x = BTreeMap::new();
        x.insert(b"user.overlay.opaque".to_vec(), b"y".to_vec());
        assert_eq!(overlay(&x, b"opaque"), Some(&b"y"[..]));
        assert_eq!(overlay(&x, b"redirect"), None);
    }

    #[test]
    fn reads_what_is_set_not_following_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"").unwrap();
        let long = vec![b'v'; 3000];
        let set = |name: &str, value: &[u8]| {
            rustix::fs::lsetxattr(&f, name, value, rustix::fs::XattrFlags::empty())
        };
        match set("user.a", b"1") {
            Err(Errno::NOTSUP) => {
                eprintln!("SKIPPED: this file system has no user xattrs");
                return;
            }
            r => r.unwrap(),
        }
        set("user.long", &long).unwrap();
        set("user.overlay.opaque", b"y").unwrap();
        let all = read(&f, true).unwrap();
        assert_eq!(all.get(&b"user.a"[..]).map(Vec::as_slice), Some(&b"1"[..]));
        assert_eq!(all.get(&b"user.long"[..]), Some(&long));
        assert!(all.contains_key(&b"user.overlay.opaque"[..]));
        assert!(!read(&f, false).unwrap().contains_key(&b"user.overlay.opaque"[..]));
        let mut listed = names(std::fs::File::open(&f).unwrap()).unwrap();
        listed.sort();
        assert_eq!(listed, [&b"user.a"[..], b"user.long", b"user.overlay.opaque"]);
        std::os::unix::fs::symlink("f", d.path().join("s")).unwrap();
        assert!(read(&d.path().join("s"), true).unwrap().is_empty());
    }
}
