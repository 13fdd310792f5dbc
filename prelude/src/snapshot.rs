//! Snapshots of the session's variables, written in the background by a forked copy
//! of the runner, so that a new runner can get them back if this one dies.
//!
//! Why a fork: serialising a 2 GB variable takes seconds, and the notebook must not
//! wait for it. A forked child sees the values as they were when the cell ended
//! (copy-on-write, as Redis's background save does), streams each one straight into
//! a file, and exits, while the runner goes on with the next cell. Pages are copied
//! only where the runner writes while the child still reads them; and a cell that
//! takes a variable whose snapshot is still being written cancels that snapshot (it
//! is stale anyway, and written again after the cell), so memory stays near the
//! values' own size.
//!
//! Files, in the kernel's private snapshot directory, for a variable `x`:
//! - `x`: the last complete snapshot. Only a rename makes it, so it is whole or absent.
//! - `.x.prev`: while a saver runs, the previous snapshot is parked here. If the new
//!   bytes are the same, it is renamed back, so the file keeps its identity and
//!   worker processes need not load it again. Parking it means a runner that dies
//!   before the saver ends finds no snapshot, rather than an old value.
//! - `.x.tmp`, `.x.cancel`, `.x.failed`: the bytes being written, the runner's
//!   request that a saver give `x` up, and why the last snapshot of `x` failed.
//! - `.saver-PID` (and `.saver-PID.err`): a saver at work and its failures; the
//!   kernel waits for savers before it restores variables into a new runner.

use std::ffi::c_int;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

unsafe extern "C" {
    fn fork() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn setpgid(pid: c_int, pgid: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn signal(sig: c_int, handler: usize) -> usize;
    fn _exit(code: c_int) -> !;
}
const WNOHANG: c_int = 1;
const SIGINT: c_int = 2;
const SIGKILL: c_int = 9;
const SIG_IGN: usize = 1;

/// A saver at work: the child's pid and the variables it writes.
struct Saver {
    pid: c_int,
    names: Vec<String>,
}

static SAVERS: Mutex<Vec<Saver>> = Mutex::new(Vec::new());
/// Set in a saver child: it must not cancel or wait for anything.
static IN_SAVER: AtomicBool = AtomicBool::new(false);
/// A saver child's failures, one line each.
static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Failures of ended savers, to tell in the output of the next cell the user sees.
static UNTOLD: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Set while the running cell is a saver (its output goes nowhere).
static SAVER_CELL: AtomicBool = AtomicBool::new(false);

/// Where snapshots go: a private directory of the kernel's (`FERROCELL_SNAPSHOTS`),
/// or nowhere when the prelude runs outside a kernel or in a worker process (a
/// worker reads the session's snapshots; only the runner writes them).
pub(crate) fn dir() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    if crate::__processes::is_worker() {
        return None;
    }
    DIR.get_or_init(|| std::env::var_os("FERROCELL_SNAPSHOTS").map(Into::into))
        .as_deref()
}

fn side(dir: &Path, name: &str, what: &str) -> PathBuf {
    dir.join(format!(".{name}.{what}"))
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
    // An older saver of the same variables is stale: it stops, and this one starts
    // from the files it leaves.
    for n in names {
        cancel(n);
    }
    wait_for(
        |s| s.names.iter().any(|n| names.contains(n)),
        CANCEL_PATIENCE,
    );
    for n in names {
        let _ = std::fs::remove_file(side(dir, n, "cancel"));
        let _ = std::fs::rename(dir.join(n), side(dir, n, "prev"));
    }
    // The store is held across the fork, so that no other thread of the runner has
    // it locked (and the child stuck) at that moment.
    let store = crate::__vars::lock_store();
    // SAFETY: the child runs only the saver and then `_exit`s; see `child`.
    let pid = unsafe { fork() };
    if pid == 0 {
        drop(store);
        child(dir, names, each);
    }
    drop(store);
    if pid < 0 {
        for n in names {
            discard(dir, n);
        }
        eprintln!(
            "ferrocell: no snapshot of {} (fork failed: {}); if the runner dies, {} lost",
            names.join(", "),
            std::io::Error::last_os_error(),
            if names.len() == 1 {
                "it is"
            } else {
                "they are"
            }
        );
        return;
    }
    let _ = std::fs::write(dir.join(format!(".saver-{pid}")), names.join("\n"));
    SAVERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Saver {
            pid,
            names: names.to_vec(),
        });
    if wait {
        wait_for(|s| s.pid == pid, SAVE_PATIENCE);
    }
}

/// The saver child: writes every variable, records what failed, and exits without
/// running anything of the runner's (no destructors: the values are the runner's).
fn child(dir: &Path, names: &[String], each: &mut dyn FnMut(&str)) -> ! {
    IN_SAVER.store(true, Ordering::Relaxed);
    // SAFETY: plain system calls on this process. Its own group: a runner replaced
    // for a stuck cell (its group killed) does not take an unfinished snapshot with
    // it, and an interrupt never reaches it.
    unsafe {
        setpgid(0, 0);
        signal(SIGINT, SIG_IGN);
    }
    for n in names {
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| each(n)));
        if done.is_err() {
            discard(dir, n);
            fail(format!("{n}: its Serialize panicked"));
        }
    }
    let failures = FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .join("\n");
    let pid = std::process::id();
    if !failures.is_empty() {
        let _ = std::fs::write(dir.join(format!(".saver-{pid}.err")), &failures);
    }
    let _ = std::fs::remove_file(dir.join(format!(".saver-{pid}")));
    // SAFETY: ends the child at once, as a forked child should.
    unsafe { _exit(if failures.is_empty() { 0 } else { 1 }) }
}

fn fail(line: String) {
    FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(line);
}

/// Removes what a saver was writing for `name`: no snapshot rather than an old one.
fn discard(dir: &Path, name: &str) {
    for what in ["tmp", "prev"] {
        let _ = std::fs::remove_file(side(dir, name, what));
    }
}

/// Writes one variable's snapshot: `serialise` streams the bytes into the writer it
/// is given. Called in a saver child. `None` (a type without serde support) removes
/// the snapshot.
pub fn write(name: &str, serialise: Option<Serialiser<'_>>) {
    let Some(dir) = dir() else { return };
    let Some(serialise) = serialise else {
        discard(dir, name);
        let _ = std::fs::remove_file(dir.join(name));
        return;
    };
    let prev = side(dir, name, "prev");
    let tmp = side(dir, name, "tmp");
    let written = (|| -> Result<Outcome, String> {
        let file = Differ::new(&prev, &tmp, side(dir, name, "cancel"));
        let mut w = std::io::BufWriter::with_capacity(CHUNK, file);
        serialise(&mut w)?;
        w.into_inner()
            .map_err(|e| e.error().to_string())?
            .finish()
            .map_err(|e| e.to_string())
    })();
    let kept = match written {
        // The same bytes: the parked file comes back, keeping its identity.
        Ok(Outcome::Same) => std::fs::rename(&prev, dir.join(name)),
        Ok(Outcome::Written) => std::fs::rename(&tmp, dir.join(name)),
        Err(why) => {
            if why != CANCELLED {
                // For the kernel, should the runner die: why the variable is lost.
                let _ = std::fs::write(side(dir, name, "failed"), &why);
                fail(format!("{name}: {why}"));
            }
            Err(std::io::Error::other(why))
        }
    };
    if kept.is_ok() {
        let _ = std::fs::remove_file(side(dir, name, "failed"));
    } else {
        let _ = std::fs::remove_file(dir.join(name));
    }
    discard(dir, name);
}

/// A saver's code for one value: streams its bytes into the writer it is given.
pub type Serialiser<'a> = &'a mut dyn FnMut(&mut dyn Write) -> Result<(), String>;

const CANCELLED: &str = "cancelled";
/// What the saver hands its files at a time.
const CHUNK: usize = 1 << 20;

enum Outcome {
    Same,
    Written,
}

/// A file writer that writes only what differs from the previous snapshot: while the
/// new bytes match the parked file it only compares them (a cell that read a large
/// variable without changing it costs no disk writes); at the first difference it
/// copies the matching part over and writes from there. It gives up when the runner
/// cancels the snapshot.
struct Differ {
    prev: Option<std::fs::File>,
    matched: u64,
    prev_path: PathBuf,
    tmp_path: PathBuf,
    out: Option<std::fs::File>,
    cancel: PathBuf,
    chunks: usize,
    scratch: Vec<u8>,
}

impl Differ {
    fn new(prev: &Path, tmp: &Path, cancel: PathBuf) -> Differ {
        Differ {
            prev: std::fs::File::open(prev).ok(),
            matched: 0,
            prev_path: prev.to_path_buf(),
            tmp_path: tmp.to_path_buf(),
            out: None,
            cancel,
            chunks: 0,
            scratch: Vec::new(),
        }
    }

    /// Stops comparing: the new file starts with the bytes matched so far.
    fn diverge(&mut self) -> std::io::Result<&mut std::fs::File> {
        if self.out.is_none() {
            self.prev = None;
            let mut out = std::fs::File::create(&self.tmp_path)?;
            if self.matched > 0 {
                let from = std::fs::File::open(&self.prev_path)?;
                let copied = std::io::copy(&mut std::io::Read::take(from, self.matched), &mut out)?;
                if copied != self.matched {
                    return Err(std::io::Error::other("the previous snapshot shrank"));
                }
            }
            self.out = Some(out);
        }
        Ok(self.out.as_mut().expect("just made"))
    }

    fn finish(mut self) -> std::io::Result<Outcome> {
        if let Some(prev) = self.prev.as_mut() {
            let mut one = [0u8; 1];
            if std::io::Read::read(prev, &mut one)? == 0 {
                return Ok(Outcome::Same);
            }
        }
        self.diverge()?;
        Ok(Outcome::Written)
    }
}

impl Write for Differ {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.chunks += 1;
        if self.chunks.is_multiple_of(8) && self.cancel.exists() {
            return Err(std::io::Error::other(CANCELLED));
        }
        if let Some(prev) = self.prev.as_mut() {
            self.scratch.resize(buf.len(), 0);
            let same =
                std::io::Read::read_exact(prev, &mut self.scratch).is_ok() && self.scratch == buf;
            if same {
                self.matched += buf.len() as u64;
                return Ok(buf.len());
            }
        }
        self.diverge()?.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Asks any saver writing `name` to give it up: a cell is about to change the
/// value, and its snapshot is written again after the cell.
pub(crate) fn cancel(name: &str) {
    if IN_SAVER.load(Ordering::Relaxed) {
        return;
    }
    let Some(dir) = dir() else { return };
    let busy = SAVERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|s| s.names.iter().any(|n| n == name));
    if busy {
        let _ = std::fs::write(side(dir, name, "cancel"), b"");
    }
}

/// Forgets a variable's snapshot (`%reset`, a redefinition).
pub(crate) fn remove(name: &str) {
    let Some(dir) = dir() else { return };
    if IN_SAVER.load(Ordering::Relaxed) {
        return;
    }
    cancel(name);
    wait_for(|s| s.names.iter().any(|n| n == name), CANCEL_PATIENCE);
    discard(dir, name);
    let _ = std::fs::remove_file(side(dir, name, "cancel"));
    let _ = std::fs::remove_file(side(dir, name, "failed"));
    let _ = std::fs::remove_file(dir.join(name));
}

/// Waits for the savers that `which` picks, and reports any that failed. One that
/// has not ended after `patience` is killed (a `Serialize` stuck on a lock that
/// another thread of the runner held when it forked, say).
fn wait_for(which: impl Fn(&Saver) -> bool, patience: std::time::Duration) {
    let picked: Vec<Saver> = {
        let mut savers = SAVERS.lock().unwrap_or_else(|e| e.into_inner());
        let (picked, rest) = std::mem::take(&mut *savers).into_iter().partition(which);
        *savers = rest;
        picked
    };
    let deadline = std::time::Instant::now() + patience;
    for s in picked {
        let mut status = 0;
        loop {
            // SAFETY: polls a child of this process.
            if unsafe { waitpid(s.pid, &mut status, WNOHANG) } != 0 {
                break;
            }
            if std::time::Instant::now() > deadline {
                // SAFETY: kills and reaps a child of this process (its own group).
                unsafe {
                    kill(s.pid, SIGKILL);
                    waitpid(s.pid, &mut status, 0);
                }
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        ended(&s, status);
    }
}

/// How long a cancelled saver may take to stop (it checks every few MiB it writes).
const CANCEL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a `%%parallel processes` cell waits for the snapshots it sends.
const SAVE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(600);

/// Reaps savers that have ended, keeping their failures to tell.
fn reap() {
    if dir().is_none() {
        return;
    }
    let mut savers = SAVERS.lock().unwrap_or_else(|e| e.into_inner());
    let mut ended_now = Vec::new();
    savers.retain(|s| {
        let mut status = 0;
        // SAFETY: polls a child of this process.
        let r = unsafe { waitpid(s.pid, &mut status, WNOHANG) };
        if r == 0 {
            return true;
        }
        ended_now.push((s.pid, s.names.clone(), status));
        false
    });
    drop(savers);
    for (pid, names, status) in ended_now {
        ended(&Saver { pid, names }, status);
    }
}

/// After a saver ended with `status`: cleans up its files and reports its failures.
fn ended(s: &Saver, status: c_int) {
    let Some(dir) = dir() else { return };
    let _ = std::fs::remove_file(dir.join(format!(".saver-{}", s.pid)));
    let err_path = dir.join(format!(".saver-{}.err", s.pid));
    let failures = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    let killed = status & 0x7f;
    let exit = (status >> 8) & 0xff;
    let mut lines: Vec<String> = failures.lines().map(String::from).collect();
    if killed != 0 {
        // Killed from outside (out of memory, say): what it had not finished is gone.
        for n in &s.names {
            if !dir.join(n).exists() {
                discard(dir, n);
                lines.push(format!("{n}: the saver was killed by signal {killed}"));
            }
        }
    } else if exit != 0 && lines.is_empty() {
        lines.push(format!(
            "{}: the saver exited with status {exit}",
            s.names.join(", ")
        ));
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
