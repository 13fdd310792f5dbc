//! ZeroMQ sockets as every ferrocell process opens them: with a limit on the size of
//! an inbound message, checked before anything of that size is buffered.
//!
//! The zeromq crate had no such limit: one unauthenticated frame that announced a
//! length of 1 TiB made it allocate that much and abort the process, before any
//! signature could be checked. ferrocell uses the crate patched with libzmq's
//! `ZMQ_MAXMSGSIZE` (vendor/zeromq, `SocketOptions::max_message_size`): a peer that
//! announces more is disconnected with a log line, and the socket goes on serving the
//! others.

use zeromq::SocketOptions;

/// The default limit: large enough for real cells, values and outputs.
pub const DEFAULT_MAX_MESSAGE_MIB: usize = 256;

/// Where the limit can be changed (in MiB) for the kernel, controller and engines.
pub const MAX_MESSAGE_ENV: &str = "FERROCELL_MAX_MESSAGE_MIB";

/// The largest inbound message, in bytes: `FERROCELL_MAX_MESSAGE_MIB` or the default.
pub fn max_message_bytes() -> usize {
    let mib = std::env::var(MAX_MESSAGE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&m| m > 0)
        .unwrap_or(DEFAULT_MAX_MESSAGE_MIB);
    mib.saturating_mul(1 << 20)
}

/// The options every socket is opened with.
pub fn options() -> SocketOptions {
    let mut o = SocketOptions::default();
    o.max_message_size(max_message_bytes());
    o
}
