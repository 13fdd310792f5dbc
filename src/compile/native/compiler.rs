//! The system's C and C++ compilers, found as the `cc` crate finds them (`CC` and
//! `CXX`, else `cc` and `c++`), and one build of a native cell: a shared library
//! whose errors name the cell's own lines.

use super::{Flags, Lang, NativeError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A build that takes longer than this is stopped.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// A compiler and what identifies its build of a source.
pub(super) struct Compiler {
    lang: Lang,
    program: PathBuf,
    /// The first line of `--version`: a new compiler builds the cells anew.
    version: String,
}

impl Compiler {
    /// The compiler for `lang`, with its version.
    pub(super) async fn find(lang: Lang) -> Result<Compiler, NativeError> {
        let (var, default) = match lang {
            Lang::C => ("CC", "cc"),
            Lang::Cpp => ("CXX", "c++"),
        };
        let program = std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default));
        let out = tokio::process::Command::new(&program)
            .arg("--version")
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| {
                NativeError::Compiler(format!(
                    "{} needs a {} compiler: `{}` could not run ({e}); install gcc{} or set {var}",
                    lang.magic(),
                    if lang == Lang::C { "C" } else { "C++" },
                    program.display(),
                    if lang == Lang::C { "" } else { " and g++" },
                ))
            })?;
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        Ok(Compiler {
            lang,
            program,
            version,
        })
    }

    /// The cache key of `source` built with `flags` by this compiler: with the
    /// contents of the headers it includes, so that a changed header builds the
    /// cell anew.
    pub(super) async fn key(&self, flags: &Flags, source: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            self.lang.magic(),
            &self.program.display().to_string(),
            &self.version,
            &flags.compile.join("\u{1}"),
            &flags.link.join("\u{1}"),
            source,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for header in self.headers(flags, source).await {
            h.update(header.as_os_str().as_encoded_bytes());
            h.update(std::fs::read(&header).unwrap_or_default());
        }
        hex::encode(&h.finalize()[..10])
    }

    /// The headers `source` includes, as the compiler's preprocessor finds them
    /// (`-MM`: not the system's); none when it cannot say (the build will).
    async fn headers(&self, flags: &Flags, source: &str) -> Vec<PathBuf> {
        use tokio::io::AsyncWriteExt;
        let language = match self.lang {
            Lang::C => "c",
            Lang::Cpp => "c++",
        };
        let child =
            tokio::process::Command::new(&self.program)
                .args(["-MM", "-x", language])
                .args(flags.compile.iter().filter(|f| {
                    f.starts_with("-I") || f.starts_with("-D") || f.starts_with("-std=")
                }))
                .arg("-")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn();
        let Ok(mut child) = child else {
            return vec![];
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(source.as_bytes()).await;
        }
        let Ok(Ok(out)) =
            tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await
        else {
            return vec![];
        };
        // `-: a.h b.h \` lines: the rule's target, then what it depends on.
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .filter(|w| *w != "\\" && !w.ends_with(':'))
            .map(PathBuf::from)
            .collect()
    }

    /// Builds `source` into `lib` (written elsewhere first and renamed into place,
    /// so that no half-written library is ever found).
    pub(super) async fn build(
        &self,
        flags: &Flags,
        source: &str,
        dir: &Path,
        lib: &Path,
    ) -> Result<(), NativeError> {
        let io = |e: std::io::Error| NativeError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let scratch = tempfile::Builder::new()
            .prefix("building-")
            .tempdir_in(dir)
            .map_err(io)?;
        let src = scratch
            .path()
            .join(format!("cell.{}", self.lang.extension()));
        // The magic line is the cell's line 1: the source starts on line 2, and the
        // compiler's messages say so, in the cell's name.
        std::fs::write(&src, format!("#line 2 \"cell\"\n{source}\n")).map_err(io)?;
        let out = scratch.path().join("lib.so");
        let file = lib
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = tokio::process::Command::new(&self.program);
        // --no-undefined: a function from a library the line does not name (`sqrt`
        // without -lm) is an error now, not when the library is loaded.
        cmd.args([
            "-shared",
            "-fPIC",
            "-fdiagnostics-color=never",
            "-Wl,--no-undefined",
        ]);
        if !flags.compile.iter().any(|f| f.starts_with("-O")) {
            cmd.arg("-O2");
        }
        // `#include "x.h"` finds x.h next to the notebook (the kernel's directory),
        // as it would next to a source file there.
        if let Ok(cwd) = std::env::current_dir() {
            cmd.arg("-iquote").arg(cwd);
        }
        cmd.args(&flags.compile)
            .arg(format!("-Wl,-soname,{file}"))
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .args(&flags.link)
            // A library found with -L at build time is found there when loaded.
            .args(
                flags
                    .link
                    .iter()
                    .filter_map(|f| f.strip_prefix("-L"))
                    .map(|dir| format!("-Wl,-rpath,{dir}")),
            )
            .kill_on_drop(true);
        let run = tokio::time::timeout(BUILD_TIMEOUT, cmd.output()).await;
        let output = match run {
            Ok(r) => r.map_err(|e| {
                NativeError::Compiler(format!("`{}` could not run: {e}", self.program.display()))
            })?,
            Err(_) => {
                return Err(NativeError::Compiler(format!(
                    "the build took longer than {} s and was stopped",
                    BUILD_TIMEOUT.as_secs()
                )))
            }
        };
        if !output.status.success() {
            return Err(errors(&String::from_utf8_lossy(&output.stderr)));
        }
        std::fs::rename(&out, lib).map_err(io)
    }
}

/// The compiler's complaint as one error: the first `error:` line's message as the
/// summary, and everything it said (already on the cell's lines) below it.
fn errors(stderr: &str) -> NativeError {
    let summary = stderr
        .lines()
        .find_map(|l| l.split_once("error: ").map(|(_, m)| m.to_string()))
        .unwrap_or_else(|| {
            stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("the compiler failed")
                .to_string()
        });
    NativeError::Code {
        summary,
        rendered: vec![stderr.trim_end().to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_is_the_summary() {
        let e = errors(
            "cell: In function 'f':\ncell:3:5: error: 'x' undeclared\ncell:4:1: error: other\n",
        );
        match e {
            NativeError::Code { summary, rendered } => {
                assert_eq!(summary, "'x' undeclared");
                assert!(rendered[0].contains("cell:4:1"));
            }
            other => panic!("{other:?}"),
        }
    }
}
