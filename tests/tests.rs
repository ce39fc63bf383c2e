//! The end-to-end tests: one test binary (`cargo test --test e2e`) that runs the six tools as
//! built by cargo for this very run (`CARGO_BIN_EXE_<tool>`, see `support::tool`), on real trees
//! in temporary directories, against real peers (umoci, skopeo, GNU tar, …).
//!
//! Where a new test goes:
//! - a behaviour of one tool: that tool's module (`layer_diff`, `layer_pack`, `image_stack`,
//!   `image_history`, `image_prune`, `image_ls`); PAX sparse files across the tools: `sparse`;
//! - the same failure across every tool (unreadable input, bad flags, closed pipes): `bad_args`;
//! - a hostile layer that `image-stack --rootfs` must contain or refuse: a case in
//!   `image_stack_hostile`'s table;
//! - agreement with umoci, skopeo, podman or a registry: `peers`; with the docker engine: `docker` (a peer used as the oracle for
//!   one tool's own behaviour may sit in that tool's module);
//! - memory and size bounds: `resource_bounds`; SIGKILL safety: `crash_kill`; SIGINT and
//!   SIGTERM (layouts as they were, exit 130/143): `interrupt`; progress on a terminal (a tmux
//!   pane's screen): `terminal`;
//! - the walk-through and the documented pipelines: `demo`; man pages and completions:
//!   `man_pages`; the Debian root file system: `debian`; the harness itself: `harness`.
//!
//! A new file is a `mod` line here. Shared helpers (running a tool, trees, snapshots, tar
//! builders, peers) live in `support`: look there before writing one. Library-level tests sit
//! beside the code (`#[cfg(test)]`) or in `common/tests/`.
//!
//! One test: `cargo test --test e2e image_prune::removes_exactly`.

mod support;

mod bad_args;
mod crash_kill;
mod debian;
mod demo;
mod docker;
mod harness;
mod image_history;
mod image_ls;
mod image_prune;
mod image_stack;
mod image_stack_hostile;
mod image_stack_mount;
mod interrupt;
mod layer_diff;
mod layer_pack;
mod man_pages;
mod peers;
mod resource_bounds;
mod sparse;
mod terminal;
