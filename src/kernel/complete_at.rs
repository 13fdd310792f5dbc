//! Completion and inspection of what the cursor is on, with types from rustc: the
//! methods and fields after `expr.`, the items after `path::`, and the type and
//! docs of the expression under the cursor.
//!
//! The expression's type comes from a check-only build of the code before the
//! cursor (see [`super::expr_context`]); its members from std's docs for std types
//! and from the session's items for its own. Nothing stays loaded between requests
//! beyond a few parsed doc pages.

use super::expr_context::{self, PROBE_MARK};
use super::introspect::{self, Completion};
use super::std_docs::{self, MemberKind, StdDocs};
use crate::compile::session::ItemKind;
use crate::compile::vars;
use crate::compile::Session;

/// One completion: its text, what it is (JupyterLab's completer type) and, for std
/// items, its signature and summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub text: String,
    pub kind: &'static str,
    pub signature: String,
}

/// Completes at the cursor: what [`introspect::complete`] finds without rustc, and
/// after `expr.` or `path::` what the type or module has. Returns the completion
/// and what each match is (for JupyterLab's typed completions).
pub async fn complete(
    session: Option<&Session>,
    docs: Option<&StdDocs>,
    items: &[String],
    code: &str,
    cursor: Option<usize>,
) -> (Completion, Vec<Offer>) {
    let members = |name: &str| session.map(|s| s.members(name)).unwrap_or_default();
    let mut c = introspect::complete(code, cursor, items, &members);
    let Some(session) = session else {
        return (c, vec![]);
    };
    let start = introspect::byte_offset(code, c.start);
    let end = introspect::byte_offset(code, c.end);
    if start > end || introspect::is_magic_line(code, end) {
        return (c, vec![]);
    }
    let word = &code[start..end];
    let before = &code[..start];
    let offers = if let Some(owner) = before.strip_suffix("::") {
        // `c.start` is after the last `::`: the path is the word before it.
        let path_start = owner
            .char_indices()
            .rev()
            .find(|(_, ch)| !(ch.is_alphanumeric() || *ch == '_' || *ch == ':'))
            .map(|(i, ch)| i + ch.len_utf8())
            .unwrap_or(0);
        after_path(session, docs, &owner[path_start..])
    } else if let Some(dot) = before.strip_suffix('.').map(str::len) {
        match expr_context::expression_start(code, dot) {
            Some(recv) => match type_of(session, code, recv, dot).await {
                Some(ty) => members_of_type(session, docs, &ty),
                None => vec![],
            },
            None => vec![],
        }
    } else {
        vec![]
    };
    let offers: Vec<Offer> = offers
        .into_iter()
        .filter(|o| o.text.starts_with(word))
        .collect();
    let mut matches = c.matches.clone();
    matches.extend(offers.iter().map(|o| o.text.clone()));
    let mut seen = std::collections::HashSet::new();
    matches.retain(|m| seen.insert(m.clone()));
    c.matches = matches;
    (c, offers)
}

impl From<&std_docs::Member> for Offer {
    fn from(m: &std_docs::Member) -> Offer {
        Offer {
            text: m.name.clone(),
            kind: m.kind.jupyter_type(),
            signature: m.signature.clone(),
        }
    }
}

/// The type of `code[start..end]`, as rustc prints it: a session variable's kept
/// type, or rustc's answer to a probe.
pub async fn type_of(session: &Session, code: &str, start: usize, end: usize) -> Option<String> {
    let text = code[start..end].trim();
    // A session variable the code before does not mention (and so cannot shadow).
    if let Some(v) = session.vars().get(text) {
        if !mentions(&code[..start], text) {
            return Some(vars::display_type(&v.ty));
        }
    }
    let probe = expr_context::probe_code(code, start, end)?;
    // A completion must not hold up the shell: rustc gets a few seconds.
    tokio::time::timeout(PROBE_TIMEOUT, session.probed_type(&probe, PROBE_MARK))
        .await
        .ok()
        .flatten()
}

/// The fields and methods of a value of type `ty`.
pub fn members_of_type(session: &Session, docs: Option<&StdDocs>, ty: &str) -> Vec<Offer> {
    let mut out = Vec::new();
    // Through `Box`, `Rc`, `Arc` and references, as method calls see through them.
    for ty in std_docs::with_deref_targets(ty) {
        let own = session.type_members(&ty);
        out.extend(
            own.into_iter()
                .filter(|m| matches!(m.kind, ItemKind::Method | ItemKind::Field))
                .map(|m| Offer {
                    kind: item_type(m.kind),
                    text: m.name,
                    signature: String::new(),
                }),
        );
        if let (Some(docs), Some(page)) = (docs, std_docs::page_path(&ty)) {
            let called_on_values = |m: &&std_docs::Member| {
                m.kind != MemberKind::Function && m.kind != MemberKind::Variant
            };
            out.extend(
                docs.members(&page)
                    .iter()
                    .filter(called_on_values)
                    .map(Offer::from),
            );
        }
    }
    dedup(&mut out);
    out
}

/// What follows `path::`: a session type's associated items and variants, a session
/// module's items, a std module's items, a std type's functions.
pub fn after_path(session: &Session, docs: Option<&StdDocs>, path: &str) -> Vec<Offer> {
    let mut out = Vec::new();
    let segments: Vec<&str> = path
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let Some(last) = segments.last() else {
        return out;
    };
    // Associated functions (methods too: `Type::method(&value)`), constants and
    // variants; not fields.
    for m in session.type_members(last) {
        if m.kind != ItemKind::Field {
            out.push(Offer {
                kind: item_type(m.kind),
                text: m.name,
                signature: String::new(),
            });
        }
    }
    let module_path: Vec<&str> = segments
        .iter()
        .copied()
        .skip_while(|s| *s == "crate" || *s == "self")
        .collect();
    for name in session.module_items(&module_path) {
        out.push(Offer {
            text: name,
            kind: "module",
            signature: String::new(),
        });
    }
    if let Some(docs) = docs {
        if matches!(segments[0], "std" | "core" | "alloc") {
            for name in docs.children(path.trim_end_matches("::")) {
                out.push(Offer {
                    text: name,
                    kind: "module",
                    signature: String::new(),
                });
            }
        }
        out.extend(
            docs.members(path.trim_end_matches("::"))
                .iter()
                .map(Offer::from),
        );
    }
    dedup(&mut out);
    out
}

/// What Shift+Tab shows for the expression that ends at byte `end` of `code`: a
/// method's signature and summary from std's docs, or the expression's type (and a
/// std type's summary).
pub async fn inspect(
    session: &Session,
    docs: Option<&StdDocs>,
    code: &str,
    end: usize,
) -> Option<String> {
    let start = expr_context::expression_start(code, end)?;
    let expr = &code[start..end];
    // `recv.method`: the method's docs on the receiver's type.
    if let Some(dot) = expr.rfind('.') {
        let name = &expr[dot + 1..];
        if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            let ty = type_of(session, code, start, start + dot).await?;
            let docs = docs?;
            for t in std_docs::with_deref_targets(&ty) {
                if let Some(m) = std_docs::page_path(&t)
                    .map(|p| docs.members(&p))
                    .and_then(|ms| ms.iter().find(|m| m.name == name).cloned())
                {
                    return Some(format!(
                        "{}\n\n{}\n\n(on {})",
                        m.signature,
                        m.summary,
                        short(&ty)
                    ));
                }
            }
            return None;
        }
    }
    // `Type::function` or a std path: its docs.
    if let (Some(docs), Some(split)) = (docs, expr.rfind("::")) {
        let (owner, name) = (&expr[..split], &expr[split + 2..]);
        if let Some(m) = docs.members(owner).iter().find(|m| m.name == name) {
            return Some(format!("{}\n\n{}\n\n({owner})", m.signature, m.summary));
        }
        if let Some(text) = docs.summary(expr) {
            return Some(text);
        }
    }
    let ty = type_of(session, code, start, end).await?;
    let mut text = format!("{}: {}", expr.trim(), short(&ty));
    if let Some(summary) = docs.and_then(|d| d.summary(&std_docs::page_path(&ty)?)) {
        text.push_str("\n\n");
        text.push_str(&summary);
    }
    Some(text)
}

/// JupyterLab's completer type for a member of a session type.
fn item_type(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Field => "field",
        ItemKind::Variant => "enum",
        ItemKind::Constant => "constant",
        ItemKind::Method | ItemKind::Function => "function",
    }
}

/// How long a completion or inspection waits for rustc's answer.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether `code` uses the identifier `name` as a whole word.
fn mentions(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(i, _)| {
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        !code[..i].chars().next_back().is_some_and(ident)
            && !code[i + name.len()..].chars().next().is_some_and(ident)
    })
}

fn short(ty: &str) -> String {
    vars::short_type(ty)
}

fn dedup(v: &mut Vec<Offer>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|o| seen.insert(o.text.clone()));
}
