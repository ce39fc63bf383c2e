//! `--image`: two IMAGEs compared as images, not only as file systems (what container-diff
//! and diffoci users ask for): the manifest, the config (item by item: an `Env` variable, a
//! label, a port, or a whole key such as `Cmd`) and the history, each difference with its old
//! and new value; a per-layer view, layers paired by diffID, then by the history step that
//! made them, each pair that differs with the entries its two tars differ in; then the file
//! changes of the stacked file systems, as `--json`/`--list` report them.
//!
//! Times can be left out separately (diffoci#192/#195): `--ignore-times` for the files' mtimes,
//! `--ignore-image-times` for the image's own (config and history `created`, the
//! `org.opencontainers.image.created` annotation and label). Records come in a fixed order:
//! manifest, config, history, layers, files; each section sorted.

use crate::input::hash;
use anyhow::Context;
use common::changeset::{Change, Diff};
use common::config::{HistoryEntry, ImageConfig, Item};
use common::descriptor::Descriptor;
use common::digest::Digest;
use common::entry::{Kind, Meta};
use common::layer::LayerStream;
use common::layout::Layout;
use common::manifest::{Image, Manifest, PlatformSpec};
use common::path::{display, parent};
use common::reference::ImageRef;
use common::tree::Exclude;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// The annotation (and label) image-spec names for when an image was made.
const CREATED: &str = "org.opencontainers.image.created";

/// What `--image` compares by.
pub struct Options<'a> {
    pub ignore_file_times: bool,
    pub ignore_image_times: bool,
    pub exclude: &'a Exclude,
    pub platform: Option<&'a PlatformSpec>,
    pub max_json: u64,
}

/// One difference.
#[derive(Debug, PartialEq, Serialize)]
#[serde(tag = "section", rename_all = "lowercase")]
pub enum Record {
    /// A manifest field (`mediaType`, `annotations` by key, the config's `mediaType`, …).
    Manifest {
        key: Vec<String>,
        old: Value,
        new: Value,
    },
    /// A config field: top-level (`architecture`, `created`, `author`, unknown keys) or an item
    /// of the container config (`["config", "Env", "PATH"]`, `["config", "Cmd"]`).
    Config {
        key: Vec<String>,
        old: Value,
        new: Value,
    },
    /// A history entry, by position.
    History { index: usize, old: Value, new: Value },
    /// A layer of one side without a match, or a pair that differs.
    Layer {
        old: Option<LayerInfo>,
        new: Option<LayerInfo>,
        /// `diffID` or `step`; null for a layer of one side only.
        #[serde(rename = "pairedBy")]
        paired_by: Option<&'static str>,
        /// The entries the layers' tars differ in (a layer of one side: all its entries).
        changes: Vec<FileChange>,
    },
    /// A change of the stacked file systems, as `--json` reports it.
    File {
        path: String,
        kind: char,
        /// The path as the tree has it, for the text form (`--list`'s escapes).
        #[serde(skip)]
        raw: Vec<u8>,
    },
}

/// A layer, as the per-layer view shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerInfo {
    pub index: usize,
    /// The position of the history entry that made it (a layer without one counts on past
    /// the end).
    pub step: usize,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    pub digest: Digest,
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
}

/// An entry of a layer tar added, changed or removed (paths as the tar names them, whiteouts
/// included).
#[derive(Debug, PartialEq, Serialize)]
pub struct FileChange {
    pub path: String,
    pub kind: char,
}

/// An image as compared: where it is, its manifest and config.
struct Side {
    layout: Layout,
    image: Image,
    config: ImageConfig,
}

impl Side {
    fn load(r: &ImageRef, opts: &Options) -> common::Result<Side> {
        let layout = Layout::open(&r.layout)?.with_max_json(opts.max_json);
        let image = layout
            .resolve(&r.target, opts.platform)
            .with_context(|| r.to_string())?;
        let config = layout
            .read_config(&image.manifest.config)
            .with_context(|| r.to_string())?;
        Ok(Side {
            layout,
            image,
            config,
        })
    }

    /// Each layer with the history step that made it.
    fn layers(&self) -> Vec<LayerInfo> {
        let history = self.config.history();
        let mut made: Vec<(usize, &HistoryEntry)> = history
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty_layer())
            .collect();
        made.reverse();
        let diff_ids = self.config.diff_ids();
        self.image
            .manifest
            .layers
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let (step, created_by) = match made.pop() {
                    Some((step, h)) => (step, h.created_by.clone().unwrap_or_default()),
                    None => (history.len() + index, String::new()),
                };
                LayerInfo {
                    index,
                    step,
                    created_by,
                    digest: d.digest.clone(),
                    diff_id: diff_ids.get(index).cloned().unwrap_or_else(|| d.digest.clone()),
                    media_type: d.media_type.clone(),
                    size: d.size,
                }
            })
            .collect()
    }
}

/// Every difference between the images `old` and `new`, whose file systems differ by `files`.
pub fn compare(old: &ImageRef, new: &ImageRef, files: &Diff, opts: &Options) -> common::Result<Vec<Record>> {
    let (a, b) = (Side::load(old, opts)?, Side::load(new, opts)?);
    let mut out = Vec::new();
    for (key, old, new) in keyed_diff(
        manifest_fields(&a.image.manifest, opts)?,
        manifest_fields(&b.image.manifest, opts)?,
    ) {
        out.push(Record::Manifest { key, old, new });
    }
    for (key, old, new) in keyed_diff(config_fields(&a.config, opts)?, config_fields(&b.config, opts)?) {
        out.push(Record::Config { key, old, new });
    }
    let (ha, hb) = (a.config.history(), b.config.history());
    for index in 0..ha.len().max(hb.len()) {
        let entry = |h: &[HistoryEntry]| -> common::Result<Value> {
            let Some(e) = h.get(index) else {
                return Ok(Value::Null);
            };
            let mut e = e.clone();
            if opts.ignore_image_times {
                e.created = None;
            }
            Ok(serde_json::to_value(e)?)
        };
        let (old, new) = (entry(ha)?, entry(hb)?);
        if old != new {
            out.push(Record::History { index, old, new });
        }
    }
    out.extend(layer_records(&a, &b, opts)?);
    let mut changes: Vec<&Change> = files.changes.iter().collect();
    changes.sort_by(|x, y| x.path.cmp(&y.path));
    out.extend(changes.into_iter().map(|c| Record::File {
        path: format!("/{}", String::from_utf8_lossy(&c.path)),
        kind: c.kind.letter(),
        raw: c.path.clone(),
    }));
    Ok(out)
}

/// The manifest's fields as compared: each annotation on its own, the config descriptor's
/// media type, the other top-level fields whole (the config digest and the layers are what
/// the other sections show).
fn manifest_fields(m: &Manifest, opts: &Options) -> common::Result<BTreeMap<Vec<String>, Value>> {
    let Value::Object(mut top) = serde_json::to_value(m)? else {
        return Ok(BTreeMap::new());
    };
    top.remove("layers");
    top.remove("config");
    let mut fields = split_objects(top, &["annotations"]);
    if opts.ignore_image_times {
        fields.remove(&vec!["annotations".to_string(), CREATED.to_string()]);
    }
    fields.insert(
        vec!["config".into(), "mediaType".into()],
        Value::from(m.config.media_type.clone()),
    );
    Ok(fields)
}

/// The config's fields as compared: top-level ones whole, the container config item by item
/// ([`Item`]), `rootfs` and `history` left to the layer and history sections.
fn config_fields(c: &ImageConfig, opts: &Options) -> common::Result<BTreeMap<Vec<String>, Value>> {
    let Value::Object(mut top) = serde_json::to_value(c)? else {
        return Ok(BTreeMap::new());
    };
    for key in ["config", "rootfs", "history"] {
        top.remove(key);
    }
    if opts.ignore_image_times {
        top.remove("created");
    }
    let mut fields = split_objects(top, &[]);
    let empty = Map::new();
    for (item, value) in Item::all(c.config.as_ref().unwrap_or(&empty)) {
        if opts.ignore_image_times && item.field == "Labels" && item.name.as_deref() == Some(CREATED) {
            continue;
        }
        let key = std::iter::once("config".to_string())
            .chain(std::iter::once(item.field))
            .chain(item.name)
            .collect();
        fields.insert(key, value);
    }
    Ok(fields)
}

/// Top-level keys as one-element paths; those in `split`, when objects, key by key.
fn split_objects(top: Map<String, Value>, split: &[&str]) -> BTreeMap<Vec<String>, Value> {
    let mut fields = BTreeMap::new();
    for (k, v) in top {
        match v {
            Value::Object(entries) if split.contains(&k.as_str()) => {
                for (name, v) in entries {
                    fields.insert(vec![k.clone(), name], v);
                }
            }
            v => {
                fields.insert(vec![k], v);
            }
        }
    }
    fields
}

/// The keys whose values differ (absent is null), in key order.
fn keyed_diff(
    old: BTreeMap<Vec<String>, Value>,
    new: BTreeMap<Vec<String>, Value>,
) -> Vec<(Vec<String>, Value, Value)> {
    let keys: BTreeSet<&Vec<String>> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (o, n) = (
                old.get(k).cloned().unwrap_or_default(),
                new.get(k).cloned().unwrap_or_default(),
            );
            (o != n).then(|| (k.clone(), o, n))
        })
        .collect()
}

/// The per-layer view: layers paired by diffID (in order), then the rest by history step;
/// a pair with the same blob is not shown, one with the same diffID but another blob (other
/// compression) is, without changes.
fn layer_records(a: &Side, b: &Side, opts: &Options) -> common::Result<Vec<Record>> {
    let (old, new) = (a.layers(), b.layers());
    let mut partner: Vec<Option<(usize, &'static str)>> = vec![None; old.len()];
    let mut taken = vec![false; new.len()];
    let mut pair = |matches: &dyn Fn(&LayerInfo, &LayerInfo) -> bool, how: &'static str| {
        for (i, o) in old.iter().enumerate() {
            if partner[i].is_some() {
                continue;
            }
            if let Some(j) = (0..new.len()).find(|j| !taken[*j] && matches(o, &new[*j])) {
                taken[j] = true;
                partner[i] = Some((j, how));
            }
        }
    };
    pair(&|o, n| o.diff_id == n.diff_id, "diffID");
    pair(&|o, n| o.step == n.step, "step");

    let mut out = Vec::new();
    for (i, o) in old.iter().enumerate() {
        let (new_layer, changes) = match partner[i] {
            Some((j, "diffID")) if new[j].digest == o.digest => continue,
            Some((j, "diffID")) => (Some(&new[j]), Vec::new()),
            Some((j, _)) => (
                Some(&new[j]),
                entry_changes(&layer_entries(a, o, opts)?, &layer_entries(b, &new[j], opts)?),
            ),
            None => (None, entry_changes(&layer_entries(a, o, opts)?, &BTreeMap::new())),
        };
        out.push(Record::Layer {
            old: Some(o.clone()),
            new: new_layer.cloned(),
            paired_by: partner[i].map(|(_, how)| how),
            changes,
        });
    }
    for (j, n) in new.iter().enumerate() {
        if !taken[j] {
            out.push(Record::Layer {
                old: None,
                new: Some(n.clone()),
                paired_by: None,
                changes: entry_changes(&BTreeMap::new(), &layer_entries(b, n, opts)?),
            });
        }
    }
    Ok(out)
}

/// One entry of a layer tar, as compared: its metadata (mtime zeroed with
/// `--ignore-times`), hard-link target, and content digest.
#[derive(PartialEq)]
struct Summary {
    meta: Meta,
    link: Option<Vec<u8>>,
    content: Option<Digest>,
}

/// The entries of a layer's tar by path (a path written twice: the last), excluded ones left
/// out. Content is compared by digest, so a rewrite with the same size and time shows.
fn layer_entries(side: &Side, l: &LayerInfo, opts: &Options) -> common::Result<BTreeMap<Vec<u8>, Summary>> {
    let desc: &Descriptor = &side.image.manifest.layers[l.index];
    let mut stream = LayerStream::open(&side.layout, desc, Some(&l.diff_id))?;
    let mut entries = BTreeMap::new();
    common::tarread::for_each_entry(&mut stream, |_, e, content| {
        if excluded(opts.exclude, &e.path) {
            return Ok(());
        }
        let mut meta = e.meta;
        let content = (meta.kind == Kind::File && e.link.is_none() && meta.size > 0)
            .then(|| hash(content))
            .transpose()?;
        if opts.ignore_file_times {
            meta.mtime = 0;
            meta.mtime_nsec = 0;
        }
        entries.insert(
            e.path,
            Summary {
                meta,
                link: e.link,
                content,
            },
        );
        Ok(())
    })
    .with_context(|| format!("layer {}", desc.digest))?;
    stream.finish()?;
    Ok(entries)
}

/// True when `path` or a directory above it is excluded.
fn excluded(exclude: &Exclude, path: &[u8]) -> bool {
    std::iter::successors(Some(path), |p| (!p.is_empty()).then(|| parent(p))).any(|p| exclude.matches(p))
}

/// What tells two layers' entry lists apart, by path.
fn entry_changes(old: &BTreeMap<Vec<u8>, Summary>, new: &BTreeMap<Vec<u8>, Summary>) -> Vec<FileChange> {
    let paths: BTreeSet<&Vec<u8>> = old.keys().chain(new.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| {
            let kind = match (old.get(p), new.get(p)) {
                (None, Some(_)) => 'A',
                (Some(_), None) => 'D',
                (Some(o), Some(n)) if o != n => 'C',
                _ => return None,
            };
            Some(FileChange {
                path: display(p),
                kind,
            })
        })
        .collect()
}

/// Prints the records: JSON Lines, or one line each (a layer's changes indented under it).
pub fn print(records: &[Record], json: bool) -> common::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for r in records {
        if json {
            common::json::write_line(&mut out, r)?;
            continue;
        }
        let show = |v: &Value| {
            if v.is_null() {
                "unset".to_string()
            } else {
                v.to_string()
            }
        };
        match r {
            Record::Manifest { key, old, new } => {
                writeln!(out, "manifest {}: {} -> {}", key_text(key), show(old), show(new))?;
            }
            Record::Config { key, old, new } => {
                // The container config's items read `config Env PATH`, not `config config …`.
                let key = key
                    .strip_prefix(&["config".to_string()])
                    .filter(|k| !k.is_empty())
                    .unwrap_or(key);
                writeln!(out, "config {}: {} -> {}", key_text(key), show(old), show(new))?;
            }
            Record::History { index, old, new } => {
                writeln!(out, "history {index}: {} -> {}", show(old), show(new))?;
            }
            Record::Layer {
                old,
                new,
                paired_by,
                changes,
            } => {
                let side = |l: &Option<LayerInfo>| match l {
                    Some(l) => format!("{} ({}, step {})", l.index, l.diff_id.short(), l.step),
                    None => "none".to_string(),
                };
                let how = paired_by.map_or(String::new(), |h| format!(", paired by {h}"));
                writeln!(out, "layer {} -> {}{how}", side(old), side(new))?;
                for c in changes {
                    writeln!(out, "  {} {}", c.kind, c.path)?;
                }
            }
            Record::File { kind, raw, .. } => writeln!(out, "{kind} {}", display(raw))?,
        }
    }
    out.flush()?;
    Ok(())
}

/// `Env PATH`, `annotations org.opencontainers.image.base.name`: the key's parts, spaced.
fn key_text(key: &[String]) -> String {
    key.join(" ")
}
