//! The Dockerfile `--change` parser (`image-stack -c`): the input's first line is the base
//! config when it is one, the rest are the changes. A config that applies must serialize
//! canonically and read back as itself.
#![no_main]
use common::config::ImageConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let (mut config, changes) = match serde_json::from_str::<ImageConfig>(first) {
        Ok(c) => (c, rest),
        Err(_) => (ImageConfig::default(), text),
    };
    let changes: Vec<String> = changes.split('\0').map(str::to_string).collect();
    if image_stack::fuzz::apply_changes(&mut config, &changes).is_ok() {
        let bytes = common::json::canonical(&config).expect("canonical");
        let again: ImageConfig = serde_json::from_slice(&bytes).expect("reparse");
        assert_eq!(common::json::canonical(&again).expect("canonical"), bytes);
    }
});
