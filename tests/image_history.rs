//! End-to-end tests of image-history: run the built binary on real trees in temp dirs.
