//! The `ferrocell` prelude: what every cell sees without importing anything.
//!
//! Cells and the runner process link this one library dynamically, so the runner's
//! output channel, the display helpers and the value formatting all share one copy of
//! their state. The crate has no dependencies: the kernel builds it with whatever
//! rustc compiles the cells.

mod channel;
mod coordinator;
mod differ;
mod display;
mod input;
mod json;
mod lanes;
mod pool;
mod process;
mod rank_output;
mod scaling;
mod snapshot;
mod store;
mod table;
mod transport;
mod worker;

#[doc(hidden)]
pub mod __async;
#[doc(hidden)]
pub mod __parallel;
#[doc(hidden)]
pub mod __processes;
#[doc(hidden)]
pub mod __runner;
#[doc(hidden)]
pub mod __timing;
#[doc(hidden)]
pub mod __value;
#[doc(hidden)]
pub mod __vars;

pub use display::{
    DisplayId, clear_output, display_html, display_json, display_markdown, display_mime,
    display_png, display_svg, display_text, update_display,
};
pub use input::{input, password};

/// True once the user asked to interrupt the running cell. Long loops can check it
/// to stop cleanly; a cell that does not is stopped by restarting the runner.
pub fn interrupted() -> bool {
    process::interrupted()
}

/// Everything a cell sees unqualified.
pub mod prelude {
    pub use crate::{
        DisplayId, clear_output, display_html, display_json, display_markdown, display_mime,
        display_png, display_svg, display_text, input, interrupted, password, update_display,
    };
}
