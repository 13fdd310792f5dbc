//! A line of progress that updates in place, for the waits a person sees:
//! building the prelude on first use, building a `:dep`'s crates, starting a
//! cluster. It is one display (`display_data` with a display id, then
//! `update_display_data`), so a notebook shows one line that changes and is
//! finally replaced by what the wait ended in, instead of a scroll of lines.

use super::Sink;
use crate::kernel::iopub::{Channel, Iopub};
use crate::protocol::messages::{DisplayData, Transient};
use serde_json::{Map, Value};

/// One in-place progress display of a cell.
pub struct Progress {
    io: Option<Iopub>,
    id: String,
    shown: bool,
}

impl Progress {
    /// A progress display for `sink`'s cell; nothing is shown until [`Progress::show`].
    pub fn new(sink: &Sink, what: &str) -> Progress {
        Progress {
            io: sink.iopub.clone(),
            id: format!("{what}-{}", uuid::Uuid::new_v4().simple()),
            shown: false,
        }
    }

    /// Shows `text`, in place of what was shown before.
    pub fn show(&mut self, text: impl Into<String>) {
        let Some(io) = &self.io else { return };
        let mut data = Map::new();
        data.insert("text/plain".into(), Value::String(text.into()));
        let d = DisplayData {
            data,
            metadata: Map::new(),
            transient: Transient {
                display_id: Some(self.id.clone()),
            },
        };
        if self.shown {
            io.publish(
                Channel::Shell,
                &crate::protocol::messages::UpdateDisplayData(d),
            );
        } else {
            io.publish(Channel::Shell, &d);
        }
        self.shown = true;
    }

    /// Replaces what was shown with `text`, if anything was; says whether it was.
    pub fn finish(&mut self, text: impl Into<String>) -> bool {
        if self.shown {
            self.show(text);
        }
        self.shown
    }
}
