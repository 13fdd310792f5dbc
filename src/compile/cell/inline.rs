//! Every function a cell defines is marked `#[inline]`, so that a later cell which
//! calls it compiles its own copy, at that cell's optimisation level, instead of
//! linking the copy in the defining cell's library. That is what lets tiered
//! compilation (`compile::session::tiers`) make a hot function fast by rebuilding
//! only the small cell that calls it: the function and everything it calls are
//! compiled again at level 3 inside that cell.
//!
//! State stays single: a `static` or `thread_local!` is defined once, in the
//! defining cell's library, and every copy of the code refers to that one.

use super::span::{head_offset, LineIndex};
use syn::visit::Visit;

/// Attributes after which the kernel adds nothing: the user chose (`inline`,
/// `cold`), or the function has one exported symbol (`no_mangle`, `export_name`),
/// or it is not code a later cell calls (`test`).
const KEEP_AS_WRITTEN: &[&str] = &[
    "inline",
    "cold",
    "no_mangle",
    "unsafe",
    "export_name",
    "naked",
    "test",
    "target_feature",
];

/// The `#[inline] ` insertions (byte offset, text) for every function in `item`,
/// its methods and the functions nested in them. They come before any other
/// insertion at the same place (the `pub ` the kernel adds), so keep them first.
pub(super) fn edits(item: &syn::Item, index: &LineIndex) -> Vec<(usize, String)> {
    let mut v = Inliner {
        index,
        edits: Vec::new(),
    };
    v.visit_item(item);
    v.edits
}

struct Inliner<'i, 'a> {
    index: &'i LineIndex<'a>,
    edits: Vec<(usize, String)>,
}

impl Inliner<'_, '_> {
    fn mark(&mut self, attrs: &[syn::Attribute], whole: proc_macro2::Span) {
        let chosen = attrs.iter().any(|a| {
            let path = a.path();
            KEEP_AS_WRITTEN.iter().any(|k| path.is_ident(k))
        });
        if !chosen {
            self.edits
                .push((head_offset(attrs, whole, self.index), "#[inline] ".into()));
        }
    }
}

impl<'ast> Visit<'ast> for Inliner<'_, '_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        use syn::spanned::Spanned;
        self.mark(&f.attrs, f.span());
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        use syn::spanned::Spanned;
        self.mark(&f.attrs, f.span());
        syn::visit::visit_impl_item_fn(self, f);
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::cell::parse;

    fn item_text(code: &str) -> String {
        parse(code).unwrap().items[0].snippet.text.clone()
    }

    #[test]
    fn functions_methods_and_nested_functions_are_inline() {
        assert_eq!(item_text("fn f() {}"), "#[inline] pub fn f() {}");
        assert_eq!(
            item_text("/// doc\nfn f() -> u8 { fn g() -> u8 { 1 } g() }"),
            "/// doc\n#[inline] pub fn f() -> u8 { #[inline] fn g() -> u8 { 1 } g() }"
        );
        assert_eq!(
            item_text("impl S { fn a(&self) {} pub fn b() {} }"),
            "impl S { #[inline] pub fn a(&self) {} #[inline] pub fn b() {} }"
        );
        assert_eq!(
            item_text("impl T for S { fn a(&self) {} }"),
            "impl T for S { #[inline] fn a(&self) {} }"
        );
        assert_eq!(
            item_text("#[inline(never)]\nfn f() {}"),
            "#[inline(never)]\npub fn f() {}"
        );
        assert_eq!(
            item_text("#[no_mangle]\npub extern \"C\" fn f() {}"),
            "#[no_mangle]\npub extern \"C\" fn f() {}"
        );
        // What the user wrote comes back without the insertions.
        let parsed = parse("fn f() {}").unwrap();
        assert_eq!(parsed.items[0].snippet.as_written(), "fn f() {}");
    }
}
