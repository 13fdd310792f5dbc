//! `%wait`'s binding: the gathered values a background run saved become a session
//! variable, restored into the session's runner; if that fails, the session's
//! earlier variable of that name stands.

use super::super::{CellError, Executor};
use crate::compile::vars::Var;
use tokio::sync::watch;

impl Executor {
    /// Makes `name` a session variable from the snapshot in `dir`: the snapshot
    /// moves into the session's, and the session's runner restores it.
    pub(super) async fn bind_from(
        &mut self,
        dir: &std::path::Path,
        name: &str,
        var: &Var,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let lost = |why: String| CellError::Vars(format!("`{name}` could not be bound: {why}"));
        // A saver of the session's own `name` finishes before its file is replaced.
        let _ = self.finish_saving().await;
        let main = self.snapshots.path().to_path_buf();
        crate::exec::savers::written(&main, &[name], super::super::snapshots::SAVER_PATIENCE).await;
        // The session's own `name`, if it has one, stays until the new one is in.
        let backup = main.join(format!(".{name}.before-wait"));
        let had = std::fs::rename(main.join(name), &backup).is_ok();
        std::fs::rename(dir.join(name), main.join(name)).map_err(|e| lost(e.to_string()))?;
        self.unsaved.retain(|n| n != name);
        let session = self.session.as_mut().expect("a session ran the cell");
        let before = session.vars().get(name).cloned();
        session.commit_vars(&crate::compile::session::VarOutcome {
            kept: vec![(name.to_string(), var.clone())],
            ..Default::default()
        });
        let restored = match session.build_restore(Some(&[name.to_string()])).await {
            Ok(Some(built)) => {
                let ((ran, _), out) = self.run_internal(&built, irq).await;
                let back = out
                    .result
                    .as_ref()
                    .and_then(|r| r.get("text/plain"))
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|t| t.contains(&format!("\"{name}\"")));
                match (ran, back) {
                    (Ok(()), true) => Ok(()),
                    (Err(e), _) => Err(e.to_string()),
                    (Ok(()), false) => Err("its snapshot could not be read back".into()),
                }
            }
            Ok(None) => Err("its snapshot is gone".into()),
            Err(e) => Err(e.to_string()),
        };
        let Err(why) = restored else {
            let _ = std::fs::remove_file(&backup);
            return Ok(());
        };
        // The session's earlier `name` (still in its runner's store) stands.
        let _ = std::fs::remove_file(main.join(name));
        if let Some(s) = self.session.as_mut() {
            match before {
                Some(v) => s.commit_vars(&crate::compile::session::VarOutcome {
                    kept: vec![(name.to_string(), v)],
                    ..Default::default()
                }),
                None => s.forget_var(name),
            }
        }
        if had {
            let _ = std::fs::rename(&backup, main.join(name));
        }
        Err(lost(why))
    }
}
