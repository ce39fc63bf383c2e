//! Media types (image-spec v1.1, plus docker's v2 schema 2 aliases that readers must accept).

use crate::compress::Compression;
use anyhow::bail;

pub const OCI_LAYOUT_VERSION: &str = "1.0.0";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Manifest annotations naming the image this one is built on (image-spec annotations.md):
/// its manifest digest and its reference.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";

/// The media type we write for a layer with this compression.
pub fn layer_type(c: Compression) -> &'static str {
    match c {
        Compression::None => LAYER_TAR,
        Compression::Gzip => LAYER_GZIP,
        Compression::Zstd => LAYER_ZSTD,
    }
}

/// How a layer of this media type is compressed; unknown types are an error, not a guess.
pub fn layer_compression(media_type: &str) -> crate::Result<Compression> {
    Ok(match media_type {
        LAYER_TAR
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        LAYER_GZIP
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | DOCKER_LAYER_GZIP
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        LAYER_ZSTD
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
        other => bail!("unsupported layer media type {other:?}"),
    })
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == MANIFEST || media_type == DOCKER_MANIFEST
}

pub fn is_index(media_type: &str) -> bool {
    media_type == INDEX || media_type == DOCKER_MANIFEST_LIST
}
