//! End-to-end tests of image-stack: run the built binary on real trees in temp dirs.

use crate::support::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const SDE: &str = "1700000000";

fn stack() -> Command {
    tool("image-stack")
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn blob(store: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        store
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .expect("blob")
}

fn index(store: &Path) -> Value {
    json_of(&std::fs::read(store.join("index.json")).expect("index.json"))
}

/// The manifest and config of a tagged image.
fn image(store: &Path, tag: &str) -> (Value, Value) {
    let idx = index(store);
    let entry = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {idx}"))
        .clone();
    let manifest = json_of(&blob(store, entry["digest"].as_str().unwrap()));
    let config = json_of(&blob(store, manifest["config"]["digest"].as_str().unwrap()));
    (manifest, config)
}

fn tagged_digest(store: &Path, tag: &str) -> String {
    index(store)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no tag {tag}"))
}

/// Flips a byte near the end of a blob (inside the compressed data, before the trailer).
fn corrupt(store: &Path, digest: &str) {
    corrupt_file(&store.join("blobs/sha256").join(&digest[7..]));
}

fn corrupt_file(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 1;
    std::fs::write(path, &bytes).unwrap();
}

/// Packs a tar into `store` with layer-pack; returns the descriptor line.
fn pack(store: &Path, tar: &[u8]) -> Vec<u8> {
    ok(tool("layer-pack").arg("--layout").arg(store), tar)
}

/// Commits descriptor lines on top of `from` (None: scratch) with a fixed SOURCE_DATE_EPOCH.
fn commit(store: &Path, from: Option<&str>, layer: &[u8], tag: &str, extra: &[&str]) -> Value {
    let mut c = stack();
    c.current_dir(store.parent().unwrap())
        .env("SOURCE_DATE_EPOCH", SDE);
    if let Some(f) = from {
        c.args(["--from", f]);
    }
    if !layer.is_empty() {
        c.args(["--layer", "-"]);
    }
    c.args(["--tag", tag]).args(extra);
    let out = ok(&mut c, layer);
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one JSON line");
    json_of(&out)
}

/// Everything in a layout, to show a failed run changed nothing.
fn layout_state(store: &Path) -> String {
    let mut names: Vec<String> = walkdir::WalkDir::new(store)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(store)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    names.push(String::from_utf8_lossy(&std::fs::read(store.join("index.json")).unwrap_or_default()).into());
    names.join("\n")
}

#[test]
fn tag_writes_config_manifest_history_and_prints_the_descriptor() {
    let t = tempdir();
    let store = t.path().join("store");
    let d = pack(&store, &layer(&[E::File("etc/hostname", b"base\n")]));
    let layer = json_of(&d);
    let printed = commit(
        &store,
        None,
        &d,
        "store:httpd:2.4",
        &[
            "--created-by",
            "debootstrap",
            "-m",
            "base system",
            "--author",
            "Ops <ops@example.com>",
        ],
    );
    assert_eq!(
        printed["digest"].as_str().unwrap(),
        tagged_digest(&store, "httpd:2.4")
    );
    assert_eq!(printed["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        printed["annotations"]["org.opencontainers.image.ref.name"],
        "httpd:2.4"
    );
    let (manifest, config) = image(&store, "httpd:2.4");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(manifest["layers"][0]["digest"], layer["digest"]);
    assert_eq!(manifest["layers"][0]["size"], layer["size"]);
    assert!(
        manifest["layers"][0].get("diffID").is_none(),
        "pipe-only fields stay out of manifests"
    );
    assert_eq!(
        config["rootfs"],
        json!({"type": "layers", "diff_ids": [layer["diffID"]]})
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["author"], "Ops <ops@example.com>");
    assert_eq!(
        config["history"],
        json!([{
            "created": "2023-11-14T22:13:20Z",
            "created_by": "debootstrap",
            "author": "Ops <ops@example.com>",
            "comment": "base system"
        }])
    );
    // Blobs are canonical JSON: sorted keys, no whitespace, as jq -S -c writes them.
    if let Some(jq) = peer("jq") {
        for digest in [&manifest["config"]["digest"], &printed["digest"]] {
            let raw = blob(&store, digest.as_str().unwrap());
            let canonical = ok(Command::new(&jq).args(["-S", "-c", "."]), &raw);
            assert_eq!(
                String::from_utf8_lossy(&canonical),
                String::from_utf8_lossy(&raw) + "\n",
                "{digest}"
            );
        }
    }
}

#[test]
fn moving_a_tag_leaves_the_old_image_dangling() {
    let t = tempdir();
    let store = t.path().join("store");
    let base = pack(&store, &layer(&[E::File("a", b"1")]));
    let v1 = commit(&store, None, &base, "store:web", &[]);
    let more = pack(&store, &layer(&[E::File("b", b"2")]));
    let v2 = commit(&store, Some("store:web"), &more, "store:web", &["-m", "second"]);
    assert_ne!(v1["digest"], v2["digest"]);
    let entries = index(&store)["manifests"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let old = entries
        .iter()
        .find(|e| e["digest"] == v1["digest"])
        .expect("old entry kept");
    assert!(
        old.get("annotations")
            .is_none_or(|a| a.get("org.opencontainers.image.ref.name").is_none())
    );
    assert_eq!(tagged_digest(&store, "web"), v2["digest"].as_str().unwrap());
    let (manifest, config) = image(&store, "web");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
    assert_eq!(config["history"][1]["comment"], "second");
}

#[test]
fn source_date_epoch_makes_a_commit_reproducible() {
    let t = tempdir();
    let store = t.path().join("store");
    let d = pack(&store, &layer(&[E::File("x", b"x")]));
    let a = commit(&store, None, &d, "store:a", &["-c", "ENV A=1", "-m", "same"]);
    let b = commit(&store, None, &d, "store:b", &["-c", "ENV A=1", "-m", "same"]);
    assert_eq!(a["digest"], b["digest"]);
    // Without it, `created` is now.
    let out = ok(
        stack()
            .current_dir(t.path())
            .args(["--layer", "-", "--tag", "store:now"]),
        &d,
    );
    assert_ne!(json_of(&out)["digest"], a["digest"]);
    let (_, config) = image(&store, "now");
    assert!(config["created"].as_str().unwrap() > "2024-01-01");
}

#[test]
fn changes_without_a_layer_add_one_empty_layer_entry() {
    let t = tempdir();
    let store = t.path().join("store");
    let d = pack(
        &store,
        &layer(&[E::File("usr/local/apache2/htdocs/index.html", b"<h1>hi</h1>")]),
    );
    commit(&store, None, &d, "store:base", &["-c", "ENV PATH=/usr/bin"]);
    commit(
        &store,
        Some("store:base"),
        b"",
        "store:conf",
        &[
            "-c",
            "ENV PATH=/usr/local/apache2/bin:$PATH",
            "-c",
            "EXPOSE 80",
            "-c",
            "WORKDIR /usr/local/apache2",
            "-c",
            "CMD [\"httpd-foreground\"]",
            "-c",
            "LABEL org.opencontainers.image.title=httpd",
            "-m",
            "configure",
        ],
    );
    let (base_manifest, base_config) = image(&store, "base");
    let (manifest, config) = image(&store, "conf");
    assert_eq!(manifest["layers"], base_manifest["layers"]);
    assert_eq!(config["rootfs"], base_config["rootfs"]);
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "one entry per commit, not per -c: {history:?}");
    assert_eq!(history[1]["empty_layer"], true);
    assert_eq!(history[1]["comment"], "configure");
    let c = &config["config"];
    assert_eq!(c["Env"], json!(["PATH=/usr/local/apache2/bin:/usr/bin"]));
    assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}}));
    assert_eq!(c["WorkingDir"], "/usr/local/apache2");
    assert_eq!(c["Cmd"], json!(["httpd-foreground"]));
    assert_eq!(c["Labels"], json!({"org.opencontainers.image.title": "httpd"}));
}

/// Writes a blob by hand; returns its descriptor fields.
fn put_blob(store: &Path, bytes: &[u8]) -> (String, usize) {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    std::fs::create_dir_all(store.join("blobs/sha256")).unwrap();
    std::fs::write(store.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// A layout made by hand (as docker or another tool would) around one uncompressed layer.
fn handmade_image(store: &Path, tag: &str, config: Value, layer_tar: &[u8]) -> String {
    let (ld, ls) = put_blob(store, layer_tar);
    let mut config = config;
    if config["rootfs"].is_null() {
        config["rootfs"] = json!({"type": "layers", "diff_ids": [ld]});
    }
    // Not canonical on purpose: a base blob is kept as it was written.
    let (cd, cs) = put_blob(store, serde_json::to_string_pretty(&config).unwrap().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "digest": ld, "size": ls}]
    });
    let (md, ms) = put_blob(store, serde_json::to_string_pretty(&manifest).unwrap().as_bytes());
    std::fs::write(store.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let idx = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": tag}
    }]});
    std::fs::write(store.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    md
}

fn docker_config() -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2020-01-01T00:00:00.123456789Z",
        "docker_version": "20.10.7",
        "container_config": {"Hostname": "abc", "Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"sh\"]"]},
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000i64},
            "OnBuild": ["RUN make"],
            "Shell": ["/bin/ash", "-c"],
            "ArgsEscaped": true,
            "Domainname": "",
            "Labels": {"z": "1", "a": "2"}
        },
        "history": [{"created": "2020-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:x in /"}],
        "x-unknown": {"nested": [1, 2, {"k": null}]}
    })
}

#[test]
fn a_docker_made_base_keeps_every_field_it_does_not_change() {
    let t = tempdir();
    let store = t.path().join("store");
    let base = docker_config();
    handmade_image(&store, "base", base.clone(), &layer(&[E::File("bin/sh", b"#!")]));
    let d = pack(&store, &layer(&[E::File("srv/index.html", b"hi")]));
    commit(
        &store,
        Some("store:base"),
        &d,
        "store:web",
        &["-c", "USER www", "-c", "CMD serve"],
    );
    let (manifest, config) = image(&store, "web");
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar"
    );
    for key in [
        "docker_version",
        "container_config",
        "x-unknown",
        "architecture",
        "os",
    ] {
        assert_eq!(config[key], base[key], "{key}");
    }
    let mut expected = base["config"].clone();
    expected["User"] = json!("www");
    // The base's SHELL runs the shell form; ArgsEscaped (Windows-only) goes with the old Cmd.
    expected["Cmd"] = json!(["/bin/ash", "-c", "serve"]);
    expected.as_object_mut().unwrap().remove("ArgsEscaped");
    assert_eq!(config["config"], expected);
    assert_eq!(config["history"][0], base["history"][0]);
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
}

#[test]
fn drop_gives_the_base_back() {
    let t = tempdir();
    let store = t.path().join("store");
    let d = pack(&store, &layer(&[E::File("etc/os-release", b"ID=test\n")]));
    let base = commit(
        &store,
        None,
        &d,
        "store:httpd:2.4",
        &["--created-by", "debootstrap"],
    );
    let d2 = pack(&store, &layer(&[E::File("srv/index.html", b"site")]));
    commit(
        &store,
        Some("store:httpd:2.4"),
        &d2,
        "store:web:v1",
        &["-m", "Add site"],
    );
    let back = commit(
        &store,
        Some("store:web:v1"),
        b"",
        "store:web:rollback",
        &["--drop", "1"],
    );
    // Same layers, same diff_ids, same history and (same SOURCE_DATE_EPOCH) the same digest.
    assert_eq!(back["digest"], base["digest"]);
    let (m, c) = image(&store, "web:rollback");
    let (bm, bc) = image(&store, "httpd:2.4");
    assert_eq!(m["layers"], bm["layers"]);
    assert_eq!(c["rootfs"], bc["rootfs"]);
    assert_eq!(c["history"], bc["history"]);

    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["--from", "store:web:v1", "--drop", "3", "--tag", "store:x"]),
        b"",
    );
    assert!(err.contains("--drop 3: the image has only 2 layers"), "{err}");
}

/// `--drop` with a config-only commit (`-c` without a layer: an `empty_layer` history entry)
/// in the stack. The choice, as docker's rollback (tagging an older image of the chain) has
/// it: dropping N layers gives the newest image of the chain that lacks them, so the history
/// is cut just below the N-th layer entry from the top: that entry goes with every entry above
/// it (the empty_layer entries above a dropped layer were made on top of it), and the
/// empty_layer entries between the kept layers and the first dropped one stay (they were made
/// before it). Only the history and layers are rolled back: config fields that a dropped
/// config-only commit set (here the CMD, after `--drop 2`) stay as the top image has them,
/// since the older values are not in the image.
#[test]
fn drop_keeps_empty_layer_entries_below_the_dropped_layers_and_removes_those_above() {
    let t = tempdir();
    let store = t.path().join("store");
    let a = pack(&store, &layer(&[E::File("a", b"a")]));
    commit(&store, None, &a, "store:a", &["--created-by", "layer a"]);
    let b = pack(&store, &layer(&[E::File("b", b"b")]));
    commit(
        &store,
        Some("store:a"),
        &b,
        "store:b",
        &["--created-by", "layer b"],
    );
    let conf = commit(
        &store,
        Some("store:b"),
        b"",
        "store:conf",
        &["-c", "CMD [\"serve\"]", "--created-by", "cmd"],
    );
    let c = pack(&store, &layer(&[E::File("c", b"c")]));
    commit(
        &store,
        Some("store:conf"),
        &c,
        "store:app",
        &["--created-by", "layer c"],
    );
    let summary = |tag: &str| {
        let (m, cfg) = image(&store, tag);
        let history: Vec<(String, bool)> = cfg["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["created_by"].as_str().unwrap().to_string(),
                    h["empty_layer"] == json!(true),
                )
            })
            .collect();
        let layers = m["layers"].as_array().unwrap().len();
        assert_eq!(
            cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
            layers,
            "{tag}"
        );
        (history, layers, cfg)
    };
    let h = |entries: &[(&str, bool)]| -> Vec<(String, bool)> {
        entries.iter().map(|(s, e)| (s.to_string(), *e)).collect()
    };
    let (history, layers, _) = summary("app");
    assert_eq!(
        (history, layers),
        (
            h(&[
                ("layer a", false),
                ("layer b", false),
                ("cmd", true),
                ("layer c", false)
            ]),
            3
        )
    );

    // --drop 1: layer c and exactly its entry go; the empty_layer entry below it stays. That
    // is the config-only image itself, its config byte for byte (same SOURCE_DATE_EPOCH), so
    // the same image id; only the manifest differs: conf records the image it was built on,
    // a rollback records none.
    commit(&store, Some("store:app"), b"", "store:drop1", &["--drop", "1"]);
    let (history, layers, cfg) = summary("drop1");
    assert_eq!(
        (history, layers),
        (h(&[("layer a", false), ("layer b", false), ("cmd", true)]), 2)
    );
    assert_eq!(cfg["rootfs"], image(&store, "b").1["rootfs"]);
    let (drop1, conf_manifest) = (image(&store, "drop1").0, image(&store, "conf").0);
    assert_eq!(drop1["config"], conf_manifest["config"]);
    assert_eq!(
        conf_manifest["annotations"]["org.opencontainers.image.base.digest"],
        json!(tagged_digest(&store, "b"))
    );
    assert_eq!(drop1.get("annotations"), None);
    assert_ne!(conf["digest"], json!(tagged_digest(&store, "drop1")));
    assert_eq!(
        entries(&flat(&store, "store:drop1")),
        entries(&flat(&store, "store:conf"))
    );

    // --drop 2: layer b goes too, and with it everything above its entry: the empty_layer
    // entry made on top of it, and layer c's. What is left is image a's history and layers.
    commit(&store, Some("store:app"), b"", "store:drop2", &["--drop", "2"]);
    let (history, layers, cfg) = summary("drop2");
    assert_eq!((history, layers), (h(&[("layer a", false)]), 1));
    let (_, a_cfg) = image(&store, "a");
    assert_eq!(cfg["rootfs"], a_cfg["rootfs"]);
    assert_eq!(cfg["history"], a_cfg["history"]);
    assert_eq!(
        entries(&flat(&store, "store:drop2")),
        entries(&flat(&store, "store:a"))
    );

    // A config-only image on top: --drop 1 takes its layer b and the empty_layer entry above.
    commit(
        &store,
        Some("store:conf"),
        b"",
        "store:conf-drop1",
        &["--drop", "1"],
    );
    let (history, layers, _) = summary("conf-drop1");
    assert_eq!((history, layers), (h(&[("layer a", false)]), 1));
}

#[test]
fn a_plain_retag_or_copy_keeps_the_image_byte_for_byte() {
    let t = tempdir();
    let store = t.path().join("store");
    let md = handmade_image(&store, "base", docker_config(), &layer(&[E::File("f", b"f")]));
    let same = commit(&store, Some("store:base"), b"", "store:again", &[]);
    assert_eq!(same["digest"], md.as_str());
    let other = t.path().join("other");
    let copied = commit(&store, Some("store:base"), b"", "other:copy", &[]);
    assert_eq!(copied["digest"], md.as_str());
    let (m, mut c) = image(&other, "copy");
    c.as_object_mut().unwrap().remove("rootfs");
    assert_eq!(c, docker_config(), "the config blob came along unchanged");
    assert!(
        other
            .join("blobs/sha256")
            .join(&m["layers"][0]["digest"].as_str().unwrap()[7..])
            .is_file()
    );
}

#[test]
fn layers_and_base_images_from_another_layout_are_copied_in() {
    let t = tempdir();
    let a = t.path().join("a");
    let b = t.path().join("b");
    let base = pack(&a, &layer(&[E::File("base", b"base")]));
    commit(&a, None, &base, "a:base", &[]);
    let top = pack(&a, &layer(&[E::File("top", b"top")]));
    commit(&a, Some("a:base"), &top, "b:web", &[]);
    let (manifest, _) = image(&b, "web");
    for l in manifest["layers"].as_array().unwrap() {
        let hex = &l["digest"].as_str().unwrap()[7..];
        assert_eq!(
            std::fs::read(b.join("blobs/sha256").join(hex)).unwrap(),
            std::fs::read(a.join("blobs/sha256").join(hex)).unwrap()
        );
    }
    // A layer kept in a blob file (layer-pack -o) is copied in from it.
    let file = t.path().join("layer.tar.gz");
    let d = ok(
        tool("layer-pack").arg("-o").arg(&file),
        &layer(&[E::File("f", b"from a file")]),
    );
    commit(&a, Some("b:web"), &d, "b:web2", &[]);
    let (m2, _) = image(&b, "web2");
    assert_eq!(m2["layers"].as_array().unwrap().len(), 3);
    let hex = &m2["layers"][2]["digest"].as_str().unwrap()[7..];
    assert_eq!(
        std::fs::read(b.join("blobs/sha256").join(hex)).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

#[test]
fn a_missing_or_corrupt_blob_is_refused_naming_its_digest_and_nothing_changes() {
    let t = tempdir();
    let a = t.path().join("a");
    let b = t.path().join("b");
    let d = pack(&a, &layer(&[E::File("x", b"some content")]));
    commit(&b, None, &pack(&b, &layer(&[E::File("y", b"y")])), "b:keep", &[]);
    let digest = json_of(&d)["digest"].as_str().unwrap().to_string();
    let before = layout_state(&b);

    // No source, and not in the target layout.
    let mut no_source = json_of(&d);
    no_source.as_object_mut().unwrap().remove("source");
    let line = format!("{no_source}\n");
    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["--layer", "-", "--tag", "b:new"]),
        line.as_bytes(),
    );
    assert!(err.contains(&digest) && err.contains("missing"), "{err}");
    assert_eq!(layout_state(&b), before);

    // The source's blob does not hash to its digest.
    corrupt(&a, &digest);
    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["--layer", "-", "--tag", "b:new"]),
        &d,
    );
    assert!(err.contains(&digest) && err.contains("digest mismatch"), "{err}");
    assert_eq!(layout_state(&b), before, "no blob, no temporary file, no tag");
}

#[test]
fn refuses_bad_bases_changes_and_arguments() {
    let t = tempdir();
    let store = t.path().join("store");
    let mut c = docker_config();
    c["rootfs"] = json!({"type": "snapshots", "diff_ids": []});
    handmade_image(&store, "odd", c, &layer(&[E::File("f", b"f")]));
    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["--from", "store:odd", "--tag", "store:x"]),
        b"",
    );
    assert!(err.contains("rootfs.type is \"snapshots\""), "{err}");

    let short = t.path().join("short");
    let mut c = docker_config();
    c["rootfs"] = json!({"type": "layers", "diff_ids": []});
    handmade_image(&short, "base", c, &layer(&[E::File("f", b"f")]));
    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["--from", "short:base", "--tag", "short:x"]),
        b"",
    );
    assert!(err.contains("0 diff_ids for 1 layers"), "{err}");

    // A bad change is refused before anything is written: no layout appears.
    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["-c", "RUN make", "--tag", "fresh:x"]),
        b"",
    );
    assert!(err.contains("RUN is not a valid change command"), "{err}");
    assert!(!t.path().join("fresh").exists());

    // An empty descriptor stream is what a failed producer leaves: never commit it.
    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["--layer", "-", "--tag", "fresh:x"]),
        b"",
    );
    assert!(err.contains("no layer descriptors"), "{err}");
    assert!(!t.path().join("fresh").exists());

    // Exactly one sink.
    for args in [
        &["--from", "store:odd"][..],
        &["--tar", "--rootfs", "d"],
        &["--rootfs", "d", "-m", "message needs --tag"],
        &["--tar", "-c", "CMD x"],
        &["--tar", "--rootless"],
    ] {
        fails(stack().current_dir(t.path()).args(args), b"");
    }
    assert!(!t.path().join("d").exists());
}

#[test]
fn skopeo_inspects_our_images() {
    let Some(skopeo) = peer("skopeo") else { return };
    let t = tempdir();
    let store = t.path().join("store");
    let d = pack(&store, &layer(&[E::File("srv/index.html", b"hi")]));
    commit(
        &store,
        None,
        &d,
        "store:web:v1",
        &["-c", "LABEL team=web", "-c", "EXPOSE 8080"],
    );
    let out = ok(
        Command::new(skopeo)
            .current_dir(t.path())
            .args(["inspect", "oci:store:web:v1"]),
        b"",
    );
    let v = json_of(&out);
    assert_eq!(v["Labels"]["team"], "web");
    assert_eq!(v["Layers"][0], json_of(&d)["digest"]);
    assert_eq!(v["Created"], "2023-11-14T22:13:20Z");
}

/// One tar entry for [`layer`]: a file, a directory, a hard link or a whiteout.
enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Sym(&'a str, &'a str),
}

fn layer(entries: &[E]) -> Vec<u8> {
    entries
        .iter()
        .fold(Tar::default(), |t, e| match e {
            E::File(p, c) => t.file(p, c),
            E::Dir(p) => t.dir(p),
            E::Link(p, target) => t.hardlink(p, target),
            E::Sym(p, target) => t.symlink(p, target),
        })
        .done()
}

/// Commits tars as layers, bottom first, under `tag`.
fn image_of_layers(store: &Path, tag: &str, layers: &[Vec<u8>]) {
    let mut lines = Vec::new();
    for l in layers {
        lines.extend(pack(store, l));
    }
    let name = store.file_name().unwrap().to_string_lossy();
    commit(store, None, &lines, &format!("{name}:{tag}"), &[]);
}

/// A tar's entries: (path, kind, hard-link target or content).
fn entries(tar_bytes: &[u8]) -> Vec<(String, String, String)> {
    use std::io::Read;
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let ty = e.header().entry_type();
            let (kind, what) = match ty {
                tar::EntryType::Link => (
                    "link",
                    String::from_utf8_lossy(&e.link_name_bytes().unwrap()).into_owned(),
                ),
                tar::EntryType::Symlink => (
                    "sym",
                    String::from_utf8_lossy(&e.link_name_bytes().unwrap()).into_owned(),
                ),
                tar::EntryType::Directory => ("dir", String::new()),
                _ => {
                    let mut s = String::new();
                    e.read_to_string(&mut s).unwrap();
                    ("file", s)
                }
            };
            (path, kind.to_string(), what)
        })
        .collect()
}

fn flat(store: &Path, image: &str) -> Vec<u8> {
    ok(
        stack()
            .current_dir(store.parent().unwrap())
            .args(["--from", image, "--tar"]),
        b"",
    )
}

fn row(path: &str, kind: &str, what: &str) -> (String, String, String) {
    (path.into(), kind.into(), what.into())
}

#[test]
fn tar_is_the_union_with_whiteouts_and_opaque_dirs_applied() {
    let t = tempdir();
    let store = t.path().join("store");
    image_of_layers(
        &store,
        "u",
        &[
            layer(&[
                E::Dir("etc/"),
                E::File("etc/keep", b"keep"),
                E::File("etc/gone", b"gone"),
                E::Dir("var/"),
                E::Dir("var/cache/"),
                E::File("var/cache/old", b"old"),
                E::Dir("usr/"),
                E::Dir("usr/lib/"),
                E::Sym("lib", "/usr/lib"),
            ]),
            layer(&[
                // A whiteout hides only lower layers: etc/gone written again here survives.
                E::File("etc/.wh.keep", b""),
                E::File("etc/gone", b"again"),
                E::File("etc/.wh.gone", b""),
                E::File("var/cache/new", b"new"),
                E::File("var/cache/.wh..wh..opq", b""),
                // Through the absolute symlink, inside the tree.
                E::File("lib/libz.so", b"z"),
            ]),
        ],
    );
    assert_eq!(
        entries(&flat(&store, "store:u")),
        vec![
            row("etc/", "dir", ""),
            row("etc/gone", "file", "again"),
            row("lib", "sym", "/usr/lib"),
            row("usr/", "dir", ""),
            row("usr/lib/", "dir", ""),
            row("usr/lib/libz.so", "file", "z"),
            row("var/", "dir", ""),
            row("var/cache/", "dir", ""),
            row("var/cache/new", "file", "new"),
        ]
    );
}

#[test]
fn tar_keeps_hard_links_right_when_their_target_changes_later() {
    // crane's reverse-order flatten gets these wrong (ggcr #977, #2002).
    let t = tempdir();
    let store = t.path().join("store");
    image_of_layers(
        &store,
        "links",
        &[
            layer(&[
                E::File("a", b"original"),
                E::Link("b", "a"),
                E::Link("c", "a"),
                E::File("x", b"x1"),
                E::Link("y", "x"),
            ]),
            // The link target is overwritten, then removed: the links keep the old inode.
            layer(&[E::File("a", b"overwritten"), E::File(".wh.x", b"")]),
            layer(&[E::File(".wh.b", b"")]),
        ],
    );
    assert_eq!(
        entries(&flat(&store, "store:links")),
        vec![
            row("a", "file", "overwritten"),
            row("c", "file", "original"),
            row("y", "file", "x1"),
        ]
    );
    image_of_layers(
        &store,
        "links2",
        &[
            layer(&[E::File("a", b"original"), E::Link("b", "a"), E::Link("c", "a")]),
            layer(&[E::File("a", b"overwritten")]),
        ],
    );
    assert_eq!(
        entries(&flat(&store, "store:links2")),
        vec![
            row("a", "file", "overwritten"),
            row("b", "file", "original"),
            row("c", "link", "b"),
        ]
    );
}

#[test]
fn tar_is_reproducible_and_squashes_into_one_layer() {
    let t = tempdir();
    let store = t.path().join("store");
    image_of_layers(
        &store,
        "two",
        &[
            layer(&[E::Dir("srv/"), E::File("srv/a", b"a"), E::File("srv/b", b"b")]),
            layer(&[E::File("srv/.wh.a", b""), E::File("srv/c", b"c")]),
        ],
    );
    let first = flat(&store, "store:two");
    assert_eq!(first, flat(&store, "store:two"), "same image, same bytes");
    let squashed = sh(&format!(
        "cd {} && image-stack --from store:two --tar | layer-pack --layout store | SOURCE_DATE_EPOCH={SDE} image-stack --layer - --tag store:flat",
        t.path().display()
    ));
    let (manifest, _) = image(&store, "flat");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        json_of(&squashed)["digest"].as_str().unwrap(),
        tagged_digest(&store, "flat")
    );
    assert_eq!(
        flat(&store, "store:flat"),
        first,
        "the squashed image has the same union"
    );

    let out = run(
        stack()
            .args(["--from", "store:two", "--tar"])
            .current_dir(t.path())
            .env("SOURCE_DATE_EPOCH", "1500000000"),
        b"",
    );
    assert!(out.status.success());
    let mut a = tar::Archive::new(&out.stdout[..]);
    for e in a.entries().unwrap() {
        assert_eq!(e.unwrap().header().mtime().unwrap(), 1_500_000_000, "clamped");
    }
}

/// `--tar` that fails part way (the second layer's blob is corrupt 2 MiB in, inside a file's
/// content: the tar still parses, the digest check fails at its end) exits 2 naming the blob,
/// and what it wrote to stdout cannot pass for a layer: not even an empty stream, which tar-rs
/// (and Go's archive/tar) read as an empty archive. layer-diff keeps the same contract.
#[test]
fn a_tar_that_fails_part_way_is_no_tar() {
    let t = tempdir();
    let store = t.path().join("store");
    let first = pack(&store, &layer(&[E::File("a", b"the first layer")]));
    let noise: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let second = ok(
        tool("layer-pack")
            .arg("--layout")
            .arg(&store)
            .args(["--compress", "none"]),
        &layer(&[E::File("b", &noise)]),
    );
    commit(&store, None, &[first, second.clone()].concat(), "store:two", &[]);
    let digest = json_of(&second)["digest"].as_str().unwrap().to_string();
    let path = store.join("blobs/sha256").join(&digest[7..]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2 << 20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    let out = run(
        stack()
            .args(["--from", "store:two", "--tar"])
            .current_dir(t.path()),
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("image-stack: ") && err.contains(&digest), "{err}");
    let read: Result<Vec<_>, _> = tar::Archive::new(&out.stdout[..])
        .entries()
        .and_then(|entries| entries.map(|e| e.map(|e| e.path_bytes().into_owned())).collect());
    assert!(read.is_err(), "tar-rs reads stdout as a tar: {:?}", read.unwrap());
    let gnu = run(Command::new("tar").args(["-tf", "-"]), &out.stdout);
    assert!(!gnu.status.success(), "GNU tar accepts stdout");
}

/// Every layer here is written by us, in whole seconds, so each unpacked tree is compared with
/// its source's snapshot in whole seconds.
#[test]
fn seed_walkthrough_unpack_change_commit_unpack_gives_the_same_trees() {
    let t = tempdir();
    let dir = t.path();
    sample_tree(&dir.join("base"));
    sh_in(
        dir,
        r#"layer-pack --layout store base/ | image-stack --layer - --tag store:httpd:2.4 --created-by "debootstrap""#,
    );
    sh_in(dir, "image-stack --from store:httpd:2.4 --rootfs web/");
    assert_eq!(
        snapshot(&dir.join("web")),
        whole_seconds(&snapshot(&dir.join("base"))),
        "unpacked base"
    );

    edit_sample_tree(&dir.join("web"));
    let listed = String::from_utf8(sh_in(dir, "layer-diff --list store:httpd:2.4 web/")).unwrap();
    assert!(
        listed.contains("D /etc/hostname") && listed.contains("A /srv/htdocs/index.html"),
        "{listed}"
    );
    sh_in(
        dir,
        r#"layer-diff store:httpd:2.4 web/ | layer-pack --layout store \
      | image-stack --from store:httpd:2.4 --layer - --tag store:web:v1 -m "Add site""#,
    );
    sh_in(dir, "image-stack --from store:web:v1 --rootfs web2/");
    assert_eq!(
        snapshot(&dir.join("web2")),
        whole_seconds(&snapshot(&dir.join("web"))),
        "committed change"
    );

    // Roll back: the base's tree and diff_ids.
    sh_in(
        dir,
        "image-stack --from store:web:v1 --drop 1 --tag store:web:rollback",
    );
    sh_in(dir, "image-stack --from store:web:rollback --rootfs back/");
    assert_eq!(
        snapshot(&dir.join("back")),
        whole_seconds(&snapshot(&dir.join("base"))),
        "--drop 1"
    );
    let store = dir.join("store");
    assert_eq!(
        image(&store, "web:rollback").1["rootfs"],
        image(&store, "httpd:2.4").1["rootfs"]
    );

    // Squash: one layer, the same tree.
    sh_in(
        dir,
        "image-stack --from store:web:v1 --tar | layer-pack --layout store \
      | image-stack --layer - --tag store:web:flat",
    );
    assert_eq!(image(&store, "web:flat").0["layers"].as_array().unwrap().len(), 1);
    sh_in(dir, "image-stack --from store:web:flat --rootfs flat/");
    assert_eq!(
        snapshot(&dir.join("flat")),
        whole_seconds(&snapshot(&dir.join("web"))),
        "squashed"
    );

    // umoci unpacks what we committed to the same tree.
    if let Some(umoci) = peer("umoci") {
        ok(
            Command::new(umoci)
                .current_dir(dir)
                .args(["unpack", "--image", "store:web:v1", "bundle"]),
            b"",
        );
        assert_eq!(
            snapshot(&dir.join("bundle/rootfs")),
            whole_seconds(&snapshot(&dir.join("web"))),
            "umoci unpack"
        );
    }
}

#[test]
fn we_unpack_umoci_made_images_to_the_tree_umoci_unpacks() {
    let Some(umoci) = peer("umoci") else { return };
    let t = tempdir();
    let dir = t.path();
    let umoci_ok = |args: &[&str]| {
        ok(Command::new(&umoci).current_dir(dir).args(args), b"");
    };
    umoci_ok(&["init", "--layout", "u"]);
    umoci_ok(&["new", "--image", "u:base"]);
    umoci_ok(&["unpack", "--image", "u:base", "b1"]);
    sample_tree(&dir.join("b1/rootfs"));
    umoci_ok(&["repack", "--image", "u:base", "b1"]);
    // A second layer with deletions (umoci writes explicit whiteouts) and changes.
    umoci_ok(&["unpack", "--image", "u:base", "b2"]);
    let r = dir.join("b2/rootfs");
    std::fs::remove_file(r.join("etc/hostname")).unwrap();
    std::fs::remove_dir_all(r.join("var/lib/data")).unwrap();
    file(&r, "etc/motd", b"hello\n", 0o644, 1_650_000_000);
    file(
        &r,
        "usr/lib/libx.so.1",
        b"replaced through the shared inode\n",
        0o755,
        1_650_000_000,
    );
    umoci_ok(&["repack", "--image", "u:base", "b2"]);
    // An opaque directory and a lone whiteout, from umoci insert (tars without an end marker).
    file(&dir.join("newopt"), "only", b"only me\n", 0o600, 1_650_000_000);
    umoci_ok(&["insert", "--image", "u:base", "--opaque", "newopt", "/opt"]);
    umoci_ok(&["insert", "--image", "u:base", "--whiteout", "/bin/passwd-link"]);
    umoci_ok(&["unpack", "--image", "u:base", "reference"]);

    sh_in(dir, "image-stack --from u:base --rootfs ours/");
    let theirs = snapshot(&dir.join("reference/rootfs"));
    assert!(theirs.contains("opt/only") && !theirs.contains("opt/app") && !theirs.contains("passwd-link"));
    assert_eq!(snapshot(&dir.join("ours")), theirs);
    // The flat tar of the same image packs into a layer that unpacks to that tree as well.
    sh_in(
        dir,
        "image-stack --from u:base --tar | layer-pack --layout u | image-stack --layer - --tag u:flat",
    );
    sh_in(dir, "image-stack --from u:flat --rootfs flat/");
    assert_eq!(snapshot(&dir.join("flat")), theirs);
}

#[test]
fn rootfs_creates_the_directory_0755_and_refuses_a_non_empty_one() {
    let t = tempdir();
    let store = t.path().join("store");
    let d = pack(&store, &layer(&[E::Dir("srv/"), E::File("srv/x", b"x")]));
    commit(&store, None, &d, "store:x", &[]);
    sh_in(t.path(), "image-stack --from store:x --rootfs new/");
    // As docker and containerd make a container's root (CLI.md: 0755 unless a layer has `./`).
    assert_eq!(mode_of(&t.path().join("new")), 0o755);
    assert_eq!(std::fs::read(t.path().join("new/srv/x")).unwrap(), b"x");

    std::fs::create_dir(t.path().join("busy")).unwrap();
    std::fs::write(t.path().join("busy/keep"), b"mine").unwrap();
    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["--from", "store:x", "--rootfs", "busy"]),
        b"",
    );
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(t.path().join("busy")).unwrap().count(), 1);
    std::fs::write(t.path().join("plain"), b"").unwrap();
    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["--from", "store:x", "--rootfs", "plain"]),
        b"",
    );
    assert!(err.contains("not a directory"), "{err}");
}

fn mode_of(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o7777
}

#[test]
fn rootfs_root_takes_the_attributes_of_a_layers_dot_entry() {
    let t = tempdir();
    let store = t.path().join("store");
    // `./` as `tar -C rootfs .` writes it: a directory entry for the root itself, 0750.
    let mut dot = tar::Header::new_ustar();
    dot.as_old_mut().name[..2].copy_from_slice(b"./");
    dot.set_entry_type(tar::EntryType::Directory);
    dot.set_mode(0o750);
    dot.set_uid(0);
    dot.set_gid(0);
    dot.set_mtime(1_500_000_000);
    dot.set_size(0);
    dot.set_cksum();
    let with_dot = [
        dot.as_bytes(),
        &layer(&[E::Dir("srv/"), E::File("srv/x", b"x")])[..],
    ]
    .concat();
    let d = pack(&store, &with_dot);
    commit(&store, None, &d, "store:dot", &[]);
    let plain = pack(&store, &layer(&[E::File("y", b"y")]));
    commit(&store, None, &plain, "store:plain", &[]);
    let mtime = |p: &Path| std::os::unix::fs::MetadataExt::mtime(&std::fs::metadata(p).unwrap());

    sh_in(t.path(), "image-stack --from store:dot --rootfs new/");
    assert_eq!(mode_of(&t.path().join("new")), 0o750);
    assert_eq!(mtime(&t.path().join("new")), 1_500_000_000);
    assert_eq!(std::fs::read(t.path().join("new/srv/x")).unwrap(), b"x");
    // A directory given empty keeps its own mode, unless a layer carries `./`.
    for (image, want) in [("store:plain", 0o711), ("store:dot", 0o750)] {
        let given = t.path().join(format!("given-{}", &image[6..]));
        std::fs::create_dir(&given).unwrap();
        std::fs::set_permissions(&given, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
        ok(
            stack()
                .current_dir(t.path())
                .args(["--from", image, "--rootfs"])
                .arg(&given),
            b"",
        );
        assert_eq!(mode_of(&given), want, "{image}");
    }
}

#[test]
fn tar_and_rootfs_refuse_a_corrupt_layer_naming_its_digest() {
    let t = tempdir();
    let store = t.path().join("store");
    let d = pack(&store, &layer(&[E::File("f", &[9u8; 10_000])]));
    commit(&store, None, &d, "store:c", &[]);
    let digest = json_of(&d)["digest"].as_str().unwrap().to_string();
    corrupt(&store, &digest);
    for sink in [&["--tar"][..], &["--rootfs", "out"]] {
        let err = fails(
            stack()
                .current_dir(t.path())
                .args(["--from", "store:c"])
                .args(sink),
            b"",
        );
        assert!(err.contains(&digest), "{err}");
    }
}

#[test]
fn rootless_unpack_as_an_unprivileged_user_skips_what_needs_root() {
    if !needs_root("making the image and switching to an unprivileged user") {
        return;
    }
    let t = tempdir();
    let dir = t.path();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let base = dir.join("base");
    file(&base, "etc/motd", b"hi\n", 0o644, 1_600_000_000);
    file(&base, "etc/group-only", b"g\n", 0o644, 1_600_000_000);
    file(&base, "etc/user-only", b"u\n", 0o644, 1_600_000_000);
    file(&base, "etc/root-owned", b"r\n", 0o644, 1_600_000_000);
    for (p, uid, gid) in [
        ("etc", 1000, 1000),
        ("etc/motd", 1000, 1000),
        ("etc/group-only", 0, 1234),
        ("etc/user-only", 1234, 0),
    ] {
        std::os::unix::fs::chown(base.join(p), Some(uid), Some(gid)).unwrap();
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        base.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    sh_in(
        dir,
        "layer-pack --layout store base/ | image-stack --layer - --tag store:x && chmod -R a+rX store",
    );
    std::fs::create_dir(dir.join("out")).unwrap();
    std::os::unix::fs::chown(dir.join("out"), Some(65534), Some(65534)).unwrap();
    let out = run(
        Command::new("setpriv")
            .current_dir(dir)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin_dir().join("image-stack"))
            .args(["--from", "store:x", "--rootfs", "out/root", "--rootless"]),
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(std::fs::read(dir.join("out/root/etc/motd")).unwrap(), b"hi\n");
    assert!(
        err.contains("warning") && err.contains("/null"),
        "the skipped device is reported: {err}"
    );
    assert!(!dir.join("out/root/null").exists());

    // The owners the layer asked for are recorded, not lost: user.rootlesscontainers on every
    // entry not owned by 0:0, decoding to the layer's uid/gid.
    let ours = rootless_owners(&dir.join("out/root"));
    let expected: std::collections::BTreeMap<String, (u32, u32)> = [
        ("etc", (1000, 1000)),
        ("etc/motd", (1000, 1000)),
        ("etc/group-only", (0, 1234)),
        ("etc/user-only", (1234, 0)),
    ]
    .into_iter()
    .map(|(p, o)| (p.to_string(), o))
    .collect();
    assert_eq!(ours, expected, "recorded owners");
    // umoci records the same owners for the same image. (It writes NoopID, "the unpacking
    // user's own", for a zero uid or gid where we write 0: the same owner, root, inside the
    // user namespace of a rootless container; both are valid rootlesscontainers values. It
    // makes an empty file for the device, without an xattr.)
    if let Some(umoci) = peer("umoci") {
        ok(
            Command::new(umoci).current_dir(dir).args([
                "raw",
                "unpack",
                "--rootless",
                "--image",
                "store:x",
                "umoci-root",
            ]),
            b"",
        );
        let theirs = rootless_owners(&dir.join("umoci-root"));
        assert_eq!(theirs, expected, "umoci --rootless");
        // Byte for byte where neither id is 0.
        let raw =
            |root: &str| xattr::get(dir.join(root).join("etc/motd"), "user.rootlesscontainers").unwrap();
        assert_eq!(raw("out/root"), raw("umoci-root"));
        assert_eq!(raw("out/root"), Some(vec![0x08, 0xe8, 0x07, 0x10, 0xe8, 0x07]));
    }
}

/// The owners recorded in `user.rootlesscontainers` under `root`, decoded: protobuf
/// `Resource { uint32 uid = 1; uint32 gid = 2; }`, an absent field being 0 and NoopID
/// (u32::MAX, umoci's "no change") the unpacking user, which is root in the container.
fn rootless_owners(root: &Path) -> std::collections::BTreeMap<String, (u32, u32)> {
    let mut out = std::collections::BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let p = e.unwrap().into_path();
        let Some(v) = xattr::get(&p, "user.rootlesscontainers").unwrap() else {
            continue;
        };
        let (mut ids, mut i) = ([0u32; 2], 0);
        while i < v.len() {
            let field = match v[i] {
                0x08 => 0,
                0x10 => 1,
                b => panic!("{}: unexpected protobuf key {b:#x} in {v:x?}", p.display()),
            };
            i += 1;
            let (mut n, mut shift) = (0u64, 0);
            loop {
                let b = v[i];
                i += 1;
                n |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let id = u32::try_from(n).unwrap_or_else(|_| panic!("{}: id {n} out of range", p.display()));
            ids[field] = if id == u32::MAX { 0 } else { id };
        }
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        out.insert(rel, (ids[0], ids[1]));
    }
    out
}

#[test]
fn layers_kept_in_blob_files_stack_without_a_layout() {
    let t = tempdir();
    let blob = t.path().join("layer.tar.gz");
    let d = ok(
        tool("layer-pack").arg("-o").arg(&blob),
        &layer(&[E::File("from-file", b"content")]),
    );
    std::fs::write(t.path().join("layer.json"), &d).unwrap();
    let tar = ok(
        stack()
            .current_dir(t.path())
            .args(["--layer", "layer.json", "--tar"]),
        b"",
    );
    assert_eq!(entries(&tar), vec![row("from-file", "file", "content")]);
    sh_in(t.path(), "image-stack --layer layer.json --rootfs out/");
    assert_eq!(std::fs::read(t.path().join("out/from-file")).unwrap(), b"content");
    // The blob file is verified as it is read.
    corrupt_file(&blob);
    let err = fails(
        stack()
            .current_dir(t.path())
            .args(["--layer", "layer.json", "--tar"]),
        b"",
    );
    assert!(err.contains(json_of(&d)["digest"].as_str().unwrap()), "{err}");
}

/// `--tag` records the `--from` image it extends as image-spec's base annotations (its
/// manifest digest, and the REF it was named by, without the layout's path); nothing from
/// scratch, with --drop, or by digest for the name. `-a` is `--author`. A commit of `-c`
/// changes alone records the instructions as its created_by (BuildKit's form), unless
/// --created-by says otherwise; a layer commit or a message alone records none.
#[test]
fn tag_records_the_base_and_config_only_commits_their_instructions() {
    let t = tempdir();
    let store = t.path().join("store");
    let a = pack(&store, &layer(&[E::File("a", b"a")]));
    commit(&store, None, &a, "store:base", &["-a", "Ann <ann@example.org>"]);
    let (m, cfg) = image(&store, "base");
    assert_eq!(m.get("annotations"), None, "from scratch: no base");
    assert_eq!(cfg["author"], json!("Ann <ann@example.org>"));
    assert_eq!(cfg["history"][0]["author"], json!("Ann <ann@example.org>"));
    assert_eq!(cfg["history"][0].get("created_by"), None);

    let b = pack(&store, &layer(&[E::File("b", b"b")]));
    commit(&store, Some("store:base"), &b, "store:web:v1", &[]);
    let (m, _) = image(&store, "web:v1");
    assert_eq!(
        m["annotations"],
        json!({"org.opencontainers.image.base.digest": tagged_digest(&store, "base"),
               "org.opencontainers.image.base.name": "base"})
    );
    // By digest: the digest only. With --drop: nothing (it does not extend its --from).
    let by_digest = format!("store@{}", tagged_digest(&store, "web:v1"));
    commit(
        &store,
        Some(&by_digest),
        b"",
        "store:cmd",
        &["-c", "CMD [\"node\",\"app.js\"]"],
    );
    let (m, cfg) = image(&store, "cmd");
    assert_eq!(
        m["annotations"],
        json!({"org.opencontainers.image.base.digest": tagged_digest(&store, "web:v1")})
    );
    let last = cfg["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["created_by"], &last["empty_layer"]),
        (&json!("CMD [\"node\",\"app.js\"]"), &json!(true))
    );
    commit(
        &store,
        Some("store:cmd"),
        b"",
        "store:two",
        &["-c", "EXPOSE 80", "-c", "ENV A=1 \\\n  B=2"],
    );
    let last = image(&store, "two").1["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["created_by"], json!("EXPOSE 80; ENV A=1   B=2"));
    commit(
        &store,
        Some("store:cmd"),
        b"",
        "store:said",
        &["-c", "USER www", "--created-by", "mine"],
    );
    let last = image(&store, "said").1["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["created_by"], json!("mine"));
    commit(
        &store,
        Some("store:cmd"),
        b"",
        "store:msg",
        &["-m", "just a message"],
    );
    let last = image(&store, "msg").1["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last.get("created_by"), None);
    commit(
        &store,
        Some("store:web:v1"),
        b"",
        "store:dropped",
        &["--drop", "1"],
    );
    assert_eq!(image(&store, "dropped").0.get("annotations"), None);
}

// ---- --rebase, --squash-above, --squash -------------------------------------------------

/// Adds annotations to the manifest of `tag` (a new manifest blob, the tag moved to it), as
/// an image-stack that records its --from would have written them.
fn annotate(store: &Path, tag: &str, annotations: Value) {
    let (mut manifest, _) = image(store, tag);
    manifest["annotations"] = annotations;
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let (digest, size) = put_blob(store, &bytes);
    let mut idx = index(store);
    for m in idx["manifests"].as_array_mut().unwrap() {
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag {
            m["digest"] = json!(digest);
            m["size"] = json!(size);
        }
    }
    std::fs::write(store.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
}

/// The layer digests of a tagged image's manifest.
fn layer_digests(store: &Path, tag: &str) -> Vec<String> {
    image(store, tag).0["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Unpacks an image with --rootfs into `dir` and describes the tree.
fn unpacked(dir: &Path, image: &str, into: &str) -> String {
    ok(
        stack().current_dir(dir).args(["--from", image, "--rootfs", into]),
        b"",
    );
    snapshot(&dir.join(into))
}

/// Two bases that differ (in /etc/os, a file only one has, JAVA_HOME, a label) and an app on
/// v1: two layers made by layer-diff from v1's tree (a file added, one changed, one removed),
/// with config changes; and the same two layers committed on v2 directly, as `direct:v2`.
fn bases_and_app(dir: &Path) {
    let store = dir.join("store");
    for (v, java) in [("v1", "/usr/lib/jvm/java-11"), ("v2", "/usr/lib/jvm/java-17")] {
        let root = dir.join(format!("base-{v}"));
        file(
            &root,
            "etc/os",
            format!("debian {v}\n").as_bytes(),
            0o644,
            1_600_000_000,
        );
        file(
            &root,
            &format!("etc/only-{v}"),
            v.as_bytes(),
            0o644,
            1_600_000_000,
        );
        file(&root, "etc/motd", b"welcome\n", 0o644, 1_600_000_000);
        file(&root, "usr/lib/libold.so", b"old library", 0o755, 1_600_000_000);
        for d in ["etc", "usr/lib", "usr"] {
            mtime(&root, d, 1_600_000_000);
        }
        sh_in(
            dir,
            &format!(
                "layer-pack --layout store base-{v}/ | SOURCE_DATE_EPOCH={SDE} image-stack --layer - \
                 --tag store:base:{v} --created-by debootstrap \
                 -c 'ENV JAVA_HOME={java} PATH=/usr/bin:/bin LANG=C' -c 'LABEL base={v}' -c 'CMD [\"sh\"]'"
            ),
        );
    }
    sh_in(dir, "image-stack --from store:base:v1 --rootfs app/");
    let app = dir.join("app");
    file(&app, "srv/index.html", b"<h1>hello</h1>\n", 0o644, 1_700_000_000);
    file(&app, "etc/motd", b"welcome to the app\n", 0o644, 1_700_000_000);
    std::fs::remove_file(app.join("usr/lib/libold.so")).unwrap();
    sh_in(
        dir,
        "layer-diff store:base:v1 app/ | layer-pack --layout store > one.json \
         && cp -a app app2 && echo 'app config' > app2/srv/app.conf \
         && layer-diff app/ app2/ | layer-pack --layout store > two.json",
    );
    for (from, tag) in [
        ("store:base:v1", "store:app:v1"),
        ("store:base:v2", "store:direct:v2"),
    ] {
        commit(
            &store,
            Some(from),
            &std::fs::read(dir.join("one.json")).unwrap(),
            tag,
            &[
                "-m",
                "Add site",
                "--created-by",
                "COPY site /srv",
                "-c",
                "ENV APP=1",
            ],
        );
        commit(
            &store,
            Some(tag),
            &std::fs::read(dir.join("two.json")).unwrap(),
            tag,
            &["-m", "Configure", "-c", "CMD [\"httpd\"]"],
        );
    }
}

/// Every layer blob of the layout that the traced run read (read or pread on it).
fn layer_blobs_read(trace: &str, store: &Path, tags: &[&str]) -> Vec<String> {
    let hexes: Vec<String> = tags
        .iter()
        .flat_map(|t| layer_digests(store, t))
        .map(|d| d[7..].to_string())
        .collect();
    trace
        .lines()
        .filter(|l| l.contains(" read(") || l.contains(" pread64(") || l.contains(" readv("))
        .filter_map(|l| hexes.iter().find(|h| l.contains(h.as_str())).cloned())
        .collect()
}

#[test]
fn rebase_gives_the_new_base_plus_the_apps_changes_and_reads_no_layer() {
    let t = tempdir();
    let dir = t.path();
    let store = dir.join("store");
    // app:v1 is two commits on base:v1: it records its first commit as its base, and the old
    // base is found by following those records down to an image of NEWBASE's repository.
    bases_and_app(dir);
    let Some(strace) = peer("strace") else { return };
    let out = run(
        Command::new(strace)
            .current_dir(dir)
            .env("SOURCE_DATE_EPOCH", SDE)
            .args(["-f", "-y", "-e", "trace=read,pread64,readv", "-o", "trace.txt"])
            .arg(bin_dir().join("image-stack"))
            .args([
                "--from",
                "store:app:v1",
                "--rebase",
                "store:base:v2",
                "--tag",
                "store:app:v2",
            ]),
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let trace = std::fs::read_to_string(dir.join("trace.txt")).unwrap();
    assert_eq!(
        layer_blobs_read(&trace, &store, &["app:v1", "base:v1", "base:v2"]),
        Vec::<String>::new(),
        "a rebase reads no layer"
    );
    assert!(
        trace.contains(&tagged_digest(&store, "app:v1")[7..]),
        "the trace sees the blobs read"
    );
    // The JAVA_HOME trap (go-containerregistry#730), said: the app inherited the old base's.
    let warned: Vec<&str> = err.lines().collect();
    assert!(
        warned
            .iter()
            .any(|l| l.starts_with("image-stack: warning: Env JAVA_HOME: ")
                && l.contains("java-11")
                && l.contains("java-17")
                && l.contains("inherited")),
        "{err}"
    );
    assert!(warned.iter().any(|l| l.contains("Labels base")), "{err}");

    // The tree: v2's plus the app's changes, as the same layers committed on v2 directly.
    let direct = unpacked(dir, "store:direct:v2", "direct");
    assert_eq!(unpacked(dir, "store:app:v2", "rebased"), direct);
    for (path, want) in [
        ("rebased/etc/os", Some("debian v2\n")),
        ("rebased/etc/only-v2", Some("v2")),
        ("rebased/etc/only-v1", None),
        ("rebased/etc/motd", Some("welcome to the app\n")),
        ("rebased/srv/app.conf", Some("app config\n")),
        ("rebased/usr/lib/libold.so", None),
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.join(path)).ok().as_deref(),
            want,
            "{path}"
        );
    }

    // The manifest: v2's layers then the app's own, the same blobs; v2 recorded as the base.
    let (manifest, config) = image(&store, "app:v2");
    let (v2, app) = (layer_digests(&store, "base:v2"), layer_digests(&store, "app:v1"));
    assert_eq!(layer_digests(&store, "app:v2"), [&v2[..], &app[1..]].concat());
    assert_eq!(
        manifest["annotations"],
        json!({"org.opencontainers.image.base.digest": tagged_digest(&store, "base:v2"),
               "org.opencontainers.image.base.name": "base:v2"})
    );
    // The config: v2's, with the app's own changes (ENV APP, CMD) and its history above v2's.
    let (_, app_config) = image(&store, "app:v1");
    let (_, v2_config) = image(&store, "base:v2");
    assert_eq!(
        config["config"]["Env"],
        json!([
            "JAVA_HOME=/usr/lib/jvm/java-17",
            "PATH=/usr/bin:/bin",
            "LANG=C",
            "APP=1"
        ])
    );
    assert_eq!(config["config"]["Cmd"], json!(["httpd"]));
    assert_eq!(config["config"]["Labels"], json!({"base": "v2"}));
    let history = config["history"].as_array().unwrap();
    let v2_history = v2_config["history"].as_array().unwrap();
    assert_eq!(history[..v2_history.len()], v2_history[..]);
    assert_eq!(
        history[v2_history.len()..],
        app_config["history"].as_array().unwrap()[1..]
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        history.len()
    );

    // --old-base names the base when the manifest does not: the same image.
    let old_base = ok(
        stack().current_dir(dir).env("SOURCE_DATE_EPOCH", SDE).args([
            "--from",
            "store:direct:v2",
            "--rebase",
            "store:base:v1",
            "--old-base",
            "store:base:v2",
            "--tag",
            "store:back:v1",
        ]),
        b"",
    );
    assert_eq!(
        unpacked(dir, "store:back:v1", "back"),
        unpacked(dir, "store:app:v1", "app-again")
    );
    assert_eq!(
        json_of(&old_base)["digest"].as_str().unwrap(),
        tagged_digest(&store, "back:v1")
    );
}

#[test]
fn rebase_dry_run_lists_the_new_layers_and_writes_nothing() {
    let t = tempdir();
    let dir = t.path();
    let store = dir.join("store");
    bases_and_app(dir);
    let before = layout_state(&store);
    let out = ok(
        stack().current_dir(dir).args([
            "--from",
            "store:app:v1",
            "--rebase",
            "store:base:v2",
            "--old-base",
            "store:base:v1",
            "--dry-run",
            "--tag",
            "store:app:v2",
        ]),
        b"",
    );
    assert_eq!(layout_state(&store), before, "a dry run writes nothing");
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| json_of(l.as_bytes()))
        .collect();
    let (v2, app) = (layer_digests(&store, "base:v2"), layer_digests(&store, "app:v1"));
    let (_, app_config) = image(&store, "app:v1");
    let shown: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().into(),
                l["diffID"].as_str().unwrap().into(),
                l["origin"].as_str().unwrap().into(),
            )
        })
        .collect();
    let app_diff_ids = app_config["rootfs"]["diff_ids"].as_array().unwrap();
    let (_, v2_config) = image(&store, "base:v2");
    assert_eq!(
        shown,
        [
            (
                v2[0].clone(),
                v2_config["rootfs"]["diff_ids"][0].as_str().unwrap().to_string(),
                "base".to_string()
            ),
            (
                app[1].clone(),
                app_diff_ids[1].as_str().unwrap().to_string(),
                "image".to_string()
            ),
            (
                app[2].clone(),
                app_diff_ids[2].as_str().unwrap().to_string(),
                "image".to_string()
            ),
        ]
    );
}

#[test]
fn rebase_refuses_a_base_that_is_not_the_images_and_bad_names_in_one_line() {
    let t = tempdir();
    let dir = t.path();
    let store = dir.join("store");
    bases_and_app(dir);
    let before = layout_state(&store);
    let rebase = |args: &[&str]| {
        let mut c = stack();
        c.current_dir(dir)
            .args(["--from", "store:app:v1", "--tag", "store:app:v2"])
            .args(args);
        fails(&mut c, b"")
    };
    // v2 is not what app:v1 is built on: its diffIDs are not the first of the app's.
    let err = rebase(&["--rebase", "store:base:v1", "--old-base", "store:base:v2"]);
    assert!(err.contains("is not built on store:base:v2"), "{err}");
    // An unknown base, old or new.
    let err = rebase(&["--rebase", "store:base:v9", "--old-base", "store:base:v1"]);
    assert!(err.contains("--rebase store:base:v9"), "{err}");
    let err = rebase(&["--rebase", "store:base:v2", "--old-base", "nowhere:base"]);
    assert!(err.contains("--old-base nowhere:base"), "{err}");
    assert_eq!(layout_state(&store), before);
    // app:v1 was committed on its first commit, itself on base:v1; a NEWBASE of another
    // repository says neither is its base: refused, naming both, not rebased from the nearest
    // (which would leave the first commit behind).
    sh_in(
        dir,
        "image-stack --from store:base:v2 --tag store:other:v2 >/dev/null",
    );
    let before = layout_state(&store);
    let err = rebase(&["--rebase", "store:other:v2"]);
    assert!(
        err.contains("committed on 2 images in turn")
            && err.contains("base:v1")
            && err.contains("--old-base"),
        "{err}"
    );
    assert_eq!(layout_state(&store), before);
    // No base recorded and none named: app:v1 without its top layer (--drop records no base).
    sh_in(
        dir,
        "image-stack --from store:app:v1 --drop 1 --tag store:app:dropped >/dev/null",
    );
    let before = layout_state(&store);
    let err = fails(
        stack().current_dir(dir).args([
            "--from",
            "store:app:dropped",
            "--tag",
            "store:app:v2",
            "--rebase",
            "store:base:v2",
        ]),
        b"",
    );
    assert!(err.contains("--old-base"), "{err}");
    assert_eq!(layout_state(&store), before);
    // A recorded base that is not in the layout.
    let missing = format!("sha256:{}", "ab".repeat(32));
    annotate(
        &store,
        "app:v1",
        json!({"org.opencontainers.image.base.digest": missing, "org.opencontainers.image.base.name": "debian:12"}),
    );
    let before = layout_state(&store);
    let err = rebase(&["--rebase", "store:base:v2"]);
    assert!(err.contains(&missing) && err.contains("debian:12"), "{err}");
    // Arguments: a rebase is a commit of its own, and needs --from and --tag.
    for args in [
        &[
            "--rebase",
            "store:base:v2",
            "--old-base",
            "store:base:v1",
            "-m",
            "x",
        ][..],
        &[
            "--rebase",
            "store:base:v2",
            "--old-base",
            "store:base:v1",
            "--layer",
            "-",
        ],
        &["--rebase", "store:base:v2", "--squash", "1"],
        &["--old-base", "store:base:v1"],
        &["--dry-run"],
    ] {
        rebase(args);
    }
    fails(
        stack()
            .current_dir(dir)
            .args(["--rebase", "store:base:v2", "--tag", "store:x"]),
        b"",
    );
    assert_eq!(layout_state(&store), before);
}

/// A base of two layers (one with a hard-linked pair) and an app of three more on it: hard
/// links whose target is removed (crane #977) or overwritten (crane #2002) later, a new name
/// for a linked base file, whiteouts of base files, an opaque directory.
fn squash_fixture(store: &Path) {
    let base = [
        layer(&[
            E::Dir("etc/"),
            E::File("etc/os", b"debian"),
            E::File("etc/t", b"linked in the base"),
            E::Link("etc/h", "etc/t"),
        ]),
        layer(&[
            E::Dir("usr/"),
            E::File("usr/gone", b"removed above"),
            E::Dir("var/"),
            E::File("var/old", b"old"),
        ]),
    ];
    let app = [
        layer(&[
            E::Dir("app/"),
            E::File("app/f", b"target of g"),
            E::Link("app/g", "app/f"),
            E::File("app/x", b"x before"),
            E::Link("app/y", "app/x"),
            E::Link("etc/c", "etc/t"),
        ]),
        layer(&[
            E::File("app/.wh.f", b""),
            E::File("app/x", b"x after"),
            E::File("usr/.wh.gone", b""),
            E::File("var/.wh..wh..opq", b""),
            E::File("var/new", b"new"),
        ]),
        layer(&[
            E::Dir("srv/"),
            E::File("srv/index.html", b"<h1>hi</h1>"),
            E::File("etc/os", b"debian, patched"),
        ]),
    ];
    image_of_layers(store, "base", &base);
    image_of_layers(store, "app", &[&base[..], &app[..]].concat());
}

#[test]
fn squash_above_keeps_the_base_layers_and_gives_the_same_tree() {
    let t = tempdir();
    let dir = t.path();
    let store = dir.join("store");
    squash_fixture(&store);
    let printed = ok(
        stack().current_dir(dir).env("SOURCE_DATE_EPOCH", SDE).args([
            "--from",
            "store:app",
            "--squash-above",
            "store:base",
            "--tag",
            "store:app:squashed",
        ]),
        b"",
    );
    assert_eq!(
        json_of(&printed)["digest"].as_str().unwrap(),
        tagged_digest(&store, "app:squashed")
    );
    let (base, app, squashed) = (
        layer_digests(&store, "base"),
        layer_digests(&store, "app"),
        layer_digests(&store, "app:squashed"),
    );
    assert_eq!(squashed.len(), 3);
    assert_eq!(squashed[..2], base[..], "the base's blobs, shared");
    assert!(!app.contains(&squashed[2]));
    // The squashed layer records docker's SIZE of it, so that its history reads no blob: as
    // GNU tar lists the layer, regular files by their length, symlinks by their target's,
    // hard links and whiteouts nothing.
    let listing = String::from_utf8(sh(&format!(
        "tar --numeric-owner -tvzf {}",
        store.join("blobs/sha256").join(&squashed[2][7..]).display()
    )))
    .unwrap();
    let mut content = 0;
    for l in listing.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let name = f[5].rsplit('/').find(|n| !n.is_empty()).unwrap();
        match l.as_bytes()[0] {
            _ if name.starts_with(".wh.") => {}
            b'-' => content += f[2].parse::<u64>().unwrap(),
            b'l' => content += f[7].len() as u64,
            _ => {}
        }
    }
    assert!(content > 0, "{listing}");
    assert_eq!(
        image(&store, "app:squashed").0["layers"][2]["annotations"]["dev.layerkit.content-size"],
        json!(content.to_string()),
        "{listing}"
    );

    // The same union, and the links right, compared with the tar written by hand.
    assert!(
        flat(&store, "store:app:squashed") == flat(&store, "store:app"),
        "the same union"
    );
    assert_eq!(
        entries(&flat(&store, "store:app:squashed")),
        vec![
            row("app/", "dir", ""),
            row("app/g", "file", "target of g"),
            row("app/x", "file", "x after"),
            row("app/y", "file", "x before"),
            row("etc/", "dir", ""),
            row("etc/c", "file", "linked in the base"),
            row("etc/h", "link", "etc/c"),
            row("etc/os", "file", "debian, patched"),
            row("etc/t", "link", "etc/c"),
            row("srv/", "dir", ""),
            row("srv/index.html", "file", "<h1>hi</h1>"),
            row("usr/", "dir", ""),
            row("var/", "dir", ""),
            row("var/new", "file", "new"),
        ]
    );
    assert_eq!(
        unpacked(dir, "store:app:squashed", "squashed"),
        unpacked(dir, "store:app", "original")
    );
    // GNU tar applies the base layers and the squashed one to the same tree too (it knows no
    // whiteouts: the squashed layer's are removed by hand, as an applier would).
    let gnu = dir.join("gnu");
    std::fs::create_dir(&gnu).unwrap();
    for digest in &squashed {
        ok(
            Command::new("tar")
                .arg("-xzf")
                .arg(store.join("blobs/sha256").join(&digest[7..]))
                .arg("-C")
                .arg(&gnu),
            b"",
        );
        for e in walkdir::WalkDir::new(&gnu).into_iter().map(Result::unwrap) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".wh..wh..opq" {
                for sibling in std::fs::read_dir(e.path().parent().unwrap()).unwrap() {
                    let sibling = sibling.unwrap().path();
                    if sibling.file_name().unwrap() != "new" {
                        let _ = std::fs::remove_file(&sibling);
                    }
                }
            } else if let Some(target) = name.strip_prefix(".wh.") {
                let _ = std::fs::remove_file(e.path().with_file_name(target));
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    assert_eq!(
        std::fs::read_to_string(gnu.join("etc/c")).unwrap(),
        "linked in the base"
    );
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| std::fs::metadata(gnu.join(p)).unwrap().ino();
    assert!(ino("etc/c") == ino("etc/h") && ino("etc/h") == ino("etc/t"));
    assert!(!gnu.join("usr/gone").exists() && !gnu.join("var/old").exists());

    // The history: the base's entries, then one naming the squashed steps.
    let (_, config) = image(&store, "app:squashed");
    let (_, base_config) = image(&store, "base");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history[..2], base_config["history"].as_array().unwrap()[..]);
    assert_eq!(history.len(), 3);
    assert_eq!(
        history[2]["comment"],
        "3 layers and 3 history entries squashed into one layer"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap()[..2],
        base_config["rootfs"]["diff_ids"].as_array().unwrap()[..]
    );
    assert_eq!(
        image(&store, "app:squashed").0["annotations"]["org.opencontainers.image.base.digest"],
        tagged_digest(&store, "base")
    );
}

#[test]
fn a_squashed_layer_is_what_layer_pack_makes_of_its_tar_and_is_reproducible() {
    let t = tempdir();
    let dir = t.path();
    let store = dir.join("store");
    squash_fixture(&store);
    let squash = |tag: &str| {
        ok(
            stack().current_dir(dir).env("SOURCE_DATE_EPOCH", SDE).args([
                "--from",
                "store:app",
                "--squash",
                "3",
                "--tag",
                tag,
                "--created-by",
                "squash",
                "-m",
                "one layer",
            ]),
            b"",
        )
    };
    let first = squash("store:a");
    assert_eq!(json_of(&first)["digest"], json_of(&squash("store:b"))["digest"]);
    let top = layer_digests(&store, "a")[2].clone();
    let (manifest, config) = image(&store, "a");
    assert_eq!(
        manifest["layers"][2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // gunzip | layer-pack gives the same blob: the same compression as layer-pack's default.
    let tar = sh_in(dir, &format!("gzip -dc store/blobs/sha256/{}", &top[7..]));
    let repacked = json_of(&ok(
        tool("layer-pack").arg("--layout").arg(dir.join("other")),
        &tar,
    ));
    assert_eq!(repacked["digest"], json!(top));
    assert_eq!(repacked["diffID"], config["rootfs"]["diff_ids"][2]);
    let entry = &config["history"][2];
    assert_eq!(
        (&entry["created_by"], &entry["comment"]),
        (&json!("squash"), &json!("one layer"))
    );
    assert!(
        flat(&store, "store:a") == flat(&store, "store:app"),
        "the same union"
    );
}

/// `--squash N`'s one history entry lists the squashed steps' `created_by` in order, joined
/// by `; ` (steps without one, such as a `-m`-only commit, left out), and its comment counts
/// them (docs/CLI.md).
#[test]
fn squash_history_lists_the_squashed_steps() {
    let t = tempdir();
    let dir = t.path();
    for (name, content) in [("a", "1"), ("b", "2"), ("c", "3")] {
        file(
            dir,
            &format!("{name}/{name}"),
            content.as_bytes(),
            0o644,
            1_700_000_000,
        );
    }
    sh_in(
        dir,
        "set -e
         layer-pack -q --layout store a/ | image-stack -q --layer - --tag store:app --created-by 'FROM scratch' >/dev/null
         layer-pack -q --layout store b/ | image-stack -q --from store:app --layer - --tag store:app --created-by 'RUN make b' >/dev/null
         layer-pack -q --layout store c/ | image-stack -q --from store:app --layer - --tag store:app -m 'c, by hand' >/dev/null
         image-stack -q --from store:app -c 'ENV X=1' --tag store:app --created-by 'ENV X=1' >/dev/null
         image-stack -q --from store:app --squash 2 --tag store:app:squashed >/dev/null",
    );
    let store = dir.join("store");
    let (_, config) = image(&store, "app:squashed");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["created_by"], "FROM scratch");
    assert_eq!(history[1]["created_by"], "RUN make b; ENV X=1");
    assert_eq!(
        history[1]["comment"],
        "2 layers and 3 history entries squashed into one layer"
    );
}

#[test]
fn squash_refuses_what_it_cannot_squash_in_one_line() {
    let t = tempdir();
    let dir = t.path();
    let store = dir.join("store");
    squash_fixture(&store);
    image_of_layers(&store, "other", &[layer(&[E::File("x", b"x")])]);
    let before = layout_state(&store);
    for (args, says) in [
        (&["--squash", "0"][..], "--squash 0"),
        (&["--squash", "6"], "5 layers"),
        (&["--squash-above", "store:other"], "is not built on store:other"),
        (&["--squash-above", "store:app"], "no layer above"),
        (&["--squash-above", "store:nope"], "nope"),
        (
            &["--squash", "1", "--compress", "zstd", "--level", "99"],
            "--level 99",
        ),
    ] {
        let err = fails(
            stack()
                .current_dir(dir)
                .args(["--from", "store:app", "--tag", "store:x"])
                .args(args),
            b"",
        );
        assert!(err.contains(says), "{args:?}: {err}");
    }
    for args in [
        &["--from", "store:app", "--squash", "1", "--tar"][..],
        &[
            "--from",
            "store:app",
            "--squash",
            "1",
            "-c",
            "CMD x",
            "--tag",
            "store:x",
        ],
        &["--squash", "1", "--tag", "store:x"],
        &["--from", "store:app", "--compress", "zstd", "--tag", "store:x"],
    ] {
        fails(stack().current_dir(dir).args(args), b"");
    }
    assert_eq!(layout_state(&store), before);
}

#[test]
fn skopeo_and_umoci_read_rebased_and_squashed_images() {
    let (Some(skopeo), Some(umoci)) = (peer("skopeo"), peer("umoci")) else {
        return;
    };
    let t = tempdir();
    let dir = t.path();
    let store = dir.join("store");
    bases_and_app(dir);
    sh_in(
        dir,
        "image-stack --from store:app:v1 --rebase store:base:v2 --old-base store:base:v1 --tag store:app:v2 \
         && image-stack --from store:app:v2 --squash-above store:base:v2 --tag store:app:flat",
    );
    for tag in ["app:v2", "app:flat"] {
        let inspect = json_of(&ok(
            Command::new(&skopeo)
                .current_dir(dir)
                .args(["inspect", &format!("oci:store:{tag}")]),
            b"",
        ));
        assert_eq!(inspect["Layers"], json!(layer_digests(&store, tag)), "{tag}");
        assert!(
            inspect["Env"]
                .as_array()
                .unwrap()
                .contains(&json!("JAVA_HOME=/usr/lib/jvm/java-17")),
            "{tag}: {inspect}"
        );
        let bundle = format!("bundle-{}", tag.replace(':', "-"));
        ok(
            Command::new(&umoci).current_dir(dir).args([
                "unpack",
                "--image",
                &format!("store:{tag}"),
                &bundle,
            ]),
            b"",
        );
        assert_eq!(
            snapshot(&dir.join(&bundle).join("rootfs")),
            unpacked(
                dir,
                "store:direct:v2",
                &format!("direct-{}", tag.replace(':', "-"))
            ),
            "umoci unpack of {tag}"
        );
    }
}

/// `image-stack --from ../w/store:web:v3 --tag web:v1`, the layout forgotten, makes a new
/// layout `web/`: said on stderr in one line, so the mistake is seen at once. An existing
/// layout is not announced, nor anything with -q.
#[test]
fn a_layout_it_creates_is_said_on_stderr() {
    let t = tempdir();
    let store = t.path().join("store");
    let layer = pack(&store, &Tar::default().file("a", b"a").done());
    commit(&store, None, &layer, "store:base", &[]);
    let tag = |args: &[&str]| {
        let out = run(
            stack()
                .args(["--from", "store:base"])
                .args(args)
                .current_dir(t.path()),
            b"",
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    };
    assert_eq!(
        tag(&["--tag", "web:v1"]),
        "image-stack: created OCI layout web/\n"
    );
    assert!(t.path().join("web/oci-layout").is_file());
    assert_eq!(tag(&["--tag", "web:v2"]), "");
    assert_eq!(tag(&["--tag", "store:web:v1"]), "");
    assert_eq!(tag(&["-q", "--tag", "quiet:v1"]), "");
    assert!(t.path().join("quiet/oci-layout").is_file());
}
