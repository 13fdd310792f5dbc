//! `%explain [E0308]`: rustc's explanation of an error code (the last error's).

use super::super::{CellError, Executor};
use super::spec::{Line, Spec, Spelling};
use super::{Cx, Magic, Then};

#[derive(Debug, Clone, PartialEq)]
pub struct Explain(pub Option<String>);

pub const SPEC: Spec = Spec {
    names: &["explain"],
    spelling: Spelling::Line,
    usage: &["%explain [E0308]"],
    help: &["rustc's explanation of an error code (default: the last error's)"],
    read: |line| Explain::parse(line).map(Magic::Explain),
};

/// `E0308` (or `e0308`): a rustc error code.
fn is_error_code(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some('E' | 'e')) && text.len() == 5 && chars.all(|c| c.is_ascii_digit())
}

impl Explain {
    fn parse(line: &Line) -> Result<Self, String> {
        match line.args.as_slice() {
            [] => Ok(Explain(None)),
            [code] if is_error_code(code) => Ok(Explain(Some(code.to_uppercase()))),
            _ => {
                Err("%explain takes one error code, like E0308 (or none: the last error's)".into())
            }
        }
    }

    pub(super) async fn apply<'a>(
        self,
        ex: &mut Executor,
        cx: &mut Cx<'_>,
    ) -> Result<Then<'a>, CellError> {
        let Some(code) = self.0.or_else(|| ex.last_error_code.clone()) else {
            return Err(CellError::Magic(
                "no error to explain yet: name a code, as in %explain E0308".into(),
            ));
        };
        // Only rustc is needed, not a prepared session.
        let toolchain = crate::compile::toolchain::Toolchain::probe()
            .await
            .map_err(|e| CellError::Toolchain(e.to_string()))?;
        let text = crate::compile::rustc::explain(&toolchain.rustc, &code)
            .await
            .map_err(CellError::Magic)?;
        cx.sink.stdout(text.as_bytes());
        Ok(Then::Rest)
    }
}
