//! The OCI JSON documents that reference blobs: image indexes (`index.json` and nested ones),
//! image manifests, and the platform an index entry is picked by. Fields we do not model are
//! kept in `extra`, so a document read and written again keeps them (image-spec: unknown
//! fields MUST be ignored, not dropped by a tool that rewrites a document).

use crate::descriptor::{Descriptor, Platform};
use crate::media;
use anyhow::bail;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `index.json` or a nested image index.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Index {
    /// Drops the untagged entries that add nothing: those of a manifest another entry still
    /// tags (an image that keeps a tag is not dangling), and all but the first untagged entry
    /// of the same manifest.
    pub fn drop_redundant_untagged(&mut self) {
        let tagged: std::collections::HashSet<crate::digest::Digest> = self
            .manifests
            .iter()
            .filter(|e| e.ref_name().is_some())
            .map(|e| e.digest.clone())
            .collect();
        let mut seen = std::collections::HashSet::new();
        self.manifests.retain(|e| {
            e.ref_name().is_some() || (!tagged.contains(&e.digest) && seen.insert(e.digest.clone()))
        });
    }

    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media::INDEX.to_string()),
            manifests: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The tags of its entries, each once, in index order.
    pub fn tags(&self) -> Vec<&str> {
        let mut tags: Vec<&str> = Vec::new();
        for tag in self.manifests.iter().filter_map(Descriptor::ref_name) {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        tags
    }
}

/// An image manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A resolved image: its manifest's descriptor and the manifest.
#[derive(Clone, Debug)]
pub struct Image {
    pub descriptor: Descriptor,
    pub manifest: Manifest,
}

/// An `os/arch[/variant]` choice among the entries of a multi-platform index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// The platform of this machine, in Go's names (amd64, arm64, …).
    pub fn host() -> PlatformSpec {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "arm" => "arm",
            other => other,
        };
        PlatformSpec {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    pub fn parse(s: &str) -> crate::Result<PlatformSpec> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(PlatformSpec {
                os: os.into(),
                architecture: arch.into(),
                variant: Some(v.into()),
            }),
            _ => bail!("invalid platform {s:?}: expected os/arch[/variant], e.g. linux/amd64"),
        }
    }

    /// True when an index entry's platform is this one (any variant when none is asked).
    pub fn matches(&self, p: &Platform) -> bool {
        p.os == self.os
            && p.architecture == self.architecture
            && (self.variant.is_none() || self.variant == p.variant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn tags_are_listed_once_in_index_order() {
        let entry = |tag: Option<&str>| {
            let mut d = Descriptor::new(media::MANIFEST, Digest::of(b"m"), 1);
            if let Some(tag) = tag {
                d.annotations.insert(media::REF_NAME.to_string(), tag.to_string());
            }
            d
        };
        let mut index = Index::empty();
        index.manifests = vec![entry(Some("b")), entry(None), entry(Some("a")), entry(Some("b"))];
        assert_eq!(index.tags(), ["b", "a"]);
    }
}
