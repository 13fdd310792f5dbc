//! Magic lines: a `%name` (or evcxr-style `:name`) line at the start of a cell, or a
//! `%%name` line that applies to the whole cell.
//!
//! One type per magic, each in the module of its concern with its definition
//! ([`Spec`]: names, usage, help, reader), its `parse` and its `apply`, as
//! mini-redis has one type per command. [`Magic`] gathers them; [`parse`] reads a
//! cell's magic line into one, and [`Executor::run_code`] applies it, then runs
//! what is left of the cell as Rust.

mod background;
pub mod cluster;
mod explain;
mod help;
mod native;
mod opencl;
pub mod parallel;
mod reset;
mod settings;
pub mod spec;
mod time;
mod vars;

use super::{CellError, Executor, Sink};
use crate::compile::Timing;
use crate::kernel::stdin::Origin;
use crate::protocol::messages::ExecuteRequest;
use serde_json::Value;
use spec::{Line, Spec, Spelling};

pub use background::{Pending, Wait};
use std::borrow::Cow;
use tokio::sync::watch;

pub use explain::Explain;
pub use help::{Exit, Help, LsMagic};
pub use native::NativeCell;
pub use opencl::OpenClCell;
pub use parallel::ParallelCell;
pub use reset::Reset;
pub use settings::{Edition, Efmt, Opt, ShowTiming};
pub use time::{Time, Timeit};
pub use vars::Vars;

/// The spellings of magics that begin with `line` (the start of a magic line),
/// for completion.
pub fn completions(line: &str) -> Vec<String> {
    MAGICS
        .iter()
        .flat_map(|m| m.spellings())
        .filter(|s| s.starts_with(line))
        .collect()
}

/// Every magic, in the order `%lsmagic` lists them.
pub const MAGICS: &[Spec] = &[
    DEP,
    help::HELP,
    help::LSMAGIC,
    help::EXIT,
    cluster::SPEC,
    parallel::SPEC,
    background::WAIT,
    background::PENDING,
    native::C,
    native::CPP,
    opencl::CELL,
    settings::EDITION,
    settings::EFMT,
    explain::SPEC,
    settings::OPT,
    vars::SPEC,
    reset::SPEC,
    time::TIME,
    settings::TIMING,
    time::TIMEIT,
];

/// `:dep` lines are read before the magic line (by `split_deps`); one met as a
/// magic line came after other code.
const DEP: Spec = Spec {
    names: &["dep"],
    spelling: Spelling::Line,
    usage: &[":dep NAME = SPEC"],
    help: &["add a crate (cargo syntax: \"1.0\" or { version, features, package, path })"],
    read: |_| Err(":dep lines go at the top of a cell, before any other line".into()),
};

/// The magic named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Spec> {
    MAGICS.iter().find(|m| m.names.contains(&name))
}

/// The text `%lsmagic` prints: each magic's first usage with its help beside it
/// (or below, when the usage is long), then its other usages.
pub fn listing() -> String {
    const HELP_COLUMN: usize = 22;
    let mut lines = Vec::new();
    for m in MAGICS {
        let (first, others) = m.usage.split_first().expect("a magic has a usage");
        let mut help = m.help.iter();
        // Beside it while that leaves the help at most two columns further right.
        if first.len() < HELP_COLUMN {
            let h = help.next().copied().unwrap_or("");
            lines.push(format!("  {first:<w$} {h}", w = HELP_COLUMN - 3));
        } else {
            lines.push(format!("  {first}"));
        }
        lines.extend(help.map(|h| format!("{:HELP_COLUMN$}{h}", "")));
        lines.extend(others.iter().map(|u| format!("  {u}")));
    }
    lines.join("\n")
}

/// The text `%help` shows.
pub fn help_text() -> String {
    format!(
        "ferrocell {} — Rust cells, compiled to native code.\n\n\
         Cells hold Rust statements and items (fn, struct, enum, impl, trait, use, mod,\n\
         const, static, macro_rules!). Items persist and can be redefined; a final\n\
         expression without `;` is the cell's value. `?` works at the top of a cell.\n\n\
         Shown without imports (the ferrocell prelude):\n{}\n\n\
         Magics:\n{}\n\n\
         Interrupt stops a running cell within 2 s; a crash (abort, segfault) restarts\n\
         the runner and keeps every item.",
        env!("CARGO_PKG_VERSION"),
        crate::compile::prelude::DOCS
            .iter()
            .map(|(_, sig, doc)| format!("  {sig}\n      {doc}"))
            .collect::<Vec<_>>()
            .join("\n"),
        listing()
    )
}

/// A parsed magic: one variant per magic type.
#[derive(Debug, Clone, PartialEq)]
pub enum Magic<'a> {
    Help(Help),
    Exit(Exit),
    LsMagic(LsMagic),
    Opt(Opt),
    Edition(Edition),
    Timing(ShowTiming),
    Explain(Explain),
    Efmt(Efmt),
    Vars(Vars),
    Reset(Reset),
    Time(Time<'a>),
    Timeit(Timeit<'a>),
    Parallel(ParallelCell<'a>),
    Native(NativeCell<'a>),
    OpenCl(OpenClCell<'a>),
    Cluster(cluster::ClusterCmd),
    Wait(Wait),
    Pending(Pending),
}

/// What is left to do once a magic is applied.
pub(super) enum Then<'a> {
    /// Nothing: the magic did the cell's work.
    Done,
    /// Run the lines after the magic line as Rust.
    Rest,
    /// Run this code as Rust, timed so.
    Rust(Cow<'a, str>, Timing),
}

/// What a magic's `apply` works with, besides the executor: the request's origin
/// (for stdin, when it allows input), its header (the parent of what a background
/// run shows later), where outputs go, the reply's payload and the interrupts.
pub(super) struct Cx<'c> {
    input: Option<&'c Origin>,
    parent: &'c crate::protocol::Header,
    sink: &'c mut Sink,
    payload: &'c mut Vec<Value>,
    irq: &'c mut watch::Receiver<u64>,
}

impl<'a> Magic<'a> {
    /// Applies the magic: each type's `apply`.
    async fn apply(self, ex: &mut Executor, cx: &mut Cx<'_>) -> Result<Then<'a>, CellError> {
        Ok(match self {
            Magic::Help(m) => m.apply(cx),
            Magic::Exit(m) => m.apply(cx),
            Magic::LsMagic(m) => m.apply(cx),
            Magic::Opt(m) => m.apply(ex, cx),
            Magic::Edition(m) => m.apply(ex, cx),
            Magic::Efmt(m) => m.apply(ex, cx),
            Magic::Timing(m) => m.apply(ex, cx),
            Magic::Explain(m) => m.apply(ex, cx).await?,
            Magic::Vars(m) => m.apply(ex, cx).await?,
            Magic::Reset(m) => m.apply(ex, cx).await?,
            Magic::Time(m) => m.apply(),
            Magic::Timeit(m) => m.apply(),
            Magic::Parallel(m) => m.apply(ex, cx).await?,
            Magic::Native(m) => m.apply(ex, cx).await?,
            Magic::OpenCl(m) => m.apply(ex, cx).await?,
            Magic::Cluster(m) => m.apply(ex, cx).await?,
            Magic::Wait(m) => m.apply(ex, cx).await?,
            Magic::Pending(m) => m.apply(ex, cx),
        })
    }
}

impl Executor {
    /// Runs a cell: its `:dep` lines, its magic line (if any), then its Rust code.
    pub(super) async fn run_code(
        &mut self,
        origin: &Origin,
        req: &ExecuteRequest,
        sink: &mut Sink,
        payload: &mut Vec<Value>,
        irq: &mut watch::Receiver<u64>,
    ) -> Result<(), CellError> {
        let input = req.allow_stdin.then_some(origin);
        let (dep_lines, code) = split_deps(&req.code);
        if !dep_lines.is_empty() {
            self.add_deps(&dep_lines, sink, irq).await?;
        }
        let (code, timing) = match parse(code) {
            CellKind::Rust(code) => (code.into(), Timing::None),
            CellKind::Unknown(line) => return Err(CellError::UnknownMagic(line)),
            CellKind::BadArgs(why) => return Err(CellError::Magic(why)),
            CellKind::Magic { magic, rest } => {
                let mut cx = Cx {
                    input,
                    parent: &origin.parent,
                    sink,
                    payload,
                    irq,
                };
                match magic.apply(self, &mut cx).await? {
                    Then::Done => return Ok(()),
                    Then::Rest => (Cow::Borrowed(rest), Timing::None),
                    Then::Rust(code, timing) => (code, timing),
                }
            }
        };
        self.run_rust(input, sink, irq, &code, timing, None).await
    }
}

/// What a cell is, once its magic line (if any) has been read.
#[derive(Debug, Clone, PartialEq)]
pub enum CellKind<'a> {
    /// Plain Rust.
    Rust(&'a str),
    /// A magic, and the lines after its line.
    Magic { magic: Magic<'a>, rest: &'a str },
    /// A `%`/`:` line that is not a known magic.
    Unknown(String),
    /// A known magic with bad arguments.
    BadArgs(String),
}

/// Splits the `:dep` (or `%dep`) lines at the top of a cell from the code after them.
/// Returns what follows `:dep` on each line, and the rest of the cell.
pub fn split_deps(code: &str) -> (Vec<&str>, &str) {
    let mut deps = Vec::new();
    let mut rest = code;
    loop {
        let t = rest.trim_start();
        let (line, after) = t.split_once('\n').unwrap_or((t, ""));
        let spec = line
            .strip_prefix(":dep")
            .or_else(|| line.strip_prefix("%dep"))
            .filter(|s| s.is_empty() || s.starts_with(char::is_whitespace));
        match spec {
            Some(spec) => {
                deps.push(spec.trim());
                rest = after;
            }
            None => {
                let rest = if deps.is_empty() { code } else { rest };
                return (deps, rest);
            }
        }
    }
}

/// Whether the cell's first non-blank line is a magic line.
pub fn starts_with_magic(code: &str) -> bool {
    let t = code.trim_start();
    t.starts_with('%') || (t.starts_with(':') && !t.starts_with("::"))
}

/// Reads the magic line of a cell.
pub fn parse<'a>(code: &'a str) -> CellKind<'a> {
    let bare = code.trim();
    if let Some(m) = MAGICS
        .iter()
        .find(|m| m.spelling == Spelling::Bare && m.names.contains(&bare))
    {
        return read(
            m,
            &Line {
                args: vec![],
                after_name: "",
                rest: "",
            },
        );
    }
    if !starts_with_magic(code) {
        return CellKind::Rust(code);
    }
    let t = code.trim_start();
    let (line, rest) = t.split_once('\n').unwrap_or((t, ""));
    let cell_magic = line.starts_with("%%");
    let body = line.trim_start_matches(['%', ':']).trim_start();
    let name = body.split_whitespace().next().unwrap_or("");
    let Some(spec) = find(name).filter(|m| m.allows(cell_magic)) else {
        return CellKind::Unknown(line.trim().to_string());
    };
    let after_name = body[name.len()..].trim_start();
    let args = after_name.split_whitespace().collect();
    read(
        spec,
        &Line {
            args,
            after_name,
            rest,
        },
    )
}

/// Runs a magic's reader on its line.
fn read<'a>(spec: &Spec, line: &Line<'a>) -> CellKind<'a> {
    match (spec.read)(line) {
        Ok(magic) => CellKind::Magic {
            magic,
            rest: line.rest,
        },
        Err(why) => CellKind::BadArgs(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_lines_come_off_the_top_of_a_cell() {
        let (deps, rest) = split_deps(":dep regex = \"1\"\n%dep itoa\nlet x = 1;");
        assert_eq!(deps, vec!["regex = \"1\"", "itoa"]);
        assert_eq!(rest, "let x = 1;");
        assert_eq!(split_deps("let x = 1;"), (vec![], "let x = 1;"));
        assert_eq!(split_deps(":depx"), (vec![], ":depx"));
        assert_eq!(split_deps(":dep a"), (vec!["a"], ""));
    }

    #[test]
    fn parses_magics_and_leaves_rust_alone() {
        assert_eq!(parse("1 + 1"), CellKind::Rust("1 + 1"));
        assert_eq!(
            parse("std::mem::swap(&mut a, &mut b)"),
            CellKind::Rust("std::mem::swap(&mut a, &mut b)")
        );
        assert!(matches!(
            parse(":help"),
            CellKind::Magic {
                magic: Magic::Help(Help),
                ..
            }
        ));
        assert_eq!(
            parse("%opt 2\nlet x = 1;"),
            CellKind::Magic {
                magic: Magic::Opt(Opt::Pin(2)),
                rest: "let x = 1;"
            }
        );
        assert!(matches!(parse("%opt 9"), CellKind::BadArgs(_)));
        assert!(matches!(parse("%frobnicate"), CellKind::Unknown(_)));
        assert!(matches!(
            parse(" quit\n"),
            CellKind::Magic {
                magic: Magic::Exit(Exit),
                ..
            }
        ));
        assert_eq!(parse("exit(0)"), CellKind::Rust("exit(0)"));
        assert!(matches!(parse("%%help"), CellKind::Unknown(_)));
        match parse("%timeit -n 10 -r 3 fib(20)") {
            CellKind::Magic {
                magic: Magic::Timeit(t),
                ..
            } => {
                assert_eq!((t.loops, t.runs), (Some(10), 3));
                assert_eq!(t.code, "fib(20)");
            }
            other => panic!("{other:?}"),
        }
        match parse("%%timeit\nlet v = vec![1; 100];\nv.len()") {
            CellKind::Magic {
                magic: Magic::Timeit(t),
                ..
            } => {
                assert_eq!((t.loops, t.runs), (None, 7));
                assert_eq!(t.code, "let v = vec![1; 100];\nv.len()");
            }
            other => panic!("{other:?}"),
        }
        match parse("%time 1 + 1\n2") {
            CellKind::Magic {
                magic: Magic::Time(t),
                ..
            } => assert_eq!(t.code, "1 + 1\n2"),
            other => panic!("{other:?}"),
        }
        match parse("%%parallel threads 2\nrank") {
            CellKind::Magic {
                magic: Magic::Parallel(p),
                ..
            } => assert_eq!((p.run.workers, p.body), (Some(2), "rank")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("%timeit -n x 1"), CellKind::BadArgs(_)));
    }

    #[test]
    fn the_listing_sets_help_beside_short_usages_and_below_long_ones() {
        // One line per usage and help line, each magic's lines together.
        let text = listing();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines
            .contains(&"  %opt [0-3|auto]     show or pin rustc's optimisation level for cells; auto (the default):"));
        assert!(lines.contains(
            &"  %efmt [{}|{:?}|{:#?}] show or set how an error that reaches a cell's ? is shown"
        ));
        let at = lines
            .iter()
            .position(|l| l.starts_with("  %edition"))
            .unwrap();
        assert_eq!(
            lines[at + 1],
            "                      show or set the Rust edition of later cells (2024 by default)"
        );
    }

    #[test]
    fn completion_offers_only_the_spellings_a_magic_has() {
        let c = completions("%%");
        assert!(c.contains(&"%%parallel".to_string()) && c.contains(&"%%timeit".to_string()));
        assert!(!c.contains(&"%%help".to_string()));
        assert!(!completions("%pa").contains(&"%parallel".to_string()));
        assert_eq!(completions(":cl"), vec![":cluster", ":clear"]);
    }
}
