//! The ssh launcher: engines on other hosts, started over ssh, each given the
//! connection file on its stdin.

use super::controller::start_controller;
use super::{is_loopback, LaunchError, Launched, Recipe};
use std::path::PathBuf;

/// Starts a controller listening on `ip` and `n` engines over ssh, dealt round-robin
/// over `hosts`. Each engine gets the connection file on its stdin (written to a
/// private temporary file there), so nothing needs copying first. `FERROCELL_SSH`
/// is the ssh command (default `ssh`; options such as `-p` or `-i` go in it), and
/// `FERROCELL_REMOTE` the ferrocell command on the hosts (default `ferrocell`).
pub async fn start_ssh(n: usize, hosts: &[String], ip: &str) -> Result<Launched, LaunchError> {
    if hosts.is_empty() {
        return Err(LaunchError::Needs {
            launcher: "ssh",
            needs: "--hosts HOST1,HOST2,…",
        });
    }
    let remote_hosts = hosts
        .iter()
        .any(|h| !matches!(h.as_str(), "localhost" | "127.0.0.1" | "::1"));
    if is_loopback(ip) && remote_hosts {
        return Err(LaunchError::LoopbackUnreachable {
            from: hosts.join(", "),
        });
    }
    let ssh = std::env::var("FERROCELL_SSH").unwrap_or_else(|_| "ssh".into());
    let mut ssh = ssh.split_whitespace().map(String::from);
    let program = ssh.next().unwrap_or_else(|| "ssh".into());
    let options: Vec<String> = ssh.collect();
    let remote = std::env::var("FERROCELL_REMOTE").unwrap_or_else(|_| "ferrocell".into());
    let mut launched = start_controller(ip).await?;
    let file = std::fs::read(&launched.file).map_err(LaunchError::ConnectionFile)?;
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
