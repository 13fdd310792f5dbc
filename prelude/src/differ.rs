//! The file writer of a snapshot saver: writes only what differs from the previous
//! snapshot. While the new bytes match the parked file it only compares them (a cell
//! that read a large variable without changing it costs no disk writes, and the file
//! keeps its identity); at the first difference it copies the matching part over and
//! writes from there. It stops when the runner cancels the snapshot.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// How many bytes are compared at a time (also the saver's buffer size).
pub(crate) const CHUNK: usize = 1 << 20;

/// How the bytes compared with the previous snapshot.
pub(crate) enum Outcome {
    /// The same bytes: the previous file is the snapshot.
    Same,
    /// Different: the new file is written.
    Written,
}

pub(crate) struct Differ {
    prev: Option<std::fs::File>,
    matched: u64,
    prev_path: PathBuf,
    tmp_path: PathBuf,
    out: Option<std::fs::File>,
    cancel: PathBuf,
    /// Set once the cancel file was seen: the error the serialiser returns then is
    /// not a failure.
    pub(crate) cancelled: bool,
    since_check: usize,
    scratch: Vec<u8>,
}

impl Differ {
    pub(crate) fn new(prev: &Path, tmp: &Path, cancel: PathBuf) -> Differ {
        Differ {
            prev: std::fs::File::open(prev).ok(),
            matched: 0,
            prev_path: prev.to_path_buf(),
            tmp_path: tmp.to_path_buf(),
            out: None,
            cancel,
            cancelled: false,
            since_check: 0,
            scratch: Vec::new(),
        }
    }

    /// Stops comparing: the new file starts with the bytes matched so far.
    fn diverge(&mut self) -> std::io::Result<&mut std::fs::File> {
        if self.out.is_none() {
            self.prev = None;
            let mut out = std::fs::File::create(&self.tmp_path)?;
            if self.matched > 0 {
                let from = std::fs::File::open(&self.prev_path)?;
                let copied = std::io::copy(&mut from.take(self.matched), &mut out)?;
                if copied != self.matched {
                    return Err(std::io::Error::other("the previous snapshot shrank"));
                }
            }
            self.out = Some(out);
        }
        Ok(self.out.as_mut().expect("just made"))
    }

    pub(crate) fn finish(mut self) -> std::io::Result<Outcome> {
        if let Some(prev) = self.prev.as_mut() {
            let mut one = [0u8; 1];
            if prev.read(&mut one)? == 0 {
                return Ok(Outcome::Same);
            }
        }
        self.diverge()?;
        Ok(Outcome::Written)
    }

    /// Compares or writes one piece of at most [`CHUNK`] bytes.
    fn piece(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(prev) = self.prev.as_mut() {
            self.scratch.resize(buf.len(), 0);
            if prev.read_exact(&mut self.scratch).is_ok() && self.scratch == buf {
                self.matched += buf.len() as u64;
                return Ok(());
            }
        }
        self.diverge()?.write_all(buf)
    }
}

impl Write for Differ {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A value's large string or byte slice comes in one write: it is taken a
        // chunk at a time, so neither the comparison nor the cancel check waits on it.
        for piece in buf.chunks(CHUNK) {
            self.since_check += piece.len();
            if self.since_check >= 8 * CHUNK {
                self.since_check = 0;
                if self.cancel.exists() {
                    self.cancelled = true;
                    return Err(std::io::Error::other("cancelled"));
                }
            }
            self.piece(piece)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
