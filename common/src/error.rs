//! Errors shared by the tools.
//!
//! Library code returns [`Result`] (an `anyhow` error) so that every layer of the call stack can
//! add the path, digest or entry it was working on; [`Error`] holds the typed failures a caller
//! may want to match on. Every error maps to exit status 2 (see [`crate::cli`]).

use crate::digest::Digest;
use std::path::PathBuf;

/// The result type of the library: an error chain with context.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// How many of a layout's tags an error about a missing one lists.
const TAGS_SHOWN: usize = 5;

/// Failures with a meaning of their own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A blob's bytes do not hash to the digest it is stored or referenced under.
    #[error("{expected}: digest mismatch: the content hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// A blob is longer or shorter than its descriptor says.
    #[error("{digest}: size mismatch: descriptor says {expected} bytes, blob has {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// A string that should be a digest is not one we accept.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
    InvalidDigest(String),
    /// A directory without an `oci-layout` file.
    #[error("{0}: not an OCI image layout (no oci-layout file)")]
    NotALayout(PathBuf),
    /// A reference that names no image of the layout. `tags`: the layout's tags, to list a few
    /// of them when the reference was a tag.
    #[error("{layout}: no image {reference}{}", known_tags(tags.as_deref()))]
    ImageNotFound {
        layout: PathBuf,
        reference: String,
        tags: Option<Vec<String>>,
    },
    /// A blob the layout should hold but does not.
    #[error("{layout}: blob {digest} is missing")]
    BlobMissing { layout: PathBuf, digest: Digest },
    /// A manifest or index whose own `mediaType` is not what its descriptor says: a blob made
    /// to be read as two different things (CVE-2021-41190). Hostile, never skipped.
    #[error("{digest}: media type confusion: descriptor says {descriptor:?}, blob says {blob:?}")]
    MediaTypeConfusion {
        digest: Digest,
        descriptor: String,
        blob: String,
    },
}

/// "; its tags: a, b (and 3 more)", the ones a missing tag's error lists.
fn known_tags(tags: Option<&[String]>) -> String {
    match tags {
        None => String::new(),
        Some([]) => "; the layout has no tags".to_string(),
        Some(tags) => {
            let shown = tags[..tags.len().min(TAGS_SHOWN)].join(", ");
            match tags.len().saturating_sub(TAGS_SHOWN) {
                0 => format!("; its tags: {shown}"),
                more => format!("; its tags: {shown} (and {more} more)"),
            }
        }
    }
}
