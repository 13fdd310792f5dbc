//! ferrocell: a Jupyter kernel for Rust that compiles each cell to native code and
//! runs it in a crash-proof runner process, and runs any cell in parallel on
//! threads, worker processes or a cluster of engines.
//!
//! # Layout
//!
//! The modules follow the processes and the path of a cell; each owns one thing.
//!
//! ```text
//! protocol/        the Jupyter wire: connection file, headers, signed frames, typed contents
//! sockets          ZeroMQ sockets as every process opens them (size limits, queue bounds)
//! kernel/          the kernel process: one task per socket
//!   shell          the request queue, handled in order by one executor
//!   control        interrupt, shutdown, kernel_info: answered at once
//!   iopub          the one owner of IOPub (parents, stream batching, back-pressure)
//!   stdin, heartbeat, info, history
//!   execute/       one execute_request: warm-up, :dep, the cell, the runner's
//!                  lifecycle and event pump, panics, snapshots, %%parallel set-up,
//!                  cluster relays, where outputs go (sink)
//!     magics/      one type per magic, each with its definition (names, usage,
//!                  help), parse and apply; the list the parser, %lsmagic, %help
//!                  and completion read; spec: the shape of a definition
//!   introspect, complete_at, expr_context, std_docs
//!                  completion, inspection and is_complete
//!   outputs        a cell's stdout and stderr bytes as notebook output
//! compile/         a cell into a native library
//!   cell/          parsing a cell: items, statements, spans, the parser's limits,
//!                  the #[inline] on every function (inline)
//!   session/       the session: item layers, variables, generated code, builds,
//!                  retries, savers and restore, tiered compilation (tiers)
//!   deps/          :dep lines and the cargo package that builds them
//!   prelude        building the prelude library and the runner; the prelude's docs
//!   parallel       what a %%parallel run is, and the cell code its body becomes
//!   native/        %%c and %%cpp: the system compiler, and bindgen's declarations
//!                  turned into Rust functions that find the C ones at run time
//!   opencl         %%opencl: kernel signatures read into typed handles (the crate
//!                  the handles call is opencl/, linked like a :dep)
//!   rustc, toolchain, diagnostics, try_rewrite, vars, boxed, delimiters, edition,
//!   error_format   one rustc run; finding rustc; errors in the cell's terms; ...
//! exec/            the runner child process: its frames, spawning it, its savers
//! cluster/         %%parallel cluster
//!   link           signing, addressing and splitting what cluster processes send
//!   messages       what controller, engines and kernels say to each other
//!   controller, engine, client (the kernel's side), launcher/ (local, mpi, ssh,
//!   slurm, --restart), leftovers
//! paths            where files go: cache, history, private directories, host name
//! install          the kernelspec
//! ```
//!
//! Imports go one way: `kernel` uses `cluster`, `exec` and `compile`;
//! `cluster` uses `exec` and `compile`; `exec` uses `compile`; all of them use
//! `protocol`, `sockets` and `paths`, which use none of them. The prelude, the
//! library every cell links (its own crate, `prelude/`), has its own layout in
//! its `lib.rs`.

pub mod cluster;
pub mod compile;
pub mod exec;
pub mod install;
pub mod kernel;
pub mod paths;
pub mod protocol;
pub mod sockets;

/// The magics' parsers, where fuzzing and other tools reach them.
pub use kernel::execute::magics;
