//! The control channel: answered at once, even while a cell runs.

use super::info::kernel_info;
use super::iopub::{Channel, Iopub};
use super::shell::{spawn_reader, Replier};
use crate::protocol::messages::{InterruptReply, ShutdownReply, ShutdownRequest};
use crate::protocol::Signer;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use zeromq::RouterSocket;

/// Starts the control task.
pub fn spawn(
    socket: RouterSocket,
    signer: Arc<Signer>,
    session: String,
    iopub: Iopub,
    interrupts: Arc<watch::Sender<u64>>,
    shutdown: mpsc::Sender<()>,
) {
    let (send, recv) = socket.split();
    let mut queue = spawn_reader(recv, signer.clone(), "control");
    let mut replier = Replier::new(send, signer, session);
    tokio::spawn(async move {
        while let Some(msg) = queue.recv().await {
            iopub.busy(Channel::Control, &msg.header);
            match msg.header.msg_type.as_str() {
                "kernel_info_request" => replier.reply(&msg, &kernel_info()).await,
                "interrupt_request" => {
                    interrupts.send_modify(|n| *n += 1);
                    replier.reply(&msg, &InterruptReply { status: "ok" }).await;
                }
                "shutdown_request" => {
                    let restart = msg
                        .content_as::<ShutdownRequest>()
                        .map(|r| r.restart)
                        .unwrap_or(false);
                    let reply = ShutdownReply {
                        status: "ok",
                        restart,
                    };
                    replier.reply(&msg, &reply).await;
                    // ipykernel also tells every client on IOPub.
                    iopub.publish(Channel::Control, &reply);
                    iopub.idle(Channel::Control);
                    iopub.flush().await;
                    let _ = shutdown.send(()).await;
                    return;
                }
                other => tracing::info!("no handler for control message {other}"),
            }
            iopub.idle(Channel::Control);
        }
    });
}
