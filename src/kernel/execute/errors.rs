//! How a cell fails, as the executor knows it: one enum, one variant a way of
//! failing. Code that handles a failure matches on the variant; the wire's
//! `error` content (ename, evalue, traceback) is made from it only at the edge,
//! when the reply and the error output are written ([`CellError::to_wire`]).

use crate::cluster::client::ClientError;
use crate::cluster::launcher::LaunchError;
use crate::compile::CompileError;
use crate::exec::RunnerError;
use crate::protocol::messages::ErrorContent;

#[derive(Debug, thiserror::Error)]
pub enum CellError {
    /// rustc refused the cell; `rendered` are its errors in the cell's terms.
    #[error("{summary}")]
    Compile {
        summary: String,
        rendered: Vec<String>,
    },
    /// A compile that failed for another reason (rustc missing, a file not written).
    #[error(transparent)]
    Build(CompileError),
    #[error("{0}")]
    Syntax(String),
    /// Stopped by the user; the detail says where.
    #[error("the cell was interrupted{0}")]
    Interrupted(String),
    /// The runner died while the cell ran.
    #[error("{0}")]
    RunnerDied(String),
    /// The runner could not be handed the cell.
    #[error("the runner could not take the cell: {0}")]
    NotTaken(String),
    /// No runner could be started for the cell.
    #[error(transparent)]
    RunnerStart(#[from] RunnerError),
    /// The cell's library did not load in the runner.
    #[error("{0}")]
    Load(String),
    /// An error that reached the cell's `?`.
    #[error("{0}")]
    Failed(String),
    /// A panic, with the place in the user's cell (the traceback's first line).
    #[error("{message}")]
    Panic { message: String, at: String },
    /// Ranks of a `%%parallel` run failed: a summary, then a line per rank.
    #[error("{summary}")]
    Parallel { summary: String, ranks: Vec<String> },
    #[error("{0}")]
    Toolchain(String),
    #[error("{0}")]
    Dep(String),
    #[error("{0}")]
    Magic(String),
    /// A `%` line that names no magic (the line itself).
    #[error("{0} is not a ferrocell magic; %lsmagic lists them")]
    UnknownMagic(String),
    #[error("{0}")]
    Vars(String),
    #[error("{0}")]
    Reset(String),
    /// A cluster command or cell that cannot go on, in the executor's words.
    #[error("{0}")]
    Cluster(String),
    /// The connection to the cluster's controller failed.
    #[error(transparent)]
    Controller(#[from] ClientError),
    /// The cluster's processes did not start.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A `%%c` or `%%cpp` cell could not be built or declared for other reasons
    /// than its code (no compiler, no libclang).
    #[error("{0}")]
    Native(String),
    /// Another failure, with what the session did about it (variables restored
    /// or lost with a runner) told after it.
    #[error("{0}")]
    Noted(Box<CellError>, Vec<String>),
}

impl From<CompileError> for CellError {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Code { summary, rendered } => CellError::Compile { summary, rendered },
            e => CellError::Build(e),
        }
    }
}

impl From<crate::compile::native::NativeError> for CellError {
    fn from(e: crate::compile::native::NativeError) -> Self {
        use crate::compile::native::NativeError;
        match e {
            NativeError::Code { summary, rendered } => CellError::Compile { summary, rendered },
            e => CellError::Native(e.to_string()),
        }
    }
}

impl CellError {
    /// This failure, with lines that say what happened to the session because of it.
    pub fn noted(self, notes: Vec<String>) -> CellError {
        match self {
            _ if notes.is_empty() => self,
            CellError::Noted(inner, mut before) => {
                before.extend(notes);
                CellError::Noted(inner, before)
            }
            e => CellError::Noted(Box::new(e), notes),
        }
    }

    /// The name clients show (Jupyter's `ename`).
    pub fn ename(&self) -> &'static str {
        match self {
            CellError::Compile { .. } | CellError::Build(_) => "CompileError",
            CellError::Syntax(_) => "SyntaxError",
            CellError::Interrupted(_) => "KeyboardInterrupt",
            CellError::RunnerDied(_) | CellError::NotTaken(_) => "RunnerDied",
            CellError::RunnerStart(_) => "RunnerError",
            CellError::Load(_) => "LoadError",
            CellError::Failed(_) => "Error",
            CellError::Panic { .. } => "Panic",
            CellError::Parallel { .. } => "ParallelError",
            CellError::Toolchain(_) => "ToolchainError",
            CellError::Dep(_) => "DepError",
            CellError::Magic(_) => "MagicError",
            CellError::UnknownMagic(_) => "UnknownMagic",
            CellError::Vars(_) => "VarsError",
            CellError::Reset(_) => "ResetError",
            CellError::Cluster(_) | CellError::Controller(_) | CellError::Launch(_) => {
                "ClusterError"
            }
            CellError::Native(_) => "NativeError",
            CellError::Noted(inner, _) => inner.ename(),
        }
    }

    /// The wire's `error` content: what the reply and the error output carry.
    pub fn to_wire(&self) -> ErrorContent {
        let ename = self.ename();
        let evalue = self.to_string();
        let traceback = match self {
            CellError::Compile { rendered, .. } if !rendered.is_empty() => rendered.clone(),
            CellError::RunnerDied(what) => vec![
                format!("RunnerDied: {what}"),
                "Every item defined so far is kept; the next cell runs in a fresh runner.".into(),
            ],
            CellError::Panic { message, at } => vec![at.clone(), message.clone()],
            CellError::Parallel { summary, ranks } => {
                std::iter::once(format!("ParallelError: {summary}"))
                    .chain(ranks.iter().map(|l| format!("  {l}")))
                    .collect()
            }
            CellError::Noted(inner, notes) => {
                let mut t = inner.to_wire().traceback;
                t.extend(notes.iter().cloned());
                t
            }
            _ => vec![format!("{ename}: {evalue}")],
        };
        ErrorContent {
            ename: ename.into(),
            evalue,
            traceback,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_keeps_its_wire_name_and_notes_follow_its_traceback() {
        let died = CellError::RunnerDied("the runner process was killed by signal SIGSEGV".into())
            .noted(vec![
                "Variables restored as of the last successful cell: a".into()
            ]);
        let wire = died.to_wire();
        assert_eq!(wire.ename, "RunnerDied");
        assert_eq!(
            wire.evalue,
            "the runner process was killed by signal SIGSEGV"
        );
        assert_eq!(wire.traceback.len(), 3);
        assert!(wire.traceback[2].starts_with("Variables restored"));
        let stopped = CellError::Interrupted(" while it was compiling".into()).to_wire();
        assert_eq!(stopped.ename, "KeyboardInterrupt");
        assert_eq!(
            stopped.traceback,
            vec!["KeyboardInterrupt: the cell was interrupted while it was compiling"]
        );
        let parallel = CellError::Parallel {
            summary: "1 of 2 ranks failed".into(),
            ranks: vec!["rank 1: panicked: no".into()],
        };
        assert_eq!(
            parallel.to_wire().traceback,
            vec![
                "ParallelError: 1 of 2 ranks failed",
                "  rank 1: panicked: no"
            ]
        );
        assert_eq!(
            CellError::UnknownMagic("%frob".into()).to_string(),
            "%frob is not a ferrocell magic; %lsmagic lists them"
        );
    }
}
