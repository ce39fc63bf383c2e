//! Crash safety: layer-pack, image-stack --tag and image-prune are SIGKILLed at random points,
//! many times; after every kill the layout must be valid (every blob matches its digest,
//! index.json parses, every tagged image resolves and its blobs exist) and a rerun of the same
//! command must succeed. The last state of each layout is unpacked with `image-stack --rootfs`.
//!
//! The random delays come from a seeded generator; the seed is printed so a failure can be
//! replayed with `LAYERKIT_CRASH_SEED=<seed>` (the same kill points as fractions of each run's
//! length: the lengths themselves are the machine's). CI runs 200 kills in total;
//! `LAYERKIT_CRASH_KILLS` sets the kills per tool elsewhere (default 10). Nothing asserts on
//! timing: a kill that comes too late only shortens the next window until one lands.

use crate::support::{Tar, in_ci, oci_check, ok, tempdir, tool};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::layout::{Layout, TMP_PREFIX};

/// splitmix64: small, seedable, good enough to spread kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration uniformly in [0, max].
    fn delay(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next() % nanos)
    }
}

fn seed() -> u64 {
    match std::env::var("LAYERKIT_CRASH_SEED") {
        Ok(s) => s.parse().expect("LAYERKIT_CRASH_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64,
    }
}

/// Kills per tool: `ci` each in CI (200 in all).
fn kills_per_tool(ci: usize) -> usize {
    if in_ci() {
        return ci;
    }
    std::env::var("LAYERKIT_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// Checks a layout after a kill. `verified` remembers blobs already hashed (by inode, size and
/// mtime: a blob never changes once in place, so a change there is itself worth a rehash).
fn check_layout(root: &Path, verified: &mut HashMap<String, (u64, u64, i64)>, context: &str) {
    let blobs = root.join("blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap_or_else(|e| panic!("{context}: {}: {e}", blobs.display())) {
        let e = e.expect("readdir");
        let name = e.file_name().to_string_lossy().into_owned();
        let m = e.metadata().expect("stat blob");
        let key = (m.ino(), m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000);
        if verified.get(&name) == Some(&key) {
            continue;
        }
        let mut h = sha2::Sha256::default();
        let mut f = std::fs::File::open(e.path()).expect("open blob");
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = f.read(&mut buf).expect("read blob");
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut h, &buf[..n]);
        }
        let got = hex::encode(sha2::Digest::finalize(h));
        assert_eq!(
            got, name,
            "{context}: blob {name} does not match its digest (a torn blob)"
        );
        verified.insert(name, key);
    }
    verified.retain(|name, _| blobs.join(name).exists());
    // Every blob was just hashed: the walk checks that each descriptor's blob is there.
    if let Err(e) = oci_check::valid_layout(root, false) {
        panic!("{context}: {e}");
    }
}

/// Every tagged image of the layout unpacks.
fn unpack_all(root: &Path, scratch: &Path) {
    let tags = oci_check::valid_layout(root, true).unwrap_or_else(|e| panic!("{e}"));
    for (i, tag) in tags.keys().enumerate() {
        let dest = scratch.join(format!("unpack-{i}"));
        ok(
            tool("image-stack")
                .arg("--from")
                .arg(format!("{}:{tag}", root.display()))
                .arg("--rootfs")
                .arg(&dest),
            b"",
        );
        std::fs::remove_dir_all(&dest).expect("rm unpacked");
    }
}

/// Runs `cmd` to completion; returns stdout and how long it took.
fn run_timed(cmd: &mut Command, context: &str) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(
        out.status.success(),
        "{context}: rerun {cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.stdout, start.elapsed())
}

/// Starts `cmd`, SIGKILLs it after a random delay up to `window`; true when the kill landed
/// (the process had not finished yet).
fn kill_at_random(cmd: &mut Command, rng: &mut Rng, window: Duration) -> bool {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(rng.delay(window));
    let _ = child.kill();
    let status = child.wait().expect("wait");
    status.signal() == Some(libc::SIGKILL)
}

/// The kill loop shared by the three tools: `command` is what gets killed and rerun; `after`
/// runs after each successful rerun (to undo it, so the next kill hits real work again).
fn kill_loop(
    name: &str,
    ci_kills: usize,
    layout: &Path,
    rng: &mut Rng,
    seed: u64,
    mut command: impl FnMut() -> Command,
    mut after: impl FnMut(&[u8]),
) -> usize {
    let mut verified = HashMap::new();
    let (out, mut window) = run_timed(&mut command(), &format!("{name}: first run"));
    after(&out);
    let want = kills_per_tool(ci_kills);
    let mut kills = 0;
    let mut attempts = 0;
    while kills < want {
        attempts += 1;
        let landed = kill_at_random(&mut command(), rng, window);
        let context = format!("{name}: after kill {kills} (seed {seed})");
        check_layout(layout, &mut verified, &context);
        if landed {
            kills += 1;
        }
        let (out, took) = run_timed(&mut command(), &context);
        check_layout(layout, &mut verified, &format!("{context}, after the rerun"));
        after(&out);
        // Follow the machine's speed: the window is the last full run's length, or half the
        // last window when the command finished before the kill (at worst the kill comes right
        // after the start, which always lands).
        window = if landed { took } else { window / 2 };
    }
    eprintln!("crash_kill: {name}: {kills} kills in {attempts} attempts");
    kills
}

/// A tar of `mb` MiB: a quarter random bytes, the rest text, so gzip has real work.
fn big_tar(path: &Path, mb: usize, rng: &mut Rng) {
    let mut tar = Tar::default();
    for i in 0..mb {
        let mut data = vec![0u8; 1 << 20];
        if i % 4 == 0 {
            for chunk in data.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
            }
        } else {
            for (j, byte) in data.iter_mut().enumerate() {
                *byte = b"layerkit crash test line of text\n"[j % 33];
            }
        }
        tar = tar.file(&format!("data/part-{i:03}"), &data);
    }
    std::fs::write(path, tar.done()).expect("write tar");
}

fn temp_files(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .expect("readdir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TMP_PREFIX))
        })
        .collect()
}

fn prune(root: &Path) {
    ok(tool("image-prune").args(["-q", "--grace", "0"]).arg(root), b"");
}

#[test]
fn sigkill_leaves_every_layout_valid_and_a_rerun_succeeds() {
    let seed = seed();
    eprintln!("crash_kill: seed {seed} (replay with LAYERKIT_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let dir = tempdir();
    let d = dir.path();
    let input = d.join("big.tar");
    big_tar(&input, 20, &mut rng);
    let mut total = 0;

    // layer-pack: each rerun's blob is pruned again (it is an orphan), so every kill lands in a
    // run that really writes the blob; image-prune then also clears what the killed runs left.
    let pack = d.join("pack");
    total += kill_loop(
        "layer-pack",
        50,
        &pack,
        &mut rng,
        seed,
        || {
            let mut c = tool("layer-pack");
            c.args(["-q", "--layout"]).arg(&pack).arg(&input);
            c
        },
        |out| {
            let desc: serde_json::Value = serde_json::from_slice(out).expect("descriptor");
            let hex = desc["digest"]
                .as_str()
                .expect("digest")
                .trim_start_matches("sha256:");
            assert!(
                pack.join("blobs/sha256").join(hex).is_file(),
                "the rerun's blob is missing"
            );
            prune(&pack);
            assert_eq!(
                temp_files(&pack),
                Vec::<PathBuf>::new(),
                "image-prune left temporary files"
            );
        },
    );

    // image-stack --tag: the big layer lives in another layout and is copied in; each rerun's
    // image is untagged and pruned so the next run copies it again.
    let source = d.join("source");
    let desc = ok(
        tool("layer-pack")
            .args(["-q", "--compress", "none", "--layout"])
            .arg(&source)
            .arg(&input),
        b"",
    );
    ok(
        tool("image-stack")
            .args(["-q", "--layer", "-", "--tag"])
            .arg(format!("{}:big", source.display())),
        &desc,
    );
    let store = d.join("store");
    let small = d.join("small");
    crate::support::file(&small, "etc/hostname", b"kept\n", 0o644, 1_600_000_000);
    let small_desc = ok(
        tool("layer-pack")
            .args(["-q", "--layout"])
            .arg(&store)
            .arg(&small),
        b"",
    );
    ok(
        tool("image-stack")
            .args(["-q", "--layer", "-", "--tag"])
            .arg(format!("{}:kept", store.display())),
        &small_desc,
    );
    let store_layout = Layout::open(&store).expect("store");
    total += kill_loop(
        "image-stack --tag",
        75,
        &store,
        &mut rng,
        seed,
        || {
            let mut c = tool("image-stack");
            c.args(["-q", "-m", "copied", "--from"])
                .arg(format!("{}:big", source.display()))
                .arg("--tag")
                .arg(format!("{}:copy", store.display()));
            c
        },
        |_| {
            store_layout
                .update_index(|index| {
                    index.manifests.retain(|e| e.ref_name() != Some("copy"));
                    Ok(())
                })
                .expect("untag");
            prune(&store);
        },
    );

    // image-prune: thousands of garbage blobs and a dangling image, made again after each rerun.
    let garbage = d.join("garbage");
    let garbage_layout = Layout::open_or_create(&garbage).expect("layout");
    let mut round = 0;
    let mut refill = |_: &[u8]| {
        round += 1;
        // Written directly: write_blob's two fsyncs per blob would take minutes.
        for i in 0..2000 {
            let bytes = format!("garbage {round} {i}");
            let digest = common::digest::Digest::of(bytes.as_bytes());
            std::fs::write(garbage_layout.blob_path(&digest), bytes).expect("garbage blob");
        }
        for message in ["old", "new"] {
            ok(
                tool("image-stack")
                    .args(["-q", "-m", message, "--layer", "-", "--tag"])
                    .arg(format!("{}:app", garbage.display())),
                &small_desc,
            );
        }
    };
    // The small layer's blob lives in `store`: its descriptor's source says so.
    refill(b"");
    total += kill_loop(
        "image-prune",
        75,
        &garbage,
        &mut rng,
        seed,
        || {
            let mut c = tool("image-prune");
            c.args(["-q", "--grace", "0"]).arg(&garbage);
            c
        },
        refill,
    );

    for root in [&pack, &store, &garbage] {
        unpack_all(root, d);
    }
    eprintln!(
        "crash_kill: {total} kills in {:?}, every layout valid after each",
        started.elapsed()
    );
    assert!(total >= 200 || !in_ci(), "only {total} kills");
}
