//! Parsing a cell: the limits that keep the parser from overflowing its stack, the
//! parser's own thread, and the walk over the cell's statements that sorts them into
//! items, statements and the trailing value.

use super::items::{is_thread_local, make_item};
use super::span::{snippet, LineIndex};
use super::statements::{
    diverges, idents_in, is_diverging_macro, is_place, pattern_names, scan, try_sites,
};
use super::{ParsedCell, SyntaxError};
use syn::spanned::Spanned;

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
/// [`crate::compile::delimiters::MAX_NESTING`] brackets and [`MAX_PREFIX_CHAIN`] prefix
/// operators in a row.
const PARSE_STACK: usize = 512 << 20;

/// The longest run of prefix operators (`!`, `-`, `*`, `&`) a cell may have.
const MAX_PREFIX_CHAIN: usize = 20_000;

fn parse_here(code: &str) -> Result<ParsedCell, SyntaxError> {
    // The parser recurses once per nesting level: refuse what would overflow it.
    let depth = crate::compile::delimiters::deepest(code);
    if depth > crate::compile::delimiters::MAX_NESTING {
        return Err(SyntaxError {
            message: format!(
                "brackets nested {depth} levels deep; a cell may nest at most {}",
                crate::compile::delimiters::MAX_NESTING
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
        use crate::compile::delimiters::{self, Delimiters};
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
            syn::Stmt::Macro(m) if is_thread_local(&m.mac) => {}
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
            cell.closures
                .extend(crate::compile::boxed::closure_binding(local));
        }
        match stmt {
            syn::Stmt::Item(item) => cell.items.push(make_item(item, &index)),
            syn::Stmt::Macro(m) if is_thread_local(&m.mac) => {
                let item = syn::Item::Macro(syn::ItemMacro {
                    attrs: m.attrs.clone(),
                    ident: None,
                    mac: m.mac.clone(),
                    semi_token: m.semi_token,
                });
                cell.items.push(make_item(&item, &index));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_items_statements_and_value() {
        let c = parse("fn f() -> i32 { 1 }\nlet x = f();\nx + 1").unwrap();
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].snippet.text, "#[inline] pub fn f() -> i32 { 1 }");
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
            "impl P { #[inline] pub fn new() -> P { P { x: 1, y: 2 } } }"
        );
        let key = c.items[1].impl_key.as_ref().unwrap();
        assert_eq!(key.methods, vec!["new"]);
        assert_eq!(c.items[1].mentions, vec!["P"]);
    }

    #[test]
    fn thread_local_at_the_top_of_a_cell_defines_public_items() {
        let c = parse(
            "thread_local! {\n    static A: u8 = 1;\n    pub static B: u8 = 2;\n}\nA.with(|a| *a)",
        )
        .unwrap();
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].names, vec!["A", "B"]);
        assert_eq!(
            c.items[0].snippet.text,
            "thread_local! {\n    pub static A: u8 = 1;\n    pub static B: u8 = 2;\n}"
        );
        assert!(c.value.is_some() && c.statements.is_empty());
    }

    #[test]
    fn trait_impls_keep_private_methods_and_macros_are_exported() {
        let c = parse("impl std::fmt::Display for P { fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { Ok(()) } }\nmacro_rules! m { () => { 1 } }").unwrap();
        assert!(c.items[0].snippet.text.contains("{ #[inline] fn fmt"));
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
