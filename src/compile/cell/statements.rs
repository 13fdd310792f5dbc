//! What a cell's statements do: the names they bind (and which are `mut`), the
//! names they mention, whether the last one never returns, and where they use `?`
//! and `.await`.

use super::{ParsedCell, TrySite};
use proc_macro2::LineColumn;
use syn::spanned::Spanned;

/// `x`, `x.field`, `x.0`: a place that can be shown by reference.
pub(super) fn is_place(expr: &syn::Expr) -> bool {
    match expr {
        syn::Expr::Path(p) => p.qself.is_none() && p.path.get_ident().is_some(),
        syn::Expr::Field(f) => is_place(&f.base),
        syn::Expr::Paren(p) => is_place(&p.expr),
        _ => false,
    }
}

/// The variable names a `let` pattern binds, and which of them are `mut`.
pub(super) fn pattern_names(pat: &syn::Pat, out: &mut Vec<String>, mutable: &mut Vec<String>) {
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

pub(super) fn idents_in(t: &impl quote::ToTokens, out: &mut Vec<String>) {
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

pub(super) fn is_diverging_macro(m: &syn::Macro) -> bool {
    m.path.segments.last().is_some_and(|s| {
        matches!(
            s.ident.to_string().as_str(),
            "panic" | "unreachable" | "todo" | "unimplemented"
        )
    })
}

/// Whether a final expression obviously never returns (`panic!()`, `loop {}`,
/// `std::process::abort()`): its type `!` cannot be shown, so it runs as a statement.
pub(super) fn diverges(expr: &syn::Expr) -> bool {
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
pub(super) fn try_sites(stmt: &syn::Stmt, statement: usize, out: &mut Vec<TrySite>) {
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
pub(super) fn scan(stmt: &syn::Stmt, cell: &mut ParsedCell) {
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
