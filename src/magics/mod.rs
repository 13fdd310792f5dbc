//! Magic lines: a `%name` (or evcxr-style `:name`) line at the start of a cell, or a
//! `%%name` line that applies to the whole cell.

pub mod cluster;
pub mod parallel;

pub use parallel::Parallel;

/// Every magic ferrocell knows, for completion and `%lsmagic`.
pub const NAMES: &[&str] = &[
    "clear", "cluster", "dep", "edition", "efmt", "explain", "help", "lsmagic", "opt", "parallel",
    "reset", "time", "timeit", "timing", "vars", "who",
];

/// Whether a spelling (with its `%`, `%%` or `:` prefix) is one the kernel accepts.
pub fn is_spelling(s: &str) -> bool {
    match s.strip_prefix("%%") {
        Some(name) => matches!(name, "time" | "timeit" | "parallel"),
        None => true,
    }
}

/// A parsed magic.
#[derive(Debug, Clone, PartialEq)]
pub enum Magic {
    /// `%help`: the help text, as a pager payload.
    Help,
    /// A cell that is only `exit` or `quit` (not Rust): asks a terminal client
    /// to leave, as in IPython's console.
    Exit,
    /// `%lsmagic`: the list of magics.
    LsMagic,
    /// `%opt` alone shows the level; `%opt N` sets it.
    Opt(Option<u8>),
    /// `%edition` alone shows the edition cells use; `%edition 2021` sets it.
    Edition(Option<crate::compile::edition::Edition>),
    /// `%timing` (evcxr's `:timing`): turns the time each cell took on or off.
    Timing,
    /// `%explain [E0308]`: rustc's explanation of an error code (the last error's).
    Explain(Option<String>),
    /// `%efmt [{}|{:?}|{:#?}]`: how errors that reach a cell's `?` are shown.
    Efmt(Option<crate::compile::error_format::ErrorFormat>),
    /// `%vars` / `%who`: the session's variables with type and size.
    Vars,
    /// `%reset`: forget every item and variable.
    Reset,
    /// `%time CODE` / `%%time`: CPU and wall time of the run, compile time apart.
    Time,
    /// `%timeit [-n N] [-r R] CODE` / `%%timeit`: repeated runs, IPython's report.
    Timeit { loops: Option<u64>, runs: u32 },
    /// `%%parallel threads|processes|cluster [N] [--each EXPR] [--out NAME] [--group]`.
    Parallel(Parallel),
    /// `%cluster start|status|stop|connect`.
    Cluster(cluster::ClusterCmd),
}

/// What a cell is, once its magic line (if any) has been read.
#[derive(Debug, Clone, PartialEq)]
pub enum CellKind<'a> {
    /// Plain Rust.
    Rust(&'a str),
    /// A magic; `rest` is the code it applies to (for `%time`, `%timeit`: the rest
    /// of the magic line and the lines after it).
    Magic {
        magic: Magic,
        rest: std::borrow::Cow<'a, str>,
    },
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

/// `E0308` (or `e0308`): a rustc error code.
fn is_error_code(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some('E' | 'e')) && text.len() == 5 && chars.all(|c| c.is_ascii_digit())
}

/// Reads the magic line of a cell.
pub fn parse<'a>(code: &'a str) -> CellKind<'a> {
    if matches!(code.trim(), "exit" | "quit") {
        return CellKind::Magic {
            magic: Magic::Exit,
            rest: "".into(),
        };
    }
    if !starts_with_magic(code) {
        return CellKind::Rust(code);
    }
    let t = code.trim_start();
    let (line, rest) = t.split_once('\n').unwrap_or((t, ""));
    let cell_magic = line.starts_with("%%");
    let body = line.trim_start_matches(['%', ':']);
    let mut words = body.split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    if cell_magic && name == "parallel" {
        return match parallel::parse(after_line(body, name)) {
            Ok(p) => CellKind::Magic {
                magic: Magic::Parallel(p),
                rest: rest.into(),
            },
            Err(why) => CellKind::BadArgs(why),
        };
    }
    if cell_magic && !matches!(name, "time" | "timeit") {
        return CellKind::Unknown(line.trim().to_string());
    }
    // For the timing magics, what follows the name on the line is code too.
    let after_name = || body.trim_start()[name.len()..].trim_start();
    let timed = |line_code: &'a str| -> std::borrow::Cow<'a, str> {
        match (line_code.is_empty(), rest.is_empty()) {
            (true, _) => rest.into(),
            (false, true) => line_code.into(),
            (false, false) => format!("{line_code}\n{rest}").into(),
        }
    };
    let magic = match name {
        "time" => {
            return CellKind::Magic {
                magic: Magic::Time,
                rest: timed(after_name()),
            }
        }
        "timeit" => {
            let mut loops = None;
            let mut runs = 7;
            let mut code = after_name();
            loop {
                let mut parts = code.splitn(3, char::is_whitespace);
                let (flag, value) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let parsed = match flag {
                    "-n" => value.parse().map(|n: u64| loops = Some(n.max(1))).is_ok(),
                    "-r" => value.parse().map(|r: u32| runs = r.max(1)).is_ok(),
                    _ => break,
                };
                if !parsed {
                    return CellKind::BadArgs(format!(
                        "%timeit {flag} needs a positive number, not {value:?}"
                    ));
                }
                code = parts.next().unwrap_or("").trim_start();
            }
            return CellKind::Magic {
                magic: Magic::Timeit { loops, runs },
                rest: timed(code),
            };
        }
        "help" => Magic::Help,
        "vars" | "who" => Magic::Vars,
        // evcxr's `:clear` clears the session's state, as `%reset` does.
        "reset" | "clear" => Magic::Reset,
        "timing" => Magic::Timing,
        "explain" => match args.as_slice() {
            [] => Magic::Explain(None),
            [code] if is_error_code(code) => Magic::Explain(Some(code.to_uppercase())),
            _ => {
                return CellKind::BadArgs(
                    "%explain takes one error code, like E0308 (or none: the last error's)".into(),
                )
            }
        },
        "efmt" => {
            use crate::compile::error_format::ErrorFormat;
            match args.as_slice() {
                [] => Magic::Efmt(None),
                [f] => match ErrorFormat::parse(f) {
                    Some(f) => Magic::Efmt(Some(f)),
                    None => {
                        return CellKind::BadArgs(format!(
                            "%efmt takes {{}} (an error's message and causes), {{:?}} or {{:#?}} (its Debug form), not {f:?}"
                        ))
                    }
                },
                _ => return CellKind::BadArgs("%efmt takes one format: {}, {:?} or {:#?}".into()),
            }
        }
        "cluster" => match cluster::parse(&args) {
            Ok(c) => Magic::Cluster(c),
            Err(why) => return CellKind::BadArgs(why),
        },
        "lsmagic" => Magic::LsMagic,
        "opt" => match args.as_slice() {
            [] => Magic::Opt(None),
            [n] => match n.parse::<u8>() {
                Ok(n) if n <= 3 => Magic::Opt(Some(n)),
                _ => {
                    return CellKind::BadArgs(format!("%opt takes a level from 0 to 3, not {n:?}"))
                }
            },
            _ => return CellKind::BadArgs("%opt takes one level from 0 to 3".into()),
        },
        "edition" => {
            use crate::compile::edition::Edition;
            let editions: Vec<&str> = Edition::ALL.iter().map(|e| e.as_str()).collect();
            match args.as_slice() {
                [] => Magic::Edition(None),
                [e] => match Edition::parse(e) {
                    Some(e) => Magic::Edition(Some(e)),
                    None => {
                        return CellKind::BadArgs(format!(
                            "%edition takes one of {}, not {e:?}",
                            editions.join(", ")
                        ))
                    }
                },
                _ => {
                    return CellKind::BadArgs(format!(
                        "%edition takes one edition: {}",
                        editions.join(", ")
                    ))
                }
            }
        }
        _ => return CellKind::Unknown(line.trim().to_string()),
    };
    CellKind::Magic {
        magic,
        rest: rest.into(),
    }
}

/// What follows the magic's name on its line.
fn after_line<'a>(body: &'a str, name: &str) -> &'a str {
    body.trim_start()[name.len()..].trim()
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
        lsmagic_text()
    )
}

/// The text `%lsmagic` prints.
pub fn lsmagic_text() -> String {
    [
        "  :dep NAME = SPEC    add a crate (cargo syntax: \"1.0\" or { version, features, package, path })",
        "  %help, :help        this help",
        "  %lsmagic            list the magics",
        "  exit, quit          leave jupyter console (a cell of that word alone)",
        "  %cluster start -n N [--launcher local|mpi|ssh|slurm] [--hosts H1,H2] [--ip ADDRESS] [--restart]",
        "                      a controller and N engines for %%parallel cluster: here, as mpirun's",
        "                      ranks, over ssh, or as a Slurm job; --restart starts ended engines again",
        "  %cluster status, %cluster stop, %cluster connect FILE",
        "  %%parallel threads|processes|cluster [N] [--each EXPR] [--out NAME] [--group] [--scaling 1,2,4]",
        "                      run the cell on N threads, worker processes or engines at once",
        "                      (rank, size in scope); cluster: [--targets 0,2-3] [--persist]; --each:",
        "                      once per item (item in scope); --out: keep the values as a Vec;",
        "                      --scaling: speed-up chart with Amdahl's law fitted",
        "  %edition [2018|2021|2024]",
        "                      show or set the Rust edition of later cells (2024 by default)",
        "  %efmt [{}|{:?}|{:#?}] show or set how an error that reaches a cell's ? is shown",
        "  %explain [E0308]    rustc's explanation of an error code (default: the last error's)",
        "  %opt [0-3]          show or set rustc's optimisation level for cells",
        "  %vars, %who         the session's variables: name, type, size",
        "  %reset, %clear      forget every item and variable (a fresh runner)",
        "  %time CODE, %%time  CPU and wall time of one run (compile time shown apart)",
        "  %timing             show how long each cell took to compile and run (on/off)",
        "  %timeit [-n N] [-r R] CODE, %%timeit",
        "                      mean ± std. dev. over R runs of N loops (N chosen if not given)",
    ]
    .join("\n")
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
                magic: Magic::Help,
                ..
            }
        ));
        assert!(matches!(
            parse("%opt 2\nlet x = 1;"),
            CellKind::Magic {
                magic: Magic::Opt(Some(2)),
                rest
            } if rest == "let x = 1;"
        ));
        assert!(matches!(parse("%opt 9"), CellKind::BadArgs(_)));
        assert!(matches!(parse("%frobnicate"), CellKind::Unknown(_)));
        assert!(matches!(
            parse(" quit\n"),
            CellKind::Magic {
                magic: Magic::Exit,
                ..
            }
        ));
        assert_eq!(parse("exit(0)"), CellKind::Rust("exit(0)"));
        assert!(matches!(parse("%%help"), CellKind::Unknown(_)));
        match parse("%timeit -n 10 -r 3 fib(20)") {
            CellKind::Magic { magic, rest } => {
                assert_eq!(
                    magic,
                    Magic::Timeit {
                        loops: Some(10),
                        runs: 3
                    }
                );
                assert_eq!(rest, "fib(20)");
            }
            other => panic!("{other:?}"),
        }
        match parse("%%timeit\nlet v = vec![1; 100];\nv.len()") {
            CellKind::Magic { magic, rest } => {
                assert_eq!(
                    magic,
                    Magic::Timeit {
                        loops: None,
                        runs: 7
                    }
                );
                assert_eq!(rest, "let v = vec![1; 100];\nv.len()");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("%time 1 + 1"),
            CellKind::Magic {
                magic: Magic::Time,
                ..
            }
        ));
        assert!(matches!(parse("%timeit -n x 1"), CellKind::BadArgs(_)));
    }
}
