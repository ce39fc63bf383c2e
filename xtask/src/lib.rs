//! The library half of xtask: the tools' clap definitions, and the man page and completion
//! generators. The binary (`cargo run -p xtask -- …`) is what `make man` and `make install` call;
//! the end-to-end tests call this library directly, so they always test the current sources.

pub mod completions;
pub mod man;
mod pages;

use clap::CommandFactory;

/// Every tool whose crate is enabled as a feature (the list in Cargo.toml), with its clap definition.
pub fn tools() -> Vec<clap::Command> {
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
