//! The controller's outboxes: one queue and one sending task per peer (engine or
//! kernel), so that a peer that does not read holds up only its own messages.
//! The controller's loop never waits on a peer: it hands a message (all its
//! parts) to the peer's queue at once, and a peer whose queue is full is told to
//! the loop, which drops it. An engine's queue is short; a kernel's is long, as a
//! thousand engines answering one cell at once is no sign that their kernel stopped
//! reading; both are bounded in bytes too. Behind each queue the socket keeps its
//! own per-peer queue (1000 parts, 5 s for room: see vendor/zeromq); the task
//! waits on that one, for its peer alone.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{RouterSendHalf, SocketSend, ZmqMessage};

/// How much one peer's queue may hold in the controller, beyond the socket's own
/// queue: whole messages (a message of many parts counts once) and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub messages: usize,
    pub bytes: usize,
}

/// Why a message did not go into a peer's queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its queue is full: the peer does not read what it is sent.
    Full,
    /// Its sending task ended (the socket gave up on the peer); the next message
    /// opens a new queue.
    Closed,
}

/// One peer's queue, the bytes in it, and the task that sends from it.
struct Outbox {
    queue: mpsc::Sender<Vec<ZmqMessage>>,
    bytes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// The outboxes of one ROUTER socket.
pub struct Outboxes {
    send: RouterSendHalf,
    boxes: HashMap<Bytes, Outbox>,
    what: &'static str,
    bound: Bound,
}

fn size(parts: &[ZmqMessage]) -> usize {
    parts
        .iter()
        .flat_map(|m| m.iter())
        .map(|frame| frame.len())
        .sum()
}

impl Outboxes {
    pub fn new(send: RouterSendHalf, what: &'static str, bound: Bound) -> Outboxes {
        Outboxes {
            send,
            boxes: HashMap::new(),
            what,
            bound,
        }
    }

    /// Queues one message, as its parts (each starting with the peer's identity
    /// frame), for the peer behind `identity`. Its parts go out in order, after
    /// what was queued before.
    pub fn post(&mut self, identity: &Bytes, parts: Vec<ZmqMessage>) -> Result<(), Refused> {
        let what = self.what;
        let send = &self.send;
        let bound = self.bound;
        let outbox = self.boxes.entry(identity.clone()).or_insert_with(|| {
            let (queue, mut rx) = mpsc::channel::<Vec<ZmqMessage>>(bound.messages);
            let bytes = Arc::new(AtomicUsize::new(0));
            let sent = bytes.clone();
            let mut send = send.clone();
            let task = tokio::spawn(async move {
                while let Some(parts) = rx.recv().await {
                    let n = size(&parts);
                    for raw in parts {
                        if let Err(e) = send.send(raw).await {
                            tracing::warn!("a message to {what} was not sent: {e}");
                            return;
                        }
                    }
                    sent.fetch_sub(n, Ordering::Relaxed);
                }
            });
            Outbox { queue, bytes, task }
        });
        let n = size(&parts);
        if outbox.bytes.load(Ordering::Relaxed) + n > bound.bytes {
            self.close(identity);
            return Err(Refused::Full);
        }
        match outbox.queue.try_send(parts) {
            Ok(()) => {
                outbox.bytes.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.close(identity);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => Refused::Full,
                    mpsc::error::TrySendError::Closed(_) => Refused::Closed,
                })
            }
        }
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
