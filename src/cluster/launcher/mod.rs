//! Starting a cluster's processes: the controller and its engines, and starting
//! engines again when they end (`%cluster start --restart`).
//!
//! A launcher turns "N engines" into [`Recipe`]s: commands that start one engine
//! each (local, ssh) or all of them at once (one `mpirun`, one `srun` step, one
//! batch job: `sbatch`, PBS's or Grid Engine's `qsub`). Each logs to its own file in a private directory, so that a
//! start that fails can say which engine failed and show its last lines, and a
//! recipe whose process ended can be run again as it was.
//!
//! - `recipe`: a command that starts engines, and running it;
//! - `controller`: starting the controller and the cluster's private directory;
//! - `local`, `mpi`, `ssh`, `slurm`, `pbs`, `sge`: the launchers, one a file;
//! - `batch`: what the batch launchers share: options, job scripts, the job's
//!   state and deleting it; `qsub`: submitting a PBS or Grid Engine job;
//! - `processes`: the processes a launcher started, their failures, and stopping
//!   them;
//! - `supervise`: starting ended processes again (`--restart`).
//!
//! This file holds the types they share and the launchers' small common helpers.

mod batch;
mod controller;
mod error;
mod local;
mod mpi;
mod pbs;
mod processes;
mod qsub;
mod recipe;
mod sge;
mod slurm;
mod ssh;
mod supervise;

pub use batch::{connection_from_env, BatchOptions, CONNECTION_ENV};
pub use local::start_local;
pub use mpi::start_mpi;
pub use pbs::start_pbs;
pub use sge::start_sge;
pub use slurm::start_slurm;
pub use ssh::start_ssh;

pub use error::LaunchError;

use recipe::Recipe;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::process::Child;

/// A recipe's process.
struct Process {
    recipe: Recipe,
    child: Child,
    /// Its pid, kept for messages once it has ended (the engines' table shows it).
    pid: Option<u32>,
    /// How it ended, once it has.
    ended: Option<ExitStatus>,
    /// When it was started again, for the supervisor's limit on restarts
    /// (`supervise`).
    restarts: Vec<Instant>,
}

/// The processes a launcher started, what happened to them, and whether they are
/// being stopped (the supervisor then leaves them be).
#[derive(Default)]
struct Processes {
    list: Vec<Process>,
    stopping: bool,
    /// What the supervisor did, for `%cluster status`.
    events: Vec<String>,
}

/// The processes a launcher started, and where they log.
pub struct Launched {
    /// Holds the connection file and the logs (0700); removed with the cluster.
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    controller: Child,
    processes: Arc<Mutex<Processes>>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
}

/// The last lines of a log, for an error message.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn own_exe() -> Result<PathBuf, LaunchError> {
    std::env::current_exe().map_err(LaunchError::OwnExe)
}

fn is_loopback(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback())
}
