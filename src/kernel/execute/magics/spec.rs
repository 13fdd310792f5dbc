//! The shape of a magic's definition ([`Spec`]: its names, how it may be spelled,
//! its usage and help, and its reader). Each magic's `Spec` sits beside its type,
//! in the magic's own module; `super::MAGICS` lists them for the parser, `%lsmagic`,
//! `%help` and completion.

use super::Magic;

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

/// What a magic's reader returns: the magic, or why its line is wrong.
pub type Read<'a> = Result<Magic<'a>, String>;

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
