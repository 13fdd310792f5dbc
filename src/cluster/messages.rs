//! What controller, engines and kernels say to each other, and how it is signed.
//!
//! Every message is a Jupyter-style multipart message signed with the cluster's
//! HMAC key (see [`crate::protocol::wire`]): the signature is checked, and a replay
//! refused, before anything else is looked at. A message may carry one binary
//! payload (a frame of the runner channel: a cell library to run, items, values);
//! its SHA-256 is part of the signed content, so the payload is covered too.
//! Signing, addressing and splitting them is the [`super::link`]'s.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The connection file a controller writes: where it listens, and the key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterFile {
    pub ip: String,
    pub engine_port: u16,
    pub client_port: u16,
    pub key: String,
    pub signature_scheme: String,
    pub controller_host: String,
    pub controller_pid: u32,
}

impl ClusterFile {
    /// Writes the file readable by its owner only (it holds the key).
    /// Written to a fresh temporary file (0600, created anew, never through a link)
    /// and renamed into place.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut f = tempfile::Builder::new()
            .prefix(".ferrocell-cluster-")
            .tempfile_in(dir)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("serializes"))?;
        f.as_file().sync_all()?;
        f.persist(path).map(|_| ()).map_err(|e| e.error)
    }

    pub fn read(path: &Path) -> anyhow::Result<ClusterFile> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the cluster file {}", path.display()))?;
        ClusterFile::parse(&text, &path.display().to_string())
    }

    /// Reads a connection file's contents; `origin` names where they came from.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<ClusterFile> {
        use anyhow::Context;
        let file: ClusterFile = serde_json::from_str(text)
            .with_context(|| format!("{origin} is not a ferrocell cluster file"))?;
        // Without a key, anyone who can reach the ports could run code on engines.
        anyhow::ensure!(
            !file.key.is_empty(),
            "{origin}: the cluster key is empty; refusing to run unsigned"
        );
        anyhow::ensure!(
            file.signature_scheme == "hmac-sha256",
            "{origin}: unsupported signature scheme {}",
            file.signature_scheme
        );
        Ok(file)
    }

    pub fn endpoint(&self, port: u16) -> String {
        format!("tcp://{}:{port}", self.ip)
    }
}

/// What an engine is, as the controller knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineInfo {
    pub id: u32,
    pub host: String,
    pub pid: u32,
    /// The engine's MPI rank, when `mpirun` started it: cells see the same order.
    #[serde(default)]
    pub mpi_rank: Option<u32>,
    /// The process that runs cells for the engine (a runner in worker mode); it is
    /// replaced when it dies.
    pub worker_pid: Option<u32>,
    /// "ready", "busy" or "lost: why".
    pub state: String,
    pub seconds_since_heartbeat: f64,
    /// Frames run for kernels so far (a measure of load).
    pub frames: u64,
    pub ferrocell: String,
    pub rustc: String,
    pub target: String,
}

/// Versions that must agree between a kernel's cells and an engine's runner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Versions {
    pub ferrocell: String,
    pub rustc: String,
    pub target: String,
}

/// One message of the cluster protocol. `kind` names it on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Msg {
    // Engine → controller.
    Register {
        host: String,
        pid: u32,
        versions: Versions,
        /// The engine's rank when an MPI launcher started it.
        #[serde(default)]
        mpi_rank: Option<u32>,
    },
    /// Sent every second by both ends of a link; silence means the other is gone.
    Heartbeat,
    /// A frame from the engine's worker (payload: the frame's bytes).
    FromWorker {
        tag: u8,
    },
    WorkerStarted {
        pid: u32,
    },
    WorkerExited {
        how: String,
    },

    // Controller → engine.
    Registered {
        engine: u32,
    },
    Refused {
        why: String,
    },
    /// A frame for the engine's worker (payload: the frame's bytes), from the
    /// controller's kernel number `kernel`: whose namespace the worker uses.
    ToWorker {
        tag: u8,
        #[serde(default)]
        kernel: u32,
    },
    /// Kernel number `kernel` is gone: its variables on the worker go.
    ForgetKernel {
        kernel: u32,
    },
    /// Kill the worker (it did not stop after an interrupt); a new one replaces it.
    KillWorker,
    /// A library the worker will load (payload: its bytes), kept under `name` in
    /// the engine's library directory. Names are content hashes, so a name once
    /// shipped never needs shipping again.
    Ship {
        name: String,
    },
    Shutdown,

    // Kernel (client) → controller.
    Hello,
    Status,
    Send {
        engine: u32,
        tag: u8,
    },
    Kill {
        engine: u32,
    },
    /// A library for an engine (payload: its bytes); see `Ship`.
    ShipTo {
        engine: u32,
        name: String,
    },
    StopCluster,
    /// Hold `engines` for run `run` of this kernel (see `controller::leases`);
    /// answered `Granted` at once, or `Queued` and later `Granted`. `who` is the
    /// kernel in words, for the kernels that wait on it.
    Claim {
        run: u64,
        engines: Vec<u32>,
        who: String,
    },
    /// The kernel's run is over (or it no longer waits): its engines are free.
    Release {
        run: u64,
    },

    // Controller → kernel.
    Granted {
        run: u64,
    },
    /// The claim waits for engines that another kernel's run holds.
    Queued {
        run: u64,
        behind: String,
    },
    StatusReply {
        engines: Vec<EngineInfo>,
        lost: Vec<EngineInfo>,
        versions: Option<Versions>,
    },
    /// A frame from an engine's worker.
    Frame {
        engine: u32,
        tag: u8,
    },
    /// An engine, or its worker, is gone: what was running there will not finish.
    /// A lost worker is replaced by its engine; a lost engine is gone for good.
    Lost {
        engine: u32,
        why: String,
        #[serde(default)]
        engine_gone: bool,
    },
    Stopped,
}

impl Msg {
    /// The first words of a link, sent before the sender knows who will answer: an
    /// engine's `Register`, a kernel's `Hello` or `Status`. Only these may go
    /// unaddressed, and only while fresh (see the link's greeting window); none of
    /// them runs or changes anything on an engine.
    pub(crate) fn is_greeting(&self) -> bool {
        matches!(self, Msg::Register { .. } | Msg::Hello | Msg::Status)
    }
}

/// A fresh cluster key.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
