//! The supervisor (`%cluster start --restart`): a process that ends is started
//! again as it was, unless it keeps ending; an engine the controller lost is killed
//! so that it is started again.

use super::Launched;
use std::time::{Duration, Instant};

/// How often the supervisor looks for processes that ended.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);
/// A recipe that ends this many times within [`RESTART_WINDOW`] is not run again:
/// it is failing, not being unlucky.
const RESTART_LIMIT: usize = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

impl Launched {
    /// From now on, a process that ends is started again as it was (`--restart`),
    /// unless it keeps ending.
    pub fn supervise(&mut self) {
        let processes = self.processes.clone();
        self.supervisor = Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(SUPERVISE_EVERY);
            loop {
                every.tick().await;
                let mut p = processes.lock().expect("processes");
                if p.stopping {
                    return;
                }
                let mut events = Vec::new();
                for proc in p.list.iter_mut() {
                    if proc.ended.is_some() {
                        continue;
                    }
                    let Ok(Some(status)) = proc.child.try_wait() else {
                        continue;
                    };
                    let how = format!(
                        "(pid {}) {}",
                        proc.pid.unwrap_or(0),
                        crate::exec::runner::describe_exit(status)
                    );
                    proc.restarts.retain(|at| at.elapsed() < RESTART_WINDOW);
                    if proc.restarts.len() >= RESTART_LIMIT {
                        proc.ended = Some(status);
                        events.push(format!(
                            "{} {how}; not started again: it was {RESTART_LIMIT} times within {} s already:\n{}",
                            proc.recipe.label,
                            RESTART_WINDOW.as_secs(),
                            proc.recipe.tails(5)
                        ));
                        continue;
                    }
                    match proc.recipe.spawn() {
                        Ok(child) => {
                            proc.pid = child.id();
                            proc.child = child;
                            proc.restarts.push(Instant::now());
                            events.push(format!(
                                "{} {how}; started again (restart {})",
                                proc.recipe.label,
                                proc.restarts.len()
                            ));
                        }
                        Err(e) => {
                            proc.ended = Some(status);
                            events.push(format!(
                                "{} {how}; starting it again failed: {e}",
                                proc.recipe.label
                            ));
                        }
                    }
                }
                for e in &events {
                    tracing::info!("{e}");
                }
                p.events.extend(events);
            }
        }));
    }

    /// Stops starting processes again: the cluster is being stopped, and its
    /// engines are about to end on purpose.
    pub fn stop_supervising(&mut self) {
        self.processes.lock().expect("processes").stopping = true;
        if let Some(s) = self.supervisor.take() {
            s.abort();
        }
    }

    /// What the supervisor did (`--restart`), or `None` when it is off.
    pub fn restart_events(&self) -> Option<Vec<String>> {
        self.supervisor.as_ref()?;
        Some(self.processes.lock().expect("processes").events.clone())
    }

    /// Kills the engines started here whose pid is among `pids` (the controller
    /// lost them, but their processes live on: hung, or cut off), so that the
    /// supervisor starts them again.
    pub fn kill_lost(&self, pids: &[u32]) {
        let mut p = self.processes.lock().expect("processes");
        for proc in p.list.iter_mut().filter(|p| p.recipe.engine_here) {
            if proc.child.id().is_some_and(|pid| pids.contains(&pid)) {
                tracing::info!("killing {}: its engine was lost", proc.recipe.label);
                let _ = proc.child.start_kill();
            }
        }
    }
}
