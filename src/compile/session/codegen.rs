//! Writing a unit's crate: the imports, the layer's items, and the entry function
//! that takes the session's variables, runs the statements (in the closure or async
//! block that `?`, `.await` and the timing magics need), shows the value and puts
//! the variables back whatever happened.

use super::snapshots::SNAPSHOT_GLUE;
use super::unit::{Unit, VarPlan};
use crate::compile::boxed;
use crate::compile::cell::{ParsedCell, Timing};
use crate::compile::diagnostics::{Origin, SourceMap};
use crate::compile::error_format::ErrorFormat;
use crate::compile::try_rewrite;

/// Writes the crate for a cell: imports, items (for a layer), and the entry function
/// holding the statements and the display of the value.
pub(super) fn generate(
    unit: &Unit,
    symbol: &str,
    plan: &VarPlan,
    probes: bool,
    snapshots: bool,
) -> SourceMap {
    let parsed = unit.parsed;
    let mut m = SourceMap::default();
    m.set_cell_source(&parsed.source);
    write_items(&mut m, unit, snapshots);
    write_entry(&mut m, unit, symbol, plan);
    // No failure may take the session's variables with it: the cell runs in a
    // closure that borrows them, and they are put back whether it ends, panics or
    // stops at a `?`.
    let guarded = !plan.take.is_empty();
    if guarded {
        m.glue("let mut __fc_failed = false;");
        m.glue("let __fc_caught = ::ferrocell::__vars::guarded(::std::boxed::Box::new(|| {");
    }
    match parsed.timing {
        Timing::None => {}
        Timing::Once => m.glue("let __fc_timer = ::ferrocell::__timing::Timer::start();"),
        Timing::Repeat { .. } => m.glue("let mut __fc_body = || {"),
    }
    // `?` and `.await` need the body in a container of its own: a closure returning
    // a `Result`, or an async block that the runner drives to its end.
    let contained = parsed.uses_try || parsed.uses_await;
    if parsed.uses_try && unit.error_format != ErrorFormat::default() {
        m.glue(&format!(
            "::ferrocell::__runner::set_error_format({});",
            unit.error_format.code()
        ));
    }
    let error = if unit.debug_errors {
        "::ferrocell::__runner::DebugError"
    } else {
        "::std::boxed::Box<dyn ::std::error::Error>"
    };
    if contained {
        let open = if !parsed.uses_await {
            "(|| {"
        } else if unit.tokio_name.is_some() {
            "__fc_tokio.block_on(::ferrocell::__async::interruptible(async {"
        } else {
            "::ferrocell::__async::block_on(async {"
        };
        m.glue(&format!(
            "let __fc_result: ::std::result::Result<(), {error}> = {open}"
        ));
    }
    let staged = |site: usize| -> Vec<(String, String)> {
        staged_at(parsed, plan, site)
            .into_iter()
            .map(|(var, ty)| {
                let put = plan.put_stmt(&var, &ty);
                (var, put)
            })
            .collect()
    };
    for (i, s) in parsed.statements.iter().enumerate() {
        try_rewrite::emit(&mut m, s, &parsed.try_sites, i, &staged);
    }
    if probes {
        for var in &parsed.bindings {
            // A one-element tuple makes rustc print the element's full path in a note.
            m.tagged(&format!("let _: () = ({var},);"), &format!("probe:{var}"));
        }
        for (var, arity) in &parsed.closures {
            let args = plan
                .sig_args
                .iter()
                .find(|(n, _)| n == var)
                .map(|(_, a)| a.as_slice());
            m.tagged(&boxed::sig_probe(var, *arity, args), &format!("sig:{var}"));
        }
    }
    let by_ref = parsed.value_is_place && parsed.timing == Timing::None;
    m.glue(if by_ref {
        "let __fc_value = &("
    } else {
        "let __fc_value = {"
    });
    match &parsed.value {
        Some(v) => try_rewrite::emit(
            &mut m,
            v,
            &parsed.try_sites,
            parsed.statements.len(),
            &staged,
        ),
        None => m.glue("()"),
    }
    m.glue(if by_ref { ");" } else { "};" });
    write_timing_end(&mut m, parsed.timing);
    let taken = |n: &String| plan.take.iter().any(|(t, _)| t == n);
    let repeat = matches!(parsed.timing, Timing::Repeat { .. });
    let rebound = |n: &String| !repeat && parsed.bindings.contains(n);
    let put_back = |m: &mut SourceMap, which: &dyn Fn(&String) -> bool| {
        for (var, ty) in plan.put.iter().filter(|(v, _)| which(v)) {
            m.tagged(&plan.put_stmt(var, ty), &format!("put:{var}"));
        }
    };
    // New bindings (and taken ones the cell binds anew) are put back where they are
    // in scope; the taken ones after the guard, whatever happened.
    let new_ones = |v: &String| !taken(v) || rebound(v);
    // The value is shown before any new binding is put in the store: if showing it
    // panics, the store still agrees with what the kernel keeps.
    m.glue(
        "{\n\
         use ::ferrocell::__value::{ViaDebug as _, ViaTypeName as _, FallbackEvcxrDisplay as _};\n\
         let __fc_shown: ::ferrocell::__value::Shown = (&__fc_value).evcxr_display().into();\n\
         if !__fc_shown.0 { ::ferrocell::__value::emit((&::ferrocell::__value::Wrap(&__fc_value)).__fc_repr()); }\n\
         }",
    );
    if contained {
        // The bindings live in the container: they are put back before it returns.
        put_back(&mut m, &new_ones);
        if !guarded {
            put_back(&mut m, &|v| !new_ones(v));
        }
        m.glue(&format!(
            "::std::result::Result::<(), {error}>::Ok(())\n}}){};",
            match (parsed.uses_await, unit.tokio_name.is_some()) {
                (false, _) => "()",
                (true, false) => "",
                (true, true) => ")",
            }
        ));
        let failed = if guarded { "__fc_failed = true; " } else { "" };
        m.glue(&format!(
            "if let ::std::result::Result::Err(e) = __fc_result {{ \
             ::ferrocell::__runner::CellFailure::report(&e); {failed}return; }}"
        ));
    }
    if guarded {
        if !contained {
            put_back(&mut m, &new_ones);
        }
        m.glue("}));");
        put_back(&mut m, &|v| !new_ones(v));
        m.glue("if __fc_failed || __fc_caught.is_some() {");
        // A rebound variable keeps its old value after a panic (even one after the
        // cell put its new value), and after a `?` unless that `?` kept the new one.
        for (var, ty) in &plan.keep {
            m.tagged(
                &format!(
                    "if __fc_caught.is_some() || !::ferrocell::__vars::has({var:?}) {{ ::ferrocell::__vars::put::<{ty}>({var:?}, {var}); }}"
                ),
                &format!("keep:{var}"),
            );
        }
        m.glue("}");
        m.glue("if let ::std::option::Option::Some(__fc_panic) = __fc_caught {");
        m.glue("::std::panic::resume_unwind(__fc_panic);\n}");
    } else if !contained {
        put_back(&mut m, &|_| true);
    }
    m.glue("}");
    m
}

/// The crate's head: lints, the chain's imports, extern crates, the snapshot glue,
/// and the items (a layer's), each mapped back to the cell it came from.
fn write_items(m: &mut SourceMap, unit: &Unit, snapshots: bool) {
    // The second: a body that only loops (`loop {}`) has `()` as its type, as in
    // any closure; rustc's future-compatibility lint about that is an error by default.
    m.glue("#![allow(warnings)]");
    m.glue("#![allow(unknown_lints, dependency_on_unit_never_type_fallback)]");
    let vis = if unit.is_layer { "pub " } else { "" };
    match unit.base {
        Some(b) => m.glue(&format!("{vis}use {}::*;", b.crate_name())),
        None => m.glue(&format!("{vis}use ::ferrocell::prelude::*;")),
    }
    for e in &unit.externs {
        m.glue(&format!("extern crate {e};"));
    }
    if snapshots && unit.glue {
        m.glue(SNAPSHOT_GLUE);
    }
    let newest = unit.items.iter().map(|i| i.cell).max();
    for (index, it) in unit.items.iter().enumerate() {
        let origin_cell = (Some(it.cell) != newest).then_some(it.cell);
        if it.serde {
            m.tagged(
                "#[derive(::serde_derive::Serialize, ::serde_derive::Deserialize)]",
                &format!("derive:{index}"),
            );
        }
        let s = &it.item.snippet;
        m.code(
            &s.text,
            s.column,
            Origin {
                cell: origin_cell,
                line: s.line,
            },
        );
        m.mark_inserted(&s.inserted);
    }
}

/// The entry function's start: the session's tokio runtime entered, stale
/// variables dropped, and the variables the cell uses taken out of the store.
fn write_entry(m: &mut SourceMap, unit: &Unit, symbol: &str, plan: &VarPlan) {
    m.glue(&format!("#[unsafe(no_mangle)]\npub fn {symbol}() {{"));
    if let Some(tokio) = &unit.tokio_name {
        // One multi-thread runtime for the session, entered by every cell: tasks a
        // cell spawns run on after it, and later cells can await their handles.
        m.glue(&format!(
            "let __fc_tokio = ::ferrocell::__async::shared(|| ::{tokio}::runtime::Builder::new_multi_thread().enable_all().build().expect(\"a tokio runtime for the session\"));\n\
             let __fc_tokio_entered = __fc_tokio.enter();"
        ));
    }
    for var in &plan.drop {
        m.glue(&format!("::ferrocell::__vars::remove({var:?});"));
    }
    for (var, ty) in &plan.take {
        m.tagged(
            &format!(
                "let {}{var}: {ty} = ::ferrocell::__vars::take::<{ty}>({var:?});",
                if plan.mutable.contains(var) {
                    "mut "
                } else {
                    ""
                }
            ),
            // An immutable one's tag lets an error's "make it mutable" help be told
            // in the user's terms.
            &if plan.mutable.contains(var) {
                format!("take:{var}")
            } else {
                format!("take-imm:{var}")
            },
        );
    }
}

/// After the value: the timing magics' report, or the repeated runs of `%timeit`.
fn write_timing_end(m: &mut SourceMap, timing: Timing) {
    match timing {
        Timing::None => {}
        Timing::Once => m.glue("__fc_timer.report();"),
        Timing::Repeat { loops, runs } => {
            let loops = match loops {
                Some(n) => format!("::std::option::Option::Some({n})"),
                None => "::std::option::Option::None".into(),
            };
            m.glue(&format!(
                "::std::hint::black_box(__fc_value);\n}};\n\
                 ::ferrocell::__timing::timeit(&mut || __fc_body(), {loops}, {runs});\n\
                 let __fc_value = ();"
            ));
        }
    }
}

/// The new bindings that the failing `?` number `site` keeps: those the cell binds
/// for the last time before that `?`'s statement, whose put-back compiles there
/// (see [`VarPlan::unstaged`]), with their types.
fn staged_at(parsed: &ParsedCell, plan: &VarPlan, site: usize) -> Vec<(String, String)> {
    if plan.no_staging {
        return vec![];
    }
    let statement = parsed.try_sites[site].statement;
    let shadowed = &parsed.try_sites[site].shadowed;
    let last_bound = |n: &String| parsed.binds_at.iter().rposition(|b| b.contains(n));
    plan.stageable
        .iter()
        .filter(|(n, _)| !plan.unstaged.iter().any(|(s, u)| *s == site && u == n))
        .filter(|(n, _)| !shadowed.contains(n))
        .filter(|(n, _)| last_bound(n).is_some_and(|at| at < statement))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::cell;

    #[test]
    fn generated_code_maps_back_to_cell_lines() {
        let parsed = cell::parse("let a = 1;\n\na + 1").unwrap();
        let unit = Unit::statements(&parsed, None);
        let m = generate(&unit, "__fc_run_x", &VarPlan::default(), false, false);
        let line = m.text.lines().position(|l| l.contains("a + 1")).unwrap() + 1;
        assert_eq!(
            m.origin(line),
            Some(Origin {
                cell: None,
                line: 3
            })
        );
        assert!(m.text.contains("use ::ferrocell::prelude::*;"));
    }
}
