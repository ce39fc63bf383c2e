//! The layout store under concurrency, corruption and crashes (issue 2's acceptance).
//!
//! Process tests re-run this test binary as children: `child_process` (ignored in normal runs)
//! does what `LAYERKIT_CHILD_ROLE` says on the layout in `LAYERKIT_CHILD_LAYOUT`.

use common::descriptor::Descriptor;
use common::digest::Digest;
use common::layout::{Layout, TMP_PREFIX};
use common::media;
use common::reference::Target;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[path = "../../tests/support/oci_check.rs"]
mod oci_check;

const ROLE: &str = "LAYERKIT_CHILD_ROLE";
const LAYOUT: &str = "LAYERKIT_CHILD_LAYOUT";
const ID: &str = "LAYERKIT_CHILD_ID";
/// A child creates this file in the layout's parent when it reached the point to be killed at.
const READY: &str = "child-ready";

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("layerkit-layout-")
        .tempdir()
        .expect("tempdir")
}

/// Deterministic, incompressible-looking bytes (so a size or digest slip cannot go unseen).
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_json(layout: &Layout, media_type: &str, value: &serde_json::Value) -> Descriptor {
    let bytes = common::json::canonical(value).expect("canonical");
    let (digest, _) = layout.write_blob(&bytes).expect("write_blob");
    Descriptor::new(media_type, digest, bytes.len() as u64)
}

/// A small image (one layer, a config, a manifest) unique to `seed`; returns the manifest's descriptor.
fn image(layout: &Layout, seed: u64) -> Descriptor {
    let layer = payload(seed, 3000);
    let (layer_digest, _) = layout.write_blob(&layer).expect("layer");
    let config = write_json(
        layout,
        media::CONFIG,
        &json!({"architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]}}),
    );
    write_json(
        layout,
        media::MANIFEST,
        &json!({"schemaVersion": 2, "mediaType": media::MANIFEST,
                "config": config,
                "layers": [Descriptor::new(media::LAYER_TAR, layer_digest, layer.len() as u64)]}),
    )
}

fn blob_files(layout: &Layout) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(layout.root().join("blobs/sha256"))
        .expect("blobs dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn temp_files(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .expect("layout dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(TMP_PREFIX))
        .collect()
}

/// The layout is valid as a reader independent of `Layout` sees it (the e2e tests' oracle):
/// every tag names a manifest whose config and layers are there with their sizes and digests,
/// no tag is held twice, and every blob file holds exactly the bytes its name says.
fn assert_valid(root: &Path) -> BTreeMap<String, Digest> {
    let tags = oci_check::valid_layout(root, true).unwrap_or_else(|e| panic!("{e}"));
    oci_check::blobs_match_their_names(root).unwrap_or_else(|e| panic!("{e}"));
    tags.into_iter()
        .map(|(tag, digest)| (tag, digest.parse().expect("a digest")))
        .collect()
}

fn spawn_child(role: &str, layout: &Path, id: usize) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "child_process",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE, role)
        .env(LAYOUT, layout)
        .env(ID, id.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawning a child test process")
}

fn wait_all(children: Vec<Child>) {
    for mut c in children {
        let status = c.wait().expect("wait");
        assert!(status.success(), "child failed: {status:?}");
    }
}

/// Not a test of its own: the body of the child processes the tests below start.
#[test]
#[ignore = "run by the process tests as a child"]
fn child_process() {
    let role = std::env::var(ROLE).expect("run by a parent test");
    let root = PathBuf::from(std::env::var_os(LAYOUT).expect("layout"));
    let id: usize = std::env::var(ID).expect("id").parse().expect("id");
    let layout = Layout::open_or_create(&root).expect("layout");
    let ready = || std::fs::write(root.parent().unwrap().join(READY), b"").expect("ready marker");
    match role.as_str() {
        "same-blob" => {
            let bytes = payload(42, 1 << 20);
            for _ in 0..20 {
                let mut w = layout.blob_writer().unwrap();
                w.write_all(&bytes).unwrap();
                let (digest, size, _) = w.commit().unwrap();
                let mut back = Vec::new();
                layout
                    .open_blob(&digest, Some(size))
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap();
                assert!(back == bytes);
            }
        }
        "tags" => {
            for i in 0..10 {
                let desc = image(&layout, (id * 1000 + i) as u64);
                layout.set_tag(&format!("p{id}-{i}"), desc).unwrap();
            }
        }
        "crash-in-blob" => {
            let mut w = layout.blob_writer().unwrap();
            w.write_all(&payload(7, 4 << 20)).unwrap();
            w.flush().unwrap();
            ready();
            std::thread::sleep(Duration::from_secs(60));
            unreachable!("killed while writing");
        }
        "crash-holding-lock" => {
            let _lock = layout.lock().unwrap();
            // What a writer killed between writing the new index and renaming it leaves.
            std::fs::write(
                root.join(format!("{TMP_PREFIX}index")),
                b"{\"schemaVersion\":2,\"manif",
            )
            .unwrap();
            ready();
            std::thread::sleep(Duration::from_secs(60));
            unreachable!("killed holding the lock");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Starts a child that will be killed, waits until it says it reached that point, kills it.
fn kill_when_ready(role: &str, root: &Path) {
    let marker = root.parent().unwrap().join(READY);
    let _ = std::fs::remove_file(&marker);
    let mut child = spawn_child(role, root, 0);
    let start = Instant::now();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child {role} exited early: {status:?}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "child {role} never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}

#[test]
fn same_blob_from_threads_appears_once_and_whole() {
    let dir = tempdir();
    let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
    let bytes = payload(1, 2 << 20);
    let results: Vec<(Digest, u64, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut w = layout.blob_writer().unwrap();
                    // Small writes interleave the threads for real.
                    for chunk in bytes.chunks(4096) {
                        w.write_all(chunk).unwrap();
                    }
                    w.commit().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let want = Digest::of(&bytes);
    assert!(
        results
            .iter()
            .all(|(d, s, _)| *d == want && *s == bytes.len() as u64)
    );
    assert_eq!(
        results.iter().filter(|r| !r.2).count(),
        1,
        "exactly one writer stores it"
    );
    assert_eq!(std::fs::read(layout.blob_path(&want)).unwrap(), bytes);
    assert_eq!(blob_files(&layout).len(), 1);
    assert!(
        temp_files(layout.root()).is_empty(),
        "no temporary file left behind"
    );
}

#[test]
fn same_blob_from_processes_appears_once_and_whole() {
    let dir = tempdir();
    let root = dir.path().join("store");
    // The children also race to create the layout.
    wait_all((0..4).map(|i| spawn_child("same-blob", &root, i)).collect());
    let layout = Layout::open(&root).unwrap();
    let bytes = payload(42, 1 << 20);
    assert_eq!(blob_files(&layout), vec![layout.blob_path(&Digest::of(&bytes))]);
    assert_eq!(
        std::fs::read(layout.blob_path(&Digest::of(&bytes))).unwrap(),
        bytes
    );
    assert!(temp_files(&root).is_empty(), "no temporary file left behind");
    assert_valid(&root);
}

/// Keeps reading `index.json` while `work` runs: it must parse every time (never torn).
fn reading_index_while<T>(root: &Path, work: impl FnOnce() -> T) -> (T, usize) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let bytes = std::fs::read(root.join("index.json")).expect("index.json is always there");
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .unwrap_or_else(|e| panic!("torn index.json ({e}): {}", String::from_utf8_lossy(&bytes)));
                reads += 1;
            }
            reads
        });
        let out = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, reader.join().unwrap())
    })
}

#[test]
fn tags_from_eight_threads_are_all_kept() {
    let dir = tempdir();
    let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
    let (want, reads) = reading_index_while(layout.root(), || {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u64)
                .map(|t| {
                    let layout = &layout;
                    s.spawn(move || {
                        (0..10u64)
                            .map(|i| {
                                let desc = image(layout, t * 100 + i);
                                let tag = format!("t{t}-{i}");
                                layout.set_tag(&tag, desc.clone()).unwrap();
                                (tag, desc.digest)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<BTreeMap<_, _>>()
        })
    });
    assert!(reads > 0);
    assert_eq!(want.len(), 80);
    assert_eq!(
        assert_valid(layout.root()),
        want,
        "every tag kept, pointing where it was set"
    );
    assert!(temp_files(layout.root()).is_empty());
}

#[test]
fn tags_from_processes_are_all_kept() {
    let dir = tempdir();
    let root = dir.path().join("store");
    Layout::open_or_create(&root).unwrap();
    let ((), reads) = reading_index_while(&root, || {
        wait_all((0..4).map(|i| spawn_child("tags", &root, i)).collect())
    });
    assert!(reads > 0);
    let tags = assert_valid(&root);
    let layout = Layout::open(&root).unwrap();
    let mut want = BTreeMap::new();
    for id in 0..4usize {
        for i in 0..10usize {
            // Rebuilding the same image gives the same manifest digest (and finds its blobs there).
            want.insert(
                format!("p{id}-{i}"),
                image(&layout, (id * 1000 + i) as u64).digest,
            );
        }
    }
    assert_eq!(tags, want);
}

#[test]
fn moving_a_tag_keeps_the_old_image_dangling() {
    let dir = tempdir();
    let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
    let v1 = image(&layout, 1);
    let v2 = image(&layout, 2);
    layout.set_tag("web", v1.clone()).unwrap();
    layout.set_tag("web", v1.clone()).unwrap();
    assert_eq!(
        layout.read_index().unwrap().manifests.len(),
        1,
        "re-tagging piles nothing up"
    );
    layout.set_tag("web", v2.clone()).unwrap();
    let index = layout.read_index().unwrap();
    let entries: Vec<(Option<&str>, &Digest)> = index
        .manifests
        .iter()
        .map(|e| (e.ref_name(), &e.digest))
        .collect();
    assert_eq!(entries, vec![(None, &v1.digest), (Some("web"), &v2.digest)]);
    let by_digest = layout.resolve(&Target::Digest(v1.digest.clone()), None).unwrap();
    assert_eq!(by_digest.descriptor.digest, v1.digest);
}

#[test]
fn a_blob_whose_bytes_do_not_match_its_name_is_refused() {
    let dir = tempdir();
    let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
    let desc = image(&layout, 5);
    layout.set_tag("v1", desc.clone()).unwrap();
    let manifest = layout.read_manifest(&desc).unwrap();
    let layer = manifest.layers[0].clone();
    let config = manifest.config.clone();

    // Same length, one byte flipped: only the digest can tell.
    let path = layout.blob_path(&layer.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1234] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let mut r = layout.open_blob(&layer.digest, Some(layer.size)).unwrap();
    let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    // Without a size to check, the digest still catches it.
    let err = layout
        .open_blob(&layer.digest, None)
        .unwrap()
        .drain()
        .unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");

    // A longer config: refused by size before the digest is even computed.
    let cpath = layout.blob_path(&config.digest);
    let mut cbytes = std::fs::read(&cpath).unwrap();
    cbytes.push(b' ');
    std::fs::write(&cpath, &cbytes).unwrap();
    let err = format!("{:#}", layout.read_blob(&config).unwrap_err());
    assert!(
        err.contains("size mismatch") && err.contains(&config.digest.to_string()),
        "{err}"
    );

    // A manifest rewritten to point at another layer: resolving the tag fails, naming the digest.
    let mpath = layout.blob_path(&desc.digest);
    let forged = std::fs::read_to_string(&mpath)
        .unwrap()
        .replace(&layer.digest.hex()[..8], "00000000");
    std::fs::write(&mpath, forged).unwrap();
    let err = format!(
        "{:#}",
        layout.resolve(&Target::Tag("v1".into()), None).unwrap_err()
    );
    assert!(err.contains(&desc.digest.to_string()), "{err}");

    // A missing blob is its own error.
    std::fs::remove_file(&path).unwrap();
    let err = layout
        .open_blob(&layer.digest, Some(layer.size))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_writer_killed_before_the_rename_leaves_the_layout_valid() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).unwrap();
    layout.set_tag("base", image(&layout, 9)).unwrap();
    let before_index = std::fs::read(root.join("index.json")).unwrap();
    let before_blobs = blob_files(&layout);

    kill_when_ready("crash-in-blob", &root);
    let left = temp_files(&root);
    assert_eq!(
        left.len(),
        1,
        "the killed writer's temporary file stays: {left:?}"
    );
    assert!(std::fs::metadata(root.join(&left[0])).unwrap().len() > 0);

    assert_eq!(
        blob_files(&layout),
        before_blobs,
        "no partial blob under a digest name"
    );
    assert_eq!(std::fs::read(root.join("index.json")).unwrap(), before_index);
    assert_eq!(assert_valid(&root).len(), 1);
    // The same content written again lands normally beside the stray file.
    let bytes = payload(7, 4 << 20);
    let (digest, reused) = layout.write_blob(&bytes).unwrap();
    assert!(!reused);
    assert_eq!(std::fs::read(layout.blob_path(&digest)).unwrap(), bytes);
}

#[test]
fn a_writer_killed_holding_the_index_lock_loses_nothing() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let layout = Layout::open_or_create(&root).unwrap();
    let base = image(&layout, 3);
    layout.set_tag("base", base.clone()).unwrap();

    kill_when_ready("crash-holding-lock", &root);
    assert_eq!(temp_files(&root).len(), 1);
    // The kernel released the dead process's lock: the next writer proceeds, and the half
    // written index it left is not index.json.
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let layout = layout.clone();
        let next = image(&layout, 4);
        std::thread::spawn(move || tx.send(layout.set_tag("next", next)).unwrap())
    };
    rx.recv_timeout(Duration::from_secs(20))
        .expect("set_tag does not hang on a dead writer's lock")
        .unwrap();
    writer.join().unwrap();
    let tags = assert_valid(&root);
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["base", "next"]);
    assert_eq!(tags["base"], base.digest);
}

#[test]
fn moving_one_of_two_tags_leaves_no_dangling_entry() {
    let dir = tempdir();
    let layout = Layout::open_or_create(dir.path().join("store")).unwrap();
    let v1 = image(&layout, 1);
    let v2 = image(&layout, 2);
    layout.set_tag("stable", v1.clone()).unwrap();
    layout.set_tag("latest", v1.clone()).unwrap();
    layout.set_tag("latest", v2.clone()).unwrap();
    let index = layout.read_index().unwrap();
    let entries: Vec<(Option<&str>, &Digest)> = index
        .manifests
        .iter()
        .map(|e| (e.ref_name(), &e.digest))
        .collect();
    // v1 is still tagged "stable": it is not a dangling image.
    assert_eq!(
        entries,
        vec![(Some("stable"), &v1.digest), (Some("latest"), &v2.digest)]
    );
}
