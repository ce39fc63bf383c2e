//! GNU tar's PAX sparse files (formats 0.0, 0.1 and 1.0) in layers (issue 18): every tool reads
//! the file's real name, size and content, and `image-stack --rootfs` keeps its holes. The
//! layers are made by GNU tar itself; expected values come from GNU tar's own extraction of the
//! same archive and from the tree the archive was made from.

use crate::support::*;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

const VERSIONS: [&str; 3] = ["0.0", "0.1", "1.0"];

/// A source tree of sparse files, GNU tar's archive of it in each format, GNU tar's own
/// extraction of each archive, and a layout holding each archive as the image `store:VERSION`.
struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    src: PathBuf,
    files: Vec<&'static str>,
}

impl Fixture {
    fn new() -> Fixture {
        let t = tempdir();
        let dir = t.path().to_path_buf();
        let src = dir.join("src");
        let files = sparse_tree(&src);
        for v in VERSIONS {
            let archive = dir.join(format!("{v}.tar"));
            std::fs::write(&archive, gnu_sparse_tar(&src, v)).unwrap();
            let x = dir.join(format!("x{v}"));
            std::fs::create_dir(&x).unwrap();
            ok(
                std::process::Command::new("tar")
                    .args(["--numeric-owner", "-xf"])
                    .arg(&archive)
                    .arg("-C")
                    .arg(&x),
                b"",
            );
            sh(&format!(
                "cd {} && layer-pack --layout store {v}.tar | image-stack --layer - --tag store:{v}",
                dir.display()
            ));
        }
        Fixture {
            _dir: t,
            dir,
            src,
            files,
        }
    }

    fn image(&self, version: &str) -> String {
        format!("{}:{version}", self.dir.join("store").display())
    }

    fn archive(&self, version: &str) -> PathBuf {
        self.dir.join(format!("{version}.tar"))
    }

    /// GNU tar's extraction of the archive in `version`.
    fn gnu_x(&self, version: &str) -> PathBuf {
        self.dir.join(format!("x{version}"))
    }
}

fn tar_x(tar: &[u8], into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    ok(
        std::process::Command::new("tar")
            .args(["--numeric-owner", "-xf", "-", "-C"])
            .arg(into),
        tar,
    );
}

#[test]
fn rootfs_is_what_gnu_tar_extracts_holes_included() {
    let f = Fixture::new();
    for v in VERSIONS {
        let ours = f.dir.join(format!("rootfs{v}"));
        ok(
            tool("image-stack")
                .args(["--from", &f.image(v), "--rootfs"])
                .arg(&ours),
            b"",
        );
        let theirs = f.gnu_x(v);
        // Names, types, modes, owners, mtimes, sizes and content.
        assert_eq!(snapshot(&ours), snapshot(&theirs), "format {v}");
        for name in &f.files {
            let (o, t) = (
                std::fs::metadata(ours.join(name)).unwrap(),
                std::fs::metadata(theirs.join(name)).unwrap(),
            );
            assert!(
                o.blocks() <= t.blocks(),
                "{name} (format {v}): {} blocks, GNU tar's extraction {}",
                o.blocks(),
                t.blocks()
            );
        }
        assert_eq!(
            std::fs::metadata(ours.join("var/allhole")).unwrap().blocks(),
            0,
            "format {v}: a file of holes only takes no block"
        );
    }
}

#[test]
fn a_sparse_gigabyte_costs_its_data_only() {
    let t = tempdir();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let gib = 1u64 << 30;
    let f = std::fs::File::create(src.join("disk.img")).unwrap();
    f.write_all_at(b"MBR!", 0).unwrap();
    f.write_all_at(b"last", gib - 4).unwrap();
    drop(f);
    std::fs::write(t.path().join("1.0.tar"), gnu_sparse_tar(&src, "1.0")).unwrap();
    sh(&format!(
        "cd {} && layer-pack --layout store 1.0.tar | image-stack --layer - --tag store:big \
         && image-stack --from store:big --rootfs out",
        t.path().display()
    ));
    let out = std::fs::File::open(t.path().join("out/disk.img")).unwrap();
    let m = out.metadata().unwrap();
    assert_eq!(m.len(), gib);
    // Two 4-byte runs: a block each on any file system (4 KiB here, 64 KiB at most).
    assert!(m.blocks() * 512 <= 2 * 65536, "{} blocks", m.blocks());
    let mut head = [0u8; 4];
    out.read_exact_at(&mut head, 0).unwrap();
    let mut tail = [0u8; 4];
    out.read_exact_at(&mut tail, gib - 4).unwrap();
    assert_eq!((&head, &tail), (b"MBR!", b"last"));
}

#[test]
fn the_flat_tar_holds_the_real_files_expanded() {
    let f = Fixture::new();
    for v in VERSIONS {
        let out = ok(tool("image-stack").args(["--from", &f.image(v), "--tar"]), b"");
        // Expanded, by choice (image-spec: sparse files SHOULD NOT be used in layers): plain
        // entries of the real size, no sparse records.
        assert!(
            !out.windows(11).any(|w| w == b"GNU.sparse."),
            "format {v}: sparse records in --tar"
        );
        let mut sizes = Vec::new();
        for e in tar::Archive::new(&out[..]).entries().unwrap() {
            let e = e.unwrap();
            assert_ne!(e.header().entry_type(), tar::EntryType::GNUSparse);
            if e.header().entry_type().is_file() {
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                sizes.push((name, e.size()));
            }
        }
        let expected: Vec<(String, u64)> = f
            .files
            .iter()
            .map(|n| {
                let len = std::fs::metadata(f.src.join(n)).unwrap().len();
                (n.to_string(), len)
            })
            .collect();
        let mut sorted = expected.clone();
        sorted.sort();
        sizes.sort();
        assert_eq!(sizes, sorted, "format {v}");
        let y = f.dir.join(format!("flat{v}"));
        tar_x(&out, &y);
        // Our tar writer writes whole seconds (as moby's does); GNU tar kept the nanoseconds.
        assert_eq!(snapshot(&y), whole_seconds(&snapshot(&f.gnu_x(v))), "format {v}");
        // The same image always gives the same bytes.
        assert!(
            ok(tool("image-stack").args(["--from", &f.image(v), "--tar"]), b"") == out,
            "format {v}: --tar is not deterministic"
        );
    }
}

#[test]
fn layer_diff_sees_the_real_paths_and_content() {
    let f = Fixture::new();
    let empty = f.dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    // The source tree with one byte written inside a hole of var/several, size and mtime kept.
    let changed = f.dir.join("changed");
    tar_x(&gnu_sparse_tar(&f.src, "1.0"), &changed);
    let several = std::fs::OpenOptions::new()
        .write(true)
        .open(changed.join("var/several"))
        .unwrap();
    several.write_all_at(b"!", 100_000).unwrap();
    drop(several);
    mtime(&changed, "var/several", 1_650_000_000);
    let mut added: Vec<String> = f.files.iter().map(|n| format!("A /{n}")).collect();
    added.push("A /var".into());
    added.sort();
    let list = |args: &[&std::ffi::OsStr], stdin: &[u8]| -> Vec<String> {
        let out = ok(tool("layer-diff").arg("--list").args(args), stdin);
        let mut lines: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    for v in VERSIONS {
        let image = std::ffi::OsString::from(f.image(v));
        let archive = f.archive(v).into_os_string();
        let bytes = std::fs::read(f.archive(v)).unwrap();
        let (src, empty, changed) = (f.src.as_os_str(), empty.as_os_str(), changed.as_os_str());
        let stdin = std::ffi::OsStr::new("-");
        let ignore_times = std::ffi::OsStr::new("--ignore-times");
        for upper in [&image, &archive] {
            assert_eq!(list(&[empty, upper], b""), added, "format {v}");
            assert!(list(&[src, upper], b"").is_empty(), "format {v}");
            assert!(list(&[ignore_times, src, upper], b"").is_empty(), "format {v}");
            assert_eq!(
                list(&[ignore_times, changed, upper], b""),
                ["C /var", "C /var/several"],
                "format {v}"
            );
        }
        assert_eq!(list(&[empty, stdin], &bytes), added, "format {v}");
        assert!(list(&[ignore_times, src, stdin], &bytes).is_empty(), "format {v}");

        // The changeset carries the real files, whichever way the archive comes in.
        let from_image = ok(tool("layer-diff").arg(empty).arg(&image), b"");
        let from_file = ok(tool("layer-diff").arg(empty).arg(&archive), b"");
        let from_stdin = ok(tool("layer-diff").arg(empty).arg("-"), &bytes);
        assert!(from_file == from_image && from_stdin == from_image, "format {v}");
        let z = f.dir.join(format!("changeset{v}"));
        tar_x(&from_image, &z);
        assert_eq!(snapshot(&z), whole_seconds(&snapshot(&f.gnu_x(v))), "format {v}");
    }
}

#[test]
fn wasted_counts_a_sparse_files_real_size() {
    let f = Fixture::new();
    // A layer removing var/several, written by GNU tar.
    let rm = f.dir.join("rm");
    file(&rm, "var/.wh.several", b"", 0o644, 1_650_000_000);
    sh(&format!(
        "cd {} && tar --numeric-owner -C rm -cf rm.tar var/.wh.several \
         && layer-pack --layout store rm.tar | image-stack --from store:1.0 --layer - --tag store:rm",
        f.dir.display()
    ));
    let out = ok(
        tool("image-history").args(["--wasted", "--format", "json", &f.image("rm")]),
        b"",
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let real = std::fs::metadata(f.src.join("var/several")).unwrap().len();
    let files: Vec<&serde_json::Value> = rows
        .iter()
        .filter_map(|r| r["wastedFiles"].as_array())
        .flatten()
        .collect();
    assert_eq!(files.len(), 1, "{rows:?}");
    assert_eq!(files[0]["path"], "/var/several");
    assert_eq!(files[0]["size"], real);
}

/// Hand-made hostile maps (fuzz/seeds.sh writes them with Python's tarfile): layer-pack refuses
/// each with one line naming the file and what is wrong, exit 2, and the layout is unchanged.
#[test]
fn layer_pack_refuses_hostile_sparse_maps() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/tar_changeset");
    let cases = [
        ("order", "f: sparse map (format 0.1): segment 2 starts at 50"),
        ("overlap", "out of order or overlapping"),
        ("past-size", "ends past the file's size, 100"),
        ("overflow", "ends past the largest file size"),
        ("not-decimal", "\"0x10\" is not a decimal number"),
        ("count", "GNU.sparse.numblocks says 3 pairs"),
        (
            "pairs-order",
            "GNU.sparse.numbytes where GNU.sparse.offset was expected",
        ),
        ("1.0-many", "/f: sparse map (format 1.0)"),
        ("1.0-cut", "cut short"),
        ("1.0-size", "5 bytes of data, the entry holds 700"),
        ("version", "unknown GNU sparse format version 2.0"),
    ];
    let t = tempdir();
    let store = t.path().join("store");
    sh(&format!(
        "cd {} && tar -cf base.tar --files-from /dev/null && layer-pack --layout store base.tar",
        t.path().display()
    ));
    let before = snapshot(&store);
    for (name, why) in cases {
        let seed = std::fs::read(seeds.join(format!("seed-sparse-hostile-{name}.tar"))).unwrap();
        let err = fails(tool("layer-pack").arg("--layout").arg(&store), &seed);
        assert!(err.starts_with("layer-pack: "), "{name}: {err}");
        assert!(err.contains("f: ") && err.contains(why), "{name}: {err}");
        assert_eq!(snapshot(&store), before, "{name}: the layout changed");
    }
}
