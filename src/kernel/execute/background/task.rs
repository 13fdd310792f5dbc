//! The task that drives one background run: a runner of its own (so the session's
//! runner stays free for the notebook's next cells), the variables its body uses
//! loaded from their snapshots, the cell run with its events kept in the run's
//! [`State`], a cluster connection of its own for engine frames, and at the end
//! the saver that writes the gathered values for `%wait` to bind.

use super::state::{End, Phase, State};
use super::Claims;
use crate::compile::prelude::Prelude;
use crate::exec::frames::tag;
use crate::exec::{CellEvent, Runner};
use crate::kernel::execute::cluster::{relay_to_engine, relay_to_runner};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long an interrupted background run may take to stop before its runner is
/// killed (as for a cell in the session's runner).
const INTERRUPT_GRACE: Duration = Duration::from_millis(1000);
/// How often the display under the starting cell is brought up to date.
const REFRESH: Duration = Duration::from_millis(500);

/// A library for the run's runner: path, entry point and arguments.
pub(super) struct Lib {
    pub lib: PathBuf,
    pub symbol: String,
    pub args: Vec<String>,
}

/// What a cluster run needs besides its cell.
pub(super) struct OnCluster {
    /// The controller's connection file: the run connects on its own.
    pub path: PathBuf,
    /// The session's layers, shipped to an engine before a library runs there.
    pub layers: Vec<PathBuf>,
    pub engines: Vec<u32>,
    pub claims: Arc<Claims>,
    /// Whether the engines were claimed when the run was started.
    pub claimed: bool,
}

/// Asked of a running background run (by `%wait` on an interrupt, by `%reset`,
/// `%cluster stop` and the kernel's end).
#[derive(Debug)]
pub(super) enum Control {
    /// Ask the cell to stop; its runner is killed after a grace.
    Interrupt,
    /// Kill it now, for the reason given.
    Cancel(String),
}

/// Everything the task needs, moved into it.
pub(super) struct Job {
    pub name: String,
    pub prelude: Prelude,
    /// The run's own snapshot directory: what its body uses, linked in, and
    /// what it gathers, written out.
    pub dir: PathBuf,
    /// Puts the variables the body uses into the runner's store.
    pub restore: Option<Lib>,
    pub cell: Lib,
    /// Writes the gathered values (`--out NAME`) into `dir`.
    pub saver: Option<Lib>,
    pub cluster: Option<OnCluster>,
    pub state: Arc<Mutex<State>>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub done: watch::Sender<bool>,
    /// Called with the state whenever the display is to be brought up to date.
    pub refresh: Box<dyn Fn(&State) + Send + Sync>,
    /// Its runner was killed while its cell ran (cancelled, or it did not obey an
    /// interrupt): the engines' workers may still run the cell.
    pub runner_killed: bool,
}

/// Drives the run to its end; the end is in the state when `done` turns true.
pub(super) async fn drive(mut job: Job) {
    let end = run(&mut job).await;
    if let Some(c) = &job.cluster {
        c.claims.release(&job.name);
    }
    {
        let mut s = job.state.lock().expect("state");
        s.finish(end);
        (job.refresh)(&s);
    }
    let _ = job.done.send(true);
}

async fn run(job: &mut Job) -> End {
    if let Some(c) = &job.cluster {
        if !c.claimed {
            let claims = c.claims.clone();
            let engines = c.engines.clone();
            let name = job.name.clone();
            let state = job.state.clone();
            let refresh = &job.refresh;
            let acquire = claims.acquire(&engines, &name, |behind| {
                queued(&state, refresh, &format!("`{behind}`"));
            });
            tokio::select! {
                () = acquire => {}
                c = job.control.recv() => return stopped_before_start(c),
            }
        }
    }
    // A connection of its own, on which it waits for other kernels' runs.
    let mut client = None;
    if let Some(c) = &job.cluster {
        let connected = tokio::select! {
            r = crate::cluster::client::Client::connect(&c.path) => r,
            c = job.control.recv() => return stopped_before_start(c),
        };
        let mut cl = match connected {
            Ok(cl) => cl,
            Err(e) => return End::NotStarted(format!("the cluster did not answer: {e}")),
        };
        let state = job.state.clone();
        let refresh = &job.refresh;
        let who = format!(
            "{} (its background run `{}`)",
            super::kernel_words(),
            job.name
        );
        let claimed = tokio::select! {
            r = cl.claim(&c.engines, who, |behind| queued(&state, refresh, behind)) => r,
            c = job.control.recv() => {
                let _ = cl.release(cl.last_run()).await;
                return stopped_before_start(c);
            }
        };
        if let Err(e) = claimed {
            return End::NotStarted(format!("its engines could not be claimed: {e}"));
        }
        client = Some(cl);
    }
    let end = on_runner(job, &mut client).await;
    if let (Some(cl), Some(c)) = (client.as_mut(), &job.cluster) {
        // Workers left running a cell whose runner was killed are replaced, so
        // the next run finds them free.
        if job.runner_killed {
            for e in &c.engines {
                let _ = cl.kill_worker(*e).await;
            }
        }
        let _ = cl.release(cl.last_run()).await;
    }
    end
}

/// The run's phase while it waits for engines, shown.
fn queued(state: &Mutex<State>, refresh: &(dyn Fn(&State) + Send + Sync), behind: &str) {
    let mut s = state.lock().expect("state");
    s.phase = Phase::Queued {
        behind: behind.to_string(),
    };
    refresh(&s);
}

/// The run in its runner: the variables its body uses loaded, the cell, then the
/// saver of what it gathered.
async fn on_runner(job: &mut Job, client: &mut Option<crate::cluster::client::Client>) -> End {
    job.state.lock().expect("state").start();
    (job.refresh)(&job.state.lock().expect("state"));
    let spawned = tokio::select! {
        r = Runner::spawn(&job.prelude, &job.dir) => r,
        c = job.control.recv() => return stopped_before_start(c),
    };
    let mut runner = match spawned {
        Ok(r) => r,
        Err(e) => return End::NotStarted(e.to_string()),
    };
    if let Some(restore) = job.restore.take() {
        match step(job, &mut runner, &restore, &mut None, &mut Quiet).await {
            End::Done => {}
            other => {
                return End::NotStarted(format!(
                    "the variables its body uses could not be loaded into its runner: {}",
                    other.describe()
                ))
            }
        }
    }
    let cell = Lib {
        lib: job.cell.lib.clone(),
        symbol: job.cell.symbol.clone(),
        args: job.cell.args.clone(),
    };
    let mut into_state = IntoState(job.state.clone());
    let end = step(job, &mut runner, &cell, client, &mut into_state).await;
    into_state.0.lock().expect("state").flush();
    if !matches!(end, End::Done) {
        return end;
    }
    if let Some(saver) = job.saver.take() {
        let kept = match step(job, &mut runner, &saver, &mut None, &mut Quiet).await {
            End::Done if job.dir.join(&saver.args[1]).is_file() => Ok(()),
            End::Done => Err("its snapshot was not written".to_string()),
            other => Err(other.describe()),
        };
        job.state.lock().expect("state").kept = Some(kept);
    }
    runner.kill().await;
    End::Done
}

/// A run stopped before its cell began: cancelled, or interrupted by `%wait`.
fn stopped_before_start(c: Option<Control>) -> End {
    End::Interrupted(match c {
        Some(Control::Cancel(why)) => format!(" before it began: {why}"),
        Some(Control::Interrupt) => " before it began".into(),
        None => " before it began: the kernel is ending".into(),
    })
}

/// Where a step's output goes: the run's state, or nowhere (restores, savers).
trait Out {
    fn event(&mut self, ev: CellEvent);
}

struct Quiet;
impl Out for Quiet {
    fn event(&mut self, _: CellEvent) {}
}

struct IntoState(Arc<Mutex<State>>);
impl Out for IntoState {
    fn event(&mut self, ev: CellEvent) {
        self.0.lock().expect("state").event(ev);
    }
}

/// Runs one library in the run's runner to its end, relaying engine frames and
/// obeying [`Control`]s, and says how it ended.
async fn step(
    job: &mut Job,
    runner: &mut Runner,
    lib: &Lib,
    client: &mut Option<crate::cluster::client::Client>,
    out: &mut (dyn Out + Send),
) -> End {
    if let Err(e) = runner.start(&lib.lib, &lib.symbol, &lib.args).await {
        return End::NotStarted(format!("its runner could not take the cell: {e}"));
    }
    let (layers, mut engines) = match (&job.cluster, client.is_some()) {
        (Some(c), true) => (c.layers.clone(), c.engines.clone()),
        _ => (Vec::new(), Vec::new()),
    };
    let mut interrupted_at: Option<tokio::time::Instant> = None;
    let cancelled: String;
    let mut tick = tokio::time::interval(REFRESH);
    loop {
        let grace = async {
            match interrupted_at {
                Some(t) => tokio::time::sleep_until(t + INTERRUPT_GRACE).await,
                None => std::future::pending().await,
            }
        };
        let ev = tokio::select! {
            ev = runner.next_event() => ev,
            c = job.control.recv() => {
                match c {
                    Some(Control::Interrupt) if interrupted_at.is_none() => {
                        runner.interrupt().await;
                        interrupted_at = Some(tokio::time::Instant::now());
                    }
                    Some(Control::Interrupt) => {}
                    // Cancelled, or its handle is gone (the kernel is ending).
                    other => {
                        let why = match other {
                            Some(Control::Cancel(why)) => why,
                            _ => "the kernel is ending".into(),
                        };
                        cancelled = why;
                        job.runner_killed = true;
                        break;
                    }
                }
                continue;
            }
            _ = grace => {
                cancelled = "it did not stop within 1 s, so its runner was killed".into();
                job.runner_killed = true;
                break;
            }
            m = async {
                match client.as_mut() {
                    Some(c) => c.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match m {
                    Some((msg, payload)) => relay_to_runner(runner, msg, &payload).await,
                    None => {
                        *client = None;
                        lose(runner, &mut engines, "the cluster connection closed").await;
                    }
                }
                continue;
            }
            _ = tick.tick() => {
                if let Some(silent) = client.as_ref().and_then(|c| c.fallen_silent()) {
                    let why = format!("the controller fell silent ({:.1} s without a heartbeat)", silent.as_secs_f64());
                    lose(runner, &mut engines, &why).await;
                }
                (job.refresh)(&job.state.lock().expect("state"));
                continue;
            }
        };
        match ev {
            CellEvent::InputRequest { .. } => {
                let _ = runner
                    .answer_input(Err("input(): a background run takes no input".into()))
                    .await;
            }
            CellEvent::ToEngine {
                engine,
                tag,
                payload,
            } => relay_to_engine(client, runner, &layers, engine, tag, payload).await,
            CellEvent::Done if interrupted_at.is_some() => return End::Interrupted(String::new()),
            CellEvent::Done => return End::Done,
            CellEvent::Panic(p) if interrupted_at.is_some() && !is_parallel(&p) => {
                return End::Interrupted(String::new())
            }
            CellEvent::Panic(p) => return End::Panic(p),
            CellEvent::Failed { message, .. } => return End::Failed(message),
            CellEvent::LoadError(m) => return End::NotStarted(m),
            CellEvent::Exited(how) => return End::Died(how.0),
            ev => out.event(ev),
        }
    }
    End::Interrupted(format!(": {cancelled}"))
}

/// Whether a panic is a parallel run's report of its failed ranks.
fn is_parallel(p: &crate::exec::runner::PanicReport) -> bool {
    p.message.starts_with(tag::PARALLEL_ERROR)
}

/// Fails the run's engines in its runner, once: their ranks report `why`.
async fn lose(runner: &mut Runner, engines: &mut Vec<u32>, why: &str) {
    for e in std::mem::take(engines) {
        let _ = runner
            .from_engine(e, tag::ENGINE_LOST, why.as_bytes())
            .await;
    }
}
