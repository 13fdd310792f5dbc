//! `%%parallel processes` and `cluster`: what such a cell needs before it runs,
//! the current snapshots of the session variables its body uses and the restore
//! library that loads them on a worker (values travel with serde).

use super::{CellError, Executor, Sink};
use std::time::Duration;
use tokio::sync::watch;

impl Executor {
    /// What a `%%parallel processes` cell needs before it runs: serde (variables and
    /// values travel with it), a current snapshot of each session variable the body
    /// uses, and the restore library that loads them on a worker. Returns the cell's
    /// run arguments: the restore library and entry point, then each variable with
    /// the version of its snapshot, so that a worker loads only what changed.
    pub(super) async fn processes_setup(
        &mut self,
        code: &str,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<Vec<String>, CellError> {
        self.session(irq, Some(sink)).await?;
        if self.base.is_some() {
            sink.stderr(b"ferrocell: %%parallel on processes and engines sends values with serde; waiting for its build (once per machine)\n");
        }
        self.take_base(Duration::from_secs(600), sink).await;
        // The files sent must be the values as they are now: the last cell's saver
        // is read to its end, and savers still writing these variables are waited for.
        let _ = self.finish_saving().await;
        let used = self.session.as_ref().expect("session").vars_used(code);
        let dir = self.snapshots.path().to_path_buf();
        let names: Vec<&str> = used.iter().map(|(n, _)| n.as_str()).collect();
        crate::exec::savers::written(&dir, &names, super::snapshots::SAVER_PATIENCE).await;
        let session = self.session.as_ref().expect("session");
        if !session.snapshots() {
            return Err(CellError::Parallel {
                summary: ("%%parallel on processes and engines sends values with serde, which this session could not build (see above); %%parallel threads needs no serde").into(),
                ranks: vec![],
            });
        }
        // Variables made before serde was ready have no snapshot yet.
        let missing: Vec<String> = used
            .iter()
            .filter(|(n, _)| !session.has_snapshot(n))
            .map(|(n, _)| n.clone())
            .collect();
        if !missing.is_empty() {
            self.unsaved.extend(missing);
            self.save_snapshots(true).await;
        }
        let portable = self.cluster.is_some();
        let session = self.session.as_mut().expect("session");
        session.set_portable(portable);
        let mut versions = Vec::new();
        let mut unsendable = Vec::new();
        for (name, ty) in &used {
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata(self.snapshots.path().join(name)) {
                // The type too: the same bytes may now mean another type.
                Ok(m) => versions.push(format!(
                    "{name}\t{}-{}.{}-{}-{ty}",
                    m.ino(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.size()
                )),
                Err(_) => unsendable.push(format!(
                    "`{name}` (`{}`)",
                    crate::compile::vars::display_type(ty)
                )),
            }
        }
        if !unsendable.is_empty() {
            return Err(CellError::Parallel {
                summary: format!(
                    "%%parallel cannot send {} to the worker processes or engines: its type has no serde support \
                     (derive serde's Serialize and Deserialize for it, or use %%parallel threads, which shares variables in place)",
                    unsendable.join(", ")
                ),
                ranks: vec![],
            });
        }
        let mut args = vec![String::new(), String::new()];
        if !used.is_empty() {
            let names: Vec<String> = used.iter().map(|(n, _)| n.clone()).collect();
            let restore = tokio::select! {
                r = session.build_restore(Some(&names)) => r,
                _ = irq.changed() => return Err(CellError::Interrupted(" while it was compiling".into())),
            };
            match restore {
                Ok(Some(b)) => {
                    args = vec![b.lib.display().to_string(), b.symbol.clone()];
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(CellError::Parallel {
                        summary: format!(
                            "the loader of the variables for the workers did not compile: {e}"
                        ),
                        ranks: vec![],
                    })
                }
            }
        }
        args.extend(versions);
        Ok(args)
    }
}
