//! The image config (image-spec config.md): what every tool that reads or writes one uses.
//!
//! The fields the tools act on are typed; everything else is kept as it was, at every level:
//! unknown top-level keys (`container_config`, `docker_version`, `os.version`, …) in
//! [`ImageConfig::extra`], the whole container config (`Cmd`, `Healthcheck`, `OnBuild`,
//! `ArgsEscaped`, …) as an object whose keys `-c` changes one by one, and unknown keys of
//! `rootfs` and of history entries in their `extra`. A config read and written again through
//! [`crate::json::canonical`] is the same bytes, so a commit that changes nothing in it keeps
//! its digest. The one normalisation: a known optional field written as `null` reads as absent
//! (and is written so), as Go's `omitempty` writers do.

use crate::descriptor::Platform;
use crate::digest::Digest;
use crate::manifest::PlatformSpec;
use crate::time::Time;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// An image config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// When the image was made, RFC 3339 as written (see [`ImageConfig::created_time`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The container config (`Cmd`, `Env`, `Labels`, `Healthcheck`, …), key by key as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootFs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `rootfs`: the layers' diffIDs, bottom first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// `"layers"` in every valid config.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
    /// Go writes a nil list as `null`: read as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub diff_ids: Vec<Digest>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One `history` entry. Every field is optional in image-spec; a field of the wrong type is an
/// error, not a silent blank (a row would be shown against the wrong command).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Kept as written: an explicit `false` stays in the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl HistoryEntry {
    /// True when the entry made no layer (image-spec: it then takes no `rootfs.diff_ids` entry).
    pub fn is_empty_layer(&self) -> bool {
        self.empty_layer == Some(true)
    }
}

impl ImageConfig {
    /// The config of an empty image for `platform`, as image-stack starts one from scratch.
    pub fn scratch(platform: &PlatformSpec) -> ImageConfig {
        ImageConfig {
            architecture: Some(platform.architecture.clone()),
            os: Some(platform.os.clone()),
            variant: platform.variant.clone(),
            config: Some(Map::new()),
            rootfs: Some(RootFs {
                fs_type: Some("layers".into()),
                ..RootFs::default()
            }),
            history: Some(Vec::new()),
            ..ImageConfig::default()
        }
    }

    /// `rootfs.diff_ids`, empty when the config has none.
    pub fn diff_ids(&self) -> &[Digest] {
        self.rootfs.as_ref().map_or(&[], |r| &r.diff_ids)
    }

    /// The history entries, empty when the config has none.
    pub fn history(&self) -> &[HistoryEntry] {
        self.history.as_deref().unwrap_or_default()
    }

    /// `created` as a time; None when absent or not RFC 3339.
    pub fn created_time(&self) -> Option<Time> {
        Time::parse(self.created.as_deref()?).ok()
    }

    /// The platform an index entry for this image carries; None unless the config names both
    /// the OS and the architecture.
    pub fn platform(&self) -> Option<Platform> {
        Some(Platform {
            architecture: self.architecture.clone()?,
            os: self.os.clone()?,
            variant: self.variant.clone(),
            extra: BTreeMap::new(),
        })
    }
}

/// One item of a container config (`config`) as a rebase merges it and an image diff lists
/// it: a whole key (`Cmd`, `User`, `Healthcheck`, `OnBuild`, …), or one entry of a keyed
/// collection: an `Env` variable by name, a `Labels` entry, an `ExposedPorts` port, a
/// `Volumes` path. A value written as `null` is no item, as Go's `omitempty` writers leave
/// the key out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    pub field: String,
    /// The variable, label, port or volume; None for a whole key.
    pub name: Option<String>,
}

/// The container config keys whose entries are items of their own, besides `Env`.
const KEYED: [&str; 3] = ["Labels", "ExposedPorts", "Volumes"];

impl Item {
    /// The items of a container config, in the order written (`Env` in its order, keyed
    /// collections by key).
    pub fn all(config: &Map<String, Value>) -> Vec<(Item, Value)> {
        let mut out = Vec::new();
        for (field, value) in config {
            let item = |name: Option<&str>| Item {
                field: field.clone(),
                name: name.map(str::to_string),
            };
            match value {
                Value::Null => {}
                Value::Array(vars) if field == "Env" && vars.iter().all(Value::is_string) => {
                    for var in vars.iter().filter_map(Value::as_str) {
                        let (name, value) = match var.split_once('=') {
                            Some((n, v)) => (n, Value::String(v.to_string())),
                            None => (var, Value::Null),
                        };
                        out.push((item(Some(name)), value));
                    }
                }
                Value::Object(entries) if KEYED.contains(&field.as_str()) => {
                    out.extend(entries.iter().map(|(k, v)| (item(Some(k)), v.clone())));
                }
                whole => out.push((item(None), whole.clone())),
            }
        }
        out
    }

    /// Sets this item of `config` to `value`, or removes it (None). A variable keeps its
    /// place in `Env`; a new one goes at the end.
    pub fn set(&self, config: &mut Map<String, Value>, value: Option<&Value>) {
        let Some(name) = &self.name else {
            match value {
                Some(v) => config.insert(self.field.clone(), v.clone()),
                None => config.remove(&self.field),
            };
            return;
        };
        let slot = config.entry(self.field.clone()).or_insert(Value::Null);
        if self.field == "Env" {
            let var = |v: &Value| match v {
                Value::Null => Value::String(name.clone()),
                v => Value::String(format!("{name}={}", v.as_str().unwrap_or_default())),
            };
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            let Some(vars) = slot.as_array_mut() else { return };
            let at = vars.iter().position(|v| {
                v.as_str()
                    .is_some_and(|s| s.split_once('=').map_or(s, |(n, _)| n) == name)
            });
            match (at, value) {
                (Some(i), Some(v)) => vars[i] = var(v),
                (None, Some(v)) => vars.push(var(v)),
                (Some(i), None) => {
                    vars.remove(i);
                }
                (None, None) => {}
            }
        } else {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Some(entries) = slot.as_object_mut() else {
                return;
            };
            match value {
                Some(v) => entries.insert(name.clone(), v.clone()),
                None => entries.remove(name),
            };
        }
    }
}

impl std::fmt::Display for Item {
    /// `Env JAVA_HOME`, `Labels maintainer`, `Cmd`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{} {n}", self.field),
            None => f.write_str(&self.field),
        }
    }
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::canonical;
    use serde_json::json;

    /// Parsing into the typed config and writing it canonically gives the bytes the generic
    /// JSON value gives: nothing lost, nothing added, nothing reordered.
    fn assert_round_trips(config: &Value) {
        let typed: ImageConfig = serde_json::from_value(config.clone()).unwrap();
        assert_eq!(
            String::from_utf8(canonical(&typed).unwrap()).unwrap(),
            String::from_utf8(canonical(config).unwrap()).unwrap()
        );
    }

    const DIFF_ID: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn unknown_fields_survive_at_every_level() {
        assert_round_trips(&json!({
            "created": "2024-05-01T12:00:00.123456789+02:00",
            "architecture": "arm64",
            "os": "linux",
            "variant": "v8",
            "os.version": "10.0.17763.1",
            "os.features": ["win32k"],
            "x-top": {"nested": [1, 2.5, null, true]},
            "config": {"Env": ["A=1"], "x-config": {"deep": "kept"}},
            "rootfs": {"type": "layers", "diff_ids": [DIFF_ID], "x-rootfs": 7},
            "history": [
                {"created_by": "a", "empty_layer": false, "x-entry": "kept"},
                {"comment": "", "empty_layer": true},
                {}
            ],
        }));
        // Absent stays absent.
        assert_round_trips(&json!({"rootfs": {"type": "layers", "diff_ids": []}}));
        assert_round_trips(&json!({}));
    }

    #[test]
    fn a_docker_made_config_keeps_what_docker_writes() {
        // `docker build` (20.10) output for `FROM busybox` + HEALTHCHECK, ONBUILD, SHELL, CMD.
        let docker = json!({
            "architecture": "amd64",
            "config": {
                "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
                "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false,
                "StdinOnce": false, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/sh", "-c", "httpd -f"], "ArgsEscaped": true,
                "Healthcheck": {"Test": ["CMD-SHELL", "wget -q -O- localhost"], "Interval": 30_000_000_000_u64,
                                "Timeout": 3_000_000_000_u64, "Retries": 3},
                "Image": "sha256:7b0b2b2a8c1c3d2b5b5e5f3e0c6b2a8e4a6b2c9d1f3e5a7c9b1d3f5a7c9e1b3d",
                "Volumes": null, "WorkingDir": "", "Entrypoint": null,
                "OnBuild": ["RUN echo child"], "Labels": null, "Shell": ["/bin/ash", "-c"],
                "StopSignal": "SIGQUIT"
            },
            "container": "3b5ae3d4f0c6f7b4c5b7ad0b0dfb5a1f0e1c9d8b7a6f5e4d3c2b1a0f9e8d7c6b",
            "container_config": {"Hostname": "3b5ae3d4f0c6", "Cmd": ["/bin/sh", "-c", "#(nop) ", "STOPSIGNAL SIGQUIT"],
                                 "Labels": {}, "OnBuild": ["RUN echo child"]},
            "created": "2024-03-05T10:11:12.345678901Z",
            "docker_version": "20.10.24+dfsg1",
            "history": [
                {"created": "2024-01-27T00:30:48.624602109Z",
                 "created_by": "/bin/sh -c #(nop) ADD file:9a4f77dfaba7fd2aa78186e4ef0e7486ad55101cefc1fabbc1b385601bb38920 in / "},
                {"created": "2024-01-27T00:30:48.743965523Z",
                 "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true},
                {"created": "2024-03-05T10:11:12.345678901Z",
                 "created_by": "/bin/sh -c #(nop)  HEALTHCHECK &{[\"CMD-SHELL\" \"wget -q -O- localhost\"] \"30s\" \"3s\" \"0s\" '\\x03'}",
                 "empty_layer": true}
            ],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [DIFF_ID]}
        });
        assert_round_trips(&docker);
        let typed: ImageConfig = serde_json::from_value(docker).unwrap();
        let c = typed.config.as_ref().unwrap();
        assert_eq!(c["OnBuild"], json!(["RUN echo child"]));
        assert_eq!(c["ArgsEscaped"], json!(true));
        assert_eq!(c["Healthcheck"]["Retries"], json!(3));
        assert!(typed.extra.contains_key("container_config"));
        assert_eq!(typed.diff_ids().len(), 1);
        assert_eq!(
            typed
                .history()
                .iter()
                .map(HistoryEntry::is_empty_layer)
                .collect::<Vec<_>>(),
            [false, true, true]
        );
    }

    #[test]
    fn fields_are_typed_but_all_optional() {
        let c: ImageConfig = serde_json::from_value(json!({
            "created": null, "history": null, "rootfs": {"type": "layers", "diff_ids": null}
        }))
        .unwrap();
        assert_eq!((&c.created, &c.history, c.diff_ids().len()), (&None, &None, 0));
        let e: HistoryEntry = serde_json::from_value(json!({})).unwrap();
        assert_eq!(e, HistoryEntry::default());
        for bad in [
            json!({"history": [{"created_by": 3}]}),
            json!({"history": [{"empty_layer": "yes"}]}),
            json!({"rootfs": {"diff_ids": ["sha256:short"]}}),
            json!({"created": 5}),
            json!({"config": "not an object"}),
        ] {
            assert!(
                serde_json::from_value::<ImageConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn items_split_env_by_variable_and_keyed_collections_by_key() {
        let config = json!({
            "Env": ["PATH=/bin", "JAVA_HOME=/jvm/11", "BARE"],
            "Cmd": ["sh"],
            "Labels": {"b": "2", "a": "1"},
            "ExposedPorts": {"80/tcp": {}},
            "Volumes": null,
            "Healthcheck": {"Test": ["NONE"]},
        });
        let Value::Object(mut map) = config else {
            unreachable!()
        };
        let shown: Vec<String> = Item::all(&map).iter().map(|(i, v)| format!("{i}={v}")).collect();
        assert_eq!(
            shown,
            [
                "Cmd=[\"sh\"]",
                "Env PATH=\"/bin\"",
                "Env JAVA_HOME=\"/jvm/11\"",
                "Env BARE=null",
                "ExposedPorts 80/tcp={}",
                "Healthcheck={\"Test\":[\"NONE\"]}",
                "Labels a=\"1\"",
                "Labels b=\"2\"",
            ]
        );
        let env = |n: &str| Item {
            field: "Env".into(),
            name: Some(n.into()),
        };
        env("JAVA_HOME").set(&mut map, Some(&json!("/jvm/17")));
        env("NEW").set(&mut map, Some(&json!("x")));
        env("PATH").set(&mut map, None);
        Item {
            field: "Volumes".into(),
            name: Some("/data".into()),
        }
        .set(&mut map, Some(&json!({})));
        Item {
            field: "Cmd".into(),
            name: None,
        }
        .set(&mut map, None);
        assert_eq!(
            Value::Object(map),
            json!({
                "Env": ["JAVA_HOME=/jvm/17", "BARE", "NEW=x"],
                "Labels": {"b": "2", "a": "1"},
                "ExposedPorts": {"80/tcp": {}},
                "Volumes": {"/data": {}},
                "Healthcheck": {"Test": ["NONE"]},
            })
        );
    }

    #[test]
    fn a_scratch_config_is_what_image_stack_always_wrote() {
        let p = PlatformSpec::parse("linux/arm64/v8").unwrap();
        assert_eq!(
            String::from_utf8(canonical(&ImageConfig::scratch(&p)).unwrap()).unwrap(),
            r#"{"architecture":"arm64","config":{},"history":[],"os":"linux","rootfs":{"diff_ids":[],"type":"layers"},"variant":"v8"}"#
        );
        let p = PlatformSpec::parse("linux/amd64").unwrap();
        let scratch = ImageConfig::scratch(&p);
        assert_eq!(
            scratch.platform(),
            Some(Platform {
                architecture: "amd64".into(),
                os: "linux".into(),
                variant: None,
                extra: BTreeMap::new()
            })
        );
    }
}
