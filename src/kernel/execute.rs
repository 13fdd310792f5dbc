//! Running one `execute_request`: magics, compiling, running in the runner, and the
//! outputs, errors and reply that come of it.

mod cluster;
mod progress;

use super::history::History;
use super::iopub::{Channel, Iopub, StreamName};
use super::outputs::{self, Piece};
use super::stdin::Stdin;
use crate::compile::deps::{self, BuiltDeps, DepSet};
use crate::compile::prelude::{self, Prelude};
use crate::compile::session::{Compiled, Settings};
use crate::compile::{BuiltCell, CompileError, Session, Timing, Toolchain};
use crate::exec::runner::PanicReport;
use crate::exec::{CellEvent, Runner};
use crate::magics::parallel::Backend;
use crate::magics::{self, CellKind, Magic};
use crate::protocol::messages::{
    ClearOutput, DisplayData, ErrorContent, ExecuteInput, ExecuteReply, ExecuteRequest,
    ExecuteResult, MimeBundle, Transient, UpdateDisplayData,
};
use crate::protocol::Message;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long an interrupted cell may take to stop by itself before its runner is
/// killed and replaced.
const INTERRUPT_GRACE: Duration = Duration::from_millis(1000);

fn error(ename: &str, evalue: impl Into<String>, traceback: Vec<String>) -> ErrorContent {
    let evalue = evalue.into();
    let traceback = if traceback.is_empty() {
        vec![format!("{ename}: {evalue}")]
    } else {
        traceback
    };
    ErrorContent {
        ename: ename.into(),
        evalue,
        traceback,
    }
}

/// How far a cell's own code got, which decides what the runner's variable store
/// holds afterwards (see [`Executor::settle_vars`]).
#[derive(Debug, Clone, PartialEq)]
enum CellEnd {
    /// It never started (the library did not load, the runner was not there).
    NotRun,
    /// It ran to its end and put back everything it keeps, even if the user
    /// interrupted it and it obeyed.
    Completed,
    /// It panicked or stopped at a `?`: what it took is back; of its new bindings,
    /// only those a failing `?` kept (named here).
    Unwound { kept: Vec<String> },
}

/// The code of a rendered rustc error (`error[E0308]: …` gives `E0308`).
fn error_code(rendered: &str) -> Option<String> {
    let rest = rendered.strip_prefix("error[")?;
    let (code, _) = rest.split_once(']')?;
    Some(code.to_string())
}

fn interrupted(detail: &str) -> ErrorContent {
    error(
        "KeyboardInterrupt",
        format!("the cell was interrupted{detail}"),
        vec![],
    )
}

/// A cell that prints the session's variables with their types and sizes (the
/// size is measured where the values live, in the runner). The snapshot column says
/// how large each one's crash-safe copy is, or that it has none.
fn vars_listing(vars: &crate::compile::vars::Vars, snapshot: impl Fn(&str) -> String) -> String {
    if vars.is_empty() {
        return String::new();
    }
    let width = vars.keys().map(|n| n.len()).max().unwrap_or(4).max(8);
    let row = format!("\"{{:<{width}}}  {{:>10}}  {{:>10}}  {{}}\"");
    let mut code = format!("println!({row}, \"Variable\", \"Size\", \"Snapshot\", \"Type\");\n");
    for (name, var) in vars {
        code.push_str(&format!(
            "println!({row}, {name:?}, format!(\"{{}} B\", ::std::mem::size_of_val(&{name})), {:?}, {:?});\n",
            snapshot(name),
            crate::compile::vars::display_type(&var.ty)
        ));
    }
    code
}

/// A size in bytes as `%vars` shows it.
fn format_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The request that the kernel's own runs (user expressions, savers, restores)
/// answer to: no client sees their outputs.
fn internal_request() -> Message {
    Message {
        identities: vec![],
        header: crate::protocol::Header::new("execute_request", ""),
        parent: None,
        metadata: Value::Null,
        content: Value::Null,
        buffers: vec![],
        malformed: None,
    }
}

/// Reads the restore cell's value, a `Vec<&str>` in Debug form: `["a", "b"]`.
fn parse_name_list(text: &str) -> Vec<String> {
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Seconds as `%time` shows them (three significant digits, a fitting unit).
fn format_seconds(s: f64) -> String {
    match s {
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 1e-3 => format!("{:.1} ms", s * 1e3),
        s => format!("{:.0} µs", s * 1e6),
    }
}

/// Where a cell's outputs go: to IOPub, or (silent runs, user expressions) nowhere.
struct Sink {
    iopub: Option<Iopub>,
    count: u64,
    stdout: outputs::Stdout,
    stderr: outputs::Utf8,
    result: Option<MimeBundle>,
}

impl Sink {
    fn new(iopub: Option<Iopub>, count: u64) -> Self {
        Sink {
            iopub,
            count,
            stdout: Default::default(),
            stderr: Default::default(),
            result: None,
        }
    }

    fn pieces(&self, pieces: Vec<Piece>) {
        let Some(io) = &self.iopub else { return };
        for p in pieces {
            match p {
                Piece::Text(t) => io.stream(StreamName::Stdout, t),
                Piece::Display { mime, data } => {
                    let mut bundle = Map::new();
                    bundle.insert(mime, Value::String(data));
                    io.publish(
                        Channel::Shell,
                        &DisplayData {
                            data: bundle,
                            metadata: Map::new(),
                            transient: Transient::default(),
                        },
                    );
                }
            }
        }
    }

    fn stdout(&mut self, bytes: &[u8]) {
        let p = self.stdout.feed(bytes);
        self.pieces(p);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        let t = self.stderr.feed(bytes);
        if let Some(io) = &self.iopub {
            io.stream(StreamName::Stderr, t);
        }
    }

    fn finish(&mut self) {
        let p = self.stdout.finish();
        self.pieces(p);
        let t = self.stderr.finish();
        if let Some(io) = &self.iopub {
            io.stream(StreamName::Stderr, t);
        }
    }

    fn display(&self, id: String, update: bool, data: MimeBundle) {
        let Some(io) = &self.iopub else { return };
        let d = DisplayData {
            data,
            metadata: Map::new(),
            transient: Transient {
                display_id: Some(id),
            },
        };
        if update {
            io.publish(Channel::Shell, &UpdateDisplayData(d));
        } else {
            io.publish(Channel::Shell, &d);
        }
    }

    fn result(&mut self, data: MimeBundle) {
        if let Some(io) = &self.iopub {
            io.publish(
                Channel::Shell,
                &ExecuteResult {
                    execution_count: self.count,
                    data: data.clone(),
                    metadata: Map::new(),
                },
            );
        }
        self.result = Some(data);
    }

    fn error(&self, e: &ErrorContent) {
        if let Some(io) = &self.iopub {
            io.publish(Channel::Shell, e);
        }
    }
}

/// The serde build for snapshots, running in the background from kernel start.
type BaseDeps = JoinHandle<Result<BuiltDeps, String>>;

type Warm = Result<(Toolchain, Prelude, BaseDeps), String>;

/// How long a new runner waits for the snapshots the last one was writing.
const SAVER_PATIENCE: Duration = Duration::from_secs(120);

/// How long a cell waits for the serde build before it runs without snapshots
/// (long enough for a build that is only a look at the cache).
const BASE_WAIT: Duration = Duration::from_secs(1);

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
    /// The cluster `%%parallel cluster` runs on (`%cluster start` or `connect`).
    cluster: Option<crate::cluster::client::Client>,
    /// Variables that `--persist` cells keep on the engines, with their types.
    engine_vars: crate::compile::vars::Vars,
    /// std's documentation, found once the toolchain is known (for completion).
    std_docs: std::sync::OnceLock<Option<super::std_docs::StdDocs>>,
}

async fn prepare(cache: PathBuf) -> Warm {
    let toolchain = Toolchain::probe().await.map_err(|e| e.to_string())?;
    let _ =
        super::info::RUST_VERSION.set(toolchain.version.trim_start_matches("rustc ").to_string());
    let prelude = prelude::ensure(&toolchain, &cache)
        .await
        .map_err(|e| e.to_string())?;
    let base = build_base(toolchain.clone(), cache);
    Ok((toolchain, prelude, base))
}

/// Starts the one-time serde build (a look at the cache once it has been done).
fn build_base(toolchain: Toolchain, cache: PathBuf) -> BaseDeps {
    tokio::spawn(async move {
        let log = |line: &str| tracing::debug!(target: "ferrocell::deps", "{line}");
        deps::build(&DepSet::default(), &toolchain, &cache, None, &log)
            .await
            .map_err(|e| e.to_string())
    })
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
            cluster: None,
            engine_vars: Default::default(),
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

    /// Makes the session from the toolchain and prelude once their warm-up is done,
    /// waiting a little for it (completion and inspection use the session, and must
    /// not hold up the shell for a first prelude build). A failed warm-up is not
    /// tried again here: the next cell does, and says why.
    pub async fn prepare(&mut self) {
        if self.session.is_some() {
            return;
        }
        let waited = std::time::Instant::now();
        loop {
            match &self.warm {
                Some(w) if w.is_finished() => break,
                Some(_) if waited.elapsed() < Duration::from_secs(3) => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                _ => return,
            }
        }
        let mut irq = self.interrupts.clone();
        if let Err(e) = self.session(&mut irq, None).await {
            tracing::debug!(error = %e.evalue, "no session for completion");
        }
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

    async fn session(
        &mut self,
        irq: &mut watch::Receiver<u64>,
        sink: Option<&Sink>,
    ) -> Result<&mut Session, ErrorContent> {
        if self.session.is_none() {
            let mut warm = match self.warm.take() {
                Some(h) => h,
                None => tokio::spawn(prepare(self.cache.clone())),
            };
            // The first use on a machine builds the prelude: say so, as it goes.
            let started = std::time::Instant::now();
            let mut shown = sink.map(|s| progress::Progress::new(s, "prelude"));
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let ready = loop {
                tokio::select! {
                    r = &mut warm => break r.unwrap_or_else(|e| Err(e.to_string())),
                    _ = irq.changed() => {
                        // The build goes on, for the next cell to wait on.
                        self.warm = Some(warm);
                        if let Some(p) = shown.as_mut() {
                            p.finish("preparing Rust: interrupted (it goes on for the next cell)");
                        }
                        return Err(interrupted(" while the toolchain was being prepared"));
                    }
                    _ = tick.tick() => {
                        let waited = started.elapsed().as_secs_f64();
                        if let Some(p) = shown.as_mut().filter(|_| waited > 0.9) {
                            p.show(format!("preparing Rust: building ferrocell's prelude and runner, once per toolchain ({waited:.0} s)"));
                        }
                    }
                }
            };
            if let Some(p) = shown.as_mut() {
                p.finish(match &ready {
                    Ok(_) => format!(
                        "Rust is ready: ferrocell's prelude and runner were built in {:.1} s (once per toolchain)",
                        started.elapsed().as_secs_f64()
                    ),
                    Err(_) => "preparing Rust failed: the error follows".to_string(),
                });
            }
            let (toolchain, prelude, base) =
                ready.map_err(|e| error("ToolchainError", e, vec![]))?;
            let mut s = Session::new(toolchain, prelude, &self.cache);
            s.settings = self.settings;
            s.set_snapshot_dir(self.snapshots.path().to_path_buf());
            self.session = Some(s);
            self.base = Some(base);
        }
        Ok(self.session.as_mut().expect("just set"))
    }

    /// Takes the serde build into the session once it is done, waiting for it up to
    /// `wait`. Until then cells run without snapshots.
    async fn take_base(&mut self, wait: Duration, sink: &mut Sink) {
        let Some(handle) = self.base.as_mut() else {
            return;
        };
        let result = match tokio::time::timeout(wait, handle).await {
            Err(_) => {
                if !self.told_no_snapshots {
                    self.told_no_snapshots = true;
                    sink.stderr(b"ferrocell: building serde in the background (once per machine); variables become crash-safe when it is done\n");
                }
                return;
            }
            Ok(r) => r.unwrap_or_else(|e| Err(e.to_string())),
        };
        self.base = None;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let attached = match result {
            // A `:dep` build already brought a larger set.
            Ok(_) if session.deps().is_some() => Ok(()),
            Ok(built) => session.attach_deps(built).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = attached {
            sink.stderr(
                format!("ferrocell: variables are not crash-safe in this session: {e}\n")
                    .as_bytes(),
            );
        }
    }

    /// Builds the crates of the cell's `:dep` lines (cargo's progress shows as it
    /// goes) and makes them usable from the cell's code on. `:dep` alone lists them.
    async fn add_deps(
        &mut self,
        lines: &[&str],
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), ErrorContent> {
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
            let dep = deps::parse_line(line, &cwd)
                .map_err(|e| error("DepError", e.to_string(), vec![]))?;
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
                Err(e) => Some(error("DepError", e.to_string(), vec![])),
            },
            Some(Err(e)) => Some(error("DepError", e.to_string(), vec![])),
            None => Some(interrupted(" while its crates were being built")),
        };
        if let Some(e) = failure {
            shown
                .lock()
                .expect("progress")
                .finish(format!("building crates stopped: {}", e.ename));
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

    /// Runs one execute request and returns its reply. Outputs go to IOPub as they
    /// happen (none when silent).
    pub async fn execute(&mut self, msg: &Message, req: &ExecuteRequest) -> ExecuteReply {
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
            .run_code(msg, req, &mut sink, &mut payload, &mut irq)
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
                    status: "ok",
                    execution_count: self.count,
                    payload: Some(payload),
                    user_expressions: Some(user_expressions),
                    error: None,
                }
            }
            Err(e) => {
                sink.error(&e);
                ExecuteReply {
                    status: "error",
                    execution_count: self.count,
                    payload: None,
                    user_expressions: Some(Map::new()),
                    error: Some(e),
                }
            }
        }
    }

    async fn run_code(
        &mut self,
        msg: &Message,
        req: &ExecuteRequest,
        sink: &mut Sink,
        payload: &mut Vec<Value>,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), ErrorContent> {
        let mut timing = Timing::None;
        let (dep_lines, code) = magics::split_deps(&req.code);
        if !dep_lines.is_empty() {
            self.add_deps(&dep_lines, sink, irq).await?;
        }
        let code: std::borrow::Cow<str> = match magics::parse(code) {
            CellKind::Rust(code) => code.into(),
            CellKind::Unknown(line) => {
                return Err(error(
                    "UnknownMagic",
                    format!("{line} is not a ferrocell magic; %lsmagic lists them"),
                    vec![],
                ))
            }
            CellKind::BadArgs(why) => return Err(error("MagicError", why, vec![])),
            CellKind::Magic { magic, rest } => {
                match magic {
                    Magic::Help => payload.push(json!({
                        "source": "page",
                        "data": {"text/plain": magics::help_text()},
                        "start": 0
                    })),
                    Magic::Exit => payload.push(json!({
                        "source": "ask_exit",
                        "keepkernel": false
                    })),
                    Magic::LsMagic => {
                        sink.stdout(format!("{}\n", magics::lsmagic_text()).as_bytes())
                    }
                    Magic::Opt(None) => {
                        let how = if self.settings.opt_level == Settings::default().opt_level {
                            " (the default: the least compile plus run time in bench/opt.py)"
                        } else {
                            ""
                        };
                        let level = self.settings.opt_level;
                        sink.stdout(format!("opt-level {level}{how}\n").as_bytes())
                    }
                    Magic::Opt(Some(n)) => self.set(|s| s.opt_level = n),
                    Magic::Edition(None) => {
                        let edition = self.settings.edition;
                        let how = if edition == Settings::default().edition {
                            " (the default, as `cargo new` makes packages)"
                        } else {
                            ""
                        };
                        sink.stdout(format!("edition {edition}{how}\n").as_bytes())
                    }
                    Magic::Edition(Some(e)) => self.set(|s| s.edition = e),
                    Magic::Efmt(None) => {
                        let format = self.settings.error_format.as_str();
                        sink.stdout(
                            format!("errors that reach a `?` are shown as {format}\n").as_bytes(),
                        )
                    }
                    Magic::Efmt(Some(f)) => self.set(|s| s.error_format = f),
                    Magic::Timing => {
                        self.show_timing = !self.show_timing;
                        let on = if self.show_timing { "on" } else { "off" };
                        sink.stdout(format!("timing: {on}\n").as_bytes());
                    }
                    Magic::Explain(code) => {
                        let Some(code) = code.or_else(|| self.last_error_code.clone()) else {
                            return Err(error(
                                "MagicError",
                                "no error to explain yet: name a code, as in %explain E0308",
                                vec![],
                            ));
                        };
                        // Only rustc is needed, not a prepared session.
                        let toolchain = crate::compile::toolchain::Toolchain::probe()
                            .await
                            .map_err(|e| error("ToolchainError", e.to_string(), vec![]))?;
                        let text = crate::compile::rustc::explain(&toolchain.rustc, &code)
                            .await
                            .map_err(|why| error("MagicError", why, vec![]))?;
                        sink.stdout(text.as_bytes());
                    }
                    Magic::Reset => {
                        if let Some(r) = self.runner.take() {
                            r.kill().await;
                        }
                        crate::exec::savers::kill(self.snapshots.path());
                        // Their types name layers that are gone now.
                        self.engine_vars.clear();
                        if let Ok(dir) = std::fs::read_dir(self.snapshots.path()) {
                            for entry in dir.flatten() {
                                let _ = std::fs::remove_file(entry.path());
                            }
                        }
                        if let Some(s) = &mut self.session {
                            s.clear()
                                .await
                                .map_err(|e| error("ResetError", e.to_string(), vec![]))?;
                        }
                        sink.stdout(b"Session reset: every item and variable is gone.\n");
                    }
                    Magic::Vars => {
                        let dir = self.snapshots.path();
                        let snapshot = |name: &str| match std::fs::metadata(dir.join(name)) {
                            Ok(m) => format_bytes(m.len()),
                            Err(_) if crate::exec::savers::writing(dir, name) => {
                                "saving".to_string()
                            }
                            Err(_) => "none".to_string(),
                        };
                        let listing = self
                            .session
                            .as_ref()
                            .map(|s| vars_listing(s.vars(), snapshot));
                        match listing {
                            Some(code) if !code.is_empty() => {
                                return self.run_listing(msg, &code, sink, irq).await
                            }
                            _ => sink.stdout(b"No variables.\n"),
                        }
                    }
                    Magic::Cluster(cmd) => self.cluster_magic(cmd, sink).await?,
                    Magic::Time => timing = Timing::Once,
                    Magic::Timeit { loops, runs } => timing = Timing::Repeat { loops, runs },
                    Magic::Parallel(p) => {
                        if rest.trim().is_empty() {
                            return Err(error(
                                "MagicError",
                                "%%parallel needs a body: the code each worker runs",
                                vec![],
                            ));
                        }
                        if p.persist {
                            return self.run_persist(msg, req, sink, irq, &p, &rest).await;
                        }
                        let code = magics::parallel::cell_code(&p, &rest);
                        let args = match p.backend {
                            Backend::Threads => vec![],
                            Backend::Processes => self.processes_setup(&code, sink, irq).await?,
                            Backend::Cluster => {
                                let mut args = self.processes_setup(&code, sink, irq).await?;
                                args.push(self.cluster_engines(&p, sink).await?);
                                args
                            }
                        };
                        return self
                            .run_rust(msg, req, sink, irq, &code, timing, Some(args))
                            .await;
                    }
                }
                rest
            }
        };
        self.run_rust(msg, req, sink, irq, &code, timing, None)
            .await
    }

    /// What a `%%parallel processes` cell needs before it runs: serde (variables and
    /// values travel with it), a current snapshot of each session variable the body
    /// uses, and the restore library that loads them on a worker. Returns the cell's
    /// run arguments: the restore library and entry point, then each variable with
    /// the version of its snapshot, so that a worker loads only what changed.
    async fn processes_setup(
        &mut self,
        code: &str,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<Vec<String>, ErrorContent> {
        self.session(irq, Some(sink)).await?;
        if self.base.is_some() {
            sink.stderr(b"ferrocell: %%parallel on processes and engines sends values with serde; waiting for its build (once per machine)\n");
        }
        self.take_base(Duration::from_secs(600), sink).await;
        let session = self.session.as_ref().expect("session");
        if !session.snapshots() {
            return Err(error(
                "ParallelError",
                "%%parallel on processes and engines sends values with serde, which this session could not build (see above); %%parallel threads needs no serde",
                vec![],
            ));
        }
        let used = session.vars_used(code);
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
        let session = self.session.as_mut().expect("session");
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
            return Err(error(
                "ParallelError",
                format!(
                    "%%parallel cannot send {} to the worker processes or engines: its type has no serde support \
                     (derive serde's Serialize and Deserialize for it, or use %%parallel threads, which shares variables in place)",
                    unsendable.join(", ")
                ),
                vec![],
            ));
        }
        let mut args = vec![String::new(), String::new()];
        if !used.is_empty() {
            let names: Vec<String> = used.iter().map(|(n, _)| n.clone()).collect();
            let restore = tokio::select! {
                r = session.build_restore(Some(&names)) => r,
                _ = irq.changed() => return Err(interrupted(" while it was compiling")),
            };
            match restore {
                Ok(Some(b)) => {
                    args = vec![b.lib.display().to_string(), b.symbol.clone()];
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(error(
                        "ParallelError",
                        format!("the loader of the variables for the workers did not compile: {e}"),
                        vec![],
                    ))
                }
            }
        }
        args.extend(versions);
        Ok(args)
    }

    /// Compiles and runs a cell's Rust code (after its magic line, if any).
    #[allow(clippy::too_many_arguments)]
    async fn run_rust(
        &mut self,
        msg: &Message,
        req: &ExecuteRequest,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
        code: &str,
        timing: Timing,
        parallel: Option<Vec<String>>,
    ) -> Result<(), ErrorContent> {
        if code.trim().is_empty() {
            sink.finish();
            return Ok(());
        }
        let count = self.count;
        self.session(irq, Some(sink)).await?;
        self.take_base(BASE_WAIT, sink).await;
        let session = self.session.as_mut().expect("session");
        let started = std::time::Instant::now();
        let built = tokio::select! {
            r = session.build_timed(code, count, timing) => r,
            _ = irq.changed() => return Err(interrupted(" while it was compiling")),
        };
        if let (Timing::Once, Ok(Compiled::Cell(b))) = (timing, &built) {
            let took = if b.compiled {
                format_seconds(started.elapsed().as_secs_f64())
            } else {
                "none (cached)".into()
            };
            sink.stdout(format!("Compile time: {took}\n").as_bytes());
        }
        let compile_time = started.elapsed();
        let built = match built {
            Ok(Compiled::Empty) => return Ok(()),
            Ok(Compiled::Cell(b)) => b,
            Err(CompileError::Code {
                summary,
                mut rendered,
            }) => {
                if let Some(hint) = parallel
                    .is_some()
                    .then(|| magics::parallel::hint(&summary, &rendered))
                    .flatten()
                {
                    if hint.headlines_only {
                        rendered = rendered
                            .iter()
                            .filter_map(|r| r.lines().next().map(String::from))
                            .collect();
                        rendered.dedup();
                    }
                    rendered.push(hint.note.to_string());
                }
                self.last_error_code = rendered.iter().find_map(|r| error_code(r));
                return Err(error("CompileError", summary, rendered));
            }
            Err(e) => return Err(error("CompileError", e.to_string(), vec![])),
        };
        let mut built = built;
        if let Some(args) = parallel {
            built.args = args;
        }
        let ran = std::time::Instant::now();
        let r = self
            .run_built(&built, msg, req.allow_stdin, sink, irq)
            .await;
        sink.finish();
        let run_time = ran.elapsed();
        let r = self.settle_vars(&built, r, irq).await;
        for note in &built.vars.notes {
            sink.stderr(format!("ferrocell: {note}\n").as_bytes());
        }
        if self.show_timing {
            let took = |d: Duration| format_seconds(d.as_secs_f64());
            sink.stdout(
                format!(
                    "Took {} (compile {}, run {})\n",
                    took(compile_time + run_time),
                    took(compile_time),
                    took(run_time)
                )
                .as_bytes(),
            );
        }
        sink.finish();
        r
    }

    /// Runs the generated cell that prints `%vars`.
    async fn run_listing(
        &mut self,
        msg: &Message,
        code: &str,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), ErrorContent> {
        let count = self.count;
        let session = self.session(irq, Some(sink)).await?;
        let built = match session.build(code, count).await {
            Ok(Compiled::Cell(b)) => b,
            Ok(Compiled::Empty) => return Ok(()),
            Err(e) => return Err(error("VarsError", e.to_string(), vec![])),
        };
        let r = self.run_built(&built, msg, false, sink, irq).await;
        sink.finish();
        self.settle_vars(&built, r, irq).await
    }

    /// Changes how later cells are compiled, in this session and the ones after it.
    fn set(&mut self, change: impl FnOnce(&mut Settings)) {
        change(&mut self.settings);
        if let Some(s) = &mut self.session {
            s.settings = self.settings;
        }
    }

    /// Brings the session's variable table up to date after a cell ran: what it kept
    /// on success; on failure, what went with the cell, or, when the runner died,
    /// what a new runner got back from the snapshots.
    async fn settle_vars(
        &mut self,
        built: &BuiltCell,
        (r, end): (Result<(), ErrorContent>, CellEnd),
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), ErrorContent> {
        let runner_gone = self.runner.is_none();
        let Some(session) = self.session.as_mut() else {
            return r;
        };
        match r {
            Err(mut e) if runner_gone => {
                let (restored, lost) = self.restore_vars(irq).await;
                if !restored.is_empty() {
                    e.traceback.push(format!(
                        "Variables restored as of the last successful cell: {}",
                        restored.join(", ")
                    ));
                }
                if !lost.is_empty() {
                    e.traceback.push(format!(
                        "Variables lost with the runner: {}",
                        lost.join("; ")
                    ));
                }
                Err(e)
            }
            // Nothing was taken out of the store.
            Err(e) if end == CellEnd::NotRun => Err(e),
            Err(mut e) if matches!(end, CellEnd::Unwound { .. }) => {
                let kept = match end {
                    CellEnd::Unwound { kept } => kept,
                    _ => vec![],
                };
                // What the cell put back may have changed before it failed.
                self.unsaved
                    .extend(built.vars.kept_on_panic.iter().map(|(n, _)| n.clone()));
                self.unsaved.extend(kept.iter().cloned());
                let (lost, new) = session.settle_failure(&built.vars, &kept);
                if !new.is_empty() {
                    e.traceback
                        .push(format!("Kept from before the error: {}", new.join(", ")));
                }
                if !lost.is_empty() {
                    e.traceback
                        .push(format!("Variables lost with the cell: {}", lost.join(", ")));
                }
                Err(e)
            }
            // It ran to its end (perhaps interrupted, and it obeyed): all it kept is there.
            r => {
                session.commit_vars(&built.vars);
                self.unsaved
                    .extend(built.vars.kept.iter().map(|(n, _)| n.clone()));
                r
            }
        }
    }

    /// Snapshots the variables the last cell changed, once its reply is out (see
    /// [`Session::build_saver`]): the runner forks a saver that writes them in the
    /// background, and returns at once unless `wait`. A variable whose saver cannot
    /// run loses its snapshot, so that a crash reports it lost rather than restoring
    /// an old value.
    pub async fn save_snapshots(&mut self, wait: bool) {
        if !wait && !self.after_each_cell {
            return;
        }
        let mut names = std::mem::take(&mut self.unsaved);
        names.sort();
        names.dedup();
        if names.is_empty() || self.runner.is_none() {
            return;
        }
        let Some(session) = self.session.as_ref() else {
            return;
        };
        // One saver per type, each given the names of that type.
        let mut by_type: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for n in names {
            if let Some(v) = session.vars().get(&n) {
                by_type.entry(v.ty.clone()).or_default().push(n);
            }
        }
        let mut irq = self.interrupts.clone();
        irq.borrow_and_update();
        for (ty, names) in by_type {
            let session = self.session.as_mut().expect("session");
            let mut built = match session.build_saver(&ty).await {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("the saver for `{ty}` did not compile: {e}");
                    self.drop_snapshots(&names);
                    continue;
                }
            };
            let mode = if wait { "wait" } else { "background" };
            built.args = std::iter::once(mode.to_string())
                .chain(names.iter().cloned())
                .collect();
            let mut sink = Sink::new(None, self.count);
            let msg = internal_request();
            if let (Err(e), _) = self
                .run_built(&built, &msg, false, &mut sink, &mut irq)
                .await
            {
                tracing::warn!("the snapshot of {names:?} failed: {}", e.evalue);
                self.drop_snapshots(&names);
                if self.runner.is_none() {
                    let (restored, lost) = self.restore_vars(&mut irq).await;
                    tracing::warn!(
                        "the runner died while saving; restored {restored:?}, lost {lost:?}"
                    );
                    return;
                }
            }
        }
    }

    fn drop_snapshots(&self, names: &[String]) {
        for n in names {
            let _ = std::fs::remove_file(self.snapshots.path().join(n));
        }
    }

    /// After the runner died: starts a new one and puts back every variable that has
    /// a snapshot. Returns the names restored, and each lost one with the reason.
    async fn restore_vars(&mut self, irq: &mut watch::Receiver<u64>) -> (Vec<String>, Vec<String>) {
        // Savers of the dead runner's last cells finish their snapshots first.
        let dir = self.snapshots.path().to_path_buf();
        if !crate::exec::savers::wait(&dir, SAVER_PATIENCE).await {
            tracing::warn!(
                "snapshot savers still running after {SAVER_PATIENCE:?}; restoring without them"
            );
            crate::exec::savers::kill(&dir);
            crate::exec::savers::wait(&dir, Duration::from_secs(2)).await;
        }
        crate::exec::savers::settle(&dir);
        let off = !self.after_each_cell;
        let Some(session) = self.session.as_mut() else {
            return (vec![], vec![]);
        };
        let mut lost = Vec::new();
        let names: Vec<(String, String)> = session
            .vars()
            .iter()
            .map(|(n, v)| (n.clone(), crate::compile::vars::display_type(&v.ty)))
            .collect();
        for (name, ty) in &names {
            if !session.has_snapshot(name) {
                let why = if off {
                    "snapshots are off (FERROCELL_SNAPSHOTS=off)".to_string()
                } else if crate::exec::savers::writing(&dir, name) {
                    "its snapshot was still being written".to_string()
                } else if let Some(failure) = crate::exec::savers::failure(&dir, name) {
                    format!("no snapshot: {failure}")
                } else if session.snapshots() {
                    format!("`{ty}` has no serde support")
                } else {
                    "snapshots were off (serde was not built yet)".to_string()
                };
                lost.push(format!("{name} ({why})"));
            }
        }
        let built = match session.build_restore(None).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                session.lose_all_vars();
                return (vec![], lost);
            }
            Err(e) => {
                tracing::warn!("the restore cell did not compile: {e}");
                let all = session.lose_all_vars();
                return (
                    vec![],
                    all.into_iter()
                        .map(|n| format!("{n} (its snapshot could not be read back)"))
                        .collect(),
                );
            }
        };
        let mut sink = Sink::new(None, self.count);
        let msg = internal_request();
        let (ran, _) = self.run_built(&built, &msg, false, &mut sink, irq).await;
        let restored: Vec<String> = match (ran, &sink.result) {
            (Ok(()), Some(r)) => r
                .get("text/plain")
                .and_then(Value::as_str)
                .map(parse_name_list)
                .unwrap_or_default(),
            _ => vec![],
        };
        let session = self.session.as_mut().expect("session");
        for (name, _) in &names {
            if !restored.contains(name) {
                session.forget_var(name);
                if session.has_snapshot(name) {
                    lost.push(format!("{name} (its snapshot could not be read back)"));
                }
            }
        }
        (restored, lost)
    }

    async fn runner(&mut self) -> Result<&mut Runner, ErrorContent> {
        if self.runner.is_none() {
            let prelude = self
                .session
                .as_ref()
                .expect("session before runner")
                .prelude();
            let r = Runner::spawn(prelude, self.snapshots.path())
                .await
                .map_err(|e| error("RunnerError", e, vec![]))?;
            self.runner = Some(r);
        }
        Ok(self.runner.as_mut().expect("just set"))
    }

    fn panic_error(&self, built: &BuiltCell, p: &PanicReport) -> ErrorContent {
        if let Some(failed) = p
            .message
            .strip_prefix(crate::exec::frames::tag::PARALLEL_ERROR)
        {
            let mut lines = failed.lines();
            let summary = lines.next().unwrap_or("").to_string();
            let mut traceback = vec![format!("ParallelError: {summary}")];
            traceback.extend(lines.map(|l| format!("  {l}")));
            return error("ParallelError", summary, traceback);
        }
        let place = match (&p.file, p.line) {
            (Some(file), Some(line)) => {
                let map = if std::path::Path::new(file) == built.source_path {
                    Some(&built.map)
                } else {
                    self.session.as_ref().and_then(|s| {
                        s.source_maps()
                            .find(|(path, _)| std::path::Path::new(file) == path.as_path())
                            .map(|(_, m)| m)
                    })
                };
                match map.and_then(|m| Some((m.origin(line)?, m))) {
                    Some((o, m)) => format!("{o}:{}", m.user_column(line, p.column.unwrap_or(1))),
                    None => format!("{file}:{line}:{}", p.column.unwrap_or(1)),
                }
            }
            _ => "an unknown place".into(),
        };
        let thread = p.thread.as_deref().unwrap_or("cell");
        error(
            "Panic",
            p.message.clone(),
            vec![
                format!("thread '{thread}' panicked at {place}:"),
                p.message.clone(),
            ],
        )
    }

    async fn run_built(
        &mut self,
        built: &BuiltCell,
        msg: &Message,
        allow_stdin: bool,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> (Result<(), ErrorContent>, CellEnd) {
        let mut end = CellEnd::NotRun;
        let result = self
            .run_events(built, msg, allow_stdin, sink, irq, &mut end)
            .await;
        (result, end)
    }

    /// Starts the cell and handles its events until it ends; `end` says how far it got.
    async fn run_events(
        &mut self,
        built: &BuiltCell,
        msg: &Message,
        allow_stdin: bool,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
        end: &mut CellEnd,
    ) -> Result<(), ErrorContent> {
        let stdin = self.stdin.clone();
        let runner = self.runner().await?;
        if let Err(e) = runner.start(&built.lib, &built.symbol, &built.args).await {
            self.runner = None;
            return Err(error(
                "RunnerDied",
                format!("the runner could not take the cell: {e}"),
                vec![],
            ));
        }
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
                    break Err(interrupted(": it did not stop within 1 s, so its runner was replaced (items are kept)"));
                }
                m = cluster::next_message(&mut self.cluster) => {
                    match m {
                        Some((msg, payload)) => cluster::relay_to_runner(runner, msg, &payload).await,
                        None => self.cluster = None,
                    }
                    continue;
                }
                _ = watch_controller.tick(), if !engines.is_empty() => {
                    let silent = self.cluster.as_ref().map(|c| c.silent_for());
                    if silent.is_none_or(|s| s > crate::cluster::controller::LOST_AFTER + Duration::from_millis(500)) {
                        let why = match silent {
                            Some(s) => format!("the controller fell silent ({:.1} s without a heartbeat): it may have died; %cluster status says more", s.as_secs_f64()),
                            None => "the cluster connection closed".to_string(),
                        };
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
                    let answer = if !allow_stdin {
                        Err(
                            "input(): this client does not accept input (allow_stdin is false)"
                                .to_string(),
                        )
                    } else {
                        let rx =
                            stdin.ask(msg.identities.clone(), msg.header.clone(), prompt, password);
                        tokio::select! {
                            v = rx => v.map_err(|_| "input(): the kernel is shutting down".to_string()),
                            _ = irq.changed() => {
                                interrupted_at = Some(tokio::time::Instant::now());
                                Err("input(): interrupted".to_string())
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
                    break Err(error("Error", message, vec![]));
                }
                CellEvent::LoadError(m) => break Err(error("LoadError", m, vec![])),
                CellEvent::Exited(how) => {
                    self.runner = None;
                    let what = format!("the runner process was {} while running this cell", how.0);
                    break Err(error(
                        "RunnerDied",
                        what.clone(),
                        vec![
                            format!("RunnerDied: {what}"),
                            "Every item defined so far is kept; the next cell runs in a fresh runner.".into(),
                        ],
                    ));
                }
            }
        };
        match (interrupted_at, outcome) {
            (Some(_), Err(e)) if e.ename == "KeyboardInterrupt" => Err(e),
            (Some(_), _) => Err(interrupted("")),
            (None, o) => o,
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
    ) -> Result<MimeBundle, ErrorContent> {
        let count = self.count;
        let session = self.session(irq, None).await?;
        let built = match session.build(expr, count).await {
            Ok(Compiled::Cell(b)) => b,
            Ok(Compiled::Empty) => return Err(error("SyntaxError", "empty expression", vec![])),
            Err(CompileError::Code { summary, rendered }) => {
                return Err(error("CompileError", summary, rendered))
            }
            Err(e) => return Err(error("CompileError", e.to_string(), vec![])),
        };
        let mut sink = Sink::new(None, count);
        let msg = internal_request();
        let r = self.run_built(&built, &msg, false, &mut sink, irq).await;
        self.settle_vars(&built, r, irq).await?;
        Ok(sink.result.unwrap_or_else(|| {
            let mut m = Map::new();
            m.insert("text/plain".into(), Value::String("()".into()));
            m
        }))
    }
}
