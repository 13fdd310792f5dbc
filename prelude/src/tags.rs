//! Frame tags of the runner channel. Runner → kernel below 100, kernel → runner from
//! 100. The kernel includes this same file, so both sides always agree.

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const DISPLAY: u8 = 3;
pub const CLEAR_OUTPUT: u8 = 4;
pub const RESULT: u8 = 5;
pub const PANIC: u8 = 6;
pub const DONE: u8 = 7;
pub const INPUT_REQUEST: u8 = 8;
pub const LOAD_ERROR: u8 = 9;
pub const READY: u8 = 10;
pub const CELL_ERROR: u8 = 11;
/// A worker's values for a batch of units (`%%parallel processes`).
pub const UNITS_DONE: u8 = 12;
/// A frame for a cluster engine's worker: `[engine u32][tag][payload]`.
pub const TO_ENGINE: u8 = 13;
/// A `--persist` body's value, serialised for `--out` or `%cluster pull`:
/// `[1][bytes]`, or `[0][why it could not be]`.
pub const GATHERED: u8 = 14;

pub const RUN: u8 = 101;
pub const INPUT_REPLY: u8 = 102;
pub const INPUT_DENIED: u8 = 103;
pub const INTERRUPT: u8 = 104;
/// A batch of units for a worker's running cell, and the end of its run.
pub const UNITS: u8 = 105;
pub const NO_MORE_UNITS: u8 = 106;
/// A frame from a cluster engine's worker: `[engine u32][tag][payload]`.
pub const FROM_ENGINE: u8 = 107;
/// A session variable's serde bytes for a worker: `[name len u32][name][bytes]`.
pub const VAR_BYTES: u8 = 108;
/// On an engine's worker: whose variables the cells from here on use (the
/// controller's number for the kernel, u32 LE); each kernel has a namespace of its own.
pub const NAMESPACE: u8 = 109;
/// On an engine's worker: that kernel is gone; its variables go (u32 LE).
pub const DROP_NAMESPACE: u8 = 110;

/// Inside `FROM_ENGINE`: the engine is gone (payload: why).
pub const ENGINE_LOST: u8 = 250;
/// Inside `FROM_ENGINE`: the engine's worker died; the engine starts another.
pub const WORKER_LOST: u8 = 252;
/// Inside `TO_ENGINE`: kill the engine's worker (it did not stop after an interrupt).
pub const KILL_WORKER: u8 = 251;

/// How a panic message starts when ranks of a `%%parallel` cell failed; the kernel
/// reports it as a `ParallelError` rather than as a panic of the cell.
pub const PARALLEL_ERROR: &str = "%%parallel: ";
