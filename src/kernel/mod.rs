//! The kernel process: binds the five Jupyter sockets and runs one task per socket.
//!
//! - IOPub ([`iopub`]) owns the XPUB socket, the current parents and stream batching;
//! - shell ([`shell`]) reads requests into a queue that one executor works through in
//!   order (so `stop_on_error` can abort what is queued);
//! - control ([`control`]) answers at once, even while a cell runs: interrupt,
//!   shutdown, kernel_info;
//! - stdin ([`stdin`]) asks the client for input on behalf of a cell;
//! - heartbeat ([`heartbeat`]) echoes.

pub mod complete_at;
pub mod control;
pub mod execute;
pub mod expr_context;
pub mod heartbeat;
pub mod history;
pub mod info;
pub mod introspect;
pub mod iopub;
pub mod outputs;
pub mod shell;
pub mod std_docs;
pub mod stdin;

use crate::protocol::{ConnectionInfo, Signer};
use crate::sockets::{limited, MEDIUM_MESSAGES, SMALL_MESSAGES};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use zeromq::{RepSocket, RouterSocket, Socket, XPubSocket};

pub use crate::paths::{cache_dir, history_file};

async fn bind<S: Socket>(
    socket: &mut S,
    info: &ConnectionInfo,
    port: u16,
    what: &str,
) -> anyhow::Result<()> {
    let endpoint = info.endpoint(port);
    socket
        .bind(&endpoint)
        .await
        .with_context(|| format!("cannot bind the {what} socket to {endpoint}"))?;
    Ok(())
}

/// Runs the kernel for a connection file until a shutdown request.
pub async fn run(connection_file: &Path) -> anyhow::Result<()> {
    let info = ConnectionInfo::from_file(connection_file)?;
    if info.key.is_empty() {
        tracing::warn!(
            "the connection file has an empty key: messages are not signed, and any local process can run code in this kernel"
        );
    }
    // Compiled cells hold the user's code: the cache is the user's alone.
    if let Err(e) = crate::paths::private_dir(&cache_dir()) {
        tracing::warn!("the cache {}: {e}", cache_dir().display());
    }
    let signer = Arc::new(Signer::new(&info.key));
    // One session id per kernel process: clients notice restarts by its change.
    let session = uuid::Uuid::new_v4().to_string();

    let mut iopub_socket = XPubSocket::with_options(limited(SMALL_MESSAGES));
    bind(&mut iopub_socket, &info, info.iopub_port, "iopub").await?;
    let mut shell_socket = RouterSocket::with_options(crate::sockets::options());
    bind(&mut shell_socket, &info, info.shell_port, "shell").await?;
    let mut control_socket = RouterSocket::with_options(limited(MEDIUM_MESSAGES));
    bind(&mut control_socket, &info, info.control_port, "control").await?;
    let mut stdin_socket = RouterSocket::with_options(limited(MEDIUM_MESSAGES));
    bind(&mut stdin_socket, &info, info.stdin_port, "stdin").await?;
    let mut hb_socket = RepSocket::with_options(limited(SMALL_MESSAGES));
    bind(&mut hb_socket, &info, info.hb_port, "heartbeat").await?;

    let iopub = iopub::spawn(iopub_socket, signer.clone(), session.clone());
    heartbeat::spawn(hb_socket);
    let stdin = stdin::spawn(stdin_socket, signer.clone(), session.clone());
    let (interrupt_tx, interrupt_rx) = tokio::sync::watch::channel(0u64);
    let interrupt_tx = Arc::new(interrupt_tx);

    let executor = execute::Executor::new(
        cache_dir(),
        history::History::open(history_file()),
        iopub.clone(),
        stdin,
        interrupt_rx,
    );
    let snapshots = executor.snapshot_dir();
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::mpsc::channel::<()>(1);
    let shutdown_tx_watch = shutdown_tx.clone();
    shell::spawn(
        shell_socket,
        signer.clone(),
        session.clone(),
        iopub.clone(),
        executor,
        shutdown_tx.clone(),
    );
    control::spawn(
        control_socket,
        signer,
        session,
        iopub,
        interrupt_tx.clone(),
        shutdown_tx,
    );

    // Like ipykernel: a kernel whose launching client died goes too, instead of
    // lingering with its runner.
    if std::env::var_os("JPY_PARENT_PID").is_some() {
        let parent = nix::unistd::getppid();
        let shutdown = shutdown_tx_watch.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if nix::unistd::getppid() != parent {
                    tracing::warn!("the client that started this kernel is gone; exiting");
                    let _ = shutdown.send(()).await;
                    return;
                }
            }
        });
    }

    // A client that sends SIGINT anyway gets the same interrupt as the message.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = sigint.recv() => { interrupt_tx.send_modify(|n| *n += 1); }
            _ = sigterm.recv() => break,
            _ = shutdown_rx.recv() => break,
        }
    }
    // What the runners' cells started ends with the kernel.
    crate::exec::runner::kill_all_groups();
    crate::exec::savers::kill(&snapshots);
    // A cluster this kernel started and did not stop: its key file and batch jobs.
    crate::cluster::leftovers::clean_up(std::time::Duration::from_secs(5));
    // The values of the session's variables do not outlive it.
    if let Err(e) = std::fs::remove_dir_all(&snapshots) {
        tracing::warn!("removing {}: {e}", snapshots.display());
    }
    Ok(())
}
