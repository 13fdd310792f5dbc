//! The engines an ordinary cluster cell holds while it runs: against this kernel's
//! background runs (`Claims`) and, at the controller, against other kernels' runs.

use super::super::{CellError, Executor, Sink};
use super::ClaimGuard;
use tokio::sync::watch;

impl Executor {
    /// Holds a cluster cell's engines for the cell's run: waits (interruptibly)
    /// while a background run of this kernel holds any of them, then while another
    /// kernel's run does (the controller queues the claim). Give them back with
    /// [`Executor::release_engines`].
    pub(in crate::kernel::execute) async fn claim_engines(
        &mut self,
        args: &[String],
        sink: &mut Sink,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<Lease, CellError> {
        let engines = super::super::cluster::engines_of(args);
        let claims = self.background.claims();
        let who = "this cell";
        let mut told = false;
        let acquire = claims.acquire(&engines, who, |behind| {
            if !std::mem::replace(&mut told, true) {
                sink.stderr(
                    format!("ferrocell: waiting for engines that background run `{behind}` holds (%pending lists it; interrupt to stop waiting)\n")
                        .as_bytes(),
                );
            }
        });
        tokio::select! {
            () = acquire => {}
            _ = irq.changed() => return Err(CellError::Interrupted(" while it waited for its engines".into())),
        }
        let local = ClaimGuard::new(claims, who);
        let Some(client) = self.cluster.as_mut() else {
            return Ok(Lease { local, run: None });
        };
        let mut told = false;
        let claim = client.claim(&engines, kernel_words(), |behind| {
            if !std::mem::replace(&mut told, true) {
                sink.stderr(
                    format!("ferrocell: waiting for engines held by a run of {behind} (interrupt to stop waiting)\n")
                        .as_bytes(),
                );
            }
        });
        let run = tokio::select! {
            r = claim => r?,
            _ = irq.changed() => {
                // The claim is withdrawn: the next one would end it anyway.
                let _ = client.release(client.last_run()).await;
                return Err(CellError::Interrupted(" while it waited for its engines".into()));
            }
        };
        Ok(Lease {
            local,
            run: Some(run),
        })
    }

    /// Gives back the engines a cluster cell held.
    pub(in crate::kernel::execute) async fn release_engines(&mut self, lease: Lease) {
        if let (Some(run), Some(c)) = (lease.run, self.cluster.as_mut()) {
            if let Err(e) = c.release(run).await {
                tracing::warn!("the engines of run {run} were not given back: {e}");
            }
        }
    }
}

/// The engines a cluster cell holds: in this kernel (against its background
/// runs) and at the controller (against other kernels).
pub(in crate::kernel::execute) struct Lease {
    #[allow(dead_code)] // held for its drop
    local: ClaimGuard,
    run: Option<u64>,
}

/// This kernel, in words, for the kernels that wait on its runs.
pub(in crate::kernel::execute) fn kernel_words() -> String {
    format!(
        "kernel pid {} on {}",
        std::process::id(),
        crate::paths::hostname()
    )
}
