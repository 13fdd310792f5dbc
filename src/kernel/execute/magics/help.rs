//! `%help`, `%lsmagic`, and `exit`/`quit`: what the kernel says about itself, and
//! a terminal client's way out.

use super::spec::{Spec, Spelling};
use super::{Cx, Magic, Then};
use serde_json::json;

/// `%help`: the help text, as a pager payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Help;

pub const HELP: Spec = Spec {
    names: &["help"],
    spelling: Spelling::Line,
    usage: &["%help, :help"],
    help: &["this help"],
    read: |_| Ok(Magic::Help(Help)),
};

impl Help {
    pub(super) fn apply<'a>(self, cx: &mut Cx) -> Then<'a> {
        cx.payload.push(json!({
            "source": "page",
            "data": {"text/plain": super::help_text()},
            "start": 0
        }));
        Then::Rest
    }
}

/// `%lsmagic`: the list of magics.
#[derive(Debug, Clone, PartialEq)]
pub struct LsMagic;

pub const LSMAGIC: Spec = Spec {
    names: &["lsmagic"],
    spelling: Spelling::Line,
    usage: &["%lsmagic"],
    help: &["list the magics"],
    read: |_| Ok(Magic::LsMagic(LsMagic)),
};

impl LsMagic {
    pub(super) fn apply<'a>(self, cx: &mut Cx) -> Then<'a> {
        cx.sink.stdout(format!("{}\n", super::listing()).as_bytes());
        Then::Rest
    }
}

/// A cell that is only `exit` or `quit` (not Rust): asks a terminal client to
/// leave, as in IPython's console.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit;

pub const EXIT: Spec = Spec {
    names: &["exit", "quit"],
    spelling: Spelling::Bare,
    usage: &["exit, quit"],
    help: &["leave jupyter console (a cell of that word alone)"],
    read: |_| Ok(Magic::Exit(Exit)),
};

impl Exit {
    pub(super) fn apply<'a>(self, cx: &mut Cx) -> Then<'a> {
        cx.payload
            .push(json!({"source": "ask_exit", "keepkernel": false}));
        Then::Done
    }
}
