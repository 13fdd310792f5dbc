//! How a rank thread of the coordinator reaches its worker: a local process
//! ([`Local`], `%%parallel processes`) or a cluster engine ([`Remote`], through the
//! kernel, which holds the cluster's connection). Both speak the runner channel's
//! frames; [`Worker`] drives either the same way.

use crate::channel::{self, tag};
use crate::json::json_message;
use crate::rank_output::labelled_write;
use std::collections::HashMap;
use std::ffi::c_int;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long a new worker may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a worker may take to stop after an interrupt before it is killed (the
/// kernel replaces the whole runner after a second).
const STOP_GRACE: Duration = Duration::from_millis(600);

/// A frame, or `None` once the worker is gone.
type Frame = Option<(u8, Vec<u8>)>;

/// One end of a rank's link to its worker.
pub(crate) trait Transport: Send {
    fn send(&mut self, t: u8, payload: &[u8]) -> Result<(), String>;
    /// The next frame; `Ok(None)` once the worker is gone.
    fn recv_timeout(&mut self, d: Duration) -> Result<Frame, mpsc::RecvTimeoutError>;
    /// How the worker ended, in words, once it is gone.
    fn reap(&mut self) -> String;
    fn kill(&mut self);
    /// What to call it in messages ("worker process 1234", "engine 2").
    fn name(&self) -> String;
    fn alive(&mut self) -> bool;
    /// Whether a worker lost here can be replaced (a cluster engine that is gone
    /// cannot).
    fn replaceable(&self) -> bool {
        true
    }
}

/// A worker and the session variables it holds.
pub(crate) struct Worker {
    pub link: Box<dyn Transport>,
    /// Session variables loaded there, by name, with the snapshot version loaded.
    pub loaded: HashMap<String, String>,
    /// When it was asked to stop: one grace period per interrupt, however many
    /// waits follow.
    asked_at: Option<Instant>,
}

impl Worker {
    pub fn new(link: Box<dyn Transport>) -> Worker {
        Worker {
            link,
            loaded: HashMap::new(),
            asked_at: None,
        }
    }

    /// Starts a library on the worker (as the kernel does on the runner).
    pub fn run(&mut self, lib: &str, symbol: &str, args: &[String]) -> Result<(), String> {
        let mut payload = format!("{lib}\0{symbol}");
        for a in args {
            payload.push('\0');
            payload.push_str(a);
        }
        self.link.send(tag::RUN, payload.as_bytes())
    }

    /// Handles the worker's frames until `stop` takes one. Output is relayed as the
    /// rank's (this thread is marked as that rank); displays go to the kernel as
    /// they are. After an interrupt the worker is asked to stop, then killed.
    pub fn pump<R>(&mut self, mut stop: impl FnMut(u8, Vec<u8>) -> Option<R>) -> Result<R, Lost> {
        loop {
            if !crate::interrupted() {
                self.asked_at = None;
            } else {
                match self.asked_at {
                    None => {
                        let _ = self.link.send(tag::INTERRUPT, b"");
                        self.asked_at = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > STOP_GRACE => {
                        self.link.kill();
                        return Err(Lost::Stopped);
                    }
                    Some(_) => {}
                }
            }
            let (t, payload) = match self.link.recv_timeout(Duration::from_millis(20)) {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Lost::Died(self.link.reap()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
            };
            match t {
                tag::STDOUT | tag::STDERR => {
                    let fd = if t == tag::STDERR { 2 } else { 1 };
                    if !labelled_write(fd, &payload) {
                        channel::send(t, &payload);
                    }
                }
                tag::DISPLAY | tag::CLEAR_OUTPUT => {
                    channel::send(t, &payload);
                }
                tag::INPUT_REQUEST => {
                    let _ = self.link.send(
                        tag::INPUT_DENIED,
                        b"input() is not available on parallel workers",
                    );
                }
                _ => {
                    if let Some(r) = stop(t, payload) {
                        return Ok(r);
                    }
                }
            }
        }
    }

    /// Waits for the end of the library running on the worker: `Ok` when it
    /// finished, `Err` with why not.
    pub fn finish(&mut self) -> Result<Result<(), String>, Lost> {
        self.pump(|t, payload| {
            let text = || String::from_utf8_lossy(&payload).into_owned();
            match t {
                tag::DONE => Some(Ok(())),
                tag::PANIC => Some(Err(format!("panicked: {}", json_message(&text())))),
                tag::CELL_ERROR => Some(Err(json_message(&text()))),
                tag::LOAD_ERROR => Some(Err(format!("could not load the cell: {}", text()))),
                _ => None,
            }
        })
    }
}

/// A worker process of this runner's pool.
pub(crate) struct Local {
    child: std::process::Child,
    to: UnixStream,
    /// Frames from the worker, read by a thread of their own; `None` at its end.
    frames: mpsc::Receiver<Frame>,
    pid: u32,
}

unsafe extern "C" {
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
}
const F_GETFD: c_int = 1;
const F_SETFD: c_int = 2;
const FD_CLOEXEC: c_int = 1;

/// How a worker ended, in words.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.signal(), status.code()) {
        (Some(sig), _) => {
            let name = match sig {
                4 => "SIGILL (illegal instruction)",
                6 => "SIGABRT (abort)",
                7 => "SIGBUS (bus error)",
                8 => "SIGFPE (arithmetic fault)",
                9 => "SIGKILL (killed)",
                11 => "SIGSEGV (segmentation fault)",
                15 => "SIGTERM",
                _ => "",
            };
            if name.is_empty() {
                format!("killed by signal {sig}")
            } else {
                format!("killed by signal {name}")
            }
        }
        (None, Some(c)) => format!("exited with status {c}"),
        _ => "ended".into(),
    }
}

impl Local {
    /// Starts a worker: this runner's executable, with its channel on fd 3.
    pub fn spawn() -> Result<Local, String> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let exe = std::env::current_exe().map_err(|e| format!("the runner's path: {e}"))?;
        let fd = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new(exe);
        cmd.env("FERROCELL_WORKER", "1")
            .stdin(std::process::Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if fd == channel::CHANNEL_FD {
                    let flags = fcntl(fd, F_GETFD);
                    fcntl(fd, F_SETFD, flags & !FD_CLOEXEC);
                } else if dup2(fd, channel::CHANNEL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        drop(theirs);
        let pid = child.id();
        let mut reader = ours.try_clone().map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("worker {pid} reader"))
            .spawn(move || {
                while let Some(frame) = channel::read_frame(&mut reader) {
                    if tx.send(Some(frame)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(None);
            })
            .map_err(|e| e.to_string())?;
        let mut p = Local {
            child,
            to: ours,
            frames: rx,
            pid,
        };
        match p.frames.recv_timeout(START_TIMEOUT) {
            Ok(Some((tag::READY, _))) => Ok(p),
            other => {
                let why = match other {
                    Err(_) => format!("no answer within {} s", START_TIMEOUT.as_secs()),
                    _ => p.reap(),
                };
                p.kill();
                Err(format!("a worker process did not start ({why})"))
            }
        }
    }

    fn send_raw(&mut self, t: u8, payload: &[u8]) -> Result<(), String> {
        let mut head = [0u8; 5];
        head[0] = t;
        head[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        self.to
            .write_all(&head)
            .and_then(|_| self.to.write_all(payload))
            .map_err(|e| e.to_string())
    }
}

impl Drop for Local {
    /// A worker dropped (not put back in the pool) is killed and reaped; its reader
    /// thread sees the socket close.
    fn drop(&mut self) {
        let _ = self.to.shutdown(std::net::Shutdown::Both);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Transport for Local {
    fn send(&mut self, t: u8, payload: &[u8]) -> Result<(), String> {
        self.send_raw(t, payload)
    }

    fn recv_timeout(&mut self, d: Duration) -> Result<Frame, mpsc::RecvTimeoutError> {
        self.frames.recv_timeout(d)
    }

    /// How the worker ended, once its channel closed.
    fn reap(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return describe(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = self.child.kill();
                    return "closed its channel".into();
                }
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn name(&self) -> String {
        format!("worker process {}", self.pid)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Frames from the kernel for each engine's rank thread.
/// Each entry is tagged with the link it belongs to, so that a replaced link going
/// away does not take its successor's entry with it.
type Links = HashMap<u32, (u64, mpsc::Sender<Frame>)>;
static LINKS: Mutex<Option<Links>> = Mutex::new(None);

/// A cluster engine, reached through the kernel: frames go out as `TO_ENGINE` and
/// come back as `FROM_ENGINE` (the runner's command loop hands them to
/// [`from_engine`]).
pub(crate) struct Remote {
    engine: u32,
    /// Which link to the engine this is (see [`LINKS`]).
    link: u64,
    frames: mpsc::Receiver<Frame>,
    lost: Option<String>,
    /// The engine itself is gone, not only its worker.
    gone: bool,
}

impl Remote {
    pub fn new(engine: u32) -> Remote {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let link = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        LINKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(engine, (link, tx));
        Remote {
            engine,
            link,
            frames: rx,
            lost: None,
            gone: false,
        }
    }

    fn to_kernel(&self, t: u8, payload: &[u8]) {
        let mut f = Vec::with_capacity(payload.len() + 5);
        f.extend_from_slice(&self.engine.to_le_bytes());
        f.push(t);
        f.extend_from_slice(payload);
        channel::send(tag::TO_ENGINE, &f);
    }
}

/// Called by the runner's command loop: `[engine u32][tag][payload]` from the kernel.
pub(crate) fn from_engine(payload: Vec<u8>) {
    if payload.len() < 5 {
        return;
    }
    let engine = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let t = payload[4];
    let rest = payload[5..].to_vec();
    let links = LINKS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, tx)) = links.as_ref().and_then(|l| l.get(&engine)) {
        let _ = tx.send(Some((t, rest)));
    }
}

impl Transport for Remote {
    fn send(&mut self, t: u8, payload: &[u8]) -> Result<(), String> {
        if let Some(why) = &self.lost {
            return Err(why.clone());
        }
        self.to_kernel(t, payload);
        Ok(())
    }

    fn recv_timeout(&mut self, d: Duration) -> Result<Frame, mpsc::RecvTimeoutError> {
        if self.lost.is_some() {
            return Ok(None);
        }
        match self.frames.recv_timeout(d)? {
            Some((t @ (tag::ENGINE_LOST | tag::WORKER_LOST), why)) => {
                self.lost = Some(String::from_utf8_lossy(&why).into_owned());
                self.gone = t == tag::ENGINE_LOST;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    fn reap(&mut self) -> String {
        self.lost.clone().unwrap_or_else(|| "was lost".into())
    }

    fn kill(&mut self) {
        self.to_kernel(tag::KILL_WORKER, b"");
        self.lost = Some("was stopped: it did not stop after an interrupt".into());
    }

    fn name(&self) -> String {
        format!("engine {}", self.engine)
    }

    fn alive(&mut self) -> bool {
        self.lost.is_none()
    }

    fn replaceable(&self) -> bool {
        !self.gone
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(l) = LINKS.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
            && l.get(&self.engine)
                .is_some_and(|(link, _)| *link == self.link)
        {
            l.remove(&self.engine);
        }
    }
}

/// Why a worker was lost in the middle of a run.
pub(crate) enum Lost {
    /// It died (crashed, or was killed from outside): how.
    Died(String),
    /// It did not stop after an interrupt, so it was killed.
    Stopped,
    /// Its cell ended instead of serving (it could not load, or had not the
    /// variables it needed), or it answered out of turn: why.
    CellEnded(String),
}

impl Lost {
    pub(crate) fn why(&self, p: &Worker) -> String {
        match self {
            Lost::Died(how) => format!("{} {how}", p.link.name()),
            Lost::Stopped => "not run (interrupted)".into(),
            Lost::CellEnded(why) => why.clone(),
        }
    }
}
