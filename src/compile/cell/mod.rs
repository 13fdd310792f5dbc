//! Splitting a cell into items, statements and a trailing value.
//!
//! Items (fn, struct, impl, …) become crate-level code of the cell's library and are
//! made `pub` so that later cells can use them; statements become the body of the
//! cell's entry function; a final expression without `;` is the cell's value. Every
//! piece keeps the line and column it had in the cell, so that rustc's diagnostics
//! and panic locations can be mapped back.
//!
//! The parsed cell's parts are defined here; the work is done by the children:
//! [`parse()`] (the entry point, its limits and the walk over the statements),
//! `span` (cutting a span's text out of the cell), `items` (what an item defines
//! and the `pub` it needs) and `statements` (what a statement binds, mentions and
//! uses).

mod inline;
mod items;
mod parse;
mod span;
mod statements;

pub use parse::{on_parse_stack, parse, MAX_CELL};

/// A piece of the cell's text with where it started in the cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    /// The text, already rewritten (visibility added) where needed.
    pub text: String,
    /// 1-based line in the cell where the text starts.
    pub line: usize,
    /// 0-based column (in characters) where the text starts.
    pub column: usize,
    /// Text the kernel inserted (`pub `), which the user never wrote: line within
    /// the snippet, 0-based column in that line as generated (the first line
    /// indented to `column`), and length in characters.
    pub inserted: Vec<(usize, usize, usize)>,
}

impl Snippet {
    /// The text as the user wrote it, without what the kernel inserted.
    pub fn as_written(&self) -> String {
        let mut lines: Vec<Vec<char>> =
            self.text.split('\n').map(|l| l.chars().collect()).collect();
        let mut cuts = self.inserted.clone();
        // From the right, so that earlier columns stay where they are.
        cuts.sort_by(|a, b| b.cmp(a));
        for (line, column, len) in cuts {
            let at = if line == 0 {
                column.saturating_sub(self.column)
            } else {
                column
            };
            if let Some(l) = lines.get_mut(line) {
                if at + len <= l.len() {
                    l.drain(at..at + len);
                }
            }
        }
        let lines: Vec<String> = lines.into_iter().map(|l| l.into_iter().collect()).collect();
        lines.join("\n")
    }
}

/// A top-level item of the cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub snippet: Snippet,
    /// The names the item defines (for redefinition).
    pub names: Vec<String>,
    /// For `impl` blocks: what identifies the block for replacement.
    pub impl_key: Option<ImplKey>,
    /// For `impl` blocks: every identifier named in its header (trait and type), to
    /// find the earlier cells that defined them.
    pub mentions: Vec<String>,
    /// Every identifier in the item, sorted (what its code may call: tiered
    /// compilation follows calls through it).
    pub uses: Vec<String>,
    /// A struct or enum that does not derive serde's traits itself: the kernel may
    /// derive them, so that its values survive a runner restart.
    pub derivable: bool,
}

/// Identifies an impl block: the same trait for the same type replaces the older one,
/// and so does an inherent impl that redefines any of the same methods.
#[derive(Debug, Clone, PartialEq)]
pub struct ImplKey {
    pub trait_path: Option<String>,
    pub self_ty: String,
    pub methods: Vec<String>,
}

/// A parsed cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedCell {
    /// The cell's code, to quote its lines in errors.
    pub source: String,
    pub items: Vec<Item>,
    pub statements: Vec<Snippet>,
    pub value: Option<Snippet>,
    /// The statements use `?`, so the body runs in a closure returning a `Result`.
    pub uses_try: bool,
    /// The statements `.await`, so the body runs in an async block that the cell's
    /// generated code drives to its end (`__async::block_on`, or the tokio runtime).
    pub uses_await: bool,
    /// Set by the session for `%time` / `%timeit`.
    pub timing: Timing,
    /// Names bound by top-level `let` statements, in order (the cell's new variables).
    pub bindings: Vec<String>,
    /// Those of them whose last binding is `mut`: later cells may change them; the
    /// others stay immutable, as in one block of Rust.
    pub mutable: Vec<String>,
    /// New bindings whose value is a closure written in the cell (`let f = |x| …;`),
    /// with its number of parameters: kept as boxed `dyn Fn` (see
    /// [`super::boxed`]).
    pub closures: Vec<(String, usize)>,
    /// The names each statement binds, by the statement's index in `statements`.
    pub binds_at: Vec<Vec<String>>,
    /// The `?`s of the statements and the value, outside closures, nested functions,
    /// async blocks and macro calls: the kernel writes each out so that a failure
    /// there can keep the variables bound before it.
    pub try_sites: Vec<TrySite>,
    /// Every identifier the statements and the value mention before the cell binds
    /// it (to find which session variables the cell uses).
    pub idents: std::collections::HashSet<String>,
    /// The value is a plain variable or field path: shown by reference, so that
    /// showing a variable does not move it out of the session.
    pub value_is_place: bool,
}

/// One `?` of the cell: which statement it is in (`statements.len()` for the
/// value), where the expression it applies to starts and where the `?` is, as
/// (line, column) in the cell's coordinates (those of [`Snippet`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrySite {
    pub statement: usize,
    pub expr: (usize, usize),
    pub question: (usize, usize),
    /// Names the statement binds in scopes of its own (a `for` variable, a match
    /// arm, a closure's parameter): at the `?` they may stand for something else
    /// than the cell's variable of that name, so the `?` keeps none of them.
    pub shadowed: Vec<String>,
}

/// A syntax error, with its place in the cell.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub line: usize,
    pub column: usize,
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
