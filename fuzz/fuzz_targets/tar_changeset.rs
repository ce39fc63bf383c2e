//! The tar changeset reader: arbitrary bytes as one layer's tar, read entry by entry (contents
//! included, sparse files both ways: the first bytes with their holes made up, then the rest
//! as data only, as the applier writes it) and into the tree model every tool builds from
//! layers. Any panic is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; 4096];
    let _ = common::tarread::for_each_entry(data, |_, _, content| {
        // Bounded: a sparse file's real size may be exabytes of holes.
        std::io::copy(&mut (&mut *content).take(1 << 16), &mut std::io::sink())?;
        content.read_data(&mut buf, |_, _| Ok(()))?;
        Ok(())
    });
    let _ = common::tree::Tree::from_tar(data);
    // Two layers: the second one's whiteouts act on the first's tree.
    let half = data.len() / 2;
    let _ = common::tree::Tree::from_layers([Ok(&data[..half]), Ok(&data[half..])]);
});
