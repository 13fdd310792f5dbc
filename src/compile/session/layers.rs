//! The chain of item layers: what each layer defines, which items are current, where
//! a cell's new items must merge into the chain, and the names and sources of the
//! session's items.

use super::{BuiltCell, Session};
use crate::compile::cell::{self, Item};
use crate::compile::diagnostics::SourceMap;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

/// A cell's item, with the execution count of the cell it came from.
#[derive(Debug, Clone)]
pub(super) struct LayerItem {
    pub(super) item: Item,
    pub(super) cell: u64,
    /// The kernel derives serde's traits for it (see [`Item::derivable`]); cleared
    /// when its fields do not allow it.
    pub(super) serde: bool,
}

/// One library of items in the chain.
#[derive(Debug)]
pub(super) struct Layer {
    pub(super) key: String,
    pub(super) items: Vec<LayerItem>,
    /// Crates this layer links in for the cells above it (a `:dep` layer's).
    pub(super) externs: Vec<String>,
    pub(super) built: BuiltCell,
}

impl Layer {
    pub(super) fn crate_name(&self) -> String {
        crate_name(&self.key)
    }

    fn defines(&self, name: &str) -> bool {
        self.items
            .iter()
            .any(|i| i.item.names.iter().any(|n| n == name))
    }
}

pub(super) fn crate_name(key: &str) -> String {
    format!("fc_{key}")
}

impl Session {
    /// The source maps of every layer's library, to place panics in earlier cells.
    pub fn source_maps(&self) -> impl Iterator<Item = (&PathBuf, &Arc<SourceMap>)> {
        self.chain
            .iter()
            .map(|l| (&l.built.source_path, &l.built.map))
    }

    /// Names of the items the session defines now, newest first.
    pub fn item_names(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for layer in self.chain.iter().rev() {
            for it in layer.items.iter().rev() {
                for n in &it.item.names {
                    if seen.insert(n.clone()) {
                        out.push(n.clone());
                    }
                }
            }
        }
        out
    }

    /// The source of the newest definition of `name` as the user wrote it, with the
    /// cell it came from.
    pub fn item_source(&self, name: &str) -> Option<(u64, String)> {
        self.chain.iter().rev().find_map(|l| {
            l.items
                .iter()
                .rev()
                .find(|i| i.item.names.iter().any(|n| n == name))
                .map(|i| (i.cell, i.item.snippet.as_written()))
        })
    }

    /// Whether `item` is, to the letter, the current definition of its names.
    pub(super) fn is_current(&self, item: &Item) -> bool {
        let found = self.chain.iter().rev().find_map(|l| {
            l.items
                .iter()
                .rev()
                .find(|i| match (&item.impl_key, &i.item.impl_key) {
                    (Some(a), Some(b)) => a == b,
                    (None, None) => !item.names.is_empty() && i.item.names == item.names,
                    _ => false,
                })
        });
        found.is_some_and(|i| i.item.snippet.text == item.snippet.text)
    }

    /// The first layer that must be rebuilt with the new items, or the chain's
    /// length for a plain new layer. It is the oldest layer that either defines a type
    /// or trait an `impl` of the cell names (Rust wants an impl in its type's crate),
    /// or defines a name the cell redefines: later items that use the old
    /// definition are rebuilt with the new one, as in a single block of code.
    pub(super) fn merge_point(&self, items: &[Item]) -> usize {
        let own: HashSet<&str> = items
            .iter()
            .flat_map(|i| i.names.iter().map(String::as_str))
            .collect();
        let mut from = self.chain.len();
        for item in items.iter().filter(|i| !self.is_current(i)) {
            for name in &item.names {
                if let Some(pos) = self.chain.iter().rposition(|l| l.defines(name)) {
                    from = from.min(pos);
                }
            }
        }
        for item in items.iter().filter(|i| i.impl_key.is_some()) {
            for name in item.mentions.iter().filter(|n| !own.contains(n.as_str())) {
                if let Some(pos) = self.chain.iter().rposition(|l| l.defines(name)) {
                    from = from.min(pos);
                }
            }
        }
        from
    }

    /// The libraries of the current chain of layers: what a cell may link to, and
    /// so what an engine on another host needs before it loads one.
    pub fn layer_lib_paths(&self) -> Vec<PathBuf> {
        let native = self.native_libs.iter().cloned();
        native
            .chain(self.chain.iter().map(|l| l.built.lib.clone()))
            .collect()
    }
}

/// Drops items that a later item of the same merged layer redefines.
pub(super) fn without_replaced(items: Vec<LayerItem>) -> Vec<LayerItem> {
    let mut names: HashSet<String> = HashSet::new();
    let mut impls: Vec<cell::ImplKey> = Vec::new();
    let mut keep = Vec::new();
    for it in items.into_iter().rev() {
        let replaced = match &it.item.impl_key {
            Some(k) => impls.iter().any(|later| {
                later.self_ty == k.self_ty
                    && later.trait_path == k.trait_path
                    && (k.trait_path.is_some()
                        || later.methods.iter().any(|m| k.methods.contains(m)))
            }),
            None => it.item.names.iter().any(|n| names.contains(n)),
        };
        if replaced {
            continue;
        }
        names.extend(it.item.names.iter().cloned());
        if let Some(k) = &it.item.impl_key {
            impls.push(k.clone());
        }
        keep.push(it);
    }
    keep.reverse();
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(code: &str, cell: u64) -> Vec<LayerItem> {
        cell::parse(code)
            .unwrap()
            .items
            .into_iter()
            .map(|item| LayerItem {
                item,
                cell,
                serde: false,
            })
            .collect()
    }

    #[test]
    fn later_definitions_replace_earlier_ones() {
        let mut all = items("fn f() {}\nstruct P;\nimpl P { fn a() {} }", 1);
        all.extend(items(
            "fn f() -> u8 { 1 }\nimpl P { fn a() {} fn b() {} }\nimpl P { fn c() {} }",
            2,
        ));
        let kept = without_replaced(all);
        let texts: Vec<_> = kept.iter().map(|i| i.item.snippet.as_written()).collect();
        assert_eq!(
            texts,
            vec![
                "struct P;",
                "fn f() -> u8 { 1 }",
                "impl P { fn a() {} fn b() {} }",
                "impl P { fn c() {} }"
            ]
        );
    }
}
