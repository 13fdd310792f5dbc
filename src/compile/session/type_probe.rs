//! The type of an expression the user is typing, for completion and inspection: a
//! check-only build of the code before the cursor with the expression in a probe
//! (see `kernel::expr_context`), on top of the session's items and variables.

use super::{crate_name, LayerItem, Session, Unit, VarPlan};
use crate::compile::{cell, vars};
use sha2::{Digest, Sha256};

impl Session {
    /// The type rustc names for the probe marked `mark` in `code`, with full paths;
    /// `None` when the code does not parse or rustc says nothing of it.
    pub async fn probed_type(&self, code: &str, mark: &str) -> Option<String> {
        let parsed = cell::parse(code).ok()?;
        let base = self.chain.last().cloned();
        let mut unit = Unit::statements(&parsed, base.as_deref());
        // The code's own items shadow the session's (a glob import) as they would.
        unit.items = parsed
            .items
            .iter()
            .map(|i| LayerItem {
                item: i.clone(),
                cell: 0,
                serde: false,
            })
            .collect();
        let mut plan = VarPlan::default();
        for (var, v) in &self.vars {
            if parsed.idents.contains(var) {
                plan.take.push((var.clone(), v.ty.clone()));
                if v.mutable {
                    plan.mutable.push(var.clone());
                }
            }
        }
        let key = hex::encode(&Sha256::digest(code.as_bytes())[..12]);
        let name = crate_name(&format!("probe{key}"));
        let (diags, _) = self.check(&unit, &name, &key, &plan, false).await.ok()?;
        diags
            .iter()
            .find(|d| d.children.iter().any(|c| c.message.contains(mark)))
            .and_then(vars::probed_type)
    }
}
