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

use super::cell::{self, Item, ParsedCell};
use super::diagnostics::{self, Origin, SourceMap};
use super::prelude::{self, Prelude};
use super::rustc::{self, RustcFailure};
use super::toolchain::Toolchain;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

/// A cell's item, with the execution count of the cell it came from.
#[derive(Debug, Clone)]
struct LayerItem {
    item: Item,
    cell: u64,
}

/// One library of items in the chain.
#[derive(Debug)]
struct Layer {
    key: String,
    items: Vec<LayerItem>,
    /// The cell code that produced this layer, to recognise an unchanged re-run.
    code: String,
    opt_level: u8,
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
}

/// How a cell's code is wrapped for the timing magics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timing {
    #[default]
    None,
    /// `%time`: CPU and wall time of one run.
    Once,
    /// `%timeit`: repeated runs of the whole body.
    Repeat { loops: Option<u64>, runs: u32 },
}

/// What a cell compiles to.
pub enum Compiled {
    /// Nothing to run (only comments or whitespace).
    Empty,
    Cell(BuiltCell),
}

/// The session's compiled items and how new cells are built.
pub struct Session {
    toolchain: Toolchain,
    prelude: Prelude,
    cells_dir: PathBuf,
    chain: Vec<Arc<Layer>>,
    pub opt_level: u8,
}

impl Session {
    pub fn new(toolchain: Toolchain, prelude: Prelude, cache: &std::path::Path) -> Self {
        let cells_dir = cache.join(&toolchain.id).join("cells");
        Session {
            toolchain,
            prelude,
            cells_dir,
            chain: Vec::new(),
            opt_level: 1,
        }
    }

    pub fn toolchain(&self) -> &Toolchain {
        &self.toolchain
    }

    pub fn prelude(&self) -> &Prelude {
        &self.prelude
    }

    /// Forgets all items (for `%reset`).
    pub fn clear(&mut self) {
        self.chain.clear();
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

    /// The source of the newest definition of `name`, with the cell it came from.
    pub fn item_source(&self, name: &str) -> Option<(u64, String)> {
        self.chain.iter().rev().find_map(|l| {
            l.items
                .iter()
                .rev()
                .find(|i| i.item.names.iter().any(|n| n == name))
                .map(|i| (i.cell, i.item.snippet.text.clone()))
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
        if timing != Timing::None && parsed.uses_try {
            return Err(CompileError::Code {
                summary: "`?` cannot be used in a timed cell".into(),
                rendered: vec!["error: `?` cannot be used in a %time or %timeit cell; handle the error with match or unwrap".into()],
            });
        }
        let parsed = ParsedCell { timing, ..parsed };
        if parsed.items.is_empty() {
            let base = self.chain.last().cloned();
            let (built, _) = self.compile(&parsed, &[], base.as_deref(), code).await?;
            return Ok(Compiled::Cell(built));
        }
        if let Some(head) = self.chain.last() {
            if head.code == code && head.opt_level == self.opt_level && timing == Timing::None {
                // Re-running the cell that made the newest layer changes nothing.
                return Ok(Compiled::Cell(BuiltCell {
                    compiled: false,
                    ..head.built.clone()
                }));
            }
        }
        if parsed.items.iter().all(|i| self.is_current(i)) {
            // Every item is already defined exactly so (an unchanged cell run again):
            // only the statements need a library.
            let base = self.chain.last().cloned();
            let statements = ParsedCell {
                items: vec![],
                ..parsed.clone()
            };
            let (built, _) = self
                .compile(&statements, &[], base.as_deref(), code)
                .await?;
            return Ok(Compiled::Cell(built));
        }
        let new: Vec<LayerItem> = parsed
            .items
            .iter()
            .map(|i| LayerItem {
                item: i.clone(),
                cell,
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
        let (built, key) = self.compile(&parsed, &items, base.as_deref(), code).await?;
        self.chain.truncate(from);
        self.chain.push(Arc::new(Layer {
            key,
            items,
            code: code.to_string(),
            opt_level: self.opt_level,
            built: built.clone(),
        }));
        Ok(Compiled::Cell(built))
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

    async fn compile(
        &self,
        parsed: &ParsedCell,
        items: &[LayerItem],
        base: Option<&Layer>,
        code: &str,
    ) -> Result<(BuiltCell, String), CompileError> {
        let mut h = Sha256::new();
        for part in [
            self.toolchain.id.as_str(),
            self.prelude.id.as_str(),
            &self.opt_level.to_string(),
            base.map(|b| b.key.as_str()).unwrap_or("-"),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for it in items {
            h.update(it.item.snippet.text.as_bytes());
            h.update(it.cell.to_le_bytes());
        }
        h.update(code.as_bytes());
        h.update(format!("{:?}", parsed.timing).as_bytes());
        let key = hex::encode(&h.finalize()[..12]);
        let symbol = format!("__fc_run_{key}");
        let map = generate(parsed, items, base, &symbol, !items.is_empty());
        let name = crate_name(&key);
        let lib = self.cells_dir.join(format!("lib{name}.so"));
        let source_path = self.cells_dir.join(format!("{name}.rs"));
        let mut built = BuiltCell {
            lib: lib.clone(),
            symbol,
            source_path: source_path.clone(),
            map: Arc::new(map),
            compiled: false,
        };
        if lib.is_file() {
            return Ok((built, key));
        }
        let io = |e: std::io::Error| CompileError::Io(format!("{}: {e}", self.cells_dir.display()));
        std::fs::create_dir_all(&self.cells_dir).map_err(io)?;
        std::fs::write(&source_path, &built.map.text).map_err(io)?;
        let tmp = tempfile::Builder::new()
            .prefix("building-")
            .tempdir_in(&self.cells_dir)
            .map_err(io)?;
        let out = tmp.path().join(format!("lib{name}.so"));
        let mut args = prelude::common_flags(
            &self.toolchain,
            &[self.prelude.dir.as_path(), self.cells_dir.as_path()],
        );
        args.extend(
            [
                "--crate-type",
                "dylib",
                "--cap-lints",
                "allow",
                "--crate-name",
            ]
            .into_iter()
            .map(OsString::from),
        );
        args.push(name.clone().into());
        args.push("-C".into());
        args.push(format!("metadata={key}").into());
        args.push("-C".into());
        args.push(format!("opt-level={}", self.opt_level).into());
        for dir in [&self.prelude.dir, &self.cells_dir] {
            args.push("-L".into());
            args.push(format!("dependency={}", dir.display()).into());
        }
        args.push("--extern".into());
        args.push(format!("ferrocell={}", self.prelude.lib.display()).into());
        if let Some(b) = base {
            args.push("--extern".into());
            args.push(format!("{}={}", b.crate_name(), b.built.lib.display()).into());
        }
        args.push("-o".into());
        args.push(out.clone().into());
        args.push(source_path.into());
        match rustc::run(&self.toolchain.rustc, args).await {
            Ok(()) => {}
            Err(RustcFailure::Errors(diags)) => {
                return Err(CompileError::Code {
                    summary: diags[0].message.clone(),
                    rendered: diags
                        .iter()
                        .map(|d| diagnostics::render(d, &built.map))
                        .collect(),
                })
            }
            Err(RustcFailure::Crashed(s)) => return Err(CompileError::Toolchain(s)),
            Err(RustcFailure::Spawn(e)) => {
                return Err(CompileError::Toolchain(format!(
                    "cannot run {}: {e}",
                    self.toolchain.rustc.display()
                )))
            }
            Err(RustcFailure::TimedOut) => return Err(CompileError::TimedOut),
        }
        std::fs::rename(&out, &lib).map_err(io)?;
        built.compiled = true;
        Ok((built, key))
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
fn generate(
    parsed: &ParsedCell,
    items: &[LayerItem],
    base: Option<&Layer>,
    symbol: &str,
    is_layer: bool,
) -> SourceMap {
    let mut m = SourceMap::default();
    m.glue("#![allow(warnings)]");
    let vis = if is_layer { "pub " } else { "" };
    match base {
        Some(b) => m.glue(&format!("{vis}use {}::*;", b.crate_name())),
        None => m.glue(&format!("{vis}use ::ferrocell::prelude::*;")),
    }
    let newest = items.iter().map(|i| i.cell).max();
    for it in items {
        let origin_cell = (Some(it.cell) != newest).then_some(it.cell);
        let s = &it.item.snippet;
        m.code(
            &s.text,
            s.column,
            Origin {
                cell: origin_cell,
                line: s.line,
            },
        );
    }
    m.glue(&format!("#[no_mangle]\npub fn {symbol}() {{"));
    let here = |line| Origin { cell: None, line };
    match parsed.timing {
        Timing::None => {}
        Timing::Once => m.glue("let __fc_timer = ::ferrocell::__timing::Timer::start();"),
        Timing::Repeat { .. } => m.glue("let mut __fc_body = || {"),
    }
    if parsed.uses_try {
        m.glue("let __fc_result: ::std::result::Result<_, ::std::boxed::Box<dyn ::std::error::Error>> = (|| {");
    }
    for s in &parsed.statements {
        m.code(&s.text, s.column, here(s.line));
    }
    m.glue("let __fc_value = {");
    match &parsed.value {
        Some(v) => m.code(&v.text, v.column, here(v.line)),
        None => m.glue("()"),
    }
    m.glue("};");
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
    if parsed.uses_try {
        m.glue("::std::result::Result::Ok(__fc_value)\n})();");
        m.glue("let __fc_value = match __fc_result { ::std::result::Result::Ok(v) => v, ::std::result::Result::Err(e) => { ::ferrocell::__runner::fail(&e); return; } };");
    }
    m.glue(
        "{\n\
         use ::ferrocell::__value::{ViaDebug as _, ViaTypeName as _, FallbackEvcxrDisplay as _};\n\
         let __fc_shown: ::ferrocell::__value::Shown = (&__fc_value).evcxr_display().into();\n\
         if !__fc_shown.0 { ::ferrocell::__value::emit((&::ferrocell::__value::Wrap(&__fc_value)).__fc_repr()); }\n\
         }\n\
         }",
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(code: &str, cell: u64) -> Vec<LayerItem> {
        cell::parse(code)
            .unwrap()
            .items
            .into_iter()
            .map(|item| LayerItem { item, cell })
            .collect()
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
        let m = generate(&parsed, &[], None, "__fc_run_x", false);
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
