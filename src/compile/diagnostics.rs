//! Where generated code came from, and rustc's errors told in the cell's own terms.

use super::rustc::{Diagnostic, DiagnosticSpan};

/// Where a line of generated code came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Origin {
    /// The execution count of the earlier cell it came from; `None` for the cell
    /// being run.
    pub cell: Option<u64>,
    /// 1-based line in that cell.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cell {
            None => write!(f, "cell:{}", self.line),
            Some(n) => write!(f, "cell[{n}]:{}", self.line),
        }
    }
}

#[derive(Debug, Clone)]
struct Piece {
    gen_line: usize,
    lines: usize,
    origin: Origin,
}

/// Generated source text plus the map from its lines back to cells.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    pub text: String,
    pieces: Vec<Piece>,
    line: usize,
    /// Generated lines that stand for something (`put:x`), for reading errors.
    tags: Vec<(usize, String)>,
}

impl SourceMap {
    /// Appends generated glue code that maps to no cell.
    pub fn glue(&mut self, text: &str) {
        for l in text.lines() {
            self.text.push_str(l);
            self.text.push('\n');
            self.line += 1;
        }
    }

    /// Appends one generated line with a tag that errors on it can be traced to.
    pub fn tagged(&mut self, line: &str, tag: &str) {
        self.glue(line);
        self.tags.push((self.line, tag.to_string()));
    }

    /// The tag of a generated line, if it has one.
    pub fn tag(&self, gen_line: usize) -> Option<&str> {
        self.tags
            .iter()
            .find(|(l, _)| *l == gen_line)
            .map(|(_, t)| t.as_str())
    }

    /// Appends code from a cell, indented to its original column so that columns map
    /// too.
    pub fn code(&mut self, text: &str, column: usize, origin: Origin) {
        self.text.push_str(&" ".repeat(column));
        self.text.push_str(text);
        self.text.push('\n');
        let lines = text.split('\n').count();
        self.pieces.push(Piece {
            gen_line: self.line + 1,
            lines,
            origin,
        });
        self.line += lines;
    }

    /// The cell line a generated line (1-based) came from.
    pub fn origin(&self, gen_line: usize) -> Option<Origin> {
        self.pieces
            .iter()
            .find(|p| gen_line >= p.gen_line && gen_line < p.gen_line + p.lines)
            .map(|p| Origin {
                cell: p.origin.cell,
                line: p.origin.line + (gen_line - p.gen_line),
            })
    }
}

/// Renders rustc errors against the cell, in rustc's own layout. Spans in generated
/// glue are left out; what remains points at the user's lines.
pub fn render(diag: &Diagnostic, map: &SourceMap) -> String {
    let mut out = String::new();
    match &diag.code {
        Some(c) => out.push_str(&format!("{}[{}]: {}\n", diag.level, c.code, diag.message)),
        None => out.push_str(&format!("{}: {}\n", diag.level, diag.message)),
    }
    render_spans(&diag.spans, map, &mut out);
    for child in &diag.children {
        if child
            .spans
            .iter()
            .any(|s| map.origin(s.line_start).is_some())
        {
            out.push_str(&format!("{}: {}\n", child.level, child.message));
            render_spans(&child.spans, map, &mut out);
        } else {
            out.push_str(&format!("  = {}: {}\n", child.level, child.message));
        }
    }
    out
}

fn render_spans(spans: &[DiagnosticSpan], map: &SourceMap, out: &mut String) {
    let mut spans: Vec<&DiagnosticSpan> = spans
        .iter()
        .filter(|s| map.origin(s.line_start).is_some())
        .collect();
    spans.sort_by_key(|s| (!s.is_primary, s.line_start));
    let Some(first) = spans.first() else { return };
    let origin = map.origin(first.line_start).expect("filtered");
    out.push_str(&format!("  --> {}:{}\n", origin, first.column_start));
    let mut lines: Vec<usize> = spans.iter().map(|s| s.line_start).collect();
    lines.sort();
    lines.dedup();
    let width = lines
        .iter()
        .filter_map(|l| map.origin(*l))
        .map(|o| o.line.to_string().len())
        .max()
        .unwrap_or(1);
    let pad = " ".repeat(width);
    out.push_str(&format!("{pad} |\n"));
    for line in lines {
        let o = map.origin(line).expect("filtered");
        let on_line: Vec<&&DiagnosticSpan> =
            spans.iter().filter(|s| s.line_start == line).collect();
        let Some(text) = on_line.iter().find_map(|s| s.text.first()) else {
            continue;
        };
        out.push_str(&format!("{:>width$} | {}\n", o.line, text.text.trim_end()));
        for s in on_line {
            let Some(t) = s.text.first() else { continue };
            let start = t.highlight_start.saturating_sub(1);
            let len = t.highlight_end.saturating_sub(t.highlight_start).max(1);
            let mark = if s.is_primary { "^" } else { "-" };
            out.push_str(&format!(
                "{pad} | {}{} {}\n",
                " ".repeat(start),
                mark.repeat(len),
                s.label.as_deref().unwrap_or("")
            ));
        }
    }
}

/// The place of a syntax error, rendered like a rustc error.
pub fn render_syntax(message: &str, code: &str, line: usize, column: usize) -> String {
    let text = code.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let width = line.to_string().len();
    let pad = " ".repeat(width);
    format!(
        "error: {message}\n  --> cell:{line}:{}\n{pad} |\n{line} | {text}\n{pad} | {}^\n",
        column + 1,
        " ".repeat(column)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_of_pieces() {
        let mut m = SourceMap::default();
        m.glue("use x;\nfn f() {");
        m.code(
            "let a = 1;\nlet b = 2;",
            0,
            Origin {
                cell: None,
                line: 3,
            },
        );
        m.glue("}");
        assert_eq!(m.origin(1), None);
        assert_eq!(
            m.origin(3),
            Some(Origin {
                cell: None,
                line: 3
            })
        );
        assert_eq!(m.origin(4).unwrap().line, 4);
        assert_eq!(m.origin(5), None);
        assert_eq!(
            Origin {
                cell: Some(2),
                line: 7
            }
            .to_string(),
            "cell[2]:7"
        );
    }

    #[test]
    fn renders_syntax_errors_with_a_caret() {
        let r = render_syntax("expected identifier", "let a = 1;\nlet = 7q;", 2, 4);
        assert!(r.contains("--> cell:2:5"));
        assert!(r.contains("2 | let = 7q;"));
    }
}
