//! Box-drawn tables for `list` output, in the style of `lk sip ... list`:
//! one column per field, cells may span several lines (header maps).

/// Renders `rows` under `headers` as a box-drawn table. Every row must have
/// one cell per header; a missing cell prints empty, an extra one is dropped.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let cell_lines = |cell: &str| -> Vec<String> { cell.lines().map(str::to_owned).collect() };
    let mut widths: Vec<usize> = headers.iter().map(|h| text_width(h)).collect();
    let rows: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|row| {
            (0..columns)
                .map(|c| row.get(c).map(|s| cell_lines(s)).unwrap_or_default())
                .collect()
        })
        .collect();
    for row in &rows {
        for (c, lines) in row.iter().enumerate() {
            for line in lines {
                widths[c] = widths[c].max(text_width(line));
            }
        }
    }
    let mut out = String::new();
    rule(&mut out, &widths, '┌', '┬', '┐');
    let header_cells: Vec<Vec<String>> = headers.iter().map(|h| vec![h.to_string()]).collect();
    line_block(&mut out, &widths, &header_cells);
    rule(&mut out, &widths, '├', '┼', '┤');
    for row in &rows {
        line_block(&mut out, &widths, row);
    }
    rule(&mut out, &widths, '└', '┴', '┘');
    out
}

/// Display width: characters, which is right for the ASCII and Latin text
/// these tables hold (IDs, numbers, addresses).
fn text_width(s: &str) -> usize {
    s.chars().count()
}

fn rule(out: &mut String, widths: &[usize], left: char, mid: char, right: char) {
    out.push(left);
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            out.push(mid);
        }
        out.extend(std::iter::repeat_n('─', w + 2));
    }
    out.push(right);
    out.push('\n');
}

fn line_block(out: &mut String, widths: &[usize], cells: &[Vec<String>]) {
    let height = cells.iter().map(Vec::len).max().unwrap_or(0).max(1);
    for line in 0..height {
        out.push('│');
        for (c, w) in widths.iter().enumerate() {
            let text = cells
                .get(c)
                .and_then(|lines| lines.get(line))
                .map(String::as_str)
                .unwrap_or("");
            out.push(' ');
            out.push_str(text);
            out.extend(std::iter::repeat_n(' ', w - text_width(text)));
            out.push_str(" │");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_the_widest_cell() {
        let table = render(
            &["ID", "Name"],
            &[
                vec!["ST_a".into(), "x".into()],
                vec!["ST_bbbbbb".into(), "".into()],
            ],
        );
        let expected = "\
┌───────────┬──────┐
│ ID        │ Name │
├───────────┼──────┤
│ ST_a      │ x    │
│ ST_bbbbbb │      │
└───────────┴──────┘
";
        assert_eq!(table, expected);
    }

    #[test]
    fn multi_line_cells_make_taller_rows() {
        let table = render(&["K", "Headers"], &[vec!["1".into(), "a=1\nbb=2".into()]]);
        let expected = "\
┌───┬─────────┐
│ K │ Headers │
├───┼─────────┤
│ 1 │ a=1     │
│   │ bb=2    │
└───┴─────────┘
";
        assert_eq!(table, expected);
    }

    #[test]
    fn empty_list_prints_the_header() {
        let table = render(&["SipTrunkID"], &[]);
        assert_eq!(
            table,
            "┌────────────┐\n│ SipTrunkID │\n├────────────┤\n└────────────┘\n"
        );
    }

    #[test]
    fn short_rows_are_padded() {
        let table = render(&["A", "B"], &[vec!["1".into()]]);
        assert!(table.contains("│ 1 │   │"), "{table}");
    }
}
