//! OCI whiteouts (image-spec layer.md): `.wh.NAME` removes NAME from lower layers;
//! `.wh..wh..opq` in a directory hides everything lower layers put in it.

use crate::path::{basename, join, parent};
use anyhow::bail;

pub const PREFIX: &[u8] = b".wh.";
pub const OPAQUE: &[u8] = b".wh..wh..opq";

/// What a layer entry's name means.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout {
    /// An ordinary entry.
    None,
    /// Removes this path of the lower layers.
    Remove(Vec<u8>),
    /// Hides every lower child of this directory.
    Opaque(Vec<u8>),
}

/// Classifies a normalized path. Refuses names that cannot be honest whiteouts: `.wh.`
/// alone, `.wh..` and `.wh...` (which would remove the parent or climb), other `.wh..wh.`
/// metadata (AUFS hard-link directories), and `.wh.` prefixes on a directory component
/// (such names cannot exist in an image file system).
pub fn classify(path: &[u8]) -> crate::Result<Whiteout> {
    let dir = parent(path);
    if dir.split(|b| *b == b'/').any(|c| c.starts_with(PREFIX)) {
        bail!(
            "{}: a whiteout name used as a directory",
            crate::path::display(path)
        );
    }
    let base = basename(path);
    if base == OPAQUE {
        return Ok(Whiteout::Opaque(dir.to_vec()));
    }
    let Some(name) = base.strip_prefix(PREFIX) else {
        return Ok(Whiteout::None);
    };
    if name.is_empty() || name == b"." || name == b".." || name.starts_with(b".wh.") {
        bail!("{}: invalid whiteout", crate::path::display(path));
    }
    Ok(Whiteout::Remove(join(dir, name)))
}

/// The whiteout entry that removes `path`.
pub fn remove_name(path: &[u8]) -> Vec<u8> {
    let mut name = PREFIX.to_vec();
    name.extend_from_slice(basename(path));
    join(parent(path), &name)
}

/// The opaque marker of directory `dir`.
pub fn opaque_name(dir: &[u8]) -> Vec<u8> {
    join(dir, OPAQUE)
}

/// True when a name on disk would be read as a whiteout: such trees cannot be packed.
pub fn is_reserved(name: &[u8]) -> bool {
    name.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"a/b").unwrap(), Whiteout::None);
        assert_eq!(classify(b"a/.wh.b").unwrap(), Whiteout::Remove(b"a/b".to_vec()));
        assert_eq!(classify(b".wh.b").unwrap(), Whiteout::Remove(b"b".to_vec()));
        assert_eq!(
            classify(b"a/.wh..wh..opq").unwrap(),
            Whiteout::Opaque(b"a".to_vec())
        );
        assert_eq!(classify(b".wh..wh..opq").unwrap(), Whiteout::Opaque(Vec::new()));
        for bad in [&b".wh."[..], b"a/.wh..", b"a/.wh...", b".wh..wh.plnk", b".wh.x/y"] {
            assert!(classify(bad).is_err(), "{bad:?}");
        }
        assert_eq!(remove_name(b"a/b"), b"a/.wh.b");
        assert_eq!(opaque_name(b""), b".wh..wh..opq");
    }
}
