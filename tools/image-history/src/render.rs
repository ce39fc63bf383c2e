//! The output: docker's table, the ids alone (`-q`), or JSON Lines with full values.

use crate::Measured;
use crate::history::{History, Row};
use crate::wasted::{LayerWaste, WastedFile};
use common::digest::Digest;
use common::size::LayerSize;
use common::table;
use common::time::{self, Time};
use common::units;
use serde::Serialize;
use std::io::Write;

/// How the table shows values.
pub struct TableOptions {
    /// Full ids and CREATED BY.
    pub no_trunc: bool,
    /// Relative times and 3-digit sizes, as docker's `-H`.
    pub human: bool,
    /// A WASTED column and the total line.
    pub wasted: bool,
}

/// `--wasted`'s total (the table's last line, and `--report`'s): all layers' content, what of
/// it is masked, and the efficiency in percent.
#[derive(Serialize)]
pub struct Total {
    #[serde(rename = "totalSize")]
    pub total_size: u64,
    #[serde(rename = "wastedSize")]
    pub wasted_size: u64,
    pub efficiency: f64,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    id: Option<&'a Digest>,
    created: Option<String>,
    #[serde(rename = "createdBy")]
    created_by: &'a str,
    author: &'a str,
    comment: &'a str,
    size: u64,
    #[serde(rename = "tarSize")]
    tar_size: u64,
    #[serde(rename = "storedSize")]
    stored_size: u64,
    #[serde(rename = "emptyLayer")]
    empty_layer: bool,
    digest: Option<&'a Digest>,
    #[serde(rename = "diffID")]
    diff_id: Option<&'a Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wasted: Option<u64>,
    #[serde(rename = "wastedFiles", skip_serializing_if = "Option::is_none")]
    wasted_files: Option<&'a [WastedFile]>,
}

/// The sizes of a row without a layer.
const NO_LAYER: LayerSize = LayerSize {
    content: 0,
    tar: 0,
    stored: 0,
};

/// An IMAGE cell: the short id, the full one with `--no-trunc`, `<missing>` without one.
fn id_text(id: Option<&Digest>, no_trunc: bool) -> String {
    match id {
        Some(d) if no_trunc => d.to_string(),
        Some(d) => d.short().to_string(),
        None => "<missing>".to_string(),
    }
}

/// `-q`: the ids, newest first.
pub fn ids(out: &mut impl Write, ids: &[Option<Digest>], no_trunc: bool) -> crate::Result<()> {
    for id in ids.iter().rev() {
        writeln!(out, "{}", id_text(id.as_ref(), no_trunc))?;
    }
    Ok(())
}

/// The rows, newest first, each with its id, sizes and (with `--wasted`) waste.
fn rows<'a>(
    history: &'a History,
    ids: &'a [Option<Digest>],
    measured: &'a Measured,
) -> impl Iterator<Item = (&'a Row, Option<&'a Digest>, LayerSize, Option<&'a LayerWaste>)> {
    // The n-th layer's waste is measured.waste[n]; a row's layer number counts layer rows.
    let layer_no: Vec<usize> = history
        .rows
        .iter()
        .scan(0, |n, r| {
            *n += usize::from(r.layer.is_some());
            Some(*n)
        })
        .collect();
    history
        .rows
        .iter()
        .zip(ids)
        .zip(layer_no)
        .map(move |((row, id), n)| {
            let size = row
                .layer
                .as_ref()
                .map_or(NO_LAYER, |(d, _)| measured.sizes[&d.digest]);
            let waste = row
                .layer
                .as_ref()
                .and_then(|_| measured.waste.as_ref()?.get(n - 1));
            (row, id.as_ref(), size, waste)
        })
        .rev()
}

/// `--format json`: one line per row, each of one shape (the total is `--report`'s).
pub fn json(
    out: &mut impl Write,
    history: &History,
    ids: &[Option<Digest>],
    measured: &Measured,
    wasted: bool,
) -> crate::Result<()> {
    for (row, id, size, waste) in rows(history, ids, measured) {
        let line = JsonRow {
            id,
            created: row.created.map(|t| t.rfc3339_nano()),
            created_by: &row.created_by,
            author: &row.author,
            comment: &row.comment,
            size: size.content,
            tar_size: size.tar,
            stored_size: size.stored,
            empty_layer: row.layer.is_none(),
            digest: row.layer.as_ref().map(|l| &l.0.digest),
            diff_id: row.layer.as_ref().map(|l| &l.1),
            wasted: wasted.then(|| waste.map_or(0, |w| w.wasted)),
            wasted_files: wasted.then(|| waste.map_or(&[][..], |w| &w.files[..])),
        };
        common::json::write_line(&mut *out, &line)?;
    }
    Ok(())
}

/// docker's table, then with `--wasted` the total line.
pub fn table(
    out: &mut impl Write,
    history: &History,
    ids: &[Option<Digest>],
    measured: &Measured,
    opts: &TableOptions,
) -> crate::Result<()> {
    let now = if opts.human { Some(Time::now()?) } else { None };
    let size_text = |n: u64| {
        if opts.human {
            units::human_size(n, 3)
        } else {
            n.to_string()
        }
    };
    let mut header = vec![
        "IMAGE",
        if opts.human { "CREATED" } else { "CREATED AT" },
        "CREATED BY",
        "SIZE",
    ];
    if opts.wasted {
        header.push("WASTED");
    }
    header.push("COMMENT");
    let mut cells = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for (row, id, size, waste) in rows(history, ids, measured) {
        let created = match (row.created, now) {
            (Some(t), _) if t.secs <= time::EPOCH_2000 => "N/A".to_string(),
            (None, _) => "N/A".to_string(),
            (Some(t), Some(now)) => units::created_since(&now, &t),
            (Some(t), None) => t.rfc3339(),
        };
        let created_by = table::cell_text(&row.created_by);
        let mut line = vec![
            id_text(id, opts.no_trunc),
            created,
            if opts.no_trunc {
                created_by
            } else {
                table::ellipsis(&created_by, 45)
            },
            size_text(size.content),
        ];
        if opts.wasted {
            line.push(size_text(waste.map_or(0, |w| w.wasted)));
        }
        line.push(table::cell_text(&row.comment));
        cells.push(line);
    }
    out.write_all(table::render(&cells).as_bytes())?;
    if let Some(t) = &measured.total {
        writeln!(
            out,
            "Wasted {} of {} ({:.1}% efficient)",
            size_text(t.wasted_size),
            size_text(t.total_size),
            t.efficiency
        )?;
    }
    Ok(())
}
