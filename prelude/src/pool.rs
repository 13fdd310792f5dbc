//! The workers of `%%parallel processes` and `cluster`: what the kernel passed the
//! coordinating cell ([`Setup`]), the warm pool of worker processes kept between
//! cells (a dead worker replaced), the engines' workers, and which session variables
//! each of them has loaded, so that only changed ones are sent again.

use crate::channel::tag;
use crate::transport::{Local, Remote, Worker};
use std::collections::HashMap;
use std::sync::Mutex;

/// What the kernel passed the coordinating cell: the library that loads variables
/// on a worker, and the version of each variable's snapshot.
pub(crate) struct Setup {
    /// This cell's library and entry point, to run on the workers.
    cell: (String, String),
    /// For a cluster cell: each rank's engine, with the pid of its worker (a new
    /// worker holds no variables yet). Empty for worker processes.
    pub(crate) engines: Vec<(u32, String)>,
    /// For `--persist`: the library of the body, run on each engine as a cell of
    /// its own, so that what it binds stays there.
    pub(crate) persist: Option<(String, String)>,
    /// The restore library and its entry point; empty when the body uses no variable.
    restore: (String, String),
    /// (name, snapshot version) of each variable the body uses.
    vars: Vec<(String, String)>,
}

impl Setup {
    pub(crate) fn from_args() -> Setup {
        let args = crate::process::args();
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
            cell: crate::process::current_cell(),
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
    pub(crate) fn ready(&self, rank: usize, size: usize, fresh: bool) -> Result<Worker, String> {
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

    pub(crate) fn checkin(&self, rank: usize, w: Worker) {
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
