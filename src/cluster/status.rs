//! `%cluster status` in words: the controller, the versions cells need, then a
//! row per engine, or, past [`TABLE_UP_TO`] engines, a summary that a thousand
//! engines cannot drown (`--all` still lists every row).

use super::client::{Client, Status};
use super::messages::EngineInfo;
use std::collections::BTreeMap;

/// Engines listed row by row without `--all`.
pub const TABLE_UP_TO: usize = 32;

/// The status text; `all` lists every engine whatever their number.
pub fn text(c: &Client, s: &Status, all: bool) -> String {
    let mut out = format!(
        "controller pid {} on {}, listening on {} (connection file {})\n",
        c.file.controller_pid,
        c.file.controller_host,
        c.file.ip,
        c.path.display()
    );
    if let Some(v) = &s.versions {
        out.push_str(&format!(
            "cells need ferrocell {}, {}, target {}\n",
            v.ferrocell, v.rustc, v.target
        ));
    }
    let rows = s.engines.len() + s.lost.len();
    if all || rows <= TABLE_UP_TO {
        out.push_str(&table(s.engines.iter().chain(&s.lost)));
    } else {
        out.push_str(&summary(s));
    }
    if s.engines.is_empty() && s.lost.is_empty() {
        out.push_str("(no engines)\n");
    }
    match c.launched.as_ref().and_then(|l| l.restart_events()) {
        Some(events) if events.is_empty() => {
            out.push_str("--restart: engines that end are started again (none has ended)\n")
        }
        Some(events) => {
            out.push_str("--restart: engines that end are started again:\n");
            for e in events {
                out.push_str(&format!("  {e}\n"));
            }
        }
        None => {}
    }
    out
}

/// A row per engine.
fn table<'a>(engines: impl Iterator<Item = &'a EngineInfo>) -> String {
    let mut out = format!(
        "{:>6}  {:<14} {:>8}  {:>8}  {:<6} {:>7}  {:>9}  {:>3}\n",
        "engine", "host", "pid", "worker", "state", "frames", "heartbeat", "rank"
    );
    for e in engines {
        let worker = e.worker_pid.map(|p| p.to_string()).unwrap_or("-".into());
        let mpi = e.mpi_rank.map(|r| r.to_string()).unwrap_or("-".into());
        out.push_str(&format!(
            "{:>6}  {:<14} {:>8}  {:>8}  {:<6} {:>7}  {:>7.1} s  {mpi:>3}\n",
            e.id, e.host, e.pid, worker, e.state, e.frames, e.seconds_since_heartbeat
        ));
    }
    out
}

/// Counts by state and by host, the oldest heartbeat, and the lost engines by
/// reason.
fn summary(s: &Status) -> String {
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    let mut hosts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &s.engines {
        *states.entry(e.state.as_str()).or_default() += 1;
        *hosts.entry(e.host.as_str()).or_default() += 1;
    }
    let counts = |m: &BTreeMap<&str, usize>| {
        m.iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!("{} engines: {}\n", s.engines.len(), counts(&states));
    if hosts.len() <= 8 {
        out.push_str(&format!("  on {}\n", counts(&hosts)));
    } else {
        out.push_str(&format!("  on {} hosts\n", hosts.len()));
    }
    let workers = s.engines.iter().filter(|e| e.worker_pid.is_some()).count();
    let oldest = s
        .engines
        .iter()
        .map(|e| e.seconds_since_heartbeat)
        .fold(0.0, f64::max);
    let frames: u64 = s.engines.iter().map(|e| e.frames).sum();
    out.push_str(&format!(
        "  {workers} with a worker; last heartbeat at most {oldest:.1} s ago; {frames} frames run\n"
    ));
    if let (Some(lo), Some(hi)) = (
        s.engines.iter().filter_map(|e| e.mpi_rank).min(),
        s.engines.iter().filter_map(|e| e.mpi_rank).max(),
    ) {
        out.push_str(&format!("  launcher ranks {lo} to {hi}\n"));
    }
    if !s.lost.is_empty() {
        let mut why: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for e in &s.lost {
            why.entry(e.state.as_str()).or_default().push(e.id);
        }
        out.push_str(&format!("{} engines lost:\n", s.lost.len()));
        for (state, ids) in why {
            let shown: Vec<String> = ids.iter().take(10).map(u32::to_string).collect();
            let more = if ids.len() > 10 { ", …" } else { "" };
            out.push_str(&format!(
                "  {} ({}{more}): {state}\n",
                ids.len(),
                shown.join(", ")
            ));
        }
    }
    out.push_str("(%cluster status --all lists every engine)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(id: u32, host: &str, state: &str) -> EngineInfo {
        EngineInfo {
            id,
            host: host.into(),
            pid: 100 + id,
            mpi_rank: Some(id),
            worker_pid: Some(200 + id),
            state: state.into(),
            seconds_since_heartbeat: id as f64 / 100.0,
            frames: 2,
            ferrocell: "x".into(),
            rustc: "y".into(),
            target: "z".into(),
        }
    }

    #[test]
    fn a_thousand_engines_are_summed_up() {
        let s = Status {
            engines: (0..1000)
                .map(|i| {
                    engine(
                        i,
                        if i < 600 { "a" } else { "b" },
                        if i % 10 == 0 { "busy" } else { "ready" },
                    )
                })
                .collect(),
            lost: vec![engine(1000, "a", "lost: sent no heartbeat")],
            versions: None,
        };
        let text = summary(&s);
        assert!(text.contains("1000 engines: 100 busy, 900 ready"), "{text}");
        assert!(text.contains("on 600 a, 400 b"), "{text}");
        assert!(
            text.contains("1000 with a worker; last heartbeat at most 10.0 s ago; 2000 frames"),
            "{text}"
        );
        assert!(text.contains("launcher ranks 0 to 999"), "{text}");
        assert!(
            text.contains("1 engines lost:\n  1 (1000): lost: sent no heartbeat"),
            "{text}"
        );
        assert_eq!(table(s.engines.iter()).lines().count(), 1001);
    }
}
