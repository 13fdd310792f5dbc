//! What a parallel run shows: a row per rank or item ([`Row`]), gathered into a
//! [`Table`] shown as text and HTML, and the [`Run`] a parallel cell returns (its
//! values, and the table it shows). Shared by threads, processes and cluster runs.

use crate::channel::tag::PARALLEL_ERROR;
use crate::display::{self, DisplayId};
use crate::json;

/// One row of the result: a rank's run, or an item's.
pub(crate) struct Row {
    /// The value as shown (`Debug`; empty for rows the table leaves out), or why
    /// there is none.
    pub shown: Result<String, String>,
    pub seconds: f64,
    pub rank: usize,
}

/// What a parallel run shows: a row per rank or item, in order. Not generic, so
/// that a cell compiles only the small closures that touch its values.
pub(crate) struct Table {
    /// Shown only if some row has a value (`--persist`: the engines' values come as
    /// text, and a body of `()` sends none).
    pub(crate) blank_is_unit: bool,
    pub(crate) rows: Vec<Row>,
    pub(crate) size: usize,
    /// What the ranks ran on: "threads" or "processes".
    pub(crate) on: &'static str,
    pub(crate) items: bool,
    pub(crate) elapsed: f64,
    pub(crate) progress: Option<DisplayId>,
}

/// The outcome of a parallel cell: the values in rank (or item) order, and the table.
pub struct Run<T> {
    pub(crate) values: Vec<Option<T>>,
    /// `None` in a worker process: the coordinator shows the run.
    pub(crate) table: Option<Table>,
}

/// Whether row `i` of `total` appears in the table (so its value is formatted).
pub fn is_shown(i: usize, total: usize) -> bool {
    total <= SHOWN_ROWS + SHOWN_TAIL + 1 || i < SHOWN_ROWS || total - i <= SHOWN_TAIL
}

/// Rows of a long `--each` table shown from the start, and from the end.
const SHOWN_ROWS: usize = 10;
const SHOWN_TAIL: usize = 3;

pub(crate) fn seconds(s: f64) -> String {
    match s {
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 1e-3 => format!("{:.1} ms", s * 1e3),
        s => format!("{:.0} µs", s * 1e6),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Table {
    /// Which rows the table shows: all, or the first and last few of a long run.
    fn shown_rows(&self) -> Vec<Option<usize>> {
        let n = self.rows.len();
        if n <= SHOWN_ROWS + SHOWN_TAIL + 1 {
            return (0..n).map(Some).collect();
        }
        let mut out: Vec<Option<usize>> = (0..SHOWN_ROWS).map(Some).collect();
        out.push(None);
        out.extend((n - SHOWN_TAIL..n).map(Some));
        out
    }

    pub(crate) fn summary(&self) -> String {
        let failed = self.rows.iter().filter(|r| r.shown.is_err()).count();
        let what = if self.items { "items" } else { "ranks" };
        let mut s = format!(
            "{} {what} on {} {} in {}",
            self.rows.len(),
            self.size,
            self.on,
            seconds(self.elapsed)
        );
        if failed > 0 {
            s.push_str(&format!("; {failed} failed"));
        }
        s
    }

    pub(crate) fn text_table(&self) -> String {
        let first = if self.items { "item" } else { "rank" };
        let cell = |r: &Row| match &r.shown {
            Ok(v) => v.clone(),
            Err(m) => m.clone(),
        };
        let width = self
            .rows
            .iter()
            .map(|r| cell(r).chars().count())
            .max()
            .unwrap_or(5)
            .clamp(5, 60);
        let mut out = if self.items {
            format!("{first:>6}  {:<width$}  {:>5}  time\n", "value", "rank")
        } else {
            format!("{first:>6}  {:<width$}  time\n", "value")
        };
        for i in self.shown_rows() {
            let Some(i) = i else {
                out.push_str(&format!("{:>6}  …\n", ""));
                continue;
            };
            let r = &self.rows[i];
            let v = cell(r);
            let idx = if self.items { i } else { r.rank };
            if self.items {
                out.push_str(&format!(
                    "{idx:>6}  {v:<width$}  {:>5}  {}\n",
                    r.rank,
                    seconds(r.seconds)
                ));
            } else {
                out.push_str(&format!("{idx:>6}  {v:<width$}  {}\n", seconds(r.seconds)));
            }
        }
        out.push_str(&self.summary());
        out
    }

    fn html_table(&self) -> String {
        let first = if self.items { "item" } else { "rank" };
        let mut out = format!("<table><thead><tr><th>{first}</th><th>value</th>");
        if self.items {
            out.push_str("<th>rank</th>");
        }
        out.push_str("<th>time</th></tr></thead><tbody>");
        for i in self.shown_rows() {
            let Some(i) = i else {
                out.push_str("<tr><td colspan=\"4\">…</td></tr>");
                continue;
            };
            let r = &self.rows[i];
            let idx = if self.items { i } else { r.rank };
            let v = match &r.shown {
                Ok(v) => html_escape(v),
                Err(m) => format!("<b>{}</b>", html_escape(m)),
            };
            out.push_str(&format!(
                "<tr><td>{idx}</td><td><pre style=\"margin:0;background:none\">{v}</pre></td>"
            ));
            if self.items {
                out.push_str(&format!("<td>{}</td>", r.rank));
            }
            out.push_str(&format!("<td>{}</td></tr>", seconds(r.seconds)));
        }
        out.push_str(&format!(
            "</tbody></table><p>{}</p>",
            html_escape(&self.summary())
        ));
        out
    }
}

impl<T> Run<T> {
    pub(crate) fn from_parts(values: Vec<Option<T>>, table: Table) -> Self {
        Run {
            values,
            table: Some(table),
        }
    }

    /// Shows no table when no row has a value (see `Table::blank_is_unit`).
    pub(crate) fn blank_is_unit(&mut self) {
        if let Some(t) = &mut self.table {
            t.blank_is_unit = true;
        }
    }

    /// What a worker process's cell gets: nothing to show or keep.
    pub(crate) fn in_worker() -> Self {
        Run {
            values: Vec::new(),
            table: None,
        }
    }

    /// Shows the table (in place of the progress display, if there was one) and
    /// returns the values in order. A body whose value is `()` shows only failures.
    /// Panics after showing, naming the failed ranks or items, if any failed; the
    /// kernel reports that panic as a `ParallelError`.
    pub fn show(self) -> Vec<T> {
        let Some(t) = &self.table else {
            return Vec::new();
        };
        let unit = std::mem::size_of::<T>() == 0 && std::any::type_name::<T>() == "()"
            || t.blank_is_unit
                && t.rows
                    .iter()
                    .all(|r| matches!(&r.shown, Ok(s) if s.is_empty()));
        let failed: Vec<String> = t
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let m = r.shown.as_ref().err()?;
                Some(if t.items {
                    format!("item {i} (rank {}): {m}", r.rank)
                } else {
                    format!("rank {}: {m}", r.rank)
                })
            })
            .collect();
        if !unit || !failed.is_empty() {
            let text = json::string(&t.text_table());
            let html = json::string(&t.html_table());
            let bundle = [("text/plain", text.as_str()), ("text/html", html.as_str())];
            match &t.progress {
                Some(id) => display::send_bundle(id, true, &bundle),
                None => display::send_bundle(&DisplayId::fresh(), false, &bundle),
            }
        } else if let Some(id) = &t.progress {
            display::update_display(id, "text/plain", t.summary());
        }
        if !failed.is_empty() {
            let more = failed.len().saturating_sub(5);
            let more = if more > 0 {
                format!("\n(and {more} more)")
            } else {
                String::new()
            };
            panic!(
                "{PARALLEL_ERROR}{} of {} {} failed\n{}{more}",
                failed.len(),
                t.rows.len(),
                if t.items { "items" } else { "ranks" },
                failed[..failed.len().min(5)].join("\n")
            );
        }
        self.values
            .into_iter()
            .map(|v| v.expect("every unit ran"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_tables_show_their_ends() {
        assert!(is_shown(0, 1000) && is_shown(999, 1000) && !is_shown(500, 1000));
        assert!((0..14).all(|i| is_shown(i, 14)));
    }
}
