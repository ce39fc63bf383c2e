//! Helpers for the end-to-end tests: run the built binaries, make trees, compare trees, find
//! peer tools (umoci, skopeo, …).
//!
//! The binaries are the root package's, which cargo builds before it runs this test binary and
//! names in `CARGO_BIN_EXE_<tool>`; `LAYERKIT_BIN_DIR` overrides that (to test an installed or
//! release build).

pub mod docker_diff;
pub mod dockerd;
pub mod oci_check;
mod tarball;

pub use tarball::Tar;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The six tools and the binaries cargo built for this test run.
pub const TOOLS: [(&str, &str); 6] = [
    ("layer-diff", env!("CARGO_BIN_EXE_layer-diff")),
    ("layer-pack", env!("CARGO_BIN_EXE_layer-pack")),
    ("image-stack", env!("CARGO_BIN_EXE_image-stack")),
    ("image-history", env!("CARGO_BIN_EXE_image-history")),
    ("image-prune", env!("CARGO_BIN_EXE_image-prune")),
    ("image-ls", env!("CARGO_BIN_EXE_image-ls")),
];

/// The repository's root directory.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the tools' binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LAYERKIT_BIN_DIR") {
        return PathBuf::from(d);
    }
    Path::new(TOOLS[0].1)
        .parent()
        .expect("target/<profile>")
        .to_path_buf()
}

/// The binary of one of our tools.
pub fn tool_path(name: &str) -> PathBuf {
    if std::env::var_os("LAYERKIT_BIN_DIR").is_some() {
        return bin_dir().join(name);
    }
    let (_, path) = TOOLS
        .iter()
        .find(|(t, _)| *t == name)
        .unwrap_or_else(|| panic!("{name} is not one of our tools"));
    PathBuf::from(path)
}

/// A command for one of our tools, with SOURCE_DATE_EPOCH cleared so tests control it.
pub fn tool(name: &str) -> Command {
    let path = tool_path(name);
    assert!(
        path.is_file(),
        "{} is missing (cargo test builds it; with LAYERKIT_BIN_DIR, build it there)",
        path.display()
    );
    let mut c = Command::new(path);
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

/// The `.rs` files under `dirs` modified after `built` was: the sources a binary built at that
/// time does not contain.
pub fn newer_sources(built: &Path, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let built = std::fs::metadata(built)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    let mut newer = Vec::new();
    for dir in dirs {
        for e in walkdir::WalkDir::new(dir) {
            let e = e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            if e.path().extension().is_some_and(|x| x == "rs")
                && e.metadata().expect("stat").modified().expect("mtime") > built
            {
                newer.push(e.into_path());
            }
        }
    }
    newer
}

/// Runs a command with the given stdin, collecting everything.
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("waiting for child");
    let _ = feeder.join();
    out
}

/// Runs and asserts success; returns stdout.
pub fn ok(cmd: &mut Command, stdin: &[u8]) -> Vec<u8> {
    let out = run(cmd, stdin);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs and asserts failure with exit status 2 and a one-line error; returns stderr.
pub fn fails(cmd: &mut Command, stdin: &[u8]) -> String {
    let out = run(cmd, stdin);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{cmd:?}: expected exit 2, stderr: {err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{cmd:?}: expected one line, got: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Runs a shell command line (bash -o pipefail), asserting success; returns stdout.
pub fn sh(script: &str) -> Vec<u8> {
    let mut c = Command::new("bash");
    c.args(["-o", "pipefail", "-c", script])
        .env("PATH", path_with_tools());
    c.env_remove("SOURCE_DATE_EPOCH");
    ok(&mut c, b"")
}

/// Runs a bash script in `dir` with our tools first on PATH; returns stdout.
/// A tool's output as text: our tools and the peers print UTF-8.
pub fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("UTF-8 output")
}

pub fn sh_in(dir: &Path, script: &str) -> Vec<u8> {
    sh(&format!("cd '{}' && {script}", dir.display()))
}

/// PATH with our binaries first, for shell pipelines.
pub fn path_with_tools() -> String {
    format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// True in CI, where a missing peer tool is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds a peer tool on PATH. Missing: panics in CI, otherwise prints a visible skip notice
/// and returns None.
pub fn peer(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !in_ci(),
            "peer tool {name} is missing in CI (the Makefile installs it)"
        );
        eprintln!("SKIPPED: peer tool {name} is not installed (make test installs it as root)");
    }
    found
}

/// Runs the shell command line `cmd` on a terminal (`script` makes stdin, stdout and stderr a
/// pty), for 20 seconds at most; returns what the terminal showed. None, with a visible skip,
/// without `script`.
pub fn on_terminal(cmd: &str) -> Option<String> {
    let script = peer("script")?;
    let out = Command::new("timeout")
        .arg("20")
        .arg(script)
        .args(["-qec", cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running script");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// umoci's version (`umoci --version`: "umoci version 0.4.7+ds-3+b7"), for the tests that
/// expect a quirk of the versions they name and must not hold a newer umoci to it.
pub fn umoci_version() -> (u32, u32, u32) {
    let out = ok(Command::new("umoci").arg("--version"), b"");
    let text = String::from_utf8_lossy(&out);
    let version = text
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("umoci --version: {text}"));
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or_else(|_| panic!("umoci --version: {text}")));
    let mut next = || parts.next().unwrap_or_else(|| panic!("umoci --version: {text}"));
    (next(), next(), next())
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// For a test that can only run as root: true when it may go on. Not root: fails in CI (which
/// runs as root, so a skip there would hide the test), otherwise prints a visible skip notice.
pub fn needs_root(why: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(!in_ci(), "CI runs the tests as root, but this one is not: {why}");
    eprintln!("SKIPPED: {why} needs root");
    false
}

/// `sha256:<hex>` of some bytes, hashed here with sha2 (not with the code under test).
pub fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
    )
}

/// A temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("layerkit-test-")
        .tempdir()
        .expect("tempdir")
}

/// A full description of a tree, one line per entry in sorted order: type, mode, owner, size,
/// mtime (to the nanosecond), symlink target, device numbers, xattrs, content hash and hard-link
/// group.
/// Two trees are "the same, metadata included" when their snapshots are equal. The root's own
/// metadata is left out (image-spec leaves it unspecified). `security.selinux` and
/// `user.rootlesscontainers` are left out: the host adds them.
pub fn snapshot(root: &Path) -> String {
    let mut out = String::new();
    let mut links: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut entries: Vec<walkdir::DirEntry> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by(|a, b| a.file_name().cmp(b.file_name()))
        .into_iter()
        .map(|e| e.expect("walk"))
        .collect();
    entries.sort_by(|a, b| {
        common::path::path_cmp(rel(root, a.path()).as_bytes(), rel(root, b.path()).as_bytes())
    });
    for e in entries {
        let p = e.path();
        let m = std::fs::symlink_metadata(p).expect("lstat");
        let name = rel(root, p);
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            use std::os::unix::fs::FileTypeExt;
            if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            }
        };
        let _ = write!(
            out,
            "{name} {kind} {:o} {}:{} mtime={}.{:09}",
            m.permissions().mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.mtime(),
            m.mtime_nsec()
        );
        match kind {
            "file" => {
                let mut h = sha2::Sha256::default();
                let mut f = std::fs::File::open(p).expect("open");
                let mut buf = vec![0; 1 << 16];
                loop {
                    let n = f.read(&mut buf).expect("read");
                    if n == 0 {
                        break;
                    }
                    sha2::Digest::update(&mut h, &buf[..n]);
                }
                let _ = write!(
                    out,
                    " size={} sha={}",
                    m.len(),
                    &hex::encode(sha2::Digest::finalize(h))[..16]
                );
                if m.nlink() > 1 {
                    let first = links.entry((m.dev(), m.ino())).or_insert_with(|| name.clone());
                    let _ = write!(out, " link={first}");
                }
            }
            "symlink" => {
                let _ = write!(out, " -> {}", std::fs::read_link(p).expect("readlink").display());
            }
            "char" | "block" => {
                let _ = write!(out, " rdev={}:{}", libc::major(m.rdev()), libc::minor(m.rdev()));
            }
            _ => {}
        }
        let mut names: Vec<_> = xattr::list(p)
            .unwrap_or_else(|e| panic!("{name}: listing xattrs: {e}"))
            .collect();
        names.sort();
        for n in names {
            let s = n.to_string_lossy();
            if s == "security.selinux" || s == "user.rootlesscontainers" {
                continue;
            }
            let v = xattr::get(p, &n)
                .unwrap_or_else(|e| panic!("{name}: reading xattr {s}: {e}"))
                .unwrap_or_default();
            let _ = write!(out, " xattr:{s}={}", hex::encode(v));
        }
        out.push('\n');
    }
    out
}

/// A snapshot as a tar in whole seconds carries it: every mtime's nanoseconds zeroed. Our tar
/// writer (layer-diff, layer-pack of a directory, image-stack --tar) writes whole seconds, as
/// moby does, so a tree that went through it is compared with `whole_seconds(&snapshot(src))`.
pub fn whole_seconds(snapshot: &str) -> String {
    whole_seconds_where(snapshot, |_| true)
}

/// [`whole_seconds`] for the entries a tar carries (`tar_names`, as `etc/` or `./etc`), the
/// others as they are: a tree a whole-second changeset was applied over.
pub fn whole_seconds_of(snapshot: &str, tar_names: &[String]) -> String {
    let names: std::collections::HashSet<&str> = tar_names
        .iter()
        .map(|n| n.trim_start_matches("./").trim_end_matches('/'))
        .collect();
    whole_seconds_where(snapshot, |name| names.contains(name))
}

fn whole_seconds_where(snapshot: &str, carried: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(snapshot.len());
    for line in snapshot.lines() {
        let (head, rest) = line.split_once(" mtime=").expect("a snapshot line");
        // head is "NAME KIND MODE UID:GID"; NAME may hold spaces.
        let name = head.rsplitn(4, ' ').nth(3).expect("a snapshot line");
        let (secs, tail) = rest.split_once('.').expect("mtime=SECS.NSEC");
        if carried(name) {
            let _ = writeln!(out, "{head} mtime={secs}.000000000{}", &tail[9..]);
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .expect("under root")
        .to_string_lossy()
        .into_owned()
}

/// The sub-second part of a fixture's mtime: never zero, and different from path to path (the
/// same for the same path), so that a tool that loses or mixes up nanoseconds shows in a
/// snapshot.
pub fn fixture_nsec(rel: &str) -> u32 {
    let h = rel.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h % 999_999_999) as u32 + 1
}

/// Writes a file with content, mode and mtime (`mtime` seconds and [`fixture_nsec`]).
pub fn file(root: &Path, rel: &str, content: &[u8], mode: u32, mtime: i64) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, content).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(mtime, fixture_nsec(rel)))
        .expect("mtime");
}

/// Sets a path's mtime (`mtime` seconds and [`fixture_nsec`]) without following symlinks.
pub fn mtime(root: &Path, rel: &str, mtime: i64) {
    let t = filetime::FileTime::from_unix_time(mtime, fixture_nsec(rel));
    filetime::set_symlink_file_times(root.join(rel), t, t).expect("lutimes");
}

/// Sets `rel`'s mtime to whole seconds, for a tree a peer writes back in whole seconds (umoci
/// rounds to the nearest one, so a fixture's fraction could move it).
pub fn mtime_whole(root: &Path, rel: &str, mtime: i64) {
    let t = filetime::FileTime::from_unix_time(mtime, 0);
    filetime::set_symlink_file_times(root.join(rel), t, t).expect("lutimes");
}

/// A sample tree with one entry of every kind a layer carries: regular files (one setuid, one
/// with xattrs, one hard-linked), a symlink (absolute) and a relative one, nested directories,
/// a fifo, and (as root) a character device and foreign owners. All mtimes are fixed.
pub fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root).expect("mkdir root");
    file(
        root,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n",
        0o644,
        1_600_000_000,
    );
    file(root, "etc/hostname", b"sample\n", 0o644, 1_600_000_000);
    file(root, "bin/su", b"\x7fELF setuid pretend\n", 0o4755, 1_600_000_100);
    file(
        root,
        "usr/lib/libx.so.1",
        &vec![7u8; 70_000],
        0o755,
        1_600_000_200,
    );
    std::fs::hard_link(root.join("usr/lib/libx.so.1"), root.join("usr/lib/libx-hard.so")).expect("link");
    file(
        root,
        "var/lib/data/deep/nested/file.txt",
        b"deep\n",
        0o600,
        1_600_000_300,
    );
    std::os::unix::fs::symlink("/usr/lib", root.join("lib")).expect("symlink");
    std::os::unix::fs::symlink("../etc/passwd", root.join("bin/passwd-link")).expect("symlink");
    file(root, "opt/app/tagged", b"xattr here\n", 0o640, 1_600_000_400);
    xattr::set(root.join("opt/app/tagged"), "user.layerkit.test", b"value")
        .expect("a user xattr (the tests need a TMPDIR with user xattrs)");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("run-fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    if is_root() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("dev-null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .expect("mknod");
        std::os::unix::fs::chown(root.join("opt/app/tagged"), Some(1000), Some(1001)).expect("chown");
        xattr::set(root.join("opt/app/tagged"), "trusted.layerkit", b"t").expect("a trusted xattr");
        mtime(root, "dev-null", 1_600_000_000);
    }
    for d in ["run-fifo", "lib", "bin/passwd-link"] {
        mtime(root, d, 1_600_000_000);
    }
    for d in [
        "var/lib/data/deep/nested",
        "var/lib/data/deep",
        "var/lib/data",
        "var/lib",
        "var",
        "usr/lib",
        "usr",
        "opt/app",
        "opt",
        "etc",
        "bin",
    ] {
        mtime(root, d, 1_600_000_500);
    }
}

/// What the seed walk-through does to an unpacked [`sample_tree`], as a user edits an unpacked
/// image: a page and a hard link to it, a changed file, removals (a file and a whole directory,
/// so whiteouts), a dropped setuid bit, a new xattr, and a fifo replaced by a directory.
pub fn edit_sample_tree(web: &Path) {
    file(
        web,
        "srv/htdocs/index.html",
        b"<h1>It works</h1>\n",
        0o644,
        1_650_000_000,
    );
    std::fs::hard_link(
        web.join("srv/htdocs/index.html"),
        web.join("srv/htdocs/copy.html"),
    )
    .unwrap();
    file(
        web,
        "etc/passwd",
        b"root:x:0:0::/root:/bin/sh\nwww:x:33:33::/srv:/bin/false\n",
        0o644,
        1_650_000_100,
    );
    std::fs::remove_file(web.join("etc/hostname")).unwrap();
    std::fs::remove_dir_all(web.join("var/lib/data")).unwrap();
    std::fs::set_permissions(
        web.join("bin/su"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    xattr::set(web.join("srv/htdocs/index.html"), "user.layerkit.site", b"v1").unwrap();
    std::fs::remove_file(web.join("run-fifo")).unwrap();
    file(web, "run-fifo/now-a-dir", b"x\n", 0o600, 1_650_000_200);
    mtime(web, "run-fifo", 1_650_000_200);
    for d in ["srv/htdocs", "srv", "etc", "var/lib", "bin", ""] {
        mtime(web, d, 1_650_000_300);
    }
}

/// Every entry's name and mtime: its PAX `mtime` record where it has one, else the header's.
pub fn tar_mtimes(tar: &[u8]) -> Vec<(String, i64)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes())
                .trim_end_matches('/')
                .to_string();
            let mut mtime = e.header().mtime().unwrap() as i64;
            if let Some(pax) = e.pax_extensions().unwrap() {
                for x in pax {
                    let x = x.unwrap();
                    if x.key() == Ok("mtime") {
                        let v = x.value().unwrap();
                        mtime = v.split('.').next().unwrap().parse().unwrap();
                    }
                }
            }
            (name, mtime)
        })
        .collect()
}

/// `files` files of 10 MiB of random bytes: gzip cannot shrink them, so packing, copying or
/// unpacking the tree lasts seconds (interrupts and progress need work that lasts).
pub fn random_tree(root: &Path, files: usize) {
    std::fs::create_dir_all(root).expect("mkdir");
    let mut urandom = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    for i in 0..files {
        let mut f = std::fs::File::create(root.join(format!("f{i:02}"))).expect("create");
        std::io::copy(&mut (&mut urandom).take(10 << 20), &mut f).expect("random bytes");
    }
}

/// `layer-pack --layout LAYOUT DIR | image-stack --layer - --tag LAYOUT:TAG`: the directory as
/// a one-layer image.
pub fn image_of_dir(dir: &Path, layout: &Path, tag: &str) {
    let desc = ok(tool("layer-pack").arg("--layout").arg(layout).arg(dir), b"");
    ok(
        tool("image-stack")
            .args(["--layer", "-", "--tag"])
            .arg(format!("{}:{tag}", layout.display())),
        &desc,
    );
}

/// An OCI layout holding one image `t` made of these (uncompressed) layers, written blob by
/// blob: for layers our tools refuse to pack.
pub fn raw_layout(dir: &Path, layers: &[Vec<u8>]) {
    use sha2::Digest as _;
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    let blob = |bytes: &[u8]| {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).expect("write blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let (digest, size) = blob(l);
        descs.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}),
        );
        diff_ids.push(digest);
    }
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let config = serde_json::json!({"architecture": arch, "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cd, cs) = blob(&serde_json::to_vec(&config).expect("json"));
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs});
    let (md, ms) = blob(&serde_json::to_vec(&manifest).expect("json"));
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": "t"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("write");
}

/// Files with holes under `root/var` (written with seeks: the kernel keeps what is never
/// written as holes), with fixed modes and mtimes: several holes, a hole at the end, a hole at
/// the start, no data at all, and two files GNU tar stores as plain ones (data only, empty).
/// Returns their paths relative to `root`.
pub fn sparse_tree(root: &Path) -> Vec<&'static str> {
    use std::io::{Seek, SeekFrom};
    let pattern =
        |len: usize, seed: u8| -> Vec<u8> { (0..len).map(|i| (i % 251) as u8 ^ seed | 1).collect() };
    let write = |name: &str, runs: &[(u64, Vec<u8>)], size: u64| {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let mut f = std::fs::File::create(&p).expect("create");
        for (offset, data) in runs {
            f.seek(SeekFrom::Start(*offset)).expect("seek");
            f.write_all(data).expect("write");
        }
        f.set_len(size).expect("set_len");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(1_650_000_000, 0)).expect("mtime");
    };
    write(
        "var/several",
        &[
            (0, pattern(4096, 1)),
            (200 << 10, pattern(8192, 2)),
            (1 << 20, b"end\n".to_vec()),
        ],
        (1 << 20) + 4,
    );
    write("var/tailhole", &[(0, pattern(5000, 3))], 3 << 20);
    write(
        "var/headhole",
        &[(1 << 20, pattern(10_000, 4))],
        (1 << 20) + 10_000,
    );
    write("var/allhole", &[], 2 << 20);
    write("var/dense", &[(0, pattern(3000, 5))], 3000);
    write("var/empty", &[], 0);
    mtime(root, "var", 1_650_000_000);
    vec![
        "var/several",
        "var/tailhole",
        "var/headhole",
        "var/allhole",
        "var/dense",
        "var/empty",
    ]
}

/// `tar -S --format=posix --sparse-version=VERSION` of `src` (GNU tar itself), as a layer:
/// numeric owners, no atime/ctime records. Checks that it holds PAX sparse records.
pub fn gnu_sparse_tar(src: &Path, version: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args([
            "-S",
            "--format=posix",
            &format!("--sparse-version={version}"),
            "--pax-option=delete=atime,delete=ctime",
            "--numeric-owner",
            "-C",
        ])
        .arg(src)
        .args(["-cf", "-", "."])
        .output()
        .expect("GNU tar runs");
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version_line = Command::new("tar")
        .arg("--version")
        .output()
        .expect("tar --version");
    assert!(
        version_line.stdout.starts_with(b"tar (GNU tar)"),
        "tar is not GNU tar"
    );
    assert!(
        out.stdout.windows(11).any(|w| w == b"GNU.sparse."),
        "GNU tar wrote no sparse file (format {version})"
    );
    out.stdout
}
