//! The kernels a controller serves, as they come and go: each kernel's number
//! (its namespace on the engines' workers), the claims granted to it, and what
//! is freed when one falls silent or stops reading.

use super::leases::Claim;
use super::Msg;
use super::{Controller, KERNEL_GONE_AFTER, LOST_AFTER};
use bytes::Bytes;

impl Controller {
    /// Kernels beat every second: one that holds or waits for engines and has
    /// fallen silent is gone, and its engines go to the next claim; one that holds
    /// nothing is given longer (its variables on the engines go).
    pub(super) fn check_kernels(&mut self) {
        // A muted kernel is heard from no more than any other.
        let gone: Vec<Bytes> = self
            .clients
            .iter()
            .chain(self.muted.iter())
            .filter(|(c, seen)| {
                let holds = self.leases.has(c);
                seen.elapsed() > if holds { LOST_AFTER } else { KERNEL_GONE_AFTER }
            })
            .map(|(c, _)| c.clone())
            .collect();
        for c in gone {
            tracing::warn!("a kernel fell silent: its engines and its variables there are freed");
            self.forget_client(&c);
        }
    }

    /// A kernel that does not read: no more is sent to it, heartbeats included, so
    /// that its cell fails as the controller falls silent to it, rather than waiting
    /// for what was dropped; nor what its engines answer, which would open its
    /// queue again. Its engines stay its own (and its variables there) until it
    /// speaks again or falls silent itself.
    pub(super) fn mute_client(&mut self, identity: &Bytes) {
        self.clients.retain(|(c, _)| c != identity);
        for e in self.engines.values_mut() {
            if e.owner.as_ref() == Some(identity) {
                e.owner = None;
            }
        }
        self.muted
            .push((identity.clone(), std::time::Instant::now()));
    }

    /// A kernel that is gone (silent): forgotten until it speaks again. Its
    /// engines lose their owner, and are freed at the top of the loop.
    pub(super) fn forget_client(&mut self, identity: &Bytes) {
        self.clients.retain(|(c, _)| c != identity);
        self.muted.retain(|(c, _)| c != identity);
        self.to_clients.close(identity);
        for e in self.engines.values_mut() {
            if e.owner.as_ref() == Some(identity) {
                e.owner = None;
            }
        }
        self.gone.push(identity.clone());
    }

    /// Claims are to be told they are granted.
    pub(super) fn grant(&mut self, granted: Vec<Claim>) {
        self.granted.extend(granted);
    }

    /// Frees the engines of kernels that are gone (a worker still busy with a gone
    /// kernel's run is killed, as no one reads what it says) and tells kernels
    /// their claims are granted.
    pub(super) async fn settle(&mut self) {
        while let Some(identity) = self.gone.pop() {
            // Its variables on the engines go with it.
            if let Some(kernel) = self.kernel_numbers.remove(&identity) {
                let engines: Vec<Bytes> =
                    self.engines.values().map(|e| e.identity.clone()).collect();
                for e in engines {
                    self.send_engine(&e, Msg::ForgetKernel { kernel }, None)
                        .await;
                }
            }
            let (granted, freed) = self.leases.release_with_engines(&identity);
            self.granted.extend(granted);
            for id in freed {
                let busy = self
                    .engines
                    .get(&id)
                    .filter(|e| e.info.state == "busy")
                    .map(|e| e.identity.clone());
                if let Some(target) = busy {
                    tracing::warn!("engine {id}: its kernel is gone; its worker is replaced");
                    self.send_engine(&target, Msg::KillWorker, None).await;
                }
            }
        }
        for g in std::mem::take(&mut self.granted) {
            self.send_client(&g.client, Msg::Granted { run: g.run }, None)
                .await;
        }
    }
}
