//! Background runs: `%%parallel processes|cluster --noblock [--out NAME]`.
//!
//! The cell returns at once with a handle (its name) while the run goes on, and
//! the notebook runs other cells meanwhile. The run needs a runner of its own for
//! that: the session's runner runs one cell at a time. So the cell is compiled in
//! the session as usual, and a second runner loads the variables its body uses
//! from their snapshots (linked into a directory of the run's own), runs it there
//! with a worker pool (or a cluster connection) of its own, and finally has a saver
//! write the gathered values into that directory. `%wait NAME` moves them into the
//! session's snapshots and restores them into the session's runner: the session
//! learns of the new variable only then, so nothing of it changes while the run
//! goes on, and a failed run changes nothing.
//!
//! Its output is kept (bounded) and shown in a display under the cell that
//! started it, brought up to date twice a second; `%wait` shows it all again, for
//! clients that stopped listening to that cell (nbclient, papermill). `%pending`
//! lists the runs. An engine serves one run at a time: a run (or an ordinary
//! cluster cell) whose engines another run holds waits for them ([`Claims`]).
//!
//! - `state`: what a run has done so far;
//! - `task`: the task that drives one run;
//! - `shown`: the display, `%pending`'s table and `%wait`'s replay.

mod bind;
mod claims;
mod lease;
mod shown;
mod state;
mod task;

pub(super) use claims::{ClaimGuard, Claims};
use lease::kernel_words;

use super::{CellError, Executor, Sink};
use crate::compile::parallel::{Backend, Parallel};
use crate::compile::vars::Var;
use crate::compile::BuiltCell;
use crate::protocol::Header;
use state::{End, Phase, State};
use std::sync::{Arc, Mutex};
use task::{Control, Lib, OnCluster};
use tokio::sync::{mpsc, watch};

/// The most background runs a kernel keeps, running or ended and not yet waited
/// for: each holds a runner, and its workers, until it ends.
const MAX_RUNS: usize = 32;

/// The kernel's background runs, by name, in the order they were started.
#[derive(Default)]
pub(super) struct Background {
    runs: Vec<Run>,
    /// The number of the next unnamed run (`bg1`, `bg2`, …).
    next: u32,
    claims: Arc<Claims>,
}

/// One background run, as the executor holds it.
struct Run {
    name: String,
    /// Where it runs, in words ("4 worker processes").
    on: String,
    /// `--out NAME`: the variable `%wait` binds, with its type.
    bind: Option<Var>,
    /// Its compiled cell, for mapping a panic back to the cell's lines.
    built: BuiltCell,
    /// Its snapshot directory (removed with it).
    dir: tempfile::TempDir,
    state: Arc<Mutex<State>>,
    control: mpsc::UnboundedSender<Control>,
    done: watch::Receiver<bool>,
    backend: Backend,
    task: tokio::task::JoinHandle<()>,
    /// Where it holds engines, given back if it is dropped while it runs.
    claims: Arc<Claims>,
}

impl Drop for Run {
    fn drop(&mut self) {
        // Its runner goes with the task (a dropped runner kills its process group),
        // and its connection: the controller frees its engines when it falls silent.
        self.task.abort();
        self.claims.release(&self.name);
    }
}

impl Background {
    /// Drops every run, running or ended (the session they came from is gone);
    /// returns how many there were.
    fn clear(&mut self) -> usize {
        let n = self.runs.len();
        self.runs.clear();
        n
    }

    /// Cancels the runs on `backend`, saying why. Their ends stay for `%wait`.
    fn cancel(&self, backend: Option<Backend>, why: &str) {
        for r in &self.runs {
            if backend.is_none_or(|b| b == r.backend) {
                let _ = r.control.send(Control::Cancel(why.to_string()));
            }
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.runs.iter().position(|r| r.name == name)
    }

    pub(super) fn claims(&self) -> Arc<Claims> {
        self.claims.clone()
    }

    /// Whether `name` is a background run not yet waited for.
    pub(super) fn has(&self, name: &str) -> bool {
        self.position(name).is_some()
    }
}

impl Executor {
    /// `%%parallel … --noblock`: compiles the cell, starts it in a runner of its
    /// own and returns, leaving a display under the cell that it keeps up to date.
    pub(super) async fn start_background(
        &mut self,
        p: &Parallel,
        body: &str,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
        parent: &Header,
    ) -> Result<(), CellError> {
        let name = match &p.out {
            Some(n) => n.clone(),
            None => {
                self.background.next += 1;
                format!("bg{}", self.background.next)
            }
        };
        if self.background.has(&name) {
            return Err(CellError::Magic(format!(
                "a background run named `{name}` has not been waited for: %wait {name} first (%pending lists the runs)"
            )));
        }
        if self.background.runs.len() >= MAX_RUNS {
            return Err(CellError::Magic(format!(
                "{MAX_RUNS} background runs are kept already: %wait for some first (%pending lists them)"
            )));
        }
        let code = crate::compile::parallel::cell_code(p, body);
        let mut args = self.processes_setup(&code, sink, irq).await?;
        if p.backend == Backend::Cluster {
            args.push(self.cluster_engines(p, sink).await?);
        }
        let Some(mut built) = self
            .build_rust(sink, irq, &code, crate::compile::Timing::None, true)
            .await?
        else {
            return Ok(());
        };
        built.args = args.clone();
        let session = self.session.as_mut().expect("built above");
        let bind = match &p.out {
            Some(n) => built
                .vars
                .kept
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone()),
            None => None,
        };
        for note in &built.vars.notes {
            sink.stderr(format!("ferrocell: {note}\n").as_bytes());
        }
        if let (None, Some(n)) = (&bind, &p.out) {
            return Err(CellError::Vars(format!(
                "--out {n}: the gathered values cannot be kept as a session variable (see above), so a background run could not bind them"
            )));
        }
        let saver = match (&bind, &p.out) {
            (Some(v), Some(n)) => match session.build_saver(&v.ty).await {
                Ok(Some(b)) => Some(Lib {
                    lib: b.lib,
                    symbol: b.symbol,
                    args: vec!["wait".into(), n.clone()],
                }),
                Ok(None) => None,
                Err(e) => {
                    return Err(CellError::Parallel {
                        summary: format!("the values of `{n}` could not be kept: {e}"),
                        ranks: vec![],
                    })
                }
            },
            _ => None,
        };
        let restore = (!args[0].is_empty()).then(|| Lib {
            lib: args[0].clone().into(),
            symbol: args[1].clone(),
            args: vec![],
        });
        let dir = crate::exec::savers::private_dir().map_err(|e| CellError::Parallel {
            summary: format!("no directory for the background run: {e}"),
            ranks: vec![],
        })?;
        // The snapshots as they are now: a later cell that changes a variable
        // writes a new file, and the run keeps the one it started with.
        for version in &args[2..] {
            let Some((var, _)) = version.split_once('\t') else {
                continue;
            };
            let from = self.snapshots.path().join(var);
            let to = dir.path().join(var);
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(|e| CellError::Parallel {
                    summary: format!("the snapshot of `{var}` could not be read: {e}"),
                    ranks: vec![],
                })?;
            }
        }
        let engines = super::cluster::engines_of(&args);
        let on = match p.backend {
            Backend::Cluster => format!(
                "{} engine{}",
                engines.len(),
                if engines.len() == 1 { "" } else { "s" }
            ),
            _ => match p.workers {
                Some(n) => format!("{n} worker process{}", if n == 1 { "" } else { "es" }),
                None => "worker processes (one a core)".into(),
            },
        };
        let claims = self.background.claims();
        let mut phase = Phase::Running;
        let cluster = match (&self.cluster, p.backend) {
            (Some(c), Backend::Cluster) => {
                let claimed = claims.try_claim(&engines, &name);
                if let Err(holder) = &claimed {
                    phase = Phase::Queued {
                        behind: format!("`{holder}`"),
                    };
                }
                Some(OnCluster {
                    path: c.path.clone(),
                    layers: session.layer_lib_paths(),
                    claimed: claimed.is_ok(),
                    engines,
                    claims: claims.clone(),
                })
            }
            _ => None,
        };
        let state = Arc::new(Mutex::new(State::new(phase)));
        let (control_tx, control) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(false);
        let display = shown::Display::new(
            sink.iopub.clone(),
            parent.clone(),
            &name,
            &on,
            p.out.is_some(),
        );
        display.show_first(&state.lock().expect("state"), sink);
        let job = task::Job {
            name: name.clone(),
            prelude: session.prelude().clone(),
            dir: dir.path().to_path_buf(),
            restore,
            cell: Lib {
                lib: built.lib.clone(),
                symbol: built.symbol.clone(),
                args,
            },
            saver,
            cluster,
            state: state.clone(),
            control,
            done: done_tx,
            refresh: Box::new(move |s| display.refresh(s)),
            runner_killed: false,
        };
        let task = tokio::spawn(task::drive(job));
        self.background.runs.push(Run {
            name,
            on,
            bind,
            built,
            dir,
            state,
            control: control_tx,
            done,
            backend: p.backend,
            task,
            claims,
        });
        Ok(())
    }

    /// `%wait [NAME …]`: waits for each run (every run when none is named) in
    /// turn, shows its output and binds its values; an interrupt stops the run
    /// waited for. A failed run ends the wait with its error; runs after it stay.
    pub(super) async fn wait_background(
        &mut self,
        names: &[String],
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let mut names: Vec<String> = if names.is_empty() {
            self.background
                .runs
                .iter()
                .map(|r| r.name.clone())
                .collect()
        } else {
            names.to_vec()
        };
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        if names.is_empty() {
            sink.stdout(b"No background runs.\n");
            return Ok(());
        }
        for name in &names {
            if !self.background.has(name) {
                return Err(CellError::Magic(format!(
                    "no background run named `{name}` (%pending lists them)"
                )));
            }
        }
        for name in names {
            let Some(at) = self.background.position(&name) else {
                continue;
            };
            let mut done = self.background.runs[at].done.clone();
            if !*done.borrow() {
                sink.stderr(
                    format!(
                        "ferrocell: waiting for background run `{name}` (an interrupt stops it)\n"
                    )
                    .as_bytes(),
                );
            }
            let mut asked = false;
            loop {
                tokio::select! {
                    r = done.wait_for(|d| *d) => { let _ = r; break; }
                    _ = irq.changed(), if !asked => {
                        asked = true;
                        let _ = self.background.runs[at].control.send(Control::Interrupt);
                    }
                }
            }
            let run = self.background.runs.remove(at);
            shown::replay(&run.state.lock().expect("state"), sink);
            self.end_of(run, irq).await?;
        }
        Ok(())
    }

    /// What a waited-for run comes to: its values bound, or its error.
    async fn end_of(&mut self, run: Run, irq: &mut watch::Receiver<u64>) -> Result<(), CellError> {
        let (end, kept) = {
            let s = run.state.lock().expect("state");
            // No end: its task itself failed.
            let end = s.end.clone().unwrap_or_else(|| {
                End::Died("lost: the task that drove it ended without an end".into())
            });
            (end, s.kept.clone())
        };
        let name = &run.name;
        let failed = match end {
            End::Done => None,
            End::Panic(p) => Some(self.panic_error(&run.built, &p)),
            End::Failed(m) => Some(CellError::Failed(m)),
            End::Interrupted(d) => Some(CellError::Interrupted(format!(
                " (background run `{name}`){d}"
            ))),
            End::Died(how) => Some(CellError::RunnerDied(format!(
                "the runner of background run `{name}` was {how}"
            ))),
            End::NotStarted(why) => Some(CellError::Parallel {
                summary: format!("background run `{name}` did not start: {why}"),
                ranks: vec![],
            }),
        };
        if let Some(e) = failed {
            return Err(e);
        }
        let Some(var) = &run.bind else {
            return Ok(());
        };
        if let Some(Err(why)) = kept {
            return Err(CellError::Vars(format!(
                "background run `{name}` ended, but its values could not be kept: {why}"
            )));
        }
        self.bind_from(run.dir.path(), name, var, irq).await
    }

    /// `%pending`: the runs not yet waited for, one line each.
    pub(super) fn pending_text(&self) -> String {
        let rows: Vec<shown::Row> = self
            .background
            .runs
            .iter()
            .map(|r| shown::Row {
                name: &r.name,
                on: &r.on,
                state: r.state.clone(),
            })
            .collect();
        shown::pending(&rows)
    }

    /// Cancels the background runs on a cluster that is being stopped.
    pub(super) fn cancel_cluster_runs(&mut self) {
        self.background
            .cancel(Some(Backend::Cluster), "the cluster was stopped");
    }

    /// Drops every background run (`%reset`): their values belong to the session
    /// that is gone. Returns how many there were.
    pub(super) fn drop_background(&mut self) -> usize {
        self.background.clear()
    }
}
