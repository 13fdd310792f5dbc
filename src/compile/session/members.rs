//! What the session's own items offer to completion: the fields, variants and
//! associated items of a type the session defines (at any depth of `mod`s), and the
//! items of a module.

use super::Session;
use crate::compile::{cell, vars};

/// A member of a session type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemMember {
    pub name: String,
    pub kind: ItemKind,
}

/// What a member of a session type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Field,
    Variant,
    Constant,
    /// Takes `self`: called as `value.name(…)`.
    Method,
    /// Called as `Type::name(…)`.
    Function,
}

impl Session {
    /// The source of the session's items as the user wrote them, oldest first.
    fn written_items(&self) -> Vec<String> {
        self.chain
            .iter()
            .flat_map(|l| &l.items)
            .map(|i| i.item.snippet.as_written())
            .collect()
    }

    /// Fields, variants, methods and associated items of a session type, or of the
    /// type of a session variable, for completion after `name.` or `Name::`.
    pub fn members(&self, name: &str) -> Vec<String> {
        self.type_members(name)
            .into_iter()
            .map(|m| m.name)
            .collect()
    }

    /// [`Session::members`], with what each member is.
    pub fn type_members(&self, name: &str) -> Vec<ItemMember> {
        let ty = match self.vars.get(name) {
            Some(v) => vars::display_type(&v.ty),
            None => name.to_string(),
        };
        // `fc_1234::Point<T>`, `&Point` and `bar::Point` are `Point`.
        let ty = ty.trim_start_matches(['&', ' ']).trim_start_matches("mut ");
        let ty = ty.split('<').next().unwrap_or("");
        let ty = ty.rsplit("::").next().unwrap_or("").trim().to_string();
        let sources = self.written_items();
        // Parsed on the parser's stack: an item may nest deeper than a worker's.
        let mut out = cell::on_parse_stack(move || {
            let mut out = Vec::new();
            members_in(&parse_items(&sources), &ty, &mut out);
            out
        })
        .unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        out.retain(|m: &ItemMember| seen.insert(m.name.clone()));
        out
    }

    /// The names a session module defines (`bar` for `use bar::`; `bar::inner`).
    pub fn module_items(&self, path: &[&str]) -> Vec<String> {
        let sources = self.written_items();
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        cell::on_parse_stack(move || {
            let mut items = parse_items(&sources);
            for seg in &path {
                let found = items.into_iter().rev().find_map(|i| match i {
                    syn::Item::Mod(m) if m.ident == seg => m.content.map(|(_, c)| c),
                    _ => None,
                });
                match found {
                    Some(inner) => items = inner,
                    None => return vec![],
                }
            }
            let mut out: Vec<String> = items.iter().filter_map(item_name).collect();
            out.sort();
            out.dedup();
            out
        })
        .unwrap_or_default()
    }
}

fn parse_items(sources: &[String]) -> Vec<syn::Item> {
    sources
        .iter()
        .filter_map(|s| syn::parse_str::<syn::Item>(s).ok())
        .collect()
}

fn item_name(item: &syn::Item) -> Option<String> {
    let ident = match item {
        syn::Item::Const(i) => &i.ident,
        syn::Item::Enum(i) => &i.ident,
        syn::Item::Fn(i) => &i.sig.ident,
        syn::Item::Mod(i) => &i.ident,
        syn::Item::Static(i) => &i.ident,
        syn::Item::Struct(i) => &i.ident,
        syn::Item::Trait(i) => &i.ident,
        syn::Item::Type(i) => &i.ident,
        syn::Item::Union(i) => &i.ident,
        syn::Item::Macro(i) => i.ident.as_ref()?,
        _ => return None,
    };
    Some(ident.to_string())
}

fn members_in(items: &[syn::Item], ty: &str, out: &mut Vec<ItemMember>) {
    let member = |name: String, kind| ItemMember { name, kind };
    for item in items {
        match item {
            syn::Item::Struct(st) if st.ident == ty => out.extend(
                st.fields
                    .iter()
                    .filter_map(|f| Some(member(f.ident.as_ref()?.to_string(), ItemKind::Field))),
            ),
            syn::Item::Enum(e) if e.ident == ty => out.extend(
                e.variants
                    .iter()
                    .map(|v| member(v.ident.to_string(), ItemKind::Variant)),
            ),
            syn::Item::Impl(im) if self_type_is(&im.self_ty, ty) => {
                for it in &im.items {
                    match it {
                        syn::ImplItem::Fn(f) => out.push(member(
                            f.sig.ident.to_string(),
                            if f.sig.receiver().is_some() {
                                ItemKind::Method
                            } else {
                                ItemKind::Function
                            },
                        )),
                        syn::ImplItem::Const(c) => {
                            out.push(member(c.ident.to_string(), ItemKind::Constant))
                        }
                        _ => {}
                    }
                }
            }
            syn::Item::Mod(m) => {
                if let Some((_, inner)) = &m.content {
                    members_in(inner, ty, out);
                }
            }
            _ => {}
        }
    }
}

fn self_type_is(self_ty: &syn::Type, name: &str) -> bool {
    match self_ty {
        syn::Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == name),
        _ => false,
    }
}
