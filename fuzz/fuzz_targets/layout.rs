//! index.json, manifest and config parsing, through the layout the tools read them from: the
//! input is index.json, a manifest and a config separated by `PART_SEP`, written into a fresh
//! layout on tmpfs. So that mutations still meet, `"@CONFIG@"`/`"@CONFIG_SIZE@"` in the
//! manifest and `"@MANIFEST@"`/`"@MANIFEST_SIZE@"` in the index are replaced by the real
//! digests and sizes. Every image the index names is resolved, stacked as image-stack loads a
//! base, and paired with its history as image-history does; the config must round-trip.
#![no_main]
use common::config::ImageConfig;
use common::json::DEFAULT_MAX_JSON;
use common::layout::Layout;
use common::manifest::{Index, Manifest, PlatformSpec};
use common::reference::Target;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

const PART_SEP: &[u8] = b"--layerkit-fuzz-blob--";

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
        PathBuf::from(format!("{base}/layerkit-fuzz-layout-{}", std::process::id()))
    })
}

fn parts(data: &[u8]) -> [Vec<u8>; 3] {
    let mut out: [Vec<u8>; 3] = Default::default();
    let mut rest = data;
    for (i, part) in out.iter_mut().enumerate() {
        match rest.windows(PART_SEP.len()).position(|w| w == PART_SEP) {
            Some(at) if i < 2 => {
                *part = rest[..at].to_vec();
                rest = &rest[at + PART_SEP.len()..];
            }
            _ => {
                *part = rest.to_vec();
                break;
            }
        }
    }
    out
}

fn fill(text: &[u8], name: &str, blob: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let digest = common::digest::Digest::of(blob);
    text.replace(&format!("\"@{name}@\""), &format!("\"{digest}\""))
        .replace(&format!("\"@{name}_SIZE@\""), &blob.len().to_string())
        .into_bytes()
}

fn write_blob(root: &std::path::Path, blob: &[u8]) {
    let digest = common::digest::Digest::of(blob);
    std::fs::write(root.join("blobs/sha256").join(digest.hex()), blob).expect("blob");
}

fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(bytes) {
        let once = common::json::canonical(&v).expect("canonical");
        let again: T = serde_json::from_slice(&once).expect("reparse");
        assert_eq!(common::json::canonical(&again).expect("canonical"), once);
    }
}

fuzz_target!(|data: &[u8]| {
    let [index, manifest, config] = parts(data);
    let manifest = fill(&manifest, "CONFIG", &config);
    let index = fill(&index, "MANIFEST", &manifest);
    round_trips::<Index>(&index);
    round_trips::<Manifest>(&manifest);
    round_trips::<ImageConfig>(&config);

    let root = dir();
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root.join("blobs/sha256")).expect("layout dir");
    std::fs::write(root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    std::fs::write(root.join("index.json"), &index).expect("index.json");
    write_blob(root, &manifest);
    write_blob(root, &config);

    let Ok(layout) = Layout::open(root) else {
        return;
    };
    let Ok(idx) = layout.read_index() else {
        return;
    };
    // The images as image-ls and image-prune see them: parents, dangling, intermediate.
    if let Ok(images) = common::images::Images::read(&layout) {
        for i in 0..images.list.len() {
            let _ = (images.is_dangling(i), images.is_intermediate(i), images.lineage(i));
        }
    }
    let mut targets = vec![Target::Tag("latest".into())];
    for d in idx.manifests.iter().take(8) {
        targets.push(Target::Digest(d.digest.clone()));
        targets.push(Target::Id(d.digest.hex()[..6].to_string()));
        if let Some(tag) = d.ref_name() {
            targets.push(Target::Tag(tag.to_string()));
        }
    }
    let arm = PlatformSpec::parse("linux/arm64/v8").expect("platform");
    for target in &targets {
        for platform in [None, Some(PlatformSpec::host()), Some(arm.clone())] {
            let Ok(image) = layout.resolve(target, platform.as_ref()) else {
                continue;
            };
            if let Ok(history) = image_history::fuzz::History::read(&layout, &image.manifest) {
                let _ = image_history::fuzz::row_ids(&layout, &history);
            }
        }
        let from = match target {
            Target::Tag(t) => format!("{}:{t}", root.display()),
            Target::Digest(d) => format!("{}@{d}", root.display()),
            Target::Id(id) => format!("{}@{id}", root.display()),
        };
        for drop in [0, 1] {
            let _ = image_stack::fuzz::Stack::load(Some(("--from", &from)), None, drop, &[], DEFAULT_MAX_JSON);
        }
    }
});
