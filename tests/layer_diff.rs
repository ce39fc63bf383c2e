//! End-to-end tests of layer-diff: run the built binary on real trees in temp dirs.
