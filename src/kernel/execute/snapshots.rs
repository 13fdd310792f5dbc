//! The session's variables after each cell: settling the variable table by how far
//! the cell got, snapshotting what changed (savers forked by the runner), and
//! putting the variables back into a new runner after one died.

use super::runner::CellEnd;
use super::{CellError, Executor, Sink};
use crate::compile::BuiltCell;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::watch;

/// A saver handed to the runner whose end the kernel has not read yet: the runner
/// forks it while the kernel goes on with the next request (a new cell compiles
/// meanwhile), and its end is read before the runner is used again.
pub(super) struct PendingSaver {
    built: BuiltCell,
    names: Vec<String>,
}

/// How long a new runner waits for the snapshots the last one was writing.
pub(super) const SAVER_PATIENCE: Duration = Duration::from_secs(120);

/// What a cell's error says after a new runner took the variables back: which
/// came back, and which were lost with the old runner and why.
fn restore_notes(restored: &[String], lost: &[String]) -> Vec<String> {
    let mut notes = Vec::new();
    if !restored.is_empty() {
        notes.push(format!(
            "Variables restored as of the last successful cell: {}",
            restored.join(", ")
        ));
    }
    if !lost.is_empty() {
        notes.push(format!(
            "Variables lost with the runner: {}",
            lost.join("; ")
        ));
    }
    notes
}

/// Reads the restore cell's value, a `Vec<&str>` in Debug form: `["a", "b"]`.
fn parse_name_list(text: &str) -> Vec<String> {
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Executor {
    /// Brings the session's variable table up to date after a cell ran: what it kept
    /// on success; on failure, what went with the cell, or, when the runner died,
    /// what a new runner got back from the snapshots.
    pub(super) async fn settle_vars(
        &mut self,
        built: &BuiltCell,
        (r, end): (Result<(), CellError>, CellEnd),
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let runner_gone = self.runner.is_none();
        let Some(session) = self.session.as_mut() else {
            return r;
        };
        match r {
            Err(e) if runner_gone => {
                let (restored, lost) = self.restore_vars(irq).await;
                Err(e.noted(restore_notes(&restored, &lost)))
            }
            // Nothing was taken out of the store.
            Err(e) if end == CellEnd::NotRun => Err(e),
            Err(e) if matches!(end, CellEnd::Unwound { .. }) => {
                let kept = match end {
                    CellEnd::Unwound { kept } => kept,
                    _ => vec![],
                };
                // What the cell put back may have changed before it failed.
                self.unsaved
                    .extend(built.vars.kept_on_panic.iter().map(|(n, _)| n.clone()));
                self.unsaved.extend(kept.iter().cloned());
                let (lost, new) = session.settle_failure(&built.vars, &kept);
                let mut notes = Vec::new();
                if !new.is_empty() {
                    notes.push(format!("Kept from before the error: {}", new.join(", ")));
                }
                if !lost.is_empty() {
                    notes.push(format!("Variables lost with the cell: {}", lost.join(", ")));
                }
                Err(e.noted(notes))
            }
            // It ran to its end (perhaps interrupted, and it obeyed): all it kept is there.
            r => {
                session.commit_vars(&built.vars);
                self.unsaved
                    .extend(built.vars.kept.iter().map(|(n, _)| n.clone()));
                r
            }
        }
    }

    /// Snapshots the variables the last cell changed, once its reply is out (see
    /// [`crate::compile::Session::build_saver`]): the runner forks a saver that
    /// writes them in the background, and returns at once unless `wait`. A variable
    /// whose saver cannot run loses its snapshot, so that a crash reports it lost
    /// rather than restoring an old value.
    pub async fn save_snapshots(&mut self, wait: bool) {
        // (A runner that died there was replaced, with the variables restored.)
        let _ = self.finish_saving().await;
        if !wait && !self.after_each_cell {
            return;
        }
        let mut names = std::mem::take(&mut self.unsaved);
        names.sort();
        names.dedup();
        if names.is_empty() || self.runner.is_none() {
            return;
        }
        let Some(session) = self.session.as_ref() else {
            return;
        };
        // One saver per type, each given the names of that type.
        let mut by_type: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for n in names {
            if let Some(v) = session.vars().get(&n) {
                by_type.entry(v.ty.clone()).or_default().push(n);
            }
        }
        let mut irq = self.interrupts.clone();
        irq.borrow_and_update();
        let savers = by_type.len();
        for (i, (ty, names)) in by_type.into_iter().enumerate() {
            let session = self.session.as_mut().expect("session");
            let mut built = match session.build_saver(&ty).await {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("the saver for `{ty}` did not compile: {e}");
                    self.drop_snapshots(&names);
                    continue;
                }
            };
            let mode = if wait { "wait" } else { "background" };
            built.args = std::iter::once(mode.to_string())
                .chain(names.iter().cloned())
                .collect();
            // The last saver in the background is left to fork while the kernel
            // goes on; its end is read when the runner is next used.
            if !wait && i + 1 == savers {
                match self.start_cell(&built).await {
                    Ok(()) => self.saving = Some(PendingSaver { built, names }),
                    Err(e) => {
                        self.saver_failed(&names, e, &mut irq).await;
                    }
                }
                return;
            }
            if let ((Err(e), _), _) = self.run_internal(&built, &mut irq).await {
                self.saver_failed(&names, e, &mut irq).await;
                if self.runner.is_none() {
                    return;
                }
            }
        }
    }

    /// Reads the end of the saver the runner was handed last, if any: its fork has
    /// happened (or failed) once this returns. Interrupts are not the saver's: they
    /// are meant for the cell that waits here, which sees them itself. Returns the
    /// error to give that cell when the runner died meanwhile (its variables have
    /// been restored into a new runner, so the cell, compiled before, must not run).
    pub(super) async fn finish_saving(&mut self) -> Option<CellError> {
        let PendingSaver { built, names } = self.saving.take()?;
        let (_never, mut irq) = watch::channel(0u64);
        let mut sink = Sink::new(None, self.count);
        let mut end = CellEnd::NotRun;
        let e = self
            .pump(&built, None, &mut sink, &mut irq, &mut end)
            .await
            .err()?;
        let runner_died = matches!(e, CellError::RunnerDied(_));
        let (restored, lost) = Box::pin(self.saver_failed(&names, e, &mut irq)).await;
        runner_died.then(|| {
            CellError::RunnerDied(
                "the runner died after the last cell, before this one ran; run it again".into(),
            )
            .noted(restore_notes(&restored, &lost))
        })
    }

    /// A saver that could not run: its variables lose their snapshots (a crash
    /// reports them lost rather than restoring old values), and a runner that died
    /// meanwhile is replaced with the variables restored. Returns what was restored
    /// and what lost, if the runner was replaced.
    async fn saver_failed(
        &mut self,
        names: &[String],
        e: CellError,
        irq: &mut watch::Receiver<u64>,
    ) -> (Vec<String>, Vec<String>) {
        tracing::warn!("the snapshot of {names:?} failed: {e}");
        self.drop_snapshots(names);
        if self.runner.is_some() {
            return (vec![], vec![]);
        }
        let (restored, lost) = self.restore_vars(irq).await;
        tracing::warn!("the runner died while saving; restored {restored:?}, lost {lost:?}");
        (restored, lost)
    }

    fn drop_snapshots(&self, names: &[String]) {
        for n in names {
            let _ = std::fs::remove_file(self.snapshots.path().join(n));
        }
    }

    /// After the runner died: starts a new one and puts back every variable that has
    /// a snapshot. Returns the names restored, and each lost one with the reason.
    async fn restore_vars(&mut self, irq: &mut watch::Receiver<u64>) -> (Vec<String>, Vec<String>) {
        // Savers of the dead runner's last cells finish their snapshots first.
        let dir = self.snapshots.path().to_path_buf();
        if !crate::exec::savers::wait(&dir, SAVER_PATIENCE).await {
            tracing::warn!(
                "snapshot savers still running after {SAVER_PATIENCE:?}; restoring without them"
            );
            crate::exec::savers::kill(&dir);
            crate::exec::savers::wait(&dir, Duration::from_secs(2)).await;
        }
        crate::exec::savers::settle(&dir);
        let off = !self.after_each_cell;
        let Some(session) = self.session.as_mut() else {
            return (vec![], vec![]);
        };
        let mut lost = Vec::new();
        let names: Vec<(String, String)> = session
            .vars()
            .iter()
            .map(|(n, v)| (n.clone(), crate::compile::vars::display_type(&v.ty)))
            .collect();
        for (name, ty) in &names {
            if !session.has_snapshot(name) {
                let why = if off {
                    "snapshots are off (FERROCELL_SNAPSHOTS=off)".to_string()
                } else if crate::exec::savers::writing(&dir, name) {
                    "its snapshot was still being written".to_string()
                } else if let Some(failure) = crate::exec::savers::failure(&dir, name) {
                    format!("no snapshot: {failure}")
                } else if session.snapshots() {
                    format!("`{ty}` has no serde support")
                } else {
                    "snapshots were off (serde was not built yet)".to_string()
                };
                lost.push(format!("{name} ({why})"));
            }
        }
        let built = match session.build_restore(None).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                session.lose_all_vars();
                return (vec![], lost);
            }
            Err(e) => {
                tracing::warn!("the restore cell did not compile: {e}");
                let all = session.lose_all_vars();
                return (
                    vec![],
                    all.into_iter()
                        .map(|n| format!("{n} (its snapshot could not be read back)"))
                        .collect(),
                );
            }
        };
        let ((ran, _), sink) = self.run_internal(&built, irq).await;
        let restored: Vec<String> = match (ran, &sink.result) {
            (Ok(()), Some(r)) => r
                .get("text/plain")
                .and_then(Value::as_str)
                .map(parse_name_list)
                .unwrap_or_default(),
            _ => vec![],
        };
        let session = self.session.as_mut().expect("session");
        for (name, _) in &names {
            if !restored.contains(name) {
                session.forget_var(name);
                if session.has_snapshot(name) {
                    lost.push(format!("{name} (its snapshot could not be read back)"));
                }
            }
        }
        (restored, lost)
    }
}
