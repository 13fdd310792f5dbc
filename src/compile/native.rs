//! `%%c` and `%%cpp` cells, as Cython's `%%cython` brings C into Python: the cell is
//! C or C++ source, built by the system compiler into a shared library (cached by
//! the hash of source, flags and compiler version), and every function it defines
//! with C linkage becomes a Rust function that later cells call in `unsafe { }`.
//!
//! The children do the work: `compiler` (finding `cc`/`c++`, the build, its errors
//! on the cell's lines) and `bindings` (bindgen on the source, and the Rust that
//! finds each function in the library when it is first called).

mod bindings;
mod compiler;

use std::path::{Path, PathBuf};

/// The language of a native cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    C,
    Cpp,
}

impl Lang {
    /// The magic's name.
    pub fn magic(self) -> &'static str {
        match self {
            Lang::C => "%%c",
            Lang::Cpp => "%%cpp",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Lang::C => "c",
            Lang::Cpp => "cpp",
        }
    }
}

/// What the magic line asks of the compiler, as `%%cython` takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// For compiling (and for bindgen, which reads the same source): `-O3`,
    /// `-I DIR`, `-D NAME=VALUE`, `-std=c11`, `-march=native`, `-fopenmp`, ...
    pub compile: Vec<String>,
    /// For linking: `-L DIR`, `-l NAME`.
    pub link: Vec<String>,
}

impl Flags {
    /// Reads the words after `%%c`: `-O3 -lm -I DIR -L DIR -l NAME`, each value
    /// attached or as the next word.
    pub fn parse(words: &[&str]) -> Result<Flags, String> {
        let mut flags = Flags::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let kind = w.get(..2).unwrap_or("");
            match kind {
                "-I" | "-D" | "-L" | "-l" => {
                    let value = match &w[2..] {
                        "" => it.next().ok_or_else(|| format!("{w} needs a value"))?,
                        v => v,
                    };
                    let to = if matches!(kind, "-L" | "-l") {
                        &mut flags.link
                    } else {
                        &mut flags.compile
                    };
                    to.push(format!("{kind}{value}"));
                }
                "-O" | "-f" | "-m" | "-W" | "-g" => flags.compile.push(w.to_string()),
                _ if w.starts_with("-std=") => flags.compile.push(w.to_string()),
                _ => {
                    return Err(format!(
                        "unknown flag {w:?}: %%c and %%cpp take -O3, -I DIR, -D NAME[=VALUE], -std=..., -f..., -m..., -W..., -g, -L DIR, -l NAME"
                    ))
                }
            }
        }
        Ok(flags)
    }
}

/// A built native cell.
#[derive(Debug, Clone)]
pub struct Built {
    /// The shared library, in the cells' directory.
    pub lib: PathBuf,
    /// The Rust items that declare its functions for later cells.
    pub rust: String,
    /// What could not be declared, and why.
    pub notes: Vec<String>,
    /// False when the library came from the cache.
    pub compiled: bool,
}

/// Why a native cell did not build.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// The compiler's errors, on the cell's lines.
    #[error("{summary}")]
    Code {
        summary: String,
        rendered: Vec<String>,
    },
    /// No compiler, or it could not run.
    #[error("{0}")]
    Compiler(String),
    /// bindgen could not read the source (libclang missing, for one).
    #[error("{0}")]
    Bindings(String),
    #[error("{0}")]
    Io(String),
}

/// Builds `source` (the lines after the magic line) into a library in `dir`, or
/// finds it there, and writes the Rust that declares its functions.
pub async fn build(
    lang: Lang,
    flags: &Flags,
    source: &str,
    dir: &Path,
) -> Result<Built, NativeError> {
    let compiler = compiler::Compiler::find(lang).await?;
    let key = compiler.key(flags, source).await;
    let file = format!("libfc_{}_{key}.so", lang.extension());
    let lib = dir.join(&file);
    let compiled = !lib.is_file();
    if compiled {
        compiler.build(flags, source, dir, &lib).await?;
    }
    let (rust, notes) = {
        let (lib, file, source, flags) =
            (lib.clone(), file.clone(), source.to_string(), flags.clone());
        tokio::task::spawn_blocking(move || bindings::declare(lang, &flags, &source, &lib, &file))
            .await
            .map_err(|e| NativeError::Bindings(e.to_string()))??
    };
    Ok(Built {
        lib,
        rust,
        notes,
        compiled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_as_cython_takes_them() {
        let f = Flags::parse(&[
            "-O3", "-lm", "-I", "/inc", "-L/lib", "-l", "z", "-DN=3", "-std=c11",
        ])
        .unwrap();
        assert_eq!(f.compile, vec!["-O3", "-I/inc", "-DN=3", "-std=c11"]);
        assert_eq!(f.link, vec!["-lm", "-L/lib", "-lz"]);
        assert!(Flags::parse(&["-I"]).is_err());
        assert!(Flags::parse(&["--frob"]).is_err());
        assert!(Flags::parse(&["x.c"]).is_err());
    }
}
