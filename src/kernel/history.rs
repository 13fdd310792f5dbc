//! Execution history, kept across kernel sessions in a JSON-lines file, so that
//! `jupyter console` can recall earlier sessions' input.

use crate::protocol::messages::HistoryRequest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    session: i64,
    line: u64,
    input: String,
    #[serde(default)]
    output: Option<String>,
}

/// All sessions' history; this kernel's entries form the newest session.
pub struct History {
    file: Option<PathBuf>,
    pub session: i64,
    entries: Vec<Entry>,
}

impl History {
    /// Loads the history file (a missing or unreadable one is an empty history).
    pub fn open(file: Option<PathBuf>) -> Self {
        let entries: Vec<Entry> = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default();
        let session = entries.iter().map(|e| e.session).max().unwrap_or(0) + 1;
        History {
            file,
            session,
            entries,
        }
    }

    /// Records one executed cell.
    pub fn record(&mut self, line: u64, input: &str, output: Option<String>) {
        let e = Entry {
            session: self.session,
            line,
            input: input.to_string(),
            output,
        };
        if let Some(f) = &self.file {
            // The history holds the user's code: private (0700 folder, 0600 file).
            let appended = f
                .parent()
                .map(crate::paths::private_dir)
                .unwrap_or(Ok(()))
                .and_then(|_| {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o600)
                        .open(f)
                })
                .and_then(|mut file| {
                    writeln!(file, "{}", serde_json::to_string(&e).expect("serializes"))
                });
            if let Err(err) = appended {
                tracing::warn!("cannot write history to {}: {err}", f.display());
            }
        }
        self.entries.push(e);
    }

    fn row(e: &Entry, output: bool) -> Value {
        if output {
            json!([e.session, e.line, [e.input, e.output]])
        } else {
            json!([e.session, e.line, e.input])
        }
    }

    /// Answers a history request (tail, range or search).
    pub fn query(&self, r: &HistoryRequest) -> Vec<Value> {
        let picked: Vec<&Entry> = match r.hist_access_type.as_str() {
            "tail" => {
                let n = r.n.unwrap_or(10);
                let skip = self.entries.len().saturating_sub(n);
                self.entries[skip..].iter().collect()
            }
            "range" => {
                // Session numbers at or below 0 count back from this session.
                let session = match r.session.unwrap_or(0) {
                    s if s <= 0 => self.session + s,
                    s => s,
                };
                let start = r.start.unwrap_or(0).max(0) as u64;
                let stop = r.stop.map(|s| s as u64);
                self.entries
                    .iter()
                    .filter(|e| {
                        e.session == session && e.line >= start && stop.is_none_or(|s| e.line < s)
                    })
                    .collect()
            }
            "search" => {
                let pattern = r.pattern.as_deref().unwrap_or("*");
                let Ok(glob) = glob::Pattern::new(pattern) else {
                    return vec![];
                };
                let mut hits: Vec<&Entry> = self
                    .entries
                    .iter()
                    .filter(|e| glob.matches(&e.input))
                    .collect();
                if r.unique {
                    let mut seen = std::collections::HashSet::new();
                    let mut unique: Vec<&Entry> = hits
                        .into_iter()
                        .rev()
                        .filter(|e| seen.insert(e.input.as_str()))
                        .collect();
                    unique.reverse();
                    hits = unique;
                }
                if let Some(n) = r.n.filter(|n| *n > 0) {
                    let skip = hits.len().saturating_sub(n);
                    hits.drain(..skip);
                }
                hits
            }
            _ => vec![],
        };
        picked.into_iter().map(|e| Self::row(e, r.output)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: &str) -> HistoryRequest {
        serde_json::from_value(json!({"hist_access_type": kind})).unwrap()
    }

    #[test]
    fn tail_range_search_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.jsonl");
        let mut h = History::open(Some(file.clone()));
        assert_eq!(h.session, 1);
        h.record(1, "1 + 1", Some("2".into()));
        h.record(2, "10 + 1", None);
        h.record(3, "1 + 1", None);
        let mut tail = req("tail");
        tail.n = Some(2);
        assert_eq!(
            h.query(&tail),
            vec![json!([1, 2, "10 + 1"]), json!([1, 3, "1 + 1"])]
        );
        let mut range = req("range");
        range.start = Some(1);
        range.stop = Some(2);
        range.output = true;
        assert_eq!(h.query(&range), vec![json!([1, 1, ["1 + 1", "2"]])]);
        let mut search = req("search");
        search.pattern = Some("1 ?*".into());
        assert_eq!(h.query(&search).len(), 2);
        search.unique = true;
        assert_eq!(h.query(&search).len(), 1);
        let again = History::open(Some(file));
        assert_eq!(again.session, 2);
        assert_eq!(again.entries.len(), 3);
    }
}
