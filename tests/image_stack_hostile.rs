//! The hostile-layer corpus of `image-stack --rootfs` (common::apply): crafted tars from the
//! container CVE history (containerd TestBreakouts, moby TestApplyLayerInvalid*, umoci
//! CVE-2021-29136, the tar crate's RUSTSEC cases), plus the legal-but-odd layers a too strict
//! extractor breaks. Each case is applied into TMP/dest with a canary beside it (TMP/canary, and
//! layers that aim at the canary's absolute path); afterwards everything outside dest must be
//! byte-identical, and the case either landed where it must inside dest or was refused with an
//! error naming the entry. The corpus runs through the library and through the binary, as root
//! and as an unprivileged user (uid 65534). Entries that sit over links to the canary carry an
//! owner (1234:1234), mode and mtime no neighbour has, so that a chown, chmod or utime that
//! followed the link would show; the check itself is tested to see such changes.

use crate::support::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

const NOBODY: u32 = 65534;

/// `support::Tar`, with the records only this corpus needs.
impl Tar {
    /// PAX records for the next entry: owner 1234:1234 and mtime 1234567890.25, which no
    /// neighbour of dest has (a chown, chmod or utime that followed a link would show).
    fn owned(self) -> Tar {
        self.pax(&[("uid", b"1234"), ("gid", b"1234"), ("mtime", b"1234567890.25")])
    }
}

fn t() -> Tar {
    Tar::default()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Root,
    Nobody,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Library,
    Binary,
    /// `image-stack --mount`: each layer extracted alone into the layer cache (overlay format),
    /// the view an overlay mount of them.
    Mount,
}

type Check = Box<dyn Fn(&Path, Who)>;

enum Expect {
    /// The error names the entry and says why: every fragment must appear.
    Refused(&'static [&'static str]),
    /// Applied; the check looks inside dest.
    Contained(Check),
}

struct Case {
    name: &'static str,
    hostile: bool,
    layers: Vec<Vec<u8>>,
    expect: Expect,
}

fn refused(name: &'static str, layers: Vec<Vec<u8>>, why: &'static [&'static str]) -> Case {
    Case {
        name,
        hostile: true,
        layers,
        expect: Expect::Refused(why),
    }
}

fn contained(name: &'static str, layers: Vec<Vec<u8>>, check: impl Fn(&Path, Who) + 'static) -> Case {
    Case {
        name,
        hostile: true,
        layers,
        expect: Expect::Contained(Box::new(check)),
    }
}

fn legal(name: &'static str, layers: Vec<Vec<u8>>, check: impl Fn(&Path, Who) + 'static) -> Case {
    Case {
        hostile: false,
        ..contained(name, layers, check)
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn lstat(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn link_target(p: &Path) -> PathBuf {
    std::fs::read_link(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn absent(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_err()
}

/// The owner an entry carrying [`Tar::owned`]'s uid/gid gets: 1234 as root; as nobody, the
/// runner's own (chown skipped with a warning).
fn owner(who: Who) -> u32 {
    match who {
        Who::Root => OWNED,
        Who::Nobody => NOBODY,
    }
}

const OWNED: u32 = 1234;
const OWNED_MTIME: i64 = 1_234_567_890;

/// Owner (uid and gid), mode (permission bits) and mtime of `p`, not following a symlink.
fn meta(p: &Path) -> (u32, u32, u32, i64) {
    let m = lstat(p);
    (m.uid(), m.gid(), m.mode() & 0o7777, m.mtime())
}

fn same_inode(a: &Path, b: &Path) -> bool {
    let (a, b) = (lstat(a), lstat(b));
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// Host paths that a breakout in this corpus would create.
const HOST_NEVER: &[&str] = &["/etc/unbroken", "/etc/layerkit-abs", "/layerkit-pwned", "/pwned"];

/// The corpus, for a test directory `tmp` (some layers aim at its canary's absolute path).
fn corpus(tmp: &Path) -> Vec<Case> {
    let canary = tmp.join("canary");
    let c = canary.to_str().expect("utf-8 temp path").to_string();
    let c_file = format!("{c}/file");
    // The canary's absolute path, as a path inside dest.
    let c_rel = c.trim_start_matches('/').to_string();
    let c_in = move |d: &Path| d.join(&c_rel);
    let c_in2 = c_in.clone();
    let c_in3 = c_in.clone();
    let c_rel = c.trim_start_matches('/').to_string();
    let mut cases = vec![
        // --- names (moby TestApplyLayerInvalidFilenames, anchors §3.5 1-4)
        refused(
            "moby/InvalidFilenames/dotdot",
            vec![t().file("../victim/dotdot", b"x").done()],
            &["../victim/dotdot", "climbs out"],
        ),
        refused(
            "moby/InvalidFilenames/slash-dotdot",
            vec![t().file("/../victim/slash-dotdot", b"x").done()],
            &["/../victim/slash-dotdot", "climbs out"],
        ),
        refused(
            "moby/TestUntarParentTraversal/a-dotdot-dotdot",
            vec![t().dir("a/").file("a/../../victim/pwned", b"x").done()],
            &["a/../../victim/pwned", "climbs out"],
        ),
        refused(
            "bare-dotdot-dir",
            vec![t().dir("..").done()],
            &["\"..\"", "climbs out"],
        ),
        refused(
            "umoci/CVE-2021-29136/root-symlink",
            vec![t().symlink(".", "/").file("victim/pwned", b"x").done()],
            &["root directory"],
        ),
        refused(
            "root-as-regular-file",
            vec![t().file("./", b"x").done()],
            &["root directory"],
        ),
        refused(
            "containerd/SymlinkParentRelative (d/.. as a symlink)",
            vec![t().dir("d/").symlink("d/..", "/").done()],
            &["root directory"],
        ),
        refused(
            "containerd/SymlinkParentDirectory (symlink named ..)",
            vec![t().symlink("..", "/").done()],
            &["climbs out"],
        ),
        refused(
            "tar-rs/RUSTSEC-2026-0068-style PAX path smuggling",
            vec![
                t().pax(&[("path", b"../victim/pax")])
                    .file("innocent", b"x")
                    .done(),
            ],
            &["../victim/pax", "climbs out"],
        ),
        refused(
            "GNU long name climbing out",
            vec![t().gnu_long_name(b"../../victim/long").file("short", b"x").done()],
            &["../../victim/long", "climbs out"],
        ),
        refused(
            "uid out of range (PAX uid)",
            vec![t().pax(&[("uid", b"4294967295")]).file("big", b"x").done()],
            &["/big", "uid 4294967295 out of range"],
        ),
        refused(
            "uid wider than 32 bits (PAX uid)",
            vec![t().pax(&[("uid", b"5000000000")]).file("wide", b"x").done()],
            &["wide", "uid 5000000000 out of range"],
        ),
        // --- symlinks (containerd TestBreakouts, anchors §3.5 9-15)
        refused(
            "symlink loop",
            vec![t().symlink("a", "b").symlink("b", "a").file("a/x", b"x").done()],
            &["/a/x", "symlink loop"],
        ),
        refused(
            "symlink chain longer than 40",
            vec![{
                let mut l = t();
                for i in 0..45 {
                    l = l.symlink(&format!("s{i}"), &format!("s{}", i + 1));
                }
                l.dir("s45/").file("s0/x", b"x").done()
            }],
            &["/s0/x", "symlink loop"],
        ),
        contained(
            "containerd/SymlinkAbsolute",
            vec![
                t().dir("etc/")
                    .symlink("localetc", "/etc")
                    .file("localetc/unbroken", b"u")
                    .done(),
            ],
            |d, _| assert_eq!(read(&d.join("etc/unbroken")), b"u"),
        ),
        contained(
            "containerd/SymlinkUpAndOut",
            vec![
                t().dir("etc/")
                    .dir("dummy/")
                    .symlink("dummy/localetc", "../../../../../../etc")
                    .file("dummy/localetc/unbroken", b"u")
                    .done(),
            ],
            |d, _| assert_eq!(read(&d.join("etc/unbroken")), b"u"),
        ),
        contained(
            "containerd/SymlinkMultipleAbsolute",
            vec![
                t().dir("etc/")
                    .symlink("dira", "/etc")
                    .symlink("dirb", "/dira")
                    .file("dirb/unbroken", b"u")
                    .done(),
            ],
            |d, _| assert_eq!(read(&d.join("etc/unbroken")), b"u"),
        ),
        contained(
            "containerd/SymlinkMultipleRelative",
            vec![
                t().dir("etc/")
                    .symlink("dira", "../../../etc")
                    .symlink("dirb", "../../../dira")
                    .file("dirb/unbroken", b"u")
                    .done(),
            ],
            |d, _| assert_eq!(read(&d.join("etc/unbroken")), b"u"),
        ),
        contained(
            "containerd/SymlinkSlashEnded",
            vec![
                t().dir("etc/")
                    .symlink("localetc/", "/etc/")
                    .file("localetc/unbroken", b"u")
                    .done(),
            ],
            |d, _| {
                assert_eq!(read(&d.join("etc/unbroken")), b"u");
                assert_eq!(link_target(&d.join("localetc")), Path::new("/etc/"));
            },
        ),
        contained(
            "containerd/SymlinkOverrideDirectory",
            vec![
                t().dir("etc/")
                    .dir("localetc/")
                    .symlink("localetc", "/etc")
                    .file("localetc/unbroken", b"u")
                    .done(),
            ],
            |d, _| {
                assert_eq!(read(&d.join("etc/unbroken")), b"u");
                assert!(lstat(&d.join("localetc")).file_type().is_symlink());
            },
        ),
        contained(
            "CVE-2014-9356: absolute symlink to the canary, dangling inside dest",
            vec![t().symlink("lc", &c).file("lc/layerkit-pwned", b"p").done()],
            // A dangling parent is replaced by a directory (umoci's non-directory parent rule).
            |d, _| {
                assert!(lstat(&d.join("lc")).is_dir());
                assert_eq!(read(&d.join("lc/layerkit-pwned")), b"p");
            },
        ),
        contained(
            "CVE-2014-9356: absolute symlink to the canary, resolvable inside dest",
            vec![
                t().dir(&format!("{c_rel}/"))
                    .symlink("lc", &c)
                    .file("lc/layerkit-pwned", b"p")
                    .done(),
            ],
            move |d, _| assert_eq!(read(&c_in(d).join("layerkit-pwned")), b"p"),
        ),
        contained(
            "moby/TestUntarSiblingPrefixContained (dest vs dest-evil)",
            vec![
                t().dir("dest-evil/")
                    .symlink("evil", "../dest-evil")
                    .file("evil/layerkit-pwned", b"p")
                    .done(),
            ],
            |d, _| assert_eq!(read(&d.join("dest-evil/layerkit-pwned")), b"p"),
        ),
        contained(
            "moby/TestUnpackRejectsRelativeEscape: escape -> .. is clamped at the root",
            vec![
                t().symlink("escape", "..")
                    .file("escape/layerkit-pwned", b"p")
                    .done(),
            ],
            |d, _| assert_eq!(read(&d.join("layerkit-pwned")), b"p"),
        ),
        contained(
            "absolute name",
            vec![t().file("/etc/layerkit-abs", b"a").done()],
            |d, _| assert_eq!(read(&d.join("etc/layerkit-abs")), b"a"),
        ),
        contained(
            "CVE-2018-20990: a symlink then a file of the same name in one layer",
            vec![t().symlink("x", &c_file).file("x", b"mine").done()],
            |d, _| {
                assert!(lstat(&d.join("x")).is_file());
                assert_eq!(read(&d.join("x")), b"mine");
            },
        ),
        contained(
            "CVE-2021-32760: chmod of a directory entry over a lower symlink",
            vec![
                t().symlink("s", &c_file).symlink("sd", &c).done(),
                t().raw(b"s", b'5', b"", b"", 0o777)
                    .raw(b"sd", b'0', b"", b"x", 0o6777)
                    .done(),
            ],
            |d, _| {
                assert!(lstat(&d.join("s")).is_dir());
                assert_eq!(lstat(&d.join("sd")).permissions().mode() & 0o7777, 0o6777);
            },
        ),
        contained(
            "setxattr/utime through a lower symlink",
            vec![
                t().symlink("s", &c_file).done(),
                t().pax(&[("SCHILY.xattr.user.pwn", b"1"), ("mtime", b"1.5")])
                    .file("s", b"own")
                    .done(),
            ],
            |d, _| {
                assert_eq!(read(&d.join("s")), b"own");
                assert_eq!(lstat(&d.join("s")).mtime(), 1);
            },
        ),
        // Owners, modes and mtimes that differ from the canary's (root runs: every other entry
        // is 0:0 like the canary, so a chown that followed a link would not show).
        contained(
            "chown/chmod/utime (PAX uid/gid 1234, mtime) of entries over lower symlinks to the canary",
            vec![
                t().symlink("f", &c_file)
                    .symlink("d", &c)
                    .symlink("l", &c_file)
                    .symlink("p", &c)
                    .done(),
                t().owned()
                    .raw(b"f", b'0', b"", b"own", 0o4711)
                    .owned()
                    .raw(b"d", b'5', b"", b"", 0o1777)
                    .owned()
                    .raw(b"l", b'2', c_file.as_bytes(), b"", 0o777)
                    .owned()
                    .raw(b"p", b'6', b"", b"", 0o640)
                    .done(),
            ],
            {
                let c_file = c_file.clone();
                move |d, who| {
                    let o = owner(who);
                    assert_eq!(read(&d.join("f")), b"own");
                    assert_eq!(meta(&d.join("f")), (o, o, 0o4711, OWNED_MTIME));
                    assert!(lstat(&d.join("d")).is_dir());
                    assert_eq!(meta(&d.join("d")), (o, o, 0o1777, OWNED_MTIME));
                    assert_eq!(link_target(&d.join("l")), Path::new(&c_file));
                    let l = meta(&d.join("l"));
                    assert_eq!((l.0, l.1, l.3), (o, o, OWNED_MTIME));
                    assert!(lstat(&d.join("p")).file_type().is_fifo());
                    assert_eq!(meta(&d.join("p")), (o, o, 0o640, OWNED_MTIME));
                }
            },
        ),
        contained(
            "a hard link (PAX uid/gid 1234, mode, mtime) to a lower symlink to the canary, then a file over it",
            vec![
                t().symlink("s", &c_file).symlink("sd", &c).done(),
                t().owned()
                    .raw(b"h", b'1', b"s", b"", 0o6777)
                    .owned()
                    .raw(b"hd", b'1', b"sd", b"", 0o6777)
                    .done(),
                t().owned().raw(b"h", b'0', b"", b"mine", 0o700).done(),
            ],
            {
                let (c, c_file) = (c.clone(), c_file.clone());
                move |d, who| {
                    let o = owner(who);
                    // The link entry links the symlink itself and sets nothing through it.
                    assert!(same_inode(&d.join("hd"), &d.join("sd")));
                    assert_eq!(link_target(&d.join("hd")), Path::new(&c));
                    // The file replaced the link (the symlink s is another name, untouched).
                    assert_eq!(read(&d.join("h")), b"mine");
                    assert_eq!(meta(&d.join("h")), (o, o, 0o700, OWNED_MTIME));
                    assert!(!same_inode(&d.join("h"), &d.join("s")));
                    assert_eq!(link_target(&d.join("s")), Path::new(&c_file));
                }
            },
        ),
        refused(
            "a hard link (PAX uid/gid 1234, mode, mtime) to the canary's absolute path",
            vec![t().owned().raw(b"h", b'1', c_file.as_bytes(), b"", 0o6777).done()],
            &["/h", "does not exist"],
        ),
        contained(
            "owned entries beneath a symlink to the canary dir, dangling inside dest",
            vec![
                t().symlink("lc", &c).done(),
                t().owned()
                    .raw(b"lc/sub", b'5', b"", b"", 0o700)
                    .owned()
                    .raw(b"lc/file", b'0', b"", b"in dest", 0o4755)
                    .done(),
            ],
            move |d, who| {
                let o = owner(who);
                assert!(lstat(&d.join("lc")).is_dir());
                assert_eq!(meta(&d.join("lc/sub")), (o, o, 0o700, OWNED_MTIME));
                assert_eq!(read(&d.join("lc/file")), b"in dest");
                assert_eq!(meta(&d.join("lc/file")), (o, o, 0o4755, OWNED_MTIME));
            },
        ),
        contained(
            "owned entries beneath a symlink to the canary dir, resolvable inside dest",
            vec![
                t().dir(&format!("{c_rel}/"))
                    .dir(&format!("{c_rel}/sub/"))
                    .file(&format!("{c_rel}/file"), b"lower")
                    .symlink("lc", &c)
                    .done(),
                t().owned()
                    .raw(b"lc/sub", b'5', b"", b"", 0o700)
                    .owned()
                    .raw(b"lc/file", b'0', b"", b"upper", 0o4755)
                    .done(),
            ],
            move |d, who| {
                let o = owner(who);
                let inside = c_in3(d);
                assert!(lstat(&d.join("lc")).file_type().is_symlink());
                assert_eq!(meta(&inside.join("sub")), (o, o, 0o700, OWNED_MTIME));
                assert_eq!(read(&inside.join("file")), b"upper");
                assert_eq!(meta(&inside.join("file")), (o, o, 0o4755, OWNED_MTIME));
            },
        ),
        contained(
            "a file replacing a non-empty lower directory (holding symlinks to the canary)",
            vec![
                t().dir("d/")
                    .file("d/f", b"f")
                    .symlink("d/to-canary", &c)
                    .raw(b"d/sub", b'5', b"", b"", 0o555)
                    .file("d/sub/g", b"g")
                    .symlink("d/sub/to-canary-file", &c_file)
                    .done(),
                t().owned().raw(b"d", b'0', b"", b"now a file", 0o600).done(),
            ],
            |d, who| {
                let o = owner(who);
                assert!(lstat(&d.join("d")).is_file());
                assert_eq!(read(&d.join("d")), b"now a file");
                assert_eq!(meta(&d.join("d")), (o, o, 0o600, OWNED_MTIME));
            },
        ),
        contained(
            "containerd/DirectoryOverrideSymlink",
            vec![
                t().symlink("localetc", &c)
                    .dir("localetc/")
                    .file("localetc/f", b"f")
                    .done(),
            ],
            |d, _| assert_eq!(read(&d.join("localetc/f")), b"f"),
        ),
        contained(
            "umoci #546: file then file/child",
            vec![t().file("f", b"file").file("f/child", b"c").done()],
            |d, _| {
                assert_eq!(lstat(&d.join("f")).permissions().mode() & 0o7777, 0o755);
                assert_eq!(read(&d.join("f/child")), b"c");
            },
        ),
        // --- hard links (anchors §3.5 16-20)
        refused(
            "moby/InvalidHardlink/dotdot",
            vec![t().hardlink("h", "../victim/hello").done()],
            &["/h", "climbs out"],
        ),
        refused(
            "hard link to a directory",
            vec![
                t().dir("d/")
                    .hardlink("loophole", "d")
                    .file("loophole/x", b"x")
                    .done(),
            ],
            &["/loophole", "hard link to a directory"],
        ),
        refused(
            "hard link to the canary's absolute path",
            vec![t().hardlink("h", &c_file).done()],
            &["/h", "does not exist"],
        ),
        contained(
            "containerd/HardlinkAbsolute",
            vec![
                t().dir("etc/")
                    .file("etc/passwd", b"inroot")
                    .hardlink("localpasswd", "/etc/passwd")
                    .done(),
            ],
            |d, _| assert!(same_inode(&d.join("localpasswd"), &d.join("etc/passwd"))),
        ),
        contained(
            "containerd/HardlinkDownAndOut (target through an up-and-out symlink)",
            vec![
                t().dir("etc/")
                    .file("etc/passwd", b"inroot")
                    .dir("dummy/")
                    .symlink("dummy/up", "../../../../..")
                    .hardlink("h", "dummy/up/etc/passwd")
                    .done(),
            ],
            |d, _| assert!(same_inode(&d.join("h"), &d.join("etc/passwd"))),
        ),
        contained(
            "containerd/HardlinkSymlinkChmod (a link to a symlink links the symlink)",
            vec![t().symlink("s", &c_file).raw(b"h", b'1', b"s", b"", 0o777).done()],
            |d, _| {
                assert!(lstat(&d.join("h")).file_type().is_symlink());
                assert!(same_inode(&d.join("h"), &d.join("s")));
            },
        ),
        // --- whiteouts (anchors §3.5 22-28)
        refused(
            "containerd/WhiteoutRootParent (.wh..)",
            vec![t().file(".wh..", b"").done()],
            &["invalid whiteout"],
        ),
        refused(
            "containerd/WhiteoutParent (d/.wh..)",
            vec![t().dir("d/").file("d/.wh..", b"").done()],
            &["/d/.wh..", "invalid whiteout"],
        ),
        refused(
            "empty whiteout name (.wh.)",
            vec![t().file(".wh.", b"").done()],
            &["invalid whiteout"],
        ),
        refused(
            "whiteout prefix on a directory",
            vec![t().file(".wh.etc/passwd", b"x").done()],
            &["/.wh.etc/passwd", "whiteout name used as a directory"],
        ),
        contained(
            "containerd/WhiteoutSymlink removes the link, not its target",
            vec![
                t().dir("etc/")
                    .file("etc/passwd", b"p")
                    .symlink("lp", "/etc/passwd")
                    .done(),
                t().file(".wh.lp", b"").done(),
            ],
            |d, _| {
                assert!(absent(&d.join("lp")));
                assert_eq!(read(&d.join("etc/passwd")), b"p");
            },
        ),
        contained(
            "containerd/WhiteoutSymlinkPath resolves the parent inside dest",
            vec![
                t().dir("etc/")
                    .file("etc/x", b"x")
                    .symlink("localetc", "/etc")
                    .done(),
                t().file("localetc/.wh.x", b"").done(),
            ],
            |d, _| assert!(absent(&d.join("etc/x")) && lstat(&d.join("localetc")).file_type().is_symlink()),
        ),
        contained(
            "whiteout and opaque marker through a symlink to the canary (dangling inside dest)",
            vec![
                t().symlink("lc", &c).done(),
                t().file("lc/.wh.file", b"").file("lc/.wh..wh..opq", b"").done(),
            ],
            |d, _| assert!(lstat(&d.join("lc")).file_type().is_symlink()),
        ),
        contained(
            "whiteout and opaque marker through a symlink to the canary (resolvable inside dest)",
            vec![
                t().dir(&format!("{c_rel}/"))
                    .file(&format!("{c_rel}/file"), b"in")
                    .file(&format!("{c_rel}/other"), b"in")
                    .symlink("lc", &c)
                    .done(),
                t().file("lc/.wh.file", b"").file("lc/.wh..wh..opq", b"").done(),
            ],
            move |d, _| {
                assert!(absent(&c_in2(d).join("file")) && absent(&c_in2(d).join("other")));
                assert!(c_in2(d).is_dir());
            },
        ),
        contained(
            "containerd/WhiteoutDeadSymlinkParent",
            vec![
                t().symlink("dead", "/nonexistent").done(),
                t().file("dead/.wh.x", b"").done(),
            ],
            |d, _| assert_eq!(link_target(&d.join("dead")), Path::new("/nonexistent")),
        ),
        contained(
            "a whiteout that carries data is not extracted",
            vec![
                t().file("f", b"lower").done(),
                t().file(".wh.f", b"payload").done(),
            ],
            |d, _| assert!(absent(&d.join("f")) && absent(&d.join(".wh.f"))),
        ),
        // --- special files (anchors §3.5 30-31)
        contained(
            "a device node over a symlink to the canary",
            vec![
                t().symlink("dev", &c_file).done(),
                t().raw(b"dev", b'3', b"", b"", 0o666)
                    .raw(b"fifo", b'6', b"", b"", 0o640)
                    .done(),
            ],
            |d, who| {
                let fifo = lstat(&d.join("fifo"));
                assert!(fifo.file_type().is_fifo());
                assert_eq!(fifo.permissions().mode() & 0o7777, 0o640);
                match who {
                    Who::Root => assert!(lstat(&d.join("dev")).file_type().is_char_device()),
                    Who::Nobody => assert!(absent(&d.join("dev"))),
                }
            },
        ),
        // --- legal but odd: must work (anchors §3.5 47-49)
        legal(
            "absolute symlinks as parents (lib64 -> /usr/lib64, var/run -> /run)",
            vec![
                t().dir("usr/")
                    .dir("usr/lib64/")
                    .symlink("lib64", "/usr/lib64")
                    .dir("run/")
                    .dir("var/")
                    .symlink("var/run", "/run")
                    .done(),
                t().file("lib64/ld.so", b"ld").file("var/run/pid", b"1").done(),
            ],
            |d, _| {
                assert_eq!(read(&d.join("usr/lib64/ld.so")), b"ld");
                assert_eq!(read(&d.join("run/pid")), b"1");
                assert_eq!(link_target(&d.join("lib64")), Path::new("/usr/lib64"));
            },
        ),
        legal(
            "./ prefixes, implied parents, backslashes, newlines and other odd names",
            vec![
                t().dir("./")
                    .dir("./a/")
                    .file("./a/b", b"b")
                    .file("implied/deep/f", b"f")
                    .file("back\\slash", b"1")
                    .file("new\nline", b"2")
                    .file("c:foo", b"3")
                    .file("-dash", b"4")
                    .raw(b"latin\xff", b'0', b"", b"5", 0o644)
                    .done(),
            ],
            |d, _| {
                assert_eq!(read(&d.join("a/b")), b"b");
                assert_eq!(lstat(&d.join("implied")).permissions().mode() & 0o7777, 0o755);
                assert_eq!(read(&d.join("implied/deep/f")), b"f");
                assert_eq!(read(&d.join("back\\slash")), b"1");
                assert_eq!(read(&d.join("new\nline")), b"2");
                assert_eq!(read(&d.join("c:foo")), b"3");
                assert_eq!(read(&d.join("-dash")), b"4");
                use std::os::unix::ffi::OsStrExt;
                assert_eq!(read(&d.join(std::ffi::OsStr::from_bytes(b"latin\xff"))), b"5");
            },
        ),
        legal(
            "whiteouts after their siblings, a path and its whiteout in one layer, opaque last",
            vec![
                t().dir("d/")
                    .file("d/x", b"x")
                    .file("d/y", b"y")
                    .file("d/same", b"lower")
                    .dir("o/")
                    .file("o/lower", b"l")
                    .done(),
                t().file("d/z", b"z")
                    .file("d/same", b"upper")
                    .file("d/.wh.same", b"")
                    .file("d/.wh.x", b"")
                    .file("o/upper", b"u")
                    .file("o/.wh..wh..opq", b"")
                    .done(),
            ],
            |d, _| {
                assert!(absent(&d.join("d/x")));
                assert_eq!(read(&d.join("d/y")), b"y");
                assert_eq!(read(&d.join("d/z")), b"z");
                assert_eq!(read(&d.join("d/same")), b"upper");
                assert!(absent(&d.join("o/lower")));
                assert_eq!(read(&d.join("o/upper")), b"u");
            },
        ),
        legal(
            "a directory replacing a lower symlink, and a hard link to a symlink",
            vec![
                t().symlink("d", "/elsewhere").symlink("s", "/usr/lib64").done(),
                t().dir("d/").file("d/f", b"f").hardlink("h", "s").done(),
            ],
            |d, _| {
                assert!(lstat(&d.join("d")).is_dir());
                assert_eq!(read(&d.join("d/f")), b"f");
                assert_eq!(link_target(&d.join("h")), Path::new("/usr/lib64"));
                assert!(same_inode(&d.join("h"), &d.join("s")));
            },
        ),
        contained(
            "overlayfs's own xattrs carried by a layer steer nothing (opaque, redirect)",
            vec![
                t().dir("d/")
                    .file("d/lower", b"l")
                    .dir("e/")
                    .file("e/x", b"x")
                    .done(),
                t().pax(&[
                    ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                    ("SCHILY.xattr.user.overlay.opaque", b"y"),
                ])
                .dir("d/")
                .file("d/upper", b"u")
                .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/e")])
                .dir("r/")
                .done(),
            ],
            |d, _| {
                assert_eq!(read(&d.join("d/lower")), b"l");
                assert_eq!(read(&d.join("d/upper")), b"u");
                assert!(absent(&d.join("r/x")), "r is not e");
            },
        ),
        legal(
            "setuid survives (mode set after owner)",
            vec![t().raw(b"su", b'0', b"", b"elf", 0o4755).done()],
            |d, _| assert_eq!(lstat(&d.join("su")).permissions().mode() & 0o7777, 0o4755),
        ),
    ];
    cases.extend(reading_cases());
    cases
}

/// A PAX sparse file of format 0.1 (GNU tar's records): real name `f`, `size` bytes, the map
/// `map` (offset,length,…) of `n` segments, and the packed data.
fn sparse_0_1(size: &str, n: &str, map: &str, data: &[u8]) -> Vec<u8> {
    t().pax(&[
        ("GNU.sparse.major", b"0"),
        ("GNU.sparse.minor", b"1"),
        ("GNU.sparse.name", b"f"),
        ("GNU.sparse.size", size.as_bytes()),
        ("GNU.sparse.numblocks", n.as_bytes()),
        ("GNU.sparse.map", map.as_bytes()),
    ])
    .file("GNUSparseFile.0/f", data)
    .done()
}

/// A PAX sparse file of format 1.0 (GNU tar's default): the map's lines at the start of the
/// data, padded to a block, then the packed data.
fn sparse_1_0(realsize: &str, map: &str, data: &[u8]) -> Vec<u8> {
    let mut body = map.as_bytes().to_vec();
    body.resize(body.len().next_multiple_of(512), 0);
    body.extend_from_slice(data);
    t().pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"f"),
        ("GNU.sparse.realsize", realsize.as_bytes()),
    ])
    .file("GNUSparseFile.0/f", &body)
    .done()
}

/// Headers that tar readers read differently, or that must be read as Go's archive/tar reads
/// them (docker unpacks layers with it), and PAX sparse files (issue 18). Refused cases name
/// the entry; nothing of them may land in dest.
fn reading_cases() -> Vec<Case> {
    // Entries a directory's size would hide from tar-rs, and Go (docker) unpacks.
    let hidden = t().file("hidden", b"h").file("second", b"s").entries();
    vec![
        refused(
            "sparse map out of order",
            vec![sparse_0_1("200", "2", "100,10,50,10", &[b'x'; 20])],
            &["f: ", "out of order or overlapping"],
        ),
        refused(
            "sparse map overlapping",
            vec![sparse_0_1("200", "2", "0,100,50,10", &[b'x'; 110])],
            &["f: ", "out of order or overlapping"],
        ),
        refused(
            "sparse segment past the real size (format 1.0)",
            vec![sparse_1_0("100", "1\n95\n10\n", &[b'x'; 10])],
            &["/f: ", "ends past the file's size, 100"],
        ),
        refused(
            "sparse offset + length overflowing",
            vec![sparse_0_1(
                "9223372036854775807",
                "1",
                "9223372036854775807,1",
                b"x",
            )],
            &["f: ", "past the largest file size"],
        ),
        refused(
            "sparse real size out of range",
            vec![sparse_0_1("99999999999999999999", "1", "0,1", b"x")],
            &["f: ", "out of range"],
        ),
        refused(
            "sparse map not decimal",
            vec![sparse_0_1("100", "1", "0x10,1", b"x")],
            &["f: ", "\"0x10\" is not a decimal number"],
        ),
        refused(
            "sparse map count mismatch",
            vec![sparse_0_1("100", "3", "0,1", b"x")],
            &["f: ", "numblocks says 3 pairs"],
        ),
        refused(
            "sparse map of more segments than the limit (format 1.0)",
            vec![sparse_1_0("100", "1048577\n", b"")],
            &["/f: ", "more than the 1048576 accepted"],
        ),
        refused(
            "sparse map cut short (format 1.0)",
            vec![sparse_1_0("100", "3\n0\n1\n", b"")[..3 * 512 + 100].to_vec()],
            &["/f: ", "cut short"],
        ),
        refused(
            "sparse data longer than the map says (format 1.0)",
            vec![sparse_1_0("100", "1\n0\n5\n", &[b'x'; 700])],
            &["/f: ", "5 bytes of data, the entry holds 700"],
        ),
        refused(
            "a sparse file's real name climbing out (GNU.sparse.name)",
            vec![
                t().pax(&[
                    ("GNU.sparse.major", b"1"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.name", b"../victim/sparse"),
                    ("GNU.sparse.realsize", b"0"),
                ])
                .file("innocent", &{
                    let mut map = b"0\n".to_vec();
                    map.resize(512, 0);
                    map
                })
                .done(),
            ],
            &["../victim/sparse", "climbs out"],
        ),
        refused(
            "unknown sparse format version",
            vec![
                t().pax(&[("GNU.sparse.major", b"2"), ("GNU.sparse.minor", b"0")])
                    .file("v2", b"x")
                    .done(),
            ],
            &["v2: ", "unknown GNU sparse format version 2.0"],
        ),
        refused(
            "old GNU sparse entry (typeflag S)",
            vec![t().old_gnu_sparse("old-sparse", b"data", 1 << 20).done()],
            &["old-sparse: ", "an old GNU sparse entry (typeflag 'S')"],
        ),
        refused(
            "a directory entry carrying data (Go reads the entries inside it, tar-rs skips them)",
            vec![
                t().file("first", b"1")
                    .raw(b"d/", b'5', b"", &hidden, 0o755)
                    .file("visible", b"v")
                    .done(),
            ],
            &["d/: ", "a directory entry carrying 2048 bytes of data"],
        ),
        refused(
            "a symlink entry carrying data",
            vec![
                t().raw(b"l", b'2', b"t", &hidden, 0o777)
                    .file("visible", b"v")
                    .done(),
            ],
            &["l: ", "a symlink entry carrying 2048 bytes of data"],
        ),
        refused(
            "PAX path given twice (tar-rs takes the first, Go the last)",
            vec![
                t().pax(&[("path", b"innocent"), ("path", b"other")])
                    .file("f", b"x")
                    .done(),
            ],
            &["PAX record path given twice"],
        ),
        refused(
            "PAX size given twice",
            vec![
                t().pax(&[("size", b"1"), ("size", b"1024")])
                    .raw(b"f", b'0', b"", &hidden, 0o644)
                    .done(),
            ],
            &["f: ", "PAX record size given twice"],
        ),
        refused(
            "malformed PAX size (tar-rs keeps the header's size, Go refuses)",
            vec![t().pax(&[("size", b"abc")]).file("f", b"x").done()],
            &["f: ", "bad PAX size", "not a decimal number"],
        ),
        refused(
            "a PAX header larger than 1 MiB",
            vec![
                t().pax(&[("comment", &vec![b'c'; 2 << 20])])
                    .file("f", b"x")
                    .done(),
            ],
            &[
                "PAX extended header of 2097169 bytes",
                "more than the 1 MiB accepted",
            ],
        ),
        legal(
            "a PAX sparse file: its real name, size and content, holes kept as holes",
            vec![sparse_0_1("1048576", "2", "0,4,1048572,4", b"headtail")],
            |d, _| {
                let f = d.join("f");
                let content = read(&f);
                assert_eq!(content.len(), 1 << 20);
                assert_eq!(
                    (&content[..4], &content[(1 << 20) - 4..]),
                    (&b"head"[..], &b"tail"[..])
                );
                assert!(content[4..(1 << 20) - 4].iter().all(|b| *b == 0));
                assert!(lstat(&f).blocks() <= 16, "{} blocks", lstat(&f).blocks());
                assert!(absent(&d.join("GNUSparseFile.0")));
            },
        ),
        legal(
            "an empty PAX path keeps the header's name (as Go)",
            vec![t().pax(&[("path", b"")]).file("named", b"n").done()],
            |d, _| assert_eq!(read(&d.join("named")), b"n"),
        ),
    ]
}

/// A fresh TMP with dest's neighbours: the canary (a file, a subdirectory), dest-evil, victim.
fn prepare(tmp: &Path, who: Who) {
    file(tmp, "canary/file", b"canary\n", 0o644, 1_500_000_000);
    file(tmp, "canary/sub/deep", b"deep\n", 0o600, 1_500_000_000);
    file(tmp, "dest-evil/keep", b"evil\n", 0o644, 1_500_000_000);
    file(tmp, "victim/hello", b"hello\n", 0o644, 1_500_000_000);
    for d in ["canary/sub", "canary", "dest-evil", "victim"] {
        mtime(tmp, d, 1_500_000_000);
    }
    if who == Who::Nobody {
        for e in walkdir::WalkDir::new(tmp) {
            let p = e.expect("walk").into_path();
            std::os::unix::fs::lchown(&p, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
    }
}

/// Everything in TMP except dest (and the layout the binary reads): each neighbour's own
/// metadata and its full snapshot. (Not one snapshot of TMP: names inside dest hold newlines.)
fn outside(tmp: &Path) -> String {
    everything_but(tmp, &["dest", "layout"])
}

/// Each entry of `dir` but `skip`: its own metadata and its full snapshot.
fn everything_but(dir: &Path, skip: &[&str]) -> String {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| !skip.iter().any(|s| n == s))
        .collect();
    names.sort();
    let mut out = String::new();
    for n in names {
        let p = dir.join(&n);
        let m = lstat(&p);
        out += &format!("{n:?} {:o} {}:{} {}\n", m.mode(), m.uid(), m.gid(), m.mtime());
        if m.is_dir() {
            out += &snapshot(&p);
        }
    }
    out
}

/// Applies the layers with the library, as `who` (an unprivileged run switches this thread's
/// credentials only). Returns the error chain on one line.
fn apply_library(dest: &Path, layers: &[Vec<u8>], who: Who) -> Result<(), String> {
    std::fs::create_dir(dest).expect("mkdir dest");
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o700)).expect("chmod dest");
    if who == Who::Nobody {
        std::os::unix::fs::chown(dest, Some(NOBODY), Some(NOBODY)).expect("chown dest");
    }
    let (dest, layers) = (dest.to_path_buf(), layers.to_vec());
    std::thread::spawn(move || {
        if who == Who::Nobody {
            use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
            let (g, u) = (
                rustix::fs::Gid::from_raw(NOBODY),
                rustix::fs::Uid::from_raw(NOBODY),
            );
            set_thread_groups(&[]).expect("setgroups");
            set_thread_res_gid(g, g, g).expect("setresgid");
            set_thread_res_uid(u, u, u).expect("setresuid");
            assert!(!rustix::process::geteuid().is_root());
        }
        let opts = common::apply::Options {
            privileged: rustix::process::geteuid().is_root(),
            ..Default::default()
        };
        let run = || -> common::Result<()> {
            let mut a = common::apply::Applier::new(&dest, opts)?;
            for l in &layers {
                a.apply_layer(l.as_slice())?;
            }
            a.finish().map(drop)
        };
        run().map_err(|e| format!("{e:#}"))
    })
    .join()
    .expect("applier thread")
}

/// Applies the layers with `image-stack --rootfs` (or another `sink`), as `who`. Returns stderr
/// on failure.
fn apply_binary(tmp: &Path, dest: &Path, who: Who, sink: &str) -> Result<(), String> {
    let bin = bin_dir().join("image-stack");
    let mut cmd = match who {
        Who::Root => tool("image-stack"),
        Who::Nobody => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin);
            c
        }
    };
    cmd.arg("--from")
        .arg(format!("{}:t", tmp.join("layout").display()))
        .arg(sink)
        .arg(dest);
    let out = run(&mut cmd, b"");
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    Err(err)
}

fn run_case(i: usize, via: Via, who: Who) -> &'static str {
    let tmp = tempdir();
    let tmp = tmp.path();
    let cases = corpus(tmp);
    let case = &cases[i];
    if via != Via::Library {
        raw_layout(&tmp.join("layout"), &case.layers);
    }
    prepare(tmp, who);
    let before = outside(tmp);
    let layout_before = outside_cache(tmp);
    let dest = tmp.join("dest");
    let result = match via {
        Via::Library => apply_library(&dest, &case.layers, who),
        Via::Binary => apply_binary(tmp, &dest, who, "--rootfs"),
        Via::Mount => apply_mount(tmp, &dest),
    };
    let name = case.name;
    let unmount = || {
        if via == Via::Mount && dest.exists() {
            ok(tool("image-stack").arg("--unmount").arg(&dest), b"");
        }
    };
    let after = (outside(tmp), outside_cache(tmp));
    if after != (before.clone(), layout_before.clone()) {
        unmount();
        assert_eq!(after.0, before, "{name}: something outside dest changed");
        assert_eq!(
            after.1, layout_before,
            "{name}: the layout changed outside the layer cache"
        );
    }
    for p in HOST_NEVER {
        assert!(absent(Path::new(p)), "{name}: {p} was created on the host");
    }
    match (&case.expect, result) {
        (Expect::Refused(why), Err(err)) => {
            for w in *why {
                assert!(err.contains(w), "{name}: error should mention {w:?}: {err}");
            }
        }
        (Expect::Refused(_), Ok(())) => panic!("{name}: applied, should have been refused"),
        (Expect::Contained(check), Ok(())) => {
            let checked = catch_unwind(AssertUnwindSafe(|| check(&dest, who)));
            unmount();
            if let Err(e) = checked {
                std::panic::resume_unwind(e);
            }
        }
        (Expect::Contained(_), Err(err))
            if via == Via::Mount && OVERLAY_REFUSES.iter().any(|r| r.0 == name) =>
        {
            let why = OVERLAY_REFUSES
                .iter()
                .find(|r| r.0 == name)
                .map(|r| r.1)
                .unwrap_or_default();
            assert!(err.contains(why) && err.contains("--rootfs"), "{name}: {err}");
        }
        (Expect::Contained(_), Err(err)) => panic!("{name}: refused, should have applied: {err}"),
    }
    name
}

/// Applies the layers through `image-stack --mount` (root only). Returns stderr on failure.
fn apply_mount(tmp: &Path, dest: &Path) -> Result<(), String> {
    let result = apply_binary(tmp, dest, Who::Root, "--mount");
    if let Err(err) = &result {
        assert!(!dest.exists(), "a failed mount leaves no mount point: {err}");
    }
    result
}

/// The layout the binary and the mount read, but for the layer cache and mount records
/// (`.layerkit`): it must not change.
fn outside_cache(tmp: &Path) -> String {
    let layout = tmp.join("layout");
    if !layout.exists() {
        return String::new();
    }
    everything_but(&layout, &[".layerkit"])
}

/// Cases a mount refuses (exit 2, one line, contained all the same), because a layer's cache
/// entry holds that layer alone: a hard link to a lower layer's file cannot be made in it; a
/// path written, or whited out, beneath a symlink of a lower layer would land in the layer's
/// own directory of that name, which overlayfs would show over the symlink (docker's overlay2
/// does so silently); a 0:0 character device is overlayfs's whiteout.
const OVERLAY_REFUSES: &[(&str, &str)] = &[
    (
        "a hard link (PAX uid/gid 1234, mode, mtime) to a lower symlink to the canary, then a file over it",
        "cannot link to a lower one's file",
    ),
    (
        "owned entries beneath a symlink to the canary dir, dangling inside dest",
        "which a lower layer",
    ),
    (
        "owned entries beneath a symlink to the canary dir, resolvable inside dest",
        "which a lower layer",
    ),
    (
        "containerd/WhiteoutSymlinkPath resolves the parent inside dest",
        "which a lower layer",
    ),
    (
        "whiteout and opaque marker through a symlink to the canary (dangling inside dest)",
        "which a lower layer",
    ),
    (
        "whiteout and opaque marker through a symlink to the canary (resolvable inside dest)",
        "which a lower layer",
    ),
    ("containerd/WhiteoutDeadSymlinkParent", "which a lower layer"),
    (
        "a device node over a symlink to the canary",
        "0:0 character device",
    ),
    (
        "absolute symlinks as parents (lib64 -> /usr/lib64, var/run -> /run)",
        "which a lower layer",
    ),
    (
        "a directory replacing a lower symlink, and a hard link to a symlink",
        "cannot link to a lower one's file",
    ),
];

/// Runs every case, collecting failures so that one report lists them all.
fn run_corpus(via: Via, who: Who) {
    if who == Who::Nobody && !needs_root("switching to uid 65534") {
        return;
    }
    let n = corpus(Path::new("/tmp/x")).len();
    let mut failed = Vec::new();
    for i in 0..n {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| run_case(i, via, who))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("case {i}: {msg}"));
        }
    }
    assert!(failed.is_empty(), "{via:?} as {who:?}:\n{}", failed.join("\n"));
}

/// The check of dest's neighbours sees what a chown, chmod or utime that followed a link to
/// the canary would change: owner, mode and mtime of the canary directory and what it holds.
#[test]
fn the_outside_check_sees_owner_mode_and_mtime_changes() {
    type Change = Box<dyn Fn(&Path)>;
    let chmod = |rel: &'static str, mode: u32| -> Change {
        Box::new(move |tmp: &Path| {
            std::fs::set_permissions(tmp.join(rel), std::fs::Permissions::from_mode(mode)).expect("chmod")
        })
    };
    let touch = |rel: &'static str| -> Change { Box::new(move |tmp: &Path| mtime(tmp, rel, OWNED_MTIME)) };
    let chown = |rel: &'static str, uid: Option<u32>, gid: Option<u32>| -> Change {
        Box::new(move |tmp: &Path| std::os::unix::fs::lchown(tmp.join(rel), uid, gid).expect("chown"))
    };
    let mut changes: Vec<(&str, Change)> = vec![
        ("chmod canary/file", chmod("canary/file", 0o4711)),
        ("chmod canary", chmod("canary", 0o1777)),
        ("chmod canary/sub/deep", chmod("canary/sub/deep", 0o644)),
        ("utime canary/file", touch("canary/file")),
        ("utime canary", touch("canary")),
        ("utime canary/sub", touch("canary/sub")),
    ];
    if needs_root("chowning the canary") {
        changes.extend([
            ("chown canary/file", chown("canary/file", Some(OWNED), None)),
            ("chgrp canary/file", chown("canary/file", None, Some(OWNED))),
            ("chown canary", chown("canary", Some(OWNED), Some(OWNED))),
            (
                "chown canary/sub/deep",
                chown("canary/sub/deep", Some(OWNED), None),
            ),
        ]);
    }
    for (what, change) in changes {
        let tmp = tempdir();
        prepare(tmp.path(), Who::Root);
        let before = outside(tmp.path());
        change(tmp.path());
        assert_ne!(outside(tmp.path()), before, "{what} went unseen");
    }
}

#[test]
fn the_corpus_is_big_enough() {
    let cases = corpus(Path::new("/tmp/x"));
    assert!(cases.iter().filter(|c| c.hostile).count() >= 20);
    assert!(cases.iter().any(|c| !c.hostile));
}

#[test]
fn library_as_root() {
    if !needs_root("the root half of the corpus") {
        return;
    }
    run_corpus(Via::Library, Who::Root);
}

#[test]
fn library_as_nobody() {
    run_corpus(Via::Library, Who::Nobody);
}

#[test]
fn binary_as_root() {
    if !needs_root("the root half of the corpus") {
        return;
    }
    run_corpus(Via::Binary, Who::Root);
}

#[test]
fn binary_as_nobody() {
    run_corpus(Via::Binary, Who::Nobody);
}

/// The corpus through the layer cache and an overlay mount (root: the kernel's overlayfs).
#[test]
fn mount_as_root() {
    if !needs_root("overlay mounts") {
        return;
    }
    run_corpus(Via::Mount, Who::Root);
}

/// As an unprivileged user, owners and devices are skipped with warnings, never failures.
#[test]
fn unprivileged_run_warns_instead_of_failing() {
    if !needs_root("switching to uid 65534") {
        return;
    }
    let tmp = tempdir();
    let layers = vec![
        t().raw(b"dev", b'3', b"", b"", 0o666)
            .pax(&[("uid", b"1000"), ("SCHILY.xattr.trusted.x", b"1")])
            .file("owned", b"o")
            .done(),
    ];
    raw_layout(&tmp.path().join("layout"), &layers);
    prepare(tmp.path(), Who::Nobody);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin_dir().join("image-stack"))
        .arg("--from")
        .arg(format!("{}:t", tmp.path().join("layout").display()))
        .arg("--rootfs")
        .arg(tmp.path().join("dest"));
    let out = run(&mut cmd, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for w in ["device node", "/dev", "owners not applied", "trusted.x on /owned"] {
        assert!(err.contains(w), "warning should mention {w:?}: {err}");
    }
    assert_eq!(read(&tmp.path().join("dest/owned")), b"o");
    assert_eq!(lstat(&tmp.path().join("dest/owned")).uid(), NOBODY);
}
