//! OCI content descriptors, and the LAYER DESCRIPTOR our tools pass down a pipe.
//!
//! A LAYER DESCRIPTOR is a valid OCI descriptor plus extra top-level fields (extra fields
//! are allowed by image-spec descriptor.md):
//! - `diffID`: sha256 of the uncompressed tar, what goes into the config's `rootfs.diff_ids`;
//! - `uncompressedSize`: the tar's length in bytes;
//! - `contentSize`: what docker shows as the layer's SIZE (see [`crate::size`]); optional on
//!   input (a descriptor written by hand, or by an older layer-pack, may lack it);
//! - `reused`: true when the blob was already in the layout (omitted otherwise);
//! - `source`: the absolute path of the layout (or blob file) that holds the blob, so that a
//!   consumer working on another layout can copy it in.
//!
//! When a layer goes into a manifest, the extras are dropped and the sizes are kept as the
//! annotations [`UNCOMPRESSED_SIZE`] and [`CONTENT_SIZE`], so that image-history and image-ls
//! need not read the layer again.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Annotation on manifest layer descriptors: the layer's uncompressed size in bytes.
pub const UNCOMPRESSED_SIZE: &str = "dev.layerkit.uncompressed-size";
/// Annotation on manifest layer descriptors: the layer's content size in bytes (docker's SIZE).
pub const CONTENT_SIZE: &str = "dev.layerkit.content-size";

/// An OCI content descriptor; fields we do not model are kept in `extra`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
            extra: BTreeMap::new(),
        }
    }

    /// The tag this index entry carries, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(crate::media::REF_NAME).map(String::as_str)
    }
}

/// An index entry's platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A layer descriptor as layer-pack prints it and image-stack reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDescriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
    #[serde(rename = "uncompressedSize")]
    pub uncompressed_size: u64,
    #[serde(rename = "contentSize", default, skip_serializing_if = "Option::is_none")]
    pub content_size: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl LayerDescriptor {
    /// The descriptor as it goes into a manifest.
    pub fn to_manifest_layer(&self) -> Descriptor {
        let mut d = Descriptor::new(&self.media_type, self.digest.clone(), self.size);
        d.annotations = self.annotations.clone();
        d.annotations
            .insert(UNCOMPRESSED_SIZE.to_string(), self.uncompressed_size.to_string());
        if let Some(n) = self.content_size {
            d.annotations.insert(CONTENT_SIZE.to_string(), n.to_string());
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_descriptor_round_trips_and_is_an_oci_descriptor() {
        let line = r#"{"diffID":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","mediaType":"application/vnd.oci.image.layer.v1.tar","size":0,"uncompressedSize":0}"#;
        let d: LayerDescriptor = serde_json::from_str(line).unwrap();
        assert_eq!(
            String::from_utf8(crate::json::canonical(&d).unwrap()).unwrap(),
            line
        );
        let m: Descriptor = serde_json::from_str(line).unwrap();
        assert_eq!(m.size, 0);
        assert!(serde_json::from_str::<Descriptor>(&line.replace("\"size\":0", "\"size\":-1")).is_err());
    }
}
