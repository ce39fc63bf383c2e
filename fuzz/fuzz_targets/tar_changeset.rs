//! The tar changeset reader: arbitrary bytes as one layer's tar, read entry by entry (contents
//! included) and into the tree model every tool builds from layers. Any panic is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = common::tarread::for_each_entry(data, |_, _, content| {
        std::io::copy(content, &mut std::io::sink())?;
        Ok(())
    });
    let _ = common::tree::Tree::from_tar(data);
    // Two layers: the second one's whiteouts act on the first's tree.
    let half = data.len() / 2;
    let _ = common::tree::Tree::from_layers([Ok(&data[..half]), Ok(&data[half..])]);
});
