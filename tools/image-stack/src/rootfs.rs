//! `--rootfs DIR`: the stack applied into a directory, layer by layer, by `common::apply`
//! (which keeps every write inside DIR).

use crate::stack::Stack;
use anyhow::{Context, bail};
use common::apply::{Applier, Options};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Unpacks the stack into `dir`: created 0700 when absent and 0755 once unpacked, as docker
/// and containerd make a root, unless a layer carries `./`; an existing one must be empty.
pub fn unpack(stack: &Stack, dir: &Path, rootless: bool, quiet: bool) -> crate::Result<()> {
    let created = prepare(dir)?;
    // A half-unpacked tree may be large, and DIR may be the user's: a signal names it rather
    // than spending long removing it.
    let shown = shell_word(&dir.display().to_string());
    let _on_signal = common::signal::on_signal(move || {
        common::progress::message(&format!(
            "image-stack: interrupted: {shown} holds a partly unpacked image; remove it with: rm -rf {shown}"
        ));
    });
    let opts = Options {
        privileged: common::cli::is_root(),
        rootless,
        root_mode: created.then_some(0o755),
        overlay: None,
    };
    let mut applier = Applier::new(dir, opts)?;
    let progress = stack.progress("unpacking", quiet);
    for (i, layer) in stack.layers.iter().enumerate() {
        progress.set_layer(i + 1, stack.layers.len());
        let mut stream = stack.open_layer(layer)?;
        applier
            .apply_layer(progress.reader(&mut stream))
            .with_context(|| format!("layer {}", layer.desc.digest))?;
        stream.finish()?;
    }
    let report = applier.finish()?;
    if !quiet {
        for w in &report.warnings {
            progress.warn("image-stack", w);
        }
    }
    Ok(())
}

/// `word` as one shell word: as it is when it holds nothing a shell would read, else quoted.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Creates `dir` private (others must not reach a half-unpacked tree, setuid files included),
/// or checks that the existing one is an empty directory. True when it was created.
fn prepare(dir: &Path) -> crate::Result<bool> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("--rootfs {}: creating it", dir.display())),
    }
    let meta = fs::metadata(dir).with_context(|| format!("--rootfs {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("--rootfs {}: not a directory", dir.display());
    }
    if fs::read_dir(dir)
        .with_context(|| format!("--rootfs {}", dir.display()))?
        .next()
        .is_some()
    {
        bail!(
            "--rootfs {}: the directory is not empty (unpack into a new or empty one)",
            dir.display()
        );
    }
    Ok(false)
}
