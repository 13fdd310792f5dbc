//! The runner process: spawning it, sending it cells, and turning its frames into
//! events.
//!
//! The runner gets its channel as fd 3 (a Unix socket pair). Its own fds 1 and 2 are
//! pipes too, read here, for output that bypasses Rust's std (child processes, C
//! code); what Rust code prints arrives through the channel, in order.

use super::frames::{self, tag};
use crate::compile::prelude::Prelude;
use crate::protocol::messages::MimeBundle;
use serde::Deserialize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;

/// How long a new runner may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Something a running cell did.
#[derive(Debug)]
pub enum CellEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Display {
        id: String,
        update: bool,
        data: MimeBundle,
    },
    ClearOutput {
        wait: bool,
    },
    /// The cell's value.
    Result(MimeBundle),
    InputRequest {
        prompt: String,
        password: bool,
    },
    /// The cell finished normally. This and the ones below end a cell.
    Done,
    Panic(PanicReport),
    /// A `?` error reached the top of the cell; `kept` names the variables the cell
    /// had bound before it, which it put in the store.
    Failed {
        message: String,
        kept: Vec<String>,
    },
    /// The library could not be loaded.
    LoadError(String),
    /// The runner process ended.
    Exited(RunnerExit),
    /// A frame for a cluster engine's worker (`%%parallel cluster`), to relay.
    ToEngine {
        engine: u32,
        tag: u8,
        payload: Vec<u8>,
    },
}

impl CellEvent {
    /// Whether the cell is over after this event.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            CellEvent::Done
                | CellEvent::Panic(_)
                | CellEvent::Failed { .. }
                | CellEvent::LoadError(_)
                | CellEvent::Exited(_)
        )
    }
}

/// Where and why a cell panicked.
#[derive(Debug, Clone, Deserialize)]
pub struct PanicReport {
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub thread: Option<String>,
}

/// How the runner process ended, in words.
#[derive(Debug, Clone)]
pub struct RunnerExit(pub String);

#[derive(Deserialize)]
struct DisplayFrame {
    id: String,
    update: bool,
    data: MimeBundle,
}

#[derive(Deserialize)]
struct InputFrame {
    prompt: String,
    password: bool,
}

#[derive(Deserialize)]
struct MessageFrame {
    message: String,
    #[serde(default)]
    kept: Vec<String>,
}

enum Internal {
    Event(CellEvent),
    ChannelClosed,
}

/// Why a runner process did not start.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The channel's socket pair could not be made.
    #[error("socketpair: {0}")]
    Socketpair(#[source] std::io::Error),
    /// The runner executable could not be run.
    #[error("cannot start {}: {source}", .program.display())]
    Spawn {
        program: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Our end of the channel could not be handed to tokio.
    #[error(transparent)]
    Channel(std::io::Error),
    /// It said nothing within the start timeout; `stderr` is what it wrote.
    #[error("the runner did not start (no answer within {secs} s): {stderr}")]
    NoAnswer { secs: u64, stderr: String },
    /// It ended (or closed its channel) before it was ready: `how`, in words.
    #[error("the runner did not start ({how}): {stderr}")]
    Exited { how: String, stderr: String },
}

/// Starts the runner executable with its channel on fd 3 (and `env` added); its
/// stdout and stderr are pipes when `piped`, else inherited. The runner must not
/// outlive the process that started it.
pub fn spawn_process(
    prelude: &Prelude,
    env: &[(&str, &std::ffi::OsStr)],
    piped: bool,
) -> Result<(tokio::process::Child, tokio::net::UnixStream), RunnerError> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(RunnerError::Socketpair)?;
    let theirs: OwnedFd = theirs.into();
    let fd = theirs.as_raw_fd();
    let mut cmd = tokio::process::Command::new(&prelude.runner);
    // Its own process group: what its cells start goes with it when it is replaced
    // or dies (see `kill_group`).
    cmd.env("FERROCELL_RUNNER", "1")
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if piped {
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    }
    // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let flags = nix::libc::fcntl(3, nix::libc::F_GETFD);
                nix::libc::fcntl(3, nix::libc::F_SETFD, flags & !nix::libc::FD_CLOEXEC);
            } else if nix::libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| RunnerError::Spawn {
        program: prelude.runner.clone(),
        source,
    })?;
    drop(theirs);
    ours.set_nonblocking(true).map_err(RunnerError::Channel)?;
    let stream = tokio::net::UnixStream::from_std(ours).map_err(RunnerError::Channel)?;
    Ok((child, stream))
}

/// How a process ended, in words (`killed by signal SIGSEGV (segmentation fault)`).
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    describe(status)
}

/// A live runner process.
pub struct Runner {
    /// How the runner ended, once it has: watched through its exit status, not
    /// only the end of its channel (a process a cell forked may hold the channel).
    exit: tokio::sync::watch::Receiver<Option<String>>,
    writer: OwnedWriteHalf,
    /// Bounded: a cell (or a thread it left running) that prints faster than the
    /// notebook takes it waits for the kernel, instead of filling its memory.
    events: mpsc::Receiver<Internal>,
    /// The channel closed; only the exit status is left to collect.
    closed: bool,
    pub pid: u32,
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {sig}"));
        let what = match name.as_str() {
            "SIGSEGV" => " (segmentation fault)",
            "SIGABRT" => " (abort)",
            "SIGKILL" => " (killed; out of memory, or stopped by the kernel)",
            "SIGBUS" => " (bus error)",
            "SIGFPE" => " (arithmetic fault)",
            "SIGILL" => " (illegal instruction)",
            _ => "",
        };
        format!("killed by signal {name}{what}")
    } else {
        match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "ended".to_string(),
        }
    }
}

/// What a runner frame means to the kernel; `None` for a frame it ignores. Public for
/// the fuzz target that feeds it arbitrary frames.
pub fn decode(t: u8, payload: Vec<u8>) -> Option<CellEvent> {
    let text = || String::from_utf8_lossy(&payload).into_owned();
    Some(match t {
        tag::STDOUT => CellEvent::Stdout(payload),
        tag::STDERR => CellEvent::Stderr(payload),
        tag::DISPLAY => match serde_json::from_slice::<DisplayFrame>(&payload) {
            Ok(d) => CellEvent::Display {
                id: d.id,
                update: d.update,
                data: d.data,
            },
            Err(e) => CellEvent::Stderr(
                format!("ferrocell: a display was not valid JSON ({e}); was display_json given JSON text?\n")
                    .into_bytes(),
            ),
        },
        tag::CLEAR_OUTPUT => CellEvent::ClearOutput {
            wait: payload.first() == Some(&1),
        },
        tag::RESULT => CellEvent::Result(serde_json::from_slice(&payload).ok()?),
        tag::INPUT_REQUEST => {
            let f: InputFrame = serde_json::from_slice(&payload).ok()?;
            CellEvent::InputRequest {
                prompt: f.prompt,
                password: f.password,
            }
        }
        tag::DONE => CellEvent::Done,
        tag::PANIC => CellEvent::Panic(serde_json::from_slice(&payload).unwrap_or(PanicReport {
            message: text(),
            file: None,
            line: None,
            column: None,
            thread: None,
        })),
        tag::CELL_ERROR => match serde_json::from_slice::<MessageFrame>(&payload) {
            Ok(m) => CellEvent::Failed {
                message: m.message,
                kept: m.kept,
            },
            Err(_) => CellEvent::Failed {
                message: text(),
                kept: vec![],
            },
        },
        tag::LOAD_ERROR => CellEvent::LoadError(text()),
        tag::TO_ENGINE if payload.len() >= 5 => CellEvent::ToEngine {
            engine: u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]),
            tag: payload[4],
            payload: payload[5..].to_vec(),
        },
        _ => return None,
    })
}

/// Events the kernel holds from a runner before the runner waits (each at most one
/// pipe read or one frame).
const EVENTS_BOUND: usize = 256;

fn pipe_to_events(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    tx: mpsc::Sender<Internal>,
    stderr: bool,
) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let bytes = buf[..n].to_vec();
            let ev = if stderr {
                CellEvent::Stderr(bytes)
            } else {
                CellEvent::Stdout(bytes)
            };
            if tx.send(Internal::Event(ev)).await.is_err() {
                break;
            }
        }
    });
}

impl Runner {
    /// Starts a runner. Its cells write variable snapshots into `snapshots`.
    pub async fn spawn(
        prelude: &Prelude,
        snapshots: &std::path::Path,
    ) -> Result<Runner, RunnerError> {
        let (mut child, ours) = spawn_process(
            prelude,
            &[("FERROCELL_SNAPSHOTS", snapshots.as_os_str())],
            true,
        )?;
        let pid = child.id().unwrap_or(0);
        let (mut reader, writer) = ours.into_split();
        let (tx, rx) = mpsc::channel(EVENTS_BOUND);
        let mut stderr = child.stderr.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        pipe_to_events(stdout, tx.clone(), false);

        let ready = tokio::time::timeout(START_TIMEOUT, frames::read(&mut reader)).await;
        match ready {
            Ok(Ok(Some((tag::READY, _)))) => {}
            other => {
                let mut err = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_end(&mut err))
                    .await;
                let _ = child.start_kill();
                let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await
                {
                    Ok(Ok(s)) => describe(s),
                    _ => "did not exit".into(),
                };
                let stderr = String::from_utf8_lossy(&err).trim().to_string();
                return Err(match other {
                    Err(_) => RunnerError::NoAnswer {
                        secs: START_TIMEOUT.as_secs(),
                        stderr,
                    },
                    _ => RunnerError::Exited {
                        how: status,
                        stderr,
                    },
                });
            }
        }
        pipe_to_events(stderr, tx.clone(), true);
        tokio::spawn(async move {
            loop {
                match frames::read(&mut reader).await {
                    Ok(Some((t, payload))) => {
                        if let Some(ev) = decode(t, payload) {
                            if tx.send(Internal::Event(ev)).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ => {
                        let _ = tx.send(Internal::ChannelClosed).await;
                        return;
                    }
                }
            }
        });
        let (exit_tx, exit) = tokio::sync::watch::channel(None);
        live_groups().push(pid);
        tokio::spawn(async move {
            // Seen to end without being reaped: while the zombie holds the pid, the
            // group id is still this runner's, so killing the group reaches what its
            // cells started and nobody else.
            let seen = tokio::task::spawn_blocking(move || {
                use nix::sys::wait::{waitid, Id, WaitPidFlag};
                loop {
                    match waitid(
                        Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
                        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
                    ) {
                        Err(nix::errno::Errno::EINTR) => continue,
                        other => return other.is_ok(),
                    }
                }
            })
            .await
            .unwrap_or(false);
            // No longer live: `kill_group` leaves the group alone from here on.
            let forget = || {
                let mut live = live_groups();
                let was = live.iter().position(|p| *p == pid);
                was.map(|i| live.remove(i)).is_some()
            };
            let how = if seen {
                // Still a zombie until `try_wait` below: the group is the runner's
                // to kill.
                if forget() {
                    killpg(pid);
                }
                match child.try_wait() {
                    Ok(Some(s)) => describe(s),
                    Ok(None) => "ended".to_string(),
                    Err(e) => format!("could not be waited for ({e})"),
                }
            } else {
                // Not observable without reaping: wait, and leave the group be.
                let how = match child.wait().await {
                    Ok(s) => describe(s),
                    Err(e) => format!("could not be waited for ({e})"),
                };
                forget();
                how
            };
            let _ = exit_tx.send(Some(how));
        });
        Ok(Runner {
            exit,
            writer,
            events: rx,
            closed: false,
            pid,
        })
    }

    /// Starts running a compiled cell; its events follow from [`Runner::next_event`].
    pub async fn start(
        &mut self,
        lib: &std::path::Path,
        symbol: &str,
        args: &[String],
    ) -> std::io::Result<()> {
        let mut payload = format!("{}\0{}", lib.display(), symbol);
        for a in args {
            payload.push('\0');
            payload.push_str(a);
        }
        frames::write(&mut self.writer, tag::RUN, payload.as_bytes()).await
    }

    /// The next event of the running cell. After the runner died this is
    /// `Exited`, once, with how it ended.
    /// Cancel-safe: a call dropped while waiting for the exit status is picked up
    /// by the next one.
    pub async fn next_event(&mut self) -> CellEvent {
        while !self.closed {
            let exit = &mut self.exit;
            let exited = async move { exit.wait_for(Option::is_some).await.is_ok() };
            tokio::select! {
                biased;
                next = self.events.recv() => match next {
                    Some(Internal::Event(ev)) => return ev,
                    Some(Internal::ChannelClosed) | None => self.closed = true,
                },
                _ = exited => {
                    // Gone: what it wrote before may still be on its way.
                    match tokio::time::timeout(Duration::from_millis(300), self.events.recv()).await {
                        Ok(Some(Internal::Event(ev))) => return ev,
                        _ => self.closed = true,
                    }
                }
            }
        }
        let exit = &mut self.exit;
        let how = async move {
            exit.wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|how| how.clone())
        };
        let status = match tokio::time::timeout(Duration::from_secs(2), how).await {
            Ok(Some(how)) => how,
            _ => "closed its channel".into(),
        };
        // What its cells started (a `sleep 600`, worker processes) ends too, and the
        // runner itself if it only closed its channel.
        kill_group(self.pid);
        CellEvent::Exited(RunnerExit(status))
    }

    /// Answers an input request of the cell.
    pub async fn answer_input(&mut self, answer: Result<String, String>) -> std::io::Result<()> {
        match answer {
            Ok(v) => frames::write(&mut self.writer, tag::INPUT_REPLY, v.as_bytes()).await,
            Err(e) => frames::write(&mut self.writer, tag::INPUT_DENIED, e.as_bytes()).await,
        }
    }

    /// Relays what a cluster engine's worker sent (`[engine][tag][payload]`).
    pub async fn from_engine(
        &mut self,
        engine: u32,
        tag: u8,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let mut f = Vec::with_capacity(payload.len() + 5);
        f.extend_from_slice(&engine.to_le_bytes());
        f.push(tag);
        f.extend_from_slice(payload);
        frames::write(&mut self.writer, tag::FROM_ENGINE, &f).await
    }

    /// Asks the cell to stop (it can see this through `interrupted()`).
    pub async fn interrupt(&mut self) {
        let _ = frames::write(&mut self.writer, tag::INTERRUPT, b"").await;
    }

    /// Kills the runner and its process group, and waits for it.
    pub async fn kill(mut self) {
        kill_group(self.pid);
        let exit = &mut self.exit;
        let gone = async move { exit.wait_for(Option::is_some).await.is_ok() };
        let _ = tokio::time::timeout(Duration::from_secs(2), gone).await;
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        kill_group(self.pid);
    }
}

/// The runners whose process group is theirs still: not yet reaped, so their pid,
/// which is the group's id, cannot be anyone else's.
fn live_groups() -> std::sync::MutexGuard<'static, Vec<u32>> {
    static LIVE: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kills the process group a runner leads, with whatever is left in it, unless the
/// runner was already reaped (then the watcher killed the group first).
fn kill_group(pid: u32) {
    if live_groups().contains(&pid) {
        killpg(pid);
    }
}

/// Kills the process groups of every runner still live (the kernel is exiting):
/// what cells started does not outlive the kernel.
pub fn kill_all_groups() {
    for pid in live_groups().iter() {
        killpg(*pid);
    }
}

fn killpg(pid: u32) {
    if pid > 1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
