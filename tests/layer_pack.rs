//! End-to-end tests of layer-pack: run the built binary on real trees in temp dirs.
