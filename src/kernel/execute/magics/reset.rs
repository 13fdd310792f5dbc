//! `%reset` (evcxr's `:clear`): forget every item and variable.

use super::super::{CellError, Executor};
use super::spec::{Spec, Spelling};
use super::{Cx, Magic, Then};

#[derive(Debug, Clone, PartialEq)]
pub struct Reset;

pub const SPEC: Spec = Spec {
    // evcxr's `:clear` clears the session's state, as `%reset` does.
    names: &["reset", "clear"],
    spelling: Spelling::Line,
    usage: &["%reset, %clear"],
    help: &["forget every item and variable (a fresh runner)"],
    read: |_| Ok(Magic::Reset(Reset)),
};

impl Reset {
    /// A fresh runner, no items, no variables, no snapshots.
    pub(super) async fn apply<'a>(
        self,
        ex: &mut Executor,
        cx: &mut Cx<'_>,
    ) -> Result<Then<'a>, CellError> {
        ex.saving = None;
        ex.tier_up = None;
        let dropped = ex.drop_background();
        if let Some(r) = ex.runner.take() {
            r.kill().await;
        }
        let dir = ex.snapshots.path();
        crate::exec::savers::kill(dir);
        // Killed savers are gone before their files are: none renames one back.
        crate::exec::savers::wait(dir, std::time::Duration::from_secs(2)).await;
        // Their types name layers that are gone now.
        ex.engine_vars.clear();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if let Some(s) = &mut ex.session {
            s.clear()
                .await
                .map_err(|e| CellError::Reset(e.to_string()))?;
        }
        cx.sink
            .stdout(b"Session reset: every item and variable is gone.\n");
        if dropped > 0 {
            cx.sink.stdout(
                format!("{dropped} background run(s) went with them (%pending is empty).\n")
                    .as_bytes(),
            );
        }
        Ok(Then::Rest)
    }
}
