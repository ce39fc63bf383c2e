//! The apply step (`image-stack --rootfs`), rootless (no mknod, no chown: owners are recorded in
//! `user.rootlesscontainers`): up to four layers into a fresh root; nothing may be written
//! outside it. The harness and oracle are `../apply_oracle.rs`.
#![no_main]
#[path = "../apply_oracle.rs"]
mod apply_oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| apply_oracle::run(data, false));
