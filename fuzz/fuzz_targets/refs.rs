//! Descriptor and IMAGE reference parsing: each line of the input as an IMAGE, a digest, a
//! platform, a LAYER DESCRIPTOR and an OCI descriptor. What parses must print back to itself.
#![no_main]
use common::descriptor::{Descriptor, LayerDescriptor};
use common::digest::Digest;
use common::manifest::PlatformSpec;
use common::reference::{ImageRef, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines().chain([text]) {
        if let Ok(r) = ImageRef::parse(line) {
            let again = ImageRef::parse(&r.to_string()).expect("a parsed IMAGE prints as one");
            assert_eq!(again, r);
            if let Target::Tag(t) = &r.target {
                assert!(!t.starts_with(['.', '/', '-']) && !t.contains(".."), "tag {t:?}");
            }
        }
        let _ = ImageRef::names_existing_layout(line);
        if let Ok(d) = line.parse::<Digest>() {
            assert_eq!(d.to_string(), line);
            assert!(!d.hex().contains('/'));
        }
        let _ = PlatformSpec::parse(line);
        if let Ok(d) = serde_json::from_str::<LayerDescriptor>(line) {
            let bytes = common::json::canonical(&d).expect("canonical");
            assert_eq!(serde_json::from_slice::<LayerDescriptor>(&bytes).expect("reparse"), d);
        }
        if let Ok(d) = serde_json::from_str::<Descriptor>(line) {
            let bytes = common::json::canonical(&d).expect("canonical");
            let again: Descriptor = serde_json::from_slice(&bytes).expect("reparse");
            assert_eq!(common::json::canonical(&again).expect("canonical"), bytes);
        }
    }
    let _ = common::json::read_lines::<LayerDescriptor, _>(data, "fuzz", common::json::DEFAULT_MAX_JSON);
});
