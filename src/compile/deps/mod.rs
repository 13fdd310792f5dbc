//! Crates for cells: `:dep` lines, the cargo project that builds them, and the record
//! of what it built.
//!
//! cargo runs only here, once per set of dependencies: the set becomes a small
//! package under the cache whose `[dependencies]` are the session's `:dep` lines plus
//! serde and bincode (which the kernel needs for variable snapshots). All sets share
//! one target directory, so a crate is compiled once per toolchain and features, and
//! a set that was built before is taken from its record without running cargo at all
//! (a restarted kernel, or a machine that is offline).
//!
//! The children: `line` reads a `:dep` line, `manifest` turns the session's set into
//! the package's Cargo.toml, `cargo` runs cargo and reads what it built, and `built`
//! is the record of a build that cells link against.

mod built;
mod cargo;
mod line;
mod manifest;

pub use built::{BuiltDeps, Extern, Native};
pub use cargo::building;
pub use line::{parse_line, DepLine};
pub use manifest::DepSet;

use super::toolchain::Toolchain;
use cargo::{direct_deps, locate_cargo, run_cargo};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The crate name cells use for the kernel's own bincode (renamed, so that a user's
/// `:dep bincode = "2"` does not clash with it).
pub const SNAPSHOT_CODEC: &str = "__fc_bincode";

/// serde's derive macros, which the kernel applies to cell structs and enums.
pub const DERIVE: &str = "serde_derive";

/// Why a `:dep` line or a dependency build failed.
#[derive(Debug, thiserror::Error)]
pub enum DepError {
    #[error("{0}")]
    Syntax(String),
    #[error("cargo was not found: install Rust with rustup (it brings cargo), or point FERROCELL_CARGO at it")]
    NoCargo,
    #[error("cannot write the dependency project into {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("cargo could not build the dependencies:\n{0}")]
    Build(String),
}

/// Where dependency builds of this toolchain live.
fn root(toolchain: &Toolchain, cache: &Path) -> PathBuf {
    cache.join(&toolchain.id).join("deps")
}

/// Builds `set` (or finds it built) and returns its crates. Each line cargo prints
/// while building goes to `progress` as it comes.
pub async fn build(
    set: &DepSet,
    toolchain: &Toolchain,
    cache: &Path,
    loaded: Option<&BuiltDeps>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<BuiltDeps, DepError> {
    let manifest = set.manifest();
    let key = hex::encode(&Sha256::digest(manifest.as_bytes())[..8]);
    let root = root(toolchain, cache);
    let dir = root.join(format!("set-{key}"));
    let record = dir.join("built.json");
    if !set.has_local() {
        if let Some(built) = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice::<BuiltDeps>(&b).ok())
            .filter(|b| b.externs.iter().all(|e| e.path.is_file()))
        {
            return Ok(built);
        }
    }
    let io = |source| DepError::Io {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    std::fs::write(dir.join("Cargo.toml"), &manifest).map_err(io)?;
    std::fs::write(dir.join("lib.rs"), "").map_err(io)?;
    let lock = dir.join("Cargo.lock");
    if let Some(from) = loaded.and_then(|l| l.lock.as_ref()) {
        if !lock.is_file() {
            // Best effort: without it cargo resolves afresh, and a crate that moved
            // on is refused later with a clear message.
            let _ = std::fs::copy(from, &lock);
        }
    }
    let cargo = locate_cargo(toolchain).ok_or(DepError::NoCargo)?;
    let target = root.join("target");
    // Only the kernel's own crates: try the local registry first, so a machine
    // without network that has them downloaded builds at once.
    let attempts: &[bool] = if set.is_empty() {
        &[true, false]
    } else {
        &[false, true]
    };
    // The error worth showing is the online build's, not the offline probe's.
    let mut failure = String::new();
    for &offline in attempts {
        let outcome = match run_cargo(&cargo, &dir, &target, toolchain, offline, progress).await {
            Ok((artifacts, native)) => {
                direct_deps(&cargo, &dir, &target, toolchain, offline, &artifacts)
                    .await
                    .map(|externs| (externs, native))
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok((externs, native)) => {
                let built = BuiltDeps {
                    dir: target.join("release").join("deps"),
                    externs,
                    lock: lock.is_file().then(|| lock.clone()),
                    native,
                };
                let text = serde_json::to_vec_pretty(&built).expect("plain data");
                std::fs::write(&record, text).map_err(io)?;
                return Ok(built);
            }
            Err(e) if !offline || failure.is_empty() => failure = e,
            Err(_) => {}
        }
    }
    Err(DepError::Build(failure))
}
