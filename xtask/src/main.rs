//! Developer tasks that need the tools' clap definitions:
//!
//! - `cargo run -p xtask -- man [--check] DIR` writes (or checks) one section-1 page per tool;
//! - `cargo run -p xtask -- completions DIR` writes bash, zsh and fish completions under DIR
//!   (a `share/` directory: `make install` passes `$(PREFIX)/share`).

mod completions;
mod man;
mod pages;

use clap::{CommandFactory, Parser};
use std::path::PathBuf;
use std::process::ExitCode;

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

/// Every tool whose crate is enabled as a feature (the list in Cargo.toml), with its clap definition.
fn tools() -> Vec<clap::Command> {
    vec![
        #[cfg(feature = "layer-diff")]
        layer_diff::Args::command(),
        #[cfg(feature = "layer-pack")]
        layer_pack::Args::command(),
        #[cfg(feature = "image-stack")]
        image_stack::Args::command(),
        #[cfg(feature = "image-history")]
        image_history::Args::command(),
        #[cfg(feature = "image-prune")]
        image_prune::Args::command(),
        #[cfg(feature = "image-ls")]
        image_ls::Args::command(),
    ]
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

    #[test]
    fn task_cli_is_consistent() {
        Task::command().debug_assert();
    }
}
