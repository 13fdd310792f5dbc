//! The compiled state of a notebook session: a chain of item layers, and how a new
//! cell is turned into a library on top of it.
//!
//! Each cell becomes one dylib. A cell that defines items is a new *layer*: its
//! library `pub use`s the previous layer's items and adds its own, so earlier items
//! are never recompiled and a cell costs the same whether it is the 2nd or the 100th.
//! A new definition shadows the re-exported old one, which is what redefinition means.
//! Rust forbids an `impl` for a type from another crate, so a cell whose `impl` names
//! a type or trait of an earlier layer is merged with the layers from that one on: they
//! are rebuilt as one crate (usually a cell or two). A cell without items links the
//! latest layer and changes nothing.

use super::boxed::{self, Wrap};
use super::cell::{self, Item, ParsedCell, Timing};
use super::deps::BuiltDeps;
use super::diagnostics::{self, Origin, SourceMap};
use super::edition::Edition;
use super::error_format::ErrorFormat;
use super::prelude::{self, Prelude};
use super::rustc::{self, RustcFailure};
use super::toolchain::Toolchain;
use super::try_rewrite;
use super::vars::{self, Kept, Var, Vars};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

mod members;
pub use members::{ItemKind, ItemMember};
mod type_probe;

/// The optimisation level cells get unless `%opt` says otherwise. bench/opt.py
/// measured compile time plus run time of typical cells at each level: 1 made the
/// user wait least (0 compiles no faster and runs loops 5–20× slower; 2 and 3
/// compile slower and run no faster on notebook-sized work).
pub const DEFAULT_OPT_LEVEL: u8 = 1;

/// How cells are compiled, as the magics set it: the kernel keeps it across
/// sessions (`%reset`) and hands it to each new one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// rustc's `-C opt-level` (`%opt`).
    pub opt_level: u8,
    /// The edition cells are compiled in (`%edition`).
    pub edition: Edition,
    /// How an error that reaches a cell's `?` is shown (`%efmt`).
    pub error_format: ErrorFormat,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            opt_level: DEFAULT_OPT_LEVEL,
            edition: Edition::DEFAULT,
            error_format: ErrorFormat::default(),
        }
    }
}

/// A cell's item, with the execution count of the cell it came from.
#[derive(Debug, Clone)]
struct LayerItem {
    item: Item,
    cell: u64,
    /// The kernel derives serde's traits for it (see [`Item::derivable`]); cleared
    /// when its fields do not allow it.
    serde: bool,
}

/// One library of items in the chain.
#[derive(Debug)]
struct Layer {
    key: String,
    items: Vec<LayerItem>,
    /// Crates this layer links in for the cells above it (a `:dep` layer's).
    externs: Vec<String>,
    built: BuiltCell,
}

impl Layer {
    fn crate_name(&self) -> String {
        crate_name(&self.key)
    }

    fn defines(&self, name: &str) -> bool {
        self.items
            .iter()
            .any(|i| i.item.names.iter().any(|n| n == name))
    }
}

fn crate_name(key: &str) -> String {
    format!("fc_{key}")
}

/// A compiled cell, ready to run.
#[derive(Debug, Clone)]
pub struct BuiltCell {
    pub lib: PathBuf,
    pub symbol: String,
    pub source_path: PathBuf,
    pub map: Arc<SourceMap>,
    /// False when the library came from the cache.
    pub compiled: bool,
    /// What running it does to the session's variables.
    pub vars: VarOutcome,
    /// Passed to the library when it runs (a saver's variable names).
    pub args: Vec<String>,
}

/// Why a cell did not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// rustc errors (or a syntax error), rendered against the cell's lines.
    #[error("{summary}")]
    Code {
        summary: String,
        rendered: Vec<String>,
    },
    #[error("{0}")]
    Toolchain(String),
    #[error("the compile took longer than {} s and was stopped", rustc::COMPILE_TIMEOUT.as_secs())]
    TimedOut,
    #[error("{0}")]
    Io(String),
    /// A dependency cannot join the session.
    #[error("{0}")]
    Deps(String),
}

/// What a cell compiles to.
pub enum Compiled {
    /// Nothing to run (only comments or whitespace).
    Empty,
    Cell(Box<BuiltCell>),
}

/// The session's compiled items and how new cells are built.
pub struct Session {
    toolchain: Toolchain,
    prelude: Prelude,
    cells_dir: PathBuf,
    chain: Vec<Arc<Layer>>,
    /// How later cells are compiled (`%opt`, `%edition`, `%efmt`).
    pub settings: Settings,
    vars: Vars,
    /// Every layer library built in this session, by crate name: variables keep
    /// their types' crates alive after a merge replaced them in the chain.
    layer_libs: HashMap<String, PathBuf>,
    /// Probed binding types by cell key, so an unchanged cell is not probed again.
    probe_cache: Mutex<HashMap<String, Probed>>,
    /// What each cell's build settled on after retries, by cell key, so that an
    /// unchanged cell run again finds its library at once.
    settled: Mutex<HashMap<String, Settled>>,
    /// The crates built for the session (`:dep`, and serde for snapshots).
    deps: Option<BuiltDeps>,
    /// Which build of each crate the chain's layers link in: a crate is linked into
    /// one layer only, and a different build of it cannot join later.
    embedded: HashMap<String, PathBuf>,
    /// Where the runner writes variable snapshots, when it does.
    snapshot_dir: Option<PathBuf>,
    /// Savers built in this session, by type: they run after most cells, and a
    /// saver only changes with the crates (cleared when crates join).
    savers: HashMap<String, BuiltCell>,
}

/// What one generated crate is made of.
struct Unit<'a> {
    parsed: &'a ParsedCell,
    /// A layer's items (none for a cell that only runs statements).
    items: Vec<LayerItem>,
    base: Option<&'a Layer>,
    /// Whether the crate is a layer, re-exporting its items to later cells.
    is_layer: bool,
    /// Crates the layer links in (`extern crate`).
    externs: Vec<String>,
    /// Types the code names beyond the variables it takes (a restore cell's).
    types: Vec<String>,
    /// Whether the code uses the snapshot helpers (a saver's or a restore's); they
    /// make rustc load serde, so other cells go without.
    glue: bool,
    /// How an error that reaches a `?` is shown (`%efmt`).
    error_format: ErrorFormat,
    /// Whether `?` converts errors through their `Debug` form: set when one of the
    /// cell's errors is not a `std::error::Error` (see [`try_needs_debug`]).
    debug_errors: bool,
    /// The name cells use for tokio, when it is a dependency: `.await` runs on the
    /// session's tokio runtime.
    tokio_name: Option<String>,
}

impl<'a> Unit<'a> {
    /// A crate that only runs statements on top of `base`; the other kinds are this
    /// with a field or two changed.
    fn statements(parsed: &'a ParsedCell, base: Option<&'a Layer>) -> Self {
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
        }
    }
}

impl Session {
    pub fn new(toolchain: Toolchain, prelude: Prelude, cache: &std::path::Path) -> Self {
        let cells_dir = cache.join(&toolchain.id).join("cells");
        sweep_scratch(&cells_dir);
        Session {
            toolchain,
            prelude,
            cells_dir,
            chain: Vec::new(),
            settings: Settings::default(),
            vars: Vars::new(),
            layer_libs: HashMap::new(),
            probe_cache: Mutex::new(HashMap::new()),
            settled: Mutex::new(HashMap::new()),
            deps: None,
            embedded: HashMap::new(),
            snapshot_dir: None,
            savers: HashMap::new(),
        }
    }

    /// Tells the session where the runner keeps variable snapshots.
    pub fn set_snapshot_dir(&mut self, dir: PathBuf) {
        self.snapshot_dir = Some(dir);
    }

    /// Whether cells record snapshots of their variables (serde is built and the
    /// runner has a place for them).
    pub fn snapshots(&self) -> bool {
        self.snapshot_dir.is_some() && self.deps.as_ref().is_some_and(|d| d.snapshots())
    }

    /// Whether the variable has a snapshot to restore it from.
    pub fn has_snapshot(&self, name: &str) -> bool {
        self.snapshot_dir
            .as_ref()
            .is_some_and(|d| d.join(name).is_file())
    }

    /// The crates built for the session so far.
    pub fn deps(&self) -> Option<&BuiltDeps> {
        self.deps.as_ref()
    }

    /// Makes a built set of crates usable from the next cell on: a new layer links
    /// in the crates the chain does not have yet, and every later cell may name them.
    pub async fn attach_deps(&mut self, built: BuiltDeps) -> Result<(), CompileError> {
        let mut new = Vec::new();
        for e in built.externs.iter().filter(|e| !e.proc_macro) {
            match self.embedded.get(&e.name) {
                Some(p) if *p == e.path => {}
                Some(_) => {
                    return Err(CompileError::Deps(format!(
                        "`{}` is already loaded in this session as another build (another version or other features); restart the kernel to change it",
                        e.name
                    )))
                }
                None => new.push(e.name.clone()),
            }
        }
        let previous = self.deps.replace(built.clone());
        self.savers.clear();
        if new.is_empty() {
            return Ok(());
        }
        let parsed = ParsedCell::default();
        let base = self.chain.last().cloned();
        let mut unit = Unit {
            is_layer: true,
            externs: new.clone(),
            ..Unit::statements(&parsed, base.as_deref())
        };
        let ident: String = built
            .externs
            .iter()
            .map(|e| format!("{}={}\n", e.name, e.path.display()))
            .collect();
        let (built_layer, key) = match self.compile(&mut unit, &ident, &[]).await {
            Ok(r) => r,
            Err(e) => {
                self.deps = previous;
                return Err(match e {
                    CompileError::Code { summary, rendered } => CompileError::Deps(format!(
                        "the crates could not be linked into the session ({summary}); if an earlier :dep built them with other features, restart the kernel\n{}",
                        rendered.join("\n")
                    )),
                    other => other,
                });
            }
        };
        for e in built.externs.iter().filter(|e| new.contains(&e.name)) {
            self.embedded.insert(e.name.clone(), e.path.clone());
        }
        self.layer_libs
            .insert(crate_name(&key), built_layer.lib.clone());
        self.chain.push(Arc::new(Layer {
            key,
            items: vec![],
            externs: new,
            built: built_layer,
        }));
        Ok(())
    }

    pub fn toolchain(&self) -> &Toolchain {
        &self.toolchain
    }

    pub fn prelude(&self) -> &Prelude {
        &self.prelude
    }

    /// Forgets all items and variables (for `%reset`).
    pub async fn clear(&mut self) -> Result<(), CompileError> {
        self.chain.clear();
        self.vars.clear();
        self.embedded.clear();
        match self.deps.take() {
            Some(d) => self.attach_deps(d).await,
            None => Ok(()),
        }
    }

    /// The source maps of every layer's library, to place panics in earlier cells.
    pub fn source_maps(&self) -> impl Iterator<Item = (&PathBuf, &Arc<SourceMap>)> {
        self.chain
            .iter()
            .map(|l| (&l.built.source_path, &l.built.map))
    }

    /// Names of the items the session defines now, newest first.
    pub fn item_names(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for layer in self.chain.iter().rev() {
            for it in layer.items.iter().rev() {
                for n in &it.item.names {
                    if seen.insert(n.clone()) {
                        out.push(n.clone());
                    }
                }
            }
        }
        out
    }

    /// The source of the newest definition of `name` as the user wrote it, with the
    /// cell it came from.
    pub fn item_source(&self, name: &str) -> Option<(u64, String)> {
        self.chain.iter().rev().find_map(|l| {
            l.items
                .iter()
                .rev()
                .find(|i| i.item.names.iter().any(|n| n == name))
                .map(|i| (i.cell, i.item.snippet.as_written()))
        })
    }

    /// Compiles a cell (or finds it in the cache). On success its items join the
    /// session. `cell` is its execution count, used to name earlier cells in errors.
    pub async fn build(&mut self, code: &str, cell: u64) -> Result<Compiled, CompileError> {
        self.build_timed(code, cell, Timing::None).await
    }

    /// [`Session::build`], with the body wrapped for `%time` or `%timeit`.
    pub async fn build_timed(
        &mut self,
        code: &str,
        cell: u64,
        timing: Timing,
    ) -> Result<Compiled, CompileError> {
        let parsed = cell::parse(code).map_err(|e| CompileError::Code {
            summary: e.message.clone(),
            rendered: vec![diagnostics::render_syntax(
                &e.message, code, e.line, e.column,
            )],
        })?;
        if parsed.items.is_empty() && parsed.statements.is_empty() && parsed.value.is_none() {
            return Ok(Compiled::Empty);
        }
        if matches!(timing, Timing::Repeat { .. }) && parsed.uses_await {
            return Err(CompileError::Code {
                summary: "`.await` cannot be used in a %timeit cell".into(),
                rendered: vec!["error: `.await` cannot be used in a %timeit cell; time the awaiting cell with %time".into()],
            });
        }
        if timing != Timing::None && parsed.uses_try {
            return Err(CompileError::Code {
                summary: "`?` cannot be used in a timed cell".into(),
                rendered: vec!["error: `?` cannot be used in a %time or %timeit cell; handle the error with match or unwrap".into()],
            });
        }
        let parsed = ParsedCell { timing, ..parsed };
        if parsed.items.is_empty() || parsed.items.iter().all(|i| self.is_current(i)) {
            // No items, or every item is already defined exactly so (an unchanged
            // cell run again): only the statements need a library.
            let base = self.chain.last().cloned();
            let statements = ParsedCell {
                items: vec![],
                ..parsed.clone()
            };
            let mut unit = Unit::statements(&statements, base.as_deref());
            let (built, _) = self.compile(&mut unit, code, &[]).await?;
            return Ok(Compiled::Cell(Box::new(built)));
        }
        let derive = self.snapshots();
        let new: Vec<LayerItem> = parsed
            .items
            .iter()
            .map(|i| LayerItem {
                item: i.clone(),
                cell,
                serde: derive && i.derivable,
            })
            .collect();
        let from = self.merge_point(&parsed.items);
        let mut items: Vec<LayerItem> = self.chain[from..]
            .iter()
            .flat_map(|l| l.items.iter().cloned())
            .collect();
        items.extend(new);
        let items = without_replaced(items);
        let base = from.checked_sub(1).map(|i| self.chain[i].clone());
        // Variables cannot follow when their type's layer is rebuilt, or when the
        // cell defines their type anew: like evcxr, they are dropped, and named.
        let rebuilt: Vec<String> = self.chain[from..].iter().map(|l| l.crate_name()).collect();
        let redefined: Vec<&String> = parsed.items.iter().flat_map(|i| &i.names).collect();
        let stale: Vec<String> = self
            .vars
            .iter()
            .filter(|(_, v)| {
                vars::crates_in(&v.ty).iter().any(|c| rebuilt.contains(c))
                    || redefined.iter().any(|n| vars::names_type(&v.ty, n))
            })
            .map(|(name, _)| name.clone())
            .collect();
        // A merged layer links in what the layers it replaces linked in.
        let externs: Vec<String> = self.chain[from..]
            .iter()
            .flat_map(|l| l.externs.iter().cloned())
            .collect();
        let mut unit = Unit {
            items,
            is_layer: true,
            externs,
            ..Unit::statements(&parsed, base.as_deref())
        };
        let (built, key) = self.compile(&mut unit, code, &stale).await?;
        let Unit { items, externs, .. } = unit;
        self.chain.truncate(from);
        self.layer_libs.insert(crate_name(&key), built.lib.clone());
        self.chain.push(Arc::new(Layer {
            key,
            items,
            externs,
            built: built.clone(),
        }));
        Ok(Compiled::Cell(Box::new(built)))
    }

    /// Whether `item` is, to the letter, the current definition of its names.
    fn is_current(&self, item: &Item) -> bool {
        let found = self.chain.iter().rev().find_map(|l| {
            l.items
                .iter()
                .rev()
                .find(|i| match (&item.impl_key, &i.item.impl_key) {
                    (Some(a), Some(b)) => a == b,
                    (None, None) => !item.names.is_empty() && i.item.names == item.names,
                    _ => false,
                })
        });
        found.is_some_and(|i| i.item.snippet.text == item.snippet.text)
    }

    /// The first layer that must be rebuilt with the new items, or the chain's
    /// length for a plain new layer. It is the oldest layer that either defines a type
    /// or trait an `impl` of the cell names (Rust wants an impl in its type's crate),
    /// or defines a name the cell redefines: later items that use the old
    /// definition are rebuilt with the new one, as in a single block of code.
    fn merge_point(&self, items: &[Item]) -> usize {
        let own: HashSet<&str> = items
            .iter()
            .flat_map(|i| i.names.iter().map(String::as_str))
            .collect();
        let mut from = self.chain.len();
        for item in items.iter().filter(|i| !self.is_current(i)) {
            for name in &item.names {
                if let Some(pos) = self.chain.iter().rposition(|l| l.defines(name)) {
                    from = from.min(pos);
                }
            }
        }
        for item in items.iter().filter(|i| i.impl_key.is_some()) {
            for name in item.mentions.iter().filter(|n| !own.contains(n.as_str())) {
                if let Some(pos) = self.chain.iter().rposition(|l| l.defines(name)) {
                    from = from.min(pos);
                }
            }
        }
        from
    }

    /// The rustc arguments shared by the check pass and the real build of a cell.
    fn cell_args(&self, name: &str, metadata: &str, unit: &Unit, plan: &VarPlan) -> Vec<OsString> {
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
        args.push(format!("opt-level={}", self.settings.opt_level).into());
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

    /// A check-only build of the unit (with the probes of its new bindings, or
    /// without): rustc's errors, with full paths in the types they name.
    async fn check(
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
    async fn probe_types(
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

    async fn compile(
        &self,
        unit: &mut Unit<'_>,
        code: &str,
        stale_vars: &[String],
    ) -> Result<(BuiltCell, String), CompileError> {
        unit.error_format = self.settings.error_format;
        // tokio under whatever name cells use for it.
        unit.tokio_name = self.deps.as_ref().and_then(|d| {
            d.crate_names()
                .into_iter()
                .find(|(own, _)| own == "tokio")
                .map(|(_, used)| used)
        });
        let parsed = unit.parsed;
        let base = unit.base;
        let snapshots = self.snapshots();
        let mut h = Sha256::new();
        for part in [
            self.toolchain.id.as_str(),
            self.prelude.id.as_str(),
            &self.settings.opt_level.to_string(),
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
        h.update([u8::from(snapshots && unit.glue), u8::from(unit.is_layer)]);
        h.update(code.as_bytes());
        h.update(format!("{:?}", parsed.timing).as_bytes());
        let repeat = matches!(parsed.timing, Timing::Repeat { .. });

        // Which session variables the cell uses, and which are stale (see `build`).
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
            let cached = self
                .probe_cache
                .lock()
                .expect("probe cache")
                .get(&key)
                .cloned();
            let probed = match cached {
                Some(p) => p,
                None => {
                    let p = self.probe_types(unit, &name, &key, &plan).await?;
                    self.probe_cache
                        .lock()
                        .expect("probe cache")
                        .insert(key.clone(), p.clone());
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
                        vars::writable_closure(&sig, &name, &dep_names)
                    }
                    (ty, _) => ty.and_then(|t| vars::writable(&t, &name, &dep_names)),
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
            let lib_key = hex::encode(&hk.finalize()[..4]);
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
            };
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
                    for d in &diags {
                        let tags: Vec<(bool, Option<&str>)> = d
                            .spans
                            .iter()
                            .map(|s| (s.is_primary, map.tag_at(s)))
                            .collect();
                        tracing::debug!(code = ?d.code.as_ref().map(|c| &c.code), message = %d.message, ?tags, "cell build error");
                    }
                    // Derived serde traits that the fields do not allow are dropped.
                    if drop_failed_derives(&diags, &map, &mut unit.items) {
                        continue;
                    }
                    if try_needs_debug(unit, &diags, &map) {
                        unit.debug_errors = true;
                        continue;
                    }
                    // A boxed closure that is `FnMut` or `FnOnce`, not `Fn`.
                    if narrow_closures(&diags, &map, &mut puts, &mut stageable) {
                        continue;
                    }
                    // A binding that a failing `?` cannot put back there (moved, or
                    // borrowed by what the `?` applies to) is not kept at that `?`.
                    // As with put-backs, borrows that cannot be kept go first: they
                    // make what they borrow look unmovable.
                    let staging = |d: &&rustc::Diagnostic, primary_only: bool| {
                        d.spans
                            .iter()
                            .filter(|s| s.is_primary || !primary_only)
                            .filter_map(|s| staging_tag(map.tag_at(s)?))
                            .filter(|p| !plan.unstaged.contains(p))
                            .collect::<Vec<_>>()
                    };
                    let borrow = |d: &&rustc::Diagnostic| {
                        d.code
                            .as_ref()
                            .is_some_and(|c| BORROWS.contains(&c.code.as_str()))
                    };
                    let mut unstaged: Vec<(usize, String)> = diags
                        .iter()
                        .filter(borrow)
                        .flat_map(|d| staging(&d, false))
                        .collect();
                    unstaged.sort();
                    unstaged.dedup();
                    if !unstaged.is_empty() {
                        plan.unstaged.extend(unstaged);
                        continue;
                    }

                    // The put-back may be the primary span (a moved value) or a
                    // secondary one ("requires that `v` is borrowed for 'static").
                    // A closure that borrows names the put-back in a note ("function
                    // requires argument type to outlive `'static`").
                    let failed: Vec<(String, Option<String>, String)> = diags
                        .iter()
                        .filter_map(|d| {
                            let var = d
                                .spans
                                .iter()
                                .chain(d.children.iter().flat_map(|c| &c.spans))
                                .filter_map(|s| map.tag_at(s))
                                .find_map(|t| t.strip_prefix("put:"))?;
                            Some((
                                var.to_string(),
                                d.code.as_ref().map(|c| c.code.clone()),
                                d.message.clone(),
                            ))
                        })
                        .collect();
                    let is_borrow =
                        |c: &Option<String>| c.as_deref().is_some_and(|c| BORROWS.contains(&c));
                    // A borrow that cannot be kept also makes its referent look moved:
                    // drop the borrows first and try again.
                    let any_borrow = failed.iter().any(|(_, c, _)| is_borrow(c));
                    let mut retry = false;
                    // A taken variable the cell moved cannot be restored after a panic.
                    let unkept: Vec<String> = diags
                        .iter()
                        .flat_map(|d| d.spans.iter().filter_map(|s| map.tag_at(s)))
                        .filter_map(|t| t.strip_prefix("keep:").map(String::from))
                        .collect();
                    if !unkept.is_empty() {
                        plan.keep.retain(|(n, _)| !unkept.contains(n));
                        retry = true;
                    }
                    for (var, code, message) in failed {
                        if any_borrow && !is_borrow(&code) {
                            continue;
                        }
                        let why = match code.as_deref() {
                            Some("E0382") | Some("E0505") => {
                                format!("`{var}` was moved by this cell, so it is no longer a session variable")
                            }
                            _ if is_borrow(&code) => format!(
                                "`{var}` is not kept for later cells: it borrows from a value that does not outlive the cell{}",
                                if parsed.closures.iter().any(|(n, _)| *n == var) {
                                    " (a `move` closure owns what it captures)"
                                } else {
                                    ""
                                }
                            ),
                            _ => format!("`{var}` is not kept for later cells: {message}"),
                        };
                        if puts.iter().any(|(n, _)| *n == var) {
                            puts.retain(|(n, _)| *n != var);
                            outcome.removed.push(var);
                            outcome.notes.push(why);
                            retry = true;
                        }
                    }
                    if !retry {
                        // The put-backs compile: what fails is a `?` keeping a binding.
                        let mut unstaged: Vec<(usize, String)> =
                            diags.iter().flat_map(|d| staging(&d, true)).collect();
                        unstaged.sort();
                        unstaged.dedup();
                        if unstaged.is_empty() {
                            return Err(code_error(&diags, &map));
                        }
                        plan.unstaged.extend(unstaged);
                    }
                }
                Err(other) => return Err(failure(other, &map)),
            }
        }
        Err(CompileError::Toolchain(
            "the cell's variables could not be kept after several tries".into(),
        ))
    }

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

    /// A saver: a library that snapshots the variables of one type where they are,
    /// in the runner; their names come with it when it runs. Cells themselves do not
    /// serialise (each would compile serde's code for its types, which costs more
    /// than the cell); the kernel runs savers after a cell that changed variables.
    /// A saver names no layer, only the crates of its type, so one serves the whole
    /// session, and later sessions, from the cache.
    pub async fn build_saver(&mut self, ty: &str) -> Result<Option<BuiltCell>, CompileError> {
        if !self.snapshots() {
            return Ok(None);
        }
        if let Some(built) = self.savers.get(ty) {
            return Ok(Some(built.clone()));
        }
        // The first argument says whether to wait for the snapshot, the rest name
        // the variables. The child that writes them forgets its copies rather than
        // drop them: dropping may act on the world (a temporary directory's `Drop`).
        let code = format!(
            "{{ let __fc_args = ::ferrocell::__runner::args();\n\
             let (__fc_mode, __fc_names) = __fc_args.split_first().expect(\"a saver's arguments\");\n\
             ::ferrocell::__vars::save_snapshots(__fc_names, __fc_mode == \"wait\", &mut |__fc_name: &str| {{\n\
             let __fc_v = ::ferrocell::__vars::take::<{ty}>(__fc_name);\n\
             {{ use __fc_snap::{{ViaSerde as _, NoSerde as _}}; (&__fc_snap::Save(&__fc_v)).__fc_save(__fc_name); }}\n\
             ::std::mem::forget(__fc_v);\n\
             }}); }}"
        );
        let mut parsed = cell::parse(&code).map_err(|e| CompileError::Code {
            summary: e.message.clone(),
            rendered: vec![e.message],
        })?;
        // It names no session variable; the names come at run time.
        parsed.idents.clear();
        let mut unit = Unit {
            types: vec![ty.to_string()],
            glue: true,
            ..Unit::statements(&parsed, None)
        };
        let (built, _) = self.compile(&mut unit, &code, &[]).await?;
        self.savers.insert(ty.to_string(), built.clone());
        Ok(Some(built))
    }

    /// Builds a cell that runs elsewhere (on cluster engines), where the variables
    /// are those of `scope` and of the session (which the engines are sent).
    pub async fn build_in_scope(
        &mut self,
        code: &str,
        cell: u64,
        scope: &Vars,
    ) -> Result<Compiled, CompileError> {
        let mut vars = scope.clone();
        vars.extend(self.vars.clone());
        std::mem::swap(&mut self.vars, &mut vars);
        let built = self.build(code, cell).await;
        std::mem::swap(&mut self.vars, &mut vars);
        built
    }

    /// The libraries of the current chain of layers: what a cell may link to, and
    /// so what an engine on another host needs before it loads one.
    pub fn layer_lib_paths(&self) -> Vec<PathBuf> {
        self.chain.iter().map(|l| l.built.lib.clone()).collect()
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

    /// A cell for a new runner that puts back every variable with a snapshot, by
    /// deserialising it as its known type. Its value lists the names it restored.
    /// `None` when no variable has a snapshot.
    ///
    /// `only` limits it to some variables (the ones a `%%parallel processes` body
    /// uses, for its workers); at run time its arguments may narrow that further to
    /// the ones a worker lacks.
    pub async fn build_restore(
        &mut self,
        only: Option<&[String]>,
    ) -> Result<Option<BuiltCell>, CompileError> {
        let vars: Vec<(String, String)> = self
            .vars
            .iter()
            .filter(|(n, _)| self.has_snapshot(n))
            .filter(|(n, _)| only.is_none_or(|o| o.contains(n)))
            .map(|(n, v)| (n.clone(), v.ty.clone()))
            .collect();
        if vars.is_empty() || !self.snapshots() {
            return Ok(None);
        }
        match self.compile_restore(&vars).await {
            Err(e @ CompileError::Code { .. }) if vars.len() > 1 => {
                let CompileError::Code { summary, .. } = &e else {
                    unreachable!()
                };
                // A type whose snapshot cannot be read back (one that borrows, such
                // as `&'static str`) must not cost the other variables theirs: keep
                // those that build on their own.
                tracing::info!(
                    "the restore cell did not compile ({summary}); trying each variable"
                );
                let mut good = Vec::new();
                for v in &vars {
                    if self.compile_restore(std::slice::from_ref(v)).await.is_ok() {
                        good.push(v.clone());
                    }
                }
                if good.is_empty() {
                    return Err(e);
                }
                self.compile_restore(&good).await.map(Some)
            }
            r => r.map(Some),
        }
    }

    /// Builds the cell that restores `vars` (name, type) from their snapshots.
    async fn compile_restore(
        &mut self,
        vars: &[(String, String)],
    ) -> Result<BuiltCell, CompileError> {
        let mut code = String::from(
            "{\nlet mut __fc_back: ::std::vec::Vec<&str> = ::std::vec::Vec::new();\n\
             let __fc_want = ::ferrocell::__runner::args();\n",
        );
        for (n, ty) in vars {
            code.push_str(&format!(
                "if __fc_want.is_empty() || __fc_want.iter().any(|w| w == {n:?}) {{ \
                 if let ::std::option::Option::Some(__fc_v) = {{ use __fc_snap::{{ViaDeserialize as _, NoDeserialize as _}}; \
                 (&__fc_snap::Load::<{ty}>(::std::marker::PhantomData)).__fc_load({n:?}) }} \
                 {{ ::ferrocell::__vars::put::<{ty}>({n:?}, __fc_v); __fc_back.push({n:?}); }} }}\n"
            ));
        }
        code.push_str("__fc_back\n}");
        let mut parsed = cell::parse(&code).map_err(|e| CompileError::Code {
            summary: e.message.clone(),
            rendered: vec![e.message],
        })?;
        // It puts variables in; it must take none (a type path may share a name).
        parsed.idents.clear();
        let base = self.chain.last().cloned();
        let mut unit = Unit {
            types: vars.iter().map(|(_, t)| t.clone()).collect(),
            glue: true,
            ..Unit::statements(&parsed, base.as_deref())
        };
        let (built, _) = self.compile(&mut unit, &code, &[]).await?;
        Ok(built)
    }
}

/// rustc's errors (at least one), told against the cell's lines.
fn code_error(diags: &[rustc::Diagnostic], map: &SourceMap) -> CompileError {
    CompileError::Code {
        summary: diags[0].message.clone(),
        rendered: diags.iter().map(|d| diagnostics::render(d, map)).collect(),
    }
}

fn failure(f: RustcFailure, map: &SourceMap) -> CompileError {
    match f {
        RustcFailure::Errors(diags) => code_error(&diags, map),
        RustcFailure::Crashed(s) => CompileError::Toolchain(s),
        RustcFailure::Spawn(e) => CompileError::Toolchain(format!("cannot run rustc: {e}")),
        RustcFailure::TimedOut => CompileError::TimedOut,
    }
}

/// Each new binding's type as rustc printed it, or why it has none.
type Probed = Vec<ProbedVar>;

/// What the probe build learnt about one new binding.
#[derive(Debug, Clone)]
struct ProbedVar {
    name: String,
    /// Its type as rustc printed it, or why it has none.
    ty: Result<String, String>,
    /// For a closure the cell binds, its signature as a function pointer type.
    sig: Option<String>,
}

/// What a cell's generated code does with session variables.
#[derive(Debug, Clone, Default)]
struct VarPlan {
    /// Taken out of the store at the start: name and type.
    take: Vec<(String, String)>,
    /// Those taken that were declared `let mut`.
    mutable: Vec<String>,
    /// What a failing `?` may keep: the cell's new bindings with their types, also
    /// those the end of the cell cannot keep (moved later).
    stageable: Vec<(String, String)>,
    /// New bindings that a failing `?` cannot put back (moved or borrowed there):
    /// the `?`'s index in [`ParsedCell::try_sites`] and the name.
    unstaged: Vec<(usize, String)>,
    /// No failing `?` keeps bindings (the cell took too many tries to settle them).
    no_staging: bool,
    /// Put back (or in) at the end: name and type as written in this crate.
    put: Vec<(String, String)>,
    /// The new bindings put in boxed (closures, `impl Trait` values), and how.
    wrapped: Vec<(String, Wrap)>,
    /// For the probe build: closures whose signature is probed with these argument
    /// types (see [`boxed::second_look`]).
    sig_args: Vec<(String, Vec<String>)>,
    /// Removed from the store at the start (stale).
    drop: Vec<String>,
    /// Taken variables the cell binds anew: put back with their old value and type if
    /// the cell panics.
    keep: Vec<(String, String)>,
}

impl VarPlan {
    /// The statement that puts `var` of type `ty` in the store (boxed if it is kept
    /// boxed).
    fn put_stmt(&self, var: &str, ty: &str) -> String {
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

/// Narrows boxed closures that rustc says are `FnMut` or `FnOnce` rather than `Fn`
/// (E0525 at a put-back, see [`boxed::narrowed`]). Returns whether any changed.
fn narrow_closures(
    diags: &[rustc::Diagnostic],
    map: &SourceMap,
    puts: &mut [(String, Kept)],
    stageable: &mut [(String, Kept)],
) -> bool {
    let mut changed = false;
    for d in diags
        .iter()
        .filter(|d| d.code.as_ref().is_some_and(|c| c.code == "E0525"))
    {
        let var = d.spans.iter().filter_map(|s| map.tag_at(s)).find_map(|t| {
            t.strip_prefix("put:")
                .or_else(|| staging_tag(t).map(|_| t.rsplit(':').next().unwrap_or_default()))
        });
        let Some(var) = var else { continue };
        for (n, k) in puts.iter_mut().chain(stageable.iter_mut()) {
            if n == var && k.wrap == Wrap::Box {
                if let (Some(here), Some(later)) = (
                    boxed::narrowed(&k.here, &d.message),
                    boxed::narrowed(&k.later, &d.message),
                ) {
                    k.here = here;
                    k.later = later;
                    changed = true;
                }
            }
        }
    }
    changed
}

/// What a cell's build settled on after its retries (put-backs dropped, derives
/// cleared, errors through `Debug`, bindings a `?` cannot keep): the same cell run
/// again starts from it (see [`Session::compile`]).
#[derive(Debug, Clone)]
struct Settled {
    puts: Vec<(String, Kept)>,
    stageable: Vec<(String, Kept)>,
    keep: Vec<(String, String)>,
    unstaged: Vec<(usize, String)>,
    no_staging: bool,
    debug_errors: bool,
    serde: Vec<bool>,
    outcome: VarOutcome,
}

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

/// Removes the scratch directories of builds and checks that a process which exited
/// in the middle of them left behind (an hour old: another kernel may be using a
/// newer one).
fn sweep_scratch(cells_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(cells_dir) else {
        return;
    };
    let hour = std::time::Duration::from_secs(3600);
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let scratch = name.starts_with("check-") || name.starts_with("building-");
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > hour));
        if scratch && old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Drops items that a later item of the same merged layer redefines.
fn without_replaced(items: Vec<LayerItem>) -> Vec<LayerItem> {
    let mut names: HashSet<String> = HashSet::new();
    let mut impls: Vec<cell::ImplKey> = Vec::new();
    let mut keep = Vec::new();
    for it in items.into_iter().rev() {
        let replaced = match &it.item.impl_key {
            Some(k) => impls.iter().any(|later| {
                later.self_ty == k.self_ty
                    && later.trait_path == k.trait_path
                    && (k.trait_path.is_some()
                        || later.methods.iter().any(|m| k.methods.contains(m)))
            }),
            None => it.item.names.iter().any(|n| names.contains(n)),
        };
        if replaced {
            continue;
        }
        names.extend(it.item.names.iter().cloned());
        if let Some(k) = &it.item.impl_key {
            impls.push(k.clone());
        }
        keep.push(it);
    }
    keep.reverse();
    keep
}

/// Writes the crate for a cell: imports, items (for a layer), and the entry function
/// holding the statements and the display of the value.
fn generate(unit: &Unit, symbol: &str, plan: &VarPlan, probes: bool, snapshots: bool) -> SourceMap {
    let parsed = unit.parsed;
    let mut m = SourceMap::default();
    m.set_cell_source(&parsed.source);
    // The second: a body that only loops (`loop {}`) has `()` as its type, as in
    // any closure; rustc's future-compatibility lint about that is an error by default.
    m.glue("#![allow(warnings)]");
    m.glue("#![allow(unknown_lints, dependency_on_unit_never_type_fallback)]");
    let vis = if unit.is_layer { "pub " } else { "" };
    match unit.base {
        Some(b) => m.glue(&format!("{vis}use {}::*;", b.crate_name())),
        None => m.glue(&format!("{vis}use ::ferrocell::prelude::*;")),
    }
    for e in &unit.externs {
        m.glue(&format!("extern crate {e};"));
    }
    if snapshots && unit.glue {
        m.glue(SNAPSHOT_GLUE);
    }
    let newest = unit.items.iter().map(|i| i.cell).max();
    for (index, it) in unit.items.iter().enumerate() {
        let origin_cell = (Some(it.cell) != newest).then_some(it.cell);
        if it.serde {
            m.tagged(
                "#[derive(::serde_derive::Serialize, ::serde_derive::Deserialize)]",
                &format!("derive:{index}"),
            );
        }
        let s = &it.item.snippet;
        m.code(
            &s.text,
            s.column,
            Origin {
                cell: origin_cell,
                line: s.line,
            },
        );
        m.mark_inserted(&s.inserted);
    }
    m.glue(&format!("#[unsafe(no_mangle)]\npub fn {symbol}() {{"));
    if let Some(tokio) = &unit.tokio_name {
        // One multi-thread runtime for the session, entered by every cell: tasks a
        // cell spawns run on after it, and later cells can await their handles.
        m.glue(&format!(
            "let __fc_tokio = ::ferrocell::__async::shared(|| ::{tokio}::runtime::Builder::new_multi_thread().enable_all().build().expect(\"a tokio runtime for the session\"));\n\
             let __fc_tokio_entered = __fc_tokio.enter();"
        ));
    }
    for var in &plan.drop {
        m.glue(&format!("::ferrocell::__vars::remove({var:?});"));
    }
    for (var, ty) in &plan.take {
        m.tagged(
            &format!(
                "let {}{var}: {ty} = ::ferrocell::__vars::take::<{ty}>({var:?});",
                if plan.mutable.contains(var) {
                    "mut "
                } else {
                    ""
                }
            ),
            // An immutable one's tag lets an error's "make it mutable" help be told
            // in the user's terms.
            &if plan.mutable.contains(var) {
                format!("take:{var}")
            } else {
                format!("take-imm:{var}")
            },
        );
    }
    // No failure may take the session's variables with it: the cell runs in a
    // closure that borrows them, and they are put back whether it ends, panics or
    // stops at a `?`.
    let guarded = !plan.take.is_empty();
    if guarded {
        m.glue("let mut __fc_failed = false;");
        m.glue("let __fc_caught = ::ferrocell::__vars::guarded(::std::boxed::Box::new(|| {");
    }
    match parsed.timing {
        Timing::None => {}
        Timing::Once => m.glue("let __fc_timer = ::ferrocell::__timing::Timer::start();"),
        Timing::Repeat { .. } => m.glue("let mut __fc_body = || {"),
    }
    // `?` and `.await` need the body in a container of its own: a closure returning
    // a `Result`, or an async block that the runner drives to its end.
    let contained = parsed.uses_try || parsed.uses_await;
    if parsed.uses_try && unit.error_format != ErrorFormat::default() {
        m.glue(&format!(
            "::ferrocell::__runner::set_error_format({});",
            unit.error_format.code()
        ));
    }
    let error = if unit.debug_errors {
        "::ferrocell::__runner::DebugError"
    } else {
        "::std::boxed::Box<dyn ::std::error::Error>"
    };
    if contained {
        let open = if !parsed.uses_await {
            "(|| {"
        } else if unit.tokio_name.is_some() {
            "__fc_tokio.block_on(::ferrocell::__async::interruptible(async {"
        } else {
            "::ferrocell::__async::block_on(async {"
        };
        m.glue(&format!(
            "let __fc_result: ::std::result::Result<(), {error}> = {open}"
        ));
    }
    let staged = |site: usize| -> Vec<(String, String)> {
        staged_at(parsed, plan, site)
            .into_iter()
            .map(|(var, ty)| {
                let put = plan.put_stmt(&var, &ty);
                (var, put)
            })
            .collect()
    };
    for (i, s) in parsed.statements.iter().enumerate() {
        try_rewrite::emit(&mut m, s, &parsed.try_sites, i, &staged);
    }
    if probes {
        for var in &parsed.bindings {
            // A one-element tuple makes rustc print the element's full path in a note.
            m.tagged(&format!("let _: () = ({var},);"), &format!("probe:{var}"));
        }
        for (var, arity) in &parsed.closures {
            let args = plan
                .sig_args
                .iter()
                .find(|(n, _)| n == var)
                .map(|(_, a)| a.as_slice());
            m.tagged(&boxed::sig_probe(var, *arity, args), &format!("sig:{var}"));
        }
    }
    let by_ref = parsed.value_is_place && parsed.timing == Timing::None;
    m.glue(if by_ref {
        "let __fc_value = &("
    } else {
        "let __fc_value = {"
    });
    match &parsed.value {
        Some(v) => try_rewrite::emit(
            &mut m,
            v,
            &parsed.try_sites,
            parsed.statements.len(),
            &staged,
        ),
        None => m.glue("()"),
    }
    m.glue(if by_ref { ");" } else { "};" });
    match parsed.timing {
        Timing::None => {}
        Timing::Once => m.glue("__fc_timer.report();"),
        Timing::Repeat { loops, runs } => {
            let loops = match loops {
                Some(n) => format!("::std::option::Option::Some({n})"),
                None => "::std::option::Option::None".into(),
            };
            m.glue(&format!(
                "::std::hint::black_box(__fc_value);\n}};\n\
                 ::ferrocell::__timing::timeit(&mut || __fc_body(), {loops}, {runs});\n\
                 let __fc_value = ();"
            ));
        }
    }
    let taken = |n: &String| plan.take.iter().any(|(t, _)| t == n);
    let repeat = matches!(parsed.timing, Timing::Repeat { .. });
    let rebound = |n: &String| !repeat && parsed.bindings.contains(n);
    let put_back = |m: &mut SourceMap, which: &dyn Fn(&String) -> bool| {
        for (var, ty) in plan.put.iter().filter(|(v, _)| which(v)) {
            m.tagged(&plan.put_stmt(var, ty), &format!("put:{var}"));
        }
    };
    // New bindings (and taken ones the cell binds anew) are put back where they are
    // in scope; the taken ones after the guard, whatever happened.
    let new_ones = |v: &String| !taken(v) || rebound(v);
    // The value is shown before any new binding is put in the store: if showing it
    // panics, the store still agrees with what the kernel keeps.
    m.glue(
        "{\n\
         use ::ferrocell::__value::{ViaDebug as _, ViaTypeName as _, FallbackEvcxrDisplay as _};\n\
         let __fc_shown: ::ferrocell::__value::Shown = (&__fc_value).evcxr_display().into();\n\
         if !__fc_shown.0 { ::ferrocell::__value::emit((&::ferrocell::__value::Wrap(&__fc_value)).__fc_repr()); }\n\
         }",
    );
    if contained {
        // The bindings live in the container: they are put back before it returns.
        put_back(&mut m, &new_ones);
        if !guarded {
            put_back(&mut m, &|v| !new_ones(v));
        }
        m.glue(&format!(
            "::std::result::Result::<(), {error}>::Ok(())\n}}){};",
            match (parsed.uses_await, unit.tokio_name.is_some()) {
                (false, _) => "()",
                (true, false) => "",
                (true, true) => ")",
            }
        ));
        let failed = if guarded { "__fc_failed = true; " } else { "" };
        m.glue(&format!(
            "if let ::std::result::Result::Err(e) = __fc_result {{ \
             ::ferrocell::__runner::CellFailure::report(&e); {failed}return; }}"
        ));
    }
    if guarded {
        if !contained {
            put_back(&mut m, &new_ones);
        }
        m.glue("}));");
        put_back(&mut m, &|v| !new_ones(v));
        m.glue("if __fc_failed || __fc_caught.is_some() {");
        // A rebound variable keeps its old value after a panic (even one after the
        // cell put its new value), and after a `?` unless that `?` kept the new one.
        for (var, ty) in &plan.keep {
            m.tagged(
                &format!(
                    "if __fc_caught.is_some() || !::ferrocell::__vars::has({var:?}) {{ ::ferrocell::__vars::put::<{ty}>({var:?}, {var}); }}"
                ),
                &format!("keep:{var}"),
            );
        }
        m.glue("}");
        m.glue("if let ::std::option::Option::Some(__fc_panic) = __fc_caught {");
        m.glue("::std::panic::resume_unwind(__fc_panic);\n}");
    } else if !contained {
        put_back(&mut m, &|_| true);
    }
    m.glue("}");
    m
}

/// The new bindings that the failing `?` number `site` keeps: those the cell binds
/// for the last time before that `?`'s statement, whose put-back compiles there
/// (see [`VarPlan::unstaged`]), with their types.
fn staged_at(parsed: &ParsedCell, plan: &VarPlan, site: usize) -> Vec<(String, String)> {
    if plan.no_staging {
        return vec![];
    }
    let statement = parsed.try_sites[site].statement;
    let shadowed = &parsed.try_sites[site].shadowed;
    let last_bound = |n: &String| parsed.binds_at.iter().rposition(|b| b.contains(n));
    plan.stageable
        .iter()
        .filter(|(n, _)| !plan.unstaged.iter().any(|(s, u)| *s == site && u == n))
        .filter(|(n, _)| !shadowed.contains(n))
        .filter(|(n, _)| last_bound(n).is_some_and(|at| at < statement))
        .cloned()
        .collect()
}

/// rustc's codes for a borrow that does not live long enough (to be kept).
const BORROWS: &[&str] = &[
    "E0597", "E0716", "E0515", "E0521", "E0759", "E0506", "E0373",
];

/// The `?` and variable of a `stage:SITE:NAME` tag.
fn staging_tag(tag: &str) -> Option<(usize, String)> {
    let (site, name) = tag.strip_prefix("stage:")?.split_once(':')?;
    Some((site.parse().ok()?, name.to_string()))
}

/// Snapshot helpers compiled into each cell while snapshots are on. Which `__fc_save`
/// and `__fc_load` a call resolves to depends on whether the concrete type has
/// serde's traits (autoref specialisation), so cells never fail to compile for want
/// of them.
const SNAPSHOT_GLUE: &str = "mod __fc_snap {
pub struct Save<'a, T: ?Sized>(pub &'a T);
pub trait ViaSerde { fn __fc_save(&self, name: &str); }
impl<'a, T: ::serde::Serialize + ?Sized> ViaSerde for Save<'a, T> {
    fn __fc_save(&self, name: &str) {
        ::ferrocell::__vars::write_snapshot(name, ::std::option::Option::Some(&mut |w: &mut dyn ::std::io::Write| ::__fc_bincode::serialize_into(w, self.0).map_err(|e| e.to_string())));
    }
}
pub trait NoSerde { fn __fc_save(&self, name: &str); }
impl<'a, T: ?Sized> NoSerde for &Save<'a, T> {
    fn __fc_save(&self, name: &str) { ::ferrocell::__vars::write_snapshot(name, ::std::option::Option::None); }
}
pub struct Load<T>(pub ::std::marker::PhantomData<T>);
pub trait ViaDeserialize<T> { fn __fc_load(&self, name: &str) -> ::std::option::Option<T>; }
impl<T: ::serde::de::DeserializeOwned> ViaDeserialize<T> for Load<T> {
    fn __fc_load(&self, name: &str) -> ::std::option::Option<T> { ::__fc_bincode::deserialize_from(::ferrocell::__vars::snapshot_reader(name)?).ok() }
}
pub trait NoDeserialize<T> { fn __fc_load(&self, name: &str) -> ::std::option::Option<T>; }
impl<T> NoDeserialize<T> for &Load<T> {
    fn __fc_load(&self, _: &str) -> ::std::option::Option<T> { ::std::option::Option::None }
}
}";

/// Whether a `?` cell failed only because one of its errors is not a
/// `std::error::Error` (E0277, "`?` couldn't convert the error"): then it is built
/// again with errors taken through `Debug`, as `main` returning `Result` takes them.
/// Cells whose errors are all `Error`s keep `Box<dyn Error>`, which shows their
/// `Display` and `source()` chain.
fn try_needs_debug(unit: &Unit, diags: &[rustc::Diagnostic], map: &SourceMap) -> bool {
    let at_conversion =
        |d: &rustc::Diagnostic| d.spans.iter().any(|s| map.tag_at(s) == Some("try:convert"));
    unit.parsed.uses_try
        && !unit.debug_errors
        && diags
            .iter()
            .any(|d| d.message.contains("`?` couldn't convert the error") || at_conversion(d))
}

/// Whether a rustc error is about serde's traits (a derive the fields do not allow).
fn derive_failure(d: &rustc::Diagnostic) -> bool {
    d.message.contains("Serialize") || d.message.contains("Deserialize")
}

/// Clears the derive of every item a serde error points into (or of all items when
/// it points nowhere in particular). Returns whether there is anything to retry.
fn drop_failed_derives(
    diags: &[rustc::Diagnostic],
    map: &SourceMap,
    items: &mut [LayerItem],
) -> bool {
    if !items.iter().any(|i| i.serde) {
        return false;
    }
    let failed: Vec<&rustc::Diagnostic> = diags.iter().filter(|d| derive_failure(d)).collect();
    if failed.is_empty() {
        return false;
    }
    let newest = items.iter().map(|i| i.cell).max();
    let mut hit = HashSet::new();
    for s in failed.iter().flat_map(|d| &d.spans) {
        if let Some(i) = map
            .tag_at(s)
            .and_then(|t| t.strip_prefix("derive:"))
            .and_then(|i| i.parse::<usize>().ok())
        {
            hit.insert(i);
        } else if let Some(o) = map.origin(s.line_start) {
            for (i, it) in items.iter().enumerate() {
                let cell = (Some(it.cell) != newest).then_some(it.cell);
                let first = it.item.snippet.line;
                let last = first + it.item.snippet.text.lines().count();
                if o.cell == cell && (first..last).contains(&o.line) {
                    hit.insert(i);
                }
            }
        }
    }
    let mut changed = false;
    for (i, it) in items.iter_mut().enumerate() {
        if it.serde && (hit.is_empty() || hit.contains(&i)) {
            it.serde = false;
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(code: &str, cell: u64) -> Vec<LayerItem> {
        cell::parse(code)
            .unwrap()
            .items
            .into_iter()
            .map(|item| LayerItem {
                item,
                cell,
                serde: false,
            })
            .collect()
    }

    #[test]
    fn snapshot_glue_names_the_kernels_codec() {
        assert!(SNAPSHOT_GLUE.contains(&format!("::{}::", super::super::deps::SNAPSHOT_CODEC)));
    }

    #[test]
    fn later_definitions_replace_earlier_ones() {
        let mut all = items("fn f() {}\nstruct P;\nimpl P { fn a() {} }", 1);
        all.extend(items(
            "fn f() -> u8 { 1 }\nimpl P { fn a() {} fn b() {} }\nimpl P { fn c() {} }",
            2,
        ));
        let kept = without_replaced(all);
        let texts: Vec<_> = kept.iter().map(|i| i.item.snippet.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "pub struct P;",
                "pub fn f() -> u8 { 1 }",
                "impl P { pub fn a() {} pub fn b() {} }",
                "impl P { pub fn c() {} }"
            ]
        );
    }

    #[test]
    fn generated_code_maps_back_to_cell_lines() {
        let parsed = cell::parse("let a = 1;\n\na + 1").unwrap();
        let unit = Unit::statements(&parsed, None);
        let m = generate(&unit, "__fc_run_x", &VarPlan::default(), false, false);
        let line = m.text.lines().position(|l| l.contains("a + 1")).unwrap() + 1;
        assert_eq!(
            m.origin(line),
            Some(Origin {
                cell: None,
                line: 3
            })
        );
        assert!(m.text.contains("use ::ferrocell::prelude::*;"));
    }
}
