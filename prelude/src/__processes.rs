//! `%%parallel processes`: the cell body on a warm pool of worker processes.
//!
//! The runner that runs the cell is the coordinator. It keeps the pool (started on
//! first use, kept between cells, a dead worker replaced) and runs one rank thread
//! per worker, as `%%parallel threads` does; each rank thread drives its worker over
//! a socket with the runner channel's frames. A worker is the runner executable
//! again: it loads the same cell library, gets the session variables the body uses
//! from their serde snapshots (only those that changed since it last loaded them),
//! and runs the body on the units it is sent; values come back serialised.
//!
//! `%%parallel cluster` is the same with engines for workers: the kernel passes the
//! engines in the cell's arguments, and each rank thread reaches its engine through
//! the kernel (see [`crate::transport`]).
//!
//! Serialisation is the cell's: it passes a [`Codec`] of bincode functions, so this
//! prelude stays free of dependencies.

use crate::__parallel::{self as par, Done, Options, Row, Run, Shared, Slots};
use crate::channel::{self, tag};
use crate::transport::{Local, Lost, Remote, Worker, json_message};
use crate::worker::{Reader, serve};
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The cell's serialisation of items and values (bincode, in the generated code).
pub struct Codec<I, T> {
    pub ser_item: fn(&I) -> Result<Vec<u8>, String>,
    pub de_item: fn(&[u8]) -> Result<I, String>,
    pub ser_value: fn(&T) -> Result<Vec<u8>, String>,
    pub de_value: fn(&[u8]) -> Result<T, String>,
}

/// Whether this process is a worker of a coordinator's pool.
pub fn is_worker() -> bool {
    static WORKER: OnceLock<bool> = OnceLock::new();
    *WORKER.get_or_init(|| std::env::var_os("FERROCELL_WORKER").is_some())
}

/// The coordinator's reading of a unit's value: (unit, value bytes) → the value as
/// shown, the value itself kept in its slot.
type Decode<'a> = &'a (dyn Fn(usize, &[u8]) -> Result<String, String> + Sync);

/// [`Decode`] before it is given the slots.
type DecodeInto<'a, T> = &'a (dyn Fn(&Slots<T>, usize, &[u8]) -> Result<String, String> + Sync);

/// What the kernel passed the coordinating cell: the library that loads variables
/// on a worker, and the version of each variable's snapshot.
struct Setup {
    /// This cell's library and entry point, to run on the workers.
    cell: (String, String),
    /// For a cluster cell: each rank's engine, with the pid of its worker (a new
    /// worker holds no variables yet). Empty for worker processes.
    engines: Vec<(u32, String)>,
    /// For `--persist`: the library of the body, run on each engine as a cell of
    /// its own, so that what it binds stays there.
    persist: Option<(String, String)>,
    /// The restore library and its entry point; empty when the body uses no variable.
    restore: (String, String),
    /// (name, snapshot version) of each variable the body uses.
    vars: Vec<(String, String)>,
}

impl Setup {
    fn from_args() -> Setup {
        let args = crate::__runner::args();
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        let engines = args
            .iter()
            .find_map(|a| a.strip_prefix("engines="))
            .map(|list| {
                list.split(',')
                    .filter_map(|e| {
                        let (id, worker) = e.split_once(':')?;
                        Some((id.parse().ok()?, worker.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Setup {
            cell: crate::__runner::current_cell(),
            restore: (arg(0), arg(1)),
            engines,
            persist: args
                .iter()
                .find_map(|a| a.strip_prefix("persist="))
                .and_then(|p| p.split_once('\n'))
                .map(|(l, s)| (l.to_string(), s.to_string())),
            vars: args
                .iter()
                .skip(2)
                .filter(|a| !a.starts_with("persist="))
                .filter_map(|a| a.split_once('\t'))
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Brings `p` ready to serve: loads the variables it lacks, then starts the cell.
    fn prepare(&self, p: &mut Worker, rank: usize, size: usize) -> Result<(), String> {
        let stale: Vec<String> = self
            .vars
            .iter()
            .filter(|(n, v)| p.loaded.get(n) != Some(v))
            .map(|(n, _)| n.clone())
            .collect();
        if !stale.is_empty() {
            // The snapshots' bytes travel first; the restore library reads them there.
            for n in &stale {
                let bytes = crate::__vars::snapshot_bytes(n)
                    .ok_or_else(|| format!("`{n}` has no snapshot to send"))?;
                p.link
                    .send(tag::VAR_BYTES, &crate::worker::var_frame(n, &bytes))?;
            }
            p.run(&self.restore.0, &self.restore.1, &stale)?;
            match p.finish() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("the session variables did not load: {e}")),
                Err(lost) => return Err(lost.why(p)),
            }
            for (n, v) in self.vars.iter().filter(|(n, _)| stale.contains(n)) {
                p.loaded.insert(n.clone(), v.clone());
            }
        }
        let (lib, symbol) = self.persist.as_ref().unwrap_or(&self.cell);
        p.run(
            lib,
            symbol,
            &["worker".into(), rank.to_string(), size.to_string()],
        )
    }
}

impl Lost {
    fn why(&self, p: &Worker) -> String {
        match self {
            Lost::Died(how) => format!("{} {how}", p.link.name()),
            Lost::Stopped => "not run (interrupted)".into(),
            Lost::CellEnded(why) => why.clone(),
        }
    }
}

/// The warm pool of worker processes: worker `r` serves rank `r`.
static POOL: Mutex<Vec<Option<Worker>>> = Mutex::new(Vec::new());

/// What each engine's worker holds: (its worker's pid, variables loaded there).
type EngineVars = HashMap<u32, (String, HashMap<String, String>)>;
static ENGINE_VARS: Mutex<Option<EngineVars>> = Mutex::new(None);

impl Setup {
    /// The worker for `rank`: the pool's (started if missing or dead), or its engine.
    fn checkout(&self, rank: usize) -> Result<Worker, String> {
        if let Some((engine, pid)) = self.engines.get(rank) {
            let mut w = Worker::new(Box::new(Remote::new(*engine)));
            let mut known = ENGINE_VARS.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((was, loaded)) = known.get_or_insert_with(HashMap::new).remove(engine)
                && was == *pid
            {
                w.loaded = loaded;
            }
            return Ok(w);
        }
        let found = {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() <= rank {
                pool.resize_with(rank + 1, || None);
            }
            pool[rank].take()
        };
        match found {
            Some(mut w) => {
                if w.link.alive() {
                    return Ok(w);
                }
                w.link.kill();
                self.fresh(rank)
            }
            None => self.fresh(rank),
        }
    }

    /// The worker for `rank` (a new one when `fresh`), prepared for this run.
    fn ready(&self, rank: usize, size: usize, fresh: bool) -> Result<Worker, String> {
        let mut w = match fresh {
            true => self.fresh(rank)?,
            false => self.checkout(rank)?,
        };
        self.prepare(&mut w, rank, size)?;
        Ok(w)
    }

    /// A new worker for `rank` (an engine replaces its own worker).
    fn fresh(&self, rank: usize) -> Result<Worker, String> {
        match self.engines.get(rank) {
            Some((engine, _)) => Ok(Worker::new(Box::new(Remote::new(*engine)))),
            None => Ok(Worker::new(Box::new(Local::spawn()?))),
        }
    }

    fn checkin(&self, rank: usize, w: Worker) {
        match self.engines.get(rank) {
            Some((engine, pid)) => {
                ENGINE_VARS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(HashMap::new)
                    .insert(*engine, (pid.clone(), w.loaded));
            }
            None => POOL.lock().unwrap_or_else(|e| e.into_inner())[rank] = Some(w),
        }
    }
}

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
                    |p| Err(format!("its Debug panicked: {}", par::panic_message(&*p))),
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
        let outcome = self.setup.ready(rank, size, false).and_then(|mut p| {
            let end = p.pump(|t, payload| match t {
                tag::RESULT => {
                    // `{"text/plain": "…"}` from the engine's runner.
                    let text = String::from_utf8_lossy(&payload);
                    shown = crate::transport::json_field(&text, "text/plain");
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
        let shown = outcome.and_then(|()| (self.decode)(rank, shown.as_bytes()));
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
fn coordinate<T>(
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
        0 => (size.unwrap_or_else(par::default_size).max(1), "processes"),
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
    let table = par::drive_lanes(size, opts, units, dynamic, on, &lane);
    Run::from_parts(values.into_values(), table)
}

/// Runs `body(rank, size)` once on each of `size` worker processes (or engines).
pub fn ranks<T: Send>(
    size: Option<usize>,
    opts: Options,
    body: impl Fn(usize, usize) -> T,
    repr: impl Fn(&T) -> String + Sync,
    codec: Codec<(), T>,
) -> Run<T> {
    if is_worker() {
        serve(&|_, rank, size| {
            (codec.ser_value)(&body(rank, size))
                .map_err(|e| format!("its value could not be sent: {e}"))
        });
        return Run::in_worker();
    }
    let decode = |values: &Slots<T>, u: usize, bytes: &[u8]| -> Result<String, String> {
        let v = (codec.de_value)(bytes).map_err(|e| format!("its value did not come back: {e}"))?;
        let shown = repr(&v);
        // SAFETY: unit u is decoded once, by the rank that ran it.
        unsafe { *values.slot(u) = Some(v) };
        Ok(shown)
    };
    coordinate(size, opts, None, &|_| Ok(Vec::new()), &decode)
}

/// `%%parallel cluster --persist`: runs the body's library (in the kernel's
/// arguments) on each engine as a cell of its own, so that its variables stay on
/// the engine for later `--persist` cells. The values are the engines' displays of
/// the body's value; a body whose value is `()` shows no table.
pub fn persist(opts: Options) -> Run<String> {
    let decode = |values: &Slots<String>, u: usize, bytes: &[u8]| -> Result<String, String> {
        let shown = String::from_utf8_lossy(bytes).into_owned();
        // SAFETY: rank u's slot is written once, by rank u's thread.
        unsafe { *values.slot(u) = Some(shown.clone()) };
        Ok(shown)
    };
    let mut run = coordinate(None, opts, None, &|_| Ok(Vec::new()), &decode);
    run.blank_is_unit();
    run
}

/// The rank of this worker in the run it serves (for a `--persist` body).
pub fn worker_rank() -> usize {
    crate::worker::place().0
}

/// The number of ranks in the run this worker serves (for a `--persist` body).
pub fn worker_size() -> usize {
    crate::worker::place().1
}

/// Runs `body(item, rank, size)` once per item on `size` worker processes, handing
/// the items out in batches; values come back in the items' order.
pub fn each<I, It, T>(
    size: Option<usize>,
    opts: Options,
    items: impl FnOnce() -> It,
    body: impl Fn(I, usize, usize) -> T,
    repr: impl Fn(&T) -> String + Sync,
    codec: Codec<I, T>,
) -> Run<T>
where
    It: IntoIterator<Item = I>,
    I: Send,
    T: Send,
{
    if is_worker() {
        serve(&|bytes, rank, size| {
            let item =
                (codec.de_item)(bytes).map_err(|e| format!("its item did not arrive: {e}"))?;
            (codec.ser_value)(&body(item, rank, size))
                .map_err(|e| format!("its value could not be sent: {e}"))
        });
        return Run::in_worker();
    }
    let items = Slots(
        items()
            .into_iter()
            .map(|i| std::cell::UnsafeCell::new(Some(i)))
            .collect(),
    );
    let total = items.0.len();
    // SAFETY: a unit's item is read by the one rank that has its batch (a batch that
    // lost its worker is read again, by the next rank, after that).
    let encode = |u: usize| match unsafe { items.slot(u) } {
        Some(item) => (codec.ser_item)(item),
        None => Err("gone".into()),
    };
    let decode = |values: &Slots<T>, u: usize, bytes: &[u8]| -> Result<String, String> {
        let v = (codec.de_value)(bytes).map_err(|e| format!("its value did not come back: {e}"))?;
        let shown = if par::is_shown(u, total) {
            repr(&v)
        } else {
            String::new()
        };
        // SAFETY: as above, for the value's slot.
        unsafe { *values.slot(u) = Some(v) };
        Ok(shown)
    };
    coordinate(size, opts, Some(total), &encode, &decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_message_of_a_frame() {
        assert_eq!(
            json_message(r#"{"message":"boom \"x\"\nline","file":"a"}"#),
            "boom \"x\"\nline"
        );
        assert_eq!(json_message("plain"), "plain");
    }

    #[test]
    fn reader_reads_what_serve_writes() {
        let mut b = Vec::new();
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&1.5f64.to_le_bytes());
        let mut r = Reader(&b);
        assert_eq!((r.u64(), r.u32(), r.f64()), (7, 2, 1.5));
        assert_eq!(r.bytes(), b"");
    }
}
