//! The Jupyter wire protocol: connection files, HMAC signing, frame decoding and the
//! typed message contents the kernel reads and writes.
//!
//! Nothing in here knows about sockets; `kernel` moves the frames.

pub mod connection;
pub mod header;
pub mod messages;
pub mod request;
pub mod wire;

pub use connection::ConnectionInfo;
pub use header::Header;
pub use request::{Malformed, Request};
pub use wire::{Message, Signer, WireError};
