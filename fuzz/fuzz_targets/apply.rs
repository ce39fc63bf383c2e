//! The apply step (`image-stack --rootfs`): the input is up to four layers' tars, separated by
//! `LAYER_SEP`, applied in order into a fresh root on tmpfs with a canary directory beside it.
//! After each input the canary must be exactly as it was and nothing may exist beside the root
//! and the canary: whatever the layers hold, nothing is written outside the root.
//!
//! Rootless (no mknod, no chown): the fuzzer runs as root, and a device node made from fuzzed
//! numbers is the one thing here that could reach the host's disks if the applier had a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const LAYER_SEP: &[u8] = b"--layerkit-fuzz-layer--";

struct Work {
    dir: PathBuf,
    canary: String,
}

fn work() -> &'static Work {
    static WORK: OnceLock<Work> = OnceLock::new();
    WORK.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
        let dir = PathBuf::from(format!("{base}/layerkit-fuzz-apply-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let canary = dir.join("canary");
        std::fs::create_dir_all(canary.join("sub")).expect("canary");
        std::fs::write(canary.join("file"), b"canary\n").expect("canary file");
        std::fs::write(canary.join("sub/file"), b"canary\n").expect("canary file");
        std::os::unix::fs::symlink("../canary/file", canary.join("link")).expect("canary link");
        Work { canary: snapshot(&canary), dir }
    })
}

/// Every entry under `dir` with its type, mode, size, content and link target.
fn snapshot(dir: &Path) -> String {
    let mut out = String::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).expect("lstat in canary");
        use std::os::unix::fs::MetadataExt;
        out.push_str(&format!("{} {:o} {} {}", p.display(), md.mode(), md.len(), md.nlink()));
        if md.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .expect("readdir canary")
                .map(|e| e.expect("dirent").path())
                .collect();
            names.sort();
            todo.extend(names);
        } else if md.file_type().is_symlink() {
            out.push_str(&format!(" -> {}", std::fs::read_link(&p).expect("readlink").display()));
        } else if md.is_file() {
            out.push_str(&format!(" {:?}", std::fs::read(&p).expect("read canary")));
        }
        out.push('\n');
    }
    out
}

fn split_layers(data: &[u8]) -> Vec<&[u8]> {
    let mut layers = Vec::new();
    let mut rest = data;
    while layers.len() < 3
        && let Some(i) = rest.windows(LAYER_SEP.len()).position(|w| w == LAYER_SEP)
    {
        layers.push(&rest[..i]);
        rest = &rest[i + LAYER_SEP.len()..];
    }
    layers.push(rest);
    layers
}

fuzz_target!(|data: &[u8]| {
    let w = work();
    let root = w.dir.join("root");
    std::fs::create_dir(&root).expect("fresh root");
    if let Ok(mut applier) = common::apply::Applier::new(&root, common::apply::Options { rootless: true, ..Default::default() }) {
        let applied = split_layers(data).into_iter().try_for_each(|layer| applier.apply_layer(layer));
        if applied.is_ok() {
            let _ = applier.finish();
        }
    }
    let mut beside: Vec<_> = std::fs::read_dir(&w.dir)
        .expect("readdir work dir")
        .map(|e| e.expect("dirent").file_name())
        .collect();
    beside.sort();
    assert_eq!(beside, ["canary", "root"], "something was created beside the root");
    assert_eq!(snapshot(&w.dir.join("canary")), w.canary, "the canary changed");
    // Directories may have been left 0555 and files immutable-free: root removes them anyway.
    std::fs::remove_dir_all(&root).expect("removing the root");
});
