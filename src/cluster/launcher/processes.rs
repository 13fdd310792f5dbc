//! The processes a launcher started: adding them, telling which ended and why
//! while the engines are awaited, and stopping them with the cluster (cancelling
//! batch jobs, killing what outlives the grace).

use super::{LaunchError, Launched, Process, Recipe};
use std::time::Duration;

impl Launched {
    pub(super) fn add(&mut self, recipe: Recipe) -> Result<(), LaunchError> {
        let child = recipe.spawn()?;
        let mut p = self.processes.lock().expect("processes");
        p.list.push(Process {
            recipe,
            pid: child.id(),
            child,
            ended: None,
            restarts: Vec::new(),
        });
        Ok(())
    }

    /// Processes that have ended, with how and their last log lines.
    pub fn failed_engines(&mut self) -> Vec<String> {
        let mut p = self.processes.lock().expect("processes");
        p.list
            .iter_mut()
            .filter_map(|proc| {
                let status = proc.child.try_wait().ok().flatten()?;
                Some(format!(
                    "{} {}:\n{}",
                    proc.recipe.label,
                    crate::exec::runner::describe_exit(status),
                    proc.recipe.tails(5)
                ))
            })
            .collect()
    }

    /// Waits for every process to end, killing what is left after `grace`, and
    /// deletes the batch jobs it submitted.
    pub async fn wait_or_kill(&mut self, grace: Duration) {
        self.stop_supervising();
        let list = std::mem::take(&mut self.processes.lock().expect("processes").list);
        let mut list = list;
        let deadline = tokio::time::Instant::now() + grace;
        for proc in list.iter_mut() {
            if tokio::time::timeout_at(deadline, proc.child.wait())
                .await
                .is_err()
            {
                let _ = proc.child.start_kill();
                let _ = proc.child.wait().await;
            }
            if let Some(job) = &proc.recipe.batch {
                job.delete().await;
            }
            if let Some(log) = &proc.recipe.more_log {
                let _ = std::fs::remove_file(log);
            }
        }
        if tokio::time::timeout_at(deadline, self.controller.wait())
            .await
            .is_err()
        {
            let _ = self.controller.start_kill();
            let _ = self.controller.wait().await;
        }
    }
}

impl Launched {
    /// Where the launcher stands while engines are awaited, when there is more to
    /// say than a count: a batch job's state, say.
    pub async fn waiting_on(&self) -> Option<String> {
        let job = {
            let p = self.processes.lock().expect("processes");
            p.list.iter().find_map(|proc| proc.recipe.batch.clone())
        }?;
        job.state().await
    }
}

impl Drop for Launched {
    /// The supervisor holds the processes; without it they go (`kill_on_drop`),
    /// and their batch jobs are deleted. The directory goes with `dir`.
    fn drop(&mut self) {
        crate::cluster::leftovers::forget(self.dir.path());
        // A start that failed half-way drops its processes without `wait_or_kill`:
        // the batch jobs they submitted must not start later, unused.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        if let Ok(p) = self.processes.lock() {
            for proc in &p.list {
                if let Some(job) = &proc.recipe.batch {
                    job.delete_blocking(deadline);
                }
            }
        }
        if let Some(s) = self.supervisor.take() {
            s.abort();
        }
    }
}
