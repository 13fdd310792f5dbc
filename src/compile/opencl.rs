//! `%%opencl` cells, as PyOpenCL's `%%cl_kernel` makes them: the cell is OpenCL C,
//! built for a device when the cell runs, and each `__kernel` becomes a typed
//! handle in later Rust cells: `vadd.run(n, &a, &b, &mut c)?` runs it on `n` work
//! items, with host data copied there (and back for what the kernel writes) or
//! buffers kept on the device. The Rust side is the `ferrocell-opencl` crate (in
//! opencl/), which the session links as a crate of its own (on `opencl3`).
//!
//! Here: reading the kernels' signatures out of the source, and writing the Rust.

/// The support crate's files, written into the cache for the session's crates.
pub const SUPPORT: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../opencl/Cargo.toml")),
    ("src/lib.rs", include_str!("../../opencl/src/lib.rs")),
];

/// The support crate's name as cells use it.
pub const SUPPORT_CRATE: &str = "ferrocell_opencl";

/// What a kernel parameter takes in Rust.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Param {
    /// `const __global T*`, `__constant T*`: host data or a device buffer.
    Input(&'static str),
    /// `__global T*`: a mutable host slice (copied back) or a device buffer.
    Output(&'static str),
    Scalar(&'static str),
}

/// A `__kernel` of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kernel {
    name: String,
    params: Vec<(String, Param)>,
}

/// The Rust scalar type of an OpenCL C scalar type.
fn scalar(words: &[&str]) -> Option<&'static str> {
    Some(match words {
        ["char"] | ["signed", "char"] => "i8",
        ["uchar"] | ["unsigned", "char"] => "u8",
        ["short"] => "i16",
        ["ushort"] | ["unsigned", "short"] => "u16",
        ["int"] => "i32",
        ["uint"] | ["unsigned", "int"] | ["unsigned"] => "u32",
        ["long"] => "i64",
        ["ulong"] | ["unsigned", "long"] => "u64",
        ["float"] => "f32",
        ["double"] => "f64",
        _ => return None,
    })
}

/// The source without comments (kept the same length in lines).
fn without_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
                out.push(' ');
            }
            // A string's words (`printf("kernel ...")`) are not the program's.
            ('"', _) => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// One parameter, read from its declaration (`__global const float* restrict x`).
fn param(decl: &str) -> Result<(String, Param), String> {
    let spaced = decl.replace('*', " * ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let name = words
        .last()
        .filter(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .ok_or_else(|| format!("cannot read the parameter `{}`", decl.trim()))?
        .to_string();
    let mut space = None;
    // `const` before the `*` makes the data read-only; after it, only the pointer.
    let mut constant = false;
    let mut pointer = false;
    let mut ty = Vec::new();
    for w in &words[..words.len() - 1] {
        match *w {
            "__global" | "global" => space = Some("global"),
            "__constant" | "constant" => space = Some("constant"),
            "__local" | "local" => space = Some("local"),
            "__private" | "private" => {}
            "const" if !pointer => constant = true,
            "const" => {}
            "restrict" | "__restrict" | "volatile" => {}
            "*" => pointer = true,
            other => ty.push(other),
        }
    }
    let rust = scalar(&ty).ok_or_else(|| {
        format!(
            "the parameter `{name}` has type `{}`, which has no Rust counterpart here (scalars and buffers of char … double do)",
            ty.join(" ")
        )
    })?;
    let p = match (pointer, space) {
        (false, _) => Param::Scalar(rust),
        (true, Some("constant")) => Param::Input(rust),
        (true, Some("global")) if constant => Param::Input(rust),
        (true, Some("global")) => Param::Output(rust),
        (true, Some("local")) => {
            return Err(format!(
                "the parameter `{name}` is `__local`: declare the local array inside the kernel"
            ))
        }
        (true, _) => {
            return Err(format!(
                "the pointer `{name}` needs `__global` or `__constant`"
            ))
        }
    };
    Ok((name, p))
}

/// The kernels of `src`, and notes on those that cannot be called from Rust.
fn kernels(src: &str) -> (Vec<Kernel>, Vec<String>) {
    let src = without_comments(src);
    let mut found = Vec::new();
    let mut notes = Vec::new();
    let words: Vec<(usize, &str)> = src
        .match_indices(|c: char| c.is_alphanumeric() || c == '_')
        .fold(Vec::new(), |mut acc: Vec<(usize, usize)>, (i, s)| {
            match acc.last_mut() {
                Some((start, end)) if *end == i => *end = i + s.len(),
                _ => acc.push((i, i + s.len())),
            }
            acc
        })
        .into_iter()
        .map(|(a, b)| (a, &src[a..b]))
        .collect();
    for (k, (_, w)) in words.iter().enumerate() {
        if *w != "__kernel" && *w != "kernel" {
            continue;
        }
        // `__kernel void name(`, perhaps with attributes between.
        let Some(v) = words[k + 1..].iter().position(|(_, w)| *w == "void") else {
            continue;
        };
        let Some((at, name)) = words.get(k + 1 + v + 1) else {
            continue;
        };
        let rest = &src[at + name.len()..];
        let Some(open) = rest.find('(').filter(|o| rest[..*o].trim().is_empty()) else {
            continue;
        };
        let Some(close) = rest[open..].find(')') else {
            continue;
        };
        // A definition, not a prototype; each kernel once.
        let defined = rest[open + close + 1..].trim_start().starts_with('{');
        if !defined || found.iter().any(|k: &Kernel| k.name == *name) {
            continue;
        }
        let list = &rest[open + 1..open + close];
        let decls: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != "void")
            .collect();
        match decls
            .iter()
            .map(|d| param(d))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(params) => found.push(Kernel {
                name: name.to_string(),
                params,
            }),
            Err(why) => notes.push(format!(
                "the kernel `{name}` is not declared for Rust: {why}"
            )),
        }
    }
    (found, notes)
}

/// A Rust identifier for an OpenCL name: as it is where Rust takes it, else with
/// a `_` after it (Rust's keywords, reserved words included).
fn ident(name: &str) -> String {
    if syn::parse_str::<syn::Ident>(name).is_ok() && name != "gen" {
        name.to_string()
    } else {
        format!("{name}_")
    }
}

/// The Rust for a `%%opencl` cell: the source and options as constants, a handle
/// per kernel, and the build on `device` when the cell runs. Notes say which
/// kernels could not be declared.
pub fn declare(source: &str, device: usize, options: &str) -> (String, Vec<String>) {
    let (found, notes) = kernels(source);
    // The cell's first line is the magic line: the build log names the cell's lines.
    let program = format!("#line 2 \"cell\"\n{source}\n");
    let tag = {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(format!("{device}\0{options}\0{program}"))[..6])
    };
    let (src, opts) = (
        format!("__FC_CL_SOURCE_{tag}"),
        format!("__FC_CL_OPTIONS_{tag}"),
    );
    let c = SUPPORT_CRATE;
    let mut out = format!(
        "#[doc(hidden)]\npub const {src}: &str = {program:?};\n\
         #[doc(hidden)]\npub const {opts}: &str = {options:?};\n"
    );
    for k in &found {
        let ty = format!("__fc_cl_kernel_{}", k.name);
        let mut params = Vec::new();
        let mut names = Vec::new();
        let mut sets = Vec::new();
        for (name, p) in &k.params {
            let n = ident(name);
            names.push(n.clone());
            match p {
                Param::Input(t) => {
                    params.push(format!("{n}: impl ::{c}::Input<'a, {t}>"));
                    sets.push(format!(
                        "__fc_call.buffer(::{c}::Input::input({n}, &__fc_built)?)?;"
                    ));
                }
                Param::Output(t) => {
                    params.push(format!("{n}: impl ::{c}::Output<'a, {t}>"));
                    sets.push(format!(
                        "__fc_call.buffer(::{c}::Output::output({n}, &__fc_built)?)?;"
                    ));
                }
                Param::Scalar(t) => {
                    params.push(format!("{n}: {t}"));
                    sets.push(format!("__fc_call.scalar::<{t}>({n})?;"));
                }
            }
        }
        let params = params.join(", ");
        let names = names.join(", ");
        out.push_str(&format!(
            "#[allow(non_camel_case_types)]\n#[derive(Clone, Copy, Debug)]\npub struct {ty};\n\
             #[allow(non_upper_case_globals)]\npub const {name}: {ty} = {ty};\n\
             impl {ty} {{\n\
             /// Runs the kernel on `global` work items (no more than its buffers' elements).\n\
             pub fn run<'a>(&self, global: impl ::{c}::Global, {params}) -> ::{c}::Result<()> {{\n\
             self.bind({names})?.run(global)\n}}\n\
             /// Runs the kernel on `global` work items, however long its buffers are.\n\
             /// # Safety\n/// The kernel must stay within its buffers.\n\
             pub unsafe fn run_unchecked<'a>(&self, global: impl ::{c}::Global, {params}) -> ::{c}::Result<()> {{\n\
             unsafe {{ self.bind({names})?.run_unchecked(global) }}\n}}\n\
             fn bind<'a>(&self, {params}) -> ::{c}::Result<::{c}::Call<'a>> {{\n\
             let __fc_built = ::{c}::program({device}, {src}, {opts})?;\n\
             let mut __fc_call = ::{c}::Call::new(__fc_built.clone(), {kname:?})?;\n\
             {sets}\n\
             ::std::result::Result::Ok(__fc_call)\n}}\n}}\n",
            name = ident(&k.name),
            kname = k.name,
            sets = sets.join("\n"),
        ));
    }
    out.push_str(&format!("::{c}::build_or_stop({device}, {src}, {opts});\n"));
    (out, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_and_their_parameters_are_read() {
        let (ks, notes) = kernels(
            "// a comment with __kernel void nothing()\n\
             __kernel void vadd(__global const float* a, __global const float *b,\n\
                                __global float* restrict c, const int n) { }\n\
             /* */ kernel void scale(global double* x, double k);\n\
             kernel void scale(global double* x, double k) { printf(\"kernel void no(int x) {}\"); }\n\
             __kernel void keep(__global float * const out, int final) {}\n\
             __kernel void bad(__global float4* v) {}\n\
             float helper(float x) { return x; }",
        );
        assert_eq!(ks.len(), 3, "{ks:?}");
        assert_eq!(ks[0].name, "vadd");
        assert_eq!(
            ks[0].params,
            vec![
                ("a".into(), Param::Input("f32")),
                ("b".into(), Param::Input("f32")),
                ("c".into(), Param::Output("f32")),
                ("n".into(), Param::Scalar("i32")),
            ]
        );
        assert_eq!(ks[1].params[1], ("k".into(), Param::Scalar("f64")));
        // A const pointer to data the kernel writes: copied back.
        assert_eq!(ks[2].params[0], ("out".into(), Param::Output("f32")));
        assert_eq!(ident("final"), "final_");
        assert_eq!(ident("x"), "x");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("`bad`") && notes[0].contains("float4"));
    }

    #[test]
    fn the_rust_has_a_handle_per_kernel_and_the_build() {
        let (rust, _) = declare(
            "__kernel void k(__global int* type) {}",
            1,
            "-cl-fast-relaxed-math",
        );
        assert!(rust.contains("pub const k: __fc_cl_kernel_k"));
        assert!(rust.contains("type_: impl ::ferrocell_opencl::Output<'a, i32>"));
        assert!(rust.contains("::ferrocell_opencl::build_or_stop(1,"));
        assert!(rust.contains("#line 2"));
        assert!(crate::compile::cell::parse(&rust).is_ok());
    }
}
