//! What every tool's `main` does: parse arguments, run, print errors as one line
//! `TOOL: what failed: why`, and map the outcome to the exit status of docs/CLI.md.

use crate::layout::Layout;
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

/// `--format` of the tools that print docker's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// docker's table
    Table,
    /// JSON Lines with full values
    Json,
}

impl Format {
    /// `-q` prints the ids alone, as docker's table does; JSON Lines carry whole rows, one
    /// shape per line: asked together, one of them would be silently ignored.
    pub fn check_quiet(self, quiet: bool) -> crate::Result<()> {
        if quiet && self == Format::Json {
            anyhow::bail!(
                "usage: -q prints the ids alone and --format json whole rows: use one (jq -r .id gives the ids)"
            );
        }
        Ok(())
    }
}

/// The limits a tool that reads image JSON takes as flags (`#[command(flatten)]`).
#[derive(clap::Args, Clone, Debug)]
pub struct Limits {
    /// The largest JSON document read (manifest, config, index, descriptor line), in bytes;
    /// a larger one is refused, so a hostile blob cannot exhaust memory.
    #[arg(long, value_name = "BYTES", default_value_t = crate::json::DEFAULT_MAX_JSON)]
    pub max_json: u64,
}

/// The hidden first argument the shipped shell completions call a tool with: `TOOL
/// --complete-image WORD` prints the IMAGEs `LAYOUT:REF` that complete WORD (`store:we`), one a
/// line, read from the layout by the tool's own reader rather than by shell code parsing JSON.
pub const COMPLETE_IMAGE: &str = "--complete-image";

/// Runs a tool: `fn main() -> ExitCode { common::cli::main("layer-diff", layer_diff::run) }`.
pub fn main<A: Parser>(tool: &str, run: fn(A) -> crate::Result<Exit>) -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let [_, flag, word] = &argv[..]
        && flag == COMPLETE_IMAGE
    {
        // A completion offers what it can and never complains: no candidates is the answer.
        let mut out = io::stdout().lock();
        for image in complete_image(&word.to_string_lossy()) {
            let _ = writeln!(out, "{image}");
        }
        return ExitCode::SUCCESS;
    }
    let args = match A::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => return usage_error(tool, e),
    };
    if let Err(e) = crate::signal::install() {
        // The tool still works; an interrupt then leaves its temporary files to image-prune.
        crate::progress::message(&format!("{tool}: warning: signals: {e}"));
    }
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
    crate::signal::exit_if_interrupted();
    let msg = format!("{err:#}").replace('\n', " ");
    crate::progress::message(&format!("{tool}: {msg}"));
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
    crate::progress::message(&format!(
        "{tool}: usage: {} (see '{tool} --help')",
        one_line(&e.render().to_string())
    ));
    ExitCode::from(ERROR)
}

/// The IMAGEs that complete `word`: for `LAYOUT:PREFIX` where LAYOUT is a layout, `LAYOUT:TAG`
/// for each of its tags that starts with PREFIX, in index order.
pub fn complete_image(word: &str) -> Vec<String> {
    let Some((layout, prefix)) = word.split_once(':') else {
        return Vec::new();
    };
    let Ok(index) = Layout::open(layout).and_then(|l| l.read_index()) else {
        return Vec::new();
    };
    index
        .tags()
        .into_iter()
        .filter(|t| t.starts_with(prefix))
        .map(|t| format!("{layout}:{t}"))
        .collect()
}

/// clap's message on one line: the lines before its usage block (which name, e.g., the
/// missing arguments), joined; of its "tip:" lines, those naming a similar argument or value
/// (a typo's likely meaning) kept, the others (`use '-- --bogus'`) dropped.
fn one_line(rendered: &str) -> String {
    let lines = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"));
    let (tips, text): (Vec<&str>, Vec<&str>) = lines.partition(|l| l.starts_with("tip:"));
    let joined = text.join(" ");
    let mut msg = joined.strip_prefix("error: ").unwrap_or(&joined).to_string();
    if msg.is_empty() {
        msg = "bad arguments".to_string();
    }
    for tip in tips.iter().map(|t| t["tip:".len()..].trim()) {
        if tip.contains("similar") {
            msg = format!("{msg}; {tip}");
        }
    }
    msg
}

/// stdout for a tar stream: refused when it is a terminal. Write the stream through
/// [`PoisonOnDrop`] once producing it has begun.
pub fn tar_stdout() -> crate::Result<io::BufWriter<io::Stdout>> {
    let out = io::stdout();
    if out.is_terminal() {
        anyhow::bail!("refusing to write a tar stream to a terminal: redirect stdout to a file or a pipe");
    }
    Ok(io::BufWriter::with_capacity(1 << 20, out))
}

/// stdin for a tar stream: refused when it is a terminal, where no one types a tar (the tool
/// would wait for ever), as [`tar_stdout`] refuses to write one there.
pub fn tar_stdin() -> crate::Result<io::Stdin> {
    let input = io::stdin();
    if input.is_terminal() {
        anyhow::bail!(
            "refusing to read a tar stream from a terminal: name a file, or pipe or redirect one into stdin"
        );
    }
    Ok(input)
}

/// Says on stderr, unless `quiet`, that the tool created `layout`: a mistyped IMAGE must not
/// silently start a new store (docs/CLI.md).
pub fn say_if_created(tool: &str, layout: &Layout, quiet: bool) {
    if layout.created() && !quiet {
        let mut dir = layout.root().display().to_string();
        if !dir.ends_with('/') {
            dir.push('/');
        }
        crate::progress::message(&format!("{tool}: created OCI layout {dir}"));
    }
}

/// A tar stream being produced. Unless [`PoisonOnDrop::finish`] is called, dropping it (a
/// failure half way) ends the output with a block no tar reader accepts (a header with a bad
/// checksum), so what was written cannot pass for a complete layer: not a cut stream that
/// happens to end between entries, nor an empty one (tar-rs and Go's archive/tar read no bytes
/// as an empty archive). A tool wraps its stdout once it starts the work whose failure must
/// not look like success; failures before that (bad arguments, missing inputs) leave stdout
/// empty.
pub struct PoisonOnDrop<W: Write> {
    out: W,
    done: bool,
    /// For stdout: a signal cuts the stream and poisons it (see [`PoisonOnDrop::stdout`]).
    on_signal: Option<crate::signal::Guard>,
}

/// The block that ends a failed stream.
const POISON: [u8; 512] = [0xff; 512];

/// Where the tar stream on stdout stands, for a signal that comes while it is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stdout {
    Writing,
    /// Flushed whole: a signal leaves it alone.
    Complete,
    /// Cut and poisoned by a signal: nothing more is written.
    Cut,
}

/// Held across each write to stdout, so that a signal's poison goes after a whole write,
/// never into the middle of one, and never after the stream's end.
static STDOUT: std::sync::Mutex<Stdout> = std::sync::Mutex::new(Stdout::Writing);

fn stdout_state() -> std::sync::MutexGuard<'static, Stdout> {
    STDOUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<W: Write> PoisonOnDrop<W> {
    pub fn new(out: W) -> PoisonOnDrop<W> {
        PoisonOnDrop {
            out,
            done: false,
            on_signal: None,
        }
    }

    /// As [`PoisonOnDrop::new`], for `out` writing to this process's stdout: a signal that
    /// ends the tool while the stream is unfinished stops it after the write under way and
    /// poisons it, as a failure does (the signal leaves no time for destructors).
    pub fn stdout(out: W) -> PoisonOnDrop<W> {
        let on_signal = crate::signal::on_signal(|| {
            let mut state = stdout_state();
            if *state == Stdout::Writing {
                *state = Stdout::Cut;
                let _ = rustix::io::write(io::stdout(), &POISON);
            }
        });
        PoisonOnDrop {
            out,
            done: false,
            on_signal: Some(on_signal),
        }
    }

    /// The stream is complete: flushes it.
    pub fn finish(mut self) -> io::Result<()> {
        let mut gate = self.gate()?;
        self.out.flush()?;
        if let Some(state) = gate.as_deref_mut() {
            *state = Stdout::Complete;
        }
        drop(gate);
        self.done = true;
        Ok(())
    }

    /// For stdout: the gate each write passes, held while it writes; an error once a signal
    /// has cut the stream.
    fn gate(&self) -> io::Result<Option<std::sync::MutexGuard<'static, Stdout>>> {
        if self.on_signal.is_none() {
            return Ok(None);
        }
        let state = stdout_state();
        if *state == Stdout::Cut {
            return Err(io::Error::other("stdout was cut by a signal"));
        }
        Ok(Some(state))
    }
}

impl<W: Write> Write for PoisonOnDrop<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _open = self.gate()?;
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        let _open = self.gate()?;
        self.out.flush()
    }
}

impl<W: Write> Drop for PoisonOnDrop<W> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.write_all(&POISON);
            let _ = self.flush();
        }
    }
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
    fn a_stream_dropped_unfinished_is_no_tar() {
        let entry = || {
            let mut h = tar::Header::new_ustar();
            h.set_path("a").unwrap();
            h.set_size(0);
            h.set_cksum();
            h.as_bytes().to_vec()
        };
        let read = |bytes: &[u8]| -> std::io::Result<usize> {
            tar::Archive::new(bytes)
                .entries()?
                .try_fold(0, |n, e| e.map(|_| n + 1))
        };
        let mut finished = Vec::new();
        let mut w = PoisonOnDrop::new(&mut finished);
        w.write_all(&entry()).unwrap();
        w.write_all(&[0; 1024]).unwrap();
        w.finish().unwrap();
        assert_eq!(read(&finished).unwrap(), 1);
        for written in [entry(), Vec::new()] {
            let mut cut = Vec::new();
            PoisonOnDrop::new(&mut cut).write_all(&written).unwrap();
            assert!(read(&written).is_ok(), "without the guard it reads as a tar");
            assert!(
                read(&cut).is_err(),
                "{} bytes written, then dropped",
                written.len()
            );
        }
    }

    #[test]
    fn usage_errors_keep_what_is_missing_on_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  <LAYOUT>\n\nUsage: image-prune <LAYOUT>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "the following required arguments were not provided: <LAYOUT>"
        );
        let tip = "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\nUsage: x\n";
        assert_eq!(one_line(tip), "unexpected argument '--bogus' found");
        let similar = "error: unexpected argument '--lst' found\n\n  tip: a similar argument exists: '--list'\n\nUsage: x\n";
        assert_eq!(
            one_line(similar),
            "unexpected argument '--lst' found; a similar argument exists: '--list'"
        );
        // A bad value has no usage block: clap's "try '--help'" line is ours to drop.
        let value =
            "error: invalid value 'lz4' for '--compress <COMPRESS>'\n\nFor more information, try '--help'.\n";
        assert_eq!(one_line(value), "invalid value 'lz4' for '--compress <COMPRESS>'");
    }
}
