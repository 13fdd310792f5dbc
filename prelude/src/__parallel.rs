//! `%%parallel threads`: a cell body run at once on N OS threads of the runner (one
//! run per rank, or one per item of `--each`), its values gathered in order and shown
//! as one table.
//!
//! The kernel turns the cell into a call of [`threads`] or [`each`] with the body as
//! a closure, so it is compiled once, as ordinary cell code, and session variables
//! are captured by shared reference. Each worker's output is labelled with its rank
//! line by line (see `crate::rank_output`); a panicking rank is caught and reported
//! while the others' values are kept.
//!
//! The lane driver (`crate::lanes`), the table (`crate::table`) and `--scaling`
//! (`crate::scaling`) are shared with `%%parallel processes`; the items generated
//! cells name are re-exported here.

pub use crate::lanes::panic_message;
pub use crate::rank_output::Options;
pub use crate::scaling::scaling;
pub use crate::table::{Run, is_shown};

use crate::lanes::{Done, Shared, Slots, default_size, drive_lanes};
use crate::table::{Row, Table};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// One unit of work: `(unit, rank)` → the value as shown, or the panic message. The
/// cell's closure keeps the value itself.
type Unit<'a> = &'a (dyn Fn(usize, usize) -> Result<String, String> + Sync);

/// Runs `units` units on `size` threads: unit r on rank r (`dynamic` false), or
/// handed out in batches from a shared counter so that every thread stays busy.
/// Labels output, shows progress after a second, and stops handing out units once
/// the user interrupts.
fn drive(size: usize, opts: Options, units: usize, dynamic: bool, unit: Unit) -> Table {
    let lane = |rank: usize, shared: &Shared| -> Done {
        let mut rows: Done = Vec::new();
        let mut run = |u: usize| {
            let t0 = Instant::now();
            let shown = unit(u, rank);
            let seconds = t0.elapsed().as_secs_f64();
            rows.push((
                u,
                Row {
                    shown,
                    seconds,
                    rank,
                },
            ));
        };
        if !shared.dynamic {
            run(rank);
            shared.done.fetch_add(1, Ordering::Relaxed);
            return rows;
        }
        while let Some(batch) = shared.next_batch() {
            let n = batch.len();
            batch.for_each(&mut run);
            shared.done.fetch_add(n, Ordering::Relaxed);
        }
        rows
    };
    drive_lanes(size, opts, units, dynamic, "threads", &lane)
}

/// A unit's value and, when `show`, its display; a panic in either is told apart.
fn valued<T>(
    body: impl FnOnce() -> T,
    repr: &impl Fn(&T) -> String,
    show: bool,
) -> Result<(T, String), String> {
    let v = panic::catch_unwind(AssertUnwindSafe(body))
        .map_err(|p| format!("panicked: {}", panic_message(&*p)))?;
    let shown = match show {
        true => panic::catch_unwind(AssertUnwindSafe(|| repr(&v)))
            .map_err(|p| format!("its Debug panicked: {}", panic_message(&*p)))?,
        false => String::new(),
    };
    Ok((v, shown))
}

/// Runs `body(rank, size)` on `size` threads at once (the cores, if `None`).
/// `repr` shows a value (the kernel passes the cell's `Debug`-or-type-name display).
pub fn threads<T: Send>(
    size: Option<usize>,
    opts: Options,
    body: impl Fn(usize, usize) -> T + Sync,
    repr: impl Fn(&T) -> String + Sync,
) -> Run<T> {
    let size = size.unwrap_or_else(default_size).max(1);
    let values = Slots::new(size);
    // What `chunks` in the body takes from: one set of counters for the run.
    let counters = std::sync::Arc::new(crate::steal::Counters::default());
    let unit = |u: usize, rank: usize| -> Result<String, String> {
        let ranked = || crate::steal::as_rank(&counters, size, || body(rank, size));
        let (v, shown) = valued(ranked, &repr, true)?;
        // SAFETY: unit u runs once, on one thread.
        unsafe { *values.slot(u) = Some(v) };
        Ok(shown)
    };
    let table = drive(size, opts, size, false, &unit);
    Run {
        values: values.into_values(),
        table: Some(table),
    }
}

/// Runs `body(item, rank, size)` once per item on `size` threads, handing out the
/// items in batches so that every thread stays busy; the values come back in the
/// items' order. Threads stop taking items once interrupted.
pub fn each<I: Send, T: Send>(
    size: Option<usize>,
    opts: Options,
    items: impl IntoIterator<Item = I>,
    body: impl Fn(I, usize, usize) -> T + Sync,
    repr: impl Fn(&T) -> String + Sync,
) -> Run<T> {
    let size = size.unwrap_or_else(default_size).max(1);
    let items = Slots(
        items
            .into_iter()
            .map(|i| std::cell::UnsafeCell::new(Some(i)))
            .collect(),
    );
    let total = items.0.len();
    let values = Slots::new(total);
    let unit = |u: usize, rank: usize| -> Result<String, String> {
        // SAFETY: unit u runs once, on one thread.
        let item = unsafe { items.slot(u).take() }.expect("each item runs once");
        let (v, shown) = valued(|| body(item, rank, size), &repr, is_shown(u, total))?;
        // SAFETY: as above.
        unsafe { *values.slot(u) = Some(v) };
        Ok(shown)
    };
    let table = drive(size, opts, total, true, &unit);
    Run {
        values: values.into_values(),
        table: Some(table),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_run_at_once_and_come_back_in_order() {
        let run = threads(
            Some(4),
            Options::default(),
            |rank, size| rank * 10 + size,
            |v| format!("{v}"),
        );
        let table = run.table.as_ref().unwrap();
        assert_eq!(table.rows.len(), 4);
        assert!(table.text_table().contains("4 ranks on 4 threads"));
        assert_eq!(run.show(), vec![4, 14, 24, 34]);
    }

    #[test]
    fn each_keeps_the_items_order_and_reports_a_failed_item() {
        let run = each(
            Some(3),
            Options::default(),
            0..1000u64,
            |i, _, _| i * 2,
            |v| v.to_string(),
        );
        let values = run.show();
        assert_eq!(values.len(), 1000);
        assert!(values.iter().enumerate().all(|(i, v)| *v == 2 * i as u64));
        let run = each(
            Some(2),
            Options::default(),
            0..10u32,
            |i, _, _| {
                if i == 7 {
                    panic!("seven")
                }
                i
            },
            |v| v.to_string(),
        );
        assert!(
            run.table.as_ref().unwrap().rows[7]
                .shown
                .as_ref()
                .is_err_and(|m| m == "panicked: seven")
        );
        let failed = panic::catch_unwind(AssertUnwindSafe(|| run.show())).unwrap_err();
        assert!(panic_message(&*failed).contains("item 7"));
    }
}
