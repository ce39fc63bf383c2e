//! Developer tasks that need the tools' clap definitions:
//!
//! - `cargo run -p xtask -- man [--check] DIR` writes (or checks) one section-1 page per tool;
//! - `cargo run -p xtask -- completions DIR` writes bash, zsh and fish completions under DIR
//!   (a `share/` directory: `make install` passes `$(PREFIX)/share`).

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use xtask::{completions, man, tools};

#[derive(Parser)]
#[command(about = "layerkit developer tasks")]
enum Task {
    /// Write man/<tool>.1 for every tool, or with --check fail when one is missing or stale.
    Man {
        #[arg(long)]
        check: bool,
        dir: PathBuf,
    },
    /// Write shell completions under DIR (DIR/bash-completion/completions, DIR/zsh/site-functions,
    /// DIR/fish/vendor_completions.d).
    Completions { dir: PathBuf },
}

fn main() -> ExitCode {
    let result = match Task::parse() {
        Task::Man { check: false, dir } => man::write_all(&tools(), &dir),
        Task::Man { check: true, dir } => man::check_all(&tools(), &dir),
        Task::Completions { dir } => completions::write_all(&mut tools(), &dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn task_cli_is_consistent() {
        Task::command().debug_assert();
    }
}
