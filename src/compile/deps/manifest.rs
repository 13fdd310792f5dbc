//! The session's set of dependencies and the Cargo.toml of the package that builds
//! it: the user's lines plus serde, serde_derive and the kernel's bincode.

use super::{DepLine, DERIVE, SNAPSHOT_CODEC};
use std::collections::BTreeMap;
use std::path::Path;

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
    pub(super) fn has_local(&self) -> bool {
        self.deps.values().any(|v| match v {
            toml::Value::Table(t) => t.contains_key("path") || t.contains_key("git"),
            _ => false,
        })
    }

    /// The Cargo.toml of the set's package.
    pub(super) fn manifest(&self) -> String {
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
        let edition = crate::compile::edition::Edition::DEFAULT.as_str();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::deps::parse_line;

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
