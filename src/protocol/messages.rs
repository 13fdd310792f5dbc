//! Typed message contents: what clients send us and what we send back.
//!
//! Requests are lenient where the spec gives defaults; replies are strict (every
//! field the schema requires, nothing null that must be an object).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A MIME bundle: `{"text/plain": "...", "text/html": "..."}`.
pub type MimeBundle = Map<String, Value>;

/// Content types that know their `msg_type`.
pub trait Content: Serialize {
    const MSG_TYPE: &'static str;
}

macro_rules! content {
    ($ty:ty, $name:literal) => {
        impl Content for $ty {
            const MSG_TYPE: &'static str = $name;
        }
    };
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------- requests

#[derive(Debug, Clone, Deserialize)]
pub struct ExecuteRequest {
    pub code: String,
    #[serde(default)]
    pub silent: bool,
    #[serde(default = "yes")]
    pub store_history: bool,
    #[serde(default)]
    pub user_expressions: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_stdin: bool,
    #[serde(default = "yes")]
    pub stop_on_error: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompleteRequest {
    pub code: String,
    pub cursor_pos: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InspectRequest {
    pub code: String,
    pub cursor_pos: Option<usize>,
    #[serde(default)]
    pub detail_level: u8,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IsCompleteRequest {
    pub code: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HistoryRequest {
    #[serde(default)]
    pub output: bool,
    #[serde(default)]
    pub raw: bool,
    #[serde(default)]
    pub hist_access_type: String,
    #[serde(default)]
    pub session: Option<i64>,
    #[serde(default)]
    pub start: Option<i64>,
    #[serde(default)]
    pub stop: Option<i64>,
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub unique: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommInfoRequest {
    #[serde(default)]
    pub target_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommOpen {
    pub comm_id: String,
    #[serde(default)]
    pub target_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShutdownRequest {
    #[serde(default)]
    pub restart: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputReply {
    #[serde(default)]
    pub value: String,
}

// ----------------------------------------------------------------- replies

/// What an `is_complete_reply` says of the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Completeness {
    Complete,
    /// More lines are needed (a console prompts for them, with the indent given).
    Incomplete,
    /// It cannot become valid by adding lines.
    Invalid,
}

/// A reply's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyStatus {
    Ok,
    Error,
    /// An execute request not run, because one before it failed.
    Aborted,
}

#[derive(Debug, Serialize)]
pub struct KernelInfoReply {
    pub status: ReplyStatus,
    pub protocol_version: &'static str,
    pub implementation: &'static str,
    pub implementation_version: &'static str,
    pub language_info: LanguageInfo,
    pub banner: String,
    pub help_links: Vec<HelpLink>,
    pub debugger: bool,
    pub supported_features: Vec<String>,
}
content!(KernelInfoReply, "kernel_info_reply");

#[derive(Debug, Serialize)]
pub struct LanguageInfo {
    pub name: &'static str,
    pub version: String,
    pub mimetype: &'static str,
    pub file_extension: &'static str,
    pub pygments_lexer: &'static str,
    pub codemirror_mode: &'static str,
    pub nbconvert_exporter: &'static str,
}

#[derive(Debug, Serialize)]
pub struct HelpLink {
    pub text: String,
    pub url: String,
}

/// `execute_reply`; `status` is "ok", "error" or "aborted".
#[derive(Debug, Serialize)]
pub struct ExecuteReply {
    pub status: ReplyStatus,
    pub execution_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_expressions: Option<Map<String, Value>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorContent>,
}
content!(ExecuteReply, "execute_reply");

#[derive(Debug, Serialize)]
pub struct CompleteReply {
    pub status: ReplyStatus,
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
    pub metadata: Map<String, Value>,
}
content!(CompleteReply, "complete_reply");

#[derive(Debug, Serialize)]
pub struct InspectReply {
    pub status: ReplyStatus,
    pub found: bool,
    pub data: MimeBundle,
    pub metadata: Map<String, Value>,
}
content!(InspectReply, "inspect_reply");

#[derive(Debug, Serialize)]
pub struct IsCompleteReply {
    pub status: Completeness,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indent: Option<String>,
}
content!(IsCompleteReply, "is_complete_reply");

#[derive(Debug, Serialize)]
pub struct HistoryReply {
    pub status: ReplyStatus,
    pub history: Vec<Value>,
}
content!(HistoryReply, "history_reply");

#[derive(Debug, Serialize)]
pub struct CommInfoReply {
    pub status: ReplyStatus,
    pub comms: Map<String, Value>,
}
content!(CommInfoReply, "comm_info_reply");

#[derive(Debug, Serialize)]
pub struct ShutdownReply {
    pub status: ReplyStatus,
    pub restart: bool,
}
content!(ShutdownReply, "shutdown_reply");

#[derive(Debug, Serialize)]
pub struct InterruptReply {
    pub status: ReplyStatus,
}
content!(InterruptReply, "interrupt_reply");

// ------------------------------------------------------------------- iopub

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionState {
    Starting,
    Busy,
    Idle,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub execution_state: ExecutionState,
}
content!(Status, "status");

#[derive(Debug, Serialize)]
pub struct IopubWelcome {
    pub subscription: String,
}
content!(IopubWelcome, "iopub_welcome");

#[derive(Debug, Serialize)]
pub struct Stream {
    pub name: &'static str,
    pub text: String,
}
content!(Stream, "stream");

#[derive(Debug, Serialize)]
pub struct ExecuteInput {
    pub code: String,
    pub execution_count: u64,
}
content!(ExecuteInput, "execute_input");

#[derive(Debug, Serialize)]
pub struct ExecuteResult {
    pub execution_count: u64,
    pub data: MimeBundle,
    pub metadata: Map<String, Value>,
}
content!(ExecuteResult, "execute_result");

#[derive(Debug, Clone, Serialize, Default)]
pub struct Transient {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DisplayData {
    pub data: MimeBundle,
    pub metadata: Map<String, Value>,
    pub transient: Transient,
}
content!(DisplayData, "display_data");

/// Same fields as `display_data`; sent under the `update_display_data` type.
#[derive(Debug, Serialize)]
pub struct UpdateDisplayData(pub DisplayData);
content!(UpdateDisplayData, "update_display_data");

#[derive(Debug, Serialize)]
pub struct ClearOutput {
    pub wait: bool,
}
content!(ClearOutput, "clear_output");

/// An error, both as the IOPub `error` message and flattened into error replies.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorContent {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}
content!(ErrorContent, "error");

#[derive(Debug, Serialize)]
pub struct CommClose {
    pub comm_id: String,
    pub data: Map<String, Value>,
}
content!(CommClose, "comm_close");

// ------------------------------------------------------------------- stdin

#[derive(Debug, Serialize)]
pub struct InputRequest {
    pub prompt: String,
    pub password: bool,
}
content!(InputRequest, "input_request");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_request_defaults() {
        let r: ExecuteRequest = serde_json::from_str(r#"{"code":"1"}"#).unwrap();
        assert!(r.store_history && r.stop_on_error && !r.silent && !r.allow_stdin);
    }

    #[test]
    fn error_reply_flattens_error_fields() {
        let r = ExecuteReply {
            status: ReplyStatus::Error,
            execution_count: 3,
            payload: None,
            user_expressions: None,
            error: Some(ErrorContent {
                ename: "E".into(),
                evalue: "v".into(),
                traceback: vec![],
            }),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ename"], "E");
        assert_eq!(v["execution_count"], 3);
        assert!(v.get("user_expressions").is_none());
    }
}
