//! What the Rust side of a `%%c` or `%%cpp` cell calls: its functions, found in the
//! cell's shared library when first called.
//!
//! Each C library is opened on its own (`RTLD_LOCAL`), by the path it was built
//! at or, where that is missing (an engine on another machine, which was sent the
//! library), by its content-hashed name on the search path. So a `%%c` cell run
//! again with changed code gets a library of its own, and its functions do not
//! clash with the old ones of the same name: each Rust wrapper names its library.
//!
//! C's `stdout` and `stderr` write where Rust's output goes (the runner's channel
//! to the kernel): glibc writes its streams with its own internal `write`, which
//! the runner's `write` does not see, so each stream is replaced, the first time a
//! C library is opened, by one (`fopencookie`) that hands its bytes to the
//! channel. After each call, what `printf` left in the buffer is flushed, so it
//! comes out in order with Rust's output.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

#[link(name = "dl")]
unsafe extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}

unsafe extern "C" {
    fn fflush(stream: *mut c_void) -> c_int;
    fn __fpending(stream: *mut c_void) -> usize;
    fn fopencookie(cookie: *mut c_void, mode: *const c_char, io: CookieIo) -> *mut c_void;
    fn setvbuf(stream: *mut c_void, buf: *mut c_char, mode: c_int, size: usize) -> c_int;
    static mut stdout: *mut c_void;
    static mut stderr: *mut c_void;
}

/// glibc's `cookie_io_functions_t`.
#[repr(C)]
struct CookieIo {
    read: *const c_void,
    write: Option<unsafe extern "C" fn(*mut c_void, *const c_char, usize) -> isize>,
    seek: *const c_void,
    close: *const c_void,
}

const IOFBF: c_int = 0;
const IONBF: c_int = 2;

/// Where a replaced stream's bytes go: the channel, as Rust's output does; the
/// file descriptor when there is no channel (a process without a kernel).
unsafe extern "C" fn to_channel(cookie: *mut c_void, buf: *const c_char, size: usize) -> isize {
    let fd = cookie as usize as i32;
    // SAFETY: stdio hands a buffer of `size` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf as *const u8, size) };
    if !crate::__runner::capture_write(fd, bytes) {
        use std::io::Write;
        let _ = match fd {
            2 => std::io::stderr().write_all(bytes),
            _ => std::io::stdout().write_all(bytes),
        };
    }
    size as isize
}

/// Replaces C's `stdout` and `stderr` by streams that write to the channel (once).
fn capture_streams() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        for (fd, unbuffered) in [(1usize, false), (2, true)] {
            let io = CookieIo {
                read: std::ptr::null(),
                write: Some(to_channel),
                seek: std::ptr::null(),
                close: std::ptr::null(),
            };
            // SAFETY: a valid mode string and functions of the right types; the
            // old stream is flushed first and stays open (its fd is Rust's too).
            unsafe {
                let f = fopencookie(fd as *mut c_void, c"w".as_ptr(), io);
                if f.is_null() {
                    continue;
                }
                let mode = if unbuffered { IONBF } else { IOFBF };
                setvbuf(f, std::ptr::null_mut(), mode, 8192);
                let slot = if fd == 1 {
                    &raw mut stdout
                } else {
                    &raw mut stderr
                };
                fflush(*slot);
                *slot = f;
            }
        }
    });
}

const RTLD_NOW: c_int = 2;

/// Libraries opened so far, by path: each is opened once per process.
static OPENED: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

/// One function of a C library, found on its first call.
pub struct Function {
    /// Where the kernel built the library.
    pub path: &'static str,
    /// Its file name, for the search path (engines keep shipped libraries there).
    pub file: &'static str,
    pub name: &'static CStr,
    found: AtomicPtr<c_void>,
}

impl Function {
    pub const fn new(path: &'static str, file: &'static str, name: &'static CStr) -> Self {
        Function {
            path,
            file,
            name,
            found: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The function's address; panics (the cell's error) when the library or the
    /// function cannot be found.
    pub fn address(&self) -> *const c_void {
        let p = self.found.load(Ordering::Acquire);
        if !p.is_null() {
            return p;
        }
        capture_streams();
        let handle = open(self.path, self.file).unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: a handle dlopen gave, and a NUL-terminated name.
        let p = unsafe { dlsym(handle as *mut c_void, self.name.as_ptr()) };
        if p.is_null() {
            panic!(
                "{}: no function {:?} in the library ({})",
                self.file,
                self.name,
                last_error()
            );
        }
        self.found.store(p, Ordering::Release);
        p
    }
}

/// Opens the library at `path`, or `file` on the search path when `path` is not
/// there.
fn open(path: &str, file: &str) -> Result<usize, String> {
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, h)) = opened.iter().find(|(p, _)| p == path) {
        return Ok(*h);
    }
    let which = if std::path::Path::new(path).is_file() {
        path
    } else {
        file
    };
    let c = CString::new(which).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path. RTLD_LOCAL (0): the library's symbols do
    // not join the process's global scope, so libraries never clash.
    let handle = unsafe { dlopen(c.as_ptr(), RTLD_NOW) };
    if handle.is_null() {
        return Err(format!("cannot load {which}: {}", last_error()));
    }
    opened.push((path.to_string(), handle as usize));
    Ok(handle as usize)
}

fn last_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message.
    unsafe {
        let e = dlerror();
        if e.is_null() {
            "unknown error".into()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

/// Flushes what C left in its `stdout` and `stderr` buffers (after each call into
/// a C library). Only a stream with bytes pending is flushed: `fflush` takes
/// stdio's lock, which calls from many threads would otherwise queue on.
pub fn flush() {
    // SAFETY: the streams are valid FILEs (glibc's, or ours from above).
    unsafe {
        for f in [stdout, stderr] {
            if !f.is_null() && __fpending(f) > 0 {
                fflush(f);
            }
        }
    }
}
