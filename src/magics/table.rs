//! The one definition of each magic: its names, how it may be spelled, its usage
//! and help, and how its arguments are read. The parser ([`super::parse`]),
//! `%lsmagic` and `%help` ([`super::lsmagic_text`]) and completion
//! ([`super::completions`]) all read [`MAGICS`], so a magic added here is known to
//! each of them at once.

use super::{cluster, parallel, Magic};
use crate::compile::edition::Edition;
use crate::compile::error_format::ErrorFormat;
use std::borrow::Cow;

/// How a magic is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// `%name` or `:name` (evcxr's), on the first line of a cell.
    Line,
    /// `%%name`, the first line of a cell it applies to.
    Cell,
    /// Either of them.
    LineOrCell,
    /// The name alone, as the whole cell (`exit`).
    Bare,
}

/// The magic line, split for a magic's reader.
pub struct Line<'a> {
    /// The words after the name.
    pub args: Vec<&'a str>,
    /// Everything after the name on its line.
    pub after_name: &'a str,
    /// The lines after the magic line.
    pub rest: &'a str,
}

/// What a magic's reader returns: the magic, and the code it applies to when that
/// is not simply the lines after it.
pub type Read<'a> = Result<(Magic, Option<Cow<'a, str>>), String>;

/// One magic.
pub struct Spec {
    /// Its names; the first is the one `%lsmagic` leads with.
    pub names: &'static [&'static str],
    pub spelling: Spelling,
    /// How it is used, one form a line (the first shown beside the help).
    pub usage: &'static [&'static str],
    /// What it does, a line each.
    pub help: &'static [&'static str],
    /// Reads its arguments.
    pub read: for<'a> fn(&Line<'a>) -> Read<'a>,
}

impl Spec {
    /// The spellings completion offers, with their prefixes.
    pub fn spellings(&self) -> Vec<String> {
        let prefixes: &[&str] = match self.spelling {
            Spelling::Line => &["%", ":"],
            Spelling::Cell => &["%%"],
            Spelling::LineOrCell => &["%", "%%", ":"],
            Spelling::Bare => &[],
        };
        self.names
            .iter()
            .flat_map(|n| prefixes.iter().map(move |p| format!("{p}{n}")))
            .collect()
    }

    /// Whether `%%name` (`cell`) or `%name` may be written.
    pub fn allows(&self, cell: bool) -> bool {
        match self.spelling {
            Spelling::Line => !cell,
            Spelling::Cell => cell,
            Spelling::LineOrCell => true,
            Spelling::Bare => false,
        }
    }
}

/// Every magic, in the order `%lsmagic` lists them.
pub const MAGICS: &[Spec] = &[
    Spec {
        names: &["dep"],
        spelling: Spelling::Line,
        usage: &[":dep NAME = SPEC"],
        help: &["add a crate (cargo syntax: \"1.0\" or { version, features, package, path })"],
        read: |_| Err(":dep lines go at the top of a cell, before any other line".into()),
    },
    Spec {
        names: &["help"],
        spelling: Spelling::Line,
        usage: &["%help, :help"],
        help: &["this help"],
        read: |_| Ok((Magic::Help, None)),
    },
    Spec {
        names: &["lsmagic"],
        spelling: Spelling::Line,
        usage: &["%lsmagic"],
        help: &["list the magics"],
        read: |_| Ok((Magic::LsMagic, None)),
    },
    Spec {
        names: &["exit", "quit"],
        spelling: Spelling::Bare,
        usage: &["exit, quit"],
        help: &["leave jupyter console (a cell of that word alone)"],
        read: |_| Ok((Magic::Exit, Some("".into()))),
    },
    Spec {
        names: &["cluster"],
        spelling: Spelling::Line,
        usage: &[
            "%cluster start -n N [--launcher local|mpi|ssh|slurm] [--hosts H1,H2] [--ip ADDRESS] [--restart]",
            "%cluster status, %cluster stop, %cluster connect FILE",
        ],
        help: &[
            "a controller and N engines for %%parallel cluster: here, as mpirun's",
            "ranks, over ssh, or as a Slurm job; --restart starts ended engines again",
        ],
        read: |line| Ok((Magic::Cluster(cluster::parse(&line.args)?), None)),
    },
    Spec {
        names: &["parallel"],
        spelling: Spelling::Cell,
        usage: &[
            "%%parallel threads|processes|cluster [N] [--each EXPR] [--out NAME] [--group] [--scaling 1,2,4]",
        ],
        help: &[
            "run the cell on N threads, worker processes or engines at once",
            "(rank, size in scope); cluster: [--targets 0,2-3] [--persist]; --each:",
            "once per item (item in scope); --out: keep the values as a Vec;",
            "--scaling: speed-up chart with Amdahl's law fitted",
        ],
        read: |line| {
            let p = parallel::parse(line.after_name.trim())?;
            Ok((Magic::Parallel(p), None))
        },
    },
    Spec {
        names: &["edition"],
        spelling: Spelling::Line,
        usage: &["%edition [2018|2021|2024]"],
        help: &["show or set the Rust edition of later cells (2024 by default)"],
        read: read_edition,
    },
    Spec {
        names: &["efmt"],
        spelling: Spelling::Line,
        usage: &["%efmt [{}|{:?}|{:#?}]"],
        help: &["show or set how an error that reaches a cell's ? is shown"],
        read: read_efmt,
    },
    Spec {
        names: &["explain"],
        spelling: Spelling::Line,
        usage: &["%explain [E0308]"],
        help: &["rustc's explanation of an error code (default: the last error's)"],
        read: read_explain,
    },
    Spec {
        names: &["opt"],
        spelling: Spelling::Line,
        usage: &["%opt [0-3]"],
        help: &["show or set rustc's optimisation level for cells"],
        read: read_opt,
    },
    Spec {
        names: &["vars", "who"],
        spelling: Spelling::Line,
        usage: &["%vars, %who"],
        help: &["the session's variables: name, type, size"],
        read: |_| Ok((Magic::Vars, None)),
    },
    Spec {
        // evcxr's `:clear` clears the session's state, as `%reset` does.
        names: &["reset", "clear"],
        spelling: Spelling::Line,
        usage: &["%reset, %clear"],
        help: &["forget every item and variable (a fresh runner)"],
        read: |_| Ok((Magic::Reset, None)),
    },
    Spec {
        names: &["time"],
        spelling: Spelling::LineOrCell,
        usage: &["%time CODE, %%time"],
        help: &["CPU and wall time of one run (compile time shown apart)"],
        read: |line| Ok((Magic::Time, Some(timed(line, line.after_name)))),
    },
    Spec {
        names: &["timing"],
        spelling: Spelling::Line,
        usage: &["%timing"],
        help: &["show how long each cell took to compile and run (on/off)"],
        read: |_| Ok((Magic::Timing, None)),
    },
    Spec {
        names: &["timeit"],
        spelling: Spelling::LineOrCell,
        usage: &["%timeit [-n N] [-r R] CODE, %%timeit"],
        help: &["mean ± std. dev. over R runs of N loops (N chosen if not given)"],
        read: read_timeit,
    },
];

/// The magic named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Spec> {
    MAGICS.iter().find(|m| m.names.contains(&name))
}

/// For the timing magics, what follows the name on the line is code too, before
/// the lines after it.
fn timed<'a>(line: &Line<'a>, code: &'a str) -> Cow<'a, str> {
    match (code.is_empty(), line.rest.is_empty()) {
        (true, _) => line.rest.into(),
        (false, true) => code.into(),
        (false, false) => format!("{code}\n{}", line.rest).into(),
    }
}

fn read_timeit<'a>(line: &Line<'a>) -> Read<'a> {
    let mut loops = None;
    let mut runs = 7;
    let mut code = line.after_name;
    loop {
        let mut parts = code.splitn(3, char::is_whitespace);
        let (flag, value) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let parsed = match flag {
            "-n" => value.parse().map(|n: u64| loops = Some(n.max(1))).is_ok(),
            "-r" => value.parse().map(|r: u32| runs = r.max(1)).is_ok(),
            _ => break,
        };
        if !parsed {
            return Err(format!(
                "%timeit {flag} needs a positive number, not {value:?}"
            ));
        }
        code = parts.next().unwrap_or("").trim_start();
    }
    Ok((Magic::Timeit { loops, runs }, Some(timed(line, code))))
}

/// `E0308` (or `e0308`): a rustc error code.
fn is_error_code(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some('E' | 'e')) && text.len() == 5 && chars.all(|c| c.is_ascii_digit())
}

fn read_explain<'a>(line: &Line<'a>) -> Read<'a> {
    match line.args.as_slice() {
        [] => Ok((Magic::Explain(None), None)),
        [code] if is_error_code(code) => Ok((Magic::Explain(Some(code.to_uppercase())), None)),
        _ => Err("%explain takes one error code, like E0308 (or none: the last error's)".into()),
    }
}

fn read_efmt<'a>(line: &Line<'a>) -> Read<'a> {
    match line.args.as_slice() {
        [] => Ok((Magic::Efmt(None), None)),
        [f] => match ErrorFormat::parse(f) {
            Some(f) => Ok((Magic::Efmt(Some(f)), None)),
            None => Err(format!(
                "%efmt takes {{}} (an error's message and causes), {{:?}} or {{:#?}} (its Debug form), not {f:?}"
            )),
        },
        _ => Err("%efmt takes one format: {}, {:?} or {:#?}".into()),
    }
}

fn read_opt<'a>(line: &Line<'a>) -> Read<'a> {
    match line.args.as_slice() {
        [] => Ok((Magic::Opt(None), None)),
        [n] => match n.parse::<u8>() {
            Ok(n) if n <= 3 => Ok((Magic::Opt(Some(n)), None)),
            _ => Err(format!("%opt takes a level from 0 to 3, not {n:?}")),
        },
        _ => Err("%opt takes one level from 0 to 3".into()),
    }
}

fn read_edition<'a>(line: &Line<'a>) -> Read<'a> {
    let editions = || {
        Edition::ALL
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match line.args.as_slice() {
        [] => Ok((Magic::Edition(None), None)),
        [e] => match Edition::parse(e) {
            Some(e) => Ok((Magic::Edition(Some(e)), None)),
            None => Err(format!("%edition takes one of {}, not {e:?}", editions())),
        },
        _ => Err(format!("%edition takes one edition: {}", editions())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_sets_help_beside_short_usages_and_below_long_ones() {
        // One line per usage and help line, each magic's lines together.
        let text = listing();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines
            .contains(&"  %opt [0-3]          show or set rustc's optimisation level for cells"));
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
        let c = super::super::completions("%%");
        assert!(c.contains(&"%%parallel".to_string()) && c.contains(&"%%timeit".to_string()));
        assert!(!c.contains(&"%%help".to_string()));
        assert!(!super::super::completions("%pa").contains(&"%parallel".to_string()));
        assert_eq!(super::super::completions(":cl"), vec![":cluster", ":clear"]);
    }
}
