//! The `ferrocell` command: the kernel itself and its helpers.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ferrocell",
    version,
    about = "A Jupyter kernel for Rust: cells compiled to native code"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the kernel (Jupyter starts this from the kernelspec).
    Kernel {
        /// The connection file Jupyter wrote.
        #[arg(long, short = 'f')]
        connection_file: PathBuf,
    },
    /// Run a cluster controller: engines and kernels connect to it (like ipcontroller).
    Controller {
        /// The address to listen on; loopback unless given (engines on other hosts
        /// need an address they can reach).
        #[arg(long, default_value = "127.0.0.1")]
        ip: String,
        /// Where to write the connection file (0600) that engines and kernels read.
        #[arg(long, default_value = "ferrocell-cluster.json")]
        file: PathBuf,
    },
    /// Run a cluster engine: it registers with the controller of FILE and runs the
    /// cells it is sent (like ipengine).
    Engine {
        /// The controller's connection file; without it, the file's contents are
        /// read from FERROCELL_CONNECTION, as JSON or in hexadecimal (how the
        /// batch launchers pass them).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Install the kernelspec so that Jupyter offers "Rust (ferrocell)".
    Install {
        /// Into ~/.local/share/jupyter (the default).
        #[arg(long, conflicts_with_all = ["sys_prefix", "prefix"])]
        user: bool,
        /// Into the active Python environment.
        #[arg(long, conflicts_with = "prefix")]
        sys_prefix: bool,
        /// Into PREFIX/share/jupyter.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<PathBuf>,
    },
}

/// Runs one of the long-lived processes (kernel, controller, engine) on a small
/// tokio runtime: two workers are plenty for sockets and the runner's pipe, and
/// leave the cores to the cells.
fn block_on<E>(work: impl std::future::Future<Output = Result<(), E>>) -> anyhow::Result<()>
where
    anyhow::Error: From<E>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok(rt.block_on(work)?)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // With its terminal gone, a failed write must not panic the thread that
        // logged (the kernel's parent watch would die before it shuts down).
        .log_internal_errors(false)
        .init();
    match Cli::parse().command {
        Command::Kernel { connection_file } => {
            block_on(ferrocell::kernel::run(&connection_file))?;
            // Leave without waiting for background tasks; the runner dies with us.
            std::process::exit(0);
        }
        Command::Controller { ip, file } => {
            block_on(ferrocell::cluster::controller::run(
                ferrocell::cluster::controller::Options { ip, file },
            ))?;
        }
        Command::Engine { file } => {
            use ferrocell::cluster::launcher::{connection_from_env, CONNECTION_ENV};
            use ferrocell::cluster::messages::ClusterFile;
            let cluster = match file {
                Some(path) => ClusterFile::read(&path)?,
                None => {
                    let json = std::env::var(CONNECTION_ENV)
                        .ok()
                        .and_then(|v| connection_from_env(&v))
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "ferrocell engine needs --file FILE (or {CONNECTION_ENV}: the file's JSON, or its hexadecimal)"
                            )
                        })?;
                    // Not for the cells it will run; no thread is started yet.
                    std::env::remove_var(CONNECTION_ENV);
                    ClusterFile::parse(&json, CONNECTION_ENV)?
                }
            };
            // A probe of rustc its launcher made on this machine, if one was handed down.
            use ferrocell::compile::toolchain::{Toolchain, PROBED_ENV};
            let probed = std::env::var(PROBED_ENV)
                .ok()
                .and_then(|v| Toolchain::handed(&v));
            std::env::remove_var(PROBED_ENV);
            block_on(ferrocell::cluster::engine::run(cluster, probed))?;
            std::process::exit(0);
        }
        Command::Install {
            user: _,
            sys_prefix,
            prefix,
        } => {
            use ferrocell::install::Target;
            let target = match (sys_prefix, prefix) {
                (_, Some(p)) => Target::Prefix(p),
                (true, None) => Target::SysPrefix,
                _ => Target::User,
            };
            let dir = ferrocell::install::install(&target)?;
            println!("Installed the ferrocell kernelspec in {}", dir.display());
        }
    }
    Ok(())
}
