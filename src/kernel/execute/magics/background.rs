//! `%wait` and `%pending`: the background runs that `%%parallel … --noblock`
//! starts (the runs themselves are `execute::background`'s).

use super::super::{CellError, Executor};
use super::spec::{Spec, Spelling};
use super::{Cx, Magic, Then};

/// `%wait [NAME …]`: waits for background runs, shows their output and binds
/// their values as `--out` would.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// The runs to wait for; every run when empty.
    pub names: Vec<String>,
}

/// `%pending`: the background runs not yet waited for.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending;

pub const WAIT: Spec = Spec {
    names: &["wait"],
    spelling: Spelling::Line,
    usage: &["%wait [NAME ...]"],
    help: &[
        "wait for background runs (--noblock; all when none is named), show their",
        "output and bind NAME as --out does; interrupt stops the run waited for",
    ],
    read: |line| {
        for n in &line.args {
            let ok = n
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && n.chars().all(|c| c.is_alphanumeric() || c == '_');
            if !ok {
                return Err(format!(
                    "%wait takes the names of background runs, not `{n}`"
                ));
            }
        }
        Ok(Magic::Wait(Wait {
            names: line.args.iter().map(|s| s.to_string()).collect(),
        }))
    },
};

pub const PENDING: Spec = Spec {
    names: &["pending"],
    spelling: Spelling::Line,
    usage: &["%pending"],
    help: &["the background runs not yet waited for: where, state, time, progress"],
    read: |line| match line.args.as_slice() {
        [] => Ok(Magic::Pending(Pending)),
        _ => Err("%pending takes no arguments".into()),
    },
};

impl Wait {
    pub(super) async fn apply<'a>(
        self,
        ex: &mut Executor,
        cx: &mut Cx<'_>,
    ) -> Result<Then<'a>, CellError> {
        ex.wait_background(&self.names, cx.sink, cx.irq).await?;
        Ok(Then::Rest)
    }
}

impl Pending {
    pub(super) fn apply<'a>(self, ex: &mut Executor, cx: &mut Cx<'_>) -> Then<'a> {
        cx.sink.stdout(ex.pending_text().as_bytes());
        Then::Rest
    }
}
