//! End-to-end tests of layer-diff: run the built binary on real trees in temp dirs.
//!
//! The reference for `--list` is `support::docker_diff`, a model of moby's `ChangesDirs`
//! independent of `common::changeset`. Changeset tars are checked by applying them with umoci,
//! a peer.

use crate::support::docker_diff::reference_list;
use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn diff(args: &[&str]) -> Vec<u8> {
    ok(tool("layer-diff").args(args), b"")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// LOWER = the sample tree plus entries for type changes, a directory to empty and refill and
/// a file to link to; UPPER = a copy with a change of every kind.
fn lower_and_upper(root: &Path) -> (PathBuf, PathBuf) {
    let lower = root.join("lower");
    let upper = root.join("upper");
    sample_tree(&lower);
    file(&lower, "t/file2dir", b"f", 0o644, 1_600_000_000);
    file(&lower, "t/dir2file/x", b"x", 0o644, 1_600_000_000);
    file(&lower, "t/file2link", b"f", 0o644, 1_600_000_000);
    file(&lower, "t/plain", b"plain", 0o644, 1_600_000_000);
    file(&lower, "refill/a", b"a", 0o644, 1_600_000_000);
    file(&lower, "refill/b", b"b", 0o644, 1_600_000_000);
    std::os::unix::fs::symlink("plain", lower.join("t/link2dir")).unwrap();
    for d in ["t/dir2file", "t", "refill"] {
        mtime(&lower, d, 1_600_000_500);
    }
    let status = Command::new("cp")
        .args(["-a", s(&lower), s(&upper)])
        .status()
        .unwrap();
    assert!(status.success());

    let u = |p: &str| upper.join(p);
    file(&upper, "etc/new.conf", b"added\n", 0o644, 1_600_001_000); // add
    file(&upper, "newdir/sub/f", b"nested add\n", 0o600, 1_600_001_000); // added tree
    std::fs::remove_file(u("etc/hostname")).unwrap(); // remove
    std::fs::remove_dir_all(u("var/lib/data/deep")).unwrap(); // removed tree
    file(
        &upper,
        "etc/passwd",
        b"root:x:0:0::/root:/bin/bash\nnew:x:1:1::/:/bin/sh\n",
        0o644,
        1_600_002_000,
    ); // content
    std::fs::set_permissions(u("bin/su"), std::fs::Permissions::from_mode(0o755)).unwrap(); // chmod
    if is_root() {
        // chown: only root may give a file away; a developer's run without root still checks
        // every other kind of change (the tests that apply with umoci skip, visibly).
        std::os::unix::fs::lchown(u("run-fifo"), Some(1234), Some(5678)).unwrap();
    }
    mtime(&upper, "usr/lib/libx.so.1", 1_600_003_000); // mtime only (both names of the inode)
    xattr::set(u("opt/app/tagged"), "user.layerkit.test", b"changed").unwrap(); // xattr
    std::fs::remove_file(u("lib")).unwrap(); // symlink retarget
    std::os::unix::fs::symlink("usr/lib", u("lib")).unwrap();
    mtime(&upper, "lib", 1_600_000_000);
    std::fs::remove_file(u("t/file2dir")).unwrap(); // file -> dir
    file(&upper, "t/file2dir/child", b"c", 0o644, 1_600_000_000);
    std::fs::remove_dir_all(u("t/dir2file")).unwrap(); // dir -> file
    file(&upper, "t/dir2file", b"now a file", 0o644, 1_600_000_000);
    std::fs::remove_file(u("t/file2link")).unwrap(); // file -> symlink
    std::os::unix::fs::symlink("/etc/passwd", u("t/file2link")).unwrap();
    std::fs::remove_file(u("t/link2dir")).unwrap(); // symlink -> dir
    std::fs::create_dir(u("t/link2dir")).unwrap();
    std::fs::remove_file(u("refill/a")).unwrap(); // dir emptied and refilled
    std::fs::remove_file(u("refill/b")).unwrap();
    file(&upper, "refill/c", b"c", 0o644, 1_600_000_000);
    std::fs::hard_link(u("t/plain"), u("t/plain-link")).unwrap(); // new link to an unchanged file
    std::fs::set_permissions(u("opt"), std::fs::Permissions::from_mode(0o700)).unwrap(); // dir chmod
    (lower, upper)
}

// ---- applying with umoci ----

fn sha256(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// A tar of a directory made by GNU tar (not by us): the lower layer.
fn gnu_tar(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args([
            "--format=posix",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--sort=name",
        ])
        .args(["-C", s(dir), "-cf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Writes an OCI layout by hand at `store` with one image per (tag, layers).
fn layout(store: &Path, images: &[(&str, &[&[u8]])]) {
    let blobs = store.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let h = sha256(bytes);
        std::fs::write(blobs.join(&h), bytes).unwrap();
        (format!("sha256:{h}"), bytes.len())
    };
    let mut manifests = Vec::new();
    for (tag, layers) in images {
        let descs: Vec<_> = layers.iter().map(|l| put(l)).collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": descs.iter().map(|d| d.0.clone()).collect::<Vec<_>>()},
        });
        let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": descs.iter().map(|(d, n)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n})).collect::<Vec<_>>(),
        });
        let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": tag}}));
    }
    std::fs::write(store.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(store.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Applies `changeset` over a GNU tar of `lower` with `umoci unpack`; returns the snapshot
/// of the result, or None when umoci is missing (skipped visibly outside CI). Compare it with
/// [`as_applied`] of the tree expected.
fn umoci_apply(work: &Path, lower: &Path, changeset: &[u8]) -> Option<String> {
    if !needs_root("umoci unpack keeping owners and devices") {
        return None;
    }
    peer("umoci")?;
    let store = work.join("store");
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_dir_all(work.join("bundle"));
    layout(&store, &[("t", &[&gnu_tar(lower), changeset])]);
    sh(&format!(
        "umoci unpack --image {}:t {}/bundle >&2",
        s(&store),
        s(work)
    ));
    Some(snapshot(&work.join("bundle/rootfs")))
}

#[test]
fn list_follows_docker_diff_semantics() {
    let t = tempdir();
    let (lower, upper) = lower_and_upper(t.path());
    let got = String::from_utf8(diff(&["--list", s(&lower), s(&upper)])).unwrap();
    assert_eq!(got, reference_list(&lower, &upper));
    // Spot checks that the model itself sees what it should.
    for line in [
        "C /bin/su\n",
        "D /etc/hostname\n",
        "A /etc/new.conf\n",
        "A /newdir/sub/f\n",
        "D /var/lib/data/deep\n",
        "C /t/file2dir\n",
        "A /t/file2dir/child\n",
        "A /t/plain-link\n",
        "C /opt\n",
    ] {
        assert!(got.contains(line), "{line} missing from:\n{got}");
    }
    assert_eq!(
        got.contains("C /run-fifo\n"),
        is_root(),
        "chown (root only):\n{got}"
    );
    assert!(
        !got.contains("/var/lib/data/deep/"),
        "a removed tree is one D:\n{got}"
    );
    assert!(
        !got.contains("C /t/plain\n"),
        "a new link does not change its target:\n{got}"
    );
    let json = String::from_utf8(diff(&["--json", s(&lower), s(&upper)])).unwrap();
    let from_json: String = json
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}\n",
                v["kind"].as_str().unwrap(),
                v["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(from_json, got);
    assert!(json.starts_with("{\"path\":\"/"));
}

#[test]
fn changeset_applied_by_umoci_gives_the_upper_tree() {
    let t = tempdir();
    let (lower, upper) = lower_and_upper(t.path());
    let tar = diff(&[s(&lower), s(&upper)]);
    assert_eq!(tar, diff(&[s(&lower), s(&upper)]), "two runs give the same bytes");
    let listing = tar_names(&tar);
    assert!(listing.contains(&"etc/.wh.hostname".to_string()), "{listing:?}");
    assert!(
        listing.contains(&"refill/.wh.a".to_string()),
        "explicit whiteouts by default"
    );
    let Some(applied) = umoci_apply(t.path(), &lower, &tar) else {
        return;
    };
    assert_eq!(applied, as_applied(&snapshot(&upper), &tar));
    // --opaque: the refilled directory gets one opaque marker, the result is the same.
    let opaque = diff(&["--opaque", s(&lower), s(&upper)]);
    let names = tar_names(&opaque);
    assert!(names.contains(&"refill/.wh..wh..opq".to_string()), "{names:?}");
    assert!(!names.contains(&"refill/.wh.a".to_string()));
    assert!(names.contains(&"etc/.wh.hostname".to_string()));
    assert_eq!(
        umoci_apply(t.path(), &lower, &opaque).unwrap(),
        as_applied(&snapshot(&upper), &opaque)
    );
}

/// The snapshot of a tree as it looks with `changeset` applied over a GNU tar of the lower one:
/// the entries the changeset carries in whole seconds (our writer's), the others to the
/// nanosecond (GNU tar's PAX mtimes).
fn as_applied(want: &str, changeset: &[u8]) -> String {
    whole_seconds_of(want, &tar_names(changeset))
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            String::from_utf8_lossy(&e.unwrap().path_bytes())
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

#[test]
fn lower_as_image_or_tar_gives_the_same_changeset() {
    let t = tempdir();
    let (lower, upper) = lower_and_upper(t.path());
    let from_dir = diff(&[s(&lower), s(&upper)]);
    let lower_tar = gnu_tar(&lower);
    let tar_file = t.path().join("lower.tar");
    std::fs::write(&tar_file, &lower_tar).unwrap();
    let store = t.path().join("store");
    layout(
        &store,
        &[("base", &[&lower_tar]), ("top", &[&lower_tar, &from_dir])],
    );
    let image = format!("{}:base", s(&store));
    assert_eq!(diff(&[&image, s(&upper)]), from_dir, "LOWER as an IMAGE");
    assert_eq!(diff(&[s(&tar_file), s(&upper)]), from_dir, "LOWER as a tar file");
    assert_eq!(
        ok(tool("layer-diff").args(["-", s(&upper)]), &lower_tar),
        from_dir,
        "LOWER on stdin"
    );
    // Both sides as images: the stacked view of base + changeset lists the same changes.
    let list = diff(&["--list", s(&lower), s(&upper)]);
    let top = format!("{}:top", s(&store));
    assert_eq!(
        String::from_utf8(diff(&["--list", &image, &top])).unwrap(),
        String::from_utf8(list).unwrap()
    );
    // An image against itself: nothing, and --exit-code says so.
    let same = run(
        tool("layer-diff").args(["--exit-code", "--list", &top, &top]),
        b"",
    );
    assert_eq!((same.status.code(), same.stdout.len()), (Some(0), 0));
    let differs = run(
        tool("layer-diff").args(["--exit-code", "--list", &image, &top]),
        b"",
    );
    assert_eq!(differs.status.code(), Some(1));
    // --ignore-times: the mtime-only change disappears, content changes stay.
    let semantic = String::from_utf8(diff(&["--ignore-times", "--list", &image, &top])).unwrap();
    assert!(!semantic.contains("/usr/lib/libx.so.1"), "{semantic}");
    assert!(semantic.contains("C /etc/passwd\n"), "{semantic}");
}

#[test]
fn upper_as_image_tar_or_stdin_applies_to_the_upper_tree() {
    let t = tempdir();
    let (lower, upper) = lower_and_upper(t.path());
    let from_dir = diff(&[s(&lower), s(&upper)]);
    let (lower_tar, upper_tar) = (gnu_tar(&lower), gnu_tar(&upper));
    let tar_file = t.path().join("upper.tar");
    std::fs::write(&tar_file, &upper_tar).unwrap();
    // Not "store": umoci_apply builds its image there.
    let images = t.path().join("images");
    layout(
        &images,
        &[("flat", &[&upper_tar]), ("stacked", &[&lower_tar, &from_dir])],
    );
    let want = snapshot(&upper);
    let cases = [
        (
            "UPPER as an IMAGE of one layer",
            diff(&[s(&lower), &format!("{}:flat", s(&images))]),
        ),
        (
            "UPPER as an IMAGE of two layers (content from the top one)",
            diff(&[s(&lower), &format!("{}:stacked", s(&images))]),
        ),
        ("UPPER as a tar file", diff(&[s(&lower), s(&tar_file)])),
        (
            "UPPER on stdin",
            ok(tool("layer-diff").args([s(&lower), "-"]), &upper_tar),
        ),
    ];
    for (what, tar) in cases {
        assert_eq!(tar, from_dir, "{what}: the same changeset as from the directory");
        let Some(applied) = umoci_apply(t.path(), &lower, &tar) else {
            return;
        };
        assert_eq!(applied, as_applied(&want, &tar), "{what}: applied by umoci");
    }
}

/// uid/gid 65534 without supplementary groups, as tests/bad_args.rs runs the tools.
fn as_nobody(name: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin_dir().join(name))
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

#[test]
fn a_failure_after_the_tar_started_leaves_no_valid_tar() {
    if !needs_root("switching to uid 65534") {
        return;
    }
    let t = tempdir();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    file(&lower, "a", b"a", 0o644, 1_600_000_000);
    file(&upper, "a", b"a", 0o644, 1_600_000_000);
    // Sorted before the secret and larger than stdout's buffer: written out before it fails.
    file(&upper, "b-big", &vec![5u8; 3 << 20], 0o644, 1_600_000_000);
    file(&upper, "c-secret", b"root only\n", 0o600, 1_600_000_000);
    for d in [&lower, &upper] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = run(as_nobody("layer-diff").args([s(&lower), s(&upper)]), b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("layer-diff: ") && err.contains("c-secret") && err.contains("Permission denied"),
        "{err}"
    );
    assert!(
        out.stdout.len() > 2 << 20,
        "the stream had started: {} bytes",
        out.stdout.len()
    );
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let read: Result<Vec<_>, _> = archive
        .entries()
        .unwrap()
        .map(|e| e.map(|e| e.path_bytes().into_owned()))
        .collect();
    assert!(
        read.is_err(),
        "stdout reads as a complete tar: {:?}",
        read.unwrap()
    );
    let gnu = run(Command::new("tar").arg("-tf").arg("-"), &out.stdout);
    assert!(!gnu.status.success(), "GNU tar accepts stdout");
}

#[test]
fn sockets_are_skipped_with_a_warning() {
    let t = tempdir();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    for root in [&lower, &upper] {
        file(root, "run/pid", b"1\n", 0o644, 1_600_000_000);
    }
    file(&upper, "run/new", b"new\n", 0o644, 1_600_000_000);
    let sock = upper.join("run/app.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = run(tool("layer-diff").args([s(&lower), s(&upper)]), b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning") && err.contains(s(&sock)) && err.contains("socket"),
        "{err}"
    );
    let names = tar_names(&out.stdout);
    assert_eq!(names, ["run", "run/new"], "no socket entry");
    // -q silences the warning, not the data.
    let quiet = run(tool("layer-diff").args(["-q", s(&lower), s(&upper)]), b"");
    assert_eq!((quiet.status.code(), quiet.stderr.len()), (Some(0), 0));
    assert_eq!(quiet.stdout, out.stdout);
}

#[test]
fn source_date_epoch_clamps_newer_mtimes_only() {
    let t = tempdir();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    for root in [&lower, &upper] {
        file(root, "keep", b"k", 0o644, 1_600_000_000);
        file(root, "gone", b"g", 0o644, 1_600_000_000);
        file(root, "olddir/x", b"x", 0o644, 700);
    }
    std::fs::remove_file(upper.join("gone")).unwrap();
    file(&upper, "new", b"new", 0o644, 1_600_000_000);
    file(&upper, "new-but-old", b"old", 0o644, 600);
    file(&upper, "olddir/added", b"added", 0o644, 800);
    mtime(&upper, "olddir", 900);
    file(&upper, "newdir/f", b"f", 0o644, 1_600_000_000); // newdir: mtime now
    let mut cmd = tool("layer-diff");
    cmd.env("SOURCE_DATE_EPOCH", "1000");
    let got = tar_mtimes(&ok(cmd.args([s(&lower), s(&upper)]), b""));
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            ".wh.gone",
            "new",
            "new-but-old",
            "newdir",
            "newdir/f",
            "olddir",
            "olddir/added"
        ]
    );
    assert!(got.iter().all(|(_, m)| *m <= 1000), "{got:?}");
    let of = |n: &str| got.iter().find(|(name, _)| name == n).unwrap().1;
    assert_eq!(
        (of("new"), of("newdir"), of("newdir/f")),
        (1000, 1000, 1000),
        "clamped"
    );
    assert_eq!(
        (of("new-but-old"), of("olddir"), of("olddir/added")),
        (600, 900, 800),
        "older than the epoch: kept"
    );
    let unclamped = tar_mtimes(&diff(&[s(&lower), s(&upper)]));
    assert!(
        unclamped.contains(&("new".to_string(), 1_600_000_000)),
        "{unclamped:?}"
    );
}

#[test]
fn list_rules_in_isolation() {
    let t = tempdir();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    for root in [&lower, &upper] {
        std::fs::create_dir_all(root.join("d")).unwrap();
        file(root, "d/f", b"f", 0o644, 1_600_000_000);
    }
    // A symlink retargeted to a target of the same length (so the same size), same mtime.
    std::os::unix::fs::symlink("aaaa", lower.join("l")).unwrap();
    std::os::unix::fs::symlink("bbbb", upper.join("l")).unwrap();
    // A directory whose only change is an xattr (its mtime is untouched by setting one).
    xattr::set(upper.join("d"), "user.layerkit.dir", b"1").unwrap();
    for root in [&lower, &upper] {
        mtime(root, "l", 1_600_000_000);
        mtime(root, "d", 1_600_000_500);
        mtime(root, "", 1_600_000_500);
    }
    let got = String::from_utf8(diff(&["--list", s(&lower), s(&upper)])).unwrap();
    assert_eq!(got, "C /d\nC /l\n");
    assert_eq!(reference_list(&lower, &upper), got);
}

/// `--list` and `--json` sort as moby sorts changes (pkg/archive changes.go, `changesByPath`:
/// Go's `<` on the path strings, a plain byte comparison), so `/a-b` and `/a.b` come before
/// `/a/b` (`-` and `.` are below `/`). `docker diff` itself prints in map order, unsorted.
/// The tar keeps its own order, sorted with a directory right before its subtree.
#[test]
fn list_order_is_byte_order_of_the_paths() {
    let t = tempdir();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    std::fs::create_dir(&lower).unwrap();
    file(&upper, "a/b", b"b", 0o644, 1_600_000_000);
    file(&upper, "a-b", b"-", 0o644, 1_600_000_000);
    file(&upper, "a.b", b".", 0o644, 1_600_000_000);
    let list = String::from_utf8(diff(&["--list", s(&lower), s(&upper)])).unwrap();
    assert_eq!(list, "A /a\nA /a-b\nA /a.b\nA /a/b\n");
    assert_eq!(reference_list(&lower, &upper), list);
    let json = String::from_utf8(diff(&["--json", s(&lower), s(&upper)])).unwrap();
    let paths: Vec<String> = json
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(paths, ["/a", "/a-b", "/a.b", "/a/b"]);
    assert_eq!(
        tar_names(&diff(&[s(&lower), s(&upper)])),
        ["a", "a/b", "a-b", "a.b"]
    );
}

#[test]
fn exclude_leaves_paths_out() {
    let t = tempdir();
    let (lower, upper) = lower_and_upper(t.path());
    let got = String::from_utf8(diff(&[
        "--list",
        "--exclude",
        "/t",
        "--exclude",
        "*.conf",
        s(&lower),
        s(&upper),
    ]))
    .unwrap();
    assert!(!got.contains(" /t"), "{got}");
    assert!(!got.contains("new.conf"), "{got}");
    assert!(got.contains("C /etc/passwd\n"), "{got}");
}

#[test]
fn bad_inputs_fail_with_one_line_and_no_output() {
    let t = tempdir();
    let dir = t.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    let junk = t.path().join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 2000]).unwrap();
    let store = t.path().join("store");
    layout(&store, &[]);
    let missing_image = format!("{}:nope", s(&store));
    let missing = t.path().join("missing");
    for args in [
        vec![s(&missing), s(&dir)],
        vec![s(&dir), s(&junk)],
        vec![&missing_image, s(&dir)],
        vec!["-", "-"],
    ] {
        let out = run(tool("layer-diff").args(&args), b"");
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        let err = fails(tool("layer-diff").args(&args), b"");
        assert!(err.starts_with("layer-diff: "), "{err}");
    }
    let err = fails(tool("layer-diff").args([s(&dir), s(&junk)]), b"");
    assert!(err.contains("junk.tar"), "{err}");
    let err = fails(tool("layer-diff").args([&missing_image, s(&dir)]), b"");
    assert!(err.contains("nope"), "{err}");
    // A tree holding a whiteout name cannot be represented.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(dir.join(".wh.x"), b"").unwrap();
    assert!(fails(tool("layer-diff").args(["--list", s(&empty), s(&dir)]), b"").contains(".wh."));
}

/// An overlay mount, unmounted when dropped.
struct Overlay {
    upper: PathBuf,
    merged: PathBuf,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

/// Mounts an overlay of `lower` in `root` (upper/, work/, merged/) with extra options. None,
/// with a visible skip, where overlays cannot be mounted (not root; outside CI).
fn mount_overlay(root: &Path, lower: &Path, extra: &str) -> Option<Overlay> {
    if !needs_root("mounting an overlay") {
        return None;
    }
    let (upper, work, merged) = (root.join("upper"), root.join("work"), root.join("merged"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}{extra}",
        s(lower),
        s(&upper),
        s(&work)
    );
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts, s(&merged)])
        .output()
        .unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!in_ci(), "mount -t overlay -o {opts} failed in CI: {err}");
        eprintln!("SKIPPED: mount -t overlay -o {opts} is not possible here: {err}");
        return None;
    }
    Some(Overlay { upper, merged })
}

#[test]
fn overlay_upper_dir_equals_the_diff_of_lower_and_merged() {
    let t = tempdir();
    let lower = t.path().join("lower");
    sample_tree(&lower);
    file(&lower, "gone/a", b"a", 0o644, 1_600_000_000);
    file(&lower, "refill/a", b"a", 0o644, 1_600_000_000);
    let Some(ovl) = mount_overlay(t.path(), &lower, "") else {
        return;
    };
    let (upper, merged) = (ovl.upper.clone(), ovl.merged.clone());
    let m = |p: &str| merged.join(p);
    file(&merged, "etc/new", b"new\n", 0o644, 1_600_005_000);
    std::fs::remove_file(m("etc/hostname")).unwrap();
    std::fs::remove_dir_all(m("gone")).unwrap();
    std::fs::remove_dir_all(m("refill")).unwrap();
    file(&merged, "refill/b", b"b", 0o644, 1_600_005_000);
    file(&merged, "etc/passwd", b"changed\n", 0o644, 1_600_005_000);
    std::fs::set_permissions(m("bin/su"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::hard_link(m("etc/new"), m("etc/new-link")).unwrap();
    let from_overlay = diff(&["--overlay", s(&upper)]);
    let names = tar_names(&from_overlay);
    assert!(names.contains(&"refill/.wh..wh..opq".to_string()), "{names:?}");
    assert!(names.contains(&"etc/.wh.hostname".to_string()), "{names:?}");
    assert!(
        !String::from_utf8_lossy(&from_overlay).contains("overlay."),
        "overlay xattrs leaked"
    );
    let from_diff = diff(&[s(&lower), s(&merged)]);
    let want = snapshot(&merged);
    let Some(applied) = umoci_apply(t.path(), &lower, &from_overlay) else {
        return;
    };
    assert_eq!(applied, as_applied(&want, &from_overlay));
    assert_eq!(
        umoci_apply(t.path(), &lower, &from_diff).unwrap(),
        as_applied(&want, &from_diff)
    );
    // With --lower, added and changed can be told apart: the list is lower against merged.
    let (u, lo) = (s(&upper), s(&lower));
    let list = diff(&["--overlay", u, "--lower", lo, "--list"]);
    assert_eq!(list, diff(&["--list", lo, s(&merged)]));
    assert_eq!(String::from_utf8(list).unwrap(), reference_list(&lower, &merged));
    let json = diff(&["--overlay", u, "--lower", lo, "--json"]);
    assert_eq!(json, diff(&["--json", lo, s(&merged)]));
    let with_lower = diff(&["--overlay", u, "--lower", lo]);
    assert_eq!(
        umoci_apply(t.path(), &lower, &with_lower).unwrap(),
        as_applied(&want, &with_lower)
    );
    // Without it, --list and --json are refused with the reason.
    for flag in ["--list", "--json"] {
        let err = fails(tool("layer-diff").args(["--overlay", u, flag]), b"");
        assert!(err.contains("needs --lower DIR"), "{err}");
    }
}

#[test]
fn overlay_renamed_directories_resolve_from_the_lower() {
    let t = tempdir();
    let lower = t.path().join("lower");
    sample_tree(&lower);
    file(&lower, "srv/old/a", b"a", 0o644, 1_600_000_000);
    file(&lower, "srv/old/sub/b", b"b", 0o600, 1_600_000_000);
    file(&lower, "srv/old/sub/c", b"c", 0o644, 1_600_000_000);
    file(&lower, "srv/away/x", b"x", 0o644, 1_600_000_000);
    mtime(&lower, "srv/old/sub", 1_600_000_500);
    mtime(&lower, "srv/old", 1_600_000_500);
    mtime(&lower, "srv/away", 1_600_000_500);
    mtime(&lower, "srv", 1_600_000_500);
    let Some(ovl) = mount_overlay(t.path(), &lower, ",redirect_dir=on,metacopy=on") else {
        return;
    };
    let (upper, merged) = (ovl.upper.clone(), ovl.merged.clone());
    let m = |p: &str| merged.join(p);
    // Renamed within its directory, then changed inside; renamed into another directory.
    std::fs::rename(m("srv/old"), m("srv/new")).unwrap();
    file(&merged, "srv/new/sub/added", b"added", 0o644, 1_600_006_000);
    std::fs::remove_file(m("srv/new/sub/c")).unwrap();
    std::fs::rename(m("srv/away"), m("opt/away-moved")).unwrap();
    // A chmod copies up the metadata only: the content stays in the lower file.
    std::fs::set_permissions(m("etc/passwd"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        xattr::get(upper.join("etc/passwd"), "trusted.overlay.metacopy")
            .unwrap()
            .is_some()
    );
    let redirect = |p: &str| xattr::get(upper.join(p), "trusted.overlay.redirect").unwrap();
    assert!(
        redirect("srv/new").is_some() && redirect("opt/away-moved").is_some(),
        "the kernel made no redirect (rename copied instead?)"
    );
    let (u, lo) = (s(&upper), s(&lower));
    let err = fails(tool("layer-diff").args(["--overlay", u]), b"");
    assert!(
        err.contains("/etc/passwd: a metacopy file") && err.contains("--lower"),
        "{err}"
    );
    let err = fails(
        tool("layer-diff").args(["--overlay", u, "--exclude", "/etc"]),
        b"",
    );
    assert!(
        err.contains("/opt/away-moved: a renamed directory") && err.contains("--lower"),
        "{err}"
    );

    let list = String::from_utf8(diff(&["--overlay", u, "--lower", lo, "--list"])).unwrap();
    assert_eq!(list, reference_list(&lower, &merged));
    for line in [
        "C /etc/passwd\n",
        "D /srv/old\n",
        "A /srv/new/a\n",
        "A /srv/new/sub/b\n",
        "A /opt/away-moved/x\n",
    ] {
        assert!(list.contains(line), "{line} missing from:\n{list}");
    }
    assert!(!list.contains("/srv/new/sub/c"), "{list}");
    let tar = diff(&["--overlay", u, "--lower", lo]);
    let names = tar_names(&tar);
    assert!(names.contains(&"srv/.wh.old".to_string()), "{names:?}");
    assert!(names.contains(&"srv/new/sub/b".to_string()), "{names:?}");
    let want = snapshot(&merged);
    let Some(applied) = umoci_apply(t.path(), &lower, &tar) else {
        return;
    };
    assert_eq!(applied, as_applied(&want, &tar));
}

#[test]
fn refuses_a_tar_to_a_terminal_and_bad_usage() {
    let t = tempdir();
    let err = fails(
        tool("layer-diff").args(["--list", "--json", s(t.path()), s(t.path())]),
        b"",
    );
    assert!(err.contains("usage"), "{err}");
    let err = fails(tool("layer-diff").args(["--lower", s(t.path())]), b"");
    assert!(err.contains("usage"), "{err}");
    // On a terminal, no tar is written to it, nor read from it (it would wait for ever):
    // refused before any work.
    let bin = tool_path("layer-diff");
    for args in ["DIR DIR", "--list - DIR", "--list DIR -"] {
        let cmd = format!("{} {}; echo rc=$?", s(&bin), args.replace("DIR", s(t.path())));
        let Some(text) = on_terminal(&cmd) else {
            return;
        };
        let want = if args == "DIR DIR" {
            "refusing to write a tar stream to a terminal"
        } else {
            "refusing to read a tar stream from a terminal"
        };
        assert!(text.contains(want) && text.contains("rc=2"), "{args}: {text}");
    }
}

/// A directory holding `oci-layout` is the IMAGE `DIR:latest`, as for every other tool: not a
/// file system of blobs and index.json (docs/CLI.md).
#[test]
fn a_layout_directory_is_its_latest_image() {
    let t = tempdir();
    let (lower, upper) = lower_and_upper(t.path());
    let lower_tar = gnu_tar(&lower);
    let store = t.path().join("store");
    layout(
        &store,
        &[
            ("other", &[b"\0".repeat(1024).as_slice()]),
            ("latest", &[&lower_tar]),
        ],
    );
    let want = reference_list(&lower, &upper);
    let slash = format!("{}/", s(&store));
    for lower_arg in [s(&store), slash.as_str()] {
        let got = String::from_utf8(diff(&["--list", lower_arg, s(&upper)])).unwrap();
        assert_eq!(got, want, "LOWER {lower_arg}");
    }
    // The other way round: the image against the tree it was made of, nothing changed.
    assert_eq!(diff(&["--list", s(&lower), s(&store)]), b"");
    // Without a latest tag: the error says what a LAYOUT alone means and which tags there are.
    let tagged = t.path().join("tagged");
    layout(&tagged, &[("web:v1", &[&lower_tar])]);
    let err = fails(tool("layer-diff").args(["--list", s(&tagged), s(&upper)]), b"");
    assert!(
        err.contains("no image tagged \"latest\" (a LAYOUT alone means LAYOUT:latest); its tags: web:v1"),
        "{err}"
    );
}

/// gzip- and zstd-compressed tars (made by gzip(1) and zstd(1)), by path and on stdin, on
/// either side, read as the plain tars they hold: the same list, the same changeset (whose
/// content is read again from the compressed UPPER file).
#[test]
fn compressed_tars_are_read_as_the_tar_they_hold() {
    let t = tempdir();
    let (lower, upper) = lower_and_upper(t.path());
    let path = |name: &str| t.path().join(name).to_str().unwrap().to_string();
    let mut bytes = std::collections::HashMap::new();
    for (side, dir) in [("lower", &lower), ("upper", &upper)] {
        let tar = gnu_tar(dir);
        for (ext, compressed) in [
            ("tar", tar.clone()),
            ("tar.gz", ok(Command::new("gzip").args(["-c"]), &tar)),
            ("tar.zst", ok(Command::new("zstd").args(["-q", "-c"]), &tar)),
        ] {
            let name = format!("{side}.{ext}");
            std::fs::write(path(&name), &compressed).unwrap();
            bytes.insert(name, compressed);
        }
    }
    let want_list = diff(&["--list", &path("lower.tar"), &path("upper.tar")]);
    let want_tar = diff(&[&path("lower.tar"), &path("upper.tar")]);
    assert!(!want_list.is_empty() && !want_tar.is_empty());
    for (l, u) in [
        ("lower.tar.gz", "upper.tar.zst"),
        ("lower.tar.zst", "upper.tar.gz"),
    ] {
        assert_eq!(diff(&["--list", &path(l), &path(u)]), want_list, "{l} {u}");
        assert_eq!(diff(&[&path(l), &path(u)]), want_tar, "{l} {u}");
        let stdin_lower = ok(tool("layer-diff").args(["--list", "-", &path(u)]), &bytes[l]);
        assert_eq!(stdin_lower, want_list, "- < {l}");
        let stdin_upper = ok(tool("layer-diff").args([&path("lower.tar"), "-"]), &bytes[u]);
        assert_eq!(stdin_upper, want_tar, "- < {u}");
    }
}

// ---- --image: two images compared as images ---------------------------------------------

/// Runs a shell line in `dir` with our tools on PATH.
fn sh_at(dir: &Path, script: &str) -> Vec<u8> {
    sh(&format!("cd {} && {script}", s(dir)))
}

/// Two images on one base: a step that differs in one file's content (app/main.js) and one
/// file's mtime only (app/static.txt), ENV and CMD that differ, and a top layer that is the
/// same blob in both. Packs the layers once; commits `store:a`/`store:b` (created from
/// SOURCE_DATE_EPOCH) and `store:a2`/`store:b2` (created now, so every time differs).
fn two_apps(dir: &Path) {
    file(&dir.join("base"), "etc/os", b"debian\n", 0o644, 1_600_000_000);
    mtime(&dir.join("base"), "etc", 1_600_000_000);
    for (side, main, static_time) in [("a", "v1", 1_600_000_000), ("b", "v2", 1_600_000_100)] {
        let root = dir.join(format!("app-{side}"));
        file(
            &root,
            "app/main.js",
            format!("console.log('{main}')\n").as_bytes(),
            0o644,
            1_600_000_000,
        );
        file(&root, "app/static.txt", b"unchanged\n", 0o644, static_time);
        mtime(&root, "app", 1_600_000_000);
    }
    file(
        &dir.join("docs"),
        "docs/readme",
        b"the same in both\n",
        0o644,
        1_600_000_000,
    );
    mtime(&dir.join("docs"), "docs", 1_600_000_000);
    sh_at(
        dir,
        "layer-pack --layout store base/ > base.json && layer-pack --layout store app-a/ > a.json \
         && layer-pack --layout store app-b/ > b.json && layer-pack --layout store docs/ > docs.json \
         && SOURCE_DATE_EPOCH=1700000000 image-stack --layer base.json --tag store:base --created-by debootstrap",
    );
    for (tag, sde) in [("", "SOURCE_DATE_EPOCH=1700000000 "), ("2", "")] {
        for (side, env, cmd) in [
            ("a", "prod", r#"["node","main.js"]"#),
            ("b", "dev", r#"["node","--inspect","main.js"]"#),
        ] {
            sh_at(
                dir,
                &format!(
                    "{sde}image-stack --from store:base --layer {side}.json --tag store:{side}{tag} \
                     --created-by 'COPY app /app' -c 'ENV MODE={env}' -c 'CMD {cmd}' \
                     && {sde}image-stack --from store:{side}{tag} --layer docs.json --tag store:{side}{tag} \
                     --created-by 'COPY docs /docs'"
                ),
            );
        }
    }
}

fn json_records(out: Vec<u8>) -> Vec<serde_json::Value> {
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn image_diff_lists_exactly_the_config_and_layer_differences_in_order() {
    use serde_json::json;
    let t = tempdir();
    let dir = t.path();
    two_apps(dir);
    let store = dir.join("store");
    let image = |tag: &str| format!("{}:{tag}", s(&store));
    let layer = |tag: &str| -> serde_json::Value {
        let desc = |name: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap()
        };
        let d = desc(tag);
        json!({"index": 1, "step": 1, "createdBy": "COPY app /app", "digest": d["digest"],
               "diffID": d["diffID"], "mediaType": d["mediaType"], "size": d["size"]})
    };
    let records = json_records(diff(&[
        "--image",
        "--json",
        "--ignore-file-times",
        &image("a"),
        &image("b"),
    ]));
    // Each image records its parent (image-stack --tag): the untagged first commit of its side,
    // the manifest of the base's layer and the side's app layer made at SOURCE_DATE_EPOCH, by
    // digest and by the tag --from named. Those manifest records come first.
    let parent = |side: &str| -> String {
        let read = |p: std::path::PathBuf| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
        };
        let blob = |d: &str| store.join("blobs/sha256").join(&d[7..]);
        let layers = [layer("base")["digest"].clone(), layer(side)["digest"].clone()];
        let index = read(store.join("index.json"));
        let found: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"].is_null())
            .map(|e| e["digest"].as_str().unwrap().to_string())
            .filter(|d| {
                let m = read(blob(d));
                let config = read(blob(m["config"]["digest"].as_str().unwrap()));
                m["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["digest"].clone())
                    .collect::<Vec<_>>()
                    == layers
                    && config["created"] == "2023-11-14T22:13:20Z"
            })
            .collect();
        assert_eq!(found.len(), 1, "{side}: {found:?}");
        found[0].clone()
    };
    let parents = [
        json!({"section": "manifest", "key": ["annotations", "org.opencontainers.image.base.digest"],
               "old": parent("a"), "new": parent("b")}),
        json!({"section": "manifest", "key": ["annotations", "org.opencontainers.image.base.name"],
               "old": "a", "new": "b"}),
    ];
    let own = |records: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        records
            .into_iter()
            .filter(|r| r["section"] != "manifest")
            .collect()
    };
    let want = [
        json!({"section": "config", "key": ["config", "Cmd"],
               "old": ["node", "main.js"], "new": ["node", "--inspect", "main.js"]}),
        json!({"section": "config", "key": ["config", "Env", "MODE"], "old": "prod", "new": "dev"}),
        json!({"section": "layer", "old": layer("a"), "new": layer("b"), "pairedBy": "step",
               "changes": [{"path": "/app/main.js", "kind": "C"}]}),
        json!({"section": "file", "path": "/app", "kind": "C"}),
        json!({"section": "file", "path": "/app/main.js", "kind": "C"}),
    ];
    assert_eq!(records, [&parents[..], &want[..]].concat());
    // The same again: a stable order.
    assert_eq!(
        json_records(diff(&[
            "--image",
            "--json",
            "--ignore-times",
            &image("a"),
            &image("b")
        ])),
        [&parents[..], &want[..]].concat()
    );

    // File times count unless ignored: static.txt's mtime shows in its layer and its file.
    let records = json_records(diff(&["--image", "--json", &image("a"), &image("b")]));
    assert_eq!(
        records[4]["changes"],
        json!([{"path": "/app/main.js", "kind": "C"}, {"path": "/app/static.txt", "kind": "C"}])
    );
    assert!(records.contains(&json!({"section": "file", "path": "/app/static.txt", "kind": "C"})));

    // Image times: every commit of a2/b2 has its own time; --ignore-image-times leaves them out
    // (and only them).
    let timed = json_records(diff(&[
        "--image",
        "--json",
        "--ignore-times",
        &image("a2"),
        &image("b2"),
    ]));
    let keys: Vec<String> = timed
        .iter()
        .filter(|r| r["section"] != "layer" && r["section"] != "file")
        .map(|r| format!("{} {}", r["section"], r.get("key").or(r.get("index")).unwrap()))
        .collect();
    assert_eq!(
        keys,
        [
            r#""manifest" ["annotations","org.opencontainers.image.base.digest"]"#,
            r#""manifest" ["annotations","org.opencontainers.image.base.name"]"#,
            r#""config" ["config","Cmd"]"#,
            r#""config" ["config","Env","MODE"]"#,
            r#""config" ["created"]"#,
            r#""history" 1"#,
            r#""history" 2"#,
        ]
    );
    let untimed = diff(&[
        "--image",
        "--json",
        "--ignore-times",
        "--ignore-image-times",
        &image("a2"),
        &image("b2"),
    ]);
    let untimed = json_records(untimed);
    assert_eq!(untimed[1]["old"], "a2");
    assert_eq!(untimed[1]["new"], "b2");
    assert_eq!(own(untimed), want);

    // The text form, one line each, a layer's entries under it.
    let text = String::from_utf8(diff(&["--image", "--ignore-times", &image("a"), &image("b")])).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..2],
        [
            format!(
                r#"manifest annotations org.opencontainers.image.base.digest: "{}" -> "{}""#,
                parent("a"),
                parent("b")
            ),
            r#"manifest annotations org.opencontainers.image.base.name: "a" -> "b""#.to_string(),
        ],
        "{text}"
    );
    let lines = &lines[2..];
    assert_eq!(
        lines[0],
        r#"config Cmd: ["node","main.js"] -> ["node","--inspect","main.js"]"#
    );
    assert_eq!(lines[1], r#"config Env MODE: "prod" -> "dev""#);
    assert!(
        lines[2].starts_with("layer 1 (") && lines[2].ends_with(", step 1), paired by step"),
        "{text}"
    );
    assert_eq!(lines[3..], ["  C /app/main.js", "C /app", "C /app/main.js"]);

    // --exit-code: 1 when anything differs, 0 (and nothing) for the same image.
    let out = run(
        tool("layer-diff").args(["--image", "--exit-code", &image("a"), &image("b")]),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let out = run(
        tool("layer-diff").args(["--image", "--exit-code", "--json", &image("a"), &image("a")]),
        b"",
    );
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));
}

#[test]
fn image_diff_pairs_layers_by_diff_id_then_by_step() {
    use serde_json::json;
    let t = tempdir();
    let dir = t.path();
    two_apps(dir);
    let store = dir.join("store");
    // b3: a's layers with another layer between the base and the app step: the app layer pairs
    // by diffID at another index, and the extra layer has no partner.
    file(&dir.join("extra"), "extra/x", b"x\n", 0o644, 1_600_000_000);
    mtime(&dir.join("extra"), "extra", 1_600_000_000);
    sh_at(
        dir,
        "layer-pack --layout store extra/ > extra.json \
         && image-stack --from store:base --layer extra.json --layer a.json --layer docs.json --tag store:b3",
    );
    let records = json_records(diff(&[
        "--image",
        "--json",
        "--ignore-image-times",
        &format!("{}:a", s(&store)),
        &format!("{}:b3", s(&store)),
    ]));
    let layers: Vec<(serde_json::Value, serde_json::Value, serde_json::Value)> = records
        .iter()
        .filter(|r| r["section"] == "layer")
        .map(|r| {
            (
                r["old"]["index"].clone(),
                r["new"]["index"].clone(),
                r["pairedBy"].clone(),
            )
        })
        .collect();
    assert_eq!(layers, [(json!(null), json!(1), json!(null))]);
    let added = records.iter().find(|r| r["section"] == "layer").unwrap();
    assert_eq!(
        added["changes"],
        json!([{"path": "/extra", "kind": "A"}, {"path": "/extra/x", "kind": "A"}])
    );
}

#[test]
fn image_diff_refuses_what_is_not_two_images() {
    let t = tempdir();
    let dir = t.path();
    two_apps(dir);
    let image = format!("{}:a", s(&dir.join("store")));
    let base = s(&dir.join("base")).to_string();
    let err = fails(tool("layer-diff").args(["--image", &base, &image]), b"");
    assert!(err.contains("--image compares two IMAGEs"), "{err}");
    let err = fails(
        tool("layer-diff").args(["--ignore-image-times", "--list", &image, &image]),
        b"",
    );
    assert!(err.contains("--image"), "{err}");
    let err = fails(
        tool("layer-diff").args(["--image", &image, &format!("{}:nope", s(&dir.join("store")))]),
        b"",
    );
    assert!(err.contains("nope"), "{err}");
}
