//! How a background run shows: the display under the cell that started it (its
//! phase, time, progress and the newest lines of its output; at the end its table),
//! `%pending`'s table, and `%wait`'s replay of everything it kept.

use super::state::{End, Phase, State};
use super::Sink;
use crate::kernel::iopub::{Iopub, StreamName};
use crate::protocol::messages::{DisplayData, MimeBundle, Transient, UpdateDisplayData};
use crate::protocol::Header;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};

/// Lines of output the display under the starting cell shows, and characters of each.
const TAIL_LINES: usize = 12;
const TAIL_WIDTH: usize = 200;

/// The display under the cell that started a run.
pub struct Display {
    io: Option<Iopub>,
    parent: Header,
    id: String,
    name: String,
    on: String,
    binds: bool,
    /// What was shown last: an unchanged display is not sent again.
    last: Mutex<String>,
}

impl Display {
    pub fn new(io: Option<Iopub>, parent: Header, name: &str, on: &str, binds: bool) -> Display {
        Display {
            io,
            parent,
            id: format!(
                "ferrocell-background-{name}-{}",
                uuid::Uuid::new_v4().simple()
            ),
            name: name.into(),
            on: on.into(),
            binds,
            last: Mutex::new(String::new()),
        }
    }

    /// The first showing, as an output of the starting cell.
    pub fn show_first(&self, s: &State, sink: &Sink) {
        let data = self.bundle(s);
        *self.last.lock().expect("last") = text_of(&data);
        sink.display(self.id.clone(), false, data);
    }

    /// Brings the display up to date, if it changed.
    pub fn refresh(&self, s: &State) {
        let Some(io) = &self.io else { return };
        let data = self.bundle(s);
        let text = text_of(&data);
        {
            let mut last = self.last.lock().expect("last");
            if *last == text {
                return;
            }
            *last = text;
        }
        io.publish_to(
            &self.parent,
            &UpdateDisplayData(DisplayData {
                data,
                metadata: Map::new(),
                transient: Transient {
                    display_id: Some(self.id.clone()),
                },
            }),
        );
    }

    fn bundle(&self, s: &State) -> MimeBundle {
        let name = &self.name;
        let how = if self.binds {
            format!("%wait {name} binds `{name}`")
        } else {
            format!("%wait {name} shows it")
        };
        let head = match (&s.phase, &s.end) {
            (Phase::Queued { behind }, _) => format!(
                "background run `{name}` on {}: queued behind {behind}, whose engines it needs ({how})",
                self.on
            ),
            // Whole seconds: the display changes at most once a second for the time.
            (Phase::Running, _) => format!(
                "background run `{name}` on {}: running, {} s ({how}; %pending lists runs)",
                self.on,
                s.took().as_secs()
            ),
            (_, Some(End::Done)) => format!(
                "background run `{name}` on {}: done in {:.2} s ({how})",
                self.on,
                s.took().as_secs_f64()
            ),
            (_, end) => format!(
                "background run `{name}` on {}: {} after {:.2} s (%wait {name} reports it)",
                self.on,
                end.as_ref().map_or("ended".into(), |e| e.describe()),
                s.took().as_secs_f64()
            ),
        };
        let mut text = head;
        let mut html = format!("<pre>{}", escape(&text));
        // While it runs: its progress and newest output. At its end: its table.
        let table = (s.phase == Phase::Ended)
            .then(|| s.displays.last().map(|(_, d)| d))
            .flatten();
        if let Some(t) = table {
            if let Some(p) = t.get("text/plain").and_then(Value::as_str) {
                text.push('\n');
                text.push_str(p);
            }
            html.push_str("</pre>");
            match t.get("text/html").and_then(Value::as_str) {
                Some(h) => html.push_str(h),
                None => html.push_str(&format!(
                    "<pre>{}</pre>",
                    escape(t.get("text/plain").and_then(Value::as_str).unwrap_or(""))
                )),
            }
        } else {
            let mut more = String::new();
            if let Some(p) = s.progress() {
                more.push('\n');
                more.push_str(&p);
            }
            let tail: String = s
                .tail(TAIL_LINES)
                .lines()
                .map(|l| match l.char_indices().nth(TAIL_WIDTH) {
                    Some((at, _)) => format!("{}…\n", &l[..at]),
                    None => format!("{l}\n"),
                })
                .collect();
            let tail = tail.trim_end();
            if !tail.is_empty() {
                more.push('\n');
                more.push_str(tail);
            }
            text.push_str(&more);
            html.push_str(&escape(&more));
            html.push_str("</pre>");
        }
        let mut data = Map::new();
        data.insert("text/plain".into(), Value::String(text));
        data.insert("text/html".into(), Value::String(html));
        data
    }
}

fn text_of(data: &MimeBundle) -> String {
    data.get("text/plain")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Shows everything a run kept as outputs of the `%wait` cell: its output, a note
/// of what was dropped, its displays (the table last) and its value.
pub fn replay(s: &State, sink: &mut Sink) {
    if s.dropped > 0 {
        sink.stderr(
            format!(
                "ferrocell: the first {} bytes of this background run's output were dropped (it keeps the last 1 MiB)\n",
                s.dropped
            )
            .as_bytes(),
        );
    }
    for (name, text) in &s.streams {
        match name {
            StreamName::Stdout => sink.text(text.clone()),
            StreamName::Stderr => sink.stderr(text.as_bytes()),
        }
    }
    sink.finish();
    for (_, d) in &s.displays {
        sink.show(d.clone());
    }
    if let Some(r) = &s.result {
        sink.show(r.clone());
    }
}

/// The phase of a run in words, for `%pending`.
fn phase_words(s: &State) -> String {
    match (&s.phase, &s.end) {
        (Phase::Queued { behind }, _) => format!("queued behind {behind}"),
        (Phase::Running, _) => "running".into(),
        (Phase::Ended, Some(End::Done)) => "done".into(),
        (Phase::Ended, Some(e)) => format!("failed: {}", e.describe()),
        (Phase::Ended, None) => "ended".into(),
    }
}

/// A line of `%pending`.
pub struct Row<'a> {
    pub name: &'a str,
    pub on: &'a str,
    pub state: Arc<Mutex<State>>,
}

/// `%pending`'s table: each run's name, where it runs, its phase, time and progress.
pub fn pending(rows: &[Row<'_>]) -> String {
    if rows.is_empty() {
        return "No background runs.\n".into();
    }
    let mut lines = vec![[
        "run".to_string(),
        "on".into(),
        "state".into(),
        "time".into(),
        "progress".into(),
    ]];
    for r in rows {
        let s = r.state.lock().expect("state");
        lines.push([
            r.name.to_string(),
            r.on.to_string(),
            phase_words(&s),
            format!("{:.1} s", s.took().as_secs_f64()),
            match s.phase {
                Phase::Ended => "-".into(),
                _ => s.progress().unwrap_or_else(|| "-".into()),
            },
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
