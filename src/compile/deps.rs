//! Crates for cells: `:dep` lines, the cargo project that builds them, and the record
//! of what it built.
//!
//! cargo runs only here, once per set of dependencies: the set becomes a small
//! package under the cache whose `[dependencies]` are the session's `:dep` lines plus
//! serde and bincode (which the kernel needs for variable snapshots). All sets share
//! one target directory, so a crate is compiled once per toolchain and features, and
//! a set that was built before is taken from its record without running cargo at all
//! (a restarted kernel, or a machine that is offline).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::toolchain::Toolchain;

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

/// One `:dep` line: the name cells use and cargo's specification of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DepLine {
    pub name: String,
    pub spec: toml::Value,
}

/// Parses what follows `:dep` (evcxr's syntax): `name`, `name = "1.0"`,
/// `name = { version = "1", features = ["x"], package = "real-name", path = "../p" }`,
/// or the path of a local crate (`:dep ../mycrate`), named by its Cargo.toml; a
/// relative path is taken from `cwd`.
pub fn parse_line(text: &str, cwd: &Path) -> Result<DepLine, DepError> {
    let text = text.trim();
    let bad = |why: String| DepError::Syntax(format!(":dep {text}: {why}"));
    if text.is_empty() {
        return Err(bad(
            "name a crate, as in `:dep regex = \"1\"` or `:dep serde = { version = \"1\", features = [\"derive\"] }`".into(),
        ));
    }
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if text.starts_with('/') || text.starts_with('.') {
        let dir = cwd.join(text);
        let manifest = dir.join("Cargo.toml");
        let read = std::fs::read_to_string(&manifest)
            .map_err(|e| bad(format!("cannot read {}: {e}", manifest.display())))?;
        let doc: toml::Table = toml::from_str(&read)
            .map_err(|e| bad(format!("{}: {}", manifest.display(), e.message())))?;
        let name = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| bad(format!("{} names no package", manifest.display())))?;
        let mut spec = toml::Table::new();
        spec.insert("path".into(), dir.display().to_string().into());
        return Ok(DepLine {
            name: name.to_string(),
            spec: toml::Value::Table(spec),
        });
    }
    if valid_name(text) {
        return Ok(DepLine {
            name: text.to_string(),
            spec: toml::Value::String("*".into()),
        });
    }
    let table: toml::Table = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
    let mut entries = table.into_iter();
    let (name, spec) = match (entries.next(), entries.next()) {
        (Some(e), None) => e,
        _ => return Err(bad("one crate per line".into())),
    };
    if !valid_name(&name) {
        return Err(bad(format!("`{name}` is not a crate name")));
    }
    match &spec {
        toml::Value::String(_) => {}
        toml::Value::Table(t) => {
            for key in t.keys() {
                const KNOWN: &[&str] = &[
                    "version",
                    "features",
                    "default-features",
                    "default_features",
                    "package",
                    "path",
                    "git",
                    "branch",
                    "tag",
                    "rev",
                    "registry",
                ];
                if !KNOWN.contains(&key.as_str()) {
                    return Err(bad(format!("`{key}` is not a dependency key cargo knows")));
                }
            }
        }
        _ => return Err(bad("give a version string or a table".into())),
    }
    Ok(DepLine { name, spec })
}

/// A dependency's line (version `"1"` if the user gave none) with `features` added.
fn with_features(spec: Option<&toml::Value>, features: &[&str]) -> toml::Table {
    let mut table = match spec {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(toml::Value::String(v)) => {
            let mut t = toml::Table::new();
            t.insert("version".into(), toml::Value::String(v.clone()));
            t
        }
        _ => {
            let mut t = toml::Table::new();
            t.insert("version".into(), toml::Value::String("1".into()));
            t
        }
    };
    let mut all: Vec<toml::Value> = match table.get("features") {
        Some(toml::Value::Array(a)) => a.clone(),
        _ => vec![],
    };
    for f in features {
        if !all.iter().any(|v| v.as_str() == Some(f)) {
            all.push(toml::Value::String(f.to_string()));
        }
    }
    table.insert("features".into(), toml::Value::Array(all));
    table
}

/// The session's dependencies, by the name cells use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DepSet {
    deps: BTreeMap<String, toml::Value>,
}

impl DepSet {
    /// Adds (or replaces) a dependency. A relative `path` is taken from `cwd`, the
    /// notebook's directory.
    pub fn add(&mut self, mut line: DepLine, cwd: &Path) {
        if let toml::Value::Table(t) = &mut line.spec {
            if let Some(toml::Value::String(p)) = t.get_mut("path") {
                let abs = cwd.join(&*p);
                *p = abs.display().to_string();
            }
        }
        self.deps.insert(line.name, line.spec);
    }

    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    /// Whether any dependency comes from a local path (cargo must look at it each
    /// time: its sources may have changed).
    fn has_local(&self) -> bool {
        self.deps.values().any(|v| match v {
            toml::Value::Table(t) => t.contains_key("path") || t.contains_key("git"),
            _ => false,
        })
    }

    /// The Cargo.toml of the set's package.
    fn manifest(&self) -> String {
        let mut deps = toml::Table::new();
        // serde is shared with the user's crates (their derives must implement the
        // trait the snapshots use), so the user's own `serde` line is extended.
        // Not serde's "derive" feature: it makes serde (and every crate that needs
        // serde) wait for syn to build; serde_derive is a dependency of its own.
        let serde = with_features(self.deps.get("serde"), &["rc"]);
        deps.insert("serde".into(), toml::Value::Table(serde));
        if !self.deps.contains_key(DERIVE) {
            deps.insert(DERIVE.into(), toml::Value::String("1".into()));
        }
        let mut codec = toml::Table::new();
        codec.insert("package".into(), toml::Value::String("bincode".into()));
        codec.insert("version".into(), toml::Value::String("1.3".into()));
        deps.insert(SNAPSHOT_CODEC.into(), toml::Value::Table(codec));
        for (name, spec) in &self.deps {
            if name == "serde" {
                continue;
            }
            let package = spec.get("package").and_then(|p| p.as_str()).unwrap_or(name);
            let version = match spec {
                toml::Value::String(v) => Some(v.as_str()),
                _ => spec.get("version").and_then(|v| v.as_str()),
            };
            // A cell's `.await` runs on tokio's multi-thread runtime (tokio 1's
            // feature name; older tokios are left as they are).
            if package == "tokio"
                && !version.is_some_and(|v| v.trim_start_matches(['^', '=', '~']).starts_with("0."))
            {
                let tokio = with_features(Some(spec), &["rt-multi-thread"]);
                deps.insert(name.clone(), toml::Value::Table(tokio));
            } else {
                deps.insert(name.clone(), spec.clone());
            }
        }
        let mut doc = toml::Table::new();
        let mut package = toml::Table::new();
        package.insert("name".into(), "ferrocell-deps".into());
        package.insert("version".into(), "0.0.0".into());
        let edition = super::edition::Edition::DEFAULT.as_str();
        package.insert("edition".into(), edition.into());
        package.insert("publish".into(), false.into());
        doc.insert("package".into(), toml::Value::Table(package));
        let mut lib = toml::Table::new();
        lib.insert("path".into(), "lib.rs".into());
        doc.insert("lib".into(), toml::Value::Table(lib));
        doc.insert("dependencies".into(), toml::Value::Table(deps));
        let mut release = toml::Table::new();
        release.insert("debug".into(), false.into());
        let mut profile = toml::Table::new();
        profile.insert("release".into(), toml::Value::Table(release));
        doc.insert("profile".into(), toml::Value::Table(profile));
        // Its own workspace, so that a Cargo.toml above the cache is never involved.
        doc.insert("workspace".into(), toml::Value::Table(toml::Table::new()));
        toml::to_string(&doc).expect("a manifest of plain values serialises")
    }
}

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

fn locate_cargo(toolchain: &Toolchain) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERROCELL_CARGO") {
        return Some(PathBuf::from(p));
    }
    let beside = toolchain.rustc.with_file_name("cargo");
    if beside.is_file() {
        return Some(beside);
    }
    super::toolchain::find_tool("cargo")
}

/// Where dependency builds of this toolchain live.
fn root(toolchain: &Toolchain, cache: &Path) -> PathBuf {
    cache.join(&toolchain.id).join("deps")
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
async fn run_cargo(
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
async fn direct_deps(
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

    #[test]
    fn dep_lines_in_evcxr_syntax() {
        let l = parse_line("regex = \"1.10\"", Path::new("/")).unwrap();
        assert_eq!(l.name, "regex");
        assert_eq!(l.spec.as_str(), Some("1.10"));
        let l = parse_line(
            "serde = { version = \"1\", features = [\"derive\"] }",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(l.spec["features"][0].as_str(), Some("derive"));
        let l = parse_line(
            "rnd = { package = \"rand\", version = \"0.8\" }",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(l.spec["package"].as_str(), Some("rand"));
        assert_eq!(
            parse_line("itoa", Path::new("/")).unwrap().spec.as_str(),
            Some("*")
        );
        assert!(parse_line("", Path::new("/")).is_err());
        assert!(parse_line("a = 1", Path::new("/")).is_err());
        assert!(parse_line("a = \"1\"\nb = \"2\"", Path::new("/")).is_err());
        assert!(parse_line("a = { verson = \"1\" }", Path::new("/")).is_err());
        assert!(parse_line("bad name = \"1\"", Path::new("/")).is_err());
    }

    #[test]
    fn manifest_adds_serde_features_and_resolves_paths() {
        let mut set = DepSet::default();
        set.add(
            parse_line(
                "serde = { version = \"1.0.100\", features = [\"std\"] }",
                Path::new("/"),
            )
            .unwrap(),
            Path::new("/nb"),
        );
        set.add(
            parse_line("p = { path = \"../p\" }", Path::new("/")).unwrap(),
            Path::new("/nb"),
        );
        let m: toml::Table = toml::from_str(&set.manifest()).unwrap();
        let deps = m["dependencies"].as_table().unwrap();
        let features: Vec<&str> = deps["serde"]["features"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(features, vec!["std", "rc"]);
        assert_eq!(deps[DERIVE].as_str(), Some("1"));
        assert_eq!(deps["serde"]["version"].as_str(), Some("1.0.100"));
        assert_eq!(deps["p"]["path"].as_str(), Some("/nb/../p"));
        assert_eq!(deps[SNAPSHOT_CODEC]["package"].as_str(), Some("bincode"));
        assert!(set.has_local());
    }
}
