//! Progress on stderr, only when stderr is a terminal (indicatif hides itself otherwise, and
//! for TERM=dumb), and never with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, Read, Write};
use std::time::Duration;

/// A byte or item counter shown after about a second of work.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A spinner counting bytes, labelled `what`.
    pub fn bytes(what: &str, quiet: bool) -> Progress {
        Self::with_template(
            what,
            quiet,
            "{spinner} {msg}: {bytes} ({bytes_per_sec}, {elapsed})",
        )
    }

    /// A spinner counting items (entries, blobs), labelled `what`.
    pub fn items(what: &str, quiet: bool) -> Progress {
        Self::with_template(what, quiet, "{spinner} {msg}: {pos} ({elapsed})")
    }

    fn with_template(what: &str, quiet: bool, template: &str) -> Progress {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message(what.to_string());
        // Nothing shows for quick jobs: the first draw waits for the first tick.
        bar.enable_steady_tick(Duration::from_millis(1000));
        Progress { bar }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Wraps a reader so that what it reads is counted.
    pub fn reader<R: Read>(&self, inner: R) -> impl Read {
        self.bar.wrap_read(inner)
    }

    /// Prints a warning above the bar (or plainly when there is no bar).
    pub fn warn(&self, tool: &str, msg: &str) {
        self.bar.suspend(|| {
            let _ = writeln!(io::stderr(), "{tool}: warning: {msg}");
        });
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
