//! Check-only builds: rustc's errors for a unit with full paths in the types they
//! name, and the probes that learn the types of a cell's new bindings from them.

use super::codegen::generate;
use super::retry::{derive_failure, try_needs_debug};
use super::unit::{Unit, VarPlan};
use super::{code_error, failure, CompileError, Session};
use crate::compile::boxed;
use crate::compile::diagnostics::SourceMap;
use crate::compile::rustc::{self, RustcFailure};
use crate::compile::vars;
use std::ffi::OsString;

impl Session {
    /// A check-only build of the unit (with the probes of its new bindings, or
    /// without): rustc's errors, with full paths in the types they name.
    pub(super) async fn check(
        &self,
        unit: &Unit<'_>,
        name: &str,
        key: &str,
        plan: &VarPlan,
        probes: bool,
    ) -> Result<(Vec<rustc::Diagnostic>, SourceMap), CompileError> {
        let mut map = generate(unit, "__fc_check", plan, probes, self.snapshots());
        std::fs::create_dir_all(&self.cells_dir)
            .map_err(|e| CompileError::Io(format!("{}: {e}", self.cells_dir.display())))?;
        let dir = tempfile::Builder::new()
            .prefix("check-")
            .tempdir_in(&self.cells_dir)
            .map_err(|e| CompileError::Io(e.to_string()))?;
        let src = dir.path().join(format!("{name}.rs"));
        map.set_file(&src);
        std::fs::write(&src, &map.text).map_err(|e| CompileError::Io(e.to_string()))?;
        let mut args = self.cell_args(name, key, unit, plan);
        args.extend(
            [
                "--emit=metadata",
                "-Z",
                "trim-diagnostic-paths=no",
                "--verbose",
                "--out-dir",
            ]
            .map(OsString::from),
        );
        args.push(dir.path().into());
        args.push(src.into());
        let diags =
            match rustc::run_with_env(&self.toolchain.rustc, args, &[("RUSTC_BOOTSTRAP", "1")])
                .await
            {
                Ok(()) => vec![],
                Err(RustcFailure::Errors(d)) => d,
                Err(other) => return Err(failure(other, &map)),
            };
        Ok((diags, map))
    }

    /// Learns the types of the cell's new bindings with a check-only build. Returns
    /// each binding's type as rustc prints it, or why it cannot be kept.
    pub(super) async fn probe_types(
        &self,
        unit: &mut Unit<'_>,
        name: &str,
        key: &str,
        plan: &VarPlan,
    ) -> Result<Probed, CompileError> {
        loop {
            let (mut found, real, map) = self.probe_once(unit, name, key, plan).await?;
            if real.is_empty() {
                // A closure's result may wait for its arguments' integer defaults:
                // probe again with them given.
                let sig_args: Vec<(String, Vec<String>)> = found
                    .iter()
                    .filter_map(|p| Some((p.name.clone(), boxed::second_look(p.sig.as_ref()?)?)))
                    .collect();
                if !sig_args.is_empty() {
                    let again = VarPlan {
                        sig_args,
                        ..plan.clone()
                    };
                    if let Ok((second, real, _)) = self.probe_once(unit, name, key, &again).await {
                        if real.is_empty() {
                            for (p, q) in found.iter_mut().zip(second) {
                                if q.sig.is_some() {
                                    p.sig = q.sig;
                                }
                            }
                        }
                    }
                }
                return Ok(found);
            }
            if try_needs_debug(unit, &real, &map) {
                unit.debug_errors = true;
                continue;
            }
            return Err(code_error(&real, &map));
        }
    }

    /// One check-only build with probes: the types found, and the errors that are
    /// not the probes'.
    async fn probe_once(
        &self,
        unit: &Unit<'_>,
        name: &str,
        key: &str,
        plan: &VarPlan,
    ) -> Result<(Probed, Vec<rustc::Diagnostic>, SourceMap), CompileError> {
        let probes: Vec<String> = unit.parsed.bindings.clone();
        let (diags, map) = self.check(unit, name, key, plan, true).await?;
        let mut found: Probed = probes
            .iter()
            .map(|p| ProbedVar {
                name: p.clone(),
                ty: Err("rustc did not tell its type".to_string()),
                sig: None,
            })
            .collect();
        let mut real = Vec::new();
        for d in diags {
            let tag = d
                .spans
                .iter()
                .find(|s| s.is_primary)
                .and_then(|s| map.tag_at(s))
                .map(String::from);
            let slot = |var: &str, found: &mut Probed| found.iter_mut().position(|p| p.name == var);
            if let Some(var) = tag.as_deref().and_then(|t| t.strip_prefix("sig:")) {
                if let Some(i) = slot(var, &mut found) {
                    found[i].sig = vars::probed_type(&d);
                }
                continue;
            }
            match tag.as_deref().and_then(|t| t.strip_prefix("probe:")) {
                Some(var) => {
                    let ty = match (
                        d.code.as_ref().map(|c| c.code.as_str()),
                        vars::probed_type(&d),
                    ) {
                        (Some("E0308"), Some(ty)) => Ok(ty),
                        (Some("E0382"), _) => {
                            Err("it was moved before the end of the cell".to_string())
                        }
                        _ => Err(d.message.clone()),
                    };
                    if let Some(i) = slot(var, &mut found) {
                        found[i].ty = ty;
                    }
                }
                // The build settles derives that the fields do not allow.
                None if derive_failure(&d) && unit.items.iter().any(|i| i.serde) => {}
                None => real.push(d),
            }
        }
        Ok((found, real, map))
    }
}

/// Each new binding's type as rustc printed it, or why it has none.
pub(super) type Probed = Vec<ProbedVar>;

/// What the probe build learnt about one new binding.
#[derive(Debug, Clone)]
pub(super) struct ProbedVar {
    pub(super) name: String,
    /// Its type as rustc printed it, or why it has none.
    pub(super) ty: Result<String, String>,
    /// For a closure the cell binds, its signature as a function pointer type.
    pub(super) sig: Option<String>,
}
