//! Resource bounds: hostile sizes (a gzip bomb, a million tiny entries, a 64 KiB path, 10,000
//! nested directories, a manifest of 100,000 layers, a full disk) are handled within bounded
//! memory or refused with a one-line error. Each tool's peak memory is its own ru_maxrss from
//! wait4, taken by GNU time (`/usr/bin/time -f %M`) around it: Linux carries the RSS high-water
//! mark of the spawning process across execve when the child is vfork-spawned, so a wait4 done
//! here, in a test process that has held hundreds of MB, would report the test's peak instead.

use crate::support::{Tar, ok, peer, tempdir, tool};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

/// The memory ceiling for any tool on any of these inputs.
const MAX_RSS: u64 = 200 << 20;

/// What a measured run gave.
struct Measured {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    peak: u64,
}

impl Measured {
    fn ok(&self, what: &str) -> &Self {
        assert_eq!(self.code, Some(0), "{what}: failed: {}", self.stderr);
        self
    }

    /// Exit 2 with one line naming the problem.
    fn refused(&self, what: &str, needle: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(2),
            "{what}: expected exit 2, stderr: {}",
            self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "{what}: {}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{what}: {}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "{what}: {:?} not in {}",
            needle,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` with `feed` writing its stdin (from a thread, so the input is generated on the
/// fly and never held whole) and stdout drained or kept; asserts the peak memory bound.
fn measure(what: &str, cmd: &mut Command, feed: impl FnOnce(&mut dyn Write) + Send + 'static) -> Measured {
    let time = peer("time")
        .map(|_| "/usr/bin/time")
        .expect("GNU time measures peak memory");
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let mut timed = Command::new(time);
    timed
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let mut child = timed
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let feeder = thread::spawn(move || feed(&mut input));
    let mut out = child.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        // Keep a little of stdout (descriptors, lists); a tar stream is only counted.
        let mut kept = Vec::new();
        let mut buf = vec![0; 1 << 16];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if kept.len() < 1 << 20 {
                        kept.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
        kept
    });
    let mut err = child.stderr.take().expect("stderr");
    let errs = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = child.wait().expect("wait");
    let _ = feeder.join();
    let kb: u64 = std::fs::read_to_string(report.path())
        .expect("time report")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("time's %M");
    let m = Measured {
        code: status.code(),
        stdout: reader.join().expect("stdout thread"),
        stderr: errs.join().expect("stderr thread"),
        peak: kb * 1024,
    };
    let first: String = m
        .stderr
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    eprintln!(
        "resource_bounds: {what}: exit {:?}, peak {:.1} MB: {first}",
        m.code,
        m.peak as f64 / 1e6
    );
    assert!(m.peak < MAX_RSS, "{what}: peak memory {} bytes", m.peak);
    m
}

fn no_input(_: &mut dyn Write) {}

/// layer-pack with its compression threads fixed. Each thread holds two 1 MiB blocks in flight,
/// so layer-pack's memory follows its thread count (one per CPU by default), not its input: the
/// bound here is about the input, and must hold on a machine of any size.
fn layer_pack() -> Command {
    let mut c = tool("layer-pack");
    c.args(["--threads", "8"]);
    c
}

/// A ustar/PAX header for `path`.
fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    if path.len() <= 100 {
        h.set_path(path).expect("short path");
    }
    h.set_cksum();
    h
}

/// Writes one entry; a long path goes in a PAX `path` record (as Go and docker write it).
fn entry(w: &mut dyn Write, path: &str, kind: tar::EntryType, size: u64) -> std::io::Result<()> {
    if path.len() > 100 {
        let record = pax_record("path", path);
        let mut x = header("PaxHeader", tar::EntryType::XHeader, record.len() as u64);
        x.set_path("PaxHeader").expect("pax name");
        x.set_cksum();
        w.write_all(x.as_bytes())?;
        w.write_all(&record)?;
        w.write_all(&vec![0; padding(record.len() as u64)])?;
        let mut h = header("x", kind, size);
        h.set_path(path[..path.len().min(100)].trim_end_matches('/'))
            .expect("truncated name");
        h.set_cksum();
        w.write_all(h.as_bytes())
    } else {
        w.write_all(header(path, kind, size).as_bytes())
    }
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn padding(size: u64) -> usize {
    (size.next_multiple_of(512) - size) as usize
}

fn end(w: &mut dyn Write) -> std::io::Result<()> {
    w.write_all(&[0; 1024])
}

/// One layer descriptor (JSON line) from packing `tar` into `layout`.
fn pack(layout: &Path, tar: &[u8]) -> Vec<u8> {
    ok(layer_pack().args(["-q", "--layout"]).arg(layout), tar)
}

fn tag(image: &str, descs: &[u8]) {
    ok(
        tool("image-stack").args(["-q", "--layer", "-", "--tag", image]),
        descs,
    );
}

// ---------------------------------------------------------------------------------------------
// A gzip bomb: 4 GiB of zeros from a few MB of gzip.

const BOMB: u64 = 4 << 30;

/// A gzip layer blob whose tar holds `inside` zero bytes as one file's content and `after`
/// zero bytes after the tar's end. Built as concatenated gzip members (one valid gzip stream),
/// so making it costs one compression of 64 MiB. Returns the blob, its diffID and tar length.
fn bomb(inside: u64, after: u64) -> (Vec<u8>, String, u64) {
    let mut b = Bomb {
        blob: Vec::new(),
        diff: sha2::Sha256::default(),
        len: 0,
        zeros: vec![0; PIECE],
        zeros_gz: Vec::new(),
    };
    b.zeros_gz = gz(&b.zeros);
    let mut head = Vec::new();
    entry(&mut head, "zeros", tar::EntryType::Regular, inside).expect("header");
    b.plain(&head);
    b.zero_run(inside);
    let mut tail = vec![0u8; padding(inside)];
    tail.extend_from_slice(&[0; 1024]);
    b.plain(&tail);
    b.zero_run(after);
    let diff_id = format!("sha256:{}", hex::encode(sha2::Digest::finalize(b.diff)));
    (b.blob, diff_id, b.len)
}

const PIECE: usize = 64 << 20;

struct Bomb {
    blob: Vec<u8>,
    diff: sha2::Sha256,
    len: u64,
    zeros: Vec<u8>,
    zeros_gz: Vec<u8>,
}

impl Bomb {
    fn plain(&mut self, bytes: &[u8]) {
        self.blob.extend_from_slice(&gz(bytes));
        sha2::Digest::update(&mut self.diff, bytes);
        self.len += bytes.len() as u64;
    }

    fn zero_run(&mut self, mut n: u64) {
        while n >= PIECE as u64 {
            self.blob.extend_from_slice(&self.zeros_gz);
            sha2::Digest::update(&mut self.diff, &self.zeros);
            self.len += PIECE as u64;
            n -= PIECE as u64;
        }
        if n > 0 {
            self.plain(&vec![0; n as usize]);
        }
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// Stores a blob in a layout by hand (the tools would refuse to make a bomb) and tags an image
/// of that one layer.
fn bomb_image(layout: &Path, name: &str, blob: &[u8], diff_id: &str, tar_len: u64) -> String {
    common::layout::Layout::open_or_create(layout).expect("layout");
    let digest = common::digest::Digest::of(blob);
    std::fs::write(layout.join("blobs/sha256").join(digest.hex()), blob).expect("blob");
    let desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": digest.to_string(),
        "size": blob.len(),
        "diffID": diff_id,
        "uncompressedSize": tar_len,
        "source": layout,
    });
    let image = format!("{}:{name}", layout.display());
    tag(&image, format!("{desc}\n").as_bytes());
    image
}

#[test]
fn gzip_bomb_streams_in_bounded_memory() {
    let dir = tempdir();
    let d = dir.path();
    let store = d.join("store");
    let (blob, diff_id, len) = bomb(0, BOMB);
    let after = bomb_image(&store, "after", &blob, &diff_id, len);
    eprintln!("resource_bounds: bomb blob {} bytes, tar {len} bytes", blob.len());
    drop(blob);
    measure(
        "gzip bomb (zeros after the tar end): image-stack --rootfs",
        tool("image-stack")
            .args(["-q", "--from", &after, "--rootfs"])
            .arg(d.join("rootfs")),
        no_input,
    )
    .ok("rootfs");
    let flat = measure(
        "gzip bomb (zeros after the tar end): image-stack --tar",
        tool("image-stack").args(["-q", "--from", &after, "--tar"]),
        no_input,
    );
    flat.ok("--tar");
    let (blob, diff_id, len) = bomb(BOMB, 0);
    let inside = bomb_image(&store, "inside", &blob, &diff_id, len);
    drop(blob);
    std::fs::create_dir(d.join("empty")).expect("mkdir");
    let diff = measure(
        "gzip bomb (4 GiB file content): layer-diff --list IMAGE DIR",
        tool("layer-diff").args(["--list", &inside]).arg(d.join("empty")),
        no_input,
    );
    diff.ok("layer-diff");
    assert_eq!(diff.stdout, b"D /zeros\n");
    let history = measure(
        "gzip bomb (4 GiB file content): image-history --format json",
        tool("image-history").args(["--format", "json", &inside]),
        no_input,
    );
    history.ok("image-history");
    let row: serde_json::Value =
        serde_json::from_slice(history.stdout.split(|b| *b == b'\n').next().unwrap()).expect("json row");
    // SIZE is docker's, the one file's content; tarSize the tar's length.
    assert_eq!(
        (row["size"].as_u64(), row["tarSize"].as_u64()),
        (Some(BOMB), Some(len)),
        "{row}"
    );
}

// ---------------------------------------------------------------------------------------------
// A million tiny entries, generated into the pipe as the tool reads.

const MANY: usize = 1_000_000;

/// 1,000 directories of 1,000 empty files each.
fn many_entries(w: &mut dyn Write) {
    let mut w = std::io::BufWriter::new(w);
    let result = (|| {
        for dir in 0..MANY / 1000 {
            entry(&mut w, &format!("d{dir:03}/"), tar::EntryType::Directory, 0)?;
            for f in 0..1000 {
                entry(&mut w, &format!("d{dir:03}/f{f:03}"), tar::EntryType::Regular, 0)?;
            }
        }
        end(&mut w)?;
        w.flush()
    })();
    // A tool that refuses the stream closes the pipe: that is its answer, not a test failure.
    let _ = result;
}

#[test]
fn a_million_entries() {
    let dir = tempdir();
    let d = dir.path();
    let store = d.join("store");
    let packed = measure(
        "1,000,000 empty files: layer-pack (stdin)",
        layer_pack().args(["-q", "--layout"]).arg(&store),
        many_entries,
    );
    packed.ok("layer-pack");
    std::fs::create_dir(d.join("empty")).expect("mkdir");
    // layer-diff and image-stack --tar hold one node per path: a million of them still fit.
    let listed = measure(
        "1,000,000 empty files: layer-diff --json - DIR (tar lower)",
        tool("layer-diff").args(["--json", "-"]).arg(d.join("empty")),
        many_entries,
    );
    listed.ok("layer-diff");
    assert_eq!(
        listed
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        MANY / 1000,
        "layer-diff: one D line per removed top directory"
    );
    let image = format!("{}:many", store.display());
    tag(&image, &packed.stdout);
    let flat = measure(
        "1,000,000 empty files: image-stack --tar",
        tool("image-stack").args(["-q", "--from", &image, "--tar"]),
        no_input,
    );
    flat.ok("image-stack --tar");
}

// ---------------------------------------------------------------------------------------------
// A 64 KiB path, and 10,000 nested directories.

#[test]
fn a_path_of_64_kib() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::create_dir(d.join("empty")).expect("mkdir");
    let long = "p/".repeat(32 * 1024);
    let long = long.trim_end_matches('/').to_string();
    let mut tar = Vec::new();
    entry(&mut tar, &long, tar::EntryType::Regular, 0).expect("entry");
    end(&mut tar).expect("end");
    let tar = std::sync::Arc::new(tar);
    let feed = |t: std::sync::Arc<Vec<u8>>| move |w: &mut dyn Write| drop(w.write_all(&t));
    let packed = measure(
        "64 KiB path: layer-pack",
        layer_pack().args(["-q", "--layout"]).arg(d.join("store")),
        feed(tar.clone()),
    );
    packed.refused("layer-pack", "longer than PATH_MAX (4096)");
    measure(
        "64 KiB path: layer-diff --list - DIR",
        tool("layer-diff").args(["--list", "-"]).arg(d.join("empty")),
        feed(tar.clone()),
    )
    .refused("layer-diff", "longer than PATH_MAX (4096)");
}

const DEPTH: usize = 10_000;

#[test]
fn ten_thousand_nested_directories() {
    let dir = tempdir();
    let d = dir.path();
    let nested = |depth: usize| {
        let mut tar = Vec::new();
        let mut path = String::new();
        for _ in 0..depth {
            path.push_str("a/");
            entry(&mut tar, &path, tar::EntryType::Directory, 0).expect("entry");
        }
        end(&mut tar).expect("end");
        std::sync::Arc::new(tar)
    };
    let feed = |t: std::sync::Arc<Vec<u8>>| move |w: &mut dyn Write| drop(w.write_all(&t));
    let store = d.join("store");
    // 10,000 levels is 20,000 bytes of path: past PATH_MAX, refused as it is read.
    measure(
        "10,000 nested directories (tar): layer-pack",
        layer_pack().args(["-q", "--layout"]).arg(&store),
        feed(nested(DEPTH)),
    )
    .refused("layer-pack", "longer than PATH_MAX");
    // 1,000 levels (2,000 bytes of path): every tool handles it. (2,000 levels fit PATH_MAX too,
    // but comparing such keys in a debug build's tree takes tens of seconds.)
    let tar = nested(1000);
    let packed = measure(
        "1,000 nested directories (tar): layer-pack",
        layer_pack().args(["-q", "--layout"]).arg(&store),
        feed(tar.clone()),
    );
    packed.ok("layer-pack");
    std::fs::create_dir(d.join("empty")).expect("mkdir");
    measure(
        "1,000 nested directories (tar): layer-diff --list - DIR",
        tool("layer-diff").args(["--list", "-"]).arg(d.join("empty")),
        feed(tar.clone()),
    )
    .ok("layer-diff");
    let image = format!("{}:deep", store.display());
    tag(&image, &packed.stdout);
    // Unpacked, the deepest directory's path is the root's plus 2,000 bytes: within PATH_MAX
    // (4096) under any temporary directory shorter than 2,000 bytes, so --rootfs must do it.
    let rootfs = d.join("rootfs");
    assert!(rootfs.as_os_str().len() + 2 * 1000 < 4096, "{}", rootfs.display());
    measure(
        "1,000 nested directories (tar): image-stack --rootfs",
        tool("image-stack")
            .args(["-q", "--from", &image, "--rootfs"])
            .arg(&rootfs),
        no_input,
    )
    .ok("image-stack --rootfs");
    let deepest = rootfs.join("a/".repeat(1000));
    assert!(deepest.is_dir(), "no directory 1,000 levels down");
    assert_eq!(
        std::fs::read_dir(&deepest).expect("readdir").count(),
        0,
        "level 1,000 is not empty"
    );
    measure(
        "1,000 nested directories (tar): image-stack --tar",
        tool("image-stack").args(["-q", "--from", &image, "--tar"]),
        no_input,
    )
    .ok("image-stack --tar");

    // The same on disk, made one level at a time (a full path would be ENAMETOOLONG).
    let tree = d.join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    let mut fd =
        rustix::fs::open(&tree, rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty()).expect("open tree");
    for _ in 0..DEPTH {
        rustix::fs::mkdirat(&fd, "a", rustix::fs::Mode::from_raw_mode(0o755)).expect("mkdirat");
        fd = rustix::fs::openat(&fd, "a", rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty())
            .expect("openat");
    }
    drop(fd);
    // Past 2,048 levels the path is longer than PATH_MAX: refused, not a stack overflow.
    measure(
        "10,000 nested directories (disk): layer-pack DIR",
        layer_pack().args(["-q", "--layout"]).arg(&store).arg(&tree),
        no_input,
    )
    .refused("layer-pack DIR", "too long for PATH_MAX (4096)");
    measure(
        "10,000 nested directories (disk): layer-diff --list DIR DIR",
        tool("layer-diff").arg("--list").arg(d.join("empty")).arg(&tree),
        no_input,
    )
    .refused("layer-diff", "too long for PATH_MAX (4096)");
    // GNU rm walks with openat at any depth; remove_dir_all would recurse this deep.
    ok(Command::new("rm").arg("-rf").arg(&tree), b"");
}

// ---------------------------------------------------------------------------------------------
// A manifest of 100,000 layers.

#[test]
fn a_manifest_of_100000_layers() {
    let dir = tempdir();
    let d = dir.path();
    let store = d.join("store");
    let mut one = Vec::new();
    entry(&mut one, "f", tar::EntryType::Regular, 0).expect("entry");
    end(&mut one).expect("end");
    let desc: serde_json::Value = serde_json::from_slice(&pack(&store, &one)).expect("desc");
    let layout = common::layout::Layout::open(&store).expect("layout");
    let layer = serde_json::json!({
        "mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
    });
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": vec![desc["diffID"].clone(); 100_000]},
    });
    let config_bytes = serde_json::to_vec(&config).expect("config");
    let (config_digest, _) = layout.write_blob(&config_bytes).expect("config blob");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": vec![layer; 100_000],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest");
    eprintln!(
        "resource_bounds: manifest of 100,000 layers: {} bytes, config {} bytes",
        manifest_bytes.len(),
        config_bytes.len()
    );
    let (digest, _) = layout.write_blob(&manifest_bytes).expect("manifest blob");
    let mut mdesc = common::descriptor::Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json",
        digest,
        manifest_bytes.len() as u64,
    );
    mdesc.annotations.clear();
    layout.set_tag("huge", mdesc).expect("tag");
    drop((manifest_bytes, config_bytes, manifest, config));
    let image = format!("{}:huge", store.display());
    for (what, mut cmd) in [
        ("image-history", {
            let mut c = tool("image-history");
            c.arg(&image);
            c
        }),
        ("image-stack --tar", {
            let mut c = tool("image-stack");
            c.args(["-q", "--from", &image, "--tar"]);
            c
        }),
        ("image-stack --tag", {
            let mut c = tool("image-stack");
            c.args(["-q", "--from", &image, "--tag"])
                .arg(format!("{}:copy", store.display()));
            c
        }),
        ("image-prune", {
            let mut c = tool("image-prune");
            c.arg("-q").arg(&store);
            c
        }),
    ] {
        // Under the default cap of 16 MiB, the 15 MB manifest is read, within the memory bound.
        let m = measure(&format!("manifest of 100,000 layers: {what}"), &mut cmd, no_input);
        m.ok(what);
        // --max-json lowers the cap: the manifest (or, for image-prune, the whole image it
        // cannot read) is refused at once, naming the flag.
        let m = measure(
            &format!("manifest of 100,000 layers, --max-json 1000000: {what}"),
            cmd.args(["--max-json", "1000000"]),
            no_input,
        );
        m.refused(what, "--max-json");
    }
}

// ---------------------------------------------------------------------------------------------
// A full disk.

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mkdir");
        ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
            b"",
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn random_tar(mb: usize) -> Vec<u8> {
    let mut data = vec![0u8; mb << 20];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    Tar::default().file("noise", &data).done()
}

#[test]
fn disk_full() {
    if !crate::support::needs_root("mounting a tmpfs") {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let tar = std::sync::Arc::new(random_tar(4));
    let feed = |t: std::sync::Arc<Vec<u8>>| move |w: &mut dyn Write| drop(w.write_all(&t));

    // The layout on a 2 MB tmpfs, a 4 MB layer into it.
    let small = Tmpfs::mount(&d.join("small"), "2m");
    let store = small.0.join("store");
    common::layout::Layout::open_or_create(&store).expect("layout");
    let before = crate::support::snapshot(&store);
    measure(
        "disk full: layer-pack of 4 MB into a 2 MB tmpfs",
        layer_pack()
            .args(["-q", "--compress", "none", "--layout"])
            .arg(&store),
        feed(tar.clone()),
    )
    .refused("layer-pack", "No space left on device");
    assert_eq!(crate::support::snapshot(&store), before, "layout changed");

    // --rootfs into a full tmpfs, from a layout elsewhere.
    let big = d.join("store");
    let desc = pack(&big, &tar);
    let image = format!("{}:noise", big.display());
    tag(&image, &desc);
    let before = crate::support::snapshot(&big);
    measure(
        "disk full: image-stack --rootfs of 4 MB into a 2 MB tmpfs",
        tool("image-stack")
            .args(["-q", "--from", &image, "--rootfs"])
            .arg(small.0.join("rootfs")),
        no_input,
    )
    .refused("image-stack --rootfs", "No space left on device");
    assert_eq!(crate::support::snapshot(&big), before, "layout changed");
    let leftovers: Vec<_> = std::fs::read_dir(&store)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().starts_with(common::layout::TMP_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // image-stack --tag and image-prune on a layout whose disk has no room left: their config,
    // manifest and index.json writes fail; exit 2, the layout as it was.
    let full = Tmpfs::mount(&d.join("full"), "1m");
    let store = full.0.join("store");
    let small_tar = random_tar(0);
    let base = pack(&store, &small_tar);
    let image = format!("{}:base", store.display());
    tag(&image, &base);
    // A dangling image for the prune: the tag moves to an image of another layer (a commit on
    // top of it would keep it, as the new image's parent).
    let other = pack(&store, &Tar::default().file("other", b"other").done());
    tag(&image, &other);
    fill(&full.0);
    // A commit that reuses a stored blob claims it first, by refreshing its mtime
    // (common::layout::claim_blob: image-prune then spares it for the grace period), and a
    // failed commit does not undo the claim: the image's layer blob may get a newer mtime, to
    // the nanosecond, and nothing else may change.
    let layer: serde_json::Value = serde_json::from_slice(&other).expect("descriptor");
    let claimable = format!(
        "blobs/sha256/{} ",
        &layer["digest"].as_str().expect("digest")[7..]
    );
    let state = || -> String {
        crate::support::snapshot(&store)
            .lines()
            .map(|l| match l.strip_prefix(&claimable) {
                Some(rest) => {
                    let (head, tail) = rest.split_once(" mtime=").expect("mtime");
                    let tail = tail.split_once(' ').map_or("", |(_, t)| t);
                    format!("{claimable}{head} mtime=(claimable) {tail}\n")
                }
                None => format!("{l}\n"),
            })
            .collect()
    };
    let before = state();
    // Each error names what it was writing.
    for (what, cmd, names) in [
        (
            "disk full: image-stack --tag (a config-only commit)",
            tool("image-stack")
                .args(["-q", "--from", &image, "-c", "ENV B=2", "--tag"])
                .arg(format!("{}:next", store.display())),
            common::layout::TMP_PREFIX,
        ),
        (
            "disk full: image-stack --tag (a layer copied in from another layout)",
            tool("image-stack")
                .args(["-q", "--layer", "-", "--tag"])
                .arg(format!("{}:copied", store.display())),
            "copying layer",
        ),
        (
            "disk full: image-prune",
            tool("image-prune").args(["-q", "--grace", "0"]).arg(&store),
            "index.json",
        ),
    ] {
        // The layer descriptor names `big` as its source: image-stack --layer copies it in.
        measure(what, cmd, feed(std::sync::Arc::new(desc.clone())))
            .refused(what, "No space left on device")
            .refused(what, names);
        assert_eq!(state(), before, "{what}: layout changed");
    }
}

/// Fills the file system holding `dir` to the last byte.
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    // The last partial block: single bytes until none fits.
    while f.write_all(&[0]).is_ok() {}
}
