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

/// The options every socket that takes requests, cells and values is opened with.
pub fn options() -> SocketOptions {
    limited(max_message_bytes())
}

/// The largest inbound message on sockets that only ever take small ones: IOPub
/// (subscriptions) and the heartbeat (pings). A peer that sends more is cut off.
pub const SMALL_MESSAGES: usize = 64 << 10;

/// The largest inbound message on the stdin and control sockets (typed input, and
/// shutdown, interrupt and debug requests).
pub const MEDIUM_MESSAGES: usize = 16 << 20;

/// Options for a socket whose inbound messages are at most `bytes` (or the general
/// limit, if that is lower).
pub fn limited(bytes: usize) -> SocketOptions {
    let mut o = SocketOptions::default();
    o.max_message_size(bytes.min(max_message_bytes()));
    o
}
