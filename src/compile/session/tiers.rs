//! Tiered compilation: cells build at the fast level first (`Settings::opt_level`,
//! 1 by default); code that runs long is built at level 3 from then on.
//!
//! Every function a cell defines is `#[inline]` (see `compile::cell::inline`), so
//! a cell that calls one compiles its own copy of it, and of what it calls, at the
//! cell's level. Making a hot function fast is then a matter of building the small
//! cells that call it at level 3: the libraries that define functions, statics and
//! types are never swapped, so a `static` or `thread_local!` stays one, and a
//! library is only ever replaced between runs (a new cell's, or a re-run's).
//!
//! When a cell's run takes longer than [`HOT_RUN`], the names it mentions that the
//! session defines (functions, types, methods of its impls) become hot, and so do the
//! names the hot items' code mentions (what they call) and the items later cells
//! define whose code mentions a hot name (what calls them). A cell that mentions a
//! hot name, or the same cell run again, is built at level 3. `%opt N` pins a level
//! and turns this off.
//!
//! The target CPU: a cell is built for this machine's CPU (`-C target-cpu=native`,
//! as Numba compiles for the host), since the runner and the worker pool run here.
//! Layers, and every cell built while a cluster is in use, are built for the
//! architecture's baseline instead: engines may be on other machines with other
//! CPUs, and they load the layers and the cluster cells' libraries.

use super::Session;
use crate::compile::cell::{Item, ParsedCell, Timing};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::time::Duration;

/// What this machine's CPU is, for the cache keys of cells built for it: its model
/// and the features it has (`/proc/cpuinfo`'s first processor).
pub(super) fn host_cpu() -> &'static str {
    static CPU: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CPU.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        info.lines()
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| l.starts_with("model name") || l.starts_with("flags"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A run longer than this makes the cell and what it names hot.
pub const HOT_RUN: Duration = Duration::from_millis(100);

/// The level hot code is built at.
pub const HOT_LEVEL: u8 = 3;

/// What has run long in this session.
#[derive(Debug, Default)]
pub(super) struct Tiers {
    /// Names of the session's items and methods that hot code mentions.
    names: HashSet<String>,
    /// Cells (the hash of their code and timing) that ran long.
    cells: HashSet<[u8; 32]>,
}

/// Which cell, for [`Tiers::cells`].
fn cell_hash(code: &str, timing: Timing) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(code.as_bytes());
    h.update(format!("{timing:?}").as_bytes());
    h.finalize().into()
}

/// Whether `item` defines `name`, as an item or a method of its impl.
fn defines(item: &Item, name: &str) -> bool {
    item.names.iter().any(|n| n == name)
        || item
            .impl_key
            .as_ref()
            .is_some_and(|k| k.methods.iter().any(|m| m == name))
}

impl Session {
    /// The level a unit of this cell is built at, and whether that is a tier-up
    /// (hot code built above the session's level).
    pub(super) fn level_for(&self, parsed: &ParsedCell, code: &str) -> (u8, bool) {
        let level = self.settings.opt_level;
        if !self.settings.tiered || level >= HOT_LEVEL {
            return (level, false);
        }
        let t = &self.tiers;
        let hot = t.cells.contains(&cell_hash(code, parsed.timing))
            || parsed.idents.iter().any(|i| t.names.contains(i))
            || parsed
                .items
                .iter()
                .any(|it| it.uses.iter().any(|u| t.names.contains(u)));
        if hot {
            (HOT_LEVEL, true)
        } else {
            (level, false)
        }
    }

    /// Tells the session that `code` ran for `took`. Returns whether it became hot
    /// now (so a build of it at level 3 is worth starting ahead of its next run).
    pub fn ran(&mut self, code: &str, timing: Timing, took: Duration) -> bool {
        if !self.settings.tiered || took < HOT_RUN || self.settings.opt_level >= HOT_LEVEL {
            return false;
        }
        let Ok(parsed) = crate::compile::cell::parse(code) else {
            return false;
        };
        let known = self.known_names();
        let mut hot: Vec<String> = parsed
            .idents
            .iter()
            .chain(parsed.items.iter().flat_map(|i| &i.uses))
            .filter(|n| known.contains(*n))
            .cloned()
            .collect();
        // What hot items call is hot too.
        while let Some(name) = hot.pop() {
            if self.tiers.names.insert(name.clone()) {
                for item in self.chain_items().filter(|i| defines(i, &name)) {
                    hot.extend(item.uses.iter().filter(|u| known.contains(*u)).cloned());
                }
            }
        }
        self.tiers.cells.insert(cell_hash(code, timing))
    }

    /// Records the items of a new layer whose code mentions a hot name: calling
    /// them runs hot code, so they are hot.
    pub(super) fn spread_heat(&mut self, items: &[Item]) {
        if self.tiers.names.is_empty() {
            return;
        }
        for item in items {
            if item.uses.iter().any(|u| self.tiers.names.contains(u)) {
                self.tiers.names.extend(item.names.iter().cloned());
            }
        }
    }

    /// The names the session defines: items and the methods of its impls. Not
    /// variables: a cell that names one need not run hot code (`v.len()`).
    fn known_names(&self) -> HashSet<String> {
        let mut out = HashSet::new();
        for item in self.chain_items() {
            out.extend(item.names.iter().cloned());
            if let Some(k) = &item.impl_key {
                out.extend(k.methods.iter().cloned());
            }
        }
        out
    }

    /// Every item of the chain's layers.
    fn chain_items(&self) -> impl Iterator<Item = &Item> {
        self.chain
            .iter()
            .flat_map(|l| l.items.iter().map(|i| &i.item))
    }

    /// Which names are hot now, sorted (for `%opt`).
    pub fn hot_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tiers.names.iter().cloned().collect();
        v.sort();
        v
    }
}
