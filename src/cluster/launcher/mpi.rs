//! The mpi launcher: engines as the ranks of one `mpirun` (Open MPI) or `mpiexec`
//! (MPICH). The PBS launcher runs the same command inside its job.

use super::controller::start_controller;
use super::{own_exe, LaunchError, Launched, Recipe};
use std::path::PathBuf;
use tokio::process::Command;

/// An MPI launch of `n` ranks: the program, its options before the ranks'
/// command, and the environment it needs.
pub(super) struct MpiRun {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
}

impl MpiRun {
    /// `mpirun` or `mpiexec` (the first of `names` on PATH), with the options its
    /// kind needs to start `n` ranks, whatever the cores, as root too.
    pub(super) async fn find(
        names: &[&str],
        n: usize,
        launcher: &'static str,
    ) -> Result<MpiRun, LaunchError> {
        let program = names
            .iter()
            .find_map(|t| crate::compile::toolchain::find_tool(t))
            .ok_or(LaunchError::Needs {
                launcher,
                needs: "mpirun or mpiexec (Open MPI or MPICH) on PATH",
            })?;
        let version = Command::new(&program)
            .arg("--version")
            .output()
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut args: Vec<String> = Vec::new();
        let mut env = Vec::new();
        if version.contains("Open MPI") || version.contains("OpenRTE") {
            // More engines than cores is the user's call; root is what containers run as.
            args.extend(["--oversubscribe".into(), "--allow-run-as-root".into()]);
            // The ranks' workers use MPI in cells and are killed, not finalized, when
            // the cluster stops: that is no reason to abort the job.
            env.push((
                "OMPI_MCA_orte_allowed_exit_without_sync".to_string(),
                "1".to_string(),
            ));
        }
        args.extend(["-n".into(), n.to_string()]);
        Ok(MpiRun { program, args, env })
    }
}

/// Starts a controller and `n` engines as the ranks of one `mpirun` (Open MPI) or
/// `mpiexec` (MPICH): the way a cluster's MPI runtime places processes.
pub async fn start_mpi(n: usize, ip: &str) -> Result<Launched, LaunchError> {
    let mpi = MpiRun::find(&["mpirun", "mpiexec"], n, "mpi").await?;
    let mut launched = start_controller(ip).await?;
    let mut args = mpi.args;
    args.extend([
        own_exe()?.display().to_string(),
        "engine".into(),
        "--file".into(),
        launched.file.display().to_string(),
    ]);
    let log = launched.dir.path().join("mpirun.log");
    let mut recipe = Recipe::new(format!("mpirun ({n} ranks)"), mpi.program, args, log);
    recipe.env = mpi.env;
    recipe.env.extend(super::local::probe_for_engines().await);
    launched.add(recipe)?;
    Ok(launched)
}
