//! Interrupts (CLI.md, "Nothing half-written"): on SIGINT or SIGTERM a tool removes what it
//! was writing and exits 130 or 143, leaving every layout exactly as it was, file names and
//! sizes; an interrupted `--rootfs` says in one line what it left and how to remove it; a tar
//! cut on stdout cannot pass for a whole one. Only SIGKILL may leave a temporary file (that is
//! crash_kill's part).
//!
//! The work interrupted is real: a 300 MB tree of random bytes, which gzip cannot shrink, so
//! that packing it lasts several seconds and the signals land in the middle of it.

use crate::support::{image_of_dir, path_with_tools, random_tree, tempdir, tool, tool_path};
use rustix::process::{Pid, Signal};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Every path under `root` with its size (None for a directory): the layout "as it was".
fn listing(root: &Path) -> BTreeMap<String, Option<u64>> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            let e = e.expect("walk");
            let m = e.metadata().expect("stat");
            let name = e
                .path()
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            (name, (!m.is_dir()).then_some(m.len()))
        })
        .collect()
}

fn temporary_files(root: &Path) -> Vec<String> {
    listing(root)
        .into_keys()
        .filter(|n| n.contains(common::layout::TMP_PREFIX))
        .collect()
}

/// A tool with SIGHUP, SIGINT and SIGTERM at their default disposition, whatever the test
/// runner was started with (a shell's `cargo test &` ignores SIGINT, and a tool keeps ignoring
/// a signal it was started with ignored).
fn interruptible(name: &str) -> Command {
    let mut c = Command::new("env");
    c.arg("--default-signal=HUP,INT,TERM").arg(tool_path(name));
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

/// What an interrupted run did.
struct Interrupted {
    status: ExitStatus,
    stderr: String,
    /// The temporary files of `watched` when the signal was sent.
    temporary: Vec<String>,
}

/// Starts `cmd` (stdout as the caller set it, stderr captured), waits until `ready` (given the
/// time since the start) says so, sends `signal`, and waits for the end.
fn interrupt(
    cmd: &mut Command,
    watched: &Path,
    ready: impl Fn(Duration) -> bool,
    signal: Signal,
) -> Interrupted {
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let start = Instant::now();
    while !ready(start.elapsed()) {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "{cmd:?} ended before the signal"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "{cmd:?}: never ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    let temporary = temporary_files(watched);
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "{cmd:?} ended before the signal"
    );
    rustix::process::kill_process(Pid::from_child(&child), signal).expect("kill");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let status = child.wait().expect("wait");
    Interrupted {
        status,
        stderr,
        temporary,
    }
}

fn after(d: f64) -> impl Fn(Duration) -> bool {
    move |t| t >= Duration::from_secs_f64(d)
}

#[test]
fn sigint_and_sigterm_leave_every_layout_as_it_was() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    random_tree(&tree, 30);
    // A layout already in use: an image, so that index.json, blobs and the lock file exist.
    let small = dir.path().join("small");
    fs::create_dir(&small).expect("mkdir");
    fs::write(small.join("hello"), b"hello\n").expect("write");
    let store = dir.path().join("store");
    image_of_dir(&small, &store, "small");
    let before = listing(&store);

    // layer-pack of the tree, interrupted at 0.3 s, 1 s and 2.5 s, and once by SIGTERM.
    for (at, signal, code) in [
        (0.3, Signal::INT, 130),
        (1.0, Signal::INT, 130),
        (2.5, Signal::INT, 130),
        (1.0, Signal::TERM, 143),
    ] {
        // One thread: libdeflate packs the 300 MB in about 2.5 s on two cores, and the last
        // signal must land while the blob is still being written (4 s or so).
        let mut pack = interruptible("layer-pack");
        pack.args(["--threads", "1", "--layout"])
            .arg(&store)
            .arg(&tree)
            .stdout(Stdio::null());
        let run = interrupt(&mut pack, &store, after(at), signal);
        let what = format!("layer-pack, {signal:?} at {at} s");
        assert_eq!(run.status.code(), Some(code), "{what}: {}", run.stderr);
        assert_eq!(run.temporary.len(), 1, "{what}: the blob was being written");
        assert_eq!(listing(&store), before, "{what}: the layout changed");
        assert_eq!(run.stderr, "", "{what}");
    }

    // A layout the interrupted run created goes with it, and so does an `-o` file's temporary.
    let new = dir.path().join("new");
    let mut pack = interruptible("layer-pack");
    pack.arg("--layout").arg(&new).arg(&tree).stdout(Stdio::null());
    let run = interrupt(&mut pack, &new, after(1.0), Signal::INT);
    assert_eq!(run.status.code(), Some(130), "{}", run.stderr);
    assert_eq!(run.temporary.len(), 1);
    assert!(
        !new.exists(),
        "the layout the run created is left: {:?}",
        listing(&new)
    );
    let out = dir.path().join("out");
    fs::create_dir(&out).expect("mkdir");
    let mut pack = interruptible("layer-pack");
    pack.arg("-o")
        .arg(out.join("layer.tar.gz"))
        .arg(&tree)
        .stdout(Stdio::null());
    let run = interrupt(&mut pack, &out, after(1.0), Signal::TERM);
    assert_eq!(run.status.code(), Some(143), "{}", run.stderr);
    assert_eq!(run.temporary.len(), 1);
    assert_eq!(listing(&out), BTreeMap::new());

    // A signal the tool was started with ignored stays ignored (nohup, `cmd &` in a script).
    let mut pack = Command::new("env");
    pack.args(["--default-signal=TERM", "--ignore-signal=INT"])
        .arg(tool_path("layer-pack"))
        .arg("--layout")
        .arg(&store)
        .arg(&tree)
        .stdout(Stdio::null());
    let mut child = pack
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = Pid::from_child(&child);
    std::thread::sleep(Duration::from_millis(300));
    rustix::process::kill_process(pid, Signal::INT).expect("kill");
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "SIGINT ended a tool started with SIGINT ignored"
    );
    rustix::process::kill_process(pid, Signal::TERM).expect("kill");
    assert_eq!(child.wait().expect("wait").code(), Some(143));
    assert_eq!(listing(&store), before);

    // The whole image, for image-stack to copy, unpack and flatten (the tree is no longer
    // needed: the disk holds one copy of the 300 MB at a time, besides what is interrupted).
    image_of_dir(&tree, &store, "big");
    fs::remove_dir_all(&tree).expect("rm tree");
    let big = format!("{}:big", store.display());
    let before = listing(&store);

    // image-stack --tag into another layout: interrupted while the layer's blob is copied.
    let other = dir.path().join("other");
    image_of_dir(&small, &other, "small");
    let other_before = listing(&other);
    let mut copy = interruptible("image-stack");
    copy.args(["--from", &big, "--tag"])
        .arg(format!("{}:copy", other.display()))
        .stdout(Stdio::null());
    let run = interrupt(
        &mut copy,
        &other,
        |_| !temporary_files(&other).is_empty(),
        Signal::INT,
    );
    assert_eq!(run.status.code(), Some(130), "{}", run.stderr);
    assert_eq!(run.temporary.len(), 1);
    assert_eq!(
        listing(&other),
        other_before,
        "image-stack --tag changed the layout"
    );

    // --rootfs: what it left, and how to remove it, in one line.
    let rootfs = dir.path().join("rootfs");
    let mut unpack = interruptible("image-stack");
    unpack
        .args(["--from", &big, "--rootfs"])
        .arg(&rootfs)
        .stdout(Stdio::null());
    let run = interrupt(
        &mut unpack,
        &store,
        |_| fs::read_dir(&rootfs).is_ok_and(|mut d| d.next().is_some()),
        Signal::INT,
    );
    assert_eq!(run.status.code(), Some(130), "{}", run.stderr);
    let shown = rootfs.display();
    assert_eq!(
        run.stderr,
        format!(
            "image-stack: interrupted: {shown} holds a partly unpacked image; remove it with: rm -rf {shown}\n"
        )
    );
    fs::remove_dir_all(&rootfs).expect("rm rootfs");

    // --tar: a stream cut by a signal is no tar, for GNU tar or for layer-pack.
    let cut = dir.path().join("cut.tar");
    let mut flatten = interruptible("image-stack");
    flatten
        .args(["--from", &big, "--tar"])
        .stdout(File::create(&cut).expect("create"));
    let run = interrupt(
        &mut flatten,
        &store,
        |_| fs::metadata(&cut).is_ok_and(|m| m.len() > 0),
        Signal::TERM,
    );
    assert_eq!(run.status.code(), Some(143), "{}", run.stderr);
    assert_poisoned(&cut);
    let mut pack = tool("layer-pack");
    pack.arg("-o").arg(dir.path().join("cut.tar.gz"));
    pack.stdin(File::open(&cut).expect("open"));
    let out = pack.output().expect("layer-pack");
    assert_eq!(out.status.code(), Some(2), "layer-pack took the cut stream");
    fs::remove_file(&cut).expect("rm cut.tar");
    assert_eq!(listing(&store), before);

    // A reader that stopped reading (and was not interrupted) blocks the write under way, and
    // with it the poison that waits for it: a second signal ends the tool at once.
    let mut stuck = interruptible("image-stack");
    // Then nothing more is read (the pipe stays open), so the write under way blocks.
    let (mut child, reader, _) = tar_begun(stuck.args(["--from", &big, "--tar"]).stderr(Stdio::null()));
    std::thread::sleep(Duration::from_millis(200));
    let pid = Pid::from_child(&child);
    for _ in 0..2 {
        assert!(child.try_wait().expect("try_wait").is_none(), "ended early");
        rustix::process::kill_process(pid, Signal::INT).expect("kill");
        std::thread::sleep(Duration::from_millis(300));
    }
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "two SIGINTs did not end it"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    drop(reader);

    // Ctrl-C in a shell: the whole pipeline's process group gets SIGINT, every stage exits 130
    // and the layout is as it was. The signal lands once layer-pack has started its blob (on one
    // thread, it then works for seconds on any machine), not after a fixed time: on a machine
    // with many cores the whole squash can end within two seconds.
    let status_file = dir.path().join("status");
    let mut squash = Command::new("bash");
    squash
        .arg("-c")
        .arg(format!(
            "image-stack --from {big} --tar | layer-pack --threads 1 --layout {store} \
             | image-stack --layer - --tag {store}:flat >/dev/null; echo \"${{PIPESTATUS[*]}}\" > {status}",
            store = store.display(),
            status = status_file.display()
        ))
        .env("PATH", path_with_tools())
        .stdout(Stdio::null())
        .process_group(0);
    let mut child = squash
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let start = Instant::now();
    while temporary_files(&store).is_empty() {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the squash ended before layer-pack started its blob"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "layer-pack never started its blob"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the squash ended as layer-pack started its blob"
    );
    rustix::process::kill_process_group(Pid::from_child(&child), Signal::INT).expect("kill");
    let out = child.wait_with_output().expect("wait");
    let statuses = fs::read_to_string(&status_file).expect("bash wrote the statuses");
    assert_eq!(
        statuses.trim(),
        "130 130 130",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        listing(&store),
        before,
        "the interrupted squash changed the layout"
    );
}

/// Ctrl-C ends a pipe's writer at the moment this stage gets its own SIGINT: the input it then
/// finds cut is the signal's doing, so the stage ends as the signal ends it (130, quietly), not
/// with an error about its input. The writer here dies at once, so the stage sees the end of
/// its input as early as it can; the race is run many times. The stage's status is written by
/// a shell of its own: the shell running the pipeline takes the SIGINT as its own whenever it
/// reaps the killed `sleep` after the stage (bash's job_signal_status), and then writes
/// nothing.
#[test]
fn a_stage_whose_input_the_signal_cut_ends_as_interrupted() {
    let dir = tempdir();
    let status_file = dir.path().join("status");
    for round in 0..20 {
        let mut pipeline = Command::new("bash");
        pipeline
            .arg("-c")
            .arg(format!(
                "sleep 30 | {{ image-stack --layer - --tag {store}:x; echo $? > {status}; }}",
                store = dir.path().join("store").display(),
                status = status_file.display()
            ))
            .env("PATH", path_with_tools())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = pipeline.spawn().expect("bash");
        // image-stack is waiting on its input once it has had time to start.
        std::thread::sleep(Duration::from_millis(300));
        rustix::process::kill_process_group(Pid::from_child(&child), Signal::INT).expect("kill");
        let out = child.wait_with_output().expect("wait");
        let status = fs::read_to_string(&status_file).expect("bash wrote the status");
        fs::remove_file(&status_file).expect("status file");
        assert_eq!(
            status.trim(),
            "130",
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// layer-diff interrupted while it writes its changeset: exit 130, quietly, and the stream it
/// leaves ends with the poison block (all 0xff: no tar reader takes it for a whole tar), so the
/// stage after it cannot pack a cut layer.
#[test]
fn layer_diff_interrupted_leaves_a_poisoned_stream() {
    let dir = tempdir();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    fs::create_dir(&old).expect("mkdir");
    random_tree(&new, 5);
    // The pipe holds the rest back.
    let (mut child, mut out, first) = tar_begun(
        interruptible("layer-diff")
            .arg(&old)
            .arg(&new)
            .stderr(Stdio::piped()),
    );
    rustix::process::kill_process(Pid::from_child(&child), Signal::INT).expect("kill");
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).expect("the rest");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(child.wait().expect("wait").code(), Some(130), "{stderr}");
    assert_eq!(stderr, "");
    assert!(rest.len() < 50 << 20, "the whole changeset was written");
    let cut = dir.path().join("cut.tar");
    let mut bytes = vec![first];
    bytes.extend(&rest);
    fs::write(&cut, bytes).expect("write");
    assert_poisoned(&cut);
}

/// Starts `cmd` writing a tar to a pipe and reads its first byte: the tar is being written.
/// Returns the child, the pipe, and that byte.
fn tar_begun(cmd: &mut Command) -> (std::process::Child, std::process::ChildStdout, u8) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    out.read_exact(&mut first).expect("the tar begins");
    (child, out, first[0])
}

/// A tar stream cut by a signal ends with the block the tools end a failed stream with (all
/// 0xff: a header whose checksum cannot match), written after the last whole write, and GNU
/// tar does not take it for a whole tar.
fn assert_poisoned(cut: &Path) {
    let bytes = fs::read(cut).expect("read");
    assert!(
        bytes.len() > 512 && bytes.ends_with(&[0xff; 512]),
        "no poison at the cut ({} bytes)",
        bytes.len()
    );
    let gnu = Command::new("tar").arg("-tf").arg(cut).output().expect("GNU tar");
    assert!(
        !gnu.status.success(),
        "GNU tar reads the cut stream as a whole tar"
    );
}
