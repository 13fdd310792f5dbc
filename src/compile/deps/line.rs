//! A `:dep` line in evcxr's syntax: a crate name, a version, a table of cargo's
//! dependency keys, or the path of a local crate.

use super::DepError;
use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
