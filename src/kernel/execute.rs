//! Running one `execute_request`: magics, compiling, running in the runner, and the
//! outputs, errors and reply that come of it.

use super::history::History;
use super::iopub::{Channel, Iopub, StreamName};
use super::outputs::{self, Piece};
use super::stdin::Stdin;
use crate::compile::prelude::{self, Prelude};
use crate::compile::session::Compiled;
use crate::compile::{BuiltCell, CompileError, Session, Timing, Toolchain};
use crate::exec::runner::PanicReport;
use crate::exec::{CellEvent, Runner};
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

fn interrupted(detail: &str) -> ErrorContent {
    error(
        "KeyboardInterrupt",
        format!("the cell was interrupted{detail}"),
        vec![],
    )
}

/// A cell that prints the session's variables with their types and sizes (the
/// size is measured where the values live, in the runner).
fn vars_listing(vars: &crate::compile::vars::Vars) -> String {
    if vars.is_empty() {
        return String::new();
    }
    let width = vars.keys().map(|n| n.len()).max().unwrap_or(4).max(8);
    let mut code =
        format!("println!(\"{{:<{width}}}  {{:>10}}  {{}}\", \"Variable\", \"Size\", \"Type\");\n");
    for (name, var) in vars {
        code.push_str(&format!(
            "println!(\"{{:<{width}}}  {{:>10}}  {{}}\", {name:?}, format!(\"{{}} B\", ::std::mem::size_of_val(&{name})), {:?});\n",
            crate::compile::vars::display_type(&var.ty)
        ));
    }
    code
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

type Warm = Result<(Toolchain, Prelude), String>;

/// Owns everything a cell needs: the compiled session, the runner, the counter and
/// the history.
pub struct Executor {
    cache: PathBuf,
    warm: Option<JoinHandle<Warm>>,
    session: Option<Session>,
    opt_level: u8,
    runner: Option<Runner>,
    pub count: u64,
    pub history: History,
    iopub: Iopub,
    stdin: Stdin,
    interrupts: watch::Receiver<u64>,
}

async fn prepare(cache: PathBuf) -> Warm {
    let toolchain = Toolchain::probe().await.map_err(|e| e.to_string())?;
    let _ =
        super::info::RUST_VERSION.set(toolchain.version.trim_start_matches("rustc ").to_string());
    let prelude = prelude::ensure(&toolchain, &cache)
        .await
        .map_err(|e| e.to_string())?;
    Ok((toolchain, prelude))
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
        Executor {
            cache,
            warm,
            session: None,
            opt_level: 1,
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

    /// The newest definition of an item, for inspection.
    pub fn item_source(&self, name: &str) -> Option<(u64, String)> {
        self.session.as_ref().and_then(|s| s.item_source(name))
    }

    /// Kills the runner (at shutdown).
    pub async fn stop(&mut self) {
        if let Some(r) = self.runner.take() {
            r.kill().await;
        }
    }

    async fn session(
        &mut self,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<&mut Session, ErrorContent> {
        if self.session.is_none() {
            let warm = match self.warm.take() {
                Some(h) => h,
                None => tokio::spawn(prepare(self.cache.clone())),
            };
            let ready = tokio::select! {
                r = warm => r.unwrap_or_else(|e| Err(e.to_string())),
                _ = irq.changed() => return Err(interrupted(" while the toolchain was being prepared")),
            };
            let (toolchain, prelude) = ready.map_err(|e| error("ToolchainError", e, vec![]))?;
            let mut s = Session::new(toolchain, prelude, &self.cache);
            s.opt_level = self.opt_level;
            self.session = Some(s);
        }
        Ok(self.session.as_mut().expect("just set"))
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
        let code: std::borrow::Cow<str> = match magics::parse(&req.code) {
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
                    Magic::LsMagic => {
                        sink.stdout(format!("{}\n", magics::lsmagic_text()).as_bytes())
                    }
                    Magic::Opt(None) => {
                        sink.stdout(format!("opt-level {}\n", self.opt_level).as_bytes())
                    }
                    Magic::Opt(Some(n)) => {
                        self.opt_level = n;
                        if let Some(s) = &mut self.session {
                            s.opt_level = n;
                        }
                    }
                    Magic::Reset => {
                        if let Some(s) = &mut self.session {
                            s.clear();
                        }
                        if let Some(r) = self.runner.take() {
                            r.kill().await;
                        }
                        sink.stdout(b"Session reset: every item and variable is gone.\n");
                    }
                    Magic::Vars => {
                        let listing = self.session.as_ref().map(|s| vars_listing(s.vars()));
                        match listing {
                            Some(code) if !code.is_empty() => {
                                return self.run_listing(msg, &code, sink, irq).await
                            }
                            _ => sink.stdout(b"No variables.\n"),
                        }
                    }
                    Magic::Time => timing = Timing::Once,
                    Magic::Timeit { loops, runs } => timing = Timing::Repeat { loops, runs },
                }
                rest
            }
        };
        if code.trim().is_empty() {
            sink.finish();
            return Ok(());
        }
        let count = self.count;
        let session = self.session(irq).await?;
        let started = std::time::Instant::now();
        let built = tokio::select! {
            r = session.build_timed(&code, count, timing) => r,
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
        let built = match built {
            Ok(Compiled::Empty) => return Ok(()),
            Ok(Compiled::Cell(b)) => b,
            Err(CompileError::Code { summary, rendered }) => {
                return Err(error("CompileError", summary, rendered));
            }
            Err(e) => return Err(error("CompileError", e.to_string(), vec![])),
        };
        let r = self
            .run_built(&built, msg, req.allow_stdin, sink, irq)
            .await;
        sink.finish();
        let r = self.settle_vars(&built, r);
        for note in &built.vars.notes {
            sink.stderr(format!("ferrocell: {note}\n").as_bytes());
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
        let session = self.session(irq).await?;
        let built = match session.build(code, count).await {
            Ok(Compiled::Cell(b)) => b,
            Ok(Compiled::Empty) => return Ok(()),
            Err(e) => return Err(error("VarsError", e.to_string(), vec![])),
        };
        let r = self.run_built(&built, msg, false, sink, irq).await;
        sink.finish();
        self.settle_vars(&built, r)
    }

    /// Brings the session's variable table up to date after a cell ran: what it kept
    /// on success; on failure, what went with the cell (or with the runner).
    fn settle_vars(
        &mut self,
        built: &BuiltCell,
        r: Result<(), ErrorContent>,
    ) -> Result<(), ErrorContent> {
        let runner_gone = self.runner.is_none();
        let Some(session) = self.session.as_mut() else {
            return r;
        };
        match r {
            Ok(()) => {
                session.commit_vars(&built.vars);
                Ok(())
            }
            Err(mut e) => {
                let lost = if runner_gone {
                    session.lose_all_vars()
                } else if e.ename == "Panic" {
                    session.settle_panic(&built.vars)
                } else {
                    session.lose_vars(&built.vars)
                };
                if !lost.is_empty() {
                    e.traceback.push(format!(
                        "Variables lost with the {}: {}",
                        if runner_gone { "runner" } else { "cell" },
                        lost.join(", ")
                    ));
                }
                Err(e)
            }
        }
    }

    async fn runner(&mut self) -> Result<&mut Runner, ErrorContent> {
        if self.runner.is_none() {
            let prelude = self
                .session
                .as_ref()
                .expect("session before runner")
                .prelude();
            let r = Runner::spawn(prelude)
                .await
                .map_err(|e| error("RunnerError", e, vec![]))?;
            self.runner = Some(r);
        }
        Ok(self.runner.as_mut().expect("just set"))
    }

    fn panic_error(&self, built: &BuiltCell, p: &PanicReport) -> ErrorContent {
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
                match map.and_then(|m| m.origin(line)) {
                    Some(o) => format!("{o}:{}", p.column.unwrap_or(1)),
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
    ) -> Result<(), ErrorContent> {
        let stdin = self.stdin.clone();
        let runner = self.runner().await?;
        if let Err(e) = runner.start(&built.lib, &built.symbol).await {
            self.runner = None;
            return Err(error(
                "RunnerDied",
                format!("the runner could not take the cell: {e}"),
                vec![],
            ));
        }
        let mut interrupted_at: Option<tokio::time::Instant> = None;
        let outcome = loop {
            let runner = self.runner.as_mut().expect("running");
            let grace = async {
                match interrupted_at {
                    Some(t) => tokio::time::sleep_until(t + INTERRUPT_GRACE).await,
                    None => std::future::pending().await,
                }
            };
            let ev = tokio::select! {
                ev = runner.next_event() => ev,
                _ = irq.changed(), if interrupted_at.is_none() => {
                    runner.interrupt().await;
                    interrupted_at = Some(tokio::time::Instant::now());
                    continue;
                }
                _ = grace => {
                    if let Some(r) = self.runner.take() { r.kill().await; }
                    break Err(interrupted(": it did not stop within 1 s, so its runner was replaced (items are kept)"));
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
                CellEvent::Done => break Ok(()),
                CellEvent::Panic(p) => break Err(self.panic_error(built, &p)),
                CellEvent::Failed(m) => break Err(error("Error", m, vec![])),
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
        let session = self.session(irq).await?;
        let built = match session.build(expr, count).await {
            Ok(Compiled::Cell(b)) => b,
            Ok(Compiled::Empty) => return Err(error("SyntaxError", "empty expression", vec![])),
            Err(CompileError::Code { summary, rendered }) => {
                return Err(error("CompileError", summary, rendered))
            }
            Err(e) => return Err(error("CompileError", e.to_string(), vec![])),
        };
        let mut sink = Sink::new(None, count);
        let msg = Message {
            identities: vec![],
            header: crate::protocol::Header::new("execute_request", ""),
            parent: None,
            metadata: Value::Null,
            content: Value::Null,
            buffers: vec![],
        };
        let r = self.run_built(&built, &msg, false, &mut sink, irq).await;
        self.settle_vars(&built, r)?;
        Ok(sink.result.unwrap_or_else(|| {
            let mut m = Map::new();
            m.insert("text/plain".into(), Value::String("()".into()));
            m
        }))
    }
}
