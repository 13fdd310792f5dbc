//! Message headers.

use serde::{Deserialize, Serialize};

/// The protocol version written into every header we send.
pub const PROTOCOL_VERSION: &str = "5.4";

/// A Jupyter message header. Also used, as a copy of the request's header, for
/// `parent_header`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub msg_id: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub date: String,
    pub msg_type: String,
    #[serde(default)]
    pub version: String,
}

impl Header {
    /// A fresh header for a message this kernel sends.
    pub fn new(msg_type: &str, session: &str) -> Self {
        Header {
            msg_id: uuid::Uuid::new_v4().to_string(),
            session: session.to_string(),
            username: "ferrocell".into(),
            date: now_iso8601(),
            msg_type: msg_type.to_string(),
            version: PROTOCOL_VERSION.into(),
        }
    }
}

/// The current UTC time as ISO 8601 with microseconds, as Jupyter clients expect.
pub fn now_iso8601() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}
