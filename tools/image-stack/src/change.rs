//! `-c/--change`: the Dockerfile instructions `docker commit -c` accepts, parsed and applied to
//! an image config the way docker's builder dispatches them (moby daemon/builder/dockerfile,
//! BuildKit frontend/dockerfile/{parser,instructions,shell}).
//!
//! The changes are joined with newlines and read as a Dockerfile (continuation lines, comments),
//! then each instruction edits the config's `config` object in order. Only the keys an
//! instruction names are touched: whatever else the base config holds stays as it was.

use anyhow::{Context, bail};
use common::config::ImageConfig;
use serde_json::{Map, Value, json};

/// Applies `changes` to an image config's container config (created when there is none).
pub fn apply(image_config: &mut ImageConfig, changes: &[String]) -> crate::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let config = image_config.config.get_or_insert_default();
    let mut state = State {
        config,
        cmd_set: false,
    };
    for line in logical_lines(&changes.join("\n")) {
        state
            .dispatch(&line)
            .with_context(|| format!("change {line:?}"))?;
    }
    Ok(())
}

struct State<'a> {
    config: &'a mut Map<String, Value>,
    /// CMD was given in this change list: a later ENTRYPOINT then keeps it (docker's cmdSet).
    cmd_set: bool,
}

impl State<'_> {
    fn dispatch(&mut self, line: &str) -> crate::Result<()> {
        let (keyword, rest) = match line.find(char::is_whitespace) {
            Some(i) => (&line[..i], line[i..].trim()),
            None => (line, ""),
        };
        let keyword = keyword.to_ascii_uppercase();
        if rest.is_empty() {
            bail!("{keyword} requires at least one argument");
        }
        match keyword.as_str() {
            "CMD" => {
                let cmd = self.command_line(rest);
                self.config.insert("Cmd".into(), json!(cmd));
                self.config.remove("ArgsEscaped");
                self.cmd_set = true;
            }
            "ENTRYPOINT" => {
                let entrypoint = self.command_line(rest);
                if entrypoint.is_empty() {
                    self.config.remove("Entrypoint");
                } else {
                    self.config.insert("Entrypoint".into(), json!(entrypoint));
                }
                self.config.remove("ArgsEscaped");
                if !self.cmd_set {
                    self.config.remove("Cmd");
                }
            }
            "ENV" => {
                // Every value of one ENV sees the environment as it was before it.
                let env = self.env();
                let mut pairs = Vec::new();
                for (k, v) in name_values(rest, "ENV")? {
                    pairs.push((expand_word(&k, &env)?, expand_word(&v, &env)?));
                }
                for (k, v) in pairs {
                    if k.is_empty() {
                        bail!("ENV names can not be blank");
                    }
                    self.set_env(&k, &v);
                }
            }
            "LABEL" => {
                let env = self.env();
                let labels = object_entry(self.config, "Labels")?;
                for (k, v) in name_values(rest, "LABEL")? {
                    let k = expand_word(&k, &env)?;
                    if k.is_empty() {
                        bail!("LABEL names can not be blank");
                    }
                    labels.insert(k, Value::String(expand_word(&v, &env)?));
                }
            }
            "EXPOSE" => {
                let env = self.env();
                let mut ports = Vec::new();
                for word in rest.split_whitespace() {
                    for spec in expand_words(word, &env)? {
                        ports.extend(port_spec(&spec)?);
                    }
                }
                let exposed = object_entry(self.config, "ExposedPorts")?;
                for p in ports {
                    exposed.insert(p, json!({}));
                }
            }
            "USER" => {
                let user = expand_word(rest, &self.env())?;
                self.config.insert("User".into(), Value::String(user));
            }
            "WORKDIR" => {
                let requested = expand_word(rest, &self.env())?;
                let current = self
                    .config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let dir = workdir(current, &requested)?;
                self.config.insert("WorkingDir".into(), Value::String(dir));
            }
            "VOLUME" => {
                let env = self.env();
                let words = match json_array(rest) {
                    Some(words) => words,
                    None => rest.split_whitespace().map(str::to_string).collect(),
                };
                let mut volumes = Vec::new();
                for w in words {
                    let v = expand_word(&w, &env)?;
                    if v.trim().is_empty() {
                        bail!("VOLUME specified can not be an empty string");
                    }
                    volumes.push(v);
                }
                let map = object_entry(self.config, "Volumes")?;
                for v in volumes {
                    map.insert(v, json!({}));
                }
            }
            "STOPSIGNAL" => {
                let signal = expand_word(rest, &self.env())?;
                check_signal(&signal)?;
                self.config.insert("StopSignal".into(), Value::String(signal));
            }
            "HEALTHCHECK" => {
                let health = healthcheck(rest)?;
                self.config.insert("Healthcheck".into(), health);
            }
            "ONBUILD" => {
                let trigger = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                match trigger.as_str() {
                    "ONBUILD" => bail!("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
                    "MAINTAINER" | "FROM" => bail!("{trigger} isn't allowed as an ONBUILD trigger"),
                    _ => {}
                }
                let list = self.config.entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                if let Some(list) = list.as_array_mut() {
                    list.push(Value::String(rest.to_string()));
                }
            }
            other => bail!("{other} is not a valid change command"),
        }
        Ok(())
    }

    /// A CMD or ENTRYPOINT argument: the JSON (exec) form as written, or the shell form run
    /// by the image's `Shell` (default `/bin/sh -c`).
    fn command_line(&self, rest: &str) -> Vec<String> {
        if let Some(words) = json_array(rest) {
            return words;
        }
        let mut cmd: Vec<String> = self
            .config
            .get("Shell")
            .and_then(Value::as_array)
            .filter(|s| !s.is_empty())
            .map(|s| s.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        cmd.push(rest.to_string());
        cmd
    }

    fn env(&self) -> Vec<(String, String)> {
        self.config
            .get("Env")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (kv.to_string(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        let list = self.config.entry("Env").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        let Some(list) = list.as_array_mut() else { return };
        let same_key = |v: &Value| {
            v.as_str()
                .is_some_and(|s| s.split_once('=').map_or(s, |(k, _)| k) == key)
        };
        match list.iter_mut().find(|v| same_key(v)) {
            Some(slot) => *slot = Value::String(entry),
            None => list.push(Value::String(entry)),
        }
    }
}

/// The object under `key`, created when missing or null.
fn object_entry<'a>(
    config: &'a mut Map<String, Value>,
    key: &str,
) -> crate::Result<&'a mut Map<String, Value>> {
    let v = config.entry(key).or_insert_with(|| json!({}));
    if v.is_null() {
        *v = json!({});
    }
    v.as_object_mut()
        .with_context(|| format!("the base config's {key} is not a JSON object"))
}

/// Splits change text into instructions: a line ending in `\` continues on the next one;
/// blank lines and `#` comments are skipped.
fn logical_lines(text: &str) -> Vec<String> {
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
fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str(rest).ok()
}

/// ENV and LABEL arguments: `k=v k2="v 2"`, or the legacy `k value with spaces`. The parts
/// keep their quotes: expansion removes them.
fn name_values(rest: &str, what: &str) -> crate::Result<Vec<(String, String)>> {
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

/// Expands one word as the Dockerfile shell lexer does: quotes removed, `$VAR`, `${VAR}` and
/// `${VAR:-x}`-style forms substituted, backslash escapes honoured.
pub fn expand_word(word: &str, env: &[(String, String)]) -> crate::Result<String> {
    let mut lex = Lexer::new(word, env);
    let mut out = Words::default();
    lex.process(None, &mut out)?;
    Ok(out.word)
}

/// Expands and then splits at unquoted whitespace, including whitespace that came from an
/// unquoted variable (EXPOSE's word splitting).
fn expand_words(word: &str, env: &[(String, String)]) -> crate::Result<Vec<String>> {
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

/// EXPOSE's `PORT[/PROTO]` or `START-END[/PROTO]` as `port/proto` keys.
fn port_spec(spec: &str) -> crate::Result<Vec<String>> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    let port = |s: &str| -> crate::Result<u16> {
        s.parse()
            .with_context(|| format!("invalid containerPort: {spec}"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if end < start {
        bail!("invalid range specified for containerPort: {spec}");
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// WORKDIR: a relative path continues from the current working directory.
fn workdir(current: &str, requested: &str) -> crate::Result<String> {
    if requested.is_empty() {
        bail!("cannot normalize nothing");
    }
    if requested.starts_with('/') {
        return Ok(requested.to_string());
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in current.split('/').chain(requested.split('/')) {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Signal names docker accepts on Linux (with or without `SIG`), or a positive number.
fn check_signal(raw: &str) -> crate::Result<()> {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
        "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
        "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
    ];
    if let Ok(n) = raw.parse::<i64>() {
        if n > 0 {
            return Ok(());
        }
        bail!("Invalid signal: {raw}");
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |prefix: &str, max: u32| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    if NAMES.contains(&name) || realtime("RTMIN+", 15) || realtime("RTMAX-", 14) {
        return Ok(());
    }
    bail!("Invalid signal: {raw}")
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=D …] CMD command` as docker's HealthConfig
/// (durations in nanoseconds; zero values left out, as Go's omitempty does).
fn healthcheck(rest: &str) -> crate::Result<Value> {
    let mut flags = Map::new();
    let mut rest = rest;
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (name, value) = flag[..end]
            .split_once('=')
            .with_context(|| format!("Missing a value on flag: --{}", &flag[..end]))?;
        let key = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => "Retries",
            other => bail!("Unknown flag: {other}"),
        };
        let parsed = if key == "Retries" {
            let n: i32 = value
                .parse()
                .with_context(|| format!("--retries: invalid number {value:?}"))?;
            if n < 0 {
                bail!("--retries cannot be negative ({n})");
            }
            i64::from(n)
        } else {
            let d = common::time::go_duration(value).with_context(|| format!("--{name}"))?;
            let d =
                i64::try_from(d.as_nanos()).with_context(|| format!("--{name}: {value:?} is too long"))?;
            if d != 0 && d < 1_000_000 {
                bail!("{key} {value:?} cannot be less than 1ms");
            }
            d
        };
        if parsed != 0 {
            flags.insert(key.into(), json!(parsed));
        }
        rest = flag[end..].trim_start();
    }
    let (kind, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let test = match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !args.is_empty() || !flags.is_empty() {
                bail!("HEALTHCHECK NONE takes no arguments");
            }
            vec!["NONE".to_string()]
        }
        "CMD" => match json_array(args) {
            Some(words) if words.is_empty() => bail!("Missing command after HEALTHCHECK CMD"),
            Some(words) => std::iter::once("CMD".to_string()).chain(words).collect(),
            None if args.is_empty() => bail!("Missing command after HEALTHCHECK CMD"),
            None => vec!["CMD-SHELL".to_string(), args.to_string()],
        },
        other => bail!("Unknown type {other:?} in HEALTHCHECK (try CMD)"),
    };
    flags.insert("Test".into(), json!(test));
    Ok(Value::Object(flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(value: Value) -> ImageConfig {
        serde_json::from_value(value).unwrap()
    }

    fn applied(base: Value, changes: &[&str]) -> Value {
        let mut config = config_of(json!({ "config": base }));
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply(&mut config, &changes).unwrap();
        Value::Object(config.config.unwrap())
    }

    fn refused(changes: &[&str]) -> String {
        let mut config = config_of(json!({ "config": {} }));
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        format!("{:#}", apply(&mut config, &changes).unwrap_err())
    }

    #[test]
    fn cmd_in_both_forms() {
        assert_eq!(
            applied(json!({}), &[r#"CMD ["httpd-foreground", "-X"]"#])["Cmd"],
            json!(["httpd-foreground", "-X"])
        );
        assert_eq!(
            applied(json!({}), &["cmd echo $HOME  &&  ls"])["Cmd"],
            json!(["/bin/sh", "-c", "echo $HOME  &&  ls"])
        );
        // A broken JSON form is the shell form, as in docker.
        assert_eq!(
            applied(json!({}), &["CMD [\"a\", 1]"])["Cmd"],
            json!(["/bin/sh", "-c", "[\"a\", 1]"])
        );
        // The image's SHELL runs the shell form.
        assert_eq!(
            applied(
                json!({"Shell": ["/bin/bash", "-eo", "pipefail", "-c"]}),
                &["CMD make"]
            )["Cmd"],
            json!(["/bin/bash", "-eo", "pipefail", "-c", "make"])
        );
    }

    #[test]
    fn entrypoint_clears_cmd_unless_cmd_is_in_the_same_list() {
        let base = json!({"Cmd": ["bash"], "ArgsEscaped": true});
        let c = applied(base.clone(), &[r#"ENTRYPOINT ["/init"]"#]);
        assert_eq!(c["Entrypoint"], json!(["/init"]));
        assert!(c.get("Cmd").is_none() && c.get("ArgsEscaped").is_none());
        let c = applied(base.clone(), &["CMD [\"x\"]", "ENTRYPOINT /init --serve"]);
        assert_eq!(c["Cmd"], json!(["x"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/init --serve"]));
        // CMD after ENTRYPOINT: the ENTRYPOINT cleared the old Cmd, then CMD set a new one.
        let c = applied(base.clone(), &["ENTRYPOINT [\"e\"]", "CMD [\"c\"]"]);
        assert_eq!(c["Cmd"], json!(["c"]));
        let c = applied(json!({"Entrypoint": ["e"]}), &["ENTRYPOINT []"]);
        assert!(c.get("Entrypoint").is_none());
    }

    #[test]
    fn env_both_forms_with_expansion() {
        let base = json!({"Env": ["PATH=/usr/bin", "HOME=/root"]});
        let c = applied(
            base.clone(),
            &[r#"ENV PATH=/opt/bin:$PATH GREETING="hello world" Q='$HOME' E=a\ b"#],
        );
        assert_eq!(
            c["Env"],
            json!([
                "PATH=/opt/bin:/usr/bin",
                "HOME=/root",
                "GREETING=hello world",
                "Q=$HOME",
                "E=a b"
            ])
        );
        // Legacy form: the rest of the line is the value.
        let c = applied(base.clone(), &["ENV MSG  hello  ${HOME}/x there"]);
        assert_eq!(c["Env"][2], json!("MSG=hello  /root/x there"));
        // All values of one ENV see the environment from before it; the next ENV sees them.
        let c = applied(json!({"Env": ["A=old"]}), &["ENV A=new B=$A", "ENV C=${A}-${B}"]);
        assert_eq!(c["Env"], json!(["A=new", "B=old", "C=new-old"]));
        assert!(refused(&["ENV A=1 B"]).contains("can't find ="));
        assert!(refused(&["ENV A"]).contains("must have two arguments"));
    }

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

    #[test]
    fn expose_ports() {
        let c = applied(
            json!({"Env": ["PORTS=9000 9001/udp"], "ExposedPorts": {"22/tcp": {}}}),
            &["EXPOSE 80 443/TCP 53/udp 8000-8002", "EXPOSE $PORTS"],
        );
        let keys: Vec<&String> = c["ExposedPorts"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "22/tcp", "443/tcp", "53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp", "9000/tcp",
                "9001/udp"
            ]
        );
        assert!(refused(&["EXPOSE 80/xyz"]).contains("invalid proto"));
        assert!(refused(&["EXPOSE http"]).contains("invalid containerPort"));
        assert!(refused(&["EXPOSE 70000"]).contains("invalid containerPort"));
    }

    #[test]
    fn label_both_forms() {
        let c = applied(
            json!({"Labels": {"keep": "me", "a": "old"}, "Env": ["V=1.0"]}),
            &[
                r#"LABEL a=new "with space"="x y" version=$V"#,
                "LABEL legacy value here",
            ],
        );
        assert_eq!(
            c["Labels"],
            json!({"keep": "me", "a": "new", "with space": "x y", "version": "1.0", "legacy": "value here"})
        );
        assert!(refused(&["LABEL =x"]).contains("blank"));
    }

    #[test]
    fn user_workdir_volume_stopsignal() {
        let c = applied(
            json!({"WorkingDir": "/srv", "Env": ["APP=web"]}),
            &[
                "USER www-data:www-data",
                "WORKDIR $APP",
                "WORKDIR ./html/../htdocs",
                r#"VOLUME ["/data", "/logs"]"#,
                "VOLUME /cache /tmp/$APP",
                "STOPSIGNAL SIGWINCH",
            ],
        );
        assert_eq!(c["User"], json!("www-data:www-data"));
        assert_eq!(c["WorkingDir"], json!("/srv/web/htdocs"));
        assert_eq!(
            c["Volumes"],
            json!({"/data": {}, "/logs": {}, "/cache": {}, "/tmp/web": {}})
        );
        assert_eq!(c["StopSignal"], json!("SIGWINCH"));
        assert_eq!(applied(json!({}), &["WORKDIR /abs"])["WorkingDir"], json!("/abs"));
        for ok in ["9", "term", "SIGRTMIN+3", "RTMAX-1"] {
            applied(json!({}), &[&format!("STOPSIGNAL {ok}")]);
        }
        assert!(refused(&["STOPSIGNAL SIGNOPE"]).contains("Invalid signal"));
        assert!(refused(&["STOPSIGNAL 0"]).contains("Invalid signal"));
        assert!(refused(&[r#"VOLUME ["/a", ""]"#]).contains("empty string"));
    }

    #[test]
    fn healthcheck_forms() {
        let c = applied(
            json!({}),
            &[
                "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --retries=3 CMD curl -f http://localhost/ || exit 1",
            ],
        );
        assert_eq!(
            c["Healthcheck"],
            json!({
                "Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                "Interval": 30_000_000_000i64,
                "Timeout": 90_000_000_000i64,
                "StartPeriod": 1_500_000_000i64,
                "Retries": 3
            })
        );
        let c = applied(json!({}), &[r#"HEALTHCHECK CMD ["/bin/check", "-q"]"#]);
        assert_eq!(c["Healthcheck"], json!({"Test": ["CMD", "/bin/check", "-q"]}));
        let c = applied(
            json!({"Healthcheck": {"Test": ["CMD", "x"]}}),
            &["healthcheck none"],
        );
        assert_eq!(c["Healthcheck"], json!({"Test": ["NONE"]}));
        assert!(refused(&["HEALTHCHECK NONE x"]).contains("no arguments"));
        assert!(refused(&["HEALTHCHECK RUN x"]).contains("try CMD"));
        assert!(refused(&["HEALTHCHECK --interval=1us CMD x"]).contains("less than 1ms"));
        assert!(refused(&["HEALTHCHECK --retries=-1 CMD x"]).contains("negative"));
        assert!(refused(&["HEALTHCHECK --bogus=1 CMD x"]).contains("Unknown flag"));
        assert!(refused(&["HEALTHCHECK CMD"]).contains("Missing command"));
    }

    #[test]
    fn onbuild_keeps_the_trigger_text() {
        let c = applied(
            json!({"OnBuild": ["COPY . /app"]}),
            &["ONBUILD RUN make   install", "onbuild ADD x /y"],
        );
        assert_eq!(
            c["OnBuild"],
            json!(["COPY . /app", "RUN make   install", "ADD x /y"])
        );
        assert!(refused(&["ONBUILD ONBUILD RUN x"]).contains("Chaining"));
        assert!(refused(&["ONBUILD FROM x"]).contains("isn't allowed"));
    }

    #[test]
    fn refuses_what_docker_commit_refuses() {
        assert!(refused(&["RUN make"]).contains("RUN is not a valid change command"));
        assert!(refused(&["COPY a b"]).contains("not a valid change command"));
        assert!(refused(&["CMD"]).contains("requires at least one argument"));
    }

    #[test]
    fn continuation_lines_and_comments() {
        let c = applied(json!({}), &["# a comment\nCMD echo \\\n  hello", "", "USER 1000"]);
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo   hello"]));
        assert_eq!(c["User"], json!("1000"));
    }

    #[test]
    fn unknown_fields_are_left_alone() {
        let mut config =
            config_of(json!({"config": {"Domainname": "x", "Labels": {"b": "1"}}, "custom": [1, 2]}));
        apply(&mut config, &["LABEL a=2".into()]).unwrap();
        assert_eq!(
            serde_json::to_value(&config).unwrap(),
            json!({"config": {"Domainname": "x", "Labels": {"a": "2", "b": "1"}}, "custom": [1, 2]})
        );
    }
}
