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

/// `%%parallel cluster --persist --out NAME` and `%cluster pull`: as [`persist`],
/// and the values are the engines' own, each serialised by the body
/// ([`gathered`]) and read back here with `de`.
pub fn persist_gather<T: Send>(
    opts: Options,
    repr: impl Fn(&T) -> String + Sync,
    de: fn(&[u8]) -> Result<T, String>,
) -> Run<T> {
    let decode = |values: &Slots<T>, u: usize, bytes: &[u8]| -> Result<String, String> {
        let v = match bytes.split_first() {
            Some((1, b)) => de(b).map_err(|e| format!("its value did not come back: {e}"))?,
            Some((0, why)) => return Err(String::from_utf8_lossy(why).into_owned()),
            _ => return Err("the engine sent no value to gather".into()),
        };
        let shown = repr(&v);
        // SAFETY: rank u's slot is written once, by rank u's thread.
        unsafe { *values.slot(u) = Some(v) };
        Ok(shown)
    };
    coordinate(None, opts, None, &|_| Ok(Vec::new()), &decode)
}

/// In a gathering `--persist` body on an engine: sends the body's value,
/// serialised, to the kernel that gathers it.
pub fn gathered(bytes: Result<Vec<u8>, String>) {
    let payload = match bytes {
        Ok(mut b) => {
            b.insert(0, 1);
            b
        }
        Err(why) => {
            let mut p = vec![0];
            p.extend_from_slice(format!("its value could not be sent: {why}").as_bytes());
            p
        }
    };
    crate::channel::send(crate::channel::tag::GATHERED, &payload);
}

/// `--scatter VAR`: this rank's part of `all`, split as evenly as it goes (the
/// first `len % size` parts one longer), in order.
pub fn part<T: Clone>(all: &[T], rank: usize, size: usize) -> Vec<T> {
    let size = size.max(1);
    let (each, extra) = (all.len() / size, all.len() % size);
    let start = rank * each + rank.min(extra);
    let len = each + usize::from(rank < extra);
    all.get(start..(start + len).min(all.len()))
        .unwrap_or(&[])
        .to_vec()
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

#[cfg(test)]
mod scatter_tests {
    use super::part;

    #[test]
    fn parts_cover_the_vec_in_order_and_differ_by_at_most_one() {
        let all: Vec<u32> = (0..10).collect();
        let parts: Vec<Vec<u32>> = (0..4).map(|r| part(&all, r, 4)).collect();
        assert_eq!(
            parts,
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7], vec![8, 9]]
        );
        assert_eq!(part(&all[..2], 3, 4), Vec::<u32>::new());
        assert_eq!(part(&all, 0, 1), all);
    }
}
