//! What the cursor is on, for completion and inspection: the expression before a
//! `.`, and the code that asks rustc for that expression's type.
//!
//! rustc has no stable completion interface, so the kernel asks it the way it asks
//! for a new variable's type: the code before the cursor, with the expression
//! replaced by a probe that does not type-check (`let _: __FcProbe = (EXPR,);`), and
//! the brackets left open closed. rustc's error names the type; std's docs and the
//! session's items name its members.

use crate::compile::delimiters::{self, Delimiters};

/// The marker type of a probe; rustc's error says "expected `__FcProbe`".
pub const PROBE_MARK: &str = "__FcProbe";

/// The start of the expression that ends at byte `end` (exclusive): identifiers,
/// paths, calls, indexing, macro calls, `?`, and chains of them.
pub fn expression_start(code: &str, end: usize) -> Option<usize> {
    let bytes = code.as_bytes();
    let mut i = end;
    // Skip spaces between the expression and the `.`.
    while i > 0 && bytes[i - 1] == b' ' {
        i -= 1;
    }
    let stop = i;
    loop {
        if i == 0 {
            break;
        }
        let c = bytes[i - 1];
        match c {
            b')' | b']' | b'}' => {
                i = matching_open(code, i - 1)?;
                // `vec![…]`, `foo!(…)`: the macro's name and `!`.
                if i > 0 && bytes[i - 1] == b'!' {
                    i -= 1;
                }
            }
            b'"' => {
                let open = code[..i - 1].rfind('"')?;
                i = open;
            }
            b'>' if code[..i].ends_with("->") => break,
            b'>' => {
                // A turbofish: `collect::<Vec<_>>`.
                let open = matching_angle(code, i - 1)?;
                if !code[..open].ends_with("::") {
                    break;
                }
                i = open;
            }
            b'?' => i -= 1,
            b':' if code[..i].ends_with("::") => i -= 2,
            b'.' if i >= 2 && bytes[i - 2] != b'.' => i -= 1,
            c if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 => {
                i -= 1;
                while i > 0 && !code.is_char_boundary(i) {
                    i -= 1;
                }
            }
            _ => break,
        }
    }
    // A chain cannot start with `.` or `::`.
    let expr = &code[i..stop];
    let trimmed = expr.trim_start_matches(['.', ':']);
    let start = stop - trimmed.len();
    (start < stop).then_some(start)
}

fn matching_open(code: &str, close: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in code[..=close].char_indices().rev() {
        match c {
            ')' | ']' | '}' => depth += 1,
            '(' | '[' | '{' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn matching_angle(code: &str, close: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in code[..=close].char_indices().rev() {
        match c {
            '>' => depth += 1,
            '<' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            ';' | '{' | '}' => return None,
            _ => {}
        }
    }
    None
}

/// The code that makes rustc tell the type of `code[start..end]`: what comes before
/// it, the probe in its place, and the brackets still open closed. `None` when the
/// cursor is inside a string or comment.
pub fn probe_code(code: &str, start: usize, end: usize) -> Option<String> {
    // `:dep` and magic lines are the kernel's, not Rust: blanked, offsets kept.
    let before: String = code[..start]
        .split_inclusive('\n')
        .map(|line| {
            if line.starts_with(':') || line.starts_with('%') {
                line.chars()
                    .map(|c| if c == '\n' { c } else { ' ' })
                    .collect()
            } else {
                line.to_string()
            }
        })
        .collect();
    let before = before.as_str();
    let open = match delimiters::scan(before) {
        Delimiters::Balanced => vec![],
        Delimiters::Open(open) => open,
        Delimiters::Stray { .. } | Delimiters::Unterminated { .. } => return None,
    };
    let mut out = format!(
        "{before}{{ struct {PROBE_MARK}; let _: {PROBE_MARK} = ({},); loop {{}} }}",
        &code[start..end]
    );
    for (c, _) in open.iter().rev() {
        out.push(match c {
            '(' => ')',
            '[' => ']',
            _ => '}',
        });
    }
    out.push(';');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(code: &str) -> &str {
        let dot = code.rfind('.').unwrap();
        let start = expression_start(code, dot).unwrap();
        &code[start..dot]
    }

    #[test]
    fn finds_the_expression_before_the_dot() {
        assert_eq!(receiver("foo()."), "foo()");
        assert_eq!(receiver("let x = vec![1, 2].it"), "vec![1, 2]");
        assert_eq!(receiver("a.b(1).c[0]."), "a.b(1).c[0]");
        assert_eq!(receiver("f(&x, y.len()).z."), "f(&x, y.len()).z");
        assert_eq!(receiver("g(x."), "x");
        assert_eq!(
            receiver("v.iter().collect::<Vec<_>>()."),
            "v.iter().collect::<Vec<_>>()"
        );
        assert_eq!(receiver("\"ab\".to"), "\"ab\"");
        assert_eq!(receiver("s?.len"), "s?");
        assert_eq!(receiver("std::env::args()."), "std::env::args()");
        assert_eq!(expression_start("(1 + ", 5), None);
    }

    #[test]
    fn probes_in_place_and_closes_what_is_open() {
        let code = "fn f(v: Vec<u8>) {\n    g(v.it";
        let dot = code.rfind('.').unwrap();
        let start = expression_start(code, dot).unwrap();
        let probe = probe_code(code, start, dot).unwrap();
        assert_eq!(
            probe,
            "fn f(v: Vec<u8>) {\n    g({ struct __FcProbe; let _: __FcProbe = (v,); loop {} })};"
        );
        assert_eq!(probe_code("let s = \"a", 9, 10), None);
    }
}
