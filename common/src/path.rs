//! Paths as layers carry them: bytes (tar names need not be UTF-8), relative, without `./` or
//! a leading or trailing `/`: `etc/passwd`; the root is the empty path. They sort component by
//! component ([`path_cmp`]), which puts a directory right before its own subtree.

use anyhow::bail;
use std::cmp::Ordering;

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

/// Symlinks followed while resolving one path, at most: Linux's own limit (MAXSYMLINKS); past
/// it a resolution is a loop.
pub const MAX_SYMLINKS: usize = 40;

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
    }
}
