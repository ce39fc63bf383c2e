//! IMAGE references: `LAYOUT:REF`, `LAYOUT` (REF `latest`), `LAYOUT@sha256:<hex>`, and
//! `LAYOUT@ID`, an image by a unique prefix of its id or manifest digest (as `docker tag 9977b`).

use crate::digest::Digest;
use anyhow::{Context, bail};
use std::fmt;
use std::path::{Path, PathBuf};

/// What an IMAGE is, said where one names no layout or a layout path could not be an IMAGE's.
pub const IMAGE_HINT: &str =
    "an IMAGE is LAYOUT:REF, e.g. store:httpd:2.4 (the tag httpd:2.4 of the layout directory store)";

/// What an IMAGE names inside its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The `org.opencontainers.image.ref.name` of an `index.json` entry.
    Tag(String),
    /// A manifest (or index) by digest, tagged or not; or an image by its full id.
    Digest(Digest),
    /// An image by a prefix (at least [`MIN_ID_PREFIX`] lowercase hex digits) of its id (the
    /// config digest) or of its manifest digest.
    Id(String),
}

/// The shortest image id prefix accepted, as docker's `TruncIndex` lookups.
pub const MIN_ID_PREFIX: usize = 4;

/// `sha256:` followed by fewer than 64 hex digits, or bare hex digits (at least
/// [`MIN_ID_PREFIX`] of them): an id prefix, without its `sha256:`.
fn id_prefix(s: &str) -> Option<&str> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    let is_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (is_hex && (MIN_ID_PREFIX..=64).contains(&hex.len())).then_some(hex)
}

/// The `LAYOUT` and `ID` of `LAYOUT@ID`. The layout holds no `:`, so a tag with `@` in it
/// (`store:a@beef`) stays a tag.
fn split_id(s: &str) -> Option<(&str, &str)> {
    let (layout, rest) = s.rsplit_once('@')?;
    if layout.contains(':') || (rest.starts_with("sha256:") && rest.len() == 71) {
        return None;
    }
    Some((layout, id_prefix(rest)?))
}

/// A parsed IMAGE argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub layout: PathBuf,
    pub target: Target,
}

impl ImageRef {
    /// Parses `LAYOUT:REF`, split at the first `:` (a ref may itself hold `:`), `LAYOUT`
    /// alone (REF `latest`), `LAYOUT@sha256:<hex>` or `LAYOUT@ID`.
    pub fn parse(s: &str) -> crate::Result<ImageRef> {
        if let Some((layout, id)) = split_id(s) {
            return Ok(ImageRef {
                layout: nonempty(layout, s)?,
                target: Target::Id(id.to_string()),
            });
        }
        // `sha256`, not `sha256:`: `X@sha256` alone is a digest cut short, not a layout named
        // so (whose `X@sha256:latest` would then read as a digest; found by fuzz/refs).
        if let Some((layout, digest)) = s.rsplit_once('@')
            && digest.starts_with("sha256")
        {
            let digest: Digest = digest.parse().with_context(|| format!("image {s:?}"))?;
            return Ok(ImageRef {
                layout: nonempty(layout, s)?,
                target: Target::Digest(digest),
            });
        }
        let (layout, tag) = s.split_once(':').unwrap_or((s, "latest"));
        check_ref_name(tag).with_context(|| format!("image {s:?}"))?;
        Ok(ImageRef {
            layout: nonempty(layout, s)?,
            target: Target::Tag(tag.to_string()),
        })
    }

    /// The tag, for sinks that need one (`--tag`).
    pub fn tag(&self) -> crate::Result<&str> {
        match &self.target {
            Target::Tag(t) => Ok(t),
            Target::Digest(_) | Target::Id(_) => bail!("{self}: a tag is needed here, not a digest or id"),
        }
    }

    /// True when `s` looks like an IMAGE whose layout exists: `X:REF`, `X@sha256:…` or `X@ID`
    /// where X holds an `oci-layout` file. Used to tell images from directories and tar files.
    pub fn names_existing_layout(s: &str) -> bool {
        let layout = match (split_id(s), s.rsplit_once('@')) {
            (Some((l, _)), _) => l,
            (None, Some((l, d))) if d.starts_with("sha256") => l,
            _ => match s.split_once(':') {
                Some((l, _)) => l,
                None => return false,
            },
        };
        !layout.is_empty() && Path::new(layout).join("oci-layout").is_file()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Tag(t) => write!(f, "{}:{t}", self.layout.display()),
            Target::Digest(d) => write!(f, "{}@{d}", self.layout.display()),
            Target::Id(id) => write!(f, "{}@{id}", self.layout.display()),
        }
    }
}

/// A LAYOUT given as a path (`layer-pack --layout`), as a clap value parser: see
/// [`check_layout_path`].
pub fn layout_path(s: &str) -> crate::Result<PathBuf> {
    let path = PathBuf::from(s);
    check_layout_path(&path)?;
    Ok(path)
}

/// Refuses a layout path holding `:`: an IMAGE splits at its first `:`, so no IMAGE could name
/// the layout (`--layout web:v1` would make a directory `web:v1`, whose images `web:v1:REF`
/// read as the tag `v1:REF` of a layout `web`).
pub fn check_layout_path(path: &Path) -> crate::Result<()> {
    let s = path.to_string_lossy();
    let Some((layout, tag)) = s.split_once(':') else {
        return Ok(());
    };
    let mean = if layout.is_empty() || tag.is_empty() {
        String::new()
    } else {
        format!(": did you mean the layout {layout}, and the image {layout}:{tag} in it?")
    };
    bail!("a layout path cannot hold ':', where an IMAGE (LAYOUT:REF) splits{mean}")
}

fn nonempty(layout: &str, whole: &str) -> crate::Result<PathBuf> {
    if layout.is_empty() {
        bail!("image {whole:?}: the layout directory is missing before the ':'");
    }
    Ok(PathBuf::from(layout))
}

/// Splits a REF as docker splits a reference: at the last `:` not followed by a `/` (so
/// `localhost:5000/web` has no tag). No tag: the whole REF is the repository.
pub fn split_ref(name: &str) -> (&str, Option<&str>) {
    match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    }
}

/// Checks a tag against image-spec's `ref.name` grammar:
/// `component ("/" component)*`, `component = alphanum (separator alphanum)*`,
/// `separator = [-._:@+] | "--"`.
pub fn check_ref_name(name: &str) -> crate::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.split('/').all(|component| {
            let b = component.as_bytes();
            let alnum = |c: u8| c.is_ascii_alphanumeric();
            let sep = |c: u8| matches!(c, b'-' | b'.' | b'_' | b':' | b'@' | b'+');
            if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
                return false;
            }
            let mut i = 0;
            while i < b.len() {
                if alnum(b[i]) {
                    i += 1;
                } else if b[i..].starts_with(b"--") && i + 2 < b.len() && alnum(b[i + 2]) {
                    i += 2;
                } else if sep(b[i]) && i + 1 < b.len() && alnum(b[i + 1]) {
                    i += 1;
                } else {
                    return false;
                }
            }
            true
        });
    if !ok {
        bail!("invalid reference name {name:?} (letters, digits and [-._:@+] between them)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_split_as_docker_splits_them() {
        assert_eq!(split_ref("web:v1"), ("web", Some("v1")));
        assert_eq!(split_ref("library/httpd:2.4"), ("library/httpd", Some("2.4")));
        assert_eq!(split_ref("localhost:5000/web"), ("localhost:5000/web", None));
        assert_eq!(
            split_ref("localhost:5000/web:v2"),
            ("localhost:5000/web", Some("v2"))
        );
        assert_eq!(split_ref("latest"), ("latest", None));
    }

    use super::*;

    #[test]
    fn splits_at_the_first_colon() {
        let r = ImageRef::parse("store:web:v1").unwrap();
        assert_eq!(r.layout, PathBuf::from("store"));
        assert_eq!(r.target, Target::Tag("web:v1".into()));
        assert_eq!(
            ImageRef::parse("store").unwrap().target,
            Target::Tag("latest".into())
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            ImageRef::parse(&format!("st:ore@{d}")).unwrap().layout,
            PathBuf::from("st:ore")
        );
    }

    #[test]
    fn an_image_by_a_prefix_of_its_id() {
        let id = |s: &str| ImageRef::parse(s).unwrap();
        for (s, layout, prefix) in [
            ("store@9977b", "store", "9977b"),
            ("store@sha256:9977b", "store", "9977b"),
            ("a@b@beef", "a@b", "beef"),
            (&format!("store@{}", "c".repeat(64)), "store", &"c".repeat(64)),
        ] {
            assert_eq!(id(s).layout, PathBuf::from(layout), "{s}");
            assert_eq!(id(s).target, Target::Id(prefix.to_string()), "{s}");
        }
        // Too short, not hex, or a tag holding '@': not an id.
        assert_eq!(id("store@abc").target, Target::Tag("latest".into()));
        assert_eq!(id("store@9977B").layout, PathBuf::from("store@9977B"));
        assert_eq!(id("store:a@beef").target, Target::Tag("a@beef".into()));
        assert!(ImageRef::parse("store@sha256:99").is_err());
        assert!(ImageRef::parse("@beef").is_err());
        let full = format!("sha256:{}", "d".repeat(64));
        assert_eq!(
            id(&format!("store@{full}")).target,
            Target::Digest(full.parse().unwrap())
        );
        assert!(id("x@beef").tag().is_err());
    }

    #[test]
    fn a_layout_path_holding_a_colon_is_refused_with_the_split_it_meant() {
        for good in ["store", "./a/b", "st@re", "/tmp/x"] {
            assert_eq!(layout_path(good).unwrap(), PathBuf::from(good));
        }
        let err = layout_path("web:v1").unwrap_err().to_string();
        assert!(err.starts_with("a layout path cannot hold ':'"), "{err}");
        assert!(
            err.ends_with("did you mean the layout web, and the image web:v1 in it?"),
            "{err}"
        );
        for bad in [":x", "x:", "a/b:c/d"] {
            assert!(layout_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_refs() {
        for bad in [
            "store:",
            ":x",
            "store:a b",
            "store:-x",
            "store:x/",
            "store:../x",
            "store@sha256:zz",
            "store@sha256",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} accepted");
        }
        for good in [
            "store:web:v1",
            "s:2.4",
            "s:a--b",
            "s:library/httpd:2.4",
            "s:a@b+c",
        ] {
            ImageRef::parse(good).unwrap();
        }
        // What parses prints back to itself (fuzz/refs found `store@sha256` did not).
        for s in [
            "store",
            "st@re",
            "a:b@c",
            &format!("x@sha256:{}", "b".repeat(64)),
            "x@9977b",
            "x@sha256:9977",
        ] {
            let r = ImageRef::parse(s).unwrap();
            assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r, "{s}");
        }
    }
}
