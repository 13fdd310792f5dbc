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
    /// The file rustc compiles this text from: spans in other files (std's macros,
    /// other crates) are not the cell's, whatever their line numbers.
    file: Option<String>,
    /// Text the kernel inserted into the user's lines: generated line, 0-based
    /// column, length (see [`SourceMap::user_column`]).
    inserted: Vec<(usize, usize, usize)>,
    /// Glue lines that stand for a place in the user's code (the value a `?` gives):
    /// generated line, that place, its 1-based column.
    anchors: Vec<(usize, Origin, usize)>,
    /// The lines of the cell being built, quoted in errors as the user wrote them
    /// (a line holding two statements is two generated lines).
    cell_lines: Vec<String>,
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

    /// The tag of the generated line a span of rustc's lies on, if it lies in this
    /// file (a span in std's macros may have the same line number).
    pub fn tag_at(&self, span: &DiagnosticSpan) -> Option<&str> {
        if self.file.as_ref().is_some_and(|f| *f != span.file_name) {
            return None;
        }
        self.tag(span.line_start)
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

    /// Records text inserted into the lines of the piece appended last (see
    /// [`crate::compile::cell::Snippet::inserted`]).
    pub fn mark_inserted(&mut self, inserted: &[(usize, usize, usize)]) {
        let Some(first) = self.pieces.last().map(|p| p.gen_line) else {
            return;
        };
        self.inserted.extend(
            inserted
                .iter()
                .map(|&(line, column, len)| (first + line, column, len)),
        );
    }

    /// A 1-based column of a generated line as the user wrote it: inserted text
    /// before it does not count.
    pub fn user_column(&self, gen_line: usize, column: usize) -> usize {
        let shift: usize = self
            .inserted
            .iter()
            .filter(|&&(l, c, len)| l == gen_line && c + len < column)
            .map(|&(_, _, len)| len)
            .sum();
        column.saturating_sub(shift).max(1)
    }

    /// A generated line's text as the user wrote it.
    fn user_text(&self, gen_line: usize, text: &str) -> String {
        let cut: Vec<(usize, usize)> = self
            .inserted
            .iter()
            .filter(|&&(l, _, _)| l == gen_line)
            .map(|&(_, c, len)| (c, c + len))
            .collect();
        text.chars()
            .enumerate()
            .filter(|(i, _)| !cut.iter().any(|(from, to)| (*from..*to).contains(i)))
            .map(|(_, ch)| ch)
            .collect()
    }

    /// Appends a glue line whose errors belong to a place in the user's code.
    pub fn anchored(&mut self, line: &str, origin: Origin, column: usize) {
        self.glue(line);
        self.anchors.push((self.line, origin, column));
    }

    /// Keeps the cell's code, to quote its lines in errors.
    pub fn set_cell_source(&mut self, code: &str) {
        self.cell_lines = code.lines().map(String::from).collect();
    }

    /// Names the file this text is compiled from (see [`SourceMap::file`]).
    pub fn set_file(&mut self, path: &std::path::Path) {
        self.file = Some(path.display().to_string());
    }

    /// The span itself when it lies in the user's code, or else the innermost macro
    /// call in the user's code that it was expanded from (as rustc shows a crate's).
    fn user_span<'a>(&self, span: &'a DiagnosticSpan) -> Option<&'a DiagnosticSpan> {
        let mut s = span;
        loop {
            let this_file = self.file.as_ref().is_none_or(|f| *f == s.file_name);
            if this_file && self.origin(s.line_start).is_some() {
                return Some(s);
            }
            s = &s.expansion.as_ref()?.span;
        }
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
        if child.spans.iter().any(|s| map.user_span(s).is_some()) {
            out.push_str(&format!("{}: {}\n", child.level, child.message));
            render_spans(&child.spans, map, &mut out);
        } else if let Some(var) = immutable_take(child, map) {
            // rustc's "consider changing this to be mutable" points at the line
            // that takes the variable from the session, which the user never wrote.
            out.push_str(&format!(
                "  = help: `{var}` was declared without `mut` in an earlier cell; \
                 to change it, rebind it first: `let mut {var} = {var};`\n"
            ));
        } else {
            out.push_str(&format!("  = {}: {}\n", child.level, child.message));
        }
    }
    out
}

/// The variable whose generated take line a "make it mutable" help points at.
fn immutable_take<'a>(child: &Diagnostic, map: &'a SourceMap) -> Option<&'a str> {
    if !child.message.contains("mutable") {
        return None;
    }
    child
        .spans
        .iter()
        .find_map(|s| map.tag_at(s)?.strip_prefix("take-imm:"))
}

fn render_spans(spans_in: &[DiagnosticSpan], map: &SourceMap, out: &mut String) {
    // Each span where the user can see it; a span inside a macro's expansion keeps
    // its label and weight but is shown at the macro call.
    let mut spans: Vec<(&DiagnosticSpan, &DiagnosticSpan)> = spans_in
        .iter()
        .filter_map(|s| Some((s, map.user_span(s)?)))
        .collect();
    spans.sort_by_key(|(s, at)| (!s.is_primary, at.line_start));
    spans.dedup_by(|a, b| a.1.line_start == b.1.line_start && a.1.column_start == b.1.column_start);
    let Some((_, first)) = spans.first() else {
        // Only glue: an anchored line still tells where.
        let anchor = spans_in.iter().find_map(|s| {
            let this_file = map.file.as_ref().is_none_or(|f| *f == s.file_name);
            let (_, origin, column) = map
                .anchors
                .iter()
                .find(|(l, _, _)| this_file && *l == s.line_start)?;
            Some((*origin, *column, s.label.clone()))
        });
        if let Some((origin, column, label)) = anchor {
            let label = label.map(|l| format!(": {l}")).unwrap_or_default();
            out.push_str(&format!(
                "  --> {origin}:{column} (the value of this `?`{label})\n"
            ));
        }
        return;
    };
    let origin = map.origin(first.line_start).expect("filtered");
    let column = map.user_column(first.line_start, first.column_start);
    out.push_str(&format!("  --> {origin}:{column}\n"));
    let mut lines: Vec<usize> = spans.iter().map(|(_, at)| at.line_start).collect();
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
        let on_line: Vec<&(&DiagnosticSpan, &DiagnosticSpan)> = spans
            .iter()
            .filter(|(_, at)| at.line_start == line)
            .collect();
        let Some(text) = on_line.iter().find_map(|(_, at)| at.text.first()) else {
            continue;
        };
        let shown = match (
            o.cell,
            o.line.checked_sub(1).and_then(|l| map.cell_lines.get(l)),
        ) {
            (None, Some(written)) => written.clone(),
            _ => map.user_text(line, &text.text),
        };
        out.push_str(&format!("{:>width$} | {}\n", o.line, shown.trim_end()));
        for (s, at) in on_line {
            let Some(t) = at.text.first() else { continue };
            let (from, to) = (
                map.user_column(line, t.highlight_start),
                map.user_column(line, t.highlight_end),
            );
            let start = from - 1;
            let len = to.saturating_sub(from).max(1);
            let mark = if s.is_primary { "^" } else { "-" };
            let label = match (s.label.as_deref(), std::ptr::eq(*s, *at)) {
                (Some(l), true) => l.to_string(),
                (Some(l), false) => format!("{l} (in this macro invocation)"),
                (None, true) => String::new(),
                (None, false) => "in this macro invocation".to_string(),
            };
            out.push_str(&format!(
                "{pad} | {}{} {}\n",
                " ".repeat(start),
                mark.repeat(len),
                label
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
