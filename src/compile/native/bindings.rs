//! The Rust side of a native cell: bindgen reads the cell's source (with libclang)
//! and declares what it defines; each function becomes a Rust `unsafe fn` of the
//! same name and signature that finds the C function in the cell's library on its
//! first call (`ferrocell::__native`) and flushes C's output after each call.
//!
//! Types the cell defines (structs, enums, typedefs, constants) come as bindgen
//! writes them. What cannot be called this way is left out with a note: variadic
//! functions, global variables, and C++ functions without `extern "C"` (their
//! names are mangled).

use super::{Flags, Lang, NativeError};
use quote::ToTokens;
use std::path::Path;

/// The name the cell's source has for bindgen; only what it defines is declared.
fn header_name(lang: Lang) -> &'static str {
    match lang {
        Lang::C => "ferrocell_cell.c",
        Lang::Cpp => "ferrocell_cell.cpp",
    }
}

/// The Rust items that declare the cell's functions and types, and notes on what
/// was left out.
pub(super) fn declare(
    lang: Lang,
    flags: &Flags,
    source: &str,
    lib: &Path,
    file: &str,
) -> Result<(String, Vec<String>), NativeError> {
    let mut args: Vec<String> = match lang {
        Lang::C => vec!["-x".into(), "c".into()],
        Lang::Cpp => vec!["-x".into(), "c++".into(), "-std=c++17".into()],
    };
    if let Ok(cwd) = std::env::current_dir() {
        args.extend(["-iquote".into(), cwd.display().to_string()]);
    }
    // Include paths, definitions and the language standard read the source the
    // way the compiler did.
    args.extend(
        flags
            .compile
            .iter()
            .filter(|f| f.starts_with("-I") || f.starts_with("-D") || f.starts_with("-std="))
            .cloned(),
    );
    let generated = bindgen::Builder::default()
        .header_contents(header_name(lang), source)
        .clang_args(args)
        .allowlist_file(format!(".*{}", regex_escape(header_name(lang))))
        .opaque_type("std::.*")
        // Functions, types and variables: no methods, constructors or destructors
        // of C++ classes (their symbols are mangled; a class's `extern "C"`
        // helpers are the way in).
        .with_codegen_config(
            bindgen::CodegenConfig::FUNCTIONS
                | bindgen::CodegenConfig::TYPES
                | bindgen::CodegenConfig::VARS,
        )
        .layout_tests(false)
        .generate_comments(false)
        .derive_debug(true)
        .derive_copy(true)
        .generate()
        .map_err(|e| {
            NativeError::Bindings(format!(
                "the functions of the {} cell could not be declared for Rust ({e}); bindgen needs libclang (Debian: libclang-dev)",
                lang.magic()
            ))
        })?;
    let file_ast: syn::File = syn::parse_str(&generated.to_string())
        .map_err(|e| NativeError::Bindings(format!("bindgen's output did not parse: {e}")))?;
    let mut items = Vec::new();
    let mut notes = Vec::new();
    let lib_path = lib.display().to_string();
    for item in file_ast.items {
        match item {
            syn::Item::ForeignMod(m) => {
                for f in m.items {
                    match f {
                        syn::ForeignItem::Fn(f) => match wrapper(&f, &lib_path, file) {
                            Ok(code) => items.push(code),
                            Err(why) => notes.push(why),
                        },
                        syn::ForeignItem::Static(s) => notes.push(format!(
                            "the global variable `{}` is not declared for Rust (functions and types are)",
                            s.ident
                        )),
                        _ => {}
                    }
                }
            }
            other => items.push(other.to_token_stream().to_string()),
        }
    }
    Ok((items.join("\n"), notes))
}

/// The Rust function that calls `f` in the library.
fn wrapper(f: &syn::ForeignItemFn, lib: &str, file: &str) -> Result<String, String> {
    let name = f.sig.ident.to_string();
    if f.sig.variadic.is_some() {
        return Err(format!(
            "`{name}` takes a variable number of arguments: call it from a C function of fixed arguments"
        ));
    }
    // The symbol: the function's name, or what bindgen says it links to (a C
    // function named like a Rust keyword is `type_` with link name `type`). A
    // mangled C++ name cannot be called this way.
    let symbol = match link_name(f) {
        None => name.clone(),
        Some(s) if s.starts_with("_Z") || s.starts_with('?') || s.contains(':') => {
            return Err(format!(
                "`{name}` has C++ linkage: declare it `extern \"C\"` to call it from Rust"
            ))
        }
        Some(s) => s,
    };
    let mut params = Vec::new();
    let mut types = Vec::new();
    let mut call = Vec::new();
    for input in &f.sig.inputs {
        let syn::FnArg::Typed(pt) = input else {
            return Err(format!("`{name}` has a parameter Rust cannot take"));
        };
        let (pat, ty) = (
            pt.pat.to_token_stream().to_string(),
            pt.ty.to_token_stream().to_string(),
        );
        params.push(format!("{pat}: {ty}"));
        types.push(ty);
        call.push(pat);
    }
    let ret = f.sig.output.to_token_stream().to_string();
    let lookup = format!("__FC_C_{name}");
    let cname = format!("b\"{symbol}\\0\"");
    Ok(format!(
        "#[doc(hidden)]\n\
         pub static {lookup}: ::ferrocell::__native::Function = ::ferrocell::__native::Function::new({lib:?}, {file:?}, \
         unsafe {{ ::std::ffi::CStr::from_bytes_with_nul_unchecked({cname}) }});\n\
         pub unsafe fn {name}({params}) {ret} {{\n\
         let __fc_f: unsafe extern \"C\" fn({types}) {ret} = unsafe {{ ::std::mem::transmute({lookup}.address()) }};\n\
         let __fc_r = unsafe {{ __fc_f({call}) }};\n\
         ::ferrocell::__native::flush();\n\
         __fc_r\n}}",
        params = params.join(", "),
        types = types.join(", "),
        call = call.join(", "),
    ))
}

/// The `#[link_name = "..."]` bindgen gave a function, without its `\u{1}` (which
/// asks the linker to take the name as it is).
fn link_name(f: &syn::ForeignItemFn) -> Option<String> {
    f.attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("link_name") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value().trim_start_matches('\u{1}').to_string()),
            _ => None,
        },
        _ => None,
    })
}

/// `name` with the characters a regex would read as its own escaped.
fn regex_escape(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let special = ".+*?()|[]{}^$\\".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}
