//! The ferrocell runner executable. The kernel compiles it, with the rustc that
//! compiles the cells, against the prelude dylib, so that runner and cells share one
//! libstd. It interposes libc's `write` and `writev`: whatever Rust code in this
//! process writes to stdout or stderr goes to the kernel channel, in order.

use std::ffi::{c_char, c_int, c_void};

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}
const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;

#[repr(C)]
pub struct IoVec {
    base: *const u8,
    len: usize,
}

type WriteFn = unsafe extern "C" fn(c_int, *const c_void, usize) -> isize;
type WritevFn = unsafe extern "C" fn(c_int, *const IoVec, c_int) -> isize;

unsafe fn real<T>(name: &[u8]) -> T {
    let f = dlsym(RTLD_NEXT, name.as_ptr() as *const c_char);
    assert!(!f.is_null(), "libc has no {:?}", std::str::from_utf8(name));
    std::mem::transmute_copy(&f)
}

/// # Safety
/// Called by libstd and C code exactly like libc's `write`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: usize) -> isize {
    if (fd == 1 || fd == 2) && !buf.is_null() {
        let bytes = std::slice::from_raw_parts(buf as *const u8, count);
        if ferrocell::__runner::capture_write(fd, bytes) {
            return count as isize;
        }
    }
    real::<WriteFn>(b"write\0")(fd, buf, count)
}

/// # Safety
/// Called exactly like libc's `writev`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const IoVec, iovcnt: c_int) -> isize {
    if (fd == 1 || fd == 2) && !iov.is_null() && iovcnt >= 0 {
        let parts = std::slice::from_raw_parts(iov, iovcnt as usize);
        let mut joined = Vec::new();
        for p in parts {
            if !p.base.is_null() {
                joined.extend_from_slice(std::slice::from_raw_parts(p.base, p.len));
            }
        }
        if ferrocell::__runner::capture_write(fd, &joined) {
            return joined.len() as isize;
        }
    }
    real::<WritevFn>(b"writev\0")(fd, iov, iovcnt)
}

fn main() {
    ferrocell::__runner::main();
}
