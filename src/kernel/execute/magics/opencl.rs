//! `%%opencl [--device N] [-o OPTIONS]` (PyOpenCL's `%%cl_kernel`) and `%opencl
//! devices`: OpenCL C built for a device, each `__kernel` a typed handle in later
//! Rust cells (see `compile::opencl`).

use super::super::{CellError, Executor};
use super::spec::{Line, Spec, Spelling};
use super::{Cx, Magic, Then};
use crate::compile::{opencl, Timing};

/// An `%%opencl` cell: the device, the build options and the source.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenClCell<'a> {
    pub device: usize,
    pub options: String,
    pub source: &'a str,
}

pub const CELL: Spec = Spec {
    names: &["opencl"],
    spelling: Spelling::LineOrCell,
    usage: &["%%opencl [--device N] [-o OPTIONS]", "%opencl devices"],
    help: &[
        "OpenCL C built for a device (pocl's CPU, a GPU); each __kernel is then",
        "a handle in later cells: vadd.run(n, &a, &b, &mut c)?; devices: list them",
    ],
    read: |line| OpenClCell::parse(line).map(Magic::OpenCl),
};

impl<'a> OpenClCell<'a> {
    fn parse(line: &Line<'a>) -> Result<Self, String> {
        let mut cell = OpenClCell {
            device: 0,
            options: String::new(),
            source: line.rest,
        };
        if line.args.as_slice() == ["devices"] {
            cell.source = "";
            cell.options = "devices".into();
            return Ok(cell);
        }
        let mut rest = line.after_name.trim();
        while !rest.is_empty() {
            let (flag, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match flag {
                "--device" => {
                    let (n, after) = after.trim_start().split_once(char::is_whitespace).unwrap_or((after.trim_start(), ""));
                    cell.device = n
                        .parse()
                        .map_err(|_| format!("--device takes a device number (%opencl devices lists them), not {n:?}"))?;
                    rest = after.trim_start();
                }
                // The options are the rest of the line, as the OpenCL compiler takes them.
                "-o" => {
                    cell.options = after.trim().trim_matches('"').to_string();
                    rest = "";
                }
                other => {
                    return Err(format!(
                        "unknown option {other:?}: %%opencl [--device N] [-o OPTIONS], or %opencl devices"
                    ))
                }
            }
        }
        if cell.source.trim().is_empty() {
            return Err(
                "%%opencl needs a body: OpenCL C with __kernel functions (or %opencl devices)"
                    .into(),
            );
        }
        Ok(cell)
    }

    /// Links the support crate (built once per machine), then runs the cell's Rust:
    /// the handles, and the program's build on the device.
    pub(super) async fn apply<'t>(
        self,
        ex: &mut Executor,
        cx: &mut Cx<'_>,
    ) -> Result<Then<'t>, CellError> {
        ex.link_opencl(cx).await?;
        let code = if self.source.is_empty() {
            format!("::{}::show_devices();", opencl::SUPPORT_CRATE)
        } else {
            let (code, notes) = opencl::declare(self.source, self.device, &self.options);
            for note in notes {
                cx.sink.stderr(format!("ferrocell: {note}\n").as_bytes());
            }
            code
        };
        ex.run_rust(cx.input, cx.sink, cx.irq, &code, Timing::None, None)
            .await?;
        Ok(Then::Done)
    }
}

impl Executor {
    /// Makes the support crate one of the session's crates, unless it is already.
    async fn link_opencl(&mut self, cx: &mut Cx<'_>) -> Result<(), CellError> {
        let linked = self
            .session
            .as_ref()
            .and_then(|s| s.deps())
            .is_some_and(|d| d.externs.iter().any(|e| e.name == opencl::SUPPORT_CRATE));
        if linked {
            return Ok(());
        }
        // Written where its content names it, so that a new ferrocell brings its own.
        let hash = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            for (name, text) in opencl::SUPPORT {
                h.update(name.as_bytes());
                h.update(text.as_bytes());
            }
            hex::encode(&h.finalize()[..8])
        };
        let dir = self.cache.join(format!("opencl-support-{hash}"));
        if !dir.is_dir() {
            // Written aside and renamed into place: a kernel that stops half-way,
            // or two writing at once, leave no half-written crate behind.
            let io = |e: std::io::Error| CellError::Dep(format!("{}: {e}", dir.display()));
            let scratch = tempfile::Builder::new()
                .prefix("opencl-support-")
                .tempdir_in(&self.cache)
                .map_err(io)?;
            for (name, text) in opencl::SUPPORT {
                let path = scratch.path().join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::write(&path, text).map_err(io)?;
            }
            let written = scratch.keep();
            if std::fs::rename(&written, &dir).is_err() {
                // Another kernel put its copy there first: the same files.
                let _ = std::fs::remove_dir_all(&written);
            }
        }
        let line = dir.display().to_string();
        self.add_deps(&[line.as_str()], cx.sink, cx.irq).await
    }
}
