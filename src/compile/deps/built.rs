//! The record of a built set of dependencies: the crates cells name with `--extern`,
//! where their dependencies lie, and the native libraries build scripts linked. It
//! is kept as `built.json` beside the set's package.

use super::SNAPSHOT_CODEC;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One crate cells can name: `--extern name=path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extern {
    pub name: String,
    pub path: PathBuf,
    /// A procedural macro crate: used at compile time only, never linked.
    pub proc_macro: bool,
}

/// A built set of dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltDeps {
    /// Where every crate of the build lies (`-L dependency=`).
    pub dir: PathBuf,
    pub externs: Vec<Extern>,
    /// The set's Cargo.lock: a larger set starts from it, so that the crates the
    /// session has loaded keep their versions.
    #[serde(default)]
    pub lock: Option<PathBuf>,
    /// Static C libraries that build scripts link (`cargo:rustc-link-lib=static=…`)
    /// and where they are. The layer that links a crate in keeps their symbols to
    /// itself, so a later cell whose inlined code names them links them too.
    #[serde(default)]
    pub native: Native,
}

impl BuiltDeps {
    /// Each crate's name as rustc prints it in types (its own name), with the name
    /// cells use for it (`:dep num = { package = "itoa" }`: `itoa` is `num`).
    pub fn crate_names(&self) -> Vec<(String, String)> {
        self.externs
            .iter()
            .map(|e| {
                let own = e
                    .path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.strip_prefix("lib"))
                    .and_then(|s| s.split('-').next())
                    .unwrap_or(&e.name)
                    .to_string();
                (own, e.name.clone())
            })
            .collect()
    }
}

/// What build scripts asked rustc to link: `-L native=DIR` and `-l static=NAME`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Native {
    pub paths: Vec<String>,
    pub static_libs: Vec<String>,
}

impl Native {
    /// The rustc arguments that link them.
    pub fn rustc_args(&self) -> Vec<String> {
        let paths = self
            .paths
            .iter()
            .flat_map(|p| ["-L".to_string(), p.clone()]);
        let libs = self
            .static_libs
            .iter()
            .flat_map(|l| ["-l".to_string(), format!("static={l}")]);
        paths.chain(libs).collect()
    }
}

impl BuiltDeps {
    /// Whether serde and the snapshot codec are among the crates.
    pub fn snapshots(&self) -> bool {
        ["serde", SNAPSHOT_CODEC]
            .iter()
            .all(|n| self.externs.iter().any(|e| e.name == *n))
    }
}
