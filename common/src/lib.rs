//! layerkit's shared library: everything two or more tools need.
//!
//! The data model (digests, descriptors, the OCI layout store, the tar entry model, whiteouts,
//! the stacked view of layers) and the I/O conventions (JSON Lines, canonical JSON, exit codes,
//! progress on a terminal only). Tools keep their own logic in their own crate and meet here.

pub mod apply;
pub mod atomic;
pub mod changeset;
pub mod cli;
pub mod compress;
pub mod config;
pub mod content;
pub mod descriptor;
pub mod digest;
pub mod entry;
pub mod error;
pub mod json;
pub mod layer;
pub mod layout;
pub mod manifest;
pub mod media;
pub mod path;
pub mod progress;
pub mod reference;
pub mod signal;
pub mod sparse;
pub mod tarread;
pub mod tarwrite;
pub mod time;
pub mod tree;
pub mod units;
pub mod whiteout;
pub mod xattrs;

pub use error::{Error, Result};
