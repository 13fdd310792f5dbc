//! The kernel's side of the runner's snapshot savers: forked copies of a runner that
//! write the session's variables in the background (the prelude's `snapshot`
//! module). A saver lives in its own process group, so it outlives a runner that
//! dies or is replaced; the kernel waits for it before it restores variables into a
//! new runner, and stops it when the values are to be forgotten (`%reset`, exit).
//!
//! Savers announce themselves as `.saver-PID` files in the snapshot directory.

use std::path::Path;
use std::time::{Duration, Instant};

/// The savers at work: pids from `.saver-PID` files whose process is alive and
/// still leads the group it made (so a reused pid is not mistaken for one).
fn running(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid: i32 = name.strip_prefix(".saver-")?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
            let state = fields.next()?;
            let pgrp: i32 = fields.nth(1)?.parse().ok()?;
            (state != "Z" && state != "X" && pgrp == pid).then_some(pid)
        })
        .collect()
}

/// Waits (up to `patience`) for the savers at work to finish. Returns whether they
/// all did.
pub async fn wait(dir: &Path, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if running(dir).is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops every saver at work: the values it writes are being forgotten.
pub fn kill(dir: &Path) {
    for pid in running(dir) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Whether `name`'s snapshot is being written now (or was, by a saver that did not
/// finish).
pub fn writing(dir: &Path, name: &str) -> bool {
    ["prev", "tmp"]
        .iter()
        .any(|what| dir.join(format!(".{name}.{what}")).exists())
}

/// Why `name`'s last snapshot failed, if it did (its `Serialize` returned an error,
/// or the disk was full).
pub fn failure(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(format!(".{name}.failed"))).ok()
}
