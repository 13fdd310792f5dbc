//! The slurm launcher: engines as one `srun` step inside an allocation, or one
//! `sbatch` job outside one; the connection file travels in the job's environment.
//! Also the Slurm clients the launcher asks while it waits (`squeue`) and as it
//! stops (`scancel`).

use super::controller::start_controller;
use super::{is_loopback, own_exe, LaunchError, Launched, Recipe};
use std::time::Duration;
use tokio::process::Command;

/// The environment variable that carries the connection file's JSON to engines
/// started where the file is not (a Slurm job's nodes): it travels in the job's
/// environment, which only its owner (and Slurm's administrators, who see the
/// job's state) can read, never on a command line; no shared file system is needed.
pub const CONNECTION_ENV: &str = "FERROCELL_CONNECTION";

/// Runs a Slurm client briefly: a slow or hung slurmctld must not stall the kernel.
pub(super) async fn slurm_client(tool: &str, args: &[&str]) -> Option<String> {
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

/// Starts a controller listening on `ip` and `n` engines with Slurm. Inside an
/// allocation (`SLURM_JOB_ID` set, as under `salloc`) they are one `srun` step of
/// `n` tasks; otherwise one `sbatch` job of `n` tasks is submitted, and the start
/// waits for it to be scheduled. `FERROCELL_SBATCH` adds options to `sbatch`
/// (partition, time limit, account). The engines' ranks are their Slurm task ids;
/// the connection file reaches them in the job's environment.
pub async fn start_slurm(n: usize, ip: &str) -> Result<Launched, LaunchError> {
    let srun = crate::compile::toolchain::find_tool("srun").ok_or(LaunchError::Needs {
        launcher: "slurm",
        needs: "Slurm's srun and sbatch on PATH",
    })?;
    let allocation = std::env::var("SLURM_JOB_ID").ok();
    if allocation.is_some() && is_loopback(ip) {
        let nodes = std::env::var("SLURM_JOB_NODELIST").unwrap_or_default();
        let here = crate::paths::hostname();
        let short = here.split('.').next().unwrap_or(&here);
        if !nodes.is_empty() && nodes != short && nodes != here {
            return Err(LaunchError::LoopbackUnreachable {
                from: format!("the allocation's nodes ({nodes})"),
            });
        }
    }
    let mut launched = start_controller(ip).await?;
    let json = std::fs::read_to_string(&launched.file).map_err(LaunchError::ConnectionFile)?;
    let dir = launched.dir.path().to_path_buf();
    let exe = own_exe()?.display().to_string();
    // The engines' output comes back through srun, each line labelled with its
    // task: no file on the nodes, which need not share this one's /tmp.
    let step = vec![
        "--ntasks".to_string(),
        n.to_string(),
        "--label".into(),
        exe,
        "engine".into(),
    ];
    let mut recipe = match allocation {
        Some(job) => {
            // The kernel may itself run in a step of the allocation: share its CPUs.
            let mut args = vec!["--overlap".to_string()];
            args.extend(step);
            Recipe::new(
                format!("srun ({n} tasks in job {job})"),
                srun,
                args,
                dir.join("srun.log"),
            )
        }
        None => {
            let sbatch = crate::compile::toolchain::find_tool("sbatch")
                .ok_or(LaunchError::Needs {
                    launcher: "slurm",
                    needs: "Slurm's sbatch on PATH (or run the kernel inside an allocation, where it uses srun)",
                })?;
            let quoted: Vec<String> = std::iter::once(srun.display().to_string())
                .chain(step)
                .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                .collect();
            let script = dir.join("engines.sbatch");
            std::fs::write(&script, format!("#!/bin/sh\nexec {}\n", quoted.join(" "))).map_err(
                |source| LaunchError::File {
                    path: script.clone(),
                    source,
                },
            )?;
            // A name of its own finds the job (sbatch --wait prints its id only
            // when it exits). The job's output is written on its first node: in
            // the cache, under the home directory that cluster nodes share.
            let name = format!("ferrocell-{}", uuid::Uuid::new_v4().simple());
            let logs = crate::paths::cache_dir().join("slurm");
            std::fs::create_dir_all(&logs)
                .and_then(|_| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|source| LaunchError::File {
                    path: logs.clone(),
                    source,
                })?;
            let output = logs.join(format!("{name}.log"));
            let mut args = vec![
                "--wait".to_string(),
                format!("--job-name={name}"),
                // The key travels in the environment, whatever the site's default.
                "--export=ALL".into(),
                "--ntasks".into(),
                n.to_string(),
                "--output".into(),
                output.display().to_string(),
            ];
            if let Ok(extra) = std::env::var("FERROCELL_SBATCH") {
                args.extend(extra.split_whitespace().map(String::from));
            }
            args.push(script.display().to_string());
            let mut r = Recipe::new(
                format!("sbatch job {name} ({n} tasks)"),
                sbatch,
                args,
                dir.join("sbatch.log"),
            );
            crate::cluster::leftovers::track_batch(&dir, &name);
            r.batch = Some(name);
            r.more_log = Some(output);
            r
        }
    };
    recipe.env.push((CONNECTION_ENV.into(), json));
    launched.add(recipe)?;
    Ok(launched)
}

impl Launched {
    /// Where the launcher stands while engines are awaited, when there is more to
    /// say than a count: a Slurm job's state, say.
    pub async fn waiting_on(&self) -> Option<String> {
        let name = {
            let p = self.processes.lock().expect("processes");
            p.list.iter().find_map(|proc| proc.recipe.batch.clone())
        }?;
        let state = slurm_client("squeue", &["-h", "--name", &name, "-o", "%i %T %R"]).await?;
        let (job, state) = state.split_once(' ')?;
        Some(format!("Slurm job {job}: {}", state.to_lowercase()))
    }
}
