//! The lane driver shared by `%%parallel threads`, `processes` and `cluster`: one
//! rank thread per lane, each running its units (here, or on its worker process or
//! engine), handing out `--each` items in batches, with a progress display after a
//! second; the rows come back as the run's [`Table`].
//!
//! Also the [`Slots`] the ranks fill with their values, and [`panic_message`] for a
//! unit's caught panic.

use crate::display::{self, DisplayId};
use crate::rank_output::{Options, as_worker, send_grouped};
use crate::table::{Row, Table};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The number of threads when the cell does not say: the machine's cores.
pub(crate) fn default_size() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The message of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// What the ranks of one run share: the hand-out of units and the count of those done.
pub(crate) struct Shared {
    pub units: usize,
    pub dynamic: bool,
    /// Units per batch handed out at once (`dynamic`).
    pub batch: usize,
    next: AtomicUsize,
    pub done: AtomicUsize,
}

impl Shared {
    /// The next batch of units to run, or `None` when all are handed out (or the user
    /// interrupted).
    pub fn next_batch(&self) -> Option<std::ops::Range<usize>> {
        if crate::interrupted() {
            return None;
        }
        let first = self.next.fetch_add(self.batch, Ordering::Relaxed);
        (first < self.units).then(|| first..(first + self.batch).min(self.units))
    }

    /// Whether every unit has been handed out.
    pub fn handed_out(&self) -> bool {
        self.next.load(Ordering::Relaxed) >= self.units
    }
}

/// The rows one rank produced, by unit index.
pub(crate) type Done = Vec<(usize, Row)>;

/// What one rank does in a run: its units, run here or elsewhere.
pub(crate) type Lane<'a> = &'a (dyn Fn(usize, &Shared) -> Done + Sync);

/// Runs `lane` on `size` rank threads at once, each marked as its rank for output,
/// with a progress display after a second; gathers the rows into the table.
pub(crate) fn drive_lanes(
    size: usize,
    opts: Options,
    units: usize,
    dynamic: bool,
    on: &'static str,
    lane: Lane,
) -> Table {
    let started = Instant::now();
    let finished = std::sync::atomic::AtomicBool::new(false);
    // About sixteen batches per thread: small enough to even out uneven items, large
    // enough that taking one costs nothing next to running it.
    let shared = Shared {
        units,
        dynamic,
        batch: units.div_ceil(size * 16).max(1),
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
    };
    let grouped = Mutex::new(Vec::new());
    let (parts, progress): (Vec<Done>, _) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..size)
            .map(|rank| {
                let (shared, grouped) = (&shared, &grouped);
                std::thread::Builder::new()
                    .name(format!("rank {rank}"))
                    .stack_size(64 << 20)
                    .spawn_scoped(s, move || {
                        let (rows, printed) = as_worker(rank, opts, || lane(rank, shared));
                        grouped
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((rank, printed));
                        rows
                    })
                    .expect("spawn a worker thread")
            })
            .collect();
        let watcher = s.spawn(|| {
            Progress {
                done: &shared.done,
                total: units,
                what: if dynamic { "items" } else { "ranks" },
                finished: &finished,
            }
            .watch()
        });
        let parts = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        finished.store(true, Ordering::Release);
        watcher.thread().unpark();
        (parts, watcher.join().ok().flatten())
    });
    if opts.group {
        send_grouped(grouped.into_inner().unwrap_or_else(|e| e.into_inner()));
    }
    let mut slots: Vec<Option<Row>> = (0..units).map(|_| None).collect();
    for (u, row) in parts.into_iter().flatten() {
        slots[u] = Some(row);
    }
    let rows = slots
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Row {
                shown: Err(if crate::interrupted() {
                    "not run (interrupted)".into()
                } else {
                    "not run: no worker was left to run it".into()
                }),
                seconds: 0.0,
                rank: 0,
            })
        })
        .collect();
    Table {
        blank_is_unit: false,
        rows,
        size,
        on,
        items: dynamic,
        elapsed: started.elapsed().as_secs_f64(),
        progress,
    }
}

/// A slot per unit, each filled or emptied by the one thread that runs that unit.
pub(crate) struct Slots<T>(pub Vec<std::cell::UnsafeCell<Option<T>>>);
// SAFETY: every unit index is run by exactly one thread, once (see `drive_lanes`),
// and the slots are read only after all threads have joined.
unsafe impl<T: Send> Sync for Slots<T> {}

impl<T> Slots<T> {
    pub fn new(n: usize) -> Self {
        Slots((0..n).map(|_| std::cell::UnsafeCell::new(None)).collect())
    }

    /// # Safety
    /// The caller is the only one touching slot `i` now.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slot(&self, i: usize) -> &mut Option<T> {
        // SAFETY: the caller's promise: no one else uses slot `i` now.
        unsafe { &mut *self.0[i].get() }
    }

    pub fn into_values(self) -> Vec<Option<T>> {
        self.0.into_iter().map(|c| c.into_inner()).collect()
    }
}

/// Shows "done / total" in one display that updates in place, once a run has taken
/// longer than a second.
struct Progress<'a> {
    done: &'a AtomicUsize,
    total: usize,
    what: &'static str,
    finished: &'a std::sync::atomic::AtomicBool,
}

impl Progress<'_> {
    fn watch(self) -> Option<DisplayId> {
        let started = Instant::now();
        let mut id = None;
        // Parked rather than asleep: the end of the run unparks it at once.
        while !self.finished.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(50));
            let elapsed = started.elapsed();
            if elapsed < Duration::from_secs(1) || self.finished.load(Ordering::Acquire) {
                continue;
            }
            let done = self.done.load(Ordering::Relaxed);
            let rate = done as f64 / elapsed.as_secs_f64();
            let text = format!(
                "{done}/{} {} done · {:.1} s · {rate:.1}/s",
                self.total,
                self.what,
                elapsed.as_secs_f64()
            );
            match &id {
                None => id = Some(display::display_text(text)),
                Some(id) => display::update_display(id, "text/plain", text),
            }
            std::thread::park_timeout(Duration::from_millis(200));
        }
        id
    }
}
