//! Developer tasks that need the tools' clap definitions:
//!
//! - `cargo run -p xtask -- man [--check] DIR` writes (or checks) one section-1 page per tool;
//! - `cargo run -p xtask -- completions [--check] DIR` writes (or checks) the bash, zsh and fish
//!   completions of every tool under DIR (the repository's `completions/`, which `make install`
//!   copies).

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
    /// Write shell completions under DIR (DIR/bash/TOOL, DIR/zsh/_TOOL, DIR/fish/TOOL.fish), or
    /// with --check fail when one is missing or stale.
    Completions {
        #[arg(long)]
        check: bool,
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Task::parse() {
        Task::Man { check: false, dir } => man::write_all(&tools(), &dir),
        Task::Man { check: true, dir } => man::check_all(&tools(), &dir),
        Task::Completions { check: false, dir } => completions::write_all(&mut tools(), &dir),
        Task::Completions { check: true, dir } => completions::check_all(&mut tools(), &dir),
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
