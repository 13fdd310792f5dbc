//! Running cargo: finding it, `cargo build` with its progress and its JSON messages
//! (each package's library, the native libraries build scripts link), and
//! `cargo metadata` for the names cells use for the direct dependencies.

use super::{Extern, Native};
use crate::compile::toolchain::Toolchain;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

pub(super) fn locate_cargo(toolchain: &Toolchain) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERROCELL_CARGO") {
        return Some(PathBuf::from(p));
    }
    let beside = toolchain.rustc.with_file_name("cargo");
    if beside.is_file() {
        return Some(beside);
    }
    crate::compile::toolchain::find_tool("cargo")
}

#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    package_id: Option<String>,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
    /// A build script's `-l` requests (`static=rsmpi`, `mpi`).
    #[serde(default)]
    linked_libs: Vec<String>,
    /// A build script's `-L` requests (`native=/…/out`).
    #[serde(default)]
    linked_paths: Vec<String>,
}

#[derive(Deserialize)]
struct CargoTarget {
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct Metadata {
    resolve: Resolve,
}

#[derive(Deserialize)]
struct Resolve {
    root: Option<String>,
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    #[serde(default)]
    deps: Vec<NodeDep>,
}

#[derive(Deserialize)]
struct NodeDep {
    name: String,
    pkg: String,
}

fn cargo_command(
    cargo: &Path,
    dir: &Path,
    target: &Path,
    toolchain: &Toolchain,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.current_dir(dir)
        .env("RUSTC", &toolchain.rustc)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_NET_RETRY", "2")
        .env("CARGO_HTTP_TIMEOUT", "30")
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `cargo build`; returns each package's library file, by package id, and
/// the static libraries that build scripts linked.
pub(super) async fn run_cargo(
    cargo: &Path,
    dir: &Path,
    target: &Path,
    toolchain: &Toolchain,
    offline: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(HashMap<String, (PathBuf, bool)>, Native), String> {
    let mut cmd = cargo_command(cargo, dir, target, toolchain);
    cmd.args(["build", "--release", "--message-format=json"])
        // Its progress bar ("Building [==> ] 12/40: serde, syn"), though stderr is
        // a pipe: it tells how far the build is (see [`building`]).
        .env("CARGO_TERM_PROGRESS_WHEN", "always")
        .env("CARGO_TERM_PROGRESS_WIDTH", "100");
    if offline {
        cmd.arg("--offline");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let collect = async {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out).await;
        out
    };
    let report = async {
        // Lines end in \n, progress bar updates in \r.
        let mut reader = BufReader::new(stderr);
        let mut all = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let mut byte = [0u8; 1];
            while let Ok(1) = reader.read(&mut byte).await {
                if byte[0] == b'\n' || byte[0] == b'\r' {
                    break;
                }
                buf.push(byte[0]);
            }
            if buf.is_empty() {
                match reader.fill_buf().await {
                    Ok([]) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            // The offline try is a quiet probe; only the real build is shown.
            if !offline || !line.trim_start().starts_with("error") {
                progress(&line);
            }
            if building(&line).is_none() {
                all.push(line);
            }
        }
        all
    };
    let (out, err) = tokio::join!(collect, report);
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if !status.success() {
        let tail: Vec<String> = err.iter().rev().take(30).rev().cloned().collect();
        return Err(tail.join("\n"));
    }
    let mut artifacts = HashMap::new();
    let mut native = Native::default();
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(m) = serde_json::from_slice::<CargoMessage>(line) else {
            continue;
        };
        if m.reason == "build-script-executed" {
            let statics: Vec<&str> = m
                .linked_libs
                .iter()
                .filter_map(|l| l.strip_prefix("static="))
                .collect();
            if !statics.is_empty() {
                native
                    .static_libs
                    .extend(statics.iter().map(|l| l.to_string()));
                native.paths.extend(m.linked_paths.iter().cloned());
            }
            continue;
        }
        let (Some(id), Some(t)) = (m.package_id, m.target) else {
            continue;
        };
        if m.reason != "compiler-artifact" {
            continue;
        }
        let proc_macro = t.kind.iter().any(|k| k == "proc-macro");
        let file = m.filenames.into_iter().find(|f| {
            let ext = f.extension().and_then(|e| e.to_str());
            if proc_macro {
                ext == Some("so")
            } else {
                ext == Some("rlib")
            }
        });
        if let Some(file) = file {
            artifacts.insert(id, (file, proc_macro));
        }
    }
    Ok((artifacts, native))
}

/// How far a build is, from a line of cargo's progress bar
/// (`Building [=====>    ] 12/40: serde, syn`): units done, units in all, and
/// those being built now.
pub fn building(line: &str) -> Option<(usize, usize, &str)> {
    let rest = line.trim_start().strip_prefix("Building [")?;
    let (_, rest) = rest.split_once("] ")?;
    let (counts, now) = rest.split_once(':').unwrap_or((rest, ""));
    let (done, all) = counts.trim().split_once('/')?;
    Some((done.parse().ok()?, all.parse().ok()?, now.trim()))
}

/// The set's direct dependencies, by the names cells use, with their files.
///
/// Asked of `cargo metadata` for the host platform only: a build downloads just the
/// crates of the platform it builds for, and metadata of every platform would need
/// the others too (a Windows-only crate, offline, fails). Offline or not as the build
/// was, so that an offline failure leads to the online try like the build's own.
pub(super) async fn direct_deps(
    cargo: &Path,
    dir: &Path,
    target: &Path,
    toolchain: &Toolchain,
    offline: bool,
    artifacts: &HashMap<String, (PathBuf, bool)>,
) -> Result<Vec<Extern>, String> {
    let mut cmd = cargo_command(cargo, dir, target, toolchain);
    cmd.args(["metadata", "--format-version", "1", "--filter-platform"])
        .arg(&toolchain.host);
    if offline {
        cmd.arg("--offline");
    }
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: Metadata =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let root = meta.resolve.root.unwrap_or_default();
    let node = meta
        .resolve
        .nodes
        .into_iter()
        .find(|n| n.id == root)
        .ok_or_else(|| "cargo metadata names no root package".to_string())?;
    let mut externs = Vec::new();
    for d in node.deps {
        match artifacts.get(&d.pkg) {
            Some((path, proc_macro)) => externs.push(Extern {
                name: d.name,
                path: path.clone(),
                proc_macro: *proc_macro,
            }),
            None => {
                return Err(format!(
                    "cargo built no library for `{}` ({})",
                    d.name, d.pkg
                ))
            }
        }
    }
    externs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(externs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_progress_bar_lines() {
        assert_eq!(
            building("    Building [========>        ] 1/3: pg, ryu"),
            Some((1, 3, "pg, ryu"))
        );
        assert_eq!(building("    Building [    ] 0/12"), Some((0, 12, "")));
        assert_eq!(building("   Compiling ryu v1.0.23"), None);
    }
}
