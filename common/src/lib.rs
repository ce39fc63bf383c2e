//! layerkit's shared library: everything two or more tools need.
//!
//! The data model (digests, descriptors, the OCI layout store, the tar entry model, whiteouts,
//! the stacked view of layers) and the I/O conventions (JSON Lines, canonical JSON, exit codes,
//! progress on a terminal only). Tools keep their own logic in their own crate and meet here.

// The model: what images and layers are.
pub mod config; // the image config: rootfs.diff_ids, history, the container config
pub mod descriptor; // content descriptors, and the LAYER DESCRIPTOR of our pipes
pub mod digest; // sha256, parsed strictly (a digest becomes a file name); hashing readers/writers
pub mod entry; // one file system entry as a layer carries it
pub mod manifest; // image indexes and manifests, the platform pick
pub mod media; // media types, docker's aliases
pub mod path; // paths as layers carry them: bytes, relative, sorted component by component
pub mod reference; // IMAGE references: LAYOUT:REF, LAYOUT@sha256:…
pub mod whiteout; // OCI whiteouts and opaque markers

// The store: an OCI image layout on disk.
pub mod atomic; // a file that appears complete or not at all, across a crash
pub mod images; // the images of a layout as docker manages them: tags, ids, parents
pub mod layout; // blobs, index.json and tags, the one walk, the write/prune protocol

// Tar I/O: layers in and out.
pub mod compress; // gzip (parallel, deterministic) and zstd writers; the reader of every codec
pub mod layer; // a layer blob read, verified and decompressed on threads of its own
pub mod sparse; // GNU's PAX sparse files, read as Go reads them
pub mod tarread; // the entries of a tar stream, strict where readers disagree
pub mod tarwrite; // the deterministic tar writer

// File system views and changes.
pub mod apply; // layers applied to a directory on disk, every path resolved inside it
pub mod changeset; // what changed between two trees, and the tar that carries it
pub mod content; // file content for the tar writer: from disk, or spooled from layers
pub mod size; // content size as docker counts it: apparent bytes, each inode once
pub mod tree; // the in-memory file system: the stacking rules on tar headers, the directory walk
pub mod xattrs; // which extended attributes belong to an image, and which to the host

// Conventions every tool keeps.
pub mod cli; // main(), one-line errors, exit codes, tar on stdout, the limits flags
pub mod error; // the errors callers match on
pub mod json; // canonical JSON for what is hashed, capped reads, JSON Lines
pub mod progress; // progress on a terminal only, one line per terminal
pub mod signal; // SIGINT, SIGTERM: what a tool undoes, and its exit status
pub mod table; // docker's table renderer (tabwriter cells, truncated ids)
pub mod time; // RFC 3339, "now", SOURCE_DATE_EPOCH
pub mod units; // docker's human sizes and durations

pub use error::{Error, Result};
