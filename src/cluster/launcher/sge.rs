//! The sge launcher: engines as one Grid Engine (Son of Grid Engine, Altair's
//! and Univa's) job: the tasks of an array job, one engine each, or, with a
//! parallel environment (`--pe NAME`), the MPI ranks of one `mpirun` inside it.
//! The connection file reaches them as a private file under the shared home (see
//! `batch::job_connection`).

use super::batch::{self, BatchOptions, Scheduler};
use super::controller::start_controller;
use super::mpi::MpiRun;
use super::qsub;
use super::{own_exe, LaunchError, Launched};

/// Starts a controller listening on `ip` and `n` engines as one Grid Engine job,
/// and keeps `qsub -sync y` running until the job ends. `FERROCELL_QSUB` adds
/// options to `qsub` (`-l h_vmem=2G`, say).
pub async fn start_sge(
    n: usize,
    ip: &str,
    options: &BatchOptions,
) -> Result<Launched, LaunchError> {
    let qsub = crate::compile::toolchain::find_tool("qsub").ok_or(LaunchError::Needs {
        launcher: "sge",
        needs: "Grid Engine's qsub, qstat and qdel on PATH",
    })?;
    let mpi = match &options.pe {
        Some(_) => Some(MpiRun::find(&["mpirun", "mpiexec"], n, "sge").await?),
        None => None,
    };
    let mut launched = start_controller(ip).await?;
    let json = std::fs::read_to_string(&launched.file).map_err(LaunchError::ConnectionFile)?;
    let dir = launched.dir.path().to_path_buf();
    let name = batch::job_name(Scheduler::Sge);
    let output = batch::job_output(Scheduler::Sge, &name)?;
    let connection = batch::job_connection(Scheduler::Sge, &name, &json)?;
    let engine = [
        own_exe()?.display().to_string(),
        "engine".into(),
        "--file".into(),
        connection.display().to_string(),
    ];

    // -S: the script's shell whatever the queue's; no login shell resets PATH.
    let mut directives = vec![format!("#$ -N {name}"), "#$ -S /bin/sh".into()];
    if let Some(w) = &options.walltime {
        directives.push(format!("#$ -l h_rt={w}"));
    }
    if let Some(q) = &options.queue {
        directives.push(format!("#$ -q {q}"));
    }
    if let Some(a) = &options.account {
        directives.push(format!("#$ -A {a}"));
    }
    let mut env = Vec::new();
    let (command, how) = match (mpi, &options.pe) {
        (Some(mpi), Some(pe)) => {
            directives.push(format!("#$ -pe {pe} {n}"));
            let mut command = vec![mpi.program.display().to_string()];
            command.extend(mpi.args);
            command.extend(engine);
            env = mpi.env;
            (
                command,
                format!("{n} MPI ranks in parallel environment {pe}"),
            )
        }
        _ => {
            // Each task is one engine, ranked by its task id (SGE_TASK_ID − 1):
            // ranks that `-V` brought from the kernel's own environment (a kernel
            // started by mpirun or srun) would come first, so they go.
            directives.push(format!("#$ -t 1-{n}"));
            let mut command: Vec<String> = [
                "env",
                "-u",
                "OMPI_COMM_WORLD_RANK",
                "-u",
                "PMI_RANK",
                "-u",
                "SLURM_PROCID",
            ]
            .map(String::from)
            .into();
            command.extend(engine);
            (command, format!("{n} array tasks"))
        }
    };
    let script = dir.join("engines.sge");
    batch::job_script(&script, &directives, &command)?;

    let job = qsub::Job {
        scheduler: Scheduler::Sge,
        qsub,
        options: ["-sync", "y", "-j", "y"],
        label: format!("Grid Engine job {name} ({how})"),
        name,
        script,
        output,
        connection,
        env,
    };
    qsub::submit(&mut launched, job)?;
    Ok(launched)
}
