//! End-to-end tests of image-stack: run the built binary on real trees in temp dirs.
