//! The harness itself: the tests run what the sources in this tree say. Cargo builds the tools
//! for the test run (they are binaries of the package whose test this is), so a `cargo test`
//! after an edit runs the edited tool; these tests catch a run that bypasses cargo (the test
//! binary started by hand, or `LAYERKIT_BIN_DIR` pointing at an old build) and would otherwise
//! pass on old code.

use crate::support::{TOOLS, file, newer_sources, repo, tempdir, tool_path};
use std::path::PathBuf;

/// Every tool's binary is newer than its own sources and common's; the test binary is newer
/// than the tests and common's (it links common, and a few tests call it directly).
#[test]
fn the_binaries_under_test_are_newer_than_their_sources() {
    let common = repo().join("common/src");
    let mut stale = Vec::new();
    for (t, _) in TOOLS {
        let bin = tool_path(t);
        let newer = newer_sources(&bin, &[repo().join("tools").join(t).join("src"), common.clone()]);
        stale.extend(
            newer
                .iter()
                .map(|src| format!("{} < {}", bin.display(), src.display())),
        );
    }
    let me = std::env::current_exe().expect("test binary");
    let newer = newer_sources(&me, &[repo().join("tests"), common.clone()]);
    stale.extend(
        newer
            .iter()
            .map(|src| format!("{} < {}", me.display(), src.display())),
    );
    assert!(
        stale.is_empty(),
        "binaries older than their sources (run the tests with cargo test, which rebuilds them):\n{}",
        stale.join("\n")
    );
}

/// The check above sees a source edited after the build, in a subdirectory too, and only `.rs`
/// files count.
#[test]
fn newer_sources_finds_a_source_edited_after_the_build() {
    let dir = tempdir();
    let d = dir.path();
    file(d, "bin", b"", 0o755, 1_700_000_000);
    file(d, "src/old.rs", b"", 0o644, 1_699_999_999);
    file(d, "src/deep/notes.txt", b"", 0o644, 1_700_000_001);
    assert_eq!(
        newer_sources(&d.join("bin"), &[d.join("src")]),
        Vec::<PathBuf>::new()
    );
    file(d, "src/deep/edited.rs", b"", 0o644, 1_700_000_001);
    assert_eq!(
        newer_sources(&d.join("bin"), &[d.join("src")]),
        [d.join("src/deep/edited.rs")]
    );
}
