//! The coordinator of `%%parallel processes` and `cluster`: one rank thread per
//! worker (through the shared lane driver), each sending its worker batches of
//! units and reading their values back; a batch whose worker died runs elsewhere,
//! and a dead worker is replaced once per run.

use crate::channel::{self, tag};
use crate::json::json_message;
use crate::lanes::{self, Done, Shared, Slots};
use crate::pool::Setup;
use crate::rank_output::Options;
use crate::table::{Row, Run};
use crate::transport::{Lost, Worker};
use crate::worker::Reader;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The coordinator's reading of a unit's value: (unit, value bytes) → the value as
/// shown, the value itself kept in its slot.
type Decode<'a> = &'a (dyn Fn(usize, &[u8]) -> Result<String, String> + Sync);

/// [`Decode`] before it is given the slots.
pub(crate) type DecodeInto<'a, T> =
    &'a (dyn Fn(&Slots<T>, usize, &[u8]) -> Result<String, String> + Sync);

/// A batch a lost worker left unfinished, to run elsewhere.
struct Orphan {
    units: std::ops::Range<usize>,
    /// How many workers died running it.
    deaths: usize,
}

/// What the rank threads of one run share beyond the hand-out of units.
struct Pooled<'a> {
    setup: &'a Setup,
    /// Unit index → the item's bytes.
    encode: &'a (dyn Fn(usize) -> Result<Vec<u8>, String> + Sync),
    /// Unit index, value bytes → the value as shown (the value itself is kept).
    decode: Decode<'a>,
    orphans: Mutex<Vec<Orphan>>,
    /// Batches handed out and not yet finished or orphaned.
    in_flight: std::sync::atomic::AtomicUsize,
}

impl Pooled<'_> {
    /// The next batch for a rank: an orphaned one first. Waits while other ranks may
    /// still orphan theirs.
    fn next(&self, shared: &Shared) -> Option<(std::ops::Range<usize>, usize)> {
        loop {
            if crate::interrupted() {
                return None;
            }
            if let Some(o) = self.orphans.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                return Some((o.units, o.deaths));
            }
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            if let Some(b) = shared.next_batch() {
                return Some((b, 0));
            }
            if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 && shared.handed_out() {
                // Nothing in flight anywhere, nothing orphaned: the run is over.
                if self
                    .orphans
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
                {
                    return None;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends a batch and reads its values into rows.
    fn run_batch(
        &self,
        p: &mut Worker,
        units: std::ops::Range<usize>,
        rank: usize,
        rows: &mut Done,
    ) -> Result<(), Lost> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&(units.start as u64).to_le_bytes());
        frame.extend_from_slice(&(units.len() as u32).to_le_bytes());
        let mut unsendable = Vec::new();
        for u in units.clone() {
            let bytes = (self.encode)(u).unwrap_or_else(|e| {
                unsendable.push((u, e));
                Vec::new()
            });
            frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            frame.extend_from_slice(&bytes);
        }
        if !unsendable.is_empty() {
            // Cannot happen with bincode on sized data, but say so rather than guess.
            for (u, e) in unsendable {
                rows.push((
                    u,
                    failed_row(format!("its item could not be sent: {e}"), rank),
                ));
            }
            return Ok(());
        }
        if let Err(e) = p.link.send(tag::UNITS, &frame) {
            return Err(Lost::Died(format!("could not be sent work ({e})")));
        }
        let payload = p.pump(|t, payload| match t {
            tag::UNITS_DONE => Some(Ok(payload)),
            tag::PANIC | tag::CELL_ERROR | tag::DONE | tag::LOAD_ERROR => {
                Some(Err(String::from_utf8_lossy(&payload).into_owned()))
            }
            _ => None,
        })?;
        let payload = payload.map_err(|e| {
            Lost::CellEnded(format!("the worker's cell ended: {}", json_message(&e)))
        })?;
        let mut r = Reader(&payload);
        let first = r.u64() as usize;
        let n = r.u32() as usize;
        // Values for other units than those sent would land in other units' slots.
        if first != units.start || n != units.len() {
            return Err(Lost::CellEnded(format!(
                "the worker answered for units {first}..{} instead of {}..{}",
                first + n,
                units.start,
                units.end
            )));
        }
        for u in first..first + n {
            let seconds = r.f64();
            let ok = r.take(1) == [1];
            let bytes = r.bytes();
            let shown = if ok {
                panic::catch_unwind(AssertUnwindSafe(|| (self.decode)(u, bytes))).unwrap_or_else(
                    |p| Err(format!("its Debug panicked: {}", lanes::panic_message(&*p))),
                )
            } else {
                Err(String::from_utf8_lossy(bytes).into_owned())
            };
            rows.push((
                u,
                Row {
                    shown,
                    seconds,
                    rank,
                },
            ));
        }
        Ok(())
    }

    /// One rank of a `--persist` run: the body's library runs on the engine as a
    /// cell; its value (as shown) is the rank's.
    fn persist_lane(&self, rank: usize, shared: &Shared, size: usize) -> Done {
        let t0 = std::time::Instant::now();
        let mut shown = String::new();
        let mut gathered: Option<Vec<u8>> = None;
        let outcome = self.setup.ready(rank, size, false).and_then(|mut p| {
            let end = p.pump(|t, payload| match t {
                tag::RESULT => {
                    // `{"text/plain": "…"}` from the engine's runner.
                    let text = String::from_utf8_lossy(&payload);
                    shown = crate::json::json_field(&text, "text/plain");
                    None
                }
                tag::GATHERED => {
                    gathered = Some(payload);
                    None
                }
                tag::DONE => Some(Ok(())),
                tag::PANIC => Some(Err(format!(
                    "panicked: {}",
                    json_message(&String::from_utf8_lossy(&payload))
                ))),
                tag::CELL_ERROR => Some(Err(json_message(&String::from_utf8_lossy(&payload)))),
                tag::LOAD_ERROR => Some(Err(format!(
                    "could not load the cell: {}",
                    String::from_utf8_lossy(&payload)
                ))),
                _ => None,
            });
            match end {
                Ok(r) => {
                    self.setup.checkin(rank, p);
                    r
                }
                Err(lost) => Err(lost.why(&p)),
            }
        });
        shared.done.fetch_add(1, Ordering::Relaxed);
        // A gathering body's value as it sent it, or else its value as shown.
        let shown = outcome.and_then(|()| match &gathered {
            Some(bytes) => (self.decode)(rank, bytes),
            None => (self.decode)(rank, shown.as_bytes()),
        });
        vec![(
            rank,
            Row {
                shown,
                seconds: t0.elapsed().as_secs_f64(),
                rank,
            },
        )]
    }

    /// One rank of the run: its worker prepared, then units until there are none.
    fn lane(&self, rank: usize, shared: &Shared, size: usize) -> Done {
        let mut rows: Done = Vec::new();
        let fail_all = |rows: &mut Done, why: String| {
            if !shared.dynamic {
                rows.push((rank, failed_row(why, rank)));
                shared.done.fetch_add(1, Ordering::Relaxed);
            } else {
                report(rank, &format!("{why}; its items run on the other workers"));
            }
        };
        let mut proc = match self.setup.ready(rank, size, false) {
            Ok(p) => p,
            Err(e) => {
                fail_all(&mut rows, e);
                return rows;
            }
        };
        // A worker that dies is replaced once per run; its batch runs elsewhere.
        let mut replaced = false;
        loop {
            let batch = if shared.dynamic {
                self.next(shared)
            } else if rows.is_empty() {
                Some((rank..rank + 1, 0))
            } else {
                None
            };
            let Some((units, deaths)) = batch else { break };
            let n = units.len();
            match self.run_batch(&mut proc, units.clone(), rank, &mut rows) {
                Ok(()) => {
                    shared.done.fetch_add(n, Ordering::Relaxed);
                    if shared.dynamic {
                        self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                Err(Lost::CellEnded(why)) => {
                    // The worker's cell is over (it could not load, or lost a
                    // variable): its units fail with why, and the worker, in an
                    // unknown state, is replaced before the next cell.
                    for u in units {
                        rows.push((u, failed_row(why.clone(), rank)));
                    }
                    shared.done.fetch_add(n, Ordering::Relaxed);
                    if shared.dynamic {
                        self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    }
                    proc.link.kill();
                    return rows;
                }
                Err(lost) => {
                    let why = lost.why(&proc);
                    if !shared.dynamic {
                        rows.push((rank, failed_row(why, rank)));
                        shared.done.fetch_add(1, Ordering::Relaxed);
                        return rows;
                    }
                    if matches!(lost, Lost::Stopped) {
                        self.in_flight.fetch_sub(1, Ordering::AcqRel);
                        return rows;
                    }
                    if deaths >= 1 {
                        // Two workers died on these items: they are the cause.
                        for u in units {
                            rows.push((
                                u,
                                failed_row(format!("{why} while running it (twice)"), rank),
                            ));
                        }
                        shared.done.fetch_add(n, Ordering::Relaxed);
                        report(
                            rank,
                            &format!(
                                "{why}; its {n} items had already lost a worker, so they are reported failed"
                            ),
                        );
                    } else {
                        self.orphans
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Orphan { units, deaths: 1 });
                        report(
                            rank,
                            &format!("{why}; its {n} unfinished items run on the other workers"),
                        );
                    }
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    if replaced || !proc.link.replaceable() {
                        return rows;
                    }
                    replaced = true;
                    match self.setup.ready(rank, size, true) {
                        Ok(p) => proc = p,
                        Err(e) => {
                            report(rank, &format!("no replacement worker: {e}"));
                            return rows;
                        }
                    }
                }
            }
        }
        let _ = proc.link.send(tag::NO_MORE_UNITS, b"");
        match proc.finish() {
            Ok(Ok(())) => self.setup.checkin(rank, proc),
            Ok(Err(e)) => {
                report(
                    rank,
                    &format!("the worker's cell failed after its units: {e}"),
                );
                self.setup.checkin(rank, proc);
            }
            Err(_) => {}
        }
        rows
    }
}

fn failed_row(why: String, rank: usize) -> Row {
    Row {
        shown: Err(why),
        seconds: 0.0,
        rank,
    }
}

/// Tells the user, on stderr, what happened to a worker.
fn report(rank: usize, what: &str) {
    channel::send(
        tag::STDERR,
        format!("%%parallel: worker {rank}: {what}\n").as_bytes(),
    );
}

/// Runs the units on `size` worker processes (the cores, if `None`).
///
/// `items` is the number of `--each` items; `None` runs one unit per rank. On a
/// cluster the ranks are the engines the kernel chose.
pub(crate) fn coordinate<T>(
    size: Option<usize>,
    opts: Options,
    items: Option<usize>,
    encode: &(dyn Fn(usize) -> Result<Vec<u8>, String> + Sync),
    decode: DecodeInto<T>,
) -> Run<T>
where
    T: Send,
{
    let setup = Setup::from_args();
    let (size, on) = match setup.engines.len() {
        0 => (size.unwrap_or_else(lanes::default_size).max(1), "processes"),
        // The kernel chose the engines; a count (`--scaling`) takes the first ones.
        n => (size.map_or(n, |s| s.clamp(1, n)), "engines"),
    };
    let (units, dynamic) = match items {
        Some(n) => (n, true),
        None => (size, false),
    };
    let values = Slots::new(units);
    let decode = |u: usize, bytes: &[u8]| decode(&values, u, bytes);
    let pooled = Pooled {
        setup: &setup,
        encode,
        decode: &decode,
        orphans: Mutex::new(Vec::new()),
        in_flight: Default::default(),
    };
    let lane = |rank: usize, shared: &Shared| match pooled.setup.persist {
        Some(_) => pooled.persist_lane(rank, shared, size),
        None => pooled.lane(rank, shared, size),
    };
    let table = lanes::drive_lanes(size, opts, units, dynamic, on, &lane);
    Run::from_parts(values.into_values(), table)
}
