//! Requests as the kernel handles them: a verified message's type and content read
//! into one enum, in one place, so that the shell and control loops match on
//! types rather than on strings, and a content that does not fit its type is
//! known before any handler runs.

use super::messages::{
    CompleteRequest, ExecuteRequest, HistoryRequest, InspectRequest, IsCompleteRequest,
    ShutdownRequest,
};
use super::{Message, WireError};

/// A request from a client, on shell or control.
#[derive(Debug)]
pub enum Request {
    KernelInfo,
    Execute(ExecuteRequest),
    Complete(CompleteRequest),
    Inspect(InspectRequest),
    IsComplete(IsCompleteRequest),
    /// `history_request` (`None`: a content that does not parse, answered with an
    /// empty history).
    History(Option<HistoryRequest>),
    /// `comm_info_request`: its target filter is not needed, as there are no comms.
    CommInfo,
    /// `comm_open`: a comm the kernel has no target for (it is closed at once).
    CommOpen {
        comm_id: String,
        target_name: String,
    },
    Interrupt,
    Shutdown {
        restart: bool,
    },
    /// A type this kernel has no handler for: logged, not answered (as ipykernel).
    Other(String),
}

/// A request whose content does not fit its type: answered with an error reply
/// of the shape its type's reply has.
#[derive(Debug)]
pub enum Malformed {
    /// An `execute_request`: its reply also carries the execution count.
    Execute(WireError),
    Other(WireError),
}

impl Request {
    /// Reads a verified message. Leniency is the spec's: a shutdown or comm request
    /// whose content does not parse is taken with its defaults.
    pub fn read(msg: &Message) -> Result<Request, Malformed> {
        let other = Malformed::Other;
        Ok(match msg.header.msg_type.as_str() {
            "kernel_info_request" => Request::KernelInfo,
            "execute_request" => Request::Execute(msg.content_as().map_err(Malformed::Execute)?),
            "complete_request" => Request::Complete(msg.content_as().map_err(other)?),
            "inspect_request" => Request::Inspect(msg.content_as().map_err(other)?),
            "is_complete_request" => Request::IsComplete(msg.content_as().map_err(other)?),
            "history_request" => Request::History(msg.content_as().ok()),
            "comm_info_request" => Request::CommInfo,
            "comm_open" => match msg.content_as::<super::messages::CommOpen>() {
                Ok(open) => Request::CommOpen {
                    comm_id: open.comm_id,
                    target_name: open.target_name,
                },
                Err(e) => {
                    tracing::info!("comm_open without a comm id: {e}");
                    Request::Other("comm_open".into())
                }
            },
            "interrupt_request" => Request::Interrupt,
            "shutdown_request" => Request::Shutdown {
                restart: msg.content_as::<ShutdownRequest>().is_ok_and(|r| r.restart),
            },
            other => Request::Other(other.to_string()),
        })
    }
}
