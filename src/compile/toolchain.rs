//! Finding and checking the rustc that compiles cells.

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

/// How long `rustc -vV` may take before the toolchain counts as broken.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A working rustc and the facts about it that cells depend on.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Toolchain {
    pub rustc: PathBuf,
    /// The first line of `rustc -vV`, e.g. `rustc 1.95.0 (59807616e 2026-04-14)`.
    pub version: String,
    pub host: String,
    /// Where libstd's shared library lives; cells and the runner load it from there.
    pub target_libdir: PathBuf,
    /// A short hash of everything above: separates caches of different toolchains.
    pub id: String,
}

/// What is wrong with the toolchain, in words for the notebook.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("rustc was not found ({0}). Install Rust from https://rustup.rs, or point FERROCELL_RUSTC at a rustc.")]
    NotFound(String),
    #[error(
        "rustc at {path} did not answer `rustc -vV` within {secs} s; the toolchain looks broken"
    )]
    Hung { path: String, secs: u64 },
    #[error("rustc at {path} is not usable: {detail}")]
    Broken { path: String, detail: String },
    #[error("{version} at {path} is too old: cells are Rust 2024, which needs rustc 1.85 or newer (rustup update)")]
    TooOld { path: String, version: String },
}

/// Whether a `rustc 1.N.P …` version line is at least 1.85, the first rustc that
/// builds edition 2024 (the prelude, the runner and cells); a line it cannot read
/// counts as new enough (rustc itself will say what is wrong).
fn new_enough(version: &str) -> bool {
    let number = version.split_whitespace().nth(1).unwrap_or("");
    let mut parts = number.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (1, 85),
        _ => true,
    }
}

fn locate() -> Result<PathBuf, ToolchainError> {
    if let Some(p) = std::env::var_os("FERROCELL_RUSTC") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ToolchainError::NotFound(format!(
                "FERROCELL_RUSTC={} does not exist",
                p.display()
            )))
        };
    }
    find_tool("rustc")
        .ok_or_else(|| ToolchainError::NotFound("no `rustc` on PATH or in ~/.cargo/bin".into()))
}

/// A Rust tool (`rustc`, `cargo`) on `PATH`, or where rustup puts it.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = dirs::home_dir() {
        dirs.push(home.join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

async fn ask(rustc: &PathBuf, args: &[&str]) -> Result<String, ToolchainError> {
    let path = rustc.display().to_string();
    let run = tokio::process::Command::new(rustc)
        .args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(PROBE_TIMEOUT, run)
        .await
        .map_err(|_| ToolchainError::Hung {
            path: path.clone(),
            secs: PROBE_TIMEOUT.as_secs(),
        })?
        .map_err(|e| ToolchainError::Broken {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ToolchainError::Broken {
            path,
            detail: format!(
                "`rustc {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Toolchain {
    /// Finds rustc and checks that it answers like one.
    pub async fn probe() -> Result<Toolchain, ToolchainError> {
        let rustc = locate()?;
        let path = rustc.display().to_string();
        let vv = ask(&rustc, &["-vV"]).await?;
        let version = vv.lines().next().unwrap_or("").trim().to_string();
        let host = vv
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .map(str::trim)
            .map(String::from);
        let (true, Some(host)) = (version.starts_with("rustc "), host) else {
            return Err(ToolchainError::Broken {
                path,
                detail: format!("`rustc -vV` printed {:?}, not a rustc version", vv.trim()),
            });
        };
        if !new_enough(&version) {
            return Err(ToolchainError::TooOld { path, version });
        }
        let libdir = ask(&rustc, &["--print", "target-libdir"]).await?;
        let target_libdir = PathBuf::from(libdir.trim());
        let id = hex::encode(&Sha256::digest(vv.as_bytes())[..6]);
        Ok(Toolchain {
            rustc,
            version,
            host,
            target_libdir,
            id,
        })
    }
}

/// The environment variable in which a launcher hands its probe to the engines it
/// starts on its own machine, from its own working directory and environment:
/// they would find the same rustc, and a thousand engines need not each run
/// `rustc -vV` (40 ms apiece) to learn it.
pub const PROBED_ENV: &str = "FERROCELL_TOOLCHAIN";

/// This machine, as far as a handed-down probe goes: its name and this boot of
/// it (clones and containers may share a name).
fn machine() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    format!("{} {}", crate::paths::hostname(), boot.trim())
}

/// A probe handed down, with the machine it was made on.
#[derive(serde::Serialize, serde::Deserialize)]
struct Handed {
    machine: String,
    toolchain: Toolchain,
}

impl Toolchain {
    /// This probe as [`PROBED_ENV`]'s value.
    pub fn handed_down(&self) -> String {
        serde_json::to_string(&Handed {
            machine: machine(),
            toolchain: self.clone(),
        })
        .unwrap_or_default()
    }

    /// The probe in [`PROBED_ENV`]'s value, if it was made on this machine (an
    /// engine that mpirun placed elsewhere probes its own) and its rustc is there.
    pub fn handed(value: &str) -> Option<Toolchain> {
        let h: Handed = serde_json::from_str(value).ok()?;
        (h.machine == machine() && h.toolchain.rustc.is_file()).then_some(h.toolchain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_handed_down_only_on_its_own_machine() {
        let t = Toolchain {
            rustc: std::env::current_exe().unwrap(),
            version: "rustc 1.90.0".into(),
            host: "x86_64-unknown-linux-gnu".into(),
            target_libdir: "/lib".into(),
            id: "abc".into(),
        };
        let here = t.handed_down();
        assert_eq!(
            Toolchain::handed(&here).map(|t| t.id).as_deref(),
            Some("abc")
        );
        let elsewhere = here.replace(&crate::paths::hostname(), "some-other-host");
        assert!(Toolchain::handed(&elsewhere).is_none());
        assert!(Toolchain::handed("{").is_none());
    }

    #[test]
    fn knows_which_rustc_builds_edition_2024() {
        assert!(new_enough("rustc 1.95.0 (59807616e 2026-04-14)"));
        assert!(new_enough("rustc 1.85.0-nightly (abc 2024-11-01)"));
        assert!(!new_enough("rustc 1.84.1 (e71f9a9a9 2025-01-27)"));
        assert!(new_enough("rustc 2.0.0"));
    }
}
