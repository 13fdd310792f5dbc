//! A parallel rank's output: what a rank thread prints, labelled `[rank]` line by
//! line as it streams, or kept and shown grouped by rank at the end (`--group`).
//!
//! The runner's `write` interposer and the coordinator's relay of a worker's output
//! both hand bytes to [`labelled_write`]; it knows, through a thread-local, whether
//! the current thread is a rank (see [`as_worker`]). A leaf of the parallel modules:
//! it needs only the channel.

use crate::channel::{self, tag};
use std::cell::RefCell;

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

/// What one rank printed, in order, as (frame tag, bytes).
pub(crate) type Printed = Vec<(u8, Vec<u8>)>;

/// Sends the grouped output of every rank, in rank order.
pub(crate) fn send_grouped(mut grouped: Vec<(usize, Printed)>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_every_line() {
        assert_eq!(label(3, b"a\nb\n"), b"[3] a\n[3] b\n".to_vec());
    }
}
