//! `%%c` and `%%cpp`: the cell is C or C++ source; its functions join the session
//! for later Rust cells (see `compile::native`).

use super::super::{CellError, Executor};
use super::spec::{Line, Spec, Spelling};
use super::{Cx, Magic, Then};
use crate::compile::native::{self, Flags, Lang};
use crate::compile::Timing;

/// A native cell: its language, the compiler's flags and the source.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeCell<'a> {
    pub lang: Lang,
    pub flags: Flags,
    pub source: &'a str,
}

pub const C: Spec = Spec {
    names: &["c"],
    spelling: Spelling::Cell,
    usage: &["%%c [-O3] [-I DIR] [-D NAME=VALUE] [-L DIR] [-l NAME] [-std=c11]"],
    help: &[
        "C source, built by cc into a library; its functions are then",
        "Rust functions of later cells (unsafe { add_ints(40, 2) })",
    ],
    read: |line| NativeCell::parse(Lang::C, line).map(Magic::Native),
};

pub const CPP: Spec = Spec {
    names: &["cpp"],
    spelling: Spelling::Cell,
    usage: &["%%cpp [the flags of %%c]"],
    help: &["C++ source, built by c++; its extern \"C\" functions join as for %%c"],
    read: |line| NativeCell::parse(Lang::Cpp, line).map(Magic::Native),
};

impl<'a> NativeCell<'a> {
    fn parse(lang: Lang, line: &Line<'a>) -> Result<Self, String> {
        Ok(NativeCell {
            lang,
            flags: Flags::parse(&line.args)?,
            source: line.rest,
        })
    }

    /// Builds the library, then the Rust that declares its functions as a cell of
    /// its own (a layer later cells link).
    pub(super) async fn apply<'t>(
        self,
        ex: &mut Executor,
        cx: &mut Cx<'_>,
    ) -> Result<Then<'t>, CellError> {
        if self.source.trim().is_empty() {
            return Err(CellError::Magic(format!(
                "{} needs a body: the source to build",
                self.lang.magic()
            )));
        }
        let session = ex.session(cx.irq, Some(cx.sink)).await?;
        let dir = session.cells_dir().to_path_buf();
        let built = tokio::select! {
            r = native::build(self.lang, &self.flags, self.source, &dir) => r?,
            _ = cx.irq.changed() => {
                return Err(CellError::Interrupted(" while it was compiling".into()))
            }
        };
        for note in &built.notes {
            cx.sink.stderr(format!("ferrocell: {note}\n").as_bytes());
        }
        if built.rust.trim().is_empty() {
            return Ok(Then::Done);
        }
        if let Some(s) = ex.session.as_mut() {
            s.add_native(built.lib.clone());
        }
        ex.run_rust(cx.input, cx.sink, cx.irq, &built.rust, Timing::None, None)
            .await?;
        Ok(Then::Done)
    }
}
