//! The kernel's side of a cluster: a connection to its controller.

use super::launcher::Launched;
use super::link::{Link, Side};
use super::messages::{ClusterFile, EngineInfo, Msg, Versions};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use zeromq::{DealerSendHalf, DealerSocket, Socket, SocketRecv, SocketSend};

/// How long a message may wait to be taken by the controller's socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the controller may take to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the kernel's connection to a controller failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection file could not be read, or is not one.
    #[error("{0:#}")]
    ConnectionFile(anyhow::Error),
    #[error("cannot connect to the controller at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: zeromq::ZmqError,
    },
    /// A message too large for the cluster's links.
    #[error("{len} bytes to send to the cluster: over its transfer limit (16 times FERROCELL_MAX_MESSAGE_MIB)")]
    OverLimit { len: usize },
    /// The controller's socket refused a message.
    #[error("the controller (pid {pid} on {host}) cannot be reached ({source}): it may have died")]
    Unreachable {
        pid: u32,
        host: String,
        #[source]
        source: zeromq::ZmqError,
    },
    /// A message waited longer than the send timeout to be taken.
    #[error("the controller (pid {pid} on {host}) takes no messages: it may have died")]
    TakesNoMessages { pid: u32, host: String },
    /// The controller did not answer a request in time.
    #[error("the controller at {endpoint} did not answer within {secs} s (pid {pid} on {host}): it may have died")]
    NoAnswer {
        endpoint: String,
        secs: u64,
        pid: u32,
        host: String,
    },
    #[error("the connection to the controller closed")]
    Closed,
    /// A library to ship to an engine could not be read.
    #[error("{}: {source}", .path.display())]
    Library {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the controller did not confirm the stop")]
    StopNotConfirmed,
}

/// What the controller said of its engines.
#[derive(Debug, Clone)]
pub struct Status {
    pub engines: Vec<EngineInfo>,
    pub lost: Vec<EngineInfo>,
    pub versions: Option<Versions>,
}

/// The sending half of a connection, with the link that signs for it.
struct Sender {
    link: Arc<Link>,
    send: DealerSendHalf,
    pid: u32,
    host: String,
}

impl Sender {
    /// Sends to the controller. A DEALER waits for a peer when there is none, so a
    /// dead controller would hang the kernel: the wait is bounded.
    async fn post(&mut self, msg: Msg, payload: Option<Bytes>) -> Result<(), ClientError> {
        let len = payload.as_ref().map_or(0, |p| p.len());
        if !super::link::fits(len) {
            return Err(ClientError::OverLimit { len });
        }
        for raw in self.link.encode_parts(&[], msg, payload) {
            match tokio::time::timeout(SEND_TIMEOUT, self.send.send(raw)).await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    return Err(ClientError::Unreachable {
                        pid: self.pid,
                        host: self.host.clone(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(ClientError::TakesNoMessages {
                        pid: self.pid,
                        host: self.host.clone(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// A kernel's connection to a controller (and the processes, if it started them).
pub struct Client {
    pub path: PathBuf,
    pub file: ClusterFile,
    /// Signs and sends: one lock, so that messages go out in the order they
    /// were signed (the controller drops a sequence number that goes back).
    sender: Arc<tokio::sync::Mutex<Sender>>,
    rx: mpsc::UnboundedReceiver<(Msg, Bytes)>,
    /// Beats to the controller every second while the client lives, so that the
    /// controller frees the engines of a kernel that died.
    beating: tokio::task::JoinHandle<()>,
    /// The number of this connection's next run (its claims).
    next_run: u64,
    last_heard: Arc<Mutex<Instant>>,
    pub launched: Option<Launched>,
    /// The libraries each engine has been sent, by file name.
    shipped: std::collections::HashMap<u32, std::collections::HashSet<String>>,
}

impl Client {
    /// Connects to the controller of `path` and checks that it answers.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let file = ClusterFile::read(path).map_err(ClientError::ConnectionFile)?;
        let mut socket = DealerSocket::with_options(crate::sockets::options());
        let endpoint = file.endpoint(file.client_port);
        socket
            .connect(&endpoint)
            .await
            .map_err(|source| ClientError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        let (send, mut recv) = socket.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let last_heard = Arc::new(Mutex::new(Instant::now()));
        let heard = last_heard.clone();
        // One link for both directions: replies teach it the controller's session,
        // which every later message is addressed to.
        let link = Arc::new(Link::new(&file.key, Side::Dealer));
        let receiving = link.clone();
        tokio::spawn(async move {
            while let Ok(raw) = recv.recv().await {
                match receiving.decode(raw) {
                    Ok(m) => {
                        *heard.lock().expect("heard") = Instant::now();
                        if m.msg == Msg::Heartbeat {
                            continue;
                        }
                        if tx.send((m.msg, m.payload)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("dropped a message that was not the controller's: {e}")
                    }
                }
            }
        });
        let sender = Arc::new(tokio::sync::Mutex::new(Sender {
            link,
            send,
            pid: file.controller_pid,
            host: file.controller_host.clone(),
        }));
        let beats = Arc::downgrade(&sender);
        let beating = tokio::spawn(async move {
            let mut tick = tokio::time::interval(super::controller::HEARTBEAT);
            // The first beat after a second: the link is taught the controller's
            // session by the first answer, and a beat before it would go unaddressed.
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(sender) = beats.upgrade() else {
                    return;
                };
                let _ = sender.lock().await.post(Msg::Heartbeat, None).await;
            }
        });
        let mut c = Client {
            path: path.to_path_buf(),
            file,
            sender,
            rx,
            beating,
            next_run: 0,
            last_heard,
            launched: None,
            shipped: Default::default(),
        };
        c.status().await?;
        Ok(c)
    }

    async fn post(&mut self, msg: Msg, payload: Option<Bytes>) -> Result<(), ClientError> {
        self.sender.lock().await.post(msg, payload).await
    }

    /// Claims `engines` for a run (see `controller::leases`): returns once the
    /// controller grants them; `queued` is told which kernel's run holds them while
    /// the claim waits. Fails when the controller falls silent. The caller gives the
    /// engines back with [`Client::release`], or by its next claim.
    pub async fn claim(
        &mut self,
        engines: &[u32],
        who: String,
        mut queued: impl FnMut(&str),
    ) -> Result<u64, ClientError> {
        self.next_run += 1;
        let run = self.next_run;
        self.post(
            Msg::Claim {
                run,
                engines: engines.to_vec(),
                who: who.clone(),
            },
            None,
        )
        .await?;
        let mut watch = tokio::time::interval(Duration::from_millis(500));
        // Asked again now and then: a controller that took this kernel for gone
        // (silent a while) has forgotten the claim; one that has it keeps its place.
        let mut ask = tokio::time::interval(Duration::from_secs(5));
        ask.tick().await;
        loop {
            tokio::select! {
                m = self.rx.recv() => match m {
                    Some((Msg::Granted { run: r }, _)) if r == run => return Ok(run),
                    Some((Msg::Queued { run: r, behind }, _)) if r == run => queued(&behind),
                    // What an earlier run left.
                    Some(_) => {}
                    None => return Err(ClientError::Closed),
                },
                _ = ask.tick() => {
                    let again = Msg::Claim { run, engines: engines.to_vec(), who: who.clone() };
                    self.post(again, None).await?;
                }
                _ = watch.tick() => {
                    if let Some(silent) = self.fallen_silent() {
                        return Err(ClientError::NoAnswer {
                            endpoint: self.file.endpoint(self.file.client_port),
                            secs: silent.as_secs(),
                            pid: self.file.controller_pid,
                            host: self.file.controller_host.clone(),
                        });
                    }
                }
            }
        }
    }

    /// The number of the last run claimed (a claim interrupted while it waits is
    /// withdrawn by it).
    pub fn last_run(&self) -> u64 {
        self.next_run
    }

    /// Gives back the engines of run `run` (or withdraws its claim).
    pub async fn release(&mut self, run: u64) -> Result<(), ClientError> {
        self.post(Msg::Release { run }, None).await
    }

    /// Asks the controller for its engines. Frames left over from an earlier cell
    /// are dropped on the way.
    pub async fn status(&mut self) -> Result<Status, ClientError> {
        self.post(Msg::Status, None).await?;
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((
                    Msg::StatusReply {
                        engines,
                        lost,
                        versions,
                    },
                    _,
                ))) => {
                    return Ok(Status {
                        engines,
                        lost,
                        versions,
                    })
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Err(ClientError::Closed),
                Err(_) => {
                    return Err(ClientError::NoAnswer {
                        endpoint: self.file.endpoint(self.file.client_port),
                        secs: ANSWER_TIMEOUT.as_secs(),
                        pid: self.file.controller_pid,
                        host: self.file.controller_host.clone(),
                    })
                }
            }
        }
    }

    /// Sends a runner frame to an engine's worker.
    pub async fn send_frame(
        &mut self,
        engine: u32,
        tag: u8,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        self.post(Msg::Send { engine, tag }, Some(Bytes::from(payload)))
            .await
    }

    /// Sends an engine the libraries it lacks. An engine loads cells only from what
    /// it was sent, so it needs no file system in common with the kernel.
    pub async fn ship(&mut self, engine: u32, libs: &[PathBuf]) -> Result<(), ClientError> {
        for lib in libs {
            let Some(name) = lib.file_name().and_then(|n| n.to_str()).map(String::from) else {
                continue;
            };
            if self.shipped.get(&engine).is_some_and(|s| s.contains(&name)) {
                continue;
            }
            let bytes = std::fs::read(lib).map_err(|source| ClientError::Library {
                path: lib.clone(),
                source,
            })?;
            self.post(
                Msg::ShipTo {
                    engine,
                    name: name.clone(),
                },
                Some(Bytes::from(bytes)),
            )
            .await?;
            self.shipped.entry(engine).or_default().insert(name);
        }
        Ok(())
    }

    /// Has an engine kill its worker (it did not stop after an interrupt).
    pub async fn kill_worker(&mut self, engine: u32) -> Result<(), ClientError> {
        self.post(Msg::Kill { engine }, None).await
    }

    /// The next message from the controller.
    pub async fn recv(&mut self) -> Option<(Msg, Bytes)> {
        self.rx.recv().await
    }

    /// How long the controller has been silent (it beats every second).
    pub fn silent_for(&self) -> Duration {
        self.last_heard.lock().expect("heard").elapsed()
    }

    /// How long the controller has been silent, once that is longer than its
    /// heartbeats allow (with a margin): it is then taken for dead.
    pub fn fallen_silent(&self) -> Option<Duration> {
        let silent = self.silent_for();
        (silent > super::controller::LOST_AFTER + Duration::from_millis(500)).then_some(silent)
    }

    /// Stops the cluster: engines, then the controller; waits for the processes this
    /// kernel started, and kills what is left.
    pub async fn stop(&mut self) -> Result<(), ClientError> {
        // The engines are about to end on purpose: none is to be started again.
        if let Some(l) = &mut self.launched {
            l.stop_supervising();
        }
        let asked = self.post(Msg::StopCluster, None).await;
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        let stopped = loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((Msg::Stopped, _))) => break true,
                Ok(Some(_)) => continue,
                _ => break false,
            }
        };
        if let Some(l) = &mut self.launched {
            l.wait_or_kill(Duration::from_secs(3)).await;
        }
        match (asked, stopped) {
            (Ok(()), true) => Ok(()),
            _ if self.launched.is_some() => Ok(()),
            (Err(e), _) => Err(e),
            (Ok(()), false) => Err(ClientError::StopNotConfirmed),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.beating.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::ClientError;

    #[test]
    fn messages_name_the_controller() {
        let e = ClientError::NoAnswer {
            endpoint: "tcp://127.0.0.1:5555".into(),
            secs: 5,
            pid: 42,
            host: "here".into(),
        };
        assert_eq!(
            e.to_string(),
            "the controller at tcp://127.0.0.1:5555 did not answer within 5 s (pid 42 on here): it may have died"
        );
        let e = ClientError::TakesNoMessages {
            pid: 42,
            host: "here".into(),
        };
        assert_eq!(
            e.to_string(),
            "the controller (pid 42 on here) takes no messages: it may have died"
        );
    }
}
