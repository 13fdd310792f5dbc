//! ferrocell: a Jupyter kernel for Rust that compiles each cell to native code and
//! runs it in a crash-proof runner process.
//!
//! The modules follow the processes: [`protocol`] (the wire), [`kernel`] (the
//! sockets and requests), [`magics`], [`compile`] (cell → library), [`exec`] (the
//! runner), and [`install`] (the kernelspec).

pub mod cluster;
pub mod compile;
pub mod exec;
pub mod install;
pub mod kernel;
pub mod magics;
pub mod paths;
pub mod protocol;
pub mod sockets;
