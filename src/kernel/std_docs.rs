//! What std's own documentation says: the methods, fields and variants of a std type
//! and an item's one-line summary, read from the HTML that rustup's `rust-docs`
//! component installs next to rustc.
//!
//! Each type page lists every method the type has, its own and those of the traits
//! it implements and of its `Deref` target, so one page answers completion after
//! `value.` for that type. Pages are read on demand and a small number of them is
//! kept; nothing is loaded while nobody asks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a member is, as Jupyter's typed completions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// Takes `self`: called as `value.name(…)`.
    Method,
    /// Called as `Type::name(…)`.
    Function,
    Field,
    Variant,
    Constant,
}

impl MemberKind {
    /// The type JupyterLab's completer shows.
    pub fn jupyter_type(self) -> &'static str {
        match self {
            MemberKind::Method | MemberKind::Function => "function",
            MemberKind::Field => "field",
            MemberKind::Variant => "enum",
            MemberKind::Constant => "constant",
        }
    }
}

/// A method, field, variant or constant of a std type.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub kind: MemberKind,
    /// As the page shows it: `pub fn reserve(&mut self, additional: usize)`.
    pub signature: String,
    /// The first paragraph of its documentation.
    pub summary: String,
}

/// How many pages are kept read.
const KEPT_PAGES: usize = 32;

/// The std documentation of the toolchain, if installed.
pub struct StdDocs {
    root: PathBuf,
    pages: Mutex<Vec<(PathBuf, Arc<Vec<Member>>)>>,
}

const KINDS: &[&str] = &[
    "struct",
    "enum",
    "trait",
    "primitive",
    "type",
    "union",
    "fn",
    "macro",
    "constant",
];

impl StdDocs {
    /// The docs beside the toolchain whose libstd is in `target_libdir`
    /// (`<sysroot>/lib/rustlib/<host>/lib`): `<sysroot>/share/doc/rust/html`.
    pub fn beside(target_libdir: &Path) -> Option<StdDocs> {
        let sysroot = target_libdir.ancestors().nth(4)?;
        let root = sysroot.join("share/doc/rust/html");
        root.join("std/index.html").is_file().then(|| StdDocs {
            root,
            pages: Mutex::new(Vec::new()),
        })
    }

    /// The page of an item by its path (`std::vec::Vec`, `str`, `core::option::Option`).
    pub fn page(&self, path: &str) -> Option<PathBuf> {
        let segments: Vec<&str> = path.split("::").map(str::trim).collect();
        // Identifiers only: the path becomes file names.
        if !segments.iter().all(|s| is_ident(s)) {
            return None;
        }
        if let [one] = segments.as_slice() {
            let p = self.root.join(format!("std/primitive.{one}.html"));
            if p.is_file() {
                return Some(p);
            }
            // A prelude name (`Vec`, `String`, `Option`).
            let full = PRELUDE_TYPES.iter().find(|(short, _)| short == one)?.1;
            return self.page(full);
        }
        let (name, dirs) = segments.split_last()?;
        let dir = dirs.iter().fold(self.root.clone(), |d, s| d.join(s));
        KINDS
            .iter()
            .map(|k| dir.join(format!("{k}.{name}.html")))
            .find(|p| p.is_file())
    }

    /// The items of a std module (`std::collections`), for completing paths.
    pub fn children(&self, module: &str) -> Vec<String> {
        if !module.split("::").all(|s| is_ident(s.trim())) {
            return vec![];
        }
        let dir = module
            .split("::")
            .fold(self.root.clone(), |d, s| d.join(s.trim()));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return vec![];
        };
        let mut out: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                if e.path().join("index.html").is_file() {
                    return Some(name);
                }
                let stem = name.strip_suffix(".html")?;
                let (kind, item) = stem.split_once('.')?;
                KINDS.contains(&kind).then(|| item.to_string())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every member the page of `path` lists.
    pub fn members(&self, path: &str) -> Arc<Vec<Member>> {
        let Some(page) = self.page(path) else {
            return Arc::new(vec![]);
        };
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = pages.iter().position(|(p, _)| *p == page) {
            let hit = pages.remove(i);
            let members = hit.1.clone();
            pages.push(hit);
            return members;
        }
        let members = Arc::new(
            std::fs::read_to_string(&page)
                .map(|html| members_of(&html))
                .unwrap_or_default(),
        );
        if pages.len() >= KEPT_PAGES {
            pages.remove(0);
        }
        pages.push((page, members.clone()));
        members
    }

    /// An item's declaration and first paragraph, for inspection.
    pub fn summary(&self, path: &str) -> Option<String> {
        let html = std::fs::read_to_string(self.page(path)?).ok()?;
        let decl = between(
            &html,
            "<pre class=\"rust item-decl\"><code>",
            "</code></pre>",
        )
        .map(text_of)
        // A trait's or struct's declaration, up to its body.
        .map(|d| d.split(" {").next().unwrap_or_default().to_string())
        .unwrap_or_default();
        let doc = html
            .find("<details class=\"toggle top-doc\"")
            .or_else(|| html.find("class=\"docblock\""))
            .and_then(|at| between(&html[at..], "<p>", "</p>"))
            .map(text_of)
            .unwrap_or_default();
        let text = [decl, doc]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
        (!text.is_empty()).then_some(text)
    }
}

/// Names cells use without a path, with the path of their page.
pub const PRELUDE_TYPES: &[(&str, &str)] = &[
    ("Vec", "std::vec::Vec"),
    ("String", "std::string::String"),
    ("Option", "std::option::Option"),
    ("Result", "std::result::Result"),
    ("Box", "std::boxed::Box"),
    ("Iterator", "std::iter::Iterator"),
    ("HashMap", "std::collections::HashMap"),
    ("HashSet", "std::collections::HashSet"),
    ("BTreeMap", "std::collections::BTreeMap"),
    ("Rc", "std::rc::Rc"),
    ("Arc", "std::sync::Arc"),
];

/// The members listed on a type's page, each name once.
fn members_of(html: &str) -> Vec<Member> {
    let mut out: Vec<Member> = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(" id=\"") {
        rest = &rest[at + 5..];
        let Some(end) = rest.find('"') else { break };
        let id = &rest[..end];
        let Some((kind, name)) = id.split_once('.') else {
            continue;
        };
        let kind = match kind {
            "method" | "tymethod" => MemberKind::Method,
            "structfield" => MemberKind::Field,
            "variant" => MemberKind::Variant,
            "associatedconstant" => MemberKind::Constant,
            _ => continue,
        };
        if name.contains('-') || out.iter().any(|m| m.name == name) {
            continue;
        }
        // The header up to the end of its heading, then the docs up to the next
        // member.
        let next = rest[end..]
            .find(" id=\"")
            .map(|i| end + i)
            .unwrap_or(rest.len());
        let block = &rest[end..next];
        let signature = between(block, "<h4 class=\"code-header\">", "</h4>")
            .or_else(|| between(block, "<code>", "</code>"))
            .map(text_of)
            .unwrap_or_default();
        let kind = match kind {
            MemberKind::Method if !takes_self(&signature) => MemberKind::Function,
            k => k,
        };
        let summary = block
            .find("class=\"docblock")
            .and_then(|d| between(&block[d..], "<p>", "</p>"))
            .map(text_of)
            .unwrap_or_default();
        out.push(Member {
            name: name.to_string(),
            kind,
            signature,
            summary,
        });
    }
    out
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn takes_self(signature: &str) -> bool {
    let Some(open) = signature.find('(') else {
        return false;
    };
    let first = signature[open + 1..].split([',', ')']).next().unwrap_or("");
    first.contains("self")
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

/// Text of an HTML fragment: tags dropped, entities decoded, spaces collapsed.
fn text_of(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    // rustdoc's "Notable traits" marker.
    let decoded = decoded.replace('ⓘ', "");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The page of a type as rustc prints it: references, generics and `dyn` dropped
/// (`&mut std::vec::Vec<u8>` is `std::vec::Vec`, `&[u8]` is `slice`, `&str` is `str`).
pub fn page_path(ty: &str) -> Option<String> {
    let mut t = ty.trim();
    // rustc's not-yet-defaulted literals.
    match t {
        "{integer}" => return Some("i32".into()),
        "{float}" => return Some("f64".into()),
        _ => {}
    }
    loop {
        let before = t;
        t = t.trim_start_matches('&').trim_start();
        if let Some(rest) = t.strip_prefix('\'') {
            t = rest
                .trim_start_matches(|c: char| c.is_alphanumeric() || c == '_')
                .trim_start();
        }
        t = t.strip_prefix("mut ").unwrap_or(t).trim_start();
        t = t.strip_prefix("dyn ").unwrap_or(t).trim_start();
        t = t.strip_prefix("impl ").unwrap_or(t).trim_start();
        if t == before {
            break;
        }
    }
    if t.starts_with('[') {
        return Some(if t.contains(';') { "array" } else { "slice" }.into());
    }
    if t.starts_with('(') {
        return Some(if t == "()" { "unit" } else { "tuple" }.into());
    }
    if t.starts_with("fn(") {
        return Some("fn".into());
    }
    let path: String = t
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    (!path.is_empty()).then_some(path)
}

/// A type, then the types inside it that method calls see through (`Box<String>`,
/// then `String`), a few levels deep.
pub fn with_deref_targets(ty: &str) -> Vec<String> {
    let mut out = vec![ty.to_string()];
    while out.len() < 4 {
        match deref_target(out.last().expect("not empty")) {
            Some(inner) => out.push(inner.to_string()),
            None => break,
        }
    }
    out
}

/// The type inside a `Box`, `Rc`, `Arc` or reference, whose methods a value of the
/// outer type also has (auto-deref).
pub fn deref_target(ty: &str) -> Option<&str> {
    let t = ty.trim().trim_start_matches('&').trim_start();
    let t = t.strip_prefix("mut ").unwrap_or(t);
    for outer in [
        "std::boxed::Box<",
        "std::rc::Rc<",
        "std::sync::Arc<",
        "Box<",
        "Rc<",
        "Arc<",
    ] {
        if let Some(inner) = t.strip_prefix(outer) {
            return Some(inner.strip_suffix('>')?.split(',').next()?.trim());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_members_from_a_type_page() {
        let html = r##"<details><summary><section id="method.reserve" class="method"><h4 class="code-header">pub fn <a href="#method.reserve" class="fn">reserve</a>(&amp;mut self, additional: usize)</h4></section></summary><div class="docblock"><p>Reserves <code>additional</code> more.</p></div></details>
<section id="method.new" class="method"><h4 class="code-header">pub const fn <a>new</a>() -&gt; Vec&lt;T&gt;</h4></section><div class="docblock"><p>Constructs a new, empty <code>Vec&lt;T&gt;</code>.</p></div>
<section id="method.reserve-1" class="method"><h4 class="code-header">fn reserve(&amp;mut self)</h4></section>
<span id="structfield.start" class="structfield section-header"><code>start: Idx</code></span><div class="docblock"><p>The lower bound.</p></div>"##;
        let m = members_of(html);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["reserve", "new", "start"]);
        assert_eq!(m[0].kind, MemberKind::Method);
        assert_eq!(
            m[0].signature,
            "pub fn reserve(&mut self, additional: usize)"
        );
        assert_eq!(m[0].summary, "Reserves additional more.");
        assert_eq!(m[1].kind, MemberKind::Function);
        assert_eq!(m[1].signature, "pub const fn new() -> Vec<T>");
        assert_eq!(m[2].kind, MemberKind::Field);
    }

    #[test]
    fn finds_the_page_of_a_printed_type() {
        assert_eq!(
            page_path("&mut std::vec::Vec<u8>").as_deref(),
            Some("std::vec::Vec")
        );
        assert_eq!(page_path("&'static str").as_deref(), Some("str"));
        assert_eq!(page_path("&[i32]").as_deref(), Some("slice"));
        assert_eq!(page_path("[u8; 4]").as_deref(), Some("array"));
        assert_eq!(
            page_path("impl Iterator<Item = u32>").as_deref(),
            Some("Iterator")
        );
        assert_eq!(
            deref_target("std::boxed::Box<std::string::String>"),
            Some("std::string::String")
        );
    }
}
