//! `%%parallel cluster`: a controller and engines, on this machine or others.
//!
//! - [`messages`]: the protocol's messages and the connection file;
//! - [`link`]: signing, addressing and splitting them;
//! - [`controller`]: the hub (`ferrocell controller`);
//! - [`engine`]: a worker host (`ferrocell engine`), relaying runner frames to a
//!   worker process of its own;
//! - [`launcher`]: starting controller and engines (local processes);
//! - [`client`]: the kernel's connection, which the runner's coordinator uses to
//!   drive engines exactly as it drives `%%parallel processes` workers;
//! - [`status`]: `%cluster status` in words, summed up past a few dozen engines.

pub mod client;
pub mod controller;
pub mod engine;
pub mod launcher;
pub mod leftovers;
pub mod link;
pub mod messages;
pub mod outbox;
pub mod status;
