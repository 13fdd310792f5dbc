//! The session's variables, kept in the runner between cells.
//!
//! A cell takes out the variables it uses (by value, with the type the kernel learnt
//! from rustc) and puts back what it still owns at the end, so inside the cell they
//! are ordinary local variables.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

/// Values of any type. Only one cell runs at a time and the store is only touched
/// from that cell's thread, so the values never actually cross threads.
struct Store(HashMap<String, Box<dyn Any>>);
// SAFETY: see above; access is serialised by the mutex and by cells running one at a time.
unsafe impl Send for Store {}

static STORE: Mutex<Option<Store>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut HashMap<String, Box<dyn Any>>) -> R) -> R {
    let mut guard = STORE.lock().unwrap_or_else(|e| e.into_inner());
    let store = guard.get_or_insert_with(|| Store(HashMap::new()));
    f(&mut store.0)
}

// The generic entry points below are instantiated in every cell that uses a
// variable, so they stay tiny: the work is in these non-generic functions, compiled
// once into the prelude.

#[inline(never)]
fn take_boxed(name: &str) -> Box<dyn Any> {
    match with(|m| m.remove(name)) {
        Some(b) => b,
        None => panic!("ferrocell: the session variable `{name}` is gone (the runner restarted)"),
    }
}

#[inline(never)]
#[cold]
fn wrong_type(name: &str, value: Box<dyn Any>, wanted: &'static str) -> ! {
    with(|m| m.insert(name.to_string(), value));
    panic!("ferrocell: the session variable `{name}` is not a {wanted}")
}

#[inline(never)]
fn put_boxed(name: &str, value: Box<dyn Any>) {
    with(|m| m.insert(name.to_string(), value));
}

/// Takes a variable out of the store for the running cell.
pub fn take<T: 'static>(name: &str) -> T {
    match take_boxed(name).downcast::<T>() {
        Ok(v) => *v,
        Err(b) => wrong_type(name, b, std::any::type_name::<T>()),
    }
}

/// Puts a variable back (or in, for the first time) at the end of a cell.
pub fn put<T: 'static>(name: &str, value: T) {
    put_boxed(name, Box::new(value));
}

/// Runs a cell's code and catches a panic, so that the cell can put its variables
/// back before the panic goes on. Not generic, so cells do not each instantiate
/// `catch_unwind`.
pub fn guarded<'a>(body: Box<dyn FnOnce() + 'a>) -> Option<Box<dyn Any + Send>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).err()
}

/// Forgets a variable (for `%reset` and redefinitions), and its snapshot.
pub fn remove(name: &str) {
    with(|m| m.remove(name));
    snapshot(name, None);
}

/// Forgets every variable.
pub fn clear() {
    let names = names();
    with(|m| m.clear());
    for n in names {
        snapshot(&n, None);
    }
}

/// Where snapshots go: a private directory of the kernel's (`FERROCELL_SNAPSHOTS`),
/// or nowhere when the prelude runs outside a kernel.
fn snapshot_dir() -> Option<&'static std::path::Path> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("FERROCELL_SNAPSHOTS").map(Into::into))
        .as_deref()
}

/// Records the serialised value of a variable as it was put back, so that a new
/// runner can get it back if this one dies; `None` (a type without serde support)
/// removes an older snapshot. Written next to the final name and renamed over it, so
/// a runner that dies half-way leaves the previous snapshot whole.
pub fn snapshot(name: &str, bytes: Option<&[u8]>) {
    let Some(dir) = snapshot_dir() else { return };
    let path = dir.join(name);
    match bytes {
        Some(b) => {
            let tmp = dir.join(format!(".{name}.tmp"));
            if std::fs::write(&tmp, b).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The snapshot of a variable, for restoring it in a new runner.
pub fn snapshot_bytes(name: &str) -> Option<Vec<u8>> {
    std::fs::read(snapshot_dir()?.join(name)).ok()
}

/// The names of the variables the store holds.
pub fn names() -> Vec<String> {
    with(|m| m.keys().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_put_and_type_check() {
        put("v", vec![1u8, 2]);
        let mut v: Vec<u8> = take("v");
        v.push(3);
        put("v", v);
        assert_eq!(take::<Vec<u8>>("v"), vec![1, 2, 3]);
        put("n", 5i32);
        assert!(std::panic::catch_unwind(|| take::<u64>("n")).is_err());
        assert_eq!(take::<i32>("n"), 5);
        assert!(names().is_empty());
    }
}
