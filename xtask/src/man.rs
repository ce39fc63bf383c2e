//! Man pages: clap_mangen renders NAME, DESCRIPTION and OPTIONS from the tool's clap
//! definition (so every flag is documented by construction), [`synopsis`] the SYNOPSIS from it
//! with every option's value named (clap_mangen's names the flags alone); the hand-written text
//! of [`crate::pages`] adds the rest of the DESCRIPTION, EXIT STATUS, ENVIRONMENT, EXAMPLES and
//! SEE ALSO.

use crate::pages::{self, Page};
use anyhow::{Context, bail};
use clap::{Arg, ArgAction};
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};
use std::fs;
use std::io::Write;
use std::path::Path;

/// The date in the pages' title line: the last non-trivial change of the hand-written text.
/// Fixed rather than today's, so regenerating an unchanged page gives the same bytes.
const DATE: &str = "2026-11-23";

pub fn write_all(tools: &[clap::Command], dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    for cmd in tools {
        let path = dir.join(format!("{}.1", cmd.get_name()));
        fs::write(&path, render(cmd)?).with_context(|| path.display().to_string())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

pub fn check_all(tools: &[clap::Command], dir: &Path) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    for cmd in tools {
        let path = dir.join(format!("{}.1", cmd.get_name()));
        if fs::read(&path).ok() != Some(render(cmd)?) {
            stale.push(path.display().to_string());
        }
    }
    if !stale.is_empty() {
        bail!("missing or out of date (run `make man`): {}", stale.join(", "));
    }
    Ok(())
}

/// The whole page, as bytes.
pub fn render(cmd: &clap::Command) -> anyhow::Result<Vec<u8>> {
    let name = cmd.get_name();
    let page = pages::page(name).with_context(|| format!("no hand-written man page text for {name}"))?;
    let version = cmd.get_version().unwrap_or_default();
    let man = Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section("1")
        .date(DATE)
        .source(format!("layerkit {version}"))
        .manual("layerkit manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    append(&mut out, |w| man.render_name_section(w))?;
    append(&mut out, |w| synopsis(cmd).to_writer(w))?;
    append(&mut out, |w| man.render_description_section(w))?;
    append(&mut out, |w| hand_description(page).to_writer(w))?;
    let mut buf = Vec::new();
    man.render_options_section(&mut buf)?;
    out.extend(lint_clean(without_preamble(&buf)));
    append(&mut out, |w| hand_sections(page).to_writer(w))?;
    Ok(escape_non_ascii(&String::from_utf8(out)?).into_bytes())
}

/// Help texts may hold `…` or `→`: groff reads its input as Latin-1 unless told otherwise, so
/// every non-ASCII character becomes the `\[uXXXX]` escape both groff and mandoc understand.
fn escape_non_ascii(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    for c in page.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", c as u32));
        }
    }
    out
}

fn append(
    out: &mut Vec<u8>,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    out.extend_from_slice(without_preamble(&buf));
    Ok(())
}

/// clap_mangen separates an option's help from its "Possible values" with `.br`, an empty
/// line, `.br`; mandoc -Tlint warns about the pair. One `.sp` is the same vertical space.
fn lint_clean(options: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(options);
    text.replace("\n.br\n\n.br\n", "\n.sp\n").into_bytes()
}

/// Each rendered piece starts with roff's two-line apostrophe preamble; the page needs it once.
fn without_preamble(rendered: &[u8]) -> &[u8] {
    let mut rest = rendered;
    for _ in 0..2 {
        if rest.starts_with(b".ie \\n(.g") || rest.starts_with(b".el ") {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            rest = &rest[end..];
        }
    }
    rest
}

/// `.SH SYNOPSIS`: the tool, then each visible argument in its order, options with their
/// values (`--layout LAYOUT`, `--compress gzip|zstd|none`, `-H|--human[=true|false]`), a
/// required group as one choice (`{--tag IMAGE | --rootfs DIR | --tar}`), optional ones in
/// brackets, repeatable ones followed by `...`.
pub fn synopsis(cmd: &clap::Command) -> Roff {
    let mut cmd = cmd.clone();
    cmd.build();
    let required: Vec<Vec<&Arg>> = cmd
        .get_groups()
        .filter(|g| g.is_required_set())
        .map(|g| {
            cmd.get_arguments()
                .filter(|a| g.get_args().any(|id| id == a.get_id()))
                .collect()
        })
        .collect();
    let in_group = |a: &Arg| required.iter().flatten().any(|m| m.get_id() == a.get_id());
    let mut line = vec![bold(cmd.get_name().to_string())];
    let options = cmd.get_arguments().filter(|a| !a.is_positional());
    for arg in options.filter(|a| !a.is_hide_set() && !in_group(a)) {
        line.push(roman(" "));
        let optional = !arg.is_required_set();
        if optional {
            line.push(roman("["));
        }
        line.extend(synopsis_arg(arg));
        if optional {
            line.push(roman("]"));
        }
        if matches!(arg.get_action(), ArgAction::Append | ArgAction::Count) {
            line.push(roman("..."));
        }
    }
    for group in &required {
        line.push(roman(" {"));
        for (i, arg) in group.iter().enumerate() {
            if i > 0 {
                line.push(roman(" | "));
            }
            line.extend(synopsis_arg(arg));
        }
        line.push(roman("}"));
    }
    for arg in cmd.get_positionals().filter(|a| !a.is_hide_set() && !in_group(a)) {
        let name = arg
            .get_value_names()
            .map_or(arg.get_id().to_string(), |v| v.join(" "));
        line.push(roman(" "));
        if arg.is_required_set() {
            line.push(italic(name));
        } else {
            line.extend([roman("["), italic(name), roman("]")]);
        }
        if matches!(arg.get_action(), ArgAction::Append) {
            line.push(roman("..."));
        }
    }
    let mut r = Roff::default();
    r.control("SH", ["SYNOPSIS"]).text(line);
    r
}

/// An option as the synopsis shows it: `-o|--output FILE`, `--compress gzip|zstd|none`,
/// `-H|--human[=true|false]`, `--list`.
fn synopsis_arg(arg: &Arg) -> Vec<Inline> {
    let mut out = Vec::new();
    if let Some(short) = arg.get_short() {
        out.push(bold(format!("-{short}")));
    }
    if let Some(long) = arg.get_long() {
        if !out.is_empty() {
            out.push(roman("|"));
        }
        out.push(bold(format!("--{long}")));
    }
    let Some(range) = arg.get_num_args().filter(|r| r.takes_values()) else {
        return out;
    };
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    let value = if values.is_empty() {
        italic(
            arg.get_value_names()
                .map_or(arg.get_id().to_string(), |v| v.join(" ")),
        )
    } else {
        roman(values.join("|"))
    };
    if range.min_values() == 0 {
        out.extend([roman("[="), value, roman("]")]);
    } else {
        out.extend([roman(" "), value]);
    }
    out
}

fn hand_description(page: &Page) -> Roff {
    let mut r = Roff::default();
    for para in page.description {
        r.control("PP", []).text([roman(*para)]);
    }
    r
}

fn hand_sections(page: &Page) -> Roff {
    let mut r = Roff::default();
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in page.exit_status {
        r.control("TP", []).text([bold(*code)]).text([roman(*meaning)]);
    }
    r.control("SH", ["ENVIRONMENT"]);
    for (var, meaning) in page.environment {
        r.control("TP", []).text([bold(*var)]).text([roman(*meaning)]);
    }
    r.control("SH", ["EXAMPLES"]);
    for (i, (what, command)) in page.examples.iter().enumerate() {
        if i > 0 {
            r.control("PP", []);
        }
        r.text([roman(*what)]);
        r.control("PP", []).control("RS", ["4"]).control("nf", []);
        for line in command.lines() {
            r.text([bold(line)]);
        }
        r.control("fi", []).control("RE", []);
    }
    r.control("SH", ["SEE ALSO"]);
    let refs: Vec<String> = page.see_also.iter().map(|p| format!("{p}(1)")).collect();
    for (i, name) in refs.iter().enumerate() {
        let (title, section) = name.split_once('(').unwrap_or((name, ""));
        let sep = if i + 1 < refs.len() { "," } else { "" };
        r.text([bold(title), roman(format!("({section}{sep}"))]);
    }
    r.control("PP", []).text([
        roman("The contract the tools follow: "),
        italic("docs/CLI.md"),
        roman("; the pipelines, as shell and Makefile recipes: "),
        italic("docs/pipelines.md"),
        roman(" in the layerkit sources."),
    ]);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preamble_is_stripped_once_and_only_the_preamble() {
        let mut buf = Vec::new();
        let mut r = Roff::default();
        r.control("SH", ["NAME"]);
        r.to_writer(&mut buf).unwrap();
        assert_eq!(without_preamble(&buf), b".SH NAME\n");
        assert_eq!(without_preamble(b".SH X\n"), b".SH X\n");
    }

    #[test]
    fn a_page_has_every_section_every_flag_and_one_preamble() {
        for page in pages::PAGES {
            let cmd = clap::Command::new(page.name)
                .version("9.9.9")
                .about("does a thing")
                .arg(clap::Arg::new("some-flag").long("some-flag").help("a flag"));
            let text = String::from_utf8(render(&cmd).unwrap()).unwrap();
            for section in [
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "OPTIONS",
                "\"EXIT STATUS\"",
                "ENVIRONMENT",
            ] {
                assert!(
                    text.contains(&format!(".SH {section}\n")),
                    "{}: no {section}",
                    page.name
                );
            }
            for section in ["EXAMPLES", "\"SEE ALSO\""] {
                assert!(
                    text.contains(&format!(".SH {section}\n")),
                    "{}: no {section}",
                    page.name
                );
            }
            assert!(text.contains("\\-\\-some\\-flag"), "{}", page.name);
            assert!(text.contains("layerkit 9.9.9"), "{}", page.name);
            assert_eq!(text.matches(".ds Aq").count(), 2, "one preamble (.ie/.el)");
        }
    }

    #[test]
    fn non_ascii_becomes_a_unicode_escape() {
        assert_eq!(escape_non_ascii("a…b → c"), "a\\[u2026]b \\[u2192] c");
    }

    #[test]
    fn a_tool_without_hand_written_text_is_an_error() {
        assert!(render(&clap::Command::new("no-such-tool")).is_err());
    }
}
