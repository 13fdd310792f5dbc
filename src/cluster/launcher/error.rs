//! Why a cluster's processes did not start: one variant a cause, each with what
//! the message names (a command, a file, the controller's log).

use std::path::PathBuf;
use std::process::ExitStatus;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A launcher's command is not on PATH, or an option it needs was not given.
    #[error("the {launcher} launcher needs {needs}")]
    Needs {
        launcher: &'static str,
        needs: &'static str,
    },
    /// Engines elsewhere (`from`: hosts, an allocation's nodes) and a controller
    /// listening on loopback only.
    #[error("engines on {from} cannot reach a controller on loopback: start with --ip ADDRESS (an address of this machine that they can reach)")]
    LoopbackUnreachable { from: String },
    /// `--queue` or `--account` for engines that go into the allocation the
    /// kernel runs in, which has its own.
    #[error("inside a Slurm allocation the engines use its partition and account: leave out --queue and --account (or start the kernel outside it)")]
    InAllocation,
    /// The cluster's private directory could not be made.
    #[error("a directory for the cluster: {0}")]
    Dir(#[source] std::io::Error),
    /// The path of ferrocell's own executable, which the cluster's processes run.
    #[error("ferrocell's own path: {0}")]
    OwnExe(#[source] std::io::Error),
    /// The controller ended before it wrote its connection file; `log` is its
    /// log's last lines.
    #[error("the controller {}:\n{log}", crate::exec::runner::describe_exit(*.status))]
    ControllerEnded { status: ExitStatus, log: String },
    /// The controller did not write its connection file in time.
    #[error("the controller wrote no connection file within {secs} s:\n{log}")]
    NoConnectionFile { secs: u64, log: String },
    /// The connection file the controller wrote could not be read back.
    #[error(transparent)]
    ConnectionFile(std::io::Error),
    /// A file or directory the launcher writes (a log, a batch script).
    #[error("{}: {source}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A log file's handle could not be shared between stdout and stderr.
    #[error(transparent)]
    LogHandle(std::io::Error),
    /// A recipe's command could not be run; `label` says what it starts.
    #[error("cannot start {} for {label}: {source}", .program.display())]
    Spawn {
        program: PathBuf,
        label: String,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::LaunchError;

    #[test]
    fn messages_are_the_launchers_words() {
        let needs = LaunchError::Needs {
            launcher: "ssh",
            needs: "--hosts HOST1,HOST2,…",
        };
        assert_eq!(
            needs.to_string(),
            "the ssh launcher needs --hosts HOST1,HOST2,…"
        );
        let spawn = LaunchError::Spawn {
            program: "/no/mpirun".into(),
            label: "mpirun (2 ranks)".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(spawn
            .to_string()
            .starts_with("cannot start /no/mpirun for mpirun (2 ranks): "));
        assert!(std::error::Error::source(&spawn).is_some());
    }
}
