//! The executor's side of `%cluster` and `%%parallel cluster`: starting and
//! stopping a cluster, choosing a cell's engines, and relaying the runner's frames
//! for them to the controller and back.

use super::magics::cluster::Launcher;
use super::{CellError, Executor, Sink};
use crate::cluster::client::{Client, Status};
use crate::cluster::launcher;
use crate::cluster::messages::Msg;
use crate::compile::parallel::Parallel;
use crate::exec::frames::tag;
use crate::exec::Runner;
use std::path::PathBuf;
use std::time::Duration;

/// How long `%cluster start` waits for its engines.
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) fn cluster_error(e: impl Into<String>) -> CellError {
    CellError::Cluster(e.into())
}

/// Has the launcher kill engines the controller lost while their processes live
/// on (hung, cut off), so that `--restart` replaces them.
pub(super) fn kill_lost(c: &Client, s: &Status) {
    if let Some(l) = &c.launched {
        if l.restart_events().is_some() {
            let pids: Vec<u32> = s.lost.iter().map(|e| e.pid).collect();
            l.kill_lost(&pids);
        }
    }
}

/// How `%cluster start` starts its engines.
pub(super) struct Start<'a> {
    pub launcher: Launcher,
    /// The ssh launcher's machines.
    pub hosts: &'a [String],
    /// The address the controller listens on.
    pub ip: &'a str,
    /// What a batch launcher asks of its scheduler.
    pub batch: &'a launcher::BatchOptions,
}

impl Start<'_> {
    /// Engines on this machine, as `%%parallel cluster` starts them when none runs.
    const LOCAL: Start<'static> = Start {
        launcher: Launcher::Local,
        hosts: &[],
        ip: "127.0.0.1",
        batch: &launcher::BatchOptions {
            queue: None,
            walltime: None,
            account: None,
            nodes: None,
            pe: None,
        },
    };
}

impl Executor {
    /// Starts a controller and `n` engines here and waits until every engine is
    /// ready, showing how many are; or says which failed and why.
    pub(super) async fn start_cluster(
        &mut self,
        n: usize,
        how: Start<'_>,
        sink: &mut Sink,
    ) -> Result<(), CellError> {
        if self.cluster.is_some() {
            return Err(cluster_error(
                "a cluster is already running; %cluster stop it first",
            ));
        }
        let started = std::time::Instant::now();
        let ip = how.ip;
        let mut launched = match how.launcher {
            Launcher::Mpi => launcher::start_mpi(n, ip).await,
            Launcher::Ssh => launcher::start_ssh(n, how.hosts, ip).await,
            Launcher::Slurm => launcher::start_slurm(n, ip, how.batch).await,
            Launcher::Pbs => launcher::start_pbs(n, ip, how.batch).await,
            Launcher::Sge => launcher::start_sge(n, ip, how.batch).await,
            Launcher::Local => launcher::start_local(n, ip).await,
        }?;
        let mut client = match Client::connect(&launched.file).await {
            Ok(c) => c,
            Err(e) => {
                launched.wait_or_kill(Duration::from_millis(100)).await;
                return Err(e.into());
            }
        };
        let mut progress = super::progress::Progress::new(sink, "cluster-start");
        let mut last_shown: Option<(usize, std::time::Instant)> = None;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let ready = loop {
            let s = client.status().await?;
            // Ready: registered, with a worker started to run cells.
            let ready = s.engines.iter().filter(|e| e.worker_pid.is_some()).count();
            let failed = launched.failed_engines();
            if ready >= n {
                break ready;
            }
            if !failed.is_empty() || tokio::time::Instant::now() > deadline {
                let mut why = format!(
                    "{} of {n} engines are ready after {:.1} s",
                    ready,
                    started.elapsed().as_secs_f64()
                );
                for f in failed {
                    why.push_str(&format!("\n{f}"));
                }
                client.launched = Some(launched);
                let _ = client.stop().await;
                return Err(cluster_error(why));
            }
            // Progress in one display, updated in place, once the wait is noticeable:
            // when the count changes, or every second.
            let due = last_shown
                .is_none_or(|(k, at)| k != ready || at.elapsed() > Duration::from_secs(1));
            if started.elapsed() > Duration::from_millis(500) && due {
                last_shown = Some((ready, std::time::Instant::now()));
                let launcher_says = launched
                    .waiting_on()
                    .await
                    .map(|w| format!("; {w}"))
                    .unwrap_or_default();
                progress.show(format!(
                    "engines ready: {} of {n} ({:.1} s; the first start on a machine builds the runner{launcher_says})",
                    ready,
                    started.elapsed().as_secs_f64()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let text = format!(
            "Cluster ready: {ready} engines {} in {:.2} s (controller pid {}, connection file {})\n",
            match how.launcher {
                Launcher::Mpi => "started by mpirun, as MPI ranks,",
                Launcher::Ssh => "started over ssh",
                Launcher::Slurm => "started by Slurm, ranked by task id,",
                Launcher::Pbs => "started in a PBS job by mpiexec, as MPI ranks,",
                Launcher::Sge if how.batch.pe.is_some() => {
                    "started in a Grid Engine job by mpirun, as MPI ranks,"
                }
                Launcher::Sge => "started as a Grid Engine array job, ranked by task id,",
                Launcher::Local => "on this machine",
            },
            started.elapsed().as_secs_f64(),
            client.file.controller_pid,
            client.path.display()
        );
        if !progress.finish(text.trim_end()) {
            sink.stdout(text.as_bytes());
        }
        client.launched = Some(launched);
        self.cluster = Some(client);
        Ok(())
    }

    /// The engines a `%%parallel cluster` cell runs on, as the cell's argument
    /// (`engines=ID:WORKER,…`). With no cluster, a local one is started first.
    pub(super) async fn cluster_engines(
        &mut self,
        p: &Parallel,
        sink: &mut Sink,
    ) -> Result<String, CellError> {
        if self.cluster.is_none() {
            let n = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            sink.stderr(
                format!("ferrocell: no cluster yet; starting {n} local engines (%cluster start -n N chooses)\n")
                    .as_bytes(),
            );
            self.start_cluster(n, Start::LOCAL, sink).await?;
        }
        let c = self.cluster.as_mut().expect("started");
        let s = c.status().await.map_err(|e| {
            CellError::Cluster(format!(
                "{e}; %cluster status says more, %cluster stop and start makes a new one"
            ))
        })?;
        kill_lost(c, &s);
        let mut engines: Vec<_> = s
            .engines
            .iter()
            .filter(|e| e.worker_pid.is_some())
            .collect();
        // Engines that mpirun started keep their MPI order as ranks.
        engines.sort_by_key(|e| (e.mpi_rank.unwrap_or(u32::MAX), e.id));
        if let Some(targets) = &p.targets {
            let missing: Vec<String> = targets
                .iter()
                .filter(|t| !engines.iter().any(|e| e.id == **t))
                .map(|t| t.to_string())
                .collect();
            if !missing.is_empty() {
                return Err(cluster_error(format!(
                    "--targets names engines the cluster does not have ready: {} (%cluster status lists them)",
                    missing.join(", ")
                )));
            }
            engines.retain(|e| targets.contains(&e.id));
        }
        if let Some(n) = p.workers {
            engines.truncate(n);
        }
        if engines.is_empty() {
            return Err(cluster_error(
                "the cluster has no ready engine (%cluster status says why)",
            ));
        }
        let list: Vec<String> = engines
            .iter()
            // What the worker holds is known by its pid under this controller.
            .map(|e| {
                format!(
                    "{}:{}-{}",
                    e.id,
                    e.worker_pid.unwrap_or(0),
                    c.file.controller_pid
                )
            })
            .collect();
        Ok(format!("engines={}", list.join(",")))
    }
}

impl Executor {
    /// `%%parallel cluster --persist`: the body is built as a cell of its own with
    /// the engines' variables in scope, and each engine runs it; what it binds is
    /// recorded as the engines' once every engine has run it. With `--out NAME` its
    /// values are sent back, serialised, and bound to `NAME` in rank order.
    pub(super) async fn run_persist(
        &mut self,
        input: Option<&crate::kernel::stdin::Origin>,
        sink: &mut Sink,
        irq: &mut tokio::sync::watch::Receiver<u64>,
        p: &Parallel,
        rest: &str,
    ) -> Result<(), CellError> {
        use crate::compile::parallel::{gather_body, gather_code, persist_body, GATHERED};
        if let Some(name) = p.out.as_ref().filter(|n| self.engine_vars.contains_key(*n)) {
            return Err(hides(name));
        }
        let rest = match &p.out {
            Some(_) => std::borrow::Cow::Owned(gather_body(rest).map_err(CellError::Magic)?),
            None => std::borrow::Cow::Borrowed(rest),
        };
        let body = persist_body(&rest);
        let built = self.build_on_engines(&body, p, sink, irq).await?;
        let Some((built, args)) = built else {
            return Ok(());
        };
        let code = match &p.out {
            Some(name) => {
                let Some((_, v)) = built.vars.kept.iter().find(|(n, _)| n == GATHERED) else {
                    return Err(CellError::Parallel {
                        summary: format!("--out {name}: the body's value cannot be sent back (its type cannot be kept; see above)"),
                        ranks: vec![],
                    });
                };
                gather_code(p, name, &v.ty)
            }
            None => crate::compile::parallel::persist_code(p),
        };
        self.run_on_engines(&built, args, &code, input, sink, irq)
            .await
    }

    /// Builds `body` for the engines, with their variables in scope, and returns it
    /// with the arguments of the kernel's cell that runs it there.
    async fn build_on_engines(
        &mut self,
        body: &str,
        p: &Parallel,
        sink: &mut Sink,
        irq: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<Option<(crate::compile::BuiltCell, Vec<String>)>, CellError> {
        let mut args = self.processes_setup(body, sink, irq).await?;
        args.push(self.cluster_engines(p, sink).await?);
        let count = self.count;
        let session = self.session.as_mut().expect("set up above");
        session.set_portable(true);
        let built = match session.build_in_scope(body, count, &self.engine_vars).await {
            Ok(crate::compile::session::Compiled::Cell(b)) => *b,
            Ok(crate::compile::session::Compiled::Empty) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        args.push(format!("persist={}\n{}", built.lib.display(), built.symbol));
        Ok(Some((built, args)))
    }

    /// Runs `code`, the kernel's cell that has each engine run `built`, on the
    /// engines; then records what `built` bound there as the engines' variables.
    async fn run_on_engines(
        &mut self,
        built: &crate::compile::BuiltCell,
        args: Vec<String>,
        code: &str,
        input: Option<&crate::kernel::stdin::Origin>,
        sink: &mut Sink,
        irq: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let lease = self.claim_engines(&args, sink, irq).await?;
        let ran = self
            .run_rust(
                input,
                sink,
                irq,
                code,
                crate::compile::Timing::None,
                Some(args),
            )
            .await;
        self.release_engines(lease).await;
        ran?;
        let session_vars = self
            .session
            .as_ref()
            .map(|s| s.vars().clone())
            .unwrap_or_default();
        for n in &built.vars.removed {
            self.engine_vars.remove(n);
        }
        for (n, v) in &built.vars.kept {
            let ours = ["rank", "size", crate::compile::parallel::GATHERED].contains(&n.as_str());
            if !ours && !session_vars.contains_key(n) {
                self.engine_vars.insert(n.clone(), v.clone());
            }
        }
        for note in &built.vars.notes {
            sink.stderr(format!("ferrocell: on the engines, {note}\n").as_bytes());
        }
        Ok(())
    }

    /// `%cluster pull VAR --out NAME`: each engine's `VAR`, bound to `NAME` in rank
    /// order (ipyparallel's `pull`).
    pub(super) async fn pull(
        &mut self,
        var: &str,
        name: &str,
        sink: &mut Sink,
        irq: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let Some(v) = self.engine_vars.get(var).cloned() else {
            return Err(cluster_error(format!(
                "`{var}` is not a variable on the engines (a --persist cell binds them)"
            )));
        };
        if self.engine_vars.contains_key(name) {
            return Err(hides(name));
        }
        let p = Parallel {
            out: Some(name.into()),
            persist: true,
            ..Parallel::on(crate::compile::parallel::Backend::Cluster)
        };
        let body =
            crate::compile::parallel::persist_body(&crate::compile::parallel::send_value(var));
        let Some((built, args)) = self.build_on_engines(&body, &p, sink, irq).await? else {
            return Ok(());
        };
        let code = crate::compile::parallel::gather_code(&p, name, &v.ty);
        self.run_on_engines(&built, args, &code, None, sink, irq)
            .await
    }

    /// `%cluster push VAR --as NAME`: the session's `VAR` becomes `NAME` on each
    /// engine (ipyparallel's `push`); with `scatter`, each engine's part of it, in
    /// rank order (ipyparallel's `scatter`).
    pub(super) async fn push(
        &mut self,
        var: &str,
        name: &str,
        scatter: bool,
        sink: &mut Sink,
        irq: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let known = self
            .session
            .as_ref()
            .is_some_and(|s| s.vars().contains_key(var));
        if !known {
            return Err(cluster_error(format!("`{var}` is not a session variable")));
        }
        if name != var
            && self
                .session
                .as_ref()
                .is_some_and(|s| s.vars().contains_key(name))
        {
            return Err(cluster_error(format!(
                "`{name}` is a session variable: --persist cells would be sent it instead of the engines' `{name}`; push under another name"
            )));
        }
        let p = Parallel {
            persist: true,
            ..Parallel::on(crate::compile::parallel::Backend::Cluster)
        };
        let value = if scatter {
            format!("::ferrocell::__processes::part(&{var}, rank, size)")
        } else {
            format!("::std::clone::Clone::clone(&{var})")
        };
        let body = crate::compile::parallel::persist_body(&format!("let mut {name} = {value};"));
        self.run_persist_body(&body, &p, sink, irq).await
    }

    /// Runs a `--persist` body the kernel wrote (not the user's cell).
    async fn run_persist_body(
        &mut self,
        body: &str,
        p: &Parallel,
        sink: &mut Sink,
        irq: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let Some((built, args)) = self.build_on_engines(body, p, sink, irq).await? else {
            return Ok(());
        };
        let code = crate::compile::parallel::persist_code(p);
        self.run_on_engines(&built, args, &code, None, sink, irq)
            .await
    }
}

/// Why a gathered value may not be bound to `name`, a variable on the engines.
fn hides(name: &str) -> CellError {
    cluster_error(format!(
        "`{name}` is a variable on the engines: a session variable of that name would hide it \
         from --persist cells, which are sent the session's variables; gather into another name \
         (--out {name}_all)"
    ))
}

/// The next message from the cluster, if there is one (never, without a cluster).
pub(super) async fn next_message(c: &mut Option<Client>) -> Option<(Msg, bytes::Bytes)> {
    match c {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

/// Relays one message of the controller to the runner's coordinator.
pub(super) async fn relay_to_runner(runner: &mut Runner, msg: Msg, payload: &[u8]) {
    let _ = match msg {
        Msg::Frame { engine, tag } => runner.from_engine(engine, tag, payload).await,
        Msg::Lost {
            engine,
            why,
            engine_gone,
        } => {
            let t = if engine_gone {
                tag::ENGINE_LOST
            } else {
                tag::WORKER_LOST
            };
            runner.from_engine(engine, t, why.as_bytes()).await
        }
        _ => Ok(()),
    };
}

/// Relays one frame of the runner's coordinator to an engine. Before a library
/// runs there, the engine is sent it and the session's layers it links to.
pub(super) async fn relay_to_engine(
    cluster: &mut Option<Client>,
    runner: &mut Runner,
    layers: &[PathBuf],
    engine: u32,
    t: u8,
    payload: Vec<u8>,
) {
    // Why the frame did not go, in the words of the ENGINE_LOST frame.
    let unsent = match cluster {
        Some(c) if t == tag::KILL_WORKER => {
            c.kill_worker(engine).await.err().map(|e| e.to_string())
        }
        Some(c) if t == tag::RUN => {
            let lib = payload.split(|b| *b == 0).next().unwrap_or_default();
            let lib = PathBuf::from(String::from_utf8_lossy(lib).into_owned());
            let mut libs = layers.to_vec();
            libs.push(lib);
            match c.ship(engine, &libs).await {
                Ok(()) => c
                    .send_frame(engine, t, payload)
                    .await
                    .err()
                    .map(|e| e.to_string()),
                Err(e) => Some(format!("its libraries could not be sent: {e}")),
            }
        }
        Some(c) => c
            .send_frame(engine, t, payload)
            .await
            .err()
            .map(|e| e.to_string()),
        None => Some("no cluster is connected".into()),
    };
    if let Some(why) = unsent {
        let _ = runner
            .from_engine(engine, tag::ENGINE_LOST, why.as_bytes())
            .await;
    }
}

/// The engines a cell's arguments name (to fail them if the controller falls silent).
pub(super) fn engines_of(args: &[String]) -> Vec<u32> {
    args.iter()
        .find_map(|a| a.strip_prefix("engines="))
        .map(|l| {
            l.split(',')
                .filter_map(|e| e.split_once(':')?.0.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
