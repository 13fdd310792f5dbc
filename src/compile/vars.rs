//! Session variables: learning a new binding's type from rustc, and writing it so
//! that later cells can name it.
//!
//! A check-only build of the cell with a probe `let _: () = name;` per new binding
//! makes rustc state each binding's type (error E0308, "found `TYPE`"); with
//! `-Z trim-diagnostic-paths=no` it prints full, nameable paths. Types that cannot be
//! written back (closures, `impl Trait`, non-`'static` borrows, unfinished inference)
//! are reported, not kept; a borrow is kept only if it is `'static`.

use super::boxed::Wrap;
use super::rustc::Diagnostic;
use std::collections::BTreeMap;

/// A variable the session keeps between cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Var {
    /// The type as later cells write it (paths into cell crates are qualified).
    pub ty: String,
    /// Declared `let mut`: later cells take it as `let mut`, others as `let`.
    pub mutable: bool,
}

/// The session's variables by name.
pub type Vars = BTreeMap<String, Var>;

/// The type rustc names in a probe's E0308 diagnostic. The probe is
/// `let _: () = (name,);`, whose note reads "found tuple `(TYPE,)`".
pub fn probed_type(d: &Diagnostic) -> Option<String> {
    for child in &d.children {
        for line in child.message.lines() {
            let Some(rest) = line.trim_start().strip_prefix("found ") else {
                continue;
            };
            let (start, end) = (rest.find('`')?, rest.rfind('`')?);
            let tuple = rest.get(start + 1..end)?;
            return tuple
                .strip_prefix('(')
                .and_then(|t| t.strip_suffix(",)"))
                .map(String::from);
        }
    }
    None
}

const PRIMITIVES: &[&str] = &[
    "bool", "char", "str", "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64",
    "u128", "usize", "f32", "f64",
];
/// Traits rustc names without a path in an `impl Trait` (they are in every scope).
const PRELUDE_TRAITS: &[&str] = &[
    "Send",
    "Sync",
    "Unpin",
    "Sized",
    "Fn",
    "FnMut",
    "FnOnce",
    "Iterator",
    "IntoIterator",
    "DoubleEndedIterator",
    "ExactSizeIterator",
    "Extend",
    "FromIterator",
    "Clone",
    "Copy",
    "Default",
    "Drop",
    "Eq",
    "PartialEq",
    "Ord",
    "PartialOrd",
    "AsRef",
    "AsMut",
    "Into",
    "From",
    "TryFrom",
    "TryInto",
    "ToString",
    "ToOwned",
    "Future",
    "IntoFuture",
];
const ROOTS: &[&str] = &["std", "core", "alloc", "ferrocell"];

/// A type a later cell can write, for a value the cell puts in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// The type as the cell's own crate writes it.
    pub here: String,
    /// The type as later cells write it (paths into the cell's crate qualified).
    pub later: String,
    /// How the value is put: boxed for a closure or an `impl Trait` value.
    pub wrap: Wrap,
}

/// Turns a type as rustc printed it inside the cell's crate into one later cells can
/// write: rustc's `{integer}`/`{float}` defaults filled in, and paths to the cell's own
/// items prefixed with its crate. An `impl Trait` is kept boxed (see
/// [`super::boxed`]). Returns why not, for types that cannot be kept.
pub fn writable(printed: &str, own_crate: &str, deps: &[(String, String)]) -> Result<Kept, String> {
    let here = super::boxed::defaults(printed);
    if let Ok(syn::Type::ImplTrait(t)) = syn::parse_str::<syn::Type>(&here) {
        let (ty, wrap) = super::boxed::impl_type(&t)?;
        return Ok(kept(ty, own_crate, deps, wrap));
    }
    for (needle, why) in [
        (
            "{closure",
            "it is a closure whose signature is not known here (bind it with `let name = |…| …;` or box it as Box<dyn Fn…>)",
        ),
        ("{async", "it is an async block"),
        ("{coroutine", "it is a coroutine"),
        ("impl ", "its type holds an `impl Trait`"),
        ("{unknown}", "its type is not known"),
    ] {
        if here.contains(needle) {
            return Err(why.into());
        }
    }
    if here.contains(" {") && here.starts_with("fn(") || here.contains("} ") {
        return Err("it is a function item (cast it to a fn pointer to keep it)".into());
    }
    let mut ty: syn::Type =
        syn::parse_str(&here).map_err(|_| format!("its type `{here}` cannot be written"))?;
    if contains_infer(&ty) {
        return Err(format!("its type `{here}` is not fully known yet"));
    }
    // rustc prints `&'static str` as `&str`: a reference is written `'static`, and
    // kept only if the cell's put-back compiles (a borrow of a local does not).
    make_static(&mut ty);
    Ok(kept(ty, own_crate, deps, Wrap::None))
}

/// A closure kept as a boxed `dyn Fn`, from the signature rustc printed for it.
pub fn writable_closure(
    sig: &str,
    own_crate: &str,
    deps: &[(String, String)],
) -> Result<Kept, String> {
    let ty = super::boxed::closure_type(sig)?;
    if contains_infer(&ty) {
        return Err(format!(
            "it is a closure whose signature `{sig}` is not fully known (annotate its arguments)"
        ));
    }
    Ok(kept(ty, own_crate, deps, Wrap::Box))
}

fn kept(mut ty: syn::Type, own_crate: &str, deps: &[(String, String)], wrap: Wrap) -> Kept {
    qualify(&mut ty, None, deps);
    let here = quote::ToTokens::to_token_stream(&ty).to_string();
    qualify(&mut ty, Some(own_crate), deps);
    let later = quote::ToTokens::to_token_stream(&ty).to_string();
    Kept { here, later, wrap }
}

fn contains_infer(ty: &syn::Type) -> bool {
    struct Find(bool);
    impl<'a> syn::visit::Visit<'a> for Find {
        fn visit_type_infer(&mut self, _: &'a syn::TypeInfer) {
            self.0 = true;
        }
    }
    let mut f = Find(false);
    syn::visit::visit_type(&mut f, ty);
    f.0
}

fn make_static(ty: &mut syn::Type) {
    struct S;
    impl syn::visit_mut::VisitMut for S {
        fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
            if r.lifetime.is_none() {
                r.lifetime = Some(syn::Lifetime::new(
                    "'static",
                    proc_macro2::Span::call_site(),
                ));
            }
            syn::visit_mut::visit_type_reference_mut(self, r);
        }
    }
    syn::visit_mut::visit_type_mut(&mut S, ty);
}

/// Names the session's crates as cells do (`deps`: a crate's own name, as rustc
/// prints it, and the name cells use for it, which replaces it); with `own_crate`,
/// also prefixes paths to the cell's own items with its crate (paths that start at
/// std, the prelude, a cell crate or a session crate stay).
fn qualify(ty: &mut syn::Type, own_crate: Option<&str>, deps: &[(String, String)]) {
    struct Q<'a>(Option<&'a str>, &'a [(String, String)]);
    impl Q<'_> {
        fn path(&self, path: &mut syn::Path) {
            if path.leading_colon.is_some() {
                return;
            }
            let first = path
                .segments
                .first()
                .map(|s| s.ident.to_string())
                .unwrap_or_default();
            let single = path.segments.len() == 1;
            // The first pass renames; the second (which prefixes) must not rename
            // again (two crates swapped by `package =`).
            let Some(own_crate) = self.0 else {
                if let Some((_, used)) = self.1.iter().find(|(own, _)| *own == first) {
                    path.segments[0].ident = syn::Ident::new(used, proc_macro2::Span::call_site());
                }
                return;
            };
            let external = ROOTS.contains(&first.as_str())
                || first.starts_with("fc_")
                || self.1.iter().any(|(_, used)| *used == first);
            if !(external || single && PRIMITIVES.contains(&first.as_str()) || first == "Self") {
                let krate = syn::Ident::new(own_crate, proc_macro2::Span::call_site());
                path.segments.insert(0, syn::PathSegment::from(krate));
            }
        }
    }
    impl syn::visit_mut::VisitMut for Q<'_> {
        fn visit_type_path_mut(&mut self, p: &mut syn::TypePath) {
            if p.qself.is_none() {
                self.path(&mut p.path);
            }
            syn::visit_mut::visit_type_path_mut(self, p);
        }
        // A boxed `impl Trait`'s trait may be the cell's own.
        fn visit_trait_bound_mut(&mut self, b: &mut syn::TraitBound) {
            let in_prelude = b.path.segments.len() == 1
                && PRELUDE_TRAITS.contains(&b.path.segments[0].ident.to_string().as_str());
            if !in_prelude {
                self.path(&mut b.path);
            }
            syn::visit_mut::visit_trait_bound_mut(self, b);
        }
    }
    syn::visit_mut::visit_type_mut(&mut Q(own_crate, deps), ty);
}

/// The cell crates a type refers to (`fc_…`), which a later cell must link.
pub fn crates_in(ty: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in ty.match_indices("fc_") {
        let name: String = ty[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// A kept type as a person reads it: no spaces from token printing, and no cell
/// crate prefixes (`fc_…::P` is shown as `P`).
pub fn display_type(ty: &str) -> String {
    // A boxed closure or `impl Trait` reads as the user would write it.
    let compact = ty
        .replace("dyn ", "dyn\u{1}")
        .replace(' ', "")
        .replace(",", ", ")
        .replace("->", " -> ")
        .replace('\u{1}', " ")
        .replace("::std::boxed::Box<", "Box<")
        .replace("::std::pin::Pin<", "Pin<")
        .replace("::std::ops::Fn", "Fn");
    let mut out = String::with_capacity(compact.len());
    let mut rest = compact.as_str();
    while let Some(i) = rest.find("fc_") {
        let at_start = rest[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let ident_len = rest[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .count();
        if at_start && rest[i + ident_len..].starts_with("::") {
            out.push_str(&rest[..i]);
            rest = &rest[i + ident_len + 2..];
        } else {
            out.push_str(&rest[..i + ident_len]);
            rest = &rest[i + ident_len..];
        }
    }
    out.push_str(rest);
    out
}

/// A kept type as the user would write it in a cell: [`display_type`], with the
/// std types every cell sees unqualified (`Option`, `String`, `Vec`, …) by their
/// short names.
pub fn short_type(ty: &str) -> String {
    let mut out = display_type(ty);
    for (path, name) in [
        ("std::option::Option<", "Option<"),
        ("std::result::Result<", "Result<"),
        ("std::string::String", "String"),
        ("std::vec::Vec<", "Vec<"),
        ("std::boxed::Box<", "Box<"),
    ] {
        out = out.replace(path, name);
    }
    out
}

/// Whether a kept type names a cell item called `name` (`fc_…::name` anywhere in it).
pub fn names_type(ty: &str, name: &str) -> bool {
    let compact = ty.replace(' ', "");
    compact.match_indices("::").any(|(i, _)| {
        let rest = &compact[i + 2..];
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        ident == name
            && compact[..i]
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .is_some_and(|c| c.starts_with("fc_"))
    })
}

/// A cell that prints the session's variables with their types and sizes (the
/// size is measured where the values live, in the runner). The snapshot column says
/// how large each one's crash-safe copy is, or that it has none.
pub fn listing_code(vars: &Vars, snapshot: impl Fn(&str) -> String) -> String {
    if vars.is_empty() {
        return String::new();
    }
    let width = vars.keys().map(|n| n.len()).max().unwrap_or(4).max(8);
    let row = format!("\"{{:<{width}}}  {{:>10}}  {{:>10}}  {{}}\"");
    let mut code = format!("println!({row}, \"Variable\", \"Size\", \"Snapshot\", \"Type\");\n");
    for (name, var) in vars {
        code.push_str(&format!(
            "println!({row}, {name:?}, format!(\"{{}} B\", ::std::mem::size_of_val(&{name})), {:?}, {:?});\n",
            snapshot(name),
            display_type(&var.ty)
        ));
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_types_for_later_cells() {
        assert_eq!(writable("{integer}", "fc_a", &[]).unwrap().later, "i32");
        let Kept { here, later, .. } = writable("std::vec::Vec<P>", "fc_a", &[]).unwrap();
        assert_eq!(here.replace(' ', ""), "std::vec::Vec<P>");
        assert_eq!(later.replace(' ', ""), "std::vec::Vec<fc_a::P>");
        let later = writable(
            "std::collections::HashMap<std::string::String, inner::Q>",
            "fc_b",
            &[],
        )
        .unwrap()
        .later;
        assert_eq!(
            later.replace(' ', ""),
            "std::collections::HashMap<std::string::String,fc_b::inner::Q>"
        );
        // A type from a session crate (`:dep`) is named by that crate.
        let deps = [
            ("serde_json".to_string(), "serde_json".to_string()),
            ("itoa".to_string(), "num".to_string()),
        ];
        let later = writable("serde_json::Value", "fc_c", &deps).unwrap().later;
        assert_eq!(later.replace(' ', ""), "serde_json::Value");
        let kept = writable("itoa::Buffer", "fc_c", &deps).unwrap();
        assert_eq!(kept.here.replace(' ', ""), "num::Buffer");
        assert_eq!(kept.later.replace(' ', ""), "num::Buffer");
        // Two crates swapped by their names: each renamed once.
        let swapped = [
            ("a".to_string(), "b".to_string()),
            ("b".to_string(), "a".to_string()),
        ];
        let kept = writable("a::X", "fc_c", &swapped).unwrap();
        assert_eq!(kept.later.replace(' ', ""), "b::X");
        assert!(writable("{closure@cell.rs:3:9: 3:11}", "fc_a", &[]).is_err());
        assert!(writable("std::vec::Vec<_>", "fc_a", &[]).is_err());
        assert_eq!(
            writable("&str", "fc_a", &[])
                .unwrap()
                .later
                .replace(' ', ""),
            "&'staticstr"
        );
        assert_eq!(crates_in("std::vec::Vec<fc_ab12::P>"), vec!["fc_ab12"]);
        assert!(names_type("std :: vec :: Vec < fc_ab12 :: P >", "P"));
        assert!(!names_type("std::vec::Vec<fc_ab12::Point>", "P"));
        assert!(!names_type("std::vec::Vec<u8>", "Vec"));
        assert_eq!(
            display_type("std :: collections :: HashMap < u8 , fc_ab12 :: P >"),
            "std::collections::HashMap<u8, P>"
        );
        assert_eq!(
            display_type(
                ":: std :: boxed :: Box < dyn :: std :: ops :: FnMut (u8) -> fc_ab12 :: P >"
            ),
            "Box<dyn FnMut(u8) -> P>"
        );
    }
}
