//! `%time` and `%timeit` (IPython's): the code after the magic, timed once or
//! repeated. The code is what follows the name on the line, then the lines after.

use super::spec::{Line, Spec, Spelling};
use super::{Magic, Then};
use crate::compile::Timing;
use std::borrow::Cow;

/// `%time CODE` / `%%time`: CPU and wall time of the run, compile time apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Time<'a> {
    pub code: Cow<'a, str>,
}

pub const TIME: Spec = Spec {
    names: &["time"],
    spelling: Spelling::LineOrCell,
    usage: &["%time CODE, %%time"],
    help: &["CPU and wall time of one run (compile time shown apart)"],
    read: |line| {
        Ok(Magic::Time(Time {
            code: timed(line, line.after_name),
        }))
    },
};

impl<'a> Time<'a> {
    pub(super) fn apply(self) -> Then<'a> {
        Then::Rust(self.code, Timing::Once)
    }
}

/// `%timeit [-n N] [-r R] CODE` / `%%timeit`: repeated runs, IPython's report.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeit<'a> {
    /// Loops per run; chosen from a first run when not given.
    pub loops: Option<u64>,
    pub runs: u32,
    pub code: Cow<'a, str>,
}

pub const TIMEIT: Spec = Spec {
    names: &["timeit"],
    spelling: Spelling::LineOrCell,
    usage: &["%timeit [-n N] [-r R] CODE, %%timeit"],
    help: &["mean ± std. dev. over R runs of N loops (N chosen if not given)"],
    read: |line| Timeit::parse(line).map(Magic::Timeit),
};

impl<'a> Timeit<'a> {
    fn parse(line: &Line<'a>) -> Result<Self, String> {
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
        Ok(Timeit {
            loops,
            runs,
            code: timed(line, code),
        })
    }

    pub(super) fn apply(self) -> Then<'a> {
        let Timeit { loops, runs, code } = self;
        Then::Rust(code, Timing::Repeat { loops, runs })
    }
}

/// The code a timing magic times: `code` (from its line), then the lines after.
fn timed<'a>(line: &Line<'a>, code: &'a str) -> Cow<'a, str> {
    match (code.is_empty(), line.rest.is_empty()) {
        (true, _) => line.rest.into(),
        (false, true) => code.into(),
        (false, false) => format!("{code}\n{}", line.rest).into(),
    }
}
