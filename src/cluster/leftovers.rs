//! What a cluster this kernel started leaves behind if the kernel exits without
//! `%cluster stop` (a shutdown request, SIGTERM, its client gone): the private
//! directory with the connection file that holds the key, and batch jobs.
//!
//! The kernel exits without running destructors, and the controller and local
//! engines die with it (their parent-death signal), so a registry kept beside them
//! says what else to undo; `kernel::run` calls [`clean_up`] on its way out.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Deletes one batch job, waiting for its scheduler at most until the instant
/// given. The launcher that submitted the job knows how; this registry need not.
pub type Delete = Box<dyn FnOnce(Instant) + Send>;

#[derive(Default)]
struct Left {
    /// Cluster directories (connection file, logs) with the batch jobs of each.
    clusters: Vec<(PathBuf, Vec<Delete>)>,
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

/// A batch job of the cluster in `dir`, to delete at exit.
pub fn track_batch(dir: &Path, delete: Delete) {
    if let Some((_, jobs)) = left().clusters.iter_mut().find(|(d, _)| d == dir) {
        jobs.push(delete);
    }
}

/// The cluster in `dir` was stopped: nothing is left of it.
pub fn forget(dir: &Path) {
    left().clusters.retain(|(d, _)| d != dir);
}

/// Deletes the batch jobs and removes the directories of every cluster still
/// tracked, waiting at most `within` for the scheduler.
pub fn clean_up(within: Duration) {
    let clusters = std::mem::take(&mut left().clusters);
    let deadline = Instant::now() + within;
    for (dir, jobs) in clusters {
        for delete in jobs {
            delete(deadline);
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    }
}
