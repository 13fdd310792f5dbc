//! `:dep` lines: building the cell's crates with cargo (its progress shown in place,
//! interruptible), attaching them to the session, or listing them (`:dep` alone).
//! The crate set and its build live in `compile::deps`; this is the executor's side.

use super::warmup::build_base;
use super::{progress, CellError, Executor, Sink};
use crate::compile::deps;
use crate::kernel::iopub::StreamName;
use std::time::Duration;
use tokio::sync::watch;

impl Executor {
    /// Builds the crates of the cell's `:dep` lines (cargo's progress shows as it
    /// goes) and makes them usable from the cell's code on. `:dep` alone lists them.
    pub(super) async fn add_deps(
        &mut self,
        lines: &[&str],
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        self.session(irq, Some(sink)).await?;
        let lines: Vec<&str> = lines.iter().copied().filter(|l| !l.is_empty()).collect();
        if lines.is_empty() {
            self.take_base(Duration::from_secs(600), sink).await;
            let listing = match self.session.as_ref().and_then(|s| s.deps()) {
                Some(d) => d
                    .externs
                    .iter()
                    .filter(|e| e.name != deps::SNAPSHOT_CODEC)
                    .map(|e| format!("{}  {}\n", e.name, e.path.display()))
                    .collect(),
                None => "No crates.\n".to_string(),
            };
            sink.stdout(listing.as_bytes());
            return Ok(());
        }
        // The set built below includes serde: a serde build still running in the
        // background is stopped (what it finished stays in cargo's target directory)
        // so that one cargo builds everything, in parallel, instead of two in turn.
        let mut set = self.dep_set.clone();
        let cwd = std::env::current_dir().unwrap_or_default();
        for line in &lines {
            let dep = deps::parse_line(line, &cwd).map_err(|e| CellError::Dep(e.to_string()))?;
            set.add(dep, &cwd);
        }
        let took_over = self.base.take().map(|base| base.abort()).is_some();
        let started = std::time::Instant::now();
        let io = sink.iopub.clone();
        // Cargo's lines go to stderr as they come; how far it is, in one line
        // updated in place.
        let shown = std::sync::Mutex::new(progress::Progress::new(sink, "crates"));
        let progress = |line: &str| {
            if let Some((done, all, now)) = deps::building(line) {
                let now = if now.is_empty() {
                    String::new()
                } else {
                    format!(": {now}")
                };
                shown
                    .lock()
                    .expect("progress")
                    .show(format!("building crates: {done} of {all} done{now}"));
            } else if let Some(io) = &io {
                io.stream(StreamName::Stderr, format!("{line}\n"));
            }
        };
        let session = self.session.as_mut().expect("session");
        let loaded = session.deps().cloned();
        let built = tokio::select! {
            r = deps::build(&set, session.toolchain(), &self.cache, loaded.as_ref(), &progress) => Some(r),
            _ = irq.changed() => None,
        };
        let failure = match built {
            Some(Ok(b)) => match session.attach_deps(b).await {
                Ok(()) => None,
                Err(e) => Some(CellError::Dep(e.to_string())),
            },
            Some(Err(e)) => Some(CellError::Dep(e.to_string())),
            None => Some(CellError::Interrupted(
                " while its crates were being built".into(),
            )),
        };
        if let Some(e) = failure {
            shown
                .lock()
                .expect("progress")
                .finish(format!("building crates stopped: {}", e.ename()));
            // The serde build this one took over is still wanted.
            if took_over && session.deps().is_none() {
                self.base = Some(build_base(session.toolchain().clone(), self.cache.clone()));
            }
            return Err(e);
        }
        self.dep_set = set;
        self.base = None;
        let names: Vec<String> = lines
            .iter()
            .filter_map(|l| deps::parse_line(l, &cwd).ok().map(|d| d.name))
            .collect();
        let ready = format!(
            "ferrocell: {} ready ({:.1} s)",
            names.join(", "),
            started.elapsed().as_secs_f64()
        );
        shown.lock().expect("progress").finish(ready.clone());
        sink.stderr(format!("{ready}\n").as_bytes());
        Ok(())
    }
}
