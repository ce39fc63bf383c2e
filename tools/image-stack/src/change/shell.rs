//! A port of BuildKit's shell-word lexer (frontend/dockerfile/shell): quote removal, `$VAR`
//! and `${VAR...}` substitution and escapes, as a Dockerfile expands instruction arguments.

use anyhow::bail;

/// Expands one word as the Dockerfile shell lexer does: quotes removed, `$VAR`, `${VAR}` and
/// `${VAR:-x}`-style forms substituted, backslash escapes honoured.
pub(super) fn expand_word(word: &str, env: &[(String, String)]) -> crate::Result<String> {
    let mut lex = Lexer::new(word, env);
    let mut out = Words::default();
    lex.process(None, &mut out)?;
    Ok(out.word)
}

/// Expands and then splits at unquoted whitespace, including whitespace that came from an
/// unquoted variable (EXPOSE's word splitting).
pub(super) fn expand_words(word: &str, env: &[(String, String)]) -> crate::Result<Vec<String>> {
    let mut lex = Lexer::new(word, env);
    let mut out = Words {
        split: true,
        ..Words::default()
    };
    lex.process(None, &mut out)?;
    Ok(out.finish())
}

#[derive(Default)]
struct Words {
    split: bool,
    word: String,
    words: Vec<String>,
}

impl Words {
    /// A character that word splitting may split at.
    fn splittable(&mut self, ch: char) {
        if self.split && ch.is_whitespace() {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
            }
        } else {
            self.word.push(ch);
        }
    }

    fn splittable_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.splittable(c));
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a [(String, String)],
}

impl<'a> Lexer<'a> {
    fn new(word: &str, env: &'a [(String, String)]) -> Lexer<'a> {
        Lexer {
            chars: word.chars().collect(),
            pos: 0,
            env,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Processes up to `stop` (consumed) or the end; a missing `stop` is an error.
    fn process(&mut self, stop: Option<char>, out: &mut Words) -> crate::Result<()> {
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok(());
            }
            match ch {
                '\'' => {
                    self.next();
                    let quoted = self.until_quote('\'')?;
                    out.word.push_str(&quoted);
                }
                '"' => {
                    self.next();
                    let quoted = self.double_quoted()?;
                    out.word.push_str(&quoted);
                }
                '$' => {
                    let value = self.dollar()?;
                    out.splittable_str(&value);
                }
                '\\' => {
                    self.next();
                    if let Some(escaped) = self.next() {
                        out.word.push(escaped);
                    }
                }
                _ => {
                    self.next();
                    out.splittable(ch);
                }
            }
        }
        if let Some(stop) = stop {
            bail!("unexpected end of statement while looking for matching {stop}");
        }
        Ok(())
    }

    fn until_quote(&mut self, quote: char) -> crate::Result<String> {
        let mut s = String::new();
        loop {
            match self.next() {
                Some(c) if c == quote => return Ok(s),
                Some(c) => s.push(c),
                None => bail!("unexpected end of statement while looking for matching single-quote"),
            }
        }
    }

    fn double_quoted(&mut self) -> crate::Result<String> {
        let mut s = String::new();
        loop {
            match self.peek() {
                None => bail!("unexpected end of statement while looking for matching double-quote"),
                Some('"') => {
                    self.next();
                    return Ok(s);
                }
                Some('$') => s.push_str(&self.dollar()?),
                Some('\\') => {
                    self.next();
                    match self.peek() {
                        None => {}
                        // Only these can be escaped inside double quotes; other backslashes stay.
                        Some(c @ ('"' | '$' | '\\')) => {
                            self.next();
                            s.push(c);
                        }
                        Some(_) => s.push('\\'),
                    }
                }
                Some(c) => {
                    self.next();
                    s.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(c) = self.peek()
            && c.is_ascii_digit()
        {
            while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                self.next();
                name.push(c);
            }
            return name;
        }
        if let Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) = self.peek() {
            self.next();
            return c.to_string();
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            self.next();
            name.push(c);
        }
        name
    }

    fn dollar(&mut self) -> crate::Result<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.lookup(&name).unwrap_or_default().to_string());
        }
        self.next();
        match self.peek() {
            None => bail!("syntax error: missing '}}'"),
            Some('{' | '}' | ':') => bail!("syntax error: bad substitution"),
            _ => {}
        }
        let name = self.name();
        let value = self.lookup(&name).map(str::to_string);
        let (colon, modifier) = match self.next() {
            Some('}') => return Ok(value.unwrap_or_default()),
            Some(':') => (true, self.next()),
            other => (false, other),
        };
        let Some(modifier @ ('-' | '+' | '?')) = modifier else {
            bail!(
                "unsupported modifier ({}) in substitution",
                modifier.map(String::from).unwrap_or_default()
            );
        };
        let mut word = Words::default();
        self.process(Some('}'), &mut word)?;
        let word = word.word;
        // With a colon, an empty value counts as unset.
        let set = value.as_deref().is_some_and(|v| !colon || !v.is_empty());
        Ok(match modifier {
            '-' if set => value.unwrap_or_default(),
            '-' => word,
            '+' if set => word,
            '+' => String::new(),
            _ if set => value.unwrap_or_default(),
            _ => {
                let why = match (word.is_empty(), value.is_some()) {
                    (false, _) => word,
                    (true, true) => "is not allowed to be empty".into(),
                    (true, false) => "is not allowed to be unset".into(),
                };
                bail!("{name}: {why}")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_forms() {
        let env = vec![
            ("SET".to_string(), "v".to_string()),
            ("EMPTY".to_string(), String::new()),
        ];
        let x = |w: &str| expand_word(w, &env).unwrap();
        assert_eq!(x("${SET:-d}|${EMPTY:-d}|${NONE:-d}|${EMPTY-d}"), "v|d|d|");
        assert_eq!(x("${SET:+a}|${EMPTY:+a}|${EMPTY+a}|${NONE+a}"), "a||a|");
        assert_eq!(x(r#"$SET"$SET"'$SET'\$SET$"#), "vv$SET$SET$");
        assert_eq!(x(r#""a\"b\\c\d""#), r#"a"b\c\d"#);
        assert_eq!(x("${NONE:-${SET}x}"), "vx");
        assert!(
            expand_word("${NONE:?must be set}", &env)
                .unwrap_err()
                .to_string()
                .contains("must be set")
        );
        assert!(expand_word("${SET", &env).is_err());
        assert!(expand_word("'open", &env).is_err());
        assert!(expand_word("${SET%x}", &env).is_err());
    }
}
