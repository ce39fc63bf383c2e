//! The Dockerfile `--change` parser (`image-stack -c`): the input's first line is the base
//! config when it is JSON, the rest are the changes. A config that applies must stay a JSON
//! object that serializes canonically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let (mut config, changes) = match serde_json::from_str::<Value>(first) {
        Ok(v) => (v, rest),
        Err(_) => (json!({"config": {}}), text),
    };
    let changes: Vec<String> = changes.split('\0').map(str::to_string).collect();
    if image_stack::change::apply(&mut config, &changes).is_ok() {
        assert!(config.is_object());
        common::json::canonical(&config).expect("canonical");
    }
});
