//! The man pages in man/ and the shell completions in completions/: up to date with the tools'
//! clap definitions, documenting every flag `--help` shows, clean under mandoc's and groff's
//! linters; IMAGE words completed to a layout's tags in bash, zsh and fish; every document the
//! pages and the Markdown files point at there in the repository.

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

fn completions_dir() -> PathBuf {
    repo().join("completions")
}

#[test]
fn completions_are_up_to_date() {
    if let Err(e) = xtask::completions::check_all(&mut xtask::tools(), &completions_dir()) {
        panic!("{e:#}");
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = completions_dir();
    for (t, _) in TOOLS {
        let read = |rel: String| {
            std::fs::read_to_string(dir.join(&rel)).unwrap_or_else(|e| panic!("completions/{rel}: {e}"))
        };
        let (bash, zsh, fish) = (
            read(format!("bash/{t}")),
            read(format!("zsh/_{t}")),
            read(format!("fish/{t}.fish")),
        );
        // Every long flag of the tool is offered by each shell.
        let help = String::from_utf8(ok(tool(t).arg("--help"), b"")).unwrap();
        for flag in help_flags(&help).iter().filter(|f| f.starts_with("--")) {
            assert!(bash.contains(flag.as_str()), "{t}: bash completion lacks {flag}");
            assert!(zsh.contains(flag.as_str()), "{t}: zsh completion lacks {flag}");
            let fish_flag = format!("-l {} ", &flag[2..]);
            assert!(fish.contains(&fish_flag), "{t}: fish completion lacks {flag}");
        }
        // bash loads it and registers a completion for the tool.
        let path = dir.join("bash").join(t);
        let registered = sh(&format!("source {} && complete -p {t}", path.display()));
        assert!(String::from_utf8_lossy(&registered).contains(t));
    }
}

/// A layout `store` with the tags web:v1, web:v2 and base (written by hand), in a temp dir.
fn tagged_store() -> tempfile::TempDir {
    let d = tempdir();
    let store = d.path().join("store");
    std::fs::create_dir_all(store.join("blobs/sha256")).unwrap();
    std::fs::write(store.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let entry = |tag: &str| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":2,"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}"#,
            "0".repeat(64)
        )
    };
    let index = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"manifests\": [{}, {}, {}]\n}}\n",
        entry("web:v1"),
        entry("web:v2"),
        entry("base")
    );
    std::fs::write(store.join("index.json"), index).unwrap();
    d
}

/// `LAYOUT:` then TAB offers `LAYOUT:TAG` for the layout's tags, in every shell, for every tool
/// that takes an IMAGE; other words complete as before. The tags are the ones written above.
#[test]
fn images_complete_to_the_tags_of_their_layout() {
    let d = tagged_store();
    let p = d.path();
    let dir = completions_dir();
    // What the shells call: the tool itself.
    let listed = ok(
        tool("image-history")
            .args(["--complete-image", "store:we"])
            .current_dir(p),
        b"",
    );
    assert_eq!(String::from_utf8(listed).unwrap(), "store:web:v1\nstore:web:v2\n");
    for t in ["image-history", "image-stack", "layer-diff", "image-prune"] {
        // bash: the words split as readline splits them (at ':'), the replies what follows the
        // last ':' of the word.
        let bash_file = dir.join("bash").join(t);
        let bash = |line: &str| {
            let script = format!(
                r#"source '{}'
COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}
COMP_WORDBREAKS=$' \t\n"'"'"'><=;|&(:'
read -ra COMP_WORDS <<< "$(sed 's/:/ : /g' <<< "$COMP_LINE")"
[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
$(complete -p {t} | sed 's/.*-F \([^ ]*\) .*/\1/') {t} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
                bash_file.display()
            );
            String::from_utf8(sh_in(p, &script)).unwrap()
        };
        assert_eq!(bash(&format!("{t} store:")), "web:v1\nweb:v2\nbase\n", "bash {t}");
        assert_eq!(bash(&format!("{t} store:web:")), "v1\nv2\n", "bash {t}");
        assert_eq!(bash(&format!("{t} --from store:b")), "base\n", "bash {t}");
        assert_eq!(
            bash(&format!("{t} nostore:")),
            "\n",
            "bash {t}: no layout, no tags"
        );
        assert!(bash(&format!("{t} --ver")).contains("--version"), "bash {t}");
        // zsh: the tool's function as the completion system calls it, compadd recorded.
        if let Some(zsh) = peer("zsh") {
            let zsh_file = dir.join("zsh").join(format!("_{t}"));
            let script = format!(
                "compdef() {{ : }}; compadd() {{ shift $(( ${{@[(i)--]}} )); print -l -- \"$@\" }}; \
                 source '{}'; PREFIX=store:web; words=({t} store:web); _{t}",
                zsh_file.display()
            );
            let mut c = Command::new(zsh);
            c.args(["-fc", &script])
                .current_dir(p)
                .env("PATH", path_with_tools());
            assert_eq!(
                String::from_utf8(ok(&mut c, b"")).unwrap(),
                "store:web:v1\nstore:web:v2\n",
                "zsh {t}"
            );
        }
        // fish: its own completion engine, as on TAB.
        if let Some(fish) = peer("fish") {
            let fish_file = dir.join("fish").join(format!("{t}.fish"));
            let complete = |line: &str| {
                let script = format!("source '{}'; complete -C '{line}'", fish_file.display());
                let mut c = Command::new(&fish);
                c.args(["--no-config", "-c", &script])
                    .current_dir(p)
                    .env("PATH", path_with_tools());
                String::from_utf8(ok(&mut c, b"")).unwrap()
            };
            // fish sorts what it offers.
            assert_eq!(
                complete(&format!("{t} store:")),
                "store:base\nstore:web:v1\nstore:web:v2\n",
                "fish {t}"
            );
            assert!(
                complete(&format!("{t} --ver")).starts_with("--version"),
                "fish {t}"
            );
        }
    }
}

/// SYNOPSIS names every option's value, as --help does: `--layout LAYOUT`, the choices of
/// `--compress`, an optional value in brackets.
#[test]
fn synopsis_names_option_values() {
    let synopsis = |t: &str| {
        let page = page(t);
        let from = page.find(".SH SYNOPSIS\n").expect("SYNOPSIS") + ".SH SYNOPSIS\n".len();
        page[from..].lines().next().unwrap().to_string()
    };
    let layer_pack = synopsis("layer-pack");
    for want in [
        "[\\fB\\-\\-layout\\fR \\fILAYOUT\\fR]",
        "[\\fB\\-\\-compress\\fR gzip|zstd|none]",
        "[\\fB\\-o\\fR|\\fB\\-\\-output\\fR \\fIFILE\\fR]",
        "[\\fIINPUT\\fR]",
    ] {
        assert!(layer_pack.contains(want), "{want} not in {layer_pack}");
    }
    assert!(synopsis("image-history").contains("[\\fB\\-H\\fR|\\fB\\-\\-human\\fR[=true|false]]"));
    assert!(synopsis("image-stack").contains(
        "{\\fB\\-\\-tag\\fR \\fIIMAGE\\fR | \\fB\\-\\-rootfs\\fR \\fIDIR\\fR | \\fB\\-\\-tar\\fR | \\fB\\-\\-mount\\fR \\fIDIR\\fR | \\fB\\-\\-unmount\\fR \\fIDIR\\fR}"
    ));
    // Every option --help shows with a value has one in the synopsis.
    for (t, _) in TOOLS {
        let help = String::from_utf8(ok(tool(t).arg("--help"), b"")).unwrap();
        let line = synopsis(t);
        // Option lines: indented at most six spaces, before the examples.
        let options = help.lines().take_while(|l| !l.starts_with("Examples"));
        for spec in options
            .map(|l| (l.len(), l.trim_start()))
            .filter(|(n, l)| l.starts_with('-') && n - l.len() <= 6)
            .map(|(_, l)| l)
        {
            let spec = spec.split("  ").next().unwrap();
            let Some(long) = spec.split([',', ' ']).find(|w| w.starts_with("--")) else {
                continue;
            };
            let (flag, value) = long
                .split_once(['=', '['])
                .map_or((long, spec.contains(" <")), |(f, _)| (f, true));
            let roff = format!("\\fB{}\\fR", flag.replace('-', "\\-"));
            let at = line
                .find(&roff)
                .unwrap_or_else(|| panic!("{t}: {flag} not in {line}"))
                + roff.len();
            let next = line[at..].chars().next();
            assert_eq!(
                matches!(next, Some(' ' | '['))
                    && !line[at..].starts_with(" \\fB")
                    && !line[at..].starts_with(" [")
                    && !line[at..].starts_with(" |"),
                value,
                "{t}: {flag} in {line}"
            );
        }
    }
}

/// Every relative link of the Markdown files, every page SEE ALSO names and every document a
/// page cites is in the repository (or, for the peers' pages, installed with the peer).
#[test]
fn documents_point_at_what_exists() {
    let repo = repo();
    let mut checked = 0;
    for entry in walkdir::WalkDir::new(repo)
        .into_iter()
        .filter_entry(|e| !matches!(e.file_name().to_str(), Some("target" | ".git")))
    {
        let entry = entry.unwrap();
        if entry.path().extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let target = &rest[..rest.find(')').expect("a link ends")];
            let file = target.split('#').next().unwrap();
            if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                continue;
            }
            let path = entry.path().parent().unwrap().join(file);
            // In the repository: a path that climbs out of it may exist on one machine only.
            let inside = path
                .canonicalize()
                .is_ok_and(|p| p.starts_with(repo.canonicalize().unwrap()));
            assert!(
                inside,
                "{}: link to {target}: not in the repository",
                entry.path().display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} links found");
    for (t, _) in TOOLS {
        let page = page(t);
        let see_also = &page[page.find(".SH \"SEE ALSO\"").expect("SEE ALSO")..];
        for name in see_also.lines().filter_map(|l| l.strip_prefix("\\fB")) {
            let name = name.split("\\fR").next().unwrap().replace("\\-", "-");
            if TOOLS.iter().any(|(tool, _)| *tool == name) {
                assert!(
                    man_dir().join(format!("{name}.1")).is_file(),
                    "{t}: SEE ALSO {name}"
                );
            } else {
                assert!(
                    ["umoci", "skopeo"].contains(&name.as_str()),
                    "{t}: SEE ALSO {name}: not ours nor a peer's"
                );
                if peer(&name).is_some() {
                    let installed = std::path::Path::new("/usr/share/man/man1").join(format!("{name}.1.gz"));
                    assert!(
                        installed.is_file(),
                        "{t}: SEE ALSO {name}: {} is missing",
                        installed.display()
                    );
                }
            }
        }
        let mut rest = page.as_str();
        let mut cited = 0;
        while let Some(i) = rest.find("docs/") {
            let doc: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect();
            let doc = doc.trim_end_matches('.');
            assert!(
                repo.join(doc).is_file(),
                "man/{t}.1 cites {doc}: not in the repository"
            );
            cited += 1;
            rest = &rest[i + 5..];
        }
        assert!(cited >= 2, "man/{t}.1 cites docs/CLI.md and docs/pipelines.md");
    }
}

/// `make install` (its copying half, `install-files`, from the debug build): the six tools,
/// their man pages and the bash, zsh and fish completions from the repository, under
/// DESTDIR/PREFIX, where bash-completion, zsh and fish look.
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
        for (c, shipped) in [
            (
                format!("share/bash-completion/completions/{t}"),
                format!("bash/{t}"),
            ),
            (format!("share/zsh/site-functions/_{t}"), format!("zsh/_{t}")),
            (
                format!("share/fish/vendor_completions.d/{t}.fish"),
                format!("fish/{t}.fish"),
            ),
        ] {
            let text = std::fs::read_to_string(prefix.join(&c)).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(
                text,
                std::fs::read_to_string(completions_dir().join(&shipped)).unwrap(),
                "{c} is not completions/{shipped}"
            );
        }
    }
}

/// docs/CLI.md is the contract in the repository: a command it shows (a code line or span
/// starting with a tool's name) uses only flags that tool has, and every other flag a tool's
/// section names is one of that tool's, or of another tool the sentence refers to. A flag
/// renamed or dropped without the contract changing fails here; so does a contract promising
/// one that was never built.
#[test]
fn the_contract_names_only_flags_the_tools_have() {
    let contract = std::fs::read_to_string(repo().join("docs/CLI.md")).expect("docs/CLI.md");
    let mut flags_of = std::collections::BTreeMap::new();
    for (t, _) in TOOLS {
        let help = String::from_utf8(ok(tool(t).arg("--help"), b"")).expect("utf-8");
        let mut have = help_flags(&help);
        // clap lists visible aliases on a line of their own: `[alias: --x]`, `[aliases: --x, --y]`.
        for (i, _) in help.match_indices("alias") {
            let list = help[i..].split(']').next().unwrap_or_default();
            have.extend(
                list.split([' ', ','])
                    .filter(|w| w.starts_with("--"))
                    .map(str::to_string),
            );
        }
        flags_of.insert(t, have);
    }
    // A flag is `--` and then lowercase words joined by single dashes.
    let flags_in = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2 && !w.ends_with('-'))
            .filter(|w| w[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .map(str::to_string)
            .collect()
    };
    let mut section = "";
    let mut checked = 0;
    for line in contract.lines() {
        if let Some(head) = line.strip_prefix("## ") {
            section = head.split_whitespace().next().unwrap_or_default();
            continue;
        }
        // Commands: in a code line or a code span, each stage of a pipeline that starts with a
        // tool's name (a comment after `#` left out).
        let spans = line.split('`').skip(1).step_by(2);
        let code = line.starts_with("    ").then_some(line.trim_start());
        let stages = spans
            .chain(code)
            .flat_map(|c| {
                c.split(" #")
                    .next()
                    .unwrap_or_default()
                    .split(['|', '&', ';', '$', '('])
            })
            .map(str::trim);
        for command in stages {
            let Some((t, have)) = flags_of
                .iter()
                .find(|(t, _)| command.starts_with(&format!("{t} ")))
            else {
                continue;
            };
            for flag in flags_in(command) {
                assert!(
                    have.contains(&flag),
                    "docs/CLI.md runs `{command}`: {t} has no {flag}"
                );
                checked += 1;
            }
        }
        // Every flag of a tool's section: that tool's, or another tool's.
        if let Some(have) = flags_of.get(section) {
            for flag in flags_in(line) {
                assert!(
                    have.contains(&flag) || flags_of.values().any(|h| h.contains(&flag)),
                    "docs/CLI.md names {flag} in {section}'s section; no tool has it: {line}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 60, "only {checked} flags found: the parsing is broken");
}
