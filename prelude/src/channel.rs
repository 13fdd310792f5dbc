//! The framed channel between the runner and the kernel (a Unix socket on fd 3).
//!
//! Every frame is `[tag: u8][len: u32 LE][payload]`. User stdout and stderr travel on
//! the same channel as displays and results, so the kernel sees them in exactly the
//! order the cell produced them.

use std::io::{Read, Write};
use std::os::unix::io::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, OnceLock};

/// The file descriptor the kernel hands the runner its channel on.
pub const CHANNEL_FD: i32 = 3;

#[path = "tags.rs"]
pub mod tag;

unsafe extern "C" {
    fn fcntl(fd: std::ffi::c_int, cmd: std::ffi::c_int, ...) -> std::ffi::c_int;
}
const F_SETFD: std::ffi::c_int = 2;
const FD_CLOEXEC: std::ffi::c_int = 1;

struct Channel {
    writer: Mutex<UnixStream>,
    /// The runner's pid. A process a cell forks without exec shares the socket: its
    /// frames (a second DONE, a panic, output) would be taken for the runner's, so
    /// it sends none; what it writes goes to its real stdout and stderr.
    owner: u32,
}

static CHANNEL: OnceLock<Option<Channel>> = OnceLock::new();

fn channel() -> Option<&'static Channel> {
    CHANNEL
        .get_or_init(|| {
            // Only the runner sets this; a prelude used elsewhere (tests) has no channel.
            std::env::var_os("FERROCELL_RUNNER")?;
            // Processes a cell starts must not inherit the channel: a child that
            // outlives a crashed runner would keep it open, and the kernel would not
            // see the runner's end.
            // SAFETY: fcntl on the fd this process was started with.
            unsafe { fcntl(CHANNEL_FD, F_SETFD, FD_CLOEXEC) };
            let stream = unsafe { UnixStream::from_raw_fd(CHANNEL_FD) };
            Some(Channel {
                writer: Mutex::new(stream),
                owner: std::process::id(),
            })
        })
        .as_ref()
}

/// Sends one frame to the kernel. Returns false when there is no channel (the prelude
/// is not running inside a runner), so callers can fall back to plain stdout.
pub fn send(tag: u8, payload: &[u8]) -> bool {
    let Some(ch) = channel() else { return false };
    if std::process::id() != ch.owner {
        return false;
    }
    let mut w = ch.writer.lock().unwrap_or_else(|e| e.into_inner());
    let mut head = [0u8; 5];
    head[0] = tag;
    head[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    // A kernel that went away leaves nothing to report to; the runner exits on EOF.
    let _ = w.write_all(&head).and_then(|_| w.write_all(payload));
    true
}

/// A second handle on the channel for the runner's command loop.
pub fn reader() -> Option<UnixStream> {
    channel()?.writer.lock().ok()?.try_clone().ok()
}

/// Reads one frame; `None` at end of stream.
pub fn read_frame(r: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).ok()?;
    Some((head[0], payload))
}
