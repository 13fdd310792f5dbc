//! What a top-level item of a cell is to the session: the names it defines, the
//! `impl` it replaces, the types its header mentions, and the `pub` (or
//! `#[macro_export]`) the kernel inserts so that later cells can use it.

use super::span::{head_offset, snippet, LineIndex};
use super::statements::idents_in;
use super::{ImplKey, Item};
use syn::spanned::Spanned;

fn is_inherited(vis: &syn::Visibility) -> bool {
    matches!(vis, syn::Visibility::Inherited)
}

fn tokens(t: &impl quote::ToTokens) -> String {
    t.to_token_stream().to_string()
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

/// `thread_local!` (or `std::thread_local!`): at the top of a cell it defines
/// items, as in a Rust file.
pub(super) fn is_thread_local(m: &syn::Macro) -> bool {
    m.path
        .segments
        .last()
        .is_some_and(|s| s.ident == "thread_local")
}

/// The names a `thread_local!` defines, each made `pub` for later cells.
fn thread_locals(
    m: &syn::Macro,
    index: &LineIndex,
    names: &mut Vec<String>,
    edits: &mut Vec<(usize, String)>,
) {
    let tokens: Vec<proc_macro2::TokenTree> = m.tokens.clone().into_iter().collect();
    for (i, tt) in tokens.iter().enumerate() {
        let proc_macro2::TokenTree::Ident(kw) = tt else {
            continue;
        };
        if kw != "static" {
            continue;
        }
        if let Some(proc_macro2::TokenTree::Ident(name)) = tokens.get(i + 1) {
            names.push(name.to_string());
        }
        // `pub static`, `pub(crate) static`: visibility already written.
        let written = match i.checked_sub(1).map(|j| &tokens[j]) {
            Some(proc_macro2::TokenTree::Ident(p)) => p == "pub",
            Some(proc_macro2::TokenTree::Group(g)) => {
                g.delimiter() == proc_macro2::Delimiter::Parenthesis
                    && matches!(i.checked_sub(2).map(|j| &tokens[j]), Some(proc_macro2::TokenTree::Ident(p)) if p == "pub")
            }
            _ => false,
        };
        if !written {
            edits.push((head_offset(&[], kw.span(), index), "pub ".into()));
        }
    }
}

pub(super) fn make_item(item: &syn::Item, index: &LineIndex) -> Item {
    // First, so that `#[inline] ` goes before a `pub ` inserted at the same place.
    let mut edits: Vec<(usize, String)> = super::inline::edits(item, index);
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
        syn::Item::Macro(m) if is_thread_local(&m.mac) => {
            thread_locals(&m.mac, index, &mut names, &mut edits)
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
    let mut uses = Vec::new();
    idents_in(item, &mut uses);
    uses.sort();
    uses.dedup();
    Item {
        snippet: snippet(span, index, &edits),
        uses,
        names,
        impl_key,
        mentions,
        derivable,
    }
}
