//! docker's table layout (its text/tabwriter with minwidth 10, padding 3): every column but
//! the last is as wide as its widest cell plus 3, and at least 10; the last is not padded, so
//! a row whose last cell is empty ends in spaces, exactly as `docker history` prints it.

use crate::units::width;

/// Lays out rows of cells; every row must have the same number of cells.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns.saturating_sub(1))
        .map(|c| rows.iter().map(|r| width(&r[c]) + 3).max().unwrap_or(0).max(10))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', w - width(cell)));
        }
        if let Some(last) = row.get(columns - 1) {
            out.push_str(last);
        }
        out.push('\n');
    }
    out
}

/// Makes text safe for one table cell: tabs become spaces (as docker does for CREATED BY), and
/// so do line breaks and other control characters, which would break the row in two.
pub fn cell_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matches_dockers_golden_table() {
        // docker/cli testdata/history-command-success.simple.golden
        let t = render(&[
            row(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]),
            row(&["123456789012", "Less than a second ago", "", "0B", "none"]),
        ]);
        assert_eq!(
            t,
            "IMAGE          CREATED                  CREATED BY   SIZE      COMMENT\n\
             123456789012   Less than a second ago                0B        none\n"
        );
    }

    #[test]
    fn pads_an_empty_last_cell_and_counts_wide_characters() {
        let t = render(&[row(&["A", "B"]), row(&["漢字漢字漢字", ""])]);
        assert_eq!(t, "A              B\n漢字漢字漢字   \n");
        assert_eq!(cell_text("a\tb\nc"), "a b c");
    }
}
