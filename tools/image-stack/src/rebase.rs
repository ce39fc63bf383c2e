//! `--rebase NEWBASE`: the layers an image adds to its base, restacked on another base without
//! reading a layer (manifest and config arithmetic, as crane rebase, but on a layout).
//!
//! The image's own changes to the config are the delta from its old base to it, item by item
//! ([`Item`]: an `Env` variable, a label, a port, a volume, or a whole key such as `Cmd`):
//! an item the image set or removed is set or removed on NEWBASE's config; an item it
//! inherited follows NEWBASE. Where the two bases disagree on an item, the result is said on
//! stderr: an inherited item now takes NEWBASE's value (crane copies the old one, the JAVA_HOME
//! of go-containerregistry#730), an item of the image's own keeps the image's value, which
//! may have been derived from the old base's (`PATH=/app/bin:…`).

use crate::rewrite::{Image, pad_history, split};
use anyhow::{Context, bail};
use common::config::{ImageConfig, Item};
use common::digest::Digest;
use common::images::Images;
use common::manifest::Manifest;
use common::media;
use common::reference::{ImageRef, Target, split_ref};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

pub fn run(args: &crate::Args, from: &str, new_base: &str, target: &ImageRef) -> crate::Result<()> {
    let image = Image::load("--from", from, args)?;
    let old_base = old_base(&image, new_base, args.rewrite.old_base.as_deref())?;
    let flag = match args.rewrite.old_base {
        Some(_) => "--old-base",
        None => "--rebase: the old base",
    };
    let old = Image::load(flag, &old_base, args)?;
    let new = Image::load("--rebase", new_base, args)?;
    let at = split(&image, &old).context("--rebase")?;
    let (old_platform, new_platform) = (old.stack.config.platform(), new.stack.config.platform());
    if let (Some(o), Some(n)) = (&old_platform, &new_platform)
        && (o.os != n.os || o.architecture != n.architecture || o.variant != n.variant)
    {
        bail!(
            "--rebase {}: the new base is for {}/{}, the old base {} for {}/{}",
            new.name,
            n.os,
            n.architecture,
            old.name,
            o.os,
            o.architecture
        );
    }

    let (mut config, conflicts) = merge(&old.stack.config, &image.stack.config, &new.stack.config);
    let history = config.history.get_or_insert_default();
    pad_history(history, new.layers());
    history.extend(image.stack.config.history()[at.history..].iter().cloned());
    if !args.quiet {
        let mut err = std::io::stderr().lock();
        for c in &conflicts {
            writeln!(err, "image-stack: warning: {c}")?;
        }
    }

    let annotations = new.base_annotations();
    let mut stack = new.stack;
    let own = &image.stack.layers[at.layers..];
    stack.layers.extend(own.iter().cloned());
    stack.added = own.len();
    let mut out = std::io::stdout().lock();
    if args.rewrite.dry_run {
        let base_layers = stack.layers.len() - own.len();
        for (i, layer) in stack.layers.iter().enumerate() {
            // The manifest's layer descriptor, its diffID, and where it comes from: `base`,
            // a layer of NEWBASE, or `image`, one of the image's own.
            let mut line = serde_json::to_value(&layer.desc)?;
            line["diffID"] = serde_json::to_value(&layer.diff_id)?;
            line["origin"] = Value::from(if i < base_layers { "base" } else { "image" });
            common::json::write_line(&mut out, &line)?;
        }
        return Ok(());
    }
    config.created = Some(crate::commit::created()?);
    crate::rewrite::tag(&stack, target, config, annotations, args)
}

/// The old base: `--old-base`, else one of the images the image was committed on, in its
/// layout. Every `--tag` records the image it was made `--from` (its parent, see
/// `common::images`), so an image made in several commits records its own previous commit:
/// the parents are followed down, and the old base is the nearest one tagged in NEWBASE's
/// repository (`store:debian:12.8` for `--rebase store:debian:12.9`), else the parent when it
/// is the only one. With several and none in NEWBASE's repository the rebase is refused, naming
/// them: the nearest would leave the image's first commits behind.
fn old_base(image: &Image, new_base: &str, given: Option<&str>) -> crate::Result<String> {
    if let Some(given) = given {
        return Ok(given.to_string());
    }
    let base = image.stack.base.as_ref().context("--rebase: no --from image")?;
    let manifest: Manifest = serde_json::from_slice(&base.manifest_bytes)
        .with_context(|| format!("{}: not a valid manifest", base.descriptor.digest))?;
    let Some(recorded) = manifest.annotations.get(media::BASE_DIGEST) else {
        bail!(
            "--rebase: {} records no base ({}): name it with --old-base IMAGE",
            image.name,
            media::BASE_DIGEST
        );
    };
    let digest: Digest = recorded
        .parse()
        .with_context(|| format!("--rebase: {}: its {} annotation", image.name, media::BASE_DIGEST))?;
    let layout = base.layout.root();
    if !base.layout.has_blob(&digest) {
        let named = manifest
            .annotations
            .get(media::BASE_NAME)
            .map_or(String::new(), |n| format!(" ({n})"));
        bail!(
            "--rebase: the base {digest}{named} that {} records is not in {}: name it with --old-base IMAGE",
            image.name,
            layout.display()
        );
    }
    let images = Images::read(&base.layout)?;
    let ancestors: Vec<usize> = images
        .list
        .iter()
        .position(|i| i.descriptor.digest == base.descriptor.digest)
        .map(|me| images.lineage(me).into_iter().skip(1).collect())
        .unwrap_or_default();
    let repository = match ImageRef::parse(new_base).map(|r| r.target) {
        Ok(Target::Tag(tag)) => Some(split_ref(&tag).0.to_string()),
        _ => None,
    };
    let in_repository = ancestors.iter().find(|&&a| {
        images.list[a]
            .tags
            .iter()
            .any(|t| Some(split_ref(t).0) == repository.as_deref())
    });
    let chosen = match (in_repository, ancestors.as_slice()) {
        (Some(&a), _) => images.list[a].descriptor.digest.clone(),
        (None, [] | [_]) => digest,
        (None, many) => {
            let names: Vec<String> = many
                .iter()
                .map(|&a| {
                    let i = &images.list[a];
                    i.tags
                        .first()
                        .cloned()
                        .unwrap_or_else(|| i.id().short().to_string())
                })
                .collect();
            bail!(
                "--rebase: {} was committed on {} images in turn ({}), none of them in {}'s repository: name its base with --old-base IMAGE",
                image.name,
                many.len(),
                names.join(", "),
                new_base
            );
        }
    };
    Ok(ImageRef {
        layout: layout.to_path_buf(),
        target: Target::Digest(chosen),
    }
    .to_string())
}

/// An item on which the two bases disagree, and what the rebased image gets.
#[derive(Debug, PartialEq)]
pub struct Conflict {
    pub item: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    /// The image's own value (None: it inherited the old base's).
    pub own: Option<Option<Value>>,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map_or("unset".to_string(), Value::to_string);
        match &self.own {
            None => write!(
                f,
                "{}: the old base has {}, the new base {}: the image inherited it, and now has the new base's",
                self.item,
                show(&self.old),
                show(&self.new)
            ),
            Some(None) => write!(
                f,
                "{}: the old base has {}, the new base {}: the image removed it, and it stays removed",
                self.item,
                show(&self.old),
                show(&self.new)
            ),
            Some(own) => write!(
                f,
                "{}: the old base has {}, the new base {}: the image's own {} is kept (check it is not derived from the old base's)",
                self.item,
                show(&self.old),
                show(&self.new),
                show(own)
            ),
        }
    }
}

/// NEWBASE's config with the image's own changes (the delta from the old base to the image)
/// applied, and the items where the bases disagree. The history and `created` are left as
/// NEWBASE's: the caller writes them.
pub fn merge(old: &ImageConfig, image: &ImageConfig, new: &ImageConfig) -> (ImageConfig, Vec<Conflict>) {
    let empty = serde_json::Map::new();
    let items = |c: &ImageConfig| Item::all(c.config.as_ref().unwrap_or(&empty));
    let (old_items, image_items, new_items) = (items(old), items(image), items(new));
    let by_item = |list: &[(Item, Value)]| -> HashMap<Item, Value> { list.iter().cloned().collect() };
    let (o, a, n) = (by_item(&old_items), by_item(&image_items), by_item(&new_items));

    let mut merged = new.clone();
    let mut conflicts = Vec::new();
    let container = merged.config.get_or_insert_default();
    // The image's items in its order (new variables are appended so), then what it removed,
    // then what only the new base has.
    let mut seen = std::collections::HashSet::new();
    let keys = image_items
        .iter()
        .chain(&old_items)
        .chain(&new_items)
        .map(|(k, _)| k)
        .filter(|k| seen.insert(*k));
    let mut report: BTreeMap<Item, Conflict> = BTreeMap::new();
    for item in keys {
        let (ov, av, nv) = (o.get(item), a.get(item), n.get(item));
        let own = av != ov;
        if own {
            item.set(container, av);
        }
        if ov != nv {
            report.insert(
                item.clone(),
                Conflict {
                    item: item.to_string(),
                    old: ov.cloned(),
                    new: nv.cloned(),
                    own: own.then(|| av.cloned()),
                },
            );
        }
    }
    conflicts.extend(report.into_values());

    // Top-level fields: the image's own author and extra keys (container_config, …); the
    // platform and history are NEWBASE's.
    if image.author != old.author {
        merged.author.clone_from(&image.author);
    }
    let extra_keys: std::collections::BTreeSet<&String> =
        old.extra.keys().chain(image.extra.keys()).collect();
    for key in extra_keys {
        let (ov, av) = (old.extra.get(key), image.extra.get(key));
        if av != ov {
            match av {
                Some(v) => merged.extra.insert(key.clone(), v.clone()),
                None => merged.extra.remove(key),
            };
        }
    }
    (merged, conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(c: Value) -> ImageConfig {
        serde_json::from_value(json!({"architecture": "amd64", "os": "linux", "config": c})).unwrap()
    }

    #[test]
    fn the_image_keeps_its_own_changes_and_inherits_the_new_base() {
        let old = config(json!({
            "Env": ["PATH=/usr/bin", "JAVA_HOME=/jvm/11", "LANG=C"],
            "Cmd": ["sh"], "Labels": {"base": "v1", "vendor": "x"}, "ExposedPorts": {"22/tcp": {}},
            "StopSignal": "SIGTERM"
        }));
        let image = config(json!({
            "Env": ["PATH=/app/bin:/usr/bin", "JAVA_HOME=/jvm/11", "APP=1"],
            "Cmd": ["app"], "Labels": {"base": "v1", "vendor": "x", "app": "web"},
            "ExposedPorts": {"22/tcp": {}, "80/tcp": {}}, "StopSignal": "SIGTERM",
            "WorkingDir": "/app"
        }));
        let new = config(json!({
            "Env": ["PATH=/usr/local/bin:/usr/bin", "JAVA_HOME=/jvm/17", "LANG=C.UTF-8"],
            "Cmd": ["bash"], "Labels": {"base": "v2", "vendor": "x"}, "StopSignal": "SIGQUIT",
            "Healthcheck": {"Test": ["NONE"]}
        }));
        let (merged, conflicts) = merge(&old, &image, &new);
        assert_eq!(
            Value::Object(merged.config.unwrap()),
            json!({
                // PATH: the image's own; JAVA_HOME: inherited, so the new base's; LANG: the
                // image removed it; APP: the image's own, appended.
                "Env": ["PATH=/app/bin:/usr/bin", "JAVA_HOME=/jvm/17", "APP=1"],
                "Cmd": ["app"],
                "Labels": {"base": "v2", "vendor": "x", "app": "web"},
                // 22/tcp was inherited, and the new base has it no more.
                "ExposedPorts": {"80/tcp": {}},
                "StopSignal": "SIGQUIT",
                "WorkingDir": "/app",
                "Healthcheck": {"Test": ["NONE"]}
            })
        );
        let shown: Vec<(String, bool)> = conflicts
            .iter()
            .map(|c| (c.item.clone(), c.own.is_some()))
            .collect();
        assert_eq!(
            shown,
            [
                ("Cmd".to_string(), true),
                ("Env JAVA_HOME".to_string(), false),
                ("Env LANG".to_string(), true),
                ("Env PATH".to_string(), true),
                ("ExposedPorts 22/tcp".to_string(), false),
                ("Healthcheck".to_string(), false),
                ("Labels base".to_string(), false),
                ("StopSignal".to_string(), false),
            ]
        );
        assert_eq!(
            conflicts[1].to_string(),
            "Env JAVA_HOME: the old base has \"/jvm/11\", the new base \"/jvm/17\": the image inherited it, and now has the new base's"
        );
    }

    #[test]
    fn top_level_fields_the_image_changed_are_kept() {
        let mut old = config(json!({}));
        let mut image = config(json!({}));
        let mut new = config(json!({}));
        old.author = Some("base team".into());
        image.author = Some("app team".into());
        new.author = Some("base team 2".into());
        image.extra.insert("docker_version".into(), json!("20.10"));
        new.extra.insert("os.version".into(), json!("x"));
        let (merged, conflicts) = merge(&old, &image, &new);
        assert_eq!(merged.author.as_deref(), Some("app team"));
        assert_eq!(merged.extra.get("docker_version"), Some(&json!("20.10")));
        assert_eq!(merged.extra.get("os.version"), Some(&json!("x")));
        assert!(conflicts.is_empty());
    }
}
