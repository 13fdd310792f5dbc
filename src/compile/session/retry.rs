//! What a failed build changes before it is tried again: serde derives the fields
//! do not allow, errors taken through `Debug`, boxed closures narrowed to `FnMut` or
//! `FnOnce`, and put-backs or `?` stagings that do not compile.

use super::layers::LayerItem;
use super::unit::{Unit, VarPlan};
use super::variables::VarOutcome;
use super::{code_error, CompileError};
use crate::compile::boxed::{self, Wrap};
use crate::compile::diagnostics::SourceMap;
use crate::compile::rustc;
use crate::compile::vars::Kept;
use std::collections::HashSet;

/// After a build that failed with rustc's errors: changes what the next try builds
/// (`Ok`: try again), or returns the errors when nothing is left to change.
pub(super) fn after_errors(
    diags: Vec<rustc::Diagnostic>,
    map: &SourceMap,
    unit: &mut Unit,
    plan: &mut VarPlan,
    puts: &mut Vec<(String, Kept)>,
    stageable: &mut [(String, Kept)],
    outcome: &mut VarOutcome,
) -> Result<(), CompileError> {
    let parsed = unit.parsed;
    for d in &diags {
        let tags: Vec<(bool, Option<&str>)> = d
            .spans
            .iter()
            .map(|s| (s.is_primary, map.tag_at(s)))
            .collect();
        tracing::debug!(code = ?d.code.as_ref().map(|c| &c.code), message = %d.message, ?tags, "cell build error");
    }
    // Derived serde traits that the fields do not allow are dropped.
    if drop_failed_derives(&diags, map, &mut unit.items) {
        return Ok(());
    }
    if try_needs_debug(unit, &diags, map) {
        unit.debug_errors = true;
        return Ok(());
    }
    // A boxed closure that is `FnMut` or `FnOnce`, not `Fn`.
    if narrow_closures(&diags, map, puts, stageable) {
        return Ok(());
    }
    // A binding that a failing `?` cannot put back there (moved, or
    // borrowed by what the `?` applies to) is not kept at that `?`.
    // As with put-backs, borrows that cannot be kept go first: they
    // make what they borrow look unmovable.
    let staging = |d: &&rustc::Diagnostic, primary_only: bool| {
        d.spans
            .iter()
            .filter(|s| s.is_primary || !primary_only)
            .filter_map(|s| staging_tag(map.tag_at(s)?))
            .filter(|p| !plan.unstaged.contains(p))
            .collect::<Vec<_>>()
    };
    let borrow = |d: &&rustc::Diagnostic| {
        d.code
            .as_ref()
            .is_some_and(|c| BORROWS.contains(&c.code.as_str()))
    };
    let mut unstaged: Vec<(usize, String)> = diags
        .iter()
        .filter(borrow)
        .flat_map(|d| staging(&d, false))
        .collect();
    unstaged.sort();
    unstaged.dedup();
    if !unstaged.is_empty() {
        plan.unstaged.extend(unstaged);
        return Ok(());
    }

    // The put-back may be the primary span (a moved value) or a
    // secondary one ("requires that `v` is borrowed for 'static").
    // A closure that borrows names the put-back in a note ("function
    // requires argument type to outlive `'static`").
    let failed: Vec<(String, Option<String>, String)> = diags
        .iter()
        .filter_map(|d| {
            let var = d
                .spans
                .iter()
                .chain(d.children.iter().flat_map(|c| &c.spans))
                .filter_map(|s| map.tag_at(s))
                .find_map(|t| t.strip_prefix("put:"))?;
            Some((
                var.to_string(),
                d.code.as_ref().map(|c| c.code.clone()),
                d.message.clone(),
            ))
        })
        .collect();
    let is_borrow = |c: &Option<String>| c.as_deref().is_some_and(|c| BORROWS.contains(&c));
    // A borrow that cannot be kept also makes its referent look moved:
    // drop the borrows first and try again.
    let any_borrow = failed.iter().any(|(_, c, _)| is_borrow(c));
    let mut retry = false;
    // A taken variable the cell moved cannot be restored after a panic.
    let unkept: Vec<String> = diags
        .iter()
        .flat_map(|d| d.spans.iter().filter_map(|s| map.tag_at(s)))
        .filter_map(|t| t.strip_prefix("keep:").map(String::from))
        .collect();
    if !unkept.is_empty() {
        plan.keep.retain(|(n, _)| !unkept.contains(n));
        retry = true;
    }
    for (var, code, message) in failed {
        if any_borrow && !is_borrow(&code) {
            continue;
        }
        let why = match code.as_deref() {
            Some("E0382") | Some("E0505") => {
                format!("`{var}` was moved by this cell, so it is no longer a session variable")
            }
            _ if is_borrow(&code) => format!(
                "`{var}` is not kept for later cells: it borrows from a value that does not outlive the cell{}",
                if parsed.closures.iter().any(|(n, _)| *n == var) {
                    " (a `move` closure owns what it captures)"
                } else {
                    ""
                }
            ),
            _ => format!("`{var}` is not kept for later cells: {message}"),
        };
        if puts.iter().any(|(n, _)| *n == var) {
            puts.retain(|(n, _)| *n != var);
            outcome.removed.push(var);
            outcome.notes.push(why);
            retry = true;
        }
    }
    if !retry {
        // The put-backs compile: what fails is a `?` keeping a binding.
        let mut unstaged: Vec<(usize, String)> =
            diags.iter().flat_map(|d| staging(&d, true)).collect();
        unstaged.sort();
        unstaged.dedup();
        if unstaged.is_empty() {
            return Err(code_error(&diags, map));
        }
        plan.unstaged.extend(unstaged);
    }
    Ok(())
}

/// Narrows boxed closures that rustc says are `FnMut` or `FnOnce` rather than `Fn`
/// (E0525 at a put-back, see [`boxed::narrowed`]). Returns whether any changed.
fn narrow_closures(
    diags: &[rustc::Diagnostic],
    map: &SourceMap,
    puts: &mut [(String, Kept)],
    stageable: &mut [(String, Kept)],
) -> bool {
    let mut changed = false;
    for d in diags
        .iter()
        .filter(|d| d.code.as_ref().is_some_and(|c| c.code == "E0525"))
    {
        let var = d.spans.iter().filter_map(|s| map.tag_at(s)).find_map(|t| {
            t.strip_prefix("put:")
                .or_else(|| staging_tag(t).map(|_| t.rsplit(':').next().unwrap_or_default()))
        });
        let Some(var) = var else { continue };
        for (n, k) in puts.iter_mut().chain(stageable.iter_mut()) {
            if n == var && k.wrap == Wrap::Box {
                if let (Some(here), Some(later)) = (
                    boxed::narrowed(&k.here, &d.message),
                    boxed::narrowed(&k.later, &d.message),
                ) {
                    k.here = here;
                    k.later = later;
                    changed = true;
                }
            }
        }
    }
    changed
}

/// rustc's codes for a borrow that does not live long enough (to be kept).
const BORROWS: &[&str] = &[
    "E0597", "E0716", "E0515", "E0521", "E0759", "E0506", "E0373",
];

/// The `?` and variable of a `stage:SITE:NAME` tag.
fn staging_tag(tag: &str) -> Option<(usize, String)> {
    let (site, name) = tag.strip_prefix("stage:")?.split_once(':')?;
    Some((site.parse().ok()?, name.to_string()))
}

/// Whether a `?` cell failed only because one of its errors is not a
/// `std::error::Error` (E0277, "`?` couldn't convert the error"): then it is built
/// again with errors taken through `Debug`, as `main` returning `Result` takes them.
/// Cells whose errors are all `Error`s keep `Box<dyn Error>`, which shows their
/// `Display` and `source()` chain.
pub(super) fn try_needs_debug(unit: &Unit, diags: &[rustc::Diagnostic], map: &SourceMap) -> bool {
    let at_conversion =
        |d: &rustc::Diagnostic| d.spans.iter().any(|s| map.tag_at(s) == Some("try:convert"));
    unit.parsed.uses_try
        && !unit.debug_errors
        && diags
            .iter()
            .any(|d| d.message.contains("`?` couldn't convert the error") || at_conversion(d))
}

/// Whether a rustc error is about serde's traits (a derive the fields do not allow).
pub(super) fn derive_failure(d: &rustc::Diagnostic) -> bool {
    d.message.contains("Serialize") || d.message.contains("Deserialize")
}

/// Clears the derive of every item a serde error points into (or of all items when
/// it points nowhere in particular). Returns whether there is anything to retry.
fn drop_failed_derives(
    diags: &[rustc::Diagnostic],
    map: &SourceMap,
    items: &mut [LayerItem],
) -> bool {
    if !items.iter().any(|i| i.serde) {
        return false;
    }
    let failed: Vec<&rustc::Diagnostic> = diags.iter().filter(|d| derive_failure(d)).collect();
    if failed.is_empty() {
        return false;
    }
    let newest = items.iter().map(|i| i.cell).max();
    let mut hit = HashSet::new();
    for s in failed.iter().flat_map(|d| &d.spans) {
        if let Some(i) = map
            .tag_at(s)
            .and_then(|t| t.strip_prefix("derive:"))
            .and_then(|i| i.parse::<usize>().ok())
        {
            hit.insert(i);
        } else if let Some(o) = map.origin(s.line_start) {
            for (i, it) in items.iter().enumerate() {
                let cell = (Some(it.cell) != newest).then_some(it.cell);
                let first = it.item.snippet.line;
                let last = first + it.item.snippet.text.lines().count();
                if o.cell == cell && (first..last).contains(&o.line) {
                    hit.insert(i);
                }
            }
        }
    }
    let mut changed = false;
    for (i, it) in items.iter_mut().enumerate() {
        if it.serde && (hit.is_empty() || hit.contains(&i)) {
            it.serde = false;
            changed = true;
        }
    }
    changed
}
