//! What a background run has done so far: its phase, its output (bounded: the
//! newest kept), its displays (the progress line, then the table), and how it
//! ended. The run's task writes it; the display under the starting cell,
//! `%pending` and `%wait` read it.

use crate::exec::runner::PanicReport;
use crate::exec::CellEvent;
use crate::kernel::iopub::StreamName;
use crate::kernel::outputs::{self, Piece};
use crate::protocol::messages::MimeBundle;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The most output a background run keeps for `%wait` to show; beyond it the
/// oldest goes (a run that floods output does not fill the kernel's memory).
const KEPT_OUTPUT: usize = 1 << 20;
/// The most a display of a background run may hold; a larger one is kept as a note.
const KEPT_DISPLAY: usize = 1 << 20;
/// The most displays a background run keeps (the newest).
const KEPT_DISPLAYS: usize = 16;

/// Where a background run is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Waiting for engines that another run holds.
    Queued {
        behind: String,
    },
    Running,
    Ended,
}

/// How a background run ended.
#[derive(Debug, Clone)]
pub enum End {
    /// Its cell ran to its end.
    Done,
    /// It panicked: a parallel run's failed ranks, or the driver itself.
    Panic(PanicReport),
    /// An error reached the cell's `?`.
    Failed(String),
    /// Interrupted or cancelled; the detail says how.
    Interrupted(String),
    /// Its runner died.
    Died(String),
    /// It could not start (its runner, its variables, its cluster connection).
    NotStarted(String),
}

impl End {
    /// In words, for a note.
    pub fn describe(&self) -> String {
        match self {
            End::Done => "done".into(),
            End::Panic(p) => p
                .message
                .strip_prefix(crate::exec::frames::tag::PARALLEL_ERROR)
                .unwrap_or(&p.message)
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            End::Failed(m) => m.clone(),
            End::Interrupted(d) => format!("interrupted{d}"),
            End::Died(how) => format!("its runner was {how}"),
            End::NotStarted(why) => format!("it did not start: {why}"),
        }
    }
}

/// A background run as far as it got.
pub struct State {
    pub phase: Phase,
    /// When it was started, and when its cell began and ended.
    pub created: Instant,
    pub began: Option<Instant>,
    pub ended: Option<Instant>,
    /// Its output in order, stdout and stderr apart, the oldest dropped past
    /// [`KEPT_OUTPUT`].
    pub streams: VecDeque<(StreamName, String)>,
    kept_bytes: usize,
    /// Bytes of output dropped from the front.
    pub dropped: usize,
    /// Its displays by id, in the order they first came.
    pub displays: Vec<(String, MimeBundle)>,
    /// The cell's value, if it has one.
    pub result: Option<MimeBundle>,
    pub end: Option<End>,
    /// With `--out`: whether the gathered values were written for `%wait`.
    pub kept: Option<Result<(), String>>,
    stdout: outputs::Stdout,
    stderr: outputs::Utf8,
    fresh: u64,
}

impl State {
    pub fn new(phase: Phase) -> State {
        State {
            phase,
            created: Instant::now(),
            began: None,
            ended: None,
            streams: VecDeque::new(),
            kept_bytes: 0,
            dropped: 0,
            displays: Vec::new(),
            result: None,
            end: None,
            kept: None,
            stdout: Default::default(),
            stderr: Default::default(),
            fresh: 0,
        }
    }

    /// Its cell begins.
    pub fn start(&mut self) {
        self.phase = Phase::Running;
        self.began = Some(Instant::now());
    }

    /// How long its cell has run (or ran); while queued, how long it waited.
    pub fn took(&self) -> Duration {
        match (self.began, self.ended) {
            (Some(b), Some(e)) => e - b,
            (Some(b), None) => b.elapsed(),
            // Queued, or it never began: the time since it was started.
            (None, None) => self.created.elapsed(),
            (None, Some(e)) => e - self.created,
        }
    }

    pub fn finish(&mut self, end: End) {
        self.flush();
        self.phase = Phase::Ended;
        self.ended = Some(Instant::now());
        self.end = Some(end);
    }

    /// Takes what the decoders still hold (the cell ended).
    pub fn flush(&mut self) {
        let pieces = self.stdout.finish();
        self.pieces(pieces);
        let t = self.stderr.finish();
        self.text(StreamName::Stderr, t);
    }

    /// One event of the running cell.
    pub fn event(&mut self, ev: CellEvent) {
        match ev {
            CellEvent::Stdout(b) => {
                let pieces = self.stdout.feed(&b);
                self.pieces(pieces);
            }
            CellEvent::Stderr(b) => {
                let t = self.stderr.feed(&b);
                self.text(StreamName::Stderr, t);
            }
            CellEvent::Display { id, data, .. } => self.display(id, data),
            CellEvent::Result(data) => self.result = Some(bounded(data)),
            _ => {}
        }
    }

    fn pieces(&mut self, pieces: Vec<Piece>) {
        for p in pieces {
            match p {
                Piece::Text(t) => self.text(StreamName::Stdout, t),
                Piece::Display { mime, data } => {
                    self.fresh += 1;
                    let mut bundle = MimeBundle::new();
                    bundle.insert(mime, Value::String(data));
                    self.display(format!("stdout-{}", self.fresh), bundle);
                }
            }
        }
    }

    fn display(&mut self, id: String, data: MimeBundle) {
        let data = bounded(data);
        match self.displays.iter_mut().find(|(i, _)| *i == id) {
            Some((_, d)) => *d = data,
            None => {
                if self.displays.len() == KEPT_DISPLAYS {
                    self.displays.remove(0);
                }
                self.displays.push((id, data));
            }
        }
    }

    fn text(&mut self, name: StreamName, text: String) {
        if text.is_empty() {
            return;
        }
        self.kept_bytes += text.len();
        match self.streams.back_mut() {
            Some((n, t)) if *n == name => t.push_str(&text),
            _ => self.streams.push_back((name, text)),
        }
        while self.kept_bytes > KEPT_OUTPUT {
            let Some((_, front)) = self.streams.front_mut() else {
                break;
            };
            let over = self.kept_bytes - KEPT_OUTPUT;
            if front.len() <= over {
                let gone = front.len();
                self.streams.pop_front();
                self.kept_bytes -= gone;
                self.dropped += gone;
            } else {
                let mut cut = over;
                while !front.is_char_boundary(cut) {
                    cut += 1;
                }
                front.drain(..cut);
                self.kept_bytes -= cut;
                self.dropped += cut;
            }
        }
    }

    /// The last `n` lines of its output, stdout and stderr together.
    pub fn tail(&self, n: usize) -> String {
        let mut lines: Vec<&str> = Vec::new();
        for (_, t) in self.streams.iter().rev() {
            for l in t.lines().rev() {
                if lines.len() == n {
                    break;
                }
                lines.push(l);
            }
        }
        lines.reverse();
        lines.join("\n")
    }

    /// The progress the run shows (the last line of its newest display's text).
    pub fn progress(&self) -> Option<String> {
        self.displays
            .iter()
            .rev()
            .find_map(|(_, d)| d.get("text/plain")?.as_str()?.lines().last())
            .map(String::from)
    }
}

/// A display's data, or a note in its place when it is too large to keep.
fn bounded(data: MimeBundle) -> MimeBundle {
    let size: usize = data.values().map(|v| v.as_str().map_or(64, str::len)).sum();
    if size <= KEPT_DISPLAY {
        return data;
    }
    let mut note = MimeBundle::new();
    note.insert(
        "text/plain".into(),
        Value::String(format!(
            "(a display of {size} bytes, more than a background run keeps)"
        )),
    );
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_bound_drops_the_oldest() {
        let mut s = State::new(Phase::Running);
        let line = "x".repeat(1023) + "\n";
        for _ in 0..2048 {
            s.event(CellEvent::Stdout(line.clone().into_bytes()));
        }
        s.event(CellEvent::Stderr(b"last\n".to_vec()));
        s.flush();
        let kept: usize = s.streams.iter().map(|(_, t)| t.len()).sum();
        assert!(kept <= KEPT_OUTPUT, "{kept}");
        assert_eq!(kept + s.dropped, 2048 * 1024 + 5);
        assert_eq!(s.tail(1), "last");
        assert_eq!(s.streams.back().map(|(n, _)| *n), Some(StreamName::Stderr));
    }

    #[test]
    fn displays_are_updated_in_place() {
        let mut s = State::new(Phase::Running);
        let bundle = |t: &str| {
            let mut b = MimeBundle::new();
            b.insert("text/plain".into(), Value::String(t.into()));
            b
        };
        s.event(CellEvent::Display {
            id: "p".into(),
            update: false,
            data: bundle("1 of 4 ranks done"),
        });
        s.event(CellEvent::Display {
            id: "p".into(),
            update: true,
            data: bundle("3 of 4 ranks done"),
        });
        assert_eq!(s.displays.len(), 1);
        assert_eq!(s.progress().as_deref(), Some("3 of 4 ranks done"));
    }
}
