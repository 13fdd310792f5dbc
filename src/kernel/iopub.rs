//! The IOPub task: the one owner of the XPUB socket.
//!
//! Everything else sends it [`IopubEvent`]s over one queue, so the order in which
//! they were sent is the order clients see. It keeps the current parent header of
//! the shell and of the control channel (set by busy, cleared by idle), so producers
//! of output never pass parents around; it batches stream text, flushing before any
//! other message; and it answers every subscription with `iopub_welcome`.

use crate::protocol::messages::{Content, ExecutionState, IopubWelcome, Status, Stream};
use crate::protocol::{Header, Signer};
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use zeromq::{SocketRecv, SocketSend, XPubSocket, ZmqMessage};

/// How long stream text may wait to be joined with more before it is sent.
const STREAM_BATCH: Duration = Duration::from_millis(8);
/// Stream text beyond this size is sent at once.
const STREAM_MAX: usize = 64 * 1024;

/// Which request channel an IOPub message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Shell,
    Control,
}

/// `stdout` or `stderr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamName {
    Stdout,
    Stderr,
}

impl StreamName {
    fn as_str(self) -> &'static str {
        match self {
            StreamName::Stdout => "stdout",
            StreamName::Stderr => "stderr",
        }
    }
}

/// What the IOPub task is asked to do.
#[derive(Debug)]
pub enum IopubEvent {
    /// Publish `busy` and make `parent` the channel's current parent.
    Busy { channel: Channel, parent: Header },
    /// Publish `idle` for the channel's current parent, then forget it.
    Idle { channel: Channel },
    /// Stream text from the running shell request.
    Stream { name: StreamName, text: String },
    /// Any other message, child of the channel's current parent.
    Publish {
        channel: Channel,
        msg_type: &'static str,
        content: serde_json::Value,
    },
    /// A message for an earlier request: a background run updating the display
    /// under the cell that started it, after that cell went idle.
    PublishTo {
        parent: Header,
        msg_type: &'static str,
        content: serde_json::Value,
    },
    /// Answered once everything sent before it is on the socket.
    Flush(oneshot::Sender<()>),
}

/// How many bytes of output may wait for the IOPub task before the producer of
/// cell output waits ([`Iopub::room`]): a cell that prints faster than the socket
/// takes it is slowed down, not buffered without end.
const QUEUE_LIMIT: usize = 16 << 20;

/// A cheap handle for sending to the IOPub task.
#[derive(Clone)]
pub struct Iopub {
    tx: mpsc::UnboundedSender<(IopubEvent, usize)>,
    /// Bytes of output sent to the task and not yet handled.
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

impl Iopub {
    fn send(&self, ev: IopubEvent) {
        let weight = match &ev {
            IopubEvent::Stream { text, .. } => text.len(),
            IopubEvent::Publish { content, .. } | IopubEvent::PublishTo { content, .. } => {
                weight(content)
            }
            _ => 0,
        };
        self.queued.fetch_add(weight, Ordering::Relaxed);
        // The task only ends when the kernel does.
        let _ = self.tx.send((ev, weight));
    }

    /// Waits while more than [`QUEUE_LIMIT`] bytes of output wait for the task. The
    /// runner's output is taken only after this, so it pushes back on the runner.
    pub async fn room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.queued.load(Ordering::Relaxed) < QUEUE_LIMIT || self.tx.is_closed() {
                return;
            }
            drained.await;
        }
    }

    pub fn busy(&self, channel: Channel, parent: &Header) {
        self.send(IopubEvent::Busy {
            channel,
            parent: parent.clone(),
        });
    }

    pub fn idle(&self, channel: Channel) {
        self.send(IopubEvent::Idle { channel });
    }

    pub fn stream(&self, name: StreamName, text: String) {
        if !text.is_empty() {
            self.send(IopubEvent::Stream { name, text });
        }
    }

    pub fn publish<C: Content>(&self, channel: Channel, content: &C) {
        self.send(IopubEvent::Publish {
            channel,
            msg_type: C::MSG_TYPE,
            content: serde_json::to_value(content).expect("content serializes"),
        });
    }

    /// Publishes a message as the child of `parent`, whichever request is current.
    pub fn publish_to<C: Content>(&self, parent: &Header, content: &C) {
        self.send(IopubEvent::PublishTo {
            parent: parent.clone(),
            msg_type: C::MSG_TYPE,
            content: serde_json::to_value(content).expect("content serializes"),
        });
    }

    /// Waits until everything published so far is on the socket.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(IopubEvent::Flush(tx));
        let _ = rx.await;
    }
}

struct Publisher {
    socket: XPubSocket,
    signer: Arc<Signer>,
    session: String,
    shell: Option<Header>,
    control: Option<Header>,
    pending: Option<(StreamName, String)>,
    deadline: Option<Instant>,
}

impl Publisher {
    async fn send_raw(
        &mut self,
        msg_type: &str,
        parent: Option<&Header>,
        content: &impl serde::Serialize,
        topic: Option<Bytes>,
    ) {
        let header = Header::new(msg_type, &self.session);
        let topic =
            topic.unwrap_or_else(|| Bytes::from(format!("kernel.{}.{}", self.session, msg_type)));
        let identities: Vec<Bytes> = if topic.is_empty() {
            vec![]
        } else {
            vec![topic]
        };
        let frames = self.signer.encode(&identities, &header, parent, content);
        let Ok(msg) = ZmqMessage::try_from(frames) else {
            return;
        };
        if let Err(e) = self.socket.send(msg).await {
            tracing::warn!("iopub send failed: {e}");
        }
    }

    fn parent(&self, channel: Channel) -> Option<Header> {
        match channel {
            Channel::Shell => self.shell.clone(),
            Channel::Control => self.control.clone(),
        }
    }

    async fn flush_stream(&mut self) {
        self.deadline = None;
        if let Some((name, text)) = self.pending.take() {
            let parent = self.shell.clone();
            let content = Stream {
                name: name.as_str(),
                text,
            };
            self.send_raw(Stream::MSG_TYPE, parent.as_ref(), &content, None)
                .await;
        }
    }

    async fn handle(&mut self, ev: IopubEvent) {
        if let IopubEvent::Stream { name, text } = ev {
            match &mut self.pending {
                Some((n, buf)) if *n == name => buf.push_str(&text),
                _ => {
                    self.flush_stream().await;
                    self.pending = Some((name, text));
                }
            }
            if self
                .pending
                .as_ref()
                .is_some_and(|(_, b)| b.len() >= STREAM_MAX)
            {
                self.flush_stream().await;
            } else if self.deadline.is_none() {
                self.deadline = Some(Instant::now() + STREAM_BATCH);
            }
            return;
        }
        self.flush_stream().await;
        match ev {
            IopubEvent::Busy { channel, parent } => {
                let status = Status {
                    execution_state: ExecutionState::Busy,
                };
                self.send_raw(Status::MSG_TYPE, Some(&parent), &status, None)
                    .await;
                match channel {
                    Channel::Shell => self.shell = Some(parent),
                    Channel::Control => self.control = Some(parent),
                }
            }
            IopubEvent::Idle { channel } => {
                let parent = match channel {
                    Channel::Shell => self.shell.take(),
                    Channel::Control => self.control.take(),
                };
                let status = Status {
                    execution_state: ExecutionState::Idle,
                };
                self.send_raw(Status::MSG_TYPE, parent.as_ref(), &status, None)
                    .await;
            }
            IopubEvent::Publish {
                channel,
                msg_type,
                content,
            } => {
                let parent = self.parent(channel);
                self.send_raw(msg_type, parent.as_ref(), &content, None)
                    .await;
            }
            IopubEvent::PublishTo {
                parent,
                msg_type,
                content,
            } => {
                self.send_raw(msg_type, Some(&parent), &content, None).await;
            }
            IopubEvent::Flush(done) => {
                let _ = done.send(());
            }
            IopubEvent::Stream { .. } => unreachable!("handled above"),
        }
    }

    async fn welcome(&mut self, msg: ZmqMessage) {
        let Some(frame) = msg.get(0) else { return };
        // Subscriptions are `\x01topic`; unsubscriptions `\x00topic`.
        if frame.first() != Some(&1) {
            return;
        }
        let topic = frame.slice(1..);
        let content = IopubWelcome {
            subscription: String::from_utf8_lossy(&topic).into_owned(),
        };
        self.send_raw(IopubWelcome::MSG_TYPE, None, &content, Some(topic))
            .await;
    }
}

/// Starts the IOPub task on a bound XPUB socket; publishes `starting`.
pub fn spawn(socket: XPubSocket, signer: Arc<Signer>, session: String) -> Iopub {
    let (tx, mut rx) = mpsc::unbounded_channel::<(IopubEvent, usize)>();
    let queued = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(Notify::new());
    let handle = Iopub {
        tx,
        queued: queued.clone(),
        drained: drained.clone(),
    };
    let mut p = Publisher {
        socket,
        signer,
        session,
        shell: None,
        control: None,
        pending: None,
        deadline: None,
    };
    tokio::spawn(async move {
        let starting = Status {
            execution_state: ExecutionState::Starting,
        };
        p.send_raw(Status::MSG_TYPE, None, &starting, None).await;
        loop {
            let deadline = p.deadline;
            // Not biased: a flood of subscriptions (anyone can send them) must not
            // starve the output queue, nor output the subscriptions.
            tokio::select! {
                sub = p.socket.recv() => match sub {
                    Ok(msg) => p.welcome(msg).await,
                    Err(e) => tracing::debug!("iopub subscription read: {e}"),
                },
                ev = rx.recv() => match ev {
                    Some((ev, weight)) => {
                        p.handle(ev).await;
                        queued.fetch_sub(weight, Ordering::Relaxed);
                        drained.notify_waiters();
                    }
                    None => break,
                },
                _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                    p.flush_stream().await;
                }
            }
        }
        p.flush_stream().await;
    });
    handle
}

/// An IOPub without a socket: the events come out of the returned queue, in
/// order, as the task would publish them (flushes are answered at once). For a
/// frontend inside the process, such as the executor's Rust tests.
pub fn detached() -> (Iopub, mpsc::UnboundedReceiver<IopubEvent>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(IopubEvent, usize)>();
    let (out, events) = mpsc::unbounded_channel();
    let handle = Iopub {
        tx,
        queued: Arc::new(AtomicUsize::new(0)),
        drained: Arc::new(Notify::new()),
    };
    let (queued, drained) = (handle.queued.clone(), handle.drained.clone());
    tokio::spawn(async move {
        while let Some((ev, weight)) = rx.recv().await {
            queued.fetch_sub(weight, Ordering::Relaxed);
            drained.notify_waiters();
            match ev {
                IopubEvent::Flush(done) => {
                    let _ = done.send(());
                }
                ev => {
                    if out.send(ev).is_err() {
                        break;
                    }
                }
            }
        }
    });
    (handle, events)
}

/// About how many bytes a message's content is: the length of its strings, and a
/// little for everything else.
fn weight(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(a) => a.iter().map(weight).sum::<usize>() + 2,
        serde_json::Value::Object(o) => {
            o.iter().map(|(k, v)| k.len() + weight(v)).sum::<usize>() + 2
        }
        _ => 8,
    }
}
