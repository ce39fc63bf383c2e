//! Shell completions, shipped in the repository (`completions/`, written by `make completions`
//! and checked fresh by a test) and installed by `make install` where bash-completion, zsh and
//! fish look under a prefix.
//!
//! clap_complete writes each tool's flags and values. To that each file adds the completion of
//! IMAGE arguments: a word holding `:` whose LAYOUT (before the first `:`) is an OCI image layout
//! completes to `LAYOUT:TAG` for the layout's tags. The tags come from the tool itself, called
//! with its hidden first argument [`common::cli::COMPLETE_IMAGE`]: the layout's own reader
//! (any JSON formatting, the cap on its size) rather than shell code parsing `index.json`, and
//! stable clap_complete output rather than its `unstable-dynamic` engine.

use anyhow::{Context, bail};
use clap_complete::Shell;
use common::cli::COMPLETE_IMAGE;
use std::fs;
use std::path::{Path, PathBuf};

/// The shells, with the file each one's completion of `tool` is in under `completions/`.
const SHELLS: [(Shell, &str); 3] = [(Shell::Bash, "bash"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")];

/// Where the completion of `tool` for `shell` is kept, relative to `completions/`.
pub fn file(shell: Shell, tool: &str) -> PathBuf {
    match shell {
        Shell::Zsh => PathBuf::from(format!("zsh/_{tool}")),
        Shell::Fish => PathBuf::from(format!("fish/{tool}.fish")),
        _ => PathBuf::from(format!("bash/{tool}")),
    }
}

/// Writes every tool's completions under `dir` (the repository's `completions/`).
pub fn write_all(tools: &mut [clap::Command], dir: &Path) -> anyhow::Result<()> {
    for cmd in tools.iter_mut() {
        for (shell, _) in SHELLS {
            let path = dir.join(file(shell, cmd.get_name()));
            let parent = path.parent().unwrap_or(dir);
            fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
            fs::write(&path, render(cmd, shell)?).with_context(|| path.display().to_string())?;
        }
    }
    Ok(())
}

/// Fails naming every completion file under `dir` that is missing or differs from what
/// [`write_all`] would write.
pub fn check_all(tools: &mut [clap::Command], dir: &Path) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    for cmd in tools.iter_mut() {
        for (shell, _) in SHELLS {
            let path = dir.join(file(shell, cmd.get_name()));
            if fs::read(&path).ok() != Some(render(cmd, shell)?) {
                stale.push(path.display().to_string());
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "missing or out of date (run `make completions`): {}",
            stale.join(", ")
        );
    }
    Ok(())
}

/// One tool's completion for one shell: clap_complete's, with IMAGE words completed.
pub fn render(cmd: &mut clap::Command, shell: Shell) -> anyhow::Result<Vec<u8>> {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, cmd, &name, &mut out);
    let clap = String::from_utf8(out)?;
    let text = match shell {
        Shell::Bash => bash(&clap, &name)?,
        Shell::Zsh => zsh(&clap, &name)?,
        Shell::Fish => format!("{clap}{}", fish(&name)),
        other => bail!("no completion for {other}"),
    };
    Ok(text.into_bytes())
}

/// `text` with `from` replaced, which must be there: a clap_complete that writes its scripts
/// differently fails the generation rather than shipping a completion that lost its IMAGEs.
fn replace(text: &str, from: &str, to: &str) -> anyhow::Result<String> {
    if !text.contains(from) {
        bail!("clap_complete's script no longer holds {from:?}: update xtask/src/completions.rs");
    }
    Ok(text.replace(from, to))
}

/// clap's function stays; the tool is registered with a wrapper that completes IMAGE words
/// and hands every other word to it. bash splits words at `:` (COMP_WORDBREAKS): the whole
/// word is taken from the line, and the replies lose what precedes the word's last `:`.
fn bash(clap: &str, tool: &str) -> anyhow::Result<String> {
    let inner = format!("_{}", tool.replace('-', "__"));
    let outer = format!("_layerkit{inner}");
    let wrapper = format!(
        r#"# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
{outer}() {{
    local line=${{COMP_LINE:0:COMP_POINT}}
    local word=${{line##*[[:space:]]}}
    [[ $word == --*=* ]] && word=${{word#*=}}
    if [[ $word == *:* && -f ${{word%%:*}}/oci-layout ]]; then
        local IFS=$'\n' i pre=
        COMPREPLY=($("$1" {COMPLETE_IMAGE} "$word" 2>/dev/null))
        [[ $COMP_WORDBREAKS == *:* ]] && pre=${{word%"${{word##*:}}"}}
        for i in "${{!COMPREPLY[@]}}"; do
            COMPREPLY[i]=${{COMPREPLY[i]#"$pre"}}
        done
        return 0
    fi
    {inner} "$@"
}}

"#
    );
    let register = format!("complete -F {inner} ");
    // The registration: the last block, at the start of a line (a version test opens the
    // function too, indented).
    let at = clap
        .rfind("\nif [[ \"${BASH_VERSINFO[0]}\"")
        .context("clap_complete's bash script no longer registers under a version test")?
        + 1;
    let (functions, registration) = clap.split_at(at);
    let registration = replace(registration, &register, &format!("complete -F {outer} "))?;
    Ok(format!("{functions}{wrapper}{registration}"))
}

/// clap's function is renamed; the tool's own (which the file's autoload calls) completes
/// IMAGE words and hands every other word to it.
fn zsh(clap: &str, tool: &str) -> anyhow::Result<String> {
    let inner = format!("_{tool}");
    let renamed = replace(
        clap,
        &format!("\n{inner}() {{\n"),
        &format!("\n{inner}_clap() {{\n"),
    )?;
    let wrapper = format!(
        r#"# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
{inner}() {{
    if [[ $PREFIX == *:* && -f ${{PREFIX%%:*}}/oci-layout ]]; then
        local -a images
        images=(${{(f)"$(${{words[1]}} {COMPLETE_IMAGE} "$PREFIX" 2>/dev/null)"}})
        compadd -- $images
        return
    fi
    {inner}_clap "$@"
}}

"#
    );
    let tail = format!("if [ \"$funcstack[1]\" = \"{inner}\" ]; then");
    replace(&renamed, &tail, &format!("{wrapper}{tail}"))
}

/// fish offers what every matching `complete` line offers: one more, for IMAGE words.
fn fish(tool: &str) -> String {
    format!(
        r#"# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
function __layerkit_image_word
    set -l word (commandline -ct)
    string match -q -- '*:*' $word
    and test -f (string split -m1 -- : $word)[1]/oci-layout
end
complete -c {tool} -n __layerkit_image_word -f -a '({tool} {COMPLETE_IMAGE} (commandline -ct) 2>/dev/null)'
"#
    )
}
