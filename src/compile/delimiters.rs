//! Brackets, strings and comments of a cell's text, matched without parsing it:
//! whether a cell is complete, and where an unclosed or stray delimiter is when the
//! tokenizer gives up without a place.

/// How a text's delimiters stand at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delimiters {
    /// Every bracket, string and comment is closed.
    Balanced,
    /// Brackets still open, innermost last: the bracket and its byte offset.
    Open(Vec<(char, usize)>),
    /// A closing bracket that does not match the open one (or closes nothing).
    Stray { found: char, at: usize },
    /// A string or block comment that runs to the end: what it is, where it starts.
    Unterminated { what: &'static str, at: usize },
}

/// How deep brackets may nest in a cell: the parser recurses once per level, and a
/// cell of 60 000 nested parentheses would overflow its stack.
pub const MAX_NESTING: usize = 256;

/// Scans `code` for brackets outside strings, chars and comments.
pub fn scan(code: &str) -> Delimiters {
    walk(code).0
}

/// The deepest nesting of brackets in `code`.
pub fn deepest(code: &str) -> usize {
    walk(code).1
}

fn walk(code: &str) -> (Delimiters, usize) {
    let mut open: Vec<(char, usize)> = Vec::new();
    let mut deepest = 0;
    let mut chars = code.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '/' if chars.peek().map(|p| p.1) == Some('/') => {
                while chars.peek().is_some_and(|(_, c)| *c != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek().map(|p| p.1) == Some('*') => {
                chars.next();
                let mut depth = 1;
                while depth > 0 {
                    match chars.next() {
                        Some((_, '*')) if chars.peek().map(|p| p.1) == Some('/') => {
                            chars.next();
                            depth -= 1;
                        }
                        Some((_, '/')) if chars.peek().map(|p| p.1) == Some('*') => {
                            chars.next();
                            depth += 1;
                        }
                        Some(_) => {}
                        None => {
                            let what = "block comment";
                            return (Delimiters::Unterminated { what, at }, deepest);
                        }
                    }
                }
            }
            'r' if raw_string_start(&code[at..]).is_some() => {
                let hashes = raw_string_start(&code[at..]).unwrap_or(0);
                let body = at + 2 + hashes;
                let close = format!("\"{}", "#".repeat(hashes));
                match code[body..].find(&close) {
                    Some(end) => {
                        let stop = body + end + close.len();
                        while chars.peek().is_some_and(|(i, _)| *i < stop) {
                            chars.next();
                        }
                    }
                    None => {
                        let what = "raw string";
                        return (Delimiters::Unterminated { what, at }, deepest);
                    }
                }
            }
            '"' => {
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if !closed {
                    let what = "double quote string";
                    return (Delimiters::Unterminated { what, at }, deepest);
                }
            }
            '\'' => {
                // A char literal ('x', '\n', '{') is skipped; a lifetime ('a) is not one.
                let mut ahead = chars.clone();
                match (ahead.next().map(|p| p.1), ahead.next().map(|p| p.1)) {
                    (Some('\\'), _) => {
                        chars.next();
                        chars.next();
                        while chars.next().is_some_and(|(_, c)| c != '\'') {}
                    }
                    (Some(_), Some('\'')) => {
                        chars.next();
                        chars.next();
                    }
                    _ => {}
                }
            }
            '(' | '[' | '{' => {
                open.push((c, at));
                deepest = deepest.max(open.len());
            }
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if open.pop().map(|o| o.0) != Some(want) {
                    return (Delimiters::Stray { found: c, at }, deepest);
                }
            }
            _ => {}
        }
    }
    if open.is_empty() {
        (Delimiters::Balanced, deepest)
    } else {
        (Delimiters::Open(open), deepest)
    }
}

/// The number of `#`s of a raw string literal starting here (`r"`, `r#"`, …); an
/// identifier that starts with `r` is not one.
fn raw_string_start(text: &str) -> Option<usize> {
    let rest = text.strip_prefix('r')?;
    let hashes = rest.chars().take_while(|c| *c == '#').count();
    rest[hashes..].starts_with('"').then_some(hashes)
}

/// The 1-based line and 0-based column (in characters) of a byte offset.
pub fn line_column(code: &str, at: usize) -> (usize, usize) {
    let before = &code[..at.min(code.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count();
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_is_left_open_or_stray() {
        assert_eq!(
            scan("f(a[1], \"(\", '{', /* ( */ b) // ["),
            Delimiters::Balanced
        );
        assert_eq!(scan("drop(42); drop("), Delimiters::Open(vec![('(', 14)]));
        assert_eq!(scan("a)"), Delimiters::Stray { found: ')', at: 1 });
        assert_eq!(scan("(]"), Delimiters::Stray { found: ']', at: 1 });
        assert!(matches!(
            scan("\"abc"),
            Delimiters::Unterminated { at: 0, .. }
        ));
        assert!(matches!(scan("/* /* */"), Delimiters::Unterminated { .. }));
        assert_eq!(
            scan("r#\"a \" ( \"#; fn f<'a>(x: &'a str) {}"),
            Delimiters::Balanced
        );
        assert_eq!(scan("let raw = r;"), Delimiters::Balanced);
        assert_eq!(line_column("ab\ncd(", 5), (2, 2));
        assert_eq!(deepest("f(a[{1}]) (b)"), 3);
    }
}
