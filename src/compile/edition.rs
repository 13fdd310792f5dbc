//! The Rust edition cells are compiled in: 2024 by default, as `cargo new` makes
//! new packages; `%edition 2021` (or older) for code written before it.

/// A Rust edition. Not 2015: there a crate named with `--extern` is not in scope
/// without `extern crate`, which every cell's glue would need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    E2018,
    E2021,
    E2024,
}

impl Edition {
    /// Cells, the prelude, the runner and `:dep` wrapper packages use this one.
    pub const DEFAULT: Edition = Edition::E2024;

    /// Every edition, oldest first (for `%edition`'s help and errors).
    pub const ALL: [Edition; 3] = [Edition::E2018, Edition::E2021, Edition::E2024];

    pub fn as_str(self) -> &'static str {
        match self {
            Edition::E2018 => "2018",
            Edition::E2021 => "2021",
            Edition::E2024 => "2024",
        }
    }

    pub fn parse(text: &str) -> Option<Edition> {
        Edition::ALL.into_iter().find(|e| e.as_str() == text)
    }

    /// rustc's flag for it.
    pub fn flag(self) -> String {
        format!("--edition={}", self.as_str())
    }
}

impl std::fmt::Display for Edition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_edition_and_nothing_else() {
        for e in Edition::ALL {
            assert_eq!(Edition::parse(e.as_str()), Some(e));
        }
        assert_eq!(Edition::parse("2027"), None);
        assert_eq!(Edition::DEFAULT.flag(), "--edition=2024");
    }
}
