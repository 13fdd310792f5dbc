//! Values whose types cannot be written, kept behind a box: closures and
//! `impl Trait` values.
//!
//! A closure's type has no name, but its signature does: a closure bound by a
//! top-level `let NAME = |…| …` is kept as `Box<dyn Fn(A) -> R>` (or `FnMut`,
//! `FnOnce`), and later cells call it as before. The probe build learns the
//! signature ([`sig_probe`]); the full build learns the kind: the box starts as
//! `Fn`, and rustc's E0525 ("this closure only implements `FnMut`") narrows it
//! ([`narrowed`]). An `impl Trait` value becomes `Box<dyn Trait>` with its principal
//! trait and auto traits. A capture that borrows from the cell fails the box's
//! `'static` bound, and the variable is reported as not kept, as any borrow is.

use syn::punctuated::Punctuated;

/// How a value is put in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wrap {
    /// As it is.
    #[default]
    None,
    /// In a `Box` (a closure, an `impl Trait`).
    Box,
    /// In a pinned `Box` (an `impl Future`, which `.await` needs pinned).
    Pin,
}

impl Wrap {
    /// The expression that puts `var` in the store this way.
    pub fn value(self, var: &str) -> String {
        match self {
            Wrap::None => var.to_string(),
            Wrap::Box => format!("::std::boxed::Box::new({var})"),
            Wrap::Pin => format!("::std::boxed::Box::pin({var})"),
        }
    }
}

/// The name and number of parameters of a `let NAME = |…| …;` (also `let mut`, with
/// a type, or with `move`), whose signature a probe can learn.
pub fn closure_binding(local: &syn::Local) -> Option<(String, usize)> {
    let name = match &local.pat {
        syn::Pat::Ident(i) if i.subpat.is_none() => i.ident.to_string(),
        syn::Pat::Type(t) => match &*t.pat {
            syn::Pat::Ident(i) if i.subpat.is_none() => i.ident.to_string(),
            _ => return None,
        },
        _ => return None,
    };
    let mut expr = &*local.init.as_ref()?.expr;
    while let syn::Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    match expr {
        syn::Expr::Closure(c) if c.asyncness.is_none() => Some((name, c.inputs.len())),
        _ => None,
    }
}

/// A probe statement that makes rustc print the closure `var`'s signature as a
/// function pointer type (error E0308, "found `(fn(A) -> R,)`"). With `args`, the
/// argument types are given, so that a result that depends on them is known (an
/// integer argument is only `{integer}` until the end of the cell's inference).
pub fn sig_probe(var: &str, arity: usize, args: Option<&[String]>) -> String {
    let (list, generics) = match args {
        Some(args) => (args.join(", "), String::new()),
        None => {
            let names: Vec<String> = (0..arity).map(|i| format!("A{i}")).collect();
            let list = names.join(", ");
            let generics = if names.is_empty() {
                String::new()
            } else {
                format!("{list}, ")
            };
            (list, generics)
        }
    };
    format!(
        "let _: () = {{ fn __fc_sig<F: ::std::ops::FnOnce({list}) -> R, {generics}R>(_: &F) -> fn({list}) -> R {{ loop {{}} }} (__fc_sig(&{var}),) }};"
    )
}

/// For a signature whose result is not known yet (`fn({integer}) -> _`), the
/// argument types to probe it again with (rustc's defaults filled in).
pub fn second_look(sig: &str) -> Option<Vec<String>> {
    let sig = defaults(sig);
    let syn::Type::BareFn(f) = syn::parse_str::<syn::Type>(&sig).ok()? else {
        return None;
    };
    let syn::ReturnType::Type(_, out) = &f.output else {
        return None;
    };
    if !tokens(out).contains('_') || f.inputs.iter().any(|a| tokens(&a.ty).contains('_')) {
        return None;
    }
    Some(f.inputs.iter().map(|a| tokens(&a.ty)).collect())
}

/// rustc's `{integer}` and `{float}` with the types Rust defaults them to.
pub fn defaults(printed: &str) -> String {
    printed
        .replace("{integer}", "i32")
        .replace("{float}", "f64")
}

/// The boxed trait object for a closure whose signature rustc printed as `fn(…) -> R`.
pub fn closure_type(sig: &str) -> Result<syn::Type, String> {
    let sig = defaults(sig);
    let why = || format!("its signature `{sig}` cannot be written");
    let syn::Type::BareFn(f) = syn::parse_str::<syn::Type>(&sig).map_err(|_| why())? else {
        return Err(why());
    };
    if f.variadic.is_some() || f.lifetimes.is_some() {
        return Err(why());
    }
    let inputs: Vec<String> = f.inputs.iter().map(|a| tokens(&a.ty)).collect();
    let mut output = match &f.output {
        syn::ReturnType::Default => String::new(),
        syn::ReturnType::Type(_, t) => format!(" -> {}", tokens(t)),
    };
    // A borrowed result with no borrowed argument to elide from is `'static`.
    if !inputs.iter().any(|i| i.contains('&')) && output.contains('&') {
        output = output
            .replace("& ", "&'static ")
            .replace("&'static '", "&'");
    }
    let text = format!(
        "::std::boxed::Box<dyn ::std::ops::Fn({}){output}>",
        inputs.join(", ")
    );
    syn::parse_str(&text).map_err(|_| why())
}

/// The boxed trait object for an `impl Trait` type: its first trait that can be a
/// trait object (not `Clone`, `Copy` or `Sized`) and the auto traits; lifetime
/// bounds go (a box is `'static`, and a borrow then fails to be kept). A future is
/// pinned, so that later cells can `.await` it.
pub fn impl_type(t: &syn::TypeImplTrait) -> Result<(syn::Type, Wrap), String> {
    let mut principal = None;
    let mut autos = Vec::new();
    for bound in &t.bounds {
        let syn::TypeParamBound::Trait(tr) = bound else {
            continue;
        };
        let last = tr
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        match last.as_str() {
            "Send" | "Sync" | "Unpin" => autos.push(tr.clone()),
            "Clone" | "Copy" | "Sized" => {}
            _ if principal.is_none() => principal = Some(tr.clone()),
            _ => {}
        }
    }
    let Some(mut principal) = principal else {
        return Err("its type is an `impl Trait` without a trait a box can hold".into());
    };
    principal.paren_token = None;
    let future = principal
        .path
        .segments
        .last()
        .is_some_and(|s| s.ident == "Future");
    let mut bounds: Punctuated<syn::TypeParamBound, syn::Token![+]> = Punctuated::new();
    bounds.push(syn::TypeParamBound::Trait(principal));
    bounds.extend(autos.into_iter().map(syn::TypeParamBound::Trait));
    let object = syn::Type::TraitObject(syn::TypeTraitObject {
        dyn_token: Some(Default::default()),
        bounds,
    });
    let (text, wrap) = match future {
        true => (
            format!("::std::pin::Pin<::std::boxed::Box<{}>>", tokens(&object)),
            Wrap::Pin,
        ),
        false => (format!("::std::boxed::Box<{}>", tokens(&object)), Wrap::Box),
    };
    let ty = syn::parse_str(&text)
        .map_err(|_| "its type is an `impl Trait` that cannot be boxed".to_string())?;
    Ok((ty, wrap))
}

/// For a boxed closure type and rustc's E0525 message about it ("expected a closure
/// that implements the `Fn` trait, but this closure only implements `FnMut`"), the
/// type with the kind the closure has.
pub fn narrowed(ty: &str, message: &str) -> Option<String> {
    let kind = message
        .split("only implements `")
        .nth(1)?
        .split('`')
        .next()?;
    if !matches!(kind, "FnMut" | "FnOnce") {
        return None;
    }
    let ours = "dyn :: std :: ops :: Fn (";
    let from = ty.find(ours)?;
    let mut out = ty.to_string();
    out.replace_range(
        from..from + ours.len(),
        &ours.replace("Fn (", &format!("{kind} (")),
    );
    Some(out)
}

fn tokens(t: &impl quote::ToTokens) -> String {
    quote::ToTokens::to_token_stream(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(code: &str) -> syn::Local {
        match syn::parse_str::<syn::Stmt>(code).unwrap() {
            syn::Stmt::Local(l) => l,
            _ => panic!("not a let"),
        }
    }

    #[test]
    fn finds_closures_bound_by_let() {
        let got = closure_binding(&local("let f = |x: i32, y| x + y;"));
        assert_eq!(got, Some(("f".into(), 2)));
        let got = closure_binding(&local("let mut g: Box<u8> = (move || 1);"));
        assert_eq!(got, Some(("g".into(), 0)));
        assert_eq!(closure_binding(&local("let (a, b) = (|| 1, 2);")), None);
        assert_eq!(closure_binding(&local("let n = 3;")), None);
    }

    #[test]
    fn looks_again_when_the_result_waits_for_integer_defaults() {
        assert_eq!(second_look("fn({integer}) -> _"), Some(vec!["i32".into()]));
        assert_eq!(
            second_look("fn(u8, {float}) -> _"),
            Some(vec!["u8".into(), "f64".into()])
        );
        assert_eq!(second_look("fn(i32) -> i32"), None);
        assert_eq!(second_look("fn(_) -> _"), None);
        let probe = sig_probe("f", 1, Some(&["i32".to_string()]));
        assert!(probe.contains("FnOnce(i32) -> R, R>"), "{probe}");
    }

    #[test]
    fn boxes_a_signature_as_a_trait_object() {
        let t = |sig| tokens(&closure_type(sig).unwrap()).replace(' ', "");
        assert_eq!(
            t("fn(i32) -> i32"),
            "::std::boxed::Box<dyn::std::ops::Fn(i32)->i32>"
        );
        assert_eq!(
            t("fn(&str) -> usize"),
            "::std::boxed::Box<dyn::std::ops::Fn(&str)->usize>"
        );
        assert_eq!(
            t("fn() -> &str"),
            "::std::boxed::Box<dyn::std::ops::Fn()->&'staticstr>"
        );
        assert_eq!(
            t("fn({integer})"),
            "::std::boxed::Box<dyn::std::ops::Fn(i32)>"
        );
        assert!(closure_type("{closure@a.rs:1:1: 1:2}").is_err());
    }

    #[test]
    fn boxes_an_impl_trait_with_its_principal_trait() {
        let t = |ty: &str| {
            let syn::Type::ImplTrait(i) = syn::parse_str(ty).unwrap() else {
                panic!()
            };
            impl_type(&i).map(|(t, _)| tokens(&t).replace(' ', ""))
        };
        assert_eq!(t("impl Bar").unwrap(), "::std::boxed::Box<dynBar>");
        assert_eq!(
            t("impl (Fn(i32) -> i32) + Clone + Send").unwrap(),
            "::std::boxed::Box<dynFn(i32)->i32+Send>"
        );
        assert!(t("impl Clone").is_err());
        assert_eq!(
            t("impl std::future::Future<Output = i32>").unwrap(),
            "::std::pin::Pin<::std::boxed::Box<dynstd::future::Future<Output=i32>>>"
        );
    }

    #[test]
    fn narrows_the_kind_that_rustc_names() {
        let ty = tokens(&closure_type("fn(u8)").unwrap());
        let msg = "expected a closure that implements the `Fn` trait, but this closure only implements `FnMut`";
        let got = narrowed(&ty, msg).unwrap();
        assert!(
            got.replace(' ', "").contains("dyn::std::ops::FnMut(u8)"),
            "{got}"
        );
        assert_eq!(narrowed(&ty, "something else"), None);
    }
}
