//! `%vars` (IPython's `%who`): the session's variables with type and size,
//! measured in the runner where they live.

use super::super::{CellError, Executor};
use super::spec::{Spec, Spelling};
use super::{Cx, Magic, Then};
use crate::compile::session::Compiled;

#[derive(Debug, Clone, PartialEq)]
pub struct Vars;

pub const SPEC: Spec = Spec {
    names: &["vars", "who"],
    spelling: Spelling::Line,
    usage: &["%vars, %who"],
    help: &["the session's variables: name, type, size"],
    read: |_| Ok(Magic::Vars(Vars)),
};

/// A size in bytes as `%vars` shows it.
fn format_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

impl Vars {
    /// Lists the variables; the lines after `%vars` are not run.
    pub(super) async fn apply<'a>(
        self,
        ex: &mut Executor,
        cx: &mut Cx<'_>,
    ) -> Result<Then<'a>, CellError> {
        // A saver handed to the runner has forked (or failed) by now.
        let _ = ex.finish_saving().await;
        let dir = ex.snapshots.path();
        let snapshot = |name: &str| match std::fs::metadata(dir.join(name)) {
            Ok(m) => format_bytes(m.len()),
            Err(_) if crate::exec::savers::writing(dir, name) => "saving".to_string(),
            Err(_) => "none".to_string(),
        };
        let listing = ex
            .session
            .as_ref()
            .map(|s| crate::compile::vars::listing_code(s.vars(), snapshot));
        match listing {
            Some(code) if !code.is_empty() => run_listing(ex, &code, cx).await?,
            _ => cx.sink.stdout(b"No variables.\n"),
        }
        Ok(Then::Done)
    }
}

/// Runs the generated cell that prints the listing.
async fn run_listing(ex: &mut Executor, code: &str, cx: &mut Cx<'_>) -> Result<(), CellError> {
    let count = ex.count;
    let session = ex.session(cx.irq, Some(cx.sink)).await?;
    let built = match session.build(code, count).await {
        Ok(Compiled::Cell(b)) => b,
        Ok(Compiled::Empty) => return Ok(()),
        Err(e) => return Err(CellError::Vars(e.to_string())),
    };
    let r = ex.run_built(&built, None, cx.sink, cx.irq).await;
    cx.sink.finish();
    ex.settle_vars(&built, r, cx.irq).await
}
