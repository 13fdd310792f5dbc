//! The connection file a Jupyter client writes for a kernel it starts.

use serde::Deserialize;
use std::path::Path;

/// Ports, address and key from a Jupyter connection file.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    pub ip: String,
    pub transport: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    #[serde(default)]
    pub key: String,
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
}

fn default_scheme() -> String {
    "hmac-sha256".into()
}

impl ConnectionInfo {
    /// Reads and parses a connection file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read connection file {}: {e}", path.display()))?;
        let info: ConnectionInfo = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("bad connection file {}: {e}", path.display()))?;
        if info.signature_scheme != "hmac-sha256" {
            anyhow::bail!(
                "unsupported signature scheme {:?} (only hmac-sha256)",
                info.signature_scheme
            );
        }
        Ok(info)
    }

    /// The ZeroMQ endpoint for one port, in the ipykernel convention for `ipc`.
    pub fn endpoint(&self, port: u16) -> String {
        match self.transport.as_str() {
            "ipc" => format!("ipc://{}-{}", self.ip, port),
            _ => format!("tcp://{}:{}", self.ip, port),
        }
    }
}
