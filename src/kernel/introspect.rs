//! Completion, inspection and the is-complete check.
//!
//! Cursor positions in the protocol count Unicode code points; Rust strings are
//! indexed by bytes, so every position is converted on the way in and out.

use super::execute::magics;
use crate::compile::prelude;
use crate::protocol::messages::Completeness;

/// Rust keywords offered for completion.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while",
];

/// A few std items documented for inspection.
const STD_DOCS: &[(&str, &str)] = &[
    ("Vec", "std::vec::Vec<T>: a contiguous growable array type. `vec![1, 2, 3]`, `Vec::with_capacity(n)`, `v.push(x)`."),
    ("String", "std::string::String: a UTF-8 encoded, growable string. `String::from(\"a\")`, `s.push_str(\"b\")`."),
    ("HashMap", "std::collections::HashMap<K, V>: a hash map. `let mut m = HashMap::new(); m.insert(k, v);`"),
    ("Option", "std::option::Option<T>: `Some(T)` or `None`."),
    ("Result", "std::result::Result<T, E>: `Ok(T)` or `Err(E)`; `?` returns the error early."),
    ("Box", "std::boxed::Box<T>: a pointer type for heap allocation."),
    ("Arc", "std::sync::Arc<T>: a thread-safe reference-counted pointer."),
    ("Mutex", "std::sync::Mutex<T>: a mutual exclusion primitive for shared data."),
    ("println", "println!: prints to stdout with a newline; streams to the notebook live."),
];

/// A few std paths for completion after `::`.
const STD_PATHS: &[&str] = &[
    "std::collections::HashMap",
    "std::collections::HashSet",
    "std::collections::BTreeMap",
    "std::collections::BTreeSet",
    "std::collections::VecDeque",
    "std::collections::BinaryHeap",
    "std::sync::Arc",
    "std::sync::Mutex",
    "std::sync::RwLock",
    "std::sync::mpsc",
    "std::sync::atomic",
    "std::thread::spawn",
    "std::thread::sleep",
    "std::thread::scope",
    "std::time::Duration",
    "std::time::Instant",
    "std::mem::swap",
    "std::mem::replace",
    "std::mem::take",
    "std::mem::size_of",
    "std::fmt::Display",
    "std::fmt::Debug",
    "std::fmt::Write",
    "std::io::Write",
    "std::io::Read",
    "std::fs::read_to_string",
    "std::fs::write",
    "std::iter::repeat",
    "std::iter::once",
    "std::cmp::Ordering",
    "std::cmp::max",
    "std::cmp::min",
    "std::rc::Rc",
    "std::cell::RefCell",
    "std::cell::Cell",
    "std::env::var",
    "std::env::args",
    "std::process::Command",
];

pub fn byte_offset(s: &str, code_points: usize) -> usize {
    s.char_indices()
        .nth(code_points)
        .map(|(i, _)| i)
        .unwrap_or(s.len())
}

fn code_points(s: &str, byte: usize) -> usize {
    s[..byte].chars().count()
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Completion result: matches and the code-point range they replace.
pub struct Completion {
    pub matches: Vec<String>,
    pub start: usize,
    pub end: usize,
}

/// Completes the word before the cursor from session items, the prelude, keywords,
/// std paths and magics.
pub fn complete(
    code: &str,
    cursor: Option<usize>,
    items: &[String],
    members: &dyn Fn(&str) -> Vec<String>,
) -> Completion {
    let end = cursor.map(|c| byte_offset(code, c)).unwrap_or(code.len());
    let before = &code[..end];
    // A magic at the start of a line.
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = &before[line_start..];
    if is_magic_line(code, end) {
        let matches = magics::completions(line);
        return Completion {
            matches,
            start: code_points(code, line_start),
            end: code_points(code, end),
        };
    }
    let word_start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_ident_char(*c) || *c == ':')
        .last()
        .map(|(i, _)| i)
        .unwrap_or(end);
    let word = &before[word_start..];
    let mut matches: Vec<String> = Vec::new();
    // `value.prefix`: the fields and methods of a session variable's type.
    if !word.contains(':') && before[..word_start].ends_with('.') {
        let owner = &before[..word_start - 1];
        let owner_start = owner
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_ident_char(*c))
            .last()
            .map(|(i, _)| i)
            .unwrap_or(owner.len());
        let matches = members(&owner[owner_start..])
            .into_iter()
            .filter(|m| m.starts_with(word))
            .collect();
        return Completion {
            matches,
            start: code_points(code, word_start),
            end: code_points(code, end),
        };
    }
    if let Some(split) = word.rfind("::") {
        let (path, prefix) = (&word[..split + 2], &word[split + 2..]);
        for p in STD_PATHS {
            if let Some(rest) = p.strip_prefix(path) {
                let seg = rest.split("::").next().unwrap_or("");
                if seg.starts_with(prefix) && !seg.is_empty() {
                    matches.push(seg.to_string());
                }
            }
        }
        let start = word_start + split + 2;
        dedup(&mut matches);
        return Completion {
            matches,
            start: code_points(code, start),
            end: code_points(code, end),
        };
    }
    if word.is_empty() {
        return Completion {
            matches,
            start: code_points(code, end),
            end: code_points(code, end),
        };
    }
    let candidates = items
        .iter()
        .map(String::as_str)
        .chain(prelude::DOCS.iter().map(|p| p.0))
        .chain(KEYWORDS.iter().copied())
        .chain([
            "std",
            "core",
            "alloc",
            "println",
            "print",
            "eprintln",
            "format",
            "vec",
            "assert",
            "assert_eq",
        ]);
    matches.extend(
        candidates
            .filter(|c| c.starts_with(word) && *c != word)
            .map(String::from),
    );
    dedup(&mut matches);
    Completion {
        matches,
        start: code_points(code, word_start),
        end: code_points(code, end),
    }
}

/// Whether the line before byte `end` is a magic being typed (`%ti`, `:de`).
pub fn is_magic_line(code: &str, end: usize) -> bool {
    let before = &code[..end];
    let line = &before[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..];
    (line.starts_with('%') || line.starts_with(':')) && !line.contains(char::is_whitespace)
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|m| seen.insert(m.clone()));
}

/// The identifier under (or just before) the cursor.
pub fn word_at(code: &str, cursor: Option<usize>) -> &str {
    let at = cursor.map(|c| byte_offset(code, c)).unwrap_or(code.len());
    let start = code[..at]
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_ident_char(*c))
        .last()
        .map(|(i, _)| i)
        .unwrap_or(at);
    let end = code[at..]
        .char_indices()
        .find(|(_, c)| !is_ident_char(*c))
        .map(|(i, _)| at + i)
        .unwrap_or(code.len());
    &code[start..end]
}

/// Documentation for a prelude or std name.
pub fn docs(name: &str) -> Option<String> {
    if let Some((_, sig, doc)) = prelude::DOCS.iter().find(|p| p.0 == name) {
        return Some(format!("{sig}\n\n{doc}\n\n(ferrocell prelude)"));
    }
    STD_DOCS
        .iter()
        .find(|d| d.0 == name)
        .map(|d| d.1.to_string())
}

/// `complete`, `incomplete` (with an indent) or `invalid`.
pub fn is_complete(code: &str) -> (Completeness, Option<String>) {
    if magics::starts_with_magic(code) {
        return (Completeness::Complete, None);
    }
    use crate::compile::delimiters::{self, Delimiters};
    match delimiters::scan(code) {
        Delimiters::Balanced => {}
        Delimiters::Open(open) => {
            return (Completeness::Incomplete, Some("    ".repeat(open.len())))
        }
        Delimiters::Unterminated { .. } => return (Completeness::Incomplete, Some(String::new())),
        Delimiters::Stray { .. } => return (Completeness::Invalid, None),
    }
    let trimmed = code.trim_end();
    let trailing_op = [
        "+", "-", "*", "/", "%", "=", "&&", "||", "&", "|", "^", "<<", ">>", ",", ".", "->", "=>",
        "::",
    ]
    .iter()
    .any(|op| trimmed.ends_with(op));
    if trailing_op {
        return (Completeness::Incomplete, Some(String::new()));
    }
    if trimmed.is_empty() {
        return (Completeness::Complete, None);
    }
    match crate::compile::cell::parse(code) {
        Ok(_) => (Completeness::Complete, None),
        Err(_) => (Completeness::Invalid, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_prelude_items_and_std_paths() {
        let members = |name: &str| match name {
            "p" | "Point" => vec!["new".to_string(), "norm".into(), "x".into()],
            _ => vec![],
        };
        let c = complete("let n = p.no", None, &[], &members);
        assert_eq!(
            (c.matches, c.start, c.end),
            (vec!["norm".to_string()], 10, 12)
        );
        // `Type::` on session types is answered with rustc's help (complete_at).
        let c = complete("Point::n", None, &[], &members);
        assert_eq!((c.matches.len(), c.start, c.end), (0, 7, 8));
        let c = complete("display_ht", None, &[], &|_| vec![]);
        assert_eq!(c.matches, vec!["display_html"]);
        assert_eq!((c.start, c.end), (0, 10));
        let c = complete("std::mem::swa", None, &[], &|_| vec![]);
        assert_eq!(c.matches, vec!["swap"]);
        let c = complete("let é = my_f", None, &["my_fn".into()], &|_| vec![]);
        assert_eq!(c.matches, vec!["my_fn"]);
        assert_eq!(c.start, 8);
        assert!(complete("%ls", None, &[], &|_| vec![])
            .matches
            .contains(&"%lsmagic".to_string()));
    }

    #[test]
    fn is_complete_cases() {
        assert_eq!(is_complete("fn f() {").0, Completeness::Incomplete);
        assert_eq!(is_complete("let s = \"abc").0, Completeness::Incomplete);
        assert_eq!(is_complete("1 +").0, Completeness::Incomplete);
        assert_eq!(is_complete("let x = 1;").0, Completeness::Complete);
        assert_eq!(is_complete("fn f() {}").0, Completeness::Complete);
        assert_eq!(is_complete("let = 7q;").0, Completeness::Invalid);
        assert_eq!(is_complete("}").0, Completeness::Invalid);
        assert_eq!(is_complete("let s = \"}\"; // {").0, Completeness::Complete);
        assert_eq!(is_complete("let c = '{';").0, Completeness::Complete);
        assert_eq!(is_complete("let c = '\\'';").0, Completeness::Complete);
        assert_eq!(
            is_complete("fn f<'a>(x: &'a str) -> &'a str {").0,
            Completeness::Incomplete
        );
    }

    #[test]
    fn word_at_cursor() {
        assert_eq!(word_at("let v: Vec<u8>", Some(8)), "Vec");
        assert_eq!(word_at("display_html", None), "display_html");
    }
}
