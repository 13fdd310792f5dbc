//! The controller's outboxes: one queue and one sending task per peer (engine or
//! kernel), so that a peer that does not read holds up only its own messages.
//! The controller's loop hands a message (all its parts) to the peer's queue,
//! and a peer whose queue stays full is told to the loop, which drops it. An
//! engine's queue must take the message at once; a kernel's may take a while, as
//! a thousand engines answering one cell all at once is no sign that their kernel
//! stopped reading: the controller waits for room (and reads nothing meanwhile,
//! which holds the engines back) up to a patience. Behind each queue the socket keeps its own per-peer
//! queue (1000 parts, 5 s for room: see vendor/zeromq); the task waits on that
//! one, for its peer alone.

use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{RouterSendHalf, SocketSend, ZmqMessage};

/// Whole messages queued for one peer in the controller (a message of many parts,
/// a large value, counts once), beyond the socket's own queue.
const OUTBOX: usize = 64;

/// Why a message did not go into a peer's queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its queue is full: the peer does not read what it is sent.
    Full,
    /// Its sending task ended (the socket gave up on the peer); the next message
    /// opens a new queue.
    Closed,
}

/// One peer's queue and the task that sends from it.
struct Outbox {
    queue: mpsc::Sender<Vec<ZmqMessage>>,
    task: JoinHandle<()>,
}

/// The outboxes of one ROUTER socket.
pub struct Outboxes {
    send: RouterSendHalf,
    boxes: HashMap<Bytes, Outbox>,
    what: &'static str,
    /// How long a full queue may take to make room before its peer counts as
    /// one that does not read.
    patience: Duration,
}

impl Outboxes {
    pub fn new(send: RouterSendHalf, what: &'static str, patience: Duration) -> Outboxes {
        Outboxes {
            send,
            boxes: HashMap::new(),
            what,
            patience,
        }
    }

    /// Queues one message, as its parts (each starting with the peer's identity
    /// frame), for the peer behind `identity`. Its parts go out in order, after
    /// what was queued before.
    pub async fn post(&mut self, identity: &Bytes, parts: Vec<ZmqMessage>) -> Result<(), Refused> {
        let what = self.what;
        let send = &self.send;
        let outbox = self.boxes.entry(identity.clone()).or_insert_with(|| {
            let (queue, mut rx) = mpsc::channel::<Vec<ZmqMessage>>(OUTBOX);
            let mut send = send.clone();
            let task = tokio::spawn(async move {
                while let Some(parts) = rx.recv().await {
                    for raw in parts {
                        if let Err(e) = send.send(raw).await {
                            tracing::warn!("a message to {what} was not sent: {e}");
                            return;
                        }
                    }
                }
            });
            Outbox { queue, task }
        });
        let sent = if self.patience.is_zero() {
            outbox.queue.try_send(parts).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            })
        } else {
            let queue = outbox.queue.clone();
            queue
                .send_timeout(parts, self.patience)
                .await
                .map_err(|e| match e {
                    mpsc::error::SendTimeoutError::Timeout(_) => Refused::Full,
                    mpsc::error::SendTimeoutError::Closed(_) => Refused::Closed,
                })
        };
        if sent.is_err() {
            self.close(identity);
        }
        sent
    }

    /// Forgets a peer's queue: its task is stopped and what it still held is
    /// dropped, so a queue opened later for the same peer never races it.
    pub fn close(&mut self, identity: &Bytes) {
        if let Some(outbox) = self.boxes.remove(identity) {
            outbox.task.abort();
        }
    }

    /// Lets a peer's queue empty, then ends its task (a peer the controller has
    /// answered for the last time).
    pub fn release(&mut self, identity: &Bytes) {
        // Its sender goes here: the task sends what is queued, then ends.
        self.boxes.remove(identity);
    }

    /// Lets every queue empty (the controller is about to exit), waiting at most
    /// `within` in all.
    pub async fn drain(&mut self, within: Duration) {
        // Each queue's sender goes here, so its task ends once the queue is empty.
        let tasks: Vec<JoinHandle<()>> = self.boxes.drain().map(|(_, o)| o.task).collect();
        let deadline = tokio::time::Instant::now() + within;
        for task in tasks {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
    }
}
