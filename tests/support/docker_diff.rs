//! The reference for `layer-diff --list`: a small model of moby's `ChangesDirs` (pkg/archive
//! changes.go) written from the Go source's structure (a recursive `addChanges` over lstat
//! results), independent of `common::changeset`. Shared by the layer-diff and Debian tests.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Clone, PartialEq)]
struct Stat {
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: u64,
    mtime: (i64, i64),
    target: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn stat(p: &Path) -> Stat {
    let m = std::fs::symlink_metadata(p).unwrap();
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(p)
        .unwrap()
        .filter(|n| n.as_bytes() != b"security.selinux")
        .map(|n| {
            (
                n.as_bytes().to_vec(),
                xattr::get(p, &n).unwrap().unwrap_or_default(),
            )
        })
        .collect();
    xattrs.sort();
    Stat {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev(),
        size: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        target: m
            .file_type()
            .is_symlink()
            .then(|| std::fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec()),
        xattrs,
    }
}

fn is_dir(st: &Stat) -> bool {
    st.mode & 0o170000 == 0o040000
}

/// statDifferent, extended by the contract with symlink targets and every xattr.
fn stat_different(a: &Stat, b: &Stat) -> bool {
    let same_time = a.mtime == b.mtime || (a.mtime.0 == b.mtime.0 && (a.mtime.1 == 0 || b.mtime.1 == 0));
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.rdev != b.rdev
        || a.xattrs != b.xattrs
        || (!is_dir(a) && (!same_time || a.size != b.size || a.target != b.target))
}

fn children(dir: &Path) -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), e.path())
            })
            .collect()
        })
        .unwrap_or_default()
}

/// moby's FileInfo.addChanges: `new` is a path of UPPER, `old` its LOWER counterpart;
/// `reported` is moby's `added` flag (the path was already listed as C by its parent).
fn add_changes(rel: &str, new: &Path, old: Option<&Path>, reported: bool, out: &mut Vec<(char, String)>) {
    let at_entry = out.len();
    let mut added = reported;
    if old.is_none() {
        out.push(('A', rel.to_string()));
        added = true;
    }
    let new_is_dir = is_dir(&stat(new));
    let mut old_children = match old {
        Some(o) if new_is_dir => children(o),
        _ => BTreeMap::new(),
    };
    if new_is_dir {
        for (name, child) in children(new) {
            let child_rel = format!("{rel}/{name}");
            let old_child = old_children.remove(&name);
            let changed = old_child
                .as_ref()
                .is_some_and(|oc| stat_different(&stat(oc), &stat(&child)));
            if changed {
                out.push(('C', child_rel.clone()));
            }
            add_changes(&child_rel, &child, old_child.as_deref(), changed, out);
        }
    }
    for name in old_children.keys() {
        out.push(('D', format!("{rel}/{name}")));
    }
    if out.len() > at_entry && new_is_dir && !added && !rel.is_empty() {
        out.insert(at_entry, ('C', rel.to_string()));
    }
}

/// The `docker diff` lines of `lower` → `upper`, sorted as moby sorts changes where it does
/// (`changesByPath`: Go's `<` on the path strings, a byte comparison; `/a-b` before `/a/b`).
pub fn reference_list(lower: &Path, upper: &Path) -> String {
    let mut out = Vec::new();
    add_changes("", upper, Some(lower), false, &mut out);
    let mut lines: Vec<(char, String)> = out;
    lines.sort_by(|a, b| a.1.as_bytes().cmp(b.1.as_bytes()));
    lines.iter().map(|(k, p)| format!("{k} {p}\n")).collect()
}
