//! Which rows `docker images` shows, and in which order: one per tag (a REF split as docker
//! splits a reference), untagged images as `<none>` rows (dangling ones always, intermediate
//! ones with `-a`), filtered as docker's daemon filters them (moby daemon/images/images.go).

use anyhow::{Context, bail};
use common::images::{Images, LabelFilter};
use common::layout::Layout;
use common::reference::{MIN_ID_PREFIX, Target, split_ref};
use common::time::Time;
use std::cmp::Reverse;

/// One row: an image, and the tag it is shown with (None for `<none>  <none>`).
#[derive(Clone, Debug)]
pub struct Row {
    pub image: usize,
    pub repository: Option<String>,
    pub tag: Option<String>,
}

/// The `-f KEY=VALUE` filters docker's `images` takes.
#[derive(Default)]
pub struct Filters {
    dangling: Option<bool>,
    references: Vec<glob::Pattern>,
    before: Vec<String>,
    since: Vec<String>,
    /// Every one must match the image's labels.
    labels: Vec<LabelFilter>,
}

impl Filters {
    /// Parses the filters; an unknown key or a bad value is an error, as docker's is.
    pub fn parse(filters: &[String]) -> crate::Result<Filters> {
        let mut f = Filters::default();
        for spec in filters {
            let invalid = || {
                anyhow::anyhow!(
                    "invalid filter {spec:?} (dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE, label=KEY[=VALUE])"
                )
            };
            let (key, value) = spec.split_once('=').ok_or_else(invalid)?;
            match key {
                "dangling" => {
                    let v = match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(invalid()),
                    };
                    if f.dangling.is_some_and(|d| d != v) {
                        bail!("invalid filter {spec:?}: dangling is given both true and false");
                    }
                    f.dangling = Some(v);
                }
                "reference" => f
                    .references
                    .push(glob::Pattern::new(value).with_context(|| format!("invalid filter {spec:?}"))?),
                "before" if !value.is_empty() => f.before.push(value.to_string()),
                "since" if !value.is_empty() => f.since.push(value.to_string()),
                "label" => f.labels.push(LabelFilter::new(value, false).ok_or_else(invalid)?),
                _ => return Err(invalid()),
            }
        }
        Ok(f)
    }

    /// A reference filter matches `repo:tag`, or the repository alone (docker's FamiliarMatch:
    /// Go's path.Match, whose `*` does not cross a `/`).
    fn matches_reference(&self, repository: &str, tag: Option<&str>) -> bool {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let full = match tag {
            Some(t) => format!("{repository}:{t}"),
            None => repository.to_string(),
        };
        self.references
            .iter()
            .any(|p| p.matches_with(&full, opts) || p.matches_with(repository, opts))
    }
}

/// The image an IMAGE filter value names in this layout: a REF, else an id or digest (prefix).
fn named(layout: &Layout, images: &Images, value: &str) -> crate::Result<usize> {
    let hex = value.strip_prefix("sha256:").unwrap_or(value);
    let is_id = hex.len() >= MIN_ID_PREFIX && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let by_tag = images.list.iter().position(|i| i.tags.iter().any(|t| t == value));
    let found = match by_tag {
        Some(i) => i,
        None if is_id => {
            let picked = layout.resolve(&Target::Id(hex.to_ascii_lowercase()), None)?;
            images
                .list
                .iter()
                .position(|i| i.descriptor.digest == picked.descriptor.digest)
                .with_context(|| format!("{value}: not an image of index.json"))?
        }
        None => bail!("{}: no image {value:?}", layout.root().display()),
    };
    Ok(found)
}

/// The rows to show, newest first: images by creation time (to the second, as docker), then by
/// repository and tag.
pub fn rows(layout: &Layout, images: &Images, all: bool, filters: &Filters) -> crate::Result<Vec<Row>> {
    let created = |i: usize| images.list[i].config.created_time();
    let bound = |values: &[String]| -> crate::Result<Vec<Option<Time>>> {
        values
            .iter()
            .map(|v| named(layout, images, v).map(created))
            .collect()
    };
    let (before, since) = (bound(&filters.before)?, bound(&filters.since)?);
    let secs = |t: Option<Time>| t.map(|t| t.secs);
    let mut out = Vec::new();
    for (i, image) in images.list.iter().enumerate() {
        let c = secs(created(i));
        if before.iter().any(|b| c >= secs(*b)) || since.iter().any(|s| c <= secs(*s)) {
            continue;
        }
        if !filters.labels.iter().all(|f| f.matches(image)) {
            continue;
        }
        let leaf = images.children(i).next().is_none();
        if filters.dangling == Some(true) && !(image.tags.is_empty() && leaf) {
            continue;
        }
        if image.tags.is_empty() {
            if (all || leaf) && filters.dangling != Some(false) && filters.references.is_empty() {
                out.push(Row {
                    image: i,
                    repository: None,
                    tag: None,
                });
            }
            continue;
        }
        for t in &image.tags {
            let (repository, tag) = split_ref(t);
            if filters.references.is_empty() || filters.matches_reference(repository, tag) {
                out.push(Row {
                    image: i,
                    repository: Some(repository.to_string()),
                    tag: tag.map(str::to_string),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        let key = |r: &Row| {
            (
                Reverse(secs(created(r.image))),
                r.repository.clone(),
                r.tag.clone(),
                images.list[r.image].id().clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_docker_knows_and_no_others() {
        for good in [
            "dangling=true",
            "dangling=false",
            "reference=web*",
            "before=web:v1",
            "since=9977b",
            "label=a",
            "label=a=b",
        ] {
            Filters::parse(&[good.to_string()]).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "bogus=1",
            "dangling=maybe",
            "dangling",
            "before=",
            "label=",
            "reference=[",
            "until=1h",
        ] {
            assert!(Filters::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(Filters::parse(&["dangling=true".into(), "dangling=false".into()]).is_err());
        let f = Filters::parse(&["reference=lk/*".into()]).unwrap();
        assert!(f.matches_reference("lk/web", Some("v1")));
        assert!(!f.matches_reference("lk/a/b", Some("v1")), "* does not cross /");
        let f = Filters::parse(&["reference=*:v1".into()]).unwrap();
        assert!(f.matches_reference("web", Some("v1")) && !f.matches_reference("web", Some("v2")));
    }
}
