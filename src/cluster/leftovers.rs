//! What a cluster this kernel started leaves behind if the kernel exits without
//! `%cluster stop` (a shutdown request, SIGTERM, its client gone): the private
//! directory with the connection file that holds the key, and Slurm jobs.
//!
//! The kernel exits without running destructors, and the controller and local
//! engines die with it (their parent-death signal), so a registry kept beside them
//! says what else to undo; `kernel::run` calls [`clean_up`] on its way out.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct Left {
    /// Cluster directories (connection file, logs) with the batch jobs of each.
    clusters: Vec<(PathBuf, Vec<String>)>,
}

static LEFT: Mutex<Left> = Mutex::new(Left {
    clusters: Vec::new(),
});

fn left() -> std::sync::MutexGuard<'static, Left> {
    LEFT.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cluster directory to remove at exit.
pub fn track(dir: &Path) {
    left().clusters.push((dir.to_path_buf(), Vec::new()));
}

/// A batch job (by name) of the cluster in `dir`, to cancel at exit.
pub fn track_batch(dir: &Path, name: &str) {
    if let Some((_, jobs)) = left().clusters.iter_mut().find(|(d, _)| d == dir) {
        jobs.push(name.to_string());
    }
}

/// The cluster in `dir` was stopped: nothing is left of it.
pub fn forget(dir: &Path) {
    left().clusters.retain(|(d, _)| d != dir);
}

/// Cancels the batch jobs and removes the directories of every cluster still
/// tracked, waiting at most `within` for the scheduler.
pub fn clean_up(within: Duration) {
    let clusters = std::mem::take(&mut left().clusters);
    let deadline = std::time::Instant::now() + within;
    for (dir, jobs) in clusters {
        for job in jobs {
            cancel(&job, deadline);
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    }
}

fn cancel(job: &str, deadline: std::time::Instant) {
    let Some(scancel) = crate::compile::toolchain::find_tool("scancel") else {
        return;
    };
    let Ok(mut child) = std::process::Command::new(scancel)
        .args(["--name", job])
        .stdin(std::process::Stdio::null())
        .spawn()
    else {
        return;
    };
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
