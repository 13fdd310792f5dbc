//! Getting Rust ready: finding the toolchain, building the prelude and runner once
//! per toolchain (in the background from kernel start, with progress shown to a
//! cell that waits for it), making the session from them, and the one-time serde
//! build that makes variables crash-safe. Kept apart from running cells so that
//! every cell path starts from one `session()`.

use super::{progress, CellError, Executor, Sink};
use crate::compile::deps::{self, BuiltDeps, DepError, DepSet};
use crate::compile::prelude::{self, Prelude, PreludeError};
use crate::compile::toolchain::ToolchainError;
use crate::compile::{CompileError, Session, Toolchain};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why Rust could not be made ready: the toolchain and prelude a session needs,
/// or the serde build that makes its variables crash-safe.
#[derive(Debug, thiserror::Error)]
pub(super) enum WarmError {
    #[error(transparent)]
    Toolchain(#[from] ToolchainError),
    #[error(transparent)]
    Prelude(#[from] PreludeError),
    /// The serde build for snapshots.
    #[error(transparent)]
    Deps(#[from] DepError),
    /// The session did not take the serde build.
    #[error(transparent)]
    Attach(#[from] CompileError),
    /// The background task that did the work panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// The serde build for snapshots, running in the background from kernel start.
pub(super) type BaseDeps = JoinHandle<Result<BuiltDeps, WarmError>>;

pub(super) type Warm = Result<(Toolchain, Prelude, BaseDeps), WarmError>;

/// How long a cell waits for the serde build before it runs without snapshots
/// (long enough for a build that is only a look at the cache).
pub(super) const BASE_WAIT: Duration = Duration::from_secs(1);

pub(super) async fn prepare(cache: PathBuf) -> Warm {
    let toolchain = Toolchain::probe().await?;
    let _ = crate::kernel::info::RUST_VERSION
        .set(toolchain.version.trim_start_matches("rustc ").to_string());
    let prelude = prelude::ensure(&toolchain, &cache).await?;
    let base = build_base(toolchain.clone(), cache);
    Ok((toolchain, prelude, base))
}

/// Starts the one-time serde build (a look at the cache once it has been done).
pub(super) fn build_base(toolchain: Toolchain, cache: PathBuf) -> BaseDeps {
    tokio::spawn(async move {
        let log = |line: &str| tracing::debug!(target: "ferrocell::deps", "{line}");
        Ok(deps::build(&DepSet::default(), &toolchain, &cache, None, &log).await?)
    })
}

impl Executor {
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
            tracing::debug!(error = %e, "no session for completion");
        }
    }

    pub(super) async fn session(
        &mut self,
        irq: &mut watch::Receiver<u64>,
        sink: Option<&Sink>,
    ) -> Result<&mut Session, CellError> {
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
                    r = &mut warm => break r.unwrap_or_else(|e| Err(e.into())),
                    _ = irq.changed() => {
                        // The build goes on, for the next cell to wait on.
                        self.warm = Some(warm);
                        if let Some(p) = shown.as_mut() {
                            p.finish("preparing Rust: interrupted (it goes on for the next cell)");
                        }
                        return Err(CellError::Interrupted(" while the toolchain was being prepared".into()));
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
                ready.map_err(|e| CellError::Toolchain(e.to_string()))?;
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
    pub(super) async fn take_base(&mut self, wait: Duration, sink: &mut Sink) {
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
            Ok(r) => r.unwrap_or_else(|e| Err(e.into())),
        };
        self.base = None;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let attached = match result {
            // A `:dep` build already brought a larger set.
            Ok(_) if session.deps().is_some() => Ok(()),
            Ok(built) => session.attach_deps(built).await.map_err(WarmError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = attached {
            sink.stderr(
                format!("ferrocell: variables are not crash-safe in this session: {e}\n")
                    .as_bytes(),
            );
        }
    }
}
