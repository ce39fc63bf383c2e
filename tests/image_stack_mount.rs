//! `image-stack --mount`, `--commit DIR`, `--unmount` and the layer cache, on real overlay
//! mounts (root). What a mount shows is checked against `image-stack --rootfs` of the same
//! image (support's `snapshot`: content and all metadata) and against what was worked out by
//! hand for the whiteouts and opaque directories of the layers below.

use crate::support::*;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A layer built from tar headers, parents given explicitly as entries.
struct L(tar::Builder<Vec<u8>>);

const T: u64 = 1_600_000_000;

fn l() -> L {
    L(tar::Builder::new(Vec::new()))
}

impl L {
    fn add(
        mut self,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        data: &[u8],
        more: impl FnOnce(&mut tar::Header),
    ) -> L {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(T);
        h.set_size(data.len() as u64);
        more(&mut h);
        self.0.append_data(&mut h, path, data).expect("append");
        self
    }
    fn dir(self, path: &str) -> L {
        self.add(path, tar::EntryType::Directory, 0o755, b"", |_| {})
    }
    fn file(self, path: &str, data: &[u8]) -> L {
        self.add(path, tar::EntryType::Regular, 0o644, data, |_| {})
    }
    fn owned(self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> L {
        self.add(path, tar::EntryType::Regular, mode, data, |h| {
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(T + 7);
        })
    }
    fn link(self, kind: tar::EntryType, path: &str, target: &str) -> L {
        self.add(path, kind, 0o777, b"", |h| {
            h.set_link_name(target).expect("link name")
        })
    }
    fn dev(self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> L {
        self.add(path, kind, 0o660, b"", |h| {
            h.set_device_major(major).expect("major");
            h.set_device_minor(minor).expect("minor");
        })
    }
    /// PAX xattrs for the next entry.
    fn xattrs(mut self, x: &[(&str, &[u8])]) -> L {
        let records: Vec<(String, &[u8])> =
            x.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v)).collect();
        self.0
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
            .expect("pax");
        self
    }
    fn done(self) -> Vec<u8> {
        self.0.into_inner().expect("tar")
    }
}

/// A test's start: the image of [`layers`] in `tmp/store` (`image`), and a mount point `m`
/// unmounted at the end whatever happens. None where the test cannot run (not root).
struct Fixture {
    // Dropped first: unmounted before the temporary directory goes.
    _guard: Mounted,
    m: PathBuf,
    image: String,
    store: PathBuf,
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new(why: &str) -> Option<Fixture> {
        if !needs_root(why) {
            return None;
        }
        let tmp = tempdir();
        let store = tmp.path().join("store");
        raw_layout(&store, &layers());
        let m = tmp.path().join("m");
        Some(Fixture {
            _guard: Mounted(m.clone()),
            image: format!("{}:t", store.display()),
            m,
            store,
            tmp,
        })
    }
}

/// Runs `image-stack --from IMAGE --mount DIR`; returns the JSON line.
fn mount(image: &str, dir: &Path) -> Value {
    let out = ok(
        tool("image-stack").args(["--from", image, "--mount"]).arg(dir),
        b"",
    );
    let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line: {}", String::from_utf8_lossy(&out));
    serde_json::from_slice(lines[0]).expect("JSON line")
}

fn unmount(dir: &Path) {
    ok(tool("image-stack").arg("--unmount").arg(dir), b"");
}

/// Unmounts on drop: a failing test must not leave mounts behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn is_mounted(dir: &Path) -> bool {
    let Ok(p) = std::fs::canonicalize(dir) else {
        return false;
    };
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    table.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| m.replace("\\040", " ") == p.to_string_lossy())
    })
}

fn rootfs(image: &str, dir: &Path) {
    ok(
        tool("image-stack").args(["--from", image, "--rootfs"]).arg(dir),
        b"",
    );
}

fn cache_entries(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join(".layerkit/layers"))
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 64)
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Three layers with every entry kind, whiteouts of each kind and opaque directories across
/// layers, a whiteout and a path of one layer, a directory over a file and a file over a
/// directory, and overlayfs's own xattr names carried by a layer.
fn layers() -> Vec<Vec<u8>> {
    use tar::EntryType::{Block, Char, Fifo, Link, Symlink};
    let l1 = l()
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .owned("etc/shadow", b"root:*:1::::::\n", 0o640, 0, 42)
        .dir("bin/")
        .owned("bin/su", b"\x7fELF su", 0o4755, 0, 0)
        .link(Symlink, "bin/sh", "busybox")
        .dir("usr/")
        .dir("usr/lib/")
        .file("usr/lib/libx.so", &[7u8; 70_000])
        .link(Link, "usr/lib/libx-hard.so", "usr/lib/libx.so")
        .dir("opt/")
        .dir("opt/app/")
        .xattrs(&[("user.layerkit", b"1"), ("trusted.layerkit", b"t")])
        .owned("opt/app/tagged", b"tagged", 0o600, 1000, 1001)
        .dir("dev/")
        .dev("dev/null", Char, 1, 3)
        .dev("dev/loop0", Block, 7, 0)
        .dir("run/")
        .add("run/fifo", Fifo, 0o620, b"", |_| {})
        .dir("gone/")
        .file("gone/a", b"a")
        .dir("gone/sub/")
        .file("gone/sub/b", b"b")
        .dir("op/")
        .file("op/lower1", b"l1")
        .dir("op/sub/")
        .file("op/sub/lower2", b"l2")
        .dir("willbefile/")
        .file("willbefile/child", b"c")
        .file("willbedir", b"file")
        .link(Symlink, "lib", "/usr/lib")
        .xattrs(&[
            ("trusted.overlay.opaque", b"y"),
            ("trusted.overlay.redirect", b"/etc"),
        ])
        .dir("esc/")
        .file("esc/child", b"not hidden")
        .dir("tricky/")
        .file("tricky/child", b"still here")
        .dir("tricky/d/")
        .file("tricky/d/lower", b"lower")
        .done();
    let l2 = l()
        .dir("etc/")
        .file("etc/.wh.shadow", b"")
        .file(".wh.gone", b"")
        .dir("op/")
        .file("op/.wh..wh..opq", b"")
        .file("op/upper1", b"u1")
        .file("willbefile", b"now a file")
        .dir("willbedir/")
        .file("willbedir/child", b"now a dir")
        .file(".wh.lib", b"")
        .dir("run/")
        .file("run/.wh.fifo", b"")
        .dir("dev/")
        .file("dev/.wh.loop0", b"")
        .dir("new/")
        .xattrs(&[("user.new", b"n")])
        .file("new/file", b"new")
        .done();
    let l3 = l()
        .dir("gone/")
        .file("gone/new", b"back")
        .dir("tricky/")
        .dir("tricky/d/")
        .file("tricky/d/x", b"x")
        .file("tricky/d/y", b"y")
        .file("tricky/.wh.d", b"")
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/ash\n")
        .done();
    vec![l1, l2, l3]
}

/// The mounted view equals `--rootfs` of the same image, for every entry kind, whiteouts and
/// opaque directories across layers included.
#[test]
fn the_mounted_view_equals_rootfs() {
    let Some(f) = Fixture::new("overlay mounts") else {
        return;
    };
    let (tmp, image, m) = (&f.tmp, &f.image, &f.m);
    let line = mount(image, m);
    rootfs(image, &tmp.path().join("r"));
    let (view, want) = (snapshot(m), snapshot(&tmp.path().join("r")));
    assert_eq!(view, want);
    // Worked out by hand from the layers: what the whiteouts and opaque markers must hide.
    for gone in [
        "etc/shadow",
        "gone/a",
        "gone/sub",
        "op/lower1",
        "op/sub",
        "lib",
        "run/fifo",
        "dev/loop0",
        "tricky/d/lower",
    ] {
        assert!(
            std::fs::symlink_metadata(m.join(gone)).is_err(),
            "{gone} should be hidden"
        );
    }
    for (kept, content) in [
        ("gone/new", &b"back"[..]),
        ("op/upper1", b"u1"),
        ("willbefile", b"now a file"),
        ("willbedir/child", b"now a dir"),
        ("tricky/child", b"still here"),
        ("tricky/d/x", b"x"),
        ("etc/passwd", b"root:x:0:0::/root:/bin/ash\n"),
    ] {
        assert_eq!(std::fs::read(m.join(kept)).expect(kept), content, "{kept}");
    }
    assert!(
        m.join("tricky/d").is_dir(),
        "a layer's own directory survives its whiteout"
    );
    // A layer's trusted.overlay.* are xattrs like any other, not marks that steer the mount.
    assert_eq!(
        xattr::get(m.join("esc"), "trusted.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec())
    );
    assert_eq!(
        xattr::get(m.join("esc"), "trusted.overlay.redirect").expect("xattr"),
        Some(b"/etc".to_vec())
    );
    assert_eq!(
        std::fs::read(m.join("esc/child")).expect("esc/child"),
        b"not hidden"
    );
    assert_eq!(
        std::fs::symlink_metadata(m.join("bin/su")).expect("su").mode() & 0o7777,
        0o4755
    );
    assert_eq!(line["lower"].as_array().expect("lower").len(), 3);
    assert_eq!(
        line["mount"],
        std::fs::canonicalize(m)
            .expect("canonical")
            .to_str()
            .expect("utf-8")
    );
    for key in ["upper", "work"] {
        assert!(
            Path::new(line[key].as_str().expect(key)).is_dir(),
            "{key}: {line}"
        );
    }
    assert_eq!(line["image"], image.as_str());
    unmount(m);
    assert!(
        !is_mounted(m) && !m.exists(),
        "--unmount removes the mount and the directory it made"
    );
    assert!(!Path::new(line["upper"].as_str().expect("upper")).exists());
}

/// fuse-overlayfs (the driver without root) shows the same view.
#[test]
fn fuse_overlayfs_shows_the_same_view() {
    if peer("fuse-overlayfs").is_none() {
        return;
    }
    let Some(f) = Fixture::new("/dev/fuse") else {
        return;
    };
    let (tmp, image, m) = (&f.tmp, &f.image, &f.m);
    let out = ok(
        tool("image-stack")
            .env("LAYERKIT_MOUNT_DRIVER", "fuse-overlayfs")
            .args(["--from", image, "--mount"])
            .arg(m),
        b"",
    );
    assert!(String::from_utf8_lossy(&out).contains("\"driver\":\"fuse-overlayfs\""));
    rootfs(image, &tmp.path().join("r"));
    let (view, want) = (snapshot(m), snapshot(&tmp.path().join("r")));
    // fuse-overlayfs hides every trusted.overlay.* xattr: a layer's own (esc) too.
    let without_esc = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("esc "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_esc(&view), without_esc(&want));
    unmount(m);
    assert!(!is_mounted(m));
}

/// A change made in the mount, turned into a layer by `layer-diff --overlay UPPER`, unpacks to
/// what the mount shows; `--commit DIR` gives the digests of the pipe form, for a mount and for
/// a plain directory.
#[test]
fn a_change_in_the_mount_commits_to_what_the_mount_shows() {
    let Some(f) = Fixture::new("overlay mounts") else {
        return;
    };
    let (tmp, store, image, m) = (&f.tmp, &f.store, &f.image, &f.m);
    let line = mount(image, m);
    let upper = PathBuf::from(line["upper"].as_str().expect("upper"));
    // Changes of every kind: added, changed content, owner and mode, removed (file, directory,
    // symlink), a directory removed and made again, a hard link, a symlink, a fifo.
    std::fs::write(m.join("etc/passwd"), b"changed\n").unwrap();
    std::fs::write(m.join("etc/added"), b"added\n").unwrap();
    std::fs::set_permissions(m.join("op/upper1"), std::fs::Permissions::from_mode(0o4711)).unwrap();
    std::os::unix::fs::chown(m.join("new/file"), Some(33), Some(33)).unwrap();
    std::fs::remove_file(m.join("bin/sh")).unwrap();
    std::fs::remove_dir_all(m.join("willbedir")).unwrap();
    std::fs::remove_dir_all(m.join("opt/app")).unwrap();
    std::fs::create_dir(m.join("opt/app")).unwrap();
    std::fs::write(m.join("opt/app/fresh"), b"fresh").unwrap();
    std::fs::hard_link(m.join("usr/lib/libx.so"), m.join("usr/lib/libx-2.so")).unwrap();
    std::os::unix::fs::symlink("../etc/added", m.join("bin/added")).unwrap();
    sh(&format!("mkfifo {}/run/fifo2", m.display()));
    // The pipe form, then the view rebuilt from its image.
    let piped = String::from_utf8(sh(&format!(
        "layer-diff --overlay {upper} | layer-pack --layout {store} | image-stack --from {image} --layer - --tag {store}:v2",
        upper = upper.display(),
        store = store.display()
    )))
    .unwrap();
    assert!(piped.contains("sha256:"));
    rootfs(&format!("{}:v2", store.display()), &tmp.path().join("v2"));
    // What the mount changed has the file system's nanoseconds; a layer carries whole seconds.
    assert_eq!(
        linked(&whole_seconds(&snapshot(m))),
        linked(&snapshot(&tmp.path().join("v2")))
    );
    // One step, the same digests as the pipe form (SOURCE_DATE_EPOCH fixes `created`).
    let pipe_form = sh(&format!(
        "export SOURCE_DATE_EPOCH=1700000000; layer-diff --overlay {upper} | layer-pack --layout {store} \
         | image-stack --from {image} --layer - --tag {store}:pipe -m 'the change' --author me -c 'CMD [\"sh\"]'",
        upper = upper.display(),
        store = store.display()
    ));
    let one_step = ok(
        tool("image-stack")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("--commit")
            .arg(m)
            .args([
                "--tag",
                &format!("{}:one", store.display()),
                "-m",
                "the change",
                "--author",
                "me",
                "-c",
                "CMD [\"sh\"]",
            ]),
        b"",
    );
    let digest = |line: &[u8]| -> String {
        let v: Value = serde_json::from_slice(line).expect("descriptor line");
        v["digest"].as_str().expect("digest").to_string()
    };
    assert_eq!(
        digest(&one_step),
        digest(&pipe_form),
        "--commit and the pipe form differ"
    );
    // A plain directory with --from: the full diff against the image, as the pipe form makes it.
    let dir = tmp.path().join("plain");
    rootfs(image, &dir);
    std::fs::write(dir.join("etc/plain"), b"p").unwrap();
    std::fs::remove_file(dir.join("etc/passwd")).unwrap();
    let pipe_dir = sh(&format!(
        "export SOURCE_DATE_EPOCH=1700000000; layer-diff {image} {dir} | layer-pack --layout {store} \
         | image-stack --from {image} --layer - --tag {store}:pipedir",
        dir = dir.display(),
        store = store.display()
    ));
    let one_dir = ok(
        tool("image-stack")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["--from", image, "--commit"])
            .arg(&dir)
            .args(["--tag", &format!("{}:onedir", store.display())]),
        b"",
    );
    assert_eq!(digest(&one_dir), digest(&pipe_dir));
    // The trap of the pipe form: a mount commits on its own image, and refuses another base.
    raw_layout(&tmp.path().join("other"), &[l().file("x", b"x").done()]);
    let err = fails(
        tool("image-stack")
            .args([
                "--from",
                &format!("{}:t", tmp.path().join("other").display()),
                "--commit",
            ])
            .arg(m)
            .args(["--tag", &format!("{}:wrong", store.display())]),
        b"",
    );
    assert!(err.contains("names its base once"), "{err}");
    unmount(m);
}

/// A snapshot with the hard-link groups of one visible name left out. Overlayfs breaks a
/// hard link when it copies one name up (libx.so linked anew above), and the name left below
/// still counts the other in its link count: a group of one in the view, which the commit
/// rightly does not carry.
fn linked(snapshot: &str) -> String {
    let groups: Vec<&str> = snapshot
        .lines()
        .filter_map(|l| l.split(" link=").nth(1))
        .collect();
    snapshot
        .lines()
        .map(|line| match line.split_once(" link=") {
            Some((head, first)) if groups.iter().filter(|g| **g == first).count() == 1 => head.to_string(),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two mounts of one image share its cached layers and never see each other's changes.
#[test]
fn two_mounts_share_the_lowers_and_never_see_each_others_changes() {
    let Some(f) = Fixture::new("overlay mounts") else {
        return;
    };
    let (tmp, store, image) = (&f.tmp, &f.store, &f.image);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let _guards = (Mounted(a.clone()), Mounted(b.clone()));
    let la = mount(image, &a);
    let before = snapshot(&a);
    let lb = mount(image, &b);
    assert_eq!(la["lower"], lb["lower"], "the lowers are shared");
    assert_ne!(la["upper"], lb["upper"], "each mount has its own upper");
    assert_eq!(cache_entries(store).len(), 3, "each layer extracted once");
    std::fs::write(a.join("etc/passwd"), b"only in a").unwrap();
    std::fs::remove_dir_all(a.join("op")).unwrap();
    std::fs::write(b.join("new/only-in-b"), b"b").unwrap();
    let b_now = snapshot(&b);
    assert_eq!(
        b_now
            .lines()
            .filter(|l| !l.starts_with("new"))
            .collect::<Vec<_>>(),
        before
            .lines()
            .filter(|l| !l.starts_with("new"))
            .collect::<Vec<_>>()
    );
    assert!(!a.join("new/only-in-b").exists());
    assert_eq!(
        std::fs::read(b.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/ash\n"
    );
    unmount(&a);
    unmount(&b);
}

/// A hundred layers mount: one `lowerdir+` per layer, never one option string longer than the
/// kernel's page (100 cache paths are about 10 kB).
#[test]
fn a_hundred_layers_mount() {
    if !needs_root("overlay mounts") {
        return;
    }
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let layers: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            let mut layer = l()
                .dir("d/")
                .file(&format!("d/f{i:03}"), format!("{i}").as_bytes());
            if i > 0 {
                layer = layer.file(&format!("d/.wh.f{:03}", i - 1), b"");
            }
            layer.done()
        })
        .collect();
    raw_layout(&store, &layers);
    let m = tmp.path().join("m");
    let _guard = Mounted(m.clone());
    let line = mount(&format!("{}:t", store.display()), &m);
    assert_eq!(line["lower"].as_array().expect("lower").len(), 100);
    let names: Vec<String> = std::fs::read_dir(m.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["f099"], "each layer whites out the one below");
    unmount(&m);
}

/// Bad input: one line, exit 2, nothing mounted, nothing lost.
#[test]
fn bad_input_is_one_line_and_mounts_nothing() {
    let Some(f) = Fixture::new("overlay mounts") else {
        return;
    };
    let (tmp, store, image, m) = (&f.tmp, &f.store, &f.image, &f.m);
    let records = || std::fs::read_dir(store.join(".layerkit/mounts")).map_or(0, |d| d.count());
    // DIR not empty.
    std::fs::create_dir(m).unwrap();
    std::fs::write(m.join("keep"), b"mine").unwrap();
    let err = fails(tool("image-stack").args(["--from", image, "--mount"]).arg(m), b"");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(m.join("keep")).unwrap(), b"mine");
    assert!(!is_mounted(m));
    std::fs::remove_dir_all(m).unwrap();
    // IMAGE missing.
    let err = fails(
        tool("image-stack")
            .args(["--from", &format!("{}:nope", store.display()), "--mount"])
            .arg(m),
        b"",
    );
    assert!(err.contains("nope"), "{err}");
    assert!(!m.exists() && !is_mounted(m));
    // A damaged cache entry (its completion marker gone): refused, until image-prune removes it.
    let line = mount(image, m);
    unmount(m);
    assert!(line["lower"].is_array());
    let entry = store.join(".layerkit/layers").join(&cache_entries(store)[0]);
    std::fs::remove_file(entry.join("layer.json")).unwrap();
    let err = fails(tool("image-stack").args(["--from", image, "--mount"]).arg(m), b"");
    assert!(
        err.contains("completion marker") && err.contains(&entry.display().to_string()),
        "{err}"
    );
    assert!(!m.exists() && !is_mounted(m) && records() == 0);
    ok(tool("image-prune").arg(store), b"");
    assert!(!entry.exists(), "image-prune removes the damaged entry");
    mount(image, m);
    unmount(m);
    // The kernel refuses: more lower layers than overlayfs stacks (500).
    let deep = tmp.path().join("deep");
    let many: Vec<Vec<u8>> = (0..501).map(|i| l().file(&format!("f{i}"), b"").done()).collect();
    raw_layout(&deep, &many);
    let m2 = tmp.path().join("m2");
    let _guard2 = Mounted(m2.clone());
    let err = fails(
        tool("image-stack")
            .args(["--from", &format!("{}:t", deep.display()), "--mount"])
            .arg(&m2),
        b"",
    );
    assert!(err.contains("the kernel refused the overlay mount"), "{err}");
    assert!(!m2.exists() && !is_mounted(&m2));
    assert_eq!(
        std::fs::read_dir(deep.join(".layerkit/mounts")).map_or(0, |d| d.count()),
        0
    );
    // A layout on a file system that cannot hold overlayfs's whiteouts (an overlay itself).
    let outer = tmp.path().join("outer");
    for d in ["lo", "up", "wk", "mnt"] {
        std::fs::create_dir_all(outer.join(d)).unwrap();
    }
    let ovl = outer.join("mnt");
    let _outer_guard = Mounted(ovl.clone());
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        outer.join("lo").display(),
        outer.join("up").display(),
        outer.join("wk").display()
    );
    assert!(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&ovl)
            .status()
            .unwrap()
            .success()
    );
    let inner = ovl.join("store");
    raw_layout(&inner, &layers());
    let err = fails(
        tool("image-stack")
            .args(["--from", &format!("{}:t", inner.display()), "--mount"])
            .arg(&m2),
        b"",
    );
    assert!(err.contains("whiteout"), "{err}");
    assert!(!m2.exists() && !is_mounted(&m2));
    let half_made = std::fs::read_dir(inner.join(".layerkit/layers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(half_made, 0, "no entry half made");
    let _ = Command::new("umount").arg(&ovl).status();
}

/// Without root and without a usable fuse-overlayfs: exit 2 naming what is missing.
#[test]
fn without_root_says_what_is_missing() {
    if !needs_root("switching to uid 65534") {
        return;
    }
    let tmp = tempdir();
    let store = tmp.path().join("store");
    raw_layout(&store, &layers());
    for e in walkdir::WalkDir::new(tmp.path()) {
        std::os::unix::fs::lchown(e.unwrap().path(), Some(65534), Some(65534)).unwrap();
    }
    let m = tmp.path().join("m");
    // fuse-overlayfs hidden from PATH, or /dev/fuse out of reach: either is named.
    for path in ["/nonexistent", &std::env::var("PATH").unwrap_or_default()] {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin_dir().join("image-stack"))
            .args(["--from", &format!("{}:t", store.display()), "--mount"])
            .arg(&m)
            .env("PATH", path);
        let out = run(&mut c, b"");
        if out.status.success() {
            // This machine lets uid 65534 use fuse-overlayfs: then the mount must be real.
            assert!(is_mounted(&m));
            ok(tool("image-stack").arg("--unmount").arg(&m), b"");
            continue;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("fuse-overlayfs"), "{err}");
        assert!(
            err.contains("not installed")
                || err.contains("/dev/fuse")
                || err.contains("fuse-overlayfs failed"),
            "{err}"
        );
        assert!(!m.exists() && !is_mounted(&m));
    }
}

/// SIGKILL during extraction leaves nothing a mount would use: the next mount extracts the
/// layer again and shows the image, and image-prune removes what the killed run left.
#[test]
fn sigkill_during_extraction_leaves_a_cache_the_next_mount_repairs() {
    if !needs_root("overlay mounts") {
        return;
    }
    let tmp = tempdir();
    let store = tmp.path().join("store");
    // Many small files: the extraction takes long enough to be caught in the middle.
    let mut big = l().dir("many/");
    for i in 0..5_000 {
        big = big.file(&format!("many/f{i:05}"), format!("{i}").as_bytes());
    }
    raw_layout(&store, &[big.done()]);
    let image = format!("{}:t", store.display());
    let m = tmp.path().join("m");
    let layers_dir = store.join(".layerkit/layers");
    let mut caught = false;
    for attempt in 0..5 {
        let mut child = tool("image-stack")
            .args(["--from", &image, "--mount"])
            .arg(&m)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        // Wait for the extraction to begin (its .tmp- directory), then kill.
        while start.elapsed() < Duration::from_secs(20) {
            let extracting = std::fs::read_dir(&layers_dir)
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                })
                .unwrap_or(false);
            if extracting {
                std::thread::sleep(Duration::from_millis(20 * attempt));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if is_mounted(&m) {
            unmount(&m);
            std::fs::remove_dir_all(&layers_dir).unwrap();
            continue;
        }
        caught = cache_entries(&store).is_empty();
        if caught {
            break;
        }
        std::fs::remove_dir_all(&layers_dir).unwrap();
    }
    assert!(caught, "never caught an extraction in the middle");
    let leftovers: Vec<String> = std::fs::read_dir(&layers_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(!leftovers.is_empty(), "the killed run left its .tmp- directory");
    let _guard = Mounted(m.clone());
    let _ = std::fs::remove_dir(&m);
    mount(&image, &m);
    rootfs(&image, &tmp.path().join("r"));
    assert_eq!(snapshot(&m), snapshot(&tmp.path().join("r")));
    unmount(&m);
    let report = String::from_utf8(ok(tool("image-prune").arg(&store), b"")).unwrap();
    for name in &leftovers {
        assert!(report.contains(name), "{name} in {report}");
        assert!(!layers_dir.join(name).exists());
    }
    assert_eq!(cache_entries(&store).len(), 1, "the image's entry stays");
}

/// image-prune beside a live mount removes nothing it uses: the entries of an image no longer
/// in the layout stay while mounted, and go once unmounted.
#[test]
fn prune_beside_a_live_mount_removes_nothing_it_uses() {
    let Some(f) = Fixture::new("overlay mounts") else {
        return;
    };
    let (tmp, store, image, m) = (&f.tmp, &f.store, &f.image, &f.m);
    mount(image, m);
    let before = snapshot(m);
    let entries = cache_entries(store);
    assert_eq!(entries.len(), 3);
    // The tag moves to an image of another layer: nothing in the layout needs the three.
    sh(&format!(
        "printf 'x' > {tmp}/x && tar -C {tmp} -cf - x | layer-pack --layout {store} | image-stack --layer - --tag {store}:t",
        tmp = tmp.path().display(),
        store = store.display()
    ));
    let dry = String::from_utf8(ok(
        tool("image-prune").args(["--dry-run", "--json"]).arg(store),
        b"",
    ))
    .unwrap();
    let dry: Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(dry["layerCache"], serde_json::json!([]), "{dry}");
    ok(tool("image-prune").args(["--grace", "0"]).arg(store), b"");
    assert_eq!(cache_entries(store), entries, "a live mount's entries stay");
    assert_eq!(snapshot(m), before, "the mount still shows its image");
    unmount(m);
    let report = String::from_utf8(ok(
        tool("image-prune").args(["--json", "--grace", "0"]).arg(store),
        b"",
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&report).unwrap();
    let removed: Vec<&str> = v["layerCache"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for e in &entries {
        assert!(removed.contains(&e.as_str()), "{e} in {report}");
    }
    assert!(cache_entries(store).is_empty());
}

/// A container's image is kept by image-prune while it is mounted, tagged or not (docker
/// never prunes an image a container uses): after its tag moved and a prune, `--commit` still
/// finds its base, and the committed image unpacks to what the mount showed.
#[test]
fn prune_keeps_a_mounted_image_for_its_commit() {
    let Some(f) = Fixture::new("overlay mounts") else {
        return;
    };
    let (tmp, store, image, m) = (&f.tmp, &f.store, &f.image, &f.m);
    let mounted = mount(image, m);
    std::fs::write(m.join("changed-in-the-container"), b"change\n").expect("write");
    let shown = snapshot(m);
    // The tag moves away: the mounted image is now an untagged entry, a dangling image.
    sh(&format!(
        "printf 'x' > {tmp}/x && tar -C {tmp} -cf - x | layer-pack --layout {store} | image-stack --layer - --tag {store}:t",
        tmp = tmp.path().display(),
        store = store.display()
    ));
    let report = String::from_utf8(ok(
        tool("image-prune").args(["--json", "--grace", "0"]).arg(store),
        b"",
    ))
    .expect("UTF-8");
    let digest = mounted["manifest"].as_str().expect("the mount's manifest");
    assert!(!report.contains(digest), "the mounted image was pruned: {report}");
    ok(
        tool("image-stack")
            .arg("--commit")
            .arg(m)
            .args(["--tag", &format!("{}:after", store.display())]),
        b"",
    );
    unmount(m);
    let out = tmp.path().join("after");
    rootfs(&format!("{}:after", store.display()), &out);
    assert_eq!(whole_seconds(&snapshot(&out)), whole_seconds(&shown));
}

/// A record whose mount is gone (a plain umount, a reboot) is removed by image-prune, upper
/// included, and its layers with it.
#[test]
fn prune_removes_records_of_mounts_that_are_gone() {
    let Some(f) = Fixture::new("overlay mounts") else {
        return;
    };
    let (store, image, m) = (&f.store, &f.image, &f.m);
    let line = mount(image, m);
    assert!(Command::new("umount").arg(m).status().unwrap().success());
    let upper = PathBuf::from(line["upper"].as_str().unwrap());
    assert!(upper.exists());
    let text = String::from_utf8(ok(tool("image-prune").arg(store), b"")).unwrap();
    assert!(
        text.contains("Deleted records of mounts that are gone:"),
        "{text}"
    );
    assert!(!upper.exists() && !upper.parent().unwrap().exists());
    // The image still needs its layers.
    assert_eq!(cache_entries(store).len(), 3);
}

/// `image-ls --disk-usage` counts the layer cache as `du` does (allocated blocks, each inode
/// once): its entries are active while an image needs them or a mount uses them, and
/// reclaimable (what image-prune then removes) once neither does.
#[test]
fn disk_usage_counts_the_layer_cache() {
    let Some(f) = Fixture::new("overlay mounts") else {
        return;
    };
    let (tmp, store, image, m) = (&f.tmp, &f.store, &f.image, &f.m);
    let cache_row = || -> Value {
        let out = String::from_utf8(ok(
            tool("image-ls")
                .args(["--disk-usage", "--format", "json"])
                .arg(store),
            b"",
        ))
        .unwrap();
        let doc: Value = serde_json::from_str(&out).unwrap();
        doc["types"]
            .as_array()
            .and_then(|types| types.iter().find(|r| r["type"] == "Layer cache"))
            .cloned()
            .unwrap_or_else(|| panic!("no Layer cache row in {out}"))
    };
    let row = |total: usize, active: usize, size: u64, reclaimable: u64| serde_json::json!({"type": "Layer cache", "total": total, "active": active, "size": size, "reclaimable": reclaimable});
    assert_eq!(cache_row(), row(0, 0, 0, 0), "nothing cached yet");
    mount(image, m);
    let entries = cache_entries(store);
    assert_eq!(entries.len(), 3);
    // GNU du, one entry at a time: bytes of allocated blocks.
    let du: u64 = entries
        .iter()
        .map(|e| {
            let out = sh(&format!(
                "du -s -B1 {}",
                store.join(".layerkit/layers").join(e).display()
            ));
            let text = String::from_utf8(out).unwrap();
            text.split_whitespace().next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert!(du > 70_000, "the 70,000-byte library is in the cache: {du}");
    assert_eq!(cache_row(), row(3, 3, du, 0), "the image needs its layers");
    // The tag moves to an image of another layer: only the live mount uses the three.
    sh(&format!(
        "printf 'x' > {tmp}/x && tar -C {tmp} -cf - x | layer-pack --layout {store} | image-stack --layer - --tag {store}:t",
        tmp = tmp.path().display(),
        store = store.display()
    ));
    assert_eq!(cache_row(), row(3, 3, du, 0), "a live mount uses them");
    unmount(m);
    assert_eq!(cache_row(), row(3, 0, du, du), "nothing needs them");
    let table = String::from_utf8(ok(tool("image-ls").arg("--disk-usage").arg(store), b"")).unwrap();
    // docker's size, 4 significant digits (Go's %.4g), worked out for kilobytes.
    assert!((10_000..1_000_000).contains(&du), "{du}");
    let kb = du as f64 / 1000.0;
    let decimals = if kb < 100.0 { 2 } else { 1 };
    let human = format!("{kb:.decimals$}");
    let human = format!("{}kB", human.trim_end_matches('0').trim_end_matches('.'));
    assert!(
        table
            .lines()
            .any(|l| l == format!("Layer cache          3         0         {human:<10}{human} (100%)")),
        "{human}: {table}"
    );
    let report: Value = serde_json::from_slice(&ok(
        tool("image-prune").args(["--json", "--grace", "0"]).arg(store),
        b"",
    ))
    .unwrap();
    let removed: u64 = report["layerCache"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    assert_eq!(
        removed, du,
        "what image-ls called reclaimable is what image-prune removed"
    );
    assert_eq!(cache_row(), row(0, 0, 0, 0));
}
