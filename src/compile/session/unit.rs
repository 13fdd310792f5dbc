//! What one generated crate is made of (a [`Unit`]), what its code does with the
//! session's variables (a [`VarPlan`]), and the rustc arguments that build it against
//! the prelude, the session's crates and the layers it names.

use super::layers::{Layer, LayerItem};
use super::Session;
use crate::compile::boxed::Wrap;
use crate::compile::cell::ParsedCell;
use crate::compile::error_format::ErrorFormat;
use crate::compile::prelude;
use crate::compile::vars;
use std::ffi::OsString;

/// What one generated crate is made of.
pub(super) struct Unit<'a> {
    pub(super) parsed: &'a ParsedCell,
    /// A layer's items (none for a cell that only runs statements).
    pub(super) items: Vec<LayerItem>,
    pub(super) base: Option<&'a Layer>,
    /// Whether the crate is a layer, re-exporting its items to later cells.
    pub(super) is_layer: bool,
    /// Crates the layer links in (`extern crate`).
    pub(super) externs: Vec<String>,
    /// Types the code names beyond the variables it takes (a restore cell's).
    pub(super) types: Vec<String>,
    /// Whether the code uses the snapshot helpers (a saver's or a restore's); they
    /// make rustc load serde, so other cells go without.
    pub(super) glue: bool,
    /// How an error that reaches a `?` is shown (`%efmt`).
    pub(super) error_format: ErrorFormat,
    /// Whether `?` converts errors through their `Debug` form: set when one of the
    /// cell's errors is not a `std::error::Error` (see `retry::try_needs_debug`).
    pub(super) debug_errors: bool,
    /// The name cells use for tokio, when it is a dependency: `.await` runs on the
    /// session's tokio runtime.
    pub(super) tokio_name: Option<String>,
    /// rustc's optimisation level, and whether it is a tier-up (see `tiers`).
    pub(super) opt_level: u8,
    pub(super) tiered_up: bool,
    /// Built for this machine's CPU (`-C target-cpu=native`), as Numba builds: a
    /// cell that no other machine loads (see `tiers`).
    pub(super) native_cpu: bool,
}

impl<'a> Unit<'a> {
    /// A crate that only runs statements on top of `base`; the other kinds are this
    /// with a field or two changed.
    pub(super) fn statements(parsed: &'a ParsedCell, base: Option<&'a Layer>) -> Self {
        Unit {
            parsed,
            items: vec![],
            base,
            is_layer: false,
            externs: vec![],
            types: vec![],
            glue: false,
            error_format: ErrorFormat::default(),
            debug_errors: false,
            tokio_name: None,
            opt_level: crate::compile::session::DEFAULT_OPT_LEVEL,
            tiered_up: false,
            native_cpu: false,
        }
    }
}

/// What a cell's generated code does with session variables.
#[derive(Debug, Clone, Default)]
pub(super) struct VarPlan {
    /// Taken out of the store at the start: name and type.
    pub(super) take: Vec<(String, String)>,
    /// Those taken that were declared `let mut`.
    pub(super) mutable: Vec<String>,
    /// What a failing `?` may keep: the cell's new bindings with their types, also
    /// those the end of the cell cannot keep (moved later).
    pub(super) stageable: Vec<(String, String)>,
    /// New bindings that a failing `?` cannot put back (moved or borrowed there):
    /// the `?`'s index in [`ParsedCell::try_sites`] and the name.
    pub(super) unstaged: Vec<(usize, String)>,
    /// No failing `?` keeps bindings (the cell took too many tries to settle them).
    pub(super) no_staging: bool,
    /// Put back (or in) at the end: name and type as written in this crate.
    pub(super) put: Vec<(String, String)>,
    /// The new bindings put in boxed (closures, `impl Trait` values), and how.
    pub(super) wrapped: Vec<(String, Wrap)>,
    /// For the probe build: closures whose signature is probed with these argument
    /// types (see [`crate::compile::boxed::second_look`]).
    pub(super) sig_args: Vec<(String, Vec<String>)>,
    /// Removed from the store at the start (stale).
    pub(super) drop: Vec<String>,
    /// Taken variables the cell binds anew: put back with their old value and type if
    /// the cell panics.
    pub(super) keep: Vec<(String, String)>,
}

impl VarPlan {
    /// The statement that puts `var` of type `ty` in the store (boxed if it is kept
    /// boxed).
    pub(super) fn put_stmt(&self, var: &str, ty: &str) -> String {
        let wrap = self
            .wrapped
            .iter()
            .find(|(n, _)| n == var)
            .map(|(_, w)| *w)
            .unwrap_or_default();
        format!(
            "::ferrocell::__vars::put::<{ty}>({var:?}, {});",
            wrap.value(var)
        )
    }
}

impl Session {
    /// The rustc arguments shared by the check pass and the real build of a cell.
    pub(super) fn cell_args(
        &self,
        name: &str,
        metadata: &str,
        unit: &Unit,
        plan: &VarPlan,
    ) -> Vec<OsString> {
        let base = unit.base;
        let mut args = prelude::common_flags(
            &self.toolchain,
            &[self.prelude.dir.as_path(), self.cells_dir.as_path()],
        );
        args.extend(
            [
                "--crate-type",
                "dylib",
                "-A",
                "warnings",
                "--crate-name",
                name,
            ]
            .into_iter()
            .map(OsString::from),
        );
        args.push("-C".into());
        args.push(format!("metadata={metadata}").into());
        args.push("-C".into());
        args.push(format!("opt-level={}", unit.opt_level).into());
        if unit.native_cpu {
            args.push("-C".into());
            args.push("target-cpu=native".into());
        }
        args.push(self.settings.edition.flag().into());
        for dir in [&self.prelude.dir, &self.cells_dir] {
            args.push("-L".into());
            args.push(format!("dependency={}", dir.display()).into());
        }
        args.push("--extern".into());
        args.push(format!("ferrocell={}", self.prelude.lib.display()).into());
        if let Some(deps) = &self.deps {
            args.push("-L".into());
            args.push(format!("dependency={}", deps.dir.display()).into());
            for e in &deps.externs {
                args.push("--extern".into());
                args.push(format!("{}={}", e.name, e.path.display()).into());
            }
            // A layer that links crates in has their C libraries already.
            if unit.externs.is_empty() {
                args.extend(deps.native.rustc_args().into_iter().map(OsString::from));
            }
        }
        let mut crates: Vec<String> = base.map(|b| b.crate_name()).into_iter().collect();
        for ty in plan.take.iter().map(|(_, t)| t).chain(&unit.types) {
            crates.extend(vars::crates_in(ty));
        }
        crates.sort();
        crates.dedup();
        for c in crates.into_iter().filter(|c| c != name) {
            let lib = match (base, self.layer_libs.get(&c)) {
                (Some(b), _) if b.crate_name() == c => b.built.lib.clone(),
                (_, Some(lib)) => lib.clone(),
                _ => continue,
            };
            args.push("--extern".into());
            args.push(format!("{c}={}", lib.display()).into());
        }
        args
    }
}
