//! Shell completions, in the directories bash-completion, zsh and fish search under a prefix.

use anyhow::Context;
use clap_complete::Shell;
use std::fs;
use std::path::Path;

pub fn write_all(tools: &mut [clap::Command], share: &Path) -> anyhow::Result<()> {
    for cmd in tools.iter_mut() {
        let name = cmd.get_name().to_string();
        for (shell, dir, file) in [
            (Shell::Bash, "bash-completion/completions", name.clone()),
            (Shell::Zsh, "zsh/site-functions", format!("_{name}")),
            (Shell::Fish, "fish/vendor_completions.d", format!("{name}.fish")),
        ] {
            let dir = share.join(dir);
            fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            let mut out = Vec::new();
            clap_complete::generate(shell, cmd, &name, &mut out);
            let path = dir.join(file);
            fs::write(&path, out).with_context(|| path.display().to_string())?;
        }
    }
    Ok(())
}
