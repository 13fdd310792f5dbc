//! `%cluster`: starting, inspecting and stopping the engines that `%%parallel
//! cluster` runs on.

use super::super::cluster::{cluster_error, kill_lost};
use super::super::{CellError, Executor};
use super::spec::{Spec, Spelling};
use super::{Cx, Magic, Then};
use crate::cluster::client::Client;
use crate::cluster::launcher::BatchOptions;
use std::path::PathBuf;

/// How engines are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// Processes on this machine (the default).
    Local,
    Ssh,
    Mpi,
    Slurm,
    Pbs,
    Sge,
}

impl Launcher {
    /// Every launcher by its `--launcher` name.
    pub const ALL: [(&'static str, Launcher); 6] = [
        ("local", Launcher::Local),
        ("ssh", Launcher::Ssh),
        ("mpi", Launcher::Mpi),
        ("slurm", Launcher::Slurm),
        ("pbs", Launcher::Pbs),
        ("sge", Launcher::Sge),
    ];

    /// Whether it submits a batch job, which takes [`BatchOptions`].
    pub fn is_batch(self) -> bool {
        matches!(self, Launcher::Slurm | Launcher::Pbs | Launcher::Sge)
    }
}

/// A parsed `%cluster` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCmd {
    Start {
        engines: usize,
        launcher: Launcher,
        hosts: Vec<String>,
        ip: String,
        /// Start engines again when they end.
        restart: bool,
        /// What a batch launcher asks of its scheduler.
        batch: BatchOptions,
    },
    /// `--all`: every engine's row, however many there are.
    Status {
        all: bool,
    },
    Stop,
    Connect(PathBuf),
    /// `pull VAR --out NAME`: the engines' `VAR`, into the session, in rank order.
    Pull {
        var: String,
        out: String,
    },
    /// `push VAR --as NAME`: the session's `VAR`, onto every engine, as `NAME`;
    /// `scatter VAR --as NAME`: each engine's part of the `Vec` `VAR`, as `NAME`.
    Push {
        var: String,
        name: String,
        scatter: bool,
    },
}

/// Engines `%cluster start` starts without `--force`.
pub const MAX_ENGINES: usize = 4096;

/// Engine ids one `--targets` may name (a range such as `0-4294967295` is refused
/// before it is expanded).
pub const MAX_TARGETS: usize = 65_536;

const USAGE: &str =
    "%cluster start -n N [--launcher local|ssh|mpi|slurm|pbs|sge] [--hosts H1,H2] [--ip ADDRESS] [--restart] [--force] \
                     [--queue Q] [--walltime HH:MM:SS] [--account A] [--nodes K] [--pe NAME] \
                     | %cluster status [--all] | %cluster stop | %cluster connect FILE \
                     | %cluster pull VAR --out NAME | %cluster push|scatter VAR --as NAME";

/// Reads what follows `%cluster`.
pub fn parse(args: &[&str]) -> Result<ClusterCmd, String> {
    match args {
        ["status"] => Ok(ClusterCmd::Status { all: false }),
        ["status", "--all"] => Ok(ClusterCmd::Status { all: true }),
        ["stop"] => Ok(ClusterCmd::Stop),
        ["connect", file] => Ok(ClusterCmd::Connect(PathBuf::from(file))),
        ["pull", var, "--out", out] => Ok(ClusterCmd::Pull {
            var: name(var)?,
            out: name(out)?,
        }),
        ["pull", ..] => Err(
            "%cluster pull VAR --out NAME: the engines' VAR, as a Vec in rank order, becomes the session's NAME"
                .into(),
        ),
        ["push", var] => Err(format!(
            "--persist cells are sent the session's `{var}` when they use it; \
             %cluster push {var} --as NAME gives each engine a copy of its own, as NAME"
        )),
        [cmd @ ("push" | "scatter"), var, "--as", to] => Ok(ClusterCmd::Push {
            var: name(var)?,
            name: name(to)?,
            scatter: *cmd == "scatter",
        }),
        ["scatter", ..] => Err(
            "%cluster scatter VAR --as NAME: each engine's part of the session's Vec VAR becomes its NAME"
                .into(),
        ),
        ["push", ..] => Err(
            "%cluster push VAR --as NAME: the session's VAR becomes NAME on every engine".into(),
        ),
        ["start", rest @ ..] => {
            let mut engines = None;
            let mut launcher = Launcher::Local;
            let mut hosts = Vec::new();
            let mut ip = "127.0.0.1".to_string();
            let mut restart = false;
            let mut force = false;
            let mut batch = BatchOptions::default();
            let mut it = rest.iter();
            while let Some(flag) = it.next() {
                let mut value = || {
                    it.next()
                        .copied()
                        .ok_or_else(|| format!("{flag} needs a value: {USAGE}"))
                };
                match *flag {
                    "-n" | "--engines" => {
                        let v = value()?;
                        engines =
                            Some(v.parse().ok().filter(|n: &usize| *n > 0).ok_or_else(|| {
                                format!("-n needs a positive number of engines, not `{v}`")
                            })?);
                    }
                    "--launcher" => {
                        let name = value()?;
                        launcher = Launcher::ALL
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, l)| *l)
                            .ok_or_else(|| {
                                let names: Vec<&str> =
                                    Launcher::ALL.iter().map(|(n, _)| *n).collect();
                                format!("unknown launcher `{name}`: {}", names.join(", "))
                            })?;
                    }
                    "--hosts" => {
                        hosts = value()?.split(',').map(String::from).collect();
                    }
                    "--ip" => ip = value()?.to_string(),
                    "--restart" => restart = true,
                    "--force" => force = true,
                    other if BatchOptions::FLAGS.contains(&other) => {
                        batch.set(other, value()?)?;
                    }
                    other => return Err(format!("unknown option `{other}`: {USAGE}")),
                }
            }
            let engines = match engines {
                Some(n) => n,
                None => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            };
            if engines > MAX_ENGINES && !force {
                return Err(format!(
                    "{engines} engines is more than {MAX_ENGINES}; add --force if you mean it"
                ));
            }
            if !batch.is_empty() && !launcher.is_batch() {
                return Err(
                    "--queue, --walltime and --account are for the launchers that submit a \
                     batch job (slurm, pbs, sge); --nodes for slurm and pbs; --pe for sge"
                        .into(),
                );
            }
            if batch.nodes.is_some_and(|k| k > engines) {
                return Err(format!(
                    "--nodes asks for more machines than there are engines ({engines})"
                ));
            }
            if batch.pe.is_some() && launcher != Launcher::Sge {
                return Err(
                    "--pe names a Grid Engine parallel environment (--launcher sge)".into(),
                );
            }
            if batch.nodes.is_some() && launcher == Launcher::Sge {
                return Err(
                    "--nodes: Grid Engine places the engines itself (array tasks, or the slots of --pe)"
                        .into(),
                );
            }
            Ok(ClusterCmd::Start {
                engines,
                launcher,
                hosts,
                ip,
                restart,
                batch,
            })
        }
        _ => Err(USAGE.to_string()),
    }
}

/// A variable name from the line, or why it is none.
fn name(word: &str) -> Result<String, String> {
    if super::parallel::is_name(word) {
        Ok(word.to_string())
    } else {
        Err(format!("`{word}` is not a variable name"))
    }
}

/// Reads `--targets 0,2-3` into engine ids.
pub fn parse_targets(list: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("--targets takes engine ids such as 0,2-3, not `{list}`");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                if (b - a) as usize >= MAX_TARGETS || out.len() + (b - a) as usize >= MAX_TARGETS {
                    return Err(format!(
                        "--targets names more than {MAX_TARGETS} engines (`{list}`)"
                    ));
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err("--targets needs at least one engine id".into());
    }
    out.dedup();
    Ok(out)
}

pub const SPEC: Spec = Spec {
    names: &["cluster"],
    spelling: Spelling::Line,
    usage: &[
        "%cluster start -n N [--launcher local|ssh|mpi|slurm|pbs|sge] [--hosts H1,H2] [--ip ADDRESS] [--restart] [--force]",
        "  batch jobs: [--queue Q] [--walltime HH:MM:SS] [--account A] [--nodes K] [--pe NAME]",
        "%cluster status [--all] (every engine's row, not a summary), %cluster stop, %cluster connect FILE",
        "%cluster pull VAR --out NAME (the engines' VAR as a Vec in rank order), %cluster push VAR --as NAME",
        "%cluster scatter VAR --as NAME (each engine's part of the Vec VAR)",
    ],
    help: &[
        "a controller and N engines for %%parallel cluster: here, as mpirun's",
        "ranks, over ssh, or as a Slurm, PBS or Grid Engine job; --restart starts ended engines again",
    ],
    read: |line| Ok(Magic::Cluster(parse(&line.args)?)),
};

impl ClusterCmd {
    /// Runs the line; the lines after it run as Rust.
    pub(super) async fn apply<'a>(
        self,
        ex: &mut Executor,
        cx: &mut Cx<'_>,
    ) -> Result<Then<'a>, CellError> {
        let sink = &mut *cx.sink;
        match self {
            ClusterCmd::Start {
                engines,
                launcher,
                hosts,
                ip,
                restart,
                batch,
            } => {
                let how = super::super::cluster::Start {
                    launcher,
                    hosts: &hosts,
                    ip: &ip,
                    batch: &batch,
                };
                ex.start_cluster(engines, how, sink).await?;
                if restart {
                    if let Some(l) = ex.cluster.as_mut().and_then(|c| c.launched.as_mut()) {
                        l.supervise();
                    }
                }
                Ok(Then::Rest)
            }
            ClusterCmd::Status { all } => {
                let c = ex.cluster.as_mut().ok_or_else(|| {
                    cluster_error("no cluster: %cluster start -n N starts one, %cluster connect FILE joins one")
                })?;
                let s = c.status().await?;
                kill_lost(c, &s);
                let text = crate::cluster::status::text(c, &s, all);
                sink.stdout(text.as_bytes());
                Ok(Then::Rest)
            }
            ClusterCmd::Stop => {
                let Some(mut c) = ex.cluster.take() else {
                    sink.stdout(b"No cluster is running.\n");
                    return Ok(Then::Rest);
                };
                ex.engine_vars.clear();
                ex.cancel_cluster_runs();
                c.stop().await?;
                sink.stdout(b"Cluster stopped.\n");
                Ok(Then::Rest)
            }
            ClusterCmd::Pull { var, out } => {
                ex.pull(&var, &out, sink, cx.irq).await?;
                Ok(Then::Rest)
            }
            ClusterCmd::Push { var, name, scatter } => {
                ex.push(&var, &name, scatter, sink, cx.irq).await?;
                Ok(Then::Rest)
            }
            ClusterCmd::Connect(path) => {
                if ex.cluster.is_some() {
                    return Err(cluster_error(
                        "a cluster is already connected; %cluster stop it first",
                    ));
                }
                let mut c = Client::connect(&path).await?;
                let s = c.status().await?;
                let text = crate::cluster::status::text(&c, &s, false);
                sink.stdout(text.as_bytes());
                ex.cluster = Some(c);
                Ok(Then::Rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_subcommands() {
        assert_eq!(parse(&["status"]), Ok(ClusterCmd::Status { all: false }));
        assert_eq!(
            parse(&["pull", "x", "--out", "xs"]),
            Ok(ClusterCmd::Pull {
                var: "x".into(),
                out: "xs".into()
            })
        );
        assert!(parse(&["pull", "x"]).is_err());
        assert_eq!(
            parse(&["push", "d", "--as", "e"]),
            Ok(ClusterCmd::Push {
                var: "d".into(),
                name: "e".into(),
                scatter: false
            })
        );
        assert_eq!(
            parse(&["scatter", "d", "--as", "e"]),
            Ok(ClusterCmd::Push {
                var: "d".into(),
                name: "e".into(),
                scatter: true
            })
        );
        assert!(parse(&["scatter", "d"]).is_err());
        assert!(parse(&["push", "1d"]).is_err());
        assert_eq!(
            parse(&["status", "--all"]),
            Ok(ClusterCmd::Status { all: true })
        );
        assert_eq!(
            parse(&["start", "-n", "3", "--ip", "10.0.0.1"]),
            Ok(ClusterCmd::Start {
                engines: 3,
                launcher: Launcher::Local,
                hosts: vec![],
                ip: "10.0.0.1".into(),
                restart: false,
                batch: BatchOptions::default(),
            })
        );
        assert!(matches!(
            parse(&["start", "--launcher", "slurm", "--restart"]),
            Ok(ClusterCmd::Start {
                launcher: Launcher::Slurm,
                restart: true,
                ..
            })
        ));
        assert!(parse(&["start", "-n", "0"]).is_err());
        assert!(parse(&["start", "-n", "5000"])
            .unwrap_err()
            .contains("--force"));
        assert!(parse(&["start", "-n", "5000", "--force"]).is_ok());
        assert!(parse_targets("0-4294967295")
            .unwrap_err()
            .contains("more than"));
        assert!(parse(&["start", "--launcher", "lsf"]).is_err());
        assert!(matches!(
            parse(&[
                "start",
                "--launcher",
                "pbs",
                "--queue",
                "q1",
                "--nodes",
                "2"
            ]),
            Ok(ClusterCmd::Start {
                launcher: Launcher::Pbs,
                batch: BatchOptions { nodes: Some(2), .. },
                ..
            })
        ));
        assert!(parse(&["start", "--queue", "q1"])
            .unwrap_err()
            .contains("batch job"));
        assert!(parse(&["start", "--launcher", "pbs", "--walltime", "1;rm"]).is_err());
        assert!(parse(&["start", "--launcher", "sge", "--pe", "smp"]).is_ok());
        assert!(parse(&["start", "--launcher", "pbs", "--pe", "smp"]).is_err());
        assert!(parse(&["start", "--launcher", "sge", "--nodes", "2"]).is_err());
        assert!(parse(&["start", "-n", "2", "--launcher", "pbs", "--nodes", "3"]).is_err());
        assert!(parse(&["frob"]).is_err());
        assert_eq!(parse_targets("0,2-4"), Ok(vec![0, 2, 3, 4]));
        assert!(parse_targets("x").is_err());
    }
}
