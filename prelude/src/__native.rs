//! What the Rust side of a `%%c` or `%%cpp` cell calls: its functions, found in the
//! cell's shared library when first called.
//!
//! Each C library is opened on its own (`RTLD_LOCAL`), by the path it was built
//! at or, where that is missing (an engine on another machine, which was sent the
//! library), by its content-hashed name on the search path. So a `%%c` cell run
//! again with changed code gets a library of its own, and its functions do not
//! clash with the old ones of the same name: each Rust wrapper names its library.
//!
//! After each call the C streams are flushed, so that `printf` output comes out in
//! order with Rust's.

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

/// Flushes C's output streams (after each call into a C library).
pub fn flush() {
    // SAFETY: fflush(NULL) flushes every output stream.
    unsafe {
        fflush(std::ptr::null_mut());
    }
}
