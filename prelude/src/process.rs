//! Facts about this runner process that many parts of the prelude read: whether it
//! is a worker of a coordinator's pool, which cell it runs and what the kernel passed
//! along with it, and whether the user asked to interrupt.
//!
//! A leaf: it imports nothing from the crate, so that the runner, the parallel
//! modules and the snapshots can all read these facts without importing each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static ARGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static CURRENT: Mutex<(String, String)> = Mutex::new((String::new(), String::new()));

/// Whether this process is a worker of a coordinator's pool.
pub fn is_worker() -> bool {
    static WORKER: OnceLock<bool> = OnceLock::new();
    *WORKER.get_or_init(|| std::env::var_os("FERROCELL_WORKER").is_some())
}

/// The library and entry point of the cell running now (a parallel cell sends them
/// to its worker processes).
pub fn current_cell() -> (String, String) {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What the kernel passed along with the running library (a saver's variable names).
pub fn args() -> Vec<String> {
    ARGS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Records the library the runner is about to run, with the kernel's arguments.
pub(crate) fn set_cell(lib: &str, symbol: &str, args: Vec<String>) {
    *ARGS.lock().unwrap_or_else(|e| e.into_inner()) = args;
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = (lib.to_string(), symbol.to_string());
}

/// True once the user asked to interrupt the running cell.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Set by the kernel's interrupt; cleared when a cell starts.
pub(crate) fn set_interrupted(on: bool) {
    INTERRUPTED.store(on, Ordering::Relaxed);
}
