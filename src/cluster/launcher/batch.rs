//! What the batch launchers share (Slurm's `sbatch`, PBS's and Grid Engine's
//! `qsub`): the options a user gives the scheduler, the job script, the job's
//! log, and the job itself: its state while the engines are awaited, deleting it.
//!
//! Each launcher keeps its submit command running until the job ends (`sbatch
//! --wait`, `qsub -W block=true`, `qsub -sync y`), so that the job's life is a
//! process's life, as every other recipe's: the supervisor sees it end, and
//! stopping the cluster ends it and then deletes the job.

use super::LaunchError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The environment variable that carries the connection file to engines started
/// where the file is not (a Slurm job's nodes): it travels in the job's
/// environment, which only its owner (and Slurm's administrators) can read, never
/// on a command line; no shared file system is needed. Launchers write it in hexadecimal ([`connection_env_value`]);
/// an engine also takes the JSON itself.
pub const CONNECTION_ENV: &str = "FERROCELL_CONNECTION";

/// Which scheduler a job was submitted to: its clients differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheduler {
    Slurm,
    Pbs,
    Sge,
}

impl Scheduler {
    fn name(self) -> &'static str {
        match self {
            Scheduler::Slurm => "Slurm",
            Scheduler::Pbs => "PBS",
            Scheduler::Sge => "Grid Engine",
        }
    }
}

/// What `%cluster start` asks of a batch scheduler. Each value is written into a
/// job script, so it must be one plain word: [`BatchOptions::set`] refuses the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOptions {
    /// `--queue`: Slurm's partition, PBS's and Grid Engine's queue.
    pub queue: Option<String>,
    /// `--walltime HH:MM:SS`: the job's time limit.
    pub walltime: Option<String>,
    /// `--account`: whom the job is charged to.
    pub account: Option<String>,
    /// `--nodes K`: how many machines the engines are spread over.
    pub nodes: Option<usize>,
    /// `--pe NAME`: Grid Engine's parallel environment; the engines are then the
    /// MPI ranks of one task instead of the tasks of an array job.
    pub pe: Option<String>,
}

impl BatchOptions {
    /// The `%cluster start` flags these options are read from.
    pub const FLAGS: [&'static str; 5] = ["--queue", "--walltime", "--account", "--nodes", "--pe"];

    /// Reads `flag`'s `value`; `Ok(false)` when `flag` is none of [`Self::FLAGS`].
    pub fn set(&mut self, flag: &str, value: &str) -> Result<bool, String> {
        let word = |what: &str| -> Result<Option<String>, String> {
            let ok = !value.is_empty()
                && !value.starts_with('-')
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-@+".contains(c));
            ok.then(|| Some(value.to_string()))
                .ok_or_else(|| format!("{flag} takes {what}, not `{value}`"))
        };
        match flag {
            "--queue" => self.queue = word("a queue's name")?,
            "--account" => self.account = word("an account's name")?,
            "--pe" => self.pe = word("a parallel environment's name")?,
            "--walltime" => {
                // Always hours, minutes and seconds: a bare number means minutes
                // to Slurm and seconds to PBS and Grid Engine.
                let ok = value.split(':').count() == 3
                    && value
                        .split(':')
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
                if !ok {
                    return Err(format!("--walltime takes HH:MM:SS, not `{value}`"));
                }
                self.walltime = Some(value.to_string());
            }
            "--nodes" => {
                self.nodes = Some(value.parse().ok().filter(|k| *k > 0).ok_or_else(|| {
                    format!("--nodes takes a positive number of machines, not `{value}`")
                })?)
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        *self == BatchOptions::default()
    }

    /// Engines per machine: `n` spread over the nodes asked for (one if none).
    pub(super) fn per_node(&self, n: usize) -> usize {
        n.div_ceil(self.nodes.unwrap_or(1)).max(1)
    }
}

/// A submitted job, found by its name: Slurm's and Grid Engine's tools take
/// names; PBS's `qdel` takes ids, read from the submit command's output or else
/// from `qstat`'s list (Torque's `qsub` prints the id at once, Slurm's wrapper
/// only when it exits).
#[derive(Debug, Clone)]
pub(super) struct BatchJob {
    pub(super) scheduler: Scheduler,
    pub(super) name: String,
    /// The submit command's output.
    pub(super) submit_log: PathBuf,
    /// Files that go with the job (the engines' copy of the connection file).
    pub(super) files: Vec<PathBuf>,
}

impl BatchJob {
    /// The job's id as its submit command printed it: PBS prints the id (`12`
    /// or `12.server`).
    fn printed_id(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.submit_log).ok()?;
        match self.scheduler {
            Scheduler::Slurm | Scheduler::Sge => None,
            Scheduler::Pbs => text
                .lines()
                .map(str::trim)
                .find(|l| l.split('.').next().is_some_and(is_number))
                .map(String::from),
        }
    }

    /// The scheduler's command that lists the job, and reading its line: the
    /// job's id and its state's code.
    fn query(&self) -> (&'static str, Vec<String>) {
        match self.scheduler {
            Scheduler::Slurm => (
                "squeue",
                ["-h", "--name", &self.name, "-o", "%i %T"]
                    .map(String::from)
                    .into(),
            ),
            Scheduler::Pbs => ("qstat", Vec::new()),
            // With each job's full name (the list cuts names to 10 characters).
            Scheduler::Sge => ("qstat", vec!["-r".into()]),
        }
    }

    fn read_query(&self, out: &str) -> Option<(String, String)> {
        let mut row: Option<(String, String)> = None;
        out.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match self.scheduler {
                Scheduler::Slurm => Some((cols.first()?.to_string(), cols.get(1)?.to_lowercase())),
                // Job ID, Name, User, Time Use, S, Queue.
                Scheduler::Pbs => (cols.get(1) == Some(&self.name.as_str()))
                    .then(|| Some((cols[0].to_string(), cols.get(4)?.to_string())))?,
                // A row (job-ID, prior, name, user, state, …), then its details.
                Scheduler::Sge => {
                    if cols.first().is_some_and(|c| is_number(c)) {
                        row = Some((cols[0].to_string(), cols.get(4)?.to_string()));
                        return None;
                    }
                    let full = l.trim().strip_prefix("Full jobname:")?.trim();
                    (full == self.name).then(|| row.clone())?
                }
            }
        })
    }

    /// Where the job stands, in words, for the wait for engines: "PBS job 12: queued".
    pub(super) async fn state(&self) -> Option<String> {
        let (tool, args) = self.query();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (id, code) = self.read_query(&client(tool, &args).await?)?;
        let state = match self.scheduler {
            Scheduler::Slurm => code,
            Scheduler::Pbs => pbs_state(&code).to_string(),
            Scheduler::Sge => sge_state(&code).to_string(),
        };
        Some(format!("{} job {id}: {state}", self.scheduler.name()))
    }

    /// The command that deletes the job, given its id where the tool needs one.
    fn delete_command(&self, id: Option<String>) -> Option<(&'static str, Vec<String>)> {
        match self.scheduler {
            Scheduler::Slurm => Some(("scancel", vec!["--name".into(), self.name.clone()])),
            Scheduler::Sge => Some(("qdel", vec![self.name.clone()])),
            Scheduler::Pbs => Some(("qdel", vec![id?])),
        }
    }

    /// Deletes the job (the cluster stops), and its files.
    pub(super) async fn delete(&self) {
        self.remove_files();
        let mut id = self.printed_id();
        if id.is_none() && self.scheduler == Scheduler::Pbs {
            let (tool, args) = self.query();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            id = client(tool, &args)
                .await
                .and_then(|out| self.read_query(&out))
                .map(|(id, _)| id);
        }
        if let Some((tool, args)) = self.delete_command(id) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = client(tool, &args).await;
        }
    }

    /// Deletes the job without a runtime, waiting for the scheduler at most
    /// until `deadline` (the kernel is exiting: `leftovers`).
    pub(super) fn delete_blocking(&self, deadline: Instant) {
        self.remove_files();
        let mut id = self.printed_id();
        if id.is_none() && self.scheduler == Scheduler::Pbs {
            let (tool, args) = self.query();
            id = client_until(tool, &args, deadline)
                .and_then(|out| self.read_query(&out))
                .map(|(id, _)| id);
        }
        if let Some((tool, args)) = self.delete_command(id) {
            client_until(tool, &args, deadline);
        }
    }
}

impl BatchJob {
    fn remove_files(&self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Runs a scheduler's client without a runtime, giving up at `deadline`.
fn client_until(tool: &str, args: &[String], deadline: Instant) -> Option<String> {
    let path = crate::compile::toolchain::find_tool(tool)?;
    let child = std::process::Command::new(path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // Its output is read on a thread of its own, so that a long list cannot
    // fill the pipe while this one waits.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// PBS's one-letter `job_state`, in words.
fn pbs_state(code: &str) -> &str {
    match code {
        "Q" => "queued",
        "R" => "running",
        "H" => "held",
        "W" => "waiting for its start time",
        "E" => "exiting",
        "C" | "F" => "finished",
        "S" => "suspended",
        "T" => "being moved",
        other => other,
    }
}

/// Grid Engine's `qstat` state column, in words.
fn sge_state(code: &str) -> &str {
    match code {
        "qw" => "queued",
        "hqw" => "held",
        "r" => "running",
        "t" => "being transferred to its node",
        "Eqw" => "in error (qstat -j says why)",
        "dr" | "dt" => "being deleted",
        other => other,
    }
}

/// Runs a scheduler's client briefly: a slow or hung scheduler must not stall the
/// kernel.
pub(super) async fn client(tool: &str, args: &[&str]) -> Option<String> {
    let path = crate::compile::toolchain::find_tool(tool)?;
    let mut cmd = Command::new(path);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(5), cmd.output())
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The job's name, unique, as the job is found by it. PBS's is 15 characters,
/// the most that POSIX batch systems (older Torque) allow and that `qstat`'s
/// list shows whole: 36 random bits.
pub(super) fn job_name(scheduler: Scheduler) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    match scheduler {
        Scheduler::Slurm | Scheduler::Sge => format!("ferrocell-{id}"),
        Scheduler::Pbs => format!("ferro-{}", &id[..9]),
    }
}

/// Deletes the job if the kernel exits with the cluster still up (`leftovers`).
pub(super) fn track(dir: &Path, job: &BatchJob) {
    let job = job.clone();
    crate::cluster::leftovers::track_batch(
        dir,
        Box::new(move |deadline| job.delete_blocking(deadline)),
    );
}

/// The file the job's own output goes to: in the cache, under the home directory
/// that cluster nodes share (not this machine's /tmp), in a directory only its
/// owner may read.
pub(super) fn job_output(scheduler: Scheduler, name: &str) -> Result<PathBuf, LaunchError> {
    let logs = crate::paths::cache_dir().join(match scheduler {
        Scheduler::Slurm => "slurm",
        Scheduler::Pbs => "pbs",
        Scheduler::Sge => "sge",
    });
    crate::paths::private_dir(&logs).map_err(|source| LaunchError::File {
        path: logs.clone(),
        source,
    })?;
    Ok(logs.join(format!("{name}.log")))
}

/// Writes the connection file for a job's engines beside the job's output: 0600,
/// in the private directory under the home that cluster nodes share. It does not
/// travel in the job's environment, as the Slurm launcher's does: PBS (`qstat -f`,
/// where other users may query jobs) and Grid Engine (`qstat -j`) show a job's
/// environment to other users.
pub(super) fn job_connection(
    scheduler: Scheduler,
    name: &str,
    json: &str,
) -> Result<PathBuf, LaunchError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = job_output(scheduler, name)?.with_extension("json");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(json.as_bytes()))
        .map_err(|source| LaunchError::File {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// Writes a job script: `directives` (whole lines, `#PBS -N x`), then `command`,
/// each argument quoted for the shell.
pub(super) fn job_script(
    path: &Path,
    directives: &[String],
    command: &[String],
) -> Result<(), LaunchError> {
    let quoted: Vec<String> = command
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let mut text = String::from("#!/bin/sh\n");
    for d in directives {
        text.push_str(d);
        text.push('\n');
    }
    text.push_str(&format!("exec {}\n", quoted.join(" ")));
    std::fs::write(path, text).map_err(|source| LaunchError::File {
        path: path.to_path_buf(),
        source,
    })
}

/// The connection file's JSON as an environment value that every scheduler
/// carries as it is: hexadecimal, with no comma or quote for `qsub -V` (Torque
/// and PBS read the environment as a comma-separated list) to split.
pub(super) fn connection_env_value(json: &str) -> String {
    hex::encode(json)
}

/// The connection file's JSON from the environment value: hexadecimal from a
/// launcher, or JSON as a user's own job (an HTCondor submit file) may set it.
pub fn connection_from_env(value: &str) -> Option<String> {
    let value = value.trim();
    if value.starts_with('{') {
        return Some(value.to_string());
    }
    String::from_utf8(hex::decode(value).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_plain_words() {
        let mut o = BatchOptions::default();
        assert_eq!(o.set("--queue", "gpu-long"), Ok(true));
        assert_eq!(o.set("--walltime", "01:30:00"), Ok(true));
        assert_eq!(o.set("--nodes", "3"), Ok(true));
        assert_eq!(o.set("--hosts", "a"), Ok(false));
        assert!(o.set("--queue", "a\n#PBS -l x").is_err());
        assert!(o.set("--account", "a b").is_err());
        assert!(o.set("--walltime", "1h").is_err());
        assert!(o.set("--walltime", "1:2:3:4").is_err());
        assert!(o.set("--walltime", "90").is_err());
        assert!(o.set("--queue", "-V").is_err());
        assert!(o.set("--nodes", "0").is_err());
        assert_eq!(o.per_node(10), 4);
        assert_eq!(BatchOptions::default().per_node(10), 10);
    }

    #[test]
    fn the_connection_travels_as_hex() {
        let json = r#"{"key": "a,b'c\"d"}"#;
        let v = connection_env_value(json);
        assert!(!v.contains(',') && !v.contains('"'));
        assert_eq!(connection_from_env(&v).as_deref(), Some(json));
        assert_eq!(connection_from_env(json).as_deref(), Some(json));
        assert_eq!(connection_from_env("zz"), None);
    }

    #[test]
    fn ids_come_from_the_submit_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("qsub.log");
        let job = |scheduler| BatchJob {
            scheduler,
            name: "n".into(),
            submit_log: log.clone(),
            files: Vec::new(),
        };
        std::fs::write(&log, "12.server\n").unwrap();
        assert_eq!(
            job(Scheduler::Pbs).printed_id().as_deref(),
            Some("12.server")
        );
        std::fs::write(&log, "qsub: error\n").unwrap();
        assert_eq!(job(Scheduler::Pbs).printed_id(), None);
        let pbs = BatchJob {
            name: "ferro-ab12c3d4e".into(),
            ..job(Scheduler::Pbs)
        };
        let listing = "Job id  Name  Username  Time Use S Queue\n------ ---\n\
                       7  other  root  0 R q\n8  ferro-ab12c3d4e  root  00:00:00 Q batch\n";
        assert_eq!(
            pbs.read_query(listing),
            Some(("8".to_string(), "Q".to_string()))
        );
        assert_eq!(pbs_state("Q"), "queued");
        let sge = BatchJob {
            name: "ferrocell-b".into(),
            ..job(Scheduler::Sge)
        };
        let listing = "job-ID prior name user state\n---\n\
                       3 0.5 ferrocell- root r 12/05/2026 all.q@vm 1 1\n\
                       \x20 Full jobname:  ferrocell-a\n  Master Queue: all.q@vm\n\
                       4 0.2 ferrocell- root qw 12/05/2026 1 1-3:1\n\
                       \x20 Full jobname:  ferrocell-b\n";
        assert_eq!(
            sge.read_query(listing),
            Some(("4".to_string(), "qw".to_string()))
        );
        assert_eq!(sge_state("qw"), "queued");
    }
}
