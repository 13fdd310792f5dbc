//! How an error that reaches a cell's `?` is shown (`%efmt`, evcxr's `:efmt`).

/// The format an error that stops a cell at a `?` is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorFormat {
    /// `{}`: an `Error`'s message and its `source()` chain (any other error, which
    /// has only `Debug`, in its Debug form).
    #[default]
    Message,
    /// `{:?}`: the Debug form.
    Debug,
    /// `{:#?}`: the Debug form, pretty-printed.
    PrettyDebug,
}

impl ErrorFormat {
    const ALL: [ErrorFormat; 3] = [
        ErrorFormat::Message,
        ErrorFormat::Debug,
        ErrorFormat::PrettyDebug,
    ];

    /// As written after `%efmt`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorFormat::Message => "{}",
            ErrorFormat::Debug => "{:?}",
            ErrorFormat::PrettyDebug => "{:#?}",
        }
    }

    pub fn parse(text: &str) -> Option<ErrorFormat> {
        ErrorFormat::ALL.into_iter().find(|f| f.as_str() == text)
    }

    /// The number the prelude's `__runner::set_error_format` takes.
    pub fn code(self) -> u8 {
        self as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_formats() {
        for f in ErrorFormat::ALL {
            assert_eq!(ErrorFormat::parse(f.as_str()), Some(f));
        }
        assert_eq!(ErrorFormat::parse("{:x}"), None);
        assert_eq!(ErrorFormat::PrettyDebug.code(), 2);
    }
}
