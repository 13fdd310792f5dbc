//! Turning a runner's panic report into the cell's error: a `%%parallel` failure
//! as a `ParallelError`, any other panic with its place in the user's cell (or an
//! earlier cell's item) rather than in the generated source.

use super::{CellError, Executor};
use crate::compile::BuiltCell;
use crate::exec::runner::PanicReport;

impl Executor {
    pub(super) fn panic_error(&self, built: &BuiltCell, p: &PanicReport) -> CellError {
        if let Some(failed) = p
            .message
            .strip_prefix(crate::exec::frames::tag::PARALLEL_ERROR)
        {
            let mut lines = failed.lines();
            let summary = lines.next().unwrap_or("").to_string();
            return CellError::Parallel {
                summary,
                ranks: lines.map(String::from).collect(),
            };
        }
        let place = match (&p.file, p.line) {
            (Some(file), Some(line)) => {
                let map = if std::path::Path::new(file) == built.source_path {
                    Some(&built.map)
                } else {
                    self.session.as_ref().and_then(|s| {
                        s.source_maps()
                            .find(|(path, _)| std::path::Path::new(file) == path.as_path())
                            .map(|(_, m)| m)
                    })
                };
                match map.and_then(|m| Some((m.origin(line)?, m))) {
                    Some((o, m)) => format!("{o}:{}", m.user_column(line, p.column.unwrap_or(1))),
                    None => format!("{file}:{line}:{}", p.column.unwrap_or(1)),
                }
            }
            _ => "an unknown place".into(),
        };
        let thread = p.thread.as_deref().unwrap_or("cell");
        CellError::Panic {
            message: p.message.clone(),
            at: format!("thread '{thread}' panicked at {place}:"),
        }
    }
}
