//! The pbs launcher: engines as the MPI ranks of one PBS (Torque, PBS Pro,
//! OpenPBS) job. The job script's `#PBS` directives ask for the machines and
//! the time; inside, `mpiexec` starts the engines, as PBS sites start MPI
//! programs (Torque has no `srun`; its `pbsdsh` is not everywhere). The
//! connection file reaches them as a private file under the shared home (see
//! `batch::job_connection`).

use super::batch::{self, BatchJob, BatchOptions, Scheduler};
use super::controller::start_controller;
use super::mpi::MpiRun;
use super::{own_exe, LaunchError, Launched, Recipe};

/// Starts a controller listening on `ip` and `n` engines as one PBS job, and
/// keeps `qsub -W block=true` running until the job ends. `FERROCELL_QSUB` adds
/// options to `qsub` (`-l select=…` on PBS Pro replaces the `nodes=K:ppn=P` the
/// script asks for).
pub async fn start_pbs(
    n: usize,
    ip: &str,
    options: &BatchOptions,
) -> Result<Launched, LaunchError> {
    let qsub = crate::compile::toolchain::find_tool("qsub").ok_or(LaunchError::Needs {
        launcher: "pbs",
        needs: "PBS's qsub, qstat and qdel on PATH",
    })?;
    let mpi = MpiRun::find(&["mpiexec", "mpirun"], n, "pbs").await?;
    let mut launched = start_controller(ip).await?;
    let json = std::fs::read_to_string(&launched.file).map_err(LaunchError::ConnectionFile)?;
    let dir = launched.dir.path().to_path_buf();
    let name = batch::job_name(Scheduler::Pbs);
    let output = batch::job_output(Scheduler::Pbs, &name)?;
    let connection = batch::job_connection(Scheduler::Pbs, &name, &json)?;
    let engine = [
        own_exe()?.display().to_string(),
        "engine".into(),
        "--file".into(),
        connection.display().to_string(),
    ];
    let extra: Vec<String> = std::env::var("FERROCELL_QSUB")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();

    let mut directives = vec![format!("#PBS -N {name}")];
    if !extra.iter().any(|a| a.contains("select=")) {
        directives.push(format!(
            "#PBS -l nodes={}:ppn={}",
            options.nodes.unwrap_or(1),
            options.per_node(n)
        ));
    }
    if let Some(w) = &options.walltime {
        directives.push(format!("#PBS -l walltime={w}"));
    }
    if let Some(q) = &options.queue {
        directives.push(format!("#PBS -q {q}"));
    }
    if let Some(a) = &options.account {
        directives.push(format!("#PBS -A {a}"));
    }
    let mut command = vec![mpi.program.display().to_string()];
    command.extend(mpi.args);
    command.extend(engine);
    let script = dir.join("engines.pbs");
    batch::job_script(&script, &directives, &command)?;

    // The output options go on the command line: Slurm's qsub puts its own there,
    // which would win over the script's.
    let mut args: Vec<String> = ["-V", "-W", "block=true", "-j", "oe", "-o"]
        .map(String::from)
        .into();
    args.push(output.display().to_string());
    args.extend(extra);
    args.push(script.display().to_string());
    let log = dir.join("qsub.log");
    let mut recipe = Recipe::new(
        format!("PBS job {name} ({n} MPI ranks)"),
        qsub,
        args,
        log.clone(),
    );
    let job = BatchJob {
        scheduler: Scheduler::Pbs,
        name,
        submit_log: log,
        files: vec![connection],
    };
    batch::track(&dir, &job);
    recipe.batch = Some(job);
    recipe.more_log = Some(output);
    recipe.env = mpi.env;
    launched.add(recipe)?;
    Ok(launched)
}
