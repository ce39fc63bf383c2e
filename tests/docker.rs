//! The real docker engine (Debian's docker.io, a private dockerd per test process, see
//! support/dockerd.rs) on images our tools make: it loads them, runs containers from them, and
//! shows their history. Expected values come from docker itself or from what the test wrote.

use crate::support::dockerd::{Dockerd, dockerd};
use crate::support::*;
use std::path::Path;

const HELLO: &str = "hello from a layerkit image\n";

/// True for a 64-bit little-endian ELF executable without a program interpreter (PT_INTERP):
/// statically linked, so it runs in an image that holds nothing else.
fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let word = |at: usize, n: usize| {
        b.get(at..at + n)
            .map(|s| s.iter().rev().fold(0usize, |v, x| (v << 8) | usize::from(*x)))
    };
    let (Some(phoff), Some(entry_size), Some(count)) = (word(32, 8), word(54, 2), word(56, 2)) else {
        return false;
    };
    const PT_INTERP: usize = 3;
    (0..count).all(|i| word(phoff + i * entry_size, 4).is_some_and(|t| t != PT_INTERP))
}

/// The engine, and a temporary directory holding `rootfs/`: a static busybox as /bin/sh and
/// /bin/cat, and /etc/hello. `None` (after a SKIPPED line, or a failure in CI) when either is
/// missing.
fn engine_and_root() -> Option<(&'static Dockerd, tempfile::TempDir)> {
    let engine = dockerd()?;
    let busybox = Path::new("/bin/busybox");
    if !is_static_elf(busybox) {
        assert!(
            !in_ci(),
            "/bin/busybox is not a static busybox in CI (the Makefile installs busybox-static)"
        );
        eprintln!(
            "SKIPPED: /bin/busybox is missing or not statically linked (make test installs busybox-static)"
        );
        return None;
    }
    let t = tempdir();
    let root = t.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    file(&root, "etc/hello", HELLO.as_bytes(), 0o644, 1_700_000_000);
    Some((engine, t))
}

#[test]
fn docker_runs_our_image_and_shows_its_history() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    // A second layer adding one 33-byte file (the tutorial's app.js).
    let app = "console.log('hello from layer');\n";
    assert_eq!(app.len(), 33);
    file(
        &dir.join("app"),
        "app/app.js",
        app.as_bytes(),
        0o644,
        1_700_000_000,
    );
    sh(&format!(
        "cd {} && layer-pack --layout store rootfs/ | image-stack --layer - --tag store:x \
         && layer-pack --layout store app/ | image-stack --from store:x --layer - --tag store:y",
        dir.display()
    ));
    let store = dir.join("store");
    engine.load(&store, "y", "layerkit-test/hello:y");

    let out = engine.sh(None, "layerkit-test/hello:y", "cat /etc/hello");
    assert_eq!(out, HELLO);

    // docker history: newest first, one row per history entry, as image-history.
    let docker_rows: Vec<(String, String)> = engine
        .run(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.ID}}\t{{.Size}}",
            "layerkit-test/hello:y",
        ])
        .lines()
        .map(|l| {
            let (id, size) = l.split_once('\t').expect("ID<TAB>SIZE");
            (id.to_string(), size.to_string())
        })
        .collect();
    let ours: Vec<serde_json::Value> = String::from_utf8(ok(
        tool("image-history")
            .args(["--format", "json"])
            .arg(format!("{}:y", store.display())),
        b"",
    ))
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(
        docker_rows.len(),
        ours.len(),
        "docker: {docker_rows:?}\nours: {ours:?}"
    );
    assert_eq!(docker_rows.len(), 2);
    // The top row is the image itself: the same image id (config digest) on both sides.
    assert_eq!(docker_rows[0].0, ours[0]["id"].as_str().unwrap());
    // docker's SIZE of a layer is the content it adds: the 33-byte file (overlay2 counts every
    // non-directory entry's apparent size; vfs regular files only, the same here), and
    // image-history shows the same.
    assert_eq!(docker_rows[0].1, "33B", "storage driver {}", engine.driver());
    let table = String::from_utf8(ok(
        tool("image-history").arg(format!("{}:y", store.display())),
        b"",
    ))
    .unwrap();
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains(" 33B ")),
        "{table}"
    );
}

#[test]
fn a_zstd_image_goes_to_docker_and_a_docker_commit_comes_back() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    sh(&format!(
        "cd {} && layer-pack --compress zstd --layout store rootfs/ | image-stack --layer - --tag store:z",
        dir.display()
    ));
    let store = dir.join("store");
    engine.load(&store, "z", "layerkit-test/zstd:z");
    engine.sh(
        Some("layerkit-zstd"),
        "layerkit-test/zstd:z",
        "echo changed > /etc/hello; echo new > /etc/new",
    );
    let docker_diff = engine.run(&["diff", "layerkit-zstd"]);
    engine.run(&["commit", "layerkit-zstd", "layerkit-test/zstd:committed"]);
    engine.run(&["rm", "layerkit-zstd"]);
    engine.save("layerkit-test/zstd:committed", &store, "committed");

    let root = dir.join("out");
    ok(
        tool("image-stack")
            .arg("--from")
            .arg(format!("{}:committed", store.display()))
            .arg("--rootfs")
            .arg(&root),
        b"",
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hello")).unwrap(),
        "changed\n"
    );
    assert_eq!(std::fs::read_to_string(root.join("etc/new")).unwrap(), "new\n");
    let ours = ok(
        tool("layer-diff")
            .arg("--list")
            .arg(format!("{}:z", store.display()))
            .arg(format!("{}:committed", store.display())),
        b"",
    );
    let mut docker_lines: Vec<&str> = docker_diff.lines().collect();
    docker_lines.sort();
    for line in ["C /etc/hello", "A /etc/new"] {
        assert!(docker_lines.contains(&line), "docker diff: {docker_lines:?}");
    }
    let ours = String::from_utf8(ours).unwrap();
    let mut our_lines: Vec<&str> = ours.lines().collect();
    our_lines.sort();
    assert_eq!(our_lines, docker_lines);
}

/// Names of a tar's entries (without a trailing `/`).
fn tar_names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| {
            let name = String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned();
            name.trim_end_matches('/').to_string()
        })
        .collect()
}

/// `docker create` + `docker export`: the tree docker unpacked, as a tar.
fn exported(engine: &Dockerd, image: &str) -> Vec<u8> {
    let id = engine.run(&["create", image, "/bin/true"]);
    let id = id.trim();
    let out = ok(engine.docker().args(["export", id]), b"");
    engine.run(&["rm", id]);
    out
}

#[test]
fn docker_unpacks_gnu_tars_sparse_layers_to_our_tree() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    // One layer per format, each a tree of sparse files of its own: v0.0/var/…, v0.1/var/…
    for v in ["0.0", "0.1", "1.0"] {
        let src = dir.join(format!("src{v}"));
        sparse_tree(&src.join(format!("v{v}")));
        mtime(&src, &format!("v{v}"), 1_650_000_000);
        std::fs::write(dir.join(format!("{v}.tar")), gnu_sparse_tar(&src, v)).unwrap();
    }
    sh(&format!(
        "cd {} && layer-pack --layout store rootfs/ | image-stack --layer - --tag store:s \
         && for v in 0.0 0.1 1.0; do \
              layer-pack --layout store $v.tar | image-stack --from store:s --layer - --tag store:s; \
            done \
         && image-stack --from store:s --rootfs ours",
        dir.display()
    ));
    engine.load(&dir.join("store"), "s", "layerkit-test/sparse:s");
    let theirs = dir.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    ok(
        std::process::Command::new("tar")
            .args(["--numeric-owner", "-xf", "-", "-C"])
            .arg(&theirs),
        &exported(engine, "layerkit-test/sparse:s"),
    );
    for v in ["0.0", "0.1", "1.0"] {
        let sub = format!("v{v}");
        // docker export writes whole seconds; GNU tar's layers carry the directory's nanoseconds.
        let ours = whole_seconds(&snapshot(&dir.join("ours").join(&sub)));
        assert!(
            ours.contains("var/several file 640 0:0 mtime=1650000000.000000000 size=1048580"),
            "{ours}"
        );
        assert_eq!(ours, whole_seconds(&snapshot(&theirs.join(&sub))), "format {v}");
    }
}

/// A directory entry whose size covers a small tar of two files: Go's archive/tar, and so
/// docker, ignores the size and reads them as entries (and that tar's end blocks as the
/// archive's end); tar-rs skipped them, so our tools used to show `first`, `d/` and `visible`
/// instead. Now every tool refuses the layer, naming the entry.
#[test]
fn a_directory_carrying_data_hides_entries_from_tar_rs_not_from_docker() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    let header = |name: &str, kind: tar::EntryType, size: usize| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_size(size as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        h
    };
    let mut hidden = tar::Builder::new(Vec::new());
    for name in ["hidden", "second"] {
        hidden
            .append(&header(name, tar::EntryType::Regular, 2), &b"h\n"[..])
            .unwrap();
    }
    let hidden = hidden.into_inner().unwrap();
    let mut layer = tar::Builder::new(Vec::new());
    layer
        .append(&header("first", tar::EntryType::Regular, 2), &b"1\n"[..])
        .unwrap();
    layer
        .append(
            &header("d/", tar::EntryType::Directory, hidden.len()),
            &hidden[..],
        )
        .unwrap();
    layer
        .append(&header("visible", tar::EntryType::Regular, 2), &b"v\n"[..])
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let layout = dir.join("raw");
    raw_layout(&layout, std::slice::from_ref(&layer));
    engine.load(&layout, "t", "layerkit-test/hiding:t");
    let names = tar_names(&exported(engine, "layerkit-test/hiding:t"));
    for name in ["first", "d", "hidden", "second"] {
        assert!(names.iter().any(|n| n == name), "docker has no {name}: {names:?}");
    }
    // The end blocks of the inner tar end the archive for Go: `visible` is tar-rs's only.
    assert!(!names.iter().any(|n| n == "visible"), "{names:?}");
    let image = format!("{}:t", layout.display());
    let why = format!("d/: a directory entry carrying {} bytes of data", hidden.len());
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let empty = empty.to_string_lossy().into_owned();
    for args in [
        ["image-stack", "--from", &image, "--tar"],
        ["layer-diff", "--list", &empty, &image],
    ] {
        let err = fails(tool(args[0]).args(&args[1..]), b"");
        assert!(err.contains(&why), "{err}");
    }
    let err = fails(tool("layer-pack").arg("--layout").arg(dir.join("store")), &layer);
    assert!(err.contains(&why), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Images as docker users manage them (issue 13): the same images, listed, shown, tagged and
// removed by docker and by our tools, side by side. Each test names its images with a prefix
// of its own: the tests of this file share one engine.

/// Runs a shell script in `dir` with our tools first on PATH.
fn here(dir: &Path, script: &str) -> String {
    String::from_utf8(sh(&format!("set -e; cd {}\n{script}", dir.display()))).expect("UTF-8")
}

/// Our tool's stdout, as text.
fn ours(cmd: &mut std::process::Command) -> String {
    String::from_utf8(ok(cmd, b"")).expect("UTF-8")
}

/// Sizes are compared where docker's are overlay2's (on vfs docker counts regular files only).
fn overlay2(engine: &Dockerd, what: &str) -> bool {
    if engine.driver() == "overlay2" {
        return true;
    }
    eprintln!(
        "SKIPPED: {what}: dockerd runs on {}, not overlay2",
        engine.driver()
    );
    false
}

/// A base image of `rootfs/` and images on it, made by our tools in `dir/store` with distinct
/// creation times: `P/base:1` (debootstrap); `P/web:v1` adding a 33-byte app.js, a symlink to
/// it and a hard link to it; `P/web:v2`, a config-only commit of v1; `P/web:latest`, v2 again.
fn our_images(dir: &Path, p: &str) {
    file(
        dir,
        "app/srv/app.js",
        b"console.log('hello from layer');\n",
        0o644,
        1_700_000_000,
    );
    here(
        dir,
        &format!(
            "ln -s app.js app/srv/current; ln app/srv/app.js app/srv/again.js
             layer-pack --layout store rootfs/ | SOURCE_DATE_EPOCH=1700000000 image-stack --layer - --tag store:{p}/base:1 --created-by debootstrap
             layer-pack --layout store app/ | SOURCE_DATE_EPOCH=1700000600 image-stack --from store:{p}/base:1 --layer - --tag store:{p}/web:v1 -m 'Add app' \
               --created-by \"$(printf '/bin/sh -c set -eux;\\tcp app.js /srv/ \\&\\& ln -s app.js /srv/current \\&\\& ln /srv/app.js /srv/again.js')\"
             SOURCE_DATE_EPOCH=1700001200 image-stack --from store:{p}/web:v1 -c 'CMD [\"/bin/sh\"]' --tag store:{p}/web:v2
             image-stack --from store:{p}/web:v2 --tag store:{p}/web:latest"
        ),
    );
}

/// `docker images` and `image-ls` on the same images (loaded from our layout, so their ids are
/// ours): the same table, byte for byte (rows, ids, CREATED, SIZE), with and without
/// --no-trunc, and the same -q.
#[test]
fn docker_images_and_image_ls_agree_cell_by_cell() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    let p = "lk-ls";
    our_images(dir, p);
    let store = dir.join("store");
    for tag in ["base:1", "web:v1", "web:v2", "web:latest"] {
        engine.load(&store, &format!("{p}/{tag}"), &format!("{p}/{tag}"));
    }
    let filter = format!("reference={p}/*");
    let image = store.display().to_string();
    // The tables hold SIZE, which docker counts as we do on overlay2 only; -q has none.
    let sizes = overlay2(engine, "docker images SIZE");
    for flags in [&[][..], &["--no-trunc"], &["-q"]] {
        if flags != ["-q"] && !sizes {
            continue;
        }
        let docker = engine.run(&[&["images", "--filter", &filter][..], flags].concat());
        let mine = ours(tool("image-ls").args(["-f", &filter]).args(flags).arg(&image));
        assert_eq!(mine, docker, "image-ls {flags:?}");
    }
    let before = "before=lk-ls/web:v2";
    let (docker, mine) = (
        engine.run(&["images", "-q", "--filter", &filter, "--filter", before]),
        ours(tool("image-ls").args(["-q", "-f", &filter, "-f", before, &image])),
    );
    assert_eq!(mine, docker, "{before}");
    if sizes {
        assert_eq!(
            engine.run(&["images", "--filter", &filter, "--filter", before]),
            ours(tool("image-ls").args(["-f", &filter, "-f", before, &image]))
        );
    }
}

/// `docker history` and `image-history` of the same image: the same table, byte for byte
/// (rows, CREATED BY cut at 45 columns, SIZE as overlay2 counts it: the app layer's file,
/// symlink and hard link, GNU tar's sparse files at their real size, a layer of whiteouts,
/// a config-only commit, COMMENT), human and not, truncated and not. The image is alone in
/// its layout there, so that lower rows are <missing> on both sides: docker knows no parent
/// of a loaded image.
#[test]
fn docker_history_and_image_history_agree_byte_for_byte() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    let p = "lk-h";
    our_images(dir, p);
    sparse_tree(&dir.join("sparse"));
    std::fs::write(dir.join("sparse.tar"), gnu_sparse_tar(&dir.join("sparse"), "1.0")).unwrap();
    here(
        dir,
        &format!(
            "layer-pack --layout store sparse.tar | SOURCE_DATE_EPOCH=1700001800 image-stack --from store:{p}/web:v2 --layer - --tag store:{p}/app:1 -m sparse
             mkdir -p lower/srv upper/srv; cp -a app/srv/. lower/srv/; cp -a app/srv/app.js upper/srv/
             layer-diff lower/ upper/ | layer-pack --layout store | SOURCE_DATE_EPOCH=1700002400 image-stack --from store:{p}/app:1 --layer - --tag store:{p}/app:1 -m 'Remove the links'
             image-stack --from store:{p}/app:1 --tag solo:{p}/app:1"
        ),
    );
    engine.load(&dir.join("store"), &format!("{p}/app:1"), &format!("{p}/app:1"));
    let solo = format!("{}:{p}/app:1", dir.join("solo").display());
    for flags in [
        &[][..],
        &["--no-trunc"],
        &["-H=false"],
        &["-H=false", "--no-trunc"],
        &["-q"],
    ] {
        if !flags.contains(&"-q") && !overlay2(engine, "docker history SIZE") {
            continue;
        }
        let mut docker = engine.docker();
        docker
            .env("TZ", "UTC")
            .arg("history")
            .args(flags)
            .arg(format!("{p}/app:1"));
        let docker = String::from_utf8(ok(&mut docker, b"")).unwrap();
        let mine = ours(tool("image-history").args(flags).arg(&solo));
        assert_eq!(mine, docker, "image-history {flags:?}");
    }
}

/// Images docker commits (each the parent of the next, as docker records it) come back to our
/// layout with their ids; image-history shows every id docker shows, row by row.
#[test]
fn docker_commits_keep_their_ids_and_history_shows_their_parents() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    let p = "lk-c";
    our_images(dir, p);
    let store = dir.join("store");
    engine.load(&store, &format!("{p}/web:v1"), &format!("{p}/web:v1"));
    two_commits_in_docker(engine, p, &format!("{p}/web:v1"));
    for tag in ["c:1", "c:2"] {
        engine.save_as_is(&format!("{p}/{tag}"), &store, &format!("{p}/{tag}"));
    }
    let image = format!("{}:{p}/c:2", store.display());
    let mut docker = engine.docker();
    docker
        .env("TZ", "UTC")
        .args(["history", "-H=false", "--no-trunc", &format!("{p}/c:2")]);
    let docker = String::from_utf8(ok(&mut docker, b"")).unwrap();
    let mine = ours(tool("image-history").args(["-H=false", "--no-trunc", &image]));
    // docker's parent chain ends at the loaded web:v1 (its base row is <missing> there); our
    // layout holds the base too, so image-history names it: the one row where they differ.
    let base = config_id(&store, &format!("{p}/base:1"));
    let mine = mine.replacen(&base, &format!("{:<71}", "<missing>"), 1);
    if overlay2(engine, "docker history SIZE") {
        assert_eq!(mine, docker);
    }
    let ids: Vec<&str> = docker
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        ids.iter().filter(|i| i.starts_with("sha256:")).count(),
        3,
        "{docker}"
    );
}

/// `rootfs/` of `dir` as the image `P/base:1` of `dir/store` (with `extra` image-stack
/// arguments), loaded into the engine under the same name. Returns the store.
fn base_in_both(engine: &Dockerd, dir: &Path, p: &str, extra: &str) -> std::path::PathBuf {
    here(
        dir,
        &format!(
            "layer-pack --layout store rootfs/ | SOURCE_DATE_EPOCH=1700000000 image-stack --layer - --tag store:{p}/base:1 {extra} >/dev/null"
        ),
    );
    let store = dir.join("store");
    engine.load(&store, &format!("{p}/base:1"), &format!("{p}/base:1"));
    store
}

/// Two docker commits on `from`: `P/c:1` writing /one, then `P/c:2` on it writing /two.
fn two_commits_in_docker(engine: &Dockerd, p: &str, from: &str) {
    commit_in_docker(engine, from, "echo one > /one", "one", &format!("{p}/c:1"));
    commit_in_docker(
        engine,
        &format!("{p}/c:1"),
        "echo two > /two",
        "two",
        &format!("{p}/c:2"),
    );
}

/// `docker run` from `from`, `sh -c script` in it, `docker commit -m msg` as `tag`.
fn commit_in_docker(engine: &Dockerd, from: &str, script: &str, msg: &str, tag: &str) {
    let name = format!("lk-{}", tag.replace(['/', ':'], "-"));
    engine.sh(Some(&name), from, script);
    engine.run(&["commit", "-m", msg, &name, tag]);
    engine.run(&["rm", &name]);
}

/// The image id (config digest) a tag of our layout names, read from the layout's files.
fn config_id(store: &Path, tag: &str) -> String {
    let read =
        |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let index = read(&store.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag}"))
        .clone();
    let manifest = read(
        &store
            .join("blobs/sha256")
            .join(&entry["digest"].as_str().unwrap()[7..]),
    );
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

/// The same history of commits and tag moves, made by docker (docker commit, docker rmi, a
/// commit to a tag that exists) and by our tools (image-stack --tag, image-prune IMAGE): the
/// same rows in `docker images [-a] [-f dangling=true]` and `image-ls`, and `docker image
/// prune` and `image-prune` remove the same images (dangling ones and the untagged parents only
/// they needed) and keep the same (intermediate ones). Images are told apart by their commit
/// message: docker's ids are its own.
#[test]
fn docker_image_prune_and_image_prune_remove_the_same_images() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    let p = "lk-p";
    // Every image carries the label, so that docker's prune removes only this test's.
    let store = base_in_both(engine, dir, p, "-m base -c 'LABEL lkp=1'");
    let s = store.display().to_string();
    let mut n = 0;
    let mut commit = |from: &str, msg: &str, tag: &str| {
        n += 1;
        commit_in_docker(
            engine,
            &format!("{p}/{from}"),
            &format!("echo {msg} > /{msg}"),
            msg,
            &format!("{p}/{tag}"),
        );
        file(
            &dir.join(format!("c{n}")),
            msg,
            format!("{msg}\n").as_bytes(),
            0o644,
            1_700_000_000,
        );
        here(
            dir,
            &format!(
                "layer-pack --layout store c{n}/ | SOURCE_DATE_EPOCH={} image-stack --from store:{p}/{from} --layer - --tag store:{p}/{tag} -m {msg} >/dev/null",
                1_700_000_000 + n * 60
            ),
        );
    };
    let rmi = |tag: &str| {
        engine.run(&["rmi", &format!("{p}/{tag}")]);
        ok(tool("image-prune").arg(format!("{s}:{p}/{tag}")), b"");
    };
    commit("base:1", "v1", "web:v1");
    commit("web:v1", "v2", "web:v2");
    rmi("web:v1");
    commit("web:v2", "v3a", "web:v3");
    commit("web:v2", "v3b", "web:v3");
    commit("base:1", "t1", "tmp:1");
    commit("tmp:1", "t2", "tmp:2");
    rmi("tmp:1");
    commit("base:1", "t2b", "tmp:2");

    let filter = "label=lkp=1".to_string();
    // REPOSITORY:TAG and commit message of each row, sorted.
    let docker_rows = |flags: &[&str]| -> Vec<String> {
        let out = engine.run(
            &[
                &[
                    "images",
                    "--filter",
                    &filter,
                    "--format",
                    "{{.Repository}}:{{.Tag}} {{.ID}}",
                ][..],
                flags,
            ]
            .concat(),
        );
        let mut rows: Vec<String> = out
            .lines()
            .map(|l| {
                let (name, id) = l.split_once(' ').unwrap();
                let comment = engine.run(&["history", "--format", "{{.Comment}}", id]);
                format!("{name} {}", comment.lines().next().unwrap_or(""))
            })
            .collect();
        rows.sort();
        rows
    };
    let our_rows = |flags: &[&str]| -> Vec<String> {
        let out = ours(tool("image-ls").args(["--format", "json"]).args(flags).arg(&s));
        let mut rows: Vec<String> = out
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let id = v["id"].as_str().unwrap();
                let h = ours(tool("image-history").args(["--format", "json", &format!("{s}@{id}")]));
                let top: serde_json::Value = serde_json::from_str(h.lines().next().unwrap()).unwrap();
                format!(
                    "{}:{} {}",
                    v["repository"].as_str().unwrap_or("<none>"),
                    v["tag"].as_str().unwrap_or("<none>"),
                    top["comment"].as_str().unwrap()
                )
            })
            .collect();
        rows.sort();
        rows
    };
    for flags in [
        &[][..],
        &["-a"],
        &["--filter", "dangling=true"],
        &["-a", "--filter", "dangling=false"],
    ] {
        assert_eq!(our_rows(flags), docker_rows(flags), "images {flags:?}");
    }
    assert_eq!(
        our_rows(&["--filter", "dangling=true"]),
        ["<none>:<none> t2", "<none>:<none> v3a"]
    );

    engine.run(&["image", "prune", "-f", "--filter", &filter]);
    ok(tool("image-prune").arg(&s), b"");
    let after = docker_rows(&["-a"]);
    assert_eq!(our_rows(&["-a"]), after);
    assert_eq!(
        after,
        [
            "<none>:<none> v1",
            "lk-p/base:1 base",
            "lk-p/tmp:2 t2b",
            "lk-p/web:v2 v2",
            "lk-p/web:v3 v3b"
        ]
    );
}

/// The lines of a `docker rmi` or `image-prune IMAGE` report that name tags and images (docker
/// also lists the layers it deletes, by chain id: not images, left out).
fn rmi_lines(report: &str, image_ids: &[String]) -> Vec<String> {
    report
        .lines()
        .filter(|l| {
            l.starts_with("Untagged: ")
                || l.strip_prefix("Deleted: ")
                    .is_some_and(|d| image_ids.iter().any(|i| i == d))
        })
        .map(str::to_string)
        .collect()
}

/// `docker rmi` and `image-prune IMAGE` on the same images (docker's commits, saved to our
/// layout with their ids): by tag an image keeping another tag or a child is only untagged; by
/// id an image of two tags needs -f and one with a child cannot go; the last tag of a child
/// takes its untagged parent along. The same lines, in the same order.
#[test]
fn docker_rmi_and_image_prune_image_agree() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    let p = "lk-r";
    let store = base_in_both(engine, dir, p, "");
    two_commits_in_docker(engine, p, &format!("{p}/base:1"));
    engine.run(&["tag", &format!("{p}/c:2"), &format!("{p}/c:latest")]);
    for tag in ["c:1", "c:2", "c:latest"] {
        engine.save_as_is(&format!("{p}/{tag}"), &store, &format!("{p}/{tag}"));
    }
    let ids: Vec<String> = ["base:1", "c:1", "c:2"]
        .iter()
        .map(|t| config_id(&store, &format!("{p}/{t}")))
        .collect();
    for (tag, id) in ["base:1", "c:1", "c:2"].iter().zip(&ids) {
        let docker_id = engine.run(&["inspect", "--format", "{{.Id}}", &format!("{p}/{tag}")]);
        assert_eq!(docker_id.trim(), id, "{tag}: docker's id is ours");
    }
    let s = store.display().to_string();
    let both_refuse = |docker_arg: &str, our_arg: &str, why: &str| {
        let out = engine.docker().args(["rmi", docker_arg]).output().unwrap();
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains(why),
            "{out:?}"
        );
        let before = snapshot(&store);
        let err = fails(tool("image-prune").arg(our_arg), b"");
        assert!(err.contains(why), "{err}");
        assert_eq!(snapshot(&store), before);
    };
    let both = |docker_arg: &str, our_arg: &str| {
        let docker = engine.run(&["rmi", docker_arg]);
        let mine = ours(tool("image-prune").arg(our_arg));
        assert_eq!(
            rmi_lines(&mine, &ids),
            rmi_lines(&docker, &ids),
            "docker rmi {docker_arg}"
        );
        assert!(!rmi_lines(&mine, &ids).is_empty());
    };
    let short = |i: usize| ids[i][7..19].to_string();
    both_refuse(&short(2), &format!("{s}@{}", short(2)), "must be forced");
    both_refuse(&short(1), &format!("{s}@{}", short(1)), "dependent child images");
    both(&format!("{p}/c:1"), &format!("{s}:{p}/c:1"));
    both(&format!("{p}/c:2"), &format!("{s}:{p}/c:2"));
    both(&format!("{p}/c:latest"), &format!("{s}:{p}/c:latest"));
    both(&short(0), &format!("{s}@{}", short(0)));
}

/// `docker tag <short id> NAME` and `image-stack --from LAYOUT@<short id> --tag`: the same
/// image under the new name (the tutorial's rollback to an id read off the history).
#[test]
fn docker_tag_by_short_id_and_from_layout_at_id_agree() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    let p = "lk-t";
    our_images(dir, p);
    let store = dir.join("store");
    engine.load(&store, &format!("{p}/web:v1"), &format!("{p}/web:v1"));
    let id = config_id(&store, &format!("{p}/web:v1"));
    let short = &id[7..12];
    engine.run(&["tag", short, &format!("{p}/rolled:back")]);
    ok(
        tool("image-stack").args([
            "--from",
            &format!("{}@{short}", store.display()),
            "--tag",
            &format!("{}:{p}/rolled:back", store.display()),
        ]),
        b"",
    );
    let docker = engine.run(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
        &format!("{p}/rolled"),
    ]);
    let mine = ours(
        tool("image-ls")
            .args([
                "--no-trunc",
                "-f",
                &format!("reference={p}/rolled"),
                "--format",
                "json",
            ])
            .arg(&store),
    );
    let v: serde_json::Value = serde_json::from_str(mine.trim()).unwrap();
    assert_eq!(
        docker.trim(),
        format!(
            "{}:{} {}",
            v["repository"].as_str().unwrap(),
            v["tag"].as_str().unwrap(),
            v["id"].as_str().unwrap()
        )
    );
    assert_eq!(docker.trim(), format!("{p}/rolled:back {id}"));
}

/// The tutorial's walk-through: a container run from our image, files changed in it; `docker
/// diff` and `layer-diff --list` of the tree `docker export` gives (less what docker's init
/// layer adds, which neither docker diff nor docker commit count) list the same changes; and
/// `docker commit` and our commit of that tree unpack to the same tree.
#[test]
fn the_tutorial_walk_through_against_docker() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    let p = "lk-w";
    file(dir, "rootfs/etc/motd", b"welcome\n", 0o644, 1_700_000_000);
    file(dir, "rootfs/srv/old.html", b"old\n", 0o644, 1_700_000_000);
    let store = base_in_both(engine, dir, p, "--created-by debootstrap");
    let name = "lk-w-container";
    engine.sh(
        Some(name),
        &format!("{p}/base:1"),
        "busybox mkdir -p /srv/static; echo hello > /srv/index.html; echo css > /srv/static/site.css; \
         busybox rm /etc/hello /srv/old.html; echo more >> /etc/motd; busybox chmod 600 /etc/motd",
    );
    let mut docker_diff: Vec<String> = engine.run(&["diff", name]).lines().map(str::to_string).collect();
    docker_diff.sort();
    let web = dir.join("web");
    std::fs::create_dir(&web).unwrap();
    ok(
        std::process::Command::new("tar")
            .args(["--numeric-owner", "-xpf", "-", "-C"])
            .arg(&web),
        &ok(engine.docker().args(["export", name]), b""),
    );
    let init_layer = [
        "/.dockerenv",
        "/dev",
        "/proc",
        "/sys",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/mtab",
    ];
    let excludes: Vec<String> = init_layer
        .iter()
        .flat_map(|x| ["--exclude".to_string(), x.to_string()])
        .collect();
    let base = format!("{}:{p}/base:1", store.display());
    let listed = ours(
        tool("layer-diff")
            .arg("--list")
            .args(&excludes)
            .arg(&base)
            .arg(&web),
    );
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(listed, docker_diff);
    assert!(
        docker_diff.contains(&"D /srv/old.html".to_string()),
        "{docker_diff:?}"
    );

    engine.run(&["commit", name, &format!("{p}/web:docker")]);
    engine.run(&["rm", name]);
    engine.save(&format!("{p}/web:docker"), &store, &format!("{p}/web:docker"));
    let diff = ok(tool("layer-diff").args(&excludes).arg(&base).arg(&web), b"");
    let desc = ok(tool("layer-pack").arg("--layout").arg(&store), &diff);
    ok(
        tool("image-stack").args([
            "--from",
            &base,
            "--layer",
            "-",
            "--tag",
            &format!("{}:{p}/web:ours", store.display()),
        ]),
        &desc,
    );
    for tag in ["docker", "ours"] {
        ok(
            tool("image-stack")
                .arg("--from")
                .arg(format!("{}:{p}/web:{tag}", store.display()))
                .arg("--rootfs")
                .arg(dir.join(tag)),
            b"",
        );
    }
    assert_eq!(snapshot(&dir.join("ours")), snapshot(&dir.join("docker")));
    // And docker's SIZE of the two commits is the same (the same files).
    if overlay2(engine, "docker history SIZE") {
        let size = |tag: &str| {
            let h = ours(tool("image-history").args([
                "--format",
                "json",
                &format!("{}:{p}/web:{tag}", store.display()),
            ]));
            let top: serde_json::Value = serde_json::from_str(h.lines().next().unwrap()).unwrap();
            top["size"].clone()
        };
        assert_eq!(size("ours"), size("docker"));
        let docker_size = engine.run(&[
            "history",
            "-H=false",
            "--format",
            "{{.Size}}",
            &format!("{p}/web:docker"),
        ]);
        assert_eq!(docker_size.lines().next().unwrap(), size("docker").to_string());
    }
}

/// A layer tar of regular files ("path", content), hard links ("path", "=>target") and
/// directories ("path/", ""), root-owned, with a fixed time.
fn layer_tar(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, what) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
        } else if let Some(target) = what.strip_prefix("=>") {
            h.set_entry_type(tar::EntryType::Link);
            h.set_link_name(target).unwrap();
            h.set_mode(0o644);
        } else {
            h.set_mode(0o644);
            h.set_size(what.len() as u64);
        }
        h.set_cksum();
        let data: &[u8] = if h.size().unwrap() > 0 {
            what.as_bytes()
        } else {
            b""
        };
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn docker_runs_an_image_squashed_above_its_base() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    file(
        &dir.join("rootfs"),
        "etc/remove-me",
        b"a base file\n",
        0o644,
        1_700_000_000,
    );
    // Above the busybox base: a hard link whose target the next layer removes (crane #977),
    // one whose target it overwrites (#2002), /etc/hello rewritten, a base file removed.
    std::fs::write(
        dir.join("one.tar"),
        layer_tar(&[
            ("app/", ""),
            ("app/f", "content of f\n"),
            ("app/g", "=>app/f"),
            ("app/x", "x before\n"),
            ("app/y", "=>app/x"),
        ]),
    )
    .unwrap();
    std::fs::write(
        dir.join("two.tar"),
        layer_tar(&[
            ("app/.wh.f", ""),
            ("app/x", "x after\n"),
            ("etc/hello", "hello from the squash\n"),
            ("etc/.wh.remove-me", ""),
        ]),
    )
    .unwrap();
    sh(&format!(
        "cd {} && layer-pack --layout store rootfs/ | image-stack --layer - --tag store:base \
         && layer-pack --layout store one.tar | image-stack --from store:base --layer - --tag store:app \
         && layer-pack --layout store two.tar | image-stack --from store:app --layer - --tag store:app \
         && image-stack --from store:app --squash-above store:base --tag store:squashed",
        dir.display()
    ));
    let store = dir.join("store");
    engine.load(&store, "squashed", "layerkit-test/squashed:1");
    let out = engine.sh(
        None,
        "layerkit-test/squashed:1",
        "cat /app/g /app/x /app/y /etc/hello; test -e /app/f || echo no f; \
         test -e /etc/remove-me || echo no remove-me",
    );
    assert_eq!(
        out,
        "content of f\nx after\nx before\nhello from the squash\nno f\nno remove-me\n"
    );
    let history = engine.run(&["history", "-q", "layerkit-test/squashed:1"]);
    assert_eq!(
        history.lines().count(),
        2,
        "the base's entry and the squash's: {history}"
    );
    // docker unpacked the tree --tar gives of the original image.
    let mut theirs = tar_names(&exported(engine, "layerkit-test/squashed:1"));
    let ours = ok(
        tool("image-stack")
            .arg("--from")
            .arg(format!("{}:app", store.display()))
            .arg("--tar"),
        b"",
    );
    let mut ours = tar_names(&ours);
    // docker export adds what every container gets (/.dockerenv, /dev, /etc/hosts, …).
    theirs.retain(|n| ours.contains(n));
    ours.sort();
    theirs.sort();
    assert_eq!(theirs, ours);
}

/// A layer writing `x/child` where the image below left `x` a file, a dangling symlink or a
/// symlink to a file: docker (overlay2) shows a directory there, the lower `x` gone, and so do
/// `--rootfs` and `--tar`. Where `x` is a symlink to a directory, docker's overlay2 also shows a
/// new directory (each layer is unpacked alone, and its `x/` hides the lower symlink), while we
/// write through the symlink, as umoci, containerd's applier and moby's own naive applier do;
/// the test pins that difference too, so that a change on either side shows.
#[test]
fn a_layer_writing_beneath_a_lower_non_directory_unpacks_as_docker_shows_it() {
    let Some((engine, t)) = engine_and_root() else {
        return;
    };
    let dir = t.path();
    let cases = "file dangling tofile todir";
    sh_in(
        dir,
        &format!(
            "set -e
             mkdir -p l1/real l2
             echo file > l1/file
             echo file2 > l1/file2
             ln -s nowhere l1/dangling
             ln -s file2 l1/tofile
             ln -s real l1/todir
             for d in {cases}; do mkdir l2/$d; echo $d > l2/$d/child; done
             tar -C l1 -cf 1.tar .
             (cd l2 && tar --no-recursion -cf ../2.tar */child)
             layer-pack -q --layout store rootfs/ | image-stack -q --layer - --tag store:busybox >/dev/null
             layer-pack -q --layout store 1.tar | image-stack -q --from store:busybox --layer - --tag store:lower >/dev/null
             layer-pack -q --layout store 2.tar | image-stack -q --from store:lower --layer - --tag store:beneath >/dev/null
             image-stack -q --from store:beneath --rootfs ours/
             mkdir flat && image-stack -q --from store:beneath --tar | tar -C flat -xf -"
        ),
    );
    engine.load(&dir.join("store"), "beneath", "layerkit-test/beneath:1");
    let names = "file file2 dangling tofile todir real nowhere";
    // A directory's size is its file system's (tmpfs here, overlay there): left out.
    let listing = |text: String| {
        let mut rows: Vec<String> = text
            .lines()
            .map(|r| match r.split_once(" directory ") {
                Some((name, _)) => format!("{name} directory"),
                None => r.to_string(),
            })
            .collect();
        rows.sort();
        rows
    };
    let docker = listing(engine.sh(
        None,
        "layerkit-test/beneath:1",
        &format!(
            "cd / && for n in {names}; do busybox find $n 2>/dev/null || true; done \
             | busybox xargs busybox stat -c '%n %F %s'"
        ),
    ));
    let ours = |tree: &str| {
        listing(text(sh_in(
            &dir.join(tree),
            &format!("for n in {names}; do find $n 2>/dev/null || true; done | xargs stat -c '%n %F %s'"),
        )))
    };
    let same: Vec<&String> = docker.iter().filter(|r| !r.starts_with("todir")).collect();
    for tree in ["ours", "flat"] {
        let ours = ours(tree);
        let ours_same: Vec<&String> = ours
            .iter()
            .filter(|r| !r.starts_with("todir") && !r.starts_with("real/"))
            .collect();
        assert_eq!(ours_same, same, "{tree}: docker shows otherwise");
        assert!(
            ours.contains(&"todir symbolic link 4".to_string())
                && ours.contains(&"real/child regular file 6".to_string()),
            "{tree}: {ours:?}"
        );
    }
    for row in [
        "file directory",
        "file/child regular file 5",
        "dangling/child regular file 9",
        "tofile/child regular file 7",
        "file2 regular file 6",
        "todir directory",
        "todir/child regular file 6",
    ] {
        assert!(
            docker.iter().any(|r| r.starts_with(row)),
            "docker: no {row}: {docker:?}"
        );
    }
    assert!(
        !docker
            .iter()
            .any(|r| r.starts_with("nowhere") || r.starts_with("real/")),
        "{docker:?}"
    );
}
