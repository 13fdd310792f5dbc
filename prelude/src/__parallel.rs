//! `%%parallel threads`: a cell body run at once on N OS threads of the runner (one
//! run per rank, or one per item of `--each`), its values gathered in order and shown
//! as one table.
//!
//! The kernel turns the cell into a call of [`threads`] or [`each`] with the body as
//! a closure, so it is compiled once, as ordinary cell code, and session variables
//! are captured by shared reference. Each worker's output is labelled with its rank
//! line by line (see [`labelled_write`]); a panicking rank is caught and reported
//! while the others' values are kept.

use crate::channel::{self, tag, tag::PARALLEL_ERROR};
use crate::display::{self, DisplayId};
use crate::json;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How a parallel cell treats its workers' output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Collect each rank's output and show it grouped by rank at the end, instead of
    /// streaming labelled lines.
    pub group: bool,
}

/// What one worker thread is: its rank, and the output it has not sent yet.
struct Worker {
    rank: usize,
    group: bool,
    /// Partial lines (stdout, stderr) waiting for their newline.
    pending: [Vec<u8>; 2],
    /// Everything the rank printed, for `--group`.
    grouped: Printed,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Output a rank wrote: streamed as labelled lines, or kept for `--group`. Returns
/// false on threads that are not parallel workers (the caller sends the bytes as
/// they are).
pub(crate) fn labelled_write(fd: i32, bytes: &[u8]) -> bool {
    // `try_with`: a destructor may print while the thread's locals are going away.
    WORKER
        .try_with(|w| {
            let mut w = w.borrow_mut();
            let Some(w) = w.as_mut() else { return false };
            let (t, slot) = if fd == 2 {
                (tag::STDERR, 1)
            } else {
                (tag::STDOUT, 0)
            };
            if w.group {
                w.grouped.push((t, bytes.to_vec()));
                return true;
            }
            w.pending[slot].extend_from_slice(bytes);
            if let Some(end) = w.pending[slot].iter().rposition(|b| *b == b'\n') {
                let rest = w.pending[slot].split_off(end + 1);
                let lines = std::mem::replace(&mut w.pending[slot], rest);
                channel::send(t, &label(w.rank, &lines));
            }
            true
        })
        .unwrap_or(false)
}

/// Puts `[rank] ` before every line.
fn label(rank: usize, lines: &[u8]) -> Vec<u8> {
    let prefix = format!("[{rank}] ");
    let mut out = Vec::with_capacity(lines.len() + 8);
    for line in lines.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(line);
    }
    out
}

/// Marks the current thread as rank `rank` for the duration of `f`; afterwards sends
/// what is left of its output (or returns it, for `--group`).
pub(crate) fn as_worker<R>(rank: usize, opts: Options, f: impl FnOnce() -> R) -> (R, Printed) {
    WORKER.with(|w| {
        *w.borrow_mut() = Some(Worker {
            rank,
            group: opts.group,
            pending: [Vec::new(), Vec::new()],
            grouped: Vec::new(),
        })
    });
    let r = f();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let w = WORKER.with(|w| w.borrow_mut().take()).expect("set above");
    for (t, mut rest) in [tag::STDOUT, tag::STDERR].into_iter().zip(w.pending) {
        if !rest.is_empty() {
            rest.push(b'\n');
            channel::send(t, &label(rank, &rest));
        }
    }
    (r, w.grouped)
}

/// One row of the result: a rank's run, or an item's.
pub(crate) struct Row {
    /// The value as shown (`Debug`; empty for rows the table leaves out), or why
    /// there is none.
    pub shown: Result<String, String>,
    pub seconds: f64,
    pub rank: usize,
}

/// What a parallel run shows: a row per rank or item, in order. Not generic, so
/// that a cell compiles only the small closures that touch its values.
pub(crate) struct Table {
    /// Shown only if some row has a value (`--persist`: the engines' values come as
    /// text, and a body of `()` sends none).
    blank_is_unit: bool,
    rows: Vec<Row>,
    size: usize,
    /// What the ranks ran on: "threads" or "processes".
    on: &'static str,
    items: bool,
    elapsed: f64,
    progress: Option<DisplayId>,
}

/// The outcome of a parallel cell: the values in rank (or item) order, and the table.
pub struct Run<T> {
    values: Vec<Option<T>>,
    /// `None` in a worker process: the coordinator shows the run.
    table: Option<Table>,
}

/// The number of threads when the cell does not say: the machine's cores.
pub(crate) fn default_size() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Whether row `i` of `total` appears in the table (so its value is formatted).
pub fn is_shown(i: usize, total: usize) -> bool {
    total <= SHOWN_ROWS + SHOWN_TAIL + 1 || i < SHOWN_ROWS || total - i <= SHOWN_TAIL
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

/// One unit of work: `(unit, rank)` → the value as shown, or the panic message. The
/// cell's closure keeps the value itself.
type Unit<'a> = &'a (dyn Fn(usize, usize) -> Result<String, String> + Sync);

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
// SAFETY: every unit index is run by exactly one thread, once (see `drive`), and the
// slots are read only after all threads have joined.
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
    let unit = |u: usize, rank: usize| -> Result<String, String> {
        let (v, shown) = valued(|| body(rank, size), &repr, true)?;
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

/// Sends the grouped output of every rank, in rank order.
/// What one rank printed, in order, as (frame tag, bytes).
type Printed = Vec<(u8, Vec<u8>)>;

fn send_grouped(mut grouped: Vec<(usize, Printed)>) {
    grouped.sort_by_key(|(r, _)| *r);
    for (rank, pieces) in grouped {
        if pieces.is_empty() {
            continue;
        }
        channel::send(tag::STDOUT, format!("[rank {rank}]\n").as_bytes());
        for (t, bytes) in pieces {
            channel::send(t, &bytes);
        }
    }
}

/// `--scaling`: runs the cell once per worker count (one worker first, as the
/// baseline), then shows the speed-up of each against the ideal line and Amdahl's
/// law fitted to the measurements. Returns the run with the most workers.
pub fn scaling<T>(counts: &[usize], mut run: impl FnMut(usize) -> Run<T>) -> Run<T> {
    let mut counts: Vec<usize> = counts.iter().copied().filter(|n| *n > 0).collect();
    counts.push(1);
    counts.sort_unstable();
    counts.dedup();
    // A worker process serves one run per cell it is sent; the coordinator charts.
    if crate::__processes::is_worker() {
        return run(counts[0]);
    }
    let mut times = Vec::new();
    let mut last = None;
    for &n in &counts {
        let r = run(n);
        let Some(table) = &r.table else { return r };
        times.push((n, table.elapsed));
        let failed = table.rows.iter().any(|row| row.shown.is_err());
        if let Some(id) = &table.progress {
            display::update_display(id, "text/plain", table.summary());
        }
        if failed {
            return r;
        }
        last = Some(r);
    }
    let chart = Scaling::new(times);
    let text = json::string(&chart.text());
    let svg = json::string(&chart.svg());
    display::send_bundle(
        &DisplayId::fresh(),
        false,
        &[
            ("text/plain", text.as_str()),
            ("image/svg+xml", svg.as_str()),
        ],
    );
    last.expect("at least one count")
}

/// Measured speed-ups and the Amdahl fit behind the `--scaling` chart.
struct Scaling {
    /// (workers, seconds), one worker first.
    times: Vec<(usize, f64)>,
    /// The fitted serial fraction f of Amdahl's law, S(n) = 1 / (f + (1 − f) / n).
    serial: f64,
}

impl Scaling {
    fn new(times: Vec<(usize, f64)>) -> Self {
        let t1 = times[0].1.max(1e-9);
        // Least squares on 1/S = 1/n + f (1 − 1/n), over the runs with more than one worker.
        let (mut num, mut den) = (0.0, 0.0);
        for &(n, t) in times.iter().skip(1) {
            let inv_n = 1.0 / n as f64;
            let inv_s = t / t1;
            num += (inv_s - inv_n) * (1.0 - inv_n);
            den += (1.0 - inv_n) * (1.0 - inv_n);
        }
        let serial = if den > 0.0 {
            (num / den).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Scaling { times, serial }
    }

    fn speedup(&self, t: f64) -> f64 {
        self.times[0].1 / t.max(1e-9)
    }

    fn amdahl(&self, n: f64) -> f64 {
        1.0 / (self.serial + (1.0 - self.serial) / n)
    }

    fn text(&self) -> String {
        let mut out = String::from("workers  time      speed-up  efficiency\n");
        for &(n, t) in &self.times {
            let s = self.speedup(t);
            out.push_str(&format!(
                "{n:>7}  {:<8}  {s:>7.2}×  {:>9.0}%\n",
                seconds(t),
                100.0 * s / n as f64
            ));
        }
        out.push_str(&format!(
            "Amdahl's law fitted: serial fraction {:.3} (at most {:.1}× on any number of workers)",
            self.serial,
            if self.serial > 0.0 {
                1.0 / self.serial
            } else {
                f64::INFINITY
            }
        ));
        out
    }

    fn svg(&self) -> String {
        let (w, h, pad) = (480.0, 320.0, 48.0);
        let max_n = self.times.last().map(|t| t.0).unwrap_or(1) as f64;
        let max_s = self
            .times
            .iter()
            .map(|&(_, t)| self.speedup(t))
            .fold(max_n, f64::max);
        let x = |n: f64| pad + (n / max_n) * (w - 2.0 * pad);
        let y = |s: f64| h - pad - (s / max_s) * (h - 2.0 * pad);
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        out.push_str(&format!(
            "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>",
            h - pad, w - pad, h - pad, h - pad
        ));
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">workers</text><text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">speed-up</text>",
            w / 2.0, h - 12.0, h / 2.0, h / 2.0
        ));
        // Ideal: S(n) = n.
        out.push_str(&format!(
            "<line class=\"ideal\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"gray\" stroke-dasharray=\"4 4\"/>",
            x(0.0), y(0.0), x(max_n), y(max_n)
        ));
        // Amdahl's curve.
        let points: Vec<String> = (0..=40)
            .map(|i| {
                let n = 1.0 + (max_n - 1.0) * i as f64 / 40.0;
                format!("{:.1},{:.1}", x(n), y(self.amdahl(n)))
            })
            .collect();
        out.push_str(&format!(
            "<polyline class=\"amdahl\" points=\"{}\" fill=\"none\" stroke=\"#d62728\"/>",
            points.join(" ")
        ));
        for &(n, t) in &self.times {
            let s = self.speedup(t);
            out.push_str(&format!(
                "<circle class=\"measured\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#1f77b4\"><title>{n} workers: {s:.2}×</title></circle>\
                 <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
                x(n as f64), y(s), x(n as f64), h - pad + 16.0
            ));
        }
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\">measured ● · ideal - - · Amdahl, serial fraction {:.3}</text></svg>",
            pad + 8.0, pad - 16.0, self.serial
        ));
        out
    }
}

/// Rows of a long `--each` table shown from the start, and from the end.
const SHOWN_ROWS: usize = 10;
const SHOWN_TAIL: usize = 3;

fn seconds(s: f64) -> String {
    match s {
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 1e-3 => format!("{:.1} ms", s * 1e3),
        s => format!("{:.0} µs", s * 1e6),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Table {
    /// Which rows the table shows: all, or the first and last few of a long run.
    fn shown_rows(&self) -> Vec<Option<usize>> {
        let n = self.rows.len();
        if n <= SHOWN_ROWS + SHOWN_TAIL + 1 {
            return (0..n).map(Some).collect();
        }
        let mut out: Vec<Option<usize>> = (0..SHOWN_ROWS).map(Some).collect();
        out.push(None);
        out.extend((n - SHOWN_TAIL..n).map(Some));
        out
    }

    fn summary(&self) -> String {
        let failed = self.rows.iter().filter(|r| r.shown.is_err()).count();
        let what = if self.items { "items" } else { "ranks" };
        let mut s = format!(
            "{} {what} on {} {} in {}",
            self.rows.len(),
            self.size,
            self.on,
            seconds(self.elapsed)
        );
        if failed > 0 {
            s.push_str(&format!("; {failed} failed"));
        }
        s
    }

    fn text_table(&self) -> String {
        let first = if self.items { "item" } else { "rank" };
        let cell = |r: &Row| match &r.shown {
            Ok(v) => v.clone(),
            Err(m) => m.clone(),
        };
        let width = self
            .rows
            .iter()
            .map(|r| cell(r).chars().count())
            .max()
            .unwrap_or(5)
            .clamp(5, 60);
        let mut out = if self.items {
            format!("{first:>6}  {:<width$}  {:>5}  time\n", "value", "rank")
        } else {
            format!("{first:>6}  {:<width$}  time\n", "value")
        };
        for i in self.shown_rows() {
            let Some(i) = i else {
                out.push_str(&format!("{:>6}  …\n", ""));
                continue;
            };
            let r = &self.rows[i];
            let v = cell(r);
            let idx = if self.items { i } else { r.rank };
            if self.items {
                out.push_str(&format!(
                    "{idx:>6}  {v:<width$}  {:>5}  {}\n",
                    r.rank,
                    seconds(r.seconds)
                ));
            } else {
                out.push_str(&format!("{idx:>6}  {v:<width$}  {}\n", seconds(r.seconds)));
            }
        }
        out.push_str(&self.summary());
        out
    }

    fn html_table(&self) -> String {
        let first = if self.items { "item" } else { "rank" };
        let mut out = format!("<table><thead><tr><th>{first}</th><th>value</th>");
        if self.items {
            out.push_str("<th>rank</th>");
        }
        out.push_str("<th>time</th></tr></thead><tbody>");
        for i in self.shown_rows() {
            let Some(i) = i else {
                out.push_str("<tr><td colspan=\"4\">…</td></tr>");
                continue;
            };
            let r = &self.rows[i];
            let idx = if self.items { i } else { r.rank };
            let v = match &r.shown {
                Ok(v) => html_escape(v),
                Err(m) => format!("<b>{}</b>", html_escape(m)),
            };
            out.push_str(&format!(
                "<tr><td>{idx}</td><td><pre style=\"margin:0;background:none\">{v}</pre></td>"
            ));
            if self.items {
                out.push_str(&format!("<td>{}</td>", r.rank));
            }
            out.push_str(&format!("<td>{}</td></tr>", seconds(r.seconds)));
        }
        out.push_str(&format!(
            "</tbody></table><p>{}</p>",
            html_escape(&self.summary())
        ));
        out
    }
}

impl<T> Run<T> {
    pub(crate) fn from_parts(values: Vec<Option<T>>, table: Table) -> Self {
        Run {
            values,
            table: Some(table),
        }
    }

    /// Shows no table when no row has a value (see `Table::blank_is_unit`).
    pub(crate) fn blank_is_unit(&mut self) {
        if let Some(t) = &mut self.table {
            t.blank_is_unit = true;
        }
    }

    /// What a worker process's cell gets: nothing to show or keep.
    pub(crate) fn in_worker() -> Self {
        Run {
            values: Vec::new(),
            table: None,
        }
    }

    /// Shows the table (in place of the progress display, if there was one) and
    /// returns the values in order. A body whose value is `()` shows only failures.
    /// Panics after showing, naming the failed ranks or items, if any failed; the
    /// kernel reports that panic as a `ParallelError`.
    pub fn show(self) -> Vec<T> {
        let Some(t) = &self.table else {
            return Vec::new();
        };
        let unit = std::mem::size_of::<T>() == 0 && std::any::type_name::<T>() == "()"
            || t.blank_is_unit
                && t.rows
                    .iter()
                    .all(|r| matches!(&r.shown, Ok(s) if s.is_empty()));
        let failed: Vec<String> = t
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let m = r.shown.as_ref().err()?;
                Some(if t.items {
                    format!("item {i} (rank {}): {m}", r.rank)
                } else {
                    format!("rank {}: {m}", r.rank)
                })
            })
            .collect();
        if !unit || !failed.is_empty() {
            let text = json::string(&t.text_table());
            let html = json::string(&t.html_table());
            let bundle = [("text/plain", text.as_str()), ("text/html", html.as_str())];
            match &t.progress {
                Some(id) => display::send_bundle(id, true, &bundle),
                None => display::send_bundle(&DisplayId::fresh(), false, &bundle),
            }
        } else if let Some(id) = &t.progress {
            display::update_display(id, "text/plain", t.summary());
        }
        if !failed.is_empty() {
            let more = failed.len().saturating_sub(5);
            let more = if more > 0 {
                format!("\n(and {more} more)")
            } else {
                String::new()
            };
            panic!(
                "{PARALLEL_ERROR}{} of {} {} failed\n{}{more}",
                failed.len(),
                t.rows.len(),
                if t.items { "items" } else { "ranks" },
                failed[..failed.len().min(5)].join("\n")
            );
        }
        self.values
            .into_iter()
            .map(|v| v.expect("every unit ran"))
            .collect()
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

    #[test]
    fn amdahl_fit_recovers_a_serial_fraction() {
        // f = 0.2: S(2) = 1/0.6, S(4) = 1/0.4.
        let s = Scaling::new(vec![(1, 1.0), (2, 0.6), (4, 0.4)]);
        assert!((s.serial - 0.2).abs() < 1e-9, "{}", s.serial);
        assert!(s.text().contains("serial fraction 0.200"));
        assert!(s.svg().contains("class=\"amdahl\"") && s.svg().matches("<circle").count() == 3);
        let run = scaling(&[2], |n| {
            threads(Some(n), Options::default(), |r, _| r, |v| v.to_string())
        });
        assert_eq!(run.show(), vec![0, 1]);
    }

    #[test]
    fn labels_every_line() {
        assert_eq!(label(3, b"a\nb\n"), b"[3] a\n[3] b\n".to_vec());
    }

    #[test]
    fn long_tables_show_their_ends() {
        assert!(is_shown(0, 1000) && is_shown(999, 1000) && !is_shown(500, 1000));
        assert!((0..14).all(|i| is_shown(i, 14)));
    }
}
