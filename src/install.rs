//! `ferrocell install`: writes the kernelspec that Jupyter clients find.

use anyhow::Context;
use serde_json::json;
use std::path::{Path, PathBuf};

const LOGO_32: &[u8] = include_bytes!("../kernelspec/logo-32x32.png");
const LOGO_64: &[u8] = include_bytes!("../kernelspec/logo-64x64.png");
const LOGO_SVG: &[u8] = include_bytes!("../kernelspec/logo-svg.svg");

/// The kernel's name in `jupyter kernelspec list` and in notebooks' metadata.
pub const KERNEL_NAME: &str = "ferrocell";

/// Where to install.
#[derive(Debug, Clone)]
pub enum Target {
    /// `~/.local/share/jupyter/kernels` (the default).
    User,
    /// The active Python environment (`$VIRTUAL_ENV`, else `python3`'s `sys.prefix`).
    SysPrefix,
    /// `PREFIX/share/jupyter/kernels`.
    Prefix(PathBuf),
}

fn sys_prefix() -> anyhow::Result<PathBuf> {
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        return Ok(PathBuf::from(v));
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .context("--sys-prefix needs python3 to tell its sys.prefix")?;
    anyhow::ensure!(
        out.status.success(),
        "python3 could not tell its sys.prefix"
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn kernels_dir(target: &Target) -> anyhow::Result<PathBuf> {
    Ok(match target {
        Target::User => dirs::data_dir()
            .context("no user data directory (is HOME set?)")?
            .join("jupyter/kernels"),
        Target::SysPrefix => sys_prefix()?.join("share/jupyter/kernels"),
        Target::Prefix(p) => p.join("share/jupyter/kernels"),
    })
}

/// The kernel.json for a kernel binary at `exe`.
pub fn kernel_json(exe: &Path) -> serde_json::Value {
    json!({
        "argv": [exe.display().to_string(), "kernel", "--connection-file", "{connection_file}"],
        "display_name": "Rust (ferrocell)",
        "language": "rust",
        "interrupt_mode": "message",
        "kernel_protocol_version": "5.5",
        "metadata": {}
    })
}

/// Writes the kernelspec and returns its directory.
pub fn install(target: &Target) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where the ferrocell binary is")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let dir = kernels_dir(target)?.join(KERNEL_NAME);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let spec = serde_json::to_string_pretty(&kernel_json(&exe)).expect("serializes");
    for (name, bytes) in [
        ("kernel.json", spec.as_bytes()),
        ("logo-32x32.png", LOGO_32),
        ("logo-64x64.png", LOGO_64),
        ("logo-svg.svg", LOGO_SVG),
    ] {
        std::fs::write(dir.join(name), bytes)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_a_message_mode_rust_kernelspec() {
        let dir = tempfile::tempdir().unwrap();
        let spec_dir = super::install(&super::Target::Prefix(dir.path().into())).unwrap();
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(spec_dir.join("kernel.json")).unwrap())
                .unwrap();
        assert_eq!(spec["language"], "rust");
        assert_eq!(spec["interrupt_mode"], "message");
        assert_eq!(spec["argv"][1], "kernel");
        assert!(spec_dir.join("logo-64x64.png").is_file());
    }
}
