//! `make demo`'s walk-through, run against the binaries under test: every step must succeed
//! and show what the docker tutorial it mirrors shows.

use crate::support::*;
use std::path::Path;
use std::process::Command;

#[test]
fn demo_walks_through_commit_history_cleanup_and_prune() {
    if peer("jq").is_none() {
        return;
    }
    let script = repo().join("demo/demo.sh");
    let work = tempdir();
    let demo_dir = work.path().join("demo");
    let out = run(
        Command::new("bash")
            .arg(&script)
            .env("LAYERKIT_BIN_DIR", bin_dir())
            .env("DEMO_DIR", &demo_dir)
            .env("KEEP", "1"),
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}\n{stdout}");

    // docker diff of the working tree: the new page, the new directory and file, the removal.
    for line in [
        "C /usr/local/apache2/htdocs/index.html",
        "A /usr/local/apache2/htdocs/static",
        "A /usr/local/apache2/htdocs/static/site.css",
        "A /tmp/site-assets.download",
        "D /etc/hostname",
        "C /usr/local/apache2/conf/httpd.conf",
    ] {
        assert!(stdout.lines().any(|l| l == line), "no {line:?} in:\n{stdout}");
    }
    assert!(
        stdout.lines().any(|l| l == "D /tmp/site-assets.download"),
        "{stdout}"
    );
    // docker history, read from image-history's tables (the echoed command lines hold the same
    // words): web:v1, web:v2 on top of it, then web:v2 recommitted on the base. Each row's
    // (CREATED BY, COMMENT), top layer first.
    let tables = history_tables(&stdout);
    let cells = |t: &Vec<HistoryRow>| -> Vec<(String, String)> {
        t.iter()
            .map(|r| (r.created_by.clone(), r.comment.clone()))
            .collect()
    };
    let row = |by: &str, comment: &str| (by.to_string(), comment.to_string());
    assert_eq!(
        tables.iter().map(cells).collect::<Vec<_>>(),
        [
            vec![row("", "Add site"), row("debootstrap", "")],
            vec![
                row("", "Remove the download"),
                row("", "Add site"),
                row("debootstrap", "")
            ],
            vec![row("", "Add site"), row("debootstrap", "")],
        ],
        "{stdout}"
    );
    // v2 was committed on v1: below its top row, v2's history is v1's, image ids included.
    let ids = |t: &Vec<HistoryRow>| t.iter().map(|r| r.image.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&tables[1])[1..], ids(&tables[0])[..], "{stdout}");
    // docker image prune's report, and the last step's own output line.
    assert!(
        stdout.lines().any(|l| l.starts_with("Total reclaimed space: ")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l == "store:web:v2 is intact"), "{stdout}");

    // The sizes table: v2 on top of v1 is no smaller; squashed and recommitted images are.
    let sizes = |tag: &str| -> Vec<(u64, u64)> {
        stdout
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(tag))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[3].parse().unwrap(), f[7].parse().unwrap())
            })
            .collect()
    };
    let v1 = sizes("web:v1")[0];
    let v2 = sizes("web:v2");
    let flat = sizes("web:flat")[0];
    assert!(v2[0].1 >= v1.1, "v2 {v2:?} is smaller than v1 {v1:?}");
    assert!(
        flat.1 + 2_000_000 < v2[0].1,
        "squashing drops the download: {flat:?} vs {v2:?}"
    );
    assert!(
        v2[1].1 + 2_000_000 < v1.1,
        "recommitted v2 drops the download: {v2:?} vs {v1:?}"
    );

    // Containers (image-stack --mount), when the run could mount: a change made inside with
    // chroot shows in docker diff, the second commit of the cleaned container is smaller, and
    // three containers of v2 stack the same cached layers.
    if stdout.contains("A container from the base image") {
        for line in [
            "A /tmp/site-assets.download",
            "C /usr/local/apache2/htdocs/index.html",
        ] {
            assert!(stdout.lines().any(|l| l == line), "no {line:?} in:\n{stdout}");
        }
        let (app1, app2) = (sizes("app:v1")[0], sizes("app:v2")[0]);
        assert!(
            app2.1 + 2_000_000 < app1.1,
            "v2 of the cleaned container: {app2:?} vs {app1:?}"
        );
        let lowers: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("{\"mount\"") && l.contains("\"lower\""))
            .map(|l| &l[l.find("\"lower\"").unwrap_or(0)..])
            .collect();
        assert_eq!(lowers.len(), 3, "{stdout}");
        assert!(lowers.iter().all(|l| *l == lowers[0]), "{lowers:?}");
        assert!(
            stdout.contains("c2/tmp:\n\nc3/tmp:"),
            "c1's note stays in c1: {stdout}"
        );
    } else {
        assert!(!is_root(), "as root the demo runs its container steps");
    }

    // What the demo left is a valid layout that the tools still read.
    let store = demo_dir.join("store");
    // The IMAGE cell of web:v1's top row is its config's digest, as index.json and the
    // manifest say.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).expect("index.json")).expect("json");
    let v1 = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "web:v1")
        .expect("web:v1 in index.json");
    let blob = |digest: &serde_json::Value| -> serde_json::Value {
        let hex = digest
            .as_str()
            .expect("digest")
            .strip_prefix("sha256:")
            .expect("sha256");
        serde_json::from_slice(&std::fs::read(store.join("blobs/sha256").join(hex)).expect("blob"))
            .expect("json")
    };
    let manifest = blob(&v1["digest"]);
    let config_digest = manifest["config"]["digest"].as_str().expect("config digest");
    assert_eq!(tables[0][0].image, config_digest["sha256:".len()..][..12]);
    let listed = ok(
        tool("image-history").arg(format!("{}:web:v2", store.display())),
        b"",
    );
    assert!(String::from_utf8_lossy(&listed).contains("Add site"));
    let dangling = sh(&format!(
        "jq '[.manifests[] | select(.annotations[\"org.opencontainers.image.ref.name\"] == null)] | length' {}/index.json",
        store.display()
    ));
    assert_eq!(
        String::from_utf8_lossy(&dangling).trim(),
        "0",
        "prune removed the dangling v2"
    );
}

/// One row of an image-history table.
struct HistoryRow {
    image: String,
    created_by: String,
    comment: String,
}

/// Every image-history table in `out`: a header line `IMAGE  CREATED  CREATED BY  SIZE  COMMENT`,
/// then its rows up to the first line that is not one (a row starts with an IMAGE cell: 12 hex
/// digits or `<missing>`). Cells are cut at the header's column starts.
fn history_tables(out: &str) -> Vec<Vec<HistoryRow>> {
    let mut tables = Vec::new();
    let mut lines = out.lines().peekable();
    while let Some(line) = lines.next() {
        if !(line.starts_with("IMAGE ") && line.contains(" CREATED BY ") && line.ends_with("COMMENT")) {
            continue;
        }
        let col = |name: &str| line.find(name).expect("column");
        let (by, size, comment) = (col("CREATED BY"), col("SIZE"), col("COMMENT"));
        let mut rows = Vec::new();
        while let Some(row) = lines.next_if(|l| {
            let image = l.split(' ').next().unwrap_or("");
            image == "<missing>" || (image.len() == 12 && image.bytes().all(|b| b.is_ascii_hexdigit()))
        }) {
            let cell =
                |from: usize, to: usize| row.get(from..to.min(row.len())).unwrap_or("").trim().to_string();
            rows.push(HistoryRow {
                image: row.split(' ').next().unwrap_or("").to_string(),
                created_by: cell(by, size),
                comment: cell(comment, row.len()),
            });
        }
        tables.push(rows);
    }
    tables
}

/// The Makefile recipe of docs/pipelines.md, as written there.
fn docs_makefile() -> String {
    let doc = std::fs::read_to_string(repo().join("docs/pipelines.md")).expect("docs/pipelines.md");
    let start = doc
        .find("<!-- the Makefile below is run by tests/demo.rs")
        .expect("start marker");
    let block = &doc[start..];
    let body = &block[block.find("```make\n").expect("make block") + 8..];
    body[..body.find("```").expect("end of block")].to_string()
}

fn make(dir: &Path) -> String {
    let out = run(
        Command::new("make")
            .current_dir(dir)
            .env("PATH", path_with_tools())
            .env_remove("MAKEFLAGS")
            .env_remove("SOURCE_DATE_EPOCH"),
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "make failed:\n{text}");
    text
}

/// Sets the mtime of `dir` and everything under it (links themselves, not their targets).
fn set_tree_mtime(dir: &Path, t: i64) {
    for e in walkdir::WalkDir::new(dir) {
        let t = filetime::FileTime::from_unix_time(t, 0);
        filetime::set_symlink_file_times(e.expect("walk").path(), t, t).expect("lutimes");
    }
}

fn image_digest(dir: &Path) -> String {
    let line = std::fs::read_to_string(dir.join("build/image.json")).expect("build/image.json");
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("a descriptor");
    v["digest"].as_str().expect("digest").to_string()
}

#[test]
fn docs_makefile_rebuilds_only_what_changed() {
    if peer("make").is_none() || peer("jq").is_none() {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(d.join("Makefile"), docs_makefile()).unwrap();
    // Every time make compares is set here, in the past and 100 s apart, so the steps do not
    // wait for the clock; all are past the Makefile's SOURCE_DATE_EPOCH, which clamps them in
    // the layers (a touch alone must not change a digest).
    let t0 = 1_750_000_000;
    for (layer, files) in [
        ("base", &["etc/passwd", "bin/sh"][..]),
        ("runtime", &["usr/lib/libapp.so"][..]),
        ("app", &["srv/app/main", "srv/app/config.json"][..]),
    ] {
        for f in files {
            file(
                &d.join("layers").join(layer),
                f,
                format!("{layer}:{f}\n").as_bytes(),
                0o644,
                t0,
            );
        }
    }
    set_tree_mtime(&d.join("layers"), t0);

    let first = make(d);
    // The commands make echoes (the first also says on stderr that it created the layout).
    let packs = |out: &str| out.lines().filter(|l| l.starts_with("layer-pack ")).count();
    assert_eq!(packs(&first), 3, "{first}");
    assert!(
        first.contains("layer-pack: created OCI layout store/\n"),
        "{first}"
    );
    let digest = image_digest(d);

    let second = make(d);
    assert!(
        !second.contains("layer-pack") && !second.contains("image-stack"),
        "{second}"
    );
    assert_eq!(image_digest(d), digest);

    // Same content, newer mtimes: app is repacked to the same (reused) blob; no restack.
    set_tree_mtime(&d.join("build"), t0 + 100);
    for f in ["srv/app/main", "srv/app/config.json"] {
        mtime(&d.join("layers/app"), f, t0 + 200);
    }
    let touched = make(d);
    assert_eq!(packs(&touched), 1, "{touched}");
    assert!(!touched.contains("image-stack"), "{touched}");
    assert_eq!(image_digest(d), digest);

    // New content: app is repacked and the image restacked, to a new digest.
    set_tree_mtime(&d.join("build"), t0 + 300);
    file(&d.join("layers/app"), "srv/app/new", b"new\n", 0o644, t0 + 400);
    mtime(&d.join("layers/app"), "srv/app", t0 + 400);
    let changed = make(d);
    assert_eq!(packs(&changed), 1, "{changed}");
    assert_eq!(changed.matches("image-stack").count(), 1, "{changed}");
    assert_ne!(image_digest(d), digest);
}
