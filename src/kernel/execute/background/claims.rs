//! Which run of this kernel holds which engine: an engine serves one run at a
//! time, so a run whose engines another holds waits for them. When engines are
//! freed, every waiter is woken and the first to look takes them (no order among
//! this kernel's own runs; the controller orders kernels' claims, see
//! `cluster::controller::leases`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The engines held, each by the name of the run that holds it.
#[derive(Default)]
pub struct Claims {
    held: Mutex<HashMap<u32, String>>,
    freed: Notify,
}

impl Claims {
    /// Takes `engines` for `who` if none is held; else says who holds one.
    pub fn try_claim(&self, engines: &[u32], who: &str) -> Result<(), String> {
        let mut held = self.held.lock().expect("claims");
        if let Some(holder) = engines.iter().find_map(|e| held.get(e)) {
            return Err(holder.clone());
        }
        for e in engines {
            held.insert(*e, who.to_string());
        }
        Ok(())
    }

    /// Takes `engines` for `who` once none is held; `waiting` is told who holds
    /// one each time the wait goes on.
    pub async fn acquire(&self, engines: &[u32], who: &str, mut waiting: impl FnMut(&str)) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_claim(engines, who) {
                Ok(()) => return,
                Err(holder) => waiting(&holder),
            }
            freed.await;
        }
    }

    /// Frees every engine `who` holds.
    pub fn release(&self, who: &str) {
        self.held.lock().expect("claims").retain(|_, h| h != who);
        self.freed.notify_waiters();
    }
}

/// Engines held for as long as this lives (an ordinary cluster cell's).
pub struct ClaimGuard {
    claims: Arc<Claims>,
    who: &'static str,
}

impl ClaimGuard {
    pub fn new(claims: Arc<Claims>, who: &'static str) -> ClaimGuard {
        ClaimGuard { claims, who }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.claims.release(self.who);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first_to_end() {
        let claims = Arc::new(Claims::default());
        claims.try_claim(&[0, 1], "a").unwrap();
        assert_eq!(claims.try_claim(&[1, 2], "b"), Err("a".to_string()));
        assert_eq!(claims.try_claim(&[2], "c"), Ok(()));
        let c2 = claims.clone();
        let waiter = tokio::spawn(async move {
            let mut seen = Vec::new();
            c2.acquire(&[1, 3], "d", |h| seen.push(h.to_string())).await;
            seen
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        claims.release("a");
        let seen = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("freed")
            .unwrap();
        assert_eq!(seen, vec!["a"]);
        assert_eq!(claims.try_claim(&[3], "e"), Err("d".to_string()));
    }
}
