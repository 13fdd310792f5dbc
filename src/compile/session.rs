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
//!
//! The `impl Session` is spread over child modules, one job each: `layers` (the
//! chain and its items), `unit` (what a generated crate is made of and its rustc
//! arguments), `codegen` (writing the crate), `check` (check-only builds and type
//! probes), `build` (building a unit, with its retries), `retry` (what a failed
//! build changes), `variables` (the session's variables), `snapshots` (savers and
//! restores), `members` and `type_probe` (what completion asks of the session).

use super::cell::{self, ParsedCell, Timing};
use super::deps::BuiltDeps;
use super::diagnostics::{self, SourceMap};
use super::edition::Edition;
use super::error_format::ErrorFormat;
use super::prelude::Prelude;
use super::rustc::{self, RustcFailure};
use super::toolchain::Toolchain;
use super::vars::{self, Vars};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

mod build;
mod check;
mod codegen;
mod layers;
mod members;
mod retry;
mod snapshots;
mod tiers;
mod type_probe;
mod unit;
mod variables;

use build::Settled;
use check::Probed;
use layers::{crate_name, without_replaced, Layer, LayerItem};
pub use members::{ItemKind, ItemMember};
use tiers::Tiers;
pub use tiers::{HOT_LEVEL, HOT_RUN};
use unit::{Unit, VarPlan};
pub use variables::VarOutcome;

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
    /// Whether code that runs long is built at level 3 from then on (see `tiers`);
    /// `%opt N` pins the level and turns it off.
    pub tiered: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            opt_level: DEFAULT_OPT_LEVEL,
            edition: Edition::DEFAULT,
            error_format: ErrorFormat::default(),
            tiered: true,
        }
    }
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
    /// rustc's optimisation level for it.
    pub opt_level: u8,
    /// Built at level 3 because its code ran long before (tiered compilation).
    pub tiered_up: bool,
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
    /// What has run long, for tiered compilation.
    tiers: Tiers,
    /// The libraries of `%%c` and `%%cpp` cells, which engines are sent with the
    /// layers that call into them.
    native_libs: Vec<PathBuf>,
    /// Whether what is built now may run on other machines (a cluster is in use):
    /// then cells are built for the architecture's baseline CPU, not this one's
    /// (see `tiers`).
    portable: bool,
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
            tiers: Tiers::default(),
            native_libs: Vec::new(),
            portable: false,
        }
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

    /// Says whether the cells built from now on may be sent to other machines
    /// (a cluster's engines): they are then built for the baseline CPU.
    pub fn set_portable(&mut self, portable: bool) {
        self.portable = portable;
    }

    /// Where cell libraries are built (and native cells' libraries).
    pub fn cells_dir(&self) -> &std::path::Path {
        &self.cells_dir
    }

    /// A `%%c` or `%%cpp` cell's library, which the layer that declares its
    /// functions finds at run time: engines are sent it with the layers.
    pub fn add_native(&mut self, lib: PathBuf) {
        if !self.native_libs.contains(&lib) {
            self.native_libs.push(lib);
        }
    }

    /// Forgets all items and variables (for `%reset`).
    pub async fn clear(&mut self) -> Result<(), CompileError> {
        self.chain.clear();
        self.vars.clear();
        self.tiers = Tiers::default();
        self.native_libs.clear();
        self.embedded.clear();
        match self.deps.take() {
            Some(d) => self.attach_deps(d).await,
            None => Ok(()),
        }
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
        let Some(parsed) = parse_timed(code, timing)? else {
            return Ok(Compiled::Empty);
        };
        if let Some(built) = self.build_statements(&parsed, code).await? {
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
        self.spread_heat(&parsed.items);
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

    /// The library of a cell with no items, or whose items are all defined exactly
    /// so already (an unchanged cell run again): only its statements need one.
    /// `None` for a cell with new items.
    async fn build_statements(
        &self,
        parsed: &ParsedCell,
        code: &str,
    ) -> Result<Option<BuiltCell>, CompileError> {
        if !parsed.items.iter().all(|i| self.is_current(i)) {
            return Ok(None);
        }
        let base = self.chain.last().cloned();
        let statements = ParsedCell {
            items: vec![],
            ..parsed.clone()
        };
        let mut unit = Unit::statements(&statements, base.as_deref());
        let (built, _) = self.compile(&mut unit, code, &[]).await?;
        Ok(Some(built))
    }

    /// Builds the library that running `code` again would use, ahead of that run:
    /// the kernel does this while idle after a cell became hot, so that its next
    /// run finds the level-3 library ready. A cell with new items is left alone.
    pub async fn prebuild(&self, code: &str, timing: Timing) -> Result<(), CompileError> {
        if let Some(parsed) = parse_timed(code, timing)? {
            self.build_statements(&parsed, code).await?;
        }
        Ok(())
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
}

/// A cell's code parsed, with its body wrapped for `%time` or `%timeit`; `None`
/// when there is nothing to run (only comments or whitespace).
fn parse_timed(code: &str, timing: Timing) -> Result<Option<ParsedCell>, CompileError> {
    let parsed = cell::parse(code).map_err(|e| CompileError::Code {
        summary: e.message.clone(),
        rendered: vec![diagnostics::render_syntax(
            &e.message, code, e.line, e.column,
        )],
    })?;
    if parsed.items.is_empty() && parsed.statements.is_empty() && parsed.value.is_none() {
        return Ok(None);
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
    Ok(Some(ParsedCell { timing, ..parsed }))
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
