//! `ferrocell engine`: one worker of a cluster.
//!
//! An engine registers with its controller (with the versions the cells must match),
//! then keeps a worker (the runner executable, in worker mode, built here with this
//! host's rustc) and relays the runner channel's frames between it and the
//! controller. Only frames that came signed with the cluster key reach the worker.
//! A worker that dies is reported and replaced at once, so the engine survives the
//! cells it runs. An engine whose controller falls silent exits.

use super::controller::{HEARTBEAT, LOST_AFTER};
use super::link::{Link, Side};
use super::messages::{ClusterFile, Msg, Versions};
use crate::exec::frames;
use bytes::Bytes;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend};

/// How long an engine waits for its controller to answer the registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an engine outlives a silent controller.
const ORPHAN_AFTER: Duration = Duration::from_secs(10);
/// How long the worker may take to take a frame before it counts as wedged.
const WORKER_TAKES: Duration = Duration::from_secs(10);

/// The engine's worker: a runner process and its channel.
struct Worker {
    child: tokio::process::Child,
    writer: tokio::net::unix::OwnedWriteHalf,
    pid: u32,
}

/// Why an engine could not start its worker, or keep a library it was sent.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The shipped libraries' directory could not be put on the search path.
    #[error("LD_LIBRARY_PATH: {0}")]
    LibraryPath(#[source] std::env::JoinPathsError),
    #[error(transparent)]
    Runner(#[from] crate::exec::RunnerError),
    /// The worker said nothing within the start timeout, or ended first.
    #[error("the worker did not start")]
    WorkerNotStarted,
    /// A library name that is not a plain file name (a path, a hidden file).
    #[error("refused a library named {0:?}")]
    RefusedLibrary(String),
    /// The library could not be written where the worker finds it.
    #[error("{}: {source}", .path.display())]
    Library {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the engine hears from its worker.
enum FromWorker {
    Frame(u8, Vec<u8>),
    /// The channel closed: the worker is gone.
    Closed,
}

/// Starts a worker that finds the libraries it is sent in `libs`.
async fn start_worker(
    prelude: &crate::compile::prelude::Prelude,
    libs: &Path,
    tx: mpsc::UnboundedSender<(u32, FromWorker)>,
) -> Result<Worker, EngineError> {
    // The shipped libraries come first; what the engine's own environment had
    // (an MPI or a C library from a module system) stays findable after them.
    let mut search = vec![libs.to_path_buf()];
    search.extend(
        std::env::var_os("LD_LIBRARY_PATH")
            .iter()
            .flat_map(std::env::split_paths),
    );
    let search = std::env::join_paths(search).map_err(EngineError::LibraryPath)?;
    let (child, stream) = crate::exec::runner::spawn_process(
        prelude,
        &[
            ("FERROCELL_WORKER", std::ffi::OsStr::new("1")),
            ("LD_LIBRARY_PATH", search.as_os_str()),
        ],
        false,
    )?;
    let pid = child.id().unwrap_or(0);
    let (mut reader, writer) = stream.into_split();
    match tokio::time::timeout(Duration::from_secs(20), frames::read(&mut reader)).await {
        Ok(Ok(Some((frames::tag::READY, _)))) => {}
        _ => return Err(EngineError::WorkerNotStarted),
    }
    tokio::spawn(async move {
        loop {
            match frames::read(&mut reader).await {
                Ok(Some((t, p))) => {
                    if tx.send((pid, FromWorker::Frame(t, p))).is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = tx.send((pid, FromWorker::Closed));
                    return;
                }
            }
        }
    });
    Ok(Worker { child, writer, pid })
}

/// Keeps a library the controller sent, under its (content-hashed) name.
fn keep_library(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), EngineError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !plain {
        return Err(EngineError::RefusedLibrary(name.to_string()));
    }
    let path = dir.join(name);
    // A file of that name is used only if it holds exactly these bytes (the
    // SHA-256 of both); otherwise it is replaced, atomically.
    use sha2::{Digest, Sha256};
    let want = Sha256::digest(bytes);
    if std::fs::read(&path).is_ok_and(|have| Sha256::digest(&have) == want) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|source| EngineError::Library { path, source })
}

/// A RUN frame with its library taken from the engine's own directory: the
/// kernel's path means nothing on this host.
fn local_run(dir: &Path, payload: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(payload);
    let (lib, rest) = text.split_once('\0').unwrap_or((&text, ""));
    let name = Path::new(lib).file_name().unwrap_or_default();
    let mut out = dir.join(name).display().to_string();
    out.push('\0');
    out.push_str(rest);
    out.into_bytes()
}

/// Sends to the controller; a DEALER waits for its peer, so a controller that is
/// gone would stop the engine here for good: the wait is bounded.
async fn post(send: &mut zeromq::DealerSendHalf, raw: zeromq::ZmqMessage) -> anyhow::Result<()> {
    match tokio::time::timeout(ORPHAN_AFTER, send.send(raw)).await {
        Ok(r) => Ok(r?),
        Err(_) => anyhow::bail!(
            "the controller took no message for {} s: it is gone, or not reachable from this host (see its --ip)",
            ORPHAN_AFTER.as_secs()
        ),
    }
}

/// The queue of what goes to the controller, and the task that sends it.
struct Outgoing {
    queue: mpsc::Sender<(Msg, Option<Bytes>)>,
    sender: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    beats: tokio::task::JoinHandle<()>,
}

impl Outgoing {
    /// Queues a message; once the sending task has given up on the controller,
    /// says why.
    async fn post(&mut self, msg: Msg, payload: Option<Bytes>) -> anyhow::Result<()> {
        if self.queue.send((msg, payload)).await.is_ok() {
            return Ok(());
        }
        match self.sender.take() {
            Some(task) => match task.await {
                Ok(Err(e)) => Err(e),
                _ => anyhow::bail!("the connection to the controller closed"),
            },
            None => anyhow::bail!("the connection to the controller closed"),
        }
    }

    /// Sends what is queued (the engine is about to end), waiting at most `within`.
    async fn finish(self, within: Duration) {
        self.beats.abort();
        drop(self.queue);
        if let Some(task) = self.sender {
            let _ = tokio::time::timeout(within, task).await;
        }
    }
}

/// Runs an engine until its controller says to stop, or falls silent. `probed`:
/// the rustc its launcher found on this machine, if it said.
pub async fn run(cf: ClusterFile, probed: Option<crate::compile::Toolchain>) -> anyhow::Result<()> {
    use anyhow::Context;
    // One link for both directions: the controller's `Registered` teaches it the
    // session every later message is addressed to.
    let link = std::sync::Arc::new(Link::new(&cf.key, Side::Dealer));
    let toolchain = match probed {
        Some(t) => t,
        None => crate::compile::Toolchain::probe()
            .await
            .context("this engine needs rustc to build its runner")?,
    };
    let prelude = crate::compile::prelude::ensure(&toolchain, &crate::paths::cache_dir())
        .await
        .context("building the runner")?;
    // Libraries the controller sends live here, by name; the worker finds them here.
    let libs = crate::paths::cache_dir()
        .join(&toolchain.id)
        .join("engine-libs");
    crate::paths::private_dir(&crate::paths::cache_dir())
        .and_then(|_| std::fs::create_dir_all(libs.parent().unwrap_or(&libs)))
        .and_then(|_| crate::paths::private_dir(&libs))
        .with_context(|| format!("creating {}", libs.display()))?;
    let versions = Versions {
        ferrocell: env!("CARGO_PKG_VERSION").to_string(),
        rustc: toolchain.version.clone(),
        target: toolchain.host.clone(),
    };
    let mut socket = DealerSocket::with_options(crate::sockets::options());
    let endpoint = cf.endpoint(cf.engine_port);
    socket
        .connect(&endpoint)
        .await
        .with_context(|| format!("connecting to the controller at {endpoint}"))?;
    let (mut send, mut recv) = socket.split();
    let register = Msg::Register {
        host: crate::paths::hostname(),
        pid: std::process::id(),
        versions,
        mpi_rank: launched_rank(),
    };
    post(&mut send, link.encode(&[], register, None)).await?;
    let id = loop {
        let raw = tokio::time::timeout(REGISTER_TIMEOUT, recv.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the controller at {endpoint} did not answer within {} s (is it listening on an address this host can reach? see its --ip)",
                    REGISTER_TIMEOUT.as_secs()
                )
            })??;
        match link.decode(raw) {
            Ok(m) => match m.msg {
                Msg::Registered { engine } => break engine,
                Msg::Refused { why } => anyhow::bail!("{why}"),
                _ => {}
            },
            Err(e) => tracing::warn!("dropped a message: {e}"),
        }
    };
    println!("ferrocell engine {id}: registered with {endpoint}");

    // Frames from the controller, verified, in order.
    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<(Msg, Bytes)>();
    let receiving = link.clone();
    tokio::spawn(async move {
        while let Ok(raw) = recv.recv().await {
            match receiving.decode(raw) {
                Ok(m) => {
                    if in_tx.send((m.msg, m.payload)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("dropped a message that was not the controller's: {e}"),
            }
        }
    });
    // Everything for the controller goes through one task, in order. Heartbeats
    // are queued by a task of their own, so that they go on while the loop below
    // waits on its worker (starting, or slow to take a large frame): a busy
    // engine is not a dead one.
    // Messages are signed by the sending task, as they go: each carries the next
    // sequence number, which the controller checks against replays.
    let (out_tx, mut out_rx) = mpsc::channel::<(Msg, Option<Bytes>)>(256);
    let signing = link.clone();
    let sender = tokio::spawn(async move {
        while let Some((msg, payload)) = out_rx.recv().await {
            for raw in signing.encode_parts(&[], msg, payload) {
                post(&mut send, raw).await?;
            }
        }
        anyhow::Ok(())
    });
    let beating = out_tx.clone();
    let beats = tokio::spawn(async move {
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            beat.tick().await;
            if beating.send((Msg::Heartbeat, None)).await.is_err() {
                return;
            }
        }
    });
    let mut send = Outgoing {
        queue: out_tx,
        sender: Some(sender),
        beats,
    };
    let (w_tx, mut w_rx) = mpsc::unbounded_channel();
    let mut worker: Option<Worker> = None;
    // Whose namespace the worker uses now (0: none yet; kernels count from 1).
    let mut namespace = 0u32;
    let mut watch = tokio::time::interval(HEARTBEAT);
    let mut heard = Instant::now();
    loop {
        if worker.is_none() {
            match start_worker(&prelude, &libs, w_tx.clone()).await {
                Ok(w) => {
                    send.post(Msg::WorkerStarted { pid: w.pid }, None).await?;
                    worker = Some(w);
                    namespace = 0;
                }
                Err(e) => {
                    send.post(Msg::WorkerExited { how: e.to_string() }, None)
                        .await?;
                    send.finish(Duration::from_secs(2)).await;
                    anyhow::bail!("{e}");
                }
            }
        }
        tokio::select! {
            m = in_rx.recv() => {
                let Some((msg, payload)) = m else { anyhow::bail!("the controller's socket closed") };
                heard = Instant::now();
                match msg {
                    Msg::Ship { name } => {
                        if let Err(e) = keep_library(&libs, &name, &payload) {
                            tracing::warn!("{e}");
                        }
                    }
                    Msg::ForgetKernel { kernel } => {
                        let w = worker.as_mut().expect("started above");
                        let ns = kernel.to_le_bytes();
                        let _ = tokio::time::timeout(WORKER_TAKES, frames::write(&mut w.writer, frames::tag::DROP_NAMESPACE, &ns)).await;
                    }
                    Msg::ToWorker { tag, kernel } => {
                        let w = worker.as_mut().expect("started above");
                        let payload = if tag == frames::tag::RUN {
                            local_run(&libs, &payload)
                        } else {
                            payload.to_vec()
                        };
                        // Each kernel's cells see its own variables.
                        if kernel != namespace {
                            namespace = kernel;
                            let ns = kernel.to_le_bytes();
                            let _ = tokio::time::timeout(WORKER_TAKES, frames::write(&mut w.writer, frames::tag::NAMESPACE, &ns)).await;
                        }
                        // The worker reads its channel on a thread of its own, even
                        // while a cell runs: one that takes no frame for this long is
                        // wedged, and is replaced (the heartbeats, which go on meanwhile,
                        // must not keep a useless engine looking well).
                        match tokio::time::timeout(WORKER_TAKES, frames::write(&mut w.writer, tag, &payload)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::warn!("the worker did not take a frame: {e}"),
                            Err(_) => {
                                let mut w = worker.take().expect("checked");
                                let _ = w.child.start_kill();
                                let _ = w.child.wait().await;
                                let how = format!("took no frame for {} s, so it was killed", WORKER_TAKES.as_secs());
                                send.post(Msg::WorkerExited { how }, None).await?;
                            }
                        }
                    }
                    Msg::KillWorker => {
                        if let Some(mut w) = worker.take() {
                            let _ = w.child.start_kill();
                            let _ = w.child.wait().await;
                            let how = "was killed: it did not stop after an interrupt".to_string();
                            send.post(Msg::WorkerExited { how }, None).await?;
                        }
                    }
                    Msg::Shutdown => {
                        if let Some(mut w) = worker.take() {
                            let _ = w.child.start_kill();
                            let _ = w.child.wait().await;
                        }
                        println!("ferrocell engine {id}: stopped by the controller");
                        return Ok(());
                    }
                    _ => {}
                }
            }
            f = w_rx.recv() => {
                let Some((pid, f)) = f else { continue };
                // Frames of a worker already replaced are old news.
                if worker.as_ref().map(|w| w.pid) != Some(pid) {
                    continue;
                }
                match f {
                    FromWorker::Frame(tag, p) => {
                        send.post(Msg::FromWorker { tag }, Some(Bytes::from(p))).await?;
                    }
                    FromWorker::Closed => {
                        let mut w = worker.take().expect("checked");
                        let how = match tokio::time::timeout(Duration::from_secs(2), w.child.wait()).await {
                            Ok(Ok(s)) => crate::exec::runner::describe_exit(s),
                            _ => {
                                let _ = w.child.start_kill();
                                "closed its channel".to_string()
                            }
                        };
                        let how = format!("(pid {pid}) {how}");
                        send.post(Msg::WorkerExited { how }, None).await?;
                    }
                }
            }
            _ = watch.tick() => {
                if heard.elapsed() > ORPHAN_AFTER.max(LOST_AFTER) {
                    if let Some(mut w) = worker.take() {
                        let _ = w.child.start_kill();
                    }
                    anyhow::bail!("the controller at {endpoint} fell silent for {} s", ORPHAN_AFTER.as_secs());
                }
            }
        }
    }
}

/// The engine's rank as its launcher set it: Open MPI's, MPICH's PMI, a Slurm
/// task's id, or a Grid Engine array task's (which counts from 1).
fn launched_rank() -> Option<u32> {
    let var = |v: &str| std::env::var(v).ok()?.parse::<u32>().ok();
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"]
        .iter()
        .find_map(|v| var(v))
        .or_else(|| var("SGE_TASK_ID")?.checked_sub(1))
}

#[cfg(test)]
mod tests {
    use super::keep_library;

    #[test]
    fn a_library_is_kept_only_with_the_bytes_that_were_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libfc_x-1.so");
        std::fs::write(&path, b"planted").unwrap();
        keep_library(dir.path(), "libfc_x-1.so", b"shipped").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"shipped");
        keep_library(dir.path(), "libfc_x-1.so", b"shipped").unwrap();
        assert!(keep_library(dir.path(), "../escape.so", b"x").is_err());
    }
}
