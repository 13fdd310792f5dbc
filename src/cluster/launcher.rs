//! Starting a cluster's processes: the controller and its engines.
//!
//! The local launcher spawns `ferrocell controller` and N `ferrocell engine`s on this
//! machine, each logging to its own file in a private directory, so that a start that
//! fails can say which engine failed and show its last lines.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The processes a launcher started, and where they log.
pub struct Launched {
    /// Holds the connection file and the logs (0700); removed with the cluster.
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub controller: Child,
    pub engines: Vec<(Child, PathBuf)>,
}

/// The last lines of a log, for an error message.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn spawn(args: &[&str], log: &Path) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("ferrocell's own path: {e}"))?;
    spawn_program(&exe, args, log)
}

/// [`spawn_program`] with a pipe for its stdin (closed once written and dropped).
fn spawn_with_stdin(program: &Path, args: &[&str], log: &Path) -> Result<Child, String> {
    start(program, args, log, true)
}

/// Starts `program` logging to `log`; it dies with the kernel.
fn spawn_program(program: &Path, args: &[&str], log: &Path) -> Result<Child, String> {
    start(program, args, log, false)
}

fn start(program: &Path, args: &[&str], log: &Path, stdin: bool) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin {
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
    cmd.spawn()
        .map_err(|e| format!("cannot start {} {}: {e}", program.display(), args[0]))
}

/// Starts a controller listening on `ip` and `n` engines on this machine. Returns
/// once the controller has written its connection file; the engines register in
/// their own time.
pub async fn start_local(n: usize, ip: &str) -> Result<Launched, String> {
    let mut launched = start_controller(ip).await?;
    let file_arg = launched.file.display().to_string();
    for i in 0..n {
        let log = launched.dir.path().join(format!("engine-{i}.log"));
        let child = spawn(&["engine", "--file", &file_arg], &log)?;
        launched.engines.push((child, log));
    }
    Ok(launched)
}

/// Starts a controller listening on `ip`, in a private directory for the
/// connection file and the logs; returns once the file is written.
async fn start_controller(ip: &str) -> Result<Launched, String> {
    let dir = tempfile::Builder::new()
        .prefix("ferrocell-cluster-")
        .tempdir()
        .map_err(|e| format!("a directory for the cluster: {e}"))?;
    let file = dir.path().join("cluster.json");
    let file_arg = file.display().to_string();
    let log = dir.path().join("controller.log");
    let mut controller = spawn(&["controller", "--ip", ip, "--file", &file_arg], &log)?;
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
        engines: Vec::new(),
    })
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
    let exe = std::env::current_exe().map_err(|e| format!("ferrocell's own path: {e}"))?;
    let mut args: Vec<String> = Vec::new();
    if version.contains("Open MPI") || version.contains("OpenRTE") {
        // More engines than cores is the user's call; root is what containers run as.
        args.extend(["--oversubscribe".into(), "--allow-run-as-root".into()]);
    }
    args.extend(["-n".into(), n.to_string(), exe.display().to_string()]);
    args.extend([
        "engine".into(),
        "--file".into(),
        launched.file.display().to_string(),
    ]);
    let log = launched.dir.path().join("mpirun.log");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = spawn_program(&mpirun, &refs, &log)?;
    launched.engines.push((child, log));
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
    let loopback = ip
        .parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback());
    let remote_hosts = hosts
        .iter()
        .any(|h| !matches!(h.as_str(), "localhost" | "127.0.0.1" | "::1"));
    if loopback && remote_hosts {
        return Err(format!(
            "engines on {} cannot reach a controller on loopback: start with --ip ADDRESS (an address of this machine that they can reach)",
            hosts.join(", ")
        ));
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
        let mut args: Vec<&str> = options.iter().map(String::as_str).collect();
        args.extend(["-o", "BatchMode=yes", host.as_str(), script.as_str()]);
        let mut child = spawn_with_stdin(&program, &args, &log)?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            stdin
                .write_all(&file)
                .await
                .map_err(|e| format!("sending the connection file to {host}: {e}"))?;
        }
        launched.engines.push((child, log));
    }
    Ok(launched)
}

impl Launched {
    /// Engines that have exited, with how and their last log lines.
    pub fn failed_engines(&mut self) -> Vec<String> {
        self.engines
            .iter_mut()
            .enumerate()
            .filter_map(|(i, (child, log))| {
                let status = child.try_wait().ok().flatten()?;
                Some(format!(
                    "engine {i} {}:\n{}",
                    crate::exec::runner::describe_exit(status),
                    tail(log, 5)
                ))
            })
            .collect()
    }

    /// Waits for every process to end, killing what is left after `grace`.
    pub async fn wait_or_kill(&mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        for child in
            std::iter::once(&mut self.controller).chain(self.engines.iter_mut().map(|(c, _)| c))
        {
            if tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}
