//! Submitting a job with `qsub`, as the pbs and sge launchers do: their scripts
//! differ, their submission does not (`qsub -V`, kept running until the job ends,
//! its output joined into one file, `FERROCELL_QSUB` added, the job deleted with
//! the cluster).

use super::batch::{self, BatchJob, Scheduler};
use super::{LaunchError, Launched, Recipe};
use std::path::PathBuf;

/// What `FERROCELL_QSUB` adds to `qsub`, word by word.
pub(super) fn extra_options() -> Vec<String> {
    std::env::var("FERROCELL_QSUB")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// A job to submit.
pub(super) struct Job {
    pub(super) scheduler: Scheduler,
    pub(super) qsub: PathBuf,
    /// What keeps `qsub` running until the job ends, and joins the job's stderr
    /// to its stdout: the schedulers spell both differently.
    pub(super) options: [&'static str; 4],
    pub(super) name: String,
    /// What the job is called in messages.
    pub(super) label: String,
    pub(super) script: PathBuf,
    /// The job's output.
    pub(super) output: PathBuf,
    /// The engines' copy of the connection file, removed with the job.
    pub(super) connection: PathBuf,
    /// For `qsub`, and so (`-V`) for the job.
    pub(super) env: Vec<(String, String)>,
}

/// Submits the job; it is deleted when the cluster stops, or the kernel exits.
pub(super) fn submit(launched: &mut Launched, job: Job) -> Result<(), LaunchError> {
    let dir = launched.dir.path().to_path_buf();
    // The output options go on the command line: Slurm's Torque `qsub` puts its
    // own there, which would win over the script's.
    let mut args: Vec<String> = std::iter::once("-V")
        .chain(job.options)
        .chain(["-o"])
        .map(String::from)
        .collect();
    args.push(job.output.display().to_string());
    args.extend(extra_options());
    args.push(job.script.display().to_string());
    let log = dir.join("qsub.log");
    let mut recipe = Recipe::new(job.label, job.qsub, args, log.clone());
    let batch = BatchJob {
        scheduler: job.scheduler,
        name: job.name,
        submit_log: log,
        files: vec![job.connection],
    };
    batch::track(&dir, &batch);
    recipe.batch = Some(batch);
    recipe.more_log = Some(job.output);
    recipe.env = job.env;
    launched.add(recipe)
}
