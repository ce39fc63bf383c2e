//! End-to-end tests of image-ls, and of naming an image by its id (`LAYOUT@ID`) in every tool.
//! Expected values are worked out by hand here (tables, sizes from the files written) or read
//! from the layout's files directly; tests/docker.rs compares with the real `docker images`.

use crate::support::*;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The commits below are made at T0 + n * 600 s; "now" is an hour after T0.
const T0: u64 = 1_700_000_000;
const NOW: u64 = T0 + 3600;

fn ls(args: &[&str]) -> Command {
    let mut c = tool("image-ls");
    c.args(args).env("LAYERKIT_NOW", NOW.to_string());
    c
}

fn json_lines(out: Vec<u8>) -> Vec<Value> {
    text(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("JSON")
}

/// One commit of the fixture: its tree's name (and the commit message), the base, the tag,
/// the one file it adds and its length, extra image-stack arguments.
type Commit = (
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    usize,
    &'static [&'static str],
);

/// A layout made with the real tools: a base, web:v1 (also tagged latest), web:v2 moved by a
/// recommit (the first v2 dangles), a repository without a tag, and tmp:2 built on tmp:1,
/// whose tag is gone (an intermediate image).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture { dir: tempdir() };
        let commits: [Commit; 7] = [
            ("t1", None, "lk/base:1.0", "etc/os-release", 30, &[]),
            ("t2", Some("lk/base:1.0"), "lk/web:v1", "srv/app.js", 33, &[]),
            ("t3", Some("lk/web:v1"), "lk/web:v2", "srv/big", 1200, &[]),
            (
                "t4",
                Some("lk/web:v1"),
                "lk/web:v2",
                "srv/big2",
                1500,
                &["-c", "LABEL tier=front"],
            ),
            ("t5", Some("lk/base:1.0"), "localhost:5000/tools", "bin/t", 7, &[]),
            ("t6", Some("lk/base:1.0"), "tmp:1", "x", 5, &[]),
            ("t7", Some("tmp:1"), "tmp:2", "y", 6, &[]),
        ];
        for (n, (tree, from, tag, path, len, extra)) in commits.into_iter().enumerate() {
            let t = f.dir.path().join(tree);
            file(&t, path, &vec![b'x'; len], 0o644, 1_600_000_000);
            let mut stack = tool("image-stack");
            if let Some(from) = from {
                stack.arg("--from").arg(f.image(from));
            }
            let at = if n == 6 { T0 + 3060 } else { T0 + 600 * n as u64 };
            stack
                .args(["--layer", "-", "--tag"])
                .arg(f.image(tag))
                .args(extra)
                .args(["-m", tree])
                .env("SOURCE_DATE_EPOCH", at.to_string());
            let desc = ok(tool("layer-pack").arg("--layout").arg(f.store()).arg(&t), b"");
            ok(&mut stack, &desc);
            if tag == "lk/web:v1" {
                ok(
                    tool("image-stack").args([
                        "--from",
                        &f.image("lk/web:v1"),
                        "--tag",
                        &f.image("lk/web:latest"),
                    ]),
                    b"",
                );
            }
        }
        ok(tool("image-prune").arg(f.image("tmp:1")), b"");
        f
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.store().display())
    }

    fn blob(&self, digest: &str) -> PathBuf {
        self.store().join("blobs/sha256").join(&digest["sha256:".len()..])
    }

    /// Manifest digest by the comment (`-m`) of the image's last history entry: every image,
    /// tagged or not, from index.json.
    fn manifests(&self) -> BTreeMap<String, String> {
        read_json(&self.store().join("index.json"))["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|e| {
                let digest = e["digest"].as_str().expect("digest").to_string();
                let m = read_json(&self.blob(&digest));
                let c = read_json(&self.blob(m["config"]["digest"].as_str().expect("config")));
                let comment = c["history"].as_array().expect("history").last().expect("entry")["comment"]
                    .as_str()
                    .expect("comment")
                    .to_string();
                (comment, digest)
            })
            .collect()
    }

    /// Image id (config digest) by comment.
    fn ids(&self) -> BTreeMap<String, String> {
        self.manifests()
            .into_iter()
            .map(|(c, m)| {
                let id = read_json(&self.blob(&m))["config"]["digest"]
                    .as_str()
                    .expect("id")
                    .to_string();
                (c, id)
            })
            .collect()
    }

    /// The blob digests of an image: manifest, config, layers.
    fn blobs_of(&self, manifest: &str) -> Vec<String> {
        let m = read_json(&self.blob(manifest));
        let mut out = vec![
            manifest.to_string(),
            m["config"]["digest"].as_str().expect("c").to_string(),
        ];
        out.extend(
            m["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| l["digest"].as_str().expect("l").to_string()),
        );
        out
    }

    fn file_size(&self, digest: &str) -> u64 {
        std::fs::metadata(self.blob(digest)).expect("blob").len()
    }
}

fn short(id: &str) -> &str {
    &id[7..19]
}

/// The table, newest first, worked out by hand: sizes are the files' bytes summed over each
/// image's layers (30 for the base, 33 more for v1, 1,500 more for v2, …), ages from "now".
#[test]
fn lists_images_as_docker_images_does() {
    let f = Fixture::new();
    let id = f.ids();
    let store = f.store().display().to_string();
    let want = format!(
        "REPOSITORY             TAG       IMAGE ID       CREATED             SIZE\n\
         tmp                    2         {}   9 minutes ago       41B\n\
         localhost:5000/tools   <none>    {}   20 minutes ago      37B\n\
         lk/web                 v2        {}   30 minutes ago      1.56kB\n\
         <none>                 <none>    {}   40 minutes ago      1.26kB\n\
         lk/web                 latest    {}   50 minutes ago      63B\n\
         lk/web                 v1        {}   50 minutes ago      63B\n\
         lk/base                1.0       {}   About an hour ago   30B\n",
        short(&id["t7"]),
        short(&id["t5"]),
        short(&id["t4"]),
        short(&id["t3"]),
        short(&id["t2"]),
        short(&id["t2"]),
        short(&id["t1"]),
    );
    assert_eq!(text(ok(&mut ls(&[&store]), b"")), want);

    // -a: the intermediate tmp:1 too.
    let all = text(ok(&mut ls(&["-a", &store]), b""));
    let rows: Vec<&str> = all.lines().collect();
    assert_eq!(rows.len(), 9, "{all}");
    assert_eq!(
        rows[2],
        format!(
            "<none>                 <none>    {}   10 minutes ago      35B",
            short(&id["t6"])
        )
    );

    // -q: one id per row, an image of two tags twice; --no-trunc: full ids.
    let quiet = text(ok(&mut ls(&["-q", &store]), b""));
    let want_ids: Vec<&str> = ["t7", "t5", "t4", "t3", "t2", "t2", "t1"]
        .iter()
        .map(|t| short(&id[*t]))
        .collect();
    assert_eq!(quiet.lines().collect::<Vec<_>>(), want_ids);
    let full = text(ok(&mut ls(&["-q", "--no-trunc", &store]), b""));
    assert_eq!(full.lines().next(), Some(id["t7"].as_str()));
    let no_trunc = text(ok(&mut ls(&["--no-trunc", &store]), b""));
    assert!(
        no_trunc.lines().nth(1).expect("row").contains(&id["t7"]),
        "{no_trunc}"
    );

    // --digests: the manifest digest of each row.
    let digests = text(ok(&mut ls(&["--digests", &store]), b""));
    let m = f.manifests();
    let lines: Vec<&str> = digests.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY             TAG       DIGEST "),
        "{digests}"
    );
    for (row, comment) in lines[1..].iter().zip(["t7", "t5", "t4", "t3", "t2", "t2", "t1"]) {
        assert!(row.contains(&m[comment]), "{row} lacks {comment}'s manifest");
    }
}

#[test]
fn filters_as_docker_filters() {
    let f = Fixture::new();
    let id = f.ids();
    let store = f.store().display().to_string();
    let rows = |filters: &[&str], all: bool| -> Vec<String> {
        let mut args: Vec<String> = filters
            .iter()
            .flat_map(|x| ["-f".to_string(), x.to_string()])
            .collect();
        if all {
            args.push("-a".into());
        }
        args.push("--format".into());
        args.push("json".into());
        args.push(store.clone());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        json_lines(ok(&mut ls(&a), b""))
            .iter()
            .map(|r| {
                let comment = id.iter().find(|(_, i)| **i == r["id"]).expect("known id").0;
                format!(
                    "{}:{} {comment}",
                    r["repository"].as_str().unwrap_or("<none>"),
                    r["tag"].as_str().unwrap_or("<none>")
                )
            })
            .collect()
    };
    assert_eq!(rows(&["dangling=true"], false), ["<none>:<none> t3"]);
    assert_eq!(
        rows(&["dangling=true"], true),
        ["<none>:<none> t3"],
        "an intermediate image is no leaf"
    );
    assert_eq!(
        rows(&["dangling=false"], true),
        [
            "tmp:2 t7",
            "localhost:5000/tools:<none> t5",
            "lk/web:v2 t4",
            "lk/web:latest t2",
            "lk/web:v1 t2",
            "lk/base:1.0 t1"
        ]
    );
    assert_eq!(
        rows(&["reference=lk/*"], false),
        [
            "lk/web:v2 t4",
            "lk/web:latest t2",
            "lk/web:v1 t2",
            "lk/base:1.0 t1"
        ]
    );
    assert_eq!(
        rows(&["reference=lk/web:v*"], false),
        ["lk/web:v2 t4", "lk/web:v1 t2"]
    );
    assert_eq!(
        rows(&["reference=tmp", "reference=lk/base"], true),
        ["tmp:2 t7", "lk/base:1.0 t1"]
    );
    assert_eq!(rows(&["before=lk/web:v1"], false), ["lk/base:1.0 t1"]);
    assert_eq!(
        rows(&["since=lk/web:v1"], false),
        [
            "tmp:2 t7",
            "localhost:5000/tools:<none> t5",
            "lk/web:v2 t4",
            "<none>:<none> t3"
        ]
    );
    // By id too (a prefix, with or without sha256:).
    assert_eq!(
        rows(&[&format!("before={}", &id["t2"][7..13])], false),
        ["lk/base:1.0 t1"]
    );
    assert_eq!(
        rows(&[&format!("since=sha256:{}", &id["t5"][7..13])], true),
        ["tmp:2 t7", "<none>:<none> t6"]
    );
    assert_eq!(rows(&["label=tier"], false), ["lk/web:v2 t4"]);
    assert_eq!(rows(&["label=tier=front"], false), ["lk/web:v2 t4"]);
    assert!(rows(&["label=tier=back"], false).is_empty());
    assert!(rows(&["label=tier", "dangling=true"], false).is_empty());
}

/// JSON carries the content, tar and stored bytes, worked out from the files: the tars'
/// lengths by gzip, the blobs' lengths by stat.
#[test]
fn json_rows_carry_full_values() {
    let f = Fixture::new();
    let id = f.ids();
    let m = f.manifests();
    let rows = json_lines(ok(
        &mut ls(&["-a", "--format", "json", &f.store().display().to_string()]),
        b"",
    ));
    let v2 = rows.iter().find(|r| r["tag"] == json!("v2")).expect("v2");
    let blobs = f.blobs_of(&m["t4"]);
    let tar: u64 = blobs[2..]
        .iter()
        .map(|l| {
            let n = text(sh(&format!("gzip -dc '{}' | wc -c", f.blob(l).display())));
            n.trim().parse::<u64>().expect("count")
        })
        .sum();
    let stored: u64 = blobs.iter().map(|b| f.file_size(b)).sum();
    assert_eq!(
        v2,
        &json!({"repository": "lk/web", "tag": "v2", "id": id["t4"], "digest": m["t4"],
                "created": "2023-11-14T22:43:20Z", "size": 1563, "tarSize": tar,
                "storedSize": stored, "dangling": false, "intermediate": false, "parent": id["t2"]})
    );
    let tmp1 = rows.iter().find(|r| r["id"] == json!(id["t6"])).expect("tmp:1");
    assert_eq!((&tmp1["repository"], &tmp1["tag"]), (&Value::Null, &Value::Null));
    assert_eq!(
        (&tmp1["intermediate"], &tmp1["dangling"], &tmp1["size"]),
        (&json!(true), &json!(false), &json!(35))
    );
    let old = rows.iter().find(|r| r["id"] == json!(id["t3"])).expect("old v2");
    assert_eq!(
        (&old["intermediate"], &old["dangling"]),
        (&json!(false), &json!(true))
    );
    let base = rows.iter().find(|r| r["tag"] == json!("1.0")).expect("base");
    assert_eq!(base["parent"], Value::Null);
}

/// Our own images record their sizes: with every layer blob gone, the listing is the same.
#[test]
fn listing_our_images_opens_no_layer_blob() {
    let f = Fixture::new();
    let store = f.store().display().to_string();
    let before = text(ok(&mut ls(&["-a", &store]), b""));
    for manifest in f.manifests().values() {
        for layer in &f.blobs_of(manifest)[2..] {
            let _ = std::fs::remove_file(f.blob(layer));
        }
    }
    assert_eq!(text(ok(&mut ls(&["-a", &store]), b"")), before);
}

/// docker system df for the layout, worked out from the blob files: the dangling first v2's
/// own blobs (manifest, config, layer) and an old temporary file are what image-prune would
/// remove; a young orphan blob stays (a writer may be about to use it).
#[test]
fn disk_usage_as_docker_system_df() {
    let f = Fixture::new();
    let store = f.store().display().to_string();
    let m = f.manifests();
    let (orphan, _) = {
        let bytes = b"an orphan layer-pack just wrote";
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(f.store().join("blobs/sha256").join(&hex), bytes).expect("orphan");
        (format!("sha256:{hex}"), bytes.len())
    };
    let tmp = f.store().join(".layerkit-tmp-killed");
    std::fs::write(&tmp, b"half a blob").expect("tmp");
    let hour_ago = filetime::FileTime::from_unix_time(
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            - 3600) as i64,
        0,
    );
    filetime::set_file_mtime(&tmp, hour_ago).expect("age");

    let all_blobs: Vec<String> = {
        let mut v: Vec<String> = m.values().flat_map(|d| f.blobs_of(d)).collect();
        v.sort();
        v.dedup();
        v
    };
    let images_size: u64 = all_blobs.iter().map(|b| f.file_size(b)).sum();
    let mut dangling_own = f.blobs_of(&m["t3"]);
    dangling_own.retain(|b| {
        !m.iter()
            .filter(|(c, _)| *c != "t3")
            .any(|(_, o)| f.blobs_of(o).contains(b))
    });
    assert_eq!(dangling_own.len(), 3, "manifest, config and its own layer");
    let reclaimable: u64 = dangling_own.iter().map(|b| f.file_size(b)).sum();
    // One document (its two tables have rows of two shapes), on one line.
    let docs = json_lines(ok(&mut ls(&["--disk-usage", "--format", "json", &store]), b""));
    assert_eq!(
        docs,
        [json!({"types": [
            {"type": "Images", "total": 7, "active": 5, "size": images_size, "reclaimable": reclaimable},
            {"type": "Unreferenced blobs", "total": 1, "active": 1, "size": f.file_size(&orphan), "reclaimable": 0},
            {"type": "Temporary files", "total": 1, "active": 0, "size": 11, "reclaimable": 11},
            {"type": "Layer cache", "total": 0, "active": 0, "size": 0, "reclaimable": 0},
        ]})]
    );
    let table = text(ok(&mut ls(&["--disk-usage", &store]), b""));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "TYPE                 TOTAL     ACTIVE    SIZE      RECLAIMABLE"
    );
    assert!(
        lines[1].starts_with("Images               7         5         "),
        "{table}"
    );
    assert!(
        lines[1].ends_with(&format!(" ({}%)", reclaimable * 100 / images_size)),
        "{table}"
    );
    assert_eq!(
        lines[3],
        "Temporary files      1         0         11B       11B (100%)"
    );
    assert_eq!(lines[4], "Layer cache          0         0         0B        0B");

    // -v: one row per image; the base's layer is shared by all, its manifest and config are
    // its own.
    let docs = json_lines(ok(
        &mut ls(&["--disk-usage", "-v", "--format", "json", &store]),
        b"",
    ));
    assert_eq!(docs.len(), 1, "one document");
    assert_eq!(docs[0]["types"].as_array().expect("types").len(), 4);
    let rows = docs[0]["images"].as_array().expect("images").clone();
    let base = rows.iter().find(|r| r["tag"] == json!("1.0")).expect("base row");
    let b = f.blobs_of(&m["t1"]);
    let size: u64 = b.iter().map(|x| f.file_size(x)).sum();
    assert_eq!(
        (&base["size"], &base["sharedSize"], &base["uniqueSize"]),
        (
            &json!(size),
            &json!(f.file_size(&b[2])),
            &json!(size - f.file_size(&b[2]))
        )
    );
    assert_eq!(rows.len(), 7, "a row per image");
    let table = text(ok(&mut ls(&["--disk-usage", "-v", &store]), b""));
    assert!(
        table.contains("\nImages space usage:\n\nREPOSITORY             TAG       IMAGE ID       CREATED             SIZE      SHARED SIZE   UNIQUE SIZE\n"),
        "{table}"
    );
}

/// Bad input: one line, exit 2, the layout unchanged.
#[test]
fn bad_input_is_one_line_and_exit_2() {
    let f = Fixture::new();
    let store = f.store().display().to_string();
    let before = snapshot(&f.store());
    for (args, needle) in [
        (&["-f", "bogus=1"][..], "bogus=1"),
        (&["-f", "dangling=maybe"], "dangling=maybe"),
        (&["-f", "until=1h"], "until=1h"),
        (&["-f", "before=nope:1"], "nope:1"),
        (&["-f", "since=beefbeef"], "beefbeef"),
        (&["-f", "reference=["], "reference=["),
        (&["-v"], "--disk-usage"),
        // -q prints ids, --format json rows: together, one would be ignored.
        (&["-q", "--format", "json"], "--format json"),
    ] {
        let mut c = ls(args);
        c.arg(&store);
        let err = fails(&mut c, b"");
        assert!(
            err.starts_with("image-ls: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    let err = fails(&mut ls(&[&format!("{store}/nope")]), b"");
    assert!(err.contains("nope"), "{err}");
    assert_eq!(snapshot(&f.store()), before);
}

/// Two images whose ids start with the same 4 hex digits, written blob by blob (found by
/// trying configs that differ in one history entry).
fn ambiguous_pair(store: &Path) -> (String, String) {
    let config = |n: u32| {
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}, "history": [{"created_by": format!("n{n}"), "empty_layer": true}]}))
        .expect("json")
    };
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let (a, b) = (0..100_000)
        .find_map(|n| {
            let prefix = hex::encode(sha2::Sha256::digest(config(n)))[..4].to_string();
            seen.insert(prefix, n).map(|first| (first, n))
        })
        .expect("a collision among 100,000");
    let mut ids = Vec::new();
    let mut index = read_json(&store.join("index.json"));
    for n in [a, b] {
        let bytes = config(n);
        let hex = hex::encode(sha2::Sha256::digest(&bytes));
        std::fs::write(store.join("blobs/sha256").join(&hex), &bytes).expect("config");
        let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{hex}"), "size": bytes.len()},
            "layers": []}))
        .expect("json");
        let mhex = hex::encode(sha2::Sha256::digest(&manifest));
        std::fs::write(store.join("blobs/sha256").join(&mhex), &manifest).expect("manifest");
        index["manifests"].as_array_mut().expect("manifests").push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{mhex}"),
            "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": format!("amb:{n}")}}));
        ids.push(format!("sha256:{hex}"));
    }
    std::fs::write(
        store.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    (ids.remove(0), ids.remove(0))
}

/// LAYOUT@ID names an image by a unique prefix (4 hex digits or more, sha256: optional) of its
/// id or manifest digest in every tool that reads an IMAGE: `--from LAYOUT@ID --tag` is
/// `docker tag <id>` (the same manifest under a new tag), image-history, layer-diff and
/// image-prune take it. An ambiguous prefix is exit 2 listing the candidates; an unknown one
/// exit 2; neither changes the layout.
#[test]
fn an_image_by_a_prefix_of_its_id_in_every_tool() {
    let f = Fixture::new();
    let (id, m) = (f.ids(), f.manifests());
    let store = f.store().display().to_string();
    let v1 = &id["t2"][7..12];
    // docker tag 9977b web:rollback: the same manifest, byte for byte.
    let out: Value = serde_json::from_slice(&ok(
        tool("image-stack").args([
            "--from",
            &format!("{store}@{v1}"),
            "--tag",
            &format!("{store}:web:rollback"),
        ]),
        b"",
    ))
    .expect("descriptor");
    assert_eq!(out["digest"], json!(m["t2"]));
    // By a manifest digest prefix, with sha256:.
    let by_manifest = format!("{store}@sha256:{}", &m["t2"][7..13]);
    let history = text(ok(
        tool("image-history").args(["-q", "--no-trunc", &by_manifest]),
        b"",
    ));
    assert_eq!(history.lines().next(), Some(id["t2"].as_str()));
    // A full image id names its image too.
    let history = text(ok(
        tool("image-history").args(["-q", "--no-trunc", &format!("{store}@{}", id["t1"])]),
        b"",
    ));
    assert_eq!(history.lines().next(), Some(id["t1"].as_str()));
    let diff = text(ok(
        tool("layer-diff").args([
            "--list",
            &format!("{store}@{}", &id["t1"][7..11]),
            &format!("{store}@{v1}"),
        ]),
        b"",
    ));
    assert_eq!(diff, "A /srv\nA /srv/app.js\n");
    // The untagged intermediate tmp:1 by its id: history shows it (on tmp:2's row of tmp:1's
    // layer, as docker history shows an intermediate image's id), a rollback tags it again.
    let rows =
        String::from_utf8(ok(tool("image-history").arg(format!("{store}:tmp:2")), b"")).expect("UTF-8");
    let lines: Vec<&str> = rows.lines().collect();
    assert!(
        lines.len() == 4 && lines[2].starts_with(&id["t6"][7..19]),
        "tmp:1's id on its row: {rows}"
    );
    ok(
        tool("image-stack").args([
            "--from",
            &format!("{store}@{}", &id["t6"][7..15]),
            "--tag",
            &format!("{store}:tmp:1"),
        ]),
        b"",
    );
    let tagged = read_json(&f.store().join("index.json"))["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == json!("tmp:1"))
        .expect("tmp:1 tagged again")["digest"]
        .clone();
    assert_eq!(tagged, json!(m["t6"]));

    let (a, b) = ambiguous_pair(&f.store());
    let before = snapshot(&f.store());
    let prefix = &a[7..11];
    assert_eq!(prefix, &b[7..11]);
    for (tool_name, args) in [
        ("image-history", vec![format!("{store}@{prefix}")]),
        (
            "image-stack",
            vec![
                "--from".into(),
                format!("{store}@{prefix}"),
                "--tag".into(),
                format!("{store}:x"),
            ],
        ),
        ("image-prune", vec![format!("{store}@{prefix}")]),
        (
            "layer-diff",
            vec![
                "--list".into(),
                format!("{store}@{prefix}"),
                format!("{store}:tmp:2"),
            ],
        ),
        (
            "image-ls",
            vec!["-f".into(), format!("since={prefix}"), store.clone()],
        ),
    ] {
        let err = fails(tool(tool_name).args(&args), b"");
        assert!(
            err.contains("ambiguous") && err.contains(&a[7..19]) && err.contains(&b[7..19]),
            "{tool_name}: {err}"
        );
        let err = fails(
            tool(tool_name).args(args.iter().map(|a| a.replace(prefix, "fedcba98"))),
            b"",
        );
        assert!(err.contains("fedcba98"), "{tool_name}: {err}");
    }
    assert_eq!(snapshot(&f.store()), before);
    // Longer, the prefix is unique again.
    ok(tool("image-history").arg(format!("{store}@{}", &a[7..71])), b"");
}
