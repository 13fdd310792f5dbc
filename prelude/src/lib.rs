//! The `ferrocell` prelude: what every cell sees without importing anything.
//!
//! Cells and the runner process link this one library dynamically, so the runner's
//! output channel, the display helpers and the value formatting all share one copy of
//! their state. The crate has no dependencies: the kernel builds it with whatever
//! rustc compiles the cells.
//!
//! # Layout
//!
//! The `__` modules are what generated cell code calls (their paths stay stable);
//! the others are the prelude's own parts. No two modules import each other,
//! even through others; `process`, `store`, `channel` and `tags` import none.
//!
//! ```text
//! __runner      the runner process: loads cell libraries and runs them
//! __vars        entry points for the session's variables (take, put back, save)
//! __value       how a cell's trailing value is shown
//! __timing      %time and %timeit, measured where the cell runs
//! __async       top-level .await
//! __native      the functions of %%c and %%cpp cells, found in their libraries
//! __parallel    %%parallel threads (and --each, --scaling)
//! __processes   %%parallel processes and cluster, as generated code calls them
//! coordinator   one rank thread per worker, handing out ranks and items
//! pool          the warm worker processes and what a run sends them
//! worker        a runner serving as a worker
//! transport     how a rank thread reaches its worker (local pipe or engine)
//! lanes         the lane driver threads, processes and cluster share
//! scaling       --scaling runs and the Amdahl chart
//! steal         work stealing: chunks() and parallel_for()
//! table         a run's result table (text and HTML)
//! rank_output   a rank's output, labelled or grouped
//! snapshot      the background savers that write variables' snapshots
//! differ        a saver's writer: writes only what differs
//! store         the store of session variables
//! display, input, json
//!               rich output, input requests, the JSON the prelude speaks
//! channel, tags the framed channel to the kernel and its tags
//! process       facts about this process (worker or runner, args, current cell)
//! ```

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
mod steal;
mod store;
mod table;
mod transport;
mod worker;

#[doc(hidden)]
pub mod __async;
#[doc(hidden)]
pub mod __native;
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
pub use steal::{Chunks, chunks, parallel_for};

/// True once the user asked to interrupt the running cell. Long loops can check it
/// to stop cleanly; a cell that does not is stopped by restarting the runner.
pub fn interrupted() -> bool {
    process::interrupted()
}

/// Everything a cell sees unqualified.
pub mod prelude {
    pub use crate::{
        DisplayId, chunks, clear_output, display_html, display_json, display_markdown,
        display_mime, display_png, display_svg, display_text, input, interrupted, parallel_for,
        password, update_display,
    };
}
