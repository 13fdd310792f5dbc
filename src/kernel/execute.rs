//! Running one `execute_request`: magics, compiling, running in the runner, and the
//! outputs, errors and reply that come of it.
//!
//! [`Executor`] is split by job over child modules, each an `impl Executor` block:
//! - `warmup`: the toolchain, prelude and serde builds, and the session;
//! - `dep`: `:dep` lines;
//! - `magics`: one type per magic (parse and apply) and the dispatch (`run_code`);
//! - `parallel`: what `%%parallel processes` and `cluster` cells send to workers;
//! - `cell`: compiling and running a cell's Rust code;
//! - `runner`: the runner's lifecycle and the event pump;
//! - `panic`: panic reports as errors;
//! - `snapshots`: the variables after a cell, their snapshots and restores;
//! - `tiers`: telling the session what ran long, and building hot cells at
//!   level 3 while the kernel is idle;
//! - `cluster`: `%cluster` and the relays to engines;
//! - `background`: `--noblock` runs, `%wait` and `%pending`;
//! - `sink` and `progress`: where outputs go, and in-place progress lines.
//!
//! This file holds the executor's state, its public accessors and the request's
//! course from input to reply (history, user expressions).

mod background;
mod cell;
mod cluster;
mod dep;
pub mod errors;
pub mod magics;
mod panic;
mod parallel;
mod progress;
mod runner;
mod sink;
mod snapshots;
mod tiers;
mod warmup;

use super::history::History;
use super::iopub::{Channel, Iopub};
use super::stdin::{Origin, Stdin};
use crate::compile::deps::DepSet;
use crate::compile::session::{Compiled, Settings};
use crate::compile::Session;
use crate::exec::Runner;
use crate::protocol::messages::{
    ExecuteInput, ExecuteReply, ExecuteRequest, MimeBundle, ReplyStatus,
};
pub use errors::CellError;
use serde_json::{json, Map, Value};
use sink::Sink;
use std::path::PathBuf;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warmup::{prepare, BaseDeps, Warm};

/// Owns everything a cell needs: the compiled session, the runner, the counter and
/// the history.
pub struct Executor {
    cache: PathBuf,
    warm: Option<JoinHandle<Warm>>,
    session: Option<Session>,
    /// What `%opt`, `%edition` and `%efmt` set, for this and later sessions.
    settings: Settings,
    /// `%timing`: each cell says how long it took.
    show_timing: bool,
    /// The code of the last compile error (`E0308`), for `%explain`.
    last_error_code: Option<String>,
    runner: Option<Runner>,
    pub count: u64,
    pub history: History,
    iopub: Iopub,
    stdin: Stdin,
    interrupts: watch::Receiver<u64>,
    /// The serde build, until the session has taken it.
    base: Option<BaseDeps>,
    /// The session's `:dep` lines.
    dep_set: DepSet,
    /// Where runners write variable snapshots (private to this kernel, 0700).
    snapshots: tempfile::TempDir,
    /// Whether the user has been told that snapshots are off.
    told_no_snapshots: bool,
    /// Whether variables are snapshotted after every cell (`FERROCELL_SNAPSHOTS=off`
    /// turns that off: a dead runner then loses them; `%%parallel processes` still
    /// snapshots what it sends).
    after_each_cell: bool,
    /// Variables changed by the last cell, to snapshot before the next one.
    unsaved: Vec<String>,
    /// The saver the runner was handed last and whose end has not been read yet
    /// (see [`Executor::finish_saving`]).
    saving: Option<snapshots::PendingSaver>,
    /// `--noblock` runs, until `%wait` takes them.
    background: background::Background,
    /// The cluster `%%parallel cluster` runs on (`%cluster start` or `connect`).
    cluster: Option<crate::cluster::client::Client>,
    /// Variables that `--persist` cells keep on the engines, with their types.
    engine_vars: crate::compile::vars::Vars,
    /// A cell that just became hot, to build at level 3 while idle (`tiers`).
    tier_up: Option<(String, crate::compile::Timing)>,
    /// std's documentation, found once the toolchain is known (for completion).
    std_docs: std::sync::OnceLock<Option<super::std_docs::StdDocs>>,
}

impl Executor {
    /// Creates the executor and starts finding rustc and building the prelude in the
    /// background, so that the first cell does not wait for it from scratch.
    pub fn new(
        cache: PathBuf,
        history: History,
        iopub: Iopub,
        stdin: Stdin,
        interrupts: watch::Receiver<u64>,
    ) -> Self {
        let warm = Some(tokio::spawn(prepare(cache.clone())));
        let snapshots = crate::exec::savers::private_dir()
            .expect("a private temporary directory for snapshots");
        Executor {
            base: None,
            dep_set: DepSet::default(),
            snapshots,
            told_no_snapshots: false,
            after_each_cell: std::env::var_os("FERROCELL_SNAPSHOTS").is_none_or(|v| v != "off"),
            unsaved: Vec::new(),
            saving: None,
            background: Default::default(),
            cluster: None,
            engine_vars: Default::default(),
            tier_up: None,
            cache,
            warm,
            session: None,
            std_docs: std::sync::OnceLock::new(),
            settings: Settings::default(),
            show_timing: false,
            last_error_code: None,
            runner: None,
            count: 0,
            history,
            iopub,
            stdin,
            interrupts,
        }
    }

    /// Names of the session's variables and items, for completion.
    pub fn item_names(&self) -> Vec<String> {
        let Some(s) = self.session.as_ref() else {
            return vec![];
        };
        s.vars().keys().cloned().chain(s.item_names()).collect()
    }

    /// A session variable's type as the user would write it, for inspection.
    pub fn var_type(&self, name: &str) -> Option<String> {
        let s = self.session.as_ref()?;
        let v = s.vars().get(name)?;
        Some(crate::compile::vars::short_type(&v.ty))
    }

    /// The prepared session, once the toolchain is ready (for completion).
    pub fn prepared(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// std's documentation beside the session's toolchain, if rustup installed it.
    pub fn std_docs(&self) -> Option<&super::std_docs::StdDocs> {
        let session = self.session.as_ref()?;
        self.std_docs
            .get_or_init(|| super::std_docs::StdDocs::beside(&session.toolchain().target_libdir))
            .as_ref()
    }

    /// The newest definition of an item, for inspection.
    pub fn item_source(&self, name: &str) -> Option<(u64, String)> {
        self.session.as_ref().and_then(|s| s.item_source(name))
    }

    /// Where runners write the variables' snapshots. The kernel removes it as it
    /// exits: the process ends without dropping the executor.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.snapshots.path().to_path_buf()
    }

    /// Kills the runner (at shutdown).
    pub async fn stop(&mut self) {
        self.saving = None;
        self.background = Default::default();
        if let Some(r) = self.runner.take() {
            r.kill().await;
        }
        // A cluster this kernel started goes with it (one it connected to stays).
        if let Some(mut c) = self.cluster.take() {
            if c.launched.is_some() {
                let _ = c.stop().await;
            }
        }
    }

    /// Runs one execute request and returns its reply. Outputs go to IOPub as they
    /// happen (none when silent); input requests go to `origin`, the client that
    /// asked, when the request allows stdin.
    pub async fn execute(&mut self, origin: Origin, req: &ExecuteRequest) -> ExecuteReply {
        let mut irq = self.interrupts.clone();
        irq.borrow_and_update();
        let counts = req.store_history && !req.silent;
        if counts {
            self.count += 1;
        }
        if !req.silent {
            self.iopub.publish(
                Channel::Shell,
                &ExecuteInput {
                    code: req.code.clone(),
                    execution_count: if counts { self.count } else { self.count + 1 },
                },
            );
        }
        let iopub = (!req.silent).then(|| self.iopub.clone());
        let mut sink = Sink::new(iopub, self.count);
        let mut payload = Vec::new();
        let outcome = self
            .run_code(&origin, req, &mut sink, &mut payload, &mut irq)
            .await;
        if counts {
            let output = sink
                .result
                .as_ref()
                .and_then(|r| r.get("text/plain"))
                .and_then(Value::as_str)
                .map(String::from);
            self.history.record(self.count, &req.code, output);
        }
        match outcome {
            Ok(()) => {
                let user_expressions = self.user_expressions(req, &mut irq).await;
                ExecuteReply {
                    status: ReplyStatus::Ok,
                    execution_count: self.count,
                    payload: Some(payload),
                    user_expressions: Some(user_expressions),
                    error: None,
                }
            }
            Err(e) => {
                // The edge: the failure becomes the wire's error content here.
                let e = e.to_wire();
                sink.error(&e);
                ExecuteReply {
                    status: ReplyStatus::Error,
                    execution_count: self.count,
                    payload: None,
                    user_expressions: Some(Map::new()),
                    error: Some(e),
                }
            }
        }
    }

    /// Evaluates the request's user expressions after a successful cell.
    async fn user_expressions(
        &mut self,
        req: &ExecuteRequest,
        irq: &mut watch::Receiver<u64>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, expr) in &req.user_expressions {
            let value = match self.evaluate(expr, irq).await {
                Ok(data) => json!({"status": "ok", "data": data, "metadata": {}}),
                Err(e) => {
                    let e = e.to_wire();
                    json!({"status": "error", "ename": e.ename, "evalue": e.evalue, "traceback": e.traceback})
                }
            };
            out.insert(name.clone(), value);
        }
        out
    }

    async fn evaluate(
        &mut self,
        expr: &str,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<MimeBundle, CellError> {
        let count = self.count;
        let session = self.session(irq, None).await?;
        let built = match session.build(expr, count).await {
            Ok(Compiled::Cell(b)) => b,
            Ok(Compiled::Empty) => return Err(CellError::Syntax("empty expression".into())),
            Err(e) => return Err(e.into()),
        };
        let (r, sink) = self.run_internal(&built, irq).await;
        self.settle_vars(&built, r, irq).await?;
        Ok(sink.result.unwrap_or_else(|| {
            let mut m = Map::new();
            m.insert("text/plain".into(), Value::String("()".into()));
            m
        }))
    }
}
