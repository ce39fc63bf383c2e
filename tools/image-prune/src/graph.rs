//! What an index entry reaches: a manifest its config and layers, an image index its
//! manifests, recursively; anything else is a leaf (image-layout.md: an unknown media type
//! MUST NOT be an error, and its blob is kept). A manifest's `subject` is not followed from
//! the referrer to the subject: image-spec calls it "a weak association", so a kept signature
//! does not keep the image it signs (the reverse rule, a kept image keeps its referrers, is in
//! [`crate::prune`]).

use common::descriptor::Descriptor;
use common::digest::Digest;
use common::error::Error;
use common::layout::{Index, Layout};
use common::media;
use common::progress::Progress;
use common::time::Time;
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
        let mut stack = vec![root.clone()];
        while let Some(desc) = stack.pop() {
            if !self.seen.insert(desc.digest.clone()) {
                continue;
            }
            progress.inc(1);
            match children(layout, &desc) {
                Ok(c) => {
                    self.children
                        .insert(desc.digest.clone(), c.iter().map(|c| c.digest.clone()).collect());
                    stack.extend(c);
                }
                Err(e)
                    if e.downcast_ref::<Error>()
                        .is_some_and(|e| matches!(e, Error::BlobMissing { .. })) =>
                {
                    if unreadable == Unreadable::Fail {
                        self.missing.push(desc.digest.clone());
                    }
                }
                Err(e) if unreadable == Unreadable::Fail => {
                    return Err(e.context(format!(
                        "{} is in use and cannot be read, so what it references is unknown",
                        desc.digest
                    )));
                }
                Err(_) => {}
            }
        }
        Ok(())
    }
}

/// The descriptors a manifest or index blob references (its `subject` excepted).
fn children(layout: &Layout, desc: &Descriptor) -> crate::Result<Vec<Descriptor>> {
    if media::is_manifest(&desc.media_type) {
        let m = layout.read_manifest(desc)?;
        let mut out = Vec::with_capacity(m.layers.len() + 1);
        out.push(m.config);
        out.extend(m.layers);
        Ok(out)
    } else if media::is_index(&desc.media_type) {
        Ok(read_index(layout, desc)?.manifests)
    } else {
        Ok(Vec::new())
    }
}

fn read_index(layout: &Layout, desc: &Descriptor) -> crate::Result<Index> {
    let index: Index = layout.read_json(desc)?;
    if let Some(inside) = &index.media_type
        && inside != &desc.media_type
    {
        anyhow::bail!(
            "{}: media type confusion: descriptor says {:?}, blob says {inside:?}",
            desc.digest,
            desc.media_type
        );
    }
    Ok(index)
}

/// A blob nothing references, as a manifest or index descriptor when it is one: a JSON
/// object with a manifest or index `mediaType`, or without one, the shape of either. Anything
/// else (a layer, a config, unreadable or corrupt bytes) is None.
pub fn sniff(layout: &Layout, digest: &Digest, size: u64) -> Option<Descriptor> {
    if size > common::json::max_json() {
        return None;
    }
    // Layers are most orphans: one byte tells them apart without reading them.
    let mut first = [0u8; 1];
    let mut f = std::fs::File::open(layout.blob_path(digest)).ok()?;
    f.read_exact(&mut first).ok()?;
    if !matches!(first[0], b'{' | b' ' | b'\t' | b'\r' | b'\n') {
        return None;
    }
    let v: Value = layout
        .read_json(&Descriptor::new("", digest.clone(), size))
        .ok()?;
    let media_type = match v.get("mediaType").and_then(Value::as_str) {
        Some(m) if media::is_manifest(m) || media::is_index(m) => m,
        Some(_) => return None,
        None if v.get("manifests").is_some_and(Value::is_array) => media::INDEX,
        None if v.get("config").is_some_and(Value::is_object) => media::MANIFEST,
        None => return None,
    };
    Some(Descriptor::new(media_type, digest.clone(), size))
}

/// The `subject` of a manifest or index, if it has one and can be read.
pub fn subject(layout: &Layout, desc: &Descriptor) -> Option<Digest> {
    let s = if media::is_manifest(&desc.media_type) {
        layout.read_manifest(desc).ok()?.subject
    } else if media::is_index(&desc.media_type) {
        read_index(layout, desc).ok()?.subject
    } else {
        None
    };
    s.map(|d| d.digest)
}

/// When the image was made (its config's `created`, seconds since the epoch); for an index,
/// its newest image. None when unknown.
pub fn created(layout: &Layout, desc: &Descriptor) -> Option<i64> {
    created_within(layout, desc, 8)
}

fn created_within(layout: &Layout, desc: &Descriptor, depth: u32) -> Option<i64> {
    if media::is_manifest(&desc.media_type) {
        let m = layout.read_manifest(desc).ok()?;
        let config: Value = layout.read_json(&m.config).ok()?;
        Time::parse(config.get("created")?.as_str()?).ok().map(|t| t.secs)
    } else if media::is_index(&desc.media_type) && depth > 0 {
        read_index(layout, desc)
            .ok()?
            .manifests
            .iter()
            .filter_map(|m| created_within(layout, m, depth - 1))
            .max()
    } else {
        None
    }
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
