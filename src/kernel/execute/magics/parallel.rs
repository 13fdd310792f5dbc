//! `%%parallel`: reading its line into a [`Parallel`] (the code it becomes is
//! `compile::parallel`'s), and running its body on threads, worker processes or
//! engines.

use super::super::{CellError, Executor};
use super::spec::{Spec, Spelling};
use super::{Cx, Magic, Then};
pub use crate::compile::parallel::{Backend, Parallel};
use crate::compile::Timing;

/// `%%parallel threads|processes|cluster [N] [--each EXPR] [--out NAME] [--group]`:
/// the run, and the body each worker runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelCell<'a> {
    pub run: Parallel,
    pub body: &'a str,
}

pub const SPEC: Spec = Spec {
    names: &["parallel"],
    spelling: Spelling::Cell,
    usage: &[
        "%%parallel threads|processes|cluster [N] [--each EXPR] [--out NAME] [--group] [--scaling 1,2,4]",
        "%%parallel processes|cluster [N] --noblock [--out NAME] [--each EXPR]",
        "%%parallel … --scatter VAR: in the body, VAR (a Vec) is this rank's part",
    ],
    help: &[
        "run the cell on N threads, worker processes or engines at once",
        "(rank, size in scope); cluster: [--targets 0,2-3] [--persist [--out NAME]]; --each:",
        "once per item (item in scope); --out: keep the values as a Vec;",
        "--scaling: speed-up chart with Amdahl's law fitted; --noblock: return at once,",
        "the run goes on in the background (%wait NAME binds it, %pending lists runs)",
    ],
    read: |line| {
        Ok(Magic::Parallel(ParallelCell {
            run: parse(line.after_name.trim())?,
            body: line.rest,
        }))
    },
};

impl ParallelCell<'_> {
    /// The body as one ordinary cell that runs it on the backend.
    pub(super) async fn apply<'a>(
        self,
        ex: &mut Executor,
        cx: &mut Cx<'_>,
    ) -> Result<Then<'a>, CellError> {
        let ParallelCell { run: p, body } = self;
        if body.trim().is_empty() {
            return Err(CellError::Magic(
                "%%parallel needs a body: the code each worker runs".into(),
            ));
        }
        if p.noblock {
            ex.start_background(&p, body, cx.sink, cx.irq, cx.parent)
                .await?;
            return Ok(Then::Done);
        }
        if p.persist {
            ex.run_persist(cx.input, cx.sink, cx.irq, &p, body).await?;
            return Ok(Then::Done);
        }
        let code = crate::compile::parallel::cell_code(&p, body);
        let mut claim = None;
        let args = match p.backend {
            Backend::Threads => vec![],
            Backend::Processes => ex.processes_setup(&code, cx.sink, cx.irq).await?,
            Backend::Cluster => {
                let mut args = ex.processes_setup(&code, cx.sink, cx.irq).await?;
                args.push(ex.cluster_engines(&p, cx.sink).await?);
                claim = Some(ex.claim_engines(&args, cx.sink, cx.irq).await?);
                args
            }
        };
        let ran = ex
            .run_rust(cx.input, cx.sink, cx.irq, &code, Timing::None, Some(args))
            .await;
        if let Some(lease) = claim {
            ex.release_engines(lease).await;
        }
        ran?;
        Ok(Then::Done)
    }
}

const USAGE: &str =
    "%%parallel threads|processes|cluster [N] [--each EXPR] [--out NAME] [--group] \
                     [--scaling 1,2,4] [--targets 0,2-3] [--persist] [--noblock] [--scatter VAR] [--force]";

/// Threads or worker processes per core beyond which a count is refused without
/// `--force` (a typo such as `threads 100000` would exhaust the machine).
pub const MAX_WORKERS_PER_CORE: usize = 64;

/// Reads what follows `%%parallel` on its line.
pub fn parse(args: &str) -> Result<Parallel, String> {
    let (backend, rest) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    let backend = match backend {
        "threads" => Backend::Threads,
        "processes" => Backend::Processes,
        "cluster" => Backend::Cluster,
        "" => return Err(format!("which workers? {USAGE}")),
        other => return Err(format!("unknown workers `{other}`: {USAGE}")),
    };
    let mut p = Parallel::on(backend);
    let mut force = false;
    let mut rest = rest.trim();
    if let Some(first) = rest
        .split_whitespace()
        .next()
        .filter(|w| !w.starts_with("--"))
    {
        let n: usize = first.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("the number of workers must be a positive number, not `{first}`")
        })?;
        p.workers = Some(n);
        rest = rest[first.len()..].trim_start();
    }
    // Flags; `--each` takes everything up to the next flag (an expression may hold
    // spaces).
    while !rest.is_empty() {
        let (flag, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let after = after.trim_start();
        let next_flag = |s: &str| {
            [
                "--out",
                "--group",
                "--each",
                "--scaling",
                "--targets",
                "--persist",
                "--noblock",
                "--scatter",
                "--force",
            ]
            .iter()
            .filter_map(|f| s.find(&format!(" {f}")))
            .min()
            .unwrap_or(s.len())
        };
        match flag {
            "--group" => {
                p.group = true;
                rest = after;
            }
            "--force" => {
                force = true;
                rest = after;
            }
            "--noblock" => {
                p.noblock = true;
                rest = after;
            }
            "--scaling" => {
                let (list, after) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
                let counts: Option<Vec<usize>> = list
                    .split(',')
                    .map(|n| n.trim().parse().ok().filter(|n: &usize| *n > 0))
                    .collect();
                match counts {
                    Some(c) if !c.is_empty() => p.scaling = Some(c),
                    _ => {
                        return Err(format!(
                            "--scaling needs worker counts, as in --scaling 1,2,4, not `{list}`"
                        ))
                    }
                }
                rest = after.trim_start();
            }
            "--persist" if backend == Backend::Cluster => {
                p.persist = true;
                rest = after;
            }
            "--targets" if backend == Backend::Cluster => {
                let (list, after) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
                p.targets = Some(super::cluster::parse_targets(list)?);
                rest = after.trim_start();
            }
            "--out" | "--scatter" => {
                let (name, after) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
                if !is_name(name) {
                    return Err(format!("{flag} needs a variable name, not `{name}`"));
                }
                match flag {
                    "--out" => p.out = Some(name.to_string()),
                    _ => p.scatter = Some(name.to_string()),
                }
                rest = after.trim_start();
            }
            "--each" => {
                let end = next_flag(after);
                let expr = after[..end].trim();
                if expr.is_empty() {
                    return Err("--each needs an expression: the items, as in --each 0..100".into());
                }
                p.each = Some(expr.to_string());
                rest = after[end..].trim_start();
            }
            other => return Err(format!("unknown option `{other}`: {USAGE}")),
        }
    }
    if backend != Backend::Cluster && !force {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let bound = cores * MAX_WORKERS_PER_CORE;
        let asked = p
            .workers
            .into_iter()
            .chain(p.scaling.iter().flatten().copied())
            .max()
            .unwrap_or(0);
        if asked > bound {
            return Err(format!(
                "{asked} workers is more than {MAX_WORKERS_PER_CORE} per core ({bound} on this machine's {cores} cores); add --force if you mean it"
            ));
        }
    }
    if p.noblock && backend == Backend::Threads {
        return Err(
            "--noblock runs the cell in a process of its own while the notebook goes on; \
             threads share the session's variables in place, so they cannot: use processes"
                .into(),
        );
    }
    if p.noblock && (p.scaling.is_some() || p.persist) {
        return Err("--noblock does not combine with --scaling or --persist".into());
    }
    if p.persist && (p.each.is_some() || p.scaling.is_some()) {
        return Err(
            "--persist runs the body once on each engine and keeps what it binds there; \
             it does not combine with --each or --scaling"
                .into(),
        );
    }
    if p.scatter.is_some() && (p.each.is_some() || p.persist) {
        return Err(
            "--scatter gives one run each rank's part of a Vec; --each hands out items already, \
             and --persist does not take it: `%cluster scatter VAR --as NAME` keeps each \
             engine's part there, as NAME"
                .into(),
        );
    }
    Ok(p)
}

/// Whether `name` can name a variable.
pub fn is_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_workers_and_flags() {
        let p = parse("threads 4 --each (0..10).map(|x| x * 2) --out squares --group").unwrap();
        assert_eq!(p.workers, Some(4));
        assert_eq!(p.each.as_deref(), Some("(0..10).map(|x| x * 2)"));
        assert_eq!(p.out.as_deref(), Some("squares"));
        assert!(p.group);
        let p = parse("threads").unwrap();
        assert_eq!(
            (p.workers, p.each, p.out, p.group),
            (None, None, None, false)
        );
        assert!(parse("threads 0").is_err());
        assert!(parse("threads --out 3x").is_err());
        assert!(parse("threads --each").is_err());
        assert!(parse("threads --frob").is_err());
        assert_eq!(parse("processes 2").unwrap().backend, Backend::Processes);
        assert_eq!(
            parse("cluster --targets 0,2-3").unwrap().targets,
            Some(vec![0, 2, 3])
        );
        assert!(parse("threads --targets 1").is_err());
        let e = parse("threads 100000000").unwrap_err();
        assert!(e.contains("--force"), "{e}");
        assert_eq!(
            parse("threads 100000000 --force").unwrap().workers,
            Some(100000000)
        );
        assert!(parse("processes 2 --scaling 1,99999999").is_err());
        assert_eq!(
            parse("threads --scaling 1,2,4").unwrap().scaling,
            Some(vec![1, 2, 4])
        );
        assert!(parse("threads --scaling 1,x").is_err());
        assert!(parse("").is_err());
        let p = parse("processes 2 --noblock --out r").unwrap();
        assert!(p.noblock && p.out.as_deref() == Some("r"));
        let p = parse("cluster --each 0..4 --noblock").unwrap();
        assert_eq!((p.each.as_deref(), p.noblock), (Some("0..4"), true));
        assert!(parse("threads --noblock").is_err());
        assert!(parse("processes --noblock --scaling 1,2").is_err());
        assert!(parse("cluster --noblock --persist").is_err());
        assert_eq!(
            parse("cluster --persist --out all").unwrap().out.as_deref(),
            Some("all")
        );
        assert_eq!(
            parse("processes --scatter data")
                .unwrap()
                .scatter
                .as_deref(),
            Some("data")
        );
        assert!(parse("cluster --scatter data --persist").is_err());
        assert!(parse("cluster --scatter 1x").is_err());
    }
}
