//! Which kernel's run each engine serves. Several kernels may share a cluster, but an
//! engine's worker runs one run at a time: a kernel claims the engines of a run
//! before it sends them anything, and the controller grants the claim when they are
//! free, or queues it. Claims are granted in the order they came, except that one
//! never waits for engines no earlier claim wants (a run on engine 3 is not held
//! up by two runs queued for engines 0 and 1).

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// A kernel's claim of engines for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The kernel's connection.
    pub client: Bytes,
    /// The kernel's number for the run.
    pub run: u64,
    pub engines: Vec<u32>,
    /// The kernel, in words, for those who wait on it ("kernel pid 12 on host").
    pub who: String,
}

/// The engines held, and the claims waiting.
#[derive(Debug, Default)]
pub struct Leases {
    held: HashMap<u32, Claim>,
    waiting: VecDeque<Claim>,
}

/// What became of a claim.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Granted,
    /// Queued behind the run of the kernel described.
    Queued {
        behind: String,
    },
}

impl Leases {
    /// Takes a claim: granted when its engines are free and no earlier claim
    /// waits for one of them; else queued. A kernel's new claim ends its earlier
    /// ones (a connection runs one run at a time), so a lease it forgot to give
    /// back does not hold its engines for ever; the claims this frees come back
    /// granted too.
    pub fn claim(&mut self, c: Claim) -> (Outcome, Vec<Claim>) {
        // The same claim again (a kernel that asks where its claim stands): its
        // place is kept.
        let same = |o: &Claim| o.client == c.client && o.run == c.run;
        if self.held.values().any(same) {
            return (Outcome::Granted, vec![]);
        }
        if let Some(at) = self.waiting.iter().position(same) {
            let w = &self.waiting[at];
            let behind = w
                .engines
                .iter()
                .find_map(|e| self.held.get(e))
                .or_else(|| {
                    self.waiting
                        .iter()
                        .take(at)
                        .find(|o| o.engines.iter().any(|e| w.engines.contains(e)))
                })
                .map_or_else(String::new, |b| b.who.clone());
            return (Outcome::Queued { behind }, vec![]);
        }
        let granted = self.release(&c.client);
        let blocked = c.engines.iter().find_map(|e| {
            self.held
                .get(e)
                .or_else(|| self.waiting.iter().find(|w| w.engines.contains(e)))
        });
        let outcome = match blocked {
            Some(b) => {
                let behind = b.who.clone();
                self.waiting.push_back(c);
                Outcome::Queued { behind }
            }
            None => {
                for e in &c.engines {
                    self.held.insert(*e, c.clone());
                }
                Outcome::Granted
            }
        };
        (outcome, granted)
    }

    /// Ends every claim of `client`, held or waiting (its run is over, or it is
    /// gone). Returns the claims granted in their place, and the engines it held.
    pub fn release(&mut self, client: &Bytes) -> Vec<Claim> {
        self.release_with_engines(client).0
    }

    /// As [`Leases::release`], with the engines `client` held.
    pub fn release_with_engines(&mut self, client: &Bytes) -> (Vec<Claim>, Vec<u32>) {
        let mut freed: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, c)| c.client == *client)
            .map(|(e, _)| *e)
            .collect();
        freed.sort_unstable();
        self.held.retain(|_, c| c.client != *client);
        self.waiting.retain(|w| w.client != *client);
        (self.grant_waiting(), freed)
    }

    /// An engine left the cluster: no claim holds or waits for it any longer.
    pub fn forget_engine(&mut self, engine: u32) -> Vec<Claim> {
        self.held.remove(&engine);
        for w in &mut self.waiting {
            w.engines.retain(|e| *e != engine);
        }
        self.grant_waiting()
    }

    /// The claim an engine serves, if any.
    pub fn holder(&self, engine: u32) -> Option<&Claim> {
        self.held.get(&engine)
    }

    /// Whether `client` has a claim held or waiting.
    pub fn has(&self, client: &Bytes) -> bool {
        self.held.values().any(|c| c.client == *client)
            || self.waiting.iter().any(|c| c.client == *client)
    }

    /// Grants, in order, the waiting claims whose engines are free and that no
    /// earlier waiting claim competes with.
    fn grant_waiting(&mut self) -> Vec<Claim> {
        let mut granted = Vec::new();
        let mut wanted: Vec<u32> = Vec::new();
        let mut still = VecDeque::new();
        while let Some(w) = self.waiting.pop_front() {
            let free = w
                .engines
                .iter()
                .all(|e| !self.held.contains_key(e) && !wanted.contains(e));
            if free {
                for e in &w.engines {
                    self.held.insert(*e, w.clone());
                }
                granted.push(w);
            } else {
                wanted.extend(&w.engines);
                still.push_back(w);
            }
        }
        self.waiting = still;
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(client: &'static str, run: u64, engines: &[u32]) -> Claim {
        Claim {
            client: Bytes::from_static(client.as_bytes()),
            run,
            engines: engines.to_vec(),
            who: format!("kernel {client}"),
        }
    }

    #[test]
    fn claims_queue_in_order_and_are_granted_as_engines_free() {
        let mut l = Leases::default();
        assert_eq!(l.claim(claim("a", 1, &[0, 1])).0, Outcome::Granted);
        assert_eq!(
            l.claim(claim("b", 1, &[1, 2])).0,
            Outcome::Queued {
                behind: "kernel a".into()
            }
        );
        // Engine 2 is free, but b waits for it first.
        assert_eq!(
            l.claim(claim("c", 1, &[2])).0,
            Outcome::Queued {
                behind: "kernel b".into()
            }
        );
        // Engine 3 nobody wants.
        assert_eq!(l.claim(claim("d", 1, &[3])).0, Outcome::Granted);
        // Asking again keeps a claim's place.
        assert_eq!(
            l.claim(claim("c", 1, &[2])).0,
            Outcome::Queued {
                behind: "kernel b".into()
            }
        );
        assert_eq!(l.claim(claim("d", 1, &[3])).0, Outcome::Granted);
        let (granted, freed) = l.release_with_engines(&Bytes::from_static(b"a"));
        assert_eq!(freed, vec![0, 1]);
        assert_eq!(granted, vec![claim("b", 1, &[1, 2])]);
        assert_eq!(l.holder(2).map(|c| c.run), Some(1));
        assert_eq!(
            l.release(&Bytes::from_static(b"b")),
            vec![claim("c", 1, &[2])]
        );
    }

    #[test]
    fn a_new_claim_ends_the_kernels_earlier_one_and_lost_engines_are_dropped() {
        let mut l = Leases::default();
        l.claim(claim("a", 1, &[0]));
        assert!(matches!(
            l.claim(claim("b", 1, &[0])).0,
            Outcome::Queued { .. }
        ));
        // a's next run: its first lease ends, so b is granted first and a waits.
        let (outcome, granted) = l.claim(claim("a", 2, &[0]));
        assert_eq!(granted, vec![claim("b", 1, &[0])]);
        assert!(matches!(outcome, Outcome::Queued { .. }));
        // Engine 0 leaves: b's lease goes, and a's claim, for nothing now, is granted.
        assert_eq!(l.forget_engine(0), vec![claim("a", 2, &[])]);
        assert!(!l.has(&Bytes::from_static(b"b")));
    }
}
