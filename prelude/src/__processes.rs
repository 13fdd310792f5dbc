//! `%%parallel processes`: the cell body on a warm pool of worker processes.
//!
//! The runner that runs the cell is the coordinator. It keeps the pool (started on
//! first use, kept between cells, a dead worker replaced) and runs one rank thread
//! per worker, as `%%parallel threads` does; each rank thread drives its worker over
//! a socket with the runner channel's frames. A worker is the runner executable
//! again: it loads the same cell library, gets the session variables the body uses
//! from their serde snapshots (only those that changed since it last loaded them),
//! and runs the body on the units it is sent; values come back serialised.
//!
//! Serialisation is the cell's: it passes a [`Codec`] of bincode functions, so this
//! prelude stays free of dependencies.

use crate::__parallel::{self as par, Done, Options, Row, Run, Shared, Slots};
use crate::channel::{self, tag};
use std::collections::{HashMap, VecDeque};
use std::ffi::c_int;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a new worker may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a worker may take to stop after an interrupt before it is killed (the
/// kernel replaces the whole runner after a second).
const STOP_GRACE: Duration = Duration::from_millis(600);

/// The cell's serialisation of items and values (bincode, in the generated code).
pub struct Codec<I, T> {
    pub ser_item: fn(&I) -> Result<Vec<u8>, String>,
    pub de_item: fn(&[u8]) -> Result<I, String>,
    pub ser_value: fn(&T) -> Result<Vec<u8>, String>,
    pub de_value: fn(&[u8]) -> Result<T, String>,
}

/// Whether this process is a worker of a coordinator's pool.
pub fn is_worker() -> bool {
    static WORKER: OnceLock<bool> = OnceLock::new();
    *WORKER.get_or_init(|| std::env::var_os("FERROCELL_WORKER").is_some())
}

// ---------------------------------------------------------------------------
// The worker side.

/// What the coordinator sent a worker's running cell.
enum Work {
    Units(Vec<u8>),
    End,
}

static WORK: Mutex<VecDeque<Work>> = Mutex::new(VecDeque::new());
static WORK_READY: Condvar = Condvar::new();
/// Set when a cell's run has been served: a cell serves one run per RUN it is sent
/// (a `--scaling` cell makes several calls; the coordinator sends a RUN for each).
static SERVED: AtomicBool = AtomicBool::new(false);

/// Called by the runner's command loop for the frames that carry work.
pub(crate) fn push_work(t: u8, payload: Vec<u8>) {
    let work = if t == tag::UNITS {
        Work::Units(payload)
    } else {
        Work::End
    };
    WORK.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_back(work);
    WORK_READY.notify_all();
}

/// Called by the runner when a new cell starts.
pub(crate) fn new_cell() {
    SERVED.store(false, Ordering::Relaxed);
    WORK.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

fn next_work() -> Work {
    let mut q = WORK.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(w) = q.pop_front() {
            return w;
        }
        q = WORK_READY.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

/// A worker's rank and the run's size, from the RUN that started the cell.
fn worker_place() -> (usize, usize) {
    let args = crate::__runner::args();
    let n = |i: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(0);
    (n(1), n(2).max(1))
}

/// A worker's run of one unit: (item bytes, rank, size) → value bytes, or why not.
type WorkerUnit<'a> = &'a dyn Fn(&[u8], usize, usize) -> Result<Vec<u8>, String>;

/// The coordinator's reading of a unit's value: (unit, value bytes) → the value as
/// shown, the value itself kept in its slot.
type Decode<'a> = &'a (dyn Fn(usize, &[u8]) -> Result<String, String> + Sync);

/// [`Decode`] before it is given the slots.
type DecodeInto<'a, T> = &'a (dyn Fn(&Slots<T>, usize, &[u8]) -> Result<String, String> + Sync);

/// Runs units as they come until the coordinator says the run is over. `unit` takes
/// an item's bytes and gives the value's bytes (or why there is none).
fn serve(unit: WorkerUnit) {
    if SERVED.swap(true, Ordering::Relaxed) {
        return;
    }
    let (rank, size) = worker_place();
    while let Work::Units(batch) = next_work() {
        let mut r = Reader(&batch);
        let first = r.u64();
        let n = r.u32();
        let mut out = Vec::new();
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        for _ in 0..n {
            let item = r.bytes();
            let t0 = Instant::now();
            let value = panic::catch_unwind(AssertUnwindSafe(|| unit(item, rank, size)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", par::panic_message(&*p))));
            out.extend_from_slice(&t0.elapsed().as_secs_f64().to_le_bytes());
            let (ok, bytes) = match &value {
                Ok(b) => (1u8, b.as_slice()),
                Err(m) => (0u8, m.as_bytes()),
            };
            out.push(ok);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        // What the units printed goes before their values.
        let _ = std::io::stdout().flush();
        channel::send(tag::UNITS_DONE, &out);
    }
}

/// Reads the little-endian fields of a units frame.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let h = self.take(8);
        b[..h.len()].copy_from_slice(h);
        u64::from_le_bytes(b)
    }
    fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let h = self.take(4);
        b[..h.len()].copy_from_slice(h);
        u32::from_le_bytes(b)
    }
    fn f64(&mut self) -> f64 {
        f64::from_bits(self.u64())
    }
    fn bytes(&mut self) -> &'a [u8] {
        let n = self.u32() as usize;
        self.take(n)
    }
}

// ---------------------------------------------------------------------------
// The coordinator side: the pool.

/// One worker process and the variables it holds.
struct Proc {
    child: std::process::Child,
    to: UnixStream,
    /// Frames from the worker, read by a thread of their own; `None` at its end.
    frames: mpsc::Receiver<Option<(u8, Vec<u8>)>>,
    pid: u32,
    /// Session variables loaded there, by name, with the snapshot version loaded.
    loaded: HashMap<String, String>,
}

/// The warm pool: worker `r` serves rank `r`.
static POOL: Mutex<Vec<Option<Proc>>> = Mutex::new(Vec::new());

extern "C" {
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

impl Proc {
    /// Starts a worker: this runner's executable, with its channel on fd 3.
    fn spawn() -> Result<Proc, String> {
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
        let mut p = Proc {
            child,
            to: ours,
            frames: rx,
            pid,
            loaded: HashMap::new(),
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

    fn send(&mut self, t: u8, payload: &[u8]) -> Result<(), String> {
        let mut head = [0u8; 5];
        head[0] = t;
        head[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        self.to
            .write_all(&head)
            .and_then(|_| self.to.write_all(payload))
            .map_err(|e| e.to_string())
    }

    /// Starts a library on the worker (as the kernel does on the runner).
    fn run(&mut self, lib: &str, symbol: &str, args: &[String]) -> Result<(), String> {
        let mut payload = format!("{lib}\0{symbol}");
        for a in args {
            payload.push('\0');
            payload.push_str(a);
        }
        self.send(tag::RUN, payload.as_bytes())
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

    /// Handles the worker's frames until `stop` takes one. Output is relayed as the
    /// rank's (this thread is marked as that rank); displays go to the kernel as
    /// they are. After an interrupt the worker is asked to stop, then killed.
    fn pump<R>(&mut self, mut stop: impl FnMut(u8, Vec<u8>) -> Option<R>) -> Result<R, Lost> {
        let mut asked_at: Option<Instant> = None;
        loop {
            if crate::interrupted() {
                match asked_at {
                    None => {
                        let _ = self.send(tag::INTERRUPT, b"");
                        asked_at = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > STOP_GRACE => {
                        self.kill();
                        return Err(Lost::Stopped);
                    }
                    Some(_) => {}
                }
            }
            let (t, payload) = match self.frames.recv_timeout(Duration::from_millis(20)) {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Lost::Died(self.reap()))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
            };
            match t {
                tag::STDOUT | tag::STDERR => {
                    let fd = if t == tag::STDERR { 2 } else { 1 };
                    if !par::labelled_write(fd, &payload) {
                        channel::send(t, &payload);
                    }
                }
                tag::DISPLAY | tag::CLEAR_OUTPUT => {
                    channel::send(t, &payload);
                }
                tag::INPUT_REQUEST => {
                    let _ = self.send(
                        tag::INPUT_DENIED,
                        b"input() is not available in %%parallel processes",
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
    fn finish(&mut self) -> Result<Result<(), String>, Lost> {
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

/// Why a worker was lost in the middle of a run.
enum Lost {
    /// It died (crashed, or was killed from outside): how.
    Died(String),
    /// It did not stop after an interrupt, so it was killed.
    Stopped,
}

/// The `message` of a panic or error frame (JSON made by the runner).
fn json_message(text: &str) -> String {
    let Some(start) = text.find("\"message\":\"") else {
        return text.to_string();
    };
    let mut out = String::new();
    let mut chars = text[start + 11..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        out.push(c);
                    }
                }
                Some(c) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// What the kernel passed the coordinating cell: the library that loads variables
/// on a worker, and the version of each variable's snapshot.
struct Setup {
    /// This cell's library and entry point, to run on the workers.
    cell: (String, String),
    /// The restore library and its entry point; empty when the body uses no variable.
    restore: (String, String),
    /// (name, snapshot version) of each variable the body uses.
    vars: Vec<(String, String)>,
}

impl Setup {
    fn from_args() -> Setup {
        let args = crate::__runner::args();
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        Setup {
            cell: crate::__runner::current_cell(),
            restore: (arg(0), arg(1)),
            vars: args
                .iter()
                .skip(2)
                .filter_map(|a| a.split_once('\t'))
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Brings `p` ready to serve: loads the variables it lacks, then starts the cell.
    fn prepare(&self, p: &mut Proc, rank: usize, size: usize) -> Result<(), String> {
        let stale: Vec<String> = self
            .vars
            .iter()
            .filter(|(n, v)| p.loaded.get(n) != Some(v))
            .map(|(n, _)| n.clone())
            .collect();
        if !stale.is_empty() {
            p.run(&self.restore.0, &self.restore.1, &stale)?;
            match p.finish() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("the session variables did not load: {e}")),
                Err(lost) => return Err(lost.why(p)),
            }
            for (n, v) in self.vars.iter().filter(|(n, _)| stale.contains(n)) {
                p.loaded.insert(n.clone(), v.clone());
            }
        }
        p.run(
            &self.cell.0,
            &self.cell.1,
            &["worker".into(), rank.to_string(), size.to_string()],
        )
    }
}

impl Lost {
    fn why(&self, p: &Proc) -> String {
        match self {
            Lost::Died(how) => format!("worker process {} {how}", p.pid),
            Lost::Stopped => "not run (interrupted)".into(),
        }
    }
}

/// Takes the pool's worker for `rank`, starting one if it is missing or dead.
fn checkout(rank: usize) -> Result<Proc, String> {
    let found = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() <= rank {
            pool.resize_with(rank + 1, || None);
        }
        pool[rank].take()
    };
    match found {
        Some(mut p) => {
            if matches!(p.child.try_wait(), Ok(None)) {
                return Ok(p);
            }
            p.kill();
            Proc::spawn()
        }
        None => Proc::spawn(),
    }
}

fn checkin(rank: usize, p: Proc) {
    POOL.lock().unwrap_or_else(|e| e.into_inner())[rank] = Some(p);
}

/// A batch a lost worker left unfinished, to run elsewhere.
struct Orphan {
    units: std::ops::Range<usize>,
    /// How many workers died running it.
    deaths: usize,
}

/// What the rank threads of one run share beyond the hand-out of units.
struct Pooled<'a> {
    setup: &'a Setup,
    /// Unit index → the item's bytes.
    encode: &'a (dyn Fn(usize) -> Result<Vec<u8>, String> + Sync),
    /// Unit index, value bytes → the value as shown (the value itself is kept).
    decode: Decode<'a>,
    orphans: Mutex<Vec<Orphan>>,
    /// Batches handed out and not yet finished or orphaned.
    in_flight: std::sync::atomic::AtomicUsize,
}

impl Pooled<'_> {
    /// The next batch for a rank: an orphaned one first. Waits while other ranks may
    /// still orphan theirs.
    fn next(&self, shared: &Shared) -> Option<(std::ops::Range<usize>, usize)> {
        loop {
            if crate::interrupted() {
                return None;
            }
            if let Some(o) = self.orphans.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                return Some((o.units, o.deaths));
            }
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            if let Some(b) = shared.next_batch() {
                return Some((b, 0));
            }
            if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 && shared.handed_out() {
                // Nothing in flight anywhere, nothing orphaned: the run is over.
                if self
                    .orphans
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
                {
                    return None;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends a batch and reads its values into rows.
    fn run_batch(
        &self,
        p: &mut Proc,
        units: std::ops::Range<usize>,
        rank: usize,
        rows: &mut Done,
    ) -> Result<(), Lost> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&(units.start as u64).to_le_bytes());
        frame.extend_from_slice(&(units.len() as u32).to_le_bytes());
        let mut unsendable = Vec::new();
        for u in units.clone() {
            let bytes = (self.encode)(u).unwrap_or_else(|e| {
                unsendable.push((u, e));
                Vec::new()
            });
            frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            frame.extend_from_slice(&bytes);
        }
        if !unsendable.is_empty() {
            // Cannot happen with bincode on sized data, but say so rather than guess.
            for (u, e) in unsendable {
                rows.push((
                    u,
                    failed_row(format!("its item could not be sent: {e}"), rank),
                ));
            }
            return Ok(());
        }
        if let Err(e) = p.send(tag::UNITS, &frame) {
            return Err(Lost::Died(format!("could not be sent work ({e})")));
        }
        let payload = p.pump(|t, payload| match t {
            tag::UNITS_DONE => Some(Ok(payload)),
            tag::PANIC | tag::CELL_ERROR | tag::DONE | tag::LOAD_ERROR => {
                Some(Err(String::from_utf8_lossy(&payload).into_owned()))
            }
            _ => None,
        })?;
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                for u in units {
                    rows.push((
                        u,
                        failed_row(
                            format!("the worker's cell ended: {}", json_message(&e)),
                            rank,
                        ),
                    ));
                }
                return Ok(());
            }
        };
        let mut r = Reader(&payload);
        let first = r.u64() as usize;
        let n = r.u32() as usize;
        for u in first..first + n {
            let seconds = r.f64();
            let ok = r.take(1) == [1];
            let bytes = r.bytes();
            let shown = if ok {
                panic::catch_unwind(AssertUnwindSafe(|| (self.decode)(u, bytes))).unwrap_or_else(
                    |p| Err(format!("its Debug panicked: {}", par::panic_message(&*p))),
                )
            } else {
                Err(String::from_utf8_lossy(bytes).into_owned())
            };
            rows.push((
                u,
                Row {
                    shown,
                    seconds,
                    rank,
                },
            ));
        }
        Ok(())
    }

    /// One rank of the run: its worker prepared, then units until there are none.
    fn lane(&self, rank: usize, shared: &Shared, size: usize) -> Done {
        let mut rows: Done = Vec::new();
        let fail_all = |rows: &mut Done, why: String| {
            if !shared.dynamic {
                rows.push((rank, failed_row(why, rank)));
                shared.done.fetch_add(1, Ordering::Relaxed);
            } else {
                report(rank, &format!("{why}; its items run on the other workers"));
            }
        };
        let mut proc = match checkout(rank)
            .and_then(|mut p| self.setup.prepare(&mut p, rank, size).map(|()| p))
        {
            Ok(p) => p,
            Err(e) => {
                fail_all(&mut rows, e);
                return rows;
            }
        };
        // A worker that dies is replaced once per run; its batch runs elsewhere.
        let mut replaced = false;
        loop {
            let batch = if shared.dynamic {
                self.next(shared)
            } else if rows.is_empty() {
                Some((rank..rank + 1, 0))
            } else {
                None
            };
            let Some((units, deaths)) = batch else { break };
            let n = units.len();
            match self.run_batch(&mut proc, units.clone(), rank, &mut rows) {
                Ok(()) => {
                    shared.done.fetch_add(n, Ordering::Relaxed);
                    if shared.dynamic {
                        self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                Err(lost) => {
                    let why = lost.why(&proc);
                    if !shared.dynamic {
                        rows.push((rank, failed_row(why, rank)));
                        shared.done.fetch_add(1, Ordering::Relaxed);
                        return rows;
                    }
                    if matches!(lost, Lost::Stopped) {
                        self.in_flight.fetch_sub(1, Ordering::AcqRel);
                        return rows;
                    }
                    if deaths >= 1 {
                        // Two workers died on these items: they are the cause.
                        for u in units {
                            rows.push((
                                u,
                                failed_row(format!("{why} while running it (twice)"), rank),
                            ));
                        }
                        shared.done.fetch_add(n, Ordering::Relaxed);
                        report(rank, &format!("{why}; its {n} items had already lost a worker, so they are reported failed"));
                    } else {
                        self.orphans
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Orphan { units, deaths: 1 });
                        report(
                            rank,
                            &format!("{why}; its {n} unfinished items run on the other workers"),
                        );
                    }
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    if replaced {
                        return rows;
                    }
                    replaced = true;
                    match Proc::spawn()
                        .and_then(|mut p| self.setup.prepare(&mut p, rank, size).map(|()| p))
                    {
                        Ok(p) => proc = p,
                        Err(e) => {
                            report(rank, &format!("no replacement worker: {e}"));
                            return rows;
                        }
                    }
                }
            }
        }
        let _ = proc.send(tag::NO_MORE_UNITS, b"");
        match proc.finish() {
            Ok(Ok(())) => checkin(rank, proc),
            Ok(Err(e)) => {
                report(
                    rank,
                    &format!("the worker's cell failed after its units: {e}"),
                );
                checkin(rank, proc);
            }
            Err(_) => {}
        }
        rows
    }
}

fn failed_row(why: String, rank: usize) -> Row {
    Row {
        shown: Err(why),
        seconds: 0.0,
        rank,
    }
}

/// Tells the user, on stderr, what happened to a worker.
fn report(rank: usize, what: &str) {
    channel::send(
        tag::STDERR,
        format!("%%parallel: worker {rank}: {what}\n").as_bytes(),
    );
}

/// Runs the units on `size` worker processes (the cores, if `None`).
fn coordinate<T>(
    size: Option<usize>,
    opts: Options,
    units: usize,
    dynamic: bool,
    encode: &(dyn Fn(usize) -> Result<Vec<u8>, String> + Sync),
    values: Slots<T>,
    decode: DecodeInto<T>,
) -> Run<T>
where
    T: Send,
{
    let size = size.unwrap_or_else(par::default_size).max(1);
    let setup = Setup::from_args();
    let decode = |u: usize, bytes: &[u8]| decode(&values, u, bytes);
    let pooled = Pooled {
        setup: &setup,
        encode,
        decode: &decode,
        orphans: Mutex::new(Vec::new()),
        in_flight: Default::default(),
    };
    let lane = |rank: usize, shared: &Shared| pooled.lane(rank, shared, size);
    let table = par::drive_lanes(size, opts, units, dynamic, "processes", &lane);
    Run::from_parts(values.into_values(), table)
}

/// Runs `body(rank, size)` once on each of `size` worker processes.
pub fn ranks<T: Send>(
    size: Option<usize>,
    opts: Options,
    body: impl Fn(usize, usize) -> T,
    repr: impl Fn(&T) -> String + Sync,
    codec: Codec<(), T>,
) -> Run<T> {
    if is_worker() {
        serve(&|_, rank, size| {
            (codec.ser_value)(&body(rank, size))
                .map_err(|e| format!("its value could not be sent: {e}"))
        });
        return Run::in_worker();
    }
    let n = size.unwrap_or_else(par::default_size).max(1);
    let decode = |values: &Slots<T>, u: usize, bytes: &[u8]| -> Result<String, String> {
        let v = (codec.de_value)(bytes).map_err(|e| format!("its value did not come back: {e}"))?;
        let shown = repr(&v);
        // SAFETY: unit u is decoded once, by the rank that ran it.
        unsafe { *values.slot(u) = Some(v) };
        Ok(shown)
    };
    coordinate(
        Some(n),
        opts,
        n,
        false,
        &|_| Ok(Vec::new()),
        Slots::new(n),
        &decode,
    )
}

/// Runs `body(item, rank, size)` once per item on `size` worker processes, handing
/// the items out in batches; values come back in the items' order.
pub fn each<I, It, T>(
    size: Option<usize>,
    opts: Options,
    items: impl FnOnce() -> It,
    body: impl Fn(I, usize, usize) -> T,
    repr: impl Fn(&T) -> String + Sync,
    codec: Codec<I, T>,
) -> Run<T>
where
    It: IntoIterator<Item = I>,
    I: Send,
    T: Send,
{
    if is_worker() {
        serve(&|bytes, rank, size| {
            let item =
                (codec.de_item)(bytes).map_err(|e| format!("its item did not arrive: {e}"))?;
            (codec.ser_value)(&body(item, rank, size))
                .map_err(|e| format!("its value could not be sent: {e}"))
        });
        return Run::in_worker();
    }
    let items = Slots(
        items()
            .into_iter()
            .map(|i| std::cell::UnsafeCell::new(Some(i)))
            .collect(),
    );
    let total = items.0.len();
    // SAFETY: a unit's item is read by the one rank that has its batch (a batch that
    // lost its worker is read again, by the next rank, after that).
    let encode = |u: usize| match unsafe { items.slot(u) } {
        Some(item) => (codec.ser_item)(item),
        None => Err("gone".into()),
    };
    let decode = |values: &Slots<T>, u: usize, bytes: &[u8]| -> Result<String, String> {
        let v = (codec.de_value)(bytes).map_err(|e| format!("its value did not come back: {e}"))?;
        let shown = if par::is_shown(u, total) {
            repr(&v)
        } else {
            String::new()
        };
        // SAFETY: as above, for the value's slot.
        unsafe { *values.slot(u) = Some(v) };
        Ok(shown)
    };
    coordinate(size, opts, total, true, &encode, Slots::new(total), &decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_message_of_a_frame() {
        assert_eq!(
            json_message(r#"{"message":"boom \"x\"\nline","file":"a"}"#),
            "boom \"x\"\nline"
        );
        assert_eq!(json_message("plain"), "plain");
    }

    #[test]
    fn reader_reads_what_serve_writes() {
        let mut b = Vec::new();
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&1.5f64.to_le_bytes());
        let mut r = Reader(&b);
        assert_eq!((r.u64(), r.u32(), r.f64()), (7, 2, 1.5));
        assert_eq!(r.bytes(), b"");
    }
}
