//! `make demo`'s walk-through, run against the binaries under test: every step must succeed
//! and show what the docker tutorial it mirrors shows.

use layerkit_tests::*;
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
fn demo_walks_through_commit_history_images_rollback_rmi_and_prune() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/demo.sh");
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

    // docker images, before and after the rollback, and after squashing and recommitting.
    let tables = ls_tables(&stdout);
    assert!(tables.len() >= 5, "{tables:?}");
    let row = |t: &[Vec<String>], repo: &str, tag: &str| -> Vec<String> {
        t.iter()
            .find(|r| r[0] == repo && r[1] == tag)
            .unwrap_or_else(|| panic!("no {repo}:{tag} row in {t:?}"))
            .clone()
    };
    let size = |r: &[String]| size_cell(r.last().expect("SIZE"));
    let first = &tables[0];
    let (v1, v2) = (row(first, "web", "v1"), row(first, "web", "v2"));
    assert!(
        size(&v2) >= size(&v1),
        "deleting hides, it does not shrink: {first:?}"
    );
    // The rollback: web:rollback is v1, by the id image-history showed on v1's row.
    let rolled = row(&tables[1], "web", "rollback");
    assert_eq!(rolled[2], v1[2]);
    assert!(
        stdout.lines().any(|l| l == v1[2]),
        "image-history -q showed v1's id"
    );
    let after = &tables[2];
    let (flat, new_v2) = (row(after, "web", "flat"), row(after, "web", "v2"));
    assert!(
        size(&flat) + 2e6 < size(&v1),
        "squashing drops the download: {after:?}"
    );
    assert!(
        size(&new_v2) + 2e6 < size(&v1),
        "recommitted v2 drops the download: {after:?}"
    );
    // The old v2 is dangling: listed as <none>, and alone under -f dangling=true.
    assert_eq!(row(after, "<none>", "<none>")[2], v2[2]);
    assert_eq!(tables[3].len(), 1);
    assert_eq!(tables[3][0][2], v2[2]);
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
    let last = tables.last().expect("image-ls -a at the end");
    assert_eq!(last.len(), 4, "{last:?}");
    assert!(last.iter().all(|r| r[0] != "<none>"), "{last:?}");
    assert!(has_line(&|l| l == "store:web:v2 is intact"), "{stdout}");

    // What the demo left is a valid layout that the tools still read, without dangling entries.
    let store = demo_dir.join("store");
    let listed = ok(
        tool("image-history").arg(format!("{}:web:v2", store.display())),
        b"",
    );
    assert!(String::from_utf8_lossy(&listed).contains("Add site"));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).expect("index")).expect("json");
    let untagged = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"].is_null())
        .count();
    assert_eq!(untagged, 0, "prune removed the dangling v2");
}

/// The Makefile recipe of docs/pipelines.md, as written there.
fn docs_makefile() -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pipelines.md"))
        .expect("docs/pipelines.md");
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
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
                now,
            );
        }
    }

    let first = make(d);
    assert_eq!(first.matches("layer-pack").count(), 3, "{first}");
    let digest = image_digest(d);

    let second = make(d);
    assert!(
        !second.contains("layer-pack") && !second.contains("image-stack"),
        "{second}"
    );
    assert_eq!(image_digest(d), digest);

    // Same content, newer mtimes: app is repacked to the same (reused) blob; no restack.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for f in ["srv/app/main", "srv/app/config.json"] {
        mtime(&d.join("layers/app"), f, now + 5);
    }
    let touched = make(d);
    assert_eq!(touched.matches("layer-pack").count(), 1, "{touched}");
    assert!(!touched.contains("image-stack"), "{touched}");
    assert_eq!(image_digest(d), digest);

    // New content: app is repacked and the image restacked, to a new digest.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    file(&d.join("layers/app"), "srv/app/new", b"new\n", 0o644, now + 10);
    let changed = make(d);
    assert_eq!(changed.matches("layer-pack").count(), 1, "{changed}");
    assert_eq!(changed.matches("image-stack").count(), 1, "{changed}");
    assert_ne!(image_digest(d), digest);
}
