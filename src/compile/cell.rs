//! Splitting a cell into items, statements and a trailing value.
//!
//! Items (fn, struct, impl, …) become crate-level code of the cell's library and are
//! made `pub` so that later cells can use them; statements become the body of the
//! cell's entry function; a final expression without `;` is the cell's value. Every
//! piece keeps the line and column it had in the cell, so that rustc's diagnostics
//! and panic locations can be mapped back.

use proc_macro2::LineColumn;
use syn::spanned::Spanned;

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
    pub timing: super::session::Timing,
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

/// Byte offsets of each line start, to turn span line/columns into slices.
struct LineIndex<'a> {
    src: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(src: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { src, starts }
    }

    /// proc-macro2 lines are 1-based, columns count characters.
    fn offset(&self, lc: LineColumn) -> usize {
        // Line 0 is a span without a position (proc-macro2 gives those when fuzzing).
        let start = self.starts[lc.line.saturating_sub(1).min(self.starts.len() - 1)];
        let line = &self.src[start..];
        start
            + line
                .char_indices()
                .nth(lc.column)
                .map(|(i, _)| i)
                .unwrap_or(line.len())
    }
}

/// The wrapper around the cell so that syn can parse statements and items together.
const OPEN: &str = "{\n";

/// Parses a cell's Rust code.
pub fn parse(code: &str) -> Result<ParsedCell, SyntaxError> {
    // The parser recurses once per nesting level (brackets, and also chains of
    // prefix operators such as `!!!!x`): it runs on a thread of its own with a
    // large stack, which costs only the memory it uses.
    if code.len() > MAX_CELL {
        return Err(SyntaxError {
            message: format!(
                "the cell holds {} bytes of code; a cell may hold at most {MAX_CELL} (read large data from a file)",
                code.len()
            ),
            line: 1,
            column: 0,
        });
    }
    let owned = code.to_string();
    on_parse_stack(move || parse_here(&owned)).unwrap_or_else(|| {
        Err(SyntaxError {
            message: "the cell could not be parsed".into(),
            line: 1,
            column: 0,
        })
    })
}

/// The most code a cell may hold: with the parser's stack, no nesting of any kind
/// that fits in it can overflow (the worst, `|| || …`, takes about 512 bytes of stack
/// per 3 bytes of code).
pub const MAX_CELL: usize = 1 << 20;

/// Runs `f` (which parses code with syn) on a thread with the parser's large stack;
/// `None` if the thread could not start or panicked. Everything that parses cell
/// text goes through here: a deep enough nesting overflows a normal thread's stack,
/// and that aborts the whole process.
pub fn on_parse_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::Builder::new()
        .name("parse".into())
        .stack_size(PARSE_STACK)
        .spawn(f)
        .ok()?
        .join()
        .ok()
}

/// The parser thread's stack: enough for any cell within
/// [`super::delimiters::MAX_NESTING`] brackets and [`MAX_PREFIX_CHAIN`] prefix
/// operators in a row.
const PARSE_STACK: usize = 512 << 20;

/// The longest run of prefix operators (`!`, `-`, `*`, `&`) a cell may have.
const MAX_PREFIX_CHAIN: usize = 20_000;

fn parse_here(code: &str) -> Result<ParsedCell, SyntaxError> {
    // The parser recurses once per nesting level: refuse what would overflow it.
    let depth = super::delimiters::deepest(code);
    if depth > super::delimiters::MAX_NESTING {
        return Err(SyntaxError {
            message: format!(
                "brackets nested {depth} levels deep; a cell may nest at most {}",
                super::delimiters::MAX_NESTING
            ),
            line: 1,
            column: 0,
        });
    }
    let mut run = 0usize;
    let mut longest = 0usize;
    for c in code.chars().filter(|c| !c.is_whitespace()) {
        run = if matches!(c, '!' | '-' | '*' | '&') {
            run + 1
        } else {
            0
        };
        longest = longest.max(run);
    }
    if longest > MAX_PREFIX_CHAIN {
        return Err(SyntaxError {
            message: format!(
                "{longest} operators in a row; a cell may have at most {MAX_PREFIX_CHAIN}"
            ),
            line: 1,
            column: 0,
        });
    }
    let wrapped = format!("{OPEN}{code}\n}}");
    let block: syn::Block = syn::parse_str(&wrapped).map_err(|e| {
        // The tokenizer says nothing of where; the delimiters tell, as rustc does.
        use super::delimiters::{self, Delimiters};
        let (message, at) = match delimiters::scan(code) {
            Delimiters::Balanced => {
                let start = e.span().start();
                return SyntaxError {
                    message: e.to_string(),
                    line: start.line.saturating_sub(1).max(1),
                    column: start.column,
                };
            }
            Delimiters::Open(open) => (
                "this cell contains an unclosed delimiter".to_string(),
                open.last().map(|o| o.1).unwrap_or(0),
            ),
            Delimiters::Stray { found, at } => {
                (format!("unexpected closing delimiter: `{found}`"), at)
            }
            Delimiters::Unterminated { what, at } => (format!("unterminated {what}"), at),
        };
        let (line, column) = delimiters::line_column(code, at);
        SyntaxError {
            message,
            line,
            column,
        }
    })?;
    let index = LineIndex::new(&wrapped);
    let mut cell = ParsedCell {
        source: code.to_string(),
        ..ParsedCell::default()
    };
    let mut idents = Vec::new();
    let count = block.stmts.len();
    for (i, stmt) in block.stmts.iter().enumerate() {
        let last = i + 1 == count;
        // Names used before the cell binds them are the ones it needs from the
        // session; a name the cell binds first is a new variable.
        let mut used = Vec::new();
        match stmt {
            syn::Stmt::Item(_) => {}
            syn::Stmt::Local(local) => {
                if let Some(init) = &local.init {
                    idents_in(&init.expr, &mut used);
                    if let Some((_, diverge)) = &init.diverge {
                        idents_in(diverge, &mut used);
                    }
                }
            }
            other => idents_in(other, &mut used),
        }
        idents.extend(used.into_iter().filter(|n| !cell.bindings.contains(n)));
        let mut bound = Vec::new();
        if let syn::Stmt::Local(local) = stmt {
            pattern_names(&local.pat, &mut bound, &mut cell.mutable);
            cell.bindings.retain(|n| !bound.contains(n));
            cell.bindings.extend(bound.iter().cloned());
            cell.closures.retain(|(n, _)| !bound.contains(n));
            cell.closures.extend(super::boxed::closure_binding(local));
        }
        match stmt {
            syn::Stmt::Item(item) => cell.items.push(make_item(item, &index)),
            syn::Stmt::Expr(expr, None) if last && !diverges(expr) => {
                cell.value = Some(snippet(expr.span(), &index, &[]));
                cell.value_is_place = is_place(expr);
                scan(stmt, &mut cell);
                try_sites(stmt, cell.statements.len(), &mut cell.try_sites);
            }
            syn::Stmt::Macro(m)
                if last && m.semi_token.is_none() && !is_diverging_macro(&m.mac) =>
            {
                cell.value = Some(snippet(m.span(), &index, &[]));
                scan(stmt, &mut cell);
                try_sites(stmt, cell.statements.len(), &mut cell.try_sites);
            }
            other => {
                scan(other, &mut cell);
                let mut s = snippet(other.span(), &index, &[]);
                let open_end = matches!(other, syn::Stmt::Expr(_, None))
                    || matches!(other, syn::Stmt::Macro(m) if m.semi_token.is_none());
                if open_end {
                    s.text.push(';');
                }
                try_sites(other, cell.statements.len(), &mut cell.try_sites);
                cell.statements.push(s);
                cell.binds_at.push(bound);
            }
        }
    }
    cell.idents = idents.into_iter().collect();
    Ok(cell)
}

/// `x`, `x.field`, `x.0`: a place that can be shown by reference.
fn is_place(expr: &syn::Expr) -> bool {
    match expr {
        syn::Expr::Path(p) => p.qself.is_none() && p.path.get_ident().is_some(),
        syn::Expr::Field(f) => is_place(&f.base),
        syn::Expr::Paren(p) => is_place(&p.expr),
        _ => false,
    }
}

/// The variable names a `let` pattern binds, and which of them are `mut`.
fn pattern_names(pat: &syn::Pat, out: &mut Vec<String>, mutable: &mut Vec<String>) {
    let mut each = |p: &syn::Pat| pattern_names(p, out, mutable);
    match pat {
        syn::Pat::Ident(i) => {
            let name = i.ident.to_string();
            out.retain(|n| *n != name);
            mutable.retain(|n| *n != name);
            if i.mutability.is_some() {
                mutable.push(name.clone());
            }
            out.push(name);
            if let Some((_, sub)) = &i.subpat {
                pattern_names(sub, out, mutable);
            }
        }
        syn::Pat::Type(t) => each(&t.pat),
        syn::Pat::Tuple(t) => t.elems.iter().for_each(each),
        syn::Pat::TupleStruct(t) => t.elems.iter().for_each(each),
        syn::Pat::Struct(s) => s.fields.iter().for_each(|f| each(&f.pat)),
        syn::Pat::Slice(s) => s.elems.iter().for_each(each),
        syn::Pat::Reference(r) => each(&r.pat),
        syn::Pat::Paren(p) => each(&p.pat),
        _ => {}
    }
}

/// Cuts the text of a span out of the wrapped source, inserting `edits` (byte offset,
/// text) on the way, and records its position in the cell.
fn snippet(span: proc_macro2::Span, index: &LineIndex, edits: &[(usize, String)]) -> Snippet {
    let start = index.offset(span.start());
    let end = index.offset(span.end());
    let mut text = String::new();
    let mut at = start;
    let mut edits: Vec<_> = edits
        .iter()
        .filter(|(o, _)| *o >= start && *o <= end)
        .collect();
    edits.sort_by_key(|(o, _)| *o);
    let mut inserted = Vec::new();
    for (offset, insert) in edits {
        text.push_str(&index.src[at..*offset]);
        let line = text.matches('\n').count();
        let here = text.rsplit('\n').next().unwrap_or("").chars().count();
        let indent = if line == 0 { span.start().column } else { 0 };
        inserted.push((line, here + indent, insert.chars().count()));
        text.push_str(insert);
        at = *offset;
    }
    text.push_str(&index.src[at..end]);
    Snippet {
        text,
        line: span.start().line.saturating_sub(1),
        column: span.start().column,
        inserted,
    }
}

/// Where an item's own tokens start, after its outer attributes.
fn head_offset(attrs: &[syn::Attribute], whole: proc_macro2::Span, index: &LineIndex) -> usize {
    let after = match attrs
        .iter()
        .rfind(|a| matches!(a.style, syn::AttrStyle::Outer))
    {
        Some(a) => index.offset(a.span().end()),
        None => return index.offset(whole.start()),
    };
    let rest = &index.src[after..];
    after + (rest.len() - rest.trim_start().len())
}

fn is_inherited(vis: &syn::Visibility) -> bool {
    matches!(vis, syn::Visibility::Inherited)
}

fn tokens(t: &impl quote::ToTokens) -> String {
    t.to_token_stream().to_string()
}

fn idents_in(t: &impl quote::ToTokens, out: &mut Vec<String>) {
    fn walk(ts: proc_macro2::TokenStream, out: &mut Vec<String>) {
        for tt in ts {
            match tt {
                proc_macro2::TokenTree::Ident(i) => out.push(i.to_string()),
                proc_macro2::TokenTree::Group(g) => walk(g.stream(), out),
                // `format!("{name}")` names a variable inside a string.
                proc_macro2::TokenTree::Literal(l) => format_args_in(&l.to_string(), out),
                _ => {}
            }
        }
    }
    walk(t.to_token_stream(), out);
}

/// Identifiers captured by inline format arguments (`{x}`, `{x:?}`) in a literal.
fn format_args_in(literal: &str, out: &mut Vec<String>) {
    if !literal.starts_with('"') && !literal.starts_with('r') {
        return;
    }
    let mut rest = literal;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if rest.starts_with('{') {
            rest = &rest[1..];
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
            out.push(name);
        }
    }
}

fn use_names(tree: &syn::UseTree, out: &mut Vec<String>) {
    match tree {
        syn::UseTree::Path(p) => use_names(&p.tree, out),
        syn::UseTree::Name(n) => out.push(n.ident.to_string()),
        // `as _` binds no name: it only brings a trait's methods into scope.
        syn::UseTree::Rename(r) if r.rename == "_" => {}
        syn::UseTree::Rename(r) => out.push(r.rename.to_string()),
        syn::UseTree::Glob(_) => {}
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_names(t, out)),
    }
}

fn make_item(item: &syn::Item, index: &LineIndex) -> Item {
    let mut edits: Vec<(usize, String)> = Vec::new();
    let mut names = Vec::new();
    let mut impl_key = None;
    let mut mentions = Vec::new();
    let span = item.span();
    let make_pub = |attrs: &[syn::Attribute], vis: &syn::Visibility, edits: &mut Vec<_>| {
        if is_inherited(vis) {
            edits.push((head_offset(attrs, span, index), "pub ".to_string()));
        }
    };
    match item {
        syn::Item::Fn(f) => {
            names.push(f.sig.ident.to_string());
            make_pub(&f.attrs, &f.vis, &mut edits);
        }
        syn::Item::Struct(s) => {
            names.push(s.ident.to_string());
            make_pub(&s.attrs, &s.vis, &mut edits);
            for field in s.fields.iter() {
                if is_inherited(&field.vis) {
                    edits.push((
                        head_offset(&field.attrs, field.span(), index),
                        "pub ".into(),
                    ));
                }
            }
        }
        syn::Item::Enum(e) => {
            names.push(e.ident.to_string());
            make_pub(&e.attrs, &e.vis, &mut edits);
        }
        syn::Item::Union(u) => {
            names.push(u.ident.to_string());
            make_pub(&u.attrs, &u.vis, &mut edits);
        }
        syn::Item::Trait(t) => {
            names.push(t.ident.to_string());
            make_pub(&t.attrs, &t.vis, &mut edits);
        }
        syn::Item::Type(t) => {
            names.push(t.ident.to_string());
            make_pub(&t.attrs, &t.vis, &mut edits);
        }
        syn::Item::Const(c) => {
            names.push(c.ident.to_string());
            make_pub(&c.attrs, &c.vis, &mut edits);
        }
        syn::Item::Static(s) => {
            names.push(s.ident.to_string());
            make_pub(&s.attrs, &s.vis, &mut edits);
        }
        syn::Item::Mod(m) => {
            names.push(m.ident.to_string());
            make_pub(&m.attrs, &m.vis, &mut edits);
        }
        syn::Item::Use(u) => {
            use_names(&u.tree, &mut names);
            make_pub(&u.attrs, &u.vis, &mut edits);
        }
        // `pub extern crate x as y` is an item that later cells' glob imports see.
        syn::Item::ExternCrate(e) => {
            let name = e.rename.as_ref().map_or(&e.ident, |(_, r)| r);
            if name != "_" {
                names.push(name.to_string());
            }
            make_pub(&e.attrs, &e.vis, &mut edits);
        }
        syn::Item::Macro(m) => {
            if let Some(ident) = &m.ident {
                names.push(ident.to_string());
                let exported = m.attrs.iter().any(|a| a.path().is_ident("macro_export"));
                if !exported {
                    edits.push((
                        head_offset(&m.attrs, span, index),
                        "#[macro_export] ".into(),
                    ));
                }
            }
        }
        syn::Item::Impl(i) => {
            let methods: Vec<String> = i
                .items
                .iter()
                .filter_map(|it| match it {
                    syn::ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
                    syn::ImplItem::Const(c) => Some(c.ident.to_string()),
                    _ => None,
                })
                .collect();
            if i.trait_.is_none() {
                for it in &i.items {
                    match it {
                        syn::ImplItem::Fn(f) if is_inherited(&f.vis) => {
                            edits.push((head_offset(&f.attrs, f.span(), index), "pub ".into()))
                        }
                        syn::ImplItem::Const(c) if is_inherited(&c.vis) => {
                            edits.push((head_offset(&c.attrs, c.span(), index), "pub ".into()))
                        }
                        _ => {}
                    }
                }
            }
            idents_in(&i.self_ty, &mut mentions);
            if let Some((_, path, _)) = &i.trait_ {
                idents_in(path, &mut mentions);
            }
            impl_key = Some(ImplKey {
                trait_path: i.trait_.as_ref().map(|(_, p, _)| tokens(p)),
                self_ty: tokens(&i.self_ty),
                methods,
            });
        }
        _ => {}
    }
    let derivable = match item {
        syn::Item::Struct(syn::ItemStruct { attrs, .. })
        | syn::Item::Enum(syn::ItemEnum { attrs, .. }) => !attrs.iter().any(|a| {
            let t = tokens(a);
            t.contains("Serialize") || t.contains("Deserialize") || t.contains("serde")
        }),
        _ => false,
    };
    Item {
        snippet: snippet(span, index, &edits),
        names,
        impl_key,
        mentions,
        derivable,
    }
}

fn is_diverging_macro(m: &syn::Macro) -> bool {
    m.path.segments.last().is_some_and(|s| {
        matches!(
            s.ident.to_string().as_str(),
            "panic" | "unreachable" | "todo" | "unimplemented"
        )
    })
}

/// Whether a final expression obviously never returns (`panic!()`, `loop {}`,
/// `std::process::abort()`): its type `!` cannot be shown, so it runs as a statement.
fn diverges(expr: &syn::Expr) -> bool {
    match expr {
        syn::Expr::Macro(m) => is_diverging_macro(&m.mac),
        syn::Expr::Loop(l) => {
            struct Break(bool);
            impl<'a> syn::visit::Visit<'a> for Break {
                fn visit_expr_break(&mut self, _: &'a syn::ExprBreak) {
                    self.0 = true;
                }
                fn visit_expr_closure(&mut self, _: &'a syn::ExprClosure) {}
                fn visit_item(&mut self, _: &'a syn::Item) {}
            }
            let mut b = Break(false);
            syn::visit::visit_block(&mut b, &l.body);
            !b.0
        }
        syn::Expr::Call(c) => match &*c.func {
            syn::Expr::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| matches!(s.ident.to_string().as_str(), "abort" | "exit")),
            _ => false,
        },
        syn::Expr::Return(_) | syn::Expr::Break(_) | syn::Expr::Continue(_) => true,
        syn::Expr::Block(b) => b
            .block
            .stmts
            .last()
            .is_some_and(|s| matches!(s, syn::Stmt::Expr(e, None) if diverges(e))),
        syn::Expr::Unsafe(b) => b
            .block
            .stmts
            .last()
            .is_some_and(|s| matches!(s, syn::Stmt::Expr(e, None) if diverges(e))),
        _ => false,
    }
}

/// The `?`s of a statement that the kernel writes out itself (see
/// [`ParsedCell::try_sites`]); those inside macro calls stay `?`.
fn try_sites(stmt: &syn::Stmt, statement: usize, out: &mut Vec<TrySite>) {
    // Every name a pattern inside the statement binds (not the statement's own
    // `let` pattern): conservative, as a `?` then keeps fewer variables, never a
    // wrong one.
    struct Patterns(Vec<String>);
    impl<'a> syn::visit::Visit<'a> for Patterns {
        fn visit_pat_ident(&mut self, p: &'a syn::PatIdent) {
            self.0.push(p.ident.to_string());
            syn::visit::visit_pat_ident(self, p);
        }
    }
    let mut inner = Patterns(Vec::new());
    match stmt {
        syn::Stmt::Local(local) => {
            if let Some(init) = &local.init {
                syn::visit::visit_local_init(&mut inner, init);
            }
        }
        other => syn::visit::visit_stmt(&mut inner, other),
    }
    struct Finder<'o> {
        statement: usize,
        shadowed: Vec<String>,
        out: &'o mut Vec<TrySite>,
    }
    impl<'a> syn::visit::Visit<'a> for Finder<'_> {
        fn visit_expr_try(&mut self, e: &'a syn::ExprTry) {
            let at = |lc: LineColumn| (lc.line.saturating_sub(1), lc.column);
            self.out.push(TrySite {
                statement: self.statement,
                expr: at(e.expr.span().start()),
                question: at(e.question_token.span.start()),
                shadowed: self.shadowed.clone(),
            });
            syn::visit::visit_expr_try(self, e);
        }
        fn visit_expr_closure(&mut self, _: &'a syn::ExprClosure) {}
        fn visit_expr_async(&mut self, _: &'a syn::ExprAsync) {}
        fn visit_item(&mut self, _: &'a syn::Item) {}
        fn visit_macro(&mut self, _: &'a syn::Macro) {}
    }
    let mut finder = Finder {
        statement,
        shadowed: inner.0,
        out,
    };
    syn::visit::visit_stmt(&mut finder, stmt);
}

/// Notes whether a statement uses `?` or `.await` outside nested closures, functions
/// and async blocks.
fn scan(stmt: &syn::Stmt, cell: &mut ParsedCell) {
    struct Finder {
        try_: bool,
        await_: bool,
    }
    impl<'a> syn::visit::Visit<'a> for Finder {
        fn visit_expr_try(&mut self, e: &'a syn::ExprTry) {
            self.try_ = true;
            syn::visit::visit_expr_try(self, e);
        }
        fn visit_expr_await(&mut self, e: &'a syn::ExprAwait) {
            self.await_ = true;
            syn::visit::visit_expr_await(self, e);
        }
        fn visit_expr_closure(&mut self, _: &'a syn::ExprClosure) {}
        fn visit_expr_async(&mut self, _: &'a syn::ExprAsync) {}
        fn visit_item(&mut self, _: &'a syn::Item) {}
        fn visit_macro(&mut self, m: &'a syn::Macro) {
            // `println!("{}", x?)` and friends: look inside as expressions if they parse.
            if let Ok(args) = m.parse_body_with(
                syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated,
            ) {
                for a in &args {
                    syn::visit::visit_expr(self, a);
                }
            }
        }
    }
    let mut f = Finder {
        try_: false,
        await_: false,
    };
    syn::visit::visit_stmt(&mut f, stmt);
    cell.uses_try |= f.try_;
    cell.uses_await |= f.await_;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_items_statements_and_value() {
        let c = parse("fn f() -> i32 { 1 }\nlet x = f();\nx + 1").unwrap();
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].snippet.text, "pub fn f() -> i32 { 1 }");
        assert_eq!(c.items[0].names, vec!["f"]);
        assert_eq!(c.statements[0].text, "let x = f();");
        assert_eq!(c.statements[0].line, 2);
        let v = c.value.unwrap();
        assert_eq!((v.text.as_str(), v.line, v.column), ("x + 1", 3, 0));
    }

    #[test]
    fn makes_struct_fields_and_methods_public() {
        let c = parse("#[derive(Debug)]\nstruct P { x: i32, pub y: i32 }\nimpl P { fn new() -> P { P { x: 1, y: 2 } } }").unwrap();
        assert_eq!(
            c.items[0].snippet.text,
            "#[derive(Debug)]\npub struct P { pub x: i32, pub y: i32 }"
        );
        assert_eq!(
            c.items[1].snippet.text,
            "impl P { pub fn new() -> P { P { x: 1, y: 2 } } }"
        );
        let key = c.items[1].impl_key.as_ref().unwrap();
        assert_eq!(key.methods, vec!["new"]);
        assert_eq!(c.items[1].mentions, vec!["P"]);
    }

    #[test]
    fn trait_impls_keep_private_methods_and_macros_are_exported() {
        let c = parse("impl std::fmt::Display for P { fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { Ok(()) } }\nmacro_rules! m { () => { 1 } }").unwrap();
        assert!(c.items[0].snippet.text.contains("{ fn fmt"));
        assert!(c.items[0].mentions.contains(&"Display".to_string()));
        assert!(c.items[1]
            .snippet
            .text
            .starts_with("#[macro_export] macro_rules!"));
    }

    #[test]
    fn trailing_macro_is_the_value_and_semicolon_is_not() {
        assert!(parse("vec![1, 2]").unwrap().value.is_some());
        assert!(parse("println!(\"x\");").unwrap().value.is_none());
        assert!(parse("let a = 1;").unwrap().value.is_none());
    }

    #[test]
    fn diverging_tails_are_statements() {
        for code in [
            "panic!(\"x\")",
            "loop {}",
            "std::process::abort()",
            "unsafe { std::process::abort() }",
        ] {
            let c = parse(code).unwrap();
            assert!(c.value.is_none(), "{code}");
            assert_eq!(c.statements.len(), 1, "{code}");
        }
        assert!(parse("loop { break 3 }").unwrap().value.is_some());
    }

    #[test]
    fn pathological_nesting_is_a_clear_error_not_a_crash() {
        let deep = format!("{}1{}", "(".repeat(60_000), ")".repeat(60_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested 60000 levels"), "{}", e.message);
        // Prefix operators recurse too: a long chain parses on the large stack.
        let nots = format!("let b = {}true;", "!".repeat(20_000));
        assert!(parse(&nots).is_ok());
        let nots = format!("let b = {}true;", "!".repeat(1_000_000));
        assert!(parse(&nots)
            .unwrap_err()
            .message
            .contains("operators in a row"));
    }

    #[test]
    fn an_item_reads_as_written_without_the_kernels_pub() {
        let parsed = parse("let a = 1;\n  struct P(usize);\nfn f() {}").unwrap();
        let texts: Vec<String> = parsed
            .items
            .iter()
            .map(|i| i.snippet.as_written())
            .collect();
        assert_eq!(texts, vec!["struct P(usize);", "fn f() {}"]);
        assert!(parsed.items[0].snippet.text.contains("pub"));
    }

    #[test]
    fn finds_question_mark_outside_closures() {
        assert!(parse("let n: i32 = \"4\".parse()?;").unwrap().uses_try);
        assert!(
            !parse("let f = |s: &str| s.parse::<i32>().ok()?;")
                .unwrap()
                .uses_try
        );
    }

    #[test]
    fn syntax_error_has_cell_line() {
        let e = parse("let a = 1;\nlet = 7q;").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn finds_new_bindings_and_used_names() {
        let c =
            parse("let (a, mut b) = (1, 2);\nlet Point { x, .. } = p;\nlet a = a + q;\nb").unwrap();
        assert_eq!(c.bindings, vec!["b", "x", "a"]);
        assert!(c.idents.contains("p") && c.idents.contains("q"));
        assert!(!c.idents.contains("a") && !c.idents.contains("b"));
        assert!(c.value_is_place);
        assert!(parse("let n = n + 1;").unwrap().idents.contains("n"));
        let c = parse("println!(\"{a} {b:?} {{c}} {0}\", 1)").unwrap();
        assert!(c.idents.contains("a") && c.idents.contains("b"));
        assert!(!c.idents.contains("c"));
        assert!(!parse("v.len()").unwrap().value_is_place);
    }

    #[test]
    fn unicode_columns_slice_correctly() {
        let c = parse("let s = \"héllo\"; s.len()").unwrap();
        assert_eq!(c.value.unwrap().text, "s.len()");
    }
}
