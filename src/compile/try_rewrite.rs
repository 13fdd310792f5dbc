//! `?` in a cell, written out by the kernel so that a failing `?` can keep the
//! variables the cell bound before it (see [`emit`]).

use super::cell::{Snippet, TrySite};
use super::diagnostics::{Origin, SourceMap};

/// Where a `?` site opens (the start of the expression it applies to) or closes
/// (the `?` itself), in the cell's (line, column).
struct Event {
    at: (usize, usize),
    opens: bool,
    /// The site's `?`: of two sites opening at one place, the outer one's is later.
    question: (usize, usize),
    /// The site's index in [`crate::compile::cell::ParsedCell::try_sites`].
    site: usize,
}

/// Appends a statement (or the value) of the cell with each of its `?`s written
/// out: `(match TryBranch::branch(EXPR) { Ok(v) => v, Err(e) => { let e =
/// From::from(e); put the bindings made so far in the store and name them
/// (`kept_after_error`); return Err(e) } })`. The glue goes on lines of its own and the
/// user's text keeps its columns, so rustc's errors still point at the user's code.
/// `staged(site)` gives the bindings that `?` keeps, each with its put statement.
pub fn emit(
    m: &mut SourceMap,
    snippet: &Snippet,
    sites: &[TrySite],
    statement: usize,
    staged: &dyn Fn(usize) -> Vec<(String, String)>,
) {
    let origin = |line| Origin { cell: None, line };
    let sites: Vec<(usize, &TrySite)> = sites
        .iter()
        .enumerate()
        .filter(|(_, t)| t.statement == statement)
        .collect();
    if sites.is_empty() {
        m.code(&snippet.text, snippet.column, origin(snippet.line));
        return;
    }
    // Opens of the outer `?` (the later one) first.
    let mut events: Vec<Event> = Vec::new();
    for (index, t) in &sites {
        for (at, opens) in [(t.expr, true), (t.question, false)] {
            events.push(Event {
                at,
                opens,
                question: t.question,
                site: *index,
            });
        }
    }
    events.sort_by(|a, b| {
        a.at.cmp(&b.at)
            .then(a.opens.cmp(&b.opens))
            .then(b.question.cmp(&a.question))
    });
    let mut chars = Vec::new();
    let (mut line, mut col) = (snippet.line, snippet.column);
    for ch in snippet.text.chars() {
        chars.push(((line, col), ch));
        if ch == '\n' {
            line += 1;
            col = 0;
        } else {
            col += 1;
        }
    }
    let fits = sites.iter().all(|(_, t)| {
        chars.iter().any(|(p, ch)| *p == t.question && *ch == '?')
            && chars.iter().any(|(p, _)| *p == t.expr)
    });
    if !fits {
        m.code(&snippet.text, snippet.column, origin(snippet.line));
        return;
    }
    let mut piece = String::new();
    let mut start = (snippet.line, snippet.column);
    let flush = |m: &mut SourceMap, piece: &mut String, start: (usize, usize)| {
        if !piece.trim().is_empty() {
            m.code(piece, start.1, origin(start.0));
        }
        piece.clear();
    };
    let mut next = 0;
    for (i, &(pos, ch)) in chars.iter().enumerate() {
        let mut skip = false;
        while next < events.len() && events[next].at == pos {
            flush(m, &mut piece, start);
            if events[next].opens {
                // In parentheses: a `match` that starts a statement would end it.
                m.glue("(match ::ferrocell::__runner::TryBranch::branch(");
            } else {
                // A type error on the value the `?` gives is rustc's here: tell it at
                // the `?`.
                let (line, column) = events[next].question;
                m.anchored(
                    ") { ::std::result::Result::Ok(__fc_ok) => __fc_ok, ::std::result::Result::Err(__fc_err) => {",
                    origin(line),
                    column + 1,
                );
                m.tagged(
                    "let __fc_err = ::std::convert::From::from(__fc_err);",
                    "try:convert",
                );
                let site = events[next].site;
                let keep = staged(site);
                for (var, put) in &keep {
                    m.tagged(put, &format!("stage:{site}:{var}"));
                }
                if !keep.is_empty() {
                    let names: Vec<String> = keep.iter().map(|(n, _)| format!("{n:?}")).collect();
                    m.glue(&format!(
                        "::ferrocell::__runner::kept_after_error(&[{}]);",
                        names.join(", ")
                    ));
                }
                m.glue("return ::std::result::Result::Err(__fc_err);\n} })");
                skip = true;
            }
            next += 1;
        }
        if piece.is_empty() {
            start = pos;
        }
        if skip {
            // The `?` itself: what follows starts a piece of its own.
            if let Some(&(after, _)) = chars.get(i + 1) {
                start = after;
            }
            continue;
        }
        if piece.is_empty() && ch == '\n' {
            // A line break right after glue: the next line starts the piece.
            if let Some(&(after, _)) = chars.get(i + 1) {
                start = after;
            }
            continue;
        }
        piece.push(ch);
    }
    flush(m, &mut piece, start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::cell;

    #[test]
    fn writes_out_each_question_mark_keeping_the_users_columns() {
        let parsed = cell::parse("let a = 1;\nlet n: i32 = f(g(a)?)?;").unwrap();
        assert_eq!(parsed.try_sites.len(), 2);
        let mut m = SourceMap::default();
        let keep = |site: usize| {
            let var = format!("kept{site}");
            let put = format!("::ferrocell::__vars::put::<i32>({var:?}, {var});");
            vec![(var, put)]
        };
        emit(&mut m, &parsed.statements[1], &parsed.try_sites, 1, &keep);
        // The user's text is all there, at its own columns, and no `?` is left.
        assert!(!m.text.contains('?'), "{}", m.text);
        let lines: Vec<&str> = m.text.lines().collect();
        assert!(lines.contains(&"let n: i32 = "), "{}", m.text);
        assert!(lines.contains(&"             f("), "{}", m.text);
        assert!(lines.contains(&"               g(a)"), "{}", m.text);
        // The outer `?` (site 0, the later one) opens first; each keeps its own.
        assert_eq!(m.text.matches("TryBranch::branch(").count(), 2);
        let (inner, outer) = (
            m.text.find("\"kept1\"").unwrap(),
            m.text.find("\"kept0\"").unwrap(),
        );
        assert!(inner < outer, "{}", m.text);
        // Every user line maps back to cell line 2.
        for (i, line) in lines.iter().enumerate() {
            if line.contains("g(a") || line.starts_with("let n") {
                assert_eq!(m.origin(i + 1).map(|o| o.line), Some(2), "{line}");
            }
        }
    }
}
