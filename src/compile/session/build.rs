//! Building a unit into a library: its cache key, the variables it takes and puts
//! back, and the builds retried until the put-backs compile (what settled is kept,
//! so that the same cell run again finds its library at once).

use super::check::ProbedVar;
use super::codegen::generate;
use super::retry;
use super::unit::{Unit, VarPlan};
use super::variables::VarOutcome;
use super::{crate_name, failure, BuiltCell, CompileError, Session};
use crate::compile::boxed::Wrap;
use crate::compile::cell::{ParsedCell, Timing};
use crate::compile::rustc::{self, RustcFailure};
use crate::compile::vars::{self, Kept, Var};
use sha2::{Digest, Sha256};
use std::sync::Arc;

impl Session {
    /// Builds `unit` into a library, or finds it in the cache: the cell's key, the
    /// variables it takes and puts back, and builds retried until the put-backs
    /// compile. Returns the library and the cell's key.
    pub(super) async fn compile(
        &self,
        unit: &mut Unit<'_>,
        code: &str,
        stale_vars: &[String],
    ) -> Result<(BuiltCell, String), CompileError> {
        unit.error_format = self.settings.error_format;
        (unit.opt_level, unit.tiered_up) = self.level_for(unit.parsed, code);
        // Layers may be sent to engines on other machines; so may a cell built
        // while a cluster is in use.
        unit.native_cpu = !unit.is_layer && !self.portable;
        // tokio under whatever name cells use for it.
        unit.tokio_name = self.deps.as_ref().and_then(|d| {
            d.crate_names()
                .into_iter()
                .find(|(own, _)| own == "tokio")
                .map(|(_, used)| used)
        });
        let parsed = unit.parsed;
        let snapshots = self.snapshots();
        let mut h = self.unit_hasher(unit, code, snapshots);
        let repeat = matches!(parsed.timing, Timing::Repeat { .. });

        // Which session variables the cell uses, and which are stale (see `build`).
        let (mut plan, mut outcome) = self.var_plan(parsed, stale_vars);
        for (n, t) in &plan.take {
            h.update(n.as_bytes());
            h.update(t.as_bytes());
            h.update([u8::from(plan.mutable.contains(n))]);
        }
        let key = hex::encode(&h.finalize()[..12]);
        let name = crate_name(&key);

        // Put back what the cell took (unless it binds the name again) and what it
        // binds. A `%timeit` body's bindings live in its closure: they rebind
        // nothing, and what it took is always put back.
        let rebinds = |n: &String| !repeat && parsed.bindings.contains(n);
        let mut puts: Vec<(String, Kept)> = Vec::new();
        plan.keep = plan
            .take
            .iter()
            .filter(|(n, _)| rebinds(n))
            .cloned()
            .collect();
        for (n, t) in &plan.take {
            if !rebinds(n) {
                let kept = Kept {
                    here: t.clone(),
                    later: t.clone(),
                    wrap: Wrap::None,
                };
                puts.push((n.clone(), kept));
            }
        }
        if !repeat && !parsed.bindings.is_empty() {
            self.probed_put_backs(unit, &name, &key, &plan, &mut puts, &mut outcome)
                .await?;
        }

        let mut stageable = puts.clone();
        let mut settled_no_staging = false;
        let known = self.settled.lock().expect("settled").get(&key).cloned();
        if let Some(s) = known {
            puts = s.puts;
            stageable = s.stageable;
            plan.keep = s.keep;
            plan.unstaged = s.unstaged;
            settled_no_staging = s.no_staging;
            unit.debug_errors = s.debug_errors;
            for (it, serde) in unit.items.iter_mut().zip(s.serde) {
                it.serde = serde;
            }
            outcome = s.outcome;
        }
        // Build; a put-back that does not compile (the value was moved, or borrows a
        // local) is dropped with a note and the build retried.
        for attempt in 0..10 {
            // Late tries go without keeping bindings at a failing `?` rather than fail.
            plan.no_staging = settled_no_staging || attempt >= 7;
            plan.put = puts
                .iter()
                .map(|(n, k)| (n.clone(), k.here.clone()))
                .collect();
            plan.stageable = stageable
                .iter()
                .map(|(n, k)| (n.clone(), k.here.clone()))
                .collect();
            plan.wrapped = stageable
                .iter()
                .filter(|(_, k)| k.wrap != Wrap::None)
                .map(|(n, k)| (n.clone(), k.wrap))
                .collect();
            let lib_key = lib_key(&key, unit, &plan);
            let symbol = format!("__fc_run_{key}_{lib_key}");
            let mut map = generate(unit, &symbol, &plan, false, snapshots);
            // One file per set of put-backs: the crate name stays (types name it), the
            // metadata and file differ.
            let lib = self.cells_dir.join(format!("lib{name}-{lib_key}.so"));
            let source_path = self.cells_dir.join(format!("{name}-{lib_key}.rs"));
            map.set_file(&source_path);
            let built = |compiled, outcome: &VarOutcome| BuiltCell {
                lib: lib.clone(),
                symbol: symbol.clone(),
                source_path: source_path.clone(),
                map: Arc::new(map.clone()),
                compiled,
                vars: outcome.clone(),
                args: vec![],
                opt_level: unit.opt_level,
                tiered_up: unit.tiered_up,
            };
            let final_outcome = final_outcome(&outcome, &plan, &puts, &stageable, parsed, &rebinds);
            let remember = |unit: &Unit, plan: &VarPlan| {
                let s = Settled {
                    puts: puts.clone(),
                    stageable: stageable.clone(),
                    keep: plan.keep.clone(),
                    unstaged: plan.unstaged.clone(),
                    no_staging: plan.no_staging,
                    debug_errors: unit.debug_errors,
                    serde: unit.items.iter().map(|i| i.serde).collect(),
                    outcome: outcome.clone(),
                };
                self.settled.lock().expect("settled").insert(key.clone(), s);
            };
            if lib.is_file() {
                remember(unit, &plan);
                return Ok((built(false, &final_outcome), key));
            }
            let io =
                |e: std::io::Error| CompileError::Io(format!("{}: {e}", self.cells_dir.display()));
            std::fs::create_dir_all(&self.cells_dir).map_err(io)?;
            std::fs::write(&source_path, &map.text).map_err(io)?;
            let tmp = tempfile::Builder::new()
                .prefix("building-")
                .tempdir_in(&self.cells_dir)
                .map_err(io)?;
            let out = tmp.path().join(format!("lib{name}-{lib_key}.so"));
            let mut args = self.cell_args(&name, &format!("{key}-{lib_key}"), unit, &plan);
            args.push("-o".into());
            args.push(out.clone().into());
            args.push(source_path.clone().into());
            match rustc::run(&self.toolchain.rustc, args).await {
                Ok(()) => {
                    std::fs::rename(&out, &lib).map_err(io)?;
                    remember(unit, &plan);
                    return Ok((built(true, &final_outcome), key));
                }
                Err(RustcFailure::Errors(diags)) => {
                    retry::after_errors(
                        diags,
                        &map,
                        unit,
                        &mut plan,
                        &mut puts,
                        &mut stageable,
                        &mut outcome,
                    )?;
                }
                Err(other) => return Err(failure(other, &map)),
            }
        }
        Err(CompileError::Toolchain(
            "the cell's variables could not be kept after several tries".into(),
        ))
    }

    /// The hash of what the crate is built from, before the variables it takes: the
    /// toolchain, the prelude, the settings, the layer below, the items, the crates
    /// linked in, the code and its timing.
    fn unit_hasher(&self, unit: &Unit, code: &str, snapshots: bool) -> Sha256 {
        let parsed = unit.parsed;
        let base = unit.base;
        let mut h = Sha256::new();
        for part in [
            self.toolchain.id.as_str(),
            self.prelude.id.as_str(),
            &unit.opt_level.to_string(),
            self.settings.edition.as_str(),
            self.settings.error_format.as_str(),
            base.map(|b| b.key.as_str()).unwrap_or("-"),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for it in &unit.items {
            h.update(it.item.snippet.text.as_bytes());
            h.update(it.cell.to_le_bytes());
        }
        for e in &unit.externs {
            h.update(e.as_bytes());
            h.update([0]);
        }
        // Which build of each crate: a saver, which names no layer, must not outlive one.
        for e in self.deps.iter().flat_map(|d| &d.externs) {
            h.update(e.path.as_os_str().as_encoded_bytes());
            h.update([0]);
        }
        h.update([
            u8::from(snapshots && unit.glue),
            u8::from(unit.is_layer),
            u8::from(unit.native_cpu),
        ]);
        if unit.native_cpu {
            // A cache shared by machines (a home directory on NFS) keeps one build
            // per kind of CPU.
            h.update(super::tiers::host_cpu().as_bytes());
        }
        h.update(code.as_bytes());
        h.update(format!("{:?}", parsed.timing).as_bytes());
        h
    }

    /// Which session variables the cell uses, and which are stale (see `build`): the
    /// plan that takes and drops them, and what that does to the session's variables.
    fn var_plan(&self, parsed: &ParsedCell, stale_vars: &[String]) -> (VarPlan, VarOutcome) {
        let mut plan = VarPlan::default();
        let mut outcome = VarOutcome::default();
        for (var, v) in &self.vars {
            if stale_vars.contains(var) {
                plan.drop.push(var.clone());
                outcome.removed.push(var.clone());
                outcome.notes.push(format!(
                    "`{var}` was dropped: its type `{}` was redefined or rebuilt by this cell (define it again)",
                    vars::display_type(&v.ty)
                ));
            } else if parsed.idents.contains(var) {
                plan.take.push((var.clone(), v.ty.clone()));
                if v.mutable {
                    plan.mutable.push(var.clone());
                }
            }
        }
        outcome.taken = plan.take.iter().map(|(n, _)| n.clone()).collect();
        (plan, outcome)
    }

    /// The put-backs of the cell's new bindings: their types from the probe build
    /// (cached by cell key), each written as later cells can name it, or dropped with a
    /// note when it cannot be kept.
    async fn probed_put_backs(
        &self,
        unit: &mut Unit<'_>,
        name: &str,
        key: &str,
        plan: &VarPlan,
        puts: &mut Vec<(String, Kept)>,
        outcome: &mut VarOutcome,
    ) -> Result<(), CompileError> {
        let cached = self
            .probe_cache
            .lock()
            .expect("probe cache")
            .get(key)
            .cloned();
        let probed = match cached {
            Some(p) => p,
            None => {
                let p = self.probe_types(unit, name, key, plan).await?;
                self.probe_cache
                    .lock()
                    .expect("probe cache")
                    .insert(key.to_string(), p.clone());
                p
            }
        };
        let dep_names = self
            .deps
            .as_ref()
            .map(|d| d.crate_names())
            .unwrap_or_default();
        for ProbedVar { name: var, ty, sig } in probed {
            let kept = match (ty, sig) {
                (Ok(t), Some(sig)) if t.contains("{closure") => {
                    vars::writable_closure(&sig, name, &dep_names)
                }
                (ty, _) => ty.and_then(|t| vars::writable(&t, name, &dep_names)),
            };
            match kept {
                Ok(kept) => puts.push((var, kept)),
                Err(why) => {
                    outcome.removed.push(var.clone());
                    outcome
                        .notes
                        .push(format!("`{var}` is not kept for later cells: {why}"));
                }
            }
        }
        Ok(())
    }
}

/// The key of one library of a cell: the cell's key with what its build settled on
/// (put-backs, derives, errors through `Debug`, `?` stagings).
fn lib_key(key: &str, unit: &Unit, plan: &VarPlan) -> String {
    let mut hk = Sha256::new();
    hk.update(key.as_bytes());
    for (n, t) in plan.put.iter().chain(&plan.stageable) {
        hk.update(n.as_bytes());
        hk.update(t.as_bytes());
    }
    for it in &unit.items {
        hk.update([u8::from(it.serde)]);
    }
    hk.update([u8::from(unit.debug_errors)]);
    for (n, _) in &plan.keep {
        hk.update(n.as_bytes());
        hk.update([2]);
    }
    hk.update([u8::from(plan.no_staging)]);
    for (site, n) in &plan.unstaged {
        hk.update(site.to_le_bytes());
        hk.update(n.as_bytes());
    }
    hex::encode(&hk.finalize()[..4])
}

/// What the cell does to the session's variables if it builds as planned: what the
/// store holds after it, after a panic, and what a failing `?` may keep.
fn final_outcome(
    outcome: &VarOutcome,
    plan: &VarPlan,
    puts: &[(String, Kept)],
    stageable: &[(String, Kept)],
    parsed: &ParsedCell,
    rebinds: &impl Fn(&String) -> bool,
) -> VarOutcome {
    let mut final_outcome = outcome.clone();
    // A new binding is as mutable as the cell declared it; a taken one as before.
    let mutable = |n: &String| {
        if rebinds(n) || !plan.take.iter().any(|(t, _)| t == n) {
            parsed.mutable.contains(n)
        } else {
            plan.mutable.contains(n)
        }
    };
    let var = |n: &String, ty: &String| {
        let v = Var {
            ty: ty.clone(),
            mutable: mutable(n),
        };
        (n.clone(), v)
    };
    final_outcome.stageable = stageable.iter().map(|(n, k)| var(n, &k.later)).collect();
    final_outcome.kept = puts.iter().map(|(n, k)| var(n, &k.later)).collect();
    // What the store holds when the cell panics or stops at a `?`.
    final_outcome.kept_on_panic = plan
        .take
        .iter()
        .filter(|(n, _)| {
            plan.keep.iter().any(|(k, _)| k == n)
                || plan.put.iter().any(|(p, _)| p == n) && !rebinds(n)
        })
        .map(|(n, ty)| {
            let var = Var {
                ty: ty.clone(),
                mutable: plan.mutable.contains(n),
            };
            (n.clone(), var)
        })
        .collect();
    final_outcome
}

/// What a cell's build settled on after its retries (put-backs dropped, derives
/// cleared, errors through `Debug`, bindings a `?` cannot keep): the same cell run
/// again starts from it (see [`Session::compile`]).
#[derive(Debug, Clone)]
pub(super) struct Settled {
    puts: Vec<(String, Kept)>,
    stageable: Vec<(String, Kept)>,
    keep: Vec<(String, String)>,
    unstaged: Vec<(usize, String)>,
    no_staging: bool,
    debug_errors: bool,
    serde: Vec<bool>,
    outcome: VarOutcome,
}
