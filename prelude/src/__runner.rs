//! The runner: a child process of the kernel that loads compiled cells and runs them.
//!
//! The main thread reads commands from the kernel; each cell runs on its own thread,
//! so that input replies and interrupts are heard while it runs. A ticker flushes
//! Rust's line-buffered stdout so that `print!` without a newline shows up at once.
//! The runner binary interposes libc's `write` for fds 1 and 2 and hands the bytes to
//! [`capture_write`], which puts them on the kernel channel in order with everything
//! else.

use crate::channel::{self, tag};
use crate::json;
use std::ffi::{CString, c_char, c_int, c_void};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

static RUNNING: AtomicBool = AtomicBool::new(false);
static INPUT: Mutex<Option<Result<String, String>>> = Mutex::new(None);
static INPUT_READY: Condvar = Condvar::new();
static PANIC_INFO: Mutex<Option<String>> = Mutex::new(None);
static FAILURE: Mutex<Option<String>> = Mutex::new(None);
/// How an error that reaches a cell's `?` is shown: 0 `{}`, 1 `{:?}`, 2 `{:#?}`
/// (the kernel's `ErrorFormat`; a cell sets it when `%efmt` changed it).
static ERROR_FORMAT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets how the running cell's `?` errors are shown (see [`ERROR_FORMAT`]).
pub fn set_error_format(code: u8) {
    ERROR_FORMAT.store(code, Ordering::Relaxed);
}

/// The variables a failing `?` put in the store before the cell returned.
static KEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());

// Generated cells read the kernel's arguments here (a saver's variable names).
pub use crate::process::{args, current_cell};

#[link(name = "dl")]
unsafe extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}
const RTLD_NOW: c_int = 2;
const RTLD_GLOBAL: c_int = 0x100;

/// Called by the runner binary's `write`/`writev` for fds 1 and 2. Returns false when
/// the bytes should go to the real fd instead (no kernel channel).
pub fn capture_write(fd: i32, bytes: &[u8]) -> bool {
    if crate::rank_output::labelled_write(fd, bytes) {
        return true;
    }
    let t = if fd == 2 { tag::STDERR } else { tag::STDOUT };
    channel::send(t, bytes)
}

pub(crate) fn send_result(text: &str) {
    let mut msg = String::from("{\"text/plain\":");
    json::push_str(&mut msg, text);
    msg.push('}');
    channel::send(tag::RESULT, msg.as_bytes());
}

/// Blocks the cell until the kernel answers an input request.
pub(crate) fn wait_for_input() -> Result<String, String> {
    let mut slot = INPUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(answer) = slot.take() {
            return answer;
        }
        slot = INPUT_READY.wait(slot).unwrap_or_else(|e| e.into_inner());
    }
}

fn answer_input(answer: Result<String, String>) {
    *INPUT.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
    INPUT_READY.notify_all();
}

/// The error a `?` cell returns when one of its errors is not a
/// `std::error::Error`: any `Debug` error converts into it, as `main` returning
/// `Result` accepts. It is deliberately not `Debug` itself, so that this `From` does
/// not overlap core's `From<T> for T`.
pub struct DebugError(String);

impl<E: std::fmt::Debug> From<E> for DebugError {
    fn from(error: E) -> Self {
        match ERROR_FORMAT.load(Ordering::Relaxed) {
            2 => DebugError(format!("{error:#?}")),
            _ => DebugError(format!("{error:?}")),
        }
    }
}

/// How a cell's `?` error is told: an `Error` by its `Display` and each `source()`
/// under it, as `anyhow` and `eyre` do; any other error by its `Debug` form.
pub trait CellFailure {
    fn report(&self);
}

impl CellFailure for Box<dyn std::error::Error> {
    fn report(&self) {
        match ERROR_FORMAT.load(Ordering::Relaxed) {
            1 => return fail(&format!("{self:?}")),
            2 => return fail(&format!("{self:#?}")),
            _ => {}
        }
        let mut text = self.to_string();
        let mut source = self.source();
        if source.is_some() {
            text.push_str("\n\nCaused by:");
        }
        let mut depth = 0;
        while let Some(s) = source {
            text.push_str(&format!("\n    {depth}: {s}"));
            depth += 1;
            source = s.source();
        }
        fail(&text);
    }
}

impl CellFailure for DebugError {
    fn report(&self) {
        fail(&self.0);
    }
}

/// What a cell's `?` applies to, as the kernel writes `?` out: a `Result`, or an
/// `Option` whose `None` becomes [`NoneError`].
pub trait TryBranch {
    type Ok;
    type Err;
    fn branch(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E> TryBranch for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn branch(self) -> Result<T, E> {
        self
    }
}

impl<T> TryBranch for Option<T> {
    type Ok = T;
    type Err = NoneError;
    fn branch(self) -> Result<T, NoneError> {
        self.ok_or(NoneError)
    }
}

/// The error of a cell's `?` on `None`. Its Debug form says so too, for cells
/// whose errors are shown through `Debug` (`%efmt {:?}`, or one error type that is
/// not an `Error`).
pub struct NoneError;

impl std::fmt::Debug for NoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a `?` met `None`")
    }
}

impl std::fmt::Display for NoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a `?` met `None`")
    }
}

impl std::error::Error for NoneError {}

/// Names the variables that a failing `?` put in the store (those the cell bound
/// before it); the kernel keeps them.
pub fn kept_after_error(names: &[&str]) {
    *KEPT.lock().unwrap_or_else(|e| e.into_inner()) = names.iter().map(|n| n.to_string()).collect();
}

/// Records a `?` error that reached the top of a cell; it is reported instead of
/// success when the cell returns.
pub fn fail(error: &dyn std::fmt::Display) {
    let mut msg = String::from("{\"message\":");
    json::push_str(&mut msg, &error.to_string());
    let kept = std::mem::take(&mut *KEPT.lock().unwrap_or_else(|e| e.into_inner()));
    msg.push_str(",\"kept\":[");
    for (i, name) in kept.iter().enumerate() {
        if i > 0 {
            msg.push(',');
        }
        json::push_str(&mut msg, name);
    }
    msg.push(']');
    msg.push('}');
    *FAILURE.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
}

fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_string()
        };
        let mut msg = String::from("{\"message\":");
        json::push_str(&mut msg, &message);
        if let Some(loc) = info.location() {
            msg.push_str(",\"file\":");
            json::push_str(&mut msg, loc.file());
            msg.push_str(&format!(
                ",\"line\":{},\"column\":{}",
                loc.line(),
                loc.column()
            ));
        }
        let thread = std::thread::current();
        // A parallel rank's panic is reported in the cell's result table.
        if thread.name().is_some_and(|n| n.starts_with("rank ")) {
            return;
        }
        if thread.name() != Some("cell") {
            // A thread the cell started: say so the way Rust does, and let the cell
            // decide what its panic means (a join error, usually).
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!(
                "thread '{}' panicked{place}:\n{message}",
                thread.name().unwrap_or("<unnamed>")
            );
            return;
        }
        msg.push_str(",\"thread\":");
        json::push_str(&mut msg, thread.name().unwrap_or("<unnamed>"));
        msg.push('}');
        *PANIC_INFO.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    }));
}

fn last_dl_error() -> String {
    unsafe {
        let e = dlerror();
        if e.is_null() {
            "unknown dlopen error".into()
        } else {
            std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

/// Loads `lib` and returns its entry point `symbol`.
fn load(lib: &str, symbol: &str) -> Result<fn(), String> {
    let path = CString::new(lib).map_err(|e| e.to_string())?;
    let sym = CString::new(symbol).map_err(|e| e.to_string())?;
    unsafe {
        // Cell libraries stay loaded for the life of the runner: later cells link to
        // their items, and unloading Rust code with live statics is unsound.
        let handle = dlopen(path.as_ptr(), RTLD_NOW | RTLD_GLOBAL);
        if handle.is_null() {
            return Err(last_dl_error());
        }
        let f = dlsym(handle, sym.as_ptr());
        if f.is_null() {
            return Err(last_dl_error());
        }
        // The entry point is `pub fn()` compiled by the same rustc as this runner.
        Ok(std::mem::transmute::<*mut c_void, fn()>(f))
    }
}

fn run_cell(entry: fn()) {
    crate::snapshot::cell_starts();
    crate::process::set_interrupted(false);
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ERROR_FORMAT.store(0, Ordering::Relaxed);
    RUNNING.store(true, Ordering::Release);
    let outcome = panic::catch_unwind(AssertUnwindSafe(entry));
    // A snapshot that failed before this cell ended is told in its output.
    crate::snapshot::cell_ends();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    RUNNING.store(false, Ordering::Release);
    match outcome {
        Ok(()) => match FAILURE.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(failure) => {
                channel::send(tag::CELL_ERROR, failure.as_bytes());
            }
            None => {
                channel::send(tag::DONE, b"");
            }
        },
        Err(_) => {
            let info = PANIC_INFO
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| "{\"message\":\"panic\"}".into());
            channel::send(tag::PANIC, info.as_bytes());
        }
    }
}

/// Flushes Rust's stdout buffer while a cell runs, so partial lines stream.
fn start_flusher() {
    std::thread::Builder::new()
        .name("ferrocell-flush".into())
        .spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(25));
                if RUNNING.load(Ordering::Acquire) {
                    let _ = std::io::stdout().flush();
                }
            }
        })
        .expect("spawn flusher");
}

/// Joins the previous cell's thread before the next cell runs, so that its
/// thread-locals are dropped and no two cells overlap. It has already reported its
/// end; one that does not finish soon after (a thread-local's `Drop` that blocks) is
/// left behind with a line in the new cell's output, rather than hang the runner.
fn join_cell(last: &mut Option<std::thread::JoinHandle<()>>) {
    let Some(handle) = last.take() else { return };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !handle.is_finished() {
        if std::time::Instant::now() > deadline {
            eprintln!(
                "ferrocell: the previous cell's thread has not finished ending; this cell runs beside it"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = handle.join();
}

/// The runner's main loop. Exits when the kernel closes the channel.
pub fn main() {
    install_panic_hook();
    let Some(mut reader) = channel::reader() else {
        eprintln!("ferrocell runner: started without a kernel channel (FERROCELL_RUNNER unset)");
        std::process::exit(2);
    };
    start_flusher();
    channel::send(tag::READY, std::process::id().to_string().as_bytes());
    let mut last_cell: Option<std::thread::JoinHandle<()>> = None;
    let mut next_namespace: Option<u32> = None;
    while let Some((t, payload)) = channel::read_frame(&mut reader) {
        match t {
            // A worker runs one cell at a time: a RUN while one still runs (its
            // coordinator gave up on it) is refused rather than run beside it.
            tag::RUN if crate::process::is_worker() && RUNNING.load(Ordering::Acquire) => {
                channel::send(
                    tag::LOAD_ERROR,
                    b"this worker is still running an earlier cell",
                );
            }
            tag::RUN => {
                let text = String::from_utf8_lossy(&payload).into_owned();
                let mut parts = text.split('\0');
                let lib = parts.next().unwrap_or("");
                let symbol = parts.next().unwrap_or("");
                crate::process::set_cell(lib, symbol, parts.map(String::from).collect());
                crate::worker::new_cell();
                join_cell(&mut last_cell);
                if let Some(ns) = next_namespace.take() {
                    crate::store::switch(ns);
                }
                match load(lib, symbol) {
                    Ok(entry) => {
                        let spawned = std::thread::Builder::new()
                            .name("cell".into())
                            .stack_size(256 << 20)
                            .spawn(move || run_cell(entry));
                        match spawned {
                            Ok(handle) => last_cell = Some(handle),
                            Err(e) => {
                                channel::send(tag::LOAD_ERROR, e.to_string().as_bytes());
                            }
                        }
                    }
                    Err(e) => {
                        channel::send(tag::LOAD_ERROR, e.as_bytes());
                    }
                }
            }
            tag::INPUT_REPLY => answer_input(Ok(String::from_utf8_lossy(&payload).into_owned())),
            tag::INPUT_DENIED => answer_input(Err(String::from_utf8_lossy(&payload).into_owned())),
            tag::INTERRUPT => {
                crate::process::set_interrupted(true);
                crate::__async::interrupt();
            }
            tag::UNITS | tag::NO_MORE_UNITS => crate::worker::push_work(t, payload),
            tag::VAR_BYTES => crate::worker::receive(payload),
            tag::FROM_ENGINE => crate::transport::from_engine(payload),
            // The namespace of the next cell, switched to when it comes (after the
            // last cell's thread has ended), so that no cell sees another's store.
            tag::NAMESPACE if payload.len() == 4 => {
                next_namespace = Some(u32::from_le_bytes(
                    payload[..4].try_into().expect("4 bytes"),
                ));
            }
            // A gone kernel's variables: dropped at once unless its namespace is the
            // one cells use now (a cell of its may still be ending).
            tag::DROP_NAMESPACE if payload.len() == 4 => {
                crate::store::drop_namespace(u32::from_le_bytes(
                    payload[..4].try_into().expect("4 bytes"),
                ));
            }
            _ => {}
        }
    }
    std::process::exit(0);
}
