//! End-to-end tests of layer-pack: run the built binary on real trees in temp dirs.

use crate::support::*;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Runs layer-pack with `args` on `stdin`, asserting success; returns the descriptor.
fn pack(args: &[&str], stdin: &[u8]) -> Value {
    let out = ok(tool("layer-pack").args(args), stdin);
    let text = String::from_utf8(out).expect("utf-8 descriptor");
    assert_eq!(text.lines().count(), 1, "one descriptor line: {text}");
    serde_json::from_str(&text).expect("descriptor is JSON")
}

/// A GNU tar of a directory, as a user would pipe it in.
fn gnu_tar(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--sort=name", "--xattrs", "--xattrs-include=*", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("GNU tar");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A tree with every entry kind and a file big enough for several gzip members.
fn sample_with_big_file(root: &Path) {
    sample_tree(root);
    let big: Vec<u8> = (0..3_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    file(root, "usr/share/big.bin", &big, 0o644, 1_600_000_600);
    mtime(root, "usr/share", 1_600_000_500);
    mtime(root, "usr", 1_600_000_500);
}

fn blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().expect("digest");
    std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).expect("blob in the layout")
}

fn decompress(blob: &[u8], media_type: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match media_type {
        "application/vnd.oci.image.layer.v1.tar" => out = blob.to_vec(),
        "application/vnd.oci.image.layer.v1.tar+gzip" => {
            flate2::read::MultiGzDecoder::new(blob)
                .read_to_end(&mut out)
                .expect("gunzip");
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            out = ok(Command::new("zstd").args(["-dc", "-"]), blob);
        }
        other => panic!("unexpected media type {other}"),
    }
    out
}

/// Each `--compress` value and the media type of the blob it makes (image-spec).
const CODECS: [(&str, &str); 3] = [
    ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
    ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
    ("none", "application/vnd.oci.image.layer.v1.tar"),
];

#[test]
fn round_trip_for_every_compression() {
    let t = tempdir();
    sample_with_big_file(&t.path().join("src"));
    let input = gnu_tar(&t.path().join("src"));
    let store = t.path().join("store");
    for (c, media_type) in CODECS {
        let desc = pack(&["--layout", store.to_str().unwrap(), "--compress", c], &input);
        let stored = blob(&store, &desc);
        assert_eq!(desc["mediaType"], media_type);
        assert_eq!(
            desc["digest"],
            sha256(&stored),
            "{c}: digest is the blob's sha256"
        );
        assert_eq!(desc["size"], stored.len() as u64);
        assert_eq!(
            desc["diffID"],
            sha256(&input),
            "{c}: diffID is the input's sha256"
        );
        assert_eq!(desc["uncompressedSize"], input.len() as u64);
        assert_eq!(desc["source"], store.canonicalize().unwrap().to_str().unwrap());
        assert!(
            desc.get("reused").is_none(),
            "{c}: a new blob is not reused: {desc}"
        );
        assert!(
            decompress(&stored, media_type) == input,
            "{c}: the blob decompresses to the input"
        );
    }
    assert_eq!(
        pack(&["--layout", store.to_str().unwrap()], &input)["reused"],
        true,
        "packing the same tar again finds the blob"
    );
}

#[test]
fn peers_read_the_blobs() {
    let t = tempdir();
    sample_with_big_file(&t.path().join("src"));
    let input = gnu_tar(&t.path().join("src"));
    std::fs::write(t.path().join("in.tar"), &input).unwrap();
    let dir = t.path().display();
    sh(&format!(
        "cd {dir} && layer-pack -o layer.tar.gz in.tar >gz.json && layer-pack --compress zstd -o layer.tar.zst - <in.tar >zst.json \
         && gzip -t layer.tar.gz && zstd -q -t layer.tar.zst \
         && tar -tvzf layer.tar.gz >gz.list && tar -tvf in.tar >in.list && cmp gz.list in.list \
         && tar --zstd -tvf layer.tar.zst >zst.list && cmp zst.list in.list"
    ));
    let gz: Value = serde_json::from_slice(&std::fs::read(t.path().join("gz.json")).unwrap()).unwrap();
    let file = t.path().join("layer.tar.gz");
    assert_eq!(gz["source"], file.canonicalize().unwrap().to_str().unwrap());
    assert_eq!(gz["digest"], sha256(&std::fs::read(&file).unwrap()));
    assert_eq!(gz["diffID"], sha256(&input));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode();
    sh(&format!("touch {dir}/plain"));
    assert_eq!(
        mode(&file),
        mode(&t.path().join("plain")),
        "-o makes a file as touch does"
    );
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".layerkit-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Writes config, manifest and a tagged index.json around one layer, by hand.
fn tag_image(store: &Path, layer: &Value, tag: &str) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer["diffID"]]},
        "history": [{"created_by": "layer-pack"}],
    }))
    .unwrap();
    let write = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(store.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        d
    };
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": write(&config), "size": config.len()},
        "layers": [{"mediaType": layer["mediaType"], "digest": layer["digest"], "size": layer["size"]}],
    }))
    .unwrap();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": write(&manifest),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(store.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn skopeo_and_umoci_accept_the_layer_of_a_tar_and_of_a_directory() {
    let (Some(_), Some(_)) = (peer("skopeo"), peer("umoci")) else {
        return;
    };
    let t = tempdir();
    let src = t.path().join("src");
    tree_in_order(&src, false);
    let store = t.path().join("store");
    let s = store.to_str().unwrap();
    let from_tar = pack(&["--layout", s], &gnu_tar(&src));
    let from_dir = pack(&["--layout", s, src.to_str().unwrap()], b"");
    for (tag, layer) in [("tar", from_tar), ("dir", from_dir)] {
        tag_image(&store, &layer, tag);
        let inspect = sh(&format!("skopeo inspect --raw oci:{s}:{tag}"));
        let manifest: Value = serde_json::from_slice(&inspect).unwrap();
        assert_eq!(manifest["layers"][0]["digest"], layer["digest"]);
        let bundle = t.path().join(format!("bundle-{tag}"));
        sh(&format!(
            "skopeo inspect oci:{s}:{tag} >/dev/null && umoci unpack --image {s}:{tag} {}",
            bundle.display()
        ));
        // GNU tar's PAX records carry the nanoseconds, and layer-pack keeps a tar's bytes; a
        // directory is written by our writer, in whole seconds.
        let want = match tag {
            "tar" => snapshot(&src),
            _ => whole_seconds(&snapshot(&src)),
        };
        assert_eq!(snapshot(&bundle.join("rootfs")), want, "{tag}: umoci unpack");
        let ours = t.path().join(format!("ours-{tag}"));
        ok(
            tool("image-stack")
                .args(["-q", "--from", &format!("{s}:{tag}"), "--rootfs"])
                .arg(&ours),
            b"",
        );
        assert_eq!(snapshot(&ours), want, "{tag}: image-stack --rootfs");
    }
}

#[test]
fn accepts_umoci_insert_layers_that_end_without_end_blocks() {
    let Some(_) = peer("umoci") else {
        return;
    };
    let t = tempdir();
    let src = t.path().join("src");
    file(&src, "hello.txt", b"hello\n", 0o644, 1_600_000_000);
    file(&src, "odd.bin", &[3u8; 700], 0o644, 1_600_000_000);
    let u = t.path().join("u");
    sh(&format!(
        "umoci init --layout {0} && umoci new --image {0}:a && umoci insert --image {0}:a {1} /data",
        u.display(),
        src.display()
    ));
    let index: Value = serde_json::from_slice(&std::fs::read(u.join("index.json")).unwrap()).unwrap();
    let read = |d: &Value| std::fs::read(u.join("blobs/sha256").join(&d.as_str().unwrap()[7..])).unwrap();
    let manifest: Value = serde_json::from_slice(&read(&index["manifests"][0]["digest"])).unwrap();
    let config: Value = serde_json::from_slice(&read(&manifest["config"]["digest"])).unwrap();
    let layer = decompress(
        &read(&manifest["layers"][0]["digest"]),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    if umoci_version() <= (0, 4, 7) {
        assert_ne!(
            layer.len() % 512,
            0,
            "umoci 0.4.7 ends the tar right after the last content"
        );
    }
    let store = t.path().join("store");
    let desc = pack(&["--layout", store.to_str().unwrap()], &layer);
    assert_eq!(desc["diffID"], config["rootfs"]["diff_ids"][0]);
    assert!(
        decompress(
            &blob(&store, &desc),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ) == layer
    );
}

#[test]
fn same_bytes_whatever_the_thread_count() {
    let t = tempdir();
    sample_with_big_file(&t.path().join("src"));
    let input = gnu_tar(&t.path().join("src"));
    for c in ["gzip", "zstd"] {
        let digests: Vec<Value> = ["1", "2", "3"]
            .iter()
            .map(|n| {
                pack(
                    &[
                        "-o",
                        t.path().join("x").to_str().unwrap(),
                        "--compress",
                        c,
                        "--threads",
                        n,
                    ],
                    &input,
                )["digest"]
                    .clone()
            })
            .collect();
        assert_eq!(digests[0], digests[1], "{c}");
        assert_eq!(digests[0], digests[2], "{c}");
    }
}

/// A layout's full listing (names, metadata, content hashes), hidden files included.
fn listing(store: &Path) -> String {
    snapshot(store)
}

#[test]
fn malformed_input_is_refused_and_the_layout_is_unchanged() {
    let t = tempdir();
    sample_with_big_file(&t.path().join("src"));
    let input = gnu_tar(&t.path().join("src"));
    let store = t.path().join("store");
    pack(
        &["--layout", store.to_str().unwrap()],
        b"\0".repeat(1024).as_slice(),
    );
    let before = listing(&store);
    assert!(
        before.contains("blobs/sha256/"),
        "the empty layer is there: {before}"
    );

    // A header in the middle: a ustar header, not the PAX records GNU tar puts before it.
    let third = tar::Archive::new(&input[..])
        .entries()
        .unwrap()
        .nth(2)
        .unwrap()
        .unwrap()
        .raw_header_position() as usize;
    let mut bad_checksum = input.clone();
    bad_checksum[third + 100] ^= 1;
    let mut garbage_after_end = input.clone();
    garbage_after_end.extend_from_slice(b"trailing garbage");
    let mut zero_block_then_more = vec![0u8; 512];
    zero_block_then_more.extend_from_slice(&input);
    let gzipped = ok(Command::new("gzip").args(["-c", "-n"]), &input);
    let huge_pax = Tar::default()
        .pax(&[("comment", "y".repeat(5 << 20).as_bytes())])
        .file("f", b"")
        .done();
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "cut inside a header",
            input[..700].to_vec(),
            "stdin: truncated tar at byte 700".into(),
        ),
        (
            "cut inside content",
            input[..1024 + 10].to_vec(),
            "stdin: truncated tar at byte 1034".into(),
        ),
        (
            "random bytes",
            (0..5000u32).map(|i| (i * 7 + 3) as u8).collect(),
            "stdin: bad tar header at byte 0".into(),
        ),
        (
            "a bad checksum",
            bad_checksum,
            format!(
                "stdin: bad tar header at byte {third}: reading tar entry 3: archive header checksum mismatch"
            ),
        ),
        (
            "garbage after the end",
            garbage_after_end,
            format!(
                "stdin: trailing garbage after the end of the tar at byte {}",
                input.len()
            ),
        ),
        (
            "a zero block, then entries",
            zero_block_then_more,
            "stdin: trailing garbage after the end of the tar at byte 512".into(),
        ),
        // Compressed input is read as the tar it holds: what is wrong is in the tar, or in
        // the compressed stream.
        (
            "a cut tar, gzipped",
            ok(Command::new("gzip").args(["-c", "-n"]), &input[..700]),
            "stdin (gzip): truncated tar at byte 700".into(),
        ),
        (
            "a cut gzip stream",
            gzipped[..gzipped.len() / 2].to_vec(),
            "reading stdin (gzip): ".into(),
        ),
        ("empty input", Vec::new(), "stdin: empty input".into()),
        (
            "an oversized PAX header",
            huge_pax,
            "stdin: bad tar header at byte 0: reading tar entry 1: a PAX extended header of 5242897 bytes at byte 0, more than the 1 MiB accepted".into(),
        ),
    ];
    for (what, bytes, expected) in cases {
        for c in ["gzip", "zstd"] {
            let err = fails(
                tool("layer-pack").args(["--layout", store.to_str().unwrap(), "--compress", c]),
                &bytes,
            );
            assert!(
                err.starts_with(&format!("layer-pack: {expected}")),
                "{what}: {err}"
            );
            assert_eq!(listing(&store), before, "{what}: the layout changed");
        }
    }
    let new = t.path().join("new-store");
    fails(
        tool("layer-pack").args(["--layout", new.to_str().unwrap()]),
        &input[..700],
    );
    assert!(
        !new.exists(),
        "a layout created for a failed pack is removed again"
    );
}

#[test]
fn refuses_entries_a_layer_may_not_hold() {
    let t = tempdir();
    let evil = Tar::default().file("../escape", b"evil").done();
    let store = t.path().join("store");
    let err = fails(
        tool("layer-pack").args(["--layout", store.to_str().unwrap()]),
        &evil,
    );
    assert!(
        err.contains("bad tar header at byte 0") && err.contains("climbs out of the root"),
        "{err}"
    );
}

#[test]
fn options_are_checked() {
    let t = tempdir();
    let store: PathBuf = t.path().join("store");
    let s = store.to_str().unwrap();
    let e = fails(tool("layer-pack").args(["--layout", s, "--level", "12"]), b"");
    assert!(e.contains("--level 12"), "{e}");
    let e = fails(tool("layer-pack").args(["--layout", s, "--threads", "0"]), b"");
    assert!(e.contains("usage"), "{e}");
    let e = fails(tool("layer-pack").args(["-o", "-"]), b"");
    assert!(e.contains("-o -"), "{e}");
    let e = fails(&mut tool("layer-pack"), b"");
    assert!(e.contains("--layout"), "{e}");
    let e = fails(tool("layer-pack").args(["--layout", s, "missing.tar"]), b"");
    assert!(e.contains("missing.tar"), "{e}");
    assert!(!store.exists(), "bad usage creates no layout");
}

/// [`sample_tree`] plus a directory of files created in the given order, some hard-linked, so
/// that two copies differ in inodes and directory order but not in content or metadata.
fn tree_in_order(root: &Path, reverse: bool) {
    sample_with_big_file(root);
    let mut names: Vec<String> = (0..40).map(|i| format!("many/f{i:02}")).collect();
    if reverse {
        names.reverse();
    }
    for n in &names {
        file(root, n, n.as_bytes(), 0o644, 1_600_001_000);
    }
    for (target, link) in [("many/f03", "many/z-link"), ("many/f31", "many/a-link")] {
        std::fs::hard_link(root.join(target), root.join(link)).unwrap();
    }
    mtime(root, "many", 1_600_001_000);
}

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempdir();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mount -t tmpfs failed");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// The same tree made in opposite orders on /var/tmp's file system (ext4 on a Debian machine,
/// overlay in most containers) and on a fresh tmpfs: two directory-order implementations,
/// checked with statfs, not assumed.
#[test]
fn a_directory_packs_the_same_on_two_file_systems_in_any_order_whatever_the_threads() {
    if !needs_root("mounting a tmpfs") {
        return;
    }
    let disk = tempfile::Builder::new()
        .prefix("layerkit-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let tmpfs = Tmpfs::mount();
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    let fs_type = |p: &Path| rustix::fs::statfs(p).expect("statfs").f_type as u64;
    assert_eq!(fs_type(tmpfs.0.path()), TMPFS_MAGIC, "the mount is not a tmpfs");
    assert_ne!(
        fs_type(disk.path()),
        TMPFS_MAGIC,
        "/var/tmp is a tmpfs too: this test needs two kinds of file system"
    );
    let (a, b) = (disk.path().join("src"), tmpfs.0.path().join("src"));
    tree_in_order(&a, false);
    tree_in_order(&b, true);
    assert_eq!(snapshot(&a), snapshot(&b), "the two copies hold the same tree");
    let out = tempdir();
    let store = out.path().join("store");
    let s = store.to_str().unwrap();
    for c in ["gzip", "zstd"] {
        let mut descs = Vec::new();
        for (dir, threads) in [(&a, "1"), (&a, "2"), (&b, "1"), (&b, "2")] {
            let d = pack(
                &[
                    "--layout",
                    s,
                    "--compress",
                    c,
                    "--threads",
                    threads,
                    dir.to_str().unwrap(),
                ],
                b"",
            );
            descs.push((d["digest"].clone(), d["diffID"].clone()));
        }
        assert!(descs.iter().all(|d| *d == descs[0]), "{c}: {descs:?}");
    }
    // The same tar as layer-diff writes against an empty tree: the base layer of that tree.
    let empty = out.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let diff = ok(tool("layer-diff").arg(&empty).arg(&a), b"");
    let packed = pack(
        &[
            "-o",
            out.path().join("l.tar").to_str().unwrap(),
            "--compress",
            "none",
            a.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(packed["diffID"], sha256(&diff));
    assert!(std::fs::read(out.path().join("l.tar")).unwrap() == diff);
}

#[test]
fn refuses_to_pack_a_directory_into_itself() {
    let t = tempdir();
    let src = t.path().join("src");
    sample_tree(&src);
    let before = snapshot(&src);
    let inner = src.join("store");
    let e = fails(
        tool("layer-pack").args(["--layout", inner.to_str().unwrap(), src.to_str().unwrap()]),
        b"",
    );
    assert!(e.contains("inside the directory being packed"), "{e}");
    assert_eq!(snapshot(&src), before, "nothing was left in the directory");
}

/// `-o` never replaces a device or a fifo with the blob (as root, `-o /dev/null` once did).
#[test]
fn output_that_is_not_a_regular_file_is_refused() {
    let t = tempdir();
    let fifo = t.path().join("fifo");
    sh(&format!("mkfifo {}", fifo.display()));
    let e = fails(
        tool("layer-pack").args(["-o", fifo.to_str().unwrap()]),
        &[0u8; 1024],
    );
    assert!(e.contains("not a regular file"), "{e}");
    let ft = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&ft),
        "the fifo is still a fifo"
    );
}

#[test]
fn source_date_epoch_clamps_newer_mtimes_of_a_directory() {
    let t = tempdir();
    let src = t.path().join("src");
    file(&src, "new", b"new", 0o644, 1_600_000_000);
    file(&src, "old", b"old", 0o644, 500);
    file(&src, "olddir/f", b"f", 0o644, 800);
    mtime(&src, "olddir", 700);
    file(&src, "newdir/f", b"f", 0o644, 1_600_000_000); // newdir: mtime now
    let (f, store) = (t.path().join("layer.tar"), t.path().join("store"));
    let with_epoch = |args: &[&str]| {
        let mut cmd = tool("layer-pack");
        cmd.env("SOURCE_DATE_EPOCH", "1000")
            .args(["--compress", "none"])
            .args(args)
            .arg(&src);
        let desc: Value = serde_json::from_slice(&ok(&mut cmd, b"")).unwrap();
        desc
    };
    let to_file = with_epoch(&["-o", f.to_str().unwrap()]);
    let to_layout = with_epoch(&["--layout", store.to_str().unwrap()]);
    assert_eq!(to_file["digest"], to_layout["digest"]);
    for tar in [std::fs::read(&f).unwrap(), blob(&store, &to_layout)] {
        let got = tar_mtimes(&tar);
        assert_eq!(got.len(), 6, "{got:?}");
        assert!(got.iter().all(|(_, m)| *m <= 1000), "{got:?}");
        let of = |n: &str| got.iter().find(|(name, _)| name == n).unwrap().1;
        assert_eq!((of("new"), of("newdir"), of("newdir/f")), (1000, 1000, 1000));
        assert_eq!((of("old"), of("olddir"), of("olddir/f")), (500, 700, 800), "kept");
    }
    let plain = pack(
        &[
            "--compress",
            "none",
            "-o",
            f.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
        b"",
    );
    assert_ne!(plain["digest"], to_file["digest"]);
    assert!(tar_mtimes(&std::fs::read(&f).unwrap()).contains(&("new".into(), 1_600_000_000)));
}

/// The header of each gzip member of `blob` (its first 10 bytes), walking member by member,
/// and the concatenation of what they hold.
fn gzip_members(blob: &[u8]) -> (Vec<[u8; 10]>, Vec<u8>) {
    let (mut headers, mut data, mut rest) = (Vec::new(), Vec::new(), blob);
    while !rest.is_empty() {
        headers.push(rest[..10].try_into().unwrap());
        let mut member = flate2::bufread::GzDecoder::new(rest);
        member.read_to_end(&mut data).expect("a gzip member");
        let after = member.into_inner();
        assert!(
            after.len() < rest.len(),
            "no progress at byte {}",
            blob.len() - rest.len()
        );
        rest = after;
    }
    (headers, data)
}

#[test]
fn gzip_members_carry_no_name_and_no_time() {
    let t = tempdir();
    sample_with_big_file(&t.path().join("src"));
    let input = gnu_tar(&t.path().join("src"));
    let out = t.path().join("layer.tar.gz");
    pack(&["-o", out.to_str().unwrap()], &input);
    let (headers, data) = gzip_members(&std::fs::read(&out).unwrap());
    assert!(data == input, "the members hold the input, in order");
    assert!(headers.len() >= 3, "several members: {}", headers.len());
    for (i, h) in headers.iter().enumerate() {
        assert_eq!(h[..3], [0x1f, 0x8b, 8], "member {i}: gzip, deflate");
        assert_eq!(
            h[3] & (0x08 | 0x10),
            0,
            "member {i}: FNAME or FCOMMENT set: {h:?}"
        );
        assert_eq!(h[4..8], [0; 4], "member {i}: MTIME is not 0: {h:?}");
    }
}

#[test]
fn level_changes_the_blob_not_the_diff_id() {
    let t = tempdir();
    sample_with_big_file(&t.path().join("src"));
    let input = gnu_tar(&t.path().join("src"));
    for (c, media_type) in [
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
    ] {
        let descs: Vec<(Value, Vec<u8>)> = ["1", "9"]
            .iter()
            .map(|level| {
                let out = t.path().join(format!("{c}-{level}"));
                let o = out.to_str().unwrap();
                let d = pack(&["-o", o, "--compress", c, "--level", level], &input);
                (d, std::fs::read(&out).unwrap())
            })
            .collect();
        let ((fast, fast_blob), (best, best_blob)) = (&descs[0], &descs[1]);
        assert_ne!(
            fast["digest"], best["digest"],
            "{c}: --level 1 and 9 give the same blob"
        );
        assert_eq!(fast["diffID"], best["diffID"], "{c}");
        assert_eq!(fast["diffID"], sha256(&input), "{c}");
        assert!(decompress(fast_blob, media_type) == input, "{c} --level 1");
        assert!(decompress(best_blob, media_type) == input, "{c} --level 9");
    }
}

/// The `.layerkit-tmp-` files in `dir` (what a writer leaves when it fails to clean up).
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".layerkit-tmp"))
        .collect()
}

#[test]
fn output_file_is_left_alone_when_the_tar_is_truncated() {
    use std::os::unix::fs::MetadataExt;
    let t = tempdir();
    sample_with_big_file(&t.path().join("src"));
    let input = gnu_tar(&t.path().join("src"));
    // Cut 2 MB into the big file's content: compressed blocks have reached the temp file.
    let big = tar::Archive::new(&input[..])
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path_bytes().ends_with(b"big.bin"))
        .unwrap()
        .raw_file_position() as usize;
    let out_dir = t.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let (fresh, existing) = (out_dir.join("fresh.gz"), out_dir.join("existing.gz"));
    std::fs::write(&existing, b"the previous blob").unwrap();
    let ino = std::fs::metadata(&existing).unwrap().ino();
    for (what, cut) in [
        ("cut inside a header", 700),
        ("cut inside content", big + 2_000_000),
    ] {
        for dest in [&fresh, &existing] {
            for c in ["gzip", "zstd", "none"] {
                let err = fails(
                    tool("layer-pack").args(["-o", dest.to_str().unwrap(), "--compress", c]),
                    &input[..cut],
                );
                assert!(
                    err.contains(&format!("stdin: truncated tar at byte {cut}")),
                    "{what}: {err}"
                );
                assert!(!fresh.exists(), "{what}, {c}: FILE was created");
                assert_eq!(
                    std::fs::read(&existing).unwrap(),
                    b"the previous blob",
                    "{what}, {c}"
                );
                assert_eq!(std::fs::metadata(&existing).unwrap().ino(), ino, "{what}, {c}");
                assert_eq!(temp_files(&out_dir), Vec::<String>::new(), "{what}, {c}");
            }
        }
    }
}

/// `-o FILE` is durable as a layout's blob is: the file is fsynced before the rename, and the
/// directory holding FILE after it (without that, a power cut can lose the rename itself and
/// leave the old file, or none, behind a descriptor already printed). Watched with strace: after
/// the rename onto FILE, the directory is opened and that descriptor fsynced.
#[test]
fn output_file_and_its_directory_are_synced_after_the_rename() {
    let Some(strace) = peer("strace") else { return };
    let t = tempdir();
    let src = t.path().join("src");
    sample_tree(&src);
    let input = t.path().join("in.tar");
    std::fs::write(&input, gnu_tar(&src)).unwrap();
    let out_dir = t.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("layer.tar.gz");
    let trace = t.path().join("trace");
    ok(
        Command::new(strace)
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=openat,rename,renameat,renameat2,fsync,fdatasync",
                "-o",
            ])
            .arg(&trace)
            .arg(bin_dir().join("layer-pack"))
            .arg("-o")
            .arg(&dest)
            .arg(&input)
            .env_remove("SOURCE_DATE_EPOCH"),
        b"",
    );
    let trace = std::fs::read_to_string(&trace).unwrap();
    // "PID call(args) = result", one call per line (-qq; the calls watched do not block).
    let calls: Vec<&str> = trace
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, call)| call.trim_start()))
        .collect();
    let quoted = |p: &Path| format!("\"{}\"", p.display());
    let renamed = calls
        .iter()
        .position(|c| {
            c.starts_with("rename") && c.contains(&format!("{})", quoted(&dest))) && c.ends_with("= 0")
        })
        .unwrap_or_else(|| panic!("no rename onto {}:\n{trace}", dest.display()));
    let after = &calls[renamed + 1..];
    let opened = format!("openat(AT_FDCWD, {}, ", quoted(&out_dir));
    let synced = after.iter().enumerate().any(|(i, call)| {
        let Some((_, fd)) = call.strip_prefix(&opened).and_then(|rest| rest.rsplit_once("= ")) else {
            return false;
        };
        let (fsync, fdatasync) = (format!("fsync({fd})"), format!("fdatasync({fd})"));
        after[i + 1..]
            .iter()
            .any(|c| c.starts_with(&fsync) || c.starts_with(&fdatasync))
    });
    assert!(synced, "the directory is not fsynced after the rename:\n{trace}");
    assert!(dest.is_file());
}

#[test]
fn a_blob_already_in_the_layout_is_not_rewritten() {
    use std::os::unix::fs::MetadataExt;
    let t = tempdir();
    sample_with_big_file(&t.path().join("src"));
    let src = t.path().join("src");
    let input = gnu_tar(&src);
    let store = t.path().join("store");
    let s = store.to_str().unwrap();
    for (what, args, stdin) in [
        ("a tar", vec!["--layout", s], &input[..]),
        (
            "a directory",
            vec!["--layout", s, src.to_str().unwrap()],
            &b""[..],
        ),
    ] {
        let first = pack(&args, stdin);
        assert!(first.get("reused").is_none(), "{what}: {first}");
        let digest = first["digest"].as_str().unwrap();
        let path = store.join("blobs/sha256").join(&digest[7..]);
        let (ino, bytes) = (
            std::fs::metadata(&path).unwrap().ino(),
            std::fs::read(&path).unwrap(),
        );
        let again = pack(&args, stdin);
        assert_eq!(again["reused"], true, "{what}: {again}");
        assert_eq!(again["digest"], first["digest"], "{what}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "{what}: the blob was replaced"
        );
        assert!(std::fs::read(&path).unwrap() == bytes, "{what}");
        assert_eq!(temp_files(&store), Vec::<String>::new(), "{what}");
        assert_eq!(
            temp_files(&store.join("blobs/sha256")),
            Vec::<String>::new(),
            "{what}"
        );
    }
}

/// The descriptor carries the layer's content size, docker's SIZE, worked out by hand: a
/// 33-byte file, a symlink to "app.js" (6: its target's length), a hard link to the file
/// (nothing more), a whiteout (0): 39, from a tar (GNU tar's) into a layout and into a file,
/// and from the directory (without the whiteout, which a directory cannot hold).
#[test]
fn the_descriptor_carries_the_content_size() {
    let dir = tempdir();
    let d = dir.path();
    file(
        d,
        "tree/srv/app.js",
        b"console.log('hello from layer');\n",
        0o644,
        1_700_000_000,
    );
    std::os::unix::fs::symlink("app.js", d.join("tree/srv/current")).unwrap();
    std::fs::hard_link(d.join("tree/srv/app.js"), d.join("tree/srv/again.js")).unwrap();
    let tree = d.join("tree").display().to_string();
    let store = d.join("store").display().to_string();
    let from_dir = pack(&["--layout", &store, &tree], b"");
    file(d, "tree/etc/.wh.hostname", b"", 0o644, 1_700_000_000);
    let tar = gnu_tar(&d.join("tree"));
    let out = d.join("layer.tar.gz").display().to_string();
    for desc in [
        pack(&["--layout", &store], &tar),
        pack(&["-o", &out], &tar),
        from_dir,
    ] {
        assert_eq!(desc["contentSize"], json!(39), "{desc}");
    }
}

/// A tree made of fixed bytes with fixed modes, owners and mtimes, as the pinned digests below
/// need: a config file (0:0) and a 2.5 MiB log of numbered lines (1000:1000, three gzip
/// members), in two directories, and a symlink to the log.
fn fixed_tree(root: &Path) {
    let log: String = (0..200_000u64)
        .map(|i| format!("line {i}: {}\n", i * 7919 % 10007))
        .collect();
    let log = &log.as_bytes()[..5 << 19];
    file(
        root,
        "etc/app.conf",
        b"name = layerkit\nlevel = 6\n",
        0o644,
        1_700_000_000,
    );
    file(root, "srv/log/app.log", log, 0o640, 1_700_000_100);
    std::os::unix::fs::symlink("log/app.log", root.join("srv/latest")).expect("symlink");
    std::os::unix::fs::chown(root.join("srv/log/app.log"), Some(1000), Some(1000)).expect("chown");
    std::os::unix::fs::lchown(root.join("srv/latest"), Some(1000), Some(1000)).expect("lchown");
    for d in ["etc", "srv", "srv/log"] {
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for (p, t) in [
        ("srv/latest", 1_700_000_200),
        ("srv/log", 1_700_000_300),
        ("srv", 1_700_000_400),
        ("etc", 1_700_000_500),
    ] {
        mtime(root, p, t);
    }
}

/// The layer of a fixed tree has a pinned digest: a change of the bytes layer-pack writes for
/// the same tree at the same level (a new libdeflate in Cargo.lock, another block size or gzip
/// header, another tar header) changes every layer digest from then on, and must not go
/// unseen. If only `digest` changes, the compressor did (libdeflate 1.26 via libdeflater 1.26.1
/// gives this value): update README's table of which versions give which bytes. If `diffID`
/// changes too, the tar writer did.
///
/// The diffID pins our tar of the tree (its entries are what GNU tar lists, checked below).
/// The digest was worked out from that tar independently of our compressor code, with the
/// Python wrapper of libdeflate (PyPI `deflate` 0.9.0): `b"".join(deflate.gzip_compress(
/// tar[o:o + 2**20], 6) for o in range(0, len(tar), 2**20))`, then sha256; the same value for
/// 1 and 2 threads.
#[test]
fn the_layer_of_a_fixed_tree_has_a_pinned_digest() {
    if !needs_root("the fixed tree's foreign owners") {
        return;
    }
    let t = tempdir();
    let src = t.path().join("src");
    fixed_tree(&src);
    let out = t.path().join("layer.tar.gz");
    for threads in ["1", "2"] {
        let desc = pack(
            &[
                "-o",
                out.to_str().unwrap(),
                "--level",
                "6",
                "--threads",
                threads,
                src.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(
            (desc["diffID"].as_str(), desc["digest"].as_str()),
            (
                Some("sha256:803b8cb5c9940f79d8067f04285585765ddadd3417cc8fce1a55f76e8521fc9a"),
                Some("sha256:7045f66b2f7c5020fc6f5ee4ca29d6f9b62407a92bdcc8032412d684d5b8e2c0")
            ),
            "{threads} threads"
        );
    }
    // The tree as set up above, in UTC (1_700_000_000 is 2023-11-14 22:13:20).
    let listing = sh(&format!(
        "TZ=UTC tar --full-time --numeric-owner -tvzf {}",
        out.display()
    ));
    let lines: Vec<String> = String::from_utf8(listing)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "drwxr-xr-x 0/0 0 2023-11-14 22:21:40 etc/",
            "-rw-r--r-- 0/0 26 2023-11-14 22:13:20 etc/app.conf",
            "drwxr-xr-x 0/0 0 2023-11-14 22:20:00 srv/",
            "lrwxrwxrwx 1000/1000 0 2023-11-14 22:16:40 srv/latest -> log/app.log",
            "drwxr-xr-x 0/0 0 2023-11-14 22:18:20 srv/log/",
            "-rw-r----- 1000/1000 2621440 2023-11-14 22:15:00 srv/log/app.log",
        ]
    );
}

/// `docker import` reads a gzip- or zstd-compressed tar as the tar it holds: so does
/// layer-pack, by path and on stdin. The compressed forms come from gzip(1) and zstd(1); the
/// diffID expected is the sha256 of the plain tar, and the blob is the one the plain tar gives.
#[test]
fn compressed_tars_are_packed_as_the_tar_they_hold() {
    let t = tempdir();
    sample_with_big_file(&t.path().join("src"));
    let plain = gnu_tar(&t.path().join("src"));
    let store = t.path().join("store");
    let store_arg = store.to_str().unwrap();
    let gz = ok(Command::new("gzip").args(["-c", "-9"]), &plain);
    let zst = ok(Command::new("zstd").args(["-q", "-c", "-19"]), &plain);
    // Two gzip members, as pigz and `cat a.gz b.gz` make them: one stream.
    let half = plain.len() / 2;
    let mut members = ok(Command::new("gzip").args(["-c", "-n"]), &plain[..half]);
    members.extend(ok(Command::new("gzip").args(["-c", "-n"]), &plain[half..]));
    for (c, media_type) in CODECS {
        let want = pack(&["--layout", store_arg, "--compress", c], &plain);
        assert_eq!(want["diffID"], sha256(&plain));
        for (name, bytes) in [("base.tar.gz", &gz), ("base.tar.zst", &zst), ("two.gz", &members)] {
            let path = t.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let by_path = pack(
                &["--layout", store_arg, "--compress", c, path.to_str().unwrap()],
                b"",
            );
            let on_stdin = pack(&["--layout", store_arg, "--compress", c], bytes);
            for (how, got) in [("by path", by_path), ("on stdin", on_stdin)] {
                for key in ["diffID", "digest", "size", "uncompressedSize", "mediaType"] {
                    assert_eq!(got[key], want[key], "{name} {how} --compress {c}: {key}");
                }
                assert_eq!(got["reused"], true, "{name} {how}: the plain tar's blob");
            }
        }
        assert_eq!(decompress(&blob(&store, &want), media_type), plain, "{c}");
    }
}

/// `layer-pack --layout store` with a terminal on stdin waits for a tar no one types: refused,
/// as writing a tar to a terminal is, and no layout is made. `script` gives it the terminal.
#[test]
fn a_tar_is_not_read_from_a_terminal() {
    let t = tempdir();
    let store = t.path().join("store");
    let bin = tool_path("layer-pack");
    let cmd = format!("{} --layout {}; echo rc=$?", bin.display(), store.display());
    let Some(text) = on_terminal(&cmd) else {
        return;
    };
    assert!(
        text.contains("layer-pack: refusing to read a tar stream from a terminal") && text.contains("rc=2"),
        "{text}"
    );
    assert!(!store.exists(), "no layout for a refused run");
}

/// A layout created for a pack is said on stderr, once (a mistyped path is seen at once); an
/// existing one is not, nor with -q, nor when a failed pack removed the layout it made.
#[test]
fn a_layout_it_creates_is_said_once() {
    let t = tempdir();
    let tar = gnu_tar(&{
        let src = t.path().join("src");
        file(&src, "a", b"a", 0o644, 1_600_000_000);
        src
    });
    let new = |args: &[&str], stdin: &[u8]| {
        let out = run(tool("layer-pack").args(args).current_dir(t.path()), stdin);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        new(&["--layout", "web"], &tar),
        (Some(0), "layer-pack: created OCI layout web/\n".to_string())
    );
    assert_eq!(new(&["--layout", "web"], &tar), (Some(0), String::new()));
    assert_eq!(
        new(&["--layout", "./quiet/", "-q"], &tar),
        (Some(0), String::new())
    );
    assert!(t.path().join("quiet/oci-layout").is_file());
    let (code, err) = new(&["--layout", "failed"], &tar[..700]);
    assert_eq!(code, Some(2));
    assert!(!err.contains("created"), "{err}");
    assert!(!t.path().join("failed").exists());
}

/// `--layout web:v1` would make a directory no IMAGE can name (an IMAGE splits at its first
/// `:`, so `web:v1:x` is the tag `v1:x` of a layout `web`): refused, with the split meant.
#[test]
fn a_layout_path_holding_a_colon_is_refused() {
    let t = tempdir();
    for layout in ["web:v1", "a/b:c"] {
        let err = fails(
            tool("layer-pack")
                .args(["--layout", layout])
                .current_dir(t.path()),
            b"\0".repeat(1024).as_slice(),
        );
        assert!(
            err.starts_with("layer-pack: usage: ") && err.contains("a layout path cannot hold ':'"),
            "{err}"
        );
        assert!(!t.path().join(layout).exists(), "{layout}");
    }
    let err = fails(
        tool("layer-pack")
            .args(["--layout", "web:v1"])
            .current_dir(t.path()),
        b"",
    );
    assert!(
        err.contains("did you mean the layout web, and the image web:v1 in it?"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
}
