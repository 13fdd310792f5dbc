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
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
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
        .map_err(|e| format!("cannot start ferrocell {}: {e}", args[0]))
}

/// Starts a controller listening on `ip` and `n` engines on this machine. Returns
/// once the controller has written its connection file; the engines register in
/// their own time.
pub async fn start_local(n: usize, ip: &str) -> Result<Launched, String> {
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
    let mut engines = Vec::new();
    for i in 0..n {
        let log = dir.path().join(format!("engine-{i}.log"));
        engines.push((spawn(&["engine", "--file", &file_arg], &log)?, log));
    }
    Ok(Launched {
        dir,
        file,
        controller,
        engines,
    })
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
