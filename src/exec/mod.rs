//! Executing compiled cells: the runner child process and the protocol spoken with it.

pub mod frames;
pub mod runner;
pub mod savers;

pub use runner::{CellEvent, Runner, RunnerError, RunnerExit};
