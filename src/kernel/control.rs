//! The control channel: answered at once, even while a cell runs.

use super::info::kernel_info;
use super::iopub::{Channel, Iopub};
use super::shell::{spawn_reader, Replier};
use crate::protocol::messages::{InterruptReply, ReplyStatus, ShutdownReply};
use crate::protocol::{Malformed, Request, Signer};
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
            match Request::read(&msg) {
                Ok(Request::KernelInfo) => replier.reply(&msg, &kernel_info()).await,
                Ok(Request::Interrupt) => {
                    interrupts.send_modify(|n| *n += 1);
                    let reply = InterruptReply {
                        status: ReplyStatus::Ok,
                    };
                    replier.reply(&msg, &reply).await;
                }
                Ok(Request::Shutdown { restart }) => {
                    let reply = ShutdownReply {
                        status: ReplyStatus::Ok,
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
                Ok(_) => tracing::info!("no handler on control for {}", msg.header.msg_type),
                Err(Malformed::Execute(e) | Malformed::Other(e)) => {
                    replier.reply_malformed(&msg, &e).await
                }
            }
            iopub.idle(Channel::Control);
        }
    });
}
