//! Starting a cluster's processes: the controller and its engines, and starting
//! engines again when they end (`%cluster start --restart`).
//!
//! A launcher turns "N engines" into [`Recipe`]s: commands that start one engine
//! each (local, ssh) or all of them at once (one `mpirun`, one `srun` step, one
//! `sbatch` job). Each logs to its own file in a private directory, so that a
//! start that fails can say which engine failed and show its last lines, and a
//! recipe whose process ended can be run again as it was.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The environment variable that carries the connection file's JSON to engines
/// started where the file is not (a Slurm job's nodes): it travels in the job's
/// environment, which only its owner (and Slurm's administrators, who see the
/// job's state) can read, never on a command line; no shared file system is needed.
pub const CONNECTION_ENV: &str = "FERROCELL_CONNECTION";

/// How often the supervisor looks for processes that ended.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);
/// A recipe that ends this many times within [`RESTART_WINDOW`] is not run again:
/// it is failing, not being unlucky.
const RESTART_LIMIT: usize = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// A command that starts engines, kept so that it can be run again. (Not `Debug`:
/// its environment may hold the cluster's key.)
#[derive(Clone)]
struct Recipe {
    /// What it is called in messages: "engine 2", "mpirun (4 ranks)".
    label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Written to its stdin, which is then closed (the ssh launcher's connection file).
    stdin: Option<Vec<u8>>,
    log: PathBuf,
    /// Another log the command's engines write to (a Slurm batch job's output).
    more_log: Option<PathBuf>,
    /// The process is `sbatch --wait` of a job of this (unique) name: the job is
    /// cancelled when the cluster stops.
    batch: Option<String>,
    /// Its process is the engine itself, on this machine: one that the controller
    /// lost may be killed to be started again.
    engine_here: bool,
}

/// A recipe's process.
struct Process {
    recipe: Recipe,
    child: Child,
    /// Its pid, kept for messages once it has ended (the engines' table shows it).
    pid: Option<u32>,
    /// How it ended, once it has.
    ended: Option<ExitStatus>,
    /// When it was started again, for [`RESTART_LIMIT`].
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

fn own_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("ferrocell's own path: {e}"))
}

impl Recipe {
    fn new(label: impl Into<String>, program: PathBuf, args: Vec<String>, log: PathBuf) -> Recipe {
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
    fn spawn(&self) -> Result<Child, String> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
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
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {} for {}: {e}",
                self.program.display(),
                self.label
            )
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
    fn tails(&self, lines: usize) -> String {
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

/// Runs a Slurm client briefly: a slow or hung slurmctld must not stall the kernel.
async fn slurm_client(tool: &str, args: &[&str]) -> Option<String> {
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

/// Starts a controller listening on `ip`, in a private directory for the
/// connection file and the logs; returns once the file is written.
async fn start_controller(ip: &str) -> Result<Launched, String> {
    let dir = tempfile::Builder::new()
        .prefix("ferrocell-cluster-")
        .tempdir()
        .map_err(|e| format!("a directory for the cluster: {e}"))?;
    let file = dir.path().join("cluster.json");
    let log = dir.path().join("controller.log");
    super::leftovers::track(dir.path());
    let recipe = Recipe::new(
        "the controller",
        own_exe()?,
        vec![
            "controller".into(),
            "--ip".into(),
            ip.into(),
            "--file".into(),
            file.display().to_string(),
        ],
        log.clone(),
    );
    let mut controller = recipe.spawn()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !file.is_file() {
        if let Ok(Some(status)) = controller.try_wait() {
            return Err(format!(
                "the controller {}:\n{}",
                crate::exec::runner::describe_exit(status),
                tail(&log, 10)
            ));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the controller wrote no connection file within 15 s:\n{}",
                tail(&log, 10)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Launched {
        dir,
        file,
        controller,
        processes: Default::default(),
        supervisor: None,
    })
}

fn is_loopback(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback())
}

fn unreachable_from(hosts: &str) -> String {
    format!(
        "engines on {hosts} cannot reach a controller on loopback: start with --ip ADDRESS (an address of this machine that they can reach)"
    )
}

/// Starts a controller listening on `ip` and `n` engines on this machine. Returns
/// once the controller has written its connection file; the engines register in
/// their own time.
pub async fn start_local(n: usize, ip: &str) -> Result<Launched, String> {
    let mut launched = start_controller(ip).await?;
    let exe = own_exe()?;
    let file = launched.file.display().to_string();
    for i in 0..n {
        let log = launched.dir.path().join(format!("engine-{i}.log"));
        let args = vec!["engine".into(), "--file".into(), file.clone()];
        let mut recipe = Recipe::new(format!("engine process {i}"), exe.clone(), args, log);
        recipe.engine_here = true;
        launched.add(recipe)?;
    }
    Ok(launched)
}

/// Starts a controller and `n` engines as the ranks of one `mpirun` (Open MPI) or
/// `mpiexec` (MPICH): the way a cluster's MPI runtime places processes.
pub async fn start_mpi(n: usize, ip: &str) -> Result<Launched, String> {
    let mpirun = ["mpirun", "mpiexec"]
        .iter()
        .find_map(|t| crate::compile::toolchain::find_tool(t))
        .ok_or("the mpi launcher needs mpirun or mpiexec (Open MPI or MPICH) on PATH")?;
    let version = Command::new(&mpirun)
        .arg("--version")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut launched = start_controller(ip).await?;
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
    args.extend(["-n".into(), n.to_string(), own_exe()?.display().to_string()]);
    args.extend([
        "engine".into(),
        "--file".into(),
        launched.file.display().to_string(),
    ]);
    let log = launched.dir.path().join("mpirun.log");
    let mut recipe = Recipe::new(format!("mpirun ({n} ranks)"), mpirun, args, log);
    recipe.env = env;
    launched.add(recipe)?;
    Ok(launched)
}

/// Starts a controller listening on `ip` and `n` engines over ssh, dealt round-robin
/// over `hosts`. Each engine gets the connection file on its stdin (written to a
/// private temporary file there), so nothing needs copying first. `FERROCELL_SSH`
/// is the ssh command (default `ssh`; options such as `-p` or `-i` go in it), and
/// `FERROCELL_REMOTE` the ferrocell command on the hosts (default `ferrocell`).
pub async fn start_ssh(n: usize, hosts: &[String], ip: &str) -> Result<Launched, String> {
    if hosts.is_empty() {
        return Err("the ssh launcher needs --hosts HOST1,HOST2,…".into());
    }
    let remote_hosts = hosts
        .iter()
        .any(|h| !matches!(h.as_str(), "localhost" | "127.0.0.1" | "::1"));
    if is_loopback(ip) && remote_hosts {
        return Err(unreachable_from(&hosts.join(", ")));
    }
    let ssh = std::env::var("FERROCELL_SSH").unwrap_or_else(|_| "ssh".into());
    let mut ssh = ssh.split_whitespace().map(String::from);
    let program = ssh.next().unwrap_or_else(|| "ssh".into());
    let options: Vec<String> = ssh.collect();
    let remote = std::env::var("FERROCELL_REMOTE").unwrap_or_else(|_| "ferrocell".into());
    let mut launched = start_controller(ip).await?;
    let file = std::fs::read(&launched.file).map_err(|e| e.to_string())?;
    let script = format!(
        "umask 077; f=$(mktemp); cat > \"$f\"; {remote} engine --file \"$f\"; s=$?; rm -f \"$f\"; exit $s"
    );
    let program =
        crate::compile::toolchain::find_tool(&program).unwrap_or_else(|| PathBuf::from(&program));
    for i in 0..n {
        let host = &hosts[i % hosts.len()];
        let log = launched.dir.path().join(format!("engine-{i}.log"));
        let mut args = options.clone();
        args.extend([
            "-o".into(),
            "BatchMode=yes".into(),
            host.clone(),
            script.clone(),
        ]);
        let mut recipe = Recipe::new(
            format!("engine process {i} on {host}"),
            program.clone(),
            args,
            log,
        );
        recipe.stdin = Some(file.clone());
        launched.add(recipe)?;
    }
    Ok(launched)
}

/// Starts a controller listening on `ip` and `n` engines with Slurm. Inside an
/// allocation (`SLURM_JOB_ID` set, as under `salloc`) they are one `srun` step of
/// `n` tasks; otherwise one `sbatch` job of `n` tasks is submitted, and the start
/// waits for it to be scheduled. `FERROCELL_SBATCH` adds options to `sbatch`
/// (partition, time limit, account). The engines' ranks are their Slurm task ids;
/// the connection file reaches them in the job's environment.
pub async fn start_slurm(n: usize, ip: &str) -> Result<Launched, String> {
    let srun = crate::compile::toolchain::find_tool("srun")
        .ok_or("the slurm launcher needs Slurm's srun and sbatch on PATH")?;
    let allocation = std::env::var("SLURM_JOB_ID").ok();
    if allocation.is_some() && is_loopback(ip) {
        let nodes = std::env::var("SLURM_JOB_NODELIST").unwrap_or_default();
        let here = super::messages::hostname();
        let short = here.split('.').next().unwrap_or(&here);
        if !nodes.is_empty() && nodes != short && nodes != here {
            return Err(unreachable_from(&format!(
                "the allocation's nodes ({nodes})"
            )));
        }
    }
    let mut launched = start_controller(ip).await?;
    let json = std::fs::read_to_string(&launched.file).map_err(|e| e.to_string())?;
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
                .ok_or("the slurm launcher needs Slurm's sbatch on PATH (or run the kernel inside an allocation, where it uses srun)")?;
            let quoted: Vec<String> = std::iter::once(srun.display().to_string())
                .chain(step)
                .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                .collect();
            let script = dir.join("engines.sbatch");
            std::fs::write(&script, format!("#!/bin/sh\nexec {}\n", quoted.join(" ")))
                .map_err(|e| format!("{}: {e}", script.display()))?;
            // A name of its own finds the job (sbatch --wait prints its id only
            // when it exits). The job's output is written on its first node: in
            // the cache, under the home directory that cluster nodes share.
            let name = format!("ferrocell-{}", uuid::Uuid::new_v4().simple());
            let logs = crate::kernel::cache_dir().join("slurm");
            std::fs::create_dir_all(&logs)
                .and_then(|_| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| format!("{}: {e}", logs.display()))?;
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
            super::leftovers::track_batch(&dir, &name);
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
    fn add(&mut self, recipe: Recipe) -> Result<(), String> {
        let child = recipe.spawn()?;
        let mut p = self.processes.lock().expect("processes");
        p.list.push(Process {
            recipe,
            pid: child.id(),
            child,
            ended: None,
            restarts: Vec::new(),
        });
        Ok(())
    }

    /// Processes that have ended, with how and their last log lines.
    pub fn failed_engines(&mut self) -> Vec<String> {
        let mut p = self.processes.lock().expect("processes");
        p.list
            .iter_mut()
            .filter_map(|proc| {
                let status = proc.child.try_wait().ok().flatten()?;
                Some(format!(
                    "{} {}:\n{}",
                    proc.recipe.label,
                    crate::exec::runner::describe_exit(status),
                    proc.recipe.tails(5)
                ))
            })
            .collect()
    }

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

    /// From now on, a process that ends is started again as it was (`--restart`),
    /// unless it keeps ending.
    pub fn supervise(&mut self) {
        let processes = self.processes.clone();
        self.supervisor = Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(SUPERVISE_EVERY);
            loop {
                every.tick().await;
                let mut p = processes.lock().expect("processes");
                if p.stopping {
                    return;
                }
                let mut events = Vec::new();
                for proc in p.list.iter_mut() {
                    if proc.ended.is_some() {
                        continue;
                    }
                    let Ok(Some(status)) = proc.child.try_wait() else {
                        continue;
                    };
                    let how = format!(
                        "(pid {}) {}",
                        proc.pid.unwrap_or(0),
                        crate::exec::runner::describe_exit(status)
                    );
                    proc.restarts.retain(|at| at.elapsed() < RESTART_WINDOW);
                    if proc.restarts.len() >= RESTART_LIMIT {
                        proc.ended = Some(status);
                        events.push(format!(
                            "{} {how}; not started again: it was {RESTART_LIMIT} times within {} s already:\n{}",
                            proc.recipe.label,
                            RESTART_WINDOW.as_secs(),
                            proc.recipe.tails(5)
                        ));
                        continue;
                    }
                    match proc.recipe.spawn() {
                        Ok(child) => {
                            proc.pid = child.id();
                            proc.child = child;
                            proc.restarts.push(Instant::now());
                            events.push(format!(
                                "{} {how}; started again (restart {})",
                                proc.recipe.label,
                                proc.restarts.len()
                            ));
                        }
                        Err(e) => {
                            proc.ended = Some(status);
                            events.push(format!(
                                "{} {how}; starting it again failed: {e}",
                                proc.recipe.label
                            ));
                        }
                    }
                }
                for e in &events {
                    tracing::info!("{e}");
                }
                p.events.extend(events);
            }
        }));
    }

    /// Stops starting processes again: the cluster is being stopped, and its
    /// engines are about to end on purpose.
    pub fn stop_supervising(&mut self) {
        self.processes.lock().expect("processes").stopping = true;
        if let Some(s) = self.supervisor.take() {
            s.abort();
        }
    }

    /// What the supervisor did (`--restart`), or `None` when it is off.
    pub fn restart_events(&self) -> Option<Vec<String>> {
        self.supervisor.as_ref()?;
        Some(self.processes.lock().expect("processes").events.clone())
    }

    /// Kills the engines started here whose pid is among `pids` (the controller
    /// lost them, but their processes live on: hung, or cut off), so that the
    /// supervisor starts them again.
    pub fn kill_lost(&self, pids: &[u32]) {
        let mut p = self.processes.lock().expect("processes");
        for proc in p.list.iter_mut().filter(|p| p.recipe.engine_here) {
            if proc.child.id().is_some_and(|pid| pids.contains(&pid)) {
                tracing::info!("killing {}: its engine was lost", proc.recipe.label);
                let _ = proc.child.start_kill();
            }
        }
    }

    /// Waits for every process to end, killing what is left after `grace`, and
    /// cancels the Slurm jobs it submitted.
    pub async fn wait_or_kill(&mut self, grace: Duration) {
        self.stop_supervising();
        let list = std::mem::take(&mut self.processes.lock().expect("processes").list);
        let mut list = list;
        let deadline = tokio::time::Instant::now() + grace;
        for proc in list.iter_mut() {
            if tokio::time::timeout_at(deadline, proc.child.wait())
                .await
                .is_err()
            {
                let _ = proc.child.start_kill();
                let _ = proc.child.wait().await;
            }
            if let Some(name) = &proc.recipe.batch {
                let _ = slurm_client("scancel", &["--name", name]).await;
            }
            if let Some(log) = &proc.recipe.more_log {
                let _ = std::fs::remove_file(log);
            }
        }
        if tokio::time::timeout_at(deadline, self.controller.wait())
            .await
            .is_err()
        {
            let _ = self.controller.start_kill();
            let _ = self.controller.wait().await;
        }
    }
}

impl Drop for Launched {
    /// The supervisor holds the processes; without it they go (`kill_on_drop`).
    /// The directory goes with `dir`.
    fn drop(&mut self) {
        super::leftovers::forget(self.dir.path());
        if let Some(s) = self.supervisor.take() {
            s.abort();
        }
    }
}
