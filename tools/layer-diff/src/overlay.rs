//! `--overlay UPPERDIR`: an overlayfs upper directory as an OCI changeset.
//!
//! Without `--lower`, the lower layers are never walked: every entry of the upper directory is
//! a change (overlayfs copies up what it changes, with its parents); a 0/0 character device is
//! a whiteout; a directory with `trusted.overlay.opaque` (or `user.overlay.opaque`) = `y` hides
//! its lower content. Overlay xattrs are internals and never reach the layer. What needs the
//! lower is refused: a `metacopy` file (its content stays in the lower layer) and a renamed
//! directory (`redirect`: its content is the lower directory it was renamed from).
//!
//! With `--lower DIR`, the merged view the mount shows is rebuilt from the lower tree and the
//! upper directory (whiteouts, opaque directories, redirects, metacopy content), and compared
//! with the lower as `layer-diff LOWER MERGED` would: so `--list` and `--json` work too.

use anyhow::{Context, bail};
use common::changeset::{self, Change, ChangeKind, Diff, Plan};
use common::entry::{Kind, Meta};
use common::path::{TreePath, basename, display, join, parent};
use common::tree::{DirOptions, Exclude, Source, Tree};
use common::xattrs;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The changeset of an overlayfs upper directory: the tree the tar is written from, the
/// changes, and the plan of the tar. With `lower` (the lower directory), the tree is the
/// merged view and the changes are those of lower against it.
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
    let upper = Tree::from_dir(upper_dir, &opts)?;
    match lower {
        Some(lower_dir) => {
            let lower_opts = DirOptions {
                keep_overlay_xattrs: false,
                ..opts
            };
            let lower = Tree::from_dir(lower_dir, &lower_opts)
                .with_context(|| format!("--lower {}", lower_dir.display()))?;
            let merged = merge(&lower, upper, lower_dir)?;
            let diff = changeset::diff(&lower, &merged, None)?;
            let plan = Plan::changeset(&diff, &lower, &merged, false);
            Ok((merged, diff, plan))
        }
        None => upper_only(upper),
    }
}

/// The conversion that reads the upper directory alone.
fn upper_only(mut tree: Tree) -> common::Result<(Tree, Diff, Plan)> {
    let mut changes = Vec::new();
    let mut opaque = Vec::new();
    let mut whiteouts = Vec::new();
    for (p, node) in tree.iter() {
        let marks = Marks::of(&node.meta);
        if marks.opaque {
            opaque.push(p.0.to_vec());
        }
        if node.meta.kind == Kind::Dir && marks.redirect.is_some() {
            bail!(
                "{}: a renamed directory (overlay redirect_dir) keeps its content in the lower \
                 layer: give --lower DIR",
                display(&p.0)
            );
        }
        if marks.metacopy {
            bail!(
                "{}: a metacopy file keeps its content in the lower layer: give --lower DIR",
                display(&p.0)
            );
        }
        if p.0.is_empty() {
            continue;
        }
        if marks.whiteout {
            whiteouts.push(p.clone());
            changes.push(Change {
                path: p.0.to_vec(),
                kind: ChangeKind::Deleted,
            });
        } else {
            changes.push(Change {
                path: p.0.to_vec(),
                kind: ChangeKind::Changed,
            });
        }
    }
    tree.retain_xattrs(|name| !xattrs::is_overlay(name));
    for w in &whiteouts {
        tree.remove(&w.0);
    }
    let diff = Diff {
        changes,
        touched_dirs: Vec::new(),
    };
    let mut plan = Plan::changeset(&diff, &Tree::new(), &tree, false);
    for d in opaque {
        if tree.get(&d).is_some() {
            plan.add_opaque(&d);
        }
    }
    Ok((tree, diff, plan))
}

/// What overlayfs records on an upper entry.
struct Marks {
    whiteout: bool,
    opaque: bool,
    metacopy: bool,
    redirect: Option<Vec<u8>>,
}

impl Marks {
    fn of(meta: &Meta) -> Marks {
        let has = |key: &[u8]| xattrs::overlay(meta.xattrs(), key);
        Marks {
            whiteout: meta.kind == Kind::Char && meta.rdev == (0, 0),
            opaque: meta.kind == Kind::Dir && has(b"opaque") == Some(b"y"),
            metacopy: has(b"metacopy").is_some(),
            redirect: has(b"redirect").map(<[u8]>::to_vec),
        }
    }
}

/// The merged view of `lower` under `upper`, as the overlay mount shows it. Upper entries come
/// parents first; each directory's lower counterpart (its own path, or where a redirect says
/// it was renamed from) is tracked, so that a renamed directory shows its lower content at its
/// new path and a metacopy file reads its content from the right lower file.
fn merge(lower: &Tree, upper: Tree, lower_dir: &Path) -> common::Result<Tree> {
    let mut merged = lower.clone();
    // Upper directory -> the lower directory merged beneath it (None: nothing, opaque or new).
    let mut origin: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    for (TreePath(p), mut node) in upper.into_nodes() {
        let p = p.into_vec();
        let marks = Marks::of(&node.meta);
        node.meta.retain_xattrs(|name| !xattrs::is_overlay(name));
        if p.is_empty() {
            // The mount's root is the upper directory's root.
            origin.insert(p.clone(), Some(Vec::new()));
            merged.insert(p, node)?;
            continue;
        }
        let below = origin.get(parent(&p)).cloned().flatten();
        if marks.whiteout || node.meta.kind != Kind::Dir {
            merged.remove(&p);
        }
        if marks.whiteout {
            continue;
        }
        // The lower path this entry stands for: a redirect is absolute from the lower root, or
        // a name in the parent's lower directory (a rename within one directory).
        let from = match &marks.redirect {
            Some(r) if r.starts_with(b"/") => Some(
                common::path::normalize(r).with_context(|| format!("{}: overlay redirect", display(&p)))?,
            ),
            Some(r) => below.map(|b| join(&b, r)),
            None => below.map(|b| join(&b, basename(&p))),
        };
        if marks.metacopy {
            let from = from
                .as_deref()
                .with_context(|| format!("{}: a metacopy file without a lower file", display(&p)))?;
            match lower.get(from) {
                Some(l) if l.meta.kind == Kind::File => {
                    node.source = Source::Fs(lower_dir.join(OsStr::from_bytes(from)).into());
                    node.meta.size = l.meta.size;
                }
                _ => bail!(
                    "{}: metacopy of {}, which is not a file of the lower",
                    display(&p),
                    display(from)
                ),
            }
        }
        if node.meta.kind == Kind::Dir {
            let from =
                from.filter(|f| !marks.opaque && lower.get(f).is_some_and(|l| l.meta.kind == Kind::Dir));
            // Unless it still is the same lower directory (kept in place), its content is the
            // lower directory it comes from, or nothing.
            let moved = from.as_deref() != Some(p.as_slice());
            merged.insert(p.clone(), node)?;
            if moved {
                match &from {
                    Some(f) => merged.graft(&p, lower, f)?,
                    None => {
                        merged.remove_subtree(&p);
                    }
                }
            }
            origin.insert(p, from);
            continue;
        }
        merged.insert(p, node)?;
    }
    Ok(merged)
}
