//! The pbs launcher: engines as the MPI ranks of one PBS (Torque, PBS Pro,
//! OpenPBS) job. The job script's `#PBS` directives ask for the machines and
//! the time; inside, `mpiexec` starts the engines, as PBS sites start MPI
//! programs (Torque has no `srun`; its `pbsdsh` is not everywhere). The
//! connection file reaches them as a private file under the shared home (see
//! `batch::job_connection`).

use super::batch::{self, BatchOptions, Scheduler};
use super::controller::start_controller;
use super::mpi::MpiRun;
use super::qsub;
use super::{own_exe, LaunchError, Launched};

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
    let extra = qsub::extra_options();

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

    let job = qsub::Job {
        scheduler: Scheduler::Pbs,
        qsub,
        options: ["-W", "block=true", "-j", "oe"],
        label: format!("PBS job {name} ({n} MPI ranks)"),
        name,
        script,
        output,
        connection,
        env: mpi.env,
    };
    qsub::submit(&mut launched, job)?;
    Ok(launched)
}
