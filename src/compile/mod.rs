//! Turning a cell into native code: parse it, generate a crate, build it with rustc
//! into a shared library (cached by content hash), and map rustc's diagnostics back
//! to the cell's own lines.

pub mod boxed;
pub mod cell;
pub mod delimiters;
pub mod deps;
pub mod diagnostics;
pub mod edition;
pub mod error_format;
pub mod native;
pub mod opencl;
pub mod parallel;
pub mod prelude;
pub mod rustc;
pub mod session;
pub mod toolchain;
pub mod try_rewrite;
pub mod vars;

pub use cell::Timing;
pub use session::{BuiltCell, CompileError, Session};
pub use toolchain::Toolchain;
