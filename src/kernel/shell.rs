//! The shell channel: requests are read into a queue by one task and handled in
//! order by another, which owns the [`Executor`].

use super::complete_at;
use super::execute::Executor;
use super::info::kernel_info;
use super::introspect;
use super::iopub::{Channel, Iopub};
use crate::protocol::messages::*;
use crate::protocol::{Header, Malformed, Message, Request, Signer};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc;
use zeromq::{RouterSendHalf, RouterSocket, SocketRecv, SocketSend, ZmqMessage};

/// Sends signed replies to the client that asked.
#[derive(Clone)]
pub struct Replier {
    socket: RouterSendHalf,
    signer: Arc<Signer>,
    session: String,
}

impl Replier {
    pub fn new(socket: RouterSendHalf, signer: Arc<Signer>, session: String) -> Self {
        Replier {
            socket,
            signer,
            session,
        }
    }

    pub async fn reply<C: Content>(&mut self, to: &Message, content: &C) {
        self.send(to, C::MSG_TYPE, content).await;
    }

    /// The error reply to a request whose content is not what its type needs: every
    /// request whose header parses gets an answer, never silence.
    pub async fn reply_malformed(&mut self, to: &Message, error: &crate::protocol::WireError) {
        let reply_type = to.header.msg_type.replace("_request", "_reply");
        let content = serde_json::json!({
            "status": "error",
            "ename": "BadRequest",
            "evalue": format!("{}: {error}", to.header.msg_type),
            "traceback": [],
        });
        tracing::warn!("malformed {}: {error}", to.header.msg_type);
        self.send(to, &reply_type, &content).await;
    }

    async fn send(&mut self, to: &Message, msg_type: &str, content: &impl serde::Serialize) {
        let header = Header::new(msg_type, &self.session);
        let frames = self
            .signer
            .encode(&to.identities, &header, Some(&to.header), content);
        match ZmqMessage::try_from(frames) {
            Ok(msg) => {
                if let Err(e) = self.socket.send(msg).await {
                    tracing::warn!("reply {msg_type} not sent: {e}");
                }
            }
            Err(e) => tracing::warn!("reply {msg_type} not framed: {e}"),
        }
    }
}

/// Reads a ROUTER socket, verifies each message and passes the good ones on. Bad
/// ones are logged and dropped; the loop never ends on a peer's error.
pub fn spawn_reader(
    mut socket: zeromq::RouterRecvHalf,
    signer: Arc<Signer>,
    what: &'static str,
) -> mpsc::UnboundedReceiver<Message> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match socket.recv().await {
                Ok(raw) => match signer.decode(raw.into_vec()) {
                    Ok(msg) => {
                        if tx.send(msg).is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!("dropped a {what} message: {e}"),
                },
                Err(e) => tracing::debug!("{what} recv: {e}"),
            }
        }
    });
    rx
}

struct Shell {
    replier: Replier,
    iopub: Iopub,
    executor: Executor,
    queue: mpsc::UnboundedReceiver<Message>,
    deferred: VecDeque<Message>,
    shutdown: mpsc::Sender<()>,
}

/// Starts the shell reader and the executor loop.
pub fn spawn(
    socket: RouterSocket,
    signer: Arc<Signer>,
    session: String,
    iopub: Iopub,
    executor: Executor,
    shutdown: mpsc::Sender<()>,
) {
    let (send, recv) = socket.split();
    let queue = spawn_reader(recv, signer.clone(), "shell");
    let mut shell = Shell {
        replier: Replier::new(send, signer, session),
        iopub,
        executor,
        queue,
        deferred: VecDeque::new(),
        shutdown,
    };
    tokio::spawn(async move {
        loop {
            let msg = match shell.deferred.pop_front() {
                Some(m) => m,
                // While idle, the executor may build ahead (tiered compilation); a
                // request that comes first stops that.
                None if shell.executor.has_idle_work() => tokio::select! {
                    m = shell.queue.recv() => match m {
                        Some(m) => m,
                        None => break,
                    },
                    () = shell.executor.idle_work() => continue,
                },
                None => match shell.queue.recv().await {
                    Some(m) => m,
                    None => break,
                },
            };
            shell.handle(msg).await;
        }
    });
}

impl Shell {
    async fn handle(&mut self, msg: Message) {
        self.iopub.busy(Channel::Shell, &msg.header);
        let mut aborted = Vec::new();
        match Request::read(&msg) {
            Ok(Request::KernelInfo) => self.replier.reply(&msg, &kernel_info()).await,
            Ok(Request::Execute(req)) => aborted = self.execute(&msg, req).await,
            Ok(Request::Complete(req)) => self.complete(&msg, req).await,
            Ok(Request::Inspect(req)) => self.inspect(&msg, req).await,
            Ok(Request::IsComplete(req)) => self.is_complete(&msg, req).await,
            Ok(Request::History(req)) => self.history(&msg, req).await,
            Ok(Request::CommInfo) => {
                let reply = CommInfoReply {
                    status: ReplyStatus::Ok,
                    comms: Map::new(),
                };
                self.replier.reply(&msg, &reply).await
            }
            Ok(Request::CommOpen {
                comm_id,
                target_name,
            }) => {
                // No comm targets exist yet: say so by closing the comm at once.
                tracing::info!("comm_open for unknown target {target_name:?}");
                self.iopub.publish(
                    Channel::Shell,
                    &CommClose {
                        comm_id,
                        data: Map::new(),
                    },
                );
            }
            Ok(Request::Shutdown { restart }) => {
                // Deprecated on shell, still honoured.
                self.executor.stop().await;
                let reply = ShutdownReply {
                    status: ReplyStatus::Ok,
                    restart,
                };
                self.replier.reply(&msg, &reply).await;
                self.iopub.idle(Channel::Shell);
                self.iopub.flush().await;
                let _ = self.shutdown.send(()).await;
                return;
            }
            Ok(Request::Interrupt | Request::Other(_)) => {
                tracing::info!("no handler on shell for {}", msg.header.msg_type)
            }
            Err(Malformed::Execute(e)) => self.execute_malformed(&msg, &e).await,
            Err(Malformed::Other(e)) => self.replier.reply_malformed(&msg, &e).await,
        }
        self.iopub.idle(Channel::Shell);
        for m in aborted {
            self.abort(&m).await;
        }
        // While the client shows the cell as done: snapshot what it changed.
        self.executor.save_snapshots(false).await;
    }

    /// Takes the execute requests already queued behind a failed cell (the client
    /// asked for `stop_on_error`); other requests keep their place in the queue.
    /// Done before the failed cell's reply goes out, so that only requests sent
    /// without waiting for it are aborted.
    fn take_queued_executes(&mut self) -> Vec<Message> {
        let mut taken = Vec::new();
        while let Ok(m) = self.queue.try_recv() {
            if m.header.msg_type == "execute_request" {
                taken.push(m);
            } else {
                self.deferred.push_back(m);
            }
        }
        taken
    }

    async fn abort(&mut self, m: &Message) {
        self.iopub.busy(Channel::Shell, &m.header);
        let reply = ExecuteReply {
            status: ReplyStatus::Aborted,
            execution_count: self.executor.count,
            payload: None,
            user_expressions: Some(Map::new()),
            error: None,
        };
        self.replier.reply(m, &reply).await;
        self.iopub.idle(Channel::Shell);
    }

    /// An `execute_request` whose content does not parse: an error reply with the
    /// execution count, as an execute reply has.
    async fn execute_malformed(&mut self, msg: &Message, e: &crate::protocol::WireError) {
        let reply = ExecuteReply {
            status: ReplyStatus::Error,
            execution_count: self.executor.count,
            payload: None,
            user_expressions: Some(Map::new()),
            error: Some(ErrorContent {
                ename: "BadRequest".into(),
                evalue: e.to_string(),
                traceback: vec![format!("BadRequest: {e}")],
            }),
        };
        self.replier.reply(msg, &reply).await;
    }

    /// Returns the queued requests to answer as aborted.
    async fn execute(&mut self, msg: &Message, req: ExecuteRequest) -> Vec<Message> {
        let reply = self
            .executor
            .execute(super::stdin::Origin::of(msg), &req)
            .await;
        // Outputs of the cell are on IOPub before its reply.
        self.iopub.flush().await;
        let aborted = if reply.status == ReplyStatus::Error && req.stop_on_error {
            self.take_queued_executes()
        } else {
            vec![]
        };
        self.replier.reply(msg, &reply).await;
        aborted
    }

    async fn complete(&mut self, msg: &Message, req: CompleteRequest) {
        self.executor.prepare().await;
        let items = self.executor.item_names();
        let (c, offers) = complete_at::complete(
            self.executor.prepared(),
            self.executor.std_docs(),
            &items,
            &req.code,
            req.cursor_pos,
        )
        .await;
        // JupyterLab's typed completions: what each match is.
        let types: Vec<Value> = c
            .matches
            .iter()
            .map(|m| {
                let offer = offers.iter().find(|o| o.text == *m);
                let kind = match offer {
                    Some(o) => o.kind,
                    None if m.starts_with('%') || m.starts_with(':') => "magic",
                    None => "",
                };
                let mut t =
                    serde_json::json!({"start": c.start, "end": c.end, "text": m, "type": kind});
                if let Some(o) = offer.filter(|o| !o.signature.is_empty()) {
                    t["signature"] = Value::String(o.signature.clone());
                }
                t
            })
            .collect();
        let mut metadata = Map::new();
        metadata.insert("_jupyter_types_experimental".into(), Value::Array(types));
        let reply = CompleteReply {
            status: ReplyStatus::Ok,
            matches: c.matches,
            cursor_start: c.start,
            cursor_end: c.end,
            metadata,
        };
        self.replier.reply(msg, &reply).await;
    }

    async fn inspect(&mut self, msg: &Message, req: InspectRequest) {
        self.executor.prepare().await;
        let word = introspect::word_at(&req.code, req.cursor_pos);
        let text = match (
            self.executor.var_type(word),
            self.executor.item_source(word),
        ) {
            (Some(ty), _) => {
                let tname = ty
                    .split('<')
                    .next()
                    .unwrap_or("")
                    .rsplit("::")
                    .next()
                    .unwrap_or("");
                let def = self
                    .executor
                    .item_source(tname)
                    .map(|(cell, src)| format!("\n\n{src}\n\n(defined in cell [{cell}])"))
                    .unwrap_or_default();
                Some(format!("{word}: {ty}  (session variable){def}"))
            }
            (None, Some((cell, src))) => Some(format!("{src}\n\n(defined in cell [{cell}])")),
            (None, None) => introspect::docs(word),
        };
        // The expression under the cursor: its type from rustc, a std item's docs.
        let text = match (text, self.executor.prepared()) {
            (Some(t), _) => Some(t),
            (None, Some(session)) => {
                let at = req
                    .cursor_pos
                    .map(|c| introspect::byte_offset(&req.code, c))
                    .unwrap_or(req.code.len());
                let end = req.code[at..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map(|i| at + i)
                    .unwrap_or(req.code.len());
                let docs = self.executor.std_docs();
                complete_at::inspect(session, docs, &req.code, end).await
            }
            (None, None) => None,
        };
        let mut data = Map::new();
        if let Some(t) = &text {
            data.insert("text/plain".into(), Value::String(t.clone()));
        }
        let reply = InspectReply {
            status: ReplyStatus::Ok,
            found: text.is_some(),
            data,
            metadata: Map::new(),
        };
        self.replier.reply(msg, &reply).await;
    }

    async fn is_complete(&mut self, msg: &Message, req: IsCompleteRequest) {
        let (status, indent) = introspect::is_complete(&req.code);
        self.replier
            .reply(msg, &IsCompleteReply { status, indent })
            .await;
    }

    async fn history(&mut self, msg: &Message, req: Option<HistoryRequest>) {
        let history = req
            .map(|r| self.executor.history.query(&r))
            .unwrap_or_default();
        let reply = HistoryReply {
            status: ReplyStatus::Ok,
            history,
        };
        self.replier.reply(msg, &reply).await;
    }
}
