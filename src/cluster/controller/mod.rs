//! `ferrocell controller`: the hub between kernels and engines.
//!
//! It binds two ROUTER sockets (engines, kernels), writes the connection file (0600)
//! and then routes: a kernel's frame for engine N goes to engine N, and what that
//! engine's worker answers goes back to the kernel that sent the work. It checks
//! that each registering engine runs the same ferrocell, rustc and target as the
//! cells will be compiled for, and watches heartbeats: an engine silent for
//! [`LOST_AFTER`] is reported lost to the kernels.

mod kernels;
mod leases;

use super::link::{Link, Received, Side};
use super::messages::{ClusterFile, EngineInfo, Msg, Versions};
use super::outbox::{Bound, Outboxes, Refused};
use bytes::Bytes;
use leases::{Claim, Leases, Outcome};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zeromq::{RouterRecvHalf, RouterSocket, Socket, SocketRecv};

/// How often each end of a link says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which the other end is taken for gone.
pub const LOST_AFTER: Duration = Duration::from_millis(2500);
/// Silence after which a kernel that holds no engines is taken for gone.
const KERNEL_GONE_AFTER: Duration = Duration::from_secs(10);
/// What an engine's queue in the controller holds at most: heartbeats and a run's
/// frames, which it reads as they come.
const ENGINE_QUEUE: Bound = Bound {
    messages: 64,
    bytes: 1 << 30,
};
/// What a kernel's queue holds at most: every engine's answers to one cell, which
/// arrive all at once (three or four messages each, from a thousand engines).
const KERNEL_QUEUE: Bound = Bound {
    messages: 16_384,
    bytes: 1 << 30,
};

/// How the controller was asked to run.
pub struct Options {
    /// Where to listen: loopback unless the user asks for more.
    pub ip: String,
    /// Where to write the connection file.
    pub file: PathBuf,
}

struct Engine {
    identity: Bytes,
    info: EngineInfo,
    last_seen: Instant,
    /// The kernel that sent it work last: where its worker's frames go.
    owner: Option<Bytes>,
}

struct Controller {
    link: Link,
    engines_socket: RouterRecvHalf,
    clients_socket: RouterRecvHalf,
    /// Where messages to engines and kernels wait, each peer's apart.
    to_engines: Outboxes,
    to_clients: Outboxes,
    engines: BTreeMap<u32, Engine>,
    /// Each engine's id by its socket identity: every message an engine sends is
    /// looked up here, a thousand a second with a thousand engines.
    by_identity: HashMap<Bytes, u32>,
    lost: Vec<EngineInfo>,
    clients: Vec<(Bytes, Instant)>,
    next_id: u32,
    /// What engines must match: the controller's own toolchain, or the first
    /// engine's when this host has no rustc.
    versions: Option<Versions>,
    /// Which kernel's run each engine serves, and the claims that wait.
    leases: Leases,
    /// Said at the top of the loop, not where they arise (sending may fail and
    /// forget a kernel, which grants claims, which sends): claims granted, and
    /// kernels gone whose engines are to be freed.
    granted: Vec<Claim>,
    gone: Vec<Bytes>,
    /// Kernels that do not read, sent nothing more, with when they last spoke.
    muted: Vec<(Bytes, Instant)>,
    /// Each kernel's number, by its connection: the namespace its variables have
    /// on the engines' workers.
    kernel_numbers: HashMap<Bytes, u32>,
    /// The last kernel number given (never given again: a gone kernel's number
    /// names a namespace the engines are told to drop).
    last_kernel: u32,
}

/// The versions of this ferrocell and the toolchain found here, if any.
pub async fn local_versions() -> Option<Versions> {
    let t = crate::compile::Toolchain::probe().await.ok()?;
    Some(Versions {
        ferrocell: env!("CARGO_PKG_VERSION").to_string(),
        rustc: t.version,
        target: t.host,
    })
}

fn is_loopback(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>()
        .map(|a| a.is_loopback())
        .unwrap_or(ip == "localhost")
}

/// Lets the controller hold as many connections as the system allows it: each
/// engine is one, and the usual soft limit (1024 files) is less than a thousand
/// engines and the rest.
fn raise_file_limit() {
    let mut limit = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct given.
    unsafe {
        if nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
        {
            // An unlimited hard limit still stops at the kernel's nr_open.
            limit.rlim_cur = limit.rlim_max.min(1 << 20);
            if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open files limit");
            }
        }
    }
}

/// Runs a controller until a kernel stops it (or it is killed).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    use anyhow::Context;
    raise_file_limit();
    let key = super::messages::new_key();
    let mut engines_socket = RouterSocket::with_options(crate::sockets::options());
    let mut clients_socket = RouterSocket::with_options(crate::sockets::options());
    let port = |e: zeromq::Endpoint| match e {
        zeromq::Endpoint::Tcp(_, p) => p,
        _ => 0,
    };
    let engine_port = port(
        engines_socket
            .bind(&format!("tcp://{}:0", opts.ip))
            .await
            .with_context(|| format!("binding the engine socket on {}", opts.ip))?,
    );
    let client_port = port(
        clients_socket
            .bind(&format!("tcp://{}:0", opts.ip))
            .await
            .with_context(|| format!("binding the kernel socket on {}", opts.ip))?,
    );
    let file = ClusterFile {
        ip: opts.ip.clone(),
        engine_port,
        client_port,
        key: key.clone(),
        signature_scheme: "hmac-sha256".into(),
        controller_host: crate::paths::hostname(),
        controller_pid: std::process::id(),
    };
    file.write(&opts.file)
        .with_context(|| format!("writing {}", opts.file.display()))?;
    println!(
        "ferrocell controller: engines connect to {}:{engine_port}, kernels to {}:{client_port}; connection file {}",
        opts.ip,
        opts.ip,
        opts.file.display()
    );
    if is_loopback(&opts.ip) {
        println!(
            "ferrocell controller: listening on loopback only; engines on other hosts cannot reach it (start it with --ip ADDRESS)"
        );
    }
    let (engines_send, engines_socket) = engines_socket.split();
    let (clients_send, clients_socket) = clients_socket.split();
    let mut c = Controller {
        link: Link::new(&key, Side::Router),
        engines_socket,
        clients_socket,
        to_engines: Outboxes::new(engines_send, "an engine", ENGINE_QUEUE),
        to_clients: Outboxes::new(clients_send, "a kernel", KERNEL_QUEUE),
        engines: BTreeMap::new(),
        by_identity: HashMap::new(),
        lost: Vec::new(),
        clients: Vec::new(),
        next_id: 0,
        versions: local_versions().await,
        leases: Leases::default(),
        granted: Vec::new(),
        gone: Vec::new(),
        muted: Vec::new(),
        kernel_numbers: HashMap::new(),
        last_kernel: 0,
    };
    let result = c.serve().await;
    let _ = std::fs::remove_file(&opts.file);
    result
}

impl Controller {
    async fn serve(&mut self) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_beat = Instant::now();
        loop {
            // Heartbeats go out on time even while messages keep coming.
            if last_beat.elapsed() >= HEARTBEAT {
                last_beat = Instant::now();
                self.beat().await;
            }
            self.settle().await;
            // Biased: what the sockets hold comes first, and the tick runs only once
            // both are read to the end. So silence is judged only when the
            // controller has caught up: an engine whose heartbeat waits in the
            // controller's own backlog is busy, not dead.
            tokio::select! {
                biased;
                raw = self.clients_socket.recv() => {
                    let Ok(raw) = raw else { continue };
                    match self.link.decode(raw) {
                        Ok(m) => {
                            if self.on_client(m).await {
                                return Ok(());
                            }
                        }
                        Err(e) => tracing::warn!("dropped a kernel message: {e}"),
                    }
                }
                raw = self.engines_socket.recv() => {
                    let Ok(raw) = raw else { continue };
                    match self.link.decode(raw) {
                        Ok(m) => self.on_engine(m).await,
                        Err(e) => tracing::warn!("dropped an engine message: {e}"),
                    }
                }
                _ = tick.tick() => self.check_heartbeats().await,
            }
        }
    }

    /// Queues a message for an engine; never waits on it. An engine whose queue is
    /// full does not read: it is lost, as one that fell silent is.
    async fn send_engine(&mut self, identity: &Bytes, msg: Msg, payload: Option<Bytes>) {
        let parts = self
            .link
            .encode_parts(std::slice::from_ref(identity), msg, payload);
        if self.to_engines.post(identity, parts) != Err(Refused::Full) {
            return;
        }
        let id = self.by_identity.get(identity).copied();
        match id {
            Some(id) => {
                let e = &self.engines[&id];
                let why = format!(
                    "(pid {} on {}) does not read what it is sent (its queue is full)",
                    e.info.pid, e.info.host
                );
                self.lose(id, why).await;
            }
            None => tracing::warn!("a peer of the engine socket does not read its messages"),
        }
    }

    /// Queues a message for a kernel; never waits on it. A kernel whose queue is
    /// full does not read: it is forgotten until it speaks again.
    async fn send_client(&mut self, identity: &Bytes, msg: Msg, payload: Option<Bytes>) {
        let parts = self
            .link
            .encode_parts(std::slice::from_ref(identity), msg, payload);
        if self.to_clients.post(identity, parts) == Err(Refused::Full) {
            tracing::warn!("a kernel does not read its messages: forgotten until it speaks");
            // No heartbeat goes to it either, so its cell fails as the controller
            // falls silent to it, rather than waiting for what was dropped; nor
            // what its engines answer, which would open its queue again.
            self.mute_client(identity);
        }
    }

    /// Sends to the engine's owner, or to every kernel when it has none.
    async fn send_owner(&mut self, engine: u32, msg: Msg, payload: Option<Bytes>) {
        let owner = self.engines.get(&engine).and_then(|e| e.owner.clone());
        self.send_to(owner, msg, payload).await;
    }

    /// Sends to `owner`, or to every kernel when there is none.
    async fn send_to(&mut self, owner: Option<Bytes>, msg: Msg, payload: Option<Bytes>) {
        let targets: Vec<Bytes> = match owner {
            Some(o) => vec![o],
            None => self.clients.iter().map(|(c, _)| c.clone()).collect(),
        };
        for t in targets {
            self.send_client(&t, msg.clone(), payload.clone()).await;
        }
    }

    async fn beat(&mut self) {
        let engines: Vec<Bytes> = self.engines.values().map(|e| e.identity.clone()).collect();
        for id in engines {
            self.send_engine(&id, Msg::Heartbeat, None).await;
        }
        // Every kernel ever heard from: one that is gone costs a dropped message, and
        // one that is quiet (a long cell) must still hear that the controller lives.
        let clients: Vec<Bytes> = self.clients.iter().map(|(c, _)| c.clone()).collect();
        for c in clients {
            self.send_client(&c, Msg::Heartbeat, None).await;
        }
    }

    async fn check_heartbeats(&mut self) {
        self.check_kernels();
        let silent: Vec<u32> = self
            .engines
            .iter()
            .filter(|(_, e)| e.last_seen.elapsed() > LOST_AFTER)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            let e = self.engines.get(&id).expect("listed");
            let why = format!(
                "(pid {} on {}) sent no heartbeat for {:.1} s",
                e.info.pid,
                e.info.host,
                e.last_seen.elapsed().as_secs_f64()
            );
            self.lose(id, why).await;
        }
    }

    /// Gives an engine up: its owner (or every kernel) is told why, and it is
    /// listed as lost.
    async fn lose(&mut self, id: u32, why: String) {
        tracing::warn!("engine {id} {why}");
        let Some(mut e) = self.engines.remove(&id) else {
            return;
        };
        let granted = self.leases.forget_engine(id);
        self.grant(granted);
        self.by_identity.remove(&e.identity);
        self.to_engines.close(&e.identity);
        let owner = e.owner.clone();
        e.info.state = format!("lost: {why}");
        self.lost.push(e.info);
        let lost = Msg::Lost {
            engine: id,
            why,
            engine_gone: true,
        };
        self.send_to(owner, lost, None).await;
    }

    async fn on_engine(&mut self, m: Received) {
        let Some(identity) = m.identities.first().cloned() else {
            return;
        };
        let known = self.by_identity.get(&identity).copied();
        if let Some(id) = known {
            let e = self.engines.get_mut(&id).expect("found");
            e.last_seen = Instant::now();
            e.info.seconds_since_heartbeat = 0.0;
        }
        match (m.msg, known) {
            (
                Msg::Register {
                    host,
                    pid,
                    versions,
                    mpi_rank,
                },
                None,
            ) => {
                let want = self
                    .versions
                    .get_or_insert_with(|| versions.clone())
                    .clone();
                let mismatch: Vec<String> = [
                    ("ferrocell", &want.ferrocell, &versions.ferrocell),
                    ("rustc", &want.rustc, &versions.rustc),
                    ("target", &want.target, &versions.target),
                ]
                .into_iter()
                .filter(|(_, w, h)| w != h)
                .map(|(what, w, h)| format!("{what} is {h}, the cluster's is {w}"))
                .collect();
                if !mismatch.is_empty() {
                    let why = format!(
                        "engine pid {pid} on {host} refused: {}",
                        mismatch.join("; ")
                    );
                    tracing::warn!("{why}");
                    self.send_engine(&identity, Msg::Refused { why }, None)
                        .await;
                    // Its queue goes once the answer is sent.
                    self.to_engines.release(&identity);
                    return;
                }
                let id = self.next_id;
                self.next_id += 1;
                self.by_identity.insert(identity.clone(), id);
                self.engines.insert(
                    id,
                    Engine {
                        identity: identity.clone(),
                        info: EngineInfo {
                            id,
                            host,
                            pid,
                            mpi_rank,
                            worker_pid: None,
                            state: "ready".into(),
                            seconds_since_heartbeat: 0.0,
                            frames: 0,
                            ferrocell: versions.ferrocell,
                            rustc: versions.rustc,
                            target: versions.target,
                        },
                        last_seen: Instant::now(),
                        owner: None,
                    },
                );
                self.send_engine(&identity, Msg::Registered { engine: id }, None)
                    .await;
            }
            (Msg::Heartbeat, _) => {}
            (Msg::WorkerStarted { pid }, Some(id)) => {
                if let Some(e) = self.engines.get_mut(&id) {
                    e.info.worker_pid = Some(pid);
                    e.info.state = "ready".into();
                }
            }
            (Msg::FromWorker { tag }, Some(id)) => {
                if let Some(e) = self.engines.get_mut(&id) {
                    use crate::exec::frames::tag as t;
                    if [t::DONE, t::PANIC, t::CELL_ERROR, t::LOAD_ERROR].contains(&tag) {
                        e.info.state = "ready".into();
                    }
                }
                self.send_owner(id, Msg::Frame { engine: id, tag }, Some(m.payload))
                    .await;
            }
            (Msg::WorkerExited { how }, Some(id)) => {
                let why = match self.engines.get_mut(&id) {
                    Some(e) => {
                        e.info.worker_pid = None;
                        format!("lost its worker on {}: {how}", e.info.host)
                    }
                    None => how,
                };
                let lost = Msg::Lost {
                    engine: id,
                    why,
                    engine_gone: false,
                };
                self.send_owner(id, lost, None).await;
            }
            (other, known) => {
                tracing::debug!("ignored {other:?} from engine {known:?}");
            }
        }
    }

    /// Handles a kernel's message; true when the cluster is to stop.
    async fn on_client(&mut self, m: Received) -> bool {
        let Some(identity) = m.identities.first().cloned() else {
            return false;
        };
        // A kernel that speaks is heard again (and sent to again, if it was muted).
        self.muted.retain(|(c, _)| *c != identity);
        match self.clients.iter_mut().find(|(c, _)| *c == identity) {
            Some(c) => c.1 = Instant::now(),
            None => self.clients.push((identity.clone(), Instant::now())),
        }
        match m.msg {
            Msg::Hello | Msg::Status | Msg::Heartbeat => {
                if m.msg == Msg::Heartbeat {
                    return false;
                }
                let engines = self
                    .engines
                    .values()
                    .map(|e| EngineInfo {
                        seconds_since_heartbeat: e.last_seen.elapsed().as_secs_f64(),
                        ..e.info.clone()
                    })
                    .collect();
                let reply = Msg::StatusReply {
                    engines,
                    lost: self.lost.clone(),
                    versions: self.versions.clone(),
                };
                self.send_client(&identity, reply, None).await;
            }
            // Namespaces are the controller's to choose, never a kernel's.
            Msg::Send { tag, .. }
                if [
                    crate::exec::frames::tag::NAMESPACE,
                    crate::exec::frames::tag::DROP_NAMESPACE,
                ]
                .contains(&tag) =>
            {
                tracing::warn!("a kernel sent a namespace frame: dropped");
            }
            Msg::Send { engine, .. } | Msg::Kill { engine }
                if self
                    .leases
                    .holder(engine)
                    .is_some_and(|c| c.client != identity) =>
            {
                let who = self.leases.holder(engine).map(|c| c.who.clone());
                let why = format!(
                    "engine {engine} serves a run of {} (a kernel claims engines before it sends them work)",
                    who.unwrap_or_default()
                );
                let lost = Msg::Lost {
                    engine,
                    why,
                    engine_gone: false,
                };
                self.send_client(&identity, lost, None).await;
            }
            Msg::Claim { run, engines, who } => {
                let claim = Claim {
                    client: identity.clone(),
                    run,
                    engines,
                    who,
                };
                let (outcome, granted) = self.leases.claim(claim);
                let reply = match outcome {
                    Outcome::Granted => Msg::Granted { run },
                    Outcome::Queued { behind } => Msg::Queued { run, behind },
                };
                self.send_client(&identity, reply, None).await;
                self.grant(granted);
            }
            Msg::Release { .. } => {
                let granted = self.leases.release(&identity);
                self.grant(granted);
            }
            Msg::Send { engine, tag } => match self.engines.get_mut(&engine) {
                Some(e) => {
                    e.owner = Some(identity.clone());
                    e.info.frames += 1;
                    if tag == crate::exec::frames::tag::RUN {
                        e.info.state = "busy".into();
                    }
                    let target = e.identity.clone();
                    let last = &mut self.last_kernel;
                    let kernel =
                        *self
                            .kernel_numbers
                            .entry(identity.clone())
                            .or_insert_with(|| {
                                *last += 1;
                                *last
                            });
                    self.send_engine(&target, Msg::ToWorker { tag, kernel }, Some(m.payload))
                        .await;
                }
                None => {
                    let why =
                        format!("engine {engine} is not in the cluster (lost, or never joined)");
                    let lost = Msg::Lost {
                        engine,
                        why,
                        engine_gone: true,
                    };
                    self.send_client(&identity, lost, None).await;
                }
            },
            Msg::ShipTo { engine, name } => {
                if let Some(target) = self.engines.get(&engine).map(|e| e.identity.clone()) {
                    self.send_engine(&target, Msg::Ship { name }, Some(m.payload))
                        .await;
                }
            }
            Msg::Kill { engine } => {
                if let Some(target) = self.engines.get(&engine).map(|e| e.identity.clone()) {
                    self.send_engine(&target, Msg::KillWorker, None).await;
                }
            }
            Msg::StopCluster => {
                let engines: Vec<Bytes> =
                    self.engines.values().map(|e| e.identity.clone()).collect();
                for id in engines {
                    self.send_engine(&id, Msg::Shutdown, None).await;
                }
                self.send_client(&identity, Msg::Stopped, None).await;
                // What is queued goes out before the process does.
                self.to_engines.drain(Duration::from_secs(2)).await;
                self.to_clients.drain(Duration::from_secs(2)).await;
                // Let the sockets flush before the process goes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return true;
            }
            other => tracing::debug!("ignored {other:?} from a kernel"),
        }
        false
    }
}
