//! `make demo`'s walk-through, run against the binaries under test: every step must succeed
//! and show what the docker tutorial it mirrors shows.

use layerkit_tests::*;
use std::path::Path;
use std::process::Command;

#[test]
fn demo_walks_through_commit_history_cleanup_and_prune() {
    if peer("jq").is_none() {
        return;
    }
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
    // docker history: the commit message and the base's created-by.
    assert!(
        stdout.contains("Add site") && stdout.contains("debootstrap"),
        "{stdout}"
    );
    assert!(stdout.contains("Remove the download"), "{stdout}");
    // docker image prune's report.
    assert!(stdout.contains("Total reclaimed space:"), "{stdout}");
    assert!(stdout.contains("store:web:v2 is intact"), "{stdout}");

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
