//! The magic dispatch: what each `%` line of a cell does (settings, `%reset`,
//! `%vars`, `%explain`, `%time`, `%%parallel`, `%cluster`), before the cell's Rust
//! code, if any, runs. Parsing the magics is `crate::magics`; this is acting on them.

use super::{CellError, Executor, Sink};
use crate::compile::session::{Compiled, Settings};
use crate::compile::Timing;
use crate::kernel::stdin::Origin;
use crate::magics::parallel::Backend;
use crate::magics::{self, CellKind, Magic};
use crate::protocol::messages::ExecuteRequest;
use serde_json::{json, Value};
use std::borrow::Cow;
use tokio::sync::watch;

/// A size in bytes as `%vars` shows it.
fn format_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// What is left to do once a magic is applied.
enum Then<'a> {
    /// Nothing: the magic did the cell's work.
    Done,
    /// Run the code after the magic line as Rust, timed so.
    Rust(Cow<'a, str>, Timing),
}

impl Executor {
    /// Runs a cell: its `:dep` lines, its magic line (if any), then its Rust code.
    pub(super) async fn run_code(
        &mut self,
        input: Option<&Origin>,
        req: &ExecuteRequest,
        sink: &mut Sink,
        payload: &mut Vec<Value>,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let (dep_lines, code) = magics::split_deps(&req.code);
        if !dep_lines.is_empty() {
            self.add_deps(&dep_lines, sink, irq).await?;
        }
        let then = match magics::parse(code) {
            CellKind::Rust(code) => Then::Rust(code.into(), Timing::None),
            CellKind::Unknown(line) => return Err(CellError::UnknownMagic(line)),
            CellKind::BadArgs(why) => return Err(CellError::Magic(why)),
            CellKind::Magic { magic, rest } => {
                self.apply(magic, rest, input, sink, payload, irq).await?
            }
        };
        match then {
            Then::Done => Ok(()),
            Then::Rust(code, timing) => self.run_rust(input, sink, irq, &code, timing, None).await,
        }
    }

    /// Applies a magic: one arm, one job, each in its own function where it has more
    /// than a line to do.
    async fn apply<'a>(
        &mut self,
        magic: Magic,
        rest: Cow<'a, str>,
        input: Option<&Origin>,
        sink: &mut Sink,
        payload: &mut Vec<Value>,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<Then<'a>, CellError> {
        match magic {
            Magic::Help => payload.push(json!({
                "source": "page",
                "data": {"text/plain": magics::help_text()},
                "start": 0
            })),
            Magic::Exit => payload.push(json!({"source": "ask_exit", "keepkernel": false})),
            Magic::LsMagic => sink.stdout(format!("{}\n", magics::lsmagic_text()).as_bytes()),
            Magic::Opt(Some(n)) => self.set(|s| s.opt_level = n),
            Magic::Edition(Some(e)) => self.set(|s| s.edition = e),
            Magic::Efmt(Some(f)) => self.set(|s| s.error_format = f),
            Magic::Opt(None) | Magic::Edition(None) | Magic::Efmt(None) => {
                sink.stdout(self.setting(&magic).as_bytes())
            }
            Magic::Timing => {
                self.show_timing = !self.show_timing;
                let on = if self.show_timing { "on" } else { "off" };
                sink.stdout(format!("timing: {on}\n").as_bytes());
            }
            Magic::Explain(code) => self.explain(code, sink).await?,
            Magic::Reset => self.reset(sink).await?,
            Magic::Vars => {
                self.vars(sink, irq).await?;
                return Ok(Then::Done);
            }
            Magic::Cluster(cmd) => self.cluster_magic(cmd, sink).await?,
            Magic::Time => return Ok(Then::Rust(rest, Timing::Once)),
            Magic::Timeit { loops, runs } => {
                return Ok(Then::Rust(rest, Timing::Repeat { loops, runs }))
            }
            Magic::Parallel(p) => {
                self.parallel(&p, &rest, input, sink, irq).await?;
                return Ok(Then::Done);
            }
        }
        Ok(Then::Rust(rest, Timing::None))
    }

    /// `%opt`, `%edition` or `%efmt` alone: the setting, and whether it is the default.
    fn setting(&self, magic: &Magic) -> String {
        let (now, default) = (&self.settings, Settings::default());
        match magic {
            Magic::Opt(_) => {
                let how = if now.opt_level == default.opt_level {
                    " (the default: the least compile plus run time in bench/opt.py)"
                } else {
                    ""
                };
                format!("opt-level {}{how}\n", now.opt_level)
            }
            Magic::Edition(_) => {
                let how = if now.edition == default.edition {
                    " (the default, as `cargo new` makes packages)"
                } else {
                    ""
                };
                format!("edition {}{how}\n", now.edition)
            }
            _ => format!(
                "errors that reach a `?` are shown as {}\n",
                now.error_format.as_str()
            ),
        }
    }

    /// `%explain [E0308]`: rustc's explanation of a code (the last error's).
    async fn explain(&mut self, code: Option<String>, sink: &mut Sink) -> Result<(), CellError> {
        let Some(code) = code.or_else(|| self.last_error_code.clone()) else {
            return Err(CellError::Magic(
                "no error to explain yet: name a code, as in %explain E0308".into(),
            ));
        };
        // Only rustc is needed, not a prepared session.
        let toolchain = crate::compile::toolchain::Toolchain::probe()
            .await
            .map_err(|e| CellError::Toolchain(e.to_string()))?;
        let text = crate::compile::rustc::explain(&toolchain.rustc, &code)
            .await
            .map_err(CellError::Magic)?;
        sink.stdout(text.as_bytes());
        Ok(())
    }

    /// `%reset`: a fresh runner, no items, no variables, no snapshots.
    async fn reset(&mut self, sink: &mut Sink) -> Result<(), CellError> {
        self.saving = None;
        if let Some(r) = self.runner.take() {
            r.kill().await;
        }
        crate::exec::savers::kill(self.snapshots.path());
        // Killed savers are gone before their files are: none renames one back.
        crate::exec::savers::wait(self.snapshots.path(), std::time::Duration::from_secs(2)).await;
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
                .map_err(|e| CellError::Reset(e.to_string()))?;
        }
        sink.stdout(b"Session reset: every item and variable is gone.\n");
        Ok(())
    }

    /// `%vars`: the session's variables, measured in the runner where they live.
    async fn vars(
        &mut self,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        // A saver handed to the runner has forked (or failed) by now.
        let _ = self.finish_saving().await;
        let dir = self.snapshots.path();
        let snapshot = |name: &str| match std::fs::metadata(dir.join(name)) {
            Ok(m) => format_bytes(m.len()),
            Err(_) if crate::exec::savers::writing(dir, name) => "saving".to_string(),
            Err(_) => "none".to_string(),
        };
        let listing = self
            .session
            .as_ref()
            .map(|s| crate::compile::vars::listing_code(s.vars(), snapshot));
        match listing {
            Some(code) if !code.is_empty() => self.run_listing(&code, sink, irq).await,
            _ => {
                sink.stdout(b"No variables.\n");
                Ok(())
            }
        }
    }

    /// `%%parallel`: the body as one ordinary cell that runs it on the backend.
    async fn parallel(
        &mut self,
        p: &crate::magics::Parallel,
        body: &str,
        input: Option<&Origin>,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        if body.trim().is_empty() {
            return Err(CellError::Magic(
                "%%parallel needs a body: the code each worker runs".into(),
            ));
        }
        if p.persist {
            return self.run_persist(input, sink, irq, p, body).await;
        }
        let code = crate::compile::parallel::cell_code(p, body);
        let args = match p.backend {
            Backend::Threads => vec![],
            Backend::Processes => self.processes_setup(&code, sink, irq).await?,
            Backend::Cluster => {
                let mut args = self.processes_setup(&code, sink, irq).await?;
                args.push(self.cluster_engines(p, sink).await?);
                args
            }
        };
        self.run_rust(input, sink, irq, &code, Timing::None, Some(args))
            .await
    }

    /// Runs the generated cell that prints `%vars`.
    async fn run_listing(
        &mut self,
        code: &str,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let count = self.count;
        let session = self.session(irq, Some(sink)).await?;
        let built = match session.build(code, count).await {
            Ok(Compiled::Cell(b)) => b,
            Ok(Compiled::Empty) => return Ok(()),
            Err(e) => return Err(CellError::Vars(e.to_string())),
        };
        let r = self.run_built(&built, None, sink, irq).await;
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
}
