//! The heartbeat: every message is echoed back unchanged.

use zeromq::{RepSocket, SocketRecv, SocketSend};

/// Runs the echo loop on a bound REP socket until the kernel exits.
pub fn spawn(mut socket: RepSocket) {
    tokio::spawn(async move {
        loop {
            match socket.recv().await {
                Ok(msg) => {
                    if let Err(e) = socket.send(msg).await {
                        tracing::debug!("heartbeat send: {e}");
                    }
                }
                Err(e) => tracing::debug!("heartbeat recv: {e}"),
            }
        }
    });
}
