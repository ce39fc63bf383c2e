//! layer-diff on a real Debian root file system (debootstrap --variant=minbase bookworm) and a
//! container-style change of several thousand files: `--list` against the docker diff model,
//! and the changeset, committed with our tools, unpacked by umoci and by `image-stack --rootfs`
//! to exactly the changed tree.
//!
//! The base is made once and cached under target/debootstrap-cache/ (a lock keeps parallel test
//! runs from making it twice); `make bench`'s bench/cache/debian is used when present. The
//! mirror is this machine's apt source. Needs root (debootstrap, chown, devices).

use crate::support::docker_diff::reference_list;
use crate::support::*;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The first non-security Debian mirror of this machine's apt sources (deb822 or one-line).
fn mirror() -> Option<String> {
    let mut sources: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    sources.sort();
    let deb822 = sources
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("URIs:"))
                .flat_map(|uris| uris.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        });
    let one_line = fs::read_to_string("/etc/apt/sources.list")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("deb "))
        .filter_map(|rest| {
            rest.split_whitespace()
                .find(|w| w.contains("://"))
                .map(str::to_string)
        })
        .collect::<Vec<_>>();
    deb822.chain(one_line).find(|u| !u.contains("security"))
}

/// The cached minbase root file system, made on first use; None (a visible skip) when it
/// cannot be made here outside CI.
fn debian_base() -> Option<PathBuf> {
    let bench = repo().join("bench/cache/debian");
    if bench.join(".done").is_file() {
        return Some(bench);
    }
    if !needs_root("debootstrap") {
        return None;
    }
    peer("debootstrap")?;
    let cache = bin_dir().parent().expect("target/").join("debootstrap-cache");
    fs::create_dir_all(&cache).expect("mkdir debootstrap-cache");
    let rootfs = cache.join("bookworm-minbase");
    // Made in a temporary directory, marked complete, then renamed into place.
    // Held until the base is complete: other test processes wait here rather than race.
    let lock = fs::File::create(cache.join(".lock")).expect("lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    if !rootfs.join(".done").is_file() {
        let Some(mirror) = mirror() else {
            assert!(!in_ci(), "no Debian mirror in /etc/apt/sources.list.d/*.sources");
            eprintln!("SKIPPED: no Debian mirror in this machine's apt sources");
            return None;
        };
        let partial = cache.join("bookworm-minbase.partial");
        let _ = fs::remove_dir_all(&partial);
        let _ = fs::remove_dir_all(&rootfs);
        eprintln!("making the Debian base with debootstrap from {mirror} (once, 2-3 minutes)");
        let out = Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm", s(&partial), &mirror])
            .output()
            .expect("running debootstrap");
        assert!(
            out.status.success(),
            "debootstrap failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(partial.join(".done"), b"").expect("marking the base complete");
        fs::rename(&partial, &rootfs).expect("publishing the base");
    }
    Some(rootfs)
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Appends a line to every regular file beneath `dir`; returns how many.
fn modify_all(dir: &Path) -> usize {
    let mut n = 0;
    for e in walkdir::WalkDir::new(dir) {
        let e = e.expect("walk");
        if e.file_type().is_file() {
            let mut text = fs::read(e.path()).expect("read");
            text.extend_from_slice(b"\n# changed by the container\n");
            fs::write(e.path(), text).expect("write");
            n += 1;
        }
    }
    n
}

/// The changes a container makes, of every kind, thousands of paths in all.
fn change(upper: &Path) {
    let u = |p: &str| upper.join(p);
    fs::create_dir_all(u("opt/app")).unwrap();
    // Added trees (copies, metadata kept).
    for (from, to) in [
        ("usr/share/zoneinfo", "opt/app/zoneinfo"),
        ("usr/share/doc", "opt/app/doc"),
        ("usr/share/locale", "opt/app/locale"),
    ] {
        run_ok(Command::new("cp").args(["-a", s(&u(from)), s(&u(to))]));
    }
    // Content changes.
    let modified = modify_all(&u("usr/lib/x86_64-linux-gnu/perl-base"));
    assert!(modified > 300, "perl-base has {modified} files");
    file(
        upper,
        "etc/hosts",
        b"127.0.0.1 localhost\n127.0.0.2 app\n",
        0o644,
        1_700_000_000,
    );
    // Removed: whole trees and single files.
    fs::remove_dir_all(u("usr/share/man")).unwrap();
    fs::remove_dir_all(u("usr/share/locale")).unwrap();
    fs::remove_file(u("usr/bin/tic")).unwrap();
    // chmod (setuid, a directory), chown (a whole tree, one file).
    fs::set_permissions(u("usr/bin/env"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(u("etc/apt"), fs::Permissions::from_mode(0o700)).unwrap();
    run_ok(Command::new("chown").args(["-R", "1000:1000", s(&u("usr/lib/x86_64-linux-gnu/gconv"))]));
    std::os::unix::fs::chown(u("etc/hostname"), Some(1234), Some(5678)).unwrap();
    // xattrs, in two namespaces.
    xattr::set(u("etc/passwd"), "user.app", b"yes").unwrap();
    xattr::set(u("etc/group"), "trusted.app", b"t").unwrap();
    // A new hard link to an unchanged file, and a linked pair among the added files.
    fs::hard_link(u("usr/bin/dpkg"), u("opt/app/dpkg-hardlink")).unwrap();
    file(upper, "opt/app/one", b"linked\n", 0o644, 1_700_000_000);
    fs::hard_link(u("opt/app/one"), u("opt/app/two")).unwrap();
    // Type changes: file -> dir, dir -> symlink, symlink -> file, file -> symlink.
    fs::remove_file(u("etc/motd")).unwrap();
    file(upper, "etc/motd/welcome", b"hello\n", 0o644, 1_700_000_000);
    fs::remove_dir_all(u("usr/share/common-licenses")).unwrap();
    std::os::unix::fs::symlink("/usr/share/doc", u("usr/share/common-licenses")).unwrap();
    fs::remove_file(u("etc/rc0.d/K01hwclock.sh")).unwrap();
    file(
        upper,
        "etc/rc0.d/K01hwclock.sh",
        b"#!/bin/sh\n",
        0o755,
        1_700_000_000,
    );
    fs::remove_file(u("etc/issue.net")).unwrap();
    std::os::unix::fs::symlink("issue", u("etc/issue.net")).unwrap();
    // Special files.
    run_ok(Command::new("mkfifo").arg(u("opt/app/fifo")));
    run_ok(Command::new("mknod").args([s(&u("opt/app/null")), "c", "1", "3"]));
}

/// Asserts two snapshots are equal, showing the first lines that differ (not 10,000 lines).
fn same_tree(got: &str, want: &str, what: &str) {
    if got == want {
        return;
    }
    let (g, w): (HashSet<&str>, HashSet<&str>) = (got.lines().collect(), want.lines().collect());
    let only_got: Vec<&str> = got.lines().filter(|l| !w.contains(l)).take(10).collect();
    let only_want: Vec<&str> = want.lines().filter(|l| !g.contains(l)).take(10).collect();
    panic!("{what} differs from the upper tree\nonly there: {only_got:#?}\nonly in upper: {only_want:#?}");
}

#[test]
fn debian_rootfs_with_thousands_of_changes() {
    let Some(base) = debian_base() else {
        return;
    };
    let Some(_) = peer("umoci") else {
        return;
    };
    let t = tempdir();
    // A copy of the base without the cache's completion marker, and a changed copy of that.
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    run_ok(Command::new("cp").args(["-a", s(&base), s(&lower)]));
    fs::remove_file(lower.join(".done")).expect("the cache's marker");
    run_ok(Command::new("cp").args(["-a", s(&lower), s(&upper)]));
    change(&upper);

    // --list against the docker diff model.
    let list = String::from_utf8(ok(tool("layer-diff").args(["--list", s(&lower), s(&upper)]), b""))
        .expect("utf-8 listing");
    assert_eq!(list, reference_list(&lower, &upper));
    let lines = list.lines().count();
    assert!(lines > 3000, "only {lines} changes");
    for line in [
        "A /opt/app/zoneinfo/Europe/Paris",
        "C /usr/bin/env",
        "D /usr/share/man",
        "C /etc/motd",
        "A /etc/motd/welcome",
        "C /usr/share/common-licenses",
        "A /opt/app/dpkg-hardlink",
        "C /etc/group",
    ] {
        assert!(list.lines().any(|l| l == line), "{line} missing");
    }

    // The changeset committed with our tools, unpacked by umoci: exactly the upper tree (in
    // whole seconds: every entry went through our tar writer, the base's too).
    let want = whole_seconds(&snapshot(&upper));
    let l = t.path().join("L");
    let (l, lo, up) = (s(&l), s(&lower), s(&upper));
    sh(&format!(
        "layer-pack --layout {l} {lo} | image-stack --layer - --tag {l}:base >/dev/null"
    ));
    sh(&format!(
        "layer-diff {lo} {up} | layer-pack --layout {l} \
         | image-stack --from {l}:base --layer - --tag {l}:v1 >/dev/null"
    ));
    let unpack = |tag: &str| {
        let bundle = t.path().join(format!("bundle-{tag}"));
        sh(&format!("umoci unpack --image {l}:{tag} {} >&2", s(&bundle)));
        snapshot(&bundle.join("rootfs"))
    };
    same_tree(&unpack("v1"), &want, "umoci unpack of L:v1");

    // LOWER as the image L:base: the same tree again.
    sh(&format!(
        "layer-diff {l}:base {up} | layer-pack --layout {l} \
         | image-stack --from {l}:base --layer - --tag {l}:v2 >/dev/null"
    ));
    same_tree(&unpack("v2"), &want, "umoci unpack of L:v2");

    // Our own unpack of the committed image.
    let rootfs = t.path().join("rootfs");
    ok(
        tool("image-stack").args(["--from", &format!("{l}:v1"), "--rootfs", s(&rootfs)]),
        b"",
    );
    same_tree(&snapshot(&rootfs), &want, "image-stack --rootfs of L:v1");
}
