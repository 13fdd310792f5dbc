//! Snapshots of the session's variables, written in the background by a forked copy
//! of the runner, so that a new runner can get them back if this one dies.
//!
//! Why a fork: serialising a 2 GB variable takes seconds, and the notebook must not
//! wait for it. A forked child sees the values as they were when the cell ended
//! (copy-on-write, as Redis's background save does), streams each one into a file,
//! and exits, while the runner goes on with the next cell. Pages are copied only
//! where the runner writes while the child still reads them; and a cell that takes a
//! variable whose snapshot is still being written cancels that snapshot (it is stale
//! anyway, and written again after the cell), so memory stays near the values' own
//! size.
//!
//! Files, in the kernel's private snapshot directory, for a variable `x`:
//! - `x`: the last complete snapshot. Only a rename makes it, so it is whole or absent.
//! - `.x.prev`: while a saver runs, the previous snapshot is parked here. If the new
//!   bytes are the same, it is renamed back, so the file keeps its identity and
//!   worker processes need not load it again. Parking it means that a saver that
//!   dies half-way leaves no snapshot, rather than an old value.
//! - `.x.tmp`, `.x.failed`: the bytes being written, and why the last snapshot of `x`
//!   did not happen (the kernel says so if the runner dies).
//! - `.x.cancel-PID`: the runner asks saver PID to give `x` up.
//! - `.saver-PID`, `.saver-PID.done`, `.saver-PID.err`: a saver at work (the kernel
//!   waits for it before it restores variables into a new runner), the variables it
//!   has finished, and its failures. The saver holds a lock on its marker until it
//!   exits, so a taken lock means a live saver (its pid may have been reused).
//!
//! Two savers never work on the same variable at once: a saver first waits for the
//! older ones that had any of its variables (they stop soon, being cancelled).

use crate::differ::{CHUNK, Differ, Outcome};
use std::ffi::c_int;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

unsafe extern "C" {
    fn fork() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn setpgid(pid: c_int, pgid: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn signal(sig: c_int, handler: usize) -> usize;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn setpriority(which: c_int, who: c_int, prio: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn flock(fd: c_int, operation: c_int) -> c_int;
    fn _exit(code: c_int) -> !;
}
const WNOHANG: c_int = 1;
const SIGINT: c_int = 2;
const SIGKILL: c_int = 9;
const SIG_IGN: usize = 1;
const PRIO_PROCESS: c_int = 0;
const LOCK_SH: c_int = 1;
const LOCK_EX: c_int = 2;

/// A saver at work: the child's pid, the variables it writes, and since when.
struct Saver {
    pid: c_int,
    names: Vec<String>,
    started: Instant,
}

static SAVERS: Mutex<Vec<Saver>> = Mutex::new(Vec::new());
/// Set in a saver child: it must not cancel or wait for anything of the runner's.
static IN_SAVER: AtomicBool = AtomicBool::new(false);
/// A saver child's failures, one line each.
static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Failures of ended savers, to tell in the output of the next cell the user sees.
static UNTOLD: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Set while the running cell is a saver (its output goes nowhere).
static SAVER_CELL: AtomicBool = AtomicBool::new(false);

/// How long a saver may run before the runner stops it (a `Serialize` stuck on a
/// lock that another thread of the runner held when it forked, say).
const SAVER_DEADLINE: Duration = Duration::from_secs(600);

/// Where snapshots go: a private directory of the kernel's (`FERROCELL_SNAPSHOTS`),
/// or nowhere when the prelude runs outside a kernel or in a worker process (a
/// worker reads the session's snapshots; only the runner writes them).
pub(crate) fn dir() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    if crate::process::is_worker() {
        return None;
    }
    DIR.get_or_init(|| std::env::var_os("FERROCELL_SNAPSHOTS").map(Into::into))
        .as_deref()
}

fn side(dir: &Path, name: &str, what: &str) -> PathBuf {
    dir.join(format!(".{name}.{what}"))
}

fn marker(dir: &Path, pid: impl std::fmt::Display, what: &str) -> PathBuf {
    dir.join(format!(".saver-{pid}{what}"))
}

fn savers() -> std::sync::MutexGuard<'static, Vec<Saver>> {
    SAVERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Saves `names` in a forked child, which calls `each` for every name (the cell's
/// saver: it serialises the value through [`write`]). Returns at once, unless `wait`
/// (a `%%parallel processes` cell needs the files now).
pub fn save(names: &[String], wait: bool, each: &mut dyn FnMut(&str)) {
    let Some(dir) = dir() else { return };
    if IN_SAVER.load(Ordering::Relaxed) || names.is_empty() {
        return;
    }
    SAVER_CELL.store(true, Ordering::Relaxed);
    reap();
    // Older savers of these variables are stale: they are asked to stop, and the
    // child waits for them before it touches these variables' files.
    let older: Vec<c_int> = {
        let savers = savers();
        savers
            .iter()
            .filter(|s| s.names.iter().any(|n| names.contains(n)))
            .map(|s| s.pid)
            .collect()
    };
    for n in names {
        cancel(n);
    }
    if older.is_empty() {
        park(dir, names);
    }
    // The saver's marker, locked before the fork: the child inherits the lock and
    // holds it until it exits, however it ends, so that whoever finds the lock
    // taken knows the saver is alive (a pid alone may have been reused).
    // A name of its own (`.saver-new-RUNNER-N`): a claim left by a runner killed
    // between the fork and the rename is never opened again.
    static CLAIMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CLAIMS.fetch_add(1, Ordering::Relaxed);
    let claim = marker(dir, format!("new-{}-{n}", std::process::id()), "");
    let locked = claimed(&claim, names);
    // The store is held across the fork, so that no other thread of the runner has
    // it locked (and the child stuck) at that moment.
    let store = crate::store::lock_store();
    // SAFETY: the child runs only the saver and then `_exit`s; see `child`.
    let pid = match &locked {
        Ok(_) => unsafe { fork() },
        Err(_) => -1,
    };
    if pid == 0 {
        drop(store);
        child(dir, names, &older, each);
    }
    drop(store);
    if pid < 0 {
        let why = match locked {
            Ok(_) => format!("fork failed ({})", std::io::Error::last_os_error()),
            Err(e) => format!("its saver's marker could not be written ({e})"),
        };
        let _ = std::fs::remove_file(&claim);
        for n in names {
            // Its snapshot was parked for this saver: none is left rather than that.
            discard(dir, n);
            let _ = std::fs::write(side(dir, n, "failed"), format!("the runner's {why}"));
        }
        UNTOLD
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{}: {why}", names.join(", ")));
        return;
    }
    // SAFETY: the child's group, set on both sides so that it is in place whichever
    // runs first: a runner killed with its group does not take the saver with it.
    unsafe { setpgid(pid, pid) };
    // The marker takes the child's pid; the runner's copy of the lock is let go.
    let _ = std::fs::rename(&claim, marker(dir, pid, ""));
    drop(locked);
    savers().push(Saver {
        pid,
        names: names.to_vec(),
        started: Instant::now(),
    });
    if wait {
        wait_for(|s| s.pid == pid || older.contains(&s.pid), SAVER_DEADLINE);
    }
}

/// Writes a saver's marker (the names it saves) and locks it, close-on-exec: only
/// the saver forked next inherits it.
fn claimed(path: &Path, names: &[String]) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(names.join("\n").as_bytes())?;
    // SAFETY: locks a file this function owns.
    if unsafe { flock(file.as_raw_fd(), LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Blocks until the saver `pid` has exited: its marker's lock is let go when it
/// does (a marker already gone: it has finished).
fn wait_for_exit(dir: &Path, pid: c_int) {
    use std::os::fd::AsRawFd;
    if let Ok(file) = std::fs::File::open(marker(dir, pid, "")) {
        // SAFETY: takes a shared lock on a file this function owns; blocks while
        // the saver holds its exclusive one.
        unsafe { flock(file.as_raw_fd(), LOCK_SH) };
    }
}

/// Parks the current snapshots of `names` (see the module's notes).
fn park(dir: &Path, names: &[String]) {
    for n in names {
        let _ = std::fs::rename(dir.join(n), side(dir, n, "prev"));
    }
}

/// The saver child: waits for older savers of its variables, writes every variable,
/// records what it finished and what failed, and exits without running anything of
/// the runner's (no destructors: the values are the runner's).
fn child(dir: &Path, names: &[String], older: &[c_int], each: &mut dyn FnMut(&str)) -> ! {
    IN_SAVER.store(true, Ordering::Relaxed);
    // SAFETY: plain system calls on this process. Its own group: a runner replaced
    // for a stuck cell (its group killed) does not take an unfinished snapshot with
    // it, and an interrupt never reaches it. It writes nothing to the runner's
    // output or channel: output of a `Serialize` goes nowhere.
    unsafe {
        setpgid(0, 0);
        signal(SIGINT, SIG_IGN);
        // A background job: the notebook's cells come first for the CPU.
        setpriority(PRIO_PROCESS, 0, 19);
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            use std::os::fd::AsRawFd;
            dup2(null.as_raw_fd(), 1);
            dup2(null.as_raw_fd(), 2);
        }
        close(crate::channel::CHANNEL_FD);
    }
    let pid = std::process::id();
    if !older.is_empty() {
        for &p in older {
            wait_for_exit(dir, p);
        }
        park(dir, names);
    }
    let mut done = String::new();
    for n in names {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| each(n)));
        if ran.is_err() {
            lose(dir, n, "its Serialize panicked");
        }
        let _ = std::fs::remove_file(side(dir, n, &format!("cancel-{pid}")));
        done.push_str(n);
        done.push('\n');
        let _ = std::fs::write(marker(dir, pid, ".done"), &done);
    }
    let failures = FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .join("\n");
    if !failures.is_empty() {
        let _ = std::fs::write(marker(dir, pid, ".err"), &failures);
    }
    let _ = std::fs::remove_file(marker(dir, pid, ""));
    // SAFETY: ends the child at once, as a forked child should.
    unsafe { _exit(if failures.is_empty() { 0 } else { 1 }) }
}

/// Leaves `name` without a snapshot (rather than an old one), saying why.
fn lose(dir: &Path, name: &str, why: &str) {
    discard(dir, name);
    let _ = std::fs::remove_file(dir.join(name));
    let _ = std::fs::write(side(dir, name, "failed"), why);
    FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{name}: {why}"));
}

/// Removes what a saver was writing for `name`.
fn discard(dir: &Path, name: &str) {
    for what in ["tmp", "prev"] {
        let _ = std::fs::remove_file(side(dir, name, what));
    }
}

/// A saver's code for one value: streams its bytes into the writer it is given.
pub type Serialiser<'a> = &'a mut dyn FnMut(&mut dyn Write) -> Result<(), String>;

/// Writes one variable's snapshot: `serialise` streams the bytes into the writer it
/// is given. Called in a saver child. `None` (a type without serde support) removes
/// the snapshot.
pub fn write(name: &str, serialise: Option<Serialiser<'_>>) {
    let Some(dir) = dir() else { return };
    let Some(serialise) = serialise else {
        discard(dir, name);
        let _ = std::fs::remove_file(dir.join(name));
        let _ = std::fs::remove_file(side(dir, name, "failed"));
        return;
    };
    let prev = side(dir, name, "prev");
    let tmp = side(dir, name, "tmp");
    let cancel = side(dir, name, &format!("cancel-{}", std::process::id()));
    let mut w = std::io::BufWriter::with_capacity(CHUNK, Differ::new(&prev, &tmp, cancel));
    let serialised = serialise(&mut w);
    let (differ, flushed) = match w.into_parts() {
        (d, Ok(rest)) => {
            let mut d = d;
            let flushed = d.write_all(&rest).map_err(|e| e.to_string());
            (d, flushed)
        }
        (d, Err(_)) => (d, Err("the buffered bytes were lost".to_string())),
    };
    if differ.cancelled {
        // A cell took the variable: its snapshot comes after that cell.
        discard(dir, name);
        let _ = std::fs::write(
            side(dir, name, "failed"),
            "a later cell used it before it was written",
        );
        return;
    }
    let outcome = serialised
        .and(flushed)
        .and_then(|_| differ.finish().map_err(|e| e.to_string()));
    let kept = match outcome {
        // The same bytes: the parked file comes back, keeping its identity.
        Ok(Outcome::Same) => std::fs::rename(&prev, dir.join(name)),
        Ok(Outcome::Written) => std::fs::rename(&tmp, dir.join(name)),
        Err(why) => return lose(dir, name, &why),
    };
    match kept {
        Ok(()) => {
            discard(dir, name);
            let _ = std::fs::remove_file(side(dir, name, "failed"));
        }
        Err(e) => lose(dir, name, &e.to_string()),
    }
}

/// Asks any saver writing `name` to give it up: a cell is about to change the
/// value, and its snapshot is written again after the cell.
pub(crate) fn cancel(name: &str) {
    if IN_SAVER.load(Ordering::Relaxed) {
        return;
    }
    let Some(dir) = dir() else { return };
    for s in savers()
        .iter()
        .filter(|s| s.names.iter().any(|n| n == name))
    {
        let _ = std::fs::write(side(dir, name, &format!("cancel-{}", s.pid)), b"");
    }
}

/// Forgets a variable's snapshot (`%reset`, a redefinition). A saver still at work
/// on it is asked to stop; it leaves the files of a cancelled variable removed.
pub(crate) fn remove(name: &str) {
    let Some(dir) = dir() else { return };
    if IN_SAVER.load(Ordering::Relaxed) {
        return;
    }
    cancel(name);
    let busy = savers().iter().any(|s| s.names.iter().any(|n| n == name));
    if !busy {
        discard(dir, name);
        let _ = std::fs::remove_file(dir.join(name));
        let _ = std::fs::remove_file(side(dir, name, "failed"));
    }
}

/// Waits for the savers that `which` picks; one that has not ended after
/// `patience` is killed.
fn wait_for(which: impl Fn(&Saver) -> bool, patience: Duration) {
    let picked: Vec<Saver> = {
        let mut savers = savers();
        let (picked, rest) = std::mem::take(&mut *savers).into_iter().partition(which);
        *savers = rest;
        picked
    };
    let deadline = Instant::now() + patience;
    for s in picked {
        let mut status = 0;
        loop {
            // SAFETY: polls a child of this process.
            if unsafe { waitpid(s.pid, &mut status, WNOHANG) } != 0 {
                break;
            }
            if Instant::now() > deadline {
                status = stop(s.pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        ended(&s, status);
    }
}

/// Kills a saver and reaps it; returns its wait status.
fn stop(pid: c_int) -> c_int {
    let mut status = 0;
    // SAFETY: kills and reaps a child of this process.
    unsafe {
        kill(pid, SIGKILL);
        waitpid(pid, &mut status, 0);
    }
    status
}

/// Reaps savers that have ended, and stops those past [`SAVER_DEADLINE`], keeping
/// their failures to tell.
fn reap() {
    if dir().is_none() {
        return;
    }
    let mut ended_now = Vec::new();
    {
        let mut savers = savers();
        let mut i = 0;
        while i < savers.len() {
            let mut status = 0;
            // SAFETY: polls a child of this process.
            let r = unsafe { waitpid(savers[i].pid, &mut status, WNOHANG) };
            if r == 0 && savers[i].started.elapsed() < SAVER_DEADLINE {
                i += 1;
                continue;
            }
            if r == 0 {
                status = stop(savers[i].pid);
            }
            ended_now.push((savers.swap_remove(i), status));
        }
    }
    for (s, status) in ended_now {
        ended(&s, status);
    }
}

/// After a saver ended with `status`: cleans up its files, and keeps its failures
/// to tell. A saver killed half-way (out of memory, or past its deadline) leaves
/// the variables it had not finished without a snapshot.
fn ended(s: &Saver, status: c_int) {
    let Some(dir) = dir() else { return };
    let done = std::fs::read_to_string(marker(dir, s.pid, ".done")).unwrap_or_default();
    let failures = std::fs::read_to_string(marker(dir, s.pid, ".err")).unwrap_or_default();
    for what in ["", ".done", ".err"] {
        let _ = std::fs::remove_file(marker(dir, s.pid, what));
    }
    let mut lines: Vec<String> = failures.lines().map(String::from).collect();
    let killed = status & 0x7f;
    // A newer saver of a name owns its files now (it waited for this one to end).
    let taken_over: Vec<String> = savers()
        .iter()
        .flat_map(|o| o.names.iter().cloned())
        .collect();
    for n in &s.names {
        let _ = std::fs::remove_file(side(dir, n, &format!("cancel-{}", s.pid)));
        if killed != 0 && !done.lines().any(|d| d == n) && !taken_over.contains(n) {
            discard(dir, n);
            let _ = std::fs::remove_file(dir.join(n));
            let why = if s.started.elapsed() >= SAVER_DEADLINE {
                format!("its saver was stopped after {} s", SAVER_DEADLINE.as_secs())
            } else {
                format!("its saver was killed (signal {killed})")
            };
            let _ = std::fs::write(side(dir, n, "failed"), &why);
            lines.push(format!("{n}: {why}"));
        }
    }
    UNTOLD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(lines);
}

/// Called as a cell starts: it is not a saver until it says so.
pub(crate) fn cell_starts() {
    SAVER_CELL.store(false, Ordering::Relaxed);
}

/// Called as a cell ends: reaps the savers that ended, and tells their failures in
/// this cell's output (unless it is a saver, whose output goes nowhere).
pub(crate) fn cell_ends() {
    reap();
    if SAVER_CELL.load(Ordering::Relaxed) {
        return;
    }
    for l in std::mem::take(&mut *UNTOLD.lock().unwrap_or_else(|e| e.into_inner())) {
        eprintln!(
            "ferrocell: the snapshot of {l}; it has no snapshot until a cell uses it again (if the runner dies, it is lost)"
        );
    }
}
