//! `%opt`, `%edition`, `%efmt` and `%timing`: how later cells are compiled and
//! shown. Alone, each of the first three shows its setting and whether it is the
//! default.

use super::super::Executor;
use super::spec::{Line, Spec, Spelling};
use super::{Cx, Magic, Then};
use crate::compile::edition;
use crate::compile::error_format::ErrorFormat;
use crate::compile::session::Settings;

/// `%opt` alone shows the level; `%opt N` pins it; `%opt auto` goes back to tiered
/// compilation (the default).
#[derive(Debug, Clone, PartialEq)]
pub enum Opt {
    Show,
    Pin(u8),
    Auto,
}

pub const OPT: Spec = Spec {
    names: &["opt"],
    spelling: Spelling::Line,
    usage: &["%opt [0-3|auto]"],
    help: &[
        "show or pin rustc's optimisation level for cells; auto (the default):",
        "level 1, and level 3 for code that ran longer than 100 ms",
    ],
    read: |line| Opt::parse(line).map(Magic::Opt),
};

impl Opt {
    fn parse(line: &Line) -> Result<Self, String> {
        match line.args.as_slice() {
            [] => Ok(Opt::Show),
            ["auto"] => Ok(Opt::Auto),
            [n] => match n.parse::<u8>() {
                Ok(n) if n <= 3 => Ok(Opt::Pin(n)),
                _ => Err(format!("%opt takes a level from 0 to 3 or auto, not {n:?}")),
            },
            _ => Err("%opt takes one level from 0 to 3, or auto".into()),
        }
    }

    pub(super) fn apply<'a>(self, ex: &mut Executor, cx: &mut Cx) -> Then<'a> {
        match self {
            Opt::Pin(n) => ex.set(|s| {
                s.opt_level = n;
                s.tiered = false;
            }),
            Opt::Auto => ex.set(|s| {
                let default = Settings::default();
                s.opt_level = default.opt_level;
                s.tiered = default.tiered;
            }),
            Opt::Show => cx.sink.stdout(ex.opt_text().as_bytes()),
        }
        Then::Rest
    }
}

impl Executor {
    /// What `%opt` alone says: the level, whether it is pinned, what is hot.
    fn opt_text(&self) -> String {
        let s = &self.settings;
        if !s.tiered {
            return format!(
                "opt-level {} (pinned by %opt; %opt auto tiers again)\n",
                s.opt_level
            );
        }
        let hot = self
            .session
            .as_ref()
            .map(|s| s.hot_names())
            .unwrap_or_default();
        let hot = if hot.is_empty() {
            "nothing has run long yet".to_string()
        } else {
            format!("hot now: {}", hot.join(", "))
        };
        format!(
            "opt-level {} (the default: the least compile plus run time in bench/opt.py), \
             tiered: code that ran longer than {} ms, and cells that call it, build at \
             opt-level {}; {hot}\n",
            s.opt_level,
            crate::compile::session::HOT_RUN.as_millis(),
            crate::compile::session::HOT_LEVEL,
        )
    }
}

/// `%edition` alone shows the edition cells use; `%edition 2021` sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Edition(pub Option<edition::Edition>);

pub const EDITION: Spec = Spec {
    names: &["edition"],
    spelling: Spelling::Line,
    usage: &["%edition [2018|2021|2024]"],
    help: &["show or set the Rust edition of later cells (2024 by default)"],
    read: |line| Edition::parse(line).map(Magic::Edition),
};

impl Edition {
    fn parse(line: &Line) -> Result<Self, String> {
        let editions = || {
            edition::Edition::ALL
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match line.args.as_slice() {
            [] => Ok(Edition(None)),
            [e] => match edition::Edition::parse(e) {
                Some(e) => Ok(Edition(Some(e))),
                None => Err(format!("%edition takes one of {}, not {e:?}", editions())),
            },
            _ => Err(format!("%edition takes one edition: {}", editions())),
        }
    }

    pub(super) fn apply<'a>(self, ex: &mut Executor, cx: &mut Cx) -> Then<'a> {
        match self.0 {
            Some(e) => ex.set(|s| s.edition = e),
            None => {
                let how = if ex.settings.edition == Settings::default().edition {
                    " (the default, as `cargo new` makes packages)"
                } else {
                    ""
                };
                cx.sink
                    .stdout(format!("edition {}{how}\n", ex.settings.edition).as_bytes());
            }
        }
        Then::Rest
    }
}

/// `%efmt [{}|{:?}|{:#?}]`: how errors that reach a cell's `?` are shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Efmt(pub Option<ErrorFormat>);

pub const EFMT: Spec = Spec {
    names: &["efmt"],
    spelling: Spelling::Line,
    usage: &["%efmt [{}|{:?}|{:#?}]"],
    help: &["show or set how an error that reaches a cell's ? is shown"],
    read: |line| Efmt::parse(line).map(Magic::Efmt),
};

impl Efmt {
    fn parse(line: &Line) -> Result<Self, String> {
        match line.args.as_slice() {
            [] => Ok(Efmt(None)),
            [f] => match ErrorFormat::parse(f) {
                Some(f) => Ok(Efmt(Some(f))),
                None => Err(format!(
                    "%efmt takes {{}} (an error's message and causes), {{:?}} or {{:#?}} (its Debug form), not {f:?}"
                )),
            },
            _ => Err("%efmt takes one format: {}, {:?} or {:#?}".into()),
        }
    }

    pub(super) fn apply<'a>(self, ex: &mut Executor, cx: &mut Cx) -> Then<'a> {
        match self.0 {
            Some(f) => ex.set(|s| s.error_format = f),
            None => cx.sink.stdout(
                format!(
                    "errors that reach a `?` are shown as {}\n",
                    ex.settings.error_format.as_str()
                )
                .as_bytes(),
            ),
        }
        Then::Rest
    }
}

/// `%timing` (evcxr's `:timing`): turns the time each cell took on or off.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowTiming;

pub const TIMING: Spec = Spec {
    names: &["timing"],
    spelling: Spelling::Line,
    usage: &["%timing"],
    help: &["show how long each cell took to compile and run (on/off)"],
    read: |_| Ok(Magic::Timing(ShowTiming)),
};

impl ShowTiming {
    pub(super) fn apply<'a>(self, ex: &mut Executor, cx: &mut Cx) -> Then<'a> {
        ex.show_timing = !ex.show_timing;
        let on = if ex.show_timing { "on" } else { "off" };
        cx.sink.stdout(format!("timing: {on}\n").as_bytes());
        Then::Rest
    }
}

impl Executor {
    /// Changes how later cells are compiled, in this session and the ones after it.
    fn set(&mut self, change: impl FnOnce(&mut Settings)) {
        change(&mut self.settings);
        if let Some(s) = &mut self.session {
            s.settings = self.settings;
        }
    }
}
