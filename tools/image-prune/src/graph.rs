//! What an index entry reaches (the layout's walk: a manifest its config and layers, an image
//! index its manifests, recursively; anything else is a leaf, and image-layout.md says an
//! unknown media type MUST NOT be an error, so its blob is kept). A manifest's `subject` is not
//! followed from the referrer to the subject: image-spec calls it "a weak association", so a
//! kept signature does not keep the image it signs (the reverse rule, a kept image keeps its
//! referrers, is in [`crate::prune`]).

use common::descriptor::Descriptor;
use common::digest::Digest;
use common::error::Error;
use common::layout::{Layout, Step, Walk};
use common::media;
use common::progress::Progress;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Read;

/// How a walk treats a blob it cannot read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Fail on a corrupt blob: what a kept image references must be known before anything is
    /// deleted. An absent one is recorded in [`Reach::missing`] and walked no further: the
    /// layout may lack blobs (image-layout.md, e.g. platforms not copied), and no reader can
    /// reach through it either.
    Fail,
    /// Skip its children: an image being removed needs no more than best effort.
    Skip,
}

/// The set of blobs reached so far, and what each manifest or index reached references.
#[derive(Default)]
pub struct Reach {
    seen: HashSet<Digest>,
    children: HashMap<Digest, Vec<Digest>>,
    missing: Vec<Digest>,
}

impl Reach {
    pub fn contains(&self, d: &Digest) -> bool {
        self.seen.contains(d)
    }

    /// Everything reached from `roots`, each blob before the blobs it references (a
    /// topological order: deleting in it never leaves a manifest or index without what it
    /// references, whatever the order of `roots`).
    pub fn parents_first<'a>(&self, roots: impl IntoIterator<Item = &'a Digest>) -> Vec<Digest> {
        let mut done = HashSet::new();
        let mut post = Vec::new();
        for root in roots {
            if !done.insert(root.clone()) {
                continue;
            }
            // Depth first, each node with the index of its next child; a node is finished
            // (pushed to `post`) after all its children.
            let mut stack = vec![(root.clone(), 0)];
            while let Some((d, i)) = stack.pop() {
                match self.children.get(&d).and_then(|c| c.get(i)) {
                    Some(child) => {
                        let child = child.clone();
                        stack.push((d, i + 1));
                        if done.insert(child.clone()) {
                            stack.push((child, 0));
                        }
                    }
                    None => post.push(d),
                }
            }
        }
        post.reverse();
        post
    }

    /// Manifests and indexes a kept image references that the layout does not hold.
    pub fn missing(&self) -> &[Digest] {
        &self.missing
    }

    /// Marks `root` and everything it references.
    pub fn walk(
        &mut self,
        layout: &Layout,
        root: &Descriptor,
        unreadable: Unreadable,
        progress: &Progress,
    ) -> crate::Result<()> {
        layout.walk(root, &mut |path, step| {
            let desc = path.last().expect("a walk's path ends at its descriptor");
            match step {
                Step::Enter => {
                    if let [.., parent, _] = path {
                        self.children
                            .entry(parent.digest.clone())
                            .or_default()
                            .push(desc.digest.clone());
                    }
                    if !self.seen.insert(desc.digest.clone()) {
                        return Ok(Walk::Skip);
                    }
                    progress.inc(1);
                    Ok(Walk::Continue)
                }
                Step::Manifest(_) | Step::Index(_) => Ok(Walk::Continue),
                Step::Unreadable(e)
                    if e.downcast_ref::<Error>()
                        .is_some_and(|e| matches!(e, Error::BlobMissing { .. })) =>
                {
                    if unreadable == Unreadable::Fail {
                        self.missing.push(desc.digest.clone());
                    }
                    Ok(Walk::Skip)
                }
                Step::Unreadable(e) if unreadable == Unreadable::Fail => Err(e.context(format!(
                    "{} is in use and cannot be read, so what it references is unknown",
                    desc.digest
                ))),
                Step::Unreadable(_) => Ok(Walk::Skip),
            }
        })?;
        Ok(())
    }
}

/// A blob nothing references, as a manifest or index descriptor when it is one: a JSON
/// object with a manifest or index `mediaType`, or without one, the shape of either. Anything
/// else (a layer, a config, unreadable or corrupt bytes) is None.
pub fn sniff(layout: &Layout, digest: &Digest, size: u64) -> Option<Descriptor> {
    if size > layout.max_json() {
        return None;
    }
    // Layers are most orphans: one byte tells them apart without reading them.
    let mut first = [0u8; 1];
    let mut f = std::fs::File::open(layout.blob_path(digest)).ok()?;
    f.read_exact(&mut first).ok()?;
    if !matches!(first[0], b'{' | b' ' | b'\t' | b'\r' | b'\n') {
        return None;
    }
    let bytes = layout
        .read_blob(&Descriptor::new("", digest.clone(), size))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let media_type = match v.get("mediaType").and_then(Value::as_str) {
        Some(m) if media::is_manifest(m) || media::is_index(m) => m,
        Some(_) => return None,
        // Without a mediaType, the shape decides; an image config has a `config` object too, but
        // no schemaVersion and no descriptor in it.
        None if v.get("schemaVersion").is_none() => return None,
        None if v.get("manifests").is_some_and(Value::is_array) => media::INDEX,
        None if v.pointer("/config/digest").is_some_and(Value::is_string) => media::MANIFEST,
        None => return None,
    };
    Some(Descriptor::new(media_type, digest.clone(), size))
}

/// The `subject` of a manifest or index, if it has one and can be read.
pub fn subject(layout: &Layout, desc: &Descriptor) -> Option<Digest> {
    layout.subject_of(desc).ok()?.map(|d| d.digest)
}

/// When the image was made (its config's `created`, seconds since the epoch); for an index,
/// its newest image. None when unknown.
pub fn created(layout: &Layout, desc: &Descriptor) -> Option<i64> {
    let mut newest = None;
    layout
        .walk(desc, &mut |_, step| {
            Ok(match step {
                Step::Manifest(m) => {
                    let created = layout.read_config(&m.config).ok().and_then(|c| c.created_time());
                    newest = newest.max(created.map(|t| t.secs));
                    Walk::Skip
                }
                Step::Unreadable(_) => Walk::Skip,
                Step::Enter | Step::Index(_) => Walk::Continue,
            })
        })
        .ok()?;
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap()
    }

    #[test]
    fn parents_come_before_what_they_reference_whatever_the_root_order() {
        // a (an index) -> b, e (manifests) -> c and f, f (a shared layer); b is a root too.
        let mut reach = Reach::default();
        reach.children.insert(d('a'), vec![d('b'), d('e')]);
        reach.children.insert(d('b'), vec![d('c'), d('f')]);
        reach.children.insert(d('e'), vec![d('f')]);
        for roots in [
            vec![d('b'), d('a')],
            vec![d('a'), d('b')],
            vec![d('e'), d('b'), d('a')],
        ] {
            let order = reach.parents_first(&roots);
            let pos = |x: char| order.iter().position(|o| *o == d(x)).unwrap();
            assert_eq!(order.len(), 5, "{roots:?}");
            for (parent, child) in [('a', 'b'), ('a', 'e'), ('b', 'c'), ('b', 'f'), ('e', 'f')] {
                assert!(
                    pos(parent) < pos(child),
                    "{parent} before {child} with roots {roots:?}"
                );
            }
        }
        assert_eq!(reach.parents_first([&d('e')]), vec![d('e'), d('f')]);
    }
}
