//! The man pages in man/ and the shell completions: up to date with the tools' clap definitions,
//! documenting every flag `--help` shows, and clean under mandoc's and groff's linters.

use crate::support::*;
use std::path::PathBuf;
use std::process::Command;

fn man_dir() -> PathBuf {
    repo().join("man")
}

fn page(tool: &str) -> String {
    let path = man_dir().join(format!("{tool}.1"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make man`)", path.display()))
}

/// The flags a `--help` text lists: `-o`, `--output`, … from the option lines (indented at most
/// six spaces: deeper lines continue a wrapped description, which may start with a dash too).
fn help_flags(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for line in help.lines() {
        let spec = line.trim_start();
        if !spec.starts_with('-') || line.len() - spec.len() > 6 {
            continue;
        }
        let spec = spec.split("  ").next().unwrap_or(spec);
        for word in spec.split([',', ' ', '=', '[', '<']) {
            let word = word.trim();
            if word.starts_with('-') && word.len() > 1 && word != "--" {
                flags.push(word.to_string());
            }
        }
    }
    flags
}

#[test]
fn help_flags_are_parsed_from_clap_help() {
    let help = "Usage: x [OPTIONS]\n\nOptions:\n      --layout <DIR>  The layout\n  -o, --output <FILE>  \
                Write -x here\n                         --all too\n  -H, --human[=<BOOL>]  Human\n  -h, --help  Print help\n";
    assert_eq!(
        help_flags(help),
        ["--layout", "-o", "--output", "-H", "--human", "-h", "--help"]
    );
}

#[test]
fn pages_are_up_to_date() {
    if let Err(e) = xtask::man::check_all(&xtask::tools(), &man_dir()) {
        panic!("{e:#}");
    }
}

#[test]
fn every_flag_of_every_tool_is_in_its_page() {
    for (t, _) in TOOLS {
        let help = String::from_utf8(ok(tool(t).arg("--help"), b"")).expect("utf-8 help");
        let flags = help_flags(&help);
        assert!(
            flags.contains(&"--version".to_string()),
            "{t}: no --version in --help"
        );
        let page = page(t);
        for flag in flags {
            let roff = flag.replace('-', "\\-");
            assert!(
                page.contains(&format!("\\fB{roff}\\fR")),
                "man/{t}.1 does not document {flag} (run `make man`)"
            );
        }
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "\"EXIT STATUS\"",
            "ENVIRONMENT",
        ] {
            assert!(
                page.contains(&format!("\n.SH {section}\n")),
                "man/{t}.1: no {section} section"
            );
        }
        for section in ["EXAMPLES", "\"SEE ALSO\""] {
            assert!(
                page.contains(&format!("\n.SH {section}\n")),
                "man/{t}.1: no {section} section"
            );
        }
    }
}

#[test]
fn pages_lint_clean() {
    for (t, _) in TOOLS {
        let path = man_dir().join(format!("{t}.1"));
        assert!(path.is_file(), "{} is missing (run `make man`)", path.display());
        if let Some(mandoc) = peer("mandoc") {
            let out = Command::new(mandoc)
                .args(["-Tlint", "-W", "warning"])
                .arg(&path)
                .output()
                .unwrap();
            let report =
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && report.is_empty(),
                "mandoc -Tlint {t}.1:\n{report}"
            );
        }
        if let Some(groff) = peer("groff") {
            let out = Command::new(groff)
                .args(["-ww", "-man", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            let report = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && report.is_empty(),
                "groff -ww {t}.1:\n{report}"
            );
        }
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempdir();
    let share = dir.path().join("share");
    if let Err(e) = xtask::completions::write_all(&mut xtask::tools(), &share) {
        panic!("{e:#}");
    }
    for (t, _) in TOOLS {
        let bash = std::fs::read_to_string(share.join("bash-completion/completions").join(t));
        let zsh = std::fs::read_to_string(share.join(format!("zsh/site-functions/_{t}")));
        let fish = std::fs::read_to_string(share.join(format!("fish/vendor_completions.d/{t}.fish")));
        let (bash, zsh, fish) = (bash.expect("bash"), zsh.expect("zsh"), fish.expect("fish"));
        // Every long flag of the tool is offered by each shell.
        let help = String::from_utf8(ok(tool(t).arg("--help"), b"")).unwrap();
        for flag in help_flags(&help).iter().filter(|f| f.starts_with("--")) {
            assert!(bash.contains(flag.as_str()), "{t}: bash completion lacks {flag}");
            assert!(zsh.contains(flag.as_str()), "{t}: zsh completion lacks {flag}");
            let fish_flag = format!("-l {} ", &flag[2..]);
            assert!(fish.contains(&fish_flag), "{t}: fish completion lacks {flag}");
        }
        // bash loads it and registers a completion for the tool.
        let path = share.join("bash-completion/completions").join(t);
        let registered = sh(&format!("source {} && complete -p {t}", path.display()));
        assert!(String::from_utf8_lossy(&registered).contains(t));
    }
}

/// `make install` (its copying half, `install-files`, from the debug build): the five tools,
/// their man pages and the bash, zsh and fish completions, under DESTDIR/PREFIX. The
/// completions come from `cargo run -p xtask` as in a real install (cargo rebuilds xtask if a
/// tool's flags changed).
#[test]
fn make_install_puts_binaries_pages_and_completions_in_place() {
    let dest = tempdir();
    let repo = repo();
    let out = Command::new("make")
        .arg("-C")
        .arg(repo)
        .arg("-s")
        .arg("install-files")
        .arg(format!("BIN={}", bin_dir().display()))
        .arg(format!("DESTDIR={}", dest.path().display()))
        .arg("PREFIX=/opt/layerkit")
        .output()
        .expect("running make");
    assert!(
        out.status.success(),
        "make install-files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = dest.path().join("opt/layerkit");
    for (t, _) in TOOLS {
        let bin = prefix.join("bin").join(t);
        let version = ok(Command::new(&bin).arg("--version"), b"");
        assert!(String::from_utf8_lossy(&version).starts_with(t), "{t} --version");
        assert_eq!(
            std::fs::read(prefix.join(format!("share/man/man1/{t}.1"))).expect("installed page"),
            std::fs::read(repo.join(format!("man/{t}.1"))).expect("page"),
            "{t}.1"
        );
        for c in [
            format!("share/bash-completion/completions/{t}"),
            format!("share/zsh/site-functions/_{t}"),
            format!("share/fish/vendor_completions.d/{t}.fish"),
        ] {
            let text = std::fs::read_to_string(prefix.join(&c)).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert!(text.contains(t), "{c} does not complete {t}");
        }
    }
}
