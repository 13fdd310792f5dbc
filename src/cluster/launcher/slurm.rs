//! The slurm launcher: engines as one `srun` step inside an allocation, or one
//! `sbatch` job outside one; the connection file travels in the job's environment.

use super::batch::{self, BatchJob, BatchOptions, Scheduler};
use super::controller::start_controller;
use super::{is_loopback, own_exe, LaunchError, Launched, Recipe, CONNECTION_ENV};

/// Starts a controller listening on `ip` and `n` engines with Slurm. Inside an
/// allocation (`SLURM_JOB_ID` set, as under `salloc`) they are one `srun` step of
/// `n` tasks; otherwise one `sbatch` job of `n` tasks is submitted, and the start
/// waits for it to be scheduled. `FERROCELL_SBATCH` adds options to `sbatch`
/// (partition, time limit, account); `options` come first. The engines' ranks
/// are their Slurm task ids; the connection file reaches them in the job's
/// environment.
pub async fn start_slurm(
    n: usize,
    ip: &str,
    options: &BatchOptions,
) -> Result<Launched, LaunchError> {
    let srun = crate::compile::toolchain::find_tool("srun").ok_or(LaunchError::Needs {
        launcher: "slurm",
        needs: "Slurm's srun and sbatch on PATH",
    })?;
    let allocation = std::env::var("SLURM_JOB_ID").ok();
    if allocation.is_some() && (options.queue.is_some() || options.account.is_some()) {
        return Err(LaunchError::InAllocation);
    }
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
    let mut step = vec!["--ntasks".to_string(), n.to_string()];
    if let Some(k) = options.nodes {
        step.push(format!("--nodes={k}"));
    }
    step.extend(["--label".into(), exe, "engine".into()]);
    let mut recipe = match allocation {
        Some(job) => {
            // The kernel may itself run in a step of the allocation: share its CPUs.
            let mut args = vec!["--overlap".to_string()];
            if let Some(w) = &options.walltime {
                args.push(format!("--time={w}"));
            }
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
            let script = dir.join("engines.sbatch");
            let command: Vec<String> = std::iter::once(srun.display().to_string())
                .chain(step)
                .collect();
            batch::job_script(&script, &[], &command)?;
            // A name of its own finds the job (sbatch --wait prints its id only
            // when it exits).
            let name = batch::job_name(Scheduler::Slurm);
            let output = batch::job_output(Scheduler::Slurm, &name)?;
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
            let given = [
                ("--partition", &options.queue),
                ("--time", &options.walltime),
                ("--account", &options.account),
                ("--nodes", &options.nodes.map(|k| k.to_string())),
            ];
            for (flag, value) in given {
                if let Some(v) = value {
                    args.push(format!("{flag}={v}"));
                }
            }
            if let Ok(extra) = std::env::var("FERROCELL_SBATCH") {
                args.extend(extra.split_whitespace().map(String::from));
            }
            args.push(script.display().to_string());
            let log = dir.join("sbatch.log");
            let mut r = Recipe::new(
                format!("sbatch job {name} ({n} tasks)"),
                sbatch,
                args,
                log.clone(),
            );
            let job = BatchJob {
                scheduler: Scheduler::Slurm,
                name,
                submit_log: log,
                files: Vec::new(),
            };
            batch::track(&dir, &job);
            r.batch = Some(job);
            r.more_log = Some(output);
            r
        }
    };
    recipe
        .env
        .push((CONNECTION_ENV.into(), batch::connection_env_value(&json)));
    launched.add(recipe)?;
    Ok(launched)
}
