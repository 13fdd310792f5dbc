//! The session's variables: what a cell did to them once it ran (or failed), and
//! which of them a piece of code uses.

use super::Session;
use crate::compile::cell;
use crate::compile::vars::{Var, Vars};

/// What a cell does to the session's variables once it has run.
#[derive(Debug, Clone, Default)]
pub struct VarOutcome {
    /// Variables the cell takes out of the store when it starts.
    pub taken: Vec<String>,
    /// Variables in the store after the cell, with their types.
    pub kept: Vec<(String, Var)>,
    /// Variables in the store if the cell panics (what it took and did not move).
    pub kept_on_panic: Vec<(String, Var)>,
    /// The new bindings a failing `?` may keep (it names which), with their types.
    pub stageable: Vec<(String, Var)>,
    /// Variables the session no longer has.
    pub removed: Vec<String>,
    /// What to tell the user (why a variable is not kept).
    pub notes: Vec<String>,
}

impl Session {
    /// Records what a cell that ran to its end did to the session's variables.
    pub fn commit_vars(&mut self, outcome: &VarOutcome) {
        for n in &outcome.removed {
            self.vars.remove(n);
        }
        for (n, v) in &outcome.kept {
            self.vars.insert(n.clone(), v.clone());
        }
    }

    /// After a panic or a failing `?`, the variables the cell took and could put
    /// back stay, and so do the new bindings that a failing `?` kept (`kept`); the
    /// others are gone with the cell. Returns the names of the lost ones and of the
    /// new ones kept.
    pub fn settle_failure(
        &mut self,
        outcome: &VarOutcome,
        kept: &[String],
    ) -> (Vec<String>, Vec<String>) {
        let mut lost = Vec::new();
        for n in outcome.taken.iter().chain(&outcome.removed) {
            let back = outcome.kept_on_panic.iter().any(|(k, _)| k == n) || kept.contains(n);
            if !back && self.vars.remove(n).is_some() && !lost.contains(n) {
                lost.push(n.clone());
            }
        }
        for (n, v) in &outcome.kept_on_panic {
            self.vars.insert(n.clone(), v.clone());
        }
        let mut new = Vec::new();
        for (n, v) in outcome.stageable.iter().filter(|(n, _)| kept.contains(n)) {
            self.vars.insert(n.clone(), v.clone());
            new.push(n.clone());
        }
        (lost, new)
    }

    /// Forgets every variable (the runner that held them is gone). Returns their names.
    pub fn lose_all_vars(&mut self) -> Vec<String> {
        std::mem::take(&mut self.vars).into_keys().collect()
    }

    /// The session's variables and their types.
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// The session variables `code` uses, with their types (what a cell of that
    /// code takes out of the store).
    pub fn vars_used(&self, code: &str) -> Vec<(String, String)> {
        let Ok(parsed) = cell::parse(code) else {
            return Vec::new();
        };
        self.vars
            .iter()
            .filter(|(n, _)| parsed.idents.contains(*n))
            .map(|(n, v)| (n.clone(), v.ty.clone()))
            .collect()
    }

    /// Forgets one variable (it could not be restored).
    pub fn forget_var(&mut self, name: &str) {
        self.vars.remove(name);
    }
}
