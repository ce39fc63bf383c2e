//! The apply step (`image-stack --rootfs`) as root: owners are chown'ed, device nodes made from
//! the layer's numbers (on a `nodev` tmpfs), `trusted.*` xattrs set. Up to four layers into a
//! fresh root; nothing may be written outside it. The harness and oracle are
//! `../apply_oracle.rs`; run as root only.
#![no_main]
#[path = "../apply_oracle.rs"]
mod apply_oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| apply_oracle::run(data, true));
