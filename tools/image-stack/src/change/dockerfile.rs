//! The Dockerfile line syntax of `-c` changes (BuildKit frontend/dockerfile/parser): logical
//! lines, the exec (JSON) form, `k=v` arguments, words split at unquoted whitespace.

use anyhow::bail;

/// Splits change text into instructions: a line ending in `\` continues on the next one;
/// blank lines and `#` comments are skipped.
pub(super) fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                out.push(current.trim().to_string());
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// The exec (JSON) form: a JSON array of strings, or None for the shell form.
pub(super) fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str(rest).ok()
}

/// ENV and LABEL arguments: `k=v k2="v 2"`, or the legacy `k value with spaces`. The parts
/// keep their quotes: expansion removes them.
pub(super) fn name_values(rest: &str, what: &str) -> crate::Result<Vec<(String, String)>> {
    let words = parse_words(rest);
    let Some(first) = words.first() else {
        bail!("{what} requires at least one argument");
    };
    if !first.contains('=') {
        let mut parts = rest.splitn(2, char::is_whitespace);
        let (Some(k), Some(v)) = (parts.next(), parts.next()) else {
            bail!("{what} must have two arguments");
        };
        return Ok(vec![(k.to_string(), v.trim_start().to_string())]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => bail!("Syntax error - can't find = in {w:?}. Must be of the form: name=value"),
        })
        .collect()
}

/// Splits at unquoted whitespace, keeping quotes and escapes in the words (BuildKit's
/// `parseWords`).
fn parse_words(rest: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None if !in_word && ch.is_whitespace() => {}
            None if ch.is_whitespace() => {
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                in_word = false;
            }
            None => {
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == '\\' {
                    match chars.next() {
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                        }
                        None => break,
                    }
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == '\\' && q != '\'' {
                    match chars.next() {
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                        }
                        None => quote = None,
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if blank_ok || !word.is_empty() {
        words.push(word);
    }
    words
}
