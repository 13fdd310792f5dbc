//! The stdin channel: asks the client for input on behalf of a running cell.
//!
//! The request goes to the identity of the shell client whose `execute_request` is
//! running (its stdin socket shares that identity); only a verified `input_reply`
//! whose parent is our request is accepted.

use crate::protocol::messages::{Content, InputReply, InputRequest};
use crate::protocol::{Header, Signer};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use zeromq::{RouterSocket, SocketRecv, SocketSend, ZmqMessage};

/// Where a cell's input requests go: the client whose `execute_request` runs it
/// (its stdin socket shares the shell identity), with that request's header as
/// their parent. Only this travels with a run, not the whole Jupyter message; the
/// kernel's own runs (savers, restores, expressions) have none and cannot ask.
#[derive(Clone, Debug)]
pub struct Origin {
    pub identities: Vec<Bytes>,
    pub parent: Header,
}

impl Origin {
    pub fn of(msg: &crate::protocol::Message) -> Origin {
        Origin {
            identities: msg.identities.clone(),
            parent: msg.header.clone(),
        }
    }
}

/// One question for the user.
pub struct Ask {
    pub identities: Vec<Bytes>,
    pub parent: Header,
    pub prompt: String,
    pub password: bool,
    pub answer: oneshot::Sender<String>,
}

/// Handle for asking through the stdin task.
#[derive(Clone)]
pub struct Stdin {
    tx: mpsc::UnboundedSender<Ask>,
}

impl Stdin {
    /// Sends the question; the answer arrives on the returned receiver (dropped
    /// unanswered if the kernel goes away).
    pub fn ask(
        &self,
        origin: &Origin,
        prompt: String,
        password: bool,
    ) -> oneshot::Receiver<String> {
        let (answer, rx) = oneshot::channel();
        let _ = self.tx.send(Ask {
            identities: origin.identities.clone(),
            parent: origin.parent.clone(),
            prompt,
            password,
            answer,
        });
        rx
    }
}

/// A stdin without a socket: the questions come out of the returned queue, to be
/// answered by a frontend inside the process (the executor's Rust tests).
pub fn detached() -> (Stdin, mpsc::UnboundedReceiver<Ask>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Stdin { tx }, rx)
}

/// Starts the stdin task on a bound ROUTER socket.
pub fn spawn(mut socket: RouterSocket, signer: Arc<Signer>, session: String) -> Stdin {
    let (tx, mut rx) = mpsc::unbounded_channel::<Ask>();
    tokio::spawn(async move {
        let mut pending: Option<(String, oneshot::Sender<String>)> = None;
        loop {
            tokio::select! {
                ask = rx.recv() => {
                    let Some(ask) = ask else { break };
                    let header = Header::new(InputRequest::MSG_TYPE, &session);
                    let content = InputRequest { prompt: ask.prompt, password: ask.password };
                    let frames = signer.encode(&ask.identities, &header, Some(&ask.parent), &content);
                    if let Ok(msg) = ZmqMessage::try_from(frames) {
                        if let Err(e) = socket.send(msg).await {
                            tracing::warn!("stdin send failed: {e}");
                        }
                    }
                    pending = Some((header.msg_id, ask.answer));
                }
                msg = socket.recv() => {
                    let Ok(msg) = msg else { continue };
                    let msg = match signer.decode(msg.into_vec()) {
                        Ok(m) => m,
                        Err(e) => { tracing::warn!("dropped a stdin message: {e}"); continue; }
                    };
                    if msg.header.msg_type != "input_reply" { continue; }
                    // jupyter_client sends its reply without a parent; one that has a
                    // parent must be for the question we asked.
                    let for_us = match (&pending, &msg.parent) {
                        (Some((id, _)), Some(p)) => *id == p.msg_id,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    if !for_us { continue; }
                    let value = msg.content_as::<InputReply>().map(|r| r.value).unwrap_or_default();
                    if let Some((_, answer)) = pending.take() {
                        let _ = answer.send(value);
                    }
                }
            }
        }
    });
    Stdin { tx }
}
