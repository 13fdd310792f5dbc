//! Magic lines: a `%name` (or evcxr-style `:name`) line at the start of a cell, or a
//! `%%name` line that applies to the whole cell.

/// Every magic ferrocell knows, for completion and `%lsmagic`.
pub const NAMES: &[&str] = &["help", "lsmagic", "opt"];

/// Whether a spelling (with its `%`, `%%` or `:` prefix) is one the kernel accepts.
pub fn is_spelling(s: &str) -> bool {
    !s.starts_with("%%")
}

/// A parsed magic.
#[derive(Debug, Clone, PartialEq)]
pub enum Magic {
    /// `%help`: the help text, as a pager payload.
    Help,
    /// `%lsmagic`: the list of magics.
    LsMagic,
    /// `%opt` alone shows the level; `%opt N` sets it.
    Opt(Option<u8>),
}

/// What a cell is, once its magic line (if any) has been read.
#[derive(Debug, Clone, PartialEq)]
pub enum CellKind<'a> {
    /// Plain Rust.
    Rust(&'a str),
    /// A magic; `rest` is the code after the magic line.
    Magic { magic: Magic, rest: &'a str },
    /// A `%`/`:` line that is not a known magic.
    Unknown(String),
    /// A known magic with bad arguments.
    BadArgs(String),
}

/// Whether the cell's first non-blank line is a magic line.
pub fn starts_with_magic(code: &str) -> bool {
    let t = code.trim_start();
    t.starts_with('%') || (t.starts_with(':') && !t.starts_with("::"))
}

/// Reads the magic line of a cell.
pub fn parse(code: &str) -> CellKind<'_> {
    if !starts_with_magic(code) {
        return CellKind::Rust(code);
    }
    let t = code.trim_start();
    let (line, rest) = t.split_once('\n').unwrap_or((t, ""));
    let body = line.trim_start_matches(['%', ':']);
    let mut words = body.split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let magic = match name {
        "help" => Magic::Help,
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
        _ => return CellKind::Unknown(line.trim().to_string()),
    };
    CellKind::Magic { magic, rest }
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
        crate::kernel::introspect::PRELUDE
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
        "  %help, :help        this help",
        "  %lsmagic            list the magics",
        "  %opt [0-3]          show or set rustc's optimisation level for cells",
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
                rest: "let x = 1;"
            }
        ));
        assert!(matches!(parse("%opt 9"), CellKind::BadArgs(_)));
        assert!(matches!(parse("%frobnicate"), CellKind::Unknown(_)));
    }
}
