//! `--overlay UPPERDIR`: an overlayfs upper directory as an OCI changeset, without walking
//! the lower layers. Every entry of the upper directory is a change (overlayfs copies up what
//! it changes, with its parents); a 0/0 character device is a whiteout; a directory with
//! `trusted.overlay.opaque` (or `user.overlay.opaque`) = `y` hides its lower content. Overlay
//! xattrs are internals and never reach the layer. A `metacopy` file holds only metadata, its
//! content stays in the lower layer (at its `redirect` path when it has one): `--lower`
//! resolves it. A renamed directory (`redirect` on a directory) is refused.

use anyhow::bail;
use common::changeset::{Change, ChangeKind, Diff, Plan};
use common::entry::{Kind, TreePath, display};
use common::tree::{DirOptions, Exclude, Source, Tree};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OPAQUE: [&[u8]; 2] = [b"trusted.overlay.opaque", b"user.overlay.opaque"];
const METACOPY: [&[u8]; 2] = [b"trusted.overlay.metacopy", b"user.overlay.metacopy"];
const REDIRECT: [&[u8]; 2] = [b"trusted.overlay.redirect", b"user.overlay.redirect"];

/// The changeset of an overlayfs upper directory: the upper tree (whiteouts taken out) and
/// the plan of the tar. `lower` is the lower directory, for metacopy files.
pub fn changeset(
    upper_dir: &Path,
    lower: Option<&Path>,
    exclude: &Exclude,
    warn: &(dyn Fn(&str) + Sync),
) -> common::Result<(Tree, Diff, Plan)> {
    let opts = DirOptions {
        exclude: Some(exclude),
        keep_overlay_xattrs: true,
        warn: Some(warn),
    };
    let mut tree = Tree::from_dir(upper_dir, &opts)?;
    let mut changes = Vec::new();
    let mut opaque = Vec::new();
    let mut whiteouts = Vec::new();
    for (p, node) in tree.nodes.iter_mut() {
        let has = |names: [&[u8]; 2]| names.iter().find_map(|n| node.meta.xattrs.get(*n).cloned());
        let metacopy = has(METACOPY).is_some();
        let redirect = has(REDIRECT);
        if node.meta.kind == Kind::Dir && has(OPAQUE).as_deref() == Some(b"y") {
            opaque.push(p.0.clone());
        }
        if node.meta.kind == Kind::Dir && redirect.is_some() {
            bail!(
                "{}: a renamed directory (overlay redirect_dir) cannot be converted; \
                 diff the lower and merged directories instead",
                display(&p.0)
            );
        }
        if metacopy {
            let Some(lower) = lower else {
                bail!(
                    "{}: a metacopy file keeps its content in the lower layer: give --lower DIR",
                    display(&p.0)
                );
            };
            let origin = match &redirect {
                Some(r) => common::entry::normalize(r)?,
                None => p.0.clone(),
            };
            node.source = Source::Fs(lower.join(std::ffi::OsStr::from_bytes(&origin)));
        }
        node.meta
            .xattrs
            .retain(|k, _| !k.starts_with(b"trusted.overlay.") && !k.starts_with(b"user.overlay."));
        if p.0.is_empty() {
            continue;
        }
        if node.meta.kind == Kind::Char && node.meta.rdev == (0, 0) {
            whiteouts.push(p.clone());
            changes.push(Change {
                path: p.0.clone(),
                kind: ChangeKind::Deleted,
            });
        } else {
            changes.push(Change {
                path: p.0.clone(),
                kind: ChangeKind::Changed,
            });
        }
    }
    for w in &whiteouts {
        tree.nodes.remove(w);
    }
    let diff = Diff {
        changes,
        touched_dirs: Vec::new(),
    };
    let mut plan = Plan::changeset(&diff, &Tree::new(), &tree, false);
    for d in opaque {
        if tree.nodes.contains_key(&TreePath(d.clone())) {
            plan.add_opaque(&d);
        }
    }
    Ok((tree, diff, plan))
}
