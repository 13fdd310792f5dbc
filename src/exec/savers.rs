//! The kernel's side of the runner's snapshot savers: forked copies of a runner that
//! write the session's variables in the background (the prelude's `snapshot`
//! module). A saver lives in its own process group, so it outlives a runner that
//! dies or is replaced; the kernel waits for it before it restores variables into a
//! new runner, and stops it when the values are to be forgotten (`%reset`, exit).
//!
//! Savers announce themselves as `.saver-PID` files in the snapshot directory.

use std::path::Path;
use std::time::{Duration, Instant};

/// How a kernel's snapshot directory is named: `ferrocell-snapshots-HOST-PID-XXXXXX`
/// (the host, for a temporary directory that hosts share).
const PREFIX: &str = "ferrocell-snapshots-";

/// Makes this kernel's snapshot directory under the temporary directory: 0700 (the
/// values are the user's alone), named with the kernel's pid, so that a later
/// kernel removes the directories of kernels that were killed before they could.
pub fn private_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tmp = std::env::temp_dir();
    // Only this host's directories: another host's kernels are not in our /proc.
    let host = crate::paths::hostname().replace(['-', '/'], "_");
    let mine = format!("{PREFIX}{host}-");
    // SAFETY: getuid has no preconditions.
    let me = unsafe { nix::libc::getuid() };
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&mine))
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let ours = e.metadata().is_ok_and(|m| m.uid() == me && m.is_dir());
            if ours && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{mine}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(tmp)
}

/// The savers at work: pids of `.saver-PID` files whose lock is taken. A saver
/// holds its marker's lock until it exits, however it ends, so neither a reused
/// pid nor a marker left by a killed saver counts.
fn running(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid: i32 = name.strip_prefix(".saver-")?.parse().ok()?;
            locked(&e.path()).then_some(pid)
        })
        .collect()
}

/// Whether a saver forked by a runner that died before it named it
/// (`.saver-new-…`) is still at work: the kernel waits for it too.
fn unnamed_at_work(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".saver-new-"))
            && locked(&e.path())
    })
}

/// Whether another process holds a lock on `path`.
fn locked(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // SAFETY: tries a shared lock on a file this function owns, without waiting;
    // closing the file lets it go.
    let r = unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_SH | nix::libc::LOCK_NB) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(nix::libc::EWOULDBLOCK)
}

/// After the savers of a dead runner ended: one that left its marker behind was
/// killed half-way (out of memory, say), and the variables it had not finished get
/// no snapshot, rather than an older one.
pub fn settle(dir: &Path) {
    let alive = running(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        // A marker: `.saver-PID`, or the claim `.saver-new-…` of a saver whose
        // runner died before it could name it (all its names count as unfinished).
        let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(".saver-"))
            .filter(|p| p.parse::<i32>().is_ok() || (p.starts_with("new-") && !p.contains('.')))
            .map(String::from)
        else {
            continue;
        };
        if locked(&e.path()) {
            continue;
        }
        let names = std::fs::read_to_string(e.path()).unwrap_or_default();
        let done =
            std::fs::read_to_string(dir.join(format!(".saver-{pid}.done"))).unwrap_or_default();
        // A live saver of a name (a newer one) owns its files.
        let owned = |name: &str| {
            alive.iter().any(|p| {
                std::fs::read_to_string(dir.join(format!(".saver-{p}")))
                    .is_ok_and(|n| n.lines().any(|l| l == name))
            })
        };
        for name in names
            .lines()
            .filter(|n| !done.lines().any(|d| d == *n) && !owned(n))
        {
            for file in [
                name.to_string(),
                format!(".{name}.prev"),
                format!(".{name}.tmp"),
            ] {
                let _ = std::fs::remove_file(dir.join(file));
            }
            let _ = std::fs::write(
                dir.join(format!(".{name}.failed")),
                "its saver was killed before it finished",
            );
        }
        for what in ["", ".done", ".err"] {
            let _ = std::fs::remove_file(dir.join(format!(".saver-{pid}{what}")));
        }
    }
}

/// Waits, at most `patience`, until no saver is writing any of `names` (the files
/// about to be read or replaced are whole).
pub async fn written(dir: &Path, names: &[&str], patience: Duration) {
    let deadline = Instant::now() + patience;
    while names.iter().any(|n| writing(dir, n)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to `patience`) for the savers at work to finish. Returns whether they
/// all did.
pub async fn wait(dir: &Path, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if running(dir).is_empty() && !unnamed_at_work(dir) {
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
    let parked = ["prev", "tmp"]
        .iter()
        .any(|what| dir.join(format!(".{name}.{what}")).exists());
    // A saver that has not reached the variable yet names it in its marker.
    parked
        || running(dir).iter().any(|pid| {
            std::fs::read_to_string(dir.join(format!(".saver-{pid}")))
                .is_ok_and(|names| names.lines().any(|n| n == name))
        })
}

/// Why `name`'s last snapshot failed, if it did (its `Serialize` returned an error,
/// or the disk was full).
pub fn failure(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(format!(".{name}.failed"))).ok()
}
