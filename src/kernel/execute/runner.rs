//! The runner's lifecycle and the event pump: starting the runner when a cell needs
//! it, handing it the cell, and handling its events until the cell ends (outputs,
//! input requests, interrupts and the grace before a kill, cluster relays, the
//! runner's death), saying how far the cell got.

use super::{cluster, CellError, Executor, Sink};
use crate::compile::BuiltCell;
use crate::exec::{CellEvent, Runner};
use crate::kernel::iopub::Channel;
use crate::kernel::stdin::Origin;
use crate::protocol::messages::ClearOutput;
use std::time::Duration;
use tokio::sync::watch;

/// How long an interrupted cell may take to stop by itself before its runner is
/// killed and replaced.
const INTERRUPT_GRACE: Duration = Duration::from_millis(1000);

/// How far a cell's own code got, which decides what the runner's variable store
/// holds afterwards (see [`Executor::settle_vars`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum CellEnd {
    /// It never started (the library did not load, the runner was not there).
    NotRun,
    /// It ran to its end and put back everything it keeps, even if the user
    /// interrupted it and it obeyed.
    Completed,
    /// It panicked or stopped at a `?`: what it took is back; of its new bindings,
    /// only those a failing `?` kept (named here).
    Unwound { kept: Vec<String> },
}

impl Executor {
    async fn runner(&mut self) -> Result<&mut Runner, CellError> {
        // The runner runs one cell at a time: the last saver's first. If the runner
        // died meanwhile, this cell was compiled against variables that may be gone.
        if let Some(e) = self.finish_saving().await {
            return Err(e);
        }
        if self.runner.is_none() {
            let prelude = self
                .session
                .as_ref()
                .expect("session before runner")
                .prelude();
            let r = Runner::spawn(prelude, self.snapshots.path())
                .await
                .map_err(CellError::RunnerStart)?;
            self.runner = Some(r);
        }
        Ok(self.runner.as_mut().expect("just set"))
    }

    /// Runs a cell in the runner: hands it over, then handles its events until it
    /// ends. Says how far the cell got, with its outcome.
    pub(super) async fn run_built(
        &mut self,
        built: &BuiltCell,
        input: Option<&Origin>,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> (Result<(), CellError>, CellEnd) {
        let mut end = CellEnd::NotRun;
        let result = match self.start_cell(built).await {
            Ok(()) => self.pump(built, input, sink, irq, &mut end).await,
            Err(e) => Err(e),
        };
        (result, end)
    }

    /// Runs one of the kernel's own cells (a user expression, a saver, a restore):
    /// nothing of it reaches a client; its value, if any, is in the sink returned.
    pub(super) async fn run_internal(
        &mut self,
        built: &BuiltCell,
        irq: &mut watch::Receiver<u64>,
    ) -> ((Result<(), CellError>, CellEnd), Sink) {
        let mut sink = Sink::new(None, self.count);
        let ran = self.run_built(built, None, &mut sink, irq).await;
        (ran, sink)
    }

    /// Hands the runner a cell (starting the runner if there is none).
    pub(super) async fn start_cell(&mut self, built: &BuiltCell) -> Result<(), CellError> {
        let runner = self.runner().await?;
        if let Err(e) = runner.start(&built.lib, &built.symbol, &built.args).await {
            self.runner = None;
            return Err(CellError::NotTaken(e.to_string()));
        }
        Ok(())
    }

    /// Handles the events of the cell the runner was handed until it ends.
    pub(super) async fn pump(
        &mut self,
        built: &BuiltCell,
        input: Option<&Origin>,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
        end: &mut CellEnd,
    ) -> Result<(), CellError> {
        let stdin = self.stdin.clone();
        let mut interrupted_at: Option<tokio::time::Instant> = None;
        // A cluster cell's engines: failed at once if the controller falls silent.
        // (An interval, not a sleep made anew each turn: the turns come faster.)
        let mut engines = cluster::engines_of(&built.args);
        let layers = match (&self.session, engines.is_empty()) {
            (Some(s), false) => s.layer_lib_paths(),
            _ => Vec::new(),
        };
        let mut watch_controller = tokio::time::interval(Duration::from_millis(500));
        // Output is taken from the runner only while IOPub has room for it.
        let room = sink.iopub.clone();
        let outcome = loop {
            let runner = self.runner.as_mut().expect("running");
            let grace = async {
                match interrupted_at {
                    Some(t) => tokio::time::sleep_until(t + INTERRUPT_GRACE).await,
                    None => std::future::pending().await,
                }
            };
            let ev = tokio::select! {
                ev = async {
                    if let Some(io) = &room {
                        io.room().await;
                    }
                    runner.next_event().await
                } => ev,
                _ = irq.changed(), if interrupted_at.is_none() => {
                    runner.interrupt().await;
                    interrupted_at = Some(tokio::time::Instant::now());
                    continue;
                }
                _ = grace => {
                    if let Some(r) = self.runner.take() { r.kill().await; }
                    break Err(CellError::Interrupted(": it did not stop within 1 s, so its runner was replaced (items are kept)".into()));
                }
                m = cluster::next_message(&mut self.cluster) => {
                    match m {
                        Some((msg, payload)) => cluster::relay_to_runner(runner, msg, &payload).await,
                        None => self.cluster = None,
                    }
                    continue;
                }
                _ = watch_controller.tick(), if !engines.is_empty() => {
                    let why = match self.cluster.as_ref().map(|c| c.fallen_silent()) {
                        Some(None) => None,
                        Some(Some(s)) => Some(format!("the controller fell silent ({:.1} s without a heartbeat): it may have died; %cluster status says more", s.as_secs_f64())),
                        None => Some("the cluster connection closed".to_string()),
                    };
                    if let Some(why) = why {
                        for e in std::mem::take(&mut engines) {
                            let _ = runner.from_engine(e, crate::exec::frames::tag::ENGINE_LOST, why.as_bytes()).await;
                        }
                    }
                    continue;
                }
            };
            match ev {
                CellEvent::Stdout(b) => sink.stdout(&b),
                CellEvent::Stderr(b) => sink.stderr(&b),
                CellEvent::Display { id, update, data } => {
                    // Output printed before the display comes before it.
                    let p = sink.stdout.feed(b"");
                    sink.pieces(p);
                    sink.display(id, update, data);
                }
                CellEvent::ClearOutput { wait } => {
                    if let Some(io) = &sink.iopub {
                        io.publish(Channel::Shell, &ClearOutput { wait });
                    }
                }
                CellEvent::Result(data) => sink.result(data),
                CellEvent::InputRequest { prompt, password } => {
                    let answer = match input {
                        None => Err(
                            "input(): this client does not accept input (allow_stdin is false)"
                                .to_string(),
                        ),
                        Some(origin) => {
                            let rx = stdin.ask(origin, prompt, password);
                            tokio::select! {
                                v = rx => v.map_err(|_| "input(): the kernel is shutting down".to_string()),
                                _ = irq.changed() => {
                                    interrupted_at = Some(tokio::time::Instant::now());
                                    Err("input(): interrupted".to_string())
                                }
                            }
                        }
                    };
                    let _ = runner.answer_input(answer).await;
                }
                CellEvent::ToEngine {
                    engine,
                    tag,
                    payload,
                } => {
                    cluster::relay_to_engine(
                        &mut self.cluster,
                        runner,
                        &layers,
                        engine,
                        tag,
                        payload,
                    )
                    .await
                }
                CellEvent::Done => {
                    *end = CellEnd::Completed;
                    break Ok(());
                }
                CellEvent::Panic(p) => {
                    *end = CellEnd::Unwound { kept: vec![] };
                    break Err(self.panic_error(built, &p));
                }
                CellEvent::Failed { message, kept } => {
                    *end = CellEnd::Unwound { kept };
                    break Err(CellError::Failed(message));
                }
                CellEvent::LoadError(m) => break Err(CellError::Load(m)),
                CellEvent::Exited(how) => {
                    self.runner = None;
                    let what = format!("the runner process was {} while running this cell", how.0);
                    break Err(CellError::RunnerDied(what));
                }
            }
        };
        match (interrupted_at, outcome) {
            (Some(_), Err(e @ CellError::Interrupted(_))) => Err(e),
            (Some(_), _) => Err(CellError::Interrupted(String::new())),
            (None, o) => o,
        }
    }
}
