//! End-to-end tests of image-prune: run the built binary on real trees in temp dirs.
