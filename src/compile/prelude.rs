//! Building the `ferrocell` prelude library and the runner executable.
//!
//! Both are built once per toolchain and prelude version with the same rustc as the
//! cells, so runner and cells share one libstd; the result is cached on disk.

use super::edition::Edition;
use super::rustc::{self, RustcFailure};
use super::toolchain::Toolchain;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The prelude's source files, as embedded in the kernel binary.
const SOURCES: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../prelude/src/lib.rs")),
    ("channel.rs", include_str!("../../prelude/src/channel.rs")),
    ("tags.rs", include_str!("../../prelude/src/tags.rs")),
    ("display.rs", include_str!("../../prelude/src/display.rs")),
    ("input.rs", include_str!("../../prelude/src/input.rs")),
    ("json.rs", include_str!("../../prelude/src/json.rs")),
    ("snapshot.rs", include_str!("../../prelude/src/snapshot.rs")),
    ("differ.rs", include_str!("../../prelude/src/differ.rs")),
    ("__async.rs", include_str!("../../prelude/src/__async.rs")),
    (
        "__parallel.rs",
        include_str!("../../prelude/src/__parallel.rs"),
    ),
    (
        "__processes.rs",
        include_str!("../../prelude/src/__processes.rs"),
    ),
    ("__runner.rs", include_str!("../../prelude/src/__runner.rs")),
    (
        "transport.rs",
        include_str!("../../prelude/src/transport.rs"),
    ),
    ("worker.rs", include_str!("../../prelude/src/worker.rs")),
    ("steal.rs", include_str!("../../prelude/src/steal.rs")),
    ("__native.rs", include_str!("../../prelude/src/__native.rs")),
    ("process.rs", include_str!("../../prelude/src/process.rs")),
    ("store.rs", include_str!("../../prelude/src/store.rs")),
    (
        "rank_output.rs",
        include_str!("../../prelude/src/rank_output.rs"),
    ),
    ("lanes.rs", include_str!("../../prelude/src/lanes.rs")),
    ("table.rs", include_str!("../../prelude/src/table.rs")),
    ("scaling.rs", include_str!("../../prelude/src/scaling.rs")),
    ("pool.rs", include_str!("../../prelude/src/pool.rs")),
    (
        "coordinator.rs",
        include_str!("../../prelude/src/coordinator.rs"),
    ),
    ("__value.rs", include_str!("../../prelude/src/__value.rs")),
    ("__timing.rs", include_str!("../../prelude/src/__timing.rs")),
    ("__vars.rs", include_str!("../../prelude/src/__vars.rs")),
];
const RUNNER: &str = include_str!("../../prelude/runner.rs");

/// A built prelude: the library cells link and the runner that loads them.
#[derive(Debug, Clone)]
pub struct Prelude {
    pub dir: PathBuf,
    pub lib: PathBuf,
    pub runner: PathBuf,
    /// Changes whenever the prelude's source changes; part of every cell's cache key.
    pub id: String,
}

/// Why the prelude could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PreludeError {
    #[error("cannot write the prelude into {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("building the ferrocell prelude failed: {0}")]
    Build(String),
}

fn source_id(toolchain: &Toolchain) -> String {
    let mut h = Sha256::new();
    h.update(toolchain.id.as_bytes());
    for (name, text) in SOURCES {
        h.update(name.as_bytes());
        h.update(text.as_bytes());
    }
    h.update(RUNNER.as_bytes());
    h.update(Edition::DEFAULT.as_str().as_bytes());
    hex::encode(&h.finalize()[..8])
}

fn failure(f: RustcFailure) -> PreludeError {
    match f {
        RustcFailure::Errors(d) => PreludeError::Build(
            d.iter()
                .map(|d| d.rendered.clone().unwrap_or_else(|| d.message.clone()))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        RustcFailure::Crashed(s) => PreludeError::Build(s),
        RustcFailure::Spawn(e) => PreludeError::Build(e.to_string()),
        RustcFailure::TimedOut => PreludeError::Build("rustc timed out".into()),
    }
}

/// The rustc flags every dynamically linked piece (prelude, runner, cells) shares;
/// each adds its edition.
pub fn common_flags(toolchain: &Toolchain, rpath: &[&Path]) -> Vec<OsString> {
    let rpath: Vec<String> = rpath
        .iter()
        .map(|p| p.display().to_string())
        .chain([toolchain.target_libdir.display().to_string()])
        .collect();
    [
        "-C".into(),
        "prefer-dynamic".into(),
        "-C".into(),
        "debuginfo=0".into(),
        "--error-format=json".into(),
        "-C".into(),
        format!("link-arg=-Wl,-rpath,{}", rpath.join(":")),
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// Takes the exclusive lock on `path` (created if need be), waiting on a blocking
/// thread for whoever holds it; the lock goes with the file.
async fn build_lock(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    tokio::task::spawn_blocking(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this closure owns; no memory is touched.
        if unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Returns the built prelude for this toolchain, building it first if needed.
pub async fn ensure(toolchain: &Toolchain, cache: &Path) -> Result<Prelude, PreludeError> {
    let id = source_id(toolchain);
    let root = cache.join(&toolchain.id);
    let dir = root.join(format!("prelude-{id}"));
    let prelude = Prelude {
        lib: dir.join("libferrocell.so"),
        runner: dir.join("ferrocell-runner"),
        dir: dir.clone(),
        id,
    };
    if prelude.runner.is_file() && prelude.lib.is_file() {
        return Ok(prelude);
    }
    let io = |source| PreludeError::Io {
        dir: root.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&root).map_err(io)?;
    // One build at a time per prelude: a thousand engines starting together on a
    // machine would otherwise each compile it. Those that waited find it built.
    // A file system without locks (an NFS home without lockd) builds unlocked:
    // the rename into place below keeps that safe, only not economical.
    let _lock = match build_lock(&root.join(format!("prelude-{}.lock", prelude.id))).await {
        Ok(lock) => Some(lock),
        Err(e) => {
            tracing::warn!("building the prelude without a lock: {e}");
            None
        }
    };
    if prelude.runner.is_file() && prelude.lib.is_file() {
        return Ok(prelude);
    }
    // Build in a private directory and rename it into place, so that a kernel that
    // dies half-way, or two kernels building at once, never leave a broken prelude.
    let tmp = tempfile::Builder::new()
        .prefix("building-prelude-")
        .tempdir_in(&root)
        .map_err(io)?;
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).map_err(io)?;
    for (name, text) in SOURCES {
        std::fs::write(src.join(name), text).map_err(io)?;
    }
    std::fs::write(tmp.path().join("runner.rs"), RUNNER).map_err(io)?;
    let lib = tmp.path().join("libferrocell.so");
    let mut args = common_flags(toolchain, &[&dir]);
    args.push(Edition::DEFAULT.flag().into());
    args.extend(
        [
            "--crate-name",
            "ferrocell",
            "--crate-type",
            "dylib",
            "-C",
            "opt-level=2",
            "-C",
        ]
        .map(OsString::from),
    );
    args.push(format!("metadata=ferrocell-{}", prelude.id).into());
    args.push("-o".into());
    args.push(lib.clone().into());
    args.push(src.join("lib.rs").into());
    let build = async {
        rustc::run(&toolchain.rustc, args).await.map_err(failure)?;
        let mut args = common_flags(toolchain, &[&dir]);
        args.push(Edition::DEFAULT.flag().into());
        args.extend(
            [
                "--crate-type",
                "bin",
                "-C",
                "opt-level=2",
                "-C",
                "link-arg=-Wl,--export-dynamic-symbol=write",
                "-C",
                "link-arg=-Wl,--export-dynamic-symbol=writev",
                "-L",
            ]
            .map(OsString::from),
        );
        args.push(tmp.path().into());
        args.push("--extern".into());
        args.push(format!("ferrocell={}", lib.display()).into());
        args.push("-o".into());
        args.push(tmp.path().join("ferrocell-runner").into());
        args.push(tmp.path().join("runner.rs").into());
        rustc::run(&toolchain.rustc, args).await.map_err(failure)
    };
    build.await?;
    let built = tmp.keep();
    if std::fs::rename(&built, &dir).is_err() {
        // Another kernel finished first; use its copy.
        let _ = std::fs::remove_dir_all(&built);
    }
    if !prelude.runner.is_file() {
        return Err(PreludeError::Build(format!(
            "the runner is missing from {}",
            dir.display()
        )));
    }
    Ok(prelude)
}

/// The prelude's functions and types, with their one-line docs: for inspection and
/// completion (`kernel::introspect`) and for `%help` (`kernel::execute::magics`). Here, beside the
/// prelude's sources, so that both take it from the prelude rather than from each other.
pub const DOCS: &[(&str, &str, &str)] = &[
    (
        "display_html",
        "fn display_html(html: impl AsRef<str>) -> DisplayId",
        "Shows HTML as rich output (display_data, text/html).",
    ),
    (
        "display_markdown",
        "fn display_markdown(markdown: impl AsRef<str>) -> DisplayId",
        "Shows Markdown (text/markdown).",
    ),
    (
        "display_svg",
        "fn display_svg(svg: impl AsRef<str>) -> DisplayId",
        "Shows an SVG image (image/svg+xml).",
    ),
    (
        "display_png",
        "fn display_png(png: impl AsRef<[u8]>) -> DisplayId",
        "Shows a PNG image from its bytes (image/png).",
    ),
    (
        "display_json",
        "fn display_json(json_text: impl AsRef<str>) -> DisplayId",
        "Shows JSON given as JSON text (application/json).",
    ),
    (
        "display_text",
        "fn display_text(text: impl AsRef<str>) -> DisplayId",
        "Shows plain text as a display rather than as stdout.",
    ),
    (
        "display_mime",
        "fn display_mime(mime: &str, data: impl AsRef<str>) -> DisplayId",
        "Shows data under any MIME type (binary types as base64).",
    ),
    (
        "update_display",
        "fn update_display(id: &DisplayId, mime: &str, data: impl AsRef<str>)",
        "Replaces the content of an earlier display in place.",
    ),
    (
        "clear_output",
        "fn clear_output(wait: bool)",
        "Clears the cell's output; with wait, when the next output arrives.",
    ),
    (
        "input",
        "fn input(prompt: &str) -> String",
        "Asks the notebook user for a line of text.",
    ),
    (
        "password",
        "fn password(prompt: &str) -> String",
        "Like input, but what is typed stays hidden.",
    ),
    (
        "interrupted",
        "fn interrupted() -> bool",
        "True once the user asked to interrupt the running cell.",
    ),
    (
        "chunks",
        "fn chunks(range: Range<u64>) -> Chunks",
        "In a %%parallel body: this rank's pieces of the range, taken as it needs them (work stealing; dealt round-robin on processes and engines).",
    ),
    (
        "parallel_for",
        "fn parallel_for(range: Range<u64>, f: impl Fn(u64) + Sync)",
        "Runs f(i) for each i on every core, pieces taken as needed (Numba's prange); in a %%parallel body, this rank's share.",
    ),
    (
        "DisplayId",
        "struct DisplayId(pub String)",
        "Names a display so that update_display can replace it.",
    ),
];
