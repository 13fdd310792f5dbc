//! Compiling and running a cell's Rust code: the compile (interruptible), its
//! errors (with `%%parallel` hints, and the code `%explain` takes), the run, and
//! what `%time` and `%timing` report.

use super::warmup::BASE_WAIT;
use super::{CellError, Executor, Sink};
use crate::compile::session::Compiled;
use crate::compile::BuiltCell;
use crate::compile::{CompileError, Timing};
use crate::kernel::stdin::Origin;
use std::time::Duration;
use tokio::sync::watch;

/// The code of a rendered rustc error (`error[E0308]: …` gives `E0308`).
fn error_code(rendered: &str) -> Option<String> {
    let rest = rendered.strip_prefix("error[")?;
    let (code, _) = rest.split_once(']')?;
    Some(code.to_string())
}

/// Seconds as `%time` shows them (three significant digits, a fitting unit).
fn format_seconds(s: f64) -> String {
    match s {
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 1e-3 => format!("{:.1} ms", s * 1e3),
        s => format!("{:.0} µs", s * 1e6),
    }
}

impl Executor {
    /// Compiles a cell's Rust code in the session (`None`: it holds nothing to
    /// run). A compile error of a `parallel` cell gets the hint that fits it.
    pub(super) async fn build_rust(
        &mut self,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
        code: &str,
        timing: Timing,
        parallel: bool,
    ) -> Result<Option<BuiltCell>, CellError> {
        let count = self.count;
        self.session(irq, Some(sink)).await?;
        self.take_base(BASE_WAIT, sink).await;
        let portable = self.cluster.is_some();
        let session = self.session.as_mut().expect("session");
        session.set_portable(portable);
        let started = std::time::Instant::now();
        let built = tokio::select! {
            r = session.build_timed(code, count, timing) => r,
            _ = irq.changed() => return Err(CellError::Interrupted(" while it was compiling".into())),
        };
        if let (Timing::Once, Ok(Compiled::Cell(b))) = (timing, &built) {
            let took = if b.compiled {
                format_seconds(started.elapsed().as_secs_f64())
            } else {
                "none (cached)".into()
            };
            // The marker that says hot code got the full optimisation.
            let tier = if b.tiered_up {
                format!(
                    " (tiered up: opt-level {}, as its code ran long)",
                    b.opt_level
                )
            } else {
                String::new()
            };
            sink.stdout(format!("Compile time: {took}{tier}\n").as_bytes());
        }
        match built {
            Ok(Compiled::Empty) => Ok(None),
            Ok(Compiled::Cell(b)) => Ok(Some(*b)),
            Err(CompileError::Code {
                summary,
                mut rendered,
            }) => {
                if let Some(hint) = parallel
                    .then(|| crate::compile::parallel::hint(&summary, &rendered))
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
                Err(CellError::Compile { summary, rendered })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Compiles and runs a cell's Rust code (after its magic line, if any).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_rust(
        &mut self,
        input: Option<&Origin>,
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
        code: &str,
        timing: Timing,
        parallel: Option<Vec<String>>,
    ) -> Result<(), CellError> {
        if code.trim().is_empty() {
            sink.finish();
            return Ok(());
        }
        let started = std::time::Instant::now();
        let Some(built) = self
            .build_rust(sink, irq, code, timing, parallel.is_some())
            .await?
        else {
            return Ok(());
        };
        let compile_time = started.elapsed();
        let mut built = built;
        if let Some(args) = parallel {
            built.args = args;
        }
        let ran = std::time::Instant::now();
        let r = self.run_built(&built, input, sink, irq).await;
        sink.finish();
        let run_time = ran.elapsed();
        if r.0.is_ok() {
            self.note_run(code, timing, run_time);
        }
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
}
