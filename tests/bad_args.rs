//! Bad arguments and environment, for every tool (issue 9): unreadable files (read as uid
//! 65534, since the tests run as root), a LAYOUT that is a file, refs with bad characters, stdin
//! closed or empty, stdout a closed pipe, nonexistent paths and bad flag values. Every failure
//! is one line `TOOL: what failed: why` naming what failed, exit 2, no panic, and the layout as
//! it was.
//!
//! stdout a closed pipe: the tools exit quietly with status 0, not 141. Rust ignores SIGPIPE,
//! so a write to a pipe nobody reads fails with EPIPE, and `common::cli::report` turns that
//! error into a quiet success: the reader went away (`| head`), which is not a failure of ours
//! to report, and `set -o pipefail` scripts do not fail on it. A *closed* stdout (`>&-`) is
//! not an error either: Rust's runtime opens /dev/null on a closed fd 0, 1 or 2 at startup (so
//! no file a tool opens can take its number), and the output goes there.

use crate::support::{bin_dir, fails, file, needs_root, ok, run, sha256, snapshot, tempdir, tool};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// A directory (readable by uid 65534) with: trees `t1` (a 1 MB file, 2000 small ones) and
/// `t2` (t1 changed), their changeset `ch.tar`, its blob `ch.gz` and descriptor `ch.json`, a
/// layout `store` with `store:base` (t1) and `store:web` (three commits with 100 kB messages,
/// so its history outgrows a pipe), an empty directory `e` and a regular file `fl`.
fn fixture() -> tempfile::TempDir {
    let d = tempdir();
    let p = d.path();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    file(p, "t1/big", &vec![7u8; 1 << 20], 0o644, 1_600_000_000);
    for i in 0..2000 {
        file(
            p,
            &format!("t1/many/a-longer-file-name-{i:04}"),
            b"x",
            0o644,
            1_600_000_000,
        );
    }
    ok(Command::new("cp").args(["-a", "t1", "t2"]).current_dir(p), b"");
    file(p, "t2/etc/added", b"added\n", 0o644, 1_600_000_100);
    std::fs::create_dir(p.join("e")).unwrap();
    std::fs::write(p.join("fl"), b"not a layout\n").unwrap();
    let tar = ok(at(p, "layer-diff").args(["t1", "t2"]), b"");
    std::fs::write(p.join("ch.tar"), &tar).unwrap();
    let desc = ok(at(p, "layer-pack").args(["-o", "ch.gz", "ch.tar"]), b"");
    std::fs::write(p.join("ch.json"), desc).unwrap();
    let base = ok(at(p, "layer-pack").args(["--layout", "store", "t1"]), b"");
    ok(
        at(p, "image-stack").args(["--layer", "-", "--tag", "store:base"]),
        &base,
    );
    let long = "m".repeat(100_000);
    for (from, env) in [("store:base", "A=1"), ("store:web", "B=2"), ("store:web", "C=3")] {
        let change = format!("ENV {env}");
        ok(
            at(p, "image-stack").args(["--from", from, "-c", &change, "-m", &long, "--tag", "store:web"]),
            b"",
        );
    }
    d
}

/// A tool run in `dir`.
fn at(dir: &Path, name: &str) -> Command {
    let mut c = tool(name);
    c.current_dir(dir);
    c
}

/// A tool run in `dir` as uid/gid 65534 without supplementary groups.
fn as_nobody(dir: &Path, name: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin_dir().join(name))
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

/// Asserts a one-line exit-2 failure that names the tool and holds every fragment.
fn refused(cmd: &mut Command, stdin: &[u8], name: &str, fragments: &[&str]) {
    let err = fails(cmd, stdin);
    assert!(err.starts_with(&format!("{name}: ")), "{cmd:?}: {err}");
    for f in fragments {
        assert!(err.contains(f), "{cmd:?}: {f:?} not in: {err}");
    }
    assert!(!err.contains("For more information"), "{err}");
}

#[test]
fn unreadable_files_and_directories() {
    if !needs_root("switching to uid 65534") {
        return;
    }
    let d = fixture();
    let p = d.path();
    for f in ["ch.tar", "ch.json"] {
        std::fs::copy(p.join(f), p.join(format!("secret-{f}"))).unwrap();
        std::fs::set_permissions(
            p.join(format!("secret-{f}")),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
    }
    std::fs::create_dir(p.join("locked")).unwrap();
    std::fs::set_permissions(p.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    ok(Command::new("cp").args(["-a", "store", "ro"]).current_dir(p), b"");
    std::fs::set_permissions(p.join("ro/index.json"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let store = snapshot(&p.join("store"));
    let denied = "Permission denied";
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "layer-diff",
            &["secret-ch.tar", "t1"],
            &["LOWER", "secret-ch.tar", denied],
        ),
        ("layer-diff", &["t1", "locked"], &["UPPER", "locked", denied]),
        ("layer-diff", &["ro:base", "t1"], &["ro/index.json", denied]),
        (
            "layer-pack",
            &["-o", "/tmp/never.gz", "secret-ch.tar"],
            &["secret-ch.tar", denied],
        ),
        (
            "layer-pack",
            &["-o", "/tmp/never.gz", "locked"],
            &["locked", denied],
        ),
        // The layout is root's: nobody may not write a blob into it.
        ("layer-pack", &["--layout", "store", "ch.tar"], &["store", denied]),
        (
            "image-stack",
            &["--layer", "secret-ch.json", "--tar"],
            &["secret-ch.json", denied],
        ),
        (
            "image-stack",
            &["--from", "ro:base", "--tar"],
            &["ro/index.json", denied],
        ),
        (
            "image-stack",
            &["--layer", "ch.json", "--tag", "store:nobody"],
            &["store", denied],
        ),
        ("image-history", &["ro:base"], &["ro/index.json", denied]),
        ("image-ls", &["ro"], &["ro/index.json", denied]),
        ("image-prune", &["ro"], &["ro", denied]),
        ("image-prune", &["store"], &["store", denied]),
    ];
    for (name, args, fragments) in cases {
        refused(as_nobody(p, name).args(*args), b"", name, fragments);
    }
    assert_eq!(
        snapshot(&p.join("store")),
        store,
        "a refused run changed the layout"
    );
    assert!(!Path::new("/tmp/never.gz").exists());
}

#[test]
fn a_layout_that_is_a_file() {
    let d = fixture();
    let p = d.path();
    let not_dir = "fl: not a directory";
    let cases: &[(&str, &[&str], &str)] = &[
        ("layer-pack", &["--layout", "fl", "ch.tar"], not_dir),
        ("image-stack", &["--layer", "ch.json", "--tag", "fl:x"], not_dir),
        ("image-stack", &["--from", "fl:x", "--tar"], not_dir),
        ("image-stack", &["--from", "fl", "--rootfs", "out"], not_dir),
        ("image-history", &["fl:x"], not_dir),
        ("image-ls", &["fl"], not_dir),
        ("image-prune", &["fl"], not_dir),
        ("image-prune", &["fl:x"], not_dir),
        // layer-diff: `fl:x` names no directory and no file: an IMAGE whose layout is a file.
        ("layer-diff", &["fl:x", "t1"], not_dir),
    ];
    for (name, args, fragment) in cases {
        refused(at(p, name).args(*args), b"", name, &[fragment]);
    }
    assert_eq!(std::fs::read(p.join("fl")).unwrap(), b"not a layout\n");
    assert!(!p.join("out").exists());
}

#[test]
fn refs_with_bad_characters() {
    let d = fixture();
    let p = d.path();
    let index = std::fs::read(p.join("store/index.json")).unwrap();
    let bad_ref = "invalid reference name";
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "image-stack",
            &["--layer", "ch.json", "--tag", "store:a b"],
            bad_ref,
        ),
        (
            "image-stack",
            &["--layer", "ch.json", "--tag", "store:../../x"],
            bad_ref,
        ),
        (
            "image-stack",
            &["--layer", "ch.json", "--tag", "store:x\ny"],
            bad_ref,
        ),
        (
            "image-stack",
            &["--layer", "ch.json", "--tag", "store:-x"],
            bad_ref,
        ),
        (
            "image-stack",
            &["--layer", "ch.json", "--tag", "store:x/"],
            bad_ref,
        ),
        ("image-stack", &["--layer", "ch.json", "--tag", "store:"], bad_ref),
        (
            "image-stack",
            &["--layer", "ch.json", "--tag", ":x"],
            "layout directory is missing",
        ),
        ("image-stack", &["--from", "store:é", "--tar"], bad_ref),
        ("image-history", &["store:-bad"], bad_ref),
        ("image-history", &["store@sha256:XYZ"], "invalid digest"),
        (
            "image-history",
            &["store@sha256:../../../etc/passwd"],
            "invalid digest",
        ),
        ("layer-diff", &["store:a b", "t1"], bad_ref),
        ("layer-diff", &["t1", "store:a\tb"], bad_ref),
    ];
    for (name, args, fragment) in cases {
        refused(at(p, name).args(*args), b"", name, &[fragment]);
    }
    // Well-formed but absent: named in the message.
    refused(
        at(p, "image-history").arg("store:nosuch"),
        b"",
        "image-history",
        &["nosuch"],
    );
    assert_eq!(std::fs::read(p.join("store/index.json")).unwrap(), index);
}

/// Runs `script` with bash in `dir`, our binaries first on PATH.
fn bash(dir: &Path, script: &str) -> std::process::Output {
    let mut c = Command::new("bash");
    c.args(["-c", script])
        .current_dir(dir)
        .env("PATH", crate::support::path_with_tools())
        .env_remove("SOURCE_DATE_EPOCH");
    run(&mut c, b"")
}

#[test]
fn stdin_empty_or_closed() {
    let d = fixture();
    let p = d.path();
    let store = snapshot(&p.join("store"));
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "layer-pack",
            &["--layout", "store"],
            "stdin: empty input, not a tar",
        ),
        (
            "layer-pack",
            &["--layout", "store", "-"],
            "stdin: empty input, not a tar",
        ),
        ("layer-diff", &["-", "t1"], "stdin: empty input, not a tar"),
        ("layer-diff", &["t1", "-"], "stdin: empty input, not a tar"),
        (
            "image-stack",
            &["--layer", "-", "--tag", "store:x"],
            "--layer -: no layer descriptors",
        ),
        (
            "image-stack",
            &["--from", "store:base", "--layer", "-", "--tar"],
            "--layer -: no layer descriptors",
        ),
    ];
    for (name, args, fragment) in cases {
        // < /dev/null
        let mut c = at(p, name);
        c.args(*args).stdin(Stdio::null());
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{c:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("{name}: ")) && err.contains(fragment),
            "{c:?}: {err}"
        );
        // A closed fd 0 reads as empty too (the runtime opens /dev/null on it).
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let out = bash(p, &format!("exec 0<&-; exec {name} {}", quoted.join(" ")));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name} {args:?} with fd 0 closed: {err}"
        );
        assert!(err.contains(fragment) && err.lines().count() == 1, "{err}");
    }
    // Tools that read no stdin do not care.
    let out = bash(
        p,
        "exec 0<&-; image-history -q store:web && image-prune --dry-run -q store",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        snapshot(&p.join("store")),
        store,
        "a refused run changed the layout"
    );
    let tmp: Vec<_> = std::fs::read_dir(p.join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(common::layout::TMP_PREFIX))
        .collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
}

#[test]
fn stdout_a_closed_pipe_is_a_quiet_exit() {
    let d = fixture();
    let p = d.path();
    // Each writes far more than a pipe holds (64 kB) after its reader has gone.
    for (producer, reader) in [
        ("layer-diff e t1", "head -c 10"),
        ("layer-diff ch.tar t1", "head -c 10"),
        ("layer-diff --list e t1", "head -n1"),
        ("layer-diff --json e t1", "head -n1"),
        ("image-stack --from store:web --tar", "head -c 10"),
        ("image-stack --layer ch.json --tar", "head -c 10"),
        ("image-history --format json store:web", "head -n1"),
        ("image-history --no-trunc store:web", "head -n1"),
        ("image-ls --format json store", "head -n1"),
        ("image-ls store", "head -n1"),
    ] {
        let out = bash(
            p,
            &format!("{producer} 2>err | {reader} >/dev/null; echo ${{PIPESTATUS[0]}}"),
        );
        let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = std::fs::read_to_string(p.join("err")).unwrap();
        assert_eq!(
            status, "0",
            "{producer} | {reader}: status {status}, stderr: {err}"
        );
        assert_eq!(err, "", "{producer} | {reader} printed a message");
    }
    // A closed stdout is /dev/null to a Rust program: the blob is still stored whole.
    let out = bash(p, "layer-pack --layout store t2 >&-");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for e in std::fs::read_dir(p.join("store/blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256(&bytes),
            format!("sha256:{}", e.file_name().to_str().unwrap())
        );
    }
}

#[test]
fn nonexistent_paths() {
    let d = fixture();
    let p = d.path();
    let enoent = "No such file or directory";
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "layer-diff",
            &["nope", "t1"],
            &["LOWER", "nope: no such directory, image or tar file"],
        ),
        ("layer-diff", &["t1", "nope/"], &["UPPER", "nope/"]),
        ("layer-diff", &["nope:x", "t1"], &["nope:x"]),
        ("layer-diff", &["--overlay", "nope"], &["nope", enoent]),
        (
            "layer-pack",
            &["--layout", "store", "nope.tar"],
            &["nope.tar", enoent],
        ),
        (
            "layer-pack",
            &["-o", "/nonexistent/dir/x.gz", "ch.tar"],
            &["/nonexistent/dir", enoent],
        ),
        (
            "image-stack",
            &["--layer", "nope.json", "--tar"],
            &["--layer nope.json", enoent],
        ),
        (
            "image-stack",
            &["--from", "nope:x", "--tar"],
            &["nope: no such OCI image layout"],
        ),
        (
            "image-stack",
            &["--from", "store:base", "--rootfs", "/nonexistent/a/b"],
            &["/nonexistent/a/b"],
        ),
        ("image-history", &["nope:x"], &["nope: no such OCI image layout"]),
        ("image-ls", &["nope"], &["nope", enoent]),
        ("image-prune", &["nope"], &["nope", enoent]),
        ("image-prune", &["nope:x"], &["nope: no such OCI image layout"]),
    ];
    for (name, args, fragments) in cases {
        refused(at(p, name).args(*args), b"", name, fragments);
    }
    assert!(!p.join("nope").exists() && !Path::new("/nonexistent").exists());
}

#[test]
fn bad_flag_values() {
    let d = fixture();
    let p = d.path();
    let store = snapshot(&p.join("store"));
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("layer-diff", &["--bogus", "t1", "t2"], &["usage", "--bogus"]),
        ("layer-diff", &["t1"], &["usage", "<UPPER>"]),
        (
            "layer-diff",
            &["--exclude", "[", "t1", "t2"],
            &["--exclude", "\"[\""],
        ),
        (
            "layer-diff",
            &["--platform", "linux", "t1", "t2"],
            &["invalid platform \"linux\""],
        ),
        (
            "layer-diff",
            &["--list", "--json", "t1", "t2"],
            &["usage", "--json"],
        ),
        (
            "layer-pack",
            &["--compress", "lz4", "ch.tar"],
            &["usage", "'lz4'", "gzip, zstd, none"],
        ),
        (
            "layer-pack",
            &["--layout", "store", "--level", "99", "ch.tar"],
            &["--level 99", "out of range"],
        ),
        (
            "layer-pack",
            &[
                "--layout",
                "store",
                "--compress",
                "zstd",
                "--level",
                "-5",
                "ch.tar",
            ],
            &["--level -5"],
        ),
        (
            "layer-pack",
            &["--threads", "0", "ch.tar"],
            &["usage", "'0'", "--threads"],
        ),
        ("layer-pack", &["--threads", "abc", "ch.tar"], &["usage", "'abc'"]),
        (
            "layer-pack",
            &["--layout", "store", "-o", "x.gz", "ch.tar"],
            &["usage", "--layout"],
        ),
        ("layer-pack", &["ch.tar"], &["--layout DIR or -o FILE"]),
        ("image-stack", &["--from", "store:base"], &["usage"]),
        (
            "image-stack",
            &["--from", "store:base", "--tar", "--tag", "store:x"],
            &["usage"],
        ),
        (
            "image-stack",
            &["--from", "store:base", "--drop", "-1", "--tar"],
            &["usage", "'-1'"],
        ),
        (
            "image-stack",
            &["--from", "store:base", "--drop", "5", "--tar"],
            &["--drop 5", "only 1 layer"],
        ),
        (
            "image-stack",
            &["--from", "store:base", "--platform", "linux/amd64/v1/x", "--tar"],
            &["invalid platform"],
        ),
        (
            "image-stack",
            &["--from", "store:base", "-c", "FROBNICATE x", "--tag", "store:x"],
            &["FROBNICATE"],
        ),
        (
            "image-stack",
            &["--from", "store:base", "-c", "EXPOSE 99999", "--tag", "store:x"],
            &["EXPOSE 99999"],
        ),
        (
            "image-stack",
            &[
                "--from",
                "store:base",
                "-c",
                "HEALTHCHECK --interval=abc CMD x",
                "--tag",
                "store:x",
            ],
            &["--interval", "\"abc\""],
        ),
        (
            "image-stack",
            &["--from", "store:base", "-m", "msg", "--tar"],
            &["usage", "--tag"],
        ),
        (
            "image-history",
            &["-H=maybe", "store:base"],
            &["usage", "'maybe'"],
        ),
        (
            "image-history",
            &["--format", "yaml", "store:base"],
            &["usage", "'yaml'", "table, json"],
        ),
        (
            "image-history",
            &["--platform", "a/", "store:base"],
            &["invalid platform \"a/\""],
        ),
        ("image-history", &[], &["usage", "<IMAGE>"]),
        ("image-ls", &[], &["usage", "<LAYOUT>"]),
        ("image-ls", &["--format", "yaml", "store"], &["usage", "yaml"]),
        ("image-prune", &[], &["usage", "<LAYOUT|IMAGE>"]),
        ("image-prune", &["store", "store:web"], &["usage", "one LAYOUT"]),
        (
            "image-prune",
            &["--filter", "until=forever", "store"],
            &["usage", "\"forever\""],
        ),
        (
            "image-prune",
            &["--filter", "reference=x", "store"],
            &["usage", "reference=x"],
        ),
        (
            "image-prune",
            &["--filter", "label!=", "store"],
            &["usage", "label!="],
        ),
        ("image-prune", &["--grace", "-5m", "store"], &["usage", "-5"]),
        (
            "image-prune",
            &["--grace", "soon", "store"],
            &["usage", "\"soon\""],
        ),
    ];
    for (name, args, fragments) in cases {
        refused(at(p, name).args(*args), b"", name, fragments);
    }
    assert_eq!(
        snapshot(&p.join("store")),
        store,
        "a refused run changed the layout"
    );
    assert!(!p.join("x.gz").exists());
}

/// Every tool that reads an IMAGE says the same when its layout or tag is missing: what an
/// IMAGE is, and the tags the layout has.
#[test]
fn every_tool_explains_a_missing_layout_or_tag_alike() {
    let d = fixture();
    let p = d.path();
    let store = snapshot(&p.join("store"));
    let hint = "httpd: no such OCI image layout; an IMAGE is LAYOUT:REF, e.g. store:httpd:2.4 \
                (the tag httpd:2.4 of the layout directory store)";
    let tags = "store: no image tagged \"web:v9\"; its tags: web, base";
    let cases: &[(&str, &[&str], &str)] = &[
        ("image-history", &["httpd:2.4"], hint),
        ("image-stack", &["--from", "httpd:2.4", "--tar"], hint),
        ("image-stack", &["--from", "httpd:2.4", "--rootfs", "out"], hint),
        ("layer-diff", &["--list", "httpd:2.4", "t1"], hint),
        ("layer-diff", &["--list", "t1", "httpd:2.4"], hint),
        ("image-prune", &["httpd:2.4"], hint),
        ("image-history", &["store:web:v9"], tags),
        ("image-stack", &["--from", "store:web:v9", "--tar"], tags),
        ("image-prune", &["store:web:v9"], tags),
        ("layer-diff", &["--list", "store:web:v9", "t1"], tags),
    ];
    for (name, args, fragment) in cases {
        refused(at(p, name).args(*args), b"", name, &[fragment]);
    }
    assert!(!p.join("out").exists() && !p.join("httpd").exists());
    assert_eq!(snapshot(&p.join("store")), store);
}

/// A mistyped flag: clap's "a similar argument exists" stays on the one usage line.
#[test]
fn a_mistyped_flag_names_the_one_meant() {
    let d = fixture();
    let p = d.path();
    let cases: &[(&str, &[&str], &str)] = &[
        ("layer-diff", &["--lst", "t1", "t2"], "'--list'"),
        ("layer-pack", &["--layot", "store", "t1"], "'--layout'"),
        (
            "image-stack",
            &["--from", "store:base", "--rotfs", "out"],
            "'--rootfs'",
        ),
        ("image-history", &["--no-trnc", "store:web"], "'--no-trunc'"),
        ("image-prune", &["--dry-rn", "store"], "'--dry-run'"),
    ];
    for (name, args, similar) in cases {
        let want = format!("; a similar argument exists: {similar}");
        refused(
            at(p, name).args(*args),
            b"",
            name,
            &["usage: unexpected argument", &want],
        );
    }
}
