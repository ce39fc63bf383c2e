//! What every tool's `main` does: parse arguments, run, print errors as one line
//! `TOOL: what failed: why`, and map the outcome to the exit status of CLI.md.

use clap::Parser;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

/// A successful run's status: 0, or 1 for "a clean negative answer" (diff(1) style).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// e.g. `layer-diff --exit-code` found changes.
    Differs,
}

/// Status for usage errors, I/O errors, corrupt or hostile input, missing images.
pub const ERROR: u8 = 2;

/// The limits a tool that reads image JSON takes as flags (`#[command(flatten)]`).
#[derive(clap::Args, Clone, Debug)]
pub struct Limits {
    /// The largest JSON document read (manifest, config, index, descriptor line), in bytes;
    /// a larger one is refused, so a hostile blob cannot exhaust memory.
    #[arg(long, value_name = "BYTES", default_value_t = crate::json::DEFAULT_MAX_JSON)]
    pub max_json: u64,
}

impl Limits {
    /// Puts the limits in force for this process.
    pub fn apply(&self) {
        crate::json::set_max_json(self.max_json);
    }
}

/// Runs a tool: `fn main() -> ExitCode { common::cli::main("layer-diff", layer_diff::run) }`.
pub fn main<A: Parser>(tool: &str, run: fn(A) -> crate::Result<Exit>) -> ExitCode {
    let args = match A::try_parse() {
        Ok(a) => a,
        Err(e) => return usage_error(tool, e),
    };
    match run(args) {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::Differs) => ExitCode::from(1),
        Err(err) => report(tool, &err),
    }
}

/// Prints an error chain on one line and returns status 2, or exits quietly on a broken pipe
/// (the reader went away, as `| head` does: that is not our failure to report).
pub fn report(tool: &str, err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    }) {
        return ExitCode::SUCCESS;
    }
    let msg = format!("{err:#}").replace('\n', " ");
    let _ = writeln!(io::stderr(), "{tool}: {msg}");
    ExitCode::from(ERROR)
}

fn usage_error(tool: &str, e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(ERROR)
        } else {
            ExitCode::SUCCESS
        };
    }
    let _ = writeln!(
        io::stderr(),
        "{tool}: usage: {} (see '{tool} --help')",
        one_line(&e.render().to_string())
    );
    ExitCode::from(ERROR)
}

/// clap's message on one line: the lines before its usage block (which name, e.g., the
/// missing arguments), joined; its "tip:" lines dropped.
fn one_line(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:") && !l.starts_with("For more information"))
        .collect();
    let joined = parts.join(" ");
    let msg = joined.strip_prefix("error: ").unwrap_or(&joined);
    if msg.is_empty() {
        "bad arguments".to_string()
    } else {
        msg.to_string()
    }
}

/// stdout for a tar stream: refused when it is a terminal.
pub fn tar_stdout() -> crate::Result<io::BufWriter<io::Stdout>> {
    let out = io::stdout();
    if out.is_terminal() {
        anyhow::bail!("refusing to write a tar stream to a terminal: redirect stdout to a file or a pipe");
    }
    Ok(io::BufWriter::with_capacity(1 << 20, out))
}

/// The number of worker threads to use when none is asked for.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

/// True when running as root (then owners, devices and all xattr namespaces can be set).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_keep_what_is_missing_on_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  <LAYOUT>\n\nUsage: image-prune <LAYOUT>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "the following required arguments were not provided: <LAYOUT>"
        );
        let tip = "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\nUsage: x\n";
        assert_eq!(one_line(tip), "unexpected argument '--bogus' found");
        // A bad value has no usage block: clap's "try '--help'" line is ours to drop.
        let value =
            "error: invalid value 'lz4' for '--compress <COMPRESS>'\n\nFor more information, try '--help'.\n";
        assert_eq!(one_line(value), "invalid value 'lz4' for '--compress <COMPRESS>'");
    }
}
