//! `make demo`'s walk-through, run against the binaries under test: every step must succeed
//! and show what the docker tutorial it mirrors shows.

use crate::support::*;
use std::path::Path;
use std::process::Command;

/// A docker size cell (`6.48MB`, `156B`) in bytes, as docker's go-units writes them:
/// 1000-based, three significant digits.
fn size_cell(cell: &str) -> f64 {
    let digits = cell.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: f64 = digits.parse().unwrap_or_else(|_| panic!("not a size: {cell:?}"));
    n * match &cell[digits.len()..] {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        unit => panic!("unit {unit:?} in {cell:?}"),
    }
}

/// The rows of each `image-ls` table the demo printed (the lines after each header, up to a
/// blank line or a `$ ` command line), split into cells.
fn ls_tables(stdout: &str) -> Vec<Vec<Vec<String>>> {
    let mut tables = Vec::new();
    let mut lines = stdout.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("REPOSITORY   TAG ") && !l.contains("SHARED SIZE") {
            let rows = lines
                .by_ref()
                .take_while(|r| !r.is_empty() && !r.starts_with("$ "))
                .map(|r| r.split_whitespace().map(str::to_string).collect())
                .collect();
            tables.push(rows);
        }
    }
    tables
}

#[test]
fn demo_walks_through_commit_history_images_rollback_rmi_prune_and_containers() {
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
    let has_line = |pred: &dyn Fn(&str) -> bool| stdout.lines().any(pred);
    let is_id = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit());

    // docker diff of the working tree: the new page, the new directory and file, the removal.
    for line in [
        "C /usr/local/apache2/htdocs/index.html",
        "A /usr/local/apache2/htdocs/static",
        "A /usr/local/apache2/htdocs/static/site.css",
        "A /tmp/site-assets.download",
        "D /etc/hostname",
        "C /usr/local/apache2/conf/httpd.conf",
        "D /tmp/site-assets.download",
    ] {
        assert!(stdout.lines().any(|l| l == line), "no {line:?} in:\n{stdout}");
    }
    // docker history, rows as image-history prints them (not the echoed commands): the base's
    // layer made by debootstrap; v1's layer, whose 3,000,000-byte download and few small files
    // docker shows as 3MB; v2's layer, a whiteout and a directory, 0B.
    assert!(
        has_line(&|l| is_id(&l[..12.min(l.len())]) && l.contains("   debootstrap   ")),
        "{stdout}"
    );
    assert!(
        has_line(&|l| is_id(&l[..12.min(l.len())]) && l.ends_with("   3MB       Add site")),
        "{stdout}"
    );
    assert!(
        has_line(&|l| is_id(&l[..12.min(l.len())]) && l.ends_with("   0B        Remove the download")),
        "{stdout}"
    );
    // The image-history tables, read cell by cell: web:v1, web:v2 on top of it, web:v2
    // recommitted on the base, and (when the run could mount) store:app:v2 committed from a
    // container of the base. Each row's (CREATED BY, COMMENT), top layer first.
    let histories = history_tables(&stdout);
    let mounted = stdout.contains("A container from the base image");
    let cells = |t: &Vec<HistoryRow>| -> Vec<(String, String)> {
        t.iter()
            .map(|r| (r.created_by.clone(), r.comment.clone()))
            .collect()
    };
    let row = |by: &str, comment: &str| (by.to_string(), comment.to_string());
    let mut want = vec![
        vec![row("", "Add site"), row("debootstrap", "")],
        vec![
            row("", "Remove the download"),
            row("", "Add site"),
            row("debootstrap", ""),
        ],
        vec![row("", "Add site"), row("debootstrap", "")],
    ];
    if mounted {
        want.push(vec![
            row("", "Add site, without the download"),
            row("debootstrap", ""),
        ]);
    }
    assert_eq!(histories.iter().map(cells).collect::<Vec<_>>(), want, "{stdout}");
    // v2 was committed on v1: below its top row, v2's history is v1's, image ids included.
    let ids = |t: &Vec<HistoryRow>| t.iter().map(|r| r.image.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&histories[1])[1..], ids(&histories[0])[..], "{stdout}");
    // Every commit on the base shows the base's id below its own row.
    for h in &histories[2..] {
        assert_eq!(h[1].image, histories[0][1].image, "{stdout}");
    }

    // docker images, before and after the rollback, and after squashing and recommitting.
    let lists = ls_tables(&stdout);
    assert_eq!(lists.len(), if mounted { 6 } else { 5 }, "{lists:?}");
    let ls_row = |t: &[Vec<String>], repo: &str, tag: &str| -> Vec<String> {
        t.iter()
            .find(|r| r[0] == repo && r[1] == tag)
            .unwrap_or_else(|| panic!("no {repo}:{tag} row in {t:?}"))
            .clone()
    };
    let size = |r: &[String]| size_cell(r.last().expect("SIZE"));
    let first = &lists[0];
    let (v1, v2) = (ls_row(first, "web", "v1"), ls_row(first, "web", "v2"));
    assert!(
        size(&v2) >= size(&v1),
        "deleting hides, it does not shrink: {first:?}"
    );
    // The rollback: web:rollback is v1, by the id image-history showed on v1's row.
    let rolled = ls_row(&lists[1], "web", "rollback");
    assert_eq!(rolled[2], v1[2]);
    assert!(
        stdout.lines().any(|l| l == v1[2]),
        "image-history -q showed v1's id"
    );
    let after = &lists[2];
    let (flat, new_v2) = (ls_row(after, "web", "flat"), ls_row(after, "web", "v2"));
    assert!(
        size(&flat) + 2e6 < size(&v1),
        "squashing drops the download: {after:?}"
    );
    assert!(
        size(&new_v2) + 2e6 < size(&v1),
        "recommitted v2 drops the download: {after:?}"
    );
    // The old v2 is dangling: listed as <none>, and alone under -f dangling=true.
    assert_eq!(ls_row(after, "<none>", "<none>")[2], v2[2]);
    assert_eq!(lists[3].len(), 1);
    assert_eq!(lists[3][0][2], v2[2]);
    // docker rmi web:flat.
    assert!(has_line(&|l| l == "Untagged: web:flat"), "{stdout}");
    assert!(
        has_line(&|l| l
            .strip_prefix("Deleted: sha256:")
            .is_some_and(|h| h.len() == 64 && h.starts_with(&flat[2]))),
        "{stdout}"
    );
    // docker image prune: the old v2 goes; what is left lists no <none> row.
    assert!(has_line(&|l| l == "Deleted Images:"), "{stdout}");
    assert!(
        has_line(&|l| l
            .strip_prefix("deleted: sha256:")
            .is_some_and(|h| h.starts_with(&v2[2]))),
        "{stdout}"
    );
    assert!(
        has_line(&|l| l.starts_with("Total reclaimed space: ")),
        "{stdout}"
    );
    let left = &lists[4];
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(left.iter().all(|r| r[0] != "<none>"), "{left:?}");
    assert!(has_line(&|l| l == "store:web:v2 is intact"), "{stdout}");

    // Containers (image-stack --mount), when the run could mount: a change made inside with
    // chroot shows in docker diff, the second commit of the cleaned container is smaller, and
    // three containers of v2 stack the same cached layers, which the disk usage counts.
    if mounted {
        for line in [
            "A /tmp/site-assets.download",
            "C /usr/local/apache2/htdocs/index.html",
        ] {
            assert!(stdout.lines().any(|l| l == line), "no {line:?} in:\n{stdout}");
        }
        let apps = &lists[5];
        let (app1, app2) = (ls_row(apps, "app", "v1"), ls_row(apps, "app", "v2"));
        assert_eq!(apps.len(), 2, "{apps:?}");
        assert!(
            size(&app2) + 2e6 < size(&app1),
            "v2 of the cleaned container: {app2:?} vs {app1:?}"
        );
        // Each container's JSON line: its lower directories, top first.
        let lowers: Vec<serde_json::Value> = stdout
            .lines()
            .filter(|l| l.starts_with('{') && l.contains("\"lower\""))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a mount's JSON line"))
            .filter(|v| v["image"] == "store:app:v2")
            .map(|v| v["lower"].clone())
            .collect();
        assert_eq!(lowers.len(), 3, "{stdout}");
        assert!(lowers.iter().all(|l| *l == lowers[0]), "{lowers:?}");
        assert_eq!(lowers[0].as_array().map(Vec::len), Some(2), "{lowers:?}");
        assert!(
            stdout.contains("c2/tmp:\n\nc3/tmp:"),
            "c1's note stays in c1: {stdout}"
        );
        // The two cached layers of app:v2, both in use: none reclaimable.
        assert!(
            has_line(
                &|l| l.starts_with("Layer cache          2         2         ") && l.ends_with(" 0B (0%)")
            ),
            "{stdout}"
        );
    } else {
        assert!(!is_root(), "as root the demo runs its container steps");
    }

    // What the demo left is a valid layout that the tools still read, without dangling entries.
    let store = demo_dir.join("store");
    // The IMAGE cell of web:v1's top row is its config's digest, as index.json and the
    // manifest say.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).expect("index.json")).expect("json");
    let entry = index["manifests"]
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
    let manifest = blob(&entry["digest"]);
    let config_digest = manifest["config"]["digest"].as_str().expect("config digest");
    assert_eq!(histories[0][0].image, config_digest["sha256:".len()..][..12]);
    let listed = ok(
        tool("image-history").arg(format!("{}:web:v2", store.display())),
        b"",
    );
    assert!(String::from_utf8_lossy(&listed).contains("Add site"));
    let untagged = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"].is_null())
        .count();
    assert_eq!(untagged, 0, "prune removed the dangling v2");
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
