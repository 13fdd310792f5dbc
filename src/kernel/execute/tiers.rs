//! The executor's side of tiered compilation (`compile::session::tiers`): after a
//! run, the session is told how long it took; a cell that became hot is built at
//! level 3 while the kernel waits for the next request, so that running it again
//! finds that library ready.

use super::Executor;
use crate::compile::Timing;
use std::time::Duration;

impl Executor {
    /// Tells the session that `code` ran for `took`; a cell that became hot now is
    /// kept for [`Executor::idle_work`].
    pub(super) fn note_run(&mut self, code: &str, timing: Timing, took: Duration) {
        if let Some(s) = &mut self.session {
            if s.ran(code, timing, took) {
                self.tier_up = Some((code.to_string(), timing));
            }
        }
    }

    /// Whether there is a build to do while idle.
    pub fn has_idle_work(&self) -> bool {
        self.tier_up.is_some() && self.session.is_some()
    }

    /// Builds the hot cell at level 3. The shell drops this future when a request
    /// comes first: the build stops (rustc is killed, its scratch removed) and
    /// starts again when the kernel is next idle (or the cell is built when it next
    /// runs, whichever comes first).
    pub async fn idle_work(&mut self) {
        let (Some((code, timing)), Some(session)) = (self.tier_up.clone(), &self.session) else {
            return;
        };
        if let Err(e) = session.prebuild(&code, timing).await {
            tracing::debug!("building a hot cell ahead of its next run: {e}");
        }
        self.tier_up = None;
    }
}
