//! A recipe: a command that starts engines (or the controller), kept so that it
//! can be run again as it was, with its log, its environment and what its stdin
//! gets. Every launcher makes recipes; the supervisor runs them again.

use super::batch::BatchJob;
use super::{tail, LaunchError};
use std::path::PathBuf;
use tokio::process::{Child, Command};

/// A command that starts engines, kept so that it can be run again. (Not `Debug`:
/// its environment may hold the cluster's key.)
#[derive(Clone)]
pub(super) struct Recipe {
    /// What it is called in messages: "engine 2", "mpirun (4 ranks)".
    pub(super) label: String,
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    /// Written to its stdin, which is then closed (the ssh launcher's connection file).
    pub(super) stdin: Option<Vec<u8>>,
    pub(super) log: PathBuf,
    /// Another log the command's engines write to (a batch job's output).
    pub(super) more_log: Option<PathBuf>,
    /// The process submitted this batch job and waits for it (`sbatch --wait`,
    /// `qsub -W block=true`): the job is deleted when the cluster stops.
    pub(super) batch: Option<BatchJob>,
    /// Its process is the engine itself, on this machine: one that the controller
    /// lost may be killed to be started again.
    pub(super) engine_here: bool,
}

impl Recipe {
    pub(super) fn new(
        label: impl Into<String>,
        program: PathBuf,
        args: Vec<String>,
        log: PathBuf,
    ) -> Recipe {
        Recipe {
            label: label.into(),
            program,
            args,
            env: Vec::new(),
            stdin: None,
            log,
            more_log: None,
            batch: None,
            engine_here: false,
        }
    }

    /// Starts the command, appending to its log; it dies with the kernel.
    pub(super) fn spawn(&self) -> Result<Child, LaunchError> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| LaunchError::File {
                path: self.log.clone(),
                source,
            })?;
        let err = out.try_clone().map_err(LaunchError::LogHandle)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe. The cluster goes when its kernel goes.
        unsafe {
            cmd.pre_exec(|| {
                nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            program: self.program.clone(),
            label: self.label.clone(),
            source,
        })?;
        if let (Some(bytes), Some(mut stdin)) = (self.stdin.clone(), child.stdin.take()) {
            let label = self.label.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                if let Err(e) = stdin.write_all(&bytes).await {
                    tracing::warn!("sending the connection file to {label}: {e}");
                }
            });
        }
        Ok(child)
    }

    /// Its log's last lines, and those its engines wrote elsewhere.
    pub(super) fn tails(&self, lines: usize) -> String {
        let mut out = tail(&self.log, lines);
        if let Some(log) = &self.more_log {
            let t = tail(log, lines);
            if !t.is_empty() {
                out.push_str(&format!("\n[{}]\n{t}", log.display()));
            }
        }
        out
    }
}
