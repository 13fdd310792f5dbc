//! Running rustc on one generated crate and reading its JSON diagnostics.

use serde::Deserialize;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// A compile that takes longer than this is stopped (rustc hung or the cell is
/// pathological); the error says so.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(600);

/// One rustc diagnostic (`--error-format=json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Diagnostic {
    pub message: String,
    #[serde(default)]
    pub code: Option<DiagnosticCode>,
    pub level: String,
    #[serde(default)]
    pub spans: Vec<DiagnosticSpan>,
    #[serde(default)]
    pub children: Vec<Diagnostic>,
    #[serde(default)]
    pub rendered: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DiagnosticCode {
    pub code: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DiagnosticSpan {
    pub file_name: String,
    pub line_start: usize,
    pub line_end: usize,
    pub column_start: usize,
    pub column_end: usize,
    pub is_primary: bool,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub text: Vec<SpanText>,
    /// Set when the span lies inside a macro's expansion: where the macro was called.
    #[serde(default)]
    pub expansion: Option<Box<SpanExpansion>>,
}

/// The invocation a span inside a macro expansion came from.
#[derive(Debug, Clone, Deserialize)]
pub struct SpanExpansion {
    pub span: DiagnosticSpan,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpanText {
    pub text: String,
    pub highlight_start: usize,
    pub highlight_end: usize,
}

/// rustc's explanation of an error code (`rustc --explain E0308`), or why there is
/// none (an unknown code, a rustc that cannot run).
pub async fn explain(rustc: &Path, code: &str) -> Result<String, String> {
    let out = tokio::process::Command::new(rustc)
        .args(["--explain", code])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", rustc.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How a rustc run ended, when it did not produce the library.
#[derive(Debug)]
pub enum RustcFailure {
    /// rustc reported errors.
    Errors(Vec<Diagnostic>),
    /// rustc failed without a diagnostic we could read (crash, killed, garbage).
    Crashed(String),
    /// rustc could not be started.
    Spawn(std::io::Error),
    TimedOut,
}

/// Runs rustc with `args`. Dropping the future kills rustc, which is how an
/// interrupt stops a compile.
pub async fn run(rustc: &Path, args: Vec<OsString>) -> Result<(), RustcFailure> {
    run_with_env(rustc, args, &[]).await
}

/// [`run`] with extra environment variables.
pub async fn run_with_env(
    rustc: &Path,
    args: Vec<OsString>,
    env: &[(&str, &str)],
) -> Result<(), RustcFailure> {
    let child = tokio::process::Command::new(rustc)
        .args(&args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(RustcFailure::Spawn)?;
    let out = match tokio::time::timeout(COMPILE_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.map_err(RustcFailure::Spawn)?,
        Err(_) => return Err(RustcFailure::TimedOut),
    };
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<Diagnostic> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Diagnostic>(l).ok())
        .filter(|d| d.level == "error" || d.level.starts_with("error:"))
        .filter(|d| !d.message.starts_with("aborting due to"))
        .collect();
    if errors.is_empty() {
        let raw: String = stderr
            .lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(RustcFailure::Crashed(format!(
            "rustc exited with {} {}",
            out.status,
            if raw.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", raw.trim())
            }
        )));
    }
    Err(RustcFailure::Errors(errors))
}
