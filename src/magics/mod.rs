//! Magic lines: a `%name` (or evcxr-style `:name`) line at the start of a cell, or a
//! `%%name` line that applies to the whole cell.

pub mod cluster;
pub mod parallel;
pub mod table;

pub use parallel::Parallel;

/// The spellings of magics that begin with `line` (the start of a magic line),
/// for completion.
pub fn completions(line: &str) -> Vec<String> {
    table::MAGICS
        .iter()
        .flat_map(|m| m.spellings())
        .filter(|s| s.starts_with(line))
        .collect()
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

/// Reads the magic line of a cell.
pub fn parse<'a>(code: &'a str) -> CellKind<'a> {
    let bare = code.trim();
    if let Some(m) = table::MAGICS
        .iter()
        .find(|m| m.spelling == table::Spelling::Bare && m.names.contains(&bare))
    {
        return read(
            m,
            &table::Line {
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
    let Some(spec) = table::find(name).filter(|m| m.allows(cell_magic)) else {
        return CellKind::Unknown(line.trim().to_string());
    };
    let after_name = body[name.len()..].trim_start();
    let args = after_name.split_whitespace().collect();
    read(
        spec,
        &table::Line {
            args,
            after_name,
            rest,
        },
    )
}

/// Runs a magic's reader on its line.
fn read<'a>(spec: &table::Spec, line: &table::Line<'a>) -> CellKind<'a> {
    match (spec.read)(line) {
        Ok((magic, code)) => CellKind::Magic {
            magic,
            rest: code.unwrap_or(line.rest.into()),
        },
        Err(why) => CellKind::BadArgs(why),
    }
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
    table::listing()
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
