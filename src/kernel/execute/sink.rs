//! Where a cell's outputs go: its streams (stdout split into text and display
//! pieces, stderr as UTF-8), displays, its result and its error, published on IOPub
//! as they come, or dropped for the kernel's own runs (silent cells, user
//! expressions, savers, restores). Kept apart so that every job of the executor
//! writes outputs one way.

use crate::kernel::iopub::{Channel, Iopub, StreamName};
use crate::kernel::outputs::{self, Piece};
use crate::protocol::messages::{
    DisplayData, ErrorContent, ExecuteResult, MimeBundle, Transient, UpdateDisplayData,
};
use serde_json::{Map, Value};

/// Where a cell's outputs go: to IOPub, or (silent runs, user expressions) nowhere.
pub(super) struct Sink {
    pub(super) iopub: Option<Iopub>,
    count: u64,
    pub(super) stdout: outputs::Stdout,
    stderr: outputs::Utf8,
    pub(super) result: Option<MimeBundle>,
}

impl Sink {
    pub(super) fn new(iopub: Option<Iopub>, count: u64) -> Self {
        Sink {
            iopub,
            count,
            stdout: Default::default(),
            stderr: Default::default(),
            result: None,
        }
    }

    pub(super) fn pieces(&self, pieces: Vec<Piece>) {
        let Some(io) = &self.iopub else { return };
        for p in pieces {
            match p {
                Piece::Text(t) => io.stream(StreamName::Stdout, t),
                Piece::Display { mime, data } => {
                    let mut bundle = Map::new();
                    bundle.insert(mime, Value::String(data));
                    io.publish(
                        Channel::Shell,
                        &DisplayData {
                            data: bundle,
                            metadata: Map::new(),
                            transient: Transient::default(),
                        },
                    );
                }
            }
        }
    }

    /// Stdout text as it is (already read for displays).
    pub(super) fn text(&mut self, text: String) {
        let p = self.stdout.feed(b"");
        self.pieces(p);
        if let Some(io) = &self.iopub {
            io.stream(StreamName::Stdout, text);
        }
    }

    /// A display without an id.
    pub(super) fn show(&self, data: MimeBundle) {
        let Some(io) = &self.iopub else { return };
        io.publish(
            Channel::Shell,
            &DisplayData {
                data,
                metadata: Map::new(),
                transient: Transient::default(),
            },
        );
    }

    pub(super) fn stdout(&mut self, bytes: &[u8]) {
        let p = self.stdout.feed(bytes);
        self.pieces(p);
    }

    pub(super) fn stderr(&mut self, bytes: &[u8]) {
        let t = self.stderr.feed(bytes);
        if let Some(io) = &self.iopub {
            io.stream(StreamName::Stderr, t);
        }
    }

    pub(super) fn finish(&mut self) {
        let p = self.stdout.finish();
        self.pieces(p);
        let t = self.stderr.finish();
        if let Some(io) = &self.iopub {
            io.stream(StreamName::Stderr, t);
        }
    }

    pub(super) fn display(&self, id: String, update: bool, data: MimeBundle) {
        let Some(io) = &self.iopub else { return };
        let d = DisplayData {
            data,
            metadata: Map::new(),
            transient: Transient {
                display_id: Some(id),
            },
        };
        if update {
            io.publish(Channel::Shell, &UpdateDisplayData(d));
        } else {
            io.publish(Channel::Shell, &d);
        }
    }

    pub(super) fn result(&mut self, data: MimeBundle) {
        if let Some(io) = &self.iopub {
            io.publish(
                Channel::Shell,
                &ExecuteResult {
                    execution_count: self.count,
                    data: data.clone(),
                    metadata: Map::new(),
                },
            );
        }
        self.result = Some(data);
    }

    pub(super) fn error(&self, e: &ErrorContent) {
        if let Some(io) = &self.iopub {
            io.publish(Channel::Shell, e);
        }
    }
}
