//! The controller's outboxes: one queue and one sending task per peer (engine or
//! kernel), so that a peer that does not read holds up only its own messages.
//! The controller's loop never waits on a peer: it hands a message to the peer's
//! queue at once, and a peer whose queue is full is told to the loop, which
//! drops it. Behind each queue the socket keeps its own per-peer queue (1000
//! messages, 5 s for room: see vendor/zeromq), so a whole transfer at the largest
//! size (1024 parts) fits even while its engine is slow.

use bytes::Bytes;
use std::collections::HashMap;
use tokio::sync::mpsc;
use zeromq::{RouterSendHalf, SocketSend, ZmqMessage};

/// Messages queued for one peer in the controller, beyond the socket's own queue.
const OUTBOX: usize = 256;

/// Why a message did not go into a peer's queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its queue is full: the peer does not read what it is sent.
    Full,
    /// Its sending task ended (the socket gave up on the peer); the next message
    /// opens a new queue.
    Closed,
}

/// The outboxes of one ROUTER socket.
pub struct Outboxes {
    send: RouterSendHalf,
    boxes: HashMap<Bytes, mpsc::Sender<ZmqMessage>>,
    what: &'static str,
}

impl Outboxes {
    pub fn new(send: RouterSendHalf, what: &'static str) -> Outboxes {
        Outboxes {
            send,
            boxes: HashMap::new(),
            what,
        }
    }

    /// Queues the parts of one message for the peer behind `identity` (each part
    /// starts with that identity frame), in order.
    pub fn post(&mut self, identity: &Bytes, parts: Vec<ZmqMessage>) -> Result<(), Refused> {
        let what = self.what;
        let send = &self.send;
        let outbox = self.boxes.entry(identity.clone()).or_insert_with(|| {
            let (tx, mut rx) = mpsc::channel::<ZmqMessage>(OUTBOX);
            let mut send = send.clone();
            tokio::spawn(async move {
                while let Some(raw) = rx.recv().await {
                    if let Err(e) = send.send(raw).await {
                        tracing::warn!("a message to {what} was not sent: {e}");
                        return;
                    }
                }
            });
            tx
        });
        for raw in parts {
            if let Err(e) = outbox.try_send(raw) {
                self.boxes.remove(identity);
                return Err(match e {
                    mpsc::error::TrySendError::Full(_) => Refused::Full,
                    mpsc::error::TrySendError::Closed(_) => Refused::Closed,
                });
            }
        }
        Ok(())
    }

    /// Forgets a peer's queue: what is still in it is dropped with its task.
    pub fn close(&mut self, identity: &Bytes) {
        self.boxes.remove(identity);
    }
}
