//! End-to-end tests of image-prune: run the built binary on real trees in temp dirs.

use crate::support::*;
use common::descriptor::{Descriptor, Platform};
use common::digest::Digest;
use common::layout::Layout;
use common::manifest::PlatformSpec;
use common::media;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

const CREATED: &str = "2001-09-09T01:46:40Z";

fn prune(layout: &Path, args: &[&str]) -> String {
    let mut c = tool("image-prune");
    c.args(args).arg(layout);
    String::from_utf8(ok(&mut c, b"")).expect("utf-8 report")
}

/// A layer tar holding one file.
fn tar_layer(name: &str, content: &[u8]) -> Vec<u8> {
    Tar::default().file(name, content).done()
}

fn put(layout: &Layout, media_type: &str, bytes: &[u8]) -> Descriptor {
    let (digest, _) = layout.write_blob(bytes).expect("write blob");
    Descriptor::new(media_type, digest, bytes.len() as u64)
}

fn put_json(layout: &Layout, media_type: &str, v: &Value) -> Descriptor {
    put(layout, media_type, &common::json::canonical(v).expect("json"))
}

/// Writes an image (one single-file tar layer per entry of `files`) and returns its
/// manifest's descriptor, without tagging it.
fn image(layout: &Layout, files: &[(&str, &[u8])], created: &str, arch: &str) -> Descriptor {
    let layers: Vec<Descriptor> = files
        .iter()
        .map(|(name, content)| put(layout, media::LAYER_TAR, &tar_layer(name, content)))
        .collect();
    let config = put_json(
        layout,
        media::CONFIG,
        &json!({
            "architecture": arch, "os": "linux", "created": created, "config": {},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
        }),
    );
    let manifest = put_json(
        layout,
        media::MANIFEST,
        &json!({"schemaVersion": 2, "mediaType": media::MANIFEST, "config": config, "layers": layers}),
    );
    let mut desc = manifest;
    desc.platform = Some(Platform {
        architecture: arch.into(),
        os: "linux".into(),
        variant: None,
        extra: BTreeMap::new(),
    });
    desc
}

fn host_arch() -> String {
    PlatformSpec::host().architecture
}

fn add_untagged(layout: &Layout, desc: Descriptor) {
    layout
        .update_index(|index| {
            index.manifests.push(desc);
            Ok(())
        })
        .expect("index update");
}

/// Sets a file's mtime `secs` seconds in the past.
fn age(path: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    filetime::set_file_mtime(path, filetime::FileTime::from_system_time(t)).expect("mtime");
}

fn blob_path(root: &Path, hex: &str) -> std::path::PathBuf {
    root.join("blobs/sha256").join(hex)
}

/// The hex names of the files in blobs/sha256.
fn blob_files(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root.join("blobs/sha256"))
        .expect("blobs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("json")
}

/// What the tagged entries of index.json reach, walked here from the raw JSON (independently
/// of image-prune's code): manifests reach their config and layers, indexes their manifests.
fn reachable_from_tags(root: &Path) -> BTreeSet<String> {
    let index = read_json(&root.join("index.json"));
    let mut todo: Vec<Value> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|e| e["annotations"][media::REF_NAME].is_string())
        .cloned()
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(d) = todo.pop() {
        let hex = d["digest"].as_str().expect("digest")["sha256:".len()..].to_string();
        if !seen.insert(hex.clone()) {
            continue;
        }
        let mt = d["mediaType"].as_str().unwrap_or_default();
        if mt.ends_with("manifest.v1+json") || mt.ends_with("manifest.v2+json") {
            let m = read_json(&blob_path(root, &hex));
            todo.push(m["config"].clone());
            todo.extend(m["layers"].as_array().cloned().unwrap_or_default());
        } else if mt.ends_with("index.v1+json") || mt.ends_with("list.v2+json") {
            let m = read_json(&blob_path(root, &hex));
            todo.extend(m["manifests"].as_array().cloned().unwrap_or_default());
        }
    }
    seen
}

/// Every blob's bytes hash to its name.
fn assert_blobs_intact(root: &Path) {
    if let Err(e) = oci_check::blobs_match_their_names(root) {
        panic!("{e}");
    }
}

fn tags(root: &Path) -> BTreeMap<String, String> {
    read_json(&root.join("index.json"))["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|e| {
            Some((
                e["annotations"][media::REF_NAME].as_str()?.to_string(),
                e["digest"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn untagged_entries(root: &Path) -> usize {
    read_json(&root.join("index.json"))["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|e| !e["annotations"][media::REF_NAME].is_string())
        .count()
}

/// The images still unpack, and skopeo and umoci accept them.
fn assert_images_usable(root: &Path, names: &[&str]) {
    let (Some(umoci), Some(skopeo)) = (peer("umoci"), peer("skopeo")) else {
        return;
    };
    let digests = tags(root);
    for t in names {
        let image = format!("{}:{t}", root.display());
        let bundle = tempdir();
        let out = Command::new(&umoci)
            .args(["unpack", "--image", &image])
            .arg(bundle.path().join("b"))
            .output()
            .expect("umoci");
        assert!(
            out.status.success(),
            "umoci unpack {t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(&umoci)
            .args(["stat", "--image", &image])
            .output()
            .expect("umoci");
        assert!(
            out.status.success(),
            "umoci stat {t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(&skopeo)
            .args(["inspect", &format!("oci:{image}")])
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo inspect {t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("skopeo json");
        assert_eq!(v["Digest"].as_str(), digests.get(*t).map(String::as_str), "{t}");
    }
}

/// Tag moves and `image-stack --drop` with the real tools, then prune: exactly the blobs no
/// tagged image reaches go (plus old orphans and stray temporary files); young orphans stay.
#[test]
fn removes_exactly_what_no_tagged_image_reaches() {
    let dir = tempdir();
    let d = dir.path();
    let store = d.join("store");
    let pack = |name: &str, content: &str| {
        let tree = d.join(name);
        file(&tree, name, content.as_bytes(), 0o644, 1_600_000_000);
        format!(
            "tar -C {} -cf - . | layer-pack --layout {}",
            tree.display(),
            store.display()
        )
    };
    let s = store.display();
    sh(&format!(
        "{} | image-stack --layer - --tag {s}:base:1 -m base",
        pack("a", "base")
    ));
    sh(&format!(
        "{} | image-stack --from {s}:base:1 --layer - --tag {s}:web:v1 -m one",
        pack("b", "one")
    ));
    // web:v1 moves: the first web:v1 (and its layer b) dangles.
    sh(&format!(
        "{} | image-stack --from {s}:base:1 --layer - --tag {s}:web:v1 -m again",
        pack("c", "again")
    ));
    sh(&format!(
        "{} | image-stack --from {s}:web:v1 --layer - --tag {s}:web:v2 -m two",
        pack("d", "two")
    ));
    // Roll web:v2 back by dropping its top layer: the old web:v2 (and layer d) dangles.
    sh(&format!(
        "image-stack --from {s}:web:v2 --drop 1 --tag {s}:web:v2 -m rollback"
    ));
    // base:1 moves too; its old layer a is still in web:v1 and web:v2, and the old base:1
    // itself, the parent of web:v1 (whose manifest records it as its base), stays as an
    // untagged intermediate image, as docker keeps one.
    let old_base = tags(&store)["base:1"].clone();
    sh(&format!(
        "{} | image-stack --layer - --tag {s}:base:1 -m rebased",
        pack("e", "rebased")
    ));
    assert!(
        untagged_entries(&store) >= 2,
        "the tag moves left dangling images"
    );

    let layout = Layout::open(&store).expect("layout");
    let old_orphan = put(
        &layout,
        media::LAYER_TAR,
        &tar_layer("old", b"written an hour ago"),
    );
    age(&layout.blob_path(&old_orphan.digest), 3600);
    let young_orphan = put(
        &layout,
        media::LAYER_TAR,
        &tar_layer("young", b"layer-pack just wrote me"),
    );
    let old_tmp = store.join(".layerkit-tmp-killed");
    std::fs::write(&old_tmp, b"half a blob").expect("tmp");
    age(&old_tmp, 3600);
    let young_tmp = store.join(".layerkit-tmp-writing");
    std::fs::write(&young_tmp, b"a blob being written").expect("tmp");
    std::fs::write(store.join("blobs/sha256/README"), b"unknown files are left alone").expect("unknown");

    let before = blob_files(&store);
    let tags_before = tags(&store);
    let mut expected = reachable_from_tags(&store);
    let intermediate = [
        old_base["sha256:".len()..].to_string(),
        read_json(&blob_path(&store, &old_base["sha256:".len()..]))["config"]["digest"]
            .as_str()
            .expect("config")["sha256:".len()..]
            .to_string(),
    ];
    expected.extend(intermediate.iter().cloned());
    expected.insert(young_orphan.digest.hex().to_string());
    expected.insert("README".into());
    assert!(!expected.contains(old_orphan.digest.hex()));

    let report = prune(&store, &[]);

    let after = blob_files(&store);
    assert_eq!(after, expected, "the blobs left are exactly the reachable ones");
    assert_eq!(tags(&store), tags_before, "no tag lost or moved");
    assert_eq!(
        untagged_entries(&store),
        1,
        "no dangling image left, the intermediate one kept"
    );
    assert!(!old_tmp.exists(), "an old temporary file is removed");
    assert!(young_tmp.exists(), "a young temporary file is kept");
    // Both are named in the report, with their sizes ("half a blob": 11 bytes; "a blob being
    // written": 20).
    let young_kept = "kept: .layerkit-tmp-writing (20B): younger than --grace\n";
    assert!(
        report.contains(&format!(
            "\n\nTemporary files:\nremoved: .layerkit-tmp-killed (11B)\n{young_kept}\nTotal"
        )),
        "{report}"
    );
    // The report names every blob removed, once, and the space they took.
    let removed: BTreeSet<String> = before.difference(&after).cloned().collect();
    let listed: BTreeSet<String> = report
        .lines()
        .filter_map(|l| l.strip_prefix("deleted: sha256:"))
        .map(str::to_string)
        .collect();
    assert_eq!(listed, removed, "report:\n{report}");
    assert!(report.starts_with("Deleted Images:\n"), "{report}");
    assert!(
        report.ends_with("B\n") && report.contains("\n\nTotal reclaimed space: "),
        "{report}"
    );
    assert_blobs_intact(&store);
    assert_images_usable(&store, &["base:1", "web:v1", "web:v2"]);

    // A second run finds nothing more (the young orphan and temporary file are still young).
    assert_eq!(
        prune(&store, &[]),
        format!("Temporary files:\n{young_kept}\nTotal reclaimed space: 0B\n")
    );
    assert_eq!(blob_files(&store), expected);
    // --intermediate removes the old base too: its manifest and config, nothing else.
    let report = prune(&store, &["--intermediate"]);
    for hex in &intermediate {
        expected.remove(hex);
        assert!(report.contains(hex), "{report}");
    }
    assert_eq!(blob_files(&store), expected);
    assert_eq!(untagged_entries(&store), 0);
    assert_images_usable(&store, &["base:1", "web:v1", "web:v2"]);
}

/// A multi-platform image (an image index tagged in index.json, with two platform manifests)
/// keeps every platform's blobs.
#[test]
fn a_multi_platform_index_keeps_all_its_platforms() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).expect("layout");
    let host = image(&layout, &[("etc/host", b"host platform")], CREATED, &host_arch());
    let other_arch = if host_arch() == "arm64" { "amd64" } else { "arm64" };
    let other = image(&layout, &[("etc/other", b"other platform")], CREATED, other_arch);
    let index = put_json(
        &layout,
        media::INDEX,
        &json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": [host, other]}),
    );
    layout.set_tag("multi", index.clone()).expect("tag");
    let dangling = image(&layout, &[("etc/gone", b"dangling")], CREATED, &host_arch());
    add_untagged(&layout, dangling.clone());

    let expected = reachable_from_tags(&root);
    assert!(
        expected.contains(other.digest.hex()) && expected.len() == 7,
        "{expected:?}"
    );
    let report = prune(&root, &[]);
    assert_eq!(blob_files(&root), expected);
    assert!(
        report.contains(&format!("deleted: {}\n", dangling.digest)),
        "{report}"
    );
    assert_blobs_intact(&root);
    skopeo_inspects_each_platform(&root, "multi", &[host_arch().as_str(), other_arch]);
}

/// A tagged index pointing at another index pointing at two platform manifests keeps every
/// blob of both levels; a dangling index of the same shape loses the blobs only it reaches
/// (its inner index, its own platform manifest, config and layer), not what it shares with the
/// tagged one (a platform manifest, and a layer of its own platform manifest).
#[test]
fn nested_indexes_keep_their_blobs_and_a_dangling_one_takes_its_own_along() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).expect("layout");
    let other_arch = if host_arch() == "arm64" { "amd64" } else { "arm64" };
    let host = image(&layout, &[("etc/host", b"host platform")], CREATED, &host_arch());
    let other = image(
        &layout,
        &[
            ("etc/shared", b"a layer both trees reach"),
            ("etc/other", b"other platform"),
        ],
        CREATED,
        other_arch,
    );
    let nest = |manifests: &[&Descriptor]| {
        let inner = put_json(
            &layout,
            media::INDEX,
            &json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": manifests}),
        );
        put_json(
            &layout,
            media::INDEX,
            &json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": [inner]}),
        )
    };
    let outer = nest(&[&host, &other]);
    layout.set_tag("nested", outer.clone()).expect("tag");
    // The dangling tree shares `other` and the layer etc/shared; the rest is its own.
    let own = image(
        &layout,
        &[
            ("etc/shared", b"a layer both trees reach"),
            ("etc/own", b"dangling platform"),
        ],
        CREATED,
        "s390x",
    );
    let dangling = nest(&[&other, &own]);
    add_untagged(&layout, dangling.clone());

    // Walked from the raw JSON: the tagged tree is outer, inner, 2 manifests, 2 configs and
    // 3 layers.
    let expected = reachable_from_tags(&root);
    assert_eq!(expected.len(), 9, "{expected:?}");
    for d in [&outer, &host, &other] {
        assert!(expected.contains(d.digest.hex()), "{}", d.digest);
    }
    let before = blob_files(&root);
    let dangling_inner: Digest = read_json(&layout.blob_path(&dangling.digest))["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let own_manifest = read_json(&layout.blob_path(&own.digest));
    let own_blobs: BTreeSet<String> = [
        dangling.digest.hex().to_string(),
        dangling_inner.hex().to_string(),
        own.digest.hex().to_string(),
        own_manifest["config"]["digest"].as_str().unwrap()[7..].to_string(),
        own_manifest["layers"][1]["digest"].as_str().unwrap()[7..].to_string(),
    ]
    .into();
    assert_eq!(
        before.difference(&expected).cloned().collect::<BTreeSet<_>>(),
        own_blobs,
        "the blobs only the dangling tree reaches"
    );

    let report = prune(&root, &[]);
    assert_eq!(blob_files(&root), expected, "report:\n{report}");
    let listed: BTreeSet<String> = report
        .lines()
        .filter_map(|l| l.strip_prefix("deleted: sha256:"))
        .map(str::to_string)
        .collect();
    assert_eq!(listed, own_blobs, "{report}");
    assert_eq!(tags(&root)["nested"], outer.digest.to_string());
    assert_eq!(untagged_entries(&root), 0);
    assert_blobs_intact(&root);
    // skopeo resolves a nested index for each platform.
    skopeo_inspects_each_platform(&root, "nested", &[host_arch().as_str(), other_arch]);
    assert_eq!(prune(&root, &["--grace", "0"]), "Total reclaimed space: 0B\n");
}

/// The file of the golden layout's dangling image that no other image has.
const GOLDEN_BIG: usize = 1_234_567;

/// A layout with one dangling image of known bytes, for the report golden tests; returns the
/// dangling image's manifest descriptor.
fn golden_layout(root: &Path) -> Descriptor {
    let layout = Layout::open_or_create(root).expect("layout");
    let big = vec![b'x'; GOLDEN_BIG];
    let old = image(&layout, &[("base", b"shared"), ("big", &big)], CREATED, "amd64");
    layout.set_tag("t", old.clone()).expect("tag");
    let new = image(
        &layout,
        &[("base", b"shared"), ("small", b"small")],
        CREATED,
        "amd64",
    );
    layout.set_tag("t", new).expect("tag");
    old
}

/// A whole-layout listing (names, sizes, contents, mtimes) to show a run changed nothing.
fn layout_state(root: &Path) -> String {
    let mut out = snapshot(root);
    out.push_str(&String::from_utf8_lossy(
        &std::fs::read(root.join("index.json")).expect("index"),
    ));
    out
}

#[test]
fn report_golden_and_dry_run_changes_nothing() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let old = golden_layout(&root);
    // What goes: the dangling image's manifest, its config and its "big" layer ("base" is
    // shared). The digests and sizes come from the bytes themselves, hashed here: the
    // manifest's file, the descriptors in it, and the layer tar as built above, whose length is
    // a header, the content padded to 512 and two zero blocks.
    let manifest = old.digest.to_string();
    let manifest_bytes = std::fs::read(blob_path(&root, &manifest["sha256:".len()..])).expect("manifest");
    assert_eq!(sha256(&manifest_bytes), manifest);
    let m: Value = serde_json::from_slice(&manifest_bytes).expect("manifest JSON");
    let config = m["config"]["digest"].as_str().expect("config digest").to_string();
    let config_size = m["config"]["size"].as_u64().expect("config size");
    let config_bytes = std::fs::read(blob_path(&root, &config["sha256:".len()..])).expect("config");
    assert_eq!(
        (sha256(&config_bytes), config_bytes.len() as u64),
        (config.clone(), config_size)
    );
    let layer = sha256(&tar_layer("big", &vec![b'x'; GOLDEN_BIG]));
    let layer_size = (512 + GOLDEN_BIG.div_ceil(512) * 512 + 1024) as u64;
    assert_eq!(
        m["layers"][1],
        json!({"mediaType": media::LAYER_TAR, "digest": layer, "size": layer_size})
    );
    let total = manifest_bytes.len() as u64 + config_size + layer_size;
    // In JSON every blob by digest.
    let mut blobs = [
        (manifest.as_str(), manifest_bytes.len() as u64),
        (layer.as_str(), layer_size),
        (config.as_str(), config_size),
    ];
    blobs.sort();
    // docker's report: the image by its id (the config digest), then the other blobs by digest.
    let mut rest = [manifest.as_str(), layer.as_str()];
    rest.sort();
    let text = format!(
        "Deleted Images:\ndeleted: {config}\ndeleted: {}\ndeleted: {}\n\n\
         Total reclaimed space: {:.3}MB\n",
        rest[0],
        rest[1],
        total as f64 / 1e6
    );
    let blobs_json: Vec<String> = blobs
        .iter()
        .map(|(d, size)| format!(r#"{{"digest":"{d}","size":{size}}}"#))
        .collect();
    let json = format!(
        r#"{{"blobs":[{}],"dryRun":true,"images":[{{"digest":"{manifest}","id":"{config}","mediaType":"application/vnd.oci.image.manifest.v1+json"}}],"keptByGrace":[],"keptTemporaryFiles":[],"layerCache":[],"reclaimedSpace":{total},"staleMounts":[],"temporaryFiles":[],"untagged":[]}}
"#,
        blobs_json.join(",")
    );
    let state = layout_state(&root);
    assert_eq!(prune(&root, &["--dry-run", "--json"]), json);
    // The dry run deleted nothing, and says what would go in the same shape.
    let would = text
        .replace("Deleted Images:", "Would delete images:")
        .replace("deleted: ", "would delete: ")
        .replace("Total reclaimed space:", "Total space that would be reclaimed:");
    assert!(
        would.starts_with("Would delete images:\nwould delete: sha256:"),
        "{would}"
    );
    assert_eq!(prune(&root, &["--dry-run"]), would);
    let mut c = tool("image-prune");
    c.args(["--dry-run", "-q"]).arg(&root);
    let out = run(&mut c, b"");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{out:?}"
    );
    assert_eq!(layout_state(&root), state, "--dry-run changed the layout");

    assert_eq!(
        prune(&root, &[]),
        text,
        "the real run removes what the dry run listed"
    );
    assert_eq!(prune(&root, &[]), "Total reclaimed space: 0B\n");
    assert_eq!(
        prune(&root, &["--json"]),
        r#"{"blobs":[],"dryRun":false,"images":[],"keptByGrace":[],"keptTemporaryFiles":[],"layerCache":[],"reclaimedSpace":0,"staleMounts":[],"temporaryFiles":[],"untagged":[]}"#
            .to_string()
            + "\n"
    );
}

/// docker prints `untagged: REF` for each tag (and repository digest) it removes; a dangling
/// entry of an OCI layout has none and image-prune never removes a tag, so its report has only
/// `deleted:` lines, and the man page mentions `untagged:` lines only to say there are none.
#[test]
fn the_report_has_no_untagged_lines_and_the_man_page_agrees() {
    let dir = tempdir();
    let root = dir.path().join("store");
    golden_layout(&root);
    let layout = Layout::open(&root).expect("layout");
    // A dangling entry that still carries annotations (but no ref name).
    let mut annotated = image(&layout, &[("x", b"annotated")], CREATED, "amd64");
    annotated
        .annotations
        .insert("org.opencontainers.image.title".into(), "x".into());
    add_untagged(&layout, annotated);
    for args in [&["--dry-run"][..], &[]] {
        let report = prune(&root, args);
        let deleted = report
            .lines()
            .filter(|l| l.starts_with("deleted: sha256:") || l.starts_with("would delete: sha256:"))
            .count();
        assert!(deleted >= 6, "two dangling images' blobs: {report}");
        for line in report.lines() {
            let line = line
                .strip_prefix("would delete: ")
                .map_or(line.to_string(), |rest| format!("deleted: {rest}"));
            let line = line.as_str();
            assert!(
                line == "Deleted Images:"
                    || line == "Would delete images:"
                    || line.starts_with("deleted: sha256:")
                    || line.is_empty()
                    || line.starts_with("Total reclaimed space: ")
                    || line.starts_with("Total space that would be reclaimed: "),
                "{args:?}: unexpected report line {line:?}:\n{report}"
            );
        }
    }
    let path = repo().join("man/image-prune.1");
    let page = std::fs::read_to_string(&path).expect("man/image-prune.1");
    let sentences: Vec<&str> = page
        .split(['.', '\n'])
        .filter(|s| s.contains("untagged:"))
        .collect();
    for s in &sentences {
        assert!(
            s.contains("no untagged: lines"),
            "the man page promises untagged: lines: {s:?}"
        );
    }
}

fn rfc3339_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

#[test]
fn filter_until_keeps_young_dangling_images() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).expect("layout");
    layout
        .set_tag("t", image(&layout, &[("kept", b"kept")], CREATED, "amd64"))
        .expect("tag");
    let young = image(&layout, &[("young", b"made just now")], &rfc3339_now(), "amd64");
    let old = image(&layout, &[("old", b"made in 2001")], CREATED, "amd64");
    add_untagged(&layout, young.clone());
    add_untagged(&layout, old.clone());

    let report = prune(&root, &["--filter", "until=1h"]);
    assert!(report.contains(&format!("deleted: {}\n", old.digest)), "{report}");
    assert!(!report.contains(&young.digest.to_string()), "{report}");
    assert_eq!(
        untagged_entries(&root),
        1,
        "the young dangling image stays in the index"
    );
    assert!(layout.has_blob(&young.digest) && !layout.has_blob(&old.digest));
    let young_blobs = read_json(&layout.blob_path(&young.digest));
    assert!(
        layout.has_blob(
            &young_blobs["layers"][0]["digest"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        )
    );

    // Without the filter it goes too.
    let report = prune(&root, &[]);
    assert!(
        report.contains(&format!("deleted: {}\n", young.digest)),
        "{report}"
    );
    assert_eq!(untagged_entries(&root), 0);
    assert_eq!(blob_files(&root), reachable_from_tags(&root));
}

/// `--filter label=KEY[=VALUE]` and `label!=KEY[=VALUE]`, as docker image prune takes them: only
/// the dangling images that pass every filter go.
#[test]
fn filter_label_removes_only_the_dangling_images_it_names() {
    let dir = tempdir();
    sh_in(
        dir.path(),
        "set -e
         mkdir a b c && echo a > a/a && echo b > b/b && echo c > c/c
         layer-pack -q --layout store a/ | image-stack -q --layer - --tag store:front -c 'LABEL tier=front' > front.json
         layer-pack -q --layout store b/ | image-stack -q --layer - --tag store:plain > plain.json
         layer-pack -q --layout store c/ | image-stack -q --layer - --tag store:front >/dev/null
         layer-pack -q --layout store c/ | image-stack -q --layer - --tag store:plain -c 'LABEL x=1' >/dev/null",
    );
    let digest = |name: &str| {
        read_json(&dir.path().join(name))["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (front, plain) = (digest("front.json"), digest("plain.json"));
    let root = dir.path().join("store");
    let removed = |filters: &[&str]| -> Vec<String> {
        let mut c = tool("image-prune");
        c.args(["--dry-run", "--json"]);
        for f in filters {
            c.args(["--filter", f]);
        }
        let report: serde_json::Value = serde_json::from_slice(&ok(c.arg(&root), b"")).unwrap();
        let mut v: Vec<String> = report["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["digest"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let mut both = vec![front.clone(), plain.clone()];
    both.sort();
    assert_eq!(removed(&[]), both);
    assert_eq!(removed(&["label=tier=front"]), vec![front.clone()]);
    assert_eq!(removed(&["label=tier"]), vec![front]);
    assert_eq!(removed(&["label!=tier"]), vec![plain.clone()]);
    assert_eq!(removed(&["label!=tier=back"]), both);
    assert_eq!(removed(&["label=tier=back"]), Vec::<String>::new());
    assert_eq!(
        removed(&["label=tier", "label!=tier=front"]),
        Vec::<String>::new()
    );
    // And for real: the labelled one goes, the other stays in the index.
    ok(
        tool("image-prune")
            .args(["-q", "--filter", "label=tier=front"])
            .arg(&root),
        b"",
    );
    assert_eq!(removed(&[]), vec![plain]);
}

/// Untagged referrers (signatures, SBOMs: manifests whose `subject` is an image) stay while
/// their subject stays, transitively; an untagged platform manifest of a tagged index is part
/// of a kept image, not dangling; referrers of a dangling image go with it.
#[test]
fn referrers_of_kept_images_stay() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).expect("layout");
    let kept = image(&layout, &[("app", b"app")], CREATED, &host_arch());
    layout.set_tag("app", kept.clone()).expect("tag");
    let dangling = image(&layout, &[("old", b"old app")], CREATED, &host_arch());
    add_untagged(&layout, dangling.clone());
    let empty = put(&layout, "application/vnd.oci.empty.v1+json", b"{}");
    let referrer = |subject: &Descriptor, payload: &[u8]| {
        let sig = put(&layout, "application/vnd.example.signature", payload);
        let mut subject = subject.clone();
        subject.platform = None;
        put_json(
            &layout,
            media::MANIFEST,
            &json!({"schemaVersion": 2, "mediaType": media::MANIFEST,
                    "artifactType": "application/vnd.example.signature",
                    "config": empty, "layers": [sig], "subject": subject}),
        )
    };
    let signature = referrer(&kept, b"signature of app");
    let countersig = referrer(&signature, b"signature of the signature");
    let orphaned = referrer(&dangling, b"signature of old app");
    // Listed countersignature first: keeping it needs the signature kept first (a fixed point).
    for d in [&countersig, &signature, &orphaned] {
        add_untagged(&layout, d.clone());
    }
    let platform = image(&layout, &[("p", b"platform")], CREATED, &host_arch());
    let index = put_json(
        &layout,
        media::INDEX,
        &json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": [platform]}),
    );
    layout.set_tag("multi", index).expect("tag");
    add_untagged(&layout, platform.clone());

    let report = prune(&root, &["--grace", "0"]);

    let left: BTreeSet<String> = read_json(&root.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect();
    for keep in [&kept, &signature, &countersig, &platform] {
        assert!(
            left.contains(&keep.digest.to_string()),
            "{} dropped:\n{report}",
            keep.digest
        );
    }
    for gone in [&dangling, &orphaned] {
        assert!(!left.contains(&gone.digest.to_string()), "{} kept", gone.digest);
        assert!(!layout.has_blob(&gone.digest), "{} kept", gone.digest);
        assert!(
            report.contains(&format!("deleted: {}\n", gone.digest)),
            "{report}"
        );
    }
    assert_eq!(left.len(), 5);
    for sig in [&signature, &countersig] {
        let m = read_json(&layout.blob_path(&sig.digest));
        let payload: Digest = m["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
        assert!(layout.has_blob(&payload), "a kept referrer keeps its blobs");
    }
    assert!(layout.has_blob(&empty.digest));
}

#[test]
fn bad_input_fails_cleanly_and_changes_nothing() {
    let dir = tempdir();
    let root = dir.path().join("store");
    golden_layout(&root);
    for args in [
        &["--grace", "10x"][..],
        &["--grace", "-5m"],
        &["--filter", "label="],
        &["--filter", "label!="],
        &["--filter", "dangling=true"],
        &["--filter", "until=soon"],
        &["--filter", "until=1h", "--filter", "until=2h"],
    ] {
        let mut c = tool("image-prune");
        c.args(args).arg(&root);
        let err = fails(&mut c, b"");
        assert!(err.starts_with("image-prune: "), "{err}");
    }
    let mut c = tool("image-prune");
    c.arg(dir.path());
    assert!(fails(&mut c, b"").contains("not an OCI image layout"));

    // A tagged image whose manifest is missing or corrupt: what it references is unknown, so
    // nothing may be deleted (not even the dangling image's blobs).
    let (blobs_before, index_before) = (blob_files(&root), std::fs::read(root.join("index.json")).unwrap());
    let tagged = tags(&root)["t"].clone();
    let path = blob_path(&root, &tagged["sha256:".len()..]);
    let good = std::fs::read(&path).expect("manifest");
    let mut bad = good.clone();
    bad[10] ^= 1;
    std::fs::write(&path, &bad).expect("corrupt");
    let mut c = tool("image-prune");
    c.args(["--grace", "0"]).arg(&root);
    let err = fails(&mut c, b"");
    assert!(err.contains(&tagged) && err.contains("digest mismatch"), "{err}");
    // Same blobs, same bytes, same index.
    std::fs::write(&path, &good).expect("restore");
    assert_eq!(blob_files(&root), blobs_before, "a failed prune removed blobs");
    assert_blobs_intact(&root);
    assert_eq!(std::fs::read(root.join("index.json")).unwrap(), index_before);
}

/// A tagged image whose manifest is absent (image-layout.md: blobs MAY be missing, e.g.
/// platforms a copy left out) does not block pruning: a warning names it, its tag stays, and
/// what only it referenced is treated as orphans (kept while young).
#[test]
fn a_missing_manifest_is_warned_about_not_fatal() {
    let dir = tempdir();
    let root = dir.path().join("store");
    golden_layout(&root);
    let tagged = tags(&root)["t"].clone();
    std::fs::remove_file(blob_path(&root, &tagged["sha256:".len()..])).expect("remove");
    let mut c = tool("image-prune");
    c.arg(&root);
    let out = run(&mut c, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: {tagged} is referenced but missing")),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Deleted Images:\n"));
    assert_eq!(tags(&root)["t"], tagged);
    assert_eq!(untagged_entries(&root), 0);
    // The dangling image's own blobs went; the missing image's config and small layer stay as
    // young orphans, and so does the shared base layer: the new image's writer reused (claimed)
    // it after the dangling image was written, within the grace period.
    assert_eq!(blob_files(&root).len(), 3, "{:?}", blob_files(&root));
    prune(&root, &["--grace", "0"]);
    assert_eq!(blob_files(&root), BTreeSet::new());
}

/// `--grace 0` removes a killed writer's temporary file but not one a live writer holds (it
/// holds a flock on it): the writer then commits its blob normally.
#[test]
fn a_live_writers_temporary_file_survives_grace_0() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).expect("layout");
    let stray = root.join(format!("{}killed-writer", common::layout::TMP_PREFIX));
    std::fs::write(&stray, b"left by a killed writer").expect("stray");
    let mut writer = layout.blob_writer().expect("writer");
    std::io::Write::write_all(&mut writer, b"a blob being written").expect("write");
    std::io::Write::flush(&mut writer).expect("flush");
    let temporary = || {
        std::fs::read_dir(&root)
            .expect("root")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(common::layout::TMP_PREFIX))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(temporary().len(), 2);
    let stray_name = stray.file_name().unwrap().to_str().unwrap();
    let live: Vec<String> = temporary().into_iter().filter(|n| n != stray_name).collect();

    // With the default grace both are young; the live writer's is reported as held, which says
    // more (the report lists kept files in the order the layout does, by name).
    let dry: Value = serde_json::from_str(&prune(&root, &["--dry-run", "--json"])).expect("json");
    let mut kept = vec![
        json!({"name": live[0], "size": 20, "reason": "inUse"}),
        json!({"name": stray_name, "size": 23, "reason": "grace"}),
    ];
    kept.sort_by_key(|k| k["name"].as_str().unwrap_or_default().to_string());
    assert_eq!(dry["keptTemporaryFiles"], json!(kept));
    assert_eq!(dry["temporaryFiles"], json!([]));

    let report: Value = serde_json::from_str(&prune(&root, &["--grace", "0", "--json"])).expect("json");
    assert_eq!(
        report["temporaryFiles"],
        json!([{"name": stray_name, "size": 23}])
    );
    assert_eq!(
        report["keptTemporaryFiles"],
        json!([{"name": live[0], "size": 20, "reason": "inUse"}])
    );
    assert!(!stray.exists());
    assert_eq!(temporary().len(), 1, "the live writer's file stays");
    let (digest, _, reused) = writer.commit().expect("the writer commits");
    assert!(!reused);
    assert_eq!(
        std::fs::read(layout.blob_path(&digest)).expect("blob"),
        b"a blob being written"
    );
    assert_eq!(temporary(), BTreeSet::new());
}

/// Manifests and indexes that index.json does not reference decide for what they reference:
/// an old one goes with its blobs (like a dangling image, whatever their age), a young one
/// (a writer is storing it) keeps its blobs even when they are old.
#[test]
fn unreferenced_manifests_take_their_blobs_along_or_keep_them() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).expect("layout");
    let old = image(&layout, &[("old", b"old")], CREATED, "amd64");
    put_json(
        &layout,
        media::INDEX,
        &json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": [old]}),
    );
    for hex in blob_files(&root) {
        age(&blob_path(&root, &hex), 3600);
    }
    // A layer written after the old image by no known writer: only the old index and manifest
    // reference it, so it goes with them, young as it is.
    let late = put(&layout, media::LAYER_TAR, &tar_layer("late", b"late"));
    let mut m = read_json(&layout.blob_path(&old.digest));
    m["layers"] = json!([late]);
    let late_manifest = put_json(&layout, media::MANIFEST, &m);
    age(&layout.blob_path(&late_manifest.digest), 3600);
    age(&layout.blob_path(&late.digest), 7200);
    let doomed = blob_files(&root);

    let young = image(&layout, &[("young", b"young")], CREATED, "amd64");
    let young_m = read_json(&layout.blob_path(&young.digest));
    let mut young_blobs = BTreeSet::from([young.digest.hex().to_string()]);
    for d in std::iter::once(&young_m["config"]).chain(young_m["layers"].as_array().unwrap()) {
        let hex = d["digest"].as_str().unwrap()["sha256:".len()..].to_string();
        age(&blob_path(&root, &hex), 3600);
        young_blobs.insert(hex);
    }

    let report: Value = serde_json::from_str(&prune(&root, &["--json"])).expect("json");
    assert_eq!(blob_files(&root), young_blobs);
    let removed: BTreeSet<String> = report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap()["sha256:".len()..].to_string())
        .collect();
    assert_eq!(removed, doomed);
    assert_eq!(report["images"], json!([]));
    prune(&root, &["--grace", "0"]);
    assert_eq!(blob_files(&root), BTreeSet::new());
}

const STRESS_LAYOUT: &str = "LAYERKIT_PRUNE_STRESS_LAYOUT";
const STRESS_ID: &str = "LAYERKIT_PRUNE_STRESS_ID";
/// Each committer's number of commits (at least; see [`stress_committer_process`]).
const STRESS_COMMITS: u64 = 120;
/// The pruner creates `<layout>.pruned` after this many prunes: until then committers go on.
const STRESS_MIN_PRUNES: usize = 5;

/// One committer of the stress test, run as its own process, moving three tags in turn so
/// that every commit leaves a dangling image. Even commits are new images made through the
/// library (blobs first, then the tag under the index lock); odd ones re-commit one of two
/// contents with the real tools (`layer-pack`, then `image-stack --tag` in another process):
/// the image the even commit just before has made dangling (it moved that image's tag), so the
/// blobs reused (manifest included) are those of a dangling image that a prune may be
/// removing right then. Now and then it leaves
/// an old orphan. No commit may fail, and after each the image its tag names must be complete.
/// It makes [`STRESS_COMMITS`] commits, and more until the pruner has pruned
/// [`STRESS_MIN_PRUNES`] times (`<layout>.pruned` exists), so the two overlap however fast
/// either runs. Writes its final tags to `<layout>.committer-<id>`.
#[test]
#[ignore = "a helper process that stress_commits_while_pruning starts"]
fn stress_committer_process() {
    let root = std::env::var(STRESS_LAYOUT).expect("run by stress_commits_while_pruning only");
    let id: u32 = std::env::var(STRESS_ID).expect("id").parse().expect("id");
    let layout = Layout::open(&root).expect("layout");
    let pruned = format!("{root}.pruned");
    let mut last = BTreeMap::new();
    let mut n = 0u64;
    // The two contents odd commits recycle, as directories layer-pack packs (unchanged, so
    // each packs to the same blob every time). Commit n - 4 made the image that commit n - 1
    // untagged (three tags in turn), so commit n re-commits n - 4's content.
    let scratch = format!("{root}.committer-{id}.d");
    for k in 0..2 {
        file(
            Path::new(&scratch),
            &format!("{k}/recycled"),
            format!("committer {id} content {k}").as_bytes(),
            0o644,
            1_000_000_000,
        );
    }
    while n < STRESS_COMMITS || !Path::new(&pruned).exists() {
        let tag = format!("w{id}:{}", n % 3);
        let m = if n.is_multiple_of(2) {
            let unique = format!("committer {id} commit {n}");
            let m = image(
                &layout,
                &[
                    ("base", b"the base layer every image shares"),
                    ("mine", unique.as_bytes()),
                ],
                CREATED,
                &host_arch(),
            );
            layout.set_tag(&tag, m.clone()).expect("commit");
            m.digest.to_string()
        } else {
            let desc_file = format!("{scratch}/layer.json");
            let mut pack = tool("layer-pack");
            pack.args(["--layout", &root, &format!("{scratch}/{}", n / 2 % 2)]);
            let desc = ok(&mut pack, b"");
            std::fs::write(&desc_file, desc).expect("descriptor");
            let mut stack = tool("image-stack");
            stack
                .args(["--layer", &desc_file, "--tag", &format!("{root}:{tag}")])
                .env("SOURCE_DATE_EPOCH", "1000000000");
            let out: Value = serde_json::from_slice(&ok(&mut stack, b"")).expect("descriptor");
            out["digest"].as_str().expect("digest").to_string()
        };
        let now_tagged = &tags(Path::new(&root))[&tag];
        assert_eq!(now_tagged, &m, "{tag} lost");
        let m: Digest = m.parse().expect("digest");
        let manifest = read_json(&layout.blob_path(&m));
        for d in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap()) {
            let d: Digest = d["digest"].as_str().unwrap().parse().unwrap();
            assert!(layout.has_blob(&d), "commit {n} of {id}: blob {d} is missing");
        }
        last.insert(tag, m.to_string());
        if n.is_multiple_of(4) {
            let (garbage, _) = layout
                .write_blob(format!("garbage {id} {n}").as_bytes())
                .expect("blob");
            // Pruned meanwhile: fine, it is garbage.
            let _ = filetime::set_file_mtime(
                layout.blob_path(&garbage),
                filetime::FileTime::from_system_time(SystemTime::now() - Duration::from_secs(3600)),
            );
        }
        n += 1;
    }
    std::fs::write(
        format!("{root}.committer-{id}"),
        serde_json::to_vec(&last).unwrap(),
    )
    .expect("result");
}

/// Four processes commit images in a loop (half of them re-commits of dangling images' content)
/// while image-prune runs in a loop with a short grace period, as long as any of them commits:
/// no commit fails or finds a blob missing, no tag is lost, and at the end every blob matches
/// its digest, every tagged image is complete, and a final prune leaves exactly what the tags
/// reach. Counted in commits and prunes, not in seconds: a slow machine takes longer.
#[test]
fn stress_commits_while_pruning() {
    let dir = tempdir();
    let root = dir.path().join("store");
    Layout::open_or_create(&root).expect("layout");
    let exe = std::env::current_exe().expect("test binary");
    // Their output goes to files: a pipe nobody reads while they run could fill and stall them.
    let output = |id: usize| format!("{}.committer-{id}.out", root.display());
    let mut committers: Vec<_> = (0..4)
        .map(|id| {
            let out = std::fs::File::create(output(id)).expect("output file");
            Command::new(&exe)
                .args([
                    "--exact",
                    "image_prune::stress_committer_process",
                    "--ignored",
                    "--nocapture",
                ])
                .env(STRESS_LAYOUT, &root)
                .env(STRESS_ID, id.to_string())
                .stdout(out.try_clone().expect("output file"))
                .stderr(out)
                .spawn()
                .expect("spawn committer")
        })
        .collect();
    let mut prunes = 0;
    let mut removed = 0;
    let count = |report: String| report.lines().filter(|l| l.starts_with("deleted: ")).count();
    while committers
        .iter_mut()
        .any(|c| c.try_wait().expect("wait").is_none())
    {
        removed += count(prune(&root, &["--grace", "2s"]));
        prunes += 1;
        if prunes == STRESS_MIN_PRUNES {
            std::fs::write(format!("{}.pruned", root.display()), b"").expect("marker");
        }
    }
    for (id, c) in committers.iter_mut().enumerate() {
        let status = c.wait().expect("committer");
        assert!(
            status.success(),
            "committer {id} failed:\n{}",
            std::fs::read_to_string(output(id)).unwrap_or_default()
        );
    }
    // Every committer left old orphans (aged an hour): one more prune takes what the ones
    // during the run did not, so between them they removed something.
    removed += count(prune(&root, &["--grace", "2s"]));
    eprintln!("stress: {prunes} prunes removed {removed} blobs");
    assert!(
        prunes >= STRESS_MIN_PRUNES && removed > 0,
        "{prunes} prunes removed {removed} blobs"
    );

    let final_tags = tags(&root);
    for id in 0..4 {
        let path = format!("{}.committer-{id}", root.display());
        let last: BTreeMap<String, String> =
            serde_json::from_slice(&std::fs::read(&path).expect("result")).unwrap();
        assert_eq!(last.len(), 3, "committer {id} committed each tag");
        for (tag, digest) in last {
            assert_eq!(final_tags.get(&tag), Some(&digest), "tag {tag} lost or moved");
        }
    }
    assert_eq!(final_tags.len(), 12);
    assert_blobs_intact(&root);
    for hex in reachable_from_tags(&root) {
        assert!(
            blob_path(&root, &hex).is_file(),
            "a tag reaches the missing blob {hex}"
        );
    }
    prune(&root, &["--grace", "0"]);
    assert_eq!(untagged_entries(&root), 0);
    assert_eq!(blob_files(&root), reachable_from_tags(&root));
    assert_images_usable(&root, &["w0:0", "w3:2"]);
}

/// `skopeo inspect` of `oci:ROOT:TAG` for each architecture picks that platform's image.
fn skopeo_inspects_each_platform(root: &Path, tag: &str, archs: &[&str]) {
    let Some(skopeo) = peer("skopeo") else { return };
    let image = format!("oci:{}:{tag}", root.display());
    for arch in archs {
        let out = Command::new(&skopeo)
            .args([
                "--override-arch",
                arch,
                "--override-os",
                "linux",
                "inspect",
                &image,
            ])
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "{arch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["Architecture"], *arch);
    }
}

/// Commits with the real tools, each of one small file, on top of `from` (an IMAGE of `store`
/// or None for scratch): the test's image history, with distinct creation times.
struct Commits {
    dir: tempfile::TempDir,
    n: u32,
}

impl Commits {
    fn new() -> Commits {
        Commits { dir: tempdir(), n: 0 }
    }

    fn store(&self) -> std::path::PathBuf {
        self.dir.path().join("store")
    }

    /// Commits a layer holding one file named `msg` as `tag`, with `msg` as its comment.
    fn commit(&mut self, from: Option<&str>, tag: &str, msg: &str) {
        self.n += 1;
        let tree = self.dir.path().join(format!("t{}", self.n));
        file(&tree, msg, msg.as_bytes(), 0o644, 1_600_000_000);
        let s = self.store();
        let from = from.map_or(String::new(), |f| format!("--from {}:{f}", s.display()));
        sh(&format!(
            "layer-pack --layout {s} {tree} | SOURCE_DATE_EPOCH={} image-stack {from} --layer - --tag {s}:{tag} -m {msg} >/dev/null",
            1_700_000_000 + self.n,
            s = s.display(),
            tree = tree.display(),
        ));
    }

    /// The image id (config digest) of `tag`.
    fn id(&self, tag: &str) -> String {
        let manifest = &tags(&self.store())[tag];
        read_json(&blob_path(&self.store(), &manifest["sha256:".len()..]))["config"]["digest"]
            .as_str()
            .expect("config")
            .to_string()
    }

    /// The comments of the images index.json lists (tagged or not), sorted: who is still there.
    fn comments(&self) -> Vec<String> {
        let store = self.store();
        let mut out: Vec<String> = read_json(&store.join("index.json"))["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|e| {
                let m = read_json(&blob_path(&store, &e["digest"].as_str().expect("d")[7..]));
                let c = read_json(&blob_path(
                    &store,
                    &m["config"]["digest"].as_str().expect("d")[7..],
                ));
                c["history"].as_array().expect("history").last().expect("entry")["comment"]
                    .as_str()
                    .expect("comment")
                    .to_string()
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn prune(&self, args: &[&str]) -> String {
        let mut c = tool("image-prune");
        c.args(args);
        String::from_utf8(ok(&mut c, b"")).expect("utf-8")
    }
}

/// docker's rules, on a history of commits and tag moves worked out by hand: an untagged image
/// that another image was built on (intermediate) stays, an untagged leaf (dangling) goes, and
/// with it the untagged parents only it needed; `--intermediate` removes the intermediate ones.
/// tests/docker.rs runs the same history through docker.
#[test]
fn prune_keeps_intermediate_images_and_removes_dangling_ones_with_their_untagged_parents() {
    let mut c = Commits::new();
    let s = c.store().display().to_string();
    c.commit(None, "base", "base");
    c.commit(Some("base"), "web:v1", "v1");
    c.commit(Some("web:v1"), "web:v2", "v2");
    // web:v1's tag goes (docker rmi web:v1): v1 is web:v2's parent, so it stays, untagged.
    assert_eq!(
        c.prune(&[&format!("{s}:web:v1")]),
        "Untagged: web:v1\nTotal reclaimed space: 0B\n"
    );
    // tmp:1 <- tmp:2, tmp:1's tag goes, then tmp:2 moves: the old tmp:2 is a dangling leaf
    // and tmp:1 the untagged parent only it needed.
    c.commit(Some("base"), "tmp:1", "t1");
    c.commit(Some("tmp:1"), "tmp:2", "t2");
    let (t1, t2) = (c.id("tmp:1"), c.id("tmp:2"));
    assert_eq!(
        c.prune(&[&format!("{s}:tmp:1")]),
        "Untagged: tmp:1\nTotal reclaimed space: 0B\n"
    );
    c.commit(Some("base"), "tmp:2", "t2b");
    // v3 moved by a recommit: the first v3 dangles.
    c.commit(Some("web:v2"), "web:v3", "v3");
    c.commit(Some("web:v2"), "web:v3", "v3b");
    assert_eq!(c.comments(), ["base", "t1", "t2", "t2b", "v1", "v2", "v3", "v3b"]);
    let report = c.prune(&[&s]);
    assert_eq!(c.comments(), ["base", "t2b", "v1", "v2", "v3b"], "{report}");
    for id in [&t1, &t2] {
        assert!(report.contains(&format!("deleted: {id}\n")), "{report}");
    }
    // Nothing more to do; --intermediate takes v1.
    assert_eq!(c.prune(&[&s]), "Total reclaimed space: 0B\n");
    c.prune(&["--intermediate", &s]);
    assert_eq!(c.comments(), ["base", "t2b", "v2", "v3b"]);
    for tag in ["base", "web:v2", "web:v3", "tmp:2"] {
        ok(
            tool("image-stack")
                .args(["--from", &format!("{s}:{tag}"), "--tar"])
                .stdout(std::process::Stdio::null()),
            b"",
        );
    }
}

/// docker rmi, by tag and by id, worked out by hand (tests/docker.rs compares with docker).
#[test]
fn removing_images_by_name_as_docker_rmi() {
    let mut c = Commits::new();
    let s = c.store().display().to_string();
    c.commit(None, "base", "base");
    c.commit(Some("base"), "web:v1", "v1");
    ok(
        tool("image-stack").args([
            "--from",
            &format!("{s}:web:v1"),
            "--tag",
            &format!("{s}:web:latest"),
        ]),
        b"",
    );
    c.commit(Some("base"), "other", "other");
    let layout = Layout::open(c.store()).expect("layout");
    let orphan = put(&layout, media::LAYER_TAR, &tar_layer("o", b"an orphan of now"));
    let v1 = c.id("web:v1");
    let short = &v1[7..12];
    let unchanged = |args: &[&str], needle: &str| {
        let before = layout_state(&c.store());
        let mut cmd = tool("image-prune");
        cmd.args(args);
        let err = fails(&mut cmd, b"");
        assert!(
            err.starts_with("image-prune: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert_eq!(layout_state(&c.store()), before, "{args:?} changed the layout");
    };
    // By id, an image with two tags needs --force; with a child, nothing can remove it.
    unchanged(&[&format!("{s}@{short}")], "must be forced");
    unchanged(
        &[&format!("{s}@{}", &c.id("base")[7..19])],
        "dependent child images",
    );
    unchanged(
        &["--force", &format!("{s}@{}", &c.id("base")[7..19])],
        "cannot be forced",
    );
    // A tag that does not exist, an unknown id: nothing changes, even for the other operands.
    unchanged(&[&format!("{s}:other"), &format!("{s}:nope")], "nope");
    unchanged(&[&format!("{s}@beefbeef")], "beefbeef");
    // By tag, an image keeping another tag is only untagged.
    assert_eq!(
        c.prune(&[&format!("{s}:web:latest")]),
        "Untagged: web:latest\nTotal reclaimed space: 0B\n"
    );
    // Its last tag: untagged and deleted, with the blobs only it had (its layer, config and
    // manifest), not the base's layer, the orphan, or the other image. A dry run first says
    // what would go, in the same shape, and changes nothing.
    let before = blob_files(&c.store());
    let state = layout_state(&c.store());
    let dry = c.prune(&["--dry-run", &format!("{s}:web:v1")]);
    assert!(
        dry.starts_with(&format!(
            "Would untag: web:v1\nWould delete: {v1}\nTotal space that would be reclaimed: "
        )),
        "{dry}"
    );
    assert_eq!(layout_state(&c.store()), state, "the dry run changed the layout");
    let out = c.prune(&[&format!("{s}:web:v1")]);
    assert!(
        out.starts_with(&format!(
            "Untagged: web:v1\nDeleted: {v1}\nTotal reclaimed space: "
        )),
        "{out}"
    );
    assert_eq!(before.difference(&blob_files(&c.store())).count(), 3);
    assert!(layout.has_blob(&orphan.digest));
    assert_eq!(c.comments(), ["base", "other"]);
    // By id with --force, an image of two tags goes with both.
    ok(
        tool("image-stack").args(["--from", &format!("{s}:other"), "--tag", &format!("{s}:again")]),
        b"",
    );
    let other = c.id("other");
    let out = c.prune(&["--force", &format!("{s}@{}", &other[7..])]);
    assert!(
        out.starts_with(&format!("Untagged: other\nUntagged: again\nDeleted: {other}\n"))
            || out.starts_with(&format!("Untagged: again\nUntagged: other\nDeleted: {other}\n")),
        "{out}"
    );
    assert_eq!(c.comments(), ["base"]);

    // A child whose parent lost its tag: removing the child removes the parent too (docker
    // rmi prunes untagged parents).
    c.commit(Some("base"), "p", "p");
    c.commit(Some("p"), "q", "q");
    let (p, q) = (c.id("p"), c.id("q"));
    assert_eq!(
        c.prune(&[&format!("{s}:p")]),
        "Untagged: p\nTotal reclaimed space: 0B\n"
    );
    assert_eq!(c.comments(), ["base", "p", "q"]);
    let out = c.prune(&[&format!("{s}:q")]);
    assert!(
        out.starts_with(&format!(
            "Untagged: q\nDeleted: {q}\nDeleted: {p}\nTotal reclaimed space: "
        )),
        "{out}"
    );
    assert_eq!(c.comments(), ["base"]);
}

/// An image's parent is first the manifest its org.opencontainers.image.base.digest names,
/// even when nothing else ties them (here the child shares no layer with it): untagged, that
/// parent is intermediate and stays.
#[test]
fn the_recorded_base_is_a_parent_even_without_a_shared_prefix() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).expect("layout");
    let parent = image(&layout, &[("a", b"parent's own")], CREATED, "amd64");
    let child_of = |base: &Descriptor, name: &str| {
        let layer = put(&layout, media::LAYER_TAR, &tar_layer(name, name.as_bytes()));
        let config = put_json(
            &layout,
            media::CONFIG,
            &json!({"architecture": "amd64", "os": "linux", "created": CREATED,
                    "rootfs": {"type": "layers", "diff_ids": [layer.digest.to_string()]}}),
        );
        put_json(
            &layout,
            media::MANIFEST,
            &json!({"schemaVersion": 2, "mediaType": media::MANIFEST, "config": config, "layers": [layer],
                    "annotations": {"org.opencontainers.image.base.digest": base.digest.to_string()}}),
        )
    };
    let child = child_of(&parent, "child");
    layout.set_tag("child", child).expect("tag");
    add_untagged(&layout, parent.clone());
    let orphan_dangling = child_of(&parent, "another");
    add_untagged(&layout, orphan_dangling.clone());
    let report = prune(&root, &["--grace", "0"]);
    assert!(!report.contains(&parent.digest.to_string()), "{report}");
    assert!(report.contains(&orphan_dangling.digest.to_string()), "{report}");
    assert_eq!(untagged_entries(&root), 1, "the parent stays");
    assert_eq!(prune(&root, &["--grace", "0"]), "Total reclaimed space: 0B\n");
    prune(&root, &["--grace", "0", "--intermediate"]);
    assert_eq!(untagged_entries(&root), 0);
}

/// A manifest nothing references yet, younger than the grace period (a writer such as skopeo or
/// umoci is storing an image, and will tag it next), stays with what it references, and the
/// report names it among what the grace period kept; past the grace period it goes.
#[test]
fn a_young_unreferenced_manifest_is_kept_by_grace_and_named() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).expect("layout");
    let storing = image(&layout, &[("new", b"being stored")], CREATED, "amd64");
    let config = read_json(&layout.blob_path(&storing.digest))["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string();
    let report: Value = serde_json::from_str(&prune(&root, &["--dry-run", "--json"])).expect("json");
    assert_eq!(
        report["keptByGrace"],
        json!([storing.digest.to_string()]),
        "{report}"
    );
    assert_eq!(report["blobs"], json!([]), "{report}");
    prune(&root, &[]);
    assert!(layout.has_blob(&storing.digest), "the young manifest was removed");
    let report: Value = serde_json::from_str(&prune(&root, &["--grace", "0", "--json"])).expect("json");
    assert_eq!(report["keptByGrace"], json!([]), "{report}");
    let removed: Vec<&str> = report["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .map(|b| b["digest"].as_str().expect("digest"))
        .collect();
    assert!(removed.contains(&storing.digest.to_string().as_str()), "{report}");
    assert!(removed.contains(&config.as_str()), "{report}");
    assert_eq!(
        removed.len(),
        3,
        "the manifest, its config and its layer: {report}"
    );
}
