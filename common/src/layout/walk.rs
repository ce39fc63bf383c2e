//! The one walk over what a descriptor references: an index its manifests (nested indexes
//! included), a manifest its config and layers (umoci's `casext.Walk`). Every manifest and
//! index it reads gets the media-type check, and nesting is bounded by [`MAX_INDEX_DEPTH`]; the
//! visitor decides at each step whether to go on, skip what is below, or stop
//! ([`Walk`], umoci's `ErrSkipDescriptor`). Resolving a reference (the platform pick), image-prune's
//! reachability and image-history's search for base images are visitors of it.
//!
//! A manifest's or index's `subject` is not walked: image-spec calls it "a weak association"
//! (a referrer points at its subject, the subject does not own it); [`Layout::subject_of`]
//! reads it for those that follow it backwards.

use super::Layout;
use crate::config::ImageConfig;
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::{Image, Index, Manifest, PlatformSpec};
use crate::media;
use crate::reference::Target;
use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use std::fs;

/// How many manifests and indexes deep a walk reads, counting from the one it starts at: a
/// chain of indexes is a fan-out for platforms, and a longer one is a hostile loop of
/// distinct blobs, not an image.
pub const MAX_INDEX_DEPTH: usize = 8;

/// What the walk does after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// Go on: read the blob ([`Step::Enter`]), walk what it references (after the others).
    Continue,
    /// Leave the blob unread, or what it references unwalked; go on with the rest.
    Skip,
    /// End the whole walk.
    Stop,
}

/// One step of a walk, about the last descriptor of the path the visitor is given (the path
/// runs from the walk's root).
pub enum Step<'a> {
    /// Reached, before anything is read. Configs, layers and blobs of unknown media types are
    /// leaves: this is their only step.
    Enter,
    /// Read as an image manifest: its config and layers come next.
    Manifest(&'a Manifest),
    /// Read as an image index: its manifests come next.
    Index(&'a Index),
    /// Could not be read as the manifest or index its descriptor says: missing, corrupt, not
    /// that document, a media type confusion ([`Error::MediaTypeConfusion`]), or nested deeper
    /// than [`MAX_INDEX_DEPTH`]. What it references is not walked, whatever the visitor says.
    Unreadable(anyhow::Error),
}

/// A walk's visitor: given the path from the root and the step, says what comes next.
pub type Visitor<'v> = dyn FnMut(&[Descriptor], Step<'_>) -> crate::Result<Walk> + 'v;

impl Layout {
    /// Walks depth first from `root`, each descriptor's references in their order. Returns
    /// [`Walk::Stop`] when the visitor stopped it, [`Walk::Continue`] otherwise. An error the
    /// visitor returns ends the walk with that error.
    pub fn walk(&self, root: &Descriptor, visit: &mut Visitor<'_>) -> crate::Result<Walk> {
        let mut path = vec![root.clone()];
        self.walk_path(&mut path, visit)
    }

    fn walk_path(&self, path: &mut Vec<Descriptor>, visit: &mut Visitor<'_>) -> crate::Result<Walk> {
        match visit(path, Step::Enter)? {
            Walk::Continue => {}
            Walk::Skip => return Ok(Walk::Continue),
            Walk::Stop => return Ok(Walk::Stop),
        }
        let desc = path.last().expect("a walk's path ends at its descriptor").clone();
        let is_manifest = media::is_manifest(&desc.media_type);
        if !is_manifest && !media::is_index(&desc.media_type) {
            return Ok(Walk::Continue);
        }
        let read = if path.len() > MAX_INDEX_DEPTH {
            Err(anyhow!("{}: image indexes nested too deep", desc.digest))
        } else if is_manifest {
            self.read_manifest(&desc).map(Ok)
        } else {
            self.read_index_blob(&desc).map(Err)
        };
        let (next, children) = match read {
            Ok(Ok(m)) => {
                let next = visit(path, Step::Manifest(&m))?;
                (next, std::iter::once(m.config).chain(m.layers).collect())
            }
            Ok(Err(index)) => (visit(path, Step::Index(&index))?, index.manifests),
            Err(e) => {
                let next = visit(path, Step::Unreadable(e))?;
                (next, Vec::new())
            }
        };
        match next {
            Walk::Continue => {}
            Walk::Skip => return Ok(Walk::Continue),
            Walk::Stop => return Ok(Walk::Stop),
        }
        for child in children {
            path.push(child);
            let next = self.walk_path(path, visit)?;
            path.pop();
            if next == Walk::Stop {
                return Ok(Walk::Stop);
            }
        }
        Ok(Walk::Continue)
    }

    /// Reads and parses an image manifest, checking its media type against the descriptor's.
    pub fn read_manifest(&self, desc: &Descriptor) -> crate::Result<Manifest> {
        let m: Manifest = self.read_json(desc)?;
        check_media_type(desc, m.media_type.as_deref())?;
        if m.schema_version != 2 {
            bail!(
                "{}: unsupported manifest schemaVersion {}",
                desc.digest,
                m.schema_version
            );
        }
        Ok(m)
    }

    /// Reads and parses an image index blob (a nested index, not `index.json`), checking its
    /// media type against the descriptor's.
    pub fn read_index_blob(&self, desc: &Descriptor) -> crate::Result<Index> {
        let index: Index = self.read_json(desc)?;
        check_media_type(desc, index.media_type.as_deref())?;
        Ok(index)
    }

    /// Reads and parses an image config.
    pub fn read_config(&self, desc: &Descriptor) -> crate::Result<ImageConfig> {
        self.read_json(desc)
    }

    /// The `subject` of a manifest or index; None for other blobs and those without one.
    pub fn subject_of(&self, desc: &Descriptor) -> crate::Result<Option<Descriptor>> {
        Ok(if media::is_manifest(&desc.media_type) {
            self.read_manifest(desc)?.subject
        } else if media::is_index(&desc.media_type) {
            self.read_index_blob(desc)?.subject
        } else {
            None
        })
    }

    /// Resolves a reference to an image manifest, picking a platform (the host's unless
    /// `platform` says) from indexes on the way.
    pub fn resolve(&self, target: &Target, platform: Option<&PlatformSpec>) -> crate::Result<Image> {
        let root = self.find(target)?;
        self.resolve_descriptor(&root, platform)
    }

    /// The image manifest a manifest or index descriptor stands for, picking a platform (the
    /// host's unless `platform` says) from indexes on the way.
    pub fn resolve_descriptor(
        &self,
        root: &Descriptor,
        platform: Option<&PlatformSpec>,
    ) -> crate::Result<Image> {
        let host = PlatformSpec::host();
        let want = platform.unwrap_or(&host);
        // The entry picked from the index just read: the only one walked into.
        let mut picked: Option<Digest> = None;
        let mut found = None;
        self.walk(root, &mut |path, step| {
            let desc = path.last().expect("a walk's path ends at its descriptor");
            match step {
                Step::Enter if path.len() == 1 => {
                    if !media::is_manifest(&desc.media_type) && !media::is_index(&desc.media_type) {
                        bail!(
                            "{}: unsupported media type {:?} (not an image manifest or index)",
                            desc.digest,
                            desc.media_type
                        );
                    }
                    Ok(Walk::Continue)
                }
                Step::Enter if picked.as_ref() == Some(&desc.digest) => Ok(Walk::Continue),
                Step::Enter => Ok(Walk::Skip),
                Step::Manifest(m) => {
                    found = Some(Image {
                        descriptor: desc.clone(),
                        manifest: m.clone(),
                    });
                    Ok(Walk::Stop)
                }
                Step::Index(index) => {
                    picked = Some(
                        pick_platform(desc, index, want, platform.is_none())?
                            .digest
                            .clone(),
                    );
                    Ok(Walk::Continue)
                }
                Step::Unreadable(e) => Err(e),
            }
        })?;
        found.with_context(|| format!("{}: no image manifest in it", root.digest))
    }

    /// Every image manifest `index.json` reaches, through nested indexes, in index order, each
    /// with the `index.json` entry it was reached from. Manifests that cannot be read are left
    /// out (an image of the layout that is damaged is not the one asked about); one whose blob
    /// says it is something else than its descriptor says is refused (CVE-2021-41190): it is
    /// made to mislead.
    pub fn image_manifests(&self) -> crate::Result<Vec<Reached>> {
        let mut out = Vec::new();
        for entry in self.read_index()?.manifests {
            self.walk(&entry, &mut |path, step| match step {
                Step::Manifest(m) => {
                    out.push(Reached {
                        entry: entry.clone(),
                        descriptor: path.last().expect("a walk's path ends at its descriptor").clone(),
                        manifest: m.clone(),
                    });
                    Ok(Walk::Skip)
                }
                Step::Unreadable(e) if is_confusion(&e) => Err(e),
                Step::Enter | Step::Index(_) | Step::Unreadable(_) => Ok(Walk::Continue),
            })?;
        }
        Ok(out)
    }

    /// The descriptor a reference names: a tagged `index.json` entry (the last one, should
    /// several hold the tag), an entry, image or stored manifest by digest (a full image id
    /// names its image), or an image by a unique prefix of its id or manifest digest.
    fn find(&self, target: &Target) -> crate::Result<Descriptor> {
        let index = self.read_index()?;
        let not_found = || Error::ImageNotFound {
            layout: self.root.clone(),
            reference: match target {
                Target::Tag(t) if t == "latest" => {
                    format!("tagged {t:?} (a LAYOUT alone means LAYOUT:latest)")
                }
                Target::Tag(t) => format!("tagged {t:?}"),
                Target::Digest(d) => d.to_string(),
                Target::Id(id) => format!("with an id or digest starting with {id}"),
            },
            tags: match target {
                Target::Tag(t) => Some(similar_first(t, index.tags())),
                Target::Digest(_) | Target::Id(_) => None,
            },
        };
        let desc = match target {
            Target::Tag(t) => index
                .manifests
                .iter()
                .rev()
                .find(|e| e.ref_name() == Some(t))
                .cloned(),
            Target::Digest(d) => match index.manifests.iter().find(|e| &e.digest == d) {
                Some(e) => Some(e.clone()),
                None => match self.find_id(d.hex())? {
                    Some(found) => Some(found),
                    None if self.has_blob(d) => {
                        let size = fs::metadata(self.blob_path(d))?.len();
                        let v: Value =
                            serde_json::from_slice(&self.read_blob(&Descriptor::new("", d.clone(), size))?)
                                .with_context(|| format!("{d}: not a JSON manifest"))?;
                        let mt = v
                            .get("mediaType")
                            .and_then(Value::as_str)
                            .unwrap_or(media::MANIFEST);
                        Some(Descriptor::new(mt, d.clone(), size))
                    }
                    None => None,
                },
            },
            Target::Id(id) => self.find_id(id)?,
        };
        desc.ok_or_else(|| not_found().into())
    }

    /// The one image whose manifest digest or id starts with the hex digits `prefix`; an error
    /// listing the candidates when several do.
    fn find_id(&self, prefix: &str) -> crate::Result<Option<Descriptor>> {
        let mut found: Vec<Reached> = Vec::new();
        for r in self.image_manifests()? {
            let matches = r.descriptor.digest.hex().starts_with(prefix)
                || r.manifest.config.digest.hex().starts_with(prefix);
            if matches && !found.iter().any(|f| f.descriptor.digest == r.descriptor.digest) {
                found.push(r);
            }
        }
        if found.len() > 1 {
            let tags = |r: &Reached| {
                let tags: Vec<String> = self
                    .read_index()
                    .map(|i| i.manifests)
                    .unwrap_or_default()
                    .iter()
                    .filter(|e| e.digest == r.descriptor.digest)
                    .filter_map(|e| e.ref_name().map(str::to_string))
                    .collect();
                if tags.is_empty() {
                    "untagged".to_string()
                } else {
                    tags.join(", ")
                }
            };
            let list: Vec<String> = found
                .iter()
                .map(|r| {
                    format!(
                        "image {} (manifest {}, {})",
                        r.manifest.config.digest.short(),
                        r.descriptor.digest.short(),
                        tags(r)
                    )
                })
                .collect();
            bail!(
                "{}: the id {prefix} is ambiguous: {} images match: {}",
                self.root.display(),
                found.len(),
                list.join("; ")
            );
        }
        Ok(found.pop().map(|r| r.descriptor))
    }
}

/// An image manifest reached from `index.json` ([`Layout::image_manifests`]).
#[derive(Clone, Debug)]
pub struct Reached {
    /// The `index.json` entry it was reached from (itself, or an index holding it).
    pub entry: Descriptor,
    /// Its own descriptor, as the entry or the nested index lists it.
    pub descriptor: Descriptor,
    pub manifest: Manifest,
}

fn is_confusion(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<Error>(), Some(Error::MediaTypeConfusion { .. }))
}

/// `tags`, those of the same repository as `wanted` (the part before its last `:`) first.
fn similar_first(wanted: &str, tags: Vec<&str>) -> Vec<String> {
    let repo = |t: &str| t.rsplit_once(':').map_or(t, |(r, _)| r).to_string();
    let (same, other): (Vec<&str>, Vec<&str>) = tags.into_iter().partition(|t| repo(t) == repo(wanted));
    same.into_iter().chain(other).map(str::to_string).collect()
}

/// The entry of `index` for the platform wanted; the only manifest or index in it when no
/// platform was asked for.
fn pick_platform<'i>(
    desc: &Descriptor,
    index: &'i Index,
    want: &PlatformSpec,
    any: bool,
) -> crate::Result<&'i Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|m| media::is_manifest(&m.media_type) || media::is_index(&m.media_type))
        .collect();
    candidates
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| want.matches(p)))
        .or_else(|| {
            if candidates.len() == 1 && any {
                candidates.first()
            } else {
                None
            }
        })
        .copied()
        .ok_or_else(|| {
            anyhow!(
                "{}: no manifest for platform {}/{} in the index",
                desc.digest,
                want.os,
                want.architecture
            )
        })
}

/// The blob's own `mediaType` must agree with what referenced it (CVE-2021-41190).
fn check_media_type(desc: &Descriptor, inside: Option<&str>) -> crate::Result<()> {
    match inside {
        Some(inside) if inside != desc.media_type => Err(Error::MediaTypeConfusion {
            digest: desc.digest.clone(),
            descriptor: desc.media_type.clone(),
            blob: inside.to_string(),
        }
        .into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;
    use serde_json::json;

    fn store(layout: &Layout, media_type: &str, value: &Value) -> Descriptor {
        let bytes = json::canonical(value).unwrap();
        let (digest, _) = layout.write_blob(&bytes).unwrap();
        Descriptor::new(media_type, digest, bytes.len() as u64)
    }

    fn image(layout: &Layout, seed: &str) -> Descriptor {
        let (layer, _) = layout.write_blob(seed.as_bytes()).unwrap();
        let config = store(layout, media::CONFIG, &json!({"architecture": seed}));
        store(
            layout,
            media::MANIFEST,
            &json!({"schemaVersion": 2, "mediaType": media::MANIFEST, "config": config,
                    "layers": [{"mediaType": media::LAYER_TAR, "digest": layer, "size": seed.len()}]}),
        )
    }

    fn index_of(layout: &Layout, entries: &[&Descriptor]) -> Descriptor {
        store(
            layout,
            media::INDEX,
            &json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": entries}),
        )
    }

    /// Each step as "<depth> <what> <digest's last 4>", in walk order.
    fn steps(layout: &Layout, root: &Descriptor, skip_layers: bool) -> Vec<String> {
        let mut out = Vec::new();
        layout
            .walk(root, &mut |path, step| {
                let d = path.last().unwrap();
                let id = &d.digest.hex()[60..];
                let depth = path.len() - 1;
                out.push(match &step {
                    Step::Enter => format!("{depth} enter {id}"),
                    Step::Manifest(_) => format!("{depth} manifest {id}"),
                    Step::Index(_) => format!("{depth} index {id}"),
                    Step::Unreadable(e) => format!("{depth} unreadable {id}: {e:#}"),
                });
                Ok(match step {
                    Step::Manifest(_) if skip_layers => Walk::Skip,
                    _ => Walk::Continue,
                })
            })
            .unwrap();
        out
    }

    #[test]
    fn walks_depth_first_in_order_and_skips_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("s")).unwrap();
        let (a, b) = (image(&layout, "a"), image(&layout, "b"));
        let inner = index_of(&layout, &[&b]);
        let outer = index_of(&layout, &[&a, &inner]);
        let m = layout.read_manifest(&a).unwrap();
        let id = |d: &Descriptor| d.digest.hex()[60..].to_string();
        let (ca, la) = (id(&m.config), id(&m.layers[0]));
        assert_eq!(
            steps(&layout, &outer, true),
            [
                format!("0 enter {}", id(&outer)),
                format!("0 index {}", id(&outer)),
                format!("1 enter {}", id(&a)),
                format!("1 manifest {}", id(&a)),
                format!("1 enter {}", id(&inner)),
                format!("1 index {}", id(&inner)),
                format!("2 enter {}", id(&b)),
                format!("2 manifest {}", id(&b)),
            ]
        );
        let all = steps(&layout, &a, false);
        assert_eq!(
            all,
            [
                format!("0 enter {}", id(&a)),
                format!("0 manifest {}", id(&a)),
                format!("1 enter {ca}"),
                format!("1 enter {la}"),
            ]
        );
    }

    #[test]
    fn a_missing_tag_lists_a_few_of_the_tags_there_are_alike_ones_first() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("s")).unwrap();
        let err = |tag: &str| {
            format!(
                "{:#}",
                layout.resolve(&Target::Tag(tag.into()), None).unwrap_err()
            )
        };
        let root = layout.root().display().to_string();
        assert_eq!(
            err("x"),
            format!("{root}: no image tagged \"x\"; the layout has no tags")
        );
        let a = image(&layout, "a");
        for tag in ["web:v1", "base", "httpd:2.4", "a", "b", "c", "httpd:2.6"] {
            layout.set_tag(tag, a.clone()).unwrap();
        }
        // httpd's first, then the others in index order; five of the seven.
        assert_eq!(
            err("httpd:2.5"),
            format!(
                "{root}: no image tagged \"httpd:2.5\"; its tags: httpd:2.4, httpd:2.6, web:v1, base, a (and 2 more)"
            )
        );
        assert_eq!(
            err("latest"),
            format!(
                "{root}: no image tagged \"latest\" (a LAYOUT alone means LAYOUT:latest); its tags: web:v1, base, httpd:2.4, a, b (and 2 more)"
            )
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("s")).unwrap();
        let mut top = image(&layout, "deep");
        // MAX_INDEX_DEPTH - 1 indexes above the manifest: it is the MAX_INDEX_DEPTH-th read.
        for _ in 1..MAX_INDEX_DEPTH {
            top = index_of(&layout, &[&top]);
        }
        assert!(
            steps(&layout, &top, true)
                .iter()
                .all(|s| !s.contains("unreadable"))
        );
        layout.resolve(&Target::Digest(top.digest.clone()), None).unwrap();
        let deeper = index_of(&layout, &[&top]);
        let last = steps(&layout, &deeper, true).pop().unwrap();
        assert!(last.ends_with("nested too deep"), "{last}");
        let err = format!(
            "{:#}",
            layout
                .resolve(&Target::Digest(deeper.digest.clone()), None)
                .unwrap_err()
        );
        assert!(err.contains("nested too deep"), "{err}");
    }

    #[test]
    fn a_blob_that_says_it_is_something_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("s")).unwrap();
        let a = image(&layout, "a");
        // An index that calls itself a manifest: CVE-2021-41190's blob read two ways.
        let bytes = json::canonical(&json!({"schemaVersion": 2, "mediaType": media::MANIFEST,
                                            "manifests": [a]}))
        .unwrap();
        let (digest, _) = layout.write_blob(&bytes).unwrap();
        let confused = Descriptor::new(media::INDEX, digest.clone(), bytes.len() as u64);
        layout.set_tag("confused", confused.clone()).unwrap();
        for err in [
            layout.read_index_blob(&confused).unwrap_err(),
            layout.resolve(&Target::Tag("confused".into()), None).unwrap_err(),
        ] {
            assert!(
                matches!(err.downcast_ref::<Error>(), Some(Error::MediaTypeConfusion { digest: d, .. }) if *d == digest),
                "{err:#}"
            );
        }
        let outer = index_of(&layout, &[&confused]);
        let last = steps(&layout, &outer, true).pop().unwrap();
        assert!(
            last.contains("unreadable") && last.contains("media type confusion"),
            "{last}"
        );
    }
}
