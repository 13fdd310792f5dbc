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
//!
//! The pool lives in `crate::pool`, the coordinator's rank threads in
//! `crate::coordinator`, the worker side in `crate::worker`; this module holds
//! the entry points generated cells call.

pub use crate::process::is_worker;

use crate::coordinator::coordinate;
use crate::lanes::Slots;
use crate::rank_output::Options;
use crate::table::{Run, is_shown};
use crate::worker::serve;

/// The cell's serialisation of items and values (bincode, in the generated code).
pub struct Codec<I, T> {
    pub ser_item: fn(&I) -> Result<Vec<u8>, String>,
    pub de_item: fn(&[u8]) -> Result<I, String>,
    pub ser_value: fn(&T) -> Result<Vec<u8>, String>,
    pub de_value: fn(&[u8]) -> Result<T, String>,
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
            let v = crate::steal::as_dealt_rank(rank, size, || body(rank, size));
            (codec.ser_value)(&v).map_err(|e| format!("its value could not be sent: {e}"))
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
        let shown = if is_shown(u, total) {
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
