//! Work stealing: [`chunks`] and [`parallel_for`].
//!
//! A `%%parallel` body that splits its range by `rank` and `size` gives each rank
//! the same amount of numbers, not the same amount of work: primes near the end
//! of a range cost more to test, so the last ranks finish late and the first wait.
//! `chunks(range)` instead hands each rank small pieces of the range as it asks for
//! them, so a rank that finishes early takes more.
//!
//! - `%%parallel threads`: the ranks of one run take from one counter.
//! - `processes` and `cluster`: the ranks are other processes, often on other
//!   machines, with no memory in common. There, piece `k` goes to rank `k % size`:
//!   many small pieces dealt round-robin even out in the same way for work that
//!   grows smoothly along the range.
//! - Outside a `%%parallel` body (and in an `--each` or `--persist` body, or in
//!   code that runs on a piece): the whole range, in pieces.
//!
//! `parallel_for(range, |i| ...)` runs a closure over a range on every core
//! (Numba's `prange`). Inside a `%%parallel` body it runs this rank's share.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Pieces per rank, about: enough that the ranks end together; few enough that
/// taking a piece (one atomic add) costs nothing next to running it.
const PIECES_PER_RANK: u64 = 64;

/// The counters of one `%%parallel threads` run: the n-th `chunks` call of every
/// rank takes from the n-th counter (the ranks run the same body).
#[derive(Default)]
pub(crate) struct Counters(Mutex<Vec<Arc<AtomicU64>>>);

impl Counters {
    fn nth(&self, n: usize) -> Arc<AtomicU64> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while all.len() <= n {
            all.push(Arc::new(AtomicU64::new(0)));
        }
        all[n].clone()
    }
}

/// How the ranks of a run share a range.
#[derive(Clone)]
enum Mode {
    /// Threads: the n-th top-level `chunks` call of every rank takes from the
    /// n-th counter.
    Shared(Arc<Counters>),
    /// Worker processes and engines: piece `k` goes to rank `k % size`.
    Dealt { rank: u64 },
}

/// Where this thread is: a rank of a run of `size` ranks, how many top-level
/// `chunks` calls it has made, and whether it is working on a piece now (a
/// `chunks` call made then, from code that runs on a piece, covers its whole
/// range on this thread: the other ranks are on pieces of their own).
struct Place {
    mode: Mode,
    size: usize,
    calls: usize,
    in_piece: bool,
}

thread_local! {
    static PLACE: RefCell<Option<Place>> = const { RefCell::new(None) };
}

/// Runs `body` with this thread at `place`, restored afterwards however it ends.
fn at<T>(mode: Mode, size: usize, body: impl FnOnce() -> T) -> T {
    let place = Place {
        mode,
        size,
        calls: 0,
        in_piece: false,
    };
    let before = PLACE.with(|p| p.replace(Some(place)));
    struct Restore(Option<Option<Place>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take().flatten();
            PLACE.with(|p| *p.borrow_mut() = before);
        }
    }
    let _restore = Restore(Some(before));
    body()
}

/// Runs `body` as a rank of the threads run of `size` ranks that `counters` serves.
pub(crate) fn as_rank<T>(counters: &Arc<Counters>, size: usize, body: impl FnOnce() -> T) -> T {
    at(Mode::Shared(counters.clone()), size, body)
}

/// Runs `body` as rank `rank` of `size` worker processes or engines.
pub(crate) fn as_dealt_rank<T>(rank: usize, size: usize, body: impl FnOnce() -> T) -> T {
    at(Mode::Dealt { rank: rank as u64 }, size.max(1), body)
}

/// Marks whether this thread is working on a piece (see [`Place`]).
fn set_in_piece(yes: bool) {
    PLACE.with(|p| {
        if let Some(place) = p.borrow_mut().as_mut() {
            place.in_piece = yes;
        }
    });
}

/// This rank's pieces of `range`, taken as it asks for them (see the module's
/// docs): `chunks(0..n).flatten()` are its numbers. Every rank must make the same
/// top-level `chunks` calls, in the same order, as with a collective operation.
pub fn chunks(range: Range<u64>) -> Chunks {
    let len = range.end.saturating_sub(range.start);
    let here = PLACE.with(|p| {
        let mut p = p.borrow_mut();
        let place = p.as_mut().filter(|place| !place.in_piece)?;
        let how = match &place.mode {
            Mode::Shared(counters) => How::Shared(counters.nth(place.calls)),
            Mode::Dealt { rank } => How::Dealt {
                rank: *rank,
                size: place.size as u64,
                next: 0,
            },
        };
        place.calls += 1;
        Some((how, place.size))
    });
    let (how, size, marks) = match here {
        Some((how, size)) => (how, size, true),
        None => (How::Shared(Arc::new(AtomicU64::new(0))), 1, false),
    };
    let piece = len.div_ceil(size as u64 * PIECES_PER_RANK).max(1);
    Chunks {
        range,
        piece,
        how,
        marks,
    }
}

/// How a rank's pieces are found.
enum How {
    /// Taken from a counter that the ranks share.
    Shared(Arc<AtomicU64>),
    /// Piece `k` for rank `k % size`.
    Dealt { rank: u64, size: u64, next: u64 },
}

/// This rank's pieces of a range: see [`chunks`].
pub struct Chunks {
    range: Range<u64>,
    piece: u64,
    how: How,
    /// Whether this thread is marked as on a piece while one is out (a rank's
    /// top-level call).
    marks: bool,
}

impl Drop for Chunks {
    fn drop(&mut self) {
        if self.marks {
            set_in_piece(false);
        }
    }
}

impl Iterator for Chunks {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        let piece = self.take();
        if self.marks {
            set_in_piece(piece.is_some());
        }
        piece
    }
}

impl Chunks {
    fn take(&mut self) -> Option<Range<u64>> {
        if crate::interrupted() {
            return None;
        }
        let k = match &mut self.how {
            How::Shared(counter) => counter.fetch_add(1, Ordering::Relaxed),
            How::Dealt { rank, size, next } => {
                let k = *next * *size + *rank;
                *next += 1;
                k
            }
        };
        let start = k
            .checked_mul(self.piece)
            .and_then(|o| self.range.start.checked_add(o))
            .filter(|s| *s < self.range.end)?;
        Some(start..start.saturating_add(self.piece).min(self.range.end))
    }
}

/// Runs `f(i)` for every `i` in `range`: on every core, each thread taking pieces
/// as it needs them (as Numba's `prange` does); inside a `%%parallel` body, for
/// this rank's share (see [`chunks`]).
pub fn parallel_for(range: Range<u64>, f: impl Fn(u64) + Sync) {
    if PLACE.with(|p| p.borrow().is_some()) {
        chunks(range).flatten().for_each(f);
        return;
    }
    let size = crate::lanes::default_size();
    let counters = Arc::new(Counters::default());
    std::thread::scope(|s| {
        for rank in 0..size {
            let (counters, range, f) = (&counters, range.clone(), &f);
            std::thread::Builder::new()
                .name(format!("parallel_for {rank}"))
                .stack_size(64 << 20)
                .spawn_scoped(s, move || {
                    as_rank(counters, size, || chunks(range).flatten().for_each(f))
                })
                .expect("spawn a parallel_for thread");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_ranks_of_a_run_take_every_number_once() {
        let counters = Arc::new(Counters::default());
        let seen: Vec<AtomicUsize> = (0..10_000).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let (counters, seen) = (&counters, &seen);
                s.spawn(move || {
                    as_rank(counters, 4, || {
                        for n in chunks(0..10_000).flatten() {
                            seen[n as usize].fetch_add(1, Ordering::Relaxed);
                        }
                        // A second call takes from a counter of its own.
                        assert!(chunks(0..10).flatten().count() <= 10);
                    })
                });
            }
        });
        assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn dealt_pieces_cover_the_range_once() {
        let mut all: Vec<u64> = (0..3)
            .flat_map(|rank| {
                Chunks {
                    range: 5..1005,
                    piece: 7,
                    how: How::Dealt {
                        rank,
                        size: 3,
                        next: 0,
                    },
                    marks: false,
                }
                .flatten()
            })
            .collect();
        all.sort();
        assert_eq!(all, (5..1005).collect::<Vec<_>>());
    }

    #[test]
    fn code_on_a_piece_covers_its_own_range() {
        // Nested: each row's inner range is whole, whichever thread has the row.
        let hits: Vec<AtomicUsize> = (0..64 * 100).map(|_| AtomicUsize::new(0)).collect();
        parallel_for(0..64, |y| {
            parallel_for(0..100, |x| {
                hits[(y * 100 + x) as usize].fetch_add(1, Ordering::Relaxed);
            })
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        // After the pieces, a second top-level call is shared again.
        let counters = Arc::new(Counters::default());
        as_rank(&counters, 2, || {
            assert_eq!(chunks(0..10).flatten().count(), 10);
            assert_eq!(chunks(0..10).flatten().count(), 10);
        });
        assert_eq!(counters.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn parallel_for_visits_each_number_once() {
        let sum = AtomicU64::new(0);
        parallel_for(1..100_001, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 100_000 * 100_001 / 2);
        assert_eq!(chunks(3..3).count(), 0);
        assert_eq!(chunks(0..10).flatten().count(), 10);
    }
}
