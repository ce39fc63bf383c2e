//! End-to-end tests of image-history: run the built binary on real trees in temp dirs.

use crate::support::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// "Now" for every table: 2023-11-14T22:15:20Z.
const NOW: &str = "2023-11-14T22:15:20Z";

fn history(args: &[&str]) -> Command {
    let mut c = tool("image-history");
    c.args(args).env("LAYERKIT_NOW", NOW);
    c
}

fn json_lines(out: Vec<u8>) -> Vec<Value> {
    text(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// A tar of regular files (name, size in bytes of 'x'): per file a header and the content padded
/// to 512, then two zero blocks. Names starting with .wh. are whiteouts.
fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
    files
        .iter()
        .fold(Tar::default(), |t, (name, size)| t.file(name, &vec![b'x'; *size]))
        .done()
}

/// An OCI layout written by hand, byte by byte, so the tests control every field.
struct Store {
    root: PathBuf,
}

impl Store {
    fn new(root: &Path) -> Store {
        std::fs::create_dir_all(root.join("blobs/sha256")).expect("mkdir");
        std::fs::write(root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
        std::fs::write(root.join("index.json"), br#"{"schemaVersion":2,"manifests":[]}"#).expect("write");
        Store {
            root: root.to_path_buf(),
        }
    }

    fn blob(&self, bytes: &[u8]) -> Value {
        let digest = sha256(bytes);
        std::fs::write(self.root.join("blobs/sha256").join(&digest[7..]), bytes).expect("blob");
        json!({"digest": digest, "size": bytes.len()})
    }

    /// Writes an image: gzip layers (with our content-size and uncompressed-size annotations
    /// saying `recorded` when given, true or not; without them, as umoci and skopeo write
    /// them), a config with `history`, a manifest tagged `tag`. Returns the config digest.
    fn image(&self, tag: &str, layers: &[Vec<u8>], history: Value, recorded: Option<(u64, u64)>) -> String {
        let annotations = recorded.map(|(content, tar)| {
            json!({"dev.layerkit.content-size": content.to_string(),
                   "dev.layerkit.uncompressed-size": tar.to_string()})
        });
        self.image_annotated(tag, layers, history, annotations)
    }

    /// [`Store::image`] with these annotations on every layer.
    fn image_annotated(
        &self,
        tag: &str,
        layers: &[Vec<u8>],
        history: Value,
        annotations: Option<Value>,
    ) -> String {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for tar in layers {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(tar).expect("gzip");
            let mut d = self.blob(&gz.finish().expect("gzip"));
            d["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar+gzip");
            if let Some(a) = &annotations {
                d["annotations"] = a.clone();
            }
            descs.push(d);
            diff_ids.push(sha256(tar));
        }
        let mut config = json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}});
        if !history.is_null() {
            config["history"] = history;
        }
        let config = serde_json::to_vec(&config).expect("json");
        self.image_with_config(tag, &config, descs)
    }

    fn image_with_config(&self, tag: &str, config: &[u8], layers: Vec<Value>) -> String {
        let mut c = self.blob(config);
        c["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
        let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": c, "layers": layers});
        let mut m = self.blob(&serde_json::to_vec(&manifest).expect("json"));
        m["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
        m["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let path = self.root.join("index.json");
        let mut index: Value = serde_json::from_slice(&std::fs::read(&path).expect("index")).expect("json");
        index["manifests"].as_array_mut().expect("array").push(m);
        std::fs::write(&path, serde_json::to_vec(&index).expect("json")).expect("index");
        c["digest"].as_str().expect("digest").to_string()
    }
}

/// The config digest (docker's image id) of the image tagged `tag`, read from the layout.
fn config_of(layout: &Path, tag: &str) -> String {
    let blob = |digest: &str| -> Value {
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).expect("blob"))
            .expect("json")
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index")).expect("json");
    let entry = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == json!(tag))
        .expect("tagged");
    blob(entry["digest"].as_str().expect("digest"))["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string()
}

fn short(id: &str) -> &str {
    &id[7..19]
}

/// The base (2 rows, one of them an empty layer) and an image built on it (2 more rows).
fn base_and_app(dir: &Path) -> (Store, String, String) {
    let store = Store::new(&dir.join("store"));
    let base_history = json!([
        {"created": "2023-10-17T22:13:20Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
        {"created": "2023-10-17T22:13:20.5Z", "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true},
    ]);
    let l1 = tar_of(&[("a", 3000)]);
    let base = store.image("base", std::slice::from_ref(&l1), base_history.clone(), None);
    let mut app_history = base_history.as_array().expect("array").clone();
    app_history.push(json!({"created": "2023-11-14T22:13:20Z", "author": "me",
        "created_by": "/bin/sh -c set -eux;\tsavedAptMark=\"$(apt-mark showmanual)\" && apt-get update",
        "comment": "Add site"}));
    app_history.push(
        json!({"created": "2023-11-14T22:13:20Z", "created_by": "httpd-foreground", "empty_layer": true}),
    );
    let app = store.image("app", &[l1, tar_of(&[("b", 24_300)])], json!(app_history), None);
    (store, base, app)
}

/// The table, worked out by hand from docker's rules (its tabwriter: each column as wide as its
/// widest cell plus 3, at least 10; CREATED BY cut to 45 columns with `…`; SIZE the content in
/// 3 significant digits, 1000-based: the 24,300-byte file is 24.3kB, the 3,000-byte one 3kB).
/// tests/docker.rs compares the table with the real `docker history`.
#[test]
fn table_rows_ids_sizes_and_truncation() {
    let dir = tempdir();
    let (store, base, app) = base_and_app(dir.path());
    let image = format!("{}:app", store.root.display());
    let out = text(ok(&mut history(&[&image]), b""));
    let want = format!(
        "IMAGE          CREATED         CREATED BY                                      SIZE      COMMENT\n\
         {}   2 minutes ago   httpd-foreground                                0B        \n\
         <missing>      2 minutes ago   /bin/sh -c set -eux; savedAptMark=\"$(apt-mar…   24.3kB    Add site\n\
         {}   4 weeks ago     /bin/sh -c #(nop)  CMD [\"sh\"]                   0B        \n\
         <missing>      4 weeks ago     /bin/sh -c #(nop) ADD file:abc in /             3kB       \n",
        short(&app),
        short(&base)
    );
    assert_eq!(out, want);

    let quiet = text(ok(&mut history(&["-q", &image]), b""));
    assert_eq!(
        quiet,
        format!("{}\n<missing>\n{}\n<missing>\n", short(&app), short(&base))
    );
    let quiet_full = text(ok(&mut history(&["-q", "--no-trunc", &image]), b""));
    assert_eq!(quiet_full, format!("{app}\n<missing>\n{base}\n<missing>\n"));

    let raw = text(ok(&mut history(&["-H=false", "--no-trunc", &image]), b""));
    let lines: Vec<&str> = raw.lines().collect();
    assert!(lines[0].starts_with(&format!(
        "IMAGE{}CREATED AT             CREATED BY",
        " ".repeat(69)
    )));
    assert_eq!(
        lines[2],
        format!(
            "<missing>{}2023-11-14T22:13:20Z   /bin/sh -c set -eux; savedAptMark=\"$(apt-mark showmanual)\" && apt-get update   24300     Add site",
            " ".repeat(74 - 9)
        )
    );
    assert!(lines[1].starts_with(&format!("{app}   2023-11-14T22:13:20Z")));

    // The base on its own: its own id on top.
    let base_out = text(ok(
        &mut history(&[&format!("{}:base", store.root.display())]),
        b"",
    ));
    assert!(base_out.lines().nth(1).expect("row").starts_with(short(&base)));
}

#[test]
fn json_lines_carry_full_values() {
    let dir = tempdir();
    let (store, base, app) = base_and_app(dir.path());
    let rows = json_lines(ok(
        &mut history(&["--format", "json", &format!("{}:app", store.root.display())]),
        b"",
    ));
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["id"], json!(app));
    assert_eq!(rows[0]["emptyLayer"], json!(true));
    assert_eq!(rows[0]["digest"], Value::Null);
    assert_eq!(rows[1]["id"], Value::Null);
    assert_eq!(
        rows[1]["createdBy"],
        json!("/bin/sh -c set -eux;\tsavedAptMark=\"$(apt-mark showmanual)\" && apt-get update")
    );
    assert_eq!(rows[1]["created"], json!("2023-11-14T22:13:20Z"));
    // By hand: the file's 24,300 bytes; its tar is a 512-byte header, the content padded to
    // 24,576 and two 512-byte end blocks; the blob is what is stored.
    assert_eq!(rows[1]["size"], json!(24300));
    assert_eq!(rows[1]["tarSize"], json!(512 + 24576 + 1024));
    let blob = store
        .root
        .join("blobs/sha256")
        .join(&rows[1]["digest"].as_str().expect("digest")[7..]);
    assert_eq!(
        rows[1]["storedSize"],
        json!(std::fs::metadata(blob).expect("blob").len())
    );
    assert_eq!(
        (&rows[0]["size"], &rows[0]["tarSize"], &rows[0]["storedSize"]),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(rows[1]["author"], json!("me"));
    assert_eq!(rows[1]["comment"], json!("Add site"));
    assert_eq!(rows[1]["diffID"], json!(sha256(&tar_of(&[("b", 24_300)]))));
    assert_eq!(rows[2]["id"], json!(base));
    assert_eq!(rows[2]["created"], json!("2023-10-17T22:13:20.5Z"));
    let keys: Vec<&String> = rows[1].as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "author",
            "comment",
            "created",
            "createdBy",
            "diffID",
            "digest",
            "emptyLayer",
            "id",
            "size",
            "storedSize",
            "tarSize"
        ]
    );
}

#[test]
fn every_layer_is_listed_when_history_is_short_or_missing() {
    let dir = tempdir();
    let store = Store::new(&dir.path().join("store"));
    let layers = [tar_of(&[("a", 1)]), tar_of(&[("b", 600)]), tar_of(&[("c", 0)])];
    let short_id = store.image(
        "short",
        &layers,
        json!([{"created": "2023-11-14T22:15:00Z", "created_by": "first"}]),
        None,
    );
    let bare = store.image("bare", &layers, Value::Null, None);
    let out = text(ok(
        &mut history(&[&format!("{}:short", store.root.display())]),
        b"",
    ));
    assert_eq!(
        out,
        format!(
            "IMAGE          CREATED          CREATED BY   SIZE      COMMENT\n\
             {}   N/A                           0B        \n\
             <missing>      N/A                           600B      \n\
             <missing>      20 seconds ago   first        1B        \n",
            short(&short_id)
        )
    );
    let rows = json_lines(ok(
        &mut history(&["--format", "json", &format!("{}:bare", store.root.display())]),
        b"",
    ));
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r["created"].is_null() && r["createdBy"] == json!(""))
    );
    assert_eq!(rows[0]["id"], json!(bare));
    assert_eq!(rows[2]["diffID"], json!(sha256(&layers[0])));
}

/// Every layer row's tarSize is the length of the decompressed blob (gzip's count), its
/// storedSize the blob file's length.
fn assert_sizes_match_blobs(layout: &Path, image: &str) {
    let rows = json_lines(ok(&mut history(&["--format", "json", image]), b""));
    let mut layers = 0;
    for row in rows.iter().filter(|r| r["emptyLayer"] == json!(false)) {
        let blob = layout
            .join("blobs/sha256")
            .join(&row["digest"].as_str().expect("digest")[7..]);
        let len = text(sh(&format!("gzip -dc '{}' | wc -c", blob.display())));
        assert_eq!(
            row["tarSize"],
            json!(len.trim().parse::<u64>().expect("count")),
            "{row}"
        );
        let stored = std::fs::metadata(&blob).expect("blob").len();
        assert_eq!(row["storedSize"], json!(stored), "{row}");
        layers += 1;
    }
    assert!(layers > 0, "no layer rows in {rows:?}");
}

#[test]
fn sizes_are_measured_when_not_recorded_and_taken_when_recorded() {
    let dir = tempdir();
    let (store, _, _) = base_and_app(dir.path());
    assert_sizes_match_blobs(&store.root, &format!("{}:app", store.root.display()));
    // Recorded sizes are taken as written, without decompressing: false ones (7 and 999 for
    // a 10-byte file in a 2048-byte tar) show as they are.
    let recorded = Store::new(&dir.path().join("recorded"));
    recorded.image("r", &[tar_of(&[("a", 10)])], Value::Null, Some((7, 999)));
    let image = format!("{}:r", recorded.root.display());
    let rows = json_lines(ok(&mut history(&["--format", "json", &image]), b""));
    assert_eq!((&rows[0]["size"], &rows[0]["tarSize"]), (&json!(7), &json!(999)));
    let table = text(ok(&mut history(&["-H=false", &image]), b""));
    assert!(table.lines().nth(1).expect("row").contains(" 7 "), "{table}");
    // --wasted reads every layer anyway, and then shows the measured sizes.
    let rows = json_lines(ok(&mut history(&["--wasted", "--format", "json", &image]), b""));
    assert_eq!(
        (&rows[0]["size"], &rows[0]["tarSize"]),
        (&json!(10), &json!(2048))
    );
    // A layer recording only its tar's length (as layerkit did before it recorded the
    // content size) is measured.
    let old = Store::new(&dir.path().join("old"));
    old.image_annotated(
        "o",
        &[tar_of(&[("a", 10)])],
        Value::Null,
        Some(json!({"dev.layerkit.uncompressed-size": "999"})),
    );
    let rows = json_lines(ok(
        &mut history(&["--format", "json", &format!("{}:o", old.root.display())]),
        b"",
    ));
    assert_eq!(
        (&rows[0]["size"], &rows[0]["tarSize"]),
        (&json!(10), &json!(2048))
    );
}

/// Flips one byte of a blob file.
fn flip(layout: &Path, digest: &str, offset: usize) {
    let path = layout.join("blobs/sha256").join(&digest[7..]);
    let mut bytes = std::fs::read(&path).expect("blob");
    bytes[offset] ^= 0x01;
    std::fs::write(&path, &bytes).expect("blob");
}

/// A layer blob whose size must be measured (no recorded size, as in umoci's and skopeo's
/// images) is verified as it is streamed: a flipped byte is exit 2, one line, naming the
/// blob's digest, with and without --wasted. The byte is flipped in the gzip header (the OS
/// field: the tar decompresses the same, only the digest check sees it) and in the middle of
/// the deflate data (the decoder or the digest check sees it, whichever first).
#[test]
fn a_corrupt_layer_blob_is_refused_naming_its_digest() {
    for (what, offset) in [("gzip header", 9), ("deflate data", usize::MAX)] {
        let dir = tempdir();
        let (store, _, _) = base_and_app(dir.path());
        let image = format!("{}:app", store.root.display());
        let rows = json_lines(ok(&mut history(&["--format", "json", &image]), b""));
        let digest = rows[1]["digest"].as_str().expect("layer row").to_string();
        let size = std::fs::metadata(store.root.join("blobs/sha256").join(&digest[7..]))
            .expect("blob")
            .len() as usize;
        flip(&store.root, &digest, offset.min(size / 2));
        for args in [
            &[][..],
            &["--format", "json"],
            &["--wasted"],
            &["--wasted", "--format", "json"],
        ] {
            let mut c = history(args);
            c.arg(&image);
            let err = fails(&mut c, b"");
            assert!(
                err.starts_with("image-history: ") && err.contains(&digest),
                "{what}, {args:?}: {err}"
            );
        }
    }
    // A recorded size spares reading the blob, but --wasted reads it, and is refused.
    let dir = tempdir();
    let store = Store::new(&dir.path().join("store"));
    let tar = tar_of(&[("a", 5000)]);
    store.image(
        "r",
        std::slice::from_ref(&tar),
        Value::Null,
        Some((5000, tar.len() as u64)),
    );
    let image = format!("{}:r", store.root.display());
    let rows = json_lines(ok(&mut history(&["--format", "json", &image]), b""));
    let digest = rows[0]["digest"].as_str().expect("layer row").to_string();
    flip(&store.root, &digest, 9);
    ok(&mut history(&[&image]), b"");
    let err = fails(&mut history(&["--wasted", &image]), b"");
    assert!(err.contains(&digest), "{err}");
}

/// CVE-2021-41190: a manifest or index whose own `mediaType` is not what its descriptor says
/// is a blob made to be read two ways. Looking for the images that end at each row (the IMAGE
/// column), image-history reads every image of the layout: a confused blob anywhere there is
/// refused (exit 2, one line naming it), as image-stack refuses it as a base, never read as
/// what it claims to be. Here the only way to the base image is through a nested index: read
/// as an index, the confused blob would give the base row its id.
#[test]
fn a_blob_whose_media_type_lies_is_refused_wherever_it_is_reached() {
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    let dir = tempdir();
    let (store, base, _) = base_and_app(dir.path());
    let root = store.root.display().to_string();
    let index_path = store.root.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).expect("index")).expect("json");
    // Untag the base: it stays in the layout, reached only through the indexes below.
    let manifests = index["manifests"].as_array_mut().expect("manifests");
    let at = manifests
        .iter()
        .position(|m| m["annotations"]["org.opencontainers.image.ref.name"] == json!("base"))
        .expect("base entry");
    let mut base_desc = manifests.remove(at);
    base_desc.as_object_mut().expect("object").remove("annotations");
    let blob_of = |desc: &Value| -> Value {
        let digest = desc["digest"].as_str().expect("digest");
        serde_json::from_slice(
            &std::fs::read(store.root.join("blobs/sha256").join(&digest[7..])).expect("blob"),
        )
        .expect("json")
    };
    let tagged = |mut desc: Value, media_type: &str| {
        desc["mediaType"] = json!(media_type);
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": "multi"});
        desc
    };
    let with_entry = |entry: Option<&Value>| {
        let mut i = index.clone();
        i["manifests"]
            .as_array_mut()
            .expect("manifests")
            .extend(entry.cloned());
        std::fs::write(&index_path, serde_json::to_vec(&i).expect("json")).expect("index");
    };
    let ids = || {
        text(ok(
            &mut history(&["-q", "--no-trunc", &format!("{root}:app")]),
            b"",
        ))
    };

    // An honest nested index: the base row gets the base's id.
    let honest = store.blob(
        &serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [base_desc]}))
            .expect("json"),
    );
    with_entry(Some(&tagged(honest, INDEX)));
    assert!(ids().contains(&base), "{}", ids());
    // Nothing else reaches the base: without the index, no id.
    with_entry(None);
    assert!(!ids().contains(&base), "{}", ids());

    // An index blob that calls itself a manifest.
    let liar_index = store.blob(
        &serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST, "manifests": [base_desc]}))
            .expect("json"),
    );
    // An honest index holding a manifest blob that calls itself docker's manifest.
    let mut manifest = blob_of(&base_desc);
    manifest["mediaType"] = json!(DOCKER_MANIFEST);
    let mut liar_manifest = store.blob(&serde_json::to_vec(&manifest).expect("json"));
    liar_manifest["mediaType"] = json!(MANIFEST);
    let holder = store.blob(
        &serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [liar_manifest]}))
            .expect("json"),
    );
    for (what, entry, liar) in [
        ("index", tagged(liar_index.clone(), INDEX), &liar_index),
        ("manifest", tagged(holder, INDEX), &liar_manifest),
    ] {
        with_entry(Some(&entry));
        let digest = liar["digest"].as_str().expect("digest");
        let err = fails(&mut history(&[&format!("{root}:app")]), b"");
        assert!(
            err.starts_with("image-history: ") && err.contains(digest) && err.contains("media type"),
            "{what}: {err}"
        );
        let stack = fails(
            tool("image-stack").args(["--from", &format!("{root}:multi"), "--tar"]),
            b"",
        );
        assert!(stack.contains(digest), "{what}: {stack}");
    }
}

#[test]
fn images_made_by_our_tools() {
    let dir = tempdir();
    let d = dir.path().display();
    sh(&format!(
        "set -e; cd {d}; export SOURCE_DATE_EPOCH=1700000000
         mkdir -p base/etc web && echo hi > base/etc/hostname && echo site > web/index.html
         tar --sort=name --mtime=@1700000000 --owner=0 --group=0 -C base -cf - . \
           | layer-pack --layout store | image-stack --layer - --tag store:base --created-by debootstrap >/dev/null
         tar --mtime=@1700000000 --owner=0 --group=0 -C web -cf - index.html | layer-pack --layout store \
           | image-stack --from store:base --layer - --tag store:web:v1 -m 'Add site' --created-by httpd-foreground >/dev/null"
    ));
    let store = dir.path().join("store");
    let (base, web) = (config_of(&store, "base"), config_of(&store, "web:v1"));
    let image = format!("{}:web:v1", store.display());
    let out = text(ok(&mut history(&[&image]), b""));
    assert_eq!(
        out,
        format!(
            "IMAGE          CREATED         CREATED BY         SIZE      COMMENT\n\
             {}   2 minutes ago   httpd-foreground   5B        Add site\n\
             {}   2 minutes ago   debootstrap        3B        \n",
            short(&web),
            short(&base)
        )
    );
    assert_sizes_match_blobs(&store, &image);
}

#[test]
fn images_made_by_umoci() {
    if peer("umoci").is_none() {
        return;
    }
    let dir = tempdir();
    let d = dir.path().display();
    sh(&format!(
        "set -e; cd {d}; umoci init --layout L; umoci new --image L:t
         printf hello > f.txt
         umoci insert --image L:t --history.created_by 'insert f' --history.created 2023-11-14T22:10:00Z \
           --history.comment first --history.author me f.txt /etc/f.txt
         umoci insert --image L:t --history.created_by \"$(printf 'insert\\tg')\" \
           --history.created 2023-11-14T22:15:19Z f.txt /g.txt"
    ));
    let layout = dir.path().join("L");
    let image = format!("{}:t", layout.display());
    let id = config_of(&layout, "t");
    let out = text(ok(&mut history(&[&image]), b""));
    assert_eq!(
        out,
        format!(
            "IMAGE          CREATED         CREATED BY   SIZE      COMMENT\n\
             {}   1 second ago    insert g     5B        \n\
             <missing>      5 minutes ago   insert f     5B        first\n",
            short(&id)
        )
    );
    assert_sizes_match_blobs(&layout, &image);
    // umoci's layers end without tar padding: --wasted must read them all the same.
    ok(&mut history(&["--wasted", &image]), b"");
}

#[test]
fn images_copied_by_skopeo_from_a_docker_archive() {
    if peer("skopeo").is_none() {
        return;
    }
    let dir = tempdir();
    let l1 = tar_of(&[("bin/sh", 1000)]);
    let l2 = tar_of(&[("app", 70_000)]);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&l1), sha256(&l2)]},
        "history": [
            {"created": "2023-09-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:1 in / "},
            {"created": "2023-09-01T00:00:01Z", "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true},
            {"created": "2023-11-14T22:13:20Z", "created_by": "COPY app . # buildkit", "comment": "buildkit.dockerfile.v0"}
        ]
    }))
    .expect("json");
    let config_name = format!("{}.json", &sha256(&config)[7..]);
    let manifest = serde_json::to_vec(&json!([{"Config": config_name, "RepoTags": ["x:1"],
        "Layers": ["l1/layer.tar", "l2/layer.tar"]}]))
    .expect("json");
    let archive = Tar::default()
        .file("manifest.json", &manifest)
        .file(&config_name, &config)
        .file("l1/layer.tar", &l1)
        .file("l2/layer.tar", &l2)
        .done();
    std::fs::write(dir.path().join("x.tar"), archive).expect("write");
    let d = dir.path().display();
    sh(&format!(
        "cd {d} && skopeo copy -q --dest-compress docker-archive:x.tar oci:L:t"
    ));
    let layout = dir.path().join("L");
    let image = format!("{}:t", layout.display());
    let out = text(ok(&mut history(&[&image]), b""));
    assert_eq!(
        out,
        format!(
            "IMAGE          CREATED         CREATED BY                           SIZE      COMMENT\n\
             {}   2 minutes ago   COPY app . # buildkit                70kB      buildkit.dockerfile.v0\n\
             <missing>      2 months ago    /bin/sh -c #(nop)  CMD [\"sh\"]        0B        \n\
             <missing>      2 months ago    /bin/sh -c #(nop) ADD file:1 in /    1kB       \n",
            short(&config_of(&layout, "t"))
        )
    );
    assert_sizes_match_blobs(&layout, &image);
}

#[test]
fn wasted_counts_what_a_later_layer_deletes() {
    let dir = tempdir();
    let store = Store::new(&dir.path().join("store"));
    let big = 10 << 20;
    let layers = [
        tar_of(&[("etc/os-release", 100)]),
        tar_of(&[("big", big), ("etc/os-release", 200)]),
        tar_of(&[(".wh.big", 0)]),
    ];
    store.image(
        "w",
        &layers,
        json!([
            {"created": "2023-11-14T22:13:20Z", "created_by": "base"},
            {"created": "2023-11-14T22:13:20Z", "created_by": "add big"},
            {"created": "2023-11-14T22:13:20Z", "created_by": "rm big"},
        ]),
        None,
    );
    let image = format!("{}:w", store.root.display());
    let out = text(ok(&mut history(&["--wasted", &image]), b""));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "IMAGE          CREATED         CREATED BY   SIZE      WASTED    COMMENT"
    );
    assert!(lines[2].contains("add big      10.5MB    10.5MB    "), "{out}");
    assert!(lines[3].contains("base         100B      100B      "), "{out}");
    assert!(lines[1].contains("rm big       0B        0B        "), "{out}");
    assert_eq!(lines[4], "Wasted 10.5MB of 10.5MB (0.0% efficient)");

    let rows = json_lines(ok(&mut history(&["--wasted", "--format", "json", &image]), b""));
    assert_eq!(rows.len(), 3, "a line per row, nothing else");
    assert_eq!(rows[1]["wasted"], json!(big));
    assert_eq!(
        rows[1]["wastedFiles"],
        json!([{"path": "/big", "size": big, "maskedBy": sha256(&layers[2]), "how": "removed"}])
    );
    assert_eq!(
        rows[2]["wastedFiles"],
        json!([{"path": "/etc/os-release", "size": 100, "maskedBy": sha256(&layers[1]), "how": "replaced"}])
    );
    assert_eq!(rows[0]["wasted"], json!(0));
    // Every line has the one shape of a row (the keys a row without --wasted has, plus wasted
    // and wastedFiles), so `jq -r .diffID` prints no stray null for a summary line.
    let plain = json_lines(ok(&mut history(&["--format", "json", &image]), b""));
    let keys = |v: &Value| -> Vec<String> { v.as_object().expect("object").keys().cloned().collect() };
    for row in &rows {
        let mut want = keys(&plain[0]);
        want.extend(["wasted".to_string(), "wastedFiles".to_string()]);
        want.sort();
        assert_eq!(keys(row), want, "{row}");
    }
    // The summary is --report's one document (to stdout with -, which then carries it alone).
    let total = big as u64 + 300;
    let wasted = big as u64 + 100;
    let efficiency = ((total - wasted) as f64 * 10000.0 / total as f64).round() / 100.0;
    let report = json_lines(ok(&mut history(&["--report", "-", &image]), b""));
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(
        (
            &report[0]["totalSize"],
            &report[0]["wastedSize"],
            &report[0]["efficiency"]
        ),
        (&json!(total), &json!(wasted), &json!(efficiency))
    );
    assert!(
        report[0].get("result").is_none(),
        "no rules, no verdict: {report:?}"
    );
    let file = dir.path().join("report.json");
    let rows_again = json_lines(ok(
        &mut history(&["--format", "json", "--report", file.to_str().unwrap(), &image]),
        b"",
    ));
    assert_eq!(rows_again, rows, "--report FILE leaves the rows as they are");
    let written: Value = serde_json::from_slice(&std::fs::read(&file).expect("report")).unwrap();
    assert_eq!(written, report[0]);
    // -q prints ids, --format json rows: together, one would be ignored.
    let err = fails(&mut history(&["-q", "--format", "json", &image]), b"");
    assert!(err.contains("-q") && err.contains("--format json"), "{err}");
}

#[test]
fn wasted_follows_symlinked_parents() {
    // Layer 1: usr/lib/big (1000 B) and lib -> usr/lib; layer 2 writes lib/big (10 B), which
    // lands on usr/lib/big (docker, umoci and image-stack --rootfs resolve parents that way).
    // By hand: 1010 B of content, the 1000 B of layer 1 replaced, 10/1010 = 0.99% visible.
    let dir = tempdir();
    let store = Store::new(&dir.path().join("store"));
    let mut lower = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    lower.append_link(&mut h, "lib", "usr/lib").expect("tar");
    let lower = [
        lower
            .into_inner()
            .expect("tar")
            .strip_suffix(&[0u8; 1024][..])
            .expect("end"),
        &tar_of(&[("usr/lib/big", 1000)])[..],
    ]
    .concat();
    let layers = [lower, tar_of(&[("lib/big", 10)])];
    store.image("s", &layers, Value::Null, None);
    let image = format!("{}:s", store.root.display());
    let rows = json_lines(ok(&mut history(&["--wasted", "--format", "json", &image]), b""));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["wasted"], json!(0));
    assert_eq!(rows[1]["wasted"], json!(1000));
    assert_eq!(
        rows[1]["wastedFiles"],
        json!([{"path": "/usr/lib/big", "size": 1000, "maskedBy": sha256(&layers[1]), "how": "replaced"}])
    );
    let report = json_lines(ok(&mut history(&["--report", "-", &image]), b""));
    assert_eq!(
        (
            &report[0]["totalSize"],
            &report[0]["wastedSize"],
            &report[0]["efficiency"]
        ),
        (&json!(1010), &json!(1000), &json!(0.99))
    );
    let out = text(ok(&mut history(&["--wasted", &image]), b""));
    assert_eq!(out.lines().last(), Some("Wasted 1kB of 1.01kB (1.0% efficient)"));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempdir();
    let (store, _, _) = base_and_app(dir.path());
    let root = store.root.display().to_string();
    let err = fails(&mut history(&[&format!("{root}:nope")]), b"");
    assert!(err.contains("nope"), "{err}");
    fails(
        &mut history(&[&format!("{}/missing:app", dir.path().display())]),
        b"",
    );

    let bad_config = Store::new(&dir.path().join("bad"));
    let digest = bad_config.image_with_config("x", b"this is not JSON", vec![]);
    let err = fails(&mut history(&[&format!("{}:x", bad_config.root.display())]), b"");
    assert!(err.contains(&digest), "{err}");

    let index = store.root.join("index.json");
    let full = std::fs::read(&index).expect("index");
    std::fs::write(&index, &full[..full.len() / 2]).expect("torn");
    let err = fails(&mut history(&[&format!("{root}:app")]), b"");
    assert!(err.contains("index.json"), "{err}");
    let out = run(&mut history(&["-q", &format!("{root}:app")]), b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// `image-history httpd:2.4`, docker's way, names a layout `httpd`: the error says what an
/// IMAGE is; a tag the layout lacks lists the tags it has, those of the same name first.
#[test]
fn a_docker_reference_or_a_missing_tag_is_explained() {
    let dir = tempdir();
    let (store, _, _) = base_and_app(dir.path());
    store.image("httpd:2.4", &[tar_of(&[("h", 1)])], Value::Null, None);
    let mut c = history(&["httpd:2.4"]);
    c.current_dir(dir.path());
    assert_eq!(
        fails(&mut c, b""),
        "image-history: httpd: no such OCI image layout; an IMAGE is LAYOUT:REF, e.g. \
         store:httpd:2.4 (the tag httpd:2.4 of the layout directory store)\n"
    );
    let mut c = history(&["store:httpd:2.5"]);
    c.current_dir(dir.path());
    assert_eq!(
        fails(&mut c, b""),
        "image-history: store:httpd:2.5: store: no image tagged \"httpd:2.5\"; its tags: httpd:2.4, base, app\n"
    );
}

/// A section of a man page in man/ (from `.SH NAME` to the next `.SH`).
fn man_section(tool: &str, name: &str) -> String {
    let path = repo().join(format!("man/{tool}.1"));
    let page = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = page
        .find(&format!(".SH {name}\n"))
        .unwrap_or_else(|| panic!("no {name} section in {}", path.display()));
    let rest = &page[start + 4..];
    rest[..rest.find("\n.SH ").unwrap_or(rest.len())].to_string()
}

/// LAYERKIT_NOW fixes "now" as RFC 3339 or as epoch seconds (a bad value is an error), and the
/// man page's ENVIRONMENT section says so rather than only the system clock.
#[test]
fn layerkit_now_fixes_now_and_the_man_page_documents_it() {
    let dir = tempdir();
    let (store, _, _) = base_and_app(dir.path());
    let image = format!("{}:app", store.root.display());
    let at = |now: &str| {
        let mut c = tool("image-history");
        c.arg(&image).env("LAYERKIT_NOW", now);
        c
    };
    let table = text(ok(&mut at(NOW), b""));
    assert!(table.contains(" 2 minutes ago "), "{table}");
    // 2023-11-14T22:15:20Z is 1700000120 seconds after the epoch.
    assert_eq!(text(ok(&mut at("1700000120"), b"")), table);
    let week_later = text(ok(&mut at("2023-11-21T22:15:20Z"), b""));
    assert!(week_later.contains(" 7 days ago "), "{week_later}");
    let err = fails(&mut at("yesterday"), b"");
    assert!(err.contains("LAYERKIT_NOW"), "{err}");

    let env = man_section("image-history", "ENVIRONMENT");
    assert!(env.contains("\\fBLAYERKIT_NOW\\fR"), "{env}");
    assert!(
        env.contains("RFC 3339") && env.contains("seconds since the Unix epoch"),
        "{env}"
    );
}

/// docker's SIZE of a layer is the apparent size of what it unpacks to (overlay2's
/// `directory.Size`), worked out by hand here and compared with the real engine in
/// tests/docker.rs: a layer with a 33-byte app.js, a symlink to "app.js" (6 bytes: its
/// target's length) and a hard link to app.js (nothing more: one inode) is 39B; a layer of
/// GNU tar's PAX sparse files counts their real sizes, holes included (7,353,036 bytes); a
/// layer removing a file is 0B. Our own images record the size when the layer is packed: with
/// every layer blob of the layout removed, image-history still shows them, having opened none.
/// A layout that does not record them (written blob by blob) gets the same sizes measured.
#[test]
fn sizes_are_content_sizes_and_our_images_open_no_layer_blob() {
    let dir = tempdir();
    let d = dir.path();
    file(
        d,
        "a/app/app.js",
        b"console.log('hello from layer');\n",
        0o644,
        1_700_000_000,
    );
    std::os::unix::fs::symlink("app.js", d.join("a/app/current")).expect("symlink");
    std::fs::hard_link(d.join("a/app/app.js"), d.join("a/app/again.js")).expect("link");
    let sparse = sparse_tree(&d.join("s"));
    assert_eq!(sparse.len(), 6);
    std::fs::write(d.join("sparse.tar"), gnu_sparse_tar(&d.join("s"), "1.0")).expect("write");
    sh(&format!(
        "set -e; cd {}; cp -a a b; rm b/app/current
         layer-pack --layout store a/ | image-stack --layer - --tag store:x --created-by app >/dev/null
         layer-pack --layout store sparse.tar | image-stack --from store:x --layer - --tag store:x --created-by sparse >/dev/null
         layer-diff a/ b/ | layer-pack --layout store | image-stack --from store:x --layer - --tag store:x --created-by rm >/dev/null",
        d.display()
    ));
    let want = [
        ("rm", 0u64, "0B"),
        ("sparse", 7_353_036, "7.35MB"),
        ("app", 39, "39B"),
    ];
    let check = |image: &str| {
        let rows = json_lines(ok(&mut history(&["--format", "json", image]), b""));
        let got: Vec<(&str, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r["createdBy"].as_str().unwrap_or(""),
                    r["size"].as_u64().expect("size"),
                )
            })
            .collect();
        let sizes: Vec<u64> = got.iter().map(|g| g.1).collect();
        assert_eq!(sizes, want.map(|w| w.1), "{image}: {got:?}");
        let table = text(ok(&mut history(&[image]), b""));
        for (row, (_, _, cell)) in table.lines().skip(1).zip(want) {
            assert!(
                row.contains(&format!("   {cell} ")),
                "{image}: {row:?} has no {cell}"
            );
        }
    };
    let store = d.join("store");
    let image = format!("{}:x", store.display());
    check(&image);

    // The same layers in a layout that records nothing: measured from the tar headers.
    let mut tars = Vec::new();
    for row in json_lines(ok(&mut history(&["--format", "json", &image]), b""))
        .iter()
        .rev()
    {
        let blob = store
            .join("blobs/sha256")
            .join(&row["digest"].as_str().expect("digest")[7..]);
        let mut tar = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(blob).expect("blob")),
            &mut tar,
        )
        .expect("gunzip");
        tars.push(tar);
    }
    raw_layout(&d.join("raw"), &tars);
    let raw = text(ok(
        &mut history(&["--format", "json", &format!("{}:t", d.join("raw").display())]),
        b"",
    ));
    let sizes: Vec<u64> = raw
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["size"]
                .as_u64()
                .expect("size")
        })
        .collect();
    assert_eq!(sizes, want.map(|w| w.1));

    // Every layer blob gone: our image's history is read from its manifest and config alone.
    for row in json_lines(ok(&mut history(&["--format", "json", &image]), b"")) {
        std::fs::remove_file(
            store
                .join("blobs/sha256")
                .join(&row["digest"].as_str().expect("digest")[7..]),
        )
        .expect("rm");
    }
    check(&image);
    // --wasted reads the layers: it must fail now, naming a missing blob.
    let err = fails(&mut history(&["--wasted", &image]), b"");
    assert!(err.contains("missing"), "{err}");
}

// ---- --wasted as a CI gate ---------------------------------------------------------------

/// A base of one 10 MB file, and an image on it that adds a 10 MB file and removes it in the
/// next layer: by hand, 20,000,000 bytes of content, 10,000,000 of them wasted (efficiency
/// 0.5), 10,000,000 bytes added above the first layer (user wasted ratio 1.0), and 10,000,000
/// bytes of growth over the base. Returns the store, the image and the three layer tars.
fn gate_fixture(dir: &Path) -> (Store, String, String, [Vec<u8>; 3]) {
    let store = Store::new(&dir.join("store"));
    let layers = [
        tar_of(&[("base", 10_000_000)]),
        tar_of(&[("big", 10_000_000)]),
        tar_of(&[(".wh.big", 0)]),
    ];
    let steps = json!([
        {"created_by": "base"}, {"created_by": "add big"}, {"created_by": "rm big"}
    ]);
    store.image("base", &layers[..1], json!([{"created_by": "base"}]), None);
    store.image("app", &layers, steps, None);
    let root = store.root.display().to_string();
    (store, format!("{root}:app"), format!("{root}:base"), layers)
}

/// Writes `text` to `dir/name`; returns the path.
fn written(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The exit status of image-history on `image` with these arguments, and its stdout.
fn gate(image: &str, args: &[&str]) -> (i32, String) {
    let out = run(history(args).arg(image), b"");
    let code = out.status.code().expect("exit status");
    assert!(
        code == 0 || code == 1,
        "{args:?}: exit {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, text(out.stdout))
}

#[test]
fn the_gate_passes_at_each_limit_and_fails_one_unit_past_it() {
    let dir = tempdir();
    let (_, image, base, _) = gate_fixture(dir.path());
    let cases: &[(&[&str], i32)] = &[
        (&["--highest-wasted-bytes", "10MB"], 0),
        (&["--highest-wasted-bytes", "9999999"], 1),
        (&["--lowest-efficiency", "0.5"], 0),
        (&["--lowest-efficiency", "50%"], 0),
        (&["--lowest-efficiency", "0.5000001"], 1),
        (&["--highest-user-wasted-percent", "1"], 0),
        (&["--highest-user-wasted-percent", "0.9999999"], 1),
        (&["--highest-image-size", "20MB"], 0),
        (&["--highest-image-size", "19999999"], 1),
        // The floor spares the ratio rules while the waste is within it, not the byte rules.
        (&["--lowest-efficiency", "0.9", "--wasted-floor", "10MB"], 0),
        (&["--lowest-efficiency", "0.9", "--wasted-floor", "9999999"], 1),
        (&["--highest-wasted-bytes", "1", "--wasted-floor", "10MB"], 1),
        (&["--baseline", &base, "--highest-growth", "10MB"], 0),
        (&["--baseline", &base, "--highest-growth", "9999999"], 1),
        (&["--baseline", &base, "--highest-growth", "100%"], 0),
        (&["--baseline", &base, "--highest-growth", "99.99%"], 1),
    ];
    for (args, want) in cases {
        let (code, out) = gate(&image, args);
        assert_eq!(code, *want, "{args:?}\n{out}");
        let result = if *want == 0 {
            "Result: PASS"
        } else {
            "Result: FAIL"
        };
        assert!(out.lines().last().unwrap().starts_with(result), "{args:?}\n{out}");
    }
    // The text report names the file, its layer and the rule, after the table.
    let (_, out) = gate(&image, &["--highest-wasted-bytes", "9999999"]);
    assert!(
        out.contains("Wasted files:\n      10MB  /big  (layer ")
            && out.contains(", removed by ")
            && out.contains(
                "  FAIL: highestWastedBytes: 10000000 bytes (10MB) wasted > 9999999 bytes (10MB)\n"
            )
            && out.contains("  SKIP: lowestEfficiency: disabled\n"),
        "{out}"
    );
    assert!(
        out.lines().next().unwrap().contains("WASTED"),
        "the gate shows --wasted's table"
    );
}

#[test]
fn the_gates_json_names_the_files_and_layers_that_waste() {
    let dir = tempdir();
    let (_, image, _, layers) = gate_fixture(dir.path());
    let out = run(
        history(&[
            "--report",
            "-",
            "--highest-wasted-bytes",
            "9999999",
            "--lowest-efficiency",
            "0.5",
        ])
        .arg(&image),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(out.stdout);
    assert_eq!(lines.len(), 1, "one document");
    let report = &lines[0];
    assert_eq!(report["result"], "fail");
    assert_eq!(
        report["wastedFiles"],
        json!([{"path": "/big", "size": 10_000_000, "layer": sha256(&layers[1]),
                "maskedBy": sha256(&layers[2]), "how": "removed"}])
    );
    let rules: Vec<(String, String, Value, Value)> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
                r["value"].clone(),
                r["limit"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("lowestEfficiency".into(), "pass".into(), json!(0.5), json!(0.5)),
            (
                "highestWastedBytes".into(),
                "fail".into(),
                json!(10_000_000),
                json!(9_999_999)
            ),
            (
                "highestUserWastedPercent".into(),
                "skip".into(),
                json!(1.0),
                Value::Null
            ),
            (
                "highestImageSize".into(),
                "skip".into(),
                json!(20_000_000),
                Value::Null
            ),
            ("highestGrowth".into(), "skip".into(), Value::Null, Value::Null),
        ]
    );
}

#[test]
fn dive_ci_files_with_dives_keys_work() {
    let dir = tempdir();
    let (_, image, _, _) = gate_fixture(dir.path());
    let config = |name: &str, text: &str| written(dir.path(), name, text);
    // dive's README example: fails here (efficiency 0.5 < 0.95, 10MB wasted of 10MB added).
    let readme = config(
        "readme.dive-ci",
        "rules:\n  # If the efficiency is measured below X%, mark as failed.\n  # Expressed as a ratio between 0-1.\n  lowestEfficiency: 0.95\n\n  # If the amount of wasted space is at least X or larger than X, mark as failed.\n  # Expressed in B, KB, MB, and GB.\n  highestWastedBytes: 20MB\n\n  # If the amount of wasted space makes up for X% or more of the image, mark as failed.\n  # Note: the base image layer is NOT included in the total image size.\n  # Expressed as a ratio between 0-1; fails if the threshold is met or crossed.\n  highestUserWastedPercent: 0.20\n",
    );
    let (code, out) = gate(&image, &["--ci-config", &readme]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  FAIL: lowestEfficiency: ") && out.contains("  PASS: highestWastedBytes: "),
        "{out}"
    );
    let at = config(
        "at.dive-ci",
        "rules:\n  lowestEfficiency: 0.5\n  highestWastedBytes: \"10MB\"\n  highestUserWastedPercent: '1.0' # all of it\n",
    );
    assert_eq!(gate(&image, &["--ci-config", &at]).0, 0);
    // dive 0.13's kebab-case names; "disabled" turns a rule off.
    let kebab = config(
        "kebab.dive-ci",
        "---\nrules:\n  lowest-efficiency: 0.5\n  highest-wasted-bytes: 9999999\n  highest-user-wasted-percent: disabled\n",
    );
    let (code, out) = gate(&image, &["--ci-config", &kebab]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  FAIL: highestWastedBytes") && out.contains("  SKIP: highestUserWastedPercent"),
        "{out}"
    );
    // Rules a file leaves out take dive's defaults (0.9, disabled, 0.1); flags override them.
    let partial = config("partial.dive-ci", "rules:\n  highestWastedBytes: 20MB\n");
    let (code, out) = gate(&image, &["--ci-config", &partial]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  FAIL: lowestEfficiency: efficiency 0.5000 < 0.9"),
        "{out}"
    );
    assert!(out.contains("  FAIL: highestUserWastedPercent: "), "{out}");
    let overridden = [
        "--ci-config",
        &partial,
        "--lowest-efficiency",
        "disabled",
        "--highest-user-wasted-percent",
        "off",
    ];
    assert_eq!(gate(&image, &overridden).0, 0);
}

#[test]
fn rules_that_do_not_parse_are_one_line_and_exit_2() {
    let dir = tempdir();
    let (store, image, _, _) = gate_fixture(dir.path());
    let config = |name: &str, text: &str| written(dir.path(), name, text);
    let typo = config("typo.dive-ci", "rules:\n  lowestEfficency: 0.9\n");
    let unit = config("unit.dive-ci", "rules:\n  highestWastedBytes: 20 parsecs\n");
    let ratio = config("ratio.dive-ci", "rules:\n  lowestEfficiency: most\n");
    let missing = dir.path().join("missing.dive-ci").display().to_string();
    let state = |root: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(root)
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| p.is_file())
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = state(&store.root);
    let cases: &[(&[&str], &str)] = &[
        (&["--lowest-efficiency", "abc"], "--lowest-efficiency"),
        (&["--highest-wasted-bytes", "20parsecs"], "parsecs"),
        (&["--highest-image-size", "-5"], "-5"),
        (&["--highest-image-size", "5 apples"], "--highest-image-size"),
        (&["--wasted-floor", "MB"], "--wasted-floor"),
        (&["--ci-config", &typo], "lowestEfficency"),
        (&["--ci-config", &unit], "line 2: highestWastedBytes"),
        (&["--ci-config", &ratio], "most"),
        (&["--ci-config", &missing], "missing.dive-ci"),
        (
            &["--baseline", "nowhere:base", "--highest-growth", "1%"],
            "nowhere",
        ),
        (&["--highest-growth", "1%"], "--baseline"),
    ];
    for (args, says) in cases {
        let err = fails(history(args).arg(&image), b"");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(state(&store.root) == before, "the layout is unchanged");
}
