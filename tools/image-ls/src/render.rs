//! The output: docker's tables (`docker images`, `docker system df [-v]`), the ids alone
//! (`-q`), or JSON Lines with full values.

use crate::list::Row;
use crate::usage::Usage;
use common::digest::Digest;
use common::images::{Image, Images};
use common::reference::split_ref;
use common::size::LayerSize;
use common::table;
use common::time::Time;
use common::units::{created_since, human_size};
use serde::Serialize;
use std::io::Write;

pub struct Options {
    /// Full image ids.
    pub no_trunc: bool,
    pub json: bool,
}

/// An image's sizes: the sums of its layers' (and, stored, its config's and manifest's too).
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageSize {
    pub content: u64,
    pub tar: u64,
    pub stored: u64,
}

impl ImageSize {
    pub fn add(&mut self, layer: &LayerSize) {
        self.content += layer.content;
        self.tar += layer.tar;
        self.stored += layer.stored;
    }
}

fn id_text(id: &Digest, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.short().to_string()
    }
}

fn created_text(image: &Image, now: &Time) -> String {
    image
        .config
        .created_time()
        .map_or_else(String::new, |t| created_since(now, &t))
}

/// `-q`: one id per row, as docker prints them (an image of two tags twice).
pub fn ids(out: &mut impl Write, images: &Images, rows: &[Row], no_trunc: bool) -> crate::Result<()> {
    for r in rows {
        writeln!(out, "{}", id_text(images.list[r.image].id(), no_trunc))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonRow<'a> {
    repository: Option<&'a str>,
    tag: Option<&'a str>,
    id: &'a Digest,
    digest: &'a Digest,
    created: Option<String>,
    size: u64,
    #[serde(rename = "tarSize")]
    tar_size: u64,
    #[serde(rename = "storedSize")]
    stored_size: u64,
    dangling: bool,
    intermediate: bool,
    parent: Option<&'a Digest>,
}

/// docker images: the table, or JSON Lines.
pub fn images(
    out: &mut impl Write,
    images: &Images,
    rows: &[Row],
    sizes: &[Option<ImageSize>],
    digests: bool,
    opts: &Options,
) -> crate::Result<()> {
    let size = |r: &Row| sizes[r.image].unwrap_or_default();
    if opts.json {
        for r in rows {
            let im = &images.list[r.image];
            let s = size(r);
            let line = JsonRow {
                repository: r.repository.as_deref(),
                tag: r.tag.as_deref(),
                id: im.id(),
                digest: &im.descriptor.digest,
                created: im.config.created_time().map(|t| t.rfc3339_nano()),
                size: s.content,
                tar_size: s.tar,
                stored_size: s.stored,
                dangling: images.is_dangling(r.image),
                intermediate: images.is_intermediate(r.image),
                parent: im.parent.map(|p| images.list[p].id()),
            };
            common::json::write_line(&mut *out, &line)?;
        }
        return Ok(());
    }
    let now = Time::now()?;
    let mut header = vec!["REPOSITORY", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut cells = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for r in rows {
        let im = &images.list[r.image];
        let mut line = vec![
            r.repository.clone().unwrap_or_else(|| "<none>".into()),
            r.tag.clone().unwrap_or_else(|| "<none>".into()),
        ];
        if digests {
            line.push(im.descriptor.digest.to_string());
        }
        line.extend([
            id_text(im.id(), opts.no_trunc),
            created_text(im, &now),
            human_size(size(r).content, 3),
        ]);
        cells.push(line.iter().map(|c| table::cell_text(c)).collect());
    }
    out.write_all(table::render(&cells).as_bytes())?;
    Ok(())
}

#[derive(Serialize)]
struct JsonShare<'a> {
    repository: Option<&'a str>,
    tag: Option<&'a str>,
    id: &'a Digest,
    created: Option<String>,
    size: u64,
    #[serde(rename = "sharedSize")]
    shared_size: u64,
    #[serde(rename = "uniqueSize")]
    unique_size: u64,
}

/// docker's RECLAIMABLE cell: the size, and its share of the total in whole percent.
fn reclaimable_text(reclaimable: u64, total: u64) -> String {
    if total == 0 {
        return human_size(reclaimable, 4);
    }
    let percent = u128::from(reclaimable) * 100 / u128::from(total);
    format!("{} ({percent}%)", human_size(reclaimable, 4))
}

/// docker system df [-v]: the summary table, then with `verbose` the images' table.
pub fn usage(
    out: &mut impl Write,
    images: &Images,
    usage: &Usage,
    verbose: bool,
    opts: &Options,
) -> crate::Result<()> {
    // An image's row shows its first tag, as docker's does.
    let name = |i: usize| images.list[i].tags.first().map(|t| split_ref(t));
    if opts.json {
        // One document, not JSON Lines: the rows of the two tables have two shapes.
        let mut doc = serde_json::Map::new();
        doc.insert("types".into(), serde_json::to_value(&usage.kinds)?);
        if verbose {
            let mut rows = Vec::new();
            for s in &usage.images {
                let im = &images.list[s.image];
                let n = name(s.image);
                rows.push(serde_json::to_value(JsonShare {
                    repository: n.map(|n| n.0),
                    tag: n.and_then(|n| n.1),
                    id: im.id(),
                    created: im.config.created_time().map(|t| t.rfc3339_nano()),
                    size: s.size,
                    shared_size: s.shared,
                    unique_size: s.size - s.shared,
                })?);
            }
            doc.insert("images".into(), rows.into());
        }
        common::json::write_line(&mut *out, &doc)?;
        return Ok(());
    }
    let mut cells = vec![
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
            .map(String::from)
            .to_vec(),
    ];
    for k in &usage.kinds {
        cells.push(vec![
            k.name.to_string(),
            k.total.to_string(),
            k.active.to_string(),
            human_size(k.size, 4),
            reclaimable_text(k.reclaimable, k.size),
        ]);
    }
    out.write_all(table::render(&cells).as_bytes())?;
    if !verbose {
        return Ok(());
    }
    let now = Time::now()?;
    writeln!(out, "\nImages space usage:\n")?;
    let mut cells = vec![
        [
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut shares: Vec<_> = usage.images.iter().collect();
    shares.sort_by_key(|s| std::cmp::Reverse(images.list[s.image].config.created_time().map(|t| t.secs)));
    for s in shares {
        let im = &images.list[s.image];
        let n = name(s.image);
        cells.push(
            [
                n.map_or("<none>", |n| n.0).to_string(),
                n.and_then(|n| n.1).unwrap_or("<none>").to_string(),
                id_text(im.id(), opts.no_trunc),
                created_text(im, &now),
                human_size(s.size, 4),
                human_size(s.shared, 4),
                human_size(s.size - s.shared, 4),
            ]
            .iter()
            .map(|c| table::cell_text(c))
            .collect(),
        );
    }
    out.write_all(table::render(&cells).as_bytes())?;
    Ok(())
}
