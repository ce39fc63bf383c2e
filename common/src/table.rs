//! docker's table layout and cell text (display widths, `Ellipsis`), as docker/cli prints
//! `docker history`, `docker images` and `docker system df` (its text/tabwriter with minwidth
//! 10, padding 3): every column but the last is as wide as its widest cell plus 3, and at
//! least 10; the last is not padded, so a row whose last cell is empty ends in spaces.

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

/// Columns a character takes on a terminal: 2 for East Asian Wide and Fullwidth, else 1 (as
/// docker/cli counts; combining marks count 1 there too).
pub fn char_width(c: char) -> usize {
    let c = c as u32;
    let wide = matches!(c,
        0x1100..=0x115F | 0x231A..=0x231B | 0x2329..=0x232A | 0x23E9..=0x23EC | 0x23F0 | 0x23F3
        | 0x25FD..=0x25FE | 0x2614..=0x2615 | 0x2648..=0x2653 | 0x267F | 0x2693 | 0x26A1
        | 0x26AA..=0x26AB | 0x26BD..=0x26BE | 0x26C4..=0x26C5 | 0x26CE | 0x26D4 | 0x26EA
        | 0x26F2..=0x26F3 | 0x26F5 | 0x26FA | 0x26FD | 0x2705 | 0x270A..=0x270B | 0x2728 | 0x274C
        | 0x274E | 0x2753..=0x2755 | 0x2757 | 0x2795..=0x2797 | 0x27B0 | 0x27BF | 0x2B1B..=0x2B1C
        | 0x2B50 | 0x2B55 | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF | 0xA960..=0xA97F | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE10..=0xFE19
        | 0xFE30..=0xFE6F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x16FE0..=0x18CFF
        | 0x1B000..=0x1B2FF | 0x1F004 | 0x1F0CF | 0x1F18E | 0x1F191..=0x1F19A
        | 0x1F200..=0x1F251 | 0x1F300..=0x1F64F | 0x1F680..=0x1F6FF | 0x1F7E0..=0x1F7EB
        | 0x1F90C..=0x1F9FF | 0x1FA70..=0x1FAFF | 0x20000..=0x2FFFD | 0x30000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

/// Display width of a string.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// docker/cli `Ellipsis`: at most `max` columns, the cut marked with `…`.
pub fn ellipsis(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = char_width(c);
        if used + w > max - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
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

    #[test]
    fn ellipsis_counts_display_columns() {
        let long = "/bin/sh -c set -eux;   savedAptMark=\"$(apt-mark showmanual)\"";
        assert_eq!(
            ellipsis(long, 45),
            "/bin/sh -c set -eux;   savedAptMark=\"$(apt-m…"
        );
        assert_eq!(width(&ellipsis(long, 45)), 45);
        assert_eq!(ellipsis("short", 45), "short");
        let exact = "x".repeat(45);
        assert_eq!(ellipsis(&exact, 45), exact);
        // Wide characters take two columns: 22 of them fill 44, the ellipsis the 45th.
        let cjk = "漢".repeat(30);
        let cut = ellipsis(&cjk, 45);
        assert_eq!(cut, format!("{}…", "漢".repeat(22)));
        assert_eq!(width(&cut), 45);
        assert_eq!(ellipsis("aé漢字b", 4), "aé…");
    }
}
