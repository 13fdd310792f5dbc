//! The worker side of `%%parallel processes` and `%%parallel cluster`: a runner
//! started with `FERROCELL_WORKER` runs the cell it is sent, and the cell's parallel
//! call serves units (batches of items) from its coordinator until told the run is
//! over. Session variables arrive as serde bytes ([`receive`]) before the restore
//! library that turns them into values.

use crate::channel::{self, tag};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// What the coordinator sent a worker's running cell.
enum Work {
    Units(Vec<u8>),
    End,
}

static WORK: Mutex<VecDeque<Work>> = Mutex::new(VecDeque::new());
static WORK_READY: Condvar = Condvar::new();
/// Set when a cell's run has been served: a cell serves one run per RUN it is sent
/// (a `--scaling` cell makes several calls; the coordinator sends a RUN for each).
static SERVED: AtomicBool = AtomicBool::new(false);

/// Called by the runner's command loop for the frames that carry work.
pub(crate) fn push_work(t: u8, payload: Vec<u8>) {
    let work = if t == tag::UNITS {
        Work::Units(payload)
    } else {
        Work::End
    };
    WORK.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_back(work);
    WORK_READY.notify_all();
}

/// Called by the runner when a new cell starts.
pub(crate) fn new_cell() {
    SERVED.store(false, Ordering::Relaxed);
    WORK.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

fn next_work() -> Work {
    let mut q = WORK.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(w) = q.pop_front() {
            return w;
        }
        q = WORK_READY.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

/// A worker's rank and the run's size, from the RUN that started the cell.
pub(crate) fn place() -> (usize, usize) {
    let args = crate::process::args();
    let n = |i: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(0);
    (n(1), n(2).max(1))
}

/// A worker's run of one unit: (item bytes, rank, size) → value bytes, or why not.
pub(crate) type WorkerUnit<'a> = &'a dyn Fn(&[u8], usize, usize) -> Result<Vec<u8>, String>;

/// Runs units as they come until the coordinator says the run is over. `unit` takes
/// an item's bytes and gives the value's bytes (or why there is none).
pub(crate) fn serve(unit: WorkerUnit) {
    if SERVED.swap(true, Ordering::Relaxed) {
        return;
    }
    let (rank, size) = place();
    while let Work::Units(batch) = next_work() {
        let mut r = Reader(&batch);
        let first = r.u64();
        let n = r.u32();
        let mut out = Vec::new();
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        for _ in 0..n {
            let item = r.bytes();
            let t0 = Instant::now();
            let value = panic::catch_unwind(AssertUnwindSafe(|| unit(item, rank, size)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", crate::lanes::panic_message(&*p))));
            out.extend_from_slice(&t0.elapsed().as_secs_f64().to_le_bytes());
            let (ok, bytes) = match &value {
                Ok(b) => (1u8, b.as_slice()),
                Err(m) => (0u8, m.as_bytes()),
            };
            out.push(ok);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        // What the units printed goes before their values.
        let _ = std::io::stdout().flush();
        channel::send(tag::UNITS_DONE, &out);
    }
}

/// Reads the little-endian fields of a units frame.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let h = self.take(8);
        b[..h.len()].copy_from_slice(h);
        u64::from_le_bytes(b)
    }
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let h = self.take(4);
        b[..h.len()].copy_from_slice(h);
        u32::from_le_bytes(b)
    }
    pub fn f64(&mut self) -> f64 {
        f64::from_bits(self.u64())
    }
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = self.u32() as usize;
        self.take(n)
    }
}

/// Serialised session variables sent by the coordinator, until the restore library
/// reads them.
static RECEIVED: Mutex<Option<HashMap<String, Vec<u8>>>> = Mutex::new(None);

/// Called by the runner's command loop for a `VAR_BYTES` frame: `[name len u32][name][bytes]`.
pub(crate) fn receive(payload: Vec<u8>) {
    let mut r = Reader(&payload);
    let name = String::from_utf8_lossy(r.bytes()).into_owned();
    let bytes = r.0.to_vec();
    RECEIVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(name, bytes);
}

/// The bytes of a variable the coordinator sent (taken: they are read once).
pub(crate) fn take_received(name: &str) -> Option<Vec<u8>> {
    RECEIVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()?
        .remove(name)
}

/// The frame that sends a variable's bytes to a worker.
pub(crate) fn var_frame(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(name.len() + bytes.len() + 4);
    f.extend_from_slice(&(name.len() as u32).to_le_bytes());
    f.extend_from_slice(name.as_bytes());
    f.extend_from_slice(bytes);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

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
